/*
Check and benchmark of llmc/kernels/rmsnorm.cuh (RMSNorm over rows of C, statistics in fp32):
  rmsnorm_forward:                out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (saved per row)
  fused_residual_rmsnorm_forward: residual = a + b; out = RMSNorm(residual) * w
  rmsnorm_backward:               dinp += rstd * (g - xhat * mean(g * xhat)), g = dout * w, xhat = x * rstd;
                                  dweight += sum over rows of dout * xhat
Validated against a CPU reference (double) at small shapes and at the gpt-1b /
gpt-s shapes (every row); timed at the large shapes.
The backward's dx kernel in both its forms (rmsnorm_backward_dx_kernel<NCH>): the row in
registers (what rmsnorm_backward runs up to C = 2048) and the row read twice (NCH = 0: any C,
version 1); the second's dinp checked bit for bit the first's, both timed.

  make dev/cuda/rmsnorm && ./dev/cuda/rmsnorm
*/
#include "common.h"
#include "../../llmc/kernels/rmsnorm.cuh"

// the dx kernel's loop form (NCH = 0) at any C, launched as rmsnorm_backward_dx launches it
static void rmsnorm_backward_dx_loop(floatX* dinp, const floatX* dout, const floatX* inp, const floatX* weight, const float* rstd,
                                     int rows, int C) {
    rmsnorm_backward_dx_kernel<0><<<ceil_div(rows, 8), 256>>>(dinp, dout, inp, weight, rstd, rows, C);
    cudaLaunchCheck();
}

// CPU reference of the forward of one row: returns rstd, fills out
static double rmsnorm_row_cpu(double* out, const double* x, const float* w, int C, double eps) {
    double ss = 0.0;
    for (int c = 0; c < C; c++) ss += x[c] * x[c];
    const double r = 1.0 / sqrt(ss / C + eps);
    for (int c = 0; c < C; c++) out[c] = x[c] * r * w[c];
    return r;
}

