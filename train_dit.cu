/*
train_dit.cu: trains the video DiT (MUG-V 10B architecture, docs/dit.md)
with rectified flow on one GPU, in the style of llm.c and train_gpt.cu.

Reads top to bottom: parameters, the packed batch, activations, forward,
backward, update, training configuration and main loop. The math of every
layer, forward and backward, is that of the fp32 CPU reference dev/cpu/dit.cpp
(contract: dev/DESIGN.md "DiT"; layout, token order and RoPE positions:
llmc/model/dit_config.h). Layers are hand-written kernels in llmc/ (LayerNorm, adaLN
modulation and gated residuals, QK-norm + 3D RoPE, variable-length attention,
GELU/SiLU, patchify/tokens/unpatchify, the flow loss); matrix products go
through cuBLASLt. Weights are bf16 for compute with fp32 master copies;
gradients and AdamW state are fp32. Build with PRECISION=FP32 for all-fp32.

Batches are packed: every sample has its own latent shape T x H x W and text
length; its L = T'H'W' + 2 tokens follow the previous sample's (no padding
tokens), and attention never crosses samples. Every reduction that produces a
gradient runs in a fixed order (no atomics): two runs give bit-identical results.

After the training loop's pieces come the sampler (Euler, classifier-free
guidance with the null caption, text-to-video and image-to-video with frame 0
pinned; pictures through llmc/train/gif.h) and the moving-shapes evaluation (samples
for random captions scored by moving_shapes_classify). With no flags the
trainer runs the built-in moving-shapes dataset end to end: builds
data/moving_shapes once, trains a small model (3600 steps, at most --max-minutes 13), writes
samples every 500 steps and evaluates at the end, all under log/dit/.

Checkpoints, exact resume, SIGTERM/SIGINT and non-finite steps work as in
train_gpt.cu, with the same flags and the same harness (llmc/train/run.h and
run_control.h; format: llmc/train/checkpoint.h, the dit fields: checkpoint_dit.h);
so does the learning-rate schedule (--schedule etc., llmc/train/schedule.h; the
default trapezoid with --wsd-decay-frac 0 is a constant lr after --warmup): a run resumed from step k continues bit-identically
(weights, AdamW, the t and augmentation RNGs, the latent loader's position).

  make train_dit
  ./train_dit                                                       # moving shapes: train, sample, evaluate
  ./train_dit --preset dit-s --random-data 1 --batch-size 8         # synthetic batches, 2050 tokens/sample
  ./train_dit --preset 1B --n-layer 28 --random-data 1 --batch-size 1 --frames 21 --height 40 --width 64   # 13442 tokens
  ./train_dit --train-data "data/mugv/train_*.lat" --in-channels 24 --caption-channels 4096 --caption-dropout 0.1
  ./train_dit --ckpt-dir log/dit/ckpt --ckpt-every 500 --resume 1    # checkpoints; rerun the same line to resume
  ./train_dit --init-from log/dit/ckpt --steps 0                     # sample and evaluate a checkpoint's weights
  ./train_dit --help
*/
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include "llmc/core/utils.h"
#include "llmc/core/args.h"
#include "llmc/core/rand.h"
#include "llmc/model/dit_config.h"
#include "llmc/core/cuda_common.h"
#include "llmc/core/cublas_common.h"
#include "llmc/core/reduce.cuh"
#include "llmc/model/params.cuh"
#include "llmc/kernels/layernorm.cuh"
#include "llmc/kernels/adaln.cuh"
#include "llmc/kernels/rope3d.cuh"
#include "llmc/kernels/gelu.cuh"
#include "llmc/kernels/timestep.cuh"
#include "llmc/kernels/patchify.cuh"
#include "llmc/kernels/flow.cuh"
#include "llmc/kernels/edm.cuh"
#include "llmc/model/dit_objective.h"
#include <functional>
#include "llmc/attention/flash_attention.cuh"
#include "llmc/attention/ring_attention.cuh"   // --cp: self-attention over samples split across ranks
#include "llmc/train/attention_flags.h"  // --attn-backward, MEGA_FLASH_SM90
#include "llmc/data/latent_data.h"
#include "llmc/data/moving_shapes.h"
#include "llmc/train/gif.h"
#include "llmc/train/plot.h"
#include "llmc/train/checkpoint_dit.h"
#include "llmc/train/run.h"
#include "llmc/train/memory_plan.h"
#include "llmc/train/step_graph.h"

// ----------------------------------------------------------------------------
// Parameters: one contiguous buffer per kind (bf16 compute weights, fp32 master
// weights, fp32 gradients, fp32 AdamW moments), tensors at the offsets of
// dit_param_layout. Per-block tensors are stacked [L, ...]: block l of tensor X
// starts at X + l * (numel / L).

template <typename T>
struct DiTTensors {
    T *x_w, *x_b, *start, *end;                       // patch embedding, start/end tokens
    T *t0_w, *t0_b, *t2_w, *t2_b;                     // t_embedder.mlp.{0,2}
    T *f0_w, *f0_b, *f2_w, *f2_b;                     // fps_embedder.mlp.{0,2}
    T *tb_w, *tb_b;                                   // t_block.1
    T *y1_w, *y1_b, *y2_w, *y2_b;                     // y_embedder.y_proj.fc{1,2}
    T *table;                                         // [L, 6, C]
    T *qkv_w, *qkv_b, *q_norm, *k_norm, *proj_w, *proj_b;
    T *ca_w, *ca_b;                                   // cross_attn_norm
    T *cq_w, *cq_b, *ckv_w, *ckv_b, *cq_norm, *ck_norm, *cproj_w, *cproj_b;
    T *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    T *final_table, *final_w, *final_b;
};

template <typename T>
static DiTTensors<T> dit_tensor_pointers(T* base, const std::vector<ParamTensor>& layout) {
    auto at = [&](const char* n) -> T* {
        const ParamTensor* p = dit_find_param(layout, n);
        if (!p) fail("dit: no parameter named %s", n);
        return base + p->offset;
    };
    DiTTensors<T> t;
    t.x_w = at("x_embedder.proj.weight"); t.x_b = at("x_embedder.proj.bias");
    t.start = at("start_token"); t.end = at("end_token");
    t.t0_w = at("t_embedder.mlp.0.weight"); t.t0_b = at("t_embedder.mlp.0.bias");
    t.t2_w = at("t_embedder.mlp.2.weight"); t.t2_b = at("t_embedder.mlp.2.bias");
    t.f0_w = at("fps_embedder.mlp.0.weight"); t.f0_b = at("fps_embedder.mlp.0.bias");
    t.f2_w = at("fps_embedder.mlp.2.weight"); t.f2_b = at("fps_embedder.mlp.2.bias");
    t.tb_w = at("t_block.1.weight"); t.tb_b = at("t_block.1.bias");
    t.y1_w = at("y_embedder.y_proj.fc1.weight"); t.y1_b = at("y_embedder.y_proj.fc1.bias");
    t.y2_w = at("y_embedder.y_proj.fc2.weight"); t.y2_b = at("y_embedder.y_proj.fc2.bias");
    t.table = at("blocks.scale_shift_table");
    t.qkv_w = at("blocks.attn.qkv.weight"); t.qkv_b = at("blocks.attn.qkv.bias");
    t.q_norm = at("blocks.attn.q_norm.weight"); t.k_norm = at("blocks.attn.k_norm.weight");
    t.proj_w = at("blocks.attn.proj.weight"); t.proj_b = at("blocks.attn.proj.bias");
    t.ca_w = at("blocks.cross_attn_norm.weight"); t.ca_b = at("blocks.cross_attn_norm.bias");
    t.cq_w = at("blocks.cross_attn.q_linear.weight"); t.cq_b = at("blocks.cross_attn.q_linear.bias");
    t.ckv_w = at("blocks.cross_attn.kv_linear.weight"); t.ckv_b = at("blocks.cross_attn.kv_linear.bias");
    t.cq_norm = at("blocks.cross_attn.q_norm.weight"); t.ck_norm = at("blocks.cross_attn.k_norm.weight");
    t.cproj_w = at("blocks.cross_attn.proj.weight"); t.cproj_b = at("blocks.cross_attn.proj.bias");
    t.fc1_w = at("blocks.mlp.fc1.weight"); t.fc1_b = at("blocks.mlp.fc1.bias");
    t.fc2_w = at("blocks.mlp.fc2.weight"); t.fc2_b = at("blocks.mlp.fc2.bias");
    t.final_table = at("final_layer.scale_shift_table");
    t.final_w = at("final_layer.linear.weight"); t.final_b = at("final_layer.linear.bias");
    return t;
}

// ----------------------------------------------------------------------------
// The batch. Its geometry and per-sample scalars live on the host (the same
// fields as dev/cpu/dit.cpp's DiTBatch); the big tensors (x0, eps, text) go
// straight into the model's device buffers (uploaded, or generated there).

struct DiTBatchHost {
    int B = 0;
    std::vector<int> T, H, W;        // latent shape per sample
    std::vector<int> text_len;       // valid text tokens per sample
    std::vector<int> has_mask;       // 1: the sample has a frame mask (image-to-video)
    std::vector<int> frame_mask;     // packed [T] per sample: 1 noisy, 0 clean (all 1 without a mask)
    std::vector<float> t, fps;       // per sample; rf: t in [0, 1], already sampled and shifted; edm: sigma > 0
};

// Checks a batch against the config; one line naming the field.
static void dit_check_batch(const DiTConfig& c, const DiTBatchHost& bt, const char* who, int objective) {
    const int B = bt.B;
    if (B <= 0) fail("%s: batch size %d must be > 0", who, B);
    if ((int)bt.T.size() != B || (int)bt.H.size() != B || (int)bt.W.size() != B || (int)bt.text_len.size() != B ||
        (int)bt.has_mask.size() != B || (int)bt.t.size() != B || (int)bt.fps.size() != B)
        fail("%s: per-sample fields must have %d entries", who, B);
    size_t fr = 0;
    for (int b = 0; b < B; b++) {
        if (bt.T[b] <= 0 || bt.H[b] <= 0 || bt.W[b] <= 0)
            fail("%s: sample %d has shape %dx%dx%d (expected positive)", who, b, bt.T[b], bt.H[b], bt.W[b]);
        const DiTGrid g = dit_grid(c, bt.T[b], bt.H[b], bt.W[b]);
        if (g.Hp > c.rope_max_hw || g.Wp > c.rope_max_hw)
            fail("%s: sample %d patch grid %dx%d exceeds rope_max_hw %d", who, b, g.Hp, g.Wp, c.rope_max_hw);
        if (bt.text_len[b] <= 0 || bt.text_len[b] > c.max_text_len)
            fail("%s: sample %d text length %d outside [1, %d]", who, b, bt.text_len[b], c.max_text_len);
        if (objective == DIT_OBJECTIVE_EDM) {
            if (!(bt.t[b] > 0.0f && std::isfinite(bt.t[b]))) fail("%s: sample %d sigma=%g (expected finite and > 0)", who, b, bt.t[b]);
        } else if (!(bt.t[b] >= 0.0f && bt.t[b] <= 1.0f)) fail("%s: sample %d t=%g outside [0, 1]", who, b, bt.t[b]);
        if (!std::isfinite(bt.fps[b])) fail("%s: sample %d fps %g is not finite", who, b, bt.fps[b]);
        if (bt.has_mask[b] != 0 && bt.has_mask[b] != 1) fail("%s: sample %d has_mask must be 0 or 1", who, b);
        int noisy = 0;
        for (int f = 0; f < bt.T[b]; f++) {
            if (fr + f >= bt.frame_mask.size()) fail("%s: frame_mask has %zu entries, too few", who, bt.frame_mask.size());
            const int m = bt.frame_mask[fr + f];
            if (m != 0 && m != 1) fail("%s: sample %d frame %d mask %d (expected 0 or 1)", who, b, f, m);
            if (!bt.has_mask[b] && m != 1) fail("%s: sample %d has no mask but frame %d is marked clean", who, b, f);
            noisy += m;
        }
        if (noisy == 0) fail("%s: sample %d has no noisy frame (nothing to learn)", who, b);
        fr += bt.T[b];
    }
    if (bt.frame_mask.size() != fr) fail("%s: frame_mask has %zu entries (expected %zu)", who, bt.frame_mask.size(), fr);
}

// What the activations are sized for. A batch must fit in every field.
struct DiTCapacity {
    int B = 0;
    long long N = 0, Np = 0, Nt = 0, frames = 0;   // tokens, patch tokens, text tokens, latent frames
    long long lat = 0, out = 0;                    // floats of x0/eps and of v_pred
    long long max_patch_elems = 0, max_out_elems = 0;   // largest sample's Np_b*Cin*P and Cout*T*H*W
};

// The capacity of one sample of shape T x H x W with Lt text tokens.
static DiTCapacity dit_capacity_sample(const DiTConfig& c, int T, int H, int W, int Lt) {
    const DiTGrid g = dit_grid(c, T, H, W);
    DiTCapacity k;
    k.B = 1;
    k.N = g.L; k.Np = g.n_patch; k.Nt = Lt; k.frames = T;
    k.lat = (long long)c.in_channels * T * H * W;
    k.out = (long long)c.out_channels * T * H * W;
    k.max_patch_elems = (long long)g.n_patch * c.in_channels * dit_patch_size(c);
    k.max_out_elems = k.out;
    return k;
}
// Sums (the totals) and maxima (the per-sample fields) of two capacities.
static DiTCapacity dit_capacity_add(const DiTCapacity& a, const DiTCapacity& b) {
    DiTCapacity k;
    k.B = a.B + b.B; k.N = a.N + b.N; k.Np = a.Np + b.Np; k.Nt = a.Nt + b.Nt; k.frames = a.frames + b.frames;
    k.lat = a.lat + b.lat; k.out = a.out + b.out;
    k.max_patch_elems = std::max(a.max_patch_elems, b.max_patch_elems);
    k.max_out_elems = std::max(a.max_out_elems, b.max_out_elems);
    return k;
}
static DiTCapacity dit_capacity_of(const DiTConfig& c, const DiTBatchHost& bt) {
    DiTCapacity k;
    for (int b = 0; b < bt.B; b++) k = dit_capacity_add(k, dit_capacity_sample(c, bt.T[b], bt.H[b], bt.W[b], bt.text_len[b]));
    return k;
}

// ----------------------------------------------------------------------------
// Activations. Saved for the backward, per block [L, ...]: the normalized inputs
// of the three LayerNorms (xhat) with their rstd, the matmul inputs, the
// attention inputs and outputs with the softmax logsumexp (the backward
// recomputes the attention scores), and the outputs the gates multiply. The
// residual stream itself is not saved (the norms' backward needs only xhat and
// rstd): one buffer, updated in place. Scratch buffers are shared by all blocks.
// Their sizes are the memory plan's (llmc/train/memory_plan.h dit_plan_slots).
// With recompute (llmc/train/recompute.h) a per-block kind the mode drops holds
// fewer blocks, and full recompute keeps each recomputed block's input (block_in):
// dit_layer finds block l's.

struct DiTLayerActs {
    floatX *xhat1, *h1, *qkv, *qkr, *atty, *o1;
    floatX *xhat_a, *ha, *cq, *cqn, *ckv, *ckn, *catty;
    floatX *xhat2, *h2, *f1, *o2;
    float *rstd1, *qk_rstd, *lse_s, *rstd_a, *cq_rstd, *ck_rstd, *lse_c, *rstd2;
    floatX* block_in;   // full recompute: the residual stream at the block's start
};

