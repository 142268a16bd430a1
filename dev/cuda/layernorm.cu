/*
Check and benchmark of llmc/kernels/layernorm.cuh (LayerNorm over rows of C, statistics in fp32):
  layernorm_forward:  xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (biased variance; saved per row);
                      out = xhat (no affine: the DiT's block, caption and final norms), or
                      out = xhat * w + b with xhat saved separately (the cross-attention norm)
  layernorm_backward: dinp (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w (dout without affine);
                      with affine also dw += sum over rows of dout * xhat, db += sum over rows of dout
The backward reads the forward's saved xhat and rstd (the GPU's, downloaded: the
reference uses the same values), as train_dit.cu calls it: without affine both
written (final and caption norms) and accumulated (block norms, into the residual
gradient); with affine accumulated, with dw and db. Validated (every element) at
small shapes, the caption width (Cy 4096) and the dit-s / 1B shapes; timed at
the last two. The affine backward (dw, db) has two versions, both checked and
timed ("v1": the dx kernel then two column_reduce passes, kept here; "v2": the
trainer's, the column sums fused into the row pass), and v2 is checked
bit-identical run to run and with dw or db alone. At C 4096 (> 2048) v2 takes the
two-pass path.

  make dev/cuda/layernorm && ./dev/cuda/layernorm
*/
#include "common.h"
#include "../../llmc/kernels/layernorm.cuh"

// ---- layernorm_backward version 1 (the trainer's earlier kernel), kept for
// comparison: the dx kernel (one warp per row), then dw and db each through a
// column_reduce that reads dout (and xhat) again. Scratch COLUMN_REDUCE_SPLITS * C.
static void layernorm_backward_v1(floatX* dinp, float* dw, float* db, const floatX* dout, const floatX* xhat, const floatX* w,
                                  const float* rstd, int rows, int C, bool accumulate, float* scratch, cudaStream_t stream) {
    if (rows == 0) return;
    layernorm_backward_dx_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(dinp, dout, xhat, w, rstd, rows, C, accumulate);
    cudaLaunchCheck();
    if (dw) column_reduce(dw, dout, xhat, nullptr, rows, C, scratch, stream);
    if (db) column_reduce(db, dout, (const floatX*)nullptr, nullptr, rows, C, scratch, stream);
}

// version 1: layernorm_backward_v1 above; version 2: layernorm_backward of llmc/kernels/layernorm.cuh (the trainer's)
typedef void (*LnBwdFn)(floatX*, float*, float*, const floatX*, const floatX*, const floatX*, const float*, int, int, bool,
                        float*, cudaStream_t);
static const LnBwdFn BWD_VERSIONS[2] = {layernorm_backward_v1, layernorm_backward};

// CPU reference of the backward: dinp0 (accumulate) or null, w (affine) or null
static std::vector<double> layernorm_backward_cpu(const std::vector<float>& dout, const std::vector<float>& xhat,
                                                  const std::vector<float>& rstd, const float* w,
                                                  const std::vector<float>* dinp0, int rows, int C) {
    std::vector<double> dx((size_t)rows * C), g(C);
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * C;
        double sg = 0.0, sgx = 0.0;
        for (int c = 0; c < C; c++) {
            g[c] = (double)dout[o + c] * (w ? w[c] : 1.0);
            sg += g[c];
            sgx += g[c] * xhat[o + c];
        }
        sg /= C;
        sgx /= C;
        for (int c = 0; c < C; c++)
            dx[o + c] = (dinp0 ? (double)(*dinp0)[o + c] : 0.0) + rstd[r] * (g[c] - sg - xhat[o + c] * sgx);
    }
    return dx;
}

