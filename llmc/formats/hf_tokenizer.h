/*
Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama 3, Qwen2/2.5/3, Emu3): decoding, and
encoding exactly as the tokenizers library does for the configurations those models use.

    HFTokenizer tok;
    hf_tokenizer_load(&tok, "model/tokenizer.json");
    std::string bytes = hf_tokenizer_decode(&tok, ids, n);
    std::vector<int> ids = hf_tokenizer_encode(&tok, "Hello world", true);   // true: add the BOS of a template

What is read: model.type "BPE" and model.vocab {token: id}; the decoder must be ByteLevel
(alone or inside a Sequence), which makes every token a string over GPT-2's bytes-to-unicode
alphabet (256 code points, one per byte); added_tokens [{id, content, special}] decode as their
content, verbatim (special tokens included, as transformers' decode(skip_special_tokens=False)).
Ids that have no token (a config vocab_size larger than the tokenizer, as Qwen pads it) and ids
out of range decode to nothing, as the tokenizers library does.

Refused with one line naming the file and the field: another model type (Unigram, WordPiece,
WordLevel), a BPE without a ByteLevel decoder (SentencePiece-style BPE such as Llama 2's, with
byte fallback and the U+2581 space), continuing_subword_prefix / end_of_word_suffix, a vocabulary
token with a character outside the byte-level alphabet, duplicate or out-of-range ids.

Encoding (hf_tokenizer_encode) follows the tokenizers library's pipeline step by step:
  1. added_tokens split the text first: those with normalized false on the raw text, then those
     with normalized true on the normalized rest (leftmost-longest match, as its Aho-Corasick
     does), with their lstrip / rstrip (White_Space) and single_word flags; special or not,
     they are always matched (the library's default, encode_special_tokens false).
     single_word next to a non-ASCII character is refused (its \w needs Unicode Alphabetic).
  2. normalizer: null, or NFC (Qwen2), alone or in a Sequence. NFC is complete (hf_nfc:
     decomposition, canonical ordering, composition, Hangul) on Unicode 14.0 tables; text that
     passes the NFC quick check (ASCII, most text) is taken as is without that work.
  3. pre_tokenizer: ByteLevel (use_regex true: GPT-2's regex; add_prefix_space false or true), or
     Sequence[Split(Regex, behavior Isolated, invert false)..., ByteLevel(use_regex false or
     true)]. The Split regex must be one of the three patterns this file matches by hand, recognized
     by their exact string: GPT-2's, Llama 3's ((?i:'s|...)...\p{N}{1,3}...) and Qwen2's
     (single digits, \p{N}); another pattern is refused with one line naming the file and the
     pattern. \p{L}, \p{N} and \s are Unicode L*, N* and White_Space from llmc/formats/unicode_tables.h
     (scripts/gen_unicode_tables.py, Unicode 14.0, as the library's Oniguruma 6.9.8); (?i) folds
     s/S/U+017F, t/T, r/R, e/E, v/V, m/M, l/L, d/D as Oniguruma does.
  4. BPE on the bytes of each pre-token: merges by rank (lowest first, leftmost on ties, as the
     library's priority queue), ignore_merges (Llama 3: a pre-token that is itself in the vocab is
     emitted whole), unk_token / fuse_unk; merges as "a b" strings or [a, b] pairs.
  5. add_special true: the post_processor's TemplateProcessing "single" template (e.g. Llama 3's
     <|begin_of_text|> $A), alone or in a Sequence with ByteLevel; ByteLevel alone or null adds
     nothing; other post-processors are refused when add_special is true.
Input must be valid UTF-8 (the library takes Rust strings, which are): other bytes are refused
with one line giving the byte offset. Unicode versions: the tables are 14.0, as the library's
Oniguruma; its NFC crate may be on an older version, which matters only for characters whose
canonical decomposition is newer than that. Anything else this file does not do exactly (other
normalizers and pre-tokenizers, dropout, byte_fallback, truncation, padding) refuses encoding
with one line naming the file and the field; decoding still works (hf_tokenizer_encode_error
says why without failing). Not thread-safe: encode keeps a per-tokenizer cache of words.
*/
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>
#include "../core/utils.h"
#include "json.h"
#include "unicode_tables.h"

#define HF_TOKENIZER_MAX_ID (1 << 24)

// an added token as encoding matches it
struct HFAddedToken {
    std::string content;
    int id = 0;
    bool lstrip = false, rstrip = false, single_word = false, normalized = false;
};

enum { HF_PAT_GPT2 = 0, HF_PAT_LLAMA3 = 1, HF_PAT_QWEN2 = 2 };
struct HFPreStep {
    bool bytelevel = false;            // ByteLevel (else Split with `pattern`)
    int pattern = HF_PAT_GPT2;         // Split's pattern, or ByteLevel's regex when use_regex
    bool use_regex = false;            // ByteLevel: split with GPT-2's regex
    bool add_prefix_space = false;     // ByteLevel
};

struct HFTokenizer {
    std::string path;
    std::vector<std::string> pieces;   // id -> bytes ("" where an id has no token)
    std::vector<uint8_t> has;          // id has a token
    std::vector<uint8_t> special;      // id is an added token marked special
    int n_tokens = 0;                  // ids that have a token
    int size() const { return (int)pieces.size(); }   // largest id + 1

