#!/usr/bin/env bash
# The deep control run of the laws (issue 12): PyTorch (examples/torch) and the bundled NumPy
# example must pass every golden case, gradient check and law, with RUNS cases per law
# (default 1000), in float64 and in float32. A law that fails here has a wrong tolerance.
#
#     scripts/torch-control.sh [RUNS]
#
# Prints each run's wall time; exits 1 if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-1000}"
PY=/usr/bin/python3
status=0
start=$(date +%s)
for impl in "examples/torch/impl.py" "examples/numpy/impl.py"; do
  for dtype in f64 f32; do
    t0=$(date +%s)
    node bin/specformer.mjs verify --impl "$PY $impl" --properties --runs "$RUNS" --dtype "$dtype" --timeout 120 >"${TMPDIR:-/tmp}/control-$(basename "$(dirname "$impl")")-$dtype.txt" 2>&1
    rc=$?
    tail -1 "${TMPDIR:-/tmp}/control-$(basename "$(dirname "$impl")")-$dtype.txt"
    echo "control $impl $dtype (runs $RUNS): exit $rc in $(( $(date +%s) - t0 )) s"
    [ $rc -eq 0 ] || { status=1; sed -n '/^failures/,/^declined/p' "${TMPDIR:-/tmp}/control-$(basename "$(dirname "$impl")")-$dtype.txt"; }
  done
done
echo "control runs: $([ $status -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
exit $status
