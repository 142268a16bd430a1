/*
Hugging Face safetensors, read and write (host side, no CUDA).

Format: uint64 N (little-endian), N bytes of JSON header
{name: {"dtype": "BF16"|"F16"|"F32", "shape": [...], "data_offsets": [begin, end]},
 "__metadata__": {string: string}}, then the data; offsets are relative to the
end of the header. Sharded models have model.safetensors.index.json:
{"metadata": {...}, "weight_map": {tensor name: shard file name}}.

Reading validates, before any tensor is used, and fails with one line naming
the file: header length vs file size, the JSON header, dtype in
{BF16, F16, F32}, shape product * dtype size == data_offsets span, offsets
inside the data section, and the tensors in offset order covering the data
section exactly (no gap, no overlap, no trailing byte), and for an index every
weight_map entry present in the shard it names (and no tensor in two shards).

    SafeTensors st;
    safetensors_open(&st, "model.safetensors");           // or the .index.json, or a directory
    for (const SafeTensorInfo& t : st.tensors) ...          // name, dtype, shape
    std::vector<float> w = safetensors_read_f32(&st, "model.norm.weight");  // converts BF16/F16
    safetensors_close(&st);

Writing (F32, F16 or BF16 from fp32 host data, with __metadata__) is atomic:
PATH.tmp is written, flushed, fsync'ed and renamed over PATH; the directory is
fsync'ed. safetensors_write_dir(dir, tensors, max_shard_bytes, metadata) writes a
model directory as Hugging Face's save_pretrained does: tensors split in order
into shards of at most max_shard_bytes of data (a larger tensor alone in its
shard), model-00001-of-0000N.safetensors ... then model.safetensors.index.json,
renamed into place last; one shard is a plain model.safetensors with no index.
*/
#pragma once
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>
#include "../core/utils.h"
#include "json.h"

enum SafeDtype { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 };
#define SAFETENSORS_MAX_HEADER ((uint64_t)100 << 20)  // the limit the HF library enforces

static inline const char* st_dtype_name(int d) { return d == ST_F32 ? "F32" : d == ST_F16 ? "F16" : d == ST_BF16 ? "BF16" : "?"; }
static inline int st_dtype_size(int d) { return d == ST_F32 ? 4 : 2; }

// ---- exact conversions
static inline float st_bf16_to_f32(uint16_t h) {
    const uint32_t b = (uint32_t)h << 16;
    float f; memcpy(&f, &b, 4); return f;
}
// round to nearest even; NaN stays NaN (quiet), inf stays inf
static inline uint16_t st_f32_to_bf16(float f) {
    uint32_t b; memcpy(&b, &f, 4);
    if ((b & 0x7F800000u) == 0x7F800000u && (b & 0x007FFFFFu)) return (uint16_t)((b >> 16) | 0x0040u);
    b += 0x7FFFu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}
static inline float st_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, b;
    if (exp == 0x1F) b = sign | 0x7F800000u | (man << 13);          // inf / nan
    else if (exp != 0) b = sign | ((exp + 112u) << 23) | (man << 13);  // normal
    else if (man == 0) b = sign;                                      // +-0
    else {                                                            // subnormal: normalise
        int e = 113;
        while (!(man & 0x400u)) { man <<= 1; e--; }
        b = sign | ((uint32_t)e << 23) | ((man & 0x3FFu) << 13);
    }
    float f; memcpy(&f, &b, 4); return f;
}

struct SafeTensorInfo {
    std::string name;
    int dtype;                   // SafeDtype
    std::vector<int64_t> shape;
    int64_t numel;
    int64_t begin, end;          // relative to the file's data section
    int file;                    // index into SafeTensors::files
};

struct SafeTensorsFile {
    std::string path;
    int64_t data_start;          // 8 + N
    int64_t size;
    FILE* f;
};

struct SafeTensors {
    std::vector<SafeTensorsFile> files;
    std::vector<SafeTensorInfo> tensors;           // file order, shard by shard
    std::map<std::string, size_t> by_name;
    std::map<std::string, std::string> metadata;   // __metadata__ (of the first shard)
};

