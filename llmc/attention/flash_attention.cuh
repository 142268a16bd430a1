// Fused attention in the FlashAttention-2 style: forward and backward without
// the [T, T] score matrix in global memory, grouped-query heads, causal or full.
// This file is the API (flash_attention_{forward,backward}, flash_attention_varlen_*), the
// settings the trainers pass (FlashSettings) and the dispatch: which kernel runs with which
// tiles for each head dim and GPU (FlashTiles, the one table of tile choices).
//
// Layouts (fixed, the GPT; varlen, the DiT: flash_common.cuh):
//   q [B, nkv, T, r, hd] (the r = nh/nkv query heads of one K/V head side by side),
//   k, v [B, nkv, T, hd], out / dout [B, T, nh*hd] (token-major),
//   lse [B, nh, T] fp32 (natural-log logsumexp of each scaled score row, saved by
//   the forward for the backward), dq/dk/dv in the layouts of q/k/v.
// For one (b, kv group) the r query heads are one [T*r, hd] matrix whose row
// i = t*r + j is query head j at position t: a query tile of the kernels spans
// all heads of a group, so every K/V tile loaded into shared memory serves r
// heads (no K/V copies), and the causal mask compares key c with t = i / r.
//
// Where the pieces are:
//   flash_common.cuh  shapes, per-launch parameters, scratch, the backward's prep kernel
//   flash_tiles.cuh   the tile math both bf16 families share (masks, online softmax, ...)
//   flash_mma.cuh     the mma.sync kernels (bf16, sm_80+)
//   flash_sm90.cuh    the wgmma kernels (sm_90a), on the helpers of wgmma.cuh
//   flash_sm90_bwd_ws.cuh  the warp-specialized deterministic backward (sm_90a)
//   flash_fp32.cuh    the fp32 build's scalar kernels (-DENABLE_FP32: same math and API, not fast)
//   dev/cuda/attention.cu (with dev/cuda/attention_variants.cuh) checks and times every kernel
//   and the tile variants the table was chosen from.
//
//   forward   one CTA per (query tile, group): S = Q K^T, online softmax, O = P V.
//   backward  1. prep: D = rowsum(dO * O) and lse * log2(e), both in the packed row order
//             then, by FlashBwdAlgo (flash_common.cuh; the policy picks it, flash_bwd_algo):
//             split    2. dK/dV: one CTA per (K/V tile, group), looping over the query tiles
//                         of the group's r heads: dV += P^T dO, dK += dS^T Q in registers
//                      3. dQ: one CTA per (query tile, group), looping over K/V tiles:
//                         dQ += dS K (S and dP computed a second time)
//             ordered  2+3 fused (sm90 only): the dK/dV kernel also adds dQ partials to an
//                         fp32 accumulator, in K/V-tile order per query tile (the trainers'
//                         default on Hopper)
//             atomic   2+3 fused (sm90 only), dQ partials added with fp32 atomics
//                         (--attn-backward fast)
#pragma once
#include "flash_common.cuh"
#if defined(ENABLE_FP32)
#include "flash_fp32.cuh"
#else
#include "flash_mma.cuh"
#include "flash_sm90.cuh"
#include "flash_sm90_bwd_ws.cuh"
#endif

// Which kernel family runs. The sm90 kernels need sm_90a code in the binary (make
// GPU_ARCH=90a, the default) and a compute capability 9.0 GPU; fp32 builds have only the
// scalar kernels.
//   per_head_dim  (the default) per head dim, the family the table FlashTiles picks
//   mma_sync      the mma.sync kernels everywhere
//   sm90          the sm90 kernels everywhere they can run
enum class FlashFamily { mma_sync = 0, per_head_dim = 1, sm90 = 2 };
// What the trainers choose (llmc/train/attention_flags.h fills it from --attn-backward and
// MEGA_FLASH_SM90); set once with flash_attention_configure, before the first call.
struct FlashSettings {
    FlashBwdPolicy backward = FlashBwdPolicy::deterministic;
    FlashFamily family = FlashFamily::per_head_dim;
};
static FlashSettings flash_settings;
static void flash_attention_configure(const FlashSettings& s) { flash_settings = s; }

