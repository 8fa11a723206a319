#!/usr/bin/env bash
# Runs the MQAR sweeps behind docs/results/ on one GPU machine and copies their reports to OUTDIR.
#   tools/mqar_sweeps.sh OUTDIR [SWEEP_SECONDS]
# Environment: SEQMIX_SKIP_BUILD=1 (reuse build/cuda), SEQMIX_PER_GPU (cells sharing a GPU,
# default 6), SEQMIX_SWEEPS (default "mqar_quick zoology_fig2_reduced"). Sweep directories live
# under build/sweeps/ so that an interrupted sweep (time limit) continues on the next call.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?OUTDIR}"
limit="${2:-0}"
mkdir -p "$out"
mkdir -p build
if [[ "${SEQMIX_SKIP_BUILD:-0}" != 1 ]]; then
  cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES="${SEQMIX_CUDA_ARCHS:-90a}" > build/configure-sweeps.log 2>&1
  cmake --build build/cuda -j "$(nproc)" --target seqmix > build/build-sweeps.log 2>&1 ||
    { tail -30 build/build-sweeps.log; exit 1; }
fi
start=$(date +%s)
for s in ${SEQMIX_SWEEPS:-mqar_quick zoology_fig2_reduced}; do
  left=0
  if [[ "$limit" -gt 0 ]]; then
    left=$((limit - ($(date +%s) - start)))
    [[ $left -le 5 ]] && { echo "$s: no time left"; continue; }
  fi
  t0=$(date +%s)
  if [[ $left -gt 0 ]]; then
    timeout -s TERM "$left" build/cuda/bin/seqmix sweep "configs/sweeps/$s.yaml" \
      --dir "build/sweeps/$s" --per-gpu "${SEQMIX_PER_GPU:-6}" > "$out/$s.log" 2>&1
  else
    build/cuda/bin/seqmix sweep "configs/sweeps/$s.yaml" --dir "build/sweeps/$s" \
      --per-gpu "${SEQMIX_PER_GPU:-6}" > "$out/$s.log" 2>&1
  fi
  echo "$s: exit $?, $(( $(date +%s) - t0 )) s, $(grep -c ',ok,' "build/sweeps/$s/results.csv") cells ok"
  for f in results.csv results.md results.svg; do cp "build/sweeps/$s/$f" "$out/${s}_$f" 2>/dev/null; done
done
