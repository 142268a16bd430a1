#!/usr/bin/env bash
# Speed against the PyTorch peers, same GPU, same call (docs/perf.md): train_dit and
# torch_dit.py (--compile, and --compile --sdpa cudnn) on dit-s (B8, 8x32x32 latents = 2050
# tokens per sample, 128 text tokens) and dit-1b (28 layers of the 1B shape, B1, 14x48x80
# latents = 13,442 tokens, 300 text tokens), random data, alternated ROUNDS times (default 3);
# one line per config with the medians, their spread and the ratio to the faster peer
# (scripts/bench_lib.sh). Peer scripts from the folder $PEER (default .peer/, a local copy of
# the PyTorch peers). EXTRA: more train_dit flags (e.g. EXTRA="--attn-backward fast").
# Usage: bash scripts/bench_dit.sh [dit-s] [dit-1b]
set -uo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-.peer}   # PEER=none: mega.c alone (e.g. before/after a change, no peer runs)
OUT=${OUT:-log/bench}; mkdir -p "$OUT"
STEPS=${STEPS:-20}
. scripts/bench_lib.sh
[ -x train_dit ] || make train_dit > /dev/null
configs=${*:-"dit-s dit-1b"}
for c in $configs; do
    case $c in
        dit-s)  args="--preset dit-s --batch-size 8 --frames 8 --height 32 --width 32 --text-len 128";;
        dit-1b) args="--preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300";;
        *) echo "unknown config $c (expected dit-s or dit-1b)"; exit 1;;
    esac
    # shellcheck disable=SC2086  # args and EXTRA are lists of flags
    bench_config $c torch_dit.py ./train_dit $args ${EXTRA:-} --random-data 1 --steps $STEPS --log-dir ""
done