// Whether this build and GPU have the sm90 kernels at all (sm_90a code, compute capability 9.0)
static bool flash_sm90_available() {
#if defined(MEGA_SM90A) && !defined(ENABLE_FP32)
    static int cc = -1;
    if (cc < 0) {
        const cudaDeviceProp prop = cuda_device_props();
        cc = prop.major * 10 + prop.minor;
    }
    return cc == 90;
#else
    return false;
#endif
}
static bool flash_sm90_active() { return flash_settings.family != FlashFamily::mma_sync && flash_sm90_available(); }

// The backward mechanism a policy gets: the fused sm90 kernels where they run (ordered for
// deterministic, atomic for fast), the split backward elsewhere (the fused mma.sync kernel
// is slower than split, see dev/cuda/NOTES.md).
static FlashBwdAlgo flash_bwd_algo(FlashBwdPolicy policy) {
    if (!flash_sm90_active()) return FlashBwdAlgo::split;
    return policy == FlashBwdPolicy::fast ? FlashBwdAlgo::atomic : FlashBwdAlgo::ordered;
}

#if defined(ENABLE_FP32)
static void flash_bwd_check_algo(FlashBwdAlgo) {}
static FlashBwdAlgo flash_bwd_algo_fixed(FlashBwdPolicy policy, int) { return flash_bwd_algo(policy); }
#else
// ----------------------------------------------------------------------------
// The dispatch table: for each padded head dim HD, the tiles of every kernel that runs, chosen
// from dev/cuda/attention.cu's timings on an H200 (dev/cuda/NOTES.md). Which family runs where:
//   forward   sm90 (warp-specialized) at hd 64 and 128 with TMA (fixed layout, hd exactly
//             64 / 128: fwd_tma_ok) and at padded hd 80 with TMA where fwd_tma_ok, else
//             cp.async; mma.sync elsewhere
//   backward  the fused sm90 kernel at every head dim where the sm90 kernels run (ordered or
//             atomic; at hd 64 and 128, and at padded hd 80 with one query head per group, the
//             warp-specialized one, atomic without its dQ turns, dev/cuda/NOTES.md; timed on an
//             H100); split: sm90 at padded hd 80 and 128, mma.sync elsewhere
// Head dims not named there were not measured: mma.sync.
template <int HD>
struct FlashTiles {
    // mma.sync (sm_80+): two m16 tiles per warp; Q / dO fragments in registers up to hd 64,
    // K/V fragments up to hd 80; K/V tiles of 32 keys for the large head dims
    static constexpr flash::MmaFwdConfig mma_fwd =
        HD <= 80 ? flash::MmaFwdConfig{128, 64, 2, HD <= 64} : flash::MmaFwdConfig{128, 32, 2, false};
    static constexpr flash::MmaDkdvConfig mma_dkdv = {HD <= 64 ? 64 : 128, 64, HD <= 80};
    static constexpr flash::MmaDqConfig mma_dq = {128, HD == 80 ? 64 : 32, HD <= 64, 2};
    // sm90 forward: the warp-specialized kernel, with TMA (hd 64, 128, padded hd 80) or cp.async
    // (padded hd 80 where the maps cannot be made); at hd 64 three consumer warpgroups (192 query
    // rows: a consumer's products are half those at hd 128 while its softmax is not, so with two
    // the tensor cores wait on both softmaxes) and the heaviest causal tiles of every group first
    // (WS_HEAVY_FIRST, so the short tiles fill the last wave). At padded hd 80 three consumers as
    // well, for the same reason, with 96 keys a K/V tile (S and P for 128 keys beside O's 80
    // columns do not fit their 160 registers); but where every sample's keys fit one 128-key
    // tile (a short caption's cross-attention) two consumers and 128 keys, so that no part-filled
    // second tile is loaded and multiplied. At hd 128 two consumers (the registers), and there
    // the heavy-first order lost (dev/cuda/NOTES.md); but the lazy rescale (WS_LAZY_RESCALE: O's
    // 64 columns a thread rescaled only where a row's max grew by 2^8), measured faster there and
    // slower at hd 64, whose rescale is half as long.
    static constexpr bool sm90_fwd_tma = HD % 64 == 0 || HD == 80, sm90_fwd_cp_async = HD == 80, sm90_fwd_few_keys = HD == 80;
    static constexpr flash::Sm90FwdWsConfig sm90_fwd_ws =
        HD == 64   ? flash::Sm90FwdWsConfig{128, 4, flash::WS_TMA | flash::WS_HEAVY_FIRST, 3}
        : HD == 80 ? flash::Sm90FwdWsConfig{96, 4, flash::WS_TMA, 3}
                   : flash::Sm90FwdWsConfig{128, 2, flash::WS_TMA | (HD == 128 ? flash::WS_LAZY_RESCALE : 0)};
    static constexpr flash::Sm90FwdWsConfig sm90_fwd_ws_cp_async = {96, 4, 0, 3}, sm90_fwd_ws_few_keys = {128, 3, 0};
    static constexpr flash::Sm90FwdConfig sm90_fwd = {2, 64};  // FlashFamily::sm90 elsewhere
    // sm90 split backward (the default family at these head dims; FlashFamily::sm90 everywhere)
    static constexpr bool sm90_split = HD == 80 || HD == 128;
    static constexpr flash::Sm90DkdvConfig sm90_dkdv = {2, 64, false, flash::DQ_NONE, 0};
    static constexpr flash::Sm90DqConfig sm90_dq = {2, 64, false};
    // sm90 fused backward: up to hd 80 128 query rows per tile (and three Q/dO stages where the
    // fp32 dQ tile leaves room: hd 64 ordered); at hd 128 (registers) 64 rows, two stages
    static constexpr flash::Sm90DkdvConfig sm90_ordered =
        HD <= 80 ? flash::Sm90DkdvConfig{2, 128, false, flash::DQ_ORDERED, HD <= 64 ? flash::DQ_NS3 : 0}
                 : flash::Sm90DkdvConfig{2, 64, false, flash::DQ_ORDERED, 0};
    // the ordered backward, warp-specialized (flash_sm90_bwd_ws.cuh), where it was measured faster
    // than the fused kernel. With TMA Q/dO loads where bwd_ws_tma_ok: hd 64 and 128 in the fixed
    // layout (r dividing 64; hd 64: 128 query rows, two stages, one dQ buffer; hd 128: 64 rows,
    // two stages, dS^T stored with stmatrix: measured faster there, not at hd 64 or padded 80,
    // dev/cuda/NOTES.md), padded hd 80 with one query head per group (64 rows, three stages; and
    // there the query split, where few K/V tiles leave SMs idle). With cp.async (elsewhere): hd 64
    // with 128 query rows (two stages), hd 128 with 64 (two stages: the shared memory); padded hd
    // 80 without TMA keeps the fused kernel.
    static constexpr bool sm90_ordered_ws_tma = HD == 64 || HD == 80 || HD == 128;
    static constexpr int sm90_ordered_ws_tma_bq = HD == 64 ? 128 : 64, sm90_ordered_ws_tma_stages = HD == 80 ? 3 : 2;
    static constexpr int sm90_ordered_ws_tma_opt = HD == 64 ? flash::BWD_WS_ONE_DQ : HD == 128 ? flash::BWD_WS_STMATRIX : 0;
    static constexpr int sm90_ordered_ws_bq = HD == 64 ? 128 : HD == 128 ? 64 : 0;
    static constexpr int sm90_ordered_ws_stages = 2;
    // the fast policy in the fixed layout (the GPT) at hd 64: the ordered backward, not the atomic
    // one (flash_bwd_algo_fixed; no accumulator to zero first, and in the chunked grid its dQ
    // turns seldom wait: faster than the atomic mode at the causal GPT shape, or within 1-2% since
    // the dQ partial goes out under dV and dK). At hd 128 the atomic mode, measured faster since
    // then (dev/cuda/NOTES.md).
    static constexpr bool sm90_fast_ordered = HD == 64;
    // the atomic backward: the warp-specialized kernel's atomic mode where the ordered one runs
    // it (flash_bwd_ws_hd), else the fused kernel with these tiles
    static constexpr flash::Sm90DkdvConfig sm90_atomic =
        HD <= 80 ? flash::Sm90DkdvConfig{2, 128, false, flash::DQ_PIPE, flash::DQ_RED4 | flash::DQ_NS3}
                 : flash::Sm90DkdvConfig{2, 64, false, flash::DQ_PIPE, 0};
};

