/*
fp32 CPU reference of ring attention, the attention of context parallelism (CP): dense
attention in the two layouts of the GPU API (llmc/attention/flash_attention.cuh,
flash_common.cuh), and the ring over N CP ranks simulated in one process, for
test/test_context_parallel.cpp to check the ring against dense attention.

It is shaped like the GPU algorithm (llmc/attention/ring_attention.cuh) on purpose, so that
a disagreement there can be traced step by step here: the split and the schedule come only
from the plan functions of llmc/dist/context_parallel.h (cp_chunk, cp_causal_block,
cp_ring_source, cp_part_cu, cp_causal_tokens, cp_part_tokens), and every block of the ring
is one call of the dense functions on views of the rank's buffers, as every block on the GPU
is one call of the ordinary kernels:
  causal (GPT)  a rank's local chunk a is one [B, Tc] batch in the fixed layout, so the
                attention of query chunk gq to key chunk gk is the fixed-layout call with
                T = Tc: causal when gk == gq (CP_CAUSAL), full when gk < gq (CP_FULL)
  varlen (DiT)  one varlen call per (rank v, step s): cu_q of v's parts, cu_k of the parts of
                the rank u whose K/V v holds
The forward merges the partial outputs by their log-sum-exp; the backward runs each block's
backward with the merged (global) out and lse, so the blocks' gradients sum to the dense ones.

Local layouts (what the ring functions take and return; a process holding several ranks
lays them out rank after rank, each rank's buffers as a one-rank process would have them):
  causal  rank v's two chunks, each a fixed-layout [B, Tc] batch: q [2][B, nkv, Tc, r, hd],
          k, v [2][B, nkv, Tc, hd], out / dout [2][B, Tc, nh*hd] (the tokens in
          cp_causal_tokens order), lse [2][B, nh, Tc]
  varlen  rank v's tokens in cp_part_tokens order, rows with the caller's strides for q, k, v
          (dq, dk, dv the same), out / dout [Nq_v, nh*hd], lse [nh, Nq_v]
cp_causal_gather / cp_rows_gather / cp_varlen_lse_gather put dense tensors in these orders;
the scatters put them back.

Every tensor is fp32; dot products, softmax sums and the dense backward's gradient sums
accumulate in double and are stored as float; the ring's accumulators (merged out, lse, and
dq/dk/dv summed over blocks) are fp32 buffers, as on the GPU, the merge weights computed in
double. The ring's K/V are read in place (the varlen ring copies the block it holds into a
compact buffer, the GPU's receive buffer); the K/V gradients are added straight into their
owner's buffers instead of travelling around the ring with the K/V (the same sum).
*/
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>
#include "../../llmc/core/utils.h"
#include "../../llmc/dist/context_parallel.h"

// ------------------------------------------------------------------ one query row

// Forward of one query row q (hd) against nk keys (key c at k + c*k_stride, value at
// v + c*v_stride): out (hd) = softmax(scale * q.k) V and the row's lse (natural log).
static void attend_row_forward(const float* q, const float* k, int k_stride, const float* v, int v_stride, int nk, int hd,
                               double scale, float* out, float* lse) {
    std::vector<double> p(nk);
    double mx = -INFINITY;
    for (int c = 0; c < nk; c++) {
        double d = 0.0;
        for (int e = 0; e < hd; e++) d += (double)q[e] * k[(size_t)c * k_stride + e];
        p[c] = scale * d;
        mx = std::max(mx, p[c]);
    }
    double sum = 0.0;
    for (int c = 0; c < nk; c++) { p[c] = exp(p[c] - mx); sum += p[c]; }
    for (int e = 0; e < hd; e++) {
        double o = 0.0;
        for (int c = 0; c < nk; c++) o += p[c] * v[(size_t)c * v_stride + e];
        out[e] = (float)(o / sum);
    }
    *lse = (float)(mx + log(sum));
}

