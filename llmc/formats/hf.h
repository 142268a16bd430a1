/*
Hugging Face model directories in and out (host only, no CUDA): config.json +
safetensors (single file or sharded with model.safetensors.index.json) for the
Llama, Qwen2, Qwen3, Mistral and Emu3 families, mapped to and from mega.c's
GPTConfig and parameter layout (llmc/model/gpt_config.h).

    HFInfo info;
    GPTConfig cfg = hf_load_config("path/to/model", &info);     // fails on what mega.c cannot run
    std::vector<ParamTensor> layout = gpt_param_layout(cfg);
    std::vector<float> params = hf_load_weights("path/to/model", cfg, layout, &info);
    ...
    hf_export("out/dir", cfg, params.data(), ST_BF16, info.bos_token_id, info.eos_token_id);

config.json -> GPTConfig
  model_type (or, without it, architectures[0]):
    llama / LlamaForCausalLM                  Llama 2/3.x
    qwen2 / Qwen2ForCausalLM                  q/k/v bias always
    qwen3 / Qwen3ForCausalLM                  QK-norm; head_dim defaults to 128 as in transformers
    mistral / MistralForCausalLM              Llama's math where sliding_window is null, absent, or at
                                              least the sequence length (a window covering every
                                              earlier position masks nothing): hf_check_seq_len
                                              refuses a shorter window once the run's T is known.
                                              No biases (transformers' Mistral reads neither
                                              attention_bias nor mlp_bias)
    Emu3 / emu3 / emu3_text_model / Emu3ForCausalLM   Llama-shaped. BAAI's flat config (tensors
                                              model.*), or transformers' composite emu3 config whose
                                              text_config is read (tensors text_model.model.* or
                                              model.text_model.*; the VQ-VAE's vqmodel.* tensors are
                                              the image tokenizer and are skipped)
  required: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size,
    rms_norm_eps, max_position_embeddings, rope_theta (top level, or inside rope_parameters as
    transformers 5 writes it)
  optional (transformers' defaults): num_key_value_heads (= heads), head_dim (hidden/heads; 128 for
    qwen3), tie_word_embeddings (false), attention_bias (false), hidden_act (silu), rope_scaling /
    rope_parameters (none; rope_type llama3 with factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings), bos_token_id, eos_token_id (an int or a list: the first)
  refused, with one line naming config.json and the field: another model_type, hidden_act other
    than silu, mlp_bias, rope types other than default/llama3, partial rotary factor, sliding-window
    attention in use (use_sliding_window with layers >= max_window_layers, layer_types other
    than full_attention, Mistral's sliding_window shorter than the sequence), mixture of experts (num_experts, num_local_experts, n_routed_experts),
    and shapes mega.c's kernels do not run (hidden_size, intermediate_size and head_dim multiples
    of 8, head_dim <= 128).
  sizes: hidden_size <= 65536, intermediate_size <= 2^20, num_hidden_layers and heads <= 4096,
    vocab_size and max_position_embeddings <= 2^24 (far past any released model; keeps the layout
    arithmetic small); and where the directory holds weights, hf_load_config checks every size
    against the safetensors headers (hf_check_weights) before it returns, so a caller never
    allocates by a config.json the weights do not bear out.
  attention_bias=true (Llama, Qwen3, Emu3) puts a bias on q/k/v and on o_proj: mega.c has q/k/v
    bias (qkv_bias) but none on o_proj, so an o_proj.bias must be all zeros (else an error).
  Ignored: attention_dropout (a training-time regularizer mega.c does not have; inference is the
    same), pretraining_tp (same math), use_cache, initializer_range, pad_token_id, dtype.

Weights: every tensor the config implies must exist with the exact shape (F32, BF16 or F16;
converted to fp32), and any other tensor is an error, except rotary_emb.inv_freq buffers and the
Emu3 VQ-VAE. With tie_word_embeddings a present lm_head.weight must equal embed_tokens. Rows of
the padded vocabulary (padded_vocab_size > vocab_size) are zero.
  HF name (prefix "model.")                         mega.c tensor (per layer l)
  embed_tokens.weight [V, C]                        wte rows 0..V-1
  layers.l.input_layernorm.weight [C]               attn_norm[l]
  layers.l.self_attn.{q,k,v}_proj.weight            wqkv[l] rows: q (nh*hd), then k, then v (nkv*hd)
  layers.l.self_attn.{q,k,v}_proj.bias              bqkv[l] (qkv_bias)
  layers.l.self_attn.{q,k}_norm.weight [hd]         q_norm[l], k_norm[l] (qk_norm)
  layers.l.self_attn.o_proj.weight [C, nh*hd]       wo[l]
  layers.l.post_attention_layernorm.weight [C]      mlp_norm[l]
  layers.l.mlp.{gate,up}_proj.weight [F, C]         wgateup[l] rows: gate, then up
  layers.l.mlp.down_proj.weight [C, F]              wdown[l]
  norm.weight [C]                                   final_norm
  lm_head.weight [V, C] (no prefix)                 lm_head rows 0..V-1 (untied)
RoPE needs no permutation: transformers' rotate_half is mega.c's half rotation (pairs i, i+hd/2).

Export (hf_export): DIR/model.safetensors (F32 or BF16, "format": "pt" metadata), or, past
max_shard_bytes of tensor data (train_gpt's --export-hf-shard-mb), shards
DIR/model-00001-of-0000N.safetensors ... and DIR/model.safetensors.index.json
(safetensors_write_dir: split in order as save_pretrained does), then DIR/config.json, each
written to a temporary name, fsync'ed and renamed (the index after its shards, config.json
last: a directory with a config.json is complete). The family follows the config: qk_norm ->
Qwen3ForCausalLM (with qkv_bias: attention_bias true and zero o_proj biases), qkv_bias ->
Qwen2ForCausalLM, else LlamaForCausalLM (an imported Emu3 leaves as Llama: the same tensors),
except that a model imported from Mistral (hf_export's `from`) leaves as MistralForCausalLM with
its sliding_window (a fine-tune keeps the config a Mistral tool expects).
The vocabulary is unpadded. Floats are written in the shortest form that reads back as the same
fp32 value, so export -> import gives back the same GPTConfig and, with F32, the same bits.
*/
#pragma once
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <sys/stat.h>
#include <vector>
#include "../core/utils.h"
#include "../core/args.h"
#include "json.h"
#include "safetensors.h"
#include "../model/gpt_config.h"

