// adaLN modulation of the DiT blocks and final layer, with a per-token choice
// of the conditioning row.
//   modulate:        out = xhat * (1 + scale) + shift
//   gated residual:  resid += gate * o   (in place on the residual stream)
// where for token i with conditioning row r = rows[i] the vectors are a learned
// table row plus that row of the conditioning matrix `mods` [R, ms]:
//   shift[c] = tshift[c] + mods[r*ms + shift_off + c], and scale, gate likewise.
// In the DiT, row 2b is sample b's t modulation (t_mlp, or c for the final
// layer), row 2b+1 its t0 modulation (clean frames, start/end tokens of an
// image-to-video sample). All arithmetic in fp32, 16-byte loads (C % 8 == 0).
//
// Backward: the elementwise part (dxhat = dout * (1 + scale), dO = dout * gate)
// and the parameter gradients: per conditioning row, the sums over that row's
// tokens of dout (-> shift) and dout * xhat (-> scale) or dout * o (-> gate),
// added to dmods (fp32 [R, ms]) and, summed over all rows, to the table row's
// gradient. The sums are deterministic: the tokens of sample b (rows cu[b] ..
// cu[b+1]) are cut into adaln_splits(B) fixed slices, each block adds its slice
// in a fixed order, a second kernel adds the slices of each row in order (all
// rows and columns in parallel) and a third the rows of the table gradient.
#pragma once
#include "../core/cuda_common.h"
#include "../core/reduce.cuh"

// out = xhat * (1 + tscale + mods[scale]) + tshift + mods[shift]; one thread per 16 bytes
__global__ static void adaln_modulate_forward_kernel(floatX* __restrict__ out, const floatX* __restrict__ xhat,
                                                     const floatX* __restrict__ tshift, const floatX* __restrict__ tscale,
                                                     const floatX* __restrict__ mods, int ms, int shift_off,
                                                     int scale_off, const int* __restrict__ rows, int N, int C) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)N * C) return;
    const int i = (int)(idx / C), c = (int)(idx % C);
    const floatX* m = mods + (size_t)rows[i] * ms;
    const x128 x = load128(xhat + idx), ts = load128(tshift + c), tc = load128(tscale + c);
    const x128 ms_ = load128(m + shift_off + c), mc = load128(m + scale_off + c);
    x128 o;
    for (int k = 0; k < x128::size; k++) {
        const float scale = (float)tc[k] + (float)mc[k], shift = (float)ts[k] + (float)ms_[k];
        o[k] = (floatX)((float)x[k] * (1.0f + scale) + shift);
    }
    store128(out + idx, o);
}

static void adaln_modulate_forward(floatX* out, const floatX* xhat, const floatX* tshift, const floatX* tscale,
                                   const floatX* mods, int ms, int shift_off, int scale_off, const int* rows, int N, int C,
                                   cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (C % 8 != 0) fail("adaln: C = %d must be a multiple of 8", C);
    if (N == 0) return;
    ProfileWork pw(0, (double)N * C * 2 * sizeof(floatX));   // xhat, out
    adaln_modulate_forward_kernel<<<ceil_div((size_t)N * C / x128::size, 256), 256, 0, stream>>>(
        out, xhat, tshift, tscale, mods, ms, shift_off, scale_off, rows, N, C);
    cudaLaunchCheck();
}

// resid += (tgate + mods[gate]) * o
__global__ static void adaln_gate_residual_forward_kernel(floatX* __restrict__ resid, const floatX* __restrict__ o,
                                                          const floatX* __restrict__ tgate,
                                                          const floatX* __restrict__ mods, int ms, int off,
                                                          const int* __restrict__ rows, int N, int C) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)N * C) return;
    const int i = (int)(idx / C), c = (int)(idx % C);
    const x128 ov = load128(o + idx), tg = load128(tgate + c), mg = load128(mods + (size_t)rows[i] * ms + off + c);
    x128 x = load128(resid + idx);
    for (int k = 0; k < x128::size; k++) x[k] = (floatX)((float)x[k] + ((float)tg[k] + (float)mg[k]) * (float)ov[k]);
    store128(resid + idx, x);
}

static void adaln_gate_residual_forward(floatX* resid, const floatX* o, const floatX* tgate, const floatX* mods, int ms,
                                        int off, const int* rows, int N, int C, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (C % 8 != 0) fail("adaln: C = %d must be a multiple of 8", C);
    if (N == 0) return;
    ProfileWork pw(0, (double)N * C * 3 * sizeof(floatX));   // o, resid read and written
    adaln_gate_residual_forward_kernel<<<ceil_div((size_t)N * C / x128::size, 256), 256, 0, stream>>>(
        resid, o, tgate, mods, ms, off, rows, N, C);
    cudaLaunchCheck();
}

