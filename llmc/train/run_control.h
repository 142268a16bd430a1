/*
Run control shared by the trainers (train_gpt.cu, train_dit.cu): the flags of
checkpoints, resume and numerical faults with their checks, which checkpoint a
run starts from, SIGTERM/SIGINT, the count of bad (non-finite) steps, and
train.log on resume. Host code: the file format is llmc/train/checkpoint.h; saving
and loading a model's device buffers is llmc/train/params_checkpoint.cuh; the
harness that runs the loop below is llmc/train/run.h.

The loop of both trainers, step by step (step = optimizer steps done):
  top:    last = step >= --steps (or --max-minutes); at `last` a checkpoint is
          saved (if --ckpt-dir and not saved at this step already); what the
          trainer does at a step boundary (validation, samples); at `last` the
          loop ends
  step:   forward, backward; a non-finite loss or grad norm skips the update
  after:  run_after_step(done = step + 1): --max-bad-steps non-finite steps in
          a row end the run with one line; a checkpoint every --ckpt-every
          steps; a stop signal or --exit-at-step saves one, prints one line,
          and the loop ends (exit 0)
Checkpoints are written in the background by default (--ckpt-async 1,
llmc/train/run.h run_save): a save started at one step is collected at a
later step's top (its line printed, or a failed write ending the run), by the
next save, or before the line of a stop or of --max-bad-steps and at the end
of the run, which all wait for it.
A checkpoint at step k is taken after step k's update and before anything the
loop does at the top of step k, which a run resumed from it does again.
*/
#pragma once
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include "../core/utils.h"
#include "../core/args.h"
#include "plot.h"
#include "checkpoint.h"

// ----------------------------------------------------------------------------
// Flags. A trainer's TrainConfig derives from CkptFlags.

struct CkptFlags {
    std::string ckpt_dir = "";       // "": no checkpoints
    int ckpt_every = 0, ckpt_keep = 3, ckpt_keep_every = 0;
    int ckpt_async = 1;
    int resume = 0;
    std::string resume_from = "", init_from = "";
    int exit_at_step = 0;
    int max_bad_steps = 5;
};

static void ckpt_add_flags(ArgParser& ap, CkptFlags* f) {
    ap.section("checkpoints, resume and numerical faults (llmc/train/checkpoint.h)");
    ap.add_string("--ckpt-dir", &f->ckpt_dir, "write checkpoints to DIR/step_XXXXXXXX and DIR/latest (\"\": none)");
    ap.add_int("--ckpt-every", &f->ckpt_every, "save every N steps (0: only at the end and on SIGTERM/SIGINT)");
    ap.add_int("--ckpt-keep", &f->ckpt_keep, "keep the newest K checkpoints, delete older ones (0: keep all)");
    ap.add_int("--ckpt-keep-every", &f->ckpt_keep_every, "also keep for good every checkpoint whose step is a multiple of M (0: none)");
    ap.add_bool("--ckpt-async", &f->ckpt_async, "write checkpoints in the background: the loop waits only for a copy to pinned host memory "
                "(12-16 bytes per parameter, held for the run); 0: the loop writes them itself");
    ap.add_bool("--resume", &f->resume, "resume from --ckpt-dir's latest checkpoint that verifies (an older one, with a warning, "
                "if the latest is corrupt); none: start fresh");
    ap.add_string("--resume-from", &f->resume_from, "resume from this checkpoint (a step_XXXXXXXX dir, its model.bin, or a --ckpt-dir); "
                  "it must verify: no fallback");
    ap.add_string("--init-from", &f->init_from, "start from these weights (a model.bin or checkpoint dir); step, AdamW and data start fresh");
    ap.add_int("--exit-at-step", &f->exit_at_step, "stop after this step as on SIGTERM: save a checkpoint, exit 0 (0: off)");
    ap.add_int("--max-bad-steps", &f->max_bad_steps, "stop after K steps in a row with a non-finite loss or grad norm (0: never)");
}

