/*
Latent shards: (video latent, text features) pairs for the DiT trainer, their
writer and the data loader, in the style of llmc/data/dataloader.h.

File format (`*.lat`, all integers and floats little-endian)
------------------------------------------------------------
  [0, 1024)        header
  [1024, +8C)      per-channel normalization, only when header has_norm = 1:
                   float32 mean[C], then float32 std[C]
  then             index: sample_count entries of 64 bytes
  then             data: each sample's latent, text features and caption bytes,
                   anywhere after the index (the writer puts them back to back)

Header (1024 bytes; bytes 40..1023 are zero, reserved):
  off  type     field
  0    int32    magic = 20251205
  4    int32    version = 1
  8    int32    channels C             (latent channels: 24 for the MUG-V VAE, 3 for moving shapes)
  12   int32    caption_channels D     (text feature channels: 4096 for T5-XXL)
  16   int32    latent_dtype           (0 = float32, 1 = bf16)
  20   int32    text_dtype             (0 = float32, 1 = bf16)
  24   int32    has_norm               (1: the mean/std table follows the header)
  28   int32    reserved (0)
  32   int64    sample_count N         (> 0)

Index entry (64 bytes), one per sample:
  off  type     field
  0    int64    latent_offset          byte offset in the file of latent [C, T, H, W]
  8    int64    text_offset            byte offset of text features [text_len, D]
  16   int64    caption_offset         byte offset of the caption (UTF-8, no NUL)
  24   int32    caption_bytes          0 if the sample has no caption string
  28   int32    T                      latent frames  (> 0)
  32   int32    H                      latent height  (> 0)
  36   int32    W                      latent width   (> 0)
  40   int32    text_len               valid text tokens, in [1, max_text_len];
                                       padding tokens are never stored
  44   float32  fps                    of the clip (> 0); fed to the fps embedder
  48   int32    source                 0 = generated: latents already normalized;
                                       1 = real: raw VAE latents, normalized by the
                                       loader with the header's per-channel mean/std
  52   int32    clean_frames           leading frames given as clean conditioning
                                       (image-to-video), in [0, T-1]; 0 = none
  56   int64    reserved (0)

Decisions:
- Normalization statistics live in the shard header, not in a side file: a shard
  then cannot be separated from (or paired with the wrong) statistics. Raw latents
  are stored as they are (source = real) and the loader applies
  (z - mean_c) / std_c, so a batch always holds normalized latents whatever
  the source; a shard with any real sample must have has_norm = 1. All shards of
  one glob that carry statistics must carry the same ones (one VAE); the loader
  exposes them (norm_mean / norm_std) for the sampler to undo before decoding.
- clean_frames is in the data because some clips really come with fixed
  conditioning (an image followed by its continuation), and it costs 4 bytes; it
  is a count of leading frames, not an arbitrary mask, because the spec's
  image-to-video pins leading frames. The trainer may still apply its own random
  image-to-video policy when it is 0. At least one frame stays noisy (the loss
  divides by the number of noisy frames).
- Caption strings travel in the shard (for evaluation and for humans); the model
  only sees the text features.

Loader
------
latent_loader_init(glob, B, rank, P, shuffle, seed, C, D, max_text_len) checks
every shard matching the glob before training starts: magic, version, channels
and caption channels against the model's (<= 0 accepts the first shard's and
requires the others to agree), dtypes, that header + norm + index fit in the
file, every index entry's shapes, text length, fps, source, clean_frames, that
every tensor and caption lies inside the file after the index, and that no two
of them overlap. Any failure is one line naming the file, the sample, the field,
expected and found, then exit 1. Values are checked (finite) as they are read.

Samples are numbered globally in glob order (shard 0's samples, then shard 1's, ...).
Each epoch visits them in an order: the identity, or with shuffle=1 a
permutation drawn from the loader's RNG (seeded from `seed`, advanced once per
epoch, so every rank draws the same one). The shuffle is global, across shards:
a diffusion batch should mix clips from every shard, and samples are read one by
one with fseek+fread anyway. Position j of the order belongs to rank j % P; a
batch takes the next B*P positions and this rank keeps its B, so ranks read
disjoint samples and stay in step; the last N % (B*P) positions of an epoch are
skipped (with shuffle, a different tail each epoch).

LatentLoaderPosition {epoch, sample, rng_state} is all the stream depends on
besides the files and B: `sample` counts positions over all ranks, so a saved
position resumes the exact stream, also on a different number of processes.

latent_loader_read(indices) fills a batch with given samples (evaluation, in
order); latent_loader_next fills a LatentBatch (host memory, reused between calls):
per-sample shapes, fps, source, clean_frames, caption; latents in float32
(normalized), packed back to back with latent_offset[B+1] (in floats); text
features in float32 packed back to back with cu_seqlens-style text_offset[B+1]
(in tokens).
*/
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <glob.h>
#include <string>
#include <sys/types.h>
#include <unistd.h>
#include <vector>
#include "../core/utils.h"
#include "../core/rand.h"

