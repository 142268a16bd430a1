/*
Tests of llmc/data/sft_data.h, the SFT shards (conversations with a loss mask) and their loader:
  - rows, exactly, against rows laid out here from the documents: pack 0 (one conversation a
    row, padding after) and pack 1 (conversations in order while they fit), the targets
    (SFT_IGNORE where the mask is 0, on padding and never across a boundary), the positions
    restarting at each conversation, the segments (cu_seqlens) and the count of loss targets
  - two shards read as one stream; an epoch's tail that cannot fill a batch is skipped
  - data parallel: two ranks' rows are the one-process global batch's rows, interleaved
  - a saved position resumes the same batches (shuffled), also in a new loader; shuffle is a
    permutation of the conversations, different per epoch
  - bad files and mismatches exit 1 with one stderr line naming the file and the field: magic,
    version, token size, truncated, extra bytes, offsets (first, order, last, one of INT64_MIN),
    a token past the vocabulary, the model's vocabulary smaller than the shard's, a mask value of
    2, a mask bit on a conversation's first token, a conversation without a loss token, one
    longer than T + 1, a --pack other than 0/1, too few conversations for a batch, an llm.c
    loader given an SFT shard, a position from llm.c shards
  - chat prompts files (train_gpt --chat-prompts): read exactly; a bad header, end-of-turn id,
    truncated or extra lines, a line without the bar, ids that are not numbers or past the
    vocabulary, an empty prompt, a prompt and answer longer than T, a missing file

  make test/test_sft_data && ./test/test_sft_data
  ./test/test_sft_data --check GLOB VOCAB T     (checks the shards, prints the conversations and
                                                  loss tokens; test/test_prepare_sft.sh uses it)
  ./test/test_sft_data --init GLOB VOCAB T B PACK | --llmc GLOB VOCAB | --position GLOB | --write PATH |
                      --prompts FILE VOCAB T   (child modes)
*/
#include <map>
#include <set>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/data/sft_data.h"

static const std::string DIR = "test/tmp/sft_data";
static const int VOCAB = 1000;

struct Doc { std::vector<int> tok; std::vector<uint8_t> mask; };

// document k: n tokens, ids (100 k + i) % VOCAB, mask 1 on the second half (the "answer")
static Doc make_doc(int k, int n) {
    Doc d;
    for (int i = 0; i < n; i++) {
        d.tok.push_back((100 * k + i) % VOCAB);
        d.mask.push_back(i >= n / 2 ? 1 : 0);
    }
    return d;
}

static std::string write_docs(const std::string& name, const std::vector<Doc>& docs, int vocab = VOCAB, int seq_len = 8) {
    std::vector<std::vector<int>> t;
    std::vector<std::vector<uint8_t>> m;
    for (const Doc& d : docs) { t.push_back(d.tok); m.push_back(d.mask); }
    const std::string path = DIR + "/" + name;
    write_sft_shard(path, t, m, vocab, seq_len);
    return path;
}

// the rows expected for the documents of `rows` (indices into docs), T positions each
struct Rows { std::vector<int32_t> x, y, pos, cu; int64_t n_targets = 0; };
static Rows expected_rows(const std::vector<Doc>& docs, const std::vector<std::vector<int>>& rows, int T) {
    Rows r;
    r.cu.push_back(0);
    for (size_t b = 0; b < rows.size(); b++) {
        int t = 0;
        for (int k : rows[b]) {
            const Doc& d = docs[(size_t)k];
            for (size_t i = 0; i + 1 < d.tok.size(); i++, t++) {
                r.x.push_back(d.tok[i]);
                r.y.push_back(d.mask[i + 1] ? d.tok[i + 1] : SFT_IGNORE);
                r.pos.push_back((int)i);
                r.n_targets += d.mask[i + 1];
            }
            r.cu.push_back((int)b * T + t);
        }
        if (t < T) {
            for (int i = 0; t < T; i++, t++) { r.x.push_back(0); r.y.push_back(SFT_IGNORE); r.pos.push_back(i); }
            r.cu.push_back((int)(b + 1) * T);
        }
    }
    return r;
}