template <int HD>
static void flash_fwd_hd(floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v, const FlashParams& p,
                         cudaStream_t st) {
    using T = FlashTiles<HD>;
    if (p.pos) {   // packed rows: the mma.sync kernels' variant that keeps attention inside each document
        flash::fwd_launch<HD, T::mma_fwd, true>(out, lse, q, k, v, p, st);
        return;
    }
    if (flash_sm90_active()) {
        if constexpr (T::sm90_fwd_few_keys) {   // every sample's keys in one tile of sm90_fwd_ws_few_keys
            if (p.max_Tk <= T::sm90_fwd_ws_few_keys.bn) {
                flash::fwd_sm90_ws_launch<HD, T::sm90_fwd_ws_few_keys>(out, lse, q, k, v, p, st);
                return;
            }
        }
        if constexpr (T::sm90_fwd_tma) {
            if (flash::fwd_tma_ok<HD>(q, k, v, p)) {
                flash::fwd_sm90_ws_launch<HD, T::sm90_fwd_ws>(out, lse, q, k, v, p, st);
                return;
            }
        }
        if constexpr (T::sm90_fwd_cp_async) {
            flash::fwd_sm90_ws_launch<HD, T::sm90_fwd_ws_cp_async>(out, lse, q, k, v, p, st);
            return;
        }
        if (flash_settings.family == FlashFamily::sm90) {
            flash::fwd_sm90_launch<HD, T::sm90_fwd>(out, lse, q, k, v, p, st);
            return;
        }
    }
    flash::fwd_launch<HD, T::mma_fwd>(out, lse, q, k, v, p, st);
}
// The warp-specialized backward (flash_sm90_bwd_ws.cuh) where the table has it, ordered (OPT 0)
// or atomic (BWD_WS_ATOMIC: the same tiles, no dQ turns); false where it does not run
template <int HD, int OPT>
static bool flash_bwd_ws_hd(floatX* dq, floatX* dk, floatX* dv, const FlashBwdScratch& w, const floatX* q, const floatX* k,
                            const floatX* v, const floatX* dout, const FlashParams& p, cudaStream_t st) {
    using T = FlashTiles<HD>;
    const float *L = w.L, *D = w.D;
    if constexpr (T::sm90_ordered_ws_tma) {
        if (flash::bwd_ws_tma_ok<HD>(q, dout, p)) {
            constexpr int BQ = T::sm90_ordered_ws_tma_bq, NS = T::sm90_ordered_ws_tma_stages;
            if constexpr (HD == 80) {   // few K/V tiles: the query tiles in chunks (QSPLIT)
                const int chunks = flash::bwd_ws_query_chunks(p, BQ, flash_sm_count(), w.split_floats);
                if (chunks > 1) {
                    flash::bwd_ws_sm90_launch<HD, BQ, NS, true, true, OPT>(dq, dk, dv, w.dq_acc, w.locks, q, k, v, dout, L, D, p, st,
                                                                          w.split, chunks);
                    return true;
                }
            }
            flash::bwd_ws_sm90_launch<HD, BQ, NS, true, false, OPT | T::sm90_ordered_ws_tma_opt>(dq, dk, dv, w.dq_acc, w.locks, q, k,
                                                                                                v, dout, L, D, p, st);
            return true;
        }
    }
    if constexpr (T::sm90_ordered_ws_bq > 0) {
        flash::bwd_ws_sm90_launch<HD, T::sm90_ordered_ws_bq, T::sm90_ordered_ws_stages, false, false, OPT>(
            dq, dk, dv, w.dq_acc, w.locks, q, k, v, dout, L, D, p, st);
        return true;
    }
    return false;
}
// algo ordered / atomic: only where flash_sm90_active() (flash_bwd_check_algo)
template <int HD>
static void flash_bwd_hd(FlashBwdAlgo algo, floatX* dq, floatX* dk, floatX* dv, const FlashBwdScratch& w, const floatX* q,
                         const floatX* k, const floatX* v, const floatX* dout, const FlashParams& p, cudaStream_t st) {
    using T = FlashTiles<HD>;
    const float *L = w.L, *D = w.D;
    if (p.pos) {   // packed rows: the split mma.sync backward's variant (deterministic)
        flash::dkdv_launch<HD, T::mma_dkdv, true>(dk, dv, q, k, v, dout, L, D, p, st);
        flash::dq_launch<HD, T::mma_dq, true>(dq, q, k, v, dout, L, D, p, st);
        return;
    }
    if (algo == FlashBwdAlgo::ordered) {
        if (flash_bwd_ws_hd<HD, 0>(dq, dk, dv, w, q, k, v, dout, p, st)) return;
        flash::dkdv_sm90_launch<HD, T::sm90_ordered>(dk, dv, q, k, v, dout, L, D, p, st, dq, w.dq_acc, w.locks);
        return;
    }
    if (algo == FlashBwdAlgo::atomic) {
        if (flash_bwd_ws_hd<HD, flash::BWD_WS_ATOMIC>(dq, dk, dv, w, q, k, v, dout, p, st)) return;
        flash::dkdv_sm90_launch<HD, T::sm90_atomic>(dk, dv, q, k, v, dout, L, D, p, st, dq, w.dq_acc);
        return;
    }
    if (flash_sm90_active() && (T::sm90_split || flash_settings.family == FlashFamily::sm90)) {
        flash::dkdv_sm90_launch<HD, T::sm90_dkdv>(dk, dv, q, k, v, dout, L, D, p, st);
        flash::dq_sm90_launch<HD, T::sm90_dq>(dq, q, k, v, dout, L, D, p, st);
        return;
    }
    flash::dkdv_launch<HD, T::mma_dkdv>(dk, dv, q, k, v, dout, L, D, p, st);
    flash::dq_launch<HD, T::mma_dq>(dq, q, k, v, dout, L, D, p, st);
}

