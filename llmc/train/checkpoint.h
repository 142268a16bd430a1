/*
Checkpoints: the project's own raw binary format (docs/formats.md),
written and read by the trainers (train_gpt.cu, train_dit.cu). Host-side
only, no CUDA: a trainer hands in callbacks that copy its device buffers to a
host chunk (CkptSource) or from one (CkptSink), so that a checkpoint of any
size streams through a fixed 16 MiB buffer.

A checkpoint is a directory DIR/step_XXXXXXXX (the optimizer steps done, at
least 8 digits) holding two files, plus one marker for the whole DIR:
  model.bin   the weights and the config: enough alone to sample or fine-tune
  state.bin   the rest of a training run, for a bit-identical resume
  DIR/latest  one line of text naming the newest complete checkpoint ("step_00000100\n")

Both files: little-endian, a header of 256 int32 (1024 bytes), then the
payload. 64-bit fields take two consecutive ints (low word first). Checksums
are XXH64 (seed 0; the standard xxHash 64-bit, so `xxhsum -H1` or python's
xxhash can check a payload): the header checksum covers the 1024 header bytes
with its own two ints set to 0; the payload checksum covers every byte after
the header.

model.bin header (int32 index: field)
  0      magic 20251210
  1      version 1
  2      model kind: 1 gpt, 2 dit
  3      dtype of the stored parameters: 0 float32, 1 bfloat16 (round to nearest even)
  4      n_config: config fields at [16, 16 + n_config), at most 240
  5      n_tensors: parameter tensors in the layout (checked against the model)
  6-7    n_params (int64): parameters in the payload
  8-9    header checksum (uint64)
  10-11  payload checksum (uint64)
  12-15  0
  16-    the model kind's config fields in their fixed order (below); a float
         field is stored as the bits of its IEEE float32
  payload: the n_params parameters in dtype: every tensor of the kind's layout,
  back to back in layout order. File length = 1024 + n_params * (4 or 2).

state.bin header
  0      magic 20251211
  1      version 1
  2      model kind (as in model.bin)
  3      has_master: 1 if fp32 master weights are in the payload. The trainers
         write model.bin in float32, which IS the master copy, so they write 0;
         a bfloat16 model.bin needs 1 for an exact resume.
  4-5    n_params (int64)
  6-7    model checksum: the payload checksum of the model.bin this state belongs to
  8-9    header checksum, 10-11 payload checksum (as in model.bin)
  12-13  step (int64): optimizer steps done = the LR schedule position; the
         training loop resumes at this step
  14-15  adam_step (int64): AdamW updates applied (steps minus skipped non-finite ones)
  16     bad_steps: consecutive non-finite steps at the save
  17     gpt: seq_len T (the data-loader position counts samples of T+1 tokens);
         dit: batch_size B (samples per batch on each GPU)
  18-19  gpt: total_batch_tokens (int64), tokens per optimizer step; dit:
         total_batch_samples, samples per optimizer step (B x GPUs: train_dit has
         no gradient accumulation)
  20     sched_steps: the total steps (--steps) the LR schedule was built for
  21     has_loader: 1 if 22-29 hold a data-loader position (llmc/data/dataloader.h;
         dit: llmc/data/latent_data.h; 0 for runs on random/synthetic data)
  22-23  loader epoch, 24-25 gpt: loader shard, 26-27 loader sample (int64 each)
  28-29  loader rng_state (uint64)
         dit (LatentLoaderPosition): 22-23 epoch, 24-25 loader samples: the number
         of samples in the training data (a resume on data with another count fails), 26-27 sample
         (where the next batch starts in the epoch's order), 28-29 the loader
         RNG state at the start of the epoch (it draws the epoch's shuffle)
  30     n_rng: RNG states at [32, 32 + 2*n_rng), at most 8 (uint64 each, llmc/core/rand.h);
         gpt: [0] the sampling RNG; dit: [0] t_rng (the timesteps t), [1] aug_rng
         (caption dropout and image-to-video draws); the noise needs none (it is
         seeded from the step)
  31     n_extra: extra float32 arrays of n_params after the moments (dit: 1, the
         EMA weights, with --ema-decay; else 0)
  32-    the RNG states, then 0
  payload (float32): AdamW first moments m [n_params], second moments v
  [n_params], the master weights [n_params] if has_master, then the n_extra
  arrays. File length = 1024 + n_params * 4 * (2 + has_master + n_extra).

Model kinds. gpt (1): config fields, in this order (19):
  vocab_size, padded_vocab_size, max_seq_len, n_layer, n_head, n_kv_head,
  d_model, head_dim, ffn_hidden, rope_theta (f), rope_scaling, rope_factor (f),
  rope_low_freq_factor (f), rope_high_freq_factor (f), rope_original_ctx,
  norm_eps (f), tie_embeddings, qk_norm, qkv_bias
and tensors in gpt_param_layout order (llmc/model/gpt_config.h; the fields:
llmc/train/checkpoint_gpt.h). dit (2): config
fields, in this order (19; every field of DiTConfig, llmc/model/dit_config.h):
  d_model, n_layer, n_head, head_dim, mlp_ratio (f), ffn_hidden, in_channels,
  out_channels, caption_channels, patch_t, patch_h, patch_w, max_text_len,
  norm_eps (f), rope_theta (f), rope_max_t, rope_max_hw, freq_dim,
  freq_max_period (f)
and tensors in dit_param_layout order (llmc/model/dit_config.h; the fields:
llmc/train/checkpoint_dit.h). head_dim and
ffn_hidden are stored as derived (never 0).

Writing (ckpt_save) is atomic at every instant:
  1. DIR/step_N/model.bin.tmp and state.bin.tmp are written, flushed, fsync'ed
  2. both are renamed to model.bin and state.bin, and DIR/step_N is fsync'ed
  3. DIR/latest.tmp ("step_N\n") is written, fsync'ed, renamed over DIR/latest, DIR fsync'ed
  4. only then old checkpoints are deleted: of the complete checkpoints up to
     the new one, the newest keep_last are kept (0: all), and so is every one
     whose step is a multiple of keep_every (0: none); leftovers of failed
     writes older than the new one go too. Newer step directories (another
     branch of the run) are never touched.
A crash at any instant leaves DIR/latest naming a complete checkpoint. A write
error (a full disk: ENOSPC, EFBIG, EIO) removes the .tmp files and the new
directory, leaves DIR/latest and the previous checkpoint untouched, and comes
back as one line naming the file and the error.
The trainers run ckpt_save on a background thread from a host copy of their
state (llmc/train/checkpoint_async.h): the same steps in the same order, so the
same holds for a kill -9 at any moment of a background save. A checkpoint
found corrupt when a run resumed (CkptWrite::corrupt_steps) is neither deleted
nor counted among the kept ones; a save of its step first renames its directory
to step_XXXXXXXX.corrupt, which no listing takes for a checkpoint.

Reading validates, in this order, each failure one line naming the file, the
field and the expected value: the file is a regular file at least a header
long; magic (and says when a model.bin and state.bin are swapped); version;
header checksum; field ranges (kind, dtype, counts); the file length against
n_params; the model kind and every config field against the model being built
("config n_layer is 4, the model has 6"); the state's model checksum against
model.bin's (files of two different checkpoints); then, while streaming, the
payload checksum.

Resuming (ckpt_choose_resume, `--resume 1`): the checkpoint DIR/latest names
is verified whole first (ckpt_verify: both headers, the state's link to its
model.bin, both payload checksums); if it fails, the newest older complete
checkpoint that verifies is taken, and one warning line names what failed.
Nothing is deleted or changed there.
*/
#pragma once
#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>
#include "../core/utils.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.h reads and writes little-endian files on a little-endian host only"
#endif

