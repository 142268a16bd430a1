/*
Ring attention for context parallelism: the attention over a whole sequence whose tokens
are split over the N ranks of a CP group (the split and the schedule:
llmc/dist/context_parallel.h; the design: docs/context_parallel.md).

At ring step s (0 .. N-1) rank v holds the K/V block of rank u = (v - s) mod N. It
attends its queries to that block with the ordinary flash kernels (flash_attention.cuh),
which return a partial output and its log-sum-exp, and merges those into fp32
accumulators: lse = logaddexp(lse_acc, lse_part), out = e^(lse_acc-lse) out_acc +
e^(lse_part-lse) out_part. Meanwhile the block moves on to rank v+1 (the shift: NCCL
send/receive on a second stream, overlapped with the attention of the block in hand).

The backward needs no saved partials: with the merged out and lse of the whole row, the
flash backward of one block against a query chunk gives exactly that block's share of
dQ, dK and dV (P = exp(S - lse) is the row's global softmax; D = rowsum(dO * O) uses the
merged O). dQ adds up locally in fp32; the K/V block travels the ring once more with an
fp32 dK/dV accumulator that each rank adds its share to, and one last shift hands the
accumulator back to the block's owner.

Two layouts, as the flash API:
  causal (the GPT)  a rank's tokens chunk-major [2][B][Tc]: q [2B, nkv, Tc, r, hd] and so
                    on, each query chunk against each key chunk one fixed-layout call with
                    T = Tc (causal for the same chunk, full for an earlier one, none for a
                    later one: cp_causal_block)
  varlen (the DiT)  a rank's part of every sample, token-major rows with strides; one
                    variable-length call per step (cu_q from this rank's parts, cu_k from
                    the block owner's)

A process holds CpGroup::local ranks one after another in every buffer: 1 with one process
per GPU (the shift is NCCL), or all N on one GPU, where the shift is a device copy from the
previous rank's buffer: the simulated ring, the same code with another transport.
*/
#pragma once
#include <vector>
#include "flash_attention.cuh"
#include "../dist/context_parallel.h"
#ifdef MEGA_NCCL
#include <nccl.h>
#include "../dist/nccl_wait.h"
#endif

struct CpRing {
    CpGroup g;
    size_t cap = 0;                  // tokens of the largest rank's block: each rank's part of a buffer holds this many
    int nh = 0, nkv = 0, hd = 0;
    floatX* kv[2] = {nullptr, nullptr};    // [local][cap][2][nkv*hd] K then V of a token (varlen), or [local][2][cap*nkv*hd] (causal)
    float* dkv[2] = {nullptr, nullptr};    // their gradients in flight, fp32, the same layouts
    float* acc = nullptr;                  // [local][cap][nh*hd] the merged output (forward), dQ (backward)
    floatX* part = nullptr;                // one call's output, or its dQ (row stride up to 2*nh*hd) then dK/dV
    float* lse_part = nullptr;             // one call's lse
    float* lse_in = nullptr;               // varlen: one rank's rows of the merged lse, contiguous (what a call reads)
    cudaStream_t comm_stream = nullptr;
    cudaEvent_t ev_ready = nullptr, ev_kv = nullptr, ev_dkv = nullptr;
#ifdef MEGA_NCCL
    ncclComm_t comm = nullptr;             // the CP group (one process per GPU); null when simulated
#endif
};

// Bytes the ring's buffers take (the memory plan's slot "cp_ring"): cap tokens per rank.
static size_t cp_ring_workspace_bytes(const CpGroup& g, size_t cap, int nh, int nkv, int hd) {
    return cp_ring_bytes(g.local, cap, nh, nkv, hd, sizeof(floatX));
}

