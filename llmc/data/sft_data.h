/*
SFT shards (written by scripts/prepare_sft.py; docs/formats.md, "SFT shards"): conversations,
each one document of tokens with a loss mask, and the loader that lays them out as training
rows with their targets, positions and document boundaries. Host only.

File (little-endian):
  int32 header[256]  {magic 20250312, version 1, token_bytes (2: uint16, 4: uint32), n_docs,
                      n_tokens, vocab_size (the tokenizer's), seq_len (what it was prepared for), 0...}
  int64 offsets[n_docs + 1]   document d is tokens [offsets[d], offsets[d+1]); offsets[0] = 0,
                              offsets[n_docs] = n_tokens, every document at least 2 tokens
  tokens[n_tokens]            uint16 or uint32
  uint8 mask[n_tokens]        1: the token is a target the loss counts (an assistant's token,
                              its end-of-turn token included); 0: not. The first token of a
                              document is no one's target (0), and every document has a 1.
sft_check_shard reads all of it once and fails with one line naming the file and what is wrong
(header, length, offsets, token ids against the model's vocabulary, mask values).

Rows: a document of n tokens gives n - 1 positions: inputs its tokens 0..n-2, targets its tokens
1..n-1, a target counting only where its mask bit is 1 (else SFT_IGNORE, transformers' -100).
  pack 0: one document per row;
  pack 1: documents, in the epoch's order, go into a row while they fit (no document is split;
          one that does not fit starts the next row).
A row's remaining positions are padding: input token 0, target SFT_IGNORE. A row is a sequence
of segments, its documents and then the padding (if any), their lengths summing to T; position
ids restart at 0 in each segment, and attention stays inside a segment (causal). A document
longer than T + 1 tokens is an error at init (prepare with --seq-len T or less).
Batches: B rows per rank; a global batch is B x world rows, rank r keeping rows b * world + r, as
llmc/data/dataloader.h does. An epoch visits every document of every shard (glob order) once,
in order or, with shuffle, in a permutation drawn per epoch from the seed; a global batch its
remaining documents cannot fill ends the epoch.
The loss is the mean over the global batch's targets that count: n_targets_global, known on
every rank from per-document counts read at init (no communication), is its divisor.
Position (DataLoaderPosition): epoch, shard = SFT_POSITION_SHARD (-2: no llm.c or Megatron
position is mistaken for it), sample = documents consumed in the epoch's order, rng_state.
*/
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <glob.h>
#include <string>
#include <vector>
#include "../core/utils.h"
#include "../core/rand.h"
#include "dataloader.h"

#define SFT_SHARD_VERSION 1
#define SFT_HEADER_INTS 256
#define SFT_IGNORE (-100)
#define SFT_POSITION_SHARD (-2)

struct SftShard {
    std::string path;
    int token_bytes = 2;
    int64_t n_tokens = 0;
    int n_docs = 0;
    int vocab_size = 0, seq_len = 0;   // from the header
    std::vector<int64_t> offsets;      // n_docs + 1
    std::vector<int> doc_targets;      // n_docs: targets in the loss (mask 1s) of each document
};

static inline int64_t sft_tokens_at(const SftShard& s) { return (int64_t)SFT_HEADER_INTS * 4 + (int64_t)(s.n_docs + 1) * 8; }
static inline int64_t sft_mask_at(const SftShard& s) { return sft_tokens_at(s) + s.n_tokens * s.token_bytes; }