struct DiTActs {
    // per block, [L, ...] (DiTLayerActs at layer l)
    floatX *xhat1, *h1, *qkv, *qkr, *atty, *o1;          // [N,C] [N,C] [N,3C] [N,2C] [N,C] [N,C]
    floatX *xhat_a, *ha, *cq, *cqn, *ckv, *ckn, *catty;  // [N,C] x4, [Nt,2C], [Nt,C], [N,C]
    floatX *xhat2, *h2, *f1, *o2;                        // [N,C] [N,C] [N,F] [N,C]
    float *rstd1, *qk_rstd, *lse_s, *rstd_a, *cq_rstd, *ck_rstd, *lse_c, *rstd2;   // [N] [N,2nh] [nh,N] [N] [N,nh] [Nt,nh] [nh,N] [N]
    floatX* block_in;                                    // [K,N,C]: full recompute's first K blocks
    // conditioning (2B rows: t and t0 per sample; B rows for fps): each embedder is fc, SiLU, fc
    floatX *tfreq, *ffreq;                   // [2B, Fq], [B, Fq] sinusoidal embeddings
    floatX *t_hidden, *t_hidden_silu, *temb;          // [2B,C] x3: t_embedder's first fc, its SiLU, the embedding
    floatX *fps_hidden, *fps_hidden_silu, *femb;      // [B,C] x3: the same for fps_embedder
    floatX *cond, *conds, *mods;             // [2B,C], [2B,C], [2B,6C]
    // caption: LN, fc1, GELU, fc2, LN gives y
    floatX *text, *cap_normed, *cap_fc1, *cap_gelu, *cap_fc2, *y;  // [Nt,Cy] x2, [Nt,C] x4
    float *cap_rstd, *y_rstd;                // [Nt] x2: the two LayerNorms' rstd
    // tokens and final layer
    floatX *patches;                         // [Np,Cin*P] the noisy latent's patches
    floatX *patch_tokens;                    // [Np,C] the patch embedding; in the final layer, the residual stream's patch rows
    floatX *lnf, *final_in, *out, *dout;     // [Np,C] x2: final LN, its modulation (the final linear's input); [Np,P*Cout] x2
    float *rstdf, *loss_tok, *v_pred;        // [Np], [Np], [out floats]
    floatX *resid, *f1g;                     // [N,C] residual stream; [N,F] GELU output (recomputed in the backward)
    // batch data and geometry
    float *x0, *eps, *text_f32, *freq_f32;   // [lat] x2, [Nt*Cy] fp32 text upload, [3B*Fq] fp32 embeddings upload
    int *frame_mask, *tokrow, *patrow, *cu_x, *cu_p, *cu_t;   // [frames], [N], [Np], [B+1] x3
    DiTSample* samples;                      // [B]
    float2* rope_cs;                         // [N, hd/2]
    // gradient scratch
    floatX *dres, *dbuf1, *dbuf2, *dbuf3, *dqkv, *dqk, *dF;   // [N,C] x4, [N,3C], [N,2C], [N,F]
    floatX *dckv, *dck, *dy, *dyb1, *dyb2;                    // [Nt,2C], [Nt,C] x4
    floatX *dmods_x, *dconds, *dtemb, *dfemb;                                  // cond gradients
    floatX *dt_hidden_silu, *dt_hidden, *dfps_hidden_silu, *dfps_hidden;
    float *dmods, *dcond;                                     // [2B,6C], [2B,C] fp32
    float *dnw, *reduce_scratch, *adaln_scratch;
    float* att_scratch;                                       // the attention backward's L and D rows, fp32 dQ sums and counters
    size_t att_scratch_bytes;
    size_t bytes;
};

// params, master, grads, adam_m, adam_v, layout, num_params, adam_step: llmc/model/params.cuh
struct DiT : ModelParams {
    DiTConfig cfg;
    DiTObjective obj;                        // rectified flow unless set after dit_build (llmc/model/dit_objective.h)
    DiTCapacity cap;
    DiTTensors<floatX> w;
    DiTTensors<float> dw;
    std::vector<DiTTensors<float>> dw_layers;   // block l's gradient slices (dit_layer_grads)
    DiTActs act;
    Recompute recompute;                     // which blocks' activations the backward rebuilds
    cudaStream_t stream = 0;
    // the current batch (host copies of its geometry)
    DiTBatchHost batch;
    int B = 0, N = 0, Np = 0, Nt = 0;
    std::vector<int> cu_x, cu_p, cu_t;       // [B+1]
    std::vector<DiTGrid> grids;
    std::vector<DiTSample> samples;
    // the latent shapes (T, H, W per sample) act.rope_cs was built for: a batch of the same shapes
    // as the last (every step of a fixed-shape run, every step of the sampler) reuses it
    std::vector<int> rope_key;
    long long lat_floats = 0, out_floats = 0, max_patch_elems = 0, max_out_elems = 0;
    float* loss_tok_host = nullptr;          // pinned [Np]
    // context parallel (--cp, llmc/dist/context_parallel.h): the process holds cp.local ranks of a
    // group of cp.n; a batch of B samples runs as B = cp.local x B pseudo-samples, (i, b) = held rank
    // i's part of sample b (cp_part_tokens order), each with sample b's conditioning and text; the
    // latents stay whole; only the self-attention sees the whole samples, around the ring
    CpGroup cp;
    CpRing ring;
    void* cp_ring_buf = nullptr;
    int* cp_cu_dev = nullptr;                // [n, B+1] every rank's parts (the ring's cu_dev)
    std::vector<std::vector<int>> cp_cu;     // the same on the host
    int cp_samples = 0;                      // the real samples of the batch
    DiTCapacity whole_cap;                   // the batches of whole samples the buffers take (the sampler packs to it)
};

// Block l's activations: at its block of each slot (Recompute::slot_index), blocks sized
// for the capacity's N and Nt.
static DiTLayerActs dit_layer(const DiT* g, int l) {
    const DiTActs& a = g->act;
    const Recompute& rc = g->recompute;
    const size_t N = g->cap.N, Nt = g->cap.Nt, C = g->cfg.d_model, F = g->cfg.ffn_hidden, nh = g->cfg.n_head;
    const size_t k = rc.slot_index(ACT_FULL_DROPS, l), m = rc.slot_index(ACT_CHEAP, l);   // layer l's block: kept / cheap kinds
    DiTLayerActs r;
    r.xhat1 = a.xhat1 + k * N * C; r.h1 = a.h1 + m * N * C; r.qkv = a.qkv + k * N * 3 * C; r.qkr = a.qkr + m * N * 2 * C;
    r.atty = a.atty + k * N * C; r.o1 = a.o1 + k * N * C;
    r.xhat_a = a.xhat_a + k * N * C; r.ha = a.ha + k * N * C; r.cq = a.cq + k * N * C; r.cqn = a.cqn + m * N * C;
    r.ckv = a.ckv + k * Nt * 2 * C; r.ckn = a.ckn + m * Nt * C; r.catty = a.catty + k * N * C;
    r.xhat2 = a.xhat2 + k * N * C; r.h2 = a.h2 + m * N * C; r.f1 = a.f1 + k * N * F; r.o2 = a.o2 + k * N * C;
    r.rstd1 = a.rstd1 + k * N; r.qk_rstd = a.qk_rstd + k * N * 2 * nh; r.lse_s = a.lse_s + k * nh * N;
    r.rstd_a = a.rstd_a + k * N; r.cq_rstd = a.cq_rstd + k * N * nh; r.ck_rstd = a.ck_rstd + k * Nt * nh;
    r.lse_c = a.lse_c + k * nh * N; r.rstd2 = a.rstd2 + k * N;
    r.block_in = rc.full(l) ? a.block_in + (size_t)rc.slot_index(ACT_FULL_INPUT, l) * N * C : nullptr;
    return r;
}

// Block l's gradient slices: l * numel / n_layer into the stacked layout on one
// GPU; a multi-GPU run keeps the gradients per block (llmc/model/params.cuh params_grad_at).
static DiTTensors<float> dit_layer_grads(const DiT* g, int l) {
    std::vector<ParamTensor> lay = g->grad_layout;
    for (size_t t = 0; t < lay.size(); t++)
        if (lay[t].name.rfind("blocks.", 0) == 0) lay[t].offset = (size_t)(params_grad_at(g, (int)t, l, g->cfg.n_layer) - g->grads);
    return dit_tensor_pointers(g->grads, lay);
}

// The capacity of a CP rank's pseudo-samples for a capacity of B samples (memory_plan.h dit_plan_cp_shape).
static DiTCapacity dit_capacity_cp(const DiTCapacity& cap, const CpGroup& cp) {
    const PlanDiTShape r = dit_plan_cp_shape({cap.B, cap.N, cap.Np, cap.Nt, cap.frames, cap.lat, cap.out}, cp);
    DiTCapacity k = cap;
    k.B = (int)r.B; k.N = r.N; k.Np = r.Np; k.Nt = r.Nt;
    return k;
}

// cap: the batches of real samples; cp: the context-parallel ranks this process holds (none:
// CpGroup()), cp_comm their NCCL communicator (null when one process holds the whole group).
static void dit_build(DiT* g, const DiTConfig& cfg, const DiTCapacity& real_cap, const Recompute& rc = Recompute(),
                      const CpGroup& cp = CpGroup(), void* cp_comm = nullptr) {
    g->cfg = cfg;
    g->cp = cp;
    g->rope_key.clear();
    g->cap = cp.on() ? dit_capacity_cp(real_cap, cp) : real_cap;
    g->whole_cap = real_cap;
    const DiTCapacity& cap = g->cap;
    const std::vector<ParamTensor> layout = dit_param_layout(cfg);
    const int C = cfg.d_model, hd = cfg.head_dim, F = cfg.ffn_hidden;
    // 16-byte loads and cuBLASLt need every tensor (and every block's slice) 16-byte aligned
    if (C % 8 != 0) fail("flag --d-model: %d must be a multiple of 8 on the GPU", C);
    if (hd % 24 != 0) fail("flag --head-dim: %d must be a multiple of 24 on the GPU (6 for 3D RoPE, 8 for 16-byte loads)", hd);
    if (F % 8 != 0) fail("flag --ffn-hidden: %d must be a multiple of 8 on the GPU", F);
    if (dit_patch_size(cfg) * cfg.out_channels % 8 != 0)
        fail("flag --out-channels: %d x patch volume %d must be a multiple of 8 on the GPU", cfg.out_channels, dit_patch_size(cfg));
    for (const ParamTensor& p : layout)
        if (p.offset % 8 != 0) fail("dit: parameter %s starts at element %zu, not 16-byte aligned", p.name.c_str(), p.offset);
    params_alloc(g, layout);
    g->w = dit_tensor_pointers(g->params, g->layout);
    g->dw = dit_tensor_pointers(g->grads, g->grad_layout);   // several GPUs: a block tensor's block 0 (dit_layer_grads)
    for (int l = 0; l < cfg.n_layer; l++) g->dw_layers.push_back(dit_layer_grads(g, l));

    // activations: one allocation, carved in the memory plan's order and sizes
    g->recompute = rc;
    const size_t B = cap.B, N = cap.N, PC = (size_t)dit_patch_size(cfg) * cfg.out_channels;
    const size_t max_cols = std::max({(size_t)F, (size_t)6 * C, PC, (size_t)3 * C, (size_t)64});
    const std::vector<PlanSlot> slots = dit_plan_slots(cfg, {real_cap.B, real_cap.N, real_cap.Np, real_cap.Nt, real_cap.frames, real_cap.lat, real_cap.out},
                                                       sizeof(floatX), rc, cp);
    DiTActs& a = g->act;
    // with room for the fused backwards' fp32 dQ accumulator (N x C floats), the ordered one's
    // counters and its query split over the captions' keys (the cross-attention's few K/V tiles)
    a.att_scratch_bytes = flash_attention_varlen_scratch_bytes(N, cfg.n_head, hd, (int)B) +
                          flash_attention_query_split_bytes(cap.Nt, cfg.n_head, hd);
    memory_plan_require(slots, "att_scratch", a.att_scratch_bytes);
    memory_plan_require(slots, "reduce_scratch", std::max((COLUMN_REDUCE_SPLITS + 2) * max_cols, layernorm_backward_scratch_floats(C)) * sizeof(float));
    memory_plan_require(slots, "adaln_scratch", adaln_scratch_floats((int)B, C) * sizeof(float));
    memory_plan_require(slots, "dnw", qknorm_rope3d_backward_scratch_floats(hd) * sizeof(float));
    memory_plan_require(slots, "samples", B * sizeof(DiTSample));
    std::vector<ActivationBind> binds = {
        {"xhat1", (void**)&a.xhat1}, {"h1", (void**)&a.h1}, {"qkv", (void**)&a.qkv}, {"qkr", (void**)&a.qkr},
        {"atty", (void**)&a.atty}, {"o1", (void**)&a.o1}, {"xhat_a", (void**)&a.xhat_a}, {"ha", (void**)&a.ha},
        {"cq", (void**)&a.cq}, {"cqn", (void**)&a.cqn}, {"ckv", (void**)&a.ckv}, {"ckn", (void**)&a.ckn},
        {"catty", (void**)&a.catty}, {"xhat2", (void**)&a.xhat2}, {"h2", (void**)&a.h2}, {"f1", (void**)&a.f1},
        {"o2", (void**)&a.o2}, {"rstd1", (void**)&a.rstd1}, {"qk_rstd", (void**)&a.qk_rstd}, {"lse_s", (void**)&a.lse_s},
        {"rstd_a", (void**)&a.rstd_a}, {"cq_rstd", (void**)&a.cq_rstd}, {"ck_rstd", (void**)&a.ck_rstd},
        {"lse_c", (void**)&a.lse_c}, {"rstd2", (void**)&a.rstd2}, {"block_in", (void**)&a.block_in},
        {"tfreq", (void**)&a.tfreq}, {"ffreq", (void**)&a.ffreq},
        {"t_hidden", (void**)&a.t_hidden}, {"t_hidden_silu", (void**)&a.t_hidden_silu}, {"temb", (void**)&a.temb},
        {"fps_hidden", (void**)&a.fps_hidden}, {"fps_hidden_silu", (void**)&a.fps_hidden_silu}, {"femb", (void**)&a.femb},
        {"cond", (void**)&a.cond}, {"conds", (void**)&a.conds}, {"mods", (void**)&a.mods},
        {"text", (void**)&a.text}, {"cap_normed", (void**)&a.cap_normed}, {"cap_fc1", (void**)&a.cap_fc1},
        {"cap_gelu", (void**)&a.cap_gelu}, {"cap_fc2", (void**)&a.cap_fc2}, {"y", (void**)&a.y},
        {"cap_rstd", (void**)&a.cap_rstd}, {"y_rstd", (void**)&a.y_rstd},
        {"patches", (void**)&a.patches}, {"patch_tokens", (void**)&a.patch_tokens}, {"lnf", (void**)&a.lnf},
        {"final_in", (void**)&a.final_in}, {"out", (void**)&a.out}, {"dout", (void**)&a.dout},
        {"rstdf", (void**)&a.rstdf}, {"loss_tok", (void**)&a.loss_tok}, {"v_pred", (void**)&a.v_pred},
        {"resid", (void**)&a.resid}, {"f1g", (void**)&a.f1g},
        {"x0", (void**)&a.x0}, {"eps", (void**)&a.eps}, {"text_f32", (void**)&a.text_f32}, {"freq_f32", (void**)&a.freq_f32},
        {"frame_mask", (void**)&a.frame_mask}, {"tokrow", (void**)&a.tokrow}, {"patrow", (void**)&a.patrow},
        {"cu_x", (void**)&a.cu_x}, {"cu_p", (void**)&a.cu_p}, {"cu_t", (void**)&a.cu_t},
        {"samples", (void**)&a.samples}, {"rope_cs", (void**)&a.rope_cs},
        {"dres", (void**)&a.dres}, {"dbuf1", (void**)&a.dbuf1}, {"dbuf2", (void**)&a.dbuf2}, {"dbuf3", (void**)&a.dbuf3},
        {"dqkv", (void**)&a.dqkv}, {"dqk", (void**)&a.dqk}, {"dF", (void**)&a.dF},
        {"dckv", (void**)&a.dckv}, {"dck", (void**)&a.dck}, {"dy", (void**)&a.dy}, {"dyb1", (void**)&a.dyb1}, {"dyb2", (void**)&a.dyb2},
        {"dmods_x", (void**)&a.dmods_x}, {"dconds", (void**)&a.dconds}, {"dtemb", (void**)&a.dtemb}, {"dfemb", (void**)&a.dfemb},
        {"dt_hidden_silu", (void**)&a.dt_hidden_silu}, {"dt_hidden", (void**)&a.dt_hidden},
        {"dfps_hidden_silu", (void**)&a.dfps_hidden_silu}, {"dfps_hidden", (void**)&a.dfps_hidden},
        {"dmods", (void**)&a.dmods}, {"dcond", (void**)&a.dcond}, {"dnw", (void**)&a.dnw},
        {"reduce_scratch", (void**)&a.reduce_scratch}, {"adaln_scratch", (void**)&a.adaln_scratch},
        {"att_scratch", (void**)&a.att_scratch},
    };
    if (cp.on()) {
        binds.push_back({"cp_cu", (void**)&g->cp_cu_dev});
        binds.push_back({"cp_ring", &g->cp_ring_buf});
    }
    a.bytes = carve_activations(memory_plan_bind(slots, binds));
    if (cp.on())   // a rank holds at most B parts of ceil(L / n) tokens: the pseudo-samples' tokens per held rank
        cp_ring_init(&g->ring, cp, g->cp_ring_buf, memory_plan_slot(slots, "cp_ring").bytes, (size_t)(cap.N / cp.local), cfg.n_head,
                     cfg.n_head, hd, cp_comm);
    cudaCheck(cudaMallocHost(&g->loss_tok_host, std::max<size_t>(cap.Np, 1) * sizeof(float)));
}

static void dit_free(DiT* g) {
    params_free(g);
    cudaCheck(cudaFree(g->act.xhat1));   // the activations' one allocation starts with its first slot
    cudaCheck(cudaFreeHost(g->loss_tok_host));
    if (g->cp.on()) cp_ring_free(&g->ring);
}

