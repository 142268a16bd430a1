/*
train_gpt.cu: trains a Llama-family decoder (Llama 3.x, Qwen2.5/3, Mistral,
Emu3 shapes; docs/gpt.md) on one GPU, in the style of llm.c.

Reads top to bottom: configuration, parameters, activations, forward,
backward, update, data and sampling, checkpoints, main loop. Every layer is a hand-written
kernel in llmc/ (embedding, RMSNorm fused with the residual add, QK-norm+RoPE,
attention, SwiGLU, fused classifier, AdamW); matrix products go through
cuBLASLt. Weights are bf16 for compute with fp32 master copies; gradients and
optimizer state are fp32. Build with PRECISION=FP32 for an all-fp32 variant.

  make train_gpt && ./train_gpt          # trains the shakespeare preset on the embedded data
  ./train_gpt --help                     # every flag
  ./train_gpt --ckpt-dir ckpt --ckpt-every 200 --resume 1   # checkpoints; rerun the same line to resume
*/
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include "llmc/core/utils.h"
#include "llmc/core/args.h"
#include "llmc/core/rand.h"
#include "llmc/model/gpt_config.h"
#include "llmc/core/cuda_common.h"
#include "llmc/core/cublas_common.h"
#include "llmc/core/reduce.cuh"
#include "llmc/kernels/encoder.cuh"
#include "llmc/kernels/rmsnorm.cuh"
#include "llmc/kernels/rope.cuh"
#include "llmc/attention/flash_attention.cuh"
#include "llmc/attention/ring_attention.cuh"   // --cp: attention over a sequence split across ranks
#include "llmc/train/attention_flags.h"  // --attn-backward, MEGA_FLASH_SM90
#include "llmc/kernels/swiglu.cuh"
#include "llmc/kernels/classifier.cuh"
#include "llmc/model/params.cuh"
#include "llmc/kernels/dropout.cuh"
#include "llmc/formats/tokenizer.h"
#include "llmc/formats/hf_tokenizer.h"
#include "llmc/formats/hf.h"
#include "llmc/formats/tensorfile.h"
#include "llmc/data/dataset.h"
#include "llmc/data/token_data.h"   // llm.c shards or Megatron indexed datasets
#include "llmc/train/plot.h"
#include "llmc/train/checkpoint_gpt.h"
#include "llmc/train/run.h"
#include "llmc/train/memory_plan.h"

// ----------------------------------------------------------------------------
// Parameters: one contiguous buffer per kind (bf16 compute weights, fp32
// master weights, fp32 gradients, fp32 Adam moments), tensors at the offsets
// of gpt_param_layout (llmc/model/gpt_config.h). Per-layer tensors are stacked
// [L, ...]; layer l of tensor X starts at X + l * (numel / L).

template <typename T>
struct GPTTensors {
    T *wte, *attn_norm, *wqkv, *bqkv, *q_norm, *k_norm, *wo, *mlp_norm, *wgateup, *wdown, *final_norm, *lm_head;
};

template <typename T>
static GPTTensors<T> gpt_tensor_pointers(T* base, const std::vector<ParamTensor>& layout, bool tied) {
    auto at = [&](const char* n) -> T* {
        const ParamTensor* p = gpt_find_param(layout, n);
        return p ? base + p->offset : nullptr;
    };
    GPTTensors<T> t;
    t.wte = at("wte"); t.attn_norm = at("attn_norm"); t.wqkv = at("wqkv"); t.bqkv = at("bqkv");
    t.q_norm = at("q_norm"); t.k_norm = at("k_norm"); t.wo = at("wo"); t.mlp_norm = at("mlp_norm");
    t.wgateup = at("wgateup"); t.wdown = at("wdown"); t.final_norm = at("final_norm");
    t.lm_head = tied ? t.wte : at("lm_head");
    return t;
}

// ----------------------------------------------------------------------------
// Activations saved by the forward for the backward, per layer [L, B*T, ...],
// and the scratch buffers both passes use. Sized for the largest (B, T) the
// model was built for; smaller batches (sampling, B=1) reuse the same memory.
// Their sizes are the memory plan's (llmc/train/memory_plan.h gpt_plan_slots).
// With recompute (llmc/train/recompute.h) a per-layer kind the mode drops holds
// fewer blocks: gpt_layer finds layer l's.

struct GPTActivations {
    floatX *encoded;                // [BT, C] token embeddings (input of layer 0)
    floatX *resid_mid, *resid_out;  // [L, BT, C] residual stream after attention / after MLP
    floatX *ln1, *ln2;              // [L, BT, C] normed inputs of attention / MLP
    float *rstd1, *rstd2;           // [L, BT]
    floatX *qkv;                    // [L, BT, QKV] projections (pre-norm, pre-RoPE)
    float *qk_rstd;                 // [L, BT, nh+nkv] QK-norm statistics
    floatX *qp, *kp, *vp;           // [L, ...] attention inputs in head-major layouts (rope.cuh)
    float *lse;                     // [L, B, nh, T] attention row logsumexp (the backward recomputes P from it)
    floatX *atty;                   // [L, BT, nh*hd] attention output, heads concatenated
    floatX *gateup;                 // [L, BT, 2F]
    floatX *swiglu;                 // [L, BT, F]
    floatX *lnf;                    // [BT, C]
    float *rstdf;                   // [BT]
    floatX *logits;                 // [BT, Vp], overwritten in place by dlogits
    float *losses;                  // [BT]
    // scratch
    floatX *proj;                   // sub-layer outputs before the residual add
    floatX *dresid, *dbuf;          // [BT, C] residual gradient, gradient of a norm output
    floatX *datty;                  // attention output gradient
    float *attn_scratch;            // flash attention backward scratch
    floatX *dqp, *dkp, *dvp, *dqkv, *dgateup, *dswiglu;
    float *dnw_scratch, *reduce_scratch;
    int *tokens, *targets, *enc_ints;
    int* positions;                 // [BT] packed rows (SFT --pack 1): each token's position in its document;
                                    // with --cp each token's position in its row (RoPE)
    void* cp_ring;                  // --cp: the ring attention's buffers
    float* cp_logits_row;           // --cp: one row of logits in fp32, summed over the group (sampling)
    size_t bytes;
};

// One layer's part of the per-layer activations.
struct GPTLayerActs {
    floatX *resid_mid, *resid_out, *ln1, *ln2, *qkv, *qp, *kp, *vp, *atty, *gateup, *swiglu;
    float *rstd1, *rstd2, *qk_rstd, *lse;
};

// params, master, grads, adam_m, adam_v, layout, num_params, adam_step: llmc/model/params.cuh
struct GPT : ModelParams {
    GPTConfig cfg;
    int maxB = 0, maxT = 0;   // activations are sized for these
    int B = 0, T = 0;         // shape of the last forward
    GPTTensors<floatX> w;
    GPTTensors<float> dw;
    std::vector<GPTTensors<float>> dw_layers;   // layer l's gradient slices (gpt_layer_grads)
    GPTActivations act;
    Recompute recompute;           // which layers' activations the backward rebuilds
    float2* rope_cs = nullptr;
    EncoderBuckets buckets;
    std::vector<int> tokens_host;  // the micro-batch the last forward saw (for the embedding backward)
    float* losses_host = nullptr;  // pinned
    cudaStream_t stream = 0;
    float dropout = 0.0f;          // residual-branch dropout probability (training forwards only)
    uint64_t dropout_seed = 0;     // set per micro-step by the trainer; the backward reuses it
    bool dropout_active = false;   // whether the last forward applied dropout
    bool grads_fresh = false;      // gpt_zero_grad ran since the last backward (see there)
    bool packed = false;           // whether the last forward had packed rows (positions: RoPE and attention per document)
    // context parallel (--cp, llmc/dist/context_parallel.h): this process holds cp.local ranks of a
    // group of cp.n; a forward of B x T rows runs on their tokens, chunk-major, as B, T = cp.local*2*B
    // rows of T/(2 cp.n) tokens, and attention goes around the ring
    CpGroup cp;
    CpRing ring;
    int cp_rows = 0, cp_len = 0;   // the B x T the token index below is for
    std::vector<int> cp_index;     // local token i is global token cp_index[i] (b*T + t)
    std::vector<int> cp_local;     // global token -> local index, -1 where another process holds it
    std::vector<int> cp_tokens, cp_targets;   // the last forward's tokens and targets in local order
};

// Layer l's gradient slices: l * numel / n_layer into the stacked layout on one
// GPU; a multi-GPU run keeps the gradients per layer (llmc/model/params.cuh params_grad_at).
static GPTTensors<float> gpt_layer_grads(const GPT* g, int l) {
    GPTTensors<float> d = g->dw;
    auto at = [&](float* whole, const char* name) -> float* {
        if (!whole) return nullptr;
        const ParamTensor* p = gpt_find_param(g->layout, name);
        return params_grad_at(g, (int)(p - g->layout.data()), l, g->cfg.n_layer);
    };
    d.attn_norm = at(d.attn_norm, "attn_norm"); d.wqkv = at(d.wqkv, "wqkv"); d.bqkv = at(d.bqkv, "bqkv");
    d.q_norm = at(d.q_norm, "q_norm"); d.k_norm = at(d.k_norm, "k_norm"); d.wo = at(d.wo, "wo");
    d.mlp_norm = at(d.mlp_norm, "mlp_norm"); d.wgateup = at(d.wgateup, "wgateup"); d.wdown = at(d.wdown, "wdown");
    return d;
}

