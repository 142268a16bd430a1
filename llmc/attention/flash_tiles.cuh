// The tile math both bf16 kernel families share (the mma.sync kernels of flash_mma.cuh and the
// wgmma kernels of flash_sm90.cuh): async copies, mma.sync and ldmatrix wrappers, shared-memory
// tile loads and stores, the causal/ragged key mask (mask_keys), the online softmax in base 2
// (online_softmax), the forward epilogue; the fused backward's dQ accumulator (ordered
// counters, fp32 vector reductions, the conversion to bf16).
// A warp owns 16 rows of an output tile in the m16n8 accumulator layout, in both families (a
// wgmma warpgroup's warp q holds the same rows and fragment layout), so this code serves both.
#pragma once
#include "flash_common.cuh"

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
// The transposed backward's fragments (rows: keys; elements 0, 2 in query column 2 tq and
// 1, 3 in 2 tq + 1, whose L and D are l2.x, l2.y and d2.x, d2.y): P^T = 2^(scale_log2 S^T - L)
// in place, then dS^T = P^T (dP^T - D) in place
__device__ __forceinline__ void frag_p_t(float (&s)[4], float2 l2, float scale_log2) {
    s[0] = exp2_approx(fmaf(s[0], scale_log2, -l2.x));
    s[1] = exp2_approx(fmaf(s[1], scale_log2, -l2.y));
    s[2] = exp2_approx(fmaf(s[2], scale_log2, -l2.x));
    s[3] = exp2_approx(fmaf(s[3], scale_log2, -l2.y));
}
__device__ __forceinline__ void frag_ds_t(float (&dp)[4], const float (&s)[4], float2 d2) {
    dp[0] = s[0] * (dp[0] - d2.x);
    dp[1] = s[1] * (dp[1] - d2.y);
    dp[2] = s[2] * (dp[2] - d2.x);
    dp[3] = s[3] * (dp[3] - d2.y);
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

// A group's rows in global memory, as the tile loaders take them (RowPtr): q, k and v row i
// of group G, and o row i of dO (or out): position i / r, head i % r of the group's heads.
struct FlashRows {
    const bf16* base;
    int stride;
    __device__ __forceinline__ const bf16* operator()(int i) const { return base + (size_t)i * stride; }
};
struct FlashOutRows {
    const bf16* base;
    int ts, r, hd;
    __device__ __forceinline__ const bf16* operator()(int i) const { return base + (size_t)(i / r) * ts + (size_t)(i % r) * hd; }
};
struct FlashGroupRows {
    FlashRows q, k, v;
    FlashOutRows o;
};
__device__ __forceinline__ FlashGroupRows flash_group_rows(const FlashParams& p, const FlashGroup& G, const bf16* qp, const bf16* kp,
                                                           const bf16* vp, const bf16* op) {
    return {{qp + G.q0, p.q_rs}, {kp + G.k0, p.k_rs}, {vp + G.v0, p.v_rs}, {op + G.o0, p.o_ts, p.r, p.hd}};
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

// A forward CTA's share of the work: query tile qt of BM rows of group grp = blockIdx.y (causal: the
// heaviest tiles, the last rows, first, so the short ones fill the tail), the group's rows of
// q, k, v, and how many BN-key tiles it visits. False: no rows (varlen: this sample is shorter
// than the longest). HEAVY_FIRST: the grid is (group, query tile), so the heaviest tiles of all
// groups start before any group's lighter ones. fwd_tile_at: the same for the bq-th of nq query
// tiles of group grp (a persistent CTA's tiles).
struct FwdTile {
    FlashGroup G;
    const bf16 *Q, *K, *V;
    int m0, ntiles, grp;
};
template <int BM, int BN>
__device__ __forceinline__ bool fwd_tile_at(FwdTile& t, const FlashParams& p, const bf16* qp, const bf16* kp, const bf16* vp,
                                            int bq, int nq, int grp) {
    const int qt = p.causal ? nq - 1 - bq : bq;
    t.m0 = qt * BM;
    t.grp = grp;
    t.G = flash_group(p, grp);
    if (t.m0 >= t.G.rows) return false;
    t.Q = qp + t.G.q0;
    t.K = kp + t.G.k0;
    t.V = vp + t.G.v0;
    const int kv_end = p.causal ? (min(t.m0 + BM, t.G.rows) - 1) / p.r + 1 : t.G.Tk;
    t.ntiles = ceil_div(kv_end, BN);
    return true;
}
template <int BM, int BN, bool HEAVY_FIRST = false>
__device__ __forceinline__ bool fwd_tile(FwdTile& t, const FlashParams& p, const bf16* qp, const bf16* kp, const bf16* vp) {
    return fwd_tile_at<BM, BN>(t, p, qp, kp, vp, HEAVY_FIRST ? blockIdx.y : blockIdx.x, HEAVY_FIRST ? gridDim.y : gridDim.x,
                               HEAVY_FIRST ? blockIdx.x : blockIdx.y);
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
// m / r < key is tested as m < key r (the same for m >= 0, r > 0): r is a run-time value, and a
// division per element would be a division routine per element.
template <int NQ>
__device__ __forceinline__ void mask_queries(float (&s)[NQ][4], int m0, int rows, int r, int keyA, int keyB, int causal,
                                             int tq) {
    const int firstA = keyA * r, firstB = keyB * r;   // the first query row at each key's position
#pragma unroll
    for (int nq = 0; nq < NQ; nq++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = m0 + nq * 8 + 2 * tq + (e & 1);
            if (m >= rows || (causal && m < (e < 2 ? firstA : firstB))) s[nq][e] = -INFINITY;
        }
}
// Packed rows (FlashParams::pos, the mma.sync kernels' DOC variants; flash_doc_start):
// keys before the rows' document starts docA (c0, c1) and docB (c2, c3) to -inf
template <int NB>
__device__ __forceinline__ void mask_keys_before(float (&s)[NB][4], int n0, int docA, int docB, int tq) {
#pragma unroll
    for (int nb = 0; nb < NB; nb++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (n0 + nb * 8 + 2 * tq + (e & 1) < (e < 2 ? docA : docB)) s[nb][e] = -INFINITY;
}
// MW 16-row tiles (the mma.sync forward's and dQ's): where each row's document starts ...
template <int MW>
__device__ __forceinline__ void doc_starts(int (&docA)[MW], int (&docB)[MW], const int (&posA)[MW], const int (&posB)[MW],
                                           const FlashParams& p, int b) {
#pragma unroll
    for (int mi = 0; mi < MW; mi++) {
        docA[mi] = flash_doc_start(p, b, posA[mi]);
        docB[mi] = flash_doc_start(p, b, posB[mi]);
    }
}
// ... and their keys before it to -inf
template <int MW, int NB>
__device__ __forceinline__ void mask_tiles_before(float (&s)[MW][NB][4], int n0, const int (&docA)[MW], const int (&docB)[MW], int tq) {
#pragma unroll
    for (int mi = 0; mi < MW; mi++) mask_keys_before(s[mi], n0, docA[mi], docB[mi], tq);
}
// Transposed (dK/dV): the query rows from m0 whose document starts after the key, to -inf
template <int NQ>
__device__ __forceinline__ void mask_queries_before(float (&s)[NQ][4], int m0, int rows, int r, int keyA, int keyB,
                                                    const FlashParams& p, int b, int tq) {
#pragma unroll
    for (int nq = 0; nq < NQ; nq++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = m0 + nq * 8 + 2 * tq + (e & 1);
            if (m < rows && (e < 2 ? keyA : keyB) < flash_doc_start(p, b, m / r)) s[nq][e] = -INFINITY;
        }
}
// Online softmax step of a 16-row tile of raw scores: new running maxima mA/mB (base-2 units,
// over the lane quad), old sums lA/lB rescaled, s -> 2^(s scale_log2 - max) added to the sums;
// cA/cB: what the running outputs must be multiplied by (left to the caller, so that a kernel
// whose outputs are still being accumulated by the tensor cores can do it after its wait).
// A row fully masked so far keeps max -inf and exponentials of 0.
// TAU > 0 (FlashAttention-4's lazy rescale): a row keeps its running max while the tile's stays
// within 2^TAU of it (its exponentials then reach up to 2^TAU: harmless in the fp32 sums and in
// bf16 P, and the result is the same quotient), so the outputs need rescaling only when a row's
// max has grown past that; the return says whether any row of the warp has (warp-uniform: the
// caller's rescale is one branch, and the rows that have not get c = 2^0).
// TAU 0: the exact running max, and true.
template <int NB, int TAU = 0>
__device__ __forceinline__ bool online_softmax_scores(float (&s)[NB][4], float& mA, float& mB, float& lA, float& lB,
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
    const float tA = xA * scale_log2, tB = xB * scale_log2;   // the tile's row maxima, base 2
    float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);
    bool grew = true;
    if constexpr (TAU > 0) {
        const bool gA = tA > mA + TAU, gB = tB > mB + TAU;
        if (!gA) nA = mA;
        if (!gB) nB = mB;
        grew = __any_sync(0xffffffff, gA || gB);
    }
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
    return grew;
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

// The fused backward's ordered counters (acquire loads) and fp32 vector reductions
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

// The fp32 dQ accumulator as the sm90 bulk-copy backward (DQ_BULK, DQ_ORDERED) writes it:
// row `row` keeps its 8-float chunks in the order c ^ dq_chunk_swizzle(row, hd), so that
// the fragments' float2 stores of 4 consecutive rows into the unpadded shared-memory tile
// (row stride hd floats) hit 32 different banks and the tile goes out in one bulk copy.
__host__ __device__ __forceinline__ int dq_chunk_swizzle(size_t row, int hd) {
    return hd % 32 == 0 ? (int)(row & 3) : hd % 32 == 16 ? (int)((row >> 1) & 1) : 0;
}
// chunk c (8 elements) of accumulator row `row`, its sums a and b: scaled, in bf16, into dq
__device__ __forceinline__ void dq_store_chunk(bf16* __restrict__ dqp, size_t row, int c, float4 a, float4 b, const FlashParams& p) {
    const uint32_t row32 = (uint32_t)row, nq = (uint32_t)p.Nq;   // (query rows: fewer than 2^32)
    bf16* dst = p.varlen ? dqp + (size_t)(row32 % nq) * p.q_rs + (size_t)(row32 / nq) * p.hd + c * 8 : dqp + row * p.hd + c * 8;
    uint4 o;
    o.x = pack_bf16(a.x * p.scale, a.y * p.scale);
    o.y = pack_bf16(a.z * p.scale, a.w * p.scale);
    o.z = pack_bf16(b.x * p.scale, b.y * p.scale);
    o.w = pack_bf16(b.z * p.scale, b.w * p.scale);
    *reinterpret_cast<uint4*>(dst) = o;
}
// After the fused backward: dq = scale * the fp32 accumulator, in bf16, 8 elements (16 bytes
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
    dq_store_chunk(dqp, row, c, __ldcs(src), __ldcs(src + 1), p);
}
// The ordered fused backward's counters (one per group and BQ-row query tile; varlen: per head,
// flash_varlen_locks), zeroed before every backward.
static void flash_locks_zero(int* locks, const FlashParams& p, int BQ, cudaStream_t stream) {
    const size_t n = p.varlen ? flash_varlen_locks(p.Nq, p.nh, p.B) : (size_t)p.B * p.nkv * ceil_div(p.rows, BQ);
    cudaCheck(cudaMemsetAsync(locks, 0, n * sizeof(int), stream));
}
// Around the sm90 kernel that adds dQ partials with atomics (DQ_PIPE): the accumulator (Nq * nh rows of hd floats) zeroed before, bf16 dq written after.
static void flash_dq_acc_zero(float* dq_acc, const FlashParams& p, cudaStream_t stream) {
    cudaCheck(cudaMemsetAsync(dq_acc, 0, (size_t)p.Nq * p.nh * p.hd * sizeof(float), stream));
}
static void flash_dq_acc_to_bf16(bf16* dq, const float* dq_acc, const FlashParams& p, cudaStream_t stream,
                                 bool swizzled = false) {
    const size_t nrows = (size_t)p.Nq * p.nh, n = nrows * (p.hd / 8);  // query rows of all groups (packed L/D order)
    flash_bwd_dq_convert_kernel<<<ceil_div(n, (size_t)256), 256, 0, stream>>>(dq, dq_acc, nrows, p, swizzled);
    cudaLaunchCheck();
}

// Launchers raise a kernel's dynamic shared memory limit once, at its first launch.
template <class Kern>
static void set_smem(Kern k, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

}  // namespace flash
