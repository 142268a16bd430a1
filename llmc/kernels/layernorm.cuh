// LayerNorm over rows of C values, statistics in fp32 (biased variance, eps
// inside the square root, two passes over the row so the variance does not
// cancel): xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps);
// out = xhat (no affine: the DiT's block/caption/final norms) or xhat * w + b
// (the cross-attention norm). The forward saves rstd and xhat (as the output,
// or separately with affine) so that the backward needs neither x nor mean.
// One warp per row, 16-byte loads (C must be a multiple of 8).
#pragma once
#include "../core/cuda_common.h"
#include "../core/reduce.cuh"

__global__ static void layernorm_forward_kernel(floatX* __restrict__ out, floatX* __restrict__ xhat,
                                                float* __restrict__ rstd, const floatX* __restrict__ inp,
                                                const floatX* __restrict__ w, const floatX* __restrict__ b, int rows,
                                                int C, float eps) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const floatX* x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
        const x128 v = load128(x + c);
        for (int k = 0; k < x128::size; k++) s += (float)v[k];
    }
    const float mean = warp_reduce_sum(s) / C;
    float var = 0.0f;
    for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
        const x128 v = load128(x + c);
        for (int k = 0; k < x128::size; k++) { const float d = (float)v[k] - mean; var += d * d; }
    }
    const float r = 1.0f / sqrtf(warp_reduce_sum(var) / C + eps);
    if (lane == 0) rstd[row] = r;
    for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
        const x128 v = load128(x + c);
        x128 o, xh;
        if (w) {
            const x128 wv = load128(w + c), bv = load128(b + c);
            for (int k = 0; k < x128::size; k++) {
                const float h = ((float)v[k] - mean) * r;
                xh[k] = (floatX)h;
                o[k] = (floatX)(h * (float)wv[k] + (float)bv[k]);
            }
            store128(xhat + (size_t)row * C + c, xh);
        } else {
            for (int k = 0; k < x128::size; k++) o[k] = (floatX)(((float)v[k] - mean) * r);
        }
        store128(out + (size_t)row * C + c, o);
    }
}

// out [rows, C]; rstd [rows]. Without affine (w == b == nullptr) out is xhat and
// xhat may be nullptr; with affine, xhat [rows, C] receives the normalized values.
static void layernorm_forward(floatX* out, floatX* xhat, float* rstd, const floatX* inp, const floatX* w, const floatX* b,
                              int rows, int C, float eps, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (C % 8 != 0) fail("layernorm: C = %d must be a multiple of 8", C);
    if ((w == nullptr) != (b == nullptr) || (w && !xhat)) fail("layernorm_forward: affine needs w, b and xhat together");
    if (rows == 0) return;
    ProfileWork pw(0, (double)rows * C * (w ? 3 : 2) * sizeof(floatX) + rows * 4.0);   // inp, out, xhat (affine), rstd
    layernorm_forward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(out, xhat, rstd, inp, w, b, rows, C, eps);
    cudaLaunchCheck();
}

// dinp (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w (dout without affine).
// One warp per row; the row is read twice (the second time from L1/L2).
__global__ static void layernorm_backward_dx_kernel(floatX* __restrict__ dinp, const floatX* __restrict__ dout,
                                                    const floatX* __restrict__ xhat, const floatX* __restrict__ w,
                                                    const float* __restrict__ rstd, int rows, int C, bool accumulate) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const floatX* dy = dout + (size_t)row * C;
    const floatX* xh = xhat + (size_t)row * C;
    floatX* dx = dinp + (size_t)row * C;
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
        const x128 d = load128(dy + c), x = load128(xh + c);
        const x128 wv = w ? load128(w + c) : x128::constant((floatX)1.0f);
        for (int k = 0; k < x128::size; k++) {
            const float g = (float)d[k] * (float)wv[k];
            sg += g;
            sgx += g * (float)x[k];
        }
    }
    sg = warp_reduce_sum(sg) / C;
    sgx = warp_reduce_sum(sgx) / C;
    const float r = rstd[row];
    for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
        const x128 d = load128(dy + c), x = load128(xh + c);
        const x128 wv = w ? load128(w + c) : x128::constant((floatX)1.0f);
        x128 o = accumulate ? load128(dx + c) : x128::constant((floatX)0.0f);
        for (int k = 0; k < x128::size; k++) {
            const float g = (float)d[k] * (float)wv[k];
            o[k] = (floatX)((float)o[k] + r * (g - sg - (float)x[k] * sgx));
        }
        store128(dx + c, o);
    }
}