    // encoding (hf_tokenizer_encode)
    std::string encode_error = "hf_tokenizer_encode: no tokenizer.json loaded";   // why it cannot encode ("" if it can)
    std::string post_error;            // why add_special cannot be honoured ("" if it can)
    std::unordered_map<std::string, int> vocab;   // model.vocab: token bytes -> id
    int byte_id[256] = {};             // the id of each single-byte token (-1: none)
    std::unordered_map<uint64_t, std::pair<int, int>> merges;   // (left id << 32 | right id) -> (rank, merged id)
    std::vector<HFAddedToken> added;   // non-empty added tokens
    std::vector<std::vector<int>> added_first[2];   // [normalized][first byte] -> indices into `added`, longest first
    bool nfc = false;                  // NFC normalizer
    std::vector<HFPreStep> pre;        // pre-tokenizer steps; the last is ByteLevel
    bool ignore_merges = false;
    int unk_id = -1;
    bool fuse_unk = false;
    std::vector<int> bos_ids, eos_ids; // TemplateProcessing "single": ids before and after $A
    mutable std::unordered_map<std::string, std::vector<int>> cache;   // pre-token bytes -> ids
};

// GPT-2's bytes_to_unicode: byte b is shown as code point hf_byte_cp(b); printable Latin-1 bytes
// stand for themselves, the other 68 bytes are 256, 257, ... in byte order.
static inline void hf_byte_tables(int cp_of_byte[256], int byte_of_cp[324]) {
    for (int k = 0; k < 324; k++) byte_of_cp[k] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_of_byte[b] = printable ? b : 256 + n++;
        byte_of_cp[cp_of_byte[b]] = b;
    }
}

// decodes one UTF-8 code point at s[i] (valid UTF-8: the JSON parser or encode's check validated it), advancing i
static inline uint32_t hf_utf8_next(std::string_view s, size_t* i) {
    const unsigned char c = (unsigned char)s[*i];
    int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len && *i + k < s.size(); k++) cp = (cp << 6) | ((unsigned char)s[*i + k] & 0x3F);
    *i += len;
    return cp;
}

// The bytes a byte-level string (a vocabulary entry, a merge side) stands for, into *out;
// -1, or the first code point outside the byte-level alphabet (then *out is partial).
static inline int64_t hf_bytelevel_to_bytes(std::string_view s, std::string* out) {
    struct Tables { int cp_of_byte[256], byte_of_cp[324]; };
    static const Tables tab = [] { Tables t; hf_byte_tables(t.cp_of_byte, t.byte_of_cp); return t; }();
    out->clear();
    for (size_t i = 0; i < s.size();) {
        const uint32_t cp = hf_utf8_next(s, &i);
        if (cp >= 324 || tab.byte_of_cp[cp] < 0) return cp;
        *out += (char)tab.byte_of_cp[cp];
    }
    return -1;
}

// true if the decoder (or a step of a Sequence decoder) is ByteLevel
static inline bool hf_has_bytelevel(JsonRef d) {
    if (!d.is_object()) return false;
    const std::string t = d.get_string("type", "");
    if (t == "ByteLevel") return true;
    if (t == "Sequence" && d.has("decoders") && d["decoders"].is_array())
        for (size_t k = 0; k < d["decoders"].size(); k++)
            if (hf_has_bytelevel(d["decoders"].at(k))) return true;
    return false;
}

// ---- encoding: configuration

static const char* const HF_PATTERNS[3] = {
    R"PAT('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)PAT",
    R"PAT((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)PAT",
    R"PAT((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)PAT",
};

// s with control characters and bytes >= 0x7F shown as \xNN, cut to n bytes (for one-line errors)
static inline std::string hf_printable(const std::string& s, size_t n = 200) {
    std::string o;
    for (size_t i = 0; i < s.size() && i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) { char b[8]; snprintf(b, sizeof b, "\\x%02X", c); o += b; }
        else o += (char)c;
    }
    if (s.size() > n) o += "...";
    return o;
}

// binary search in a sorted range table
template <typename R, size_t N>
static inline const R* hf_urange_find(const R (&tab)[N], uint32_t cp) {
    size_t lo = 0, hi = N;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (cp < tab[mid].lo) hi = mid;
        else if (cp > tab[mid].hi) lo = mid + 1;
        else return &tab[mid];
    }
    return nullptr;
}
enum { HF_CL_L = 1, HF_CL_N = 2, HF_CL_WS = 4 };
// the regex classes of a code point: \p{L}, \p{N}, \s (bits HF_CL_*)
static inline int hf_class(uint32_t cp) {
    if (cp < 128) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return HF_CL_L;
        if (cp >= '0' && cp <= '9') return HF_CL_N;
        return (cp == ' ' || (cp >= 9 && cp <= 13)) ? HF_CL_WS : 0;
    }
    if (hf_urange_find(unicode_L, cp)) return HF_CL_L;
    if (hf_urange_find(unicode_N, cp)) return HF_CL_N;
    if (hf_urange_find(unicode_WS, cp)) return HF_CL_WS;
    return 0;
}
// NFC quick check of a whole string: the byte offset of the first code point that makes it not
// "Yes" (NFC_QC No or Maybe, or combining classes out of canonical order), or -1 if it is Yes.
static inline long hf_nfc_quick_check(const std::string& s) {
    int last = 0;
    for (size_t i = 0; i < s.size();) {
        const size_t at = i;
        const uint32_t cp = hf_utf8_next(s, &i);
        if (cp < 0x300) { last = 0; continue; }   // no combining marks, NFC_QC Yes
        const UnicodeCccRange* r = hf_urange_find(unicode_ccc, cp);
        const int ccc = r ? r->ccc : 0;
        if ((ccc != 0 && last > ccc) || hf_urange_find(unicode_nfc_no, cp) || hf_urange_find(unicode_nfc_maybe, cp)) return (long)at;
        last = ccc;
    }
    return -1;
}