enum HFFamily { HF_LLAMA = 0, HF_QWEN2 = 1, HF_QWEN3 = 2, HF_EMU3 = 3, HF_MISTRAL = 4 };
static inline const char* hf_family_name(int f) {
    return f == HF_LLAMA     ? "llama"
           : f == HF_QWEN2   ? "qwen2"
           : f == HF_QWEN3   ? "qwen3"
           : f == HF_EMU3    ? "emu3"
           : f == HF_MISTRAL ? "mistral"
                             : "?";
}

// What hf_load_config learned besides the GPTConfig.
struct HFInfo {
    std::string dir, config_path;
    std::string model_type;          // as config.json has it (or derived from architectures)
    int family = HF_LLAMA;
    bool composite = false;          // transformers' composite emu3 config (text_config + vq_config)
    int o_bias = 0;                  // attention_bias: o_proj has a bias (must be zero)
    int bos_token_id = -1, eos_token_id = -1;
    std::string dtype;               // torch_dtype / dtype, "" if absent
    int64_t sliding_window = 0;      // Mistral's attention window; 0: null or absent (full causal attention)
};

// ---------------------------------------------------------------------------
// config.json

static inline std::string hf_join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

static inline int hf_family_from_model_type(const std::string& mt) {
    if (mt == "llama") return HF_LLAMA;
    if (mt == "qwen2") return HF_QWEN2;
    if (mt == "qwen3") return HF_QWEN3;
    if (mt == "mistral") return HF_MISTRAL;
    if (mt == "Emu3" || mt == "emu3" || mt == "emu3_text_model") return HF_EMU3;
    return -1;
}
static inline int hf_family_from_architecture(const std::string& a) {
    if (a == "LlamaForCausalLM") return HF_LLAMA;
    if (a == "Qwen2ForCausalLM") return HF_QWEN2;
    if (a == "Qwen3ForCausalLM") return HF_QWEN3;
    if (a == "MistralForCausalLM") return HF_MISTRAL;
    if (a == "Emu3ForCausalLM" || a == "Emu3ForConditionalGeneration") return HF_EMU3;
    return -1;
}

// an int or a list of ints (eos_token_id); -1 when absent or null
static inline int hf_token_id(JsonRef r, const char* key) {
    if (!r.has(key) || r[key].is_null()) return -1;
    JsonRef v = r[key];
    if (v.is_array()) return v.size() ? v.at(0).as_int(0, INT32_MAX) : -1;
    return v.as_int(0, INT32_MAX);
}

#define HF_MAX_HIDDEN (1 << 16)
#define HF_MAX_INTERMEDIATE (1 << 20)
#define HF_MAX_LAYERS 4096
#define HF_MAX_HEADS 4096
#define HF_MAX_VOCAB (1 << 24)
#define HF_MAX_POSITIONS (1 << 24)

static inline void hf_check_weights(const std::string& dir, const GPTConfig& c, const HFInfo& info);

