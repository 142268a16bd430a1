/*
Check and benchmark of the two attention implementations (same math, same layouts):
  1. dev/cuda/attention_reference.cuh (grouped-query attention as batched GEMMs plus a row
     softmax; the [T, T] probabilities are materialized): the reference
  2. llmc/attention/flash_attention.cuh (fused FlashAttention-2-style tensor-core kernels,
     online softmax, saves only the logsumexp), run through dev/cuda/attention_variants.cuh
     so that every backward mechanism and tile variant can be chosen: the backward
     mechanisms split, ordered (fused, deterministic) and atomic (fused, dQ by fp32 atomics,
     NOT deterministic) are checked and timed side by side, in two kernel families where the
     build and GPU allow: the Hopper wgmma kernels (llmc/attention/flash_sm90.cuh, "[sm90]")
     and the mma.sync ones ("[mma.sync]", llmc/attention/flash_mma.cuh; their fused backward
     lives only here); "[default]" is what the trainers run: per head dim the family of the
     dispatch table, and the backward their policy picks (deterministic: ordered on Hopper,
     split elsewhere; "[fast]": atomic on Hopper, except hd 64 / 128 in the fixed layout, where
     the ordered kernel is the faster one, split elsewhere)
  forward:  per query head h (kv head g = h / r, r = nh/nkv), S = q k^T / sqrt(hd),
            causal mask (key c <= query t) or full, P = softmax(S),
            y = P v, out [B, T, nh*hd] (heads concatenated); flash also lse [B, nh, T]
  backward: dP = dy v^T, dS = P * (dP - rowsum(P * dP)),
            dq = dS k / sqrt(hd), dk = dS^T q / sqrt(hd), dv = P^T dy
            (dk, dv summed over the r query heads of a kv head)
Inputs in the layouts rope.cuh writes: q [B, nkv, T, r, hd], k/v [B, nkv, T, hd];
att [B, nkv, T*r, T] (row t*r + j = query head g*r + j at position t).
Validated against a CPU reference (double) at small shapes (GQA, MQA, MHA, causal
and full, hd 8..128 including 72, T not a multiple of the tiles), on fresh random
inputs, outputs poisoned first; the flash backward is also checked bit-identical
run to run (atomic: dk, dv bit-identical, dq run to run within the bf16
tolerance). Packed rows (AttnShape::pos: documents of random lengths in each row, each
query attending inside its own) against the same reference, deterministic. Varlen: split, atomic and (sm90) ordered. At the four attention shapes of
docs/perf.md the flash version (every mechanism) is checked on a subset of rows (query rows:
out, lse, dq from scratch; key rows: dk, dv over all their query rows, with the GPU's lse and
out for the softmax statistics), then timed. TFLOP/s count as docs/perf.md says: forward
4*B*nh*T*T*hd (causal: half), backward 2.5x that.
With the environment variable FLASH_TUNE=1 the flash tile variants (attention_variants.cuh,
flash_config) are validated and timed too (FLASH_TUNE=2: only the sm90 kernels' variants); with
ATTN_QUICK=1 only the small-shape checks run (for compute-sanitizer); with ATTN_NOCHECK=1 only
the perf-shape timings (tuning runs; nothing checked) and the DiT's varlen bench shapes (self and
cross, dit-s and dit-1b; a subset of rows checked); ATTN_PEER_METHOD=1 only the trainers' default
(and `fast`) at the perf shapes, timed the way the SDPA peer (torch_attn.py) times cuDNN: 3 warm-up
calls, then the mean of 10 back-to-back calls, no L2 flush, in seconds of GPU time (a full run
times its [default] rows after minutes of other kernels; dev/cuda/NOTES.md has what that place in
the run was measured to be worth); ATTN_PROFILE=shape[,fwd variant] makes
three calls at one perf shape for a profiler (see main); ATTN_BWD_CHUNK=n orders the
warp-specialized backward's grid in chunks of n groups; ATTN_BWD_FUSED_DQ=1 has a pass after the
ordered TMA backward write dq, =2 the kernel itself, full attention too (the default: the kernel
for causal calls); ATTN_ORDERED=30 (31, 32) runs every check and timing of the ordered
(deterministic) sm90 backward on a variant of the warp-specialized kernel
(llmc/attention/flash_sm90_bwd_ws.cuh, numbered in attention_variants.cuh; head dims up to 80;
33 and 34 with TMA loads of Q and dO at padded hd 80, 35 and 36 at hd 64 (fixed layout, GQA),
37 is 34 with the query tiles split into chunks (the cross-attention's few K/V tiles), 38 is 30
at hd 128; 32 and 34 are the table's at hd 64 and padded hd 80; 29 the fused kernel they replaced
there), e.g.
  ATTN_ORDERED=30 ATTN_QUICK=1 compute-sanitizer ./dev/cuda/attention
and ATTN_FWD=26 (27) every check and timing of the forward on the warp-specialized forward with
TMA loads in 32-byte swizzled blocks of 16 columns, where it applies (padded hd 80: hd 72, fixed
and varlen layouts).

  make dev/cuda/attention && ./dev/cuda/attention
*/
#include "common.h"
#include <cstring>
#include "attention_reference.cuh"
#include "attention_variants.cuh"

static bool g_nocheck = false;  // ATTN_NOCHECK=1: the perf-shape timings only (for tuning runs), nothing checked
static bool g_tune_mma = false;  // FLASH_TUNE=1: the mma.sync tile variants too (FLASH_TUNE=2: the sm90 ones only)

// The tag that names the kernel family of a check or timing row where both exist
// (flash_settings.family: the sm90 kernels everywhere, mma.sync everywhere, or the table's mix)
static std::string path_tag() {
    if (!flash_sm90_available()) return "";
    const FlashFamily f = flash_settings.family;
    return f == FlashFamily::sm90 ? " [sm90]" : f == FlashFamily::mma_sync ? " [mma.sync]" : " [default]";
}

struct AttnBuffers {
    floatX *q, *k, *v, *out, *att, *yp, *dout, *dq, *dk, *dv, *dyp, *dp;
    float *lse, *scratch;
    size_t nq, nkv, natt, nlse, nscratch;
};

// with_att: the buffers of the cuBLAS version ([T, T] probabilities, permuted scratch) too
static AttnBuffers attn_alloc(const AttnShape& s, bool with_att) {
    AttnBuffers b = {};
    b.nq = (size_t)s.B * s.T * s.nh * s.hd;
    b.nkv = (size_t)s.B * s.T * s.nkv * s.hd;
    b.natt = with_att ? (size_t)s.B * s.nh * s.T * s.T : 0;
    b.nlse = (size_t)s.B * s.nh * s.T;
    b.nscratch = flash_attention_scratch_bytes(s) / sizeof(float);
    b.q = dev_alloc<floatX>(b.nq); b.k = dev_alloc<floatX>(b.nkv); b.v = dev_alloc<floatX>(b.nkv);
    b.out = dev_alloc<floatX>(b.nq); b.dout = dev_alloc<floatX>(b.nq);
    b.dq = dev_alloc<floatX>(b.nq); b.dk = dev_alloc<floatX>(b.nkv); b.dv = dev_alloc<floatX>(b.nkv);
    b.lse = dev_alloc<float>(b.nlse); b.scratch = dev_alloc<float>(b.nscratch);
    if (with_att) {
        b.att = dev_alloc<floatX>(b.natt); b.dp = dev_alloc<floatX>(b.natt);
        b.yp = dev_alloc<floatX>(b.nq); b.dyp = dev_alloc<floatX>(b.nq);
    }
    return b;
}
static void attn_free(AttnBuffers& b) {
    floatX* all[] = {b.q, b.k, b.v, b.out, b.att, b.yp, b.dout, b.dq, b.dk, b.dv, b.dyp, b.dp};
    for (floatX* p : all) if (p) cudaCheck(cudaFree(p));
    cudaCheck(cudaFree(b.lse));
    cudaCheck(cudaFree(b.scratch));
}
static void attn_fill(AttnBuffers& b, Rng* rng) {
    fill_random(b.q, b.nq, rng, 1.0f);
    fill_random(b.k, b.nkv, rng, 1.0f);
    fill_random(b.v, b.nkv, rng, 1.0f);
    fill_random(b.dout, b.nq, rng, 1.0f);
}
static std::string attn_shape_str(const AttnShape& s) {
    return strf("B%d T%d nh%d nkv%d hd%d%s", s.B, s.T, s.nh, s.nkv, s.hd, s.causal ? " causal" : "");
}

