// The Llama-family decoder's configuration, presets and parameter layout
// (docs/gpt.md). Shared by train_gpt.cu, the CPU reference
// dev/cpu/gpt.cpp and the tests, so that all of them agree on one layout.
//
// Parameter tensors, in this fixed order (hd = head_dim, qd = n_head*hd,
// kvd = n_kv_head*hd, QKV = qd + 2*kvd, L = n_layer, Vp = padded_vocab_size):
//   wte        [Vp, C]          token embedding (rows >= vocab_size stay zero)
//   attn_norm  [L, C]
//   wqkv       [L, QKV, C]      rows: q heads, then k heads, then v heads
//   bqkv       [L, QKV]         only with qkv_bias
//   q_norm     [L, hd]          only with qk_norm
//   k_norm     [L, hd]          only with qk_norm
//   wo         [L, C, qd]
//   mlp_norm   [L, C]
//   wgateup    [L, 2F, C]       rows 0..F-1 gate, F..2F-1 up
//   wdown      [L, C, F]
//   final_norm [C]
//   lm_head    [Vp, C]          only when embeddings are untied
// Linear weights are [out, in] as in PyTorch/HF. Weight decay applies to the
// matrices wqkv, wo, wgateup, wdown and lm_head; never to norms, biases or wte.
#pragma once
#include <cmath>
#include <string>
#include <vector>
#include "../core/args.h"
#include "../core/utils.h"
#include "param_tensor.h"

struct GPTConfig {
    int vocab_size = 512;
    int padded_vocab_size = 0;      // 0: vocab rounded up to a multiple of 128
    int max_seq_len = 64;
    int n_layer = 2;
    int n_head = 4;
    int n_kv_head = 2;
    int d_model = 128;
    int head_dim = 0;               // 0: d_model / n_head
    int ffn_hidden = 352;
    float rope_theta = 10000.0f;
    int rope_scaling = 0;           // Llama 3.1 frequency scaling
    float rope_factor = 8.0f;
    float rope_low_freq_factor = 1.0f;
    float rope_high_freq_factor = 4.0f;
    int rope_original_ctx = 8192;
    float norm_eps = 1e-5f;
    int tie_embeddings = 1;
    int qk_norm = 0;
    int qkv_bias = 0;
};

static inline bool gpt_preset(const std::string& name, GPTConfig* c) {
    GPTConfig d;  // defaults
    *c = d;
    if (name == "tiny") {
        // defaults above are the tiny test model
    } else if (name == "shakespeare") {
        c->vocab_size = 1024; c->max_seq_len = 256; c->n_layer = 6; c->n_head = 6; c->n_kv_head = 2;
        c->d_model = 384; c->ffn_hidden = 1024; c->tie_embeddings = 1;
    } else if (name == "gpt-s") {
        c->vocab_size = 32768; c->max_seq_len = 1024; c->n_layer = 12; c->n_head = 12; c->n_kv_head = 4;
        c->d_model = 768; c->ffn_hidden = 2048; c->tie_embeddings = 0; c->rope_theta = 500000.0f;
    } else if (name == "gpt-1b") {
        c->vocab_size = 128256; c->max_seq_len = 2048; c->n_layer = 16; c->n_head = 32; c->n_kv_head = 8;
        c->d_model = 2048; c->ffn_hidden = 8192; c->tie_embeddings = 0; c->rope_theta = 500000.0f;
    } else if (name == "llama3.2-1b") {
        c->vocab_size = 128256; c->max_seq_len = 131072; c->n_layer = 16; c->n_head = 32; c->n_kv_head = 8;
        c->d_model = 2048; c->ffn_hidden = 8192; c->tie_embeddings = 1; c->rope_theta = 500000.0f;
        c->rope_scaling = 1; c->rope_factor = 32.0f; c->rope_low_freq_factor = 1.0f;
        c->rope_high_freq_factor = 4.0f; c->rope_original_ctx = 8192;
    } else if (name == "qwen3-0.6b") {
        c->vocab_size = 151936; c->max_seq_len = 40960; c->n_layer = 28; c->n_head = 16; c->n_kv_head = 8;
        c->d_model = 1024; c->head_dim = 128; c->ffn_hidden = 3072; c->tie_embeddings = 1;
        c->rope_theta = 1000000.0f; c->qk_norm = 1; c->norm_eps = 1e-6f;
    } else if (name == "emu3-8b") {
        // BAAI/Emu3-Gen config.json: 8k context, theta 1e6
        c->vocab_size = 184622; c->max_seq_len = 9216; c->n_layer = 32; c->n_head = 32; c->n_kv_head = 8;
        c->d_model = 4096; c->ffn_hidden = 14336; c->tie_embeddings = 0; c->rope_theta = 1000000.0f;
    } else {
        return false;
    }
    return true;
}
#define GPT_PRESET_NAMES "tiny, shakespeare, gpt-s, gpt-1b, llama3.2-1b, qwen3-0.6b, emu3-8b"

