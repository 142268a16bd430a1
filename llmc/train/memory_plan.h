/*
The memory plan: the bytes one rank of a training run holds on its GPU, computed on
the host from the configuration and flags alone (no CUDA), so that `--plan` says
whether a run fits on N GPUs on a machine without one, and the trainers refuse a run
that will not fit before they allocate anything.

Per rank, one line each:
  bf16 weights       the compute weights, num_params (ZeRO 1/2 on several GPUs: plus the
                     bf16 shard AdamW writes before the all-gather)
  fp32 master        num_params, or this rank's shard (ZeRO 1/2)
  gradients          fp32: num_params on one GPU; several GPUs: the layer-ordered buffer
                     (llmc/dist/zero.h zero_grad_layout), ZeRO-2 with two layer slots, plus
                     the reduced shard (ZeRO 1/2) and ZeRO-2's reduce-scatter staging
  AdamW m and v      2 x the master's size
  EMA                fp32 num_params (train_dit --ema-decay; never sharded)
  activations        the trainer's one activation allocation (gpt_build / dit_build carve
                     it into 256-byte aligned slots), less the attention scratch
  attention scratch  the flash attention backward's scratch slot of that allocation, and with
                     --cp the ring attention's buffers (K/V and their gradients in flight)
  communication      several GPUs: the all-gather staging (ZeRO 1/2), the checkpoint
                     gather staging, and NCCL's own buffers (PLAN_NCCL_BYTES, an allowance)
  workspace          the cuBLASLt workspace, the GPT's RoPE table, the grad norm scratch
  CUDA context       PLAN_CUDA_CONTEXT_BYTES, an allowance: the driver's context, the
                     loaded kernels, cuBLAS handles, allocation rounding
The activation slots are listed once, here, with their sizes, in the order the trainers
carve them: a trainer binds each slot by name to its pointer (memory_plan_bind) and
allocates exactly what the plan counted. Where a slot's size mirrors a kernel's own
formula (the scratch slots), the trainer checks at start-up that the kernel needs no
more (memory_plan_require).

Recompute (llmc/train/recompute.h): a per-layer slot has a size per block and a kind
(ActKeep); the mode and --recompute-layers decide how many blocks it holds.
*/
#pragma once
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>
#include "../core/args.h"
#include "../core/utils.h"
#include "../dist/context_parallel.h"
#include "../dist/zero.h"
#include "../model/dit_config.h"
#include "../model/gpt_config.h"
#include "../model/param_tensor.h"
#include "recompute.h"

// Allowances for what the plan cannot count from shapes. The CUDA context's: an H200's
// peak (nvidia-smi) less everything else the plan counts, the same for both trainers
// from the tiny presets to the 1B ones, rounded up. NCCL's: not yet measured (several
// GPUs), a guess to be calibrated by the multi-GPU runs.
static const size_t PLAN_CUDA_CONTEXT_BYTES = (size_t)614 << 20;   // context, kernels, cuBLAS handles, rounding
static const size_t PLAN_NCCL_BYTES = (size_t)1 << 30;             // NCCL communicator buffers (several GPUs)
static const size_t PLAN_CUBLASLT_WORKSPACE_BYTES = (size_t)32 << 20;   // llmc/core/cublas_common.h
static const double PLAN_DEFAULT_GPU_GIB = 139.8;                  // an H200

// Mirrors of kernel constants that size small scratch slots (the kernels' headers are
// CUDA; the start-up check catches a drift): llmc/core/reduce.cuh, llmc/kernels/layernorm.cuh,
// rope3d.cuh, adaln.cuh, patchify.cuh (sizeof(DiTSample)), llmc/attention/flash_common.cuh
// (FLASH_QSPLIT_MAX_CHUNKS).
static const size_t PLAN_COLUMN_REDUCE_SPLITS = 64, PLAN_GLOBAL_NORM_BLOCKS = 512, PLAN_LN_BWD_BLOCKS = 396;
static const size_t PLAN_ROPE3D_BWD_BLOCKS = 1056, PLAN_ADALN_SPLITS = 32, PLAN_ADALN_MIN_SLICES = 256, PLAN_DIT_SAMPLE_BYTES = 72;
static const size_t PLAN_QSPLIT_MAX_CHUNKS = 8;

