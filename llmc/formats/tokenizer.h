/*
Byte-level BPE tokenizer: train, encode, decode, save, load.

Token ids: 0..255 are the raw bytes, 256 + i is the i-th merge, and the last id
(vocab_size - 1) is the end-of-text token. Any byte string round-trips through
encode/decode, so no text is ever "unknown".

Pre-tokenization (GPT-2 style, without a regex library): the text is cut into
chunks and merges never cross a chunk boundary, so " the" and "the," stay
reusable pieces. A chunk is one of
  - an optional single leading space + a run of letters (A-Z, a-z, any byte >= 0x80,
    so UTF-8 letters group with ASCII ones),
  - an optional single leading space + a run of digits,
  - an optional single leading space + a run of other non-space bytes,
  - a run of whitespace; when it is followed by a non-space and ends in ' ',
    that last space is left to start the next chunk (" word"), as in GPT-2.
Chunks longer than TOK_MAX_CHUNK bytes are cut, which bounds the quadratic
per-chunk merge loop on pathological input (a megabyte without a space).

File format (little-endian int32 throughout):
  int32 magic      = TOKENIZER_MAGIC (20251122)
  int32 version    = 1
  int32 vocab_size (>= 257)
  int32 n_merges   = vocab_size - 257
  int32 eot_token  = vocab_size - 1
  n_merges times: int32 left, int32 right   (merge i makes id 256 + i; both ids < 256 + i)
The file length must be exactly 20 + 8 * n_merges bytes.
*/
#pragma once
#include <algorithm>
#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unistd.h>
#include <utility>
#include <vector>
#include "../core/utils.h"

#define TOKENIZER_MAGIC 20251122
#define TOKENIZER_VERSION 1
#define TOK_MAX_CHUNK 256
#define TOK_EOT_TEXT "<|endoftext|>"

struct Tokenizer {
    int vocab_size = 0;
    int eot_token = -1;                          // vocab_size - 1
    std::vector<std::pair<int, int>> merges;     // merges[i] = (left, right) makes id 256 + i
    std::vector<std::string> vocab;              // bytes of every id (eot: TOK_EOT_TEXT)
    std::unordered_map<uint64_t, int> merge_rank; // (left, right) -> i
    // chunk -> ids; encoding is pure, so caching it behind a const pointer is safe
    mutable std::unordered_map<std::string, std::vector<int>> cache;
};

static inline uint64_t tok_pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

// ----------------------------------------------------------------------------
// Pre-tokenization

enum { TOK_LETTER, TOK_DIGIT, TOK_SPACE, TOK_OTHER };

static inline int tok_class(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return TOK_LETTER;
    if (c >= '0' && c <= '9') return TOK_DIGIT;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') return TOK_SPACE;
    return TOK_OTHER;
}

// Calls emit(std::string_view chunk) for every chunk of s, in order; the chunks
// concatenate back to s exactly.
template <typename F>
static inline void tok_split(std::string_view s, F emit) {
    auto emit_capped = [&](size_t b, size_t e) {
        for (; b < e; b += TOK_MAX_CHUNK) emit(s.substr(b, std::min<size_t>(TOK_MAX_CHUNK, e - b)));
    };
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const size_t start = i;
        if (tok_class((unsigned char)s[i]) == TOK_SPACE) {
            size_t j = i;
            while (j < n && tok_class((unsigned char)s[j]) == TOK_SPACE) j++;
            // a final ' ' before a word belongs to the word; a lone ' ' falls through below
            if (j < n && s[j - 1] == ' ') {
                if (j - 1 > i) { emit_capped(i, j - 1); i = j - 1; continue; }
            } else {
                emit_capped(i, j); i = j; continue;
            }
            i++;  // the single leading space of the chunk that follows
        }
        const int cls = tok_class((unsigned char)s[i]);
        size_t j = i;
        while (j < n && tok_class((unsigned char)s[j]) == cls) j++;
        emit_capped(start, j);
        i = j;
    }
}

// ----------------------------------------------------------------------------
// Vocabulary bookkeeping