// Sets all parameters from fp32 host values (init or loaded); resets AdamW.
static void dit_set_params(DiT* g, const float* host) { params_set(g, host, g->stream); }

// Init for runs from scratch, the same values as dev/cpu/dit.cpp's
// dit_cpu_init_params for the same seed: linear weights N(0, 0.02), biases 0,
// norm weights 1, tables N(0,1)/sqrt(C), start/end tokens N(0, 0.02).
static std::vector<float> dit_init_params(const DiTConfig& cfg, const std::vector<ParamTensor>& layout, uint64_t seed) {
    std::vector<float> p(layout_numel(layout), 0.0f);
    Rng rng;
    rng_seed(&rng, seed);
    const float inv_sqrt_c = 1.0f / sqrtf((float)cfg.d_model);
    for (const ParamTensor& t : layout) {
        float* x = p.data() + t.offset;
        const std::string& n = t.name;
        const bool norm_w = n.size() >= 11 && n.compare(n.size() - 11, 11, "norm.weight") == 0;
        const bool bias = n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0;
        if (norm_w) std::fill(x, x + t.numel, 1.0f);
        else if (!bias) rng_fill_normal(x, t.numel, n.find("scale_shift_table") != std::string::npos ? inv_sqrt_c : 0.02f, &rng);
    }
    return p;
}

// Takes a batch's geometry: offsets, conditioning rows per token, RoPE table,
// sinusoidal embeddings, per-sample descriptors; uploads them. The batch's x0,
// eps and text must then be put in act.x0 / act.eps / act.text (dit_upload_*,
// or generated on the device) before dit_forward.
// --cp (see DiT::cp): the model's samples are the pseudo-samples of the held ranks, (i, b) =
// held rank i's part [j0, j1) of sample b; without it one rank holds every sample whole
// (j0 = 0, j1 = L), the same code. Pseudo-sample b < B (held rank 0's) has sample b's text
// offset and latents: what the batch's data fills.
static void dit_set_batch(DiT* g, const DiTBatchHost& bt) {
    const DiTConfig& c = g->cfg;
    const CpGroup& cp = g->cp;
    dit_check_batch(c, bt, "dit batch", g->obj.kind);
    const DiTCapacity need = dit_capacity_of(c, bt);   // of the whole samples
    const int Bs = bt.B, Bq = cp.local * Bs;
    std::vector<DiTGrid> grids(Bs);
    std::vector<DiTSample> whole(Bs);
    std::vector<int> lengths(Bs);
    long long lat = 0, out = 0;
    int fr = 0;
    for (int b = 0; b < Bs; b++) {
        const DiTGrid gr = dit_grid(c, bt.T[b], bt.H[b], bt.W[b]);
        grids[b] = gr;
        lengths[b] = gr.L;
        DiTSample& s = whole[b];
        s.T = bt.T[b]; s.H = bt.H[b]; s.W = bt.W[b];
        s.Tp = gr.Tp; s.Hp = gr.Hp; s.Wp = gr.Wp;
        s.frame0 = fr;
        s.n_noisy = 0;
        for (int f = 0; f < bt.T[b]; f++) s.n_noisy += bt.frame_mask[fr + f];
        s.lat0 = lat; s.out0 = out;
        s.t = bt.t[b];
        // --cp over several processes: a rank holds 1/n of the sample, and the gradient average over all ranks divides by n too
        s.grad_scale = (float)(2.0 / ((double)s.n_noisy * c.in_channels * bt.H[b] * bt.W[b] * Bs)) * (cp.local == 1 ? (float)cp.n : 1.0f);
        lat += (long long)c.in_channels * bt.T[b] * bt.H[b] * bt.W[b];
        out += (long long)c.out_channels * bt.T[b] * bt.H[b] * bt.W[b];
        fr += bt.T[b];
    }
    cp_check_parts(cp.n, lengths);
    g->cp_cu.assign(cp.n, {});
    for (int v = 0; v < cp.n; v++) g->cp_cu[v] = cp_part_cu(lengths, v, cp.n);
    g->batch = bt;
    g->grids = grids;
    g->B = Bq;
    g->cp_samples = Bs;
    g->samples.resize(Bq);
    g->cu_x.assign(Bq + 1, 0); g->cu_p.assign(Bq + 1, 0); g->cu_t.assign(Bq + 1, 0);
    // conditioning row per token: 2q (t) or 2q+1 (t0: start/end and clean-frame tokens of a masked sample)
    std::vector<int> tokrow, patrow, tok_sample, tok_pos;
    for (int i = 0; i < cp.local; i++)
        for (int b = 0; b < Bs; b++) {
            const int q = i * Bs + b, L = lengths[b], v = cp.first + i;
            const int j0 = cp_part_begin(L, v, cp.n), j1 = cp_part_begin(L, v + 1, cp.n);
            const int pb = std::max(j0, 1) - 1, pe = std::min(j1, L - 1) - 1;   // its patches [pb, pe)
            g->cu_x[q + 1] = g->cu_x[q] + (j1 - j0);
            g->cu_p[q + 1] = g->cu_p[q] + std::max(0, pe - pb);
            g->cu_t[q + 1] = g->cu_t[q] + bt.text_len[b];
            DiTSample s = whole[b];
            s.tok0 = g->cu_x[q] - j0; s.pat0 = g->cu_p[q] - pb;
            s.j0 = j0; s.j1 = j1;
            g->samples[q] = s;
            const int* fm = bt.frame_mask.data() + s.frame0;
            for (int j = j0; j < j1; j++) {
                bool noisy;
                if (!bt.has_mask[b]) noisy = true;
                else if (j == 0 || j == L - 1) noisy = false;
                else noisy = fm[((j - 1) / (s.Hp * s.Wp)) * c.patch_t] != 0;
                tokrow.push_back(2 * q + (noisy ? 0 : 1));
                if (j > 0 && j < L - 1) patrow.push_back(2 * q + (noisy ? 0 : 1));
                tok_sample.push_back(b);
                tok_pos.push_back(j);
            }
        }
    g->N = g->cu_x[Bq]; g->Np = g->cu_p[Bq]; g->Nt = g->cu_t[Bq];
    g->lat_floats = lat; g->out_floats = out;
    g->max_patch_elems = need.max_patch_elems; g->max_out_elems = need.max_out_elems;
    const DiTCapacity& cap = g->cap;
    if (Bq > cap.B || g->N > cap.N || g->Np > cap.Np || g->Nt > cap.Nt || need.frames > cap.frames || lat > cap.lat || out > cap.out ||
        need.max_patch_elems > cap.max_patch_elems || need.max_out_elems > cap.max_out_elems)
        fail("dit batch: B %d, %d tokens (held), %d text tokens is larger than the model was built for (B %d, %lld tokens, %lld text)",
             Bq, g->N, g->Nt, cap.B, cap.N, cap.Nt);
    // the table is a function of the samples' latent shapes (their grids and, with --cp, the
    // rank's parts of them, fixed by the build)
    std::vector<int> rope_key;
    for (int b = 0; b < Bs; b++) rope_key.insert(rope_key.end(), {bt.T[b], bt.H[b], bt.W[b]});
    std::vector<float2> cs;
    const bool new_rope = rope_key != g->rope_key;
    if (new_rope) rope3d_table_at(&cs, c, grids, tok_sample, tok_pos);
    // sinusoidal embeddings: rows 2q = 1000 t_b, 2q+1 = 0 (edm: c_noise(sigma_b), c_noise(sigma_min)); fps rows q
    const std::vector<double> ef = dit_freq_embedding_freqs(c);
    std::vector<double> ts(2 * Bq), fs(Bq);
    for (int q = 0; q < Bq; q++) {
        ts[2 * q] = dit_timestep_value(g->obj, bt.t[q % Bs]);
        ts[2 * q + 1] = dit_timestep_clean(g->obj);
        fs[q] = bt.fps[q % Bs];
    }
    std::vector<float> tfreq((size_t)2 * Bq * c.freq_dim), ffreq((size_t)Bq * c.freq_dim);
    timestep_embedding_host(tfreq.data(), ts.data(), 2 * Bq, ef);
    timestep_embedding_host(ffreq.data(), fs.data(), Bq, ef);

    DiTActs& a = g->act;
    cudaStream_t st = g->stream;
    cudaCheck(cudaMemcpy(a.frame_mask, bt.frame_mask.data(), bt.frame_mask.size() * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.tokrow, tokrow.data(), tokrow.size() * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.patrow, patrow.data(), patrow.size() * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.cu_x, g->cu_x.data(), (Bq + 1) * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.cu_p, g->cu_p.data(), (Bq + 1) * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.cu_t, g->cu_t.data(), (Bq + 1) * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.samples, g->samples.data(), Bq * sizeof(DiTSample), cudaMemcpyHostToDevice));
    if (new_rope) {
        cudaCheck(cudaMemcpy(a.rope_cs, cs.data(), cs.size() * sizeof(float2), cudaMemcpyHostToDevice));
        g->rope_key = std::move(rope_key);
    }
    if (cp.on()) {
        std::vector<int> cu_all;
        for (int v = 0; v < cp.n; v++) cu_all.insert(cu_all.end(), g->cp_cu[v].begin(), g->cp_cu[v].end());
        cudaCheck(cudaMemcpy(g->cp_cu_dev, cu_all.data(), cu_all.size() * sizeof(int), cudaMemcpyHostToDevice));
    }
    cudaCheck(cudaMemcpy(a.freq_f32, tfreq.data(), tfreq.size() * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.freq_f32 + tfreq.size(), ffreq.data(), ffreq.size() * sizeof(float), cudaMemcpyHostToDevice));
    copy_f32_to_floatX(a.tfreq, a.freq_f32, tfreq.size(), st);
    copy_f32_to_floatX(a.ffreq, a.freq_f32 + tfreq.size(), ffreq.size(), st);
}

// --cp: the self-attention's shape over the B real samples (llmc/attention/ring_attention.cuh)
static CpVarlenShape dit_cp_shape(const DiT* g) {
    const int C = g->cfg.d_model;
    return {g->cp_samples, g->cfg.n_head, g->cfg.head_dim, &g->cp_cu, g->cp_cu_dev, 2 * C, 2 * C, 3 * C};
}

// x0 and eps (packed [Cin, T, H, W] per sample, lat_floats each; eps may be null when
// it is generated on the device) and the text features [Nt, Cy] (fp32, converted).
// --cp: the real samples' text (held rank 0's pseudo-samples; dit_forward copies it to the others).
static void dit_upload_batch_data(DiT* g, const float* x0, const float* eps, const float* text) {
    DiTActs& a = g->act;
    const size_t nt = (size_t)g->cu_t[g->cp_samples] * g->cfg.caption_channels;
    cudaCheck(cudaMemcpy(a.x0, x0, g->lat_floats * sizeof(float), cudaMemcpyHostToDevice));
    if (eps) cudaCheck(cudaMemcpy(a.eps, eps, g->lat_floats * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a.text_f32, text, nt * sizeof(float), cudaMemcpyHostToDevice));
    copy_f32_to_floatX(a.text, a.text_f32, nt, g->stream);
}

// ----------------------------------------------------------------------------
// Linear layers: y = x W^T + b through cuBLASLt (cublas_common.h). Every DiT
// linear has a bias; its gradient is a deterministic column sum of dout (cuBLASLt's
// bias-gradient epilogue, which would sum it inside the weight gradient's product,
// is slower over a step: dev/cuda/NOTES.md).

// dinp [M, K] (written, or added to when accumulate; null: not needed),
// dW [N, K] += dout^T inp, db [N] += column sums of dout (db may be null).
// scratch: column_reduce's (COLUMN_REDUCE_SPLITS * N floats).
static void linear_backward(floatX* dinp, float* dW, float* db, const floatX* dout, const floatX* inp, const floatX* W,
                            int M, int N, int K, bool accumulate, float* scratch, cudaStream_t st) {
    if (M == 0) return;
    if (dinp) matmul_backward_dinp(dinp, dout, W, M, N, K, accumulate, st);
    matmul_backward_dweight(dW, dout, inp, M, N, K, st);
    if (db) column_reduce(db, dout, (const floatX*)nullptr, nullptr, M, N, scratch, st);
}

// resid [M, N] += inp [M, K] @ W^T + b  (the residual add of the cross-attention, in the GEMM's epilogue)
static void linear_residual_forward(floatX* resid, const floatX* inp, const floatX* W, const floatX* b, int M, int N,
                                    int K, cudaStream_t st) {
    matmul_lt(resid, CUBLAS_LOWP, W, inp, CUBLAS_LOWP, b, N, M, K, true, false, K, K, N, 1.0f, 1.0f, st);
}

// ----------------------------------------------------------------------------
// A block's forward, and the pieces of it that selective recompute redoes (each
// written once, used by both).

// h = xhat * (1 + scale) + shift, the block's modulation `which` (0: self-attention, 3: MLP):
// shift and scale are the table's and t_block's columns which and which + 1.
static void dit_modulate(DiT* g, int l, floatX* h, const floatX* xhat, int which) {
    const int C = g->cfg.d_model;
    const floatX* tab = g->w.table + (size_t)l * 6 * C;
    adaln_modulate_forward(h, xhat, tab + which * C, tab + (which + 1) * C, g->act.mods, 6 * C, which * C, (which + 1) * C,
                           g->act.tokrow, g->N, C, g->stream);
}

// self-attention: q and k of the qkv projection, QK-normed and 3D-RoPE'd, into qkr
static void dit_self_qk(DiT* g, int l, const DiTLayerActs& la) {
    const DiTConfig& c = g->cfg;
    const int C = c.d_model, hd = c.head_dim;
    qknorm_rope3d_forward(la.qkr, 2 * C, la.qk_rstd, la.qkv, 3 * C, g->w.q_norm + (size_t)l * hd, g->w.k_norm + (size_t)l * hd,
                          c.n_head, 2 * c.n_head, g->act.rope_cs, g->N, hd, c.norm_eps, g->stream);
}

// cross-attention: the QK-normed queries (of the N tokens) and keys (of the Nt text tokens)
static void dit_cross_qk(DiT* g, int l, const DiTLayerActs& la, bool queries) {
    const DiTConfig& c = g->cfg;
    const int C = c.d_model, hd = c.head_dim, nh = c.n_head;
    if (queries)
        qknorm_rope3d_forward(la.cqn, C, la.cq_rstd, la.cq, C, g->w.cq_norm + (size_t)l * hd, nullptr, nh, nh, nullptr, g->N, hd,
                              c.norm_eps, g->stream);
    else
        qknorm_rope3d_forward(la.ckn, C, la.ck_rstd, la.ckv, 2 * C, g->w.ck_norm + (size_t)l * hd, nullptr, nh, nh, nullptr, g->Nt,
                              hd, c.norm_eps, g->stream);
}