// Affine backward with dw/db fused into the row pass: one warp per row (a fixed
// grid-stride loop over rows; LN_BWD_BLOCKS blocks of 4 warps), each lane holding
// its 16-byte chunks lane, lane + 32, ... of dout and xhat (CH = ceil(C / 256)
// chunks of 8 values, a template parameter) in registers, so each row is read
// once. Each lane keeps fp32 column sums of dout * xhat (dw) and dout (db) for its
// columns over its rows; at the end the block adds its 4 warps in order into
// partial[(block * 2 + {0: dw, 1: db}) * C + c], and layernorm_dwdb_kernel adds
// the blocks in order. (Two column_reduce calls would read dout and xhat a
// second time, in more launches.)
// Blocks (fixed per C, so results do not depend on the GPU): one full wave on an
// H200's 132 SMs, 3 per SM up to C 768 (CH 3: ~150 registers, <= 170 fit 3
// blocks), 2 per SM above (CH 4, 5: ~190, ~225; CH 6-8 spill a little).
static const int LN_BWD_BLOCKS = 396;  // the most blocks (the scratch's size)
static inline int layernorm_backward_blocks(int C) { return ceil_div(C, 256) <= 3 ? LN_BWD_BLOCKS : 264; }
static const int LN_BWD_MAX_CH = 8;    // C <= 2048 fused; wider rows with affine take the two-pass path

template <int CH>
__global__ void __launch_bounds__(128) layernorm_backward_affine_kernel(
    floatX* __restrict__ dinp, float* __restrict__ partial, const floatX* __restrict__ dout,
    const floatX* __restrict__ xhat, const floatX* __restrict__ w, const float* __restrict__ rstd, int rows, int C,
    bool accumulate) {
    constexpr int VS = x128::size, NV = 8 / VS;  // 16-byte vectors per chunk of 8 values
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float adw[CH][8], adb[CH][8];
    #pragma unroll
    for (int m = 0; m < CH; m++)
        #pragma unroll
        for (int k = 0; k < 8; k++) adw[m][k] = adb[m][k] = 0.0f;
    for (int row = blockIdx.x * 4 + warp; row < rows; row += gridDim.x * 4) {
        const floatX* dy = dout + (size_t)row * C;
        const floatX* xh = xhat + (size_t)row * C;
        floatX* dx = dinp + (size_t)row * C;
        // every load of the row issued up front (dinp too when accumulating): one memory round trip per row
        x128 d[CH][NV], x[CH][NV], o0[CH][NV];
        #pragma unroll
        for (int m = 0; m < CH; m++) {
            const int c = (lane + 32 * m) * 8;
            #pragma unroll
            for (int v = 0; v < NV; v++) {
                d[m][v] = c < C ? load128cs(dy + c + v * VS) : x128::constant((floatX)0.0f);
                x[m][v] = c < C ? load128cs(xh + c + v * VS) : x128::constant((floatX)0.0f);
                o0[m][v] = accumulate && c < C ? load128(dx + c + v * VS) : x128::constant((floatX)0.0f);
            }
        }
        const float r = rstd[row];
        float sg = 0.0f, sgx = 0.0f;
        #pragma unroll
        for (int m = 0; m < CH; m++) {
            const int c = (lane + 32 * m) * 8;
            if (c >= C) continue;
            float wf[8];
            load8_f32(w + c, wf);
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const float dv = (float)d[m][k / VS][k % VS], xv = (float)x[m][k / VS][k % VS];
                const float g = dv * wf[k];
                sg += g;
                sgx += g * xv;
                adw[m][k] += dv * xv;
                adb[m][k] += dv;
            }
        }
        sg = warp_reduce_sum(sg) / C;
        sgx = warp_reduce_sum(sgx) / C;
        #pragma unroll
        for (int m = 0; m < CH; m++) {
            const int c = (lane + 32 * m) * 8;
            if (c >= C) continue;
            float wf[8];
            load8_f32(w + c, wf);
            #pragma unroll
            for (int v = 0; v < NV; v++) {
                x128 o = o0[m][v];
                #pragma unroll
                for (int k = 0; k < VS; k++) {
                    const float g = (float)d[m][v][k] * wf[v * VS + k];
                    o[k] = (floatX)((float)o[k] + r * (g - sg - (float)x[m][v][k] * sgx));
                }
                store128(dx + c + v * VS, o);
            }
        }
    }
    // the block's column partials: its 4 warps added in order, 256 columns at a time
    __shared__ float sh[4][2][256];
    #pragma unroll
    for (int m = 0; m < CH; m++) {
        __syncthreads();
        #pragma unroll
        for (int k = 0; k < 8; k++) {
            sh[warp][0][lane * 8 + k] = adw[m][k];
            sh[warp][1][lane * 8 + k] = adb[m][k];
        }
        __syncthreads();
        for (int t = threadIdx.x; t < 2 * 256; t += blockDim.x) {
            const int q = t / 256, c = m * 256 + t % 256;
            if (c < C)
                partial[((size_t)blockIdx.x * 2 + q) * C + c] =
                    ((sh[0][q][t % 256] + sh[1][q][t % 256]) + sh[2][q][t % 256]) + sh[3][q][t % 256];
        }
    }
}

