// The fp32 build's attention (-DENABLE_FP32, for the tight fp32 tests): simple scalar kernels,
// one warp per query row, lanes splitting the head dim (hd <= 128); the math and the API of the
// bf16 kernels (packed rows included), not their speed.
#pragma once
#include "flash_common.cuh"

// Rows of a group: query row i (position i / r, head i % r of the group) of q/dq and
// out/dout, key row c of k/dk and v/dv (element offsets).
__device__ __forceinline__ size_t flash_q_off(const FlashParams& p, const FlashGroup& G, int i) { return G.q0 + (size_t)i * p.q_rs; }
__device__ __forceinline__ size_t flash_o_off(const FlashParams& p, const FlashGroup& G, int i) {
    return G.o0 + (size_t)(i / p.r) * p.o_ts + (size_t)(i % p.r) * p.hd;
}

// one warp per query row (w = group * max_rows + i; rows past the group's end return)
__global__ static void flash_fwd_f32_kernel(float* out, float* lse, const float* qp, const float* kp, const float* vp, FlashParams p) {
    const int lane = threadIdx.x % 32;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)p.B * p.nkv * p.max_rows) return;
    const int grp = (int)(w / p.max_rows), i = (int)(w % p.max_rows), t = i / p.r;
    const FlashGroup G = flash_group(p, grp);
    if (i >= G.rows) return;
    const float* q = qp + flash_q_off(p, G, i);
    const float* K = kp + G.k0;
    const float* V = vp + G.v0;
    float qv[4], o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < 4; k++) qv[k] = lane + 32 * k < p.hd ? q[lane + 32 * k] : 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int n = p.causal ? t + 1 : G.Tk;
    for (int c = p.pos ? flash_doc_start(p, grp / p.nkv, t) : 0; c < n; c++) {
        float dot = 0.0f;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) dot += qv[k] * K[(size_t)c * p.k_rs + lane + 32 * k];
        const float s = warp_reduce_sum(dot) * p.scale;
        const float mn = fmaxf(m, s), corr = expf(m - mn), e = expf(s - mn);
        l = l * corr + e;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) o[k] = o[k] * corr + e * V[(size_t)c * p.v_rs + lane + 32 * k];
        m = mn;
    }
    float* y = out + flash_o_off(p, G, i);
    for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) y[lane + 32 * k] = o[k] / l;
    if (lane == 0) lse[G.lse0 + (size_t)(i % p.r) * G.lse_hs + t] = m + logf(l);
}

// dQ: one warp per query row, looping over its keys
__global__ static void flash_bwd_dq_f32_kernel(float* dqp, const float* qp, const float* kp, const float* vp, const float* dout,
                                               const float* Lp, const float* Dp, FlashParams p) {
    const int lane = threadIdx.x % 32;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)p.B * p.nkv * p.max_rows) return;
    const int grp = (int)(w / p.max_rows), i = (int)(w % p.max_rows), t = i / p.r;
    const FlashGroup G = flash_group(p, grp);
    if (i >= G.rows) return;
    const float* q = qp + flash_q_off(p, G, i);
    const float* dy = dout + flash_o_off(p, G, i);
    const float* K = kp + G.k0;
    const float* V = vp + G.v0;
    float qv[4], dyv[4], dq[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < 4; k++) {
        qv[k] = lane + 32 * k < p.hd ? q[lane + 32 * k] : 0.0f;
        dyv[k] = lane + 32 * k < p.hd ? dy[lane + 32 * k] : 0.0f;
    }
    const float L = Lp[G.ld0 + i], D = Dp[G.ld0 + i];
    const int n = p.causal ? t + 1 : G.Tk;
    for (int c = p.pos ? flash_doc_start(p, grp / p.nkv, t) : 0; c < n; c++) {
        float s = 0.0f, dp = 0.0f;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
            s += qv[k] * K[(size_t)c * p.k_rs + lane + 32 * k];
            dp += dyv[k] * V[(size_t)c * p.v_rs + lane + 32 * k];
        }
        s = warp_reduce_sum(s);
        dp = warp_reduce_sum(dp);
        const float ds = exp2f(s * p.scale_log2 - L) * (dp - D);
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) dq[k] += ds * K[(size_t)c * p.k_rs + lane + 32 * k];
    }
    float* dqr = dqp + flash_q_off(p, G, i);
    for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) dqr[lane + 32 * k] = dq[k] * p.scale;
}

