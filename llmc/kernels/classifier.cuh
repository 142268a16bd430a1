// Fused classifier: softmax + cross-entropy + dlogits in one kernel, one block
// per row of logits. Pass 1 computes the row max and sum of exponentials
// together (online softmax) over the real vocabulary; pass 2 writes
// dlogits = (softmax - onehot) * dloss over the logits in place. No fp32
// probability tensor ever exists. Columns >= V (vocab padding) are excluded
// from the softmax and get zero gradient. A negative target (SFT_IGNORE, -100:
// a prompt token, padding; transformers' ignore index) is no one's target: loss 0,
// dlogits row 0, and the row is not read.
// Why shaped so: the row is read twice, and a 128k-column row is 256 KB, so with two
// blocks per SM the rows in flight exceed the L2: pass 1 loads under an
// evict_last policy so that pass 2 finds the row there, and pass 2 streams (last use). The
// running max is taken per 16-byte chunk (one rescale of the sum per chunk, not a branch per
// element), and the exponentials are exp2 of log2(e)-scaled differences (a multiply and one
// MUFU op, no range reduction).
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

// A row whose target is negative (ignored): loss 0 and, with write_dlogits, a dlogits row of
// zeros; true when the row is ignored (the same for the whole block)
__device__ __forceinline__ bool classifier_ignored_row(floatX* x, float* losses, size_t row, int target, int Vp, bool write_dlogits) {
    if (target < 0) {
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (write_dlogits)
            for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) store128cs(x + c, x128::constant((floatX)0.0f));
        return true;
    }
    return false;
}

// Each thread's columns are chunks c, c + stride, ... (stride: the block's 16-byte chunks);
// U of them are loaded before any is used, so that a thread has that many loads in flight: one
// at a time, a block waits on memory once per chunk, and a 32k-column row is only a few chunks
// per thread, so the waits are most of its time. The trainers' U = 4 takes 64 registers a
// thread, so 1024 threads an SM: blocks of 512, two an SM, one reducing while the other loads.
// (dev/cuda/classifier times U = 1 in blocks of 1024, the kernel before.)
constexpr int CLASSIFIER_UNROLL = 4, CLASSIFIER_THREADS = 512;
template <int U>
__global__ static void __launch_bounds__(1024)
    fused_classifier_kernel(floatX* logits, float* losses, const int* targets, float dloss, int V, int Vp, bool write_dlogits) {
    constexpr float LOG2E = 1.4426950408889634f;
    const size_t row = blockIdx.x;
    floatX* x = logits + row * Vp;
    const int target = targets[row];
    if (classifier_ignored_row(x, losses, row, target, Vp, write_dlogits)) return;
    const int stride = blockDim.x * x128::size;
    float m = -INFINITY, s = 0.0f;   // running max and sum of exp(z - m) over this thread's columns
    const uint64_t keep = l2_policy_evict_last();
    for (int c0 = threadIdx.x * x128::size; c0 < Vp; c0 += U * stride) {
        x128 v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (c0 + u * stride < Vp) v[u] = load128_l2_policy(x + c0 + u * stride, keep);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + u * stride;
            if (c >= Vp) break;
            float z[x128::size], cm = -INFINITY;
            for (int k = 0; k < x128::size; k++) {
                z[k] = c + k < V ? (float)v[u][k] : -INFINITY;
                cm = fmaxf(cm, z[k]);
            }
            if (cm == -INFINITY) continue;   // padding only
            if (cm > m) {
                s *= exp2f((m - cm) * LOG2E);   // m = -inf: s is 0 and stays 0
                m = cm;
            }
            for (int k = 0; k < x128::size; k++) s += exp2f((z[k] - m) * LOG2E);
        }
    }
    const float lse = block_logsumexp(m, s);
    if (threadIdx.x == 0) losses[row] = lse - (float)x[target];
    if (!write_dlogits) return;
    __syncthreads();  // every thread has read its logits before any is overwritten
    const float lse2 = lse * LOG2E;
    for (int c0 = threadIdx.x * x128::size; c0 < Vp; c0 += U * stride) {
        x128 v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (c0 + u * stride < Vp) v[u] = load128cs(x + c0 + u * stride);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + u * stride;
            if (c >= Vp) break;
            x128 d;
            for (int k = 0; k < x128::size; k++) {
                const float p = c + k < V ? exp2f(fmaf((float)v[u][k], LOG2E, -lse2)) : 0.0f;
                d[k] = (floatX)((p - (c + k == target ? 1.0f : 0.0f)) * dloss);
            }
            store128cs(x + c, d);
        }
    }
}

// losses[row] = CE(logits[row], targets[row]) (0 where the target is negative); with
// write_dlogits, logits become dlogits * dloss (0 on the ignored rows).
static void fused_classifier(floatX* logits, float* losses, const int* targets, float dloss, int rows, int V, int Vp,
                             bool write_dlogits, cudaStream_t stream) {
    NVTX_RANGE_FN();
    ProfileWork pw(0, (double)rows * Vp * (write_dlogits ? 2 : 1) * sizeof(floatX));   // logits read (and dlogits written over them)
    fused_classifier_kernel<CLASSIFIER_UNROLL><<<rows, CLASSIFIER_THREADS, 0, stream>>>(logits, losses, targets, dloss, V, Vp,
                                                                                       write_dlogits);
    cudaLaunchCheck();
}
