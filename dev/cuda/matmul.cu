/*
Check and benchmark of llmc/core/cublas_common.h, the trainers' cuBLASLt products
(row-major, weights [out, in] as in PyTorch):
  matmul_forward:          out[M, N] = inp[M, K] @ weight[N, K]^T (+ bias[N])        bf16 out
  matmul_backward_dinp:    dinp[M, K] = dout[M, N] @ weight[N, K] (or += )           bf16 out
  matmul_backward_dweight: dweight[N, K] += dout^T @ inp                              fp32 out
  matmul_backward_dweight_bgrad (this file only): the same and bgrad[N] = column sums of dout,
                           fp32 (cuBLASLt's bias-gradient epilogue; slower than the product and
                           train_dit's column sum over a DiT step: dev/cuda/NOTES.md)
Checked against a CPU reference (double, from the bf16 inputs) at small shapes, every element.
Checked too: the trainers' per-shape tuner (matmul_tune) gives bit for bit the output of
cuBLASLt's first suggestion. Timed at the benchmark configs' shapes (gpt-s, gpt-1b, dit-1b, dit-s;
M = the batch's tokens): cuBLASLt's first suggestion and, beside it, each of the heuristic's next
suggestions (up to MATMUL_CANDIDATES), whose outputs are compared with the first's (within the
bf16 / fp32 tolerance: a note where not; bit for bit the same or not: only those the tuner may
take), then the tuned plan the trainers run (forward and dinp; dweight accumulates, untuned);
and at the DiTs' shapes the weight gradient with its bias gradient in one product against the
product and a column sum.

  make dev/cuda/matmul && ./dev/cuda/matmul
*/
#include "common.h"
#include "../../llmc/core/cublas_common.h"
#include "../../llmc/core/reduce.cuh"

// dweight [N, K] += dout^T @ inp and, in the same product (cuBLASLt's bias-gradient epilogue on
// dout), bgrad[N] = the column sums of dout, fp32, written (not added); false, with nothing done,
// where cuBLASLt has no algorithm for it
static bool matmul_backward_dweight_bgrad(float* dweight, float* bgrad, const floatX* dout, const floatX* inp, int M, int N, int K,
                                          cudaStream_t stream) {
    return matmul_lt_epilogue(dweight, CUDA_R_32F, inp, dout, CUBLAS_LOWP, MATMUL_BGRAD_B, bgrad, K, N, M, false, true, K, N, K, 1.0f,
                              1.0f, stream);
}

enum Product { FWD = 0, DINP = 1, DWEIGHT = 2 };
static const char* product_name(int p) {
    return p == FWD ? "matmul_forward" : p == DINP ? "matmul_backward_dinp" : "matmul_backward_dweight";
}

struct Buffers {
    int M, N, K;
    floatX *inp, *weight, *bias, *out, *dout, *dinp;
    float* dweight;
};
static Buffers alloc_buffers(int M, int N, int K, Rng* rng) {
    Buffers b{M, N, K};
    const size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    b.inp = dev_alloc<floatX>(mk); b.weight = dev_alloc<floatX>(nk); b.bias = dev_alloc<floatX>(N);
    b.out = dev_alloc<floatX>(mn); b.dout = dev_alloc<floatX>(mn); b.dinp = dev_alloc<floatX>(mk);
    b.dweight = dev_alloc<float>(nk);
    fill_random(b.inp, mk, rng, 1.0f);
    fill_random(b.weight, nk, rng, 1.0f / sqrtf((float)K));
    fill_random(b.bias, N, rng, 0.5f);
    fill_random(b.dout, mn, rng, 1.0f);
    return b;
}
static void free_buffers(Buffers& b) {
    for (void* p : {(void*)b.inp, (void*)b.weight, (void*)b.bias, (void*)b.out, (void*)b.dout, (void*)b.dinp, (void*)b.dweight})
        cudaCheck(cudaFree(p));
}
// one product on the default stream, as the trainers call it (dweight accumulates: its content
// going in is the caller's)
static void run_product(int prod, const Buffers& b, bool bias, bool accumulate_dinp) {
    if (prod == FWD) matmul_forward(b.out, b.inp, b.weight, bias ? b.bias : nullptr, b.M, b.N, b.K, 0);
    else if (prod == DINP) matmul_backward_dinp(b.dinp, b.dout, b.weight, b.M, b.N, b.K, accumulate_dinp, 0);
    else matmul_backward_dweight(b.dweight, b.dout, b.inp, b.M, b.N, b.K, 0);
}