// Block l on the residual stream act.resid (updated in place), saving into la.
static void dit_block_forward(DiT* g, int l, const DiTLayerActs& la) {
    const DiTConfig& c = g->cfg;
    const int N = g->N, Nt = g->Nt, C = c.d_model, F = c.ffn_hidden, ms = 6 * C;
    const float eps = c.norm_eps;
    cudaStream_t st = g->stream;
    DiTActs& a = g->act;
    const DiTTensors<floatX>& w = g->w;
    const VarlenAttnShape self_s = {g->B, c.n_head, c.head_dim, g->cu_x.data(), g->cu_x.data(), 2 * C, 2 * C, 3 * C, a.cu_x, a.cu_x};
    const VarlenAttnShape cross_s = {g->B, c.n_head, c.head_dim, g->cu_x.data(), g->cu_t.data(), C, C, 2 * C, a.cu_x, a.cu_t};
    const floatX* tab = w.table + (size_t)l * 6 * C;
    {
        NvtxRange r("self-attention");
        // x += gate1 * proj(attn(rope(qknorm(qkv(LN(x) * (1 + scale1) + shift1)))))
        layernorm_forward(la.xhat1, nullptr, la.rstd1, a.resid, nullptr, nullptr, N, C, eps, st);
        dit_modulate(g, l, la.h1, la.xhat1, 0);
        matmul_forward(la.qkv, la.h1, w.qkv_w + (size_t)l * 3 * C * C, w.qkv_b + (size_t)l * 3 * C, N, 3 * C, C, st);
        dit_self_qk(g, l, la);
        if (g->cp.on()) ring_attention_varlen_forward(&g->ring, la.atty, la.lse_s, la.qkr, la.qkr + C, la.qkv + 2 * C, dit_cp_shape(g), st);
        else flash_attention_varlen_forward(la.atty, la.lse_s, la.qkr, la.qkr + C, la.qkv + 2 * C, self_s, st);
        matmul_forward(la.o1, la.atty, w.proj_w + (size_t)l * C * C, w.proj_b + (size_t)l * C, N, C, C, st);
        adaln_gate_residual_forward(a.resid, la.o1, tab + 2 * C, a.mods, ms, 2 * C, a.tokrow, N, C, st);
    }
    {
        NvtxRange r("cross-attention");
        // x += proj(attn(qnorm(q_linear(LNa(x))), knorm(kv_linear(y))))
        layernorm_forward(la.ha, la.xhat_a, la.rstd_a, a.resid, w.ca_w + (size_t)l * C, w.ca_b + (size_t)l * C, N, C, eps, st);
        matmul_forward(la.cq, la.ha, w.cq_w + (size_t)l * C * C, w.cq_b + (size_t)l * C, N, C, C, st);
        dit_cross_qk(g, l, la, true);
        matmul_forward(la.ckv, a.y, w.ckv_w + (size_t)l * 2 * C * C, w.ckv_b + (size_t)l * 2 * C, Nt, 2 * C, C, st);
        dit_cross_qk(g, l, la, false);
        flash_attention_varlen_forward(la.catty, la.lse_c, la.cqn, la.ckn, la.ckv + C, cross_s, st);
        linear_residual_forward(a.resid, la.catty, w.cproj_w + (size_t)l * C * C, w.cproj_b + (size_t)l * C, N, C, C, st);
    }
    {
        NvtxRange r("mlp");
        // x += gate2 * fc2(GELU(fc1(LN(x) * (1 + scale2) + shift2)))
        layernorm_forward(la.xhat2, nullptr, la.rstd2, a.resid, nullptr, nullptr, N, C, eps, st);
        dit_modulate(g, l, la.h2, la.xhat2, 3);
        matmul_forward(la.f1, la.h2, w.fc1_w + (size_t)l * F * C, w.fc1_b + (size_t)l * F, N, F, C, st);
        gelu_forward(a.f1g, la.f1, (size_t)N * F, st);
        matmul_forward(la.o2, a.f1g, w.fc2_w + (size_t)l * C * F, w.fc2_b + (size_t)l * C, N, C, F, st);
        adaln_gate_residual_forward(a.resid, la.o2, tab + 5 * C, a.mods, ms, 5 * C, a.tokrow, N, C, st);
    }
}

// Block l's recompute at the top of its backward. Full: the block reruns from its saved input
// on act.resid (free during the backward). Selective: the modulations and the QK norms (and
// RoPE) from the normed inputs and projections the mode keeps. The same kernels on the same
// bits: the same activations.
static void dit_block_recompute(DiT* g, int l, const DiTLayerActs& la) {
    if (g->recompute.full(l)) {
        NvtxRange r("recompute (full)");
        cudaCheck(cudaMemcpyAsync(g->act.resid, la.block_in, (size_t)g->N * g->cfg.d_model * sizeof(floatX), cudaMemcpyDeviceToDevice, g->stream));
        dit_block_forward(g, l, la);
    } else if (g->recompute.on(l)) {
        NvtxRange r("recompute (selective)");
        dit_modulate(g, l, la.h1, la.xhat1, 0);
        dit_self_qk(g, l, la);
        dit_cross_qk(g, l, la, true);
        dit_cross_qk(g, l, la, false);
        dit_modulate(g, l, la.h2, la.xhat2, 3);
    }
}

// ----------------------------------------------------------------------------
// Forward of the current batch: the model's output in act.out (patch layout),
// the loss gradient in act.dout and the per-token squared errors (dit_loss).
// for_backward false (the sampler): full recompute's block inputs are not kept.
static void dit_forward(DiT* g, bool for_backward = true) {
    NvtxRange range("dit_forward");
    const DiTConfig& c = g->cfg;
    const int B = g->B, N = g->N, Np = g->Np, Nt = g->Nt, C = c.d_model, L = c.n_layer;
    const int Fq = c.freq_dim, Cy = c.caption_channels, P = dit_patch_size(c), PC = P * c.out_channels;
    const float eps = c.norm_eps;
    cudaStream_t st = g->stream;
    DiTActs& a = g->act;
    const DiTTensors<floatX>& w = g->w;
    const PatchGeom pg = {c.in_channels, c.out_channels, c.patch_t, c.patch_h, c.patch_w};
    const bool edm = g->obj.kind == DIT_OBJECTIVE_EDM;

    params_forward_wait(g, ZERO_TAIL);   // several GPUs with ZeRO 1/2: wait for the gathered weights (llmc/dist/distributed.cuh)
    if (g->cp.on() && g->cp.local > 1) {
        // the simulated ring: every held rank's pseudo-samples carry their samples' text (rank 0's rows, filled by the batch)
        const size_t rows = (size_t)g->cu_t[g->cp_samples] * Cy;
        for (int i = 1; i < g->cp.local; i++)
            cudaCheck(cudaMemcpyAsync(a.text + i * rows, a.text, rows * sizeof(floatX), cudaMemcpyDeviceToDevice, st));
    }
    {
        NvtxRange r("conditioning");
        // c = t_emb(1000 t) + fps_emb(fps), c0 = t_emb(0) + fps_emb(fps); mods = t_block(SiLU(c / c0))
        matmul_forward(a.t_hidden, a.tfreq, w.t0_w, w.t0_b, 2 * B, C, Fq, st);
        silu_forward(a.t_hidden_silu, a.t_hidden, (size_t)2 * B * C, st);
        matmul_forward(a.temb, a.t_hidden_silu, w.t2_w, w.t2_b, 2 * B, C, C, st);
        matmul_forward(a.fps_hidden, a.ffreq, w.f0_w, w.f0_b, B, C, Fq, st);
        silu_forward(a.fps_hidden_silu, a.fps_hidden, (size_t)B * C, st);
        matmul_forward(a.femb, a.fps_hidden_silu, w.f2_w, w.f2_b, B, C, C, st);
        cond_combine_forward(a.cond, a.conds, a.temb, a.femb, B, C, st);
        matmul_forward(a.mods, a.conds, w.tb_w, w.tb_b, 2 * B, 6 * C, C, st);
    }
    {
        NvtxRange r("caption");
        // LN(Cy) -> fc1 -> GELU(tanh) -> fc2 -> LN(C) over the packed valid text tokens
        layernorm_forward(a.cap_normed, nullptr, a.cap_rstd, a.text, nullptr, nullptr, Nt, Cy, eps, st);
        matmul_forward(a.cap_fc1, a.cap_normed, w.y1_w, w.y1_b, Nt, C, Cy, st);
        gelu_forward(a.cap_gelu, a.cap_fc1, (size_t)Nt * C, st);
        matmul_forward(a.cap_fc2, a.cap_gelu, w.y2_w, w.y2_b, Nt, C, C, st);
        layernorm_forward(a.y, nullptr, a.y_rstd, a.cap_fc2, nullptr, nullptr, Nt, C, eps, st);
    }
    {
        NvtxRange r("patch embedding");
        // x_t patches (clean frames keep x0; edm: c_in x and x0 / sigma_data), the Conv3d as a linear, [start, patches, end]
        if (edm) patchify_forward(a.patches, a.x0, a.eps, a.frame_mask, a.samples, B, g->max_patch_elems, pg, st, g->obj.sigma_data);
        else patchify_forward(a.patches, a.x0, a.eps, a.frame_mask, a.samples, B, g->max_patch_elems, pg, st);
        matmul_forward(a.patch_tokens, a.patches, w.x_w, w.x_b, Np, C, c.in_channels * P, st);
        tokens_assemble_forward(a.resid, a.patch_tokens, w.start, w.end, a.tokrow, a.samples, N, C, st);
    }
    for (int l = 0; l < L; l++) {
        NvtxRange layer_range("block", l);
        params_forward_wait(g, l);
        const DiTLayerActs la = dit_layer(g, l);
        if (la.block_in && for_backward)
            cudaCheck(cudaMemcpyAsync(la.block_in, a.resid, (size_t)N * C * sizeof(floatX), cudaMemcpyDeviceToDevice, st));
        dit_block_forward(g, l, la);
    }
    params_forward_wait(g, ZERO_HEAD);
    {
        NvtxRange r("final layer and loss");
        // patch tokens only: LN * (1 + scale) + shift with [shift, scale] = table_f + (c or c0), then linear
        tokens_to_patches(a.patch_tokens, a.resid, a.patrow, a.samples, Np, C, st);
        layernorm_forward(a.lnf, nullptr, a.rstdf, a.patch_tokens, nullptr, nullptr, Np, C, eps, st);
        adaln_modulate_forward(a.final_in, a.lnf, w.final_table, w.final_table + C, a.cond, C, 0, 0, a.patrow, Np, C, st);
        matmul_forward(a.out, a.final_in, w.final_w, w.final_b, Np, PC, C, st);
        if (edm) edm_loss(a.dout, a.loss_tok, a.out, a.x0, a.eps, a.frame_mask, a.samples, a.patrow, pg, Np, g->obj.sigma_data, st);
        else flow_loss(a.dout, a.loss_tok, a.out, a.x0, a.eps, a.frame_mask, a.samples, a.patrow, pg, Np, st);
        cudaCheck(cudaMemcpyAsync(g->loss_tok_host, a.loss_tok, Np * sizeof(float), cudaMemcpyDeviceToHost, st));
    }
}

// The loss of the last forward (waits for it): per sample the mean over its noisy
// frames, then the mean over samples; summed in double on the host.
// --cp: the pseudo-samples' sums over the real samples; with one rank per process its share
// times n (the step's loss is then the mean over all ranks: that of the CP groups' samples).
static float dit_loss(DiT* g) {
    cudaCheck(cudaStreamSynchronize(g->stream));
    double total = 0.0;
    for (int b = 0; b < g->B; b++) {
        const DiTSample& s = g->samples[b];
        double sum = 0.0;
        for (int p = g->cu_p[b]; p < g->cu_p[b + 1]; p++) sum += g->loss_tok_host[p];
        total += sum / ((double)s.n_noisy * g->cfg.in_channels * s.H * s.W);
    }
    return (float)(total / g->cp_samples * (g->cp.local == 1 ? g->cp.n : 1));
}

// The last forward's prediction, unpatchified and cropped: packed [Cout, T, H, W] per sample.
// --cp: a rank's parts write their patches only; with one rank per process the parts are summed
// over the group (the rest is zero), so every rank gets the whole prediction.
[[maybe_unused]] static std::vector<float> dit_v_pred(DiT* g) {
    const bool spread = g->cp.on() && g->cp.local == 1;
    if (spread) cudaCheck(cudaMemsetAsync(g->act.v_pred, 0, g->out_floats * sizeof(float), g->stream));
    unpatchify(g->act.v_pred, g->act.out, g->act.samples, g->B, g->max_out_elems,
               {g->cfg.in_channels, g->cfg.out_channels, g->cfg.patch_t, g->cfg.patch_h, g->cfg.patch_w}, g->stream);
    if (spread) cp_group_sum(&g->ring, g->act.v_pred, g->out_floats, g->stream);
    std::vector<float> v(g->out_floats);
    cudaCheck(cudaMemcpyAsync(v.data(), g->act.v_pred, v.size() * sizeof(float), cudaMemcpyDeviceToHost, g->stream));
    cudaCheck(cudaStreamSynchronize(g->stream));
    return v;
}

// ----------------------------------------------------------------------------
// Backward: from the loss gradient the forward left in act.dout, block by block
// in reverse, accumulating into the fp32 gradients. act.dres carries the
// residual stream's gradient; act.dmods (fp32) collects the gradient of the
// t_block output over all blocks, act.dcond that of c / c0 from the final layer.

