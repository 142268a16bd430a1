/*
Tests of llmc/data/latent_data.h (latent shard writer and loader) on small shards
written into test/tmp/latent_data/. Every value written is a function of the
sample's global index and its position, so every batch can be checked against
exactly what it must hold. Bad shards must end the program with exit code 1 and
one stderr line naming the file (checked on a child process: this binary in a
child mode).

  make test/test_latent_data && ./test/test_latent_data
  ./test/test_latent_data --init PATTERN C D MAX_TEXT_LEN B   (child mode: latent_loader_init + one batch)
  ./test/test_latent_data --dump PATTERN C D MAX_TEXT_LEN     (prints every sample's shapes and sums, for test_prepare_mugv.sh)
*/
#include <cmath>
#include <ctime>
#include <set>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/core/rand.h"
#include "../llmc/data/latent_data.h"

static const std::string DIR = "test/tmp/latent_data";
static const int C = 3, D = 5;
static std::string str(long long x) { return std::to_string(x); }

// What sample g (global index) holds: its shapes and values.
static LatentSampleDesc desc_of(int64_t g) {
    LatentSampleDesc d;
    d.T = 1 + (int)(g % 3); d.H = 2 + (int)(g % 2); d.W = 3 + (int)(g % 4);
    d.text_len = 1 + (int)(g % 7);
    d.fps = 8.0f + (float)(g % 5);
    d.clean_frames = (int)(g % d.T);
    return d;
}
static float lat_value(int64_t g, int64_t i) { return (float)std::sin(0.37 * (double)i + 1.3 * (double)g) * 3.0f + 0.25f * (float)(g % 4); }
static float text_value(int64_t g, int64_t i) { return (float)std::cos(0.11 * (double)i - 0.7 * (double)g); }
static std::string caption_of(int64_t g) { return g % 5 == 4 ? std::string() : "sample " + str(g) + " \xc3\xa9t\xc3\xa9"; }  // some empty, some UTF-8

// Writes samples [first, first+n) of the global numbering into one shard.
static void write_shard(const std::string& path, int64_t first, int64_t n, int dtype, const float* mean = nullptr, const float* std_ = nullptr,
                        int source = LATENT_SOURCE_GENERATED) {
    LatentWriter w;
    latent_writer_open(&w, path, C, D, dtype, dtype, n, mean, std_);
    for (int64_t g = first; g < first + n; g++) {
        LatentSampleDesc d = desc_of(g);
        d.source = source;
        std::vector<float> lat((size_t)C * d.T * d.H * d.W), txt((size_t)d.text_len * D);
        for (size_t i = 0; i < lat.size(); i++) lat[i] = lat_value(g, (int64_t)i);
        for (size_t i = 0; i < txt.size(); i++) txt[i] = text_value(g, (int64_t)i);
        latent_writer_add(&w, d, lat.data(), txt.data(), caption_of(g));
    }
    latent_writer_close(&w);
}

// The multi_*.lat shards below: samples 12..35 are stored as bf16, the others as f32.
#define DTYPE_MULTI -1
static int dtype_of(int dtype, int64_t g) { return dtype != DTYPE_MULTI ? dtype : (g >= 12 && g < 36 ? LATENT_DTYPE_BF16 : LATENT_DTYPE_F32); }
static float as_stored(float x, int dtype) { return dtype == LATENT_DTYPE_BF16 ? latent_bf16_to_f32(latent_f32_to_bf16(x)) : x; }

