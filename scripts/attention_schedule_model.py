#!/usr/bin/env python3
"""How evenly the causal attention kernels' CTAs fill the GPU, by model: the loop length of each CTA
as the kernels compute it (flash_tiles.cuh fwd_tile, flash_sm90_bwd_ws.cuh), the CTAs handed out in
block order (x fastest) to whichever SM frees first, one CTA an SM, every loop step the same time.
It prints the modelled time against the even share (total work / SMs): what the order of the grid
(WS_HEAVY_FIRST, the backward's chunks of groups) and the forward's rows a CTA (fwd 29: 192) cost in the tail.
A model, not a measurement: no dQ turns, no memory, no clock; dev/cuda/NOTES.md says what it
suggested and docs/results.md what was measured.

Usage: python3 scripts/attention_schedule_model.py [--sms 132] [--fixed 0] [--noise 0.15]
  --fixed: a CTA's fixed cost (K/V load, epilogue) in loop steps
  --noise: the backward also with each CTA's time off by up to that fraction (the mean of 20
           seeded draws): the noiseless model rewards chunk sizes that split evenly
"""
import argparse
import heapq
import random


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


def backward(B, T, nkv, r, BQ, BN, fixed, chunk):
    """The backward's CTA costs in block order: a CTA per (K/V tile, group), the groups in chunks
    of `chunk`, K/V tile by K/V tile within a chunk (bwd_ws_block: 1 = group by group, all the
    groups = BWD_WS_HEAVY_FIRST)."""
    rows, groups = T * r, B * nkv
    nit, kts = ceil_div(rows, BQ), ceil_div(T, BN)
    cost = lambda g, j: fixed + nit - (j * BN * r) // BQ  # query tiles from the diagonal on
    return [cost(g, j) for g0 in range(0, groups, chunk) for j in range(kts) for g in range(g0, min(groups, g0 + chunk))]


def noisy_makespan(costs, sms, noise, trials=20):
    """The mean makespan with each CTA's time off by up to +-noise (a fraction), seeded."""
    rng = random.Random(1)
    return sum(makespan([c * rng.uniform(1 - noise, 1 + noise) for c in costs], sms) for _ in range(trials)) / trials


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
    ap.add_argument("--noise", type=float, default=0.15)
    a = ap.parse_args()
    shapes = [("hd 64 causal GQA (gpt-1b): B 8, T 2048, 8 K/V heads, r 4", 8, 2048, 8, 4, 64),
              ("hd 128 causal GQA: B 4, T 4096, 8 K/V heads, r 4", 4, 4096, 8, 4, 128),
              ("hd 64 causal GQA (gpt-s: the cp.async backward): B 32, T 1024, 4 K/V heads, r 3", 32, 1024, 4, 3, 64)]
    print(f"{a.sms} SMs, a CTA's fixed cost {a.fixed} steps; modelled time / even share (lower is better)")
    for name, B, T, nkv, r, hd in shapes:
        print(name)
        BQ = 128 if hd == 64 else 64
        for chunk in (1, 4, 8, 16, B * nkv):
            costs = backward(B, T, nkv, r, BQ, 128, a.fixed, chunk)
            even = sum(costs) / a.sms
            print(f"  backward BQ {BQ}, chunks of {chunk} groups{' (all)' if chunk == B * nkv else ''}: "
                  f"{makespan(costs, a.sms) / even:.3f}, CTA times +-{a.noise:g}: "
                  f"{noisy_makespan(costs, a.sms, a.noise) / even:.3f} ({len(costs)} CTAs)")
        for BM in ((128, 192) if hd == 64 else (128,)):
            for hf in (False, True):
                costs = forward(B, T, nkv, r, BM, 128, a.fixed, hf)
                span = makespan(costs, a.sms)
                print(f"  forward BM {BM}, grid {'(group, query tile)' if hf else '(query tile, group)'}: "
                      f"{span / (sum(costs) / a.sms):.3f} ({len(costs)} CTAs, time {span:.1f} in 128-row steps)")


if __name__ == "__main__":
    main()
