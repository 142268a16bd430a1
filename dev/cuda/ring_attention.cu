/*
Check and benchmark of llmc/attention/ring_attention.cuh, the ring attention of context
parallelism (split and schedule: llmc/dist/context_parallel.h), on the simulated ring: one
process holds the whole CP group (CpGroup {n, 0, n}), a shift is n device copies, and every
block of the ring is one call of the flash kernels (llmc/attention/flash_attention.cuh).
  ring_attention_forward / _backward (causal, the GPT): rows of T = 2*n*Tc tokens, rank v
      holds chunks v and 2n-1-v of every row, its tokens chunk-major [2][B][Tc] (cp_causal_tokens):
      q [n*2*B, nkv, Tc, r, hd], k, v [n*2*B, nkv, Tc, hd], out [n*2*B*Tc, nh*hd],
      lse [n*2*B, nh, Tc]; the shape passed is the chunk's, {B, Tc, nh, nkv, hd, causal}
  ring_attention_varlen_forward / _backward (full attention, the DiT, nkv = nh): samples of
      uneven lengths cut into n contiguous parts, rank v holds part v of every sample (held
      tokens in cp_part_tokens order); q and k side by side in a [tokens, 2C] buffer, v the last
      third of a [tokens, 3C] one (the DiT's layout), out [tokens, C], lse [nh, tokens]
Checked against dev/cpu/ring_attention.h: its dense attention of the un-permuted tensors
(double sums) is the truth; its fp32 CPU ring must agree with it (TOL_F32) and so must the GPU
ring: out TOL_X, lse TOL_F32, dq/dk/dv TOL_RING_GRAD (below). Inputs are rounded to bf16 on
the host first (CPU and GPU see the same values).
Cases: causal n 2, 3, 4; B 1, 2; GQA (nh 4, nkv 2), r 3 (nh 6, nkv 2), MHA; hd 64, 72, 80, 128;
Tc 64..256 (80: ragged tiles); varlen n 2, 3 over samples {300, 517, 129}, and one sample of
exactly n tokens (a single token a rank); hd 64, 72, 128. Each case runs under the trainers'
settings: the default (deterministic) backward, --attn-backward fast, and the mma.sync kernels
everywhere (the last two where the sm90 kernels exist). Before every call its outputs, the
ring's workspace and the backward's scratch are poisoned (0xFF bytes: NaN), so an unwritten
element or a buffer the ring reads before writing fails; the backward needs nothing from the
forward in the workspace. Also: the deterministic backward bit-identical run to run, the
varlen gradient buffers' columns of other tensors left untouched, and the buffers
cp_ring_init carves inside cp_ring_workspace_bytes.
Timed (not under DEV_CUDA_CHECK_ONLY): the simulated ring against the flash call on the whole
sequence, at a gpt-1b-like causal shape (B1 T8192 nh32 nkv8 hd64) and the dit-1b shape (one
sample of 13442 tokens, nh16 hd72), n 2, 4, 8, after a GPU-to-GPU agreement check of the two
at that shape; rows "... overhead per block": (ring time - flash time) / blocks, a block
being one flash call of the ring (with its merge, or its three gradient additions):
n(2n+1) for the causal ring, n^2 for the varlen ring. The simulated ring's shifts are device
copies on the compute stream (not overlapped): with NCCL they overlap the attention instead.

  make dev/cuda/ring_attention && ./dev/cuda/ring_attention
*/
#include "common.h"
#include <cstring>
#include "../../llmc/attention/ring_attention.cuh"
#include "../cpu/ring_attention.h"

// Gradients: dev/cuda/attention.cu's TOL_GRAD (S, P, dP, dS pass through bf16 in the flash
// backward: 2 TOL_X) and half as much again, because each block's partial dQ/dK/dV is rounded
// to bf16 before the ring's fp32 sum over the blocks (partials that cancel leave a sum with a
// larger relative error than each of them).
static const double TOL_RING_GRAD = TOL_X * 3;

// ----------------------------------------------------------------------------
// helpers

// n values N(0, 1) rounded to floatX (what the GPU will hold)
static std::vector<float> rand_x(size_t n, Rng* rng) {
    std::vector<float> h(n);
    for (float& x : h) x = (float)(floatX)rng_normal(rng);
    return h;
}
static std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// The trainers' flash settings a case runs under (one where the build has only one kernel family)
struct RingMode {
    const char* tag;
    FlashSettings fs;
};
static std::vector<RingMode> ring_modes() {
    std::vector<RingMode> m;
    FlashSettings def;
    m.push_back({" [default]", def});
    if (flash_sm90_available()) {
        FlashSettings fast;
        fast.backward = FlashBwdPolicy::fast;
        m.push_back({" [default] [fast]", fast});
        FlashSettings mma;
        mma.family = FlashFamily::mma_sync;
        m.push_back({" [mma.sync]", mma});
    }
    return m;
}