// dx = dout * (one + t + mods[off]): one = 1 for the modulation's scale (dxhat),
// 0 for a gate (dO). dx may not alias dout.
__global__ static void adaln_scale_backward_kernel(floatX* __restrict__ dx, const floatX* __restrict__ dout,
                                                   const floatX* __restrict__ t, const floatX* __restrict__ mods, int ms,
                                                   int off, float one, const int* __restrict__ rows, int N, int C) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)N * C) return;
    const int i = (int)(idx / C), c = (int)(idx % C);
    const x128 d = load128(dout + idx), tv = load128(t + c), mv = load128(mods + (size_t)rows[i] * ms + off + c);
    x128 o;
    for (int k = 0; k < x128::size; k++) o[k] = (floatX)((float)d[k] * (one + (float)tv[k] + (float)mv[k]));
    store128(dx + idx, o);
}

static void adaln_scale_backward(floatX* dx, const floatX* dout, const floatX* t, const floatX* mods, int ms, int off,
                                 bool add_one, const int* rows, int N, int C, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (N == 0) return;
    ProfileWork pw(0, (double)N * C * 2 * sizeof(floatX));   // dout, dx
    adaln_scale_backward_kernel<<<ceil_div((size_t)N * C / x128::size, 256), 256, 0, stream>>>(
        dx, dout, t, mods, ms, off, add_one ? 1.0f : 0.0f, rows, N, C);
    cudaLaunchCheck();
}

// ---- parameter gradients: per conditioning row sums of a and a*b
static const int ADALN_SPLITS = 32;       // least token slices per sample (fixed: results do not depend on the GPU)
static const int ADALN_MIN_SLICES = 256;  // least token slices of a batch

// Token slices per sample for B samples: at least ADALN_SPLITS, and at least 256
// slices in all (one sample of 13442 tokens would otherwise give 32 blocks per
// column block, too few to keep the H200's loads in flight). B * adaln_splits(B)
// <= max(32 B, 256), so the scratch for the capacity B covers every smaller B.
static inline int adaln_splits(int B) { return std::max(ADALN_SPLITS, ADALN_MIN_SLICES / std::max(B, 1)); }

// floats of scratch adaln_param_grad needs for B samples of width C: the slice
// partials (4 per column per slice) and the per-row sums (2 per column per row)
static size_t adaln_scratch_floats(int B, int C) {
    return ((size_t)std::max(ADALN_SPLITS * B, ADALN_MIN_SLICES) * 4 + (size_t)2 * B * 2) * C;
}

// Block (x: 32 groups of 8 columns, y: 8 token lanes) = one slice of one sample
// (S = gridDim.y / B slices per sample). Each thread keeps 4 x 8 fp32 sums over
// its rows in order; the 8 lanes are added in order in shared memory.
// partial[(b*S + s)*4 + q][c], q = 2*which + {0: sum a, 1: sum a*b}, which = rows[i] - 2b.
__global__ static void adaln_reduce_partial_kernel(float* __restrict__ partial, const floatX* __restrict__ a,
                                                   const floatX* __restrict__ bm, const int* __restrict__ rows,
                                                   const int* __restrict__ cu, int S, int C) {
    const int sample = blockIdx.y / S, split = blockIdx.y % S;
    const int t0 = cu[sample], L = cu[sample + 1] - t0;
    const int per = ceil_div(L, S);
    const int r_begin = t0 + split * per, r_end = min(t0 + L, r_begin + per);
    const int c0 = (blockIdx.x * 32 + threadIdx.x) * 8;
    float acc[4][8];
    for (int q = 0; q < 4; q++)
        for (int k = 0; k < 8; k++) acc[q][k] = 0.0f;
    if (c0 < C) {
        for (int r = r_begin + threadIdx.y; r < r_end; r += blockDim.y) {
            const int which = rows[r] - 2 * sample;
            float va[8], vb[8];
            load8_f32(a + (size_t)r * C + c0, va);
            if (bm) load8_f32(bm + (size_t)r * C + c0, vb);
            for (int k = 0; k < 8; k++) {
                const float ab = bm ? va[k] * vb[k] : 0.0f;
                if (which == 0) { acc[0][k] += va[k]; acc[1][k] += ab; }
                else { acc[2][k] += va[k]; acc[3][k] += ab; }
            }
        }
    }
    __shared__ float sh[8][32 * 8 + 1];
    for (int q = 0; q < 4; q++) {
        __syncthreads();
        for (int k = 0; k < 8; k++) sh[threadIdx.y][threadIdx.x * 8 + k] = acc[q][k];
        __syncthreads();
        if (threadIdx.y == 0 && c0 < C) {
            for (int k = 0; k < 8; k++) {
                float t = 0.0f;
                for (int y = 0; y < (int)blockDim.y; y++) t += sh[y][threadIdx.x * 8 + k];
                partial[((size_t)blockIdx.y * 4 + q) * C + c0 + k] = t;
            }
        }
    }
}

