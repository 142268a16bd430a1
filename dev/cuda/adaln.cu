/*
Check and benchmark of llmc/kernels/adaln.cuh, the adaLN modulation of the DiT. Token i
uses conditioning row r = rows[i] (2b: sample b's t, 2b+1: its t0) of mods [2B, ms]:
  adaln_modulate_forward:      out = xhat * (1 + tscale + mods[r, scale_off]) + tshift + mods[r, shift_off]
  adaln_gate_residual_forward: resid += (tgate + mods[r, off]) * o       (in place)
  adaln_scale_backward:        dx = dout * (one + t + mods[r, off]), one = 1 (scale) or 0 (gate)
  adaln_param_grad:            dmods[r, off_a] += sum_{i: rows[i] = r} a_i, dmods[r, off_b] += sum a_i * b_i,
                               dtab_a += the first sums over all rows, dtab_b += the second
Every call as train_dit.cu makes it: the blocks (mods [2B, 6C], rows per token,
cu = token offsets of the samples) and the final layer (cond [2B, C] with both
offsets 0, rows per patch token, cu = patch offsets). The rows are built as
dit_set_batch builds them (start/end and clean-frame tokens of an image-to-video
sample take row 2b+1). Validated (every element) at small packed batches of
samples of different shapes (some shorter than ADALN_SPLITS tokens) and at the
dit-s / 1B shapes; timed at the last two. adaln_param_grad has two versions,
both checked and timed ("v1": one thread per column for the final sums, kept
here; "v2": the trainer's, rows and columns in parallel), and v2 is checked
bit-identical run to run.

  make dev/cuda/adaln && ./dev/cuda/adaln
*/
#include "common.h"
#include "../../llmc/model/dit_config.h"
#include "../../llmc/kernels/adaln.cuh"

// ---- adaln_param_grad version 1 (the trainer's earlier kernel), kept for comparison:
// the same slice partials (always ADALN_SPLITS slices per sample), then one thread
// per column adds the slices of every row and the rows in order (latency-bound:
// C threads, 2B x 32 x 2 dependent loads each).
static size_t adaln_scratch_floats_v1(int B, int C) { return (size_t)B * ADALN_SPLITS * 4 * C; }

__global__ static void adaln_reduce_final_kernel_v1(float* __restrict__ dmods, int ms, int off_a, int off_b,
                                                    float* __restrict__ dtab_a, float* __restrict__ dtab_b,
                                                    const float* __restrict__ partial, int B, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float ta = 0.0f, tb = 0.0f;
    for (int r = 0; r < 2 * B; r++) {
        const int sample = r / 2, which = r % 2;
        float sa = 0.0f, sb = 0.0f;
        for (int s = 0; s < ADALN_SPLITS; s++) {
            const size_t base = ((size_t)(sample * ADALN_SPLITS + s) * 4 + 2 * which) * C + c;
            sa += partial[base];
            sb += partial[base + C];
        }
        if (off_a >= 0) dmods[(size_t)r * ms + off_a + c] += sa;
        if (off_b >= 0) dmods[(size_t)r * ms + off_b + c] += sb;
        ta += sa;
        tb += sb;
    }
    if (dtab_a) dtab_a[c] += ta;
    if (dtab_b) dtab_b[c] += tb;
}

static void adaln_param_grad_v1(float* dmods, int ms, int off_a, int off_b, float* dtab_a, float* dtab_b, const floatX* a,
                                const floatX* b, const int* rows, const int* cu, int B, int N, int C, float* partial,
                                cudaStream_t stream) {
    dim3 grid(ceil_div(C, 32 * 8), B * ADALN_SPLITS), block(32, 8);
    adaln_reduce_partial_kernel<<<grid, block, 0, stream>>>(partial, a, b, rows, cu, ADALN_SPLITS, C);
    cudaLaunchCheck();
    adaln_reduce_final_kernel_v1<<<ceil_div(C, 128), 128, 0, stream>>>(dmods, ms, off_a, off_b, dtab_a, dtab_b, partial, B, C);
    cudaLaunchCheck();
}

// version 1: adaln_param_grad_v1 above; version 2: adaln_param_grad of llmc/kernels/adaln.cuh (the trainer's)
typedef void (*ParamGradFn)(float*, int, int, int, float*, float*, const floatX*, const floatX*, const int*, const int*, int,
                            int, int, float*, cudaStream_t);
