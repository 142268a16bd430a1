#!/usr/bin/env bash
# Behaviour check for a change that must not change results (a refactor): runs the
# default `./train_gpt` and `./train_dit --steps 300` and keeps their step and
# validation lines without the timing fields, with one sha256 per trainer. Run it
# on the commit before and after the change (same GPU kind): the hashes must agree.
# Usage (GPU machine): OUT=dir bash scripts/behaviour_check.sh   (default OUT=log/behaviour)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/behaviour}; mkdir -p "$OUT"
make -j"$(nproc)" train_gpt train_dit > "$OUT/build_behaviour.log" 2>&1 || { tail -30 "$OUT/build_behaviour.log"; exit 1; }
./train_gpt --log-dir "$OUT/gpt" > "$OUT/train_gpt.log" 2>&1
./train_dit --steps 300 --log-dir "$OUT/dit" > "$OUT/train_dit.log" 2>&1
for t in gpt dit; do
    # step/val lines minus the fields that measure time (ms, tok/s, MFU)
    grep -E '^(step|val)' "$OUT/train_$t.log" |
        sed -E 's/ \| [0-9.]+ ms//; s/ \| [0-9.]+ tok\/s//; s/ \| MFU [0-9.]+%//' > "$OUT/loss_$t.txt"
    echo "behaviour $t: $(wc -l < "$OUT/loss_$t.txt") lines, sha256 $(sha256sum < "$OUT/loss_$t.txt" | cut -c1-64)"
done
