// Fused attention in the FlashAttention-2 style: forward and backward without
// the [T, T] score matrix in global memory, grouped-query heads, causal or full.
//
// Same layouts as llmc/attention/attention.cuh (what llmc/kernels/rope.cuh writes):
//   q [B, nkv, T, r, hd] (the r = nh/nkv query heads of one K/V head side by side),
//   k, v [B, nkv, T, hd], out / dout [B, T, nh*hd] (token-major),
//   lse [B, nh, T] fp32 (natural-log logsumexp of each scaled score row, saved by
//   the forward for the backward), dq/dk/dv in the layouts of q/k/v.
// For one (b, kv group) the r query heads are one [T*r, hd] matrix whose row
// i = t*r + j is query head j at position t: a query tile of the kernels spans
// all heads of a group, so every K/V tile loaded into shared memory serves r
// heads (no K/V copies), and the causal mask compares key c with t = i / r.
//
// bf16 (the default build): tensor cores through mma.sync.m16n8k16 (bf16 in,
// fp32 accumulate, sm_80+), fragments from shared memory by ldmatrix, tiles
// loaded with cp.async (double-buffered), online softmax in fp32 registers.
// A warp owns 32 rows (forward, dQ: two m16 tiles sharing every K/V fragment) or 16
// keys (dK/dV) of the output tile. Head dims that are multiples of 8
// up to 128 are padded with zeros to a multiple of 16 inside shared memory
// (72 -> 80); T may be any length (ragged tiles are masked).
// On Hopper (sm_90a builds) the same forward and split backward also exist on wgmma
// (llmc/attention/flash_sm90.cuh, same tiles and math); flash_sm90 below says which family
// runs for which head dim.
//   forward   one CTA per (query tile, group): S = Q K^T, online softmax, O = P V.
//   backward  deterministic (bit-identical run to run), no floating-point atomics, except
//             the opt-in atomic mode:
//     1. prep:  D = rowsum(dO * O) and lse * log2(e), both in the packed row order
//     2. fused (flash_bwd_mode = FLASH_BWD_ORDERED; on Hopper the trainers' default): one CTA
//               per (K/V tile, group), looping over every query tile of the group's r
//               heads: dV += P^T dO, dK += dS^T Q in registers, and
//               dQ += dS K added to an fp32 accumulator in a fixed order (K/V tile 0,
//               1, 2, ... per query tile, ordered by integer counters), then converted
//               to bf16 (mma.sync: the last one writes bf16 dq). S, P, dP are computed
//               once: 5 matrix products.
//     or the same fused kernel with dQ added by fp32 atomics, then converted to bf16
//        (flash_bwd_mode = FLASH_BWD_ATOMIC / FAST, the trainers' --attn-backward fast; the
//        one NON-deterministic mode; on Hopper the fastest backward, see below),
//     or (the default off Hopper) the split form, no inter-CTA ordering at all:
//     2. dK/dV: as above without dQ
//     3. dQ:    one CTA per (query tile, group), looping over K/V tiles; dQ += dS K
//               (S and dP computed a second time: 7 matrix products).
// fp32 (-DENABLE_FP32): simple scalar kernels (one warp per row), same math and
// API, for the tight fp32 tests; not fast.
#pragma once
#include <cstdint>
#include <cstring>
#include "../core/cuda_common.h"
#include "../core/args.h"
#include "attention.cuh"  // AttnShape

// Bytes of scratch the backward needs: D and lse*log2(e) (one float per query row each),
// plus the fp32 dQ accumulator of the opt-in fused backward ([B, nkv, T*r, hd]) and its
// counters (one int per group and 16 query rows, at most), so that every path fits; 16 bytes
// more for the accumulator's alignment (flash_dq_acc_offset).
static size_t flash_attention_scratch_bytes(const AttnShape& s) {
    const size_t nrows = (size_t)s.B * s.nh * s.T;
    const size_t counters = (size_t)s.B * s.nkv * ceil_div((long long)s.T * (s.nh / s.nkv), 16);
    return (2 + (size_t)s.hd) * nrows * sizeof(float) + 16 + counters * sizeof(int);
}
// floats before the fp32 dQ accumulator in the scratch (after L and D): 16-byte aligned (float4 reads)
static size_t flash_dq_acc_offset(size_t nrows) { return (2 * nrows + 3) & ~(size_t)3; }

static void flash_check_hd(int hd) {
    if (hd % 8 != 0 || hd < 8 || hd > 128) fail("flash attention: head dim %d must be a multiple of 8 in [8, 128]", hd);
}

static void flash_attention_check_shape(const AttnShape& s) {
    flash_check_hd(s.hd);
    if (s.nkv <= 0 || s.nh % s.nkv != 0) fail("flash attention: %d query heads not a multiple of %d kv heads", s.nh, s.nkv);
    if (s.T <= 0 || s.B <= 0) fail("flash attention: empty shape B=%d T=%d", s.B, s.T);
}

// Per-launch constants shared by all kernels. Two layouts share the kernels:
//   fixed  (AttnShape, the GPT): B sequences of T tokens, the layouts above.
//   varlen (VarlenAttnShape, the DiT): B packed samples of their own lengths, token-major
//          rows with strides, one head per group (nkv = nh, r = 1), full attention.
// A kernel sees a group only through flash_group() (where its rows start, how many)
// and the row strides, so both layouts run the same tiles, masks and math.
struct FlashParams {
    int B, T, nh, nkv, hd, r, rows;  // fixed: rows = T * r query rows of one group (varlen: 0)
    int causal;
    float scale;                     // 1 / sqrt(hd)
    float scale_log2;                // scale * log2(e): softmax in base 2 (exp2 is one MUFU op)
    int varlen;
    int Nq;                          // query tokens of the whole batch (fixed: B * T)
    const int *cu_q, *cu_k;          // varlen: device [B+1] cumulative token counts
    int q_rs, k_rs, v_rs;            // elements between consecutive rows of a group in q, k, v
    int o_ts;                        // elements between tokens in out / dout (nh * hd)
    int max_rows, max_Tk;            // the largest group's query rows and keys (grid sizes)
};

static FlashParams flash_params(const AttnShape& s) {
    FlashParams p;
    p.B = s.B; p.T = s.T; p.nh = s.nh; p.nkv = s.nkv; p.hd = s.hd;
    p.r = s.nh / s.nkv;
    p.rows = s.T * p.r;
    p.causal = s.causal ? 1 : 0;
    p.scale = 1.0f / sqrtf((float)s.hd);
    p.scale_log2 = p.scale * 1.4426950408889634f;
    p.varlen = 0;
    p.Nq = s.B * s.T;
    p.cu_q = p.cu_k = nullptr;
    p.q_rs = p.k_rs = p.v_rs = s.hd;  // q [B, nkv, T*r, hd] and k/v [B, nkv, T, hd]: packed rows
    p.o_ts = s.nh * s.hd;
    p.max_rows = p.rows;
    p.max_Tk = s.T;
    return p;
}

// Packed variable-length batches (the DiT): sample b has query tokens
// [cu_q[b], cu_q[b+1]) and keys [cu_k[b], cu_k[b+1]); attention never crosses samples.
// Head h of query token n at q + n*q_stride + h*hd (k, v likewise with their strides;
// dq/dk/dv are written with the strides of q/k/v), out [Nq, nh*hd], lse [nh, Nq].
// cu_q / cu_k are host arrays (grid sizes, checks), cu_q_dev / cu_k_dev their device copies.
struct VarlenAttnShape {
    int B, nh, hd;
    const int* cu_q;
    const int* cu_k;
    int q_stride, k_stride, v_stride;
    const int* cu_q_dev;
    const int* cu_k_dev;
};

static void flash_attention_varlen_check(const VarlenAttnShape& s) {
    flash_check_hd(s.hd);
    if (s.B <= 0 || s.nh <= 0) fail("flash attention: empty varlen shape B=%d nh=%d", s.B, s.nh);
    if (s.q_stride % 8 || s.k_stride % 8 || s.v_stride % 8 || s.q_stride < s.nh * s.hd || s.k_stride < s.nh * s.hd ||
        s.v_stride < s.nh * s.hd)
        fail("flash attention: varlen row strides %d/%d/%d must be multiples of 8 (16-byte rows) and >= nh*hd = %d",
             s.q_stride, s.k_stride, s.v_stride, s.nh * s.hd);
    if (!s.cu_q_dev || !s.cu_k_dev) fail("flash attention: varlen shape without device copies of cu_q / cu_k");
    if (s.cu_q[0] != 0 || s.cu_k[0] != 0) fail("flash attention: cu_q / cu_k must start at 0");
    for (int b = 0; b < s.B; b++) {
        const int lq = s.cu_q[b + 1] - s.cu_q[b], lk = s.cu_k[b + 1] - s.cu_k[b];
        // every sample attends to at least one key: no empty rows to special-case in the kernels
        if (lq < 1 || lk < 1) fail("flash attention: sample %d has %d queries and %d keys, expected at least 1 of each", b, lq, lk);
    }
}

static FlashParams flash_params_varlen(const VarlenAttnShape& s) {
    FlashParams p;
    p.B = s.B; p.T = 0; p.nh = s.nh; p.nkv = s.nh; p.hd = s.hd; p.r = 1; p.rows = 0;
    p.causal = 0;
    p.scale = 1.0f / sqrtf((float)s.hd);
    p.scale_log2 = p.scale * 1.4426950408889634f;
    p.varlen = 1;
    p.Nq = s.cu_q[s.B];
    p.cu_q = s.cu_q_dev; p.cu_k = s.cu_k_dev;
    p.q_rs = s.q_stride; p.k_rs = s.k_stride; p.v_rs = s.v_stride;
    p.o_ts = s.nh * s.hd;
    p.max_rows = p.max_Tk = 0;
    for (int b = 0; b < s.B; b++) {
        p.max_rows = std::max(p.max_rows, s.cu_q[b + 1] - s.cu_q[b]);
        p.max_Tk = std::max(p.max_Tk, s.cu_k[b + 1] - s.cu_k[b]);
    }
    return p;
}