// CPU reference of the forward and backward, in double. lse [B, nh, T] (natural log). pos
// (packed rows, [B, T]; null: none): query t sees keys from t - pos[b][t] on.
static void attention_cpu(const AttnShape& s, const std::vector<float>& q, const std::vector<float>& k,
                          const std::vector<float>& v, const std::vector<float>& dout, std::vector<double>& out,
                          std::vector<double>& att, std::vector<double>& lse, std::vector<double>& dq,
                          std::vector<double>& dk, std::vector<double>& dv, const std::vector<int>* pos = nullptr) {
    const int B = s.B, T = s.T, nh = s.nh, nkv = s.nkv, hd = s.hd, r = nh / nkv;
    const double scale = 1.0 / sqrt((double)hd);
    out.assign((size_t)B * T * nh * hd, 0.0);
    att.assign((size_t)B * nh * T * T, 0.0);
    lse.assign((size_t)B * nh * T, 0.0);
    dq.assign((size_t)B * T * nh * hd, 0.0);
    dk.assign((size_t)B * T * nkv * hd, 0.0);
    dv.assign((size_t)B * T * nkv * hd, 0.0);
    std::vector<double> P(T), dP(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            const int g = h / r, j = h % r;
            auto qi = [&](int t) { return ((((size_t)b * nkv + g) * T + t) * r + j) * hd; };
            auto ki = [&](int c) { return (((size_t)b * nkv + g) * T + c) * hd; };
            auto yi = [&](int t) { return (((size_t)b * T + t) * nh + h) * hd; };  // out / dout, token-major
            for (int t = 0; t < T; t++) {
                const int n = s.causal ? t + 1 : T, c0 = pos ? t - (*pos)[(size_t)b * T + t] : 0;
                double mx = -INFINITY;
                for (int c = c0; c < n; c++) {
                    double d = 0.0;
                    for (int e = 0; e < hd; e++) d += (double)q[qi(t) + e] * k[ki(c) + e];
                    P[c] = d * scale;
                    mx = std::max(mx, P[c]);
                }
                double sum = 0.0;
                for (int c = c0; c < n; c++) { P[c] = exp(P[c] - mx); sum += P[c]; }
                for (int c = c0; c < n; c++) P[c] /= sum;
                lse[((size_t)b * nh + h) * T + t] = mx + log(sum);
                double* arow = &att[((((size_t)b * nkv + g) * T + t) * r + j) * T];
                for (int c = c0; c < n; c++) arow[c] = P[c];  // masked columns stay 0
                for (int c = c0; c < n; c++)
                    for (int e = 0; e < hd; e++) out[yi(t) + e] += P[c] * v[ki(c) + e];
                // backward of this query row
                double D = 0.0;
                for (int c = c0; c < n; c++) {
                    double d = 0.0;
                    for (int e = 0; e < hd; e++) d += (double)dout[yi(t) + e] * v[ki(c) + e];
                    dP[c] = d;
                    D += P[c] * d;
                }
                for (int c = c0; c < n; c++) {
                    const double dS = P[c] * (dP[c] - D);
                    for (int e = 0; e < hd; e++) {
                        dq[qi(t) + e] += scale * dS * k[ki(c) + e];
                        dk[ki(c) + e] += scale * dS * q[qi(t) + e];
                        dv[ki(c) + e] += P[c] * dout[yi(t) + e];
                    }
                }
            }
        }
}

// bit-identical device buffers (the determinism check)
template <class T>
static bool check_identical(const char* kernel, const char* output, const std::string& shape, const T* a, const T* b,
                            size_t n, const char* what = "run to run") {
    std::vector<T> ha(n), hb(n);
    cudaCheck(cudaMemcpy(ha.data(), a, n * sizeof(T), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hb.data(), b, n * sizeof(T), cudaMemcpyDeviceToHost));
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&ha[i], &hb[i], sizeof(T)) != 0;
    g_checks++;
    const bool ok = diff == 0;
    printf("%s %s/%s bit-identical %s: %zu of %zu elements differ shape=%s\n", ok ? "PASS" : "FAIL", kernel, output, what,
           diff, n, shape.c_str());
    if (!ok) g_failed++;
    return ok;
}

// flash forward + backward on the filled buffers, outputs poisoned first
static void flash_run(AttnBuffers& b, const AttnShape& s) {
    poison(b.out, b.nq); poison(b.lse, b.nlse);
    lab_forward(b.out, b.lse, b.q, b.k, b.v, s, 0);
    poison(b.dq, b.nq); poison(b.dk, b.nkv); poison(b.dv, b.nkv); poison(b.scratch, b.nscratch);
    lab_backward(b.dq, b.dk, b.dv, b.dout, b.out, b.lse, b.q, b.k, b.v, b.scratch, s, 0);
    cudaCheck(cudaDeviceSynchronize());
}

// run-to-run agreement of a non-deterministic output (the atomic backward's dq): relative
// L2 difference within tol; elements bit-identical in both runs (e.g. the poison of columns
// that belong to other tensors) are skipped, a non-finite value in only one run fails
static bool check_close(const char* kernel, const char* output, const std::string& shape, const floatX* a, const floatX* b,
                        size_t n, double tol) {
    const std::vector<float> ha = download(a, n), hb = download(b, n);
    double num = 0.0, den = 0.0;
    size_t diff = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&ha[i], &hb[i], sizeof(float)) == 0) {
            if (std::isfinite(ha[i])) den += (double)ha[i] * ha[i];
            continue;
        }
        diff++;
        if (!std::isfinite(ha[i]) || !std::isfinite(hb[i])) { bad++; continue; }
        const double d = (double)ha[i] - hb[i];
        num += d * d;
        den += (double)ha[i] * ha[i];
    }
    const double err = den > 0.0 ? sqrt(num / den) : sqrt(num);
    g_checks++;
    const bool ok = bad == 0 && err <= tol;
    printf("%s %s/%s run to run (non-deterministic): rel_diff=%.3e tol=%.0e, %zu of %zu elements differ%s shape=%s\n",
           ok ? "PASS" : "FAIL", kernel, output, err, tol, diff, n, bad ? " (NONFINITE in one run)" : "", shape.c_str());
    if (!ok) g_failed++;
    return ok;
}

// dq as the ordered TMA backward writes it itself (flash_sm90_bwd_ws.cuh, bwd_ws_fused_dq: the
// same sums, the same rounding) against dq from the pass after the kernel, both ways: `run` poisons
// buf and runs the backward into it again
template <class F>
static void check_dq_writers(const char* kernel, const char* output, const std::string& shape, const floatX* ref,
                             const floatX* buf, size_t n, F run) {
    const int saved = flash::bwd_ws_fused_dq_lab;
    for (int who : {1, 2}) {
        flash::bwd_ws_fused_dq_lab = who;
        run();
        cudaCheck(cudaDeviceSynchronize());
        check_identical(kernel, output, shape, ref, buf, n,
                        who == 1 ? "to the pass after the kernel's dq" : "to the kernel's own dq (full attention too)");
    }
    flash::bwd_ws_fused_dq_lab = saved;
}

// backward again into fresh buffers: must be bit-identical (atomic mode: dq close, dk/dv bit-identical)
static void flash_determinism(AttnBuffers& b, const AttnShape& s, const std::string& shape) {
    floatX *dq2 = dev_alloc<floatX>(b.nq), *dk2 = dev_alloc<floatX>(b.nkv), *dv2 = dev_alloc<floatX>(b.nkv);
    poison(dq2, b.nq); poison(dk2, b.nkv); poison(dv2, b.nkv); poison(b.scratch, b.nscratch);
    lab_backward(dq2, dk2, dv2, b.dout, b.out, b.lse, b.q, b.k, b.v, b.scratch, s, 0);
    cudaCheck(cudaDeviceSynchronize());
    if (lab_algo() == FlashBwdAlgo::atomic) check_close("flash_attention_backward", "dq", shape, b.dq, dq2, b.nq, TOL_X);
    else check_identical("flash_attention_backward", "dq", shape, b.dq, dq2, b.nq);
    check_identical("flash_attention_backward", "dk", shape, b.dk, dk2, b.nkv);
    check_identical("flash_attention_backward", "dv", shape, b.dv, dv2, b.nkv);
    if (flash_sm90_active() && lab_algo() == FlashBwdAlgo::ordered)
        check_dq_writers("flash_attention_backward", "dq", shape, b.dq, dq2, b.nq, [&] {
            poison(dq2, b.nq); poison(b.scratch, b.nscratch);
            lab_backward(dq2, dk2, dv2, b.dout, b.out, b.lse, b.q, b.k, b.v, b.scratch, s, 0);
        });
    cudaCheck(cudaFree(dq2)); cudaCheck(cudaFree(dk2)); cudaCheck(cudaFree(dv2));
}

