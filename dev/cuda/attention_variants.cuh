// The attention lab of dev/cuda/attention.cu: what no trainer runs, instantiated from the
// templates of llmc/attention:
//   - the sm90 forward's pipelined / overlapped modes (flash_fwd_sm90_modes_kernel, a copy of
//     llmc's flash_fwd_sm90_kernel with them);
//   - the fused mma.sync backward (ordered and atomic dQ sums, and FUSED_RACY, a timing
//     diagnostic that races), slower than the split backward (dev/cuda/NOTES.md);
//   - the tile variants the dispatch table (FlashTiles, llmc/attention/flash_attention.cuh) was
//     chosen from, selected at run time by flash_config (FLASH_TUNE numbering, below), among
//     them the warp-specialized forward without loads (WsSignalOnly: a timing diagnostic,
//     wrong results);
//   - entry points like the API's (lab_forward, lab_backward, lab_varlen_*) that run the
//     variant selected, a backward mechanism chosen directly (set_algo) or, as the trainers do,
//     by policy (set_policy), and fall back to the table's kernels.
// Variants (0 = the table's), for head dims 64, 80 and 128 of the bf16 kernels:
//   fwd  1-5 mma.sync; 11-16 sm90 (14, 15, 16: FWD_PIPE / FWD_OVERLAP); 17-21 warp-specialized
//        with cp.async (20: no ping-pong); 22-23 warp-specialized without loads (diagnostic);
//        24-25 warp-specialized with TMA (hd 64 / 128); 26-27 warp-specialized with TMA in 32-byte
//        swizzled blocks of 16 columns (padded hd 80: the DiT's 72, fixed and varlen layouts; 3 / 4 stages);
//        28 the table's at hd 64 / 128 (24) with WS_HEAVY_FIRST (the grid group by query tile: causal,
//        every group's heavy tiles first); 29 hd 64 with three consumer warpgroups (192 query rows,
//        4 stages, TMA; at hd 128 it is 24, the table's); 30 the heavy tiles first with the tiles of
//        29 at hd 64 and of 28 at hd 128 (what the table would take if both win); 31 the table's at
//        hd 64 with WS_LAZY_RESCALE (a row's running max kept until exceeded by 2^8: the
//        outputs' rescale only where a warp's row max grew that much; at hd 128 the table's own,
//        and 24 the table's before); 32 the table's at hd 64 / 128, persistent (WS_PERSISTENT: a
//        CTA an SM walking the query tiles heavy first, a tile's first loads under the last one's
//        products and output rows)
//   dkdv 1-3 mma.sync split, or (ordered / atomic) fused mma.sync; 4 fused unordered (diagnostic);
//        11-16 sm90 split; 11-21 sm90 atomic (fused); 29 sm90 ordered, the fused kernel
//        (flash_bwd_dkdv_sm90_kernel, DQ_ORDERED; the table's where 32 / 34 do not apply);
//        30-34 sm90 ordered, warp-specialized
//        (flash_bwd_ws_sm90_kernel, llmc/attention/flash_sm90_bwd_ws.cuh: 30 / 31 64 query rows,
//        2 / 3 Q/dO stages, hd up to 80; 32: 128 query rows, 2 stages, hd up to 64, the table's at
//        hd 64; 33 / 34: 30 / 31 with TMA Q/dO loads, padded hd 80, one query head per group, 34
//        the table's there; 35 / 36: 30 / 31 with TMA Q/dO loads at hd 64, fixed layout, any
//        group size dividing 64, dO through a 5-D map); 37: 34 with the query tiles split into
//        chunks (QSPLIT: more CTAs where a group has few K/V tiles, the DiT's cross-attention);
//        38: 30 at hd 128 (64 query rows, two stages, cp.async: 225 KB of shared memory); 39: hd 64
//        with TMA, 128 query rows, two stages, one dQ buffer (BWD_WS_ONE_DQ: the shared memory),
//        the table's at hd 64 (36 before); 40: 38 with TMA (two 64-column blocks), the table's at
//        hd 128 (38 before);
//        22 the fused kernel (flash_bwd_dkdv_sm90_kernel, DQ_PIPE) with the table's sm90_atomic
//        tiles, the atomic backward before the warp-specialized kernel's atomic mode
//        (BWD_WS_ATOMIC, the table's where the ordered one runs that kernel); 23 that mode with
//        the ordered table's tiles before 39 / 40 (36's at hd 64, 38's at hd 128); 24 the table's
//        atomic mode with BWD_WS_HEAVY_FIRST;
//        41 the table's warp-specialized ordered backward (flash_bwd_ws_hd: 39 / 40 / 34 and its
//        query split) with BWD_WS_HEAVY_FIRST (the grid K/V tile by K/V tile over the groups:
//        causal, the long CTAs first); 43 the table's with BWD_WS_LAG_DQ (each step issues the
//        previous step's dQ product: the two consumer warpgroups meet on mbarriers a step
//        apart, not at a barrier each step), and atomic 26 its atomic mode with it (ordered 44
//        and atomic 27-29 were measured and removed: dev/cuda/NOTES.md); 45 the table's with
//        BWD_WS_STMATRIX (dS^T to shared memory with stmatrix), atomic 30 its atomic mode with it
//        (at hd 128 the table's own; 40 the table's before there)
//   dq   1-5 mma.sync; 11-16 sm90
#pragma once
#include "../../llmc/attention/flash_attention.cuh"