// Bytes of scratch the varlen backward needs: D and lse*log2(e), one float per (head, query token)
// each; with hd > 0 also the fp32 dQ accumulator of FLASH_BWD_ATOMIC ([nh, Nq, hd]; without it
// that mode falls back to the split backward); with B > 0 (the number of samples) also the
// counters of the ordered fused backward (FLASH_BWD_ORDERED on Hopper; flash_varlen_locks).
// Varlen counters, per head: sample b's query tiles (of 64 or more rows) start at
// cu_q[b] / BQ + b, which leaves room for its ceil(len / BQ) tiles.
// (Nq: FlashParams.Nq, an int)
__host__ __device__ __forceinline__ int flash_varlen_lock_stride(int Nq, int B) { return Nq / 64 + B + 1; }
static size_t flash_varlen_locks(size_t Nq, int nh, int B) { return (size_t)nh * flash_varlen_lock_stride((int)Nq, B); }
static size_t flash_attention_varlen_scratch_bytes(size_t Nq, int nh, int hd = 0, int B = 0) {
    return (2 + (size_t)std::max(hd, 0)) * Nq * (size_t)nh * sizeof(float) + (hd > 0 ? 16 : 0) +
           (hd > 0 && B > 0 ? flash_varlen_locks(Nq, nh, B) * sizeof(int) : 0);
}

// One group (sample b, K/V head gk): Tq query positions x r heads = `rows` query rows
// (row i: position i / r, head gk*r + i % r), Tk keys; element offsets of its row 0 in
// q (and dq), k (dk), v (dv), out (dout), of its lse (head j of the group at
// lse0 + j*lse_hs + position) and of its rows in the backward's packed L/D scratch.
struct FlashGroup {
    int Tq, Tk, rows, lse_hs;
    size_t q0, k0, v0, o0, lse0, ld0;
};
__device__ __forceinline__ FlashGroup flash_group(const FlashParams& p, int grp) {
    const int b = grp / p.nkv, gk = grp % p.nkv;
    FlashGroup G;
    if (!p.varlen) {
        G.Tq = G.Tk = p.T;
        G.rows = p.rows;
        G.q0 = (size_t)grp * p.rows * p.hd;
        G.k0 = G.v0 = (size_t)grp * p.T * p.hd;
        G.o0 = ((size_t)b * p.T * p.nh + (size_t)gk * p.r) * p.hd;
        G.lse0 = ((size_t)b * p.nh + (size_t)gk * p.r) * p.T;
        G.lse_hs = p.T;
        G.ld0 = (size_t)grp * p.rows;
    } else {  // r = 1: group gk is head gk
        const int qs = p.cu_q[b], ks = p.cu_k[b];
        G.Tq = p.cu_q[b + 1] - qs;
        G.Tk = p.cu_k[b + 1] - ks;
        G.rows = G.Tq;
        G.q0 = (size_t)qs * p.q_rs + (size_t)gk * p.hd;
        G.k0 = (size_t)ks * p.k_rs + (size_t)gk * p.hd;
        G.v0 = (size_t)ks * p.v_rs + (size_t)gk * p.hd;
        G.o0 = (size_t)qs * p.o_ts + (size_t)gk * p.hd;
        G.lse0 = (size_t)gk * p.Nq + qs;
        G.lse_hs = p.Nq;
        G.ld0 = G.lse0;  // the packed L/D order of varlen is lse's [nh, Nq]
    }
    return G;
}

// Backward step 1: D = rowsum(dO * O) per query row and lse in base 2, both written
// in the packed row order of the group (fixed: [B, nkv, T*r]; varlen: [nh, Nq]) so
// steps 2 and 3 read them contiguously. G lanes (flash_prep_lanes: the 16-byte chunks of a
// row, rounded up to a power of two) per (token, head) row of out ([Nq, nh*hd] in both
// layouts), so a warp's loads are contiguous; the dot reduced with shuffles. Memory-bound.
static __host__ __device__ int flash_prep_lanes(int hd) {
    int g = 1;
    while (g < hd / (int)x128::size && g < 32) g *= 2;
    return g;
}
__global__ static void flash_bwd_prep_kernel(float* __restrict__ Lp, float* __restrict__ Dp, const floatX* __restrict__ out,
                                             const floatX* __restrict__ dout, const float* __restrict__ lse, FlashParams p) {
    const int G = flash_prep_lanes(p.hd), CH = p.hd / x128::size;
    const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t idx = tid / G;  // token-major row (n, h)
    const int sub = (int)(tid % G);
    const bool valid = idx < (size_t)p.Nq * p.nh;
    float sum = 0.0f;
    if (valid) {
        const floatX* o = out + idx * p.hd;
        const floatX* d = dout + idx * p.hd;
        for (int c = sub; c < CH; c += G) {
            const x128 ov = load128cs(o + c * x128::size), dv = load128cs(d + c * x128::size);
            for (int k = 0; k < x128::size; k++) sum += (float)ov[k] * (float)dv[k];
        }
    }
    for (int off = G / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffff, sum, off);
    if (!valid || sub != 0) return;
    const int h = (int)(idx % p.nh);
    const size_t n = idx / p.nh;
    size_t packed, li;
    if (!p.varlen) {
        const int t = (int)(n % p.T), b = (int)(n / p.T), g = h / p.r, j = h % p.r;
        packed = (((size_t)b * p.nkv + g) * p.T + t) * p.r + j;
        li = ((size_t)b * p.nh + h) * p.T + t;
    } else {
        packed = li = (size_t)h * p.Nq + n;
    }
    Dp[packed] = sum;
    Lp[packed] = lse[li] * 1.4426950408889634f;
}
static void flash_bwd_prep(float* Lp, float* Dp, const floatX* out, const floatX* dout, const float* lse, const FlashParams& p,
                           cudaStream_t stream) {
    const size_t nrows = (size_t)p.Nq * p.nh;
    flash_bwd_prep_kernel<<<ceil_div(nrows * flash_prep_lanes(p.hd), (size_t)256), 256, 0, stream>>>(Lp, Dp, out, dout, lse, p);
    cudaLaunchCheck();
}

// The backward's structure (bf16 kernels), set at run time (flash_bwd_mode):
//   FLASH_BWD_SPLIT   (the default off Hopper) separate dK/dV and dQ kernels (S and dP computed twice,
//                     no inter-CTA ordering at all). Deterministic.
//   FLASH_BWD_ORDERED the fused dK/dV/dQ kernel with the ordered fp32 dQ accumulation.
//                     Deterministic. On Hopper the wgmma kernel (DQ_ORDERED: the partials
//                     go out by ordered bulk reductions, FA3's deterministic scheme): on an
//                     H200 (2026-11-30) 10-25% faster than SPLIT at every perf.md shape;
//                     varlen too when the scratch has room for the counters
//                     (flash_attention_varlen_scratch_bytes with B). Elsewhere the mma.sync
//                     kernel (an ordered read-modify-write per tile: ~1.8x SLOWER than
//                     SPLIT; fixed layout only, varlen falls back to SPLIT).
//   FLASH_BWD_ATOMIC  the fused kernel adding its dQ partials to the fp32 accumulator with
//                     vector atomic adds (red.global.add), then a conversion pass to bf16:
//                     FlashAttention-2/3's backward, 5 matrix products instead of 7. NOT
//                     deterministic (the order of the fp32 additions varies run to run).
//                     Varlen too, when the scratch has room for the accumulator
//                     (flash_attention_varlen_scratch_bytes with hd; otherwise it falls back
//                     to SPLIT). On Hopper (flash_sm90_active) the wgmma kernel of
//                     llmc/attention/flash_sm90.cuh (DQ_PIPE): on an H200 (2026-11-30,
//                     ./dev/cuda/attention) 18-40% faster than SPLIT at every perf.md shape.
//                     Elsewhere the mma.sync fused kernel: 8-17% SLOWER than SPLIT (255
//                     registers x 256 threads, one CTA per SM).
//                     The trainers' --attn-backward fast (flash_apply_flags).
//   FLASH_BWD_FAST    ATOMIC where the sm90 kernels run, SPLIT elsewhere (--attn-backward fast).
//   FLASH_BWD_DETERMINISTIC (the default) ORDERED where the sm90 kernels run, SPLIT elsewhere
//                     (--attn-backward deterministic): the fastest bit-reproducible backward.
enum FlashBwdMode {
    FLASH_BWD_SPLIT = 0, FLASH_BWD_ORDERED = 1, FLASH_BWD_ATOMIC = 2, FLASH_BWD_FAST = 3, FLASH_BWD_DETERMINISTIC = 4
};
static int flash_bwd_mode = FLASH_BWD_DETERMINISTIC;
static const char* flash_bwd_mode_name(int m) {
    return m == FLASH_BWD_ORDERED ? "ordered" : m == FLASH_BWD_ATOMIC ? "atomic" : m == FLASH_BWD_FAST ? "fast"
           : m == FLASH_BWD_DETERMINISTIC ? "deterministic" : "split";
}
// The trainers' attention settings: --attn-backward "deterministic" (FLASH_BWD_DETERMINISTIC:
// bit-identical gradients run to run, what exact resume and the determinism tests rely on) or "fast"
// (FLASH_BWD_FAST: dq's fp32 sum order varies run to run, as in PyTorch's SDPA backends);
// flash_apply_flags also reads MEGA_FLASH_SM90 (flash_sm90_from_env).
struct FlashFlags {
    std::string backward = "deterministic";
};
static void flash_add_flags(ArgParser& ap, FlashFlags* f) {
    ap.section("attention");
    ap.add_string("--attn-backward", &f->backward, "deterministic (bit-identical run to run) or fast (Hopper: fp32 atomic "
                                                    "dQ sums, not bit-identical; attention backward ~6-11% faster)");
}

