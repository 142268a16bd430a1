// Shared by the checkpoint tests (test/test_checkpoint.cpp, test/test_ckpt_fallback.cpp,
// test/test_ckpt_background.cpp): small gpt and dit models, deterministic arrays and
// training states to save, a whole-checkpoint reader that does not exit, and
// file patching for the corruption cases.
#pragma once
#include <cmath>
#include <csignal>
#include <ctime>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <vector>
#include "../llmc/core/utils.h"
#include "../llmc/core/rand.h"
#include "../llmc/train/checkpoint.h"
#include "../llmc/train/checkpoint_gpt.h"
#include "../llmc/train/checkpoint_dit.h"
#include "test_util.h"
static std::string str(long long x) { return std::to_string(x); }

// a small gpt: 6736 parameters with 2 layers
static GPTConfig test_config(int n_layer) {
    GPTConfig c;
    c.vocab_size = 100; c.max_seq_len = 16; c.n_layer = n_layer; c.n_head = 2; c.n_kv_head = 1;
    c.d_model = 16; c.head_dim = 0; c.ffn_hidden = 32; c.padded_vocab_size = 0;
    gpt_config_finalize(&c);
    return c;
}

// a larger gpt for the kill test (~0.9M parameters: 3.6 MB model.bin + 7 MB state.bin per save,
// so that a kill often lands inside a write, not only between saves)
static GPTConfig kill_test_config() {
    GPTConfig c = test_config(2);
    c.vocab_size = 2048; c.d_model = 128; c.n_head = 4; c.n_kv_head = 2; c.ffn_hidden = 344; c.padded_vocab_size = 0;
    gpt_config_finalize(&c);
    return c;
}

// a small dit: 2 blocks, C 24, 2 heads of 12; every field away from its default
static DiTConfig test_dit_config(int n_layer) {
    DiTConfig c;
    c.d_model = 24; c.n_layer = n_layer; c.n_head = 2; c.head_dim = 0; c.mlp_ratio = 2.0f; c.ffn_hidden = 0;
    c.in_channels = 2; c.out_channels = 4; c.caption_channels = 8; c.patch_t = 1; c.patch_h = 2; c.patch_w = 2;
    c.max_text_len = 7; c.norm_eps = 1e-5f; c.rope_theta = 500.0f; c.rope_max_t = 5; c.rope_max_hw = 9; c.freq_dim = 16;
    c.freq_max_period = 2000.0f;
    dit_config_finalize(&c);
    return c;
}

struct Arrays { std::vector<float> p, m, v, master, ema; };

static Arrays make_arrays(size_t n, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    Arrays a;
    a.p.resize(n); a.m.resize(n); a.v.resize(n); a.master.resize(n); a.ema.resize(n);
    for (size_t i = 0; i < n; i++) {
        a.master[i] = rng_normal(&r);
        a.p[i] = a.master[i];
        a.m[i] = 0.01f * rng_normal(&r);
        a.v[i] = 1e-4f * rng_uniform(&r);
        a.ema[i] = rng_normal(&r);
    }
    // bit patterns that must survive: -0, a denormal, the largest float, an infinity in a moment
    a.p[0] = -0.0f; a.p[1] = 1e-40f; a.p[2] = 3.4028235e38f; a.m[3] = INFINITY;
    return a;
}

// the kill test's contents for a step: cheap to make (the saves, not the making, should take
// the child's time, so that kills land inside writes), different for every step
static Arrays kill_arrays(size_t n, int64_t step) {
    static Arrays base;
    if (base.p.size() != n) base = make_arrays(n, 1);
    Arrays a = base;
    const float k = (float)step;
    for (size_t i = 0; i < n; i++) { a.p[i] += k; a.m[i] -= k; a.v[i] += 2.0f * k; }
    return a;
}

