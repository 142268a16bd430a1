// libFuzzer target: read_dataset_meta (llmc/data/dataset.h) on arbitrary bytes as DIR/meta.txt.
#include "fuzz_common.h"
#include "../llmc/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        const std::string dir = fuzz_dir() + "/data";
        fuzz_mkdir(dir);
        fuzz_write("data/meta.txt", data, size);
        DatasetMeta m;
        FUZZ_CHECK(read_dataset_meta(dir, &m));
        FUZZ_CHECK(m.vocab_size > 0 && m.train_bytes > 0 && m.train_tokens > 0 && m.val_bytes > 0 && m.val_tokens > 0);
        FUZZ_CHECK(dataset_bytes_per_token(dir) > 0.0);
    });
}