// Tile variants, selected by dev/cuda/attention.cu to compare tilings (0 = the default),
// for head dims 64, 80 and 128 of the bf16 kernels: 1-5 the mma.sync kernels', 11-16 the
// sm90 kernels'. Only built with FLASH_TUNE defined; trainers get the defaults.
#if defined(FLASH_TUNE)
struct FlashConfig { int fwd, dkdv, dq; };  // dkdv: variants of the fused kernel too
static FlashConfig flash_config = {0, 0, 0};
#define FLASH_TUNED(HD) (HD == 64 || HD == 80 || HD == 128)
#endif

// The Hopper kernels (llmc/attention/flash_sm90.cuh) can run where the binary has sm_90a
// code (make GPU_ARCH=90a, the default) and the GPU is compute capability 9.0. They run
// where they were measured faster than the mma.sync kernels (H200, ./dev/cuda/attention,
// docs/results.md): the forward at head dims 64 and 128 (the warp-specialized kernel with TMA,
// fixed layout: 315 / 594 vs 265 / 297 TFLOP/s, 2026-11-30) and at padded head dim 80 (hd 72,
// the DiT; the warp-specialized kernel with cp.async: 321 vs 262 at L13442), the split
// backward at 80 and 128 (2026-11-29: hd72 200.0 vs 175.5; hd128 causal 192.8 vs 178.4).
// Other head dims were not measured: mma.sync there. The fused backward (FLASH_BWD_ATOMIC / FAST, and
// FLASH_BWD_ORDERED / DETERMINISTIC, the default) runs the sm90 kernel at every head dim where
// flash_sm90_active(): the backward choice above matters only for FLASH_BWD_SPLIT set
// explicitly. fp32 builds (ENABLE_FP32) have only the scalar kernels: flash_sm90_active() is
// false there.
// flash_sm90: 1 = that choice (default), 0 = mma.sync everywhere, 2 = sm90 everywhere it
// can run (dev/cuda/attention.cu checks and times 0 and 2 side by side). The trainers take
// it from the environment variable MEGA_FLASH_SM90 (0, 1 or 2; flash_apply_flags), e.g.
// to compare their speed with either family (scripts/bench_attention_families.sh).
static int flash_sm90 = 1;
// MEGA_FLASH_SM90 into flash_sm90; any other value is refused with one line (flash_apply_flags).
static void flash_sm90_from_env() {
    const char* env = getenv("MEGA_FLASH_SM90");
    if (!env) return;
    if (strcmp(env, "0") && strcmp(env, "1") && strcmp(env, "2"))
        fail("environment variable MEGA_FLASH_SM90=%s: expected 0 (mma.sync attention kernels), 1 (default) or 2 (sm90 kernels)", env);
    flash_sm90 = atoi(env);
}
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
static bool flash_sm90_active() { return flash_sm90 != 0 && flash_sm90_available(); }
// The flags (and MEGA_FLASH_SM90) into flash_bwd_mode and flash_sm90, checked with the other
// flags, before the GPU is touched: a bad value is one line and a non-zero exit.
static void flash_apply_flags(const FlashFlags& f) {
    if (f.backward == "deterministic") flash_bwd_mode = FLASH_BWD_DETERMINISTIC;
    else if (f.backward == "fast") flash_bwd_mode = FLASH_BWD_FAST;
    else fail("flag --attn-backward: expected deterministic or fast, got '%s'", f.backward.c_str());
    flash_sm90_from_env();
}
// the backward structure that runs now (FLASH_BWD_FAST and _DETERMINISTIC resolved)
static int flash_bwd_mode_now() {
    if (flash_bwd_mode == FLASH_BWD_FAST) return flash_sm90_active() ? FLASH_BWD_ATOMIC : FLASH_BWD_SPLIT;
    if (flash_bwd_mode == FLASH_BWD_DETERMINISTIC) return flash_sm90_active() ? FLASH_BWD_ORDERED : FLASH_BWD_SPLIT;
    return flash_bwd_mode;
}
// One line for the trainers' start-up report: which kernels and which backward run.
static void flash_print_config() {
    const int now = flash_bwd_mode_now();
#if defined(ENABLE_FP32)
    const bool fp32 = true;
#else
    const bool fp32 = false;
#endif
    printf("attention: %s kernels | backward %s\n",
           fp32 ? "fp32 scalar" : !flash_sm90_available() ? "mma.sync" : flash_sm90 == 0 ? "mma.sync (MEGA_FLASH_SM90=0)"
                                                 : flash_sm90 == 2 ? "sm90 (MEGA_FLASH_SM90=2)" : "sm90 + mma.sync per head dim",
           now == FLASH_BWD_ATOMIC    ? "fast (fused, fp32 atomic dQ sums: not bit-identical run to run)"
           : flash_bwd_mode == FLASH_BWD_FAST ? "deterministic (fast needs the sm90 kernels; split)"
           : now == FLASH_BWD_ORDERED ? "deterministic (fused, ordered dQ sums: bit-identical run to run)"
                                      : "deterministic (split: bit-identical run to run)");
}

#if defined(ENABLE_FP32)
// ============================================================================
// fp32: scalar kernels, one warp per row; lanes split the head dim (hd <= 128).
// ============================================================================

// Rows of a group: query row i (position i / r, head i % r of the group) of q/dq and
// out/dout, key row c of k/dk and v/dv (element offsets).
__device__ __forceinline__ size_t flash_q_off(const FlashParams& p, const FlashGroup& G, int i) { return G.q0 + (size_t)i * p.q_rs; }
__device__ __forceinline__ size_t flash_o_off(const FlashParams& p, const FlashGroup& G, int i) {
    return G.o0 + (size_t)(i / p.r) * p.o_ts + (size_t)(i % p.r) * p.hd;
}

// one warp per query row (w = group * max_rows + i; rows past the group's end return)
__global__ static void flash_fwd_f32_kernel(float* out, float* lse, const float* qp, const float* kp, const float* vp, FlashParams p) {
    const int lane = threadIdx.x % 32;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)p.B * p.nkv * p.max_rows) return;
    const int grp = (int)(w / p.max_rows), i = (int)(w % p.max_rows), t = i / p.r;
    const FlashGroup G = flash_group(p, grp);
    if (i >= G.rows) return;
    const float* q = qp + flash_q_off(p, G, i);
    const float* K = kp + G.k0;
    const float* V = vp + G.v0;
    float qv[4], o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < 4; k++) qv[k] = lane + 32 * k < p.hd ? q[lane + 32 * k] : 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int n = p.causal ? t + 1 : G.Tk;
    for (int c = 0; c < n; c++) {
        float dot = 0.0f;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) dot += qv[k] * K[(size_t)c * p.k_rs + lane + 32 * k];
        const float s = warp_reduce_sum(dot) * p.scale;
        const float mn = fmaxf(m, s), corr = expf(m - mn), e = expf(s - mn);
        l = l * corr + e;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) o[k] = o[k] * corr + e * V[(size_t)c * p.v_rs + lane + 32 * k];
        m = mn;
    }
    float* y = out + flash_o_off(p, G, i);
    for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) y[lane + 32 * k] = o[k] / l;
    if (lane == 0) lse[G.lse0 + (size_t)(i % p.r) * G.lse_hs + t] = m + logf(l);
}

// dQ: one warp per query row, looping over its keys
__global__ static void flash_bwd_dq_f32_kernel(float* dqp, const float* qp, const float* kp, const float* vp, const float* dout,
                                               const float* Lp, const float* Dp, FlashParams p) {
    const int lane = threadIdx.x % 32;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)p.B * p.nkv * p.max_rows) return;
    const int grp = (int)(w / p.max_rows), i = (int)(w % p.max_rows), t = i / p.r;
    const FlashGroup G = flash_group(p, grp);
    if (i >= G.rows) return;
    const float* q = qp + flash_q_off(p, G, i);
    const float* dy = dout + flash_o_off(p, G, i);
    const float* K = kp + G.k0;
    const float* V = vp + G.v0;
    float qv[4], dyv[4], dq[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < 4; k++) {
        qv[k] = lane + 32 * k < p.hd ? q[lane + 32 * k] : 0.0f;
        dyv[k] = lane + 32 * k < p.hd ? dy[lane + 32 * k] : 0.0f;
    }
    const float L = Lp[G.ld0 + i], D = Dp[G.ld0 + i];
    const int n = p.causal ? t + 1 : G.Tk;
    for (int c = 0; c < n; c++) {
        float s = 0.0f, dp = 0.0f;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
            s += qv[k] * K[(size_t)c * p.k_rs + lane + 32 * k];
            dp += dyv[k] * V[(size_t)c * p.v_rs + lane + 32 * k];
        }
        s = warp_reduce_sum(s);
        dp = warp_reduce_sum(dp);
        const float ds = exp2f(s * p.scale_log2 - L) * (dp - D);
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) dq[k] += ds * K[(size_t)c * p.k_rs + lane + 32 * k];
    }
    float* dqr = dqp + flash_q_off(p, G, i);
    for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) dqr[lane + 32 * k] = dq[k] * p.scale;
}