static inline void tokenizer_build_tables(Tokenizer* t) {
    t->vocab.assign(t->vocab_size, std::string());
    for (int b = 0; b < 256; b++) t->vocab[b] = std::string(1, (char)b);
    t->merge_rank.clear();
    for (size_t i = 0; i < t->merges.size(); i++) {
        t->vocab[256 + i] = t->vocab[t->merges[i].first] + t->vocab[t->merges[i].second];
        t->merge_rank[tok_pair_key(t->merges[i].first, t->merges[i].second)] = (int)i;
    }
    t->eot_token = t->vocab_size - 1;
    t->vocab[t->eot_token] = TOK_EOT_TEXT;
    t->cache.clear();
}

// ----------------------------------------------------------------------------
// Training: count the unique chunks once, then keep pair counts up to date
// incrementally. Each merge only revisits the chunks that contain the merged
// pair (found through an index pair -> chunks), and a max-heap with lazy
// deletion finds the next best pair, so ~1 MB and ~800 merges take well under
// a second instead of a full recount per merge.

struct TokHeapItem {
    int64_t count;
    uint64_t pair;
    // std::priority_queue puts the "largest" on top: highest count, then the
    // smallest (left, right) ids, which makes ties deterministic
    bool operator<(const TokHeapItem& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

static inline void tokenizer_train(Tokenizer* t, const std::string& text, int vocab_size) {
    if (vocab_size < 257) fail("tokenizer_train: vocab_size must be >= 257 (256 bytes + end-of-text), got %d", vocab_size);
    if (vocab_size > (1 << 24)) fail("tokenizer_train: vocab_size %d is too large (at most %d)", vocab_size, 1 << 24);
    const int n_merges = vocab_size - 257;

    std::unordered_map<std::string_view, int64_t> chunk_counts;
    tok_split(text, [&](std::string_view c) { chunk_counts[c]++; });
    // sorted so that every data structure below is built in the same order on every run
    std::vector<std::pair<std::string_view, int64_t>> uniq(chunk_counts.begin(), chunk_counts.end());
    std::sort(uniq.begin(), uniq.end());
    std::vector<std::vector<int>> words(uniq.size());
    std::vector<int64_t> wcount(uniq.size());
    for (size_t w = 0; w < uniq.size(); w++) {
        for (unsigned char c : uniq[w].first) words[w].push_back(c);
        wcount[w] = uniq[w].second;
    }

    std::unordered_map<uint64_t, int64_t> pair_count;
    std::unordered_map<uint64_t, std::vector<int>> where;  // pair -> chunks that contain(ed) it
    for (size_t w = 0; w < words.size(); w++) {
        const std::vector<int>& ids = words[w];
        for (size_t i = 0; i + 1 < ids.size(); i++) {
            uint64_t k = tok_pair_key(ids[i], ids[i + 1]);
            pair_count[k] += wcount[w];
            std::vector<int>& v = where[k];
            if (v.empty() || v.back() != (int)w) v.push_back((int)w);
        }
    }
    std::priority_queue<TokHeapItem> heap;
    for (auto& pc : pair_count) heap.push({pc.second, pc.first});

    t->vocab_size = vocab_size;
    t->merges.clear();
    std::vector<int> visited(words.size(), -1);
    std::unordered_map<uint64_t, int64_t> delta;
    std::vector<int> merged;
    while ((int)t->merges.size() < n_merges) {
        if (heap.empty())
            fail("tokenizer_train: the text (%zu bytes) has no byte pair left to merge after %zu merges; use a vocab_size <= %zu",
                 text.size(), t->merges.size(), t->merges.size() + 257);
        TokHeapItem top = heap.top();
        heap.pop();
        auto it = pair_count.find(top.pair);
        if (it == pair_count.end() || it->second != top.count || top.count <= 0) continue;  // stale entry
        const int a = (int)(top.pair >> 32), b = (int)(uint32_t)top.pair;
        const int id = 256 + (int)t->merges.size();
        t->merges.push_back({a, b});

        delta.clear();
        std::vector<int> ws = std::move(where[top.pair]);
        where.erase(top.pair);
        for (int w : ws) {
            if (visited[w] == id) continue;
            visited[w] = id;
            std::vector<int>& ids = words[w];
            bool has = false;
            for (size_t i = 0; i + 1 < ids.size(); i++) if (ids[i] == a && ids[i + 1] == b) { has = true; break; }
            if (!has) continue;
            const int64_t c = wcount[w];
            for (size_t i = 0; i + 1 < ids.size(); i++) delta[tok_pair_key(ids[i], ids[i + 1])] -= c;
            merged.clear();
            for (size_t i = 0; i < ids.size(); i++) {
                if (i + 1 < ids.size() && ids[i] == a && ids[i + 1] == b) { merged.push_back(id); i++; }
                else merged.push_back(ids[i]);
            }
            ids.swap(merged);
            for (size_t i = 0; i + 1 < ids.size(); i++) {
                uint64_t k = tok_pair_key(ids[i], ids[i + 1]);
                delta[k] += c;
                // only pairs with the new id can be new to this chunk
                if (ids[i] == id || ids[i + 1] == id) {
                    std::vector<int>& v = where[k];
                    if (v.empty() || v.back() != w) v.push_back(w);
                }
            }
        }
        for (auto& d : delta) {
            if (d.second == 0) continue;
            int64_t& cnt = pair_count[d.first];
            cnt += d.second;
            if (cnt > 0) heap.push({cnt, d.first});
            else pair_count.erase(d.first);
        }
    }
    tokenizer_build_tables(t);
}

// ----------------------------------------------------------------------------
// Encoding: per chunk, repeatedly merge the pair with the lowest merge index,
// which reproduces the order in which training created the tokens.

static inline void tok_encode_chunk(const Tokenizer* t, std::string_view chunk, std::vector<int>& out) {
    std::vector<int> ids(chunk.size());
    for (size_t i = 0; i < chunk.size(); i++) ids[i] = (unsigned char)chunk[i];
    while (ids.size() >= 2) {
        int best = INT32_MAX;
        for (size_t i = 0; i + 1 < ids.size(); i++) {
            auto it = t->merge_rank.find(tok_pair_key(ids[i], ids[i + 1]));
            if (it != t->merge_rank.end() && it->second < best) best = it->second;
        }
        if (best == INT32_MAX) break;
        const int a = t->merges[best].first, b = t->merges[best].second;
        size_t o = 0;
        for (size_t i = 0; i < ids.size(); i++) {
            if (i + 1 < ids.size() && ids[i] == a && ids[i + 1] == b) { ids[o++] = 256 + best; i++; }
            else ids[o++] = ids[i];
        }
        ids.resize(o);
    }
    out.insert(out.end(), ids.begin(), ids.end());
}

static inline std::vector<int> tokenizer_encode(const Tokenizer* t, const std::string& text) {
    if (t->vocab_size < 257) fail("tokenizer_encode: tokenizer is not trained or loaded");
    std::vector<int> out;
    out.reserve(text.size() / 3 + 16);
    // the cache only helps while it fits comfortably; start over on huge corpora
    if (t->cache.size() > (1u << 20)) t->cache.clear();
    tok_split(text, [&](std::string_view c) {
        std::string key(c);
        auto it = t->cache.find(key);
        if (it == t->cache.end()) {
            std::vector<int> ids;
            tok_encode_chunk(t, c, ids);
            it = t->cache.emplace(std::move(key), std::move(ids)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
    });
    return out;
}

// Never fails: ids outside the vocabulary (a model sampling a padded column, a
// corrupt file) come out as U+FFFD, the Unicode replacement character.
static inline std::string tokenizer_decode(const Tokenizer* t, const int* ids, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; i++) {
        const int id = ids[i];
        if (id >= 0 && id < (int)t->vocab.size()) s += t->vocab[id];
        else s += "\xEF\xBF\xBD";
    }
    return s;
}

// ----------------------------------------------------------------------------
// Save / load

static inline void tokenizer_save(const Tokenizer* t, const std::string& path) {
    if (t->vocab_size < 257 || (int)t->merges.size() != t->vocab_size - 257) fail("tokenizer_save %s: tokenizer is not trained or loaded", path.c_str());
    make_parent_dirs(path);
    const std::string tmp = path + ".tmp";
    FILE* f = fopen_or_fail(tmp, "wb");
    int32_t hdr[5] = {TOKENIZER_MAGIC, TOKENIZER_VERSION, t->vocab_size, (int32_t)t->merges.size(), t->vocab_size - 1};
    fwrite_exact(hdr, sizeof(hdr), f, tmp);
    std::vector<int32_t> m(2 * t->merges.size());
    for (size_t i = 0; i < t->merges.size(); i++) { m[2 * i] = t->merges[i].first; m[2 * i + 1] = t->merges[i].second; }
    fwrite_exact(m.data(), m.size() * sizeof(int32_t), f, tmp);
    finish_atomic_write(f, tmp, path);
}

static inline void tokenizer_load(Tokenizer* t, const std::string& path) {
    require_regular_file(path);
    FILE* f = fopen_or_fail(path, "rb");
    const long size = file_size_or_fail(f, path);
    int32_t hdr[5];
    if (size < (long)sizeof(hdr)) fail("%s: tokenizer file is %ld bytes, expected at least the %zu-byte header", path.c_str(), size, sizeof(hdr));
    fread_exact(hdr, sizeof(hdr), f, path, "header");
    if (hdr[0] != TOKENIZER_MAGIC) fail("%s: tokenizer magic: expected %d, found %d (not a mega.c tokenizer file)", path.c_str(), TOKENIZER_MAGIC, hdr[0]);
    if (hdr[1] != TOKENIZER_VERSION) fail("%s: tokenizer version: expected %d, found %d", path.c_str(), TOKENIZER_VERSION, hdr[1]);
    const int vocab = hdr[2], n_merges = hdr[3];
    if (vocab < 257 || vocab > (1 << 24)) fail("%s: tokenizer vocab_size: expected 257..%d, found %d", path.c_str(), 1 << 24, vocab);
    if (n_merges != vocab - 257) fail("%s: tokenizer n_merges: expected vocab_size - 257 = %d, found %d", path.c_str(), vocab - 257, n_merges);
    if (hdr[4] != vocab - 1) fail("%s: tokenizer eot_token: expected vocab_size - 1 = %d, found %d", path.c_str(), vocab - 1, hdr[4]);
    const long expect = (long)sizeof(hdr) + 8L * n_merges;
    if (size != expect)
        fail("%s: tokenizer file length: expected %ld bytes for %d merges, found %ld (%s)", path.c_str(), expect, n_merges, size,
             size < expect ? "truncated" : "extra bytes");
    std::vector<int32_t> m(2 * (size_t)n_merges);
    fread_exact(m.data(), m.size() * sizeof(int32_t), f, path, "merges");
    fclose_or_fail(f, path);
    Tokenizer nt;
    nt.vocab_size = vocab;
    std::unordered_map<uint64_t, int> seen;
    // token lengths in bytes: chained merges double a length each time, so a small file could
    // otherwise ask tokenizer_build_tables for 2^n-byte strings; training never makes a token
    // longer than a chunk (merges do not cross chunks of at most TOK_MAX_CHUNK bytes)
    std::vector<int> len(256 + (size_t)n_merges, 1);
    for (int i = 0; i < n_merges; i++) {
        const int a = m[2 * i], b = m[2 * i + 1];
        // a merge may only combine ids that exist before it
        if (a < 0 || a >= 256 + i || b < 0 || b >= 256 + i)
            fail("%s: tokenizer merge %d = (%d, %d): expected ids in [0, %d)", path.c_str(), i, a, b, 256 + i);
        if (!seen.emplace(tok_pair_key(a, b), i).second)
            fail("%s: tokenizer merge %d = (%d, %d): duplicate of merge %d", path.c_str(), i, a, b, seen[tok_pair_key(a, b)]);
        len[256 + i] = len[a] + len[b];
        if (len[256 + i] > TOK_MAX_CHUNK)
            fail("%s: tokenizer merge %d = (%d, %d): makes a token of %d bytes, expected at most %d (the longest chunk)", path.c_str(), i, a, b,
                 len[256 + i], TOK_MAX_CHUNK);
        nt.merges.push_back({a, b});
    }
    tokenizer_build_tables(&nt);
    *t = std::move(nt);
}