// bit-identical device buffers (the deterministic backward run twice)
template <class T>
static bool check_bits(const char* kernel, const char* output, const std::string& shape, const T* a, const T* b, size_t n) {
    std::vector<T> ha(n), hb(n);
    cudaCheck(cudaMemcpy(ha.data(), a, n * sizeof(T), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hb.data(), b, n * sizeof(T), cudaMemcpyDeviceToHost));
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&ha[i], &hb[i], sizeof(T)) != 0;
    return check_true(diff == 0, "%s/%s bit-identical run to run: %zu of %zu elements differ shape=%s", kernel, output, diff, n,
                      shape.c_str());
}

// The buffers cp_ring_init carved, at the sizes the ring's functions index them
// (ring_attention.cuh: the varlen backward's part holds dQ with q's row stride, up to
// 2*nh*hd, then [cap][dK, dV] rows), must lie inside the workspace it was given.
static void check_ring_fits(const CpRing& r, const void* ws, size_t bytes, const std::string& shape) {
    const size_t L = r.g.local, cap = r.cap, kvd = (size_t)r.nkv * r.hd, qd = (size_t)r.nh * r.hd;
    const struct { const void* p; size_t n; } bufs[] = {
        {r.kv[0], L * 2 * cap * kvd * sizeof(floatX)}, {r.kv[1], L * 2 * cap * kvd * sizeof(floatX)},
        {r.dkv[0], L * 2 * cap * kvd * sizeof(float)}, {r.dkv[1], L * 2 * cap * kvd * sizeof(float)},
        {r.acc, L * cap * qd * sizeof(float)},          {r.part, cap * (2 * qd + 2 * kvd) * sizeof(floatX)},
        {r.lse_part, cap * r.nh * sizeof(float)},       {r.lse_in, cap * r.nh * sizeof(float)},
    };
    const char* lo = (const char*)ws;
    long long over = 0;
    bool inside = true;
    for (const auto& b : bufs) {
        const char* p = (const char*)b.p;
        inside = inside && p >= lo;
        over = std::max(over, (long long)(p + b.n - (lo + bytes)));
    }
    check_true(inside && over <= 0, "cp_ring_init: the ring's buffers inside cp_ring_workspace_bytes = %zu (%lld bytes past its end) shape=%s",
               bytes, over > 0 ? over : 0LL, shape.c_str());
}

// ----------------------------------------------------------------------------
// causal (the GPT)

struct CausalCase {
    int n, B, Tc, nh, nkv, hd;
};

