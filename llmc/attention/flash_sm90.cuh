// Hopper (sm_90a) versions of the flash attention kernels: the same tiles, masks, online
// softmax and split backward as the mma.sync kernels of flash_mma.cuh, with every matrix
// product on wgmma, plus the fused backward (the dK/dV kernel with DQ: dQ partials summed
// in a fixed order (DQ_ORDERED, the deterministic default) or with fp32 atomics (DQ_PIPE,
// --attn-backward fast)).
// Why: mma.sync moves each operand fragment through registers with ldmatrix and issues
// 16x8x16 products per warp; wgmma reads both operands of a 64 x N x 16 product per
// warpgroup straight from shared memory (or A from registers: P and dS, which the softmax
// just produced there), so the register file holds only the accumulators and the issue
// slots are free for the softmax. Tiles are stored in the core-matrix layout of
// wgmma.cuh, which serves both orientations: K and V tiles are K-major in S = Q K^T
// and MN-major (transposed by the descriptor) in O = P V and dQ = dS K; no transposes.
// A CTA is NWG warpgroups of 4 warps; warpgroup w owns 64 rows of the output tile (warp
// q of it 16 rows, the same rows and fragment layout an mma.sync warp has, so the mask,
// softmax and epilogue code is that of flash_tiles.cuh: mask_keys, online_softmax, ...).
// Loads: cp.async by all threads, double-buffered (the PIPE variants: three stages); the
// forward's default is the warp-specialized kernel (flash_fwd_sm90_ws_kernel: a producer
// warpgroup loads, with the tensor copy engine (TMA) where the layout allows, two consumer
// warpgroups compute).
// Built only for sm_90a (MEGA_SM90A); elsewhere the kernels are empty and never launched.
// Template options that only dev/cuda/attention.cu's tuning instantiates (WS_NO_PINGPONG,
// PIPE, DQ_SYNC, DQ_BULK: tile and pipeline variants that compute the same results) stay in the
// kernels: they are branches of the same code, compiled out of the kernels the trainers run.
#pragma once
#include <cuda.h>  // CUtensorMap (the tensor copy engine's descriptors; no libcuda link: see tma_encode)
#include "flash_tiles.cuh"
#include "wgmma.cuh"