static CkptState make_state(int64_t step) {
    CkptState s;
    s.step = step; s.adam_step = step > 0 ? step - 1 : 0; s.bad_steps = 1; s.seq_len = 64;
    s.total_batch_tokens = 4096; s.sched_steps = 1000; s.has_loader = 1;
    s.loader_epoch = 2; s.loader_shard = 1; s.loader_sample = 40 + step; s.loader_rng = 0x123456789ABCDEF1ull;
    s.rngs = {0xDEADBEEFCAFEF00Dull + (uint64_t)step, 42};
    return s;
}

static CkptWrite make_write(const std::string& dir, int64_t step, const CkptModelInfo& info, const Arrays& a, int keep_last = 0,
                            int keep_every = 0, int dtype = CKPT_F32, bool ema = false) {
    CkptWrite w;
    w.dir = dir; w.step = step; w.info = info; w.dtype = dtype;
    w.params = ckpt_source_from(a.p.data());
    w.state = make_state(step);
    if (info.kind == CKPT_KIND_DIT) w.state.batch_size = w.state.total_batch_samples = 2;   // a DiT state's own fields
    w.m = ckpt_source_from(a.m.data());
    w.v = ckpt_source_from(a.v.data());
    if (dtype != CKPT_F32) w.master = ckpt_source_from(a.master.data());
    if (ema) w.extra.push_back(ckpt_source_from(a.ema.data()));
    w.keep_last = keep_last; w.keep_every = keep_every;
    return w;
}

// Reads a whole checkpoint directory without failing; false + *err on any problem.
static bool load_all(const std::string& sdir, const CkptModelInfo& info, Arrays* out, CkptState* st, CkptModelHeader* mh_out, std::string* err) {
    CkptModelHeader mh;
    CkptStateHeader sh;
    const size_t n = (size_t)info.n_params;
    out->p.assign(n, 0); out->m.assign(n, 0); out->v.assign(n, 0); out->master.assign(n, 0); out->ema.assign(n, 0);
    if (!ckpt_read_model_header(sdir + "/model.bin", &mh, err) || !ckpt_check_model(mh, info, err)) return false;
    if (!ckpt_read_state_header(sdir + "/state.bin", &sh, err) || !ckpt_check_state(sh, mh, err)) return false;
    if (!ckpt_read_model_params(mh, ckpt_sink_to(out->p.data()), err)) return false;
    std::vector<CkptSink> sinks = {ckpt_sink_to(out->m.data()), ckpt_sink_to(out->v.data())};
    if (sh.has_master) sinks.push_back(ckpt_sink_to(out->master.data()));
    if (sh.n_extra) sinks.push_back(ckpt_sink_to(out->ema.data()));
    if (!ckpt_read_state_arrays(sh, sinks, err)) return false;
    if (st) *st = sh.st;
    if (mh_out) *mh_out = mh;
    return true;
}

static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

static void write_raw(const std::string& path, const std::string& bytes) {
    FILE* f = fopen_or_fail(path, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, path);
    fclose_or_fail(f, path);
}

static void copy_file(const std::string& from, const std::string& to) { write_raw(to, read_file_or_fail(from)); }

static void patch_int32(const std::string& path, int index, int32_t v) {
    std::string b = read_file_or_fail(path);
    memcpy(&b[4 * index], &v, 4);
    write_raw(path, b);
}

// Recomputes the header checksum, so that a patched field reaches its own range check.
static void rehash_header(const std::string& path) {
    std::string b = read_file_or_fail(path);
    int32_t h[CKPT_HEADER_INTS];
    memcpy(h, b.data(), CKPT_HEADER_BYTES);
    ckpt_put64(h, 8, 0);
    ckpt_put64(h, 8, xxh64(h, CKPT_HEADER_BYTES));
    memcpy(&b[0], h, CKPT_HEADER_BYTES);
    write_raw(path, b);
}

static void patch_field(const std::string& path, int index, int32_t v) { patch_int32(path, index, v); rehash_header(path); }
static void patch_field64(const std::string& path, int index, int64_t v) {
    patch_int32(path, index, (int32_t)(uint32_t)((uint64_t)v & 0xffffffffu));
    patch_int32(path, index + 1, (int32_t)(uint32_t)((uint64_t)v >> 32));
    rehash_header(path);
}