static void check_causal(const CausalCase& c, Rng* rng) {
    const int n = c.n, B = c.B, Tc = c.Tc, nh = c.nh, nkv = c.nkv, hd = c.hd, r = nh / nkv, T = 2 * n * Tc;
    const std::string shape = strf("n%d B%d T%d (Tc%d) nh%d nkv%d hd%d causal", n, B, T, Tc, nh, nkv, hd);
    const CpGroup g = {n, 0, n};
    const size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd, nl = (size_t)B * nh * T;

    // the truth: dense attention over whole rows, q [B, nkv, T, r, hd], k, v [B, nkv, T, hd]
    const std::vector<float> q = rand_x(nq, rng), k = rand_x(nk, rng), v = rand_x(nk, rng), dout = rand_x(nq, rng);
    const CpuAttnShape ds = {B, T, nh, nkv, hd, true};
    std::vector<float> out_d(nq), lse_d(nl), dq_d(nq), dk_d(nk), dv_d(nk);
    attention_forward_cpu(out_d.data(), lse_d.data(), q.data(), k.data(), v.data(), ds);
    attention_backward_cpu(dq_d.data(), dk_d.data(), dv_d.data(), dout.data(), out_d.data(), lse_d.data(), q.data(), k.data(),
                           v.data(), ds);

    // everything in the process's local order (all n ranks, chunk-major): a permutation of the tokens
    // (H heads of W values at each token: q H = nkv, W = r*hd; k, v nkv, hd; out 1, nh*hd; lse nh, 1)
    auto gather = [&](const std::vector<float>& d, int H, int W) {
        std::vector<float> l(d.size());
        cp_causal_gather(l.data(), d.data(), g, B, H, T, W);
        return l;
    };
    const std::vector<float> ql = gather(q, nkv, r * hd), kl = gather(k, nkv, hd), vl = gather(v, nkv, hd),
                             dol = gather(dout, 1, nh * hd);
    const std::vector<double> out_ref = to_double(gather(out_d, 1, nh * hd)), lse_ref = to_double(gather(lse_d, nh, 1)),
                              dq_ref = to_double(gather(dq_d, nkv, r * hd)), dk_ref = to_double(gather(dk_d, nkv, hd)),
                              dv_ref = to_double(gather(dv_d, nkv, hd));

    // the fp32 CPU ring on the local tensors must agree with the dense attention
    std::vector<float> out_r(nq), lse_r(nl), dq_r(nq), dk_r(nk), dv_r(nk);
    ring_attention_causal_forward_cpu(out_r.data(), lse_r.data(), ql.data(), kl.data(), vl.data(), n, B, T, nh, nkv, hd);
    ring_attention_causal_backward_cpu(dq_r.data(), dk_r.data(), dv_r.data(), dol.data(), out_r.data(), lse_r.data(), ql.data(),
                                       kl.data(), vl.data(), n, B, T, nh, nkv, hd);
    check("ring_attention_causal_forward_cpu", "out", shape, out_r, out_ref, TOL_F32);
    check("ring_attention_causal_forward_cpu", "lse", shape, lse_r, lse_ref, TOL_F32);
    check("ring_attention_causal_backward_cpu", "dq", shape, dq_r, dq_ref, TOL_F32);
    check("ring_attention_causal_backward_cpu", "dk", shape, dk_r, dk_ref, TOL_F32);
    check("ring_attention_causal_backward_cpu", "dv", shape, dv_r, dv_ref, TOL_F32);

    // the GPU ring
    floatX *d_q = dev_alloc<floatX>(nq), *d_k = dev_alloc<floatX>(nk), *d_v = dev_alloc<floatX>(nk), *d_dout = dev_alloc<floatX>(nq);
    floatX *d_out = dev_alloc<floatX>(nq), *d_dq = dev_alloc<floatX>(nq), *d_dk = dev_alloc<floatX>(nk), *d_dv = dev_alloc<floatX>(nk);
    floatX *d_dq2 = dev_alloc<floatX>(nq), *d_dk2 = dev_alloc<floatX>(nk), *d_dv2 = dev_alloc<floatX>(nk);
    float* d_lse = dev_alloc<float>(nl);
    upload(d_q, ql.data(), nq);
    upload(d_k, kl.data(), nk);
    upload(d_v, vl.data(), nk);
    upload(d_dout, dol.data(), nq);
    const size_t cap = 2 * (size_t)B * Tc;
    const size_t ws_bytes = cp_ring_workspace_bytes(g, cap, nh, nkv, hd);
    char* ws = dev_alloc<char>(ws_bytes);
    CpRing ring;
    cp_ring_init(&ring, g, ws, ws_bytes, cap, nh, nkv, hd, nullptr);
    check_ring_fits(ring, ws, ws_bytes, shape);
    // the trainer's scratch: the flash backward's of all the process's chunks as one batch
    const size_t scratch_bytes = flash_attention_scratch_bytes(AttnShape{n * 2 * B, Tc, nh, nkv, hd, true});
    char* scratch = dev_alloc<char>(scratch_bytes);
    const AttnShape cs = {B, Tc, nh, nkv, hd, true};

    for (const RingMode& m : ring_modes()) {
        flash_attention_configure(m.fs);
        const std::string sh = shape + m.tag;
        poison(d_out, nq); poison(d_lse, nl); poison(ws, ws_bytes);
        ring_attention_forward(&ring, d_out, d_lse, d_q, d_k, d_v, cs, 0);
        cudaCheck(cudaDeviceSynchronize());
        check("ring_attention_forward", "out", sh, download(d_out, nq), out_ref, TOL_X);
        check("ring_attention_forward", "lse", sh, download(d_lse, nl), lse_ref, TOL_F32);
        auto backward = [&](floatX* dq, floatX* dk, floatX* dv) {
            poison(dq, nq); poison(dk, nk); poison(dv, nk); poison(scratch, scratch_bytes); poison(ws, ws_bytes);
            ring_attention_backward(&ring, dq, dk, dv, d_dout, d_out, d_lse, d_q, d_k, d_v, (float*)scratch, cs, 0);
            cudaCheck(cudaDeviceSynchronize());
        };
        backward(d_dq, d_dk, d_dv);
        check("ring_attention_backward", "dq", sh, download(d_dq, nq), dq_ref, TOL_RING_GRAD);
        check("ring_attention_backward", "dk", sh, download(d_dk, nk), dk_ref, TOL_RING_GRAD);
        check("ring_attention_backward", "dv", sh, download(d_dv, nk), dv_ref, TOL_RING_GRAD);
        if (m.fs.backward == FlashBwdPolicy::deterministic) {
            backward(d_dq2, d_dk2, d_dv2);
            check_bits("ring_attention_backward", "dq", sh, d_dq, d_dq2, nq);
            check_bits("ring_attention_backward", "dk", sh, d_dk, d_dk2, nk);
            check_bits("ring_attention_backward", "dv", sh, d_dv, d_dv2, nk);
        }
    }
    flash_attention_configure(FlashSettings());
    cp_ring_free(&ring);
    floatX* all[] = {d_q, d_k, d_v, d_dout, d_out, d_dq, d_dk, d_dv, d_dq2, d_dk2, d_dv2};
    for (floatX* p : all) cudaCheck(cudaFree(p));
    cudaCheck(cudaFree(d_lse)); cudaCheck(cudaFree(ws)); cudaCheck(cudaFree(scratch));
}

// ----------------------------------------------------------------------------
// variable length (the DiT)

struct VarlenCase {
    int n, nh, hd;
    std::vector<int> lengths;
};

// the n ranks' cu (cp_part_cu): the ring's cu_host, and the same n*(B+1) ints on the device
static int* upload_cu(std::vector<std::vector<int>>& cu_host, const std::vector<int>& lengths, int n) {
    cu_host.clear();
    std::vector<int> flat;
    for (int v = 0; v < n; v++) {
        cu_host.push_back(cp_part_cu(lengths, v, n));
        flat.insert(flat.end(), cu_host.back().begin(), cu_host.back().end());
    }
    int* d = dev_alloc<int>(flat.size());
    upload_ints(d, flat);
    return d;
}