// Backward of one query row against the same keys, from the row's out, lse and dout (all
// three those of the whole attention, not of these keys only): P = exp(scale*q.k - lse),
// D = dout.out, dS = P * (dout.v - D); adds dq += scale dS k, dk += scale dS q, dv += P dout.
static void attend_row_backward(const float* q, const float* k, int k_stride, const float* v, int v_stride, int nk, int hd,
                                double scale, const float* dout, const float* out, float lse, double* dq, double* dk,
                                int dk_stride, double* dv, int dv_stride) {
    double D = 0.0;
    for (int e = 0; e < hd; e++) D += (double)dout[e] * out[e];
    for (int c = 0; c < nk; c++) {
        const float* kc = k + (size_t)c * k_stride;
        const float* vc = v + (size_t)c * v_stride;
        double s = 0.0, dp = 0.0;
        for (int e = 0; e < hd; e++) { s += (double)q[e] * kc[e]; dp += (double)dout[e] * vc[e]; }
        const double P = exp(scale * s - lse), dS = P * (dp - D);
        double* dkc = dk + (size_t)c * dk_stride;
        double* dvc = dv + (size_t)c * dv_stride;
        for (int e = 0; e < hd; e++) {
            dq[e] += scale * dS * kc[e];
            dkc[e] += scale * dS * q[e];
            dvc[e] += P * dout[e];
        }
    }
}

// ------------------------------------------------------------------ dense, fixed layout (GPT)

// B rows of T tokens, nh query heads in nkv groups of r = nh / nkv, causal or full:
// q [B, nkv, T, r, hd], k, v [B, nkv, T, hd], out [B, T, nh*hd], lse [B, nh, T].
struct CpuAttnShape {
    int B, T, nh, nkv, hd;
    bool causal;
};

static size_t q_index(const CpuAttnShape& s, int b, int h, int t) {  // query head h at position t
    const int r = s.nh / s.nkv;
    return ((((size_t)b * s.nkv + h / r) * s.T + t) * r + h % r) * s.hd;
}
static size_t kv_index(const CpuAttnShape& s, int b, int g, int t) { return (((size_t)b * s.nkv + g) * s.T + t) * s.hd; }
static size_t out_index(const CpuAttnShape& s, int b, int h, int t) { return (((size_t)b * s.T + t) * s.nh + h) * s.hd; }
static size_t lse_index(const CpuAttnShape& s, int b, int h, int t) { return ((size_t)b * s.nh + h) * s.T + t; }

static void attention_forward_cpu(float* out, float* lse, const float* q, const float* k, const float* v, const CpuAttnShape& s) {
    const double scale = 1.0 / sqrt((double)s.hd);
    const int r = s.nh / s.nkv;
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.nh; h++)
            for (int t = 0; t < s.T; t++)
                attend_row_forward(q + q_index(s, b, h, t), k + kv_index(s, b, h / r, 0), s.hd, v + kv_index(s, b, h / r, 0),
                                   s.hd, s.causal ? t + 1 : s.T, s.hd, scale, out + out_index(s, b, h, t),
                                   lse + lse_index(s, b, h, t));
}

// Writes dq, dk, dv (layouts of q, k, v) from dout, out, lse (layouts of out, lse).
static void attention_backward_cpu(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                                   const float* q, const float* k, const float* v, const CpuAttnShape& s) {
    const double scale = 1.0 / sqrt((double)s.hd);
    const int r = s.nh / s.nkv;
    const size_t nq = (size_t)s.B * s.T * s.nh * s.hd, nkv = (size_t)s.B * s.T * s.nkv * s.hd;
    std::vector<double> dq_acc(nq, 0.0), dk_acc(nkv, 0.0), dv_acc(nkv, 0.0);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.nh; h++)
            for (int t = 0; t < s.T; t++) {
                const size_t kv0 = kv_index(s, b, h / r, 0), o = out_index(s, b, h, t);
                attend_row_backward(q + q_index(s, b, h, t), k + kv0, s.hd, v + kv0, s.hd, s.causal ? t + 1 : s.T, s.hd,
                                    scale, dout + o, out + o, lse[lse_index(s, b, h, t)], &dq_acc[q_index(s, b, h, t)],
                                    &dk_acc[kv0], s.hd, &dv_acc[kv0], s.hd);
            }
    for (size_t i = 0; i < nq; i++) dq[i] = (float)dq_acc[i];
    for (size_t i = 0; i < nkv; i++) { dk[i] = (float)dk_acc[i]; dv[i] = (float)dv_acc[i]; }
}

