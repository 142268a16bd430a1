// The warp-specialized deterministic backward of Hopper (sm_90a): flash_bwd_ws_sm90_kernel and
// its launcher. Built on the wgmma helpers and the tile pieces of flash_sm90.cuh (its tensor
// maps, the backward's wgmma issue functions, the dQ partial's swizzled rows).
#pragma once
#include "flash_sm90.cuh"

namespace flash {

// The deterministic fused backward of Hopper, warp-specialized: FlashAttention-3's structure
// for the ordered dQ sums (DQ_ORDERED of flash_bwd_dkdv_sm90_kernel, flash_sm90.cuh). The
// trainers' ordered backward at hd 64 and 128 (TMA loads in the fixed layout; else cp.async)
// and at padded hd 80 with TMA loads (one query head per group: the DiT), and in its atomic mode
// their fast one; FlashTiles (flash_attention.cuh) says where. dev/cuda/attention times the other
// configurations as lab variants 30-40 (ordered) and 22-23 (atomic: OPT BWD_WS_ATOMIC).
// CTA = 3 warpgroups, BN = 128 keys of one group (K, V resident), BQ = 64 query rows per tile
// (or 128 at hd <= 64, dQ split by rows as MSPLIT in that kernel), query tiles last to first:
//   - warps 0-2 (the producer) load K and V once, then every Q / dO / L / D tile into NS
//     stages with cp.async, each stage's arrival signalled on an mbarrier (full), a stage
//     reused once both consumer warpgroups have released it (free: its dV and dK products
//     are done);
//   - warp 3 (the dQ writer) takes each tile's dQ partial from one of two shared buffers (or
//     one: BWD_WS_ONE_DQ) (dq full: the consumers wrote it), waits for the query tile's turn
//     (the counter says this K/V tile), hands it to the bulk-copy engine as one reduction (K/V
//     tile 0: a store), frees the buffer once the engine has read it (dq free), waits for the
//     sums to land and passes the turn on;
//     with dq given (ordered, TMA loads, causal: bwd_ws_fused_dq), at a query tile's last K/V
//     tile the sums are complete once they land: the writer copies them back into the buffer
//     instead of freeing it, and warps 1-2 (idle with TMA loads) write them to dq in bf16 and
//     free it, so no pass after the kernel reads the whole fp32 accumulator back from memory;
//     BWD_WS_ATOMIC: no turn, a reduction into the zeroed accumulator, the buffer free once read;
//   - warpgroups 1 and 2 (the consumers, 64 keys each) compute: S^T and dP^T, P^T and dS^T,
//     dS^T to one of two shared buffers, a barrier of the two (dQ needs every key's rows), then
//     dQ = dS K (its half of the columns), dV += P^T dO, dK += dS^T Q; dQ to the writer's buffer
//     while dV and dK run.
// Why: in flash_bwd_dkdv_sm90_kernel every thread loads and the CTA meets at a barrier every
// tile, and the warp that issues the dQ copies waits for the turn inside a compute warpgroup;
// here the consumers never wait for loads that were issued in time or for another CTA's turn
// (only when both dQ buffers are still in flight), and their two warpgroups meet once per tile.
// The dQ partial, its swizzled rows and the fixed order of the additions are those of
// DQ_ORDERED, so dQ is bit-identical run to run. Head dims up to 80, and 128 with two stages.
// TMA: the producer's thread 0 hands each Q and dO tile to the tensor copy engine, warp 0 copies
// L and D with cp.async; the consumers read Q and dO through swizzle descriptors. Padded hd 80
// (one query head per group, fixed or varlen): 32-byte swizzled 16-column blocks (the forward's
// maps; columns past hd read as zeros). hd 64 / 128 (fixed layout, any r dividing 64): one / two
// 128-byte swizzled blocks of 64 columns; dO through a 5-D map (tma_map_group_rows) whose box
// is the group's BQ rows. 128 query rows with TMA (hd 64) fit with one dQ buffer only.
template <int HD, int BQ, int NS, int NDQ = 2>
struct BwdWsSmem {
    static constexpr int BN = 128;
    static constexpr size_t k = 0, v = k + (size_t)BN * HD * 2, q = v + (size_t)BN * HD * 2,  // K, V; [NS] Q tiles
        dout = q + (size_t)NS * BQ * HD * 2,          // [NS] dO tiles
        l = dout + (size_t)NS * BQ * HD * 2,          // [NS][BQ] L
        d = l + (size_t)NS * BQ * 4,                  // [NS][BQ] D
        ds = d + (size_t)NS * BQ * 4,                 // [2] dS^T tiles [BN][BQ]
        dq = ds + (size_t)2 * BN * BQ * 2,            // [NDQ] dQ partials [BQ][hd] fp32
        bars = dq + (size_t)NDQ * BQ * HD * 4,        // K/V full, full[NS], free[NS], dq full[NDQ], dq free[NDQ], dq sums[NDQ],
                                                      // ds full[2], ds free[2]
        bytes = bars + (size_t)(1 + 2 * NS + 3 * NDQ + 4) * 8;
    static_assert((size_t)2 * BN * (HD + 8) * 2 <= ds, "the epilogue's dK / dV rows stay below the dS^T buffers");
};
constexpr int BWD_WS_PRODUCER_REGS = 24, BWD_WS_CONSUMER_REGS = 240;
// OPT bits: BWD_WS_ATOMIC, the dQ partials added as they come (no turns: dq_acc zeroed before,
// the sum's order varies run to run; the trainers' fast backward); BWD_WS_ONE_DQ, one dQ buffer
// instead of two (the consumers wait for the writer's previous copy; shared memory for 128
// query rows with TMA); BWD_WS_HEAVY_FIRST, the whole grid one chunk of groups (below), K/V
// tile by K/V tile over all groups: measured slower than group by group at the causal GPT
// shapes (dev/cuda/NOTES.md), so only the lab takes it; BWD_WS_LAG_DQ, each step issues the
// previous step's dQ product (below) so that the two consumer warpgroups need not meet;
// BWD_WS_STMATRIX, dS^T to shared memory with stmatrix (bwd_store_ds_t_stmatrix; the table's at
// hd 128, where it was measured faster)
enum { BWD_WS_ATOMIC = 1, BWD_WS_ONE_DQ = 2, BWD_WS_HEAVY_FIRST = 4, BWD_WS_LAG_DQ = 8, BWD_WS_STMATRIX = 16 };
// The grid's order: chunks of CG groups, and within a chunk K/V tile by K/V tile over its groups
// (block x = K/V tile * the chunk's groups + group in the chunk, block y = chunk). Causal, the
// first K/V tiles' CTAs loop over every query tile: CG = 1 (group by group) starts the last
// groups' long CTAs at the end of the launch, where they run alone; a chunk of about two waves of
// CTAs starts its long ones first and fills its end with short ones, and keeps the groups whose
// Q / dO rows and dQ sums are in use at once fewer than the whole grid's (all the groups in one
// chunk, BWD_WS_HEAVY_FIRST, measured slower: L2, it seems). A CTA still waits only for a lower
// block index (K/V tile j - 1 of its group: the chunk's previous row of K/V tiles).
struct BwdWsBlock { int grp, kt; };
__device__ __forceinline__ bool bwd_ws_block(BwdWsBlock& b, int kts, int groups) {
    const int cg = gridDim.x / kts, g0 = blockIdx.y * cg, n = min(cg, groups - g0);
    if ((int)blockIdx.x >= kts * n) return false;   // (the last chunk's missing groups)
    b.kt = blockIdx.x / n;
    b.grp = g0 + blockIdx.x % n;
    return true;
}
// Groups a chunk of the backward's grid: causal, about two waves of CTAs (kts K/V tiles a group);
// else 1 (every CTA loops over the same query tiles). bwd_ws_chunk_groups_lab, if set, overrides
// it (dev/cuda/attention's ATTN_BWD_CHUNK).
inline int bwd_ws_chunk_groups_lab = 0;
static int bwd_ws_chunk_groups(const FlashParams& p, int kts, bool heavy_first) {
    const int groups = p.B * p.nkv;
    const int cg = heavy_first                  ? groups
                   : bwd_ws_chunk_groups_lab > 0 ? bwd_ws_chunk_groups_lab
                   : p.causal                    ? 2 * flash_sm_count() / kts
                                                 : 1;
    return std::max(1, std::min(cg, groups));
}
// Whether the ordered TMA backward writes dq itself (warps 1-2 of the producer, at each query
// tile's last K/V tile) instead of a pass over the fp32 accumulator after it: causal calls, where
// a CTA is the last K/V tile of only its diagonal's few query tiles. With full attention one CTA
// a group is the last of every query tile. bwd_ws_fused_dq_lab (dev/cuda/attention's
// ATTN_BWD_FUSED_DQ): 1 never, 2 always.
// Only the ordered kernel can (its last K/V tile knows the sums are complete), with TMA loads
// (warps 1-2 free); the query split keeps the pass (not tried).
template <bool TMA, bool QSPLIT, int OPT>
constexpr bool bwd_ws_can_write_dq = TMA && !QSPLIT && !(OPT & BWD_WS_ATOMIC);
inline int bwd_ws_fused_dq_lab = 0;
static bool bwd_ws_fused_dq(const FlashParams& p) {
    return bwd_ws_fused_dq_lab == 1 ? false : bwd_ws_fused_dq_lab == 2 ? true : p.causal;
}
// QSPLIT: the query tiles split into gridDim.z chunks, a CTA per (K/V tile, group, chunk), for
// calls with few K/V tiles (cross-attention over a caption: 3 tiles of a group leave most SMs
// idle). dQ is unchanged (every query tile still gets its K/V tiles' partials in their order);
// each chunk writes its dK / dV sums in fp32 to a scratch that dkp / dvp then point to
// ([chunk][group][key][hd]), and flash_dkdv_split_reduce_kernel adds them in chunk order.
template <int HD, int BQ, int NS, bool TMA = false, bool QSPLIT = false, int OPT = 0>
__global__ void __launch_bounds__(384, 1) flash_bwd_ws_sm90_kernel(bf16* __restrict__ dkp, bf16* __restrict__ dvp,
                                                                   float* __restrict__ dq_acc, int* __restrict__ locks,
                                                                   bf16* __restrict__ dqp, const bf16* __restrict__ qp,
                                                                   const bf16* __restrict__ kp,
                                                                   const bf16* __restrict__ vp, const bf16* __restrict__ dout,
                                                                   const float* __restrict__ Lp, const float* __restrict__ Dp,
                                                                   const FlashParams p, const __grid_constant__ FwdTmaMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int NDQ = OPT & BWD_WS_ONE_DQ ? 1 : 2;
    constexpr bool ATOMIC = OPT & BWD_WS_ATOMIC, LAG = OPT & BWD_WS_LAG_DQ;
    using S = BwdWsSmem<HD, BQ, NS, NDQ>;
    static_assert(!TMA || (HD == 80 && BQ == 64) || (HD == 64 && (BQ == 64 || BQ == 128)) || (HD == 128 && BQ == 64),
                  "the TMA variant: padded hd 80 or hd 128 with 64 query rows, hd 64 with 64 or 128");
    // TMA blocks: TC columns of TB-byte rows (the swizzle's span: 128 bytes at hd 64, 32 at hd 80)
    constexpr int TC = HD % 64 == 0 ? 64 : 16, TB = 2 * TC;
    // dQ: BQ 64: warpgroup w computes the DQN = HD / 2 columns from w DQN of the 64 query rows;
    // BQ 128 (MSPLIT): the 64 query rows from 64 w, every column
    constexpr bool MSPLIT = BQ == 128;
    constexpr int BN = S::BN, NQ = BQ / 8, DB = HD / 8, LD = HD + 8, DQN = MSPLIT ? HD : HD / 2, NTP = 96;
    // hd as a constant where the call's hd is HD (TMA at hd 64 / 128: bwd_ws_tma_ok), for the dQ
    // partial's stores (bwd_dq_to_smem; its buffers 128-byte aligned)
    constexpr int HDK = TMA && HD % 64 == 0 ? HD : 0;
    static_assert(S::dq % 128 == 0 && (BQ * HD * 4) % 128 == 0, "the dQ buffers' alignment");
    static_assert((BQ == 64 && (HD <= 80 || (HD == 128 && NS == 2))) || (BQ == 128 && HD <= 64 && (!TMA || NDQ == 1)),
                  "the shared memory of two dS^T and NDQ dQ buffers");
    extern __shared__ __align__(1024) unsigned char flash_smem_raw[];
    unsigned char* flash_smem = TMA ? smem_align_1024(flash_smem_raw) : flash_smem_raw;   // (TMA: swizzled tiles)
    bf16* sK = reinterpret_cast<bf16*>(flash_smem + S::k);
    bf16* sV = reinterpret_cast<bf16*>(flash_smem + S::v);
    bf16* sQ = reinterpret_cast<bf16*>(flash_smem + S::q);
    bf16* sdO = reinterpret_cast<bf16*>(flash_smem + S::dout);
    float* sL = reinterpret_cast<float*>(flash_smem + S::l);
    float* sD = reinterpret_cast<float*>(flash_smem + S::d);
    bf16* sdS = reinterpret_cast<bf16*>(flash_smem + S::ds);
    float* sdq = reinterpret_cast<float*>(flash_smem + S::dq);
    const uint32_t bar_kv = smem_u32(flash_smem + S::bars);
    auto bar_full = [&](int s) { return bar_kv + 8 * (1 + s); };
    auto bar_free = [&](int s) { return bar_kv + 8 * (1 + NS + s); };
    auto bar_dq_full = [&](int b) { return bar_kv + 8 * (1 + 2 * NS + b); };
    auto bar_dq_free = [&](int b) { return bar_kv + 8 * (1 + 2 * NS + NDQ + b); };
    auto bar_dq_sums = [&](int b) { return bar_kv + 8 * (1 + 2 * NS + 2 * NDQ + b); };
    auto bar_ds_full = [&](int b) { return bar_kv + 8 * (1 + 2 * NS + 3 * NDQ + b); };
    auto bar_ds_free = [&](int b) { return bar_kv + 8 * (3 + 2 * NS + 3 * NDQ + b); };
    // warp-uniform role indices (see flash_fwd_sm90_ws_kernel)
    const int wg = __shfl_sync(0xffffffff, threadIdx.x / 128, 0), warp = __shfl_sync(0xffffffff, threadIdx.x / 32, 0);
    const int lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int ngroups = p.B * p.nkv;
    BwdWsBlock blk;
    if (!bwd_ws_block(blk, ceil_div(p.max_Tk, BN), ngroups)) return;
    const int grp = blk.grp, kt = blk.kt, n0 = kt * BN;
    const FlashGroup G = flash_group(p, grp);
    if (n0 >= G.Tk) return;  // (K/V tile 0, which stores the sums' first term, always runs)
    const int hd = p.hd, T = G.Tk, rows = G.rows, r = p.r;
    const int it0 = p.causal ? (n0 * r) / BQ : 0, nit = ceil_div(rows, BQ);
    int lo = it0, hi = nit;   // the query tiles of this CTA
    if constexpr (QSPLIT) {   // chunk z: tiles [z per, (z + 1) per), the same for every K/V tile (a
        // query tile's K/V tiles then take their dQ turns in CTAs of one chunk, in block order)
        const int per = ceil_div(nit, (int)gridDim.z);
        lo = max(it0, (int)blockIdx.z * per);
        hi = min(nit, ((int)blockIdx.z + 1) * per);
        if (hi < lo) hi = lo;
    }
    const int nsteps = hi - lo;
    auto tile_of = [&](int step) { return hi - 1 - step; };  // last to first (see DQ_ORDERED)
    // dq written here (dqp given): at the query tiles whose last K/V tile this CTA is, the tiles
    // below dq_hi (the group's last K/V tile: all of them; causal: those whose last row this K/V
    // tile reaches, (it + 1) BQ <= (kt + 1) BN r, the diagonal's; else none)
    constexpr bool DQ_HERE = bwd_ws_can_write_dq<TMA, QSPLIT, OPT>;   // (the launcher passes dqp only then)
    const int dq_hi = !DQ_HERE || dqp == nullptr ? 0 : kt == ceil_div(G.Tk, BN) - 1 ? nit : p.causal ? ((kt + 1) * BN * r) / BQ : 0;
    auto writes_dq = [&](int it) { return it < dq_hi; };
    if (threadIdx.x == 0) {
        mbarrier_init(bar_kv, NTP);
        for (int s = 0; s < NS; s++) {
            // one cp.async arrival per producer thread (TMA: thread 0's arrive.expect_tx and the
            // L / D copies' arrivals of warp 0's 32 lanes)
            mbarrier_init(bar_full(s), TMA ? 33 : NTP);
            mbarrier_init(bar_free(s), 8);    // one arrival per consumer warp
        }
        for (int b = 0; b < NDQ; b++) {
            mbarrier_init(bar_dq_full(b), 256);  // every consumer thread (its own stores)
            mbarrier_init(bar_dq_free(b), 1);    // the writer (or a converter: writes_dq)
            mbarrier_init(bar_dq_sums(b), 1);    // the writer's copy of the complete sums
        }
        for (int b = 0; b < 2; b++) {   // (LAG)
            mbarrier_init(bar_ds_full(b), 256);  // every consumer thread (its own rows of dS^T)
            mbarrier_init(bar_ds_free(b), 8);    // one arrival per consumer warp (its dQ product read them)
        }
        fence_mbarrier_init();
    }
    __syncthreads();

    if (wg == 0) {
        setmaxnreg_dec<BWD_WS_PRODUCER_REGS>();
        if (warp < 3) {  // the producer
            const float* L = Lp + G.ld0;
            const float* Dg = Dp + G.ld0;
            const FlashGroupRows R = flash_group_rows(p, G, qp, kp, vp, dout);
            load_tile_cm<BN, HD, NTP, FlashRows, 2>(sK, n0, T, hd, R.k);
            load_tile_cm<BN, HD, NTP, FlashRows, 2>(sV, n0, T, hd, R.v);
            cp_async_mbarrier_arrive(bar_kv);
            if constexpr (TMA) {
                // coordinates past the columns: Q fixed (row, group) or varlen (head, token); dO at
                // 16-column blocks (head, token) in both layouts (one query head per group: row i is
                // token i), at 64-column blocks (head in group, group, token, sample)
                const int b = grp / p.nkv, gk = grp % p.nkv, tok0 = p.varlen ? p.cu_q[b] : b * p.T;
                for (int step = 0; step < nsteps && warp == 0; step++) {
                    const int st = step % NS, m0 = tile_of(step) * BQ;
                    if (step >= NS) mbarrier_wait(bar_free(st), (step / NS - 1) & 1);
                    if (threadIdx.x == 0) {
                        mbarrier_arrive_expect_tx(bar_full(st), 2 * BQ * HD * 2);
                        for (int h = 0; h < HD / TC; h++) {
                            tma_load_3d(smem_u32(sQ + st * BQ * HD) + h * BQ * TB, &maps.q, bar_full(st), h * TC,
                                        p.varlen ? gk : m0, p.varlen ? tok0 + m0 : grp);
                            if constexpr (TC == 16)
                                tma_load_3d(smem_u32(sdO + st * BQ * HD) + h * BQ * TB, &maps.k, bar_full(st), h * TC, gk, tok0 + m0);
                            else
                                tma_load_5d(smem_u32(sdO + st * BQ * HD) + h * BQ * TB, &maps.k, bar_full(st), h * TC, 0, gk, m0 / r, b);
                        }
                    }
                    for (int i = lane; i < BQ; i += 32) {
                        const bool ok = m0 + i < rows;
                        cp_async4(smem_u32(sL + st * BQ + i), ok ? L + m0 + i : L, ok);
                        cp_async4(smem_u32(sD + st * BQ + i), ok ? Dg + m0 + i : Dg, ok);
                    }
                    cp_async_mbarrier_arrive(bar_full(st));
                }
                if (DQ_HERE && warp > 0 && dq_hi > lo) {   // warps 1-2: the complete sums of the tiles below dq_hi, to dq
                    const int tid = threadIdx.x - 32, CH = hd / 8, first = max(0, hi - dq_hi);
                    for (int step = first; step < nsteps; step++) {
                        const int b = step % NDQ, m0 = tile_of(step) * BQ;
                        mbarrier_wait(bar_dq_sums(b), ((step - first) / NDQ) & 1);   // (the buffer's uses since `first`)
                        const float* src = sdq + b * BQ * HD;
                        const int n = min(BQ, rows - m0) * CH;
                        for (int e = tid; e < n; e += 64) {
                            const int i = e / CH, c = e % CH;
                            const size_t row = G.ld0 + m0 + i;
                            const float4* s4 = reinterpret_cast<const float4*>(src + i * hd + (c ^ dq_chunk_swizzle(row, hd)) * 8);
                            dq_store_chunk(dqp, row, c, s4[0], s4[1], p);
                        }
                        named_barrier_sync(2, 64);
                        if (tid == 0) mbarrier_arrive(bar_dq_free(b));
                    }
                }
            } else {
                for (int step = 0; step < nsteps; step++) {
                    const int st = step % NS, m0 = tile_of(step) * BQ;
                    if (step >= NS) mbarrier_wait(bar_free(st), (step / NS - 1) & 1);
                    load_tile_cm<BQ, HD, NTP, FlashRows, 2>(sQ + st * BQ * HD, m0, rows, hd, R.q);
                    load_tile_cm<BQ, HD, NTP, FlashOutRows, 2>(sdO + st * BQ * HD, m0, rows, hd, R.o);
                    for (int i = threadIdx.x; i < BQ; i += NTP) {
                        const bool ok = m0 + i < rows;
                        cp_async4(smem_u32(sL + st * BQ + i), ok ? L + m0 + i : L, ok);
                        cp_async4(smem_u32(sD + st * BQ + i), ok ? Dg + m0 + i : Dg, ok);
                    }
                    cp_async_mbarrier_arrive(bar_full(st));
                }
            }
            cp_async_wait<0>();
        } else if (lane == 0) {  // the dQ writer
            float* acc_g = dq_acc + G.ld0 * hd;
            const int b_ = grp / p.nkv, gk = grp % p.nkv;
            int* lock0 = ATOMIC ? nullptr
                                : locks + (p.varlen ? (size_t)gk * flash_varlen_lock_stride(p.Nq, p.B) + p.cu_q[b_] / BQ + b_
                                                    : (size_t)grp * nit);
            for (int step = 0; step < nsteps; step++) {
                const int b = step % NDQ, it = tile_of(step), m0 = it * BQ;
                mbarrier_wait(bar_dq_full(b), (step / NDQ) & 1);
                const uint32_t bytes = (uint32_t)min(BQ, rows - m0) * hd * 4;
                if (!ATOMIC) {
                    while (ld_acquire(lock0 + it) != kt) __nanosleep(20);
                    fence_proxy_async_global();  // the predecessors' sums, seen through the counter, before ours
                }
                if (!ATOMIC && kt == 0) bulk_copy_s2g(acc_g + (size_t)m0 * hd, smem_u32(sdq + b * BQ * HD), bytes);
                else bulk_reduce_add_f32(acc_g + (size_t)m0 * hd, smem_u32(sdq + b * BQ * HD), bytes);
                bulk_commit();
                bulk_wait_read();
                const bool last = writes_dq(it);
                if (!last) mbarrier_arrive(bar_dq_free(b));   // the buffer, once read, while the sums land
                if (!ATOMIC) {
                    bulk_wait_all();
                    __threadfence();
                    atomicAdd(lock0 + it, 1);
                }
                if (last) {   // the complete sums back into the buffer, for warps 1-2
                    fence_proxy_async_global();
                    mbarrier_arrive_expect_tx(bar_dq_sums(b), bytes);
                    bulk_copy_g2s(smem_u32(sdq + b * BQ * HD), acc_g + (size_t)m0 * hd, bytes, bar_dq_sums(b));
                }
            }
            if constexpr (ATOMIC) bulk_wait_all();
        }
        return;
    }

    setmaxnreg_inc<BWD_WS_CONSUMER_REGS>();
    const int cw = wg - 1, cwarp = warp - 4;  // consumer warpgroup 0/1 (64 keys each); warp 0..7 of them
    const int keyA = n0 + cwarp * 16 + g, keyB = keyA + 8;
    const uint64_t desc_k = wgmma_desc_kmajor(smem_u32(sK + cw * 64 * HD), HD);
    const uint64_t desc_v = wgmma_desc_kmajor(smem_u32(sV + cw * 64 * HD), HD);
    float dk[DB][4], dv[DB][4];
#pragma unroll
    for (int d = 0; d < DB; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[d][e] = dv[d][e] = 0.0f;
    wgmma_fence_operand(dk);
    wgmma_fence_operand(dv);
    float dq[DQN / 8][4];
    // this warpgroup's block of the dQ partial of step `step` (its products done) to its buffer
    auto dq_out = [&](int step) {
        const int qb = step % NDQ;
        if (step >= NDQ) mbarrier_wait(bar_dq_free(qb), (step / NDQ - 1) & 1);
        bwd_dq_to_smem<DQN, HDK>(sdq + qb * BQ * HD, dq, (MSPLIT ? cw * 64 : 0) + (warp % 4) * 16 + g,
                                 MSPLIT ? 0 : cw * (DQN / 8), G.ld0 + tile_of(step) * BQ, hd, tq);
        fence_proxy_async();  // the partial (generic proxy stores) before the bulk reduction reads it
        mbarrier_arrive(bar_dq_full(qb));
    };
    // this warpgroup's DQN columns (MSPLIT: 64 rows) of dQ over all BN keys, from dS^T buffer b
    auto issue_dq = [&](int b) {
        bwd_issue_dq<HD, BQ, BN, DQN>(dq, smem_u32(sdS + b * BN * BQ) + (MSPLIT ? cw * 8 * 128 : 0),
                                      smem_u32(sK) + (MSPLIT ? 0 : cw * (DQN / 8) * 128));
    };
    mbarrier_wait(bar_kv, 0);
    // LAG: warpgroup 1 starts once warpgroup 0 has its first dS^T, so that one's elementwise work
    // runs under the other's products from the start
    if (LAG && cw == 1 && nsteps > 0) named_barrier_sync(3, 256);
    for (int step = 0; step < nsteps; step++) {
        const int it = tile_of(step), st = step % NS, m0 = it * BQ, b = step & 1;
        mbarrier_wait(bar_full(st), (step / NS) & 1);
        fence_proxy_async();  // cp.async (generic proxy) wrote what wgmma (async proxy) reads
        const uint32_t sQs = smem_u32(sQ + st * BQ * HD), sdOs = smem_u32(sdO + st * BQ * HD);
        const float* sLs = sL + st * BQ;
        const float* sDs = sD + st * BQ;
        float s[NQ][4], dp[NQ][4];
        // Q and dO: core-matrix tiles, or (TMA) swizzled blocks: a K-major k16 step is the next
        // 16-column block (BQ rows of 32 bytes) or 32 bytes further in the 128-byte rows; an
        // MN-major k16 step is 16 rows (16 TB bytes)
        if constexpr (TMA && TC == 16)
            bwd_issue_scores_t<HD, BQ, BQ * 2>(s, dp, desc_k, desc_v, wgmma_desc_sw32(sQs, 16, 256), wgmma_desc_sw32(sdOs, 16, 256));
        else if constexpr (TMA)
            bwd_issue_scores_t<HD, BQ, 2, BQ * 8>(s, dp, desc_k, desc_v, wgmma_desc_sw128(sQs, 16, 1024), wgmma_desc_sw128(sdOs, 16, 1024));
        else
            bwd_issue_scores_t<HD, BQ>(s, dp, desc_k, desc_v, wgmma_desc_kmajor(sQs, HD), wgmma_desc_kmajor(sdOs, HD));
        uint32_t ap[BQ / 16][4], ads[BQ / 16][4];
        bwd_p_ds<BQ, BN>(s, dp, ap, ads, sLs, sDs, m0, n0, rows, keyA, keyB, p, tq);
        // dS^T into buffer b: last read by the dQ products of step - 2, which both warpgroups
        // waited for before the barrier of step - 1 (LAG: which both warpgroups issued at step - 1
        // and said so on ds free)
        if (LAG && step >= 2) mbarrier_wait(bar_ds_free(b), ((step - 2) / 2) & 1);
        if constexpr (OPT & BWD_WS_STMATRIX) bwd_store_ds_t_stmatrix<BQ>(sdS + b * BN * BQ, ads, cwarp * 16, lane);
        else bwd_store_ds_t<BQ>(sdS + b * BN * BQ, ads, cwarp * 16 + g, tq);
        fence_proxy_async();
        if constexpr (LAG) {
            mbarrier_arrive(bar_ds_full(b));
            if (cw == 0 && step == 0) named_barrier_arrive(3, 256);
        } else {
            named_barrier_sync(1, 256);  // both warpgroups' rows of dS^T are in
        }
        // LAG: the other warpgroup's rows of the previous dS^T, for its dQ product below
        if (LAG && step > 0) mbarrier_wait(bar_ds_full(b ^ 1), ((step - 1) / 2) & 1);
        wgmma_fence_operand(dv);
        wgmma_fence_operand(dk);
        wgmma_fence();
        // dQ first, so that its partial goes out while dV and dK run on (LAG: the previous step's
        // dQ after dV; at step 0 a product over what buffer 1 holds, its result dropped: no wgmma
        // under a branch, ptxas then spills)
        if constexpr (!LAG) {
            issue_dq(b);
            wgmma_commit();
        }
        if constexpr (TMA && TC == 16) bwd_issue_rs<HD, BQ, 32>(dv, ap, wgmma_desc_sw32(sdOs, BQ * 32, 256));
        else if constexpr (TMA) bwd_issue_rs<HD, BQ, 128>(dv, ap, wgmma_desc_sw128(sdOs, BQ * 128, 1024));
        else bwd_issue_rs<HD, BQ>(dv, ap, wgmma_desc_mnmajor(sdOs, HD));
        wgmma_commit();
        if constexpr (LAG) {
            issue_dq(b ^ 1);
            wgmma_commit();
        }
        if constexpr (TMA && TC == 16) bwd_issue_rs<HD, BQ, 32>(dk, ads, wgmma_desc_sw32(sQs, BQ * 32, 256));
        else if constexpr (TMA) bwd_issue_rs<HD, BQ, 128>(dk, ads, wgmma_desc_sw128(sQs, BQ * 128, 1024));
        else bwd_issue_rs<HD, BQ>(dk, ads, wgmma_desc_mnmajor(sQs, HD));
        wgmma_commit();
        if constexpr (LAG) wgmma_wait<1>();   // dV and the previous dQ
        else wgmma_wait<2>();                 // dQ
        wgmma_fence_operand(dq);
        if (!LAG) {
            dq_out(step);
        } else if (step > 0) {
            __syncwarp();
            if (lane == 0) mbarrier_arrive(bar_ds_free(b ^ 1));
            dq_out(step - 1);
        }
        wgmma_wait<0>();
        wgmma_fence_operand(dv);
        wgmma_fence_operand(dk);
        wgmma_fence_operand(ap);
        wgmma_fence_operand(ads);
        __syncwarp();
        if (lane == 0) mbarrier_arrive(bar_free(st));  // dV read dO, dK read Q: the stage is free
    }
    if (LAG && nsteps > 0) {   // the last step's dQ
        const int b = (nsteps - 1) & 1;
        mbarrier_wait(bar_ds_full(b), ((nsteps - 1) / 2) & 1);
        wgmma_fence();
        issue_dq(b);
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_operand(dq);
        dq_out(nsteps - 1);
    }
    if constexpr (QSPLIT) {   // this chunk's sums, fp32, straight from the fragments
        const size_t base = ((size_t)blockIdx.z * ngroups + grp) * p.max_Tk;
        float* pk = reinterpret_cast<float*>(dkp) + base * hd;
        float* pv = reinterpret_cast<float*>(dvp) + base * hd;
#pragma unroll
        for (int d = 0; d < DB; d++) {
            const int c = d * 8 + 2 * tq;
            if (c >= hd) continue;
            if (keyA < T) {
                *reinterpret_cast<float2*>(pk + (size_t)keyA * hd + c) = make_float2(dk[d][0] * p.scale, dk[d][1] * p.scale);
                *reinterpret_cast<float2*>(pv + (size_t)keyA * hd + c) = make_float2(dv[d][0], dv[d][1]);
            }
            if (keyB < T) {
                *reinterpret_cast<float2*>(pk + (size_t)keyB * hd + c) = make_float2(dk[d][2] * p.scale, dk[d][3] * p.scale);
                *reinterpret_cast<float2*>(pv + (size_t)keyB * hd + c) = make_float2(dv[d][2], dv[d][3]);
            }
        }
        return;
    }
    // the other warpgroup's last products may still read sK / sV / sQ, which the rows below reuse
    named_barrier_sync(1, 256);
    bf16* sOk = reinterpret_cast<bf16*>(flash_smem) + cwarp * 16 * LD;
    bf16* sOv = reinterpret_cast<bf16*>(flash_smem) + (BN + cwarp * 16) * LD;
    store_rows<HD>(sOk, dk, p.scale, p.scale, lane);
    store_rows<HD>(sOv, dv, 1.0f, 1.0f, lane);
    copy_rows_out<HD>(sOk, n0 + cwarp * 16, T, hd, lane, [&](int i) { return dkp + G.k0 + (size_t)i * p.k_rs; });
    copy_rows_out<HD>(sOv, n0 + cwarp * 16, T, hd, lane, [&](int i) { return dvp + G.v0 + (size_t)i * p.v_rs; });
#elif defined(__CUDA_ARCH__)
    __trap();
#endif
}
// dO of the fixed layout ([B][T][nh * hd], the r query heads of a K/V head side by side) as a
// 5-D map {hd, r, nkv, T, B}: a box of r heads x box_rows / r tokens is box_rows consecutive rows
// i = t r + j of one group, the order of the Q tile's rows; tokens past T read as zeros
static CUtensorMap tma_map_group_rows(const bf16* base, int hd, int r, int nkv, int T, int B, int token_elems, int box_rows) {
    return tma_map<5>(base, {(cuuint64_t)hd, (cuuint64_t)r, (cuuint64_t)nkv, (cuuint64_t)T, (cuuint64_t)B},
                      {(cuuint64_t)hd * 2, (cuuint64_t)r * hd * 2, (cuuint64_t)token_elems * 2, (cuuint64_t)T * token_elems * 2},
                      {64, (cuuint32_t)r, 1, (cuuint32_t)(box_rows / r), 1});
}
// whether the TMA variant can take this call: padded hd 80 with one query head per group (the
// forward's conditions, and dO's token stride), or hd 64 / 128 in the fixed layout with r
// dividing 64 query rows (a box holds whole tokens); 16-byte aligned bases
template <int HD>
static bool bwd_ws_tma_ok(const bf16* q, const bf16* dout, const FlashParams& p) {
    if (HD % 64 == 0)
        return !p.varlen && p.hd == HD && 64 % p.r == 0 && ((uintptr_t)q | (uintptr_t)dout) % 16 == 0 && p.o_ts % 8 == 0;
    return HD == 80 && p.r == 1 && fwd_tma_ok<80>(q, q, dout, p) && p.o_ts % 8 == 0;
}
// The query-split backward's dK and dV: the chunks' fp32 sums added in chunk order (the same
// additions every run), rounded once, into the layouts of k and v
__global__ static void flash_dkdv_split_reduce_kernel(bf16* __restrict__ dk, bf16* __restrict__ dv, const float* __restrict__ pk,
                                                      const float* __restrict__ pv, int chunks, const FlashParams p) {
    const int grp = blockIdx.y, hd = p.hd;
    const FlashGroup G = flash_group(p, grp);
    const size_t n = (size_t)G.Tk * hd, chunk = (size_t)gridDim.y * p.max_Tk * hd, g0 = (size_t)grp * p.max_Tk * hd;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        float sk = 0.0f, sv = 0.0f;
        for (int c = 0; c < chunks; c++) {
            sk += pk[c * chunk + g0 + e];
            sv += pv[c * chunk + g0 + e];
        }
        const size_t i = e / hd, d = e % hd;
        dk[G.k0 + i * p.k_rs + d] = __float2bfloat16(sk);
        dv[G.v0 + i * p.v_rs + d] = __float2bfloat16(sv);
    }
}
// The floats of scratch QSPLIT's chunks need (dK and dV partials)
static size_t bwd_ws_split_floats(const FlashParams& p, int chunks) { return 2 * (size_t)chunks * p.B * p.nkv * p.max_Tk * p.hd; }
// Query chunks for QSPLIT: enough CTAs to fill the GPU (sms) about twice, each chunk at least
// 32 query tiles of BQ rows (a CTA's fixed costs, the K/V load, the pipeline's fill and the fp32
// partials, stay small against its loop; dev/cuda/NOTES.md has the two shapes that set it), at
// most FLASH_QSPLIT_MAX_CHUNKS and what room_floats of scratch hold
static int bwd_ws_query_chunks(const FlashParams& p, int BQ, int sms, size_t room_floats) {
    const long long ctas = (long long)ceil_div(p.max_Tk, 128) * p.B * p.nkv, tiles = ceil_div(p.max_rows, BQ);
    const size_t per_chunk = bwd_ws_split_floats(p, 1);
    if (per_chunk == 0) return 1;
    const long long fit = (long long)std::min(room_floats / per_chunk, (size_t)FLASH_QSPLIT_MAX_CHUNKS);
    return (int)std::max(1LL, std::min({(2LL * sms + ctas - 1) / ctas, tiles / 32, fit}));
}

// QSPLIT: chunks query chunks, dkv_part bwd_ws_split_floats(p, chunks) floats of scratch
template <int HD, int BQ, int NS, bool TMA = false, bool QSPLIT = false, int OPT = 0>
static void bwd_ws_sm90_launch(bf16* dq, bf16* dk, bf16* dv, float* dq_acc, int* locks, const bf16* q, const bf16* k,
                               const bf16* v, const bf16* dout, const float* L, const float* D, const FlashParams& p,
                               cudaStream_t stream, float* dkv_part = nullptr, int chunks = 1) {
    constexpr size_t smem = BwdWsSmem<HD, BQ, NS, OPT & BWD_WS_ONE_DQ ? 1 : 2>::bytes + (TMA ? 1024 : 0);   // (TMA: the base's alignment slack)
    static_assert(smem <= 227 * 1024, "more shared memory than a Hopper block can have");
    static bool init = false;
    if (!init) { set_smem(flash_bwd_ws_sm90_kernel<HD, BQ, NS, TMA, QSPLIT, OPT>, smem); init = true; }
    if (OPT & BWD_WS_ATOMIC) flash_dq_acc_zero(dq_acc, p, stream);
    else flash_locks_zero(locks, p, BQ, stream);  // K/V tile 0 stores the sums' first term: no zeroing of dq_acc
    FwdTmaMaps maps;   // TMA: q, and dO in the slot of k
    memset(&maps, 0, sizeof(maps));
    if constexpr (TMA && HD % 64 == 0) {
        maps.q = tma_map_rows(q, p.hd, p.rows, p.B * p.nkv, 64, BQ);
        maps.k = tma_map_group_rows(dout, p.hd, p.r, p.nkv, p.T, p.B, p.o_ts, BQ);
    } else if constexpr (TMA) {
        maps.q = p.varlen ? tma_map_tokens(q, p.hd, p.nh, p.Nq, p.q_rs, 16, BQ) : tma_map_rows(q, p.hd, p.rows, p.B * p.nkv, 16, BQ);
        maps.k = tma_map_tokens(dout, p.hd, p.nh, p.Nq, p.o_ts, 16, BQ);
    }
    bf16* dq_in_kernel = bwd_ws_can_write_dq<TMA, QSPLIT, OPT> && bwd_ws_fused_dq(p) ? dq : nullptr;
    const int kts = ceil_div(p.max_Tk, BwdWsSmem<HD, BQ, NS>::BN), groups = p.B * p.nkv;
    const int cg = QSPLIT ? 1 : bwd_ws_chunk_groups(p, kts, OPT & BWD_WS_HEAVY_FIRST);
    const dim3 grid(kts * cg, ceil_div(groups, cg), QSPLIT ? chunks : 1);
    if constexpr (QSPLIT) {
        float* pk = dkv_part;
        float* pv = dkv_part + bwd_ws_split_floats(p, chunks) / 2;
        flash_bwd_ws_sm90_kernel<HD, BQ, NS, TMA, true, OPT><<<grid, 384, smem, stream>>>(
            reinterpret_cast<bf16*>(pk), reinterpret_cast<bf16*>(pv), dq_acc, locks, nullptr, q, k, v, dout, L, D, p, maps);
        cudaLaunchCheck();
        flash_dkdv_split_reduce_kernel<<<dim3(ceil_div(p.max_Tk * p.hd, 256), p.B * p.nkv), 256, 0, stream>>>(dk, dv, pk, pv, chunks, p);
        cudaLaunchCheck();
    } else {
        flash_bwd_ws_sm90_kernel<HD, BQ, NS, TMA, false, OPT><<<grid, 384, smem, stream>>>(dk, dv, dq_acc, locks, dq_in_kernel, q, k,
                                                                                          v, dout, L, D, p, maps);
        cudaLaunchCheck();
    }
    if (!dq_in_kernel) flash_dq_acc_to_bf16(dq, dq_acc, p, stream, true);
}


}  // namespace flash