// Gradients: S, P, dP, dS each pass through bf16 (cuBLAS version), P and dS (flash): 2e-2
static const double TOL_GRAD = TOL_X * 2;

static void validate(const AttnShape& s, Rng* rng, int nvariants) {
    const std::string shape = attn_shape_str(s);
    const bool cublas_ok = s.T % 8 == 0;  // the cuBLAS version's softmax reads 16-byte vectors
    AttnBuffers b = attn_alloc(s, cublas_ok);
    attn_fill(b, rng);
    std::vector<double> out, att, lse, dq, dk, dv;
    attention_cpu(s, download(b.q, b.nq), download(b.k, b.nkv), download(b.v, b.nkv), download(b.dout, b.nq), out, att,
                  lse, dq, dk, dv);

    if (cublas_ok) {
        poison(b.out, b.nq); poison(b.att, b.natt); poison(b.yp, b.nq);
        attention_forward(b.out, b.att, b.yp, b.q, b.k, b.v, s, 0);
        cudaCheck(cudaDeviceSynchronize());
        check("attention_forward", "out", shape, download(b.out, b.nq), out, TOL_X);
        check("attention_forward", "att", shape, download(b.att, b.natt), att, TOL_X);
        poison(b.dq, b.nq); poison(b.dk, b.nkv); poison(b.dv, b.nkv); poison(b.dyp, b.nq); poison(b.dp, b.natt);
        attention_backward(b.dq, b.dk, b.dv, b.dyp, b.dp, b.dout, b.att, b.q, b.k, b.v, s, 0);
        cudaCheck(cudaDeviceSynchronize());
        check("attention_backward", "dq", shape, download(b.dq, b.nq), dq, TOL_GRAD);
        check("attention_backward", "dk", shape, download(b.dk, b.nkv), dk, TOL_GRAD);
        check("attention_backward", "dv", shape, download(b.dv, b.nkv), dv, TOL_GRAD);
    }

    // the Hopper kernels (where this build and GPU have them: the default there), then every
    // mma.sync backward mode (split, ordered, atomic); with tuning, every tile variant
    struct Cfg { FlashBwdAlgo mode; FlashConfig c; int sm90; };
    const FlashBwdAlgo modes[] = {FlashBwdAlgo::split, FlashBwdAlgo::ordered, FlashBwdAlgo::atomic};
    std::vector<Cfg> cfgs;
    if (flash_sm90_available()) {
        cfgs.push_back({FlashBwdAlgo::split, {0, 0, 0}, 2});
        cfgs.push_back({FlashBwdAlgo::atomic, {0, 0, 0}, 2});
        cfgs.push_back({FlashBwdAlgo::ordered, {0, 0, 0}, 2});
        if (nvariants > 1) {
            for (int v = 11; v < 17; v++) cfgs.push_back({FlashBwdAlgo::split, {v, v, v}, 2});
            for (int v = 17; v < 28; v++)  // warp-specialized forward (22, 23: timing diagnostics)
                if (v != 22 && v != 23) cfgs.push_back({FlashBwdAlgo::split, {v, 0, 0}, 2});
            for (int v = 11; v < 22; v++) cfgs.push_back({FlashBwdAlgo::atomic, {0, v, 0}, 2});
            for (int v = 30; v < 35; v++) cfgs.push_back({FlashBwdAlgo::ordered, {0, v, 0}, 2});  // warp-specialized
        }
    }
    for (FlashBwdAlgo m : modes) cfgs.push_back({m, {0, 0, 0}, 0});
    if (nvariants > 1 && g_tune_mma) {
        for (int v = 1; v < 4; v++)
            for (FlashBwdAlgo m : modes) cfgs.push_back({m, {v, v, v}, 0});
        for (int v = 4; v < 6; v++) { cfgs.push_back({FlashBwdAlgo::split, {v, 0, v}, 0}); }
    }
    for (const Cfg& c : cfgs) {
        set_algo(c.mode);
        flash_config = c.c;
        set_family(c.sm90);
        std::string sh = shape + path_tag() + (c.mode != FlashBwdAlgo::split ? strf(" [%s bwd]", flash_bwd_algo_name(c.mode)) : "");
        if (c.c.fwd || c.c.dkdv || c.c.dq) sh += strf(" [cfg fwd=%d dkdv=%d dq=%d]", c.c.fwd, c.c.dkdv, c.c.dq);
        flash_run(b, s);
        check("flash_attention_forward", "out", sh, download(b.out, b.nq), out, TOL_X);
        check("flash_attention_forward", "lse", sh, download(b.lse, b.nlse), lse, TOL_F32);
        check("flash_attention_backward", "dq", sh, download(b.dq, b.nq), dq, TOL_GRAD);
        check("flash_attention_backward", "dk", sh, download(b.dk, b.nkv), dk, TOL_GRAD);
        check("flash_attention_backward", "dv", sh, download(b.dv, b.nkv), dv, TOL_GRAD);
        if ((c.c.fwd == 0 && c.c.dkdv == 0 && c.c.dq == 0) || c.c.dkdv >= 30) flash_determinism(b, s, sh);
    }
    set_algo(FlashBwdAlgo::split);
    flash_config = {0, 0, 0};
    set_family(1);
    attn_free(b);
}

// Packed rows (AttnShape::pos, SFT --pack 1): documents of random lengths in each row, every
// query inside its own document; the public API (the mma.sync kernels' packed variant),
// against the CPU reference, and the backward bit-identical run to run.
static void validate_packed(AttnShape s, Rng* rng) {
    std::vector<int> pos((size_t)s.B * s.T);
    for (int b = 0; b < s.B; b++)
        for (int t = 0, start = 0; t < s.T; t++) {
            if (t > 0 && rng_u32(rng) % 9 == 0) start = t;   // a document starts here
            pos[(size_t)b * s.T + t] = t - start;
        }
    int* d_pos = dev_alloc<int>(pos.size());
    upload_ints(d_pos, pos);
    s.pos = d_pos;
    const std::string shape = attn_shape_str(s) + " packed";
    AttnBuffers b = attn_alloc(s, false);
    attn_fill(b, rng);
    std::vector<double> out, att, lse, dq, dk, dv;
    attention_cpu(s, download(b.q, b.nq), download(b.k, b.nkv), download(b.v, b.nkv), download(b.dout, b.nq), out, att,
                  lse, dq, dk, dv, &pos);
    auto run = [&](floatX* dqb, floatX* dkb, floatX* dvb) {
        poison(b.out, b.nq); poison(b.lse, b.nlse); poison(dqb, b.nq); poison(dkb, b.nkv); poison(dvb, b.nkv);
        poison(b.scratch, b.nscratch);
        flash_attention_forward(b.out, b.lse, b.q, b.k, b.v, s, 0);
        flash_attention_backward(dqb, dkb, dvb, b.dout, b.out, b.lse, b.q, b.k, b.v, b.scratch, s, 0);
        cudaCheck(cudaDeviceSynchronize());
    };
    run(b.dq, b.dk, b.dv);
    check("flash_attention_forward", "out", shape, download(b.out, b.nq), out, TOL_X);
    check("flash_attention_forward", "lse", shape, download(b.lse, b.nlse), lse, TOL_F32);
    check("flash_attention_backward", "dq", shape, download(b.dq, b.nq), dq, TOL_GRAD);
    check("flash_attention_backward", "dk", shape, download(b.dk, b.nkv), dk, TOL_GRAD);
    check("flash_attention_backward", "dv", shape, download(b.dv, b.nkv), dv, TOL_GRAD);
    floatX *dq2 = dev_alloc<floatX>(b.nq), *dk2 = dev_alloc<floatX>(b.nkv), *dv2 = dev_alloc<floatX>(b.nkv);
    run(dq2, dk2, dv2);
    check_identical("flash_attention_backward", "dq", shape, b.dq, dq2, b.nq);
    check_identical("flash_attention_backward", "dk", shape, b.dk, dk2, b.nkv);
    check_identical("flash_attention_backward", "dv", shape, b.dv, dv2, b.nkv);
    cudaCheck(cudaFree(dq2)); cudaCheck(cudaFree(dk2)); cudaCheck(cudaFree(dv2)); cudaCheck(cudaFree(d_pos));
    attn_free(b);
}