// Layer l's activations for the last forward's B x T: at its block of each slot
// (Recompute::slot_index), blocks of B*T rows.
static GPTLayerActs gpt_layer(const GPT* g, int l) {
    const GPTConfig& c = g->cfg;
    const GPTActivations& a = g->act;
    const Recompute& rc = g->recompute;
    const size_t BT = (size_t)g->B * g->T, C = c.d_model, hd = c.head_dim, F = c.ffn_hidden, nh = c.n_head, nkv = c.n_kv_head;
    const size_t qd = nh * hd, kvd = nkv * hd, QKV = qd + 2 * kvd;
    auto at = [&](ActKeep k) { return (size_t)rc.slot_index(k, l) * BT; };   // first row of layer l's block
    GPTLayerActs r;
    r.resid_mid = a.resid_mid + at(ACT_FULL_DROPS) * C; r.resid_out = a.resid_out + at(ACT_KEPT) * C;
    r.ln1 = a.ln1 + at(ACT_CHEAP) * C; r.ln2 = a.ln2 + at(ACT_CHEAP) * C;
    r.rstd1 = a.rstd1 + at(ACT_KEPT); r.rstd2 = a.rstd2 + at(ACT_KEPT);
    r.qkv = a.qkv + at(ACT_FULL_DROPS) * QKV; r.qk_rstd = a.qk_rstd + at(ACT_FULL_DROPS) * (nh + nkv);
    r.qp = a.qp + at(ACT_CHEAP) * qd; r.kp = a.kp + at(ACT_CHEAP) * kvd; r.vp = a.vp + at(ACT_CHEAP) * kvd;
    r.lse = a.lse + at(ACT_FULL_DROPS) * nh;   // [B, nh, T] per layer: B*T*nh floats
    r.atty = a.atty + at(ACT_FULL_DROPS) * qd; r.gateup = a.gateup + at(ACT_FULL_DROPS) * 2 * F;
    r.swiglu = a.swiglu + at(ACT_CHEAP) * F;
    return r;
}