// Carves the buffers out of `workspace` (cp_ring_workspace_bytes). nccl_comm: the CP group's
// communicator (an ncclComm_t) when this process holds one rank; null for the simulated ring.
static void cp_ring_init(CpRing* r, const CpGroup& g, void* workspace, size_t bytes, size_t cap, int nh, int nkv, int hd,
                         void* nccl_comm) {
    r->g = g;
    r->cap = cap;
    r->nh = nh; r->nkv = nkv; r->hd = hd;
    if (bytes < cp_ring_workspace_bytes(g, cap, nh, nkv, hd))
        fail("context parallel: the ring's buffers need %zu bytes, got %zu", cp_ring_workspace_bytes(g, cap, nh, nkv, hd), bytes);
    char* p = (char*)workspace;
    auto take = [&](size_t n) { char* q = p; p += (n + 255) / 256 * 256; return q; };
    const size_t kvd = (size_t)nkv * hd, qd = (size_t)nh * hd;
    for (int i = 0; i < 2; i++) r->kv[i] = (floatX*)take((size_t)g.local * 2 * cap * kvd * sizeof(floatX));
    for (int i = 0; i < 2; i++) r->dkv[i] = (float*)take((size_t)g.local * 2 * cap * kvd * sizeof(float));
    r->acc = (float*)take((size_t)g.local * cap * qd * sizeof(float));
    r->part = (floatX*)take(cap * (2 * qd + 2 * kvd) * sizeof(floatX));
    r->lse_part = (float*)take(cap * nh * sizeof(float));
    r->lse_in = (float*)take(cap * nh * sizeof(float));
    if (g.local != g.n) {
#ifdef MEGA_NCCL
        if (!nccl_comm) fail("context parallel: rank %d of %d holds one rank of the group but has no communicator", g.first, g.n);
        r->comm = (ncclComm_t)nccl_comm;
        cudaCheck(cudaStreamCreateWithFlags(&r->comm_stream, cudaStreamNonBlocking));
        cudaCheck(cudaEventCreateWithFlags(&r->ev_ready, cudaEventDisableTiming));
        cudaCheck(cudaEventCreateWithFlags(&r->ev_kv, cudaEventDisableTiming));
        cudaCheck(cudaEventCreateWithFlags(&r->ev_dkv, cudaEventDisableTiming));
#else
        (void)nccl_comm;
        fail("context parallel over several processes needs NCCL (this build has none)");
#endif
    }
}

static void cp_ring_free(CpRing* r) {
    if (r->comm_stream) cudaCheck(cudaStreamDestroy(r->comm_stream));
    for (cudaEvent_t e : {r->ev_ready, r->ev_kv, r->ev_dkv})
        if (e) cudaCheck(cudaEventDestroy(e));
    *r = CpRing();
}

#ifdef MEGA_NCCL
// An NCCL call on the group's communicator, which is non-blocking (as the world's,
// llmc/dist/distributed.cuh): ncclInProgress while the call is being enqueued (a first use of a
// connection waits for the peer) is waited for. A peer that never comes is the watchdog's to
// report within a step; outside one this gives up after ten minutes.
static void cp_nccl_check(const CpRing* r, ncclResult_t e, const char* what) {
    const double t0 = wall_seconds();
    e = nccl_wait(r->comm, e, 0, [&] { return wall_seconds() - t0 > 600; });
    if (e == ncclInProgress) fail("context parallel: rank %d: %s was not enqueued within 600 s; another rank died or hangs", r->g.first, what);
    if (e != ncclSuccess) fail("context parallel: rank %d: %s failed: %s (%s)", r->g.first, what, ncclGetErrorString(e), ncclGetLastError(r->comm));
}
#endif