static inline bool st_ends_with(const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Reads and validates one file's header; appends its tensors.
static inline void safetensors_add_file(SafeTensors* st, const std::string& path) {
    struct stat sb;
    if (stat(path.c_str(), &sb) != 0) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
    if (!S_ISREG(sb.st_mode)) fail("%s: not a regular file", path.c_str());
    FILE* f = fopen_or_fail(path, "rb");
    const int64_t size = (int64_t)file_size_or_fail(f, path);
    if (size < 8) fail("%s: file is %lld bytes, expected at least the 8-byte header length", path.c_str(), (long long)size);
    uint64_t n;
    fread_exact(&n, 8, f, path, "header length");
    if (n > (uint64_t)(size - 8))
        fail("%s: header length %llu is past the end of the file (%lld bytes)", path.c_str(), (unsigned long long)n, (long long)size);
    if (n > SAFETENSORS_MAX_HEADER) fail("%s: header length %llu is more than the limit of %llu", path.c_str(), (unsigned long long)n, (unsigned long long)SAFETENSORS_MAX_HEADER);
    if (n < 2) fail("%s: header length %llu is too short for a JSON object", path.c_str(), (unsigned long long)n);
    std::string text((size_t)n, '\0');
    fread_exact(&text[0], (size_t)n, f, path, "header");
    // the writer pads with spaces; the JSON parser skips trailing whitespace
    JsonDoc doc = json_parse(text, path + " (header)", (size_t)SAFETENSORS_MAX_HEADER);
    doc.file = path;  // key-path errors name the file
    JsonRef root = doc.root();
    if (!root.is_object()) root.type_error("a JSON object of tensors");

    SafeTensorsFile sf;
    sf.path = path;
    sf.data_start = 8 + (int64_t)n;
    sf.size = size;
    sf.f = f;
    const int file_index = (int)st->files.size();
    const int64_t data_size = size - sf.data_start;
    st->files.push_back(sf);

    std::vector<size_t> mine;
    for (size_t k = 0; k < root.size(); k++) {
        const std::string name = root.key_at(k);
        JsonRef t = root.value_at(k);
        if (name == "__metadata__") {
            if (!t.is_object()) t.type_error("an object of strings");
            for (size_t j = 0; j < t.size(); j++)
                if (file_index == 0) st->metadata[t.key_at(j)] = t.value_at(j).as_string();
                else (void)t.value_at(j).as_string();
            continue;
        }
        if (!t.is_object()) t.type_error("an object {dtype, shape, data_offsets}");
        SafeTensorInfo info;
        info.name = name;
        info.file = file_index;
        const std::string& dt = t["dtype"].as_string();
        if (dt == "F32") info.dtype = ST_F32;
        else if (dt == "F16") info.dtype = ST_F16;
        else if (dt == "BF16") info.dtype = ST_BF16;
        else fail("%s: %s.dtype: unsupported dtype '%s', expected BF16, F16 or F32", path.c_str(), name.c_str(), dt.c_str());
        JsonRef shape = t["shape"];
        if (!shape.is_array()) shape.type_error("an array of dimensions");
        if (shape.size() > 16) fail("%s: %s.shape: %zu dimensions, expected at most 16", path.c_str(), name.c_str(), shape.size());
        info.numel = 1;
        for (size_t j = 0; j < shape.size(); j++) {
            const int64_t d = shape.at(j).as_int64(0, (int64_t)1 << 48);
            info.shape.push_back(d);
            if (d != 0 && info.numel > ((int64_t)1 << 62) / d)
                fail("%s: %s.shape: element count overflows", path.c_str(), name.c_str());
            info.numel *= d;
        }
        JsonRef off = t["data_offsets"];
        if (!off.is_array() || off.size() != 2) fail("%s: %s.data_offsets: expected an array [begin, end]", path.c_str(), name.c_str());
        info.begin = off.at(0).as_int64(0, INT64_MAX);
        info.end = off.at(1).as_int64(0, INT64_MAX);
        if (info.end < info.begin)
            fail("%s: %s.data_offsets: end %lld is before begin %lld", path.c_str(), name.c_str(), (long long)info.end, (long long)info.begin);
        if (info.end > data_size)
            fail("%s: %s.data_offsets: end %lld is past the end of the data section (%lld bytes)", path.c_str(), name.c_str(),
                 (long long)info.end, (long long)data_size);
        const int64_t want = info.numel * st_dtype_size(info.dtype);
        if (info.end - info.begin != want)
            fail("%s: %s: shape holds %lld %s elements = %lld bytes, but data_offsets span %lld bytes", path.c_str(), name.c_str(),
                 (long long)info.numel, dt.c_str(), (long long)want, (long long)(info.end - info.begin));
        if (st->by_name.count(name)) {
            const SafeTensorInfo& o = st->tensors[st->by_name[name]];
            fail("%s: tensor %s is also in %s", path.c_str(), name.c_str(), st->files[o.file].path.c_str());
        }
        st->by_name[name] = st->tensors.size();
        mine.push_back(st->tensors.size());
        st->tensors.push_back(info);
    }
    // The tensors, in offset order, tile the data section exactly, as the reference library
    // requires: a header length off by a byte, a gap, an overlap or trailing bytes would
    // otherwise read every tensor shifted or leave bytes no tensor owns.
    std::vector<size_t> order = mine;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const SafeTensorInfo &x = st->tensors[a], &y = st->tensors[b];
        return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
    });
    int64_t covered = 0;
    const SafeTensorInfo* prev = nullptr;
    for (size_t k : order) {
        const SafeTensorInfo& t = st->tensors[k];
        if (t.begin < covered)
            fail("%s: tensors %s [%lld, %lld) and %s [%lld, %lld) overlap", path.c_str(), prev->name.c_str(), (long long)prev->begin,
                 (long long)prev->end, t.name.c_str(), (long long)t.begin, (long long)t.end);
        if (t.begin > covered)
            fail("%s: %s.data_offsets: begins at %lld, expected %lld (bytes [%lld, %lld) of the data belong to no tensor)", path.c_str(),
                 t.name.c_str(), (long long)t.begin, (long long)covered, (long long)covered, (long long)t.begin);
        covered = t.end;
        prev = &t;
    }
    if (covered != data_size)
        fail("%s: the tensors cover %lld bytes of data, but %lld follow the %llu-byte header (header length or data size wrong)",
             path.c_str(), (long long)covered, (long long)data_size, (unsigned long long)n);
}