// every element of the three products at a small shape, against double
static void validate(int M, int N, int K, bool bias, Rng* rng) {
    const std::string shape = strf("M=%d N=%d K=%d%s", M, N, K, bias ? " bias" : "");
    Buffers b = alloc_buffers(M, N, K, rng);
    const std::vector<float> x = download(b.inp, (size_t)M * K), w = download(b.weight, (size_t)N * K),
                             bs = download(b.bias, N), dy = download(b.dout, (size_t)M * N);
    // dinp and dweight start from known values: dinp accumulates, dweight always does
    fill_random(b.dinp, (size_t)M * K, rng, 1.0f);
    fill_random(b.dweight, (size_t)N * K, rng, 1.0f);
    const std::vector<float> dinp0 = download(b.dinp, (size_t)M * K), dw0 = download(b.dweight, (size_t)N * K);
    poison(b.out, (size_t)M * N);
    run_product(FWD, b, bias, false);
    run_product(DINP, b, bias, true);
    run_product(DWEIGHT, b, bias, false);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<double> r_out((size_t)M * N), r_dinp((size_t)M * K), r_dw((size_t)N * K);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = bias ? bs[n] : 0.0;
            for (int k = 0; k < K; k++) s += (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
            r_out[(size_t)m * N + n] = s;
        }
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double s = dinp0[(size_t)m * K + k];
            for (int n = 0; n < N; n++) s += (double)dy[(size_t)m * N + n] * w[(size_t)n * K + k];
            r_dinp[(size_t)m * K + k] = s;
        }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = dw0[(size_t)n * K + k];
            for (int m = 0; m < M; m++) s += (double)dy[(size_t)m * N + n] * x[(size_t)m * K + k];
            r_dw[(size_t)n * K + k] = s;
        }
    check("matmul_forward", "out", shape, download(b.out, (size_t)M * N), r_out, TOL_X);
    check("matmul_backward_dinp", "dinp (accumulated)", shape, download(b.dinp, (size_t)M * K), r_dinp, TOL_X);
    check("matmul_backward_dweight", "dweight (accumulated, fp32)", shape, download(b.dweight, (size_t)N * K), r_dw, TOL_F32);
    // the DiT's weight gradient with its bias gradient in the same product (the BGRADB epilogue):
    // dweight added to again (it holds r_dw now), bgrad written
    float* bgrad = dev_alloc<float>(N);
    poison(bgrad, N);
    if (matmul_backward_dweight_bgrad(b.dweight, bgrad, b.dout, b.inp, M, N, K, 0)) {
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> r_dw2(r_dw), r_bg(N, 0.0);
        for (int n = 0; n < N; n++) {
            for (int m = 0; m < M; m++) r_bg[n] += dy[(size_t)m * N + n];
            for (int k = 0; k < K; k++) {
                double t = 0.0;
                for (int m = 0; m < M; m++) t += (double)dy[(size_t)m * N + n] * x[(size_t)m * K + k];
                r_dw2[(size_t)n * K + k] += t;
            }
        }
        check("matmul_backward_dweight_bgrad", "dweight (accumulated, fp32)", shape, download(b.dweight, (size_t)N * K), r_dw2, TOL_F32);
        check("matmul_backward_dweight_bgrad", "bgrad (fp32)", shape, download(bgrad, N), r_bg, TOL_F32);
    } else {
        printf("note: no cuBLASLt algorithm with the bias-gradient epilogue at %s (train_dit sums the columns itself)\n", shape.c_str());
    }
    cudaCheck(cudaFree(bgrad));
    free_buffers(b);
}

