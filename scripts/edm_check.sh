#!/usr/bin/env bash
# Issue 22 item 4: the default moving-shapes run with rectified flow and with EDM, same
# steps, scored by the built-in evaluation (64 text-to-video and 64 image-to-video
# samples, guidance 4; rf: Euler, edm: Heun, both --sample-steps 25). Prints one
# markdown table for docs/results.md; the sample grids land in OUT/<objective>/eval/.
# Objectives (OBJECTIVES, default "rf edm"):
#   rf            --objective rf
#   edm           --objective edm with the run's defaults (--edm-sigma-data 1 and EDM's noise levels
#                 scaled to that data scale: every sigma twice EDM's, P_mean -0.51, sigma 0.004 .. 160)
#                 and EDM_FLAGS
#   edm_unscaled  --objective edm with EDM's own noise levels (P_mean -1.2, sigma 0.002 .. 80, set for
#                 data of scale 0.5): the run's defaults before 2026-12-05, EDM_UNSCALED_FLAGS
# Each run takes about 3 minutes on an H100 (7 on the H200 of an earlier session, which shared
# its GPU); PARALLEL=1 runs the objectives side by side on one GPU (each needs about 6 GB; the
# dataset is built once first), for quality only: their step times mean nothing then.
# The table lists every objective whose log is in OUT.
# Usage (GPU machine): OUT=dir [OBJECTIVES="rf edm edm_unscaled"] [PARALLEL=1] bash scripts/edm_check.sh
#   (default OUT=log/edm_check)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/edm_check}; mkdir -p "$OUT"
ALL="rf edm edm_unscaled"
OBJECTIVES=${OBJECTIVES:-"rf edm"}
for o in $OBJECTIVES; do
    case " $ALL " in *" $o "*) ;; *) echo "edm_check: OBJECTIVES takes rf, edm and edm_unscaled, got '$o'"; exit 1 ;; esac
done
make -j"$(nproc)" train_dit > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
flags_of() {
    case $1 in
        rf) echo "--objective rf" ;;
        edm) echo "--objective edm ${EDM_FLAGS:-}" ;;
        edm_unscaled) echo "--objective edm ${EDM_UNSCALED_FLAGS:---edm-p-mean -1.2 --edm-sigma-min 0.002 --edm-sigma-max 80}" ;;
    esac
}
run_one() {  # run_one OBJECTIVE: the default run, its log in OUT/OBJECTIVE.log
    # shellcheck disable=SC2046  # the flags are a list
    ./train_dit $(flags_of "$1") --log-dir "$OUT/$1" > "$OUT/$1.log" 2>&1
}
if [ "${PARALLEL:-0}" = 1 ]; then
    ./train_dit --steps 0 --log-dir "" > "$OUT/dataset.log" 2>&1 || { tail -5 "$OUT/dataset.log"; exit 1; }   # the dataset, once
    pids=""
    for o in $OBJECTIVES; do run_one "$o" & pids="$pids $!"; done
    status=0
    for p in $pids; do wait "$p" || status=1; done
    [ $status -eq 0 ] || { echo "edm_check: a run failed (logs in $OUT)"; exit 1; }
else
    for o in $OBJECTIVES; do run_one "$o"; done
fi
pct() { sed -E "s/.*\| $2 ([0-9.]+%).*/\1/" <<< "$1"; }
echo "| objective | task | color | shape | direction | speed (when named) | log |"
echo "|---|---|---|---|---|---|---|"
for o in $ALL; do
    [ -f "$OUT/$o.log" ] || continue
    for task in text-to-video image-to-video; do
        line=$(grep "^eval $task:" "$OUT/$o.log" | tail -1) || { echo "edm_check: no '$task' evaluation in $OUT/$o.log"; exit 1; }
        speed=$(sed -E 's/.*\| speed ([0-9.]+% \(of [0-9]+\)).*/\1/' <<< "$line")
        echo "| $o | $task | $(pct "$line" color) | $(pct "$line" shape) | $(pct "$line" direction) | $speed | $OUT/$o.log |"
    done
done
