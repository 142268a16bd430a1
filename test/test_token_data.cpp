/*
Tests of llmc/data/token_data.h, the GPT trainer's one interface over llm.c shards
and Megatron indexed datasets (--train-data "megatron:SPEC"):
  - a Megatron spec reads the stream windows of test/data/megatron's uint16
    fixture (token i = (37 i + 88) mod 65536), batch after batch
  - an llm.c shard written here reads its windows the same way
  - both formats: a saved position resumes the same batches (also into a new
    reader), reset starts over, batches per pass
  - a blended spec gives the same batches as llmc/data/megatron_data.h itself
  - a position of one format given to the other exits 1 with one stderr line
  - SFT shards (llmc/data/sft_data.h) through the same interface, for a caller that lays
    them out (sft_pack 0/1): the loader's rows, targets and positions, resume; a caller
    that does not (train_gpt today) gets the llm.c loader's one-line error; positions
    of llm.c/Megatron/SFT data refused in the others

  make test/test_token_data && ./test/test_token_data
  ./test/test_token_data --cross SPEC_SAVE SPEC_LOAD [PACK]   (child mode: a position from one into the other;
                                                            PACK: SFT shards read with that layout)
*/
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/data/token_data.h"
#include "../llmc/data/dataset.h"

static const std::string DIR = "test/tmp/token_data";
static const std::string MEG = "test/data/megatron/dtype8_uint16";   // 75 tokens, uint16
static const int VOCAB = 65536, B = 2, T = 4;

static int64_t meg_token(int64_t i) { return (37 * i + 11 * 8) % 65536; }

// an llm.c shard of n tokens, token i = (13 i + 5) mod 1000 (llmc/data/dataset.h's writer)
static std::string write_llmc_shard(int64_t n) {
    std::vector<int> tok((size_t)n);
    for (int64_t i = 0; i < n; i++) tok[(size_t)i] = (int)((13 * i + 5) % 1000);
    const std::string path = DIR + "/shard_000.bin";
    write_token_shard(path, tok, 1000);
    return path;
}

// rows of the next batch as one vector (inputs then targets)
static std::vector<int32_t> next_rows(TokenData* td) {
    token_data_next(td);
    std::vector<int32_t> v(td->inputs, td->inputs + B * T);
    v.insert(v.end(), td->targets, td->targets + B * T);
    return v;
}

// the stream windows `token` gives for batches k0.. of an unshuffled single-process reader
static bool windows_ok(TokenData* td, int nbatches, int64_t (*token)(int64_t)) {
    for (int k = 0; k < nbatches; k++) {
        token_data_next(td);
        for (int b = 0; b < B; b++) {
            const int64_t s = (int64_t)(k * B + b) * T;   // sample (k*B + b) starts at token s
            for (int t = 0; t < T; t++)
                if (td->inputs[b * T + t] != token(s + t) || td->targets[b * T + t] != token(s + t + 1)) return false;
        }
    }
    return true;
}

static int64_t llmc_token(int64_t i) { return (13 * i + 5) % 1000; }

