// QK-norm + RoPE for the GPT (1D positions), fused with the layout change that
// attention wants. qkv rows [q heads | k heads | v heads] (the matmul output)
// are read once; q/k are (optionally) RMS-normalized per head, rotated with
// the half-rotation RoPE (pairs i, i + hd/2, HF/Llama layout), and written into
// head-major layouts so that attention can run GQA as batched GEMMs without
// ever copying a K/V head: q -> [B, nkv, T, r, hd] (r = nh/nkv query heads of
// a group side by side), k, v -> [B, nkv, T, hd].
// Fast path (head_dim/2 a power-of-two multiple of the 16-byte vector): G lanes
// per (token, head), each owning one 16-byte chunk of each half, QK-norm sums
// reduced across the G lanes with shuffles. Other head dims: one warp per
// (token, head), scalar accesses.
#pragma once
#include <vector>
#include "../core/cuda_common.h"
#include "../core/reduce.cuh"

struct RopeShape {
    int B, T, nh, nkv, hd;
    const int* pos = nullptr;   // device [B, T]: packed rows' positions, restarting at each document (null: t)
};

// the position token (b, t) = row bt rotates by
__device__ __forceinline__ int rope_position(const RopeShape& s, size_t bt, int t) { return s.pos ? s.pos[bt] : t; }

// index of element 0 of (b, t, head) in the permuted q/k/v layouts
__device__ __forceinline__ size_t rope_q_index(const RopeShape& s, int b, int t, int h) {
    const int r = s.nh / s.nkv, g = h / r, j = h % r;
    return ((((size_t)b * s.nkv + g) * s.T + t) * r + j) * s.hd;
}
__device__ __forceinline__ size_t rope_kv_index(const RopeShape& s, int b, int t, int g) {
    return (((size_t)b * s.nkv + g) * s.T + t) * s.hd;
}

// rope_cs: [T, hd/2] pairs (cos, sin) as float2, precomputed in double on the host.
__global__ static void qknorm_rope_forward_kernel(floatX* qp, floatX* kp, floatX* vp, float* qk_rstd, const floatX* qkv,
                                                  const float2* rope_cs, const floatX* q_norm, const floatX* k_norm,
                                                  RopeShape s, float eps) {
    const int lane = threadIdx.x % 32;
    const int nheads = s.nh + 2 * s.nkv;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)s.B * s.T * nheads) return;
    const int head = (int)(w % nheads);
    const size_t bt = w / nheads;
    const int t = (int)(bt % s.T), b = (int)(bt / s.T);
    const floatX* x = qkv + bt * nheads * s.hd + (size_t)head * s.hd;
    const int half = s.hd / 2;
    if (head >= s.nh + s.nkv) {  // v head: copy
        floatX* dst = vp + rope_kv_index(s, b, t, head - s.nh - s.nkv);
        for (int i = lane; i < s.hd; i += 32) dst[i] = x[i];
        return;
    }
    const bool is_q = head < s.nh;
    const floatX* nw = is_q ? q_norm : k_norm;
    float rs = 1.0f;
    if (nw) {
        float ss = 0.0f;
        for (int i = lane; i < s.hd; i += 32) ss += (float)x[i] * (float)x[i];
        rs = rsqrtf(warp_reduce_sum(ss) / s.hd + eps);
        if (lane == 0) qk_rstd[bt * (s.nh + s.nkv) + head] = rs;
    }
    floatX* dst = is_q ? qp + rope_q_index(s, b, t, head) : kp + rope_kv_index(s, b, t, head - s.nh);
    for (int i = lane; i < half; i += 32) {
        float x1 = (float)x[i] * rs, x2 = (float)x[i + half] * rs;
        if (nw) { x1 *= (float)nw[i]; x2 *= (float)nw[i + half]; }
        const float2 cs = rope_cs[(size_t)rope_position(s, bt, t) * half + i];
        dst[i] = (floatX)(x1 * cs.x - x2 * cs.y);
        dst[i + half] = (floatX)(x2 * cs.x + x1 * cs.y);
    }
}

