/*
Tests of llmc/data/dataloader.h (and write_token_shard of llmc/data/dataset.h) on small
shards written into test/tmp/dataloader/. Token values encode their position
(shard * 1000 + index), so every batch can be checked against the exact tokens
it must hold. Bad shards must end the program with exit code 1 and one stderr
line naming the file (checked on a child process: this binary in a child mode).

  make test/test_dataloader && ./test/test_dataloader
  ./test/test_dataloader --init PATTERN VOCAB B T   (child mode: dataloader_init + one batch)
*/
#include <ctime>
#include <fcntl.h>
#include <set>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/data/dataset.h"
#include "../llmc/data/dataloader.h"

static const std::string DIR = "test/tmp/dataloader";

// Shard s holds tokens s*1000 + i, so a token tells where it came from.
static std::vector<int> shard_tokens(int s, int n) {
    std::vector<int> t(n);
    for (int i = 0; i < n; i++) t[i] = s * 1000 + i;
    return t;
}

// One sample as seen by the loader: (shard, k) from its first token, plus whether
// inputs and targets are exactly tokens [k*T, k*T+T] of that shard.
struct Seen { int shard, k; bool exact; };

static std::vector<Seen> batch_samples(const DataLoader* dl) {
    std::vector<Seen> v;
    const int T = dl->T;
    for (int b = 0; b < dl->B; b++) {
        const int32_t* x = dl->inputs + b * T;
        const int32_t* y = dl->targets + b * T;
        Seen s;
        s.shard = x[0] / 1000;
        const int i0 = x[0] % 1000;
        s.k = i0 / T;
        s.exact = i0 % T == 0;
        for (int t = 0; t < T; t++) {
            if (x[t] != s.shard * 1000 + i0 + t) s.exact = false;
            if (y[t] != s.shard * 1000 + i0 + t + 1) s.exact = false;
        }
        v.push_back(s);
    }
    return v;
}

// The sequence of (shard, k) over n batches, for comparing streams.
static std::vector<std::pair<int, int>> stream(DataLoader* dl, long long n, bool* exact) {
    std::vector<std::pair<int, int>> out;
    for (long long i = 0; i < n; i++) {
        dataloader_next_batch(dl);
        for (const Seen& s : batch_samples(dl)) {
            out.push_back({s.shard, s.k});
            if (exact && !s.exact) *exact = false;
        }
    }
    return out;
}

static std::string str(long long x) { return std::to_string(x); }

static void patch_int32(const std::string& path, long offset, int32_t v) {
    std::string b = read_file_or_fail(path);
    memcpy(&b[offset], &v, 4);
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(b.data(), b.size(), f, path);
    fclose_or_fail(f, path);
}

