// A model's trainable state, shared by both trainers: bf16 compute weights,
// fp32 master weights, fp32 gradients and fp32 AdamW moments, one contiguous
// buffer each with the tensors at the offsets of the model's layout
// (ParamTensor, llmc/model/param_tensor.h); and the optimizer step on them: global
// grad norm (deterministic), clipping, AdamW per tensor with weight decay only
// where the layout says. A trainer's model struct derives from ModelParams.
// Also: carving one activation allocation into named slots. Saving them to and
// loading them from a checkpoint: llmc/train/params_checkpoint.cuh.
#pragma once
#include <cmath>
#include <vector>
#include "../core/args.h"
#include "../core/cuda_common.h"
#include "param_tensor.h"
#include "../core/reduce.cuh"
#include "adamw.cuh"
#include "ema.cuh"
#include "../dist/zero.h"     // a multi-GPU run's gradient layout and shards

struct OptimConfig {
    float lr = 7e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f, grad_clip = 1.0f;
};

struct ModelParams;

// The communication of a multi-GPU run, implemented with NCCL by
// llmc/dist/distributed.cuh. On one GPU ModelParams::comm is null: every hook below
// returns at once and the buffers are exactly the single-GPU ones.
struct ParamsComm {
    int rank = 0, world = 1, zero = 0;
    virtual ~ParamsComm() {}
    virtual void backward_begin(ModelParams* p) = 0;               // a micro-step's backward starts
    virtual void grads_ready(ModelParams* p, int stage) = 0;       // the backward finished ZERO_HEAD, layer l or ZERO_TAIL
    virtual void forward_wait(ModelParams* p, int stage) = 0;      // the forward is about to use that stage's weights
    virtual void grads_wait(ModelParams* p) = 0;                   // the compute stream waits for the reduced gradients
    virtual float sum_to_host(ModelParams* p, float* dev) = 0;     // all-reduce (sum) one float on the device, return it
    virtual void gather_params(ModelParams* p) = 0;                // every rank's bf16 shard -> the full weights (ZeRO 1/2)
    // checkpoints: the full master, m, v on rank 0 (returns true there; collective; ZeRO 0 leaves them empty:
    // rank 0 reads its own full buffers), and a barrier once rank 0 has written
    virtual bool gather_state(ModelParams* p, std::vector<float>* master, std::vector<float>* m, std::vector<float>* v) = 0;
    virtual void rank0_done(ModelParams* p, const char* what) = 0;
};

struct ModelParams {
    std::vector<ParamTensor> layout;
    size_t num_params = 0;
    floatX* params = nullptr;
    float *master = nullptr, *grads = nullptr, *adam_m = nullptr, *adam_v = nullptr;
    int adam_step = 0;                               // AdamW steps taken (bias correction)
    float* ema = nullptr;                            // optional EMA of the master weights (params_ema_enable)
    float ema_decay = 0.0f;
    float *norm_scratch = nullptr, *norm_out = nullptr;  // global grad norm reduction
    // ---- a multi-GPU run (llmc/dist/distributed.cuh sets comm and zl before params_alloc)
    ParamsComm* comm = nullptr;
    ZeroGradLayout zl;                          // where the gradients live (llmc/dist/zero.h zero_grad_layout)
    std::vector<ParamTensor> grad_layout;       // the layout with the gradients' offsets (a layer tensor: layer 0's slice)
    size_t grad_elems = 0;                      // floats in grads
    size_t state_elems = 0;                     // floats in master / adam_m / adam_v: num_params, or the shard (ZeRO 1/2)
    floatX* params_shard = nullptr;             // ZeRO 1/2: the bf16 shard AdamW writes, all-gathered into params
    float* grad_shard = nullptr;                // ZeRO 1/2: this rank's reduced gradients
    AdamWPiece* pieces = nullptr;               // fused AdamW: device array
    int n_pieces = 0;
    size_t piece_total = 0;
    std::vector<ZeroPiece> shard_by_layout;     // ZeRO 1/2: this rank's pieces, sorted by place in the layout (checkpoint loads)
    int micro = 0, micro_steps = 1;             // the trainer's gradient accumulation: this micro-step of how many
};

