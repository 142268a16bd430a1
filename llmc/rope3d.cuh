// QK-norm + interleaved 3D RoPE for the DiT (llmc/rope.cuh is the GPT's 1D,
// half-rotation variant with a different layout; this one is separate).
//   y = x / sqrt(mean(x^2) + eps) * w   (RMSNorm over each head's hd values, fp32)
//   then, with a table, the interleaved rotation of pairs (y[2s], y[2s+1]) by the
//   token's angle a_s: y'[2s] = y0 cos - y1 sin, y'[2s+1] = y1 cos + y0 sin.
// Self-attention: q and k heads of a token, each normed with its own weight
// (q_norm, k_norm) and rotated. Cross-attention: the norm alone (no table).
// The heads are the first `nheads` hd-blocks of each row of the input (row stride
// in_stride) and are written to the first nheads blocks of each output row
// (stride out_stride); heads j < n_a use weight w_a, the others w_b.
// Table: cos/sin [N, hd/2] float2 per token, built on the host in double from
// the 3D positions (rope3d_table: h, w, t slots per dit_config.h, start and end
// tokens included), so every position rule lives in one place.
// One thread per (token, head) with the head's hd values in registers (hd a
// template parameter: the multiples of 24 up to 144, as hd must be a multiple of
// 6 for the three axes and of 8 for the 16-byte loads).
#pragma once
#include <vector>
#include "cuda_common.h"
#include "reduce.cuh"
#include "dit_config.h"

template <int HD>
__global__ void qknorm_rope3d_forward_kernel(floatX* __restrict__ out, int out_stride, float* __restrict__ rstd,
                                             const floatX* __restrict__ inp, int in_stride,
                                             const floatX* __restrict__ w_a, const floatX* __restrict__ w_b, int n_a,
                                             int nheads, const float2* __restrict__ cs, int N, float eps) {
    const size_t item = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= (size_t)N * nheads) return;
    const int i = (int)(item / nheads), j = (int)(item % nheads);
    const floatX* x = inp + (size_t)i * in_stride + (size_t)j * HD;
    const floatX* w = j < n_a ? w_a : w_b;
    float v[HD];
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 p = load128(x + c);
        for (int k = 0; k < x128::size; k++) v[c + k] = (float)p[k];
    }
    float ss = 0.0f;
    #pragma unroll
    for (int c = 0; c < HD; c++) ss += v[c] * v[c];
    const float r = 1.0f / sqrtf(ss / HD + eps);
    rstd[item] = r;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 p = load128(w + c);
        for (int k = 0; k < x128::size; k++) v[c + k] = v[c + k] * r * (float)p[k];
    }
    if (cs) {
        const float2* t = cs + (size_t)i * (HD / 2);
        #pragma unroll
        for (int s = 0; s < HD / 2; s++) {
            const float2 a = t[s];
            const float y0 = v[2 * s], y1 = v[2 * s + 1];
            v[2 * s] = y0 * a.x - y1 * a.y;
            v[2 * s + 1] = y1 * a.x + y0 * a.y;
        }
    }
    floatX* o = out + (size_t)i * out_stride + (size_t)j * HD;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        x128 p;
        for (int k = 0; k < x128::size; k++) p[k] = (floatX)v[c + k];
        store128(o + c, p);
    }
}

// Backward: g = R^T dout (the gradient of the normed, weighted values), then the
// RMSNorm backward dx = rstd * (w g - xhat * mean(w g xhat)), xhat = x * rstd.
// dnw [N, nheads*hd] fp32 receives g * xhat per element for the weight gradients.
template <int HD>
__global__ void qknorm_rope3d_backward_kernel(floatX* __restrict__ dinp, float* __restrict__ dnw,
                                              const floatX* __restrict__ dout, int out_stride,
                                              const floatX* __restrict__ inp, int in_stride,
                                              const float* __restrict__ rstd, const floatX* __restrict__ w_a,
                                              const floatX* __restrict__ w_b, int n_a, int nheads,
                                              const float2* __restrict__ cs, int N) {
    const size_t item = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= (size_t)N * nheads) return;
    const int i = (int)(item / nheads), j = (int)(item % nheads);
    const floatX* w = j < n_a ? w_a : w_b;
    float g[HD];
    const floatX* dy = dout + (size_t)i * out_stride + (size_t)j * HD;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 p = load128(dy + c);
        for (int k = 0; k < x128::size; k++) g[c + k] = (float)p[k];
    }
    if (cs) {
        const float2* t = cs + (size_t)i * (HD / 2);
        #pragma unroll
        for (int s = 0; s < HD / 2; s++) {
            const float2 a = t[s];
            const float d0 = g[2 * s], d1 = g[2 * s + 1];
            g[2 * s] = d0 * a.x + d1 * a.y;
            g[2 * s + 1] = d1 * a.x - d0 * a.y;
        }
    }
    const float r = rstd[item];
    const floatX* x = inp + (size_t)i * in_stride + (size_t)j * HD;
    float* sc = dnw + item * HD;
    float dot = 0.0f;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 xv = load128(x + c), wv = load128(w + c);
        float4 s4[x128::size / 4];
        for (int k = 0; k < x128::size; k++) {
            const float xh = (float)xv[k] * r;
            (&s4[k / 4].x)[k % 4] = g[c + k] * xh;
            dot += g[c + k] * (float)wv[k] * xh;
        }
        for (int k = 0; k < x128::size / 4; k++) reinterpret_cast<float4*>(sc + c)[k] = s4[k];
    }
    dot /= HD;
    floatX* dx = dinp + (size_t)i * in_stride + (size_t)j * HD;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 xv = load128(x + c), wv = load128(w + c);
        x128 o;
        for (int k = 0; k < x128::size; k++) o[k] = (floatX)(r * ((float)wv[k] * g[c + k] - (float)xv[k] * r * dot));
        store128(dx + c, o);
    }
}

