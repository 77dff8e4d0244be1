#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The live half of `make test`: the integration tests and the Molecule
# scenarios side by side. They use separate hosts (bmops-it-* and
# bmops-host-<scenario>) and spend much of their time waiting on services,
# so running them together on a 2-core machine cuts the wall time by about
# the length of the Molecule run instead of adding it.
#
# The integration output streams; the Molecule output is kept in
# $BMOPS_MOLECULE_LOG and printed once that run ends. Both runs always finish
# (neither hides the other's failure) and the script fails if either did.
#
# Environment:
#   BMOPS_MOLECULE_LOG   where the Molecule output goes (default .cache/molecule.log)
#   BMOPS_LIVE_SERIAL=1  run them one after the other, as before
set -uo pipefail

cd "$(dirname "$0")/../.."
log=${BMOPS_MOLECULE_LOG:-.cache/molecule.log}
mkdir -p "$(dirname "$log")"

if [ "${BMOPS_LIVE_SERIAL:-0}" = 1 ]; then
    make --no-print-directory integration && make --no-print-directory molecule
    exit $?
fi

start=$(date +%s)
make --no-print-directory molecule > "$log" 2>&1 &
mol_pid=$!
echo "live.sh: Molecule runs beside the integration tests (pid $mol_pid, output in $log)"

make --no-print-directory integration
int_rc=$?
int_end=$(date +%s)

wait "$mol_pid"
mol_rc=$?
end=$(date +%s)

echo "=== Molecule output ($log)"
cat "$log"
echo "live.sh: integration rc=$int_rc in $((int_end - start)) s;" \
     "Molecule rc=$mol_rc; both done in $((end - start)) s"
[ "$int_rc" -eq 0 ] && [ "$mol_rc" -eq 0 ]
