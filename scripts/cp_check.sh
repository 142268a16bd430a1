#!/usr/bin/env bash
# Context parallel on one GPU (issue 21 item 3, docs/context_parallel.md), the trainers end to end
# (test/test_gpt.cu check_cp and dev/cuda/ring_attention.cu check the pieces), train_gpt then
# train_dit (random latents, the debug preset):
#   (c) --cp 1 bit-identical to a run without the flag: every step's loss and grad norm
#   (b) the simulated ring (--cp 2, --cp 4 with one process) against --cp 1 on the same data,
#       dropout off (its masks follow the token order): loss within 2% and grad norm within 5% at
#       every step (bf16: the ring sums per-block partials rounded to bf16); --cp 2 bit-identical
#       run to run; --cp 2 with full recompute bit-identical to --cp 2 without
#   the samplers (train_gpt text, train_dit samples and evaluation) run with --cp 2
#   timing: tokens/s of gpt-1b at T 8192 with --cp 1, 2, 4 simulated (the ring's overhead on one
#       GPU: N ranks' work in one process, so the same FLOPs plus the merges and copies)
# Usage (GPU machine): OUT=dir bash scripts/cp_check.sh   (default OUT=log/cp_check)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/cp_check}; mkdir -p "$OUT"
make -j"$(nproc)" train_gpt train_dit > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
pass=0; fail=0
ok() { if [ "$1" = 0 ]; then echo "PASS cp_check/$2"; pass=$((pass + 1)); else echo "FAIL cp_check/$2"; fail=$((fail + 1)); fi; }
STEPS=${STEPS:-20}
# the default shakespeare run (T 256 with the preset's defaults would do; pin it), no dropout
BASE="--steps $STEPS --seq-len 256 --batch-size 8 --dropout 0 --val-every 0 --sample-every -1"
TRAINER=train_gpt
train() {   # NAME FLAGS...: each step's loss and grad norm (train.log: 6 and 4 decimals) into $OUT/NAME.steps
    local name=$1; shift
    rm -rf "$OUT/$name"
    "./$TRAINER" $BASE --log-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || { echo "FAIL cp_check/$name: exit $?: $(tail -1 "$OUT/$name.log")"; fail=$((fail + 1)); return 1; }
    # train_gpt: "step N train_loss L lr X norm Y ..."; train_dit: "step N loss L lr X norm Y ..."
    awk '$1 == "step" && ($3 == "train_loss" || $3 == "loss") { print $2, $4, $8 }' "$OUT/$name/train.log" > "$OUT/$name.steps"
}
same() { cmp -s "$OUT/$1.steps" "$OUT/$2.steps" && [ -s "$OUT/$1.steps" ]; }
close() {   # A B: every step's loss within 2% and norm within 5%
    paste "$OUT/$1.steps" "$OUT/$2.steps" | awk -v a="$1" -v b="$2" '
        { dl = ($2 - $5) / $5; dn = ($3 - $6) / $6; if (dl < 0) dl = -dl; if (dn < 0) dn = -dn;
          if (dl > ml) ml = dl; if (dn > mn) mn = dn; n++ }
        END { printf "  %s vs %s: %d steps, max rel diff loss %.2e norm %.2e\n", a, b, n, ml, mn; exit !(n > 0 && ml <= 0.02 && mn <= 0.05) }'
}
checks() {   # PREFIX N...: the checks above for $TRAINER with $BASE, the simulated ring at each N
    local p=$1; shift
    train ${p}plain && train ${p}cp1 --cp 1 && { same ${p}plain ${p}cp1; ok $? "${p}cp1_bit_identical_to_plain"; }
    for n in "$@"; do
        train ${p}cp$n --cp $n && { close ${p}cp1 ${p}cp$n; ok $? "${p}cp${n}_close_to_cp1"; }
    done
    train ${p}cp2_again --cp 2 && { same ${p}cp2 ${p}cp2_again; ok $? "${p}cp2_bit_identical_repeat"; }
    train ${p}cp2_full --cp 2 --recompute full && { same ${p}cp2 ${p}cp2_full; ok $? "${p}cp2_recompute_full_bit_identical"; }
}
checks "" 2 4

# train_dit: random latents, two samples of 4x16x24 a batch (--random-data makes one shape; samples of
# different lengths in one batch: dev/cuda/ring_attention's varlen cases)
TRAINER=train_dit
BASE="--preset debug --random-data 1 --batch-size 2 --frames 4 --height 16 --width 24 --steps $STEPS --sample-every 0 --eval-samples 0"
checks dit_ 2 3
# the samplers with the simulated ring: the moving-shapes default run's samples and evaluation (train_dit),
# a text sample (train_gpt): they run, and the evaluation's lines are printed
if ./train_dit --steps 10 --sample-every 5 --sample-count 2 --eval-samples 2 --cp 2 --log-dir "$OUT/dit_sampling" > "$OUT/dit_sampling.log" 2>&1 &&
   grep -q "eval text-to-video" "$OUT/dit_sampling.log"; then ok 0 dit_cp2_sampling_and_eval; else ok 1 "dit_cp2_sampling_and_eval: $(tail -1 "$OUT/dit_sampling.log")"; fi
if ./train_gpt --steps 10 --sample-every 5 --sample-tokens 32 --val-every 5 --cp 2 --log-dir "$OUT/gpt_sampling" > "$OUT/gpt_sampling.log" 2>&1 &&
   grep -q -- "---- sample at step" "$OUT/gpt_sampling.log"; then ok 0 gpt_cp2_sampling; else ok 1 "gpt_cp2_sampling: $(tail -1 "$OUT/gpt_sampling.log")"; fi

echo "| command | step ms (median) | tokens/s |" | tee "$OUT/cp_timing.md"
echo "|---|---|---|" | tee -a "$OUT/cp_timing.md"
for n in 1 2 4; do
    flags="--preset gpt-1b --random-data 1 --batch-size 1 --max-seq-len 8192 --seq-len 8192 --steps 8 --val-every 0 --sample-every -1 --log-dir '' --cp $n"
    eval ./train_gpt $flags > "$OUT/timing_cp$n.log" 2>&1
    stats=$(sed -nE 's/^summary: .*median step ([0-9.]+) ms \| ([0-9]+) tok\/s.*/\1 | \2/p' "$OUT/timing_cp$n.log")
    echo "| \`train_gpt $flags\` | ${stats:-? | ? (exit: $(tail -1 "$OUT/timing_cp$n.log"))} |" | tee -a "$OUT/cp_timing.md"
done
echo "cp_check: $pass passed, $fail failed"
[ $fail = 0 ]