// The shift: every rank this process holds sends its `bytes` at send + i*bytes to the next
// rank of the group and receives the previous rank's into recv + i*bytes. Simulated: device
// copies on the compute stream. NCCL: on the ring's stream behind the compute stream's work
// so far; `arrived` is recorded when the receive is done (cp_ring_wait).
static void cp_ring_shift(CpRing* r, const void* send, void* recv, size_t bytes, cudaEvent_t arrived, cudaStream_t st) {
    const int n = r->g.n;
    if (r->g.local == n) {
        for (int i = 0; i < n; i++)
            cudaCheck(cudaMemcpyAsync((char*)recv + (size_t)i * bytes, (const char*)send + (size_t)((i + n - 1) % n) * bytes, bytes,
                                      cudaMemcpyDeviceToDevice, st));
        return;
    }
#ifdef MEGA_NCCL
    const int v = r->g.first;
    cudaCheck(cudaEventRecord(r->ev_ready, st));
    cudaCheck(cudaStreamWaitEvent(r->comm_stream, r->ev_ready, 0));
    cp_nccl_check(r, ncclGroupStart(), "ncclGroupStart");
    cp_nccl_check(r, ncclSend(send, bytes, ncclUint8, (v + 1) % n, r->comm, r->comm_stream), "ncclSend (ring)");
    cp_nccl_check(r, ncclRecv(recv, bytes, ncclUint8, (v + n - 1) % n, r->comm, r->comm_stream), "ncclRecv (ring)");
    cp_nccl_check(r, ncclGroupEnd(), "the ring's send/receive");
    cudaCheck(cudaEventRecord(arrived, r->comm_stream));
#else
    (void)arrived; (void)send; (void)recv; (void)bytes; (void)st;
#endif
}
// The compute stream waits for the shift that records `arrived` (nothing to wait for when simulated).
static void cp_ring_wait(CpRing* r, cudaEvent_t arrived, cudaStream_t st) {
    if (r->g.local != r->g.n) cudaCheck(cudaStreamWaitEvent(st, arrived, 0));
}

// Sums count floats of buf over the group, in place, on the compute stream (what a trainer
// gathers from the ranks' parts: a prediction, a row of logits). Simulated: the process holds
// every rank's part already, nothing to do.
static void cp_group_sum(CpRing* r, float* buf, size_t count, cudaStream_t st) {
    if (r->g.local == r->g.n) return;
#ifdef MEGA_NCCL
    cp_nccl_check(r, ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, r->comm, st), "ncclAllReduce (group sum)");
#else
    (void)buf; (void)count; (void)st;
#endif
}

// ------------------------------------------------------------------ kernels

// Where the lse of (token n, head h) of a [tokens] slice is: base + (n / T) * nh * hs + h * hs + n % T.
// Fixed layout [B, nh, T]: T = hs = the chunk's T. Varlen [nh, Nq]: T = the slice's tokens (n / T = 0),
// hs = the row length of the whole lse (Nq), base = the slice's first token.
struct LseMap {
    int T, hs;
    __device__ __forceinline__ size_t at(int n, int h, int nh) const {
        return (size_t)(n / T) * nh * hs + (size_t)h * hs + (n % T);
    }
};

// Merges one call's partial output into the accumulators of the same rows, by log-sum-exp:
// one thread per (token, head), the head's hd values in 16-byte pieces. Memory-bound. The
// accumulators start at out 0, lse -inf (a first merge copies the part).
__global__ static void cp_merge_kernel(float* __restrict__ acc, float* __restrict__ acc_lse, LseMap am,
                                       const floatX* __restrict__ part, const float* __restrict__ part_lse, LseMap pm,
                                       int tokens, int nh, int hd) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)tokens * nh) return;
    const int n = (int)(idx / nh), h = (int)(idx % nh);
    const float la = acc_lse[am.at(n, h, nh)], lp = part_lse[pm.at(n, h, nh)];
    const float m = fmaxf(la, lp);
    const float l = m + logf(expf(la - m) + expf(lp - m));
    const float wa = expf(la - l), wp = expf(lp - l);
    float* a = acc + idx * hd;
    const floatX* p = part + idx * hd;
    for (int c = 0; c < hd; c += x128::size) {
        const x128 pv = load128(p + c);
        for (int j = 0; j < x128::size; j += f128::size) {   // one or two fp32 pieces per 16-byte floatX piece
            f128 av = load128(a + c + j);
            for (int k = 0; k < f128::size; k++) av[k] = wa * av[k] + wp * (float)pv[j + k];
            store128(a + c + j, av);
        }
    }
    acc_lse[am.at(n, h, nh)] = l;
}

// The 16-byte piece of a [rows, width] block this thread handles (one a thread): row r, column c.
__device__ __forceinline__ bool cp_row_piece(int rows, int width, int* r, int* c) {
    const int per_row = width / x128::size;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * per_row) return false;
    *r = (int)(idx / per_row);
    *c = (int)(idx % per_row) * x128::size;
    return true;
}

