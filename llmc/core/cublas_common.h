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


// A planned product: descriptors and the heuristic's algorithm, built once per distinct shape
// and reused (planning costs tens of microseconds per call). dev/cuda/matmul sets
// matmul_candidates_on before its first product: the plans then also hold the heuristic's next
// suggestions, and matmul_algo_index picks the one matmul_lt runs (the trainers: the first).
constexpr int MATMUL_CANDIDATES = 8;
struct MatmulPlan {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algos[MATMUL_CANDIDATES];
    int n_algos;
};
static bool matmul_candidates_on = false;
static int matmul_algo_index = 0;        // which of a plan's algorithms matmul_lt runs
static int matmul_last_n_algos = 0;      // how many the last matmul_lt's plan holds
struct MatmulKey {
    int m, n, k, lda, ldb, ldd, d_type, ab_type;
    bool ta, tb, bias;
    bool operator<(const MatmulKey& o) const {
        return memcmp(this, &o, sizeof(MatmulKey)) < 0;
    }
};
static std::map<MatmulKey, MatmulPlan> matmul_plans;

static const MatmulPlan& matmul_plan(const MatmulKey& key, cudaDataType_t d_type, cudaDataType_t ab_type) {
    auto it = matmul_plans.find(key);
    if (it != matmul_plans.end()) return it->second;
    MatmulPlan p;
    cublasOperation_t ta = key.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = key.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (key.bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
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
    cublasLtMatmulHeuristicResult_t heur[MATMUL_CANDIDATES];
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, p.desc, p.la, p.lb, p.ld, p.ld, pref, 1, heur, &found));
    if (found == 0) fail("cuBLASLt: no algorithm for m=%d n=%d k=%d ta=%d tb=%d bias=%d", key.m, key.n, key.k, key.ta, key.tb, key.bias);
    p.algos[0] = heur[0].algo;
    p.n_algos = 1;
    if (matmul_candidates_on) {   // the suggestions after the first (a longer list may order them otherwise)
        cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, p.desc, p.la, p.lb, p.ld, p.ld, pref, MATMUL_CANDIDATES, heur, &found));
        for (int i = 0; i < found && p.n_algos < MATMUL_CANDIDATES; i++)
            if (memcmp(&heur[i].algo, &p.algos[0], sizeof(cublasLtMatmulAlgo_t)) != 0) p.algos[p.n_algos++] = heur[i].algo;
    }
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    return matmul_plans[key] = p;
}

// General cuBLASLt product in column-major terms: D[m, n] = alpha * op(A) op(B) + beta * D,
// op(A) [m, k], op(B) [k, n]; A, B in ab_type, D in d_type; optional bias[m] (d_type) added
// in the epilogue. Leading dimensions are those of the stored (untransposed) matrices.
static inline void matmul_lt(void* d, cudaDataType_t d_type, const void* a, const void* b, cudaDataType_t ab_type,
                             const void* bias, int m, int n, int k, bool trans_a, bool trans_b,
                             int lda, int ldb, int ldd, float alpha, float beta, cudaStream_t stream) {
    NVTX_RANGE_FN();
    // --profile-step: the product's FLOPs; A and B read, D written (and read when accumulating)
    const double ab_bytes = ab_type == CUDA_R_32F ? 4 : 2, d_bytes = d_type == CUDA_R_32F ? 4 : 2;
    ProfileWork pw(2.0 * m * n * k, ((double)m * k + (double)k * n) * ab_bytes + (double)m * n * d_bytes * (beta != 0.0f ? 2 : 1));
    if (((uintptr_t)a % 16) || ((uintptr_t)b % 16) || ((uintptr_t)d % 16) || ((uintptr_t)bias % 16))
        fail("matmul_lt: operands must be 16-byte aligned");
    MatmulKey key;
    memset(&key, 0, sizeof(key));  // padding bytes take part in the comparison
    key.m = m; key.n = n; key.k = k; key.lda = lda; key.ldb = ldb; key.ldd = ldd;
    key.d_type = (int)d_type; key.ab_type = (int)ab_type; key.ta = trans_a; key.tb = trans_b; key.bias = bias != nullptr;
    const MatmulPlan& p = matmul_plan(key, d_type, ab_type);
    if (bias) cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    matmul_last_n_algos = p.n_algos;
    if (matmul_algo_index >= p.n_algos) fail("matmul_lt: candidate %d of %d", matmul_algo_index, p.n_algos);
    cublasCheck(cublasLtMatmul(cublaslt_handle, p.desc, &alpha, a, p.la, b, p.lb, &beta, d, p.ld, d, p.ld, &p.algos[matmul_algo_index],
                               cublaslt_workspace, cublaslt_workspace_size, stream));
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
static inline void matmul_backward_dweight(float* dweight, const floatX* dout, const floatX* inp, int M, int N, int K,
                                           cudaStream_t stream) {
    // column-major: dweight^T [K, N] += inp^T [K, M] @ dout [M, N]
    matmul_lt(dweight, CUDA_R_32F, inp, dout, CUBLAS_LOWP, nullptr, K, N, M, false, true, K, N, K, 1.0f, 1.0f, stream);
}
static inline void matmul_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp,
                                   const floatX* weight, int M, int N, int K, bool accumulate_dinp, cudaStream_t stream) {
    matmul_backward_dinp(dinp, dout, weight, M, N, K, accumulate_dinp, stream);
    matmul_backward_dweight(dweight, dout, inp, M, N, K, stream);
}

static inline void cublas_free() {
    for (auto& kv : matmul_plans) {
        cublasCheck(cublasLtMatrixLayoutDestroy(kv.second.la));
        cublasCheck(cublasLtMatrixLayoutDestroy(kv.second.lb));
        cublasCheck(cublasLtMatrixLayoutDestroy(kv.second.ld));
        cublasCheck(cublasLtMatmulDescDestroy(kv.second.desc));
    }
    matmul_plans.clear();
    cudaCheck(cudaFree(cublaslt_workspace));
    cublasCheck(cublasLtDestroy(cublaslt_handle));
    cublasCheck(cublasDestroy(cublas_handle));
}
