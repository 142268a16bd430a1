/*
Check and benchmark of llmc/kernels/flow.cuh, the rectified-flow loss and the noise:
  flow_loss:        per patch token p (one row of the final linear's output out [Np, P*Cout],
                    index ((a*ph + hh)*pw + ww)*Cout + co) and each of its elements at latent
                    position (co, frame, y, x): if co < Cin, the position is inside the sample
                    (not padding) and the frame is noisy,
                      d = out - (x0 - eps),  dout = grad_scale * d,  loss_tok[p] += d^2
                    else dout = 0. The host sums loss_tok per sample (train_dit.cu's dit_loss).
  gaussian_fill_at: out[i] = mean + std * N(0, 1) from splitmix64(splitmix64(seed) ^ (index0 + i)):
                    u1 = (top 24 bits + 1) / (2^24 + 1), u2 = (low 24 bits) / 2^24,
                    N = sqrt(-2 ln u1) cos(2 pi u2)   (Box-Muller), for fp32 and floatX outputs
The batches are built as train_dit.cu's dit_set_batch builds them (dit_batch.h).
flow_loss is validated (every element) at small packed batches (padding on every
axis, Cout > Cin, image-to-video samples with a clean frame 0) and at the dit-s / 1B
shapes; timed at the last two. gaussian_fill_at is validated at odd sizes and
offsets, filled in pieces (what each rank of a multi-GPU run draws) against one fill
of the whole (bit-exact), and for its mean and variance; timed at the dit-s latents.

  make dev/cuda/flow && ./dev/cuda/flow
*/
#include "common.h"
#include "dit_batch.h"
#include "../../llmc/kernels/flow.cuh"

// ----------------------------------------------------------------------------
// flow_loss

static void run_loss_case(const char* name, const DiTConfig& cfg, const std::vector<SampleSpec>& specs, bool timed,
                          Rng* rng) {
    const PBatch g = make_batch(cfg, specs);
    const int B = g.B, Np = g.Np, Cin = cfg.in_channels, Cout = cfg.out_channels;
    const int pt = cfg.patch_t, ph = cfg.patch_h, pw = cfg.patch_w, PC = dit_patch_size(cfg) * Cout;
    const PatchGeom pg = {Cin, Cout, pt, ph, pw};
    const std::string shape = strf("%s B%d Np=%d Cin%d Cout%d P%dx%dx%d", name, B, Np, Cin, Cout, pt, ph, pw);
    const size_t npc = (size_t)Np * PC;

    DiTSample* samples = dev_alloc<DiTSample>(B);
    cudaCheck(cudaMemcpy(samples, g.s.data(), B * sizeof(DiTSample), cudaMemcpyHostToDevice));
    int *frame_mask = dev_alloc<int>(g.frame_mask.size()), *patrow = dev_alloc<int>(Np);
    upload_ints(frame_mask, g.frame_mask);
    upload_ints(patrow, g.patrow);
    float *x0 = dev_alloc<float>(g.lat), *eps = dev_alloc<float>(g.lat), *loss_tok = dev_alloc<float>(Np);
    floatX *out = dev_alloc<floatX>(npc), *dout = dev_alloc<floatX>(npc);
    fill_random(x0, g.lat, rng, 1.0f);
    fill_random(eps, g.lat, rng, 1.0f);
    fill_random(out, npc, rng, 1.5f);
    const std::vector<float> x0h = download(x0, g.lat), epsh = download(eps, g.lat), outh = download(out, npc);

    poison(dout, npc);
    poison(loss_tok, Np);
    flow_loss(dout, loss_tok, out, x0, eps, frame_mask, samples, patrow, pg, Np, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<double> rdout(npc, 0.0), rloss(Np, 0.0);   // channels >= Cin, padding, clean frames: gradient 0
    for_each_loss_value(g, cfg, [&](const DiTSample& s, size_t p, size_t e, size_t l) {
        const double d = (double)outh[e] - ((double)x0h[l] - (double)epsh[l]);
        rdout[e] = (double)s.grad_scale * d;
        rloss[p] += d * d;
    });
    check("flow_loss", "dout", shape, download(dout, npc), rdout, TOL_X);
    check("flow_loss", "loss_tok", shape, download(loss_tok, Np), rloss, TOL_F32);

    if (timed) {
        const double sx = sizeof(floatX), fl = sizeof(float);
        // out read, dout written, x0 and eps read on the noisy frames, loss_tok written
        const float us = time_us([&] { flow_loss(dout, loss_tok, out, x0, eps, frame_mask, samples, patrow, pg, Np, 0); });
        report_bw("flow_loss", shape, us, 2.0 * npc * sx + 2.0 * g.noisy_lat * fl + (double)Np * (fl + sizeof(int)));
    }
    cudaCheck(cudaFree(samples)); cudaCheck(cudaFree(frame_mask)); cudaCheck(cudaFree(patrow));
    cudaCheck(cudaFree(x0)); cudaCheck(cudaFree(eps)); cudaCheck(cudaFree(loss_tok));
    cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dout));
}

// ----------------------------------------------------------------------------
// gaussian_fill_at

