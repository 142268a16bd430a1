// What both kernel families (and the fp32 build) share: the attention shapes, the per-launch
// parameters, where a group's rows live, the backward's scratch and its first step (prep).
#pragma once
#include <cstdint>
#include <cstring>
#include "../core/cuda_common.h"

static int flash_sm_count() {
    static int sms = 0;
    if (!sms) sms = cuda_device_props().multiProcessorCount;
    return sms;
}

// Fixed layout (the GPT): B sequences of T tokens; q [B, nkv, T, r, hd] (the r = nh/nkv query
// heads of one K/V head side by side), k, v [B, nkv, T, hd], out [B, T, nh*hd].
// pos (packed rows, SFT --pack 1): device [B, T], each token's position in its document,
// restarting at 0 where a document starts; attention stays inside each document (causal).
struct AttnShape {
    int B, T, nh, nkv, hd;
    bool causal;
    const int* pos = nullptr;
};

// Bytes of scratch the backward needs: D and lse*log2(e) (one float per query row each),
// plus the fp32 dQ accumulator of the fused backward ([B, nkv, T*r, hd]) and its counters
// (one int per group and 16 query rows, at most), so that every algorithm fits; 16 bytes
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
    if (s.pos && !s.causal) fail("flash attention: packed rows (positions) need causal attention");
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
    const int* pos;                  // fixed layout, packed rows: AttnShape::pos (null: one document a row)
    int Nk;                          // key tokens of the whole batch (fixed: B * T; the TMA maps' extent)
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
    p.pos = s.pos;
    p.Nk = s.B * s.T;
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

// FLOPs of the forward as the benchmarks count them (docs/perf.md): the two products,
// 4*nh*Tq*Tk*hd per sample, causal half; the backward counts 2.5 times that.
static double flash_attention_flops(const AttnShape& s) {
    return 4.0 * s.B * s.nh * (double)s.T * s.T * s.hd / (s.causal ? 2.0 : 1.0);
}
static double flash_attention_flops(const VarlenAttnShape& s) {
    double f = 0;
    for (int b = 0; b < s.B; b++) f += 4.0 * s.nh * (double)(s.cu_q[b + 1] - s.cu_q[b]) * (s.cu_k[b + 1] - s.cu_k[b]) * s.hd;
    return f;
}

static FlashParams flash_params_varlen(const VarlenAttnShape& s) {
    FlashParams p;
    p.B = s.B; p.T = 0; p.nh = s.nh; p.nkv = s.nh; p.hd = s.hd; p.r = 1; p.rows = 0;
    p.causal = 0;
    p.scale = 1.0f / sqrtf((float)s.hd);
    p.scale_log2 = p.scale * 1.4426950408889634f;
    p.varlen = 1;
    p.Nq = s.cu_q[s.B];
    p.Nk = s.cu_k[s.B];
    p.cu_q = s.cu_q_dev; p.cu_k = s.cu_k_dev;
    p.q_rs = s.q_stride; p.k_rs = s.k_stride; p.v_rs = s.v_stride;
    p.o_ts = s.nh * s.hd;
    p.pos = nullptr;
    p.max_rows = p.max_Tk = 0;
    for (int b = 0; b < s.B; b++) {
        p.max_rows = std::max(p.max_rows, s.cu_q[b + 1] - s.cu_q[b]);
        p.max_Tk = std::max(p.max_Tk, s.cu_k[b + 1] - s.cu_k[b]);
    }
    return p;
}

// Bytes of scratch the varlen backward needs: D and lse*log2(e), one float per (head, query token)
// each (enough for the split backward); with hd > 0 also the fp32 dQ accumulator of the atomic
// backward ([nh, Nq, hd]); with B > 0 (the number of samples) also the counters of the ordered
// backward (flash_varlen_locks). flash_attention_varlen_backward checks that the scratch it is
// given fits the backward algorithm that runs.
// Varlen counters, per head: sample b's query tiles (of 64 or more rows) start at
// cu_q[b] / BQ + b, which leaves room for its ceil(len / BQ) tiles.
// (Nq: FlashParams.Nq, an int)
__host__ __device__ __forceinline__ int flash_varlen_lock_stride(int Nq, int B) { return Nq / 64 + B + 1; }
static size_t flash_varlen_locks(size_t Nq, int nh, int B) { return (size_t)nh * flash_varlen_lock_stride((int)Nq, B); }
static size_t flash_attention_varlen_scratch_bytes(size_t Nq, int nh, int hd = 0, int B = 0) {
    return (2 + (size_t)std::max(hd, 0)) * Nq * (size_t)nh * sizeof(float) + (hd > 0 ? 16 : 0) +
           (hd > 0 && B > 0 ? flash_varlen_locks(Nq, nh, B) * sizeof(int) : 0);
}

