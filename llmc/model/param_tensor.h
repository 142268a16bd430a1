// One tensor of a model's parameters: where it lies in the one contiguous buffer
// that holds them all. Both models' layouts (gpt_config.h, dit_config.h) and the code
// that walks them (parameters, AdamW, ZeRO shards, checkpoints) share this type.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

struct ParamTensor {
    std::string name;
    std::vector<int> shape;
    size_t numel;
    size_t offset;   // in elements, into one contiguous buffer of all parameters
    bool decay;      // weight decay applies
};

// Which part of the backward completes a tensor's gradient: the head (the output
// layers, done first), a stack of per-layer slices [L, ...] (layer L-1 first), or
// the tail (the embeddings and conditioning, done last). A multi-GPU run reduces
// the gradients in this order (llmc/dist/zero.h); each model's config says it
// per tensor (gpt_param_stages, dit_param_stages).
enum ParamStage { PARAM_HEAD = 0, PARAM_LAYER = 1, PARAM_TAIL = 2 };

// Elements in the whole buffer (the tensors lie in order, without gaps).
static inline size_t layout_numel(const std::vector<ParamTensor>& t) {
    return t.empty() ? 0 : t.back().offset + t.back().numel;
}