static void write_raw(const std::string& path, const std::string& bytes) {
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, path);
    fclose_or_fail(f, path);
}

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 6 && std::string(argv[1]) == "--init") {
        DataLoader dl;
        dataloader_init(&dl, argv[2], (int)parse_int_or_fail(argv[4], "B"), (int)parse_int_or_fail(argv[5], "T"), 0, 1, 1, 1,
                        (int)parse_int_or_fail(argv[3], "vocab"));
        dataloader_next_batch(&dl);
        dataloader_free(&dl);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--init PATTERN VOCAB B T]", argv[0]);
    make_parent_dirs(DIR + "/x");
    const int B = 2, T = 8;
    const int U32_VOCAB = 70000;  // > 65536: uint32 shards

    // ---- basic stream: two uint32 shards, 10 and 7 samples; B=2 -> 5 + 3 batches (shard 1 drops 1 sample)
    write_token_shard(DIR + "/basic_000.bin", shard_tokens(0, 10 * T + 1), U32_VOCAB);
    write_token_shard(DIR + "/basic_001.bin", shard_tokens(1, 7 * T + 1 + 3), U32_VOCAB);
    {
        DataLoader dl;
        dataloader_init(&dl, DIR + "/basic_*.bin", B, T, 0, 1, 0, 0, U32_VOCAB);
        const long long nb = dataloader_num_batches(&dl);
        check(nb == 8, "num_batches", str(nb) + " batches per epoch (expected 8: 5 + 3)");
        bool exact = true;
        std::vector<std::pair<int, int>> s = stream(&dl, nb, &exact);
        std::vector<std::pair<int, int>> want;
        for (int k = 0; k < 10; k++) want.push_back({0, k});
        for (int k = 0; k < 6; k++) want.push_back({1, k});
        check(exact, "batch_contents", "inputs = tokens[k*T, k*T+T), targets = inputs shifted by one, for every sample");
        check(s == want, "sequential_order", "shard 0 samples 0..9 then shard 1 samples 0..5, tail sample dropped");
        DataLoaderPosition p = dataloader_get_position(&dl);
        std::vector<std::pair<int, int>> again = stream(&dl, nb, nullptr);
        check(p.epoch == 1 && p.shard == 0 && p.sample == 0 && again == want, "epoch_wrap",
              "after one epoch: epoch " + str(p.epoch) + ", the same stream again");
        dataloader_reset(&dl);
        std::vector<std::pair<int, int>> first = stream(&dl, 2, nullptr);
        check(dataloader_get_position(&dl).epoch == 0 && first == std::vector<std::pair<int, int>>(want.begin(), want.begin() + 4),
              "reset", "back to the first batch of epoch 0");
        dataloader_free(&dl);
    }

    // ---- uint16 and uint32 shards with the same tokens give the same batches
    {
        write_token_shard(DIR + "/u16_000.bin", shard_tokens(3, 9 * T + 1), 65536);
        write_token_shard(DIR + "/u32_000.bin", shard_tokens(3, 9 * T + 1), U32_VOCAB);
        const std::string a = read_file_or_fail(DIR + "/u16_000.bin"), b = read_file_or_fail(DIR + "/u32_000.bin");
        int32_t ha[3], hb[3];
        memcpy(ha, a.data(), 12);
        memcpy(hb, b.data(), 12);
        check(ha[0] == 20240520 && ha[1] == 1 && ha[2] == 9 * T + 1 && a.size() == 1024 + 2 * (9 * T + 1) &&
              hb[0] == 20240801 && hb[1] == 7 && hb[2] == 9 * T + 1 && b.size() == 1024 + 4 * (9 * T + 1),
              "shard_headers", "vocab <= 65536: magic 20240520 v1 uint16; else 20240801 v7 uint32");
        DataLoader d16, d32;
        dataloader_init(&d16, DIR + "/u16_000.bin", 3, T, 0, 1, 1, 5, 65536);
        dataloader_init(&d32, DIR + "/u32_000.bin", 3, T, 0, 1, 1, 5, U32_VOCAB);
        bool e16 = true, e32 = true;
        std::vector<std::pair<int, int>> s16 = stream(&d16, 7, &e16), s32 = stream(&d32, 7, &e32);
        check(e16 && e32 && s16 == s32, "uint16_equals_uint32", "same samples, exact contents, over 7 shuffled batches");
        dataloader_free(&d16);
        dataloader_free(&d32);
    }

    // ---- ranks: disjoint and covering, with and without shuffle. Shards of 12
    // and 24 samples divide evenly into B*P for P = 2 and 3, so every sample is used.
    write_token_shard(DIR + "/ranks_000.bin", shard_tokens(0, 12 * T + 1), U32_VOCAB);
    write_token_shard(DIR + "/ranks_001.bin", shard_tokens(1, 24 * T + 1), U32_VOCAB);
    write_token_shard(DIR + "/ranks_002.bin", shard_tokens(2, 12 * T + 5), U32_VOCAB);
    for (int P : {2, 3}) {
        for (int shuffle : {0, 1}) {
            std::set<std::pair<int, int>> all;
            size_t total = 0;
            bool exact = true, same_nb = true, round_robin = true;
            long long nb0 = -1;
            std::vector<std::vector<std::pair<int, int>>> per_rank;
            for (int r = 0; r < P; r++) {
                DataLoader dl;
                dataloader_init(&dl, DIR + "/ranks_*.bin", B, T, r, P, shuffle, 42, U32_VOCAB);
                const long long nb = dataloader_num_batches(&dl);
                if (nb0 < 0) nb0 = nb;
                if (nb != nb0) same_nb = false;
                std::vector<std::pair<int, int>> s = stream(&dl, nb, &exact);
                for (auto& x : s) { all.insert(x); if (!shuffle && x.second % P != r) round_robin = false; }
                total += s.size();
                per_rank.push_back(s);
                dataloader_free(&dl);
            }
            const std::string name = "ranks_P" + str(P) + (shuffle ? "_shuffled" : "");
            check(same_nb && nb0 == 48 / (B * P), name + "_num_batches", str(nb0) + " batches per rank per epoch");
            check(exact, name + "_contents", "every sample exact");
            check(total == all.size(), name + "_disjoint", str(total) + " samples taken, " + str(all.size()) + " distinct");
            check(all.size() == 48 && all.begin()->first == 0 && all.rbegin()->first == 2, name + "_coverage",
                  "all 48 samples of the 3 shards covered in one epoch");
            if (!shuffle) check(round_robin, name + "_round_robin", "sample k of a shard goes to rank k % P");
        }
    }
    {
        // a data-parallel batch is the same set of samples as one process with B*P rows,
        // so a position saved with P processes resumes on a different P
        DataLoader one;
        dataloader_init(&one, DIR + "/ranks_*.bin", 2 * B, T, 0, 1, 1, 9, U32_VOCAB);
        DataLoader r0, r1;
        dataloader_init(&r0, DIR + "/ranks_*.bin", B, T, 0, 2, 1, 9, U32_VOCAB);
        dataloader_init(&r1, DIR + "/ranks_*.bin", B, T, 1, 2, 1, 9, U32_VOCAB);
        bool same = true;
        for (int i = 0; i < 15; i++) {
            if (i == 7) {
                // move `one` to a fresh loader resumed from the 2-process position
                DataLoaderPosition p = dataloader_get_position(&r0);
                dataloader_free(&one);
                dataloader_init(&one, DIR + "/ranks_*.bin", 2 * B, T, 0, 1, 1, 12345, U32_VOCAB);
                dataloader_set_position(&one, p);
            }
            std::vector<std::pair<int, int>> a = stream(&one, 1, nullptr), b = stream(&r0, 1, nullptr), c = stream(&r1, 1, nullptr);
            std::multiset<std::pair<int, int>> sa(a.begin(), a.end()), sbc(b.begin(), b.end());
            sbc.insert(c.begin(), c.end());
            if (sa != sbc) same = false;
        }
        check(same, "resume_on_other_process_count", "15 batches (crossing an epoch) of 1 x 4 rows = 2 ranks x 2 rows, resumed at batch 7 on 1 process");
        dataloader_free(&one);
        dataloader_free(&r0);
        dataloader_free(&r1);
    }

    // ---- shuffle: deterministic per seed, changes the order, differs per epoch, covers each epoch
    {
        auto run = [&](int shuffle, uint64_t seed, long long batches) {
            DataLoader dl;
            dataloader_init(&dl, DIR + "/ranks_*.bin", B, T, 0, 1, shuffle, seed, U32_VOCAB);
            std::vector<std::pair<int, int>> s = stream(&dl, batches, nullptr);
            dataloader_free(&dl);
            return s;
        };
        const long long nb = 24;  // 48 samples / B
        std::vector<std::pair<int, int>> a = run(1, 1337, 2 * nb), b = run(1, 1337, 2 * nb), c = run(1, 1338, 2 * nb), plain = run(0, 1337, nb);
        std::vector<std::pair<int, int>> e0(a.begin(), a.begin() + 48), e1(a.begin() + 48, a.end());
        check(a == b, "shuffle_deterministic", "same seed, same stream over 2 epochs");
        check(a != c, "shuffle_seed_matters", "another seed gives another order");
        check(e0 != plain, "shuffle_changes_order", "shuffled epoch differs from file order");
        check(e0 != e1, "shuffle_per_epoch", "epoch 1 order differs from epoch 0");
        std::set<std::pair<int, int>> s0(e0.begin(), e0.end()), s1(e1.begin(), e1.end());
        check(s0.size() == 48 && s0 == s1, "shuffle_epoch_coverage", "each shuffled epoch visits all 48 samples once");
    }

    // ---- position: get, then set on a fresh loader, resumes the exact stream (across an epoch)
    {
        DataLoader dl;
        dataloader_init(&dl, DIR + "/ranks_*.bin", B, T, 1, 3, 1, 77, U32_VOCAB);
        stream(&dl, 5, nullptr);
        DataLoaderPosition p = dataloader_get_position(&dl);
        std::vector<std::pair<int, int>> rest = stream(&dl, 12, nullptr);  // 8 batches per epoch at P=3
        DataLoader d2;
        dataloader_init(&d2, DIR + "/ranks_*.bin", B, T, 1, 3, 1, 77, U32_VOCAB);
        dataloader_set_position(&d2, p);
        std::vector<std::pair<int, int>> rest2 = stream(&d2, 12, nullptr);
        DataLoaderPosition q = dataloader_get_position(&d2);
        check(rest == rest2 && q.epoch == 2, "position_resume",
              "position (epoch " + str(p.epoch) + ", shard " + str(p.shard) + ", sample " + str(p.sample) + ") resumes the next 12 batches exactly");
        dataloader_free(&dl);
        dataloader_free(&d2);
    }

    // ---- bad inputs: exit 1, one line naming the file
    {
        const std::string good = DIR + "/bad_good.bin";
        write_token_shard(good, shard_tokens(0, 10 * T + 1), 65536);
        const std::string g = read_file_or_fail(good);
        Child c = run_child({"--init", good, "65536", str(B), str(T)});
        check(c.exited && c.code == 0 && c.err.empty(), "good_shard_loads_in_child", "the child mode itself works");
        auto variant = [&](const std::string& name, const std::string& bytes) {
            std::string p = DIR + "/bad_" + name + ".bin";
            write_raw(p, bytes);
            return p;
        };
        std::string p;
        check_fails_one_line("bad_no_glob_match", {"--init", DIR + "/nothing_*.bin", "65536", str(B), str(T)}, DIR + "/nothing_*.bin");
        check_fails_one_line("bad_missing_file", {"--init", DIR + "/missing.bin", "65536", str(B), str(T)}, DIR + "/missing.bin");
        p = variant("magic", g);
        patch_int32(p, 0, 12345);
        check_fails_one_line("bad_magic", {"--init", p, "65536", str(B), str(T)}, p);
        p = variant("version", g);
        patch_int32(p, 4, 7);
        check_fails_one_line("bad_version", {"--init", p, "65536", str(B), str(T)}, p);
        p = variant("truncated", g.substr(0, g.size() - 3));
        check_fails_one_line("bad_truncated_body", {"--init", p, "65536", str(B), str(T)}, p);
        p = variant("extra", g + std::string(4, '\0'));
        check_fails_one_line("bad_extra_bytes", {"--init", p, "65536", str(B), str(T)}, p);
        p = variant("header_only", g.substr(0, 100));
        check_fails_one_line("bad_short_header", {"--init", p, "65536", str(B), str(T)}, p);
        p = variant("empty", "");
        check_fails_one_line("bad_empty_file", {"--init", p, "65536", str(B), str(T)}, p);
        p = variant("count", g);
        patch_int32(p, 8, -5);
        check_fails_one_line("bad_token_count", {"--init", p, "65536", str(B), str(T)}, p);
        check_fails_one_line("bad_token_id", {"--init", good, "50", str(B), str(T)}, good);
        check_fails_one_line("bad_too_few_samples", {"--init", good, "65536", "11", str(T)}, good);
        // one bad shard among good ones is named
        write_token_shard(DIR + "/mix_000.bin", shard_tokens(0, 10 * T + 1), 65536);
        write_raw(DIR + "/mix_001.bin", g.substr(0, g.size() - 2));
        check_fails_one_line("bad_shard_in_glob", {"--init", DIR + "/mix_*.bin", "65536", str(B), str(T)}, DIR + "/mix_001.bin");
        check_fails_one_line("bad_batch_size", {"--init", good, "65536", "0", str(T)}, "B");
    }

    printf("%s\n", n_failed ? "some dataloader tests FAILED" : "all dataloader tests passed");
    return n_failed ? 1 : 0;
}
