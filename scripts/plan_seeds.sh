#!/usr/bin/env bash
# The memory plans of the seeds' own runs (issue 17 item 4), printed by --plan: host only,
# no GPU needed. One line per configuration: the command's flags, then the plan's total
# per GPU and its verdict; the whole plans go to $OUT/plan_seeds.txt (default test/tmp).
#   make train_gpt train_dit && bash scripts/plan_seeds.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-test/tmp}
mkdir -p "$OUT"
log="$OUT/plan_seeds.txt"
: > "$log"
plan() {   # TRAINER FLAGS...
    local out rc
    out=$("./$@" --plan 2>&1); rc=$?
    printf '$ ./%s --plan\n%s\n\n' "$*" "$out" >> "$log"
    local total verdict
    total=$(printf '%s\n' "$out" | awk '$1 == "total" {print $2}')
    verdict=$([ $rc -eq 0 ] && echo fits || echo "does not fit")
    printf '| `%s` | %s GiB | %s |\n' "$*" "${total:-?}" "$verdict"
}
echo "| command (--plan) | total per GPU | verdict (139.8 GiB) |"
echo "|---|---|---|"
# MUG-V 10B: 50,000 latent tokens per sample (20 x 100 x 100 latents, patch 1x2x2) on 8 H200s
for z in 1 2; do
    plan train_dit --preset 10B --random-data 1 --batch-size 1 --frames 20 --height 100 --width 100 --recompute full --zero $z --plan-gpus 8
done
plan train_dit --preset 10B --random-data 1 --batch-size 1 --frames 20 --height 100 --width 100 --recompute none --zero 2 --plan-gpus 8
plan train_dit --preset 10B --random-data 1 --batch-size 1 --frames 20 --height 100 --width 100 --recompute full --zero 2 --plan-gpus 8 --ema-decay 0.9999
# MUG-V 10B at 579,362 tokens per sample (71 x 136 x 240 latents: 1088 x 1920 video through an
# 8x spatial VAE; 71 x 68 x 120 patches + 2) on 8 H200s: one GPU's share without and with --cp 8
for c in 1 8; do
    plan train_dit --preset 10B --random-data 1 --batch-size 1 --frames 71 --height 136 --width 240 --recompute full --zero 2 --plan-gpus 8 --cp $c
done
# Emu3-8B at T 9216 on 8 H200s, ZeRO-1 and ZeRO-2, each recompute mode
for z in 1 2; do
    for m in none selective full; do
        plan train_gpt --preset emu3-8b --random-data 1 --batch-size 1 --seq-len 9216 --recompute $m --zero $z --plan-gpus 8
    done
done
# fine-tuning shapes on one GPU: Llama-3.2-1B and Qwen3-0.6B, micro-batch 1 x 4096 and their full contexts
for m in none selective full; do
    plan train_gpt --preset llama3.2-1b --random-data 1 --batch-size 1 --seq-len 4096 --recompute $m --plan-gpus 1
    plan train_gpt --preset llama3.2-1b --random-data 1 --batch-size 1 --seq-len 32768 --recompute $m --plan-gpus 1
    plan train_gpt --preset qwen3-0.6b --random-data 1 --batch-size 1 --seq-len 4096 --recompute $m --plan-gpus 1
    plan train_gpt --preset qwen3-0.6b --random-data 1 --batch-size 1 --seq-len 40960 --recompute $m --plan-gpus 1
done
# the 4B DiT on one H200: one 16 x 60 x 106 sample (25k tokens) and the longest with full recompute
for m in none selective full; do
    plan train_dit --preset 4B --random-data 1 --batch-size 1 --frames 16 --height 60 --width 106 --recompute $m --plan-gpus 1
done
plan train_dit --preset 4B --random-data 1 --batch-size 1 --frames 16 --height 60 --width 106 --recompute full --recompute-layers 40 --plan-gpus 1
plan train_dit --preset 4B --random-data 1 --batch-size 1 --frames 32 --height 80 --width 160 --recompute full --plan-gpus 1
plan train_dit --preset 4B --random-data 1 --batch-size 1 --frames 40 --height 80 --width 160 --recompute full --plan-gpus 1
echo "whole plans: $log"