namespace flash {

// ROWS rows of hd-element rows into a core-matrix tile with HD columns (zero-filled past
// nrows and hd, like load_tile). UNROLL: copies whose addresses are computed ahead (all of
// them by default; the warp-specialized producer, short of registers, takes a few at a time)
template <int ROWS, int HD, int NT, class RowPtr, int UNROLL = (ROWS * HD / 8 + NT - 1) / NT>
__device__ __forceinline__ void load_tile_cm(bf16* s, int row0, int nrows, int hd, RowPtr rowptr) {
    constexpr int N = ROWS * HD / 8;
    const uint32_t base = smem_u32(s);
#pragma unroll UNROLL
    for (int k = 0; k < (N + NT - 1) / NT; k++) {
        const int idx = threadIdx.x + k * NT;
        if (N % NT != 0 && idx >= N) break;
        const int rr = wgmma_chunk_row(idx, HD), c = wgmma_chunk_col(idx, HD), row = row0 + rr;
        const bool ok = row < nrows && c * 8 < hd;
        cp_async16(base + idx * 16, ok ? rowptr(row) + c * 8 : rowptr(0), ok);
    }
}

// ---------------------------------------------------------------------------
// Forward: CTA = BM = 64 NWG query rows of one group; loops over BN-key tiles.
// Per tile: S = Q K^T (wgmma from shared memory), online softmax in registers,
// O += P V (P from registers, V MN-major): S, wait, softmax, P V, wait; two K/V stages. (Where
// the warp-specialized kernel below does not run and FlashFamily::sm90 asks for sm90 kernels;
// its pipelined and overlapped variants are in dev/cuda/attention_variants.cuh.)
template <int HD, int NWG, int BN>
__global__ void __launch_bounds__(NWG * 128) flash_fwd_sm90_kernel(bf16* __restrict__ out, float* __restrict__ lse,
                                                                   const bf16* __restrict__ qp, const bf16* __restrict__ kp,
                                                                   const bf16* __restrict__ vp, const FlashParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BM = 64 * NWG, NT = NWG * 128, KS = HD / 16, NB = BN / 8, DB = HD / 8, LD = HD + 8;
    constexpr int NS = 2;
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
    for (int j = 0; j < ntiles; j++) {
        prefetch_and_wait(j + 1);
        float s[NB][4];
        issue_s(s, j);
        wgmma_wait<0>();
        wgmma_fence_operand(s);
        wgmma_fence_operand(o);
        softmax_pv(s, j);
        wgmma_wait<0>();
        wgmma_fence_operand(o);
        // the next iteration's prefetch overwrites this stage
        __syncthreads();
    }
    wgmma_wait<0>();
    wgmma_fence_operand(o);
    __syncthreads();  // the tiles are free for the epilogue
    // O / l out through padded [16][LD] rows per warp at the start of shared memory
    fwd_write_rows<HD>(reinterpret_cast<bf16*>(flash_smem) + warp * 16 * LD, o, mA, mB, lA, lB, m0 + warp * 16, p, G, lse, out,
                       lane);
#elif defined(__CUDA_ARCH__)
    __trap();  // no sm_90a code in this build: flash_sm90_active() never launches this
#endif
}

// ---------------------------------------------------------------------------
// Forward, warp-specialized (FlashAttention-3's structure): CTA = 1 + NC warpgroups, BM = 64 NC
// query rows of one group. Warpgroup 0 only loads: Q once, then every K/V tile into NS stages with
// cp.async, each tile's arrival signalled on an mbarrier (K full / V full: the copies have
// landed) and a stage reused once every consumer has released it (K free: its S product is
// done; V free: its O += P V is done; K and V apart, so the next K loads while the previous
// tile's P V still runs: with one release for both, the loads had half a tile of lead and the
// kernel waited for them). It gives its
// registers back (setmaxnreg), so the NC consumer warpgroups (64 query rows each) hold
// S, P and O for BN = 128 keys: at hd 128 with NC = 2 (240 registers), at hd 64 also with
// NC = 3 (160: more rows per K/V tile loaded, more warps to hide the softmax behind), and at
// padded hd 80 with NC = 3 for BN = 96 (O's 80 columns leave too few for 128 keys).
// Consumers never meet at a CTA barrier:
//   - within a warpgroup, S of tile j and O += P V of tile j - 1 are issued together and the
//     softmax of tile j runs while O += P V is still on the tensor cores (O is rescaled after
//     it is waited for: online_softmax_scores, then rescale_rows);
//   - between them, turns on named barriers let one warpgroup issue its products while the
//     others do their softmax (consumer 0 issues first; each issue turn ends with an arrive on
//     the next one's barrier; the counts match: the last consumer skips its last arrive).
// Why: in flash_fwd_sm90_kernel all 256 threads load, then meet at __syncthreads every tile,
// so the tensor cores idle during both warpgroups' softmax.
template <int HD, int BN, int NS, int NC = 2>
struct FwdWsSmem {
    static constexpr int BM = 64 * NC, LD = HD + 8;
    static constexpr size_t q = 0, k = q + (size_t)BM * HD * 2, v = k + (size_t)NS * BN * HD * 2,
                            epi = v + (size_t)NS * BN * HD * 2,          // [4 NC warps][16][LD]
        bars = epi + (size_t)4 * NC * 16 * LD * 2,  // Q, K full[NS], V full[NS], K free[NS], V free[NS], Q free
        bytes = bars + (size_t)(2 + 4 * NS) * 8;
};
// OPT bits: WS_TMA loads with the tensor copy engine (one producer thread; hd 64 / 128: 128-byte
// swizzled blocks of 64 columns, fixed layout; hd 80 (72 padded): 32-byte swizzled blocks of 16
// columns, fixed or varlen layout) instead of cp.async by the producer warpgroup (any layout,
// core-matrix tiles); tuning: WS_NO_PINGPONG drops the named-barrier turns, WS_HEAVY_FIRST
// orders the grid (group, query tile) (fwd_tile); WS_LAZY_RESCALE keeps a row's running max
// until it is exceeded by 2^8 (online_softmax_scores' TAU; the table's at hd 128); WS_PERSISTENT
// (with WS_TMA, fixed layout; lab only, not yet measured): one CTA an SM, each taking every
// gridDim.x-th query tile in the heavy-first grid's order, so a tile's first loads (Q, the first
// K/V stages) go out while the previous tile's last products and its output rows are still in
// hand, instead of each CTA starting cold
enum { WS_NO_PINGPONG = 1, WS_TMA = 4, WS_HEAVY_FIRST = 8, WS_LAZY_RESCALE = 16, WS_PERSISTENT = 32 };
// How the cp.async producer fills a K or V stage: its 128 threads copy the tile and each one
// signals the stage's mbarrier when its copies have landed. (dev/cuda/attention_variants.cuh
// times the kernel with a fill that only signals: the forward without loads.)
struct WsCopyStage {
    template <int BN, int HD, class RowPtr, class Bar>
    static __device__ __forceinline__ void fill(bf16* s, int row0, int nrows, int hd, RowPtr rowptr, Bar bar) {
        load_tile_cm<BN, HD, 128, RowPtr, 2>(s, row0, nrows, hd, rowptr);
        cp_async_mbarrier_arrive(bar);
    }
};
// registers a thread of the producer / of a consumer warpgroup, NC consumers: 128 x 24 + 256 x 240
// and 128 x 32 + 384 x 160 fit the 64K of an SM
template <int NC>
struct FwdWsRegs {
    static constexpr int producer = NC == 2 ? 24 : 32, consumer = NC == 2 ? 240 : 160;
};
// The dynamic shared memory's base rounded up to 1024 bytes, where the swizzled tiles the tensor
// copy engine writes must start (the 128-byte swizzle repeats every 1024 bytes, the 32-byte one
// every 256): the launchers request 1024 bytes of slack for it.
__device__ __forceinline__ unsigned char* smem_align_1024(unsigned char* raw) {
    return raw + ((1024 - (smem_u32(raw) & 1023)) & 1023);
}
// The three tensor maps of the TMA variant: fixed layout [groups][rows][hd] tensors (boxes of
// TC columns x BM or BN rows), varlen [tokens][heads][hd] (boxes of TC columns x 1 head x BM or
// BN tokens); TC = 64 (128-byte swizzle) or 16 (32-byte swizzle)
struct FwdTmaMaps {
    CUtensorMap q, k, v;
};
template <int HD, int BN, int NS, int OPT, class Fill = WsCopyStage, int NC = 2>
__global__ void __launch_bounds__(128 * (NC + 1), 1) flash_fwd_sm90_ws_kernel(bf16* __restrict__ out, float* __restrict__ lse,
                                                                   const bf16* __restrict__ qp, const bf16* __restrict__ kp,
                                                                   const bf16* __restrict__ vp, const FlashParams p,
                                                                   const __grid_constant__ FwdTmaMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using L = FwdWsSmem<HD, BN, NS, NC>;
    constexpr int BM = L::BM, LD = L::LD, KS = HD / 16, NB = BN / 8, DB = HD / 8;
    constexpr bool TMA = OPT & WS_TMA;
    // TMA blocks: TC columns of TB-byte rows (the swizzle's span)
    constexpr int TC = HD % 64 == 0 ? 64 : 16, TB = 2 * TC;
    static_assert(!TMA || HD % 16 == 0, "the TMA variant takes head dims of whole 16-column blocks");
    extern __shared__ __align__(1024) unsigned char flash_smem_raw[];
    unsigned char* flash_smem = smem_align_1024(flash_smem_raw);
    bf16* sQ = reinterpret_cast<bf16*>(flash_smem + L::q);
    bf16* sK = reinterpret_cast<bf16*>(flash_smem + L::k);
    bf16* sV = reinterpret_cast<bf16*>(flash_smem + L::v);
    const uint32_t bar_q = smem_u32(flash_smem + L::bars);
    auto bar_k = [&](int s) { return bar_q + 8 * (1 + s); };
    auto bar_v = [&](int s) { return bar_q + 8 * (1 + NS + s); };
    auto bar_free_k = [&](int s) { return bar_q + 8 * (1 + 2 * NS + s); };
    auto bar_free_v = [&](int s) { return bar_q + 8 * (1 + 3 * NS + s); };
    const uint32_t bar_q_free = bar_q + 8 * (1 + 4 * NS);   // (WS_PERSISTENT) the consumers are done with Q
    // warpgroup and warp indices through a shuffle: ptxas then knows they are warp-uniform, so the
    // wgmmas behind the role branch are not on a divergent path (which would serialize them: C7520)
    const int wg = __shfl_sync(0xffffffff, threadIdx.x / 128, 0), warp = __shfl_sync(0xffffffff, threadIdx.x / 32, 0);
    const int lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    FwdTile tile;
    constexpr bool HEAVY_FIRST = OPT & WS_HEAVY_FIRST, PERSIST = OPT & WS_PERSISTENT;
    static_assert(!PERSIST || (TMA && HD % 64 == 0),
                  "the persistent forward loads with TMA (one producer thread walks the tiles), hd 64 / 128: fixed layout only (fwd_tma_ok)");
    // the CTA's tiles: t_first, + t_step, ... < t_end of the grid's (group, query tile) in the
    // heavy-first order (PERSIST; every tile has rows: fixed layout), else its own one
    const int n_qt = ceil_div(p.max_rows, BM), n_grp = p.B * p.nkv;
    const int t_first = PERSIST ? blockIdx.x : 0, t_step = PERSIST ? gridDim.x : 1, t_end = PERSIST ? n_qt * n_grp : 1;
    auto tile_at = [&](int t) { fwd_tile_at<BM, BN>(tile, p, qp, kp, vp, t / n_grp, n_qt, t % n_grp); };
    if (!PERSIST && !fwd_tile<BM, BN, HEAVY_FIRST>(tile, p, qp, kp, vp)) return;
    const int hd = p.hd;
    if (threadIdx.x == 0) {
        constexpr int FILLS = TMA ? 1 : 128;  // TMA: one arrive.expect_tx; cp.async: one arrival per producer thread
        mbarrier_init(bar_q, FILLS);
        for (int s = 0; s < NS; s++) {
            mbarrier_init(bar_k(s), FILLS);
            mbarrier_init(bar_v(s), FILLS);
            mbarrier_init(bar_free_k(s), 4 * NC);  // one arrival per consumer warp
            mbarrier_init(bar_free_v(s), 4 * NC);
        }
        if (PERSIST) mbarrier_init(bar_q_free, 4 * NC);
        fence_mbarrier_init();
    }
    __syncthreads();

    if (wg == 0 && TMA) {  // producer: one thread hands every tile to the tensor copy engine
        setmaxnreg_dec<FwdWsRegs<NC>::producer>();
        if (threadIdx.x == 0) {
            constexpr uint32_t QB = BM * HD * 2, KB = BN * HD * 2;   // every block whole (columns past hd: zeros)
            // a tile's coordinates past its columns: fixed (row, group); varlen (head, token; r = 1),
            // which fwd_tma_ok lets through for the 16-column blocks only
            const bool vl = TC == 16 && p.varlen;
            int kv = 0;   // K/V tiles loaded for the CTA's earlier tiles: the stages' running count
            for (int t = t_first, i = 0; t < t_end; t += t_step, i++) {
                if (PERSIST) tile_at(t);
                const int m0 = tile.m0, ntiles = tile.ntiles, grp = tile.grp;
                const int b = grp / p.nkv, gk = grp % p.nkv;
                const int q1 = vl ? gk : m0, q2 = vl ? p.cu_q[b] + m0 : grp;
                const int k1 = vl ? gk : 0, k2 = vl ? p.cu_k[b] : grp;   // + j BN along rows / tokens
                if (PERSIST && i > 0) mbarrier_wait(bar_q_free, (i - 1) & 1);
                mbarrier_arrive_expect_tx(bar_q, QB);
                for (int h = 0; h < HD / TC; h++) tma_load_3d(smem_u32(sQ) + h * BM * TB, &maps.q, bar_q, h * TC, q1, q2);
                for (int j = 0; j < ntiles; j++) {
                    const int n = kv + j, s = n % NS;
                    const int c1 = vl ? k1 : j * BN, c2 = vl ? k2 + j * BN : k2;
                    if (n >= NS) mbarrier_wait(bar_free_k(s), (n / NS - 1) & 1);
                    mbarrier_arrive_expect_tx(bar_k(s), KB);
                    for (int h = 0; h < HD / TC; h++)
                        tma_load_3d(smem_u32(sK + s * BN * HD) + h * BN * TB, &maps.k, bar_k(s), h * TC, c1, c2);
                    if (n >= NS) mbarrier_wait(bar_free_v(s), (n / NS - 1) & 1);
                    mbarrier_arrive_expect_tx(bar_v(s), KB);
                    for (int h = 0; h < HD / TC; h++)
                        tma_load_3d(smem_u32(sV + s * BN * HD) + h * BN * TB, &maps.v, bar_v(s), h * TC, c1, c2);
                }
                kv += ntiles;
            }
        }
        return;
    }
    const FlashGroup& G = tile.G;
    if (wg == 0) {  // producer
        setmaxnreg_dec<FwdWsRegs<NC>::producer>();
        const bf16 *Q = tile.Q, *K = tile.K, *V = tile.V;
        const int m0 = tile.m0, ntiles = tile.ntiles, T = G.Tk, rows = G.rows;
        auto qrow = [&](int i) { return Q + (size_t)i * p.q_rs; };
        auto krow = [&](int i) { return K + (size_t)i * p.k_rs; };
        auto vrow = [&](int i) { return V + (size_t)i * p.v_rs; };
        load_tile_cm<BM, HD, 128, decltype(qrow), 2>(sQ, m0, rows, hd, qrow);
        cp_async_mbarrier_arrive(bar_q);
        for (int j = 0; j < ntiles; j++) {
            const int s = j % NS;
            if (j >= NS) mbarrier_wait(bar_free_k(s), (j / NS - 1) & 1);
            Fill::template fill<BN, HD>(sK + s * BN * HD, j * BN, T, hd, krow, bar_k(s));
            if (j >= NS) mbarrier_wait(bar_free_v(s), (j / NS - 1) & 1);
            Fill::template fill<BN, HD>(sV + s * BN * HD, j * BN, T, hd, vrow, bar_v(s));
        }
        cp_async_wait<0>();
        return;
    }

    setmaxnreg_inc<FwdWsRegs<NC>::consumer>();
    const int cw = wg - 1, cwarp = warp - 4;  // consumer warpgroup 0 .. NC - 1; warp 0 .. 4 NC - 1 of the consumers
    // operand descriptors: core-matrix tiles (cp.async) or swizzled blocks of TC columns (TMA:
    // 128-byte swizzle, 64 columns; 32-byte swizzle, 16 columns; llmc/attention/wgmma.cuh)
    auto desc_tma = [](uint32_t a, uint32_t lbo) { return TC == 64 ? wgmma_desc_sw128(a, lbo, 1024) : wgmma_desc_sw32(a, lbo, 256); };
    const uint64_t desc_q = TMA ? desc_tma(smem_u32(sQ) + cw * 64 * TB, 16) : wgmma_desc_kmajor(smem_u32(sQ + cw * 64 * HD), HD);
    auto kstep_k = [&](int kk, int R) -> uint64_t {  // k16 step kk of a K-major tile of R rows
        if (!TMA) return wgmma_kstep_kmajor(kk);
        return TC == 64 ? (uint64_t)(((kk / 4) * R * 128 + (kk % 4) * 32) >> 4) : (uint64_t)((kk * R * 32) >> 4);
    };
    int kv = 0;   // K/V tiles consumed for the CTA's earlier tiles (the producer's count)
    for (int t = t_first, i = 0; t < t_end; t += t_step, i++) {
        if (PERSIST) tile_at(t);
        const int m0 = tile.m0, ntiles = tile.ntiles, T = G.Tk;
        const bool last_tile = t + t_step >= t_end;
        const int row0 = m0 + cwarp * 16, rowA = row0 + g, posA = rowA / p.r, posB = (rowA + 8) / p.r;
        const int pos_lo = (m0 + cw * 64) / p.r;
        float o[DB][4];
#pragma unroll
        for (int d = 0; d < DB; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
        wgmma_fence_operand(o);
        float mA = -INFINITY, mB = -INFINITY, lA = 0.0f, lB = 0.0f;
        float s[NB][4];
        uint32_t pa[BN / 16][4];
        // the K/V stage of the tile's j-th K/V tile (PERSIST: the CTA's (kv + j)-th) and the parity of
        // its fill (kv spelled out as 0 without PERSIST: ptxas kept the loop-carried zero in the
        // descriptors' arithmetic)
        auto stage = [&](int j) { return (PERSIST ? kv + j : j) % NS; };
        auto fill_parity = [&](int j) { return ((PERSIST ? kv + j : j) / NS) & 1; };
        auto issue_pv = [&](int j) {
            const uint32_t v0 = smem_u32(sV + stage(j) * BN * HD);
            const uint64_t desc_v = TMA ? desc_tma(v0, BN * TB) : wgmma_desc_mnmajor(v0, HD);
#pragma unroll
            for (int kc = 0; kc < BN / 16; kc++)   // (TMA: a k16 step is 16 rows of TB bytes)
                Wgmma<HD>::template rs<1>(o, pa[kc], desc_v + (TMA ? (uint64_t)(kc * 16 * TB >> 4) : wgmma_kstep_mnmajor(kc, HD)), 1);
            wgmma_commit();
        };
        auto issue_s = [&](int j) {
            const uint32_t k0 = smem_u32(sK + stage(j) * BN * HD);
            const uint64_t desc_k = TMA ? desc_tma(k0, 16) : wgmma_desc_kmajor(k0, HD);
#pragma unroll
            for (int kk = 0; kk < KS; kk++)
                Wgmma<BN>::template ss<0, 0>(s, desc_q + kstep_k(kk, BM), desc_k + kstep_k(kk, BN), kk > 0);
            wgmma_commit();
        };
        // mask and softmax of tile j's scores (O not touched: cA, cB rescale it later, where the
        // return says a row's max grew: always but with WS_LAZY_RESCALE)
        constexpr int TAU = OPT & WS_LAZY_RESCALE ? 8 : 0;
        auto softmax_scores = [&](int j, float& cA, float& cB) {
            wgmma_fence_operand(s);
            const int n0 = j * BN;
            if (n0 + BN > T || (p.causal && n0 + BN - 1 > pos_lo)) mask_keys(s, n0, T, posA, posB, p.causal, tq);
            return online_softmax_scores<NB, TAU>(s, mA, mB, lA, lB, p.scale_log2, cA, cB);
        };
        auto scores_to_p = [&] {
#pragma unroll
            for (int kc = 0; kc < BN / 16; kc++) acc_to_a(pa[kc], s[2 * kc], s[2 * kc + 1]);
        };
        // after each wait, a proxy fence: the tiles were written by cp.async (generic proxy) and are
        // read by wgmma (async proxy)
        mbarrier_wait(bar_q, i & 1);
        fence_proxy_async();
        // the turns go round the consumers: each waits on barrier 1 + cw, then passes the turn to the
        // next (barrier 1 + (cw + 1) % NC); the last one's final pass is skipped, which its first one
        // (before any turn, to hand consumer 0 the first) makes up for (PERSIST: the CTA's first and
        // final turns, over all its tiles)
        constexpr bool PP = !(OPT & WS_NO_PINGPONG);
        const int next_turn = 1 + (cw + 1) % NC;
        if (PP && cw == NC - 1 && i == 0) named_barrier_arrive(1, 256);  // consumer 0 takes the first turn
        {  // tile 0: S only (O is zero)
            mbarrier_wait(bar_k(stage(0)), fill_parity(0));
            fence_proxy_async();
            if (PP) named_barrier_sync(1 + cw, 256);
            wgmma_fence();
            issue_s(0);
            if (PP && (cw != NC - 1 || ntiles > 1 || !last_tile)) named_barrier_arrive(next_turn, 256);
            wgmma_wait<0>();
            __syncwarp();
            if (lane == 0) mbarrier_arrive(bar_free_k(stage(0)));
            if (PERSIST && ntiles == 1 && lane == 0) mbarrier_arrive(bar_q_free);   // (its last S: Q may be reloaded)
            float cA, cB;
            softmax_scores(0, cA, cB);
            scores_to_p();
        }
        for (int j = 1; j < ntiles; j++) {
            mbarrier_wait(bar_k(stage(j)), fill_parity(j));
            mbarrier_wait(bar_v(stage(j - 1)), fill_parity(j - 1));
            fence_proxy_async();
            if (PP) named_barrier_sync(1 + cw, 256);  // this warpgroup's turn on the tensor cores
            wgmma_fence();
            issue_s(j);
            issue_pv(j - 1);
            if (PP && (cw != NC - 1 || j + 1 < ntiles || !last_tile)) named_barrier_arrive(next_turn, 256);  // the next one's turn
            wgmma_wait<1>();  // S of tile j: its K stage is free
            __syncwarp();
            if (lane == 0) mbarrier_arrive(bar_free_k(stage(j)));
            if (PERSIST && j == ntiles - 1 && lane == 0) mbarrier_arrive(bar_q_free);
            float cA, cB;
            const bool grew = softmax_scores(j, cA, cB);
            wgmma_wait<0>();  // O += P V of tile j - 1: its V stage is free, O and P may be touched
            wgmma_fence_operand(o);
            wgmma_fence_operand(pa);
            __syncwarp();
            if (lane == 0) mbarrier_arrive(bar_free_v(stage(j - 1)));
            if (grew) rescale_rows(o, cA, cB);
            scores_to_p();
        }
        mbarrier_wait(bar_v(stage(ntiles - 1)), fill_parity(ntiles - 1));
        fence_proxy_async();
        wgmma_fence_operand(o);
        wgmma_fence();
        issue_pv(ntiles - 1);
        wgmma_wait<0>();
        wgmma_fence_operand(o);
        wgmma_fence_operand(pa);
        if (PERSIST) {   // (the last V stage free for the producer, which runs ahead into the next tile)
            __syncwarp();
            if (lane == 0) mbarrier_arrive(bar_free_v(stage(ntiles - 1)));
        }
        fwd_write_rows<HD>(reinterpret_cast<bf16*>(flash_smem + L::epi) + cwarp * 16 * LD, o, mA, mB, lA, lB, row0, p, G, lse, out,
                           lane);
        kv += ntiles;
    }
#elif defined(__CUDA_ARCH__)
    __trap();  // no sm_90a code in this build: flash_sm90_active() never launches this
#endif
}

// ---------------------------------------------------------------------------
// Backward step 2 (dK, dV): CTA = BN = 64 NWG keys of one group; loops over BQ-row query
// tiles. Per tile, transposed as in flash_bwd_dkdv_kernel:
//   S^T = K Q^T and dP^T = V dO^T (both from shared memory, issued back to back: the
//   exponentials of P^T overlap the dP^T product), P^T, dS^T = P^T (dP^T - D),
//   dV += P^T dO, dK += dS^T Q (A from registers, dO and Q MN-major).
// PIPE: dV/dK products left running into the next tile (waited with its S^T); 3 stages.
// DQ (FlashBwdAlgo::atomic, FlashAttention-2/3's backward: 5 products, not 7):
//   the CTA also turns its dS^T tile into the dQ partial of the query tile,
//   dQ[BQ x HD] += dS[BQ x BN] K[BN x HD]: dS^T goes to shared memory (core-matrix tile, read
//   back MN-major as the A operand, so no transpose), each warpgroup computes its block of it
//   (BQ = 64: HD / NWG columns; BQ = 128: 64 query rows) over all BN keys, and adds it to the
//   fp32 accumulator dq_acc with vector reductions (red.global.add.v2/.v4.f32). Not
//   deterministic (dQ's fp32 sum order); flash_bwd_dq_convert_kernel writes bf16 dq after it.
//   DQ_PIPE issues dV, (barrier), dQ, dK and adds dQ while dK runs on the tensor cores;
//   DQ_SYNC issues dV and dK, then dQ, and waits for all three before adding.
//   (Leaving dQ in flight into the next tile, under its S^T, made ptxas serialize every
//   wgmma of the kernel (C7514): it loses track of the commit groups across the back edge.)
//   OPT (DQ only; the default up to hd 80 sets both): bit 0 (DQ_RED4) adds four columns per reduction (lane pairs swap
//   halves with a shuffle: half the red instructions); bit 1 (DQ_NS3) three Q/dO stages, so
//   no barrier at the end of a tile (the prefetch at the top of tile it writes the stage of
//   it - 2, which every warpgroup finished reading before the barrier of it - 1).
//   bit 2 (DQ_BULK) the partial goes out as DQ_ORDERED's does, with bulk reductions.
//   DQ_ORDERED (FlashBwdAlgo::ordered; varlen with the counters in the scratch):
//   deterministic, FA3's scheme. The partial goes to shared memory (sdq: the tile's rows of hd
//   floats as in the accumulator, 8-float chunks swizzled by dq_chunk_swizzle so the
//   fragments' float2 stores are conflict-free), and one thread of the last warp hands the
//   whole tile to the bulk-copy engine, one cp.reduce.async.bulk .add.f32 (K/V tile 0: a
//   plain bulk copy, so no zeroing), in a fixed order: the CTA of K/V tile j waits until the
//   query tile's counter says j. The warp does not wait for its copies: it releases the
//   counter (copies complete, fence, increment) early in the next tile, while the tensor
//   cores run its first two products (so does its first look at the next turn), so a K/V
//   tile lags its predecessor by a fraction of a tile, and the other warps never wait. Query
//   tiles run last to first (causal: every K/V tile starts on the last one, which all of them
//   touch). Needs the CTAs of a group dispatched in K/V-tile order (a CTA waits only for
//   lower block indices: no deadlock however few are resident).
enum { DQ_NONE = 0, DQ_SYNC = 1, DQ_PIPE = 2, DQ_ORDERED = 3 };
enum { DQ_RED4 = 1, DQ_NS3 = 2, DQ_BULK = 4 };
// The backward's per-tile pieces on wgmma, shared by flash_bwd_dkdv_sm90_kernel and the
// warp-specialized variant in dev/cuda/attention_variants.cuh. A warpgroup owns 64 keys of the
// K/V tile; for a BQ-row query tile it works on the transposed scores (its keys are the rows).

// S^T = K Q^T into s, dP^T = V dO^T into dp: two commit groups issued back to back (the
// exponentials of P^T run while the second is on the tensor cores). QSTEP: one k16 step of the
// Q and dO descriptors (default: the core-matrix layout's; a swizzled layout's otherwise), in
// 16-byte units; QBLOCK (128-byte swizzle past 64 columns): every fourth step is the next
// 64-column block instead (kk % 4 steps of QSTEP into block kk / 4, QBLOCK units apart)
template <int HD, int BQ, uint32_t QSTEP = 16, uint32_t QBLOCK = 0>
__device__ __forceinline__ void bwd_issue_scores_t(float (&s)[BQ / 8][4], float (&dp)[BQ / 8][4], uint64_t desc_k,
                                                   uint64_t desc_v, uint64_t desc_q, uint64_t desc_do) {
    auto qstep = [](int kk) { return (uint64_t)(QBLOCK ? (kk % 4) * QSTEP + (kk / 4) * QBLOCK : kk * QSTEP); };
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        Wgmma<BQ>::template ss<0, 0>(s, desc_k + wgmma_kstep_kmajor(kk), desc_q + qstep(kk), kk > 0);
    wgmma_commit();
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        Wgmma<BQ>::template ss<0, 0>(dp, desc_v + wgmma_kstep_kmajor(kk), desc_do + qstep(kk), kk > 0);
    wgmma_commit();
}
// Once S^T has landed (wait<1>: all but the dP^T group): P^T = exp(scale S^T - L), masked;
// once dP^T has (wait<0>): dS^T = P^T (dP^T - D); both as A operands (ap, ads) of the products
// that follow. sLs, sDs: the query tile's L and D rows; keys n0 .. n0 + BN of the CTA.
// The exponentials are written before the wait for dP^T so that they run under that product,
// but ptxas hoists the wait above most of them (it places it before the first read of dP^T or
// of shared memory after it, and starts the dS^T chain early); keeping them ahead of it was
// measured no faster (dev/cuda/NOTES.md).
template <int BQ, int BN>
__device__ __forceinline__ void bwd_p_ds(float (&s)[BQ / 8][4], float (&dp)[BQ / 8][4], uint32_t (&ap)[BQ / 16][4],
                                         uint32_t (&ads)[BQ / 16][4], const float* sLs, const float* sDs, int m0, int n0,
                                         int rows, int keyA, int keyB, const FlashParams& p, int tq) {
    constexpr int NQ = BQ / 8;
    wgmma_wait<1>();  // (PIPE: the previous tile's dV/dK products too)
    wgmma_fence_operand(s);
    if (m0 + BQ > rows || (p.causal && m0 < (n0 + BN - 1) * p.r)) mask_queries(s, m0, rows, p.r, keyA, keyB, p.causal, tq);
#pragma unroll
    for (int nq = 0; nq < NQ; nq++) frag_p_t(s[nq], *reinterpret_cast<const float2*>(sLs + nq * 8 + 2 * tq), p.scale_log2);
    wgmma_wait<0>();
    wgmma_fence_operand(dp);
#pragma unroll
    for (int nq = 0; nq < NQ; nq++) frag_ds_t(dp[nq], s[nq], *reinterpret_cast<const float2*>(sDs + nq * 8 + 2 * tq));
#pragma unroll
    for (int kc = 0; kc < BQ / 16; kc++) {
        acc_to_a(ap[kc], s[2 * kc], s[2 * kc + 1]);
        acc_to_a(ads[kc], dp[2 * kc], dp[2 * kc + 1]);
    }
}
// A warp's dS^T rows kr (= its first key - n0) and kr + 8 (a[0], a[2] and a[1], a[3]), query
// columns 16 kc + 2 tq (a[0], a[1]) and + 8 (a[2], a[3]), into the core-matrix tile sdS
// [BN][BQ]: a warp's store fills whole 128-byte core matrices
template <int BQ>
__device__ __forceinline__ void bwd_store_ds_t(bf16* sdS, const uint32_t (&ads)[BQ / 16][4], int kr, int tq) {
#pragma unroll
    for (int kc = 0; kc < BQ / 16; kc++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = kr + (e & 1) * 8, col = kc * 16 + (e >> 1) * 8 + 2 * tq;
            *reinterpret_cast<uint32_t*>(sdS + ((row / 8) * (BQ / 8) + col / 8) * 64 + (row % 8) * 8 + col % 8) = ads[kc][e];
        }
}
// The same tile with stmatrix: four 8 x 8 matrices an instruction, from exactly the fragments'
// layout (register e of a[kc] is matrix e: rows r0 + 8 (e & 1), columns 16 kc + 8 (e >> 1)), each
// matrix one core matrix of the tile; lane l addresses row l % 8 of matrix l / 8. BQ / 16
// instructions a warp instead of BQ / 4 stores (r0: the warp's first key - n0)
template <int BQ>
__device__ __forceinline__ void bwd_store_ds_t_stmatrix(bf16* sdS, const uint32_t (&ads)[BQ / 16][4], int r0, int lane) {
    const int e = lane / 8;
    const uint32_t a = smem_u32(sdS + ((r0 / 8 + (e & 1)) * (BQ / 8) + (e >> 1)) * 64 + (lane % 8) * 8);
#pragma unroll
    for (int kc = 0; kc < BQ / 16; kc++) stmatrix_x4(a + kc * 256, ads[kc]);   // (16 columns: two core matrices, 256 bytes)
}
// acc += a B over the query tile: dV += P^T dO, dK += dS^T Q (A from registers, B MN-major)
// (MNSTEP: one k16 step of desc_mn, the core-matrix layout's by default)
template <int HD, int BQ, uint32_t MNSTEP = HD * 2>
__device__ __forceinline__ void bwd_issue_rs(float (&acc)[HD / 8][4], const uint32_t (&a)[BQ / 16][4], uint64_t desc_mn) {
#pragma unroll
    for (int kc = 0; kc < BQ / 16; kc++) Wgmma<HD>::template rs<1>(acc, a[kc], desc_mn + (uint64_t)(kc * MNSTEP), 1);
}
// A block of dQ = dS K over the BN keys: A = the dS^T tile read MN-major from ds (its rows, the
// keys, are the contraction), B = the K tile MN-major from k (DQN columns)
template <int HD, int BQ, int BN, int DQN>
__device__ __forceinline__ void bwd_issue_dq(float (&dq)[DQN / 8][4], uint32_t ds, uint32_t k) {
    const uint64_t desc_ds = wgmma_desc_mnmajor(ds, BQ), desc_kn = wgmma_desc_mnmajor(k, HD);
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++)
        Wgmma<DQN>::template ss<1, 1>(dq, desc_ds + wgmma_kstep_mnmajor(kc, BQ), desc_kn + wgmma_kstep_mnmajor(kc, HD), kc > 0);
}
// A warpgroup's block of the dQ partial (its rows rA and rA + 8 of the tile, 8-column chunks
// from c0) into the shared tile sdq (rows of hd floats, chunks swizzled by dq_chunk_swizzle of
// the packed row: row0 is the tile's first). One 8-byte store a pair: a half-warp's 16 pairs
// then fill the 32 banks once (the swizzle); as two 4-byte stores (what the compiler makes of a
// float2 store here) rows g and g + 4 of a warp meet in one bank and each store takes two turns.
// HDK: hd where the caller knows it at compile time (0: not). Then the swizzle is row & 3 and
// every chunk lies inside the row (c0 + DQN / 8 <= hd / 8), and a chunk's address is its row's
// plus constants: with c0 a multiple of 4 and sw < 4, (c0 + nb) ^ sw = c0 + (nb ^ sw), and the
// row's base (a 128-byte-aligned buffer, rows of hd floats, c0 a multiple of 4 chunks) has bits
// 5-6 clear, so base + 32 (nb ^ sw) = ((base + 32 sw) ^ 32 (nb % 4)) + 128 (nb / 4): at most one
// XOR a store. (With hd at run time, the stores are predicated rather than branched on: ptxas
// sinks arithmetic used by several branches into each of them and repeats it there.)
template <int DQN, int HDK = 0>
__device__ __forceinline__ void bwd_dq_to_smem(float* sdq, const float (&dq)[DQN / 8][4], int rA, int c0, size_t row0, int hd,
                                               int tq) {
    if constexpr (HDK != 0) {
        static_assert(HDK % 32 == 0 && DQN % 32 == 0 && DQN <= HDK, "whole 128-byte groups of chunks, the row & 3 swizzle");
        const uint32_t a = smem_u32(sdq + rA * HDK + c0 * 8 + 2 * tq) + (uint32_t)((row0 + rA) & 3) * 32;
        const uint32_t b = smem_u32(sdq + (rA + 8) * HDK + c0 * 8 + 2 * tq) + (uint32_t)((row0 + rA + 8) & 3) * 32;
#pragma unroll
        for (int nb = 0; nb < DQN / 8; nb++) {
            const uint32_t flip = (uint32_t)(nb % 4) * 32, next = (uint32_t)(nb / 4) * 128;
            st_shared_f32x2((a ^ flip) + next, dq[nb][0], dq[nb][1]);
            st_shared_f32x2((b ^ flip) + next, dq[nb][2], dq[nb][3]);
        }
        return;
    }
    const uint32_t swA = (uint32_t)dq_chunk_swizzle(row0 + rA, hd) * 32, swB = (uint32_t)dq_chunk_swizzle(row0 + rA + 8, hd) * 32;
    const uint32_t a = smem_u32(sdq + rA * hd + 2 * tq), b = smem_u32(sdq + (rA + 8) * hd + 2 * tq);
    const int nc = hd / 8 - c0;   // the block's chunks inside the row
#pragma unroll
    for (int nb = 0; nb < DQN / 8; nb++) {
        const uint32_t c32 = (uint32_t)(c0 + nb) * 32;
        st_shared_f32x2_if(nb < nc, a + (c32 ^ swA), dq[nb][0], dq[nb][1]);
        st_shared_f32x2_if(nb < nc, b + (c32 ^ swB), dq[nb][2], dq[nb][3]);
    }
}

// whether the dQ partials go out through shared memory and bulk copies (sdq, DQW)
__host__ __device__ constexpr bool dq_bulk(int DQ, int OPT) { return DQ == DQ_ORDERED || (DQ == DQ_PIPE && (OPT & DQ_BULK)); }
template <int HD, int NWG, int BQ, bool PIPE, int DQ = DQ_NONE, int OPT = 0>
__global__ void __launch_bounds__(NWG * 128) flash_bwd_dkdv_sm90_kernel(bf16* __restrict__ dkp, bf16* __restrict__ dvp,
                                                                        float* __restrict__ dq_acc, int* __restrict__ locks,
                                                                        const bf16* __restrict__ qp, const bf16* __restrict__ kp,
                                                                        const bf16* __restrict__ vp, const bf16* __restrict__ dout,
                                                                        const float* __restrict__ Lp, const float* __restrict__ Dp,
                                                                        const FlashParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BN = 64 * NWG, NT = NWG * 128, NQ = BQ / 8, DB = HD / 8, LD = HD + 8;
    constexpr int NS = PIPE || (OPT & DQ_NS3) ? 3 : 2;
    // DQ: BQ = 64: warpgroup w computes the DQN = HD / NWG columns from w DQN of the 64 query
    // rows; BQ = 128 (two warpgroups, MSPLIT): the 64 query rows from 64 w, every column
    constexpr bool MSPLIT = BQ == 128 && NWG == 2;
    constexpr int DQN = MSPLIT ? HD : HD / NWG;
    static_assert(!DQ || (!PIPE && (BQ == 64 || MSPLIT) && DQN % 8 == 0), "fused dQ: m64 blocks of query rows, no PIPE");
    constexpr bool BULK = dq_bulk(DQ, OPT);
    constexpr int DQW = NT / 32 - 1;  // BULK: the warp that issues the bulk copies
    extern __shared__ __align__(128) unsigned char flash_smem[];
    bf16* sK = reinterpret_cast<bf16*>(flash_smem);  // [BN][HD] core-matrix tiles
    bf16* sV = sK + BN * HD;                         // [BN][HD]
    bf16* sQ = sV + BN * HD;                         // [NS][BQ][HD]
    bf16* sdO = sQ + NS * BQ * HD;                   // [NS][BQ][HD]
    float* sL = reinterpret_cast<float*>(sdO + NS * BQ * HD);  // [NS][BQ]
    float* sD = sL + NS * BQ;                                  // [NS][BQ]
    bf16* sdS = reinterpret_cast<bf16*>(sD + NS * BQ);         // DQ: [BN][BQ] core-matrix tile of dS^T
    float* sdq = reinterpret_cast<float*>(sdS + BN * BQ);      // BULK: [BQ][hd] the dQ partial (swizzled)
    const int wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int grp = blockIdx.y, n0 = blockIdx.x * BN;
    const FlashGroup G = flash_group(p, grp);
    float* acc_g = DQ ? dq_acc + G.ld0 * p.hd : nullptr;  // the group's packed rows of hd floats
    // (every group has keys, flash_attention_varlen_check: K/V tile 0, which stores the
    // DQ_ORDERED sums' first term, always runs)
    if (n0 >= G.Tk) return;
    const int hd = p.hd, T = G.Tk, rows = G.rows, r = p.r;
    const float* L = Lp + G.ld0;
    const float* Dg = Dp + G.ld0;
    const FlashGroupRows R = flash_group_rows(p, G, qp, kp, vp, dout);
    auto load_q_tile = [&](int it, int st) {
        const int m0 = it * BQ;
        load_tile_cm<BQ, HD, NT>(sQ + st * BQ * HD, m0, rows, hd, R.q);
        load_tile_cm<BQ, HD, NT>(sdO + st * BQ * HD, m0, rows, hd, R.o);
        for (int i = threadIdx.x; i < BQ; i += NT) {
            const bool ok = m0 + i < rows;
            cp_async4(smem_u32(sL + st * BQ + i), ok ? L + m0 + i : L, ok);
            cp_async4(smem_u32(sD + st * BQ + i), ok ? Dg + m0 + i : Dg, ok);
        }
    };
    const int it0 = p.causal ? (n0 * r) / BQ : 0, nit = ceil_div(rows, BQ), nsteps = nit - it0;
    // the query tile of loop step `step` (DQ_ORDERED: last to first, so that the chain of K/V
    // tiles adding to one query tile lags by one addition per K/V tile, not by whole loops)
    auto tile_of = [&](int step) { return DQ == DQ_ORDERED ? nit - 1 - step : it0 + step; };
    load_tile_cm<BN, HD, NT>(sK, n0, T, hd, R.k);
    load_tile_cm<BN, HD, NT>(sV, n0, T, hd, R.v);
    load_q_tile(tile_of(0), 0);
    cp_async_commit();

    const int keyA = n0 + warp * 16 + lane / 4, keyB = keyA + 8;
    const uint64_t desc_k = wgmma_desc_kmajor(smem_u32(sK + wg * 64 * HD), HD);
    const uint64_t desc_v = wgmma_desc_kmajor(smem_u32(sV + wg * 64 * HD), HD);
    float dk[DB][4], dv[DB][4];
#pragma unroll
    for (int d = 0; d < DB; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[d][e] = dv[d][e] = 0.0f;
    wgmma_fence_operand(dk);  // zeros written here (see the forward)
    wgmma_fence_operand(dv);
    // DQ: this warpgroup's columns of the query tile's dQ partial, added to the accumulator
    // rows from mq0 by add_dq
    float dq[DQN / 8][4];
    // the group's counters, one per query tile (varlen: per head, flash_varlen_lock_stride)
    // (computed where thread 0 needs it: no registers held across the loop)
    auto lock_of = [&](int it) {
        const int b = grp / p.nkv, gk = grp % p.nkv;
        return locks + (p.varlen ? (size_t)gk * flash_varlen_lock_stride(p.Nq, p.B) + p.cu_q[b] / BQ + b
                                 : (size_t)grp * ceil_div(rows, BQ)) + it;
    };
    auto add_dq = [&](int mq0) {
        const int rA = mq0 + (MSPLIT ? wg * 64 : 0) + (warp % 4) * 16 + g, rB = rA + 8;
#pragma unroll
        for (int nb = 0; nb < DQN / 8; nb++) {
            const int col = (MSPLIT ? 0 : wg * DQN) + nb * 8 + 2 * tq;
            if constexpr (OPT & DQ_RED4) {
                // even tq: row A, columns 2 tq .. + 3 (its pair and the odd partner's); odd tq: row B
                const bool odd = tq & 1;
                const float sx = odd ? dq[nb][0] : dq[nb][2], sy = odd ? dq[nb][1] : dq[nb][3];
                const float rx = __shfl_xor_sync(0xffffffff, sx, 1), ry = __shfl_xor_sync(0xffffffff, sy, 1);
                const int row = odd ? rB : rA, c4 = col - (odd ? 2 : 0);
                if (c4 < hd && row < rows) {
                    if (odd) red_add_f32x4(acc_g + (size_t)row * hd + c4, rx, ry, dq[nb][2], dq[nb][3]);
                    else red_add_f32x4(acc_g + (size_t)row * hd + c4, dq[nb][0], dq[nb][1], rx, ry);
                }
            } else if (col < hd) {
                if (rA < rows) red_add_f32x2(acc_g + (size_t)rA * hd + col, dq[nb][0], dq[nb][1]);
                if (rB < rows) red_add_f32x2(acc_g + (size_t)rB * hd + col, dq[nb][2], dq[nb][3]);
            }
        }
    };
    // BULK: the partial to sdq (every warp), then out by warp DQW (dq_bulk_issue) and, a tile
    // later, the copies' completion (dq_bulk_release: sdq free, DQ_ORDERED: the next K/V tile's turn)
    auto dq_to_smem = [&](int mq0) {
        bwd_dq_to_smem<DQN>(sdq, dq, (MSPLIT ? wg * 64 : 0) + (warp % 4) * 16 + g, MSPLIT ? 0 : wg * (DQN / 8), G.ld0 + mq0, hd, tq);
    };
    // (lane 0 of warp DQW: it commits and waits for its own bulk groups; `turn`: the counter
    // already said so when it was first read, in the shadow of the tile's first products)
    bool turn = false;
    auto dq_bulk_issue = [&](int it) {
        const int m0 = it * BQ, nvalid = min(BQ, rows - m0);
        if constexpr (DQ == DQ_ORDERED) {
            if (!turn)
                while (ld_acquire(lock_of(it)) != (int)blockIdx.x) __nanosleep(20);
            fence_proxy_async_global();  // the predecessors' sums, seen through the counter, before ours
        }
        const uint32_t bytes = (uint32_t)nvalid * hd * 4;
        if (DQ == DQ_ORDERED && blockIdx.x == 0) bulk_copy_s2g(acc_g + (size_t)m0 * hd, smem_u32(sdq), bytes);
        else bulk_reduce_add_f32(acc_g + (size_t)m0 * hd, smem_u32(sdq), bytes);
        bulk_commit();
    };
    auto dq_bulk_release = [&](int it) {
        bulk_wait_all();
        if constexpr (DQ == DQ_ORDERED) {
            __threadfence();
            atomicAdd(lock_of(it), 1);
        }
    };

    for (int step = 0; step < nsteps; step++) {
        const int it = tile_of(step), st = step % NS, m0 = it * BQ;
        if (step + 1 < nsteps) {
            load_q_tile(tile_of(step + 1), (step + 1) % NS);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        fence_proxy_async();
        __syncthreads();
        const uint32_t sQs = smem_u32(sQ + st * BQ * HD), sdOs = smem_u32(sdO + st * BQ * HD);
        const float* sLs = sL + st * BQ;
        const float* sDs = sD + st * BQ;
        float s[NQ][4], dp[NQ][4];  // not zeroed: the first k step overwrites (see the forward)
        bwd_issue_scores_t<HD, BQ>(s, dp, desc_k, desc_v, wgmma_desc_kmajor(sQs, HD), wgmma_desc_kmajor(sdOs, HD));
        if constexpr (BULK) {
            // warp DQW, while the tensor cores run these two products (its warpgroup would wait
            // for them anyway): the previous tile's copies complete (sdq free before the dS^T
            // barrier below; DQ_ORDERED: the next K/V tile's turn), and a first look at this one's
            if (warp == DQW && lane == 0) {
                if (step > 0) dq_bulk_release(tile_of(step - 1));
                if constexpr (DQ == DQ_ORDERED) turn = ld_acquire(lock_of(it)) == (int)blockIdx.x;
            }
            __syncwarp();
        }
        uint32_t ap[BQ / 16][4], ads[BQ / 16][4];
        bwd_p_ds<BQ, BN>(s, dp, ap, ads, sLs, sDs, m0, n0, rows, keyA, keyB, p, tq);
        if constexpr (DQ) {
            bwd_store_ds_t<BQ>(sdS, ads, warp * 16 + g, tq);
            fence_proxy_async();
        }
        const uint64_t desc_do_mn = wgmma_desc_mnmajor(sdOs, HD), desc_q_mn = wgmma_desc_mnmajor(sQs, HD);
        wgmma_fence_operand(dv);
        wgmma_fence_operand(dk);
        auto issue_dv = [&] { bwd_issue_rs<HD, BQ>(dv, ap, desc_do_mn); };
        auto issue_dk = [&] { bwd_issue_rs<HD, BQ>(dk, ads, desc_q_mn); };
        // dQ (this warpgroup's block) = dS K: the dS^T tile from query column 64 wg (MSPLIT), the
        // K tile from column wg * DQN (else)
        auto issue_dq = [&] {
            bwd_issue_dq<HD, BQ, BN, DQN>(dq, smem_u32(sdS) + (MSPLIT ? wg * 8 * 128 : 0),
                                          smem_u32(sK) + (MSPLIT ? 0 : wg * (DQN / 8) * 128));
        };
        wgmma_fence();
        issue_dv();
        if constexpr (DQ != DQ_PIPE && DQ != DQ_ORDERED) issue_dk();
        wgmma_commit();
        if constexpr (DQ) {
            __syncthreads();  // every warpgroup's rows of dS^T are in sdS
            wgmma_fence();
            issue_dq();
            wgmma_commit();
            if constexpr (DQ == DQ_PIPE || DQ == DQ_ORDERED) {
                issue_dk();
                wgmma_commit();
                wgmma_wait<1>();  // dV and dQ; dK runs under the reductions
                wgmma_fence_operand(dq);
                if constexpr (BULK) {
                    dq_to_smem(m0);
                    fence_proxy_async();
                    // the other warps only arrive: they go on while warp DQW waits for its turn
                    if (warp == DQW) {
                        named_barrier_sync(1, NT);
                        if (lane == 0) dq_bulk_issue(it);
                        __syncwarp();  // converged again for the .aligned wgmma wait
                    } else {
                        named_barrier_arrive(1, NT);
                    }
                } else {
                    add_dq(m0);
                }
                wgmma_wait<0>();
            } else {
                wgmma_wait<0>();
                wgmma_fence_operand(dq);
                add_dq(m0);
            }
            wgmma_fence_operand(dv);
            wgmma_fence_operand(dk);
        } else if constexpr (!PIPE) {
            wgmma_wait<0>();
            wgmma_fence_operand(dv);
            wgmma_fence_operand(dk);
        }
        wgmma_fence_operand(ap);
        wgmma_fence_operand(ads);
        if constexpr (!(OPT & DQ_NS3)) __syncthreads();
    }
    if constexpr (BULK) {  // the last tile's copies: the next K/V tile's turn now, not after the
        if (warp == DQW && lane == 0 && nsteps > 0) dq_bulk_release(tile_of(nsteps - 1));  // epilogue
        __syncwarp();  // (and sdq read before the CTA's shared memory goes)
    }
    wgmma_wait<0>();
    wgmma_fence_operand(dv);
    wgmma_fence_operand(dk);
    // PIPE: the other warpgroup's last dK += dS^T Q may still read sQ, which the padded dV rows
    // below reach into (2 BN (HD + 8) > 2 BN HD elements); DQ_NS3: no barrier after the last tile
    if constexpr ((PIPE || (OPT & DQ_NS3)) && NWG > 1) __syncthreads();
    // out through padded rows per warp: dK rows at the start of shared memory, dV after BN rows
    bf16* sOk = reinterpret_cast<bf16*>(flash_smem) + warp * 16 * LD;
    bf16* sOv = reinterpret_cast<bf16*>(flash_smem) + (BN + warp * 16) * LD;
    store_rows<HD>(sOk, dk, p.scale, p.scale, lane);
    store_rows<HD>(sOv, dv, 1.0f, 1.0f, lane);
    copy_rows_out<HD>(sOk, n0 + warp * 16, T, hd, lane, [&](int i) { return dkp + G.k0 + (size_t)i * p.k_rs; });
    copy_rows_out<HD>(sOv, n0 + warp * 16, T, hd, lane, [&](int i) { return dvp + G.v0 + (size_t)i * p.v_rs; });
#elif defined(__CUDA_ARCH__)
    __trap();  // no sm_90a code in this build: flash_sm90_active() never launches this
#endif
}

// ---------------------------------------------------------------------------
// Backward step 3 (dQ): CTA = BM = 64 NWG query rows of one group; loops over BN-key
// tiles: S = Q K^T and dP = dO V^T (shared memory, back to back), P, dS = P (dP - D),
// dQ += dS K (dS from registers, K MN-major).
// PIPE: dQ += dS K left running into the next tile (waited with its S); 3 stages.
template <int HD, int NWG, int BN, bool PIPE>
__global__ void __launch_bounds__(NWG * 128) flash_bwd_dq_sm90_kernel(bf16* __restrict__ dqp, const bf16* __restrict__ qp,
                                                                      const bf16* __restrict__ kp, const bf16* __restrict__ vp,
                                                                      const bf16* __restrict__ dout, const float* __restrict__ Lp,
                                                                      const float* __restrict__ Dp, const FlashParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BM = 64 * NWG, NT = NWG * 128, KS = HD / 16, NB = BN / 8, DB = HD / 8, LD = HD + 8, NS = PIPE ? 3 : 2;
    extern __shared__ __align__(128) unsigned char flash_smem[];
    bf16* sQ = reinterpret_cast<bf16*>(flash_smem);  // [BM][HD] core-matrix tiles
    bf16* sdO = sQ + BM * HD;                        // [BM][HD]
    bf16* sK = sdO + BM * HD;                        // [NS][BN][HD]
    bf16* sV = sK + NS * BN * HD;                    // [NS][BN][HD]
    const int wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int qt = p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int grp = blockIdx.y, m0 = qt * BM;
    const FlashGroup G = flash_group(p, grp);
    if (m0 >= G.rows) return;
    const int hd = p.hd, T = G.Tk, rows = G.rows, r = p.r;
    const FlashGroupRows R = flash_group_rows(p, G, qp, kp, vp, dout);
    const int kv_end = p.causal ? (min(m0 + BM, rows) - 1) / r + 1 : T;
    const int ntiles = ceil_div(kv_end, BN);
    load_tile_cm<BM, HD, NT>(sQ, m0, rows, hd, R.q);
    load_tile_cm<BM, HD, NT>(sdO, m0, rows, hd, R.o);
    load_tile_cm<BN, HD, NT>(sK, 0, T, hd, R.k);
    load_tile_cm<BN, HD, NT>(sV, 0, T, hd, R.v);
    cp_async_commit();

    const int rowA = m0 + warp * 16 + g, rowB = rowA + 8, posA = rowA / r, posB = rowB / r, pos_lo = m0 / r;
    const float LA = rowA < rows ? Lp[G.ld0 + rowA] : 0.0f, LB = rowB < rows ? Lp[G.ld0 + rowB] : 0.0f;
    const float DA = rowA < rows ? Dp[G.ld0 + rowA] : 0.0f, DBv = rowB < rows ? Dp[G.ld0 + rowB] : 0.0f;
    const uint64_t desc_q = wgmma_desc_kmajor(smem_u32(sQ + wg * 64 * HD), HD);
    const uint64_t desc_do = wgmma_desc_kmajor(smem_u32(sdO + wg * 64 * HD), HD);
    float dq[DB][4];
#pragma unroll
    for (int d = 0; d < DB; d++) dq[d][0] = dq[d][1] = dq[d][2] = dq[d][3] = 0.0f;
    wgmma_fence_operand(dq);  // zeros written here (see the forward)

    for (int j = 0; j < ntiles; j++) {
        const int st = j % NS, n0 = j * BN;
        if (j + 1 < ntiles) {
            load_tile_cm<BN, HD, NT>(sK + ((j + 1) % NS) * BN * HD, n0 + BN, T, hd, R.k);
            load_tile_cm<BN, HD, NT>(sV + ((j + 1) % NS) * BN * HD, n0 + BN, T, hd, R.v);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        fence_proxy_async();
        __syncthreads();
        const uint32_t sKs = smem_u32(sK + st * BN * HD), sVs = smem_u32(sV + st * BN * HD);
        float s[NB][4], dp[NB][4];  // not zeroed: the first k step overwrites (see the forward)
        const uint64_t desc_k = wgmma_desc_kmajor(sKs, HD), desc_v = wgmma_desc_kmajor(sVs, HD);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
            Wgmma<BN>::template ss<0, 0>(s, desc_q + wgmma_kstep_kmajor(kk), desc_k + wgmma_kstep_kmajor(kk), kk > 0);
        wgmma_commit();
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
            Wgmma<BN>::template ss<0, 0>(dp, desc_do + wgmma_kstep_kmajor(kk), desc_v + wgmma_kstep_kmajor(kk), kk > 0);
        wgmma_commit();
        wgmma_wait<1>();  // PIPE: the previous tile's dQ product too
        wgmma_fence_operand(s);
        if (n0 + BN > T || (p.causal && n0 + BN - 1 > pos_lo)) mask_keys(s, n0, T, posA, posB, p.causal, tq);
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            s[nb][0] = exp2_approx(fmaf(s[nb][0], p.scale_log2, -LA));
            s[nb][1] = exp2_approx(fmaf(s[nb][1], p.scale_log2, -LA));
            s[nb][2] = exp2_approx(fmaf(s[nb][2], p.scale_log2, -LB));
            s[nb][3] = exp2_approx(fmaf(s[nb][3], p.scale_log2, -LB));
        }
        wgmma_wait<0>();
        wgmma_fence_operand(dp);
        uint32_t a[BN / 16][4];
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            dp[nb][0] = s[nb][0] * (dp[nb][0] - DA);
            dp[nb][1] = s[nb][1] * (dp[nb][1] - DA);
            dp[nb][2] = s[nb][2] * (dp[nb][2] - DBv);
            dp[nb][3] = s[nb][3] * (dp[nb][3] - DBv);
        }
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) acc_to_a(a[kc], dp[2 * kc], dp[2 * kc + 1]);
        const uint64_t desc_k_mn = wgmma_desc_mnmajor(sKs, HD);
        wgmma_fence_operand(dq);
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) Wgmma<HD>::template rs<1>(dq, a[kc], desc_k_mn + wgmma_kstep_mnmajor(kc, HD), 1);
        wgmma_commit();
        if constexpr (!PIPE) {
            wgmma_wait<0>();
            wgmma_fence_operand(dq);
        }
        wgmma_fence_operand(a);
        __syncthreads();
    }
    wgmma_wait<0>();
    wgmma_fence_operand(dq);
    bf16* sO = reinterpret_cast<bf16*>(flash_smem) + warp * 16 * LD;
    store_rows<HD>(sO, dq, p.scale, p.scale, lane);
    copy_rows_out<HD>(sO, m0 + warp * 16, rows, hd, lane, [&](int i) { return dqp + G.q0 + (size_t)i * p.q_rs; });
#elif defined(__CUDA_ARCH__)
    __trap();  // no sm_90a code in this build: flash_sm90_active() never launches this
#endif
}