// ------------------------------------------------------------------ dense, varlen layout (DiT)

// B packed samples, full attention inside each: sample b's queries are tokens
// [cu_q[b], cu_q[b+1]), its keys [cu_k[b], cu_k[b+1]); head h of token n at
// q + n*q_stride + h*hd (k, v likewise); out [Nq, nh*hd], lse [nh, Nq] (nkv = nh).
struct CpuVarlenShape {
    int B, nh, hd;
    const int* cu_q;
    const int* cu_k;
    int q_stride, k_stride, v_stride;
};

static void attention_varlen_forward_cpu(float* out, float* lse, const float* q, const float* k, const float* v,
                                         const CpuVarlenShape& s) {
    const double scale = 1.0 / sqrt((double)s.hd);
    const int Nq = s.cu_q[s.B], C = s.nh * s.hd;
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.nh; h++)
            for (int n = s.cu_q[b]; n < s.cu_q[b + 1]; n++)
                attend_row_forward(q + (size_t)n * s.q_stride + h * s.hd, k + (size_t)s.cu_k[b] * s.k_stride + h * s.hd,
                                   s.k_stride, v + (size_t)s.cu_k[b] * s.v_stride + h * s.hd, s.v_stride,
                                   s.cu_k[b + 1] - s.cu_k[b], s.hd, scale, out + (size_t)n * C + h * s.hd,
                                   lse + (size_t)h * Nq + n);
}

// Writes the nh*hd columns of dq, dk, dv (strides of q, k, v; the other columns untouched).
static void attention_varlen_backward_cpu(float* dq, float* dk, float* dv, const float* dout, const float* out,
                                          const float* lse, const float* q, const float* k, const float* v,
                                          const CpuVarlenShape& s) {
    const double scale = 1.0 / sqrt((double)s.hd);
    const int Nq = s.cu_q[s.B], Nk = s.cu_k[s.B], C = s.nh * s.hd;
    std::vector<double> dq_acc((size_t)Nq * C, 0.0), dk_acc((size_t)Nk * C, 0.0), dv_acc((size_t)Nk * C, 0.0);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.nh; h++)
            for (int n = s.cu_q[b]; n < s.cu_q[b + 1]; n++) {
                const size_t k0 = (size_t)s.cu_k[b], o = (size_t)n * C + h * s.hd;
                attend_row_backward(q + (size_t)n * s.q_stride + h * s.hd, k + k0 * s.k_stride + h * s.hd, s.k_stride,
                                    v + k0 * s.v_stride + h * s.hd, s.v_stride, s.cu_k[b + 1] - s.cu_k[b], s.hd, scale,
                                    dout + o, out + o, lse[(size_t)h * Nq + n], &dq_acc[o], &dk_acc[k0 * C + h * s.hd], C,
                                    &dv_acc[k0 * C + h * s.hd], C);
            }
    for (int n = 0; n < Nq; n++)
        for (int i = 0; i < C; i++) dq[(size_t)n * s.q_stride + i] = (float)dq_acc[(size_t)n * C + i];
    for (int n = 0; n < Nk; n++)
        for (int i = 0; i < C; i++) {
            dk[(size_t)n * s.k_stride + i] = (float)dk_acc[(size_t)n * C + i];
            dv[(size_t)n * s.v_stride + i] = (float)dv_acc[(size_t)n * C + i];
        }
}