// head dim -> the padded head dim of the kernels (multiple of 16; 72 -> 80)
#define FLASH_HD_DISPATCH(hd, FN, ...)                       \
    do {                                                     \
        if ((hd) <= 32) FN<32>(__VA_ARGS__);                 \
        else if ((hd) <= 48) FN<48>(__VA_ARGS__);            \
        else if ((hd) <= 64) FN<64>(__VA_ARGS__);            \
        else if ((hd) <= 80) FN<80>(__VA_ARGS__);            \
        else if ((hd) <= 96) FN<96>(__VA_ARGS__);            \
        else FN<128>(__VA_ARGS__);                           \
    } while (0)

// The backward a policy gets for a fixed-layout call (the GPT) at head dim hd: flash_bwd_algo's,
// except the fast policy where the table runs the ordered kernel instead (sm90_fast_ordered).
// Varlen calls take flash_bwd_algo's: their scratch is sized for its mechanism.
template <int HD>
static void flash_fast_ordered_hd(bool& ordered) { ordered = FlashTiles<HD>::sm90_fast_ordered; }
static FlashBwdAlgo flash_bwd_algo_fixed(FlashBwdPolicy policy, int hd) {
    const FlashBwdAlgo algo = flash_bwd_algo(policy);
    bool ordered = false;
    if (algo == FlashBwdAlgo::atomic) FLASH_HD_DISPATCH(hd, flash_fast_ordered_hd, ordered);
    return ordered ? FlashBwdAlgo::ordered : algo;
}