namespace flash {

// ---------------------------------------------------------------------------
// The sm90 forward of llmc/attention/flash_sm90.cuh (flash_fwd_sm90_kernel, which is MODE
// FWD_PLAIN of this one) with two pipelined modes that tuning tried (forward variants 14-16;
// the warp-specialized kernel replaced both).
// Forward: CTA = BM = 64 NWG query rows of one group; loops over BN-key tiles.
// Per tile: S = Q K^T (wgmma from shared memory), online softmax in registers,
// O += P V (P from registers, V MN-major). MODE:
//   FWD_PLAIN    S, wait, softmax, P V, wait; two K/V stages.
//   FWD_PIPE     P V is left running while the next tile's barrier, loads and S = Q K^T are
//                issued (waited just before the softmax rescales O); three stages, so the
//                tile it reads is never the one being loaded.
//   FWD_OVERLAP  S of the next tile is issued before the softmax of this one, so the tensor
//                cores compute it while the warpgroup does the exponentials (FlashAttention-3's
//                intra-warpgroup overlap); three stages, loads two tiles ahead.
enum { FWD_PLAIN = 0, FWD_PIPE = 1, FWD_OVERLAP = 2 };
template <int HD, int NWG, int BN, int MODE>
__global__ void __launch_bounds__(NWG * 128) flash_fwd_sm90_modes_kernel(bf16* __restrict__ out, float* __restrict__ lse,
                                                                   const bf16* __restrict__ qp, const bf16* __restrict__ kp,
                                                                   const bf16* __restrict__ vp, const FlashParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BM = 64 * NWG, NT = NWG * 128, KS = HD / 16, NB = BN / 8, DB = HD / 8, LD = HD + 8;
    constexpr int NS = MODE == FWD_PLAIN ? 2 : 3;
    extern __shared__ __align__(128) unsigned char flash_smem[];
    bf16* sQ = reinterpret_cast<bf16*>(flash_smem);  // [BM][HD] core-matrix tiles
    bf16* sK = sQ + BM * HD;                         // [NS][BN][HD]
    bf16* sV = sK + NS * BN * HD;                    // [NS][BN][HD]
    const int wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    FwdTile tile;
    if (!fwd_tile<BM, BN>(tile, p, qp, kp, vp)) return;
    const FlashGroup& G = tile.G;
    const bf16 *Q = tile.Q, *K = tile.K, *V = tile.V;
    const int m0 = tile.m0, ntiles = tile.ntiles, hd = p.hd, T = G.Tk, rows = G.rows;
    auto qrow = [&](int i) { return Q + (size_t)i * p.q_rs; };
    auto krow = [&](int i) { return K + (size_t)i * p.k_rs; };
    auto vrow = [&](int i) { return V + (size_t)i * p.v_rs; };
    auto load_kv = [&](int j) {
        load_tile_cm<BN, HD, NT>(sK + (j % NS) * BN * HD, j * BN, T, hd, krow);
        load_tile_cm<BN, HD, NT>(sV + (j % NS) * BN * HD, j * BN, T, hd, vrow);
    };
    load_tile_cm<BM, HD, NT>(sQ, m0, rows, hd, qrow);
    load_kv(0);
    cp_async_commit();

    const int rowA = m0 + warp * 16 + g, posA = rowA / p.r, posB = (rowA + 8) / p.r, pos_lo = m0 / p.r;
    // the warpgroup's 64 query rows of sQ, K-major
    const uint64_t desc_q = wgmma_desc_kmajor(smem_u32(sQ + wg * 64 * HD), HD);
    float o[DB][4];
#pragma unroll
    for (int d = 0; d < DB; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    // the zeros are written here, not sunk past the first wgmma of the loop (which would make
    // ptxas serialize the products that are in flight while they are written: warning C7515)
    wgmma_fence_operand(o);
    float mA = -INFINITY, mB = -INFINITY, lA = 0.0f, lB = 0.0f;

    // S = Q K^T of tile j into s (issued, committed, not waited). The accumulators are not
    // zeroed: the first k step overwrites them (accumulate = 0), so no ordinary instruction
    // writes a register that an in-flight wgmma uses.
    auto issue_s = [&](float (&s)[NB][4], int j) {
        const uint64_t desc_k = wgmma_desc_kmajor(smem_u32(sK + (j % NS) * BN * HD), HD);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
            Wgmma<BN>::template ss<0, 0>(s, desc_q + wgmma_kstep_kmajor(kk), desc_k + wgmma_kstep_kmajor(kk), kk > 0);
        wgmma_commit();
    };
    // mask and online softmax of tile j's raw scores s (rescales o, which must not be in
    // flight), then O += P V issued and committed (not waited)
    auto softmax_pv = [&](float (&s)[NB][4], int j) {
        const int n0 = j * BN;
        if (n0 + BN > T || (p.causal && n0 + BN - 1 > pos_lo)) mask_keys(s, n0, T, posA, posB, p.causal, tq);
        online_softmax(s, o, mA, mB, lA, lB, p.scale_log2);
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) acc_to_a(pa[kc], s[2 * kc], s[2 * kc + 1]);
        const uint64_t desc_v = wgmma_desc_mnmajor(smem_u32(sV + (j % NS) * BN * HD), HD);
        wgmma_fence_operand(o);
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) Wgmma<HD>::template rs<1>(o, pa[kc], desc_v + wgmma_kstep_mnmajor(kc, HD), 1);
        wgmma_commit();
        wgmma_fence_operand(pa);
    };