static void dit_backward(DiT* g) {
    NvtxRange range("dit_backward");
    const DiTConfig& c = g->cfg;
    const int B = g->B, N = g->N, Np = g->Np, Nt = g->Nt, C = c.d_model, L = c.n_layer, nh = c.n_head;
    const int hd = c.head_dim, F = c.ffn_hidden, Fq = c.freq_dim, Cy = c.caption_channels, P = dit_patch_size(c);
    const int PC = P * c.out_channels, ms = 6 * C;
    cudaStream_t st = g->stream;
    DiTActs& a = g->act;
    const DiTTensors<floatX>& w = g->w;
    const DiTTensors<float>& dw = g->dw;
    float* rs = a.reduce_scratch;
    const VarlenAttnShape self_s = {B, nh, hd, g->cu_x.data(), g->cu_x.data(), 2 * C, 2 * C, 3 * C, a.cu_x, a.cu_x};
    const VarlenAttnShape cross_s = {B, nh, hd, g->cu_x.data(), g->cu_t.data(), C, C, 2 * C, a.cu_x, a.cu_t};

    params_backward_begin(g);   // several GPUs (llmc/dist/distributed.cuh); a no-op on one
    cudaCheck(cudaMemsetAsync(a.dmods, 0, (size_t)2 * B * 6 * C * sizeof(float), st));
    cudaCheck(cudaMemsetAsync(a.dcond, 0, (size_t)2 * B * C * sizeof(float), st));
    cudaCheck(cudaMemsetAsync(a.dres, 0, (size_t)N * C * sizeof(floatX), st));
    {
        NvtxRange r("final layer backward");
        linear_backward(a.dbuf3, dw.final_w, dw.final_b, a.dout, a.final_in, w.final_w, Np, PC, C, false, rs, st);
        adaln_scale_backward(a.dbuf1, a.dbuf3, w.final_table + C, a.cond, C, 0, true, a.patrow, Np, C, st);
        adaln_param_grad(a.dcond, C, 0, 0, dw.final_table, dw.final_table + C, a.dbuf3, a.lnf, a.patrow, a.cu_p, B, Np,
                         C, a.adaln_scratch, st);
        layernorm_backward(a.dbuf2, nullptr, nullptr, a.dbuf1, a.lnf, nullptr, a.rstdf, Np, C, false, rs, st);
        patches_to_tokens(a.dres, a.dbuf2, a.patrow, a.samples, Np, C, st);   // start/end rows stay 0
    }
    params_grads_ready(g, ZERO_HEAD);   // several GPUs: the final layer's gradients can be reduced now
    for (int l = L - 1; l >= 0; l--) {
        NvtxRange layer_range("block backward", l);
        const DiTLayerActs la = dit_layer(g, l);
        dit_block_recompute(g, l, la);
        const floatX* tab = w.table + (size_t)l * 6 * C;
        const DiTTensors<float>& dl = g->dw_layers[l];   // this block's gradient slices
        float* dtab = dl.table;
        {
            NvtxRange r("mlp backward");
            // x_out = res2 + gate2 * o2
            adaln_scale_backward(a.dbuf1, a.dres, tab + 5 * C, a.mods, ms, 5 * C, false, a.tokrow, N, C, st);
            adaln_param_grad(a.dmods, ms, -1, 5 * C, nullptr, dtab + 5 * C, a.dres, la.o2, a.tokrow, a.cu_x, B, N, C,
                             a.adaln_scratch, st);
            gelu_forward(a.f1g, la.f1, (size_t)N * F, st);   // recompute the fc2 input
            linear_backward(a.dF, dl.fc2_w, dl.fc2_b, a.dbuf1, a.f1g,
                            w.fc2_w + (size_t)l * C * F, N, C, F, false, rs, st);
            gelu_backward(a.dF, a.dF, la.f1, (size_t)N * F, st);
            linear_backward(a.dbuf3, dl.fc1_w, dl.fc1_b, a.dF, la.h2,
                            w.fc1_w + (size_t)l * F * C, N, F, C, false, rs, st);
            adaln_scale_backward(a.dbuf1, a.dbuf3, tab + 4 * C, a.mods, ms, 4 * C, true, a.tokrow, N, C, st);
            adaln_param_grad(a.dmods, ms, 3 * C, 4 * C, dtab + 3 * C, dtab + 4 * C, a.dbuf3, la.xhat2, a.tokrow, a.cu_x, B,
                             N, C, a.adaln_scratch, st);
            layernorm_backward(a.dres, nullptr, nullptr, a.dbuf1, la.xhat2, nullptr, la.rstd2, N, C, true, rs, st);
        }
        {
            NvtxRange r("cross-attention backward");
            // res2 = res1 + proj(catty)
            linear_backward(a.dbuf3, dl.cproj_w, dl.cproj_b, a.dres, la.catty,
                            w.cproj_w + (size_t)l * C * C, N, C, C, false, rs, st);
            flash_attention_varlen_backward(a.dbuf1, a.dck, a.dckv + C, a.dbuf3, la.catty, la.lse_c, la.cqn, la.ckn,
                                            la.ckv + C, a.att_scratch, cross_s, st, a.att_scratch_bytes);
            qknorm_rope3d_backward(a.dbuf2, dl.cq_norm, nullptr, a.dbuf1, C, la.cq, C, la.cq_rstd,
                                   w.cq_norm + (size_t)l * hd, nullptr, nh, nh, nullptr, N, hd, a.dnw, st);
            qknorm_rope3d_backward(a.dckv, dl.ck_norm, nullptr, a.dck, C, la.ckv, 2 * C, la.ck_rstd,
                                   w.ck_norm + (size_t)l * hd, nullptr, nh, nh, nullptr, Nt, hd, a.dnw, st);
            // dy sums over the blocks' kv projections
            linear_backward(a.dy, dl.ckv_w, dl.ckv_b, a.dckv, a.y,
                            w.ckv_w + (size_t)l * 2 * C * C, Nt, 2 * C, C, l != L - 1, rs, st);
            linear_backward(a.dbuf1, dl.cq_w, dl.cq_b, a.dbuf2, la.ha,
                            w.cq_w + (size_t)l * C * C, N, C, C, false, rs, st);
            layernorm_backward(a.dres, dl.ca_w, dl.ca_b, a.dbuf1, la.xhat_a,
                               w.ca_w + (size_t)l * C, la.rstd_a, N, C, true, rs, st);
        }
        {
            NvtxRange r("self-attention backward");
            // res1 = x + gate1 * o1
            adaln_scale_backward(a.dbuf1, a.dres, tab + 2 * C, a.mods, ms, 2 * C, false, a.tokrow, N, C, st);
            adaln_param_grad(a.dmods, ms, -1, 2 * C, nullptr, dtab + 2 * C, a.dres, la.o1, a.tokrow, a.cu_x, B, N, C,
                             a.adaln_scratch, st);
            linear_backward(a.dbuf2, dl.proj_w, dl.proj_b, a.dbuf1, la.atty,
                            w.proj_w + (size_t)l * C * C, N, C, C, false, rs, st);
            if (g->cp.on())
                ring_attention_varlen_backward(&g->ring, a.dqk, a.dqk + C, a.dqkv + 2 * C, a.dbuf2, la.atty, la.lse_s, la.qkr,
                                               la.qkr + C, la.qkv + 2 * C, a.att_scratch, a.att_scratch_bytes, dit_cp_shape(g), st);
            else
                flash_attention_varlen_backward(a.dqk, a.dqk + C, a.dqkv + 2 * C, a.dbuf2, la.atty, la.lse_s, la.qkr,
                                                la.qkr + C, la.qkv + 2 * C, a.att_scratch, self_s, st, a.att_scratch_bytes);
            qknorm_rope3d_backward(a.dqkv, dl.q_norm, dl.k_norm, a.dqk, 2 * C, la.qkv,
                                   3 * C, la.qk_rstd, w.q_norm + (size_t)l * hd, w.k_norm + (size_t)l * hd, nh, 2 * nh,
                                   a.rope_cs, N, hd, a.dnw, st);
            linear_backward(a.dbuf1, dl.qkv_w, dl.qkv_b, a.dqkv, la.h1,
                            w.qkv_w + (size_t)l * 3 * C * C, N, 3 * C, C, false, rs, st);
            adaln_scale_backward(a.dbuf2, a.dbuf1, tab + 1 * C, a.mods, ms, 1 * C, true, a.tokrow, N, C, st);
            adaln_param_grad(a.dmods, ms, 0 * C, 1 * C, dtab + 0 * C, dtab + 1 * C, a.dbuf1, la.xhat1, a.tokrow, a.cu_x, B,
                             N, C, a.adaln_scratch, st);
            layernorm_backward(a.dres, nullptr, nullptr, a.dbuf2, la.xhat1, nullptr, la.rstd1, N, C, true, rs, st);
        }
        params_grads_ready(g, l);   // several GPUs: block l's gradients can be reduced while the backward goes on
    }
    {
        NvtxRange r("embeddings backward");
        // tokens: start, end, patch embedding (no gradient to the input latents)
        tokens_assemble_backward(a.dbuf1, dw.start, dw.end, a.dres, a.patrow, a.samples, B, Np, C, st);
        linear_backward(nullptr, dw.x_w, dw.x_b, a.dbuf1, a.patches, w.x_w, Np, C, c.in_channels * P, false, rs, st);
        // caption embedder
        layernorm_backward(a.dyb1, nullptr, nullptr, a.dy, a.y, nullptr, a.y_rstd, Nt, C, false, rs, st);
        linear_backward(a.dyb2, dw.y2_w, dw.y2_b, a.dyb1, a.cap_gelu, w.y2_w, Nt, C, C, false, rs, st);
        gelu_backward(a.dyb2, a.dyb2, a.cap_fc1, (size_t)Nt * C, st);
        linear_backward(nullptr, dw.y1_w, dw.y1_b, a.dyb2, a.cap_normed, w.y1_w, Nt, C, Cy, false, rs, st);
        // conditioning: mods = t_block(SiLU(cond)), cond rows 2b / 2b+1 = t_emb row + fps_emb row b
        copy_f32_to_floatX(a.dmods_x, a.dmods, (size_t)2 * B * 6 * C, st);
        linear_backward(a.dconds, dw.tb_w, nullptr, a.dmods_x, a.conds, w.tb_w, 2 * B, 6 * C, C, false, rs, st);
        column_reduce(dw.tb_b, a.dmods, (const float*)nullptr, nullptr, 2 * B, 6 * C, rs, st);
        cond_combine_backward(a.dtemb, a.dfemb, a.dcond, a.dconds, a.cond, B, C, st);
        linear_backward(a.dt_hidden_silu, dw.t2_w, dw.t2_b, a.dtemb, a.t_hidden_silu, w.t2_w, 2 * B, C, C, false, rs, st);
        silu_backward(a.dt_hidden, a.dt_hidden_silu, a.t_hidden, (size_t)2 * B * C, st);
        linear_backward(nullptr, dw.t0_w, dw.t0_b, a.dt_hidden, a.tfreq, w.t0_w, 2 * B, C, Fq, false, rs, st);
        linear_backward(a.dfps_hidden_silu, dw.f2_w, dw.f2_b, a.dfemb, a.fps_hidden_silu, w.f2_w, B, C, C, false, rs, st);
        silu_backward(a.dfps_hidden, a.dfps_hidden_silu, a.fps_hidden, (size_t)B * C, st);
        linear_backward(nullptr, dw.f0_w, dw.f0_b, a.dfps_hidden, a.ffreq, w.f0_w, B, C, Fq, false, rs, st);
    }
    params_grads_ready(g, ZERO_TAIL);
}

static void dit_zero_grad(DiT* g) { params_zero_grad(g, g->stream); }

// What the forward and backward pass their kernels from the batch, as a CUDA graph's key
// (llmc/train/step_graph.h): the samples' latent shapes and text lengths. Everything else
// of a batch (latents, noise, text, t, frame masks and the per-token rows made from them)
// is read from device buffers that dit_set_batch and the batch fill before the step.
static std::vector<int64_t> dit_graph_key(const DiTBatchHost& bt) {
    std::vector<int64_t> k = {bt.B};
    for (int b = 0; b < bt.B; b++) k.insert(k.end(), {bt.T[b], bt.H[b], bt.W[b], bt.text_len[b]});
    return k;
}

// ----------------------------------------------------------------------------
// Update: global grad norm (deterministic), clip, AdamW per tensor
// (llmc/model/params.cuh). Returns the norm before clipping; a non-finite norm skips the step.

// the MUG-V fine-tuning recipe (docs/dit.md)
static OptimConfig dit_optim_defaults() {
    OptimConfig o;
    o.lr = 1e-4f; o.beta1 = 0.9f; o.beta2 = 0.999f; o.eps = 1e-10f; o.weight_decay = 0.0f; o.grad_clip = 1.0f;
    return o;
}
static float dit_update(DiT* g, const OptimConfig& o, float lr) { return params_update(g, o, lr, g->stream); }

// ----------------------------------------------------------------------------
// Sampling (docs/dit.md "Sampling"): the Euler ODE from pure noise at
// t = 1 to t = 0 over t_i = shift(1 - i/steps), z <- z + v (t_i - t_{i+1}), with
// classifier-free guidance v = v_uncond + s (v_cond - v_uncond), v_uncond from
// the null caption. Image-to-video pins frame 0 to a given clean latent: the
// frame mask marks it clean, so the forward takes it as x0 with the t0
// modulation exactly as in training, and it is put back after every step.
// The model's input is the current z: patchify mixes (1 - t) x0 + t eps for the
// noisy frames, so x0 = eps = z gives z. The cond and uncond passes of all
// prompts are packed into batches that fit the buffers the model was built
// with (a sample needs no more room than a training sample of its shape); the
// Euler update runs on the host in fp32. Every prompt's noise comes from its own
// RNG stream (seed, prompt index): a sample does not depend on the batching.
// EDM (llmc/model/dit_objective.h): the deterministic Heun sampler (Karras et
// al. 2022, Algorithm 1 without churn) from z = sigma_max noise over the float
// noise levels of edm_sigma_steps: D(z; s) = c_skip z + c_out F with F the
// network on x0 = z, eps = 0 (its input c_in z; clean frames z / sigma_data),
// guided D = D_u + s (D_c - D_u); d = (z - D) / s_i, z' = z + (s_{i+1} - s_i) d,
// and unless s_{i+1} = 0 the correction z <- z + (s_{i+1} - s_i) (d + d') / 2 with
// d' at (z', s_{i+1}); frame 0 is put back after every update. 2 steps - 1
// evaluations. dev/cpu/dit.cpp dit_cpu_edm_sample is its reference.

struct DiTPrompt {
    int T = 0, H = 0, W = 0;         // latent shape
    float fps = 24.0f;
    int text_len = 0;
    std::vector<float> text;         // [text_len, Cy]
    std::vector<float> first_frame;  // [Cin, H, W]: image-to-video (frame 0 pinned); empty: text-to-video
    std::vector<float> noise;        // [Cin, T, H, W] N(0, 1) starting noise; empty: drawn from (seed, prompt index)
    std::string caption;             // for humans
};

struct SamplerConfig {
    int steps = 25;
    float cfg_scale = 4.0f;          // 1: no guidance (no uncond pass)
    float t_shift = 1.0f;            // rf, as the training's: 1 none, > 0 given, 0 automatic from the latent shape
    int stop_after = 0;              // run only the first this many steps of the schedule (0: all; the tests)
    std::vector<float> null_text;    // [Cy] the null caption of guidance; empty: dit_null_caption
};

// The resolution/length shift ratio r of t <- r t / (1 + (r - 1) t): t_shift when
// given (> 0), else sqrt(H_px W_px / 512^2) * sqrt(frames) with H_px = 8 H (the
// spec's formula; "frames" is taken as the latent T).
static double dit_shift_ratio(float t_shift, int T, int H, int W) {
    return t_shift > 0 ? (double)t_shift : sqrt(8.0 * H * 8.0 * W / (512.0 * 512.0)) * sqrt((double)T);
}
static double dit_shift_t(double r, double u) { return r * u / (1.0 + (r - 1.0) * u); }

// The null caption of classifier-free guidance: one token, the fixed "<null>" word
// vector (llmc/data/moving_shapes.h); the trainer's caption dropout uses the same.
static std::vector<float> dit_null_caption(int Cy) { return moving_shapes_null_features(Cy); }

static bool dit_capacity_fits(const DiTCapacity& need, const DiTCapacity& cap) {
    return need.B <= cap.B && need.N <= cap.N && need.Np <= cap.Np && need.Nt <= cap.Nt && need.frames <= cap.frames &&
           need.lat <= cap.lat && need.out <= cap.out && need.max_patch_elems <= cap.max_patch_elems &&
           need.max_out_elems <= cap.max_out_elems;
}

// Samples one clip per prompt; returns each as [Cin, T, H, W] (normalized latent space).
static std::vector<std::vector<float>> dit_sample(DiT* g, const std::vector<DiTPrompt>& prompts, const SamplerConfig& sc, uint64_t seed) {
    NvtxRange range("dit_sample");
    const DiTConfig& c = g->cfg;
    const int Cin = c.in_channels, Cy = c.caption_channels, n = (int)prompts.size();
    const bool edm = g->obj.kind == DIT_OBJECTIVE_EDM;
    if (sc.steps <= 0) fail("sampler: steps must be > 0, got %d", sc.steps);
    if (sc.stop_after < 0 || sc.stop_after > sc.steps) fail("sampler: stop_after %d outside [0, steps %d]", sc.stop_after, sc.steps);
    if (!std::isfinite(sc.cfg_scale)) fail("sampler: guidance scale %g is not finite", sc.cfg_scale);
    if (!sc.null_text.empty() && sc.null_text.size() != (size_t)Cy) fail("sampler: null caption has %zu floats (expected %d)", sc.null_text.size(), Cy);
    const bool guided = sc.cfg_scale != 1.0f;
    const int steps_run = sc.stop_after > 0 ? sc.stop_after : sc.steps;
    const std::vector<float> null_text = sc.null_text.empty() ? dit_null_caption(Cy) : sc.null_text;
    std::vector<std::vector<float>> z(n), vc(n), vu(n);
    std::vector<std::vector<double>> ts(n);
    const std::vector<double> sig_d = edm ? edm_sigma_steps(g->obj, sc.steps) : std::vector<double>();
    const std::vector<float> sig(sig_d.begin(), sig_d.end());   // edm: the float noise levels, sigma_max .. 0
    for (int p = 0; p < n; p++) {
        const DiTPrompt& q = prompts[p];
        if (q.T <= 0 || q.H <= 0 || q.W <= 0) fail("sampler: prompt %d has shape %dx%dx%d", p, q.T, q.H, q.W);
        if (q.text_len <= 0 || q.text.size() != (size_t)q.text_len * Cy)
            fail("sampler: prompt %d has %zu text floats for %d tokens of %d channels", p, q.text.size(), q.text_len, Cy);
        const size_t plane = (size_t)q.H * q.W;
        if (!q.first_frame.empty() && q.first_frame.size() != (size_t)Cin * plane)
            fail("sampler: prompt %d first frame has %zu floats (expected %zu = %d x %d x %d)", p, q.first_frame.size(), (size_t)Cin * plane, Cin, q.H, q.W);
        if (!q.first_frame.empty() && q.T < 2) fail("sampler: prompt %d is image-to-video with %d frame (nothing to generate)", p, q.T);
        if (!q.noise.empty() && q.noise.size() != (size_t)Cin * q.T * plane)
            fail("sampler: prompt %d noise has %zu floats (expected %zu)", p, q.noise.size(), (size_t)Cin * q.T * plane);
        z[p].resize((size_t)Cin * q.T * plane);
        if (!q.noise.empty()) {
            z[p] = q.noise;
        } else {
            Rng r;
            rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)p);
            for (float& x : z[p]) x = rng_normal(&r);
        }
        if (edm) {
            for (float& x : z[p]) x *= sig[0];
        } else {
            const double ratio = dit_shift_ratio(sc.t_shift, q.T, q.H, q.W);
            for (int i = 0; i <= sc.steps; i++) ts[p].push_back(dit_shift_t(ratio, 1.0 - (double)i / sc.steps));
        }
    }
    auto pin = [&](std::vector<float>& zp, int p) {   // frame 0 of [Cin, T, H, W] <- the clean frame
        const DiTPrompt& q = prompts[p];
        if (q.first_frame.empty()) return;
        const size_t plane = (size_t)q.H * q.W;
        for (int ch = 0; ch < Cin; ch++)
            std::copy(q.first_frame.begin() + ch * plane, q.first_frame.begin() + (ch + 1) * plane, zp.begin() + (size_t)ch * q.T * plane);
    };
    for (int p = 0; p < n; p++) pin(z[p], p);
    // forward items (prompt, cond or uncond), packed greedily into batches that fit
    struct Item { int p; bool cond; };
    std::vector<std::vector<Item>> batches;
    {
        std::vector<Item> cur;
        DiTCapacity need;
        for (int p = 0; p < n; p++)
            for (int k = 0; k < (guided ? 2 : 1); k++) {
                const Item it = {p, k == 0};
                const DiTPrompt& q = prompts[p];
                const DiTCapacity one = dit_capacity_sample(c, q.T, q.H, q.W, it.cond ? q.text_len : 1);
                if (!dit_capacity_fits(one, g->whole_cap))
                    fail("sampler: prompt %d (%dx%dx%d latent, %d text tokens) is larger than the model's buffers", p, q.T, q.H, q.W, q.text_len);
                const DiTCapacity with = dit_capacity_add(need, one);
                if (!cur.empty() && !dit_capacity_fits(with, g->whole_cap)) { batches.push_back(cur); cur.clear(); need = one; }
                else need = with;
                cur.push_back(it);
            }
        if (!cur.empty()) batches.push_back(cur);
    }
    // the network on every prompt's zs at time / noise level tp(p): its output's first Cin channels into
    // vc (cond) and vu (uncond). rf: x0 = eps = z (the input mixes to z); edm: x0 = z, eps = 0 (input c_in z)
    std::vector<float> x, e, text;
    auto run_model = [&](const std::vector<std::vector<float>>& zs, const std::function<float(int)>& tp) {
        for (const std::vector<Item>& items : batches) {
            DiTBatchHost bt;
            bt.B = (int)items.size();
            x.clear();
            text.clear();
            for (const Item& it : items) {
                const DiTPrompt& q = prompts[it.p];
                const bool i2v = !q.first_frame.empty();
                bt.T.push_back(q.T); bt.H.push_back(q.H); bt.W.push_back(q.W);
                bt.text_len.push_back(it.cond ? q.text_len : 1);
                bt.has_mask.push_back(i2v ? 1 : 0);
                for (int f = 0; f < q.T; f++) bt.frame_mask.push_back(i2v && f == 0 ? 0 : 1);
                bt.t.push_back(tp(it.p));
                bt.fps.push_back(q.fps);
                x.insert(x.end(), zs[it.p].begin(), zs[it.p].end());
                const std::vector<float>& tx = it.cond ? q.text : null_text;
                text.insert(text.end(), tx.begin(), tx.end());
            }
            dit_set_batch(g, bt);
            if (edm) e.assign(x.size(), 0.0f);
            dit_upload_batch_data(g, x.data(), edm ? e.data() : x.data(), text.data());
            dit_forward(g, false);
            const std::vector<float> v = dit_v_pred(g);   // packed [Cout, T, H, W]; the first Cin channels
            for (int b = 0; b < bt.B; b++) {
                const long long o = g->samples[b].out0;
                std::vector<float>& dst = items[b].cond ? vc[items[b].p] : vu[items[b].p];
                dst.assign(v.begin() + o, v.begin() + o + (long long)zs[items[b].p].size());
            }
        }
    };
    if (!edm) {
        for (int i = 0; i < steps_run; i++) {
            run_model(z, [&](int p) { return (float)ts[p][i]; });
            for (int p = 0; p < n; p++) {
                const float dt = (float)(ts[p][i] - ts[p][i + 1]), s = sc.cfg_scale;
                float* zp = z[p].data();
                const float *c_ = vc[p].data(), *u = guided ? vu[p].data() : nullptr;
                for (size_t k = 0; k < z[p].size(); k++) zp[k] += (guided ? u[k] + s * (c_[k] - u[k]) : c_[k]) * dt;
                pin(z[p], p);
            }
        }
        return z;
    }
    // edm: d = (z - D(z; sigma)) / sigma with the guided denoiser; Euler, then Heun's correction
    std::vector<std::vector<float>> d0(n), z1(n);
    auto slope = [&](const std::vector<std::vector<float>>& zs, float sigma, std::vector<std::vector<float>>* d) {
        run_model(zs, [&](int) { return sigma; });
        const EdmPrecond pre = edm_precond(sigma, g->obj.sigma_data);
        const float c_skip = (float)pre.c_skip, c_out = (float)pre.c_out, s = sc.cfg_scale;
        for (int p = 0; p < n; p++) {
            (*d)[p].resize(zs[p].size());
            for (size_t k = 0; k < zs[p].size(); k++) {
                const float dc = c_skip * zs[p][k] + c_out * vc[p][k];
                const float du = guided ? c_skip * zs[p][k] + c_out * vu[p][k] : 0.0f;
                (*d)[p][k] = (zs[p][k] - (guided ? du + s * (dc - du) : dc)) / sigma;
            }
        }
    };
    std::vector<std::vector<float>> d1(n);
    for (int i = 0; i < steps_run; i++) {
        const float s0 = sig[i], s1 = sig[i + 1], h = s1 - s0;
        slope(z, s0, &d0);
        for (int p = 0; p < n; p++) {
            z1[p].resize(z[p].size());
            for (size_t k = 0; k < z[p].size(); k++) z1[p][k] = z[p][k] + h * d0[p][k];
            pin(z1[p], p);
        }
        if (s1 > 0) {
            slope(z1, s1, &d1);
            for (int p = 0; p < n; p++) {
                for (size_t k = 0; k < z[p].size(); k++) z1[p][k] = z[p][k] + h * 0.5f * (d0[p][k] + d1[p][k]);
                pin(z1[p], p);
            }
        }
        z.swap(z1);
    }
    return z;
}