static inline void safetensors_open_index(SafeTensors* st, const std::string& index_path) {
    JsonDoc doc = json_parse_file(index_path, (size_t)64 << 20);
    JsonRef root = doc.root();
    JsonRef wm = root["weight_map"];
    if (!wm.is_object()) wm.type_error("an object {tensor name: file name}");
    if (wm.size() == 0) fail("%s: weight_map: expected at least one tensor", index_path.c_str());
    const size_t slash = index_path.rfind('/');
    const std::string dir = slash == std::string::npos ? std::string("") : index_path.substr(0, slash + 1);
    std::vector<std::string> shard_names;
    for (size_t k = 0; k < wm.size(); k++) {
        const std::string& fn = wm.value_at(k).as_string();
        if (fn.empty() || fn.find('/') != std::string::npos)
            fail("%s: weight_map.%s: expected a file name next to the index, found '%s'", index_path.c_str(), wm.key_at(k).c_str(), fn.c_str());
        if (std::find(shard_names.begin(), shard_names.end(), fn) == shard_names.end()) shard_names.push_back(fn);
    }
    std::sort(shard_names.begin(), shard_names.end());
    std::map<std::string, int> file_of;
    for (const std::string& fn : shard_names) {
        const std::string p = dir + fn;
        if (!file_exists(p)) fail("%s: shard %s named in weight_map does not exist", index_path.c_str(), p.c_str());
        file_of[fn] = (int)st->files.size();
        safetensors_add_file(st, p);
    }
    for (size_t k = 0; k < wm.size(); k++) {
        const std::string name = wm.key_at(k);
        const std::string& fn = wm.value_at(k).as_string();
        auto it = st->by_name.find(name);
        if (it == st->by_name.end() || st->tensors[it->second].file != file_of[fn])
            fail("%s: weight_map.%s: tensor is not in %s%s", index_path.c_str(), name.c_str(), (dir + fn).c_str(),
                 it == st->by_name.end() ? "" : (" (it is in " + st->files[st->tensors[it->second].file].path + ")").c_str());
    }
}

