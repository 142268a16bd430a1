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
  attention scratch  the flash attention backward's scratch slot of that allocation
  communication      several GPUs: the all-gather staging (ZeRO 1/2), the checkpoint
                     gather staging, and NCCL's own buffers (PLAN_NCCL_BYTES, an allowance)
  workspace          the cuBLASLt workspace, the GPT's RoPE table, the grad norm scratch
  CUDA context       PLAN_CUDA_CONTEXT_BYTES, an allowance: the driver's context, the
                     loaded kernels, cuBLAS handles, allocation rounding
The activation slots are listed once here, in the order the trainers carve them; a
trainer checks at start-up that the plan's activations equal what it allocated
(memory_plan_check_activations), so a change to one list without the other fails on
the first GPU run.

Recompute: the per-layer slots ([L, ...]) carry their layer count, so a mode that keeps
fewer layers of a slot (selective, full) becomes a table of which slots each mode
keeps for all L layers; only `none` (every layer kept) exists now.
*/
#pragma once
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include "../core/args.h"
#include "../core/utils.h"
#include "../dist/zero.h"
#include "../model/dit_config.h"
#include "../model/gpt_config.h"
#include "../model/param_tensor.h"

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
// rope3d.cuh, adaln.cuh, patchify.cuh (sizeof(DiTSample)).
static const size_t PLAN_COLUMN_REDUCE_SPLITS = 64, PLAN_GLOBAL_NORM_BLOCKS = 512, PLAN_LN_BWD_BLOCKS = 396;
static const size_t PLAN_ROPE3D_BWD_BLOCKS = 1056, PLAN_ADALN_SPLITS = 32, PLAN_ADALN_MIN_SLICES = 256, PLAN_DIT_SAMPLE_BYTES = 64;

enum RecomputeMode { RECOMPUTE_NONE = 0 };

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

// One slot of a trainer's activation allocation: its bytes for all `layers` layers
// (1: not per layer).
struct PlanSlot {
    const char* name;
    size_t bytes;
    int layers;
    bool attention;   // the attention backward's scratch
};

