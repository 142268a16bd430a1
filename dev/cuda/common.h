// Helpers shared by the kernel benchmarks in dev/cuda/ (no kernel under test
// lives here: those come from llmc/). Random inputs from llmc/core/rand.h, poisoned
// outputs, PASS/FAIL relative-error checks against CPU references, cudaEvent
// timing (warm-up, L2 flushed before every repetition, median), and the table
// every benchmark prints at the end. DEV_CUDA_CHECK_ONLY=1 (what `make test`
// sets) runs the checks only: time_us runs nothing and the table stays empty.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include "../../llmc/core/cuda_common.h"
#include "../../llmc/core/rand.h"

// Ceilings measured on one H200 (docs/perf.md)
static const double COPY_CEILING_GBS = 4300.0;       // device-to-device copy, bytes read + written
static const double MATMUL_CEILING_TFLOPS = 780.0;   // bf16 cuBLAS 8192^3

// Relative-error tolerance of an output stored in floatX. bf16 keeps 8
// significant bits (unit roundoff 2^-8 = 0.4%), so one final rounding gives
// ~2e-3 rms; 1e-2 leaves room for a few roundings on the way. A wrong formula or
// index gives errors of order 1.
#if defined(ENABLE_FP32)
static const double TOL_X = 1e-3;
#else
static const double TOL_X = 1e-2;
#endif
// outputs computed and stored in fp32 (statistics, fp32 gradients, optimizer state)
static const double TOL_F32 = 1e-4;

static int g_checks = 0, g_failed = 0;
static std::vector<std::string> g_table;   // timing rows, printed by finish()

static bool check_only() {
    static const bool on = [] {
        const char* e = getenv("DEV_CUDA_CHECK_ONLY");
        return e && atoi(e) != 0;
    }();
    return on;
}

static void print_banner(const char* name) {
    cudaDeviceProp p = cuda_device_props();
    printf("%s: %s (sm_%d%d, %d SMs, L2 %.0f MiB), precision %s\n", name, p.name, p.major, p.minor,
           p.multiProcessorCount, p.l2CacheSize / 1048576.0, PRECISION_NAME);
}

// ----------------------------------------------------------------------------
// device buffers

