/*
Tests of llmc/train/checkpoint.h (the checkpoint format, its atomic writer and its
validating readers) on small checkpoints written into test/tmp/checkpoint/:
XXH64 against published vectors, bf16 rounding, round trips (float32 and
bfloat16 model files, master and extra arrays, every state field), the header
at its documented offsets, dit (kind 2) checkpoints (round trip, the config
field list, a mismatch of each field named, gpt and dit files given to the
other kind's loader, truncation, flipped checksums), every corruption a reader must reject with exit 1
and one stderr line naming the file and the field (checked on a child: this
binary in a child mode), `latest` resolution, keep-last-K / keep-every-M
deletion, and a full disk: a write cut short by RLIMIT_FSIZE (always) and by a
small tmpfs (where this process may mount one, i.e. as root) must fail with one
line naming the file and the error, and leave `latest` and the previous
checkpoint loadable; and kill -9 at random moments (12 trials, most of them
inside a write) of a child that saves back to back, continuing from `latest`
each time: `latest` must always load whole with exactly its step's contents.

  make test/test_checkpoint && ./test/test_checkpoint
  child modes:
    --load PATH N_LAYER          load a whole checkpoint (dir, or a root with latest) for the test model
    --load-model PATH N_LAYER    read and check only a model.bin
    --load-dit, --load-model-dit the same for the test dit model
    --config-gpt PATH, --config-dit PATH   rebuild a config from a model.bin (gpt/dit_config_from_ckpt)
    --save DIR STEP FSIZE        save the test checkpoint STEP into DIR (FSIZE > 0: RLIMIT_FSIZE bytes, SIGXFSZ ignored)
    --save-dit DIR rf|edm        save a test dit checkpoint (step 1) trained with that objective (test_bad_input.sh uses it)
    --objective-dit PATH rf|edm  check a model.bin's objective against a run's (dit_check_ckpt_objective_or_fail)
    --save-loop DIR              save steps latest+1, +2, ... into DIR until killed (keep the last 2)
*/
#include <csignal>
#include <dirent.h>
#include <ctime>
#include <string>
#include <sys/mount.h>
#include <sys/resource.h>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/train/run_control.h"
#include "../llmc/core/rand.h"
#include "../llmc/train/checkpoint.h"
#include "../llmc/train/checkpoint_gpt.h"
#include "../llmc/train/checkpoint_dit.h"
#include "checkpoint_test_util.h"

static const std::string ROOT = "test/tmp/checkpoint";

// the two checks after a failed save: latest unchanged, the previous checkpoint whole, nothing left over
static void check_intact(const std::string& name, const std::string& dir, int64_t prev, int64_t failed, const CkptModelInfo& info) {
    Arrays got;
    CkptState st;
    std::string err, sd;
    const bool found = ckpt_find_latest(dir, &sd, &err);
    const bool loads = found && load_all(sd, info, &got, &st, nullptr, &err);
    const Arrays want = make_arrays((size_t)info.n_params, (uint64_t)prev);
    const std::string fdir = dir + "/" + ckpt_step_name(failed);
    check(found && sd == dir + "/" + ckpt_step_name(prev) && loads && st.step == prev && same_bits(got.p, want.p) && same_bits(got.v, want.v),
          name + "_previous_intact", "latest still names " + ckpt_step_name(prev) + " and it loads bit-exact" + (err.empty() ? "" : ": " + err));
    check(!file_exists(fdir) && !file_exists(dir + "/latest.tmp"), name + "_no_leftovers",
          "no " + ckpt_step_name(failed) + " directory and no .tmp files remain");
}

