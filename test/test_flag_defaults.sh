#!/usr/bin/env bash
# The defaults a preset decides (host only, no GPU): train_gpt's dropout is the shakespeare
# run's 0.1 only for that preset trained from scratch (0 for the other presets, which the
# PyTorch peers and the HF models run without, and for --init-hf), flags override it; a
# preset given as --preset=NAME builds that preset's model.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
check() {  # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then echo "PASS flag_defaults/$1: $3"; pass=$((pass + 1))
    else echo "FAIL flag_defaults/$1: expected '$2', got '$3'"; fail=$((fail + 1)); fi
}
dropout() { ./train_gpt "$@" --help | sed -nE 's/^ *--dropout X .*\(default ([^)]*)\)$/\1/p'; }
check dropout_shakespeare 0.1 "$(dropout)"
check dropout_gpt_s 0 "$(dropout --preset gpt-s)"
check dropout_gpt_1b_equals 0 "$(dropout --preset=gpt-1b)"
check dropout_llama 0 "$(dropout --preset llama3.2-1b)"
check dropout_init_hf 0 "$(dropout --init-hf test/data/hf/llama_tiny)"
check dropout_given 0.3 "$(dropout --preset gpt-s --dropout 0.3)"
check dropout_given_zero 0 "$(dropout --dropout 0)"
# --plan (host only) names the preset's layers and width
plan() { ./train_gpt "$@" --random-data 1 --plan 2>&1 | head -1 | sed -nE 's/.*gpt: ([0-9]+ layers, d_model [0-9]+).*/\1/p'; }
check preset_equals "16 layers, d_model 2048" "$(plan --preset=gpt-1b)"
check preset_space "16 layers, d_model 2048" "$(plan --preset gpt-1b)"
echo "flag defaults: $pass passed, $fail failed"
[ $fail -eq 0 ]
