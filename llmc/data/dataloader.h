/*
Token-shard data loader in the style of llm.c, for one process of a data-parallel run.

Shards are llm.c .bin files (llmc/data/token_shard.h): a 256-int32 header then uint16
(magic 20240520, version 1) or uint32 (magic 20240801, version 7) tokens.
Every shard is validated at init (header, length, every token id < vocab_size),
so a bad file fails before any training starts, not hours into a run.

Samples: sample k of a shard is the T+1 tokens starting at k*T (inputs are the
first T, targets the last T), so a shard of n tokens has (n-1)/T samples.
Each epoch visits the shards in an order and, inside a shard, the samples in an
order (both the identity, or with shuffle=1 permutations drawn from the
loader's RNG, which is seeded from `seed` and advanced once per epoch, so every
rank computes the same permutations). Position j of a shard's order belongs
to rank j % num_processes; a batch takes the next B*num_processes positions
and this rank keeps its B of them, so ranks read disjoint samples and all stay
in step. A shard's last positions that do not fill a whole batch for all
ranks are skipped in that epoch (with shuffle=1 a different tail each epoch).
Tokens are read with one fseek+fread per sample, so shards of any size
cost no memory.

DataLoaderPosition {epoch, shard, sample, rng_state} is everything the stream
depends on besides the files and (B, T): `shard` indexes the epoch's shard
order, `sample` is the position, counted over all ranks, of the next batch
inside that shard's order, and rng_state is the RNG state the epoch's
permutations were drawn from. Setting a saved position resumes the exact
stream, also with a different number of processes (the sample position is
global).
*/
#pragma once
#include <algorithm>
#include <cstdint>
#include <glob.h>
#include <string>
#include <sys/types.h>
#include <vector>
#include "../core/utils.h"
#include "../core/rand.h"
#include "token_shard.h"

struct DataLoaderShard {
    std::string path;
    int64_t n_tokens;
    int token_bytes;   // 2 or 4
    int64_t n_samples; // (n_tokens - 1) / T
};

struct DataLoaderPosition {
    int64_t epoch;
    int64_t shard;      // index into the epoch's shard order
    int64_t sample;     // position of the next batch in the shard's sample order (all ranks)
    uint64_t rng_state; // loader RNG state at the start of the epoch
};

struct DataLoader {
    int B, T;
    int process_rank, num_processes;
    int shuffle;
    uint64_t seed;
    int vocab_size;
    std::vector<DataLoaderShard> shards;
    // where the next batch comes from
    int64_t epoch, shard, sample;
    Rng rng;                        // advanced once per epoch
    uint64_t epoch_rng_state;       // rng.state before this epoch's draw
    std::vector<int> shard_order;   // this epoch
    std::vector<uint32_t> sample_order;  // current shard, this epoch (empty: identity)
    FILE* file;                     // current shard
    std::vector<uint8_t> buf;       // one sample's raw tokens
    int32_t* inputs;                // B*T, host
    int32_t* targets;               // B*T, host
};

// Reads and checks a shard's header and every token; returns its description.
static inline DataLoaderShard dataloader_check_shard(const std::string& path, int vocab_size) {
    DataLoaderShard s;
    s.path = path;
    require_regular_file(path);
    FILE* f = fopen_or_fail(path, "rb");
    const long size = file_size_or_fail(f, path);
    int32_t hdr[SHARD_HEADER_INTS];
    if (size < (long)sizeof(hdr)) fail("%s: file is %ld bytes, expected at least the %zu-byte header", path.c_str(), size, sizeof(hdr));
    fread_exact(hdr, sizeof(hdr), f, path, "header");
    if (hdr[0] == SHARD_MAGIC_U16) {
        if (hdr[1] != SHARD_VERSION_U16) fail("%s: header version: expected %d for magic %d (uint16 tokens), found %d", path.c_str(), SHARD_VERSION_U16, SHARD_MAGIC_U16, hdr[1]);
        s.token_bytes = 2;
    } else if (hdr[0] == SHARD_MAGIC_U32) {
        if (hdr[1] != SHARD_VERSION_U32) fail("%s: header version: expected %d for magic %d (uint32 tokens), found %d", path.c_str(), SHARD_VERSION_U32, SHARD_MAGIC_U32, hdr[1]);
        s.token_bytes = 4;
    } else if (hdr[0] == SFT_SHARD_MAGIC) {
        fail("%s: header magic: %d is an SFT shard (scripts/prepare_sft.py: conversations with a loss mask, llmc/data/sft_data.h), "
             "not an llm.c token shard", path.c_str(), hdr[0]);
    } else {
        fail("%s: header magic: expected %d (uint16 tokens) or %d (uint32 tokens), found %d", path.c_str(), SHARD_MAGIC_U16, SHARD_MAGIC_U32, hdr[0]);
    }
    if (hdr[2] <= 0) fail("%s: header token count: expected > 0, found %d", path.c_str(), hdr[2]);
    s.n_tokens = hdr[2];
    const long expect = (long)sizeof(hdr) + (long)s.n_tokens * s.token_bytes;
    if (size != expect)
        fail("%s: file length: header token count %lld needs %ld bytes, found %ld (%s)", path.c_str(), (long long)s.n_tokens, expect, size,
             size < expect ? "truncated" : "extra bytes after the tokens");
    // scan in chunks: a shard may be far larger than we want to hold at once
    const int64_t chunk = 1 << 20;
    std::vector<uint8_t> raw((size_t)(chunk * s.token_bytes));
    for (int64_t i0 = 0; i0 < s.n_tokens; i0 += chunk) {
        const int64_t n = std::min(chunk, s.n_tokens - i0);
        fread_exact(raw.data(), (size_t)(n * s.token_bytes), f, path, "tokens");
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            if (s.token_bytes == 2) { uint16_t x; memcpy(&x, &raw[2 * i], 2); v = x; }
            else memcpy(&v, &raw[4 * i], 4);
            if (v >= (uint32_t)vocab_size)
                fail("%s: token %lld has id %u, expected < vocab_size %d", path.c_str(), (long long)(i0 + i), v, vocab_size);
        }
    }
    fclose_or_fail(f, path);
    return s;
}