// NFC (Unicode's canonical composition of the canonical decomposition), from the tables of
// llmc/formats/unicode_tables.h: full decomposition (Hangul algorithmically), canonical ordering of the
// combining marks, then composition of unblocked pairs that are primary composites (not
// Full_Composition_Exclusion = NFC_QC No). Text that passes the quick check is returned as is.
static inline std::string hf_nfc(const std::string& s) {
    if (hf_nfc_quick_check(s) < 0) return s;
    static const std::unordered_map<uint64_t, uint32_t>* compose = [] {
        auto* m = new std::unordered_map<uint64_t, uint32_t>;
        for (const UnicodeDecomp& d : unicode_decomp)
            if (d.b && !hf_urange_find(unicode_nfc_no, d.cp)) (*m)[((uint64_t)d.a << 21) | d.b] = d.cp;
        return m;
    }();
    auto ccc = [](uint32_t cp) -> int {
        if (cp < 0x300) return 0;
        const UnicodeCccRange* r = hf_urange_find(unicode_ccc, cp);
        return r ? r->ccc : 0;
    };
    std::vector<uint32_t> d;
    auto decompose = [&](uint32_t cp, auto& self) -> void {
        if (cp >= 0xAC00 && cp < 0xAC00 + 11172) {
            const uint32_t si = cp - 0xAC00;
            d.push_back(0x1100 + si / 588);
            d.push_back(0x1161 + (si % 588) / 28);
            if (si % 28) d.push_back(0x11A7 + si % 28);
            return;
        }
        size_t lo = 0, hi = sizeof(unicode_decomp) / sizeof(unicode_decomp[0]);
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (unicode_decomp[mid].cp < cp) lo = mid + 1;
            else hi = mid;
        }
        if (lo < sizeof(unicode_decomp) / sizeof(unicode_decomp[0]) && unicode_decomp[lo].cp == cp) {
            self(unicode_decomp[lo].a, self);
            if (unicode_decomp[lo].b) self(unicode_decomp[lo].b, self);
        } else {
            d.push_back(cp);
        }
    };
    for (size_t i = 0; i < s.size();) decompose(hf_utf8_next(s, &i), decompose);
    for (size_t i = 1; i < d.size(); i++)   // canonical order: a stable insertion sort of the non-starters
        for (size_t j = i; j > 0 && ccc(d[j]) != 0 && ccc(d[j - 1]) > ccc(d[j]); j--) std::swap(d[j - 1], d[j]);
    std::vector<uint32_t> r;
    long starter = -1;
    int last = -1;
    for (uint32_t cp : d) {
        const int k = ccc(cp);
        if (starter >= 0 && (last < k || last == 0)) {
            const uint32_t a = r[starter];
            uint32_t c = 0;
            if (a >= 0x1100 && a < 0x1113 && cp >= 0x1161 && cp < 0x1176) c = 0xAC00 + ((a - 0x1100) * 21 + (cp - 0x1161)) * 28;
            else if (a >= 0xAC00 && a < 0xAC00 + 11172 && (a - 0xAC00) % 28 == 0 && cp >= 0x11A8 && cp < 0x11C3) c = a + cp - 0x11A7;
            else {
                auto it = compose->find(((uint64_t)a << 21) | cp);
                if (it != compose->end()) c = it->second;
            }
            if (c) { r[starter] = c; continue; }
        }
        if (k == 0) starter = (long)r.size();
        last = starter >= 0 ? k : 256;
        r.push_back(cp);
    }
    std::string o;
    for (uint32_t cp : r) {
        if (cp < 0x80) o += (char)cp;
        else if (cp < 0x800) { o += (char)(0xC0 | (cp >> 6)); o += (char)(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) { o += (char)(0xE0 | (cp >> 12)); o += (char)(0x80 | ((cp >> 6) & 0x3F)); o += (char)(0x80 | (cp & 0x3F)); }
        else { o += (char)(0xF0 | (cp >> 18)); o += (char)(0x80 | ((cp >> 12) & 0x3F)); o += (char)(0x80 | ((cp >> 6) & 0x3F)); o += (char)(0x80 | (cp & 0x3F)); }
    }
    return o;
}