static void flash_fwd_launch(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp, const FlashParams& p,
                             cudaStream_t stream) {
    FLASH_HD_DISPATCH(p.hd, flash_fwd_hd, out, lse, qp, kp, vp, p, stream);
}
static void flash_bwd_check_algo(FlashBwdAlgo algo) {
    if (algo != FlashBwdAlgo::split && !flash_sm90_active())
        fail("flash attention: the %s backward needs the sm90 kernels", flash_bwd_algo_name(algo));
}
// w.L / w.D: the packed L and D rows (flash_bwd_prep_kernel), already written
static void flash_bwd_launch(FlashBwdAlgo algo, floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* qp,
                             const floatX* kp, const floatX* vp, const FlashBwdScratch& w, const FlashParams& p,
                             cudaStream_t stream) {
    FLASH_HD_DISPATCH(p.hd, flash_bwd_hd, algo, dqp, dkp, dvp, w, qp, kp, vp, dout, p, stream);
}
#endif

// ----------------------------------------------------------------------------
// The API (both builds).

// Fixed layout (the GPT): out [B, T, nh*hd]; lse [B, nh, T] fp32 (saved for the backward).
// Packed rows (AttnShape::pos: SFT --pack 1) run the mma.sync kernels' variant that keeps each
// query inside its document; the sm90 kernels do not have it yet.
static void flash_attention_forward(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp,
                                    const AttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    flash_attention_check_shape(s);
    ProfileWork pw(flash_attention_flops(s), 0);
    flash_fwd_launch(out, lse, qp, kp, vp, flash_params(s), stream);
}