static uint64_t splitmix64_cpu(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// the value at global index i (double; the kernel computes in float)
static double gaussian_at_cpu(uint64_t seed, size_t i, double mean, double std) {
    const uint64_t h = splitmix64_cpu(splitmix64_cpu(seed) ^ (uint64_t)i);
    const double u1 = ((double)(uint32_t)(h >> 40) + 1.0) / 16777217.0;  // (0, 1]
    const double u2 = (double)(uint32_t)(h & 0xFFFFFF) / 16777216.0;      // [0, 1)
    return mean + std * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

// |mean - m| and |var - s^2| within 5 standard errors of n normal draws
static void check_moments(const char* kernel, const std::string& shape, const std::vector<float>& v, double m, double s) {
    double sum = 0.0, sq = 0.0;
    for (float x : v) sum += x;
    const double n = (double)v.size(), mu = sum / n;
    for (float x : v) sq += (x - mu) * (x - mu);
    const double var = sq / n;
    const bool ok = fabs(mu - m) <= 5.0 * s / sqrt(n) && fabs(var - s * s) <= 5.0 * s * s * sqrt(2.0 / n);
    check_true(ok, "%s/moments mean=%.5f (expected %.2f) var=%.5f (expected %.2f) shape=%s", kernel, mu, m, var, s * s,
               shape.c_str());
}

template <typename T>
static void run_fill_case(size_t n, size_t index0, float mean, float std, bool timed) {
    const char* kernel = sizeof(T) == sizeof(float) ? "gaussian_fill_at<float>" : "gaussian_fill_at<floatX>";
    const std::string shape = strf("n=%zu index0=%zu mean=%.1f std=%.1f", n, index0, mean, std);
    const uint64_t seed = 0xF10Full + n;
    T* out = dev_alloc<T>(n);
    poison(out, n);
    gaussian_fill_at(out, n, seed, index0, mean, std, 0);
    cudaCheck(cudaDeviceSynchronize());
    const std::vector<float> got = download(out, n);
    std::vector<double> ref(n);
    for (size_t i = 0; i < n; i++) {
        const double v = gaussian_at_cpu(seed, index0 + i, mean, std);
        ref[i] = sizeof(T) == sizeof(float) ? v : round_x(v);
    }
    // float log and cos against double: a few ulp of fp32 per value
    check(kernel, "out", shape, got, ref, sizeof(T) == sizeof(float) ? TOL_F32 : TOL_X);
    if (n >= 100000) check_moments(kernel, shape, got, mean, std);

    // in three uneven pieces at their offsets: the same values, bit for bit
    if (n >= 3) {
        T* pieces = dev_alloc<T>(n);
        poison(pieces, n);
        const size_t cut[4] = {0, n / 3 + 1, n / 2 + 2, n};
        for (int k = 0; k < 3; k++)
            gaussian_fill_at(pieces + cut[k], cut[k + 1] - cut[k], seed, index0 + cut[k], mean, std, 0);
        cudaCheck(cudaDeviceSynchronize());
        check(kernel, "out (in 3 pieces)", shape, download(pieces, n), std::vector<double>(got.begin(), got.end()), 0.0);
        cudaCheck(cudaFree(pieces));
    }
    if (timed) {
        const float us = time_us([&] { gaussian_fill_at(out, n, seed, index0, mean, std, 0); });
        report_bw(kernel, shape, us, (double)n * sizeof(T));  // written only
    }
    cudaCheck(cudaFree(out));
}

int main() {
    print_banner("flow");
    Rng rng;
    rng_seed(&rng, 1234);
    // odd H/W: padding in h and w; Cout 8 > Cin 4; T=1 and a one-patch sample; clean frames
    run_loss_case("small", config(64, 4, 8, 1, 2, 2),
                  {{3, 5, 7, true, 0.3f}, {2, 4, 6, false, 0.9f}, {1, 1, 3, false, 0.5f}, {2, 2, 2, true, 1.0f}}, false, &rng);
    // patch 2x3x2: padding on every axis, odd channel counts, P*Cout not a multiple of 32
    run_loss_case("small", config(136, 3, 5, 2, 3, 2), {{5, 7, 5, true, 0.6f}, {2, 3, 4, false, 0.25f}}, false, &rng);
    // dit-s: 8 samples of 8 x 32 x 32 latents, Cin 24, Cout 48, two image-to-video
    std::vector<SampleSpec> dits;
    for (int b = 0; b < 8; b++) dits.push_back({8, 32, 32, b == 1 || b == 5, (b + 0.5f) / 8.0f});
    run_loss_case("dit-s", config(576, 24, 48, 1, 2, 2), dits, true, &rng);
    run_loss_case("1B", config(1152, 24, 48, 1, 2, 2), {{21, 40, 64, false, 0.7f}}, true, &rng);

    for (size_t n : {1ul, 7ul, 1000ul, 1000003ul}) {
        run_fill_case<float>(n, 0, 0.0f, 1.0f, false);
        run_fill_case<float>(n, 12345, 0.5f, 2.0f, false);  // an offset into the batch's noise
        run_fill_case<floatX>(n, 77, 0.0f, 1.0f, false);    // the text embeddings
    }
    // the dit-s batch's latents (x0 and eps): 8 x 24 x 8 x 32 x 32
    run_fill_case<float>((size_t)8 * 24 * 8 * 32 * 32, 0, 0.0f, 1.0f, true);
    return finish("flow");
}
