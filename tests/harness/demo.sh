#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make demo`: the main job on a local demo stack.
#
# 1. start the managed host container `bmops-demo` (Debian 13, systemd; the
#    flags of the shared Molecule platform, tests/harness/hosts.py): reused
#    while it runs, recreated fresh when it is stopped;
# 2. deploy: playbooks/site.yml with inventory/demo (Docker Engine, the Compose
#    stack from the image archives, nginx, verified backups on cron);
# 3. run the daily check through ansible-runner, as AWX would (python -m bmops);
# 4. show the report (it links to Prometheus's and Alertmanager's alerts) and
#    copy it to ./reports/demo/;
# 5. say where Prometheus and Alertmanager answer (role monitoring).
#
# Needs the Docker engine and the images (`make images` does both).
# The host name is the one inventory/demo/hosts.yml names.
set -euo pipefail

cd "$(dirname "$0")/../.."
name=bmops-demo
py=${PYTHON:-.venv/bin/python}
say() { echo "demo: $*"; }

"$py" tests/harness/hosts.py up "$name"

say "deploying the stack on $name (playbooks/site.yml)"
"$py" -m bmops run site -i inventory/demo -q

# The report as the manual's readers read it: Japanese, times in JST
# (BMOPS_DEMO_LANGUAGE=en, BMOPS_DEMO_TIMEZONE=UTC for the English one).
lang=${BMOPS_DEMO_LANGUAGE:-ja}
zone=${BMOPS_DEMO_TIMEZONE:-Asia/Tokyo}
say "running the daily check (playbooks/daily_check.yml) through ansible-runner ($lang, $zone)"
set +e
"$py" -m bmops run daily_check -i inventory/demo -e "bm_language=$lang" -e "bm_timezone=$zone"
check_rc=$?
set -e

mkdir -p reports/demo
for ext in md html json; do
  docker cp "$name:/var/lib/bmops/reports/daily-latest.$ext" "reports/demo/daily-latest.$ext" \
    >/dev/null
done
echo
cat reports/demo/daily-latest.md
echo
say "reports copied to $(pwd)/reports/demo/ (open daily-latest.html in a browser)"
say "the app: docker exec $name curl -s http://127.0.0.1:8000/health/ready"
say "through nginx: docker exec $name curl -sk https://127.0.0.1/health/ready"
say "run any procedure: .venv/bin/bmops list; .venv/bin/bmops run weekly_check"
if docker exec "$name" curl -sf -o /dev/null --max-time 3 http://127.0.0.1:9090/-/ready; then
  say "Prometheus answers on $name at 127.0.0.1:9090 (bound to 127.0.0.1: single-host layout):"
  say "  docker exec $name curl -s 'http://127.0.0.1:9090/api/v1/alerts'"
  say "  browse it: ssh -L or docker exec $name curl -s http://127.0.0.1:9090/api/v1/rules"
  say "Alertmanager answers on $name at 127.0.0.1:9093:"
  say "  docker exec $name curl -s http://127.0.0.1:9093/api/v2/alerts"
  say "firing now: $(docker exec "$name" curl -s http://127.0.0.1:9090/api/v1/alerts \
    | "$py" -c 'import json,sys; a=json.load(sys.stdin)["data"]["alerts"]; print(", ".join(sorted(x["labels"]["alertname"]+" "+x["labels"]["severity"] for x in a if x["state"]=="firing")) or "none")')"
fi
say "remove the demo host: $py tests/harness/hosts.py down $name"
case $check_rc in
  0) say "daily check: every threshold within limits" ;;
  2) say "daily check: thresholds breached (exit code 2) - the report above says which" ;;
  *) say "daily check: did not complete (exit code $check_rc)"; exit "$check_rc" ;;
esac