// Writes one SFT shard atomically (the tests' writer; scripts/prepare_sft.py writes the same bytes).
static inline void write_sft_shard(const std::string& path, const std::vector<std::vector<int>>& docs, const std::vector<std::vector<uint8_t>>& masks,
                                   int vocab_size, int seq_len) {
    if (docs.empty() || docs.size() != masks.size()) fail("write_sft_shard %s: expected one mask per document and at least one document", path.c_str());
    const bool u16 = vocab_size <= 65536;
    int32_t hdr[SFT_HEADER_INTS] = {0};
    std::vector<int64_t> off(1, 0);
    for (size_t d = 0; d < docs.size(); d++) {
        if (docs[d].size() != masks[d].size()) fail("write_sft_shard %s: document %zu has %zu tokens and %zu mask bytes", path.c_str(), d, docs[d].size(), masks[d].size());
        off.push_back(off.back() + (int64_t)docs[d].size());
    }
    hdr[0] = SFT_SHARD_MAGIC;
    hdr[1] = SFT_SHARD_VERSION;
    hdr[2] = u16 ? 2 : 4;
    hdr[3] = (int32_t)docs.size();
    hdr[4] = (int32_t)off.back();
    hdr[5] = vocab_size;
    hdr[6] = seq_len;
    make_parent_dirs(path);
    const std::string tmp = path + ".tmp";
    FILE* f = fopen_or_fail(tmp, "wb");
    fwrite_exact(hdr, sizeof hdr, f, tmp);
    fwrite_exact(off.data(), off.size() * 8, f, tmp);
    for (const std::vector<int>& d : docs) {
        if (u16) { std::vector<uint16_t> b(d.begin(), d.end()); fwrite_exact(b.data(), b.size() * 2, f, tmp); }
        else { std::vector<uint32_t> b(d.begin(), d.end()); fwrite_exact(b.data(), b.size() * 4, f, tmp); }
    }
    for (const std::vector<uint8_t>& m : masks) fwrite_exact(m.data(), m.size(), f, tmp);
    finish_atomic_write(f, tmp, path);
}