static void run_case(int rows, int C, bool timed, Rng* rng) {
    const std::string shape = strf("rows=%d C=%d", rows, C);
    const float eps = 1e-5f;
    const size_t n = (size_t)rows * C;
    floatX *x = dev_alloc<floatX>(n), *x2 = dev_alloc<floatX>(n), *w = dev_alloc<floatX>(C);
    floatX *out = dev_alloc<floatX>(n), *res = dev_alloc<floatX>(n), *dout = dev_alloc<floatX>(n), *dinp = dev_alloc<floatX>(n);
    float *rstd = dev_alloc<float>(rows), *dweight = dev_alloc<float>(C);
    float* scratch = dev_alloc<float>((size_t)COLUMN_REDUCE_SPLITS * C);
    fill_random(x, n, rng, 1.0f);
    fill_random(x2, n, rng, 1.0f);
    fill_random(w, C, rng, 0.1f, 1.0f);
    fill_random(dout, n, rng, 1.0f);
    const std::vector<float> xh = download(x, n), x2h = download(x2, n), wh = download(w, C), douth = download(dout, n);

    // ---- rmsnorm_forward
    {
        poison(out, n);
        poison(rstd, rows);
        rmsnorm_forward(out, rstd, x, w, rows, C, eps, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref_out(n), ref_rstd(rows), xr(C);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < C; c++) xr[c] = xh[(size_t)r * C + c];
            ref_rstd[r] = rmsnorm_row_cpu(&ref_out[(size_t)r * C], xr.data(), wh.data(), C, eps);
        }
        check("rmsnorm_forward", "out", shape, download(out, n), ref_out, TOL_X);
        check("rmsnorm_forward", "rstd", shape, download(rstd, rows), ref_rstd, TOL_F32);
    }

    // ---- rmsnorm_backward (rstd from the forward above)
    {
        fill_random(dinp, n, rng, 1.0f);      // the residual gradient accumulates into dinp
        fill_random(dweight, C, rng, 1.0f);   // and the weight gradient into dweight
        const std::vector<float> dinp0 = download(dinp, n), dw0 = download(dweight, C);
        poison(scratch, (size_t)COLUMN_REDUCE_SPLITS * C);
        rmsnorm_backward(dinp, dweight, dout, x, w, rstd, rows, C, scratch, 0);
        cudaCheck(cudaDeviceSynchronize());
        std::vector<double> ref_dinp(n), ref_dw(dw0.begin(), dw0.end()), xhat(C), g(C);
        for (int r = 0; r < rows; r++) {
            const size_t o = (size_t)r * C;
            double ss = 0.0;
            for (int c = 0; c < C; c++) ss += (double)xh[o + c] * xh[o + c];
            const double rs = 1.0 / sqrt(ss / C + eps);
            double dot = 0.0;
            for (int c = 0; c < C; c++) {
                xhat[c] = xh[o + c] * rs;
                g[c] = (double)douth[o + c] * wh[c];
                dot += g[c] * xhat[c];
                ref_dw[c] += (double)douth[o + c] * xhat[c];
            }
            dot /= C;
            for (int c = 0; c < C; c++) ref_dinp[o + c] = dinp0[o + c] + rs * (g[c] - xhat[c] * dot);
        }
        check("rmsnorm_backward", "dinp", shape, download(dinp, n), ref_dinp, TOL_X);
        check("rmsnorm_backward", "dweight", shape, download(dweight, C), ref_dw, TOL_F32);
        // the loop form of the dx kernel from the same dinp: bit for bit what rmsnorm_backward wrote
        const std::vector<float> dinp1 = download(dinp, n);
        upload(dinp, dinp0.data(), n);
        rmsnorm_backward_dx_loop(dinp, dout, x, w, rstd, rows, C);
        cudaCheck(cudaDeviceSynchronize());
        check_true(download(dinp, n) == dinp1, "rmsnorm_backward_dx, the row read twice, bit for bit the default's dinp shape=%s",
                   shape.c_str());
    }

    // ---- fused_residual_rmsnorm_forward
    {
        poison(res, n);
        poison(out, n);
        poison(rstd, rows);
        fused_residual_rmsnorm_forward(res, out, rstd, x, x2, w, rows, C, eps, 0);
        cudaCheck(cudaDeviceSynchronize());
        // The norm is of the residual stream as stored (floatX): the reference
        // normalizes round_x(a + b), as the backward will see it.
        std::vector<double> ref_res(n), ref_out(n), ref_rstd(rows), xr(C);
        for (int r = 0; r < rows; r++) {
            const size_t o = (size_t)r * C;
            for (int c = 0; c < C; c++) {
                ref_res[o + c] = (double)xh[o + c] + x2h[o + c];
                xr[c] = round_x(ref_res[o + c]);
            }
            ref_rstd[r] = rmsnorm_row_cpu(&ref_out[o], xr.data(), wh.data(), C, eps);
        }
        check("fused_residual_rmsnorm_forward", "residual", shape, download(res, n), ref_res, TOL_X);
        check("fused_residual_rmsnorm_forward", "out", shape, download(out, n), ref_out, TOL_X);
        check("fused_residual_rmsnorm_forward", "rstd", shape, download(rstd, rows), ref_rstd, TOL_F32);
    }

    if (timed) {
        const double sx = sizeof(floatX), rowb = (double)rows * sizeof(float);
        float us = time_us([&] { rmsnorm_forward(out, rstd, x, w, rows, C, eps, 0); });
        report_bw("rmsnorm_forward", shape, us, 2.0 * n * sx + C * sx + rowb);
        us = time_us([&] { fused_residual_rmsnorm_forward(res, out, rstd, x, x2, w, rows, C, eps, 0); });
        report_bw("fused_residual_rmsnorm_forward", shape, us, 4.0 * n * sx + C * sx + rowb);
        // restore the plain forward's rstd for the backward timings (values do not matter for time)
        rmsnorm_forward(out, rstd, x, w, rows, C, eps, 0);
        // backward: dout, x read; dinp read + written (+=); w, rstd read; dweight read + written
        us = time_us([&] { rmsnorm_backward(dinp, dweight, dout, x, w, rstd, rows, C, scratch, 0); });
        report_bw("rmsnorm_backward (dx + dweight)", shape, us, 4.0 * n * sx + C * sx + rowb + 2.0 * C * sizeof(float));
        // its two parts, launched as rmsnorm_backward launches them
        us = time_us([&] { rmsnorm_backward_dx(dinp, dout, x, w, rstd, rows, C, 0); });
        report_bw("  rmsnorm_backward_dx (row in registers)", shape, us, 4.0 * n * sx + C * sx + rowb);
        us = time_us([&] { rmsnorm_backward_dx_loop(dinp, dout, x, w, rstd, rows, C); });
        report_bw("  rmsnorm_backward_dx (row read twice, version 1)", shape, us, 4.0 * n * sx + C * sx + rowb);
        us = time_us([&] { column_reduce(dweight, dout, x, rstd, rows, C, scratch, 0); });
        report_bw("  column_reduce (dweight)", shape, us, 2.0 * n * sx + rowb + 2.0 * C * sizeof(float));
    }
    cudaCheck(cudaFree(x)); cudaCheck(cudaFree(x2)); cudaCheck(cudaFree(w)); cudaCheck(cudaFree(out));
    cudaCheck(cudaFree(res)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp)); cudaCheck(cudaFree(rstd));
    cudaCheck(cudaFree(dweight)); cudaCheck(cudaFree(scratch));
}

int main() {
    print_banner("rmsnorm");
    Rng rng;
    rng_seed(&rng, 1234);
    run_case(256, 768, false, &rng);
    run_case(37, 136, false, &rng);      // partial block of rows; C/8 < 32 lanes
    run_case(16384, 2048, true, &rng);   // gpt-1b: B8 x T2048, C 2048
    run_case(32768, 768, true, &rng);    // gpt-s: B32 x T1024, C 768
    return finish("rmsnorm");
}
