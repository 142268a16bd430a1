/*
Check and benchmark of llmc/kernels/rope3d.cuh, the DiT's QK RMSNorm + interleaved 3D RoPE:
  qknorm_rope3d_forward:  per (token i, head j < nheads) of the input rows (stride in_stride):
                          y = x / sqrt(mean(x^2) + eps) * w (w = w_a for j < n_a, else w_b; rstd saved),
                          then with a table the pairs (y[2s], y[2s+1]) rotated by the token's angle a_s:
                          y'[2s] = y0 cos - y1 sin, y'[2s+1] = y1 cos + y0 sin; out rows of stride out_stride
  qknorm_rope3d_backward: g = R^T dout, dx = rstd * (w g - xhat * mean(w g xhat)), xhat = x * rstd
                          (only the heads of dinp's rows are written); dw_a / dw_b += sum of g * xhat
                          over tokens and over the heads of that weight
The three calls of train_dit.cu: self-attention (q and k heads of qkv [N, 3C] ->
[N, 2C], q_norm / k_norm, the 3D table), cross-attention q ([N, C] -> [N, C],
no table) and cross-attention k (the k half of kv [Nt, 2C] -> [Nt, C], no table).
The table is rope3d_table(cfg, grids) of packed samples (dit_grid of each latent
shape); the CPU reference takes cos/sin in double of angles from the positions
rule of llmc/model/dit_config.h, written out here (so the table is checked too).
Validated (every element) at small packed batches for hd 24, 48, 72, 144 (one
with the temporal position clamped by rope_max_t) and at the dit-s / 1B shapes;
timed at the last two. The backward has two versions, both checked and timed
("v1": one thread per (token, head) and a full fp32 scratch, kept here; "v2": the
trainer's, G lanes per head and per-block weight-gradient partials), and v2 is
checked bit-identical run to run.

  make dev/cuda/rope3d && ./dev/cuda/rope3d
*/
#include "common.h"
#include "../../llmc/core/reduce.cuh"
#include "../../llmc/kernels/rope3d.cuh"

// ---- qknorm_rope3d_backward version 1 (the trainer's earlier kernel), kept for
// comparison: one thread per (token, head) (a 144-byte row per lane, uncoalesced
// across the warp), g * xhat written to a full fp32 [N, nheads*hd] scratch, then
// column_reduce over the tokens and again over the heads.
// Version 1 backward, one thread per (token, head): g = R^T dout (the gradient of the normed, weighted values), then the
// RMSNorm backward dx = rstd * (w g - xhat * mean(w g xhat)), xhat = x * rstd.
// dnw [N, nheads*hd] fp32 receives g * xhat per element for the weight gradients.
template <int HD>
__global__ void qknorm_rope3d_backward_kernel_v1(floatX* __restrict__ dinp, float* __restrict__ dnw,
                                              const floatX* __restrict__ dout, int out_stride,
                                              const floatX* __restrict__ inp, int in_stride,
                                              const float* __restrict__ rstd, const floatX* __restrict__ w_a,
                                              const floatX* __restrict__ w_b, int n_a, int nheads,
                                              const float2* __restrict__ cs, int N) {
    const size_t item = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= (size_t)N * nheads) return;
    const int i = (int)(item / nheads), j = (int)(item % nheads);
    const floatX* w = j < n_a ? w_a : w_b;
    float g[HD];
    const floatX* dy = dout + (size_t)i * out_stride + (size_t)j * HD;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 p = load128(dy + c);
        for (int k = 0; k < x128::size; k++) g[c + k] = (float)p[k];
    }
    if (cs) {
        const float2* t = cs + (size_t)i * (HD / 2);
        #pragma unroll
        for (int s = 0; s < HD / 2; s++) {
            const float2 a = t[s];
            const float d0 = g[2 * s], d1 = g[2 * s + 1];
            g[2 * s] = d0 * a.x + d1 * a.y;
            g[2 * s + 1] = d1 * a.x - d0 * a.y;
        }
    }
    const float r = rstd[item];
    const floatX* x = inp + (size_t)i * in_stride + (size_t)j * HD;
    float* sc = dnw + item * HD;
    float dot = 0.0f;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 xv = load128(x + c), wv = load128(w + c);
        float4 s4[x128::size / 4];
        for (int k = 0; k < x128::size; k++) {
            const float xh = (float)xv[k] * r;
            (&s4[k / 4].x)[k % 4] = g[c + k] * xh;
            dot += g[c + k] * (float)wv[k] * xh;
        }
        for (int k = 0; k < x128::size / 4; k++) reinterpret_cast<float4*>(sc + c)[k] = s4[k];
    }
    dot /= HD;
    floatX* dx = dinp + (size_t)i * in_stride + (size_t)j * HD;
    #pragma unroll
    for (int c = 0; c < HD; c += x128::size) {
        const x128 xv = load128(x + c), wv = load128(w + c);
        x128 o;
        for (int k = 0; k < x128::size; k++) o[k] = (floatX)(r * ((float)wv[k] * g[c + k] - (float)xv[k] * r * dot));
        store128(dx + c, o);
    }
}

