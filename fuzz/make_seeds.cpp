/*
Writes the seed corpus of every fuzz target: small valid files made by the
project's own writers (nothing binary is committed).

  fuzz/make_seeds OUT_DIR     -> OUT_DIR/<target>/<seed files>

Built and run by fuzz/run_fuzzers.sh (a normal build: no sanitizers, no MEGA_FUZZ).
*/
#include <cmath>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "../llmc/formats/tokenizer.h"
#include "../llmc/data/dataset.h"
#include "../llmc/data/sft_data.h"
#include "../llmc/data/latent_data.h"
#include "../llmc/train/checkpoint_gpt.h"
#include "../llmc/formats/tensorfile.h"
#include "../llmc/formats/safetensors.h"
#include "fuzz_seeds.h"

static std::string OUT;

static void put(const std::string& target, const std::string& name, const std::string& bytes) {
    const std::string p = OUT + "/" + target + "/" + name;
    make_parent_dirs(p);
    FILE* f = fopen_or_fail(p, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, p);
    fclose_or_fail(f, p);
}

static const char* TEXT =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
    "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\n"
    "Numbers 12345 and 2024-11-22, tabs\there,  double  spaces, caf\xc3\xa9 \xe2\x82\xac 100!\n";

static void tokenizer_seeds(const std::string& tmp) {
    for (int vocab : {257, 300, 400}) {
        Tokenizer t;
        tokenizer_train(&t, TEXT, vocab);
        const std::string p = tmp + "/tok_" + std::to_string(vocab) + ".bin";
        tokenizer_save(&t, p);
        put("fuzz_tokenizer", "vocab_" + std::to_string(vocab) + ".bin", read_file_or_fail(p));
    }
}

// conversations with a loss mask on their second half, uint16 and uint32 tokens
static void sft_shard_seeds(const std::string& tmp) {
    for (int vocab : {300, 70000}) {
        std::vector<std::vector<int>> docs;
        std::vector<std::vector<uint8_t>> masks;
        for (int n : {5, 9, 3, 4, 6}) {
            std::vector<int> d;
            std::vector<uint8_t> m;
            for (int i = 0; i < n; i++) { d.push_back((7 * i + 3 * n) % 300); m.push_back(i >= n / 2); }
            docs.push_back(d);
            masks.push_back(m);
        }
        const std::string p = tmp + "/sft_" + std::to_string(vocab) + ".bin";
        write_sft_shard(p, docs, masks, vocab, 8);
        put("fuzz_sft_shard", "sft_" + std::to_string(vocab) + ".bin", read_file_or_fail(p));
    }
}

static void token_shard_seeds(const std::string& tmp) {
    Tokenizer t;
    tokenizer_train(&t, TEXT, 300);
    std::vector<int> ids = tokenizer_encode(&t, TEXT);
    ids.insert(ids.begin(), t.eot_token);
    // uint16 ids (vocab <= 65536) and uint32 ids (a larger vocab; ids stay < FUZZ_SHARD_VOCAB)
    write_token_shard(tmp + "/u16.bin", ids, 300);
    write_token_shard(tmp + "/u32.bin", ids, 70000);
    put("fuzz_token_shard", "u16.bin", read_file_or_fail(tmp + "/u16.bin"));
    put("fuzz_token_shard", "u32.bin", read_file_or_fail(tmp + "/u32.bin"));
    std::vector<int> few(ids.begin(), ids.begin() + 9);  // 2 samples of T+1 = 4 tokens
    write_token_shard(tmp + "/small.bin", few, 300);
    put("fuzz_token_shard", "small.bin", read_file_or_fail(tmp + "/small.bin"));
}

static void latent_seeds(const std::string& tmp) {
    const int C = 3, D = 4;
    const float mean[C] = {0.5f, -0.25f, 0.0f}, std_[C] = {2.0f, 0.5f, 1.0f};
    for (int variant = 0; variant < 2; variant++) {
        const bool norm = variant == 0;
        const int ld = norm ? LATENT_DTYPE_F32 : LATENT_DTYPE_BF16, td = norm ? LATENT_DTYPE_BF16 : LATENT_DTYPE_F32;
        const std::string p = tmp + "/lat" + std::to_string(variant) + ".lat";
        LatentWriter w;
        const int n = 3;
        latent_writer_open(&w, p, C, D, ld, td, n, norm ? mean : nullptr, norm ? std_ : nullptr);
        for (int k = 0; k < n; k++) {
            LatentSampleDesc d;
            d.T = 1 + k; d.H = 2; d.W = 1 + (k % 2);
            d.text_len = 1 + 2 * k;
            d.fps = 8.0f + k;
            d.source = norm && k == 1 ? LATENT_SOURCE_REAL : LATENT_SOURCE_GENERATED;
            d.clean_frames = k == 2 ? 1 : 0;
            std::vector<float> lat((size_t)C * d.T * d.H * d.W), txt((size_t)d.text_len * D);
            for (size_t i = 0; i < lat.size(); i++) lat[i] = (float)std::sin(0.3 * (double)i + k);
            for (size_t i = 0; i < txt.size(); i++) txt[i] = (float)std::cos(0.2 * (double)i - k);
            latent_writer_add(&w, d, lat.data(), txt.data(), k == 1 ? std::string() : "clip " + std::to_string(k) + " caf\xc3\xa9");
        }
        latent_writer_close(&w);
        put("fuzz_latent_shard", norm ? "norm_f32_bf16.lat" : "nonorm_bf16_f32.lat", read_file_or_fail(p));
    }
}

