/*
Check and benchmark of llmc/model/ema.cuh:
  ema_update: ema = ema + (1 - decay) * (master - ema)   (fp32, in place)
Validated against a CPU reference (double) at small sizes (every element; sizes
not a multiple of 4 take the tail path), over several steps in a row (the
average must follow a moving master), and at the size of the 1B DiT (613M
parameters, every 4099th element); timed there.

  make dev/cuda/ema && ./dev/cuda/ema
*/
#include "common.h"
#include "../../llmc/model/ema.cuh"

static void run_case(size_t n, int steps, bool timed, Rng* rng) {
    const std::string shape = strf("n=%zu steps=%d", n, steps);
    const float decay = 0.9999f;
    float *ema = dev_alloc<float>(n), *master = dev_alloc<float>(n);
    fill_random(ema, n, rng, 1.0f);
    std::vector<float> e0 = download(ema, n);
    std::vector<double> ref(e0.begin(), e0.end());
    for (int s = 0; s < steps; s++) {
        fill_random(master, n, rng, 1.0f);  // a new master each step, as after an AdamW update
        const std::vector<float> w = download(master, n);
        ema_update(ema, master, n, decay, 0);
        const double a = 1.0 - (double)decay;
        for (size_t i = 0; i < n; i++) ref[i] += a * ((double)w[i] - ref[i]);
    }
    cudaCheck(cudaDeviceSynchronize());
    // fp32 arithmetic against double: one rounding per step on values of size ~1
    check("ema_update", "ema", shape, download(ema, n), ref, 1e-6);
    if (timed) {
        const float us = time_us([&] { ema_update(ema, master, n, decay, 0); });
        report_bw("ema_update", shape, us, 3.0 * n * sizeof(float));
    }
    cudaCheck(cudaFree(ema));
    cudaCheck(cudaFree(master));
}

int main() {
    print_banner("ema");
    Rng rng;
    rng_seed(&rng, 77);
    for (size_t n : {1ul, 3ul, 4ul, 1027ul, 65536ul + 5}) run_case(n, 5, false, &rng);
    // the 1B DiT: check a subset, time the whole buffer
    {
        const size_t n = 612800000;
        const std::string shape = strf("n=%zu (dit-1b)", n);
        float *ema = dev_alloc<float>(n), *master = dev_alloc<float>(n);
        fill_random(ema, n, &rng, 1.0f);
        fill_random(master, n, &rng, 1.0f);
        std::vector<size_t> idx;
        for (size_t i = 0; i < n; i += 4099) idx.push_back(i);
        idx.push_back(n - 1);
        std::vector<float> e0(idx.size()), w(idx.size());
        for (size_t k = 0; k < idx.size(); k++) {
            cudaCheck(cudaMemcpy(&e0[k], ema + idx[k], 4, cudaMemcpyDeviceToHost));
            cudaCheck(cudaMemcpy(&w[k], master + idx[k], 4, cudaMemcpyDeviceToHost));
        }
        ema_update(ema, master, n, 0.9999f, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<float> got(idx.size());
        std::vector<double> ref(idx.size());
        for (size_t k = 0; k < idx.size(); k++) {
            cudaCheck(cudaMemcpy(&got[k], ema + idx[k], 4, cudaMemcpyDeviceToHost));
            ref[k] = (double)e0[k] + (1.0 - (double)0.9999f) * ((double)w[k] - (double)e0[k]);
        }
        check("ema_update", "ema (every 4099th)", shape, got, ref, 1e-6);
        const float us = time_us([&] { ema_update(ema, master, n, 0.9999f, 0); });
        report_bw("ema_update", shape, us, 3.0 * n * sizeof(float));
        cudaCheck(cudaFree(ema));
        cudaCheck(cudaFree(master));
    }
    return finish("ema");
}