// Pictures of sampled clips under dir: grid.png (one row per clip, frames left to
// right), sample_NNN.gif per clip (looping, 8 frames per second), captions.txt
// (row, caption, and a note per clip). Latents show their first three channels
// as RGB in [-1, 1] (moving shapes: the pixels themselves).
static void dit_write_samples(const std::string& dir, const std::vector<std::vector<float>>& clips, const std::vector<DiTPrompt>& prompts,
                              const std::vector<std::string>& notes, int Cin) {
    if (dir.empty() || clips.empty()) return;
    const DiTPrompt& q0 = prompts[0];
    const int scale = std::max(1, std::min(8, 128 / std::max(q0.H, q0.W)));
    std::vector<const float*> row;
    std::string txt = "# row\tcaption\tnote\n";
    for (size_t k = 0; k < clips.size(); k++) {
        const DiTPrompt& q = prompts[k];
        char name[64];
        snprintf(name, sizeof name, "/sample_%03zu.gif", k);
        write_clip_gif(dir + name, clips[k].data(), Cin, q.T, q.H, q.W, scale, 12);
        if (q.T == q0.T && q.H == q0.H && q.W == q0.W) row.push_back(clips[k].data());   // the grid holds clips of the first one's shape
        txt += std::to_string(k) + "\t" + q.caption + "\t" + (k < notes.size() ? notes[k] : "") + "\n";
    }
    write_clip_grid_png(dir + "/grid.png", row, Cin, q0.T, q0.H, q0.W, scale);
    const std::string path = dir + "/captions.txt", tmp = path + ".tmp";
    FILE* f = fopen_or_fail(tmp, "wb");
    fwrite_exact(txt.data(), txt.size(), f, tmp);
    finish_atomic_write(f, tmp, path);
}

// ----------------------------------------------------------------------------
// Evaluation on moving shapes: n random captions (the generator's clips of a
// separate seed: uniform attributes, the training's caption forms), one sample
// each, moving_shapes_classify on every sample, and the fraction whose color,
// shape and direction match the caption (speed: of those whose caption names
// it; found: samples where the classifier found an object at all). Image-to-
// video pins the clip's real frame 0, so color and shape are given there and
// the direction is what the model has to get right.

struct MsEval {
    int n = 0, color = 0, shape = 0, direction = 0, speed = 0, speed_named = 0, found = 0;
    double seconds = 0;
    double frame0_err = -1;   // image-to-video: largest |sample - given| over frame 0's pixels (-1: text-to-video)
};

static std::string ms_eval_line(const char* what, const MsEval& e) {
    char buf[320];
    auto pct = [](int a, int b) { return b > 0 ? 100.0 * a / b : 0.0; };
    snprintf(buf, sizeof buf, "%s: %d samples | color %.1f%% | shape %.1f%% | direction %.1f%% | speed %.1f%% (of %d) | object found %.1f%% | %.1f s",
             what, e.n, pct(e.color, e.n), pct(e.shape, e.n), pct(e.direction, e.n), pct(e.speed, e.speed_named), e.speed_named,
             pct(e.found, e.n), e.seconds);
    std::string line = buf;
    if (e.frame0_err >= 0) {
        snprintf(buf, sizeof buf, " | frame 0 kept: max |diff| %.2e", e.frame0_err);
        line += buf;
    }
    return line;
}

static MsEval moving_shapes_evaluate(DiT* g, const MovingShapesConfig& ms, int n, bool i2v, const SamplerConfig& sc, uint64_t seed,
                                     const std::string& out_dir) {
    const double t0 = wall_seconds();
    MovingShapesConfig ecfg = ms;
    ecfg.seed = seed;
    const int T = ms.frames, S = ms.size, Cy = g->cfg.caption_channels;
    const size_t plane = (size_t)S * S;
    std::vector<MovingShapesClip> truth(n);
    std::vector<DiTPrompt> prompts(n);
    std::vector<float> clip((size_t)3 * T * plane);
    for (int i = 0; i < n; i++) {
        truth[i] = moving_shapes_sample(ecfg, 1, i);
        DiTPrompt& q = prompts[i];
        q.T = T; q.H = S; q.W = S; q.fps = ms.fps;
        q.text = moving_shapes_text_features(truth[i].words, Cy);
        q.text_len = (int)truth[i].words.size();
        q.caption = truth[i].caption;
        if (i2v) {
            moving_shapes_render(ecfg, truth[i], clip.data());
            q.first_frame.resize(3 * plane);
            for (int ch = 0; ch < 3; ch++) std::copy(clip.begin() + ch * T * plane, clip.begin() + ch * T * plane + plane, q.first_frame.begin() + ch * plane);
        }
    }
    const std::vector<std::vector<float>> out = dit_sample(g, prompts, sc, seed + 1);
    MsEval e;
    e.n = n;
    std::vector<std::string> notes(n);
    if (i2v) {  // the clip is [3, T, S, S]: frame 0 of channel ch at ch*T*plane
        e.frame0_err = 0;
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < 3; ch++)
                for (size_t j = 0; j < plane; j++)
                    e.frame0_err = std::max(e.frame0_err, (double)fabsf(out[i][ch * T * plane + j] - prompts[i].first_frame[ch * plane + j]));
    }
    for (int i = 0; i < n; i++) {
        const MovingShapesGuess gs = moving_shapes_classify(out[i].data(), T, S, S);
        const MovingShapesAttrs& a = truth[i].a;
        const bool named = std::find(truth[i].words.begin(), truth[i].words.end(), MS_SPEED_NAMES[a.speed]) != truth[i].words.end();
        e.found += gs.frames_found > 0;
        e.color += gs.a.color == a.color;
        e.shape += gs.a.shape == a.shape;
        e.direction += gs.a.direction == a.direction;
        e.speed_named += named;
        e.speed += named && gs.a.speed == a.speed;
        auto name = [](const char* const* names, int v) { return v >= 0 ? names[v] : "?"; };
        notes[i] = std::string("seen: ") + name(MS_COLOR_NAMES, gs.a.color) + " " + name(MS_SHAPE_NAMES, gs.a.shape) + " moving " +
                   name(MS_DIRECTION_NAMES, gs.a.direction) + " " + name(MS_SPEED_NAMES, gs.a.speed) + " (object in " +
                   std::to_string(gs.frames_found) + "/" + std::to_string(T) + " frames)";
    }
    e.seconds = wall_seconds() - t0;
    dit_write_samples(out_dir, out, prompts, notes, 3);
    return e;
}

// ----------------------------------------------------------------------------
// Training configuration and main loop.

// checkpoint, resume and fault flags (ckpt_dir, resume, max_bad_steps, ...): CkptFlags, llmc/train/run_control.h
struct TrainConfig : CkptFlags {
    std::string preset = "debug";
    // the built-in moving-shapes data (llmc/data/moving_shapes.h), made on first use; any
    // other glob: latent shards (llmc/data/latent_data.h)
    std::string train_data = "data/moving_shapes/train_*.lat";
    int random_data = 0;            // synthetic batches of random latents and text (benchmarks; no files)
    int cuda_graph = 1;             // one GPU: the forward and backward as one CUDA graph while the shapes repeat
    std::string log_dir = "log/dit";
    int batch_size = 8;
    int steps = 20;
    // kind, warmup, min_lr_frac, wsd_decay_frac as train_gpt's (llmc/train/schedule.h): a constant lr by default
    Schedule sched = {"trapezoid", 0, 0, 0.0f, 0.0f, 0.0f};
    float max_minutes = 0.0f;       // stop training after this long (0: no limit)
    float ema_decay = 0.0f;         // EMA of the weights (MUG-V: 0.9999); 0: none
    int seed = 1337;
    // synthetic batches: every sample T x H x W latent, text_len tokens
    int frames = 8, height = 32, width = 32, text_len = 300;
    float fps = 24.0f;
    float t_shift = 1.0f;           // timestep shift ratio: 1 none, > 0 given, 0 automatic
    float caption_dropout = 0.0f;   // probability a training caption becomes the null caption (for guidance)
    float i2v_prob = 0.0f;          // probability a training sample without clean frames gets frame 0 clean (image-to-video)
    // sampling and evaluation
    int sample_every = 0;           // write samples every N steps (0: never)
    int sample_count = 8;           // clips per periodic sample
    int eval_samples = 0;           // moving shapes: clips per evaluation after training (0: none)
    int eval_seed = 4242;           // the evaluation's captions, first frames and noise
    // the built-in dataset
    int ms_frames = 8, ms_size = 32;
    long long ms_train_samples = 4096, ms_val_samples = 256;
};

// t ~ sigmoid(N(0, 1)), then the resolution/length shift t <- r t / (1 + (r - 1) t)
// (dit_shift_ratio: r given, or automatic from the latent shape).
static float sample_t(Rng* rng, float t_shift, int T, int H, int W) {
    const double u = 1.0 / (1.0 + exp(-(double)rng_normal(rng)));
    return (float)dit_shift_t(dit_shift_ratio(t_shift, T, H, W), u);
}
// A training sample's t (rf) or sigma (edm: ln sigma ~ N(p_mean, p_std^2)); one normal draw either way.
static float sample_level(Rng* rng, const DiTObjective& o, float t_shift, int T, int H, int W) {
    return o.kind == DIT_OBJECTIVE_EDM ? edm_sample_sigma(rng, o) : sample_t(rng, t_shift, T, H, W);
}

// A step's batch: this rank's B samples of the global batch of B x world (one
// GPU: rank 0 of 1, the whole batch), global sample k = b * world + rank (the
// latent loader's slicing), with exactly the random draws and noise the one-GPU
// run of the global batch gives them: every rank draws t (and the caption-dropout
// and image-to-video draws) for every global sample in order and keeps its own,
// and a sample's noise is its piece of the global batch's noise (gaussian_fill_at
// at its offset in the global packing). The loss is then the global batch's up to
// the order of additions. Fills x0 (synthetic), text and eps on the device.
static void dit_batch_of_rank(DiT* m, const TrainConfig& tc, const DiTConfig& mc, bool synthetic, LatentLoader* loader, LatentBatch* lb,
                              Rng* t_rng, Rng* aug_rng, const std::vector<float>& null_text, std::vector<float>* text, uint64_t nseed,
                              int rank, int world, DiTBatchHost* bt) {
    const int B = tc.batch_size, G = B * world, Cy = mc.caption_channels;
    std::vector<size_t> glat(G + 1, 0);   // global latent offsets (floats), as the one-GPU packing
    if (synthetic) {
        const size_t per = (size_t)mc.in_channels * tc.frames * tc.height * tc.width;
        for (int k = 0; k < G; k++) glat[k + 1] = glat[k] + per;
        for (int k = 0; k < G; k++) {
            const float t = sample_level(t_rng, m->obj, tc.t_shift, tc.frames, tc.height, tc.width);
            if (k % world != rank) continue;
            bt->T.push_back(tc.frames); bt->H.push_back(tc.height); bt->W.push_back(tc.width);
            bt->text_len.push_back(tc.text_len); bt->has_mask.push_back(0); bt->fps.push_back(tc.fps);
            bt->t.push_back(t);
            for (int f = 0; f < tc.frames; f++) bt->frame_mask.push_back(1);
        }
        dit_set_batch(m, *bt);
        const size_t tper = (size_t)tc.text_len * Cy;
        for (int b = 0; b < B; b++) {
            const int k = b * world + rank;
            gaussian_fill_at(m->act.x0 + m->samples[b].lat0, glat[k + 1] - glat[k], nseed + 0, glat[k], 0.0f, 1.0f, m->stream);
            gaussian_fill_at(m->act.text + (size_t)m->cu_t[b] * Cy, tper, nseed + 2, (size_t)k * tper, 0.0f, 1.0f, m->stream);
        }
    } else {
        for (int k = 0; k < G; k++) {   // the global batch's shapes, before the loader moves on
            const int64_t j = loader->sample + k;
            const LatentSampleInfo& si = loader->samples[loader->order.empty() ? (size_t)j : (size_t)loader->order[j]];
            glat[k + 1] = glat[k] + (size_t)mc.in_channels * si.T * si.H * si.W;
        }
        latent_loader_next(loader, lb);
        text->clear();
        for (int k = 0; k < G; k++) {
            const bool drop = tc.caption_dropout > 0 && rng_uniform(aug_rng) < tc.caption_dropout;
            const bool i2v = tc.i2v_prob > 0 && rng_uniform(aug_rng) < tc.i2v_prob;
            if (k % world != rank) { sample_level(t_rng, m->obj, tc.t_shift, 1, 1, 1); continue; }   // another rank's sample: one draw, as in its loop
            const int b = k / world;
            const int clean = lb->clean_frames[b] > 0 ? lb->clean_frames[b] : (i2v && lb->T[b] > 1 ? 1 : 0);
            bt->T.push_back(lb->T[b]); bt->H.push_back(lb->H[b]); bt->W.push_back(lb->W[b]);
            bt->text_len.push_back(drop ? 1 : lb->text_len[b]); bt->fps.push_back(lb->fps[b]);
            bt->has_mask.push_back(clean > 0 ? 1 : 0);
            for (int f = 0; f < lb->T[b]; f++) bt->frame_mask.push_back(f < clean ? 0 : 1);
            bt->t.push_back(sample_level(t_rng, m->obj, tc.t_shift, lb->T[b], lb->H[b], lb->W[b]));
            if (drop) text->insert(text->end(), null_text.begin(), null_text.end());
            else text->insert(text->end(), lb->text.begin() + (size_t)lb->text_offset[b] * lb->D, lb->text.begin() + (size_t)lb->text_offset[b + 1] * lb->D);
        }
        dit_set_batch(m, *bt);
        dit_upload_batch_data(m, lb->latents.data(), nullptr, text->data());
    }
    for (int b = 0; b < B; b++) {
        const int k = b * world + rank;
        gaussian_fill_at(m->act.eps + m->samples[b].lat0, glat[k + 1] - glat[k], nseed + 1, glat[k], 0.0f, 1.0f, m->stream);
    }
}