// Large shapes: flash forward + backward, then a CPU check of a subset of rows.
// Query rows (b, h, t): out, lse and dq from the inputs alone. Key rows (b, g, c): dk
// and dv summed over all query rows of the group, with P from the GPU's lse and
// D = dout . out from the GPU's out (both checked on the query rows).
static void validate_large(const AttnShape& s, Rng* rng, AttnBuffers& b) {
    const std::string mode =
        path_tag() + (lab_algo() != FlashBwdAlgo::split ? strf(" [%s bwd]", flash_bwd_algo_name(lab_algo())) : "");
    const std::string shape = attn_shape_str(s) + " (row subset)" + mode;
    flash_run(b, s);
    const std::vector<float> q = download(b.q, b.nq), k = download(b.k, b.nkv), v = download(b.v, b.nkv),
                             dout = download(b.dout, b.nq), gout = download(b.out, b.nq), glse = download(b.lse, b.nlse),
                             gdq = download(b.dq, b.nq), gdk = download(b.dk, b.nkv), gdv = download(b.dv, b.nkv);
    const int T = s.T, nh = s.nh, nkv = s.nkv, hd = s.hd, r = nh / nkv;
    const double scale = 1.0 / sqrt((double)hd);
    auto qi = [&](int b_, int h, int t) { return ((((size_t)b_ * nkv + h / r) * T + t) * r + h % r) * hd; };
    auto ki = [&](int b_, int g, int c) { return (((size_t)b_ * nkv + g) * T + c) * hd; };
    auto yi = [&](int b_, int h, int t) { return (((size_t)b_ * T + t) * nh + h) * hd; };
    std::vector<float> g_out, g_lse, g_dq, g_dk, g_dv;
    std::vector<double> r_out, r_lse, r_dq, r_dk, r_dv;
    std::vector<double> P(T), dP(T);
    const int nqrows = 12, nkrows = 6;
    for (int n = 0; n < nqrows; n++) {
        const int b_ = rng_u32(rng) % s.B, h = rng_u32(rng) % nh;
        const int t = n == 0 ? 0 : n == 1 ? T - 1 : n == 2 ? T / 2 : (int)(rng_u32(rng) % T);
        const int g = h / r, nc = s.causal ? t + 1 : T;
        double mx = -INFINITY, sum = 0.0, D = 0.0;
        for (int c = 0; c < nc; c++) {
            double d = 0.0;
            for (int e = 0; e < hd; e++) d += (double)q[qi(b_, h, t) + e] * k[ki(b_, g, c) + e];
            P[c] = d * scale;
            mx = std::max(mx, P[c]);
        }
        for (int c = 0; c < nc; c++) { P[c] = exp(P[c] - mx); sum += P[c]; }
        std::vector<double> o(hd, 0.0), dqr(hd, 0.0);
        for (int c = 0; c < nc; c++) {
            P[c] /= sum;
            double d = 0.0;
            for (int e = 0; e < hd; e++) {
                o[e] += P[c] * v[ki(b_, g, c) + e];
                d += (double)dout[yi(b_, h, t) + e] * v[ki(b_, g, c) + e];
            }
            dP[c] = d;
            D += P[c] * d;
        }
        for (int c = 0; c < nc; c++)
            for (int e = 0; e < hd; e++) dqr[e] += scale * P[c] * (dP[c] - D) * k[ki(b_, g, c) + e];
        for (int e = 0; e < hd; e++) {
            r_out.push_back(o[e]); g_out.push_back(gout[yi(b_, h, t) + e]);
            r_dq.push_back(dqr[e]); g_dq.push_back(gdq[qi(b_, h, t) + e]);
        }
        r_lse.push_back(mx + log(sum)); g_lse.push_back(glse[((size_t)b_ * nh + h) * T + t]);
    }
    for (int n = 0; n < nkrows; n++) {
        const int b_ = rng_u32(rng) % s.B, g = rng_u32(rng) % nkv;
        const int c = n == 0 ? 0 : n == 1 ? T - 1 : (int)(rng_u32(rng) % T);
        std::vector<double> dkr(hd, 0.0), dvr(hd, 0.0);
        for (int t = s.causal ? c : 0; t < T; t++)
            for (int j = 0; j < r; j++) {
                const int h = g * r + j;
                double sc = 0.0, dp = 0.0, D = 0.0;
                for (int e = 0; e < hd; e++) {
                    sc += (double)q[qi(b_, h, t) + e] * k[ki(b_, g, c) + e];
                    dp += (double)dout[yi(b_, h, t) + e] * v[ki(b_, g, c) + e];
                    D += (double)dout[yi(b_, h, t) + e] * gout[yi(b_, h, t) + e];
                }
                const double p = exp(sc * scale - glse[((size_t)b_ * nh + h) * T + t]), ds = p * (dp - D);
                for (int e = 0; e < hd; e++) {
                    dvr[e] += p * dout[yi(b_, h, t) + e];
                    dkr[e] += scale * ds * q[qi(b_, h, t) + e];
                }
            }
        for (int e = 0; e < hd; e++) {
            r_dk.push_back(dkr[e]); g_dk.push_back(gdk[ki(b_, g, c) + e]);
            r_dv.push_back(dvr[e]); g_dv.push_back(gdv[ki(b_, g, c) + e]);
        }
    }
    check("flash_attention_forward", "out", shape, g_out, r_out, TOL_X);
    check("flash_attention_forward", "lse", shape, g_lse, r_lse, TOL_F32);
    check("flash_attention_backward", "dq", shape, g_dq, r_dq, TOL_GRAD);
    check("flash_attention_backward", "dk", shape, g_dk, r_dk, TOL_GRAD);
    check("flash_attention_backward", "dv", shape, g_dv, r_dv, TOL_GRAD);
    flash_determinism(b, s, attn_shape_str(s) + mode);
}

static double attn_flops(const AttnShape& s) {
    return 4.0 * s.B * s.nh * (double)s.T * s.T * s.hd / (s.causal ? 2.0 : 1.0);
}

static void timing_cublas(const AttnShape& s, Rng* rng) {
    const std::string shape = attn_shape_str(s);
    AttnBuffers b = attn_alloc(s, true);
    attn_fill(b, rng);
    const double fwd = attn_flops(s);
    float us_f = time_us([&] { attention_forward(b.out, b.att, b.yp, b.q, b.k, b.v, s, 0); });
    report_flops("attention_forward", shape, us_f, fwd);
    float us_b = time_us([&] { attention_backward(b.dq, b.dk, b.dv, b.dyp, b.dp, b.dout, b.att, b.q, b.k, b.v, s, 0); });
    report_flops("attention_backward", shape, us_b, 2.5 * fwd);
    report_flops("attention forward+backward", shape, us_f + us_b, 3.5 * fwd);
    attn_free(b);
}