// path: a .safetensors file, a .safetensors.index.json, or a directory holding
// model.safetensors.index.json or model.safetensors.
static inline void safetensors_open(SafeTensors* st, const std::string& path) {
    st->files.clear(); st->tensors.clear(); st->by_name.clear(); st->metadata.clear();
    struct stat sb;
    if (stat(path.c_str(), &sb) != 0) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        const std::string d = st_ends_with(path, "/") ? path : path + "/";
        if (file_exists(d + "model.safetensors.index.json")) safetensors_open_index(st, d + "model.safetensors.index.json");
        else if (file_exists(d + "model.safetensors")) safetensors_add_file(st, d + "model.safetensors");
        else fail("%s: directory holds neither model.safetensors.index.json nor model.safetensors", path.c_str());
    } else if (st_ends_with(path, ".json")) {
        safetensors_open_index(st, path);
    } else {
        safetensors_add_file(st, path);
    }
}

static inline const SafeTensorInfo* safetensors_find(const SafeTensors* st, const std::string& name) {
    auto it = st->by_name.find(name);
    return it == st->by_name.end() ? nullptr : &st->tensors[it->second];
}

static inline const SafeTensorInfo& safetensors_get(const SafeTensors* st, const std::string& name) {
    const SafeTensorInfo* t = safetensors_find(st, name);
    if (!t) fail("%s: no tensor named %s", st->files.empty() ? "safetensors" : st->files[0].path.c_str(), name.c_str());
    return *t;
}

static inline std::string st_shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t k = 0; k < s.size(); k++) r += (k ? ", " : "") + std::to_string(s[k]);
    return r + "]";
}

// Reads one tensor into dst (numel floats), converting BF16/F16 to fp32.
static inline void safetensors_read_into(const SafeTensors* st, const SafeTensorInfo& t, float* dst) {
    const SafeTensorsFile& sf = st->files[t.file];
    if (fseeko(sf.f, (off_t)(sf.data_start + t.begin), SEEK_SET) != 0) fail("%s: cannot seek to tensor %s (%s)", sf.path.c_str(), t.name.c_str(), strerror(errno));
    const int es = st_dtype_size(t.dtype);
    const int64_t chunk = 1 << 20;
    std::vector<uint16_t> buf;
    for (int64_t i0 = 0; i0 < t.numel; i0 += chunk) {
        const int64_t n = std::min(chunk, t.numel - i0);
        if (t.dtype == ST_F32) { fread_exact(dst + i0, (size_t)n * 4, sf.f, sf.path, t.name.c_str()); continue; }
        buf.resize((size_t)n);
        fread_exact(buf.data(), (size_t)n * es, sf.f, sf.path, t.name.c_str());
        if (t.dtype == ST_BF16) for (int64_t i = 0; i < n; i++) dst[i0 + i] = st_bf16_to_f32(buf[i]);
        else for (int64_t i = 0; i < n; i++) dst[i0 + i] = st_f16_to_f32(buf[i]);
    }
}

static inline std::vector<float> safetensors_read_f32(const SafeTensors* st, const std::string& name) {
    const SafeTensorInfo& t = safetensors_get(st, name);
    std::vector<float> v((size_t)t.numel);
    safetensors_read_into(st, t, v.data());
    return v;
}

// Reads a tensor whose shape must be exactly `shape` (fails naming the file, tensor and both shapes).
static inline void safetensors_read_expect(const SafeTensors* st, const std::string& name, const std::vector<int64_t>& shape, float* dst) {
    const SafeTensorInfo& t = safetensors_get(st, name);
    if (t.shape != shape)
        fail("%s: tensor %s has shape %s, expected %s", st->files[t.file].path.c_str(), name.c_str(), st_shape_str(t.shape).c_str(),
             st_shape_str(shape).c_str());
    safetensors_read_into(st, t, dst);
}

static inline void safetensors_close(SafeTensors* st) {
    for (SafeTensorsFile& f : st->files) if (f.f) fclose(f.f);  // read-only
    st->files.clear(); st->tensors.clear(); st->by_name.clear(); st->metadata.clear();
}

// ---- writer

struct SafeTensorWrite {
    std::string name;
    int dtype;                    // ST_F32, ST_F16 or ST_BF16
    std::vector<int64_t> shape;
    const float* data;            // numel floats (converted on the way out)
};