    // tile `next` loads (if there is one) while the one before it is waited for and published
    auto prefetch_and_wait = [&](int next) {
        if (next < ntiles) {
            load_kv(next);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        fence_proxy_async();
        __syncthreads();
    };
    if constexpr (MODE != FWD_OVERLAP) {
        for (int j = 0; j < ntiles; j++) {
            prefetch_and_wait(j + 1);
            float s[NB][4];
            issue_s(s, j);
            wgmma_wait<0>();  // PIPE: the previous tile's O += P V too
            wgmma_fence_operand(s);
            wgmma_fence_operand(o);
            softmax_pv(s, j);
            if constexpr (MODE == FWD_PLAIN) {
                wgmma_wait<0>();
                wgmma_fence_operand(o);
            }
            // 2 stages: the next iteration's prefetch overwrites this stage; 3 stages: the one
            // after overwrites the previous tile's, whose O += P V every warpgroup waited for above
            __syncthreads();
        }
    } else {
        prefetch_and_wait(1);
        float s[NB][4];
        issue_s(s, 0);
        wgmma_wait<0>();
        wgmma_fence_operand(s);
        for (int j = 0; j < ntiles; j++) {
            float sn[NB][4];
            if (j + 1 < ntiles) {
                cp_async_wait<0>();  // tile j + 1 (loaded one iteration ago)
                fence_proxy_async();
                // every warpgroup has waited for O += P V of tile j - 1: its stage, (j + 2) % 3, is free
                __syncthreads();
                if (j + 2 < ntiles) {
                    load_kv(j + 2);
                    cp_async_commit();
                }
                issue_s(sn, j + 1);  // runs on the tensor cores during the softmax below
            }
            softmax_pv(s, j);
            wgmma_wait<0>();  // S of tile j + 1 and O += P V of tile j
            wgmma_fence_operand(o);
            if (j + 1 < ntiles) {
                wgmma_fence_operand(sn);
#pragma unroll
                for (int nb = 0; nb < NB; nb++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[nb][e] = sn[nb][e];
            }
        }
    }
    wgmma_wait<0>();
    wgmma_fence_operand(o);
    __syncthreads();  // (OVERLAP: no barrier after the last tile) the tiles are free for the epilogue
    // O / l out through padded [16][LD] rows per warp at the start of shared memory
    fwd_write_rows<HD>(reinterpret_cast<bf16*>(flash_smem) + warp * 16 * LD, o, mA, mB, lA, lB, m0 + warp * 16, p, G, lse, out,
                       lane);
#elif defined(__CUDA_ARCH__)
    __trap();  // no sm_90a code in this build: never launched there
#endif
}

// The warp-specialized forward without loads (variants 22, 23; a timing diagnostic, wrong
// results): the producer signals every K/V stage without copying anything
struct WsSignalOnly {
    template <int BN, int HD, class RowPtr, class Bar>
    static __device__ __forceinline__ void fill(bf16*, int, int, int, RowPtr, Bar bar) { mbarrier_arrive(bar); }
};

struct Sm90FwdModesConfig {
    int nwg, bn, mode;
};
template <int HD, const Sm90FwdModesConfig& C>
static void fwd_sm90_modes_launch(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const FlashParams& p,
                                  cudaStream_t stream) {
    constexpr int NWG = C.nwg, BN = C.bn, MODE = C.mode;
    constexpr int BM = 64 * NWG, NS = MODE == FWD_PLAIN ? 2 : 3;
    constexpr size_t smem = (size_t)(BM + 2 * NS * BN) * HD * sizeof(bf16);
    static_assert((size_t)BM * (HD + 8) * sizeof(bf16) <= smem, "epilogue rows must fit");
    static_assert(smem <= 227 * 1024, "more shared memory than a Hopper block can have");
    static bool init = false;
    if (!init) { set_smem(flash_fwd_sm90_modes_kernel<HD, NWG, BN, MODE>, smem); init = true; }
    dim3 grid(ceil_div(p.max_rows, BM), p.B * p.nkv);
    flash_fwd_sm90_modes_kernel<HD, NWG, BN, MODE><<<grid, NWG * 128, smem, stream>>>(out, lse, q, k, v, p);
    cudaLaunchCheck();
}

// ---------------------------------------------------------------------------
// Backward, fused variant of steps 2 + 3 on mma.sync: the dK/dV kernel (flash_mma.cuh) also
// computes dQ. Each CTA (BN keys of one group) turns its dS^T tile into a dQ partial
// (dQ_i += dS_ij K_j, via dS^T in shared memory) and adds it to an fp32 accumulator in
// global memory, in a FIXED order: the K/V tiles of a group add to a query tile one after
// the other, j = 0, 1, 2, ... (tile 0 stores, the last one writes bf16 dq), ordered by an
// integer counter per (group, query tile) that the previous tile releases. Plain loads and
// stores, no floating-point atomics: bit-identical run to run, and S, P, dP are computed
// once (5 matrix products instead of 7). Forward progress needs CTA j - 1 to be scheduled
// no later than CTA j of the same group (in-order dispatch of the grid, as in FA3's
// deterministic mode); the query tiles run from last to first so that the chain's lag is
// one tile per K/V tile.
// Slower than the split backward, and still slower with the ordering removed (FUSED_RACY, a
// timing diagnostic that races), dev/cuda/NOTES.md: the cost is the dQ phase itself (extra
// barriers, the dS^T round trip through shared memory, the synchronous fp32
// read-modify-write per tile), not the wait chain. No trainer runs it; kept here as the
// starting point for a faster deterministic design on GPUs without wgmma (e.g. the RMW
// handed to a producer/consumer warp so it overlaps the next tile's products).
//
// MODE FUSED_ATOMIC (FlashBwdAlgo::atomic without the sm90 kernels) is FlashAttention-2's backward:
// the same CTA per (K/V tile, group) adds its dQ partial to the fp32 accumulator with
// vector reductions (red.global.add.v2.f32: two adjacent columns per instruction, no
// return value, resolved in L2), no counters and no waiting; the accumulator is zeroed
// before the launch and flash_bwd_dq_convert_kernel writes bf16 dq (times the softmax
// scale) after it. Not deterministic: the fp32 sum order of dQ varies run to run (dK, dV
// are still bit-identical). Each CTA walks the query tiles starting at a different tile
// (rotated by its K/V tile index) so that the CTAs of a group do not all add to the same
// rows at the same time. This mode knows the varlen layout too (all addressing through
// flash_group); the accumulator is in the packed L/D row order ([B, nkv, T*r, hd] =
// dq's own layout for the fixed layout, [nh, Nq, hd] for varlen).
enum { FUSED_ORDERED = 0, FUSED_RACY = 1, FUSED_ATOMIC = 2 };  // FUSED_RACY: timing diagnostic only (races)
template <int HD, int BN, int BQ, bool KV_REGS, int MODE = FUSED_ORDERED>
__global__ void __launch_bounds__(BN * 2) flash_bwd_fused_kernel(bf16* __restrict__ dqp, bf16* __restrict__ dkp,
                                                                 bf16* __restrict__ dvp, float* __restrict__ dq_acc,
                                                                 int* __restrict__ locks, const bf16* __restrict__ qp,
                                                                 const bf16* __restrict__ kp, const bf16* __restrict__ vp,
                                                                 const bf16* __restrict__ dout, const float* __restrict__ Lp,
                                                                 const float* __restrict__ Dp, const FlashParams p) {
    constexpr int NT = BN * 2, NW = BN / 16, LD = HD + 8, KS = HD / 16, NQ = BQ / 8, DB = HD / 8;
    constexpr int LDS = BQ + 8;                  // dS^T tile [BN][BQ + 8]: conflict-free like the others
    constexpr int MT = BQ / 16, NPART = NW / MT;  // dQ phase: warp -> (query m16 tile, share of the 16-col groups)
    constexpr int NC = (KS + NPART - 1) / NPART;  // 16-col groups per warp (at most)
    static_assert(NW % MT == 0, "warps must cover the query tile's m16 tiles");
    extern __shared__ __align__(128) unsigned char flash_smem[];
    bf16* sK = reinterpret_cast<bf16*>(flash_smem);  // [BN][LD]
    bf16* sV = sK + BN * LD;                         // [BN][LD]
    bf16* sQ = sV + BN * LD;                         // [2][BQ][LD]
    bf16* sdO = sQ + 2 * BQ * LD;                    // [2][BQ][LD]
    bf16* sdS = sdO + 2 * BQ * LD;                   // [BN][LDS]
    float* sL = reinterpret_cast<float*>(sdS + BN * LDS);  // [2][BQ]
    float* sD = sL + 2 * BQ;                               // [2][BQ]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int grp = blockIdx.y, jt = blockIdx.x, n0 = jt * BN, nkvt = gridDim.x;
    const FlashGroup G = flash_group(p, grp);
    if (n0 >= G.Tk) return;  // varlen: this sample has fewer keys than the longest (whole CTA)
    const int hd = p.hd, T = G.Tk, rows = G.rows, r = p.r;
    const bf16* Q = qp + G.q0;
    const bf16* K = kp + G.k0;
    const bf16* V = vp + G.v0;
    const float* L = Lp + G.ld0;
    const float* Dg = Dp + G.ld0;
    float* acc_g = dq_acc + G.ld0 * hd;  // packed rows of hd floats (fixed layout: = dq's layout)
    bf16* dq_g = dqp + G.q0;             // ORDERED / RACY only (fixed layout: q_rs = hd)
    const int nit = ceil_div(rows, BQ);
    int* lock_g = locks + (size_t)grp * nit;  // ORDERED / RACY only
    auto qrow = [&](int i) { return Q + (size_t)i * p.q_rs; };
    auto orow = [&](int i) { return dout + G.o0 + (size_t)(i / r) * p.o_ts + (size_t)(i % r) * hd; };
    auto krow = [&](int i) { return K + (size_t)i * p.k_rs; };
    auto vrow = [&](int i) { return V + (size_t)i * p.v_rs; };
    auto load_q_tile = [&](int it, int st) {
        const int m0 = it * BQ;
        load_tile<BQ, HD, NT>(sQ + st * BQ * LD, m0, rows, hd, qrow);
        load_tile<BQ, HD, NT>(sdO + st * BQ * LD, m0, rows, hd, orow);
        for (int i = threadIdx.x; i < BQ; i += NT) {
            const bool ok = m0 + i < rows;
            cp_async4(smem_u32(sL + st * BQ + i), ok ? L + m0 + i : L, ok);
            cp_async4(smem_u32(sD + st * BQ + i), ok ? Dg + m0 + i : Dg, ok);
        }
    };
    // query tiles from last to first; causal: down to the first with positions >= n0.
    // ATOMIC: the same tiles, rotated by jt (any order is fine without the chain)
    const int it_lo = p.causal ? (n0 * r) / BQ : 0, ntiles = nit - it_lo;
    auto tile_of = [&](int step) { return MODE == FUSED_ATOMIC ? it_lo + (step + jt) % ntiles : nit - 1 - step; };
    load_tile<BN, HD, NT>(sK, n0, T, hd, krow);
    load_tile<BN, HD, NT>(sV, n0, T, hd, vrow);
    load_q_tile(tile_of(0), 0);
    cp_async_commit();

    const int keyA = n0 + warp * 16 + g, keyB = keyA + 8;
    const int mt = warp % MT, part = warp / MT;
    float dk[DB][4], dv[DB][4];
#pragma unroll
    for (int d = 0; d < DB; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[d][e] = dv[d][e] = 0.0f;
    uint32_t kf[KV_REGS ? KS : 1][4], vf[KV_REGS ? KS : 1][4];

    for (int step = 0; step < ntiles; step++) {
        const int it = tile_of(step), st = step & 1, m0 = it * BQ;
        if (step + 1 < ntiles) {
            load_q_tile(tile_of(step + 1), st ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if constexpr (KV_REGS) {
            if (step == 0) {
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
        {
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
            if (m0 + BQ > rows || (p.causal && m0 < (n0 + BN - 1) * r)) mask_queries(s, m0, rows, r, keyA, keyB, p.causal, tq);
#pragma unroll
            for (int nq = 0; nq < NQ; nq++) {
                const float2 l2 = *reinterpret_cast<const float2*>(sLs + nq * 8 + 2 * tq);
                const float2 d2 = *reinterpret_cast<const float2*>(sDs + nq * 8 + 2 * tq);
                frag_p_t(s[nq], l2, p.scale_log2);
                frag_ds_t(dp[nq], s[nq], d2);
            }
            bf16* sdS_own = sdS + warp * 16 * LDS;
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) {
                uint32_t ap[4], ads[4];
                acc_to_a(ap, s[2 * kc], s[2 * kc + 1]);
                acc_to_a(ads, dp[2 * kc], dp[2 * kc + 1]);
                // dS^T rows (keys) of this warp, for the dQ product after the barrier
                *reinterpret_cast<uint32_t*>(sdS_own + g * LDS + kc * 16 + 2 * tq) = ads[0];
                *reinterpret_cast<uint32_t*>(sdS_own + (g + 8) * LDS + kc * 16 + 2 * tq) = ads[1];
                *reinterpret_cast<uint32_t*>(sdS_own + g * LDS + kc * 16 + 8 + 2 * tq) = ads[2];
                *reinterpret_cast<uint32_t*>(sdS_own + (g + 8) * LDS + kc * 16 + 8 + 2 * tq) = ads[3];
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
        }
        __syncthreads();  // dS^T complete in shared memory
        // dQ partial of this K/V tile: rows mt*16.. of the query tile, 16-col groups part, part + NPART, ...
        float acc[NC][2][4];
#pragma unroll
        for (int c = 0; c < NC; c++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[c][0][e] = acc[c][1][e] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            uint32_t a[4];  // A = dS (query rows x keys): the [key][query] tile read transposed
            ldsm4t(a, smem_u32(sdS + (kc * 16 + (lane % 8) + (lane / 16) * 8) * LDS + mt * 16 + ((lane / 8) % 2) * 8));
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const int col16 = c * NPART + part;
                if (col16 < KS) {
                    uint32_t bk[4];
                    ldsm4t(bk, bt_addr<LD>(sK, kc * 16, col16 * 16, lane));
                    mma16816(acc[c][0], a, bk[0], bk[1]);
                    mma16816(acc[c][1], a, bk[2], bk[3]);
                }
            }
        }
        const int rA = m0 + mt * 16 + g, rB = rA + 8;
        if constexpr (MODE == FUSED_ATOMIC) {
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const int col16 = c * NPART + part;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int col = col16 * 16 + h * 8 + 2 * tq;
                    if (col16 < KS && col < hd) {
                        if (rA < rows) red_add_f32x2(acc_g + (size_t)rA * hd + col, acc[c][h][0], acc[c][h][1]);
                        if (rB < rows) red_add_f32x2(acc_g + (size_t)rB * hd + col, acc[c][h][2], acc[c][h][3]);
                    }
                }
            }
            // no barrier here: the next step's prefetch overwrites the Q/dO/L/D buffers of the
            // step before this one (every warp finished those reads before this step's dS^T
            // barrier), and sdS is rewritten only after the barrier at the top of the loop
            continue;
        }
        // wait for K/V tile jt - 1 to have added its part to this query tile
        int* lock = lock_g + it;
        if constexpr (MODE == FUSED_ORDERED) {
            if (threadIdx.x == 0) {
                while (ld_acquire(lock) != jt) __nanosleep(64);
            }
            __syncthreads();
        }
        const int last_row = min(m0 + BQ, rows) - 1;
        const int j_last = p.causal ? min(last_row / r / BN, nkvt - 1) : nkvt - 1;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int col16 = c * NPART + part;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int col = col16 * 16 + h * 8 + 2 * tq;
                if (col16 < KS && col < hd) {
#pragma unroll
                    for (int half = 0; half < 2; half++) {
                        const int row = half ? rB : rA;
                        if (row < rows) {
                            float2 v = make_float2(acc[c][h][2 * half], acc[c][h][2 * half + 1]);
                            float2* ap = reinterpret_cast<float2*>(acc_g + (size_t)row * hd + col);
                            if (jt > 0) {
                                const float2 o = __ldcg(ap);
                                v.x += o.x;
                                v.y += o.y;
                            }
                            if (jt == j_last) {
                                *reinterpret_cast<uint32_t*>(dq_g + (size_t)row * hd + col) =
                                    pack_bf16(v.x * p.scale, v.y * p.scale);
                            } else {
                                __stcg(ap, v);
                            }
                        }
                    }
                }
            }
        }
        if constexpr (MODE == FUSED_ORDERED) {
            __threadfence();
            __syncthreads();
            if (threadIdx.x == 0) atomicAdd(lock, 1);  // release: tile jt + 1 may add now
        }
    }
    // dK, dV out through this warp's own rows of sK / sV. The dQ phase reads all of sK:
    // wait for every warp before overwriting it.
    __syncthreads();
    bf16* sOk = sK + warp * 16 * LD;
    bf16* sOv = sV + warp * 16 * LD;
    store_rows<HD>(sOk, dk, p.scale, p.scale, lane);
    store_rows<HD>(sOv, dv, 1.0f, 1.0f, lane);
    copy_rows_out<HD>(sOk, n0 + warp * 16, T, hd, lane, [&](int i) { return dkp + G.k0 + (size_t)i * p.k_rs; });
    copy_rows_out<HD>(sOv, n0 + warp * 16, T, hd, lane, [&](int i) { return dvp + G.v0 + (size_t)i * p.v_rs; });
}

// MODE FUSED_ORDERED / FUSED_RACY: fixed layout only; FUSED_ATOMIC: both layouts, dq_acc
// holds Nq * nh * hd floats (zeroed here, then converted to bf16 dq here).
template <int HD, int BN, int BQ, bool KV_REGS, int MODE = FUSED_ORDERED>
static void fused_launch(bf16* dq, bf16* dk, bf16* dv, float* dq_acc, int* locks, const bf16* q, const bf16* k,
                         const bf16* v, const bf16* dout, const float* L, const float* D, const FlashParams& p,
                         cudaStream_t stream) {
    constexpr size_t smem = (size_t)(2 * BN + 4 * BQ) * (HD + 8) * sizeof(bf16) + (size_t)BN * (BQ + 8) * sizeof(bf16) +
                            4 * BQ * sizeof(float);
    static bool init = false;
    if (!init) { set_smem(flash_bwd_fused_kernel<HD, BN, BQ, KV_REGS, MODE>, smem); init = true; }
    if constexpr (MODE == FUSED_ATOMIC) {
        flash_dq_acc_zero(dq_acc, p, stream);
    } else {
        flash_locks_zero(locks, p, BQ, stream);  // (fixed layout only)
    }
    dim3 grid(ceil_div(p.max_Tk, BN), p.B * p.nkv);
    flash_bwd_fused_kernel<HD, BN, BQ, KV_REGS, MODE><<<grid, BN * 2, smem, stream>>>(dq, dk, dv, dq_acc, locks, q, k,
                                                                                     v, dout, L, D, p);
    cudaLaunchCheck();
    if constexpr (MODE == FUSED_ATOMIC) flash_dq_acc_to_bf16(dq, dq_acc, p, stream);
}

}  // namespace flash

struct FlashConfig { int fwd, dkdv, dq; };  // dkdv: variants of the fused kernels too
static FlashConfig flash_config = {0, 0, 0};
// the ordered sm90 backward where flash_config.dkdv is 0 (dev/cuda/attention.cu: ATTN_ORDERED=30
// runs every check and timing of the deterministic backward on variant 30)
static int flash_ordered_variant = 0;
// the atomic sm90 backward where flash_config.dkdv is 0 (ATTN_ATOMIC=22: every check and timing of
// the atomic backward, `--attn-backward fast` among them, on variant 22 where it applies)
static int flash_atomic_variant = 0;
// the forward's variant where flash_config.fwd is 0 (dev/cuda/attention.cu: ATTN_FWD=26 runs every
// check and timing of the forward on variant 26 where it applies, the table's kernels elsewhere)
static int flash_fwd_variant = 0;
#define FLASH_TUNED(HD) (HD == 64 || HD == 80 || HD == 128)

// The variants' tiles (numbering above)
// a forward configuration with more WS_* bits
constexpr flash::Sm90FwdWsConfig with_fwd_opt(flash::Sm90FwdWsConfig c, int opt) { return {c.bn, c.ns, c.opt | opt, c.nc}; }
template <int HD>
struct TileVariants {
    static constexpr bool SMALL = HD <= 80;
    // mma.sync forward
    static constexpr flash::MmaFwdConfig fwd1 = {128, 32, 1, true}, fwd2 = {64, 64, 1, true}, fwd3 = {128, 128, 1, true},
                                         fwd4 = {128, 64, 2, HD <= 64}, fwd5 = {128, 32, 2, HD <= 80};
    // sm90 forward
    static constexpr flash::Sm90FwdConfig fwd11 = {1, 64}, fwd12 = {2, 128}, fwd13 = {1, 128};
    static constexpr flash::Sm90FwdModesConfig fwd14 = {2, 64, flash::FWD_PIPE}, fwd15 = {2, 64, flash::FWD_OVERLAP},
                                               fwd16 = {2, 128, flash::FWD_OVERLAP};
    static constexpr flash::Sm90FwdWsConfig fwd17 = {128, 2, 0}, fwd18 = {64, HD <= 80 ? 4 : 3, 0},
                                            fwd19 = {128, HD <= 80 ? 3 : 2, 0},
                                            fwd20 = {128, HD <= 80 ? 3 : 2, flash::WS_NO_PINGPONG},
                                            fwd21 = {HD <= 80 ? 128 : 96, HD <= 80 ? 4 : 3, 0},
                                            fwd22 = {128, HD <= 80 ? 3 : 2, 0},  // with WsSignalOnly
                                            fwd23 = {64, HD <= 80 ? 4 : 3, 0},   // with WsSignalOnly
                                            fwd24 = {128, HD == 64 ? 4 : 2, flash::WS_TMA},
                                            fwd25 = {HD == 64 ? 128 : 96, 3, flash::WS_TMA},
                                            fwd26 = {128, 3, flash::WS_TMA}, fwd27 = {128, 4, flash::WS_TMA},   // HD 80
                                            fwd28 = {128, HD == 64 ? 4 : 2, flash::WS_TMA | flash::WS_HEAVY_FIRST},
                                            fwd29 = {128, HD == 64 ? 4 : 2, flash::WS_TMA, HD == 64 ? 3 : 2},   // (hd 128: 24)
                                            fwd30 = {128, HD == 64 ? 4 : 2, flash::WS_TMA | flash::WS_HEAVY_FIRST, HD == 64 ? 3 : 2},
                                            // the table's (hd 64, 128) with the lazy rescale (hd 128: the table's own), persistent
                                            fwd31 = with_fwd_opt(FlashTiles<HD>::sm90_fwd_ws, flash::WS_LAZY_RESCALE),
                                            fwd32 = with_fwd_opt(FlashTiles<HD>::sm90_fwd_ws, flash::WS_PERSISTENT),
                                            // padded hd 80 with three consumer warpgroups: cp.async with 128 keys a K/V
                                            // tile (S and P in 160 registers beside O's 40: spills a few); the table's own
                                            // beyond one 128-key tile (96 keys: cp.async, TMA; 19: the table's before
                                            // them); the table's TMA one with five K/V stages
                                            fwd33 = {128, 3, 0, 3}, fwd34 = FlashTiles<HD>::sm90_fwd_ws_cp_async,
                                            fwd35 = FlashTiles<HD>::sm90_fwd_ws,
                                            fwd36 = {fwd35.bn, 5, fwd35.opt, fwd35.nc};
    // mma.sync split backward
    static constexpr flash::MmaDkdvConfig dkdv1 = {128, 64, SMALL}, dkdv2 = {128, 32, SMALL}, dkdv3 = {128, 32, true};
    static constexpr flash::MmaDqConfig dq1 = {64, 64, SMALL, 1}, dq2 = {128, 64, SMALL, 1}, dq3 = {128, 64, !SMALL, 1},
                                        dq4 = {128, 32, HD <= 64, 2}, dq5 = {128, 64, false, 2};
    // sm90 split backward
    static constexpr flash::Sm90DkdvConfig dkdv11 = {1, 64, false, flash::DQ_NONE, 0}, dkdv12 = {2, 32, false, flash::DQ_NONE, 0},
                                           dkdv13 = {1, 128, false, flash::DQ_NONE, 0}, dkdv14 = {2, 64, true, flash::DQ_NONE, 0},
                                           dkdv15 = {1, 64, true, flash::DQ_NONE, 0}, dkdv16 = {2, 32, true, flash::DQ_NONE, 0};
    static constexpr flash::Sm90DqConfig dq11 = {1, 64, false}, dq12 = {2, 128, false}, dq13 = {1, 128, false},
                                         dq14 = {2, 64, true}, dq15 = {1, 64, true}, dq16 = {1, 128, true};
    // sm90 atomic (fused) backward; 14, 18, 19, 20 (128 query rows per tile): registers for it up to hd 80
    static constexpr flash::Sm90DkdvConfig atomic11 = {1, 64, false, flash::DQ_SYNC, 0},
                                           atomic12 = {2, 64, false, flash::DQ_SYNC, 0},
                                           atomic13 = {1, 64, false, flash::DQ_PIPE, 0},
                                           atomic14 = {2, 128, false, flash::DQ_PIPE, 0},
                                           atomic15 = {2, 64, false, flash::DQ_PIPE, flash::DQ_RED4},
                                           atomic16 = {2, 64, false, flash::DQ_PIPE, flash::DQ_NS3},
                                           atomic17 = {2, 64, false, flash::DQ_PIPE, flash::DQ_RED4 | flash::DQ_NS3},
                                           atomic18 = {2, 128, false, flash::DQ_PIPE, flash::DQ_NS3},
                                           atomic19 = {2, 128, false, flash::DQ_PIPE, flash::DQ_RED4},
                                           // the partials through shared memory and bulk reductions (DQ_BULK)
                                           atomic20 = {2, 128, false, flash::DQ_PIPE, flash::DQ_BULK | (HD <= 64 ? flash::DQ_NS3 : 0)},
                                           atomic21 = {2, 64, false, flash::DQ_PIPE, flash::DQ_BULK};
};

template <int HD>
static void tuned_fwd_hd(floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v, const FlashParams& p,
                         cudaStream_t st) {
    if constexpr (FLASH_TUNED(HD)) {
        using V = TileVariants<HD>;
        const int fv = flash_config.fwd ? flash_config.fwd : flash_fwd_variant;
        switch (fv) {
            case 1: flash::fwd_launch<HD, V::fwd1>(out, lse, q, k, v, p, st); return;
            case 2: flash::fwd_launch<HD, V::fwd2>(out, lse, q, k, v, p, st); return;
            case 3: flash::fwd_launch<HD, V::fwd3>(out, lse, q, k, v, p, st); return;
            case 4: flash::fwd_launch<HD, V::fwd4>(out, lse, q, k, v, p, st); return;
            case 5: flash::fwd_launch<HD, V::fwd5>(out, lse, q, k, v, p, st); return;
            default: break;
        }
        if (flash_sm90_active()) {
            switch (fv) {
                case 11: flash::fwd_sm90_launch<HD, V::fwd11>(out, lse, q, k, v, p, st); return;
                case 12: flash::fwd_sm90_launch<HD, V::fwd12>(out, lse, q, k, v, p, st); return;
                case 13: flash::fwd_sm90_launch<HD, V::fwd13>(out, lse, q, k, v, p, st); return;
                case 14: flash::fwd_sm90_modes_launch<HD, V::fwd14>(out, lse, q, k, v, p, st); return;
                case 15: flash::fwd_sm90_modes_launch<HD, V::fwd15>(out, lse, q, k, v, p, st); return;
                case 16: flash::fwd_sm90_modes_launch<HD, V::fwd16>(out, lse, q, k, v, p, st); return;
                case 17: flash::fwd_sm90_ws_launch<HD, V::fwd17>(out, lse, q, k, v, p, st); return;
                case 18: flash::fwd_sm90_ws_launch<HD, V::fwd18>(out, lse, q, k, v, p, st); return;
                case 19: flash::fwd_sm90_ws_launch<HD, V::fwd19>(out, lse, q, k, v, p, st); return;
                case 20: flash::fwd_sm90_ws_launch<HD, V::fwd20>(out, lse, q, k, v, p, st); return;
                case 21: flash::fwd_sm90_ws_launch<HD, V::fwd21>(out, lse, q, k, v, p, st); return;
                case 22: flash::fwd_sm90_ws_launch<HD, V::fwd22, flash::WsSignalOnly>(out, lse, q, k, v, p, st); return;
                case 23: flash::fwd_sm90_ws_launch<HD, V::fwd23, flash::WsSignalOnly>(out, lse, q, k, v, p, st); return;
                case 24:
                case 25:
                case 28:
                case 29:
                case 30:
                case 31:
                case 32:
                    if constexpr (HD % 64 == 0) {
                        if (flash::fwd_tma_ok<HD>(q, k, v, p)) {
                            if (fv == 24) flash::fwd_sm90_ws_launch<HD, V::fwd24>(out, lse, q, k, v, p, st);
                            else if (fv == 25) flash::fwd_sm90_ws_launch<HD, V::fwd25>(out, lse, q, k, v, p, st);
                            else if (fv == 28) flash::fwd_sm90_ws_launch<HD, V::fwd28>(out, lse, q, k, v, p, st);
                            else if (fv == 29) flash::fwd_sm90_ws_launch<HD, V::fwd29>(out, lse, q, k, v, p, st);
                            else if (fv == 31) flash::fwd_sm90_ws_launch<HD, V::fwd31>(out, lse, q, k, v, p, st);
                            else if (fv == 32) flash::fwd_sm90_ws_launch<HD, V::fwd32>(out, lse, q, k, v, p, st);
                            else flash::fwd_sm90_ws_launch<HD, V::fwd30>(out, lse, q, k, v, p, st);
                            return;
                        }
                    }
                    break;
                case 26:
                case 27:
                case 35:
                case 36:
                    if constexpr (HD == 80) {
                        if (!p.pos && flash::fwd_tma_ok<HD>(q, k, v, p)) {
                            if (fv == 26) flash::fwd_sm90_ws_launch<HD, V::fwd26>(out, lse, q, k, v, p, st);
                            else if (fv == 27) flash::fwd_sm90_ws_launch<HD, V::fwd27>(out, lse, q, k, v, p, st);
                            else if (fv == 35) flash::fwd_sm90_ws_launch<HD, V::fwd35>(out, lse, q, k, v, p, st);
                            else flash::fwd_sm90_ws_launch<HD, V::fwd36>(out, lse, q, k, v, p, st);
                            return;
                        }
                    }
                    break;
                case 33:
                case 34:
                    if constexpr (HD == 80) {
                        if (!p.pos) {
                            if (fv == 33) flash::fwd_sm90_ws_launch<HD, V::fwd33>(out, lse, q, k, v, p, st);
                            else flash::fwd_sm90_ws_launch<HD, V::fwd34>(out, lse, q, k, v, p, st);
                            return;
                        }
                    }
                    break;
                default: break;
            }
        }
    }
    flash_fwd_hd<HD>(out, lse, q, k, v, p, st);
}

// atomic variants 22 / 23 (the numbering above); false where neither applies
template <int HD>
static bool bwd_atomic_lab(int av, floatX* dq, floatX* dk, floatX* dv, float* dq_acc, const floatX* q, const floatX* k,
                           const floatX* v, const floatX* dout, const float* L, const float* D, const FlashParams& p,
                           cudaStream_t st) {
    using namespace flash;
    if (av == 22) {
        dkdv_sm90_launch<HD, FlashTiles<HD>::sm90_atomic>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc);
        return true;
    }
    constexpr int A = BWD_WS_ATOMIC;
    if constexpr (HD == 64) {
        if (bwd_ws_tma_ok<HD>(q, dout, p)) {
            bwd_ws_sm90_launch<HD, 64, 3, true, false, A>(dq, dk, dv, dq_acc, nullptr, q, k, v, dout, L, D, p, st);
            return true;
        }
    }
    if constexpr (HD == 128) {
        bwd_ws_sm90_launch<HD, 64, 2, false, false, A>(dq, dk, dv, dq_acc, nullptr, q, k, v, dout, L, D, p, st);
        return true;
    }
    return false;
}

