/*
Tests of Hugging Face import/export (llmc/formats/hf.h) and tokenizer.json decoding (llmc/formats/hf_tokenizer.h),
on the CPU, against the tiny models transformers made (dev/reference/hf_tiny.py, test/data/hf/):
  - import: llama_tiny (sharded bf16, llama3 rope scaling, GQA, untied), qwen3_tiny (fp32,
    qk-norm, tied, head_dim != hidden/heads, padded vocabulary), qwen2_tiny (bf16, q/k/v bias,
    tied) and mistral_tiny (fp32, sliding_window = the fixture's T): the config read, then the fp32 CPU
    reference's (dev/cpu/gpt.cpp) logits and loss on the fixed tokens vs transformers' fp32 ones;
    and sensitivity checks: a wrong mapping (gate/up swapped, k heads swapped, rope scaling off,
    qk-norm weights dropped, k/v biases swapped) must move the logits far past the tolerance
  - export -> import is bit-identical (config and every parameter) in F32, BF16 rounds exactly,
    and the Qwen2 (q/k/v bias) and Qwen3-with-bias families come back the same
  - Mistral: sliding_window at least the sequence length (or null, or absent) accepted, shorter
    refused with one line; exported from a Mistral import as MistralForCausalLM with its window
  - bad config.json, bad safetensors, bad tokenizer.json: exit 1 with one stderr line naming the
    file and the field or tensor (checked on this binary in a child mode); sizes past sane
    bounds (a million layers, a billion-token vocabulary) and sizes the weight files do not bear
    out (layers, vocab, hidden, intermediate, heads) refused naming the field; dev/cpu/gpt (when
    built) refusing a --batch/--seq-len it cannot hold, before allocating
  - tokenizer.json: decoding known ids gives the bytes tokenizers' decode gives

  make test/test_hf && ./test/test_hf
  ./test/test_hf --config DIR | --load DIR | --tokenizer FILE | --seq-len DIR T     (child modes)
*/
#include <functional>
#define GPT_CPU_NO_MAIN
#include "../dev/cpu/gpt.cpp"
#include "../llmc/formats/hf_tokenizer.h"
#include "../llmc/formats/tensorfile.h"
#include "test_util.h"

static const std::string DATA = "test/data/hf";
static const std::string TMP = "test/tmp/hf";
// fp32 CPU forward vs transformers' fp32 forward: both honest fp32, different summation orders and
// RoPE tables (double here, fp32 there); measured errors are around 1e-7..1e-6.
static const double TOL = 1e-5;
// a wrong mapping must change the logits by at least this much (relative)
static const double SENSITIVE = 1e-2;

static std::string fmt(const char* f, double a, double b = 0) {
    char buf[160];
    snprintf(buf, sizeof buf, f, a, b);
    return buf;
}

static void write_text(const std::string& path, const std::string& s) {
    make_parent_dirs(path);
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(s.data(), s.size(), f, path);
    fclose_or_fail(f, path);
}

// first V columns of the CPU model's logits [BT, Vp]
static std::vector<float> unpadded_logits(const GPTCpu& g) {
    const int BT = g.B * g.T, V = g.cfg.vocab_size, Vp = g.cfg.padded_vocab_size;
    std::vector<float> out((size_t)BT * V);
    for (int r = 0; r < BT; r++)
        for (int c = 0; c < V; c++) out[(size_t)r * V + c] = g.logits[(size_t)r * Vp + c];
    return out;
}

static double max_rel_elem(const std::vector<float>& a, const std::vector<float>& b) {
    double mx = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) { mx = std::max(mx, fabs((double)a[i] - b[i])); den = std::max(den, fabs((double)b[i])); }
    return den > 0 ? mx / den : mx;
}