#define CKPT_MODEL_MAGIC 20251210
#define CKPT_STATE_MAGIC 20251211
#define CKPT_VERSION 1
#define CKPT_HEADER_INTS 256
#define CKPT_HEADER_BYTES 1024
#define CKPT_CONFIG_AT 16
#define CKPT_MAX_CONFIG 240
#define CKPT_RNG_AT 32
#define CKPT_MAX_RNG 8
#define CKPT_MAX_EXTRA 16
#define CKPT_CHUNK ((size_t)1 << 22)  // floats per streamed chunk (16 MiB)

enum { CKPT_KIND_GPT = 1, CKPT_KIND_DIT = 2 };
enum { CKPT_F32 = 0, CKPT_BF16 = 1 };

static inline const char* ckpt_kind_name(int k) { return k == CKPT_KIND_GPT ? "gpt" : k == CKPT_KIND_DIT ? "dit" : "unknown"; }

// ----------------------------------------------------------------------------
// XXH64 (seed 0), streaming

struct Xxh64 {
    uint64_t v[4];
    uint64_t total;
    uint8_t buf[32];
    size_t nbuf;
};
static const uint64_t XXH_P1 = 0x9E3779B185EBCA87ULL, XXH_P2 = 0xC2B2AE3D27D4EB4FULL, XXH_P3 = 0x165667B19E3779F9ULL;
static const uint64_t XXH_P4 = 0x85EBCA77C2B2AE63ULL, XXH_P5 = 0x27D4EB2F165667C5ULL;
static inline uint64_t xxh_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xxh_round(uint64_t acc, uint64_t in) { return xxh_rotl(acc + in * XXH_P2, 31) * XXH_P1; }
static inline uint64_t xxh_merge(uint64_t acc, uint64_t val) { return (acc ^ xxh_round(0, val)) * XXH_P1 + XXH_P4; }
static inline uint64_t xxh_read64(const uint8_t* p) { uint64_t x; memcpy(&x, p, 8); return x; }
static inline uint32_t xxh_read32(const uint8_t* p) { uint32_t x; memcpy(&x, p, 4); return x; }

static inline void xxh64_init(Xxh64* s) {
    s->v[0] = XXH_P1 + XXH_P2;
    s->v[1] = XXH_P2;
    s->v[2] = 0;
    s->v[3] = 0 - XXH_P1;
    s->total = 0;
    s->nbuf = 0;
}

static inline void xxh64_update(Xxh64* s, const void* data, size_t n) {
    const uint8_t* p = (const uint8_t*)data;
    s->total += n;
    if (s->nbuf + n < 32) { memcpy(s->buf + s->nbuf, p, n); s->nbuf += n; return; }
    if (s->nbuf) {
        const size_t k = 32 - s->nbuf;
        memcpy(s->buf + s->nbuf, p, k);
        p += k; n -= k;
        for (int i = 0; i < 4; i++) s->v[i] = xxh_round(s->v[i], xxh_read64(s->buf + 8 * i));
        s->nbuf = 0;
    }
    uint64_t v0 = s->v[0], v1 = s->v[1], v2 = s->v[2], v3 = s->v[3];
    for (; n >= 32; p += 32, n -= 32) {
        v0 = xxh_round(v0, xxh_read64(p));
        v1 = xxh_round(v1, xxh_read64(p + 8));
        v2 = xxh_round(v2, xxh_read64(p + 16));
        v3 = xxh_round(v3, xxh_read64(p + 24));
    }
    s->v[0] = v0; s->v[1] = v1; s->v[2] = v2; s->v[3] = v3;
    if (n) { memcpy(s->buf, p, n); s->nbuf = n; }
}

static inline uint64_t xxh64_digest(const Xxh64* s) {
    uint64_t h;
    if (s->total >= 32) {
        h = xxh_rotl(s->v[0], 1) + xxh_rotl(s->v[1], 7) + xxh_rotl(s->v[2], 12) + xxh_rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = xxh_merge(h, s->v[i]);
    } else {
        h = XXH_P5;  // seed 0
    }
    h += s->total;
    const uint8_t* p = s->buf;
    size_t n = s->nbuf;
    for (; n >= 8; p += 8, n -= 8) h = xxh_rotl(h ^ xxh_round(0, xxh_read64(p)), 27) * XXH_P1 + XXH_P4;
    if (n >= 4) { h = xxh_rotl(h ^ ((uint64_t)xxh_read32(p) * XXH_P1), 23) * XXH_P2 + XXH_P3; p += 4; n -= 4; }
    for (; n > 0; p++, n--) h = xxh_rotl(h ^ (*p * XXH_P5), 11) * XXH_P1;
    h ^= h >> 33; h *= XXH_P2; h ^= h >> 29; h *= XXH_P3; h ^= h >> 32;
    return h;
}

static inline uint64_t xxh64(const void* data, size_t n) {
    Xxh64 s;
    xxh64_init(&s);
    xxh64_update(&s, data, n);
    return xxh64_digest(&s);
}

// ----------------------------------------------------------------------------
// small helpers

// float32 -> bfloat16 with round to nearest even (what CUDA's __float2bfloat16 does); NaN stays NaN
static inline uint16_t ckpt_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float ckpt_bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline void ckpt_put64(int32_t* h, int i, uint64_t v) { memcpy(&h[i], &v, 8); }
static inline uint64_t ckpt_get64(const int32_t* h, int i) { uint64_t v; memcpy(&v, &h[i], 8); return v; }

// Sets *err to the formatted message (one line) and returns false.
__attribute__((format(printf, 2, 3))) static inline bool ckpt_error(std::string* err, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (err) *err = buf;
    return false;
}

static inline std::string ckpt_step_name(int64_t step) {
    char b[40];
    snprintf(b, sizeof b, "step_%08lld", (long long)step);
    return b;
}

// "step_00000100" -> 100; -1 for anything else (only the canonical spelling counts)
static inline int64_t ckpt_parse_step_name(const std::string& name) {
    if (name.size() < 13 || name.size() > 23 || name.compare(0, 5, "step_") != 0) return -1;
    int64_t s = 0;
    for (size_t i = 5; i < name.size(); i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        s = s * 10 + (name[i] - '0');
    }
    return ckpt_step_name(s) == name ? s : -1;
}

static inline bool ckpt_is_dir(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode); }
static inline bool ckpt_is_file(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode); }

