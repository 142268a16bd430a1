#!/usr/bin/env bash
# The memory plan against the measured peak (issue 17's "within 5%" table), on one GPU, in
# every recompute mode:
# for each configuration, the `--plan` total (printed without touching the GPU), then a short
# run of the same flags with the GPU's used memory polled by nvidia-smi every 50 ms; prints
# plan, peak and their ratio. The peak includes the CUDA context, as the plan's total does.
# Usage (GPU machine): OUT=dir STEPS=4 FIRST=1 bash scripts/plan_check.sh   (default OUT=log/plan_check)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/plan_check}; mkdir -p "$OUT"
make -j"$(nproc)" train_gpt train_dit > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
configs=(
    "train_gpt --preset tiny --batch-size 4 --seq-len 64"
    "train_gpt --preset gpt-1b --batch-size 4 --seq-len 2048"
    "train_gpt --preset llama3.2-1b --batch-size 4 --seq-len 8192"
    "train_gpt --preset qwen3-0.6b --batch-size 4 --seq-len 8192"
    "train_dit --preset tiny --batch-size 2 --frames 2 --height 4 --width 4"
    "train_dit --preset dit-s --batch-size 8 --frames 8 --height 32 --width 32 --text-len 128"
    "train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300"
    "train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 --ema-decay 0.9999"
    "train_gpt --preset llama3.2-1b --batch-size 4 --seq-len 8192 --recompute selective"
    "train_gpt --preset llama3.2-1b --batch-size 4 --seq-len 8192 --recompute full"
    "train_gpt --preset qwen3-0.6b --batch-size 4 --seq-len 8192 --recompute full --recompute-layers 14"
    "train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 --recompute selective"
    "train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 --recompute full"
    "train_dit --preset dit-s --batch-size 8 --frames 8 --height 32 --width 32 --text-len 128 --recompute full --recompute-layers 6"
)
printf '%-100s %10s %10s %8s\n' "config" "plan GiB" "peak GiB" "ratio" | tee "$OUT/plan_check.txt"
i=0
for c in "${configs[@]}"; do
    i=$((i + 1))
    [ "$i" -ge "${FIRST:-1}" ] || continue   # FIRST=k starts at the k-th configuration
    flags="$c --random-data 1 --log-dir \"\""
    plan=$(eval ./$flags --plan 2>&1 | sed -nE 's/^  total +([0-9.]+) GiB.*/\1/p')
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$OUT/smi_$i.txt" 2>/dev/null &
    smi=$!
    eval ./$flags --steps "${STEPS:-4}" > "$OUT/run_$i.log" 2>&1; rc=$?
    kill $smi 2>/dev/null; wait $smi 2>/dev/null
    base=$(head -1 "$OUT/smi_$i.txt"); peak=$(sort -n "$OUT/smi_$i.txt" | tail -1)
    # MiB used by the run: the peak minus what was in use before it started
    read -r peak_gib ratio < <(python3 -c "p=(${peak:-0}-${base:-0})/1024; print(f'{p:.3f}', f'{${plan:-0}/p:.3f}' if p > 0 else '?')")
    printf '%-100s %10s %10s %8s%s\n' "$c" "${plan:-?}" "$peak_gib" "$ratio" "$([ $rc = 0 ] || echo "  (run exit $rc)")" | tee -a "$OUT/plan_check.txt"
done
