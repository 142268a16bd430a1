// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, statistics in fp32.
// One warp per row: a row of C values is read with 16-byte loads, reduced with
// shuffles, and written once. The forward saves 1/rms per row (rstd) so that the
// backward does not recompute it. The fused variant adds the residual branch
// first (x = a + b, written out as the new residual stream) so the stream is
// read and written once per sub-layer instead of twice.
#pragma once
#include "../core/cuda_common.h"
#include "../core/reduce.cuh"

// rows of C; residual may be nullptr (plain norm of inp1) or gets inp1 + inp2.
__global__ static void rmsnorm_forward_kernel(floatX* out, float* rstd, floatX* residual, const floatX* inp1,
                                              const floatX* inp2, const floatX* weight, int rows, int C, float eps) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const floatX* x1 = inp1 + (size_t)row * C;
    const floatX* x2 = inp2 ? inp2 + (size_t)row * C : nullptr;
    floatX* res = residual ? residual + (size_t)row * C : nullptr;
    float ss = 0.0f;
    for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
        x128 v = load128(x1 + c);
        if (x2) {
            x128 w = load128(x2 + c);
            for (int k = 0; k < x128::size; k++) v[k] = (floatX)((float)v[k] + (float)w[k]);
            store128(res + c, v);
        }
        for (int k = 0; k < x128::size; k++) ss += (float)v[k] * (float)v[k];
    }
    ss = warp_reduce_sum(ss);
    const float s = rsqrtf(ss / C + eps);
    if (lane == 0 && rstd) rstd[row] = s;
    const floatX* xs = x2 ? res : x1;  // re-read the (just written, L1/L2-hot) row
    for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
        x128 v = load128(xs + c), w = load128(weight + c), o;
        for (int k = 0; k < x128::size; k++) o[k] = (floatX)((float)v[k] * s * (float)w[k]);
        store128(out + (size_t)row * C + c, o);
    }
}

static void rmsnorm_forward(floatX* out, float* rstd, const floatX* inp, const floatX* weight, int rows, int C,
                            float eps, cudaStream_t stream) {
    NVTX_RANGE_FN();
    ProfileWork pw(0, (double)rows * C * 2 * sizeof(floatX) + rows * 4.0);   // inp, out, rstd
    rmsnorm_forward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(out, rstd, nullptr, inp, nullptr, weight, rows, C, eps);
    cudaLaunchCheck();
}

// residual = inp1 + inp2; out = RMSNorm(residual) * weight
static void fused_residual_rmsnorm_forward(floatX* residual, floatX* out, float* rstd, const floatX* inp1,
                                           const floatX* inp2, const floatX* weight, int rows, int C, float eps,
                                           cudaStream_t stream) {
    NVTX_RANGE_FN();
    ProfileWork pw(0, (double)rows * C * 4 * sizeof(floatX) + rows * 4.0);   // inp1, inp2, residual, out, rstd
    rmsnorm_forward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(out, rstd, residual, inp1, inp2, weight, rows, C, eps);
    cudaLaunchCheck();
}