// dK, dV: one warp per key row (w = group * max_Tk + c), looping over every query row
// (all r heads) that sees it
__global__ static void flash_bwd_dkdv_f32_kernel(float* dkp, float* dvp, const float* qp, const float* kp, const float* vp,
                                                 const float* dout, const float* Lp, const float* Dp, FlashParams p) {
    const int lane = threadIdx.x % 32;
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (size_t)p.B * p.nkv * p.max_Tk) return;
    const int grp = (int)(w / p.max_Tk), c = (int)(w % p.max_Tk);
    const FlashGroup G = flash_group(p, grp);
    if (c >= G.Tk) return;
    const size_t ko = G.k0 + (size_t)c * p.k_rs, vo = G.v0 + (size_t)c * p.v_rs;
    float kv[4], vv[4], dk[4] = {0.0f, 0.0f, 0.0f, 0.0f}, dv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < 4; k++) {
        kv[k] = lane + 32 * k < p.hd ? kp[ko + lane + 32 * k] : 0.0f;
        vv[k] = lane + 32 * k < p.hd ? vp[vo + lane + 32 * k] : 0.0f;
    }
    for (int i = p.causal ? c * p.r : 0; i < G.rows; i++) {
        const float* q = qp + flash_q_off(p, G, i);
        const float* dy = dout + flash_o_off(p, G, i);
        float s = 0.0f, dp = 0.0f;
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
            s += q[lane + 32 * k] * kv[k];
            dp += dy[lane + 32 * k] * vv[k];
        }
        s = warp_reduce_sum(s);
        dp = warp_reduce_sum(dp);
        const size_t row = G.ld0 + i;
        const float pr = exp2f(s * p.scale_log2 - Lp[row]), ds = pr * (dp - Dp[row]);
        for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
            dv[k] += pr * dy[lane + 32 * k];
            dk[k] += ds * q[lane + 32 * k];
        }
    }
    for (int k = 0; k < 4; k++) if (lane + 32 * k < p.hd) {
        dkp[ko + lane + 32 * k] = dk[k] * p.scale;
        dvp[vo + lane + 32 * k] = dv[k];
    }
}

static void flash_fwd_launch(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp, const FlashParams& p,
                             cudaStream_t stream) {
    const size_t warps = (size_t)p.B * p.nkv * p.max_rows;
    flash_fwd_f32_kernel<<<ceil_div(warps, 8), 256, 0, stream>>>(out, lse, qp, kp, vp, p);
    cudaLaunchCheck();
}

// Lp / Dp: the packed L and D rows (flash_bwd_prep_kernel), already written
static void flash_bwd_launch(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* qp, const floatX* kp,
                             const floatX* vp, const float* Lp, const float* Dp, float* dq_acc, int* locks, const FlashParams& p,
                             cudaStream_t stream) {
    (void)dq_acc; (void)locks;
    flash_bwd_dq_f32_kernel<<<ceil_div((size_t)p.B * p.nkv * p.max_rows, 8), 256, 0, stream>>>(dqp, qp, kp, vp, dout, Lp, Dp, p);
    cudaLaunchCheck();
    flash_bwd_dkdv_f32_kernel<<<ceil_div((size_t)p.B * p.nkv * p.max_Tk, 8), 256, 0, stream>>>(dkp, dvp, qp, kp, vp, dout, Lp, Dp, p);
    cudaLaunchCheck();
}

#else
// ============================================================================
// bf16: tensor-core kernels
// ============================================================================
namespace flash {

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16-byte async copy global -> shared; valid == false writes 16 zero bytes (no read)
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// four 8x8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8
__device__ __forceinline__ void ldsm4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldsm4t(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// D[16x8] += A[16x16] B[16x8], bf16 in, fp32 accumulate
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}
// 2^x, one MUFU op; 2^-inf = 0
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Fragment addressing (m16n8k16). A tile is [rows][LD] bf16 in shared memory,
// LD = HD + 8: the 16-byte pad puts the 8 rows of every ldmatrix in 8 different
// bank groups (conflict-free for every HD that is a multiple of 16).
// A operand (16 rows x 16 cols at row0, col0), row-major:
template <int LD>
__device__ __forceinline__ uint32_t a_addr(const bf16* s, int row0, int col0, int lane) {
    return smem_u32(s + (row0 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + col0 + (lane / 16) * 8);
}
// B operand from a tile stored [n][k] (keys x head dim for S = Q K^T): two n8 blocks
// (n0, n0 + 8) x k16 at col k0 -> r[0..1] for n0, r[2..3] for n0 + 8
template <int LD>
__device__ __forceinline__ uint32_t bn_addr(const bf16* s, int n0, int k0, int lane) {
    return smem_u32(s + (n0 + (lane % 8) + (lane / 16) * 8) * LD + k0 + ((lane / 8) % 2) * 8);
}
// B operand from a tile stored [k][n] (keys x head dim for O = P V), loaded with .trans:
// k16 rows at k0, two n8 blocks (n0, n0 + 8) -> r[0..1] for n0, r[2..3] for n0 + 8
template <int LD>
__device__ __forceinline__ uint32_t bt_addr(const bf16* s, int k0, int n0, int lane) {
    return smem_u32(s + (k0 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + n0 + (lane / 16) * 8);
}

// ROWS rows of a matrix with hd-element rows into shared [ROWS][HD + 8]; row i of the
// tile is global row row0 + i at rowptr(row0 + i). Rows >= nrows and the head-dim
// padding (columns >= hd) are zero-filled: they then contribute nothing to any product.
template <int ROWS, int HD, int NT, class RowPtr>
__device__ __forceinline__ void load_tile(bf16* s, int row0, int nrows, int hd, RowPtr rowptr) {
    constexpr int CH = HD / 8, LD = HD + 8, N = ROWS * CH;
#pragma unroll
    for (int k = 0; k < (N + NT - 1) / NT; k++) {
        const int idx = threadIdx.x + k * NT;
        if (N % NT != 0 && idx >= N) break;
        const int rr = idx / CH, c = idx % CH, row = row0 + rr;
        const bool ok = row < nrows && c * 8 < hd;
        const bf16* src = ok ? rowptr(row) + c * 8 : rowptr(0);
        cp_async16(smem_u32(s + rr * LD + c * 8), src, ok);
    }
}

// A warp's 16 finished rows (fragments of two rows per lane, already scaled) out
// through its own rows of a shared tile, then 16-byte stores to rowptr(row) for row < nrows.
template <int HD>
__device__ __forceinline__ void store_rows(bf16* s_own, const float (*acc)[4], float mulA, float mulB, int lane) {
    constexpr int LD = HD + 8;
    const int g = lane / 4, tq = lane % 4;
#pragma unroll
    for (int db = 0; db < HD / 8; db++) {
        *reinterpret_cast<uint32_t*>(s_own + g * LD + db * 8 + 2 * tq) = pack_bf16(acc[db][0] * mulA, acc[db][1] * mulA);
        *reinterpret_cast<uint32_t*>(s_own + (g + 8) * LD + db * 8 + 2 * tq) = pack_bf16(acc[db][2] * mulB, acc[db][3] * mulB);
    }
    __syncwarp();
}
template <int HD, class RowPtr>
__device__ __forceinline__ void copy_rows_out(const bf16* s_own, int row0, int nrows, int hd, int lane, RowPtr rowptr) {
    constexpr int LD = HD + 8, CH = HD / 8, N = 16 * CH;
#pragma unroll
    for (int k = 0; k < (N + 31) / 32; k++) {
        const int idx = lane + k * 32;
        if (N % 32 != 0 && idx >= N) break;
        const int rr = idx / CH, c = idx % CH, row = row0 + rr;
        if (row < nrows && c * 8 < hd)
            *reinterpret_cast<int4*>(rowptr(row) + c * 8) = *reinterpret_cast<const int4*>(s_own + rr * LD + c * 8);
    }
}

// A forward CTA's share of the work: query tile qt of BM rows of group blockIdx.y (causal: the
// heaviest tiles, the last rows, first, so the short ones fill the tail), the group's rows of
// q, k, v, and how many BN-key tiles it visits. False: no rows (varlen: this sample is shorter
// than the longest).
struct FwdTile {
    FlashGroup G;
    const bf16 *Q, *K, *V;
    int m0, ntiles;
};
template <int BM, int BN>
__device__ __forceinline__ bool fwd_tile(FwdTile& t, const FlashParams& p, const bf16* qp, const bf16* kp, const bf16* vp) {
    const int qt = p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    t.m0 = qt * BM;
    t.G = flash_group(p, blockIdx.y);
    if (t.m0 >= t.G.rows) return false;
    t.Q = qp + t.G.q0;
    t.K = kp + t.G.k0;
    t.V = vp + t.G.v0;
    const int kv_end = p.causal ? (min(t.m0 + BM, t.G.rows) - 1) / p.r + 1 : t.G.Tk;
    t.ntiles = ceil_div(kv_end, BN);
    return true;
}

// ---------------------------------------------------------------------------
// Per-tile math shared by the mma.sync and the sm90 kernels: both hold a 16-row tile of scores
// or gradients per warp in the m16n8 accumulator layout (rows g and g + 8, columns 2 tq, +1 of
// every n8 block), so masks, softmax, fragment packing and the forward's epilogue are one code.

// Scores of a 16-row tile whose rows sit at positions posA (c0, c1) and posB (c2, c3) against
// the NB * 8 keys from n0: keys past T, and (causal) keys after the row's position, to -inf.
template <int NB>
__device__ __forceinline__ void mask_keys(float (&s)[NB][4], int n0, int T, int posA, int posB, int causal, int tq) {
#pragma unroll
    for (int nb = 0; nb < NB; nb++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int key = n0 + nb * 8 + 2 * tq + (e & 1);
            const int pos = e < 2 ? posA : posB;
            if (key >= T || (causal && key > pos)) s[nb][e] = -INFINITY;
        }
}
// Transposed (dK/dV): rows are keys keyA (c0, c1) and keyB (c2, c3), columns the NQ * 8 query
// rows from m0 (position m / r): rows past the group's end, and (causal) queries before the key.
template <int NQ>
__device__ __forceinline__ void mask_queries(float (&s)[NQ][4], int m0, int rows, int r, int keyA, int keyB, int causal,
                                             int tq) {
#pragma unroll
    for (int nq = 0; nq < NQ; nq++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = m0 + nq * 8 + 2 * tq + (e & 1);
            const int key = e < 2 ? keyA : keyB;
            if (m >= rows || (causal && m / r < key)) s[nq][e] = -INFINITY;
        }
}
// Online softmax step of a 16-row tile of raw scores: new running maxima mA/mB (base-2 units,
// over the lane quad), old sums lA/lB rescaled, s -> 2^(s scale_log2 - max) added to the sums;
// cA/cB: what the running outputs must be multiplied by (left to the caller, so that a kernel
// whose outputs are still being accumulated by the tensor cores can do it after its wait).
// A row fully masked so far keeps max -inf and exponentials of 0.
template <int NB>
__device__ __forceinline__ void online_softmax_scores(float (&s)[NB][4], float& mA, float& mB, float& lA, float& lB,
                                                      float scale_log2, float& cA, float& cB) {
    float xA = -INFINITY, xB = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
        xA = fmaxf(xA, fmaxf(s[nb][0], s[nb][1]));
        xB = fmaxf(xB, fmaxf(s[nb][2], s[nb][3]));
    }
    xA = fmaxf(xA, __shfl_xor_sync(0xffffffff, xA, 1));
    xA = fmaxf(xA, __shfl_xor_sync(0xffffffff, xA, 2));
    xB = fmaxf(xB, __shfl_xor_sync(0xffffffff, xB, 1));
    xB = fmaxf(xB, __shfl_xor_sync(0xffffffff, xB, 2));
    const float nA = fmaxf(mA, xA * scale_log2), nB = fmaxf(mB, xB * scale_log2);
    const float uA = nA == -INFINITY ? 0.0f : nA, uB = nB == -INFINITY ? 0.0f : nB;  // fully masked row so far
    cA = exp2_approx(mA - uA);
    cB = exp2_approx(mB - uB);
    mA = nA; mB = nB;
    lA *= cA; lB *= cB;
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
        s[nb][0] = exp2_approx(fmaf(s[nb][0], scale_log2, -uA));
        s[nb][1] = exp2_approx(fmaf(s[nb][1], scale_log2, -uA));
        s[nb][2] = exp2_approx(fmaf(s[nb][2], scale_log2, -uB));
        s[nb][3] = exp2_approx(fmaf(s[nb][3], scale_log2, -uB));
        lA += s[nb][0] + s[nb][1];
        lB += s[nb][2] + s[nb][3];
    }
}
template <int DB>
__device__ __forceinline__ void rescale_rows(float (&o)[DB][4], float cA, float cB) {
#pragma unroll
    for (int d = 0; d < DB; d++) { o[d][0] *= cA; o[d][1] *= cA; o[d][2] *= cB; o[d][3] *= cB; }
}
// ... and the outputs o rescaled right away
template <int NB, int DB>
__device__ __forceinline__ void online_softmax(float (&s)[NB][4], float (&o)[DB][4], float& mA, float& mB, float& lA,
                                               float& lB, float scale_log2) {
    float cA, cB;
    online_softmax_scores(s, mA, mB, lA, lB, scale_log2, cA, cB);
    rescale_rows(o, cA, cB);
}
// Two adjacent n8 accumulator blocks (16 columns) as the bf16 A fragment of a k16 step: the
// C layout of m16n8 is the A layout of m16n8k16 (and of a wgmma A operand from registers).
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
    a[0] = pack_bf16(c0[0], c0[1]);
    a[1] = pack_bf16(c0[2], c0[3]);
    a[2] = pack_bf16(c1[0], c1[1]);
    a[3] = pack_bf16(c1[2], c1[3]);
}
// Forward epilogue of one 16-row tile starting at group row row0: the row sums reduced over
// the lane quad, lse = max ln 2 + ln(sum) per row, O / sum out through the warp's own padded
// rows s_own of shared memory.
template <int HD>
__device__ __forceinline__ void fwd_write_rows(bf16* s_own, const float (&o)[HD / 8][4], float mA, float mB, float lA,
                                               float lB, int row0, const FlashParams& p, const FlashGroup& G,
                                               float* __restrict__ lse, bf16* __restrict__ out, int lane) {
    const int g = lane / 4, tq = lane % 4, rows = G.rows, hd = p.hd;
    lA += __shfl_xor_sync(0xffffffff, lA, 1);
    lA += __shfl_xor_sync(0xffffffff, lA, 2);
    lB += __shfl_xor_sync(0xffffffff, lB, 1);
    lB += __shfl_xor_sync(0xffffffff, lB, 2);
    const float iA = lA > 0.0f ? 1.0f / lA : 0.0f, iB = lB > 0.0f ? 1.0f / lB : 0.0f;
    const int rowA = row0 + g;
    if (tq == 0) {
        const float LN2 = 0.6931471805599453f;
        if (rowA < rows) lse[G.lse0 + (size_t)(rowA % p.r) * G.lse_hs + rowA / p.r] = mA * LN2 + logf(lA);
        if (rowA + 8 < rows) lse[G.lse0 + (size_t)((rowA + 8) % p.r) * G.lse_hs + (rowA + 8) / p.r] = mB * LN2 + logf(lB);
    }
    store_rows<HD>(s_own, o, iA, iB, lane);
    copy_rows_out<HD>(s_own, row0, rows, hd, lane,
                      [&](int i) { return out + G.o0 + (size_t)(i / p.r) * p.o_ts + (size_t)(i % p.r) * hd; });
}

