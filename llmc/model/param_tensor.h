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

// Elements in the whole buffer (the tensors lie in order, without gaps).
static inline size_t layout_numel(const std::vector<ParamTensor>& t) {
    return t.empty() ? 0 : t.back().offset + t.back().numel;
}
