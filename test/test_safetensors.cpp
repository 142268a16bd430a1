/*
Tests of llmc/formats/safetensors.h (and llmc/formats/json.h) on files written into
test/tmp/safetensors/: write/read round trip (F32 and BF16, __metadata__,
sharded with model.safetensors.index.json), exact BF16/F16 conversions over
all 65536 bit patterns (and fp32 -> F16 rounding at every F16 midpoint), the
sharded directory writer (split in order by size, a tensor larger than the
limit alone, the index last and sorted, one shard = no index, stale shards
removed, the other form refused; F32/F16/BF16 read back bit-identical through
the index and the directory; hf_export of test/data/hf/llama_tiny sharded and
re-imported bit-identical, as --export-hf-shard-mb does), a hand-built file in the layout other writers produce,
JSON lookups and JSON errors, the tensors tiling the data section exactly
(gaps, overlaps, trailing bytes, header length off by one), and every bad case exiting 1 with one stderr
line naming the file (checked on a child process: this binary in a child mode).

  make test/test_safetensors && ./test/test_safetensors
  ./test/test_safetensors --open PATH      (child mode: open and read every tensor)
  ./test/test_safetensors --json PATH      (child mode: parse a JSON file)
  ./test/test_safetensors --config PATH    (child mode: read config fields)
  ./test/test_safetensors --write-dir DIR MAXBYTES [dup]   (child mode: safetensors_write_dir of 3 tensors)
  ./test/test_safetensors --hf-export DIR  (child mode: hf_export of llama_tiny, one file)
*/
#include <cmath>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/formats/json.h"
#include "../llmc/formats/safetensors.h"
#include "../llmc/formats/hf.h"

static const std::string DIR = "test/tmp/safetensors";

static void write_raw(const std::string& path, const std::string& bytes) {
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, path);
    fclose_or_fail(f, path);
}

// A file by hand: uint64 header length (or `len_override`), the header text, the data bytes.
static void write_st_raw(const std::string& path, const std::string& header, const std::string& data, int64_t len_override = -1) {
    std::string b(8, '\0');
    const uint64_t n = len_override >= 0 ? (uint64_t)len_override : header.size();
    memcpy(&b[0], &n, 8);
    write_raw(path, b + header + data);
}

static std::string bytes_of(const void* p, size_t n) { return std::string((const char*)p, n); }

// reference f16 decode, from the definition
static double f16_ref(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp(1.0 + m / 1024.0, e - 15);
    return s ? -v : v;
}