// ---------------------------------------------------------------------------
// Forward. CTA: BM query rows of one group, BM / (16 MW) warps, each owning MW m16 tiles
// (MW = 2 shares every K/V fragment between two tiles: half the shared-memory reads per
// MMA); loops over BN-key tiles. Q_REGS: Q fragments stay in registers (else re-read
// from shared memory at every tile, for the large head dims).
template <int HD, int BM, int BN, int MW, bool Q_REGS>
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
template <int HD, int BN, int BQ, bool KV_REGS>
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
    const bf16* Q = qp + G.q0;
    const bf16* K = kp + G.k0;
    const bf16* V = vp + G.v0;
    const float* L = Lp + G.ld0;
    const float* Dg = Dp + G.ld0;
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
    // causal: query rows i with position i / r >= n0 only
    const int it0 = p.causal ? (n0 * r) / BQ : 0, nit = ceil_div(rows, BQ);
    load_tile<BN, HD, NT>(sK, n0, T, hd, krow);
    load_tile<BN, HD, NT>(sV, n0, T, hd, vrow);
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
        if (m0 + BQ > rows || (p.causal && m0 / r < n0 + BN - 1)) mask_queries(s, m0, rows, r, keyA, keyB, p.causal, tq);
        // P^T and dS^T (columns are query rows: their L and D come from shared memory)
