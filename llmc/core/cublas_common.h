// Matrix products through cuBLASLt, shared by both trainers.
// Row-major convention of the trainers: out[M, N] = inp[M, K] @ weight[N, K]^T
// (+ bias[N]); weights are [out, in] as in PyTorch. cuBLASLt is column-major,
// so a row-major [M, N] output is a column-major [N, M] matrix and the product
// is computed as out^T = weight @ inp^T.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <map>
#include "cuda_common.h"

static inline void cublas_check(cublasStatus_t s, const char* file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error %d at %s:%d", (int)s, file, line);
}
#define cublasCheck(x) cublas_check((x), __FILE__, __LINE__)

static cublasLtHandle_t cublaslt_handle;
static cublasHandle_t cublas_handle;
static void* cublaslt_workspace = nullptr;
static const size_t cublaslt_workspace_size = 32 << 20;

#if defined(ENABLE_FP32)
static const cudaDataType_t CUBLAS_LOWP = CUDA_R_32F;
#else
static const cudaDataType_t CUBLAS_LOWP = CUDA_R_16BF;
#endif

static inline void cublas_init() {
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cublasCheck(cublasCreate(&cublas_handle));
    cublaslt_workspace = cuda_malloc_or_fail(cublaslt_workspace_size, "cuBLASLt workspace");
    // fp32 builds must be exact fp32 (the tight test path): no TF32
    cublasCheck(cublasSetMathMode(cublas_handle, CUBLAS_DEFAULT_MATH));
}


// A planned product: descriptors and its algorithm, built once per distinct shape and reused
// (planning costs tens of microseconds per call). The algorithm is the heuristic's first
// suggestion unless the tuner below found a faster one with the same bits. dev/cuda/matmul sets
// matmul_candidates_on before its first product: the plans then hold the heuristic's next
// suggestions too, and matmul_algo_index picks the one matmul_lt runs.
constexpr int MATMUL_CANDIDATES = 8;
struct MatmulPlan {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algos[MATMUL_CANDIDATES];   // [0]: the heuristic's first suggestion
    int n_algos;
    int pick;        // the algorithm run outside dev/cuda/matmul's candidate loop
    bool tuned;      // the tuner has run (or does not apply)
};
static bool matmul_candidates_on = false;
static int matmul_algo_index = 0;        // which of a plan's algorithms matmul_lt runs (candidates on)
static int matmul_last_n_algos = 0;      // how many the last matmul_lt's plan holds
static int matmul_last_pick = 0;         // the algorithm the last matmul_lt's plan runs
static bool matmul_tune_on = true;       // off: every plan keeps the heuristic's first suggestion
// what a product adds after the multiply: nothing, a bias (added to its output), or the bias
// gradient of a weight-gradient product (the column sums of its B, written to a vector)
enum MatmulEpilogue { MATMUL_PLAIN = 0, MATMUL_BIAS = 1, MATMUL_BGRAD_B = 2 };
struct MatmulKey {
    int m, n, k, lda, ldb, ldd, d_type, ab_type, epilogue;
    bool ta, tb, accumulate;
    bool operator<(const MatmulKey& o) const {
        return memcmp(this, &o, sizeof(MatmulKey)) < 0;
    }
};
static std::map<MatmulKey, MatmulPlan> matmul_plans;

