#!/usr/bin/env bash
# Speed against the PyTorch peer, same GPU, same run (docs/perf.md):
# train_dit and torch_dit.py --compile on dit-s (B8, 8x32x32 latents = 2050 tokens
# per sample, 128 text tokens) and dit-1b (28 layers of the 1B shape, B1,
# 14x48x80 latents = 13,442 tokens, 300 text tokens), random data, side by side.
# Peer script from the folder $PEER (default .peer/, a local copy of the PyTorch peers).
# EXTRA: more train_dit flags (e.g. EXTRA="--attn-backward fast").
# Usage: bash scripts/bench_dit.sh [dit-s] [dit-1b]
set -uo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-.peer}   # PEER=none: mega.c alone (e.g. before/after a change, no peer runs)
OUT=${OUT:-log/bench}; mkdir -p "$OUT"
STEPS=${STEPS:-20}
[ -x train_dit ] || make train_dit > /dev/null
configs=${*:-"dit-s dit-1b"}
for c in $configs; do
    case $c in
        dit-s)  args="--preset dit-s --batch-size 8 --frames 8 --height 32 --width 32 --text-len 128";;
        dit-1b) args="--preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300";;
        *) echo "unknown config $c (expected dit-s or dit-1b)"; exit 1;;
    esac
    ./train_dit $args ${EXTRA:-} --random-data 1 --steps $STEPS --log-dir "" > "$OUT/mega_$c.log" 2>&1
    ours=$(grep '^summary' "$OUT/mega_$c.log" | sed -E 's/.*\| ([0-9]+) tok\/s.*/\1/')
    if [ "$PEER" = none ]; then grep -E '^(memory|summary)' "$OUT/mega_$c.log"; continue; fi
    python3 "$PEER/torch_dit.py" $c --compile --steps $STEPS > "$OUT/torch_$c.log" 2>&1
    peer=$(grep -o 'tok/s=[0-9]*' "$OUT/torch_$c.log" | cut -d= -f2)
    ratio=$(python3 -c "print(f'{$ours/$peer:.3f}')" 2>/dev/null || echo "?")
    echo "bench $c: mega.c ${ours:-?} tok/s | torch.compile ${peer:-?} tok/s | ratio $ratio" | tee -a "$OUT/bench.txt"
    grep -E '^(memory|summary)' "$OUT/mega_$c.log"; tail -1 "$OUT/torch_$c.log"
done