// ------------------------------------------------------------------ the merge

// Merges one partial row (out_p over hd, lse_p) into the accumulators (out_acc, lse_acc;
// they start at 0 and -inf): lse = logaddexp(lse_acc, lse_p), out_acc = exp(lse_acc - lse)
// out_acc + exp(lse_p - lse) out_p.
static void lse_merge_row(float* out_acc, float* lse_acc, const float* out_p, float lse_p, int hd) {
    const double a = *lse_acc, p = lse_p, m = std::max(a, p);
    const double lse = m + log(exp(a - m) + exp(p - m));
    const double wa = exp(a - lse), wp = exp(p - lse);
    for (int e = 0; e < hd; e++) out_acc[e] = (float)(wa * out_acc[e] + wp * out_p[e]);
    *lse_acc = (float)lse;
}

// ------------------------------------------------------------------ causal ring (GPT)

// Dense [B, H, T, W] (fixed layout with H heads of W floats at each token: q is H = nkv,
// W = r*hd; k, v H = nkv, W = hd; out, dout H = 1, W = nh*hd; lse H = nh, W = 1) into the
// local layout of the ranks group g holds: per rank [2][B, H, Tc, W], tokens as
// cp_causal_tokens lists them.
static void cp_causal_gather(float* local, const float* dense, const CpGroup& g, int B, int H, int T, int W) {
    const int Tc = T / (2 * g.n);
    const std::vector<int> idx = cp_causal_tokens(g, B, T);
    for (size_t i = 0; i < idx.size(); i++) {
        const size_t chunk = i / ((size_t)B * Tc);  // which [B, Tc] batch of the local buffer
        const int b = (int)(i / Tc % B), t = (int)(i % Tc), gb = idx[i] / T, gt = idx[i] % T;
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                local[chunk * B * H * Tc * W + (((size_t)b * H + h) * Tc + t) * W + w] = dense[(((size_t)gb * H + h) * T + gt) * W + w];
    }
}
// The inverse: writes the tokens group g holds into dense.
static void cp_causal_scatter(float* dense, const float* local, const CpGroup& g, int B, int H, int T, int W) {
    const int Tc = T / (2 * g.n);
    const std::vector<int> idx = cp_causal_tokens(g, B, T);
    for (size_t i = 0; i < idx.size(); i++) {
        const size_t chunk = i / ((size_t)B * Tc);
        const int b = (int)(i / Tc % B), t = (int)(i % Tc), gb = idx[i] / T, gt = idx[i] % T;
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                dense[(((size_t)gb * H + h) * T + gt) * W + w] = local[chunk * B * H * Tc * W + (((size_t)b * H + h) * Tc + t) * W + w];
    }
}

// Sizes of one local chunk ([B, Tc] batch) of each tensor, in floats.
struct CpChunkSizes {
    size_t q, kv, out, lse;
};
static CpChunkSizes cp_chunk_sizes(int B, int Tc, int nh, int nkv, int hd) {
    return {(size_t)B * Tc * nh * hd, (size_t)B * Tc * nkv * hd, (size_t)B * Tc * nh * hd, (size_t)B * nh * Tc};
}

// T must split into 2n chunks, for n = 1 too (cp_check_causal passes any T when n is 1: CP off).
static void cp_ring_check_T(int n, int T) {
    if (n < 1 || T % (2 * n) != 0) fail("causal ring attention: T %d must be a multiple of 2 x %d ranks", T, n);
}

