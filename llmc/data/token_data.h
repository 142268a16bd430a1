/*
The GPT trainer's token source, one interface over the two formats it reads:
  llm.c token shards      --train-data "data/x/train_*.bin"   (a glob; llmc/data/dataloader.h)
  Megatron indexed data   --train-data "megatron:W1 P1 W2 P2"  (Megatron-LM's --data-path
                          spec after the "megatron:" prefix: prefixes P of P.idx/P.bin, with
                          optional blending weights; llmc/data/megatron_data.h)
Both give B rows of T input tokens and their T targets per call, slice every batch
across the data-parallel ranks the same way, and shuffle deterministically per
seed; both positions fit a checkpoint's loader fields (DataLoaderPosition). A
Megatron position is the number of global samples consumed, stored with
shard = -1 so that a run never resumes one format's position in the other.
*/
#pragma once
#include <string>
#include "dataloader.h"
#include "megatron_data.h"

static const char TOKEN_DATA_MEGATRON_PREFIX[] = "megatron:";

struct TokenData {
    bool megatron = false;
    DataLoader dl;
    MegatronBlend mb;
    const int32_t* inputs = nullptr;    // B*T of this rank, after token_data_next
    const int32_t* targets = nullptr;
};

static inline bool token_data_is_megatron(const std::string& spec) {
    return spec.compare(0, sizeof(TOKEN_DATA_MEGATRON_PREFIX) - 1, TOKEN_DATA_MEGATRON_PREFIX) == 0;
}

static inline void token_data_init(TokenData* td, const std::string& spec, int B, int T, int process_rank, int num_processes,
                                   int shuffle, uint64_t seed, int vocab_size) {
    td->megatron = token_data_is_megatron(spec);
    if (td->megatron) {
        const std::string blend = spec.substr(sizeof(TOKEN_DATA_MEGATRON_PREFIX) - 1);
        megatron_blend_init(&td->mb, blend, B, T, process_rank, num_processes, shuffle, seed, vocab_size);
        td->inputs = td->mb.inputs;
        td->targets = td->mb.targets;
    } else {
        dataloader_init(&td->dl, spec, B, T, process_rank, num_processes, shuffle, seed, vocab_size);
        td->inputs = td->dl.inputs;
        td->targets = td->dl.targets;
    }
}

static inline void token_data_next(TokenData* td) {
    if (td->megatron) megatron_next_batch(&td->mb);
    else dataloader_next_batch(&td->dl);
}

// Batches in one pass over the data (every rank the same; Megatron: over the
// blend's samples, each dataset's epoch once).
static inline long long token_data_num_batches(const TokenData* td) {
    if (!td->megatron) return dataloader_num_batches(&td->dl);
    long long n = 0;
    for (int64_t s : td->mb.n_samples) n += s;
    return n / ((long long)td->mb.B * td->mb.num_processes);
}

static inline void token_data_reset(TokenData* td) {
    if (td->megatron) megatron_set_position(&td->mb, 0);
    else dataloader_reset(&td->dl);
}

static inline DataLoaderPosition token_data_get_position(const TokenData* td) {
    if (!td->megatron) return dataloader_get_position(&td->dl);
    DataLoaderPosition p;
    p.epoch = 0;
    p.shard = -1;
    p.sample = megatron_get_position(&td->mb);
    p.rng_state = 0;
    return p;
}

static inline void token_data_set_position(TokenData* td, const DataLoaderPosition& p) {
    if (td->megatron) {
        if (p.shard != -1)
            fail("data position: the checkpoint was taken reading llm.c shards, this run reads Megatron data (use the same --train-data)");
        megatron_set_position(&td->mb, p.sample);
    } else {
        if (p.shard == -1)
            fail("data position: the checkpoint was taken reading Megatron data, this run reads llm.c shards (use the same --train-data)");
        dataloader_set_position(&td->dl, p);
    }
}

static inline void token_data_free(TokenData* td) {
    if (td->megatron) megatron_blend_free(&td->mb);
    else dataloader_free(&td->dl);
    td->inputs = td->targets = nullptr;
}
