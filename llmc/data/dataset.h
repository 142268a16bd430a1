/*
Data preparation: text file -> tokenizer + llm.c token shards.

build_text_dataset(text, out_dir, vocab_size, val_fraction) writes
  out_dir/tokenizer.bin   byte-level BPE trained on the train split only (llmc/formats/tokenizer.h)
  out_dir/train_000.bin   llm.c shard: eot + the train split's tokens
  out_dir/val_000.bin     llm.c shard: eot + the validation split's tokens
  out_dir/meta.txt        sizes of both splits, one "key value" per line:
                            vocab_size N
                            train_bytes N
                            train_tokens N
                            val_bytes N
                            val_tokens N
                          token counts exclude the leading eot, so that
                          val_bytes / val_tokens is exactly the bytes per token
                          of the validation text, what converts a loss in
                          nats/token into nats/byte (comparable across tokenizers).
The tokenizer is written last: a trainer that finds tokenizer.bin may assume
the whole directory is complete.

The shards' format and their writer: llmc/data/token_shard.h.
*/
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "../core/utils.h"
#include "../formats/tokenizer.h"
#include "token_shard.h"

// ----------------------------------------------------------------------------
// meta.txt

struct DatasetMeta {
    long long vocab_size = 0;
    long long train_bytes = 0, train_tokens = 0;
    long long val_bytes = 0, val_tokens = 0;
};

static inline void write_dataset_meta(const std::string& dir, const DatasetMeta& m) {
    const std::string path = dir + "/meta.txt", tmp = path + ".tmp";
    make_parent_dirs(path);
    FILE* f = fopen_or_fail(tmp, "w");
    if (fprintf(f, "vocab_size %lld\ntrain_bytes %lld\ntrain_tokens %lld\nval_bytes %lld\nval_tokens %lld\n", m.vocab_size,
                m.train_bytes, m.train_tokens, m.val_bytes, m.val_tokens) < 0)
        fail("%s: write failed (%s)", tmp.c_str(), strerror(errno));
    finish_atomic_write(f, tmp, path);
}

// Returns false if dir/meta.txt does not exist (datasets not made by
// build_text_dataset have none); a meta.txt that exists but is malformed fails.
// Unknown keys are skipped so that later versions can add lines.
static inline bool read_dataset_meta(const std::string& dir, DatasetMeta* m) {
    const std::string path = dir + "/meta.txt";
    if (!file_exists(path)) return false;
    const std::string text = read_file_or_fail(path);
    DatasetMeta r;
    struct Field { const char* name; long long* v; bool seen; };
    Field fields[] = {{"vocab_size", &r.vocab_size, false}, {"train_bytes", &r.train_bytes, false}, {"train_tokens", &r.train_tokens, false},
                      {"val_bytes", &r.val_bytes, false}, {"val_tokens", &r.val_tokens, false}};
    size_t pos = 0;
    int lineno = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(pos, end - pos);
        pos = end + 1;
        lineno++;
        if (line.empty()) continue;
        const size_t sp = line.find(' ');
        if (sp == std::string::npos) fail("%s: line %d: expected 'key value', found '%s'", path.c_str(), lineno, line.c_str());
        const std::string key = line.substr(0, sp), val = line.substr(sp + 1);
        for (Field& fl : fields) {
            if (key != fl.name) continue;
            const std::string what = path + ": " + key;
            *fl.v = parse_int_or_fail(val.c_str(), what.c_str());
            if (*fl.v <= 0) fail("%s: %s: expected a positive integer, found %lld", path.c_str(), fl.name, *fl.v);
            fl.seen = true;
        }
    }
    for (Field& fl : fields) if (!fl.seen) fail("%s: missing the line '%s N'", path.c_str(), fl.name);
    *m = r;
    return true;
}

// Bytes of validation text per validation token (0 if there is no meta.txt).
static inline double dataset_bytes_per_token(const std::string& dir) {
    DatasetMeta m;
    if (!read_dataset_meta(dir, &m)) return 0.0;
    return (double)m.val_bytes / (double)m.val_tokens;
}