#ifndef TRAIN_DIT_NO_MAIN
int main(int argc, char** argv) {
    // progress lines reach a redirected log (`> run.log`, a pipe) as they are printed, not in 4 KB blocks
    setvbuf(stdout, NULL, _IOLBF, 0);
    TrainConfig tc;
    DiTConfig mc;
    OptimConfig oc = dit_optim_defaults();
    SamplerConfig sc;
    DiTObjective obj;
    std::string objective_name = "rf";
    DistFlags df;   // several GPUs (llmc/dist/distributed.cuh)
    tc.preset = prescan_flag(argc, argv, "--preset", tc.preset);
    if (!dit_preset(tc.preset, &mc)) fail("flag --preset: unknown preset '%s' (expected one of: %s)", tc.preset.c_str(), DIT_PRESET_NAMES);
    // the moving-shapes run (no data flags): a model, schedule and sampling that learn the
    // built-in dataset in minutes on one GPU; every value here is a default that flags override
    const bool moving_shapes = prescan_flag(argc, argv, "--random-data", "0") == "0" &&
                               prescan_flag(argc, argv, "--train-data", tc.train_data) == tc.train_data;
    if (moving_shapes) {
        mc.in_channels = 3; mc.out_channels = 6; mc.caption_channels = 64;
        if (prescan_flag(argc, argv, "--preset", "").empty()) mc.n_layer = 6;   // the debug preset's width, 6 blocks
        tc.batch_size = 32; tc.steps = 3600; tc.sched.warmup = 200; tc.sched.wsd_decay_frac = 0.2f; tc.max_minutes = 13.0f;
        oc.lr = 3e-4f;
        tc.caption_dropout = 0.1f; tc.i2v_prob = 0.25f;
        tc.sample_every = 500; tc.eval_samples = 64;
        // EDM's sigma_data stands for the data's scale (its second moment): these pixels are mostly
        // background at -1, so it is about 1 here, not the 0.5 of zero-centred images. EDM's noise
        // levels were set for data of scale 0.5: relative to this data they stay EDM's when every
        // sigma doubles (ln 2 on P_mean, both sampler ends twice); EDM's own levels starve the
        // large noise that decides shape and motion (docs/results.md, scripts/edm_check.sh)
        obj.sigma_data = 1.0f;
        obj.p_mean = -0.51f; obj.sigma_min = 0.004f; obj.sigma_max = 160.0f;
    }
    const DiTObjective obj_defaults = obj;   // EDM's settings before the flags (given with rf: an error)

    ArgParser ap;
    ap.program = "train_dit";
    ap.usage = "./train_dit [--preset NAME] [flags]   (no flags: train on the built-in moving-shapes data, sample, evaluate)";
    ap.section("run");
    ap.add_string("--preset", &tc.preset, (std::string("model preset: ") + DIT_PRESET_NAMES).c_str());
    ap.add_string("--train-data", &tc.train_data, "latent shards (glob, llmc/data/latent_data.h); the default is the moving-shapes data, built on first use");
    ap.add_bool("--random-data", &tc.random_data, "train on random synthetic batches (benchmarks; no files read)");
    ap.add_string("--log-dir", &tc.log_dir, "where train.log, loss.svg, samples/ and eval/ go (\"\" for none)");
    ap.add_int("--seed", &tc.seed, "seed for init, noise and t");
    ap.add_bool("--cuda-graph", &tc.cuda_graph, "one GPU: replay the forward and backward as one CUDA graph while the batch's "
                "shapes repeat, the same bits as kernel by kernel (0, and on several GPUs: kernel by kernel)");
    ap.section("batch and schedule");
    ap.add_int("--batch-size", &tc.batch_size, "samples per step");
    run_add_schedule_flags(ap, &tc.steps, &tc.max_minutes, &oc.lr, &tc.sched);
    ap.add_string("--objective", &objective_name, "training objective: rf (rectified flow, MUG-V) or edm (EDM, Karras et al. 2022: NVIDIA DFM's Megatron DiT); stored in checkpoints");
    ap.add_float("--t-shift", &tc.t_shift, "rf: timestep shift ratio, training and sampling (1: none; 0: automatic from the latent shape)");
    ap.add_float("--edm-sigma-data", &obj.sigma_data, "edm: sigma_data of the preconditioning (the data's scale, its RMS; the moving-shapes run: 1); stored in checkpoints");
    ap.add_float("--edm-p-mean", &obj.p_mean, "edm: mean of the training ln sigma");
    ap.add_float("--edm-p-std", &obj.p_std, "edm: standard deviation of the training ln sigma");
    ap.add_float("--edm-sigma-min", &obj.sigma_min, "edm: the sampler's last noise level (and the clean frames' c_noise)");
    ap.add_float("--edm-sigma-max", &obj.sigma_max, "edm: the sampler's first noise level");
    ap.add_float("--edm-rho", &obj.rho, "edm: the sampler's schedule exponent");
    ap.add_float("--caption-dropout", &tc.caption_dropout, "probability a caption is replaced by the null caption (classifier-free guidance)");
    ap.add_float("--i2v-prob", &tc.i2v_prob, "probability a sample without clean frames gets frame 0 as clean conditioning (image-to-video)");
    ap.add_float("--ema-decay", &tc.ema_decay, "keep an EMA of the weights with this decay (MUG-V: 0.9999; 0: none); samples and the evaluation then use it; saved in checkpoints");
    ap.section("synthetic batches (--random-data 1)");
    ap.add_int("--frames", &tc.frames, "latent frames T per sample");
    ap.add_int("--height", &tc.height, "latent height H per sample");
    ap.add_int("--width", &tc.width, "latent width W per sample");
    ap.add_int("--text-len", &tc.text_len, "text tokens per sample");
    ap.add_float("--fps", &tc.fps, "fps of every sample");
    ap.section("moving-shapes data (the default --train-data, built once into data/moving_shapes)");
    ap.add_int("--ms-frames", &tc.ms_frames, "frames per clip");
    ap.add_int("--ms-size", &tc.ms_size, "frame height = width in pixels");
    ap.add_int64("--ms-train-samples", &tc.ms_train_samples, "training clips");
    ap.add_int64("--ms-val-samples", &tc.ms_val_samples, "validation clips");
    ap.section("sampling and evaluation (rf: Euler; edm: Heun; classifier-free guidance)");
    ap.add_int("--sample-every", &tc.sample_every, "write samples (grid.png, GIFs) under log-dir/samples every N steps (0: never)");
    ap.add_int("--sample-count", &tc.sample_count, "clips per periodic sample");
    ap.add_int("--sample-steps", &sc.steps, "sampler steps (rf: Euler steps; edm: Heun steps, 2 x steps - 1 evaluations)");
    ap.add_float("--cfg-scale", &sc.cfg_scale, "classifier-free guidance scale (1: no guidance)");
    ap.add_int("--eval-samples", &tc.eval_samples, "moving shapes: after training, sample this many random captions (text- and image-to-video) and score them (0: none)");
    ap.add_int("--eval-seed", &tc.eval_seed, "seed of the evaluation's captions and noise");
    ckpt_add_flags(ap, &tc);
    optim_add_flags(ap, &oc);
    dist_add_flags(ap, &df);
    dit_config_add_flags(ap, &mc);
    RunFlags rf;   // --attn-backward (and MEGA_FLASH_SM90), --plan
    run_add_flags(ap, &rf);
    if (!run_parse_flags(ap, argc, argv, &rf)) return 0;
    dit_config_finalize(&mc);
    if (tc.batch_size <= 0) fail("flag --batch-size: must be > 0, got %d", tc.batch_size);
    run_validate_schedule_flags(tc.steps, tc.max_minutes, tc.sched);
    optim_validate(oc);
    if (!(tc.t_shift >= 0 && std::isfinite(tc.t_shift))) fail("flag --t-shift: must be a finite number >= 0");
    obj.kind = dit_objective_parse_or_fail(objective_name);
    dit_objective_check_or_fail(obj);
    {
        const DiTObjective& d = obj_defaults;
        if (obj.kind != DIT_OBJECTIVE_EDM && (obj.sigma_data != d.sigma_data || obj.p_mean != d.p_mean || obj.p_std != d.p_std ||
                                             obj.sigma_min != d.sigma_min || obj.sigma_max != d.sigma_max || obj.rho != d.rho))
            fail("flag --edm-*: EDM's settings are used with --objective edm only (this run has --objective %s)", objective_name.c_str());
        if (obj.kind == DIT_OBJECTIVE_EDM && tc.t_shift != 1.0f)
            fail("flag --t-shift: rectified flow's timestep shift, not used with --objective edm (its noise levels: --edm-p-mean/--edm-p-std)");
    }
    if (!(tc.caption_dropout >= 0 && tc.caption_dropout <= 1)) fail("flag --caption-dropout: must be in [0, 1], got %g", tc.caption_dropout);
    if (!(tc.ema_decay >= 0 && tc.ema_decay < 1)) fail("flag --ema-decay: must be in [0, 1), got %g", tc.ema_decay);
    if (!(tc.i2v_prob >= 0 && tc.i2v_prob <= 1)) fail("flag --i2v-prob: must be in [0, 1], got %g", tc.i2v_prob);
    if (tc.frames <= 0 || tc.height <= 0 || tc.width <= 0) fail("flag --frames/--height/--width: must be > 0");
    // --text-len shapes only the synthetic batches; the latent loader checks the data's own lengths against --max-text-len
    if (tc.random_data && (tc.text_len <= 0 || tc.text_len > mc.max_text_len)) fail("flag --text-len: must be in [1, --max-text-len %d], got %d", mc.max_text_len, tc.text_len);
    if (!(tc.fps > 0 && std::isfinite(tc.fps))) fail("flag --fps: must be a finite number > 0");
    if (tc.ms_frames <= 0 || tc.ms_size <= 0) fail("flag --ms-frames/--ms-size: must be > 0");
    if (tc.sample_every < 0) fail("flag --sample-every: must be >= 0, got %d", tc.sample_every);
    if (tc.sample_count <= 0 || tc.sample_count > 1024) fail("flag --sample-count: must be in [1, 1024], got %d", tc.sample_count);
    if (sc.steps <= 0 || sc.steps > 10000) fail("flag --sample-steps: must be in [1, 10000], got %d", sc.steps);
    if (!std::isfinite(sc.cfg_scale)) fail("flag --cfg-scale: must be finite");
    if (tc.eval_samples < 0 || tc.eval_samples > 100000) fail("flag --eval-samples: must be in [0, 100000], got %d", tc.eval_samples);
    if (tc.eval_samples > 0 && !moving_shapes)
        fail("flag --eval-samples: the accuracy evaluation needs the built-in moving-shapes data (the default --train-data, without --random-data)");
    if (tc.sample_every > 0 && tc.random_data) fail("flag --sample-every: random synthetic batches have nothing to sample for (no captions)");
    if (tc.i2v_prob > 0 && tc.random_data) fail("flag --i2v-prob: not used with --random-data 1 (synthetic batches have no frame mask)");
    if (tc.caption_dropout > 0 && tc.random_data) fail("flag --caption-dropout: not used with --random-data 1");
    ckpt_validate_flags(tc, tc.log_dir);
    // ---- several GPUs (llmc/dist/distributed.cuh): this process's rank and the world size from the
    // launcher (nothing on one GPU). Every rank trains on its own B samples (the global batch
    // is B x world), samples and evaluates alike; rank 0 writes the logs, pictures and checkpoints.
    Dist dist = dist_launch(df);
    if (dist.rank != 0) tc.log_dir = "";
    Run run = run_init(tc, &dist, tc.sched, tc.steps, oc.lr, tc.max_minutes);   // the loop, checkpoints and teardown (llmc/train/run.h)
    run_set_profile(&run, rf, tc.log_dir);   // --profile-step
    sc.t_shift = tc.t_shift;
    const int B = tc.batch_size;
    const bool synthetic = tc.random_data != 0;
    // --cp: groups of consecutive ranks share their samples, each rank a part of every sample's tokens
    // (llmc/dist/context_parallel.h); the data is split over the groups (dp_rank of dp_world)
    cp_check_world(df.cp, dist.world);
    const CpGroup cp = cp_group(df.cp, dist.rank, dist.world);
    const int dp_rank = cp_dp_rank(cp, dist.rank, dist.world), dp_world = cp_dp_world(cp, dist.world);

    // ---- data: the moving-shapes data (built on first use), latent shards, or synthetic batches
    MovingShapesConfig ms;
    if (moving_shapes) {
        ms.frames = tc.ms_frames; ms.size = tc.ms_size; ms.caption_channels = mc.caption_channels;
        moving_shapes_check_config(ms);
        if (tc.ms_train_samples <= 0 || tc.ms_val_samples <= 0) fail("flag --ms-train-samples/--ms-val-samples: must be > 0");
        const std::string dir = tc.train_data.substr(0, tc.train_data.rfind('/'));
        if (!moving_shapes_dataset_ready(dir, ms, tc.ms_train_samples, tc.ms_val_samples, 1024, LATENT_DTYPE_F32)) {
            if (dist.world > 1)
                fail("rank %d: the moving-shapes dataset in %s is missing or was built with other flags: build it once with one process "
                     "(./train_dit --steps 0 with the same --ms-* flags) before a multi-GPU run", dist.rank, dir.c_str());
            printf("building the moving-shapes dataset into %s (once): %lld + %lld clips of %d frames x %dx%d, %d caption channels\n",
                   dir.c_str(), tc.ms_train_samples, tc.ms_val_samples, ms.frames, ms.size, ms.size, ms.caption_channels);
            const double t0 = wall_seconds();
            moving_shapes_build_dataset(dir, ms, tc.ms_train_samples, tc.ms_val_samples, 1024, LATENT_DTYPE_F32);
            printf("built in %.1f s\n", wall_seconds() - t0);
        }
    }
    LatentLoader loader;
    LatentBatch lb;
    DiTCapacity cap;
    if (synthetic) {
        for (int b = 0; b < B; b++) cap = dit_capacity_add(cap, dit_capacity_sample(mc, tc.frames, tc.height, tc.width, tc.text_len));
    } else {
        latent_loader_init(&loader, tc.train_data, B, dp_rank, dp_world, 1, (uint64_t)tc.seed, mc.in_channels, mc.caption_channels, mc.max_text_len);
        // room for B of the largest sample in every field
        DiTCapacity one;
        for (const LatentSampleInfo& s : loader.samples) {
            const DiTCapacity k = dit_capacity_sample(mc, s.T, s.H, s.W, s.text_len);
            one.N = std::max(one.N, k.N); one.Np = std::max(one.Np, k.Np); one.Nt = std::max(one.Nt, k.Nt);
            one.frames = std::max(one.frames, k.frames); one.lat = std::max(one.lat, k.lat); one.out = std::max(one.out, k.out);
            one.max_patch_elems = std::max(one.max_patch_elems, k.max_patch_elems);
            one.max_out_elems = std::max(one.max_out_elems, k.max_out_elems);
        }
        one.B = 1;
        for (int b = 0; b < B; b++) cap = dit_capacity_add(cap, one);
    }
    // --cp: every sample has at least one token per rank of the group (the shapes are known here, before the GPU)
    if (cp.on()) {
        std::vector<int> lengths;
        if (synthetic) lengths.push_back(dit_grid(mc, tc.frames, tc.height, tc.width).L);
        else for (const LatentSampleInfo& s : loader.samples) lengths.push_back(dit_grid(mc, s.T, s.H, s.W).L);
        cp_check_parts(cp.n, lengths);
    }
    // the memory plan (llmc/train/memory_plan.h): --plan prints it and exits; a run that will not fit stops here
    const Recompute recompute = recompute_from_flags(rf.recompute, mc.n_layer);
    const int plan_world = plan_validate_flags(rf.plan, dist.world);
    if (rf.plan.plan) cp_check_world(df.cp, plan_world);
    const PlanDiTShape plan_shape = {cap.B, cap.N, cap.Np, cap.Nt, cap.frames, cap.lat, cap.out};
    const MemoryPlan plan = dit_memory_plan(mc, plan_shape, rf.plan.plan ? plan_world : dist.world, df.zero, df.bucket_mb, sizeof(floatX),
                                            tc.ema_decay > 0, rf.plan.gpu_gib, recompute, rf.plan.plan ? cp_group(df.cp, 0, plan_world) : cp);
    memory_plan_apply(plan, rf.plan.plan);

    // ---- the checkpoint to resume from, or the weights to start from: every
    // header checked against this run's model and data before the GPU is touched
    const CkptStart start = ckpt_start_or_fail(tc, dit_ckpt_info(mc, obj), [&](const CkptModelHeader& h) { dit_check_ckpt_objective_or_fail(h, obj); });
    const bool resuming = !start.resume_dir.empty();
    if (resuming) {
        const CkptState& s = start.state.st;
        const char* sp = start.state.path.c_str();
        const long long n_samples = synthetic ? 0 : (long long)latent_loader_num_samples(&loader);
        if (s.rngs.size() != 2) fail("%s: n_rng is %zu, a train_dit state has 2 (t_rng, aug_rng)", sp, s.rngs.size());
        if (start.state.n_extra > 1) fail("%s: n_extra is %d, a train_dit state has 0 or 1 (the EMA weights)", sp, start.state.n_extra);
        if (!synthetic && s.has_loader && s.loader_samples != n_samples)
            fail("%s: the data-loader position is for %lld training samples, --train-data %s has %lld (different data files?)", sp,
                 (long long)s.loader_samples, tc.train_data.c_str(), n_samples);
        if (!synthetic && !s.has_loader) printf("note: %s has no data-loader position (a --random-data run): the data starts from the beginning\n", sp);
        if (s.total_batch_samples != (long long)B * dp_world)
            printf("note: %s was trained with %lld samples per step, this run uses %lld: not a bit-identical continuation\n", sp,
                   (long long)s.total_batch_samples, (long long)B * dp_world);
        ckpt_note_schedule(start.state, tc.steps);
    }

    // ---- GPU
    DiT model;
    const cudaDeviceProp prop = run_gpu_start(&run, &model.stream, start);
    const GpuPeaks peaks = gpu_peaks(prop.name);   // MFU's ceiling
    dist_attach(&dist, &model, dit_param_layout(mc), dit_param_stages(dit_param_layout(mc)), mc.n_layer, model.stream);   // before the build
    dit_build(&model, mc, cap, recompute, cp, dist_cp_comm(&dist, cp.n));
    model.obj = obj;
    dist_memory_report(&dist, &model, model.act.bytes);   // several GPUs: one line per rank (before the weights are made); then only rank 0 prints
    if (resuming || !start.init_path.empty()) {
        params_load_weights(&model, start.model, model.stream);
    } else {
        std::vector<float> init = dit_init_params(mc, model.layout, (uint64_t)tc.seed);
        dit_set_params(&model, init.data());
    }
    if (tc.ema_decay > 0) params_ema_enable(&model, tc.ema_decay, model.stream);   // a copy of the weights, or the state's EMA below
    if (resuming) params_load_state(&model, start.state, model.stream);
    printf("mega.c train_dit | %s | %s (%d SMs) | preset %s\n", PRECISION_NAME, prop.name, prop.multiProcessorCount, tc.preset.c_str());
    printf("model: C %d | layers %d | heads %d x %d | ffn %d | Cin %d Cout %d Cy %d | patch %dx%dx%d | params %.2fM\n",
           mc.d_model, mc.n_layer, mc.n_head, mc.head_dim, mc.ffn_hidden, mc.in_channels, mc.out_channels,
           mc.caption_channels, mc.patch_t, mc.patch_h, mc.patch_w, model.num_params / 1e6);
    if (obj.kind == DIT_OBJECTIVE_EDM)
        printf("objective: edm | sigma_data %g | training ln sigma ~ N(%g, %g^2) | sampler: Heun, %d steps, sigma %g .. %g, rho %g\n",
               obj.sigma_data, obj.p_mean, obj.p_std, sc.steps, obj.sigma_max, obj.sigma_min, obj.rho);
    if (synthetic)
        printf("batch: B %d synthetic samples of %dx%dx%d latents (%lld tokens each) + %d text tokens | steps %d | lr %g warmup %d\n",
               B, tc.frames, tc.height, tc.width, cap.N / B, tc.text_len, tc.steps, oc.lr, tc.sched.warmup);
    else
        printf("batch: B %d from %s (%lld samples) | steps %d | lr %g warmup %d decay %g | caption dropout %g | i2v %g\n", B,
               tc.train_data.c_str(), (long long)latent_loader_num_samples(&loader), tc.steps, oc.lr, tc.sched.warmup, tc.sched.wsd_decay_frac,
               tc.caption_dropout, tc.i2v_prob);
    const MemoryPlan plan_none = dit_memory_plan(mc, plan_shape, dist.world, df.zero, df.bucket_mb, sizeof(floatX), tc.ema_decay > 0, rf.plan.gpu_gib,
                                                 Recompute(), cp);
    printf("memory: weights %.2f GiB | grads %.2f GiB | AdamW state %.2f GiB | activations %.2f GiB (attention scratch %.2f) %s\n",
           gib(model.num_params * (sizeof(floatX) + 4)), gib(model.num_params * 4), gib(model.num_params * 8),
           gib(model.act.bytes), gib(model.act.att_scratch_bytes), memory_plan_recompute_note(plan, plan_none).c_str());
    flash_print_config();
    if (cp.on())
        printf("context parallel: groups of %d ranks%s, each rank 1/%d of every sample's tokens (ring attention), the text and conditioning whole "
               "| %d group%s x B %d samples per step\n", cp.n, dist.world == 1 ? " simulated on this GPU" : "", cp.n, dp_world, dp_world == 1 ? "" : "s", B);
    if (dist.world > 1 && !cp.on()) printf("data parallel: %d GPUs x B %d = %d samples per step, each rank on its own samples\n", dist.world, B, B * dist.world);
    if (!synthetic && sc.cfg_scale != 1.0f && tc.caption_dropout == 0.0f)
        printf("note: --cfg-scale %g with --caption-dropout 0: the model never sees the null caption, so guidance is untrained\n", sc.cfg_scale);

    run_open_log(&run, tc.log_dir, start);
    auto log_line = [&](const std::string& s) {
        printf("%s\n", s.c_str());
        if (run.logf) { fprintf(run.logf, "%s\n", s.c_str()); fflush(run.logf); }
    };
    // samples during training: moving shapes is scored as the evaluation is (text-to-video);
    // other data samples the captions (and shapes) of its first training samples
    auto write_samples_now = [&](int step) {
        char sub[64];
        snprintf(sub, sizeof sub, "/samples/step_%06d", step);
        const std::string dir = tc.log_dir.empty() ? "" : tc.log_dir + sub;
        if (moving_shapes) {
            const MsEval e = moving_shapes_evaluate(&model, ms, tc.sample_count, false, sc, (uint64_t)tc.eval_seed, dir);
            log_line(ms_eval_line(("samples step " + std::to_string(step)).c_str(), e) + (dir.empty() ? "" : " | " + dir + "/grid.png"));
            return;
        }
        const double t0 = wall_seconds();
        const int n = (int)std::min<long long>(tc.sample_count, latent_loader_num_samples(&loader));
        std::vector<int64_t> idx(n);
        for (int i = 0; i < n; i++) idx[i] = i;
        LatentBatch pb;
        latent_loader_read(&loader, idx.data(), n, &pb);
        std::vector<DiTPrompt> prompts(n);
        for (int i = 0; i < n; i++) {
            DiTPrompt& q = prompts[i];
            q.T = pb.T[i]; q.H = pb.H[i]; q.W = pb.W[i]; q.fps = pb.fps[i]; q.text_len = pb.text_len[i];
            q.text.assign(pb.text.begin() + (size_t)pb.text_offset[i] * pb.D, pb.text.begin() + (size_t)pb.text_offset[i + 1] * pb.D);
            q.caption = pb.captions[i];
        }
        const std::vector<std::vector<float>> out = dit_sample(&model, prompts, sc, (uint64_t)tc.eval_seed + 1);
        dit_write_samples(dir, out, prompts, {}, mc.in_channels);
        char buf[256];
        snprintf(buf, sizeof buf, "samples step %d: %d clips in %.1f s%s%s", step, n, wall_seconds() - t0, dir.empty() ? "" : " | ",
                 dir.empty() ? "" : (dir + "/grid.png").c_str());
        log_line(buf);
    };
    // with --ema-decay the samples come from the EMA weights (swapped into the compute copy)
    auto write_samples = [&](int step) {
        if (model.ema) params_use_ema_weights(&model, model.stream);
        write_samples_now(step);
        if (model.ema) params_refresh_weights(&model, model.stream);
    };

    Rng t_rng, aug_rng;
    rng_seed(&t_rng, (uint64_t)tc.seed + 7);
    rng_seed(&aug_rng, (uint64_t)tc.seed + 11);

    // ---- where the run starts: a resumed run continues the step count, the
    // data stream and the t / augmentation RNGs of the checkpoint (the noise is
    // seeded from the step)
    if (resuming) {
        const CkptState& s = start.state.st;
        if (!synthetic && s.has_loader) {
            LatentLoaderPosition p;
            p.epoch = s.loader_epoch; p.sample = s.loader_sample; p.rng_state = s.loader_rng;
            latent_loader_set_position(&loader, p);
        }
        t_rng.state = s.rngs[0];
        aug_rng.state = s.rngs[1];
        run_resume(&run, start);
        printf("resumed from %s: step %d, AdamW step %d, data epoch %lld sample %lld\n", start.resume_dir.c_str(), run.start_step,
               model.adam_step, (long long)s.loader_epoch, (long long)s.loader_sample);
    } else if (!start.init_path.empty()) {
        printf("initialized the weights from %s (step, AdamW and data start fresh)\n", start.init_path.c_str());
    }
    run_ckpt_plan(&run, start, &model);
    auto save_checkpoint = [&](int done) {  // `done` steps done; the loop resumes at step `done`
        CkptState s;
        s.batch_size = B;
        s.total_batch_samples = (long long)B * dp_world;   // all ranks (CP groups share theirs)
        if (!synthetic) {
            const LatentLoaderPosition p = latent_loader_get_position(&loader);
            s.has_loader = 1;
            s.loader_epoch = p.epoch; s.loader_samples = latent_loader_num_samples(&loader); s.loader_sample = p.sample; s.loader_rng = p.rng_state;
        }
        s.rngs = {t_rng.state, aug_rng.state};
        run_save(&run, &model, dit_ckpt_info(mc, obj), done, s, model.stream);
    };

    const std::vector<float> null_text = dit_null_caption(mc.caption_channels);
    std::vector<float> text;
    std::vector<double> step_tok;
    double last_flops = 0;
    bool stopped = false;  // by a stop signal or --exit-at-step: no final samples or evaluation
    StepGraph graph;       // llmc/train/step_graph.h (several GPUs: the step's NCCL calls are not captured)
    graph.on = tc.cuda_graph && dist.world == 1 && !cp.on();
    run_loop_start(&run);
    for (;; run.step++) {
        const int step = run.step;
        const bool last = run_ends_here(&run, save_checkpoint, [&] {
            char buf[128];
            snprintf(buf, sizeof buf, "stopping after %d steps: --max-minutes %g reached", step, tc.max_minutes);
            log_line(buf);
        });
        if (last) break;
        if (tc.sample_every > 0 && step > 0 && step % tc.sample_every == 0) write_samples(step);

        run_step_begin(&run);
        // ---- the batch: geometry on the host, tensors on the device
        DiTBatchHost bt;
        bt.B = B;
        const uint64_t nseed = (uint64_t)tc.seed * 1000003ull + (uint64_t)step * 4ull;
        // this rank's samples of the global batch (one GPU: the whole batch), with their noise
        dit_batch_of_rank(&model, tc, mc, synthetic, &loader, &lb, &t_rng, &aug_rng, null_text, &text, nseed, dp_rank, dp_world, &bt);

        // ---- forward, backward (one CUDA graph while the batch's shapes repeat), update
        step_graph_run(&graph, dit_graph_key(bt), profiler.active, model.stream, [&] {
            dit_zero_grad(&model);
            dit_forward(&model);
            dit_backward(&model);
        });
        // several GPUs: the loss averaged over the ranks; a non-finite loss or grad norm skips the update
        const RunStep rs = run_update(&run, dit_loss(&model), model.stream, [&](float lr) { return dit_update(&model, oc, lr); });
        const float loss = (float)rs.loss, lr = rs.lr, norm = rs.norm;
        const double ms_ = rs.ms;
        double flops = 0;
        for (int b = 0; b < B; b++) flops += dit_train_flops_per_sample(mc, model.grids[b].L, bt.text_len[b]);
        if (dist.world > 1) flops /= cp.n;   // with --cp a rank does 1/cp of its group's samples' work
        const double tok_s = (double)model.N * dist.world / (ms_ / 1000.0), mfu = 100.0 * flops / (ms_ / 1000.0) / peaks.bf16_flops;
        printf("step %5d/%d | loss %.6f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s | MFU %.1f%%\n", step + 1, tc.steps,
               loss, lr, norm, ms_, tok_s, mfu);
        if (run.logf) { fprintf(run.logf, "step %d loss %.6f lr %.3e norm %.4f ms %.1f\n", step + 1, loss, lr, norm, ms_); fflush(run.logf); }
        run.curve.train.push_back({step + 1, loss});
        step_tok.push_back((double)model.N * dist.world);   // all ranks' tokens (each rank's flops: MFU per GPU)
        last_flops = flops;

        // faults (max_bad_steps skipped updates in a row stop the run), checkpoints, a stop request
        stopped = run_after(&run, rs.ok, save_checkpoint);
        if (stopped) break;
    }
    const double train_s = wall_seconds() - run.t_start;
    const std::vector<double>& step_ms = run.step_ms;
    if (step_ms.size() > 3) {
        std::vector<double> s(step_ms.begin() + 3, step_ms.end());
        std::sort(s.begin(), s.end());
        const double med = s[s.size() / 2], tok = step_tok.back();
        char buf[512];
        snprintf(buf, sizeof buf, "summary: %d steps | median step %.2f ms | %.0f tok/s | %.1f TFLOP/s | MFU %.1f%% of %.0f | memory %.2f GiB | total %.1f s",
                 (int)step_ms.size(), med, tok / (med / 1000.0), last_flops / (med / 1000.0) / 1e12,
                 100.0 * last_flops / (med / 1000.0) / peaks.bf16_flops, peaks.bf16_flops / 1e12, gib(model.act.bytes + model.num_params * (sizeof(floatX) + 16)), train_s);
        log_line(buf);
    }
    if (graph.on)
        printf("cuda graph: %lld of %zu steps replayed (%d capture%s)\n", graph.replays, step_ms.size(), graph.captures,
               graph.captures == 1 ? "" : "s");
    // ---- after training (not after a stop request): samples of the final model, and the moving-shapes evaluation
    if (tc.sample_every > 0 && !synthetic && !stopped) write_samples(run.step);
    if (tc.eval_samples > 0 && !stopped) {
        const std::string dir = tc.log_dir.empty() ? "" : tc.log_dir + "/eval";
        if (model.ema) {
            params_use_ema_weights(&model, model.stream);
            log_line("evaluating the EMA weights (--ema-decay " + std::to_string(tc.ema_decay) + ")");
        }
        const MsEval t2v = moving_shapes_evaluate(&model, ms, tc.eval_samples, false, sc, (uint64_t)tc.eval_seed, dir.empty() ? "" : dir + "/t2v");
        log_line(ms_eval_line("eval text-to-video", t2v) + (dir.empty() ? "" : " | " + dir + "/t2v/grid.png"));
        const MsEval i2v = moving_shapes_evaluate(&model, ms, tc.eval_samples, true, sc, (uint64_t)tc.eval_seed, dir.empty() ? "" : dir + "/i2v");
        log_line(ms_eval_line("eval image-to-video", i2v) + (dir.empty() ? "" : " | " + dir + "/i2v/grid.png") +
                 (tc.i2v_prob > 0 ? "" : " (trained without --i2v-prob)"));
    }
    run_close_log(&run, tc.log_dir, "train_dit " + tc.preset + " (flow-matching loss)");
    if (!synthetic) latent_loader_free(&loader);
    step_graph_free(&graph);
    dit_free(&model);
    run_finish(&run, model.stream);
    return 0;
}
#endif