template <int HD>
static void tuned_bwd_hd(FlashBwdAlgo algo, floatX* dq, floatX* dk, floatX* dv, const FlashBwdScratch& w, const floatX* q,
                         const floatX* k, const floatX* v, const floatX* dout, const FlashParams& p, cudaStream_t st) {
    using T = FlashTiles<HD>;
    using V = TileVariants<HD>;
    constexpr bool SMALL = HD <= 80;  // fragments of the resident tiles fit in registers
    constexpr bool TUNED = FLASH_TUNED(HD);
    const float *L = w.L, *D = w.D;
    float* dq_acc = w.dq_acc;
    int* locks = w.locks;
    const bool sm90 = flash_sm90_active();
    const int dkdv = flash_config.dkdv, dqv = flash_config.dq;
    // (the variants are instantiated only at the tuned head dims: if constexpr (TUNED))
    if (algo == FlashBwdAlgo::ordered && sm90) {  // the table's fused sm90 kernel, or the warp-specialized one
        if (!p.pos && (dkdv ? dkdv : flash_ordered_variant) == 41 &&
            flash_bwd_ws_hd<HD, flash::BWD_WS_HEAVY_FIRST>(dq, dk, dv, w, q, k, v, dout, p, st))
            return;
        if (!p.pos && (dkdv ? dkdv : flash_ordered_variant) == 43 &&
            flash_bwd_ws_hd<HD, flash::BWD_WS_LAG_DQ>(dq, dk, dv, w, q, k, v, dout, p, st))
            return;
        if (!p.pos && (dkdv ? dkdv : flash_ordered_variant) == 45 &&
            flash_bwd_ws_hd<HD, flash::BWD_WS_STMATRIX>(dq, dk, dv, w, q, k, v, dout, p, st))
            return;
        if constexpr (HD == 128) {
            const int ov = dkdv ? dkdv : flash_ordered_variant;
            if (!p.pos && ov == 38) {
                flash::bwd_ws_sm90_launch<HD, 64, 2>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                return;
            }
            if (!p.pos && ov == 40 && flash::bwd_ws_tma_ok<128>(q, dout, p)) {
                flash::bwd_ws_sm90_launch<HD, 64, 2, true>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                return;
            }
        }
        if constexpr (TUNED && HD <= 80) {
            const int ov = dkdv ? dkdv : flash_ordered_variant;   // (packed rows: the table's mma.sync variant)
            if (!p.pos && ov == 29) {   // the fused kernel, where the table now takes the warp-specialized one
                flash::dkdv_sm90_launch<HD, FlashTiles<HD>::sm90_ordered>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc, locks);
                return;
            }
            if (!p.pos && ov == 30) {
                flash::bwd_ws_sm90_launch<HD, 64, 2>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                return;
            }
            if (!p.pos && ov == 31) {
                flash::bwd_ws_sm90_launch<HD, 64, 3>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                return;
            }
            if constexpr (HD <= 64) {
                if (!p.pos && ov == 32) {
                    flash::bwd_ws_sm90_launch<HD, 128, 2>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                    return;
                }
            }
            if constexpr (HD == 64) {
                if (!p.pos && (ov == 35 || ov == 36) && flash::bwd_ws_tma_ok<64>(q, dout, p)) {
                    if (ov == 35) flash::bwd_ws_sm90_launch<HD, 64, 2, true>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                    else flash::bwd_ws_sm90_launch<HD, 64, 3, true>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                    return;
                }
                if (!p.pos && ov == 39 && flash::bwd_ws_tma_ok<64>(q, dout, p)) {
                    flash::bwd_ws_sm90_launch<HD, 128, 2, true, false, flash::BWD_WS_ONE_DQ>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L,
                                                                                          D, p, st);
                    return;
                }
            }
            if constexpr (HD == 80) {
                if (!p.pos && ov == 37 && flash::bwd_ws_tma_ok<80>(q, dout, p)) {   // 34 with the query split
                    // at least two chunks, so that the small checks split too (their own heuristic: one)
                    const int chunks = std::max(2, flash::bwd_ws_query_chunks(p, 64, flash_sm_count(), SIZE_MAX));
                    static float* part = nullptr;
                    static size_t cap = 0;
                    const size_t need = flash::bwd_ws_split_floats(p, chunks);
                    if (need > cap) {
                        if (part) cudaCheck(cudaFree(part));
                        cudaCheck(cudaMalloc(&part, need * sizeof(float)));
                        cap = need;
                    }
                    flash::bwd_ws_sm90_launch<HD, 64, 3, true, true>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st, part, chunks);
                    return;
                }
                if (!p.pos && (ov == 33 || ov == 34) && flash::bwd_ws_tma_ok<80>(q, dout, p)) {
                    if (ov == 33) flash::bwd_ws_sm90_launch<HD, 64, 2, true>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                    else flash::bwd_ws_sm90_launch<HD, 64, 3, true>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
                    return;
                }
            }
        }
        flash_bwd_hd<HD>(algo, dq, dk, dv, w, q, k, v, dout, p, st);
        return;
    }
    if (algo == FlashBwdAlgo::ordered && !p.varlen) {  // the fused mma.sync kernel, fixed layout only
        using namespace flash;
        if constexpr (TUNED) {
            switch (dkdv) {
                case 1: fused_launch<HD, 64, 64, SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 2: fused_launch<HD, 128, 32, SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 3: fused_launch<HD, 128, 64, !SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 4: fused_launch<HD, 128, 64, SMALL, FUSED_RACY>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                default: break;
            }
        }
        fused_launch<HD, 128, 64, SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
        return;
    }
    if (algo == FlashBwdAlgo::atomic && sm90) {
        if constexpr (TUNED) {
            const int av = dkdv ? dkdv : flash_atomic_variant;
            if (!p.pos && (av == 22 || av == 23) && bwd_atomic_lab<HD>(av, dq, dk, dv, dq_acc, q, k, v, dout, L, D, p, st)) return;
            if (!p.pos && av == 24 && flash_bwd_ws_hd<HD, flash::BWD_WS_ATOMIC | flash::BWD_WS_HEAVY_FIRST>(dq, dk, dv, w, q, k, v, dout, p, st))
                return;
            if (!p.pos && av == 26 && flash_bwd_ws_hd<HD, flash::BWD_WS_ATOMIC | flash::BWD_WS_LAG_DQ>(dq, dk, dv, w, q, k, v, dout, p, st))
                return;
            if (!p.pos && av == 30 && flash_bwd_ws_hd<HD, flash::BWD_WS_ATOMIC | flash::BWD_WS_STMATRIX>(dq, dk, dv, w, q, k, v, dout, p, st))
                return;
            switch (dkdv) {
                case 11: flash::dkdv_sm90_launch<HD, V::atomic11>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 12: flash::dkdv_sm90_launch<HD, V::atomic12>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 13: flash::dkdv_sm90_launch<HD, V::atomic13>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 15: flash::dkdv_sm90_launch<HD, V::atomic15>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 16: flash::dkdv_sm90_launch<HD, V::atomic16>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 17: flash::dkdv_sm90_launch<HD, V::atomic17>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 21: flash::dkdv_sm90_launch<HD, V::atomic21>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                default: break;
            }
            if constexpr (HD <= 80) {
                switch (dkdv) {
                    case 14: flash::dkdv_sm90_launch<HD, V::atomic14>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                    case 18: flash::dkdv_sm90_launch<HD, V::atomic18>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                    case 19: flash::dkdv_sm90_launch<HD, V::atomic19>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                    case 20: flash::dkdv_sm90_launch<HD, V::atomic20>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                    default: break;
                }
            }
        }
        flash_bwd_hd<HD>(algo, dq, dk, dv, w, q, k, v, dout, p, st);
        return;
    }
    if (algo == FlashBwdAlgo::atomic) {  // the fused mma.sync kernel, both layouts
        using namespace flash;
        constexpr int A = FUSED_ATOMIC;
        if constexpr (TUNED) {
            switch (dkdv) {
                case 1: fused_launch<HD, 64, 64, SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 2: fused_launch<HD, 128, 32, SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 3: fused_launch<HD, 128, 64, !SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                default: break;
            }
        }
        fused_launch<HD, 128, 64, SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
        return;
    }
    // split (also ordered on mma.sync with the varlen layout: no fused mma.sync kernel for it)
    if (sm90 && (T::sm90_split || flash_settings.family == FlashFamily::sm90)) {
        bool done = false;
        if constexpr (TUNED) {
            done = true;
            switch (dkdv) {
                case 11: flash::dkdv_sm90_launch<HD, V::dkdv11>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 12: flash::dkdv_sm90_launch<HD, V::dkdv12>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 13: flash::dkdv_sm90_launch<HD, V::dkdv13>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 14: flash::dkdv_sm90_launch<HD, V::dkdv14>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 15: flash::dkdv_sm90_launch<HD, V::dkdv15>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 16: flash::dkdv_sm90_launch<HD, V::dkdv16>(dk, dv, q, k, v, dout, L, D, p, st); break;
                default: done = false;
            }
        }
        if (!done) flash::dkdv_sm90_launch<HD, T::sm90_dkdv>(dk, dv, q, k, v, dout, L, D, p, st);
        done = false;
        if constexpr (TUNED) {
            done = true;
            switch (dqv) {
                case 11: flash::dq_sm90_launch<HD, V::dq11>(dq, q, k, v, dout, L, D, p, st); break;
                case 12: flash::dq_sm90_launch<HD, V::dq12>(dq, q, k, v, dout, L, D, p, st); break;
                case 13: flash::dq_sm90_launch<HD, V::dq13>(dq, q, k, v, dout, L, D, p, st); break;
                case 14: flash::dq_sm90_launch<HD, V::dq14>(dq, q, k, v, dout, L, D, p, st); break;
                case 15: flash::dq_sm90_launch<HD, V::dq15>(dq, q, k, v, dout, L, D, p, st); break;
                case 16: flash::dq_sm90_launch<HD, V::dq16>(dq, q, k, v, dout, L, D, p, st); break;
                default: done = false;
            }
        }
        if (!done) flash::dq_sm90_launch<HD, T::sm90_dq>(dq, q, k, v, dout, L, D, p, st);
        return;
    }
    bool done = false;
    if constexpr (TUNED) {
        done = true;
        switch (dkdv) {
            case 1: flash::dkdv_launch<HD, V::dkdv1>(dk, dv, q, k, v, dout, L, D, p, st); break;
            case 2: flash::dkdv_launch<HD, V::dkdv2>(dk, dv, q, k, v, dout, L, D, p, st); break;
            case 3: flash::dkdv_launch<HD, V::dkdv3>(dk, dv, q, k, v, dout, L, D, p, st); break;
            default: done = false;
        }
    }
    if (!done) flash::dkdv_launch<HD, T::mma_dkdv>(dk, dv, q, k, v, dout, L, D, p, st);
    done = false;
    if constexpr (TUNED) {
        done = true;
        switch (dqv) {
            case 1: flash::dq_launch<HD, V::dq1>(dq, q, k, v, dout, L, D, p, st); break;
            case 2: flash::dq_launch<HD, V::dq2>(dq, q, k, v, dout, L, D, p, st); break;
            case 3: flash::dq_launch<HD, V::dq3>(dq, q, k, v, dout, L, D, p, st); break;
            case 4: flash::dq_launch<HD, V::dq4>(dq, q, k, v, dout, L, D, p, st); break;
            case 5: flash::dq_launch<HD, V::dq5>(dq, q, k, v, dout, L, D, p, st); break;
            default: done = false;
        }
    }
    if (!done) flash::dq_launch<HD, T::mma_dq>(dq, q, k, v, dout, L, D, p, st);
}