#define LATENT_MAGIC 20251205
#define LATENT_VERSION 1
#define LATENT_HEADER_BYTES 1024
#define LATENT_INDEX_ENTRY_BYTES 64
#define LATENT_DTYPE_F32 0
#define LATENT_DTYPE_BF16 1
#define LATENT_SOURCE_GENERATED 0
#define LATENT_SOURCE_REAL 1
#define LATENT_MAX_DIM 65536          // T, H, W, C, D limits (sanity, not the model's)
#define LATENT_MAX_CAPTION_BYTES (1 << 20)

static inline int latent_dtype_bytes(int dtype) { return dtype == LATENT_DTYPE_BF16 ? 2 : 4; }
static inline const char* latent_dtype_name(int dtype) { return dtype == LATENT_DTYPE_BF16 ? "bf16" : "f32"; }

// bf16 <-> f32 on the host: round to nearest even, NaN stays NaN.
static inline uint16_t latent_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float latent_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// Little-endian field access into raw header/index bytes (x86 and ARM are little-endian).
static inline int32_t latent_rd32(const uint8_t* p) { int32_t v; memcpy(&v, p, 4); return v; }
static inline int64_t latent_rd64(const uint8_t* p) { int64_t v; memcpy(&v, p, 8); return v; }
static inline float latent_rdf(const uint8_t* p) { float v; memcpy(&v, p, 4); return v; }
static inline void latent_wr32(uint8_t* p, int32_t v) { memcpy(p, &v, 4); }
static inline void latent_wr64(uint8_t* p, int64_t v) { memcpy(p, &v, 8); }
static inline void latent_wrf(uint8_t* p, float v) { memcpy(p, &v, 4); }

// One sample's description (an index entry without the offsets).
struct LatentSampleDesc {
    int T = 0, H = 0, W = 0;
    int text_len = 0;
    float fps = 24.0f;
    int source = LATENT_SOURCE_GENERATED;
    int clean_frames = 0;
};

// ----------------------------------------------------------------------------
// Writer: latent_writer_open, latent_writer_add N times, latent_writer_close.
// Writes to path.tmp, then flush + fsync + rename, so readers never see half a shard.

struct LatentWriter {
    std::string path, tmp;
    FILE* f = nullptr;
    int C = 0, D = 0, latent_dtype = 0, text_dtype = 0, has_norm = 0;
    int64_t n_expected = 0, n = 0;
    int64_t end = 0;                 // next free byte
    std::vector<uint8_t> index;      // n_expected * 64
    std::vector<uint8_t> buf;        // conversion buffer
};

// mean/std: C floats each, or both null for a shard without statistics (then no
// sample may be real).
static inline void latent_writer_open(LatentWriter* w, const std::string& path, int C, int D, int latent_dtype, int text_dtype,
                                      int64_t n_samples, const float* mean, const float* std_) {
    const char* p = path.c_str();
    if (C <= 0 || C > LATENT_MAX_DIM) fail("latent writer %s: channels must be in [1, %d], got %d", p, LATENT_MAX_DIM, C);
    if (D <= 0 || D > LATENT_MAX_DIM) fail("latent writer %s: caption channels must be in [1, %d], got %d", p, LATENT_MAX_DIM, D);
    if (latent_dtype != LATENT_DTYPE_F32 && latent_dtype != LATENT_DTYPE_BF16) fail("latent writer %s: latent dtype must be 0 (f32) or 1 (bf16), got %d", p, latent_dtype);
    if (text_dtype != LATENT_DTYPE_F32 && text_dtype != LATENT_DTYPE_BF16) fail("latent writer %s: text dtype must be 0 (f32) or 1 (bf16), got %d", p, text_dtype);
    if (n_samples <= 0) fail("latent writer %s: sample count must be > 0, got %lld", p, (long long)n_samples);
    if ((mean == nullptr) != (std_ == nullptr)) fail("latent writer %s: give both the per-channel mean and std, or neither", p);
    w->path = path;
    w->tmp = path + ".tmp";
    w->C = C; w->D = D;
    w->latent_dtype = latent_dtype; w->text_dtype = text_dtype;
    w->has_norm = mean != nullptr;
    w->n_expected = n_samples;
    w->n = 0;
    uint8_t hdr[LATENT_HEADER_BYTES] = {0};
    latent_wr32(hdr + 0, LATENT_MAGIC);
    latent_wr32(hdr + 4, LATENT_VERSION);
    latent_wr32(hdr + 8, C);
    latent_wr32(hdr + 12, D);
    latent_wr32(hdr + 16, latent_dtype);
    latent_wr32(hdr + 20, text_dtype);
    latent_wr32(hdr + 24, w->has_norm);
    latent_wr64(hdr + 32, n_samples);
    make_parent_dirs(path);
    w->f = fopen_or_fail(w->tmp, "wb");
    fwrite_exact(hdr, sizeof(hdr), w->f, w->tmp);
    if (mean && std_) {
        for (int c = 0; c < C; c++) {
            if (!std::isfinite(mean[c])) fail("latent writer %s: channel %d mean is %g, expected a finite number", p, c, mean[c]);
            if (!std::isfinite(std_[c]) || !(std_[c] > 0.0f)) fail("latent writer %s: channel %d std is %g, expected > 0", p, c, std_[c]);
        }
        fwrite_exact(mean, (size_t)C * 4, w->f, w->tmp);
        fwrite_exact(std_, (size_t)C * 4, w->f, w->tmp);
    }
    w->index.assign((size_t)n_samples * LATENT_INDEX_ENTRY_BYTES, 0);
    fwrite_exact(w->index.data(), w->index.size(), w->f, w->tmp);  // placeholder, rewritten at close
    w->end = LATENT_HEADER_BYTES + (w->has_norm ? 8 * (int64_t)C : 0) + (int64_t)w->index.size();
}