#pragma unroll
        for (int nq = 0; nq < NQ; nq++) {
            const float2 l2 = *reinterpret_cast<const float2*>(sLs + nq * 8 + 2 * tq);
            const float2 d2 = *reinterpret_cast<const float2*>(sDs + nq * 8 + 2 * tq);
            s[nq][0] = exp2_approx(fmaf(s[nq][0], p.scale_log2, -l2.x));
            s[nq][1] = exp2_approx(fmaf(s[nq][1], p.scale_log2, -l2.y));
            s[nq][2] = exp2_approx(fmaf(s[nq][2], p.scale_log2, -l2.x));
            s[nq][3] = exp2_approx(fmaf(s[nq][3], p.scale_log2, -l2.y));
            dp[nq][0] = s[nq][0] * (dp[nq][0] - d2.x);
            dp[nq][1] = s[nq][1] * (dp[nq][1] - d2.y);
            dp[nq][2] = s[nq][2] * (dp[nq][2] - d2.x);
            dp[nq][3] = s[nq][3] * (dp[nq][3] - d2.y);
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
template <int HD, int BM, int BN, bool QD_REGS, int MW>
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
    const bf16* Q = qp + G.q0;
    const bf16* K = kp + G.k0;
    const bf16* V = vp + G.v0;
    auto qrow = [&](int i) { return Q + (size_t)i * p.q_rs; };
    auto orow = [&](int i) { return dout + G.o0 + (size_t)(i / r) * p.o_ts + (size_t)(i % r) * hd; };
    auto krow = [&](int i) { return K + (size_t)i * p.k_rs; };
    auto vrow = [&](int i) { return V + (size_t)i * p.v_rs; };
    const int kv_end = p.causal ? (min(m0 + BM, rows) - 1) / r + 1 : T;
    const int ntiles = ceil_div(kv_end, BN);
    load_tile<BM, HD, NT>(sQ, m0, rows, hd, qrow);
    load_tile<BM, HD, NT>(sdO, m0, rows, hd, orow);
    load_tile<BN, HD, NT>(sK, 0, T, hd, krow);
    load_tile<BN, HD, NT>(sV, 0, T, hd, vrow);
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
    float dq[MW][DB][4];
#pragma unroll
    for (int mi = 0; mi < MW; mi++)
#pragma unroll
        for (int d = 0; d < DB; d++) dq[mi][d][0] = dq[mi][d][1] = dq[mi][d][2] = dq[mi][d][3] = 0.0f;
    uint32_t qf[QD_REGS ? MW : 1][QD_REGS ? KS : 1][4], of[QD_REGS ? MW : 1][QD_REGS ? KS : 1][4];

    for (int j = 0; j < ntiles; j++) {
        const int st = j & 1, n0 = j * BN;
        if (j + 1 < ntiles) {
            load_tile<BN, HD, NT>(sK + (st ^ 1) * BN * LD, n0 + BN, T, hd, krow);
            load_tile<BN, HD, NT>(sV + (st ^ 1) * BN * LD, n0 + BN, T, hd, vrow);
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
// Backward, fused variant of steps 2 + 3 (opt-in, flash_bwd_mode): the dK/dV kernel above also
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
// Measured on an H200 it is ~1.8x SLOWER than the split backward (hd64 causal 4.1 vs 2.3
// ms), and still ~1.55x slower with the ordering removed (a racy timing diagnostic): the
// cost is the dQ phase itself (extra barriers, the dS^T round trip through shared memory,
// the synchronous fp32 read-modify-write per tile), not the wait chain. Kept, opt-in, as
// the starting point for a faster deterministic design (e.g. the RMW handed to a
// producer/consumer warp so it overlaps the next tile's products).
//
// MODE FUSED_ATOMIC (flash_bwd_mode = FLASH_BWD_ATOMIC) is FlashAttention-2's backward:
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
__device__ __forceinline__ int ld_acquire(const int* p) {
    int v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}
// addr[0..3] += a, b, c, d (16-byte aligned, sm_90: one vector reduction), no return value
__device__ __forceinline__ void red_add_f32x4(float* addr, float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.relaxed.gpu.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(addr), "f"(a), "f"(b), "f"(c), "f"(d)
                 : "memory");
#else
    atomicAdd(addr, a);
    atomicAdd(addr + 1, b);
    atomicAdd(addr + 2, c);
    atomicAdd(addr + 3, d);
#endif
}
// addr[0] += a, addr[1] += b (8-byte aligned fp32 pair in global memory), no return value
__device__ __forceinline__ void red_add_f32x2(float* addr, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.relaxed.gpu.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(addr), "f"(a), "f"(b) : "memory");
#else
    atomicAdd(addr, a);
    atomicAdd(addr + 1, b);
#endif
}

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
            if (m0 + BQ > rows || (p.causal && m0 / r < n0 + BN - 1)) mask_queries(s, m0, rows, r, keyA, keyB, p.causal, tq);
#pragma unroll
            for (int nq = 0; nq < NQ; nq++) {
                const float2 l2 = *reinterpret_cast<const float2*>(sLs + nq * 8 + 2 * tq);
                const float2 d2 = *reinterpret_cast<const float2*>(sDs + nq * 8 + 2 * tq);
                s[nq][0] = exp2_approx(fmaf(s[nq][0], p.scale_log2, -l2.x));
                s[nq][1] = exp2_approx(fmaf(s[nq][1], p.scale_log2, -l2.y));
                s[nq][2] = exp2_approx(fmaf(s[nq][2], p.scale_log2, -l2.x));
                s[nq][3] = exp2_approx(fmaf(s[nq][3], p.scale_log2, -l2.y));
                dp[nq][0] = s[nq][0] * (dp[nq][0] - d2.x);
                dp[nq][1] = s[nq][1] * (dp[nq][1] - d2.y);
                dp[nq][2] = s[nq][2] * (dp[nq][2] - d2.x);
                dp[nq][3] = s[nq][3] * (dp[nq][3] - d2.y);
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

// The fp32 dQ accumulator as the sm90 bulk-copy backward (DQ_BULK, DQ_ORDERED) writes it:
// row `row` keeps its 8-float chunks in the order c ^ dq_chunk_swizzle(row, hd), so that
// the fragments' float2 stores of 4 consecutive rows into the unpadded shared-memory tile
// (row stride hd floats) hit 32 different banks and the tile goes out in one bulk copy.
__host__ __device__ __forceinline__ int dq_chunk_swizzle(size_t row, int hd) {
    return hd % 32 == 0 ? (int)(row & 3) : hd % 32 == 16 ? (int)((row >> 1) & 1) : 0;
}
// After FUSED_ATOMIC: dq = scale * the fp32 accumulator, in bf16, 8 elements (16 bytes
// out) per thread. The accumulator is in the packed L/D row order (row `row` of hd
// floats; swizzled: see dq_chunk_swizzle); the fixed layout's dq has the same order,
// varlen's dq is token-major with row stride q_rs (row = head * Nq + token).
__global__ static void flash_bwd_dq_convert_kernel(bf16* __restrict__ dqp, const float* __restrict__ dq_acc,
                                                   size_t nrows, const FlashParams p, bool swizzled) {
    const int CH = p.hd / 8;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= nrows * CH) return;
    const size_t row = idx / CH;
    const int c = (int)(idx % CH);
    const int cs = swizzled ? c ^ dq_chunk_swizzle(row, p.hd) : c;
    const float4* src = reinterpret_cast<const float4*>(dq_acc + row * p.hd + cs * 8);
    const float4 a = __ldcs(src), b = __ldcs(src + 1);
    bf16* dst = p.varlen ? dqp + (row % p.Nq) * p.q_rs + (row / p.Nq) * p.hd + c * 8 : dqp + row * p.hd + c * 8;
    uint4 o;
    o.x = pack_bf16(a.x * p.scale, a.y * p.scale);
    o.y = pack_bf16(a.z * p.scale, a.w * p.scale);
    o.z = pack_bf16(b.x * p.scale, b.y * p.scale);
    o.w = pack_bf16(b.z * p.scale, b.w * p.scale);
    *reinterpret_cast<uint4*>(dst) = o;
}
// The ordered fused backward's counters (one per group and BQ-row query tile; varlen: per head,
// flash_varlen_locks), zeroed before every backward.
static void flash_locks_zero(int* locks, const FlashParams& p, int BQ, cudaStream_t stream) {
    const size_t n = p.varlen ? flash_varlen_locks(p.Nq, p.nh, p.B) : (size_t)p.B * p.nkv * ceil_div(p.rows, BQ);
    cudaCheck(cudaMemsetAsync(locks, 0, n * sizeof(int), stream));
}
// Around a kernel that adds dQ partials with atomics (the mma.sync FUSED_ATOMIC one and the sm90
// DQ one): the accumulator (Nq * nh rows of hd floats) zeroed before, bf16 dq written after.
static void flash_dq_acc_zero(float* dq_acc, const FlashParams& p, cudaStream_t stream) {
    cudaCheck(cudaMemsetAsync(dq_acc, 0, (size_t)p.Nq * p.nh * p.hd * sizeof(float), stream));
}
static void flash_dq_acc_to_bf16(bf16* dq, const float* dq_acc, const FlashParams& p, cudaStream_t stream,
                                 bool swizzled = false) {
    const size_t nrows = (size_t)p.Nq * p.nh, n = nrows * (p.hd / 8);  // query rows of all groups (packed L/D order)
    flash_bwd_dq_convert_kernel<<<ceil_div(n, (size_t)256), 256, 0, stream>>>(dq, dq_acc, nrows, p, swizzled);
    cudaLaunchCheck();
}

// ---------------------------------------------------------------------------
// Launchers: tile sizes per padded head dim; the dynamic shared memory limit is raised once.
template <class Kern>
static void set_smem(Kern k, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int HD, int BM, int BN, int MW = 1, bool Q_REGS = true>
static void fwd_launch(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const FlashParams& p,
                       cudaStream_t stream) {
    constexpr size_t smem = (size_t)(BM + 4 * BN) * (HD + 8) * sizeof(bf16);
    static bool init = false;
    if (!init) { set_smem(flash_fwd_kernel<HD, BM, BN, MW, Q_REGS>, smem); init = true; }
    dim3 grid(ceil_div(p.max_rows, BM), p.B * p.nkv);
    flash_fwd_kernel<HD, BM, BN, MW, Q_REGS><<<grid, BM * 2 / MW, smem, stream>>>(out, lse, q, k, v, p);
    cudaLaunchCheck();
}
template <int HD, int BN, int BQ, bool KV_REGS>
static void dkdv_launch(bf16* dk, bf16* dv, const bf16* q, const bf16* k, const bf16* v, const bf16* dout, const float* L,
                        const float* D, const FlashParams& p, cudaStream_t stream) {
    constexpr size_t smem = (size_t)(2 * BN + 4 * BQ) * (HD + 8) * sizeof(bf16) + 4 * BQ * sizeof(float);
    static bool init = false;
    if (!init) { set_smem(flash_bwd_dkdv_kernel<HD, BN, BQ, KV_REGS>, smem); init = true; }
    dim3 grid(ceil_div(p.max_Tk, BN), p.B * p.nkv);
    flash_bwd_dkdv_kernel<HD, BN, BQ, KV_REGS><<<grid, BN * 2, smem, stream>>>(dk, dv, q, k, v, dout, L, D, p);
    cudaLaunchCheck();
}
template <int HD, int BM, int BN, bool QD_REGS, int MW = 1>
static void dq_launch(bf16* dq, const bf16* q, const bf16* k, const bf16* v, const bf16* dout, const float* L,
                      const float* D, const FlashParams& p, cudaStream_t stream) {
    constexpr size_t smem = (size_t)(2 * BM + 4 * BN) * (HD + 8) * sizeof(bf16);
    static bool init = false;
    if (!init) { set_smem(flash_bwd_dq_kernel<HD, BM, BN, QD_REGS, MW>, smem); init = true; }
    dim3 grid(ceil_div(p.max_rows, BM), p.B * p.nkv);
    flash_bwd_dq_kernel<HD, BM, BN, QD_REGS, MW><<<grid, BM * 2 / MW, smem, stream>>>(dq, q, k, v, dout, L, D, p);
    cudaLaunchCheck();
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

#include "flash_sm90.cuh"
}  // namespace flash

// Tile sizes per padded head dim, from timings on an H200 (dev/cuda/attention.cu, FLASH_TUNE=1).
template <int HD>
static void flash_fwd_hd(floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v, const FlashParams& p,
                         cudaStream_t st) {
#if defined(FLASH_TUNE)
    if constexpr (FLASH_TUNED(HD)) {
        if (flash_config.fwd == 1) { flash::fwd_launch<HD, 128, 32>(out, lse, q, k, v, p, st); return; }
        if (flash_config.fwd == 2) { flash::fwd_launch<HD, 64, 64>(out, lse, q, k, v, p, st); return; }
        if (flash_config.fwd == 3) { flash::fwd_launch<HD, 128, 128>(out, lse, q, k, v, p, st); return; }
        if (flash_config.fwd == 4) { flash::fwd_launch<HD, 128, 64, 2, HD <= 64>(out, lse, q, k, v, p, st); return; }
        if (flash_config.fwd == 5) { flash::fwd_launch<HD, 128, 32, 2, HD <= 80>(out, lse, q, k, v, p, st); return; }
    }
#endif
    if (flash_sm90_active()) {
        constexpr bool SM90_DEFAULT = HD == 80;
#if defined(FLASH_TUNE)
        if constexpr (FLASH_TUNED(HD)) {
            switch (flash_config.fwd) {
                case 11: flash::fwd_sm90_launch<HD, 1, 64>(out, lse, q, k, v, p, st); return;
                case 12: flash::fwd_sm90_launch<HD, 2, 128>(out, lse, q, k, v, p, st); return;
                case 13: flash::fwd_sm90_launch<HD, 1, 128>(out, lse, q, k, v, p, st); return;
                case 14: flash::fwd_sm90_launch<HD, 2, 64, flash::FWD_PIPE>(out, lse, q, k, v, p, st); return;
                case 15: flash::fwd_sm90_launch<HD, 2, 64, flash::FWD_OVERLAP>(out, lse, q, k, v, p, st); return;
                case 16: flash::fwd_sm90_launch<HD, 2, 128, flash::FWD_OVERLAP>(out, lse, q, k, v, p, st); return;
                case 17: flash::fwd_sm90_ws_launch<HD, 128, 2>(out, lse, q, k, v, p, st); return;
                case 18: flash::fwd_sm90_ws_launch<HD, 64, HD <= 80 ? 4 : 3>(out, lse, q, k, v, p, st); return;
                case 19: flash::fwd_sm90_ws_launch<HD, 128, HD <= 80 ? 3 : 2>(out, lse, q, k, v, p, st); return;
                case 20: flash::fwd_sm90_ws_launch<HD, 128, HD <= 80 ? 3 : 2, flash::WS_NO_PINGPONG>(out, lse, q, k, v, p, st); return;
                case 21: flash::fwd_sm90_ws_launch<HD, HD <= 80 ? 128 : 96, HD <= 80 ? 4 : 3>(out, lse, q, k, v, p, st); return;
                case 22: flash::fwd_sm90_ws_launch<HD, 128, HD <= 80 ? 3 : 2, flash::WS_NO_LOADS>(out, lse, q, k, v, p, st); return;
                case 23: flash::fwd_sm90_ws_launch<HD, 64, HD <= 80 ? 4 : 3, flash::WS_NO_LOADS>(out, lse, q, k, v, p, st); return;
                case 24:
                case 25:
                    if constexpr (HD % 64 == 0) {
                        if (flash::fwd_tma_ok<HD>(q, k, v, p)) {
                            if (flash_config.fwd == 24) flash::fwd_sm90_ws_launch<HD, 128, HD == 64 ? 4 : 2, flash::WS_TMA>(out, lse, q, k, v, p, st);
                            else flash::fwd_sm90_ws_launch<HD, HD == 64 ? 128 : 96, 3, flash::WS_TMA>(out, lse, q, k, v, p, st);
                            return;
                        }
                    }
                    break;
                default: break;
            }
        }
#endif
        // the warp-specialized kernel (measured fastest, H200, FLASH_TUNE=2, 2026-11-30: hd 64 / 128
        // with TMA 317 / 592 TFLOP/s vs mma.sync 266 / 295; hd 72 with cp.async 310 / 316 vs 264 / 292)
        if constexpr (HD % 64 == 0) {
            if (flash::fwd_tma_ok<HD>(q, k, v, p)) {
                flash::fwd_sm90_ws_launch<HD, 128, HD == 64 ? 4 : 2, flash::WS_TMA>(out, lse, q, k, v, p, st);
                return;
            }
        }
        if constexpr (SM90_DEFAULT) {
            flash::fwd_sm90_ws_launch<HD, 128, 3>(out, lse, q, k, v, p, st);
            return;
        }
        if (flash_sm90 == 2) {
            flash::fwd_sm90_launch<HD, 2, 64>(out, lse, q, k, v, p, st);
            return;
        }
    }
    // two m16 tiles per warp; Q fragments in registers up to hd 64, K/V tiles of 32 keys for the large head dims
    if constexpr (HD <= 80) flash::fwd_launch<HD, 128, 64, 2, HD <= 64>(out, lse, q, k, v, p, st);
    else flash::fwd_launch<HD, 128, 32, 2, false>(out, lse, q, k, v, p, st);
}
template <int HD>
static void flash_bwd_hd(floatX* dq, floatX* dk, floatX* dv, float* dq_acc, int* locks, const floatX* q, const floatX* k,
                         const floatX* v, const floatX* dout, const float* L, const float* D, const FlashParams& p,
                         cudaStream_t st) {
    constexpr bool SMALL = HD <= 80;  // fragments of the resident tiles fit in registers
    const int mode = flash_bwd_mode_now();
    // ordered: needs the counters and the accumulator (varlen: a scratch sized with B); atomic:
    // needs the accumulator (dq_acc != nullptr)
    if (mode == FLASH_BWD_ORDERED && locks && dq_acc && flash_sm90_active()) {
        // the fused sm90 kernel with the ordered dQ sums (DQ_ORDERED; tiles as the atomic one;
        // at HD 80 the fp32 dQ tile leaves no room for a third Q/dO stage)
        constexpr int O = HD <= 64 ? flash::DQ_NS3 : 0;
        if constexpr (HD <= 80)
            flash::dkdv_sm90_launch<HD, 2, 128, false, flash::DQ_ORDERED, O>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc, locks);
        else
            flash::dkdv_sm90_launch<HD, 2, 64, false, flash::DQ_ORDERED>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc, locks);
        return;
    }
    if (mode == FLASH_BWD_ORDERED && !p.varlen) {
#if defined(FLASH_TUNE)
        if constexpr (FLASH_TUNED(HD)) {
            switch (flash_config.dkdv) {
                case 1: flash::fused_launch<HD, 64, 64, SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 2: flash::fused_launch<HD, 128, 32, SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 3: flash::fused_launch<HD, 128, 64, !SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 4: flash::fused_launch<HD, 128, 64, SMALL, flash::FUSED_RACY>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                default: break;
            }
        }
#endif
        flash::fused_launch<HD, 128, 64, SMALL>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
        return;
    }
    if (mode == FLASH_BWD_ATOMIC && dq_acc && flash_sm90_active()) {
        // the 5-product backward on wgmma (the dK/dV kernel adding the dQ partials)
#if defined(FLASH_TUNE)
        if constexpr (FLASH_TUNED(HD)) {
            switch (flash_config.dkdv) {
                case 11: flash::dkdv_sm90_launch<HD, 1, 64, false, flash::DQ_SYNC>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 12: flash::dkdv_sm90_launch<HD, 2, 64, false, flash::DQ_SYNC>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 13: flash::dkdv_sm90_launch<HD, 1, 64, false, flash::DQ_PIPE>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 14:  // 128 query rows per tile: registers for it up to hd 80
                    if constexpr (HD <= 80) {
                        flash::dkdv_sm90_launch<HD, 2, 128, false, flash::DQ_PIPE>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc);
                        return;
                    }
                    break;
                case 15: flash::dkdv_sm90_launch<HD, 2, 64, false, flash::DQ_PIPE, flash::DQ_RED4>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 16: flash::dkdv_sm90_launch<HD, 2, 64, false, flash::DQ_PIPE, flash::DQ_NS3>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 17: flash::dkdv_sm90_launch<HD, 2, 64, false, flash::DQ_PIPE, flash::DQ_RED4 | flash::DQ_NS3>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                case 18:
                    if constexpr (HD <= 80) {
                        flash::dkdv_sm90_launch<HD, 2, 128, false, flash::DQ_PIPE, flash::DQ_NS3>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc);
                        return;
                    }
                    break;
                case 19:
                    if constexpr (HD <= 80) {
                        flash::dkdv_sm90_launch<HD, 2, 128, false, flash::DQ_PIPE, flash::DQ_RED4>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc);
                        return;
                    }
                    break;
                case 20:  // the partials through shared memory and bulk reductions (DQ_BULK)
                    if constexpr (HD <= 80) {
                        constexpr int O = flash::DQ_BULK | (HD <= 64 ? flash::DQ_NS3 : 0);
                        flash::dkdv_sm90_launch<HD, 2, 128, false, flash::DQ_PIPE, O>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc);
                        return;
                    }
                    break;
                case 21: flash::dkdv_sm90_launch<HD, 2, 64, false, flash::DQ_PIPE, flash::DQ_BULK>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc); return;
                default: break;
            }
        }