// The backward a check or timing runs: a mechanism set directly (set_algo), or (set_policy) the
// one the trainers' policy picks (flash_bwd_algo; fixed_hd > 0: flash_bwd_algo_fixed, what a
// fixed-layout call at that head dim runs)
static FlashBwdAlgo g_algo = FlashBwdAlgo::split;
static bool g_by_policy = false;
static FlashBwdAlgo lab_algo(int fixed_hd = 0) {
    if (!g_by_policy) return g_algo;
    return fixed_hd > 0 ? flash_bwd_algo_fixed(flash_settings.backward, fixed_hd) : flash_bwd_algo(flash_settings.backward);
}
static void set_algo(FlashBwdAlgo a) { g_algo = a; g_by_policy = false; }
static void set_policy(FlashBwdPolicy p) { flash_settings.backward = p; g_by_policy = true; }
// 0 = mma.sync everywhere, 1 = the table's choice per head dim, 2 = sm90 everywhere (MEGA_FLASH_SM90's values)
static void set_family(int f) { flash_settings.family = static_cast<FlashFamily>(f); }

// The API's entry points, through the variants above
static void lab_forward(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp, const AttnShape& s,
                        cudaStream_t st) {
    flash_attention_check_shape(s);
    const FlashParams p = flash_params(s);
    FLASH_HD_DISPATCH(p.hd, tuned_fwd_hd, out, lse, qp, kp, vp, p, st);
}
static void lab_backward(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* out, const float* lse,
                         const floatX* qp, const floatX* kp, const floatX* vp, float* scratch, const AttnShape& s,
                         cudaStream_t st) {
    flash_attention_check_shape(s);
    const FlashParams p = flash_params(s);
    const FlashBwdScratch w = flash_bwd_scratch(scratch, (size_t)s.B * s.nh * s.T, s.hd);
    flash_bwd_prep(w.L, w.D, out, dout, lse, p, st);
    FLASH_HD_DISPATCH(p.hd, tuned_bwd_hd, lab_algo(s.hd), dqp, dkp, dvp, w, qp, kp, vp, dout, p, st);
}
static void lab_varlen_forward(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp,
                               const VarlenAttnShape& s, cudaStream_t st) {
    flash_attention_varlen_check(s);
    const FlashParams p = flash_params_varlen(s);
    FLASH_HD_DISPATCH(p.hd, tuned_fwd_hd, out, lse, qp, kp, vp, p, st);
}
static void lab_varlen_backward(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* out, const float* lse,
                                const floatX* qp, const floatX* kp, const floatX* vp, float* scratch, const VarlenAttnShape& s,
                                cudaStream_t st, size_t scratch_bytes) {
    flash_attention_varlen_check(s);
    const FlashParams p = flash_params_varlen(s);
    const FlashBwdAlgo algo = lab_algo();
    const size_t need = flash_attention_varlen_scratch_bytes(p.Nq, s.nh, s.hd, s.B, algo);
    if (scratch_bytes < need) fail("lab_varlen_backward: %zu bytes of scratch, %zu needed", scratch_bytes, need);
    const FlashBwdScratch w = flash_bwd_scratch_varlen(scratch, (size_t)p.Nq * s.nh, s.hd, need, scratch_bytes);
    flash_bwd_prep(w.L, w.D, out, dout, lse, p, st);
    FLASH_HD_DISPATCH(p.hd, tuned_bwd_hd, algo, dqp, dkp, dvp, w, qp, kp, vp, dout, p, st);
}
