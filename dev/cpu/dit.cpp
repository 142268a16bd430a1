// fp32 CPU reference of the mega.c video DiT (MUG-V 10B architecture,
// rectified flow or EDM: llmc/model/dit_objective.h): forward, backward, AdamW
// and EDM's Heun sampler, written to be read, in the
// style of llm.c's train_gpt2.c. The model: docs/dit.md and
// dev/DESIGN.md (section "DiT"); parameter layout, token order and RoPE
// positions: llmc/model/dit_config.h. Checked against the PyTorch reference
// (dev/reference/dit.py) by test/test_dit_cpu.cpp, which includes this file
// with DIT_CPU_NO_MAIN defined.
//
// Every tensor is fp32 and every accumulation is in float, except the
// reductions over the whole batch or model (the per-sample loss sums and the
// grad norm), which sum in double, and the sinusoidal t/fps embeddings and the
// RoPE tables, which are computed in double and rounded to float.
//
// Batches are packed: every sample has its own latent shape and text length;
// its L = T'H'W' + 2 tokens follow the previous sample's, and its text tokens
// likewise. Shapes: B samples, N tokens (all samples), Np patch tokens (N - 2B),
// Nt text tokens, C d_model, nh heads, hd head_dim, F ffn_hidden, Fq freq_dim,
// Cy caption channels, P patch volume, Cin/Cout latent/output channels.
//
// Usage (runs the reference file's batch for N steps and prints the losses):
//   make dev/cpu/dit && ./dev/cpu/dit --steps 10
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>   // clock_gettime in llmc/core/utils.h
#include <string>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../../llmc/core/args.h"
#include "../../llmc/model/dit_config.h"
#include "../../llmc/model/dit_objective.h"
#include "../../llmc/core/rand.h"
#include "../../llmc/formats/tensorfile.h"
#include "../../llmc/core/utils.h"

// ----------------------------------------------------------------------------
// layers: forward and backward. Backward functions ADD into the gradients of
// their inputs and parameters (+=), as in llm.c, unless stated otherwise.
// Each has the name of the GPU launcher it is the reference of (llmc/kernels/,
// checked by dev/cuda/; matmuls: llmc/core/cublas_common.h); a fused kernel is
// written as its parts, e.g. qknorm_rope3d_forward as qknorm_forward then
// rope3d_forward.

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

// LayerNorm without affine: xhat = (x - mean) * rstd, rstd = 1/sqrt(var + eps)
// (biased variance, two passes). xhat, inp [N,C]; rstd [N].
void layernorm_forward(float* xhat, float* rstd, const float* inp, int N, int C, float eps) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* x = inp + (size_t)i * C;
        float* y = xhat + (size_t)i * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) { const float d = x[c] - m; v += d * d; }
        const float r = 1.0f / sqrtf(v / C + eps);
        for (int c = 0; c < C; c++) y[c] = (x[c] - m) * r;
        rstd[i] = r;
    }
}

// dinp += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
void layernorm_backward(float* dinp, const float* dxhat, const float* xhat, const float* rstd, int N, int C) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* dy = dxhat + (size_t)i * C;
        const float* y = xhat + (size_t)i * C;
        float* dx = dinp + (size_t)i * C;
        float s = 0.0f, sy = 0.0f;
        for (int c = 0; c < C; c++) { s += dy[c]; sy += dy[c] * y[c]; }
        s /= C;
        sy /= C;
        for (int c = 0; c < C; c++) dx[c] += rstd[i] * (dy[c] - s - y[c] * sy);
    }
}

// LayerNorm with weight and bias: out = xhat * w + b (xhat and rstd kept for the backward).
void layernorm_affine_forward(float* out, float* xhat, float* rstd, const float* inp, const float* w, const float* b,
                              int N, int C, float eps) {
    layernorm_forward(xhat, rstd, inp, N, C, eps);
    #pragma omp parallel for
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) out[(size_t)i * C + c] = xhat[(size_t)i * C + c] * w[c] + b[c];
}

// dinp +=, dw +=, db +=. scratch [N,C] holds dxhat.
void layernorm_affine_backward(float* dinp, float* dw, float* db, float* scratch, const float* dout, const float* xhat,
                               const float* w, const float* rstd, int N, int C) {
    #pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float sw = 0.0f, sb = 0.0f;
        for (int i = 0; i < N; i++) {
            const float d = dout[(size_t)i * C + c];
            sw += d * xhat[(size_t)i * C + c];
            sb += d;
            scratch[(size_t)i * C + c] = d * w[c];
        }
        dw[c] += sw;
        db[c] += sb;
    }
    layernorm_backward(dinp, scratch, xhat, rstd, N, C);
}

// adaLN modulation of a normalized row: out = xhat * (1 + scale) + shift, where
// for row i shift[c] = tshift[c] + mods[rows[i]*ms + shift_off + c] and scale
// likewise (a learned table row plus the row's conditioning vector).
void adaln_modulate_forward(float* out, const float* xhat, const float* tshift, const float* tscale, const float* mods, int ms,
                            int shift_off, int scale_off, const int* rows, int N, int C) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* m = mods + (size_t)rows[i] * ms;
        for (int c = 0; c < C; c++)
            out[(size_t)i * C + c] = xhat[(size_t)i * C + c] * (1.0f + (tscale[c] + m[scale_off + c])) +
                                     (tshift[c] + m[shift_off + c]);
    }
}

// dxhat = (not +=) dout * (1 + scale); dtshift, dtscale, dmods +=. Parallel
// over columns: a thread owns column c of the tables and of every mods row.
void adaln_modulate_backward(float* dxhat, float* dtshift, float* dtscale, float* dmods, const float* dout, const float* xhat,
                             const float* tscale, const float* mods, int ms, int shift_off, int scale_off, const int* rows,
                             int N, int C) {
    #pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float ssh = 0.0f, ssc = 0.0f;
        for (int i = 0; i < N; i++) {
            const size_t e = (size_t)i * C + c;
            const size_t r = (size_t)rows[i] * ms;
            const float d = dout[e];
            dxhat[e] = d * (1.0f + (tscale[c] + mods[r + scale_off + c]));
            ssh += d;
            ssc += d * xhat[e];
            dmods[r + shift_off + c] += d;
            dmods[r + scale_off + c] += d * xhat[e];
        }
        dtshift[c] += ssh;
        dtscale[c] += ssc;
    }
}

// Gated residual: out = x + gate * o, gate[c] = tgate[c] + mods[rows[i]*ms + off + c].
void adaln_gate_residual_forward(float* out, const float* x, const float* o, const float* tgate, const float* mods, int ms,
                                 int off, const int* rows, int N, int C) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* m = mods + (size_t)rows[i] * ms + off;
        for (int c = 0; c < C; c++) {
            const size_t e = (size_t)i * C + c;
            out[e] = x[e] + (tgate[c] + m[c]) * o[e];
        }
    }
}

// dO = (not +=) dout * gate; dtgate, dmods += dout * o. (dx = dout is the caller's.)
void adaln_gate_residual_backward(float* dO, float* dtgate, float* dmods, const float* dout, const float* o, const float* tgate,
                                  const float* mods, int ms, int off, const int* rows, int N, int C) {
    #pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float sg = 0.0f;
        for (int i = 0; i < N; i++) {
            const size_t e = (size_t)i * C + c;
            const size_t r = (size_t)rows[i] * ms + off + c;
            dO[e] = dout[e] * (tgate[c] + mods[r]);
            sg += dout[e] * o[e];
            dmods[r] += dout[e] * o[e];
        }
        dtgate[c] += sg;
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

// dx = (not +=) rstd * (w dy - x rstd^2 mean(w dy x))
static inline void rmsnorm_row_backward(float* dx, const float* dy, const float* x, const float* w, float rstd, int n) {
    float dot = 0.0f;
    for (int i = 0; i < n; i++) dot += w[i] * dy[i] * x[i];
    const float k = rstd * rstd * dot / n;
    for (int i = 0; i < n; i++) dx[i] = rstd * (w[i] * dy[i] - x[i] * k);
}

// QK-norm: RMSNorm over each of the nheads heads (hd values each) at the start
// of every row (row stride rs), weight w [hd] shared by the heads. out has the
// layout of inp; only the heads are written. rstd [N, nheads].
void qknorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int rs, int nheads, int hd,
                    float eps) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++)
        for (int j = 0; j < nheads; j++)
            rstd[(size_t)i * nheads + j] =
                rmsnorm_row_forward(out + (size_t)i * rs + j * hd, inp + (size_t)i * rs + j * hd, w, hd, eps);
}

// dinp = (not +=) the gradient through the norm (heads only); dw +=.
void qknorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                     int N, int rs, int nheads, int hd) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++)
        for (int j = 0; j < nheads; j++) {
            const size_t e = (size_t)i * rs + j * hd;
            rmsnorm_row_backward(dinp + e, dout + e, inp + e, w, rstd[(size_t)i * nheads + j], hd);
        }
    #pragma omp parallel for
    for (int c = 0; c < hd; c++) {
        float s = 0.0f;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < nheads; j++) {
                const size_t e = (size_t)i * rs + j * hd + c;
                s += dout[e] * inp[e] * rstd[(size_t)i * nheads + j];
            }
        dw[c] += s;
    }
}

// 3D RoPE, interleaved pairs, in place on the nheads heads at the start of
// every row (stride rs): x'[2s] = x[2s] cos - x[2s+1] sin, x'[2s+1] =
// x[2s+1] cos + x[2s] sin; cos, sin [N, hd/2] per row (token).
void rope3d_forward(float* x, const float* cosb, const float* sinb, int N, int rs, int nheads, int hd) {
    const int half = hd / 2;
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* cs = cosb + (size_t)i * half;
        const float* sn = sinb + (size_t)i * half;
        for (int j = 0; j < nheads; j++) {
            float* v = x + (size_t)i * rs + j * hd;
            for (int s = 0; s < half; s++) {
                const float x0 = v[2 * s], x1 = v[2 * s + 1];
                v[2 * s] = x0 * cs[s] - x1 * sn[s];
                v[2 * s + 1] = x1 * cs[s] + x0 * sn[s];
            }
        }
    }
}

