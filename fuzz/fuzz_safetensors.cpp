// libFuzzer target: safetensors_open (llmc/formats/safetensors.h, with its JSON header parser
// llmc/formats/json.h) on arbitrary bytes as one model.safetensors; every tensor it accepts
// is then read (converted to fp32), so a header that lies about offsets, shapes or
// dtypes must be caught before any read.
#include "fuzz_common.h"
#include "../llmc/formats/safetensors.h"

// (a rejected input's streams are closed by fuzz_run: close only after a clean pass)
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        SafeTensors st;
        const std::string path = fuzz_write("model.safetensors", data, size);
        safetensors_open(&st, path);
        int64_t covered = 0;   // an accepted file's tensors tile its data section exactly
        for (const SafeTensorInfo& t : st.tensors) covered += t.end - t.begin;
        FUZZ_CHECK(covered == st.files[0].size - st.files[0].data_start);
        for (const SafeTensorInfo& t : st.tensors) {
            FUZZ_CHECK(t.begin >= 0 && t.begin <= t.end && t.numel >= 0);
            FUZZ_CHECK(safetensors_find(&st, t.name) != nullptr);
            const std::vector<float> v = safetensors_read_f32(&st, t.name);
            FUZZ_CHECK((int64_t)v.size() == t.numel);
        }
        safetensors_close(&st);
        SafeTensors again;
        safetensors_open(&again, fuzz_dir() + "/model.safetensors");
        safetensors_get(&again, "no such tensor");  // fails: the one-line error path
    });
}