// columns [c0, c0 + C) of the rows of a [rows, stride] host buffer, concatenated
static std::vector<float> columns(const std::vector<float>& x, size_t rows, int stride, int c0, int C) {
    std::vector<float> y(rows * C);
    for (size_t i = 0; i < rows; i++) std::copy(&x[i * stride + c0], &x[i * stride + c0 + C], &y[i * C]);
    return y;
}

static void check_varlen(const VarlenCase& c, Rng* rng) {
    const int n = c.n, nh = c.nh, hd = c.hd, C = nh * hd, B = (int)c.lengths.size();
    const std::vector<int>& lengths = c.lengths;
    cp_check_parts(n, lengths);
    const CpGroup g = {n, 0, n};
    std::vector<int> cu(B + 1, 0);
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + lengths[b];
    const int N = cu[B];
    std::string shape = strf("n%d B%d nh%d hd%d full lens", n, B, nh, hd);
    for (int L : lengths) shape += strf(" %d", L);
    const size_t NC = (size_t)N * C;

    // the truth: dense varlen attention of the packed samples, [N, C] rows (stride C)
    const std::vector<float> q = rand_x(NC, rng), k = rand_x(NC, rng), v = rand_x(NC, rng), dout = rand_x(NC, rng);
    const CpuVarlenShape ds = {B, nh, hd, cu.data(), cu.data(), C, C, C};
    std::vector<float> out_d(NC), lse_d((size_t)nh * N), dq_d(NC), dk_d(NC), dv_d(NC);
    attention_varlen_forward_cpu(out_d.data(), lse_d.data(), q.data(), k.data(), v.data(), ds);
    attention_varlen_backward_cpu(dq_d.data(), dk_d.data(), dv_d.data(), dout.data(), out_d.data(), lse_d.data(), q.data(),
                                  k.data(), v.data(), ds);

    // the held tokens (all n ranks, rank after rank, each rank's parts in sample order)
    const std::vector<int> idx = cp_part_tokens(g, lengths);
    auto rows = [&](const std::vector<float>& d) {
        std::vector<float> l(NC);
        cp_rows_gather(l.data(), d.data(), g, lengths, C);
        return l;
    };
    const std::vector<float> ql = rows(q), kl = rows(k), vl = rows(v), dol = rows(dout);
    const std::vector<double> out_ref = to_double(rows(out_d)), dq_ref = to_double(rows(dq_d)), dk_ref = to_double(rows(dk_d)),
                              dv_ref = to_double(rows(dv_d));
    // lse: the CPU ring's is per-rank [nh, Nq_v] blocks, rank after rank; the GPU's is one
    // [nh, N] array over all held tokens: (h, held token i) at h*N + i
    std::vector<float> lse_ref_blocks((size_t)nh * N);
    cp_varlen_lse_gather(lse_ref_blocks.data(), lse_d.data(), g, lengths, nh);
    std::vector<double> lse_ref_gpu((size_t)nh * N);
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < N; i++) lse_ref_gpu[(size_t)h * N + i] = lse_d[(size_t)h * N + idx[i]];

    // the fp32 CPU ring
    std::vector<float> out_r(NC), lse_r((size_t)nh * N), dq_r(NC), dk_r(NC), dv_r(NC);
    ring_attention_varlen_forward_cpu(out_r.data(), lse_r.data(), ql.data(), kl.data(), vl.data(), lengths, n, nh, hd, C, C, C);
    ring_attention_varlen_backward_cpu(dq_r.data(), dk_r.data(), dv_r.data(), dol.data(), out_r.data(), lse_r.data(), ql.data(),
                                       kl.data(), vl.data(), lengths, n, nh, hd, C, C, C);
    check("ring_attention_varlen_forward_cpu", "out", shape, out_r, out_ref, TOL_F32);
    check("ring_attention_varlen_forward_cpu", "lse", shape, lse_r, to_double(lse_ref_blocks), TOL_F32);
    check("ring_attention_varlen_backward_cpu", "dq", shape, dq_r, dq_ref, TOL_F32);
    check("ring_attention_varlen_backward_cpu", "dk", shape, dk_r, dk_ref, TOL_F32);
    check("ring_attention_varlen_backward_cpu", "dv", shape, dv_r, dv_ref, TOL_F32);

    // the GPU ring, the DiT's layout: q, k in [N, 2C] (stride 2C), v the last third of [N, 3C]
    // (its other columns NaN: a read of them would show); gradients into buffers of the same shapes
    const int QS = 2 * C, VS = 3 * C;
    const size_t nqk = (size_t)N * QS, nv3 = (size_t)N * VS;
    std::vector<float> h_qk(nqk), h_v3(nv3, NAN);
    for (int i = 0; i < N; i++) {
        std::copy(&ql[(size_t)i * C], &ql[(size_t)(i + 1) * C], &h_qk[(size_t)i * QS]);
        std::copy(&kl[(size_t)i * C], &kl[(size_t)(i + 1) * C], &h_qk[(size_t)i * QS + C]);
        std::copy(&vl[(size_t)i * C], &vl[(size_t)(i + 1) * C], &h_v3[(size_t)i * VS + 2 * C]);
    }
    floatX *d_qk = dev_alloc<floatX>(nqk), *d_v3 = dev_alloc<floatX>(nv3), *d_dout = dev_alloc<floatX>(NC), *d_out = dev_alloc<floatX>(NC);
    floatX *d_dqk = dev_alloc<floatX>(nqk), *d_dv3 = dev_alloc<floatX>(nv3), *d_dqk2 = dev_alloc<floatX>(nqk), *d_dv32 = dev_alloc<floatX>(nv3);
    float* d_lse = dev_alloc<float>((size_t)nh * N);
    upload(d_qk, h_qk.data(), nqk);
    upload(d_v3, h_v3.data(), nv3);
    upload(d_dout, dol.data(), NC);
    std::vector<std::vector<int>> cu_host;
    int* cu_dev = upload_cu(cu_host, lengths, n);
    const size_t cap = (size_t)cp_max_part_tokens(lengths, n);
    const size_t ws_bytes = cp_ring_workspace_bytes(g, cap, nh, nh, hd);
    char* ws = dev_alloc<char>(ws_bytes);
    CpRing ring;
    cp_ring_init(&ring, g, ws, ws_bytes, cap, nh, nh, hd, nullptr);
    check_ring_fits(ring, ws, ws_bytes, shape);
    const size_t scratch_bytes = flash_attention_varlen_scratch_bytes(cap, nh, hd, B);
    char* scratch = dev_alloc<char>(scratch_bytes);
    const CpVarlenShape vs = {B, nh, hd, &cu_host, cu_dev, QS, QS, VS};
    const floatX *q_ = d_qk, *k_ = d_qk + C, *v_ = d_v3 + 2 * C;

    for (const RingMode& m : ring_modes()) {
        flash_attention_configure(m.fs);
        const std::string sh = shape + m.tag;
        poison(d_out, NC); poison(d_lse, (size_t)nh * N); poison(ws, ws_bytes);
        ring_attention_varlen_forward(&ring, d_out, d_lse, q_, k_, v_, vs, 0);
        cudaCheck(cudaDeviceSynchronize());
        check("ring_attention_varlen_forward", "out", sh, download(d_out, NC), out_ref, TOL_X);
        check("ring_attention_varlen_forward", "lse", sh, download(d_lse, (size_t)nh * N), lse_ref_gpu, TOL_F32);
        auto backward = [&](floatX* dqk, floatX* dv3) {
            poison(dqk, nqk); poison(dv3, nv3); poison(scratch, scratch_bytes); poison(ws, ws_bytes);
            ring_attention_varlen_backward(&ring, dqk, dqk + C, dv3 + 2 * C, d_dout, d_out, d_lse, q_, k_, v_, (float*)scratch,
                                           scratch_bytes, vs, 0);
            cudaCheck(cudaDeviceSynchronize());
        };
        backward(d_dqk, d_dv3);
        const std::vector<float> g_dqk = download(d_dqk, nqk), g_dv3 = download(d_dv3, nv3);
        check("ring_attention_varlen_backward", "dq", sh, columns(g_dqk, N, QS, 0, C), dq_ref, TOL_RING_GRAD);
        check("ring_attention_varlen_backward", "dk", sh, columns(g_dqk, N, QS, C, C), dk_ref, TOL_RING_GRAD);
        check("ring_attention_varlen_backward", "dv", sh, columns(g_dv3, N, VS, 2 * C, C), dv_ref, TOL_RING_GRAD);
        // the first two thirds of the dv buffer are other tensors' (dq, dk of a fused qkv): still poison
        size_t written = 0;
        for (int i = 0; i < N; i++)
            for (int e = 0; e < 2 * C; e++) written += !std::isnan(g_dv3[(size_t)i * VS + e]);
        check_true(written == 0, "ring_attention_varlen_backward/untouched columns: %zu of %zu written shape=%s", written,
                   (size_t)N * 2 * C, sh.c_str());
        if (m.fs.backward == FlashBwdPolicy::deterministic) {
            backward(d_dqk2, d_dv32);
            check_bits("ring_attention_varlen_backward", "dq/dk", sh, d_dqk, d_dqk2, nqk);
            check_bits("ring_attention_varlen_backward", "dv", sh, d_dv3, d_dv32, nv3);
        }
    }
    flash_attention_configure(FlashSettings());
    cp_ring_free(&ring);
    floatX* all[] = {d_qk, d_v3, d_dout, d_out, d_dqk, d_dv3, d_dqk2, d_dv32};
    for (floatX* p : all) cudaCheck(cudaFree(p));
    cudaCheck(cudaFree(d_lse)); cudaCheck(cudaFree(ws)); cudaCheck(cudaFree(scratch)); cudaCheck(cudaFree(cu_dev));
}