static bool params_sharded(const ModelParams* p) { return p->comm && p->comm->zero >= 1; }

// Where layer l's slice of tensor t's gradient is (l < 0, or a tensor that is not
// per layer: the whole tensor). One GPU: the stacked layout, layer l at l * numel / n_layer.
static float* params_grad_at(const ModelParams* p, int t, int l, int n_layer) {
    const ParamTensor& pt = p->layout[t];
    if (!p->comm) return p->grads + pt.offset + (l >= 0 ? (size_t)l * (pt.numel / (size_t)n_layer) : 0);
    if (l < 0 || p->zl.kind[t] != PARAM_LAYER) return p->grads + p->zl.off[t];
    return p->grads + p->zl.off[t] + (size_t)(l % p->zl.slots) * p->zl.slot_size;
}

// The hooks the trainers call (no-ops on one GPU): at the start of a backward, when
// the backward has finished a stage (ZERO_HEAD, layer l, ZERO_TAIL), and in the
// forward before it uses a stage's weights.
static inline void params_backward_begin(ModelParams* p) { if (p->comm) p->comm->backward_begin(p); }
static inline void params_grads_ready(ModelParams* p, int stage) { if (p->comm) p->comm->grads_ready(p, stage); }
static inline void params_forward_wait(ModelParams* p, int stage) { if (p->comm) p->comm->forward_wait(p, stage); }

static void params_setup_dist(ModelParams* p);

// One GPU: every buffer has num_params elements. A multi-GPU run (comm set):
// the gradients have the layer-ordered layout zl (zl.total floats; ZeRO-2: its
// ring of layer slots, zl.phys_total), and with ZeRO 1/2 master and moments
// are this rank's shard (params_setup_dist).
static void params_alloc(ModelParams* p, const std::vector<ParamTensor>& layout) {
    p->layout = layout;
    p->grad_layout = layout;
    p->num_params = layout_numel(layout);
    const size_t n = p->num_params;
    p->grad_elems = p->comm ? p->zl.phys_total : n;
    p->state_elems = params_sharded(p) ? p->zl.shard : n;
    const size_t ng = p->grad_elems, ns = p->state_elems;
    p->params = (floatX*)cuda_malloc_or_fail(n * sizeof(floatX), "parameters");
    p->master = (float*)cuda_malloc_or_fail(ns * sizeof(float), "fp32 master weights");
    p->grads = (float*)cuda_malloc_or_fail(ng * sizeof(float), "gradients");
    p->adam_m = (float*)cuda_malloc_or_fail(ns * sizeof(float), "AdamW first moments");
    p->adam_v = (float*)cuda_malloc_or_fail(ns * sizeof(float), "AdamW second moments");
    p->norm_scratch = (float*)cuda_malloc_or_fail((GLOBAL_NORM_BLOCKS + 4) * sizeof(float), "grad norm scratch");
    p->norm_out = p->norm_scratch + GLOBAL_NORM_BLOCKS;
    cudaCheck(cudaMemset(p->params, 0, n * sizeof(floatX)));
    cudaCheck(cudaMemset(p->master, 0, ns * sizeof(float)));
    cudaCheck(cudaMemset(p->grads, 0, ng * sizeof(float)));
    cudaCheck(cudaMemset(p->adam_m, 0, ns * sizeof(float)));
    cudaCheck(cudaMemset(p->adam_v, 0, ns * sizeof(float)));
    if (p->comm) params_setup_dist(p);
}

static void params_free(ModelParams* p) {
    cudaCheck(cudaFree(p->params)); cudaCheck(cudaFree(p->master)); cudaCheck(cudaFree(p->grads));
    cudaCheck(cudaFree(p->adam_m)); cudaCheck(cudaFree(p->adam_v)); cudaCheck(cudaFree(p->norm_scratch));
    if (p->params_shard) cudaCheck(cudaFree(p->params_shard));
    if (p->grad_shard) cudaCheck(cudaFree(p->grad_shard));
    if (p->pieces) cudaCheck(cudaFree(p->pieces));
    if (p->ema) cudaCheck(cudaFree(p->ema));
}