// A 16-byte chunk of the dx kernel's two passes: dot += g w x over its 8 elements; then
// d += s (g w - x s dot). Both forms of the kernel below run these, so their additions match.
__device__ __forceinline__ void rmsnorm_dx_dot(float& dot, const x128& g, const x128& w, const x128& xv) {
    for (int k = 0; k < x128::size; k++) dot += (float)g[k] * (float)w[k] * (float)xv[k];
}
__device__ __forceinline__ void rmsnorm_dx_update(x128& d, const x128& g, const x128& w, const x128& xv, float s, float dot) {
    for (int k = 0; k < x128::size; k++) {
        const float gk = (float)g[k] * (float)w[k];
        d[k] = (floatX)((float)d[k] + s * (gk - (float)xv[k] * s * dot));
    }
}
// dinp += rstd * (g - xhat * mean(g * xhat)), g = dout * w, xhat = x * rstd.
// One warp per row, 16-byte loads. NCH > 0 (C up to NCH chunks of 8 a lane): the row's dout and
// x stay in registers between the two passes, so a lane's loads are in flight together and the
// second pass reads only dinp (two blocks an SM); NCH = 0 (any C): the row read twice, the second
// time from L1/L2. The same additions in the same order either way: the same dinp, bit for bit.
template <int NCH>
__global__ static void __launch_bounds__(256, NCH ? 2 : 1) rmsnorm_backward_dx_kernel(floatX* dinp, const floatX* dout,
                                                                                    const floatX* inp, const floatX* weight,
                                                                                    const float* rstd, int rows, int C) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const floatX* dy = dout + (size_t)row * C;
    const floatX* x = inp + (size_t)row * C;
    floatX* dx = dinp + (size_t)row * C;
    const float s = rstd[row];
    float dot = 0.0f;
    if constexpr (NCH == 0) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            const x128 g = load128(dy + c), w = load128(weight + c), xv = load128(x + c);
            rmsnorm_dx_dot(dot, g, w, xv);
        }
        dot = warp_reduce_sum(dot) * s / C;
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            const x128 g = load128(dy + c), w = load128(weight + c), xv = load128(x + c);
            x128 d = load128(dx + c);
            rmsnorm_dx_update(d, g, w, xv, s, dot);
            store128(dx + c, d);
        }
    } else {
        x128 g[NCH], xv[NCH];
#pragma unroll
        for (int j = 0; j < NCH; j++) {
            const int c = lane * x128::size + j * 32 * x128::size;
            if (c < C) { g[j] = load128(dy + c); xv[j] = load128(x + c); }
        }
#pragma unroll
        for (int j = 0; j < NCH; j++) {
            const int c = lane * x128::size + j * 32 * x128::size;
            if (c < C) rmsnorm_dx_dot(dot, g[j], load128(weight + c), xv[j]);
        }
        dot = warp_reduce_sum(dot) * s / C;
#pragma unroll
        for (int j = 0; j < NCH; j++) {
            const int c = lane * x128::size + j * 32 * x128::size;
            if (c < C) {
                const x128 w = load128(weight + c);
                x128 d = load128(dx + c);
                rmsnorm_dx_update(d, g[j], w, xv[j], s, dot);
                store128(dx + c, d);
            }
        }
    }
}
// the dx kernel for C: the registers' version up to eight chunks a lane, the loop past that
static void rmsnorm_backward_dx(floatX* dinp, const floatX* dout, const floatX* inp, const floatX* weight, const float* rstd,
                                int rows, int C, cudaStream_t stream) {
    const int nch = ceil_div(C, 32 * x128::size);
    const dim3 grid(ceil_div(rows, 8)), block(256);
    switch (nch) {
        case 1: rmsnorm_backward_dx_kernel<1><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, rows, C); break;
        case 2: rmsnorm_backward_dx_kernel<2><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, rows, C); break;
        case 3: rmsnorm_backward_dx_kernel<3><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, rows, C); break;
        case 4: rmsnorm_backward_dx_kernel<4><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, rows, C); break;
        case 6: rmsnorm_backward_dx_kernel<6><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, rows, C); break;
        case 8: rmsnorm_backward_dx_kernel<8><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, rows, C); break;
        default: rmsnorm_backward_dx_kernel<0><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, rows, C); break;
    }
    cudaLaunchCheck();
}

// Backward of y = RMSNorm(x) * w: dinp += dx (residual gradient accumulates),
// dweight += sum over rows of dout * xhat (deterministic column reduction).
static void rmsnorm_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp,
                             const floatX* weight, const float* rstd, int rows, int C, float* scratch,
                             cudaStream_t stream) {
    NVTX_RANGE_FN();
    {
        ProfileWork pw(0, (double)rows * C * 4 * sizeof(floatX) + rows * 4.0);   // dout, inp, dinp read and written, rstd
        rmsnorm_backward_dx(dinp, dout, inp, weight, rstd, rows, C, stream);
    }
    column_reduce(dweight, dout, inp, rstd, rows, C, scratch, stream);
}