// ----------------------------------------------------------------------------
// timing: the simulated ring against one flash call on the whole sequence

// A table row: the ring's extra time per block, (ring - flash) / blocks
static void report_overhead(const std::string& kernel, const std::string& shape, float us_ring, float us_flash, int blocks) {
    if (check_only()) return;
    char line[512];
    snprintf(line, sizeof line, "%-40s %-34s %10.2f %9d blocks    (ring %.1f us - flash %.1f us) / blocks", kernel.c_str(),
             shape.c_str(), (us_ring - us_flash) / blocks, blocks, us_ring, us_flash);
    g_table.push_back(line);
}

// Times the plain flash forward/backward over the whole sequence and the simulated ring's, and
// reports both and the ring's overhead per block (one flash call of the ring: `blocks` of them).
template <class F1, class F2, class F3, class F4>
static void time_ring(const char* kind, const std::string& shape, F1 flash_f, F2 flash_b, F3 ring_f, F4 ring_b, double fl, int blocks) {
    const float us_ff = time_us(flash_f), us_fb = time_us(flash_b), us_rf = time_us(ring_f), us_rb = time_us(ring_b);
    report_flops(strf("flash_attention_%sforward (whole)", kind), shape, us_ff, fl);
    report_flops(strf("ring_attention_%sforward (simulated)", kind), shape, us_rf, fl);
    report_overhead(strf("ring %sforward: overhead per block", kind), shape, us_rf, us_ff, blocks);
    report_flops(strf("flash_attention_%sbackward (whole)", kind), shape, us_fb, 2.5 * fl);
    report_flops(strf("ring_attention_%sbackward (simulated)", kind), shape, us_rb, 2.5 * fl);
    report_overhead(strf("ring %sbackward: overhead per block", kind), shape, us_rb, us_fb, blocks);
}