static inline void latent_writer_put(LatentWriter* w, const float* x, int64_t n, int dtype, const char* what, int64_t sample) {
    for (int64_t i = 0; i < n; i++)
        if (!std::isfinite(x[i])) fail("latent writer %s: sample %lld %s value %lld is %g, expected a finite number", w->path.c_str(), (long long)sample, what, (long long)i, x[i]);
    if (dtype == LATENT_DTYPE_F32) {
        fwrite_exact(x, (size_t)n * 4, w->f, w->tmp);
    } else {
        w->buf.resize((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) { uint16_t h = latent_f32_to_bf16(x[i]); memcpy(&w->buf[2 * i], &h, 2); }
        fwrite_exact(w->buf.data(), (size_t)n * 2, w->f, w->tmp);
    }
    w->end += n * latent_dtype_bytes(dtype);
}

// latent: [C, T, H, W] float32; text: [text_len, D] float32 (valid tokens only).
static inline void latent_writer_add(LatentWriter* w, const LatentSampleDesc& s, const float* latent, const float* text, const std::string& caption) {
    const char* p = w->path.c_str();
    const long long k = (long long)w->n;
    if (w->n >= w->n_expected) fail("latent writer %s: sample %lld is one more than the %lld announced at open", p, k, (long long)w->n_expected);
    if (s.T <= 0 || s.T > LATENT_MAX_DIM || s.H <= 0 || s.H > LATENT_MAX_DIM || s.W <= 0 || s.W > LATENT_MAX_DIM)
        fail("latent writer %s: sample %lld shape T %d H %d W %d: expected each in [1, %d]", p, k, s.T, s.H, s.W, LATENT_MAX_DIM);
    if (s.text_len <= 0 || s.text_len > LATENT_MAX_DIM) fail("latent writer %s: sample %lld text length %d: expected in [1, %d]", p, k, s.text_len, LATENT_MAX_DIM);
    if (!std::isfinite(s.fps) || !(s.fps > 0.0f)) fail("latent writer %s: sample %lld fps %g: expected > 0", p, k, s.fps);
    if (s.source != LATENT_SOURCE_GENERATED && s.source != LATENT_SOURCE_REAL) fail("latent writer %s: sample %lld source %d: expected 0 (generated) or 1 (real)", p, k, s.source);
    if (s.source == LATENT_SOURCE_REAL && !w->has_norm) fail("latent writer %s: sample %lld is real (raw VAE latent) but the shard has no per-channel mean/std", p, k);
    if (s.clean_frames < 0 || s.clean_frames >= s.T) fail("latent writer %s: sample %lld clean frames %d: expected in [0, T-1 = %d]", p, k, s.clean_frames, s.T - 1);
    if (caption.size() > LATENT_MAX_CAPTION_BYTES) fail("latent writer %s: sample %lld caption is %zu bytes, expected <= %d", p, k, caption.size(), LATENT_MAX_CAPTION_BYTES);
    uint8_t* e = &w->index[(size_t)w->n * LATENT_INDEX_ENTRY_BYTES];
    const int64_t n_lat = (int64_t)w->C * s.T * s.H * s.W, n_txt = (int64_t)s.text_len * w->D;
    latent_wr64(e + 0, w->end);
    latent_writer_put(w, latent, n_lat, w->latent_dtype, "latent", k);
    latent_wr64(e + 8, w->end);
    latent_writer_put(w, text, n_txt, w->text_dtype, "text", k);
    latent_wr64(e + 16, w->end);
    latent_wr32(e + 24, (int32_t)caption.size());
    fwrite_exact(caption.data(), caption.size(), w->f, w->tmp);
    w->end += (int64_t)caption.size();
    latent_wr32(e + 28, s.T);
    latent_wr32(e + 32, s.H);
    latent_wr32(e + 36, s.W);
    latent_wr32(e + 40, s.text_len);
    latent_wrf(e + 44, s.fps);
    latent_wr32(e + 48, s.source);
    latent_wr32(e + 52, s.clean_frames);
    w->n++;
}

static inline void latent_writer_close(LatentWriter* w) {
    if (w->n != w->n_expected) fail("latent writer %s: %lld samples added, %lld announced at open", w->path.c_str(), (long long)w->n, (long long)w->n_expected);
    const off_t index_off = LATENT_HEADER_BYTES + (w->has_norm ? 8 * (off_t)w->C : 0);
    if (fseeko(w->f, index_off, SEEK_SET) != 0) fail("%s: cannot seek to the index (%s)", w->tmp.c_str(), strerror(errno));
    fwrite_exact(w->index.data(), w->index.size(), w->f, w->tmp);
    finish_atomic_write(w->f, w->tmp, w->path);
    w->f = nullptr;
    w->index.clear();
}

// ----------------------------------------------------------------------------
// Loader

struct LatentShard {
    std::string path;
    int latent_dtype, text_dtype, has_norm;
    std::vector<float> mean, std_;   // C each when has_norm
    int64_t n_samples;
    int64_t first;                   // global index of this shard's sample 0
};

struct LatentSampleInfo {            // one index entry, checked
    int64_t latent_offset, text_offset, caption_offset;
    int32_t shard, caption_bytes;
    int32_t T, H, W, text_len;
    float fps;
    int32_t source, clean_frames;
};

struct LatentLoaderPosition {
    int64_t epoch;
    int64_t sample;      // position of the next batch in the epoch's order (all ranks)
    uint64_t rng_state;  // loader RNG state at the start of the epoch
};

struct LatentBatch {
    int B = 0, C = 0, D = 0;
    std::vector<int> T, H, W, text_len, source, clean_frames;
    std::vector<float> fps;
    std::vector<int64_t> index;          // global sample index (glob order)
    std::vector<std::string> captions;
    std::vector<int64_t> latent_offset;  // B+1: sample b is latents[latent_offset[b], latent_offset[b+1]), [C,T,H,W]
    std::vector<int32_t> text_offset;    // B+1, in tokens: sample b is text[text_offset[b]*D, text_offset[b+1]*D), [len, D]
    std::vector<float> latents;          // float32, normalized
    std::vector<float> text;             // float32
};

struct LatentLoader {
    int B;
    int process_rank, num_processes;
    int shuffle;
    uint64_t seed;
    int C, D, max_text_len;
    int C_given, D_given;                   // C, D came from the caller (else from the first shard)
    std::vector<LatentShard> shards;
    std::vector<LatentSampleInfo> samples;  // all shards, glob order
    int has_norm;                           // some shard carries statistics
    std::vector<float> norm_mean, norm_std; // those statistics (C each)
    // where the next batch comes from
    int64_t epoch, sample;
    Rng rng;                     // advanced once per epoch
    uint64_t epoch_rng_state;    // rng.state before this epoch's draw
    std::vector<uint32_t> order; // this epoch (empty: identity)
    FILE* file;                  // open shard
    int file_shard;              // which (-1: none)
    std::vector<uint8_t> buf;    // raw bf16 values
};

// Checks one shard's header, statistics and index; appends its samples.
static inline void latent_check_shard(LatentLoader* ll, const std::string& path) {
    const char* p = path.c_str();
    require_regular_file(path);
    FILE* f = fopen_or_fail(path, "rb");
    const int64_t size = (int64_t)file_size_or_fail(f, path);
    uint8_t hdr[LATENT_HEADER_BYTES];
    if (size < LATENT_HEADER_BYTES) fail("%s: file is %lld bytes, expected at least the %d-byte header", p, (long long)size, LATENT_HEADER_BYTES);
    fread_exact(hdr, sizeof(hdr), f, path, "header");
    const int magic = latent_rd32(hdr), version = latent_rd32(hdr + 4);
    if (magic != LATENT_MAGIC) fail("%s: header magic: expected %d (latent shard), found %d", p, LATENT_MAGIC, magic);
    if (version != LATENT_VERSION) fail("%s: header version: expected %d, found %d", p, LATENT_VERSION, version);
    const int C = latent_rd32(hdr + 8), D = latent_rd32(hdr + 12);
    if (ll->C > 0 && C != ll->C)
        fail("%s: header channels: expected %d (%s), found %d", p, ll->C, ll->C_given ? "the model's in_channels" : "as in the first shard", C);
    if (ll->D > 0 && D != ll->D)
        fail("%s: header caption channels: expected %d (%s), found %d", p, ll->D, ll->D_given ? "the model's caption_channels" : "as in the first shard", D);
    if (C <= 0 || C > LATENT_MAX_DIM) fail("%s: header channels: expected in [1, %d], found %d", p, LATENT_MAX_DIM, C);
    if (D <= 0 || D > LATENT_MAX_DIM) fail("%s: header caption channels: expected in [1, %d], found %d", p, LATENT_MAX_DIM, D);
    ll->C = C; ll->D = D;  // the first shard sets them when the caller gave <= 0
    LatentShard s;
    s.path = path;
    s.latent_dtype = latent_rd32(hdr + 16);
    s.text_dtype = latent_rd32(hdr + 20);
    s.has_norm = latent_rd32(hdr + 24);
    s.n_samples = latent_rd64(hdr + 32);
    s.first = (int64_t)ll->samples.size();
    if (s.latent_dtype != LATENT_DTYPE_F32 && s.latent_dtype != LATENT_DTYPE_BF16) fail("%s: header latent dtype: expected 0 (f32) or 1 (bf16), found %d", p, s.latent_dtype);
    if (s.text_dtype != LATENT_DTYPE_F32 && s.text_dtype != LATENT_DTYPE_BF16) fail("%s: header text dtype: expected 0 (f32) or 1 (bf16), found %d", p, s.text_dtype);
    if (s.has_norm != 0 && s.has_norm != 1) fail("%s: header has_norm: expected 0 or 1, found %d", p, s.has_norm);
    if (s.n_samples <= 0 || s.n_samples > (int64_t)UINT32_MAX) fail("%s: header sample count: expected in [1, 2^32), found %lld", p, (long long)s.n_samples);
    const int64_t norm_bytes = s.has_norm ? 8 * (int64_t)C : 0;
    const int64_t data_begin = LATENT_HEADER_BYTES + norm_bytes + s.n_samples * LATENT_INDEX_ENTRY_BYTES;
    if (size < data_begin)
        fail("%s: truncated index: header sample count %lld needs %lld bytes of header%s and index, file has %lld", p, (long long)s.n_samples,
             (long long)data_begin, s.has_norm ? ", mean/std" : "", (long long)size);
    if (s.has_norm) {
        s.mean.resize(C); s.std_.resize(C);
        fread_exact(s.mean.data(), (size_t)C * 4, f, path, "channel means");
        fread_exact(s.std_.data(), (size_t)C * 4, f, path, "channel stds");
        for (int c = 0; c < C; c++) {
            if (!std::isfinite(s.mean[c])) fail("%s: channel %d mean: expected a finite number, found %g", p, c, s.mean[c]);
            if (!std::isfinite(s.std_[c]) || !(s.std_[c] > 0.0f)) fail("%s: channel %d std: expected > 0, found %g", p, c, s.std_[c]);
        }
        if (!ll->has_norm) { ll->has_norm = 1; ll->norm_mean = s.mean; ll->norm_std = s.std_; }
        for (int c = 0; c < C; c++)
            if (s.mean[c] != ll->norm_mean[c] || s.std_[c] != ll->norm_std[c])
                fail("%s: channel %d mean/std: expected %g/%g as in the first shard with statistics (one VAE per dataset), found %g/%g", p, c,
                     ll->norm_mean[c], ll->norm_std[c], s.mean[c], s.std_[c]);
    }
    std::vector<uint8_t> index((size_t)s.n_samples * LATENT_INDEX_ENTRY_BYTES);
    fread_exact(index.data(), index.size(), f, path, "index");
    fclose_or_fail(f, path);

    struct Range { int64_t begin, end; int64_t sample; const char* what; };
    std::vector<Range> ranges;
    const int ld = latent_dtype_bytes(s.latent_dtype), td = latent_dtype_bytes(s.text_dtype);
    for (int64_t k = 0; k < s.n_samples; k++) {
        const uint8_t* e = &index[(size_t)k * LATENT_INDEX_ENTRY_BYTES];
        const long long kk = (long long)k;
        LatentSampleInfo si;
        si.shard = (int32_t)ll->shards.size();
        si.latent_offset = latent_rd64(e + 0);
        si.text_offset = latent_rd64(e + 8);
        si.caption_offset = latent_rd64(e + 16);
        si.caption_bytes = latent_rd32(e + 24);
        si.T = latent_rd32(e + 28); si.H = latent_rd32(e + 32); si.W = latent_rd32(e + 36);
        si.text_len = latent_rd32(e + 40);
        si.fps = latent_rdf(e + 44);
        si.source = latent_rd32(e + 48);
        si.clean_frames = latent_rd32(e + 52);
        if (si.T <= 0 || si.T > LATENT_MAX_DIM) fail("%s: sample %lld frames T: expected in [1, %d], found %d", p, kk, LATENT_MAX_DIM, si.T);
        if (si.H <= 0 || si.H > LATENT_MAX_DIM) fail("%s: sample %lld height H: expected in [1, %d], found %d", p, kk, LATENT_MAX_DIM, si.H);
        if (si.W <= 0 || si.W > LATENT_MAX_DIM) fail("%s: sample %lld width W: expected in [1, %d], found %d", p, kk, LATENT_MAX_DIM, si.W);
        if (si.text_len < 1 || si.text_len > ll->max_text_len)
            fail("%s: sample %lld text length: expected in [1, %d] (the model's max text length, flag --max-text-len), found %d", p, kk, ll->max_text_len, si.text_len);
        if (!std::isfinite(si.fps) || !(si.fps > 0.0f)) fail("%s: sample %lld fps: expected > 0, found %g", p, kk, si.fps);
        if (si.source != LATENT_SOURCE_GENERATED && si.source != LATENT_SOURCE_REAL)
            fail("%s: sample %lld source: expected 0 (generated) or 1 (real), found %d", p, kk, si.source);
        if (si.source == LATENT_SOURCE_REAL && !s.has_norm)
            fail("%s: sample %lld source is real (raw VAE latent): expected header has_norm 1 (per-channel mean/std), found 0", p, kk);
        if (si.clean_frames < 0 || si.clean_frames >= si.T)
            fail("%s: sample %lld clean frames: expected in [0, T-1 = %d], found %d", p, kk, si.T - 1, si.clean_frames);
        if (si.caption_bytes < 0 || si.caption_bytes > LATENT_MAX_CAPTION_BYTES)
            fail("%s: sample %lld caption bytes: expected in [0, %d], found %d", p, kk, LATENT_MAX_CAPTION_BYTES, si.caption_bytes);
        // sizes without int64 overflow: C*T*H < 2^48 (each <= 2^16), and a latent larger than the file fails
        // before the last factor; an offset is checked to be inside the file before its size is added
        const int64_t lat_cth = (int64_t)C * si.T * si.H;
        if (lat_cth > size / ((int64_t)si.W * ld))
            fail("%s: sample %lld latent: C %d x T %d x H %d x W %d %s values: expected at most the file's %lld bytes", p, kk, C, si.T, si.H,
                 si.W, latent_dtype_name(s.latent_dtype), (long long)size);
        const Range rs[3] = {{si.latent_offset, lat_cth * si.W * ld, k, "latent"},  // .end holds the size until checked
                             {si.text_offset, (int64_t)si.text_len * D * td, k, "text"},
                             {si.caption_offset, si.caption_bytes, k, "caption"}};
        for (Range r : rs) {
            if (r.end == 0) continue;  // an empty caption has no bytes to place
            if (r.begin < data_begin || r.begin > size)
                fail("%s: sample %lld %s offset: expected in [%lld, %lld] (after the index, inside the file), found %lld", p, kk, r.what,
                     (long long)data_begin, (long long)size, (long long)r.begin);
            r.end += r.begin;
            if (r.end > size)
                fail("%s: sample %lld %s: bytes [%lld, %lld) expected inside the file of %lld bytes (truncated?)", p, kk, r.what,
                     (long long)r.begin, (long long)r.end, (long long)size);
            ranges.push_back(r);
        }
        ll->samples.push_back(si);
    }
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < ranges.size(); i++)
        if (ranges[i].begin < ranges[i - 1].end)
            fail("%s: sample %lld %s: bytes [%lld, %lld) expected not to overlap sample %lld %s, found overlapping [%lld, %lld)", p,
                 (long long)ranges[i].sample, ranges[i].what, (long long)ranges[i].begin, (long long)ranges[i].end,
                 (long long)ranges[i - 1].sample, ranges[i - 1].what, (long long)ranges[i - 1].begin, (long long)ranges[i - 1].end);
    ll->shards.push_back(s);
}

