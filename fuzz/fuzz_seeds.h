// What the seed generator (fuzz/make_seeds.cpp) and the targets must agree on:
// the small gpt whose checkpoints seed fuzz_checkpoint, the vocabulary the
// token shards are checked against, the latent loader's max text length.
#pragma once
#include "../llmc/model/gpt_config.h"

#define FUZZ_SHARD_VOCAB 50000   // token shards: ids < 50000 are valid (uint16 ids can exceed it)
#define FUZZ_MAX_TEXT_LEN 8      // latent shards: text_len in [1, 8]

// fuzz_checkpoint's first input byte: what the rest of the input is, and which
// checksums the target fixes up before writing it (so that mutations get past
// the XXH64 checks and reach the field checks behind them).
#define FUZZ_CKPT_KIND_MASK 3    // 0 model.bin, 1 state.bin, 2 DIR/latest, 3 model.bin
#define FUZZ_CKPT_FIX_HEADER 4   // recompute the header checksum
#define FUZZ_CKPT_FIX_PAYLOAD 8  // recompute the payload checksum

// 536 parameters: checkpoints of a few KB
static inline GPTConfig fuzz_tiny_gpt() {
    GPTConfig c;
    c.vocab_size = 8; c.padded_vocab_size = 8; c.max_seq_len = 8; c.n_layer = 1; c.n_head = 1; c.n_kv_head = 1;
    c.d_model = 8; c.head_dim = 0; c.ffn_hidden = 8;
    gpt_config_finalize(&c);
    return c;
}
