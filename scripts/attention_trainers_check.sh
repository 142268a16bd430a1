#!/usr/bin/env bash
# One device call for an attention kernel change (what issue 4 reports): the wgmma layout checks,
# ./dev/cuda/attention (every check and the perf-shape table), PyTorch's SDPA peers on the same
# GPU, the small checks under compute-sanitizer memcheck, and the trainers' tokens/s (gpt-1b,
# the 1B DiT; default deterministic backward and --attn-backward fast). Runs the binaries that
# are there (build them first: make dev/cuda/wgmma dev/cuda/attention train_gpt train_dit).
# Logs to $OUT (default log/attention_trainers_check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/attention_trainers_check}; mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
rc=0
./dev/cuda/wgmma > "$OUT/wgmma.log" 2>&1 || rc=1; tail -1 "$OUT/wgmma.log"
timeout 400 ./dev/cuda/attention > "$OUT/attention.log" 2>&1 || rc=1
grep '^FAIL' "$OUT/attention.log" | head -20; tail -1 "$OUT/attention.log"
[ -d .peer ] || cp -r ../shared/bench .peer 2>/dev/null
timeout 300 python3 .peer/torch_attn.py > "$OUT/torch_attn.log" 2>&1; tail -12 "$OUT/torch_attn.log"
echo "attention + peer: $(( $(date +%s) - t0 )) s"
if [ "${SANITIZE:-1}" = 1 ]; then
    ATTN_QUICK=1 timeout 300 compute-sanitizer --tool memcheck ./dev/cuda/attention > "$OUT/memcheck.log" 2>&1 || rc=1
    grep -E "ERROR SUMMARY|checks," "$OUT/memcheck.log" | tail -2
fi
STEPS=${STEPS:-20}
for bwd in deterministic fast; do
    ./train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 \
        --random-data 1 --steps $STEPS --log-dir "" --attn-backward $bwd > "$OUT/dit1b_$bwd.log" 2>&1 || rc=1
    ./train_gpt --preset gpt-1b --random-data 1 --batch-size 8 --seq-len 2048 --steps $STEPS --warmup 5 \
        --val-every 0 --sample-every -1 --log-dir "" --attn-backward $bwd > "$OUT/gpt1b_$bwd.log" 2>&1 || rc=1
    for m in dit1b gpt1b; do echo "$m [$bwd]: $(grep '^summary' "$OUT/${m}_$bwd.log" || tail -2 "$OUT/${m}_$bwd.log")"; done
done
echo "total: $(( $(date +%s) - t0 )) s"
exit $rc