// dK, dV: one warp per key row (w = group * max_Tk + c), looping over every query row
// (all r heads) that sees it
__global__ static void flash_bwd_dkdv_f32_kernel(float* dkp, float* dvp, const float* qp, const float* kp, const float* vp,
                                                 const float* dout, const float* Lp, const float* Dp, FlashParams p) {
    const int lane = threadIdx.x % 32;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)p.B * p.nkv * p.max_Tk) return;
    const int grp = (int)(w / p.max_Tk), c = (int)(w % p.max_Tk);
    const FlashGroup G = flash_group(p, grp);
    if (c >= G.Tk) return;
    const size_t ko = G.k0 + (size_t)c * p.k_rs, vo = G.v0 + (size_t)c * p.v_rs;
    float kv[4], vv[4], dk[4] = {0.0f, 0.0f, 0.0f, 0.0f}, dv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < 4; k++) {
        kv[k] = lane + 32 * k < p.hd ? kp[ko + lane + 32 * k] : 0.0f;
        vv[k] = lane + 32 * k < p.hd ? vp[vo + lane + 32 * k] : 0.0f;
    }
    for (int i = p.causal ? c * p.r : 0; i < G.rows; i++) {
        if (p.pos && c < flash_doc_start(p, grp / p.nkv, i / p.r)) continue;   // packed rows: another document's query
        const float* q = qp + flash_q_off(p, G, i);
        const float* dy = dout + flash_o_off(p, G, i);
        float s = 0.0f, dp = 0.0f;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
            s += q[lane + 32 * k] * kv[k];
            dp += dy[lane + 32 * k] * vv[k];
        }
        s = warp_reduce_sum(s);
        dp = warp_reduce_sum(dp);
        const size_t row = G.ld0 + i;
        const float pr = exp2f(s * p.scale_log2 - Lp[row]), ds = pr * (dp - Dp[row]);
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
            dv[k] += pr * dy[lane + 32 * k];
            dk[k] += ds * q[lane + 32 * k];
        }
    }
    for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
        dkp[ko + lane + 32 * k] = dk[k] * p.scale;
        dvp[vo + lane + 32 * k] = dv[k];
    }
}

static void flash_fwd_launch(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp, const FlashParams& p,
                             cudaStream_t stream) {
    const size_t warps = (size_t)p.B * p.nkv * p.max_rows;
    flash_fwd_f32_kernel<<<ceil_div(warps, 8), 256, 0, stream>>>(out, lse, qp, kp, vp, p);
    cudaLaunchCheck();
}

// fp32 has one backward: the split one (algo is ignored). w.L / w.D: the packed L and D rows
// (flash_bwd_prep_kernel), already written.
static void flash_bwd_launch(FlashBwdAlgo algo, floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* qp,
                             const floatX* kp, const floatX* vp, const FlashBwdScratch& w, const FlashParams& p,
                             cudaStream_t stream) {
    (void)algo;
    const float *Lp = w.L, *Dp = w.D;
    flash_bwd_dq_f32_kernel<<<ceil_div((size_t)p.B * p.nkv * p.max_rows, 8), 256, 0, stream>>>(dqp, qp, kp, vp, dout, Lp, Dp, p);
    cudaLaunchCheck();
    flash_bwd_dkdv_f32_kernel<<<ceil_div((size_t)p.B * p.nkv * p.max_Tk, 8), 256, 0, stream>>>(dkp, dvp, qp, kp, vp, dout, Lp, Dp, p);
    cudaLaunchCheck();
}
