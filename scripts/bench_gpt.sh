#!/usr/bin/env bash
# Speed against the PyTorch peer, same GPU, same run (../shared/spec/perf.md):
# train_gpt and torch_gpt.py --compile on gpt-s (B32 T1024) and gpt-1b (B8 T2048),
# random tokens, side by side. Peer script from $PEER (default .peer/, a copy of
# ../shared/bench). mega.c runs twice: the default deterministic attention backward and
# --deterministic 0 (atomic dQ, as PyTorch's SDPA backends). Usage: bash scripts/bench_gpt.sh [configs...]
set -uo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-.peer}
OUT=${OUT:-log/bench}; mkdir -p "$OUT"
STEPS=${STEPS:-30}
[ -x train_gpt ] || make train_gpt > /dev/null
configs=${*:-"gpt-s gpt-1b"}
for c in $configs; do
    case $c in gpt-s) B=32; T=1024;; gpt-1b) B=8; T=2048;; *) echo "unknown config $c"; exit 1;; esac
    for det in 1 0; do
        ./train_gpt --preset $c --random-data 1 --batch-size $B --seq-len $T --steps $STEPS --warmup 5 --deterministic $det \
            --val-every 0 --sample-every -1 --log-dir "" > "$OUT/mega_${c}_det$det.log" 2>&1
    done
    ours=$(grep '^summary' "$OUT/mega_${c}_det1.log" | sed -E 's/.*\| ([0-9]+) tok\/s.*/\1/')
    ours0=$(grep '^summary' "$OUT/mega_${c}_det0.log" | sed -E 's/.*\| ([0-9]+) tok\/s.*/\1/')
    python3 "$PEER/torch_gpt.py" $c --compile --steps $STEPS > "$OUT/torch_$c.log" 2>&1
    peer=$(grep -o 'tok/s=[0-9]*' "$OUT/torch_$c.log" | cut -d= -f2)
    ratio=$(python3 -c "print(f'{$ours/$peer:.3f}')" 2>/dev/null || echo "?")
    ratio0=$(python3 -c "print(f'{$ours0/$peer:.3f}')" 2>/dev/null || echo "?")
    echo "bench $c B$B T$T: mega.c ${ours:-?} tok/s (deterministic), ${ours0:-?} (--deterministic 0) | torch.compile ${peer:-?} tok/s | ratio $ratio, $ratio0" | tee -a "$OUT/bench.txt"
    grep -h '^summary' "$OUT/mega_${c}_det1.log" "$OUT/mega_${c}_det0.log"; tail -1 "$OUT/torch_$c.log"
done