// A multi-GPU run's extra buffers and the AdamW pieces: ZeRO 0 updates every
// tensor (or layer slice) from its place in the layer-ordered gradients; ZeRO 1/2
// update this rank's shard from its reduced gradient shard into its bf16 shard.
static void params_setup_dist(ModelParams* p) {
    const ZeroGradLayout& z = p->zl;
    for (size_t t = 0; t < p->layout.size(); t++) p->grad_layout[t].offset = z.off[t];
    std::vector<AdamWPiece> pcs;
    size_t work = 0;
    auto add = [&](size_t g, size_t s, size_t q, size_t n, bool decay) {
        if (n == 0) return;
        pcs.push_back({g, s, q, n, work, decay ? 1.0f : 0.0f, 0.0f});
        work += n;
    };
    if (params_sharded(p)) {
        p->params_shard = (floatX*)cuda_malloc_or_fail(z.shard * sizeof(floatX), "parameter shard");
        p->grad_shard = (float*)cuda_malloc_or_fail(z.shard * sizeof(float), "gradient shard");
        cudaCheck(cudaMemset(p->params_shard, 0, z.shard * sizeof(floatX)));
        cudaCheck(cudaMemset(p->grad_shard, 0, z.shard * sizeof(float)));
        const std::vector<ZeroPiece>& mine = z.pieces[p->comm->rank];
        for (const ZeroPiece& q : mine) add(q.shard_offset, q.shard_offset, q.shard_offset, q.count, p->layout[q.tensor].decay);
        p->shard_by_layout = mine;
        std::sort(p->shard_by_layout.begin(), p->shard_by_layout.end(), [&](const ZeroPiece& a, const ZeroPiece& b) {
            return p->layout[a.tensor].offset + a.tensor_offset < p->layout[b.tensor].offset + b.tensor_offset;
        });
    } else {
        for (const ZeroSegment& sg : z.segments) {
            const size_t at = p->layout[sg.tensor].offset + sg.tensor_offset;
            add(zero_phys(z, sg.grad), at, at, sg.count, p->layout[sg.tensor].decay);
        }
    }
    p->n_pieces = (int)pcs.size();
    p->piece_total = work;
    if (!pcs.empty()) {
        p->pieces = (AdamWPiece*)cuda_malloc_or_fail(pcs.size() * sizeof(AdamWPiece), "AdamW pieces");
        cudaCheck(cudaMemcpy(p->pieces, pcs.data(), pcs.size() * sizeof(AdamWPiece), cudaMemcpyHostToDevice));
    }
}

// The compute weights from the fp32 master weights: on one GPU (and ZeRO 0) a
// conversion; ZeRO 1/2 converts this rank's shard and gathers every rank's.
static void params_refresh_weights(ModelParams* p, cudaStream_t stream) {
    if (params_sharded(p)) {
        copy_f32_to_floatX(p->params_shard, p->master, p->state_elems, stream);
        p->comm->gather_params(p);
    } else {
        copy_f32_to_floatX(p->params, p->master, p->num_params, stream);
    }
}

// ZeRO 1/2: the elements [off, off + n) of a full layout-ordered array that this
// rank's shard holds, copied from host src (element off at src[0]) into dev (a shard).
static void params_shard_from_host(const ModelParams* p, float* dev, size_t off, size_t n, const float* src) {
    const std::vector<ZeroPiece>& v = p->shard_by_layout;
    auto lay = [&](const ZeroPiece& q) { return p->layout[q.tensor].offset + q.tensor_offset; };
    size_t a = 0, b = v.size();
    while (a < b) {  // first piece that ends after off
        const size_t m = (a + b) / 2;
        if (lay(v[m]) + v[m].count <= off) a = m + 1; else b = m;
    }
    for (size_t k = a; k < v.size() && lay(v[k]) < off + n; k++) {
        const size_t lo = std::max(off, lay(v[k])), hi = std::min(off + n, lay(v[k]) + v[k].count);
        if (lo >= hi) continue;
        cudaCheck(cudaMemcpy(dev + v[k].shard_offset + (lo - lay(v[k])), src + (lo - off), (hi - lo) * sizeof(float), cudaMemcpyHostToDevice));
    }
}