static inline bool ckpt_fsync_dir(const std::string& dir, std::string* err) {
    const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ckpt_error(err, "%s: cannot open directory to fsync (%s)", dir.c_str(), strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {  // EINVAL: the file system cannot sync directories
        const int e = errno;
        close(fd);
        return ckpt_error(err, "%s: fsync of the directory failed (%s)", dir.c_str(), strerror(e));
    }
    close(fd);
    return true;
}

static inline bool ckpt_mkdirs(const std::string& dir, std::string* err) {
    for (size_t i = 1; i <= dir.size(); i++) {
        if (i == dir.size() || dir[i] == '/') {
            const std::string d = dir.substr(0, i);
            if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return ckpt_error(err, "%s: cannot create directory (%s)", d.c_str(), strerror(errno));
        }
    }
    if (!ckpt_is_dir(dir)) return ckpt_error(err, "%s: exists and is not a directory", dir.c_str());
    return true;
}

static inline bool ckpt_write_all(int fd, const void* p, size_t n) {
    const char* c = (const char*)p;
    while (n > 0) {
        const ssize_t w = write(fd, c, n);
        if (w < 0) { if (errno == EINTR) continue; return false; }
        if (w == 0) { errno = EIO; return false; }
        c += w; n -= (size_t)w;
    }
    return true;
}

static inline bool ckpt_pwrite_all(int fd, const void* p, size_t n, off_t off) {
    const char* c = (const char*)p;
    while (n > 0) {
        const ssize_t w = pwrite(fd, c, n, off);
        if (w < 0) { if (errno == EINTR) continue; return false; }
        if (w == 0) { errno = EIO; return false; }
        c += w; n -= (size_t)w; off += w;
    }
    return true;
}

// ----------------------------------------------------------------------------
// What a model is: its kind, its config fields (compared one by one on load)
// and its size. Each model kind builds one from its config.

struct CkptField {
    const char* name;
    int32_t bits;   // the int, or the bits of the float
    bool is_float;
};
static inline CkptField ckpt_int_field(const char* n, int v) { return {n, (int32_t)v, false}; }
static inline CkptField ckpt_float_field(const char* n, float v) { int32_t b; memcpy(&b, &v, 4); return {n, b, true}; }

struct CkptModelInfo {
    int kind = 0;
    std::vector<CkptField> config;
    int64_t n_params = 0;
    int n_tensors = 0;
};

// ----------------------------------------------------------------------------
// Streaming: a source fills dst with elements [offset, offset + n) of one
// array; a sink receives them. Both see consecutive chunks in order.

typedef std::function<void(size_t offset, size_t n, float* dst)> CkptSource;
typedef std::function<void(size_t offset, size_t n, const float* src)> CkptSink;

static inline CkptSource ckpt_source_from(const float* p) {
    return [p](size_t off, size_t n, float* dst) { memcpy(dst, p + off, n * sizeof(float)); };
}
static inline CkptSink ckpt_sink_to(float* p) {
    return [p](size_t off, size_t n, const float* src) { memcpy(p + off, src, n * sizeof(float)); };
}

// Training state besides the arrays (see the header layout above). Three header
// slots hold what the model kind's trainer counts its batches and data in: each
// kind has its own fields for them, and only its kind's are written and read.
struct CkptState {
    int64_t step = 0, adam_step = 0;
    int bad_steps = 0;
    int sched_steps = 0;
    int seq_len = 0;                    // gpt [17]: tokens per sample T
    int64_t total_batch_tokens = 0;     // gpt [18-19]: tokens per optimizer step
    int batch_size = 0;                 // dit [17]: samples per batch B
    int64_t total_batch_samples = 0;    // dit [18-19]: samples per optimizer step
    int has_loader = 0;
    int64_t loader_epoch = 0, loader_sample = 0;
    int64_t loader_shard = 0;           // gpt [24-25]: the data shard
    int64_t loader_samples = 0;         // dit [24-25]: samples in the training data
    uint64_t loader_rng = 0;
    std::vector<uint64_t> rngs;
};

// ----------------------------------------------------------------------------
// Writing

struct CkptWrite {
    std::string dir;              // the checkpoint root DIR
    int64_t step = 0;             // -> DIR/step_XXXXXXXX
    CkptModelInfo info;
    int dtype = CKPT_F32;         // how model.bin stores the parameters
    CkptSource params;            // the weights (float32 values)
    CkptState state;
    CkptSource m, v;              // AdamW moments
    CkptSource master;            // fp32 master weights: only with dtype != CKPT_F32
    std::vector<CkptSource> extra;
    int keep_last = 0, keep_every = 0;
    // checkpoints of DIR that failed verification when the run resumed (ckpt_choose_resume):
    // never deleted nor counted among the kept; a save of the same step moves one aside first
    std::vector<int64_t> corrupt_steps;
};

// Writes one file: header placeholder, the arrays (n elements each, stored as
// dtype) while hashing, then the header with both checksums; fsync. On error
// the file is removed and *err names it.
static inline bool ckpt_write_file(const std::string& path, int32_t* hdr, const std::vector<const CkptSource*>& arrays, size_t n,
                                   int dtype, uint64_t* payload_sum, std::string* err) {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ckpt_error(err, "%s: cannot create (%s)", path.c_str(), strerror(errno));
    auto bad = [&](const char* what) {
        const int e = errno;
        close(fd);
        unlink(path.c_str());
        return ckpt_error(err, "%s: %s failed (%s)", path.c_str(), what, strerror(e));
    };
    static const char zeros[CKPT_HEADER_BYTES] = {0};
    if (!ckpt_write_all(fd, zeros, sizeof zeros)) return bad("write");
    Xxh64 hs;
    xxh64_init(&hs);
    std::vector<float> fbuf(std::min(n, CKPT_CHUNK));
    std::vector<uint16_t> hbuf(dtype == CKPT_BF16 ? fbuf.size() : 0);
    for (const CkptSource* src : arrays) {
        for (size_t off = 0; off < n; off += CKPT_CHUNK) {
            const size_t cnt = std::min(CKPT_CHUNK, n - off);
            (*src)(off, cnt, fbuf.data());
            const void* out = fbuf.data();
            size_t bytes = cnt * sizeof(float);
            if (dtype == CKPT_BF16) {
                for (size_t i = 0; i < cnt; i++) hbuf[i] = ckpt_f32_to_bf16(fbuf[i]);
                out = hbuf.data();
                bytes = cnt * sizeof(uint16_t);
            }
            xxh64_update(&hs, out, bytes);
            if (!ckpt_write_all(fd, out, bytes)) return bad("write");
        }
    }
    *payload_sum = xxh64_digest(&hs);
    ckpt_put64(hdr, 10, *payload_sum);
    ckpt_put64(hdr, 8, 0);
    ckpt_put64(hdr, 8, xxh64(hdr, CKPT_HEADER_BYTES));
    if (!ckpt_pwrite_all(fd, hdr, CKPT_HEADER_BYTES, 0)) return bad("write");
    if (fsync(fd) != 0) return bad("fsync");
    if (close(fd) != 0) {
        const int e = errno;
        unlink(path.c_str());
        return ckpt_error(err, "%s: close failed (%s)", path.c_str(), strerror(e));
    }
    return true;
}

// Text from a file quoted in a one-line message: control bytes (a newline) as '?'.
static inline std::string ckpt_printable(std::string s) {
    for (char& c : s)
        if ((unsigned char)c < 0x20 || c == 0x7f) c = '?';
    return s;
}

// The name DIR/latest holds ("" if none or unreadable); no validation.
static inline std::string ckpt_read_latest_name(const std::string& dir) {
    const std::string p = dir + "/latest";
    FILE* f = fopen(p.c_str(), "rb");
    if (!f) return "";
    char b[64] = {0};
    const size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    std::string s(b, n);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

// Writes DIR/latest through latest.tmp + rename.
static inline bool ckpt_write_latest(const std::string& dir, const std::string& name, std::string* err) {
    const std::string tmp = dir + "/latest.tmp", path = dir + "/latest";
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ckpt_error(err, "%s: cannot create (%s)", tmp.c_str(), strerror(errno));
    const std::string line = name + "\n";
    const char* what = nullptr;
    int e = 0;
    if (!ckpt_write_all(fd, line.data(), line.size())) { what = "write"; e = errno; }
    else if (fsync(fd) != 0) { what = "fsync"; e = errno; }
    if (close(fd) != 0 && !what) { what = "close"; e = errno; }
    if (what) { unlink(tmp.c_str()); return ckpt_error(err, "%s: %s failed (%s)", tmp.c_str(), what, strerror(e)); }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        const int e2 = errno;
        unlink(tmp.c_str());
        return ckpt_error(err, "%s: rename from %s failed (%s)", path.c_str(), tmp.c_str(), strerror(e2));
    }
    return ckpt_fsync_dir(dir, err);
}

// ----------------------------------------------------------------------------
// Listing and deleting old checkpoints

struct CkptEntry {
    int64_t step;
    bool complete;  // both model.bin and state.bin are there
};

static inline std::vector<CkptEntry> ckpt_list(const std::string& dir) {
    std::vector<CkptEntry> out;
    DIR* d = opendir(dir.c_str());
    if (!d) return out;
    while (struct dirent* e = readdir(d)) {
        const int64_t s = ckpt_parse_step_name(e->d_name);
        if (s < 0) continue;
        const std::string p = dir + "/" + e->d_name;
        if (!ckpt_is_dir(p)) continue;
        out.push_back({s, ckpt_is_file(p + "/model.bin") && ckpt_is_file(p + "/state.bin")});
    }
    closedir(d);
    std::sort(out.begin(), out.end(), [](const CkptEntry& a, const CkptEntry& b) { return a.step < b.step; });
    return out;
}

// Which step directories to delete once `latest` is the newest checkpoint:
// complete ones up to latest outside the newest keep_last (0: keep all) that
// are not a multiple of keep_every (0: none kept for that), and incomplete
// ones (leftovers of failed writes) older than latest. Newer ones stay. A step
// in `bad` (found corrupt at resume) is neither deleted nor counted among the
// newest keep_last, so it can never push a good checkpoint out (latest itself,
// just written over a corrupt one moved aside, counts).
static inline std::vector<int64_t> ckpt_prune_plan(const std::vector<CkptEntry>& entries, int64_t latest, int keep_last, int keep_every,
                                                   const std::vector<int64_t>& bad = {}) {
    std::vector<int64_t> complete, del;
    for (const CkptEntry& e : entries) {
        if (e.step > latest || (e.step != latest && std::find(bad.begin(), bad.end(), e.step) != bad.end())) continue;
        if (e.complete) complete.push_back(e.step);
        else if (e.step < latest) del.push_back(e.step);
    }
    std::sort(complete.begin(), complete.end());
    if (keep_last > 0) {
        const int64_t n = (int64_t)complete.size();
        for (int64_t i = 0; i < n - keep_last; i++) {
            const int64_t s = complete[i];
            if (s == latest) continue;
            if (keep_every > 0 && s % keep_every == 0) continue;
            del.push_back(s);
        }
    }
    std::sort(del.begin(), del.end());
    return del;
}

// Removes the checkpoint files of DIR/step_N and the directory; only the
// names this code writes, so a directory holding anything else stays (warned).
static inline bool ckpt_remove(const std::string& dir, int64_t step, std::string* err) {
    const std::string p = dir + "/" + ckpt_step_name(step);
    for (const char* f : {"model.bin", "state.bin", "model.bin.tmp", "state.bin.tmp"}) {
        const std::string fp = p + "/" + f;
        if (unlink(fp.c_str()) != 0 && errno != ENOENT) return ckpt_error(err, "%s: cannot delete (%s)", fp.c_str(), strerror(errno));
    }
    if (rmdir(p.c_str()) != 0) return ckpt_error(err, "%s: cannot remove the directory (%s)", p.c_str(), strerror(errno));
    return true;
}

static inline void ckpt_prune(const std::string& dir, int64_t latest, int keep_last, int keep_every, const std::vector<int64_t>& bad,
                              std::vector<int64_t>* removed) {
    for (int64_t s : ckpt_prune_plan(ckpt_list(dir), latest, keep_last, keep_every, bad)) {
        std::string err;
        if (ckpt_remove(dir, s, &err)) { if (removed) removed->push_back(s); }
        else fprintf(stderr, "warning: old checkpoint not deleted: %s\n", err.c_str());
    }
}

// Writes DIR/step_N atomically (see the top of this file), moves DIR/latest,
// then deletes old checkpoints. On failure returns false with one line in
// *err; DIR/latest and every earlier checkpoint are as they were.
static inline bool ckpt_save(const CkptWrite& w, std::string* saved_dir, std::string* err, std::vector<int64_t>* removed = nullptr) {
    const int64_t n = w.info.n_params;
    if (n <= 0) return ckpt_error(err, "checkpoint %s: n_params must be > 0, got %lld", w.dir.c_str(), (long long)n);
    if (w.step < 0) return ckpt_error(err, "checkpoint %s: step must be >= 0, got %lld", w.dir.c_str(), (long long)w.step);
    if (w.info.config.size() > CKPT_MAX_CONFIG) return ckpt_error(err, "checkpoint %s: %zu config fields, at most %d fit the header", w.dir.c_str(), w.info.config.size(), CKPT_MAX_CONFIG);
    if (w.state.rngs.size() > CKPT_MAX_RNG) return ckpt_error(err, "checkpoint %s: %zu RNG states, at most %d fit the header", w.dir.c_str(), w.state.rngs.size(), CKPT_MAX_RNG);
    if (w.extra.size() > CKPT_MAX_EXTRA) return ckpt_error(err, "checkpoint %s: %zu extra arrays, at most %d", w.dir.c_str(), w.extra.size(), CKPT_MAX_EXTRA);
    if (w.dtype != CKPT_F32 && w.dtype != CKPT_BF16) return ckpt_error(err, "checkpoint %s: unknown dtype %d", w.dir.c_str(), w.dtype);
    const bool has_master = w.dtype != CKPT_F32;
    if (!w.params || !w.m || !w.v || (has_master && !w.master)) return ckpt_error(err, "checkpoint %s: a source array is missing", w.dir.c_str());
    if (!ckpt_mkdirs(w.dir, err)) return false;

    const std::string prev = ckpt_read_latest_name(w.dir);
    const std::string kept = prev.empty() ? std::string("no earlier checkpoint") : w.dir + "/latest still names " + prev;
    const std::string name = ckpt_step_name(w.step), sdir = w.dir + "/" + name;
    if (std::find(w.corrupt_steps.begin(), w.corrupt_steps.end(), w.step) != w.corrupt_steps.end() && ckpt_is_dir(sdir)) {
        // the corrupt checkpoint of this step stays for a person to look at, under a name no listing takes for a checkpoint
        std::string aside = sdir + ".corrupt";
        for (int k = 2; access(aside.c_str(), F_OK) == 0; k++) aside = sdir + ".corrupt" + std::to_string(k);
        if (rename(sdir.c_str(), aside.c_str()) != 0)
            return ckpt_error(err, "%s: cannot move the corrupt checkpoint aside to %s (%s); %s", sdir.c_str(), aside.c_str(), strerror(errno), kept.c_str());
        printf("note: %s failed verification when this run resumed: moved aside to %s\n", sdir.c_str(), aside.c_str());
    }
    const bool created = mkdir(sdir.c_str(), 0755) == 0;
    if (!created && errno != EEXIST) return ckpt_error(err, "%s: cannot create directory (%s)", sdir.c_str(), strerror(errno));
    const std::string model_tmp = sdir + "/model.bin.tmp", state_tmp = sdir + "/state.bin.tmp";
    const std::string model_path = sdir + "/model.bin", state_path = sdir + "/state.bin";
    auto undo = [&](const std::string& e) {
        unlink(model_tmp.c_str());
        unlink(state_tmp.c_str());
        if (created) { unlink(model_path.c_str()); unlink(state_path.c_str()); rmdir(sdir.c_str()); }
        return ckpt_error(err, "%s; %s", e.c_str(), kept.c_str());
    };
    std::string e;

    // model.bin
    int32_t mh[CKPT_HEADER_INTS] = {0};
    mh[0] = CKPT_MODEL_MAGIC; mh[1] = CKPT_VERSION; mh[2] = w.info.kind; mh[3] = w.dtype;
    mh[4] = (int32_t)w.info.config.size(); mh[5] = w.info.n_tensors;
    ckpt_put64(mh, 6, (uint64_t)n);
    for (size_t i = 0; i < w.info.config.size(); i++) mh[CKPT_CONFIG_AT + i] = w.info.config[i].bits;
    uint64_t model_sum = 0;
    if (!ckpt_write_file(model_tmp, mh, {&w.params}, (size_t)n, w.dtype, &model_sum, &e)) return undo(e);

    // state.bin
    int32_t sh[CKPT_HEADER_INTS] = {0};
    const CkptState& st = w.state;
    sh[0] = CKPT_STATE_MAGIC; sh[1] = CKPT_VERSION; sh[2] = w.info.kind; sh[3] = has_master ? 1 : 0;
    ckpt_put64(sh, 4, (uint64_t)n);
    ckpt_put64(sh, 6, model_sum);
    ckpt_put64(sh, 12, (uint64_t)st.step);
    ckpt_put64(sh, 14, (uint64_t)st.adam_step);
    const bool dit = w.info.kind == CKPT_KIND_DIT;
    sh[16] = st.bad_steps; sh[17] = dit ? st.batch_size : st.seq_len;
    ckpt_put64(sh, 18, (uint64_t)(dit ? st.total_batch_samples : st.total_batch_tokens));
    sh[20] = st.sched_steps; sh[21] = st.has_loader ? 1 : 0;
    ckpt_put64(sh, 22, (uint64_t)st.loader_epoch);
    ckpt_put64(sh, 24, (uint64_t)(dit ? st.loader_samples : st.loader_shard));
    ckpt_put64(sh, 26, (uint64_t)st.loader_sample);
    ckpt_put64(sh, 28, st.loader_rng);
    sh[30] = (int32_t)st.rngs.size(); sh[31] = (int32_t)w.extra.size();
    for (size_t i = 0; i < st.rngs.size(); i++) ckpt_put64(sh, CKPT_RNG_AT + 2 * (int)i, st.rngs[i]);
    std::vector<const CkptSource*> arrays = {&w.m, &w.v};
    if (has_master) arrays.push_back(&w.master);
    for (const CkptSource& x : w.extra) arrays.push_back(&x);
    uint64_t state_sum = 0;
    if (!ckpt_write_file(state_tmp, sh, arrays, (size_t)n, CKPT_F32, &state_sum, &e)) return undo(e);

    // publish: both renames, the directory, then latest
    if (rename(model_tmp.c_str(), model_path.c_str()) != 0) return undo(model_path + ": rename from model.bin.tmp failed (" + strerror(errno) + ")");
    if (rename(state_tmp.c_str(), state_path.c_str()) != 0) return undo(state_path + ": rename from state.bin.tmp failed (" + strerror(errno) + ")");
    if (!ckpt_fsync_dir(sdir, &e) || !ckpt_fsync_dir(w.dir, &e)) return ckpt_error(err, "%s; %s", e.c_str(), kept.c_str());
    if (!ckpt_write_latest(w.dir, name, &e)) return ckpt_error(err, "%s; %s", e.c_str(), kept.c_str());
    if (saved_dir) *saved_dir = sdir;
    ckpt_prune(w.dir, w.step, w.keep_last, w.keep_every, w.corrupt_steps, removed);
    return true;
}

static inline std::string ckpt_save_or_fail(const CkptWrite& w, std::vector<int64_t>* removed = nullptr) {
    std::string dir, err;
    if (!ckpt_save(w, &dir, &err, removed)) fail("%s", err.c_str());
    return dir;
}

// ----------------------------------------------------------------------------
// Reading

struct CkptModelHeader {
    std::string path;
    int kind = 0, dtype = 0, n_tensors = 0;
    int64_t n_params = 0;
    std::vector<int32_t> config;
    uint64_t payload_sum = 0;
};

struct CkptStateHeader {
    std::string path;
    int kind = 0, has_master = 0, n_extra = 0;
    int64_t n_params = 0;
    uint64_t model_sum = 0, payload_sum = 0;
    CkptState st;
};

// Opens a checkpoint file and checks what every header has: a regular file
// at least a header long, magic, version, header checksum.
static inline bool ckpt_read_header(const std::string& path, int magic, int32_t* h, int64_t* size, std::string* err) {
    const bool model = magic == CKPT_MODEL_MAGIC;
    const char* what = model ? "a mega.c model checkpoint (model.bin)" : "a mega.c training-state checkpoint (state.bin)";
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return ckpt_error(err, "%s: cannot open (%s)", path.c_str(), strerror(errno));
    if (!S_ISREG(st.st_mode)) return ckpt_error(err, "%s: not a regular file", path.c_str());
    *size = (int64_t)st.st_size;
    if (*size < CKPT_HEADER_BYTES)
        return ckpt_error(err, "%s: file is %lld bytes, shorter than the %d-byte header (truncated)", path.c_str(), (long long)*size, CKPT_HEADER_BYTES);
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return ckpt_error(err, "%s: cannot open (%s)", path.c_str(), strerror(errno));
    const size_t got = fread(h, 1, CKPT_HEADER_BYTES, f);
    fclose(f);
    if (got != CKPT_HEADER_BYTES) return ckpt_error(err, "%s: truncated while reading the header (got %zu of %d bytes)", path.c_str(), got, CKPT_HEADER_BYTES);
    if (h[0] != magic) {
        const int other = model ? CKPT_STATE_MAGIC : CKPT_MODEL_MAGIC;
        return ckpt_error(err, "%s: magic: expected %d (%s), found %d%s", path.c_str(), magic, what, h[0],
                          h[0] == other ? (model ? " (a state.bin file)" : " (a model.bin file)") : "");
    }
    if (h[1] != CKPT_VERSION) return ckpt_error(err, "%s: version: expected %d, found %d", path.c_str(), CKPT_VERSION, h[1]);
    int32_t c[CKPT_HEADER_INTS];
    memcpy(c, h, CKPT_HEADER_BYTES);
    ckpt_put64(c, 8, 0);
    const uint64_t want = ckpt_get64(h, 8), have = xxh64(c, CKPT_HEADER_BYTES);
    if (want != have)
        return ckpt_error(err, "%s: header checksum: stored %016llx, computed %016llx (the header is corrupted)", path.c_str(),
                          (unsigned long long)want, (unsigned long long)have);
    if (h[2] != CKPT_KIND_GPT && h[2] != CKPT_KIND_DIT)
        return ckpt_error(err, "%s: model kind: expected %d (gpt) or %d (dit), found %d", path.c_str(), CKPT_KIND_GPT, CKPT_KIND_DIT, h[2]);
    return true;
}

// Checks that a file's length is header + n_params * bytes_per_param.
static inline bool ckpt_check_length(const std::string& path, int64_t size, int64_t n_params, int64_t bytes_per_param, std::string* err) {
    if (n_params <= 0 || n_params > (INT64_MAX - CKPT_HEADER_BYTES) / bytes_per_param)
        return ckpt_error(err, "%s: n_params: expected > 0, found %lld", path.c_str(), (long long)n_params);
    const int64_t expect = CKPT_HEADER_BYTES + n_params * bytes_per_param;
    if (size != expect)
        return ckpt_error(err, "%s: file length: n_params %lld needs %lld bytes, found %lld (%s)", path.c_str(), (long long)n_params,
                          (long long)expect, (long long)size, size < expect ? "truncated" : "extra bytes after the payload");
    return true;
}

static inline bool ckpt_read_model_header(const std::string& path, CkptModelHeader* out, std::string* err) {
    int32_t h[CKPT_HEADER_INTS];
    int64_t size = 0;
    if (!ckpt_read_header(path, CKPT_MODEL_MAGIC, h, &size, err)) return false;
    CkptModelHeader m;
    m.path = path;
    m.kind = h[2];
    m.dtype = h[3];
    if (m.dtype != CKPT_F32 && m.dtype != CKPT_BF16) return ckpt_error(err, "%s: dtype: expected 0 (float32) or 1 (bfloat16), found %d", path.c_str(), m.dtype);
    if (h[4] < 0 || h[4] > CKPT_MAX_CONFIG) return ckpt_error(err, "%s: n_config: expected 0..%d, found %d", path.c_str(), CKPT_MAX_CONFIG, h[4]);
    if (h[5] <= 0) return ckpt_error(err, "%s: n_tensors: expected > 0, found %d", path.c_str(), h[5]);
    m.n_tensors = h[5];
    m.n_params = (int64_t)ckpt_get64(h, 6);
    m.config.assign(h + CKPT_CONFIG_AT, h + CKPT_CONFIG_AT + h[4]);
    m.payload_sum = ckpt_get64(h, 10);
    if (!ckpt_check_length(path, size, m.n_params, m.dtype == CKPT_BF16 ? 2 : 4, err)) return false;
    *out = m;
    return true;
}

// The model in the file is the model being built: kind, every config field, sizes.
static inline bool ckpt_check_model(const CkptModelHeader& h, const CkptModelInfo& want, std::string* err) {
    const char* p = h.path.c_str();
    if (h.kind != want.kind)
        return ckpt_error(err, "%s: model kind is %s (%d), the model is %s (%d)", p, ckpt_kind_name(h.kind), h.kind, ckpt_kind_name(want.kind), want.kind);
    if (h.config.size() != want.config.size())
        return ckpt_error(err, "%s: n_config is %zu, a %s model has %zu config fields", p, h.config.size(), ckpt_kind_name(want.kind), want.config.size());
    for (size_t i = 0; i < want.config.size(); i++) {
        const CkptField& f = want.config[i];
        if (h.config[i] == f.bits) continue;
        if (f.is_float) {
            float a, b;
            memcpy(&a, &h.config[i], 4);
            memcpy(&b, &f.bits, 4);
            return ckpt_error(err, "%s: config %s is %.9g, the model has %.9g", p, f.name, a, b);
        }
        return ckpt_error(err, "%s: config %s is %d, the model has %d", p, f.name, h.config[i], f.bits);
    }
    if (h.n_tensors != want.n_tensors) return ckpt_error(err, "%s: n_tensors is %d, the model has %d", p, h.n_tensors, want.n_tensors);
    if (h.n_params != want.n_params)
        return ckpt_error(err, "%s: n_params is %lld, the model has %lld", p, (long long)h.n_params, (long long)want.n_params);
    return true;
}

// Streams `arrays` arrays of n elements (stored as dtype) after the header to
// the sinks (an empty sink skips its array), then checks the payload checksum.
static inline bool ckpt_read_payload(const std::string& path, const std::vector<CkptSink>& sinks, size_t n, int dtype, uint64_t want,
                                     std::string* err) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return ckpt_error(err, "%s: cannot open (%s)", path.c_str(), strerror(errno));
    if (fseeko(f, CKPT_HEADER_BYTES, SEEK_SET) != 0) { fclose(f); return ckpt_error(err, "%s: cannot seek (%s)", path.c_str(), strerror(errno)); }
    Xxh64 hs;
    xxh64_init(&hs);
    std::vector<float> fbuf(std::min(n, CKPT_CHUNK));
    std::vector<uint16_t> hbuf(dtype == CKPT_BF16 ? fbuf.size() : 0);
    const size_t esize = dtype == CKPT_BF16 ? 2 : 4;
    for (size_t a = 0; a < sinks.size(); a++) {
        for (size_t off = 0; off < n; off += CKPT_CHUNK) {
            const size_t cnt = std::min(CKPT_CHUNK, n - off);
            void* dst = dtype == CKPT_BF16 ? (void*)hbuf.data() : (void*)fbuf.data();
            const size_t got = fread(dst, 1, cnt * esize, f);
            if (got != cnt * esize) {
                fclose(f);
                return ckpt_error(err, "%s: truncated while reading array %zu of the payload (file changed?)", path.c_str(), a);
            }
            xxh64_update(&hs, dst, cnt * esize);
            if (!sinks[a]) continue;
            if (dtype == CKPT_BF16) for (size_t i = 0; i < cnt; i++) fbuf[i] = ckpt_bf16_to_f32(hbuf[i]);
            sinks[a](off, cnt, fbuf.data());
        }
    }
    fclose(f);
    const uint64_t have = xxh64_digest(&hs);
    if (have != want)
        return ckpt_error(err, "%s: payload checksum: stored %016llx, computed %016llx (the file is corrupted)", path.c_str(),
                          (unsigned long long)want, (unsigned long long)have);
    return true;
}

