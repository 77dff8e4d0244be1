#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bmops benchmarks (docs/architecture.md, "Benchmarks"): brings up the host container `bmops-bench`,
# converges site.yml + the db_backup role, measures side by side in one run and
# rewrites BENCHMARKS.md.  `make bench` runs it after `make images`.
#   BMOPS_KEEP=1 bash bench/run.sh     # keep the host afterwards
# Settings (environment): see the docstring of bench/bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export PATH="$PWD/.venv/bin:$PATH"
"$PWD/.venv/bin/python" bench/bench.py "$@"
# monitoring: detection latency and idle cost (appends its section to BENCHMARKS.md)
"$PWD/.venv/bin/python" bench/monitoring.py
# off-host copies and the standby: bytes of a daily copy, RTO onto a fresh standby
"$PWD/.venv/bin/python" bench/offsite.py
# SSH as a sudo admin, the opt-in Mitogen, 1/5/10 real hosts (puts its section first)
exec "$PWD/.venv/bin/python" bench/fleet.py