// ----------------------------------------------------------------------------
// Packed variable-length batches (flash_attention_varlen_*, the DiT's layouts).
// self:  q, k side by side in one [N, 2C] buffer (stride 2C), v the last third of a
//        [N, 3C] buffer, as qknorm_rope3d and the qkv projection leave them;
//        dq/dk/dv into buffers of the same shapes.
// cross: q [Nq, C] (stride C); k, v the halves of a [Nk, 2C] buffer (stride 2C).
// The columns of those buffers that belong to other tensors are poisoned and must
// stay so: the kernels write exactly their own rows and heads.
static void validate_varlen(const char* name, int nh, int hd, const std::vector<int>& lq, const std::vector<int>& lk, bool self,
                            Rng* rng, bool timed = false) {
    const int B = (int)lq.size(), C = nh * hd;
    std::vector<int> cu_q(B + 1, 0), cu_k(B + 1, 0);
    for (int b = 0; b < B; b++) { cu_q[b + 1] = cu_q[b] + lq[b]; cu_k[b + 1] = cu_k[b] + (self ? lq[b] : lk[b]); }
    const int Nq = cu_q[B], Nk = cu_k[B];
    std::string shape = strf("%s B%d nh%d hd%d Nq%d Nk%d lens", name, B, nh, hd, Nq, Nk);
    for (int b = 0; b < B && b < 6; b++) shape += strf(" %d/%d", lq[b], cu_k[b + 1] - cu_k[b]);
    if (B > 6) shape += " ...";
    // buffers: q region, k region, v region with their strides and column offsets
    const int qs = self ? 2 * C : C, ks = 2 * C, vs = self ? 3 * C : 2 * C;
    const size_t nqb = (size_t)Nq * qs, nkb = (size_t)Nk * (self ? 3 * C : 2 * C);
    floatX *qk = dev_alloc<floatX>(nqb), *kv = dev_alloc<floatX>(nkb);        // inputs (self: kv is the qkv buffer)
    floatX *dqk = dev_alloc<floatX>(nqb), *dkv = dev_alloc<floatX>(nkb);      // gradients, same shapes
    floatX *out = dev_alloc<floatX>((size_t)Nq * C), *dout = dev_alloc<floatX>((size_t)Nq * C);
    float* lse = dev_alloc<float>((size_t)nh * Nq);
    // room for the atomic backward's fp32 dQ accumulator (hd given), the ordered one's counters (B)
    // and its query split (as the DiT trainer gives it)
    const int max_k = *std::max_element(self ? lq.begin() : lk.begin(), self ? lq.end() : lk.end());
    const size_t scratch_bytes = flash_attention_varlen_scratch_bytes(Nq, nh, hd, B) + flash_attention_query_split_bytes((size_t)B * max_k, nh, hd),
                 nscratch = scratch_bytes / sizeof(float) + 1;
    float* scratch = dev_alloc<float>(nscratch);
    int *cq = dev_alloc<int>(B + 1), *ck = dev_alloc<int>(B + 1);
    upload_ints(cq, cu_q);
    upload_ints(ck, cu_k);
    fill_random(qk, nqb, rng, 1.0f);
    fill_random(kv, nkb, rng, 1.0f);
    fill_random(dout, (size_t)Nq * C, rng, 1.0f);
    const floatX* q = qk;
    const floatX* k = self ? qk + C : kv;
    const floatX* v = self ? kv + 2 * C : kv + C;
    floatX* dq = dqk;
    floatX* dk = self ? dqk + C : dkv;
    floatX* dv = self ? dkv + 2 * C : dkv + C;
    const VarlenAttnShape vs_ = {B, nh, hd, cu_q.data(), cu_k.data(), qs, ks, vs, cq, ck};
    // CPU reference in double, row by row (timed shapes: a subset of query rows and
    // every key of the samples those rows belong to would still be O(N^2); at those
    // shapes only the forward and dq are checked on a row subset)
    const std::vector<float> hq = download(qk, nqb), hk = download(kv, nkb), hdo = download(dout, (size_t)Nq * C);
    auto Qr = [&](int n, int h) { return &hq[(size_t)n * qs + h * hd]; };
    auto Kr = [&](int n, int h) { return self ? &hq[(size_t)n * qs + C + h * hd] : &hk[(size_t)n * ks + h * hd]; };
    auto Vr = [&](int n, int h) { return self ? &hk[(size_t)n * vs + 2 * C + h * hd] : &hk[(size_t)n * vs + C + h * hd]; };
    const double scale = 1.0 / sqrt((double)hd);
    const size_t step = timed ? 97 : 1;  // query rows checked: every row, or every 97th
    std::vector<double> r_out, r_lse, r_dq;
    std::vector<size_t> rows;
    std::vector<double> r_dk((size_t)Nk * C, 0.0), r_dv((size_t)Nk * C, 0.0);
    std::vector<double> P, dP;
    for (int b = 0; b < B; b++) {
        const int k0 = cu_k[b], nk = cu_k[b + 1] - cu_k[b];
        P.resize(nk); dP.resize(nk);
        for (int n = cu_q[b]; n < cu_q[b + 1]; n++) {
            if (n % step != 0) continue;
            rows.push_back(n);
            for (int h = 0; h < nh; h++) {
                const float* qr = Qr(n, h);
                double mx = -INFINITY;
                for (int c = 0; c < nk; c++) {
                    const float* kr = Kr(k0 + c, h);
                    double d = 0.0;
                    for (int e = 0; e < hd; e++) d += (double)qr[e] * kr[e];
                    P[c] = d * scale;
                    mx = std::max(mx, P[c]);
                }
                double sum = 0.0;
                for (int c = 0; c < nk; c++) { P[c] = exp(P[c] - mx); sum += P[c]; }
                for (int c = 0; c < nk; c++) P[c] /= sum;
                r_lse.push_back(mx + log(sum));
                const float* dy = &hdo[(size_t)n * C + h * hd];
                double D = 0.0;
                std::vector<double> o(hd, 0.0), g(hd, 0.0);
                for (int c = 0; c < nk; c++) {
                    const float* vr = Vr(k0 + c, h);
                    double d = 0.0;
                    for (int e = 0; e < hd; e++) { o[e] += P[c] * vr[e]; d += (double)dy[e] * vr[e]; }
                    dP[c] = d;
                    D += P[c] * d;
                }
                for (int c = 0; c < nk; c++) {
                    const double dS = P[c] * (dP[c] - D);
                    const float* kr = Kr(k0 + c, h);
                    for (int e = 0; e < hd; e++) {
                        g[e] += scale * dS * kr[e];
                        if (!timed) {
                            r_dk[(size_t)(k0 + c) * C + h * hd + e] += scale * dS * qr[e];
                            r_dv[(size_t)(k0 + c) * C + h * hd + e] += P[c] * dy[e];
                        }
                    }
                }
                for (int e = 0; e < hd; e++) { r_out.push_back(o[e]); r_dq.push_back(g[e]); }
            }
        }
    }
    // the GPU, once per backward mechanism: split and atomic on both families, ordered on sm90
    // (the fused mma.sync kernel knows only the fixed layout)
    struct VCfg { FlashBwdAlgo mode; int sm90; };
    std::vector<VCfg> vcfgs;
    if (flash_sm90_available()) {
        vcfgs.push_back({FlashBwdAlgo::split, 2});
        vcfgs.push_back({FlashBwdAlgo::atomic, 2});
        vcfgs.push_back({FlashBwdAlgo::ordered, 2});
    }
    vcfgs.push_back({FlashBwdAlgo::split, 0});
    vcfgs.push_back({FlashBwdAlgo::atomic, 0});
    for (const VCfg& vc : vcfgs) {
        const FlashBwdAlgo mode = vc.mode;
        set_algo(mode);
        set_family(vc.sm90);
        const std::string sh = shape + path_tag() + (mode != FlashBwdAlgo::split ? strf(" [%s bwd]", flash_bwd_algo_name(mode)) : "");
        poison(out, (size_t)Nq * C); poison(lse, (size_t)nh * Nq);
        poison(dqk, nqb); poison(dkv, nkb); poison(scratch, nscratch);
        lab_varlen_forward(out, lse, q, k, v, vs_, 0);
        lab_varlen_backward(dq, dk, dv, dout, out, lse, q, k, v, scratch, vs_, 0, scratch_bytes);
        cudaCheck(cudaDeviceSynchronize());
        // the GPU's values in the same order: row n, head h, then e (lse: row n, head h)
        const std::vector<float> g_outall = download(out, (size_t)Nq * C), g_lseall = download(lse, (size_t)nh * Nq);
        const std::vector<float> g_dqk = download(dqk, nqb), g_dkv = download(dkv, nkb);
        std::vector<float> g_out, g_lse, g_dq;
        for (size_t n : rows)
            for (int h = 0; h < nh; h++) {
                g_lse.push_back(g_lseall[(size_t)h * Nq + n]);
                for (int e = 0; e < hd; e++) {
                    g_out.push_back(g_outall[n * C + h * hd + e]);
                    g_dq.push_back(g_dqk[n * qs + h * hd + e]);
                }
            }
        check("flash_attention_varlen_forward", "out", sh, g_out, r_out, TOL_X);
        check("flash_attention_varlen_forward", "lse", sh, g_lse, r_lse, TOL_F32);
        check("flash_attention_varlen_backward", "dq", sh, g_dq, r_dq, TOL_GRAD);
        if (!timed) {
            std::vector<float> g_dk, g_dv;
            std::vector<double> rk, rv;
            const float* dkb = self ? &g_dqk[C] : &g_dkv[0];
            const size_t dks = self ? qs : ks;
            const float* dvb = self ? &g_dkv[2 * C] : &g_dkv[C];
            for (int n = 0; n < Nk; n++)
                for (int c = 0; c < C; c++) {
                    g_dk.push_back(dkb[(size_t)n * dks + c]);
                    g_dv.push_back(dvb[(size_t)n * vs + c]);
                    rk.push_back(r_dk[(size_t)n * C + c]);
                    rv.push_back(r_dv[(size_t)n * C + c]);
                }
            check("flash_attention_varlen_backward", "dk", sh, g_dk, rk, TOL_GRAD);
            check("flash_attention_varlen_backward", "dv", sh, g_dv, rv, TOL_GRAD);
            // self: the [Nk, 3C] qkv-gradient buffer's first two thirds belong to other kernels:
            // still poison (never written). (The dq/dk buffers have no foreign columns.)
            size_t touched = 0, total = 0;
            if (self)
                for (int n = 0; n < Nk; n++)
                    for (int c = 0; c < 2 * C; c++, total++) touched += !std::isnan(g_dkv[(size_t)n * vs + c]);
            g_checks += self;
            const bool ok = touched == 0;
            if (self) printf("%s flash_attention_varlen_backward/untouched columns: %zu of %zu written shape=%s\n",
                             ok ? "PASS" : "FAIL", touched, total, sh.c_str());
            if (!ok) g_failed++;  // (always ok when !self: nothing counted)
            // determinism: the backward again, bit-identical (atomic: dq within the bf16
            // tolerance; its buffer holds dk too when self, which must agree as well)
            floatX *dqk2 = dev_alloc<floatX>(nqb), *dkv2 = dev_alloc<floatX>(nkb);
            poison(dqk2, nqb); poison(dkv2, nkb);
            lab_varlen_backward(dqk2, self ? dqk2 + C : dkv2, self ? dkv2 + 2 * C : dkv2 + C, dout, out, lse, q,
                                            k, v, scratch, vs_, 0, scratch_bytes);
            cudaCheck(cudaDeviceSynchronize());
            if (mode == FlashBwdAlgo::atomic) check_close("flash_attention_varlen_backward", "dq/dk", sh, dqk, dqk2, nqb, TOL_X);
            else check_identical("flash_attention_varlen_backward", "dq/dk", sh, dqk, dqk2, nqb);
            check_identical("flash_attention_varlen_backward", "dv", sh, dkv, dkv2, nkb);
            if (flash_sm90_active() && mode == FlashBwdAlgo::ordered)
                check_dq_writers("flash_attention_varlen_backward", "dq/dk", sh, dqk, dqk2, nqb, [&] {
                    poison(dqk2, nqb); poison(dkv2, nkb);
                    lab_varlen_backward(dqk2, self ? dqk2 + C : dkv2, self ? dkv2 + 2 * C : dkv2 + C, dout, out, lse, q, k, v,
                                        scratch, vs_, 0, scratch_bytes);
                });
            cudaCheck(cudaFree(dqk2)); cudaCheck(cudaFree(dkv2));
        } else {
            double fl = 0.0;
            for (int b = 0; b < B; b++) fl += 4.0 * nh * (double)lq[b] * (cu_k[b + 1] - cu_k[b]) * hd;
            auto run_fwd = [&] { lab_varlen_forward(out, lse, q, k, v, vs_, 0); };
            auto run_bwd = [&] {
                lab_varlen_backward(dq, dk, dv, dout, out, lse, q, k, v, scratch, vs_, 0, scratch_bytes);
            };
            const std::string tag = path_tag() + (mode == FlashBwdAlgo::split ? "" : strf(" [%s]", flash_bwd_algo_name(mode)));
            const float us_f = time_us(run_fwd), us_b = time_us(run_bwd);
            if (mode == FlashBwdAlgo::split) report_flops("flash_attention_varlen_forward" + path_tag(), shape, us_f, fl);
            report_flops("flash_attention_varlen_backward" + tag, shape, us_b, 2.5 * fl);
            report_flops("flash_attention_varlen forward+backward" + tag, shape, us_f + us_b, 3.5 * fl);
        }
    }
    set_algo(FlashBwdAlgo::split);
    set_family(1);
    floatX* all[] = {qk, kv, dqk, dkv, out, dout};
    for (floatX* p_ : all) cudaCheck(cudaFree(p_));
    cudaCheck(cudaFree(lse)); cudaCheck(cudaFree(scratch)); cudaCheck(cudaFree(cq)); cudaCheck(cudaFree(ck));
}