#define ROPE3D_DISPATCH(hd, KERNEL, ...)                                                        \
    switch (hd) {                                                                               \
        case 24: KERNEL<24><<<ceil_div(n, 128), 128, 0, stream>>>(__VA_ARGS__); break;           \
        case 48: KERNEL<48><<<ceil_div(n, 128), 128, 0, stream>>>(__VA_ARGS__); break;           \
        case 72: KERNEL<72><<<ceil_div(n, 128), 128, 0, stream>>>(__VA_ARGS__); break;           \
        case 96: KERNEL<96><<<ceil_div(n, 128), 128, 0, stream>>>(__VA_ARGS__); break;           \
        case 120: KERNEL<120><<<ceil_div(n, 128), 128, 0, stream>>>(__VA_ARGS__); break;         \
        case 144: KERNEL<144><<<ceil_div(n, 128), 128, 0, stream>>>(__VA_ARGS__); break;         \
        default: fail("qknorm_rope3d: head_dim %d not supported (a multiple of 24 up to 144)", hd); \
    }

static void qknorm_rope3d_check(int hd, int in_stride, int out_stride) {
    if (hd % 24 != 0 || hd > 144) fail("qknorm_rope3d: head_dim %d not supported (a multiple of 24 up to 144)", hd);
    if (in_stride % 8 != 0 || out_stride % 8 != 0) fail("qknorm_rope3d: row strides must be multiples of 8");
}

// out (row stride out_stride) = rotate(RMSNorm(heads of inp) * w); rstd [N, nheads].
// cs: [N, hd/2] (cos, sin) per token, or nullptr for the norm alone.
static void qknorm_rope3d_forward(floatX* out, int out_stride, float* rstd, const floatX* inp, int in_stride,
                                  const floatX* w_a, const floatX* w_b, int n_a, int nheads, const float2* cs, int N,
                                  int hd, float eps, cudaStream_t stream) {
    NVTX_RANGE_FN();
    qknorm_rope3d_check(hd, in_stride, out_stride);
    if (N == 0) return;
    const size_t n = (size_t)N * nheads;
    ROPE3D_DISPATCH(hd, qknorm_rope3d_forward_kernel, out, out_stride, rstd, inp, in_stride, w_a, w_b, n_a, nheads, cs, N, eps);
    cudaLaunchCheck();
}

// dinp (the heads of each row, stride in_stride) = gradient through rotation and
// norm (written); dw_a / dw_b [hd] += the weight gradients (heads j < n_a / the
// others; dw_b may be null when n_a == nheads). dnw: [N, nheads*hd] fp32 scratch;
// reduce_scratch: (COLUMN_REDUCE_SPLITS + 1) * nheads * hd floats. Deterministic.
static void qknorm_rope3d_backward(floatX* dinp, float* dw_a, float* dw_b, const floatX* dout, int out_stride,
                                   const floatX* inp, int in_stride, const float* rstd, const floatX* w_a,
                                   const floatX* w_b, int n_a, int nheads, const float2* cs, int N, int hd, float* dnw,
                                   float* reduce_scratch, cudaStream_t stream) {
    NVTX_RANGE_FN();
    qknorm_rope3d_check(hd, in_stride, out_stride);
    if (N == 0) return;
    const size_t n = (size_t)N * nheads;
    ROPE3D_DISPATCH(hd, qknorm_rope3d_backward_kernel, dinp, dnw, dout, out_stride, inp, in_stride, rstd, w_a, w_b, n_a,
                    nheads, cs, N);
    cudaLaunchCheck();
    // column sums of dnw viewed as [N, nheads*hd], then the heads folded per weight (fixed order)
    const int cols = nheads * hd;
    float* colsum = reduce_scratch;
    float* red = reduce_scratch + cols;
    cudaCheck(cudaMemsetAsync(colsum, 0, cols * sizeof(float), stream));
    column_reduce(colsum, dnw, (const float*)nullptr, nullptr, N, cols, red, stream);
    column_reduce(dw_a, colsum, (const float*)nullptr, nullptr, n_a, hd, red, stream);
    if (n_a < nheads) column_reduce(dw_b, colsum + (size_t)n_a * hd, (const float*)nullptr, nullptr, nheads - n_a, hd, red, stream);
}

// Host: the per-token (cos, sin) table [N, hd/2] of a packed batch (samples'
// grids in order), in double, rounded to float (as the CPU reference does).
static void rope3d_table(std::vector<float2>* out, const DiTConfig& c, const std::vector<DiTGrid>& grids) {
    const int half = c.head_dim / 2, n6 = c.head_dim / 6;
    const std::vector<double> f = dit_rope_freqs(c);
    size_t N = 0;
    for (const DiTGrid& g : grids) N += g.L;
    out->resize(N * half);
    size_t i = 0;
    for (const DiTGrid& g : grids)
        for (int j = 0; j < g.L; j++, i++) {
            int pos[3];
            dit_rope_position(c, g, j, &pos[0], &pos[1], &pos[2]);
            for (int s = 0; s < half; s++) {
                const double a = pos[s / n6] * f[s % n6];
                (*out)[i * half + s] = make_float2((float)cos(a), (float)sin(a));
            }
        }
}
