// QK-norm + interleaved 3D RoPE for the DiT (llmc/kernels/rope.cuh is the GPT's 1D,
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
// Forward: one thread per (token, head) with the head's hd values in registers
// (hd a template parameter: the multiples of 24 up to 144, as hd must be a
// multiple of 6 for the three axes and of 8 for the 16-byte loads). Backward: G
// lanes per (token, head), see qknorm_rope3d_backward_vec_kernel.
#pragma once
#include <vector>
#include "../core/cuda_common.h"
// the position rules and frequencies rope3d_table turns into a table
#include "../model/dit_config.h"

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
// G lanes per (token, head) (G = hd/8 chunks of 16 bytes rounded up to a power
// of two, at most 32; a lane takes chunks lane, lane + G, ...), so that a warp's
// loads and stores cover whole consecutive head rows (coalesced; the one-thread-
// per-head version read a 144-byte row per lane). mean(w g xhat) is reduced over
// the G lanes with shuffles. The weight gradients g * xhat stay in registers
// (per weight, per lane element) over the thread's items of a fixed grid-stride
// loop, and each block adds its groups in order into partial[block][nw * HD]
// (nw = 1 or 2 weights); qknorm_rope3d_dw_kernel adds the blocks in order.
// The loop's trip count is uniform per warp (shuffles with a full mask).
// Lanes per (token, head) of the backward for a head of nch 16-byte chunks (kernel and grid).
__host__ __device__ constexpr int rope3d_bwd_lanes(int nch) { return nch <= 4 ? 4 : nch <= 8 ? 8 : nch <= 16 ? 16 : 32; }

template <int HD>
__global__ void __launch_bounds__(256) qknorm_rope3d_backward_vec_kernel(
    floatX* __restrict__ dinp, float* __restrict__ partial, const floatX* __restrict__ dout, int out_stride,
    const floatX* __restrict__ inp, int in_stride, const float* __restrict__ rstd, const floatX* __restrict__ w_a,
    const floatX* __restrict__ w_b, int n_a, int nheads, const float2* __restrict__ cs, int N) {
    constexpr int VS = x128::size, NCH = HD / VS;
    constexpr int G = rope3d_bwd_lanes(NCH);
    constexpr int CPL = (NCH + G - 1) / G;  // chunks per lane (2 only for fp32 at hd 144)
    constexpr int GPB = 256 / G, GPW = 32 / G;  // groups per block, per warp
    const int lane = threadIdx.x % G, grp = threadIdx.x / G;
    const int nw = n_a < nheads ? 2 : 1;
    const size_t items = (size_t)N * nheads, stride = (size_t)gridDim.x * GPB;
    // the first item of this thread's warp decides the trip (same for all its lanes)
    const size_t warp_first = (size_t)blockIdx.x * GPB + (size_t)(threadIdx.x / 32) * GPW;
    float acc[2][CPL][VS];
    #pragma unroll
    for (int m = 0; m < CPL; m++)
        #pragma unroll
        for (int k = 0; k < VS; k++) acc[0][m][k] = acc[1][m][k] = 0.0f;
    for (size_t it = 0; warp_first + it < items; it += stride) {
        const size_t item = (size_t)blockIdx.x * GPB + grp + it;
        const bool valid = item < items;
        const int i = valid ? (int)(item / nheads) : 0, j = valid ? (int)(item % nheads) : 0;
        const floatX* w = j < n_a ? w_a : w_b;
        const floatX* dy = dout + (size_t)i * out_stride + (size_t)j * HD;
        const floatX* x = inp + (size_t)i * in_stride + (size_t)j * HD;
        float g[CPL][VS], xv[CPL][VS], wv[CPL][VS];
        float dot = 0.0f;
        const float r = valid ? rstd[item] : 0.0f;
        #pragma unroll
        for (int m = 0; m < CPL; m++) {
            const int ch = lane + m * G;
            if (!valid || ch >= NCH) {
                #pragma unroll
                for (int k = 0; k < VS; k++) g[m][k] = xv[m][k] = wv[m][k] = 0.0f;
                continue;
            }
            const x128 d = load128cs(dy + ch * VS), xx = load128cs(x + ch * VS), ww = load128(w + ch * VS);
            #pragma unroll
            for (int k = 0; k < VS; k++) { g[m][k] = (float)d[k]; xv[m][k] = (float)xx[k]; wv[m][k] = (float)ww[k]; }
            if (cs) {
                const float4* t = reinterpret_cast<const float4*>(cs + (size_t)i * (HD / 2) + ch * (VS / 2));
                #pragma unroll
                for (int p = 0; p < VS / 4; p++) {
                    const float4 a = t[p];  // two (cos, sin) pairs
                    float d0 = g[m][4 * p], d1 = g[m][4 * p + 1];
                    g[m][4 * p] = d0 * a.x + d1 * a.y;
                    g[m][4 * p + 1] = d1 * a.x - d0 * a.y;
                    d0 = g[m][4 * p + 2]; d1 = g[m][4 * p + 3];
                    g[m][4 * p + 2] = d0 * a.z + d1 * a.w;
                    g[m][4 * p + 3] = d1 * a.z - d0 * a.w;
                }
            }
            #pragma unroll
            for (int k = 0; k < VS; k++) dot += g[m][k] * wv[m][k] * (xv[m][k] * r);
        }
        #pragma unroll
        for (int o = G / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffff, dot, o);
        dot /= HD;
        if (!valid) continue;
        const bool first = j < n_a;
        floatX* dx = dinp + (size_t)i * in_stride + (size_t)j * HD;
        #pragma unroll
        for (int m = 0; m < CPL; m++) {
            const int ch = lane + m * G;
            if (ch >= NCH) continue;
            x128 o;
            #pragma unroll
            for (int k = 0; k < VS; k++) {
                const float xh = xv[m][k] * r, gx = g[m][k] * xh;
                // constant register indices: no local-memory array
                if (first) acc[0][m][k] += gx;
                else acc[1][m][k] += gx;
                o[k] = (floatX)(r * (wv[m][k] * g[m][k] - xh * dot));
            }
            store128(dx + ch * VS, o);
        }
    }
    // the block's weight-gradient partials: groups added in order
    __shared__ float sh[GPB][2][HD];
    #pragma unroll
    for (int m = 0; m < CPL; m++) {
        const int ch = lane + m * G;
        if (ch >= NCH) continue;
        #pragma unroll
        for (int k = 0; k < VS; k++) {
            sh[grp][0][ch * VS + k] = acc[0][m][k];
            sh[grp][1][ch * VS + k] = acc[1][m][k];
        }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < nw * HD; t += blockDim.x) {
        float s = 0.0f;
        for (int q = 0; q < GPB; q++) s += sh[q][t / HD][t % HD];
        partial[(size_t)blockIdx.x * nw * HD + t] = s;
    }
}