static inline GPTConfig hf_load_config(const std::string& dir, HFInfo* info_out = nullptr) {
    HFInfo info;
    info.dir = dir;
    info.config_path = hf_join(dir, "config.json");
    const std::string& path = info.config_path;
    const char* p = path.c_str();
    if (!file_exists(path)) fail("%s: cannot open (%s): --init-hf expects a Hugging Face model directory (config.json + safetensors)", p, strerror(ENOENT));
    JsonDoc doc = json_parse_file(path, (size_t)16 << 20);
    JsonRef top = doc.root();
    if (!top.is_object()) top.type_error("a JSON object");

    // the family
    int fam = -1;
    if (top.has("model_type") && !top["model_type"].is_null()) {
        info.model_type = top["model_type"].as_string();
        fam = hf_family_from_model_type(info.model_type);
        if (fam < 0)
            fail("%s: model_type: '%s' is not supported (expected llama, qwen2, qwen3, mistral or emu3%s)", p, info.model_type.c_str(),
                 info.model_type.find("moe") != std::string::npos ? "; mixture-of-experts models are not supported" : "");
    } else if (top.has("architectures") && !top["architectures"].is_null()) {
        JsonRef a = top["architectures"];
        if (!a.is_array() || a.size() == 0) a.type_error("a non-empty array of class names");
        const std::string& arch = a.at(0).as_string();
        fam = hf_family_from_architecture(arch);
        if (fam < 0)
            fail("%s: architectures[0]: '%s' is not supported (expected LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM or Emu3ForCausalLM)", p,
                 arch.c_str());
        info.model_type = hf_family_name(fam);
    } else {
        fail("%s: model_type: missing field (and no architectures field to tell the model family)", p);
    }
    info.family = fam;
    info.dtype = top.get_string("torch_dtype", top.get_string("dtype", ""));
    // transformers' composite Emu3 config: the decoder's fields are in text_config
    JsonRef r = top;
    if (fam == HF_EMU3 && top.has("text_config") && !top["text_config"].is_null()) {
        r = top["text_config"];
        if (!r.is_object()) r.type_error("an object (the Emu3 text model's config)");
        info.composite = true;
    }
    info.bos_token_id = hf_token_id(r, "bos_token_id");
    info.eos_token_id = hf_token_id(r, "eos_token_id");
    if (info.bos_token_id < 0) info.bos_token_id = hf_token_id(top, "bos_token_id");
    if (info.eos_token_id < 0) info.eos_token_id = hf_token_id(top, "eos_token_id");

    // Sizes past these bounds are no model mega.c can hold (each is far beyond any released model's),
    // and refusing them here keeps the products below (layouts, buffers) from overflowing or
    // asking for terabytes; the weight files then pin every size exactly (hf_check_weights).
    auto req_int = [&](const char* k, int hi) { return r[k].as_int(1, hi); };
    auto where = [&](const char* k) { return r.child_path(k); };
    GPTConfig c;
    c.d_model = req_int("hidden_size", HF_MAX_HIDDEN);
    c.ffn_hidden = req_int("intermediate_size", HF_MAX_INTERMEDIATE);
    c.n_layer = req_int("num_hidden_layers", HF_MAX_LAYERS);
    c.n_head = req_int("num_attention_heads", HF_MAX_HEADS);
    c.vocab_size = req_int("vocab_size", HF_MAX_VOCAB);
    c.max_seq_len = req_int("max_position_embeddings", HF_MAX_POSITIONS);
    c.n_kv_head = (r.has("num_key_value_heads") && !r["num_key_value_heads"].is_null()) ? req_int("num_key_value_heads", HF_MAX_HEADS) : c.n_head;
    const bool has_hd = r.has("head_dim") && !r["head_dim"].is_null();
    const int head_dim = has_hd ? req_int("head_dim", 1 << 16) : fam == HF_QWEN3 ? 128 : 0;
    {
        const double eps = r["rms_norm_eps"].as_double();
        if (!(eps > 0)) fail("%s: %s: must be > 0, found %g", p, where("rms_norm_eps").c_str(), eps);
        c.norm_eps = (float)eps;
    }
    c.tie_embeddings = r.get_bool("tie_word_embeddings", false) ? 1 : 0;
    const std::string act = r.get_string("hidden_act", "silu");
    if (act != "silu") fail("%s: %s: '%s' is not supported (mega.c's MLP is SwiGLU: silu)", p, where("hidden_act").c_str(), act.c_str());
    if (fam != HF_MISTRAL && r.get_bool("mlp_bias", false)) fail("%s: %s: true is not supported (mega.c's MLP has no biases)", p, where("mlp_bias").c_str());
    for (const char* k : {"num_experts", "num_local_experts", "n_routed_experts"})
        if (r.has(k) && !r[k].is_null() && r[k].as_int64() > 0)
            fail("%s: %s: mixture-of-experts models are not supported", p, where(k).c_str());
    if (fam == HF_QWEN2) {
        c.qkv_bias = 1;                       // Qwen2 always has q/k/v bias, never an o_proj bias
    } else if (fam == HF_MISTRAL) {
        c.qkv_bias = 0;                       // Mistral has no biases whatever the config says
    } else {
        const bool ab = r.get_bool("attention_bias", false);
        c.qkv_bias = ab ? 1 : 0;
        info.o_bias = ab ? 1 : 0;
    }
    c.qk_norm = fam == HF_QWEN3 ? 1 : 0;
    // sliding-window attention (Qwen2/3 configs carry the fields; in use only when switched on)
    if (r.get_bool("use_sliding_window", false)) {
        const int64_t mwl = r.get_int64("max_window_layers", 0);
        if (mwl < c.n_layer)
            fail("%s: %s: sliding-window attention (layers >= max_window_layers %lld) is not supported", p, where("use_sliding_window").c_str(),
                 (long long)mwl);
    }
    // Mistral's window is on whenever it is not null; whether it bites depends on the run's sequence
    // length, which hf_check_seq_len checks
    if (fam == HF_MISTRAL && r.has("sliding_window") && !r["sliding_window"].is_null())
        info.sliding_window = r["sliding_window"].as_int64(1, INT64_MAX);
    if (r.has("layer_types") && !r["layer_types"].is_null()) {
        JsonRef lt = r["layer_types"];
        if (!lt.is_array()) lt.type_error("an array of layer types");
        for (size_t k = 0; k < lt.size(); k++)
            if (lt.at(k).as_string() != "full_attention")
                fail("%s: %s[%zu]: '%s' is not supported (only full_attention)", p, where("layer_types").c_str(), k, lt.at(k).as_string().c_str());
    }
    // RoPE: rope_scaling (transformers 4) or rope_parameters (transformers 5); rope_scaling wins, as there
    const char* rkey = nullptr;
    if (r.has("rope_scaling") && !r["rope_scaling"].is_null()) rkey = "rope_scaling";
    else if (r.has("rope_parameters") && !r["rope_parameters"].is_null()) rkey = "rope_parameters";
    double theta = -1;
    if (rkey) {
        JsonRef rp = r[rkey];
        if (!rp.is_object()) rp.type_error("an object of RoPE parameters");
        const std::string type = rp.get_string("rope_type", rp.get_string("type", "default"));
        const std::string tw = rp.child_path(rp.has("rope_type") ? "rope_type" : "type");
        if (rp.has("rope_theta") && !rp["rope_theta"].is_null()) theta = rp["rope_theta"].as_double();
        if (rp.has("partial_rotary_factor") && !rp["partial_rotary_factor"].is_null() && rp["partial_rotary_factor"].as_double() != 1.0)
            fail("%s: %s: partial rotary embeddings are not supported", p, rp.child_path("partial_rotary_factor").c_str());
        if (type == "llama3") {
            c.rope_scaling = 1;
            c.rope_factor = (float)rp["factor"].as_double();
            c.rope_low_freq_factor = (float)rp["low_freq_factor"].as_double();
            c.rope_high_freq_factor = (float)rp["high_freq_factor"].as_double();
            c.rope_original_ctx = rp["original_max_position_embeddings"].as_int(1, 1 << 30);
            if (!(c.rope_factor >= 1)) fail("%s: %s: must be >= 1, found %g", p, rp.child_path("factor").c_str(), c.rope_factor);
            if (!(c.rope_high_freq_factor > c.rope_low_freq_factor) || !(c.rope_low_freq_factor > 0))
                fail("%s: %s: must exceed low_freq_factor %g (> 0), found %g", p, rp.child_path("high_freq_factor").c_str(),
                     c.rope_low_freq_factor, c.rope_high_freq_factor);
        } else if (type != "default") {
            fail("%s: %s: '%s' is not supported (expected llama3, or default / null for plain RoPE)", p, tw.c_str(), type.c_str());
        }
    }
    if (theta < 0) {
        if (!r.has("rope_theta") || r["rope_theta"].is_null())
            fail("%s: %s: missing field (nor in rope_parameters)", p, where("rope_theta").c_str());
        theta = r["rope_theta"].as_double();
    }
    if (!(theta > 0)) fail("%s: %s: must be > 0, found %g", p, where("rope_theta").c_str(), theta);
    c.rope_theta = (float)theta;
    if (r.has("partial_rotary_factor") && !r["partial_rotary_factor"].is_null() && r["partial_rotary_factor"].as_double() != 1.0)
        fail("%s: %s: partial rotary embeddings are not supported", p, where("partial_rotary_factor").c_str());

    // shapes the kernels run (errors name config.json, not the flags gpt_config_finalize names)
    if (c.n_head % c.n_kv_head != 0)
        fail("%s: %s: %d does not divide num_attention_heads %d", p, where("num_key_value_heads").c_str(), c.n_kv_head, c.n_head);
    if (c.d_model % 8 != 0) fail("%s: %s: %d is not a multiple of 8 (mega.c's kernels need it)", p, where("hidden_size").c_str(), c.d_model);
    if (c.ffn_hidden % 8 != 0)
        fail("%s: %s: %d is not a multiple of 8 (mega.c's kernels need it)", p, where("intermediate_size").c_str(), c.ffn_hidden);
    if (head_dim == 0 && c.d_model % c.n_head != 0)
        fail("%s: %s: %d heads do not divide hidden_size %d (and there is no head_dim)", p, where("num_attention_heads").c_str(), c.n_head, c.d_model);
    c.head_dim = head_dim ? head_dim : c.d_model / c.n_head;
    if (c.head_dim % 8 != 0 || c.head_dim > 128)
        fail("%s: %s: %d is not a multiple of 8 in [8, 128] (the attention kernels' range)", p, where("head_dim").c_str(), c.head_dim);
    c.padded_vocab_size = 0;
    gpt_config_finalize(&c);
    // A directory with weights: every size is checked against them now, before any caller
    // allocates buffers by the config (a config.json claiming a million layers names its field
    // here, not as an allocation failure). Without weights (a config alone) the bounds above hold.
    if (file_exists(hf_join(dir, "model.safetensors.index.json")) || file_exists(hf_join(dir, "model.safetensors")))
        hf_check_weights(dir, c, info);
    if (info_out) *info_out = info;
    return c;
}