// ---- fast path: G lanes per (token, head), one 16-byte chunk of each half per lane
template <int G>
__device__ __forceinline__ float group_reduce_sum(float v) {
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(__activemask(), v, o);
    return v;
}

// the cos/sin pairs of one chunk: x128::size float2 = x128::size / 2 float4
struct RopeChunk { float c[x128::size], s[x128::size]; };
__device__ __forceinline__ RopeChunk rope_chunk(const float2* rope_cs, size_t index) {
    RopeChunk r;
    const float4* p = reinterpret_cast<const float4*>(rope_cs + index);
    for (int k = 0; k < x128::size / 2; k++) {
        float4 v = p[k];
        r.c[2 * k] = v.x; r.s[2 * k] = v.y; r.c[2 * k + 1] = v.z; r.s[2 * k + 1] = v.w;
    }
    return r;
}

template <int G>
__global__ void qknorm_rope_forward_vec_kernel(floatX* qp, floatX* kp, floatX* vp, float* qk_rstd, const floatX* qkv,
                                               const float2* rope_cs, const floatX* q_norm, const floatX* k_norm,
                                               RopeShape s, float eps) {
    const int nheads = s.nh + 2 * s.nkv, half = s.hd / 2;
    const size_t gid = (size_t)blockIdx.x * blockDim.x + threadIdx.x, item = gid / G;
    if (item >= (size_t)s.B * s.T * nheads) return;  // whole groups exit together
    const int i0 = (int)(gid % G) * x128::size;
    const int head = (int)(item % nheads);
    const size_t bt = item / nheads;
    const int t = (int)(bt % s.T), b = (int)(bt / s.T);
    const floatX* x = qkv + item * s.hd;
    x128 x1 = load128cs(x + i0), x2 = load128cs(x + half + i0);
    if (head >= s.nh + s.nkv) {
        floatX* dst = vp + rope_kv_index(s, b, t, head - s.nh - s.nkv);
        store128(dst + i0, x1);
        store128(dst + half + i0, x2);
        return;
    }
    const bool is_q = head < s.nh;
    const floatX* nw = is_q ? q_norm : k_norm;
    float rs = 1.0f;
    x128 w1 = x128::constant((floatX)1.0f), w2 = w1;
    if (nw) {
        float ss = 0.0f;
        for (int k = 0; k < x128::size; k++) ss += (float)x1[k] * (float)x1[k] + (float)x2[k] * (float)x2[k];
        rs = rsqrtf(group_reduce_sum<G>(ss) / s.hd + eps);
        if (i0 == 0) qk_rstd[bt * (s.nh + s.nkv) + head] = rs;
        w1 = load128(nw + i0);
        w2 = load128(nw + half + i0);
    }
    const RopeChunk cs = rope_chunk(rope_cs, (size_t)rope_position(s, bt, t) * half + i0);
    x128 o1, o2;
    for (int k = 0; k < x128::size; k++) {
        float a = (float)x1[k] * rs * (float)w1[k], c = (float)x2[k] * rs * (float)w2[k];
        o1[k] = (floatX)(a * cs.c[k] - c * cs.s[k]);
        o2[k] = (floatX)(c * cs.c[k] + a * cs.s[k]);
    }
    floatX* dst = is_q ? qp + rope_q_index(s, b, t, head) : kp + rope_kv_index(s, b, t, head - s.nh);
    store128(dst + i0, o1);
    store128(dst + half + i0, o2);
}

