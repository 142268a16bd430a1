/*
Check and benchmark of llmc/kernels/swiglu.cuh (gu = [gate | up], rows of 2F):
  swiglu_forward:  out[r, f] = silu(g) * u, g = gu[r, f], u = gu[r, F + f], silu(g) = g * sigmoid(g)
  swiglu_backward: dgu[r, f] = dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))), dgu[r, F + f] = dout * silu(g)
Validated against a CPU reference (double) at small shapes (every row) and at
the gpt-1b / gpt-s MLP shapes (a subset of rows); timed at the large shapes.

  make dev/cuda/swiglu && ./dev/cuda/swiglu
*/
#include "common.h"
#include "../../llmc/kernels/swiglu.cuh"

static void run_case(int rows, int F, size_t step, bool timed, Rng* rng) {
    const std::string shape = strf("rows=%d F=%d", rows, F);
    const size_t n = (size_t)rows * F;
    floatX *gu = dev_alloc<floatX>(2 * n), *out = dev_alloc<floatX>(n), *dout = dev_alloc<floatX>(n), *dgu = dev_alloc<floatX>(2 * n);
    fill_random(gu, 2 * n, rng, 2.0f);  // wide enough to reach both tails of the sigmoid
    fill_random(dout, n, rng, 1.0f);
    const std::vector<size_t> vr = row_subset(rows, step);
    const std::vector<float> guh = download_rows(gu, 2 * (size_t)F, vr), douth = download_rows(dout, F, vr);

    // ---- forward
    poison(out, n);
    swiglu_forward(out, gu, rows, F, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        std::vector<double> ref(vr.size() * F);
        for (size_t k = 0; k < vr.size(); k++)
            for (int f = 0; f < F; f++) {
                const double g = guh[k * 2 * F + f], u = guh[k * 2 * F + F + f];
                ref[k * F + f] = g / (1.0 + exp(-g)) * u;
            }
        check("swiglu_forward", "out", shape, download_rows(out, F, vr), ref, TOL_X);
    }

    // ---- backward
    poison(dgu, 2 * n);
    swiglu_backward(dgu, dout, gu, rows, F, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        std::vector<double> ref(vr.size() * 2 * F);
        for (size_t k = 0; k < vr.size(); k++)
            for (int f = 0; f < F; f++) {
                const double g = guh[k * 2 * F + f], u = guh[k * 2 * F + F + f], dy = douth[k * F + f];
                const double sg = 1.0 / (1.0 + exp(-g));
                ref[k * 2 * F + f] = dy * u * sg * (1.0 + g * (1.0 - sg));  // d/dg (g sigmoid(g)) * u
                ref[k * 2 * F + F + f] = dy * g * sg;                       // silu(g)
            }
        check("swiglu_backward", "dgu", shape, download_rows(dgu, 2 * (size_t)F, vr), ref, TOL_X);
    }

    if (timed) {
        const double sx = sizeof(floatX);
        float us = time_us([&] { swiglu_forward(out, gu, rows, F, 0); });
        report_bw("swiglu_forward", shape, us, 3.0 * n * sx);   // gu read, out written
        us = time_us([&] { swiglu_backward(dgu, dout, gu, rows, F, 0); });
        report_bw("swiglu_backward", shape, us, 5.0 * n * sx);  // gu, dout read, dgu written
    }
    cudaCheck(cudaFree(gu)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dgu));
}

int main() {
    print_banner("swiglu");
    Rng rng;
    rng_seed(&rng, 1234);
    run_case(64, 1024, 1, false, &rng);
    run_case(3, 24, 1, false, &rng);
    run_case(16384, 8192, 16, true, &rng);  // gpt-1b: B8 x T2048, F 8192
    run_case(32768, 2048, 32, true, &rng);  // gpt-s: B32 x T1024, F 2048
    return finish("swiglu");
}
