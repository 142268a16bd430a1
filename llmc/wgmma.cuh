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
// an implicit generic-async proxy fence) and the shared memory they read is free.
__device__ __forceinline__ void bulk_copy_s2g(void* gdst, uint32_t ssrc, uint32_t bytes) {
    asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(gdst), "r"(ssrc), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_reduce_add_f32(float* gdst, uint32_t ssrc, uint32_t bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(gdst), "r"(ssrc), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