static bool same_float(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    uint32_t x, y; memcpy(&x, &a, 4); memcpy(&y, &b, 4);
    return x == y;
}

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 3 && std::string(argv[1]) == "--open") {
        SafeTensors st;
        safetensors_open(&st, argv[2]);
        for (const SafeTensorInfo& t : st.tensors) (void)safetensors_read_f32(&st, t.name);
        safetensors_close(&st);
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--json") {
        JsonDoc d = json_parse_file(argv[2]);
        (void)d;
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--config") {
        JsonDoc d = json_parse_file(argv[2]);
        JsonRef r = d.root();
        (void)r["num_hidden_layers"].as_int();
        (void)r["rope_scaling"]["factor"].as_double();
        return 0;
    }
    if ((argc == 4 || argc == 5) && std::string(argv[1]) == "--write-dir") {
        const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        const bool dup = argc == 5 && std::string(argv[4]) == "dup";
        safetensors_write_dir(argv[2], {{"a", ST_F32, {8}, v}, {"b", ST_BF16, {8}, v}, {dup ? "a" : "c", ST_F16, {8}, v}},
                              parse_int_or_fail(argv[3], "MAXBYTES"));
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--hf-export") {
        const GPTConfig cfg = hf_load_config("test/data/hf/llama_tiny");
        const std::vector<float> params = hf_load_weights("test/data/hf/llama_tiny", cfg, gpt_param_layout(cfg));
        hf_export(argv[2], cfg, params.data(), ST_F32);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--open PATH | --json PATH | --config PATH | --write-dir DIR MAXBYTES [dup] | --hf-export DIR]", argv[0]);
    make_parent_dirs(DIR + "/x");

    // ---- conversions
    {
        bool ok = true; int bad = -1;
        for (uint32_t h = 0; h < 65536; h++) {
            const float f = st_f16_to_f32((uint16_t)h);
            const double r = f16_ref((uint16_t)h);
            if (std::isnan(r) ? !std::isnan(f) : (double)f != r || std::signbit(f) != std::signbit(r)) { ok = false; bad = (int)h; break; }
        }
        check(ok, "f16_to_f32_exact", ok ? "all 65536 bit patterns match the definition (subnormals, +-0, inf, nan)" : "pattern " + std::to_string(bad));
        ok = true;
        for (uint32_t h = 0; h < 65536; h++) {
            const float f = st_bf16_to_f32((uint16_t)h);
            uint32_t b; memcpy(&b, &f, 4);
            if (b != h << 16) ok = false;
            if (!std::isnan(f) && st_f32_to_bf16(f) != h) ok = false;
            if (std::isnan(f) && !std::isnan(st_bf16_to_f32(st_f32_to_bf16(f)))) ok = false;
        }
        check(ok, "bf16_roundtrip_exact", "bf16 -> f32 -> bf16 is the identity on all 65536 patterns (NaN stays NaN)");
        // round to nearest even at the halfway points
        const float one = 1.0f;
        uint32_t b1; memcpy(&b1, &one, 4);
        auto f_of = [](uint32_t b) { float f; memcpy(&f, &b, 4); return f; };
        const bool rne = st_f32_to_bf16(f_of(b1 + 0x8000)) == 0x3F80 &&     // halfway, even below: down
                         st_f32_to_bf16(f_of(b1 + 0x18000)) == 0x3F82 &&    // halfway, odd below: up
                         st_f32_to_bf16(f_of(b1 + 0x8001)) == 0x3F81 &&     // above halfway: up
                         st_f32_to_bf16(f_of(b1 + 0x7FFF)) == 0x3F80 &&     // below halfway: down
                         st_f32_to_bf16(f_of(0x7F7FFFFFu)) == 0x7F80;        // FLT_MAX rounds to inf
        check(rne, "f32_to_bf16_rne", "round to nearest even at and around halfway points");
        // fp32 -> F16: the identity on F16 values, and at every midpoint between neighbouring finite
        // F16 values (exact in fp32) ties go to the even pattern, one fp32 ulp either side to the nearer
        ok = true; bad = -1;
        for (uint32_t h = 0; h < 65536 && ok; h++) {
            const float f = st_f16_to_f32((uint16_t)h);
            if (std::isnan(f) ? !std::isnan(st_f16_to_f32(st_f32_to_f16(f))) : st_f32_to_f16(f) != h) { ok = false; bad = (int)h; }
        }
        for (uint32_t h = 0; h < 0x7BFF && ok; h++) {
            const float lo = st_f16_to_f32((uint16_t)h), hi = st_f16_to_f32((uint16_t)(h + 1));
            const float mid = (float)(((double)lo + (double)hi) / 2);
            const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            for (int s = 0; s < 2 && ok; s++) {
                const uint16_t sg = s ? 0x8000 : 0;
                const float m = s ? -mid : mid;
                if (st_f32_to_f16(m) != (even | sg) || st_f32_to_f16(nextafterf(m, 0.0f)) != (h | sg) ||
                    st_f32_to_f16(nextafterf(m, s ? -INFINITY : INFINITY)) != ((h + 1) | sg)) { ok = false; bad = (int)h; }
            }
        }
        const bool edges = st_f32_to_f16(65519.99f) == 0x7BFF && st_f32_to_f16(65520.0f) == 0x7C00 && st_f32_to_f16(1e30f) == 0x7C00 &&
                           st_f32_to_f16(-INFINITY) == 0xFC00 && st_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000 &&
                           st_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)) == 0x0001 && st_f32_to_f16(-1e-30f) == 0x8000 &&
                           std::isnan(st_f16_to_f32(st_f32_to_f16(NAN)));
        check(ok && edges, "f32_to_f16_rne", ok ? "identity on all 65536 F16 patterns; ties to even at all 2x31743 midpoints, nearer "
                                                  "one ulp off; 65520 -> inf, 2^-25 -> 0, NaN stays NaN"
                                                : "pattern " + std::to_string(bad));
    }

    // ---- round trip
    const std::string rt = DIR + "/rt.safetensors";
    std::vector<float> a(3 * 5), b(7), c(2 * 2 * 2);
    for (size_t i = 0; i < a.size(); i++) a[i] = 0.1f * (float)i - 0.7f;
    for (size_t i = 0; i < b.size(); i++) b[i] = st_bf16_to_f32(st_f32_to_bf16(1.5f - 0.37f * (float)i));  // bf16-representable
    for (size_t i = 0; i < c.size(); i++) c[i] = 1e-3f * (float)(i * i) + 3.14159f;
    {
        std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "a \"quoted\" line\nand a \\ backslash, caf\xc3\xa9"}};
        safetensors_write(rt, {{"model.embed_tokens.weight", ST_F32, {3, 5}, a.data()},
                               {"model.norm.weight", ST_BF16, {7}, b.data()},
                               {"lm_head.weight", ST_BF16, {2, 2, 2}, c.data()},
                               {"empty", ST_F32, {0, 4}, nullptr}},
                          meta);
        SafeTensors st;
        safetensors_open(&st, rt);
        check(st.tensors.size() == 4 && st.metadata == meta, "roundtrip_listing",
              std::to_string(st.tensors.size()) + " tensors, metadata with escapes round trips");
        const SafeTensorInfo& ti = safetensors_get(&st, "model.norm.weight");
        check(ti.dtype == ST_BF16 && ti.shape == std::vector<int64_t>{7} && ti.numel == 7, "roundtrip_info", "dtype BF16 shape [7]");
        std::vector<float> ra = safetensors_read_f32(&st, "model.embed_tokens.weight");
        std::vector<float> rb = safetensors_read_f32(&st, "model.norm.weight");
        std::vector<float> rc = safetensors_read_f32(&st, "lm_head.weight");
        bool ok = ra.size() == a.size() && rb.size() == b.size() && rc.size() == c.size();
        for (size_t i = 0; ok && i < a.size(); i++) ok = same_float(ra[i], a[i]);
        for (size_t i = 0; ok && i < b.size(); i++) ok = same_float(rb[i], b[i]);
        for (size_t i = 0; ok && i < c.size(); i++) ok = same_float(rc[i], st_bf16_to_f32(st_f32_to_bf16(c[i])));
        check(ok, "roundtrip_values", "F32 bit-exact, BF16 = round-to-nearest-even of the fp32 input");
        check(safetensors_read_f32(&st, "empty").empty() && safetensors_find(&st, "nope") == nullptr, "roundtrip_empty", "0-element tensor, absent name");
        // header length is a multiple of 8, data follows it
        std::string raw = read_file_or_fail(rt);
        uint64_t n; memcpy(&n, raw.data(), 8);
        check(n % 8 == 0 && raw.size() == 8 + n + 15 * 4 + 7 * 2 + 8 * 2, "roundtrip_layout",
              "header padded to 8 bytes, file = 8 + header + data exactly");
        safetensors_close(&st);
        check(!file_exists(rt + ".tmp"), "atomic_write", "no .tmp left behind");
    }

    // ---- a file in the layout other writers produce (F16, unsorted offsets, no metadata, no padding)
    {
        const uint16_t h[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};  // 1, -2, 2^-24, 65504
        const float f[2] = {0.25f, -1e30f};
        const std::string hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                                "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}";
        write_st_raw(DIR + "/hand.safetensors", hdr, bytes_of(h, 8) + bytes_of(f, 8));
        SafeTensors st;
        safetensors_open(&st, DIR + "/hand.safetensors");
        std::vector<float> rh = safetensors_read_f32(&st, "h"), rw = safetensors_read_f32(&st, "w");
        const bool ok = rh.size() == 4 && rh[0] == 1.0f && rh[1] == -2.0f && rh[2] == ldexpf(1.0f, -24) && rh[3] == 65504.0f &&
                        rw.size() == 2 && rw[0] == 0.25f && rw[1] == -1e30f;
        check(ok, "hand_built_f16", "F16 values 1, -2, 2^-24, 65504 and F32 values read back exactly");
        safetensors_close(&st);
    }

    // ---- sharded
    const std::string sd = DIR + "/sharded";
    make_parent_dirs(sd + "/x");
    {
        safetensors_write(sd + "/model-00001-of-00002.safetensors", {{"x", ST_F32, {15}, a.data()}, {"y", ST_BF16, {7}, b.data()}});
        safetensors_write(sd + "/model-00002-of-00002.safetensors", {{"z", ST_F32, {8}, c.data()}});
        write_raw(sd + "/model.safetensors.index.json",
                  "{\"metadata\": {\"total_size\": 120},\n \"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", "
                  "\"y\": \"model-00001-of-00002.safetensors\", \"z\": \"model-00002-of-00002.safetensors\"}}\n");
        SafeTensors st;
        safetensors_open(&st, sd);  // the directory
        std::vector<float> rz = safetensors_read_f32(&st, "z"), ry = safetensors_read_f32(&st, "y");
        bool ok = st.files.size() == 2 && st.tensors.size() == 3 && rz.size() == 8 && ry.size() == 7;
        for (size_t i = 0; ok && i < 8; i++) ok = same_float(rz[i], c[i]);
        for (size_t i = 0; ok && i < 7; i++) ok = same_float(ry[i], b[i]);
        check(ok, "sharded_read", "directory with model.safetensors.index.json: 2 shards, 3 tensors read back");
        safetensors_close(&st);
    }

    // ---- sharded writer (safetensors_write_dir)
    {
        // F32, F16 and BF16 tensors; values exact in their dtype, so the read back is bit-identical
        std::vector<std::vector<float>> vals;
        const std::vector<std::pair<int, std::vector<int64_t>>> spec = {
            {ST_F32, {4, 2}}, {ST_BF16, {8}}, {ST_F16, {3, 3}}, {ST_F32, {40}}, {ST_F32, {0, 3}}, {ST_F16, {10}}, {ST_BF16, {2, 5}}};
        std::vector<SafeTensorWrite> w;
        const char* names[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_norm.weight",
                               "lm_head.weight", "empty", "model.norm.weight", "model.layers.1.mlp.down_proj.weight"};
        for (size_t k = 0; k < spec.size(); k++) {
            int64_t n = 1;
            for (int64_t d : spec[k].second) n *= d;
            std::vector<float> v((size_t)n);
            for (int64_t i = 0; i < n; i++) {
                const float x = (0.37f * (float)(i + 1) - 2.1f) * (float)(k + 1) + (i == 3 ? 1e-6f : 0.0f);  // one F16 subnormal
                v[(size_t)i] = spec[k].first == ST_BF16 ? st_bf16_to_f32(st_f32_to_bf16(x))
                             : spec[k].first == ST_F16 ? st_f16_to_f32(st_f32_to_f16(x)) : x;
            }
            vals.push_back(v);
        }
        for (size_t k = 0; k < spec.size(); k++) w.push_back({names[k], spec[k].first, spec[k].second, vals[k].data()});
        // data bytes 32, 16, 18, 160, 0, 20, 20: at 64 bytes -> {32+16}, {18}, {160 alone}, {0+20+20}
        const std::vector<std::pair<size_t, size_t>> plan = safetensors_plan_shards({32, 16, 18, 160, 0, 20, 20}, 64);
        const std::vector<std::pair<size_t, size_t>> want_plan = {{0, 2}, {2, 1}, {3, 1}, {4, 3}};
        const bool plan_ok = plan == want_plan && safetensors_plan_shards({32, 16}, 0).size() == 1 && safetensors_plan_shards({}, 64).size() == 1 &&
                             safetensors_plan_shards({64, 64}, 64).size() == 2 && safetensors_plan_shards({100, 1, 100}, 64).size() == 3;
        check(plan_ok, "shard_plan", "in order, at most the limit per shard, a larger tensor alone, 0 = one shard");

        const std::string wd = DIR + "/written";
        if (file_exists(wd)) for (const char* n : {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                                   "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                                                   "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                                   "model-00003-of-00003.safetensors", "model.safetensors.index.json", "model.safetensors"})
            unlink((wd + "/" + n).c_str());
        make_parent_dirs(wd + "/x");
        const std::map<std::string, std::string> meta = {{"format", "pt"}};
        std::vector<std::string> files = safetensors_write_dir(wd, w, 64, meta);
        const std::vector<std::string> want_files = {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                                     "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                                                     "model.safetensors.index.json"};
        bool ok = files == want_files && !file_exists(wd + "/model.safetensors");
        for (const std::string& f : files) ok = ok && file_exists(wd + "/" + f) && !file_exists(wd + "/" + f + ".tmp");
        check(ok, "sharded_write_files", "4 shards named model-0000k-of-00004.safetensors, the index, no model.safetensors, no .tmp left");

        auto read_back = [&](const std::string& path, const std::string& name, size_t n_files, int64_t limit) {
            SafeTensors st;
            safetensors_open(&st, path);
            bool good = st.files.size() == n_files && st.tensors.size() == w.size() && st.metadata == meta;
            for (size_t k = 0; good && k < w.size(); k++) {
                const SafeTensorInfo& t = safetensors_get(&st, w[k].name);
                std::vector<float> r = safetensors_read_f32(&st, w[k].name);
                good = t.dtype == w[k].dtype && t.shape == w[k].shape && r.size() == vals[k].size();
                for (size_t i = 0; good && i < r.size(); i++) good = same_float(r[i], vals[k][i]);
            }
            // every file holds at most 64 data bytes, or exactly one tensor
            std::vector<int64_t> fbytes(st.files.size(), 0);
            std::vector<int> fcount(st.files.size(), 0);
            for (const SafeTensorInfo& t : st.tensors) { fbytes[t.file] += t.end - t.begin; fcount[t.file]++; }
            for (size_t f = 0; good && f < fbytes.size() && n_files > 1; f++) good = fbytes[f] <= limit || fcount[f] == 1;
            check(good, name, path + ": " + std::to_string(st.files.size()) + " file(s), F32/F16/BF16 values, dtypes, shapes and metadata "
                                     "bit-identical" + (n_files > 1 ? "; each shard <= " + std::to_string(limit) + " data bytes or one tensor" : ""));
            safetensors_close(&st);
        };
        read_back(wd + "/model.safetensors.index.json", "sharded_write_read_index", 4, 64);
        read_back(wd, "sharded_write_read_dir", 4, 64);
        {
            SafeTensors st;
            safetensors_open(&st, wd + "/model-00003-of-00004.safetensors");
            check(st.tensors.size() == 1 && st.tensors[0].name == "lm_head.weight", "sharded_write_big_tensor_alone",
                  "lm_head.weight (160 bytes > 64) is the only tensor of model-00003-of-00004");
            safetensors_close(&st);
        }
        {
            const std::string text = read_file_or_fail(wd + "/model.safetensors.index.json");
            JsonDoc d = json_parse(text, "index");
            JsonRef wm = d.root()["weight_map"];
            std::map<std::string, int> count;
            bool good = wm.size() == w.size() && d.root()["metadata"]["total_size"].as_int64() == 32 + 16 + 18 + 160 + 0 + 20 + 20 &&
                        d.root()["metadata"]["total_parameters"].as_int64() == 8 + 8 + 9 + 40 + 0 + 10 + 10 &&
                        text.compare(0, 18, "{\n  \"metadata\": {\n") == 0 && text.back() == '\n';
            for (size_t k = 0; k < wm.size(); k++) {
                count[wm.key_at(k)]++;
                if (k) good = good && wm.key_at(k - 1) < wm.key_at(k);
            }
            for (size_t k = 0; k < w.size(); k++) good = good && count[w[k].name] == 1;
            good = good && wm["lm_head.weight"].as_string() == "model-00003-of-00004.safetensors" &&
                   wm["empty"].as_string() == "model-00004-of-00004.safetensors" &&
                   wm["model.embed_tokens.weight"].as_string() == "model-00001-of-00004.safetensors";
            check(good, "sharded_write_index", "weight_map names every tensor once, sorted, with its shard; total_size 266, "
                                               "total_parameters 85; laid out as save_pretrained's json.dumps(indent=2)");
        }
        // rewritten with another limit: 3 shards; the old of-00004 shards are gone
        files = safetensors_write_dir(wd, w, 100, meta);
        ok = files.size() == 4 && files[0] == "model-00001-of-00003.safetensors" && !file_exists(wd + "/model-00001-of-00004.safetensors") &&
             !file_exists(wd + "/model-00004-of-00004.safetensors") && file_exists(wd + "/model-00003-of-00003.safetensors");
        check(ok, "sharded_rewrite_removes_stale", "a rewrite into 3 shards removes the 4 stale ones after its index");
        read_back(wd, "sharded_rewrite_read", 3, 100);
        // the other form is refused before anything is written
        check_fails_one_line("sharded_dir_refuses_one_file", {"--write-dir", wd, "0"}, wd + ": holds model.safetensors.index.json");
        check(!file_exists(wd + "/model.safetensors") && !file_exists(wd + "/model.safetensors.tmp"), "sharded_dir_untouched",
              "nothing written by the refused one-file write");
        // one shard: plain model.safetensors, no index (limit 0, or a limit everything fits in)
        for (int64_t lim : {(int64_t)0, (int64_t)1000}) {
            const std::string od = DIR + "/written_one_" + std::to_string(lim);
            make_parent_dirs(od + "/x");
            unlink((od + "/model.safetensors").c_str());
            files = safetensors_write_dir(od, w, lim, meta);
            check(files == std::vector<std::string>{"model.safetensors"} && !file_exists(od + "/model.safetensors.index.json") &&
                  !file_exists(od + "/model-00001-of-00001.safetensors"), "one_shard_no_index_" + std::to_string(lim),
                  "limit " + std::to_string(lim) + ": model.safetensors only");
            read_back(od, "one_shard_read_" + std::to_string(lim), 1, lim);
            if (lim == 0) {
                check_fails_one_line("one_file_dir_refuses_shards", {"--write-dir", od, "8"}, od + ": holds model.safetensors, which transformers");
                check(!file_exists(od + "/model-00001-of-00003.safetensors") && !file_exists(od + "/model-00001-of-00003.safetensors.tmp"),
                      "one_file_dir_untouched", "no shard written by the refused sharded write");
            }
        }
        const std::string dd = DIR + "/written_dup";
        make_parent_dirs(dd + "/x");
        check_fails_one_line("sharded_write_duplicate", {"--write-dir", dd, "8", "dup"}, dd + ": tensor a is written twice");
        check(!file_exists(dd + "/model-00001-of-00003.safetensors.tmp") && !file_exists(dd + "/model-00001-of-00003.safetensors"),
              "sharded_write_duplicate_untouched", "a name in two shards is refused before any file is written");
        check_fails_one_line("write_dir_not_a_directory", {"--write-dir", DIR + "/none/such", "8"}, DIR + "/none/such: not a directory");
        // what the reader rejects in a written directory: a missing shard, an index naming the wrong shard
        const std::string ix = wd + "/model.safetensors.index.json";
        std::string text = read_file_or_fail(ix);
        const size_t p = text.find("\"lm_head.weight\": \"model-00002-of-00003");
        if (p != std::string::npos) {
            std::string t2 = text;
            t2.replace(p + strlen("\"lm_head.weight\": \"model-0000"), 1, "1");
            write_raw(wd + "/wrong.index.json", t2);
            check_fails_one_line("written_index_wrong_shard", {"--open", wd + "/wrong.index.json"},
                                 "weight_map.lm_head.weight: tensor is not in " + wd + "/model-00001-of-00003.safetensors");
        } else {
            check(false, "written_index_wrong_shard", "lm_head.weight is not in model-00002-of-00003 in " + ix);
        }
        if (rename((wd + "/model-00002-of-00003.safetensors").c_str(), (wd + "/moved.safetensors").c_str()) != 0) fail("rename failed");
        check_fails_one_line("written_missing_shard", {"--open", wd}, ix + ": shard " + wd + "/model-00002-of-00003.safetensors named in weight_map does not exist");
    }

    // ---- hf_export sharded (train_gpt --export-hf-shard-mb): llama_tiny (bf16 weights) as F32, import gives the same bits
    {
        HFInfo info;
        const GPTConfig cfg = hf_load_config("test/data/hf/llama_tiny", &info);
        const std::vector<float> params = hf_load_weights("test/data/hf/llama_tiny", cfg, gpt_param_layout(cfg), &info);
        HFFlags fl;
        fl.export_shard_mb = 0.02f;
        const int64_t lim = hf_shard_bytes(fl);
        fl.export_shard_mb = 1e-9f;
        const int64_t tiny = hf_shard_bytes(fl);
        fl.export_shard_mb = 0;
        check(lim == 20000 && tiny == 1 && hf_shard_bytes(fl) == 0 && hf_shard_bytes(HFFlags()) == 5000000000LL, "hf_shard_bytes",
              "--export-hf-shard-mb 0.02 -> 20000 bytes, 1e-9 -> 1, 0 -> one file, default 5000 MB");
        for (const char* sub : {"hf_sharded", "hf_single"}) {
            const std::string od = DIR + "/" + sub;
            make_parent_dirs(od + "/x");
            for (const char* n : {"model.safetensors", "model.safetensors.index.json", "config.json"}) unlink((od + "/" + n).c_str());
            const bool sharded = std::string(sub) == "hf_sharded";
            const int nfiles = hf_export(od, cfg, params.data(), ST_F32, info.bos_token_id, info.eos_token_id, sharded ? lim : 0);
            HFInfo info2;
            const GPTConfig c2 = hf_load_config(od, &info2);
            const std::vector<float> p2 = hf_load_weights(od, c2, gpt_param_layout(c2), &info2);
            bool same = p2.size() == params.size() && memcmp(p2.data(), params.data(), p2.size() * 4) == 0 &&
                        file_exists(od + "/model.safetensors.index.json") == sharded && file_exists(od + "/model.safetensors") == !sharded;
            SafeTensors st;
            safetensors_open(&st, od);
            same = same && (int)st.files.size() == nfiles && (sharded ? nfiles > 5 : nfiles == 1) && st.metadata.at("format") == "pt";
            safetensors_close(&st);
            check(same, std::string("hf_export_") + (sharded ? "sharded" : "single"),
                  std::to_string(nfiles) + " safetensors file(s)" + (sharded ? " + index" : ", no index") +
                      "; re-import gives all " + std::to_string(params.size()) + " parameters bit-identical");
        }
        // a one-file export into the sharded directory is refused (readers would take the index)
        check_fails_one_line("hf_export_onto_sharded", {"--hf-export", DIR + "/hf_sharded"}, DIR + "/hf_sharded: holds model.safetensors.index.json");
    }

    // ---- JSON reader
    {
        JsonDoc d = json_parse("{\"s\": \"a\\u00e9\\ud83d\\ude00\\n\\t\\\"\\/\", \"i\": -9007199254740993, \"big\": 9223372036854775807,"
                               " \"f\": 1.5e-3, \"t\": true, \"n\": null, \"arr\": [1, [2, {\"k\": []}]], \"o\": {}}",
                               "inline.json");
        JsonRef r = d.root();
        const bool ok = r["s"].as_string() == "a\xc3\xa9\xf0\x9f\x98\x80\n\t\"/" && r["i"].as_int64() == -9007199254740993LL &&
                        r["big"].as_int64() == INT64_MAX && r["f"].as_double() == 1.5e-3 && r["t"].as_bool() && r["n"].is_null() &&
                        r["arr"].size() == 2 && r["arr"].at(1).at(1)["k"].size() == 0 && r["o"].size() == 0 &&
                        r.get_double("absent", 2.5) == 2.5 && r.get_int64("n", 7) == 7;
        check(ok, "json_values", "escapes incl. \\u surrogate pairs, exact 64-bit integers, nesting, defaults");
        JsonValue w = json_object();
        w.set("name", json_string("q\"\\\n\x01")).set("n", json_int(-42)).set("x", json_double(0.1)).set("b", json_bool(false));
        w.set("a", json_array().push(json_null()).push(json_int(3)));
        const std::string text = json_serialize(w);
        JsonDoc d2 = json_parse(text, "written.json");
        const bool ok2 = d2.root()["name"].as_string() == "q\"\\\n\x01" && d2.root()["n"].as_int() == -42 &&
                         d2.root()["x"].as_double() == 0.1 && !d2.root()["b"].as_bool() && d2.root()["a"].at(1).as_int() == 3;
        check(ok2, "json_writer_roundtrip", text);
    }
    auto json_bad = [&](const std::string& name, const std::string& text, const std::string& needle) {
        const std::string p = DIR + "/" + name + ".json";
        write_raw(p, text);
        check_fails_one_line("json_" + name, {"--json", p}, needle);
    };
    json_bad("trailing_comma", "{\"a\": 1,}", "byte 8");
    json_bad("unterminated", "{\"a\": \"xy", "expected '\"' closing the string");
    json_bad("leading_zero", "[01]", "byte 2");
    json_bad("bad_escape", "[\"\\x\"]", "valid escape");
    json_bad("lone_surrogate", "[\"\\udc00\"]", "surrogate");
    json_bad("control_char", "[\"a\tb\"]", "control characters");
    json_bad("duplicate_key", "{\"a\": 1, \"a\": 2}", "duplicate keys");
    json_bad("trailing_garbage", "{} x", "end of input after the value");
    json_bad("nan", "[NaN]", "a value");
    json_bad("too_deep", std::string(200, '[') + std::string(200, ']'), "nesting");
    json_bad("empty", "", "end of input");
    json_bad("bad_utf8", "[\"\xc3\x28\"]", "UTF-8");
    {
        const std::string p = DIR + "/config.json";
        write_raw(p, "{\"num_hidden_layers\": 2, \"rope_scaling\": {\"factor\": \"8\"}}");
        check_fails_one_line("json_wrong_type", {"--config", p}, "config.json: rope_scaling.factor: expected a number, found a string");
        write_raw(p, "{\"num_hidden_layers\": 2.5}");
        check_fails_one_line("json_not_integer", {"--config", p}, "config.json: num_hidden_layers: expected an integer");
        write_raw(p, "{\"num_hidden_layers\": 2, \"rope_scaling\": {}}");
        check_fails_one_line("json_missing_field", {"--config", p}, "config.json: rope_scaling.factor: missing field");
    }

    // ---- bad safetensors files: exit 1, one line naming the file
    const std::string f4 = bytes_of(a.data(), 16);  // 16 bytes of data
    auto st_bad = [&](const std::string& name, const std::string& header, const std::string& data, const std::string& needle,
                      int64_t len_override = -1) {
        const std::string p = DIR + "/bad_" + name + ".safetensors";
        write_st_raw(p, header, data, len_override);
        check_fails_one_line("bad_" + name, {"--open", p}, p + needle);
    };
    const std::string ok_hdr = "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    st_bad("header_past_eof", ok_hdr, f4, ": header length 1000000 is past the end of the file", 1000000);
    st_bad("huge_header_len", ok_hdr, f4, ": header length 4611686018427387904 is past the end of the file", (int64_t)1 << 62);
    {
        const std::string p = DIR + "/bad_short.safetensors";
        write_raw(p, "abc");
        check_fails_one_line("bad_short_file", {"--open", p}, p + ": file is 3 bytes");
    }
    st_bad("bad_json", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", f4, " (header): invalid JSON at byte 54 (end of input): expected ',' or '}'");
    st_bad("not_object", "[1,2]", f4, ": (top level): expected a JSON object of tensors");
    st_bad("offsets_past_end", "{\"t\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", f4, ": t.data_offsets: end 32 is past the end of the data section");
    st_bad("shape_offset_mismatch", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", f4, ": t: shape holds 3 F32 elements = 12 bytes, but data_offsets span 16 bytes");
    st_bad("bf16_size_mismatch", "{\"t\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", f4, ": t: shape holds 4 BF16 elements = 8 bytes, but data_offsets span 16");
    st_bad("overlap",
           "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           f4, ": tensors t [0, 8) and u [4, 12) overlap");
    st_bad("unknown_dtype", "{\"t\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", f4, ": t.dtype: unsupported dtype 'I64'");
    st_bad("reversed_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", f4, ": t.data_offsets: end 0 is before begin 8");
    st_bad("missing_shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", f4, ": t.shape: missing field");
    st_bad("negative_dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", f4, ": t.shape[0]: integer -4 is out of range");
    st_bad("metadata_not_string", "{\"__metadata__\":{\"a\":1},\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", f4,
           ": __metadata__.a: expected a string");
    // the tensors must tile the data section exactly (the reference library's rule)
    st_bad("gap", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
           f4, ": u.data_offsets: begins at 8, expected 4 (bytes [4, 8) of the data belong to no tensor)");
    st_bad("leading_gap", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}", f4, ": t.data_offsets: begins at 4, expected 0");
    st_bad("trailing_bytes", ok_hdr, f4 + "xyz", ": the tensors cover 16 bytes of data, but 19 follow the 55-byte header");
    st_bad("header_one_short", ok_hdr + "  ", f4, ": the tensors cover 16 bytes of data, but 17 follow the 56-byte header", (int64_t)ok_hdr.size() + 1);
    st_bad("header_one_long", ok_hdr, " " + f4.substr(1), ": t.data_offsets: end 16 is past the end of the data section (15 bytes)", (int64_t)ok_hdr.size() + 1);
    st_bad("empty_tensor_outside", ok_hdr.substr(0, ok_hdr.size() - 1) + ",\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[20,20]}}", f4 + f4,
           ": e.data_offsets: begins at 20, expected 16");
    st_bad("empty_tensor_inside", ok_hdr.substr(0, ok_hdr.size() - 1) + ",\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", f4,
           ": tensors t [0, 16) and e [4, 4) overlap");
    st_bad("no_tensors_with_data", "{}", f4, ": the tensors cover 0 bytes of data, but 16 follow");
    {   // tensors listed out of offset order, empty tensors at the seams, no data at all: all fine
        const std::string p = DIR + "/unordered.safetensors";
        write_st_raw(p, "{\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},\"e\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[8,8]},"
                        "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]}}", f4);
        SafeTensors st;
        safetensors_open(&st, p);
        const bool ok = safetensors_read_f32(&st, "u") == std::vector<float>(a.begin() + 2, a.begin() + 4) &&
                        safetensors_read_f32(&st, "t") == std::vector<float>(a.begin(), a.begin() + 2);
        safetensors_close(&st);
        const std::string q = DIR + "/no_data.safetensors";
        write_st_raw(q, "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}", "");
        safetensors_open(&st, q);
        const bool ok2 = st.tensors.size() == 1 && st.tensors[0].numel == 0;
        safetensors_close(&st);
        check(ok && ok2, "coverage_accepts", "tensors listed out of offset order, empty tensors at the seams and a file of empty tensors are read");
    }
    {
        const std::string p = DIR + "/missing.safetensors";
        check_fails_one_line("missing_file", {"--open", p}, p + ": cannot open");
    }
    // sharded: an index entry whose tensor is not in the shard, a missing shard, a tensor in two shards
    {
        const std::string ix = sd + "/bad1.index.json";
        write_raw(ix, "{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", \"w\": \"model-00002-of-00002.safetensors\"}}");
        check_fails_one_line("index_missing_entry", {"--open", ix}, ix + ": weight_map.w: tensor is not in");
        write_raw(ix, "{\"weight_map\": {\"x\": \"model-00002-of-00002.safetensors\", \"z\": \"model-00002-of-00002.safetensors\"}}");
        check_fails_one_line("index_wrong_shard", {"--open", ix}, ix + ": weight_map.x: tensor is not in");
        write_raw(ix, "{\"weight_map\": {\"x\": \"model-00009-of-00009.safetensors\"}}");
        check_fails_one_line("index_missing_shard", {"--open", ix}, ix + ": shard");
        write_raw(ix, "{\"metadata\": {}}");
        check_fails_one_line("index_no_weight_map", {"--open", ix}, ix + ": weight_map: missing field");
        safetensors_write(sd + "/dup.safetensors", {{"x", ST_F32, {15}, a.data()}});
        write_raw(ix, "{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", \"q\": \"dup.safetensors\"}}");
        check_fails_one_line("index_duplicate_tensor", {"--open", ix}, "tensor x is also in");
    }

    printf("%s\n", n_failed ? "SOME TESTS FAILED" : "all safetensors tests passed");
    return n_failed ? 1 : 0;
}