static MatmulPlan& matmul_plan(const MatmulKey& key, cudaDataType_t d_type, cudaDataType_t ab_type) {
    auto it = matmul_plans.find(key);
    if (it != matmul_plans.end()) return it->second;
    MatmulPlan p;
    cublasOperation_t ta = key.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = key.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (key.epilogue != MATMUL_PLAIN) {   // the bias (gradient) vector in the output's type
        cublasLtEpilogue_t ep = key.epilogue == MATMUL_BIAS ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_BGRADB;
        cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &d_type, sizeof(d_type)));
    }
    cublasCheck(cublasLtMatrixLayoutCreate(&p.la, ab_type, key.ta ? key.k : key.m, key.ta ? key.m : key.k, key.lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&p.lb, ab_type, key.tb ? key.n : key.k, key.tb ? key.k : key.n, key.ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&p.ld, d_type, key.m, key.n, key.ldd));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &cublaslt_workspace_size, sizeof(cublaslt_workspace_size)));
    if (key.epilogue == MATMUL_BGRAD_B) {
        // no split over k: a split's partial sums are added in a reduction scheme cuBLASLt picks
        // (in place in the output among them); without one each column's sum is made inside the
        // product, the same way every run
        const uint32_t no_split = CUBLASLT_REDUCTION_SCHEME_NONE;
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &no_split, sizeof(no_split)));
    }
    cublasLtMatmulHeuristicResult_t heur[MATMUL_CANDIDATES];
    int found = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, p.desc, p.la, p.lb, p.ld, p.ld, pref, 1, heur, &found);
    p.pick = 0;
    if (key.epilogue == MATMUL_BGRAD_B && (hs != CUBLAS_STATUS_SUCCESS || found == 0)) {
        p.n_algos = 0;   // no algorithm with the bias-gradient epilogue: the caller sums the columns itself
        p.tuned = true;
        cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
        return matmul_plans[key] = p;
    }
    cublasCheck(hs);
    if (found == 0)
        fail("cuBLASLt: no algorithm for m=%d n=%d k=%d ta=%d tb=%d epilogue=%d", key.m, key.n, key.k, key.ta, key.tb, key.epilogue);
    p.algos[0] = heur[0].algo;
    p.n_algos = 1;
    // the tuner tries only products that overwrite their output (see matmul_tune)
    p.tuned = !(matmul_tune_on && !key.accumulate);
    if (matmul_candidates_on || !p.tuned) {   // the suggestions after the first (a longer list may order them otherwise)
        cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, p.desc, p.la, p.lb, p.ld, p.ld, pref, MATMUL_CANDIDATES, heur, &found));
        for (int i = 0; i < found && p.n_algos < MATMUL_CANDIDATES; i++) {
            if (heur[i].state != CUBLAS_STATUS_SUCCESS || memcmp(&heur[i].algo, &p.algos[0], sizeof(cublasLtMatmulAlgo_t)) == 0)
                continue;
            // the tuner's candidates: no split over K where the algorithm says (another order of
            // the sums, and a reduction that may depend on timing; the bits check stands anyway)
            int split_k = 1;
            if (!matmul_candidates_on &&
                cublasLtMatmulAlgoConfigGetAttribute(&heur[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split_k, sizeof(split_k), nullptr) ==
                    CUBLAS_STATUS_SUCCESS &&
                split_k > 1)
                continue;
            p.algos[p.n_algos++] = heur[i].algo;
        }
    }
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    return matmul_plans[key] = p;
}

// A fingerprint of a product's output bits: the sum over its 32-bit words of a mix of the word
// and its index (an integer sum: the same in any order), into out[0]. Two outputs that differ
// in any word differ in it but with a chance of about 2^-64.
__global__ static void matmul_fingerprint_kernel(const unsigned int* words, size_t n, unsigned long long* out) {
    unsigned long long h = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned long long x = (((unsigned long long)words[i] << 32) | (i & 0xffffffffull)) * 0x9E3779B97F4A7C15ull;
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        h += x ^ (x >> 32);
    }
    for (int o = 16; o > 0; o >>= 1) h += __shfl_xor_sync(0xffffffff, h, o);
    if (threadIdx.x % 32 == 0) atomicAdd(out, h);
}