// The transpose of the rotation, in place on dx.
void rope3d_backward(float* dx, const float* cosb, const float* sinb, int N, int rs, int nheads, int hd) {
    const int half = hd / 2;
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* cs = cosb + (size_t)i * half;
        const float* sn = sinb + (size_t)i * half;
        for (int j = 0; j < nheads; j++) {
            float* d = dx + (size_t)i * rs + j * hd;
            for (int s = 0; s < half; s++) {
                const float d0 = d[2 * s], d1 = d[2 * s + 1];
                d[2 * s] = d0 * cs[s] + d1 * sn[s];
                d[2 * s + 1] = d1 * cs[s] - d0 * sn[s];
            }
        }
    }
}

// Attention over packed samples, no causal mask, scale 1/sqrt(hd): the
// queries of sample b (rows cu_q[b]..cu_q[b+1]) attend to its keys (rows
// cu_k[b]..cu_k[b+1]) only. Query row i, head h at q + i*qs + h*hd; key/value
// row j, head h at k/v + j*ks + h*hd. out [Nq, nh*hd] heads concatenated.
// att: sample b's probabilities at att + att_off[b], [nh, Lq_b, Lk_b].
void attention_forward(float* out, float* att, const float* q, int qs, const float* k, const float* v, int ks,
                       const int* cu_q, const int* cu_k, const size_t* att_off, int B, int nh, int hd) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int C = nh * hd;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            const int Lq = cu_q[b + 1] - cu_q[b], Lk = cu_k[b + 1] - cu_k[b];
            for (int iq = 0; iq < Lq; iq++) {
                const int i = cu_q[b] + iq;
                const float* qi = q + (size_t)i * qs + h * hd;
                float* a = att + att_off[b] + ((size_t)h * Lq + iq) * Lk;
                float maxv = -INFINITY;
                for (int jk = 0; jk < Lk; jk++) {
                    const float* kj = k + (size_t)(cu_k[b] + jk) * ks + h * hd;
                    float s = 0.0f;
                    for (int d = 0; d < hd; d++) s += qi[d] * kj[d];
                    s *= scale;
                    a[jk] = s;
                    if (s > maxv) maxv = s;
                }
                float sum = 0.0f;
                for (int jk = 0; jk < Lk; jk++) { a[jk] = expf(a[jk] - maxv); sum += a[jk]; }
                const float inv = 1.0f / sum;
                for (int jk = 0; jk < Lk; jk++) a[jk] *= inv;
                float* y = out + (size_t)i * C + h * hd;
                for (int d = 0; d < hd; d++) y[d] = 0.0f;
                for (int jk = 0; jk < Lk; jk++) {
                    const float* vj = v + (size_t)(cu_k[b] + jk) * ks + h * hd;
                    for (int d = 0; d < hd; d++) y[d] += a[jk] * vj[d];
                }
            }
        }
}

// dq, dk, dv += (dq with q's layout, dk/dv with k's). A thread owns one
// (sample, head), so no two threads write the same element.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, int qs, const float* k,
                        const float* v, int ks, const float* att, const int* cu_q, const int* cu_k,
                        const size_t* att_off, int B, int nh, int hd) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int C = nh * hd;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            const int Lq = cu_q[b + 1] - cu_q[b], Lk = cu_k[b + 1] - cu_k[b];
            std::vector<float> datt(Lk);
            for (int iq = 0; iq < Lq; iq++) {
                const int i = cu_q[b] + iq;
                const float* a = att + att_off[b] + ((size_t)h * Lq + iq) * Lk;
                const float* dy = dout + (size_t)i * C + h * hd;
                const float* qi = q + (size_t)i * qs + h * hd;
                float* dqi = dq + (size_t)i * qs + h * hd;
                // through y = sum att * v
                for (int jk = 0; jk < Lk; jk++) {
                    const size_t r = (size_t)(cu_k[b] + jk) * ks + h * hd;
                    float s = 0.0f;
                    for (int d = 0; d < hd; d++) { s += dy[d] * v[r + d]; dv[r + d] += a[jk] * dy[d]; }
                    datt[jk] = s;
                }
                // through the softmax: dpre = att * (datt - sum(att * datt)), then the scores q . k
                float dot = 0.0f;
                for (int jk = 0; jk < Lk; jk++) dot += a[jk] * datt[jk];
                for (int jk = 0; jk < Lk; jk++) {
                    const float dpre = a[jk] * (datt[jk] - dot) * scale;
                    const size_t r = (size_t)(cu_k[b] + jk) * ks + h * hd;
                    for (int d = 0; d < hd; d++) { dqi[d] += dpre * k[r + d]; dk[r + d] += dpre * qi[d]; }
                }
            }
        }
}

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
#define GELU_SCALING_FACTOR 0.7978845608028654f   // sqrt(2/pi)
void gelu_forward(float* out, const float* inp, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x)));
    }
}

// dinp = (not +=) dout * gelu'(inp)
void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float u = GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x);
        const float th = tanhf(u);
        const float sech2 = 1.0f - th * th;
        const float du = GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = dout[i] * (0.5f * (1.0f + th) + 0.5f * x * sech2 * du);
    }
}

// SiLU: out = x * sigmoid(x)
void silu_forward(float* out, const float* inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] / (1.0f + expf(-inp[i]));
}

// dinp += dout * s (1 + x (1 - s)), s = sigmoid(x)
void silu_backward(float* dinp, const float* dout, const float* inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + expf(-inp[i]));
        dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

// Sinusoidal embeddings of scalars s[n] (double): out [n, 2*half] = [cos(s f), sin(s f)].
void timestep_embedding(float* out, const double* s, int n, const std::vector<double>& f) {
    const int half = (int)f.size();
    for (int i = 0; i < n; i++)
        for (int k = 0; k < half; k++) {
            out[(size_t)i * 2 * half + k] = (float)cos(s[i] * f[k]);
            out[(size_t)i * 2 * half + half + k] = (float)sin(s[i] * f[k]);
        }
}

// ----------------------------------------------------------------------------
// the batch

// One packed batch of B samples (see dev/DESIGN.md "DiT").
struct DiTBatch {
    int B = 0;
    std::vector<int> T, H, W;        // latent shape per sample
    std::vector<int> text_len;       // valid text tokens per sample
    std::vector<int> has_mask;       // 1: the sample has a frame mask (image-to-video)
    std::vector<float> t, fps;       // per sample; rf: flow time t in [0,1], sampled and shifted; edm: sigma > 0
    std::vector<float> x0, eps;      // packed [Cin, T, H, W] per sample
    std::vector<float> text;         // packed [sum text_len, Cy]
    std::vector<int> frame_mask;     // packed [T] per sample: 1 noisy, 0 clean (all 1 without a mask)
};

// Checks every field of a batch against the config; one line naming the field.
static void dit_batch_check(const DiTConfig& c, const DiTBatch& bt, const char* who, int objective) {
    const int B = bt.B;
    if (B <= 0) fail("%s: batch size %d must be > 0", who, B);
    if ((int)bt.T.size() != B || (int)bt.H.size() != B || (int)bt.W.size() != B || (int)bt.text_len.size() != B ||
        (int)bt.has_mask.size() != B || (int)bt.t.size() != B || (int)bt.fps.size() != B)
        fail("%s: per-sample fields must have %d entries", who, B);
    size_t lat = 0, txt = 0, fr = 0;
    for (int b = 0; b < B; b++) {
        if (bt.T[b] <= 0 || bt.H[b] <= 0 || bt.W[b] <= 0)
            fail("%s: sample %d has shape %dx%dx%d (expected positive)", who, b, bt.T[b], bt.H[b], bt.W[b]);
        const DiTGrid g = dit_grid(c, bt.T[b], bt.H[b], bt.W[b]);
        if (g.Hp > c.rope_max_hw || g.Wp > c.rope_max_hw)
            fail("%s: sample %d patch grid %dx%d exceeds rope_max_hw %d", who, b, g.Hp, g.Wp, c.rope_max_hw);
        if (bt.text_len[b] <= 0 || bt.text_len[b] > c.max_text_len)
            fail("%s: sample %d text length %d outside [1, %d]", who, b, bt.text_len[b], c.max_text_len);
        if (objective == DIT_OBJECTIVE_EDM) {
            if (!(bt.t[b] > 0.0f && std::isfinite(bt.t[b]))) fail("%s: sample %d sigma=%g (expected finite and > 0)", who, b, bt.t[b]);
        } else if (!(bt.t[b] >= 0.0f && bt.t[b] <= 1.0f)) fail("%s: sample %d t=%g outside [0, 1]", who, b, bt.t[b]);
        if (!(bt.fps[b] == bt.fps[b])) fail("%s: sample %d fps is NaN", who, b);
        if (bt.has_mask[b] != 0 && bt.has_mask[b] != 1) fail("%s: sample %d has_mask must be 0 or 1", who, b);
        lat += (size_t)c.in_channels * bt.T[b] * bt.H[b] * bt.W[b];
        txt += (size_t)bt.text_len[b] * c.caption_channels;
        int noisy = 0;
        for (int f = 0; f < bt.T[b]; f++) {
            const size_t k = fr + f;
            if (k >= bt.frame_mask.size()) fail("%s: frame_mask has %zu entries, too few", who, bt.frame_mask.size());
            const int m = bt.frame_mask[k];
            if (m != 0 && m != 1) fail("%s: sample %d frame %d mask %d (expected 0 or 1)", who, b, f, m);
            if (!bt.has_mask[b] && m != 1) fail("%s: sample %d has no mask but frame %d is marked clean", who, b, f);
            noisy += m;
        }
        if (noisy == 0) fail("%s: sample %d has no noisy frame (nothing to learn)", who, b);
        fr += bt.T[b];
    }
    if (bt.x0.size() != lat || bt.eps.size() != lat)
        fail("%s: x0/eps have %zu/%zu values (expected %zu)", who, bt.x0.size(), bt.eps.size(), lat);
    if (bt.text.size() != txt) fail("%s: text has %zu values (expected %zu)", who, bt.text.size(), txt);
    if (bt.frame_mask.size() != fr) fail("%s: frame_mask has %zu entries (expected %zu)", who, bt.frame_mask.size(), fr);
}

// ----------------------------------------------------------------------------
// the model

