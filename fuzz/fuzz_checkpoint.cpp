// libFuzzer target: the checkpoint readers (llmc/train/checkpoint.h).
// Input byte 0 says what the rest is (fuzz_seeds.h): a model.bin, a state.bin
// or the text of DIR/latest; and whether to fix up the XXH64 header and
// payload checksums before writing the file, so that mutations reach the
// field checks behind them instead of all stopping at a checksum mismatch.
// Then what train_gpt does on --resume / --init-from: read and check the
// headers against a model, stream the payload, resolve DIR/latest, choose the
// checkpoint --resume 1 takes.
#include "fuzz_common.h"
#include "../llmc/train/checkpoint_gpt.h"
#include "fuzz_seeds.h"

static void fix_checksums(std::vector<uint8_t>& b, int flags) {
    if (b.size() < CKPT_HEADER_BYTES) return;
    if (flags & FUZZ_CKPT_FIX_PAYLOAD) {
        const uint64_t s = xxh64(b.data() + CKPT_HEADER_BYTES, b.size() - CKPT_HEADER_BYTES);
        memcpy(b.data() + 40, &s, 8);  // ints 10-11
    }
    if (flags & FUZZ_CKPT_FIX_HEADER) {
        memset(b.data() + 32, 0, 8);  // ints 8-9 count as 0
        const uint64_t s = xxh64(b.data(), CKPT_HEADER_BYTES);
        memcpy(b.data() + 32, &s, 8);
    }
}

static void fuzz_model(const std::string& path) {
    const CkptModelHeader h = ckpt_read_model_header_or_fail(path);
    FUZZ_CHECK(h.n_params > 0 && (h.dtype == CKPT_F32 || h.dtype == CKPT_BF16));
    // as a trainer would: compare with the model being built (fails unless it is the seed's model)
    std::string err;
    const CkptModelInfo want = gpt_ckpt_info(fuzz_tiny_gpt());
    const bool same = ckpt_check_model(h, want, &err);
    FUZZ_CHECK(same || !err.empty());
    if (h.kind == CKPT_KIND_GPT && h.config.size() == want.config.size()) {
        const GPTConfig c = gpt_config_from_ckpt(h);  // what a sampler would build
        (void)c;
    }
    // the payload length was checked against the file's, so this is at most the file's size
    std::vector<float> params((size_t)h.n_params);
    ckpt_read_model_params_or_fail(h, ckpt_sink_to(params.data()));
}

static void fuzz_state(const std::string& path) {
    const CkptStateHeader s = ckpt_read_state_header_or_fail(path);
    FUZZ_CHECK(s.n_params > 0 && s.st.step >= 0 && (s.kind == CKPT_KIND_DIT ? s.st.batch_size : s.st.seq_len) > 0 && s.st.rngs.size() <= CKPT_MAX_RNG);
    // a model.bin this state belongs to
    CkptModelHeader m;
    m.path = fuzz_dir() + "/model.bin";
    m.kind = s.kind;
    m.dtype = s.has_master ? CKPT_BF16 : CKPT_F32;
    m.n_params = s.n_params;
    m.payload_sum = s.model_sum;
    ckpt_check_state_or_fail(s, m);
    const size_t n = (size_t)s.n_params;
    std::vector<float> mom(n), vel(n);
    std::vector<CkptSink> sinks = {ckpt_sink_to(mom.data()), ckpt_sink_to(vel.data())};
    if (s.has_master) sinks.push_back(CkptSink());  // an empty sink skips its array
    ckpt_read_state_arrays_or_fail(s, sinks);
}

static void fuzz_latest(const uint8_t* data, size_t size) {
    const std::string dir = fuzz_dir() + "/ckpt";
    fuzz_mkdir(dir);
    // one complete checkpoint for `latest` to name (the readers only check that the files exist)
    fuzz_mkdir(dir + "/step_00000001");
    fuzz_write("ckpt/step_00000001/model.bin", nullptr, 0);
    fuzz_write("ckpt/step_00000001/state.bin", nullptr, 0);
    fuzz_write("ckpt/latest", data, size);
    ckpt_parse_step_name(std::string((const char*)data, size));
    std::string sd, err, note;
    const bool found = ckpt_find_latest(dir, &sd, &err, &note);
    FUZZ_CHECK(found ? ckpt_is_dir(sd) : !err.empty());
    // --resume 1: the one checkpoint's files are empty, so none verifies: one error line, no choice
    CkptResumeChoice c;
    std::string cerr;
    FUZZ_CHECK(!ckpt_choose_resume(dir, &c, &cerr) && c.dir.empty() && !cerr.empty() && cerr.find('\n') == std::string::npos);
    const std::string resolved = ckpt_resolve_or_fail(dir, "flag --resume");
    FUZZ_CHECK(resolved == dir + "/step_00000001");
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const int flags = data[0];
    std::vector<uint8_t> b(data + 1, data + size);
    return fuzz_run([&] {
        switch (flags & FUZZ_CKPT_KIND_MASK) {
            case 1:
                fix_checksums(b, flags);
                fuzz_state(fuzz_write("state.bin", b.data(), b.size()));
                break;
            case 2:
                fuzz_latest(b.data(), b.size());
                break;
            default:
                fix_checksums(b, flags);
                fuzz_model(fuzz_write("model.bin", b.data(), b.size()));
                break;
        }
    });
}
