// AdamW on fp32 master weights (torch.optim.AdamW semantics), writing the bf16
// compute copy in the same pass: one read of grad, m, v, master, one write of
// m, v, master and the bf16 weight. Gradient clipping is folded in as a scale
// on the gradient. 16-byte loads and stores of the fp32 streams.
#pragma once
#include "../core/cuda_common.h"

// One element's step, shared by both kernels below: updates the moments m, v in
// place and returns the new master weight (g already scaled by the clip factor;
// bc1, bc2 the bias corrections; wd the decay of this element's tensor).
__device__ __forceinline__ float adamw_element(float g, float& m, float& v, float w, float lr, float beta1, float beta2, float bc1,
                                               float bc2, float eps, float wd) {
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    w -= lr * wd * w;
    return w - lr * (m / bc1) / (sqrtf(v / bc2) + eps);
}

// A thread takes U groups of 4 elements, blockDim apart (coalesced), and issues all their
// 16-byte loads before the arithmetic, so that each thread keeps 64 U bytes in flight; the 4
// bf16 weights of a group go out as one 8-byte store. Streaming cache hints: nothing here is
// read again before the next step. Elements past the last whole group: block 0's first threads.
template <int U>
__global__ static void adamw_kernel(floatX* params, float* master, const float* grads, float* m, float* v, size_t n,
                                    float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                                    float grad_scale) {
    const size_t n4 = n / 4, i0 = (size_t)blockIdx.x * blockDim.x * U + threadIdx.x;
    float4 g[U], mm[U], vv[U], p[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const size_t i = i0 + (size_t)u * blockDim.x;
        if (i < n4) {
            g[u] = __ldcs(reinterpret_cast<const float4*>(grads) + i);
            mm[u] = __ldcs(reinterpret_cast<const float4*>(m) + i);
            vv[u] = __ldcs(reinterpret_cast<const float4*>(v) + i);
            p[u] = __ldcs(reinterpret_cast<const float4*>(master) + i);
        }
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
        const size_t i = i0 + (size_t)u * blockDim.x;
        if (i >= n4) continue;
        float* gp = &g[u].x; float* mp = &mm[u].x; float* vp = &vv[u].x; float* pp = &p[u].x;
        alignas(16) floatX w[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            pp[k] = adamw_element(gp[k] * grad_scale, mp[k], vp[k], pp[k], lr, beta1, beta2, bc1, bc2, eps, wd);
            w[k] = (floatX)pp[k];
        }
        __stcs(reinterpret_cast<float4*>(m) + i, mm[u]);
        __stcs(reinterpret_cast<float4*>(v) + i, vv[u]);
        __stcs(reinterpret_cast<float4*>(master) + i, p[u]);
        if constexpr (sizeof(floatX) == 2) __stcs(reinterpret_cast<uint2*>(params) + i, *reinterpret_cast<const uint2*>(w));
        else __stcs(reinterpret_cast<float4*>(params) + i, *reinterpret_cast<const float4*>(w));
    }
    if (blockIdx.x == 0 && threadIdx.x < n % 4) {
        const size_t k = n4 * 4 + threadIdx.x;
        master[k] = adamw_element(grads[k] * grad_scale, m[k], v[k], master[k], lr, beta1, beta2, bc1, bc2, eps, wd);
        params[k] = (floatX)master[k];
    }
}
// groups of 4 elements a thread takes (dev/cuda/adamw times 1, 2 and 4)
constexpr int ADAMW_GROUPS = 2;

// One AdamW step over n contiguous parameters (16-byte aligned); step is 1-based.
template <int U = ADAMW_GROUPS>
static void adamw_update(floatX* params, float* master, const float* grads, float* m, float* v, size_t n, float lr,
                         float beta1, float beta2, float eps, float wd, float grad_scale, int step, cudaStream_t stream) {
    NVTX_RANGE_FN();
    const float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    ProfileWork pw(0, (double)n * (28 + sizeof(floatX)));   // grads; master, m, v read and written; params
    const int blocks = std::max(1, ceil_div((long long)(n / 4), 256LL * U));
    adamw_kernel<U><<<blocks, 256, 0, stream>>>(params, master, grads, m, v, n, lr, beta1, beta2, bc1, bc2, eps, wd, grad_scale);
    cudaLaunchCheck();
}

// ----------------------------------------------------------------------------
// AdamW over a list of pieces in one launch (multi-GPU runs, llmc/model/params.cuh):
// piece k updates n elements: gradient at grads[g..], master/m/v at [s..], the
// compute weight at params[p..], with weight decay wd * decay. adamw_element per
// element, as adamw_kernel, without its 16-byte alignment needs
// (a ZeRO shard starts and ends anywhere inside a tensor). Elements of the
// pieces are numbered consecutively (work = the first one's number); a thread
// finds its piece by binary search (a few hundred pieces, cached).
struct AdamWPiece {
    size_t g, s, p, n, work;
    float decay;   // 1: weight decay applies, 0: not
    float pad;
};

__global__ static void adamw_pieces_kernel(floatX* params, float* master, const float* grads, float* m, float* v,
                                           const AdamWPiece* pieces, int n_pieces, size_t total, float lr, float beta1,
                                           float beta2, float bc1, float bc2, float eps, float wd, float grad_scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int a = 0, b = n_pieces - 1;
        while (a < b) {  // the last piece whose work start is <= i
            const int mid = (a + b + 1) / 2;
            if (pieces[mid].work <= i) a = mid; else b = mid - 1;
        }
        const AdamWPiece pc = pieces[a];
        const size_t k = i - pc.work;
        const size_t gi = pc.g + k, si = pc.s + k;
        float mk = m[si], vk = v[si];
        const float w = adamw_element(grads[gi] * grad_scale, mk, vk, master[si], lr, beta1, beta2, bc1, bc2, eps, wd * pc.decay);
        m[si] = mk;
        v[si] = vk;
        master[si] = w;
        params[pc.p + k] = (floatX)w;
    }
}

// One AdamW step over the pieces (device array, `total` elements in all); step is 1-based.
static void adamw_pieces_update(floatX* params, float* master, const float* grads, float* m, float* v, const AdamWPiece* pieces,
                                int n_pieces, size_t total, float lr, float beta1, float beta2, float eps, float wd, float grad_scale,
                                int step, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (total == 0 || n_pieces == 0) return;
    const float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    const int blocks = (int)std::min<size_t>((total + 255) / 256, 132 * 16);
    ProfileWork pw(0, (double)total * (28 + sizeof(floatX)));   // as adamw_update
    adamw_pieces_kernel<<<blocks, 256, 0, stream>>>(params, master, grads, m, v, pieces, n_pieces, total, lr, beta1, beta2,
                                                    bc1, bc2, eps, wd, grad_scale);
    cudaLaunchCheck();
}