// Causal ring forward over n ranks held by this process (local layouts above, rank after
// rank): out, lse of every rank's queries against all keys of their rows. steps < n runs only
// the ring's first steps (the test's negative control); -1: all n.
static void ring_attention_causal_forward_cpu(float* out, float* lse, const float* q, const float* k, const float* v, int n,
                                              int B, int T, int nh, int nkv, int hd, int steps = -1) {
    if (steps < 0) steps = n;
    cp_ring_check_T(n, T);
    const int Tc = T / (2 * n);
    const CpChunkSizes z = cp_chunk_sizes(B, Tc, nh, nkv, hd);
    std::vector<float> out_p(z.out), lse_p(z.lse);
    // the accumulators are the ranks' out and lse: 0 and -inf
    std::fill(out, out + 2 * n * z.out, 0.0f);
    std::fill(lse, lse + 2 * n * z.lse, -INFINITY);
    const CpGroup g = {n, 0, n};
    for (int s = 0; s < steps; s++)
        cp_causal_blocks(g, s, [&](int v_rank, int a, int u, int c, bool causal) {   // u: the rank whose K/V v_rank holds
            const CpuAttnShape cs = {B, Tc, nh, nkv, hd, causal};
            attention_forward_cpu(out_p.data(), lse_p.data(), q + (2 * v_rank + a) * z.q, k + (2 * u + c) * z.kv,
                                  v + (2 * u + c) * z.kv, cs);
            float* out_acc = out + (2 * v_rank + a) * z.out;
            float* lse_acc = lse + (2 * v_rank + a) * z.lse;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < nh; h++)
                    for (int t = 0; t < Tc; t++)
                        lse_merge_row(out_acc + out_index(cs, b, h, t), lse_acc + lse_index(cs, b, h, t),
                                      out_p.data() + out_index(cs, b, h, t), lse_p[lse_index(cs, b, h, t)], hd);
        });
}

// Causal ring backward: dq, dk, dv (local layouts of q, k, v) from dout and the merged out
// and lse the forward returned; each block's backward is the dense one on the chunk views.
static void ring_attention_causal_backward_cpu(float* dq, float* dk, float* dv, const float* dout, const float* out,
                                               const float* lse, const float* q, const float* k, const float* v, int n, int B,
                                               int T, int nh, int nkv, int hd) {
    cp_ring_check_T(n, T);
    const int Tc = T / (2 * n);
    const CpChunkSizes z = cp_chunk_sizes(B, Tc, nh, nkv, hd);
    std::fill(dq, dq + 2 * n * z.q, 0.0f);
    std::fill(dk, dk + 2 * n * z.kv, 0.0f);
    std::fill(dv, dv + 2 * n * z.kv, 0.0f);
    std::vector<float> dq_p(z.q), dk_p(z.kv), dv_p(z.kv);
    const CpGroup g = {n, 0, n};
    for (int s = 0; s < n; s++)
        cp_causal_blocks(g, s, [&](int v_rank, int a, int u, int c, bool causal) {
            const CpuAttnShape cs = {B, Tc, nh, nkv, hd, causal};
            const size_t qa = (2 * v_rank + a) * z.q, kc = (2 * u + c) * z.kv;
            const size_t oa = (2 * v_rank + a) * z.out, la = (2 * v_rank + a) * z.lse;
            attention_backward_cpu(dq_p.data(), dk_p.data(), dv_p.data(), dout + oa, out + oa, lse + la, q + qa, k + kc, v + kc,
                                   cs);
            for (size_t i = 0; i < z.q; i++) dq[qa + i] += dq_p[i];
            for (size_t i = 0; i < z.kv; i++) { dk[kc + i] += dk_p[i]; dv[kc + i] += dv_p[i]; }
        });
}

// ------------------------------------------------------------------ varlen ring (DiT)

