// Named-tensor files (.mgt) for reference tensors written by dev/reference/*.py
// and read by the tests. Layout (little-endian):
//   int32 magic 20251121, int32 version 1, int32 n_tensors
//   n_tensors times: int32 name_len, name bytes (no NUL), int32 dtype (0 f32, 1 i32),
//                    int32 ndim, int32 shape[ndim], numel * 4 bytes of data
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>
#include "../core/utils.h"

#define TENSORFILE_MAGIC 20251121

struct NamedTensor {
    int dtype = 0;              // 0 float32, 1 int32
    std::vector<int> shape;
    std::vector<float> f;       // dtype 0
    std::vector<int32_t> i;     // dtype 1
    size_t numel() const { size_t n = 1; for (int d : shape) n *= (size_t)d; return n; }
};

struct TensorFile {
    std::string path;
    std::map<std::string, NamedTensor> tensors;
    bool has(const std::string& name) const { return tensors.count(name) != 0; }
    const NamedTensor& get(const std::string& name) const {
        auto it = tensors.find(name);
        if (it == tensors.end()) fail("%s: has no tensor named '%s'", path.c_str(), name.c_str());
        return it->second;
    }
    const std::vector<float>& f32(const std::string& name) const {
        const NamedTensor& t = get(name);
        if (t.dtype != 0) fail("%s: tensor '%s' is not float32", path.c_str(), name.c_str());
        return t.f;
    }
    const std::vector<int32_t>& i32(const std::string& name) const {
        const NamedTensor& t = get(name);
        if (t.dtype != 1) fail("%s: tensor '%s' is not int32", path.c_str(), name.c_str());
        return t.i;
    }
};

static inline TensorFile tensorfile_read(const std::string& path) {
    TensorFile tf;
    tf.path = path;
    FILE* f = fopen_or_fail(path, "rb");
    long size = file_size_or_fail(f, path);
    int32_t hdr[3];
    fread_exact(hdr, sizeof(hdr), f, path, "header");
    if (hdr[0] != TENSORFILE_MAGIC) fail("%s: bad magic %d (expected %d, a .mgt tensor file)", path.c_str(), hdr[0], TENSORFILE_MAGIC);
    if (hdr[1] != 1) fail("%s: unsupported version %d (expected 1)", path.c_str(), hdr[1]);
    if (hdr[2] < 0 || hdr[2] > 100000) fail("%s: bad tensor count %d", path.c_str(), hdr[2]);
    for (int k = 0; k < hdr[2]; k++) {
        int32_t len;
        fread_exact(&len, 4, f, path, "name length");
        if (len <= 0 || len > 1024) fail("%s: bad name length %d in tensor %d", path.c_str(), len, k);
        std::string name((size_t)len, '\0');
        fread_exact(&name[0], (size_t)len, f, path, "name");
        NamedTensor t;
        int32_t dt, ndim;
        fread_exact(&dt, 4, f, path, "dtype");
        fread_exact(&ndim, 4, f, path, "ndim");
        if (dt != 0 && dt != 1) fail("%s: tensor '%s' has bad dtype %d (expected 0 or 1)", path.c_str(), name.c_str(), dt);
        if (ndim < 0 || ndim > 8) fail("%s: tensor '%s' has bad ndim %d", path.c_str(), name.c_str(), ndim);
        t.dtype = dt;
        t.shape.resize(ndim);
        fread_exact(t.shape.data(), 4 * (size_t)ndim, f, path, "shape");
        bool has_zero = false;
        for (int d : t.shape) {
            if (d < 0) fail("%s: tensor '%s' has a negative dimension", path.c_str(), name.c_str());
            has_zero |= d == 0;
        }
        // numel is bounded by the bytes left while it is multiplied: a shape
        // such as [2^31, 2^31, 2^31] must not wrap around to a small size
        const size_t left = (size_t)(size - ftell(f)) / 4;
        size_t n = has_zero ? 0 : 1;
        if (!has_zero)
            for (int d : t.shape) {
                if (n > left / (size_t)d) fail("%s: tensor '%s' runs past the end of the file", path.c_str(), name.c_str());
                n *= (size_t)d;
            }
        if (dt == 0) { t.f.resize(n); fread_exact(t.f.data(), 4 * n, f, path, name.c_str()); }
        else { t.i.resize(n); fread_exact(t.i.data(), 4 * n, f, path, name.c_str()); }
        tf.tensors[name] = std::move(t);
    }
    fclose_or_fail(f, path);
    return tf;
}

// Relative error ||a - b|| / ||b|| in double; NaN anywhere gives +inf so it never passes.
static inline double rel_error(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t k = 0; k < n; k++) {
        double d = (double)a[k] - (double)b[k];
        if (!(d == d)) return INFINITY;
        num += d * d;
        den += (double)b[k] * (double)b[k];
    }
    if (den == 0) return num == 0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}