static void checkpoint_seeds(const std::string& tmp) {
    const GPTConfig cfg = fuzz_tiny_gpt();
    const CkptModelInfo info = gpt_ckpt_info(cfg);
    const size_t n = (size_t)info.n_params;
    std::vector<float> p(n), m(n), v(n), ema(n);
    for (size_t i = 0; i < n; i++) {
        p[i] = (float)std::sin(0.1 * (double)i);
        m[i] = 0.01f * (float)std::cos(0.2 * (double)i);
        v[i] = 1e-4f * (float)(i % 7);
        ema[i] = 0.5f * p[i];
    }
    const int fix = FUZZ_CKPT_FIX_HEADER | FUZZ_CKPT_FIX_PAYLOAD;
    for (int variant = 0; variant < 2; variant++) {
        CkptWrite w;
        w.dir = tmp + "/ckpt" + std::to_string(variant);
        w.step = 7 + variant;
        w.info = info;
        w.dtype = variant == 0 ? CKPT_F32 : CKPT_BF16;
        w.params = ckpt_source_from(p.data());
        w.m = ckpt_source_from(m.data());
        w.v = ckpt_source_from(v.data());
        if (w.dtype != CKPT_F32) { w.master = ckpt_source_from(p.data()); w.extra.push_back(ckpt_source_from(ema.data())); }
        CkptState& s = w.state;
        s.step = w.step; s.adam_step = w.step - 1; s.bad_steps = 0; s.seq_len = 8; s.total_batch_tokens = 64; s.sched_steps = 100;
        s.has_loader = 1; s.loader_epoch = 1; s.loader_shard = 0; s.loader_sample = 3; s.loader_rng = 0x123456789ABCDEF1ull;
        s.rngs = {0xDEADBEEFCAFEF00Dull};
        const std::string sdir = ckpt_save_or_fail(w);
        const std::string tag = variant == 0 ? "f32" : "bf16";
        put("fuzz_checkpoint", "model_" + tag + ".bin", std::string(1, (char)(0 | fix)) + read_file_or_fail(sdir + "/model.bin"));
        put("fuzz_checkpoint", "state_" + tag + ".bin", std::string(1, (char)(1 | fix)) + read_file_or_fail(sdir + "/state.bin"));
        if (variant == 0) put("fuzz_checkpoint", "latest", std::string(1, (char)2) + read_file_or_fail(w.dir + "/latest"));
    }
}

// .mgt: int32 magic, version, n_tensors; per tensor name_len, name, dtype, ndim, shape, data
static void tensorfile_seeds() {
    std::string b;
    auto i32 = [&](int32_t x) { b.append((const char*)&x, 4); };
    auto f32 = [&](float x) { b.append((const char*)&x, 4); };
    auto tensor = [&](const std::string& name, int dtype, std::vector<int> shape) {
        i32((int32_t)name.size());
        b += name;
        i32(dtype);
        i32((int32_t)shape.size());
        size_t numel = 1;
        for (int d : shape) { i32(d); numel *= (size_t)d; }
        for (size_t i = 0; i < numel; i++) { if (dtype == 0) f32(0.5f * (float)i - 1.0f); else i32((int32_t)i * 3); }
    };
    i32(TENSORFILE_MAGIC); i32(1); i32(4);
    tensor("weights", 0, {2, 3});
    tensor("tokens", 1, {5});
    tensor("scalar", 0, {});
    tensor("empty", 0, {0, 4});
    put("fuzz_tensorfile", "small.mgt", b);
}

static void dataset_meta_seeds(const std::string& tmp) {
    DatasetMeta m;
    m.vocab_size = 1024; m.train_bytes = 1003854; m.train_tokens = 331234; m.val_bytes = 111540; m.val_tokens = 36802;
    write_dataset_meta(tmp + "/meta", m);
    put("fuzz_dataset_meta", "meta.txt", read_file_or_fail(tmp + "/meta/meta.txt"));
    put("fuzz_dataset_meta", "extra_key.txt", read_file_or_fail(tmp + "/meta/meta.txt") + "future_key 7\n\n");
}

