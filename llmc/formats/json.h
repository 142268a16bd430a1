/*
A small strict JSON reader and writer (RFC 8259), for safetensors headers,
model.safetensors.index.json and config.json.

Reading: json_parse(text, file) builds a tree of JsonValue; malformed input
fails with one line naming the file, the byte offset and what was expected.
Strict: no trailing commas, no comments, no NaN/Infinity, no leading zeros,
no control characters inside strings, no duplicate object keys, nothing but
whitespace after the value. Limits: nesting depth (JSON_MAX_DEPTH) and input
size (the max_bytes argument).

Lookups go through JsonRef, which remembers the file and the key path
(e.g. `config.json: rope_scaling.factor`), so a missing field or a field of
the wrong type fails with one line naming both:
    JsonDoc d = json_parse_file("config.json");
    int64_t L = d.root()["num_hidden_layers"].as_int64();
    if (d.root().has("rope_scaling") && !d.root()["rope_scaling"].is_null()) ...
Numbers keep their source text, so integers up to 2^63 are exact (as_int64),
and as_double reads them as doubles.

Writing: build a JsonValue (json_object(), .set(key, value), json_string(...),
json_int(...), ...) and json_serialize() it (compact, keys in insertion order).
*/
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>
#include "../core/utils.h"

#ifndef JSON_MAX_DEPTH
#define JSON_MAX_DEPTH 128
#endif
#define JSON_DEFAULT_MAX_BYTES ((size_t)256 << 20)

enum JsonType { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

static inline const char* json_type_name(JsonType t) {
    switch (t) {
        case JSON_NULL: return "null";
        case JSON_BOOL: return "a boolean";
        case JSON_NUMBER: return "a number";
        case JSON_STRING: return "a string";
        case JSON_ARRAY: return "an array";
        case JSON_OBJECT: return "an object";
    }
    return "?";
}

struct JsonValue {
    JsonType type = JSON_NULL;
    bool b = false;
    std::string str;  // JSON_STRING: the decoded UTF-8; JSON_NUMBER: the source text
    std::vector<JsonValue> arr;
    std::vector<std::pair<std::string, JsonValue>> obj;  // insertion order

    const JsonValue* find(const std::string& key) const {
        for (const auto& kv : obj) if (kv.first == key) return &kv.second;
        return nullptr;
    }
    // builders (for the writer)
    JsonValue& set(const std::string& key, JsonValue v) {
        type = JSON_OBJECT;
        for (auto& kv : obj) if (kv.first == key) { kv.second = std::move(v); return *this; }
        obj.emplace_back(key, std::move(v));
        return *this;
    }
    JsonValue& push(JsonValue v) { type = JSON_ARRAY; arr.push_back(std::move(v)); return *this; }
};

static inline JsonValue json_null() { return JsonValue(); }
static inline JsonValue json_object() { JsonValue v; v.type = JSON_OBJECT; return v; }
static inline JsonValue json_array() { JsonValue v; v.type = JSON_ARRAY; return v; }
static inline JsonValue json_bool(bool b) { JsonValue v; v.type = JSON_BOOL; v.b = b; return v; }
static inline JsonValue json_string(const std::string& s) { JsonValue v; v.type = JSON_STRING; v.str = s; return v; }
static inline JsonValue json_int(long long x) { JsonValue v; v.type = JSON_NUMBER; v.str = std::to_string(x); return v; }
static inline JsonValue json_double(double x) {
    if (!std::isfinite(x)) fail("json writer: cannot write the non-finite number %g", x);
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", x);
    JsonValue v; v.type = JSON_NUMBER; v.str = buf; return v;
}

// ---------------------------------------------------------------------------
// parser

struct JsonParser {
    const char* s;
    size_t n, i;
    const std::string* file;

