/*
Tests of llmc/safetensors.h (and llmc/json.h) on files written into
test/tmp/safetensors/: write/read round trip (F32 and BF16, __metadata__,
sharded with model.safetensors.index.json), exact BF16/F16 conversions over
all 65536 bit patterns, a hand-built file in the layout other writers produce,
JSON lookups and JSON errors, and every bad case exiting 1 with one stderr
line naming the file (checked on a child process: this binary in a child mode).

  make test/test_safetensors && ./test/test_safetensors
  ./test/test_safetensors --open PATH      (child mode: open and read every tensor)
  ./test/test_safetensors --json PATH      (child mode: parse a JSON file)
  ./test/test_safetensors --config PATH    (child mode: read config fields)
*/
#include <cmath>
#include <string>
#include <vector>
#include "../llmc/utils.h"
#include "test_util.h"
#include "../llmc/json.h"
#include "../llmc/safetensors.h"

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
    if (argc != 1) fail("usage: %s [--open PATH | --json PATH | --config PATH]", argv[0]);
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
