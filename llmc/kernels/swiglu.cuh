// SwiGLU: out[r, f] = silu(gu[r, f]) * gu[r, F + f], with gu = h @ wgateup^T holding
// gate then up halves of one matmul output (one GEMM instead of two).
// Elementwise, 16-byte loads; the backward recomputes silu instead of saving it.
#pragma once
#include "../core/cuda_common.h"

__global__ static void swiglu_forward_kernel(floatX* out, const floatX* gu, int rows, int F) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)rows * F) return;
    const size_t r = idx / F, f = idx % F;
    x128 g = load128cs(gu + r * 2 * F + f), u = load128cs(gu + r * 2 * F + F + f), o;
    for (int k = 0; k < x128::size; k++) {
        float x = (float)g[k];
        o[k] = (floatX)(x / (1.0f + expf(-x)) * (float)u[k]);
    }
    store128(out + idx, o);
}

static void swiglu_forward(floatX* out, const floatX* gu, int rows, int F, cudaStream_t stream) {
    NVTX_RANGE_FN();
    const size_t n = (size_t)rows * F / x128::size;
    ProfileWork pw(0, (double)rows * F * 3 * sizeof(floatX));   // gu [rows, 2F], out
    swiglu_forward_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(out, gu, rows, F);
    cudaLaunchCheck();
}

// dgate = dout * u * silu'(g), silu'(g) = s (1 + g (1 - s)), s = sigmoid(g); dup = dout * silu(g)
__global__ static void swiglu_backward_kernel(floatX* dgu, const floatX* dout, const floatX* gu, int rows, int F) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)rows * F) return;
    const size_t r = idx / F, f = idx % F;
    x128 g = load128cs(gu + r * 2 * F + f), u = load128cs(gu + r * 2 * F + F + f), d = load128cs(dout + idx);
    x128 dg, du;
    for (int k = 0; k < x128::size; k++) {
        float x = (float)g[k], s = 1.0f / (1.0f + expf(-x)), dy = (float)d[k];
        dg[k] = (floatX)(dy * (float)u[k] * s * (1.0f + x * (1.0f - s)));
        du[k] = (floatX)(dy * x * s);
    }
    store128(dgu + r * 2 * F + f, dg);
    store128(dgu + r * 2 * F + F + f, du);
}

static void swiglu_backward(floatX* dgu, const floatX* dout, const floatX* gu, int rows, int F, cudaStream_t stream) {
    NVTX_RANGE_FN();
    const size_t n = (size_t)rows * F / x128::size;
    ProfileWork pw(0, (double)rows * F * 5 * sizeof(floatX));   // dout, gu, dgu
    swiglu_backward_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(dgu, dout, gu, rows, F);
    cudaLaunchCheck();
}
