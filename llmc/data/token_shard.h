/*
llm.c token shards (`*.bin`): what llm.c writes, so its data sets work as they
are. A header of 256 int32 {magic, version, token count n, 0...}, then n tokens:
magic 20240520 / version 1 with uint16 tokens, magic 20240801 / version 7 with
uint32 tokens. write_token_shard picks uint16 when vocab_size <= 65536.
Read by llmc/data/dataloader.h; kept apart from llmc/data/dataset.h (which
trains the BPE tokenizer) so that the loader does not depend on the tokenizer.
*/
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "../core/utils.h"

#define SHARD_MAGIC_U16 20240520
#define SHARD_VERSION_U16 1
#define SHARD_MAGIC_U32 20240801
#define SHARD_VERSION_U32 7
#define SHARD_HEADER_INTS 256
// SFT shards (llmc/data/sft_data.h) share the 256-int32 header; their magic is named here so that
// the llm.c loader can say what such a file is
#define SFT_SHARD_MAGIC 20250312

static inline void write_token_shard(const std::string& path, const std::vector<int>& tokens, int vocab_size) {
    if (vocab_size <= 0) fail("write_token_shard %s: vocab_size must be > 0, got %d", path.c_str(), vocab_size);
    if (tokens.empty()) fail("write_token_shard %s: no tokens to write", path.c_str());
    if (tokens.size() > (size_t)INT32_MAX) fail("write_token_shard %s: %zu tokens do not fit the int32 count of the header", path.c_str(), tokens.size());
    for (size_t i = 0; i < tokens.size(); i++)
        if (tokens[i] < 0 || tokens[i] >= vocab_size)
            fail("write_token_shard %s: token %zu has id %d, expected 0 <= id < vocab_size %d", path.c_str(), i, tokens[i], vocab_size);
    const bool u16 = vocab_size <= 65536;
    int32_t hdr[SHARD_HEADER_INTS] = {0};
    hdr[0] = u16 ? SHARD_MAGIC_U16 : SHARD_MAGIC_U32;
    hdr[1] = u16 ? SHARD_VERSION_U16 : SHARD_VERSION_U32;
    hdr[2] = (int32_t)tokens.size();
    make_parent_dirs(path);
    const std::string tmp = path + ".tmp";
    FILE* f = fopen_or_fail(tmp, "wb");
    fwrite_exact(hdr, sizeof(hdr), f, tmp);
    if (u16) {
        std::vector<uint16_t> buf(tokens.begin(), tokens.end());
        fwrite_exact(buf.data(), buf.size() * sizeof(uint16_t), f, tmp);
    } else {
        std::vector<uint32_t> buf(tokens.begin(), tokens.end());
        fwrite_exact(buf.data(), buf.size() * sizeof(uint32_t), f, tmp);
    }
    finish_atomic_write(f, tmp, path);
}