// A directory the run will write into (--ckpt-dir, --log-dir): made now, with its
// parents, and a file created and removed in it, so that a path that is a regular
// file, lies under one or cannot be written fails at start-up with one line, not
// at the first save (by default the end of the run). A probe file, not access(),
// because root passes access() on directories it cannot write (/proc, a read-only mount).
static void run_dir_writable_or_fail(const std::string& dir, const char* flag) {
    if (dir.empty()) return;
    struct stat st;
    if (stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) fail("flag %s: %s exists and is not a directory", flag, dir.c_str());
    for (size_t i = 1; i <= dir.size(); i++) {
        if (i < dir.size() && dir[i] != '/') continue;
        const std::string d = dir.substr(0, i);
        if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) fail("flag %s: cannot create directory %s (%s)", flag, d.c_str(), strerror(errno));
        if (stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) fail("flag %s: %s lies under %s, which is not a directory", flag, dir.c_str(), d.c_str());
    }
    std::string probe = dir + "/.write_probe_XXXXXX";
    const int fd = mkstemp(&probe[0]);
    if (fd < 0) fail("flag %s: cannot write into directory %s (%s)", flag, dir.c_str(), strerror(errno));
    close(fd);
    unlink(probe.c_str());
}

// log_dir: the trainer's --log-dir
static void ckpt_validate_flags(const CkptFlags& f, const std::string& log_dir) {
    if (f.ckpt_every < 0) fail("flag --ckpt-every: must be >= 0, got %d", f.ckpt_every);
    if (f.ckpt_keep < 0) fail("flag --ckpt-keep: must be >= 0, got %d", f.ckpt_keep);
    if (f.ckpt_keep_every < 0) fail("flag --ckpt-keep-every: must be >= 0, got %d", f.ckpt_keep_every);
    if (f.exit_at_step < 0) fail("flag --exit-at-step: must be >= 0, got %d", f.exit_at_step);
    if (f.max_bad_steps < 0) fail("flag --max-bad-steps: must be >= 0, got %d", f.max_bad_steps);
    if (f.resume && f.ckpt_dir.empty()) fail("flag --resume: needs --ckpt-dir (where to look for the latest checkpoint)");
    if (f.resume && !f.resume_from.empty()) fail("flag --resume-from: cannot be combined with --resume 1 (pick one)");
    if (!f.resume_from.empty() && !f.init_from.empty()) fail("flag --init-from: cannot be combined with --resume-from (a resumed run has its weights)");
    run_dir_writable_or_fail(f.ckpt_dir, "--ckpt-dir");
    run_dir_writable_or_fail(log_dir, "--log-dir");
}

// ----------------------------------------------------------------------------
// Where a run starts: a checkpoint to resume from (resume_dir, with both
// headers), weights to start from (init_path, with its header), or neither
// (from scratch). Every header is checked against the model being built
// (`info`) before the GPU is touched; each failure is one line.

struct CkptStart {
    std::string resume_dir, init_path;
    CkptModelHeader model;
    CkptStateHeader state;               // resume only
    std::vector<int64_t> corrupt_steps;  // --resume 1: checkpoints of --ckpt-dir that failed verification (kept)
};

// --resume 1 falls back to the newest older checkpoint that verifies (one warning
// line); --resume-from PATH is verified the same way but never falls back. Either
// reads the whole checkpoint once more than loading it does: a corrupt file is
// found here, on the CPU, not half-way through loading the GPU's buffers.
// precheck (optional) sees each header before the generic check, for a model's own one-line
// errors (train_dit: the objective).
static CkptStart ckpt_start_or_fail(const CkptFlags& f, const CkptModelInfo& info,
                                    const std::function<void(const CkptModelHeader&)>& precheck = nullptr) {
    CkptStart s;
    if (!f.resume_from.empty()) {
        s.resume_dir = ckpt_resolve_or_fail(f.resume_from, "flag --resume-from");
        std::string err;
        if (!ckpt_verify(s.resume_dir, &err)) fail("flag --resume-from: %s", err.c_str());
    } else if (f.resume) {
        CkptResumeChoice c;
        std::string err;
        if (!ckpt_choose_resume(f.ckpt_dir, &c, &err)) fail("%s", err.c_str());
        if (!c.note.empty()) printf("note: %s\n", c.note.c_str());
        if (!c.warning.empty()) {
            fflush(stdout);
            fprintf(stderr, "warning: %s\n", c.warning.c_str());
        }
        s.resume_dir = c.dir;
        s.corrupt_steps = c.corrupt_steps;
        if (s.resume_dir.empty())
            printf("resume: no checkpoint in %s yet: starting %s\n", f.ckpt_dir.c_str(), f.init_from.empty() ? "from scratch" : "from --init-from");
        else if (!f.init_from.empty())
            printf("note: --init-from %s is not used: resuming from %s\n", f.init_from.c_str(), s.resume_dir.c_str());
    }
    if (!s.resume_dir.empty()) {
        s.model = ckpt_read_model_header_or_fail(s.resume_dir + "/model.bin");
        if (precheck) precheck(s.model);
        ckpt_check_model_or_fail(s.model, info);
        s.state = ckpt_read_state_header_or_fail(s.resume_dir + "/state.bin");
        ckpt_check_state_or_fail(s.state, s.model);
        if (s.state.st.step > INT_MAX) fail("%s: step: expected at most %d, found %lld", s.state.path.c_str(), INT_MAX, (long long)s.state.st.step);
    } else if (!f.init_from.empty()) {
        s.init_path = ckpt_model_path_or_fail(f.init_from, "flag --init-from");
        s.model = ckpt_read_model_header_or_fail(s.init_path);
        if (precheck) precheck(s.model);
        ckpt_check_model_or_fail(s.model, info);
    }
    return s;
}

