#!/usr/bin/env bash
# The attention kernels of dev/cuda/attention_variants.cuh against the dispatch table's
# (dev/cuda/NOTES.md), in one bounded command on one GPU:
#   ordered:29        the fused deterministic backward the table ran before the warp-specialized one
#   ordered:30 .. 38  the warp-specialized deterministic backward (ATTN_ORDERED=v; 33, 34: TMA loads at
#                     padded hd 80, 35, 36 at hd 64; 32 and 34 are the table's at hd 64 and padded hd 80;
#                     37: 34 with the query tiles split into at least two chunks everywhere (the table
#                     splits where few K/V tiles leave SMs idle, the DiT's cross-attention: 34 is the
#                     table without that split); 38: hd 128; 39: hd 64 with TMA and 128 query rows,
#                     40: 38 with TMA (the table's at hd 64 and 128, 36 and 38 before); 41: the table's
#                     (39 / 40 / 34) with the grid ordered K/V tile by K/V tile over the groups (heavy first);
#                     43: the table's with each step issuing the previous step's dQ product; 45: the
#                     table's with dS^T stored by stmatrix
#   atomic:22 23      the atomic backward (ATTN_ATOMIC=v; the `[fast]` rows: what `--attn-backward fast`
#                     would run with it): 22 the fused kernel (the table's before the warp-specialized
#                     one's atomic mode), 23 that mode with 36 / 38's tiles, 24 the table's atomic
#                     mode with the heavy CTAs first, 26 / 30 the table's atomic mode with 43's / 45's change
#   fwd:26 27         the warp-specialized forward with TMA in 32-byte swizzled 16-column blocks,
#                     padded hd 80 (the DiT's 72) (ATTN_FWD=v); fwd:28 the table's at hd 64 / 128 with
#                     the grid group by query tile (heavy first); fwd:29 hd 64 with three consumer
#                     warpgroups (192 query rows); fwd:30 heavy first with 29's tiles at hd 64, 28's at 128;
#                     fwd:31 the table's at hd 64 with the lazy rescale (at hd 128 the table's own);
#                     fwd:32 the table's at hd 64 / 128, persistent (a CTA an SM walking the query tiles);
#                     fwd:33 34 35 padded hd 80 with three consumer warpgroups (192 query rows): cp.async
#                     with 128 / 96 keys a K/V tile, TMA with 96 (34, 35: the table's own beyond one
#                     128-key tile); fwd:36 35 with five K/V stages
# For each: every small check of ./dev/cuda/attention with the variant in place (ATTN_QUICK=1:
# fixed layouts, packed rows, varlen; the determinism checks) under `timeout` (a hang is how a
# wrong mbarrier phase shows); then the timings at the four perf shapes (ATTN_NOCHECK=1), the
# default kernels first and each variant that passed every check; last a summary of the
# forward and backward TFLOP/s per shape.
# Usage (GPU machine): OUT=dir bash scripts/attention_variants_check.sh   (default OUT=log/attention_variants_check)
#   VARIANTS="fwd:32 fwd:36" (default: the variants not
#   yet measured, none now: every one was, docs/results.md; a variant of several
#   joined by commas runs with all of them in place), CHECK_S (per check run,
#   default 150), TIME_S (per timing run, default 150); PHASE=check runs the checks alone (they may share the
#   GPU with other work) and writes each variant that passed to OUT/passed.txt as it passes, PHASE=time the timings alone
#   (the GPU to itself) for the variants in OUT/passed.txt; default: both
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/attention_variants_check}; mkdir -p "$OUT"
VARIANTS=${VARIANTS:-}
[ -n "$VARIANTS" ] || { echo "no VARIANTS named, and every lab variant has been measured (docs/results.md): name the ones to run, e.g. VARIANTS=\"fwd:32\""; exit 0; }
make -j"$(nproc)" dev/cuda/attention > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
# env_of VARIANT: its environment; VARIANT may join several with commas (ordered:41,fwd:28: both in place)
env_of() {
    local v out=""
    for v in ${1//,/ }; do
        case ${v%%:*} in ordered) out="$out ATTN_ORDERED=${v#*:}" ;; atomic) out="$out ATTN_ATOMIC=${v#*:}" ;;
            fwd) out="$out ATTN_FWD=${v#*:}" ;; *) echo "BAD"; return ;; esac
    done
    echo "${out# }"
}
tag() { tr ':,' '_-' <<< "$1"; }   # a variant's part of its log names (ordered:41,fwd:28 -> ordered_41-fwd_28)
PHASE=${PHASE:-all}
passed=""
if [ "$PHASE" = time ]; then passed=$(cat "$OUT/passed.txt" 2>/dev/null); else : > "$OUT/passed.txt"; fi
[ "$PHASE" = time ] || for v in $VARIANTS; do
    e=$(env_of "$v"); [ "$e" = BAD ] && { echo "VARIANTS: '$v' is not ordered:N, atomic:N, fwd:N or several joined by commas"; exit 1; }
    log="$OUT/check_$(tag "$v").log"
    env $e ATTN_QUICK=1 timeout "${CHECK_S:-150}" ./dev/cuda/attention > "$log" 2>&1
    rc=$?
    np=$(grep -c '^PASS' "$log"); nf=$(grep -c '^FAIL' "$log")
    case $rc in
        0) what="exit 0" ;;
        124) what="stopped by timeout after ${CHECK_S:-150} s (a hang: a wrong mbarrier phase, dQ turn or TMA byte count?)" ;;
        *) what="exit $rc" ;;
    esac
    echo "$v ($e): $np checks passed, $nf failed, $what"
    grep '^FAIL' "$log" | head -5
    [ "$rc" -eq 0 ] && [ "$nf" -eq 0 ] && [ "$np" -gt 0 ] && { passed="$passed $v"; echo "$v" >> "$OUT/passed.txt"; }
done
if [ "$PHASE" = check ]; then echo "passed every check:${passed:- none}"; [ -n "$passed" ]; exit; fi
ATTN_NOCHECK=1 timeout "${TIME_S:-150}" ./dev/cuda/attention > "$OUT/time_default.log" 2>&1 || echo "default timings: exit $?"
for v in $passed; do
    env $(env_of "$v") ATTN_NOCHECK=1 timeout "${TIME_S:-150}" ./dev/cuda/attention > "$OUT/time_$(tag "$v").log" 2>&1 ||
        echo "$v timings: exit $?"
done
# the default forward, deterministic and fast backward rows (no [atomic] tag: the per-family
# rows), per shape; the varlen shapes' sm90 forward and ordered backward
rows() {
    { grep -E '^flash_attention(_forward|_backward| forward\+backward)' "$1" | grep -v '\[atomic\]'
      grep -E '^flash_attention_varlen(_forward \[sm90\]|_backward \[sm90\] \[ordered\]| forward\+backward \[sm90\] \[ordered\])' "$1"; } |
        sed -E 's/ +[0-9.]+% of [0-9]+ TFLOP\/s$//'
}
echo "== default"; rows "$OUT/time_default.log"
for v in $passed; do echo "== $v"; rows "$OUT/time_$(tag "$v").log"; done
[ -n "$passed" ]