struct PlanFlags {
    int plan = 0;                        // --plan: print the plan, exit 0 if it fits, 1 if not
    int gpus = -1;                       // --plan-gpus: world size (-1: the launcher's)
    float gpu_gib = (float)PLAN_DEFAULT_GPU_GIB;   // --plan-gpu-mem
};

static inline void plan_add_flags(ArgParser& ap, PlanFlags* f) {
    ap.section("memory plan (host only: works without a GPU)");
    ap.add_bool("--plan", &f->plan, "print the per-rank memory plan and exit: 0 if it fits, 1 if not (a bare --plan means 1)");
    ap.add_int("--plan-gpus", &f->gpus, "world size of the plan (-1: the launcher's world size, 1 without a launcher)");
    ap.add_float("--plan-gpu-mem", &f->gpu_gib, "GiB of memory per GPU the plan (and the run's start-up check) fits against");
}

// The world size of the plan: --plan-gpus, or the launcher's (launch_world, from the
// launch environment: llmc/dist/rendezvous.h).
static inline int plan_validate_flags(const PlanFlags& f, int launch_world) {
    if (f.gpus != -1 && (f.gpus < 1 || f.gpus > 65536)) fail("flag --plan-gpus: must be in [1, 65536] (-1: the launcher's world size), got %d", f.gpus);
    if (!(f.gpu_gib > 0 && f.gpu_gib <= 65536)) fail("flag --plan-gpu-mem: must be in (0, 65536] GiB, got %g", f.gpu_gib);
    return f.gpus > 0 ? f.gpus : launch_world;
}

static inline size_t plan_round256(size_t b) { return (b + 255) / 256 * 256; }
static inline double plan_gib(size_t b) { return b / 1073741824.0; }

// One slot of a trainer's activation allocation.
struct PlanSlot {
    const char* name;
    size_t bytes;         // the whole slot
    size_t block_bytes;   // per-layer slots: one block's part (0: not per layer)
    int layers;           // per-layer slots: the blocks it holds (recompute.h Recompute::slot_layers)
    bool attention;       // the attention backward's scratch
};
static inline PlanSlot plan_slot(const char* name, size_t bytes) { return {name, bytes, 0, 0, false}; }
static inline PlanSlot plan_layer_slot(const char* name, size_t block_bytes, ActKeep keep, const Recompute& rc, int n_layer) {
    const int held = rc.slot_layers(keep, n_layer);
    return {name, block_bytes * held, block_bytes, held, false};
}

struct MemoryPlan {
    std::string model;         // "gpt" or "dit", and the shape, for the printout
    int world = 1, zero = 0, n_layer = 0;
    Recompute recompute;
    double gpu_gib = PLAN_DEFAULT_GPU_GIB;
    size_t num_params = 0, shard = 0;
    size_t weights = 0, master = 0, grads = 0, adam = 0, ema = 0;
    size_t activations = 0, attention = 0, comm = 0, workspace = 0, context = PLAN_CUDA_CONTEXT_BYTES;
    std::vector<PlanSlot> slots;
    size_t total() const { return weights + master + grads + adam + ema + activations + attention + comm + workspace + context; }
    bool fits() const { return (double)total() <= gpu_gib * 1073741824.0; }
};

struct PlanLine { const char* name; size_t bytes; };
static inline std::vector<PlanLine> memory_plan_lines(const MemoryPlan& p) {
    return {{"bf16 weights", p.weights}, {"fp32 master weights", p.master}, {"gradients", p.grads}, {"AdamW m and v", p.adam},
            {"EMA weights", p.ema}, {"activations", p.activations}, {"attention scratch", p.attention},
            {"communication", p.comm}, {"workspace", p.workspace}, {"CUDA context", p.context}};
}

