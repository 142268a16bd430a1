/*
Check of the Hopper wgmma building blocks in llmc/attention/wgmma.cuh that the sm_90a attention
kernels use: one warpgroup computes D[64 x N] = A[64 x K] B[K x N] (bf16 in, fp32 out)
with the operands in the core-matrix tile layout, against a CPU product of the same
bf16 values. Cases (N and K as the attention kernels use them, including the padded
head dim 80 of hd 72):
  ss K-major   A and B from shared memory, both K-major (S = Q K^T: K tile stored [N][K])
  rs MN-major  A from registers (the m16n8k16 A fragments), B MN-major (O = P V: V stored [K][N])
  ss MN-major  A K-major, B MN-major from shared memory
  ss A,B MN-major  both transposed: dQ = dS K of the fused backward (dS^T stored [K][64],
               the K tile stored [K][N]; N = hd / 2, one warpgroup's half of the columns)
  sw128, sw32  the first two again in the 128-byte and 32-byte swizzled layouts the tensor copy
               engine writes (whole 64-column blocks; 16-column blocks for hd 80)
The MN-major descriptor follows CUTLASS's no-swizzle convention (LBO along K, SBO along MN);
the swapped assignment reads out of bounds (dev/cuda/NOTES.md).
Needs an sm_90a build (make GPU_ARCH=90a, the default) and a compute capability 9.0 GPU.

  make dev/cuda/wgmma && ./dev/cuda/wgmma
*/
#include "common.h"
#include "../../llmc/attention/wgmma.cuh"

typedef __nv_bfloat16 bf16;
static __device__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// the m16n8k16 A fragments of warp `warp`'s 16 rows of a row-major [64][K] A (the rs operand)
template <int K>
__device__ __forceinline__ void load_a_fragments(uint32_t (&a)[K / 16][4], const bf16* A, int warp, int g, int tq) {
    auto ld = [&](int r, int c) {
        __nv_bfloat162 v;
        v.x = A[r * K + c];
        v.y = A[r * K + c + 1];
        return *reinterpret_cast<uint32_t*>(&v);
    };
    const int r0 = warp * 16 + g;
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) {
        a[kk][0] = ld(r0, kk * 16 + 2 * tq);
        a[kk][1] = ld(r0 + 8, kk * 16 + 2 * tq);
        a[kk][2] = ld(r0, kk * 16 + 8 + 2 * tq);
        a[kk][3] = ld(r0 + 8, kk * 16 + 8 + 2 * tq);
    }
}

// closes the issued products, waits for them and writes D [64][N] (fp32, row-major)
template <int N>
__device__ __forceinline__ void commit_and_store(float (&d)[N / 8][4], float* D, int warp, int g, int tq) {
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_operand(d);
#pragma unroll
    for (int j = 0; j < N / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) D[(warp * 16 + g + (e >= 2 ? 8 : 0)) * N + j * 8 + 2 * tq + (e & 1)] = d[j][e];
}

// modes 4 and 5 (6 and 7) of wgmma_test_kernel (below): A [64][K] and B ([N][K] for 4 and 6,
// [K][N] for 5 and 7) row-major in global -> 128-byte (32-byte) swizzled tiles with the same
// rows/columns
template <int N, int K, int MODE>
__device__ __forceinline__ void fill_swizzled(bf16* sA, bf16* sB, const bf16* A, const bf16* B) {
    auto at = [](int r, int c, int R) { return MODE >= 6 ? sw32_offset(r, c, R) : sw128_offset(r, c, R); };
    for (int i = threadIdx.x; i < 64 * K; i += 128) {
        const int r = i / K, c = i % K;
        *reinterpret_cast<bf16*>(reinterpret_cast<char*>(sA) + at(r, c, 64)) = A[i];
    }
    constexpr bool KMAJOR = MODE == 4 || MODE == 6;
    constexpr int BR = KMAJOR ? N : K, BC = KMAJOR ? K : N;
    for (int i = threadIdx.x; i < N * K; i += 128) {
        const int r = i / BC, c = i % BC;
        *reinterpret_cast<bf16*>(reinterpret_cast<char*>(sB) + at(r, c, BR)) = B[i];
    }
}

