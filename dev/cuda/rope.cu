/*
Check and benchmark of llmc/kernels/rope.cuh, QK-norm + RoPE fused with the layout change:
  qknorm_rope_forward:  qkv rows [q heads | k heads | v heads] (per token) ->
                        q [B, nkv, T, r, hd] (r = nh/nkv), k, v [B, nkv, T, hd];
                        q/k heads optionally RMS-normed over hd with weights q_norm/k_norm [hd]
                        (rstd saved per (token, q/k head)), then rotated:
                        pair (i, i + hd/2), angle t * inv_freq[i],
                        x'[i] = x[i] cos - x[i+hd/2] sin, x'[i+hd/2] = x[i+hd/2] cos + x[i] sin.
  qknorm_rope_backward: dqkv from dq/dk/dv (inverse rotation, then the RMSNorm backward),
                        dq_norm/dk_norm += sum of dy * xhat over tokens and heads.
The table is rope_table(gpt_rope_inv_freq(cfg), T); the CPU reference takes
cos/sin of t * inv_freq in double. Validated (every element) at small shapes,
one with Llama 3.1 frequency scaling, and at the gpt-1b shape, with and without
qk-norm weights, and with packed rows (positions restarting at each document of a row:
RopeShape::pos, SFT --pack 1); timed at the gpt-1b shape.

  make dev/cuda/rope && ./dev/cuda/rope
*/
#include "common.h"
#include "../../llmc/model/gpt_config.h"
#include "../../llmc/kernels/rope.cuh"

struct RopeCase {
    int B, T, nh, nkv, hd;
    float theta;
    int scaling;  // Llama 3.1 scaling with a small original context (all three frequency bands)
    bool timed;
    bool packed;  // positions restart at random document starts within each row
};

// element 0 of (b, t, head) in the permuted layouts documented in rope.cuh
static size_t q_index(const RopeCase& s, int b, int t, int h) {
    const int r = s.nh / s.nkv, g = h / r, j = h % r;
    return ((((size_t)b * s.nkv + g) * s.T + t) * r + j) * s.hd;
}
static size_t kv_index(const RopeCase& s, int b, int t, int g) { return (((size_t)b * s.nkv + g) * s.T + t) * s.hd; }