// Weights, master, gradients, AdamW and communication of one rank (ZeRO stage `zero`
// matters only when world > 1), as params_alloc, params_setup_dist and dist_attach allocate them.
static inline void memory_plan_params(MemoryPlan* p, const std::vector<ParamTensor>& layout, const std::vector<int>& kinds, int n_layer,
                                      int world, int zero, int bucket_mb, size_t weight_bytes, bool ema) {
    const size_t n = layout_numel(layout);
    p->world = world;
    p->zero = world > 1 ? zero : 0;
    p->num_params = n;
    p->ema = ema ? n * 4 : 0;
    p->workspace = PLAN_CUBLASLT_WORKSPACE_BYTES + (PLAN_GLOBAL_NORM_BLOCKS + 4) * 4;
    if (world == 1) {
        p->shard = n;
        p->weights = n * weight_bytes; p->master = n * 4; p->grads = n * 4; p->adam = 2 * n * 4; p->comm = 0;
        return;
    }
    const ZeroGradLayout z = zero_grad_layout(layout, kinds, n_layer, world, 16, (size_t)bucket_mb << 20, zero == 2 ? 2 : 0);
    const ZeroMemory m = zero_grad_layout_memory(z, n, p->zero, weight_bytes);
    size_t max_bucket = 0;
    for (const ZeroCommBucket& b : z.buckets) max_bucket = std::max(max_bucket, b.size);
    p->shard = p->zero >= 1 ? z.shard : n;
    p->weights = m.params; p->master = m.master; p->grads = m.grads; p->adam = m.adam;
    // all-gather staging and (a checkpoint or export) the gather staging; 16 doubles of scalars
    p->comm = (p->zero >= 1 ? max_bucket * weight_bytes + max_bucket * 4 : 0) + 16 * 8 + PLAN_NCCL_BYTES;
}

static inline void memory_plan_activations(MemoryPlan* p, const std::vector<PlanSlot>& slots) {
    p->slots = slots;
    p->activations = p->attention = 0;
    for (const PlanSlot& s : slots) (s.attention ? p->attention : p->activations) += plan_round256(s.bytes);
}

// ---------------------------------------------------------------- the GPT (train_gpt.cu gpt_build)
// x: bytes of a compute element (floatX: bf16 2, fp32 builds 4).
static inline std::vector<PlanSlot> gpt_plan_slots(const GPTConfig& c, int B, int T, size_t x, const Recompute& rc) {
    const size_t C = c.d_model, BT = (size_t)B * T, hd = c.head_dim, F = c.ffn_hidden;
    const size_t nh = c.n_head, nkv = c.n_kv_head, qd = nh * hd, kvd = nkv * hd, QKV = qd + 2 * kvd, Vp = c.padded_vocab_size;
    const size_t max_cols = std::max({C, QKV, (nh + nkv) * hd, (size_t)64});
    const int L = c.n_layer;
    auto layer = [&](const char* name, size_t block_bytes, ActKeep keep) { return plan_layer_slot(name, block_bytes, keep, rc, L); };
    // llmc/attention/flash_attention.cuh flash_attention_scratch_bytes: L and D rows, the fp32 dQ accumulator, counters
    const size_t counters = (size_t)B * nkv * ((T * (nh / nkv) + 15) / 16);
    PlanSlot attn = plan_slot("attn_scratch", (2 + hd) * (size_t)B * nh * T * 4 + 16 + counters * 4);
    attn.attention = true;
    return {
        plan_slot("encoded", BT * C * x),
        // per block: the residual stream after attention is rebuilt by full, after the MLP (the next
        // block's input) always kept; the norms' statistics are kept (the rebuilt norms rewrite them)
        layer("resid_mid", BT * C * x, ACT_FULL_DROPS), layer("resid_out", BT * C * x, ACT_KEPT),
        layer("ln1", BT * C * x, ACT_CHEAP), layer("ln2", BT * C * x, ACT_CHEAP),
        layer("rstd1", BT * 4, ACT_KEPT), layer("rstd2", BT * 4, ACT_KEPT),
        layer("qkv", BT * QKV * x, ACT_FULL_DROPS), layer("qk_rstd", BT * (nh + nkv) * 4, ACT_FULL_DROPS),
        layer("qp", BT * qd * x, ACT_CHEAP), layer("kp", BT * kvd * x, ACT_CHEAP),
        layer("vp", BT * kvd * x, ACT_CHEAP), layer("lse", (size_t)B * nh * T * 4, ACT_FULL_DROPS),
        layer("atty", BT * qd * x, ACT_FULL_DROPS), layer("gateup", BT * 2 * F * x, ACT_FULL_DROPS),
        layer("swiglu", BT * F * x, ACT_CHEAP),
        plan_slot("lnf", BT * C * x), plan_slot("rstdf", BT * 4), plan_slot("logits", BT * Vp * x), plan_slot("losses", BT * 4),
        plan_slot("proj", BT * C * x),
        plan_slot("dresid", BT * C * x), plan_slot("dbuf", BT * C * x),
        plan_slot("datty", BT * qd * x),
        attn,
        plan_slot("dqp", BT * qd * x), plan_slot("dkp", BT * kvd * x),
        plan_slot("dvp", BT * kvd * x), plan_slot("dqkv", BT * QKV * x),
        plan_slot("dgateup", BT * 2 * F * x), plan_slot("dswiglu", BT * F * x),
        plan_slot("dnw_scratch", c.qk_norm ? BT * (nh + nkv) * hd * 4 : 16),
        plan_slot("reduce_scratch", (PLAN_COLUMN_REDUCE_SPLITS + 2) * max_cols * 4),
        plan_slot("tokens", BT * 4), plan_slot("targets", BT * 4), plan_slot("positions", BT * 4),
        plan_slot("enc_ints", (3 * BT + 1) * 4),
    };
}