// Rows of `width` floats (token-major tensors: q, k, v with their strides, out, dout) from
// the dense packed order into the local order of group g (cp_part_tokens), and back.
static void cp_rows_gather(float* local, const float* dense, const CpGroup& g, const std::vector<int>& lengths, int width) {
    const std::vector<int> idx = cp_part_tokens(g, lengths);
    for (size_t i = 0; i < idx.size(); i++)
        std::copy(dense + (size_t)idx[i] * width, dense + (size_t)(idx[i] + 1) * width, local + i * width);
}
static void cp_rows_scatter(float* dense, const float* local, const CpGroup& g, const std::vector<int>& lengths, int width) {
    const std::vector<int> idx = cp_part_tokens(g, lengths);
    for (size_t i = 0; i < idx.size(); i++)
        std::copy(local + i * width, local + (i + 1) * width, dense + (size_t)idx[i] * width);
}

// lse: dense [nh, N] (N tokens of all samples) into per-rank [nh, Nq_v] blocks, rank after
// rank, and back.
static void cp_varlen_lse_gather(float* local, const float* dense, const CpGroup& g, const std::vector<int>& lengths, int nh) {
    int N = 0;
    for (int L : lengths) N += L;
    const std::vector<int> idx = cp_part_tokens(g, lengths);
    size_t first = 0;  // the rank's first local token
    for (int v = g.first; v < g.first + g.local; v++) {
        const int nq = cp_part_cu(lengths, v, g.n).back();
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < nq; i++) local[first * nh + (size_t)h * nq + i] = dense[(size_t)h * N + idx[first + i]];
        first += nq;
    }
}
static void cp_varlen_lse_scatter(float* dense, const float* local, const CpGroup& g, const std::vector<int>& lengths, int nh) {
    int N = 0;
    for (int L : lengths) N += L;
    const std::vector<int> idx = cp_part_tokens(g, lengths);
    size_t first = 0;
    for (int v = g.first; v < g.first + g.local; v++) {
        const int nq = cp_part_cu(lengths, v, g.n).back();
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < nq; i++) dense[(size_t)h * N + idx[first + i]] = local[first * nh + (size_t)h * nq + i];
        first += nq;
    }
}

// The first local token of each rank of the ring (rank after rank), n+1 entries.
static std::vector<int> cp_rank_starts(const std::vector<int>& lengths, int n) {
    std::vector<int> start(n + 1, 0);
    for (int v = 0; v < n; v++) start[v + 1] = start[v] + cp_part_cu(lengths, v, n).back();
    return start;
}

// Copies rank u's K or V rows (with their stride) into a compact [Nk_u, nh*hd] buffer: the
// block a rank holds at one step of the ring.
static void cp_take_rows(std::vector<float>& dst, const float* src, int stride, int first, int count, int C) {
    dst.resize((size_t)count * C);
    for (int i = 0; i < count; i++)
        std::copy(src + (size_t)(first + i) * stride, src + (size_t)(first + i) * stride + C, dst.data() + (size_t)i * C);
}

// Varlen ring forward over n ranks held by this process: q, k, v rows in the local order
// (strides q_stride, k_stride, v_stride), out [N, nh*hd] local order, lse per-rank [nh, Nq_v].
// steps: as in the causal ring.
static void ring_attention_varlen_forward_cpu(float* out, float* lse, const float* q, const float* k, const float* v,
                                              const std::vector<int>& lengths, int n, int nh, int hd, int q_stride, int k_stride,
                                              int v_stride, int steps = -1) {
    if (steps < 0) steps = n;
    cp_check_parts(n, lengths);
    const int B = (int)lengths.size(), C = nh * hd;
    const std::vector<int> start = cp_rank_starts(lengths, n);
    std::vector<float> k_held, v_held, out_p, lse_p;
    for (int v_rank = 0; v_rank < n; v_rank++) {
        const std::vector<int> cu_q = cp_part_cu(lengths, v_rank, n);
        const int nq = cu_q.back();
        float* out_acc = out + (size_t)start[v_rank] * C;
        float* lse_acc = lse + (size_t)start[v_rank] * nh;
        std::fill(out_acc, out_acc + (size_t)nq * C, 0.0f);
        std::fill(lse_acc, lse_acc + (size_t)nq * nh, -INFINITY);
        out_p.resize((size_t)nq * C);
        lse_p.resize((size_t)nq * nh);
        for (int s = 0; s < steps; s++) {
            const int u = cp_ring_source(v_rank, s, n);
            const std::vector<int> cu_k = cp_part_cu(lengths, u, n);
            cp_take_rows(k_held, k, k_stride, start[u], cu_k.back(), C);
            cp_take_rows(v_held, v, v_stride, start[u], cu_k.back(), C);
            const CpuVarlenShape vs = {B, nh, hd, cu_q.data(), cu_k.data(), q_stride, C, C};
            attention_varlen_forward_cpu(out_p.data(), lse_p.data(), q + (size_t)start[v_rank] * q_stride, k_held.data(),
                                         v_held.data(), vs);
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < nq; i++)
                    lse_merge_row(out_acc + (size_t)i * C + h * hd, lse_acc + (size_t)h * nq + i,
                                  out_p.data() + (size_t)i * C + h * hd, lse_p[(size_t)h * nq + i], hd);
        }
    }
}

