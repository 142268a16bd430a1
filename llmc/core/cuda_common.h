// CUDA utilities shared by every trainer, test and benchmark: error checks,
// the compute dtype floatX (bf16, or fp32 with -DENABLE_FP32), 16-byte packed
// vectors, NVTX ranges, and small device helpers.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <nvtx3/nvToolsExt.h>
#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <cstdlib>
#include "utils.h"
#include "profile_work.h"   // what the launchers tell --profile-step

static inline void cuda_check(cudaError_t e, const char* file, int line) {
    if (e != cudaSuccess) fail("CUDA error at %s:%d: %s", file, line, cudaGetErrorString(e));
}
#define cudaCheck(x) cuda_check((x), __FILE__, __LINE__)
// after every kernel launch: catches bad launch configurations at once
#define cudaLaunchCheck() cuda_check(cudaGetLastError(), __FILE__, __LINE__)

#if defined(ENABLE_FP32)
typedef float floatX;
#define PRECISION_NAME "fp32"
#else
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16"
#endif

static inline __host__ __device__ int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }

// 16 bytes of ElementType, loaded and stored as one int4 so that every global
// access of the memory-bound kernels is a full 128-bit transaction.
template <class ElementType>
struct alignas(16) Packed128 {
    static constexpr int size = sizeof(int4) / sizeof(ElementType);
    ElementType payload[size];
    Packed128() = default;
    __device__ explicit Packed128(int4 bits) { memcpy(&payload, &bits, sizeof(bits)); }
    __device__ static Packed128 constant(ElementType v) {
        Packed128 r;
        for (int k = 0; k < size; k++) r.payload[k] = v;
        return r;
    }
    __device__ ElementType& operator[](int i) { return payload[i]; }
    __device__ const ElementType& operator[](int i) const { return payload[i]; }
    __device__ int4 get_bits() const { int4 b; memcpy(&b, &payload, sizeof(b)); return b; }
};
typedef Packed128<float> f128;
typedef Packed128<floatX> x128;

template <class T> __device__ Packed128<T> load128(const T* p) { return Packed128<T>{*reinterpret_cast<const int4*>(p)}; }
// streaming load: the data is read once, keep it out of L1/L2 priority
template <class T> __device__ Packed128<T> load128cs(const T* p) { return Packed128<T>{__ldcs(reinterpret_cast<const int4*>(p))}; }
template <class T> __device__ void store128(T* p, Packed128<T> v) { *reinterpret_cast<int4*>(p) = v.get_bits(); }
// An L2 policy that keeps what it loads (evict_last over the whole access), for data read twice
// in a row: the plain .L2::evict_last qualifier needs 256-bit loads (sm_100), the policy form not
__device__ __forceinline__ uint64_t l2_policy_evict_last() {
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(pol));
    return pol;
}
template <class T> __device__ Packed128<T> load128_l2_policy(const T* p, uint64_t pol) {
    int4 v;
    asm volatile("ld.global.L2::cache_hint.v4.s32 {%0, %1, %2, %3}, [%4], %5;\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p), "l"(pol));
    return Packed128<T>{v};
}
template <class T> __device__ void store128cs(T* p, Packed128<T> v) { __stcs(reinterpret_cast<int4*>(p), v.get_bits()); }

__device__ __forceinline__ float warp_reduce_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
__device__ __forceinline__ float warp_reduce_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}
// Sum over a block of up to 1024 threads; every thread gets the result.
// The order of additions is fixed, so the result is deterministic.
__device__ __forceinline__ float block_reduce_sum(float v) {
    __shared__ float shared[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = ceil_div(blockDim.x, 32);
    v = warp_reduce_sum(v);
    __syncthreads();  // shared[] may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shared[lane] : 0.0f;
    return warp_reduce_sum(v);
}

// NVTX range for the lifetime of a scope: every layer shows by name in a profiler.
struct NvtxRange {
    explicit NvtxRange(const char* s) { nvtxRangePush(s); }
    NvtxRange(const char* s, int i) { char b[128]; snprintf(b, sizeof b, "%s %d", s, i); nvtxRangePush(b); }
    ~NvtxRange() { nvtxRangePop(); }
};
#define NVTX_RANGE_FN() NvtxRange nvtx_range_fn_(__FUNCTION__)

static inline cudaDeviceProp cuda_device_props() {
    int dev;
    cudaDeviceProp p;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaGetDeviceProperties(&p, dev));
    return p;
}

// cudaMalloc with a clear message when the GPU is too small for the run.
static inline void* cuda_malloc_or_fail(size_t bytes, const char* what) {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        fail("out of GPU memory allocating %s: %.2f GiB requested, %.2f GiB free of %.2f GiB (reduce --batch-size or --seq-len)",
             what, bytes / 1073741824.0, free_b / 1073741824.0, total_b / 1073741824.0);
    }
    return p;
}

// Dtype conversions used by host code (uploads of fp32 references, downloads).
__global__ static void copy_f32_to_floatX_kernel(floatX* dst, const float* src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = (floatX)src[i];
}
__global__ static void copy_floatX_to_f32_kernel(float* dst, const floatX* src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = (float)src[i];
}
static inline void copy_f32_to_floatX(floatX* dst, const float* src, size_t n, cudaStream_t s) {
    if (n == 0) return;
    copy_f32_to_floatX_kernel<<<ceil_div(n, 256), 256, 0, s>>>(dst, src, n);
    cudaLaunchCheck();
}
static inline void copy_floatX_to_f32(float* dst, const floatX* src, size_t n, cudaStream_t s) {
    if (n == 0) return;
    copy_floatX_to_f32_kernel<<<ceil_div(n, 256), 256, 0, s>>>(dst, src, n);
    cudaLaunchCheck();
}

// bytes -> "1.23 GiB" for memory reports
static inline double gib(size_t bytes) { return bytes / 1073741824.0; }
