/*
Check and benchmark of llmc/kernels/classifier.cuh, fused softmax + cross-entropy (+ dlogits):
  fused_classifier: per row of logits [rows, Vp], softmax over the first V columns only,
                    losses[row] = logsumexp(z[:V]) - z[target];
                    with write_dlogits, logits become (softmax - onehot(target)) * dloss in place,
                    and the padding columns V..Vp-1 become 0; a negative target (SFT_IGNORE,
                    -100) gives loss 0 and a dlogits row of 0.
Validated against a CPU reference (double) at small shapes (every row) and at
the gpt-1b (V = Vp = 128256) and emu3 (V 184622 < Vp 184704) shapes (a subset of
rows); timed at the large shapes. The padding columns hold random values, not
zeros, so that a kernel that lets them into the softmax fails. About one row in five has
the ignore target -100 (a prompt or padding token of an SFT batch).
Versions 1 and 2 (this file only): the trainer's kernels before the current one, checked and
timed beside it. Version 1: the running max per element (a data-dependent rescale branch), expf,
plain loads in both passes. Version 2: the running max per 16-byte chunk, exp2, an L2 policy per
pass, 1024 threads a row, one 16-byte load in flight per thread (the current kernel: four, in
blocks of 512). The current kernel's header says why; dev/cuda/NOTES.md has the timings.

  make dev/cuda/classifier && ./dev/cuda/classifier
*/
#include "common.h"
#include "../../llmc/kernels/classifier.cuh"

// ---- version 1 (see the header)
__global__ static void fused_classifier_v1_kernel(floatX* logits, float* losses, const int* targets, float dloss, int V,
                                                  int Vp, bool write_dlogits) {
    const size_t row = blockIdx.x;
    floatX* x = logits + row * Vp;
    const int target = targets[row];
    if (classifier_ignored_row(x, losses, row, target, Vp, write_dlogits)) return;
    float m = -INFINITY, s = 0.0f;
    for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) {
        x128 v = load128(x + c);
        for (int k = 0; k < x128::size; k++) {
            if (c + k >= V) break;
            float z = (float)v[k];
            if (z > m) { s = s * expf(m - z) + 1.0f; m = z; }
            else s += expf(z - m);
        }
    }
    const float lse = block_logsumexp(m, s);
    if (threadIdx.x == 0) losses[row] = lse - (float)x[target];
    if (!write_dlogits) return;
    __syncthreads();  // every thread has read its logits before any is overwritten
    for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) {
        x128 v = load128(x + c), d;
        for (int k = 0; k < x128::size; k++) {
            float p = (c + k < V) ? expf((float)v[k] - lse) : 0.0f;
            float ind = (c + k == target) ? 1.0f : 0.0f;
            d[k] = (floatX)((p - ind) * dloss);
        }
        store128(x + c, d);
    }
}

static void fused_classifier_v1(floatX* logits, float* losses, const int* targets, float dloss, int rows, int V, int Vp,
                                bool write_dlogits, cudaStream_t stream) {
    fused_classifier_v1_kernel<<<rows, 1024, 0, stream>>>(logits, losses, targets, dloss, V, Vp, write_dlogits);
    cudaLaunchCheck();
}
// ---- version 2 (see the header): the trainer's kernel with one chunk in flight, blocks of 1024
static void fused_classifier_v2(floatX* logits, float* losses, const int* targets, float dloss, int rows, int V, int Vp,
                                bool write_dlogits, cudaStream_t stream) {
    fused_classifier_kernel<1><<<rows, 1024, 0, stream>>>(logits, losses, targets, dloss, V, Vp, write_dlogits);
    cudaLaunchCheck();
}
typedef void (*ClassifierFn)(floatX*, float*, const int*, float, int, int, int, bool, cudaStream_t);
static const ClassifierFn CLASSIFIER_VERSIONS[3] = {fused_classifier_v1, fused_classifier_v2, fused_classifier};

