// fp32 CPU reference of the mega.c GPT (Llama-family decoder): forward,
// backward and AdamW, written to be read, in the style of llm.c's train_gpt2.c.
// The model: docs/gpt.md and dev/DESIGN.md; parameter layout and
// RoPE frequencies: llmc/model/gpt_config.h. Checked against the PyTorch reference
// (dev/reference/gpt.py) by test/test_gpt_cpu.cpp, which includes this file
// with GPT_CPU_NO_MAIN defined.
//
// Every tensor is fp32 and every accumulation is in float, except the two
// reductions over the whole batch or model (the mean loss and the grad norm),
// which sum in double.
//
// Shapes: B batch, T sequence, C d_model, nh query heads, nkv kv heads,
// hd head_dim, qd = nh*hd, kvd = nkv*hd, QKV = qd + 2*kvd, F ffn_hidden,
// V vocab_size, Vp padded_vocab_size, BT = B*T.
//
// Usage (trains the tiny preset on data/shakespeare):
//   make dev/cpu/gpt && ./dev/cpu/gpt --steps 20
// SFT of a Hugging Face model on scripts/prepare_sft.py's shards (the loss on the answers only;
// --pack 1: several conversations a row, each attending only to itself):
//   ./dev/cpu/gpt --init-hf DIR --sft-data OUT --pack 1 --seq-len 256 --steps 100
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>   // clock_gettime in llmc/core/utils.h
#include <string>
#include <sys/stat.h>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../../llmc/core/args.h"
#include "../../llmc/model/gpt_config.h"
#include "../../llmc/formats/hf.h"
#include "../../llmc/core/rand.h"
#include "../../llmc/core/utils.h"

// A target that does not count (transformers' ignore_index): prompt tokens and padding of SFT
// rows (llmc/data/sft_data.h's SFT_IGNORE). The loss is the mean over the other targets.
#define GPT_IGNORE_INDEX (-100)

// ----------------------------------------------------------------------------
// layers: forward and backward. Backward functions ADD into the gradients of
// their inputs and parameters (+=), as in llm.c, unless stated otherwise.
// Each has the name of the GPU launcher it is the reference of (llmc/kernels/,
// checked by dev/cuda/; matmuls: llmc/core/cublas_common.h); a fused kernel is
// written as its parts, e.g. qknorm_rope_forward as qknorm_forward then
// rope_forward, fused_classifier as softmax_crossentropy_forward and _backward.

// x[b,t,:] = wte[tokens[b,t], :]
void encoder_forward(float* out, const int* tokens, const float* wte, int BT, int C) {
    #pragma omp parallel for
    for (int i = 0; i < BT; i++) memcpy(out + (size_t)i * C, wte + (size_t)tokens[i] * C, C * sizeof(float));
}

// dwte[tokens[b,t], :] += dout[b,t,:]. Serial: tokens repeat, rows would race.
void encoder_backward(float* dwte, const float* dout, const int* tokens, int BT, int C) {
    for (int i = 0; i < BT; i++) {
        float* dw = dwte + (size_t)tokens[i] * C;
        const float* d = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) dw[c] += d[c];
    }
}

// One row of RMSNorm: y = x / sqrt(mean(x^2) + eps) * w; returns rstd.
static inline float rmsnorm_row_forward(float* y, const float* x, const float* w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float rstd = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * rstd * w[i];
    return rstd;
}

// dx of one RMSNorm row (dx +=; dw is accumulated separately):
// dx_i = rstd * (w_i dy_i - x_i * rstd^2 * mean_j(w_j dy_j x_j))
static inline void rmsnorm_row_backward(float* dx, const float* dy, const float* x, const float* w, float rstd, int n) {
    float dot = 0.0f;
    for (int i = 0; i < n; i++) dot += w[i] * dy[i] * x[i];
    const float k = rstd * rstd * dot / n;
    for (int i = 0; i < n; i++) dx[i] += rstd * (w[i] * dy[i] - x[i] * k);
}

// out, inp [N,C]; w [C]; rstd [N]
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++)
        rstd[i] = rmsnorm_row_forward(out + (size_t)i * C, inp + (size_t)i * C, w, C, eps);
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int N, int C) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++)
        rmsnorm_row_backward(dinp + (size_t)i * C, dout + (size_t)i * C, inp + (size_t)i * C, w, rstd[i], C);
    // dw_c = sum over rows of dy * x * rstd; parallel over columns so that no two threads write one dw_c
    #pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float s = 0.0f;
        for (int i = 0; i < N; i++) s += dout[(size_t)i * C + c] * inp[(size_t)i * C + c] * rstd[i];
        dw[c] += s;
    }
}

// out [N,OC] = inp [N,IC] @ w[OC,IC]^T (+ bias[OC])
void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int IC, int OC) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* x = inp + (size_t)i * IC;
        float* y = out + (size_t)i * OC;
        for (int o = 0; o < OC; o++) {
            const float* wr = w + (size_t)o * IC;
            float s = bias ? bias[o] : 0.0f;
            for (int k = 0; k < IC; k++) s += x[k] * wr[k];
            y[o] = s;
        }
    }
}

// dinp += dout @ w; dw += dout^T @ inp; dbias += sum_rows dout. dinp may be null.
void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w,
                     int N, int IC, int OC) {
    if (dinp) {
        #pragma omp parallel for
        for (int i = 0; i < N; i++) {
            const float* dy = dout + (size_t)i * OC;
            float* dx = dinp + (size_t)i * IC;
            for (int o = 0; o < OC; o++) {
                const float* wr = w + (size_t)o * IC;
                const float d = dy[o];
                for (int k = 0; k < IC; k++) dx[k] += d * wr[k];
            }
        }
    }
    #pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        float* dwr = dw + (size_t)o * IC;
        float db = 0.0f;
        for (int i = 0; i < N; i++) {
            const float* x = inp + (size_t)i * IC;
            const float d = dout[(size_t)i * OC + o];
            db += d;
            for (int k = 0; k < IC; k++) dwr[k] += d * x[k];
        }
        if (dbias) dbias[o] += db;
    }
}

// QK-norm (Qwen3): RMSNorm over each head's hd values of q (weights wq [hd],
// shared by all q heads) and of k (wk [hd]). out, inp [BT,QKV]; the v part is
// copied. rstd [BT, nh+nkv]. Without qk_norm the caller copies inp instead.
void qknorm_forward(float* out, float* rstd, const float* inp, const float* wq, const float* wk,
                    int BT, int nh, int nkv, int hd, float eps) {
    const int QKV = (nh + 2 * nkv) * hd, nqk = nh + nkv;
    #pragma omp parallel for
    for (int i = 0; i < BT; i++) {
        const float* x = inp + (size_t)i * QKV;
        float* y = out + (size_t)i * QKV;
        for (int j = 0; j < nqk; j++)   // heads j < nh are q heads, then the k heads (contiguous)
            rstd[(size_t)i * nqk + j] = rmsnorm_row_forward(y + j * hd, x + j * hd, j < nh ? wq : wk, hd, eps);
        memcpy(y + nqk * hd, x + nqk * hd, (size_t)nkv * hd * sizeof(float));   // v
    }
}