static void run_case(const RopeCase& s, bool qknorm, Rng* rng) {
    const std::string shape = strf("B%d T%d nh%d nkv%d hd%d%s%s%s", s.B, s.T, s.nh, s.nkv, s.hd, s.scaling ? " scaled" : "",
                                   qknorm ? " qk-norm" : "", s.packed ? " packed" : "");
    const float eps = 1e-6f;
    const int B = s.B, T = s.T, nh = s.nh, nkv = s.nkv, hd = s.hd, half = hd / 2, BT = B * T;
    const int nheads = nh + 2 * nkv, QKV = nheads * hd, nqk = nh + nkv;
    const size_t n = (size_t)BT * QKV, nq = (size_t)BT * nh * hd, nk = (size_t)BT * nkv * hd;
    RopeShape rs = {B, T, nh, nkv, hd};
    std::vector<int> pos(BT);   // each token's rotation position
    for (int b = 0; b < B; b++)
        for (int t = 0, start = 0; t < T; t++) {
            if (s.packed && t > 0 && rng_u32(rng) % 5 == 0) start = t;   // a document starts here
            pos[(size_t)b * T + t] = t - start;
        }
    int* d_pos = nullptr;
    if (s.packed) {
        d_pos = dev_alloc<int>(BT);
        upload_ints(d_pos, pos);
        rs.pos = d_pos;
    }

    GPTConfig cfg;
    cfg.head_dim = hd;
    cfg.rope_theta = s.theta;
    cfg.rope_scaling = s.scaling;
    cfg.rope_original_ctx = 32;
    const std::vector<double> inv_freq = gpt_rope_inv_freq(cfg);
    const std::vector<float> table = rope_table(inv_freq, T);
    float2* rope_cs = dev_alloc<float2>((size_t)T * half);
    cudaCheck(cudaMemcpy(rope_cs, table.data(), table.size() * sizeof(float), cudaMemcpyHostToDevice));
    std::vector<double> cosv((size_t)T * half), sinv((size_t)T * half);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            cosv[(size_t)t * half + i] = cos(t * inv_freq[i]);
            sinv[(size_t)t * half + i] = sin(t * inv_freq[i]);
        }

    floatX* qkv = dev_alloc<floatX>(n);
    floatX *qp = dev_alloc<floatX>(nq), *kp = dev_alloc<floatX>(nk), *vp = dev_alloc<floatX>(nk);
    floatX *dqp = dev_alloc<floatX>(nq), *dkp = dev_alloc<floatX>(nk), *dvp = dev_alloc<floatX>(nk), *dqkv = dev_alloc<floatX>(n);
    float* qk_rstd = dev_alloc<float>((size_t)BT * nqk);
    floatX *q_norm = nullptr, *k_norm = nullptr;
    float *dq_norm = nullptr, *dk_norm = nullptr;
    float* dnw_scratch = dev_alloc<float>(qknorm ? (size_t)BT * nqk * hd : 4);
    float* reduce_scratch = dev_alloc<float>((size_t)(COLUMN_REDUCE_SPLITS + 1) * nqk * hd);
    fill_random(qkv, n, rng, 1.5f);
    fill_random(dqp, nq, rng, 1.0f);
    fill_random(dkp, nk, rng, 1.0f);
    fill_random(dvp, nk, rng, 1.0f);
    std::vector<float> qnh(hd, 1.0f), knh(hd, 1.0f);
    if (qknorm) {
        q_norm = dev_alloc<floatX>(hd); k_norm = dev_alloc<floatX>(hd);
        dq_norm = dev_alloc<float>(hd); dk_norm = dev_alloc<float>(hd);
        fill_random(q_norm, hd, rng, 0.2f, 1.0f);
        fill_random(k_norm, hd, rng, 0.2f, 1.0f);
        fill_random(dq_norm, hd, rng, 1.0f);  // the weight gradients accumulate
        fill_random(dk_norm, hd, rng, 1.0f);
        qnh = download(q_norm, hd);
        knh = download(k_norm, hd);
    }
    const std::vector<float> x = download(qkv, n);

    // ---- forward
    poison(qp, nq); poison(kp, nk); poison(vp, nk); poison(qk_rstd, (size_t)BT * nqk);
    qknorm_rope_forward(qp, kp, vp, qk_rstd, qkv, rope_cs, q_norm, k_norm, rs, eps, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        std::vector<double> rq(nq), rk(nk), rv(nk), rrstd((size_t)BT * nqk);
        std::vector<double> nv(hd);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const size_t bt = (size_t)b * T + t;
                for (int h = 0; h < nheads; h++) {
                    const float* xr = &x[bt * QKV + (size_t)h * hd];
                    if (h >= nqk) {  // v: copied
                        double* dst = &rv[kv_index(s, b, t, h - nqk)];
                        for (int i = 0; i < hd; i++) dst[i] = xr[i];
                        continue;
                    }
                    const float* wgt = h < nh ? qnh.data() : knh.data();
                    double rsd = 1.0;
                    if (qknorm) {
                        double ss = 0.0;
                        for (int i = 0; i < hd; i++) ss += (double)xr[i] * xr[i];
                        rsd = 1.0 / sqrt(ss / hd + eps);
                        rrstd[bt * nqk + h] = rsd;
                    }
                    for (int i = 0; i < hd; i++) nv[i] = xr[i] * rsd * wgt[i];
                    double* dst = h < nh ? &rq[q_index(s, b, t, h)] : &rk[kv_index(s, b, t, h - nh)];
                    for (int i = 0; i < half; i++) {
                        const double c = cosv[(size_t)pos[bt] * half + i], sn = sinv[(size_t)pos[bt] * half + i];
                        dst[i] = nv[i] * c - nv[i + half] * sn;
                        dst[i + half] = nv[i + half] * c + nv[i] * sn;
                    }
                }
            }
        check("qknorm_rope_forward", "q", shape, download(qp, nq), rq, TOL_X);
        check("qknorm_rope_forward", "k", shape, download(kp, nk), rk, TOL_X);
        check("qknorm_rope_forward", "v", shape, download(vp, nk), rv, 0.0);  // a copy: bit-exact
        if (qknorm) check("qknorm_rope_forward", "qk_rstd", shape, download(qk_rstd, (size_t)BT * nqk), rrstd, TOL_F32);
    }

    // ---- backward (qk_rstd from the forward above)
    std::vector<float> dqn0, dkn0;
    if (qknorm) { dqn0 = download(dq_norm, hd); dkn0 = download(dk_norm, hd); }
    poison(dqkv, n);
    if (qknorm) poison(dnw_scratch, (size_t)BT * nqk * hd);
    poison(reduce_scratch, (size_t)(COLUMN_REDUCE_SPLITS + 1) * nqk * hd);
    qknorm_rope_backward(dqkv, dq_norm, dk_norm, dqp, dkp, dvp, qkv, qk_rstd, rope_cs, q_norm, k_norm, rs, dnw_scratch,
                         reduce_scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        const std::vector<float> dq = download(dqp, nq), dk = download(dkp, nk), dv = download(dvp, nk);
        std::vector<double> rdx(n), rdqn(dqn0.begin(), dqn0.end()), rdkn(dkn0.begin(), dkn0.end());
        std::vector<double> dn(hd);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const size_t bt = (size_t)b * T + t;
                for (int h = 0; h < nheads; h++) {
                    const float* xr = &x[bt * QKV + (size_t)h * hd];
                    double* dx = &rdx[bt * QKV + (size_t)h * hd];
                    if (h >= nqk) {
                        const float* src = &dv[kv_index(s, b, t, h - nqk)];
                        for (int i = 0; i < hd; i++) dx[i] = src[i];
                        continue;
                    }
                    const float* dy = h < nh ? &dq[q_index(s, b, t, h)] : &dk[kv_index(s, b, t, h - nh)];
                    // the rotation is orthogonal: its backward is the inverse rotation (angle -a)
                    for (int i = 0; i < half; i++) {
                        const double c = cosv[(size_t)pos[bt] * half + i], sn = sinv[(size_t)pos[bt] * half + i];
                        dn[i] = dy[i] * c + dy[i + half] * sn;
                        dn[i + half] = dy[i + half] * c - dy[i] * sn;
                    }
                    if (!qknorm) {
                        for (int i = 0; i < hd; i++) dx[i] = dn[i];
                        continue;
                    }
                    // n = xhat * w, xhat = x * rstd: dw += dn * xhat; dx = rstd * (g - xhat * mean(g * xhat)), g = dn * w
                    const float* wgt = h < nh ? qnh.data() : knh.data();
                    double* dw = h < nh ? rdqn.data() : rdkn.data();
                    rmsnorm_row_backward_cpu(dx, dw, xr, dn.data(), wgt, hd, eps);
                }
            }
        check("qknorm_rope_backward", "dqkv", shape, download(dqkv, n), rdx, TOL_X);
        if (qknorm) {
            check("qknorm_rope_backward", "dq_norm", shape, download(dq_norm, hd), rdqn, TOL_F32);
            check("qknorm_rope_backward", "dk_norm", shape, download(dk_norm, hd), rdkn, TOL_F32);
        }
    }

    if (s.timed) {
        const double sx = sizeof(floatX), tab = (double)T * half * sizeof(float2);
        // forward: qkv read, q/k/v written, the table; with qk-norm the weights and the rstd
        const double norm_fwd = qknorm ? 2.0 * hd * sx + (double)BT * nqk * sizeof(float) : 0.0;
        float us = time_us([&] { qknorm_rope_forward(qp, kp, vp, qk_rstd, qkv, rope_cs, q_norm, k_norm, rs, eps, 0); });
        report_bw(strf("qknorm_rope_forward%s", qknorm ? " (qk-norm)" : ""), shape, us, 2.0 * n * sx + tab + norm_fwd);
        // backward: dq/dk/dv read, dqkv written, the table; with qk-norm also the q/k part of qkv, rstd,
        // the weights, and dq_norm/dk_norm read + written
        const double norm_bwd = qknorm ? (double)BT * nqk * hd * sx + (double)BT * nqk * sizeof(float) + 2.0 * hd * sx +
                                             4.0 * hd * sizeof(float)
                                       : 0.0;
        us = time_us([&] {
            qknorm_rope_backward(dqkv, dq_norm, dk_norm, dqp, dkp, dvp, qkv, qk_rstd, rope_cs, q_norm, k_norm, rs,
                                 dnw_scratch, reduce_scratch, 0);
        });
        report_bw(strf("qknorm_rope_backward%s", qknorm ? " (qk-norm)" : ""), shape, us, 2.0 * n * sx + tab + norm_bwd);
    }
    if (d_pos) cudaCheck(cudaFree(d_pos));
    cudaCheck(cudaFree(rope_cs)); cudaCheck(cudaFree(qkv)); cudaCheck(cudaFree(qp)); cudaCheck(cudaFree(kp));
    cudaCheck(cudaFree(vp)); cudaCheck(cudaFree(dqp)); cudaCheck(cudaFree(dkp)); cudaCheck(cudaFree(dvp));
    cudaCheck(cudaFree(dqkv)); cudaCheck(cudaFree(qk_rstd)); cudaCheck(cudaFree(dnw_scratch)); cudaCheck(cudaFree(reduce_scratch));
    if (qknorm) {
        cudaCheck(cudaFree(q_norm)); cudaCheck(cudaFree(k_norm)); cudaCheck(cudaFree(dq_norm)); cudaCheck(cudaFree(dk_norm));
    }
}

int main() {
    print_banner("rope");
    Rng rng;
    rng_seed(&rng, 1234);
    const RopeCase cases[] = {
        {2, 16, 4, 2, 64, 10000.0f, 0, false, false},
        {1, 33, 6, 1, 48, 10000.0f, 1, false, false},    // hd/2 = 24 < 32 lanes; Llama 3.1 scaling
        {2, 8, 2, 2, 128, 1000000.0f, 0, false, false},  // MHA, hd/2 = 64 > 32 lanes
        {3, 40, 4, 2, 64, 10000.0f, 0, false, true},     // packed rows, the vector path
        {2, 37, 6, 1, 48, 10000.0f, 1, false, true},     // packed rows, the scalar path
        {8, 2048, 32, 8, 64, 500000.0f, 0, true, false}, // gpt-1b
    };
    for (const RopeCase& c : cases) {
        run_case(c, false, &rng);
        run_case(c, true, &rng);
    }
    return finish("rope");
}
