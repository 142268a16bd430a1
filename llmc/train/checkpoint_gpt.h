// The gpt model kind of the checkpoint format (llmc/train/checkpoint.h, kind 1):
// its config fields in their stored order, and the config rebuilt from a model.bin.
#pragma once
#include <vector>
#include "../model/gpt_config.h"
#include "../model/param_tensor.h"
#include "checkpoint.h"

// gpt: the 19 fields of GPTConfig in the documented order
static inline CkptModelInfo gpt_ckpt_info(const GPTConfig& c) {
    CkptModelInfo m;
    m.kind = CKPT_KIND_GPT;
    m.config = {
        ckpt_int_field("vocab_size", c.vocab_size), ckpt_int_field("padded_vocab_size", c.padded_vocab_size),
        ckpt_int_field("max_seq_len", c.max_seq_len), ckpt_int_field("n_layer", c.n_layer),
        ckpt_int_field("n_head", c.n_head), ckpt_int_field("n_kv_head", c.n_kv_head),
        ckpt_int_field("d_model", c.d_model), ckpt_int_field("head_dim", c.head_dim),
        ckpt_int_field("ffn_hidden", c.ffn_hidden), ckpt_float_field("rope_theta", c.rope_theta),
        ckpt_int_field("rope_scaling", c.rope_scaling), ckpt_float_field("rope_factor", c.rope_factor),
        ckpt_float_field("rope_low_freq_factor", c.rope_low_freq_factor),
        ckpt_float_field("rope_high_freq_factor", c.rope_high_freq_factor),
        ckpt_int_field("rope_original_ctx", c.rope_original_ctx), ckpt_float_field("norm_eps", c.norm_eps),
        ckpt_int_field("tie_embeddings", c.tie_embeddings), ckpt_int_field("qk_norm", c.qk_norm),
        ckpt_int_field("qkv_bias", c.qkv_bias),
    };
    const std::vector<ParamTensor> layout = gpt_param_layout(c);
    m.n_params = (int64_t)layout_numel(layout);
    m.n_tensors = (int)layout.size();
    return m;
}

// A gpt config from a model.bin header (a sampler needs nothing else).
static inline GPTConfig gpt_config_from_ckpt(const CkptModelHeader& h) {
    const std::vector<int32_t>& cf = ckpt_config_or_fail(h, CKPT_KIND_GPT, gpt_ckpt_info(GPTConfig()).config.size());
    auto i = [&](int k) { return (int)cf[k]; };
    auto f = [&](int k) { return ckpt_config_float(cf, k); };
    GPTConfig c;
    c.vocab_size = i(0); c.padded_vocab_size = i(1); c.max_seq_len = i(2); c.n_layer = i(3); c.n_head = i(4);
    c.n_kv_head = i(5); c.d_model = i(6); c.head_dim = i(7); c.ffn_hidden = i(8); c.rope_theta = f(9);
    c.rope_scaling = i(10); c.rope_factor = f(11); c.rope_low_freq_factor = f(12); c.rope_high_freq_factor = f(13);
    c.rope_original_ctx = i(14); c.norm_eps = f(15); c.tie_embeddings = i(16); c.qk_norm = i(17); c.qkv_bias = i(18);
    return c;
}