// dinp = (not +=) the gradient through the norm; dwq, dwk +=.
void qknorm_backward(float* dinp, float* dwq, float* dwk, const float* dout, const float* inp, const float* wq,
                     const float* wk, const float* rstd, int BT, int nh, int nkv, int hd) {
    const int QKV = (nh + 2 * nkv) * hd, nqk = nh + nkv;
    #pragma omp parallel for
    for (int i = 0; i < BT; i++) {
        float* dx = dinp + (size_t)i * QKV;
        const float* dy = dout + (size_t)i * QKV;
        memset(dx, 0, (size_t)nqk * hd * sizeof(float));
        for (int j = 0; j < nqk; j++)
            rmsnorm_row_backward(dx + j * hd, dy + j * hd, inp + (size_t)i * QKV + j * hd, j < nh ? wq : wk,
                                 rstd[(size_t)i * nqk + j], hd);
        memcpy(dx + nqk * hd, dy + nqk * hd, (size_t)nkv * hd * sizeof(float));   // v
    }
    #pragma omp parallel for
    for (int c = 0; c < hd; c++) {
        float sq = 0.0f, sk = 0.0f;
        for (int i = 0; i < BT; i++)
            for (int j = 0; j < nqk; j++) {
                const size_t e = (size_t)i * QKV + j * hd + c;
                const float s = dout[e] * inp[e] * rstd[(size_t)i * nqk + j];
                if (j < nh) sq += s; else sk += s;
            }
        dwq[c] += sq;
        dwk[c] += sk;
    }
}

// RoPE, in place on the q and k heads of qkv [B,T,QKV] (half rotation at the token's
// position pos[b,t]: t, or its place in its document when several are packed in a row):
// for i < hd/2: x'[i] = x[i] cos - x[i+hd/2] sin, x'[i+hd/2] = x[i+hd/2] cos + x[i] sin.
// cos, sin [T, hd/2] (positions are < T).
void rope_forward(float* qkv, const float* cosb, const float* sinb, const int* pos, int B, int T, int nh, int nkv, int hd) {
    const int QKV = (nh + 2 * nkv) * hd, half = hd / 2;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float* cs = cosb + (size_t)pos[b * T + t] * half;
            const float* sn = sinb + (size_t)pos[b * T + t] * half;
            for (int j = 0; j < nh + nkv; j++) {
                float* x = qkv + ((size_t)b * T + t) * QKV + j * hd;
                for (int i = 0; i < half; i++) {
                    const float x1 = x[i], x2 = x[i + half];
                    x[i] = x1 * cs[i] - x2 * sn[i];
                    x[i + half] = x2 * cs[i] + x1 * sn[i];
                }
            }
        }
}

// The transpose of the rotation, in place on dqkv (q and k heads).
void rope_backward(float* dqkv, const float* cosb, const float* sinb, const int* pos, int B, int T, int nh, int nkv, int hd) {
    const int QKV = (nh + 2 * nkv) * hd, half = hd / 2;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float* cs = cosb + (size_t)pos[b * T + t] * half;
            const float* sn = sinb + (size_t)pos[b * T + t] * half;
            for (int j = 0; j < nh + nkv; j++) {
                float* d = dqkv + ((size_t)b * T + t) * QKV + j * hd;
                for (int i = 0; i < half; i++) {
                    const float d1 = d[i], d2 = d[i + half];
                    d[i] = d1 * cs[i] + d2 * sn[i];
                    d[i + half] = d2 * cs[i] - d1 * sn[i];
                }
            }
        }
}

// Causal attention with GQA, inside each document of a row: query t attends to keys
// seg_start[b,t]..t (seg_start: where t's document starts in the row; 0 for one
// document a row). qkv [B,T,QKV] (after qk-norm and RoPE); att [B,nh,T,T] softmax
// probabilities (zero outside the keys attended to); out [B,T,qd], heads concatenated.
// Query head h reads kv head h/(nh/nkv) straight from qkv: K/V are never copied per query head.
void attention_forward(float* out, float* att, const float* qkv, const int* seg_start, int B, int T, int nh, int nkv, int hd) {
    const int QKV = (nh + 2 * nkv) * hd, qd = nh * hd, group = nh / nkv;
    const float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                const int kh = h / group, t0 = seg_start[b * T + t];
                const float* q = qkv + ((size_t)b * T + t) * QKV + h * hd;
                float* a = att + (((size_t)b * nh + h) * T + t) * T;
                // scores and their max
                float maxv = -INFINITY;
                for (int t2 = t0; t2 <= t; t2++) {
                    const float* k = qkv + ((size_t)b * T + t2) * QKV + qd + kh * hd;
                    float s = 0.0f;
                    for (int i = 0; i < hd; i++) s += q[i] * k[i];
                    s *= scale;
                    a[t2] = s;
                    if (s > maxv) maxv = s;
                }
                // softmax over t0 <= t2 <= t
                float sum = 0.0f;
                for (int t2 = t0; t2 <= t; t2++) { a[t2] = expf(a[t2] - maxv); sum += a[t2]; }
                const float inv = 1.0f / sum;
                for (int t2 = 0; t2 < T; t2++) a[t2] = t2 >= t0 && t2 <= t ? a[t2] * inv : 0.0f;
                // weighted sum of values
                float* y = out + ((size_t)b * T + t) * qd + h * hd;
                for (int i = 0; i < hd; i++) y[i] = 0.0f;
                for (int t2 = t0; t2 <= t; t2++) {
                    const float* v = qkv + ((size_t)b * T + t2) * QKV + qd + (nkv + kh) * hd;
                    for (int i = 0; i < hd; i++) y[i] += a[t2] * v[i];
                }
            }
}