static inline bool ckpt_read_model_params(const CkptModelHeader& h, const CkptSink& sink, std::string* err) {
    return ckpt_read_payload(h.path, {sink}, (size_t)h.n_params, h.dtype, h.payload_sum, err);
}

static inline bool ckpt_read_state_header(const std::string& path, CkptStateHeader* out, std::string* err) {
    int32_t h[CKPT_HEADER_INTS];
    int64_t size = 0;
    if (!ckpt_read_header(path, CKPT_STATE_MAGIC, h, &size, err)) return false;
    CkptStateHeader s;
    s.path = path;
    const char* p = path.c_str();
    s.kind = h[2];
    s.has_master = h[3];
    if (s.has_master != 0 && s.has_master != 1) return ckpt_error(err, "%s: has_master: expected 0 or 1, found %d", p, h[3]);
    s.n_params = (int64_t)ckpt_get64(h, 4);
    s.model_sum = ckpt_get64(h, 6);
    s.payload_sum = ckpt_get64(h, 10);
    CkptState& st = s.st;
    st.step = (int64_t)ckpt_get64(h, 12);
    st.adam_step = (int64_t)ckpt_get64(h, 14);
    const bool dit = s.kind == CKPT_KIND_DIT;
    const int batch = h[17];
    const int64_t total_batch = (int64_t)ckpt_get64(h, 18), loader_at24 = (int64_t)ckpt_get64(h, 24);
    st.bad_steps = h[16];
    (dit ? st.batch_size : st.seq_len) = batch;
    (dit ? st.total_batch_samples : st.total_batch_tokens) = total_batch;
    st.sched_steps = h[20];
    st.has_loader = h[21];
    st.loader_epoch = (int64_t)ckpt_get64(h, 22);
    (dit ? st.loader_samples : st.loader_shard) = loader_at24;
    st.loader_sample = (int64_t)ckpt_get64(h, 26);
    st.loader_rng = ckpt_get64(h, 28);
    if (st.step < 0) return ckpt_error(err, "%s: step: expected >= 0, found %lld", p, (long long)st.step);
    if (st.adam_step < 0 || st.adam_step > st.step)
        return ckpt_error(err, "%s: adam_step: expected 0..step %lld, found %lld", p, (long long)st.step, (long long)st.adam_step);
    if (st.bad_steps < 0) return ckpt_error(err, "%s: bad_steps: expected >= 0, found %d", p, st.bad_steps);
    if (batch <= 0) return ckpt_error(err, "%s: %s: expected > 0, found %d", p, dit ? "batch_size" : "seq_len", batch);
    if (total_batch <= 0)
        return ckpt_error(err, "%s: %s: expected > 0, found %lld", p, dit ? "total_batch_samples" : "total_batch_tokens", (long long)total_batch);
    if (st.sched_steps < 0) return ckpt_error(err, "%s: sched_steps: expected >= 0, found %d", p, st.sched_steps);
    if (st.has_loader != 0 && st.has_loader != 1) return ckpt_error(err, "%s: has_loader: expected 0 or 1, found %d", p, st.has_loader);
    if (st.has_loader) {
        if (st.loader_epoch < 0) return ckpt_error(err, "%s: loader epoch: expected >= 0, found %lld", p, (long long)st.loader_epoch);
        if (loader_at24 < 0) return ckpt_error(err, "%s: loader %s: expected >= 0, found %lld", p, dit ? "samples" : "shard", (long long)loader_at24);
        if (st.loader_sample < 0) return ckpt_error(err, "%s: loader sample: expected >= 0, found %lld", p, (long long)st.loader_sample);
        if (st.loader_rng == 0) return ckpt_error(err, "%s: loader rng_state: expected non-zero, found 0", p);
    }
    if (h[30] < 0 || h[30] > CKPT_MAX_RNG) return ckpt_error(err, "%s: n_rng: expected 0..%d, found %d", p, CKPT_MAX_RNG, h[30]);
    for (int i = 0; i < h[30]; i++) {
        st.rngs.push_back(ckpt_get64(h, CKPT_RNG_AT + 2 * i));
        if (st.rngs.back() == 0) return ckpt_error(err, "%s: rng %d state: expected non-zero, found 0", p, i);
    }
    if (h[31] < 0 || h[31] > CKPT_MAX_EXTRA) return ckpt_error(err, "%s: n_extra: expected 0..%d, found %d", p, CKPT_MAX_EXTRA, h[31]);
    s.n_extra = h[31];
    if (!ckpt_check_length(path, size, s.n_params, 4LL * (2 + s.has_master + s.n_extra), err)) return false;
    *out = s;
    return true;
}

