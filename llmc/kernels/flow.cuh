// Rectified flow on the GPU: the loss and its gradient, and Gaussian noise.
// - flow_loss: per sample, sum over noisy frames, channels c < Cin and pixels of
//   (v_pred - v)^2 with v = x0 - eps, divided by (noisy frames * Cin * H * W),
//   mean over samples (dev/DESIGN.md "Rectified-flow loss"). Read straight from
//   the final linear's patch-layout output (no unpatchify): one warp per patch
//   token writes d loss / d out for all its P*Cout values (0 for channels >=
//   Cin, padding and clean frames) and the token's sum of squares; the host adds
//   the per-token sums per sample in double (deterministic, no atomics).
// - gaussian_fill_at: N(0, 1) values from a counter-based hash of (seed, index)
//   (splitmix64 -> Box-Muller), so a batch's noise depends only on the seed.
#pragma once
#include <cstdint>
#include "../core/cuda_common.h"
#include "patchify.cuh"

// patrow[p] >> 1 is patch token p's sample.
__global__ static void flow_loss_kernel(floatX* __restrict__ dout, float* __restrict__ loss_tok,
                                        const floatX* __restrict__ out, const float* __restrict__ x0,
                                        const float* __restrict__ eps, const int* __restrict__ frame_mask,
                                        const DiTSample* __restrict__ samples, const int* __restrict__ patrow,
                                        PatchGeom pg, int Np) {
    const int lane = threadIdx.x % 32;
    const int p = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (p >= Np) return;
    const DiTSample s = samples[patrow[p] >> 1];
    float sq = patch_token_loss(dout, s, p, pg, frame_mask, lane, [&](size_t oi, long long l, float* g) {
        const float d = (float)out[oi] - (x0[l] - eps[l]);
        *g = s.grad_scale * d;
        return d * d;
    });
    sq = warp_reduce_sum(sq);
    if (lane == 0) loss_tok[p] = sq;
}

static void flow_loss(floatX* dout, float* loss_tok, const floatX* out, const float* x0, const float* eps,
                      const int* frame_mask, const DiTSample* samples, const int* patrow, const PatchGeom& pg, int Np,
                      cudaStream_t stream) {
    NVTX_RANGE_FN();
    flow_loss_kernel<<<ceil_div(Np, 8), 256, 0, stream>>>(dout, loss_tok, out, x0, eps, frame_mask, samples, patrow, pg, Np);
    cudaLaunchCheck();
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// out[i] = mean + std * N(0, 1), a function of (seed, index0 + i) only: a sample's
// noise is its piece (index0: its offset) of the whole batch's noise, so every
// rank of a multi-GPU run draws what its samples get in the one-GPU run.
template <typename T>
__global__ void gaussian_fill_at_kernel(T* out, size_t n, uint64_t seed, size_t index0, float mean, float std) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const uint64_t h = splitmix64(splitmix64(seed) ^ (uint64_t)(index0 + i));
    const float u1 = ((uint32_t)(h >> 40) + 1) * (1.0f / 16777217.0f);   // (0, 1]
    const float u2 = (uint32_t)(h & 0xFFFFFF) * (1.0f / 16777216.0f);    // [0, 1)
    out[i] = (T)(mean + std * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
}
template <typename T>
static void gaussian_fill_at(T* out, size_t n, uint64_t seed, size_t index0, float mean, float std, cudaStream_t stream) {
    if (n == 0) return;
    gaussian_fill_at_kernel<T><<<ceil_div(n, 256), 256, 0, stream>>>(out, n, seed, index0, mean, std);
    cudaLaunchCheck();
}