// The mean time in microseconds of n back-to-back calls of fn after 3 warm-up calls, no L2
// flush: the SDPA peer's method (torch_attn.py's bench), for ATTN_PEER_METHOD
template <class F>
static float time_us_back_to_back(F fn, int n = 10) {
    for (int i = 0; i < 3; i++) fn();
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    cudaCheck(cudaEventRecord(start, 0));
    for (int i = 0; i < n; i++) fn();
    cudaCheck(cudaEventRecord(stop, 0));
    cudaCheck(cudaEventSynchronize(stop));
    float ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&ms, start, stop));
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return ms * 1000.0f / n;
}
// The trainers' attention at a perf shape timed as the peer times SDPA: the default forward, the
// forward and deterministic backward, the forward and `fast` backward; TFLOP/s as the peer counts
// them (forward+backward 3.5 forwards), one row in the peer's words
static void timing_peer_method(const AttnShape& s, Rng* rng) {
    AttnBuffers b = attn_alloc(s, false);
    attn_fill(b, rng);
    auto run_fwd = [&] { lab_forward(b.out, b.lse, b.q, b.k, b.v, s, 0); };
    auto run_fb = [&] {
        run_fwd();
        lab_backward(b.dq, b.dk, b.dv, b.dout, b.out, b.lse, b.q, b.k, b.v, b.scratch, s, 0);
    };
    flash_config = {0, 0, 0};
    set_family(1);
    set_policy(FlashBwdPolicy::deterministic);
    const float us_f = time_us_back_to_back(run_fwd), us_fb = time_us_back_to_back(run_fb);
    set_policy(FlashBwdPolicy::fast);
    const float us_fb_fast = time_us_back_to_back(run_fb);
    set_algo(FlashBwdAlgo::split);
    const double fl = attn_flops(s);
    printf("peer method %-40s | default fwd %.0f fwd+bwd %.0f | fast fwd+bwd %.0f  (TFLOP/s; us %.1f %.1f %.1f)\n",
           attn_shape_str(s).c_str(), fl / us_f / 1e6, 3.5 * fl / us_fb / 1e6, 3.5 * fl / us_fb_fast / 1e6, us_f, us_fb, us_fb_fast);
    attn_free(b);
}
// flash at a docs/perf.md shape: row-subset check, then timings (all variants when tuning)
static void timing_flash(const AttnShape& s, Rng* rng, bool tune) {
    const std::string shape = attn_shape_str(s);
    AttnBuffers b = attn_alloc(s, false);
    attn_fill(b, rng);
    // the sm90 kernels (where available), the mma.sync split and the atomic backward at the
    // large shapes (ordered: small shapes); the default mixes the two families
    const bool sm90 = flash_sm90_available();
    set_family(2);
    if (sm90 && !g_nocheck) {
        validate_large(s, rng, b);
        set_algo(FlashBwdAlgo::atomic);
        validate_large(s, rng, b);
        set_algo(FlashBwdAlgo::ordered);
        validate_large(s, rng, b);
        set_algo(FlashBwdAlgo::split);
    }
    set_family(0);
    if (!g_nocheck) {
        validate_large(s, rng, b);
        set_algo(FlashBwdAlgo::atomic);
        validate_large(s, rng, b);
        set_algo(FlashBwdAlgo::split);
    }
    const double fwd = attn_flops(s);
    auto run_fwd = [&] { lab_forward(b.out, b.lse, b.q, b.k, b.v, s, 0); };
    auto run_bwd = [&] {
        lab_backward(b.dq, b.dk, b.dv, b.dout, b.out, b.lse, b.q, b.k, b.v, b.scratch, s, 0);
    };
    flash_config = {0, 0, 0};
    // sm90, then mma.sync: every backward mechanism side by side
    for (int k90 : {2, 0}) {
        if (k90 && !sm90) continue;
        set_family(k90);
        const std::string fam = path_tag();
        float us_f = time_us(run_fwd);
        report_flops("flash_attention_forward" + fam, shape, us_f, fwd);
        for (FlashBwdAlgo m : {FlashBwdAlgo::split, FlashBwdAlgo::ordered, FlashBwdAlgo::atomic}) {
            set_algo(m);
            const std::string tag = fam + (m == FlashBwdAlgo::split ? "" : strf(" [%s]", flash_bwd_algo_name(m)));
            const float us_b = time_us(run_bwd);
            report_flops("flash_attention_backward" + tag, shape, us_b, 2.5 * fwd);
            report_flops("flash_attention forward+backward" + tag, shape, us_f + us_b, 3.5 * fwd);
        }
        set_algo(FlashBwdAlgo::split);
    }
    if (sm90) {  // the default: per head dim, the faster family (llmc/attention/flash_attention.cuh), and
        set_family(1);  // the trainers' default (deterministic) backward
        set_policy(FlashBwdPolicy::deterministic);
        const float us_f = time_us(run_fwd), us_b = time_us(run_bwd);
        report_flops("flash_attention_backward" + path_tag(), shape, us_b, 2.5 * fwd);
        report_flops("flash_attention forward+backward" + path_tag(), shape, us_f + us_b, 3.5 * fwd);
        // what the trainers run with --attn-backward fast: the default forward, the atomic backward
        set_policy(FlashBwdPolicy::fast);
        const float us_bf = time_us(run_bwd);
        report_flops("flash_attention_backward" + path_tag() + " [fast]", shape, us_bf, 2.5 * fwd);
        report_flops("flash_attention forward+backward" + path_tag() + " [fast]", shape, us_f + us_bf, 3.5 * fwd);
        set_algo(FlashBwdAlgo::split);
    }
    if (tune && sm90) {
        set_family(2);
        for (int v = 17; v < 31; v++) {  // 22, 23: timing diagnostics (no loads: wrong results, not checked)
            flash_config = {v, 0, 0};
            report_flops(strf("flash fwd [sm90 cfg fwd=%d]%s", v, v == 22 || v == 23 ? " DIAG no loads" : ""), shape, time_us(run_fwd), fwd);
        }
        for (int v = 11; v < 17; v++) {
            flash_config = {v, 0, 0};
            report_flops(strf("flash fwd [sm90 cfg fwd=%d]", v), shape, time_us(run_fwd), fwd);
            flash_config = {0, v, 0};
            report_flops(strf("flash bwd [sm90 dkdv=%d]", v), shape, time_us(run_bwd), 2.5 * fwd);
            flash_config = {0, 0, v};
            report_flops(strf("flash bwd [sm90 dq=%d]", v), shape, time_us(run_bwd), 2.5 * fwd);
        }
        set_algo(FlashBwdAlgo::atomic);
        for (int v = 11; v < 22; v++) {
            flash_config = {0, v, 0};
            report_flops(strf("flash bwd [sm90 atomic dkdv=%d]", v), shape, time_us(run_bwd), 2.5 * fwd);
        }
        set_algo(FlashBwdAlgo::ordered);
        for (int v = 30; v < 35; v++) {  // the warp-specialized ordered backward (where it applies; else the table's)
            flash_config = {0, v, 0};
            report_flops(strf("flash bwd [sm90 ordered dkdv=%d]", v), shape, time_us(run_bwd), 2.5 * fwd);
        }
        set_algo(FlashBwdAlgo::split);
        flash_config = {0, 0, 0};
    }
    set_family(0);  // the tile variants below are the mma.sync ones
    if (tune && g_tune_mma) {
        for (int v = 1; v < 6; v++) {
            flash_config = {v, 0, 0};
            report_flops(strf("flash fwd [cfg fwd=%d]", v), shape, time_us(run_fwd), fwd);
        }
        for (int v = 1; v < 4; v++) {
            flash_config = {0, v, 0};
            report_flops(strf("flash bwd [split dkdv=%d]", v), shape, time_us(run_bwd), 2.5 * fwd);
        }
        for (int v = 1; v < 6; v++) {
            flash_config = {0, 0, v};
            report_flops(strf("flash bwd [split dq=%d]", v), shape, time_us(run_bwd), 2.5 * fwd);
        }
        set_algo(FlashBwdAlgo::atomic);
        for (int v = 1; v < 4; v++) {
            flash_config = {0, v, 0};
            report_flops(strf("flash bwd [atomic dkdv=%d]", v), shape, time_us(run_bwd), 2.5 * fwd);
        }
        set_algo(FlashBwdAlgo::ordered);
        flash_config = {0, 4, 0};  // timing diagnostic: fused without the ordering (racy, not validated)
        report_flops("flash bwd [fused UNORDERED diag]", shape, time_us(run_bwd), 2.5 * fwd);
        set_algo(FlashBwdAlgo::split);
        flash_config = {0, 0, 0};
    }
    set_family(1);
    attn_free(b);
}