// Reads what encoding needs; anything not supported exactly goes to t->encode_error (the first
// problem; decoding is unaffected) or, for the post-processor, t->post_error.
static inline void hf_encode_config(JsonRef root, HFTokenizer* t) {
    const char* p = t->path.c_str();
    char buf[1024];
    t->encode_error.clear();
    auto refuse = [&](const char* fmt, const std::string& a, const std::string& b = "") {
        if (!t->encode_error.empty()) return;
        snprintf(buf, sizeof buf, fmt, a.c_str(), b.c_str());
        t->encode_error = std::string(p) + ": " + buf + " (encoding with this tokenizer.json is not supported; decoding is)";
    };
    auto type_of = [](JsonRef o) { return o.is_object() && o.has("type") && o["type"].is_string() ? o["type"].as_string() : std::string("?"); };
    JsonRef model = root["model"];
    for (int b = 0; b < 256; b++) {
        auto it = t->vocab.find(std::string(1, (char)b));
        t->byte_id[b] = it == t->vocab.end() ? -1 : it->second;
    }
    // model
    if (model.has("dropout") && !model["dropout"].is_null() && !(model["dropout"].is_number() && model["dropout"].as_double() == 0.0))
        refuse("model.dropout: %s is not supported (BPE dropout samples)", "non-zero");
    if (model.has("byte_fallback") && model["byte_fallback"].is_bool() && model["byte_fallback"].as_bool())
        refuse("model.byte_fallback: true is not supported%s", "");
    if (model.has("ignore_merges") && model["ignore_merges"].is_bool()) t->ignore_merges = model["ignore_merges"].as_bool();
    if (model.has("fuse_unk") && model["fuse_unk"].is_bool()) t->fuse_unk = model["fuse_unk"].as_bool();
    if (model.has("unk_token") && !model["unk_token"].is_null()) {
        JsonRef u = model["unk_token"];
        auto it = t->vocab.end();
        if (u.is_string()) {
            // the unk token is written as a byte-level string: map it to bytes like the vocabulary
            std::string bytes;
            if (hf_bytelevel_to_bytes(u.as_string(), &bytes) < 0) it = t->vocab.find(bytes);
        }
        if (it == t->vocab.end()) refuse("model.unk_token: '%s' is not in model.vocab", u.is_string() ? hf_printable(u.as_string()) : "?");
        else t->unk_id = it->second;
    }
    if (!model.has("merges") || !model["merges"].is_array()) refuse("model.merges: %s", "missing or not an array");
    else {
        JsonRef m = model["merges"];
        auto to_bytes = [&](const std::string& tok, std::string* out) { return hf_bytelevel_to_bytes(tok, out) < 0; };
        std::string a, b, l, r;
        t->merges.reserve(m.size() * 2);
        for (size_t k = 0; k < m.size(); k++) {
            JsonRef e = m.at(k);
            if (e.is_string()) {
                const std::string& s = e.as_string();
                const size_t sp = s.find(' ');
                if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
                    refuse("model.merges: entry '%s' is not two tokens separated by one space", hf_printable(s));
                    break;
                }
                a = s.substr(0, sp);
                b = s.substr(sp + 1);
            } else if (e.is_array() && e.size() == 2 && e.at(0).is_string() && e.at(1).is_string()) {
                a = e.at(0).as_string();
                b = e.at(1).as_string();
            } else {
                refuse("model.merges: entry %s is neither \"a b\" nor [a, b]", std::to_string(k));
                break;
            }
            if (!to_bytes(a, &l) || !to_bytes(b, &r)) { refuse("model.merges: entry %s has a character outside the byte-level alphabet", std::to_string(k)); break; }
            auto il = t->vocab.find(l), ir = t->vocab.find(r), im = t->vocab.find(l + r);
            if (il == t->vocab.end() || ir == t->vocab.end() || im == t->vocab.end()) {
                refuse("model.merges: entry %s uses or makes a token not in model.vocab", std::to_string(k));
                break;
            }
            const uint64_t key = ((uint64_t)(uint32_t)il->second << 32) | (uint32_t)ir->second;
            t->merges[key] = std::make_pair((int)k, im->second);   // a repeated pair: the last one wins, as in the library's map
        }
    }
    // normalizer
    if (root.has("normalizer") && !root["normalizer"].is_null()) {
        JsonRef n = root["normalizer"];
        const std::string ty = type_of(n);
        if (ty == "NFC") t->nfc = true;
        else if (ty == "Sequence" && n.has("normalizers") && n["normalizers"].is_array()) {
            for (size_t k = 0; k < n["normalizers"].size(); k++) {
                const std::string tk = type_of(n["normalizers"].at(k));
                if (tk == "NFC") t->nfc = true;
                else refuse("normalizer: '%s' is not supported for encoding (null and NFC are)", tk);
            }
        } else refuse("normalizer: '%s' is not supported for encoding (null and NFC are)", ty);
    }
    // pre_tokenizer
    auto step = [&](JsonRef s) {
        const std::string ty = type_of(s);
        HFPreStep st;
        if (ty == "ByteLevel") {
            st.bytelevel = true;
            st.add_prefix_space = s.has("add_prefix_space") && s["add_prefix_space"].is_bool() && s["add_prefix_space"].as_bool();
            st.use_regex = !(s.has("use_regex") && s["use_regex"].is_bool() && !s["use_regex"].as_bool());   // default true
            st.pattern = HF_PAT_GPT2;
        } else if (ty == "Split") {
            const std::string beh = s.has("behavior") && s["behavior"].is_string() ? s["behavior"].as_string() : "?";
            if (beh != "Isolated") refuse("pre_tokenizer: Split behavior '%s' is not supported (Isolated is)", beh);
            if (s.has("invert") && s["invert"].is_bool() && s["invert"].as_bool()) refuse("pre_tokenizer: Split invert %s is not supported", "true");
            if (!s.has("pattern") || !s["pattern"].is_object() || !s["pattern"].has("Regex") || !s["pattern"]["Regex"].is_string()) {
                refuse("pre_tokenizer: Split pattern: %s", "only a {\"Regex\": ...} pattern is supported");
                return;
            }
            const std::string& re = s["pattern"]["Regex"].as_string();
            int which = -1;
            for (int k = 0; k < 3; k++) if (re == HF_PATTERNS[k]) which = k;
            if (which < 0)
                refuse("pre_tokenizer: Split regex '%s' is not one of the patterns this encoder matches exactly (GPT-2's, Llama 3's, Qwen2's)", hf_printable(re, 400));
            st.pattern = which < 0 ? 0 : which;
        } else {
            refuse("pre_tokenizer: '%s' is not supported for encoding (ByteLevel, and Sequence of Split and ByteLevel, are)", ty);
            return;
        }
        t->pre.push_back(st);
    };
    if (!root.has("pre_tokenizer") || root["pre_tokenizer"].is_null()) refuse("pre_tokenizer: %s", "null is not supported for encoding (a byte-level BPE needs ByteLevel)");
    else {
        JsonRef pt = root["pre_tokenizer"];
        if (type_of(pt) == "Sequence" && pt.has("pretokenizers") && pt["pretokenizers"].is_array())
            for (size_t k = 0; k < pt["pretokenizers"].size(); k++) step(pt["pretokenizers"].at(k));
        else step(pt);
        int n_bl = 0;
        for (const HFPreStep& st : t->pre) n_bl += st.bytelevel;
        if (t->encode_error.empty() && (n_bl != 1 || !t->pre.back().bytelevel))
            refuse("pre_tokenizer: %s", "expected exactly one ByteLevel, as the last step");
    }
    // added tokens
    if (root.has("added_tokens") && root["added_tokens"].is_array()) {
        JsonRef added = root["added_tokens"];
        for (size_t k = 0; k < added.size(); k++) {
            JsonRef a = added.at(k);
            HFAddedToken at;
            at.content = a["content"].as_string();
            at.id = a["id"].as_int(0, HF_TOKENIZER_MAX_ID - 1);
            const bool special = a.get_bool("special", false);
            at.lstrip = a.get_bool("lstrip", false);
            at.rstrip = a.get_bool("rstrip", false);
            at.single_word = a.get_bool("single_word", false);
            at.normalized = a.get_bool("normalized", !special);
            if (at.content.empty()) continue;   // ignored by the library
            bool dup = false;
            for (const HFAddedToken& o : t->added) dup |= o.content == at.content;
            if (dup) continue;   // the first one matches
            if (at.normalized && t->nfc) at.content = hf_nfc(at.content);   // matched in its normalized form
            t->added.push_back(at);
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        t->added_first[pass].assign(256, {});
        for (size_t k = 0; k < t->added.size(); k++)
            if (t->added[k].normalized == (pass == 1)) t->added_first[pass][(unsigned char)t->added[k].content[0]].push_back((int)k);
        for (auto& v : t->added_first[pass])
            std::stable_sort(v.begin(), v.end(), [&](int x, int y) { return t->added[x].content.size() > t->added[y].content.size(); });
    }
    // truncation, padding
    for (const char* k : {"truncation", "padding"})
        if (root.has(k) && !root[k].is_null()) refuse("%s: set; it is not supported for encoding (null is)%s", k);
    // post_processor: TemplateProcessing's single template
    auto proc = [&](JsonRef pp, auto& self) -> void {
        const std::string ty = type_of(pp);
        if (ty == "ByteLevel") return;
        if (ty == "Sequence" && pp.has("processors") && pp["processors"].is_array()) {
            for (size_t k = 0; k < pp["processors"].size(); k++) self(pp["processors"].at(k), self);
            return;
        }
        if (ty == "TemplateProcessing" && pp.has("single") && pp["single"].is_array() && pp.has("special_tokens") &&
            pp["special_tokens"].is_object() && t->bos_ids.empty() && t->eos_ids.empty()) {
            JsonRef single = pp["single"], sp = pp["special_tokens"];
            bool seen_a = false;
            for (size_t k = 0; k < single.size(); k++) {
                JsonRef item = single.at(k);
                if (item.is_object() && item.has("Sequence") && item["Sequence"].is_object() &&
                    item["Sequence"].get_string("id", "") == "A" && !seen_a) { seen_a = true; continue; }
                if (!item.is_object() || !item.has("SpecialToken") || !item["SpecialToken"].is_object() ||
                    !item["SpecialToken"].has("id") || !item["SpecialToken"]["id"].is_string()) { t->post_error = "an item of post_processor single"; return; }
                const std::string& name = item["SpecialToken"]["id"].as_string();
                if (!sp.has(name) || !sp[name].is_object() || !sp[name].has("ids") || !sp[name]["ids"].is_array()) {
                    t->post_error = "special token '" + hf_printable(name) + "' missing from special_tokens";
                    return;
                }
                JsonRef ids = sp[name]["ids"];
                for (size_t j = 0; j < ids.size(); j++) {
                    if (!ids.at(j).is_number()) { t->post_error = "special token ids"; return; }
                    (seen_a ? t->eos_ids : t->bos_ids).push_back(ids.at(j).as_int(0, HF_TOKENIZER_MAX_ID - 1));
                }
            }
            if (!seen_a) t->post_error = "a single template without $A";
            return;
        }
        t->post_error = "'" + ty + "'";
    };
    if (root.has("post_processor") && !root["post_processor"].is_null()) proc(root["post_processor"], proc);
    if (!t->post_error.empty())
        t->post_error = std::string(p) + ": post_processor: " + t->post_error +
                        " is not supported for add_special (null, ByteLevel and TemplateProcessing's single template are)";
}