// A rank of a context-parallel group (cp.on(): llmc/dist/context_parallel.h) holds cp.local
// ranks' tokens, each 2 x B rows of T / (2 cp.n) tokens: the slots of that shape, a row of logits
// in fp32 (sampling: the group's sum of the rank that holds the position), and the ring's buffers
// (llmc/attention/ring_attention.cuh).
static inline std::vector<PlanSlot> gpt_plan_slots(const GPTConfig& c, int B, int T, size_t x, const Recompute& rc, const CpGroup& cp) {
    if (!cp.on()) return gpt_plan_slots(c, B, T, x, rc);
    const int Tc = T / (2 * cp.n);
    std::vector<PlanSlot> s = gpt_plan_slots(c, cp.local * 2 * B, Tc, x, rc);
    s.push_back(plan_slot("cp_logits_row", (size_t)c.padded_vocab_size * 4));
    PlanSlot ring = plan_slot("cp_ring", cp_ring_bytes(cp.local, (size_t)2 * B * Tc, c.n_head, c.n_kv_head, c.head_dim, x));
    ring.attention = true;
    s.push_back(ring);
    return s;
}

// c: finalized (gpt_config_finalize).
static inline MemoryPlan gpt_memory_plan(const GPTConfig& c, int B, int T, int world, int zero, int bucket_mb, size_t x, double gpu_gib,
                                         const Recompute& rc = Recompute(), const CpGroup& cp = CpGroup()) {
    MemoryPlan p;
    char d[200];
    snprintf(d, sizeof d, "gpt: %d layers, d_model %d, B %d x T %d%s", c.n_layer, c.d_model, B, T,
             cp.on() ? (", context parallel " + std::to_string(cp.n) + (cp.local > 1 ? " (simulated on one GPU)" : "")).c_str() : "");
    p.model = d;
    p.gpu_gib = gpu_gib;
    p.recompute = rc;
    p.n_layer = c.n_layer;
    const std::vector<ParamTensor> layout = gpt_param_layout(c);
    memory_plan_params(&p, layout, gpt_param_stages(layout), c.n_layer, world, zero, bucket_mb, x, false);
    memory_plan_activations(&p, gpt_plan_slots(c, B, T, x, rc, cp));
    p.workspace += (size_t)T * c.head_dim * 4;   // the RoPE table: (cos, sin) floats per position and frequency
    return p;
}

