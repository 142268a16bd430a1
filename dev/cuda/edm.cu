/*
Check and benchmark of llmc/kernels/edm.cuh, the EDM loss, and of patchify's EDM input
(llmc/kernels/patchify.cuh with sigma_data > 0), against llmc/model/dit_objective.h's
preconditioning in double (edm_precond):
  patchify_forward (EDM):  noisy frames c_in (x0 + sigma eps) (eps null: c_in x0), clean
                           frames x0 / sigma_data, zero padding; sigma = DiTSample::t
  edm_loss:                per patch token p and each element at a latent position of
                           channel co < Cin inside the sample on a noisy frame,
                             d = c_skip (x0 + sigma eps) + c_out out - x0
                             loss_tok[p] += lambda d^2,  dout = grad_scale lambda c_out d
                           else dout = 0. The host sums loss_tok per sample (dit_loss).
Cases: small packed batches (padding on every axis, Cout > Cin, image-to-video samples
with a clean frame 0, sigma from 0.002 to 80) and the dit-s shape (timed).

  make dev/cuda/edm && ./dev/cuda/edm
*/
#include "common.h"
#include "dit_batch.h"
#include "../../llmc/kernels/edm.cuh"
#include "../../llmc/model/dit_objective.h"

static void run_case(const char* name, const DiTConfig& cfg, const std::vector<SampleSpec>& specs, float sd, bool timed, Rng* rng) {
    const PBatch g = make_batch(cfg, specs);
    const int B = g.B, Np = g.Np, Cin = cfg.in_channels, Cout = cfg.out_channels;
    const int pt = cfg.patch_t, ph = cfg.patch_h, pw = cfg.patch_w, P = dit_patch_size(cfg), PC = P * Cout, K = Cin * P;
    const PatchGeom pg = {Cin, Cout, pt, ph, pw};
    const std::string shape = strf("%s B%d Np=%d Cin%d Cout%d P%dx%dx%d sd=%.2f", name, B, Np, Cin, Cout, pt, ph, pw, sd);
    const size_t npc = (size_t)Np * PC, npk = (size_t)Np * K;

    DiTSample* samples = dev_alloc<DiTSample>(B);
    cudaCheck(cudaMemcpy(samples, g.s.data(), B * sizeof(DiTSample), cudaMemcpyHostToDevice));
    int *frame_mask = dev_alloc<int>(g.frame_mask.size()), *patrow = dev_alloc<int>(Np);
    upload_ints(frame_mask, g.frame_mask);
    upload_ints(patrow, g.patrow);
    float *x0 = dev_alloc<float>(g.lat), *eps = dev_alloc<float>(g.lat), *loss_tok = dev_alloc<float>(Np);
    floatX *out = dev_alloc<floatX>(npc), *dout = dev_alloc<floatX>(npc), *patches = dev_alloc<floatX>(npk);
    fill_random(x0, g.lat, rng, 1.0f);
    fill_random(eps, g.lat, rng, 1.0f);
    fill_random(out, npc, rng, 1.5f);
    const std::vector<float> x0h = download(x0, g.lat), epsh = download(eps, g.lat), outh = download(out, npc);

    // ---- patchify_forward's EDM input, with eps (training) and without (the sampler's c_in z)
    for (int with_eps = 1; with_eps >= 0; with_eps--) {
        poison(patches, npk);
        patchify_forward(patches, x0, with_eps ? eps : nullptr, frame_mask, samples, B, g.max_patch_elems, pg, 0, sd);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(npk, 0.0);
        for (int b = 0; b < B; b++) {
            const DiTSample& s = g.s[b];
            const EdmPrecond pre = edm_precond(s.t, sd);
            for (int p = 0; p < s.Tp * s.Hp * s.Wp; p++) {
                const int i = p / (s.Hp * s.Wp), r = (p / s.Wp) % s.Hp, cc = p % s.Wp;
                for (int e = 0; e < K; e++) {
                    const int ww = e % pw, hh = (e / pw) % ph, a = (e / (pw * ph)) % pt, ci = e / (pw * ph * pt);
                    const int tt = i * pt + a, y = r * ph + hh, x = cc * pw + ww;
                    if (tt >= s.T || y >= s.H || x >= s.W) continue;
                    const size_t l = s.lat0 + (((size_t)ci * s.T + tt) * s.H + y) * s.W + x;
                    ref[((size_t)s.pat0 + p) * K + e] = !g.frame_mask[s.frame0 + tt] ? x0h[l] / (double)sd
                                                        : pre.c_in * (x0h[l] + (with_eps ? (double)s.t * epsh[l] : 0.0));
                }
            }
        }
        check(with_eps ? "patchify_forward(edm)" : "patchify_forward(edm, no eps)", "patches", shape, download(patches, npk), ref, TOL_X);
    }

    // ---- edm_loss
    poison(dout, npc);
    poison(loss_tok, Np);
    edm_loss(dout, loss_tok, out, x0, eps, frame_mask, samples, patrow, pg, Np, sd, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<double> rdout(npc, 0.0), rloss(Np, 0.0);   // channels >= Cin, padding, clean frames: gradient 0
    for_each_loss_value(g, cfg, [&](const DiTSample& s, size_t p, size_t e, size_t l) {
        const EdmPrecond pre = edm_precond(s.t, sd);
        const double xn = (double)x0h[l] + (double)s.t * epsh[l];
        const double d = pre.c_skip * xn + pre.c_out * outh[e] - x0h[l];
        rdout[e] = (double)s.grad_scale * pre.weight * pre.c_out * d;
        rloss[p] += pre.weight * d * d;
    });
    check("edm_loss", "dout", shape, download(dout, npc), rdout, TOL_X);
    check("edm_loss", "loss_tok", shape, download(loss_tok, Np), rloss, TOL_F32);

    if (timed) {
        const double sx = sizeof(floatX), fl = sizeof(float);
        const float us = time_us([&] { edm_loss(dout, loss_tok, out, x0, eps, frame_mask, samples, patrow, pg, Np, sd, 0); });
        report_bw("edm_loss", shape, us, 2.0 * npc * sx + 2.0 * g.noisy_lat * fl + (double)Np * (fl + sizeof(int)));
    }
    cudaCheck(cudaFree(samples)); cudaCheck(cudaFree(frame_mask)); cudaCheck(cudaFree(patrow));
    cudaCheck(cudaFree(x0)); cudaCheck(cudaFree(eps)); cudaCheck(cudaFree(loss_tok));
    cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(patches));
}

int main() {
    print_banner("edm");
    Rng rng;
    rng_seed(&rng, 4321);
    // odd H/W: padding in h and w; Cout 8 > Cin 4; T=1 and a one-patch sample; clean frames; sigma at
    // the schedule's ends and between (SampleSpec::t is DiTSample::t, EDM's sigma)
    run_case("small", config(64, 4, 8, 1, 2, 2),
             {{3, 5, 7, true, 0.002f}, {2, 4, 6, false, 0.7f}, {1, 1, 3, false, 80.0f}, {2, 2, 2, true, 3.5f}}, 0.5f, false, &rng);
    // patch 2x3x2: padding on every axis, odd channel counts, P*Cout not a multiple of 32; another sigma_data
    run_case("small", config(136, 3, 5, 2, 3, 2), {{5, 7, 5, true, 0.3f}, {2, 3, 4, false, 12.0f}}, 1.0f, false, &rng);
    std::vector<SampleSpec> dits;
    for (int b = 0; b < 8; b++) dits.push_back({8, 32, 32, b == 1 || b == 5, expf(-1.2f + 0.4f * (b - 4))});
    run_case("dit-s", config(576, 24, 48, 1, 2, 2), dits, 0.5f, true, &rng);
    return finish("edm");
}