template <int G>
__global__ void qknorm_rope_backward_vec_kernel(floatX* dqkv, float* dnw_scratch, const floatX* dqp, const floatX* dkp,
                                                const floatX* dvp, const floatX* qkv, const float* qk_rstd,
                                                const float2* rope_cs, const floatX* q_norm, const floatX* k_norm,
                                                RopeShape s) {
    const int nheads = s.nh + 2 * s.nkv, half = s.hd / 2;
    const size_t gid = (size_t)blockIdx.x * blockDim.x + threadIdx.x, item = gid / G;
    if (item >= (size_t)s.B * s.T * nheads) return;
    const int i0 = (int)(gid % G) * x128::size;
    const int head = (int)(item % nheads);
    const size_t bt = item / nheads;
    const int t = (int)(bt % s.T), b = (int)(bt / s.T);
    floatX* dx = dqkv + item * s.hd;
    if (head >= s.nh + s.nkv) {
        const floatX* src = dvp + rope_kv_index(s, b, t, head - s.nh - s.nkv);
        store128(dx + i0, load128cs(src + i0));
        store128(dx + half + i0, load128cs(src + half + i0));
        return;
    }
    const bool is_q = head < s.nh;
    const floatX* dy = is_q ? dqp + rope_q_index(s, b, t, head) : dkp + rope_kv_index(s, b, t, head - s.nh);
    const floatX* nw = is_q ? q_norm : k_norm;
    const x128 d1 = load128cs(dy + i0), d2 = load128cs(dy + half + i0);
    const RopeChunk cs = rope_chunk(rope_cs, (size_t)rope_position(s, bt, t) * half + i0);
    float n1[x128::size], n2[x128::size];  // gradient of the normed, weighted values (R^T dy)
    for (int k = 0; k < x128::size; k++) {
        n1[k] = (float)d1[k] * cs.c[k] + (float)d2[k] * cs.s[k];
        n2[k] = (float)d2[k] * cs.c[k] - (float)d1[k] * cs.s[k];
    }
    x128 o1, o2;
    if (!nw) {
        for (int k = 0; k < x128::size; k++) { o1[k] = (floatX)n1[k]; o2[k] = (floatX)n2[k]; }
    } else {
        const size_t srow = bt * (s.nh + s.nkv) + head;
        const float rs = qk_rstd[srow];
        const x128 x1 = load128(qkv + item * s.hd + i0), x2 = load128(qkv + item * s.hd + half + i0);
        const x128 w1 = load128(nw + i0), w2 = load128(nw + half + i0);
        float dot = 0.0f;
        float* sc = dnw_scratch + srow * s.hd;
        for (int k = 0; k < x128::size; k++) {
            const float h1 = (float)x1[k] * rs, h2 = (float)x2[k] * rs;
            sc[i0 + k] = n1[k] * h1;
            sc[half + i0 + k] = n2[k] * h2;
            dot += n1[k] * (float)w1[k] * h1 + n2[k] * (float)w2[k] * h2;
        }
        dot = group_reduce_sum<G>(dot) / s.hd;
        for (int k = 0; k < x128::size; k++) {
            o1[k] = (floatX)(rs * (n1[k] * (float)w1[k] - (float)x1[k] * rs * dot));
            o2[k] = (floatX)(rs * (n2[k] * (float)w2[k] - (float)x2[k] * rs * dot));
        }
    }
    store128(dx + i0, o1);
    store128(dx + half + i0, o2);
}

// lanes per head for the fast path, or 0 when the head dim needs the scalar kernels
static int rope_lanes_per_head(int hd) {
    const int half = hd / 2;
    if (half % x128::size != 0) return 0;
    const int g = half / x128::size;
    return (g == 1 || g == 2 || g == 4 || g == 8 || g == 16 || g == 32) ? g : 0;
}

#define ROPE_DISPATCH(G, KERNEL, ...)                                                   \
    switch (G) {                                                                        \
        case 1: KERNEL<1><<<ceil_div(n * 1, 256), 256, 0, stream>>>(__VA_ARGS__); break;   \
        case 2: KERNEL<2><<<ceil_div(n * 2, 256), 256, 0, stream>>>(__VA_ARGS__); break;   \
        case 4: KERNEL<4><<<ceil_div(n * 4, 256), 256, 0, stream>>>(__VA_ARGS__); break;   \
        case 8: KERNEL<8><<<ceil_div(n * 8, 256), 256, 0, stream>>>(__VA_ARGS__); break;   \
        case 16: KERNEL<16><<<ceil_div(n * 16, 256), 256, 0, stream>>>(__VA_ARGS__); break; \
        default: KERNEL<32><<<ceil_div(n * 32, 256), 256, 0, stream>>>(__VA_ARGS__); break; \
    }