static inline void hf_tokenizer_load(HFTokenizer* out, const std::string& path) {
    JsonDoc doc = json_parse_file(path);
    JsonRef root = doc.root();
    const char* p = path.c_str();
    if (!root.is_object()) root.type_error("a JSON object (a tokenizers tokenizer.json)");
    JsonRef model = root["model"];
    if (!model.is_object()) model.type_error("an object");
    const std::string type = model.get_string("type", model.has("merges") ? "BPE" : "");
    if (type != "BPE")
        fail("%s: model.type: '%s' is not supported: expected a byte-level BPE tokenizer (model.type BPE, as GPT-2, Llama 3 and Qwen use)", p,
             type.c_str());
    if (!root.has("decoder") || !hf_has_bytelevel(root["decoder"])) {
        std::string found = "none";
        if (root.has("decoder") && root["decoder"].is_object()) found = root["decoder"].get_string("type", "?");
        fail("%s: decoder: expected a ByteLevel decoder (byte-level BPE; SentencePiece-style BPE such as Llama 2's is not supported), found %s", p,
             found.c_str());
    }
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (model.has(k) && !model[k].is_null() && !model[k].as_string().empty())
            fail("%s: model.%s: '%s' is not supported (not a byte-level BPE)", p, k, model[k].as_string().c_str());
    HFTokenizer t;
    t.path = path;
    auto ensure = [&](int id) {
        if ((size_t)id >= t.pieces.size()) {
            t.pieces.resize((size_t)id + 1);
            t.has.resize((size_t)id + 1, 0);
            t.special.resize((size_t)id + 1, 0);
        }
    };
    JsonRef vocab = model["vocab"];
    if (!vocab.is_object()) vocab.type_error("an object {token: id}");
    for (size_t k = 0; k < vocab.size(); k++) {
        const std::string& tok = vocab.key_at(k);
        const int id = vocab.value_at(k).as_int(0, HF_TOKENIZER_MAX_ID - 1);
        ensure(id);
        if (t.has[id]) fail("%s: model.vocab: id %d is given to two tokens", p, id);
        std::string bytes;
        const int64_t bad = hf_bytelevel_to_bytes(tok, &bytes);
        if (bad >= 0)
            fail("%s: model.vocab: token %d has the character U+%04X, outside the byte-level alphabet (not a byte-level BPE)", p, id, (unsigned)bad);
        t.pieces[id] = bytes;
        t.has[id] = 1;
        t.vocab[bytes] = id;
    }
    if (root.has("added_tokens") && !root["added_tokens"].is_null()) {
        JsonRef added = root["added_tokens"];
        if (!added.is_array()) added.type_error("an array of {id, content, special}");
        for (size_t k = 0; k < added.size(); k++) {
            JsonRef a = added.at(k);
            const int id = a["id"].as_int(0, HF_TOKENIZER_MAX_ID - 1);
            ensure(id);
            t.pieces[id] = a["content"].as_string();   // verbatim, overriding a vocab entry of the same id
            t.has[id] = 1;
            t.special[id] = a.get_bool("special", false) ? 1 : 0;
        }
    }
    if (t.pieces.empty()) fail("%s: model.vocab: no tokens", p);
    for (uint8_t h : t.has) t.n_tokens += h;
    hf_encode_config(root, &t);
    *out = std::move(t);
}

