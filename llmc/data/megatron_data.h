/*
Megatron-LM indexed datasets (what Megatron's tools/preprocess_data.py writes),
read on the host, and a (inputs, targets) batch sampler over one or several of
them with Megatron's weighted blending.

A dataset is a prefix P: P.idx + P.bin.
  P.idx: 9 bytes "MMIDIDX\0\0", uint64 version = 1, uint8 dtype code
         (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16),
         uint64 sequence_count S, uint64 document_count D,
         int32 sequence_lengths[S], int64 sequence_pointers[S] (byte offsets into P.bin),
         int64 document_indices[D] (sequence index boundaries: first 0, last S),
         optional int8 sequence_modes[S] (multimodal datasets; read past, not used).
  P.bin: the token arrays back to back.
megatron_open validates everything before use and fails with one line naming
the file, the field and the expected value: magic, version, dtype code, the
.idx length against S and D, lengths > 0, document indices, every sequence
inside the .bin, aligned to the dtype size, in file order and not overlapping
the one before it, and every token (integral, >= 0, < vocab_size).

Sampling: the token stream of a dataset is its sequences back to back, in file
order (documents follow each other, as in Megatron's GPTDataset; Megatron's
preprocessing appends an end-of-document token with --append-eod). Sample k of
a dataset is the T+1 tokens starting at k*T (inputs the first T, targets the
last T), so a dataset of n tokens has (n-1)/T samples. Past its last sample a
dataset starts again (a new epoch), in order or, with shuffle=1, in a
permutation drawn for (seed, dataset, epoch).

Blending: a spec "W1 P1 W2 P2 ..." (Megatron's --data-path syntax; a single
"P" or a list of prefixes without weights weighs each dataset by its number
of samples). Global sample g comes from the dataset furthest below its target
share, as in Megatron's build_blending_indices:
    d(g) = argmax_d  w_d * max(g, 1) - count_d(g)      (first d on ties)
so after n samples every dataset's count is within one of w_d * n.

Data parallel: a batch takes the next B * num_processes global samples; rank
r keeps positions b * num_processes + r (b < B), as llmc/data/dataloader.h does.
The position is the number of global samples consumed (megatron_get_position);
megatron_set_position replays the (cheap, I/O-free) blending choices up to it,
so a run resumes exactly, also with a different number of processes.
*/
#pragma once
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>
#include "../core/utils.h"
#include "../core/rand.h"

static const char MEGATRON_IDX_MAGIC[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};

// element size of a Megatron dtype code, 0 if the code is unknown
static inline int megatron_dtype_size(int code) {
    switch (code) {
        case 1: case 2: return 1;          // uint8, int8
        case 3: case 8: return 2;          // int16, uint16
        case 4: case 7: return 4;          // int32, float32
        case 5: case 6: return 8;          // int64, float64
    }
    return 0;
}
static inline const char* megatron_dtype_name(int code) {
    static const char* names[] = {"?", "uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16"};
    return code >= 1 && code <= 8 ? names[code] : "?";
}

struct MegatronIndexed {
    std::string prefix, idx_path, bin_path;
    int dtype_code, elem_size;
    std::vector<int32_t> seq_lengths;
    std::vector<int64_t> seq_pointers;
    std::vector<int64_t> doc_indices;
    std::vector<int64_t> cum;     // cum[i]: stream offset of sequence i; cum[S] = n_tokens
    int64_t n_tokens;
    int64_t bin_size;
    bool has_modes;
    FILE* bin;
};

