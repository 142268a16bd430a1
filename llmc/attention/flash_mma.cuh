// The mma.sync kernels (bf16 tensor cores of sm_80 and later): forward, and the split
// backward's dK/dV and dQ kernels (steps 2 and 3 of flash_attention.cuh's backward).
// Fragments come from shared memory by ldmatrix, tiles are loaded with cp.async
// (double-buffered), the online softmax runs in fp32 registers. A warp owns 32 rows
// (forward, dQ: two m16 tiles sharing every K/V fragment) or 16 keys (dK/dV) of the output
// tile. Head dims that are multiples of 8 up to 128 are padded with zeros to a multiple of 16
// inside shared memory (72 -> 80); T may be any length (ragged tiles are masked).
#pragma once
#include "flash_tiles.cuh"

namespace flash {

// The tiles of a launch, named as in the kernels' comments (the dispatch table FlashTiles in
// flash_attention.cuh picks them per head dim).
struct MmaFwdConfig {
    int bm, bn;   // query rows per CTA, keys per K/V tile
    int mw;       // m16 tiles per warp
    bool q_regs;  // Q fragments kept in registers
};
struct MmaDkdvConfig {
    int bn, bq;    // keys per CTA, query rows per tile
    bool kv_regs;  // K and V fragments kept in registers
};
struct MmaDqConfig {
    int bm, bn;     // query rows per CTA, keys per K/V tile
    bool qd_regs;   // Q and dO fragments kept in registers
    int mw;         // m16 tiles per warp
};

// ---------------------------------------------------------------------------
// Forward. CTA: BM query rows of one group, BM / (16 MW) warps, each owning MW m16 tiles
// (MW = 2 shares every K/V fragment between two tiles: half the shared-memory reads per
// MMA); loops over BN-key tiles. Q_REGS: Q fragments stay in registers (else re-read
// from shared memory at every tile, for the large head dims).
template <int HD, int BM, int BN, int MW, bool Q_REGS, bool DOC = false>
__global__ void __launch_bounds__(BM * 2 / MW) flash_fwd_kernel(bf16* __restrict__ out, float* __restrict__ lse,
                                                                const bf16* __restrict__ qp, const bf16* __restrict__ kp,
                                                                const bf16* __restrict__ vp, const FlashParams p) {
    constexpr int NT = BM * 2 / MW, LD = HD + 8, KS = HD / 16, NB = BN / 8, DB = HD / 8, WR = 16 * MW;
    extern __shared__ __align__(128) unsigned char flash_smem[];
    bf16* sQ = reinterpret_cast<bf16*>(flash_smem);
    bf16* sK = sQ + BM * LD;      // [2][BN][LD]
    bf16* sV = sK + 2 * BN * LD;  // [2][BN][LD]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    FwdTile tile;
    if (!fwd_tile<BM, BN>(tile, p, qp, kp, vp)) return;
    const FlashGroup& G = tile.G;
    const bf16 *Q = tile.Q, *K = tile.K, *V = tile.V;
    const int m0 = tile.m0, ntiles = tile.ntiles, hd = p.hd, T = G.Tk, rows = G.rows;
    auto qrow = [&](int i) { return Q + (size_t)i * p.q_rs; };
    auto krow = [&](int i) { return K + (size_t)i * p.k_rs; };
    auto vrow = [&](int i) { return V + (size_t)i * p.v_rs; };
    load_tile<BM, HD, NT>(sQ, m0, rows, hd, qrow);
    load_tile<BN, HD, NT>(sK, 0, T, hd, krow);
    load_tile<BN, HD, NT>(sV, 0, T, hd, vrow);
    cp_async_commit();

    // this lane's rows: per m16 tile mi, A = wrow0 + mi*16 + g (c0, c1) and B = A + 8 (c2, c3)
    const int wrow0 = m0 + warp * WR;
    int posA[MW], posB[MW];
#pragma unroll
    for (int mi = 0; mi < MW; mi++) {
        posA[mi] = (wrow0 + mi * 16 + g) / p.r;
        posB[mi] = (wrow0 + mi * 16 + g + 8) / p.r;
    }
    const int pos_lo = m0 / p.r;
    [[maybe_unused]] int docA[MW], docB[MW];   // DOC: where each row's document starts
    if constexpr (DOC) doc_starts(docA, docB, posA, posB, p, blockIdx.y / p.nkv);
    uint32_t qf[Q_REGS ? MW : 1][Q_REGS ? KS : 1][4];
    float o[MW][DB][4];
#pragma unroll
    for (int mi = 0; mi < MW; mi++)
#pragma unroll
        for (int d = 0; d < DB; d++) o[mi][d][0] = o[mi][d][1] = o[mi][d][2] = o[mi][d][3] = 0.0f;
    float mA[MW], mB[MW], lA[MW], lB[MW];  // running max (base-2 units), partial row sums
#pragma unroll
    for (int mi = 0; mi < MW; mi++) { mA[mi] = mB[mi] = -INFINITY; lA[mi] = lB[mi] = 0.0f; }

    for (int j = 0; j < ntiles; j++) {
        const int st = j & 1, n0 = j * BN;
        if (j + 1 < ntiles) {  // prefetch the next K/V tile into the other stage
            load_tile<BN, HD, NT>(sK + (st ^ 1) * BN * LD, n0 + BN, T, hd, krow);
            load_tile<BN, HD, NT>(sV + (st ^ 1) * BN * LD, n0 + BN, T, hd, vrow);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if constexpr (Q_REGS) {
            if (j == 0) {
#pragma unroll
                for (int mi = 0; mi < MW; mi++)
#pragma unroll
                    for (int kk = 0; kk < KS; kk++) ldsm4(qf[mi][kk], a_addr<LD>(sQ, warp * WR + mi * 16, kk * 16, lane));
            }
        }
        const bf16* sKs = sK + st * BN * LD;
        const bf16* sVs = sV + st * BN * LD;
        // S = Q K^T (raw, unscaled)
        float s[MW][NB][4];
#pragma unroll
        for (int mi = 0; mi < MW; mi++)
#pragma unroll
            for (int nb = 0; nb < NB; nb++) s[mi][nb][0] = s[mi][nb][1] = s[mi][nb][2] = s[mi][nb][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            uint32_t aq[MW][4];
#pragma unroll
            for (int mi = 0; mi < MW; mi++) {
                if constexpr (Q_REGS) {
#pragma unroll
                    for (int e = 0; e < 4; e++) aq[mi][e] = qf[mi][kk][e];
                } else {
                    ldsm4(aq[mi], a_addr<LD>(sQ, warp * WR + mi * 16, kk * 16, lane));
                }
            }
#pragma unroll
            for (int nb2 = 0; nb2 < NB / 2; nb2++) {
                uint32_t bk[4];
                ldsm4(bk, bn_addr<LD>(sKs, nb2 * 16, kk * 16, lane));
#pragma unroll
                for (int mi = 0; mi < MW; mi++) {
                    mma16816(s[mi][2 * nb2], aq[mi], bk[0], bk[1]);
                    mma16816(s[mi][2 * nb2 + 1], aq[mi], bk[2], bk[3]);
                }
            }
        }
        // mask keys past T and (causal) keys after the query position; only boundary tiles pay for it
        if (n0 + BN > T || (p.causal && n0 + BN - 1 > pos_lo)) {
#pragma unroll
            for (int mi = 0; mi < MW; mi++) mask_keys(s[mi], n0, T, posA[mi], posB[mi], p.causal, tq);
        }
        if constexpr (DOC) mask_tiles_before(s, n0, docA, docB, tq);
        // online softmax: new running max, rescale the old sums and outputs
#pragma unroll
        for (int mi = 0; mi < MW; mi++) online_softmax(s[mi], o[mi], mA[mi], mB[mi], lA[mi], lB[mi], p.scale_log2);
        // O += P V: the S accumulators of two adjacent n8 blocks are the A fragment of a k16 step
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            uint32_t a[MW][4];
#pragma unroll
            for (int mi = 0; mi < MW; mi++) acc_to_a(a[mi], s[mi][2 * kc], s[mi][2 * kc + 1]);
#pragma unroll
            for (int d2 = 0; d2 < DB / 2; d2++) {
                uint32_t bv[4];
                ldsm4t(bv, bt_addr<LD>(sVs, kc * 16, d2 * 16, lane));
#pragma unroll
                for (int mi = 0; mi < MW; mi++) {
                    mma16816(o[mi][2 * d2], a[mi], bv[0], bv[1]);
                    mma16816(o[mi][2 * d2 + 1], a[mi], bv[2], bv[3]);
                }
            }
        }
        __syncthreads();  // the next iteration's prefetch overwrites this stage
    }
    // O / l out through this warp's own rows of sQ (only this warp ever read them)
#pragma unroll
    for (int mi = 0; mi < MW; mi++)
        fwd_write_rows<HD>(sQ + (warp * WR + mi * 16) * LD, o[mi], mA[mi], mB[mi], lA[mi], lB[mi], wrow0 + mi * 16, p, G, lse,
                           out, lane);
}

// ---------------------------------------------------------------------------
// Backward step 2: dK, dV. CTA: BN keys (BN / 16 warps, 16 keys each) of one group;
// loops over BQ-row query tiles (all r heads). Per warp, transposed products:
//   S^T = K Q^T, P^T = 2^(S^T * scale_log2 - L), dP^T = V dO^T, dS^T = P^T (dP^T - D),
//   dV += P^T dO, dK += dS^T Q (times scale at the end).
// KV_REGS: keep the warp's K and V fragments in registers (small head dims).
template <int HD, int BN, int BQ, bool KV_REGS, bool DOC = false>
__global__ void __launch_bounds__(BN * 2) flash_bwd_dkdv_kernel(bf16* __restrict__ dkp, bf16* __restrict__ dvp,
                                                                const bf16* __restrict__ qp, const bf16* __restrict__ kp,
                                                                const bf16* __restrict__ vp, const bf16* __restrict__ dout,
                                                                const float* __restrict__ Lp, const float* __restrict__ Dp,
                                                                const FlashParams p) {
    constexpr int NT = BN * 2, LD = HD + 8, KS = HD / 16, NQ = BQ / 8, DB = HD / 8;
    extern __shared__ __align__(128) unsigned char flash_smem[];
    bf16* sK = reinterpret_cast<bf16*>(flash_smem);  // [BN][LD]
    bf16* sV = sK + BN * LD;                         // [BN][LD]
    bf16* sQ = sV + BN * LD;                         // [2][BQ][LD]
    bf16* sdO = sQ + 2 * BQ * LD;                    // [2][BQ][LD]
    float* sL = reinterpret_cast<float*>(sdO + 2 * BQ * LD);  // [2][BQ]
    float* sD = sL + 2 * BQ;                                  // [2][BQ]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int grp = blockIdx.y, n0 = blockIdx.x * BN;
    const FlashGroup G = flash_group(p, grp);
    if (n0 >= G.Tk) return;  // varlen: this sample has fewer keys than the longest
    const int hd = p.hd, T = G.Tk, rows = G.rows, r = p.r;
    const float* L = Lp + G.ld0;
    const float* Dg = Dp + G.ld0;
    const FlashGroupRows R = flash_group_rows(p, G, qp, kp, vp, dout);
    auto load_q_tile = [&](int it, int st) {
        const int m0 = it * BQ;
        load_tile<BQ, HD, NT>(sQ + st * BQ * LD, m0, rows, hd, R.q);
        load_tile<BQ, HD, NT>(sdO + st * BQ * LD, m0, rows, hd, R.o);
        for (int i = threadIdx.x; i < BQ; i += NT) {
            const bool ok = m0 + i < rows;
            cp_async4(smem_u32(sL + st * BQ + i), ok ? L + m0 + i : L, ok);
            cp_async4(smem_u32(sD + st * BQ + i), ok ? Dg + m0 + i : Dg, ok);
        }
    };
    // causal: query rows i with position i / r >= n0 only
    const int it0 = p.causal ? (n0 * r) / BQ : 0, nit = ceil_div(rows, BQ);
    load_tile<BN, HD, NT>(sK, n0, T, hd, R.k);
    load_tile<BN, HD, NT>(sV, n0, T, hd, R.v);
    load_q_tile(it0, 0);
    cp_async_commit();

    const int keyA = n0 + warp * 16 + g, keyB = keyA + 8;
    float dk[DB][4], dv[DB][4];
#pragma unroll
    for (int d = 0; d < DB; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[d][e] = dv[d][e] = 0.0f;
    uint32_t kf[KV_REGS ? KS : 1][4], vf[KV_REGS ? KS : 1][4];

    for (int it = it0; it < nit; it++) {
        const int st = (it - it0) & 1, m0 = it * BQ;
        if (it + 1 < nit) {
            load_q_tile(it + 1, st ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if constexpr (KV_REGS) {
            if (it == it0) {
#pragma unroll
                for (int kk = 0; kk < KS; kk++) {
                    ldsm4(kf[kk], a_addr<LD>(sK, warp * 16, kk * 16, lane));
                    ldsm4(vf[kk], a_addr<LD>(sV, warp * 16, kk * 16, lane));
                }
            }
        }
        const bf16* sQs = sQ + st * BQ * LD;
        const bf16* sdOs = sdO + st * BQ * LD;
        const float* sLs = sL + st * BQ;
        const float* sDs = sD + st * BQ;
        float s[NQ][4], dp[NQ][4];
#pragma unroll
        for (int nq = 0; nq < NQ; nq++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nq][e] = dp[nq][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            uint32_t ak[4], av[4];
            if constexpr (KV_REGS) {
#pragma unroll
                for (int e = 0; e < 4; e++) { ak[e] = kf[kk][e]; av[e] = vf[kk][e]; }
            } else {
                ldsm4(ak, a_addr<LD>(sK, warp * 16, kk * 16, lane));
                ldsm4(av, a_addr<LD>(sV, warp * 16, kk * 16, lane));
            }
#pragma unroll
            for (int n2 = 0; n2 < NQ / 2; n2++) {
                uint32_t bq[4], bo[4];
                ldsm4(bq, bn_addr<LD>(sQs, n2 * 16, kk * 16, lane));
                mma16816(s[2 * n2], ak, bq[0], bq[1]);
                mma16816(s[2 * n2 + 1], ak, bq[2], bq[3]);
                ldsm4(bo, bn_addr<LD>(sdOs, n2 * 16, kk * 16, lane));
                mma16816(dp[2 * n2], av, bo[0], bo[1]);
                mma16816(dp[2 * n2 + 1], av, bo[2], bo[3]);
            }
        }
        // mask: query rows past the end, and (causal) queries before the key
        if (m0 + BQ > rows || (p.causal && m0 < (n0 + BN - 1) * r)) mask_queries(s, m0, rows, r, keyA, keyB, p.causal, tq);
        if constexpr (DOC) mask_queries_before(s, m0, rows, r, keyA, keyB, p, grp / p.nkv, tq);
        // P^T and dS^T (columns are query rows: their L and D come from shared memory)
#pragma unroll
        for (int nq = 0; nq < NQ; nq++) {
            const float2 l2 = *reinterpret_cast<const float2*>(sLs + nq * 8 + 2 * tq);
            const float2 d2 = *reinterpret_cast<const float2*>(sDs + nq * 8 + 2 * tq);
            frag_p_t(s[nq], l2, p.scale_log2);
            frag_ds_t(dp[nq], s[nq], d2);
        }
        // dV += P^T dO, dK += dS^T Q (k dim = query rows, B operands transposed from [query][hd] tiles)
#pragma unroll
        for (int kc = 0; kc < BQ / 16; kc++) {
            uint32_t ap[4], ads[4];
            acc_to_a(ap, s[2 * kc], s[2 * kc + 1]);
            acc_to_a(ads, dp[2 * kc], dp[2 * kc + 1]);
#pragma unroll
            for (int d2 = 0; d2 < DB / 2; d2++) {
                uint32_t bo[4], bq[4];
                ldsm4t(bo, bt_addr<LD>(sdOs, kc * 16, d2 * 16, lane));
                mma16816(dv[2 * d2], ap, bo[0], bo[1]);
                mma16816(dv[2 * d2 + 1], ap, bo[2], bo[3]);
                ldsm4t(bq, bt_addr<LD>(sQs, kc * 16, d2 * 16, lane));
                mma16816(dk[2 * d2], ads, bq[0], bq[1]);
                mma16816(dk[2 * d2 + 1], ads, bq[2], bq[3]);
            }
        }
        __syncthreads();
    }
    // out through this warp's own rows of sK / sV (only this warp read them)
    bf16* sOk = sK + warp * 16 * LD;
    bf16* sOv = sV + warp * 16 * LD;
    store_rows<HD>(sOk, dk, p.scale, p.scale, lane);
    store_rows<HD>(sOv, dv, 1.0f, 1.0f, lane);
    copy_rows_out<HD>(sOk, n0 + warp * 16, T, hd, lane, [&](int i) { return dkp + G.k0 + (size_t)i * p.k_rs; });
    copy_rows_out<HD>(sOv, n0 + warp * 16, T, hd, lane, [&](int i) { return dvp + G.v0 + (size_t)i * p.v_rs; });
}

// ---------------------------------------------------------------------------
// Backward step 3: dQ. CTA: BM query rows of one group, BM / (16 MW) warps of MW m16
// tiles each (as in the forward); loops over BN-key tiles:
// S = Q K^T, P, dP = dO V^T, dS = P (dP - D), dQ += dS K.
// QD_REGS: keep the warp's Q and dO fragments in registers.
template <int HD, int BM, int BN, bool QD_REGS, int MW, bool DOC = false>
__global__ void __launch_bounds__(BM * 2 / MW) flash_bwd_dq_kernel(bf16* __restrict__ dqp, const bf16* __restrict__ qp,
                                                                   const bf16* __restrict__ kp, const bf16* __restrict__ vp,
                                                                   const bf16* __restrict__ dout, const float* __restrict__ Lp,
                                                                   const float* __restrict__ Dp, const FlashParams p) {
    constexpr int NT = BM * 2 / MW, LD = HD + 8, KS = HD / 16, NB = BN / 8, DB = HD / 8, WR = 16 * MW;
    extern __shared__ __align__(128) unsigned char flash_smem[];
    bf16* sQ = reinterpret_cast<bf16*>(flash_smem);  // [BM][LD]
    bf16* sdO = sQ + BM * LD;                        // [BM][LD]
    bf16* sK = sdO + BM * LD;                        // [2][BN][LD]
    bf16* sV = sK + 2 * BN * LD;                     // [2][BN][LD]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int qt = p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int grp = blockIdx.y, m0 = qt * BM;
    const FlashGroup G = flash_group(p, grp);
    if (m0 >= G.rows) return;  // varlen: this sample is shorter than the longest
    const int hd = p.hd, T = G.Tk, rows = G.rows, r = p.r;
    const FlashGroupRows R = flash_group_rows(p, G, qp, kp, vp, dout);
    const int kv_end = p.causal ? (min(m0 + BM, rows) - 1) / r + 1 : T;
    const int ntiles = ceil_div(kv_end, BN);
    load_tile<BM, HD, NT>(sQ, m0, rows, hd, R.q);
    load_tile<BM, HD, NT>(sdO, m0, rows, hd, R.o);
    load_tile<BN, HD, NT>(sK, 0, T, hd, R.k);
    load_tile<BN, HD, NT>(sV, 0, T, hd, R.v);
    cp_async_commit();

    const int wrow0 = m0 + warp * WR, pos_lo = m0 / r;
    const size_t base = G.ld0;
    int posA[MW], posB[MW];
    float LA[MW], LB[MW], DA[MW], DBv[MW];
#pragma unroll
    for (int mi = 0; mi < MW; mi++) {
        const int rowA = wrow0 + mi * 16 + g, rowB = rowA + 8;
        posA[mi] = rowA / r;
        posB[mi] = rowB / r;
        LA[mi] = rowA < rows ? Lp[base + rowA] : 0.0f;
        LB[mi] = rowB < rows ? Lp[base + rowB] : 0.0f;
        DA[mi] = rowA < rows ? Dp[base + rowA] : 0.0f;
        DBv[mi] = rowB < rows ? Dp[base + rowB] : 0.0f;
    }
    [[maybe_unused]] int docA[MW], docB[MW];   // DOC: where each row's document starts
    if constexpr (DOC) doc_starts(docA, docB, posA, posB, p, grp / p.nkv);
    float dq[MW][DB][4];
#pragma unroll
    for (int mi = 0; mi < MW; mi++)
#pragma unroll
        for (int d = 0; d < DB; d++) dq[mi][d][0] = dq[mi][d][1] = dq[mi][d][2] = dq[mi][d][3] = 0.0f;
    uint32_t qf[QD_REGS ? MW : 1][QD_REGS ? KS : 1][4], of[QD_REGS ? MW : 1][QD_REGS ? KS : 1][4];

    for (int j = 0; j < ntiles; j++) {
        const int st = j & 1, n0 = j * BN;
        if (j + 1 < ntiles) {
            load_tile<BN, HD, NT>(sK + (st ^ 1) * BN * LD, n0 + BN, T, hd, R.k);
            load_tile<BN, HD, NT>(sV + (st ^ 1) * BN * LD, n0 + BN, T, hd, R.v);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if constexpr (QD_REGS) {
            if (j == 0) {
#pragma unroll
                for (int mi = 0; mi < MW; mi++)
#pragma unroll
                    for (int kk = 0; kk < KS; kk++) {
                        ldsm4(qf[mi][kk], a_addr<LD>(sQ, warp * WR + mi * 16, kk * 16, lane));
                        ldsm4(of[mi][kk], a_addr<LD>(sdO, warp * WR + mi * 16, kk * 16, lane));
                    }
            }
        }
        const bf16* sKs = sK + st * BN * LD;
        const bf16* sVs = sV + st * BN * LD;
        float s[MW][NB][4], dp[MW][NB][4];
#pragma unroll
        for (int mi = 0; mi < MW; mi++)
#pragma unroll
            for (int nb = 0; nb < NB; nb++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mi][nb][e] = dp[mi][nb][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            uint32_t aq[MW][4], ao[MW][4];
#pragma unroll
            for (int mi = 0; mi < MW; mi++) {
                if constexpr (QD_REGS) {
#pragma unroll
                    for (int e = 0; e < 4; e++) { aq[mi][e] = qf[mi][kk][e]; ao[mi][e] = of[mi][kk][e]; }
                } else {
                    ldsm4(aq[mi], a_addr<LD>(sQ, warp * WR + mi * 16, kk * 16, lane));
                    ldsm4(ao[mi], a_addr<LD>(sdO, warp * WR + mi * 16, kk * 16, lane));
                }
            }
#pragma unroll
            for (int n2 = 0; n2 < NB / 2; n2++) {
                uint32_t bk[4], bv[4];
                ldsm4(bk, bn_addr<LD>(sKs, n2 * 16, kk * 16, lane));
                ldsm4(bv, bn_addr<LD>(sVs, n2 * 16, kk * 16, lane));
#pragma unroll
                for (int mi = 0; mi < MW; mi++) {
                    mma16816(s[mi][2 * n2], aq[mi], bk[0], bk[1]);
                    mma16816(s[mi][2 * n2 + 1], aq[mi], bk[2], bk[3]);
                    mma16816(dp[mi][2 * n2], ao[mi], bv[0], bv[1]);
                    mma16816(dp[mi][2 * n2 + 1], ao[mi], bv[2], bv[3]);
                }
            }
        }
        if (n0 + BN > T || (p.causal && n0 + BN - 1 > pos_lo)) {
#pragma unroll
            for (int mi = 0; mi < MW; mi++) mask_keys(s[mi], n0, T, posA[mi], posB[mi], p.causal, tq);
        }
        if constexpr (DOC) mask_tiles_before(s, n0, docA, docB, tq);
#pragma unroll
        for (int mi = 0; mi < MW; mi++)
#pragma unroll
            for (int nb = 0; nb < NB; nb++) {
                s[mi][nb][0] = exp2_approx(fmaf(s[mi][nb][0], p.scale_log2, -LA[mi]));
                s[mi][nb][1] = exp2_approx(fmaf(s[mi][nb][1], p.scale_log2, -LA[mi]));
                s[mi][nb][2] = exp2_approx(fmaf(s[mi][nb][2], p.scale_log2, -LB[mi]));
                s[mi][nb][3] = exp2_approx(fmaf(s[mi][nb][3], p.scale_log2, -LB[mi]));
                dp[mi][nb][0] = s[mi][nb][0] * (dp[mi][nb][0] - DA[mi]);
                dp[mi][nb][1] = s[mi][nb][1] * (dp[mi][nb][1] - DA[mi]);
                dp[mi][nb][2] = s[mi][nb][2] * (dp[mi][nb][2] - DBv[mi]);
                dp[mi][nb][3] = s[mi][nb][3] * (dp[mi][nb][3] - DBv[mi]);
            }
        // dQ += dS K (k dim = keys; K tile [key][hd] read transposed)
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            uint32_t a[MW][4];
#pragma unroll
            for (int mi = 0; mi < MW; mi++) acc_to_a(a[mi], dp[mi][2 * kc], dp[mi][2 * kc + 1]);
#pragma unroll
            for (int d2 = 0; d2 < DB / 2; d2++) {
                uint32_t bk[4];
                ldsm4t(bk, bt_addr<LD>(sKs, kc * 16, d2 * 16, lane));
#pragma unroll
                for (int mi = 0; mi < MW; mi++) {
                    mma16816(dq[mi][2 * d2], a[mi], bk[0], bk[1]);
                    mma16816(dq[mi][2 * d2 + 1], a[mi], bk[2], bk[3]);
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int mi = 0; mi < MW; mi++) {
        bf16* sO = sQ + (warp * WR + mi * 16) * LD;
        store_rows<HD>(sO, dq[mi], p.scale, p.scale, lane);
        copy_rows_out<HD>(sO, wrow0 + mi * 16, rows, hd, lane, [&](int i) { return dqp + G.q0 + (size_t)i * p.q_rs; });
    }
}

// ---------------------------------------------------------------------------
// Launchers
// DOC: the packed-rows variant (FlashParams::pos)
template <int HD, const MmaFwdConfig& C, bool DOC = false>
static void fwd_launch(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const FlashParams& p,
                       cudaStream_t stream) {
    constexpr int BM = C.bm, BN = C.bn, MW = C.mw;
    constexpr bool Q_REGS = C.q_regs;
    constexpr size_t smem = (size_t)(BM + 4 * BN) * (HD + 8) * sizeof(bf16);
    static bool init = false;
    if (!init) { set_smem(flash_fwd_kernel<HD, BM, BN, MW, Q_REGS, DOC>, smem); init = true; }
    dim3 grid(ceil_div(p.max_rows, BM), p.B * p.nkv);
    flash_fwd_kernel<HD, BM, BN, MW, Q_REGS, DOC><<<grid, BM * 2 / MW, smem, stream>>>(out, lse, q, k, v, p);
    cudaLaunchCheck();
}
template <int HD, const MmaDkdvConfig& C, bool DOC = false>
static void dkdv_launch(bf16* dk, bf16* dv, const bf16* q, const bf16* k, const bf16* v, const bf16* dout, const float* L,
                        const float* D, const FlashParams& p, cudaStream_t stream) {
    constexpr int BN = C.bn, BQ = C.bq;
    constexpr bool KV_REGS = C.kv_regs;
    constexpr size_t smem = (size_t)(2 * BN + 4 * BQ) * (HD + 8) * sizeof(bf16) + 4 * BQ * sizeof(float);
    static bool init = false;
    if (!init) { set_smem(flash_bwd_dkdv_kernel<HD, BN, BQ, KV_REGS, DOC>, smem); init = true; }
    dim3 grid(ceil_div(p.max_Tk, BN), p.B * p.nkv);
    flash_bwd_dkdv_kernel<HD, BN, BQ, KV_REGS, DOC><<<grid, BN * 2, smem, stream>>>(dk, dv, q, k, v, dout, L, D, p);
    cudaLaunchCheck();
}
template <int HD, const MmaDqConfig& C, bool DOC = false>
static void dq_launch(bf16* dq, const bf16* q, const bf16* k, const bf16* v, const bf16* dout, const float* L,
                      const float* D, const FlashParams& p, cudaStream_t stream) {
    constexpr int BM = C.bm, BN = C.bn, MW = C.mw;
    constexpr bool QD_REGS = C.qd_regs;
    constexpr size_t smem = (size_t)(2 * BM + 4 * BN) * (HD + 8) * sizeof(bf16);
    static bool init = false;
    if (!init) { set_smem(flash_bwd_dq_kernel<HD, BM, BN, QD_REGS, MW, DOC>, smem); init = true; }
    dim3 grid(ceil_div(p.max_rows, BM), p.B * p.nkv);
    flash_bwd_dq_kernel<HD, BM, BN, QD_REGS, MW, DOC><<<grid, BM * 2 / MW, smem, stream>>>(dq, q, k, v, dout, L, D, p);
    cudaLaunchCheck();
}

}  // namespace flash