// save after 2 batches, read 3 more; a new reader set to the saved position must give the same 3
static bool resumes(const std::string& spec, int shuffle, std::string* detail, int sft_pack = -1) {
    TokenData a, b;
    token_data_init(&a, spec, B, T, 0, 1, shuffle, 7, VOCAB, sft_pack);
    next_rows(&a); next_rows(&a);
    const DataLoaderPosition p = token_data_get_position(&a);
    std::vector<std::vector<int32_t>> want;
    for (int k = 0; k < 3; k++) want.push_back(next_rows(&a));
    token_data_init(&b, spec, B, T, 0, 1, shuffle, 7, VOCAB, sft_pack);
    token_data_set_position(&b, p);
    bool ok = true;
    for (int k = 0; k < 3; k++) ok = ok && next_rows(&b) == want[k];
    // reset: the first batch again
    token_data_reset(&a);
    TokenData c;
    token_data_init(&c, spec, B, T, 0, 1, shuffle, 7, VOCAB, sft_pack);
    ok = ok && next_rows(&a) == next_rows(&c);
    *detail = "position (shard " + std::to_string(p.shard) + ", sample " + std::to_string(p.sample) + ")";
    token_data_free(&a); token_data_free(&b); token_data_free(&c);
    return ok;
}

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if ((argc == 4 || argc == 5) && std::string(argv[1]) == "--cross") {
        const int pack = argc == 5 ? atoi(argv[4]) : -1;
        TokenData a, b;
        token_data_init(&a, argv[2], B, T, 0, 1, 0, 7, VOCAB, pack);
        next_rows(&a);
        token_data_init(&b, argv[3], B, T, 0, 1, 0, 7, VOCAB, pack);
        token_data_set_position(&b, token_data_get_position(&a));
        return 0;
    }
    if (argc != 1) fail("usage: %s [--cross SPEC_SAVE SPEC_LOAD [PACK]]", argv[0]);
    make_parent_dirs(DIR + "/x");
    const std::string meg = "megatron:" + MEG;
    const std::string shard = write_llmc_shard(4001);

    {
        TokenData td;
        token_data_init(&td, meg, B, T, 0, 1, 0, 0, VOCAB);
        const bool ok = td.megatron && windows_ok(&td, 9, meg_token) && token_data_num_batches(&td) == (75 - 1) / T / B;
        check(ok, "megatron_windows", "9 batches of 2 x 4 from " + MEG + ", every input and target; 9 batches per pass");
        token_data_free(&td);
    }
    {
        TokenData td;
        token_data_init(&td, shard, B, T, 0, 1, 0, 0, VOCAB);
        const bool ok = !td.megatron && windows_ok(&td, 20, llmc_token) && token_data_num_batches(&td) == 4000 / T / B;
        check(ok, "llmc_windows", "20 batches of 2 x 4 from an llm.c shard of 4001 tokens; 500 batches per pass");
        token_data_free(&td);
    }
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        std::string d;
        bool ok = resumes(meg, shuffle, &d);
        check(ok, std::string("megatron_resume") + (shuffle ? "_shuffled" : ""), "3 batches after a saved " + d + " identical in a new reader; reset = first batch");
        ok = resumes(shard, shuffle, &d);
        check(ok, std::string("llmc_resume") + (shuffle ? "_shuffled" : ""), "3 batches after a saved " + d + " identical in a new reader; reset = first batch");
    }
    {
        // a blend through the prefix = llmc/data/megatron_data.h itself
        const std::string spec = "0.5 test/data/megatron/blend_a 0.3 test/data/megatron/blend_b 0.2 test/data/megatron/blend_c";
        TokenData td;
        MegatronBlend mb;
        token_data_init(&td, "megatron:" + spec, B, T, 0, 1, 1, 3, VOCAB);
        megatron_blend_init(&mb, spec, B, T, 0, 1, 1, 3, VOCAB);
        bool ok = true;
        for (int k = 0; k < 50 && ok; k++) {
            token_data_next(&td);
            megatron_next_batch(&mb);
            for (int i = 0; i < B * T; i++) ok = ok && td.inputs[i] == mb.inputs[i] && td.targets[i] == mb.targets[i];
        }
        check(ok, "megatron_blend", "50 shuffled batches of \"0.5 a 0.3 b 0.2 c\" equal to megatron_next_batch's");
        token_data_free(&td);
        megatron_blend_free(&mb);
    }
    check_fails_one_line("position_megatron_into_llmc", {"--cross", meg, shard}, "checkpoint was taken reading Megatron data");
    check_fails_one_line("position_llmc_into_megatron", {"--cross", shard, meg}, "checkpoint was taken reading llm.c shards");
    {
        // SFT shards: 12 conversations of 3..5 tokens (at most T + 1), the second half of each in the loss
        std::vector<std::vector<int>> docs;
        std::vector<std::vector<uint8_t>> masks;
        for (int k = 0; k < 12; k++) {
            const int n = 3 + k % 3;
            docs.push_back({});
            masks.push_back({});
            for (int i = 0; i < n; i++) { docs.back().push_back((17 * k + i) % 1000); masks.back().push_back(i >= n / 2); }
        }
        write_sft_shard(DIR + "/sft_000.bin", docs, masks, 1000, T);
        const std::string sft = DIR + "/sft_*.bin";
        for (int pack = 0; pack <= 1; pack++) {
            TokenData td;
            SftLoader sl;
            token_data_init(&td, sft, B, T, 0, 1, 1, 5, VOCAB, pack);
            sft_init(&sl, sft, B, T, 0, 1, 1, 5, VOCAB, pack);
            bool ok = td.sft && !td.megatron && td.positions && token_data_num_batches(&td) == sft_num_batches(&sl);
            for (int k = 0; k < 12 && ok; k++) {
                token_data_next(&td);
                sft_next_batch(&sl);
                for (int i = 0; i < B * T; i++)
                    ok = ok && td.inputs[i] == sl.inputs[i] && td.targets[i] == sl.targets[i] && td.positions[i] == sl.positions[i];
            }
            check(ok, "sft_rows_pack" + std::to_string(pack), "12 shuffled batches equal to sft_next_batch's (inputs, targets with -100, positions)");
            std::string d;
            check(resumes(sft, 1, &d, pack), "sft_resume_pack" + std::to_string(pack), "3 batches after a saved " + d + " identical in a new reader; reset = first batch");
            token_data_free(&td);
            sft_free(&sl);
        }
        check_fails_one_line("sft_without_layout", {"--cross", sft, sft}, "sft_000.bin: header magic: 20250312 is an SFT shard");
        check_fails_one_line("position_sft_into_llmc", {"--cross", sft, shard, "0"}, "checkpoint was taken reading SFT shards, this run reads llm.c shards");
        check_fails_one_line("position_llmc_into_sft", {"--cross", shard, sft, "0"}, "checkpoint was taken reading llm.c shards, this run reads SFT shards");
        check_fails_one_line("position_sft_into_megatron", {"--cross", sft, meg, "1"}, "checkpoint was taken reading SFT shards, this run reads Megatron data");
    }
    check_fails_one_line("megatron_missing", {"--cross", "megatron:" + DIR + "/nope", shard}, DIR + "/nope");
    printf("token_data: %s\n", n_failed ? "FAILED" : "all passed");
    return n_failed ? 1 : 0;
}
