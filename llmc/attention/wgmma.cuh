// Hopper warpgroup matrix multiply (wgmma, sm_90a): operand descriptors, the shared-memory
// tile layout they describe, and the fences around the asynchronous instruction.
// Builds with -gencode=arch=compute_90a,code=sm_90a define __CUDA_ARCH_FEAT_SM90_ALL on the
// device and (Makefile, GPU_ARCH=90a) MEGA_SM90A on the host; code using these helpers is
// compiled only there.
//
// Tile layout ("core-matrix" layout, no swizzle): a [R][C] bf16 tile (R, C multiples of 8)
// is stored as 8x8 blocks of 128 contiguous bytes (8 rows of 16 bytes), the blocks row-major:
// element (r, c) at byte ((r/8) * (C/8) + c/8) * 128 + (r%8) * 16 + (c%8) * 2.
// Why this layout: one tile serves both operand orientations (columns as the contraction
// dim: K-major; rows as the contraction dim: MN-major, i.e. transposed), the tensor cores read
// every 8x8 block as one 128-byte line, and 16-byte copies in (thread chunk idx -> byte idx*16,
// see wgmma_chunk_row / wgmma_chunk_col) store whole lines: no bank conflicts either way.
#pragma once
#include <cstdint>
#include "wgmma_ops.cuh"

// row and 16-byte column chunk of chunk idx of a tile with C columns (chunk idx lands at byte idx*16)
__device__ __forceinline__ int wgmma_chunk_row(int idx, int C) { return (idx & 7) | ((idx / C) << 3); }
__device__ __forceinline__ int wgmma_chunk_col(int idx, int C) { return (idx >> 3) % (C / 8); }

// Matrix descriptor: start address, leading and stride byte offsets (16-byte units), no swizzle.
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    return (uint64_t)((smem_addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo_bytes >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo_bytes >> 4) & 0x3FFF) << 32);
}
// The tile (at smem_addr, C columns) as a K-major operand: rows are M (or N), columns are K.
// LBO = the next 8 columns (one block), SBO = the next 8 rows (C/8 blocks). One k16 step = +256
// bytes = +16 in the descriptor (wgmma_kstep_kmajor).
__device__ __forceinline__ uint64_t wgmma_desc_kmajor(uint32_t smem_addr, int C) {
    return wgmma_desc(smem_addr, 128, (uint32_t)C * 16);
}
// The tile as an MN-major operand (transposed; bf16 allows it): rows are K, columns N.
// CUTLASS's no-swizzle MN-major convention: LBO = the next 8 rows (along K), SBO = the next 8
// columns (along N). One k16 step = 16 rows = +C*32 bytes.
__device__ __forceinline__ uint64_t wgmma_desc_mnmajor(uint32_t smem_addr, int C) {
    return wgmma_desc(smem_addr, (uint32_t)C * 16, 128);
}
__device__ __forceinline__ uint64_t wgmma_kstep_kmajor(int kk) { return (uint64_t)(kk * 16); }
__device__ __forceinline__ uint64_t wgmma_kstep_mnmajor(int kk, int C) { return (uint64_t)(kk * C * 2); }

// Ordering. wgmma_fence before the first wgmma that reads registers written by ordinary
// instructions (accumulators, A fragments); commit closes a group of issued wgmmas; wait<N>
// blocks until at most N groups are pending. wgmma_fence_operand pins register reads/writes
// of an accumulator to its place between these (the compiler sees no dependence otherwise).
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
template <int A>
__device__ __forceinline__ void wgmma_fence_operand(float (&d)[A][4]) {
#pragma unroll
    for (int i = 0; i < A; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[i][e])::"memory");
}
template <int A>
__device__ __forceinline__ void wgmma_fence_operand(uint32_t (&d)[A][4]) {
#pragma unroll
    for (int i = 0; i < A; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(d[i][e])::"memory");
}
// Shared memory written by ordinary (generic-proxy) stores or cp.async and read next by
// wgmma (the async proxy): each writing thread fences before the barrier that publishes it.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Global memory seen through the generic proxy (a counter read with acquire) and accessed
// next by the bulk-copy engine (the async proxy).
__device__ __forceinline__ void fence_proxy_async_global() { asm volatile("fence.proxy.async.global;\n" ::: "memory"); }

