/*
Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama 3, Qwen2/2.5/3, Emu3): DECODING only.

    HFTokenizer tok;
    hf_tokenizer_load(&tok, "model/tokenizer.json");
    std::string bytes = hf_tokenizer_decode(&tok, ids, n);

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

Encoding is not here: doing it exactly needs the pre-tokenizer regex with Unicode categories
(\p{L}, \p{N}, \s) and, for Qwen, NFC normalization; token data is made in Python with the
model's own tokenizer (scripts/tokenize_hf.py), so the ids match transformers' exactly.
*/
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "utils.h"
#include "json.h"

#define HF_TOKENIZER_MAX_ID (1 << 24)

struct HFTokenizer {
    std::string path;
    std::vector<std::string> pieces;   // id -> bytes ("" where an id has no token)
    std::vector<uint8_t> has;          // id has a token
    std::vector<uint8_t> special;      // id is an added token marked special
    int n_tokens = 0;                  // ids that have a token
    int size() const { return (int)pieces.size(); }   // largest id + 1
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

// decodes one UTF-8 code point at s[i] (the JSON parser has validated the UTF-8)
static inline uint32_t hf_utf8_next(const std::string& s, size_t* i) {
    const unsigned char c = (unsigned char)s[*i];
    int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len && *i + k < s.size(); k++) cp = (cp << 6) | ((unsigned char)s[*i + k] & 0x3F);
    *i += len;
    return cp;
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
    int cp_of_byte[256], byte_of_cp[324];
    hf_byte_tables(cp_of_byte, byte_of_cp);

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
        for (size_t i = 0; i < tok.size();) {
            const uint32_t cp = hf_utf8_next(tok, &i);
            if (cp >= 324 || byte_of_cp[cp] < 0)
                fail("%s: model.vocab: token %d has the character U+%04X, outside the byte-level alphabet (not a byte-level BPE)", p, id, cp);
            bytes += (char)byte_of_cp[cp];
        }
        t.pieces[id] = bytes;
        t.has[id] = 1;
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
    *out = std::move(t);
}

// Concatenated bytes of the tokens; ids without a token add nothing.
static inline std::string hf_tokenizer_decode(const HFTokenizer* t, const int* ids, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->size()) s += t->pieces[ids[i]];
    return s;
}

// The id of an added token with this content (e.g. "<|endoftext|>"), or -1.
static inline int hf_tokenizer_special_id(const HFTokenizer* t, const std::string& content) {
    for (int id = 0; id < t->size(); id++)
        if (t->special[id] && t->pieces[id] == content) return id;
    return -1;
}