struct DiTCpu {
    DiTConfig cfg;
    DiTObjective obj;                         // rf unless set after dit_cpu_build
    std::vector<ParamTensor> layout;
    size_t num_params = 0;
    std::vector<float> params, grads, m, v;   // one contiguous buffer each, tensors at layout offsets
    std::vector<double> rope_f, emb_f;        // dit_rope_freqs, dit_freq_embedding_freqs

    // geometry of the last forward's batch
    DiTBatch batch;
    int B = 0, N = 0, Np = 0, Nt = 0;
    std::vector<DiTGrid> grids;
    std::vector<int> cu_x, cu_p, cu_t;        // [B+1] token, patch-token, text-token offsets
    std::vector<size_t> cu_lat, cu_out;       // [B+1] offsets of x0/eps ([Cin,T,H,W]) and of v_pred ([Cout,T,H,W])
    std::vector<int> cu_f;                    // [B+1] frame offsets into frame_mask
    std::vector<size_t> att_off, catt_off;    // [B+1] offsets of the attention probabilities (per layer)
    std::vector<int> tokrow;                  // [N]  conditioning row of each token: 2b (t) or 2b+1 (t0)
    std::vector<int> patrow;                  // [Np] the same for the patch tokens (final layer)
    std::vector<float> rope_cos, rope_sin;    // [N, hd/2]

    // activations of the last forward
    std::vector<float> tfreq, ffreq;          // [2B, Fq] (rows 2b: 1000 t_b, 2b+1: 0; edm: c_noise), [B, Fq]
    std::vector<float> t_hidden, t_hidden_silu, temb;        // [2B, C] t_embedder: mlp.0 out, SiLU, mlp.2 out
    std::vector<float> fps_hidden, fps_hidden_silu, femb;    // [B, C]  fps_embedder likewise
    std::vector<float> cond, conds, mods;     // [2B, C] c / c0 rows, their SiLU; [2B, 6C] t_block out
    // caption: LayerNorm of the text [Nt,Cy] and its rstd [Nt]; fc1, GELU, fc2 [Nt,C] x3; y = LayerNorm(fc2) [Nt,C], rstd [Nt]
    std::vector<float> cap_normed, cap_rstd, cap_fc1, cap_gelu, cap_fc2, y, y_rstd;
    std::vector<float> patches;               // [Np, Cin*P]
    std::vector<float> res;                   // [L+1, N, C] residual stream entering layer l
    std::vector<float> ln1, ln1r, h1, qkv, qr, kr, qkvr, att, atty, o1, res1;
    std::vector<float> lna, lnar, ha, cq, cqr, cqn, ckv, ckr, ckvn, catt, catty, res2;
    std::vector<float> ln2, ln2r, h2, f1, f1g, o2;
    // patch_tokens [Np,C]: the patch embedding (x_embedder), in the final layer the residual stream's patch
    // rows; lnf [Np,C], lnfr [Np]: their LayerNorm; final_in [Np,C]: its modulation (the final linear's input);
    // out [Np, P*Cout]: the final linear's output
    std::vector<float> patch_tokens, lnf, lnfr, final_in, out;
    std::vector<float> v_pred;                // packed [Cout, T, H, W] per sample (edm: the network's raw output F)
    std::vector<double> sample_loss;          // [B]
    std::vector<EdmPrecond> pre;              // [B] edm: each sample's preconditioning

    // gradient scratch
    std::vector<float> dres, dln, dh, dqkv, dqkvr, datty, dO, dcq, dcqn, dckv, dckvn, df1, df1g;
    std::vector<float> dy, dcap_fc2, dcap_gelu, dcap_fc1, dmods, dconds, dcond, dtemb, dt_hidden_silu, dt_hidden;
    std::vector<float> dfemb, dfps_hidden_silu, dfps_hidden, dpatch_tokens, dfinal_in, dout, dpatch;
};

static inline float* dit_param(DiTCpu* g, const char* name) {
    const ParamTensor* p = dit_find_param(g->layout, name);
    if (!p) fail("dit_cpu: no parameter named %s", name);
    return g->params.data() + p->offset;
}
static inline float* dit_grad(DiTCpu* g, const char* name) {
    const ParamTensor* p = dit_find_param(g->layout, name);
    if (!p) fail("dit_cpu: no parameter named %s", name);
    return g->grads.data() + p->offset;
}

// Allocates the parameters (zero) of a finalized config.
void dit_cpu_build(DiTCpu* g, const DiTConfig& cfg) {
    g->cfg = cfg;
    g->layout = dit_param_layout(cfg);
    g->num_params = layout_numel(g->layout);
    g->params.assign(g->num_params, 0.0f);
    g->grads.assign(g->num_params, 0.0f);
    g->m.assign(g->num_params, 0.0f);
    g->v.assign(g->num_params, 0.0f);
    g->rope_f = dit_rope_freqs(cfg);
    g->emb_f = dit_freq_embedding_freqs(cfg);
}

// An init for runs from scratch: linear weights N(0, 0.02), biases 0, norm
// weights 1, tables N(0,1)/sqrt(C), start/end tokens N(0, 0.02).
void dit_cpu_init_params(DiTCpu* g, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    const float inv_sqrt_c = 1.0f / sqrtf((float)g->cfg.d_model);
    for (const ParamTensor& p : g->layout) {
        float* w = g->params.data() + p.offset;
        const std::string& n = p.name;
        const bool ends_norm_w = n.size() >= 11 && n.compare(n.size() - 11, 11, "norm.weight") == 0;
        const bool is_bias = n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0;
        if (ends_norm_w || is_bias) std::fill(w, w + p.numel, ends_norm_w ? 1.0f : 0.0f);
        else rng_fill_normal(w, p.numel, n.find("scale_shift_table") != std::string::npos ? inv_sqrt_c : 0.02f, &rng);
    }
}

// Sets up the geometry of a batch and sizes every buffer for it.
static void dit_cpu_setup(DiTCpu* g, const DiTBatch& bt) {
    const DiTConfig& c = g->cfg;
    dit_batch_check(c, bt, "dit_cpu_forward", g->obj.kind);
    g->batch = bt;
    const int B = bt.B, C = c.d_model, L = c.n_layer, nh = c.n_head, hd = c.head_dim, F = c.ffn_hidden;
    const int P = dit_patch_size(c), Fq = c.freq_dim, Cy = c.caption_channels;
    g->B = B;
    g->grids.resize(B);
    g->cu_x.assign(B + 1, 0); g->cu_p.assign(B + 1, 0); g->cu_t.assign(B + 1, 0); g->cu_f.assign(B + 1, 0);
    g->cu_lat.assign(B + 1, 0); g->cu_out.assign(B + 1, 0); g->att_off.assign(B + 1, 0); g->catt_off.assign(B + 1, 0);
    for (int b = 0; b < B; b++) {
        const DiTGrid gr = dit_grid(c, bt.T[b], bt.H[b], bt.W[b]);
        g->grids[b] = gr;
        const size_t thw = (size_t)bt.T[b] * bt.H[b] * bt.W[b];
        g->cu_x[b + 1] = g->cu_x[b] + gr.L;
        g->cu_p[b + 1] = g->cu_p[b] + gr.n_patch;
        g->cu_t[b + 1] = g->cu_t[b] + bt.text_len[b];
        g->cu_f[b + 1] = g->cu_f[b] + bt.T[b];
        g->cu_lat[b + 1] = g->cu_lat[b] + (size_t)c.in_channels * thw;
        g->cu_out[b + 1] = g->cu_out[b] + (size_t)c.out_channels * thw;
        g->att_off[b + 1] = g->att_off[b] + (size_t)nh * gr.L * gr.L;
        g->catt_off[b + 1] = g->catt_off[b] + (size_t)nh * gr.L * bt.text_len[b];
    }
    const size_t N = g->cu_x[B], Np = g->cu_p[B], Nt = g->cu_t[B], Ls = L;
    g->N = (int)N; g->Np = (int)Np; g->Nt = (int)Nt;

    // conditioning rows: a token uses t0 (row 2b+1) when its sample has a mask and it is a start/end
    // token or belongs to a clean frame (token frame i: latent frame i*patch_t)
    g->tokrow.assign(N, 0);
    g->patrow.assign(Np, 0);
    for (int b = 0; b < B; b++) {
        const DiTGrid& gr = g->grids[b];
        const int* fm = bt.frame_mask.data() + g->cu_f[b];
        for (int j = 0; j < gr.L; j++) {
            bool noisy;
            if (!bt.has_mask[b]) noisy = true;
            else if (j == 0 || j == gr.L - 1) noisy = false;
            else noisy = fm[((j - 1) / (gr.Hp * gr.Wp)) * c.patch_t] != 0;
            const int row = 2 * b + (noisy ? 0 : 1);
            g->tokrow[g->cu_x[b] + j] = row;
            if (j > 0 && j < gr.L - 1) g->patrow[g->cu_p[b] + j - 1] = row;
        }
    }
    // RoPE tables per token, in double
    const int half = hd / 2, n6 = hd / 6;
    g->rope_cos.assign(N * half, 0.0f);
    g->rope_sin.assign(N * half, 0.0f);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < g->grids[b].L; j++) {
            int pos[3];
            dit_rope_position(c, g->grids[b], j, &pos[0], &pos[1], &pos[2]);
            const size_t i = (size_t)g->cu_x[b] + j;
            for (int s = 0; s < half; s++) {
                const double a = pos[s / n6] * g->rope_f[s % n6];
                g->rope_cos[i * half + s] = (float)cos(a);
                g->rope_sin[i * half + s] = (float)sin(a);
            }
        }

    auto sz = [](std::vector<float>& v, size_t n) { v.assign(n, 0.0f); };
    sz(g->tfreq, 2 * B * Fq); sz(g->ffreq, B * Fq);
    sz(g->t_hidden, 2 * B * C); sz(g->t_hidden_silu, 2 * B * C); sz(g->temb, 2 * B * C);
    sz(g->fps_hidden, B * C); sz(g->fps_hidden_silu, B * C); sz(g->femb, B * C);
    sz(g->cond, 2 * B * C); sz(g->conds, 2 * B * C); sz(g->mods, 2 * B * 6 * C);
    sz(g->cap_normed, Nt * Cy); sz(g->cap_rstd, Nt); sz(g->cap_fc1, Nt * C); sz(g->cap_gelu, Nt * C); sz(g->cap_fc2, Nt * C);
    sz(g->y, Nt * C); sz(g->y_rstd, Nt);
    sz(g->patches, Np * c.in_channels * P);
    sz(g->res, (Ls + 1) * N * C);
    sz(g->ln1, Ls * N * C); sz(g->ln1r, Ls * N); sz(g->h1, Ls * N * C); sz(g->qkv, Ls * N * 3 * C);
    sz(g->qr, Ls * N * nh); sz(g->kr, Ls * N * nh); sz(g->qkvr, Ls * N * 3 * C); sz(g->att, Ls * g->att_off[B]);
    sz(g->atty, Ls * N * C); sz(g->o1, Ls * N * C); sz(g->res1, Ls * N * C);
    sz(g->lna, Ls * N * C); sz(g->lnar, Ls * N); sz(g->ha, Ls * N * C); sz(g->cq, Ls * N * C);
    sz(g->cqr, Ls * N * nh); sz(g->cqn, Ls * N * C); sz(g->ckv, Ls * Nt * 2 * C); sz(g->ckr, Ls * Nt * nh);
    sz(g->ckvn, Ls * Nt * 2 * C); sz(g->catt, Ls * g->catt_off[B]); sz(g->catty, Ls * N * C); sz(g->res2, Ls * N * C);
    sz(g->ln2, Ls * N * C); sz(g->ln2r, Ls * N); sz(g->h2, Ls * N * C); sz(g->f1, Ls * N * F); sz(g->f1g, Ls * N * F);
    sz(g->o2, Ls * N * C);
    sz(g->patch_tokens, Np * C); sz(g->lnf, Np * C); sz(g->lnfr, Np); sz(g->final_in, Np * C); sz(g->out, Np * P * c.out_channels);
    sz(g->v_pred, g->cu_out[B]);
    g->sample_loss.assign(B, 0.0);

    sz(g->dres, N * C); sz(g->dln, N * C); sz(g->dh, N * C); sz(g->dqkv, N * 3 * C); sz(g->dqkvr, N * 3 * C);
    sz(g->datty, N * C); sz(g->dO, N * C); sz(g->dcq, N * C); sz(g->dcqn, N * C); sz(g->dckv, Nt * 2 * C);
    sz(g->dckvn, Nt * 2 * C); sz(g->df1, N * F); sz(g->df1g, N * F);
    sz(g->dy, Nt * C); sz(g->dcap_fc2, Nt * C); sz(g->dcap_gelu, Nt * C); sz(g->dcap_fc1, Nt * C);
    sz(g->dmods, 2 * B * 6 * C); sz(g->dconds, 2 * B * C); sz(g->dcond, 2 * B * C); sz(g->dtemb, 2 * B * C);
    sz(g->dt_hidden_silu, 2 * B * C); sz(g->dt_hidden, 2 * B * C); sz(g->dfemb, B * C); sz(g->dfps_hidden_silu, B * C); sz(g->dfps_hidden, B * C);
    sz(g->dpatch_tokens, Np * C); sz(g->dfinal_in, Np * C); sz(g->dout, Np * P * c.out_channels); sz(g->dpatch, Np * C);
}

