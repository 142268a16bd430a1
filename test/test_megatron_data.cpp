/*
Tests of llmc/data/megatron_data.h on the committed fixtures of test/data/megatron/
(written by scripts/write_megatron_fixture.py, which follows Megatron-LM's
IndexedDatasetBuilder) and on bad files written into test/tmp/megatron/.
  - every dtype code 1..8 read back token for token (sequences, documents, the stream)
  - the fixtures are byte-identical to what this test's own writer produces
  - batches: inputs/targets are exact stream windows, epochs wrap, ranks split
    a batch like a single process, a saved position resumes the same stream,
    shuffle visits every sample once per epoch
  - blending "0.5 a 0.3 b 0.2 c": realised fractions within 1% over 10,000 samples
  - bad input exits 1 with one stderr line naming the file (child process), among it
    sequence pointers misaligned, overlapping, out of order or past the .bin's end

  make test/test_megatron_data && ./test/test_megatron_data
  ./test/test_megatron_data --open PREFIX VOCAB   (child mode: megatron_open)
  ./test/test_megatron_data --blend SPEC VOCAB    (child mode: blend init + one batch of 2 x 8)
*/
#include <cmath>
#include <set>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/data/megatron_data.h"

static const std::string FIX = "test/data/megatron";
static const std::string DIR = "test/tmp/megatron";
static const char* NAMES[9] = {"", "uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16"};
static const int MOD[9] = {0, 256, 128, 32768, 150000, 150000, 150000, 150000, 65536};
static const std::vector<int> LENGTHS = {5, 17, 3, 9, 12, 1, 20, 8};
static const std::vector<int64_t> DOCS = {0, 1, 3, 4, 7, 8};

static int64_t fixture_token(int code, int64_t i) { return (37 * i + 11 * code) % MOD[code]; }
static std::string fixture_prefix(int code) { return FIX + "/dtype" + std::to_string(code) + "_" + NAMES[code]; }
static std::string str(long long x) { return std::to_string(x); }

static void write_raw(const std::string& path, const std::string& bytes) {
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, path);
    fclose_or_fail(f, path);
}
template <typename T> static void put(std::string& s, T v) { s.append((const char*)&v, sizeof v); }

// Encodes token values in dtype `code` (what numpy's astype(dtype).tobytes() gives).
static void put_token(std::string& s, int code, int64_t v) {
    switch (code) {
        case 1: put<uint8_t>(s, (uint8_t)v); break;
        case 2: put<int8_t>(s, (int8_t)v); break;
        case 3: put<int16_t>(s, (int16_t)v); break;
        case 4: put<int32_t>(s, (int32_t)v); break;
        case 5: put<int64_t>(s, v); break;
        case 6: put<double>(s, (double)v); break;
        case 7: put<float>(s, (float)v); break;
        case 8: put<uint16_t>(s, (uint16_t)v); break;
    }
}

// The .idx and .bin Megatron's builder writes for these sequences (pointers cumulative).
static void megatron_bytes(const std::vector<std::vector<int64_t>>& seqs, const std::vector<int64_t>& docs, int code, std::string* idx, std::string* bin) {
    bin->clear();
    idx->assign(MEGATRON_IDX_MAGIC, 9);
    put<uint64_t>(*idx, 1);
    put<uint8_t>(*idx, (uint8_t)code);
    put<uint64_t>(*idx, seqs.size());
    put<uint64_t>(*idx, docs.size());
    for (const auto& s : seqs) put<int32_t>(*idx, (int32_t)s.size());
    int64_t p = 0;
    for (const auto& s : seqs) { put<int64_t>(*idx, p); p += (int64_t)s.size() * megatron_dtype_size(code); }
    for (int64_t d : docs) put<int64_t>(*idx, d);
    for (const auto& s : seqs) for (int64_t v : s) put_token(*bin, code, v);
}

static std::vector<std::vector<int64_t>> fixture_sequences(int code) {
    std::vector<std::vector<int64_t>> seqs;
    int64_t i = 0;
    for (int L : LENGTHS) {
        std::vector<int64_t> s;
        for (int k = 0; k < L; k++) s.push_back(fixture_token(code, i++));
        seqs.push_back(s);
    }
    return seqs;
}