// Converts element i of raw (dtype code) to a token id, or fails naming the file and the stream position.
static inline int64_t megatron_token(const MegatronIndexed* ds, const uint8_t* raw, int64_t i, int64_t stream_pos, int vocab_size) {
    const uint8_t* p = raw + i * ds->elem_size;
    int64_t v;
    switch (ds->dtype_code) {
        case 1: v = *p; break;
        case 2: { int8_t x; memcpy(&x, p, 1); v = x; break; }
        case 3: { int16_t x; memcpy(&x, p, 2); v = x; break; }
        case 4: { int32_t x; memcpy(&x, p, 4); v = x; break; }
        case 5: { int64_t x; memcpy(&x, p, 8); v = x; break; }
        case 8: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
        case 6: case 7: {
            double x;
            if (ds->dtype_code == 6) memcpy(&x, p, 8);
            else { float y; memcpy(&y, p, 4); x = y; }
            if (!(x >= 0.0 && x < 2147483648.0) || x != std::floor(x))
                fail("%s: token %lld is %g, expected an integer id in [0, %d)", ds->bin_path.c_str(), (long long)stream_pos, x, vocab_size);
            v = (int64_t)x;
            break;
        }
        default: fail("%s: dtype code %d", ds->idx_path.c_str(), ds->dtype_code);
    }
    if (v < 0 || v >= vocab_size)
        fail("%s: token %lld has id %lld, expected an id in [0, vocab_size %d)", ds->bin_path.c_str(), (long long)stream_pos, (long long)v, vocab_size);
    return v;
}

// Reads n tokens of the stream starting at `start` into out (ids checked against vocab_size).
static inline void megatron_read_tokens(const MegatronIndexed* ds, int64_t start, int64_t n, int32_t* out, int vocab_size) {
    if (start < 0 || n < 0 || start + n > ds->n_tokens)
        fail("%s: tokens [%lld, %lld) are outside the stream of %lld tokens", ds->bin_path.c_str(), (long long)start, (long long)(start + n),
             (long long)ds->n_tokens);
    std::vector<uint8_t> buf;
    int64_t s = (int64_t)(std::upper_bound(ds->cum.begin(), ds->cum.end(), start) - ds->cum.begin()) - 1;
    int64_t pos = start, done = 0;
    while (done < n) {
        const int64_t off = pos - ds->cum[s];
        const int64_t m = std::min(n - done, (int64_t)ds->seq_lengths[s] - off);
        buf.resize((size_t)(m * ds->elem_size));
        if (fseeko(ds->bin, (off_t)(ds->seq_pointers[s] + off * ds->elem_size), SEEK_SET) != 0)
            fail("%s: cannot seek to sequence %lld (%s)", ds->bin_path.c_str(), (long long)s, strerror(errno));
        fread_exact(buf.data(), buf.size(), ds->bin, ds->bin_path, "tokens");
        for (int64_t i = 0; i < m; i++) out[done + i] = (int32_t)megatron_token(ds, buf.data(), i, pos + i, vocab_size);
        done += m;
        pos += m;
        s++;
    }
}

// Sequence i as token ids.
static inline std::vector<int32_t> megatron_read_sequence(const MegatronIndexed* ds, int64_t i, int vocab_size) {
    if (i < 0 || i >= (int64_t)ds->seq_lengths.size()) fail("%s: sequence %lld is not in [0, %zu)", ds->idx_path.c_str(), (long long)i, ds->seq_lengths.size());
    std::vector<int32_t> v((size_t)ds->seq_lengths[i]);
    megatron_read_tokens(ds, ds->cum[i], ds->seq_lengths[i], v.data(), vocab_size);
    return v;
}

static inline int64_t megatron_num_documents(const MegatronIndexed* ds) { return (int64_t)ds->doc_indices.size() - 1; }