// ---------------------------------------------------------------- the DiT (train_dit.cu dit_build)
// What the activations are sized for (train_dit.cu DiTCapacity): B samples, N tokens,
// Np patch tokens, Nt text tokens, latent frames, floats of x0/eps and of v_pred.
struct PlanDiTShape {
    long long B = 0, N = 0, Np = 0, Nt = 0, frames = 0, lat = 0, out = 0;
};

static inline std::vector<PlanSlot> dit_plan_slots(const DiTConfig& c, const PlanDiTShape& s, size_t X, const Recompute& rc) {
    const size_t B = s.B, N = s.N, Np = s.Np, Nt = s.Nt, nh = c.n_head, hd = c.head_dim, C = c.d_model, F = c.ffn_hidden;
    const size_t Cin = c.in_channels, P = dit_patch_size(c), PC = P * c.out_channels, Fq = c.freq_dim, Cy = c.caption_channels, Fl = 4;
    const size_t max_cols = std::max({F, 6 * C, PC, 3 * C, (size_t)64});
    const int L = c.n_layer;
    auto layer = [&](const char* name, size_t block_bytes, ActKeep keep) { return plan_layer_slot(name, block_bytes, keep, rc, L); };
    // llmc/attention/flash_common.cuh flash_attention_varlen_scratch_bytes(N, nh, hd, B): L, D, dQ accumulator,
    // counters; flash_attention_query_split_bytes(Nt, nh, hd): the query split's dK / dV partials
    PlanSlot attn = plan_slot("att_scratch", (2 + hd) * N * nh * 4 + 16 + nh * ((size_t)((int)N / 64) + B + 1) * 4 +
                                                 2 * PLAN_QSPLIT_MAX_CHUNKS * Nt * nh * hd * 4 + 16);
    attn.attention = true;
    const size_t reduce = std::max((PLAN_COLUMN_REDUCE_SPLITS + 2) * max_cols, std::max(PLAN_LN_BWD_BLOCKS * 2, PLAN_COLUMN_REDUCE_SPLITS) * C);
    const size_t adaln = (std::max(PLAN_ADALN_SPLITS * B, PLAN_ADALN_MIN_SLICES) * 4 + 2 * B * 2) * C;
    return {
        // per block: selective rebuilds the modulations (h1, h2) and the QK-normed (and RoPE'd)
        // queries and keys; full reruns the block from its input (block_in, kept for those blocks only)
        layer("xhat1", N * C * X, ACT_FULL_DROPS), layer("h1", N * C * X, ACT_CHEAP), layer("qkv", N * 3 * C * X, ACT_FULL_DROPS),
        layer("qkr", N * 2 * C * X, ACT_CHEAP), layer("atty", N * C * X, ACT_FULL_DROPS), layer("o1", N * C * X, ACT_FULL_DROPS),
        layer("xhat_a", N * C * X, ACT_FULL_DROPS), layer("ha", N * C * X, ACT_FULL_DROPS), layer("cq", N * C * X, ACT_FULL_DROPS),
        layer("cqn", N * C * X, ACT_CHEAP), layer("ckv", Nt * 2 * C * X, ACT_FULL_DROPS), layer("ckn", Nt * C * X, ACT_CHEAP),
        layer("catty", N * C * X, ACT_FULL_DROPS), layer("xhat2", N * C * X, ACT_FULL_DROPS), layer("h2", N * C * X, ACT_CHEAP),
        layer("f1", N * F * X, ACT_FULL_DROPS), layer("o2", N * C * X, ACT_FULL_DROPS),
        layer("rstd1", N * Fl, ACT_FULL_DROPS), layer("qk_rstd", N * 2 * nh * Fl, ACT_FULL_DROPS), layer("lse_s", nh * N * Fl, ACT_FULL_DROPS),
        layer("rstd_a", N * Fl, ACT_FULL_DROPS), layer("cq_rstd", N * nh * Fl, ACT_FULL_DROPS), layer("ck_rstd", Nt * nh * Fl, ACT_FULL_DROPS),
        layer("lse_c", nh * N * Fl, ACT_FULL_DROPS), layer("rstd2", N * Fl, ACT_FULL_DROPS),
        layer("block_in", N * C * X, ACT_FULL_INPUT),
        plan_slot("tfreq", 2 * B * Fq * X), plan_slot("ffreq", B * Fq * X),
        plan_slot("t_hidden", 2 * B * C * X), plan_slot("t_hidden_silu", 2 * B * C * X), plan_slot("temb", 2 * B * C * X),
        plan_slot("fps_hidden", B * C * X), plan_slot("fps_hidden_silu", B * C * X), plan_slot("femb", B * C * X),
        plan_slot("cond", 2 * B * C * X), plan_slot("conds", 2 * B * C * X), plan_slot("mods", 2 * B * 6 * C * X),
        plan_slot("text", Nt * Cy * X), plan_slot("cap_normed", Nt * Cy * X), plan_slot("cap_fc1", Nt * C * X),
        plan_slot("cap_gelu", Nt * C * X), plan_slot("cap_fc2", Nt * C * X), plan_slot("y", Nt * C * X),
        plan_slot("cap_rstd", Nt * Fl), plan_slot("y_rstd", Nt * Fl),
        plan_slot("patches", Np * Cin * P * X), plan_slot("patch_tokens", Np * C * X), plan_slot("lnf", Np * C * X),
        plan_slot("final_in", Np * C * X), plan_slot("out", Np * PC * X), plan_slot("dout", Np * PC * X),
        plan_slot("rstdf", Np * Fl), plan_slot("loss_tok", Np * Fl), plan_slot("v_pred", (size_t)s.out * Fl),
        plan_slot("resid", N * C * X), plan_slot("f1g", N * F * X),
        plan_slot("x0", (size_t)s.lat * Fl), plan_slot("eps", (size_t)s.lat * Fl), plan_slot("text_f32", Nt * Cy * Fl),
        plan_slot("freq_f32", 3 * B * Fq * Fl),
        plan_slot("frame_mask", (size_t)s.frames * 4), plan_slot("tokrow", N * 4),
        plan_slot("patrow", Np * 4), plan_slot("cu_x", (B + 1) * 4), plan_slot("cu_p", (B + 1) * 4),
        plan_slot("cu_t", (B + 1) * 4),
        plan_slot("samples", B * PLAN_DIT_SAMPLE_BYTES), plan_slot("rope_cs", N * (hd / 2) * 8),
        plan_slot("dres", N * C * X), plan_slot("dbuf1", N * C * X), plan_slot("dbuf2", N * C * X),
        plan_slot("dbuf3", N * C * X), plan_slot("dqkv", N * 3 * C * X), plan_slot("dqk", N * 2 * C * X),
        plan_slot("dF", N * F * X),
        plan_slot("dckv", Nt * 2 * C * X), plan_slot("dck", Nt * C * X), plan_slot("dy", Nt * C * X),
        plan_slot("dyb1", Nt * C * X), plan_slot("dyb2", Nt * C * X),
        plan_slot("dmods_x", 2 * B * 6 * C * X), plan_slot("dconds", 2 * B * C * X), plan_slot("dtemb", 2 * B * C * X),
        plan_slot("dfemb", B * C * X), plan_slot("dt_hidden_silu", 2 * B * C * X), plan_slot("dt_hidden", 2 * B * C * X),
        plan_slot("dfps_hidden_silu", B * C * X), plan_slot("dfps_hidden", B * C * X),
        plan_slot("dmods", 2 * B * 6 * C * Fl), plan_slot("dcond", 2 * B * C * Fl),
        plan_slot("dnw", 2 * PLAN_ROPE3D_BWD_BLOCKS * hd * Fl),
        plan_slot("reduce_scratch", reduce * Fl),
        plan_slot("adaln_scratch", adaln * Fl),
        attn,
    };
}