// Version 1 launcher: dinp (the heads of each row, stride in_stride) = gradient through rotation and
// norm (written); dw_a / dw_b [hd] += the weight gradients (heads j < n_a / the
// others; dw_b may be null when n_a == nheads). dnw: [N, nheads*hd] fp32 scratch;
// reduce_scratch: (COLUMN_REDUCE_SPLITS + 1) * nheads * hd floats. Deterministic.
static void qknorm_rope3d_backward_v1(floatX* dinp, float* dw_a, float* dw_b, const floatX* dout, int out_stride,
                                   const floatX* inp, int in_stride, const float* rstd, const floatX* w_a,
                                   const floatX* w_b, int n_a, int nheads, const float2* cs, int N, int hd, float* dnw,
                                   float* reduce_scratch, cudaStream_t stream) {
    NVTX_RANGE_FN();
    qknorm_rope3d_check(hd, in_stride, out_stride);
    if (N == 0) return;
    const size_t n = (size_t)N * nheads;
    ROPE3D_DISPATCH(hd, qknorm_rope3d_backward_kernel_v1, ceil_div(n, 128), 128, dinp, dnw, dout, out_stride, inp, in_stride, rstd, w_a, w_b, n_a,
                    nheads, cs, N);
    cudaLaunchCheck();
    // column sums of dnw viewed as [N, nheads*hd], then the heads folded per weight (fixed order)
    const int cols = nheads * hd;
    float* colsum = reduce_scratch;
    float* red = reduce_scratch + cols;
    cudaCheck(cudaMemsetAsync(colsum, 0, cols * sizeof(float), stream));
    column_reduce(colsum, dnw, (const float*)nullptr, nullptr, N, cols, red, stream);
    column_reduce(dw_a, colsum, (const float*)nullptr, nullptr, n_a, hd, red, stream);
    if (n_a < nheads) column_reduce(dw_b, colsum + (size_t)n_a * hd, (const float*)nullptr, nullptr, nheads - n_a, hd, red, stream);
}

// version 1: qknorm_rope3d_backward_v1 above; version 2: qknorm_rope3d_backward of llmc/kernels/rope3d.cuh (the trainer's)
typedef void (*Rope3dBwdFn)(floatX*, float*, float*, const floatX*, int, const floatX*, int, const float*, const floatX*,
                            const floatX*, int, int, const float2*, int, int, float*, float*, cudaStream_t);
