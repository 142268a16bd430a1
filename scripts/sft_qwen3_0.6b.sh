#!/usr/bin/env bash
# SFT of Qwen3-0.6B as the seed does (scripts/sft_recipe.sh: GBS 128, LR 2.83e-5, warmup + cosine,
# bf16, HF weights in and out).   MODEL=path/to/Qwen3-0.6B DATA=chats.jsonl bash scripts/sft_qwen3_0.6b.sh
exec "$(dirname "$0")/sft_recipe.sh" "$@"