// Concatenated bytes of the tokens; ids without a token add nothing.
static inline std::string hf_tokenizer_decode(const HFTokenizer* t, const int* ids, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->size()) s += t->pieces[ids[i]];
    return s;
}

// The id of the token with this content, or -1 (special_only: among the added tokens marked special).
static inline int hf_tokenizer_find(const HFTokenizer* t, const std::string& content, bool special_only) {
    for (int id = 0; id < t->size(); id++)
        if ((special_only ? t->special[id] : t->has[id]) && t->pieces[id] == content) return id;
    return -1;
}
// The id of an added token with this content (e.g. "<|endoftext|>"), or -1.
static inline int hf_tokenizer_special_id(const HFTokenizer* t, const std::string& content) { return hf_tokenizer_find(t, content, true); }

// ---- encoding

// strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF): the byte offset of
// the first invalid sequence, or -1
static inline long hf_utf8_invalid_at(std::string_view s) {
    const unsigned char* u = (const unsigned char*)s.data();
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = u[i];
        if (c < 0x80) { i++; continue; }
        int len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return (long)i;
        if (i + len > n) return (long)i;
        for (int k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) return (long)i;
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (long)i;
        i += len;
    }
    return -1;
}

// The pre-tokenizer regexes, matched by hand: the length (in code points) of the match at cp[i]
// (0: none). Alternatives are tried in order, each with the backtracking the regex engine does.
static inline size_t hf_regex_match_at(int pattern, const std::vector<uint32_t>& cp, const std::vector<uint8_t>& cl, size_t i) {
    const size_t n = cp.size();
    const uint32_t c = cp[i];
    auto is_other = [&](size_t k) { return k < n && cl[k] == 0; };   // [^\s\p{L}\p{N}]
    auto is_l = [&](size_t k) { return k < n && (cl[k] & HF_CL_L); };
    auto is_n = [&](size_t k) { return k < n && (cl[k] & HF_CL_N); };
    auto is_ws = [&](size_t k) { return k < n && (cl[k] & HF_CL_WS); };
    // contractions: 's|'t|'re|'ve|'m|'ll|'d, case-insensitive for Llama 3 / Qwen2
    if (c == '\'' && i + 1 < n) {
        const bool fold = pattern != HF_PAT_GPT2;
        auto eq = [&](size_t k, char lower) {
            if (k >= n) return false;
            const uint32_t x = cp[k];
            if (x == (uint32_t)lower) return true;
            if (!fold) return false;
            return x == (uint32_t)(lower - 32) || (lower == 's' && x == 0x17F);   // U+017F LATIN SMALL LETTER LONG S folds to s
        };
        if (eq(i + 1, 's') || eq(i + 1, 't') || eq(i + 1, 'm') || eq(i + 1, 'd')) return 2;
        if ((eq(i + 1, 'r') && eq(i + 2, 'e')) || (eq(i + 1, 'v') && eq(i + 2, 'e')) || (eq(i + 1, 'l') && eq(i + 2, 'l'))) return 3;
    }
    if (pattern == HF_PAT_GPT2) {
        // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
        for (int k = 0; k < 3; k++) {
            auto in = [&](size_t j) { return k == 0 ? is_l(j) : k == 1 ? is_n(j) : is_other(j); };
            size_t j = i;
            if (c == ' ' && in(i + 1)) j++;
            if (in(j)) {
                while (in(j)) j++;
                return j - i;
            }
        }
    } else {
        // [^\r\n\p{L}\p{N}]?\p{L}+
        {
            size_t j = i;
            if (!(cl[i] & (HF_CL_L | HF_CL_N)) && c != '\r' && c != '\n' && is_l(i + 1)) j++;
            if (is_l(j)) {
                while (is_l(j)) j++;
                return j - i;
            }
        }
        // \p{N}{1,3} (Llama 3) or \p{N} (Qwen2)
        if (is_n(i)) {
            const size_t max = pattern == HF_PAT_LLAMA3 ? 3 : 1;
            size_t j = i;
            while (j - i < max && is_n(j)) j++;
            return j - i;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        {
            size_t j = i;
            if (c == ' ' && is_other(i + 1)) j++;
            if (is_other(j)) {
                while (is_other(j)) j++;
                while (j < n && (cp[j] == '\r' || cp[j] == '\n')) j++;
                return j - i;
            }
        }
        // \s*[\r\n]+ : the whitespace run up to and including its last \r or \n
        if (is_ws(i)) {
            size_t j = i, last = n;
            while (is_ws(j)) { if (cp[j] == '\r' || cp[j] == '\n') last = j; j++; }
            if (last < n) return last + 1 - i;
        }
    }
    // \s+(?!\S) : a whitespace run to the end of the text, or all of it but its last character
    // when a non-space follows (if that leaves one or more); else \s+
    if (is_ws(i)) {
        size_t j = i;
        while (is_ws(j)) j++;
        if (j == n || j - i == 1) return j - i;
        return j - 1 - i;
    }
    return 0;
}

// Split(pattern, Isolated): the matches and the text between them, in order, none empty
static inline void hf_regex_split(int pattern, const std::string& s, std::vector<std::string>* out) {
    std::vector<uint32_t> cp;
    std::vector<size_t> at;
    std::vector<uint8_t> cl;
    for (size_t i = 0; i < s.size();) {
        at.push_back(i);
        cp.push_back(hf_utf8_next(s, &i));
        cl.push_back((uint8_t)hf_class(cp.back()));
    }
    at.push_back(s.size());
    size_t gap = 0;   // start (code point index) of text not matched yet
    for (size_t i = 0; i < cp.size();) {
        const size_t m = hf_regex_match_at(pattern, cp, cl, i);
        if (m == 0) { i++; continue; }
        if (gap < i) out->push_back(s.substr(at[gap], at[i] - at[gap]));
        out->push_back(s.substr(at[i], at[i + m] - at[i]));
        i += m;
        gap = i;
    }
    if (gap < cp.size()) out->push_back(s.substr(at[gap]));
}

// BPE on the bytes of one pre-token, appending the ids
static inline void hf_bpe(const HFTokenizer* t, const std::string& w, std::vector<int>* out) {
    if (w.empty()) return;
    if (t->ignore_merges) {
        auto it = t->vocab.find(w);
        if (it != t->vocab.end()) { out->push_back(it->second); return; }
    }
    auto hit = t->cache.find(w);
    if (hit != t->cache.end()) { out->insert(out->end(), hit->second.begin(), hit->second.end()); return; }
    struct Sym { int id, prev, next, len; };
    std::vector<Sym> sym;
    sym.reserve(w.size());
    int unk_len = 0;   // pending unknown bytes (with unk_token)
    auto add = [&](int id, int len) {
        const int k = (int)sym.size();
        sym.push_back({id, k - 1, -1, len});
        if (k > 0) sym[k - 1].next = k;
    };
    for (size_t i = 0; i < w.size(); i++) {
        const int id = t->byte_id[(unsigned char)w[i]];
        if (id >= 0) {
            if (unk_len) { add(t->unk_id, unk_len); unk_len = 0; }
            add(id, 1);
        } else if (t->unk_id >= 0) {
            if (unk_len && !t->fuse_unk) { add(t->unk_id, unk_len); unk_len = 0; }
            unk_len += 1;
        }   // else dropped, as the library does without an unk_token
    }
    if (unk_len) add(t->unk_id, unk_len);
    struct Cand { int rank, pos, new_id; };
    auto later = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
    std::priority_queue<Cand, std::vector<Cand>, decltype(later)> q(later);
    auto pair_of = [&](int l, int r) -> const std::pair<int, int>* {
        auto it = t->merges.find(((uint64_t)(uint32_t)sym[l].id << 32) | (uint32_t)sym[r].id);
        return it == t->merges.end() ? nullptr : &it->second;
    };
    for (int k = 0; k + 1 < (int)sym.size(); k++)
        if (const auto* m = pair_of(k, k + 1)) q.push({m->first, k, m->second});
    while (!q.empty()) {
        const Cand top = q.top();
        q.pop();
        Sym& s = sym[top.pos];
        if (s.len == 0 || s.next < 0) continue;
        const auto* m = pair_of(top.pos, s.next);
        if (!m || m->second != top.new_id) continue;   // stale: a neighbour merged since
        Sym& r = sym[s.next];
        s.id = top.new_id;
        s.len += r.len;
        r.len = 0;
        s.next = r.next;
        if (s.next >= 0) sym[s.next].prev = top.pos;
        if (s.prev >= 0)
            if (const auto* pm = pair_of(s.prev, top.pos)) q.push({pm->first, s.prev, pm->second});
        if (s.next >= 0)
            if (const auto* nm = pair_of(top.pos, s.next)) q.push({nm->first, top.pos, nm->second});
    }
    std::vector<int> ids;
    for (int k = sym.empty() ? -1 : 0; k >= 0; k = sym[k].next) ids.push_back(sym[k].id);
    out->insert(out->end(), ids.begin(), ids.end());
    if (t->cache.size() >= (1u << 16)) t->cache.clear();
    t->cache.emplace(w, std::move(ids));
}

// White_Space at the start of s (its byte length), and where the White_Space at its end starts
static inline size_t hf_ws_prefix(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        size_t j = i;
        if (!(hf_class(hf_utf8_next(s, &j)) & HF_CL_WS)) break;
        i = j;
    }
    return i;
}
static inline size_t hf_ws_suffix_start(std::string_view s) {
    size_t e = s.size();
    while (e > 0) {
        size_t b = e - 1;
        while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
        size_t j = b;
        if (!(hf_class(hf_utf8_next(s, &j)) & HF_CL_WS)) break;
        e = b;
    }
    return e;
}

