#!/usr/bin/env bash
# SFT of Llama-3.2-1B(-Instruct) as the seed does (scripts/sft_recipe.sh: GBS 128, LR 2.83e-5,
# warmup + cosine, bf16, HF weights in and out).
#   MODEL=path/to/Llama-3.2-1B-Instruct DATA=chats.jsonl bash scripts/sft_llama3.2_1b.sh
# The base model has no chat template: CHAT_TEMPLATE=the instruct model's chat_template.jinja.
exec "$(dirname "$0")/sft_recipe.sh" "$@"
