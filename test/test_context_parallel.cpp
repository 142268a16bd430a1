/*
Tests of context parallelism on the CPU: the plan of llmc/dist/context_parallel.h (the
split of a row into 2N load-balanced chunks, the contiguous parts of variable-length
samples, the ring's schedule, the groups, the flag checks: one stderr line naming --cp,
exit 1) and the ring attention of dev/cpu/ring_attention.h against dense attention:
forward (out, lse) and backward (dq, dk, dv), causal with grouped-query heads and
variable-length full attention with row strides, for 1 to 4 ranks; plus the dense
reference against finite differences, its two layouts against each other, and a
negative control (a ring with a step dropped must disagree).

  make test/test_context_parallel && ./test/test_context_parallel
  child mode: --check-world N WORLD      cp_check_world
              --check-causal N T         cp_check_causal
              --check-parts N L1 L2 ...  cp_check_parts
*/
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "../llmc/core/rand.h"
#include "test_util.h"
#include "../dev/cpu/ring_attention.h"

static const std::string DIR = "test/tmp/context_parallel";
static const float TOL = 1e-5f;  // ring vs dense, values of order 1, both fp32 with double sums

static std::vector<float> random_uniform(size_t n, Rng* rng) {  // uniform in [-1, 1)
    std::vector<float> x(n);
    for (float& f : x) f = 2.0f * rng_uniform(rng) - 1.0f;
    return x;
}

static float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    float m = 0.0f;
    for (size_t i = 0; i < a.size(); i++) {
        const float d = fabsf(a[i] - b[i]);
        if (!std::isfinite(d)) return INFINITY;  // an element not written (NaN poison) or not finite
        m = std::max(m, d);
    }
    return m;
}

// ------------------------------------------------------------------ the plan

static void test_causal_split() {
    bool perm_ok = true, order_ok = true, pos_ok = true;
    std::string first_bad;
    for (int n = 1; n <= 5; n++)
        for (int B : {1, 3})
            for (int m : {1, 2, 3}) {
                const int T = 2 * n * m, Tc = m;
                std::vector<int> pos;
                const std::vector<int> idx = cp_causal_tokens(CpGroup{n, 0, n}, B, T, &pos);
                // a permutation of the B*T tokens
                std::vector<int> seen(B * T, 0);
                bool perm = (int)idx.size() == B * T;
                for (int i : idx) {
                    if (i < 0 || i >= B * T || seen[i]++) perm = false;
                }
                // chunk-major: rank v's tokens are [2][B][Tc], local chunk a of row b holds
                // consecutive positions of global chunk cp_chunk(v, a)
                bool order = perm;
                for (size_t i = 0; order && i < idx.size(); i++) {
                    const int v = (int)(i / (2 * B * Tc)), a = (int)(i / (B * Tc) % 2), b = (int)(i / Tc % B), t = (int)(i % Tc);
                    order = idx[i] == b * T + cp_chunk(v, a, n) * Tc + t;
                }
                // chunks 0..2n-1 each held once: v and 2n-1-v over all ranks
                std::vector<int> held(2 * n, 0);
                for (int v = 0; v < n; v++)
                    for (int a = 0; a < 2; a++) held[cp_chunk(v, a, n)]++;
                for (int c : held) order = order && c == 1;
                // one rank's list is that rank's slice of the whole group's
                for (int v = 0; v < n && order; v++) {
                    const std::vector<int> one = cp_causal_tokens(CpGroup{n, v, 1}, B, T);
                    order = std::equal(one.begin(), one.end(), idx.begin() + (size_t)v * 2 * B * Tc);
                }
                bool p_ok = pos.size() == idx.size();
                for (size_t i = 0; p_ok && i < idx.size(); i++) p_ok = pos[i] == idx[i] % T;
                if ((!perm || !order || !p_ok) && first_bad.empty()) first_bad = strf("n %d B %d T %d", n, B, T);
                perm_ok &= perm;
                order_ok &= order;
                pos_ok &= p_ok;
            }
    check(perm_ok, "cp_causal_tokens is a permutation of the B*T tokens (n 1..5, B 1 and 3, T = 2n, 4n, 6n)",
          perm_ok ? "" : "expected every token once, first wrong at " + first_bad);
    check(order_ok, "cp_causal_tokens: rank by rank, chunk-major [2][B][Tc], rank v holds chunks v and 2n-1-v",
          order_ok ? "" : "expected that order, first wrong at " + first_bad);
    check(pos_ok, "cp_causal_tokens positions are t of b*T+t", pos_ok ? "" : "expected idx % T, first wrong at " + first_bad);
}

