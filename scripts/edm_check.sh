#!/usr/bin/env bash
# Issue 22 item 4: the default moving-shapes run with rectified flow and with EDM, same
# steps, scored by the built-in evaluation (64 text-to-video and 64 image-to-video
# samples, guidance 4; rf: Euler, edm: Heun, both --sample-steps 25). Prints one
# markdown table for docs/results.md; the sample grids land in OUT/{rf,edm}/eval/.
# EDM_FLAGS adds flags to the EDM run (e.g. EDM_FLAGS="--edm-sigma-data 0.6").
# OBJECTIVES="rf" or "edm" runs one of the two (each about 7 minutes: the two fit no single
# 10-minute command); the table lists every objective whose log is in OUT.
# Usage (GPU machine, about 15 minutes): OUT=dir bash scripts/edm_check.sh   (default OUT=log/edm_check)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/edm_check}; mkdir -p "$OUT"
make -j"$(nproc)" train_dit > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
OBJECTIVES=${OBJECTIVES:-"rf edm"}
for o in $OBJECTIVES; do
    case $o in
        rf) ./train_dit --objective rf --log-dir "$OUT/rf" > "$OUT/rf.log" 2>&1 ;;
        # shellcheck disable=SC2086  # EDM_FLAGS is a list of flags
        edm) ./train_dit --objective edm ${EDM_FLAGS:-} --log-dir "$OUT/edm" > "$OUT/edm.log" 2>&1 ;;
        *) echo "edm_check: OBJECTIVES takes rf and edm, got '$o'"; exit 1 ;;
    esac
done
pct() { sed -E "s/.*\| $2 ([0-9.]+%).*/\1/" <<< "$1"; }
echo "| objective | task | color | shape | direction | speed (when named) | log |"
echo "|---|---|---|---|---|---|---|"
for o in rf edm; do
    [ -f "$OUT/$o.log" ] || continue
    for task in text-to-video image-to-video; do
        line=$(grep "^eval $task:" "$OUT/$o.log" | tail -1) || { echo "edm_check: no '$task' evaluation in $OUT/$o.log"; exit 1; }
        speed=$(sed -E 's/.*\| speed ([0-9.]+% \(of [0-9]+\)).*/\1/' <<< "$line")
        echo "| $o | $task | $(pct "$line" color) | $(pct "$line" shape) | $(pct "$line" direction) | $speed | $OUT/$o.log |"
    done
done