// dqkv += gradient of the attention w.r.t. q, k, v. Each thread owns one
// (batch, kv head): it writes dK/dV of that kv head and dQ of its query heads.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, const int* seg_start,
                        int B, int T, int nh, int nkv, int hd) {
    const int QKV = (nh + 2 * nkv) * hd, qd = nh * hd, group = nh / nkv;
    const float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < nkv; kh++) {
            std::vector<float> datt(T), dpre(T);
            for (int h = kh * group; h < (kh + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    const int t0 = seg_start[b * T + t];
                    const float* a = att + (((size_t)b * nh + h) * T + t) * T;
                    const float* dy = dout + ((size_t)b * T + t) * qd + h * hd;
                    const float* q = qkv + ((size_t)b * T + t) * QKV + h * hd;
                    float* dq = dqkv + ((size_t)b * T + t) * QKV + h * hd;
                    // through y = sum att * v
                    for (int t2 = t0; t2 <= t; t2++) {
                        const float* v = qkv + ((size_t)b * T + t2) * QKV + qd + (nkv + kh) * hd;
                        float* dv = dqkv + ((size_t)b * T + t2) * QKV + qd + (nkv + kh) * hd;
                        float s = 0.0f;
                        for (int i = 0; i < hd; i++) { s += dy[i] * v[i]; dv[i] += a[t2] * dy[i]; }
                        datt[t2] = s;
                    }
                    // through the softmax: dpre = att * (datt - sum(att * datt))
                    float dot = 0.0f;
                    for (int t2 = t0; t2 <= t; t2++) dot += a[t2] * datt[t2];
                    for (int t2 = t0; t2 <= t; t2++) dpre[t2] = a[t2] * (datt[t2] - dot) * scale;
                    // through the scores q . k
                    for (int t2 = t0; t2 <= t; t2++) {
                        const float* k = qkv + ((size_t)b * T + t2) * QKV + qd + kh * hd;
                        float* dk = dqkv + ((size_t)b * T + t2) * QKV + qd + kh * hd;
                        for (int i = 0; i < hd; i++) { dq[i] += dpre[t2] * k[i]; dk[i] += dpre[t2] * q[i]; }
                    }
                }
        }
}

// out = inp1 + inp2
void residual_forward(float* out, const float* inp1, const float* inp2, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = inp1[i] + inp2[i];
}

// SwiGLU: gu [N,2F] = [gate | up]; out [N,F] = silu(gate) * up.
void swiglu_forward(float* out, const float* gu, int N, int F) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            const float g = gu[(size_t)n * 2 * F + i], u = gu[(size_t)n * 2 * F + F + i];
            out[(size_t)n * F + i] = g / (1.0f + expf(-g)) * u;
        }
}

// dgu = (not +=) gradient w.r.t. [gate | up].
// d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g).
void swiglu_backward(float* dgu, const float* dout, const float* gu, int N, int F) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            const float g = gu[(size_t)n * 2 * F + i], u = gu[(size_t)n * 2 * F + F + i];
            const float s = 1.0f / (1.0f + expf(-g)), d = dout[(size_t)n * F + i];
            dgu[(size_t)n * 2 * F + i] = d * u * s * (1.0f + g * (1.0f - s));
            dgu[(size_t)n * 2 * F + F + i] = d * g * s;
        }
}

// logits [N,Vp] = inp [N,C] @ head[Vp,C]^T. All Vp columns are computed (the
// padded rows of head are zero); the softmax below ignores columns >= V.
void classifier_forward(float* logits, const float* inp, const float* head, int N, int C, int Vp) {
    matmul_forward(logits, inp, head, nullptr, N, C, Vp);
}

void classifier_backward(float* dinp, float* dhead, const float* dlogits, const float* inp, const float* head,
                         int N, int C, int Vp) {
    matmul_backward(dinp, dhead, nullptr, dlogits, inp, head, N, C, Vp);
}

// Softmax over the first V of Vp columns (the padded ones never win); probs
// [N,Vp] has zeros in the padded columns. losses[n] = -log probs[n, targets[n]]
// when targets is not null, 0 where targets[n] is GPT_IGNORE_INDEX.
void softmax_crossentropy_forward(float* probs, float* losses, const float* logits, const int* targets,
                                  int N, int V, int Vp) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* z = logits + (size_t)n * Vp;
        float* p = probs + (size_t)n * Vp;
        float maxv = -INFINITY;
        for (int i = 0; i < V; i++) if (z[i] > maxv) maxv = z[i];
        float sum = 0.0f;
        for (int i = 0; i < V; i++) { p[i] = expf(z[i] - maxv); sum += p[i]; }
        if (targets) losses[n] = targets[n] == GPT_IGNORE_INDEX ? 0.0f : logf(sum) + maxv - z[targets[n]];   // -log softmax, without log(p) underflow
        const float inv = 1.0f / sum;
        for (int i = 0; i < V; i++) p[i] *= inv;
        for (int i = V; i < Vp; i++) p[i] = 0.0f;
    }
}

// dlogits = (not +=) dloss * (probs - onehot(target)); zero in the padded columns,
// and in the rows whose target is GPT_IGNORE_INDEX.
void softmax_crossentropy_backward(float* dlogits, const float* probs, const int* targets, int N, int Vp, float dloss) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* p = probs + (size_t)n * Vp;
        float* d = dlogits + (size_t)n * Vp;
        const bool ignored = targets[n] == GPT_IGNORE_INDEX;
        for (int i = 0; i < Vp; i++) d[i] = ignored ? 0.0f : p[i] * dloss;
        if (!ignored) d[targets[n]] -= dloss;
    }
}

// ----------------------------------------------------------------------------
// the model

struct GPTCpu {
    GPTConfig cfg;
    int B = 0, T = 0;
    std::vector<ParamTensor> layout;
    size_t num_params = 0;
    std::vector<float> params, grads, m, v;   // one contiguous buffer each, tensors at layout offsets
    std::vector<float> rope_cos, rope_sin;    // [T, hd/2]

    // activations of the last forward (per layer l: [l * size])
    std::vector<float> res;        // [L+1, BT, C]  residual stream entering layer l (res[L]: into the final norm)
    std::vector<float> res_mid;    // [L, BT, C]    after the attention branch
    std::vector<float> ln1, ln1_rstd;   // [L, BT, C], [L, BT]
    std::vector<float> qkv;        // [L, BT, QKV]  h @ wqkv^T + bqkv
    std::vector<float> qk_rstd;    // [L, BT, nh+nkv] (qk_norm)
    std::vector<float> qkvr;       // [L, BT, QKV]  after qk-norm and RoPE (what attention reads)
    std::vector<float> att;        // [L, B, nh, T, T]
    std::vector<float> atty;       // [L, BT, qd]
    std::vector<float> attproj;    // [BT, C] scratch for y @ wo^T and for the MLP output
    std::vector<float> ln2, ln2_rstd;   // [L, BT, C], [L, BT]
    std::vector<float> gu;         // [L, BT, 2F]
    std::vector<float> swi;        // [L, BT, F]
    std::vector<float> lnf, lnf_rstd;   // [BT, C], [BT]
    std::vector<float> logits;     // [BT, Vp]
    std::vector<float> probs;      // [BT, Vp]
    std::vector<float> losses;     // [BT]
    std::vector<int> tokens, targets;   // of the last forward
    std::vector<int> pos, seg_start;    // [BT] of the last forward: RoPE position, start of the token's document in its row
    int n_targets = 0;                  // targets of the last forward that count
    bool have_targets = false;

    // gradient scratch, one layer at a time
    std::vector<float> dres, dln, dqkvr, dqkv, datty, dgu, dswi, dlogits;
};

static inline float* gpt_cpu_param(GPTCpu* g, const char* name) {
    const ParamTensor* p = gpt_find_param(g->layout, name);
    return p ? g->params.data() + p->offset : nullptr;
}
static inline float* gpt_cpu_grad(GPTCpu* g, const char* name) {
    const ParamTensor* p = gpt_find_param(g->layout, name);
    return p ? g->grads.data() + p->offset : nullptr;
}