static inline void megatron_open(MegatronIndexed* ds, const std::string& prefix, int vocab_size) {
    ds->prefix = prefix;
    ds->idx_path = prefix + ".idx";
    ds->bin_path = prefix + ".bin";
    ds->bin = nullptr;
    const std::string& ip = ds->idx_path;
    if (vocab_size <= 0) fail("%s: vocab_size must be > 0, got %d", prefix.c_str(), vocab_size);
    struct stat sb;
    if (stat(ip.c_str(), &sb) != 0) fail("%s: cannot open (%s)", ip.c_str(), strerror(errno));
    if (!S_ISREG(sb.st_mode)) fail("%s: not a regular file", ip.c_str());
    if (stat(ds->bin_path.c_str(), &sb) != 0) fail("%s: cannot open (%s)", ds->bin_path.c_str(), strerror(errno));
    if (!S_ISREG(sb.st_mode)) fail("%s: not a regular file", ds->bin_path.c_str());

    FILE* f = fopen_or_fail(ip, "rb");
    const int64_t size = (int64_t)file_size_or_fail(f, ip);
    const int64_t head = 9 + 8 + 1 + 8 + 8;
    if (size < head) fail("%s: file is %lld bytes, expected at least the %lld-byte header (truncated?)", ip.c_str(), (long long)size, (long long)head);
    char magic[9];
    fread_exact(magic, 9, f, ip, "magic");
    if (memcmp(magic, MEGATRON_IDX_MAGIC, 9) != 0) fail("%s: magic: expected \"MMIDIDX\\0\\0\" (a Megatron-LM .idx file)", ip.c_str());
    uint64_t version, s_count, d_count;
    uint8_t code;
    fread_exact(&version, 8, f, ip, "version");
    if (version != 1) fail("%s: version: expected 1, found %llu", ip.c_str(), (unsigned long long)version);
    fread_exact(&code, 1, f, ip, "dtype code");
    if (megatron_dtype_size(code) == 0) fail("%s: dtype code: expected 1..8 (uint8 int8 int16 int32 int64 float64 float32 uint16), found %d", ip.c_str(), code);
    ds->dtype_code = code;
    ds->elem_size = megatron_dtype_size(code);
    fread_exact(&s_count, 8, f, ip, "sequence count");
    fread_exact(&d_count, 8, f, ip, "document count");
    const uint64_t room = (uint64_t)(size - head);
    if (s_count > room / 12 || d_count > room / 8)
        fail("%s: sequence count %llu / document count %llu need more than the file's %lld bytes (truncated?)", ip.c_str(),
             (unsigned long long)s_count, (unsigned long long)d_count, (long long)size);
    const int64_t S = (int64_t)s_count, D = (int64_t)d_count;
    const int64_t expect = head + 12 * S + 8 * D;
    if (size == expect) ds->has_modes = false;
    else if (size == expect + S) ds->has_modes = true;
    else
        fail("%s: file length: %lld sequences and %lld document indices need %lld bytes (or %lld with sequence modes), found %lld (%s)", ip.c_str(),
             (long long)S, (long long)D, (long long)expect, (long long)(expect + S), (long long)size, size < expect ? "truncated" : "extra bytes");
    if (S == 0) fail("%s: sequence count: expected > 0, found 0", ip.c_str());
    if (D < 2) fail("%s: document count: expected at least 2 document indices (0 and %lld), found %lld", ip.c_str(), (long long)S, (long long)D);
    ds->seq_lengths.resize((size_t)S);
    ds->seq_pointers.resize((size_t)S);
    ds->doc_indices.resize((size_t)D);
    fread_exact(ds->seq_lengths.data(), (size_t)S * 4, f, ip, "sequence lengths");
    fread_exact(ds->seq_pointers.data(), (size_t)S * 8, f, ip, "sequence pointers");
    fread_exact(ds->doc_indices.data(), (size_t)D * 8, f, ip, "document indices");
    fclose_or_fail(f, ip);

    ds->bin_size = (int64_t)sb.st_size;
    ds->cum.resize((size_t)S + 1);
    ds->cum[0] = 0;
    for (int64_t i = 0; i < S; i++) {
        const int64_t len = ds->seq_lengths[i], ptr = ds->seq_pointers[i];
        if (len <= 0) fail("%s: sequence_lengths[%lld]: expected > 0, found %lld", ip.c_str(), (long long)i, (long long)len);
        if (ptr < 0 || ptr > ds->bin_size || len * ds->elem_size > ds->bin_size - ptr)
            fail("%s: sequence_pointers[%lld]: sequence at byte %lld of %lld %s tokens runs past the end of %s (%lld bytes)", ip.c_str(), (long long)i,
                 (long long)ptr, (long long)len, megatron_dtype_name(code), ds->bin_path.c_str(), (long long)ds->bin_size);
        // Megatron's writer puts the sequences back to back in file order; one that is misaligned
        // or starts inside the previous one would read tokens split across elements or twice
        if (ptr % ds->elem_size != 0)
            fail("%s: sequence_pointers[%lld]: byte %lld is not a multiple of the %s size %d (misaligned)", ip.c_str(), (long long)i,
                 (long long)ptr, megatron_dtype_name(code), ds->elem_size);
        if (i > 0) {
            const int64_t prev_end = ds->seq_pointers[i - 1] + (int64_t)ds->seq_lengths[i - 1] * ds->elem_size;
            if (ptr < prev_end)
                fail("%s: sequence_pointers[%lld]: byte %lld, expected at least %lld, the end of sequence %lld (sequences %s)", ip.c_str(),
                     (long long)i, (long long)ptr, (long long)prev_end, (long long)(i - 1),
                     ptr < ds->seq_pointers[i - 1] ? "out of file order" : "overlap");
        }
        ds->cum[i + 1] = ds->cum[i] + len;
    }
    ds->n_tokens = ds->cum[S];
    if (ds->doc_indices[0] != 0) fail("%s: document_indices[0]: expected 0, found %lld", ip.c_str(), (long long)ds->doc_indices[0]);
    for (int64_t j = 1; j < D; j++)
        if (ds->doc_indices[j] < ds->doc_indices[j - 1] || ds->doc_indices[j] > S)
            fail("%s: document_indices[%lld]: expected a sequence index in [%lld, %lld], found %lld", ip.c_str(), (long long)j,
                 (long long)ds->doc_indices[j - 1], (long long)S, (long long)ds->doc_indices[j]);
    if (ds->doc_indices[D - 1] != S)
        fail("%s: document_indices[%lld]: expected the sequence count %lld, found %lld", ip.c_str(), (long long)(D - 1), (long long)S,
             (long long)ds->doc_indices[D - 1]);

    ds->bin = fopen_or_fail(ds->bin_path, "rb");
    // every token, in chunks (a dataset may be far larger than we want to hold at once)
    const int64_t chunk = 1 << 20;
    std::vector<uint8_t> buf;
    for (int64_t i = 0; i < S; i++) {
        const int64_t len = ds->seq_lengths[i];
        if (fseeko(ds->bin, (off_t)ds->seq_pointers[i], SEEK_SET) != 0) fail("%s: cannot seek (%s)", ds->bin_path.c_str(), strerror(errno));
        for (int64_t o = 0; o < len; o += chunk) {
            const int64_t m = std::min(chunk, len - o);
            buf.resize((size_t)(m * ds->elem_size));
            fread_exact(buf.data(), buf.size(), ds->bin, ds->bin_path, "tokens");
            for (int64_t k = 0; k < m; k++) (void)megatron_token(ds, buf.data(), k, ds->cum[i] + o + k, vocab_size);
        }
    }
}

