// Pointwise activations of the DiT, elementwise with 16-byte loads, fp32 math:
//   GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//     (the MLP and the caption embedder; MUG-V uses approximate="tanh")
//   SiLU: x * sigmoid(x) (the t/fps embedders and the conditioning of t_block)
// Backwards recompute from the saved input: dinp = dout * f'(inp) (written; dinp
// may alias dout). n must be a multiple of 8 (every tensor here is [rows, C]).
#pragma once
#include "../core/cuda_common.h"

__device__ __forceinline__ float gelu_tanh_f(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float gelu_tanh_grad_f(float x) {
    const float k = 0.7978845608028654f;
    const float th = tanhf(k * (x + 0.044715f * x * x * x));
    const float du = k * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}
__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float silu_grad_f(float x) {
    const float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
}

template <int KIND>  // 0 GELU(tanh), 1 SiLU
__global__ void activation_forward_kernel(floatX* __restrict__ out, const floatX* __restrict__ inp, size_t n) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= n) return;
    const x128 x = load128(inp + idx);
    x128 o;
    for (int k = 0; k < x128::size; k++) o[k] = (floatX)(KIND == 0 ? gelu_tanh_f((float)x[k]) : silu_f((float)x[k]));
    store128(out + idx, o);
}

template <int KIND>
__global__ void activation_backward_kernel(floatX* dinp, const floatX* dout, const floatX* __restrict__ inp, size_t n) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= n) return;
    const x128 x = load128(inp + idx), d = load128(dout + idx);
    x128 o;
    for (int k = 0; k < x128::size; k++) {
        const float xf = (float)x[k];
        o[k] = (floatX)((float)d[k] * (KIND == 0 ? gelu_tanh_grad_f(xf) : silu_grad_f(xf)));
    }
    store128(dinp + idx, o);
}

template <int KIND>
static void activation_forward(floatX* out, const floatX* inp, size_t n, cudaStream_t stream) {
    if (n % 8 != 0) fail("activation: %zu elements is not a multiple of 8", n);
    if (n == 0) return;
    ProfileWork pw(0, (double)n * 2 * sizeof(floatX));   // inp, out
    activation_forward_kernel<KIND><<<ceil_div(n / x128::size, 256), 256, 0, stream>>>(out, inp, n);
    cudaLaunchCheck();
}
template <int KIND>
static void activation_backward(floatX* dinp, const floatX* dout, const floatX* inp, size_t n, cudaStream_t stream) {
    if (n % 8 != 0) fail("activation: %zu elements is not a multiple of 8", n);
    if (n == 0) return;
    ProfileWork pw(0, (double)n * 3 * sizeof(floatX));   // dout, inp, dinp
    activation_backward_kernel<KIND><<<ceil_div(n / x128::size, 256), 256, 0, stream>>>(dinp, dout, inp, n);
    cudaLaunchCheck();
}

static void gelu_forward(floatX* out, const floatX* inp, size_t n, cudaStream_t stream) {
    NVTX_RANGE_FN();
    activation_forward<0>(out, inp, n, stream);
}
static void gelu_backward(floatX* dinp, const floatX* dout, const floatX* inp, size_t n, cudaStream_t stream) {
    NVTX_RANGE_FN();
    activation_backward<0>(dinp, dout, inp, n, stream);
}
static void silu_forward(floatX* out, const floatX* inp, size_t n, cudaStream_t stream) {
    NVTX_RANGE_FN();
    activation_forward<1>(out, inp, n, stream);
}
static void silu_backward(floatX* dinp, const floatX* dout, const floatX* inp, size_t n, cudaStream_t stream) {
    NVTX_RANGE_FN();
    activation_backward<1>(dinp, dout, inp, n, stream);
}