static const ParamGradFn PARAM_GRAD_VERSIONS[2] = {adaln_param_grad_v1, adaln_param_grad};

struct SampleShape {
    int T, H, W;
    bool i2v;  // a frame mask with frame 0 clean (image-to-video)
};

// A packed batch's conditioning rows and offsets, by the rule of dit_set_batch.
struct Geo {
    int B = 0, N = 0, Np = 0;
    std::vector<int> cu_x, cu_p, tokrow, patrow;
};

static Geo make_geo(const DiTConfig& c, const std::vector<SampleShape>& ss) {
    Geo g;
    g.B = (int)ss.size();
    g.cu_x.assign(g.B + 1, 0);
    g.cu_p.assign(g.B + 1, 0);
    for (int b = 0; b < g.B; b++) {
        const DiTGrid gr = dit_grid(c, ss[b].T, ss[b].H, ss[b].W);
        g.cu_x[b + 1] = g.cu_x[b] + gr.L;
        g.cu_p[b + 1] = g.cu_p[b] + gr.n_patch;
    }
    g.N = g.cu_x[g.B];
    g.Np = g.cu_p[g.B];
    g.tokrow.resize(g.N);
    g.patrow.resize(g.Np);
    for (int b = 0; b < g.B; b++) {
        const DiTGrid gr = dit_grid(c, ss[b].T, ss[b].H, ss[b].W);
        for (int j = 0; j < gr.L; j++) {
            bool noisy = true;
            if (ss[b].i2v) {
                const int frame = j == 0 || j == gr.L - 1 ? -1 : ((j - 1) / (gr.Hp * gr.Wp)) * c.patch_t;
                noisy = frame > 0;  // start/end tokens and latent frame 0 are clean
            }
            const int row = 2 * b + (noisy ? 0 : 1);
            g.tokrow[g.cu_x[b] + j] = row;
            if (j > 0 && j < gr.L - 1) g.patrow[g.cu_p[b] + j - 1] = row;
        }
    }
    return g;
}