// Starts epoch ll->epoch with ll->rng as it is now.
static inline void latent_loader_start_epoch(LatentLoader* ll) {
    ll->epoch_rng_state = ll->rng.state;
    ll->sample = 0;
    ll->order.clear();
    if (ll->shuffle) {
        ll->order.resize(ll->samples.size());
        for (size_t i = 0; i < ll->order.size(); i++) ll->order[i] = (uint32_t)i;
        rng_shuffle(&ll->rng, ll->order.data(), ll->order.size());
    }
}

// Moves to the next epoch when the rest of this one does not fill a batch for all ranks.
static inline void latent_loader_settle(LatentLoader* ll) {
    const int64_t per_batch = (int64_t)ll->B * ll->num_processes;
    if (ll->sample + per_batch > (int64_t)ll->samples.size()) {
        ll->epoch++;
        latent_loader_start_epoch(ll);
    }
}

static inline void latent_loader_reset(LatentLoader* ll) {
    ll->epoch = 0;
    rng_seed(&ll->rng, ll->seed);
    latent_loader_start_epoch(ll);
}

// expected_channels / expected_caption_channels <= 0: take the first shard's.
static inline void latent_loader_init(LatentLoader* ll, const std::string& glob_pattern, int batch_size, int process_rank, int num_processes,
                                      int shuffle, uint64_t seed, int expected_channels, int expected_caption_channels, int max_text_len) {
    const char* gp = glob_pattern.c_str();
    if (batch_size <= 0) fail("latent loader %s: batch size must be > 0, got %d", gp, batch_size);
    if (num_processes <= 0 || process_rank < 0 || process_rank >= num_processes)
        fail("latent loader %s: process rank %d is not in [0, %d)", gp, process_rank, num_processes);
    if (max_text_len <= 0) fail("latent loader %s: max text length must be > 0, got %d", gp, max_text_len);
    ll->B = batch_size;
    ll->process_rank = process_rank; ll->num_processes = num_processes;
    ll->shuffle = shuffle ? 1 : 0;
    ll->seed = seed;
    ll->C = expected_channels > 0 ? expected_channels : 0;
    ll->D = expected_caption_channels > 0 ? expected_caption_channels : 0;
    ll->C_given = ll->C > 0;
    ll->D_given = ll->D > 0;
    ll->max_text_len = max_text_len;
    ll->has_norm = 0;
    ll->norm_mean.clear(); ll->norm_std.clear();
    ll->shards.clear(); ll->samples.clear();
    ll->file = nullptr;
    ll->file_shard = -1;

    glob_t g;
    const int rc = glob(gp, 0, nullptr, &g);  // sorted by default
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
        globfree(&g);
        if (glob_pattern.find_first_of("*?[") == std::string::npos) fail("%s: data file does not exist", gp);
        fail("%s: no file matches this data pattern", gp);
    }
    if (rc != 0) { globfree(&g); fail("%s: glob failed (code %d)", gp, rc); }
    std::vector<std::string> paths(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    for (const std::string& p : paths) latent_check_shard(ll, p);
    if (ll->samples.size() > (size_t)UINT32_MAX) fail("latent loader %s: %zu samples is more than this loader indexes (2^32)", gp, ll->samples.size());
    const int64_t per_batch = (int64_t)batch_size * num_processes;
    if ((int64_t)ll->samples.size() < per_batch)
        fail("%s: %zu samples in %zu shard(s), fewer than one batch of %d x %d processes", gp, ll->samples.size(), ll->shards.size(),
             batch_size, num_processes);
    latent_loader_reset(ll);
}