// B x T: the largest batch of rows a forward gets. cp: the context-parallel ranks this process
// holds (none: CpGroup()); cp_comm their NCCL communicator (llmc/dist/distributed.cuh dist_cp_comm;
// null when one process holds the whole group).
static void gpt_build(GPT* g, const GPTConfig& cfg, int B, int T, const Recompute& rc = Recompute(), const CpGroup& cp = CpGroup(),
                      void* cp_comm = nullptr) {
    g->cfg = cfg;
    params_alloc(g, gpt_param_layout(cfg));
    g->maxB = B;
    g->maxT = T;
    g->w = gpt_tensor_pointers(g->params, g->layout, cfg.tie_embeddings);
    g->dw = gpt_tensor_pointers(g->grads, g->grad_layout, cfg.tie_embeddings);   // several GPUs: a layer tensor's layer 0 (gpt_layer_grads)
    for (int l = 0; l < cfg.n_layer; l++) g->dw_layers.push_back(gpt_layer_grads(g, l));

    // activations: one allocation, carved in the memory plan's order and sizes
    g->recompute = rc;
    g->cp = cp;
    // the kernels' shape: with --cp this process's tokens, chunk-major (llmc/dist/context_parallel.h)
    const int Bk = cp.on() ? cp.local * 2 * B : B, Tk = cp.on() ? T / (2 * cp.n) : T;
    const size_t C = cfg.d_model, BT = (size_t)Bk * Tk, hd = cfg.head_dim, nh = cfg.n_head, nkv = cfg.n_kv_head;
    const size_t QKV = (nh + 2 * nkv) * hd, max_cols = std::max({C, QKV, (nh + nkv) * hd, (size_t)64});
    const std::vector<PlanSlot> slots = gpt_plan_slots(cfg, B, T, sizeof(floatX), rc, cp);
    memory_plan_require(slots, "attn_scratch", flash_attention_scratch_bytes({Bk, Tk, (int)nh, (int)nkv, (int)hd, true}));
    memory_plan_require(slots, "reduce_scratch", (COLUMN_REDUCE_SPLITS + 2) * max_cols * sizeof(float));
    GPTActivations& a = g->act;
    std::vector<ActivationBind> binds = {
        {"encoded", (void**)&a.encoded}, {"resid_mid", (void**)&a.resid_mid}, {"resid_out", (void**)&a.resid_out},
        {"ln1", (void**)&a.ln1}, {"ln2", (void**)&a.ln2}, {"rstd1", (void**)&a.rstd1}, {"rstd2", (void**)&a.rstd2},
        {"qkv", (void**)&a.qkv}, {"qk_rstd", (void**)&a.qk_rstd}, {"qp", (void**)&a.qp}, {"kp", (void**)&a.kp},
        {"vp", (void**)&a.vp}, {"lse", (void**)&a.lse}, {"atty", (void**)&a.atty}, {"gateup", (void**)&a.gateup},
        {"swiglu", (void**)&a.swiglu}, {"lnf", (void**)&a.lnf}, {"rstdf", (void**)&a.rstdf}, {"logits", (void**)&a.logits},
        {"losses", (void**)&a.losses}, {"proj", (void**)&a.proj}, {"dresid", (void**)&a.dresid}, {"dbuf", (void**)&a.dbuf},
        {"datty", (void**)&a.datty}, {"attn_scratch", (void**)&a.attn_scratch}, {"dqp", (void**)&a.dqp},
        {"dkp", (void**)&a.dkp}, {"dvp", (void**)&a.dvp}, {"dqkv", (void**)&a.dqkv}, {"dgateup", (void**)&a.dgateup},
        {"dswiglu", (void**)&a.dswiglu}, {"dnw_scratch", (void**)&a.dnw_scratch}, {"reduce_scratch", (void**)&a.reduce_scratch},
        {"tokens", (void**)&a.tokens}, {"targets", (void**)&a.targets}, {"positions", (void**)&a.positions},
        {"enc_ints", (void**)&a.enc_ints},
    };
    if (cp.on()) {
        binds.push_back({"cp_logits_row", (void**)&a.cp_logits_row});
        binds.push_back({"cp_ring", (void**)&a.cp_ring});
    }
    a.bytes = carve_activations(memory_plan_bind(slots, binds));
    if (cp.on())
        cp_ring_init(&g->ring, cp, a.cp_ring, memory_plan_slot(slots, "cp_ring").bytes, (size_t)2 * B * Tk, (int)nh, (int)nkv, (int)hd, cp_comm);

    std::vector<float> cs = rope_table(gpt_rope_inv_freq(cfg), T);
    g->rope_cs = (float2*)cuda_malloc_or_fail(cs.size() * sizeof(float), "RoPE table");
    cudaCheck(cudaMemcpy(g->rope_cs, cs.data(), cs.size() * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMallocHost(&g->losses_host, BT * sizeof(float)));
    g->tokens_host.assign(BT, 0);
}

static void gpt_free(GPT* g) {
    params_free(g);
    if (g->cp.on()) cp_ring_free(&g->ring);
    cudaCheck(cudaFree(g->act.encoded));
    cudaCheck(cudaFree(g->rope_cs)); cudaCheck(cudaFreeHost(g->losses_host));
}

// Sets all parameters from fp32 host values (init or loaded); resets AdamW.
static void gpt_set_params(GPT* g, const float* host) { params_set(g, host, g->stream); }

// GPT-2/Llama-style init: N(0, 0.02) matrices, output projections of the
// residual branches scaled by 1/sqrt(2L), norms 1, biases 0, padded rows 0.
static std::vector<float> gpt_init_params(const GPTConfig& cfg, const std::vector<ParamTensor>& layout, uint64_t seed) {
    std::vector<float> p(layout_numel(layout), 0.0f);
    Rng rng;
    rng_seed(&rng, seed);
    for (const ParamTensor& t : layout) {
        float* x = p.data() + t.offset;
        if (t.name == "attn_norm" || t.name == "mlp_norm" || t.name == "final_norm" || t.name == "q_norm" || t.name == "k_norm") {
            for (size_t k = 0; k < t.numel; k++) x[k] = 1.0f;
        } else if (t.name == "bqkv") {
            // zeros
        } else {
            float std = 0.02f;
            if (t.name == "wo" || t.name == "wdown") std /= sqrtf(2.0f * cfg.n_layer);
            size_t rows_valid = t.numel;
            if (t.name == "wte" || t.name == "lm_head") rows_valid = (size_t)cfg.vocab_size * cfg.d_model;
            rng_fill_normal(x, rows_valid, std, &rng);
        }
    }
    return p;
}

// ----------------------------------------------------------------------------
// Forward. With targets, the fused classifier computes per-token losses and,
// when write_dlogits, turns the logits into dlogits * dloss in the same pass
// (the backward starts from there).

// the dropout seed of layer l's attention (branch 0) or MLP (branch 1) output
static uint64_t gpt_dropout_seed(const GPT* g, int l, int branch) {
    return g->dropout_seed + 1000003ull * (uint64_t)(2 * l + branch + 1);
}

// The last forward's RoPE and attention shapes; packed rows carry each token's position in its
// document (RoPE restarts there, attention stays inside it), context parallel each token's
// position in its row (RoPE only: the ring places the chunks).
static RopeShape gpt_rope_shape(const GPT* g) {
    const GPTConfig& c = g->cfg;
    return {g->B, g->T, c.n_head, c.n_kv_head, c.head_dim, g->packed || g->cp.on() ? g->act.positions : nullptr};
}
// --cp: the shape of one chunk call of the ring (B rows of one chunk)
static AttnShape gpt_cp_chunk_shape(const GPT* g) {
    const GPTConfig& c = g->cfg;
    return {g->B / (2 * g->cp.local), g->T, c.n_head, c.n_kv_head, c.head_dim, true};
}
static AttnShape gpt_attn_shape(const GPT* g) {
    const GPTConfig& c = g->cfg;
    return {g->B, g->T, c.n_head, c.n_kv_head, c.head_dim, true, g->packed ? g->act.positions : nullptr};
}

// QK-norm (Qwen3) and RoPE of block l's projections, into the attention's head-major layouts
// (the forward, and selective recompute's rebuild)
static void gpt_qk_rope(GPT* g, int l, const GPTLayerActs& la) {
    const GPTConfig& c = g->cfg;
    const GPTTensors<floatX>& w = g->w;
    qknorm_rope_forward(la.qp, la.kp, la.vp, la.qk_rstd, la.qkv, g->rope_cs,
                        c.qk_norm ? w.q_norm + (size_t)l * c.head_dim : nullptr, c.qk_norm ? w.k_norm + (size_t)l * c.head_dim : nullptr,
                        gpt_rope_shape(g), c.norm_eps, g->stream);
}

// Block l's forward from its input x_in (the embedding or the previous block's output) into
// its activations la. It ends with the next block's norm (or the final norm) fused into the
// MLP's residual add. A rerun inside the backward (full recompute) starts with the block's own
// norm instead (the previous block made it, from the same x_in: the same kernel, the same
// bits) and stops at the SwiGLU, the last activation the backward reads.
static void gpt_block_forward(GPT* g, int l, const GPTLayerActs& la, const floatX* x_in, bool rerun) {
    const GPTConfig& c = g->cfg;
    const int L = c.n_layer, C = c.d_model, B = g->B, T = g->T, BT = B * T, hd = c.head_dim, F = c.ffn_hidden;
    const int nh = c.n_head, nkv = c.n_kv_head, qd = nh * hd, QKV = qd + 2 * nkv * hd;
    const float eps = c.norm_eps;
    cudaStream_t st = g->stream;
    GPTActivations& a = g->act;
    const GPTTensors<floatX>& w = g->w;
    const AttnShape as = gpt_attn_shape(g);
    if (rerun) rmsnorm_forward(la.ln1, la.rstd1, x_in, w.attn_norm + (size_t)l * C, BT, C, eps, st);
    {
        NvtxRange r("attention block");
        matmul_forward(la.qkv, la.ln1, w.wqkv + (size_t)l * QKV * C, w.bqkv ? w.bqkv + (size_t)l * QKV : nullptr, BT, QKV, C, st);
        gpt_qk_rope(g, l, la);
        if (g->cp.on()) ring_attention_forward(&g->ring, la.atty, la.lse, la.qp, la.kp, la.vp, gpt_cp_chunk_shape(g), st);
        else flash_attention_forward(la.atty, la.lse, la.qp, la.kp, la.vp, as, st);
        matmul_forward(a.proj, la.atty, w.wo + (size_t)l * C * qd, nullptr, BT, C, qd, st);
        if (g->dropout_active) dropout_apply(a.proj, a.proj, (size_t)BT * C, g->dropout, gpt_dropout_seed(g, l, 0), st);
        fused_residual_rmsnorm_forward(la.resid_mid, la.ln2, la.rstd2, x_in, a.proj, w.mlp_norm + (size_t)l * C, BT, C, eps, st);
    }
    {
        NvtxRange r("mlp block");
        matmul_forward(la.gateup, la.ln2, w.wgateup + (size_t)l * 2 * F * C, nullptr, BT, 2 * F, C, st);
        swiglu_forward(la.swiglu, la.gateup, BT, F, st);
        if (rerun) return;
        matmul_forward(a.proj, la.swiglu, w.wdown + (size_t)l * C * F, nullptr, BT, C, F, st);
        if (g->dropout_active) dropout_apply(a.proj, a.proj, (size_t)BT * C, g->dropout, gpt_dropout_seed(g, l, 1), st);
        if (l + 1 < L) {
            const GPTLayerActs next = gpt_layer(g, l + 1);
            fused_residual_rmsnorm_forward(la.resid_out, next.ln1, next.rstd1, la.resid_mid, a.proj,
                                           w.attn_norm + (size_t)(l + 1) * C, BT, C, eps, st);
        } else {
            fused_residual_rmsnorm_forward(la.resid_out, a.lnf, a.rstdf, la.resid_mid, a.proj, w.final_norm, BT, C, eps, st);
        }
    }
}

// Block l's input: the embedding, or block l-1's output (kept in every recompute mode).
static const floatX* gpt_block_input(const GPT* g, int l) { return l == 0 ? g->act.encoded : gpt_layer(g, l - 1).resid_out; }

// --cp: the tokens (and targets) of B x T rows this process holds, in its local order, and each
// one's position (RoPE); B and T become the kernels' shape (llmc/dist/context_parallel.h).
static void gpt_cp_localize(GPT* g, const int** tokens, const int** targets, int* B, int* T) {
    cp_check_causal(g->cp.n, *T, "--seq-len");
    if (*B != g->cp_rows || *T != g->cp_len) {
        std::vector<int> pos;
        g->cp_index = cp_causal_tokens(g->cp, *B, *T, &pos);
        g->cp_local.assign((size_t)*B * *T, -1);
        for (size_t i = 0; i < g->cp_index.size(); i++) g->cp_local[g->cp_index[i]] = (int)i;
        cudaCheck(cudaMemcpy(g->act.positions, pos.data(), pos.size() * sizeof(int), cudaMemcpyHostToDevice));
        g->cp_rows = *B;
        g->cp_len = *T;
    }
    const size_t n = g->cp_index.size();
    g->cp_tokens.resize(n);
    for (size_t i = 0; i < n; i++) g->cp_tokens[i] = (*tokens)[g->cp_index[i]];
    *tokens = g->cp_tokens.data();
    if (*targets) {
        g->cp_targets.resize(n);
        for (size_t i = 0; i < n; i++) g->cp_targets[i] = (*targets)[g->cp_index[i]];
        *targets = g->cp_targets.data();
    }
    *B = g->cp.local * 2 * *B;
    *T = *T / (2 * g->cp.n);
}

// Row b, position t of the last forward's logits (its rows as given, whatever --cp does to them);
// null where another process of the context-parallel group holds that token.
static const floatX* gpt_logits_at(const GPT* g, int b, int t) {
    size_t i = (size_t)b * g->T + t;
    if (g->cp.on()) {
        const int local = g->cp_local[(size_t)b * g->cp_len + t];
        if (local < 0) return nullptr;
        i = (size_t)local;
    }
    return g->act.logits + i * g->cfg.padded_vocab_size;
}

// positions (packed rows, [B, T]: each token's position in its document; null: one sequence a row)
static void gpt_forward(GPT* g, const int* tokens, const int* targets, int B, int T, bool write_dlogits, float dloss,
                        const int* positions = nullptr) {
    NvtxRange range("gpt_forward");
    if (B > g->maxB || T > g->maxT) fail("gpt_forward: batch %dx%d larger than the %dx%d the model was built for", B, T, g->maxB, g->maxT);
    if (g->cp.on()) {
        if (positions) fail("gpt_forward: packed rows (--pack 1) cannot be split with --cp");
        gpt_cp_localize(g, &tokens, &targets, &B, &T);
    }
    const GPTConfig& c = g->cfg;
    const int L = c.n_layer, C = c.d_model, BT = B * T, Vp = c.padded_vocab_size;
    cudaStream_t st = g->stream;
    GPTActivations& a = g->act;
    const GPTTensors<floatX>& w = g->w;
    g->B = B;
    g->T = T;
    g->dropout_active = write_dlogits && g->dropout > 0.0f;
    std::copy(tokens, tokens + BT, g->tokens_host.begin());
    cudaCheck(cudaMemcpyAsync(a.tokens, tokens, BT * sizeof(int), cudaMemcpyHostToDevice, st));
    if (targets) cudaCheck(cudaMemcpyAsync(a.targets, targets, BT * sizeof(int), cudaMemcpyHostToDevice, st));
    g->packed = positions != nullptr;
    if (positions) cudaCheck(cudaMemcpyAsync(a.positions, positions, BT * sizeof(int), cudaMemcpyHostToDevice, st));

    params_forward_wait(g, ZERO_TAIL);   // several GPUs with ZeRO 1/2: wait for the gathered weights (llmc/dist/distributed.cuh)
    params_forward_wait(g, 0);
    encoder_forward(a.encoded, a.tokens, w.wte, BT, C, st);
    const GPTLayerActs first = gpt_layer(g, 0);
    rmsnorm_forward(first.ln1, first.rstd1, a.encoded, w.attn_norm, BT, C, c.norm_eps, st);
    for (int l = 0; l < L; l++) {
        NvtxRange layer_range("layer", l);
        params_forward_wait(g, l + 1 < L ? l + 1 : ZERO_HEAD);   // layer l ends with the next layer's norm (or the final norm)
        gpt_block_forward(g, l, gpt_layer(g, l), gpt_block_input(g, l), false);
    }
    matmul_forward(a.logits, a.lnf, w.lm_head, nullptr, BT, Vp, C, st);
    if (targets) {
        fused_classifier(a.logits, a.losses, a.targets, dloss, BT, c.vocab_size, Vp, write_dlogits, st);
        cudaCheck(cudaMemcpyAsync(g->losses_host, a.losses, BT * sizeof(float), cudaMemcpyDeviceToHost, st));
    }
}

// Sum of the last forward's per-token losses (waits for it), in double on the host:
// deterministic. An ignored target (SFT) adds 0.
static double gpt_loss_sum(GPT* g) {
    cudaCheck(cudaStreamSynchronize(g->stream));
    double s = 0;
    for (int i = 0; i < g->B * g->T; i++) s += g->losses_host[i];
    return s;
}
// Mean over every token of the last forward.
static float gpt_mean_loss(GPT* g) { return (float)(gpt_loss_sum(g) / (g->B * g->T)); }

// ----------------------------------------------------------------------------
// Backward: from the dlogits the forward left in the logits buffer, layer by
// layer in reverse, accumulating into the fp32 gradients (so that several
// micro-batches add up; the first after gpt_zero_grad overwrites the weight
// products' gradients instead). The residual-stream gradient lives in dresid.


// Selective recompute of block l: what its forward made cheaply from what the mode keeps
// (the norms from the block input and the attention residual, QK-norm + RoPE from the
// projections, SwiGLU from the gate/up projections), the same kernels on the same bits.
static void gpt_block_rebuild(GPT* g, int l, const GPTLayerActs& la, const floatX* x_in) {
    const GPTConfig& c = g->cfg;
    const int C = c.d_model, BT = g->B * g->T;
    const float eps = c.norm_eps;
    cudaStream_t st = g->stream;
    const GPTTensors<floatX>& w = g->w;
    rmsnorm_forward(la.ln1, la.rstd1, x_in, w.attn_norm + (size_t)l * C, BT, C, eps, st);
    gpt_qk_rope(g, l, la);
    rmsnorm_forward(la.ln2, la.rstd2, la.resid_mid, w.mlp_norm + (size_t)l * C, BT, C, eps, st);
    swiglu_forward(la.swiglu, la.gateup, BT, c.ffn_hidden, st);
}

static void gpt_backward(GPT* g) {
    NvtxRange range("gpt_backward");
    const GPTConfig& c = g->cfg;
    const int B = g->B, T = g->T;
    const int L = c.n_layer, C = c.d_model, BT = B * T, hd = c.head_dim, F = c.ffn_hidden, nh = c.n_head, nkv = c.n_kv_head;
    const int qd = nh * hd, QKV = qd + 2 * nkv * hd, Vp = c.padded_vocab_size;
    cudaStream_t st = g->stream;
    GPTActivations& a = g->act;
    const GPTTensors<floatX>& w = g->w;
    const GPTTensors<float>& dw = g->dw;
    const RopeShape rs = gpt_rope_shape(g);
    const AttnShape as = gpt_attn_shape(g);
    float* scratch = a.reduce_scratch;

    // the weight products overwrite their gradients in the first backward after gpt_zero_grad
    const bool acc = !g->grads_fresh;
    g->grads_fresh = false;
    params_backward_begin(g);   // several GPUs (llmc/dist/distributed.cuh); a no-op on one
    cudaCheck(cudaMemsetAsync(a.dresid, 0, (size_t)BT * C * sizeof(floatX), st));
    matmul_backward(a.dbuf, dw.lm_head, a.logits, a.lnf, w.lm_head, BT, Vp, C, false, st, acc);
    rmsnorm_backward(a.dresid, dw.final_norm, a.dbuf, gpt_layer(g, L - 1).resid_out, w.final_norm, a.rstdf, BT, C, scratch, st);
    params_grads_ready(g, ZERO_HEAD);   // several GPUs: the head's gradients can be reduced now
    for (int l = L - 1; l >= 0; l--) {
        NvtxRange layer_range("layer backward", l);
        const GPTTensors<float>& dl = g->dw_layers[l];   // this layer's gradient slices
        const GPTLayerActs la = gpt_layer(g, l);
        const floatX* x_in = gpt_block_input(g, l);
        if (g->recompute.full(l)) {
            NvtxRange r("recompute (full)");
            gpt_block_forward(g, l, la, x_in, true);
        } else if (g->recompute.on(l)) {
            NvtxRange r("recompute (selective)");
            gpt_block_rebuild(g, l, la, x_in);
        }
        {
            NvtxRange r("mlp block backward");
            // the MLP branch's gradient: the residual gradient through the same dropout mask
            const floatX* dmlp = a.dresid;
            if (g->dropout_active) { dropout_apply(a.dbuf, a.dresid, (size_t)BT * C, g->dropout, gpt_dropout_seed(g, l, 1), st); dmlp = a.dbuf; }
            matmul_backward(a.dswiglu, dl.wdown, dmlp, la.swiglu, w.wdown + (size_t)l * C * F, BT, C, F, false, st, acc);
            swiglu_backward(a.dgateup, a.dswiglu, la.gateup, BT, F, st);
            matmul_backward(a.dbuf, dl.wgateup, a.dgateup, la.ln2, w.wgateup + (size_t)l * 2 * F * C, BT, 2 * F, C, false, st, acc);
            rmsnorm_backward(a.dresid, dl.mlp_norm, a.dbuf, la.resid_mid, w.mlp_norm + (size_t)l * C, la.rstd2, BT, C, scratch, st);
        }
        {
            NvtxRange r("attention block backward");
            const floatX* dattn = a.dresid;
            if (g->dropout_active) { dropout_apply(a.dbuf, a.dresid, (size_t)BT * C, g->dropout, gpt_dropout_seed(g, l, 0), st); dattn = a.dbuf; }
            matmul_backward(a.datty, dl.wo, dattn, la.atty, w.wo + (size_t)l * C * qd, BT, C, qd, false, st, acc);
            if (g->cp.on())
                ring_attention_backward(&g->ring, a.dqp, a.dkp, a.dvp, a.datty, la.atty, la.lse, la.qp, la.kp, la.vp, a.attn_scratch,
                                        gpt_cp_chunk_shape(g), st);
            else
                flash_attention_backward(a.dqp, a.dkp, a.dvp, a.datty, la.atty, la.lse, la.qp, la.kp, la.vp, a.attn_scratch, as, st);
            qknorm_rope_backward(a.dqkv, c.qk_norm ? dl.q_norm : nullptr, c.qk_norm ? dl.k_norm : nullptr,
                                 a.dqp, a.dkp, a.dvp, la.qkv, la.qk_rstd, g->rope_cs,
                                 c.qk_norm ? w.q_norm + (size_t)l * hd : nullptr, c.qk_norm ? w.k_norm + (size_t)l * hd : nullptr,
                                 rs, a.dnw_scratch, scratch, st);
            if (c.qkv_bias) column_reduce(dl.bqkv, a.dqkv, (const floatX*)nullptr, nullptr, BT, QKV, scratch, st);
            matmul_backward(a.dbuf, dl.wqkv, a.dqkv, la.ln1, w.wqkv + (size_t)l * QKV * C, BT, QKV, C, false, st, acc);
            rmsnorm_backward(a.dresid, dl.attn_norm, a.dbuf, x_in, w.attn_norm + (size_t)l * C, la.rstd1, BT, C, scratch, st);
        }
        params_grads_ready(g, l);   // several GPUs: layer l's gradients can be reduced while the backward goes on
    }
    encoder_make_buckets(&g->buckets, g->tokens_host.data(), BT, c.padded_vocab_size);
    encoder_backward(dw.wte, a.dresid, g->buckets, a.enc_ints, BT, C, st);
    params_grads_ready(g, ZERO_TAIL);
}

// The gradients a weight product writes whole: its product overwrites them in the first backward
// after gpt_zero_grad (a tied head's writes the input embedding's, which the embedding backward
// then adds to).
static bool gpt_grad_from_product(const std::string& name, bool tied) {
    return name == "wqkv" || name == "wo" || name == "wgateup" || name == "wdown" || name == "lm_head" || (tied && name == "wte");
}
// One GPU: only the gradients no product overwrites are zeroed (the norms, biases, the untied
// input embedding), not a pass over all of them each step; the next backward overwrites the rest.
// Several GPUs zero everything (their gradient buckets and shards: params_zero_grad).
static void gpt_zero_grad(GPT* g) {
    g->grads_fresh = !g->comm;
    if (g->comm) {
        params_zero_grad(g, g->stream);
        return;
    }
    for (const ParamTensor& t : g->grad_layout)
        if (!gpt_grad_from_product(t.name, g->cfg.tie_embeddings))
            cudaCheck(cudaMemsetAsync(g->grads + t.offset, 0, t.numel * sizeof(float), g->stream));
}

// ----------------------------------------------------------------------------
// Update: global grad norm (deterministic), clip, AdamW per tensor with weight
// decay only on the matrices marked in the layout (llmc/model/params.cuh). Returns
// the norm before clipping; a non-finite norm skips the step.

static float gpt_update(GPT* g, const OptimConfig& o, float lr) { return params_update(g, o, lr, g->stream); }

// ----------------------------------------------------------------------------
// Sampling: the model runs its forward on a single row of T tokens (causal, so
// positions after the current one do not matter) and the next token is drawn
// on the host with temperature and top-k.

// Row b, position t of the last forward's logits, the first V of them, into buf (host). With --cp
// over several processes the rank that holds the position gives it, the others zeros, and the
// group sums (every rank of the group calls this).
static void gpt_logits_row(GPT* g, int b, int t, int V, std::vector<float>& buf) {
    const floatX* row = gpt_logits_at(g, b, t);
    buf.resize(V);
    if (g->cp.on() && g->cp.local == 1) {
        float* sum = g->act.cp_logits_row;
        cudaCheck(cudaMemsetAsync(sum, 0, V * sizeof(float), g->stream));
        if (row) copy_floatX_to_f32(sum, row, V, g->stream);
        cp_group_sum(&g->ring, sum, V, g->stream);
        cudaCheck(cudaMemcpyAsync(buf.data(), sum, V * sizeof(float), cudaMemcpyDeviceToHost, g->stream));
        cudaCheck(cudaStreamSynchronize(g->stream));
        return;
    }
    if (!row) fail("gpt_logits_row: position %d of row %d is on another rank of the --cp group", t, b);
    std::vector<floatX> raw(V);
    cudaCheck(cudaStreamSynchronize(g->stream));
    cudaCheck(cudaMemcpy(raw.data(), row, V * sizeof(floatX), cudaMemcpyDeviceToHost));
    for (int i = 0; i < V; i++) buf[i] = (float)raw[i];
}

// The next token from the logits in buf (host, fp32; overwritten): greedy (temperature 0), or
// drawn with temperature and top-k.
static int sample_next(int V, float temperature, int top_k, Rng* rng, std::vector<float>& buf) {
    if (temperature <= 0) return (int)(std::max_element(buf.begin(), buf.end()) - buf.begin());
    float cutoff = -INFINITY;
    if (top_k > 0 && top_k < V) {
        std::vector<float> sorted(buf);
        std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<float>());
        cutoff = sorted[top_k - 1];
    }
    const float mx = *std::max_element(buf.begin(), buf.end());
    double sum = 0;
    for (int i = 0; i < V; i++) {
        buf[i] = buf[i] >= cutoff ? expf((buf[i] - mx) / temperature) : 0.0f;
        sum += buf[i];
    }
    double u = rng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += buf[i];
        if (u < acc) return i;
    }
    return V - 1;
}

