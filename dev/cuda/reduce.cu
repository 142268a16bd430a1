/*
Check and benchmark of llmc/core/reduce.cuh, the deterministic reductions:
  column_reduce:       out[c] += sum_r a[r,c] * (b ? b[r,c] : 1) * (s ? s[r] : 1)
                       (the linear layers' bias gradients, the norms' weight gradients)
  global_norm_squared: out = sum x^2 (the gradient norm)
Validated against a CPU reference (double) at small shapes and at the trainers' shapes (every
column), and bit-identical run to run; timed at the trainers' shapes: the DiT's bias
gradients (dit-s: 8 x 2050 = 16,400 rows at widths 576, 1728, 2304; the 1B DiT: 13,442 rows at
1152, 3456, 4608), the GPT's norm-weight gradients (gpt-1b: 16,384 x 2048, a, b and s), and
the gradient norm over 2^28 floats.

Version 2 (this file only): column_reduce_partial_kernel loading four of its rows before
adding them, so that a thread has four 16-byte loads in flight instead of one (at the DiT's
widths the grid is only ceil(C / 256) x 64 blocks of 256 threads). Its additions are those
of version 1 in the same order, so its sums are bit-identical to version 1's (checked).
Version 3: version 1's kernel with more threads instead of more loads a thread: blocks of 32
row lanes (1024 threads; its LANES template argument) instead of 8, the same grid, so four times
the threads with a load in flight; held to 32 registers a thread for two blocks an SM (a spill of
8 bytes; version 2 needed 96, which cut the blocks an SM). Its sums are in another order (a
thread's rows are every 32nd; the 32 lanes added in order): deterministic, not bit-identical to
version 1.

  make dev/cuda/reduce && ./dev/cuda/reduce
*/
#include "common.h"
#include "../../llmc/core/reduce.cuh"

// ---- version 2 (see the header): version 1's kernel, four rows' loads at a time
template <typename Ta, typename Tb>
__global__ void column_reduce_partial_v2_kernel(float* partial, const Ta* a, const Tb* b, const float* s, int rows, int cols,
                                                int rows_per_split) {
    const int c0 = (blockIdx.x * 32 + threadIdx.x) * 8;
    const int r_begin = blockIdx.y * rows_per_split;
    const int r_end = min(rows, r_begin + rows_per_split);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (c0 < cols) {
        const int dy = blockDim.y;
        int r = r_begin + threadIdx.y;
        // four rows' loads issued before their additions, which keep version 1's order
        for (; r + 3 * dy < r_end; r += 4 * dy) {
            float va[4][8], vb[4][8], sr[4];
            for (int u = 0; u < 4; u++) {
                load8_f32(a + (size_t)(r + u * dy) * cols + c0, va[u]);
                if (b) load8_f32(b + (size_t)(r + u * dy) * cols + c0, vb[u]);
                sr[u] = s ? s[r + u * dy] : 1.0f;
            }
            for (int u = 0; u < 4; u++)
                for (int k = 0; k < 8; k++) acc[k] += (b ? va[u][k] * vb[u][k] : va[u][k]) * sr[u];
        }
        for (; r < r_end; r += dy) column_reduce_add_row(acc, a, b, s, r, cols, c0);
    }
    column_reduce_store_block(partial, acc, cols, c0);
}
template <typename Ta, typename Tb>
static void column_reduce_v2(float* out, const Ta* a, const Tb* b, const float* s, int rows, int cols, float* scratch,
                             cudaStream_t stream) {
    if (cols % 8 != 0) fail("column_reduce: cols %d not a multiple of 8", cols);
    const int splits = std::min(COLUMN_REDUCE_SPLITS, std::max(1, rows));
    const int rows_per_split = ceil_div(rows, splits);
    column_reduce_partial_v2_kernel<<<dim3(ceil_div(cols, 32 * 8), splits), dim3(32, 8), 0, stream>>>(scratch, a, b, s, rows, cols,
                                                                                                     rows_per_split);
    cudaLaunchCheck();
    column_reduce_final_kernel<<<ceil_div(cols, 256), 256, 0, stream>>>(out, scratch, splits, cols);
    cudaLaunchCheck();
}

// ---- version 3 (see the header): version 1's kernel (column_reduce_partial_kernel) with 32 row lanes
template <typename Ta, typename Tb>
static void column_reduce_v3(float* out, const Ta* a, const Tb* b, const float* s, int rows, int cols, float* scratch,
                             cudaStream_t stream) {
    if (cols % 8 != 0) fail("column_reduce: cols %d not a multiple of 8", cols);
    constexpr int LANES = 32;
    const int splits = std::min(COLUMN_REDUCE_SPLITS, std::max(1, rows));
    const int rows_per_split = ceil_div(rows, splits);
    column_reduce_partial_kernel<Ta, Tb, LANES><<<dim3(ceil_div(cols, 32 * 8), splits), dim3(32, LANES), 0, stream>>>(
        scratch, a, b, s, rows, cols, rows_per_split);
    cudaLaunchCheck();
    column_reduce_final_kernel<<<ceil_div(cols, 256), 256, 0, stream>>>(out, scratch, splits, cols);
    cudaLaunchCheck();
}

// which inputs a case has: a only (a bias gradient), a * b (a LayerNorm weight), a * b * s (RMSNorm's)
enum Inputs { A_ONLY, A_B, A_B_S };
static const char* inputs_name(Inputs in) { return in == A_ONLY ? "a" : in == A_B ? "a*b" : "a*b*s"; }

