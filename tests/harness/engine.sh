#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Make sure a Docker engine answers on this machine (air-gapped test harness).
#
# - If `docker info` works, do nothing (fast path).
# - Otherwise install Debian's docker.io (one `apt-get update`), start dockerd
#   in the background (PID 1 is not systemd here), and wait for the socket.
# - Also installs debootstrap (needed by tests/harness/images.py) if missing.
#
# Environment:
#   BMOPS_DOCKERD_LOG      dockerd log file   (default /var/log/bmops-dockerd.log)
#   BMOPS_DOCKERD_TIMEOUT  seconds to wait    (default 60)
set -euo pipefail

log=${BMOPS_DOCKERD_LOG:-/var/log/bmops-dockerd.log}
timeout=${BMOPS_DOCKERD_TIMEOUT:-60}
apt_updated=0

die() { echo "engine.sh: ERROR: $*" >&2; exit 1; }
say() { echo "engine.sh: $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
            || die "apt-get update failed"
        apt_updated=1
    fi
    say "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

missing=()
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)

if docker info >/dev/null 2>&1; then
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    say "docker engine is up ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    exit 0
fi

command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
# iptables, ca-certificates come in as docker.io dependencies/recommends
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

if pgrep -x dockerd >/dev/null 2>&1; then
    say "dockerd already running, waiting for it to answer"
else
    say "starting dockerd (log: $log)"
    as_root mkdir -p "$(dirname "$log")"
    # setsid: dockerd must outlive this script and its process group
    as_root setsid dockerd >>"$log" 2>&1 </dev/null &
fi

for ((i = 0; i < timeout * 2; i++)); do
    if docker info >/dev/null 2>&1; then
        say "docker engine is up ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
        exit 0
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        tail -n 20 "$log" >&2 || true
        die "dockerd exited; see $log"
    fi
    sleep 0.5
done
tail -n 20 "$log" >&2 || true
die "docker engine did not answer within ${timeout}s; see $log"
