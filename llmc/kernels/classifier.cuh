// Fused classifier: softmax + cross-entropy + dlogits in one kernel, one block
// per row of logits. Pass 1 computes the row max and sum of exponentials
// together (online softmax) over the real vocabulary; pass 2 writes
// dlogits = (softmax - onehot) * dloss over the logits in place. No fp32
// probability tensor ever exists. Columns >= V (vocab padding) are excluded
// from the softmax and get zero gradient. A negative target (SFT_IGNORE, -100:
// a prompt token, padding; transformers' ignore index) is no one's target: loss 0,
// dlogits row 0, and the row is not read.
#pragma once
#include "../core/cuda_common.h"

__device__ __forceinline__ void online_softmax_merge(float& m, float& s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    s = (m == -INFINITY ? 0.0f : s * expf(m - mn)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mn));
    m = mn;
}

// The row's log-sum-exp from every thread's (max, sum of exp(z - max)) pair: merged
// across the warp with shuffles, then across the warps through shared memory, in a
// fixed order (deterministic). Every thread gets it; blockDim.x a multiple of 32.
__device__ __forceinline__ float block_logsumexp(float m, float s) {
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffff, m, o), s2 = __shfl_xor_sync(0xffffffff, s, o);
        online_softmax_merge(m, s, m2, s2);
    }
    __shared__ float sm[32], ss[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();
    m = -INFINITY; s = 0.0f;
    for (int w = 0; w < nwarps; w++) online_softmax_merge(m, s, sm[w], ss[w]);
    return m + logf(s);
}

__global__ static void fused_classifier_kernel(floatX* logits, float* losses, const int* targets, float dloss, int V,
                                               int Vp, bool write_dlogits) {
    const size_t row = blockIdx.x;
    floatX* x = logits + row * Vp;
    const int target = targets[row];
    if (target < 0) {   // ignored: the same for the whole block
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (write_dlogits)
            for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) store128(x + c, x128::constant((floatX)0.0f));
        return;
    }
    float m = -INFINITY, s = 0.0f;
    for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) {
        x128 v = load128(x + c);
        for (int k = 0; k < x128::size; k++) {
            if (c + k >= V) break;
            float z = (float)v[k];
            if (z > m) { s = s * expf(m - z) + 1.0f; m = z; }
            else s += expf(z - m);
        }
    }
    const float lse = block_logsumexp(m, s);
    if (threadIdx.x == 0) losses[row] = lse - (float)x[target];
    if (!write_dlogits) return;
    __syncthreads();  // every thread has read its logits before any is overwritten
    for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) {
        x128 v = load128(x + c), d;
        for (int k = 0; k < x128::size; k++) {
            float p = (c + k < V) ? expf((float)v[k] - lse) : 0.0f;
            float ind = (c + k == target) ? 1.0f : 0.0f;
            d[k] = (floatX)((p - ind) * dloss);
        }
        store128(x + c, d);
    }
}

// losses[row] = CE(logits[row], targets[row]) (0 where the target is negative); with
// write_dlogits, logits become dlogits * dloss (0 on the ignored rows).
static void fused_classifier(floatX* logits, float* losses, const int* targets, float dloss, int rows, int V, int Vp,
                             bool write_dlogits, cudaStream_t stream) {
    NVTX_RANGE_FN();
    ProfileWork pw(0, (double)rows * Vp * (write_dlogits ? 2 : 1) * sizeof(floatX));   // logits read (and dlogits written over them)
    fused_classifier_kernel<<<rows, 1024, 0, stream>>>(logits, losses, targets, dloss, V, Vp, write_dlogits);
    cudaLaunchCheck();
}