// The shape a rank of a context-parallel group (cp.on(): llmc/dist/context_parallel.h) works on,
// for B samples of N / B tokens each: cp.local held ranks x B pseudo-samples of the largest part,
// ceil(N / B / n) tokens (patch tokens at most as many); every pseudo-sample carries its sample's
// conditioning and text tokens (not split: cp.local copies), the latents (x0, eps, the frame
// mask, v_pred) stay whole.
static inline PlanDiTShape dit_plan_cp_shape(const PlanDiTShape& s, const CpGroup& cp) {
    if (!cp.on() || s.B == 0) return s;
    PlanDiTShape r = s;
    const long long part = (s.N / s.B + cp.n - 1) / cp.n;
    r.B = cp.local * s.B;
    r.N = r.B * part;
    r.Np = std::min(s.Np, r.N);
    r.Nt = cp.local * s.Nt;
    return r;
}

// A rank of a CP group: the slots of its pseudo-samples, the ring's buffers for the largest part
// of B samples (llmc/attention/ring_attention.cuh) and every rank's part offsets (n x (B + 1) ints).
static inline std::vector<PlanSlot> dit_plan_slots(const DiTConfig& c, const PlanDiTShape& s, size_t x, const Recompute& rc, const CpGroup& cp) {
    if (!cp.on()) return dit_plan_slots(c, s, x, rc);
    const PlanDiTShape r = dit_plan_cp_shape(s, cp);
    std::vector<PlanSlot> v = dit_plan_slots(c, r, x, rc);
    v.push_back(plan_slot("cp_cu", (size_t)cp.n * (s.B + 1) * 4));
    PlanSlot ring = plan_slot("cp_ring", cp_ring_bytes(cp.local, (size_t)(r.N / cp.local), c.n_head, c.n_head, c.head_dim, x));
    ring.attention = true;
    v.push_back(ring);
    return v;
}