static void run_case(int rows, int C, bool timed, Rng* rng) {
    const std::string shape = strf("rows=%d C=%d", rows, C);
    const float eps = 1e-6f;  // DiTConfig::norm_eps
    const size_t n = (size_t)rows * C;
    floatX *x = dev_alloc<floatX>(n), *w = dev_alloc<floatX>(C), *b = dev_alloc<floatX>(C);
    floatX *out = dev_alloc<floatX>(n), *xhat = dev_alloc<floatX>(n), *dout = dev_alloc<floatX>(n), *dinp = dev_alloc<floatX>(n);
    float *rstd = dev_alloc<float>(rows), *dw = dev_alloc<float>(C), *db = dev_alloc<float>(C);
    const size_t nscratch = layernorm_backward_scratch_floats(C);  // >= version 1's COLUMN_REDUCE_SPLITS * C
    float* scratch = dev_alloc<float>(nscratch);
    fill_random(x, n, rng, 1.0f, 0.5f);  // a nonzero mean, so a missing mean subtraction shows
    fill_random(w, C, rng, 0.2f, 1.0f);
    fill_random(b, C, rng, 0.2f);
    fill_random(dout, n, rng, 1.0f);
    const std::vector<float> xh = download(x, n), wh = download(w, C), bh = download(b, C), douth = download(dout, n);

    // reference xhat and rstd (two passes in double)
    std::vector<double> ref_xhat(n), ref_rstd(rows);
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += xh[o + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xh[o + c] - m) * (xh[o + c] - m);
        ref_rstd[r] = 1.0 / sqrt(v / C + eps);
        for (int c = 0; c < C; c++) ref_xhat[o + c] = (xh[o + c] - m) * ref_rstd[r];
    }

    // ---- layernorm_forward, no affine (out is xhat)
    {
        poison(out, n);
        poison(rstd, rows);
        layernorm_forward(out, nullptr, rstd, x, nullptr, nullptr, rows, C, eps, 0);
        cudaCheck(cudaDeviceSynchronize());
        check("layernorm_forward", "out", shape, download(out, n), ref_xhat, TOL_X);
        check("layernorm_forward", "rstd", shape, download(rstd, rows), ref_rstd, TOL_F32);
    }

    // ---- layernorm_forward with affine
    {
        poison(out, n);
        poison(xhat, n);
        poison(rstd, rows);
        layernorm_forward(out, xhat, rstd, x, w, b, rows, C, eps, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref_out(n);
        for (size_t i = 0; i < n; i++) ref_out[i] = ref_xhat[i] * wh[i % C] + bh[i % C];
        check("layernorm_forward(affine)", "out", shape, download(out, n), ref_out, TOL_X);
        check("layernorm_forward(affine)", "xhat", shape, download(xhat, n), ref_xhat, TOL_X);
        check("layernorm_forward(affine)", "rstd", shape, download(rstd, rows), ref_rstd, TOL_F32);
    }

    // the saved xhat and rstd of the affine forward feed every backward below
    const std::vector<float> xhat_h = download(xhat, n), rstd_h = download(rstd, rows);

    // ---- layernorm_backward, no affine, written (final and caption norms)
    {
        poison(dinp, n);
        layernorm_backward(dinp, nullptr, nullptr, dout, xhat, nullptr, rstd, rows, C, false, scratch, 0);
        cudaCheck(cudaDeviceSynchronize());
        check("layernorm_backward", "dinp", shape, download(dinp, n),
              layernorm_backward_cpu(douth, xhat_h, rstd_h, nullptr, nullptr, rows, C), TOL_X);
    }

    // ---- layernorm_backward, no affine, accumulated (block norms: the residual gradient)
    {
        fill_random(dinp, n, rng, 1.0f);
        const std::vector<float> dinp0 = download(dinp, n);
        layernorm_backward(dinp, nullptr, nullptr, dout, xhat, nullptr, rstd, rows, C, true, scratch, 0);
        cudaCheck(cudaDeviceSynchronize());
        check("layernorm_backward(accumulate)", "dinp", shape, download(dinp, n),
              layernorm_backward_cpu(douth, xhat_h, rstd_h, nullptr, &dinp0, rows, C), TOL_X);
    }

    // ---- layernorm_backward with affine, accumulated, dw and db (the cross-attention norm), both versions
    for (int ver = 1; ver <= 2; ver++) {
        const std::string kn = strf("layernorm_backward(affine) v%d", ver);
        fill_random(dinp, n, rng, 1.0f);
        fill_random(dw, C, rng, 1.0f);   // the parameter gradients accumulate
        fill_random(db, C, rng, 1.0f);
        const std::vector<float> dinp0 = download(dinp, n), dw0 = download(dw, C), db0 = download(db, C);
        poison(scratch, nscratch);
        BWD_VERSIONS[ver - 1](dinp, dw, db, dout, xhat, w, rstd, rows, C, true, scratch, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref_dw(dw0.begin(), dw0.end()), ref_db(db0.begin(), db0.end());
        for (size_t i = 0; i < n; i++) {
            ref_dw[i % C] += (double)douth[i] * xhat_h[i];
            ref_db[i % C] += douth[i];
        }
        const std::vector<float> dx1 = download(dinp, n), dw1 = download(dw, C), db1 = download(db, C);
        check(kn.c_str(), "dinp", shape, dx1, layernorm_backward_cpu(douth, xhat_h, rstd_h, wh.data(), &dinp0, rows, C), TOL_X);
        check(kn.c_str(), "dw", shape, dw1, ref_dw, TOL_F32);
        check(kn.c_str(), "db", shape, db1, ref_db, TOL_F32);
        if (ver == 2) {  // bit-identical run to run (the trainer's determinism): again from the same start values
            upload(dinp, dinp0.data(), n);
            upload(dw, dw0.data(), C);
            upload(db, db0.data(), C);
            poison(scratch, nscratch);
            layernorm_backward(dinp, dw, db, dout, xhat, w, rstd, rows, C, true, scratch, 0);
            cudaCheck(cudaDeviceSynchronize());
            const bool same = download(dinp, n) == dx1 && download(dw, C) == dw1 && download(db, C) == db1;
            check_true(same, "%s/bit_identical_run_to_run shape=%s", kn.c_str(), shape.c_str());
        }
    }
    // ---- version 2 with dw only and db only (either may be null), written (not accumulated)
    for (int which = 0; which < 2; which++) {
        const std::string kn = strf("layernorm_backward(affine, %s only) v2", which == 0 ? "dw" : "db");
        poison(dinp, n);
        fill_random(dw, C, rng, 1.0f);
        const std::vector<float> g0 = download(dw, C);
        layernorm_backward(dinp, which == 0 ? dw : nullptr, which == 1 ? dw : nullptr, dout, xhat, w, rstd, rows, C, false,
                           scratch, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref(g0.begin(), g0.end());
        for (size_t i = 0; i < n; i++) ref[i % C] += which == 0 ? (double)douth[i] * xhat_h[i] : (double)douth[i];
        check(kn.c_str(), "dinp", shape, download(dinp, n),
              layernorm_backward_cpu(douth, xhat_h, rstd_h, wh.data(), nullptr, rows, C), TOL_X);
        check(kn.c_str(), which == 0 ? "dw" : "db", shape, download(dw, C), ref, TOL_F32);
    }

    if (timed) {
        const double sx = sizeof(floatX), nb = (double)n * sx, rowb = (double)rows * sizeof(float);
        float us = time_us([&] { layernorm_forward(out, nullptr, rstd, x, nullptr, nullptr, rows, C, eps, 0); });
        report_bw("layernorm_forward", shape, us, 2.0 * nb + rowb);  // x read, out written, rstd
        us = time_us([&] { layernorm_forward(out, xhat, rstd, x, w, b, rows, C, eps, 0); });
        report_bw("layernorm_forward (affine)", shape, us, 3.0 * nb + 2.0 * C * sx + rowb);  // + xhat written, w, b
        us = time_us([&] { layernorm_backward(dinp, nullptr, nullptr, dout, xhat, nullptr, rstd, rows, C, false, scratch, 0); });
        report_bw("layernorm_backward", shape, us, 3.0 * nb + rowb);  // dout, xhat read, dinp written
        us = time_us([&] { layernorm_backward(dinp, nullptr, nullptr, dout, xhat, nullptr, rstd, rows, C, true, scratch, 0); });
        report_bw("layernorm_backward (accumulate)", shape, us, 4.0 * nb + rowb);  // dinp read + written
        for (int ver = 1; ver <= 2; ver++) {
            const LnBwdFn fn = BWD_VERSIONS[ver - 1];
            us = time_us([&] { fn(dinp, dw, db, dout, xhat, w, rstd, rows, C, true, scratch, 0); });
            report_bw(strf("layernorm_backward (affine, dw, db) v%d", ver), shape, us,
                      4.0 * nb + C * sx + rowb + 4.0 * C * sizeof(float));
        }
    }
    cudaCheck(cudaFree(x)); cudaCheck(cudaFree(w)); cudaCheck(cudaFree(b)); cudaCheck(cudaFree(out));
    cudaCheck(cudaFree(xhat)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp)); cudaCheck(cudaFree(rstd));
    cudaCheck(cudaFree(dw)); cudaCheck(cudaFree(db)); cudaCheck(cudaFree(scratch));
}

int main() {
    print_banner("layernorm");
    Rng rng;
    rng_seed(&rng, 1234);
    run_case(37, 136, false, &rng);      // partial block of rows; C/8 < 32 lanes
    run_case(9, 1160, false, &rng);      // C/8 = 145: a partial second pass of the warp
    run_case(77, 4096, false, &rng);     // the caption norm's width (T5-XXL, Cy 4096)
    run_case(16400, 576, true, &rng);    // dit-s: B8 x 2050 tokens, C 576
    run_case(13442, 1152, true, &rng);   // 1B: B1 x 13442 tokens, C 1152
    return finish("layernorm");
}
