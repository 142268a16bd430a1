/*
Check and benchmark of llmc/kernels/encoder.cuh, the token embedding:
  encoder_forward:  out[bt, :] = wte[tokens[bt], :]
  encoder_backward: dwte[v, :] += sum of dout[bt, :] over the positions bt with tokens[bt] == v
                    (host buckets from encoder_make_buckets, one block per distinct token)
Validated against a CPU reference at small shapes (every row) and at the gpt-1b
shape (a subset of rows); timed at the gpt-1b shape with uniform and Zipf-like
tokens (a few tokens repeated hundreds of times, as in text).

  make dev/cuda/encoder && ./dev/cuda/encoder
*/
#include "common.h"
#include "../../llmc/kernels/encoder.cuh"

// zipf = 0: uniform over [0, V); zipf = 1: p(v) ~ 1/(v+1) (token 0 takes ~6% of a batch at V = 128k)
static std::vector<int> make_tokens(int BT, int V, int zipf, Rng* rng) {
    std::vector<int> t(BT);
    for (int i = 0; i < BT; i++) {
        int v;
        if (zipf) v = (int)floor(exp(rng_uniform(rng) * log((double)V))) - 1;
        else v = (int)(rng_u32(rng) % (uint32_t)V);
        t[i] = std::min(std::max(v, 0), V - 1);
    }
    return t;
}

// step: validate rows 0, step, 2*step, ... of out and of dwte (1: all of them)
static void run_case(int BT, int C, int V, int zipf, size_t step, bool timed, Rng* rng) {
    const std::string shape = strf("BT=%d C=%d V=%d %s", BT, C, V, zipf ? "zipf" : "uniform");
    const size_t n = (size_t)BT * C, nw = (size_t)V * C;
    std::vector<int> tokens = make_tokens(BT, V, zipf, rng);
    floatX* wte = dev_alloc<floatX>(nw);
    floatX* out = dev_alloc<floatX>(n);
    floatX* dout = dev_alloc<floatX>(n);
    float* dwte = dev_alloc<float>(nw);
    int* d_tokens = dev_alloc<int>(BT);
    int* dev_ints = dev_alloc<int>(3 * (size_t)BT + 1);
    fill_random(wte, nw, rng, 1.0f);
    fill_random(dout, n, rng, 1.0f);
    fill_random(dwte, nw, rng, 1.0f);  // the backward accumulates into it
    upload_ints(d_tokens, tokens);

    // ---- forward
    poison(out, n);
    encoder_forward(out, d_tokens, wte, BT, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        std::vector<size_t> rows = row_subset(BT, step), wrows;
        for (size_t r : rows) wrows.push_back((size_t)tokens[r]);
        std::vector<float> got = download_rows(out, C, rows);
        std::vector<float> w = download_rows(wte, C, wrows);  // wte[tokens[r], :]
        std::vector<double> ref(w.begin(), w.end());
        check("encoder_forward", "out", shape, got, ref, 0.0);  // a copy: bit-exact
    }

    // ---- backward
    EncoderBuckets buckets;
    encoder_make_buckets(&buckets, tokens.data(), BT, V);
    poison(dev_ints, 3 * (size_t)BT + 1);
    {
        // rows of dwte to check: every step-th vocab row, plus the tokens of the first 64 positions
        std::vector<size_t> vrows = row_subset(V, step);
        for (int i = 0; i < std::min(BT, 64); i++) vrows.push_back((size_t)tokens[i]);
        std::sort(vrows.begin(), vrows.end());
        vrows.erase(std::unique(vrows.begin(), vrows.end()), vrows.end());
        std::vector<float> init = download_rows(dwte, C, vrows);
        encoder_backward(dwte, dout, buckets, dev_ints, BT, C, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<float> got = download_rows(dwte, C, vrows);
        // reference: every position adds its dout row into its token's row (rows of absent tokens keep init)
        std::vector<float> d = download(dout, n);
        std::vector<long> slot(V, -1);
        for (size_t k = 0; k < vrows.size(); k++) slot[vrows[k]] = (long)k;
        std::vector<double> ref(init.begin(), init.end());
        for (int p = 0; p < BT; p++) {
            const long s = slot[tokens[p]];
            if (s < 0) continue;
            for (int c = 0; c < C; c++) ref[(size_t)s * C + c] += d[(size_t)p * C + c];
        }
        check("encoder_backward", "dwte", shape, got, ref, TOL_F32);
    }

    if (timed) {
        float us = time_us([&] { encoder_forward(out, d_tokens, wte, BT, C, 0); });
        report_bw("encoder_forward", shape, us, 2.0 * n * sizeof(floatX) + BT * sizeof(int));
        // backward bytes: dout once, each touched dwte row read + written (fp32), the bucket ints
        const double nb = (double)buckets.bucket_token.size();
        const double bytes = (double)n * sizeof(floatX) + 2.0 * nb * C * sizeof(float) + (2.0 * nb + 1 + BT) * sizeof(int);
        us = time_us([&] { encoder_backward(dwte, dout, buckets, dev_ints, BT, C, 0); });
        report_bw("encoder_backward (incl. bucket H2D)", shape, us, bytes);
        // the kernel alone, launched as encoder_backward launches it (dev_ints holds the buckets now)
        const int threads = std::min(256, std::max(32, C / x128::size));
        us = time_us([&] {
            encoder_backward_kernel<<<(int)nb, threads>>>(dwte, dout, dev_ints, dev_ints + BT, dev_ints + 2 * (size_t)BT + 1, C);
            cudaLaunchCheck();
        });
        report_bw(strf("encoder_backward_kernel (%d buckets)", (int)nb), shape, us, bytes);
    }
    cudaCheck(cudaFree(wte)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dout));
    cudaCheck(cudaFree(dwte)); cudaCheck(cudaFree(d_tokens)); cudaCheck(cudaFree(dev_ints));
}

int main() {
    print_banner("encoder");
    Rng rng;
    rng_seed(&rng, 1234);
    // small: repeated tokens (long buckets), C/8 below and above one warp's worth of threads
    run_case(256, 768, 512, 1, 1, false, &rng);
    run_case(37, 136, 64, 0, 1, false, &rng);
    // gpt-1b: B*T = 16384, C = 2048, V = 128256
    run_case(16384, 2048, 128256, 0, 16, true, &rng);
    run_case(16384, 2048, 128256, 1, 16, true, &rng);
    return finish("encoder");
}
