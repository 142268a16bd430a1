#!/usr/bin/env bash
# Bad input to train_gpt: every case must exit non-zero with ONE line on
# stderr that names the flag or file, and must not crash (no signal, no core).
# All cases fail before the GPU is touched, so this runs on CPU-only machines.
set -u
cd "$(dirname "$0")/.."
T=test/tmp/bad_input
rm -rf "$T"; mkdir -p "$T"
pass=0; fail=0

# a small valid dataset to corrupt: vocab 300 tokenizer and shards
head -c 60000 data/tinyshakespeare.txt > "$T/text.txt"
./build_data --input "$T/text.txt" --out-dir "$T/ok" --vocab-size 300 --val-fraction 0.1 > /dev/null 2>&1 \
    || { echo "FAIL bad_input/setup: build_data failed"; exit 1; }
good="$T/ok/train_000.bin"
cp "$good" "$T/magic.bin";     printf '\x01\x02\x03\x04' | dd of="$T/magic.bin" bs=1 seek=0 conv=notrunc status=none
cp "$good" "$T/version.bin";   printf '\x09\x00\x00\x00' | dd of="$T/version.bin" bs=1 seek=4 conv=notrunc status=none
cp "$good" "$T/trunc.bin";     truncate -s $(( $(stat -c %s "$good") - 7 )) "$T/trunc.bin"
head -c 100 "$good" > "$T/header_only.bin"
printf 'not a tokenizer at all' > "$T/tok_bad.bin"
head -c 20 "$T/ok/tokenizer.bin" > "$T/tok_trunc.bin"

common="--preset tiny --tokenizer '' --steps 1 --batch-size 2 --seq-len 32 --val-every 0 --sample-every -1 --log-dir ''"
# expect NAME "PATTERN in the message" ARGS...
expect() {
    local name=$1 pattern=$2; shift 2
    local err="$T/$name.err"
    eval ./train_gpt "$@" > "$T/$name.out" 2> "$err"
    local rc=$?
    local lines; lines=$(grep -c . "$err")
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" -eq 1 ] && grep -q -- "$pattern" "$err"; then
        echo "PASS bad_input/$name: exit $rc: $(cat "$err")"; pass=$((pass + 1))
    else
        echo "FAIL bad_input/$name: exit $rc, $lines stderr lines, expected '$pattern': $(head -3 "$err")"; fail=$((fail + 1))
    fi
}

expect unknown_flag      "--bogus"              --bogus 1
expect non_numeric       "--batch-size"         $common --batch-size abc
expect trailing_garbage  "--lr"                 $common --lr 1e-3x
expect missing_value     "--steps"              $common --steps
expect bad_bool          "--qk-norm"            $common --qk-norm 2
expect unknown_preset    "--preset"             --preset gpt-9000
expect bad_dropout       "--dropout"            $common --dropout 1
expect bad_schedule      "--schedule"           $common --schedule exponential
expect kv_heads          "--n-kv-head"          $common --n-kv-head 3
expect seq_too_long      "--seq-len"            $common --seq-len 100000
expect accum_mismatch    "--total-batch-tokens" $common --total-batch-tokens 100
expect negative_batch    "--batch-size"         $common --batch-size -4
expect missing_data      "$T/none_"             $common --train-data "$T/none_*.bin"
expect wrong_magic       "magic.bin"            $common --train-data "$T/magic.bin" --vocab-size 300
expect wrong_version     "version.bin"          $common --train-data "$T/version.bin" --vocab-size 300
expect truncated_body    "trunc.bin"            $common --train-data "$T/trunc.bin" --vocab-size 300
expect header_only       "header_only.bin"      $common --train-data "$T/header_only.bin" --vocab-size 300
expect token_out_of_range "train_000.bin"       $common --train-data "$good" --vocab-size 200
expect bad_tokenizer     "tok_bad.bin"          $common --train-data "$good" --tokenizer "$T/tok_bad.bin"
expect trunc_tokenizer   "tok_trunc.bin"        $common --train-data "$good" --tokenizer "$T/tok_trunc.bin"
expect missing_tokenizer "nope.bin"             $common --train-data "$good" --tokenizer "$T/nope.bin"
expect small_vocab_flag  "--vocab-size"         $common --train-data "$good" --tokenizer "$T/ok/tokenizer.bin" --vocab-size 100

echo "bad_input: $pass passed, $fail failed"
[ $fail -eq 0 ]