// What of config.json depends on the run's sequence length T: Mistral's sliding window. A window
// of at least T covers every earlier position (transformers keeps key j for query i where
// j > i - sliding_window), so the attention is full causal attention, which mega.c runs.
static inline void hf_check_seq_len(const HFInfo& info, int T) {
    if (info.sliding_window > 0 && info.sliding_window < T)
        fail("%s: sliding_window: %lld is shorter than the sequence length %d: sliding-window attention is not supported "
             "(a window of at least the sequence length, or null, is full causal attention: --seq-len %lld or less)",
             info.config_path.c_str(), (long long)info.sliding_window, T, (long long)info.sliding_window);
}

// ---------------------------------------------------------------------------
// tensor names <-> the layout

struct HFTensor {
    std::string name;
    std::vector<int64_t> shape;
    size_t offset;      // element offset of its first value in mega.c's parameter buffer
};

// Every HF tensor of a model with config c, in a fixed order (embeddings, layers, norm, head).
// prefix: "model." (or an Emu3 composite's); lm_head: the head's name.
static inline std::vector<HFTensor> hf_tensor_map(const GPTConfig& c, const std::vector<ParamTensor>& layout,
                                                  const std::string& prefix = "model.", const std::string& lm_head = "lm_head.weight") {
    const int64_t L = c.n_layer, C = c.d_model, hd = c.head_dim, F = c.ffn_hidden, V = c.vocab_size;
    const int64_t qd = c.n_head * hd, kvd = c.n_kv_head * hd, QKV = qd + 2 * kvd;
    auto off = [&](const char* n) {
        const ParamTensor* t = gpt_find_param(layout, n);
        if (!t) fail("hf_tensor_map: the layout has no tensor %s", n);
        return t->offset;
    };
    std::vector<HFTensor> m;
    m.push_back({prefix + "embed_tokens.weight", {V, C}, off("wte")});
    for (int64_t l = 0; l < L; l++) {
        const std::string b = prefix + "layers." + std::to_string(l) + ".";
        m.push_back({b + "input_layernorm.weight", {C}, off("attn_norm") + (size_t)(l * C)});
        const size_t wq = off("wqkv") + (size_t)(l * QKV * C);
        m.push_back({b + "self_attn.q_proj.weight", {qd, C}, wq});
        m.push_back({b + "self_attn.k_proj.weight", {kvd, C}, wq + (size_t)(qd * C)});
        m.push_back({b + "self_attn.v_proj.weight", {kvd, C}, wq + (size_t)((qd + kvd) * C)});
        if (c.qkv_bias) {
            const size_t bq = off("bqkv") + (size_t)(l * QKV);
            m.push_back({b + "self_attn.q_proj.bias", {qd}, bq});
            m.push_back({b + "self_attn.k_proj.bias", {kvd}, bq + (size_t)qd});
            m.push_back({b + "self_attn.v_proj.bias", {kvd}, bq + (size_t)(qd + kvd)});
        }
        if (c.qk_norm) {
            m.push_back({b + "self_attn.q_norm.weight", {hd}, off("q_norm") + (size_t)(l * hd)});
            m.push_back({b + "self_attn.k_norm.weight", {hd}, off("k_norm") + (size_t)(l * hd)});
        }
        m.push_back({b + "self_attn.o_proj.weight", {C, qd}, off("wo") + (size_t)(l * C * qd)});
        m.push_back({b + "post_attention_layernorm.weight", {C}, off("mlp_norm") + (size_t)(l * C)});
        const size_t wg = off("wgateup") + (size_t)(l * 2 * F * C);
        m.push_back({b + "mlp.gate_proj.weight", {F, C}, wg});
        m.push_back({b + "mlp.up_proj.weight", {F, C}, wg + (size_t)(F * C)});
        m.push_back({b + "mlp.down_proj.weight", {C, F}, off("wdown") + (size_t)(l * C * F)});
    }
    m.push_back({prefix + "norm.weight", {C}, off("final_norm")});
    if (!c.tie_embeddings) m.push_back({lm_head, {V, C}, off("lm_head")});
    return m;
}

