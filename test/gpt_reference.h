// Reading the GPT reference files of dev/reference/gpt.py (test/data/gpt_*.mgt):
// the config they were made with. Shared by the CPU and GPU tests.
#pragma once
#include "../llmc/model/gpt_config.h"
#include "../llmc/formats/tensorfile.h"

static GPTConfig gpt_config_from_reference(const TensorFile& tf) {
    const std::vector<int32_t>& ci = tf.i32("config");
    const std::vector<float>& cf = tf.f32("config_f");
    if (ci.size() != 14 || cf.size() != 5) fail("%s: config has %zu/%zu fields (expected 14/5)", tf.path.c_str(), ci.size(), cf.size());
    GPTConfig c;
    c.vocab_size = ci[0]; c.padded_vocab_size = ci[1]; c.max_seq_len = ci[2]; c.n_layer = ci[3]; c.n_head = ci[4];
    c.n_kv_head = ci[5]; c.d_model = ci[6]; c.head_dim = ci[7]; c.ffn_hidden = ci[8]; c.tie_embeddings = ci[9];
    c.qk_norm = ci[10]; c.qkv_bias = ci[11]; c.rope_scaling = ci[12]; c.rope_original_ctx = ci[13];
    c.rope_theta = cf[0]; c.norm_eps = cf[1]; c.rope_factor = cf[2]; c.rope_low_freq_factor = cf[3]; c.rope_high_freq_factor = cf[4];
    gpt_config_finalize(&c);
    return c;
}