// acc[r * acc_stride + c] += part[r * part_stride + c], c < width (a multiple of 8): the partial
// dQ / dK / dV of one call into the fp32 sums. Memory-bound.
__global__ static void cp_add_rows_kernel(float* __restrict__ acc, int acc_stride, const floatX* __restrict__ part, int part_stride,
                                          int rows, int width) {
    int r, c;
    if (!cp_row_piece(rows, width, &r, &c)) return;
    const x128 pv = load128(part + (size_t)r * part_stride + c);
    float* a = acc + (size_t)r * acc_stride + c;
    for (int j = 0; j < x128::size; j += f128::size) {
        f128 av = load128(a + j);
        for (int k = 0; k < f128::size; k++) av[k] += (float)pv[j + k];
        store128(a + j, av);
    }
}

// dst[r * dst_stride + c] = src[r * src_stride + c] rounded to floatX, c < width (a multiple of 8)
__global__ static void cp_store_rows_kernel(floatX* __restrict__ dst, int dst_stride, const float* __restrict__ src, int src_stride,
                                            int rows, int width) {
    int r, c;
    if (!cp_row_piece(rows, width, &r, &c)) return;
    const float* s = src + (size_t)r * src_stride + c;
    x128 o;
    for (int j = 0; j < x128::size; j += f128::size) {
        const f128 sv = load128(s + j);
        for (int k = 0; k < f128::size; k++) o[j + k] = (floatX)sv[k];
    }
    store128(dst + (size_t)r * dst_stride + c, o);
}

__global__ static void cp_fill_kernel(float* __restrict__ x, size_t n, float value) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = value;
}

static void cp_merge(float* acc, float* acc_lse, LseMap am, const floatX* part, const float* part_lse, LseMap pm, int tokens, int nh,
                     int hd, cudaStream_t st) {
    const size_t items = (size_t)tokens * nh;
    ProfileWork pw(0, (double)items * (hd * (2 * sizeof(float) + sizeof(floatX)) + 3 * sizeof(float)));
    cp_merge_kernel<<<ceil_div(items, 256), 256, 0, st>>>(acc, acc_lse, am, part, part_lse, pm, tokens, nh, hd);
    cudaLaunchCheck();
}
static int cp_row_blocks(int rows, int width) { return ceil_div((size_t)rows * (width / x128::size), 256); }
static void cp_add_rows(float* acc, int acc_stride, const floatX* part, int part_stride, int rows, int width, cudaStream_t st) {
    ProfileWork pw(0, (double)rows * width * (2 * sizeof(float) + sizeof(floatX)));
    cp_add_rows_kernel<<<cp_row_blocks(rows, width), 256, 0, st>>>(acc, acc_stride, part, part_stride, rows, width);
    cudaLaunchCheck();
}
static void cp_store_rows(floatX* dst, int dst_stride, const float* src, int src_stride, int rows, int width, cudaStream_t st) {
    ProfileWork pw(0, (double)rows * width * (sizeof(float) + sizeof(floatX)));
    cp_store_rows_kernel<<<cp_row_blocks(rows, width), 256, 0, st>>>(dst, dst_stride, src, src_stride, rows, width);
    cudaLaunchCheck();
}
static void cp_fill(float* x, size_t n, float value, cudaStream_t st) {
    cp_fill_kernel<<<ceil_div(n, 256), 256, 0, st>>>(x, n, value);
    cudaLaunchCheck();
}

// ------------------------------------------------------------------ causal (GPT)

// The ranks' own K and V (2 chunks of chunk_kv elements each) into ring buffer 0: [local][K, V][cap * nkv * hd]
static void cp_causal_pack(CpRing* r, const floatX* k, const floatX* v, size_t chunk_kv, cudaStream_t st) {
    const size_t block = r->cap * r->nkv * r->hd, bytes = 2 * chunk_kv * sizeof(floatX);
    for (int i = 0; i < r->g.local; i++) {
        cudaCheck(cudaMemcpyAsync(r->kv[0] + (2 * i) * block, k + i * 2 * chunk_kv, bytes, cudaMemcpyDeviceToDevice, st));
        cudaCheck(cudaMemcpyAsync(r->kv[0] + (2 * i + 1) * block, v + i * 2 * chunk_kv, bytes, cudaMemcpyDeviceToDevice, st));
    }
}