static inline int64_t latent_loader_num_samples(const LatentLoader* ll) { return (int64_t)ll->samples.size(); }

// Batches per epoch (the same on every rank).
static inline long long latent_loader_num_batches(const LatentLoader* ll) {
    return (long long)(ll->samples.size() / ((size_t)ll->B * ll->num_processes));
}

// Reads n values of a dtype at the file's position into dst as float32, checking each is finite.
static inline void latent_read_values(LatentLoader* ll, float* dst, int64_t n, int dtype, const LatentShard& s, int64_t k, const char* what) {
    const std::string& path = s.path;
    if (dtype == LATENT_DTYPE_F32) {
        fread_exact(dst, (size_t)n * 4, ll->file, path, what);
    } else {
        ll->buf.resize((size_t)n * 2);
        fread_exact(ll->buf.data(), (size_t)n * 2, ll->file, path, what);
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, &ll->buf[2 * i], 2); dst[i] = latent_bf16_to_f32(h); }
    }
    for (int64_t i = 0; i < n; i++)
        if (!std::isfinite(dst[i])) fail("%s: sample %lld %s value %lld: expected a finite number, found %g", path.c_str(), (long long)k, what, (long long)i, dst[i]);
}

static inline void latent_seek(LatentLoader* ll, const LatentShard& s, int64_t off, int64_t k, const char* what) {
    if (fseeko(ll->file, (off_t)off, SEEK_SET) != 0) fail("%s: sample %lld: cannot seek to the %s (%s)", s.path.c_str(), (long long)k, what, strerror(errno));
}