// version 2 takes no reduce scratch (its weight-gradient partials live in dnw)
static void qknorm_rope3d_backward_v2(floatX* dinp, float* dw_a, float* dw_b, const floatX* dout, int out_stride,
                                      const floatX* inp, int in_stride, const float* rstd, const floatX* w_a,
                                      const floatX* w_b, int n_a, int nheads, const float2* cs, int N, int hd, float* dnw,
                                      float*, cudaStream_t stream) {
    qknorm_rope3d_backward(dinp, dw_a, dw_b, dout, out_stride, inp, in_stride, rstd, w_a, w_b, n_a, nheads, cs, N, hd, dnw, stream);
}
static const Rope3dBwdFn BWD_VERSIONS[2] = {qknorm_rope3d_backward_v1, qknorm_rope3d_backward_v2};

struct LatentShape {
    int T, H, W;
};

// cos/sin [N, hd/2] in double: positions (h, w, t) of every token (start (0, 0, 0);
// patch p of frame i, row r, column c: (r, c, min(i + 1, max_t - 1)); end (H'-1, W'-1,
// min(T'+1, max_t - 1))), slot s in three groups of hd/6: h, w, t; angle pos * theta^(-6k/hd)
static void rope3d_angles_cpu(std::vector<double>* cosv, std::vector<double>* sinv, const DiTConfig& c,
                              const std::vector<DiTGrid>& grids) {
    const int hd = c.head_dim, half = hd / 2, n6 = hd / 6, mt = c.rope_max_t - 1;
    cosv->clear();
    sinv->clear();
    for (const DiTGrid& g : grids)
        for (int j = 0; j < g.L; j++) {
            int pos[3];  // h, w, t
            if (j == 0) {
                pos[0] = pos[1] = pos[2] = 0;
            } else if (j == g.L - 1) {
                pos[0] = g.Hp - 1; pos[1] = g.Wp - 1; pos[2] = std::min(g.Tp + 1, mt);
            } else {
                const int p = j - 1;
                pos[0] = (p / g.Wp) % g.Hp; pos[1] = p % g.Wp; pos[2] = std::min(p / (g.Hp * g.Wp) + 1, mt);
            }
            for (int s = 0; s < half; s++) {
                const double a = pos[s / n6] * pow((double)c.rope_theta, -6.0 * (s % n6) / hd);
                cosv->push_back(cos(a));
                sinv->push_back(sin(a));
            }
        }
}

// One call of the pair: N rows, heads at the start of rows of in_stride / out_stride.
struct Variant {
    const char* name;
    int N, in_stride, out_stride, nheads, n_a;
    bool rope;
};

