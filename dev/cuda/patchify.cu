/*
Check and benchmark of llmc/kernels/patchify.cuh, patches and tokens of the DiT's packed batches:
  patchify_forward:          latent x0 [Cin, T, H, W] per sample (fp32) -> patches [Np, Cin*P] (floatX):
                             element ((ci*pt + a)*ph + hh)*pw + ww of patch (i, r, c) (t-major, then h, w) is
                             frame i*pt + a, row r*ph + hh, column c*pw + ww, 0 past the end of an axis;
                             on noisy frames (frame mask 1) x_t = (1 - t) x0 + t eps; clean frames and every
                             frame when eps is null take x0
  tokens_assemble_forward:   resid [N, C] = [start, the sample's patch rows of xf, end] per sample
  tokens_assemble_backward:  dxf = the patch rows of dresid; dstart / dend += sum over samples of the
                             sample's first / last row (fp32)
  tokens_to_patches:         patches [Np, C] = the patch rows of tokens [N, C]
  patches_to_tokens:         the patch rows of tokens = patches (start/end rows untouched)
  unpatchify:                out [Np, P*Cout] (index ((a*ph + hh)*pw + ww)*Cout + co) -> v_pred
                             [Cout, T, H, W] per sample (fp32), the padding cropped
Per-sample descriptors (DiTSample), frame mask and the rows tokrow / patrow are
built as train_dit.cu's dit_set_batch builds them (dit_batch.h). Validated (every element)
at small packed batches of samples of different shapes (padding on every axis,
patch 1x2x2 and 2x3x2, image-to-video samples with a clean frame 0) and at the
dit-s / 1B shapes; timed at the last two. Copies are checked bit-exact.

  make dev/cuda/patchify && ./dev/cuda/patchify
*/
#include "common.h"
#include "dit_batch.h"