// Causal: the ring on the local order of the same random inputs as the whole-row flash call.
// Before timing, the two (both GPU) must agree at this shape: out TOL_X, lse TOL_F32, gradients TOL_RING_GRAD.
static void time_causal(int n, int B, int T, int nh, int nkv, int hd, Rng* rng) {
    const int Tc = T / (2 * n), r = nh / nkv;
    const std::string shape = strf("n%d B%d T%d nh%d nkv%d hd%d causal", n, B, T, nh, nkv, hd);
    const CpGroup g = {n, 0, n};
    const size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd, nl = (size_t)B * nh * T;
    // [0]: dense (the flash call on whole rows), [1]: local order (the ring)
    floatX *q[2], *k[2], *v[2], *dout[2], *out[2], *dq[2], *dk[2], *dv[2];
    float* lse[2];
    for (int i = 0; i < 2; i++) {
        q[i] = dev_alloc<floatX>(nq); k[i] = dev_alloc<floatX>(nk); v[i] = dev_alloc<floatX>(nk); dout[i] = dev_alloc<floatX>(nq);
        out[i] = dev_alloc<floatX>(nq); dq[i] = dev_alloc<floatX>(nq); dk[i] = dev_alloc<floatX>(nk); dv[i] = dev_alloc<floatX>(nk);
        lse[i] = dev_alloc<float>(nl);
    }
    fill_random(q[0], nq, rng, 1.0f);
    fill_random(k[0], nk, rng, 1.0f);
    fill_random(v[0], nk, rng, 1.0f);
    fill_random(dout[0], nq, rng, 1.0f);
    auto to_local = [&](floatX* dst, const floatX* src, size_t len, int H, int W) {
        const std::vector<float> d = download(src, len);
        std::vector<float> l(len);
        cp_causal_gather(l.data(), d.data(), g, B, H, T, W);
        upload(dst, l.data(), len);
    };
    to_local(q[1], q[0], nq, nkv, r * hd);
    to_local(k[1], k[0], nk, nkv, hd);
    to_local(v[1], v[0], nk, nkv, hd);
    to_local(dout[1], dout[0], nq, 1, nh * hd);
    const size_t cap = 2 * (size_t)B * Tc, ws_bytes = cp_ring_workspace_bytes(g, cap, nh, nkv, hd);
    char* ws = dev_alloc<char>(ws_bytes);
    CpRing ring;
    cp_ring_init(&ring, g, ws, ws_bytes, cap, nh, nkv, hd, nullptr);
    const AttnShape whole = {B, T, nh, nkv, hd, true}, chunk = {B, Tc, nh, nkv, hd, true};
    const size_t scratch_bytes =
        std::max(flash_attention_scratch_bytes(whole), flash_attention_scratch_bytes(AttnShape{n * 2 * B, Tc, nh, nkv, hd, true}));
    float* scratch = (float*)dev_alloc<char>(scratch_bytes);
    auto flash_f = [&] { flash_attention_forward(out[0], lse[0], q[0], k[0], v[0], whole, 0); };
    auto flash_b = [&] { flash_attention_backward(dq[0], dk[0], dv[0], dout[0], out[0], lse[0], q[0], k[0], v[0], scratch, whole, 0); };
    auto ring_f = [&] { ring_attention_forward(&ring, out[1], lse[1], q[1], k[1], v[1], chunk, 0); };
    auto ring_b = [&] { ring_attention_backward(&ring, dq[1], dk[1], dv[1], dout[1], out[1], lse[1], q[1], k[1], v[1], scratch, chunk, 0); };

    poison(out[0], nq); poison(lse[0], nl); poison(dq[0], nq); poison(dk[0], nk); poison(dv[0], nk);
    flash_f();
    flash_b();
    poison(out[1], nq); poison(lse[1], nl); poison(dq[1], nq); poison(dk[1], nk); poison(dv[1], nk);
    ring_f();
    ring_b();
    cudaCheck(cudaDeviceSynchronize());
    auto agree = [&](const char* kernel, const char* what, const floatX* ring_out, const floatX* flash_out, size_t len, int H, int W, double tol) {
        const std::vector<float> d = download(flash_out, len);
        std::vector<float> l(len);
        cp_causal_gather(l.data(), d.data(), g, B, H, T, W);
        check(kernel, what, shape + " vs flash on whole rows", download(ring_out, len), to_double(l), tol);
    };
    agree("ring_attention_forward", "out", out[1], out[0], nq, 1, nh * hd, TOL_X);
    {
        const std::vector<float> d = download(lse[0], nl);
        std::vector<float> l(nl);
        cp_causal_gather(l.data(), d.data(), g, B, nh, T, 1);
        check("ring_attention_forward", "lse", shape + " vs flash on whole rows", download(lse[1], nl), to_double(l), TOL_F32);
    }
    agree("ring_attention_backward", "dq", dq[1], dq[0], nq, nkv, r * hd, TOL_RING_GRAD);
    agree("ring_attention_backward", "dk", dk[1], dk[0], nk, nkv, hd, TOL_RING_GRAD);
    agree("ring_attention_backward", "dv", dv[1], dv[0], nk, nkv, hd, TOL_RING_GRAD);

    time_ring("", shape, flash_f, flash_b, ring_f, ring_b, flash_attention_flops(whole), n * (2 * n + 1));

    cp_ring_free(&ring);
    for (int i = 0; i < 2; i++) {
        floatX* all[] = {q[i], k[i], v[i], dout[i], out[i], dq[i], dk[i], dv[i]};
        for (floatX* p : all) cudaCheck(cudaFree(p));
        cudaCheck(cudaFree(lse[i]));
    }
    cudaCheck(cudaFree(ws)); cudaCheck(cudaFree(scratch));
}

