#!/usr/bin/env bash
# Communication settings against data-parallel scaling, on a machine with 2+ GPUs:
# gpt-1b (B8 T2048 random tokens, fixed per-GPU batch) on one GPU, then on N GPUs
# (mpirun) with each variant below; one line per run with its tokens/s and the
# fraction of N x the one-GPU figure. Logs under ${OUT:-log/multi_gpu_sweep}.
# Usage: bash scripts/multi_gpu_sweep.sh [N]        (N GPUs, default 2)
#   STEPS=16  ACCUM=1 (micro-steps per optimizer step: 4 reduces the gradients once per 4)
#   VARIANTS="default|;bucket200|--bucket-mb 200;ctas8|NCCL_MAX_CTAS=8;zero0|--zero 0"
#     name|args, ';'-separated; an argument with '=' is an environment variable
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-2}
OUT=${OUT:-log/multi_gpu_sweep}; mkdir -p "$OUT"
STEPS=${STEPS:-16}; ACCUM=${ACCUM:-1}
export NCCL_NVLS_ENABLE=0
VARIANTS=${VARIANTS:-"default|NCCL_DEBUG=INFO;bucket200|--bucket-mb 200;ctas8|NCCL_MAX_CTAS=8;bucket200_ctas8|--bucket-mb 200 NCCL_MAX_CTAS=8;zero0|--zero 0"}
make -j train_gpt > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
args=(--preset gpt-1b --random-data 1 --batch-size 8 --seq-len 2048 --steps "$STEPS" --warmup 2 --val-every 0 --sample-every -1 --log-dir "")
toks() { grep '^summary' "$OUT/$1.log" | sed -E 's/.*\| ([0-9]+) tok\/s.*/\1/'; }
CUDA_VISIBLE_DEVICES=0 ./train_gpt "${args[@]}" --total-batch-tokens $((8 * 2048 * ACCUM)) > "$OUT/one.log" 2>&1
t1=$(toks one)
echo "gpt-1b accum $ACCUM, 1 GPU: ${t1:-?} tok/s" | tee "$OUT/sweep.txt"
IFS=';' read -ra vs <<< "$VARIANTS"
for v in "${vs[@]}"; do
    name=${v%%|*}; rest=${v#*|}
    envs=(); extra=()
    for a in $rest; do if [[ $a == *=* && $a != --* ]]; then envs+=(-x "$a"); else extra+=("$a"); fi; done
    timeout 300 mpirun --allow-run-as-root -np "$N" --bind-to none -x NCCL_NVLS_ENABLE "${envs[@]}" \
        ./train_gpt "${args[@]}" --total-batch-tokens $((8 * 2048 * ACCUM * N)) "${extra[@]}" > "$OUT/$name.log" 2>&1
    tn=$(toks "$name")
    eff=$(awk -v a="${t1:-0}" -v b="${tn:-0}" -v n="$N" 'BEGIN { if (a > 0) printf "%.3f", b / (n * a); else print "?" }')
    echo "gpt-1b accum $ACCUM, $N GPUs, $name ($rest): ${tn:-?} tok/s = $eff of ${N}x" | tee -a "$OUT/sweep.txt"
done