// Varlen ring backward: the nh*hd columns of dq, dk, dv (strides of q, k, v) from dout and
// the merged out, lse of the forward.
static void ring_attention_varlen_backward_cpu(float* dq, float* dk, float* dv, const float* dout, const float* out,
                                               const float* lse, const float* q, const float* k, const float* v,
                                               const std::vector<int>& lengths, int n, int nh, int hd, int q_stride,
                                               int k_stride, int v_stride) {
    cp_check_parts(n, lengths);
    const int B = (int)lengths.size(), C = nh * hd;
    const std::vector<int> start = cp_rank_starts(lengths, n);
    const int N = start[n];
    for (int i = 0; i < N; i++) {
        std::fill(dq + (size_t)i * q_stride, dq + (size_t)i * q_stride + C, 0.0f);
        std::fill(dk + (size_t)i * k_stride, dk + (size_t)i * k_stride + C, 0.0f);
        std::fill(dv + (size_t)i * v_stride, dv + (size_t)i * v_stride + C, 0.0f);
    }
    std::vector<float> k_held, v_held, dq_p, dk_p, dv_p;
    for (int v_rank = 0; v_rank < n; v_rank++) {
        const std::vector<int> cu_q = cp_part_cu(lengths, v_rank, n);
        const int nq = cu_q.back();
        const float* q_v = q + (size_t)start[v_rank] * q_stride;
        dq_p.assign((size_t)nq * q_stride, 0.0f);
        for (int s = 0; s < n; s++) {
            const int u = cp_ring_source(v_rank, s, n);
            const std::vector<int> cu_k = cp_part_cu(lengths, u, n);
            const int nk = cu_k.back();
            cp_take_rows(k_held, k, k_stride, start[u], nk, C);
            cp_take_rows(v_held, v, v_stride, start[u], nk, C);
            dk_p.resize((size_t)nk * C);
            dv_p.resize((size_t)nk * C);
            const CpuVarlenShape vs = {B, nh, hd, cu_q.data(), cu_k.data(), q_stride, C, C};
            attention_varlen_backward_cpu(dq_p.data(), dk_p.data(), dv_p.data(), dout + (size_t)start[v_rank] * C,
                                          out + (size_t)start[v_rank] * C, lse + (size_t)start[v_rank] * nh, q_v,
                                          k_held.data(), v_held.data(), vs);
            for (int i = 0; i < nq; i++)
                for (int e = 0; e < C; e++) dq[(size_t)(start[v_rank] + i) * q_stride + e] += dq_p[(size_t)i * q_stride + e];
            for (int i = 0; i < nk; i++)
                for (int e = 0; e < C; e++) {
                    dk[(size_t)(start[u] + i) * k_stride + e] += dk_p[(size_t)i * C + e];
                    dv[(size_t)(start[u] + i) * v_stride + e] += dv_p[(size_t)i * C + e];
                }
        }
    }
}