// Every rank computes the same number of (query, key) pairs over the ring, and they add up
// to the causal attention's B*T*(T+1)/2.
static void test_load_balance() {
    for (int n = 1; n <= 5; n++) {
        const int B = 2, Tc = 3, T = 2 * n * Tc;
        std::vector<long long> pairs(n, 0);
        for (int v = 0; v < n; v++)
            for (int s = 0; s < n; s++) {
                const int u = cp_ring_source(v, s, n);
                for (int a = 0; a < 2; a++)
                    for (int c = 0; c < 2; c++) {
                        const CpBlock blk = cp_causal_block(cp_chunk(v, a, n), cp_chunk(u, c, n));
                        pairs[v] += blk == CP_FULL ? (long long)B * Tc * Tc : blk == CP_CAUSAL ? (long long)B * Tc * (Tc + 1) / 2 : 0;
                    }
            }
        long long total = 0;
        bool equal = true;
        for (int v = 0; v < n; v++) { total += pairs[v]; equal = equal && pairs[v] == pairs[0]; }
        const long long want = (long long)B * T * (T + 1) / 2;
        check(equal && total == want, strf("causal load balance n %d (B %d T %d)", n, B, T),
              strf("%lld pairs per rank, %lld in all%s", pairs[0], total,
                   equal && total == want ? "" : strf(", expected equal per rank and %lld in all", want).c_str()));
    }
    // the blocks: earlier key chunk full, same chunk causal, later skipped
    check(cp_causal_block(3, 1) == CP_FULL && cp_causal_block(2, 2) == CP_CAUSAL && cp_causal_block(1, 3) == CP_SKIP,
          "cp_causal_block", "expected full (earlier), causal (same), skip (later)");
}

static void test_ring_schedule() {
    bool ok = true;
    for (int n = 1; n <= 6; n++) {
        for (int v = 0; v < n; v++) {  // each rank holds every rank's K/V once, its own first
            std::vector<int> seen(n, 0);
            for (int s = 0; s < n; s++) seen[cp_ring_source(v, s, n)]++;
            ok = ok && cp_ring_source(v, 0, n) == v && std::count(seen.begin(), seen.end(), 1) == n;
        }
        for (int s = 0; s < n; s++) {  // at each step every block is held by one rank, passed on by one
            std::vector<int> seen(n, 0);
            for (int v = 0; v < n; v++) {
                seen[cp_ring_source(v, s, n)]++;
                if (s > 0) ok = ok && cp_ring_source(v, s, n) == cp_ring_source((v + n - 1) % n, s - 1, n);
            }
            ok = ok && std::count(seen.begin(), seen.end(), 1) == n;
        }
    }
    check(ok, "cp_ring_source (n 1..6)",
          ok ? "every rank visits each rank once over n steps, its own first; a block moves to the next rank each step"
             : "expected each rank once per rank, and the block held at s-1 by v-1 held at s by v");
}

