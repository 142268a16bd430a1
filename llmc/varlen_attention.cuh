// Attention over packed variable-length samples (the DiT's batches): every
// sample has its own number of query tokens and of key/value tokens, packed
// sample after sample with no padding, and attention never crosses samples.
//   self-attention:  queries and keys are the sample's L_b tokens (cu_q == cu_k)
//   cross-attention: queries are the sample's tokens, keys/values its text tokens
// Full (non-causal) softmax with scale 1/sqrt(hd).
//
// Layouts (all row-major, one row per token, heads side by side in a row):
//   q:   head h of query token i at q + i*q_stride + h*hd      (i in [0, cu_q[B]))
//   k/v: head h of key token j   at k + j*k_stride + h*hd, v + j*v_stride + h*hd
//   out: [Nq, nh*hd], heads concatenated (the input of the output projection)
//   lse: [nh, Nq] fp32, the natural-log logsumexp of each scaled score row,
//        saved by the forward for the backward
//   dq, dk, dv: written (not accumulated) with the layouts (strides) of q, k, v;
//        the backward also reads the forward's out (for rowsum(dout * out))
// so q/k/v can be read in place from the projection outputs (for example k and v
// as the two halves of a [Nt, 2C] kv projection) without a permutation.
// cu_q / cu_k are HOST arrays [B+1] of cumulative token counts.
//
// This is the simple, correct version: per sample (and per chunk of heads) the
// scores are materialized as a [heads, Lq, Lk] fp32 matrix in a scratch buffer by
// a strided-batched cuBLAS GEMM (batch = heads, reading the heads in place via
// the head stride), a row kernel does the softmax in fp32, and a second GEMM
// multiplies by V. Memory is O(Lq*Lk) for one sample at a time, not for the
// whole batch or for every layer: the backward recomputes the scores from q, k
// and lse (as FlashAttention does) instead of saving the probabilities.
// A fused flash-attention kernel can replace it behind the same interface.
#pragma once
#include <vector>
#include "cublas_common.h"

struct VarlenAttnShape {
    int B, nh, hd;
    const int* cu_q;   // host [B+1]
    const int* cu_k;   // host [B+1]
    int q_stride, k_stride, v_stride;
};

// Elements of one score matrix chunk the scratch must hold: the largest sample's
// nh * Lq * Lk (heads are processed in chunks when the scratch holds fewer).
static size_t varlen_attention_max_elems(const VarlenAttnShape& s) {
    size_t m = 0;
    for (int b = 0; b < s.B; b++)
        m = std::max(m, (size_t)s.nh * (size_t)(s.cu_q[b + 1] - s.cu_q[b]) * (size_t)(s.cu_k[b + 1] - s.cu_k[b]));
    return m;
}
// Scratch bytes for `elems` score elements: fp32 scores/gradients plus floatX probabilities.
static size_t varlen_attention_scratch_bytes(size_t elems) {
    return elems * (sizeof(floatX) + sizeof(float)) + 1024;   // varlen_scratch gets >= elems back
}

// Strided-batched GEMM, column-major terms (see cublas_common.h), A/B floatX,
// C of type c_type (fp32 for the scores), fp32 accumulation.
static void varlen_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const floatX* A, int lda, long long sA,
                        const floatX* Bm, int ldb, long long sB, float beta, void* C, cudaDataType_t c_type, int ldc,
                        long long sC, int batch, cudaStream_t stream) {
    cublasCheck(cublasSetStream(cublas_handle, stream));
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           m, n, k, &alpha, A, CUBLAS_LOWP, lda, sA, Bm, CUBLAS_LOWP, ldb, sB, &beta, C,
                                           c_type, ldc, sC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Forward softmax of `rows` score rows of length Lk (fp32, already scaled): lse =
// max + log(sum exp(s - max)) saved per row, P = exp(s - lse) written as floatX.
// The backward recomputes P with the same expression from the same scores, so
// both passes see bit-identical probabilities. One warp per row; rows of any
// length (not 16-byte aligned in general), so coalesced scalar loads. Max and
// sum in one pass (online: the running sum is rescaled when the max grows), so
// the row is read twice, not three times.
// Row r is head h0 + r / Lq, query i = r % Lq; its lse lives at lse[h * Nq + q0 + i].
__global__ static void varlen_softmax_forward_kernel(floatX* __restrict__ P, float* __restrict__ lse,
                                                     const float* __restrict__ S, int rows, int Lq, int Lk, int h0,
                                                     int Nq, int q0) {
    const int lane = threadIdx.x % 32;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= (size_t)rows) return;
    const float* s = S + row * Lk;
    float m = -INFINITY, sum = 0.0f;
    for (int j = lane; j < Lk; j += 32) {
        const float x = s[j];
        if (x > m) { sum = sum * expf(m - x) + 1.0f; m = x; }
        else sum += expf(x - m);
    }
    const float M = warp_reduce_max(m);
    sum = warp_reduce_sum(m == -INFINITY ? 0.0f : sum * expf(m - M));
    const float l = M + logf(sum);
    floatX* p = P + row * Lk;
    for (int j = lane; j < Lk; j += 32) p[j] = (floatX)expf(s[j] - l);
    if (lane == 0) {
        const int h = h0 + (int)(row / Lq), i = (int)(row % Lq);
        lse[(size_t)h * Nq + q0 + i] = l;
    }
}

