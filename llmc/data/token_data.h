/*
The GPT trainer's token source, one interface over the formats it reads:
  llm.c token shards      --train-data "data/x/train_*.bin"   (a glob; llmc/data/dataloader.h)
  Megatron indexed data   --train-data "megatron:W1 P1 W2 P2"  (Megatron-LM's --data-path
                          spec after the "megatron:" prefix: prefixes P of P.idx/P.bin, with
                          optional blending weights; llmc/data/megatron_data.h)
  SFT shards              --train-data "data/sft/train_*.bin" of scripts/prepare_sft.py
                          (llmc/data/sft_data.h), read as such only by a caller that
                          says how to lay them out (sft_pack 0 or 1); others get the llm.c
                          loader's one-line error naming the file as an SFT shard
All give B rows of T input tokens and their T targets per call, slice every batch
across the data-parallel ranks the same way, and shuffle deterministically per
seed; all positions fit a checkpoint's loader fields (DataLoaderPosition). A
Megatron position is the number of global samples consumed, stored with
shard = -1, an SFT one the conversations consumed with shard = -2, so that a run
never resumes one format's position in another. SFT rows also have targets
SFT_IGNORE (-100: not in the loss), positions restarting at each conversation,
segment boundaries (sl.cu_seqlens) and the count of targets that count (sl.n_targets).
*/
#pragma once
#include <string>
#include "dataloader.h"
#include "megatron_data.h"
#include "sft_data.h"

static const char TOKEN_DATA_MEGATRON_PREFIX[] = "megatron:";

struct TokenData {
    bool megatron = false;
    bool sft = false;
    DataLoader dl;
    MegatronBlend mb;
    SftLoader sl;
    const int32_t* inputs = nullptr;    // B*T of this rank, after token_data_next
    const int32_t* targets = nullptr;   // SFT: SFT_IGNORE where the loss does not count
    const int32_t* positions = nullptr; // SFT: each token's position in its conversation; null: t
};

// Whether the first file the glob names is an SFT shard.
static inline bool token_data_is_sft(const std::string& spec) {
    glob_t g;
    if (glob(spec.c_str(), 0, nullptr, &g) != 0 || g.gl_pathc == 0) { globfree(&g); return false; }
    FILE* f = fopen(g.gl_pathv[0], "rb");
    globfree(&g);
    if (!f) return false;
    int32_t magic = 0;
    const bool sft = fread(&magic, 4, 1, f) == 1 && magic == SFT_SHARD_MAGIC;
    fclose(f);   // read-only
    return sft;
}

static inline bool token_data_is_megatron(const std::string& spec) {
    return spec.compare(0, sizeof(TOKEN_DATA_MEGATRON_PREFIX) - 1, TOKEN_DATA_MEGATRON_PREFIX) == 0;
}

// sft_pack: how SFT shards are laid out in rows (0: one conversation a row, 1: packed); -1: the
// caller does not train on them.
static inline void token_data_init(TokenData* td, const std::string& spec, int B, int T, int process_rank, int num_processes,
                                   int shuffle, uint64_t seed, int vocab_size, int sft_pack = -1) {
    td->megatron = token_data_is_megatron(spec);
    td->sft = !td->megatron && sft_pack >= 0 && token_data_is_sft(spec);
    td->positions = nullptr;
    if (td->sft) {
        sft_init(&td->sl, spec, B, T, process_rank, num_processes, shuffle, seed, vocab_size, sft_pack);
        td->inputs = td->sl.inputs.data();
        td->targets = td->sl.targets.data();
        td->positions = td->sl.positions.data();
    } else if (td->megatron) {
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
    if (td->sft) sft_next_batch(&td->sl);
    else if (td->megatron) megatron_next_batch(&td->mb);
    else dataloader_next_batch(&td->dl);
}

// Batches in one pass over the data (every rank the same; Megatron: over the
// blend's samples, each dataset's epoch once).
static inline long long token_data_num_batches(const TokenData* td) {
    if (td->sft) return sft_num_batches(&td->sl);
    if (!td->megatron) return dataloader_num_batches(&td->dl);
    long long n = 0;
    for (int64_t s : td->mb.n_samples) n += s;
    return n / ((long long)td->mb.B * td->mb.num_processes);
}

static inline void token_data_reset(TokenData* td) {
    if (td->sft) sft_reset(&td->sl);
    else if (td->megatron) megatron_set_position(&td->mb, 0);
    else dataloader_reset(&td->dl);
}

static inline DataLoaderPosition token_data_get_position(const TokenData* td) {
    if (td->sft) return sft_get_position(&td->sl);
    if (!td->megatron) return dataloader_get_position(&td->dl);
    DataLoaderPosition p;
    p.epoch = 0;
    p.shard = -1;
    p.sample = megatron_get_position(&td->mb);
    p.rng_state = 0;
    return p;
}

static inline void token_data_set_position(TokenData* td, const DataLoaderPosition& p) {
    const char* was = p.shard == -1 ? "Megatron data" : p.shard == SFT_POSITION_SHARD ? "SFT shards" : "llm.c shards";
    if (td->sft) {
        if (p.shard != SFT_POSITION_SHARD)
            fail("data position: the checkpoint was taken reading %s, this run reads SFT shards (use the same --train-data)", was);
        sft_set_position(&td->sl, p);
    } else if (td->megatron) {
        if (p.shard != -1)
            fail("data position: the checkpoint was taken reading %s, this run reads Megatron data (use the same --train-data)", was);
        megatron_set_position(&td->mb, p.sample);
    } else {
        if (p.shard < 0)
            fail("data position: the checkpoint was taken reading %s, this run reads llm.c shards (use the same --train-data)", was);
        dataloader_set_position(&td->dl, p);
    }
}

static inline void token_data_free(TokenData* td) {
    if (td->sft) sft_free(&td->sl);
    else if (td->megatron) megatron_blend_free(&td->mb);
    else dataloader_free(&td->dl);
    td->inputs = td->targets = td->positions = nullptr;
}
