#!/usr/bin/env bash
# Regenerate the goldens under several BLAS libraries, SIMD widths and thread counts and run
# golden/check_drift.py against the committed files for each: the committed values must hold
# within every case's committed tolerance wherever PyTorch runs, not only where they were made.
#
#   bash golden/drift-variants.sh [VARIANT ...]     # default: every variant this machine can run
#
# Variants (each a fresh `generate.py --out` into a temporary folder):
#   recipe       the committed recipe: pinned env (1 thread, OpenBLAS Prescott kernel, ATen
#                default kernels) with the system BLAS; bit-identical where the files were made
#   netlib       the same pins, but the reference BLAS (Debian libblas3) loaded first, as on a
#                machine where only python3-torch was installed
#   native-2t    unpinned: OpenBLAS and ATen pick this CPU's best kernels, 2 threads
#   avx2-1t      unpinned: OpenBLAS Haswell and ATen AVX2 kernels (an AVX2-only CPU), 1 thread
#   avx512-2t    unpinned: OpenBLAS SkylakeX and ATen AVX-512 kernels, 2 threads (AVX-512 CPUs)
#   netlib-avx2-2t  unpinned reference BLAS with ATen AVX2 kernels, 2 threads
# Exits 1 when any variant reports a violation, 0 otherwise; a variant this machine cannot run
# (no such BLAS installed, no AVX-512) is reported as skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
LIB=/usr/lib/x86_64-linux-gnu
NETLIB_DIR="$LIB/blas"
OPENBLAS_DIR="$LIB/openblas-openmp"
[ -d "$OPENBLAS_DIR" ] || OPENBLAS_DIR="$LIB/openblas-pthread"
has_avx512() { grep -qw avx512f /proc/cpuinfo; }

all=(recipe netlib native-2t avx2-1t avx512-2t netlib-avx2-2t)
[ $# -gt 0 ] && all=("$@")

run_variant() { # name -> prints the env assignments, or returns 1 when it cannot run here
  case "$1" in
    recipe) echo "" ;;
    netlib) [ -f "$NETLIB_DIR/libblas.so.3" ] || return 1; echo "LD_LIBRARY_PATH=$NETLIB_DIR" ;;
    native-2t) [ -f "$OPENBLAS_DIR/libblas.so.3" ] || return 1
      echo "LD_LIBRARY_PATH=$OPENBLAS_DIR SPECFORMER_GOLDEN_UNPINNED=1 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 OPENBLAS_CORETYPE= ATEN_CPU_CAPABILITY=" ;;
    avx2-1t) [ -f "$OPENBLAS_DIR/libblas.so.3" ] || return 1
      echo "LD_LIBRARY_PATH=$OPENBLAS_DIR SPECFORMER_GOLDEN_UNPINNED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2" ;;
    avx512-2t) [ -f "$OPENBLAS_DIR/libblas.so.3" ] && has_avx512 || return 1
      echo "LD_LIBRARY_PATH=$OPENBLAS_DIR SPECFORMER_GOLDEN_UNPINNED=1 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 OPENBLAS_CORETYPE=SkylakeX ATEN_CPU_CAPABILITY=avx512" ;;
    netlib-avx2-2t) [ -f "$NETLIB_DIR/libblas.so.3" ] || return 1
      echo "LD_LIBRARY_PATH=$NETLIB_DIR SPECFORMER_GOLDEN_UNPINNED=1 OMP_NUM_THREADS=2 ATEN_CPU_CAPABILITY=avx2" ;;
    *) echo "drift-variants: unknown variant '$1' (known: recipe netlib native-2t avx2-1t avx512-2t netlib-avx2-2t)" >&2; return 2 ;;
  esac
}

status=0
summary=()
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for v in "${all[@]}"; do
  assignments="$(run_variant "$v")"; rc=$?
  if [ $rc -eq 2 ]; then exit 2; fi
  if [ $rc -ne 0 ]; then summary+=("$v: skipped (not available on this machine)"); continue; fi
  out="$tmp/$v"
  printf '\n== variant %s: %s\n' "$v" "${assignments:-pinned recipe, system BLAS}"
  # shellcheck disable=SC2086
  if ! env $assignments "$PY" golden/generate.py --out "$out" >"$tmp/$v.log" 2>&1; then
    tail -20 "$tmp/$v.log"; summary+=("$v: generate.py FAILED"); status=1; continue
  fi
  "$PY" golden/check_drift.py --committed golden --fresh "$out" --quiet >"$tmp/$v.drift"; rc=$?
  grep -E '^(FAIL|     )' "$tmp/$v.drift" | head -20
  tail -4 "$tmp/$v.drift"
  line="$(grep -E 'violation' "$tmp/$v.drift" | tail -1)"
  worst="$(grep -E '^worst' "$tmp/$v.drift" | sed 's/^worst //' | tr '\n' ';' | sed 's/;$//')"
  summary+=("$v: ${line:-no result} — $worst")
  [ $rc -ne 0 ] && status=1
done
printf '\n== drift across variants\n'
printf '%s\n' "${summary[@]}"
exit $status