static void test_parts() {
    const std::vector<std::vector<int>> batches = {{7, 13, 5}, {3, 4}, {5}, {16, 1, 9, 2}};
    bool cover = true, sizes = true, cu = true, pos_ok = true, slice = true;
    for (const std::vector<int>& lengths : batches) {
        int N = 0, minL = 1 << 30;
        for (int L : lengths) { N += L; minL = std::min(minL, L); }
        for (int n = 1; n <= minL && n <= 5; n++) {
            std::vector<int> pos;
            const std::vector<int> idx = cp_part_tokens(CpGroup{n, 0, n}, lengths, &pos);
            std::vector<int> seen(N, 0);
            cover = cover && (int)idx.size() == N;
            for (int i : idx) {
                if (i < 0 || i >= N || seen[i]++) cover = false;
            }
            // parts of one sample differ by at most one token and are contiguous, in rank order
            for (int L : lengths) {
                int lo = 1 << 30, hi = 0;
                for (int v = 0; v < n; v++) {
                    const int len = cp_part_begin(L, v + 1, n) - cp_part_begin(L, v, n);
                    lo = std::min(lo, len);
                    hi = std::max(hi, len);
                }
                sizes = sizes && hi - lo <= 1 && cp_part_begin(L, 0, n) == 0 && cp_part_begin(L, n, n) == L;
            }
            // cu of each rank sums its parts; all ranks' counts sum to N; the max is cp_max_part_tokens
            int total = 0, most = 0;
            size_t first = 0;
            for (int v = 0; v < n; v++) {
                const std::vector<int> c = cp_part_cu(lengths, v, n);
                cu = cu && c.size() == lengths.size() + 1 && c[0] == 0;
                for (size_t b = 0; cu && b < lengths.size(); b++)
                    cu = c[b + 1] - c[b] == cp_part_begin(lengths[b], v + 1, n) - cp_part_begin(lengths[b], v, n);
                total += c.back();
                most = std::max(most, c.back());
                const std::vector<int> one = cp_part_tokens(CpGroup{n, v, 1}, lengths);
                slice = slice && (int)one.size() == c.back() && first + one.size() <= idx.size() &&
                        std::equal(one.begin(), one.end(), idx.begin() + first);
                first += one.size();
            }
            cu = cu && total == N && cp_max_part_tokens(lengths, n) == most;
            // positions: index inside the sample
            std::vector<int> start(lengths.size() + 1, 0);
            for (size_t b = 0; b < lengths.size(); b++) start[b + 1] = start[b] + lengths[b];
            for (size_t i = 0; pos_ok && i < idx.size(); i++) {
                const int b = (int)(std::upper_bound(start.begin(), start.end(), idx[i]) - start.begin()) - 1;
                pos_ok = pos.size() == idx.size() && pos[i] == idx[i] - start[b];
            }
        }
    }
    check(cover, "cp_part_tokens covers every token once", cover ? "" : "expected a permutation of the packed tokens");
    check(sizes, "cp_part_begin: parts of a sample differ by at most one token", sizes ? "" : "expected sizes within one, 0 .. L");
    check(cu, "cp_part_cu sums each rank's parts; ranks sum to all tokens; cp_max_part_tokens their max",
          cu ? "" : "expected consistent counts");
    check(slice, "cp_part_tokens of one rank is that rank's slice of the group's", slice ? "" : "expected the same tokens");
    check(pos_ok, "cp_part_tokens positions are indices inside the sample", pos_ok ? "" : "expected idx - sample start");
    // by hand: {7, 13, 5} over 3 ranks: parts 2 2 3, 4 4 5, 1 2 2: ranks hold 7, 8, 10 tokens
    const std::vector<int> l = {7, 13, 5};
    const std::vector<int> cu2 = cp_part_cu(l, 2, 3);
    const bool hand = cp_part_cu(l, 0, 3).back() == 7 && cp_part_cu(l, 1, 3).back() == 8 && cu2 == std::vector<int>{0, 3, 8, 10} &&
                      cp_max_part_tokens(l, 3) == 10;
    check(hand, "cp_part_cu / cp_max_part_tokens of {7, 13, 5} over 3 ranks by hand",
          hand ? "7, 8, 10 tokens; rank 2 cu 0 3 8 10" : "expected 7, 8, 10 tokens, rank 2 cu 0 3 8 10, max 10");
}

static void test_groups() {
    const CpGroup one = cp_group(4, 0, 1), mid = cp_group(4, 6, 8);
    const bool ok = one.n == 4 && one.first == 0 && one.local == 4 && one.on() && mid.first == 2 && mid.local == 1 &&
                    cp_dp_rank(mid, 6, 8) == 1 && cp_dp_world(mid, 8) == 2 && cp_dp_rank(one, 0, 1) == 0 &&
                    cp_dp_world(one, 1) == 1 && !cp_group(1, 3, 4).on();
    check(ok, "cp_group: one process holds the whole group; rank 6 of 8 with --cp 4 is CP rank 2 of DP rank 1 of 2",
          ok ? "" : "expected first/local 0/4, then 2/1, DP rank 1 of 2");
}