int main() {
    print_banner("attention");
    cublas_init();
    Rng rng;
    rng_seed(&rng, 1234);
    if (const char* ov = getenv("ATTN_ORDERED")) {  // the deterministic backward's kernel (attention_variants.cuh)
        flash_ordered_variant = atoi(ov);
        printf("ATTN_ORDERED=%d: the ordered sm90 backward runs variant %d where it applies"
               " (29: the fused kernel; 30, 31: hd <= 80; 32: hd <= 64; 33, 34: hd 72 / 80 with TMA, one query head per group;"
               " 35, 36: hd 64 with TMA, fixed layout; 37: 34 with the query tiles split; 38: hd 128; 39: hd 64, TMA, 128 query rows;"
               " 40: hd 128 with TMA; 41: the table's warp-specialized one with the heavy CTAs first; 43: it with each step issuing the"
               " previous step's dQ product; 45: it with dS^T stored by stmatrix, the table's own at hd 128; not packed rows)\n",
               flash_ordered_variant, flash_ordered_variant);
    }
    if (const char* av = getenv("ATTN_ATOMIC")) {  // the atomic backward's kernel (attention_variants.cuh)
        flash_atomic_variant = atoi(av);
        printf("ATTN_ATOMIC=%d: the atomic sm90 backward runs variant %d where it applies"
               " (22: the fused kernel, the table's before; 23: the warp-specialized one's atomic mode with 36 / 38's tiles;"
               " 24: the table's with the heavy CTAs first; 26: the table's with each step issuing the previous step's dQ product;"
               " 30: the table's with dS^T stored by stmatrix, the table's own at hd 128)\n",
               flash_atomic_variant, flash_atomic_variant);
    }
    if (const char* cg = getenv("ATTN_BWD_CHUNK")) {  // the warp-specialized backward's grid order (flash_sm90_bwd_ws.cuh)
        flash::bwd_ws_chunk_groups_lab = atoi(cg);
        printf("ATTN_BWD_CHUNK=%d: the warp-specialized backward's grid in chunks of %d groups (1: group by group; unset: causal, about two waves of CTAs a chunk)\n",
               flash::bwd_ws_chunk_groups_lab, flash::bwd_ws_chunk_groups_lab);
    }
    if (const char* fd = getenv("ATTN_BWD_FUSED_DQ")) {  // who writes dq after the ordered TMA backward (flash_sm90_bwd_ws.cuh)
        flash::bwd_ws_fused_dq_lab = atoi(fd);
        printf("ATTN_BWD_FUSED_DQ=%d: dq in bf16 written by %s\n", flash::bwd_ws_fused_dq_lab,
               flash::bwd_ws_fused_dq_lab == 1 ? "a pass over the fp32 sums after the kernel, always"
               : flash::bwd_ws_fused_dq_lab == 2 ? "the kernel, at each query tile's last K/V tile, always (full attention too)"
                                                 : "the kernel for causal calls (the default)");
    }
    if (const char* fv = getenv("ATTN_FWD")) {  // the forward's kernel (attention_variants.cuh numbering)
        flash_fwd_variant = atoi(fv);
        printf("ATTN_FWD=%d: the forward runs variant %d where it applies (26, 27: padded hd 80 with TMA; 28: hd 64 / 128, the heavy"
               " tiles first; 29: hd 64, three consumer warpgroups; 30: the heavy tiles first, 29's tiles at hd 64;"
               " 31: the table's at hd 64 with the lazy rescale, the table's own at hd 128; 32: the table's at hd 64 / 128, persistent;"
               " 33, 34, 35: padded hd 80 with three consumer warpgroups: cp.async with 128 / 96 keys a tile, TMA with 96 (34, 35: the table's own"
               " beyond one 128-key tile; 19: the table's before them); 36: 35 with five K/V stages)\n", flash_fwd_variant, flash_fwd_variant);
    }
    const char* tune_env = getenv("FLASH_TUNE");
    const bool tune = tune_env && atoi(tune_env) != 0;
    g_tune_mma = tune && atoi(tune_env) == 1;
    const AttnShape perf_shapes[] = {
        {8, 2048, 32, 8, 64, true},     // gpt-1b
        {4, 4096, 32, 8, 128, true},    // llama-style
        {1, 13442, 16, 16, 72, false},  // dit-1b (any T: no rounding to 8)
        {1, 50402, 4, 4, 72, false},    // dit-10b, 4 heads
    };
    // ATTN_PROFILE=shape[,fwd variant]: only three forward+backward calls at perf shape `shape`
    // (0..3, below) with the default kernels or forward variant `fwd` (FLASH_TUNE numbering),
    // nothing checked: for a profiler, e.g.
    //   ATTN_PROFILE=1,17 ncu -k regex:flash_fwd --launch-skip 1 -c 1 ./dev/cuda/attention
    if (const char* prof = getenv("ATTN_PROFILE")) {
        int si = 0, fv = 0;
        sscanf(prof, "%d,%d", &si, &fv);
        if (si < 0 || si > 3) fail("ATTN_PROFILE=%s: the shape index must be 0..3", prof);
        const AttnShape& s = perf_shapes[si];
        AttnBuffers b = attn_alloc(s, false);
        attn_fill(b, &rng);
        flash_config = {fv, 0, 0};
        if (fv > 10) set_family(2);
        set_policy(FlashBwdPolicy::deterministic);
        for (int i = 0; i < 3; i++) flash_run(b, s);
        cudaCheck(cudaDeviceSynchronize());
        printf("profiled %s fwd variant %d\n", attn_shape_str(s).c_str(), fv);
        attn_free(b);
        cublas_free();
        return 0;
    }
    const AttnShape small[] = {
        // B, T, nh, nkv, hd, causal
        {2, 64, 4, 2, 64, true},     // GQA r = 2
        {1, 100, 6, 1, 48, true},    // MQA r = 6, T not a multiple of 8, hd 48
        {2, 80, 4, 4, 32, false},    // MHA, full
        {1, 128, 4, 1, 128, true},   // hd 128
        {1, 512, 8, 2, 64, true},    // long rows, r = 4
        {2, 72, 8, 2, 72, false},    // hd 72 (DiT), GQA r = 4, T = 72
        {1, 200, 8, 2, 128, true},   // r = 4, T = 200 (ragged tiles)
        {1, 200, 4, 4, 72, true},    // hd 72 causal
        {2, 200, 4, 1, 48, false},   // MQA full
        {1, 136, 8, 8, 64, false},   // MHA full, T = 136
        {1, 333, 4, 1, 32, true},    // odd T
        {1, 40, 2, 1, 8, true},      // hd 8
        {1, 97, 4, 2, 120, false},   // hd 120, odd T
        {2, 264, 16, 16, 96, true},  // hd 96, MHA
        {2, 150, 8, 2, 64, true},    // hd 64 r = 4, ragged causal tiles in two samples (TMA: rows past T read as zeros)
        {3, 97, 6, 3, 64, true},     // hd 64 r = 2, odd T, three samples
        {2, 90, 4, 2, 128, false},   // hd 128 r = 2, ragged full tiles, two samples
        {1, 300, 4, 4, 72, false},   // hd 72 full, T = 300
    };
    if (const char* pm = getenv("ATTN_PEER_METHOD"); pm && atoi(pm) != 0) {
        for (const AttnShape& s : perf_shapes) timing_peer_method(s, &rng);
        cublas_free();
        printf("attention: ATTN_PEER_METHOD=1, timings only, nothing checked\n");
        return finish("attention");
    }
    const char* nocheck = getenv("ATTN_NOCHECK");
    g_nocheck = nocheck && atoi(nocheck) != 0;
    if (g_nocheck) {
        // ATTN_PERF_SHAPES=0,1: only those perf shapes (0..3) and none of the DiT's layouts
        const char* only = getenv("ATTN_PERF_SHAPES");
        if (only)
            for (const char* c = only; *c; c++)
                if ((*c < '0' || *c > '3') && *c != ',') fail("ATTN_PERF_SHAPES=%s: shape indices 0..3, comma-separated", only);
        for (int i = 0; i < 4; i++)
            if (!only || strchr(only, '0' + i)) timing_flash(perf_shapes[i], &rng, tune);
        if (!only) {   // the DiT's layouts at the bench shapes (each checks a subset of rows first: seconds)
            validate_varlen("self", 8, 72, std::vector<int>(8, 2050), {}, true, &rng, true);
            validate_varlen("cross", 8, 72, std::vector<int>(8, 2050), std::vector<int>(8, 128), false, &rng, true);
            validate_varlen("self", 16, 72, {13442}, {}, true, &rng, true);
            validate_varlen("cross", 16, 72, {13442}, {300}, false, &rng, true);
        }
        cublas_free();
        printf("attention: ATTN_NOCHECK=1, timings only, nothing checked\n");
        return finish("attention");
    }
    for (const AttnShape& s : small) validate(s, &rng, tune ? 4 : 1);
    // packed rows (SFT --pack 1): GQA at hd 64 and 128, MHA at hd 72; rows longer than the tiles
    validate_packed({2, 150, 4, 2, 64, true}, &rng);
    validate_packed({1, 200, 8, 2, 128, true}, &rng);
    validate_packed({3, 97, 2, 2, 72, true}, &rng);
    // packed variable-length samples: lengths 1, odd, not multiples of the tiles (64/128), one long
    validate_varlen("self", 4, 72, {1, 130, 67, 3, 255}, {}, true, &rng);
    validate_varlen("self", 2, 64, {200, 64, 129}, {}, true, &rng);
    validate_varlen("cross", 4, 72, {130, 1, 67, 300}, {7, 1, 300, 65}, false, &rng);
    validate_varlen("cross", 3, 128, {70, 150}, {129, 2}, false, &rng);
    // few keys, many query tiles: the ordered backward splits the queries into chunks (hd 72, four
    // chunks of 33 tiles; the second sample's 24 tiles lie in the first, the others have none of it)
    validate_varlen("cross", 2, 72, {8200, 1500}, {300, 140}, false, &rng);
    validate_varlen("self", 2, 40, {33, 1, 2}, {}, true, &rng);
    const char* quick = getenv("ATTN_QUICK");  // small checks only (e.g. under compute-sanitizer)
    if (quick && atoi(quick) != 0) {
        cublas_free();
        return finish("attention");
    }
    const AttnShape cublas_shapes[] = {
        {8, 2048, 32, 8, 64, true},   // perf.md: B8 H32 KV8 T2048 hd64 causal (gpt-1b B8)
        {4, 4096, 32, 8, 128, true},  // perf.md: B4 H32 KV8 T4096 hd128 causal
    };
    for (const AttnShape& s : cublas_shapes) timing_cublas(s, &rng);
    for (const AttnShape& s : perf_shapes) timing_flash(s, &rng, tune);
    // the DiT's packed batches: dit-s (B8 x 2050 tokens, 8 heads; cross to 300 text tokens) and dit-1b (13442 tokens, 16 heads)
    validate_varlen("self", 8, 72, std::vector<int>(8, 2050), {}, true, &rng, true);
    validate_varlen("cross", 8, 72, std::vector<int>(8, 2050), std::vector<int>(8, 300), false, &rng, true);
    validate_varlen("self", 16, 72, {13442}, {}, true, &rng, true);
    validate_varlen("cross", 16, 72, {13442}, {300}, false, &rng, true);   // dit-1b's cross-attention
    printf("\nperf.md peers (PyTorch SDPA on one H200), fwd / fwd+bwd TFLOP/s: FLASH(FA2) 263/207, 328/273, 230/204, 246/210;"
           " cuDNN 398/336, 616/512, 361/325, 344/326 (same shape order)\n");
    cublas_free();
    return finish("attention");
}