static bool same_bits(const void* a, const void* b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

static bool same_config(const GPTConfig& a, const GPTConfig& b) {
    return a.vocab_size == b.vocab_size && a.padded_vocab_size == b.padded_vocab_size && a.max_seq_len == b.max_seq_len &&
           a.n_layer == b.n_layer && a.n_head == b.n_head && a.n_kv_head == b.n_kv_head && a.d_model == b.d_model &&
           a.head_dim == b.head_dim && a.ffn_hidden == b.ffn_hidden && same_bits(&a.rope_theta, &b.rope_theta, 4) &&
           a.rope_scaling == b.rope_scaling && same_bits(&a.rope_factor, &b.rope_factor, 4) &&
           same_bits(&a.rope_low_freq_factor, &b.rope_low_freq_factor, 4) && same_bits(&a.rope_high_freq_factor, &b.rope_high_freq_factor, 4) &&
           a.rope_original_ctx == b.rope_original_ctx && same_bits(&a.norm_eps, &b.norm_eps, 4) && a.tie_embeddings == b.tie_embeddings &&
           a.qk_norm == b.qk_norm && a.qkv_bias == b.qkv_bias;
}

struct Fixture {
    TensorFile tf;
    int B, T;
    const int* x;
    const int* y;
};
static Fixture load_fixture(const std::string& name) {
    Fixture f;
    f.tf = tensorfile_read(DATA + "/" + name + ".mgt");
    const NamedTensor& t = f.tf.get("tokens");
    if (t.shape.size() != 2) fail("%s: tokens must be [B,T]", f.tf.path.c_str());
    f.B = t.shape[0];
    f.T = t.shape[1];
    f.x = f.tf.i32("tokens").data();
    f.y = f.tf.i32("targets").data();
    return f;
}

// logits rel error of the model g (already loaded) on the fixture
static double logits_error(GPTCpu* g, const Fixture& f, float* loss_out = nullptr) {
    const float loss = gpt_cpu_forward(g, f.x, f.y);
    if (loss_out) *loss_out = loss;
    const std::vector<float> lg = unpadded_logits(*g);
    const std::vector<float>& ref = f.tf.f32("logits");
    if (ref.size() != lg.size()) fail("%s: logits has %zu values, expected %zu", f.tf.path.c_str(), ref.size(), lg.size());
    return rel_error(lg.data(), ref.data(), lg.size());
}

// import one model and compare with transformers
static void check_import(const std::string& name, const std::function<bool(const GPTConfig&)>& config_ok, const std::string& config_desc) {
    Fixture f = load_fixture(name);
    GPTCpu g;
    HFInfo info;
    gpt_cpu_load_hf(&g, DATA + "/" + name, f.B, f.T, &info);
    check(config_ok(g.cfg), name + "/config", config_desc);
    float loss;
    const double e = logits_error(&g, f, &loss);
    const std::vector<float> lg = unpadded_logits(g);
    const double emax = max_rel_elem(lg, f.tf.f32("logits"));
    const float ref_loss = f.tf.f32("loss")[0];
    const double le = fabs((double)loss - ref_loss) / fabs((double)ref_loss);
    check(e <= TOL, name + "/logits_vs_transformers", fmt("rel_err %.3e (max elementwise |diff| / max|ref| %.3e)", e, emax) + fmt(" tol %.0e", TOL));
    check(le <= TOL, name + "/loss_vs_transformers", fmt("loss %.7f vs transformers %.7f", loss, ref_loss) + fmt(" rel_err %.3e", le));
    // padded vocabulary rows are zero
    double pad = 0;
    for (const char* n : {"wte", "lm_head"}) {
        const ParamTensor* p = gpt_find_param(g.layout, n);
        if (p) for (size_t k = (size_t)g.cfg.vocab_size * g.cfg.d_model; k < p->numel; k++) pad += fabs(g.params[p->offset + k]);
    }
    check(pad == 0.0, name + "/padded_rows_zero",
          g.cfg.padded_vocab_size > g.cfg.vocab_size
              ? "rows " + std::to_string(g.cfg.vocab_size) + ".." + std::to_string(g.cfg.padded_vocab_size - 1) + " of wte/lm_head"
              : "vocab " + std::to_string(g.cfg.vocab_size) + " needs no padding");

    // sensitivity: each wrong mapping moves the logits far past the tolerance
    const GPTConfig c = g.cfg;
    const std::vector<float> good = g.params;
    const int F = c.ffn_hidden, C = c.d_model, hd = c.head_dim, qd = c.n_head * hd, QKV = qd + 2 * c.n_kv_head * hd;
    auto sensitive = [&](const std::string& what, const std::function<void()>& mutate) {
        g.params = good;
        mutate();
        const double err = logits_error(&g, f);
        check(err > SENSITIVE, name + "/sensitive_to_" + what, fmt("rel_err %.3e when wrong (must exceed %.0e)", err, SENSITIVE));
        g.params = good;
    };
    sensitive("gate_up_order", [&] {
        float* w = gpt_cpu_param(&g, "wgateup");   // layer 0: swap the gate and up halves
        std::swap_ranges(w, w + (size_t)F * C, w + (size_t)F * C);
    });
    sensitive("kv_head_order", [&] {
        float* w = gpt_cpu_param(&g, "wqkv");      // layer 0: swap the rows of k head 0 and the next head (k head 1, or v head 0)
        std::swap_ranges(w + (size_t)qd * C, w + (size_t)(qd + hd) * C, w + (size_t)(qd + hd) * C);
    });
    sensitive("head_half_order", [&] {
        float* w = gpt_cpu_param(&g, "wqkv");      // layer 0, q head 0: swap its two rotary halves (an interleaved-RoPE mix-up)
        std::swap_ranges(w, w + (size_t)(hd / 2) * C, w + (size_t)(hd / 2) * C);
    });
    if (c.qkv_bias) {
        sensitive("qkv_bias_order", [&] {
            float* b = gpt_cpu_param(&g, "bqkv");       // layer 0: swap the k and v biases
            std::swap_ranges(b + qd, b + qd + (QKV - qd) / 2, b + qd + (QKV - qd) / 2);
        });
    }
    if (c.qk_norm) {
        sensitive("qk_norm_weights", [&] {
            float* q = gpt_cpu_param(&g, "q_norm");
            float* k = gpt_cpu_param(&g, "k_norm");
            for (int i = 0; i < c.n_layer * hd; i++) q[i] = k[i] = 1.0f;
        });
    }
    if (c.rope_scaling) {
        GPTCpu h;
        GPTConfig c2 = c;
        c2.rope_scaling = 0;
        gpt_cpu_build(&h, c2, f.B, f.T);
        h.params = good;
        const double err = logits_error(&h, f);
        check(err > SENSITIVE, name + "/sensitive_to_rope_scaling", fmt("rel_err %.3e without llama3 scaling (must exceed %.0e)", err, SENSITIVE));
    }
}

// export -> import: the same config and the same bits
static HFInfo check_roundtrip(const std::string& label, const GPTConfig& cfg, const std::vector<float>& params, int dtype,
                              const std::string& want_type, const HFInfo* from = nullptr) {
    const std::string dir = TMP + "/export_" + label;
    hf_export(dir, cfg, params.data(), dtype, 1, 0, 0, from);
    HFInfo info;
    const GPTConfig c2 = hf_load_config(dir, &info);
    const std::vector<float> p2 = hf_load_weights(dir, c2, gpt_param_layout(c2), &info);
    bool same = same_config(cfg, c2) && p2.size() == params.size();
    size_t bad = 0;
    if (same) {
        if (dtype == ST_F32) {
            same = same_bits(p2.data(), params.data(), p2.size() * 4);
        } else {
            for (size_t i = 0; i < p2.size(); i++) {
                const float r = st_bf16_to_f32(st_f32_to_bf16(params[i]));
                if (!same_bits(&r, &p2[i], 4)) { same = false; bad = i; break; }
            }
        }
    }
    check(same, "roundtrip/" + label,
          same ? std::string(dtype == ST_F32 ? "F32: config and all " : "BF16: config, and all ") + std::to_string(p2.size()) +
                     (dtype == ST_F32 ? " parameters bit-identical" : " parameters = bf16(original) exactly")
               : "differs (first bad element " + std::to_string(bad) + ")");
    JsonDoc d = json_parse_file(dir + "/config.json");
    check(info.model_type == want_type && d.root()["architectures"].at(0).as_string().find("ForCausalLM") != std::string::npos &&
              info.bos_token_id == 1 && info.eos_token_id == 0 && !file_exists(dir + "/config.json.tmp") && !file_exists(dir + "/model.safetensors.tmp"),
          "roundtrip/" + label + "/config_json", "model_type " + info.model_type + ", " + d.root()["architectures"].at(0).as_string() + ", bos/eos kept, no .tmp left");
    // the vocabulary is unpadded in the file
    SafeTensors st;
    safetensors_open(&st, dir);
    const SafeTensorInfo& e = safetensors_get(&st, "model.embed_tokens.weight");
    check(e.shape == std::vector<int64_t>{cfg.vocab_size, cfg.d_model} && e.dtype == dtype, "roundtrip/" + label + "/unpadded",
          "model.embed_tokens.weight " + st_shape_str(e.shape) + " " + st_dtype_name(e.dtype) + " (padded in memory to " + std::to_string(cfg.padded_vocab_size) + ")");
    safetensors_close(&st);
    return info;
}

// ---- files for the bad-input cases

// config.json of qwen3_tiny with changes: set key to a JSON value text, or remove it ("")
static std::string bad_config(const std::string& name, const std::string& key, const std::string& value_json, const std::string& key2 = "",
                              const std::string& value2 = "") {
    JsonDoc d = json_parse_file(DATA + "/qwen3_tiny/config.json");
    JsonValue out = json_object();
    for (const auto& kv : d.value.obj)
        if (kv.first != key && kv.first != key2) out.set(kv.first, kv.second);
    if (!value_json.empty()) out.set(key, json_parse(value_json, "inline").value);
    if (!key2.empty() && !value2.empty()) out.set(key2, json_parse(value2, "inline").value);
    const std::string dir = TMP + "/bad_" + name;
    write_text(dir + "/config.json", json_serialize(out));
    return dir;
}

// an export of the given model whose model.safetensors is rewritten by `edit`
static std::string bad_weights(const std::string& name, const GPTConfig& cfg, const std::vector<float>& params,
                               const std::function<void(std::vector<SafeTensorWrite>&)>& edit) {
    const std::string dir = TMP + "/bad_" + name;
    hf_export(dir, cfg, params.data(), ST_F32);
    const std::vector<HFTensor> map = hf_tensor_map(cfg, gpt_param_layout(cfg));
    std::vector<SafeTensorWrite> w;
    for (const HFTensor& t : map) w.push_back({t.name, ST_F32, t.shape, params.data() + t.offset});
    edit(w);
    safetensors_write(dir + "/model.safetensors", w, {{"format", "pt"}});
    return dir;
}

static const char* UNIGRAM_JSON =
    "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\"},"
    "\"decoder\":{\"type\":\"Metaspace\"},\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"\\u2581a\",-1.0]]}}";
static const char* SENTENCEPIECE_BPE_JSON =   // Llama 2's layout: BPE with byte fallback and the U+2581 space
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true}],"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<0x00>\":1,\"\\u2581a\":2},\"merges\":[]}}";
static const char* NON_BYTE_CHAR_JSON =       // a ByteLevel decoder, but a token with a character outside the alphabet
    "{\"version\":\"1.0\",\"added_tokens\":[],\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"\\u2581b\":1},\"merges\":[]}}";