// Varlen: the DiT's layout (q, k in [N, 2C], v the last third of [N, 3C]); the flash call on the
// packed samples, the ring on the same rows in the held order.
static void time_varlen(int n, const std::vector<int>& lengths, int nh, int hd, Rng* rng) {
    const int B = (int)lengths.size(), C = nh * hd, QS = 2 * C, VS = 3 * C;
    std::vector<int> cu(B + 1, 0);
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + lengths[b];
    const int N = cu[B];
    std::string shape = strf("n%d nh%d hd%d full lens", n, nh, hd);
    for (int L : lengths) shape += strf(" %d", L);
    const CpGroup g = {n, 0, n};
    const std::vector<int> idx = cp_part_tokens(g, lengths);
    const size_t nqk = (size_t)N * QS, nv3 = (size_t)N * VS, NC = (size_t)N * C, nl = (size_t)nh * N;
    floatX *qk[2], *v3[2], *dout[2], *out[2], *dqk[2], *dv3[2];
    float* lse[2];
    for (int i = 0; i < 2; i++) {
        qk[i] = dev_alloc<floatX>(nqk); v3[i] = dev_alloc<floatX>(nv3); dout[i] = dev_alloc<floatX>(NC); out[i] = dev_alloc<floatX>(NC);
        dqk[i] = dev_alloc<floatX>(nqk); dv3[i] = dev_alloc<floatX>(nv3); lse[i] = dev_alloc<float>(nl);
    }
    fill_random(qk[0], nqk, rng, 1.0f);
    fill_random(v3[0], nv3, rng, 1.0f);
    fill_random(dout[0], NC, rng, 1.0f);
    auto to_local = [&](floatX* dst, const floatX* src, size_t len, int width) {
        const std::vector<float> d = download(src, len);
        std::vector<float> l(len);
        cp_rows_gather(l.data(), d.data(), g, lengths, width);
        upload(dst, l.data(), len);
    };
    to_local(qk[1], qk[0], nqk, QS);
    to_local(v3[1], v3[0], nv3, VS);
    to_local(dout[1], dout[0], NC, C);
    int* cu_d = dev_alloc<int>(B + 1);
    upload_ints(cu_d, cu);
    std::vector<std::vector<int>> cu_host;
    int* cu_dev = upload_cu(cu_host, lengths, n);
    const size_t cap = (size_t)cp_max_part_tokens(lengths, n), ws_bytes = cp_ring_workspace_bytes(g, cap, nh, nh, hd);
    char* ws = dev_alloc<char>(ws_bytes);
    CpRing ring;
    cp_ring_init(&ring, g, ws, ws_bytes, cap, nh, nh, hd, nullptr);
    const size_t scratch_flash = flash_attention_varlen_scratch_bytes(N, nh, hd, B),
                 scratch_ring = flash_attention_varlen_scratch_bytes(cap, nh, hd, B);
    float* scratch = (float*)dev_alloc<char>(std::max(scratch_flash, scratch_ring));
    const VarlenAttnShape whole = {B, nh, hd, cu.data(), cu.data(), QS, QS, VS, cu_d, cu_d};
    const CpVarlenShape vs = {B, nh, hd, &cu_host, cu_dev, QS, QS, VS};
    auto flash_f = [&] { flash_attention_varlen_forward(out[0], lse[0], qk[0], qk[0] + C, v3[0] + 2 * C, whole, 0); };
    auto flash_b = [&] {
        flash_attention_varlen_backward(dqk[0], dqk[0] + C, dv3[0] + 2 * C, dout[0], out[0], lse[0], qk[0], qk[0] + C, v3[0] + 2 * C,
                                        scratch, whole, 0, scratch_flash);
    };
    auto ring_f = [&] { ring_attention_varlen_forward(&ring, out[1], lse[1], qk[1], qk[1] + C, v3[1] + 2 * C, vs, 0); };
    auto ring_b = [&] {
        ring_attention_varlen_backward(&ring, dqk[1], dqk[1] + C, dv3[1] + 2 * C, dout[1], out[1], lse[1], qk[1], qk[1] + C,
                                       v3[1] + 2 * C, scratch, scratch_ring, vs, 0);
    };
    for (int i = 0; i < 2; i++) { poison(out[i], NC); poison(lse[i], nl); poison(dqk[i], nqk); poison(dv3[i], nv3); }
    flash_f();
    flash_b();
    ring_f();
    ring_b();
    cudaCheck(cudaDeviceSynchronize());
    auto agree = [&](const char* kernel, const char* what, const floatX* ring_buf, const floatX* flash_buf, size_t len, int stride,
                     int c0, double tol) {
        const std::vector<float> d = download(flash_buf, len), gr = download(ring_buf, len);
        std::vector<float> l(len);
        cp_rows_gather(l.data(), d.data(), g, lengths, stride);
        check(kernel, what, shape + " vs flash on whole samples", columns(gr, N, stride, c0, C), to_double(columns(l, N, stride, c0, C)), tol);
    };
    agree("ring_attention_varlen_forward", "out", out[1], out[0], NC, C, 0, TOL_X);
    {
        const std::vector<float> d = download(lse[0], nl);
        std::vector<double> l(nl);
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < N; i++) l[(size_t)h * N + i] = d[(size_t)h * N + idx[i]];
        check("ring_attention_varlen_forward", "lse", shape + " vs flash on whole samples", download(lse[1], nl), l, TOL_F32);
    }
    agree("ring_attention_varlen_backward", "dq", dqk[1], dqk[0], nqk, QS, 0, TOL_RING_GRAD);
    agree("ring_attention_varlen_backward", "dk", dqk[1], dqk[0], nqk, QS, C, TOL_RING_GRAD);
    agree("ring_attention_varlen_backward", "dv", dv3[1], dv3[0], nv3, VS, 2 * C, TOL_RING_GRAD);

    time_ring("varlen ", shape, flash_f, flash_b, ring_f, ring_b, flash_attention_flops(whole), n * n);

    cp_ring_free(&ring);
    for (int i = 0; i < 2; i++) {
        floatX* all[] = {qk[i], v3[i], dout[i], out[i], dqk[i], dv3[i]};
        for (floatX* p : all) cudaCheck(cudaFree(p));
        cudaCheck(cudaFree(lse[i]));
    }
    cudaCheck(cudaFree(ws)); cudaCheck(cudaFree(scratch)); cudaCheck(cudaFree(cu_d)); cudaCheck(cudaFree(cu_dev));
}