// Backward: P = exp(s - lse) from the recomputed scores (as in the forward).
__global__ static void varlen_softmax_recompute_kernel(floatX* __restrict__ P, const float* __restrict__ lse,
                                                       const float* __restrict__ S, int rows, int Lq, int Lk, int h0,
                                                       int Nq, int q0) {
    const int lane = threadIdx.x % 32;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= (size_t)rows) return;
    const int h = h0 + (int)(row / Lq), i = (int)(row % Lq);
    const float l = lse[(size_t)h * Nq + q0 + i];
    const float* s = S + row * Lk;
    floatX* p = P + row * Lk;
    for (int j = lane; j < Lk; j += 32) p[j] = (floatX)expf(s[j] - l);
}

// dS = P * (dP - D), D = sum_j P dP = sum_d dO O (the row's output and its
// gradient, FlashAttention's identity: one pass over the row instead of two),
// written as floatX over P (each element is read and then written by the same
// lane). dP fp32. The scale 1/sqrt(hd) is applied by the dQ/dK GEMMs.
// dout/out: the sample's first query row, head h0, row stride C.
__global__ static void varlen_softmax_backward_kernel(floatX* __restrict__ P, const float* __restrict__ dP,
                                                      const floatX* __restrict__ dout, const floatX* __restrict__ out,
                                                      int rows, int Lq, int Lk, int C, int hd) {
    const int lane = threadIdx.x % 32;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= (size_t)rows) return;
    const int h = (int)(row / Lq), i = (int)(row % Lq);
    const floatX* dy = dout + (size_t)i * C + (size_t)h * hd;
    const floatX* y = out + (size_t)i * C + (size_t)h * hd;
    float dot = 0.0f;
    for (int d = lane; d < hd; d += 32) dot += (float)dy[d] * (float)y[d];
    dot = warp_reduce_sum(dot);
    floatX* p = P + row * Lk;
    const float* g = dP + row * Lk;
    for (int j = lane; j < Lk; j += 32) p[j] = (floatX)((float)p[j] * (g[j] - dot));
}

// The scratch split into the floatX probabilities and the fp32 scores.
struct VarlenScratch {
    floatX* P;
    float* S;
    size_t elems;
};
static VarlenScratch varlen_scratch(void* scratch, size_t scratch_bytes) {
    VarlenScratch v;
    // elems * (sizeof(floatX) + 4) + 512 <= bytes, with P's part rounded up to 256 bytes
    v.elems = scratch_bytes > 512 ? (scratch_bytes - 512) / (sizeof(floatX) + sizeof(float)) : 0;
    v.P = (floatX*)scratch;
    v.S = (float*)((char*)scratch + (v.elems * sizeof(floatX) + 255) / 256 * 256);
    return v;
}

// Heads per chunk for a sample with Lq x Lk scores.
static int varlen_heads_per_chunk(const VarlenAttnShape& s, const VarlenScratch& sc, int Lq, int Lk) {
    const size_t per_head = (size_t)Lq * Lk;
    const int hc = (int)std::min<size_t>((size_t)s.nh, per_head ? sc.elems / per_head : (size_t)s.nh);
    if (hc <= 0) fail("varlen attention: scratch of %zu score elements is smaller than one head of %d x %d", sc.elems, Lq, Lk);
    return hc;
}

static void varlen_attention_check(const VarlenAttnShape& s) {
    for (int b = 0; b < s.B; b++)
        if (s.cu_q[b + 1] - s.cu_q[b] <= 0 || s.cu_k[b + 1] - s.cu_k[b] <= 0)
            fail("varlen attention: sample %d has %d queries and %d keys (both must be > 0)", b, s.cu_q[b + 1] - s.cu_q[b],
                 s.cu_k[b + 1] - s.cu_k[b]);
}

