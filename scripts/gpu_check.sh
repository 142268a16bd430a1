#!/usr/bin/env bash
# The GPU check: builds everything for sm_90a, runs the whole test suite (GPU
# half included) and the kernel benchmarks, writing logs to $OUT (or log/gpu_check).
# Usage (on a GPU machine): bash scripts/gpu_check.sh
# Optional parts (environment variables, each 0 by default unless noted):
#   BENCH=1 (default)  every dev/cuda benchmark (checks + timings)
#   PEERS=1            scripts/bench_gpt.sh and scripts/bench_dit.sh against the PyTorch
#                      peers (several minutes)
#   PEER=DIR           where the peers are (default .peer/); when DIR does not exist it is
#                      first copied from the folder PEER_SRC (its default is set below)
#   HF=1               scripts/check_hf.sh FP32=0 (needs python3 with torch + transformers)
#   MULTI=1            QUICK=1 scripts/multi_gpu_check.sh when 2 or more GPUs are present;
#   MULTI=full         the whole scripts/multi_gpu_check.sh (kill/hang, resume across GPU
#                      counts, scaling on 1/2/4 GPUs, memory)
#   FUZZ_SECONDS=N     seconds per fuzzer in make test (default 30)
#   SANITIZE=1 (default) ./dev/cuda/attention's small checks under compute-sanitizer racecheck
#                      and memcheck (with BENCH=1)
# With several GPUs the test suite, the kernel benchmarks, the peers and the HF check
# are spread over them (part i on GPU i % GPUs; the peer benchmark compares mega.c and
# PyTorch on the same GPU in the same job); then the multi-GPU check uses all of them.
# The last lines summarize each part.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/gpu_check}; mkdir -p "$OUT"
PEER=${PEER:-.peer}
PEER_SRC=${PEER_SRC:-../shared/bench}
export NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
ngpu=$(nvidia-smi -L | grep -c '^GPU')
t0=$(date +%s)
make -j"$(nproc)" all > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"

part_tests() { make test > "$OUT/test.log" 2>&1; echo $? > "$OUT/test.rc"; }
part_bench() {
    local b exe nfail=0
    for b in dev/cuda/*.cu; do
        exe=${b%.cu}; [ -x "$exe" ] || continue
        echo "== $exe" >> "$OUT/bench_kernels.log"
        timeout 180 "$exe" >> "$OUT/bench_kernels.log" 2>&1 || { nfail=$((nfail + 1)); echo "EXIT non-zero: $exe" >> "$OUT/bench_kernels.log"; }
    done
    echo "$nfail" > "$OUT/bench_kernels.nfail"
    # the attention peer on the same GPU, right after ./dev/cuda/attention (issue 4's side-by-side table)
    if [ -f "$PEER/torch_attn.py" ]; then
        timeout 300 python3 "$PEER/torch_attn.py" > "$OUT/torch_attn.log" 2>&1
    fi
    # the attention kernels under compute-sanitizer (small shapes): races and out-of-bounds accesses
    if [ "${SANITIZE:-1}" = 1 ] && command -v compute-sanitizer > /dev/null; then
        for tool in racecheck memcheck; do
            ATTN_QUICK=1 timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 ./dev/cuda/attention > "$OUT/sanitize_$tool.log" 2>&1
            rc=$?
            # racecheck also reports hazards inside cuBLAS's own kernels (nvjet_*, the CPU-reference
            # attention's matmuls); the ones that matter are in ours (flash_*)
            echo "compute-sanitizer $tool ./dev/cuda/attention (ATTN_QUICK=1): exit $rc ($(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log");" \
                 "kernels named in reports: $(grep -oE '(access|Write|Read|read|write)[a-z ]* at [A-Za-z0-9_]+\+0x' "$OUT/sanitize_$tool.log" |
                     sed -E 's/.* at //; s/\+0x$//' | sort | uniq -c | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}'))" >> "$OUT/sanitize.txt"
        done
    fi
}
part_peers() {
    PEER="$PEER" OUT="$OUT" bash scripts/bench_gpt.sh > "$OUT/bench_gpt.out" 2>&1
    PEER="$PEER" OUT="$OUT" bash scripts/bench_dit.sh > "$OUT/bench_dit.out" 2>&1
}
part_hf() { FP32=0 OUT="$OUT" bash scripts/check_hf.sh > "$OUT/check_hf.out" 2>&1; }

# the PyTorch peers as $PEER, once, before the parts that read it run at the same time
[ -d "$PEER" ] || cp -r "$PEER_SRC" "$PEER" 2>/dev/null || echo "no $PEER and no $PEER_SRC to copy: no peer timings"
parts=(tests)
[ "${BENCH:-1}" = 1 ] && parts+=(bench)
[ "${HF:-0}" = 1 ] && parts+=(hf)
[ "${PEERS:-0}" = 1 ] && parts+=(peers)
if [ "$ngpu" -ge 2 ]; then   # part i on GPU i % ngpu; each GPU runs its parts one after another
    pids=()
    for g in $(seq 0 $((ngpu - 1))); do
        mine=(); for i in "${!parts[@]}"; do [ $((i % ngpu)) = "$g" ] && mine+=("${parts[$i]}"); done
        [ ${#mine[@]} = 0 ] && continue
        echo "GPU $g: ${mine[*]}"
        ( export CUDA_VISIBLE_DEVICES=$g; for p in "${mine[@]}"; do "part_$p"; done ) &
        pids+=($!)
    done
    wait "${pids[@]}"
else
    for p in "${parts[@]}"; do "part_$p"; done
fi
echo "parts: $(( $(date +%s) - t0 )) s"
tail -40 "$OUT/test.log"
test_rc=$(cat "$OUT/test.rc" 2>/dev/null || echo 1)
summary=("make test: $(tail -1 "$OUT/test.log")")
if [ "${BENCH:-1}" = 1 ]; then
    summary+=("dev/cuda: $(grep -c '^PASS' "$OUT/bench_kernels.log") checks passed, $(grep -c '^FAIL' "$OUT/bench_kernels.log") failed, $(cat "$OUT/bench_kernels.nfail") programs exited non-zero")
fi
[ -s "$OUT/sanitize.txt" ] && summary+=("$(tr '\n' ';' < "$OUT/sanitize.txt")")
[ -s "$OUT/torch_attn.log" ] && summary+=("torch_attn.py (same GPU as ./dev/cuda/attention): $(tr '\n' ';' < "$OUT/torch_attn.log")")
[ "${PEERS:-0}" = 1 ] && summary+=("$(grep -h '^bench ' "$OUT/bench.txt" 2>/dev/null | tr '\n' ';')")
[ "${HF:-0}" = 1 ] && summary+=("check_hf: $(tail -1 "$OUT/check_hf.out")")
if [ "${MULTI:-0}" != 0 ] && [ "$ngpu" -ge 2 ]; then
    quick=$([ "${MULTI}" = full ] && echo 0 || echo 1)
    QUICK=$quick OUT="$OUT/multi_gpu" bash scripts/multi_gpu_check.sh > "$OUT/multi_gpu.out" 2>&1
    summary+=("multi_gpu_check$([ $quick = 1 ] && echo ' (QUICK)'): $(tail -1 "$OUT/multi_gpu.out")")
    grep -E '^(PASS|FAIL)' "$OUT/multi_gpu.out"
fi
echo "total: $(( $(date +%s) - t0 )) s"
printf '%s\n' "${summary[@]}"
exit $test_rc