// The library's AddedVocabulary::find_matches: split s on the added tokens of one pass
// (id -1: text), leftmost-longest, non-overlapping, with single_word / lstrip / rstrip.
static inline void hf_split_added(const HFTokenizer* t, int pass, const std::string& s, std::vector<std::pair<int, std::string>>* out) {
    const auto& first = t->added_first[pass];
    size_t start_offset = 0, pos = 0;
    auto word_char = [&](unsigned char ch) {
        if (ch >= 0x80)
            fail("%s: encode: an added token with single_word true next to a non-ASCII character is not supported (needs Unicode \\w)", t->path.c_str());
        return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') || ch == '_';
    };
    while (pos < s.size()) {
        size_t p = pos;
        int hit = -1;
        for (; p < s.size() && hit < 0; p++)
            for (int k : first[(unsigned char)s[p]])
                if (s.compare(p, t->added[k].content.size(), t->added[k].content) == 0) { hit = k; break; }
        if (hit < 0) break;
        p--;
        const HFAddedToken& a = t->added[hit];
        size_t start = p, stop = p + a.content.size();
        pos = stop;
        if (a.single_word) {
            size_t b = start;   // the character before
            if (b > 0) { b--; while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--; }
            const bool start_space = start == 0 || !word_char((unsigned char)s[b]);
            const bool stop_space = stop == s.size() || !word_char((unsigned char)s[stop]);
            if (!start_space || !stop_space) continue;
        }
        if (a.lstrip) start = std::max(hf_ws_suffix_start(std::string_view(s).substr(0, start)), start_offset);
        if (a.rstrip) stop += hf_ws_prefix(std::string_view(s).substr(stop));
        if (start_offset < start) out->push_back({-1, s.substr(start_offset, start - start_offset)});
        out->push_back({a.id, std::string()});
        start_offset = stop;
    }
    if (start_offset < s.size()) out->push_back({-1, s.substr(start_offset)});
}