// ----------------------------------------------------------------------------

// Reads a text file and splits it at a byte position, moved forward to just after the
// next newline so that no line is cut in two (nanoGPT's tinyshakespeare split is 90/10 by bytes).
static inline void read_train_val_split(const std::string& text_path, double val_fraction, std::string* train_text, std::string* val_text) {
    if (!(val_fraction > 0.0 && val_fraction < 1.0)) fail("build_text_dataset: val_fraction must be in (0, 1), got %g", val_fraction);
    require_regular_file(text_path);
    const std::string text = read_file_or_fail(text_path);
    const size_t n = text.size();
    size_t split = (size_t)((double)n * (1.0 - val_fraction));
    const size_t nl = text.find('\n', split);
    if (nl != std::string::npos && nl + 1 < n) split = nl + 1;
    if (split == 0 || split >= n)
        fail("%s: %zu bytes are too few to split into train and validation (val_fraction %g)", text_path.c_str(), n, val_fraction);
    *train_text = text.substr(0, split);
    *val_text = text.substr(split);
}

// Both builders' output: the splits' ids (each split starting with the end-of-text id `eot`,
// like llm.c's document-delimited shards) in train_000.bin / val_000.bin, and meta.txt.
// `encoded_by` names the tokenizer in the log line ("" for the trained one).
static inline void write_text_dataset(const std::string& out_dir, const std::string& encoded_by, size_t train_bytes, size_t val_bytes,
                                      std::vector<int> train_ids, std::vector<int> val_ids, int eot, int vocab_size, double encode_seconds) {
    DatasetMeta m;
    m.vocab_size = vocab_size;
    m.train_bytes = (long long)train_bytes; m.train_tokens = (long long)train_ids.size();
    m.val_bytes = (long long)val_bytes; m.val_tokens = (long long)val_ids.size();
    printf("build_data: encoded%s train %lld bytes -> %lld tokens (%.3f bytes/token), val %lld bytes -> %lld tokens (%.3f bytes/token) in %.2f s\n",
           encoded_by.empty() ? "" : (" with " + encoded_by + ":").c_str(), m.train_bytes, m.train_tokens, (double)m.train_bytes / m.train_tokens,
           m.val_bytes, m.val_tokens, (double)m.val_bytes / m.val_tokens, encode_seconds);
    train_ids.insert(train_ids.begin(), eot);
    val_ids.insert(val_ids.begin(), eot);
    write_token_shard(out_dir + "/train_000.bin", train_ids, vocab_size);
    write_token_shard(out_dir + "/val_000.bin", val_ids, vocab_size);
    write_dataset_meta(out_dir, m);
}

static inline void build_text_dataset(const std::string& text_path, const std::string& out_dir, int vocab_size, double val_fraction) {
    if (vocab_size < 257) fail("build_text_dataset: vocab_size must be >= 257 (256 bytes + end-of-text), got %d", vocab_size);
    if (out_dir.empty()) fail("build_text_dataset: empty output directory");
    double t0 = wall_seconds();
    std::string train_text, val_text;
    read_train_val_split(text_path, val_fraction, &train_text, &val_text);

    Tokenizer tok;
    tokenizer_train(&tok, train_text, vocab_size);
    double t1 = wall_seconds();
    printf("build_data: trained tokenizer (vocab %d) on %zu train bytes of %s in %.2f s\n", vocab_size, train_text.size(), text_path.c_str(), t1 - t0);

    std::vector<int> train_ids = tokenizer_encode(&tok, train_text);
    std::vector<int> val_ids = tokenizer_encode(&tok, val_text);
    double t2 = wall_seconds();
    write_text_dataset(out_dir, "", train_text.size(), val_text.size(), std::move(train_ids), std::move(val_ids), tok.eot_token, vocab_size, t2 - t1);
    tokenizer_save(&tok, out_dir + "/tokenizer.bin");
    double t3 = wall_seconds();
    printf("build_data: wrote %s/{train_000.bin,val_000.bin,meta.txt,tokenizer.bin} in %.2f s\n", out_dir.c_str(), t3 - t2);
}