// A resumed state whose schedule was built for another --steps: a note, not an error.
static void ckpt_note_schedule(const CkptStateHeader& s, int steps) {
    if (s.st.sched_steps != steps)
        printf("note: %s was trained with --steps %d, this run has %d: the learning rate follows the new schedule\n", s.path.c_str(),
               s.st.sched_steps, steps);
}

// The step of the checkpoint a run starts with in its own --ckpt-dir (-1: none).
// A run resumed from a checkpoint elsewhere (--resume-from another directory) saves
// its final one into --ckpt-dir even when it does no step: resuming a 2-GPU run on 4
// GPUs with --steps at the checkpoint's step re-shards and writes the state back,
// which must be the same bytes (scripts/multi_gpu_check.sh compares them).
static int ckpt_saved_step_at_start(const CkptFlags& f, const std::string& resume_dir, int start_step) {
    if (resume_dir.empty() || f.ckpt_dir.empty()) return -1;
    char a[PATH_MAX], b[PATH_MAX];
    std::string dir = resume_dir;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const size_t slash = dir.find_last_of('/');
    const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash);
    if (!realpath(parent.c_str(), a) || !realpath(f.ckpt_dir.c_str(), b)) return -1;
    return strcmp(a, b) == 0 ? start_step : -1;
}

// Whether --max-minutes (0: none) have passed since t_start (wall_seconds()).
static inline bool run_out_of_time(float max_minutes, double t_start) {
    return max_minutes > 0 && wall_seconds() - t_start > 60.0 * max_minutes;
}

// The line a run with --ckpt-dir prints at the start.
static void ckpt_print_plan(const CkptFlags& f) {
    if (f.ckpt_dir.empty()) return;
    printf("checkpoints: %s | every %d steps (0: only at the end) | keep the newest %d (0: all)%s%s | %s\n", f.ckpt_dir.c_str(), f.ckpt_every,
           f.ckpt_keep, f.ckpt_keep_every > 0 ? " and every step multiple of " : "",
           f.ckpt_keep_every > 0 ? std::to_string(f.ckpt_keep_every).c_str() : "",
           f.ckpt_async ? "written in the background (--ckpt-async 1)" : "written by the loop (--ckpt-async 0)");
}

// ----------------------------------------------------------------------------
// SIGTERM / SIGINT: the first makes the loop finish its step, save a
// checkpoint and exit 0; a second exits at once.

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) {
    if (stop_signal) {
        static const char msg[] = "\nsecond stop signal: exiting at once, without a checkpoint\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(1);
    }
    stop_signal = sig;
    static const char msg[] = "\nstop signal: finishing this step, then saving a checkpoint and exiting (send another to exit at once)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
}

static void install_stop_signals() {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
}