static inline bool hf_str_starts(const std::string& s, const std::string& pre) { return s.compare(0, pre.size(), pre) == 0; }

// Where the decoder's tensors are: the name prefix, the head's name and the prefixes of tensors that
// are not the decoder's (Emu3 composites: two historical layouts, and the VQ-VAE).
struct HFNames {
    std::string prefix = "model.", lm_head = "lm_head.weight";
    std::vector<std::string> skip;
};
static inline HFNames hf_names(const SafeTensors* st, const HFInfo& info) {
    HFNames n;
    if (info.composite) {
        if (safetensors_find(st, "text_model.model.embed_tokens.weight")) {
            n.prefix = "text_model.model."; n.lm_head = "text_model.lm_head.weight"; n.skip = {"vqmodel."};
        } else {
            n.prefix = "model.text_model."; n.skip = {"model.vqmodel."};
        }
    }
    return n;
}

// Every tensor of map must be in st with its exact shape (src: the file or index to name).
static inline void hf_require_tensors(const SafeTensors* st, const std::vector<HFTensor>& map, const std::string& src, const HFInfo& info) {
    for (const HFTensor& t : map) {
        const SafeTensorInfo* ti = safetensors_find(st, t.name);
        if (!ti)
            fail("%s: tensor %s is missing (expected shape %s for the %s model of config.json)", src.c_str(), t.name.c_str(),
                 st_shape_str(t.shape).c_str(), hf_family_name(info.family));
        if (ti->shape != t.shape)
            fail("%s: tensor %s has shape %s, expected %s", st->files[ti->file].path.c_str(), t.name.c_str(), st_shape_str(ti->shape).c_str(),
                 st_shape_str(t.shape).c_str());
    }
}

// Tensor name, [rows, cols] with cols right, must have `want` rows; else fails naming config.json's
// field `field` (what: the field's value and how it makes want). A missing tensor fails too.
static inline void hf_check_rows(const SafeTensors* st, const HFInfo& info, const std::string& name, const char* field, int64_t want,
                                 const std::string& what, int64_t cols) {
    const SafeTensorInfo* t = safetensors_find(st, name);
    const std::string src = st->files.size() == 1 ? st->files[0].path : hf_join(info.dir, "model.safetensors.index.json");
    if (!t) fail("%s: tensor %s is missing (expected for the %s model of %s)", src.c_str(), name.c_str(), hf_family_name(info.family), info.config_path.c_str());
    if (t->shape.size() == 2 && t->shape[1] == cols && t->shape[0] != want)
        fail("%s: %s: %s, but %s in %s has %lld rows (the config does not match the weights)", info.config_path.c_str(), field,
             what.c_str(), name.c_str(), st->files[t->file].path.c_str(), (long long)t->shape[0]);
}