// The state belongs to this model.bin: same kind and size, and it names
// model.bin's payload checksum (catches files of two checkpoints mixed).
static inline bool ckpt_check_state(const CkptStateHeader& s, const CkptModelHeader& m, std::string* err) {
    const char* p = s.path.c_str();
    if (s.kind != m.kind) return ckpt_error(err, "%s: model kind is %s (%d), %s has %s (%d)", p, ckpt_kind_name(s.kind), s.kind, m.path.c_str(), ckpt_kind_name(m.kind), m.kind);
    if (s.n_params != m.n_params) return ckpt_error(err, "%s: n_params is %lld, %s has %lld", p, (long long)s.n_params, m.path.c_str(), (long long)m.n_params);
    if (s.model_sum != m.payload_sum)
        return ckpt_error(err, "%s: model checksum: expected %016llx (the payload checksum of %s), found %016llx (files of different checkpoints?)", p,
                          (unsigned long long)m.payload_sum, m.path.c_str(), (unsigned long long)s.model_sum);
    if (m.dtype != CKPT_F32 && !s.has_master)
        return ckpt_error(err, "%s: has_master: expected 1, since %s stores %s weights, found 0", p, m.path.c_str(), m.dtype == CKPT_BF16 ? "bfloat16" : "non-float32");
    return true;
}