static void test_flags() {
    check_fails_one_line("--cp 0", {"--check-world", "0", "1"}, "--cp");
    check_fails_one_line("--cp 4 with 6 ranks", {"--check-world", "4", "6"}, "--cp 4");
    check_fails_one_line("--cp 3 with T 20 (not a multiple of 6)", {"--check-causal", "3", "20"}, "--cp 3");
    check_fails_one_line("--cp 3 with a sample of 2 tokens", {"--check-parts", "3", "7", "2", "5"}, "--cp 3");
    const Child good = run_child({"--check-world", "4", "8"}), good_t = run_child({"--check-causal", "3", "24"}),
                good_p = run_child({"--check-parts", "3", "3", "9"});
    const bool ok = good.exited && good.code == 0 && good_t.exited && good_t.code == 0 && good_p.exited && good_p.code == 0;
    check(ok, "--cp 4 with 8 ranks, T 24 with --cp 3, samples of 3 and 9 tokens with --cp 3 accepted",
          ok ? "" : "expected exit 0 for each");
}

// ------------------------------------------------------------------ dense reference

// Finite differences of L = sum(dout * out) against the dense backward, fixed layout, causal, GQA.
static void test_dense_gradients() {
    Rng rng;
    rng_seed(&rng, 7);
    const CpuAttnShape s = {1, 6, 2, 1, 8, true};
    const size_t nq = (size_t)s.B * s.T * s.nh * s.hd, nkv = (size_t)s.B * s.T * s.nkv * s.hd;
    std::vector<float> q = random_uniform(nq, &rng), k = random_uniform(nkv, &rng), v = random_uniform(nkv, &rng),
                       dout = random_uniform(nq, &rng);
    std::vector<float> out(nq), lse((size_t)s.B * s.nh * s.T), dq(nq), dk(nkv), dv(nkv);
    attention_forward_cpu(out.data(), lse.data(), q.data(), k.data(), v.data(), s);
    attention_backward_cpu(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), q.data(), k.data(), v.data(), s);
    auto loss = [&]() {
        std::vector<float> o(nq), l(lse.size());
        attention_forward_cpu(o.data(), l.data(), q.data(), k.data(), v.data(), s);
        double sum = 0.0;
        for (size_t i = 0; i < nq; i++) sum += (double)dout[i] * o[i];
        return sum;
    };
    const float eps = 1e-2f;
    double worst = 0.0;
    auto fd = [&](std::vector<float>& x, const std::vector<float>& grad) {
        for (size_t i = 0; i < x.size(); i++) {
            const float x0 = x[i];
            x[i] = x0 + eps;
            const double lp = loss();
            x[i] = x0 - eps;
            const double lm = loss();
            x[i] = x0;
            worst = std::max(worst, fabs((lp - lm) / (2.0 * eps) - grad[i]));
        }
    };
    fd(q, dq);
    fd(k, dk);
    fd(v, dv);
    // and lse is log(sum(exp)) of the scaled scores: out = softmax V recomputed from it
    double lse_err = 0.0;
    for (int h = 0; h < s.nh; h++)
        for (int t = 0; t < s.T; t++) {
            double sum = 0.0;
            for (int c = 0; c <= t; c++) {
                double d = 0.0;
                for (int e = 0; e < s.hd; e++) d += (double)q[q_index(s, 0, h, t) + e] * k[kv_index(s, 0, h / 2, c) + e];
                sum += exp(d / sqrt((double)s.hd));
            }
            lse_err = std::max(lse_err, fabs(log(sum) - lse[lse_index(s, 0, h, t)]));
        }
    const bool ok = worst <= 2e-3 && lse_err <= 1e-6;
    check(ok, "dense backward vs central differences (B1 T6 nh2 nkv1 hd8 causal), lse vs log-sum-exp",
          strf("max |diff| grad %.2e, lse %.2e%s", worst, lse_err, ok ? "" : ", expected <= 2e-3 and 1e-6"));
}