static void run_case(const char* name, const DiTConfig& cfg, const std::vector<SampleShape>& ss, bool timed, Rng* rng) {
    const Geo g = make_geo(cfg, ss);
    const int B = g.B, N = g.N, Np = g.Np, C = cfg.d_model, ms = 6 * C;
    const std::string shape = strf("%s B%d N=%d C=%d", name, B, N, C);
    const std::string fshape = strf("%s B%d Np=%d C=%d", name, B, Np, C);
    const size_t n = (size_t)N * C, np = (size_t)Np * C, nm = (size_t)2 * B * ms, nc = (size_t)2 * B * C;

    int *tokrow = dev_alloc<int>(N), *patrow = dev_alloc<int>(Np), *cu_x = dev_alloc<int>(B + 1), *cu_p = dev_alloc<int>(B + 1);
    upload_ints(tokrow, g.tokrow);
    upload_ints(patrow, g.patrow);
    upload_ints(cu_x, g.cu_x);
    upload_ints(cu_p, g.cu_p);
    floatX *xhat = dev_alloc<floatX>(n), *o = dev_alloc<floatX>(n), *dout = dev_alloc<floatX>(n);
    floatX *out = dev_alloc<floatX>(n), *resid = dev_alloc<floatX>(n), *dx = dev_alloc<floatX>(n);
    floatX *tab = dev_alloc<floatX>(6 * C), *ftab = dev_alloc<floatX>(2 * C), *mods = dev_alloc<floatX>(nm), *cond = dev_alloc<floatX>(nc);
    float *dmods = dev_alloc<float>(nm), *dcond = dev_alloc<float>(nc), *dtab = dev_alloc<float>(6 * C), *dftab = dev_alloc<float>(2 * C);
    const size_t npart = std::max(adaln_scratch_floats(B, C), adaln_scratch_floats_v1(B, C));
    float* partial = dev_alloc<float>(npart);
    fill_random(xhat, n, rng, 1.0f);
    fill_random(o, n, rng, 1.0f);
    fill_random(dout, n, rng, 1.0f);
    // table and conditioning of order 1, so that both terms of every sum weigh in the check
    fill_random(tab, 6 * C, rng, 0.5f);
    fill_random(ftab, 2 * C, rng, 0.5f);
    fill_random(mods, nm, rng, 0.5f);
    fill_random(cond, nc, rng, 0.5f);
    const std::vector<float> xh = download(xhat, n), oh = download(o, n), dh = download(dout, n);
    const std::vector<float> tabh = download(tab, 6 * C), ftabh = download(ftab, 2 * C), mh = download(mods, nm), ch = download(cond, nc);
    // The final layer's tensors are [Np, C]: the first Np rows of the token buffers.

    // out = x * (1 + ts + m[scale]) + tsh + m[shift]
    auto modulate_ref = [&](const std::vector<int>& rows, int M, const float* tsh, const float* tsc, const std::vector<float>& m,
                            int mstride, int shift_off, int scale_off) {
        std::vector<double> r((size_t)M * C);
        for (int i = 0; i < M; i++) {
            const float* mr = &m[(size_t)rows[i] * mstride];
            for (int c = 0; c < C; c++) {
                const size_t e = (size_t)i * C + c;
                r[e] = (double)xh[e] * (1.0 + (double)tsc[c] + mr[scale_off + c]) + (double)tsh[c] + mr[shift_off + c];
            }
        }
        return r;
    };
    // dx = dout * (one + t + m[off])
    auto scale_ref = [&](const std::vector<int>& rows, int M, const float* t, const std::vector<float>& m, int mstride, int off,
                         double one) {
        std::vector<double> r((size_t)M * C);
        for (int i = 0; i < M; i++) {
            const float* mr = &m[(size_t)rows[i] * mstride + off];
            for (int c = 0; c < C; c++) r[(size_t)i * C + c] = (double)dh[(size_t)i * C + c] * (one + (double)t[c] + mr[c]);
        }
        return r;
    };

    // ---- adaln_modulate_forward, block (the MLP's shift2/scale2: rows 3, 4 of the table)
    poison(out, n);
    adaln_modulate_forward(out, xhat, tab + 3 * C, tab + 4 * C, mods, ms, 3 * C, 4 * C, tokrow, N, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("adaln_modulate_forward", "out", shape, download(out, n),
          modulate_ref(g.tokrow, N, &tabh[3 * C], &tabh[4 * C], mh, ms, 3 * C, 4 * C), TOL_X);

    // ---- adaln_modulate_forward, final layer: shift and scale both add the cond row
    poison(out, n);
    adaln_modulate_forward(out, xhat, ftab, ftab + C, cond, C, 0, 0, patrow, Np, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("adaln_modulate_forward(final)", "out", fshape, download(out, np),
          modulate_ref(g.patrow, Np, &ftabh[0], &ftabh[C], ch, C, 0, 0), TOL_X);

    // ---- adaln_gate_residual_forward (gate2: table row 5), in place on a random residual
    {
        fill_random(resid, n, rng, 1.0f);
        const std::vector<float> r0 = download(resid, n);
        adaln_gate_residual_forward(resid, o, tab + 5 * C, mods, ms, 5 * C, tokrow, N, C, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(n);
        for (int i = 0; i < N; i++) {
            const float* mr = &mh[(size_t)g.tokrow[i] * ms + 5 * C];
            for (int c = 0; c < C; c++) {
                const size_t e = (size_t)i * C + c;
                ref[e] = (double)r0[e] + ((double)tabh[5 * C + c] + mr[c]) * oh[e];
            }
        }
        check("adaln_gate_residual_forward", "resid", shape, download(resid, n), ref, TOL_X);
    }

    // ---- adaln_scale_backward: scale (dxhat, add_one), gate (dO), final layer's scale
    poison(dx, n);
    adaln_scale_backward(dx, dout, tab + 4 * C, mods, ms, 4 * C, true, tokrow, N, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("adaln_scale_backward(scale)", "dx", shape, download(dx, n), scale_ref(g.tokrow, N, &tabh[4 * C], mh, ms, 4 * C, 1.0),
          TOL_X);
    poison(dx, n);
    adaln_scale_backward(dx, dout, tab + 2 * C, mods, ms, 2 * C, false, tokrow, N, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("adaln_scale_backward(gate)", "dx", shape, download(dx, n), scale_ref(g.tokrow, N, &tabh[2 * C], mh, ms, 2 * C, 0.0),
          TOL_X);
    poison(dx, n);
    adaln_scale_backward(dx, dout, ftab + C, cond, C, 0, true, patrow, Np, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("adaln_scale_backward(final)", "dx", fshape, download(dx, np), scale_ref(g.patrow, Np, &ftabh[C], ch, C, 0, 1.0), TOL_X);

    // ---- adaln_param_grad. dm/dt start random (they accumulate); all of dm and dt are
    // checked, so columns the call must not touch are checked to keep their values.
    auto param_grad_case = [&](int version, const char* kbase, const std::string& shp, float* dm, int mstride, int rows_m, int off_a,
                               int off_b, float* dt, int tcols, int ta_off, int tb_off, const floatX* a_d, const std::vector<float>& a,
                               const floatX* b_d, const std::vector<float>& bv, const std::vector<int>& rows, const int* rows_d,
                               const int* cu_d, int M) {
        const size_t nmm = (size_t)rows_m * mstride;
        fill_random(dm, nmm, rng, 1.0f);
        fill_random(dt, tcols, rng, 1.0f);
        const std::vector<float> dm0 = download(dm, nmm), dt0 = download(dt, tcols);
        const std::string kn = strf("%s v%d", kbase, version);
        const char* kname = kn.c_str();
        poison(partial, npart);
        PARAM_GRAD_VERSIONS[version - 1](dm, mstride, off_a, off_b, ta_off >= 0 ? dt + ta_off : nullptr, tb_off >= 0 ? dt + tb_off : nullptr,
                         a_d, b_d, rows_d, cu_d, B, M, C, partial, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> rm(dm0.begin(), dm0.end()), rt(dt0.begin(), dt0.end());
        for (int i = 0; i < M; i++) {
            const size_t r = (size_t)rows[i] * mstride;
            for (int c = 0; c < C; c++) {
                const size_t e = (size_t)i * C + c;
                const double va = a[e], vab = (double)a[e] * bv[e];
                if (off_a >= 0) rm[r + off_a + c] += va;
                if (off_b >= 0) rm[r + off_b + c] += vab;
                if (ta_off >= 0) rt[ta_off + c] += va;
                if (tb_off >= 0) rt[tb_off + c] += vab;
            }
        }
        check(kname, "dmods", shp, download(dm, nmm), rm, TOL_F32);
        check(kname, "dtab", shp, download(dt, tcols), rt, TOL_F32);
    };
    for (int v = 1; v <= 2; v++) {
        // shift2/scale2 of a block: a = dout of the modulation, b = xhat
        param_grad_case(v, "adaln_param_grad(shift,scale)", shape, dmods, ms, 2 * B, 3 * C, 4 * C, dtab, 6 * C, 3 * C, 4 * C,
                        dout, dh, xhat, xh, g.tokrow, tokrow, cu_x, N);
        // gate2 of a block: no shift part, a = dresid, b = o
        param_grad_case(v, "adaln_param_grad(gate)", shape, dmods, ms, 2 * B, -1, 5 * C, dtab, 6 * C, -1, 5 * C, dout, dh, o,
                        oh, g.tokrow, tokrow, cu_x, N);
        // final layer: both sums into the same cond column, table rows shift, scale
        param_grad_case(v, "adaln_param_grad(final)", fshape, dcond, C, 2 * B, 0, 0, dftab, 2 * C, 0, C, dout, dh, xhat, xh,
                        g.patrow, patrow, cu_p, Np);
    }
    // version 2 bit-identical run to run (the trainer's determinism): same inputs and start values twice
    {
        fill_random(dmods, nm, rng, 1.0f);
        fill_random(dtab, 6 * C, rng, 1.0f);
        const std::vector<float> dm0 = download(dmods, nm), dt0 = download(dtab, 6 * C);
        std::vector<float> runs[2][2];
        for (int k = 0; k < 2; k++) {
            upload(dmods, dm0.data(), nm);
            upload(dtab, dt0.data(), 6 * C);
            poison(partial, npart);
            adaln_param_grad(dmods, ms, 3 * C, 4 * C, dtab + 3 * C, dtab + 4 * C, dout, xhat, tokrow, cu_x, B, N, C, partial, 0);
            cudaCheck(cudaDeviceSynchronize());
            runs[k][0] = download(dmods, nm);
            runs[k][1] = download(dtab, 6 * C);
        }
        const bool same = runs[0][0] == runs[1][0] && runs[0][1] == runs[1][1];
        check_true(same, "adaln_param_grad v2 bit-identical run to run shape=%s", shape.c_str());
    }

    if (timed) {
        const double sx = sizeof(floatX), nb = (double)n * sx, ib = (double)N * sizeof(int);
        const double mod1 = (double)2 * B * C * sx;  // one column block of mods for every row
        float us = time_us([&] { adaln_modulate_forward(out, xhat, tab + 3 * C, tab + 4 * C, mods, ms, 3 * C, 4 * C, tokrow, N, C, 0); });
        report_bw("adaln_modulate_forward", shape, us, 2.0 * nb + 2.0 * C * sx + 2.0 * mod1 + ib);
        us = time_us([&] { adaln_gate_residual_forward(resid, o, tab + 5 * C, mods, ms, 5 * C, tokrow, N, C, 0); });
        report_bw("adaln_gate_residual_forward", shape, us, 3.0 * nb + C * sx + mod1 + ib);  // resid read + written, o
        us = time_us([&] { adaln_scale_backward(dx, dout, tab + 4 * C, mods, ms, 4 * C, true, tokrow, N, C, 0); });
        report_bw("adaln_scale_backward", shape, us, 2.0 * nb + C * sx + mod1 + ib);
        // a and b read; two fp32 columns of dmods (every row) and of the table read + written
        const double g1 = 2.0 * ((double)2 * B * C + C) * sizeof(float);
        for (int v = 1; v <= 2; v++) {
            const ParamGradFn fn = PARAM_GRAD_VERSIONS[v - 1];
            us = time_us([&] { fn(dmods, ms, 3 * C, 4 * C, dtab + 3 * C, dtab + 4 * C, dout, xhat, tokrow, cu_x, B, N, C, partial, 0); });
            report_bw(strf("adaln_param_grad (shift, scale) v%d", v), shape, us, 2.0 * nb + ib + 2.0 * g1);
            us = time_us([&] { fn(dmods, ms, -1, 5 * C, nullptr, dtab + 5 * C, dout, o, tokrow, cu_x, B, N, C, partial, 0); });
            report_bw(strf("adaln_param_grad (gate) v%d", v), shape, us, 2.0 * nb + ib + g1);
        }
    }
    cudaCheck(cudaFree(tokrow)); cudaCheck(cudaFree(patrow)); cudaCheck(cudaFree(cu_x)); cudaCheck(cudaFree(cu_p));
    cudaCheck(cudaFree(xhat)); cudaCheck(cudaFree(o)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(out));
    cudaCheck(cudaFree(resid)); cudaCheck(cudaFree(dx)); cudaCheck(cudaFree(tab)); cudaCheck(cudaFree(ftab));
    cudaCheck(cudaFree(mods)); cudaCheck(cudaFree(cond)); cudaCheck(cudaFree(dmods)); cudaCheck(cudaFree(dcond));
    cudaCheck(cudaFree(dtab)); cudaCheck(cudaFree(dftab)); cudaCheck(cudaFree(partial));
}

static DiTConfig config(int C) {
    DiTConfig c;  // patch 1x2x2 as every preset
    c.d_model = C;
    return c;
}

int main() {
    print_banner("adaln");
    Rng rng;
    rng_seed(&rng, 1234);
    // samples of different shapes; L = 3 .. 62 tokens (fewer than ADALN_SPLITS leaves slices empty)
    run_case("small", config(64), {{3, 5, 7, true}, {2, 4, 4, false}, {1, 2, 2, false}, {4, 3, 9, true}}, false, &rng);
    run_case("small", config(136), {{5, 9, 3, true}}, false, &rng);       // C/8 = 17: a partial group of columns
    run_case("small", config(1160), {{2, 2, 6, false}, {3, 3, 3, true}}, false, &rng);  // > 256 columns: two column blocks
    // dit-s: 8 samples of 8 x 32 x 32 latents (2050 tokens), two of them image-to-video; C 576
    std::vector<SampleShape> dits(8, {8, 32, 32, false});
    dits[1].i2v = dits[5].i2v = true;
    run_case("dit-s", config(576), dits, true, &rng);
    run_case("1B", config(1152), {{21, 40, 64, false}}, true, &rng);   // 13442 tokens, C 1152
    return finish("adaln");
}
