#!/usr/bin/env bash
# Speed against the PyTorch peer, same GPU, same run (docs/perf.md):
# train_gpt and torch_gpt.py --compile on gpt-s (B32 T1024) and gpt-1b (B8 T2048),
# random tokens, side by side. Peer script from the folder $PEER (default .peer/,
# a local copy of the PyTorch peers). Usage: bash scripts/bench_gpt.sh [configs...]
set -uo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-.peer}   # PEER=none: mega.c alone (e.g. before/after a change, no peer runs)
OUT=${OUT:-log/bench}; mkdir -p "$OUT"
STEPS=${STEPS:-30}
[ -x train_gpt ] || make train_gpt > /dev/null
configs=${*:-"gpt-s gpt-1b"}
for c in $configs; do
    case $c in gpt-s) B=32; T=1024;; gpt-1b) B=8; T=2048;; *) echo "unknown config $c"; exit 1;; esac
    ./train_gpt --preset $c --random-data 1 --batch-size $B --seq-len $T --steps $STEPS --warmup 5 \
        --val-every 0 --sample-every -1 --log-dir "" > "$OUT/mega_$c.log" 2>&1
    ours=$(grep '^summary' "$OUT/mega_$c.log" | sed -E 's/.*\| ([0-9]+) tok\/s.*/\1/')
    if [ "$PEER" = none ]; then grep -E '^(memory|summary)' "$OUT/mega_$c.log"; continue; fi
    python3 "$PEER/torch_gpt.py" $c --compile --steps $STEPS > "$OUT/torch_$c.log" 2>&1
    peer=$(grep -o 'tok/s=[0-9]*' "$OUT/torch_$c.log" | cut -d= -f2)
    ratio=$(python3 -c "print(f'{$ours/$peer:.3f}')" 2>/dev/null || echo "?")
    echo "bench $c B$B T$T: mega.c ${ours:-?} tok/s | torch.compile ${peer:-?} tok/s | ratio $ratio" | tee -a "$OUT/bench.txt"
    grep '^summary' "$OUT/mega_$c.log"; tail -1 "$OUT/torch_$c.log"
done
