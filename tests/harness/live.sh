#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The live half of `make test`, in two lanes side by side. They use separate
# hosts and networks and spend much of their time waiting on services, so on
# a 2-core machine running them together cuts the wall time by the length of
# the shorter lane instead of adding it.
#
#   lane 1: the integration tests that share the converged stack host
#           (bmops-it-stack on the network bmops-it), in their STACK_ORDER;
#   lane 2: the Molecule scenarios, then the SSH transport, monitoring and review
#           modules (test_ssh_transport.py, test_monitoring_stack.py, test_review_stack.py) on a stack
#           host of their own (bmops-it-mon, network bmops-it-mon): they converge
#           their own stack (about 3 minutes) and save lane 1 about 24.
#
# Lane 1's output streams; lane 2's is kept in $BMOPS_MOLECULE_LOG and
# printed once that lane ends. Both lanes always finish (neither hides the
# other's failure) and the script fails if either did.
#
# Environment:
#   BMOPS_MOLECULE_LOG   where lane 2's output goes (default .cache/molecule.log)
#   BMOPS_LIVE_SERIAL=1  run everything in one session, then Molecule
set -uo pipefail

cd "$(dirname "$0")/../.."
log=${BMOPS_MOLECULE_LOG:-.cache/molecule.log}
mkdir -p "$(dirname "$log")"
lane2_modules="tests/integration/test_review_stack.py tests/integration/test_ssh_transport.py tests/integration/test_monitoring_stack.py"

if [ "${BMOPS_LIVE_SERIAL:-0}" = 1 ]; then
    make --no-print-directory integration && make --no-print-directory molecule
    exit $?
fi

start=$(date +%s)
(
    make --no-print-directory molecule
    mol_rc=$?
    echo "live.sh: Molecule rc=$mol_rc after $(( $(date +%s) - start )) s"
    basetemp=$(mktemp -d /tmp/bmops-lane2.XXXXXX)
    BMOPS_IT_HOST=bmops-it-mon BMOPS_IT_NETWORK=bmops-it-mon \
        make --no-print-directory integration IT="$lane2_modules --basetemp=$basetemp"
    mon_rc=$?
    rm -rf "$basetemp"
    echo "live.sh: lane 2 modules (review, SSH transport, monitoring) rc=$mon_rc after $(( $(date +%s) - start )) s"
    [ "$mol_rc" -eq 0 ] && [ "$mon_rc" -eq 0 ]
) > "$log" 2>&1 &
lane2_pid=$!
echo "live.sh: lane 2 (Molecule, then $lane2_modules) runs beside (pid $lane2_pid, output in $log)"

ignores=""
for m in $lane2_modules; do ignores="$ignores --ignore=$m"; done
make --no-print-directory integration IT="tests/integration$ignores"
int_rc=$?
int_end=$(date +%s)

wait "$lane2_pid"
lane2_rc=$?
end=$(date +%s)

echo "=== lane 2 output ($log)"
cat "$log"
echo "live.sh: lane 1 (integration) rc=$int_rc in $((int_end - start)) s;" \
     "lane 2 (Molecule + review, SSH, monitoring) rc=$lane2_rc; both done in $((end - start)) s"
[ "$int_rc" -eq 0 ] && [ "$lane2_rc" -eq 0 ]
