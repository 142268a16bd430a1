// Dropout on the residual branches (the outputs of the attention and MLP
// projections, before they are added to the residual stream), as nanoGPT's
// resid_dropout. The keep/drop decision is a counter-based hash of
// (seed, element index), so there is no mask to store: the backward recomputes
// it, runs are deterministic, and a resumed run draws the same masks.
#pragma once
#include "../core/cuda_common.h"

// splitmix-style 64 -> 32 bit hash; identical on host and device (CPU references use it too)
__host__ __device__ __forceinline__ uint32_t dropout_hash(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}
// element i is kept when its hash is at or above the threshold p * 2^32
__host__ __device__ __forceinline__ uint32_t dropout_threshold(float p) {
    return (uint32_t)fminf(4294967295.0f, p * 4294967296.0f);
}

// x[i] = keep(i) ? x[i] / (1 - p) : 0, in place. Used for the forward (on the
// branch output) and the backward (on the branch's gradient), with the same seed.
__global__ static void dropout_kernel(floatX* x, size_t n, uint64_t seed, uint32_t threshold, float scale) {
    const size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i0 >= n) return;
    x128 v = load128(x + i0);
    for (int k = 0; k < x128::size; k++)
        v[k] = dropout_hash(seed, i0 + k) >= threshold ? (floatX)((float)v[k] * scale) : (floatX)0.0f;
    store128(x + i0, v);
}

// out = mask(x) (out may equal x); n % x128::size == 0
static void dropout_apply(floatX* out, const floatX* x, size_t n, float p, uint64_t seed, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (out != x) cudaCheck(cudaMemcpyAsync(out, x, n * sizeof(floatX), cudaMemcpyDeviceToDevice, stream));
    ProfileWork pw(0, (double)n * 2 * sizeof(floatX));   // out read and written (the copy from x is a memcpy row of its own)
    dropout_kernel<<<ceil_div(n / x128::size, 256), 256, 0, stream>>>(out, n, seed, dropout_threshold(p), 1.0f / (1.0f - p));
    cudaLaunchCheck();
}
