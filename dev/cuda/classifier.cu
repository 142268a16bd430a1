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

  make dev/cuda/classifier && ./dev/cuda/classifier
*/
#include "common.h"
#include "../../llmc/kernels/classifier.cuh"

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

    // ---- losses only (evaluation): the logits must stay as they were
    cudaCheck(cudaMemcpy(logits, logits_in, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
    poison(losses, rows);
    fused_classifier(logits, losses, d_targets, dloss, rows, V, Vp, false, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("fused_classifier(no dlogits)", "losses", shape, losses_subset(), ref_loss, 1e-5);
    check("fused_classifier(no dlogits)", "logits_unchanged", shape, download_rows(logits, Vp, vr), ref_in, 0.0);

    // ---- losses and dlogits (training)
    cudaCheck(cudaMemcpy(logits, logits_in, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
    poison(losses, rows);
    fused_classifier(logits, losses, d_targets, dloss, rows, V, Vp, true, 0);
    cudaCheck(cudaDeviceSynchronize());
    check("fused_classifier", "losses", shape, losses_subset(), ref_loss, 1e-5);
    check("fused_classifier", "dlogits", shape, download_rows(logits, Vp, vr), ref_dl, TOL_X);

    if (timed) {
        const double sx = sizeof(floatX), io = (double)rows * (sizeof(int) + sizeof(float));  // targets, losses
        // in place: after the first call the buffer holds dlogits; the work per call is the same
        float us = time_us([&] { fused_classifier(logits, losses, d_targets, dloss, rows, V, Vp, true, 0); });
        report_bw("fused_classifier (losses + dlogits)", shape, us, (double)rows * (V + Vp) * sx + io);
        us = time_us([&] { fused_classifier(logits_in, losses, d_targets, dloss, rows, V, Vp, false, 0); });
        report_bw("fused_classifier (losses only)", shape, us, (double)rows * V * sx + io);
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
    run_case(16384, 128256, 128256, 64, true, &rng);    // gpt-1b: B8 x T2048
    run_case(8192, 184622, 184704, 32, true, &rng);     // emu3 vocabulary, padded
    return finish("classifier");
}
