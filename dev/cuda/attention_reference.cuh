// The reference attention of dev/cuda/attention.cu: grouped-query heads as batched cuBLAS
// GEMMs plus a row softmax. The correct-but-simple version: it materializes the [T, T] score
// matrix per head (the trainers run the fused kernels of llmc/attention/flash_attention.cuh).
// Inputs come in the layouts rope.cuh writes: q [B, nkv, T, r, hd] with the
// r = nh/nkv query heads of one K/V head side by side, k and v [B, nkv, T, hd].
// For one (b, kv group) the r query heads form a [T*r, hd] matrix, so
// S = Q K^T is ONE GEMM per group that reads the shared K/V head directly, and
// in the backward dK = dS^T Q and dV = P^T dY sum over the r heads for free.
#pragma once
#include "../../llmc/core/cublas_common.h"
#include "../../llmc/attention/flash_common.cuh"  // AttnShape

// Row softmax of S (already scaled), in place -> P. Row (group, t, j): query position t.
// One warp per row, 16-byte loads; masked columns (c > t when causal) are written
// as 0 without being read. __restrict__ and the vector loads let every load of a
// pass be in flight at once (scalar loads through possibly-aliased pointers made
// the backward many times slower than the bandwidth allows).
__global__ static void attention_softmax_forward_kernel(floatX* __restrict__ att, int rows, int T, int r, bool causal) {
    const int lane = threadIdx.x % 32;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= (size_t)rows) return;
    const int t = (int)((row % ((size_t)T * r)) / r);
    const int n = causal ? t + 1 : T;
    floatX* x = att + row * T;
    const int nv = ceil_div(n, x128::size) * x128::size;  // columns covered by vector loads
    float m = -INFINITY;
    for (int c = lane * x128::size; c < nv; c += 32 * x128::size) {
        x128 v = load128(x + c);
        for (int k = 0; k < x128::size; k++) if (c + k < n) m = fmaxf(m, (float)v[k]);
    }
    m = warp_reduce_max(m);
    float s = 0.0f;
    for (int c = lane * x128::size; c < nv; c += 32 * x128::size) {
        x128 v = load128(x + c);
        for (int k = 0; k < x128::size; k++) if (c + k < n) s += expf((float)v[k] - m);
    }
    s = warp_reduce_sum(s);
    const float inv = 1.0f / s;
    for (int c = lane * x128::size; c < T; c += 32 * x128::size) {
        x128 o;
        if (c < n) {
            x128 v = load128(x + c);
            for (int k = 0; k < x128::size; k++) o[k] = (floatX)(c + k < n ? expf((float)v[k] - m) * inv : 0.0f);
        } else {
            o = x128::constant((floatX)0.0f);
        }
        store128(x + c, o);
    }
}

// dS = P * (dP - sum_c P dP), in place over dP; masked columns (P = 0) become 0.
__global__ static void attention_softmax_backward_kernel(floatX* __restrict__ dp, const floatX* __restrict__ att,
                                                         int rows, int T, int r, bool causal) {
    const int lane = threadIdx.x % 32;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= (size_t)rows) return;
    const int t = (int)((row % ((size_t)T * r)) / r);
    const int n = causal ? t + 1 : T;
    const floatX* p = att + row * T;
    floatX* d = dp + row * T;
    float dot = 0.0f;
    for (int c = lane * x128::size; c < n; c += 32 * x128::size) {
        x128 pv = load128(p + c), dv = load128(d + c);
        for (int k = 0; k < x128::size; k++) dot += (float)pv[k] * (float)dv[k];
    }
    dot = warp_reduce_sum(dot);
    for (int c = lane * x128::size; c < T; c += 32 * x128::size) {
        x128 o;
        if (c < n) {
            x128 pv = load128(p + c), dv = load128(d + c);
            for (int k = 0; k < x128::size; k++) o[k] = (floatX)((float)pv[k] * ((float)dv[k] - dot));
        } else {
            o = x128::constant((floatX)0.0f);
        }
        store128(d + c, o);
    }
}

// [B, nkv, T, r, hd] <-> [B, T, nh, hd]; to_heads_last: permuted -> token-major
__global__ static void attention_permute_kernel(floatX* out, const floatX* inp, AttnShape s, bool to_token_major) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)s.B * s.T * s.nh * s.hd) return;
    // decompose the token-major index (b, t, h, d)
    const int d = (int)(idx % s.hd);
    const int h = (int)((idx / s.hd) % s.nh);
    const size_t bt = idx / ((size_t)s.hd * s.nh);
    const int t = (int)(bt % s.T), b = (int)(bt / s.T);
    const int r = s.nh / s.nkv, g = h / r, j = h % r;
    const size_t p = ((((size_t)b * s.nkv + g) * s.T + t) * r + j) * s.hd + d;
    if (to_token_major) store128(out + idx, load128(inp + p));
    else store128(out + p, load128(inp + idx));
}