static inline void megatron_close(MegatronIndexed* ds) {
    if (ds->bin) fclose(ds->bin);  // read-only
    ds->bin = nullptr;
}

// ---------------------------------------------------------------------------
// blended sampler

struct MegatronBlend {
    std::vector<MegatronIndexed> ds;
    std::vector<double> weights;      // normalised, sum 1
    std::vector<int64_t> n_samples;   // per dataset: (n_tokens - 1) / T
    int B, T, process_rank, num_processes, shuffle, vocab_size;
    uint64_t seed;
    int64_t sample;                   // global samples consumed (all ranks)
    std::vector<int64_t> counts;      // global samples taken from each dataset so far
    std::vector<int64_t> perm_epoch;  // shuffle: the epoch perm[d] belongs to (-1: none)
    std::vector<std::vector<uint32_t>> perm;
    int32_t* inputs;                  // B*T
    int32_t* targets;                 // B*T
    std::vector<int32_t> buf;         // T+1
};

// Megatron's greedy choice for the next global sample (counts as they are now).
static inline int megatron_blend_choose(const std::vector<double>& w, const std::vector<int64_t>& counts, int64_t g) {
    const double gd = std::max((double)g, 1.0);
    int best = 0;
    double best_err = w[0] * gd - (double)counts[0];
    for (size_t d = 1; d < w.size(); d++) {
        const double e = w[d] * gd - (double)counts[d];
        if (e > best_err) { best_err = e; best = (int)d; }
    }
    return best;
}