// MODE 0: ss, B K-major (stored [N][K]); 1: rs, B MN-major (stored [K][N]); 2: ss, B MN-major;
// 3: ss, A MN-major (stored [K][64]) and B MN-major. The 128-byte swizzled layout (sw128_offset,
// wgmma_desc_sw128; K and N multiples of 64): 4: ss, A [64][K] and B [N][K] K-major (S = Q K^T as
// the TMA forward stores Q and K); 5: rs, B [K][N] MN-major (O = P V, V stored [keys][hd]). The
// 32-byte swizzled layout (sw32_offset, wgmma_desc_sw32; K and N multiples of 16): 6 as 4, 7 as 5.
template <int N, int K, int MODE>
__global__ void __launch_bounds__(128) wgmma_test_kernel(float* D, const bf16* A, const bf16* B) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __shared__ __align__(1024) bf16 sA[64 * K];
    __shared__ __align__(1024) bf16 sB[N * K];
    const int t = threadIdx.x;
    if constexpr (MODE >= 4) {
        fill_swizzled<N, K, MODE>(sA, sB, A, B);
    } else {
        // A [64][K] (MODE 3: [K][64]) row-major in global -> core-matrix tile with the same rows/columns
        constexpr int AC = MODE == 3 ? 64 : K;
        for (int idx = t; idx < 64 * K / 8; idx += 128) {
            const int r = wgmma_chunk_row(idx, AC), c = wgmma_chunk_col(idx, AC);
            *reinterpret_cast<int4*>(sA + idx * 8) = *reinterpret_cast<const int4*>(A + r * AC + c * 8);
        }
        // B: [N][K] (MODE 0) or [K][N] row-major in global -> tile with the same rows/columns
        constexpr int BC = MODE == 0 ? K : N, BR = MODE == 0 ? N : K;
        for (int idx = t; idx < BR * BC / 8; idx += 128) {
            const int r = wgmma_chunk_row(idx, BC), c = wgmma_chunk_col(idx, BC);
            *reinterpret_cast<int4*>(sB + idx * 8) = *reinterpret_cast<const int4*>(B + r * BC + c * 8);
        }
    }
    fence_proxy_async();
    __syncthreads();
    float d[N / 8][4];
#pragma unroll
    for (int j = 0; j < N / 8; j++) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.0f;
    const int warp = t / 32, lane = t % 32, g = lane / 4, tq = lane % 4;
    const uint64_t da = MODE == 3 ? wgmma_desc_mnmajor(smem_addr(sA), 64) : wgmma_desc_kmajor(smem_addr(sA), K);
    uint64_t db;
    if (MODE == 0) db = wgmma_desc_kmajor(smem_addr(sB), K);
    else db = wgmma_desc_mnmajor(smem_addr(sB), N);
    const uint32_t a0 = smem_addr(sA), b0 = smem_addr(sB);
    uint32_t a[K / 16][4];
    if (MODE == 1 || MODE == 5 || MODE == 7) load_a_fragments<K>(a, A, warp, g, tq);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) {
        if constexpr (MODE == 0) Wgmma<N>::template ss<0, 0>(d, da + wgmma_kstep_kmajor(kk), db + wgmma_kstep_kmajor(kk), 1);
        else if constexpr (MODE == 1) Wgmma<N>::template rs<1>(d, a[kk], db + wgmma_kstep_mnmajor(kk, N), 1);
        else if constexpr (MODE == 2) Wgmma<N>::template ss<0, 1>(d, da + wgmma_kstep_kmajor(kk), db + wgmma_kstep_mnmajor(kk, N), 1);
        else if constexpr (MODE == 3) Wgmma<N>::template ss<1, 1>(d, da + wgmma_kstep_mnmajor(kk, 64), db + wgmma_kstep_mnmajor(kk, N), 1);
        else if constexpr (MODE == 4) {
            const uint32_t koff = (kk % 4) * 32;  // k16 step inside a 64-column block
            Wgmma<N>::template ss<0, 0>(d, wgmma_desc_sw128(a0 + (kk / 4) * 64 * 128 + koff, 16, 1024),
                                        wgmma_desc_sw128(b0 + (kk / 4) * N * 128 + koff, 16, 1024), 1);
        } else if constexpr (MODE == 5) {
            Wgmma<N>::template rs<1>(d, a[kk], wgmma_desc_sw128(b0 + kk * 2048, K * 128, 1024), 1);
        } else if constexpr (MODE == 6) {  // k16 step kk: the kk-th block of 16 columns
            Wgmma<N>::template ss<0, 0>(d, wgmma_desc_sw32(a0 + kk * 64 * 32, 16, 256), wgmma_desc_sw32(b0 + kk * N * 32, 16, 256), 1);
        } else {
            Wgmma<N>::template rs<1>(d, a[kk], wgmma_desc_sw32(b0 + kk * 512, K * 32, 256), 1);
        }
    }
    commit_and_store<N>(d, D, warp, g, tq);
