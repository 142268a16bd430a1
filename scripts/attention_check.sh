#!/usr/bin/env bash
# The attention check on one GPU (issue 4's table): builds dev/cuda/wgmma and
# dev/cuda/attention, runs the wgmma layout check, the attention checks and timings
# (every kernel family: the Hopper wgmma kernels and the mma.sync ones), then PyTorch's
# SDPA peer (torch_attn.py from PEER_SRC, default ../shared/bench, copied to .peer/) on the
# same GPU.
# Logs to $OUT (default log/attention_check). TUNE=1 adds the tile variants of
# dev/cuda/attention_variants.cuh (FLASH_TUNE=1;
# TUNE=2: the sm90 kernels' variants only); PEER=0 skips the PyTorch peer.
# Usage (on a GPU machine): bash scripts/attention_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/attention_check}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
make -j"$(nproc)" dev/cuda/wgmma dev/cuda/attention > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
rc=0
./dev/cuda/wgmma > "$OUT/wgmma.log" 2>&1 || rc=1
grep -E '^(PASS|FAIL)' "$OUT/wgmma.log"; tail -1 "$OUT/wgmma.log"
FLASH_TUNE=${TUNE:-0} timeout 500 ./dev/cuda/attention > "$OUT/attention.log" 2>&1 || rc=1
grep '^FAIL' "$OUT/attention.log" | head -20
sed -n '/^kernel /,$p' "$OUT/attention.log"
[ -d .peer ] || cp -r "${PEER_SRC:-../shared/bench}" .peer 2>/dev/null
if [ "${PEER:-1}" = 1 ] && [ -f .peer/torch_attn.py ]; then
    timeout 300 python3 .peer/torch_attn.py > "$OUT/torch_attn.log" 2>&1
    cat "$OUT/torch_attn.log"
fi
echo "total: $(( $(date +%s) - t0 )) s"
exit $rc