// Allocates everything for batches of B sequences of T tokens; params zero.
void gpt_cpu_build(GPTCpu* g, const GPTConfig& cfg, int B, int T) {
    const GPTConfig& c = cfg;
    if (B <= 0 || T <= 0) fail("gpt_cpu_build: batch %d x %d must be positive", B, T);
    if (T > c.max_seq_len) fail("gpt_cpu_build: sequence length %d exceeds max_seq_len %d", T, c.max_seq_len);
    g->cfg = c;
    g->B = B;
    g->T = T;
    g->layout = gpt_param_layout(c);
    g->num_params = layout_numel(g->layout);
    g->params.assign(g->num_params, 0.0f);
    g->grads.assign(g->num_params, 0.0f);
    g->m.assign(g->num_params, 0.0f);
    g->v.assign(g->num_params, 0.0f);

    const int half = c.head_dim / 2;
    std::vector<double> inv_freq = gpt_rope_inv_freq(c);
    g->rope_cos.resize((size_t)T * half);
    g->rope_sin.resize((size_t)T * half);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            const double ang = t * inv_freq[i];
            g->rope_cos[(size_t)t * half + i] = (float)cos(ang);
            g->rope_sin[(size_t)t * half + i] = (float)sin(ang);
        }

    const size_t L = c.n_layer, BT = (size_t)B * T, C = c.d_model, hd = c.head_dim, F = c.ffn_hidden;
    const size_t nh = c.n_head, nkv = c.n_kv_head, qd = nh * hd, QKV = qd + 2 * nkv * hd, Vp = c.padded_vocab_size;
    g->res.assign((L + 1) * BT * C, 0.0f);
    g->res_mid.assign(L * BT * C, 0.0f);
    g->ln1.assign(L * BT * C, 0.0f);
    g->ln1_rstd.assign(L * BT, 0.0f);
    g->qkv.assign(L * BT * QKV, 0.0f);
    g->qk_rstd.assign(c.qk_norm ? L * BT * (nh + nkv) : 0, 0.0f);
    g->qkvr.assign(L * BT * QKV, 0.0f);
    g->att.assign(L * B * nh * T * T, 0.0f);
    g->atty.assign(L * BT * qd, 0.0f);
    g->attproj.assign(BT * C, 0.0f);
    g->ln2.assign(L * BT * C, 0.0f);
    g->ln2_rstd.assign(L * BT, 0.0f);
    g->gu.assign(L * BT * 2 * F, 0.0f);
    g->swi.assign(L * BT * F, 0.0f);
    g->lnf.assign(BT * C, 0.0f);
    g->lnf_rstd.assign(BT, 0.0f);
    g->logits.assign(BT * Vp, 0.0f);
    g->probs.assign(BT * Vp, 0.0f);
    g->losses.assign(BT, 0.0f);
    g->tokens.assign(BT, 0);
    g->targets.assign(BT, 0);
    g->pos.assign(BT, 0);
    g->seg_start.assign(BT, 0);
    g->dres.assign(BT * C, 0.0f);
    g->dln.assign(BT * C, 0.0f);
    g->dqkvr.assign(BT * QKV, 0.0f);
    g->dqkv.assign(BT * QKV, 0.0f);
    g->datty.assign(BT * qd, 0.0f);
    g->dgu.assign(BT * 2 * F, 0.0f);
    g->dswi.assign(BT * F, 0.0f);
    g->dlogits.assign(BT * Vp, 0.0f);
}

// The init of train runs: matrices N(0, 0.02) with wo and wdown scaled by
// 1/sqrt(2L), norm weights 1, biases 0, padded vocabulary rows 0.
void gpt_cpu_init_params(GPTCpu* g, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    const GPTConfig& c = g->cfg;
    for (const ParamTensor& p : g->layout) {
        float* w = g->params.data() + p.offset;
        const std::string& n = p.name;
        if (n == "attn_norm" || n == "mlp_norm" || n == "final_norm" || n == "q_norm" || n == "k_norm") {
            for (size_t k = 0; k < p.numel; k++) w[k] = 1.0f;
        } else if (n == "bqkv") {
            for (size_t k = 0; k < p.numel; k++) w[k] = 0.0f;
        } else {
            float std = 0.02f;
            if (n == "wo" || n == "wdown") std /= sqrtf(2.0f * c.n_layer);
            rng_fill_normal(w, p.numel, std, &rng);
            if (n == "wte" || n == "lm_head")
                for (size_t k = (size_t)c.vocab_size * c.d_model; k < p.numel; k++) w[k] = 0.0f;
        }
    }
}

// Builds g for batches of B x T from a Hugging Face model directory: config.json and the
// safetensors weights, mapped to this layout by llmc/formats/hf.h (shared with train_gpt.cu).
void gpt_cpu_load_hf(GPTCpu* g, const std::string& dir, int B, int T, HFInfo* info_out = nullptr) {
    HFInfo info;
    const GPTConfig cfg = hf_load_config(dir, &info);
    if (T > cfg.max_seq_len) fail("%s: max_position_embeddings %d is shorter than the sequence length %d", info.config_path.c_str(), cfg.max_seq_len, T);
    hf_check_seq_len(info, T);
    gpt_cpu_build(g, cfg, B, T);
    g->params = hf_load_weights(dir, cfg, g->layout, &info);
    if (info_out) *info_out = info;
}