// The fixed layout (full attention, nkv = nh) and the varlen layout on the same equal-length samples.
static void test_dense_layouts_agree() {
    Rng rng;
    rng_seed(&rng, 11);
    const CpuAttnShape s = {2, 9, 3, 3, 8, false};
    const int C = s.nh * s.hd, N = s.B * s.T;
    const size_t n = (size_t)N * C;
    std::vector<float> q = random_uniform(n, &rng), k = random_uniform(n, &rng), v = random_uniform(n, &rng),
                       dout = random_uniform(n, &rng);
    std::vector<float> out(n), lse((size_t)s.B * s.nh * s.T), dq(n), dk(n), dv(n);
    attention_forward_cpu(out.data(), lse.data(), q.data(), k.data(), v.data(), s);
    attention_backward_cpu(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), q.data(), k.data(), v.data(), s);
    // the same tensors token-major: head h of token (b, t) at q_index
    auto token_major = [&](const std::vector<float>& x) {
        std::vector<float> y(n);
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.nh; h++)
                for (int t = 0; t < s.T; t++)
                    for (int e = 0; e < s.hd; e++) y[((size_t)b * s.T + t) * C + h * s.hd + e] = x[q_index(s, b, h, t) + e];
        return y;
    };
    const std::vector<int> cu = {0, s.T, 2 * s.T};
    const CpuVarlenShape vs = {s.B, s.nh, s.hd, cu.data(), cu.data(), C, C, C};
    const std::vector<float> qt = token_major(q), kt = token_major(k), vt = token_major(v);
    std::vector<float> out2(n), lse2(lse.size()), dq2(n), dk2(n), dv2(n);
    attention_varlen_forward_cpu(out2.data(), lse2.data(), qt.data(), kt.data(), vt.data(), vs);
    attention_varlen_backward_cpu(dq2.data(), dk2.data(), dv2.data(), dout.data(), out2.data(), lse2.data(), qt.data(), kt.data(),
                                  vt.data(), vs);
    // lse: [B, nh, T] vs [nh, B*T]
    std::vector<float> lse_t(lse.size());
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.nh; h++)
            for (int t = 0; t < s.T; t++) lse_t[(size_t)h * N + b * s.T + t] = lse[lse_index(s, b, h, t)];
    const float d = std::max({max_abs_diff(out, out2), max_abs_diff(lse_t, lse2), max_abs_diff(token_major(dq), dq2),
                              max_abs_diff(token_major(dk), dk2), max_abs_diff(token_major(dv), dv2)});
    check(d == 0.0f, "dense fixed layout (full) and varlen layout agree (B2 T9 nh3 hd8)",
          strf("max |diff| %.2e%s", d, d == 0.0f ? "" : ", expected identical"));
}

// ------------------------------------------------------------------ ring vs dense

struct RingDiffs {
    float out, lse, dq, dk, dv;
    float max() const { return std::max({out, lse, dq, dk, dv}); }
};

// Causal GPT attention: dense on [B, T] against the ring over n ranks on the gathered
// tensors, scattered back. steps < n: the ring with its last steps dropped.
static RingDiffs ring_vs_dense_causal(int n, int B, int T, int nh, int nkv, int hd, uint64_t seed, int steps = -1) {
    Rng rng;
    rng_seed(&rng, seed);
    const int r = nh / nkv;
    const CpuAttnShape s = {B, T, nh, nkv, hd, true};
    const size_t nq = (size_t)B * T * nh * hd, nkv_el = (size_t)B * T * nkv * hd, nl = (size_t)B * nh * T;
    const std::vector<float> q = random_uniform(nq, &rng), k = random_uniform(nkv_el, &rng), v = random_uniform(nkv_el, &rng),
                             dout = random_uniform(nq, &rng);
    std::vector<float> out(nq), lse(nl), dq(nq), dk(nkv_el), dv(nkv_el);
    attention_forward_cpu(out.data(), lse.data(), q.data(), k.data(), v.data(), s);
    attention_backward_cpu(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), q.data(), k.data(), v.data(), s);

    const CpGroup g = {n, 0, n};
    std::vector<float> ql(nq), kl(nkv_el), vl(nkv_el), doutl(nq);
    cp_causal_gather(ql.data(), q.data(), g, B, nkv, T, r * hd);
    cp_causal_gather(kl.data(), k.data(), g, B, nkv, T, hd);
    cp_causal_gather(vl.data(), v.data(), g, B, nkv, T, hd);
    cp_causal_gather(doutl.data(), dout.data(), g, B, 1, T, nh * hd);
    std::vector<float> outl(nq), lsel(nl), dql(nq), dkl(nkv_el), dvl(nkv_el);
    ring_attention_causal_forward_cpu(outl.data(), lsel.data(), ql.data(), kl.data(), vl.data(), n, B, T, nh, nkv, hd, steps);
    ring_attention_causal_backward_cpu(dql.data(), dkl.data(), dvl.data(), doutl.data(), outl.data(), lsel.data(), ql.data(),
                                       kl.data(), vl.data(), n, B, T, nh, nkv, hd);
    // back to the dense layouts (poisoned first: every element must be written)
    std::vector<float> out2(nq, NAN), lse2(nl, NAN), dq2(nq, NAN), dk2(nkv_el, NAN), dv2(nkv_el, NAN);
    cp_causal_scatter(out2.data(), outl.data(), g, B, 1, T, nh * hd);
    cp_causal_scatter(lse2.data(), lsel.data(), g, B, nh, T, 1);
    cp_causal_scatter(dq2.data(), dql.data(), g, B, nkv, T, r * hd);
    cp_causal_scatter(dk2.data(), dkl.data(), g, B, nkv, T, hd);
    cp_causal_scatter(dv2.data(), dvl.data(), g, B, nkv, T, hd);
    return {max_abs_diff(out, out2), max_abs_diff(lse, lse2), max_abs_diff(dq, dq2), max_abs_diff(dk, dk2),
            max_abs_diff(dv, dv2)};
}