// The pre-tokenizer on one piece of text (valid UTF-8, no added tokens in it, normalized): the pre-tokens,
// as bytes (what the library's pre_tokenizer.pre_tokenize_str gives, before the byte-level mapping)
static inline void hf_pre_tokenize(const HFTokenizer* t, const std::string& text, std::vector<std::string>* out) {
    std::vector<std::string> next;
    out->clear();
    if (text.empty()) return;
    out->push_back(text);
    for (const HFPreStep& st : t->pre) {
        next.clear();
        for (std::string& pc : *out) {
            if (st.bytelevel && st.add_prefix_space && pc[0] != ' ') pc.insert(0, 1, ' ');
            if (!st.bytelevel || st.use_regex) hf_regex_split(st.pattern, pc, &next);
            else next.push_back(std::move(pc));
        }
        out->swap(next);
    }
}

// Why this tokenizer cannot encode ("" if it can).
static inline const std::string& hf_tokenizer_encode_error(const HFTokenizer* t) { return t->encode_error; }

// The ids of text as the tokenizers library's Tokenizer.encode(text, add_special_tokens=add_special)
// gives them (see the top of this file for what is supported).
static inline std::vector<int> hf_tokenizer_encode(const HFTokenizer* t, std::string_view text, bool add_special) {
    if (!t->encode_error.empty()) fail("%s", t->encode_error.c_str());
    if (add_special && !t->post_error.empty()) fail("%s", t->post_error.c_str());
    const long bad = hf_utf8_invalid_at(text);
    if (bad >= 0)
        fail("%s: encode: the text is not valid UTF-8 (byte offset %ld, 0x%02X); the tokenizers library takes only valid UTF-8", t->path.c_str(), bad,
             (unsigned char)text[bad]);
    std::vector<int> ids;
    if (add_special) ids = t->bos_ids;
    // 1. added tokens: normalized false on the raw text, then (after normalization) normalized true
    std::vector<std::pair<int, std::string>> segs, segs2;
    hf_split_added(t, 0, std::string(text), &segs);
    for (auto& sg : segs) {
        if (sg.first >= 0) { segs2.push_back(std::move(sg)); continue; }
        hf_split_added(t, 1, t->nfc ? hf_nfc(sg.second) : sg.second, &segs2);
    }
    // 2. pre-tokenize and BPE each text piece
    std::vector<std::string> pieces;
    for (const auto& sg : segs2) {
        if (sg.first >= 0) { ids.push_back(sg.first); continue; }
        hf_pre_tokenize(t, sg.second, &pieces);
        for (const std::string& pc : pieces) hf_bpe(t, pc, &ids);
    }
    if (add_special) ids.insert(ids.end(), t->eos_ids.begin(), t->eos_ids.end());
    return ids;
}