// Checks that every sample of a batch holds exactly what sample batch.index[b] must,
// with sample ids offset by `first` (the global index of the shard's sample 0 in the writer's numbering).
static bool batch_exact(const LatentBatch& b, int dtype_, int64_t first = 0, const float* mean = nullptr, const float* std_ = nullptr) {
    if ((int)b.latent_offset.size() != b.B + 1 || (int)b.text_offset.size() != b.B + 1 || b.latent_offset[0] != 0 || b.text_offset[0] != 0) return false;
    if ((int64_t)b.latents.size() != b.latent_offset[b.B] || (int64_t)b.text.size() != (int64_t)b.text_offset[b.B] * D) return false;
    for (int i = 0; i < b.B; i++) {
        const int64_t g = b.index[i] + first;
        const int dtype = dtype_of(dtype_, g);
        const LatentSampleDesc d = desc_of(g);
        if (b.T[i] != d.T || b.H[i] != d.H || b.W[i] != d.W || b.text_len[i] != d.text_len || b.fps[i] != d.fps || b.clean_frames[i] != d.clean_frames)
            return false;
        if (b.captions[i] != caption_of(g)) return false;
        const int64_t nl = (int64_t)C * d.T * d.H * d.W, plane = (int64_t)d.T * d.H * d.W;
        if (b.latent_offset[i + 1] - b.latent_offset[i] != nl || b.text_offset[i + 1] - b.text_offset[i] != d.text_len) return false;
        for (int64_t j = 0; j < nl; j++) {
            float want = as_stored(lat_value(g, j), dtype);
            if (mean) want = (want - mean[j / plane]) * (1.0f / std_[j / plane]);
            if (b.latents[b.latent_offset[i] + j] != want) return false;
        }
        for (int64_t j = 0; j < (int64_t)d.text_len * D; j++)
            if (b.text[(size_t)b.text_offset[i] * D + j] != as_stored(text_value(g, j), dtype)) return false;
    }
    return true;
}

static std::vector<int64_t> stream(LatentLoader* ll, long long n_batches, bool* exact, int dtype = DTYPE_MULTI) {
    std::vector<int64_t> out;
    LatentBatch b;
    for (long long i = 0; i < n_batches; i++) {
        latent_loader_next(ll, &b);
        if (exact && !batch_exact(b, dtype)) *exact = false;
        out.insert(out.end(), b.index.begin(), b.index.end());
    }
    return out;
}