// Fills `batch` with the samples of the given global indices, in that order.
static inline void latent_loader_read(LatentLoader* ll, const int64_t* indices, int n, LatentBatch* batch) {
    LatentBatch& b = *batch;
    b.B = n; b.C = ll->C; b.D = ll->D;
    b.T.resize(n); b.H.resize(n); b.W.resize(n); b.text_len.resize(n); b.source.resize(n); b.clean_frames.resize(n);
    b.fps.resize(n); b.index.resize(n); b.captions.resize(n);
    b.latent_offset.resize(n + 1); b.text_offset.resize(n + 1);
    b.latent_offset[0] = 0; b.text_offset[0] = 0;
    for (int i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= (int64_t)ll->samples.size())
            fail("latent loader: sample index %lld is not in [0, %zu)", (long long)indices[i], ll->samples.size());
        const LatentSampleInfo& si = ll->samples[indices[i]];
        b.latent_offset[i + 1] = b.latent_offset[i] + (int64_t)ll->C * si.T * si.H * si.W;
        b.text_offset[i + 1] = b.text_offset[i] + si.text_len;
    }
    b.latents.resize((size_t)b.latent_offset[n]);
    b.text.resize((size_t)b.text_offset[n] * ll->D);
    for (int i = 0; i < n; i++) {
        const LatentSampleInfo& si = ll->samples[indices[i]];
        const LatentShard& s = ll->shards[si.shard];
        const int64_t k = indices[i] - s.first;  // index inside the shard, for messages
        if (ll->file_shard != si.shard) {
            if (ll->file) fclose(ll->file);  // read-only: a failed close loses nothing
            ll->file = fopen_or_fail(s.path, "rb");
            ll->file_shard = si.shard;
        }
        b.T[i] = si.T; b.H[i] = si.H; b.W[i] = si.W;
        b.text_len[i] = si.text_len; b.source[i] = si.source; b.clean_frames[i] = si.clean_frames;
        b.fps[i] = si.fps;
        b.index[i] = indices[i];
        float* lat = b.latents.data() + b.latent_offset[i];
        latent_seek(ll, s, si.latent_offset, k, "latent");
        latent_read_values(ll, lat, b.latent_offset[i + 1] - b.latent_offset[i], s.latent_dtype, s, k, "latent");
        if (si.source == LATENT_SOURCE_REAL) {
            const int64_t plane = (int64_t)si.T * si.H * si.W;
            for (int c = 0; c < ll->C; c++) {
                const float m = s.mean[c], inv = 1.0f / s.std_[c];
                float* x = lat + c * plane;
                for (int64_t j = 0; j < plane; j++) x[j] = (x[j] - m) * inv;
            }
        }
        latent_seek(ll, s, si.text_offset, k, "text");
        latent_read_values(ll, b.text.data() + (size_t)b.text_offset[i] * ll->D, (int64_t)si.text_len * ll->D, s.text_dtype, s, k, "text");
        b.captions[i].resize((size_t)si.caption_bytes);
        if (si.caption_bytes > 0) {
            latent_seek(ll, s, si.caption_offset, k, "caption");
            fread_exact(&b.captions[i][0], (size_t)si.caption_bytes, ll->file, s.path, "caption");
        }
    }
}

