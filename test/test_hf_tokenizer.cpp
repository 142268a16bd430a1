/*
Tests of tokenizer.json ENCODING (llmc/formats/hf_tokenizer.h: hf_tokenizer_encode) against the tokenizers
library, with the fixtures of dev/reference/hf_tokenizer_encode.py in test/data/hf_encode/ (tiny
byte-level BPE tokenizers configured as GPT-2's, Llama 3's and Qwen2's tokenizer.json files):
  - the pre-tokens (the regex split) and every id of every case (cases.txt: ASCII, contractions in all cases, digits, whitespace runs
    of every kind, Unicode spaces, accents, CJK, Hangul, scripts with combining marks, emoji,
    added tokens with lstrip / rstrip / single_word / normalized, special tokens, ignore_merges,
    add_prefix_space; 120 random strings over a pool of such pieces), with add_special false and
    true (Llama 3's <|begin_of_text|> template)
  - all of data/tinyshakespeare.txt: the id count and a hash of the ids (long.txt)
  - round trips: decode(encode(x)) == x for the cases, tinyshakespeare and random Unicode text
  - test/data/hf/llama_tiny's tokenizer.json (dev/reference/hf_tiny.py): the ids of
    test/data/hf/tokenizer.mgt come back from encoding its text
  - hf_nfc against Python's unicodedata NFC on 600 random strings (nfc.txt); the qwen2 cases
    also hold decomposed text, against the library's own NFC normalizer
  - bad input ends with exit 1 and one stderr line naming the file: an unknown Split regex, an
    unsupported normalizer or pre-tokenizer, invalid UTF-8 (bad byte, overlong, surrogate,
    truncated), single_word next to non-ASCII, add_special with another post-processor, dropout

  ./test/test_hf_tokenizer
  ./test/test_hf_tokenizer --encode FILE HEX [special]     (child mode: prints the ids)
*/
#include <chrono>
#include <map>
#include <random>
#include "test_util.h"
#include "../llmc/formats/hf_tokenizer.h"
#include "../llmc/formats/tensorfile.h"
#include "../dev/data/dataset_hf.h"

static const std::string DATA = "test/data/hf_encode";
static const std::string TMP = "test/tmp/hf_tokenizer";

static std::string unhex(const std::string& h) {
    std::string s;
    for (size_t i = 0; i + 1 < h.size(); i += 2) s += (char)strtol(h.substr(i, 2).c_str(), nullptr, 16);
    return s;
}
static std::vector<int> parse_ids(const std::string& s) {
    std::vector<int> v;
    if (s == "-") return v;
    size_t i = 0;
    while (i < s.size()) {
        size_t j = s.find(' ', i);
        if (j == std::string::npos) j = s.size();
        v.push_back(atoi(s.substr(i, j - i).c_str()));
        i = j + 1;
    }
    return v;
}
static std::string ids_str(const std::vector<int>& v, size_t n = 24) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < n; i++) s += (i ? " " : "") + std::to_string(v[i]);
    if (v.size() > n) s += " ...";
    return "[" + s + "]";
}
// the non-empty lines of a text file
static std::vector<std::string> read_lines(const std::string& path) {
    std::vector<std::string> v;
    const std::string all = read_file_or_fail(path);
    size_t i = 0;
    while (i < all.size()) {
        size_t j = all.find('\n', i);
        if (j == std::string::npos) j = all.size();
        if (j > i) v.push_back(all.substr(i, j - i));
        i = j + 1;
    }
    return v;
}
static std::vector<std::string> split_tab(const std::string& line) {
    std::vector<std::string> f;
    size_t i = 0;
    while (true) {
        size_t j = line.find('\t', i);
        f.push_back(line.substr(i, j == std::string::npos ? std::string::npos : j - i));
        if (j == std::string::npos) break;
        i = j + 1;
    }
    return f;
}
static uint64_t fnv_ids(const std::vector<int>& ids) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int x : ids)
        for (int k = 0; k < 4; k++) h = (h ^ ((uint32_t)x >> (8 * k) & 0xFF)) * 0x100000001b3ull;
    return h;
}
static std::string dec(const HFTokenizer& t, const std::vector<int>& ids) { return hf_tokenizer_decode(&t, ids.data(), ids.size()); }

