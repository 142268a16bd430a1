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
Version 2 (this file only, not yet measured against the trainer's): the same two passes
with the row max taken per 16-byte chunk (one rescale of the running sum per chunk instead of
a data-dependent branch per element), exp2 of log2e-scaled differences (one multiply and the
MUFU.EX2 where expf needs a range reduction), and L2 hints: the first pass's loads marked
evict_last so that the second pass finds the row in L2 (a 128256-column row is 256 KB; with
two 1024-thread blocks per SM the rows in flight exceed the L2), the second pass's loads and
stores streaming (last use, evict first).

  make dev/cuda/classifier && ./dev/cuda/classifier
*/
#include "common.h"
#include "../../llmc/kernels/classifier.cuh"

// ---- version 2 (see the header)
// 16 bytes with an L2 policy (createpolicy: evict_last over the whole access)
__device__ __forceinline__ uint64_t l2_policy_evict_last() {
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(pol));
    return pol;
}
__device__ __forceinline__ x128 load128_l2_hint(const floatX* p, uint64_t pol) {
    int4 v;
    asm volatile("ld.global.L2::cache_hint.v4.s32 {%0, %1, %2, %3}, [%4], %5;\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p), "l"(pol));
    return x128{v};
}

__global__ static void fused_classifier_v2_kernel(floatX* logits, float* losses, const int* targets, float dloss, int V,
                                                  int Vp, bool write_dlogits) {
    constexpr float LOG2E = 1.4426950408889634f;
    const size_t row = blockIdx.x;
    floatX* x = logits + row * Vp;
    const int target = targets[row];
    if (target < 0) {
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (write_dlogits)
            for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) store128cs(x + c, x128::constant((floatX)0.0f));
        return;
    }
    float m = -INFINITY, s = 0.0f;   // running max and sum of exp(z - m) over this thread's columns
    const uint64_t keep = l2_policy_evict_last();
    for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) {
        const x128 v = load128_l2_hint(x + c, keep);
        float z[x128::size], cm = -INFINITY;
        for (int k = 0; k < x128::size; k++) {
            z[k] = c + k < V ? (float)v[k] : -INFINITY;
            cm = fmaxf(cm, z[k]);
        }
        if (cm == -INFINITY) continue;   // padding only
        if (cm > m) {
            s *= exp2f((m - cm) * LOG2E);   // m = -inf: s is 0 and stays 0
            m = cm;
        }
        for (int k = 0; k < x128::size; k++) s += exp2f((z[k] - m) * LOG2E);
    }
    const float lse = block_logsumexp(m, s);
    if (threadIdx.x == 0) losses[row] = lse - (float)x[target];
    if (!write_dlogits) return;
    __syncthreads();
    const float lse2 = lse * LOG2E;
    for (int c = threadIdx.x * x128::size; c < Vp; c += blockDim.x * x128::size) {
        const x128 v = load128cs(x + c);
        x128 d;
        for (int k = 0; k < x128::size; k++) {
            const float p = c + k < V ? exp2f(fmaf((float)v[k], LOG2E, -lse2)) : 0.0f;
            d[k] = (floatX)((p - (c + k == target ? 1.0f : 0.0f)) * dloss);
        }
        store128cs(x + c, d);
    }
}
static void fused_classifier_v2(floatX* logits, float* losses, const int* targets, float dloss, int rows, int V, int Vp,
                                bool write_dlogits, cudaStream_t stream) {
    fused_classifier_v2_kernel<<<rows, 1024, 0, stream>>>(logits, losses, targets, dloss, V, Vp, write_dlogits);
    cudaLaunchCheck();
}
typedef void (*ClassifierFn)(floatX*, float*, const int*, float, int, int, int, bool, cudaStream_t);
static const ClassifierFn CLASSIFIER_VERSIONS[2] = {fused_classifier, fused_classifier_v2};

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

    for (int ver = 1; ver <= 2; ver++) {
        const ClassifierFn fn = CLASSIFIER_VERSIONS[ver - 1];
        const std::string k1 = ver == 1 ? "fused_classifier(no dlogits)" : "fused_classifier v2(no dlogits)";
        const std::string k2 = ver == 1 ? "fused_classifier" : "fused_classifier v2";
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