// The process's ranks, each [2][B][Tc] tokens (s.B = B rows, s.T = Tc, causal): q [local*2*B, nkv,
// Tc, r, hd], k, v [local*2*B, nkv, Tc, hd], out [local*2*B*Tc, nh*hd], lse [local*2*B, nh, Tc]:
// the flash layouts with B' = local*2*B rows of Tc tokens. r->cap >= 2*B*Tc.
static void ring_attention_forward(CpRing* r, floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v,
                                   const AttnShape& s, cudaStream_t st) {
    NVTX_RANGE_FN();
    const CpGroup& g = r->g;
    const int n = g.n, B = s.B, Tc = s.T, nh = s.nh, nkv = s.nkv, hd = s.hd;
    const size_t chunk_q = (size_t)B * Tc * nh * hd, chunk_kv = (size_t)B * Tc * nkv * hd, chunk_lse = (size_t)B * nh * Tc;
    const size_t block = r->cap * nkv * hd;              // K (or V) elements of a rank's part of a ring buffer
    if (2 * (size_t)B * Tc > r->cap) fail("ring attention: %d x 2 x %d tokens a rank, the ring holds %zu", B, Tc, r->cap);
    const AttnShape full = {B, Tc, nh, nkv, hd, false}, causal = {B, Tc, nh, nkv, hd, true};
    const LseMap lm = {Tc, Tc};
    cudaCheck(cudaMemsetAsync(r->acc, 0, (size_t)g.local * 2 * chunk_q * sizeof(float), st));
    cp_fill(lse, (size_t)g.local * 2 * chunk_lse, -INFINITY, st);
    cp_causal_pack(r, k, v, chunk_kv, st);
    for (int step = 0; step < n; step++) {
        floatX* cur = r->kv[step % 2];
        if (step + 1 < n) cp_ring_shift(r, cur, r->kv[(step + 1) % 2], 2 * block * sizeof(floatX), r->ev_kv, st);
        cp_causal_blocks(r->g, step, [&](int i, int a, int, int c, bool diag) {
            const floatX* kc = cur + (2 * i) * block + c * chunk_kv;
            const floatX* vc = cur + (2 * i + 1) * block + c * chunk_kv;
            flash_attention_forward(r->part, r->lse_part, q + (2 * i + a) * chunk_q, kc, vc, diag ? causal : full, st);
            cp_merge(r->acc + (2 * i + a) * chunk_q, lse + (2 * i + a) * chunk_lse, lm, r->part, r->lse_part, lm, B * Tc, nh, hd, st);
        });
        if (step + 1 < n) cp_ring_wait(r, r->ev_kv, st);
    }
    cp_store_rows(out, hd, r->acc, hd, (int)((size_t)g.local * 2 * chunk_q / hd), hd, st);
}