// ----------------------------------------------------------------------------
// After step `done`'s update (steps done, counting this one), in this order:
// faults: a step with a finite loss and grad norm (ok) ends a run of bad steps;
// the --max-bad-steps-th bad step in a row (0: never) ends the run with one
// line naming the step and the last good checkpoint. Checkpoints: save(done)
// every --ckpt-every steps (not in a run of bad steps) and on a stop request
// (a stop signal, or --exit-at-step), which also prints the line the run stops
// with. Before either line, settle() finishes a background save in flight, so
// that the checkpoint the line names is whole on disk. Returns whether the loop
// stops. save() and settle() update last_ckpt.
static bool run_after_step(const CkptFlags& f, int done, bool ok, int* bad_steps, const std::string& last_ckpt,
                           const std::function<void(int)>& save, const std::function<void()>& settle) {
    if (ok) *bad_steps = 0;
    else if (++*bad_steps >= f.max_bad_steps && f.max_bad_steps > 0) {
        settle();
        fail("step %d: %d steps in a row had a non-finite loss or gradient norm (updates skipped); stopping. last good checkpoint: %s",
             done, *bad_steps, last_ckpt.empty() ? "none" : last_ckpt.c_str());
    }
    const bool ckpt_on = !f.ckpt_dir.empty();
    const bool stop = stop_signal != 0 || (f.exit_at_step > 0 && done == f.exit_at_step);
    if (ckpt_on && (stop || (f.ckpt_every > 0 && done % f.ckpt_every == 0 && *bad_steps == 0))) save(done);
    if (stop) {
        settle();
        printf("stopping after step %d (%s): %s\n", done,
               stop_signal == SIGINT ? "SIGINT" : stop_signal == SIGTERM ? "SIGTERM" : "--exit-at-step",
               ckpt_on ? ("checkpoint " + last_ckpt).c_str() : "no --ckpt-dir, so no checkpoint");
    }
    return stop;
}

// ----------------------------------------------------------------------------
// On resume, train.log keeps what was logged up to the checkpoint at `step`
// and the run appends to it; the loss curve is rebuilt from it. Lines
// "step N train_loss X ..." (gpt) and "step N loss X ..." (dit) are the loss
// after step N's update: kept for N <= step. "step N val_loss X" is measured at
// the top of step N: kept for N < step (the resumed loop measures it again).
// Any other line (samples, a summary) is kept when it comes before the last
// kept loss line: what a run logged after its checkpoint's step goes. A last
// line cut short by a crash is dropped.
static void resume_train_log(const std::string& path, int step, LossCurve* curve) {
    if (!file_exists(path)) return;
    const std::string text = read_file_or_fail(path);
    struct Line { std::string text; int kind; };  // kind: 0 other, 1 train loss, 2 val loss
    std::vector<Line> lines;
    size_t last_train = 0;  // index + 1 of the last kept train loss line (0: none)
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t end = text.find('\n', pos);
        if (end == std::string::npos) break;
        Line l = {text.substr(pos, end - pos), 0};
        pos = end + 1;
        int s = 0;
        float x = 0;
        char kind[32] = {0};
        if (sscanf(l.text.c_str(), "step %d %31s %f", &s, kind, &x) == 3) {
            const bool tr = strcmp(kind, "train_loss") == 0 || strcmp(kind, "loss") == 0, va = strcmp(kind, "val_loss") == 0;
            if ((tr && s > step) || (va && s >= step)) continue;
            if (tr) { l.kind = 1; curve->train.push_back({s, x}); }
            if (va) { l.kind = 2; curve->val.push_back({s, x}); }
        }
        lines.push_back(l);
        if (l.kind == 1) last_train = lines.size();
    }
    std::string kept;
    for (size_t i = 0; i < lines.size(); i++)
        if (lines[i].kind != 0 || i < last_train) kept += lines[i].text + "\n";
    const std::string tmp = path + ".tmp";
    FILE* f = fopen_or_fail(tmp, "w");
    fwrite_exact(kept.data(), kept.size(), f, tmp);
    finish_atomic_write(f, tmp, path);
}

// train.log at path ("": none): a new file, or on resume the old one trimmed to
// the checkpoint's step (resume_train_log, which also rebuilds the loss curve)
// and appended to.
static FILE* open_train_log(const std::string& path, const CkptStart& start, LossCurve* curve) {
    if (path.empty()) return nullptr;
    make_parent_dirs(path);
    const bool resuming = !start.resume_dir.empty();
    if (resuming) resume_train_log(path, (int)start.state.st.step, curve);
    return fopen_or_fail(path, resuming ? "a" : "w");
}
