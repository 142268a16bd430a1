// A model's trainable state, shared by both trainers: bf16 compute weights,
// fp32 master weights, fp32 gradients and fp32 AdamW moments, one contiguous
// buffer each with the tensors at the offsets of the model's layout
// (ParamTensor, llmc/gpt_config.h); and the optimizer step on them: global
// grad norm (deterministic), clipping, AdamW per tensor with weight decay only
// where the layout says. A trainer's model struct derives from ModelParams.
// Also: carving one activation allocation into named slots.
#pragma once
#include <cmath>
#include <vector>
#include "args.h"
#include "cuda_common.h"
#include "gpt_config.h"  // ParamTensor
#include "reduce.cuh"
#include "adamw.cuh"

struct OptimConfig {
    float lr = 7e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f, grad_clip = 1.0f;
};

struct ModelParams {
    std::vector<ParamTensor> layout;
    size_t num_params = 0;
    floatX* params = nullptr;
    float *master = nullptr, *grads = nullptr, *adam_m = nullptr, *adam_v = nullptr;
    int adam_step = 0;                               // AdamW steps taken (bias correction)
    float *norm_scratch = nullptr, *norm_out = nullptr;  // global grad norm reduction
};

static void params_alloc(ModelParams* p, const std::vector<ParamTensor>& layout) {
    p->layout = layout;
    p->num_params = gpt_num_params(layout);
    const size_t n = p->num_params;
    p->params = (floatX*)cuda_malloc_or_fail(n * sizeof(floatX), "parameters");
    p->master = (float*)cuda_malloc_or_fail(n * sizeof(float), "fp32 master weights");
    p->grads = (float*)cuda_malloc_or_fail(n * sizeof(float), "gradients");
    p->adam_m = (float*)cuda_malloc_or_fail(n * sizeof(float), "AdamW first moments");
    p->adam_v = (float*)cuda_malloc_or_fail(n * sizeof(float), "AdamW second moments");
    p->norm_scratch = (float*)cuda_malloc_or_fail((GLOBAL_NORM_BLOCKS + 4) * sizeof(float), "grad norm scratch");
    p->norm_out = p->norm_scratch + GLOBAL_NORM_BLOCKS;
    cudaCheck(cudaMemset(p->params, 0, n * sizeof(floatX)));
    cudaCheck(cudaMemset(p->master, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(p->grads, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(p->adam_m, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(p->adam_v, 0, n * sizeof(float)));
}

static void params_free(ModelParams* p) {
    cudaCheck(cudaFree(p->params)); cudaCheck(cudaFree(p->master)); cudaCheck(cudaFree(p->grads));
    cudaCheck(cudaFree(p->adam_m)); cudaCheck(cudaFree(p->adam_v)); cudaCheck(cudaFree(p->norm_scratch));
}

// Sets all parameters from fp32 host values (init or loaded); resets AdamW.
static void params_set(ModelParams* p, const float* host, cudaStream_t stream) {
    const size_t n = p->num_params;
    cudaCheck(cudaMemcpy(p->master, host, n * sizeof(float), cudaMemcpyHostToDevice));
    copy_f32_to_floatX(p->params, p->master, n, stream);
    cudaCheck(cudaMemsetAsync(p->adam_m, 0, n * sizeof(float), stream));
    cudaCheck(cudaMemsetAsync(p->adam_v, 0, n * sizeof(float), stream));
    cudaCheck(cudaStreamSynchronize(stream));
    p->adam_step = 0;
}

static void params_zero_grad(ModelParams* p, cudaStream_t stream) {
    cudaCheck(cudaMemsetAsync(p->grads, 0, p->num_params * sizeof(float), stream));
}

static float params_grad_norm(ModelParams* p, cudaStream_t stream) {
    global_norm_squared(p->norm_out, p->grads, p->num_params, p->norm_scratch, stream);
    float sq = 0;
    cudaCheck(cudaMemcpyAsync(&sq, p->norm_out, sizeof(float), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    return sqrtf(sq);
}

// One optimizer step; returns the grad norm before clipping. A non-finite norm
// skips the step instead of poisoning the weights.
static float params_update(ModelParams* p, const OptimConfig& o, float lr, cudaStream_t stream) {
    NvtxRange range("params_update");
    const float norm = params_grad_norm(p, stream);
    if (!std::isfinite(norm)) {
        printf("warning: gradient norm is %f; skipping this update\n", norm);
        return norm;
    }
    const float scale = (o.grad_clip > 0 && norm > 0) ? std::min(1.0f, o.grad_clip / (norm + 1e-6f)) : 1.0f;
    p->adam_step++;
    for (const ParamTensor& t : p->layout)
        adamw_update(p->params + t.offset, p->master + t.offset, p->grads + t.offset, p->adam_m + t.offset,
                     p->adam_v + t.offset, t.numel, lr, o.beta1, o.beta2, o.eps, t.decay ? o.weight_decay : 0.0f, scale,
                     p->adam_step, stream);
    return norm;
}

static void optim_add_flags(ArgParser& ap, OptimConfig* o) {
    ap.section("optimizer (AdamW)");
    ap.add_float("--beta1", &o->beta1, "AdamW beta1");
    ap.add_float("--beta2", &o->beta2, "AdamW beta2");
    ap.add_float("--adam-eps", &o->eps, "AdamW epsilon");
    ap.add_float("--weight-decay", &o->weight_decay, "decoupled weight decay (matrices only)");
    ap.add_float("--grad-clip", &o->grad_clip, "clip the global grad norm to this (0: off)");
}

static void optim_validate(const OptimConfig& o) {
    if (!(o.lr >= 0)) fail("flag --lr: must be >= 0");
    if (!(o.beta1 >= 0 && o.beta1 < 1)) fail("flag --beta1: must be in [0, 1)");
    if (!(o.beta2 >= 0 && o.beta2 < 1)) fail("flag --beta2: must be in [0, 1)");
    if (!(o.eps > 0)) fail("flag --adam-eps: must be > 0");
    if (!(o.weight_decay >= 0)) fail("flag --weight-decay: must be >= 0");
    if (!(o.grad_clip >= 0)) fail("flag --grad-clip: must be >= 0");
}

// One device allocation for all activations, carved into 256-byte aligned slots.
struct ActivationSlot {
    void** ptr;
    size_t bytes;
};
static size_t carve_activations(const std::vector<ActivationSlot>& slots) {
    size_t total = 0;
    for (const ActivationSlot& s : slots) total += (s.bytes + 255) / 256 * 256;
    char* base = (char*)cuda_malloc_or_fail(total, "activations");
    for (const ActivationSlot& s : slots) { *s.ptr = base; base += (s.bytes + 255) / 256 * 256; }
    return total;
}