int main() {
    print_banner("ring_attention");
    Rng rng;
    rng_seed(&rng, 1234);
    const CausalCase causal[] = {
        // n, B, Tc, nh, nkv, hd
        {2, 2, 64, 4, 2, 64},    // GQA r 2, T 256
        {3, 1, 96, 4, 4, 128},   // MHA, hd 128, T 576
        {4, 1, 128, 4, 2, 64},   // GQA, T 1024
        {2, 1, 256, 4, 4, 72},   // MHA, hd 72 (padded to 80 in the kernels), T 1024
        {3, 2, 80, 6, 2, 80},    // r 3, hd 80, Tc 80 (ragged tiles), T 480
        {4, 2, 64, 4, 2, 128},   // GQA, hd 128, T 512
    };
    for (const CausalCase& c : causal) check_causal(c, &rng);
    const VarlenCase varlen[] = {
        // n, nh, hd, sample lengths
        {2, 4, 64, {300, 517, 129}},
        {3, 4, 72, {300, 517, 129}},
        {3, 2, 128, {3, 250, 64}},   // a sample of n tokens: one token a rank
    };
    for (const VarlenCase& c : varlen) check_varlen(c, &rng);
    if (!check_only()) {
        // gpt-1b's attention (nh 32, nkv 8, hd 64) at T 8192; dit-1b's (nh 16, hd 72) at one 13442-token sample
        for (int n : {2, 4, 8}) time_causal(n, 1, 8192, 32, 8, 64, &rng);
        for (int n : {2, 4, 8}) time_varlen(n, {13442}, 16, 72, &rng);
    }
    return finish("ring_attention");
}