static void run_variant(const Variant& v, const DiTConfig& cfg, const float2* cs_d, const std::vector<double>& cosv,
                        const std::vector<double>& sinv, const std::string& shape0, bool timed, Rng* rng) {
    const int hd = cfg.head_dim, half = hd / 2, N = v.N, nheads = v.nheads, hc = nheads * hd;
    const float eps = cfg.norm_eps;
    const bool two = v.n_a < nheads;  // a second weight (k_norm)
    const std::string shape = strf("%s N=%d heads=%d hd=%d", shape0.c_str(), N, nheads, hd);
    const std::string fwd = strf("qknorm_rope3d_forward(%s)", v.name);
    if (v.out_stride != hc) fail("rope3d bench: out_stride must equal nheads * hd (every output element is checked)");
    const size_t nin = (size_t)N * v.in_stride, nout = (size_t)N * v.out_stride, nr = (size_t)N * nheads;
    const size_t nred = (size_t)(COLUMN_REDUCE_SPLITS + 1) * hc;
    floatX *inp = dev_alloc<floatX>(nin), *out = dev_alloc<floatX>(nout), *dout = dev_alloc<floatX>(nout), *dinp = dev_alloc<floatX>(nin);
    floatX *w_a = dev_alloc<floatX>(hd), *w_b = two ? dev_alloc<floatX>(hd) : nullptr;
    float *rstd = dev_alloc<float>(nr), *dw_a = dev_alloc<float>(hd), *dw_b = two ? dev_alloc<float>(hd) : nullptr;
    float *dnw = dev_alloc<float>(nr * hd), *red = dev_alloc<float>(nred);
    const float2* cs = v.rope ? cs_d : nullptr;
    fill_random(inp, nin, rng, 1.0f, 0.2f);
    fill_random(dout, nout, rng, 1.0f);
    fill_random(w_a, hd, rng, 0.2f, 1.0f);
    if (two) fill_random(w_b, hd, rng, 0.2f, 1.0f);
    const std::vector<float> xh = download(inp, nin), dyh = download(dout, nout), wah = download(w_a, hd);
    const std::vector<float> wbh = two ? download(w_b, hd) : wah;

    // ---- forward
    poison(out, nout);
    poison(rstd, nr);
    qknorm_rope3d_forward(out, v.out_stride, rstd, inp, v.in_stride, w_a, w_b, v.n_a, nheads, cs, N, hd, eps, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        std::vector<double> ro(nout), rr(nr), y(hd);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < nheads; j++) {
                const float* x = &xh[(size_t)i * v.in_stride + (size_t)j * hd];
                const float* w = j < v.n_a ? wah.data() : wbh.data();
                double ss = 0.0;
                for (int e = 0; e < hd; e++) ss += (double)x[e] * x[e];
                const double r = 1.0 / sqrt(ss / hd + eps);
                rr[(size_t)i * nheads + j] = r;
                for (int e = 0; e < hd; e++) y[e] = x[e] * r * w[e];
                double* o = &ro[(size_t)i * v.out_stride + (size_t)j * hd];
                for (int s = 0; s < half; s++) {
                    const double c = v.rope ? cosv[(size_t)i * half + s] : 1.0, sn = v.rope ? sinv[(size_t)i * half + s] : 0.0;
                    o[2 * s] = y[2 * s] * c - y[2 * s + 1] * sn;
                    o[2 * s + 1] = y[2 * s + 1] * c + y[2 * s] * sn;
                }
            }
        check(fwd.c_str(), "out", shape, download(out, nout), ro, TOL_X);
        check(fwd.c_str(), "rstd", shape, download(rstd, nr), rr, TOL_F32);
    }

    // ---- backward (rstd from the forward above), both versions. dinp: the heads poisoned,
    // the other columns (v of qkv, the v half of kv) random and checked unchanged.
    for (int ver = 1; ver <= 2; ver++) {
        const std::string bwd = strf("qknorm_rope3d_backward(%s) v%d", v.name, ver);
        std::vector<float> d0(nin);
        for (size_t k = 0; k < nin; k++) d0[k] = (k % v.in_stride) < (size_t)hc ? NAN : rng_normal(rng);
        upload(dinp, d0.data(), nin);
        d0 = download(dinp, nin);  // as stored
        fill_random(dw_a, hd, rng, 1.0f);  // the weight gradients accumulate
        if (two) fill_random(dw_b, hd, rng, 1.0f);
        const std::vector<float> dwa0 = download(dw_a, hd), dwb0 = two ? download(dw_b, hd) : dwa0;
        poison(dnw, nr * hd);
        poison(red, nred);
        BWD_VERSIONS[ver - 1](dinp, dw_a, dw_b, dout, v.out_stride, inp, v.in_stride, rstd, w_a, w_b, v.n_a, nheads, cs, N, hd,
                              dnw, red, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> rdx((size_t)N * hc), rda(dwa0.begin(), dwa0.end()), rdb(dwb0.begin(), dwb0.end());
        std::vector<double> gg(hd);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < nheads; j++) {
                const float* x = &xh[(size_t)i * v.in_stride + (size_t)j * hd];
                const float* dy = &dyh[(size_t)i * v.out_stride + (size_t)j * hd];
                const float* w = j < v.n_a ? wah.data() : wbh.data();
                double* dw = j < v.n_a ? rda.data() : rdb.data();
                // the rotation is orthogonal: its backward rotates by -a
                for (int s = 0; s < half; s++) {
                    const double c = v.rope ? cosv[(size_t)i * half + s] : 1.0, sn = v.rope ? sinv[(size_t)i * half + s] : 0.0;
                    gg[2 * s] = dy[2 * s] * c + dy[2 * s + 1] * sn;
                    gg[2 * s + 1] = dy[2 * s + 1] * c - dy[2 * s] * sn;
                }
                rmsnorm_row_backward_cpu(&rdx[((size_t)i * nheads + j) * hd], dw, x, gg.data(), w, hd, eps);
            }
        const std::vector<float> got = download(dinp, nin);
        std::vector<float> heads, rest;
        std::vector<double> rest_ref;
        heads.reserve((size_t)N * hc);
        for (size_t k = 0; k < nin; k++) {
            if ((k % v.in_stride) < (size_t)hc) heads.push_back(got[k]);
            else { rest.push_back(got[k]); rest_ref.push_back(d0[k]); }
        }
        check(bwd.c_str(), "dinp", shape, heads, rdx, TOL_X);
        if (!rest.empty()) check(bwd.c_str(), "dinp_other_columns_unchanged", shape, rest, rest_ref, 0.0);
        check(bwd.c_str(), "dw_a", shape, download(dw_a, hd), rda, TOL_F32);
        if (two) check(bwd.c_str(), "dw_b", shape, download(dw_b, hd), rdb, TOL_F32);
        if (ver == 2) {  // bit-identical run to run (the trainer's determinism): again from the same start values
            const std::vector<float> dx1 = got, dwa1 = download(dw_a, hd), dwb1 = two ? download(dw_b, hd) : dwa1;
            upload(dinp, d0.data(), nin);  // heads NaN again
            upload(dw_a, dwa0.data(), hd);
            if (two) upload(dw_b, dwb0.data(), hd);
            poison(dnw, nr * hd);
            qknorm_rope3d_backward(dinp, dw_a, dw_b, dout, v.out_stride, inp, v.in_stride, rstd, w_a, w_b, v.n_a, nheads, cs, N,
                                   hd, dnw, 0);
            cudaCheck(cudaDeviceSynchronize());
            const bool same = download(dinp, nin) == dx1 && download(dw_a, hd) == dwa1 && (!two || download(dw_b, hd) == dwb1);
            check_true(same, "%s/bit_identical_run_to_run shape=%s", bwd.c_str(), shape.c_str());
        }
    }

    if (timed) {
        const double sx = sizeof(floatX), hb = (double)N * hc * sx, rb = (double)nr * sizeof(float);
        const double tab = v.rope ? (double)N * half * sizeof(float2) : 0.0, wb = (two ? 2.0 : 1.0) * hd * sx;
        // the heads read, the output written, rstd written, the table and weights read
        float us = time_us([&] {
            qknorm_rope3d_forward(out, v.out_stride, rstd, inp, v.in_stride, w_a, w_b, v.n_a, nheads, cs, N, hd, eps, 0);
        });
        report_bw(fwd, shape, us, 2.0 * hb + rb + tab + wb);
        // dout and the input heads read, dinp heads written, rstd, table, weights read, dw read + written
        for (int ver = 1; ver <= 2; ver++) {
            const Rope3dBwdFn fn = BWD_VERSIONS[ver - 1];
            us = time_us([&] {
                fn(dinp, dw_a, dw_b, dout, v.out_stride, inp, v.in_stride, rstd, w_a, w_b, v.n_a, nheads, cs, N, hd, dnw, red, 0);
            });
            report_bw(strf("qknorm_rope3d_backward(%s) v%d", v.name, ver), shape, us,
                      3.0 * hb + rb + tab + wb + (two ? 4.0 : 2.0) * hd * sizeof(float));
        }
    }
    cudaCheck(cudaFree(inp)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp));
    cudaCheck(cudaFree(w_a)); cudaCheck(cudaFree(rstd)); cudaCheck(cudaFree(dw_a)); cudaCheck(cudaFree(dnw)); cudaCheck(cudaFree(red));
    if (two) { cudaCheck(cudaFree(w_b)); cudaCheck(cudaFree(dw_b)); }
}