// Forward over tokens [B,T]. With targets [B,T] it also computes the
// per-position losses and returns their mean over the targets that count (not
// GPT_IGNORE_INDEX; 0 when none does), which the backward differentiates;
// without, it returns 0 and only the logits (and probs) are valid.
// pos [B,T] (null: t): several documents packed in a row, each starting where pos
// is 0 and counting up by one (llmc/data/sft_data.h's rows): RoPE uses pos, and
// attention stays inside each document.
float gpt_cpu_forward(GPTCpu* g, const int* tokens, const int* targets, const int* pos = nullptr) {
    const GPTConfig& c = g->cfg;
    const int B = g->B, T = g->T, BT = B * T, C = c.d_model, L = c.n_layer, hd = c.head_dim, F = c.ffn_hidden;
    const int nh = c.n_head, nkv = c.n_kv_head, qd = nh * hd, QKV = qd + 2 * nkv * hd, V = c.vocab_size,
              Vp = c.padded_vocab_size;
    for (int i = 0; i < BT; i++) {
        if (tokens[i] < 0 || tokens[i] >= V) fail("gpt_cpu_forward: token %d at %d outside [0, %d)", tokens[i], i, V);
        if (targets && targets[i] != GPT_IGNORE_INDEX && (targets[i] < 0 || targets[i] >= V))
            fail("gpt_cpu_forward: target %d at %d outside [0, %d) (and not the ignore index %d)", targets[i], i, V, GPT_IGNORE_INDEX);
        const int t = i % T;
        if (pos && !(pos[i] == 0 || (t > 0 && pos[i] == pos[i - 1] + 1)))
            fail("gpt_cpu_forward: position %d at %d: expected 0 (a document starts) or %d (the previous + 1)", pos[i], i, t > 0 ? pos[i - 1] + 1 : 0);
        g->pos[i] = pos ? pos[i] : t;
        g->seg_start[i] = i % T - g->pos[i];
    }
    memcpy(g->tokens.data(), tokens, BT * sizeof(int));
    if (targets) memcpy(g->targets.data(), targets, BT * sizeof(int));
    g->have_targets = targets != nullptr;

    const float* wte = gpt_cpu_param(g, "wte");
    const float* head = c.tie_embeddings ? wte : gpt_cpu_param(g, "lm_head");
    encoder_forward(g->res.data(), tokens, wte, BT, C);
    for (int l = 0; l < L; l++) {
        const float* attn_norm = gpt_cpu_param(g, "attn_norm") + (size_t)l * C;
        const float* wqkv = gpt_cpu_param(g, "wqkv") + (size_t)l * QKV * C;
        const float* bqkv = c.qkv_bias ? gpt_cpu_param(g, "bqkv") + (size_t)l * QKV : nullptr;
        const float* wo = gpt_cpu_param(g, "wo") + (size_t)l * C * qd;
        const float* mlp_norm = gpt_cpu_param(g, "mlp_norm") + (size_t)l * C;
        const float* wgateup = gpt_cpu_param(g, "wgateup") + (size_t)l * 2 * F * C;
        const float* wdown = gpt_cpu_param(g, "wdown") + (size_t)l * C * F;

        const float* x = g->res.data() + (size_t)l * BT * C;
        float* ln1 = g->ln1.data() + (size_t)l * BT * C;
        float* ln1_rstd = g->ln1_rstd.data() + (size_t)l * BT;
        float* qkv = g->qkv.data() + (size_t)l * BT * QKV;
        float* qkvr = g->qkvr.data() + (size_t)l * BT * QKV;
        float* att = g->att.data() + (size_t)l * B * nh * T * T;
        float* atty = g->atty.data() + (size_t)l * BT * qd;
        float* xmid = g->res_mid.data() + (size_t)l * BT * C;
        float* ln2 = g->ln2.data() + (size_t)l * BT * C;
        float* ln2_rstd = g->ln2_rstd.data() + (size_t)l * BT;
        float* gu = g->gu.data() + (size_t)l * BT * 2 * F;
        float* swi = g->swi.data() + (size_t)l * BT * F;
        float* xout = g->res.data() + (size_t)(l + 1) * BT * C;

        rmsnorm_forward(ln1, ln1_rstd, x, attn_norm, BT, C, c.norm_eps);
        matmul_forward(qkv, ln1, wqkv, bqkv, BT, C, QKV);
        if (c.qk_norm) {
            const float* q_norm = gpt_cpu_param(g, "q_norm") + (size_t)l * hd;
            const float* k_norm = gpt_cpu_param(g, "k_norm") + (size_t)l * hd;
            qknorm_forward(qkvr, g->qk_rstd.data() + (size_t)l * BT * (nh + nkv), qkv, q_norm, k_norm, BT, nh, nkv, hd,
                           c.norm_eps);
        } else {
            memcpy(qkvr, qkv, (size_t)BT * QKV * sizeof(float));
        }
        rope_forward(qkvr, g->rope_cos.data(), g->rope_sin.data(), g->pos.data(), B, T, nh, nkv, hd);
        attention_forward(atty, att, qkvr, g->seg_start.data(), B, T, nh, nkv, hd);
        matmul_forward(g->attproj.data(), atty, wo, nullptr, BT, qd, C);
        residual_forward(xmid, x, g->attproj.data(), (size_t)BT * C);
        rmsnorm_forward(ln2, ln2_rstd, xmid, mlp_norm, BT, C, c.norm_eps);
        matmul_forward(gu, ln2, wgateup, nullptr, BT, C, 2 * F);
        swiglu_forward(swi, gu, BT, F);
        matmul_forward(g->attproj.data(), swi, wdown, nullptr, BT, F, C);
        residual_forward(xout, xmid, g->attproj.data(), (size_t)BT * C);
    }
    rmsnorm_forward(g->lnf.data(), g->lnf_rstd.data(), g->res.data() + (size_t)L * BT * C,
                    gpt_cpu_param(g, "final_norm"), BT, C, c.norm_eps);
    classifier_forward(g->logits.data(), g->lnf.data(), head, BT, C, Vp);
    softmax_crossentropy_forward(g->probs.data(), g->losses.data(), g->logits.data(), targets, BT, V, Vp);
    if (!targets) return 0.0f;
    double sum = 0.0;   // mean over the targets that count, in double
    g->n_targets = 0;
    for (int i = 0; i < BT; i++) {
        sum += g->losses[i];
        g->n_targets += targets[i] != GPT_IGNORE_INDEX;
    }
    return g->n_targets ? (float)(sum / g->n_targets) : 0.0f;
}

void gpt_cpu_zero_grad(GPTCpu* g) { std::fill(g->grads.begin(), g->grads.end(), 0.0f); }