// Checks the sizes config.json gives against the weight files' headers (no tensor data is read),
// naming the config field that disagrees: hidden_size and vocab_size against embed_tokens,
// num_hidden_layers against the layers present, intermediate_size against gate_proj, heads x
// head_dim against q_proj and k_proj; then every tensor the config implies must exist with its
// exact shape. After it the weights' buffers are as large as the files' tensors, no larger.
static inline void hf_check_weights(const std::string& dir, const GPTConfig& c, const HFInfo& info) {
    SafeTensors st;
    safetensors_open(&st, dir);
    const HFNames nm = hf_names(&st, info);
    const std::string src = st.files.size() == 1 ? st.files[0].path : hf_join(dir, "model.safetensors.index.json");
    const char* cp = info.config_path.c_str();
    const std::string emb = nm.prefix + "embed_tokens.weight";
    const SafeTensorInfo* e = safetensors_find(&st, emb);
    if (!e) fail("%s: tensor %s is missing (expected shape [vocab_size, hidden_size] for the %s model of %s)", src.c_str(), emb.c_str(),
                 hf_family_name(info.family), cp);
    if (e->shape.size() != 2 || e->shape[1] != c.d_model)
        fail("%s: hidden_size: %d, but %s in %s has shape %s", cp, c.d_model, emb.c_str(), st.files[e->file].path.c_str(), st_shape_str(e->shape).c_str());
    if (e->shape[0] != c.vocab_size)
        fail("%s: vocab_size: %d, but %s in %s has %lld rows (the config does not match the weights)", cp, c.vocab_size, emb.c_str(),
             st.files[e->file].path.c_str(), (long long)e->shape[0]);
    // layers present: the largest index in prefix + "layers.N." plus one
    const std::string lp = nm.prefix + "layers.";
    int64_t n_layers = 0;
    for (const SafeTensorInfo& t : st.tensors) {
        if (!hf_str_starts(t.name, lp)) continue;
        const char* q = t.name.c_str() + lp.size();
        int64_t k = 0;
        int digits = 0;
        for (; *q >= '0' && *q <= '9' && digits < 10; q++, digits++) k = k * 10 + (*q - '0');
        if (digits > 0 && *q == '.' && k + 1 > n_layers) n_layers = k + 1;
    }
    if (n_layers != c.n_layer)
        fail("%s: num_hidden_layers: %d, but the weights in %s hold %lld layers (tensors %sN.*) (the config does not match the weights)", cp,
             c.n_layer, src.c_str(), (long long)n_layers, lp.c_str());
    const std::string l0 = lp + "0.";
    const std::string hd = " heads x head_dim " + std::to_string(c.head_dim) + " = ";
    hf_check_rows(&st, info, l0 + "mlp.gate_proj.weight", "intermediate_size", c.ffn_hidden, std::to_string(c.ffn_hidden), c.d_model);
    hf_check_rows(&st, info, l0 + "self_attn.q_proj.weight", "num_attention_heads", (int64_t)c.n_head * c.head_dim,
                  std::to_string(c.n_head) + hd + std::to_string((int64_t)c.n_head * c.head_dim) + " rows", c.d_model);
    hf_check_rows(&st, info, l0 + "self_attn.k_proj.weight", "num_key_value_heads", (int64_t)c.n_kv_head * c.head_dim,
                  std::to_string(c.n_kv_head) + hd + std::to_string((int64_t)c.n_kv_head * c.head_dim) + " rows", c.d_model);
    hf_require_tensors(&st, hf_tensor_map(c, gpt_param_layout(c), nm.prefix, nm.lm_head), src, info);
    safetensors_close(&st);
}

// Reads the weights of the model in dir (config from hf_load_config) into mega.c's layout.
static inline std::vector<float> hf_load_weights(const std::string& dir, const GPTConfig& cfg, const std::vector<ParamTensor>& layout,
                                                 const HFInfo* info_in = nullptr) {
    HFInfo info;
    if (info_in) info = *info_in;
    else (void)hf_load_config(dir, &info);
    SafeTensors st;
    safetensors_open(&st, dir);
    const std::string src = st.files.size() == 1 ? st.files[0].path : hf_join(dir, "model.safetensors.index.json");
    const HFNames nm = hf_names(&st, info);
    const std::string &prefix = nm.prefix, &lm_head = nm.lm_head;
    const std::vector<std::string>& skip = nm.skip;
    const std::vector<HFTensor> map = hf_tensor_map(cfg, layout, prefix, lm_head);
    hf_require_tensors(&st, map, src, info);   // before the buffer is allocated
    std::vector<float> params(layout_numel(layout), 0.0f);
    std::map<std::string, int> expected;
    for (const HFTensor& t : map) {
        expected[t.name] = 1;
        safetensors_read_expect(&st, t.name, t.shape, params.data() + t.offset);
    }
    const int64_t C = cfg.d_model;
    // o_proj biases of attention_bias models: mega.c has none, so they must be zero
    if (info.o_bias) {
        for (int l = 0; l < cfg.n_layer; l++) {
            const std::string n = prefix + "layers." + std::to_string(l) + ".self_attn.o_proj.bias";
            expected[n] = 1;
            const SafeTensorInfo* ti = safetensors_find(&st, n);
            if (!ti) fail("%s: tensor %s is missing (config.json has attention_bias true)", src.c_str(), n.c_str());
            std::vector<float> b((size_t)C);
            safetensors_read_expect(&st, n, {C}, b.data());
            for (int64_t k = 0; k < C; k++)
                if (b[k] != 0.0f)
                    fail("%s: tensor %s has non-zero values (element %lld is %g): mega.c has no output-projection bias", st.files[ti->file].path.c_str(),
                         n.c_str(), (long long)k, b[k]);
        }
    }
    // a tied model may still carry lm_head.weight: only as a copy of the embeddings
    if (cfg.tie_embeddings) {
        if (const SafeTensorInfo* ti = safetensors_find(&st, lm_head)) {
            expected[lm_head] = 1;
            std::vector<float> h((size_t)cfg.vocab_size * C);
            safetensors_read_expect(&st, lm_head, {(int64_t)cfg.vocab_size, C}, h.data());
            const float* wte = params.data() + gpt_find_param(layout, "wte")->offset;
            if (memcmp(h.data(), wte, h.size() * sizeof(float)) != 0)
                fail("%s: tensor %s differs from %sembed_tokens.weight, but config.json has tie_word_embeddings true", st.files[ti->file].path.c_str(),
                     lm_head.c_str(), prefix.c_str());
        }
    }
    for (const SafeTensorInfo& t : st.tensors) {
        if (expected.count(t.name)) continue;
        if (st_ends_with(t.name, "rotary_emb.inv_freq")) continue;
        bool skipped = false;
        for (const std::string& s : skip) skipped = skipped || hf_str_starts(t.name, s);
        if (skipped) continue;
        fail("%s: unexpected tensor %s (not part of the %s model config.json describes: %d layers%s%s%s)", st.files[t.file].path.c_str(), t.name.c_str(),
             hf_family_name(info.family), cfg.n_layer, cfg.tie_embeddings ? ", tied embeddings" : ", untied", cfg.qkv_bias ? ", q/k/v bias" : "",
             cfg.qk_norm ? ", qk-norm" : "");
    }
    safetensors_close(&st);
    return params;
}