#endif
}

// Throughput of back-to-back products in the core-matrix (no-swizzle) layout: NWG warpgroups per
// CTA each issue D[64 x N] += A[64 x 64] B[64 x N] (4 k16 steps, one commit group, waited) ITER
// times; the warpgroups and CTAs keep the tensor cores busy. What the attention kernels'
// tensor-core ceiling is with this layout.
// MODE 0: ss (both K-major: S = Q K^T); 1: rs, B MN-major (O = P V).
template <int N, int MODE, int NWG>
__global__ void __launch_bounds__(NWG * 128) wgmma_rate_kernel(float* out, int iters) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __shared__ __align__(128) bf16 sA[NWG * 64 * 64];
    __shared__ __align__(128) bf16 sB[N * 64];
    for (int i = threadIdx.x; i < NWG * 64 * 64; i += blockDim.x) sA[i] = __float2bfloat16(0.001f * (i % 13));
    for (int i = threadIdx.x; i < N * 64; i += blockDim.x) sB[i] = __float2bfloat16(0.001f * (i % 7));
    fence_proxy_async();
    __syncthreads();
    const int wg = threadIdx.x / 128;
    const uint64_t da = wgmma_desc_kmajor(smem_addr(sA + wg * 64 * 64), 64);
    const uint64_t db = MODE == 0 ? wgmma_desc_kmajor(smem_addr(sB), 64) : wgmma_desc_mnmajor(smem_addr(sB), N);
    uint32_t a[4][4];
#pragma unroll
    for (int k = 0; k < 4; k++) a[k][0] = a[k][1] = a[k][2] = a[k][3] = 0x3c003c00u + threadIdx.x;
    float d[N / 8][4];
#pragma unroll
    for (int j = 0; j < N / 8; j++) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.0f;
    wgmma_fence_operand(d);
    for (int it = 0; it < iters; it++) {
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            if constexpr (MODE == 0) Wgmma<N>::template ss<0, 0>(d, da + wgmma_kstep_kmajor(kk), db + wgmma_kstep_kmajor(kk), 1);
            else Wgmma<N>::template rs<1>(d, a[kk], db + wgmma_kstep_mnmajor(kk, N), 1);
        }
        wgmma_commit();
        wgmma_wait<0>();
    }
    wgmma_fence_operand(d);
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < N / 8; j++) s += d[j][0] + d[j][1] + d[j][2] + d[j][3];
    if (s == 12345.0f) out[threadIdx.x] = s;  // keeps the products alive
#endif
}
template <int N, int MODE, int NWG>
static void time_rate(const char* name, int ctas_per_sm) {
    const cudaDeviceProp p = cuda_device_props();
    float* out = dev_alloc<float>(1024);
    const int iters = 4096, ctas = p.multiProcessorCount * ctas_per_sm;
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    wgmma_rate_kernel<N, MODE, NWG><<<ctas, NWG * 128>>>(out, 64);
    cudaLaunchCheck();
    cudaCheck(cudaEventRecord(e0));
    wgmma_rate_kernel<N, MODE, NWG><<<ctas, NWG * 128>>>(out, iters);
    cudaLaunchCheck();
    cudaCheck(cudaEventRecord(e1));
    cudaCheck(cudaEventSynchronize(e1));
    float ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
    const double flops = 2.0 * 64 * N * 64 * (double)iters * NWG * ctas;
    printf("wgmma rate %-12s N %3d, %d warpgroups x %d CTAs/SM: %7.1f TFLOP/s\n", name, N, NWG, ctas_per_sm,
           flops / (ms * 1e-3) / 1e12);
    cudaCheck(cudaEventDestroy(e0));
    cudaCheck(cudaEventDestroy(e1));
    cudaCheck(cudaFree(out));
}

