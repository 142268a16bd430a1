#!/usr/bin/env bash
# cuDNN's attention backward (PyTorch SDPA, cuDNN backend) under ncu at the causal GPT shapes of
# dev/cuda/attention (hd 64: B8 T2048 nh32 nkv8; hd 128: B4 T4096; HDS 72: the DiT's full
# attention, B1 T13442 nh16, dev/cuda/attention's perf shape 2), beside our own backward: its
# kernels' names (tiles), launch shapes, registers, shared memory, and the Speed-of-Light, memory
# and scheduler sections, to compare with `ATTN_PROFILE=... ncu` of ours (dev/cuda/NOTES.md).
# OURS=1 also profiles our deterministic backward (dev/cuda/attention, built) at the same shapes,
# with the L1 / shared-memory and L2 lines of its memory section. PASS=fwd: the forward instead
# (cuDNN's forward kernel; with OURS=1 also our flash_fwd_sm90_ws_kernel). ATTN_BIN: the
# dev/cuda/attention to profile (default ./dev/cuda/attention). Each report also gives the tensor
# pipe's share of the active cycles and the instructions issued (ncu's raw page).
# Usage (GPU machine): OUT=dir bash scripts/cudnn_attn_profile.sh   (HDS="64 128" by default)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-log/cudnn_attn_profile}; mkdir -p "$OUT"
PASS=${PASS:-bwd}; BIN=${ATTN_BIN:-./dev/cuda/attention}
case $PASS in
    # a backward launches three matching kernels (the bprop kernel, two head reductions): the
    # first backward's are skipped, the second's profiled
    bwd) cudnn_kernels="regex:bprop|fmha_reduce|dgrad"; cudnn_skip=3; cudnn_count=3; ours_kernels=regex:flash_bwd_ws ;;
    # a forward launches one: all three calls profiled (its name is not known here)
    fwd) cudnn_kernels="regex:fprop|fmha|sdpa"; cudnn_skip=0; cudnn_count=3; ours_kernels=regex:flash_fwd_sm90_ws ;;
    *) echo "PASS=$PASS: expected bwd or fwd"; exit 2 ;;
esac
# SDPA forward (PASS=bwd: and backward), cuDNN backend, three times at head dim argv[1]
cat > "$OUT/sdpa.py" <<'PY'
import sys, torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
hd, bwd = int(sys.argv[1]), sys.argv[2] == "bwd"
B, H, KV, T = {64: (8, 32, 8, 2048), 128: (4, 32, 8, 4096), 72: (1, 16, 16, 13442)}[hd]
causal = hd != 72
q = torch.randn(B, H, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=bwd)
k = torch.randn(B, KV, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=bwd)
v = torch.randn(B, KV, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=bwd)
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    for _ in range(3):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        if bwd:
            torch.autograd.grad(o, (q, k, v), torch.randn_like(o))
torch.cuda.synchronize()
PY
# each report's kernel names, launch shape and headline lines
head_lines='^  [a-zA-Z_].*\(|Duration|Registers Per Thread|Dynamic Shared Memory Per Block|Block Size|Grid Size|Compute \(SM\) Throughput|Memory Throughput|Eligible Warps|Issued Warp'
mem_lines='L1/TEX Hit|L2 Hit|L1/TEX Cache Throughput|L2 Cache Throughput|DRAM Throughput|Shared Memory|Mem Busy|Max Bandwidth|Mem Pipes Busy|lts__|Bank'
raw_lines='sm__pipe_tensor_op_gmma_cycles_active.avg.pct|smsp__inst_issued.sum |sm__cycles_elapsed.avg '
# report NAME: the report's details page to NAME.txt, its headline and raw lines printed, the report removed
report() {
    ncu --import "$OUT/$1.ncu-rep" --page details > "$OUT/$1.txt" 2>&1
    grep -E "$head_lines" "$OUT/$1.txt" | cut -c1-160
    ncu --import "$OUT/$1.ncu-rep" --page raw 2>/dev/null | grep -E "$raw_lines" | cut -c1-160
    rm -f "$OUT/$1.ncu-rep"
}
for hd in ${HDS:-64 128}; do
    case $hd in 64|72|128) ;; *) echo "HDS: $hd, expected 64, 72 or 128"; exit 2 ;; esac
    timeout 240 ncu --set full -k "$cudnn_kernels" --launch-skip $cudnn_skip --launch-count $cudnn_count \
        -o "$OUT/cudnn_${PASS}_$hd" python3 "$OUT/sdpa.py" "$hd" "$PASS" > "$OUT/ncu_${PASS}_$hd.log" 2>&1
    echo "hd $hd: ncu exit $?"
    report "cudnn_${PASS}_$hd"
done
grep -E "$mem_lines" "$OUT"/cudnn_"$PASS"_*.txt | cut -c1-160
if [ "${OURS:-0}" = 1 ]; then
    for hd in ${HDS:-64 128}; do
        si=0; [ "$hd" = 128 ] && si=1; [ "$hd" = 72 ] && si=2
        ATTN_PROFILE=$si timeout 240 ncu --set full -k $ours_kernels --launch-skip 1 --launch-count 1 \
            -o "$OUT/ours_${PASS}_$hd" "$BIN" > "$OUT/ncu_ours_${PASS}_$hd.log" 2>&1
        echo "ours hd $hd: ncu exit $?"
        report "ours_${PASS}_$hd"
        grep -E "$mem_lines" "$OUT/ours_${PASS}_$hd.txt" | cut -c1-160
    done
fi
