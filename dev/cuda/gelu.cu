/*
Check and benchmark of llmc/kernels/gelu.cuh, the DiT's pointwise activations (fp32 math):
  gelu_forward:  out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)   (tanh approximation)
  gelu_backward: dinp = dout * (0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
  silu_forward:  out = x * sigmoid(x)
  silu_backward: dinp = dout * s (1 + x (1 - s)), s = sigmoid(x)
Backwards write dinp (not +=), out of place and in place (dinp == dout, as
train_dit.cu calls them). Validated at small sizes (every element; the
conditioning's 2B x C) and at the MLP's N x F of dit-s / 1B (a subset of rows);
timed at the last two.

  make dev/cuda/gelu && ./dev/cuda/gelu
*/
#include "common.h"
#include "../../llmc/kernels/gelu.cuh"

static double gelu_cpu(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
static double gelu_grad_cpu(double x) {
    const double k = sqrt(2.0 / M_PI), th = tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
}
static double silu_cpu(double x) { return x / (1.0 + exp(-x)); }
static double silu_grad_cpu(double x) {
    const double s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}

typedef void (*FwdFn)(floatX*, const floatX*, size_t, cudaStream_t);
typedef void (*BwdFn)(floatX*, const floatX*, const floatX*, size_t, cudaStream_t);
struct Activation {
    const char* name;
    FwdFn fwd;
    BwdFn bwd;
    double (*f)(double);
    double (*df)(double);
};

// rows x F values (n = rows * F, a multiple of 8); validate rows 0, step, 2*step, ... and the last
static void run_case(const Activation& a, int rows, int F, size_t step, bool timed, Rng* rng) {
    const std::string shape = strf("rows=%d F=%d", rows, F);
    const std::string fname = strf("%s_forward", a.name), bname = strf("%s_backward", a.name);
    const size_t n = (size_t)rows * F;
    floatX *inp = dev_alloc<floatX>(n), *out = dev_alloc<floatX>(n), *dout = dev_alloc<floatX>(n), *dinp = dev_alloc<floatX>(n);
    fill_random(inp, n, rng, 3.0f);  // wide enough to reach both saturated tails
    fill_random(dout, n, rng, 1.0f);
    const std::vector<size_t> vr = row_subset(rows, step);
    const std::vector<float> xh = download_rows(inp, F, vr), dh = download_rows(dout, F, vr);

    // ---- forward
    poison(out, n);
    a.fwd(out, inp, n, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        std::vector<double> ref(xh.size());
        for (size_t k = 0; k < xh.size(); k++) ref[k] = a.f(xh[k]);
        check(fname.c_str(), "out", shape, download_rows(out, F, vr), ref, TOL_X);
    }

    // ---- backward, out of place, then in place on a copy of dout
    {
        std::vector<double> ref(xh.size());
        for (size_t k = 0; k < xh.size(); k++) ref[k] = (double)dh[k] * a.df(xh[k]);
        poison(dinp, n);
        a.bwd(dinp, dout, inp, n, 0);
        cudaCheck(cudaDeviceSynchronize());
        check(bname.c_str(), "dinp", shape, download_rows(dinp, F, vr), ref, TOL_X);
        cudaCheck(cudaMemcpy(dinp, dout, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
        a.bwd(dinp, dinp, inp, n, 0);
        cudaCheck(cudaDeviceSynchronize());
        check((bname + "(in place)").c_str(), "dinp", shape, download_rows(dinp, F, vr), ref, TOL_X);
    }

    if (timed) {
        const double sx = sizeof(floatX);
        float us = time_us([&] { a.fwd(out, inp, n, 0); });
        report_bw(fname, shape, us, 2.0 * n * sx);  // inp read, out written
        // out of place (the same traffic as in place), so that repetitions see the same data
        us = time_us([&] { a.bwd(dinp, dout, inp, n, 0); });
        report_bw(bname, shape, us, 3.0 * n * sx);  // inp, dout read, dinp written
    }
    cudaCheck(cudaFree(inp)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp));
}

int main() {
    print_banner("gelu");
    Rng rng;
    rng_seed(&rng, 1234);
    const Activation acts[] = {{"gelu", gelu_forward, gelu_backward, gelu_cpu, gelu_grad_cpu},
                               {"silu", silu_forward, silu_backward, silu_cpu, silu_grad_cpu}};
    for (const Activation& a : acts) {
        run_case(a, 3, 8, 1, false, &rng);          // one 16-byte vector per row
        run_case(a, 37, 200, 1, false, &rng);       // 925 vectors: a partial block
        run_case(a, 16, 576, 1, false, &rng);       // the conditioning: 2B x C at dit-s
        run_case(a, 16400, 2304, 16, true, &rng);   // dit-s MLP: 16400 tokens x F 2304
        run_case(a, 13442, 4608, 16, true, &rng);   // 1B MLP: 13442 tokens x F 4608
    }
    return finish("gelu");
}
