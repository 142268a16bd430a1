#!/usr/bin/env bash
# The warp-specialized deterministic attention backward (dev/cuda/attention_variants.cuh,
# ordered variants 30-32; dev/cuda/NOTES.md), first run, on one GPU, in one bounded command:
#   1. every small check of ./dev/cuda/attention (fixed layouts, packed rows, varlen; the
#      determinism checks) with each variant in the ordered backward's place (ATTN_ORDERED=v
#      ATTN_QUICK=1), under `timeout`: a hang is how a wrong mbarrier phase shows;
#   2. the timings at the four perf shapes (ATTN_NOCHECK=1), the default kernels first, then each
#      variant that passed every check in the ordered backward's place;
#   3. a summary: per variant its checks, and the deterministic backward's TFLOP/s per shape
#      next to the default's.
# Usage (GPU machine): OUT=dir bash scripts/attention_ws_check.sh   (default OUT=log/attention_ws_check)
#   VARIANTS="30 31 32" (default), CHECK_S (per check run, default 150), TIME_S (per timing run, default 150)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/attention_ws_check}; mkdir -p "$OUT"
VARIANTS=${VARIANTS:-"30 31 32"}
make -j"$(nproc)" dev/cuda/attention > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
passed=""
for v in $VARIANTS; do
    ATTN_ORDERED=$v ATTN_QUICK=1 timeout "${CHECK_S:-150}" ./dev/cuda/attention > "$OUT/check_$v.log" 2>&1
    rc=$?
    np=$(grep -c '^PASS' "$OUT/check_$v.log"); nf=$(grep -c '^FAIL' "$OUT/check_$v.log")
    case $rc in
        0) what="exit 0" ;;
        124) what="stopped by timeout after ${CHECK_S:-150} s (a hang: a wrong mbarrier phase or dQ turn?)" ;;
        *) what="exit $rc" ;;
    esac
    echo "variant $v: $np checks passed, $nf failed, $what"
    grep '^FAIL' "$OUT/check_$v.log" | head -5
    [ "$rc" -eq 0 ] && [ "$nf" -eq 0 ] && [ "$np" -gt 0 ] && passed="$passed $v"
done
ATTN_NOCHECK=1 timeout "${TIME_S:-150}" ./dev/cuda/attention > "$OUT/time_default.log" 2>&1 || echo "default timings: exit $?"
for v in $passed; do
    ATTN_ORDERED=$v ATTN_NOCHECK=1 timeout "${TIME_S:-150}" ./dev/cuda/attention > "$OUT/time_$v.log" 2>&1 || echo "variant $v timings: exit $?"
done
# the deterministic backward (the row without a [fast] / [atomic] tag) and f+b, per shape
rows() { grep -E '^flash_attention(_backward| forward\+backward)' "$1" | grep -v '\[fast\]\|\[atomic\]' | sed -E 's/ +[0-9.]+% of [0-9]+ TFLOP\/s$//'; }
echo "== default"; rows "$OUT/time_default.log"
for v in $passed; do echo "== ordered variant $v"; rows "$OUT/time_$v.log"; done
[ -n "$passed" ]
