#!/usr/bin/env bash
# One device call for an attention kernel change (what issue 4 reports): scripts/attention_check.sh
# with the PyTorch peer (wgmma layout checks, ./dev/cuda/attention's checks and perf-shape table,
# .peer/torch_attn.py on the same GPU), ./dev/cuda/attention's small checks under
# compute-sanitizer memcheck, and scripts/bench_attention_families.sh for the trainers' tokens/s
# (gpt-1b, the 1B DiT; the default deterministic backward and --attn-backward fast).
# Logs to $OUT (default log/attention_trainers_check). SANITIZE=0 skips memcheck.
# Usage (on a GPU machine): bash scripts/attention_trainers_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/attention_trainers_check}; mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
rc=0
PEER=1 OUT="$OUT/attention" bash scripts/attention_check.sh || rc=1
if [ "${SANITIZE:-1}" = 1 ]; then
    ATTN_QUICK=1 timeout 300 compute-sanitizer --tool memcheck ./dev/cuda/attention > "$OUT/memcheck.log" 2>&1 || rc=1
    grep -E "ERROR SUMMARY|checks," "$OUT/memcheck.log" | tail -2
fi
CONFIGS="default fast" OUT="$OUT/trainers" bash scripts/bench_attention_families.sh || rc=1
echo "total: $(( $(date +%s) - t0 )) s"
exit $rc