// Adds the gradient of the mean loss of the last forward (which had targets)
// to g->grads.
void gpt_cpu_backward(GPTCpu* g) {
    if (!g->have_targets) fail("gpt_cpu_backward: the last forward had no targets");
    const GPTConfig& c = g->cfg;
    const int B = g->B, T = g->T, BT = B * T, C = c.d_model, L = c.n_layer, hd = c.head_dim, F = c.ffn_hidden;
    const int nh = c.n_head, nkv = c.n_kv_head, qd = nh * hd, QKV = qd + 2 * nkv * hd, Vp = c.padded_vocab_size;
    const float* wte = gpt_cpu_param(g, "wte");
    const float* head = c.tie_embeddings ? wte : gpt_cpu_param(g, "lm_head");
    float* dwte = gpt_cpu_grad(g, "wte");
    float* dhead = c.tie_embeddings ? dwte : gpt_cpu_grad(g, "lm_head");
    auto zero = [](std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); };

    // loss = mean over the n_targets that count: each has weight 1/n_targets, the others 0
    softmax_crossentropy_backward(g->dlogits.data(), g->probs.data(), g->targets.data(), BT, Vp, g->n_targets ? 1.0f / g->n_targets : 0.0f);
    zero(g->dln);
    classifier_backward(g->dln.data(), dhead, g->dlogits.data(), g->lnf.data(), head, BT, C, Vp);
    zero(g->dres);   // dres: gradient of the residual stream, carried down through the layers
    rmsnorm_backward(g->dres.data(), gpt_cpu_grad(g, "final_norm"), g->dln.data(), g->res.data() + (size_t)L * BT * C,
                     gpt_cpu_param(g, "final_norm"), g->lnf_rstd.data(), BT, C);

    for (int l = L - 1; l >= 0; l--) {
        const float* attn_norm = gpt_cpu_param(g, "attn_norm") + (size_t)l * C;
        const float* wqkv = gpt_cpu_param(g, "wqkv") + (size_t)l * QKV * C;
        const float* wo = gpt_cpu_param(g, "wo") + (size_t)l * C * qd;
        const float* mlp_norm = gpt_cpu_param(g, "mlp_norm") + (size_t)l * C;
        const float* wgateup = gpt_cpu_param(g, "wgateup") + (size_t)l * 2 * F * C;
        const float* wdown = gpt_cpu_param(g, "wdown") + (size_t)l * C * F;
        float* dattn_norm = gpt_cpu_grad(g, "attn_norm") + (size_t)l * C;
        float* dwqkv = gpt_cpu_grad(g, "wqkv") + (size_t)l * QKV * C;
        float* dbqkv = c.qkv_bias ? gpt_cpu_grad(g, "bqkv") + (size_t)l * QKV : nullptr;
        float* dwo = gpt_cpu_grad(g, "wo") + (size_t)l * C * qd;
        float* dmlp_norm = gpt_cpu_grad(g, "mlp_norm") + (size_t)l * C;
        float* dwgateup = gpt_cpu_grad(g, "wgateup") + (size_t)l * 2 * F * C;
        float* dwdown = gpt_cpu_grad(g, "wdown") + (size_t)l * C * F;

        const float* x = g->res.data() + (size_t)l * BT * C;
        const float* ln1 = g->ln1.data() + (size_t)l * BT * C;
        const float* ln1_rstd = g->ln1_rstd.data() + (size_t)l * BT;
        const float* qkv = g->qkv.data() + (size_t)l * BT * QKV;
        const float* qkvr = g->qkvr.data() + (size_t)l * BT * QKV;
        const float* att = g->att.data() + (size_t)l * B * nh * T * T;
        const float* atty = g->atty.data() + (size_t)l * BT * qd;
        const float* xmid = g->res_mid.data() + (size_t)l * BT * C;
        const float* ln2 = g->ln2.data() + (size_t)l * BT * C;
        const float* ln2_rstd = g->ln2_rstd.data() + (size_t)l * BT;
        const float* gu = g->gu.data() + (size_t)l * BT * 2 * F;
        const float* swi = g->swi.data() + (size_t)l * BT * F;

        // MLP branch: xout = xmid + swiglu(ln2 @ wgateup^T) @ wdown^T; dres = d xout
        zero(g->dswi);
        matmul_backward(g->dswi.data(), dwdown, nullptr, g->dres.data(), swi, wdown, BT, F, C);
        swiglu_backward(g->dgu.data(), g->dswi.data(), gu, BT, F);
        zero(g->dln);
        matmul_backward(g->dln.data(), dwgateup, nullptr, g->dgu.data(), ln2, wgateup, BT, C, 2 * F);
        rmsnorm_backward(g->dres.data(), dmlp_norm, g->dln.data(), xmid, mlp_norm, ln2_rstd, BT, C);
        // now dres = d xmid. Attention branch: xmid = x + attention(...) @ wo^T
        zero(g->datty);
        matmul_backward(g->datty.data(), dwo, nullptr, g->dres.data(), atty, wo, BT, qd, C);
        zero(g->dqkvr);
        attention_backward(g->dqkvr.data(), g->datty.data(), qkvr, att, g->seg_start.data(), B, T, nh, nkv, hd);
        rope_backward(g->dqkvr.data(), g->rope_cos.data(), g->rope_sin.data(), g->pos.data(), B, T, nh, nkv, hd);
        const float* dqkv = g->dqkvr.data();
        if (c.qk_norm) {
            qknorm_backward(g->dqkv.data(), gpt_cpu_grad(g, "q_norm") + (size_t)l * hd,
                            gpt_cpu_grad(g, "k_norm") + (size_t)l * hd, g->dqkvr.data(), qkv,
                            gpt_cpu_param(g, "q_norm") + (size_t)l * hd, gpt_cpu_param(g, "k_norm") + (size_t)l * hd,
                            g->qk_rstd.data() + (size_t)l * BT * (nh + nkv), BT, nh, nkv, hd);
            dqkv = g->dqkv.data();
        }
        zero(g->dln);
        matmul_backward(g->dln.data(), dwqkv, dbqkv, dqkv, ln1, wqkv, BT, C, QKV);
        rmsnorm_backward(g->dres.data(), dattn_norm, g->dln.data(), x, attn_norm, ln1_rstd, BT, C);
        // now dres = d x, the gradient entering layer l
    }
    encoder_backward(dwte, g->dres.data(), g->tokens.data(), BT, C);
}

// sqrt(sum of all grad^2), summed in double.
float gpt_cpu_grad_norm(const GPTCpu* g) {
    double s = 0.0;
    #pragma omp parallel for reduction(+ : s)
    for (size_t i = 0; i < g->num_params; i++) s += (double)g->grads[i] * g->grads[i];
    return (float)sqrt(s);
}

// Global-norm clipping then AdamW (torch semantics), step t >= 1. clip <= 0
// turns clipping off. Returns the grad norm before clipping.
float gpt_cpu_update(GPTCpu* g, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_clip,
                     int t) {
    const float norm = gpt_cpu_grad_norm(g);
    float scale = 1.0f;
    if (grad_clip > 0.0f) scale = std::min(1.0f, grad_clip / (norm + 1e-6f));   // torch clip_grad_norm_
    const float bc1 = (float)(1.0 - pow((double)beta1, t)), bc2 = (float)(1.0 - pow((double)beta2, t));
    for (const ParamTensor& p : g->layout) {
        float* w = g->params.data() + p.offset;
        const float* gr = g->grads.data() + p.offset;
        float* m = g->m.data() + p.offset;
        float* v = g->v.data() + p.offset;
        const float decay = p.decay ? lr * weight_decay : 0.0f;
        #pragma omp parallel for
        for (size_t k = 0; k < p.numel; k++) {
            const float gk = gr[k] * scale;
            w[k] -= decay * w[k];
            m[k] = beta1 * m[k] + (1.0f - beta1) * gk;
            v[k] = beta2 * v[k] + (1.0f - beta2) * gk * gk;
            w[k] -= lr * (m[k] / bc1) / (sqrtf(v[k] / bc2) + eps);
        }
    }
    return norm;
}

#ifndef GPT_CPU_NO_MAIN
// ----------------------------------------------------------------------------
// training the tiny preset on text data

#include "../../llmc/data/dataloader.h"
#include "../../llmc/data/sft_data.h"
#include "../../llmc/data/dataset.h"
#include "../../llmc/formats/tokenizer.h"
#include "../../llmc/formats/hf_tokenizer.h"

// Mean loss over up to n_batches batches of a loader (from its start).
static float eval_loss(GPTCpu* g, DataLoader* dl, int n_batches) {
    dataloader_reset(dl);
    double s = 0.0;
    for (int i = 0; i < n_batches; i++) {
        dataloader_next_batch(dl);
        s += gpt_cpu_forward(g, dl->inputs, dl->targets);
    }
    return (float)(s / n_batches);
}