// Returns the ids sampled after the prompt (end-of-text, a Hugging Face model's bos, or a chat
// prompt of scripts/prepare_sft.py --prompts): at most n_tokens, stopping after `stop` (-1: never).
static std::vector<int> gpt_sample(GPT* g, const std::vector<int>& prompt, int n_tokens, float temperature, int top_k, int stop, Rng* rng) {
    const int T = g->maxT, P = (int)prompt.size();
    n_tokens = std::min(n_tokens, T - P);
    std::vector<int> seq(T, prompt.back());
    std::copy(prompt.begin(), prompt.end(), seq.begin());
    std::vector<float> buf;
    int t = P;
    while (t < P + n_tokens) {
        gpt_forward(g, seq.data(), nullptr, 1, T, false, 0.0f);
        gpt_logits_row(g, 0, t - 1, g->cfg.vocab_size, buf);
        seq[t] = sample_next(g->cfg.vocab_size, temperature, top_k, rng, buf);
        if (seq[t++] == stop) break;
    }
    return std::vector<int>(seq.begin() + P, seq.begin() + t);
}

// ----------------------------------------------------------------------------
// Training configuration and main loop.

// vocabulary of the embedded default dataset's tokenizer (data/shakespeare)
#define DEFAULT_DATASET_VOCAB 1024

