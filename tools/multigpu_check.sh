#!/usr/bin/env bash
# Data-parallel checks for a machine with 2 GPUs (issue F6). Logs go to OUTDIR (default $OUT);
# the last lines printed are a short summary.   tools/multigpu_check.sh [OUTDIR]
#  (a) 2 GPUs x batch b track 1 GPU x batch 2b step for step (fp32 and bf16);
#  (b) throughput of configs/transformer_125m.yaml on 1 and 2 GPUs (tokens/s over all ranks;
#      SEQMIX_TPUT_REPEATS runs each, SEQMIX_TPUT_VARIANTS="tag:ENV=V tag2:train.key=value ..."
#      adds 2-GPU runs with an environment variable or a config override);
#  (c) killing one rank stops the run, naming the rank; --resume continues it;
#  (d) a checkpoint written on 2 GPUs resumes on 1.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-multigpu-out}}"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
bin=build/cuda/bin/seqmix
if [[ "${SEQMIX_SKIP_BUILD:-0}" != 1 ]]; then
  cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES="${SEQMIX_CUDA_ARCHS:-90a}" > "$out/configure.log" 2>&1
  cmake --build build/cuda -j "$(nproc)" --target seqmix test_distributed_nccl > "$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log"; exit 1; }
fi
# SEQMIX_MG_PARTS selects the parts (default "tests a b c d"), e.g. to split them over two calls.
part() { [[ " ${SEQMIX_MG_PARTS:-tests a b c d} " == *" $1 "* ]]; }
# The multigpu-labelled suite (run directly: only its executable was built).
if part tests; then
build/cuda/tests/train/test_distributed_nccl > "$out/test_multigpu.log" 2>&1
echo "multigpu tests: exit $? ($(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/test_multigpu.log" | tr '\n' ' '))"
fi

losses() { grep -v '"split"' "$1/metrics.jsonl" | sed -E 's/.*"step": ([0-9]+).*"loss": ([^,]+),.*/\1 \2/'; }
track() {  # $1 = precision
  local cfg=(configs/quickstart.yaml --set data.seq_len=256 --set data.mqar.num_kv_pairs=16
             --set model.d_model=256 --set model.mixers.A.n_heads=4 --set train.steps=40
             --set train.log_every=1 --set train.eval_every=0 --set train.precision=$1 --quiet
             --set optim.warmup_steps=5)
  rm -rf runs/mg1 runs/mg2
  $bin train "${cfg[@]}" --set data.batch_size=32 --run-dir runs/mg1 > "$out/track1_$1.log" 2>&1
  $bin launch --nproc 2 -- train "${cfg[@]}" --set data.batch_size=16 --run-dir runs/mg2 \
    > "$out/track2_$1.log" 2>&1
  paste <(losses runs/mg1) <(losses runs/mg2) > "$out/track_$1.txt"
  awk -v p=$1 '{d = $2 - $4; if (d < 0) d = -d; if (d > m) m = d; if ($2 == $4) eq++; n++}
       END {printf "(a) %s: %d steps, max |loss_1gpu - loss_2gpu| = %.3g, bit-equal steps %d\n", p, n, m, eq}' \
    "$out/track_$1.txt"
}
if part a; then track fp32; track bf16; fi