// round to nearest even; overflow (>= 65520) to inf, underflow to subnormals and +-0; NaN stays NaN (quiet)
static inline uint16_t st_f32_to_f16(float f) {
    uint32_t b; memcpy(&b, &f, 4);
    const uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    const uint32_t a = b & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7E00u | (uint16_t)((a >> 13) & 0x3FFu);   // nan
    if (a >= 0x477FF000u) return sign | 0x7C00u;                                    // inf, or rounds to it
    if (a >= 0x38800000u) {                                                         // normal: >= 2^-14
        uint32_t r = a - ((uint32_t)(127 - 15) << 23);
        r += 0xFFFu + ((r >> 13) & 1u);
        return sign | (uint16_t)(r >> 13);
    }
    const int e = (int)(a >> 23);                                                   // subnormal in units of 2^-24
    if (e < 102) return sign;                                                       // < 2^-25: rounds to 0
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - e;                                                      // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;                               // may carry into the smallest normal
    return sign | (uint16_t)q;
}

static inline void st_fsync_parent_dir(const std::string& path) {
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? std::string(".") : path.substr(0, slash == 0 ? 1 : slash);
    int fd = open(dir.c_str(), O_RDONLY);
    if (fd < 0) fail("%s: cannot open directory to fsync (%s)", dir.c_str(), strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) fail("%s: fsync of the directory failed (%s)", dir.c_str(), strerror(errno));
    close(fd);
}

// Checks what is about to be written (before any byte is); returns each tensor's data bytes.
static inline std::vector<int64_t> st_check_writes(const std::string& where, const std::vector<SafeTensorWrite>& tensors) {
    std::vector<int64_t> bytes;
    std::map<std::string, int> seen;
    for (const SafeTensorWrite& t : tensors) {
        if (t.dtype != ST_F32 && t.dtype != ST_F16 && t.dtype != ST_BF16)
            fail("%s: tensor %s: the writer supports F32, F16 and BF16 only", where.c_str(), t.name.c_str());
        if (t.name == "__metadata__" || t.name.empty()) fail("%s: tensor name '%s' is reserved", where.c_str(), t.name.c_str());
        if (seen[t.name]++) fail("%s: tensor %s is written twice", where.c_str(), t.name.c_str());
        int64_t numel = 1;
        for (int64_t d : t.shape) {
            if (d < 0) fail("%s: tensor %s: negative dimension %lld", where.c_str(), t.name.c_str(), (long long)d);
            numel *= d;
        }
        bytes.push_back(numel * st_dtype_size(t.dtype));
    }
    return bytes;
}

// Writes tensors[first, first + count) as one safetensors file to tmp: header, data, flushed,
// fsync'ed and closed (the caller renames it into place).
static inline void st_write_tmp(const std::string& tmp, const std::vector<SafeTensorWrite>& tensors, size_t first, size_t count,
                                const std::vector<int64_t>& bytes, const std::map<std::string, std::string>& metadata) {
    JsonValue hdr = json_object();
    if (!metadata.empty()) {
        JsonValue m = json_object();
        for (const auto& kv : metadata) m.set(kv.first, json_string(kv.second));
        hdr.set("__metadata__", m);
    }
    int64_t off = 0;
    for (size_t k = first; k < first + count; k++) {
        const SafeTensorWrite& t = tensors[k];
        JsonValue shape = json_array();
        for (int64_t d : t.shape) shape.push(json_int(d));
        JsonValue e = json_object();
        e.set("dtype", json_string(st_dtype_name(t.dtype)));
        e.set("shape", shape);
        JsonValue o = json_array();
        o.push(json_int(off)).push(json_int(off + bytes[k]));
        e.set("data_offsets", o);
        hdr.obj.emplace_back(t.name, e);   // names were checked unique by st_check_writes
        off += bytes[k];
    }
    std::string text = json_serialize(hdr);
    while (text.size() % 8) text += ' ';  // data section 8-byte aligned, as the HF writer does
    FILE* f = fopen_or_fail(tmp, "wb");
    const uint64_t n = text.size();
    fwrite_exact(&n, 8, f, tmp);
    fwrite_exact(text.data(), text.size(), f, tmp);
    std::vector<uint16_t> buf;
    for (size_t k = first; k < first + count; k++) {
        const SafeTensorWrite& t = tensors[k];
        if (t.dtype == ST_F32) { fwrite_exact(t.data, (size_t)bytes[k], f, tmp); continue; }
        buf.resize((size_t)bytes[k] / 2);
        if (t.dtype == ST_BF16) for (size_t i = 0; i < buf.size(); i++) buf[i] = st_f32_to_bf16(t.data[i]);
        else for (size_t i = 0; i < buf.size(); i++) buf[i] = st_f32_to_f16(t.data[i]);
        fwrite_exact(buf.data(), buf.size() * 2, f, tmp);
    }
    if (fflush(f) != 0) fail("%s: flush failed (%s)", tmp.c_str(), strerror(errno));
    if (fsync(fileno(f)) != 0) fail("%s: fsync failed (%s)", tmp.c_str(), strerror(errno));
    fclose_or_fail(f, tmp);
}

