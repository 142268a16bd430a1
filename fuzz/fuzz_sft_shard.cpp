// libFuzzer target: SFT shard validation and its row loader (llmc/data/sft_data.h) on
// arbitrary bytes as one shard. A shard it accepts must give rows of in-range inputs,
// targets in range or SFT_IGNORE, positions restarting at 0 and counting up, segments
// covering the batch, for one conversation a row and packed; and a saved position must
// resume the same stream.
#include "fuzz_common.h"
#include "../llmc/data/sft_data.h"
#include "fuzz_seeds.h"

struct SftGuard {
    SftLoader s;
    ~SftGuard() { sft_free(&s); }
};

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        const std::string path = fuzz_write("sft_000.bin", data, size);
        const int B = 2, T = 8;
        for (int pack = 0; pack < 2; pack++) {
            SftGuard g;
            SftLoader& sl = g.s;
            sft_init(&sl, path, B, T, 0, 1, /*shuffle*/ 1, /*seed*/ 1337, FUZZ_SHARD_VOCAB, pack);
            const long long nb = sft_num_batches(&sl);
            FUZZ_CHECK(nb >= 1);
            DataLoaderPosition mid{};
            std::vector<int32_t> want;
            const long long steps = std::min<long long>(nb + 2, 32);
            for (long long s = 0; s < steps; s++) {
                if (s == steps / 2) mid = sft_get_position(&sl);
                sft_next_batch(&sl);
                int64_t counted = 0;
                for (int i = 0; i < B * T; i++) {
                    FUZZ_CHECK(sl.inputs[i] >= 0 && sl.inputs[i] < FUZZ_SHARD_VOCAB);
                    FUZZ_CHECK(sl.targets[i] == SFT_IGNORE || (sl.targets[i] >= 0 && sl.targets[i] < FUZZ_SHARD_VOCAB));
                    FUZZ_CHECK(sl.positions[i] == 0 || (i % T > 0 && sl.positions[i] == sl.positions[i - 1] + 1));
                    counted += sl.targets[i] != SFT_IGNORE;
                }
                FUZZ_CHECK(counted == sl.n_targets && sl.n_targets_global == sl.n_targets && sl.cu_seqlens.front() == 0 && sl.cu_seqlens.back() == B * T);
                for (size_t k = 1; k < sl.cu_seqlens.size(); k++) FUZZ_CHECK(sl.cu_seqlens[k] > sl.cu_seqlens[k - 1]);
                if (s >= steps / 2) { want.insert(want.end(), sl.inputs.begin(), sl.inputs.end()); want.insert(want.end(), sl.targets.begin(), sl.targets.end()); }
            }
            sft_set_position(&sl, mid);
            std::vector<int32_t> got;
            for (long long s = steps / 2; s < steps; s++) {
                sft_next_batch(&sl);
                got.insert(got.end(), sl.inputs.begin(), sl.inputs.end());
                got.insert(got.end(), sl.targets.begin(), sl.targets.end());
            }
            FUZZ_CHECK(got == want);
        }
    });
}