// Variable-length full attention (self: queries and keys of the same tokens), q, k, v and
// dq, dk, dv in one [N, 3*nh*hd] buffer each (the DiT's fused qkv).
static RingDiffs ring_vs_dense_varlen(int n, const std::vector<int>& lengths, int nh, int hd, uint64_t seed, int steps = -1) {
    Rng rng;
    rng_seed(&rng, seed);
    const int B = (int)lengths.size(), C = nh * hd, S = 3 * C;
    std::vector<int> cu(B + 1, 0);
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + lengths[b];
    const int N = cu[B];
    const std::vector<float> qkv = random_uniform((size_t)N * S, &rng), dout = random_uniform((size_t)N * C, &rng);
    const CpuVarlenShape vs = {B, nh, hd, cu.data(), cu.data(), S, S, S};
    std::vector<float> out((size_t)N * C), lse((size_t)nh * N), dqkv((size_t)N * S, 0.0f);
    attention_varlen_forward_cpu(out.data(), lse.data(), qkv.data(), qkv.data() + C, qkv.data() + 2 * C, vs);
    attention_varlen_backward_cpu(dqkv.data(), dqkv.data() + C, dqkv.data() + 2 * C, dout.data(), out.data(), lse.data(),
                                  qkv.data(), qkv.data() + C, qkv.data() + 2 * C, vs);

    const CpGroup g = {n, 0, n};
    std::vector<float> qkvl((size_t)N * S), doutl((size_t)N * C);
    cp_rows_gather(qkvl.data(), qkv.data(), g, lengths, S);
    cp_rows_gather(doutl.data(), dout.data(), g, lengths, C);
    std::vector<float> outl((size_t)N * C), lsel((size_t)nh * N), dqkvl((size_t)N * S, 0.0f);
    const float* ql = qkvl.data();
    ring_attention_varlen_forward_cpu(outl.data(), lsel.data(), ql, ql + C, ql + 2 * C, lengths, n, nh, hd, S, S, S, steps);
    ring_attention_varlen_backward_cpu(dqkvl.data(), dqkvl.data() + C, dqkvl.data() + 2 * C, doutl.data(), outl.data(),
                                       lsel.data(), ql, ql + C, ql + 2 * C, lengths, n, nh, hd, S, S, S);
    std::vector<float> out2((size_t)N * C, NAN), lse2((size_t)nh * N, NAN), dqkv2((size_t)N * S, NAN);
    cp_rows_scatter(out2.data(), outl.data(), g, lengths, C);
    cp_varlen_lse_scatter(lse2.data(), lsel.data(), g, lengths, nh);
    cp_rows_scatter(dqkv2.data(), dqkvl.data(), g, lengths, S);
    auto part = [&](const std::vector<float>& x, int which) {  // the columns of q, k or v
        std::vector<float> y((size_t)N * C);
        for (int i = 0; i < N; i++) std::copy(&x[(size_t)i * S + which * C], &x[(size_t)i * S + (which + 1) * C], &y[(size_t)i * C]);
        return y;
    };
    return {max_abs_diff(out, out2), max_abs_diff(lse, lse2), max_abs_diff(part(dqkv, 0), part(dqkv2, 0)),
            max_abs_diff(part(dqkv, 1), part(dqkv2, 1)), max_abs_diff(part(dqkv, 2), part(dqkv2, 2))};
}