// sinks: m, v, then master (only if has_master), then the n_extra arrays; an empty sink skips.
static inline bool ckpt_read_state_arrays(const CkptStateHeader& s, std::vector<CkptSink> sinks, std::string* err) {
    const size_t want = 2 + (size_t)s.has_master + (size_t)s.n_extra;
    if (sinks.size() > want) return ckpt_error(err, "%s: holds %zu arrays, the reader asked for %zu", s.path.c_str(), want, sinks.size());
    sinks.resize(want);
    return ckpt_read_payload(s.path, sinks, (size_t)s.n_params, CKPT_F32, s.payload_sum, err);
}

// ----------------------------------------------------------------------------
// Finding checkpoints

// The newest complete checkpoint of DIR: the one DIR/latest names, or without
// a `latest` file the highest complete step directory (*note says so).
// Returns false with *err empty if DIR has none; false with *err if DIR/latest
// is broken or names an incomplete checkpoint.
static inline bool ckpt_find_latest(const std::string& dir, std::string* step_dir, std::string* err, std::string* note = nullptr) {
    if (err) err->clear();
    if (!ckpt_is_dir(dir)) return false;
    const std::string lp = dir + "/latest";
    struct stat st;
    if (stat(lp.c_str(), &st) == 0) {
        if (!S_ISREG(st.st_mode)) return ckpt_error(err, "%s: not a regular file", lp.c_str());
        if (st.st_size > 64) return ckpt_error(err, "%s: expected one line naming a checkpoint (step_XXXXXXXX), found %lld bytes", lp.c_str(), (long long)st.st_size);
        const std::string name = ckpt_read_latest_name(dir);
        if (ckpt_parse_step_name(name) < 0)
            return ckpt_error(err, "%s: expected a checkpoint name like step_00000100, found '%s'", lp.c_str(), ckpt_printable(name).c_str());
        const std::string sd = dir + "/" + name;
        for (const char* f : {"model.bin", "state.bin"})
            if (!ckpt_is_file(sd + "/" + f)) return ckpt_error(err, "%s: names %s, but %s/%s is missing", lp.c_str(), name.c_str(), sd.c_str(), f);
        *step_dir = sd;
        return true;
    }
    int64_t best = -1;
    for (const CkptEntry& e : ckpt_list(dir)) if (e.complete) best = e.step;
    if (best < 0) return false;
    *step_dir = dir + "/" + ckpt_step_name(best);
    if (note) *note = dir + "/latest is missing: using the newest complete checkpoint " + *step_dir;
    return true;
}

