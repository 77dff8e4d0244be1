#!/usr/bin/env bash
# `make demo`: the whole stack on a local systemd host container.
#
# 1. start (or reuse) the host container `bmops-demo` from bmops/host:trixie,
#    with the same flags as the shared Molecule platform (DESIGN.md §6);
# 2. run playbooks/site.yml with inventory/demo: docker_engine installs Docker
#    in the host, app_stack copies and verifies the image archives from
#    ${BMOPS_CACHE:-/var/cache/bmops}/archives and brings the stack up;
# 3. print the readiness answer and how to reach the app.
#
# Needs: a running Docker engine (tests/harness/engine.sh) and the images
# (`.venv/bin/python tests/harness/images.py build`).
# Environment: BMOPS_DEMO_NAME (default bmops-demo), BMOPS_CACHE, ANSIBLE_PLAYBOOK.
set -euo pipefail

cd "$(dirname "$0")/../.."
name=${BMOPS_DEMO_NAME:-bmops-demo}
image=bmops/host:trixie
playbook=${ANSIBLE_PLAYBOOK:-.venv/bin/ansible-playbook}

die() { echo "demo.sh: ERROR: $*" >&2; exit 1; }
say() { echo "demo.sh: $*"; }

docker image inspect "$image" >/dev/null 2>&1 \
    || die "$image is missing: run .venv/bin/python tests/harness/images.py build"

# Every capability but SYS_RESOURCE (the sandbox lacks it; --privileged fails).
caps=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
      LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK
      IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN
      SYS_BOOT SYS_NICE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE
      AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM
      BLOCK_SUSPEND AUDIT_READ)
cap_args=()
for c in "${caps[@]}"; do cap_args+=(--cap-add "$c"); done

state=$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null || true)
case "$state" in
    running) say "reusing running container $name" ;;
    "") say "starting $name from $image"
        docker run -d --name "$name" --hostname "$name" \
            "${cap_args[@]}" \
            --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
            --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
            --tmpfs /run --tmpfs /run/lock \
            -v "$name-docker:/var/lib/docker" \
            "$image" /lib/systemd/systemd >/dev/null ;;
    *) say "starting existing container $name ($state)"; docker start "$name" >/dev/null ;;
esac

# wait for systemd to finish booting (degraded is fine: nothing we need failed)
for _ in $(seq 1 60); do
    s=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    case "$s" in running|degraded) break ;; esac
    sleep 1
done
say "systemd in $name: ${s:-unknown}"

"$playbook" -i inventory/demo/hosts.yml playbooks/site.yml "$@"

say "GET /health/ready inside $name:"
docker exec "$name" curl -sS http://127.0.0.1:8000/health/ready || die "the backend does not answer on 127.0.0.1:8000 in $name"; echo
say "the backend listens on 127.0.0.1:8000 inside $name; try:"
say "  docker exec $name curl -s http://127.0.0.1:8000/health/ready"
say "  docker exec $name docker compose -f /opt/backup-mgmt/compose.yaml ps"
say "remove it with: docker rm -f $name && docker volume rm $name-docker"