int main(int argc, char** argv) {
    child_err_path = TMP + "/child.err";
    if (argc == 3 && std::string(argv[1]) == "--config") { (void)hf_load_config(argv[2]); return 0; }
    if (argc == 3 && std::string(argv[1]) == "--load") {
        HFInfo info;
        GPTConfig c = hf_load_config(argv[2], &info);
        (void)hf_load_weights(argv[2], c, gpt_param_layout(c), &info);
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--tokenizer") { HFTokenizer t; hf_tokenizer_load(&t, argv[2]); return 0; }
    if (argc == 4 && std::string(argv[1]) == "--seq-len") {
        HFInfo info;
        (void)hf_load_config(argv[2], &info);
        hf_check_seq_len(info, atoi(argv[3]));
        return 0;
    }
    if (argc != 1) fail("usage: %s [--config DIR | --load DIR | --tokenizer FILE | --seq-len DIR T]", argv[0]);
    make_parent_dirs(TMP + "/x");

    // ---- import vs transformers
    check_import("llama_tiny", [](const GPTConfig& c) {
        return c.vocab_size == 384 && c.padded_vocab_size == 384 && c.d_model == 64 && c.n_layer == 2 && c.n_head == 4 && c.n_kv_head == 2 &&
               c.head_dim == 16 && c.ffn_hidden == 128 && c.max_seq_len == 128 && c.rope_scaling == 1 && c.rope_factor == 8.0f &&
               c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f && c.rope_original_ctx == 64 && c.rope_theta == 10000.0f &&
               c.norm_eps == 1e-5f && !c.tie_embeddings && !c.qk_norm && !c.qkv_bias;
    }, "llama: vocab 384, C 64, L 2, heads 4/2, hd 16, F 128, llama3 rope (factor 8, 1/4, ctx 64), eps 1e-5, untied");
    check_import("qwen3_tiny", [](const GPTConfig& c) {
        return c.vocab_size == 300 && c.padded_vocab_size == 384 && c.d_model == 64 && c.n_head == 4 && c.n_kv_head == 2 && c.head_dim == 32 &&
               c.ffn_hidden == 64 && c.rope_theta == 1e6f && !c.rope_scaling && c.norm_eps == 1e-6f && c.tie_embeddings && c.qk_norm && !c.qkv_bias;
    }, "qwen3: vocab 300 (padded 384), heads 4/2, head_dim 32 (!= 64/4), F 64, theta 1e6, eps 1e-6, tied, qk-norm");
    check_import("qwen2_tiny", [](const GPTConfig& c) {
        return c.vocab_size == 256 && c.padded_vocab_size == 256 && c.d_model == 32 && c.n_layer == 1 && c.n_head == 2 && c.n_kv_head == 1 &&
               c.head_dim == 16 && c.ffn_hidden == 64 && c.rope_theta == 1e6f && c.tie_embeddings && !c.qk_norm && c.qkv_bias;
    }, "qwen2: vocab 256, C 32, L 1, heads 2/1, hd 16, F 64, theta 1e6, tied, q/k/v bias");
    // its sliding_window is the fixture's T: transformers ran its window mask, which masks nothing there
    check_import("mistral_tiny", [](const GPTConfig& c) {
        return c.vocab_size == 300 && c.padded_vocab_size == 384 && c.d_model == 64 && c.n_layer == 2 && c.n_head == 4 && c.n_kv_head == 2 &&
               c.head_dim == 16 && c.ffn_hidden == 128 && c.max_seq_len == 128 && c.rope_theta == 1e6f && !c.rope_scaling && c.norm_eps == 1e-5f &&
               !c.tie_embeddings && !c.qk_norm && !c.qkv_bias;
    }, "mistral: vocab 300 (padded 384), C 64, L 2, heads 4/2, hd 16, F 128, theta 1e6, eps 1e-5, untied, sliding_window 32 = T");

    // ---- export -> import
    HFInfo li, qi;
    const GPTConfig lc = hf_load_config(DATA + "/llama_tiny", &li);
    const std::vector<float> lp = hf_load_weights(DATA + "/llama_tiny", lc, gpt_param_layout(lc), &li);
    const GPTConfig qc = hf_load_config(DATA + "/qwen3_tiny", &qi);
    const std::vector<float> qp = hf_load_weights(DATA + "/qwen3_tiny", qc, gpt_param_layout(qc), &qi);
    check(li.dtype == "bfloat16" && qi.dtype == "float32" && li.bos_token_id == 1 && li.eos_token_id == 0, "import/info",
          "dtype " + li.dtype + " / " + qi.dtype + ", bos 1, eos 0 (from config.json)");
    check_roundtrip("llama_f32", lc, lp, ST_F32, "llama");
    check_roundtrip("qwen3_f32", qc, qp, ST_F32, "qwen3");
    check_roundtrip("qwen3_bf16", qc, qp, ST_BF16, "qwen3");
    {
        // llama_tiny was saved in bf16: a BF16 export holds exactly the original values
        const std::string dir = TMP + "/export_llama_bf16";
        hf_export(dir, lc, lp.data(), ST_BF16);
        const std::vector<float> p2 = hf_load_weights(dir, lc, gpt_param_layout(lc));
        check(p2 == lp, "roundtrip/llama_bf16_lossless", "a bf16 model exported in BF16 comes back bit-identical");
    }
    {
        // the other families: q/k/v bias alone (Qwen2), and qk-norm with q/k/v bias (Qwen3 attention_bias, zero o_proj.bias)
        Rng r;
        rng_seed(&r, 5);
        for (int qkn = 0; qkn < 2; qkn++) {
            GPTConfig c = qkn ? qc : lc;
            c.qkv_bias = 1;
            c.padded_vocab_size = 0;
            gpt_config_finalize(&c);
            const std::vector<ParamTensor> layout = gpt_param_layout(c);
            std::vector<float> p(layout_numel(layout), 0.0f);
            for (const ParamTensor& t : layout) {
                const std::vector<ParamTensor> src_layout = gpt_param_layout(qkn ? qc : lc);
                const ParamTensor* s = gpt_find_param(src_layout, t.name.c_str());
                const std::vector<float>& sp = qkn ? qp : lp;
                for (size_t k = 0; k < t.numel; k++) p[t.offset + k] = s ? sp[s->offset + k] : 0.1f * rng_normal(&r);
            }
            check_roundtrip(qkn ? "qwen3_qkv_bias" : "qwen2", c, p, ST_F32, qkn ? "qwen3" : "qwen2");
        }
    }
    {
        // Mistral: Llama's math while the window covers the sequence; refused (one line) past it;
        // exported back as Mistral with its window when the export says where it came from
        const std::string md = DATA + "/mistral_tiny";
        HFInfo mi;
        const GPTConfig mc = hf_load_config(md, &mi);
        const std::vector<float> mp = hf_load_weights(md, mc, gpt_param_layout(mc), &mi);
        check(mi.family == HF_MISTRAL && mi.model_type == "mistral" && mi.sliding_window == 32, "mistral/info",
              "family " + std::string(hf_family_name(mi.family)) + ", sliding_window " + std::to_string(mi.sliding_window));
        Child ok = run_child({"--seq-len", md, "32"});
        check(ok.exited && ok.code == 0, "mistral/window_equal_to_seq_len_accepted", "sliding_window 32, sequence 32");
        check_fails_one_line("mistral/window_shorter_than_seq_len", {"--seq-len", md, "33"},
                             "mistral_tiny/config.json: sliding_window: 32 is shorter than the sequence length 33");
        auto mistral_config = [&](const std::string& name, const std::string& key, const std::string& value_json) {
            JsonDoc d = json_parse_file(md + "/config.json");
            JsonValue out = json_object();
            for (const auto& kv : d.value.obj)
                if (kv.first != key) out.set(kv.first, kv.second);
            if (!value_json.empty()) out.set(key, json_parse(value_json, "inline").value);
            const std::string dir = TMP + "/mistral_" + name;
            write_text(dir + "/config.json", json_serialize(out));
            write_text(dir + "/model.safetensors", read_file_or_fail(md + "/model.safetensors"));
            return dir;
        };
        const std::string null_dir = mistral_config("window_null", "sliding_window", "null");
        Child n = run_child({"--seq-len", null_dir, "128"});
        check(n.exited && n.code == 0, "mistral/window_null_accepted", "sliding_window null, sequence 128 (max_position_embeddings)");
        Child a = run_child({"--seq-len", mistral_config("window_absent", "sliding_window", ""), "128"});
        check(a.exited && a.code == 0, "mistral/window_absent_accepted", "no sliding_window field, sequence 128");
        // transformers' Mistral has no biases: attention_bias true changes nothing (no bias tensors expected)
        Child b = run_child({"--load", mistral_config("attention_bias", "attention_bias", "true")});
        check(b.exited && b.code == 0, "mistral/attention_bias_ignored", "attention_bias true: the weights (no biases) load as they are");
        check_fails_one_line("mistral/window_zero", {"--config", mistral_config("window_zero", "sliding_window", "0")},
                             "config.json: sliding_window: integer 0 is out of range");
        const HFInfo back = check_roundtrip("mistral_f32", mc, mp, ST_F32, "mistral", &mi);
        JsonDoc d = json_parse_file(TMP + "/export_mistral_f32/config.json");
        check(back.family == HF_MISTRAL && back.sliding_window == 32 && d.root()["architectures"].at(0).as_string() == "MistralForCausalLM" &&
                  !d.root().has("attention_bias") && !d.root().has("use_sliding_window"),
              "mistral/export_keeps_mistral", "MistralForCausalLM, sliding_window 32, no Llama/Qwen-only fields");
        HFInfo ni;
        (void)hf_load_config(null_dir, &ni);
        const HFInfo nb = check_roundtrip("mistral_null_window", mc, mp, ST_F32, "mistral", &ni);
        JsonDoc dn = json_parse_file(TMP + "/export_mistral_null_window/config.json");
        check(nb.sliding_window == 0 && dn.root().has("sliding_window") && dn.root()["sliding_window"].is_null(), "mistral/export_null_window",
              "sliding_window null written back as null");
        check_roundtrip("mistral_as_llama", mc, mp, ST_F32, "llama");   // no source given: the same tensors as Llama
    }
    {
        // an export loads again only as itself: the rotary inv_freq buffers some checkpoints carry are accepted
        const std::string dir = bad_weights("inv_freq_ok", qc, qp, [&](std::vector<SafeTensorWrite>& w) {
            static float f[16];
            w.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", ST_F32, {16}, f});
        });
        Child c = run_child({"--load", dir});
        check(c.exited && c.code == 0, "import/rotary_inv_freq_accepted", "an extra rotary_emb.inv_freq tensor is not an error");
    }

    // ---- RoPE in either config.json form: transformers 5's rope_parameters alone, or transformers 4's
    // rope_theta + rope_scaling alone (the fixtures carry both), give the same config
    {
        JsonDoc d = json_parse_file(DATA + "/llama_tiny/config.json");
        for (int form = 0; form < 2; form++) {
            JsonValue out = json_object();
            for (const auto& kv : d.value.obj) {
                const bool legacy = kv.first == "rope_theta" || kv.first == "rope_scaling";
                if (form == 0 ? !legacy : kv.first != "rope_parameters") out.set(kv.first, kv.second);
            }
            const std::string dir = TMP + (form == 0 ? "/rope_v5" : "/rope_v4");
            write_text(dir + "/config.json", json_serialize(out));
            const GPTConfig c = hf_load_config(dir);
            check(same_config(c, lc) && c.rope_scaling == 1, form == 0 ? "config/rope_parameters_only" : "config/rope_theta_rope_scaling_only",
                  form == 0 ? "transformers 5's rope_parameters {rope_theta, rope_type llama3, ...} alone: llama_tiny's config"
                            : "transformers 4's rope_theta + rope_scaling {rope_type llama3, ...} alone: llama_tiny's config");
        }
    }

    // ---- Emu3: BAAI's flat config (model_type Emu3, tensors model.*) and transformers' composite one
    // (text_config; tensors model.text_model.* and lm_head, the VQ-VAE's model.vqmodel.* skipped), made
    // here from llama_tiny: both must give llama_tiny's logits
    {
        JsonDoc d = json_parse_file(DATA + "/llama_tiny/config.json");
        JsonValue flat = d.value;
        flat.set("model_type", json_string("Emu3")).set("architectures", json_array().push(json_string("Emu3ForCausalLM")));
        const std::string fd = TMP + "/emu3_flat", cd = TMP + "/emu3_composite";
        write_text(fd + "/config.json", json_serialize(flat));
        const std::vector<ParamTensor> layout = gpt_param_layout(lc);
        std::vector<SafeTensorWrite> w;
        for (const HFTensor& t : hf_tensor_map(lc, layout)) w.push_back({t.name, ST_BF16, t.shape, lp.data() + t.offset});
        safetensors_write(fd + "/model.safetensors", w);
        JsonValue text = d.value;
        text.set("model_type", json_string("emu3_text_model"));
        JsonValue comp = json_object();
        comp.set("architectures", json_array().push(json_string("Emu3ForConditionalGeneration"))).set("model_type", json_string("emu3"));
        comp.set("text_config", text).set("vq_config", json_object().set("model_type", json_string("emu3_vqgan")));
        write_text(cd + "/config.json", json_serialize(comp));
        w.clear();
        std::vector<float> vq(16, 1.0f);
        for (const HFTensor& t : hf_tensor_map(lc, layout, "model.text_model.", "lm_head.weight")) w.push_back({t.name, ST_BF16, t.shape, lp.data() + t.offset});
        w.push_back({"model.vqmodel.encoder.conv_in.weight", ST_F32, {16}, vq.data()});
        safetensors_write(cd + "/model.safetensors", w);
        Fixture f = load_fixture("llama_tiny");
        for (const std::string& dir : {fd, cd}) {
            GPTCpu g;
            HFInfo info;
            gpt_cpu_load_hf(&g, dir, f.B, f.T, &info);
            const double e = logits_error(&g, f);
            check(info.family == HF_EMU3 && same_config(g.cfg, lc) && g.params == lp && e <= TOL, "import/" + dir.substr(dir.rfind('/') + 1),
                  "family emu3, llama_tiny's config and weights, " + fmt("logits rel_err %.3e", e));
        }
    }

    // ---- bad config.json
    check_fails_one_line("config/missing_dir", {"--config", TMP + "/no_such_model"}, "config.json: cannot open");
    check_fails_one_line("config/missing_field", {"--config", bad_config("missing", "hidden_size", "")}, "config.json: hidden_size: missing field");
    check_fails_one_line("config/missing_rope_theta",
                         {"--config", bad_config("no_theta", "rope_parameters", "{\"rope_type\": \"default\"}", "rope_theta", "")}, "rope_theta: missing field");
    check_fails_one_line("config/rope_type_yarn",
                         {"--config", bad_config("yarn", "rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, \"factor\": 4.0}")},
                         "rope_parameters.rope_type: 'yarn' is not supported");
    check_fails_one_line("config/rope_scaling_dynamic",
                         {"--config", bad_config("dynamic", "rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}")},
                         "rope_scaling.type: 'dynamic' is not supported");
    check_fails_one_line("config/llama3_missing_factor",
                         {"--config", bad_config("llama3_nofactor", "rope_parameters",
                                                 "{\"rope_type\": \"llama3\", \"rope_theta\": 10000.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                                                 "\"original_max_position_embeddings\": 64}")},
                         "rope_parameters.factor: missing field");
    check_fails_one_line("config/unknown_model_type", {"--config", bad_config("gpt2", "model_type", "\"gpt2\"")}, "model_type: 'gpt2' is not supported");
    check_fails_one_line("config/moe_model_type", {"--config", bad_config("moe", "model_type", "\"qwen3_moe\"")}, "mixture-of-experts");
    check_fails_one_line("config/moe_experts", {"--config", bad_config("experts", "num_experts", "8")}, "num_experts: mixture-of-experts");
    check_fails_one_line("config/sliding_window", {"--config", bad_config("sliding", "use_sliding_window", "true", "max_window_layers", "1")},
                         "use_sliding_window: sliding-window attention (layers >= max_window_layers 1)");
    {
        // switched on but applying to no layer (max_window_layers >= num_hidden_layers): plain attention, accepted
        Child c = run_child({"--config", bad_config("sliding_unused", "use_sliding_window", "true", "max_window_layers", "28")});
        check(c.exited && c.code == 0, "config/sliding_window_unused_accepted", "use_sliding_window with max_window_layers 28 >= 2 layers");
    }
    check_fails_one_line("config/layer_types",
                         {"--config", bad_config("layer_types", "layer_types", "[\"full_attention\", \"sliding_attention\"]")},
                         "layer_types[1]: 'sliding_attention' is not supported");
    check_fails_one_line("config/hidden_act", {"--config", bad_config("gelu", "hidden_act", "\"gelu\"")}, "hidden_act: 'gelu' is not supported");
    check_fails_one_line("config/head_dim", {"--config", bad_config("hd12", "head_dim", "12")}, "head_dim: 12 is not a multiple of 8");
    check_fails_one_line("config/kv_heads", {"--config", bad_config("kv3", "num_key_value_heads", "3")}, "num_key_value_heads: 3 does not divide");
    check_fails_one_line("config/wrong_type", {"--config", bad_config("str_layers", "num_hidden_layers", "\"2\"")}, "num_hidden_layers: expected an integer");
    check_fails_one_line("config/not_json", {"--config", [] { write_text(TMP + "/bad_json/config.json", "{\"model_type\": \"llama\",}"); return TMP + "/bad_json"; }()},
                         "config.json: invalid JSON");

    // ---- bad weights (qwen3_tiny's config, weights rewritten)
    std::vector<float> big(4096, 0.5f);
    check_fails_one_line("weights/missing_tensor", {"--load", bad_weights("missing_tensor", qc, qp, [](std::vector<SafeTensorWrite>& w) {
                                                       for (size_t k = 0; k < w.size(); k++)
                                                           if (w[k].name == "model.layers.1.mlp.up_proj.weight") { w.erase(w.begin() + k); break; }
                                                   })},
                         "model.safetensors: tensor model.layers.1.mlp.up_proj.weight is missing");
    check_fails_one_line("weights/wrong_shape", {"--load", bad_weights("wrong_shape", qc, qp, [](std::vector<SafeTensorWrite>& w) {
                                                    for (SafeTensorWrite& t : w)
                                                        if (t.name == "model.layers.0.self_attn.k_norm.weight") t.shape = {16};
                                                })},
                         "tensor model.layers.0.self_attn.k_norm.weight has shape [16], expected [32]");
    check_fails_one_line("weights/extra_tensor", {"--load", bad_weights("extra", qc, qp, [&](std::vector<SafeTensorWrite>& w) {
                                                     w.push_back({"model.layers.1.mlp.extra.weight", ST_F32, {64, 64}, big.data()});
                                                 })},
                         "unexpected tensor model.layers.1.mlp.extra.weight");
    check_fails_one_line("weights/extra_layer", {"--load", bad_weights("extra_layer", qc, qp, [&](std::vector<SafeTensorWrite>& w) {
                                                    w.push_back({"model.layers.2.mlp.up_proj.weight", ST_F32, {64, 64}, big.data()});
                                                })},
                         "config.json: num_hidden_layers: 2, but the weights in " + TMP + "/bad_extra_layer/model.safetensors hold 3 layers");
    check_fails_one_line("weights/tied_head_differs", {"--load", bad_weights("tied_head", qc, qp, [&](std::vector<SafeTensorWrite>& w) {
                                                          static std::vector<float> h(300 * 64, 0.25f);
                                                          w.push_back({"lm_head.weight", ST_F32, {300, 64}, h.data()});
                                                      })},
                         "lm_head.weight differs from model.embed_tokens.weight");
    {
        // a tied model that also stores lm_head.weight = embed_tokens is fine
        const std::string dir = bad_weights("tied_head_copy", qc, qp, [&](std::vector<SafeTensorWrite>& w) {
            w.push_back({"lm_head.weight", ST_F32, {300, 64}, qp.data()});
        });
        Child c = run_child({"--load", dir});
        check(c.exited && c.code == 0, "weights/tied_head_copy_accepted", "lm_head.weight equal to the embeddings is accepted for a tied model");
    }
    {
        // attention_bias: o_proj.bias must be zero
        GPTConfig c = qc;
        c.qkv_bias = 1;
        const std::vector<ParamTensor> layout = gpt_param_layout(c);
        std::vector<float> p(layout_numel(layout), 0.01f);
        const std::string dir = TMP + "/bad_o_bias";
        hf_export(dir, c, p.data(), ST_F32);
        std::vector<SafeTensorWrite> w;
        for (const HFTensor& t : hf_tensor_map(c, layout)) w.push_back({t.name, ST_F32, t.shape, p.data() + t.offset});
        std::vector<float> zero(64, 0.0f), nz(64, 0.0f);
        nz[5] = 0.5f;
        w.push_back({"model.layers.0.self_attn.o_proj.bias", ST_F32, {64}, zero.data()});
        w.push_back({"model.layers.1.self_attn.o_proj.bias", ST_F32, {64}, nz.data()});
        safetensors_write(dir + "/model.safetensors", w, {{"format", "pt"}});
        check_fails_one_line("weights/o_proj_bias_nonzero", {"--load", dir}, "o_proj.bias has non-zero values (element 5 is 0.5)");
    }
    {
        // a header that lies: the data section is shorter than data_offsets say
        const std::string dir = TMP + "/bad_truncated";
        hf_export(dir, qc, qp.data(), ST_F32);
        const std::string raw = read_file_or_fail(dir + "/model.safetensors");
        write_text(dir + "/model.safetensors", raw.substr(0, raw.size() - 100));
        check_fails_one_line("weights/header_lies_truncated", {"--load", dir}, "model.safetensors: ");
        // and a shape that does not match the byte span
        std::string lie = read_file_or_fail(TMP + "/export_qwen3_f32/model.safetensors");
        const size_t at = lie.find("\"shape\":[300,64]");
        if (at == std::string::npos) fail("test: shape text not found in the export header");
        lie.replace(at, 16, "\"shape\":[301,64]");
        write_text(dir + "/model.safetensors", lie);
        check_fails_one_line("weights/header_lies_shape", {"--load", dir}, "model.embed_tokens.weight: shape holds 19264 F32 elements");
    }
    check_fails_one_line("weights/no_safetensors", {"--load", [] {
                                                        const std::string d = TMP + "/bad_no_weights";
                                                        write_text(d + "/config.json", read_file_or_fail(DATA + "/qwen3_tiny/config.json"));
                                                        return d;
                                                    }()},
                         "neither model.safetensors.index.json nor model.safetensors");
    check_fails_one_line("weights/bad_layer_count", {"--load", [&] {
                                                         const std::string d = bad_config("l3", "num_hidden_layers", "3");
                                                         std::string raw = read_file_or_fail(DATA + "/qwen3_tiny/model.safetensors");
                                                         write_text(d + "/model.safetensors", raw);
                                                         return d;
                                                     }()},
                         "config.json: num_hidden_layers: 3, but the weights in " + TMP + "/bad_l3/model.safetensors hold 2 layers");

    // ---- sizes: past sane bounds refused from config.json alone; within them, checked against the
    // weight files' headers before anything is allocated (one line naming the field, no bad_alloc)
    check_fails_one_line("config/huge_layers", {"--config", bad_config("huge_layers", "num_hidden_layers", "1000000")},
                         "config.json: num_hidden_layers: integer 1000000 is out of range [1, 4096]");
    check_fails_one_line("config/huge_vocab", {"--config", bad_config("huge_vocab", "vocab_size", "1000000000")},
                         "config.json: vocab_size: integer 1000000000 is out of range [1, 16777216]");
    check_fails_one_line("config/huge_intermediate", {"--config", bad_config("huge_ffn", "intermediate_size", "1000000000")},
                         "config.json: intermediate_size: integer 1000000000 is out of range [1, 1048576]");
    check_fails_one_line("config/huge_hidden", {"--config", bad_config("huge_hidden", "hidden_size", "1000000000")},
                         "config.json: hidden_size: integer 1000000000 is out of range [1, 65536]");
    check_fails_one_line("config/huge_heads", {"--config", bad_config("huge_heads", "num_attention_heads", "1000000")},
                         "config.json: num_attention_heads: integer 1000000 is out of range [1, 4096]");
    check_fails_one_line("config/huge_positions", {"--config", bad_config("huge_pos", "max_position_embeddings", "1000000000")},
                         "config.json: max_position_embeddings: integer 1000000000 is out of range [1, 16777216]");
    auto with_weights = [&](const std::string& d) {
        write_text(d + "/model.safetensors", read_file_or_fail(DATA + "/qwen3_tiny/model.safetensors"));
        return d;
    };
    // --config: hf_load_config alone already checks against the weights beside config.json
    check_fails_one_line("config/layers_vs_weights", {"--config", with_weights(bad_config("l4000", "num_hidden_layers", "4000"))},
                         "config.json: num_hidden_layers: 4000, but the weights in " + TMP + "/bad_l4000/model.safetensors hold 2 layers");
    check_fails_one_line("config/vocab_vs_weights", {"--config", with_weights(bad_config("v16m", "vocab_size", "16000000"))},
                         "config.json: vocab_size: 16000000, but model.embed_tokens.weight in " + TMP + "/bad_v16m/model.safetensors has 300 rows");
    check_fails_one_line("config/hidden_vs_weights", {"--config", with_weights(bad_config("c64k", "hidden_size", "65536"))},
                         "config.json: hidden_size: 65536, but model.embed_tokens.weight in " + TMP + "/bad_c64k/model.safetensors has shape [300, 64]");
    check_fails_one_line("config/intermediate_vs_weights", {"--config", with_weights(bad_config("f1m", "intermediate_size", "1048576"))},
                         "config.json: intermediate_size: 1048576, but model.layers.0.mlp.gate_proj.weight in " + TMP +
                             "/bad_f1m/model.safetensors has 64 rows");
    check_fails_one_line("config/heads_vs_weights", {"--config", with_weights(bad_config("h64", "num_attention_heads", "64"))},
                         "config.json: num_attention_heads: 64 heads x head_dim 32 = 2048 rows, but model.layers.0.self_attn.q_proj.weight");
    // dev/cpu/gpt (when built): batch and sequence sizes this machine cannot hold are refused before
    // anything is allocated, for the tiny preset and for --init-hf
    if (file_exists("dev/cpu/gpt")) {
        const std::string err = TMP + "/cpu_gpt.err";
        auto cpu_gpt = [&](const std::string& name, const std::string& args, const std::string& needle) {
            const int st = system(("./dev/cpu/gpt " + args + " > /dev/null 2> " + err).c_str());
            const std::string e = read_file_or_fail(err);
            const int lines = (int)std::count(e.begin(), e.end(), '\n');
            const bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1 && lines == 1 && e.find(needle) != std::string::npos;
            check(ok, "cpu_gpt/" + name, ok ? e.substr(0, e.size() - 1) : "expected exit 1 and one line with '" + needle + "': " + e);
        };
        cpu_gpt("seq_len_too_large", "--seq-len 1000000 --steps 0", "flags --batch 4 --seq-len 1000000: the CPU reference would need");
        cpu_gpt("batch_too_large", "--init-hf " + DATA + "/llama_tiny --batch 1000000000 --seq-len 128 --steps 0",
                "flags --batch 1000000000 --seq-len 128: the CPU reference would need");
        cpu_gpt("hf_config_vs_weights", "--init-hf " + with_weights(bad_config("cpu_l4000", "num_hidden_layers", "4000")) + " --steps 0",
                "config.json: num_hidden_layers: 4000, but the weights");
    } else {
        printf("SKIP cpu_gpt: dev/cpu/gpt is not built (make dev/cpu/gpt)\n");
    }
    check_fails_one_line("config/kv_heads_vs_weights", {"--config", with_weights(bad_config("kv4", "num_key_value_heads", "4"))},
                         "config.json: num_key_value_heads: 4 heads x head_dim 32 = 128 rows, but model.layers.0.self_attn.k_proj.weight");

    // ---- tokenizer.json
    {
        HFTokenizer t;
        hf_tokenizer_load(&t, DATA + "/llama_tiny/tokenizer.json");
        TensorFile tf = tensorfile_read(DATA + "/tokenizer.mgt");
        const std::vector<int32_t>& ids = tf.i32("ids");
        const std::vector<int32_t>& bytes = tf.i32("bytes");
        std::string want;
        for (int32_t b : bytes) want += (char)b;
        const std::string got = hf_tokenizer_decode(&t, ids.data(), ids.size());
        check(got == want, "tokenizer/decode_known_ids", std::to_string(ids.size()) + " ids -> " + std::to_string(want.size()) +
                                                            " bytes as tokenizers decodes them (ASCII, Latin-1, CJK, emoji, newline, tab, special tokens)");
        check(t.size() == 300 && t.n_tokens == 300 && hf_tokenizer_special_id(&t, "<|endoftext|>") == 0 &&
                  hf_tokenizer_special_id(&t, "<|begin_of_text|>") == 1 && hf_tokenizer_special_id(&t, "nope") == -1,
              "tokenizer/vocab", "300 tokens, special ids 0 and 1");
        const int odd[4] = {350, -1, 1 << 20, 0};
        check(hf_tokenizer_decode(&t, odd, 4) == "<|endoftext|>", "tokenizer/ids_without_token", "ids past the tokenizer decode to nothing");
        int all_bytes_ok = 1;
        // every single byte has a token (ids 2..257 in a trained byte-level BPE): each decodes to one byte
        std::vector<int> seen(256, 0);
        for (int id = 0; id < t.size(); id++)
            if (!t.special[id] && t.pieces[id].size() == 1) seen[(unsigned char)t.pieces[id][0]]++;
        for (int b = 0; b < 256; b++) all_bytes_ok &= seen[b] == 1;
        check(all_bytes_ok == 1, "tokenizer/byte_alphabet", "each of the 256 bytes is exactly one single-byte token");
    }
    write_text(TMP + "/tok_unigram.json", UNIGRAM_JSON);
    write_text(TMP + "/tok_spbpe.json", SENTENCEPIECE_BPE_JSON);
    write_text(TMP + "/tok_nonbyte.json", NON_BYTE_CHAR_JSON);
    check_fails_one_line("tokenizer/reject_unigram", {"--tokenizer", TMP + "/tok_unigram.json"}, "tok_unigram.json: model.type: 'Unigram' is not supported");
    check_fails_one_line("tokenizer/reject_sentencepiece_bpe", {"--tokenizer", TMP + "/tok_spbpe.json"},
                         "tok_spbpe.json: decoder: expected a ByteLevel decoder");
    check_fails_one_line("tokenizer/reject_non_byte_char", {"--tokenizer", TMP + "/tok_nonbyte.json"}, "outside the byte-level alphabet");
    check_fails_one_line("tokenizer/missing", {"--tokenizer", TMP + "/none.json"}, "none.json: cannot open");

    printf("%s\n", n_failed ? "test_hf: FAILED" : "test_hf: all passed");
    return n_failed ? 1 : 0;
}