// ----------------------------------------------------------------------------
// Verifying a checkpoint, and choosing the one a run resumes from

// Whether the checkpoint directory step_dir is whole, as far as the files alone
// can tell (not whether it fits a model: ckpt_check_model does that): both
// headers (magic, version, header checksum, field ranges, file length), the
// state belonging to the model file, and both payload checksums, which reads
// every byte. The first problem is one line in *err naming the file.
static inline bool ckpt_verify(const std::string& step_dir, std::string* err) {
    CkptModelHeader m;
    CkptStateHeader s;
    if (!ckpt_read_model_header(step_dir + "/model.bin", &m, err) || !ckpt_read_state_header(step_dir + "/state.bin", &s, err) ||
        !ckpt_check_state(s, m, err))
        return false;
    return ckpt_read_model_params(m, CkptSink(), err) && ckpt_read_state_arrays(s, {}, err);
}

struct CkptResumeChoice {
    std::string dir;                    // the checkpoint to resume from ("": DIR holds none: start fresh)
    std::string warning;                // one line when what `latest` names failed and an older checkpoint is used
    std::string note;                   // one line when DIR/latest is missing
    std::vector<int64_t> corrupt_steps; // the checkpoints that failed ckpt_verify (left on disk)
};

// `--resume 1`: the checkpoint of DIR to resume from. The one DIR/latest names
// if it verifies (ckpt_verify); else the newest older complete checkpoint that
// does, with a warning that names what failed and why. Without DIR/latest (a
// note says so), the newest complete checkpoint that verifies; with a broken
// DIR/latest, the same with a warning. Step directories newer than the one
// latest names (another branch of the run) are not considered. Nothing is
// deleted or changed. Returns false with one line in *err when DIR has
// checkpoints (or a latest) but none verifies; true with out->dir empty when DIR
// has none.
static inline bool ckpt_choose_resume(const std::string& dir, CkptResumeChoice* out, std::string* err) {
    *out = CkptResumeChoice();
    if (!ckpt_is_dir(dir)) return true;
    const std::string lp = dir + "/latest";
    std::vector<std::string> failed;   // one line per checkpoint (or latest) that failed, in the order tried
    std::vector<int64_t> cands;        // newest first
    int64_t limit = INT64_MAX;         // older candidates: complete directories with step <= limit
    struct stat st;
    if (stat(lp.c_str(), &st) == 0) {
        const std::string name = ckpt_read_latest_name(dir);
        if (!S_ISREG(st.st_mode)) failed.push_back(lp + ": not a regular file");
        else if (st.st_size > 64)
            failed.push_back(lp + ": expected one line naming a checkpoint (step_XXXXXXXX), found " + std::to_string((long long)st.st_size) + " bytes");
        else if (ckpt_parse_step_name(name) < 0)
            failed.push_back(lp + ": expected a checkpoint name like step_00000100, found '" + ckpt_printable(name) + "'");
        else {
            limit = ckpt_parse_step_name(name);
            cands.push_back(limit);   // tried even if incomplete: its missing file is what the warning names
        }
    }
    const bool have_latest = stat(lp.c_str(), &st) == 0;
    std::vector<CkptEntry> entries = ckpt_list(dir);
    for (auto e = entries.rbegin(); e != entries.rend(); ++e)
        if (e->complete && e->step <= limit && (cands.empty() || e->step != cands[0])) cands.push_back(e->step);
    if (!have_latest && !cands.empty()) out->note = lp + " is missing: using the newest complete checkpoint that verifies";
    for (size_t i = 0; i < cands.size(); i++) {
        const std::string sd = dir + "/" + ckpt_step_name(cands[i]);
        std::string e;
        if (ckpt_verify(sd, &e)) {
            out->dir = sd;
            if (!failed.empty()) {
                std::string w = failed[0];
                for (size_t k = 1; k < failed.size(); k++) w += "; also " + failed[k];
                out->warning = w + "; resuming from " + sd + ", the newest " + (limit == INT64_MAX ? "" : "older ") +
                               "checkpoint that verifies (" + (out->corrupt_steps.empty() ? "nothing was deleted" : "the failed one is kept") + ")";
            }
            return true;
        }
        failed.push_back(e);
        out->corrupt_steps.push_back(cands[i]);
    }
    if (failed.empty()) return true;   // no latest, no complete checkpoint: nothing to resume from
    std::string all = failed[0];
    for (size_t k = 1; k < failed.size(); k++) all += "; " + failed[k];
    return ckpt_error(err, "%s; no checkpoint in %s verifies (nothing was deleted)", all.c_str(), dir.c_str());
}

