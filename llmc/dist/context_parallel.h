/*
Context parallelism (CP), host side (no CUDA): how one sample's tokens are split over
the N ranks of a CP group, which blocks of the attention each rank computes at each
step of the ring, and the flag checks. The ring itself (transfers, merging the partial
outputs by their log-sum-exp, the backward) is llmc/attention/ring_attention.cuh;
docs/context_parallel.md has the design.

Every layer but attention is token-local, so a rank runs it on its own tokens only.
Attention over the whole sequence passes K/V blocks around the ring: at step s
(0 .. N-1) rank v holds the K/V of rank (v - s) mod N and attends its queries to them;
the partial outputs are merged by their log-sum-exp.

Causal (the GPT): each row of T tokens is cut into 2N chunks of T / (2N) tokens and
rank v holds chunks v and 2N-1-v (the load-balanced split: every rank gets one early
and one late chunk, so all do the same attention work). A rank's tokens are laid out
chunk-major, [2][B][Tc] (Tc = T / 2N): local chunk a of every row is then one
[B, Tc] batch, so the attention of a query chunk to a key chunk is one call of the
ordinary fixed-layout kernels with T = Tc: full when the key chunk is earlier, causal
when it is the same chunk, skipped when it is later.

Full attention (the DiT): sample b's L_b tokens are cut into N contiguous parts,
part v = [v*L_b/N, (v+1)*L_b/N) (sizes differ by at most one token), and rank v holds
part v of every sample, samples in batch order: the attention of rank v's queries to
rank u's keys is one variable-length call (cu_q from v's parts, cu_k from u's).

One process can hold several ranks of the group (CpGroup::local, the simulated ring: all N
ranks on one GPU, the transfers done as device copies by the same ring code): it lays
their tokens out one rank after another.
*/
#pragma once
#include <algorithm>
#include <vector>
#include "../core/utils.h"

struct CpGroup {
    int n = 1;       // ranks in the CP group (--cp)
    int first = 0;   // CP rank of the first rank this process holds
    int local = 1;   // ranks of the group this process holds: 1 (one process per GPU), or n (simulated on one GPU)
    bool on() const { return n > 1; }
};

// The CP group of process `rank` of `world` for --cp n: consecutive ranks form a group
// (ranks g*n .. g*n+n-1), so the data-parallel rank is rank / n. With one process and
// n > 1 the process holds the whole group (the simulated ring).
static inline CpGroup cp_group(int n, int rank, int world) {
    CpGroup g;
    g.n = n;
    if (world == 1) { g.first = 0; g.local = n; }
    else { g.first = rank % n; g.local = 1; }
    return g;
}

// Data parallelism across CP groups: the loader's rank and world.
static inline int cp_dp_rank(const CpGroup& g, int rank, int world) { return world == 1 ? 0 : rank / g.n; }
static inline int cp_dp_world(const CpGroup& g, int world) { return world == 1 ? 1 : world / g.n; }

// --cp against the world size (before any GPU work): one line, non-zero exit.
static inline void cp_check_world(int n, int world) {
    if (n < 1) fail("flag --cp: expected a positive number of ranks per context-parallel group, got %d", n);
    if (world > 1 && world % n != 0)
        fail("flag --cp %d: the %d ranks of this launch are not a multiple of it (the ranks form groups of --cp)", n, world);
}

// ------------------------------------------------------------------ causal (GPT)

// Global chunk index (of 2N) of local chunk a (0 or 1) of CP rank v.
static inline int cp_chunk(int v, int a, int n) { return a == 0 ? v : 2 * n - 1 - v; }

static inline void cp_check_causal(int n, int T, const char* flag_T) {
    if (n > 1 && (T % (2 * n) != 0))
        fail("flag --cp %d: %s %d must be a multiple of 2 x %d = %d (each row is cut into 2 x --cp chunks)", n, flag_T, T, n, 2 * n);
}

// The global token index (b*T + t of the [B, T] rows) of every token the process holds, in
// its local order: rank by rank (first .. first+local-1), each [2][B][Tc] chunk-major.
// positions (when not null) gets each token's position t in its row (RoPE).
static inline std::vector<int> cp_causal_tokens(const CpGroup& g, int B, int T, std::vector<int>* positions = nullptr) {
    const int n = g.n, Tc = T / (2 * n);
    std::vector<int> idx;
    idx.reserve((size_t)g.local * B * 2 * Tc);
    for (int v = g.first; v < g.first + g.local; v++)
        for (int a = 0; a < 2; a++) {
            const int c = cp_chunk(v, a, n);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Tc; t++) idx.push_back(b * T + c * Tc + t);
        }
    if (positions) {
        positions->resize(idx.size());
        for (size_t i = 0; i < idx.size(); i++) (*positions)[i] = idx[i] % T;
    }
    return idx;
}

// What the query chunk gq (global index) computes against the key chunk gk.
enum CpBlock { CP_SKIP = 0, CP_FULL = 1, CP_CAUSAL = 2 };
static inline CpBlock cp_causal_block(int gq, int gk) { return gk < gq ? CP_FULL : gk == gq ? CP_CAUSAL : CP_SKIP; }