// Reads and checks everything in an SFT shard against the model's vocabulary.
static inline SftShard sft_check_shard(const std::string& path, int vocab_size) {
    SftShard s;
    s.path = path;
    const char* p = path.c_str();
    require_regular_file(path);
    FILE* f = fopen_or_fail(path, "rb");
    const long size = file_size_or_fail(f, path);
    int32_t hdr[SFT_HEADER_INTS];
    if (size < (long)sizeof hdr) fail("%s: file is %ld bytes, expected at least the %zu-byte header", p, size, sizeof hdr);
    fread_exact(hdr, sizeof hdr, f, path, "header");
    if (hdr[0] != SFT_SHARD_MAGIC) fail("%s: header magic: expected %d (an SFT shard, scripts/prepare_sft.py), found %d", p, SFT_SHARD_MAGIC, hdr[0]);
    if (hdr[1] != SFT_SHARD_VERSION) fail("%s: header version: expected %d, found %d", p, SFT_SHARD_VERSION, hdr[1]);
    if (hdr[2] != 2 && hdr[2] != 4) fail("%s: header token_bytes: expected 2 or 4, found %d", p, hdr[2]);
    if (hdr[3] <= 0) fail("%s: header n_docs: expected > 0, found %d", p, hdr[3]);
    if (hdr[4] < 2) fail("%s: header n_tokens: expected >= 2, found %d", p, hdr[4]);
    if (hdr[5] <= 0) fail("%s: header vocab_size: expected > 0, found %d", p, hdr[5]);
    if (hdr[5] > vocab_size)
        fail("%s: header vocab_size: prepared with a tokenizer of %d ids, more than the model's vocabulary %d (another model's data?)", p, hdr[5],
             vocab_size);
    s.token_bytes = hdr[2];
    s.n_docs = hdr[3];
    s.n_tokens = hdr[4];
    s.vocab_size = hdr[5];
    s.seq_len = hdr[6];
    const long expect = (long)(sft_mask_at(s) + s.n_tokens);
    if (size != expect)
        fail("%s: file length: %d documents and %lld tokens of %d bytes need %ld bytes, found %ld (%s)", p, s.n_docs, (long long)s.n_tokens,
             s.token_bytes, expect, size, size < expect ? "truncated" : "extra bytes after the mask");
    s.offsets.resize((size_t)s.n_docs + 1);
    fread_exact(s.offsets.data(), s.offsets.size() * 8, f, path, "document offsets");
    if (s.offsets[0] != 0) fail("%s: offsets[0]: expected 0, found %lld", p, (long long)s.offsets[0]);
    // offsets[d] is inside [0, n_tokens] when offsets[d + 1] is checked, so offsets[d] + 2 cannot
    // overflow (the difference of two values from the file could)
    for (int d = 0; d < s.n_docs; d++)
        if (s.offsets[d + 1] > s.n_tokens || s.offsets[d + 1] < s.offsets[d] + 2)
            fail("%s: offsets[%d] = %lld after offsets[%d] = %lld: expected every document at least 2 tokens, inside the %lld tokens", p, d + 1,
                 (long long)s.offsets[d + 1], d, (long long)s.offsets[d], (long long)s.n_tokens);
    if (s.offsets[s.n_docs] != s.n_tokens)
        fail("%s: offsets[%d]: expected n_tokens %lld, found %lld", p, s.n_docs, (long long)s.n_tokens, (long long)s.offsets[s.n_docs]);
    // tokens, then the mask, in chunks: a shard may be far larger than we want to hold at once
    const int64_t chunk = 1 << 20;
    std::vector<uint8_t> raw((size_t)(chunk * 4));
    for (int64_t i0 = 0; i0 < s.n_tokens; i0 += chunk) {
        const int64_t n = std::min(chunk, s.n_tokens - i0);
        fread_exact(raw.data(), (size_t)(n * s.token_bytes), f, path, "tokens");
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            if (s.token_bytes == 2) { uint16_t x; memcpy(&x, &raw[2 * i], 2); v = x; }
            else memcpy(&v, &raw[4 * i], 4);
            if (v >= (uint32_t)s.vocab_size)
                fail("%s: token %lld has id %u, expected < the header's vocab_size %d", p, (long long)(i0 + i), v, s.vocab_size);
        }
    }
    int d = 0;
    int64_t ones = 0;   // in the current document
    s.doc_targets.assign((size_t)s.n_docs, 0);
    for (int64_t i0 = 0; i0 < s.n_tokens; i0 += chunk) {
        const int64_t n = std::min(chunk, s.n_tokens - i0);
        fread_exact(raw.data(), (size_t)n, f, path, "mask");
        for (int64_t i = 0; i < n; i++) {
            const int64_t t = i0 + i;
            while (t >= s.offsets[d + 1]) {
                if (ones == 0) fail("%s: document %d has no token in the loss (mask all 0)", p, d);
                s.doc_targets[(size_t)d] = (int)ones;
                d++;
                ones = 0;
            }
            if (raw[i] > 1) fail("%s: mask of token %lld is %u, expected 0 or 1", p, (long long)t, raw[i]);
            if (t == s.offsets[d] && raw[i]) fail("%s: mask of token %lld is 1, but it starts document %d (no one's target)", p, (long long)t, d);
            ones += raw[i];
        }
    }
    if (ones == 0) fail("%s: document %d has no token in the loss (mask all 0)", p, d);
    s.doc_targets[(size_t)d] = (int)ones;
    fclose_or_fail(f, path);
    return s;
}

// ---------------------------------------------------------------------------
// the loader

struct SftLoader {
    int B = 0, T = 0, process_rank = 0, num_processes = 1, shuffle = 0, pack = 0, vocab_size = 0;
    uint64_t seed = 0;
    std::vector<SftShard> shards;
    std::vector<int> doc_shard;          // global document -> shard
    std::vector<int> doc_local;          // global document -> its index in the shard
    std::vector<int> doc_len;            // tokens
    std::vector<int> doc_targets;        // targets in the loss
    std::vector<uint32_t> order;         // this epoch's document order
    int64_t epoch = 0, cursor = 0;       // documents of `order` consumed
    Rng rng;
    uint64_t epoch_rng_state = 0;
    FILE* file = nullptr;                // the shard last read
    int file_shard = -1;
    // this rank's batch, after sft_next_batch
    std::vector<int32_t> inputs, targets, positions;   // B*T
    std::vector<int32_t> cu_seqlens;     // segment starts over the B*T tokens, then B*T (n_segments + 1)
    int64_t n_targets = 0;               // targets that count (!= SFT_IGNORE) in this rank's batch
    int64_t n_targets_global = 0;        // ... in the global batch (all ranks' rows): the loss's divisor, known
                                         // on every rank without communication
    std::vector<int> docs_per_row;       // documents in each of this rank's rows
};

