/*
Check and benchmark of llmc/kernels/dropout.cuh, the GPT's residual-branch dropout:
  dropout_apply: out[i] = keep(i) ? x[i] / (1 - p) : 0, keep(i) = dropout_hash(seed, i) >= p * 2^32
                 (out of place, and in place as train_gpt.cu calls it; the forward and the
                 backward are the same call with the same seed)
The keep decision is a hash of (seed, index), the same function on host and device, so
the reference computes the same mask: the output must match it bit for bit (the
scaling is one fp32 multiply and one rounding, as in the kernel). Also checked: the
kept fraction is 1 - p within 5 standard deviations, and another seed draws another
mask. Validated (every element) at small sizes (one vector, a partial block) and the
gpt-1b residual (B*T 16384 x C 2048); timed there.

  make dev/cuda/dropout && ./dev/cuda/dropout
*/
#include "common.h"
#include "../../llmc/kernels/dropout.cuh"

// the reference: element i of x with the mask of (p, seed), rounded as the kernel stores it
static std::vector<double> dropout_cpu(const std::vector<float>& x, float p, uint64_t seed) {
    const uint32_t threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); i++) {
        const bool keep = dropout_hash(seed, i) >= threshold;
        out[i] = keep ? round_x(x[i] * scale) : 0.0;
    }
    return out;
}

// PASS when the GPU drops exactly the elements the reference drops
static void check_mask(const std::string& shape, const std::vector<float>& gpu, const std::vector<double>& ref) {
    size_t differ = 0, dropped = 0;
    for (size_t i = 0; i < gpu.size(); i++) {
        differ += (gpu[i] == 0.0f) != (ref[i] == 0.0);
        dropped += ref[i] == 0.0;
    }
    check_true(differ == 0, "dropout_apply/mask %zu of %zu elements differ (%zu dropped) shape=%s", differ, gpu.size(),
               dropped, shape.c_str());
}

// the kept fraction of n elements is 1 - p within 5 standard deviations of a binomial
static void check_kept_fraction(const std::string& shape, const std::vector<float>& gpu, float p) {
    size_t kept = 0;
    for (float v : gpu) kept += v != 0.0f;
    const double n = (double)gpu.size(), expect = n * (1.0 - p), sd = sqrt(n * p * (1.0 - p));
    check_true(fabs(kept - expect) <= 5.0 * sd + 1.0, "dropout_apply/kept_fraction %.5f expected %.5f shape=%s", kept / n,
               1.0 - p, shape.c_str());
}

static void run_case(size_t n, float p, bool timed, Rng* rng) {
    const std::string shape = strf("n=%zu p=%.2f", n, p);
    const uint64_t seed = 0x5EED0000ull + n;
    floatX *x = dev_alloc<floatX>(n), *out = dev_alloc<floatX>(n);
    fill_random(x, n, rng, 1.0f);
    const std::vector<float> xh = download(x, n);
    const std::vector<double> ref = dropout_cpu(xh, p, seed);

    // out of place (the backward: the branch's gradient into a scratch buffer)
    poison(out, n);
    dropout_apply(out, x, n, p, seed, 0);
    cudaCheck(cudaDeviceSynchronize());
    const std::vector<float> got = download(out, n);
    check("dropout_apply", "out", shape, got, ref, 0.0);
    check_mask(shape, got, ref);
    if (n >= 100000) check_kept_fraction(shape, got, p);
    // the input is left as it was
    check("dropout_apply", "x (unchanged)", shape, download(x, n), std::vector<double>(xh.begin(), xh.end()), 0.0);

    // in place (the forward: the branch output)
    cudaCheck(cudaMemcpy(out, x, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
    dropout_apply(out, out, n, p, seed, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("dropout_apply(in place)", "out", shape, download(out, n), ref, 0.0);

    // another seed: another mask (p > 0 and enough elements that a repeat would be a bug)
    if (p > 0.0f && n >= 1024) {
        dropout_apply(out, x, n, p, seed + 1, 0);
        cudaCheck(cudaDeviceSynchronize());
        const std::vector<float> other = download(out, n);
        size_t differ = 0;
        for (size_t i = 0; i < n; i++) differ += (other[i] == 0.0f) != (got[i] == 0.0f);
        check_true(differ > 0, "dropout_apply/seed+1 draws another mask (%zu of %zu elements differ) shape=%s", differ, n,
                   shape.c_str());
    }

    if (timed) {
        const double nb = (double)n * sizeof(floatX);
        // in place scales the kept values again each repetition: harmless for timing (no overflow in 24 calls)
        float us = time_us([&] { dropout_apply(out, out, n, p, seed, 0); });
        report_bw("dropout_apply (in place)", shape, us, 2.0 * nb);  // read and written once
        us = time_us([&] { dropout_apply(out, x, n, p, seed, 0); });
        report_bw("dropout_apply (out of place, copy + mask)", shape, us, 2.0 * nb);
    }
    cudaCheck(cudaFree(x));
    cudaCheck(cudaFree(out));
}

int main() {
    print_banner("dropout");
    Rng rng;
    rng_seed(&rng, 1234);
    const size_t v = x128::size;  // n must be a multiple of the vector width
    for (float p : {0.0f, 0.1f, 0.5f}) {
        run_case(v, p, false, &rng);                  // one vector
        run_case(v * 1001, p, false, &rng);           // a partial block of 256 vectors
        run_case(v * 65537, p, false, &rng);          // many blocks, the last one partial
    }
    run_case((size_t)16384 * 2048, 0.1f, true, &rng);  // gpt-1b: B*T x C
    return finish("dropout");
}