// ---------------------------------------------------------------------------
// export

// The shortest decimal that reads back as the same float, always with a '.' or an exponent
// (so that Python reads a float): 1e-05, 500000.0, 0.1.
static inline JsonValue hf_json_float(float x) {
    if (!std::isfinite(x)) fail("hf_export: cannot write the non-finite number %g", (double)x);
    char buf[48];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, nullptr) == x) break;
    }
    std::string s = buf;
    if (s.find_first_of(".eE") == std::string::npos) s += ".0";
    JsonValue v;
    v.type = JSON_NUMBER;
    v.str = s;
    return v;
}

// The family of an export: qk_norm -> Qwen3, qkv_bias -> Qwen2, else Llama, or Mistral when the
// model was imported from a Mistral directory (from: its HFInfo, or null).
static inline int hf_export_family(const GPTConfig& c, const HFInfo* from = nullptr) {
    if (c.qk_norm) return HF_QWEN3;
    if (c.qkv_bias) return HF_QWEN2;
    return from && from->family == HF_MISTRAL ? HF_MISTRAL : HF_LLAMA;
}
static inline const char* hf_export_architecture(const GPTConfig& c, const HFInfo* from = nullptr) {
    const int fam = hf_export_family(c, from);
    return fam == HF_QWEN3 ? "Qwen3ForCausalLM" : fam == HF_QWEN2 ? "Qwen2ForCausalLM" : fam == HF_MISTRAL ? "MistralForCausalLM" : "LlamaForCausalLM";
}

// The config.json of an export.
static inline JsonValue hf_export_config(const GPTConfig& c, int dtype, int bos_token_id = -1, int eos_token_id = -1, const HFInfo* from = nullptr) {
    const int fam = hf_export_family(c, from);
    JsonValue j = json_object();
    j.set("architectures", json_array().push(json_string(hf_export_architecture(c, from))));
    j.set("model_type", json_string(hf_family_name(fam)));
    j.set("vocab_size", json_int(c.vocab_size));
    j.set("hidden_size", json_int(c.d_model));
    j.set("intermediate_size", json_int(c.ffn_hidden));
    j.set("num_hidden_layers", json_int(c.n_layer));
    j.set("num_attention_heads", json_int(c.n_head));
    j.set("num_key_value_heads", json_int(c.n_kv_head));
    j.set("head_dim", json_int(c.head_dim));
    j.set("hidden_act", json_string("silu"));
    j.set("max_position_embeddings", json_int(c.max_seq_len));
    j.set("rms_norm_eps", hf_json_float(c.norm_eps));
    j.set("rope_theta", hf_json_float(c.rope_theta));
    if (c.rope_scaling) {
        JsonValue rs = json_object();
        rs.set("rope_type", json_string("llama3"));
        rs.set("factor", hf_json_float(c.rope_factor));
        rs.set("low_freq_factor", hf_json_float(c.rope_low_freq_factor));
        rs.set("high_freq_factor", hf_json_float(c.rope_high_freq_factor));
        rs.set("original_max_position_embeddings", json_int(c.rope_original_ctx));
        j.set("rope_scaling", rs);
    } else {
        j.set("rope_scaling", json_null());
    }
    j.set("tie_word_embeddings", json_bool(c.tie_embeddings != 0));
    if (fam != HF_QWEN2 && fam != HF_MISTRAL) j.set("attention_bias", json_bool(c.qkv_bias != 0));
    if (fam == HF_LLAMA) j.set("mlp_bias", json_bool(false));
    if (fam == HF_MISTRAL) j.set("sliding_window", from->sliding_window > 0 ? json_int(from->sliding_window) : json_null());
    if (fam == HF_QWEN2 || fam == HF_QWEN3) {
        j.set("use_sliding_window", json_bool(false));
        j.set("sliding_window", json_null());
        j.set("max_window_layers", json_int(c.n_layer));
    }
    j.set("attention_dropout", hf_json_float(0.0f));
    if (bos_token_id >= 0) j.set("bos_token_id", json_int(bos_token_id));
    if (eos_token_id >= 0) j.set("eos_token_id", json_int(eos_token_id));
    j.set("torch_dtype", json_string(dtype == ST_BF16 ? "bfloat16" : "float32"));
    j.set("use_cache", json_bool(true));
    return j;
}

// Writes dir/model.safetensors (dtype ST_F32 or ST_BF16; sharded with an index past
// max_shard_bytes of tensor data, <= 0: never) and dir/config.json from mega.c parameters laid
// out as gpt_param_layout(cfg); from: the imported model's HFInfo (keeps a Mistral a Mistral), or
// null. Returns the number of safetensors files.
static inline int hf_export(const std::string& dir, const GPTConfig& cfg, const float* params, int dtype, int bos_token_id = -1,
                            int eos_token_id = -1, int64_t max_shard_bytes = 0, const HFInfo* from = nullptr) {
    if (dtype != ST_F32 && dtype != ST_BF16) fail("hf_export %s: dtype must be F32 or BF16", dir.c_str());
    make_parent_dirs(hf_join(dir, "x"));
    const std::vector<ParamTensor> layout = gpt_param_layout(cfg);
    const std::vector<HFTensor> map = hf_tensor_map(cfg, layout);
    std::vector<SafeTensorWrite> w;
    for (const HFTensor& t : map) w.push_back({t.name, dtype, t.shape, params + t.offset});
    // Qwen3 with q/k/v bias: transformers' attention_bias also puts a bias on o_proj, which is zero here
    std::vector<float> zeros;
    if (cfg.qk_norm && cfg.qkv_bias) {
        zeros.assign((size_t)cfg.d_model, 0.0f);
        for (int l = 0; l < cfg.n_layer; l++)
            w.push_back({"model.layers." + std::to_string(l) + ".self_attn.o_proj.bias", dtype, {(int64_t)cfg.d_model}, zeros.data()});
    }
    // (fails before writing on a directory holding the other form: an index, or model.safetensors)
    const std::vector<std::string> files = safetensors_write_dir(dir, w, max_shard_bytes, {{"format", "pt"}});
    st_write_file_atomic(hf_join(dir, "config.json"), json_serialize(hf_export_config(cfg, dtype, bos_token_id, eos_token_id, from)) + "\n");
    return files.size() == 1 ? 1 : (int)files.size() - 1;
}

