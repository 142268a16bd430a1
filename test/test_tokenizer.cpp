/*
Tests of llmc/formats/tokenizer.h: round trips (shakespeare, arbitrary bytes), training
against a slow reference BPE, determinism, compression, save/load, and bad
tokenizer files, which must end the program with exit code 1 and one stderr
line naming the file (checked on a child process: this binary in a child mode).

  make test/test_tokenizer && ./test/test_tokenizer
  ./test/test_tokenizer --load FILE        (child mode: tokenizer_load, exit 0 if fine)
  ./test/test_tokenizer --train-vocab N    (child mode: tokenizer_train on a short text)
*/
#include <ctime>
#include <fcntl.h>
#include <map>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/core/rand.h"
#include "../llmc/formats/tokenizer.h"


static void write_bytes(const std::string& path, const std::string& bytes) {
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, path);
    fclose_or_fail(f, path);
}

// The textbook algorithm: recount every pair over the unique chunks for each merge,
// ties to the smallest (left, right). The real trainer must agree merge for merge.
static std::vector<std::pair<int, int>> naive_train(const std::string& text, int vocab_size) {
    std::map<std::string, long long> chunks;
    tok_split(text, [&](std::string_view c) { chunks[std::string(c)]++; });
    std::vector<std::vector<int>> words;
    std::vector<long long> counts;
    for (auto& p : chunks) {
        words.push_back(std::vector<int>(p.first.begin(), p.first.end()));
        for (int& x : words.back()) x &= 0xFF;
        counts.push_back(p.second);
    }
    std::vector<std::pair<int, int>> merges;
    for (int m = 0; m < vocab_size - 257; m++) {
        std::map<std::pair<int, int>, long long> pc;
        for (size_t w = 0; w < words.size(); w++)
            for (size_t i = 0; i + 1 < words[w].size(); i++) pc[{words[w][i], words[w][i + 1]}] += counts[w];
        std::pair<int, int> best{-1, -1};
        long long bc = 0;
        for (auto& p : pc) if (p.second > bc) { bc = p.second; best = p.first; }
        if (bc == 0) break;
        merges.push_back(best);
        for (auto& v : words) {
            std::vector<int> o;
            for (size_t i = 0; i < v.size(); i++) {
                if (i + 1 < v.size() && v[i] == best.first && v[i + 1] == best.second) { o.push_back(256 + m); i++; }
                else o.push_back(v[i]);
            }
            v = o;
        }
    }
    return merges;
}

static std::string int_bytes(const std::vector<int32_t>& v) { return std::string((const char*)v.data(), v.size() * 4); }