// The loss's residual at one element of sample b: rf v_pred - (x0 - eps); edm
// D - x0 with D = c_skip (x0 + sigma eps) + c_out v_pred (the loss weighs its
// square by lambda).
static inline float dit_cpu_residual(const DiTCpu* g, int b, float vp, float x0, float ep) {
    if (g->obj.kind != DIT_OBJECTIVE_EDM) return vp - (x0 - ep);
    const EdmPrecond& p = g->pre[b];
    const float x = x0 + g->batch.t[b] * ep;
    return (float)p.c_skip * x + (float)p.c_out * vp - x0;
}

// Forward over a batch: the network's input, its output v_pred and the loss
// (returned; per sample mean over its noisy frames, then mean over samples).
// rf: input x_t = (1 - t) x0 + t eps, loss (v_pred - (x0 - eps))^2. edm: input
// c_in (x0 + sigma eps), loss lambda (c_skip x + c_out v_pred - x0)^2. Clean
// frames hold x0 (edm: x0 / sigma_data).
float dit_cpu_forward(DiTCpu* g, const DiTBatch& bt) {
    dit_cpu_setup(g, bt);
    const DiTConfig& c = g->cfg;
    const int B = g->B, N = g->N, Np = g->Np, Nt = g->Nt, C = c.d_model, L = c.n_layer, nh = c.n_head;
    const int hd = c.head_dim, F = c.ffn_hidden, Fq = c.freq_dim, Cy = c.caption_channels, Cin = c.in_channels;
    const int Cout = c.out_channels, pt = c.patch_t, ph = c.patch_h, pw = c.patch_w, P = dit_patch_size(c);
    const float eps = c.norm_eps;

    // conditioning: c = t_emb(1000 t) + fps_emb(fps), c0 = t_emb(0) + fps_emb(fps); mods = t_block(c / c0)
    // (edm: c_noise(sigma) and c_noise(sigma_min) for 1000 t and 0)
    std::vector<double> ts(2 * B), fs(B);
    g->pre.assign(B, EdmPrecond{});
    for (int b = 0; b < B; b++) {
        ts[2 * b] = dit_timestep_value(g->obj, bt.t[b]);
        ts[2 * b + 1] = dit_timestep_clean(g->obj);
        fs[b] = bt.fps[b];
        if (g->obj.kind == DIT_OBJECTIVE_EDM) g->pre[b] = edm_precond(bt.t[b], g->obj.sigma_data);
    }
    timestep_embedding(g->tfreq.data(), ts.data(), 2 * B, g->emb_f);
    timestep_embedding(g->ffreq.data(), fs.data(), B, g->emb_f);
    matmul_forward(g->t_hidden.data(), g->tfreq.data(), dit_param(g, "t_embedder.mlp.0.weight"), dit_param(g, "t_embedder.mlp.0.bias"), 2 * B, Fq, C);
    silu_forward(g->t_hidden_silu.data(), g->t_hidden.data(), g->t_hidden.size());
    matmul_forward(g->temb.data(), g->t_hidden_silu.data(), dit_param(g, "t_embedder.mlp.2.weight"), dit_param(g, "t_embedder.mlp.2.bias"), 2 * B, C, C);
    matmul_forward(g->fps_hidden.data(), g->ffreq.data(), dit_param(g, "fps_embedder.mlp.0.weight"), dit_param(g, "fps_embedder.mlp.0.bias"), B, Fq, C);
    silu_forward(g->fps_hidden_silu.data(), g->fps_hidden.data(), g->fps_hidden.size());
    matmul_forward(g->femb.data(), g->fps_hidden_silu.data(), dit_param(g, "fps_embedder.mlp.2.weight"), dit_param(g, "fps_embedder.mlp.2.bias"), B, C, C);
    for (int r = 0; r < 2 * B; r++)
        for (int k = 0; k < C; k++) g->cond[(size_t)r * C + k] = g->temb[(size_t)r * C + k] + g->femb[(size_t)(r / 2) * C + k];
    silu_forward(g->conds.data(), g->cond.data(), g->cond.size());
    matmul_forward(g->mods.data(), g->conds.data(), dit_param(g, "t_block.1.weight"), dit_param(g, "t_block.1.bias"), 2 * B, C, 6 * C);

    // caption embedder over the packed valid text tokens
    layernorm_forward(g->cap_normed.data(), g->cap_rstd.data(), bt.text.data(), Nt, Cy, eps);
    matmul_forward(g->cap_fc1.data(), g->cap_normed.data(), dit_param(g, "y_embedder.y_proj.fc1.weight"), dit_param(g, "y_embedder.y_proj.fc1.bias"), Nt, Cy, C);
    gelu_forward(g->cap_gelu.data(), g->cap_fc1.data(), g->cap_fc1.size());
    matmul_forward(g->cap_fc2.data(), g->cap_gelu.data(), dit_param(g, "y_embedder.y_proj.fc2.weight"), dit_param(g, "y_embedder.y_proj.fc2.bias"), Nt, C, C);
    layernorm_forward(g->y.data(), g->y_rstd.data(), g->cap_fc2.data(), Nt, C, eps);

    // the input (noisy frames in_x0 x0 + in_eps eps, clean in_clean x0), zero-padded patches (vector
    // order c, tp, hp, wp), patch embedding
    for (int b = 0; b < B; b++) {
        const DiTGrid& gr = g->grids[b];
        const float* x0 = bt.x0.data() + g->cu_lat[b];
        const float* ep = bt.eps.data() + g->cu_lat[b];
        const int* fm = bt.frame_mask.data() + g->cu_f[b];
        const DiTInputCoef k = dit_input_coef(g->obj, bt.t[b]);
        #pragma omp parallel for
        for (int p = 0; p < gr.n_patch; p++) {
            const int i = p / (gr.Hp * gr.Wp), r = (p / gr.Wp) % gr.Hp, cc = p % gr.Wp;
            float* row = g->patches.data() + (size_t)(g->cu_p[b] + p) * Cin * P;
            for (int ci = 0; ci < Cin; ci++)
                for (int a = 0; a < pt; a++)
                    for (int hh = 0; hh < ph; hh++)
                        for (int ww = 0; ww < pw; ww++) {
                            const int tt = i * pt + a, y = r * ph + hh, x = cc * pw + ww;
                            float val = 0.0f;
                            if (tt < gr.T && y < gr.H && x < gr.W) {
                                const size_t e = (((size_t)ci * gr.T + tt) * gr.H + y) * gr.W + x;
                                val = fm[tt] ? k.in_x0 * x0[e] + k.in_eps * ep[e] : k.in_clean * x0[e];
                            }
                            row[((ci * pt + a) * ph + hh) * pw + ww] = val;
                        }
        }
    }
    matmul_forward(g->patch_tokens.data(), g->patches.data(), dit_param(g, "x_embedder.proj.weight"), dit_param(g, "x_embedder.proj.bias"), Np, Cin * P, C);
    for (int b = 0; b < B; b++) {
        float* x = g->res.data() + (size_t)g->cu_x[b] * C;
        memcpy(x, dit_param(g, "start_token"), C * sizeof(float));
        memcpy(x + C, g->patch_tokens.data() + (size_t)g->cu_p[b] * C, (size_t)g->grids[b].n_patch * C * sizeof(float));
        memcpy(x + (size_t)(g->grids[b].L - 1) * C, dit_param(g, "end_token"), C * sizeof(float));
    }

    const int ms = 6 * C;
    for (int l = 0; l < L; l++) {
        const float* tab = dit_param(g, "blocks.scale_shift_table") + (size_t)l * 6 * C;
        const float* x = g->res.data() + (size_t)l * N * C;
        float* ln1 = g->ln1.data() + (size_t)l * N * C;
        float* ln1r = g->ln1r.data() + (size_t)l * N;
        float* h1 = g->h1.data() + (size_t)l * N * C;
        float* qkv = g->qkv.data() + (size_t)l * N * 3 * C;
        float* qkvr = g->qkvr.data() + (size_t)l * N * 3 * C;
        float* att = g->att.data() + (size_t)l * g->att_off[B];
        float* atty = g->atty.data() + (size_t)l * N * C;
        float* o1 = g->o1.data() + (size_t)l * N * C;
        float* res1 = g->res1.data() + (size_t)l * N * C;
        float* lna = g->lna.data() + (size_t)l * N * C;
        float* lnar = g->lnar.data() + (size_t)l * N;
        float* ha = g->ha.data() + (size_t)l * N * C;
        float* cq = g->cq.data() + (size_t)l * N * C;
        float* cqn = g->cqn.data() + (size_t)l * N * C;
        float* ckv = g->ckv.data() + (size_t)l * Nt * 2 * C;
        float* ckvn = g->ckvn.data() + (size_t)l * Nt * 2 * C;
        float* catt = g->catt.data() + (size_t)l * g->catt_off[B];
        float* catty = g->catty.data() + (size_t)l * N * C;
        float* res2 = g->res2.data() + (size_t)l * N * C;
        float* ln2 = g->ln2.data() + (size_t)l * N * C;
        float* ln2r = g->ln2r.data() + (size_t)l * N;
        float* h2 = g->h2.data() + (size_t)l * N * C;
        float* f1 = g->f1.data() + (size_t)l * N * F;
        float* f1g = g->f1g.data() + (size_t)l * N * F;
        float* o2 = g->o2.data() + (size_t)l * N * C;
        float* xout = g->res.data() + (size_t)(l + 1) * N * C;
        auto P_ = [&](const char* n, size_t per) { return dit_param(g, n) + (size_t)l * per; };

        // self-attention: x += gate1 * proj(attn(rope(qknorm(qkv(LN(x)*(1+scale1)+shift1)))))
        layernorm_forward(ln1, ln1r, x, N, C, eps);
        adaln_modulate_forward(h1, ln1, tab + 0 * C, tab + 1 * C, g->mods.data(), ms, 0 * C, 1 * C, g->tokrow.data(), N, C);
        matmul_forward(qkv, h1, P_("blocks.attn.qkv.weight", 3 * C * C), P_("blocks.attn.qkv.bias", 3 * C), N, C, 3 * C);
        qknorm_forward(qkvr, g->qr.data() + (size_t)l * N * nh, qkv, P_("blocks.attn.q_norm.weight", hd), N, 3 * C, nh, hd, eps);
        qknorm_forward(qkvr + C, g->kr.data() + (size_t)l * N * nh, qkv + C, P_("blocks.attn.k_norm.weight", hd), N, 3 * C, nh, hd, eps);
        for (int i = 0; i < N; i++) memcpy(qkvr + (size_t)i * 3 * C + 2 * C, qkv + (size_t)i * 3 * C + 2 * C, C * sizeof(float));
        rope3d_forward(qkvr, g->rope_cos.data(), g->rope_sin.data(), N, 3 * C, 2 * nh, hd);   // q heads then k heads
        attention_forward(atty, att, qkvr, 3 * C, qkvr + C, qkvr + 2 * C, 3 * C, g->cu_x.data(), g->cu_x.data(),
                          g->att_off.data(), B, nh, hd);
        matmul_forward(o1, atty, P_("blocks.attn.proj.weight", C * C), P_("blocks.attn.proj.bias", C), N, C, C);
        adaln_gate_residual_forward(res1, x, o1, tab + 2 * C, g->mods.data(), ms, 2 * C, g->tokrow.data(), N, C);

        // cross-attention: x += proj(attn(qnorm(q_linear(LNa(x))), knorm(kv_linear(y))))
        layernorm_affine_forward(ha, lna, lnar, res1, P_("blocks.cross_attn_norm.weight", C), P_("blocks.cross_attn_norm.bias", C), N, C, eps);
        matmul_forward(cq, ha, P_("blocks.cross_attn.q_linear.weight", C * C), P_("blocks.cross_attn.q_linear.bias", C), N, C, C);
        qknorm_forward(cqn, g->cqr.data() + (size_t)l * N * nh, cq, P_("blocks.cross_attn.q_norm.weight", hd), N, C, nh, hd, eps);
        matmul_forward(ckv, g->y.data(), P_("blocks.cross_attn.kv_linear.weight", 2 * C * C), P_("blocks.cross_attn.kv_linear.bias", 2 * C), Nt, C, 2 * C);
        qknorm_forward(ckvn, g->ckr.data() + (size_t)l * Nt * nh, ckv, P_("blocks.cross_attn.k_norm.weight", hd), Nt, 2 * C, nh, hd, eps);
        for (int i = 0; i < Nt; i++) memcpy(ckvn + (size_t)i * 2 * C + C, ckv + (size_t)i * 2 * C + C, C * sizeof(float));
        attention_forward(catty, catt, cqn, C, ckvn, ckvn + C, 2 * C, g->cu_x.data(), g->cu_t.data(), g->catt_off.data(), B, nh, hd);
        matmul_forward(res2, catty, P_("blocks.cross_attn.proj.weight", C * C), P_("blocks.cross_attn.proj.bias", C), N, C, C);
        for (size_t e = 0; e < (size_t)N * C; e++) res2[e] += res1[e];

        // MLP: x += gate2 * fc2(gelu(fc1(LN(x)*(1+scale2)+shift2)))
        layernorm_forward(ln2, ln2r, res2, N, C, eps);
        adaln_modulate_forward(h2, ln2, tab + 3 * C, tab + 4 * C, g->mods.data(), ms, 3 * C, 4 * C, g->tokrow.data(), N, C);
        matmul_forward(f1, h2, P_("blocks.mlp.fc1.weight", (size_t)F * C), P_("blocks.mlp.fc1.bias", F), N, C, F);
        gelu_forward(f1g, f1, (size_t)N * F);
        matmul_forward(o2, f1g, P_("blocks.mlp.fc2.weight", (size_t)C * F), P_("blocks.mlp.fc2.bias", C), N, F, C);
        adaln_gate_residual_forward(xout, res2, o2, tab + 5 * C, g->mods.data(), ms, 5 * C, g->tokrow.data(), N, C);
    }

    // final layer on the patch tokens: LN * (1 + scale) + shift with [shift, scale] = table_f + (c or c0)
    const float* xl = g->res.data() + (size_t)L * N * C;
    for (int b = 0; b < B; b++)
        memcpy(g->patch_tokens.data() + (size_t)g->cu_p[b] * C, xl + (size_t)(g->cu_x[b] + 1) * C,
               (size_t)g->grids[b].n_patch * C * sizeof(float));
    const float* tf = dit_param(g, "final_layer.scale_shift_table");
    layernorm_forward(g->lnf.data(), g->lnfr.data(), g->patch_tokens.data(), Np, C, eps);
    adaln_modulate_forward(g->final_in.data(), g->lnf.data(), tf, tf + C, g->cond.data(), C, 0, 0, g->patrow.data(), Np, C);
    matmul_forward(g->out.data(), g->final_in.data(), dit_param(g, "final_layer.linear.weight"), dit_param(g, "final_layer.linear.bias"), Np, C, P * Cout);

    // unpatchify (patch feature ((tp*ph + hp)*pw + wp)*Cout + co), crop, loss on the noisy frames
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const DiTGrid& gr = g->grids[b];
        float* vp = g->v_pred.data() + g->cu_out[b];
        for (int p = 0; p < gr.n_patch; p++) {
            const int i = p / (gr.Hp * gr.Wp), r = (p / gr.Wp) % gr.Hp, cc = p % gr.Wp;
            const float* o = g->out.data() + (size_t)(g->cu_p[b] + p) * P * Cout;
            for (int a = 0; a < pt; a++)
                for (int hh = 0; hh < ph; hh++)
                    for (int ww = 0; ww < pw; ww++) {
                        const int tt = i * pt + a, y = r * ph + hh, x = cc * pw + ww;
                        if (tt >= gr.T || y >= gr.H || x >= gr.W) continue;
                        for (int co = 0; co < Cout; co++)
                            vp[(((size_t)co * gr.T + tt) * gr.H + y) * gr.W + x] = o[((a * ph + hh) * pw + ww) * Cout + co];
                    }
        }
        const float* x0 = bt.x0.data() + g->cu_lat[b];
        const float* ep = bt.eps.data() + g->cu_lat[b];
        const int* fm = bt.frame_mask.data() + g->cu_f[b];
        const size_t hw = (size_t)gr.H * gr.W;
        double s = 0.0;
        int nf = 0;
        for (int tt = 0; tt < gr.T; tt++) {
            if (!fm[tt]) continue;
            nf++;
            for (int ci = 0; ci < Cin; ci++)
                for (size_t k = 0; k < hw; k++) {
                    const size_t e = ((size_t)ci * gr.T + tt) * hw + k;
                    const float d = dit_cpu_residual(g, b, vp[e], x0[e], ep[e]);
                    s += (double)d * d;
                }
        }
        if (g->obj.kind == DIT_OBJECTIVE_EDM) s *= g->pre[b].weight;
        g->sample_loss[b] = s / ((double)nf * Cin * hw);
        total += g->sample_loss[b];
    }
    return (float)(total / B);
}