// Parses "W1 P1 W2 P2 ..." or "P1 [P2 ...]" (whitespace-separated).
static inline void megatron_parse_blend(const std::string& spec, std::vector<std::string>* prefixes, std::vector<double>* weights) {
    std::vector<std::string> tok;
    size_t i = 0;
    while (i < spec.size()) {
        while (i < spec.size() && isspace((unsigned char)spec[i])) i++;
        size_t j = i;
        while (j < spec.size() && !isspace((unsigned char)spec[j])) j++;
        if (j > i) tok.push_back(spec.substr(i, j - i));
        i = j;
    }
    if (tok.empty()) fail("megatron data path: empty (expected \"PREFIX\" or \"W1 PREFIX1 W2 PREFIX2 ...\")");
    auto is_number = [](const std::string& s) {
        char* end = nullptr;
        errno = 0;
        strtod(s.c_str(), &end);
        return errno == 0 && end && *end == '\0';
    };
    prefixes->clear();
    weights->clear();
    bool any_number = false;
    for (const std::string& t : tok) any_number |= is_number(t);
    if (!any_number) { *prefixes = tok; return; }  // unweighted: weights from the sample counts
    if (tok.size() % 2 != 0) fail("megatron data path '%s': expected pairs of weight and prefix, found %zu words", spec.c_str(), tok.size());
    for (size_t k = 0; k < tok.size(); k += 2) {
        const double w = parse_float_or_fail(tok[k].c_str(), ("megatron data path '" + spec + "': weight").c_str());
        if (!(w > 0.0) || !std::isfinite(w)) fail("megatron data path '%s': weight '%s' must be > 0", spec.c_str(), tok[k].c_str());
        if (is_number(tok[k + 1])) fail("megatron data path '%s': expected a prefix after weight %s, found the number %s", spec.c_str(), tok[k].c_str(), tok[k + 1].c_str());
        weights->push_back(w);
        prefixes->push_back(tok[k + 1]);
    }
}

static inline void megatron_set_position(MegatronBlend* bl, int64_t sample) {
    if (sample < 0) fail("megatron data position: sample %lld must be >= 0", (long long)sample);
    std::fill(bl->counts.begin(), bl->counts.end(), 0);
    for (int64_t g = 0; g < sample; g++) bl->counts[megatron_blend_choose(bl->weights, bl->counts, g)]++;
    bl->sample = sample;
}

static inline int64_t megatron_get_position(const MegatronBlend* bl) { return bl->sample; }