#endif
        // measured fastest (H200, FLASH_TUNE=2, 2026-11-30): up to hd 80, 128 query rows per
        // tile, four-column reductions and three stages; at hd 128 (registers) 64 rows, the
        // plain reductions and two stages. Backward 191.8 / 282.7 / 243.4 TFLOP/s at hd64
        // causal / hd72 L13442 / hd128 causal (docs/results.md, 2026-11-30)
        if constexpr (HD <= 80)
            flash::dkdv_sm90_launch<HD, 2, 128, false, flash::DQ_PIPE, flash::DQ_RED4 | flash::DQ_NS3>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc);
        else
            flash::dkdv_sm90_launch<HD, 2, 64, false, flash::DQ_PIPE>(dk, dv, q, k, v, dout, L, D, p, st, dq, dq_acc);
        return;
    }
    if (mode == FLASH_BWD_ATOMIC && dq_acc) {
        constexpr int A = flash::FUSED_ATOMIC;
#if defined(FLASH_TUNE)
        if constexpr (FLASH_TUNED(HD)) {
            switch (flash_config.dkdv) {
                case 1: flash::fused_launch<HD, 64, 64, SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 2: flash::fused_launch<HD, 128, 32, SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                case 3: flash::fused_launch<HD, 128, 64, !SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st); return;
                default: break;
            }
        }
