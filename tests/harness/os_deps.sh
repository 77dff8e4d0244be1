#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install the Debian packages that the bmops test harness needs on the
# controller. Idempotent: does nothing when everything is present. Needs root
# (CI and the demo run as root on a Debian 12 machine).
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v make >/dev/null 2>&1 || need+=(make)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# ansible-rulebook (the rule tests of extensions/eda) runs on a Java 17+ runtime
java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])' || need+=(openjdk-17-jre-headless)
# the HTML report opened in a real browser: headless Chromium prints it to PDF,
# pdftotext reads it back; Noto CJK so Japanese is drawn, not boxes
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)

if ((${#need[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bmops: missing Debian packages: ${need[*]}; run 'make setup' as root or install them" >&2
    exit 1
  fi
  echo "bmops: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# promtool and amtool for the monitoring role's unit tests (rules, routing):
# extracted from Debian's packages into the cache, never installed, so no
# Prometheus or Alertmanager service starts on the controller.
tools=${BMOPS_CACHE:-/var/cache/bmops}/tools
if [[ ! -x $tools/bin/promtool || ! -x $tools/bin/amtool ]]; then
  echo "bmops: extracting promtool and amtool into $tools/bin"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download prometheus prometheus-alertmanager >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download prometheus prometheus-alertmanager >/dev/null; }; })
  mkdir -p "$tools/bin"
  for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
  done
  install -m 0755 "$work/root/usr/bin/promtool" "$work/root/usr/bin/amtool" "$tools/bin/"
fi