// The rank whose K/V rank v holds at ring step s.
static inline int cp_ring_source(int v, int s, int n) { return ((v - s) % n + n) % n; }

// fn(i, a, u, c, causal) for every block the ranks of g compute at ring step `step`: held rank i's
// (CP rank g.first + i) query chunk a against chunk c of rank u's K/V, the block it holds; causal on
// the diagonal, full below it, the ones above it skipped (cp_causal_block).
template <class F>
static inline void cp_causal_blocks(const CpGroup& g, int step, F fn) {
    for (int i = 0; i < g.local; i++) {
        const int v = g.first + i, u = cp_ring_source(v, step, g.n);
        for (int a = 0; a < 2; a++)
            for (int c = 0; c < 2; c++) {
                const CpBlock kind = cp_causal_block(cp_chunk(v, a, g.n), cp_chunk(u, c, g.n));
                if (kind != CP_SKIP) fn(i, a, u, c, kind == CP_CAUSAL);
            }
    }
}

// ------------------------------------------------------------------ full attention (DiT)

// Part v of n of a sample of L tokens: [cp_part_begin(L, v, n), cp_part_begin(L, v + 1, n)).
static inline int cp_part_begin(int L, int v, int n) { return (int)((long long)L * v / n); }

static inline void cp_check_parts(int n, const std::vector<int>& lengths) {
    if (n <= 1) return;
    for (size_t b = 0; b < lengths.size(); b++)
        if (lengths[b] < n)
            fail("flag --cp %d: sample %zu has %d tokens, fewer than the %d ranks it would be split over", n, b, lengths[b], n);
}

// cu (B+1 cumulative token counts) of CP rank v's parts of the samples of these lengths.
static inline std::vector<int> cp_part_cu(const std::vector<int>& lengths, int v, int n) {
    std::vector<int> cu(lengths.size() + 1, 0);
    for (size_t b = 0; b < lengths.size(); b++)
        cu[b + 1] = cu[b] + cp_part_begin(lengths[b], v + 1, n) - cp_part_begin(lengths[b], v, n);
    return cu;
}

// The global token index (into the samples' tokens packed in batch order) of every token the
// process holds, rank by rank, each rank's parts in sample order; positions (when not null)
// gets each token's index inside its sample.
static inline std::vector<int> cp_part_tokens(const CpGroup& g, const std::vector<int>& lengths, std::vector<int>* positions = nullptr) {
    std::vector<int> start(lengths.size() + 1, 0);
    for (size_t b = 0; b < lengths.size(); b++) start[b + 1] = start[b] + lengths[b];
    std::vector<int> idx;
    if (positions) positions->clear();
    for (int v = g.first; v < g.first + g.local; v++)
        for (size_t b = 0; b < lengths.size(); b++)
            for (int j = cp_part_begin(lengths[b], v, g.n); j < cp_part_begin(lengths[b], v + 1, g.n); j++) {
                idx.push_back(start[b] + j);
                if (positions) positions->push_back(j);
            }
    return idx;
}

// The most tokens any rank of the group holds (receive buffers of the ring are this large).
static inline int cp_max_part_tokens(const std::vector<int>& lengths, int n) {
    int m = 0;
    for (int v = 0; v < n; v++) m = std::max(m, cp_part_cu(lengths, v, n).back());
    return m;
}

// ------------------------------------------------------------------ the ring's memory

// Bytes of the ring's buffers for a process holding `local` ranks of `tokens` query tokens each,
// nh query heads, nkv K/V heads of hd, activations of act_bytes per element:
//   K/V in flight, double-buffered                    local x 2 x 2 x tokens x nkv*hd   activations
//   their gradients in flight (fp32), double-buffered  local x 2 x 2 x tokens x nkv*hd   floats
//   the merged output, then dQ (fp32)                 local x tokens x nh*hd            floats
//   one call's partial output or dQ (rows of q's stride, up to 2*nh*hd: the DiT's), then dK, dV
//                                                       tokens x (2*nh + 2*nkv)*hd       activations
//   one call's partial lse (and the lse a call reads)    2 x tokens x nh                 floats
// (a call covers at most one rank's tokens: the largest, tokens, for the variable-length split)
// plus up to 256 bytes of alignment for each of the 8 buffers cp_ring_init carves.
static inline size_t cp_ring_bytes(int local, size_t tokens, int nh, int nkv, int hd, size_t act_bytes) {
    const size_t kvd = (size_t)nkv * hd, qd = (size_t)nh * hd;
    const size_t per_rank = 4 * tokens * kvd * act_bytes + 4 * tokens * kvd * sizeof(float) + tokens * qd * sizeof(float);
    return (size_t)local * per_rank + tokens * (2 * qd + 2 * kvd) * act_bytes + 2 * tokens * nh * sizeof(float) + 8 * 256;
}