// Per-shape algorithm choice. cuBLASLt orders its suggestions by a model, not by measurement,
// and at several of the trainers' shapes a later suggestion is faster (dev/cuda/matmul). So the
// first product of a shape that overwrites its output (beta 0) tries each suggestion on its own
// operands, in its own output (the real product overwrites it next): first the output's
// fingerprint, for each suggestion once, then MATMUL_TUNE_ROUNDS timed rounds over those whose
// fingerprint is the first suggestion's, each of them once a round, so that a drift of the clock
// (the GPU warming up, throttling) falls on all alike; each one's fastest round counts, and a
// later one is kept where it beats the first by MATMUL_TUNE_MARGIN. Which one wins may differ
// between runs (timing noise), the numbers cannot: every one it may keep gives the first one's
// bits. Accumulating products keep the first suggestion (trying them would need a copy of their
// output). The fingerprint's 8 bytes sit at the start of the cuBLASLt workspace, read back before
// the next product runs.
constexpr int MATMUL_TUNE_ROUNDS = 5;
constexpr float MATMUL_TUNE_MARGIN = 0.97f;
static void matmul_tune(MatmulPlan& p, void* d, size_t d_bytes, const void* a, const void* b, float alpha, float beta,
                        cudaStream_t stream) {
    p.tuned = true;
    cudaStreamCaptureStatus capture;
    cudaCheck(cudaStreamIsCapturing(stream, &capture));
    if (p.n_algos < 2 || capture != cudaStreamCaptureStatusNone) return;
    auto run = [&](int i) {
        return cublasLtMatmul(cublaslt_handle, p.desc, &alpha, a, p.la, b, p.lb, &beta, d, p.ld, d, p.ld, &p.algos[i], cublaslt_workspace,
                              cublaslt_workspace_size, stream);
    };
    unsigned long long* fp_dev = (unsigned long long*)cublaslt_workspace;
    const size_t n_words = d_bytes / 4;   // a bf16 output of odd size: its last element is not in the fingerprint
    int same[MATMUL_CANDIDATES], n_same = 0;
    unsigned long long fp_first = 0;
    for (int i = 0; i < p.n_algos; i++) {
        const cublasStatus_t st = run(i);
        if (st != CUBLAS_STATUS_SUCCESS) {
            if (i == 0) cublasCheck(st);   // the first must run; a later one that cannot is skipped
            continue;
        }
        cudaCheck(cudaMemsetAsync(fp_dev, 0, sizeof(unsigned long long), stream));
        matmul_fingerprint_kernel<<<256, 256, 0, stream>>>((const unsigned int*)d, n_words, fp_dev);
        cudaCheck(cudaGetLastError());
        unsigned long long fp = 0;
        cudaCheck(cudaMemcpyAsync(&fp, fp_dev, sizeof fp, cudaMemcpyDeviceToHost, stream));
        cudaCheck(cudaStreamSynchronize(stream));
        if (i == 0) fp_first = fp;
        if (fp == fp_first) same[n_same++] = i;   // (other bits: never taken)
    }
    if (n_same < 2) return;
    cudaEvent_t t0, t1;
    cudaCheck(cudaEventCreate(&t0));
    cudaCheck(cudaEventCreate(&t1));
    float best[MATMUL_CANDIDATES];
    for (int j = 0; j < n_same; j++) best[j] = INFINITY;
    for (int r = 0; r < MATMUL_TUNE_ROUNDS; r++)
        for (int j = 0; j < n_same; j++) {
            cudaCheck(cudaEventRecord(t0, stream));
            cublasCheck(run(same[j]));
            cudaCheck(cudaEventRecord(t1, stream));
            cudaCheck(cudaEventSynchronize(t1));
            float ms = 0.0f;
            cudaCheck(cudaEventElapsedTime(&ms, t0, t1));
            best[j] = fminf(best[j], ms);
        }
    cudaCheck(cudaEventDestroy(t0));
    cudaCheck(cudaEventDestroy(t1));
    int win = 0;   // same[0] is the first suggestion
    for (int j = 1; j < n_same; j++)
        if (best[j] < best[win]) win = j;
    if (win != 0 && best[win] < MATMUL_TUNE_MARGIN * best[0]) p.pick = same[win];
}

// General cuBLASLt product in column-major terms: D[m, n] = alpha * op(A) op(B) + beta * D,
// op(A) [m, k], op(B) [k, n]; A, B in ab_type, D in d_type. Epilogue: MATMUL_BIAS adds vec[m]
// (d_type) to every column; MATMUL_BGRAD_B writes vec[n] (d_type) = the sums of op(B)'s columns
// over k. Leading dimensions are those of the stored (untransposed) matrices. False, with nothing
// done, only where MATMUL_BGRAD_B has no algorithm (every other product fails loudly instead).
static inline bool matmul_lt_epilogue(void* d, cudaDataType_t d_type, const void* a, const void* b, cudaDataType_t ab_type,
                                      MatmulEpilogue epilogue, const void* vec, int m, int n, int k, bool trans_a, bool trans_b,
                                      int lda, int ldb, int ldd, float alpha, float beta, cudaStream_t stream) {
    NVTX_RANGE_FN();
    // --profile-step: the product's FLOPs; A and B read, D written (and read when accumulating)
    const double ab_bytes = ab_type == CUDA_R_32F ? 4 : 2, d_bytes = d_type == CUDA_R_32F ? 4 : 2;
    ProfileWork pw(2.0 * m * n * k, ((double)m * k + (double)k * n) * ab_bytes + (double)m * n * d_bytes * (beta != 0.0f ? 2 : 1));
    if (((uintptr_t)a % 16) || ((uintptr_t)b % 16) || ((uintptr_t)d % 16) || ((uintptr_t)vec % 16))
        fail("matmul_lt: operands must be 16-byte aligned");
    if (epilogue != MATMUL_PLAIN && !vec) fail("matmul_lt: epilogue %d without its vector", (int)epilogue);
    MatmulKey key;
    memset(&key, 0, sizeof(key));  // padding bytes take part in the comparison
    key.m = m; key.n = n; key.k = k; key.lda = lda; key.ldb = ldb; key.ldd = ldd;
    key.d_type = (int)d_type; key.ab_type = (int)ab_type; key.epilogue = (int)epilogue; key.ta = trans_a; key.tb = trans_b;
    key.accumulate = beta != 0.0f;
    MatmulPlan& p = matmul_plan(key, d_type, ab_type);
    if (p.n_algos == 0) return false;
    if (vec) cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vec, sizeof(vec)));
    if (!p.tuned) matmul_tune(p, d, ((size_t)ldd * (n - 1) + m) * (size_t)d_bytes, a, b, alpha, beta, stream);
    matmul_last_n_algos = p.n_algos;
    matmul_last_pick = p.pick;
    const int algo = matmul_candidates_on ? matmul_algo_index : p.pick;
    if (algo >= p.n_algos) fail("matmul_lt: candidate %d of %d", algo, p.n_algos);
    cublasCheck(cublasLtMatmul(cublaslt_handle, p.desc, &alpha, a, p.la, b, p.lb, &beta, d, p.ld, d, p.ld, &p.algos[algo],
                               cublaslt_workspace, cublaslt_workspace_size, stream));
    return true;
}
// the same with an optional bias[m] (d_type) added in the epilogue
static inline void matmul_lt(void* d, cudaDataType_t d_type, const void* a, const void* b, cudaDataType_t ab_type,
                             const void* bias, int m, int n, int k, bool trans_a, bool trans_b,
                             int lda, int ldb, int ldd, float alpha, float beta, cudaStream_t stream) {
    matmul_lt_epilogue(d, d_type, a, b, ab_type, bias ? MATMUL_BIAS : MATMUL_PLAIN, bias, m, n, k, trans_a, trans_b, lda, ldb, ldd,
                       alpha, beta, stream);
}