// checkpoint, resume and fault flags (ckpt_dir, resume, max_bad_steps, ...): CkptFlags, llmc/train/run_control.h
struct TrainConfig : CkptFlags {
    std::string preset = "shakespeare";
    std::string train_data = "data/shakespeare/train_*.bin";
    std::string val_data = "data/shakespeare/val_*.bin";
    std::string tokenizer = "data/shakespeare/tokenizer.bin";
    std::string text = "data/tinyshakespeare.txt";   // source of the default dataset
    std::string log_dir = "log/gpt";
    int random_data = 0;
    int batch_size = 8;
    int seq_len = 0;
    long long total_batch_tokens = 0;
    int steps = 1200;
    // kind, warmup, min_lr_frac, wsd_decay_frac: --schedule, --warmup, ... (llmc/train/schedule.h); steps and lr come from --steps, --lr
    Schedule sched = {"cosine", 100, 0, 0.0f, 0.0f, 0.2f};
    int val_every = 100, val_batches = 0;
    int sample_every = 400, sample_tokens = 200, top_k = 0;
    float temperature = 1.0f;
    float dropout = 0.0f;  // the shakespeare preset's is 0.1 (main)
    int seed = 1337;
    int shuffle = 1;
    int pack = 0;          // SFT shards: conversations per row (0: one, padded)
    float max_minutes = 0;
};

// ----------------------------------------------------------------------------
// Checkpoints (format: llmc/train/checkpoint.h; saving and loading the parameter
// buffers: llmc/train/params_checkpoint.cuh; flags, stop signals, bad steps and
// train.log on resume: llmc/train/run_control.h; the loop around them:
// llmc/train/run.h). model.bin holds the fp32 master weights. state.bin
// holds the AdamW moments and step count, the schedule position (steps done),
// the train loader's position and the sampling RNG. Everything else a run
// depends on is a flag or is reset anyway (the validation loader), so a run
// resumed from step k with the same flags prints the same losses as one that
// never stopped.