// SFT: the mean loss over the targets that count in up to n_batches batches (from the start):
// every counted target weighs the same, whichever batch it is in.
static float eval_loss_sft(GPTCpu* g, SftLoader* sl, int n_batches) {
    sft_reset(sl);
    double s = 0.0;
    long long n = 0;
    for (int i = 0; i < n_batches; i++) {
        sft_next_batch(sl);
        s += (double)gpt_cpu_forward(g, sl->inputs.data(), sl->targets.data(), sl->positions.data()) * g->n_targets;
        n += g->n_targets;
    }
    return n ? (float)(s / n) : 0.0f;
}

// Samples n tokens after the start token (end-of-text, or a Hugging Face model's
// bos); returns them without it. The window (the last T tokens) goes into row 0
// of the batch, the whole batch is run, and the logits at the window's last
// position give the next token (temperature 0: greedy).
static std::vector<int> sample(GPTCpu* g, int start, int n, float temperature, Rng* rng) {
    const int T = g->T, V = g->cfg.vocab_size, Vp = g->cfg.padded_vocab_size;
    std::vector<int> seq = {start};
    std::vector<int> buf((size_t)g->B * T, start);
    for (int k = 0; k < n; k++) {
        const int len = std::min((int)seq.size(), T);
        std::copy(seq.end() - len, seq.end(), buf.begin());
        gpt_cpu_forward(g, buf.data(), nullptr);
        const float* z = g->logits.data() + (size_t)(len - 1) * Vp;
        int next = 0;
        if (temperature <= 0.0f) {
            for (int i = 1; i < V; i++) if (z[i] > z[next]) next = i;
        } else {
            float maxv = -INFINITY;
            for (int i = 0; i < V; i++) maxv = std::max(maxv, z[i]);
            std::vector<double> p(V);
            double sum = 0.0;
            for (int i = 0; i < V; i++) { p[i] = exp((z[i] - maxv) / temperature); sum += p[i]; }
            const double r = rng_uniform(rng) * sum;
            double acc = 0.0;
            next = V - 1;
            for (int i = 0; i < V; i++) { acc += p[i]; if (r < acc) { next = i; break; } }
        }
        seq.push_back(next);
    }
    return std::vector<int>(seq.begin() + 1, seq.end());
}

