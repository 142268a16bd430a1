#!/usr/bin/env bash
# Activation recompute on one GPU (issue 17 item 3): the seeds' sizes that need it, and what
# it costs. Each run: a few steps on random data; prints the run's summary (median step time,
# tokens/s), the peak memory nvidia-smi saw and the start-up memory line's activations.
#   (a) train_dit --preset 4B, one 16x60x106 sample (25k tokens): full; and full over the
#       first 40 blocks (selective alone does not fit: scripts/plan_seeds.sh)
#   (b) the longest 4B sample with full recompute: 32x80x160 (102k tokens), 40x80x160 (128k)
#   (c) llama3.2-1b at T 32768 and qwen3-0.6b at T 40960, each mode
#   (d) the cost: step time of selective and full over none on dit-1b and gpt-1b (bench shapes)
# Usage (GPU machine): OUT=dir bash scripts/recompute_check.sh   (default OUT=log/recompute_check)
#   ROWS="a b c d" picks the parts; STEPS (default 8) the steps per run, STEPS_B those of the
#   (b) runs (a 4B step at 100k tokens takes over a minute); FRAMES_B="32 40" their frames.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/recompute_check}; mkdir -p "$OUT"
make -j"$(nproc)" train_gpt train_dit > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
STEPS=${STEPS:-8}; STEPS_B=${STEPS_B:-$STEPS}; FRAMES_B=${FRAMES_B:-"32 40"}; ROWS=${ROWS:-"a b c d"}
want() { [[ " $ROWS " == *" $1 "* ]]; }
i=0
run() {   # TRAINER FLAGS...: one row
    i=$((i + 1))
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/smi_$i.txt" 2>/dev/null &
    local smi=$!
    local quiet="--val-every 0"; [ "$1" = train_dit ] && quiet="--eval-samples 0"   # no evaluation at the end
    "./$1" "${@:2}" --random-data 1 --log-dir "" --steps "${RUN_STEPS:-$STEPS}" $quiet --sample-every 0 > "$OUT/run_$i.log" 2>&1; local rc=$?
    kill $smi 2>/dev/null; wait $smi 2>/dev/null
    local peak; peak=$(sort -n "$OUT/smi_$i.txt" | tail -1)
    # the summary line: "summary: N steps | median step X ms | Y tok/s | ..."
    local stats; stats=$(sed -nE 's/^summary: .*median step ([0-9.]+) ms \| ([0-9]+) tok\/s.*/\1 \2/p' "$OUT/run_$i.log")
    [ -n "$stats" ] || stats="? ?"
    local mem; mem=$(grep -m1 '^memory:' "$OUT/run_$i.log" | sed 's/.*activations/activations/')
    printf '| `%s` | %s | %s | %.1f | %s |%s\n' "$*" ${stats} "$(python3 -c "print(${peak:-0}/1024)")" "$mem" "$([ $rc = 0 ] || echo " exit $rc: $(tail -1 "$OUT/run_$i.log")")" | tee -a "$OUT/recompute_check.md"
}
echo "| command | step ms (median) | tokens/s | peak GiB | start-up activations line |" | tee "$OUT/recompute_check.md"
echo "|---|---|---|---|---|" | tee -a "$OUT/recompute_check.md"
FOURB="--preset 4B --batch-size 1 --frames 16 --height 60 --width 106"
if want a; then
    run train_dit $FOURB --recompute full
    run train_dit $FOURB --recompute full --recompute-layers 40
fi
if want b; then
    for f in $FRAMES_B; do RUN_STEPS=$STEPS_B run train_dit --preset 4B --batch-size 1 --frames "$f" --height 80 --width 160 --recompute full; done
fi
if want c; then
    for m in none selective full; do
        run train_gpt --preset llama3.2-1b --batch-size 1 --seq-len 32768 --recompute $m
        run train_gpt --preset qwen3-0.6b --batch-size 1 --seq-len 40960 --recompute $m
    done
fi
# (d): the bench configs of scripts/bench_gpt.sh (gpt-1b) and scripts/bench_dit.sh (dit-1b)
if want d; then
    for m in none selective full; do
        run train_gpt --preset gpt-1b --batch-size 8 --seq-len 2048 --recompute $m
        run train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 --recompute $m
    done
fi
