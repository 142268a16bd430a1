// Deterministic reductions: column sums for weight/bias gradients, and the
// global L2 norm of all gradients. Atomics would make the order of fp32
// additions vary from run to run; both reductions here use fixed partitions
// and a second pass that adds the partials in a fixed order, so two runs with
// the same inputs give bit-identical results.
#pragma once
#include "cuda_common.h"

// Phase 1 of out[c] += sum_r a[r,c] * (b ? b[r,c] : 1) * (s ? s[r] : 1):
// block (x: 32 groups of 8 columns, y: 8 row lanes) takes a fixed slice of rows;
// each thread keeps 8 fp32 sums, lanes are combined in shared memory in order.
// 8 consecutive values (16-byte aligned) as fp32: one 16-byte load for bf16, two for fp32
template <typename T>
__device__ __forceinline__ void load8_f32(const T* p, float out[8]) {
    if constexpr (sizeof(T) == 2) {
        Packed128<T> v = load128(p);
        for (int k = 0; k < 8; k++) out[k] = (float)v[k];
    } else {
        Packed128<T> v0 = load128(p), v1 = load128(p + 4);
        for (int k = 0; k < 4; k++) { out[k] = (float)v0[k]; out[4 + k] = (float)v1[k]; }
    }
}

// acc += row r's columns c0..c0+7 of a (times b's, times s[r])
template <typename Ta, typename Tb>
__device__ __forceinline__ void column_reduce_add_row(float (&acc)[8], const Ta* a, const Tb* b, const float* s, int r, int cols,
                                                      int c0) {
    const float sr = s ? s[r] : 1.0f;
    float va[8], vb[8];
    load8_f32(a + (size_t)r * cols + c0, va);
    if (b) load8_f32(b + (size_t)r * cols + c0, vb);
    for (int k = 0; k < 8; k++) acc[k] += (b ? va[k] * vb[k] : va[k]) * sr;
}
// the block's LANES row lanes' sums of columns c0..c0+7 added in lane order: partial row blockIdx.y
template <int LANES = 8>
__device__ __forceinline__ void column_reduce_store_block(float* partial, const float (&acc)[8], int cols, int c0) {
    __shared__ float sh[LANES][32 * 8 + 1];
    for (int k = 0; k < 8; k++) sh[threadIdx.y][threadIdx.x * 8 + k] = acc[k];
    __syncthreads();
    if (threadIdx.y == 0 && c0 < cols) {
        for (int k = 0; k < 8; k++) {
            float t = 0.0f;
            for (int y = 0; y < LANES; y++) t += sh[y][threadIdx.x * 8 + k];
            partial[(size_t)blockIdx.y * cols + c0 + k] = t;
        }
    }
}
// blocks of 32 column threads x LANES row lanes (column_reduce: 8; dev/cuda/reduce also times 32,
// held to 32 registers so that two blocks of 1024 fit an SM)
template <typename Ta, typename Tb, int LANES = 8>
__global__ void __launch_bounds__(32 * LANES, LANES > 8 ? 2 : 1) column_reduce_partial_kernel(float* partial, const Ta* a, const Tb* b,
                                                                                          const float* s, int rows, int cols,
                                                                                          int rows_per_split) {
    const int c0 = (blockIdx.x * 32 + threadIdx.x) * 8;
    const int r_begin = blockIdx.y * rows_per_split;
    const int r_end = min(rows, r_begin + rows_per_split);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (c0 < cols)
        for (int r = r_begin + threadIdx.y; r < r_end; r += LANES) column_reduce_add_row(acc, a, b, s, r, cols, c0);
    column_reduce_store_block<LANES>(partial, acc, cols, c0);
}

__global__ static void column_reduce_final_kernel(float* out, const float* partial, int splits, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float t = 0.0f;
    for (int k = 0; k < splits; k++) t += partial[(size_t)k * cols + c];
    out[c] += t;
}

static const int COLUMN_REDUCE_SPLITS = 64;  // fixed, so results do not depend on the GPU

// out[cols] += column sums; scratch holds COLUMN_REDUCE_SPLITS * cols floats. cols % 8 == 0.
template <typename Ta, typename Tb>
static void column_reduce(float* out, const Ta* a, const Tb* b, const float* s, int rows, int cols,
                          float* scratch, cudaStream_t stream) {
    if (cols % 8 != 0) fail("column_reduce: cols %d not a multiple of 8", cols);
    int splits = std::min(COLUMN_REDUCE_SPLITS, std::max(1, rows));
    int rows_per_split = ceil_div(rows, splits);
    dim3 grid(ceil_div(cols, 32 * 8), splits), block(32, 8);
    ProfileWork pw(0, (double)rows * cols * (sizeof(Ta) + (b ? sizeof(Tb) : 0)) + (s ? rows * 4.0 : 0.0));   // a, b, s (the partials stay in L2)
    column_reduce_partial_kernel<<<grid, block, 0, stream>>>(scratch, a, b, s, rows, cols, rows_per_split);
    cudaLaunchCheck();
    column_reduce_final_kernel<<<ceil_div(cols, 256), 256, 0, stream>>>(out, scratch, splits, cols);
    cudaLaunchCheck();
}

// Sum of squares of n floats: fixed grid of GLOBAL_NORM_BLOCKS blocks, each a
// fixed strided subset, then one block adds the partials in order.
static const int GLOBAL_NORM_BLOCKS = 512;
__global__ static void global_norm_squared_partial_kernel(float* partial, const float* x, size_t n) {
    float acc = 0.0f;
    size_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 v = x4[i];
        acc += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    if (blockIdx.x == 0)
        for (size_t i = n4 * 4 + threadIdx.x; i < n; i += blockDim.x) acc += x[i] * x[i];
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}
__global__ static void global_norm_squared_final_kernel(float* out, const float* partial, int nparts) {
    float acc = 0.0f;
    for (int k = threadIdx.x; k < nparts; k += blockDim.x) acc += partial[k];
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) *out = acc;
}
// out (device) = sum x^2; scratch holds GLOBAL_NORM_BLOCKS floats; x 16-byte aligned
static void global_norm_squared(float* out, const float* x, size_t n, float* scratch, cudaStream_t stream) {
    ProfileWork pw(0, (double)n * sizeof(float));   // x
    global_norm_squared_partial_kernel<<<GLOBAL_NORM_BLOCKS, 256, 0, stream>>>(scratch, x, n);
    cudaLaunchCheck();
    global_norm_squared_final_kernel<<<1, 1024, 0, stream>>>(out, scratch, GLOBAL_NORM_BLOCKS);
    cudaLaunchCheck();
}