// 1 where the two elements' bits differ
template <class T>
__device__ static unsigned long long memcmp_device(const T* a, const T* b) {
    const unsigned char* x = reinterpret_cast<const unsigned char*>(a);
    const unsigned char* y = reinterpret_cast<const unsigned char*>(b);
    for (size_t i = 0; i < sizeof(T); i++)
        if (x[i] != y[i]) return 1;
    return 0;
}
// ||a - b|| / ||b|| and the number of elements whose bits differ, on the device (the
// outputs at the bench shapes are gigabytes)
template <class T>
__global__ static void compare_kernel(const T* a, const T* b, size_t n, double* sums, unsigned long long* ndiff) {
    double d2 = 0.0, b2 = 0.0;
    unsigned long long nd = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const double x = (double)(float)a[i], y = (double)(float)b[i];
        d2 += (x - y) * (x - y);
        b2 += y * y;
        nd += memcmp_device(a + i, b + i);
    }
    for (int o = 16; o > 0; o >>= 1) {
        d2 += __shfl_xor_sync(0xffffffff, d2, o);
        b2 += __shfl_xor_sync(0xffffffff, b2, o);
        nd += __shfl_xor_sync(0xffffffff, nd, o);
    }
    if (threadIdx.x % 32 == 0) {
        atomicAdd(&sums[0], d2);
        atomicAdd(&sums[1], b2);
        atomicAdd(ndiff, nd);
    }
}
struct Diff { double rel; unsigned long long ndiff; };
template <class T>
static Diff compare_device(const T* a, const T* b, size_t n) {
    double* sums = dev_alloc<double>(2);
    unsigned long long* nd = dev_alloc<unsigned long long>(1);
    cudaCheck(cudaMemset(sums, 0, 2 * sizeof(double)));
    cudaCheck(cudaMemset(nd, 0, sizeof(unsigned long long)));
    compare_kernel<<<1024, 256>>>(a, b, n, sums, nd);
    cudaCheck(cudaGetLastError());
    double h[2];
    Diff r;
    cudaCheck(cudaMemcpy(h, sums, sizeof h, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(&r.ndiff, nd, sizeof r.ndiff, cudaMemcpyDeviceToHost));
    cudaCheck(cudaFree(sums));
    cudaCheck(cudaFree(nd));
    r.rel = h[1] > 0.0 ? sqrt(h[0] / h[1]) : sqrt(h[0]);
    return r;
}

// The trainers' tuned plan for one product (forward or dinp, which overwrite their output): the
// plans dropped, the tuner on, the product run once (planned and tuned on the way); a check that
// its output has the bits of `first` (the heuristic's first suggestion's output). Leaves the tuned
// plan in place (the caller may time it) and its pick in *pick.
static bool tuned_same_bits(int prod, const Buffers& b, bool bias, const void* first, int* pick) {
    const size_t n_out = prod == FWD ? (size_t)b.M * b.N : (size_t)b.M * b.K;
    const floatX* out = prod == FWD ? b.out : b.dinp;
    matmul_plans_clear();
    matmul_candidates_on = false;
    matmul_tune_on = true;
    poison(prod == FWD ? b.out : b.dinp, n_out);
    run_product(prod, b, bias, false);
    cudaCheck(cudaDeviceSynchronize());
    *pick = matmul_last_pick;
    const Diff d = compare_device(out, (const floatX*)first, n_out);
    check_true(d.ndiff == 0, "%s/tuned (candidate %d of %d) bit for bit the heuristic's first: %llu of %zu elements differ M=%d N=%d K=%d",
               product_name(prod), *pick, matmul_last_n_algos, d.ndiff, n_out, b.M, b.N, b.K);
    return d.ndiff == 0;
}

// the trainers' algorithm and the heuristic's other suggestions for one product at one shape
static void time_candidates(const char* config, const char* what, int prod, const Buffers& b, bool bias) {
    const std::string shape = strf("%s %s M=%d N=%d K=%d", config, what, b.M, b.N, b.K);
    const double flops = 2.0 * b.M * b.N * b.K;
    const size_t n_out = prod == FWD ? (size_t)b.M * b.N : prod == DINP ? (size_t)b.M * b.K : (size_t)b.N * b.K;
    const size_t elem = prod == DWEIGHT ? sizeof(float) : sizeof(floatX);
    void* out = prod == FWD ? (void*)b.out : prod == DINP ? (void*)b.dinp : (void*)b.dweight;
    // an algorithm's output from a fixed start (dweight accumulates into zeros)
    auto produce = [&]() {
        if (prod == DWEIGHT) cudaCheck(cudaMemset(b.dweight, 0, n_out * elem));
        run_product(prod, b, bias, false);
        cudaCheck(cudaDeviceSynchronize());
    };
    matmul_algo_index = 0;
    produce();
    const int n = matmul_last_n_algos;
    char* first = dev_alloc<char>(n_out * elem);
    cudaCheck(cudaMemcpy(first, out, n_out * elem, cudaMemcpyDeviceToDevice));
    const float us0 = time_us([&] { run_product(prod, b, bias, false); });
    report_flops(product_name(prod), shape + " [first]", us0, flops);
    float best = us0;
    int best_i = 0;
    bool best_same = true;
    for (int i = 1; i < n; i++) {
        matmul_algo_index = i;
        produce();
        const Diff d = prod == DWEIGHT ? compare_device((const float*)out, (const float*)first, n_out)
                                       : compare_device((const floatX*)out, (const floatX*)first, n_out);
        // a candidate outside the tolerance is not an error of the trainers' code (the tuner takes
        // only the first's bits), but worth knowing
        const double tol = prod == DWEIGHT ? TOL_F32 : TOL_X;
        if (d.rel > tol)
            printf("note: %s candidate %d against the first rel_err=%.3e (tolerance %.0e), %llu of %zu elements other bits, shape %s\n",
                   product_name(prod), i, d.rel, tol, d.ndiff, n_out, shape.c_str());
        const float us = time_us([&] { run_product(prod, b, bias, false); }, 2, 9);
        report_flops(product_name(prod), shape + strf(" [candidate %d%s]", i, d.ndiff == 0 ? ", same bits" : ""), us, flops);
        if (us < best) { best = us; best_i = i; best_same = d.ndiff == 0; }
    }
    matmul_algo_index = 0;
    printf("%-24s %-44s first %9.1f us, best %9.1f us (candidate %d of %d%s): %.3fx\n", product_name(prod), shape.c_str(), us0, best,
           best_i, n, best_i == 0 ? "" : best_same ? ", same bits" : ", other bits", us0 / best);
    // what the trainers run: the tuned plan (matmul_tune; products that overwrite their output)
    if (prod != DWEIGHT) {
        int pick = 0;
        const bool same = tuned_same_bits(prod, b, bias, first, &pick);
        const float us = time_us([&] { run_product(prod, b, bias, false); });
        report_flops(product_name(prod), shape + strf(" [tuned: candidate %d]", pick), us, flops);
        printf("%-24s %-44s tuned %9.1f us (candidate %d%s): %.3fx the first\n", product_name(prod), shape.c_str(), us, pick,
               same ? ", same bits" : ", OTHER BITS", us0 / us);
        matmul_plans_clear();
        matmul_candidates_on = true;
        matmul_tune_on = false;
    }
    cudaCheck(cudaFree(first));
}

// A linear layer's weight and bias gradients as train_dit takes them: one product with the
// bias-gradient epilogue, against the product and a column sum (what it does where cuBLASLt has
// no algorithm for the epilogue)
static void time_bgrad(const char* config, const char* what, const Buffers& b) {
    const std::string shape = strf("%s %s M=%d N=%d K=%d", config, what, b.M, b.N, b.K);
    const double flops = 2.0 * b.M * b.N * b.K;
    float* bgrad = dev_alloc<float>(b.N);
    float* scratch = dev_alloc<float>((size_t)COLUMN_REDUCE_SPLITS * b.N);
    const float us_two = time_us([&] {
        matmul_backward_dweight(b.dweight, b.dout, b.inp, b.M, b.N, b.K, 0);
        column_reduce(bgrad, b.dout, (const floatX*)nullptr, nullptr, b.M, b.N, scratch, 0);
    });
    report_flops("matmul_backward_dweight + column_reduce", shape, us_two, flops);
    if (matmul_backward_dweight_bgrad(b.dweight, bgrad, b.dout, b.inp, b.M, b.N, b.K, 0)) {
        const float us_one = time_us([&] { matmul_backward_dweight_bgrad(b.dweight, bgrad, b.dout, b.inp, b.M, b.N, b.K, 0); });
        report_flops("matmul_backward_dweight_bgrad", shape, us_one, flops);
        printf("%-24s %-44s product + column sum %9.1f us, one product with the bias gradient %9.1f us: %.3fx\n",
               "matmul_backward_dweight_bgrad", shape.c_str(), us_two, us_one, us_two / us_one);
    } else {
        printf("note: no cuBLASLt algorithm with the bias-gradient epilogue at %s\n", shape.c_str());
    }
    cudaCheck(cudaFree(bgrad));
    cudaCheck(cudaFree(scratch));
}

// the products of one layer (and the head) of a benchmark config at M tokens
struct Gemm { const char* what; int N, K; bool bias; };
static void time_config(const char* config, int M, const std::vector<Gemm>& gemms, Rng* rng) {
    for (const Gemm& g : gemms) {
        Buffers b = alloc_buffers(M, g.N, g.K, rng);
        for (int prod : {FWD, DINP, DWEIGHT}) time_candidates(config, g.what, prod, b, g.bias);
        if (g.bias) time_bgrad(config, g.what, b);
        free_buffers(b);
    }
}

int main() {
    print_banner("matmul");
    cublas_init();
    matmul_candidates_on = true;
    matmul_tune_on = false;   // "first" below is the heuristic's first suggestion
    Rng rng;
    rng_seed(&rng, 1234);
    validate(64, 96, 80, false, &rng);
    validate(37, 72, 48, true, &rng);      // odd rows, bias
    validate(128, 264, 136, true, &rng);
    // the tuner keeps the heuristic's first suggestion's bits, at shapes with several suggestions
    for (const Gemm& g : {Gemm{"qkv", 1280, 768, false}, Gemm{"fc1", 4608, 1152, true}, Gemm{"odd rows", 264, 136, true}}) {
        const int M = g.N == 264 ? 4097 : 4096;
        Buffers b = alloc_buffers(M, g.N, g.K, &rng);
        for (int prod : {FWD, DINP}) {
            const size_t n_out = prod == FWD ? (size_t)M * g.N : (size_t)M * g.K;
            matmul_plans_clear();
            matmul_candidates_on = true;
            matmul_tune_on = false;
            matmul_algo_index = 0;
            run_product(prod, b, g.bias, false);
            floatX* first = dev_alloc<floatX>(n_out);
            cudaCheck(cudaMemcpy(first, prod == FWD ? b.out : b.dinp, n_out * sizeof(floatX), cudaMemcpyDeviceToDevice));
            int pick = 0;
            tuned_same_bits(prod, b, g.bias, first, &pick);
            printf("tuned %s %s M=%d N=%d K=%d: candidate %d of %d\n", product_name(prod), g.what, M, g.N, g.K, pick, matmul_last_n_algos);
            cudaCheck(cudaFree(first));
        }
        free_buffers(b);
    }
    matmul_plans_clear();
    matmul_candidates_on = true;
    matmul_tune_on = false;
    if (!check_only()) {
        // gpt-s: B32 x T1024; C 768, 12 / 4 heads of 64 (qkv 1280), F 2048 (gate | up 4096), V 32768
        time_config("gpt-s", 32768, {{"qkv", 1280, 768, false}, {"attn out", 768, 768, false}, {"gate|up", 4096, 768, false},
                                     {"down", 768, 2048, false}, {"lm_head", 32768, 768, false}}, &rng);
        // gpt-1b: B8 x T2048; C 2048, 32 / 8 heads of 64 (qkv 3072), F 8192 (gate | up 16384), V 128256
        time_config("gpt-1b", 16384, {{"qkv", 3072, 2048, false}, {"attn out", 2048, 2048, false}, {"gate|up", 16384, 2048, false},
                                      {"down", 2048, 8192, false}, {"lm_head", 128256, 2048, false}}, &rng);
        // dit-1b: 13,442 tokens; C 1152, F 4608 (biases)
        time_config("dit-1b", 13442, {{"qkv", 3456, 1152, true}, {"attn out", 1152, 1152, true}, {"fc1", 4608, 1152, true},
                                      {"fc2", 1152, 4608, true}}, &rng);
        // dit-s: 8 x 2,050 tokens; C 576, F 2304 (biases)
        time_config("dit-s", 16400, {{"qkv", 1728, 576, true}, {"attn out", 576, 576, true}, {"fc1", 2304, 576, true},
                                     {"fc2", 576, 2304, true}}, &rng);
    }
    cublas_free();
    return finish("matmul");
}