// a copy of a fixture with one text replacement (which must be there)
static std::string variant(const std::string& name, const std::string& from, const std::string& to, const std::string& out) {
    std::string s = read_file_or_fail(DATA + "/" + name + ".json");
    const size_t at = s.find(from);
    if (at == std::string::npos) fail("test setup: '%s' not in %s.json", from.c_str(), name.c_str());
    s.replace(at, from.size(), to);
    const std::string path = TMP + "/" + out;
    FILE* f = fopen_or_fail(path, "wb");
    fwrite(s.data(), 1, s.size(), f);
    fclose(f);
    return path;
}

int main(int argc, char** argv) {
    child_err_path = TMP + "/child.err";
    if (argc >= 4 && std::string(argv[1]) == "--encode") {
        HFTokenizer t;
        hf_tokenizer_load(&t, argv[2]);
        for (int id : hf_tokenizer_encode(&t, unhex(argv[3]), argc > 4)) printf("%d ", id);
        printf("\n");
        return 0;
    }
    if (argc != 1) fail("usage: %s [--encode FILE HEX [special]]", argv[0]);
    make_parent_dirs(TMP + "/x");

    const char* names[] = {"gpt2", "gpt2_prefix", "llama3", "qwen2"};
    std::map<std::string, HFTokenizer> tok;
    for (const char* n : names) hf_tokenizer_load(&tok[n], DATA + "/" + n + ".json");
    for (const char* n : names)
        check(hf_tokenizer_encode_error(&tok[n]).empty() && tok[n].post_error.empty(), std::string("hf_encode/load_") + n,
              hf_tokenizer_encode_error(&tok[n]).empty() ? "encodable" : hf_tokenizer_encode_error(&tok[n]));
    check(tok["llama3"].bos_ids == std::vector<int>{0} && tok["llama3"].eos_ids.empty() && tok["llama3"].ignore_merges && tok["qwen2"].nfc &&
              tok["qwen2"].pre.size() == 2 && tok["qwen2"].pre[0].pattern == HF_PAT_QWEN2 && tok["llama3"].pre[0].pattern == HF_PAT_LLAMA3 &&
              tok["gpt2"].pre.size() == 1 && tok["gpt2"].pre[0].use_regex && tok["gpt2_prefix"].pre[0].add_prefix_space,
          "hf_encode/config", "llama3: BOS template [0], ignore_merges, Llama 3 regex; qwen2: NFC, Qwen2 regex; gpt2: ByteLevel regex; prefix space");

    // ---- every case, every id
    {
        std::map<std::string, int> n_ok, n_all, n_rt, n_rt_all, n_pre;
        std::string first_bad, first_rt_bad, first_pre_bad;
        for (const std::string& line : read_lines(DATA + "/cases.txt")) {
            const std::vector<std::string> f = split_tab(line);
            if (f.size() != 6 || !tok.count(f[0])) fail("%s/cases.txt: bad line '%s'", DATA.c_str(), line.c_str());
            const HFTokenizer& t = tok[f[0]];
            const std::string text = unhex(f[1]);
            const std::vector<int> want = parse_ids(f[2]), want_sp = parse_ids(f[3]);
            const std::vector<int> got = hf_tokenizer_encode(&t, text, false), got_sp = hf_tokenizer_encode(&t, text, true);
            n_all[f[0]]++;
            std::vector<std::string> pre;
            hf_pre_tokenize(&t, text, &pre);
            std::vector<int> pre_len;
            for (const std::string& p : pre) pre_len.push_back((int)p.size());
            if (pre_len == parse_ids(f[4])) n_pre[f[0]]++;
            else if (first_pre_bad.empty())
                first_pre_bad = f[0] + " '" + hf_printable(text, 80) + "': want lengths " + ids_str(parse_ids(f[4])) + " got " + ids_str(pre_len);
            if (got == want && got_sp == want_sp) n_ok[f[0]]++;
            else if (first_bad.empty())
                first_bad = f[0] + " '" + hf_printable(text, 80) + "': want " + ids_str(got == want ? want_sp : want) + " got " +
                            ids_str(got == want ? got_sp : got) + (got == want ? " (add_special)" : "");
            // round trip, where the library's own decode gives the text back
            if (f[5] == "1") {
                n_rt_all[f[0]]++;
                if (dec(t, got) == text) n_rt[f[0]]++;
                else if (first_rt_bad.empty()) first_rt_bad = f[0] + " '" + hf_printable(text, 80) + "'";
            }
        }
        for (const char* n : names) {
            check(n_pre[n] == n_all[n], std::string("hf_encode/pretokens_") + n,
                  std::to_string(n_pre[n]) + "/" + std::to_string(n_all[n]) + " cases split into the pre-tokens pre_tokenize_str gives" +
                      (first_pre_bad.empty() ? "" : "; first difference: " + first_pre_bad));
            check(n_all[n] > 40 && n_ok[n] == n_all[n], std::string("hf_encode/ids_") + n,
                  std::to_string(n_ok[n]) + "/" + std::to_string(n_all[n]) + " cases, every id as the tokenizers library's (add_special false and true)" +
                      (n_ok[n] == n_all[n] ? "" : "; first difference: " + first_bad));
            if (n_rt_all[n])
                check(n_rt[n] == n_rt_all[n], std::string("hf_encode/roundtrip_cases_") + n,
                      std::to_string(n_rt[n]) + "/" + std::to_string(n_rt_all[n]) + " cases decode(encode(x)) == x" +
                          (first_rt_bad.empty() ? "" : "; first: " + first_rt_bad));
        }
    }

    // ---- NFC against Python's unicodedata (Unicode 14.0, as the tables)
    {
        int ok = 0, total = 0, changed = 0;
        std::string first;
        for (const std::string& line : read_lines(DATA + "/nfc.txt")) {
            const std::vector<std::string> f = split_tab(line);
            if (f.size() != 2) continue;
            const std::string in = unhex(f[0]), want = unhex(f[1]), got = hf_nfc(in);
            total++;
            changed += in != want;
            if (got == want) ok++;
            else if (first.empty()) first = f[0] + " -> " + f[1] + ", got " + hf_printable(got);
        }
        check(total == 600 && ok == total && changed > 300 && hf_nfc("") == "" && hf_nfc("abc") == "abc", "hf_encode/nfc",
              std::to_string(ok) + "/" + std::to_string(total) + " random strings (" + std::to_string(changed) +
                  " not NFC) as unicodedata.normalize('NFC')" + (first.empty() ? "" : "; first difference: " + first));
    }

    // ---- all of tinyshakespeare: count and hash of the ids, round trip, speed
    {
        const std::string text = read_file_or_fail("data/tinyshakespeare.txt");
        for (const std::string& line : read_lines(DATA + "/long.txt")) {
            const std::vector<std::string> f = split_tab(line);
            if (f.size() != 3) continue;
            HFTokenizer& t = tok[f[0]];
            t.cache.clear();
            const auto t0 = std::chrono::steady_clock::now();
            const std::vector<int> ids = hf_tokenizer_encode(&t, text, false);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            char h[32];
            snprintf(h, sizeof h, "%016llx", (unsigned long long)fnv_ids(ids));
            const std::string want_text = f[0] == "gpt2_prefix" ? " " + text : text;   // add_prefix_space: one space before
            char msg[256];
            snprintf(msg, sizeof msg, "%zu ids (want %s), hash %s (want %s), decode(encode(x)) == x: %s; %.1f MB/s", ids.size(), f[1].c_str(), h,
                     f[2].c_str(), dec(t, ids) == want_text ? "yes" : "NO", text.size() / s / 1e6);
            check(std::to_string(ids.size()) == f[1] && f[2] == h && dec(t, ids) == want_text, "hf_encode/tinyshakespeare_" + f[0], msg);
        }
    }

    // ---- random Unicode text round-trips (no reference needed): ASCII, whitespace, Latin-1,
    // Greek, CJK, Hangul, emoji, digits of other scripts, apostrophes, special-token fragments
    {
        const std::vector<std::string> pool = {"a", "Z", "e", "s", "S", "'", "'s", "'LL", " ", "  ", "\t", "\n", "\r\n", "\r", "0", "7", "123",
                                               ".", ",", "!", "?", "-", "_", "(", "<", "|", ">", "<|", "|>", "endoftext", "<|endoftext|>",
                                               "\xc3\xa9", "\xc3\x9f", "\xce\xb1", "\xe4\xb8\xad", "\xed\x95\x9c", "\xf0\x9f\x99\x82", "\xd9\xa3",
                                               "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\x83", "\xc5\xbf", "\xe2\x80\x8b", "\xef\xbb\xbf", "\x0b"};
        std::mt19937 rng(1234);
        int ok = 0, total = 0;
        std::string first;
        for (int k = 0; k < 600; k++) {
            std::string x;
            const int len = rng() % 40;
            for (int j = 0; j < len; j++) x += pool[rng() % pool.size()];
            for (const char* n : {"gpt2", "llama3", "qwen2"}) {
                total++;
                if (dec(tok[n], hf_tokenizer_encode(&tok[n], x, false)) == x) ok++;
                else if (first.empty()) first = std::string(n) + " '" + hf_printable(x, 80) + "'";
            }
        }
        check(ok == total, "hf_encode/roundtrip_random", std::to_string(ok) + "/" + std::to_string(total) + " random strings" +
                                                             (first.empty() ? "" : "; first failure: " + first));
    }

    // ---- the committed llama_tiny tokenizer (test/data/hf, dev/reference/hf_tiny.py): its ids of a
    // text with special tokens come back from encoding the text
    {
        HFTokenizer t;
        hf_tokenizer_load(&t, "test/data/hf/llama_tiny/tokenizer.json");
        TensorFile tf = tensorfile_read("test/data/hf/tokenizer.mgt");
        const std::vector<int32_t>& ids = tf.i32("ids");
        const std::vector<int32_t>& bytes = tf.i32("bytes");
        std::string text;
        for (int32_t b : bytes) text += (char)b;
        const std::vector<int> got = hf_tokenizer_encode(&t, text, false);
        check(got == std::vector<int>(ids.begin(), ids.end()), "hf_encode/llama_tiny_known_ids",
              std::to_string(ids.size()) + " ids of test/data/hf/tokenizer.mgt (ASCII, Latin-1, CJK, emoji, specials), got " + ids_str(got, 8));
    }

    // ---- what is refused, and how
    {
        const std::string unk = variant("llama3", "\\\\p{N}{1,3}", "\\\\p{N}{1,4}", "tok_regex.json");
        HFTokenizer t;
        hf_tokenizer_load(&t, unk);
        check(!hf_tokenizer_encode_error(&t).empty() && dec(t, {45, 421}) == dec(tok["llama3"], {45, 421}), "hf_encode/unknown_regex_decodes",
              "a tokenizer.json with an unknown Split regex still loads and decodes; encode is refused");
        check_fails_one_line("hf_encode/reject_unknown_regex", {"--encode", unk, "6869"},
                             "tok_regex.json: pre_tokenizer: Split regex '(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,4}|");
    }
    check_fails_one_line("hf_encode/reject_normalizer", {"--encode", variant("qwen2", "{\"type\":\"NFC\"}", "{\"type\":\"NFKC\"}", "tok_nfkc.json"), "6869"},
                         "tok_nfkc.json: normalizer: 'NFKC' is not supported for encoding");
    check_fails_one_line("hf_encode/reject_pretokenizer", {"--encode", variant("qwen2", "\"type\":\"Split\"", "\"type\":\"Digits\"", "tok_digits.json"), "6869"},
                         "tok_digits.json: pre_tokenizer: 'Digits' is not supported for encoding");
    check_fails_one_line("hf_encode/reject_split_string", {"--encode", variant("llama3", "{\"Regex\":", "{\"String\":", "tok_string.json"), "6869"},
                         "tok_string.json: pre_tokenizer: Split pattern: only a {\"Regex\": ...} pattern is supported");
    const std::string l3 = DATA + "/llama3.json";
    check_fails_one_line("hf_encode/reject_invalid_utf8", {"--encode", l3, "61ff62"}, "llama3.json: encode: the text is not valid UTF-8 (byte offset 1, 0xFF)");
    check_fails_one_line("hf_encode/reject_overlong_utf8", {"--encode", l3, "6162c0af"}, "not valid UTF-8 (byte offset 2, 0xC0)");
    check_fails_one_line("hf_encode/reject_surrogate_utf8", {"--encode", l3, "eda080"}, "not valid UTF-8 (byte offset 0, 0xED)");
    check_fails_one_line("hf_encode/reject_truncated_utf8", {"--encode", l3, "61e4b8"}, "not valid UTF-8 (byte offset 1, 0xE4)");
    check_fails_one_line("hf_encode/reject_single_word_unicode", {"--encode", DATA + "/gpt2.json", "c3a93c776f72643e"},
                         "gpt2.json: encode: an added token with single_word true next to a non-ASCII character is not supported");
    check_fails_one_line("hf_encode/reject_post_processor",
                         {"--encode", variant("llama3", "\"type\":\"TemplateProcessing\"", "\"type\":\"RobertaProcessing\"", "tok_roberta.json"), "6869", "special"},
                         "tok_roberta.json: post_processor: 'RobertaProcessing' is not supported for add_special");
    {
        // the same file without add_special encodes
        HFTokenizer t;
        hf_tokenizer_load(&t, TMP + "/tok_roberta.json");
        check(hf_tokenizer_encode(&t, "hi", false) == hf_tokenizer_encode(&tok["llama3"], "hi", false), "hf_encode/post_processor_only_for_special",
              "another post-processor refuses add_special only");
    }
    check_fails_one_line("hf_encode/reject_dropout", {"--encode", variant("gpt2", "\"dropout\":null", "\"dropout\":0.1", "tok_dropout.json"), "6869"},
                         "tok_dropout.json: model.dropout");

    {
        // build_data --hf-tokenizer (dev/data/dataset_hf.h): each shard holds the end-of-text id, then
        // exactly the encoding of its split; the end-of-text token as tokenize_hf.py picks it
        HFTokenizer& t = tok["llama3"];
        const int eot = hf_end_of_text_id(t, "");
        const std::string dir = TMP + "/build_data", input = "data/tinyshakespeare.txt";
        build_text_dataset_hf(input, dir, t, eot, 0.1);
        std::string tr, va;
        read_train_val_split(input, 0.1, &tr, &va);
        auto shard = [](const std::string& path) {
            const std::string b = read_file_or_fail(path);
            std::vector<int> ids;
            int32_t h[SHARD_HEADER_INTS];
            if (b.size() < sizeof h) return ids;
            memcpy(h, b.data(), sizeof h);
            if (h[0] != SHARD_MAGIC_U16 || b.size() != sizeof h + 2 * (size_t)h[2]) return ids;
            for (int i = 0; i < h[2]; i++) { uint16_t v; memcpy(&v, b.data() + sizeof h + 2 * (size_t)i, 2); ids.push_back(v); }
            return ids;
        };
        std::vector<int> want_tr = hf_tokenizer_encode(&t, tr, false), want_va = hf_tokenizer_encode(&t, va, false);
        want_tr.insert(want_tr.begin(), eot);
        want_va.insert(want_va.begin(), eot);
        const bool same = shard(dir + "/train_000.bin") == want_tr && shard(dir + "/val_000.bin") == want_va;
        check(same && t.pieces[eot] == "<|end_of_text|>" && file_exists(dir + "/meta.txt") && !file_exists(dir + "/tokenizer.bin"),
              "hf_encode/build_data_shards",
              std::to_string(want_tr.size()) + " + " + std::to_string(want_va.size()) + " ids (uint16 shards) = end-of-text " + t.pieces[eot] +
                  " + the encoding of each split of " + input);
        check(tok["gpt2"].pieces[hf_end_of_text_id(tok["gpt2"], "")] == "<|endoftext|>",
              "hf_encode/end_of_text_gpt2", "<|endoftext|> when no tokenizer_config.json names one");
    }

    printf("%s\n", n_failed ? "some hf_tokenizer tests FAILED" : "all hf_tokenizer tests passed");
    return n_failed ? 1 : 0;
}