static void patch(const std::string& path, long offset, const void* v, size_t n) {
    std::string b = read_file_or_fail(path);
    if (offset < 0 || (size_t)offset + n > b.size()) fail("patch %s: offset %ld outside the file", path.c_str(), offset);
    memcpy(&b[offset], v, n);
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(b.data(), b.size(), f, path);
    fclose_or_fail(f, path);
}
static void patch32(const std::string& p, long off, int32_t v) { patch(p, off, &v, 4); }
static void patch64(const std::string& p, long off, int64_t v) { patch(p, off, &v, 8); }
static void patchf(const std::string& p, long off, float v) { patch(p, off, &v, 4); }
static void write_raw(const std::string& path, const std::string& bytes) {
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, path);
    fclose_or_fail(f, path);
}
static long entry(int64_t k, bool has_norm = false) { return LATENT_HEADER_BYTES + (has_norm ? 8 * C : 0) + k * LATENT_INDEX_ENTRY_BYTES; }

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 7 && std::string(argv[1]) == "--init") {
        LatentLoader ll;
        latent_loader_init(&ll, argv[2], (int)parse_int_or_fail(argv[6], "B"), 0, 1, 1, 1, (int)parse_int_or_fail(argv[3], "C"),
                           (int)parse_int_or_fail(argv[4], "D"), (int)parse_int_or_fail(argv[5], "max text len"));
        LatentBatch b;
        latent_loader_next(&ll, &b);
        latent_loader_free(&ll);
        return 0;
    }
    if (argc == 6 && std::string(argv[1]) == "--dump") {
        LatentLoader ll;
        latent_loader_init(&ll, argv[2], 1, 0, 1, 0, 0, (int)parse_int_or_fail(argv[3], "C"), (int)parse_int_or_fail(argv[4], "D"),
                           (int)parse_int_or_fail(argv[5], "max text len"));
        printf("samples %lld channels %d caption_channels %d has_norm %d\n", (long long)latent_loader_num_samples(&ll), ll.C, ll.D, ll.has_norm);
        LatentBatch b;
        for (int64_t i = 0; i < latent_loader_num_samples(&ll); i++) {
            latent_loader_read(&ll, &i, 1, &b);
            double ls = 0, lq = 0, ts = 0, tq = 0;
            for (float x : b.latents) { ls += x; lq += (double)x * x; }
            for (float x : b.text) { ts += x; tq += (double)x * x; }
            printf("sample %lld T %d H %d W %d L %d fps %g source %d clean %d lat_sum %.9e lat_sumsq %.9e text_sum %.9e text_sumsq %.9e caption %s\n",
                   (long long)i, b.T[0], b.H[0], b.W[0], b.text_len[0], b.fps[0], b.source[0], b.clean_frames[0], ls, lq, ts, tq, b.captions[0].c_str());
        }
        latent_loader_free(&ll);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--init PATTERN C D MAX_TEXT_LEN B | --dump PATTERN C D MAX_TEXT_LEN]", argv[0]);
    make_parent_dirs(DIR + "/x");
    const int MAXL = 7;

    // ---- round trip, f32 and bf16, every sample read one by one
    for (int dtype : {LATENT_DTYPE_F32, LATENT_DTYPE_BF16}) {
        const std::string name = latent_dtype_name(dtype), path = DIR + "/rt_" + name + ".lat";
        write_shard(path, 0, 11, dtype);
        check(!file_exists(path + ".tmp"), "atomic_write_" + name, "no .tmp left after close");
        LatentLoader ll;
        latent_loader_init(&ll, path, 1, 0, 1, 0, 0, C, D, MAXL);
        bool ok = latent_loader_num_samples(&ll) == 11;
        LatentBatch b;
        for (int64_t i = 0; i < 11; i++) {
            latent_loader_read(&ll, &i, 1, &b);
            if (!batch_exact(b, dtype) || b.source[0] != LATENT_SOURCE_GENERATED || b.index[0] != i) ok = false;
        }
        check(ok, "round_trip_" + name, "11 samples of varied T/H/W/text length/fps/clean frames/captions read back exactly" +
                                           std::string(dtype ? " (as bf16-rounded)" : ""));
        latent_loader_free(&ll);
    }
    {
        // bf16 rounding: nearest even, exact for representable values, relative error <= 2^-8
        bool ok = latent_bf16_to_f32(latent_f32_to_bf16(1.0f)) == 1.0f && latent_bf16_to_f32(latent_f32_to_bf16(-2.5f)) == -2.5f &&
                  latent_f32_to_bf16(1.0f + 1.0f / 256) == latent_f32_to_bf16(1.0f) &&          // tie -> even
                  latent_f32_to_bf16(1.0f + 3.0f / 256) == latent_f32_to_bf16(1.0f + 4.0f / 256) && // tie -> even (up)
                  std::isnan(latent_bf16_to_f32(latent_f32_to_bf16(NAN)));
        Rng r;
        rng_seed(&r, 3);
        for (int i = 0; i < 10000; i++) {
            const float x = rng_normal(&r) * 100.0f, y = latent_bf16_to_f32(latent_f32_to_bf16(x));
            if (std::fabs(y - x) > std::fabs(x) * (1.0f / 256) + 1e-30f) ok = false;
        }
        check(ok, "bf16_rounding", "round to nearest even, rel. error <= 2^-8, NaN kept");
        const std::string a = read_file_or_fail(DIR + "/rt_f32.lat"), b = read_file_or_fail(DIR + "/rt_bf16.lat");
        int32_t ha[6], hb[6];
        memcpy(ha, a.data(), 24);
        memcpy(hb, b.data(), 24);
        int64_t na, nb;
        memcpy(&na, a.data() + 32, 8);
        memcpy(&nb, b.data() + 32, 8);
        check(ha[0] == LATENT_MAGIC && ha[1] == 1 && ha[2] == C && ha[3] == D && ha[4] == 0 && ha[5] == 0 && na == 11 && hb[4] == 1 && hb[5] == 1 &&
              nb == 11 && b.size() < a.size(), "shard_header", "magic, version 1, C, D, dtypes 0/1, sample count at the documented offsets");
    }

    // ---- real latents: raw values + per-channel mean/std in the header, normalized by the loader
    {
        const float mean[C] = {0.5f, -1.0f, 2.0f}, sd[C] = {2.0f, 0.5f, 4.0f};
        write_shard(DIR + "/real_000.lat", 0, 6, LATENT_DTYPE_F32, mean, sd, LATENT_SOURCE_REAL);
        LatentLoader ll;
        latent_loader_init(&ll, DIR + "/real_000.lat", 2, 0, 1, 0, 0, C, D, MAXL);
        LatentBatch b;
        bool ok = ll.has_norm == 1 && ll.norm_mean[1] == -1.0f && ll.norm_std[2] == 4.0f;
        for (int i = 0; i < 3; i++) {
            latent_loader_next(&ll, &b);
            if (!batch_exact(b, LATENT_DTYPE_F32, 0, mean, sd) || b.source[0] != LATENT_SOURCE_REAL) ok = false;
        }
        check(ok, "real_latents_normalized", "source real: batch holds (z - mean_c) / std_c; statistics exposed as norm_mean/norm_std");
        latent_loader_free(&ll);
        // generated samples in a shard with statistics are left alone
        write_shard(DIR + "/gen_with_norm.lat", 0, 4, LATENT_DTYPE_F32, mean, sd, LATENT_SOURCE_GENERATED);
        latent_loader_init(&ll, DIR + "/gen_with_norm.lat", 4, 0, 1, 0, 0, C, D, MAXL);
        latent_loader_next(&ll, &b);
        check(batch_exact(b, LATENT_DTYPE_F32), "generated_latents_untouched", "source generated: stored values as they are");
        latent_loader_free(&ll);
    }

    // ---- batches over several shards: contents, offsets, order, epochs
    // shards of 12, 24 and 12 samples, numbered globally 0..47
    write_shard(DIR + "/multi_000.lat", 0, 12, LATENT_DTYPE_F32);
    write_shard(DIR + "/multi_001.lat", 12, 24, LATENT_DTYPE_BF16);
    write_shard(DIR + "/multi_002.lat", 36, 12, LATENT_DTYPE_F32);
    const std::string multi = DIR + "/multi_*.lat";
    {
        LatentLoader ll;
        latent_loader_init(&ll, multi, 5, 0, 1, 0, 0, C, D, MAXL);
        const long long nb = latent_loader_num_batches(&ll);
        check(nb == 9 && latent_loader_num_samples(&ll) == 48, "num_batches", str(nb) + " batches of 5 from 48 samples (tail of 3 dropped)");
        // contents: bf16 shard values are compared as bf16
        bool exact = true;
        LatentBatch b;
        std::vector<int64_t> s;
        for (long long i = 0; i < nb; i++) {
            latent_loader_next(&ll, &b);
            for (int j = 0; j < b.B; j++) {
                LatentBatch one;
                latent_loader_read(&ll, &b.index[j], 1, &one);
                if (!batch_exact(one, DTYPE_MULTI)) exact = false;
                // the batch's packed copy equals the single read
                if (memcmp(&b.latents[b.latent_offset[j]], one.latents.data(), one.latents.size() * 4) != 0 ||
                    memcmp(&b.text[(size_t)b.text_offset[j] * D], one.text.data(), one.text.size() * 4) != 0)
                    exact = false;
            }
            s.insert(s.end(), b.index.begin(), b.index.end());
        }
        std::vector<int64_t> want;
        for (int g = 0; g < 45; g++) want.push_back(g);
        check(exact, "batch_contents", "every sample of 9 batches exact (f32 and bf16 shards), packed copies equal single reads, offsets cu_seqlens-style");
        check(s == want, "sequential_order", "shuffle off: samples 0..44 in glob order across shards");
        LatentLoaderPosition p = latent_loader_get_position(&ll);
        std::vector<int64_t> again = stream(&ll, nb, nullptr);
        check(p.epoch == 1 && p.sample == 0 && again == want, "epoch_wrap", "after one epoch: epoch " + str(p.epoch) + ", the same stream again");
        latent_loader_reset(&ll);
        check(stream(&ll, 1, nullptr) == std::vector<int64_t>(want.begin(), want.begin() + 5), "reset", "back to the first batch of epoch 0");
        latent_loader_free(&ll);
    }

    // ---- ranks: disjoint and covering, with and without shuffle
    for (int P : {2, 3, 5}) {
        for (int shuffle : {0, 1}) {
            const int B = 2;
            std::set<int64_t> all;
            size_t total = 0;
            bool same_nb = true, round_robin = true, exact = true;
            long long nb0 = -1;
            for (int r = 0; r < P; r++) {
                LatentLoader ll;
                latent_loader_init(&ll, multi, B, r, P, shuffle, 42, C, D, MAXL);
                const long long nb = latent_loader_num_batches(&ll);
                if (nb0 < 0) nb0 = nb;
                if (nb != nb0) same_nb = false;
                std::vector<int64_t> s = stream(&ll, nb, &exact);
                for (int64_t g : s) { all.insert(g); if (!shuffle && g % P != r) round_robin = false; }
                total += s.size();
                latent_loader_free(&ll);
            }
            const std::string name = "ranks_P" + str(P) + (shuffle ? "_shuffled" : "");
            const size_t used = (48 / (B * P)) * B * P;
            check(same_nb && nb0 == 48 / (B * P), name + "_num_batches", str(nb0) + " batches per rank per epoch");
            check(exact, name + "_contents", "every sample exact");
            check(total == all.size(), name + "_disjoint", str(total) + " samples taken, " + str(all.size()) + " distinct");
            check(all.size() == used, name + "_coverage", str(all.size()) + " of 48 samples covered in one epoch (" + str(48 - used) + " tail dropped)");
            if (!shuffle) check(round_robin, name + "_round_robin", "sample j goes to rank j % P");
        }
    }
    {
        // a data-parallel batch is the same set of samples as one process with B*P rows,
        // so a position saved with P processes resumes on a different P
        LatentLoader one, r0, r1;
        latent_loader_init(&one, multi, 4, 0, 1, 1, 9, C, D, MAXL);
        latent_loader_init(&r0, multi, 2, 0, 2, 1, 9, C, D, MAXL);
        latent_loader_init(&r1, multi, 2, 1, 2, 1, 9, C, D, MAXL);
        bool same = true;
        for (int i = 0; i < 30; i++) {
            if (i == 7) {
                LatentLoaderPosition p = latent_loader_get_position(&r0);
                latent_loader_free(&one);
                latent_loader_init(&one, multi, 4, 0, 1, 1, 12345, C, D, MAXL);
                latent_loader_set_position(&one, p);
            }
            std::vector<int64_t> a = stream(&one, 1, nullptr), b = stream(&r0, 1, nullptr), c = stream(&r1, 1, nullptr);
            std::multiset<int64_t> sa(a.begin(), a.end()), sbc(b.begin(), b.end());
            sbc.insert(c.begin(), c.end());
            if (sa != sbc) same = false;
        }
        check(same, "resume_on_other_process_count", "30 batches (crossing two epochs) of 1 x 4 rows = 2 ranks x 2 rows, resumed at batch 7 on 1 process");
        latent_loader_free(&one); latent_loader_free(&r0); latent_loader_free(&r1);
    }

    // ---- shuffle: deterministic per seed, global across shards, differs per epoch, covers each epoch
    {
        auto run = [&](int shuffle, uint64_t seed, long long batches) {
            LatentLoader ll;
            latent_loader_init(&ll, multi, 4, 0, 1, shuffle, seed, C, D, MAXL);
            std::vector<int64_t> s = stream(&ll, batches, nullptr);
            latent_loader_free(&ll);
            return s;
        };
        std::vector<int64_t> a = run(1, 1337, 24), b = run(1, 1337, 24), c = run(1, 1338, 24), plain = run(0, 1337, 12);
        std::vector<int64_t> e0(a.begin(), a.begin() + 48), e1(a.begin() + 48, a.end());
        check(a == b, "shuffle_deterministic", "same seed, same stream over 2 epochs");
        check(a != c, "shuffle_seed_matters", "another seed gives another order");
        check(e0 != plain, "shuffle_changes_order", "shuffled epoch differs from file order");
        check(e0 != e1, "shuffle_per_epoch", "epoch 1 order differs from epoch 0");
        std::set<int64_t> s0(e0.begin(), e0.end()), s1(e1.begin(), e1.end());
        check(s0.size() == 48 && s0 == s1, "shuffle_epoch_coverage", "each shuffled epoch visits all 48 samples once");
        std::set<int> shards_in_first_batches;
        for (int i = 0; i < 8; i++) shards_in_first_batches.insert(e0[i] < 12 ? 0 : e0[i] < 36 ? 1 : 2);
        check(shards_in_first_batches.size() == 3, "shuffle_across_shards", "the first 2 batches already mix samples of all 3 shards");
    }

    // ---- position: get, then set on a fresh loader, resumes the exact stream (across an epoch)
    {
        LatentLoader ll, l2;
        latent_loader_init(&ll, multi, 2, 1, 3, 1, 77, C, D, MAXL);
        stream(&ll, 5, nullptr);
        LatentLoaderPosition p = latent_loader_get_position(&ll);
        bool e1 = true, e2 = true;
        std::vector<int64_t> rest = stream(&ll, 12, &e1);  // 8 batches per epoch at P=3 (contents checked too)
        latent_loader_init(&l2, multi, 2, 1, 3, 1, 77, C, D, MAXL);
        latent_loader_set_position(&l2, p);
        std::vector<int64_t> rest2 = stream(&l2, 12, &e2);
        LatentLoaderPosition q = latent_loader_get_position(&l2);
        check(rest == rest2 && e1 && e2 && q.epoch == 2, "position_resume",
              "position (epoch " + str(p.epoch) + ", sample " + str(p.sample) + ") resumes the next 12 batches exactly");
        latent_loader_free(&ll); latent_loader_free(&l2);
    }

    // ---- channels taken from the data when the caller gives none
    {
        LatentLoader ll;
        latent_loader_init(&ll, multi, 2, 0, 1, 0, 0, 0, 0, MAXL);
        check(ll.C == C && ll.D == D, "channels_from_data", "expected channels <= 0: C and D from the first shard");
        latent_loader_free(&ll);
    }

    // ---- bad inputs: exit 1, one line naming the file
    {
        const std::string good = DIR + "/bad_good.lat";
        write_shard(good, 0, 4, LATENT_DTYPE_F32);
        const std::string g = read_file_or_fail(good);
        const std::string sC = str(C), sD = str(D), sL = str(MAXL);
        Child c = run_child({"--init", good, sC, sD, sL, "2"});
        check(c.exited && c.code == 0 && c.err.empty(), "good_shard_loads_in_child", "the child mode itself works");
        auto variant = [&](const std::string& name) { std::string p = DIR + "/bad_" + name + ".lat"; write_raw(p, g); return p; };
        auto expect = [&](const std::string& name, const std::string& p, const std::string& needle, const std::string& c_ = "", const std::string& maxl = "") {
            check_fails_one_line("bad_" + name, {"--init", p, c_.empty() ? sC : c_, sD, maxl.empty() ? sL : maxl, "2"}, needle);
        };
        int64_t lat0;  // sample 0's latent offset, from the index
        memcpy(&lat0, g.data() + entry(0), 8);
        std::string p;
        check_fails_one_line("bad_missing_file", {"--init", DIR + "/missing.lat", sC, sD, sL, "2"}, DIR + "/missing.lat");
        check_fails_one_line("bad_no_glob_match", {"--init", DIR + "/nothing_*.lat", sC, sD, sL, "2"}, DIR + "/nothing_*.lat");
        p = variant("magic"); patch32(p, 0, 20240520); expect("magic", p, p + ": header magic");
        p = variant("version"); patch32(p, 4, 2); expect("version", p, p + ": header version");
        p = DIR + "/bad_short_header.lat"; write_raw(p, g.substr(0, 100)); expect("short_header", p, p + ": file is 100 bytes");
        p = DIR + "/bad_empty.lat"; write_raw(p, ""); expect("empty_file", p, p);
        p = DIR + "/bad_trunc_index.lat"; write_raw(p, g.substr(0, entry(3) + 10)); expect("truncated_index", p, p + ": truncated index");
        p = DIR + "/bad_trunc_data.lat"; write_raw(p, g.substr(0, g.size() - 40)); expect("truncated_tensor_data", p, "expected inside the file");
        p = variant("offset_past_end"); patch64(p, entry(1), (int64_t)g.size() + 1000); expect("offset_outside_file", p, p + ": sample 1 latent offset");
        p = variant("offset_in_index"); patch64(p, entry(2) + 8, 1030); expect("offset_into_index", p, p + ": sample 2 text offset");
        p = variant("offset_negative"); patch64(p, entry(0), -8); expect("offset_negative", p, p + ": sample 0 latent offset");
        p = variant("overlap"); patch64(p, entry(1) + 8, lat0 + 4); expect("overlapping_tensors", p, "overlap");
        expect("channel_mismatch", good, good + ": header channels: expected 4", "4");
        check_fails_one_line("bad_caption_channel_mismatch", {"--init", good, sC, "4096", sL, "2"}, good + ": header caption channels: expected 4096");
        expect("text_too_long", good, good + ": sample 3 text length: expected in [1, 3]", "", "3");
        p = variant("zero_text"); patch32(p, entry(1) + 40, 0); expect("zero_length_text", p, p + ": sample 1 text length");
        p = variant("zero_T"); patch32(p, entry(2) + 28, 0); expect("zero_frames", p, p + ": sample 2 frames T");
        p = variant("neg_W"); patch32(p, entry(0) + 36, -3); expect("negative_width", p, p + ": sample 0 width W");
        p = variant("fps"); patchf(p, entry(0) + 44, 0.0f); expect("zero_fps", p, p + ": sample 0 fps");
        p = variant("source"); patch32(p, entry(1) + 48, 7); expect("bad_source", p, p + ": sample 1 source");
        p = variant("real_no_norm"); patch32(p, entry(1) + 48, LATENT_SOURCE_REAL); expect("real_without_statistics", p, "has_norm");
        p = variant("clean"); patch32(p, entry(3) + 52, 9); expect("clean_frames", p, p + ": sample 3 clean frames");
        p = variant("dtype"); patch32(p, 16, 5); expect("dtype", p, p + ": header latent dtype");
        p = variant("count"); patch64(p, 32, 0); expect("zero_sample_count", p, p + ": header sample count");
        p = variant("nan"); patchf(p, lat0 + 8, NAN); expect("nan_value", p, p + ": sample 0 latent value 2");
        {
            const float mean[C] = {0, 0, 0}, sd[C] = {1, 1, 1}, sd2[C] = {1, 2, 1};
            p = DIR + "/bad_std.lat";
            write_shard(p, 0, 4, LATENT_DTYPE_F32, mean, sd);
            patchf(p, LATENT_HEADER_BYTES + 4 * C + 4, 0.0f);
            expect("zero_std", p, p + ": channel 1 std");
            write_shard(DIR + "/stats_000.lat", 0, 4, LATENT_DTYPE_F32, mean, sd);
            write_shard(DIR + "/stats_001.lat", 4, 4, LATENT_DTYPE_F32, mean, sd2);
            check_fails_one_line("bad_statistics_disagree", {"--init", DIR + "/stats_*.lat", sC, sD, sL, "2"}, DIR + "/stats_001.lat: channel 1 mean/std");
        }
        write_shard(DIR + "/mix_000.lat", 0, 4, LATENT_DTYPE_F32);
        write_raw(DIR + "/mix_001.lat", g.substr(0, g.size() - 3));
        check_fails_one_line("bad_shard_in_glob", {"--init", DIR + "/mix_*.lat", sC, sD, sL, "2"}, DIR + "/mix_001.lat");
        check_fails_one_line("bad_too_few_samples", {"--init", good, sC, sD, sL, "5"}, good + ": 4 samples");
        check_fails_one_line("bad_batch_size", {"--init", good, sC, sD, sL, "0"}, "batch size");
        p = DIR + "/not_a_file.lat";
        make_parent_dirs(p + "/x");
        expect("directory", p, p + ": not a regular file");
    }

    printf("%s\n", n_failed ? "some latent data tests FAILED" : "all latent data tests passed");
    return n_failed ? 1 : 0;
}
