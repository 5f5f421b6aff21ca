#!/usr/bin/env bash
# The deep control run of the laws (issue 12): PyTorch (examples/torch) and the bundled NumPy
# example must pass every golden case, gradient check and law, with RUNS cases per law
# (default 1000), in float64 and in float32. A law that fails here has a wrong tolerance.
#
#     scripts/torch-control.sh [RUNS]
#
# The four runs go JOBS at a time (default 2: each run is one node process and one Python
# process taking turns, so two runs keep two cores busy). Prints each run's wall time and last
# line, and the failures of a failed run; exits 1 if any run failed. The full reports stay in
# $CONTROL_DIR (default a new temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-1000}"
JOBS="${JOBS:-2}"
PY=/usr/bin/python3
OUT="${CONTROL_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/control.XXXXXX")}"
mkdir -p "$OUT"
[ -f dist/cli/main.js ] || npm run build >/dev/null || { echo "control runs: npm run build failed"; exit 1; }

one() { # impl dtype: run one control, write its report and a status line
  local impl="$1" dtype="$2" name t0 rc
  name="$(basename "$(dirname "$impl")")-$dtype"
  t0=$(date +%s)
  node bin/specformer.mjs verify --impl "$PY $impl" --properties --runs "$RUNS" --dtype "$dtype" --timeout 120 >"$OUT/$name.txt" 2>&1
  rc=$?
  echo "control $impl $dtype (runs $RUNS): exit $rc in $(( $(date +%s) - t0 )) s — $(tail -1 "$OUT/$name.txt")" >"$OUT/$name.status"
  echo "$rc" >"$OUT/$name.rc"
}

start=$(date +%s)
runs=()
for impl in "examples/torch/impl.py" "examples/numpy/impl.py"; do
  for dtype in f64 f32; do runs+=("$impl $dtype"); done
done
for r in "${runs[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  # shellcheck disable=SC2086 # "impl dtype": two words on purpose
  one $r &
done
wait

status=0
for r in "${runs[@]}"; do
  set -- $r
  name="$(basename "$(dirname "$1")")-$2"
  cat "$OUT/$name.status"
  if [ "$(cat "$OUT/$name.rc" 2>/dev/null || echo 1)" != 0 ]; then
    status=1
    sed -n '/^failures/,/^declined/p' "$OUT/$name.txt"
    tail -40 "$OUT/$name.txt" | grep -v '^ ' | tail -15
  fi
done
echo "control runs: $([ $status -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s (reports in $OUT)"
exit $status