// One block per weight-gradient element (nw * hd of them): the blocks' partials
// added in a fixed order (strided per thread, then the block's fixed tree).
__global__ static void qknorm_rope3d_dw_kernel(float* __restrict__ dw_a, float* __restrict__ dw_b,
                                               const float* __restrict__ partial, int nblocks, int hd, int nw) {
    const int col = blockIdx.x;
    float s = 0.0f;
    for (int k = threadIdx.x; k < nblocks; k += blockDim.x) s += partial[(size_t)k * nw * hd + col];
    s = block_reduce_sum(s);
    if (threadIdx.x == 0) {
        if (col < hd) dw_a[col] += s;
        else dw_b[col - hd] += s;
    }
}

// Fixed grid of the backward (results do not depend on the GPU): at most this
// many blocks of 256 threads, fewer when there are fewer (token, head) items.
// 1056 = 8 x 132: two full waves on an H200 at 4 resident blocks per SM (the
// kernel uses ~64 registers).
static const int ROPE3D_BWD_BLOCKS = 1056;
// floats of the dnw scratch qknorm_rope3d_backward needs: the blocks' partials
// [blocks <= ROPE3D_BWD_BLOCKS][nw <= 2][hd]
static inline size_t qknorm_rope3d_backward_scratch_floats(int hd) { return (size_t)2 * ROPE3D_BWD_BLOCKS * hd; }