// Room a varlen caller may add to that scratch for the query-split backward
// (flash_sm90_bwd_ws.cuh QSPLIT: calls with few keys per sample, the DiT's cross-attention):
// fp32 dK and dV partials of up to FLASH_QSPLIT_MAX_CHUNKS query chunks, for key_slots = B x
// (a sample's most keys) keys of nkv heads. The backward splits only as far as the room it
// finds past what it needs holds the call's partials; without it, it does not split.
constexpr int FLASH_QSPLIT_MAX_CHUNKS = 8;
static size_t flash_attention_query_split_bytes(size_t key_slots, int nkv, int hd) {
    return 2 * (size_t)FLASH_QSPLIT_MAX_CHUNKS * key_slots * nkv * hd * sizeof(float) + 16;
}

// The backward's scratch: the packed L and D rows, then (16-byte aligned) the fp32 dQ
// accumulator of nrows x hd floats, then the ordered backward's counters; split: the
// query-split room (16-byte aligned), split_floats floats of it (0: none).
struct FlashBwdScratch {
    float *L, *D, *dq_acc;
    int* locks;
    float* split = nullptr;
    size_t split_floats = 0;
};
static FlashBwdScratch flash_bwd_scratch(float* scratch, size_t nrows, int hd) {
    FlashBwdScratch w;
    w.L = scratch;
    w.D = scratch + nrows;
    w.dq_acc = scratch + flash_dq_acc_offset(nrows);
    w.locks = reinterpret_cast<int*>(w.dq_acc + nrows * hd);
    return w;
}
// The varlen backward's scratch of scratch_bytes bytes, of which it needs need: what is past
// that is the query-split room
static FlashBwdScratch flash_bwd_scratch_varlen(float* scratch, size_t nrows, int hd, size_t need, size_t scratch_bytes) {
    FlashBwdScratch w = flash_bwd_scratch(scratch, nrows, hd);
    const size_t off = (need + 15) & ~(size_t)15;
    if (scratch_bytes > off) {
        w.split = reinterpret_cast<float*>(reinterpret_cast<char*>(scratch) + off);
        w.split_floats = (scratch_bytes - off) / sizeof(float);
    }
    return w;
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

// Packed rows (FlashParams::pos): the query at position t of row b sees keys from its
// document's start, t - pos[b][t], on. Positions past T belong to rows past the group's end
// (masked anyway): 0.
__device__ __forceinline__ int flash_doc_start(const FlashParams& p, int b, int t) {
    return t < p.T ? t - p.pos[(size_t)b * p.T + t] : 0;
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
    ProfileWork pw(0, (double)nrows * (2 * p.hd * sizeof(floatX) + 3 * sizeof(float)));   // out, dout, lse; L, D
    flash_bwd_prep_kernel<<<ceil_div(nrows * flash_prep_lanes(p.hd), (size_t)256), 256, 0, stream>>>(Lp, Dp, out, dout, lse, p);
    cudaLaunchCheck();
}

// What the caller asks of the backward (policy) and how the backward sums dQ (mechanism); the
// policy picks the mechanism (flash_bwd_algo in flash_attention.cuh):
//   deterministic  bit-identical gradients run to run (what exact resume and the determinism
//                  tests rely on)
//   fast           dq's fp32 sum order may vary run to run (as in PyTorch's SDPA backends)
enum class FlashBwdPolicy { deterministic, fast };
//   split    separate dK/dV and dQ kernels: S and dP computed twice (7 matrix products), no
//            inter-CTA ordering. Deterministic.
//   ordered  one fused dK/dV/dQ kernel (5 products); the dQ partials of the K/V tiles are added
//            to an fp32 accumulator in a fixed order (ordered by integer counters), then
//            converted to bf16. Deterministic.
//   atomic   the same fused kernel adding the dQ partials with fp32 atomics (FlashAttention-2/3's
//            backward). NOT deterministic.
enum class FlashBwdAlgo { split, ordered, atomic };
static const char* flash_bwd_algo_name(FlashBwdAlgo a) {
    return a == FlashBwdAlgo::ordered ? "ordered" : a == FlashBwdAlgo::atomic ? "atomic" : "split";
}