void dit_cpu_zero_grad(DiTCpu* g) { std::fill(g->grads.begin(), g->grads.end(), 0.0f); }

// Adds the gradient of the loss of the last forward to g->grads.
void dit_cpu_backward(DiTCpu* g) {
    const DiTConfig& c = g->cfg;
    const DiTBatch& bt = g->batch;
    const int B = g->B, N = g->N, Np = g->Np, Nt = g->Nt, C = c.d_model, L = c.n_layer, nh = c.n_head;
    const int hd = c.head_dim, F = c.ffn_hidden, Fq = c.freq_dim, Cy = c.caption_channels, Cin = c.in_channels;
    const int Cout = c.out_channels, pt = c.patch_t, ph = c.patch_h, pw = c.patch_w, P = dit_patch_size(c);
    const int ms = 6 * C;
    auto zero = [](std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); };

    // d loss / d out: 2 (v_pred - v) / (noisy frames * Cin * H * W) / B on noisy frames, channels < Cin
    // (edm: 2 lambda c_out (D - x0) / ...); zero elsewhere (channels >= Cin, clean frames, padding)
    zero(g->dout);
    for (int b = 0; b < B; b++) {
        const DiTGrid& gr = g->grids[b];
        const float* vp = g->v_pred.data() + g->cu_out[b];
        const float* x0 = bt.x0.data() + g->cu_lat[b];
        const float* ep = bt.eps.data() + g->cu_lat[b];
        const int* fm = bt.frame_mask.data() + g->cu_f[b];
        int nf = 0;
        for (int tt = 0; tt < gr.T; tt++) nf += fm[tt];
        const double kd = 2.0 / ((double)nf * Cin * gr.H * gr.W * B);
        const float k = (float)(g->obj.kind == DIT_OBJECTIVE_EDM ? kd * g->pre[b].weight * g->pre[b].c_out : kd);
        for (int p = 0; p < gr.n_patch; p++) {
            const int i = p / (gr.Hp * gr.Wp), r = (p / gr.Wp) % gr.Hp, cc = p % gr.Wp;
            float* d = g->dout.data() + (size_t)(g->cu_p[b] + p) * P * Cout;
            for (int a = 0; a < pt; a++)
                for (int hh = 0; hh < ph; hh++)
                    for (int ww = 0; ww < pw; ww++) {
                        const int tt = i * pt + a, y = r * ph + hh, x = cc * pw + ww;
                        if (tt >= gr.T || y >= gr.H || x >= gr.W || !fm[tt]) continue;
                        for (int ci = 0; ci < Cin; ci++) {
                            const size_t e = (((size_t)ci * gr.T + tt) * gr.H + y) * gr.W + x;
                            d[((a * ph + hh) * pw + ww) * Cout + ci] = k * dit_cpu_residual(g, b, vp[e], x0[e], ep[e]);
                        }
                    }
        }
    }

    // final layer
    zero(g->dfinal_in);
    zero(g->dcond);
    matmul_backward(g->dfinal_in.data(), dit_grad(g, "final_layer.linear.weight"), dit_grad(g, "final_layer.linear.bias"),
                    g->dout.data(), g->final_in.data(), dit_param(g, "final_layer.linear.weight"), Np, C, P * Cout);
    const float* tf = dit_param(g, "final_layer.scale_shift_table");
    float* dtf = dit_grad(g, "final_layer.scale_shift_table");
    adaln_modulate_backward(g->dln.data(), dtf, dtf + C, g->dcond.data(), g->dfinal_in.data(), g->lnf.data(), tf + C,
                            g->cond.data(), C, 0, 0, g->patrow.data(), Np, C);
    zero(g->dpatch_tokens);
    layernorm_backward(g->dpatch_tokens.data(), g->dln.data(), g->lnf.data(), g->lnfr.data(), Np, C);
    zero(g->dres);   // gradient of the residual stream, carried down through the layers
    for (int b = 0; b < B; b++)
        memcpy(g->dres.data() + (size_t)(g->cu_x[b] + 1) * C, g->dpatch_tokens.data() + (size_t)g->cu_p[b] * C,
               (size_t)g->grids[b].n_patch * C * sizeof(float));

    zero(g->dmods);
    zero(g->dy);
    float* dres = g->dres.data();
    for (int l = L - 1; l >= 0; l--) {
        const float* tab = dit_param(g, "blocks.scale_shift_table") + (size_t)l * 6 * C;
        float* dtab = dit_grad(g, "blocks.scale_shift_table") + (size_t)l * 6 * C;
        auto P_ = [&](const char* n, size_t per) { return dit_param(g, n) + (size_t)l * per; };
        auto G_ = [&](const char* n, size_t per) { return dit_grad(g, n) + (size_t)l * per; };
        const float* x = g->res.data() + (size_t)l * N * C;
        const float* ln1 = g->ln1.data() + (size_t)l * N * C;
        const float* ln1r = g->ln1r.data() + (size_t)l * N;
        const float* h1 = g->h1.data() + (size_t)l * N * C;
        const float* qkv = g->qkv.data() + (size_t)l * N * 3 * C;
        const float* qkvr = g->qkvr.data() + (size_t)l * N * 3 * C;
        const float* att = g->att.data() + (size_t)l * g->att_off[B];
        const float* atty = g->atty.data() + (size_t)l * N * C;
        const float* o1 = g->o1.data() + (size_t)l * N * C;
        const float* res1 = g->res1.data() + (size_t)l * N * C;
        const float* lna = g->lna.data() + (size_t)l * N * C;
        const float* lnar = g->lnar.data() + (size_t)l * N;
        const float* ha = g->ha.data() + (size_t)l * N * C;
        const float* cq = g->cq.data() + (size_t)l * N * C;
        const float* cqn = g->cqn.data() + (size_t)l * N * C;
        const float* ckv = g->ckv.data() + (size_t)l * Nt * 2 * C;
        const float* ckvn = g->ckvn.data() + (size_t)l * Nt * 2 * C;
        const float* catt = g->catt.data() + (size_t)l * g->catt_off[B];
        const float* catty = g->catty.data() + (size_t)l * N * C;
        const float* res2 = g->res2.data() + (size_t)l * N * C;
        const float* ln2 = g->ln2.data() + (size_t)l * N * C;
        const float* ln2r = g->ln2r.data() + (size_t)l * N;
        const float* h2 = g->h2.data() + (size_t)l * N * C;
        const float* f1 = g->f1.data() + (size_t)l * N * F;
        const float* f1g = g->f1g.data() + (size_t)l * N * F;
        const float* o2 = g->o2.data() + (size_t)l * N * C;

        // MLP branch: xout = res2 + gate2 * o2; dres = d xout
        adaln_gate_residual_backward(g->dO.data(), dtab + 5 * C, g->dmods.data(), dres, o2, tab + 5 * C, g->mods.data(), ms,
                                     5 * C, g->tokrow.data(), N, C);
        zero(g->df1g);
        matmul_backward(g->df1g.data(), G_("blocks.mlp.fc2.weight", (size_t)C * F), G_("blocks.mlp.fc2.bias", C),
                        g->dO.data(), f1g, P_("blocks.mlp.fc2.weight", (size_t)C * F), N, F, C);
        gelu_backward(g->df1.data(), g->df1g.data(), f1, (size_t)N * F);
        zero(g->dh);
        matmul_backward(g->dh.data(), G_("blocks.mlp.fc1.weight", (size_t)F * C), G_("blocks.mlp.fc1.bias", F),
                        g->df1.data(), h2, P_("blocks.mlp.fc1.weight", (size_t)F * C), N, C, F);
        adaln_modulate_backward(g->dln.data(), dtab + 3 * C, dtab + 4 * C, g->dmods.data(), g->dh.data(), ln2, tab + 4 * C,
                                g->mods.data(), ms, 3 * C, 4 * C, g->tokrow.data(), N, C);
        layernorm_backward(dres, g->dln.data(), ln2, ln2r, N, C);
        // now dres = d res2. Cross-attention branch: res2 = res1 + proj(catty)
        zero(g->datty);
        matmul_backward(g->datty.data(), G_("blocks.cross_attn.proj.weight", C * C), G_("blocks.cross_attn.proj.bias", C),
                        dres, catty, P_("blocks.cross_attn.proj.weight", C * C), N, C, C);
        zero(g->dcqn);
        zero(g->dckvn);
        attention_backward(g->dcqn.data(), g->dckvn.data(), g->dckvn.data() + C, g->datty.data(), cqn, C, ckvn,
                           ckvn + C, 2 * C, catt, g->cu_x.data(), g->cu_t.data(), g->catt_off.data(), B, nh, hd);
        qknorm_backward(g->dcq.data(), G_("blocks.cross_attn.q_norm.weight", hd), g->dcqn.data(), cq,
                        P_("blocks.cross_attn.q_norm.weight", hd), g->cqr.data() + (size_t)l * N * nh, N, C, nh, hd);
        qknorm_backward(g->dckv.data(), G_("blocks.cross_attn.k_norm.weight", hd), g->dckvn.data(), ckv,
                        P_("blocks.cross_attn.k_norm.weight", hd), g->ckr.data() + (size_t)l * Nt * nh, Nt, 2 * C, nh, hd);
        for (int i = 0; i < Nt; i++)
            memcpy(g->dckv.data() + (size_t)i * 2 * C + C, g->dckvn.data() + (size_t)i * 2 * C + C, C * sizeof(float));
        matmul_backward(g->dy.data(), G_("blocks.cross_attn.kv_linear.weight", 2 * C * C),
                        G_("blocks.cross_attn.kv_linear.bias", 2 * C), g->dckv.data(), g->y.data(),
                        P_("blocks.cross_attn.kv_linear.weight", 2 * C * C), Nt, C, 2 * C);
        zero(g->dh);
        matmul_backward(g->dh.data(), G_("blocks.cross_attn.q_linear.weight", C * C), G_("blocks.cross_attn.q_linear.bias", C),
                        g->dcq.data(), ha, P_("blocks.cross_attn.q_linear.weight", C * C), N, C, C);
        layernorm_affine_backward(dres, G_("blocks.cross_attn_norm.weight", C), G_("blocks.cross_attn_norm.bias", C),
                                  g->dln.data(), g->dh.data(), lna, P_("blocks.cross_attn_norm.weight", C), lnar, N, C);
        // now dres = d res1. Self-attention branch: res1 = x + gate1 * o1
        adaln_gate_residual_backward(g->dO.data(), dtab + 2 * C, g->dmods.data(), dres, o1, tab + 2 * C, g->mods.data(), ms,
                                     2 * C, g->tokrow.data(), N, C);
        zero(g->datty);
        matmul_backward(g->datty.data(), G_("blocks.attn.proj.weight", C * C), G_("blocks.attn.proj.bias", C),
                        g->dO.data(), atty, P_("blocks.attn.proj.weight", C * C), N, C, C);
        zero(g->dqkvr);
        attention_backward(g->dqkvr.data(), g->dqkvr.data() + C, g->dqkvr.data() + 2 * C, g->datty.data(), qkvr, 3 * C,
                           qkvr + C, qkvr + 2 * C, 3 * C, att, g->cu_x.data(), g->cu_x.data(), g->att_off.data(), B, nh, hd);
        rope3d_backward(g->dqkvr.data(), g->rope_cos.data(), g->rope_sin.data(), N, 3 * C, 2 * nh, hd);
        qknorm_backward(g->dqkv.data(), G_("blocks.attn.q_norm.weight", hd), g->dqkvr.data(), qkv,
                        P_("blocks.attn.q_norm.weight", hd), g->qr.data() + (size_t)l * N * nh, N, 3 * C, nh, hd);
        qknorm_backward(g->dqkv.data() + C, G_("blocks.attn.k_norm.weight", hd), g->dqkvr.data() + C, qkv + C,
                        P_("blocks.attn.k_norm.weight", hd), g->kr.data() + (size_t)l * N * nh, N, 3 * C, nh, hd);
        for (int i = 0; i < N; i++)
            memcpy(g->dqkv.data() + (size_t)i * 3 * C + 2 * C, g->dqkvr.data() + (size_t)i * 3 * C + 2 * C, C * sizeof(float));
        zero(g->dh);
        matmul_backward(g->dh.data(), G_("blocks.attn.qkv.weight", 3 * C * C), G_("blocks.attn.qkv.bias", 3 * C),
                        g->dqkv.data(), h1, P_("blocks.attn.qkv.weight", 3 * C * C), N, C, 3 * C);
        adaln_modulate_backward(g->dln.data(), dtab + 0 * C, dtab + 1 * C, g->dmods.data(), g->dh.data(), ln1, tab + 1 * C,
                                g->mods.data(), ms, 0 * C, 1 * C, g->tokrow.data(), N, C);
        layernorm_backward(dres, g->dln.data(), ln1, ln1r, N, C);
        // now dres = d x, the gradient entering layer l
        (void)x; (void)res1; (void)res2;
    }

    // tokens: start, end, patch embedding
    float* dstart = dit_grad(g, "start_token");
    float* dend = dit_grad(g, "end_token");
    for (int b = 0; b < B; b++) {
        const float* d0 = dres + (size_t)g->cu_x[b] * C;
        const float* d1 = dres + (size_t)(g->cu_x[b + 1] - 1) * C;
        for (int k = 0; k < C; k++) { dstart[k] += d0[k]; dend[k] += d1[k]; }
        memcpy(g->dpatch.data() + (size_t)g->cu_p[b] * C, d0 + C, (size_t)g->grids[b].n_patch * C * sizeof(float));
    }
    matmul_backward(nullptr, dit_grad(g, "x_embedder.proj.weight"), dit_grad(g, "x_embedder.proj.bias"),
                    g->dpatch.data(), g->patches.data(), dit_param(g, "x_embedder.proj.weight"), Np, Cin * P, C);

    // caption embedder (dy summed over the layers' kv projections)
    zero(g->dcap_fc2);
    layernorm_backward(g->dcap_fc2.data(), g->dy.data(), g->y.data(), g->y_rstd.data(), Nt, C);
    zero(g->dcap_gelu);
    matmul_backward(g->dcap_gelu.data(), dit_grad(g, "y_embedder.y_proj.fc2.weight"), dit_grad(g, "y_embedder.y_proj.fc2.bias"),
                    g->dcap_fc2.data(), g->cap_gelu.data(), dit_param(g, "y_embedder.y_proj.fc2.weight"), Nt, C, C);
    gelu_backward(g->dcap_fc1.data(), g->dcap_gelu.data(), g->cap_fc1.data(), (size_t)Nt * C);
    matmul_backward(nullptr, dit_grad(g, "y_embedder.y_proj.fc1.weight"), dit_grad(g, "y_embedder.y_proj.fc1.bias"),
                    g->dcap_fc1.data(), g->cap_normed.data(), dit_param(g, "y_embedder.y_proj.fc1.weight"), Nt, Cy, C);

    // conditioning: mods = t_block(SiLU(cond)); cond rows 2b (c) and 2b+1 (c0) = temb row + femb[b]
    zero(g->dconds);
    matmul_backward(g->dconds.data(), dit_grad(g, "t_block.1.weight"), dit_grad(g, "t_block.1.bias"), g->dmods.data(),
                    g->conds.data(), dit_param(g, "t_block.1.weight"), 2 * B, C, 6 * C);
    silu_backward(g->dcond.data(), g->dconds.data(), g->cond.data(), g->cond.size());   // dcond has the final layer's part
    zero(g->dfemb);
    for (int r = 0; r < 2 * B; r++)
        for (int k = 0; k < C; k++) g->dfemb[(size_t)(r / 2) * C + k] += g->dcond[(size_t)r * C + k];
    zero(g->dt_hidden_silu);
    matmul_backward(g->dt_hidden_silu.data(), dit_grad(g, "t_embedder.mlp.2.weight"), dit_grad(g, "t_embedder.mlp.2.bias"),
                    g->dcond.data(), g->t_hidden_silu.data(), dit_param(g, "t_embedder.mlp.2.weight"), 2 * B, C, C);
    zero(g->dt_hidden);
    silu_backward(g->dt_hidden.data(), g->dt_hidden_silu.data(), g->t_hidden.data(), g->t_hidden.size());
    matmul_backward(nullptr, dit_grad(g, "t_embedder.mlp.0.weight"), dit_grad(g, "t_embedder.mlp.0.bias"),
                    g->dt_hidden.data(), g->tfreq.data(), dit_param(g, "t_embedder.mlp.0.weight"), 2 * B, Fq, C);
    zero(g->dfps_hidden_silu);
    matmul_backward(g->dfps_hidden_silu.data(), dit_grad(g, "fps_embedder.mlp.2.weight"), dit_grad(g, "fps_embedder.mlp.2.bias"),
                    g->dfemb.data(), g->fps_hidden_silu.data(), dit_param(g, "fps_embedder.mlp.2.weight"), B, C, C);
    zero(g->dfps_hidden);
    silu_backward(g->dfps_hidden.data(), g->dfps_hidden_silu.data(), g->fps_hidden.data(), g->fps_hidden.size());
    matmul_backward(nullptr, dit_grad(g, "fps_embedder.mlp.0.weight"), dit_grad(g, "fps_embedder.mlp.0.bias"),
                    g->dfps_hidden.data(), g->ffreq.data(), dit_param(g, "fps_embedder.mlp.0.weight"), B, Fq, C);
}