// dqp/dkp/dvp in the layouts of qp/kp/vp (what rope's backward reads), fully
// overwritten; scratch: flash_attention_scratch_bytes(s) bytes (enough for every algorithm).
// Deterministic except with the fast policy on Hopper (dq's fp32 sum order varies run to run).
static void flash_attention_backward(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* out,
                                     const float* lse, const floatX* qp, const floatX* kp, const floatX* vp, float* scratch,
                                     const AttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    flash_attention_check_shape(s);
    const FlashParams p = flash_params(s);
    const FlashBwdScratch w = flash_bwd_scratch(scratch, (size_t)s.B * s.nh * s.T, s.hd);
    const FlashBwdAlgo algo = flash_bwd_algo_fixed(flash_settings.backward, s.hd);
    flash_bwd_check_algo(algo);
    flash_bwd_prep(w.L, w.D, out, dout, lse, p, stream);
    ProfileWork pw(2.5 * flash_attention_flops(s), 0);
    flash_bwd_launch(algo, dqp, dkp, dvp, dout, qp, kp, vp, w, p, stream);
}

// Packed variable-length layout (the DiT; VarlenAttnShape in flash_common.cuh): full attention
// of each sample's queries over its own keys. out [Nq, nh*hd], lse [nh, Nq] fp32.
static void flash_attention_varlen_forward(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp,
                                           const VarlenAttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    flash_attention_varlen_check(s);
    ProfileWork pw(profile_work_on() ? flash_attention_flops(s) : 0, 0);
    flash_fwd_launch(out, lse, qp, kp, vp, flash_params_varlen(s), stream);
}

// Bytes of scratch the varlen backward with algorithm `algo` needs (Nq query tokens, B samples)
static size_t flash_attention_varlen_scratch_bytes(size_t Nq, int nh, int hd, int B, FlashBwdAlgo algo) {
    return algo == FlashBwdAlgo::ordered  ? flash_attention_varlen_scratch_bytes(Nq, nh, hd, B)
           : algo == FlashBwdAlgo::atomic ? flash_attention_varlen_scratch_bytes(Nq, nh, hd)
                                          : flash_attention_varlen_scratch_bytes(Nq, nh);
}
// dq/dk/dv written (not accumulated) with the strides of q/k/v; scratch: scratch_bytes bytes,
// at least what the backward that runs needs (flash_attention_varlen_scratch_bytes(Nq, nh, hd,
// B) fits all of them), plus flash_attention_query_split_bytes for the query split where a call
// has few keys. Deterministic except with the fast policy on Hopper.
static void flash_attention_varlen_backward(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* out,
                                            const float* lse, const floatX* qp, const floatX* kp, const floatX* vp,
                                            float* scratch, const VarlenAttnShape& s, cudaStream_t stream,
                                            size_t scratch_bytes) {
    NVTX_RANGE_FN();
    flash_attention_varlen_check(s);
    const FlashParams p = flash_params_varlen(s);
    const FlashBwdAlgo algo = flash_bwd_algo(flash_settings.backward);
    flash_bwd_check_algo(algo);
    const size_t need = flash_attention_varlen_scratch_bytes(p.Nq, s.nh, s.hd, s.B, algo);
    if (scratch_bytes < need)
        fail("flash attention: the %s varlen backward needs %zu bytes of scratch, got %zu", flash_bwd_algo_name(algo), need,
             scratch_bytes);
    const FlashBwdScratch w = flash_bwd_scratch_varlen(scratch, (size_t)p.Nq * s.nh, s.hd, need, scratch_bytes);
    flash_bwd_prep(w.L, w.D, out, dout, lse, p, stream);
    ProfileWork pw(profile_work_on() ? 2.5 * flash_attention_flops(s) : 0, 0);
    flash_bwd_launch(algo, dqp, dkp, dvp, dout, qp, kp, vp, w, p, stream);
}