// An 8-byte shared-memory store of two floats (addr 8-byte aligned), kept one instruction
__device__ __forceinline__ void st_shared_f32x2(uint32_t addr, float x, float y) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x), "f"(y) : "memory");
}
// The same where `store` holds: a predicated store, not a branch, so that the address arithmetic
// of a run of them is shared rather than repeated inside each branch
__device__ __forceinline__ void st_shared_f32x2_if(bool store, uint32_t addr, float x, float y) {
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %0, 0;\n @p st.shared.v2.f32 [%1], {%2, %3};\n}\n" ::"r"((int)store), "r"(addr),
                 "f"(x), "f"(y)
                 : "memory");
}
// Four 8 x 8 bf16 matrices to shared memory: lane l gives the address of row l % 8 of matrix
// l / 8 (16 bytes); register i holds the thread's pair of matrix i in the mma fragments' layout
// (row lane / 4, columns 2 (lane % 4), + 1)
__device__ __forceinline__ void stmatrix_x4(uint32_t addr, const uint32_t (&r)[4]) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r[0]), "r"(r[1]), "r"(r[2]),
                 "r"(r[3])
                 : "memory");
}
// Named barriers (ids 1..15; __syncthreads is 0): `count` threads, a multiple of 32. A
// producer arrives (no wait, its earlier shared-memory writes released), the consumer syncs.
__device__ __forceinline__ void named_barrier_sync(int id, int count) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int count) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// Bulk copies by the TMA engine without a tensor map (sm_90): `bytes` (a multiple of 16, both
// addresses 16-byte aligned) from shared to global memory, stored or added element-wise
// (fp32, in L2: one addition per element, so a fixed order of such copies sums
// deterministically). The issuing thread commits them as a group and waits for its own
// groups: bulk_wait_all returns once they are complete (their writes performed, followed by
// an implicit generic-async proxy fence) and the shared memory they read is free;
// bulk_wait_read only for the latter.
__device__ __forceinline__ void bulk_copy_s2g(void* gdst, uint32_t ssrc, uint32_t bytes) {
    asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(gdst), "r"(ssrc), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_reduce_add_f32(float* gdst, uint32_t ssrc, uint32_t bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(gdst), "r"(ssrc), "r"(bytes)
                 : "memory");
}
// global -> shared (this CTA's), `bytes` (a multiple of 16) signalled on mbarrier `bar` as its
// transaction bytes (the caller's arrive.expect_tx)
__device__ __forceinline__ void bulk_copy_g2s(uint32_t sdst, const void* gsrc, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(sdst), "l"(gsrc),
                 "r"(bytes), "r"(bar)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
// returns once the groups have read their shared memory (the writes may still be in flight)
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }

// mbarriers (shared-memory transaction counters) for producer/consumer pipelines inside a CTA.
// A phase completes when `count` arrivals have landed; waiters poll the phase's parity.
// cp_async_mbarrier_arrive: the arrival fires once all of this thread's earlier cp.async copies
// have landed (noinc: it is one of the `count` arrivals the barrier was initialized with).
__device__ __forceinline__ void mbarrier_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n.reg .pred P;\nWAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 P, [%0], %1;\n"
        "@!P bra WAIT;\n}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
}
__device__ __forceinline__ void cp_async_mbarrier_arrive(uint32_t bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// Warp specialization: a warpgroup gives registers back (the producer) or takes them (the
// consumers); every warp of the warpgroup executes it.
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }

// 128-byte swizzled tiles (what the tensor copy engine writes with CU_TENSOR_MAP_SWIZZLE_128B):
// a [R][64] bf16 block of 128-byte rows, groups of 8 rows (1024 bytes, 1024-aligned) in which
// the 16-byte chunk c of row r sits at chunk c ^ (r % 8). A tile with more than 64 columns is
// several such blocks, one per 64 columns ("halves" at hd 128). Descriptors (layout type 1):
//   K-major (rows M/N, columns K): SBO = 1024 (the next 8 rows); one k16 step inside a block is
//     +32 bytes of start address (the swizzle is applied to the final address bits), the next
//     64 columns the next block;
//   MN-major (rows K, columns N): LBO = the next 64 columns (block size), SBO = 1024 (the next 8
//     rows along K); one k16 step is +2048 bytes.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t smem_addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    return wgmma_desc(smem_addr, lbo_bytes, sbo_bytes) | (1ull << 62);
}
// element (r, c) of a swizzled tile of R rows (byte offset; blocks of 64 columns)
__host__ __device__ __forceinline__ uint32_t sw128_offset(int r, int c, int R) {
    return (uint32_t)((c / 64) * R * 128 + r * 128 + ((((c % 64) / 8) ^ (r % 8)) * 16) + (c % 8) * 2);
}
// 32-byte swizzled tiles (CU_TENSOR_MAP_SWIZZLE_32B, boxes of 16 columns): for head dims that
// are not whole 64-column blocks (hd 72 as 80: five blocks, the last one's columns past the
// head read as the map's zeros). A [R][16] block of 32-byte rows, groups of 8 rows (256 bytes,
// 256-aligned) in which the rows 4..7 have their two 16-byte chunks swapped (Swizzle<1,4,3>:
// address bit 4 ^= bit 7). Descriptors (layout type 3):
//   K-major: one k16 step is one whole block (+R * 32 bytes), SBO = 256 (the next 8 rows);
//   MN-major (rows K, columns N): LBO = the next 16 columns (R * 32 bytes), SBO = 256 (the next
//     8 rows along K); one k16 step is +512 bytes.
__device__ __forceinline__ uint64_t wgmma_desc_sw32(uint32_t smem_addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    return wgmma_desc(smem_addr, lbo_bytes, sbo_bytes) | (3ull << 62);
}
// element (r, c) of a 32-byte swizzled tile of R rows (byte offset; blocks of 16 columns)
__host__ __device__ __forceinline__ uint32_t sw32_offset(int r, int c, int R) {
    return (uint32_t)((c / 16) * R * 32 + r * 32 + ((((c % 16) / 8) ^ ((r / 4) % 2)) * 16) + (c % 8) * 2);
}

// Tensor copies (TMA) into shared memory, completing on an mbarrier: the producer announces the
// bytes (arrive.expect_tx), the copy engine counts them down. The tensor map is a kernel
// parameter (__grid_constant__).
__device__ __forceinline__ void fence_mbarrier_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* map, uint32_t bar, int c0, int c1, int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(dst),
        "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
        : "memory");
}
__device__ __forceinline__ void tma_load_5d(uint32_t dst, const void* map, uint32_t bar, int c0, int c1, int c2, int c3, int c4) {
    asm volatile(
        "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6, %7}], [%2];\n" ::"r"(dst),
        "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4)
        : "memory");
}