// c: finalized (dit_config_finalize).
static inline MemoryPlan dit_memory_plan(const DiTConfig& c, const PlanDiTShape& s, int world, int zero, int bucket_mb, size_t x,
                                         bool ema, double gpu_gib, const Recompute& rc = Recompute(), const CpGroup& cp = CpGroup()) {
    MemoryPlan p;
    p.recompute = rc;
    p.n_layer = c.n_layer;
    char d[200];
    snprintf(d, sizeof d, "dit: %d layers, d_model %d, B %lld, %lld tokens (%lld text)%s", c.n_layer, c.d_model, s.B, s.N, s.Nt,
             cp.on() ? (", context parallel " + std::to_string(cp.n) + (cp.local > 1 ? " (simulated on one GPU)" : "")).c_str() : "");
    p.model = d;
    p.gpu_gib = gpu_gib;
    const std::vector<ParamTensor> layout = dit_param_layout(c);
    memory_plan_params(&p, layout, dit_param_stages(layout), c.n_layer, world, zero, bucket_mb, x, ema);
    memory_plan_activations(&p, dit_plan_slots(c, s, x, rc, cp));
    return p;
}

// ---------------------------------------------------------------- verdict, printout
static inline PlanLine memory_plan_largest(const MemoryPlan& p) {
    PlanLine best = {"", 0};
    for (const PlanLine& l : memory_plan_lines(p)) if (l.bytes > best.bytes) best = l;
    return best;
}

// The one line of a plan that does not fit.
static inline std::string memory_plan_refusal(const MemoryPlan& p) {
    const PlanLine big = memory_plan_largest(p);
    char s[512];
    snprintf(s, sizeof s, "memory plan: %.2f GiB per GPU does not fit in %.2f GiB (--plan-gpu-mem; %d GPU%s, ZeRO-%d): the largest consumer is %s, %.2f GiB",
             plan_gib(p.total()), p.gpu_gib, p.world, p.world == 1 ? "" : "s", p.zero, big.name, plan_gib(big.bytes));
    return s;
}

// "none", "full" (every block) or "selective, the first 4 of 16 blocks"
static inline std::string memory_plan_recompute_text(const MemoryPlan& p) {
    const Recompute& r = p.recompute;
    std::string t = recompute_mode_name(r.mode);
    if (r.mode != RECOMPUTE_NONE && r.layers < p.n_layer) t += ", the first " + std::to_string(r.layers) + " of " + std::to_string(p.n_layer) + " blocks";
    return t;
}

