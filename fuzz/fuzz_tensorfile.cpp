// libFuzzer target: tensorfile_read (llmc/formats/tensorfile.h) on arbitrary bytes as a .mgt file.
#include "fuzz_common.h"
#include "../llmc/formats/tensorfile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        const std::string path = fuzz_write("tensors.mgt", data, size);
        const TensorFile tf = tensorfile_read(path);
        for (const auto& kv : tf.tensors) {
            const NamedTensor& t = kv.second;
            FUZZ_CHECK((t.dtype == 0 ? t.f.size() : t.i.size()) == t.numel());
            if (t.dtype == 0) {
                const std::vector<float>& x = tf.f32(kv.first);
                rel_error(x.data(), x.data(), x.size());
            } else {
                tf.i32(kv.first);
            }
        }
        tf.get("no such tensor");  // fails: the one-line error path
    });
}
