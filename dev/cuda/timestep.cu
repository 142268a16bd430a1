/*
Check and benchmark of llmc/kernels/timestep.cuh, the DiT's conditioning vector:
  timestep_embedding_host: out [n, 2*half] = [cos(s f_k), sin(s f_k)], f_k = exp(-ln(max_period) k / half)
                           (host code, double; from dit_freq_embedding_freqs)
  cond_combine_forward:    cond[r, c] = temb[r, c] + femb[r / 2, c], conds = SiLU(cond)   (rows 2B; the sum in fp32)
  cond_combine_backward:   g[r, c] = dcond[r, c] + dconds[r, c] * silu'(cond[r, c])   (dcond fp32)
                           dtemb[r, c] = g[r, c], dfemb[b, c] = g[2b, c] + g[2b+1, c]
Rows 2b and 2b+1 are sample b's noisy and clean-frame (t = 0) conditioning, both with
the sample's fps embedding. Validated (every element) at small B x C (one row pair;
2B*C not a multiple of the block) and at dit-s (B8, C 576) and 1B (B1, C 1152) and a
large batch (B64, C 1152); timed at the last three.

  make dev/cuda/timestep && ./dev/cuda/timestep
*/
#include "common.h"
#include "../../llmc/model/dit_config.h"
#include "../../llmc/kernels/timestep.cuh"

static double silu_cpu(double x) { return x / (1.0 + exp(-x)); }
static double silu_grad_cpu(double x) {
    const double s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}

// timestep_embedding_host against the formula written out (frequencies included)
static void run_embedding_case(int freq_dim, float max_period, const std::vector<double>& s) {
    DiTConfig c;
    c.freq_dim = freq_dim;
    c.freq_max_period = max_period;
    const int half = freq_dim / 2, n = (int)s.size();
    const std::string shape = strf("n=%d freq_dim=%d max_period=%.0f", n, freq_dim, max_period);
    std::vector<float> got((size_t)n * freq_dim);
    timestep_embedding_host(got.data(), s.data(), n, dit_freq_embedding_freqs(c));
    std::vector<double> ref(got.size());
    for (int i = 0; i < n; i++)
        for (int k = 0; k < half; k++) {
            const double f = exp(-log((double)max_period) * k / half);
            ref[(size_t)i * freq_dim + k] = cos(s[i] * f);
            ref[(size_t)i * freq_dim + half + k] = sin(s[i] * f);
        }
    check("timestep_embedding_host", "out", shape, got, ref, TOL_F32);
}

static void run_cond_case(int B, int C, bool timed, Rng* rng) {
    const std::string shape = strf("B%d C=%d", B, C);
    const size_t n = (size_t)2 * B * C, nf = (size_t)B * C;
    floatX *temb = dev_alloc<floatX>(n), *femb = dev_alloc<floatX>(nf), *cond = dev_alloc<floatX>(n), *conds = dev_alloc<floatX>(n);
    floatX *dconds = dev_alloc<floatX>(n), *dtemb = dev_alloc<floatX>(n), *dfemb = dev_alloc<floatX>(nf);
    float* dcond = dev_alloc<float>(n);
    fill_random(temb, n, rng, 2.0f);
    fill_random(femb, nf, rng, 2.0f);
    fill_random(dconds, n, rng, 1.0f);
    fill_random(dcond, n, rng, 1.0f);
    const std::vector<float> th = download(temb, n), fh = download(femb, nf), dsh = download(dconds, n), dch = download(dcond, n);

    // ---- forward
    poison(cond, n);
    poison(conds, n);
    cond_combine_forward(cond, conds, temb, femb, B, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<double> rcond(n), rconds(n);
    for (int r = 0; r < 2 * B; r++)
        for (int c = 0; c < C; c++) {
            const double v = (double)th[(size_t)r * C + c] + fh[(size_t)(r / 2) * C + c];
            rcond[(size_t)r * C + c] = v;
            rconds[(size_t)r * C + c] = silu_cpu(v);
        }
    check("cond_combine_forward", "cond", shape, download(cond, n), rcond, TOL_X);
    check("cond_combine_forward", "conds", shape, download(conds, n), rconds, TOL_X);

    // ---- backward (silu' at cond as stored, the kernel's input)
    const std::vector<float> ch = download(cond, n);
    poison(dtemb, n);
    poison(dfemb, nf);
    cond_combine_backward(dtemb, dfemb, dcond, dconds, cond, B, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<double> rdt(n), rdf(nf, 0.0);
    for (int r = 0; r < 2 * B; r++)
        for (int c = 0; c < C; c++) {
            const size_t e = (size_t)r * C + c;
            const double g = dch[e] + (double)dsh[e] * silu_grad_cpu(ch[e]);
            rdt[e] = g;
            rdf[(size_t)(r / 2) * C + c] += g;
        }
    check("cond_combine_backward", "dtemb", shape, download(dtemb, n), rdt, TOL_X);
    check("cond_combine_backward", "dfemb", shape, download(dfemb, nf), rdf, TOL_X);

    if (timed) {
        const double sx = sizeof(floatX);
        float us = time_us([&] { cond_combine_forward(cond, conds, temb, femb, B, C, 0); });
        report_bw("cond_combine_forward", shape, us, 3.0 * n * sx + nf * sx);  // temb, femb read, cond, conds written
        us = time_us([&] { cond_combine_backward(dtemb, dfemb, dcond, dconds, cond, B, C, 0); });
        // dcond (fp32), dconds, cond read, dtemb, dfemb written
        report_bw("cond_combine_backward", shape, us, n * sizeof(float) + 3.0 * n * sx + nf * sx);
    }
    cudaCheck(cudaFree(temb)); cudaCheck(cudaFree(femb)); cudaCheck(cudaFree(cond)); cudaCheck(cudaFree(conds));
    cudaCheck(cudaFree(dconds)); cudaCheck(cudaFree(dtemb)); cudaCheck(cudaFree(dfemb)); cudaCheck(cudaFree(dcond));
}

int main() {
    print_banner("timestep");
    Rng rng;
    rng_seed(&rng, 1234);
    // s = 1000 t (t in [0, 1], the clean frames' 0) and fps values
    run_embedding_case(256, 10000.0f, {0.0, 1000.0, 999.9, 0.5, 123.456, 24.0, 8.0});
    run_embedding_case(6, 100.0f, {0.0, 3.0, 1000.0});
    run_cond_case(1, 8, false, &rng);      // one row pair
    run_cond_case(3, 37, false, &rng);     // 2B*C = 222: one partial block
    run_cond_case(5, 200, false, &rng);    // 2000 elements: the last block partial
    run_cond_case(8, 576, true, &rng);     // dit-s
    run_cond_case(1, 1152, true, &rng);    // 1B
    run_cond_case(64, 1152, true, &rng);   // a large batch at the 1B width
    return finish("timestep");
}
