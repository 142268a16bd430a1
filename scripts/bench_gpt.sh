#!/usr/bin/env bash
# Speed against the PyTorch peers, same GPU, same call (docs/perf.md): train_gpt and
# torch_gpt.py (--compile, and --compile --sdpa cudnn) on gpt-s (B32 T1024) and gpt-1b
# (B8 T2048), random tokens, alternated ROUNDS times (default 3); one line per config with the
# medians, their spread and the ratio to the faster peer (scripts/bench_lib.sh). Peer scripts
# from the folder $PEER (default .peer/, a local copy of the PyTorch peers).
# Usage: bash scripts/bench_gpt.sh [configs...]
set -uo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-.peer}   # PEER=none: mega.c alone (e.g. before/after a change, no peer runs)
OUT=${OUT:-log/bench}; mkdir -p "$OUT"
STEPS=${STEPS:-30}
. scripts/bench_lib.sh
[ -x train_gpt ] || make train_gpt > /dev/null
configs=${*:-"gpt-s gpt-1b"}
for c in $configs; do
    case $c in gpt-s) B=32; T=1024;; gpt-1b) B=8; T=2048;; *) echo "unknown config $c"; exit 1;; esac
    # --dropout 0: the peers' model has none (the default of these presets too)
    bench_config $c torch_gpt.py ./train_gpt --preset $c --random-data 1 --batch-size $B --seq-len $T --steps $STEPS --warmup 5 \
        --dropout 0 --val-every 0 --sample-every -1 --log-dir ""
done