// The backward of ring_attention_forward: dq, dk, dv (the layouts of q, k, v) written; out and
// lse the forward's (merged); scratch: flash_attention_scratch_bytes of the chunk shape s.
static void ring_attention_backward(CpRing* r, floatX* dq, floatX* dk, floatX* dv, const floatX* dout, const floatX* out,
                                    const float* lse, const floatX* q, const floatX* k, const floatX* v, float* scratch,
                                    const AttnShape& s, cudaStream_t st) {
    NVTX_RANGE_FN();
    const CpGroup& g = r->g;
    const int n = g.n, B = s.B, Tc = s.T, nh = s.nh, nkv = s.nkv, hd = s.hd;
    const size_t chunk_q = (size_t)B * Tc * nh * hd, chunk_kv = (size_t)B * Tc * nkv * hd, chunk_lse = (size_t)B * nh * Tc;
    const size_t block = r->cap * nkv * hd;
    if (2 * (size_t)B * Tc > r->cap) fail("ring attention: %d x 2 x %d tokens a rank, the ring holds %zu", B, Tc, r->cap);
    const AttnShape full = {B, Tc, nh, nkv, hd, false}, causal = {B, Tc, nh, nkv, hd, true};
    floatX *dq_part = r->part, *dk_part = r->part + chunk_q, *dv_part = dk_part + chunk_kv;
    cudaCheck(cudaMemsetAsync(r->acc, 0, (size_t)g.local * 2 * chunk_q * sizeof(float), st));
    cudaCheck(cudaMemsetAsync(r->dkv[0], 0, (size_t)g.local * 2 * block * sizeof(float), st));
    cp_causal_pack(r, k, v, chunk_kv, st);
    for (int step = 0; step < n; step++) {
        floatX* cur = r->kv[step % 2];
        float* dcur = r->dkv[step % 2];
        if (step + 1 < n) cp_ring_shift(r, cur, r->kv[(step + 1) % 2], 2 * block * sizeof(floatX), r->ev_kv, st);
        bool have_sums = step == 0;   // the held block's dK/dV sums, from the previous rank: waited for before the first add
        cp_causal_blocks(r->g, step, [&](int i, int a, int, int c, bool diag) {
            const size_t qa = (2 * i + a) * chunk_q;
            const size_t kc = (2 * i) * block + c * chunk_kv, vc = (2 * i + 1) * block + c * chunk_kv;
            flash_attention_backward(dq_part, dk_part, dv_part, dout + qa, out + qa, lse + (2 * i + a) * chunk_lse, q + qa,
                                     cur + kc, cur + vc, scratch, diag ? causal : full, st);
            cp_add_rows(r->acc + qa, hd, dq_part, hd, (int)(chunk_q / hd), hd, st);
            if (!have_sums) { cp_ring_wait(r, r->ev_dkv, st); have_sums = true; }
            cp_add_rows(dcur + kc, hd, dk_part, hd, (int)(chunk_kv / hd), hd, st);
            cp_add_rows(dcur + vc, hd, dv_part, hd, (int)(chunk_kv / hd), hd, st);
        });
        if (step + 1 < n) cp_ring_wait(r, r->ev_kv, st);
        // the sums move on with their block; after the last step this hands each block's back to its owner
        float* dnext = r->dkv[(step + 1) % 2];
        cp_ring_shift(r, dcur, dnext, 2 * block * sizeof(float), r->ev_dkv, st);
    }
    cp_ring_wait(r, r->ev_dkv, st);
    const float* dmine = r->dkv[n % 2];
    cp_store_rows(dq, hd, r->acc, hd, (int)((size_t)g.local * 2 * chunk_q / hd), hd, st);
    for (int i = 0; i < g.local; i++) {
        cp_store_rows(dk + i * 2 * chunk_kv, hd, dmine + (2 * i) * block, hd, (int)(2 * chunk_kv / hd), hd, st);
        cp_store_rows(dv + i * 2 * chunk_kv, hd, dmine + (2 * i + 1) * block, hd, (int)(2 * chunk_kv / hd), hd, st);
    }
}

// ------------------------------------------------------------------ variable length (DiT)

// The process's ranks' tokens one rank after another, each rank's parts of the B samples in
// sample order (cp_part_tokens). cu_host[v]: CP rank v's B+1 cumulative part sizes (cp_part_cu),
// for every rank of the group; cu_dev: the same n * (B+1) ints on the device. q, k, v token-major
// rows with their strides (head h of token j at q + j*q_stride + h*hd), out [tokens, nh*hd],
// lse [nh, tokens] (tokens: all ranks this process holds). Full attention, nkv = nh.
struct CpVarlenShape {
    int B, nh, hd;
    const std::vector<std::vector<int>>* cu_host;
    const int* cu_dev;
    int q_stride, k_stride, v_stride;
};

// first token of local rank i in the process's buffers, and how many it holds
static int cp_varlen_offset(const CpRing* r, const CpVarlenShape& s, int i) {
    int off = 0;
    for (int j = 0; j < i; j++) off += (*s.cu_host)[r->g.first + j][s.B];
    return off;
}
static int cp_varlen_tokens_held(const CpRing* r, const CpVarlenShape& s) { return cp_varlen_offset(r, s, r->g.local); }

