#!/usr/bin/env bash
# Build + GPU tests + benchmarks in one go, for the GPU machine. Logs go to OUTDIR (default
# $OUT or ./gpu-check-out). The last lines printed are a short summary.
#   tools/gpu_check.sh [OUTDIR]
# Environment: SEQMIX_CUDA_ARCHS (default "80;90a": both paths must compile), SEQMIX_JOBS,
# SEQMIX_SKIP_BENCH=1 / SEQMIX_SKIP_GPU_TESTS=1 / SEQMIX_SKIP_E2E=1 to skip the benchmarks, the
# gpu-labelled tests or the end-to-end quickstart run.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$out"
jobs="${SEQMIX_JOBS:-$(nproc)}"
archs="${SEQMIX_CUDA_ARCHS:-80;90a}"
export NCCL_NVLS_ENABLE=0

{ nvidia-smi; nvcc --version; cmake --version; } > "$out/env.txt" 2>&1
t0=$(date +%s)
cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES="$archs" > "$out/configure.log" 2>&1 || {
  tail -30 "$out/configure.log"; echo "CONFIGURE FAILED"; exit 1; }
cmake --build build/cuda -j "$jobs" > "$out/build.log" 2>&1 || {
  grep -E "error|Error" "$out/build.log" | head -40; echo "BUILD FAILED"; exit 1; }
t1=$(date +%s)
echo "build: $((t1 - t0)) s"

gpu_rc=0
if [[ "${SEQMIX_SKIP_GPU_TESTS:-0}" != 1 ]]; then
  ctest --test-dir build/cuda -L gpu --output-on-failure -j 4 > "$out/ctest_gpu.log" 2>&1
  gpu_rc=$?
fi
ctest --test-dir build/cuda -L cpu --output-on-failure -j "$jobs" > "$out/ctest_cpu.log" 2>&1
cpu_rc=$?
t2=$(date +%s)
echo "tests: $((t2 - t1)) s"

if [[ "${SEQMIX_SKIP_BENCH:-0}" != 1 ]]; then
  bin=build/cuda/bin/seqmix
  {
    for i in 1 2 3; do $bin bench op matmul --m 8192 --n 8192 --k 8192 --dtype bf16; done
    $bin bench op matmul --m 4096 --n 4096 --k 4096 --dtype bf16
    $bin bench op matmul --m 8192 --n 8192 --k 8192 --dtype f32
    for i in 1 2 3; do $bin bench op copy --mib 1024; done
    $bin bench op copy --mib 4096
    for d in 64 128; do
      $bin bench kernel attention --batch 8 --seq-len 2048 --heads 16 --head-dim $d
      $bin bench kernel attention --batch 4 --seq-len 4096 --heads 16 --head-dim $d
    done
    $bin bench kernel attention --batch 2 --seq-len 16384 --heads 8 --head-dim 128
    $bin bench kernel attention --batch 8 --seq-len 2048 --heads 16 --kv-heads 4 --head-dim 64 \
      --window 512
    $bin bench kernel short_conv --batch 8 --seq-len 2048 --channels 2048 --width 4
    # The linear-RNN kernels at the three shapes of issues F3 / F4 (docs/benchmarks.md).
    for shape in "--batch 8 --seq-len 2048 --heads 16 --head-dim 64" \
                 "--batch 4 --seq-len 4096 --heads 16 --head-dim 128" \
                 "--batch 2 --seq-len 16384 --heads 8 --head-dim 128"; do
      for m in linear_attn retention mamba2 gla hgrn2; do $bin bench kernel $m $shape; done
      for m in deltanet gated_deltanet; do $bin bench kernel $m --algo chunked $shape; done
      $bin bench kernel kda --algo chunked $shape
      $bin bench kernel kda --algo recurrent $shape
    done
  } > "$out/bench.log" 2>&1
fi

# End to end: the README main job on the GPU.
if [[ "${SEQMIX_SKIP_E2E:-0}" != 1 ]]; then
  rm -rf runs/gpu-quickstart
  ( time build/cuda/bin/seqmix train configs/quickstart.yaml --run-dir runs/gpu-quickstart ) \
    > "$out/quickstart.log" 2>&1
  echo "quickstart rc=$?"
fi

echo "== summary =="
for f in ctest_gpu ctest_cpu; do
  [[ -f "$out/$f.log" ]] || continue
  if grep -qE "tests passed|tests failed" "$out/$f.log"; then
    grep -E "tests passed|tests failed|\(Skipped\)|\(Failed\)|\*\*\*" "$out/$f.log" | tail -25
  else
    echo "$f: NO TESTS RAN"; tail -15 "$out/$f.log"; gpu_rc=1
  fi
done
[[ -f "$out/bench.log" ]] &&
  grep -E "^(matmul|copy|attention|short_conv|linear_attn|retention|mamba2|gla|hgrn2|deltanet|gated_deltanet|kda)|error" "$out/bench.log"
[[ -f "$out/quickstart.log" ]] && grep -E "final|real|error" "$out/quickstart.log"
exit $(( gpu_rc != 0 || cpu_rc != 0 ))