struct MemoryPlan {
    std::string model;         // "gpt" or "dit", and the shape, for the printout
    int world = 1, zero = 0, recompute = RECOMPUTE_NONE;
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
static inline std::vector<PlanSlot> gpt_plan_slots(const GPTConfig& c, int B, int T, size_t x) {
    const size_t L = c.n_layer, C = c.d_model, BT = (size_t)B * T, hd = c.head_dim, F = c.ffn_hidden;
    const size_t nh = c.n_head, nkv = c.n_kv_head, qd = nh * hd, kvd = nkv * hd, QKV = qd + 2 * kvd, Vp = c.padded_vocab_size;
    const size_t max_cols = std::max({C, QKV, (nh + nkv) * hd, (size_t)64});
    const int l = (int)L;
    // llmc/attention/flash_attention.cuh flash_attention_scratch_bytes: L and D rows, the fp32 dQ accumulator, counters
    const size_t counters = (size_t)B * nkv * ((T * (nh / nkv) + 15) / 16);
    const size_t attn = (2 + hd) * (size_t)B * nh * T * 4 + 16 + counters * 4;
    return {
        {"encoded", BT * C * x, 1, false},
        {"resid_mid", L * BT * C * x, l, false}, {"resid_out", L * BT * C * x, l, false},
        {"ln1", L * BT * C * x, l, false}, {"ln2", L * BT * C * x, l, false},
        {"rstd1", L * BT * 4, l, false}, {"rstd2", L * BT * 4, l, false},
        {"qkv", L * BT * QKV * x, l, false}, {"qk_rstd", L * BT * (nh + nkv) * 4, l, false},
        {"qp", L * BT * qd * x, l, false}, {"kp", L * BT * kvd * x, l, false},
        {"vp", L * BT * kvd * x, l, false}, {"lse", L * B * nh * T * 4, l, false},
        {"atty", L * BT * qd * x, l, false}, {"gateup", L * BT * 2 * F * x, l, false},
        {"swiglu", L * BT * F * x, l, false}, {"lnf", BT * C * x, 1, false},
        {"rstdf", BT * 4, 1, false}, {"logits", BT * Vp * x, 1, false},
        {"losses", BT * 4, 1, false},
        {"proj", BT * C * x, 1, false},
        {"dresid", BT * C * x, 1, false}, {"dbuf", BT * C * x, 1, false},
        {"datty", BT * qd * x, 1, false},
        {"attn_scratch", attn, 1, true},
        {"dqp", BT * qd * x, 1, false}, {"dkp", BT * kvd * x, 1, false},
        {"dvp", BT * kvd * x, 1, false}, {"dqkv", BT * QKV * x, 1, false},
        {"dgateup", BT * 2 * F * x, 1, false}, {"dswiglu", BT * F * x, 1, false},
        {"dnw_scratch", c.qk_norm ? BT * (nh + nkv) * hd * 4 : 16, 1, false},
        {"reduce_scratch", (PLAN_COLUMN_REDUCE_SPLITS + 2) * max_cols * 4, 1, false},
        {"tokens", BT * 4, 1, false}, {"targets", BT * 4, 1, false},
        {"enc_ints", (3 * BT + 1) * 4, 1, false},
    };
}

// c: finalized (gpt_config_finalize).
static inline MemoryPlan gpt_memory_plan(const GPTConfig& c, int B, int T, int world, int zero, int bucket_mb, size_t x, double gpu_gib) {
    MemoryPlan p;
    char d[160];
    snprintf(d, sizeof d, "gpt: %d layers, d_model %d, B %d x T %d", c.n_layer, c.d_model, B, T);
    p.model = d;
    p.gpu_gib = gpu_gib;
    const std::vector<ParamTensor> layout = gpt_param_layout(c);
    memory_plan_params(&p, layout, gpt_param_stages(layout), c.n_layer, world, zero, bucket_mb, x, false);
    memory_plan_activations(&p, gpt_plan_slots(c, B, T, x));
    p.workspace += (size_t)T * c.head_dim * 4;   // the RoPE table: (cos, sin) floats per position and frequency
    return p;
}

// ---------------------------------------------------------------- the DiT (train_dit.cu dit_build)
// What the activations are sized for (train_dit.cu DiTCapacity): B samples, N tokens,
// Np patch tokens, Nt text tokens, latent frames, floats of x0/eps and of v_pred.
struct PlanDiTShape {
    long long B = 0, N = 0, Np = 0, Nt = 0, frames = 0, lat = 0, out = 0;
};

static inline std::vector<PlanSlot> dit_plan_slots(const DiTConfig& c, const PlanDiTShape& s, size_t X) {
    const size_t L = c.n_layer, B = s.B, N = s.N, Np = s.Np, Nt = s.Nt, nh = c.n_head, hd = c.head_dim, C = c.d_model, F = c.ffn_hidden;
    const size_t Cin = c.in_channels, P = dit_patch_size(c), PC = P * c.out_channels, Fq = c.freq_dim, Cy = c.caption_channels, Fl = 4;
    const size_t max_cols = std::max({F, 6 * C, PC, 3 * C, (size_t)64});
    const int l = (int)L;
    // llmc/attention/flash_attention.cuh flash_attention_varlen_scratch_bytes(N, nh, hd, B): L, D, dQ accumulator, counters
    const size_t attn = (2 + hd) * N * nh * 4 + 16 + nh * ((size_t)((int)N / 64) + B + 1) * 4;
    const size_t reduce = std::max((PLAN_COLUMN_REDUCE_SPLITS + 2) * max_cols, std::max(PLAN_LN_BWD_BLOCKS * 2, PLAN_COLUMN_REDUCE_SPLITS) * C);
    const size_t adaln = (std::max(PLAN_ADALN_SPLITS * B, PLAN_ADALN_MIN_SLICES) * 4 + 2 * B * 2) * C;
    return {
        {"xhat1", L * N * C * X, l, false}, {"h1", L * N * C * X, l, false}, {"qkv", L * N * 3 * C * X, l, false},
        {"qkr", L * N * 2 * C * X, l, false}, {"atty", L * N * C * X, l, false}, {"o1", L * N * C * X, l, false},
        {"xhat_a", L * N * C * X, l, false}, {"ha", L * N * C * X, l, false}, {"cq", L * N * C * X, l, false},
        {"cqn", L * N * C * X, l, false}, {"ckv", L * Nt * 2 * C * X, l, false}, {"ckn", L * Nt * C * X, l, false},
        {"catty", L * N * C * X, l, false}, {"xhat2", L * N * C * X, l, false}, {"h2", L * N * C * X, l, false},
        {"f1", L * N * F * X, l, false}, {"o2", L * N * C * X, l, false},
        {"rstd1", L * N * Fl, l, false}, {"qk_rstd", L * N * 2 * nh * Fl, l, false}, {"lse_s", L * nh * N * Fl, l, false},
        {"rstd_a", L * N * Fl, l, false}, {"cq_rstd", L * N * nh * Fl, l, false}, {"ck_rstd", L * Nt * nh * Fl, l, false},
        {"lse_c", L * nh * N * Fl, l, false}, {"rstd2", L * N * Fl, l, false},
        {"tfreq", 2 * B * Fq * X, 1, false}, {"ffreq", B * Fq * X, 1, false},
        {"th", 2 * B * C * X, 1, false}, {"ths", 2 * B * C * X, 1, false}, {"temb", 2 * B * C * X, 1, false},
        {"fh", B * C * X, 1, false}, {"fhs", B * C * X, 1, false}, {"femb", B * C * X, 1, false},
        {"cond", 2 * B * C * X, 1, false}, {"conds", 2 * B * C * X, 1, false}, {"mods", 2 * B * 6 * C * X, 1, false},
        {"text", Nt * Cy * X, 1, false}, {"ylnx", Nt * Cy * X, 1, false}, {"yh", Nt * C * X, 1, false},
        {"yg", Nt * C * X, 1, false}, {"yo", Nt * C * X, 1, false}, {"y", Nt * C * X, 1, false},
        {"ylr", Nt * Fl, 1, false}, {"yr", Nt * Fl, 1, false},
        {"patches", Np * Cin * P * X, 1, false}, {"xf", Np * C * X, 1, false}, {"lnf", Np * C * X, 1, false},
        {"hf", Np * C * X, 1, false}, {"out", Np * PC * X, 1, false}, {"dout", Np * PC * X, 1, false},
        {"rstdf", Np * Fl, 1, false}, {"loss_tok", Np * Fl, 1, false}, {"v_pred", (size_t)s.out * Fl, 1, false},
        {"resid", N * C * X, 1, false}, {"f1g", N * F * X, 1, false},
        {"x0", (size_t)s.lat * Fl, 1, false}, {"eps", (size_t)s.lat * Fl, 1, false}, {"text_f32", Nt * Cy * Fl, 1, false},
        {"freq_f32", 3 * B * Fq * Fl, 1, false},
        {"frame_mask", (size_t)s.frames * 4, 1, false}, {"tokrow", N * 4, 1, false},
        {"patrow", Np * 4, 1, false}, {"cu_x", (B + 1) * 4, 1, false}, {"cu_p", (B + 1) * 4, 1, false},
        {"cu_t", (B + 1) * 4, 1, false},
        {"samples", B * PLAN_DIT_SAMPLE_BYTES, 1, false}, {"rope_cs", N * (hd / 2) * 8, 1, false},
        {"dres", N * C * X, 1, false}, {"dbuf1", N * C * X, 1, false}, {"dbuf2", N * C * X, 1, false},
        {"dbuf3", N * C * X, 1, false}, {"dqkv", N * 3 * C * X, 1, false}, {"dqk", N * 2 * C * X, 1, false},
        {"dF", N * F * X, 1, false},
        {"dckv", Nt * 2 * C * X, 1, false}, {"dck", Nt * C * X, 1, false}, {"dy", Nt * C * X, 1, false},
        {"dyb1", Nt * C * X, 1, false}, {"dyb2", Nt * C * X, 1, false},
        {"dmods_x", 2 * B * 6 * C * X, 1, false}, {"dconds", 2 * B * C * X, 1, false}, {"dtemb", 2 * B * C * X, 1, false},
        {"dfemb", B * C * X, 1, false}, {"dths", 2 * B * C * X, 1, false}, {"dth", 2 * B * C * X, 1, false},
        {"dfhs", B * C * X, 1, false}, {"dfh", B * C * X, 1, false},
        {"dmods", 2 * B * 6 * C * Fl, 1, false}, {"dcond", 2 * B * C * Fl, 1, false},
        {"dnw", 2 * PLAN_ROPE3D_BWD_BLOCKS * hd * Fl, 1, false},
        {"reduce_scratch", reduce * Fl, 1, false},
        {"adaln_scratch", adaln * Fl, 1, false},
        {"att_scratch", attn, 1, true},
    };
}

// c: finalized (dit_config_finalize).
static inline MemoryPlan dit_memory_plan(const DiTConfig& c, const PlanDiTShape& s, int world, int zero, int bucket_mb, size_t x,
                                         bool ema, double gpu_gib) {
    MemoryPlan p;
    char d[160];
    snprintf(d, sizeof d, "dit: %d layers, d_model %d, B %lld, %lld tokens (%lld text)", c.n_layer, c.d_model, s.B, s.N, s.Nt);
    p.model = d;
    p.gpu_gib = gpu_gib;
    const std::vector<ParamTensor> layout = dit_param_layout(c);
    memory_plan_params(&p, layout, dit_param_stages(layout), c.n_layer, world, zero, bucket_mb, x, ema);
    memory_plan_activations(&p, dit_plan_slots(c, s, x));
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

static inline void memory_plan_print(const MemoryPlan& p, FILE* f) {
    fprintf(f, "memory plan per GPU | %s | %d GPU%s, ZeRO-%d | recompute none | params %.2fM", p.model.c_str(), p.world,
            p.world == 1 ? "" : "s", p.zero, p.num_params / 1e6);
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

// After the build: the plan's activation slots are the ones the trainer carved.
static inline void memory_plan_check_activations(const MemoryPlan& p, size_t allocated) {
    if (p.activations + p.attention != allocated)
        fail("memory plan: %zu bytes of activations planned, %zu allocated: llmc/train/memory_plan.h's slots are out of step with the trainer's",
             p.activations + p.attention, allocated);
}