static inline void dataloader_open_shard(DataLoader* dl) {
    if (dl->file) fclose(dl->file);  // read-only: a failed close loses nothing
    const DataLoaderShard& s = dl->shards[dl->shard_order[dl->shard]];
    dl->file = fopen_or_fail(s.path, "rb");
    dl->sample_order.clear();
    if (dl->shuffle) {
        // the shard's permutation comes from the epoch's state and the shard's
        // index in the glob, so it does not depend on when the shard is visited
        Rng r;
        rng_seed(&r, dl->epoch_rng_state ^ (0x9E3779B97F4A7C15ull * (uint64_t)(dl->shard_order[dl->shard] + 1)));
        dl->sample_order.resize((size_t)s.n_samples);
        for (int64_t k = 0; k < s.n_samples; k++) dl->sample_order[k] = (uint32_t)k;
        rng_shuffle(&r, dl->sample_order.data(), dl->sample_order.size());
    }
}

// Starts epoch dl->epoch with dl->rng as it is now.
static inline void dataloader_start_epoch(DataLoader* dl) {
    dl->epoch_rng_state = dl->rng.state;
    const int n = (int)dl->shards.size();
    dl->shard_order.resize(n);
    for (int i = 0; i < n; i++) dl->shard_order[i] = i;
    if (dl->shuffle) rng_shuffle(&dl->rng, dl->shard_order.data(), dl->shard_order.size());
    dl->shard = 0;
    dl->sample = 0;
}

// Moves on until the position holds a whole batch for all ranks (a new shard,
// a new epoch), so that the position always names the next batch.
static inline void dataloader_settle(DataLoader* dl, bool reopen) {
    const int64_t per_batch = (int64_t)dl->B * dl->num_processes;
    while (dl->sample + per_batch > dl->shards[dl->shard_order[dl->shard]].n_samples) {
        dl->shard++;
        dl->sample = 0;
        if (dl->shard == (int64_t)dl->shards.size()) {
            dl->epoch++;
            dataloader_start_epoch(dl);
        }
        reopen = true;
    }
    if (reopen) dataloader_open_shard(dl);
}

static inline void dataloader_reset(DataLoader* dl) {
    dl->epoch = 0;
    rng_seed(&dl->rng, dl->seed);
    dataloader_start_epoch(dl);
    dataloader_settle(dl, true);
}

static inline void dataloader_init(DataLoader* dl, const std::string& glob_pattern, int B, int T, int process_rank, int num_processes,
                                   int shuffle, uint64_t seed, int vocab_size) {
    if (B <= 0) fail("dataloader %s: batch size B must be > 0, got %d", glob_pattern.c_str(), B);
    if (T <= 0) fail("dataloader %s: sequence length T must be > 0, got %d", glob_pattern.c_str(), T);
    if (num_processes <= 0 || process_rank < 0 || process_rank >= num_processes)
        fail("dataloader %s: process rank %d is not in [0, %d)", glob_pattern.c_str(), process_rank, num_processes);
    if (vocab_size <= 0) fail("dataloader %s: vocab_size must be > 0, got %d", glob_pattern.c_str(), vocab_size);
    dl->B = B; dl->T = T;
    dl->process_rank = process_rank; dl->num_processes = num_processes;
    dl->shuffle = shuffle ? 1 : 0;
    dl->seed = seed;
    dl->vocab_size = vocab_size;
    dl->file = nullptr;
    dl->inputs = dl->targets = nullptr;

    glob_t g;
    const int rc = glob(glob_pattern.c_str(), 0, nullptr, &g);  // sorted by default
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
        globfree(&g);
        if (glob_pattern.find_first_of("*?[") == std::string::npos) fail("%s: data file does not exist", glob_pattern.c_str());
        fail("%s: no file matches this data pattern", glob_pattern.c_str());
    }
    if (rc != 0) { globfree(&g); fail("%s: glob failed (code %d)", glob_pattern.c_str(), rc); }
    std::vector<std::string> paths(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);

    dl->shards.clear();
    const int64_t per_batch = (int64_t)B * num_processes;
    for (const std::string& p : paths) {
        DataLoaderShard s = dataloader_check_shard(p, vocab_size);
        s.n_samples = (s.n_tokens - 1) / T;
        if (s.n_samples > (int64_t)UINT32_MAX) fail("%s: %lld samples is more than this loader indexes (2^32)", p.c_str(), (long long)s.n_samples);
        if (s.n_samples < per_batch)
            fail("%s: %lld tokens hold %lld samples of T+1 = %d tokens, fewer than one batch of B %d x %d processes (needs at least %lld tokens)",
                 p.c_str(), (long long)s.n_tokens, (long long)s.n_samples, T + 1, B, num_processes, (long long)(per_batch * T + 1));
        dl->shards.push_back(s);
    }
    dl->inputs = (int32_t*)malloc((size_t)B * T * sizeof(int32_t));
    dl->targets = (int32_t*)malloc((size_t)B * T * sizeof(int32_t));
    if (!dl->inputs || !dl->targets) fail("dataloader %s: out of memory for B*T = %lld tokens", glob_pattern.c_str(), (long long)B * T);
    dl->buf.resize((size_t)(T + 1) * 4);
    dataloader_reset(dl);
}

