// libFuzzer target: megatron_open (llmc/data/megatron_data.h) on arbitrary bytes as P.idx,
// beside a fixed valid P.bin of 4096 uint16-sized tokens; every sequence it accepts
// is read back, so lengths, pointers and document indices that lie about the .bin
// must be caught at open.
#include "fuzz_common.h"
#include "../llmc/data/megatron_data.h"

// (a rejected input's streams are closed by fuzz_run: close only after a clean pass)
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        MegatronIndexed ds;
        static std::string bin;
        if (bin.empty()) {
            std::vector<uint8_t> b(8192);
            for (size_t i = 0; i < b.size(); i++) b[i] = (uint8_t)(i * 7 % 200);   // small values: valid ids in every dtype
            bin = fuzz_write("ds.bin", b.data(), b.size());
        }
        fuzz_write("ds.idx", data, size);
        megatron_open(&ds, fuzz_dir() + "/ds", 65536);
        FUZZ_CHECK(ds.n_tokens >= 0 && ds.cum.size() == ds.seq_lengths.size() + 1);
        for (size_t s = 0; s < ds.seq_pointers.size(); s++)   // aligned, in file order, not overlapping
            FUZZ_CHECK(ds.seq_pointers[s] % ds.elem_size == 0 &&
                       (s == 0 || ds.seq_pointers[s] >= ds.seq_pointers[s - 1] + (int64_t)ds.seq_lengths[s - 1] * ds.elem_size));
        for (size_t s = 0; s < ds.seq_lengths.size() && s < 512; s++) megatron_read_sequence(&ds, (int64_t)s, 65536);
        if (ds.n_tokens > 0) {
            std::vector<int32_t> all((size_t)std::min<int64_t>(ds.n_tokens, 4096));
            megatron_read_tokens(&ds, 0, (int64_t)all.size(), all.data(), 65536);
        }
        megatron_close(&ds);
    });
}