static void run_case(const char* name, const DiTConfig& cfg, const std::vector<SampleSpec>& specs, bool timed, Rng* rng) {
    const PBatch g = make_batch(cfg, specs);
    const int B = g.B, N = g.N, Np = g.Np, C = cfg.d_model, Cin = cfg.in_channels, Cout = cfg.out_channels;
    const int pt = cfg.patch_t, ph = cfg.patch_h, pw = cfg.patch_w, P = dit_patch_size(cfg), K = Cin * P, PC = P * Cout;
    const PatchGeom pg = {Cin, Cout, pt, ph, pw};
    const std::string shape = strf("%s B%d N=%d C=%d", name, B, N, C);
    const std::string pshape = strf("%s B%d Np=%d Cin%d P%dx%dx%d", name, B, Np, Cin, pt, ph, pw);
    const std::string ushape = strf("%s B%d Np=%d Cout%d P%dx%dx%d", name, B, Np, Cout, pt, ph, pw);
    const size_t n = (size_t)N * C, np = (size_t)Np * C, npk = (size_t)Np * K, npc = (size_t)Np * PC;

    DiTSample* samples = dev_alloc<DiTSample>(B);
    cudaCheck(cudaMemcpy(samples, g.s.data(), B * sizeof(DiTSample), cudaMemcpyHostToDevice));
    int *frame_mask = dev_alloc<int>(g.frame_mask.size()), *tokrow = dev_alloc<int>(N), *patrow = dev_alloc<int>(Np);
    upload_ints(frame_mask, g.frame_mask);
    upload_ints(tokrow, g.tokrow);
    upload_ints(patrow, g.patrow);
    float *x0 = dev_alloc<float>(g.lat), *eps = dev_alloc<float>(g.lat), *v_pred = dev_alloc<float>(g.out);
    floatX *patches = dev_alloc<floatX>(npk), *xf = dev_alloc<floatX>(np), *start = dev_alloc<floatX>(C), *end = dev_alloc<floatX>(C);
    floatX *resid = dev_alloc<floatX>(n), *pout = dev_alloc<floatX>(npc);
    float *dstart = dev_alloc<float>(C), *dend = dev_alloc<float>(C);
    fill_random(x0, g.lat, rng, 1.0f);
    fill_random(eps, g.lat, rng, 1.0f);
    fill_random(xf, np, rng, 1.0f);
    fill_random(start, C, rng, 1.0f);
    fill_random(end, C, rng, 1.0f);
    const std::vector<float> x0h = download(x0, g.lat), epsh = download(eps, g.lat), xfh = download(xf, np);
    const std::vector<float> sth = download(start, C), enh = download(end, C);

    // ---- patchify_forward, with eps (training) and without (x0 as it is)
    for (int with_eps = 1; with_eps >= 0; with_eps--) {
        poison(patches, npk);
        patchify_forward(patches, x0, with_eps ? eps : nullptr, frame_mask, samples, B, g.max_patch_elems, pg, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(npk);
        for (int b = 0; b < B; b++) {
            const DiTSample& s = g.s[b];
            for (int p = 0; p < s.Tp * s.Hp * s.Wp; p++) {
                const int i = p / (s.Hp * s.Wp), r = (p / s.Wp) % s.Hp, cc = p % s.Wp;
                double* row = &ref[((size_t)s.pat0 + p) * K];
                for (int ci = 0; ci < Cin; ci++)
                    for (int a = 0; a < pt; a++)
                        for (int hh = 0; hh < ph; hh++)
                            for (int ww = 0; ww < pw; ww++) {
                                const int tt = i * pt + a, y = r * ph + hh, x = cc * pw + ww;
                                double v = 0.0;
                                if (tt < s.T && y < s.H && x < s.W) {
                                    const size_t e = s.lat0 + (((size_t)ci * s.T + tt) * s.H + y) * s.W + x;
                                    v = x0h[e];
                                    if (with_eps && g.frame_mask[s.frame0 + tt]) v = (1.0 - s.t) * x0h[e] + (double)s.t * epsh[e];
                                }
                                row[((ci * pt + a) * ph + hh) * pw + ww] = v;
                            }
            }
        }
        check(with_eps ? "patchify_forward" : "patchify_forward(no eps)", "patches", pshape, download(patches, npk), ref, TOL_X);
    }

    // ---- tokens_assemble_forward (a copy: bit-exact)
    {
        poison(resid, n);
        tokens_assemble_forward(resid, xf, start, end, tokrow, samples, N, C, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(n);
        for (int b = 0; b < B; b++) {
            const DiTSample& s = g.s[b];
            const int L = g.grids[b].L;
            for (int j = 0; j < L; j++)
                for (int c = 0; c < C; c++)
                    ref[((size_t)s.tok0 + j) * C + c] =
                        j == 0 ? sth[c] : j == L - 1 ? enh[c] : xfh[((size_t)s.pat0 + j - 1) * C + c];
        }
        check("tokens_assemble_forward", "resid", shape, download(resid, n), ref, 0.0);
    }

    // token row of patch row k (sample b's patch p is its token p + 1)
    std::vector<size_t> tok_of(Np);
    for (int b = 0; b < B; b++)
        for (int p = 0; p < g.grids[b].n_patch; p++) tok_of[g.s[b].pat0 + p] = (size_t)g.s[b].tok0 + 1 + p;

    // ---- tokens_to_patches (the final layer's input)
    {
        fill_random(resid, n, rng, 1.0f);
        const std::vector<float> th = download(resid, n);
        poison(xf, np);
        tokens_to_patches(xf, resid, patrow, samples, Np, C, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(np);
        for (int k = 0; k < Np; k++)
            for (int c = 0; c < C; c++) ref[(size_t)k * C + c] = th[tok_of[k] * C + c];
        check("tokens_to_patches", "patches", shape, download(xf, np), ref, 0.0);
    }

    // ---- patches_to_tokens: patch rows poisoned, start/end rows random (must stay)
    {
        fill_random(xf, np, rng, 1.0f);
        const std::vector<float> ph_ = download(xf, np);
        std::vector<float> init(n);
        for (size_t k = 0; k < n; k++) init[k] = rng_normal(rng);
        for (int k = 0; k < Np; k++)
            for (int c = 0; c < C; c++) init[tok_of[k] * C + c] = NAN;
        upload(resid, init.data(), n);
        const std::vector<float> init_x = download(resid, n);  // as stored
        patches_to_tokens(resid, xf, patrow, samples, Np, C, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(init_x.begin(), init_x.end());
        for (int k = 0; k < Np; k++)
            for (int c = 0; c < C; c++) ref[tok_of[k] * C + c] = ph_[(size_t)k * C + c];
        check("patches_to_tokens", "tokens", shape, download(resid, n), ref, 0.0);
    }

    // ---- tokens_assemble_backward: dxf (a copy) and dstart / dend (+=, fp32)
    {
        fill_random(resid, n, rng, 1.0f);
        fill_random(dstart, C, rng, 1.0f);
        fill_random(dend, C, rng, 1.0f);
        const std::vector<float> dr = download(resid, n), ds0 = download(dstart, C), de0 = download(dend, C);
        poison(xf, np);
        tokens_assemble_backward(xf, dstart, dend, resid, patrow, samples, B, Np, C, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> rdx(np), rds(ds0.begin(), ds0.end()), rde(de0.begin(), de0.end());
        for (int k = 0; k < Np; k++)
            for (int c = 0; c < C; c++) rdx[(size_t)k * C + c] = dr[tok_of[k] * C + c];
        for (int b = 0; b < B; b++) {
            const size_t first = g.s[b].tok0, last = first + g.grids[b].L - 1;
            for (int c = 0; c < C; c++) {
                rds[c] += dr[first * C + c];
                rde[c] += dr[last * C + c];
            }
        }
        check("tokens_assemble_backward", "dxf", shape, download(xf, np), rdx, 0.0);
        check("tokens_assemble_backward", "dstart", shape, download(dstart, C), rds, TOL_F32);
        check("tokens_assemble_backward", "dend", shape, download(dend, C), rde, TOL_F32);
    }

    // ---- unpatchify (a conversion to fp32: bit-exact)
    {
        fill_random(pout, npc, rng, 1.0f);
        const std::vector<float> oh = download(pout, npc);
        poison(v_pred, g.out);
        unpatchify(v_pred, pout, samples, B, g.max_out_elems, pg, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(g.out);
        for (int b = 0; b < B; b++) {
            const DiTSample& s = g.s[b];
            for (int p = 0; p < s.Tp * s.Hp * s.Wp; p++) {
                const int i = p / (s.Hp * s.Wp), r = (p / s.Wp) % s.Hp, cc = p % s.Wp;
                for (int a = 0; a < pt; a++)
                    for (int hh = 0; hh < ph; hh++)
                        for (int ww = 0; ww < pw; ww++) {
                            const int tt = i * pt + a, y = r * ph + hh, x = cc * pw + ww;
                            if (tt >= s.T || y >= s.H || x >= s.W) continue;  // padding: cropped
                            for (int co = 0; co < Cout; co++)
                                ref[s.out0 + (((size_t)co * s.T + tt) * s.H + y) * s.W + x] =
                                    oh[((size_t)s.pat0 + p) * PC + (size_t)((a * ph + hh) * pw + ww) * Cout + co];
                        }
            }
        }
        check("unpatchify", "v_pred", ushape, download(v_pred, g.out), ref, 0.0);
    }

    if (timed) {
        const double sx = sizeof(floatX), nb = (double)n * sx, pb = (double)np * sx, fl = sizeof(float);
        // x0 read, eps read on the noisy frames, patches written
        float us = time_us([&] { patchify_forward(patches, x0, eps, frame_mask, samples, B, g.max_patch_elems, pg, 0); });
        report_bw("patchify_forward", pshape, us, (double)g.lat * fl + (double)g.noisy_lat * fl + (double)npk * sx);
        us = time_us([&] { tokens_assemble_forward(resid, xf, start, end, tokrow, samples, N, C, 0); });
        report_bw("tokens_assemble_forward", shape, us, pb + 2.0 * C * sx + nb + (double)N * sizeof(int));
        us = time_us([&] { tokens_to_patches(xf, resid, patrow, samples, Np, C, 0); });
        report_bw("tokens_to_patches", shape, us, 2.0 * pb + (double)Np * sizeof(int));
        us = time_us([&] { patches_to_tokens(resid, xf, patrow, samples, Np, C, 0); });
        report_bw("patches_to_tokens", shape, us, 2.0 * pb + (double)Np * sizeof(int));
        // every row of dresid read (patch rows and start/end rows), dxf written, dstart/dend read + written
        us = time_us([&] { tokens_assemble_backward(xf, dstart, dend, resid, patrow, samples, B, Np, C, 0); });
        report_bw("tokens_assemble_backward", shape, us, nb + pb + (double)Np * sizeof(int) + 4.0 * C * fl);
        // the kept elements of out read, v_pred written
        us = time_us([&] { unpatchify(v_pred, pout, samples, B, g.max_out_elems, pg, 0); });
        report_bw("unpatchify", ushape, us, (double)g.out * (sx + fl));
    }
    cudaCheck(cudaFree(samples)); cudaCheck(cudaFree(frame_mask)); cudaCheck(cudaFree(tokrow)); cudaCheck(cudaFree(patrow));
    cudaCheck(cudaFree(x0)); cudaCheck(cudaFree(eps)); cudaCheck(cudaFree(v_pred)); cudaCheck(cudaFree(patches));
    cudaCheck(cudaFree(xf)); cudaCheck(cudaFree(start)); cudaCheck(cudaFree(end)); cudaCheck(cudaFree(resid));
    cudaCheck(cudaFree(pout)); cudaCheck(cudaFree(dstart)); cudaCheck(cudaFree(dend));
}

int main() {
    print_banner("patchify");
    Rng rng;
    rng_seed(&rng, 1234);
    // odd H/W: zero padding in h and w; T=1 and a one-patch sample
    run_case("small", config(64, 4, 8, 1, 2, 2),
             {{3, 5, 7, true, 0.3f}, {2, 4, 6, false, 0.9f}, {1, 1, 3, false, 0.5f}, {2, 2, 2, true, 1.0f}}, false, &rng);
    // patch 2x3x2: padding on every axis (T 5 -> T' 3), odd channel counts
    run_case("small", config(136, 3, 5, 2, 3, 2), {{5, 7, 5, true, 0.6f}, {2, 3, 4, false, 0.25f}}, false, &rng);
    // dit-s: 8 samples of 8 x 32 x 32 latents (2050 tokens), Cin 24, Cout 48, two image-to-video
    std::vector<SampleSpec> dits;
    for (int b = 0; b < 8; b++) dits.push_back({8, 32, 32, b == 1 || b == 5, (b + 0.5f) / 8.0f});
    run_case("dit-s", config(576, 24, 48, 1, 2, 2), dits, true, &rng);
    run_case("1B", config(1152, 24, 48, 1, 2, 2), {{21, 40, 64, false, 0.7f}}, true, &rng);  // 13442 tokens
    return finish("patchify");
}
