// The DiT's conditioning vector: sinusoidal embeddings of the timestep and of
// the fps, and c = t_emb + fps_emb.
// - The sinusoidal embedding of a scalar s is [cos(s f_k), sin(s f_k)] (cos
//   first), f_k = exp(-ln(max_period) k / half) (dit_freq_embedding_freqs). It is
//   computed on the host in double and rounded (dev/DESIGN.md: s = 1000 t reaches
//   1000 rad, where a float argument would already lose digits); it is 2B x 256
//   numbers per step.
// - cond rows: 2b = t_emb(1000 t_b) + fps_emb(fps_b), 2b+1 = t_emb(0) + fps_emb(fps_b)
//   (the t0 modulation of clean frames). The kernel writes cond and SiLU(cond)
//   (the input of t_block); its backward folds the two gradients that reach cond
//   (through t_block's SiLU, and directly from the final layer's modulation)
//   into the gradients of the t and fps embedder outputs.
#pragma once
#include <cmath>
#include <vector>
#include "../core/cuda_common.h"
#include "gelu.cuh"

// out [n, 2*half] (host floats) for the scalars s[n], freqs f[half].
static void timestep_embedding_host(float* out, const double* s, int n, const std::vector<double>& f) {
    const int half = (int)f.size();
    for (int i = 0; i < n; i++)
        for (int k = 0; k < half; k++) {
            out[(size_t)i * 2 * half + k] = (float)cos(s[i] * f[k]);
            out[(size_t)i * 2 * half + half + k] = (float)sin(s[i] * f[k]);
        }
}

// cond[r, c] = temb[r, c] + femb[r / 2, c]; conds = SiLU(cond) (from the fp32 sum). Rows 2B.
__global__ static void cond_combine_kernel(floatX* __restrict__ cond, floatX* __restrict__ conds,
                                           const floatX* __restrict__ temb, const floatX* __restrict__ femb, int B, int C) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= 2 * B * C) return;
    const int r = idx / C, c = idx % C;
    const float v = (float)temb[idx] + (float)femb[(size_t)(r / 2) * C + c];
    cond[idx] = (floatX)v;
    conds[idx] = (floatX)silu_f(v);
}

static void cond_combine_forward(floatX* cond, floatX* conds, const floatX* temb, const floatX* femb, int B, int C,
                                 cudaStream_t stream) {
    NVTX_RANGE_FN();
    cond_combine_kernel<<<ceil_div(2 * B * C, 256), 256, 0, stream>>>(cond, conds, temb, femb, B, C);
    cudaLaunchCheck();
}

// g[r, c] = dcond[r, c] + dconds[r, c] * silu'(cond[r, c])   (fp32)
// dtemb[r, c] = g[r, c]; dfemb[b, c] = g[2b, c] + g[2b+1, c]. One thread per (b, c).
__global__ static void cond_combine_backward_kernel(floatX* __restrict__ dtemb, floatX* __restrict__ dfemb,
                                                    const float* __restrict__ dcond, const floatX* __restrict__ dconds,
                                                    const floatX* __restrict__ cond, int B, int C) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * C) return;
    const int b = idx / C, c = idx % C;
    float sum = 0.0f;
    for (int w = 0; w < 2; w++) {
        const size_t e = (size_t)(2 * b + w) * C + c;
        const float g = dcond[e] + (float)dconds[e] * silu_grad_f((float)cond[e]);
        dtemb[e] = (floatX)g;
        sum += g;
    }
    dfemb[idx] = (floatX)sum;
}

static void cond_combine_backward(floatX* dtemb, floatX* dfemb, const float* dcond, const floatX* dconds,
                                  const floatX* cond, int B, int C, cudaStream_t stream) {
    NVTX_RANGE_FN();
    cond_combine_backward_kernel<<<ceil_div(B * C, 256), 256, 0, stream>>>(dtemb, dfemb, dcond, dconds, cond, B, C);
    cudaLaunchCheck();
}