static void safetensors_seeds(const std::string& tmp) {
    std::vector<float> a(24), b(6), c(1);
    for (size_t i = 0; i < a.size(); i++) a[i] = 0.25f * (float)i - 2.0f;
    for (size_t i = 0; i < b.size(); i++) b[i] = -1.5f + (float)i;
    c[0] = 3.0f;
    const std::string p = tmp + "/model.safetensors";
    safetensors_write(p, {{"model.embed_tokens.weight", ST_F32, {4, 6}, a.data()}, {"model.norm.weight", ST_BF16, {6}, b.data()},
                          {"lm_head.bias", ST_F32, {1}, c.data()}},
                      {{"format", "pt"}});
    put("fuzz_safetensors", "three_tensors.safetensors", read_file_or_fail(p));
    safetensors_write(p, {});
    put("fuzz_safetensors", "empty.safetensors", read_file_or_fail(p));
}

// the committed Hugging Face fixtures (test/data/hf) and Megatron fixtures (test/data/megatron)
static void hf_and_megatron_seeds() {
    for (const char* m : {"llama_tiny", "qwen2_tiny", "qwen3_tiny"})
        put("fuzz_hf_config", std::string(m) + "_config.json", read_file_or_fail(std::string("test/data/hf/") + m + "/config.json"));
    put("fuzz_hf_config", "tokenizer.json", read_file_or_fail("test/data/hf/qwen3_tiny/tokenizer.json"));
    for (const char* d : {"dtype1_uint8", "dtype4_int32", "dtype8_uint16", "blend_a"})
        put("fuzz_megatron_idx", std::string(d) + ".idx", read_file_or_fail(std::string("test/data/megatron/") + d + ".idx"));
}

// Inputs that once found a bug (fixed since), kept in the corpora so that
// every run checks them again; each must now fail with one line.
static void regression_seeds() {
    std::string b;
    auto i32 = [&](int32_t x) { b.append((const char*)&x, 4); };
    auto i64 = [&](int64_t x) { b.append((const char*)&x, 8); };
    // tokenizer.h: merge i = (255 + i, 255 + i) doubles a token's length every merge,
    // 40 merges asked for a 2^40-byte string (out of memory)
    b.clear();
    i32(TOKENIZER_MAGIC); i32(TOKENIZER_VERSION); i32(257 + 40); i32(40); i32(257 + 40 - 1);
    for (int i = 0; i < 40; i++) { const int id = i == 0 ? 'a' : 255 + i; i32(id); i32(id); }
    put("fuzz_tokenizer", "regress_doubling_merges.bin", b);
    // tensorfile.h: shape [65536, 65536, 65536, 16384] has 2^62 elements, whose 4 * 2^62 bytes
    // wrapped around to 0 and passed the length check (then std::length_error in resize)
    b.clear();
    i32(TENSORFILE_MAGIC); i32(1); i32(1);
    i32(1); b += "x"; i32(0); i32(4); i32(65536); i32(65536); i32(65536); i32(16384);
    b.append(64, '\0');
    put("fuzz_tensorfile", "regress_numel_wraps.mgt", b);
    // latent_data.h: C = T = H = W = 65536: C*T*H*W*4 overflowed int64 (UBSan) before any size check
    b.assign(LATENT_HEADER_BYTES, '\0');
    const int32_t h[8] = {LATENT_MAGIC, LATENT_VERSION, 65536, 4, 0, 0, 0, 0};
    memcpy(&b[0], h, sizeof h);
    const int64_t one = 1;
    memcpy(&b[32], &one, 8);
    i64(1088); i64(1088); i64(1088);             // latent, text, caption offsets
    i32(0); i32(65536); i32(65536); i32(65536);  // caption bytes, T, H, W
    i32(1); const float fps = 8.0f; b.append((const char*)&fps, 4); i32(0); i32(0); i64(0);
    b.append(64, '\0');
    put("fuzz_latent_shard", "regress_latent_size_overflow.lat", b);
}

int main(int argc, char** argv) {
    if (argc != 2) fail("usage: %s OUT_DIR", argv[0]);
    OUT = argv[1];
    const std::string tmp = OUT + "/.work";
    make_parent_dirs(tmp + "/x");
    tokenizer_seeds(tmp);
    token_shard_seeds(tmp);
    sft_shard_seeds(tmp);
    latent_seeds(tmp);
    checkpoint_seeds(tmp);
    tensorfile_seeds();
    dataset_meta_seeds(tmp);
    safetensors_seeds(tmp);
    hf_and_megatron_seeds();
    regression_seeds();
    printf("make_seeds: wrote the seed corpora under %s\n", OUT.c_str());
    return 0;
}