// KERNEL<hd><<<GRID, BLOCK, 0, stream>>>(...) for the supported head dims
#define ROPE3D_DISPATCH(hd, KERNEL, GRID, BLOCK, ...)                                           \
    switch (hd) {                                                                               \
        case 24: KERNEL<24><<<GRID, BLOCK, 0, stream>>>(__VA_ARGS__); break;                     \
        case 48: KERNEL<48><<<GRID, BLOCK, 0, stream>>>(__VA_ARGS__); break;                     \
        case 72: KERNEL<72><<<GRID, BLOCK, 0, stream>>>(__VA_ARGS__); break;                     \
        case 96: KERNEL<96><<<GRID, BLOCK, 0, stream>>>(__VA_ARGS__); break;                     \
        case 120: KERNEL<120><<<GRID, BLOCK, 0, stream>>>(__VA_ARGS__); break;                   \
        case 144: KERNEL<144><<<GRID, BLOCK, 0, stream>>>(__VA_ARGS__); break;                   \
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
    ProfileWork pw(0, (double)n * (hd * 2 * sizeof(floatX) + 4) + (cs ? (double)N * hd * 4 : 0.0));   // inp, out, rstd; cs
    ROPE3D_DISPATCH(hd, qknorm_rope3d_forward_kernel, ceil_div(n, 128), 128, out, out_stride, rstd, inp, in_stride, w_a, w_b, n_a, nheads, cs, N, eps);
    cudaLaunchCheck();
}

// dinp (the heads of each row, stride in_stride) = gradient through rotation and
// norm (written); dw_a / dw_b [hd] += the weight gradients (heads j < n_a / the
// others; dw_b may be null when n_a == nheads). dnw: fp32 scratch of
// qknorm_rope3d_backward_scratch_floats(hd) floats. Deterministic.
static void qknorm_rope3d_backward(floatX* dinp, float* dw_a, float* dw_b, const floatX* dout, int out_stride,
                                   const floatX* inp, int in_stride, const float* rstd, const floatX* w_a,
                                   const floatX* w_b, int n_a, int nheads, const float2* cs, int N, int hd, float* dnw,
                                   cudaStream_t stream) {
    NVTX_RANGE_FN();
    qknorm_rope3d_check(hd, in_stride, out_stride);
    if (N == 0) return;
    if (n_a < nheads && !dw_b) fail("qknorm_rope3d_backward: heads past n_a need dw_b");
    const size_t items = (size_t)N * nheads;
    const int nw = n_a < nheads ? 2 : 1;
    const int vs = x128::size, nch = hd / vs;
    const int G = rope3d_bwd_lanes(nch);
    const int blocks = (int)std::min<size_t>(ROPE3D_BWD_BLOCKS, ceil_div(items, (size_t)(256 / G)));
    // dout, inp, dinp, rstd; cs (the weight gradients' partials stay in L2)
    ProfileWork pw(0, (double)items * (hd * 3 * sizeof(floatX) + 4) + (cs ? (double)N * hd * 4 : 0.0));
    ROPE3D_DISPATCH(hd, qknorm_rope3d_backward_vec_kernel, blocks, 256, dinp, dnw, dout, out_stride, inp, in_stride, rstd, w_a, w_b,
                    n_a, nheads, cs, N);
    cudaLaunchCheck();
    qknorm_rope3d_dw_kernel<<<nw * hd, 256, 0, stream>>>(dw_a, dw_b, dnw, blocks, hd, nw);
    cudaLaunchCheck();
}

// Host: the per-token (cos, sin) table of the tokens of a batch as the kernels read it, token i
// being token pos[i] of the sample grids[sample[i]] (the whole samples in order, or a
// context-parallel rank's parts: llmc/dist/context_parallel.h); dit_rope_table_at says how.
static void rope3d_table_at(std::vector<float2>* out, const DiTConfig& c, const std::vector<DiTGrid>& grids,
                            const std::vector<int>& sample, const std::vector<int>& pos) {
    static_assert(sizeof(float2) == 2 * sizeof(float), "float2 is a (cos, sin) pair");
    out->resize(pos.size() * (c.head_dim / 2));
    dit_rope_table_at(reinterpret_cast<float*>(out->data()), c, grids, sample, pos);
}
// The table [N, hd/2] of a packed batch of whole samples (their grids in order)
static void rope3d_table(std::vector<float2>* out, const DiTConfig& c, const std::vector<DiTGrid>& grids) {
    std::vector<int> sample, pos;
    for (size_t b = 0; b < grids.size(); b++)
        for (int j = 0; j < grids[b].L; j++) { sample.push_back((int)b); pos.push_back(j); }
    rope3d_table_at(out, c, grids, sample, pos);
}