static bool same_batch(const SftLoader& sl, const Rows& r) {
    return sl.inputs == r.x && sl.targets == r.y && sl.positions == r.pos && sl.cu_seqlens == r.cu && sl.n_targets == r.n_targets;
}

static std::string hdr_edit(const std::string& src, const std::string& name, int field, int32_t value) {
    std::string raw = read_file_or_fail(src);
    memcpy(&raw[(size_t)field * 4], &value, 4);
    const std::string path = DIR + "/" + name;
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(raw.data(), raw.size(), f, path);
    fclose_or_fail(f, path);
    return path;
}
static std::string byte_edit(const std::string& src, const std::string& name, size_t at, const void* bytes, size_t n, bool truncate = false,
                             bool extra = false) {
    std::string raw = read_file_or_fail(src);
    if (truncate) raw.resize(raw.size() - 1);
    else if (extra) raw += '\0';
    else memcpy(&raw[at], bytes, n);
    const std::string path = DIR + "/" + name;
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(raw.data(), raw.size(), f, path);
    fclose_or_fail(f, path);
    return path;
}

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 5 && std::string(argv[1]) == "--check") {
        SftLoader sl;
        sft_init(&sl, argv[2], 1, atoi(argv[4]), 0, 1, 0, 0, atoi(argv[3]), 0);
        int64_t tokens = 0, targets = 0;
        for (const SftShard& s : sl.shards) tokens += s.n_tokens;
        for (long long k = 0, n = sft_num_batches(&sl); k < n; k++) { sft_next_batch(&sl); targets += sl.n_targets; }
        printf("%s: %zu shards, %zu conversations, %lld tokens, %lld loss targets\n", argv[2], sl.shards.size(), sl.doc_len.size(), (long long)tokens,
               (long long)targets);
        sft_free(&sl);
        return 0;
    }
    if (argc == 7 && std::string(argv[1]) == "--init") {
        SftLoader sl;
        sft_init(&sl, argv[2], atoi(argv[5]), atoi(argv[4]), 0, 1, 0, 0, atoi(argv[3]), atoi(argv[6]));
        return 0;
    }
    if (argc == 4 && std::string(argv[1]) == "--llmc") {
        DataLoader dl;
        dataloader_init(&dl, argv[2], 1, 4, 0, 1, 0, 0, atoi(argv[3]));
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--write") {   // a small valid shard (test_bad_input.sh gives it to train_gpt)
        make_parent_dirs(argv[2]);
        write_sft_shard(argv[2], {make_doc(0, 5).tok, make_doc(1, 6).tok}, {make_doc(0, 5).mask, make_doc(1, 6).mask}, VOCAB, 8);
        return 0;
    }
    if (argc == 5 && std::string(argv[1]) == "--prompts") {   // a chat prompts file: its counts
        const ChatPrompts cp = chat_prompts_read(argv[2], atoi(argv[3]), atoi(argv[4]));
        size_t with = 0, tokens = 0;
        for (size_t k = 0; k < cp.prompts.size(); k++) { with += !cp.answers[k].empty(); tokens += cp.prompts[k].size(); }
        printf("%s: %zu prompts (%zu tokens), %zu with answers, end-of-turn %d\n", argv[2], cp.prompts.size(), tokens, with, cp.eot);
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--position") {
        SftLoader sl;
        sft_init(&sl, argv[2], 1, 8, 0, 1, 0, 0, VOCAB, 0);
        DataLoaderPosition p = {0, 0, 0, 1};   // an llm.c shard position
        sft_set_position(&sl, p);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--check GLOB VOCAB T | --init GLOB VOCAB T B PACK | --llmc GLOB VOCAB | --position GLOB | --write PATH]", argv[0]);
    make_parent_dirs(DIR + "/x");

    // ---- rows: 7 conversations of 3..9 tokens (2..8 positions), T 8
    const int T = 8;
    const std::vector<int> lens = {5, 9, 3, 4, 6, 9, 3};
    std::vector<Doc> docs;
    for (size_t k = 0; k < lens.size(); k++) docs.push_back(make_doc((int)k, lens[k]));
    const std::string a = write_docs("a_000.bin", std::vector<Doc>(docs.begin(), docs.begin() + 4));
    write_docs("a_001.bin", std::vector<Doc>(docs.begin() + 4, docs.end()));
    const std::string glob_a = DIR + "/a_*.bin";
    {
        SftLoader sl;
        sft_init(&sl, glob_a, 2, T, 0, 1, 0, 0, VOCAB, 0);
        check(sl.shards.size() == 2 && sl.doc_len.size() == 7, "read/two_shards", "7 conversations in 2 shards, one stream");
        bool ok = true;
        for (int k = 0; k < 3; k++) { sft_next_batch(&sl); ok = ok && same_batch(sl, expected_rows(docs, {{2 * k}, {2 * k + 1}}, T)); }
        check(ok, "pack0/rows", "3 batches of 2 rows, one conversation each: tokens, targets (-100 off the mask and on padding), positions, segments");
        sft_next_batch(&sl);   // the 7th conversation alone cannot fill a batch of 2: a new epoch
        check(sl.epoch == 1 && same_batch(sl, expected_rows(docs, {{0}, {1}}, T)), "pack0/epoch_tail_skipped",
              "conversation 6 skipped, the next epoch starts at 0");
        check(sft_num_batches(&sl) == 3, "pack0/num_batches", "3 batches a pass");
        sft_free(&sl);
    }
    {
        // pack 1: positions 4, 8, 2, 3, 5, 8, 2 fill rows in order while they fit: {0} {1} {2 3} {4} {5} {6}
        SftLoader sl;
        sft_init(&sl, glob_a, 2, T, 0, 1, 0, 0, VOCAB, 1);
        sft_next_batch(&sl);
        const bool b1 = same_batch(sl, expected_rows(docs, {{0}, {1}}, T));
        sft_next_batch(&sl);
        const Rows r2 = expected_rows(docs, {{2, 3}, {4}}, T);
        const bool b2 = same_batch(sl, r2) && sl.docs_per_row == std::vector<int>{2, 1};
        check(b1 && b2, "pack1/rows", "rows {0} {1}, then {2 3} (2 + 3 positions, a boundary at 2) and {4}: conversation 5 (8 positions) starts the next row");
        // no target crosses the boundary: position 1 (the last of conversation 2) targets conversation 2's last token, position 2 starts conversation 3
        check(sl.positions[2] == 0 && sl.inputs[2] == docs[3].tok[0] && sl.cu_seqlens[1] == 2 && sl.cu_seqlens[2] == 5 && sl.cu_seqlens[3] == 8,
              "pack1/boundary", "positions restart at 0 at the second conversation; segments 0..2, 2..5, padding 5..8");
        sft_next_batch(&sl);
        check(same_batch(sl, expected_rows(docs, {{5}, {6}}, T)), "pack1/third_batch", "rows {5} {6}");
        check(sft_num_batches(&sl) == 3, "pack1/num_batches", "3 packed batches a pass (pack 0 would also make 3 of 7 rows, here 6 rows hold all 7)");
        sft_free(&sl);
    }
    {
        // pack 1 with room: T 16 puts several conversations in a row
        SftLoader sl;
        sft_init(&sl, glob_a, 1, 16, 0, 1, 0, 0, VOCAB, 1);
        sft_next_batch(&sl);
        const bool r1 = same_batch(sl, expected_rows(docs, {{0, 1, 2}}, 16));
        sft_next_batch(&sl);
        check(r1 && same_batch(sl, expected_rows(docs, {{3, 4, 5}}, 16)), "pack1/full_rows",
              "T 16: rows {0 1 2} (4+8+2 = 14 positions, 2 padding) and {3 4 5} (3+5+8 = 16, no padding segment)");
        sft_free(&sl);
    }
    {
        // data parallel: rank r of 2 gets rows b * 2 + r of the one-process batch of 4 rows
        SftLoader one, r0, r1;
        sft_init(&one, glob_a, 4, T, 0, 1, 1, 7, VOCAB, 1);
        sft_init(&r0, glob_a, 2, T, 0, 2, 1, 7, VOCAB, 1);
        sft_init(&r1, glob_a, 2, T, 1, 2, 1, 7, VOCAB, 1);
        bool ok = true, counts = true;
        for (int k = 0; k < 4; k++) {
            sft_next_batch(&one); sft_next_batch(&r0); sft_next_batch(&r1);
            counts = counts && one.n_targets_global == one.n_targets && r0.n_targets_global == one.n_targets &&
                     r1.n_targets_global == one.n_targets && r0.n_targets + r1.n_targets == one.n_targets;
            for (int b = 0; b < 2; b++)
                for (int r = 0; r < 2; r++) {
                    const SftLoader& rk = r ? r1 : r0;
                    const int ob = b * 2 + r;
                    ok = ok && std::equal(rk.inputs.begin() + b * T, rk.inputs.begin() + (b + 1) * T, one.inputs.begin() + ob * T) &&
                         std::equal(rk.targets.begin() + b * T, rk.targets.begin() + (b + 1) * T, one.targets.begin() + ob * T);
                }
        }
        check(ok, "data_parallel/rows", "4 shuffled packed batches: each rank's rows are the global batch's rows b*2 + rank");
        check(counts, "data_parallel/global_target_count", "every rank knows the global batch's count of loss targets (the loss's divisor): the sum of the ranks' own");
        sft_free(&one); sft_free(&r0); sft_free(&r1);
    }
    {
        // shuffle: a permutation per epoch; a saved position resumes the same batches in a new loader
        SftLoader sl;
        sft_init(&sl, glob_a, 1, T, 0, 1, 1, 3, VOCAB, 0);
        std::vector<uint32_t> o0 = sl.order;
        std::set<uint32_t> s0(o0.begin(), o0.end());
        for (int k = 0; k < 7; k++) sft_next_batch(&sl);
        check(s0.size() == 7 && sl.epoch == 1 && sl.order != o0, "shuffle/permutation", "each epoch a permutation of the 7 conversations, another each epoch");
        const DataLoaderPosition p = sft_get_position(&sl);
        std::vector<std::vector<int32_t>> want;
        for (int k = 0; k < 5; k++) { sft_next_batch(&sl); want.push_back(sl.targets); want.push_back(sl.inputs); }
        SftLoader s2;
        sft_init(&s2, glob_a, 1, T, 0, 1, 1, 3, VOCAB, 0);
        sft_set_position(&s2, p);
        bool ok = true;
        for (int k = 0; k < 5; k++) { sft_next_batch(&s2); ok = ok && want[2 * k] == s2.targets && want[2 * k + 1] == s2.inputs; }
        check(ok && p.shard == SFT_POSITION_SHARD, "position/resume", "5 batches after a saved position (epoch 1, document 0) are the same in a new loader");
        sft_reset(&s2);
        SftLoader s3;
        sft_init(&s3, glob_a, 1, T, 0, 1, 1, 3, VOCAB, 0);
        sft_next_batch(&s2); sft_next_batch(&s3);
        check(s2.inputs == s3.inputs && s2.order == s3.order, "position/reset", "reset starts the stream over");
        sft_free(&sl); sft_free(&s2); sft_free(&s3);
    }

    // ---- bad files: one line each, naming the file and the field
    const std::string one = write_docs("one.bin", {make_doc(0, 5), make_doc(1, 6)});
    auto bad = [&](const std::string& name, const std::string& path, const std::string& needle, int vocab = VOCAB, int t = 8, int pack = 0) {
        check_fails_one_line("bad/" + name, {"--init", path, std::to_string(vocab), std::to_string(t), "1", std::to_string(pack)}, needle);
    };
    const size_t OFF = SFT_HEADER_INTS * 4, TOK = OFF + 3 * 8, MASK = TOK + 11 * 2;
    bad("magic", hdr_edit(one, "magic.bin", 0, 20240520), "magic.bin: header magic: expected 20250312");
    bad("version", hdr_edit(one, "version.bin", 1, 2), "version.bin: header version: expected 1, found 2");
    bad("token_bytes", hdr_edit(one, "tb.bin", 2, 3), "tb.bin: header token_bytes: expected 2 or 4, found 3");
    bad("truncated", byte_edit(one, "trunc.bin", 0, nullptr, 0, true), "trunc.bin: file length: 2 documents and 11 tokens of 2 bytes need 1081 bytes, found 1080 (truncated)");
    bad("extra_bytes", byte_edit(one, "extra.bin", 0, nullptr, 0, false, true), "extra.bin: file length:");
    const int64_t o1 = 1, o_back = 20, o_last = 10;
    bad("offsets_first", byte_edit(one, "off0.bin", OFF, &o1, 8), "off0.bin: offsets[0]: expected 0, found 1");
    bad("offsets_order", byte_edit(one, "off1.bin", OFF + 8, &o_back, 8), "off1.bin: offsets[1] = 20 after offsets[0] = 0");
    bad("offsets_last", byte_edit(one, "off2.bin", OFF + 16, &o_last, 8), "off2.bin: offsets[2]: expected n_tokens 11, found 10");
    const int64_t o_min = INT64_MIN;   // a fuzzer's find: offsets[2] - offsets[1] overflowed
    bad("offsets_min", byte_edit(one, "off3.bin", OFF + 16, &o_min, 8), "off3.bin: offsets[2] = -9223372036854775808 after offsets[1] = 5");
    const uint16_t big = 999;
    bad("vocab", byte_edit(one, "tok.bin", TOK + 2 * 3, &big, 2), "tok.bin: header vocab_size: prepared with a tokenizer of 1000 ids, more than the model's vocabulary 500", 500);
    bad("token_id", hdr_edit(byte_edit(one, "tokid0.bin", TOK + 2 * 3, &big, 2), "tokid.bin", 5, 900), "tokid.bin: token 3 has id 999, expected < the header's vocab_size 900");
    const uint8_t two = 2, on = 1, off = 0;
    bad("mask_value", byte_edit(one, "m2.bin", MASK + 4, &two, 1), "m2.bin: mask of token 4 is 2, expected 0 or 1");
    bad("mask_first_token", byte_edit(one, "mfirst.bin", MASK + 5, &on, 1), "mfirst.bin: mask of token 5 is 1, but it starts document 1");
    {
        std::string p = byte_edit(one, "mnone0.bin", MASK + 2, &off, 1);
        p = byte_edit(p, "mnone1.bin", MASK + 3, &off, 1);
        bad("mask_none", byte_edit(p, "mnone.bin", MASK + 4, &off, 1), "mnone.bin: document 0 has no token in the loss (mask all 0)");
    }
    bad("too_long", one, "one.bin: document 1 has 6 tokens, more than --seq-len 4 + 1 (the shard was prepared for --seq-len 8", VOCAB, 4);
    bad("pack_flag", one, "flag --pack: expected 0 or 1, got 2", VOCAB, T, 2);
    check_fails_one_line("bad/too_few_for_a_batch", {"--init", one, "1000", "8", "3", "0"}, "2 conversations fill fewer rows than one batch of B 3 x 1 processes");
    check_fails_one_line("bad/no_files", {"--init", DIR + "/none_*.bin", "1000", "8", "1", "0"}, "none_*.bin: no file matches");
    check_fails_one_line("bad/llmc_loader_given_sft", {"--llmc", one, "1000"}, "one.bin: header magic: 20250312 is an SFT shard");
    check_fails_one_line("bad/llmc_position", {"--position", one}, "data position: the checkpoint was not taken reading SFT shards");
    {
        SftLoader sl;   // a shard with uint32 tokens reads the same
        std::vector<Doc> d2 = {make_doc(3, 5), make_doc(4, 7)};
        d2[1].tok[2] = 70000;
        write_docs("u32.bin", d2, 70001);
        sft_init(&sl, DIR + "/u32.bin", 2, T, 0, 1, 0, 0, 70001, 0);
        sft_next_batch(&sl);
        check(sl.shards[0].token_bytes == 4 && same_batch(sl, expected_rows(d2, {{0}, {1}}, T)), "read/uint32_tokens", "vocabulary past 65536: uint32 tokens");
        sft_free(&sl);
    }

    {
        // chat prompts (train_gpt --chat-prompts): read exactly; bad files one line each
        auto write = [&](const std::string& name, const std::string& text) {
            const std::string path = DIR + "/" + name;
            FILE* f = fopen(path.c_str(), "wb");
            if (!f || fwrite(text.data(), 1, text.size(), f) != text.size() || fclose(f) != 0) fail("cannot write %s", path.c_str());
            return path;
        };
        const std::string good = write("prompts.txt", "mega.c chat prompts 1 eot=2 n=3\n5 6 7 | 8 9 2\n10 11 |\n12 | 2\n");
        const ChatPrompts cp = chat_prompts_read(good, VOCAB, 8);
        const bool exact = cp.eot == 2 && cp.prompts == std::vector<std::vector<int>>{{5, 6, 7}, {10, 11}, {12}} &&
                           cp.answers == std::vector<std::vector<int>>{{8, 9, 2}, {}, {2}};
        check(exact, "prompts/read", "3 prompts, the second without an answer");
        const struct { const char* name; const char* text; const char* needle; int T; } bad[] = {
            {"header", "chat prompts eot=2 n=1\n5 | 6\n", "line 1: expected \"mega.c chat prompts 1 eot=ID n=N\"", 8},
            {"eot", "mega.c chat prompts 1 eot=1000 n=1\n5 | 6\n", "end-of-turn id 1000 is outside the vocabulary", 8},
            {"truncated", "mega.c chat prompts 1 eot=2 n=3\n5 | 6\n", "1 prompt lines, the header says 3", 8},
            {"extra", "mega.c chat prompts 1 eot=2 n=1\n5 | 6\n7 | 8\n", "line 3: more lines than the header's n=1", 8},
            {"no_bar", "mega.c chat prompts 1 eot=2 n=1\n5 6\n", "line 2: expected \"PROMPT IDS | ANSWER IDS\"", 8},
            {"not_ids", "mega.c chat prompts 1 eot=2 n=1\n5 x6 | 6\n", "line 2: expected token ids", 8},
            {"id_range", "mega.c chat prompts 1 eot=2 n=1\n5 1000 | 6\n", "line 2: token id 1000 is outside the vocabulary", 8},
            {"empty_prompt", "mega.c chat prompts 1 eot=2 n=1\n | 6\n", "line 2: an empty prompt", 8},
            {"too_long", "mega.c chat prompts 1 eot=2 n=1\n1 2 3 4 5 | 6 7 8 9\n", "the prompt (5 tokens) and its answer (4) do not fit --seq-len 8", 8},
        };
        for (const auto& b : bad)
            check_fails_one_line(std::string("prompts/bad_") + b.name, {"--prompts", write(std::string("bad_") + b.name + ".txt", b.text), "1000", std::to_string(b.T)},
                                 b.needle);
        check_fails_one_line("prompts/missing", {"--prompts", DIR + "/nope.txt", "1000", "8"}, "nope.txt: cannot open");
    }

    printf("%s\n", n_failed ? "test_sft_data: FAILED" : "test_sft_data: all passed");
    return n_failed ? 1 : 0;
}