// A checkpoint directory (holding model.bin and state.bin) from what a user
// names: such a directory, one of its two files, or a checkpoint root DIR
// (its latest). Fails with one line naming `what` (the flag).
static inline std::string ckpt_resolve_or_fail(const std::string& path, const char* what) {
    if (ckpt_is_file(path)) {
        const size_t sl = path.find_last_of('/');
        const std::string base = sl == std::string::npos ? path : path.substr(sl + 1);
        if (base == "model.bin" || base == "state.bin") return sl == std::string::npos ? "." : path.substr(0, sl);
        fail("%s: %s is a file, expected a checkpoint directory (holding model.bin and state.bin) or its model.bin", what, path.c_str());
    }
    if (!ckpt_is_dir(path)) fail("%s: %s does not exist", what, path.c_str());
    if (ckpt_is_file(path + "/model.bin") || ckpt_is_file(path + "/state.bin")) {
        for (const char* f : {"model.bin", "state.bin"})
            if (!ckpt_is_file(path + "/" + f)) fail("%s: %s/%s is missing (incomplete checkpoint)", what, path.c_str(), f);
        return path;
    }
    std::string sd, err, note;
    if (ckpt_find_latest(path, &sd, &err, &note)) {
        if (!note.empty()) printf("note: %s\n", note.c_str());
        return sd;
    }
    if (!err.empty()) fail("%s", err.c_str());
    fail("%s: %s holds no checkpoint (no model.bin, state.bin, latest or step_XXXXXXXX directory)", what, path.c_str());
}

// --init-from: a model.bin (any name), or a checkpoint directory / root (its model.bin).
static inline std::string ckpt_model_path_or_fail(const std::string& path, const char* what) {
    if (ckpt_is_file(path)) return path;
    return ckpt_resolve_or_fail(path, what) + "/model.bin";
}

// ----------------------------------------------------------------------------
// Failing wrappers for the trainers: one line on stderr, exit 1.

static inline CkptModelHeader ckpt_read_model_header_or_fail(const std::string& path) {
    CkptModelHeader h;
    std::string err;
    if (!ckpt_read_model_header(path, &h, &err)) fail("%s", err.c_str());
    return h;
}
static inline CkptStateHeader ckpt_read_state_header_or_fail(const std::string& path) {
    CkptStateHeader h;
    std::string err;
    if (!ckpt_read_state_header(path, &h, &err)) fail("%s", err.c_str());
    return h;
}
static inline void ckpt_check_model_or_fail(const CkptModelHeader& h, const CkptModelInfo& want) {
    std::string err;
    if (!ckpt_check_model(h, want, &err)) fail("%s", err.c_str());
}
static inline void ckpt_check_state_or_fail(const CkptStateHeader& s, const CkptModelHeader& m) {
    std::string err;
    if (!ckpt_check_state(s, m, &err)) fail("%s", err.c_str());
}
static inline void ckpt_read_model_params_or_fail(const CkptModelHeader& h, const CkptSink& sink) {
    std::string err;
    if (!ckpt_read_model_params(h, sink, &err)) fail("%s", err.c_str());
}
static inline void ckpt_read_state_arrays_or_fail(const CkptStateHeader& s, const std::vector<CkptSink>& sinks) {
    std::string err;
    if (!ckpt_read_state_arrays(s, sinks, &err)) fail("%s", err.c_str());
}

// The config fields of a model.bin header of kind `kind`, which has n of them;
// fails with one line on another kind or count. Float fields: ckpt_config_float.
static inline const std::vector<int32_t>& ckpt_config_or_fail(const CkptModelHeader& h, int kind, size_t n) {
    if (h.kind != kind) fail("%s: model kind is %s (%d), expected %s (%d)", h.path.c_str(), ckpt_kind_name(h.kind), h.kind, ckpt_kind_name(kind), kind);
    if (h.config.size() != n)
        fail("%s: n_config is %zu, a %s model has %zu config fields", h.path.c_str(), h.config.size(), ckpt_kind_name(kind), n);
    return h.config;
}
static inline float ckpt_config_float(const std::vector<int32_t>& cfg, int k) { float x; memcpy(&x, &cfg[k], 4); return x; }