// A model width (nh heads of hd), packed latent shapes (tokens) and Nt text tokens.
static void run_case(const char* name, int nh, int hd, int rope_max_t, const std::vector<LatentShape>& shapes, int Nt, bool timed,
                     Rng* rng) {
    DiTConfig cfg;
    cfg.d_model = nh * hd;
    cfg.n_head = nh;
    cfg.rope_max_t = rope_max_t;
    dit_config_finalize(&cfg);
    std::vector<DiTGrid> grids;
    for (const LatentShape& s : shapes) grids.push_back(dit_grid(cfg, s.T, s.H, s.W));
    std::vector<float2> table;
    rope3d_table(&table, cfg, grids);
    if (timed) {   // the host's share: train_dit builds the table when a batch's geometry changes
        std::vector<double> ms;
        for (int r = 0; r < 5; r++) {
            std::vector<float2> t;
            const double t0 = wall_seconds();
            rope3d_table(&t, cfg, grids);
            ms.push_back(1000.0 * (wall_seconds() - t0));
        }
        std::sort(ms.begin(), ms.end());
        printf("host rope3d_table %s B%d: %zu pairs in %.3f ms (median of 5, this machine's CPU)\n", name, (int)shapes.size(),
               table.size(), ms[2]);
    }
    const int N = (int)(table.size() / (hd / 2)), C = cfg.d_model;
    float2* cs = dev_alloc<float2>(table.size());
    cudaCheck(cudaMemcpy(cs, table.data(), table.size() * sizeof(float2), cudaMemcpyHostToDevice));
    std::vector<double> cosv, sinv;
    rope3d_angles_cpu(&cosv, &sinv, cfg, grids);
    if (cosv.size() != table.size()) fail("rope3d bench: %zu table entries, %zu reference angles", table.size(), cosv.size());
    const std::string shape = strf("%s B%d", name, (int)shapes.size());
    run_variant({"self", N, 3 * C, 2 * C, 2 * nh, nh, true}, cfg, cs, cosv, sinv, shape, timed, rng);
    run_variant({"cross q", N, C, C, nh, nh, false}, cfg, cs, cosv, sinv, shape, timed, rng);
    run_variant({"cross k", Nt, 2 * C, C, nh, nh, false}, cfg, cs, cosv, sinv, shape, timed, rng);
    cudaCheck(cudaFree(cs));
}

int main() {
    print_banner("rope3d");
    Rng rng;
    rng_seed(&rng, 1234);
    // packed samples of different shapes (patch 1x2x2; odd H/W are zero-padded: H' = ceil(H/2))
    run_case("small", 3, 72, 480, {{3, 5, 7}, {1, 2, 2}, {2, 4, 6}}, 37, false, &rng);
    run_case("small", 2, 24, 480, {{4, 3, 3}, {2, 6, 2}}, 11, false, &rng);
    run_case("small", 2, 48, 3, {{6, 4, 4}}, 5, false, &rng);                  // t positions clamped to rope_max_t - 1 = 2
    run_case("small", 1, 144, 480, {{2, 3, 5}, {3, 2, 2}}, 9, false, &rng);    // the largest head (registers)
    // dit-s: 8 heads of 72, 8 samples of 8 x 32 x 32 latents (2050 tokens), 300 text tokens each
    run_case("dit-s", 8, 72, 480, std::vector<LatentShape>(8, {8, 32, 32}), 8 * 300, true, &rng);
    run_case("1B", 16, 72, 480, {{21, 40, 64}}, 300, true, &rng);              // 16 heads of 72, 13442 tokens
    return finish("rope3d");
}