static void run_case(int rows, int V, int Vp, size_t step, bool timed, Rng* rng) {
    const std::string shape = strf("rows=%d V=%d Vp=%d", rows, V, Vp);
    const size_t n = (size_t)rows * Vp;
    const float dloss = 1.0f / rows;  // mean loss, as the trainer uses
    floatX *logits_in = dev_alloc<floatX>(n), *logits = dev_alloc<floatX>(n);
    float* losses = dev_alloc<float>(rows);
    int* d_targets = dev_alloc<int>(rows);
    fill_random(logits_in, n, rng, 3.0f);
    std::vector<int> targets(rows);
    for (int r = 0; r < rows; r++) targets[r] = rng_u32(rng) % 5 == 0 ? -100 : (int)(rng_u32(rng) % (uint32_t)V);
    upload_ints(d_targets, targets);

    // reference over a subset of rows
    const std::vector<size_t> vr = row_subset(rows, step);
    const std::vector<float> z = download_rows(logits_in, Vp, vr);
    std::vector<double> ref_loss(vr.size()), ref_dl(vr.size() * Vp), ref_in(z.begin(), z.end());
    for (size_t k = 0; k < vr.size(); k++) {
        const float* zr = &z[k * Vp];
        const int tgt = targets[vr[k]];
        if (tgt < 0) continue;   // ignored: loss 0, dlogits 0 (the zeros the vectors start with)
        double m = -INFINITY;
        for (int c = 0; c < V; c++) m = std::max(m, (double)zr[c]);
        double s = 0.0;
        for (int c = 0; c < V; c++) s += exp(zr[c] - m);
        const double lse = m + log(s);
        ref_loss[k] = lse - zr[tgt];
        for (int c = 0; c < Vp; c++) ref_dl[k * Vp + c] = c < V ? (exp(zr[c] - lse) - (c == tgt ? 1.0 : 0.0)) * dloss : 0.0;
    }
    auto losses_subset = [&]() {
        std::vector<float> all = download(losses, rows), sub;
        for (size_t r : vr) sub.push_back(all[r]);
        return sub;
    };

    for (int ver = 1; ver <= 3; ver++) {
        const ClassifierFn fn = CLASSIFIER_VERSIONS[ver - 1];
        const std::string k2 = ver == 3 ? std::string("fused_classifier") : strf("fused_classifier v%d", ver);
        const std::string k1 = k2 + "(no dlogits)";
        // ---- losses only (evaluation): the logits must stay as they were
        cudaCheck(cudaMemcpy(logits, logits_in, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
        poison(losses, rows);
        fn(logits, losses, d_targets, dloss, rows, V, Vp, false, 0);
        cudaCheck(cudaDeviceSynchronize());
        check(k1.c_str(), "losses", shape, losses_subset(), ref_loss, 1e-5);
        check(k1.c_str(), "logits_unchanged", shape, download_rows(logits, Vp, vr), ref_in, 0.0);

        // ---- losses and dlogits (training)
        cudaCheck(cudaMemcpy(logits, logits_in, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
        poison(losses, rows);
        fn(logits, losses, d_targets, dloss, rows, V, Vp, true, 0);
        cudaCheck(cudaDeviceSynchronize());
        check(k2.c_str(), "losses", shape, losses_subset(), ref_loss, 1e-5);
        check(k2.c_str(), "dlogits", shape, download_rows(logits, Vp, vr), ref_dl, TOL_X);

        if (timed) {
            const double sx = sizeof(floatX), io = (double)rows * (sizeof(int) + sizeof(float));  // targets, losses
            // in place: after the first call the buffer holds dlogits; the work per call is the same
            float us = time_us([&] { fn(logits, losses, d_targets, dloss, rows, V, Vp, true, 0); });
            report_bw(k2 + " (losses + dlogits)", shape, us, (double)rows * (V + Vp) * sx + io);
            us = time_us([&] { fn(logits_in, losses, d_targets, dloss, rows, V, Vp, false, 0); });
            report_bw(k2 + " (losses only)", shape, us, (double)rows * V * sx + io);
        }
    }
    cudaCheck(cudaFree(logits_in)); cudaCheck(cudaFree(logits)); cudaCheck(cudaFree(losses)); cudaCheck(cudaFree(d_targets));
}

int main() {
    print_banner("classifier");
    Rng rng;
    rng_seed(&rng, 1234);
    run_case(64, 1000, 1024, 1, false, &rng);
    run_case(32, 512, 512, 1, false, &rng);
    run_case(7, 50, 56, 1, false, &rng);                // most of the 1024 threads have no column
    run_case(32768, 32768, 32768, 128, true, &rng);     // gpt-s: B32 x T1024
    run_case(16384, 128256, 128256, 64, true, &rng);    // gpt-1b: B8 x T2048
    run_case(8192, 184622, 184704, 32, true, &rng);     // emu3 vocabulary, padded
    return finish("classifier");
}