// The start-up memory line's note on the activations: "(recompute none)", or the mode and what
// the same run would hold without it (`none`: the same plan made with Recompute()).
static inline std::string memory_plan_recompute_note(const MemoryPlan& p, const MemoryPlan& none) {
    std::string t = "(recompute " + memory_plan_recompute_text(p);
    if (p.recompute.mode != RECOMPUTE_NONE) {
        char b[64];
        snprintf(b, sizeof b, "; %.2f GiB without", plan_gib(none.activations + none.attention));
        t += b;
    }
    return t + ")";
}

static inline void memory_plan_print(const MemoryPlan& p, FILE* f) {
    fprintf(f, "memory plan per GPU | %s | %d GPU%s, ZeRO-%d | recompute %s | params %.2fM", p.model.c_str(), p.world,
            p.world == 1 ? "" : "s", p.zero, memory_plan_recompute_text(p).c_str(), p.num_params / 1e6);
    if (p.zero >= 1) fprintf(f, ", a shard of %zu per GPU", p.shard);
    fprintf(f, "\n");
    for (const PlanLine& l : memory_plan_lines(p)) fprintf(f, "  %-20s %10.3f GiB\n", l.name, plan_gib(l.bytes));
    fprintf(f, "  %-20s %10.3f GiB of %.2f GiB: %s\n", "total", plan_gib(p.total()), p.gpu_gib, p.fits() ? "fits" : "does NOT fit");
}

// --plan: print and exit (0: fits; 1: the refusal line on stderr). Otherwise, a run that
// will not fit stops here with that line; one that fits goes on, printing nothing.
static inline void memory_plan_apply(const MemoryPlan& p, bool plan_only) {
    if (plan_only) {
        memory_plan_print(p, stdout);
        fflush(stdout);
        if (!p.fits()) fail("%s", memory_plan_refusal(p).c_str());
        exit(0);
    }
    if (!p.fits()) fail("%s", memory_plan_refusal(p).c_str());
}

// ---------------------------------------------------------------- the trainers' allocation
// A trainer's pointer for a slot, by the slot's name.
struct ActivationBind {
    const char* name;
    void** ptr;
};

// The plan's slots in its order, each with the trainer's pointer: every slot bound once, every
// pointer to a slot the plan has (a typo or a slot added on one side only fails here, at start-up).
static inline std::vector<std::pair<void**, size_t>> memory_plan_bind(const std::vector<PlanSlot>& slots, const std::vector<ActivationBind>& binds) {
    std::vector<std::pair<void**, size_t>> out;
    std::vector<int> used(binds.size(), 0);
    for (const PlanSlot& s : slots) {
        int found = -1;
        for (size_t i = 0; i < binds.size(); i++)
            if (strcmp(binds[i].name, s.name) == 0) { found = (int)i; break; }
        if (found < 0) fail("memory plan: the trainer has no pointer for activation slot '%s' (llmc/train/memory_plan.h)", s.name);
        used[found]++;
        out.push_back({binds[found].ptr, s.bytes});
    }
    for (size_t i = 0; i < binds.size(); i++)
        if (used[i] != 1) fail("memory plan: the trainer's activation '%s' is not one slot of the plan (llmc/train/memory_plan.h)", binds[i].name);
    return out;
}

static inline const PlanSlot& memory_plan_slot(const std::vector<PlanSlot>& slots, const char* name) {
    for (const PlanSlot& s : slots)
        if (strcmp(s.name, name) == 0) return s;
    fail("memory plan: no activation slot '%s'", name);
}

// A slot whose size mirrors a kernel's formula: the kernel's own count must fit in it.
static inline void memory_plan_require(const std::vector<PlanSlot>& slots, const char* name, size_t kernel_bytes) {
    const PlanSlot& s = memory_plan_slot(slots, name);
    if (s.bytes < kernel_bytes)
        fail("memory plan: slot '%s' has %zu bytes, the kernels need %zu: llmc/train/memory_plan.h is out of step with them", name, s.bytes, kernel_bytes);
}