int main(int argc, char** argv) {
    // progress lines reach a redirected log (`> run.log`, a pipe) as they are printed, not in 4 KB blocks
    setvbuf(stdout, NULL, _IOLBF, 0);
    const std::string default_data_dir = "data/shakespeare";
    std::string data_dir = default_data_dir;
    int steps = 20, B = 4, T = 64, seed = 1337, val_every = 10, val_batches = 4, gen_tokens = 64;
    float lr = 1e-3f, temperature = 0.8f;
    std::string init_hf, export_hf, sft_data;
    int pack = 0;
    ArgParser ap;
    ap.program = argv[0];
    ap.usage = std::string(argv[0]) + " [flags]: trains the tiny preset on the CPU (fp32 reference)";
    ap.section("training");
    ap.add_string("--data-dir", &data_dir, "dataset directory (tokenizer.bin, train_*.bin, val_*.bin; built from data/tinyshakespeare.txt if missing)");
    ap.add_int("--steps", &steps, "optimizer steps");
    ap.add_int("--batch", &B, "batch size B");
    ap.add_int("--seq-len", &T, "sequence length T");
    ap.add_float("--lr", &lr, "AdamW learning rate (constant)");
    ap.add_int("--seed", &seed, "init and sampling seed");
    ap.add_int("--val-every", &val_every, "val loss every N steps (0: never)");
    ap.add_int("--val-batches", &val_batches, "batches per val loss");
    ap.add_int("--gen-tokens", &gen_tokens, "tokens to sample at the end");
    ap.add_float("--temperature", &temperature, "sampling temperature (0: greedy)");
    ap.add_string("--init-hf", &init_hf, "start from a Hugging Face model dir (config.json + safetensors, llmc/formats/hf.h); --data-dir then holds "
                  "shards made with its tokenizer (scripts/tokenize_hf.py; --steps 0 needs none); samples decode with its tokenizer.json");
    ap.add_string("--sft-data", &sft_data, "SFT: a folder of scripts/prepare_sft.py (train_*.bin, val_*.bin if any; llmc/data/sft_data.h) "
                  "made with --init-hf's chat template: the loss only on the answers, instead of --data-dir");
    ap.add_int("--pack", &pack, "SFT: 1 packs several conversations in a row (attention and positions per conversation), 0 one a row");
    ap.add_string("--export-hf", &export_hf, "at the end, write the weights to DIR as a Hugging Face model (F32; llmc/formats/hf.h)");
    if (!ap.parse(argc, argv)) { ap.print_help(); return 0; }
    if (steps < 0) fail("flag --steps: must be >= 0, got %d", steps);
    if (B <= 0) fail("flag --batch: must be > 0, got %d", B);
    if (T <= 0) fail("flag --seq-len: must be > 0, got %d", T);
    if (val_every < 0) fail("flag --val-every: must be >= 0, got %d", val_every);
    if (val_batches <= 0) fail("flag --val-batches: must be > 0, got %d", val_batches);
    if (gen_tokens < 0) fail("flag --gen-tokens: must be >= 0, got %d", gen_tokens);
    if (!(lr > 0)) fail("flag --lr: must be > 0");
    if (temperature < 0) fail("flag --temperature: must be >= 0");
    if (pack != 0 && pack != 1) fail("flag --pack: expected 0 or 1, got %d", pack);
    if (!sft_data.empty() && init_hf.empty()) fail("flag --sft-data: needs --init-hf (the model whose tokenizer and chat template made the data)");
    if (pack && sft_data.empty()) fail("flag --pack: only with --sft-data (conversations to pack)");
    // The reference keeps every layer's activations, the attention matrices (layers x B x heads x T x T)
    // among them: sizes this machine cannot hold are refused before anything is allocated.
    {
        GPTConfig c;
        if (init_hf.empty()) { gpt_preset("tiny", &c); c.max_seq_len = std::max(c.max_seq_len, T); gpt_config_finalize(&c); }
        else c = hf_load_config(init_hf);   // checked against its weights; T > max_position_embeddings fails in gpt_cpu_load_hf
        const double L = c.n_layer, BT = (double)B * T, C = c.d_model, F = c.ffn_hidden, qd = (double)c.n_head * c.head_dim,
                     QKV = qd + 2.0 * c.n_kv_head * c.head_dim, Vp = c.padded_vocab_size, att = L * B * c.n_head * (double)T * T;
        const double bytes = 4 * (4.0 * layout_numel(gpt_param_layout(c)) + att + L * BT * (5 * C + 2 * QKV + qd + 3 * F) +
                                  BT * (3 * Vp + 4 * C + 2 * QKV + qd + 3 * F));
        const double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        if (bytes > have && (init_hf.empty() || T <= c.max_seq_len))
            fail("flags --batch %d --seq-len %d: the CPU reference would need %.0f GiB (attention matrices alone: %d layers x %d x %d heads x %d x %d "
                 "floats), more than this machine's %.0f GiB of memory", B, T, bytes / (1 << 30), c.n_layer, B, c.n_head, T, T, have / (1 << 30));
    }

    Tokenizer tok;
    HFTokenizer hf_tok;
    bool have_hf_tok = false;
    GPTConfig cfg;
    GPTCpu g;
    int start_token = 0;
    HFInfo info;
    if (init_hf.empty()) {
        const std::string tok_path = data_dir + "/tokenizer.bin";
        if (!file_exists(tok_path)) {
            // the shakespeare dataset goes only into its own folder or one this run creates, never among a user's files
            struct stat st;
            if (data_dir != default_data_dir && stat(data_dir.c_str(), &st) == 0)
                fail("flag --data-dir: %s exists but has no tokenizer.bin: expected a dataset made by ./build_data "
                     "(a folder that does not exist yet gets the shakespeare dataset)", data_dir.c_str());
            printf("%s missing: building the dataset from data/tinyshakespeare.txt\n", tok_path.c_str());
            build_text_dataset("data/tinyshakespeare.txt", data_dir, 1024, 0.1);
        }
        tokenizer_load(&tok, tok_path);
        start_token = tok.eot_token;
        gpt_preset("tiny", &cfg);
        cfg.vocab_size = tok.vocab_size;
        cfg.padded_vocab_size = 0;
        if (T > cfg.max_seq_len) cfg.max_seq_len = T;
        gpt_config_finalize(&cfg);
        gpt_cpu_build(&g, cfg, B, T);
        gpt_cpu_init_params(&g, (uint64_t)seed);
    } else {
        gpt_cpu_load_hf(&g, init_hf, B, T, &info);
        cfg = g.cfg;
        start_token = info.bos_token_id >= 0 ? info.bos_token_id : info.eos_token_id >= 0 ? info.eos_token_id : 0;
        if (start_token >= cfg.vocab_size) fail("%s: bos_token_id %d is outside the vocabulary (%d)", info.config_path.c_str(), start_token, cfg.vocab_size);
        const std::string tj = hf_join(init_hf, "tokenizer.json");
        if (file_exists(tj)) { hf_tokenizer_load(&hf_tok, tj); have_hf_tok = true; }
        printf("loaded %s (%s): %zu params\n", init_hf.c_str(), info.model_type.c_str(), g.num_params);
    }
    auto decode = [&](const std::vector<int>& ids) {
        if (init_hf.empty()) return tokenizer_decode(&tok, ids.data(), ids.size());
        if (have_hf_tok) return hf_tokenizer_decode(&hf_tok, ids.data(), ids.size());
        std::string s;   // no tokenizer.json: the ids
        for (int id : ids) s += std::to_string(id) + " ";
        return s;
    };

    DataLoader train_dl, val_dl;
    SftLoader train_sl, val_sl;
    const bool sft = !sft_data.empty();
    const bool have_data = (init_hf.empty() || steps > 0) && !sft;
    bool have_sft_val = false;
    if (have_data) {
        dataloader_init(&train_dl, data_dir + "/train_*.bin", B, T, 0, 1, 1, (uint64_t)seed, cfg.vocab_size);
        dataloader_init(&val_dl, data_dir + "/val_*.bin", B, T, 0, 1, 0, (uint64_t)seed, cfg.vocab_size);
    }
    if (sft) {
        sft_init(&train_sl, sft_data + "/train_*.bin", B, T, 0, 1, 1, (uint64_t)seed, cfg.vocab_size, pack);
        have_sft_val = file_exists(sft_data + "/val_000.bin");
        if (have_sft_val) sft_init(&val_sl, sft_data + "/val_*.bin", B, T, 0, 1, 0, (uint64_t)seed, cfg.vocab_size, pack);
    }
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    printf("%s: vocab %d (padded %d), L %d, C %d, heads %d/%d, hd %d, F %d, %zu params | B %d T %d lr %g | %d threads\n",
           init_hf.empty() ? "tiny preset" : "model", cfg.vocab_size, cfg.padded_vocab_size, cfg.n_layer, cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim,
           cfg.ffn_hidden, g.num_params, B, T, lr, threads);

    for (int step = 1; step <= steps; step++) {
        double t0 = wall_seconds();
        float loss;
        if (sft) {
            sft_next_batch(&train_sl);
            loss = gpt_cpu_forward(&g, train_sl.inputs.data(), train_sl.targets.data(), train_sl.positions.data());
        } else {
            dataloader_next_batch(&train_dl);
            loss = gpt_cpu_forward(&g, train_dl.inputs, train_dl.targets);
        }
        gpt_cpu_zero_grad(&g);
        gpt_cpu_backward(&g);
        const float norm = gpt_cpu_update(&g, lr, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, step);
        double ms = 1e3 * (wall_seconds() - t0);
        printf("step %4d/%d | train loss %.4f | grad norm %.4f | %.1f ms\n", step, steps, loss, norm, ms);
        if (val_every > 0 && (step % val_every == 0 || step == steps) && (!sft || have_sft_val)) {
            const int nb = sft ? (int)std::min<long long>(val_batches, sft_num_batches(&val_sl)) : val_batches;
            printf("step %4d/%d | val loss %.4f (%d batches%s)\n", step, steps, sft ? eval_loss_sft(&g, &val_sl, nb) : eval_loss(&g, &val_dl, nb), nb,
                   sft ? ", answer tokens only" : "");
        }
    }
    if (gen_tokens > 0) {
        Rng rng;
        rng_seed(&rng, (uint64_t)seed + 1);
        printf("---- sample (greedy):\n%s\n", decode(sample(&g, start_token, gen_tokens, 0.0f, &rng)).c_str());
        printf("---- sample (temperature %g):\n%s\n----\n", temperature, decode(sample(&g, start_token, gen_tokens, temperature, &rng)).c_str());
    }
    if (!export_hf.empty()) {
        hf_export(export_hf, cfg, g.params.data(), ST_F32, info.bos_token_id, init_hf.empty() ? tok.eot_token : info.eos_token_id, 0,
                  init_hf.empty() ? nullptr : &info);
        if (!init_hf.empty()) hf_copy_side_files(init_hf, export_hf);
        printf("exported the weights to %s as a Hugging Face model (%s)\n", export_hf.c_str(), hf_export_architecture(cfg, init_hf.empty() ? nullptr : &info));
    }
    if (have_data) {
        dataloader_free(&train_dl);
        dataloader_free(&val_dl);
    }
    if (sft) sft_free(&train_sl);
    if (have_sft_val) sft_free(&val_sl);
    return 0;
}
#endif