#endif
        flash::fused_launch<HD, 128, 64, SMALL, A>(dq, dk, dv, dq_acc, locks, q, k, v, dout, L, D, p, st);
        return;
    }
    constexpr bool SM90_BWD_DEFAULT = HD == 80 || HD == 128;
    if (flash_sm90_active() && (SM90_BWD_DEFAULT || flash_sm90 == 2)) {
        bool done = false;
#if defined(FLASH_TUNE)
        if constexpr (FLASH_TUNED(HD)) {
            done = true;
            switch (flash_config.dkdv) {
                case 11: flash::dkdv_sm90_launch<HD, 1, 64>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 12: flash::dkdv_sm90_launch<HD, 2, 32>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 13: flash::dkdv_sm90_launch<HD, 1, 128>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 14: flash::dkdv_sm90_launch<HD, 2, 64, true>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 15: flash::dkdv_sm90_launch<HD, 1, 64, true>(dk, dv, q, k, v, dout, L, D, p, st); break;
                case 16: flash::dkdv_sm90_launch<HD, 2, 32, true>(dk, dv, q, k, v, dout, L, D, p, st); break;
                default: done = false;
            }
        }
#endif
        if (!done) flash::dkdv_sm90_launch<HD, 2, 64>(dk, dv, q, k, v, dout, L, D, p, st);
        done = false;
#if defined(FLASH_TUNE)
        if constexpr (FLASH_TUNED(HD)) {
            done = true;
            switch (flash_config.dq) {
                case 11: flash::dq_sm90_launch<HD, 1, 64>(dq, q, k, v, dout, L, D, p, st); break;
                case 12: flash::dq_sm90_launch<HD, 2, 128>(dq, q, k, v, dout, L, D, p, st); break;
                case 13: flash::dq_sm90_launch<HD, 1, 128>(dq, q, k, v, dout, L, D, p, st); break;
                case 14: flash::dq_sm90_launch<HD, 2, 64, true>(dq, q, k, v, dout, L, D, p, st); break;
                case 15: flash::dq_sm90_launch<HD, 1, 64, true>(dq, q, k, v, dout, L, D, p, st); break;
                case 16: flash::dq_sm90_launch<HD, 1, 128, true>(dq, q, k, v, dout, L, D, p, st); break;
                default: done = false;
            }
        }
#endif
        if (!done) flash::dq_sm90_launch<HD, 2, 64>(dq, q, k, v, dout, L, D, p, st);
        return;
    }
    bool done = false;
#if defined(FLASH_TUNE)
    if constexpr (FLASH_TUNED(HD)) {
        done = true;
        if (flash_config.dkdv == 1) flash::dkdv_launch<HD, 128, 64, SMALL>(dk, dv, q, k, v, dout, L, D, p, st);
        else if (flash_config.dkdv == 2) flash::dkdv_launch<HD, 128, 32, SMALL>(dk, dv, q, k, v, dout, L, D, p, st);
        else if (flash_config.dkdv == 3) flash::dkdv_launch<HD, 128, 32, true>(dk, dv, q, k, v, dout, L, D, p, st);
        else done = false;
    }
#endif
    if (!done) flash::dkdv_launch<HD, HD <= 64 ? 64 : 128, 64, SMALL>(dk, dv, q, k, v, dout, L, D, p, st);
    done = false;
#if defined(FLASH_TUNE)
    if constexpr (FLASH_TUNED(HD)) {
        done = true;
        if (flash_config.dq == 1) flash::dq_launch<HD, 64, 64, SMALL>(dq, q, k, v, dout, L, D, p, st);
        else if (flash_config.dq == 2) flash::dq_launch<HD, 128, 64, SMALL>(dq, q, k, v, dout, L, D, p, st);
        else if (flash_config.dq == 3) flash::dq_launch<HD, 128, 64, !SMALL>(dq, q, k, v, dout, L, D, p, st);
        else if (flash_config.dq == 4) flash::dq_launch<HD, 128, 32, HD <= 64, 2>(dq, q, k, v, dout, L, D, p, st);
        else if (flash_config.dq == 5) flash::dq_launch<HD, 128, 64, false, 2>(dq, q, k, v, dout, L, D, p, st);
        else done = false;
    }
#endif
    if (!done) {  // two m16 tiles per warp (as the forward)
        if constexpr (HD <= 64) flash::dq_launch<HD, 128, 32, true, 2>(dq, q, k, v, dout, L, D, p, st);
        else if constexpr (HD == 80) flash::dq_launch<HD, 128, 64, false, 2>(dq, q, k, v, dout, L, D, p, st);
        else flash::dq_launch<HD, 128, 32, false, 2>(dq, q, k, v, dout, L, D, p, st);
    }
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

static void flash_fwd_launch(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp, const FlashParams& p,
                             cudaStream_t stream) {
    FLASH_HD_DISPATCH(p.hd, flash_fwd_hd, out, lse, qp, kp, vp, p, stream);
}
// Lp / Dp: the packed L and D rows (flash_bwd_prep_kernel), already written
static void flash_bwd_launch(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* qp, const floatX* kp,
                             const floatX* vp, const float* Lp, const float* Dp, float* dq_acc, int* locks, const FlashParams& p,
                             cudaStream_t stream) {
    FLASH_HD_DISPATCH(p.hd, flash_bwd_hd, dqp, dkp, dvp, dq_acc, locks, qp, kp, vp, dout, Lp, Dp, p, stream);
}
#endif

// ----------------------------------------------------------------------------
// The API (both builds).

// Fixed layout (the GPT): out [B, T, nh*hd]; lse [B, nh, T] fp32 (saved for the backward).
static void flash_attention_forward(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp,
                                    const AttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    flash_attention_check_shape(s);
    flash_fwd_launch(out, lse, qp, kp, vp, flash_params(s), stream);
}

// dqp/dkp/dvp in the layouts of qp/kp/vp (what rope's backward reads), fully
// overwritten; scratch: flash_attention_scratch_bytes(s) bytes. Deterministic except
// flash_bwd_mode = FLASH_BWD_ATOMIC (dq's fp32 sum order varies run to run).
static void flash_attention_backward(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* out,
                                     const float* lse, const floatX* qp, const floatX* kp, const floatX* vp, float* scratch,
                                     const AttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    flash_attention_check_shape(s);
    const FlashParams p = flash_params(s);
    const size_t nrows = (size_t)s.B * s.nh * s.T;
    float* Lp = scratch;
    float* Dp = scratch + nrows;
    float* dq_acc = scratch + flash_dq_acc_offset(nrows);
    int* locks = reinterpret_cast<int*>(dq_acc + nrows * s.hd);
    flash_bwd_prep(Lp, Dp, out, dout, lse, p, stream);
    flash_bwd_launch(dqp, dkp, dvp, dout, qp, kp, vp, Lp, Dp, dq_acc, locks, p, stream);
}

// Packed variable-length layout (the DiT; VarlenAttnShape above): full attention of each
// sample's queries over its own keys. out [Nq, nh*hd], lse [nh, Nq] fp32.
static void flash_attention_varlen_forward(floatX* out, float* lse, const floatX* qp, const floatX* kp, const floatX* vp,
                                           const VarlenAttnShape& s, cudaStream_t stream) {
    NVTX_RANGE_FN();
    flash_attention_varlen_check(s);
    flash_fwd_launch(out, lse, qp, kp, vp, flash_params_varlen(s), stream);
}

// dq/dk/dv written (not accumulated) with the strides of q/k/v; scratch:
// flash_attention_varlen_scratch_bytes(Nq, nh) bytes, or (scratch_bytes given, at least)
// flash_attention_varlen_scratch_bytes(Nq, nh, hd) bytes for FLASH_BWD_ATOMIC and
// flash_attention_varlen_scratch_bytes(Nq, nh, hd, B) for the Hopper FLASH_BWD_ORDERED (the
// default's backward there; with less, both fall back to the split backward).
// Deterministic except FLASH_BWD_ATOMIC.
static void flash_attention_varlen_backward(floatX* dqp, floatX* dkp, floatX* dvp, const floatX* dout, const floatX* out,
                                            const float* lse, const floatX* qp, const floatX* kp, const floatX* vp,
                                            float* scratch, const VarlenAttnShape& s, cudaStream_t stream,
                                            size_t scratch_bytes = 0) {
    NVTX_RANGE_FN();
    flash_attention_varlen_check(s);
    const FlashParams p = flash_params_varlen(s);
    const size_t nrows = (size_t)p.Nq * s.nh;
    float* Lp = scratch;
    float* Dp = scratch + nrows;
    const bool has_acc = scratch_bytes >= flash_attention_varlen_scratch_bytes(p.Nq, s.nh, s.hd);
    float* dq_acc = has_acc ? scratch + flash_dq_acc_offset(nrows) : nullptr;
    const bool has_locks = scratch_bytes >= flash_attention_varlen_scratch_bytes(p.Nq, s.nh, s.hd, s.B);
    int* locks = has_locks ? reinterpret_cast<int*>(dq_acc + nrows * s.hd) : nullptr;
    static bool warned = false;
    if (flash_bwd_mode_now() == FLASH_BWD_ATOMIC && !has_acc && !warned) {
        warned = true;
        fprintf(stderr, "flash attention: the atomic varlen backward needs scratch_bytes >= "
                        "flash_attention_varlen_scratch_bytes(Nq, nh, hd); using the split backward\n");
    }
    flash_bwd_prep(Lp, Dp, out, dout, lse, p, stream);
    flash_bwd_launch(dqp, dkp, dvp, dout, qp, kp, vp, Lp, Dp, dq_acc, locks, p, stream);
}

