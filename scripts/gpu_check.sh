#!/usr/bin/env bash
# The GPU check: builds everything for sm_90, runs the whole test suite (GPU
# half included) and the kernel benchmarks, writing logs to $OUT (or log/gpu_check).
# Usage (on a GPU machine): bash scripts/gpu_check.sh
# Optional parts (environment variables, each 0 by default unless noted):
#   BENCH=1 (default)  every dev/cuda benchmark (checks + timings)
#   PEERS=1            scripts/bench_gpt.sh and scripts/bench_dit.sh against the PyTorch
#                      peers (../shared/bench copied to .peer/; several minutes)
#   HF=1               scripts/check_hf.sh FP32=0 (needs python3 with torch + transformers)
#   MULTI=1            QUICK=1 scripts/multi_gpu_check.sh when 2 or more GPUs are present
# The last lines summarize each part.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/gpu_check}; mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
make -j16 all > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
make test 2>&1 | tee "$OUT/test.log"
test_rc=${PIPESTATUS[0]}
summary=("make test: $(tail -1 "$OUT/test.log")")
if [ "${BENCH:-1}" = 1 ]; then
    nfail=0
    for b in dev/cuda/*.cu; do
        exe=${b%.cu}; [ -x "$exe" ] || continue
        echo "== $exe" | tee -a "$OUT/bench_kernels.log"
        timeout 120 "$exe" 2>&1 | tee -a "$OUT/bench_kernels.log" | tail -12
        [ "${PIPESTATUS[0]}" -eq 0 ] || nfail=$((nfail + 1))
    done
    summary+=("dev/cuda: $(grep -c '^PASS' "$OUT/bench_kernels.log") checks passed, $(grep -c '^FAIL' "$OUT/bench_kernels.log") failed, $nfail programs exited non-zero")
fi
if [ "${PEERS:-0}" = 1 ]; then
    [ -d .peer ] || cp -r ../shared/bench .peer 2>/dev/null || echo "PEERS: no .peer/ and no ../shared/bench to copy"
    OUT="$OUT" bash scripts/bench_gpt.sh > "$OUT/bench_gpt.out" 2>&1
    OUT="$OUT" bash scripts/bench_dit.sh > "$OUT/bench_dit.out" 2>&1
    summary+=("$(grep -h '^bench ' "$OUT/bench.txt" 2>/dev/null | tr '\n' ';')")
fi
if [ "${HF:-0}" = 1 ]; then
    FP32=0 OUT="$OUT" bash scripts/check_hf.sh > "$OUT/check_hf.out" 2>&1
    summary+=("check_hf: $(tail -1 "$OUT/check_hf.out")")
fi
if [ "${MULTI:-0}" = 1 ] && [ "$(nvidia-smi -L | grep -c '^GPU')" -ge 2 ]; then
    QUICK=1 OUT="$OUT/multi_gpu" bash scripts/multi_gpu_check.sh > "$OUT/multi_gpu.out" 2>&1
    summary+=("multi_gpu_check (QUICK): $(tail -1 "$OUT/multi_gpu.out")")
fi
printf '%s\n' "${summary[@]}"
exit $test_rc