template <class T>
static T* dev_alloc(size_t n) {
    return (T*)cuda_malloc_or_fail(std::max<size_t>(n, 1) * sizeof(T), "benchmark buffer");
}
// all bytes 0xFF: NaN in bf16 and fp32 (-1 in int), so an element the kernel
// should have written but did not shows up as non-finite in the check
template <class T>
static void poison(T* d, size_t n) {
    cudaCheck(cudaMemset(d, 0xFF, n * sizeof(T)));
}
template <class T>
static void upload(T* d, const float* h, size_t n) {
    std::vector<T> tmp(n);
    for (size_t i = 0; i < n; i++) tmp[i] = (T)h[i];
    cudaCheck(cudaMemcpy(d, tmp.data(), n * sizeof(T), cudaMemcpyHostToDevice));
}
static void upload_ints(int* d, const std::vector<int>& h) {
    cudaCheck(cudaMemcpy(d, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice));
}
// n elements from d + offset, as float
template <class T>
static std::vector<float> download(const T* d, size_t n, size_t offset = 0) {
    std::vector<T> tmp(n);
    cudaCheck(cudaMemcpy(tmp.data(), d + offset, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> out(n);
    for (size_t i = 0; i < n; i++) out[i] = (float)tmp[i];
    return out;
}
// the listed rows of a row-major [*, row_len] tensor, concatenated
template <class T>
static std::vector<float> download_rows(const T* d, size_t row_len, const std::vector<size_t>& rows) {
    std::vector<float> out;
    out.reserve(rows.size() * row_len);
    for (size_t r : rows) {
        std::vector<float> one = download(d, row_len, r * row_len);
        out.insert(out.end(), one.begin(), one.end());
    }
    return out;
}
// rows 0, step, 2*step, ... and always the last row (step 1: every row)
static std::vector<size_t> row_subset(size_t rows, size_t step) {
    std::vector<size_t> r;
    for (size_t i = 0; i < rows; i += step) r.push_back(i);
    if (r.back() != rows - 1) r.push_back(rows - 1);
    return r;
}

// Fills d[0, n) with shift + scale * N(0, 1) (or shift + scale * U[0, 1) when
// uniform), drawn with llmc/core/rand.h. Buffers longer than FILL_PERIOD values (the
// large timing shapes only) repeat the first FILL_PERIOD values on the device;
// the period is odd so that rows of a matrix do not line up with it.
static const size_t FILL_PERIOD = (1u << 22) + 15;
template <class T>
static void fill_random(T* d, size_t n, Rng* rng, float scale, float shift = 0.0f, bool uniform = false) {
    const size_t m = std::min(n, FILL_PERIOD);
    std::vector<float> h(m);
    for (size_t i = 0; i < m; i++) h[i] = shift + scale * (uniform ? rng_uniform(rng) : rng_normal(rng));
    upload(d, h.data(), m);
    for (size_t off = m; off < n; off += m)
        cudaCheck(cudaMemcpy(d + off, d, std::min(m, n - off) * sizeof(T), cudaMemcpyDeviceToDevice));
}

// value rounded to floatX and back (what a kernel stores)
static inline double round_x(double v) { return (double)(float)(floatX)(float)v; }

// CPU reference of the RMSNorm backward of one row of n values (double), y = x * rstd * w:
// given g = dL/dy, dw += g * xhat and dx = rstd * (w g - xhat * mean(w g xhat)), xhat = x * rstd.
static void rmsnorm_row_backward_cpu(double* dx, double* dw, const float* x, const double* g, const float* w, int n, double eps) {
    double ss = 0.0;
    for (int e = 0; e < n; e++) ss += (double)x[e] * x[e];
    const double r = 1.0 / sqrt(ss / n + eps);
    double dot = 0.0;
    for (int e = 0; e < n; e++) {
        const double xhat = x[e] * r;
        dw[e] += g[e] * xhat;
        dot += w[e] * g[e] * xhat;
    }
    dot /= n;
    for (int e = 0; e < n; e++) dx[e] = r * (w[e] * g[e] - x[e] * r * dot);
}

// ----------------------------------------------------------------------------
// checks

// One PASS/FAIL line per output: relative error ||gpu - ref|| / ||ref||
// (absolute when ref is all zeros); any non-finite GPU value fails.
static bool check(const char* kernel, const char* output, const std::string& shape, const std::vector<float>& gpu,
                  const std::vector<double>& ref, double tol) {
    if (gpu.size() != ref.size()) fail("check %s/%s: %zu GPU values vs %zu reference values", kernel, output, gpu.size(), ref.size());
    g_checks++;
    double num = 0.0, den = 0.0, worst = -1.0;
    size_t nonfinite = 0, first_nonfinite = 0, iworst = 0;
    for (size_t i = 0; i < gpu.size(); i++) {
        if (!std::isfinite(gpu[i]) || !std::isfinite(ref[i])) {
            if (nonfinite++ == 0) first_nonfinite = i;
            continue;
        }
        const double d = (double)gpu[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
        if (fabs(d) > worst) { worst = fabs(d); iworst = i; }
    }
    const double err = den > 0.0 ? sqrt(num / den) : sqrt(num);
    const bool ok = nonfinite == 0 && err <= tol;
    printf("%s %s/%s rel_err=%.3e tol=%.0e n=%zu shape=%s", ok ? "PASS" : "FAIL", kernel, output, err, tol, gpu.size(),
           shape.c_str());
    if (nonfinite) printf(" NONFINITE=%zu (first at %zu: gpu %g ref %g)", nonfinite, first_nonfinite, gpu[first_nonfinite], ref[first_nonfinite]);
    if (!ok && worst >= 0.0) printf(" worst at %zu: gpu %g ref %g", iworst, gpu[iworst], ref[iworst]);
    printf("\n");
    if (!ok) g_failed++;
    return ok;
}

// One PASS/FAIL line for a yes/no check (bit-identical repeats, exact masks, statistics):
// "PASS " or "FAIL " and then the printf-formatted description.
static bool check_true(bool ok, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static bool check_true(bool ok, const char* fmt, ...) {
    g_checks++;
    if (!ok) g_failed++;
    printf("%s ", ok ? "PASS" : "FAIL");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return ok;
}

// ----------------------------------------------------------------------------
// timing

static void* g_flush = nullptr;
static size_t g_flush_bytes = 0;
// overwrite twice the L2 so that every repetition starts from DRAM
static void flush_l2() {
    if (!g_flush) {
        g_flush_bytes = 2 * (size_t)std::max(cuda_device_props().l2CacheSize, 1 << 20);
        g_flush = dev_alloc<char>(g_flush_bytes);
    }
    cudaCheck(cudaMemsetAsync(g_flush, 0, g_flush_bytes, 0));
}

// Median time in microseconds of fn() (work on the default stream) over reps
// repetitions after warmup calls; the L2 flush is outside the timed events.
// Under DEV_CUDA_CHECK_ONLY fn is not called and the time is 0.
template <class F>
static float time_us(F fn, int warmup = 3, int reps = 21) {
    if (check_only()) return 0.0f;
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    for (int i = 0; i < warmup; i++) fn();
    cudaCheck(cudaDeviceSynchronize());
    std::vector<float> ts;
    for (int i = 0; i < reps; i++) {
        flush_l2();
        cudaCheck(cudaEventRecord(start, 0));
        fn();
        cudaCheck(cudaEventRecord(stop, 0));
        cudaCheck(cudaEventSynchronize(stop));
        float ms = 0.0f;
        cudaCheck(cudaEventElapsedTime(&ms, start, stop));
        ts.push_back(ms * 1000.0f);
    }
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

// A table row for a memory-bound kernel: bytes = the fewest bytes the op must
// move (each input read once, each output written once).
static void report_bw(const std::string& kernel, const std::string& shape, float us, double bytes) {
    if (check_only()) return;
    const double gbs = bytes / (us * 1e-6) / 1e9;
    char line[512];
    snprintf(line, sizeof line, "%-40s %-34s %10.1f %9.1f GB/s    %5.1f%% of %.0f GB/s", kernel.c_str(), shape.c_str(), us,
             gbs, 100.0 * gbs / COPY_CEILING_GBS, COPY_CEILING_GBS);
    g_table.push_back(line);
}
// A table row for a compute-bound kernel (attention).
static void report_flops(const std::string& kernel, const std::string& shape, float us, double flops) {
    if (check_only()) return;
    const double tf = flops / (us * 1e-6) / 1e12;
    char line[512];
    snprintf(line, sizeof line, "%-40s %-34s %10.1f %9.1f TFLOP/s %5.1f%% of %.0f TFLOP/s", kernel.c_str(), shape.c_str(), us,
             tf, 100.0 * tf / MATMUL_CEILING_TFLOPS, MATMUL_CEILING_TFLOPS);
    g_table.push_back(line);
}

// Prints the timing table and the summary; the exit status of main.
static int finish(const char* name) {
    if (!g_table.empty()) {
        printf("\n%-40s %-34s %10s %14s    %s\n", "kernel", "shape", "time (us)", "achieved", "of ceiling");
        for (const std::string& l : g_table) printf("%s\n", l.c_str());
    }
    printf("\n%s: %d checks, %d failed\n", name, g_checks, g_failed);
    if (g_flush) cudaCheck(cudaFree(g_flush));
    return g_failed ? 1 : 0;
}