// out[M, N] = inp[M, K] @ weight[N, K]^T (+ bias[N])
static inline void matmul_forward(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias,
                                  int M, int N, int K, cudaStream_t stream) {
    matmul_lt(out, CUBLAS_LOWP, weight, inp, CUBLAS_LOWP, bias, N, M, K, true, false, K, K, N, 1.0f, 0.0f, stream);
}

// dinp[M, K] = dout[M, N] @ weight[N, K]  (accumulate into dinp when accumulate)
// dweight[N, K] += dout^T @ inp, in fp32 (gradients are fp32 so that gradient
// accumulation over micro-steps does not round to bf16 each time).
static inline void matmul_backward_dinp(floatX* dinp, const floatX* dout, const floatX* weight, int M, int N, int K,
                                        bool accumulate_dinp, cudaStream_t stream) {
    // column-major: dinp^T [K, M] = weight^T [K, N] @ dout^T [N, M]
    matmul_lt(dinp, CUBLAS_LOWP, weight, dout, CUBLAS_LOWP, nullptr, K, M, N, false, false, K, N, K, 1.0f,
              accumulate_dinp ? 1.0f : 0.0f, stream);
}
// accumulate_dweight false: dweight = dout^T @ inp (the first backward after the gradients were
// zeroed: the same bits as adding to zeros, without reading them)
static inline void matmul_backward_dweight(float* dweight, const floatX* dout, const floatX* inp, int M, int N, int K,
                                           cudaStream_t stream, bool accumulate_dweight = true) {
    // column-major: dweight^T [K, N] += inp^T [K, M] @ dout [M, N]
    matmul_lt(dweight, CUDA_R_32F, inp, dout, CUBLAS_LOWP, nullptr, K, N, M, false, true, K, N, K, 1.0f,
              accumulate_dweight ? 1.0f : 0.0f, stream);
}
static inline void matmul_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp,
                                   const floatX* weight, int M, int N, int K, bool accumulate_dinp, cudaStream_t stream,
                                   bool accumulate_dweight = true) {
    matmul_backward_dinp(dinp, dout, weight, M, N, K, accumulate_dinp, stream);
    matmul_backward_dweight(dweight, dout, inp, M, N, K, stream, accumulate_dweight);
}

// destroys every plan (the next product of each shape plans, and tunes, again)
static inline void matmul_plans_clear() {
    for (auto& kv : matmul_plans) {
        cublasCheck(cublasLtMatrixLayoutDestroy(kv.second.la));
        cublasCheck(cublasLtMatrixLayoutDestroy(kv.second.lb));
        cublasCheck(cublasLtMatrixLayoutDestroy(kv.second.ld));
        cublasCheck(cublasLtMatmulDescDestroy(kv.second.desc));
    }
    matmul_plans.clear();
}

static inline void cublas_free() {
    matmul_plans_clear();
    cudaCheck(cudaFree(cublaslt_workspace));
    cublasCheck(cublasLtDestroy(cublaslt_handle));
    cublasCheck(cublasDestroy(cublas_handle));
}
