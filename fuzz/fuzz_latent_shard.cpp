// libFuzzer target: latent shard validation and the latent loader
// (llmc/data/latent_data.h) on arbitrary bytes as one .lat shard. A shard it
// accepts must read back every sample with finite values and consistent shapes.
#include "fuzz_common.h"
#include "../llmc/data/latent_data.h"
#include "fuzz_seeds.h"

// frees the loader also when a rejected input unwinds through it (before
// fuzz_run closes the streams left open)
struct LoaderGuard {
    LatentLoader d{};
    ~LoaderGuard() { latent_loader_free(&d); }
};

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        LoaderGuard g;
        LatentLoader& ll = g.d;
        const std::string path = fuzz_write("shard_000.lat", data, size);
        // channels from the shard (<= 0), as a tool inspecting unknown data would
        latent_loader_init(&ll, path, /*B*/ 1, 0, 1, /*shuffle*/ 1, /*seed*/ 7, 0, 0, FUZZ_MAX_TEXT_LEN);
        const int64_t n = latent_loader_num_samples(&ll);
        FUZZ_CHECK(n >= 1 && ll.C >= 1 && ll.D >= 1);
        LatentBatch b;
        for (int64_t k = 0; k < std::min<int64_t>(n, 64); k++) {
            latent_loader_read(&ll, &k, 1, &b);
            FUZZ_CHECK(b.B == 1 && b.T[0] >= 1 && b.H[0] >= 1 && b.W[0] >= 1);
            FUZZ_CHECK(b.latent_offset[1] == (int64_t)ll.C * b.T[0] * b.H[0] * b.W[0] && (int64_t)b.latents.size() == b.latent_offset[1]);
            FUZZ_CHECK(b.text_len[0] >= 1 && b.text_len[0] <= FUZZ_MAX_TEXT_LEN && (int64_t)b.text.size() == (int64_t)b.text_len[0] * ll.D);
            FUZZ_CHECK(b.clean_frames[0] >= 0 && b.clean_frames[0] < b.T[0]);
            for (float x : b.text) FUZZ_CHECK(std::isfinite(x));
        }
        for (int s = 0; s < 4; s++) latent_loader_next(&ll, &b);
        const LatentLoaderPosition pos = latent_loader_get_position(&ll);
        latent_loader_set_position(&ll, pos);
    });
}