static void attention_permute(floatX* out, const floatX* inp, const AttnShape& s, bool to_token_major, cudaStream_t st) {
    const size_t n = (size_t)s.B * s.T * s.nh * s.hd / x128::size;
    attention_permute_kernel<<<ceil_div(n, 256), 256, 0, st>>>(out, inp, s, to_token_major);
    cudaLaunchCheck();
}

// Strided-batched GEMM, column-major terms (see cublas_common.h), fp32 accumulation.
static void gemm_batched(bool ta, bool tb, int m, int n, int k, float alpha, const floatX* A, int lda, long long sA,
                         const floatX* Bm, int ldb, long long sB, float beta, floatX* C, int ldc, long long sC, int batch,
                         cudaStream_t stream) {
    cublasCheck(cublasSetStream(cublas_handle, stream));
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           m, n, k, &alpha, A, CUBLAS_LOWP, lda, sA, Bm, CUBLAS_LOWP, ldb, sB, &beta, C,
                                           CUBLAS_LOWP, ldc, sC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out [B, T, nh*hd]; att [B, nkv, T*r, T] (saved P); yp scratch [B*nh*T*hd]
static void attention_check_shape(const AttnShape& s) {
    // rows of the score matrix are read with 16-byte vectors
    if (s.T % 8 != 0) fail("attention: sequence length %d must be a multiple of 8 (flag --seq-len)", s.T);
}

static void attention_forward(floatX* out, floatX* att, floatX* yp, const floatX* qp, const floatX* kp, const floatX* vp,
                              const AttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    attention_check_shape(s);
    const int r = s.nh / s.nkv, Tr = s.T * r, batch = s.B * s.nkv;
    const float scale = 1.0f / sqrtf((float)s.hd);
    // S^T [T, T*r] = K [T, hd] @ Q^T   (column-major view of row-major S [T*r, T])
    gemm_batched(true, false, s.T, Tr, s.hd, scale, kp, s.hd, (long long)s.T * s.hd, qp, s.hd, (long long)Tr * s.hd,
                 0.0f, att, s.T, (long long)Tr * s.T, batch, stream);
    const int rows = batch * Tr;
    attention_softmax_forward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(att, rows, s.T, r, s.causal);
    cudaLaunchCheck();
    // Y^T [hd, T*r] = V^T [hd, T] @ P^T [T, T*r]
    gemm_batched(false, false, s.hd, Tr, s.T, 1.0f, vp, s.hd, (long long)s.T * s.hd, att, s.T, (long long)Tr * s.T,
                 0.0f, yp, s.hd, (long long)Tr * s.hd, batch, stream);
    attention_permute(out, yp, s, true, stream);
}

// dqp/dkp/dvp in the permuted layouts; dyp scratch [B*nh*T*hd]; dp scratch like att.
static void attention_backward(floatX* dqp, floatX* dkp, floatX* dvp, floatX* dyp, floatX* dp, const floatX* dout,
                               const floatX* att, const floatX* qp, const floatX* kp, const floatX* vp,
                               const AttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    const int r = s.nh / s.nkv, Tr = s.T * r, batch = s.B * s.nkv;
    const float scale = 1.0f / sqrtf((float)s.hd);
    const long long sQ = (long long)Tr * s.hd, sK = (long long)s.T * s.hd, sP = (long long)Tr * s.T;
    attention_permute(dyp, dout, s, false, stream);
    // dP^T [T, T*r] = V [T, hd] @ dY^T
    gemm_batched(true, false, s.T, Tr, s.hd, 1.0f, vp, s.hd, sK, dyp, s.hd, sQ, 0.0f, dp, s.T, sP, batch, stream);
    // dV^T [hd, T] = dY^T [hd, T*r] @ P [T*r, T]
    gemm_batched(false, true, s.hd, s.T, Tr, 1.0f, dyp, s.hd, sQ, att, s.T, sP, 0.0f, dvp, s.hd, sK, batch, stream);
    const int rows = batch * Tr;
    attention_softmax_backward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(dp, att, rows, s.T, r, s.causal);
    cudaLaunchCheck();
    // dQ^T [hd, T*r] = K^T [hd, T] @ dS^T [T, T*r]   (scale folded into alpha)
    gemm_batched(false, false, s.hd, Tr, s.T, scale, kp, s.hd, sK, dp, s.T, sP, 0.0f, dqp, s.hd, sQ, batch, stream);
    // dK^T [hd, T] = Q^T [hd, T*r] @ dS [T*r, T]
    gemm_batched(false, true, s.hd, s.T, Tr, scale, qp, s.hd, sQ, dp, s.T, sP, 0.0f, dkp, s.hd, sK, batch, stream);
}