// Block (x: 32 columns, y: 32 slice lanes) = 32 columns of one conditioning row r
// (grid y = 2B rows, so every (row, column) pair is summed in parallel instead of
// one thread per column walking all rows): lane y adds slices y, y+32, ... in
// order (one slice at dit-s, 8 for one sample of 256 slices), the lanes are added in order in shared memory, and lane 0 adds the row's
// two sums to dmods and stores them in rowsum[(r*2 + {0: a, 1: a*b})][c] for the
// table pass.
__global__ static void adaln_reduce_rows_kernel(float* __restrict__ dmods, int ms, int off_a, int off_b,
                                                float* __restrict__ rowsum, const float* __restrict__ partial, int S,
                                                int C) {
    const int c = blockIdx.x * 32 + threadIdx.x, r = blockIdx.y;
    const int sample = r / 2, which = r % 2;
    float sa = 0.0f, sb = 0.0f;
    if (c < C) {
        #pragma unroll 4
        for (int s = threadIdx.y; s < S; s += blockDim.y) {
            const size_t base = ((size_t)(sample * S + s) * 4 + 2 * which) * C + c;
            sa += partial[base];
            sb += partial[base + C];
        }
    }
    __shared__ float sh[2][32][33];
    sh[0][threadIdx.y][threadIdx.x] = sa;
    sh[1][threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y != 0 || c >= C) return;
    float ta = 0.0f, tb = 0.0f;
    for (int y = 0; y < (int)blockDim.y; y++) {
        ta += sh[0][y][threadIdx.x];
        tb += sh[1][y][threadIdx.x];
    }
    if (off_a >= 0) dmods[(size_t)r * ms + off_a + c] += ta;
    if (off_b >= 0) dmods[(size_t)r * ms + off_b + c] += tb;
    rowsum[(size_t)(2 * r) * C + c] = ta;
    rowsum[(size_t)(2 * r + 1) * C + c] = tb;
}

// One thread per column: the table gradients, the 2B row sums added in row order.
__global__ static void adaln_reduce_table_kernel(float* __restrict__ dtab_a, float* __restrict__ dtab_b,
                                                 const float* __restrict__ rowsum, int R, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float ta = 0.0f, tb = 0.0f;
    for (int r = 0; r < R; r++) {
        ta += rowsum[(size_t)(2 * r) * C + c];
        tb += rowsum[(size_t)(2 * r + 1) * C + c];
    }
    if (dtab_a) dtab_a[c] += ta;
    if (dtab_b) dtab_b[c] += tb;
}

// For every conditioning row r (2B rows: tokens of sample b have rows 2b or 2b+1):
//   dmods[r*ms + off_a + c] += sum_{i: rows[i]=r} a[i,c]          (when off_a >= 0)
//   dmods[r*ms + off_b + c] += sum_{i: rows[i]=r} a[i,c] * b[i,c]  (when off_b >= 0; b may be null when off_b < 0)
//   dtab_a[c] += the first sums over all rows, dtab_b[c] += the second (when not null).
// a, b [N, C] floatX; cu device [B+1] token offsets of the samples (cu[B] = N); partial: adaln_scratch_floats(B, C).
// Three passes, each in a fixed order: slices of each sample, slices into rows, rows into the table.
static void adaln_param_grad(float* dmods, int ms, int off_a, int off_b, float* dtab_a, float* dtab_b, const floatX* a,
                             const floatX* b, const int* rows, const int* cu, int B, int N, int C, float* partial,
                             cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (C % 8 != 0) fail("adaln: C = %d must be a multiple of 8", C);
    if (B == 0) return;
    ProfileWork pw(0, (double)N * C * (b ? 2 : 1) * sizeof(floatX) + N * 4.0);   // a, b, rows (the partials stay in L2)
    const int S = adaln_splits(B);
    float* rowsum = partial + (size_t)B * S * 4 * C;
    dim3 grid(ceil_div(C, 32 * 8), B * S), block(32, 8);
    adaln_reduce_partial_kernel<<<grid, block, 0, stream>>>(partial, a, b, rows, cu, S, C);
    cudaLaunchCheck();
    adaln_reduce_rows_kernel<<<dim3(ceil_div(C, 32), 2 * B), dim3(32, 32), 0, stream>>>(dmods, ms, off_a, off_b, rowsum,
                                                                                      partial, S, C);
    cudaLaunchCheck();
    if (dtab_a || dtab_b) {
        adaln_reduce_table_kernel<<<ceil_div(C, 128), 128, 0, stream>>>(dtab_a, dtab_b, rowsum, 2 * B, C);
        cudaLaunchCheck();
    }
}