#ifndef TRAIN_GPT_NO_MAIN
int main(int argc, char** argv) {
    // progress lines reach a redirected log (`> run.log`, a pipe) as they are printed, not in 4 KB blocks
    setvbuf(stdout, NULL, _IOLBF, 0);
    TrainConfig tc;
    GPTConfig mc;
    OptimConfig oc;
    HFFlags hf;
    DistFlags df;   // several GPUs (llmc/dist/distributed.cuh)
    std::string eval_tokens;
    std::string chat_prompts;   // --chat-prompts
    // the preset fills the model config first so that any flag given overrides it
    tc.preset = prescan_flag(argc, argv, "--preset", tc.preset);
    if (!gpt_preset(tc.preset, &mc)) fail("flag --preset: unknown preset '%s' (expected one of: %s)", tc.preset.c_str(), GPT_PRESET_NAMES);
    // dropout: tuned for the small shakespeare model trained from scratch (scripts/sweep_shakespeare.sh
    // round 3); the other presets and imported models train without it, as Llama and Qwen do
    if (tc.preset == "shakespeare" && prescan_flag(argc, argv, "--init-hf", "").empty()) tc.dropout = 0.1f;

    ArgParser ap;
    ap.program = "train_gpt";
    ap.usage = "./train_gpt [--preset NAME] [flags]   (no flags: train the shakespeare preset on data/tinyshakespeare.txt)";
    ap.section("run");
    ap.add_string("--preset", &tc.preset, (std::string("model preset: ") + GPT_PRESET_NAMES).c_str());
    ap.add_string("--train-data", &tc.train_data, "training data: llm.c shards (glob of .bin), or \"megatron:[W1] P1 [W2 P2 ...]\" (Megatron .idx/.bin prefixes, blended)");
    ap.add_string("--val-data", &tc.val_data, "validation data, as --train-data (\"\" for none)");
    ap.add_string("--tokenizer", &tc.tokenizer, "tokenizer file (for decoding samples; \"\" for none)");
    ap.add_string("--text", &tc.text, "text the default dataset is built from when data/shakespeare is missing");
    ap.add_bool("--random-data", &tc.random_data, "train on random tokens (benchmarks; no files read)");
    ap.add_string("--log-dir", &tc.log_dir, "where train.log and loss.svg go (\"\" for none)");
    ap.add_int("--seed", &tc.seed, "seed for init, shuffling and sampling");
    ap.add_bool("--shuffle", &tc.shuffle, "shuffle training samples each epoch");
    ap.section("batch and schedule");
    ap.add_int("--batch-size", &tc.batch_size, "micro-batch B (sequences per forward)");
    ap.add_int("--seq-len", &tc.seq_len, "sequence length T (0: min(max-seq-len, 2048))");
    ap.add_int64("--total-batch-tokens", &tc.total_batch_tokens, "tokens per optimizer step (0: B*T); gradient accumulation");
    ap.add_int("--pack", &tc.pack, "SFT shards (scripts/prepare_sft.py): 0 one conversation a row, padded after it; 1 several a row, "
               "each attending to itself with its own positions (the loss counts only the assistants' tokens, averaged over the step's)");
    run_add_schedule_flags(ap, &tc.steps, &tc.max_minutes, &oc.lr, &tc.sched);
    optim_add_flags(ap, &oc);
    ap.add_float("--dropout", &tc.dropout, "dropout on the attention and MLP outputs while training (0: off; "
                 "default 0.1 for the shakespeare preset from scratch, 0 for the others and --init-hf)");
    ap.section("evaluation and sampling");
    ap.add_int("--val-every", &tc.val_every, "validation loss every N steps (0: never)");
    ap.add_int("--val-batches", &tc.val_batches, "batches of B sequences per validation (0: the whole validation set)");
    ap.add_int("--sample-every", &tc.sample_every, "print a sample every N steps (0: only at the end; -1 never)");
    ap.add_int("--sample-tokens", &tc.sample_tokens, "tokens per sample");
    ap.add_float("--temperature", &tc.temperature, "sampling temperature (0: greedy)");
    ap.add_int("--top-k", &tc.top_k, "sample from the k most likely tokens (0: all)");
    ap.add_string("--chat-prompts", &chat_prompts, "prompts.txt of scripts/prepare_sft.py --prompts: at each sample, the model answers them "
                  "(greedy, to the end-of-turn token), the first 4 printed, and the exact matches counted where answers are given");
    ap.add_string("--eval-tokens", &eval_tokens, "before training, print the mean loss on the tokens/targets [B,T] of a .mgt file "
                  "(llmc/formats/tensorfile.h; e.g. test/data/hf/llama_tiny.mgt) and its `loss` if it has one");
    ckpt_add_flags(ap, &tc);
    hf_add_flags(ap, &hf);
    dist_add_flags(ap, &df);
    gpt_config_add_flags(ap, &mc);
    RunFlags rf;   // --attn-backward (and MEGA_FLASH_SM90), --plan
    run_add_flags(ap, &rf);
    if (!run_parse_flags(ap, argc, argv, &rf)) return 0;
    const bool vocab_given = !prescan_flag(argc, argv, "--vocab-size", "").empty();

    // ---- validate the run's flags (all on the CPU, before touching the GPU)
    if (tc.batch_size <= 0) fail("flag --batch-size: must be > 0, got %d", tc.batch_size);
    if (tc.seq_len < 0) fail("flag --seq-len: must be >= 0 (0: min(max-seq-len, 2048)), got %d", tc.seq_len);
    if (tc.total_batch_tokens < 0) fail("flag --total-batch-tokens: must be >= 0 (0: batch-size*seq-len), got %lld", tc.total_batch_tokens);
    if (tc.pack != 0 && tc.pack != 1) fail("flag --pack: expected 0 (one conversation a row) or 1 (several), got %d", tc.pack);
    run_validate_schedule_flags(tc.steps, tc.max_minutes, tc.sched);
    optim_validate(oc);
    if (tc.val_every < 0) fail("flag --val-every: must be >= 0 (0: never), got %d", tc.val_every);
    if (tc.val_batches < 0) fail("flag --val-batches: must be >= 0");
    if (tc.sample_every < -1) fail("flag --sample-every: must be >= -1 (0: only at the end; -1: never), got %d", tc.sample_every);
    if (tc.sample_tokens <= 0) fail("flag --sample-tokens: must be > 0 (--sample-every -1: no samples), got %d", tc.sample_tokens);
    if (tc.top_k < 0) fail("flag --top-k: must be >= 0");
    if (!(tc.temperature >= 0 && std::isfinite(tc.temperature))) fail("flag --temperature: must be a finite number >= 0");
    if (!(tc.dropout >= 0 && tc.dropout < 1)) fail("flag --dropout: must be in [0, 1), got %g", tc.dropout);
    ckpt_validate_flags(tc, tc.log_dir);
    const int hf_dtype = hf_validate_flags(hf);
    if (!hf.export_hf.empty()) make_parent_dirs(hf_join(hf.export_hf, "x"));   // fail now, not after training

    // ---- several GPUs (llmc/dist/distributed.cuh): this process's rank and the world size from
    // the launcher (nothing on one GPU). Every rank trains on its own samples, validates and
    // samples alike; rank 0 writes the logs, checkpoints and exports.
    Dist dist = dist_launch(df);
    if (dist.rank != 0) tc.log_dir = "";
    // --cp: groups of consecutive ranks share their samples' tokens (llmc/dist/context_parallel.h);
    // the data is split over the groups (dp_rank of dp_world)
    cp_check_world(df.cp, dist.world);
    const CpGroup cp = cp_group(df.cp, dist.rank, dist.world);
    const int dp_rank = cp_dp_rank(cp, dist.rank, dist.world), dp_world = cp_dp_world(cp, dist.world);
    if (cp.on() && tc.pack) fail("flag --cp %d: packed SFT rows (--pack 1) cannot be split over ranks yet; use --pack 0 or --cp 1", cp.n);
    Run run = run_init(tc, &dist, tc.sched, tc.steps, oc.lr, tc.max_minutes);   // the loop, checkpoints and teardown (llmc/train/run.h)
    run_set_profile(&run, rf, tc.log_dir);   // --profile-step

    // ---- --init-hf: the model config is config.json's (llmc/formats/hf.h); without --train-data the run
    // only converts (--steps 0) and reads no data
    HFInfo hf_info;
    const bool hf_in = !hf.init_hf.empty();
    if (hf_in) {
        if (!tc.init_from.empty()) fail("flag --init-from: cannot be combined with --init-hf (pick one source of weights)");
        const GPTConfig hfc = hf_load_config(hf.init_hf, &hf_info);
        hf_apply_config_flags(ap, argc, argv, &mc, hfc, hf_info.config_path);
        if (tc.train_data == TrainConfig().train_data && !tc.random_data) {
            if (tc.steps > 0)
                fail("flag --train-data: --init-hf trains on token shards made with the model's own tokenizer (scripts/tokenize_hf.py); "
                     "without --train-data only --steps 0 (convert) runs");
            tc.random_data = 1;   // nothing to read: the loop does not train
            printf("--init-hf without --train-data: converting only (--steps 0), no data is read\n");
        }
    }

    // ---- data: build the embedded default dataset on first use, load the tokenizer
    Tokenizer tok;
    bool have_tok = false;
    const bool default_data = tc.train_data == TrainConfig().train_data;
    if (!tc.random_data) {
        if (default_data && !file_exists(tc.tokenizer)) {
            if (dist.world > 1)
                fail("rank %d: %s does not exist: build the default dataset once with one process (./train_gpt --steps 0) before a multi-GPU run",
                     dist.rank, tc.tokenizer.c_str());
            printf("building the default dataset from %s into data/shakespeare (once)\n", tc.text.c_str());
            build_text_dataset(tc.text, "data/shakespeare", DEFAULT_DATASET_VOCAB, 0.1);
        }
        if (!tc.tokenizer.empty() && file_exists(tc.tokenizer) && !(hf_in && tc.tokenizer == TrainConfig().tokenizer)) {
            tokenizer_load(&tok, tc.tokenizer);
            have_tok = true;
            if (!vocab_given && !hf_in) mc.vocab_size = tok.vocab_size;
            else if (mc.vocab_size < tok.vocab_size)
                fail("flag --vocab-size: %d is smaller than the tokenizer's %d (%s)", mc.vocab_size, tok.vocab_size, tc.tokenizer.c_str());
        } else if (!tc.tokenizer.empty() && tc.tokenizer != TrainConfig().tokenizer) {
            fail("flag --tokenizer: %s does not exist", tc.tokenizer.c_str());
        }
    }
    // a Hugging Face model's own tokenizer.json decodes the samples (llmc/formats/hf_tokenizer.h)
    HFTokenizer hf_tok;
    bool have_hf_tok = false;
    int start_token = have_tok ? tok.eot_token : 0;
    if (hf_in && !have_tok && file_exists(hf_join(hf.init_hf, "tokenizer.json"))) {
        hf_tokenizer_load(&hf_tok, hf_join(hf.init_hf, "tokenizer.json"));
        have_hf_tok = true;
        for (int id : {hf_info.bos_token_id, hf_info.eos_token_id})
            if (id >= 0 && id < mc.vocab_size) { start_token = id; break; }
    }
    gpt_config_finalize(&mc);
    const int T = tc.seq_len > 0 ? tc.seq_len : std::min(mc.max_seq_len, 2048);
    if (T > mc.max_seq_len) fail("flag --seq-len: %d exceeds --max-seq-len %d", T, mc.max_seq_len);
    if (hf_in) hf_check_seq_len(hf_info, T);   // Mistral's sliding window must cover the sequence
    const ChatPrompts chat = chat_prompts.empty() ? ChatPrompts() : chat_prompts_read(chat_prompts, mc.vocab_size, T);
    cp_check_causal(cp.n, T, "--seq-len");
    const int B = tc.batch_size;
    const long long micro_tokens = (long long)B * T;
    // several GPUs: --total-batch-tokens is the global batch, (world / cp) x B x T x grad_accum
    const long long world_tokens = micro_tokens * dp_world;
    if (tc.total_batch_tokens == 0) tc.total_batch_tokens = world_tokens;
    if (tc.total_batch_tokens % world_tokens != 0) {
        if (dp_world == 1)
            fail("flag --total-batch-tokens: %lld is not a multiple of batch-size*seq-len = %lld", tc.total_batch_tokens, micro_tokens);
        fail("flag --total-batch-tokens: %lld is not a multiple of batch-size*seq-len*(processes/cp) = %lld*%d", tc.total_batch_tokens, micro_tokens, dp_world);
    }
    const int grad_accum = (int)(tc.total_batch_tokens / world_tokens);
    // the memory plan (llmc/train/memory_plan.h): --plan prints it and exits; a run that will not fit stops here
    const Recompute recompute = recompute_from_flags(rf.recompute, mc.n_layer);
    const int plan_world = plan_validate_flags(rf.plan, dist.world);
    if (rf.plan.plan) cp_check_world(df.cp, plan_world);
    const MemoryPlan plan = gpt_memory_plan(mc, B, T, rf.plan.plan ? plan_world : dist.world, df.zero, df.bucket_mb, sizeof(floatX),
                                            rf.plan.gpu_gib, recompute, rf.plan.plan ? cp_group(df.cp, 0, plan_world) : cp);
    memory_plan_apply(plan, rf.plan.plan);

    TokenData train_loader, val_loader;
    bool have_val = false;
    std::vector<int> rand_tokens, rand_targets;
    if (tc.random_data) {
        Rng r;
        rng_seed(&r, tc.seed + 1);
        rand_tokens.resize(micro_tokens);
        rand_targets.resize(micro_tokens);
        for (auto& x : rand_tokens) x = rng_u32(&r) % mc.vocab_size;
        for (auto& x : rand_targets) x = rng_u32(&r) % mc.vocab_size;
    } else {
        token_data_init(&train_loader, tc.train_data, B, T, dp_rank, dp_world, tc.shuffle, tc.seed, mc.vocab_size, tc.pack);   // this rank's samples (its CP group's)
        if (!tc.val_data.empty() && tc.val_every > 0) {
            // one sample at a time, gathered into batches of up to B rows, so that every
            // validation sample counts (a B-row loader would drop the split's tail)
            token_data_init(&val_loader, tc.val_data, 1, T, 0, 1, 0, 0, mc.vocab_size, tc.pack);
            have_val = true;
        }
    }
    DatasetMeta meta;
    // meta.txt beside the validation shards (written by build_data) gives bytes per token
    const std::string val_dir = tc.val_data.substr(0, tc.val_data.find_last_of('/') == std::string::npos ? 0 : tc.val_data.find_last_of('/'));
    const bool have_meta = have_val && !val_loader.megatron && !val_dir.empty() && read_dataset_meta(val_dir, &meta) && meta.val_tokens > 0;

    // ---- the checkpoint to resume from, or the weights to start from: every
    // header checked against this run's model and data before the GPU is touched
    const CkptStart start = ckpt_start_or_fail(tc, gpt_ckpt_info(mc));
    const std::string &resume_dir = start.resume_dir, &init_path = start.init_path;
    const CkptModelHeader& ckpt_model = start.model;
    const CkptStateHeader& ckpt_state = start.state;
    if (!resume_dir.empty()) {
        const CkptState& s = ckpt_state.st;
        const char* sp = ckpt_state.path.c_str();
        if (s.seq_len != T) fail("%s: seq_len is %d, this run has --seq-len %d (the data position counts samples of T tokens)", sp, s.seq_len, T);
        if (s.rngs.size() != 1) fail("%s: n_rng is %zu, a train_gpt state has 1 (the sampling RNG)", sp, s.rngs.size());
        if (!tc.random_data && s.has_loader && !train_loader.megatron && s.loader_shard >= (int64_t)train_loader.dl.shards.size())
            fail("%s: loader shard is %lld, --train-data %s has %zu shards (different data files?)", sp, (long long)s.loader_shard,
                 tc.train_data.c_str(), train_loader.dl.shards.size());
        if (!tc.random_data && !s.has_loader) printf("note: %s has no data-loader position (a --random-data run): the data starts from the beginning\n", sp);
        if (s.total_batch_tokens != tc.total_batch_tokens)
            printf("note: %s was trained with %lld tokens per step, this run uses %lld: not a bit-identical continuation\n", sp,
                   (long long)s.total_batch_tokens, tc.total_batch_tokens);
        ckpt_note_schedule(ckpt_state, tc.steps);
    }

    // ---- --init-hf weights and --eval-tokens, read and checked on the host before the GPU is touched
    std::vector<float> hf_params;
    if (hf_in && resume_dir.empty()) hf_params = hf_load_weights(hf.init_hf, mc, gpt_param_layout(mc), &hf_info);
    else if (hf_in) printf("note: --init-hf %s: only its config is used: resuming from %s\n", hf.init_hf.c_str(), resume_dir.c_str());
    TensorFile eval_tf;
    int eval_B = 0, eval_T = 0;
    if (!eval_tokens.empty()) {
        eval_tf = tensorfile_read(eval_tokens);
        const NamedTensor& xt = eval_tf.get("tokens");
        const NamedTensor& yt = eval_tf.get("targets");
        if (xt.dtype != 1 || yt.dtype != 1 || xt.shape.size() != 2 || yt.shape != xt.shape)
            fail("%s: expected int32 tokens and targets of one shape [B,T]", eval_tokens.c_str());
        eval_B = xt.shape[0];
        eval_T = xt.shape[1];
        if (eval_B < 1 || eval_B > B || eval_T < 1 || eval_T > T)
            fail("%s: tokens are [%d, %d]: expected at most --batch-size %d x --seq-len %d", eval_tokens.c_str(), eval_B, eval_T, B, T);
        if (cp.on() && eval_T % (2 * cp.n) != 0)
            fail("%s: tokens are [%d, %d]: with --cp %d the length must be a multiple of %d", eval_tokens.c_str(), eval_B, eval_T, cp.n, 2 * cp.n);
        for (const std::vector<int32_t>* v : {&xt.i, &yt.i})
            for (int32_t id : *v)
                if (id < 0 || id >= mc.vocab_size) fail("%s: token id %d is outside the vocabulary [0, %d)", eval_tokens.c_str(), id, mc.vocab_size);
    }

    // ---- --export-hf: the fp32 weights as a Hugging Face model directory (after training, or below)
    auto export_hf = [&](const std::vector<float>& w) {
        const double t0 = wall_seconds();
        const int eos = hf_in ? hf_info.eos_token_id : have_tok ? tok.eot_token : -1;
        const int nfiles = hf_export(hf.export_hf, mc, w.data(), hf_dtype, hf_in ? hf_info.bos_token_id : -1, eos, hf_shard_bytes(hf),
                                   hf_in ? &hf_info : nullptr);
        if (hf_in) hf_copy_side_files(hf.init_hf, hf.export_hf);
        printf("exported the weights to %s as a Hugging Face model (%s, %s, %.2fM params, %d safetensors file%s, %.1f s)\n",
               hf.export_hf.c_str(), hf_export_architecture(mc, hf_in ? &hf_info : nullptr), hf.hf_dtype.c_str(), layout_numel(gpt_param_layout(mc)) / 1e6, nfiles,
               nfiles == 1 ? "" : "s", wall_seconds() - t0);
    };
    // --init-hf DIR --steps 0 --export-hf OUT is a conversion: host work, no GPU needed. The weights
    // go out as the GPU path would write them (its fp32 master copy is these floats); no validation
    // or samples are run.
    if (hf_in && resume_dir.empty() && init_path.empty() && tc.steps == 0 && !hf.export_hf.empty() && eval_tokens.empty() &&
        dist.world == 1) {
        printf("--steps 0 with --init-hf and --export-hf: converting on the host (no GPU, no validation or samples)\n");
        export_hf(hf_params);
        return 0;
    }

    // ---- GPU
    GPT model;
    const cudaDeviceProp prop = run_gpu_start(&run, &model.stream, start);
    const GpuPeaks peaks = gpu_peaks(prop.name);   // MFU's ceiling
    dist_attach(&dist, &model, gpt_param_layout(mc), gpt_param_stages(gpt_param_layout(mc)), mc.n_layer, model.stream);   // before the build
    gpt_build(&model, mc, B, T, recompute, cp, dist_cp_comm(&dist, cp.n));
    model.dropout = tc.dropout;
    dist_memory_report(&dist, &model, model.act.bytes);   // several GPUs: one line per rank (before the weights are made); then only rank 0 prints
    if (!resume_dir.empty()) {
        params_load_weights(&model, ckpt_model, model.stream);
        params_load_state(&model, ckpt_state, model.stream);
    } else if (!init_path.empty()) {
        params_load_weights(&model, ckpt_model, model.stream);
    } else if (hf_in) {
        gpt_set_params(&model, hf_params.data());
        std::vector<float>().swap(hf_params);
    } else {
        std::vector<float> init = gpt_init_params(mc, model.layout, tc.seed);
        gpt_set_params(&model, init.data());
    }
    const double flops_per_token = gpt_flops_per_token(mc, model.num_params, T);
    printf("mega.c train_gpt | %s | %s (%d SMs) | preset %s\n", PRECISION_NAME, prop.name, prop.multiProcessorCount, tc.preset.c_str());
    printf("model: vocab %d (padded %d) | layers %d | d_model %d | heads %d (kv %d, head_dim %d) | ffn %d | params %.2fM | tied %d qk_norm %d qkv_bias %d\n",
           mc.vocab_size, mc.padded_vocab_size, mc.n_layer, mc.d_model, mc.n_head, mc.n_kv_head, mc.head_dim, mc.ffn_hidden,
           model.num_params / 1e6, mc.tie_embeddings, mc.qk_norm, mc.qkv_bias);
    printf("batch: B %d x T %d x accum %d = %lld tokens/step | steps %d | lr %g %s warmup %d | data %s\n", B, T, grad_accum,
           tc.total_batch_tokens, tc.steps, oc.lr, tc.sched.kind.c_str(), tc.sched.warmup, tc.random_data ? "random tokens" : tc.train_data.c_str());
    const MemoryPlan plan_none = gpt_memory_plan(mc, B, T, dist.world, df.zero, df.bucket_mb, sizeof(floatX), rf.plan.gpu_gib, Recompute(), cp);
    printf("memory: weights %.2f GiB (bf16 %.2f + fp32 master %.2f) | grads %.2f GiB | AdamW state %.2f GiB | activations %.2f GiB %s\n",
           gib(model.num_params * (sizeof(floatX) + 4)), gib(model.num_params * sizeof(floatX)), gib(model.num_params * 4),
           gib(model.num_params * 4), gib(model.num_params * 8), gib(model.act.bytes), memory_plan_recompute_note(plan, plan_none).c_str());
    flash_print_config();
    if (dist.world > 1 && !cp.on())
        printf("data parallel: %d GPUs x B %d x T %d x accum %d = %lld tokens per step, each rank on its own samples; dropout seeds per rank\n",
               dist.world, B, T, grad_accum, tc.total_batch_tokens);
    if (cp.on())
        printf("context parallel: groups of %d ranks%s, each rank 2 chunks of %d tokens of every row (ring attention) | %d group%s x B %d x T %d "
               "x accum %d = %lld tokens per step\n", cp.n, dist.world == 1 ? " simulated on this GPU" : "", T / (2 * cp.n), dp_world,
               dp_world == 1 ? "" : "s", B, T, grad_accum, tc.total_batch_tokens);

    run_open_log(&run, tc.log_dir, start);
    Rng sample_rng;
    rng_seed(&sample_rng, tc.seed + 2);

    // ---- where the run starts: a resumed run continues the step count, the
    // data stream and the sampling RNG of the checkpoint
    if (!resume_dir.empty()) {
        const CkptState& s = ckpt_state.st;
        if (!tc.random_data && s.has_loader) {
            DataLoaderPosition p;
            p.epoch = s.loader_epoch; p.shard = s.loader_shard; p.sample = s.loader_sample; p.rng_state = s.loader_rng;
            token_data_set_position(&train_loader, p);
        }
        sample_rng.state = s.rngs[0];
        run_resume(&run, start);
        printf("resumed from %s: step %d, AdamW step %d, data epoch %lld shard %lld sample %lld\n", resume_dir.c_str(), run.start_step,
               model.adam_step, (long long)s.loader_epoch, (long long)s.loader_shard, (long long)s.loader_sample);
    } else if (!init_path.empty()) {
        printf("initialized the weights from %s (step, AdamW and data start fresh)\n", init_path.c_str());
    } else if (hf_in) {
        printf("initialized from the Hugging Face model %s (%s, %s weights)%s\n", hf.init_hf.c_str(), hf_info.model_type.c_str(),
               hf_info.dtype.empty() ? "?" : hf_info.dtype.c_str(), have_hf_tok ? "; samples decode with its tokenizer.json" : "");
    }
    if (!eval_tokens.empty()) {
        gpt_forward(&model, eval_tf.i32("tokens").data(), eval_tf.i32("targets").data(), eval_B, eval_T, false, 0.0f);
        const float el = cp.on() ? (float)dist_mean(&dist, gpt_mean_loss(&model), "eval") : gpt_mean_loss(&model);
        if (eval_tf.has("loss") && eval_tf.f32("loss").size() == 1) {
            const float ref = eval_tf.f32("loss")[0];
            printf("eval: loss %.6f on %s (%d x %d tokens) | its loss %.6f | rel diff %.3e\n", el, eval_tokens.c_str(), eval_B, eval_T, ref,
                   fabs((double)el - ref) / fabs((double)ref));
        } else {
            printf("eval: loss %.6f on %s (%d x %d tokens)\n", el, eval_tokens.c_str(), eval_B, eval_T);
        }
    }
    run_ckpt_plan(&run, start, &model);
    const float bytes_per_token = have_meta ? (float)meta.val_bytes / (float)meta.val_tokens : 0.0f;

    std::vector<int> val_x((size_t)B * T), val_y((size_t)B * T);
    std::vector<std::vector<int>> step_x(grad_accum), step_y(grad_accum), step_p(grad_accum);   // SFT: the step's micro-batches
    std::vector<int> val_p((size_t)B * T);
    const bool packed = tc.pack == 1;   // SFT rows of several conversations: their positions go to RoPE and attention
    auto run_validation = [&](int step) {
        token_data_reset(&val_loader);
        const long long avail = token_data_num_batches(&val_loader);
        const long long n = tc.val_batches > 0 ? std::min<long long>((long long)tc.val_batches * B, avail) : avail;
        double s = 0;
        long long counted = 0;   // SFT: the targets the loss counts
        for (long long done = 0; done < n;) {
            const int rows = (int)std::min<long long>(B, n - done);
            for (int r = 0; r < rows; r++) {
                token_data_next(&val_loader);
                std::copy(val_loader.inputs, val_loader.inputs + T, val_x.begin() + (size_t)r * T);
                std::copy(val_loader.targets, val_loader.targets + T, val_y.begin() + (size_t)r * T);
                if (val_loader.sft && packed) std::copy(val_loader.positions, val_loader.positions + T, val_p.begin() + (size_t)r * T);
            }
            gpt_forward(&model, val_x.data(), val_y.data(), rows, T, false, 0.0f, val_loader.sft && packed ? val_p.data() : nullptr);
            if (val_loader.sft) {
                s += gpt_loss_sum(&model);
                counted += std::count_if(val_y.begin(), val_y.begin() + (size_t)rows * T, [](int y) { return y >= 0; });
            } else {
                s += (double)gpt_mean_loss(&model) * rows;
            }
            done += rows;
        }
        float vl = (float)(s / std::max(1LL, val_loader.sft ? counted : n));
        // each rank of a CP group has its tokens' share: of the mean (equal shares), of the sum over the counted SFT targets
        if (cp.on()) vl = (float)dist_mean(&dist, vl, "validation") * (val_loader.sft && dist.world > 1 ? cp.n : 1);
        if (bytes_per_token > 0) printf("val loss %.4f nats/token = %.4f nats/byte (step %d, %lld sequences)\n", vl, vl / bytes_per_token, step, n);
        else printf("val loss %.4f (step %d, %lld sequences)\n", vl, step, n);
        if (run.logf) { fprintf(run.logf, "step %d val_loss %.6f\n", step, vl); fflush(run.logf); }
        run.curve.val.push_back({step, vl});
        return vl;
    };
    auto decode = [&](const std::vector<int>& ids) {   // without a tokenizer: the ids
        if (have_tok) return tokenizer_decode(&tok, ids.data(), ids.size());
        if (have_hf_tok) return hf_tokenizer_decode(&hf_tok, ids.data(), ids.size());
        std::string s;
        for (int id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
        return s;
    };
    auto run_sample = [&](int step) {
        if (have_tok || have_hf_tok) {
            const std::vector<int> ids = gpt_sample(&model, {start_token}, tc.sample_tokens, tc.temperature, tc.top_k, -1, &sample_rng);
            printf("---- sample at step %d ----\n%s\n---------------------------\n", step, decode(ids).c_str());
        }
        // --chat-prompts: greedy answers (no RNG drawn: the samples above stay as they were)
        int with = 0, exact = 0;
        for (size_t k = 0; k < chat.prompts.size(); k++) {
            const int n = std::max(tc.sample_tokens, (int)chat.answers[k].size());
            const std::vector<int> out = gpt_sample(&model, chat.prompts[k], n, 0.0f, 0, chat.eot, &sample_rng);
            if (!chat.answers[k].empty()) { with++; exact += out == chat.answers[k]; }
            if (k < 4) {
                const std::vector<int> prompt_tail(chat.prompts[k].end() - std::min<size_t>(chat.prompts[k].size(), 24), chat.prompts[k].end());
                printf("---- chat %zu at step %d: ...%s\n%s\n", k, step, decode(prompt_tail).c_str(), decode(out).c_str());
            }
        }
        if (with > 0) {
            printf("chat eval at step %d: %d of %d answers exact (%.1f%%, greedy)\n", step, exact, with, 100.0 * exact / with);
            if (run.logf) { fprintf(run.logf, "step %d chat_exact %.6f\n", step, (double)exact / with); fflush(run.logf); }
        }
    };

    auto save_checkpoint = [&](int done) {  // `done` steps done; the loop resumes at step `done`
        CkptState s;
        s.seq_len = T;
        s.total_batch_tokens = tc.total_batch_tokens;
        if (!tc.random_data) {
            const DataLoaderPosition p = token_data_get_position(&train_loader);
            s.has_loader = 1;
            s.loader_epoch = p.epoch; s.loader_shard = p.shard; s.loader_sample = p.sample; s.loader_rng = p.rng_state;
        }
        s.rngs = {sample_rng.state};
        run_save(&run, &model, gpt_ckpt_info(model.cfg), done, s, model.stream);
    };

    run_loop_start(&run);
    for (;; run.step++) {
        const int step = run.step;
        const bool last = run_ends_here(&run, save_checkpoint);
        if (have_val && (step % tc.val_every == 0 || last)) run_validation(step);
        if (tc.sample_every >= 0 && ((tc.sample_every > 0 && step > 0 && step % tc.sample_every == 0) || last)) run_sample(step);
        if (last) break;

        run_step_begin(&run);
        gpt_zero_grad(&model);
        double loss = 0;
        // SFT: the loss is the mean over the step's targets that count, every rank's and every
        // micro-batch's (n_targets), so the step's micro-batches are read before the first backward
        long long n_targets = 0;
        if (train_loader.sft) {
            for (int micro = 0; micro < grad_accum; micro++) {
                token_data_next(&train_loader);
                step_x[micro].assign(train_loader.inputs, train_loader.inputs + micro_tokens);
                step_y[micro].assign(train_loader.targets, train_loader.targets + micro_tokens);
                if (packed) step_p[micro].assign(train_loader.positions, train_loader.positions + micro_tokens);
                n_targets += train_loader.sl.n_targets_global;
            }
            if (n_targets == 0) fail("%s: a step with no loss targets (every SFT document has one: a bad shard?)", tc.train_data.c_str());
        }
        for (int micro = 0; micro < grad_accum; micro++) {
            const int* x = rand_tokens.data();
            const int* y = rand_targets.data();
            // the gradients are averaged over the ranks: each rank's loss is scaled to the global mean's share
            // (--cp over several processes: a rank holds 1/cp of the tokens, and the average over the ranks divides by cp too)
            float dloss = (dist.world > 1 ? (float)cp.n : 1.0f) / (float)(micro_tokens * grad_accum);
            if (train_loader.sft) { x = step_x[micro].data(); y = step_y[micro].data(); dloss = (float)dist.world / (float)n_targets; }
            else if (!tc.random_data) { token_data_next(&train_loader); x = train_loader.inputs; y = train_loader.targets; }
            // a function of the step (and the rank: every rank its own masks): resumable
            model.dropout_seed = dropout_hash((uint64_t)tc.seed, (uint64_t)step * 65536 + (uint64_t)micro * dist.world + dist.rank);
            model.micro = micro;   // several GPUs: ZeRO 0/1 reduce the gradients after the last micro-step
            model.micro_steps = grad_accum;
            gpt_forward(&model, x, y, B, T, true, dloss, train_loader.sft && packed ? step_p[micro].data() : nullptr);
            gpt_backward(&model);
            if (train_loader.sft) loss += gpt_loss_sum(&model) * dist.world / (double)n_targets;
            else loss += gpt_mean_loss(&model) / grad_accum;
        }
        // several GPUs: the loss averaged over the ranks; a non-finite loss or grad norm skips the update
        const RunStep rs = run_update(&run, loss, model.stream, [&](float lr) { return gpt_update(&model, oc, lr); });
        loss = rs.loss;
        const float lr = rs.lr, norm = rs.norm;
        const double ms = rs.ms;
        const double tok_s = tc.total_batch_tokens / (ms / 1000.0);   // all ranks' tokens
        const double mfu = 100.0 * flops_per_token * tok_s / (peaks.bf16_flops * dist.world);
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s | MFU %.1f%%\n", step + 1, tc.steps, loss,
               lr, norm, ms, tok_s, mfu);
        if (run.logf) { fprintf(run.logf, "step %d train_loss %.6f lr %.6e norm %.4f ms %.2f\n", step + 1, loss, lr, norm, ms); fflush(run.logf); }
        run.curve.train.push_back({step + 1, (float)loss});
        // faults (max_bad_steps skipped updates in a row stop the run), checkpoints, a stop request
        if (run_after(&run, rs.ok, save_checkpoint)) break;
    }
    const std::vector<double>& step_ms = run.step_ms;
    if (step_ms.size() > 3) {
        std::vector<double> s(step_ms.begin() + std::min<size_t>(3, step_ms.size() - 1), step_ms.end());
        std::sort(s.begin(), s.end());
        const double med = s[s.size() / 2], tok_s = tc.total_batch_tokens / (med / 1000.0);
        printf("summary: %d steps | median step %.2f ms | %.0f tok/s | %.1f TFLOP/s | MFU %.1f%% of %.0f | peak memory %.2f GiB | total %.1f s\n",
               (int)step_ms.size(), med, tok_s, flops_per_token * tok_s / 1e12, 100.0 * flops_per_token * tok_s / (peaks.bf16_flops * dist.world), peaks.bf16_flops / 1e12,
               gib(model.act.bytes + model.num_params * (sizeof(floatX) + 16)), wall_seconds() - run.t_start);
    }
    if (run_close_log(&run, tc.log_dir, "train_gpt " + tc.preset))
        printf("wrote %s/train.log and %s/loss.svg\n", tc.log_dir.c_str(), tc.log_dir.c_str());
    if (!hf.export_hf.empty()) {
        // the fp32 master weights, as a Hugging Face model directory
        std::vector<float> w;
        if (params_master_to_host(&model, &w, model.stream))   // several GPUs: gathered to rank 0, which writes
            export_hf(w);
    }
    if (!tc.random_data) token_data_free(&train_loader);
    if (have_val) token_data_free(&val_loader);
    gpt_free(&model);
    run_finish(&run, model.stream);
    return 0;
}
#endif