    [[noreturn]] void error(const char* expected) {
        if (i >= n) fail("%s: invalid JSON at byte %zu (end of input): expected %s", file->c_str(), i, expected);
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) fail("%s: invalid JSON at byte %zu ('%c'): expected %s", file->c_str(), i, c, expected);
        fail("%s: invalid JSON at byte %zu (byte 0x%02x): expected %s", file->c_str(), i, c, expected);
    }
    void ws() { while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++; }
    void expect_word(const char* w, const char* what) {
        const size_t L = strlen(w);
        if (n - i < L || memcmp(s + i, w, L) != 0) error(what);
        i += L;
    }
    static void put_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) out += (char)cp;
        else if (cp < 0x800) { out += (char)(0xC0 | (cp >> 6)); out += (char)(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) { out += (char)(0xE0 | (cp >> 12)); out += (char)(0x80 | ((cp >> 6) & 0x3F)); out += (char)(0x80 | (cp & 0x3F)); }
        else { out += (char)(0xF0 | (cp >> 18)); out += (char)(0x80 | ((cp >> 12) & 0x3F)); out += (char)(0x80 | ((cp >> 6) & 0x3F)); out += (char)(0x80 | (cp & 0x3F)); }
    }
    uint32_t hex4() {
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            if (i >= n) error("4 hex digits after \\u");
            const char c = s[i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) error("4 hex digits after \\u");
            v = v * 16 + (uint32_t)d;
            i++;
        }
        return v;
    }
    // checks one UTF-8 sequence starting at s[i] (a byte >= 0x80) and copies it
    void utf8_char(std::string& out) {
        const unsigned char c = (unsigned char)s[i];
        int len; uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else error("valid UTF-8 in a string");
        if (n - i < (size_t)len) error("valid UTF-8 in a string");
        for (int k = 1; k < len; k++) {
            const unsigned char d = (unsigned char)s[i + k];
            if ((d & 0xC0) != 0x80) error("valid UTF-8 in a string");
            cp = (cp << 6) | (d & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error("valid UTF-8 in a string");
        out.append(s + i, (size_t)len);
        i += (size_t)len;
    }
    std::string string() {
        if (i >= n || s[i] != '"') error("'\"' (a string)");
        i++;
        std::string out;
        for (;;) {
            if (i >= n) error("'\"' closing the string");
            const unsigned char c = (unsigned char)s[i];
            if (c == '"') { i++; return out; }
            if (c < 0x20) error("no control characters inside a string (escape them)");
            if (c >= 0x80) { utf8_char(out); continue; }
            if (c != '\\') { out += (char)c; i++; continue; }
            i++;
            if (i >= n) error("an escape character after '\\'");
            const char e = s[i++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xDC00 && cp <= 0xDFFF) { i -= 6; error("a high surrogate before a low surrogate in \\u escapes"); }
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (n - i < 2 || s[i] != '\\' || s[i + 1] != 'u') error("a \\u low surrogate after a \\u high surrogate");
                        i += 2;
                        const uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) { i -= 6; error("a low surrogate (\\uDC00..\\uDFFF) after a high surrogate"); }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: i--; error("a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            }
        }
    }
    void number(JsonValue& v) {
        const size_t start = i;
        if (i < n && s[i] == '-') i++;
        if (i < n && s[i] == '0') i++;
        else if (i < n && s[i] >= '1' && s[i] <= '9') { while (i < n && s[i] >= '0' && s[i] <= '9') i++; }
        else error("a digit");
        if (i < n && s[i] == '.') {
            i++;
            if (!(i < n && s[i] >= '0' && s[i] <= '9')) error("a digit after the decimal point");
            while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        }
        if (i < n && (s[i] == 'e' || s[i] == 'E')) {
            i++;
            if (i < n && (s[i] == '+' || s[i] == '-')) i++;
            if (!(i < n && s[i] >= '0' && s[i] <= '9')) error("a digit in the exponent");
            while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        }
        v.type = JSON_NUMBER;
        v.str.assign(s + start, i - start);
        const double d = strtod(v.str.c_str(), nullptr);
        if (!std::isfinite(d)) { i = start; error("a number within the range of a double"); }
    }
    void value(JsonValue& v, int depth) {
        if (depth > JSON_MAX_DEPTH) error("nesting no deeper than JSON_MAX_DEPTH (128) levels");
        ws();
        if (i >= n) error("a value");
        const char c = s[i];
        if (c == '{') {
            v.type = JSON_OBJECT;
            i++;
            ws();
            if (i < n && s[i] == '}') { i++; return; }
            // duplicate keys: a scan while the object is small, a hash set once it is large
            // (a tokenizer.json vocabulary has 150k keys)
            std::unordered_set<std::string> keys;
            for (;;) {
                ws();
                const size_t key_at = i;
                std::string key = string();
                bool dup = false;
                if (v.obj.size() < 16) {
                    for (const auto& kv : v.obj) dup = dup || kv.first == key;
                } else {
                    if (keys.empty()) for (const auto& kv : v.obj) keys.insert(kv.first);
                    dup = !keys.insert(key).second;
                }
                if (dup) { i = key_at; error("no duplicate keys in an object"); }
                ws();
                if (i >= n || s[i] != ':') error("':' after an object key");
                i++;
                v.obj.emplace_back(std::move(key), JsonValue());
                value(v.obj.back().second, depth + 1);
                ws();
                if (i < n && s[i] == ',') { i++; continue; }
                if (i < n && s[i] == '}') { i++; return; }
                error("',' or '}' in an object");
            }
        } else if (c == '[') {
            v.type = JSON_ARRAY;
            i++;
            ws();
            if (i < n && s[i] == ']') { i++; return; }
            for (;;) {
                v.arr.emplace_back();
                value(v.arr.back(), depth + 1);
                ws();
                if (i < n && s[i] == ',') { i++; continue; }
                if (i < n && s[i] == ']') { i++; return; }
                error("',' or ']' in an array");
            }
        } else if (c == '"') {
            v.type = JSON_STRING;
            v.str = string();
        } else if (c == 't') { expect_word("true", "a value (true)"); v.type = JSON_BOOL; v.b = true; }
        else if (c == 'f') { expect_word("false", "a value (false)"); v.type = JSON_BOOL; v.b = false; }
        else if (c == 'n') { expect_word("null", "a value (null)"); v.type = JSON_NULL; }
        else if (c == '-' || (c >= '0' && c <= '9')) number(v);
        else error("a value (object, array, string, number, true, false or null)");
    }
};

// ---------------------------------------------------------------------------
// lookups that name the file and key path

struct JsonRef {
    const JsonValue* v;
    const std::string* file;
    std::string path;  // "" for the root, "a.b[3].c" below it

    std::string where() const { return path.empty() ? std::string("(top level)") : path; }
    [[noreturn]] void type_error(const char* expected) const {
        fail("%s: %s: expected %s, found %s", file->c_str(), where().c_str(), expected, json_type_name(v->type));
    }
    JsonType type() const { return v->type; }
    bool is_null() const { return v->type == JSON_NULL; }
    bool is_object() const { return v->type == JSON_OBJECT; }
    bool is_array() const { return v->type == JSON_ARRAY; }
    bool is_string() const { return v->type == JSON_STRING; }
    bool is_number() const { return v->type == JSON_NUMBER; }
    bool is_bool() const { return v->type == JSON_BOOL; }

    std::string child_path(const std::string& key) const { return path.empty() ? key : path + "." + key; }
    bool has(const std::string& key) const {
        if (v->type != JSON_OBJECT) type_error("an object");
        return v->find(key) != nullptr;
    }
    // a field that must be there
    JsonRef operator[](const std::string& key) const {
        if (v->type != JSON_OBJECT) type_error("an object");
        const JsonValue* c = v->find(key);
        if (!c) fail("%s: %s: missing field", file->c_str(), child_path(key).c_str());
        return JsonRef{c, file, child_path(key)};
    }
    JsonRef operator[](const char* key) const { return (*this)[std::string(key)]; }
    JsonRef at(size_t k) const {
        if (v->type != JSON_ARRAY) type_error("an array");
        if (k >= v->arr.size()) fail("%s: %s: index %zu is past the array's %zu elements", file->c_str(), where().c_str(), k, v->arr.size());
        return JsonRef{&v->arr[k], file, path + "[" + std::to_string(k) + "]"};
    }
    size_t size() const {
        if (v->type == JSON_ARRAY) return v->arr.size();
        if (v->type == JSON_OBJECT) return v->obj.size();
        type_error("an array or an object");
    }
    // object members in file order
    std::string key_at(size_t k) const {
        if (v->type != JSON_OBJECT) type_error("an object");
        return v->obj.at(k).first;
    }
    JsonRef value_at(size_t k) const {
        if (v->type != JSON_OBJECT) type_error("an object");
        return JsonRef{&v->obj.at(k).second, file, child_path(v->obj.at(k).first)};
    }
    const std::string& as_string() const {
        if (v->type != JSON_STRING) type_error("a string");
        return v->str;
    }
    bool as_bool() const {
        if (v->type != JSON_BOOL) type_error("a boolean (true or false)");
        return v->b;
    }
    double as_double() const {
        if (v->type != JSON_NUMBER) type_error("a number");
        return strtod(v->str.c_str(), nullptr);
    }
    // an integer written without fraction or exponent, in [lo, hi]
    int64_t as_int64(int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const {
        if (v->type != JSON_NUMBER) type_error("an integer");
        if (v->str.find_first_of(".eE") != std::string::npos)
            fail("%s: %s: expected an integer, found %s", file->c_str(), where().c_str(), v->str.c_str());
        errno = 0;
        const long long x = strtoll(v->str.c_str(), nullptr, 10);
        if (errno == ERANGE || x < lo || x > hi)
            fail("%s: %s: integer %s is out of range [%lld, %lld]", file->c_str(), where().c_str(), v->str.c_str(), (long long)lo, (long long)hi);
        return x;
    }
    int as_int(int lo = INT32_MIN, int hi = INT32_MAX) const { return (int)as_int64(lo, hi); }
    // optional fields: the default when absent or null
    double get_double(const std::string& key, double dflt) const {
        if (!has(key) || (*this)[key].is_null()) return dflt;
        return (*this)[key].as_double();
    }
    int64_t get_int64(const std::string& key, int64_t dflt) const {
        if (!has(key) || (*this)[key].is_null()) return dflt;
        return (*this)[key].as_int64();
    }
    bool get_bool(const std::string& key, bool dflt) const {
        if (!has(key) || (*this)[key].is_null()) return dflt;
        return (*this)[key].as_bool();
    }
    std::string get_string(const std::string& key, const std::string& dflt) const {
        if (!has(key) || (*this)[key].is_null()) return dflt;
        return (*this)[key].as_string();
    }
};

struct JsonDoc {
    std::string file;
    JsonValue value;
    JsonRef root() const { return JsonRef{&value, &file, ""}; }
};

// Parses text (named `file` in errors). The whole text must be one value.
static inline JsonDoc json_parse(const std::string& text, const std::string& file, size_t max_bytes = JSON_DEFAULT_MAX_BYTES) {
    JsonDoc d;
    d.file = file;
    if (text.size() > max_bytes) fail("%s: JSON text is %zu bytes, more than the limit of %zu", file.c_str(), text.size(), max_bytes);
    JsonParser p{text.data(), text.size(), 0, &d.file};
    p.value(d.value, 0);
    p.ws();
    if (p.i != p.n) p.error("end of input after the value");
    return d;
}

static inline JsonDoc json_parse_file(const std::string& path, size_t max_bytes = JSON_DEFAULT_MAX_BYTES) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
    if (!S_ISREG(st.st_mode)) fail("%s: not a regular file", path.c_str());
    if ((size_t)st.st_size > max_bytes) fail("%s: JSON file is %lld bytes, more than the limit of %zu", path.c_str(), (long long)st.st_size, max_bytes);
    return json_parse(read_file_or_fail(path), path, max_bytes);
}

// ---------------------------------------------------------------------------
// writer

static inline void json_escape_to(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) { char buf[8]; snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
                else out += (char)c;
        }
    }
    out += '"';
}

static inline void json_serialize_to(std::string& out, const JsonValue& v) {
    switch (v.type) {
        case JSON_NULL: out += "null"; break;
        case JSON_BOOL: out += v.b ? "true" : "false"; break;
        case JSON_NUMBER: out += v.str; break;
        case JSON_STRING: json_escape_to(out, v.str); break;
        case JSON_ARRAY:
            out += '[';
            for (size_t k = 0; k < v.arr.size(); k++) { if (k) out += ','; json_serialize_to(out, v.arr[k]); }
            out += ']';
            break;
        case JSON_OBJECT:
            out += '{';
            for (size_t k = 0; k < v.obj.size(); k++) {
                if (k) out += ',';
                json_escape_to(out, v.obj[k].first);
                out += ':';
                json_serialize_to(out, v.obj[k].second);
            }
            out += '}';
            break;
    }
}

static inline std::string json_serialize(const JsonValue& v) { std::string s; json_serialize_to(s, v); return s; }
