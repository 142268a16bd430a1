// The dit model kind of the checkpoint format (llmc/train/checkpoint.h, kind 2):
// its config fields in their stored order, and the config rebuilt from a model.bin.
#pragma once
#include <vector>
#include "../model/dit_config.h"
#include "../model/dit_objective.h"
#include "../model/param_tensor.h"
#include "checkpoint.h"

// dit: the 19 fields of DiTConfig in the documented order; a model trained with
// EDM adds two, objective (1) and edm_sigma_data (the preconditioning the weights
// were trained with). Without them (rectified flow, and every checkpoint written
// before EDM) the objective is rf, so rf checkpoints keep their bytes.
static const int DIT_CKPT_FIELDS = 19, DIT_CKPT_FIELDS_EDM = 21;
static inline CkptModelInfo dit_ckpt_info(const DiTConfig& c, const DiTObjective& o = DiTObjective()) {
    CkptModelInfo m;
    m.kind = CKPT_KIND_DIT;
    m.config = {
        ckpt_int_field("d_model", c.d_model), ckpt_int_field("n_layer", c.n_layer), ckpt_int_field("n_head", c.n_head),
        ckpt_int_field("head_dim", c.head_dim), ckpt_float_field("mlp_ratio", c.mlp_ratio), ckpt_int_field("ffn_hidden", c.ffn_hidden),
        ckpt_int_field("in_channels", c.in_channels), ckpt_int_field("out_channels", c.out_channels),
        ckpt_int_field("caption_channels", c.caption_channels), ckpt_int_field("patch_t", c.patch_t),
        ckpt_int_field("patch_h", c.patch_h), ckpt_int_field("patch_w", c.patch_w), ckpt_int_field("max_text_len", c.max_text_len),
        ckpt_float_field("norm_eps", c.norm_eps), ckpt_float_field("rope_theta", c.rope_theta), ckpt_int_field("rope_max_t", c.rope_max_t),
        ckpt_int_field("rope_max_hw", c.rope_max_hw), ckpt_int_field("freq_dim", c.freq_dim),
        ckpt_float_field("freq_max_period", c.freq_max_period),
    };
    if (o.kind == DIT_OBJECTIVE_EDM) {
        m.config.push_back(ckpt_int_field("objective", o.kind));
        m.config.push_back(ckpt_float_field("edm_sigma_data", o.sigma_data));
    }
    const std::vector<ParamTensor> layout = dit_param_layout(c);
    m.n_params = (int64_t)layout_numel(layout);
    m.n_tensors = (int)layout.size();
    return m;
}

// The objective a model.bin was trained with (rf without the EDM fields): its
// kind and, for edm, sigma_data; the other fields keep their defaults.
static inline DiTObjective dit_objective_from_ckpt(const CkptModelHeader& h) {
    DiTObjective o;
    if (h.kind != CKPT_KIND_DIT || (int)h.config.size() != DIT_CKPT_FIELDS_EDM) return o;
    if (h.config[19] != DIT_OBJECTIVE_EDM)
        fail("%s: config objective is %d, expected %d (edm) in a dit header of %d fields", h.path.c_str(), h.config[19], DIT_OBJECTIVE_EDM, DIT_CKPT_FIELDS_EDM);
    o.kind = DIT_OBJECTIVE_EDM;
    o.sigma_data = ckpt_config_float(h.config, 20);
    return o;
}

// A run continues with its checkpoint's objective: one line when they differ.
static inline void dit_check_ckpt_objective_or_fail(const CkptModelHeader& h, const DiTObjective& o) {
    const DiTObjective stored = dit_objective_from_ckpt(h);
    if (stored.kind != o.kind)
        fail("%s: the weights were trained with --objective %s, this run has --objective %s", h.path.c_str(), dit_objective_name(stored.kind),
             dit_objective_name(o.kind));
}

// A dit config from a model.bin header (a sampler needs nothing else).
static inline DiTConfig dit_config_from_ckpt(const CkptModelHeader& h) {
    const bool edm = h.kind == CKPT_KIND_DIT && (int)h.config.size() == DIT_CKPT_FIELDS_EDM;
    const std::vector<int32_t>& cf = ckpt_config_or_fail(h, CKPT_KIND_DIT, edm ? DIT_CKPT_FIELDS_EDM : DIT_CKPT_FIELDS);
    auto i = [&](int k) { return (int)cf[k]; };
    auto f = [&](int k) { return ckpt_config_float(cf, k); };
    DiTConfig c;
    c.d_model = i(0); c.n_layer = i(1); c.n_head = i(2); c.head_dim = i(3); c.mlp_ratio = f(4); c.ffn_hidden = i(5);
    c.in_channels = i(6); c.out_channels = i(7); c.caption_channels = i(8); c.patch_t = i(9); c.patch_h = i(10); c.patch_w = i(11);
    c.max_text_len = i(12); c.norm_eps = f(13); c.rope_theta = f(14); c.rope_max_t = i(15); c.rope_max_hw = i(16); c.freq_dim = i(17);
    c.freq_max_period = f(18);
    return c;
}