// Sets all parameters from fp32 host values (init or loaded); resets AdamW.
static void params_set(ModelParams* p, const float* host, cudaStream_t stream) {
    const size_t n = p->num_params;
    if (params_sharded(p)) params_shard_from_host(p, p->master, 0, n, host);
    else cudaCheck(cudaMemcpy(p->master, host, n * sizeof(float), cudaMemcpyHostToDevice));
    params_refresh_weights(p, stream);
    cudaCheck(cudaMemsetAsync(p->adam_m, 0, p->state_elems * sizeof(float), stream));
    cudaCheck(cudaMemsetAsync(p->adam_v, 0, p->state_elems * sizeof(float), stream));
    cudaCheck(cudaStreamSynchronize(stream));
    p->adam_step = 0;
}

// ZeRO-2 zeroes its gradient buffers per micro-step (distributed.cuh) and
// overwrites its gradient shard at the first micro-step: nothing to do here.
static void params_zero_grad(ModelParams* p, cudaStream_t stream) {
    if (p->comm && p->comm->zero == 2) return;
    cudaCheck(cudaMemsetAsync(p->grads, 0, p->grad_elems * sizeof(float), stream));
}

static float params_grad_norm(ModelParams* p, cudaStream_t stream) {
    global_norm_squared(p->norm_out, p->grads, p->num_params, p->norm_scratch, stream);
    float sq = 0;
    cudaCheck(cudaMemcpyAsync(&sq, p->norm_out, sizeof(float), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    return sqrtf(sq);
}

// The gradient scale of global-norm clipping for this norm; false (with a warning)
// for a non-finite norm: the step is skipped instead of poisoning the weights.
static bool params_clip_scale(float norm, const OptimConfig& o, float* scale) {
    if (!std::isfinite(norm)) {
        printf("warning: gradient norm is %f; skipping this update\n", norm);
        return false;
    }
    *scale = (o.grad_clip > 0 && norm > 0) ? std::min(1.0f, o.grad_clip / (norm + 1e-6f)) : 1.0f;
    return true;
}

// One optimizer step of a multi-GPU run: the gradients reduced by the comm
// (ZeRO 0: all-reduced in place; 1/2: this rank's shard), the global norm (ZeRO
// 1/2: the sum of every shard's squares, all-reduced; the padding is zero),
// AdamW on what this rank updates (pieces), and with ZeRO 1/2 the new weights
// gathered from every rank. Every rank sees the same norm, so a non-finite one
// skips the step everywhere.
static float params_update_dist(ModelParams* p, const OptimConfig& o, float lr, cudaStream_t stream) {
    NvtxRange range("params_update_dist");
    const bool sh = params_sharded(p);
    p->comm->grads_wait(p);
    global_norm_squared(p->norm_out, sh ? p->grad_shard : p->grads, sh ? p->zl.shard : p->grad_elems, p->norm_scratch, stream);
    float sq = 0;
    if (sh) {
        sq = p->comm->sum_to_host(p, p->norm_out);
    } else {
        cudaCheck(cudaMemcpyAsync(&sq, p->norm_out, sizeof(float), cudaMemcpyDeviceToHost, stream));
        cudaCheck(cudaStreamSynchronize(stream));
    }
    const float norm = sqrtf(sq);
    float scale;
    if (!params_clip_scale(norm, o, &scale)) return norm;
    p->adam_step++;
    adamw_pieces_update(sh ? p->params_shard : p->params, p->master, sh ? p->grad_shard : p->grads, p->adam_m, p->adam_v, p->pieces,
                        p->n_pieces, p->piece_total, lr, o.beta1, o.beta2, o.eps, o.weight_decay, scale, p->adam_step, stream);
    if (sh) p->comm->gather_params(p);
    if (p->ema) ema_update(p->ema, p->master, p->state_elems, p->ema_decay, stream);
    return norm;
}

// One optimizer step; returns the grad norm before clipping. A non-finite norm
// skips the step instead of poisoning the weights.
static float params_update(ModelParams* p, const OptimConfig& o, float lr, cudaStream_t stream) {
    if (p->comm) return params_update_dist(p, o, lr, stream);
    NvtxRange range("params_update");
    const float norm = params_grad_norm(p, stream);
    float scale;
    if (!params_clip_scale(norm, o, &scale)) return norm;
    p->adam_step++;
    for (const ParamTensor& t : p->layout)
        adamw_update(p->params + t.offset, p->master + t.offset, p->grads + t.offset, p->adam_m + t.offset,
                     p->adam_v + t.offset, t.numel, lr, o.beta1, o.beta2, o.eps, t.decay ? o.weight_decay : 0.0f, scale,
                     p->adam_step, stream);
    if (p->ema) ema_update(p->ema, p->master, p->num_params, p->ema_decay, stream);
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
    if (!(o.lr > 0 && std::isfinite(o.lr))) fail("flag --lr: must be a finite number > 0, got %g", o.lr);
    if (!(o.beta1 >= 0 && o.beta1 < 1)) fail("flag --beta1: must be in [0, 1)");
    if (!(o.beta2 >= 0 && o.beta2 < 1)) fail("flag --beta2: must be in [0, 1)");
    if (!(o.eps > 0 && std::isfinite(o.eps))) fail("flag --adam-eps: must be a finite number > 0");
    if (!(o.weight_decay >= 0 && std::isfinite(o.weight_decay))) fail("flag --weight-decay: must be a finite number >= 0");
    if (!(o.grad_clip >= 0 && std::isfinite(o.grad_clip))) fail("flag --grad-clip: must be a finite number >= 0 (0: no clipping)");
}

// The optional exponential moving average of the weights (llmc/model/ema.cuh), updated
// after every AdamW step, saved as the state's extra array, and swapped into the
// compute weights for sampling. It starts as a copy of the master weights: call
// after they are set or loaded (params_load_state then overwrites it from a
// checkpoint that has one). Kept next to the full master weights, so one GPU or
// ZeRO 0 only.
static void params_ema_enable(ModelParams* p, float decay, cudaStream_t stream) {
    if (!(decay > 0.0f && decay < 1.0f)) fail("flag --ema-decay: must be in (0, 1) to keep an EMA, got %g", decay);
    if (params_sharded(p)) fail("flag --ema-decay: needs --zero 0 on several GPUs (the EMA is kept next to the full master weights)");
    p->ema_decay = decay;
    p->ema = (float*)cuda_malloc_or_fail(p->num_params * sizeof(float), "EMA weights");
    cudaCheck(cudaMemcpyAsync(p->ema, p->master, p->num_params * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    cudaCheck(cudaStreamSynchronize(stream));
}
// The compute (bf16) weights from the EMA, for sampling; params_refresh_weights goes back.
static void params_use_ema_weights(ModelParams* p, cudaStream_t stream) {
    copy_f32_to_floatX(p->params, p->ema, p->num_params, stream);
}

// The fp32 master weights as a full host array (exports). A multi-GPU run: every
// rank calls it; ZeRO 1/2 gather the shards; true on rank 0 only, which has them.
static bool params_master_to_host(ModelParams* p, std::vector<float>* out, cudaStream_t stream) {
    cudaCheck(cudaStreamSynchronize(stream));
    if (params_sharded(p)) return p->comm->gather_state(p, out, nullptr, nullptr);
    if (p->comm && p->comm->rank != 0) return false;
    out->resize(p->num_params);
    cudaCheck(cudaMemcpy(out->data(), p->master, p->num_params * sizeof(float), cudaMemcpyDeviceToHost));
    return true;
}

// ----------------------------------------------------------------------------
// One device allocation for all activations, carved into 256-byte aligned slots
// (pointer, bytes) in order: the memory plan's slots (llmc/train/memory_plan.h memory_plan_bind).
static size_t carve_activations(const std::vector<std::pair<void**, size_t>>& slots) {
    size_t total = 0;
    for (const auto& s : slots) total += (s.second + 255) / 256 * 256;
    char* base = (char*)cuda_malloc_or_fail(total, "activations");
    for (const auto& s : slots) { *s.first = base; base += (s.second + 255) / 256 * 256; }
    return total;
}
