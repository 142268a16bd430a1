// LayerNorm over rows of C values, statistics in fp32 (biased variance, eps
// inside the square root, two passes over the row so the variance does not
// cancel): xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps);
// out = xhat (no affine: the DiT's block/caption/final norms) or xhat * w + b
// (the cross-attention norm). The forward saves rstd and xhat (as the output,
// or separately with affine) so that the backward needs neither x nor mean.
// One warp per row, 16-byte loads (C must be a multiple of 8).
#pragma once
#include "cuda_common.h"
#include "reduce.cuh"

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

// Backward of layernorm_forward. dinp: written, or added to when accumulate (the
// residual stream's gradient). With affine (w given): dw += sum_rows dout * xhat,
// db += sum_rows dout, by the deterministic column reduction (scratch: see
// column_reduce). xhat is the saved normalized input.
static void layernorm_backward(floatX* dinp, float* dw, float* db, const floatX* dout, const floatX* xhat, const floatX* w,
                               const float* rstd, int rows, int C, bool accumulate, float* scratch, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (rows == 0) return;
    layernorm_backward_dx_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(dinp, dout, xhat, w, rstd, rows, C, accumulate);
    cudaLaunchCheck();
    if (dw) column_reduce(dw, dout, xhat, nullptr, rows, C, scratch, stream);
    if (db) column_reduce(db, dout, (const floatX*)nullptr, nullptr, rows, C, scratch, stream);
}
