// EDM (Karras et al. 2022) on the GPU: the loss and its gradient
// (llmc/model/dit_objective.h; docs/dit.md "Objectives"). The network's output F
// is read straight from the final linear's patch-layout output, as flow_loss
// reads the velocity (llmc/kernels/flow.cuh): one warp per patch token, for each
// of its P*Cout values at a latent position of channel c < Cin on a noisy frame
// (sample sigma = DiTSample::t, x = x0 + sigma eps)
//   d = c_skip x + c_out F - x0              (D(x) - x0)
//   loss_tok[p] += lambda d^2,  dout = grad_scale lambda c_out d
// and dout = 0 elsewhere (channels >= Cin, padding, clean frames); grad_scale is
// 2 / (noisy frames * Cin * H * W * B) as for rectified flow, so the host's sum of
// loss_tok per sample (train_dit.cu dit_loss) is the same mean.
#pragma once
#include "../core/cuda_common.h"
#include "patchify.cuh"

struct EdmCoef {
    float c_skip, c_out, weight;   // weight: lambda(sigma)
};

__device__ __forceinline__ EdmCoef edm_coef(float sigma, float sd) {
    const float s2 = sigma * sigma + sd * sd, ss = sigma * sd;
    return {sd * sd / s2, ss / sqrtf(s2), s2 / (ss * ss)};
}

// patrow[p] >> 1 is patch token p's sample.
__global__ static void edm_loss_kernel(floatX* __restrict__ dout, float* __restrict__ loss_tok, const floatX* __restrict__ out,
                                       const float* __restrict__ x0, const float* __restrict__ eps,
                                       const int* __restrict__ frame_mask, const DiTSample* __restrict__ samples,
                                       const int* __restrict__ patrow, PatchGeom pg, int Np, float sigma_data) {
    const int lane = threadIdx.x % 32;
    const int p = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (p >= Np) return;
    const DiTSample s = samples[patrow[p] >> 1];
    const EdmCoef k = edm_coef(s.t, sigma_data);
    const float gk = s.grad_scale * k.weight * k.c_out;
    float sq = patch_token_loss(dout, s, p, pg, frame_mask, lane, [&](size_t oi, long long l, float* g) {
        const float d = k.c_skip * (x0[l] + s.t * eps[l]) + k.c_out * (float)out[oi] - x0[l];
        *g = gk * d;
        return d * d;
    });
    sq = warp_reduce_sum(sq);
    if (lane == 0) loss_tok[p] = k.weight * sq;
}

static void edm_loss(floatX* dout, float* loss_tok, const floatX* out, const float* x0, const float* eps, const int* frame_mask,
                     const DiTSample* samples, const int* patrow, const PatchGeom& pg, int Np, float sigma_data,
                     cudaStream_t stream) {
    NVTX_RANGE_FN();
    edm_loss_kernel<<<ceil_div(Np, 8), 256, 0, stream>>>(dout, loss_tok, out, x0, eps, frame_mask, samples, patrow, pg, Np,
                                                         sigma_data);
    cudaLaunchCheck();
}