int main(int argc, char** argv) {
    child_err_path = "test/tmp/tokenizer/child.err";
    if (argc == 3 && std::string(argv[1]) == "--load") {
        Tokenizer t;
        tokenizer_load(&t, argv[2]);
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--train-vocab") {
        Tokenizer t;
        tokenizer_train(&t, "hello hello world", (int)parse_int_or_fail(argv[2], "--train-vocab"));
        return 0;
    }
    if (argc != 1) fail("usage: %s [--load FILE | --train-vocab N]", argv[0]);

    const std::string dir = "test/tmp/tokenizer";
    make_parent_dirs(dir + "/x");
    const std::string text = read_file_or_fail("data/tinyshakespeare.txt");

    // ---- pre-tokenization
    {
        std::vector<std::string> got;
        tok_split("Hello  world\n\n 12abc!!, x\t\n", [&](std::string_view c) { got.push_back(std::string(c)); });
        std::vector<std::string> want = {"Hello", " ", " world", "\n\n", " 12", "abc", "!!,", " x", "\t\n"};
        std::string g;
        for (auto& s : got) g += "[" + s + "]";
        check(got == want, "pretokenize_chunks", got == want ? "chunks as expected" : "got " + g);
        std::string s;
        tok_split(text, [&](std::string_view c) { s += c; });
        check(s == text, "pretokenize_concatenates", "chunks of shakespeare join back to the text");
    }

    // ---- training
    Tokenizer tok;
    double t0 = wall_seconds();
    tokenizer_train(&tok, text, 1024);
    const double train_s = wall_seconds() - t0;
    check(tok.vocab_size == 1024 && tok.eot_token == 1023 && tok.merges.size() == 1024 - 257, "train_sizes",
          "vocab 1024, eot 1023, 767 merges in " + std::to_string(train_s) + " s on " + std::to_string(text.size()) + " bytes");
    {
        Tokenizer t2;
        tokenizer_train(&t2, text, 1024);
        check(t2.merges == tok.merges, "train_deterministic", "two runs give identical merges");
    }
    {
        const std::string part = text.substr(0, 200000);
        Tokenizer t3;
        tokenizer_train(&t3, part, 400);
        std::vector<std::pair<int, int>> ref = naive_train(part, 400);
        size_t first_diff = 0;
        while (first_diff < ref.size() && first_diff < t3.merges.size() && ref[first_diff] == t3.merges[first_diff]) first_diff++;
        check(ref == t3.merges, "train_matches_naive_bpe",
              "200 KB, 143 merges equal to a full recount per merge (first difference at " + std::to_string(first_diff) + ")");
    }

    // ---- encode / decode
    t0 = wall_seconds();
    std::vector<int> ids = tokenizer_encode(&tok, text);
    const double enc_s = wall_seconds() - t0;
    {
        std::string back = tokenizer_decode(&tok, ids.data(), ids.size());
        check(back == text, "roundtrip_shakespeare", std::to_string(text.size()) + " bytes -> " + std::to_string(ids.size()) + " tokens in " + std::to_string(enc_s) + " s");
        bool in_range = true;
        for (int id : ids) if (id < 0 || id >= tok.eot_token) in_range = false;
        check(in_range, "encode_ids_in_range", "every id in [0, eot) (text never encodes to eot)");
        const double bpt = (double)text.size() / ids.size();
        char buf[64];
        snprintf(buf, sizeof buf, "%.3f bytes/token at vocab 1024 (need > 2)", bpt);
        check(bpt > 2.0, "compression_ratio", buf);
    }
    {
        // the cache must not change results: a fresh tokenizer (empty cache) encoding chunk by chunk
        Tokenizer fresh = tok;
        fresh.cache.clear();
        std::vector<int> slow;
        tok_split(text.substr(0, 100000), [&](std::string_view c) { tok_encode_chunk(&fresh, c, slow); });
        std::vector<int> fast(ids.begin(), ids.begin() + slow.size());
        check(slow == fast, "encode_cache_consistent", "cached encoding equals chunk-by-chunk encoding on 100 KB");
    }
    {
        Rng r;
        rng_seed(&r, 7);
        std::string rnd(300000, '\0');
        for (char& c : rnd) c = (char)(rng_u32(&r) & 0xFF);
        std::string all;
        for (int b = 0; b < 256; b++) all += (char)b;
        std::string runs = std::string(5000, 'a') + std::string(3000, '\xff') + std::string(3000, '\0') + std::string(2000, ' ') + std::string(700, '\n');
        const std::vector<std::pair<std::string, std::string>> cases = {
            {"empty", ""},
            {"all_256_bytes", all},
            {"random_bytes_300k", rnd},
            {"utf8", "h\xC3\xA9llo w\xC3\xB6rld \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x99\x82 caf\xC3\xA9\n"},
            {"nul_and_ff", std::string("a\0b\xff\xfe\0\0 \xff", 10)},
            {"long_runs", runs},
            {"whitespace_only", " \t\n\r\v\f  \n\n   "},
        };
        for (auto& c : cases) {
            std::vector<int> e = tokenizer_encode(&tok, c.second);
            std::string d = tokenizer_decode(&tok, e.data(), e.size());
            check(d == c.second, "roundtrip_" + c.first, std::to_string(c.second.size()) + " bytes -> " + std::to_string(e.size()) + " tokens");
        }
    }
    {
        const int bad[] = {-1, 1024, 1 << 30, (int)0x80000000};
        std::string d = tokenizer_decode(&tok, bad, 4);
        std::string want;
        for (int k = 0; k < 4; k++) want += "\xEF\xBF\xBD";
        int eot = tok.eot_token;
        std::string e = tokenizer_decode(&tok, &eot, 1);
        Tokenizer empty;
        std::string u = tokenizer_decode(&empty, bad, 4);
        check(d == want && e == TOK_EOT_TEXT && u == want, "decode_invalid_ids", "out-of-range ids give U+FFFD, eot gives " TOK_EOT_TEXT);
    }

    // ---- save / load
    const std::string path = dir + "/tokenizer.bin";
    tokenizer_save(&tok, path);
    {
        Tokenizer t2;
        tokenizer_load(&t2, path);
        std::vector<int> ids2 = tokenizer_encode(&t2, text);
        check(t2.vocab_size == tok.vocab_size && t2.eot_token == tok.eot_token && t2.merges == tok.merges && t2.vocab == tok.vocab && ids2 == ids,
              "save_load_roundtrip", "same merges, vocabulary and encoding after load");
        check(!file_exists(path + ".tmp"), "save_atomic", "no .tmp left behind");
    }

    // ---- bad tokenizer files: exit 1, one line naming the file
    {
        const std::string good = read_file_or_fail(path);
        auto variant = [&](const std::string& name, std::string bytes) {
            std::string p = dir + "/" + name + ".bin";
            write_bytes(p, bytes);
            return p;
        };
        std::string p;
        p = dir + "/does_not_exist.bin";
        check_fails_one_line("bad_tokenizer_missing", {"--load", p}, p);
        p = variant("not_a_tokenizer", "not a tokenizer at all");
        check_fails_one_line("bad_tokenizer_garbage", {"--load", p}, p);
        std::string b = good;
        b[0] ^= 0x55;
        p = variant("wrong_magic", b);
        check_fails_one_line("bad_tokenizer_magic", {"--load", p}, p);
        b = good;
        b.replace(4, 4, int_bytes({2}));
        p = variant("wrong_version", b);
        check_fails_one_line("bad_tokenizer_version", {"--load", p}, p);
        p = variant("truncated_header", good.substr(0, 12));
        check_fails_one_line("bad_tokenizer_truncated_header", {"--load", p}, p);
        p = variant("truncated_merges", good.substr(0, 20 + 8 * 100 + 4));
        check_fails_one_line("bad_tokenizer_truncated_merges", {"--load", p}, p);
        p = variant("extra_bytes", good + "xyz");
        check_fails_one_line("bad_tokenizer_extra_bytes", {"--load", p}, p);
        p = variant("empty", "");
        check_fails_one_line("bad_tokenizer_empty", {"--load", p}, p);
        b = good;
        b.replace(8, 4, int_bytes({100}));  // vocab_size disagrees with n_merges
        p = variant("wrong_vocab", b);
        check_fails_one_line("bad_tokenizer_vocab_size", {"--load", p}, p);
        b = good;
        b.replace(20 + 8 * 5, 4, int_bytes({256 + 5}));  // merge 5 uses the id it creates
        p = variant("forward_merge", b);
        check_fails_one_line("bad_tokenizer_merge_id", {"--load", p}, p);
        b = good;
        b.replace(20 + 8 * 7, 4, int_bytes({-3}));
        p = variant("negative_merge", b);
        check_fails_one_line("bad_tokenizer_negative_id", {"--load", p}, p);
        b = good;
        b.replace(20 + 8 * 9, 8, good.substr(20 + 8 * 2, 8));  // merge 9 repeats merge 2
        p = variant("duplicate_merge", b);
        check_fails_one_line("bad_tokenizer_duplicate_merge", {"--load", p}, p);
        Child c = run_child({"--load", path});
        check(c.exited && c.code == 0 && c.err.empty(), "good_tokenizer_loads_in_child", "the child mode itself works");
        check_fails_one_line("train_vocab_too_small", {"--train-vocab", "256"}, "vocab_size");
        check_fails_one_line("train_vocab_too_large_for_text", {"--train-vocab", "5000"}, "vocab_size");
    }

    printf("%s\n", n_failed ? "some tokenizer tests FAILED" : "all tokenizer tests passed");
    return n_failed ? 1 : 0;
}