static inline void sft_start_epoch(SftLoader* sl) {
    sl->epoch_rng_state = sl->rng.state;
    sl->order.resize(sl->doc_len.size());
    for (size_t i = 0; i < sl->order.size(); i++) sl->order[i] = (uint32_t)i;
    if (sl->shuffle) rng_shuffle(&sl->rng, sl->order.data(), sl->order.size());
    sl->cursor = 0;
}

// The documents of each row of the global batch starting at `cursor`, or false when the epoch's
// remaining documents cannot fill it. *end: the cursor after it.
static inline bool sft_plan_batch(const SftLoader* sl, int64_t cursor, std::vector<std::vector<uint32_t>>* rows, int64_t* end) {
    const int R = sl->B * sl->num_processes;
    const int64_t N = (int64_t)sl->order.size();
    rows->assign((size_t)R, {});
    for (int r = 0; r < R; r++) {
        int used = 0;
        while (cursor < N) {
            const uint32_t d = sl->order[(size_t)cursor];
            const int n = sl->doc_len[d] - 1;
            if (!(*rows)[r].empty() && (!sl->pack || used + n > sl->T)) break;
            (*rows)[r].push_back(d);
            used += n;
            cursor++;
        }
        if ((*rows)[r].empty()) return false;
    }
    *end = cursor;
    return true;
}

// Moves to the next epoch until a whole global batch is there; fails if a fresh epoch has none.
static inline void sft_settle(SftLoader* sl) {
    std::vector<std::vector<uint32_t>> rows;
    int64_t end;
    if (sft_plan_batch(sl, sl->cursor, &rows, &end)) return;
    sl->epoch++;
    sft_start_epoch(sl);
    if (!sft_plan_batch(sl, sl->cursor, &rows, &end))
        fail("%s: %zu conversations fill fewer rows than one batch of B %d x %d processes%s", sl->shards[0].path.c_str(), sl->doc_len.size(), sl->B,
             sl->num_processes, sl->pack ? " (packed)" : "");
}

static inline void sft_reset(SftLoader* sl) {
    sl->epoch = 0;
    rng_seed(&sl->rng, sl->seed);
    sft_start_epoch(sl);
    sft_settle(sl);
}

