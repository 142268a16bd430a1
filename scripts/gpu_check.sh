#!/usr/bin/env bash
# The GPU check: builds everything for sm_90, runs the whole test suite (GPU
# half included) and the kernel benchmarks, writing logs to $OUT (or log/gpu_check).
# Usage (on a GPU machine): bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/gpu_check}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
make -j16 all > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
make test 2>&1 | tee "$OUT/test.log"
test_rc=${PIPESTATUS[0]}
if [ "${BENCH:-1}" = 1 ]; then
    for b in dev/cuda/*.cu; do
        exe=${b%.cu}; [ -x "$exe" ] || continue
        echo "== $exe" | tee -a "$OUT/bench_kernels.log"
        timeout 120 "$exe" 2>&1 | tee -a "$OUT/bench_kernels.log" | tail -12
    done
fi
exit $test_rc