# (b) tokens/s over all ranks: 70 steps, the median of the last five 10-step log intervals (the
# first interval includes warm-up). Each configuration runs SEQMIX_TPUT_REPEATS times (default 2).
tput() {  # $1 = nproc, $2 = tag, then extra arguments for train
  local n=$1 tag=$2; shift 2
  rm -rf runs/tp_$tag
  $bin launch --nproc $n -- train configs/transformer_125m.yaml --set optim.warmup_steps=10 --set train.steps=70 \
    --set train.log_every=10 --set train.eval_every=0 --set train.checkpoint_every=0 \
    --set data.mqar.test_examples=8 --run-dir runs/tp_$tag "$@" > "$out/tput_$tag.log" 2>&1
  grep -v '"split"' runs/tp_$tag/metrics.jsonl | tail -5 | sed -E 's/.*"tokens_per_s": ([^,]+),.*/\1/' | sort -g | sed -n 3p
}
if part b; then
reps="${SEQMIX_TPUT_REPEATS:-2}"
declare -a r1 r2
for i in $(seq "$reps"); do r1+=("$(tput 1 1gpu_$i)"); r2+=("$(tput 2 2gpu_$i)"); done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
t1=$(med "${r1[@]}"); t2=$(med "${r2[@]}")
echo "(b) transformer_125m tokens/s: 1 GPU ${r1[*]} (median $t1), 2 GPUs ${r2[*]} (median $t2), ratio $(awk -v a=$t1 -v b=$t2 'BEGIN{printf "%.4f", b/a}')"
# Optional variants of the 2-GPU run: SEQMIX_TPUT_VARIANTS="tag:ENV=V tag2:train.key=value ..."
# (a dotted key is a config override, anything else an environment variable).
for var in ${SEQMIX_TPUT_VARIANTS:-}; do
  IFS=: read -r tag rest <<< "$var"
  envs=(); sets=()
  IFS=: read -ra parts <<< "$rest"
  for x in "${parts[@]}"; do
    if [[ $x == *.*=* ]]; then sets+=(--set "$x"); else envs+=("$x"); fi
  done
  v=$(env "${envs[@]}" bash -c "$(declare -f tput); bin=$bin; out=$out; tput 2 var_$tag ${sets[*]}")
  echo "(b) variant $tag (${envs[*]} ${sets[*]}): 2 GPUs $v, ratio $(awk -v a=$t1 -v b=$v 'BEGIN{printf "%.4f", b/a}')"
done
fi

# (c) kill one rank mid-run.
part c || exit 0
rm -rf runs/kill
$bin launch --nproc 2 -- train configs/transformer_125m.yaml --set optim.warmup_steps=10 --set train.steps=400 \
  --set train.log_every=10 --set train.eval_every=0 --set train.checkpoint_every=20 \
  --set data.mqar.test_examples=8 --run-dir runs/kill > "$out/kill.log" 2>&1 &
lpid=$!
for _ in $(seq 120); do [[ -n "$(ls runs/kill/checkpoints 2>/dev/null)" ]] && break; sleep 1; done
victim=$(pgrep -P $lpid | tail -1)
t0=$(date +%s.%N); kill -9 "$victim"; wait $lpid; rc=$?; t1k=$(date +%s.%N)
echo "(c) killed pid $victim: launcher exit $rc after $(awk -v a=$t0 -v b=$t1k 'BEGIN{printf "%.1f", b-a}') s; $(grep -m1 'launch: rank' "$out/kill.log")"
last=$(ls runs/kill/checkpoints | tail -1)
$bin launch --nproc 2 -- train configs/transformer_125m.yaml --set optim.warmup_steps=10 --set train.steps=400 \
  --set train.log_every=10 --set train.eval_every=0 --set train.checkpoint_every=20 \
  --set data.mqar.test_examples=8 --run-dir runs/kill --resume --stop-at-step 60 > "$out/kill_resume.log" 2>&1
echo "(c) resumed from $last: exit $?, $(grep -c '"loss"' runs/kill/metrics.jsonl) metric lines, last: $(tail -1 runs/kill/metrics.jsonl | cut -c1-80)"
# (d) the same run directory continued on 1 GPU.
part d || exit 0
$bin train configs/transformer_125m.yaml --set optim.warmup_steps=10 --set train.steps=400 --set train.log_every=10 \
  --set train.eval_every=0 --set train.checkpoint_every=20 --set data.mqar.test_examples=8 \
  --run-dir runs/kill --resume --stop-at-step 80 > "$out/resume1.log" 2>&1
echo "(d) 2-GPU checkpoint resumed on 1 GPU: exit $?, last: $(tail -1 runs/kill/metrics.jsonl | cut -c1-80)"