static inline void sft_init(SftLoader* sl, const std::string& glob_pattern, int B, int T, int process_rank, int num_processes, int shuffle,
                            uint64_t seed, int vocab_size, int pack) {
    const char* gp = glob_pattern.c_str();
    if (B <= 0 || T <= 0) fail("sft data %s: B and T must be > 0, got %d and %d", gp, B, T);
    if (num_processes <= 0 || process_rank < 0 || process_rank >= num_processes)
        fail("sft data %s: process rank %d is not in [0, %d)", gp, process_rank, num_processes);
    if (pack != 0 && pack != 1) fail("flag --pack: expected 0 or 1, got %d", pack);
    sl->B = B; sl->T = T; sl->process_rank = process_rank; sl->num_processes = num_processes;
    sl->shuffle = shuffle ? 1 : 0; sl->seed = seed; sl->vocab_size = vocab_size; sl->pack = pack;
    glob_t g;
    const int rc = glob(gp, 0, nullptr, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
        globfree(&g);
        fail("%s: no file matches this data pattern", gp);
    }
    if (rc != 0) { globfree(&g); fail("%s: glob failed (code %d)", gp, rc); }
    std::vector<std::string> paths(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    sl->shards.clear();
    sl->doc_shard.clear(); sl->doc_local.clear(); sl->doc_len.clear(); sl->doc_targets.clear();
    for (const std::string& path : paths) {
        SftShard s = sft_check_shard(path, vocab_size);
        for (int d = 0; d < s.n_docs; d++) {
            const int64_t n = s.offsets[d + 1] - s.offsets[d];
            if (n > (int64_t)T + 1)
                fail("%s: document %d has %lld tokens, more than --seq-len %d + 1 (the shard was prepared for --seq-len %d: prepare again with "
                     "--seq-len %d or less)", path.c_str(), d, (long long)n, T, s.seq_len, T);
            sl->doc_shard.push_back((int)sl->shards.size());
            sl->doc_local.push_back(d);
            sl->doc_len.push_back((int)n);
            sl->doc_targets.push_back(s.doc_targets[(size_t)d]);
        }
        if (sl->doc_len.size() > (size_t)UINT32_MAX) fail("%s: more than 2^32 documents in all", path.c_str());
        sl->shards.push_back(std::move(s));
    }
    const size_t BT = (size_t)B * T;
    sl->inputs.assign(BT, 0);
    sl->targets.assign(BT, SFT_IGNORE);
    sl->positions.assign(BT, 0);
    sl->cu_seqlens.assign(1, 0);
    sl->file = nullptr;
    sl->file_shard = -1;
    sft_reset(sl);
}

// Reads document d's tokens and mask.
static inline void sft_read_doc(SftLoader* sl, uint32_t d, std::vector<uint32_t>* tok, std::vector<uint8_t>* mask) {
    const SftShard& s = sl->shards[(size_t)sl->doc_shard[d]];
    if (sl->file_shard != sl->doc_shard[d]) {
        if (sl->file) fclose(sl->file);   // read-only
        sl->file = fopen_or_fail(s.path, "rb");
        sl->file_shard = sl->doc_shard[d];
    }
    const int64_t start = s.offsets[(size_t)sl->doc_local[d]], n = sl->doc_len[d];
    std::vector<uint8_t> raw((size_t)(n * s.token_bytes));
    if (fseeko(sl->file, (off_t)(sft_tokens_at(s) + start * s.token_bytes), SEEK_SET) != 0)
        fail("%s: cannot seek to document %d (%s)", s.path.c_str(), sl->doc_local[d], strerror(errno));
    fread_exact(raw.data(), raw.size(), sl->file, s.path, "tokens");
    tok->resize((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t v;
        if (s.token_bytes == 2) { uint16_t x; memcpy(&x, &raw[2 * i], 2); v = x; }
        else memcpy(&v, &raw[4 * i], 4);
        // checked at init; a file changed under us must still not reach the GPU
        if (v >= (uint32_t)s.vocab_size) fail("%s: token %lld has id %u, expected < %d (file changed since it was checked?)", s.path.c_str(), (long long)(start + i), v, s.vocab_size);
        (*tok)[(size_t)i] = v;
    }
    mask->resize((size_t)n);
    if (fseeko(sl->file, (off_t)(sft_mask_at(s) + start), SEEK_SET) != 0)
        fail("%s: cannot seek to the mask of document %d (%s)", s.path.c_str(), sl->doc_local[d], strerror(errno));
    fread_exact(mask->data(), mask->size(), sl->file, s.path, "mask");
}

static inline void sft_next_batch(SftLoader* sl) {
    std::vector<std::vector<uint32_t>> rows;
    int64_t end = 0;
    if (!sft_plan_batch(sl, sl->cursor, &rows, &end)) fail("sft data: no whole batch at the position (internal error)");
    const int T = sl->T;
    sl->cu_seqlens.assign(1, 0);
    sl->n_targets = 0;
    sl->n_targets_global = 0;
    for (const std::vector<uint32_t>& row : rows)
        for (uint32_t d : row) sl->n_targets_global += sl->doc_targets[d];
    sl->docs_per_row.assign((size_t)sl->B, 0);
    std::vector<uint32_t> tok;
    std::vector<uint8_t> mask;
    for (int b = 0; b < sl->B; b++) {
        const std::vector<uint32_t>& row = rows[(size_t)b * sl->num_processes + sl->process_rank];
        int32_t* x = sl->inputs.data() + (size_t)b * T;
        int32_t* y = sl->targets.data() + (size_t)b * T;
        int32_t* pos = sl->positions.data() + (size_t)b * T;
        int t = 0;
        for (uint32_t d : row) {
            sft_read_doc(sl, d, &tok, &mask);
            const int n = (int)tok.size() - 1;
            for (int i = 0; i < n; i++, t++) {
                x[t] = (int32_t)tok[(size_t)i];
                y[t] = mask[(size_t)i + 1] ? (int32_t)tok[(size_t)i + 1] : SFT_IGNORE;
                pos[t] = i;
                sl->n_targets += mask[(size_t)i + 1];
            }
            sl->cu_seqlens.push_back(b * T + t);
        }
        sl->docs_per_row[(size_t)b] = (int)row.size();
        for (int i = 0; t < T; i++, t++) { x[t] = 0; y[t] = SFT_IGNORE; pos[t] = i; }
        if (sl->cu_seqlens.back() != (b + 1) * T) sl->cu_seqlens.push_back((b + 1) * T);   // the padding's segment
    }
    sl->cursor = end;
    sft_settle(sl);
}

// Global batches in one pass over the data in file order (a validation pass).
static inline long long sft_num_batches(const SftLoader* sl) {
    SftLoader probe;
    probe.B = sl->B; probe.T = sl->T; probe.num_processes = sl->num_processes; probe.pack = sl->pack;
    probe.doc_len = sl->doc_len;
    probe.order.resize(sl->doc_len.size());
    for (size_t i = 0; i < probe.order.size(); i++) probe.order[i] = (uint32_t)i;
    std::vector<std::vector<uint32_t>> rows;
    long long n = 0;
    int64_t c = 0, end;
    while (sft_plan_batch(&probe, c, &rows, &end)) { n++; c = end; }
    return n;
}

static inline DataLoaderPosition sft_get_position(const SftLoader* sl) {
    DataLoaderPosition p;
    p.epoch = sl->epoch;
    p.shard = SFT_POSITION_SHARD;
    p.sample = sl->cursor;
    p.rng_state = sl->epoch_rng_state;
    return p;
}

static inline void sft_set_position(SftLoader* sl, const DataLoaderPosition& p) {
    if (p.shard != SFT_POSITION_SHARD) fail("data position: the checkpoint was not taken reading SFT shards (use the same --train-data)");
    if (p.epoch < 0) fail("data position: epoch must be >= 0, found %lld", (long long)p.epoch);
    if (p.rng_state == 0) fail("data position: rng_state must be non-zero");
    if (p.sample < 0 || p.sample > (int64_t)sl->doc_len.size())
        fail("data position: document %lld is not in [0, %zu] (different data files?)", (long long)p.sample, sl->doc_len.size());
    sl->epoch = p.epoch;
    sl->rng.state = p.rng_state;
    sft_start_epoch(sl);
    sl->cursor = p.sample;
    sft_settle(sl);
}

static inline void sft_free(SftLoader* sl) {
    if (sl->file) fclose(sl->file);   // read-only
    sl->file = nullptr;
    sl->file_shard = -1;
    sl->shards.clear();
}

// ---------------------------------------------------------------------------
// Chat prompts (scripts/prepare_sft.py --prompts: OUT/prompts.txt; train_gpt --chat-prompts):
// a line "mega.c chat prompts 1 eot=ID n=N", then N lines "PROMPT IDS | ANSWER IDS" (the
// prompt rendered with the generation prompt; the answer, if given, the tokens the model
// should write through the end-of-turn token ID).
struct ChatPrompts {
    int eot = -1;
    std::vector<std::vector<int>> prompts, answers;   // answers[k] empty: none given
};

// Reads and checks a prompts file against the model's vocabulary and sequence length T (a
// prompt and its answer, or one generated token, must fit). One line naming the file and
// line on any fault.
static inline ChatPrompts chat_prompts_read(const std::string& path, int vocab_size, int T) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
    std::string text;
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        text.append(buf, got);
        if (text.size() > ((size_t)1 << 30)) { fclose(f); fail("%s: larger than 1 GiB: not a chat prompts file", path.c_str()); }
    }
    const bool read_error = ferror(f) != 0;
    fclose(f);   // read-only
    if (read_error) fail("%s: read error", path.c_str());
    std::vector<std::string> lines;
    for (size_t a = 0; a < text.size();) {
        size_t b = text.find('\n', a);
        if (b == std::string::npos) b = text.size();
        lines.push_back(text.substr(a, b - a));
        a = b + 1;
    }
    ChatPrompts cp;
    long long n = -1, eot = -1;
    char tail = 0;
    if (lines.empty() || sscanf(lines[0].c_str(), "mega.c chat prompts 1 eot=%lld n=%lld%c", &eot, &n, &tail) != 2)
        fail("%s: line 1: expected \"mega.c chat prompts 1 eot=ID n=N\" (written by scripts/prepare_sft.py --prompts)", path.c_str());
    if (eot < 0 || eot >= vocab_size) fail("%s: line 1: end-of-turn id %lld is outside the vocabulary [0, %d)", path.c_str(), eot, vocab_size);
    if (n < 1 || n > 100000) fail("%s: line 1: n=%lld prompts, expected 1 to 100000", path.c_str(), n);
    if ((long long)lines.size() - 1 < n) fail("%s: %lld prompt lines, the header says %lld (truncated?)", path.c_str(), (long long)lines.size() - 1, n);
    for (size_t k = (size_t)n + 1; k < lines.size(); k++)
        if (!lines[k].empty()) fail("%s: line %zu: more lines than the header's n=%lld", path.c_str(), k + 1, n);
    cp.eot = (int)eot;
    for (long long k = 1; k <= n; k++) {
        const std::string& s = lines[(size_t)k];
        const size_t bar = s.find('|');
        if (bar == std::string::npos) fail("%s: line %lld: expected \"PROMPT IDS | ANSWER IDS\"", path.c_str(), k + 1);
        std::vector<int> part[2];
        for (int h = 0; h < 2; h++) {
            const std::string seg = h == 0 ? s.substr(0, bar) : s.substr(bar + 1);
            const char* c = seg.c_str();
            while (*c) {
                if (*c == ' ' || *c == '\r') { c++; continue; }
                char* end = nullptr;
                errno = 0;
                const long long id = strtoll(c, &end, 10);
                if (end == c || errno != 0 || (*end && *end != ' ' && *end != '\r'))
                    fail("%s: line %lld: expected token ids (decimal integers) separated by spaces", path.c_str(), k + 1);
                if (id < 0 || id >= vocab_size) fail("%s: line %lld: token id %lld is outside the vocabulary [0, %d)", path.c_str(), k + 1, id, vocab_size);
                part[h].push_back((int)id);
                c = end;
            }
        }
        if (part[0].empty()) fail("%s: line %lld: an empty prompt", path.c_str(), k + 1);
        if (part[0].size() + std::max<size_t>(part[1].size(), 1) > (size_t)T)
            fail("%s: line %lld: the prompt (%zu tokens) and its answer (%zu) do not fit --seq-len %d", path.c_str(), k + 1, part[0].size(),
                 part[1].size(), T);
        cp.prompts.push_back(part[0]);
        cp.answers.push_back(part[1]);
    }
    return cp;
}