// This rank's next B samples.
static inline void latent_loader_next(LatentLoader* ll, LatentBatch* batch) {
    std::vector<int64_t> idx((size_t)ll->B);
    for (int b = 0; b < ll->B; b++) {
        const int64_t j = ll->sample + (int64_t)b * ll->num_processes + ll->process_rank;
        idx[b] = ll->order.empty() ? j : (int64_t)ll->order[j];
    }
    latent_loader_read(ll, idx.data(), ll->B, batch);
    ll->sample += (int64_t)ll->B * ll->num_processes;
    latent_loader_settle(ll);
}

static inline LatentLoaderPosition latent_loader_get_position(const LatentLoader* ll) {
    LatentLoaderPosition p;
    p.epoch = ll->epoch;
    p.sample = ll->sample;
    p.rng_state = ll->epoch_rng_state;
    return p;
}

// Resumes the stream at a position from latent_loader_get_position (of this or
// another run over the same files, possibly with another number of processes).
static inline void latent_loader_set_position(LatentLoader* ll, const LatentLoaderPosition& p) {
    const int64_t n = (int64_t)ll->samples.size();
    if (p.epoch < 0) fail("latent loader position: epoch must be >= 0, found %lld", (long long)p.epoch);
    if (p.sample < 0 || p.sample > n) fail("latent loader position: sample %lld is not in [0, %lld] (different data files?)", (long long)p.sample, (long long)n);
    if (p.rng_state == 0) fail("latent loader position: rng_state must be non-zero");
    ll->epoch = p.epoch;
    ll->rng.state = p.rng_state;
    latent_loader_start_epoch(ll);
    ll->sample = p.sample;
    latent_loader_settle(ll);
}

static inline void latent_loader_free(LatentLoader* ll) {
    if (ll->file) fclose(ll->file);  // read-only: nothing to lose
    ll->file = nullptr;
    ll->file_shard = -1;
    ll->shards.clear();
    ll->samples.clear();
    ll->order.clear();
    ll->buf.clear();
}