// Block (x: 32 columns, y: 32 lanes): lane y adds the blocks' partials y, y + 32,
// ... in order (coalesced across x), the lanes are added in order in shared memory;
// dw[c] += the dout * xhat sums, db[c] += the dout sums (each when not null).
__global__ static void layernorm_dwdb_kernel(float* __restrict__ dw, float* __restrict__ db,
                                             const float* __restrict__ partial, int nblocks, int C) {
    const int c = blockIdx.x * 32 + threadIdx.x;
    float s[2] = {0.0f, 0.0f};
    if (c < C) {
        #pragma unroll 4
        for (int k = threadIdx.y; k < nblocks; k += blockDim.y) {
            s[0] += partial[((size_t)k * 2) * C + c];
            s[1] += partial[((size_t)k * 2 + 1) * C + c];
        }
    }
    __shared__ float sh[2][32][33];
    sh[0][threadIdx.y][threadIdx.x] = s[0];
    sh[1][threadIdx.y][threadIdx.x] = s[1];
    __syncthreads();
    if (threadIdx.y != 0 || c >= C) return;
    float t0 = 0.0f, t1 = 0.0f;
    for (int y = 0; y < (int)blockDim.y; y++) {
        t0 += sh[0][y][threadIdx.x];
        t1 += sh[1][y][threadIdx.x];
    }
    if (dw) dw[c] += t0;
    if (db) db[c] += t1;
}

// floats of scratch layernorm_backward needs for rows of C values
static size_t layernorm_backward_scratch_floats(int C) {
    return std::max((size_t)LN_BWD_BLOCKS * 2, (size_t)COLUMN_REDUCE_SPLITS) * C;
}

// Backward of layernorm_forward. dinp: written, or added to when accumulate (the
// residual stream's gradient). With affine (w given): dw += sum_rows dout * xhat,
// db += sum_rows dout (either may be null), deterministic (fixed grid and orders);
// scratch: layernorm_backward_scratch_floats(C). xhat is the saved normalized input.
static void layernorm_backward(floatX* dinp, float* dw, float* db, const floatX* dout, const floatX* xhat, const floatX* w,
                               const float* rstd, int rows, int C, bool accumulate, float* scratch, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (C % 8 != 0) fail("layernorm: C = %d must be a multiple of 8", C);
    if ((dw || db) && !w) fail("layernorm_backward: dw/db need the affine weight");
    if (rows == 0) return;
    const int ch = ceil_div(C, 256);
    // dout, xhat, dinp (read too when accumulating), rstd; the dw / db partials stay in L2
    const double bytes = (double)rows * C * (accumulate ? 4 : 3) * sizeof(floatX) + rows * 4.0;
    if ((dw || db) && ch <= LN_BWD_MAX_CH) {
        ProfileWork pw(0, bytes);
        const int blocks = std::min(layernorm_backward_blocks(C), ceil_div(rows, 4));
        switch (ch) {
#define LN_BWD_CASE(CH)                                                                                             \
    case CH:                                                                                                        \
        layernorm_backward_affine_kernel<CH><<<blocks, 128, 0, stream>>>(dinp, scratch, dout, xhat, w, rstd, rows, C, \
                                                                         accumulate);                               \
        break;
            LN_BWD_CASE(1) LN_BWD_CASE(2) LN_BWD_CASE(3) LN_BWD_CASE(4) LN_BWD_CASE(5) LN_BWD_CASE(6) LN_BWD_CASE(7)
            LN_BWD_CASE(8)
#undef LN_BWD_CASE
        }
        cudaLaunchCheck();
        layernorm_dwdb_kernel<<<ceil_div(C, 32), dim3(32, 32), 0, stream>>>(dw, db, scratch, blocks, C);
        cudaLaunchCheck();
        return;
    }
    {
        ProfileWork pw(0, bytes);
        layernorm_backward_dx_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(dinp, dout, xhat, w, rstd, rows, C, accumulate);
        cudaLaunchCheck();
    }
    if (dw) column_reduce(dw, dout, xhat, nullptr, rows, C, scratch, stream);
    if (db) column_reduce(db, dout, (const floatX*)nullptr, nullptr, rows, C, scratch, stream);
}