template <int N, int K, int MODE>
static void run_case(const char* name, Rng* rng) {
    std::vector<float> hA(64 * K), hB(N * K);
    for (float& x : hA) x = (float)(bf16)(rng_normal(rng));
    for (float& x : hB) x = (float)(bf16)(rng_normal(rng));
    bf16* A = dev_alloc<bf16>(hA.size());
    bf16* B = dev_alloc<bf16>(hB.size());
    float* D = dev_alloc<float>(64 * N);
    upload(A, hA.data(), hA.size());
    upload(B, hB.data(), hB.size());
    poison(D, 64 * N);
    wgmma_test_kernel<N, K, MODE><<<1, 128>>>(D, A, B);
    cudaLaunchCheck();
    cudaCheck(cudaDeviceSynchronize());
    std::vector<double> ref(64 * N, 0.0);
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < N; n++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (double)(MODE == 3 ? hA[k * 64 + m] : hA[m * K + k]) *
                     (MODE == 0 || MODE == 4 || MODE == 6 ? hB[n * K + k] : hB[k * N + n]);
            ref[m * N + n] = s;
        }
    check("wgmma", name, strf("m64 n%d k%d", N, K), download(D, 64 * N), ref, 1e-5);
    cudaCheck(cudaFree(A)); cudaCheck(cudaFree(B)); cudaCheck(cudaFree(D));
}

int main() {
    print_banner("wgmma");
    const cudaDeviceProp p = cuda_device_props();
#if !defined(MEGA_SM90A)
    printf("wgmma: not an sm_90a build (GPU_ARCH=90a): nothing to check\n");
    return 0;
#endif
    if (p.major != 9 || p.minor != 0) {
        printf("wgmma: needs compute capability 9.0, this GPU is %d.%d: nothing to check\n", p.major, p.minor);
        return 0;
    }
    Rng rng;
    rng_seed(&rng, 7);
    run_case<64, 64, 0>("ss K-major", &rng);
    run_case<64, 80, 0>("ss K-major", &rng);
    run_case<128, 128, 0>("ss K-major", &rng);
    run_case<80, 64, 1>("rs MN-major", &rng);
    run_case<128, 64, 1>("rs MN-major", &rng);
    run_case<64, 128, 1>("rs MN-major", &rng);
    run_case<80, 64, 2>("ss MN-major", &rng);
    run_case<128, 64, 2>("ss MN-major", &rng);
    run_case<64, 128, 3>("ss A,B MN-major", &rng);
    run_case<40, 128, 3>("ss A,B MN-major", &rng);
    run_case<32, 64, 3>("ss A,B MN-major", &rng);
    run_case<128, 128, 4>("ss K-major sw128", &rng);
    run_case<64, 64, 4>("ss K-major sw128", &rng);
    run_case<96, 128, 4>("ss K-major sw128", &rng);
    run_case<128, 128, 5>("rs MN-major sw128", &rng);
    run_case<64, 128, 5>("rs MN-major sw128", &rng);
    run_case<128, 64, 5>("rs MN-major sw128", &rng);
    // the 32-byte swizzle at the padded hd 80 (S = Q K^T: K = 80; O = P V: N = 80)
    run_case<128, 80, 6>("ss K-major sw32", &rng);
    run_case<64, 80, 6>("ss K-major sw32", &rng);
    run_case<64, 128, 6>("ss K-major sw32", &rng);
    run_case<80, 64, 7>("rs MN-major sw32", &rng);
    run_case<80, 128, 7>("rs MN-major sw32", &rng);
    run_case<128, 64, 7>("rs MN-major sw32", &rng);
    if (getenv("WGMMA_RATE")) {  // timings, not checks
        time_rate<128, 0, 2>("ss K-major", 1);
        time_rate<128, 0, 2>("ss K-major", 2);
        time_rate<64, 0, 2>("ss K-major", 2);
        time_rate<128, 1, 2>("rs MN-major", 1);
        time_rate<128, 1, 2>("rs MN-major", 2);
        time_rate<64, 1, 2>("rs MN-major", 2);
    }
    return finish("wgmma");
}