// The call of rank rv's queries (q rows from q0) against the block of rank u held in buffer kvb
static VarlenAttnShape cp_varlen_call(const CpVarlenShape& s, int rv, int u, int q_stride) {
    const int C = s.nh * s.hd;
    return {s.B, s.nh, s.hd, (*s.cu_host)[rv].data(), (*s.cu_host)[u].data(), q_stride, 2 * C, 2 * C,
            s.cu_dev + (size_t)rv * (s.B + 1), s.cu_dev + (size_t)u * (s.B + 1)};
}

// The ranks' own K and V rows into ring buffer 0 ([local][cap][K, V] rows of 2*nh*hd)
static void cp_varlen_pack(CpRing* r, const CpVarlenShape& s, const floatX* k, const floatX* v, cudaStream_t st) {
    const size_t C = (size_t)s.nh * s.hd, X = sizeof(floatX);
    for (int i = 0; i < r->g.local; i++) {
        const int off = cp_varlen_offset(r, s, i), rows = (*s.cu_host)[r->g.first + i][s.B];
        floatX* dst = r->kv[0] + (size_t)i * r->cap * 2 * C;
        cudaCheck(cudaMemcpy2DAsync(dst, 2 * C * X, k + (size_t)off * s.k_stride, s.k_stride * X, C * X, rows, cudaMemcpyDeviceToDevice, st));
        cudaCheck(cudaMemcpy2DAsync(dst + C, 2 * C * X, v + (size_t)off * s.v_stride, s.v_stride * X, C * X, rows, cudaMemcpyDeviceToDevice, st));
    }
}

static void ring_attention_varlen_check(const CpRing* r, const CpVarlenShape& s) {
    if ((int)s.cu_host->size() != r->g.n) fail("ring attention: %zu ranks' parts, the group has %d", s.cu_host->size(), r->g.n);
    for (int v = 0; v < r->g.n; v++)
        if ((size_t)(*s.cu_host)[v][s.B] > r->cap) fail("ring attention: rank %d holds %d tokens, the ring %zu", v, (*s.cu_host)[v][s.B], r->cap);
    if (s.q_stride > 2 * s.nh * s.hd) fail("ring attention: q row stride %d above 2 x nh*hd", s.q_stride);
}

static void ring_attention_varlen_forward(CpRing* r, floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v,
                                          const CpVarlenShape& s, cudaStream_t st) {
    NVTX_RANGE_FN();
    ring_attention_varlen_check(r, s);
    const CpGroup& g = r->g;
    const int n = g.n, nh = s.nh, hd = s.hd, C = nh * hd, held = cp_varlen_tokens_held(r, s);
    const size_t block = r->cap * 2 * C;   // elements of a rank's part of a ring buffer
    cudaCheck(cudaMemsetAsync(r->acc, 0, (size_t)held * C * sizeof(float), st));
    cp_fill(lse, (size_t)nh * held, -INFINITY, st);
    cp_varlen_pack(r, s, k, v, st);
    for (int step = 0; step < n; step++) {
        floatX* cur = r->kv[step % 2];
        if (step + 1 < n) cp_ring_shift(r, cur, r->kv[(step + 1) % 2], block * sizeof(floatX), r->ev_kv, st);
        for (int i = 0; i < g.local; i++) {
            const int rv = g.first + i, u = cp_ring_source(rv, step, n), off = cp_varlen_offset(r, s, i), rows = (*s.cu_host)[rv][s.B];
            const floatX* kb = cur + (size_t)i * block;
            flash_attention_varlen_forward(r->part, r->lse_part, q + (size_t)off * s.q_stride, kb, kb + C,
                                           cp_varlen_call(s, rv, u, s.q_stride), st);
            cp_merge(r->acc + (size_t)off * C, lse + off, {rows, held}, r->part, r->lse_part, {rows, rows}, rows, nh, hd, st);
        }
        if (step + 1 < n) cp_ring_wait(r, r->ev_kv, st);
    }
    cp_store_rows(out, C, r->acc, C, held, C, st);
}