static void varlen_attention_forward(floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v,
                                     const VarlenAttnShape& s, void* scratch, size_t scratch_bytes, cudaStream_t stream) {
    NVTX_RANGE_FN();
    varlen_attention_check(s);
    const VarlenScratch sc = varlen_scratch(scratch, scratch_bytes);
    const int hd = s.hd, C = s.nh * s.hd, Nq = s.cu_q[s.B];
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < s.B; b++) {
        const int q0 = s.cu_q[b], Lq = s.cu_q[b + 1] - q0, k0 = s.cu_k[b], Lk = s.cu_k[b + 1] - k0;
        const int hc = varlen_heads_per_chunk(s, sc, Lq, Lk);
        for (int h0 = 0; h0 < s.nh; h0 += hc) {
            const int nb = std::min(hc, s.nh - h0);
            const floatX* qb = q + (size_t)q0 * s.q_stride + (size_t)h0 * hd;
            const floatX* kb = k + (size_t)k0 * s.k_stride + (size_t)h0 * hd;
            const floatX* vb = v + (size_t)k0 * s.v_stride + (size_t)h0 * hd;
            // S^T [Lk, Lq] (column-major view of row-major S [Lq, Lk]) = scale * K Q^T
            varlen_gemm(true, false, Lk, Lq, hd, scale, kb, s.k_stride, hd, qb, s.q_stride, hd, 0.0f, sc.S, CUDA_R_32F, Lk,
                        (long long)Lq * Lk, nb, stream);
            const int rows = nb * Lq;
            varlen_softmax_forward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(sc.P, lse, sc.S, rows, Lq, Lk, h0, Nq, q0);
            cudaLaunchCheck();
            // O^T [hd, Lq] = V^T [hd, Lk] @ P^T [Lk, Lq]
            varlen_gemm(false, false, hd, Lq, Lk, 1.0f, vb, s.v_stride, hd, sc.P, Lk, (long long)Lq * Lk, 0.0f,
                        out + (size_t)q0 * C + (size_t)h0 * hd, CUBLAS_LOWP, C, hd, nb, stream);
        }
    }
}

static void varlen_attention_backward(floatX* dq, floatX* dk, floatX* dv, const floatX* dout, const floatX* out,
                                      const floatX* q, const floatX* k, const floatX* v, const float* lse,
                                      const VarlenAttnShape& s,
                                      void* scratch, size_t scratch_bytes, cudaStream_t stream) {
    NVTX_RANGE_FN();
    varlen_attention_check(s);
    const VarlenScratch sc = varlen_scratch(scratch, scratch_bytes);
    const int hd = s.hd, C = s.nh * s.hd, Nq = s.cu_q[s.B];
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < s.B; b++) {
        const int q0 = s.cu_q[b], Lq = s.cu_q[b + 1] - q0, k0 = s.cu_k[b], Lk = s.cu_k[b + 1] - k0;
        const int hc = varlen_heads_per_chunk(s, sc, Lq, Lk);
        for (int h0 = 0; h0 < s.nh; h0 += hc) {
            const int nb = std::min(hc, s.nh - h0);
            const size_t qo = (size_t)q0 * s.q_stride + (size_t)h0 * hd, ko = (size_t)k0 * s.k_stride + (size_t)h0 * hd;
            const size_t vo = (size_t)k0 * s.v_stride + (size_t)h0 * hd;
            const floatX* dob = dout + (size_t)q0 * C + (size_t)h0 * hd;
            const long long sP = (long long)Lq * Lk;
            const int rows = nb * Lq;
            // recompute S and P
            varlen_gemm(true, false, Lk, Lq, hd, scale, k + ko, s.k_stride, hd, q + qo, s.q_stride, hd, 0.0f, sc.S, CUDA_R_32F,
                        Lk, sP, nb, stream);
            varlen_softmax_recompute_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(sc.P, lse, sc.S, rows, Lq, Lk, h0, Nq, q0);
            cudaLaunchCheck();
            // dV^T [hd, Lk] = dO^T [hd, Lq] @ P [Lq, Lk]
            varlen_gemm(false, true, hd, Lk, Lq, 1.0f, dob, C, hd, sc.P, Lk, sP, 0.0f, dv + vo, CUBLAS_LOWP, s.v_stride, hd,
                        nb, stream);
            // dP^T [Lk, Lq] = V [Lk, hd] @ dO^T [hd, Lq]   (fp32, over the scores)
            varlen_gemm(true, false, Lk, Lq, hd, 1.0f, v + vo, s.v_stride, hd, dob, C, hd, 0.0f, sc.S, CUDA_R_32F, Lk, sP, nb,
                        stream);
            varlen_softmax_backward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(
                sc.P, sc.S, dob, out + (size_t)q0 * C + (size_t)h0 * hd, rows, Lq, Lk, C, hd);
            cudaLaunchCheck();
            // dQ^T [hd, Lq] = scale * K^T [hd, Lk] @ dS^T [Lk, Lq]
            varlen_gemm(false, false, hd, Lq, Lk, scale, k + ko, s.k_stride, hd, sc.P, Lk, sP, 0.0f, dq + qo, CUBLAS_LOWP,
                        s.q_stride, hd, nb, stream);
            // dK^T [hd, Lk] = scale * Q^T [hd, Lq] @ dS [Lq, Lk]
            varlen_gemm(false, true, hd, Lk, Lq, scale, q + qo, s.q_stride, hd, sc.P, Lk, sP, 0.0f, dk + ko, CUBLAS_LOWP,
                        s.k_stride, hd, nb, stream);
        }
    }
}
