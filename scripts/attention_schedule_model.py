#!/usr/bin/env python3
"""How evenly the causal attention kernels' CTAs fill the GPU, by model: the loop length of each CTA
as the kernels compute it (flash_tiles.cuh fwd_tile, flash_sm90_bwd_ws.cuh), the CTAs handed out in
block order (x fastest) to whichever SM frees first, one CTA an SM, every loop step the same time.
It prints the modelled time against the even share (total work / SMs): what the order of the grid
(WS_HEAVY_FIRST, BWD_WS_HEAVY_FIRST) and the forward's rows a CTA (fwd 29: 192) cost in the tail.
A model, not a measurement: no dQ turns, no memory, no clock; dev/cuda/NOTES.md says what it
suggested and docs/results.md what was measured.

Usage: python3 scripts/attention_schedule_model.py [--sms 132] [--fixed 0]
  --fixed: a CTA's fixed cost (K/V load, epilogue) in loop steps
"""
import argparse
import heapq


def ceil_div(a, b):
    return -(-a // b)


def makespan(costs, sms):
    """List scheduling in the given order: each CTA starts on the SM that frees first."""
    free = [0.0] * sms
    heapq.heapify(free)
    end = 0.0
    for c in costs:
        t = heapq.heappop(free) + c
        end = max(end, t)
        heapq.heappush(free, t)
    return end


def order(cost, nx, ny, heavy_first_grid):
    """Block order of a (x, y) grid: x fastest. cost(group, tile) for tile 0 = the heaviest."""
    if heavy_first_grid:  # grid (group, tile): tile by tile over all groups
        return [cost(g, t) for t in range(ny) for g in range(nx)]
    return [cost(g, t) for g in range(ny) for t in range(nx)]  # grid (tile, group): group by group


def backward(B, T, nkv, r, BQ, BN, fixed, heavy_first):
    """The backward's CTA costs in block order: a CTA per (K/V tile, group)."""
    rows, groups = T * r, B * nkv
    nit, kts = ceil_div(rows, BQ), ceil_div(T, BN)
    cost = lambda g, j: fixed + nit - (j * BN * r) // BQ  # query tiles from the diagonal on
    nx, ny = (groups, kts) if heavy_first else (kts, groups)
    return order(cost, nx, ny, heavy_first)


def forward(B, T, nkv, r, BM, BN, fixed, heavy_first):
    """The forward's CTA costs in block order: a CTA per (query tile, group)."""
    rows, groups = T * r, B * nkv
    qtiles = ceil_div(rows, BM)

    def cost(g, bq):  # query tiles last to first within a group (fwd_tile)
        m0 = (qtiles - 1 - bq) * BM
        kv_end = (min(m0 + BM, rows) - 1) // r + 1
        return fixed + ceil_div(kv_end, BN) * BM / 128  # a step's work in 128-row units

    nx, ny = (groups, qtiles) if heavy_first else (qtiles, groups)
    return order(cost, nx, ny, heavy_first)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--fixed", type=float, default=0.0)
    a = ap.parse_args()
    shapes = [("hd 64 causal GQA (gpt-1b): B 8, T 2048, 8 K/V heads, r 4", 8, 2048, 8, 4, 64),
              ("hd 128 causal GQA: B 4, T 4096, 8 K/V heads, r 4", 4, 4096, 8, 4, 128),
              ("hd 64 causal GQA (gpt-s: the cp.async backward): B 32, T 1024, 4 K/V heads, r 3", 32, 1024, 4, 3, 64)]
    print(f"{a.sms} SMs, a CTA's fixed cost {a.fixed} steps; modelled time / even share (lower is better)")
    for name, B, T, nkv, r, hd in shapes:
        print(name)
        BQ = 128 if hd == 64 else 64
        for hf in (False, True):
            costs = backward(B, T, nkv, r, BQ, 128, a.fixed, hf)
            print(f"  backward BQ {BQ}, grid {'(group, K/V tile)' if hf else '(K/V tile, group)'}: "
                  f"{makespan(costs, a.sms) / (sum(costs) / a.sms):.3f} ({len(costs)} CTAs)")
        for BM in ((128, 192) if hd == 64 else (128,)):
            for hf in (False, True):
                costs = forward(B, T, nkv, r, BM, 128, a.fixed, hf)
                span = makespan(costs, a.sms)
                print(f"  forward BM {BM}, grid {'(group, query tile)' if hf else '(query tile, group)'}: "
                      f"{span / (sum(costs) / a.sms):.3f} ({len(costs)} CTAs, time {span:.1f} in 128-row steps)")


if __name__ == "__main__":
    main()