static inline void megatron_blend_init(MegatronBlend* bl, const std::string& spec, int B, int T, int process_rank, int num_processes,
                                       int shuffle, uint64_t seed, int vocab_size) {
    if (B <= 0) fail("megatron data %s: batch size B must be > 0, got %d", spec.c_str(), B);
    if (T <= 0) fail("megatron data %s: sequence length T must be > 0, got %d", spec.c_str(), T);
    if (num_processes <= 0 || process_rank < 0 || process_rank >= num_processes)
        fail("megatron data %s: process rank %d is not in [0, %d)", spec.c_str(), process_rank, num_processes);
    if (vocab_size <= 0) fail("megatron data %s: vocab_size must be > 0, got %d", spec.c_str(), vocab_size);
    std::vector<std::string> prefixes;
    std::vector<double> w;
    megatron_parse_blend(spec, &prefixes, &w);
    bl->B = B; bl->T = T;
    bl->process_rank = process_rank; bl->num_processes = num_processes;
    bl->shuffle = shuffle ? 1 : 0;
    bl->seed = seed;
    bl->vocab_size = vocab_size;
    bl->ds.assign(prefixes.size(), MegatronIndexed());
    bl->n_samples.clear();
    for (size_t d = 0; d < prefixes.size(); d++) {
        megatron_open(&bl->ds[d], prefixes[d], vocab_size);
        const int64_t ns = (bl->ds[d].n_tokens - 1) / T;
        if (ns < 1)
            fail("%s: %lld tokens hold no sample of T+1 = %d tokens", bl->ds[d].bin_path.c_str(), (long long)bl->ds[d].n_tokens, T + 1);
        if (shuffle && ns > (int64_t)UINT32_MAX) fail("%s: %lld samples is more than the shuffle indexes (2^32)", bl->ds[d].bin_path.c_str(), (long long)ns);
        bl->n_samples.push_back(ns);
    }
    if (w.empty()) for (int64_t ns : bl->n_samples) w.push_back((double)ns);
    double sum = 0;
    for (double x : w) sum += x;
    bl->weights.clear();
    for (double x : w) bl->weights.push_back(x / sum);
    bl->counts.assign(bl->ds.size(), 0);
    bl->perm_epoch.assign(bl->ds.size(), -1);
    bl->perm.assign(bl->ds.size(), std::vector<uint32_t>());
    bl->inputs = (int32_t*)malloc((size_t)B * T * sizeof(int32_t));
    bl->targets = (int32_t*)malloc((size_t)B * T * sizeof(int32_t));
    if (!bl->inputs || !bl->targets) fail("megatron data %s: out of memory for B*T = %lld tokens", spec.c_str(), (long long)B * T);
    bl->buf.resize((size_t)T + 1);
    bl->sample = 0;
}

// Which sample of its dataset the c-th draw from dataset d is.
static inline int64_t megatron_dataset_sample(MegatronBlend* bl, int d, int64_t c) {
    const int64_t ns = bl->n_samples[d];
    const int64_t epoch = c / ns, k = c % ns;
    if (!bl->shuffle) return k;
    if (bl->perm_epoch[d] != epoch) {
        Rng r;
        rng_seed(&r, bl->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(d + 1)) ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1)));
        std::vector<uint32_t>& p = bl->perm[d];
        p.resize((size_t)ns);
        for (int64_t i = 0; i < ns; i++) p[i] = (uint32_t)i;
        rng_shuffle(&r, p.data(), p.size());
        bl->perm_epoch[d] = epoch;
    }
    return bl->perm[d][k];
}

// Fills inputs/targets with this rank's B samples of the next global batch.
// `sources` (optional, B entries) receives each row's (dataset, sample) pair.
static inline void megatron_next_batch(MegatronBlend* bl, std::vector<std::pair<int, int64_t>>* sources = nullptr) {
    const int T = bl->T, P = bl->num_processes;
    if (sources) sources->assign((size_t)bl->B, {-1, -1});
    for (int64_t j = 0; j < (int64_t)bl->B * P; j++) {
        const int64_t g = bl->sample + j;
        const int d = megatron_blend_choose(bl->weights, bl->counts, g);
        const int64_t c = bl->counts[d]++;
        if (j % P != bl->process_rank) continue;
        const int64_t b = j / P;
        const int64_t k = megatron_dataset_sample(bl, d, c);
        megatron_read_tokens(&bl->ds[d], k * T, T + 1, bl->buf.data(), bl->vocab_size);
        memcpy(bl->inputs + b * T, bl->buf.data(), (size_t)T * 4);
        memcpy(bl->targets + b * T, bl->buf.data() + 1, (size_t)T * 4);
        if (sources) (*sources)[(size_t)b] = {d, k};
    }
    bl->sample += (int64_t)bl->B * P;
}

static inline void megatron_blend_free(MegatronBlend* bl) {
    for (MegatronIndexed& d : bl->ds) megatron_close(&d);
    bl->ds.clear();
    free(bl->inputs);
    free(bl->targets);
    bl->inputs = bl->targets = nullptr;
}