static long long file_len(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0 ? (long long)st.st_size : -1; }

static void rm_tree(const std::string& d) { std::string c = "rm -rf '" + d + "'"; if (system(c.c_str()) != 0) fail("%s failed", c.c_str()); }

static std::vector<long long> steps_in(const std::string& dir) {
    std::vector<long long> s;
    for (const CkptEntry& e : ckpt_list(dir)) s.push_back(e.step);
    return s;
}

static std::string join(const std::vector<long long>& v) {
    std::string s;
    for (long long x : v) s += (s.empty() ? "" : " ") + str(x);
    return s;
}

// kill -9 at random moments (100-600 ms in) of a child (this binary, in child mode `mode`)
// that saves kill_test_config() checkpoints of kill_arrays(step) into d back to back,
// continuing from d's latest each time: after every kill `latest` must name a checkpoint
// that loads whole with exactly its step's contents, never going back; some kills must
// land inside a write (.tmp files, or a step directory newer than latest).
static void check_kill_during_saves(const std::string& name, const std::string& d, const char* mode, int n_trials) {
    make_parent_dirs(d + "/x");
    const CkptModelInfo info = gpt_ckpt_info(kill_test_config());
    Rng r;
    rng_seed(&r, (uint64_t)time(nullptr));   // random moments: a new draw every run
    int trials = 0, mid_write = 0, whole = 0, none_yet = 0;
    int64_t last_step = 0;
    std::string bad;
    for (int t = 0; t < n_trials; t++) {
        fflush(stdout);
        const pid_t pid = fork();
        if (pid < 0) fail("fork failed (%s)", strerror(errno));
        if (pid == 0) {
            int nul = open("/dev/null", O_WRONLY);
            if (nul >= 0) { dup2(nul, 1); dup2(nul, 2); }
            execl("/proc/self/exe", "child", mode, d.c_str(), (char*)nullptr);
            _exit(127);
        }
        const long us = 100000 + (long)(rng_uniform(&r) * 500000);   // 100-600 ms
        usleep((useconds_t)us);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        trials++;
        std::string sd, err;
        if (!ckpt_find_latest(d, &sd, &err)) {
            if (err.empty() && last_step == 0) { none_yet++; continue; }   // killed before the first save completed
            if (bad.empty()) bad = "trial " + str(t) + ": no latest checkpoint: " + err;
            continue;
        }
        const int64_t step = ckpt_parse_step_name(sd.substr(sd.rfind('/') + 1));
        // an interrupted write: .tmp files, or a step directory newer than latest
        const std::string ls = "ls -a '" + d + "' '" + sd + "' | grep -q '\\.tmp$'";
        bool partial = system(ls.c_str()) == 0;
        if (DIR* dp = opendir(d.c_str())) {   // any step directory, complete or not
            while (struct dirent* e = readdir(dp)) partial = partial || ckpt_parse_step_name(e->d_name) > step;
            closedir(dp);
        }
        mid_write += partial;
        Arrays got;
        CkptState st;
        const Arrays want = kill_arrays((size_t)info.n_params, step);
        if (load_all(sd, info, &got, &st, nullptr, &err) && st.step == step && same_bits(got.p, want.p) && same_bits(got.m, want.m) &&
            same_bits(got.v, want.v) && step >= last_step)
            whole++;
        else if (bad.empty())
            bad = "trial " + str(t) + ": " + sd + " (step " + str(step) + ", previous " + str(last_step) + "): " + (err.empty() ? "contents differ" : err);
        last_step = step;
    }
    check(whole == trials - none_yet && whole >= n_trials * 2 / 3 && mid_write > 0, name,
          str(trials) + " runs killed -9 after 100-600 ms of back-to-back saves (continuing from latest each time, up to step " +
              str(last_step) + "); " + str(mid_write) + " killed mid-write; latest loaded whole with its step's exact contents " +
              str(whole) + " times" + (none_yet ? " (" + str(none_yet) + " killed before the first save completed)" : "") + (bad.empty() ? "" : "; " + bad));
}