// dq, dk, dv written with the strides of q, k, v; scratch of scratch_bytes bytes: what the varlen
// backward of one rank's tokens against one block needs (flash_attention_varlen_scratch_bytes(cap, nh, hd, B)).
static void ring_attention_varlen_backward(CpRing* r, floatX* dq, floatX* dk, floatX* dv, const floatX* dout, const floatX* out,
                                           const float* lse, const floatX* q, const floatX* k, const floatX* v, float* scratch,
                                           size_t scratch_bytes, const CpVarlenShape& s, cudaStream_t st) {
    NVTX_RANGE_FN();
    ring_attention_varlen_check(r, s);
    const CpGroup& g = r->g;
    const int n = g.n, nh = s.nh, hd = s.hd, C = nh * hd, held = cp_varlen_tokens_held(r, s);
    const size_t block = r->cap * 2 * C;
    floatX *dq_part = r->part, *dkv_part = r->part + r->cap * s.q_stride;   // dq with q's row stride, then [cap][dK, dV]
    cudaCheck(cudaMemsetAsync(r->acc, 0, (size_t)held * C * sizeof(float), st));
    cudaCheck(cudaMemsetAsync(r->dkv[0], 0, (size_t)g.local * block * sizeof(float), st));
    cp_varlen_pack(r, s, k, v, st);
    for (int step = 0; step < n; step++) {
        floatX* cur = r->kv[step % 2];
        float* dcur = r->dkv[step % 2];
        if (step + 1 < n) cp_ring_shift(r, cur, r->kv[(step + 1) % 2], block * sizeof(floatX), r->ev_kv, st);
        bool have_sums = step == 0;
        for (int i = 0; i < g.local; i++) {
            const int rv = g.first + i, u = cp_ring_source(rv, step, n), off = cp_varlen_offset(r, s, i);
            const int rows = (*s.cu_host)[rv][s.B], urows = (*s.cu_host)[u][s.B];
            // this rank's rows of the merged lse, contiguous [nh, rows] as the call reads them
            cudaCheck(cudaMemcpy2DAsync(r->lse_in, rows * sizeof(float), lse + off, held * sizeof(float), rows * sizeof(float), nh,
                                        cudaMemcpyDeviceToDevice, st));
            const floatX* kb = cur + (size_t)i * block;
            flash_attention_varlen_backward(dq_part, dkv_part, dkv_part + C, dout + (size_t)off * C, out + (size_t)off * C, r->lse_in,
                                            q + (size_t)off * s.q_stride, kb, kb + C, scratch, cp_varlen_call(s, rv, u, s.q_stride),
                                            st, scratch_bytes);
            cp_add_rows(r->acc + (size_t)off * C, C, dq_part, s.q_stride, rows, C, st);
            if (!have_sums) { cp_ring_wait(r, r->ev_dkv, st); have_sums = true; }
            cp_add_rows(dcur + (size_t)i * block, 2 * C, dkv_part, 2 * C, urows, 2 * C, st);
        }
        if (step + 1 < n) cp_ring_wait(r, r->ev_kv, st);
        cp_ring_shift(r, dcur, r->dkv[(step + 1) % 2], block * sizeof(float), r->ev_dkv, st);
    }
    cp_ring_wait(r, r->ev_dkv, st);
    const float* dmine = r->dkv[n % 2];
    for (int i = 0; i < g.local; i++) {
        const int off = cp_varlen_offset(r, s, i), rows = (*s.cu_host)[g.first + i][s.B];
        cp_store_rows(dq + (size_t)off * s.q_stride, s.q_stride, r->acc + (size_t)off * C, C, rows, C, st);
        cp_store_rows(dk + (size_t)off * s.k_stride, s.k_stride, dmine + (size_t)i * block, 2 * C, rows, C, st);
        cp_store_rows(dv + (size_t)off * s.v_stride, s.v_stride, dmine + (size_t)i * block + C, 2 * C, rows, C, st);
    }
}
