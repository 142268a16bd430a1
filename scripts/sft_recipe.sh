#!/usr/bin/env bash
# Supervised fine-tuning of a Hugging Face chat model as the seeds do (Megatron SFT of Qwen3-0.6B
# and Llama-3.2-1B): the model's own chat template, the loss on the assistants' tokens only, a
# global batch of 128 conversations, LR 2.83e-5 with linear warmup and cosine decay, bf16 compute
# (fp32 master weights and AdamW), from the HF weights (--init-hf) back to a HF folder
# (--export-hf). scripts/sft_qwen3_0.6b.sh and scripts/sft_llama3.2_1b.sh call it with their
# model's defaults. Environment:
#   MODEL   the local HF model folder (config.json, safetensors, tokenizer and chat template)
#   DATA    JSONL conversations ({"messages": [...]} or {"prompt", "completion"}); several: space-separated
#   PROMPTS optional JSONL of held-out prompts (and answers): the run answers them at every sample
#   CHAT_TEMPLATE optional Jinja file: the chat template to use instead of MODEL's (a base model has none)
#   OUT     the run's folder (default runs/sft_<model folder name>): data/, ckpt/, log/, hf/
#   T (4096), B (micro-batch, 4), STEPS (1000), WARMUP (30), GBS (128 conversations)
#   EXTRA   more train_gpt flags (e.g. "--recompute selective", "--zero 1" under mpirun)
# A conversation a row (--pack 0). Checkpoints every 200 steps; rerunning the same line resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:?"set MODEL to the local Hugging Face model folder"}
DATA=${DATA:?"set DATA to the JSONL conversations"}
[ -d "$MODEL" ] || { echo "error: MODEL=$MODEL: no such folder" >&2; exit 1; }
OUT=${OUT:-runs/sft_$(basename "$MODEL")}
T=${T:-4096}; B=${B:-4}; STEPS=${STEPS:-1000}; WARMUP=${WARMUP:-30}; GBS=${GBS:-128}
PYTHON=${PYTHON:-python3}
if [ ! -f "$OUT/data/sft.json" ]; then
    inputs=(); for d in $DATA; do inputs+=(--input "$d"); done
    prompts=(); [ -n "${PROMPTS:-}" ] && prompts=(--prompts "$PROMPTS")
    [ -n "${CHAT_TEMPLATE:-}" ] && prompts+=(--chat-template "$CHAT_TEMPLATE")
    "$PYTHON" scripts/prepare_sft.py --model "$MODEL" "${inputs[@]}" "${prompts[@]}" --seq-len "$T" --val-fraction 0.01 --out "$OUT/data"
fi
make train_gpt
chat=(); [ -f "$OUT/data/prompts.txt" ] && chat=(--chat-prompts "$OUT/data/prompts.txt")
# GBS conversations a step: B a micro-batch, the rest gradient accumulation (and ranks, under mpirun)
# shellcheck disable=SC2086
./train_gpt --init-hf "$MODEL" --train-data "$OUT/data/train_*.bin" --val-data "$OUT/data/val_*.bin" --pack 0 \
    --seq-len "$T" --batch-size "$B" --total-batch-tokens $((GBS * T)) \
    --lr 2.83e-5 --schedule cosine --warmup "$WARMUP" --steps "$STEPS" --dropout 0 \
    --val-every 100 --sample-every 200 --sample-tokens 256 --temperature 0 "${chat[@]}" \
    --ckpt-dir "$OUT/ckpt" --ckpt-every 200 --resume 1 --log-dir "$OUT/log" \
    --export-hf "$OUT/hf" --hf-dtype bf16 ${EXTRA:-}
