# The PyTorch peer's step, kernel by kernel: the counterpart of the trainers' --profile-step
# table, so the two can be read side by side (which of the peer's kernels do the work that
# mega.c spends longer on). Runs the peer script unchanged (its own model, flags and warm-up)
# and traces with torch.profiler the one step between two optimizer steps after its warm-up:
# torch.optim.AdamW.step is wrapped to start the trace after step SKIP and stop after the next.
# Prints one table of kernels sorted by GPU time, with a kind per kernel (matmul, attention,
# triton = torch.compile's fused elementwise work, optimizer, other) and the sum per kind.
# Usage (GPU machine): python3 scripts/peer_profile.py .peer/torch_gpt.py gpt-1b --compile [--sdpa cudnn]
import importlib.util, os, sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

if len(sys.argv) < 3:
    sys.exit("usage: python3 scripts/peer_profile.py PEER_SCRIPT CONFIG [the peer's flags]")
path = sys.argv[1]
if not os.path.isfile(path):
    sys.exit(f"peer_profile: no peer script at {path}")
SKIP = int(os.environ.get("SKIP", "11"))  # the peers warm up for 10 steps under --compile

def kind(name):
    n = name.lower()
    if any(s in n for s in ("nvjet", "gemm", "cutlass", "xmma", "cublas", "sm90_xmma")):
        return "matmuls"
    if any(s in n for s in ("flash", "fmha", "cudnn", "attention", "sdpa")):
        return "attention"
    if "adam" in n or "multi_tensor" in n or "foreach" in n:
        return "optimizer"
    if n.startswith("triton"):
        return "triton (fused by torch.compile)"
    if "memset" in n or "memcpy" in n:
        return "copies and memsets"
    return "other"

prof = profile(activities=[ProfilerActivity.CUDA])
calls = {"n": 0}
step_orig = torch.optim.AdamW.step

def traced_step(self, *a, **k):
    out = step_orig(self, *a, **k)
    calls["n"] += 1
    if calls["n"] == SKIP:
        torch.cuda.synchronize(); prof.start()
    elif calls["n"] == SKIP + 1:
        torch.cuda.synchronize(); prof.stop(); report()
    return out

def report():
    total, count, first, last = defaultdict(float), defaultdict(int), None, None
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = e.device_time if hasattr(e, "device_time") else e.cuda_time
        total[e.name] += us; count[e.name] += 1
        start = e.time_range.start; end = e.time_range.end
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    if not total:
        print("peer_profile: the trace holds no GPU work"); return
    span = (last - first) / 1e3; busy = sum(total.values()) / 1e3
    print(f"peer step {SKIP + 1}: {span:.3f} ms from its first kernel to its last | busy {busy:.3f} ms "
          f"| {sum(count.values())} kernels, copies and memsets")
    by_kind = defaultdict(float); kind_calls = defaultdict(int)
    for n, us in total.items():
        by_kind[kind(n)] += us / 1e3; kind_calls[kind(n)] += count[n]
    print(f"{'ms':>10} {'share':>7} {'calls':>6}  kind")
    for k, ms in sorted(by_kind.items(), key=lambda x: -x[1]):
        print(f"{ms:10.3f} {ms / span * 100:6.1f}% {kind_calls[k]:6d}  {k}")
    print(f"\n{'ms':>10} {'share':>7} {'calls':>6}  kernel")
    for n, us in sorted(total.items(), key=lambda x: -x[1]):
        ms = us / 1e3
        if ms < 0.01:
            break
        print(f"{ms:10.3f} {ms / span * 100:6.1f}% {count[n]:6d}  {n[:110]}")
    sys.stdout.flush()

torch.optim.AdamW.step = traced_step
spec = importlib.util.spec_from_file_location("peer", path)
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
sys.argv = [path] + sys.argv[2:] + ["--steps", "3"]
peer.main()