static void run_case(int rows, int cols, Inputs in, bool timed, Rng* rng) {
    const std::string shape = strf("rows=%d cols=%d %s", rows, cols, inputs_name(in));
    const size_t n = (size_t)rows * cols;
    floatX* a = dev_alloc<floatX>(n);
    floatX* b = in != A_ONLY ? dev_alloc<floatX>(n) : nullptr;
    float* s = in == A_B_S ? dev_alloc<float>(rows) : nullptr;
    float *out = dev_alloc<float>(cols), *scratch = dev_alloc<float>((size_t)COLUMN_REDUCE_SPLITS * cols);
    fill_random(a, n, rng, 1.0f);
    if (b) fill_random(b, n, rng, 1.0f);
    if (s) fill_random(s, rows, rng, 0.5f, 1.0f);
    fill_random(out, cols, rng, 1.0f);   // accumulated into: start from values that are not zero
    const std::vector<float> ah = download(a, n), out0 = download(out, cols);
    const std::vector<float> bh = b ? download(b, n) : std::vector<float>(), sh = s ? download(s, rows) : std::vector<float>();
    std::vector<double> ref(out0.begin(), out0.end());
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const size_t e = (size_t)r * cols + c;
            ref[c] += (double)ah[e] * (b ? bh[e] : 1.0) * (s ? sh[r] : 1.0);
        }
    auto run = [&](int version) {
        if (version == 1) column_reduce(out, a, b, s, rows, cols, scratch, 0);
        else if (version == 2) column_reduce_v2(out, a, b, s, rows, cols, scratch, 0);
        else column_reduce_v3(out, a, b, s, rows, cols, scratch, 0);
    };
    auto name = [](int v) { return v == 1 ? std::string("column_reduce") : strf("column_reduce v%d", v); };
    std::vector<float> got[4];
    for (int v = 1; v <= 3; v++) {
        upload(out, out0.data(), cols);
        poison(scratch, (size_t)COLUMN_REDUCE_SPLITS * cols);
        run(v);
        cudaCheck(cudaDeviceSynchronize());
        got[v] = download(out, cols);
        check(name(v).c_str(), "out", shape, got[v], ref, TOL_F32);
    }
    for (int v : {1, 3}) {
        upload(out, out0.data(), cols);
        run(v);
        cudaCheck(cudaDeviceSynchronize());
        check_true(download(out, cols) == got[v], "%s bit-identical run to run shape=%s", name(v).c_str(), shape.c_str());
    }
    check_true(got[2] == got[1], "column_reduce v2 bit-identical to version 1 (same additions, same order) shape=%s", shape.c_str());

    if (timed) {
        // a (and b) read, s read; out read and written (per column: small)
        const double bytes = (double)n * sizeof(floatX) * (b ? 2 : 1) + (s ? rows * 4.0 : 0.0);
        for (int v = 1; v <= 3; v++) {
            const float us = time_us([&] { run(v); });
            report_bw(strf("%s (%s)", name(v).c_str(), inputs_name(in)), strf("rows=%d cols=%d", rows, cols), us, bytes);
        }
    }
    cudaCheck(cudaFree(a)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(scratch));
    if (b) cudaCheck(cudaFree(b));
    if (s) cudaCheck(cudaFree(s));
}

static void run_norm_case(size_t n, bool timed, Rng* rng) {
    const std::string shape = strf("n=%zu", n);
    float *x = dev_alloc<float>(n), *out = dev_alloc<float>(1), *scratch = dev_alloc<float>(GLOBAL_NORM_BLOCKS);
    fill_random(x, n, rng, 1.0f);
    // the reference over the values the device holds (fill_random repeats its period on long buffers)
    const size_t m = std::min(n, FILL_PERIOD);
    const std::vector<float> xh = download(x, m);
    double per = 0.0, ref = 0.0;
    for (size_t i = 0; i < m; i++) per += (double)xh[i] * xh[i];
    for (size_t off = 0; off < n; off += m) {
        if (n - off >= m) { ref += per; continue; }
        for (size_t i = 0; i < n - off; i++) ref += (double)xh[i] * xh[i];
    }
    poison(out, 1);
    global_norm_squared(out, x, n, scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    const std::vector<float> got = download(out, 1);
    check("global_norm_squared", "out", shape, got, {ref}, TOL_F32);
    global_norm_squared(out, x, n, scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    check_true(download(out, 1) == got, "global_norm_squared bit-identical run to run shape=%s", shape.c_str());
    if (timed) report_bw("global_norm_squared", shape, time_us([&] { global_norm_squared(out, x, n, scratch, 0); }), (double)n * 4);
    cudaCheck(cudaFree(x)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(scratch));
}

int main() {
    print_banner("reduce");
    Rng rng;
    rng_seed(&rng, 1234);
    run_case(37, 24, A_ONLY, false, &rng);       // fewer rows than splits; cols / 8 < 32 lanes
    run_case(1000, 576, A_B, false, &rng);
    run_case(300, 136, A_B_S, false, &rng);
    for (int c : {576, 1728, 2304}) run_case(16400, c, A_ONLY, true, &rng);    // dit-s bias gradients
    for (int c : {1152, 3456, 4608}) run_case(13442, c, A_ONLY, true, &rng);   // 1B DiT
    run_case(16384, 2048, A_B_S, true, &rng);                                  // gpt-1b RMSNorm weight gradient
    run_norm_case(1000, false, &rng);
    run_norm_case((size_t)1 << 28, true, &rng);                                // 1 GiB of fp32 gradients
    return finish("reduce");
}