// ---------------------------------------------------------------------------
// Launchers (shared memory: the core-matrix tiles; the epilogues' padded rows fit inside).
// The tiles of a launch, named as in the kernels' comments (the dispatch table FlashTiles in
// flash_attention.cuh picks them per head dim):
struct Sm90FwdConfig {
    int nwg, bn;  // warpgroups (64 query rows each), keys per K/V tile
};
struct Sm90FwdWsConfig {  // the warp-specialized forward (64 nc query rows)
    int bn, ns;  // keys per K/V tile, K/V stages
    int opt;     // WS_* bits
    int nc = 2;  // consumer warpgroups (3: hd 64 only, the registers)
};
struct Sm90DkdvConfig {
    int nwg, bq;  // warpgroups (64 keys each), query rows per tile
    bool pipe;    // products left running into the next tile (split backward only)
    int dq;       // DQ_NONE (split backward), DQ_ORDERED, DQ_PIPE, DQ_SYNC: also dQ (fused backward)
    int opt;      // DQ_RED4 | DQ_NS3 | DQ_BULK
};
struct Sm90DqConfig {
    int nwg, bn;  // warpgroups (64 query rows each), keys per K/V tile
    bool pipe;    // dQ += dS K left running into the next tile
};
template <int HD, const Sm90FwdConfig& C>
static void fwd_sm90_launch(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const FlashParams& p,
                            cudaStream_t stream) {
    constexpr int NWG = C.nwg, BN = C.bn;
    constexpr int BM = 64 * NWG, NS = 2;
    constexpr size_t smem = (size_t)(BM + 2 * NS * BN) * HD * sizeof(bf16);
    static_assert((size_t)BM * (HD + 8) * sizeof(bf16) <= smem, "epilogue rows must fit");
    static_assert(smem <= 227 * 1024, "more shared memory than a Hopper block can have");
    static bool init = false;
    if (!init) { set_smem(flash_fwd_sm90_kernel<HD, NWG, BN>, smem); init = true; }
    dim3 grid(ceil_div(p.max_rows, BM), p.B * p.nkv);
    flash_fwd_sm90_kernel<HD, NWG, BN><<<grid, NWG * 128, smem, stream>>>(out, lse, q, k, v, p);
    cudaLaunchCheck();
}
// cuTensorMapEncodeTiled, a driver function, through the runtime's entry-point query (so the
// build links no libcuda)
typedef CUresult (*TmaEncodeFn)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
static TmaEncodeFn tma_encode() {
    static TmaEncodeFn fn = nullptr;
    if (!fn) {
        void* f = nullptr;
        cudaDriverEntryPointQueryResult q;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
        if (q != cudaDriverEntryPointSuccess || !f) fail("flash attention: the driver has no cuTensorMapEncodeTiled");
        fn = reinterpret_cast<TmaEncodeFn>(f);
    }
    return fn;
}
// A bf16 tensor map of rank R (2..5): dims innermost first, byte strides of dims 1..R-1, box
// sizes; box[0] columns (64: 128-byte swizzle; 16: 32-byte swizzle). Whatever lies past the dims
// (columns past hd, rows or tokens past the end) reads as zeros.
template <int R>
static CUtensorMap tma_map(const bf16* base, const cuuint64_t (&dims)[R], const cuuint64_t (&strides)[R - 1],
                           const cuuint32_t (&box)[R]) {
    CUtensorMap m;
    cuuint32_t es[R];
    for (int i = 0; i < R; i++) es[i] = 1;
    const CUresult r = tma_encode()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, R, const_cast<bf16*>(base), dims, strides, box, es,
                                    CU_TENSOR_MAP_INTERLEAVE_NONE, box[0] == 64 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_32B,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        char shape[128] = "";
        for (int i = R - 1; i >= 0; i--) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "[%llu]", (unsigned long long)dims[i]);
        fail("flash attention: cuTensorMapEncodeTiled failed (%d) for a %s tensor", (int)r, shape);
    }
    return m;
}
// 3-D: dims {hd, d1, d2} with byte strides s1, s2, boxes of box_cols x box1 x box2
static CUtensorMap tma_map_3d(const bf16* base, int hd, int d1, int d2, size_t s1, size_t s2, int box_cols, int box1, int box2) {
    return tma_map<3>(base, {(cuuint64_t)hd, (cuuint64_t)d1, (cuuint64_t)d2}, {(cuuint64_t)s1, (cuuint64_t)s2},
                      {(cuuint32_t)box_cols, (cuuint32_t)box1, (cuuint32_t)box2});
}
// fixed layout: [groups][rows][hd], rows of hd elements back to back; boxes of box_rows rows of one group
static CUtensorMap tma_map_rows(const bf16* base, int hd, int rows, int groups, int box_cols, int box_rows) {
    return tma_map_3d(base, hd, rows, groups, (size_t)hd * 2, (size_t)rows * hd * 2, box_cols, box_rows, 1);
}
// varlen: [tokens][heads][hd], heads side by side in rows of row_elems; boxes of one head x box_rows tokens
static CUtensorMap tma_map_tokens(const bf16* base, int hd, int heads, int tokens, int row_elems, int box_cols, int box_rows) {
    return tma_map_3d(base, hd, heads, tokens, (size_t)hd * 2, (size_t)row_elems * 2, box_cols, 1, box_rows);
}
// whether the TMA forward can take this call: 16-byte aligned bases; HD 64 / 128 (64-column
// blocks): fixed layout with hd exactly HD; other HD (16-column blocks): hd in the last block and
// rows (and, varlen, the row strides) of whole 16 bytes, as the maps need
template <int HD>
static bool fwd_tma_ok(const bf16* q, const bf16* k, const bf16* v, const FlashParams& p) {
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 != 0) return false;
    if (HD % 64 == 0) return !p.varlen && p.hd == HD;
    return HD % 16 == 0 && p.hd > HD - 16 && p.hd <= HD && p.hd % 8 == 0 &&
           (!p.varlen || (p.r == 1 && p.q_rs % 8 == 0 && p.k_rs % 8 == 0 && p.v_rs % 8 == 0));
}
template <int HD, const Sm90FwdWsConfig& C, class Fill = WsCopyStage>
static void fwd_sm90_ws_launch(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const FlashParams& p,
                               cudaStream_t stream) {
    constexpr int BN = C.bn, NS = C.ns, OPT = C.opt, NC = C.nc;
    static_assert(NC == 2 || (NC == 3 && HD <= 80), "three consumer warpgroups hold S, P and O in 160 registers: padded hd 80 at most");
    constexpr size_t smem = FwdWsSmem<HD, BN, NS, NC>::bytes + 1024;  // + the slack that aligns the base
    static_assert(smem <= 227 * 1024, "more shared memory than a Hopper block can have");
    static bool init = false;
    if (!init) { set_smem(flash_fwd_sm90_ws_kernel<HD, BN, NS, OPT, Fill, NC>, smem); init = true; }
    constexpr int BM = FwdWsSmem<HD, BN, NS, NC>::BM;
    FwdTmaMaps maps;
    memset(&maps, 0, sizeof(maps));
    if constexpr ((OPT & WS_TMA) != 0) {
        constexpr int TC = HD % 64 == 0 ? 64 : 16;   // the kernel's blocks
        if (p.varlen) {
            maps.q = tma_map_tokens(q, p.hd, p.nh, p.Nq, p.q_rs, TC, BM);
            maps.k = tma_map_tokens(k, p.hd, p.nkv, p.Nk, p.k_rs, TC, BN);
            maps.v = tma_map_tokens(v, p.hd, p.nkv, p.Nk, p.v_rs, TC, BN);
        } else {
            maps.q = tma_map_rows(q, p.hd, p.rows, p.B * p.nkv, TC, BM);
            maps.k = tma_map_rows(k, p.hd, p.T, p.B * p.nkv, TC, BN);
            maps.v = tma_map_rows(v, p.hd, p.T, p.B * p.nkv, TC, BN);
        }
    }
    const int qtiles = ceil_div(p.max_rows, BM), groups = p.B * p.nkv;
    dim3 grid = (OPT & WS_HEAVY_FIRST) ? dim3(groups, qtiles) : dim3(qtiles, groups);
    if constexpr ((OPT & WS_PERSISTENT) != 0) grid = dim3(std::min(qtiles * groups, flash_sm_count()));   // a CTA an SM
    flash_fwd_sm90_ws_kernel<HD, BN, NS, OPT, Fill, NC><<<grid, 128 * (NC + 1), smem, stream>>>(out, lse, q, k, v, p, maps);
    cudaLaunchCheck();
}
// DQ: also dq through the fp32 accumulator dq_acc (zeroed here, converted to bf16 dq here)
template <int HD, const Sm90DkdvConfig& C>
static void dkdv_sm90_launch(bf16* dk, bf16* dv, const bf16* q, const bf16* k, const bf16* v, const bf16* dout, const float* L,
                             const float* D, const FlashParams& p, cudaStream_t stream, bf16* dq = nullptr,
                             float* dq_acc = nullptr, int* locks = nullptr) {
    constexpr int NWG = C.nwg, BQ = C.bq, DQ = C.dq, OPT = C.opt;
    constexpr bool PIPE = C.pipe;
    constexpr int BN = 64 * NWG, NS = PIPE || (OPT & DQ_NS3) ? 3 : 2;
    constexpr bool BULK = dq_bulk(DQ, OPT);
    constexpr size_t smem = (size_t)(2 * BN + 2 * NS * BQ) * HD * sizeof(bf16) + 2 * NS * BQ * sizeof(float) +
                            (size_t)(DQ ? 1 : 0) * BN * BQ * sizeof(bf16) + (size_t)(BULK ? 1 : 0) * BQ * HD * sizeof(float);
    static_assert((size_t)2 * BN * (HD + 8) * sizeof(bf16) <= smem, "epilogue rows must fit");
    static_assert(smem <= 227 * 1024, "more shared memory than a Hopper block can have");
    static bool init = false;
    if (!init) { set_smem(flash_bwd_dkdv_sm90_kernel<HD, NWG, BQ, PIPE, DQ, OPT>, smem); init = true; }
    if constexpr (DQ == DQ_ORDERED) {  // K/V tile 0 stores the sums' first term: no zeroing of dq_acc
        flash_locks_zero(locks, p, BQ, stream);
    } else if constexpr (DQ) {
        flash_dq_acc_zero(dq_acc, p, stream);
    }
    dim3 grid(ceil_div(p.max_Tk, BN), p.B * p.nkv);
    flash_bwd_dkdv_sm90_kernel<HD, NWG, BQ, PIPE, DQ, OPT><<<grid, NWG * 128, smem, stream>>>(dk, dv, dq_acc, locks, q, k, v, dout,
                                                                                             L, D, p);
    cudaLaunchCheck();
    if constexpr (DQ) flash_dq_acc_to_bf16(dq, dq_acc, p, stream, BULK);
}
template <int HD, const Sm90DqConfig& C>
static void dq_sm90_launch(bf16* dq, const bf16* q, const bf16* k, const bf16* v, const bf16* dout, const float* L,
                           const float* D, const FlashParams& p, cudaStream_t stream) {
    constexpr int NWG = C.nwg, BN = C.bn;
    constexpr bool PIPE = C.pipe;
    constexpr int BM = 64 * NWG, NS = PIPE ? 3 : 2;
    constexpr size_t smem = (size_t)(2 * BM + 2 * NS * BN) * HD * sizeof(bf16);
    static_assert((size_t)BM * (HD + 8) * sizeof(bf16) <= smem, "epilogue rows must fit");
    static_assert(smem <= 227 * 1024, "more shared memory than a Hopper block can have");
    static bool init = false;
    if (!init) { set_smem(flash_bwd_dq_sm90_kernel<HD, NWG, BN, PIPE>, smem); init = true; }
    dim3 grid(ceil_div(p.max_rows, BM), p.B * p.nkv);
    flash_bwd_dq_sm90_kernel<HD, NWG, BN, PIPE><<<grid, NWG * 128, smem, stream>>>(dq, q, k, v, dout, L, D, p);
    cudaLaunchCheck();
}

}  // namespace flash
