// Exponential moving average of the weights (the MUG-V recipe's optional EMA,
// decay 0.9999): ema = decay * ema + (1 - decay) * master after every optimizer
// update, on the fp32 master weights. The average is kept in fp32 because at
// decay 0.9999 one step moves it by 1e-4 of the difference, far below what a
// bf16 copy could hold. Memory-bound: one read of master and ema, one write of
// ema, 16-byte accesses. Written as ema + (1 - decay) * (master - ema), the same
// expression as dev/cuda/ema.cu's CPU reference and torch's lerp_.
#pragma once
#include "../core/cuda_common.h"

__global__ static void ema_update_kernel(float* __restrict__ ema, const float* __restrict__ master, size_t n, float one_minus_decay) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i + 4 <= n) {
        const float4 w = *reinterpret_cast<const float4*>(master + i);
        float4 e = *reinterpret_cast<const float4*>(ema + i);
        e.x = fmaf(one_minus_decay, w.x - e.x, e.x);
        e.y = fmaf(one_minus_decay, w.y - e.y, e.y);
        e.z = fmaf(one_minus_decay, w.z - e.z, e.z);
        e.w = fmaf(one_minus_decay, w.w - e.w, e.w);
        *reinterpret_cast<float4*>(ema + i) = e;
    } else {
        for (size_t k = i; k < n; k++) ema[k] = fmaf(one_minus_decay, master[k] - ema[k], ema[k]);
    }
}

// n fp32 values, 16-byte aligned pointers.
static void ema_update(float* ema, const float* master, size_t n, float decay, cudaStream_t stream) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    ema_update_kernel<<<ceil_div(ceil_div(n, (size_t)4), (size_t)256), 256, 0, stream>>>(ema, master, n, 1.0f - decay);
    cudaLaunchCheck();
}