static std::string diffs_str(const RingDiffs& d) {
    return strf("max |diff| out %.1e lse %.1e dq %.1e dk %.1e dv %.1e", d.out, d.lse, d.dq, d.dk, d.dv);
}

static void test_ring_causal() {
    uint64_t seed = 100;
    for (int n = 1; n <= 4; n++)
        for (int B : {1, 2})
            for (int heads : {0, 1})  // GQA nh 4 / nkv 2, then nh = nkv = 2
                for (int hd : {8, 16})
                    for (int T : {24, 48}) {
                        const int nh = heads == 0 ? 4 : 2, nkv = 2;
                        const RingDiffs d = ring_vs_dense_causal(n, B, T, nh, nkv, hd, seed++);
                        const bool ok = d.max() <= TOL;
                        check(ok, strf("causal ring vs dense: cp %d B%d T%d nh%d nkv%d hd%d", n, B, T, nh, nkv, hd),
                              diffs_str(d) + (ok ? "" : strf(", expected <= %.0e", TOL)));
                    }
}

static void test_ring_varlen() {
    const std::vector<std::vector<int>> batches = {{7, 13, 5}, {3, 4}, {9}};
    uint64_t seed = 500;
    for (int n = 1; n <= 3; n++)
        for (const std::vector<int>& lengths : batches)
            for (int nh : {2, 3})
                for (int hd : {8, 16}) {
                    const RingDiffs d = ring_vs_dense_varlen(n, lengths, nh, hd, seed++);
                    const bool ok = d.max() <= TOL;
                    std::string ls;
                    for (int L : lengths) ls += (ls.empty() ? "" : ",") + std::to_string(L);
                    check(ok, strf("varlen ring vs dense: cp %d lengths {%s} nh%d hd%d, rows of 3*nh*hd", n, ls.c_str(), nh, hd),
                          diffs_str(d) + (ok ? "" : strf(", expected <= %.0e", TOL)));
                }
}

// A ring that drops its last step must disagree with dense attention (this test can fail).
static void test_negative_control() {
    for (int n : {2, 3}) {
        const RingDiffs c = ring_vs_dense_causal(n, 2, 24, 4, 2, 8, 900 + n, n - 1);
        check(c.out > 1e-3f, strf("negative control: causal ring cp %d without its last step", n),
              strf("max |diff| out %.1e%s", c.out, c.out > 1e-3f ? " (differs, as it must)" : ", expected > 1e-3"));
        const RingDiffs v = ring_vs_dense_varlen(n, {7, 13, 5}, 2, 8, 950 + n, n - 1);
        check(v.out > 1e-3f, strf("negative control: varlen ring cp %d without its last step", n),
              strf("max |diff| out %.1e%s", v.out, v.out > 1e-3f ? " (differs, as it must)" : ", expected > 1e-3"));
    }
}

int main(int argc, char** argv) {
    if (argc == 4 && std::string(argv[1]) == "--check-world") {
        cp_check_world(atoi(argv[2]), atoi(argv[3]));
        return 0;
    }
    if (argc == 4 && std::string(argv[1]) == "--check-causal") {
        cp_check_causal(atoi(argv[2]), atoi(argv[3]), "--seq-len");
        return 0;
    }
    if (argc >= 3 && std::string(argv[1]) == "--check-parts") {
        std::vector<int> lengths;
        for (int i = 3; i < argc; i++) lengths.push_back(atoi(argv[i]));
        cp_check_parts(atoi(argv[2]), lengths);
        return 0;
    }
    make_parent_dirs(DIR + "/x");
    child_err_path = DIR + "/child.err";
    test_causal_split();
    test_load_balance();
    test_ring_schedule();
    test_parts();
    test_groups();
    test_flags();
    test_dense_gradients();
    test_dense_layouts_agree();
    test_ring_causal();
    test_ring_varlen();
    test_negative_control();
    printf("%s: context_parallel\n", n_failed ? "FAIL" : "PASS");
    return n_failed ? 1 : 0;
}