static void write_dataset(const std::string& prefix, const std::string& idx, const std::string& bin) {
    write_raw(prefix + ".idx", idx);
    write_raw(prefix + ".bin", bin);
}

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 4 && std::string(argv[1]) == "--open") {
        MegatronIndexed ds;
        megatron_open(&ds, argv[2], (int)parse_int_or_fail(argv[3], "vocab"));
        megatron_close(&ds);
        return 0;
    }
    if (argc == 4 && std::string(argv[1]) == "--blend") {
        MegatronBlend bl;
        megatron_blend_init(&bl, argv[2], 2, 8, 0, 1, 0, 0, (int)parse_int_or_fail(argv[3], "vocab"));
        megatron_next_batch(&bl);
        megatron_blend_free(&bl);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--open PREFIX VOCAB | --blend SPEC VOCAB]", argv[0]);
    make_parent_dirs(DIR + "/x");
    static const int VOCAB = 200000;

    // ---- every dtype code, token for token
    for (int code = 1; code <= 8; code++) {
        const std::string name = std::string("read_dtype") + str(code) + "_" + NAMES[code];
        MegatronIndexed ds;
        megatron_open(&ds, fixture_prefix(code), VOCAB);
        bool ok = ds.dtype_code == code && ds.seq_lengths.size() == LENGTHS.size() && ds.doc_indices == DOCS && ds.n_tokens == 75 &&
                  megatron_num_documents(&ds) == 5 && !ds.has_modes;
        const auto want = fixture_sequences(code);
        for (size_t s = 0; ok && s < want.size(); s++) {
            std::vector<int32_t> got = megatron_read_sequence(&ds, (int64_t)s, VOCAB);
            ok = got.size() == want[s].size();
            for (size_t k = 0; ok && k < got.size(); k++) ok = got[k] == want[s][k];
        }
        std::vector<int32_t> all(75);
        megatron_read_tokens(&ds, 0, 75, all.data(), VOCAB);
        for (int64_t i = 0; ok && i < 75; i++) ok = all[i] == fixture_token(code, i);
        std::vector<int32_t> mid(30);  // crosses 4 sequence boundaries
        megatron_read_tokens(&ds, 20, 30, mid.data(), VOCAB);
        for (int64_t i = 0; ok && i < 30; i++) ok = mid[i] == fixture_token(code, 20 + i);
        megatron_close(&ds);
        check(ok, name, "8 sequences, 5 documents, 75 tokens, every token (max id " + str(MOD[code] - 1) + ")");
        // the committed fixture is what Megatron's builder layout gives
        std::string idx, bin;
        megatron_bytes(want, DOCS, code, &idx, &bin);
        const bool same = idx == read_file_or_fail(fixture_prefix(code) + ".idx") && bin == read_file_or_fail(fixture_prefix(code) + ".bin");
        check(same, name + "_layout", "fixture .idx/.bin byte-identical to this test's writer");
    }

    // ---- one dataset: exact windows, epoch wrap
    const int B = 2, T = 8;
    {
        MegatronBlend bl;
        megatron_blend_init(&bl, fixture_prefix(4), B, T, 0, 1, 0, 0, VOCAB);
        bool ok = bl.n_samples.size() == 1 && bl.n_samples[0] == 9;  // (75 - 1) / 8
        for (int64_t step = 0; step < 20 && ok; step++) {
            std::vector<std::pair<int, int64_t>> src;
            megatron_next_batch(&bl, &src);
            for (int b = 0; b < B && ok; b++) {
                const int64_t k = (step * B + b) % 9;
                ok = src[b].first == 0 && src[b].second == k;
                for (int t = 0; t < T && ok; t++)
                    ok = bl.inputs[b * T + t] == fixture_token(4, k * T + t) && bl.targets[b * T + t] == fixture_token(4, k * T + t + 1);
            }
        }
        megatron_blend_free(&bl);
        check(ok, "single_dataset_batches", "9 samples, inputs = stream[kT, kT+T), targets shifted by one, wrapping after sample 8");
    }

    // ---- blending
    const std::string A = FIX + "/blend_a", Bp = FIX + "/blend_b", C = FIX + "/blend_c";
    const std::string spec = "0.5 " + A + " 0.3 " + Bp + " 0.2 " + C;
    {
        MegatronBlend bl;
        const int BB = 10, TT = 16;
        megatron_blend_init(&bl, spec, BB, TT, 0, 1, 0, 0, VOCAB);
        int64_t cnt[3] = {0, 0, 0}, seen[3] = {0, 0, 0};
        bool exact = true, prefix_ok = true;
        for (int step = 0; step < 1000; step++) {
            megatron_next_batch(&bl);
            for (int b = 0; b < BB; b++) {
                const int d = bl.inputs[b * TT] / 1000;
                if (d < 0 || d > 2) { exact = false; continue; }
                const int64_t k = seen[d]++ % bl.n_samples[d];
                for (int t = 0; t < TT; t++)
                    if (bl.inputs[b * TT + t] != 1000 * d + k * TT + t || bl.targets[b * TT + t] != 1000 * d + k * TT + t + 1) exact = false;
                cnt[d]++;
            }
            // greedy scheme: after every batch each count is within 1 of its target
            const double n = (step + 1) * BB;
            const double w[3] = {0.5, 0.3, 0.2};
            for (int d = 0; d < 3; d++) if (std::fabs(cnt[d] - w[d] * n) > 1.0 + 1e-9) prefix_ok = false;
        }
        const double fa = cnt[0] / 1e4, fb = cnt[1] / 1e4, fc = cnt[2] / 1e4;
        char buf[128];
        snprintf(buf, sizeof buf, "fractions %.4f %.4f %.4f for weights 0.5 0.3 0.2 over 10000 samples", fa, fb, fc);
        check(std::fabs(fa - 0.5) < 0.01 && std::fabs(fb - 0.3) < 0.01 && std::fabs(fc - 0.2) < 0.01, "blend_fractions", buf);
        check(prefix_ok, "blend_greedy", "every dataset's count within 1 of weight * samples after every batch");
        check(exact, "blend_contents", "each sample is the next window of its dataset, wrapping per dataset");
        megatron_blend_free(&bl);
    }
    {   // Megatron's first choices for weights 0.5 0.3 0.2 (max(g, 1) and first-index ties)
        std::vector<double> w = {0.5, 0.3, 0.2};
        std::vector<int64_t> counts = {0, 0, 0};
        std::string seq;
        for (int g = 0; g < 10; g++) { int d = megatron_blend_choose(w, counts, g); counts[d]++; seq += (char)('a' + d); }
        // hand-computed from build_blending_indices: g=0: errs .5 .3 .2 -> a; g=1: -.5 .3 .2 -> b; g=2: 0 -.4 .4 -> c;
        // g=3: .5 -.1 -.4 -> a; g=4: 0 .2 -.2 -> b; g=5: .5 -.5 0 -> a; g=6: 0 -.2 .2 -> c; g=7: .5 .1 -.6 -> a; g=8: 0 .4 -.4 -> b; g=9: .5 -.3 -.2 -> a
        check(seq == "abcabacaba", "blend_sequence", seq + " (hand-computed from Megatron's build_blending_indices: abcabacaba)");
    }
    {   // two ranks with B=5 see the samples of one rank with B=10, split by position
        MegatronBlend one, r0, r1;
        megatron_blend_init(&one, spec, 10, 16, 0, 1, 1, 7, VOCAB);
        megatron_blend_init(&r0, spec, 5, 16, 0, 2, 1, 7, VOCAB);
        megatron_blend_init(&r1, spec, 5, 16, 1, 2, 1, 7, VOCAB);
        bool ok = true;
        for (int step = 0; step < 50 && ok; step++) {
            megatron_next_batch(&one);
            megatron_next_batch(&r0);
            megatron_next_batch(&r1);
            for (int b = 0; b < 10 && ok; b++) {
                const MegatronBlend& r = b % 2 == 0 ? r0 : r1;
                ok = memcmp(one.inputs + b * 16, r.inputs + (b / 2) * 16, 64) == 0 && memcmp(one.targets + b * 16, r.targets + (b / 2) * 16, 64) == 0;
            }
        }
        check(ok, "data_parallel_split", "ranks 0/1 of 2 (B=5) hold the even/odd rows of one process's B=10 batches, shuffled");
        // resume: a fresh loader set to the saved position continues the same stream
        const int64_t pos = megatron_get_position(&one);
        MegatronBlend res;
        megatron_blend_init(&res, spec, 10, 16, 0, 1, 1, 7, VOCAB);
        megatron_set_position(&res, pos);
        bool same = true;
        for (int step = 0; step < 30; step++) {
            megatron_next_batch(&one);
            megatron_next_batch(&res);
            same = same && memcmp(one.inputs, res.inputs, 640) == 0 && memcmp(one.targets, res.targets, 640) == 0;
        }
        check(same && pos == 500, "resume_position", "set_position(" + str(pos) + ") continues bit-identically for 30 batches");
        megatron_blend_free(&one); megatron_blend_free(&r0); megatron_blend_free(&r1); megatron_blend_free(&res);
    }
    {   // shuffle: each epoch of a dataset visits each of its samples once, in a different order per epoch
        MegatronBlend bl;
        megatron_blend_init(&bl, A, 1, 16, 0, 1, 1, 3, VOCAB);
        const int64_t ns = bl.n_samples[0];  // 400 / 16 = 25
        std::vector<int64_t> e0, e1;
        for (int64_t i = 0; i < 2 * ns; i++) {
            std::vector<std::pair<int, int64_t>> src;
            megatron_next_batch(&bl, &src);
            (i < ns ? e0 : e1).push_back(src[0].second);
            if (bl.inputs[0] != src[0].second * 16) e0.clear();
        }
        std::set<int64_t> s0(e0.begin(), e0.end()), s1(e1.begin(), e1.end());
        std::vector<int64_t> ident(ns);
        for (int64_t i = 0; i < ns; i++) ident[i] = i;
        check((int64_t)s0.size() == ns && (int64_t)s1.size() == ns && e0 != e1 && e0 != ident, "shuffle_epochs",
              str(ns) + " samples, each once per epoch, two different permutations");
        megatron_blend_free(&bl);
    }
    {   // no weights: weighed by sample counts (a 25, b 18, c 12 at T=16)
        MegatronBlend bl;
        megatron_blend_init(&bl, A + " " + Bp + " " + C, 1, 16, 0, 1, 0, 0, VOCAB);
        const bool ok = bl.n_samples == std::vector<int64_t>{25, 18, 12} && std::fabs(bl.weights[0] - 25.0 / 55) < 1e-12 &&
                        std::fabs(bl.weights[2] - 12.0 / 55) < 1e-12;
        check(ok, "unweighted_blend", "prefixes without weights are weighed by their sample counts");
        megatron_blend_free(&bl);
    }

    // ---- bad input: exit 1, one stderr line naming the file
    const std::string good = fixture_prefix(4);
    const std::string gidx = read_file_or_fail(good + ".idx"), gbin = read_file_or_fail(good + ".bin");
    auto bad = [&](const std::string& name, std::string idx, std::string bin, const std::string& needle, int vocab = 200000) {
        const std::string p = DIR + "/" + name;
        write_dataset(p, idx, bin);
        check_fails_one_line("bad_" + name, {"--open", p, str(vocab)}, needle);
    };
    auto patched = [&](size_t off, const void* v, size_t n) { std::string s = gidx; memcpy(&s[off], v, n); return s; };
    const std::string P = DIR + "/";
    { std::string s = gidx; s[0] = 'X'; bad("wrong_magic", s, gbin, P + "wrong_magic.idx: magic: expected \"MMIDIDX\\0\\0\""); }
    { uint64_t v = 2; bad("wrong_version", patched(9, &v, 8), gbin, P + "wrong_version.idx: version: expected 1, found 2"); }
    { uint8_t c = 9; bad("dtype_code_9", patched(17, &c, 1), gbin, P + "dtype_code_9.idx: dtype code: expected 1..8"); }
    { uint8_t c = 0; bad("dtype_code_0", patched(17, &c, 1), gbin, P + "dtype_code_0.idx: dtype code: expected 1..8"); }
    bad("truncated_idx", gidx.substr(0, gidx.size() - 5), gbin, P + "truncated_idx.idx: file length:");
    bad("truncated_header", gidx.substr(0, 20), gbin, P + "truncated_header.idx: file is 20 bytes");
    { uint64_t v = 1ull << 60; bad("huge_count", patched(18, &v, 8), gbin, P + "huge_count.idx: sequence count"); }
    {   // last sequence's pointer moved past the .bin's end
        int64_t ptr = (int64_t)gbin.size() - 4;
        bad("pointer_past_end", patched(34 + 8 * 4 + 7 * 8, &ptr, 8), gbin, P + "pointer_past_end.idx: sequence_pointers[7]");
    }
    // sequence 3 (9 int32 tokens at byte 100, after sequence 2's 3 tokens at byte 88) moved: by one
    // byte, into sequence 2, before it
    { int64_t v = 101; bad("pointer_misaligned", patched(34 + 8 * 4 + 3 * 8, &v, 8), gbin,
                          P + "pointer_misaligned.idx: sequence_pointers[3]: byte 101 is not a multiple of the int32 size 4 (misaligned)"); }
    { int64_t v = 96; bad("pointer_overlap", patched(34 + 8 * 4 + 3 * 8, &v, 8), gbin,
                         P + "pointer_overlap.idx: sequence_pointers[3]: byte 96, expected at least 100, the end of sequence 2 (sequences overlap)"); }
    { int64_t v = 0; bad("pointer_out_of_order", patched(34 + 8 * 4 + 3 * 8, &v, 8), gbin,
                        P + "pointer_out_of_order.idx: sequence_pointers[3]: byte 0, expected at least 100, the end of sequence 2 (sequences out of file order)"); }
    bad("bin_truncated", gidx, gbin.substr(0, gbin.size() - 1), P + "bin_truncated.idx: sequence_pointers[7]");
    { int32_t z = 0; bad("zero_length", patched(34 + 4 * 2, &z, 4), gbin, P + "zero_length.idx: sequence_lengths[2]: expected > 0"); }
    { int64_t v = 1; bad("doc_first", patched(34 + 12 * 8, &v, 8), gbin, P + "doc_first.idx: document_indices[0]: expected 0"); }
    { int64_t v = 7; bad("doc_last", patched(34 + 12 * 8 + 5 * 8, &v, 8), gbin, P + "doc_last.idx: document_indices[5]: expected the sequence count 8"); }
    { int64_t v = 0; bad("doc_decreasing", patched(34 + 12 * 8 + 2 * 8, &v, 8), gbin, P + "doc_decreasing.idx: document_indices[2]"); }
    bad("token_ge_vocab", gidx, gbin, P + "token_ge_vocab.bin: token 26 has id 1006, expected an id in [0, vocab_size 1000)", 1000);
    {   // negative int16 token, non-integral float token
        std::string idx, bin;
        megatron_bytes({{1, 2, -3, 4}}, {0, 1}, 3, &idx, &bin);
        bad("negative_token", idx, bin, P + "negative_token.bin: token 2 has id -3");
        megatron_bytes({{1, 2, 3, 4}}, {0, 1}, 7, &idx, &bin);
        const float half = 2.5f;
        memcpy(&bin[4], &half, 4);
        bad("fractional_token", idx, bin, P + "fractional_token.bin: token 1 is 2.5, expected an integer id");
    }
    {
        std::string idx, bin;
        megatron_bytes({{1, 2, 3, 4}}, {0, 1}, 8, &idx, &bin);
        write_raw(DIR + "/no_bin.idx", idx);
        check_fails_one_line("bad_missing_bin", {"--open", DIR + "/no_bin", str(VOCAB)}, P + "no_bin.bin: cannot open");
        check_fails_one_line("bad_missing_idx", {"--open", DIR + "/nothing", str(VOCAB)}, P + "nothing.idx: cannot open");
        // a multimodal index (sequence modes after the document indices) is read
        idx += std::string(1, '\0');
        write_dataset(DIR + "/modes", idx, bin);
        MegatronIndexed ds;
        megatron_open(&ds, DIR + "/modes", VOCAB);
        check(ds.has_modes && ds.n_tokens == 4, "sequence_modes", "an .idx with int8 sequence modes is accepted");
        megatron_close(&ds);
        // too short for one sample of T+1 = 9 tokens
        write_dataset(DIR + "/short", idx, bin);
        check_fails_one_line("bad_too_short", {"--blend", DIR + "/short", str(VOCAB)}, P + "short.bin: 4 tokens hold no sample");
    }
    check_fails_one_line("bad_blend_odd", {"--blend", "0.5 " + A + " 0.5", str(VOCAB)}, "expected pairs of weight and prefix");
    check_fails_one_line("bad_blend_weight", {"--blend", "-1 " + A + " 2 " + Bp, str(VOCAB)}, "weight '-1' must be > 0");
    check_fails_one_line("bad_blend_missing", {"--blend", "0.5 " + A + " 0.5 " + DIR + "/nothing", str(VOCAB)}, P + "nothing.idx: cannot open");

    printf("%s\n", n_failed ? "SOME TESTS FAILED" : "all megatron data tests passed");
    return n_failed ? 1 : 0;
}