int main(int argc, char** argv) {
    child_err_path = ROOT + "/child.err";
    // ---- child modes
    const std::string mode = argc > 1 ? argv[1] : "";
    if (argc == 3 && (mode == "--config-gpt" || mode == "--config-dit")) {
        const CkptModelHeader mh = ckpt_read_model_header_or_fail(argv[2]);
        if (mode == "--config-gpt") gpt_config_from_ckpt(mh);
        else dit_config_from_ckpt(mh);
        return 0;
    }
    if (argc == 4 && (mode == "--load" || mode == "--load-model" || mode == "--load-dit" || mode == "--load-model-dit")) {
        const int n_layer = (int)parse_int_or_fail(argv[3], "N_LAYER");
        const bool dit = mode == "--load-dit" || mode == "--load-model-dit";
        const CkptModelInfo info = dit ? dit_ckpt_info(test_dit_config(n_layer)) : gpt_ckpt_info(test_config(n_layer));
        if (mode == "--load-model" || mode == "--load-model-dit") {
            CkptModelHeader mh = ckpt_read_model_header_or_fail(argv[2]);
            ckpt_check_model_or_fail(mh, info);
            std::vector<float> p((size_t)mh.n_params);
            ckpt_read_model_params_or_fail(mh, ckpt_sink_to(p.data()));
            return 0;
        }
        const std::string sd = ckpt_resolve_or_fail(argv[2], "--load");
        CkptModelHeader mh = ckpt_read_model_header_or_fail(sd + "/model.bin");
        ckpt_check_model_or_fail(mh, info);
        CkptStateHeader sh = ckpt_read_state_header_or_fail(sd + "/state.bin");
        ckpt_check_state_or_fail(sh, mh);
        std::vector<float> p((size_t)mh.n_params), m(p.size()), v(p.size());
        ckpt_read_model_params_or_fail(mh, ckpt_sink_to(p.data()));
        ckpt_read_state_arrays_or_fail(sh, {ckpt_sink_to(m.data()), ckpt_sink_to(v.data())});
        return 0;
    }
    if (argc == 5 && std::string(argv[1]) == "--save") {
        const int64_t step = parse_int_or_fail(argv[3], "STEP"), fsize = parse_int_or_fail(argv[4], "FSIZE");
        if (fsize > 0) {
            signal(SIGXFSZ, SIG_IGN);  // a write past the limit then returns EFBIG instead of killing us
            struct rlimit rl = {(rlim_t)fsize, (rlim_t)fsize};
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) fail("setrlimit failed (%s)", strerror(errno));
        }
        const CkptModelInfo info = gpt_ckpt_info(test_config(2));
        const Arrays a = make_arrays((size_t)info.n_params, (uint64_t)step);
        ckpt_save_or_fail(make_write(argv[2], step, info, a, 3, 0));
        return 0;
    }
    if (argc == 4 && (mode == "--save-dit" || mode == "--objective-dit")) {
        DiTObjective o;
        o.kind = dit_objective_parse_or_fail(argv[3]);
        if (mode == "--objective-dit") {
            dit_check_ckpt_objective_or_fail(ckpt_read_model_header_or_fail(argv[2]), o);
            return 0;
        }
        const CkptModelInfo info = dit_ckpt_info(test_dit_config(2), o);
        ckpt_save_or_fail(make_write(argv[2], 1, info, make_arrays((size_t)info.n_params, 5), 0, 0));
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--save-loop") {
        // saves forever, as a training run that checkpoints every step would: it continues
        // from DIR's latest checkpoint (as --resume 1 does), keeps the last 2; killed from outside
        const CkptModelInfo info = gpt_ckpt_info(kill_test_config());
        std::string sd, err;
        int64_t step = ckpt_find_latest(argv[2], &sd, &err) ? ckpt_parse_step_name(sd.substr(sd.rfind('/') + 1)) : 0;
        for (;;) {
            step++;
            const Arrays a = kill_arrays((size_t)info.n_params, step);
            ckpt_save_or_fail(make_write(argv[2], step, info, a, 2, 0));
        }
    }
    if (argc != 1)
        fail("usage: %s [--load[-dit] PATH N_LAYER | --load-model[-dit] PATH N_LAYER | --config-gpt/--config-dit PATH | --save DIR STEP FSIZE]", argv[0]);
    umount2((ROOT + "/tmpfs").c_str(), MNT_DETACH);  // a leftover mount of an interrupted run
    rm_tree(ROOT);
    make_parent_dirs(ROOT + "/x");

    // ---- XXH64 against published vectors, and streaming in pieces = one shot
    {
        const std::string spam = "Nobody inspects the spammish repetition", fox = "The quick brown fox jumps over the lazy dog";
        const std::string a32(32, 'a'), hex32 = "0123456789abcdef0123456789abcdef";
        const bool ok = xxh64("", 0) == 0xEF46DB3751D8E999ull && xxh64("a", 1) == 0xD24EC4F1A98C6E5Bull &&
                        xxh64("abc", 3) == 0x44BC2CF5AD770999ull && xxh64(spam.data(), spam.size()) == 0xFBCEA83C8A378BF1ull &&
                        xxh64(fox.data(), fox.size()) == 0x0B242D361FDA71BCull && xxh64(a32.data(), 32) == 0x856E843298F99AD7ull &&
                        xxh64(hex32.data(), 32) == 0x642A94958E71E6C5ull;
        check(ok, "xxh64_vectors", "7 published XXH64 vectors (0, 1, 3, 32, 39 and 43 bytes)");
        std::string buf(1000, 0);
        Rng r;
        rng_seed(&r, 3);
        for (char& c : buf) c = (char)rng_u32(&r);
        const uint64_t one = xxh64(buf.data(), buf.size());
        bool same = true;
        for (int trial = 0; trial < 50; trial++) {
            Xxh64 s;
            xxh64_init(&s);
            size_t off = 0;
            while (off < buf.size()) {
                const size_t k = std::min(buf.size() - off, (size_t)(rng_u32(&r) % 70));
                xxh64_update(&s, buf.data() + off, k);
                off += k;
            }
            if (xxh64_digest(&s) != one) same = false;
        }
        check(same, "xxh64_streaming", "50 random splits of 1000 bytes hash like one piece");
    }

    // ---- bf16 rounding (what CUDA's __float2bfloat16 does: nearest, ties to even)
    {
        auto bits = [](uint32_t u) { float f; memcpy(&f, &u, 4); return f; };
        const bool ok = ckpt_f32_to_bf16(1.0f) == 0x3F80 && ckpt_f32_to_bf16(bits(0x3F808000)) == 0x3F80 &&
                        ckpt_f32_to_bf16(bits(0x3F818000)) == 0x3F82 && ckpt_f32_to_bf16(bits(0x3F808001)) == 0x3F81 &&
                        ckpt_f32_to_bf16(-2.0f) == 0xC000 && ckpt_f32_to_bf16(INFINITY) == 0x7F80 &&
                        std::isnan(ckpt_bf16_to_f32(ckpt_f32_to_bf16(NAN))) && ckpt_bf16_to_f32(0x3F80) == 1.0f;
        check(ok, "bf16_rounding", "round to nearest even, inf and NaN kept");
    }

    const GPTConfig cfg = test_config(2);
    const CkptModelInfo info = gpt_ckpt_info(cfg);
    const size_t n = (size_t)info.n_params;
    check(info.n_params == 6736 && info.config.size() == 19 && info.n_tensors == 8, "test_model", str(info.n_params) + " parameters, 19 config fields, 8 tensors");

    // ---- round trip, float32 model
    const std::string rt = ROOT + "/rt";
    const Arrays a10 = make_arrays(n, 10);
    {
        std::string sd, err;
        const bool saved = ckpt_save(make_write(rt, 10, info, a10), &sd, &err);
        check(saved && sd == rt + "/step_00000010", "save", saved ? sd : err);
        check(ckpt_read_latest_name(rt) == "step_00000010", "latest_written", "latest = '" + ckpt_read_latest_name(rt) + "'");
        // a run resumed from its own --ckpt-dir has this checkpoint already; one resumed into
        // another directory (re-sharding on another GPU count) saves there even with no step
        CkptFlags f;
        f.ckpt_dir = rt;
        const bool own = ckpt_saved_step_at_start(f, rt + "/step_00000010", 10) == 10 && ckpt_saved_step_at_start(f, rt + "/step_00000010/", 10) == 10;
        f.ckpt_dir = rt + "/../rt";
        const bool own2 = ckpt_saved_step_at_start(f, rt + "/step_00000010", 10) == 10;
        f.ckpt_dir = rt + "_other";
        const bool other = ckpt_saved_step_at_start(f, rt + "/step_00000010", 10) == -1;
        f.ckpt_dir = "";
        const bool none = ckpt_saved_step_at_start(f, rt + "/step_00000010", 10) == -1 && ckpt_saved_step_at_start(f, "", 0) == -1;
        check(own && own2 && other && none, "saved_step_at_start",
              "resumed in its own --ckpt-dir (also through ../ and a trailing /): saved at that step; elsewhere or no --ckpt-dir: not yet");
        Arrays got;
        CkptState st;
        CkptModelHeader mh;
        const bool ok = load_all(sd, info, &got, &st, &mh, &err);
        const CkptState want = make_state(10);
        check(ok && same_bits(got.p, a10.p) && same_bits(got.m, a10.m) && same_bits(got.v, a10.v), "roundtrip_arrays",
              ok ? "params, m, v bit-identical (incl. -0, a denormal, FLT_MAX, inf)" : err);
        const bool st_ok = ok && st.step == want.step && st.adam_step == want.adam_step && st.bad_steps == want.bad_steps &&
                           st.seq_len == want.seq_len && st.total_batch_tokens == want.total_batch_tokens && st.sched_steps == want.sched_steps &&
                           st.has_loader == 1 && st.loader_epoch == want.loader_epoch && st.loader_shard == want.loader_shard &&
                           st.loader_sample == want.loader_sample && st.loader_rng == want.loader_rng && st.rngs == want.rngs;
        check(st_ok, "roundtrip_state", "step, adam_step, bad_steps, seq_len, batch, schedule, loader position, 2 RNG states");
        // the documented layout, read with plain offsets
        const std::string mb = read_file_or_fail(sd + "/model.bin"), sb = read_file_or_fail(sd + "/state.bin");
        int32_t h[CKPT_HEADER_INTS], s[CKPT_HEADER_INTS];
        memcpy(h, mb.data(), 1024);
        memcpy(s, sb.data(), 1024);
        const bool layout = h[0] == 20251210 && h[1] == 1 && h[2] == 1 && h[3] == 0 && h[4] == 19 && h[5] == 8 && ckpt_get64(h, 6) == n &&
                            h[16 + 3] == 2 && h[16 + 6] == 16 && mb.size() == 1024 + 4 * n && memcmp(mb.data() + 1024, a10.p.data(), 4 * n) == 0 &&
                            ckpt_get64(h, 10) == xxh64(mb.data() + 1024, mb.size() - 1024) && s[0] == 20251211 && s[2] == 1 && s[3] == 0 &&
                            ckpt_get64(s, 6) == ckpt_get64(h, 10) && ckpt_get64(s, 12) == 10 && s[17] == 64 && s[30] == 2 &&
                            sb.size() == 1024 + 8 * n && memcmp(sb.data() + 1024, a10.m.data(), 4 * n) == 0;
        check(layout, "documented_layout", "header fields at their offsets, payload = raw float32, payload checksum = XXH64 of the bytes after the header");
        const GPTConfig back = gpt_config_from_ckpt(mh);
        const CkptModelInfo info_back = gpt_ckpt_info(back);
        bool same_cfg = info_back.n_params == info.n_params;
        for (size_t i = 0; i < info.config.size(); i++) same_cfg = same_cfg && info_back.config[i].bits == info.config[i].bits;
        check(same_cfg, "config_from_model_file", "a gpt config rebuilt from model.bin alone equals the original");
    }

    // ---- round trip, bfloat16 model with master weights and an extra array (a DiT's EMA)
    {
        const std::string d = ROOT + "/bf16";
        std::string sd, err;
        const bool saved = ckpt_save(make_write(d, 5, info, a10, 0, 0, CKPT_BF16, true), &sd, &err);
        Arrays got;
        const bool ok = saved && load_all(sd, info, &got, nullptr, nullptr, &err);
        bool rounded = ok;
        for (size_t i = 0; ok && i < n; i++) {
            const float r = ckpt_bf16_to_f32(ckpt_f32_to_bf16(a10.p[i]));
            if (memcmp(&r, &got.p[i], 4) != 0) rounded = false;
        }
        check(ok && rounded && same_bits(got.master, a10.master) && same_bits(got.ema, a10.ema) &&
              file_len(sd + "/model.bin") == (long long)(1024 + 2 * n) && file_len(sd + "/state.bin") == (long long)(1024 + 16 * n),
              "roundtrip_bf16_master_extra", ok ? "bf16 weights = rounded fp32, master and EMA arrays exact, file lengths as documented" : err);
    }

    // ---- corrupted model.bin / state.bin: exit 1, one line naming the file and the field
    {
        const std::string good = rt + "/step_00000010";
        const std::string gm = read_file_or_fail(good + "/model.bin"), gs = read_file_or_fail(good + "/state.bin");
        Child c = run_child({"--load", good, "2"});
        check(c.exited && c.code == 0 && c.err.empty(), "child_load_good", "the child mode loads a good checkpoint (exit 0, no output)");
        const std::string bad = ROOT + "/bad";
        make_parent_dirs(bad + "/x");
        auto model_variant = [&](const std::string& name, const std::string& bytes) {
            const std::string p = bad + "/" + name + ".model.bin";
            write_raw(p, bytes);
            return p;
        };
        std::string p;
        p = model_variant("magic", gm); patch_int32(p, 0, 12345);
        check_fails_one_line("model_bad_magic", {"--load-model", p, "2"}, p + ": magic: expected 20251210");
        check_fails_one_line("model_is_state_file", {"--load-model", good + "/state.bin", "2"}, "(a state.bin file)");
        p = model_variant("version", gm); patch_int32(p, 1, 2);
        check_fails_one_line("model_bad_version", {"--load-model", p, "2"}, p + ": version: expected 1, found 2");
        { std::string b = gm; b[200] ^= 0x10; p = model_variant("header_flip", b); }
        check_fails_one_line("model_header_checksum", {"--load-model", p, "2"}, p + ": header checksum");
        p = model_variant("dtype", gm); patch_field(p, 3, 7);
        check_fails_one_line("model_bad_dtype", {"--load-model", p, "2"}, p + ": dtype: expected 0 (float32) or 1 (bfloat16), found 7");
        p = model_variant("kind_range", gm); patch_field(p, 2, 9);
        check_fails_one_line("model_kind_out_of_range", {"--load-model", p, "2"}, p + ": model kind: expected 1 (gpt) or 2 (dit), found 9");
        p = model_variant("nconfig", gm); patch_field(p, 4, 999);
        check_fails_one_line("model_bad_n_config", {"--load-model", p, "2"}, p + ": n_config: expected 0..240, found 999");
        p = model_variant("nparams", gm); patch_field64(p, 6, -3);
        check_fails_one_line("model_bad_n_params", {"--load-model", p, "2"}, p + ": n_params: expected > 0");
        for (long long cut : {0LL, 100LL, 1023LL}) {
            p = model_variant("cut" + str(cut), gm.substr(0, cut));
            check_fails_one_line("model_truncated_at_" + str(cut), {"--load-model", p, "2"}, p + ": file is " + str(cut) + " bytes, shorter than the 1024-byte header (truncated)");
        }
        for (long long cut : {1024LL, 1031LL, (long long)gm.size() - 1}) {
            p = model_variant("cut" + str(cut), gm.substr(0, cut));
            check_fails_one_line("model_truncated_at_" + str(cut), {"--load-model", p, "2"}, p + ": file length: n_params 6736 needs 27968 bytes, found " + str(cut) + " (truncated)");
        }
        p = model_variant("trailing", gm + "xyz");
        check_fails_one_line("model_trailing_bytes", {"--load-model", p, "2"}, p + ": file length: n_params 6736 needs 27968 bytes, found 27971 (extra bytes after the payload)");
        { std::string b = gm; b[5000] ^= 0x01; p = model_variant("payload_flip", b); }
        check_fails_one_line("model_payload_checksum", {"--load-model", p, "2"}, p + ": payload checksum");
        p = model_variant("config", gm);
        check_fails_one_line("model_config_mismatch", {"--load-model", p, "3"}, p + ": config n_layer is 2, the model has 3");
        {
            // a float field, and the model kind: files written for another model
            GPTConfig other = cfg;
            other.rope_theta = 500000.0f;
            const Arrays a = make_arrays(n, 1);
            ckpt_save_or_fail(make_write(bad + "/theta", 1, gpt_ckpt_info(other), a));
            check_fails_one_line("model_config_float_mismatch", {"--load-model", bad + "/theta/step_00000001/model.bin", "2"},
                                 "config rope_theta is 500000, the model has 10000");
            CkptModelInfo dit = info;
            dit.kind = CKPT_KIND_DIT;
            ckpt_save_or_fail(make_write(bad + "/dit", 1, dit, a));
            check_fails_one_line("model_wrong_kind", {"--load-model", bad + "/dit/step_00000001/model.bin", "2"},
                                 "step_00000001/model.bin: model kind is dit (2), the model is gpt (1)");
        }
        check_fails_one_line("model_missing", {"--load-model", bad + "/nope.bin", "2"}, bad + "/nope.bin: cannot open (No such file or directory)");
        check_fails_one_line("model_is_directory", {"--load-model", bad, "2"}, bad + ": not a regular file");

        // state.bin: each variant in a checkpoint directory with the good model.bin
        auto state_variant = [&](const std::string& name, const std::string& bytes) {
            const std::string d = bad + "/st_" + name;
            make_parent_dirs(d + "/x");
            write_raw(d + "/model.bin", gm);
            write_raw(d + "/state.bin", bytes);
            return d;
        };
        std::string d;
        d = state_variant("magic", gs); patch_int32(d + "/state.bin", 0, CKPT_MODEL_MAGIC);
        check_fails_one_line("state_bad_magic", {"--load", d, "2"}, d + "/state.bin: magic: expected 20251211 (a mega.c training-state checkpoint (state.bin)), found 20251210 (a model.bin file)");
        d = state_variant("version", gs); patch_int32(d + "/state.bin", 1, 0);
        check_fails_one_line("state_bad_version", {"--load", d, "2"}, d + "/state.bin: version: expected 1, found 0");
        d = state_variant("cut", gs.substr(0, gs.size() - 4));
        check_fails_one_line("state_truncated", {"--load", d, "2"}, d + "/state.bin: file length: n_params 6736 needs 54912 bytes, found 54908 (truncated)");
        d = state_variant("cut_header", gs.substr(0, 512));
        check_fails_one_line("state_truncated_header", {"--load", d, "2"}, d + "/state.bin: file is 512 bytes, shorter than the 1024-byte header");
        d = state_variant("trailing", gs + std::string(8, '\0'));
        check_fails_one_line("state_trailing_bytes", {"--load", d, "2"}, "(extra bytes after the payload)");
        d = state_variant("payload", gs); { std::string b = gs; b[30000] ^= 0x40; write_raw(d + "/state.bin", b); }
        check_fails_one_line("state_payload_checksum", {"--load", d, "2"}, d + "/state.bin: payload checksum");
        d = state_variant("step", gs); patch_field64(d + "/state.bin", 12, -1);
        check_fails_one_line("state_bad_step", {"--load", d, "2"}, d + "/state.bin: step: expected >= 0, found -1");
        d = state_variant("adam", gs); patch_field64(d + "/state.bin", 14, 11);
        check_fails_one_line("state_bad_adam_step", {"--load", d, "2"}, d + "/state.bin: adam_step: expected 0..step 10, found 11");
        d = state_variant("seq", gs); patch_field(d + "/state.bin", 17, 0);
        check_fails_one_line("state_bad_seq_len", {"--load", d, "2"}, d + "/state.bin: seq_len: expected > 0, found 0");
        d = state_variant("shard", gs); patch_field64(d + "/state.bin", 24, -2);
        check_fails_one_line("state_bad_loader_shard", {"--load", d, "2"}, d + "/state.bin: loader shard: expected >= 0, found -2");
        d = state_variant("rng", gs); patch_field64(d + "/state.bin", CKPT_RNG_AT + 2, 0);
        check_fails_one_line("state_zero_rng", {"--load", d, "2"}, d + "/state.bin: rng 1 state: expected non-zero, found 0");
        d = state_variant("nrng", gs); patch_field(d + "/state.bin", 30, 9);
        check_fails_one_line("state_bad_n_rng", {"--load", d, "2"}, d + "/state.bin: n_rng: expected 0..8, found 9");
        {
            // model.bin and state.bin of two different checkpoints
            ckpt_save_or_fail(make_write(bad + "/other", 20, info, make_arrays(n, 20)));
            d = state_variant("mixed", read_file_or_fail(bad + "/other/step_00000020/state.bin"));
            check_fails_one_line("state_of_another_checkpoint", {"--load", d, "2"}, d + "/state.bin: model checksum: expected");
        }
        d = state_variant("missing", gs); unlink((d + "/state.bin").c_str());
        check_fails_one_line("state_missing", {"--load", d, "2"}, d + "/state.bin is missing");
    }

    // ---- dit checkpoints (kind 2): the same writer and readers with dit_ckpt_info
    {
        const DiTConfig dc = test_dit_config(2);
        const CkptModelInfo dinfo = dit_ckpt_info(dc);
        const size_t dn = (size_t)dinfo.n_params;
        const std::vector<ParamTensor> dlayout = dit_param_layout(dc);
        check(dinfo.kind == CKPT_KIND_DIT && dinfo.n_params == (int64_t)layout_numel(dlayout) && dinfo.n_tensors == 42 && dlayout.size() == 42,
              "dit_test_model", str(dinfo.n_params) + " parameters, 42 tensors");
        // the documented field list, in order
        const char* names[] = {"d_model", "n_layer", "n_head", "head_dim", "mlp_ratio", "ffn_hidden", "in_channels", "out_channels",
                               "caption_channels", "patch_t", "patch_h", "patch_w", "max_text_len", "norm_eps", "rope_theta",
                               "rope_max_t", "rope_max_hw", "freq_dim", "freq_max_period"};
        const int n_fields = (int)(sizeof names / sizeof names[0]);
        bool names_ok = (int)dinfo.config.size() == n_fields;
        for (int i = 0; names_ok && i < n_fields; i++) {
            const bool is_float = !strcmp(names[i], "mlp_ratio") || !strcmp(names[i], "norm_eps") || !strcmp(names[i], "rope_theta") ||
                                  !strcmp(names[i], "freq_max_period");
            names_ok = !strcmp(dinfo.config[i].name, names[i]) && dinfo.config[i].is_float == is_float;
        }
        check(names_ok, "dit_config_fields", "19 fields in the order llmc/train/checkpoint.h documents, 4 of them float");

        // round trip: a dit model and training state (B 4, a latent-loader position over 96 samples, t_rng and aug_rng)
        const std::string d = ROOT + "/dit";
        const Arrays da = make_arrays(dn, 77);
        CkptWrite w = make_write(d, 30, dinfo, da, 2, 0);
        CkptState& ws = w.state;
        ws.batch_size = 4; ws.total_batch_samples = 4; ws.sched_steps = 3600;
        ws.loader_epoch = 3; ws.loader_samples = 96; ws.loader_sample = 40; ws.loader_rng = 0x0123456789ABCDEFull;
        ws.rngs = {0x1111222233334444ull, 0x5555666677778888ull};
        std::string sd, err;
        const bool saved = ckpt_save(w, &sd, &err);
        Arrays got;
        CkptState st;
        CkptModelHeader mh;
        const bool ok = saved && load_all(sd, dinfo, &got, &st, &mh, &err);
        check(ok && same_bits(got.p, da.p) && same_bits(got.m, da.m) && same_bits(got.v, da.v), "dit_roundtrip_arrays",
              ok ? "dit params, m, v bit-identical" : err);
        check(ok && st.step == 30 && st.adam_step == 29 && st.batch_size == 4 && st.total_batch_samples == 4 && st.sched_steps == 3600 &&
              st.has_loader == 1 && st.loader_epoch == 3 && st.loader_samples == 96 && st.loader_sample == 40 &&
              st.loader_rng == 0x0123456789ABCDEFull && st.rngs == ws.rngs && st.bad_steps == 1,
              "dit_roundtrip_state", "step, AdamW step, batch, schedule, latent-loader position, t_rng and aug_rng");
        {
            // the dit's own fields sit in the slots the gpt's seq_len, total_batch_tokens and loader shard use,
            // where checkpoints written before they had names keep them
            const std::string sb = ok ? read_file_or_fail(sd + "/state.bin") : std::string(1024, '\0');
            int32_t sh[CKPT_HEADER_INTS];
            memcpy(sh, sb.data(), 1024);
            check(ok && sh[17] == 4 && ckpt_get64(sh, 18) == 4 && ckpt_get64(sh, 24) == 96, "dit_state_slots",
                  "batch_size at [17], total_batch_samples at [18-19], loader samples at [24-25]");
        }
        const std::string mb = ok ? read_file_or_fail(sd + "/model.bin") : std::string(1024, '\0');
        int32_t h[CKPT_HEADER_INTS];
        memcpy(h, mb.data(), 1024);
        float ratio, period;
        memcpy(&ratio, &h[16 + 4], 4);
        memcpy(&period, &h[16 + 18], 4);
        check(ok && h[2] == 2 && h[4] == 19 && h[5] == 42 && ckpt_get64(h, 6) == dn && h[16 + 0] == 24 && h[16 + 1] == 2 && h[16 + 3] == 12 &&
              ratio == 2.0f && h[16 + 5] == 48 && h[16 + 17] == 16 && period == 2000.0f && mb.size() == 1024 + 4 * dn,
              "dit_documented_layout", "kind 2, 19 config fields at 16+ (d_model, n_layer, head_dim, mlp_ratio bits, ffn_hidden, freq_dim, freq_max_period bits), 42 tensors");
        bool same_cfg = ok;
        if (ok) {
            const CkptModelInfo back = dit_ckpt_info(dit_config_from_ckpt(mh));
            same_cfg = back.n_params == dinfo.n_params && back.n_tensors == dinfo.n_tensors;
            for (int i = 0; i < n_fields; i++) same_cfg = same_cfg && back.config[i].bits == dinfo.config[i].bits;
        }
        check(same_cfg, "dit_config_from_model_file", "a dit config rebuilt from model.bin alone equals the original");
        Child c = run_child({"--load-dit", sd, "2"});
        check(c.exited && c.code == 0 && c.err.empty(), "dit_child_load_good", "the dit child mode loads a good dit checkpoint");

        // a config mismatch of each field, named with both values: the model differs from the file in field i only
        // (built by dit_config_from_ckpt from the file's fields with field i changed, so the mapping is checked too)
        int named = 0;
        std::string first_bad;
        for (int i = 0; ok && i < n_fields; i++) {
            CkptModelHeader changed = mh;
            const CkptField& f = dinfo.config[i];
            float fv;
            memcpy(&fv, &f.bits, 4);
            const float fv2 = fv * 2.0f;
            if (f.is_float) memcpy(&changed.config[i], &fv2, 4);
            else changed.config[i] = f.bits + 1;
            const CkptModelInfo other = dit_ckpt_info(dit_config_from_ckpt(changed));
            char want[256];
            if (f.is_float) snprintf(want, sizeof want, "%s: config %s is %.9g, the model has %.9g", mh.path.c_str(), f.name, fv, fv2);
            else snprintf(want, sizeof want, "%s: config %s is %d, the model has %d", mh.path.c_str(), f.name, f.bits, f.bits + 1);
            std::string e;
            const bool rejected = !ckpt_check_model(mh, other, &e);
            if (rejected && e == want) named++;
            else if (first_bad.empty()) first_bad = std::string(f.name) + ": '" + e + "', expected '" + want + "'";
        }
        check(named == n_fields, "dit_config_mismatch_each_field",
              first_bad.empty() ? "each of the 19 fields changed alone is named with the file's and the model's value" : first_bad);
        check_fails_one_line("dit_config_mismatch_child", {"--load-dit", sd, "3"}, sd + "/model.bin: config n_layer is 2, the model has 3");

        // the objective (llmc/model/dit_objective.h): rf adds no field (this file, and every one written before
        // EDM, reads as rf); edm adds objective = 1 and edm_sigma_data; a run with the other objective is refused
        {
            DiTObjective edm;
            edm.kind = DIT_OBJECTIVE_EDM;
            edm.sigma_data = 0.75f;
            const CkptModelInfo einfo = dit_ckpt_info(dc, edm);
            const size_t ne = einfo.config.size();
            check(ne == 21 && !strcmp(einfo.config[19].name, "objective") && einfo.config[19].bits == 1 && !einfo.config[19].is_float &&
                  !strcmp(einfo.config[20].name, "edm_sigma_data") && einfo.config[20].is_float && einfo.n_params == dinfo.n_params,
                  "dit_edm_fields", "edm: 21 fields, objective (int, 1) and edm_sigma_data (float) after the 19");
            const DiTObjective from_rf = ok ? dit_objective_from_ckpt(mh) : edm;
            check(from_rf.kind == DIT_OBJECTIVE_RF, "dit_rf_file_reads_rf", "a 19-field dit model.bin is rectified flow");
            const std::string ed = ROOT + "/dit_edm";
            std::string esd, eerr;
            CkptModelHeader emh;
            Arrays eg;
            CkptState est;
            CkptWrite ew = make_write(ed, 5, einfo, da, 0, 0);
            ew.state.batch_size = 4; ew.state.total_batch_samples = 4;
            const bool eok = ckpt_save(ew, &esd, &eerr) && load_all(esd, einfo, &eg, &est, &emh, &eerr);
            const DiTObjective back = eok ? dit_objective_from_ckpt(emh) : DiTObjective();
            bool cfg_same = eok;
            if (eok) {
                const CkptModelInfo rebuilt = dit_ckpt_info(dit_config_from_ckpt(emh), back);
                cfg_same = rebuilt.config.size() == ne;
                for (size_t i = 0; cfg_same && i < ne; i++) cfg_same = rebuilt.config[i].bits == einfo.config[i].bits;
            }
            check(eok && back.kind == DIT_OBJECTIVE_EDM && back.sigma_data == 0.75f && cfg_same && same_bits(eg.p, da.p), "dit_edm_roundtrip",
                  eok ? "an edm model.bin reads back as edm with its sigma_data, and its config rebuilds" : eerr);
            std::string e1, e2;
            const bool refused = eok && !ckpt_check_model(emh, dinfo, &e1) && !ckpt_check_model(mh, einfo, &e2);
            check(refused, "dit_objective_fields_differ", "the generic check refuses either way too: '" + e1 + "'");
            const std::string emb = esd + "/model.bin", rmb = sd + "/model.bin";
            check_fails_one_line("dit_edm_file_rf_run", {"--objective-dit", emb, "rf"},
                                 emb + ": the weights were trained with --objective edm, this run has --objective rf");
            check_fails_one_line("dit_rf_file_edm_run", {"--objective-dit", rmb, "edm"},
                                 rmb + ": the weights were trained with --objective rf, this run has --objective edm");
            Child same_e = run_child({"--objective-dit", emb, "edm"}), same_r = run_child({"--objective-dit", rmb, "rf"});
            check(same_e.exited && same_e.code == 0 && same_r.exited && same_r.code == 0, "dit_objective_same_passes",
                  "each file passes with its own objective");
        }

        // the wrong kind: a gpt checkpoint given to the dit loader, a dit one to the gpt loader, and to the config readers
        const std::string gsd = rt + "/step_00000010";
        check_fails_one_line("gpt_file_to_dit_loader", {"--load-dit", gsd, "2"}, gsd + "/model.bin: model kind is gpt (1), the model is dit (2)");
        check_fails_one_line("dit_file_to_gpt_loader", {"--load", sd, "2"}, sd + "/model.bin: model kind is dit (2), the model is gpt (1)");
        check_fails_one_line("gpt_file_to_dit_config", {"--config-dit", gsd + "/model.bin"}, gsd + "/model.bin: model kind is gpt (1), expected dit (2)");
        check_fails_one_line("dit_file_to_gpt_config", {"--config-gpt", sd + "/model.bin"}, sd + "/model.bin: model kind is dit (2), expected gpt (1)");
        Child cg = run_child({"--config-gpt", gsd + "/model.bin"}), cd = run_child({"--config-dit", sd + "/model.bin"});
        check(cg.exited && cg.code == 0 && cd.exited && cd.code == 0, "config_readers_own_kind", "each config reader takes its own kind");
        {
            // a dit state.bin beside a gpt model.bin: the state names the other kind
            const std::string mixed = ROOT + "/dit_bad/mixed_kinds";
            make_parent_dirs(mixed + "/x");
            copy_file(gsd + "/model.bin", mixed + "/model.bin");
            copy_file(sd + "/state.bin", mixed + "/state.bin");
            check_fails_one_line("dit_state_with_gpt_model", {"--load", mixed, "2"}, mixed + "/state.bin: model kind is dit (2), " + mixed + "/model.bin has gpt (1)");
        }

        // truncated and corrupted dit files
        const std::string bad = ROOT + "/dit_bad";
        make_parent_dirs(bad + "/x");
        const std::string gm = read_file_or_fail(sd + "/model.bin"), gs = read_file_or_fail(sd + "/state.bin");
        auto variant = [&](const std::string& name, const std::string& model, const std::string& state) {
            const std::string vd = bad + "/" + name;
            make_parent_dirs(vd + "/x");
            write_raw(vd + "/model.bin", model);
            write_raw(vd + "/state.bin", state);
            return vd;
        };
        const std::string model_len = str(1024 + 4 * (long long)dn), state_len = str(1024 + 8 * (long long)dn);
        std::string vd = variant("model_cut", gm.substr(0, gm.size() - 4), gs);
        check_fails_one_line("dit_model_truncated", {"--load-dit", vd, "2"},
                             vd + "/model.bin: file length: n_params " + str(dn) + " needs " + model_len + " bytes, found " + str(gm.size() - 4) + " (truncated)");
        vd = variant("state_cut", gm, gs.substr(0, gs.size() - 1000));
        check_fails_one_line("dit_state_truncated", {"--load-dit", vd, "2"},
                             vd + "/state.bin: file length: n_params " + str(dn) + " needs " + state_len + " bytes, found " + str(gs.size() - 1000) + " (truncated)");
        vd = variant("header_cut", gm.substr(0, 700), gs);
        check_fails_one_line("dit_model_header_truncated", {"--load-dit", vd, "2"}, vd + "/model.bin: file is 700 bytes, shorter than the 1024-byte header (truncated)");
        { std::string b = gm; b[1024 + 4 * 100 + 1] ^= 0x08; vd = variant("model_payload_flip", b, gs); }
        check_fails_one_line("dit_model_payload_checksum", {"--load-dit", vd, "2"}, vd + "/model.bin: payload checksum: stored");
        { std::string b = gm; b[4 * (16 + 2)] ^= 0x01; vd = variant("model_header_flip", b, gs); }
        check_fails_one_line("dit_model_header_checksum", {"--load-dit", vd, "2"}, vd + "/model.bin: header checksum: stored");
        { std::string b = gs; b[gs.size() - 3] ^= 0x80; vd = variant("state_payload_flip", gm, b); }
        check_fails_one_line("dit_state_payload_checksum", {"--load-dit", vd, "2"}, vd + "/state.bin: payload checksum: stored");
        { std::string b = gs; b[4 * 26] ^= 0x02; vd = variant("state_header_flip", gm, b); }
        check_fails_one_line("dit_state_header_checksum", {"--load-dit", vd, "2"}, vd + "/state.bin: header checksum: stored");
    }

    // ---- latest: resolution, fallback, broken markers
    {
        const std::string d = ROOT + "/latest";
        for (int s : {10, 20, 30}) ckpt_save_or_fail(make_write(d, s, info, make_arrays(n, s)));
        std::string sd, err, note;
        bool ok = ckpt_find_latest(d, &sd, &err, &note);
        check(ok && sd == d + "/step_00000030" && note.empty(), "find_latest", sd);
        unlink((d + "/latest").c_str());
        ok = ckpt_find_latest(d, &sd, &err, &note);
        check(ok && sd == d + "/step_00000030" && !note.empty(), "find_latest_without_marker", note);
        // the newest directory incomplete (a crash between writes): the newest complete one
        unlink((d + "/step_00000030/state.bin").c_str());
        ok = ckpt_find_latest(d, &sd, &err, &note);
        check(ok && sd == d + "/step_00000020", "find_latest_skips_incomplete", sd);
        std::string empty_sd;
        check(!ckpt_find_latest(ROOT + "/nothing_here", &empty_sd, &err) && err.empty(), "find_latest_none", "no directory: no checkpoint, no error");
        write_raw(d + "/latest", "../../etc/passwd\n");
        check_fails_one_line("latest_garbage", {"--load", d, "2"}, d + "/latest: expected a checkpoint name like step_00000100, found '../../etc/passwd'");
        write_raw(d + "/latest", "step_00000030\n");
        check_fails_one_line("latest_names_incomplete", {"--load", d, "2"}, d + "/latest: names step_00000030, but " + d + "/step_00000030/state.bin is missing");
        write_raw(d + "/latest", "step_00000020\n");
        Child c = run_child({"--load", d, "2"});
        check(c.exited && c.code == 0, "load_via_root_dir", "a checkpoint root resolves through latest");
        check_fails_one_line("resolve_nothing", {"--load", ROOT + "/bf16/nothing", "2"}, ROOT + "/bf16/nothing does not exist");
    }

    // ---- keep the last K, plus every M-th
    {
        auto plan = [](std::vector<CkptEntry> e, int64_t latest, int k, int m) {
            std::vector<long long> r;
            for (int64_t s : ckpt_prune_plan(e, latest, k, m)) r.push_back(s);
            return join(r);
        };
        std::vector<CkptEntry> e;
        for (int s = 10; s <= 100; s += 10) e.push_back({s, true});
        check(plan(e, 100, 3, 0) == "10 20 30 40 50 60 70", "prune_plan_keep_3", "delete " + plan(e, 100, 3, 0));
        check(plan(e, 100, 3, 40) == "10 20 30 50 60 70", "prune_plan_keep_3_every_40", "delete " + plan(e, 100, 3, 40));
        check(plan(e, 100, 0, 40).empty(), "prune_plan_keep_all", "keep_last 0 keeps every complete checkpoint");
        check(plan(e, 50, 2, 0) == "10 20 30", "prune_plan_newer_untouched", "latest 50: 60..100 (another branch) stay; delete " + plan(e, 50, 2, 0));
        e.push_back({25, false});
        e.push_back({105, false});
        check(plan(e, 100, 0, 0) == "25", "prune_plan_incomplete", "incomplete step 25 (< latest) goes, incomplete 105 stays");
        check(plan({{7, true}}, 7, 1, 0).empty(), "prune_plan_latest_kept", "the new checkpoint is never deleted");

        const std::string d = ROOT + "/keep";
        for (int s = 10; s <= 100; s += 10) ckpt_save_or_fail(make_write(d, s, info, make_arrays(n, s), 3, 40));
        check(join(steps_in(d)) == "40 80 90 100", "prune_on_disk", "10 saves every 10 steps with keep 3, keep-every 40: " + join(steps_in(d)));
        // a foreign file in an old checkpoint directory: the directory is kept (with a warning), nothing else breaks
        write_raw(d + "/step_00000090/notes.txt", "mine\n");
        ckpt_save_or_fail(make_write(d, 110, info, make_arrays(n, 110), 2, 40));
        check(join(steps_in(d)) == "40 80 90 100 110" && file_exists(d + "/step_00000090/notes.txt") && !file_exists(d + "/step_00000090/model.bin"),
              "prune_keeps_foreign_files", "only the checkpoint's own files are deleted: " + join(steps_in(d)));
        // resaving an older step (resumed from a named checkpoint) replaces it; newer ones stay
        ckpt_save_or_fail(make_write(d, 80, info, make_arrays(n, 81), 1, 0));
        Arrays got;
        std::string err;
        const bool ok = load_all(d + "/step_00000080", info, &got, nullptr, nullptr, &err);
        check(ok && same_bits(got.p, make_arrays(n, 81).p) && ckpt_read_latest_name(d) == "step_00000080" && file_exists(d + "/step_00000110/model.bin") &&
              !file_exists(d + "/step_00000040"), "resave_older_step", "step 80 rewritten and latest, 110 kept, 40 pruned");
    }

    // ---- a write that fails part way (file size limit): one line, previous checkpoint intact
    {
        const std::string d = ROOT + "/fsize";
        ckpt_save_or_fail(make_write(d, 10, info, make_arrays(n, 10), 3, 0));
        const long long model_len = 1024 + 4 * (long long)n;
        // limit between the sizes of model.bin and state.bin: model.bin.tmp is written, state.bin.tmp fails
        check_fails_one_line("efbig_state", {"--save", d, "20", str(model_len + 4096)},
                             d + "/step_00000020/state.bin.tmp: write failed (File too large); " + d + "/latest still names step_00000010");
        check_intact("efbig_state", d, 10, 20, info);
        check_fails_one_line("efbig_model", {"--save", d, "20", "2000"},
                             d + "/step_00000020/model.bin.tmp: write failed (File too large); " + d + "/latest still names step_00000010");
        check_intact("efbig_model", d, 10, 20, info);
        Child c = run_child({"--save", d, "20", "0"});
        check(c.exited && c.code == 0 && ckpt_read_latest_name(d) == "step_00000020", "save_after_failure", "the next save without a limit succeeds");
    }

    // ---- a full disk: a small tmpfs (needs the right to mount, i.e. root)
    {
        const std::string d = ROOT + "/tmpfs";
        make_parent_dirs(d + "/x");
        // room for one checkpoint, a model.bin.tmp and part of a state.bin.tmp
        const long long page = 4096, model_pages = (1024 + 4 * (long long)n + page - 1) / page, state_pages = (1024 + 8 * (long long)n + page - 1) / page;
        const long long kib = (model_pages + state_pages + 1 + model_pages + state_pages / 2) * page / 1024;
        const std::string opts = "size=" + str(kib) + "k,mode=0755";
        if (mount("tmpfs", d.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
            printf("SKIP checkpoint/enospc_tmpfs: cannot mount a tmpfs on %s (%s); the file-size-limit cases above cover a write cut short\n",
                   d.c_str(), strerror(errno));
        } else {
            std::string sd, err;
            const bool first = ckpt_save(make_write(d, 10, info, make_arrays(n, 10), 3, 0), &sd, &err);
            check(first, "enospc_first_save_fits", first ? "step 10 written to a " + str(kib) + " KiB tmpfs" : err);
            const bool second = ckpt_save(make_write(d, 20, info, make_arrays(n, 20), 3, 0), &sd, &err);
            check(!second && err.find("No space left on device") != std::string::npos && err.find(d + "/step_00000020/") != std::string::npos &&
                  err.find("latest still names step_00000010") != std::string::npos, "enospc_error_line", second ? "the save succeeded" : err);
            check_intact("enospc", d, 10, 20, info);
            check_fails_one_line("enospc_child_exit", {"--save", d, "20", "0"}, "(No space left on device); " + d + "/latest still names step_00000010");
            check_intact("enospc_child", d, 10, 20, info);
            if (umount2(d.c_str(), 0) != 0) printf("info: umount %s failed (%s)\n", d.c_str(), strerror(errno));
        }
    }

    // ---- kill -9 at random moments of a run that saves all the time (several trials): every
    // time, `latest` names a checkpoint that loads whole with exactly that step's contents, and
    // the next run continues from it (leftovers of the interrupted write are cleaned up)
    check_kill_during_saves("kill_during_saves", ROOT + "/kill", "--save-loop", 12);

    printf("%s\n", n_failed ? "some checkpoint tests FAILED" : "all checkpoint tests passed");
    return n_failed ? 1 : 0;
}
