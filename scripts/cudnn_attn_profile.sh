#!/usr/bin/env bash
# cuDNN's attention backward (PyTorch SDPA, cuDNN backend) under ncu at the causal GPT shapes of
# dev/cuda/attention (hd 64: B8 T2048 nh32 nkv8; hd 128: B4 T4096), beside our own backward: its
# kernels' names (tiles), launch shapes, registers, shared memory, and the Speed-of-Light, memory
# and scheduler sections, to compare with `ATTN_PROFILE=... ncu` of ours (dev/cuda/NOTES.md).
# OURS=1 also profiles our deterministic backward (dev/cuda/attention, built) at the same shapes,
# with the L1 / shared-memory and L2 lines of its memory section.
# Usage (GPU machine): OUT=dir bash scripts/cudnn_attn_profile.sh   (HDS="64 128" by default)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-log/cudnn_attn_profile}; mkdir -p "$OUT"
# SDPA forward+backward, cuDNN backend, three times at head dim argv[1]
cat > "$OUT/sdpa_bwd.py" <<'PY'
import sys, torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
hd = int(sys.argv[1])
B, H, KV, T = (8, 32, 8, 2048) if hd == 64 else (4, 32, 8, 4096)
q = torch.randn(B, H, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(B, KV, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
v = torch.randn(B, KV, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    for _ in range(3):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        torch.autograd.grad(o, (q, k, v), torch.randn_like(o))
torch.cuda.synchronize()
PY
# each report's kernel names, launch shape and headline lines
head_lines='^  [a-zA-Z_].*\(|Duration|Registers Per Thread|Dynamic Shared Memory Per Block|Block Size|Grid Size|Compute \(SM\) Throughput|Memory Throughput|Eligible Warps|Issued Warp'
for hd in ${HDS:-64 128}; do
    # a backward launches three matching kernels (the bprop kernel, two head reductions): the
    # first backward's are skipped, the second's profiled
    timeout 240 ncu --set full -k "regex:bprop|fmha_reduce|dgrad" --launch-skip 3 --launch-count 3 \
        -o "$OUT/cudnn_bwd_$hd" python3 "$OUT/sdpa_bwd.py" "$hd" > "$OUT/ncu_$hd.log" 2>&1
    echo "hd $hd: ncu exit $?"
    ncu --import "$OUT/cudnn_bwd_$hd.ncu-rep" --page details > "$OUT/cudnn_bwd_$hd.txt" 2>&1
    grep -E "$head_lines" "$OUT/cudnn_bwd_$hd.txt" | cut -c1-160
    rm -f "$OUT/cudnn_bwd_$hd.ncu-rep"
done
mem_lines='L1/TEX Hit|L2 Hit|L1/TEX Cache Throughput|L2 Cache Throughput|DRAM Throughput|Shared Memory|Mem Busy|Max Bandwidth|Mem Pipes Busy|lts__|Bank'
grep -E "$mem_lines" "$OUT"/cudnn_bwd_*.txt | cut -c1-160
if [ "${OURS:-0}" = 1 ]; then
    for hd in ${HDS:-64 128}; do
        si=0; [ "$hd" = 128 ] && si=1
        ATTN_PROFILE=$si timeout 240 ncu --set full -k regex:flash_bwd_ws --launch-skip 1 --launch-count 1 \
            -o "$OUT/ours_bwd_$hd" ./dev/cuda/attention > "$OUT/ncu_ours_$hd.log" 2>&1
        echo "ours hd $hd: ncu exit $?"
        ncu --import "$OUT/ours_bwd_$hd.ncu-rep" --page details > "$OUT/ours_bwd_$hd.txt" 2>&1
        grep -E "$head_lines" "$OUT/ours_bwd_$hd.txt" | cut -c1-160
        grep -E "$mem_lines" "$OUT/ours_bwd_$hd.txt" | cut -c1-160
        rm -f "$OUT/ours_bwd_$hd.ncu-rep"
    done
fi