static void qknorm_rope_forward(floatX* qp, floatX* kp, floatX* vp, float* qk_rstd, const floatX* qkv,
                                const float2* rope_cs, const floatX* q_norm, const floatX* k_norm, RopeShape s,
                                float eps, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if ((q_norm == nullptr) != (k_norm == nullptr)) fail("qknorm_rope_forward: q_norm and k_norm must be given together");
    const size_t n = (size_t)s.B * s.T * (s.nh + 2 * s.nkv);  // (token, head) items
    const int g = rope_lanes_per_head(s.hd);
    ProfileWork pw(0, (double)n * s.hd * 2 * sizeof(floatX) + (q_norm ? (double)s.B * s.T * (s.nh + s.nkv) * 4 : 0.0));   // qkv, q/k/v, rstd
    if (g) {
        ROPE_DISPATCH(g, qknorm_rope_forward_vec_kernel, qp, kp, vp, qk_rstd, qkv, rope_cs, q_norm, k_norm, s, eps);
    } else {
        qknorm_rope_forward_kernel<<<ceil_div(n, 8), 256, 0, stream>>>(qp, kp, vp, qk_rstd, qkv, rope_cs, q_norm, k_norm, s, eps);
    }
    cudaLaunchCheck();
}

// Backward: inverse rotation (R^T), then the RMSNorm backward when qk_norm is on.
// dnw_scratch (fp32, [B*T*(nh+nkv), hd]) receives dy * xhat per row for the
// norm-weight gradients, reduced afterwards in a fixed order.
__global__ static void qknorm_rope_backward_kernel(floatX* dqkv, float* dnw_scratch, const floatX* dqp, const floatX* dkp,
                                                   const floatX* dvp, const floatX* qkv, const float* qk_rstd,
                                                   const float2* rope_cs, const floatX* q_norm, const floatX* k_norm,
                                                   RopeShape s) {
    const int lane = threadIdx.x % 32;
    const int nheads = s.nh + 2 * s.nkv;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)s.B * s.T * nheads) return;
    const int head = (int)(w % nheads);
    const size_t bt = w / nheads;
    const int t = (int)(bt % s.T), b = (int)(bt / s.T);
    floatX* dx = dqkv + bt * nheads * s.hd + (size_t)head * s.hd;
    const int half = s.hd / 2;
    if (head >= s.nh + s.nkv) {
        const floatX* src = dvp + rope_kv_index(s, b, t, head - s.nh - s.nkv);
        for (int i = lane; i < s.hd; i += 32) dx[i] = src[i];
        return;
    }
    const bool is_q = head < s.nh;
    const floatX* dy = is_q ? dqp + rope_q_index(s, b, t, head) : dkp + rope_kv_index(s, b, t, head - s.nh);
    const floatX* nw = is_q ? q_norm : k_norm;
    if (!nw) {
        for (int i = lane; i < half; i += 32) {
            const float2 cs = rope_cs[(size_t)rope_position(s, bt, t) * half + i];
            float d1 = (float)dy[i], d2 = (float)dy[i + half];
            dx[i] = (floatX)(d1 * cs.x + d2 * cs.y);
            dx[i + half] = (floatX)(d2 * cs.x - d1 * cs.y);
        }
        return;
    }
    const floatX* x = qkv + bt * nheads * s.hd + (size_t)head * s.hd;
    const size_t srow = bt * (s.nh + s.nkv) + head;
    const float rs = qk_rstd[srow];
    float dot = 0.0f;
    for (int i = lane; i < half; i += 32) {
        const float2 cs = rope_cs[(size_t)rope_position(s, bt, t) * half + i];
        float d1 = (float)dy[i], d2 = (float)dy[i + half];
        float n1 = d1 * cs.x + d2 * cs.y, n2 = d2 * cs.x - d1 * cs.y;  // grad of the normed, weighted value
        float x1 = (float)x[i] * rs, x2 = (float)x[i + half] * rs;
        dnw_scratch[srow * s.hd + i] = n1 * x1;
        dnw_scratch[srow * s.hd + i + half] = n2 * x2;
        dot += n1 * (float)nw[i] * x1 + n2 * (float)nw[i + half] * x2;
    }
    dot = warp_reduce_sum(dot) / s.hd;
    for (int i = lane; i < half; i += 32) {
        const float2 cs = rope_cs[(size_t)rope_position(s, bt, t) * half + i];
        float d1 = (float)dy[i], d2 = (float)dy[i + half];
        float g1 = (d1 * cs.x + d2 * cs.y) * (float)nw[i], g2 = (d2 * cs.x - d1 * cs.y) * (float)nw[i + half];
        float x1 = (float)x[i] * rs, x2 = (float)x[i + half] * rs;
        dx[i] = (floatX)(rs * (g1 - x1 * dot));
        dx[i + half] = (floatX)(rs * (g2 - x2 * dot));
    }
}