// Registers a flag for every config field.
static inline void gpt_config_add_flags(ArgParser& ap, GPTConfig* c) {
    ap.section("model (every config field; a preset sets them, flags given after override)");
    ap.add_int("--vocab-size", &c->vocab_size, "vocabulary size");
    ap.add_int("--padded-vocab-size", &c->padded_vocab_size, "vocab rounded up (0: next multiple of 128)");
    ap.add_int("--max-seq-len", &c->max_seq_len, "longest sequence (RoPE table length)");
    ap.add_int("--n-layer", &c->n_layer, "transformer blocks");
    ap.add_int("--n-head", &c->n_head, "query heads");
    ap.add_int("--n-kv-head", &c->n_kv_head, "key/value heads (GQA; divides n-head)");
    ap.add_int("--d-model", &c->d_model, "model width C");
    ap.add_int("--head-dim", &c->head_dim, "head dim (0: d-model / n-head)");
    ap.add_int("--ffn-hidden", &c->ffn_hidden, "SwiGLU hidden size F");
    ap.add_float("--rope-theta", &c->rope_theta, "RoPE base");
    ap.add_bool("--rope-scaling", &c->rope_scaling, "Llama 3.1 RoPE frequency scaling");
    ap.add_float("--rope-factor", &c->rope_factor, "RoPE scaling factor");
    ap.add_float("--rope-low-freq-factor", &c->rope_low_freq_factor, "RoPE scaling low_freq_factor");
    ap.add_float("--rope-high-freq-factor", &c->rope_high_freq_factor, "RoPE scaling high_freq_factor");
    ap.add_int("--rope-original-ctx", &c->rope_original_ctx, "RoPE scaling original context");
    ap.add_float("--norm-eps", &c->norm_eps, "RMSNorm epsilon");
    ap.add_bool("--tie-embeddings", &c->tie_embeddings, "lm_head shares wte");
    ap.add_bool("--qk-norm", &c->qk_norm, "RMSNorm on q and k heads before RoPE (Qwen3)");
    ap.add_bool("--qkv-bias", &c->qkv_bias, "bias on the q/k/v projections (Qwen2.5)");
}

// Fills the derived fields and checks every constraint; errors name the flag.
static inline void gpt_config_finalize(GPTConfig* c) {
    if (c->vocab_size <= 0) fail("flag --vocab-size: must be > 0, got %d", c->vocab_size);
    if (c->n_layer <= 0) fail("flag --n-layer: must be > 0, got %d", c->n_layer);
    if (c->d_model <= 0 || c->d_model % 8 != 0) fail("flag --d-model: must be a positive multiple of 8, got %d", c->d_model);
    if (c->n_head <= 0) fail("flag --n-head: must be > 0, got %d", c->n_head);
    if (c->n_kv_head <= 0 || c->n_head % c->n_kv_head != 0)
        fail("flag --n-kv-head: must be > 0 and divide --n-head %d, got %d", c->n_head, c->n_kv_head);
    if (c->head_dim == 0) {
        if (c->d_model % c->n_head != 0) fail("flag --n-head: %d does not divide --d-model %d (or set --head-dim)", c->n_head, c->d_model);
        c->head_dim = c->d_model / c->n_head;
    }
    if (c->head_dim <= 0 || c->head_dim % 8 != 0 || c->head_dim > 128)
        fail("flag --head-dim: must be a multiple of 8 in [8, 128] (the attention kernels' range), got %d", c->head_dim);
    if (c->ffn_hidden <= 0 || c->ffn_hidden % 8 != 0) fail("flag --ffn-hidden: must be a positive multiple of 8, got %d", c->ffn_hidden);
    if (c->max_seq_len <= 0) fail("flag --max-seq-len: must be > 0, got %d", c->max_seq_len);
    if (c->padded_vocab_size == 0) c->padded_vocab_size = (c->vocab_size + 127) / 128 * 128;
    if (c->padded_vocab_size < c->vocab_size || c->padded_vocab_size % 8 != 0)
        fail("flag --padded-vocab-size: must be >= --vocab-size %d and a multiple of 8, got %d", c->vocab_size, c->padded_vocab_size);
    if (!(c->rope_theta > 0 && std::isfinite(c->rope_theta))) fail("flag --rope-theta: must be a finite number > 0");
    if (!(c->norm_eps > 0 && std::isfinite(c->norm_eps))) fail("flag --norm-eps: must be a finite number > 0");
    if (c->rope_scaling) {
        if (!(c->rope_factor >= 1)) fail("flag --rope-factor: must be >= 1");
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor)) fail("flag --rope-high-freq-factor: must exceed --rope-low-freq-factor");
        if (c->rope_original_ctx <= 0) fail("flag --rope-original-ctx: must be > 0");
    }
}

