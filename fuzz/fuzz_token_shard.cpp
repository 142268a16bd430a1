// libFuzzer target: token shard validation and the data loader
// (llmc/data/dataloader.h) on arbitrary bytes as one llm.c .bin shard. A shard it
// accepts must stream batches of in-range ids, and a saved position must
// resume the same stream.
#include "fuzz_common.h"
#include "../llmc/data/dataloader.h"
#include "fuzz_seeds.h"

// frees the loader also when a rejected input unwinds through it (before
// fuzz_run closes the streams left open)
struct LoaderGuard {
    DataLoader d{};
    ~LoaderGuard() { dataloader_free(&d); }
};

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        LoaderGuard g;
        DataLoader& dl = g.d;
        const std::string path = fuzz_write("shard_000.bin", data, size);
        const int B = 2, T = 3;
        dataloader_init(&dl, path, B, T, 0, 1, /*shuffle*/ 1, /*seed*/ 1337, FUZZ_SHARD_VOCAB);
        const long long nb = dataloader_num_batches(&dl);
        FUZZ_CHECK(nb >= 1);
        DataLoaderPosition mid{};
        std::vector<int32_t> want;
        const long long steps = std::min<long long>(nb + 2, 64);  // past an epoch's end when the shard is small
        for (long long s = 0; s < steps; s++) {
            if (s == steps / 2) mid = dataloader_get_position(&dl);
            dataloader_next_batch(&dl);
            for (int i = 0; i < B * T; i++)
                FUZZ_CHECK(dl.inputs[i] >= 0 && dl.inputs[i] < FUZZ_SHARD_VOCAB && dl.targets[i] >= 0 && dl.targets[i] < FUZZ_SHARD_VOCAB);
            if (s >= steps / 2) want.insert(want.end(), dl.inputs, dl.inputs + B * T);
        }
        // back to the position saved halfway: the same batches again
        dataloader_set_position(&dl, mid);
        std::vector<int32_t> got;
        for (long long s = steps / 2; s < steps; s++) {
            dataloader_next_batch(&dl);
            got.insert(got.end(), dl.inputs, dl.inputs + B * T);
        }
        FUZZ_CHECK(got == want);
    });
}