// sqrt(sum of all grad^2), summed in double.
float dit_cpu_grad_norm(const DiTCpu* g) {
    double s = 0.0;
    #pragma omp parallel for reduction(+ : s)
    for (size_t i = 0; i < g->num_params; i++) s += (double)g->grads[i] * g->grads[i];
    return (float)sqrt(s);
}

// Global-norm clipping then AdamW (torch semantics), step t >= 1. clip <= 0
// turns clipping off. Returns the grad norm before clipping.
float dit_cpu_update(DiTCpu* g, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_clip,
                     int t) {
    const float norm = dit_cpu_grad_norm(g);
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

// ----------------------------------------------------------------------------
// EDM's deterministic Heun sampler (docs/dit.md "Sampling"), the reference of
// train_dit.cu's: z = sigma_max noise on the float noise levels of
// edm_sigma_steps; D(z; s) = c_skip z + c_out F with F the network on x0 = z,
// eps = 0 (its input is then c_in z, clean frames z / sigma_data); guidance
// D = D_u + cfg (D_c - D_u) with the null caption (cfg 1: no uncond pass);
// d = (z - D) / s_i, z' = z + (s_{i+1} - s_i) d, and unless s_{i+1} = 0 the
// correction z <- z + (s_{i+1} - s_i) (d + d') / 2; image-to-video frame 0 is put
// back after every update. Host arithmetic in float.

struct DiTCpuPrompt {
    int T = 0, H = 0, W = 0;
    float fps = 24.0f;
    std::vector<float> text;          // [text_len, Cy]
    std::vector<float> first_frame;   // [Cin, H, W]: image-to-video; empty: text-to-video
};

// The first `keep` steps of a `steps`-step schedule from the given N(0,1) noise
// (packed [Cin, T, H, W] per prompt); returns the packed clips after each step.
std::vector<std::vector<float>> dit_cpu_edm_sample(DiTCpu* g, const std::vector<DiTCpuPrompt>& prompts, const std::vector<float>& noise,
                                                   const std::vector<float>& null_text, int steps, float cfg, int keep) {
    const DiTConfig& c = g->cfg;
    const int n = (int)prompts.size(), Cin = c.in_channels, Cy = c.caption_channels;
    if (g->obj.kind != DIT_OBJECTIVE_EDM) fail("dit_cpu_edm_sample: the model's objective is %s", dit_objective_name(g->obj.kind));
    if (steps <= 0 || keep < 0 || keep > steps) fail("dit_cpu_edm_sample: steps %d, keep %d (expected 0 <= keep <= steps, steps > 0)", steps, keep);
    if (null_text.size() != (size_t)Cy) fail("dit_cpu_edm_sample: null caption has %zu floats (expected %d)", null_text.size(), Cy);
    std::vector<size_t> off(n + 1, 0);
    for (int k = 0; k < n; k++) off[k + 1] = off[k] + (size_t)Cin * prompts[k].T * prompts[k].H * prompts[k].W;
    if (noise.size() != off[n]) fail("dit_cpu_edm_sample: noise has %zu floats (expected %zu)", noise.size(), off[n]);
    const bool guided = cfg != 1.0f;
    const std::vector<double> sd = edm_sigma_steps(g->obj, steps);
    std::vector<float> sig(sd.begin(), sd.end());
    auto pin = [&](std::vector<float>& z) {
        for (int k = 0; k < n; k++) {
            const DiTCpuPrompt& q = prompts[k];
            if (q.first_frame.empty()) continue;
            const size_t plane = (size_t)q.H * q.W;
            for (int ch = 0; ch < Cin; ch++)
                std::copy(q.first_frame.begin() + ch * plane, q.first_frame.begin() + (ch + 1) * plane, z.begin() + off[k] + (size_t)ch * q.T * plane);
        }
    };
    auto denoise = [&](const std::vector<float>& z, float sigma) {
        DiTBatch bt;
        for (int pass = 0; pass < (guided ? 2 : 1); pass++)
            for (int k = 0; k < n; k++) {
                const DiTCpuPrompt& q = prompts[k];
                const std::vector<float>& tx = pass == 0 ? q.text : null_text;
                bt.T.push_back(q.T); bt.H.push_back(q.H); bt.W.push_back(q.W);
                bt.text_len.push_back((int)(tx.size() / Cy)); bt.text.insert(bt.text.end(), tx.begin(), tx.end());
                bt.has_mask.push_back(q.first_frame.empty() ? 0 : 1);
                for (int f = 0; f < q.T; f++) bt.frame_mask.push_back(!q.first_frame.empty() && f == 0 ? 0 : 1);
                bt.t.push_back(sigma); bt.fps.push_back(q.fps);
                bt.x0.insert(bt.x0.end(), z.begin() + off[k], z.begin() + off[k + 1]);
            }
        bt.B = (int)bt.T.size();
        bt.eps.assign(bt.x0.size(), 0.0f);
        dit_cpu_forward(g, bt);
        const EdmPrecond p = edm_precond(sigma, g->obj.sigma_data);
        const float c_skip = (float)p.c_skip, c_out = (float)p.c_out;
        std::vector<float> D(z.size());
        for (int k = 0; k < n; k++) {
            const float* fc = g->v_pred.data() + g->cu_out[k];   // the first Cin channels are F
            const float* fu = guided ? g->v_pred.data() + g->cu_out[n + k] : nullptr;
            for (size_t e = 0; e < off[k + 1] - off[k]; e++) {
                const float zk = z[off[k] + e], dc = c_skip * zk + c_out * fc[e];
                if (!guided) { D[off[k] + e] = dc; continue; }
                const float du = c_skip * zk + c_out * fu[e];
                D[off[k] + e] = du + cfg * (dc - du);
            }
        }
        return D;
    };
    std::vector<float> z(off[n]);
    for (size_t e = 0; e < z.size(); e++) z[e] = sig[0] * noise[e];
    pin(z);
    std::vector<std::vector<float>> out;
    for (int i = 0; i < keep; i++) {
        const float s0 = sig[i], s1 = sig[i + 1], h = s1 - s0;
        const std::vector<float> D0 = denoise(z, s0);
        std::vector<float> d0(z.size()), z1(z.size());
        for (size_t e = 0; e < z.size(); e++) { d0[e] = (z[e] - D0[e]) / s0; z1[e] = z[e] + h * d0[e]; }
        pin(z1);
        if (s1 > 0) {
            const std::vector<float> D1 = denoise(z1, s1);
            for (size_t e = 0; e < z.size(); e++) z1[e] = z[e] + h * 0.5f * (d0[e] + (z1[e] - D1[e]) / s1);
            pin(z1);
        }
        z = z1;
        out.push_back(z);
    }
    return out;
}

// ----------------------------------------------------------------------------
// reading the reference files of dev/reference/dit.py (test/data/dit_*.mgt)

static DiTConfig dit_config_from_reference(const TensorFile& tf) {
    const std::vector<int32_t>& ci = tf.i32("config");
    const std::vector<float>& cf = tf.f32("config_f");
    if (ci.size() != 18 || cf.size() != 4) fail("%s: config has %zu/%zu fields (expected 18/4)", tf.path.c_str(), ci.size(), cf.size());
    DiTConfig c;
    c.d_model = ci[0]; c.n_layer = ci[1]; c.n_head = ci[2]; c.head_dim = ci[3]; c.ffn_hidden = ci[4];
    c.in_channels = ci[5]; c.out_channels = ci[6]; c.caption_channels = ci[7]; c.patch_t = ci[8]; c.patch_h = ci[9];
    c.patch_w = ci[10]; c.max_text_len = ci[11]; c.rope_max_t = ci[12]; c.rope_max_hw = ci[13]; c.freq_dim = ci[14];
    c.mlp_ratio = cf[0]; c.norm_eps = cf[1]; c.rope_theta = cf[2]; c.freq_max_period = cf[3];
    dit_config_finalize(&c);
    return c;
}

// The objective of a reference file: rf unless it has "objective" (1: edm, with "edm" = sigma_data,
// p_mean, p_std, sigma_min, sigma_max, rho).
static DiTObjective dit_objective_from_reference(const TensorFile& tf) {
    DiTObjective o;
    if (!tf.has("objective")) return o;
    const std::vector<int32_t>& k = tf.i32("objective");
    if (k.size() != 1 || (k[0] != DIT_OBJECTIVE_RF && k[0] != DIT_OBJECTIVE_EDM))
        fail("%s: objective must be one int32, 0 (rf) or 1 (edm)", tf.path.c_str());
    o.kind = k[0];
    if (o.kind == DIT_OBJECTIVE_EDM) {
        const std::vector<float>& e = tf.f32("edm");
        if (e.size() != 6) fail("%s: edm has %zu values (expected 6)", tf.path.c_str(), e.size());
        o.sigma_data = e[0]; o.p_mean = e[1]; o.p_std = e[2]; o.sigma_min = e[3]; o.sigma_max = e[4]; o.rho = e[5];
        dit_objective_check_or_fail(o);
    }
    return o;
}

static DiTBatch dit_batch_from_reference(const TensorFile& tf, const DiTConfig& c) {
    const NamedTensor& shapes = tf.get("shapes");
    if (shapes.dtype != 1 || shapes.shape.size() != 2 || shapes.shape[1] != 3) fail("%s: shapes must be int32 [B,3]", tf.path.c_str());
    DiTBatch bt;
    bt.B = shapes.shape[0];
    for (int b = 0; b < bt.B; b++) {
        bt.T.push_back(shapes.i[3 * b]); bt.H.push_back(shapes.i[3 * b + 1]); bt.W.push_back(shapes.i[3 * b + 2]);
    }
    bt.text_len = tf.i32("text_lens");
    bt.has_mask = tf.i32("has_mask");
    bt.frame_mask = tf.i32("frame_mask");
    bt.t = tf.f32("t");
    bt.fps = tf.f32("fps");
    bt.x0 = tf.f32("x0");
    bt.eps = tf.f32("eps");
    bt.text = tf.f32("text");
    dit_batch_check(c, bt, tf.path.c_str(), dit_objective_from_reference(tf).kind);
    return bt;
}

// Loads every parameter tensor of a reference file into g->params.
static void dit_params_from_reference(DiTCpu* g, const TensorFile& tf) {
    for (const ParamTensor& p : g->layout) {
        const std::vector<float>& v = tf.f32(p.name);
        if (v.size() != p.numel) fail("%s: tensor %s has %zu values (expected %zu)", tf.path.c_str(), p.name.c_str(), v.size(), p.numel);
        std::copy(v.begin(), v.end(), g->params.begin() + p.offset);
    }
}

#ifndef DIT_CPU_NO_MAIN
// ----------------------------------------------------------------------------
// training on the reference file's batch (a smoke run; a CPU training mode on
// a latent dataset comes with the data loader)

int main(int argc, char** argv) {
    // progress lines reach a redirected log (`> run.log`, a pipe) as they are printed, not in 4 KB blocks
    setvbuf(stdout, NULL, _IOLBF, 0);
    std::string ref = "test/data/dit_tiny.mgt";
    int steps = 10, init = 0, seed = 1337;
    float lr = 0.0f;
    ArgParser ap;
    ap.program = argv[0];
    ap.usage = std::string(argv[0]) + " [flags]: trains on a reference file's batch on the CPU (fp32 reference)";
    ap.section("training");
    ap.add_string("--ref", &ref, "reference tensor file (config, batch, parameters; its objective: rf, or edm for test/data/dit_tiny_edm.mgt)");
    ap.add_int("--steps", &steps, "optimizer steps on the same batch");
    ap.add_float("--lr", &lr, "AdamW learning rate (0: the file's)");
    ap.add_bool("--init", &init, "1: fresh init (dit_cpu_init_params) instead of the file's parameters");
    ap.add_int("--seed", &seed, "init seed (with --init 1)");
    if (!ap.parse(argc, argv)) { ap.print_help(); return 0; }
    if (steps < 0) fail("flag --steps: must be >= 0, got %d", steps);
    if (lr < 0) fail("flag --lr: must be >= 0");

    TensorFile tf = tensorfile_read(ref);
    DiTConfig cfg = dit_config_from_reference(tf);
    DiTBatch bt = dit_batch_from_reference(tf, cfg);
    const std::vector<float>& tr = tf.f32("train");
    if (tr.size() != 6) fail("%s: train has %zu values (expected 6)", ref.c_str(), tr.size());
    if (lr == 0.0f) lr = tr[0];

    DiTCpu g;
    dit_cpu_build(&g, cfg);
    g.obj = dit_objective_from_reference(tf);
    if (init) dit_cpu_init_params(&g, (uint64_t)seed);
    else dit_params_from_reference(&g, tf);
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    printf("DiT: C %d, L %d, heads %d x %d, F %d, Cin %d, Cout %d, Cy %d, patch %dx%dx%d, %zu params | %s | B %d | lr %g | %d threads\n",
           cfg.d_model, cfg.n_layer, cfg.n_head, cfg.head_dim, cfg.ffn_hidden, cfg.in_channels, cfg.out_channels,
           cfg.caption_channels, cfg.patch_t, cfg.patch_h, cfg.patch_w, g.num_params, dit_objective_name(g.obj.kind), bt.B, lr, threads);
    for (int step = 1; step <= steps; step++) {
        double t0 = wall_seconds();
        const float loss = dit_cpu_forward(&g, bt);
        dit_cpu_zero_grad(&g);
        dit_cpu_backward(&g);
        const float norm = dit_cpu_update(&g, lr, tr[1], tr[2], tr[3], tr[4], tr[5], step);
        printf("step %4d/%d | loss %.6f | grad norm %.4f | %.1f ms\n", step, steps, loss, norm, 1e3 * (wall_seconds() - t0));
    }
    return 0;
}
#endif