static inline void st_rename(const std::string& tmp, const std::string& path) {
    if (rename(tmp.c_str(), path.c_str()) != 0) fail("%s: cannot rename %s over it (%s)", path.c_str(), tmp.c_str(), strerror(errno));
}

// Writes text to path atomically: path.tmp, flush, fsync, rename, fsync of the directory.
static inline void st_write_file_atomic(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    FILE* f = fopen_or_fail(tmp, "wb");
    fwrite_exact(text.data(), text.size(), f, tmp);
    if (fflush(f) != 0) fail("%s: flush failed (%s)", tmp.c_str(), strerror(errno));
    if (fsync(fileno(f)) != 0) fail("%s: fsync failed (%s)", tmp.c_str(), strerror(errno));
    fclose_or_fail(f, tmp);
    st_rename(tmp, path);
    st_fsync_parent_dir(path);
}

// One file (F32, F16 or BF16 from fp32 host data): PATH.tmp, fsync, rename over PATH, fsync of the directory.
static inline void safetensors_write(const std::string& path, const std::vector<SafeTensorWrite>& tensors,
                                     const std::map<std::string, std::string>& metadata = {}) {
    const std::vector<int64_t> bytes = st_check_writes(path, tensors);
    st_write_tmp(path + ".tmp", tensors, 0, tensors.size(), bytes, metadata);
    st_rename(path + ".tmp", path);
    st_fsync_parent_dir(path);
}

// ---- a sharded model directory, as Hugging Face's save_pretrained writes it

// Splits tensors, in order, into shards of at most max_bytes of tensor data each (headers not
// counted, as in Hugging Face's splitter); a tensor larger than max_bytes gets a shard to itself.
// max_bytes <= 0: one shard. Returns each shard's [first, first + count) as (first, count).
static inline std::vector<std::pair<size_t, size_t>> safetensors_plan_shards(const std::vector<int64_t>& bytes, int64_t max_bytes) {
    std::vector<std::pair<size_t, size_t>> shards;
    size_t first = 0;
    int64_t cur = 0;
    for (size_t k = 0; k < bytes.size(); k++) {
        if (max_bytes > 0 && k > first && cur + bytes[k] > max_bytes) { shards.push_back({first, k - first}); first = k; cur = 0; }
        cur += bytes[k];
    }
    if (bytes.size() > first || shards.empty()) shards.push_back({first, bytes.size() - first});
    return shards;
}

static inline std::string safetensors_shard_name(size_t k, size_t n) {  // k 0-based: model-00001-of-00003.safetensors
    char buf[64];
    snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    return buf;
}