static inline std::vector<ParamTensor> gpt_param_layout(const GPTConfig& c) {
    const int L = c.n_layer, C = c.d_model, hd = c.head_dim, F = c.ffn_hidden, Vp = c.padded_vocab_size;
    const int qd = c.n_head * hd, QKV = qd + 2 * c.n_kv_head * hd;
    std::vector<ParamTensor> t;
    auto add = [&](const char* n, std::vector<int> s, bool decay) {
        size_t k = 1;
        for (int d : s) k *= (size_t)d;
        size_t off = t.empty() ? 0 : t.back().offset + t.back().numel;
        t.push_back({n, s, k, off, decay});
    };
    add("wte", {Vp, C}, false);
    add("attn_norm", {L, C}, false);
    add("wqkv", {L, QKV, C}, true);
    if (c.qkv_bias) add("bqkv", {L, QKV}, false);
    if (c.qk_norm) { add("q_norm", {L, hd}, false); add("k_norm", {L, hd}, false); }
    add("wo", {L, C, qd}, true);
    add("mlp_norm", {L, C}, false);
    add("wgateup", {L, 2 * F, C}, true);
    add("wdown", {L, C, F}, true);
    add("final_norm", {C}, false);
    if (!c.tie_embeddings) add("lm_head", {Vp, C}, true);
    return t;
}

// The backward finishes the output head (final norm, untied lm_head) first and the
// token embedding (wte, tied or not) last; every other tensor is stacked per layer.
static inline std::vector<int> gpt_param_stages(const std::vector<ParamTensor>& layout) {
    std::vector<int> k;
    for (const ParamTensor& t : layout)
        k.push_back(t.name == "wte" ? PARAM_TAIL : (t.name == "final_norm" || t.name == "lm_head") ? PARAM_HEAD : PARAM_LAYER);
    return k;
}

static inline const ParamTensor* gpt_find_param(const std::vector<ParamTensor>& t, const char* name) {
    for (const ParamTensor& p : t) if (p.name == name) return &p;
    return nullptr;
}

// RoPE inverse frequencies theta^(-2i/hd), i < hd/2, with optional Llama 3.1
// scaling (HF's _compute_llama3_parameters), computed in double on the host.
static inline std::vector<double> gpt_rope_inv_freq(const GPTConfig& c) {
    const int half = c.head_dim / 2;
    std::vector<double> f(half);
    for (int i = 0; i < half; i++) {
        double inv = pow((double)c.rope_theta, -2.0 * i / c.head_dim);
        if (c.rope_scaling) {
            const double pi = 3.14159265358979323846;
            double low_wl = c.rope_original_ctx / (double)c.rope_low_freq_factor;
            double high_wl = c.rope_original_ctx / (double)c.rope_high_freq_factor;
            double wl = 2 * pi / inv;
            if (wl > low_wl) {
                inv = inv / c.rope_factor;
            } else if (wl >= high_wl) {
                double s = (c.rope_original_ctx / wl - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
                inv = (1 - s) * inv / c.rope_factor + s * inv;
            }
        }
        f[i] = inv;
    }
    return f;
}

// Model FLOPs per trained token (forward + backward): 6 per weight that is
// multiplied (the input embedding is a lookup; a tied head still multiplies)
// plus causal attention, half of 12*L*T*(nh*hd).
static inline double gpt_flops_per_token(const GPTConfig& c, size_t num_params, int T) {
    double mult = (double)num_params - (double)c.padded_vocab_size * c.d_model;
    if (c.tie_embeddings) mult += (double)c.vocab_size * c.d_model;
    else mult -= (double)(c.padded_vocab_size - c.vocab_size) * c.d_model;
    return 6.0 * mult + 6.0 * c.n_layer * (double)T * c.n_head * c.head_dim;
}