// dq_norm/dk_norm (fp32, [hd]) += weight gradients when the norm weights are given.
static void qknorm_rope_backward(floatX* dqkv, float* dq_norm, float* dk_norm, const floatX* dqp, const floatX* dkp,
                                 const floatX* dvp, const floatX* qkv, const float* qk_rstd, const float2* rope_cs,
                                 const floatX* q_norm, const floatX* k_norm, RopeShape s, float* dnw_scratch,
                                 float* reduce_scratch, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if ((q_norm == nullptr) != (k_norm == nullptr)) fail("qknorm_rope_backward: q_norm and k_norm must be given together");
    const size_t n = (size_t)s.B * s.T * (s.nh + 2 * s.nkv);
    const int g = rope_lanes_per_head(s.hd);
    {
        // dq/dk/dv, dqkv; with the norm: the q/k rows of qkv, their rstd and the fp32 dy * xhat rows
        const double qk = (double)s.B * s.T * (s.nh + s.nkv);
        ProfileWork pw(0, (double)n * s.hd * 2 * sizeof(floatX) + (q_norm ? qk * (s.hd * (sizeof(floatX) + 4) + 4) : 0.0));
        if (g) {
            ROPE_DISPATCH(g, qknorm_rope_backward_vec_kernel, dqkv, dnw_scratch, dqp, dkp, dvp, qkv, qk_rstd, rope_cs, q_norm,
                          k_norm, s);
        } else {
            qknorm_rope_backward_kernel<<<ceil_div(n, 8), 256, 0, stream>>>(dqkv, dnw_scratch, dqp, dkp, dvp, qkv, qk_rstd,
                                                                            rope_cs, q_norm, k_norm, s);
        }
        cudaLaunchCheck();
    }
    if (q_norm) {
        // scratch rows are [bt][nh q heads | nkv k heads]: view as [BT, (nh+nkv)*hd] and reduce
        // the q and k column blocks separately, then fold the heads (fixed order).
        const int rows = s.B * s.T, cols = (s.nh + s.nkv) * s.hd;
        float* colsum = reduce_scratch;  // cols floats
        float* red = reduce_scratch + cols;
        cudaCheck(cudaMemsetAsync(colsum, 0, cols * sizeof(float), stream));
        column_reduce(colsum, dnw_scratch, (const float*)nullptr, nullptr, rows, cols, red, stream);
        // the fold over heads is tiny (cols floats); a per-head column reduce does it on device
        column_reduce(dq_norm, colsum, (const float*)nullptr, nullptr, s.nh, s.hd, red, stream);
        column_reduce(dk_norm, colsum + (size_t)s.nh * s.hd, (const float*)nullptr, nullptr, s.nkv, s.hd, red, stream);
    }
}

// Host: the (cos, sin) table for positions 0..T-1 from the inverse frequencies.
static std::vector<float> rope_table(const std::vector<double>& inv_freq, int T) {
    const int half = (int)inv_freq.size();
    std::vector<float> cs((size_t)T * half * 2);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double a = t * inv_freq[i];
            cs[((size_t)t * half + i) * 2] = (float)cos(a);
            cs[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
        }
    return cs;
}