// Writes tensors into the directory dir (which must exist) as a Hugging Face model's weights:
// one shard (everything fits in max_shard_bytes, or max_shard_bytes <= 0) is dir/model.safetensors
// with no index; more are dir/model-00001-of-0000N.safetensors ... and then
// dir/model.safetensors.index.json ({"metadata": {"total_parameters", "total_size": tensor
// data bytes}, "weight_map": {name: file}}, names sorted, as save_pretrained writes it).
// Every file is written to NAME.tmp and fsync'ed; the shards are renamed into place, the directory
// fsync'ed, and only then is the index renamed into place (a reader never sees an index naming a
// missing shard). Shards the previous index named (model-DDDDD-of-DDDDD.safetensors) that the
// new one does not are then removed, as save_pretrained removes stale shards. A directory holding
// the other form is refused before anything is written: model.safetensors.index.json when writing
// one file (readers would take the index), model.safetensors when writing shards (transformers
// would take model.safetensors). Every shard carries metadata. Returns the file names written.
static inline std::vector<std::string> safetensors_write_dir(const std::string& dir, const std::vector<SafeTensorWrite>& tensors,
                                                             int64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {}) {
    const std::string d = st_ends_with(dir, "/") ? dir : dir + "/";
    struct stat sb;
    if (stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) fail("%s: not a directory", dir.c_str());
    const std::vector<int64_t> bytes = st_check_writes(dir, tensors);
    const std::vector<std::pair<size_t, size_t>> plan = safetensors_plan_shards(bytes, max_shard_bytes);
    const std::string index = d + "model.safetensors.index.json";
    if (plan.size() == 1) {
        if (file_exists(index))
            fail("%s: holds model.safetensors.index.json (a sharded model): write into a new or empty directory", dir.c_str());
        st_write_tmp(d + "model.safetensors.tmp", tensors, 0, tensors.size(), bytes, metadata);
        st_rename(d + "model.safetensors.tmp", d + "model.safetensors");
        st_fsync_parent_dir(d + "model.safetensors");
        return {"model.safetensors"};
    }
    if (plan.size() > 99999) fail("%s: %zu shards is more than 99999: raise the shard size", dir.c_str(), plan.size());
    if (file_exists(d + "model.safetensors"))
        fail("%s: holds model.safetensors, which transformers would load instead of the shards: write into a new or empty directory",
             dir.c_str());
    // the shard names of an earlier sharded write (model-DDDDD-of-DDDDD.safetensors in its index's text)
    std::vector<std::string> stale;
    if (file_exists(index)) {
        const std::string old = read_file_or_fail(index);
        for (size_t p = old.find("model-"); p != std::string::npos; p = old.find("model-", p + 1)) {
            if (old.size() - p < 33) break;
            const std::string n = old.substr(p, 32);
            bool shard = p > 0 && old[p - 1] == '"' && old[p + 32] == '"' && n.compare(11, 4, "-of-") == 0 && st_ends_with(n, ".safetensors");
            for (int i : {6, 7, 8, 9, 10, 15, 16, 17, 18, 19}) shard = shard && n[i] >= '0' && n[i] <= '9';
            if (shard && std::find(stale.begin(), stale.end(), n) == stale.end()) stale.push_back(n);
        }
    }
    std::vector<std::string> names;
    for (size_t s = 0; s < plan.size(); s++) {
        names.push_back(safetensors_shard_name(s, plan.size()));
        st_write_tmp(d + names[s] + ".tmp", tensors, plan[s].first, plan[s].second, bytes, metadata);
    }
    for (const std::string& n : names) st_rename(d + n + ".tmp", d + n);
    st_fsync_parent_dir(d + names[0]);
    // the index, as json.dumps(index, indent=2, sort_keys=True) + "\n"
    std::map<std::string, std::string> wm;
    int64_t total_size = 0, total_params = 0;
    for (size_t s = 0; s < plan.size(); s++)
        for (size_t k = plan[s].first; k < plan[s].first + plan[s].second; k++) {
            wm[tensors[k].name] = names[s];
            total_size += bytes[k];
            total_params += bytes[k] / st_dtype_size(tensors[k].dtype);
        }
    std::string text = "{\n  \"metadata\": {\n    \"total_parameters\": " + std::to_string(total_params) + ",\n    \"total_size\": " +
                       std::to_string(total_size) + "\n  },\n  \"weight_map\": {\n";
    size_t k = 0;
    for (const auto& kv : wm) {
        text += "    ";
        json_escape_to(text, kv.first);
        text += ": ";
        json_escape_to(text, kv.second);
        text += ++k < wm.size() ? ",\n" : "\n";
    }
    text += "  }\n}\n";
    st_write_file_atomic(index, text);
    // shards the previous index named that the new one does not
    bool removed = false;
    for (const std::string& n : stale) {
        if (std::find(names.begin(), names.end(), n) != names.end() || !file_exists(d + n)) continue;
        if (unlink((d + n).c_str()) != 0) fail("%s: cannot remove the stale shard (%s)", (d + n).c_str(), strerror(errno));
        removed = true;
    }
    if (removed) st_fsync_parent_dir(index);
    names.push_back("model.safetensors.index.json");
    return names;
}