// Copies the tokenizer and generation files of a Hugging Face directory (those that exist) into
// an export, so that the export is a complete model for transformers.
static inline void hf_copy_side_files(const std::string& src_dir, const std::string& dst_dir) {
    for (const char* n : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "vocab.json", "merges.txt"}) {
        const std::string s = hf_join(src_dir, n), d = hf_join(dst_dir, n);
        if (!file_exists(s)) continue;
        struct stat a, b;
        if (stat(s.c_str(), &a) == 0 && stat(d.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) continue;  // same file
        st_write_file_atomic(d, read_file_or_fail(s));
    }
}

// ---------------------------------------------------------------------------
// the trainer's flags (train_gpt.cu)

struct HFFlags {
    std::string init_hf = "";        // a Hugging Face model directory to start from
    std::string export_hf = "";      // write the final weights there as a Hugging Face model
    std::string hf_dtype = "fp32";   // dtype of the export: fp32 or bf16
    float export_shard_mb = 5000;    // shards of at most this many MB (10^6 bytes) of weights; 0: one file
};

static inline void hf_add_flags(ArgParser& ap, HFFlags* f) {
    ap.section("Hugging Face models in and out (llmc/formats/hf.h)");
    ap.add_string("--init-hf", &f->init_hf,
                  "start from a Hugging Face model dir (config.json + safetensors; Llama, Qwen2, Qwen3, Mistral, Emu3): model flags may restate its "
                  "config, not change it; samples decode with its tokenizer.json");
    ap.add_string("--export-hf", &f->export_hf, "at the end, write the weights to DIR as a Hugging Face model (config.json + model.safetensors, "
                                                 "sharded past --export-hf-shard-mb; --steps 0: convert only)");
    ap.add_string("--hf-dtype", &f->hf_dtype, "dtype of the --export-hf weights: fp32 or bf16");
    ap.add_float("--export-hf-shard-mb", &f->export_shard_mb, "--export-hf weights past X MB (10^6 bytes) go into shards of at most X MB "
                                                              "+ model.safetensors.index.json, as save_pretrained's 5GB; 0: one file");
}

// --export-hf-shard-mb in bytes (0: one file), for hf_export's max_shard_bytes.
static inline int64_t hf_shard_bytes(const HFFlags& f) {
    return f.export_shard_mb > 0 ? std::max((int64_t)1, (int64_t)llround((double)f.export_shard_mb * 1e6)) : 0;
}

// Checks the flags; returns the export dtype (ST_F32 or ST_BF16).
static inline int hf_validate_flags(const HFFlags& f) {
    if (f.hf_dtype != "fp32" && f.hf_dtype != "bf16") fail("flag --hf-dtype: expected fp32 or bf16, got '%s'", f.hf_dtype.c_str());
    if (!(f.export_shard_mb >= 0 && f.export_shard_mb <= 1e9f))
        fail("flag --export-hf-shard-mb: expected 0 (one file) or a size in MB up to 1e9, got %g", (double)f.export_shard_mb);
    if (!f.export_hf.empty() && !f.init_hf.empty() && hf_join(f.export_hf, "") == hf_join(f.init_hf, ""))
        fail("flag --export-hf: %s is the --init-hf directory: export into another one", f.export_hf.c_str());
    return f.hf_dtype == "bf16" ? ST_BF16 : ST_F32;
}

// With --init-hf, the model is config.json's: *mc becomes hfc, and every model flag given on the
// command line (a flag whose value lives in *mc) must restate config.json's value, except
// --padded-vocab-size (padding changes no weight). A contradiction, or --preset, fails naming the flag.
static inline void hf_apply_config_flags(const ArgParser& ap, int argc, char** argv, GPTConfig* mc, const GPTConfig& hfc,
                                         const std::string& config_path) {
    const char* lo = (const char*)mc;
    const char* hi = lo + sizeof(GPTConfig);
    GPTConfig out = hfc;
    for (int k = 1; k < argc; k++) {
        const std::string a = argv[k];
        std::string name = a;
        const size_t eq = a.find('=');
        const bool inline_val = a.rfind("--", 0) == 0 && eq != std::string::npos;
        if (inline_val) name = a.substr(0, eq);
        const ArgSpec* s = ap.find(name);
        if (!s) continue;
        if (!inline_val) k++;   // skip its value
        if (name == "--preset") fail("flag --preset: cannot be combined with --init-hf (the model is %s's)", config_path.c_str());
        const char* p = (const char*)s->ptr;
        if (p < lo || p >= hi) continue;   // not a model flag
        const size_t off = (size_t)(p - lo);
        if (name == "--padded-vocab-size") { memcpy((char*)&out + off, p, sizeof(int)); continue; }
        const char* q = (const char*)&hfc + off;
        const bool same = s->type == 'f' ? *(const float*)p == *(const float*)q : *(const int*)p == *(const int*)q;
        if (!same) {
            ArgSpec h = *s;
            h.ptr = (void*)q;
            fail("flag %s: %s contradicts %s, which gives %s (a model from --init-hf keeps its config)", name.c_str(), ap.value_string(*s).c_str(),
                 config_path.c_str(), ap.value_string(h).c_str());
        }
    }
    gpt_config_finalize(&out);
    *mc = out;
}