// Batches per epoch (the same on every rank).
static inline long long dataloader_num_batches(const DataLoader* dl) {
    const int64_t per_batch = (int64_t)dl->B * dl->num_processes;
    long long n = 0;
    for (const DataLoaderShard& s : dl->shards) n += s.n_samples / per_batch;
    return n;
}

static inline void dataloader_next_batch(DataLoader* dl) {
    const DataLoaderShard& s = dl->shards[dl->shard_order[dl->shard]];
    const int T = dl->T;
    const size_t nbytes = (size_t)(T + 1) * s.token_bytes;
    for (int b = 0; b < dl->B; b++) {
        const int64_t j = dl->sample + (int64_t)b * dl->num_processes + dl->process_rank;
        const int64_t k = dl->sample_order.empty() ? j : (int64_t)dl->sample_order[j];
        const off_t off = (off_t)SHARD_HEADER_INTS * 4 + (off_t)k * T * s.token_bytes;
        if (fseeko(dl->file, off, SEEK_SET) != 0) fail("%s: cannot seek to sample %lld (%s)", s.path.c_str(), (long long)k, strerror(errno));
        fread_exact(dl->buf.data(), nbytes, dl->file, s.path, "tokens");
        int32_t* x = dl->inputs + (size_t)b * T;
        int32_t* y = dl->targets + (size_t)b * T;
        for (int t = 0; t <= T; t++) {
            uint32_t v;
            if (s.token_bytes == 2) { uint16_t u; memcpy(&u, &dl->buf[2 * t], 2); v = u; }
            else memcpy(&v, &dl->buf[4 * t], 4);
            // checked at init; a file changed under us must still not reach the GPU
            if (v >= (uint32_t)dl->vocab_size)
                fail("%s: token %lld has id %u, expected < vocab_size %d (file changed since it was checked?)", s.path.c_str(),
                     (long long)(k * T + t), v, dl->vocab_size);
            if (t < T) x[t] = (int32_t)v;
            if (t > 0) y[t - 1] = (int32_t)v;
        }
    }
    dl->sample += (int64_t)dl->B * dl->num_processes;
    dataloader_settle(dl, false);
}

static inline DataLoaderPosition dataloader_get_position(const DataLoader* dl) {
    DataLoaderPosition p;
    p.epoch = dl->epoch;
    p.shard = dl->shard;
    p.sample = dl->sample;
    p.rng_state = dl->epoch_rng_state;
    return p;
}

// Resumes the stream at a position from dataloader_get_position (of this or
// another run over the same files, possibly with another number of processes).
static inline void dataloader_set_position(DataLoader* dl, const DataLoaderPosition& p) {
    const int64_t n_shards = (int64_t)dl->shards.size();
    if (p.epoch < 0) fail("data loader position: epoch must be >= 0, found %lld", (long long)p.epoch);
    if (p.shard < 0 || p.shard >= n_shards) fail("data loader position: shard %lld is not in [0, %lld) (different data files?)", (long long)p.shard, (long long)n_shards);
    if (p.rng_state == 0) fail("data loader position: rng_state must be non-zero");
    dl->epoch = p.epoch;
    dl->rng.state = p.rng_state;
    dataloader_start_epoch(dl);
    const int64_t ns = dl->shards[dl->shard_order[p.shard]].n_samples;
    if (p.sample < 0 || p.sample > ns) fail("data loader position: sample %lld is not in [0, %lld] (different data files?)", (long long)p.sample, (long long)ns);
    dl->shard = p.shard;
    dl->sample = p.sample;
    dataloader_settle(dl, true);
}

static inline void dataloader_free(DataLoader* dl) {
    if (dl->file) fclose(dl->file);  // read-only: nothing to lose
    dl->file = nullptr;
    free(dl->inputs);
    free(dl->targets);
    dl->inputs = dl->targets = nullptr;
    dl->shards.clear();
    dl->shard_order.clear();
    dl->sample_order.clear();
}
