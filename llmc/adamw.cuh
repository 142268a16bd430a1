// AdamW on fp32 master weights (torch.optim.AdamW semantics), writing the bf16
// compute copy in the same pass: one read of grad, m, v, master, one write of
// m, v, master and the bf16 weight. Gradient clipping is folded in as a scale
// on the gradient. 16-byte loads of the fp32 streams.
#pragma once
#include "cuda_common.h"

__global__ static void adamw_kernel(floatX* params, float* master, const float* grads, float* m, float* v, size_t n,
                                    float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                                    float grad_scale) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= n) return;
    if (i + 4 <= n) {
        float4 g = *reinterpret_cast<const float4*>(grads + i), mm = *reinterpret_cast<float4*>(m + i);
        float4 vv = *reinterpret_cast<float4*>(v + i), p = *reinterpret_cast<float4*>(master + i);
        float* gp = &g.x; float* mp = &mm.x; float* vp = &vv.x; float* pp = &p.x;
        for (int k = 0; k < 4; k++) {
            float gk = gp[k] * grad_scale;
            mp[k] = beta1 * mp[k] + (1.0f - beta1) * gk;
            vp[k] = beta2 * vp[k] + (1.0f - beta2) * gk * gk;
            pp[k] -= lr * wd * pp[k];
            pp[k] -= lr * (mp[k] / bc1) / (sqrtf(vp[k] / bc2) + eps);
            params[i + k] = (floatX)pp[k];
        }
        *reinterpret_cast<float4*>(m + i) = mm;
        *reinterpret_cast<float4*>(v + i) = vv;
        *reinterpret_cast<float4*>(master + i) = p;
    } else {
        for (size_t k = i; k < n; k++) {
            float gk = grads[k] * grad_scale;
            m[k] = beta1 * m[k] + (1.0f - beta1) * gk;
            v[k] = beta2 * v[k] + (1.0f - beta2) * gk * gk;
            master[k] -= lr * wd * master[k];
            master[k] -= lr * (m[k] / bc1) / (sqrtf(v[k] / bc2) + eps);
            params[k] = (floatX)master[k];
        }
    }
}

// One AdamW step over n contiguous parameters (16-byte aligned); step is 1-based.
static void adamw_update(floatX* params, float* master, const float* grads, float* m, float* v, size_t n, float lr,
                         float beta1, float beta2, float eps, float wd, float grad_scale, int step, cudaStream_t stream) {
    NVTX_RANGE_FN();
    const float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    adamw_kernel<<<ceil_div(ceil_div(n, 4), 256), 256, 0, stream>>>(params, master, grads, m, v, n, lr, beta1, beta2,
                                                                    bc1, bc2, eps, wd, grad_scale);
    cudaLaunchCheck();
}
