/*
The run harness both trainers share (train_gpt.cu, train_dit.cu): the GPU's
start, where a run starts (its step and bad-step count on resume), train.log
and the loss curve, the skeleton of the training loop of llmc/train/run_control.h
(the top of a step, the step's time, the update with the non-finite-step skip,
what comes after it), a checkpoint with the state every run has, and the
teardown, and `--profile-step` (llmc/train/profiler.cuh) around its step. The
trainer keeps what is its own: the model, the data, the batch and the lines it prints.
*/
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include "../core/utils.h"
#include "../core/cuda_common.h"
#include "../core/cublas_common.h"
#include "../model/params.cuh"
#include "../dist/distributed.cuh"
#include "plot.h"
#include "checkpoint.h"
#include "params_checkpoint.cuh"
#include "run_control.h"
#include "schedule.h"
#include "attention_flags.h"
#include "memory_plan.h"
#include "profiler.cuh"

// The flags both trainers share beyond their model and data: the run's length and
// learning-rate schedule (bound to the trainer's own fields), the attention's settings,
// activation recompute, the memory plan and the kernel profile of one step.
struct RunFlags {
    FlashFlags flash;
    RecomputeFlags recompute;
    PlanFlags plan;
    int profile_step = 0;
};

static void run_add_schedule_flags(ArgParser& ap, int* steps, float* max_minutes, float* lr, Schedule* sched) {
    ap.add_int("--steps", steps, "optimizer steps");
    ap.add_float("--max-minutes", max_minutes, "stop training after this many minutes (0: no limit)");
    ap.add_float("--lr", lr, "peak learning rate");
    schedule_add_flags(ap, sched);
}

// the flags of run_add_schedule_flags (--lr is checked with the optimizer's flags)
static void run_validate_schedule_flags(int steps, float max_minutes, const Schedule& sched) {
    if (steps < 0) fail("flag --steps: must be >= 0, got %d", steps);
    if (!(max_minutes >= 0 && std::isfinite(max_minutes))) fail("flag --max-minutes: must be a finite number >= 0 (0: no limit), got %g", max_minutes);
    schedule_validate(sched);
}

static void run_add_flags(ArgParser& ap, RunFlags* f) {
    flash_add_flags(ap, &f->flash);
    recompute_add_flags(ap, &f->recompute);
    plan_add_flags(ap, &f->plan);
    ap.add_int("--profile-step", &f->profile_step,
               "profile step N: its kernels' time, share, TFLOP/s or GB/s against the H200's ceilings, and the GPU's idle "
               "time, printed and written to the log dir as profile_step_N.txt (0: off)");
}

// Parses the command line; false when it asked for --help (printed). Applies the
// attention settings, which the kernels read from then on.
static bool run_parse_flags(ArgParser& ap, int argc, char** argv, RunFlags* f) {
    if (!ap.parse(argc, argv)) { ap.print_help(); return false; }
    flash_apply_flags(f->flash);
    return true;
}

struct Run {
    const CkptFlags* flags = nullptr;
    Dist* dist = nullptr;
    int steps = 0;                  // --steps: the loop's end and the schedule's length
    Schedule sched;                 // the learning rate of every step
    float max_minutes = 0;          // --max-minutes (0: no limit)
    int start_step = 0, step = 0;   // step: optimizer steps done
    int bad_steps = 0;              // non-finite steps in a row
    int saved_step = -1;            // the step of the newest checkpoint in --ckpt-dir (-1: none)
    std::string last_ckpt;          // the newest checkpoint this run saved (whole on disk) or resumed from
    std::vector<int64_t> corrupt_steps;  // checkpoints of --ckpt-dir that failed verification at resume (never deleted)
    std::unique_ptr<CkptSaver> saver{new CkptSaver()};   // pinned host copy and background writer (llmc/train/params_checkpoint.cuh)
    double t_start = 0, t_step = 0; // wall_seconds() when the loop and this step started
    bool out_of_time = false;       // several GPUs: --max-minutes as agreed by all ranks after the last step
    std::vector<double> step_ms;
    std::string log_path;           // train.log ("": none)
    FILE* logf = nullptr;
    LossCurve curve;
};

// sched: the flags' schedule (--warmup, --schedule, ...), for `steps` steps from the peak lr
static Run run_init(const CkptFlags& f, Dist* dist, const Schedule& sched, int steps, float lr, float max_minutes) {
    Run r;
    r.flags = &f;
    r.dist = dist;
    r.steps = steps;
    r.sched = sched;
    r.sched.steps = steps;
    r.sched.lr = lr;
    r.max_minutes = max_minutes;
    return r;
}

// --profile-step (rank 0 profiles its GPU; written under log_dir, "": printed only): checked
// here, before the GPU is touched
static void run_set_profile(Run* r, const RunFlags& f, const std::string& log_dir) {
    profiler_configure(f.profile_step, r->steps, r->dist->rank, log_dir);
}

// Several GPUs: every rank chose the checkpoint to resume from on its own, before
// the GPU was touched (ckpt_start_or_fail, each verifying the files); they must have
// chosen the same step (they read the same --ckpt-dir), or every rank stops with one
// line. One all-reduce of (step, -step) with max; nothing on one GPU.
static void run_agree_resume(Run* r, const CkptStart& start) {
    if (r->dist->world == 1) return;
#ifdef MEGA_NCCL
    DistComm* c = r->dist->comm;
    const double mine = start.resume_dir.empty() ? -1.0 : (double)start.state.st.step;
    c->arm(c->timeout, "agreeing on the checkpoint to resume from");
    double* h = c->scalars_host;
    h[0] = mine; h[1] = -mine;
    cudaCheck(cudaMemcpyAsync(c->scalars_dev, h, 2 * sizeof(double), cudaMemcpyHostToDevice, c->comm_stream));
    c->ok(ncclAllReduce(c->scalars_dev, c->scalars_dev, 2, ncclFloat64, ncclMax, c->nc, c->comm_stream), "all-reduce");
    cudaCheck(cudaMemcpyAsync(h, c->scalars_dev, 2 * sizeof(double), cudaMemcpyDeviceToHost, c->comm_stream));
    c->sync_comm();
    c->disarm();
    if (h[0] != -h[1])
        fail("rank %d: the ranks chose different checkpoints to resume from (steps %.0f to %.0f, -1: none; this rank: %s): every rank must see "
             "the same --ckpt-dir, on a shared file system", r->dist->rank, -h[1], h[0], start.resume_dir.empty() ? "none" : start.resume_dir.c_str());
#else
    (void)start;
#endif
}

// This process's GPU (several: the NCCL communicator, and the ranks agree on the
// checkpoint they resume from), cuBLAS and the model's stream.
static cudaDeviceProp run_gpu_start(Run* r, cudaStream_t* stream, const CkptStart& start) {
    dist_start(r->dist);
    run_agree_resume(r, start);
    cudaDeviceProp prop = cuda_device_props();
    cublas_init();
    cudaCheck(cudaStreamCreate(stream));
    return prop;
}

// train.log under log_dir ("": none): new, or on resume trimmed to the checkpoint's step.
static void run_open_log(Run* r, const std::string& log_dir, const CkptStart& start) {
    r->log_path = log_dir.empty() ? "" : log_dir + "/train.log";
    r->logf = open_train_log(r->log_path, start, &r->curve);
}

// A resumed run continues the step count and the bad-step count of its checkpoint.
static void run_resume(Run* r, const CkptStart& start) {
    r->start_step = (int)start.state.st.step;
    r->bad_steps = start.state.st.bad_steps;
    r->last_ckpt = start.resume_dir;
    if (profiler.step > 0 && profiler.step <= r->start_step)
        printf("note: --profile-step %d: this run resumes after step %d, so no step is profiled\n", profiler.step, r->start_step);
    r->corrupt_steps = start.corrupt_steps;
}

// The line of the checkpoint plan, which step --ckpt-dir already holds, and (with
// --ckpt-async 1) the host memory background saves need, allocated once now.
static void run_ckpt_plan(Run* r, const CkptStart& start, ModelParams* p) {
    ckpt_print_plan(*r->flags);
    r->saved_step = ckpt_saved_step_at_start(*r->flags, start.resume_dir, r->start_step);
    if (!r->flags->ckpt_dir.empty()) params_ckpt_prepare(r->saver.get(), p, r->flags->ckpt_async != 0);
}

// The background save in flight, if it finished (wait: waits for it): its line, and
// it becomes last_ckpt; a failed write ends the run with its line.
static void run_ckpt_collect(Run* r, bool wait) {
    const std::string dir = params_ckpt_collect(r->saver.get(), wait);
    if (!dir.empty()) r->last_ckpt = dir;
}

// Saves a checkpoint after `done` steps (the loop resumes at step `done`): s holds
// what the trainer adds (batch, data position, RNGs), this the state every run has.
// The save before it is collected first: at most one in flight.
static void run_save(Run* r, ModelParams* p, const CkptModelInfo& info, int done, CkptState s, cudaStream_t stream) {
    s.step = done;
    s.adam_step = p->adam_step;
    s.bad_steps = r->bad_steps;
    s.sched_steps = r->steps;
    const CkptFlags& f = *r->flags;
    const double t0 = wall_seconds();
    run_ckpt_collect(r, true);
    const std::string dir = params_save_checkpoint(r->saver.get(), p, info, s, f.ckpt_dir, f.ckpt_keep, f.ckpt_keep_every, r->corrupt_steps, stream, t0);
    if (!dir.empty()) r->last_ckpt = dir;
    // a corrupt checkpoint of this step is moved aside by this save: from now on the step is a good one
    r->corrupt_steps.erase(std::remove(r->corrupt_steps.begin(), r->corrupt_steps.end(), (int64_t)done), r->corrupt_steps.end());
    r->saved_step = done;
}

static void run_loop_start(Run* r) {
    r->t_start = wall_seconds();
    r->step = r->start_step;
    install_stop_signals();
    profiler_init();
}

// The top of step r->step: a background save that failed ends the run here with its
// line; whether the loop ends here (--steps done, or --max-minutes, which
// on_time_limit hears of first), with the final checkpoint, waited for.
static bool run_ends_here(Run* r, const std::function<void(int)>& save, const std::function<void()>& on_time_limit = nullptr) {
    run_ckpt_collect(r, false);
    const bool timed_out = r->dist->world > 1 ? r->out_of_time : run_out_of_time(r->max_minutes, r->t_start);
    const bool last = r->step >= r->steps || timed_out;
    if (timed_out && r->step < r->steps && on_time_limit) on_time_limit();
    if (last && !r->flags->ckpt_dir.empty() && r->saved_step != r->step) save(r->step);
    if (last) run_ckpt_collect(r, true);
    return last;
}

static void run_step_begin(Run* r) {
    r->t_step = wall_seconds();
    dist_step_begin(r->dist, r->step + 1);   // several GPUs: the watchdog's deadline for this step
    if (profiler.step == r->step + 1) profiler_begin();
}

struct RunStep {
    double loss;   // averaged over the ranks
    float lr, norm;
    double ms;
    bool ok;       // a finite loss and grad norm: the update was applied
};

// After the backward: the loss, a stop signal and the time limit agreed by all
// ranks; the update at the schedule's lr (update returns the grad norm; a
// non-finite one skips it inside), skipped for a non-finite loss; the step's time.
static RunStep run_update(Run* r, double loss, cudaStream_t stream, const std::function<float(float)>& update) {
    const DistAgreed agreed = dist_step_agree(r->dist, loss, run_out_of_time(r->max_minutes, r->t_start), &stop_signal);
    RunStep s;
    s.loss = agreed.loss;
    r->out_of_time = agreed.out_of_time;
    s.lr = schedule_lr(r->sched, r->step);
    const bool loss_ok = std::isfinite(s.loss);
    if (!loss_ok) printf("warning: step %d: loss is %f; skipping this update\n", r->step + 1, s.loss);
    s.norm = loss_ok ? update(s.lr) : NAN;
    cudaCheck(cudaStreamSynchronize(stream));
    s.ms = 1000.0 * (wall_seconds() - r->t_step);
    if (profiler.active) profiler_end(s.ms, r->step_ms.empty() ? 0.0 : r->step_ms.back());
    dist_step_end(r->dist, s.ms);
    r->step_ms.push_back(s.ms);
    s.ok = loss_ok && std::isfinite(s.norm);
    return s;
}

// After the step's update: faults, checkpoints and a stop request
// (run_after_step). True: the loop ends, with r->step the steps done.
static bool run_after(Run* r, bool ok, const std::function<void(int)>& save) {
    const int done = r->step + 1;
    if (!run_after_step(*r->flags, done, ok, &r->bad_steps, r->last_ckpt, save, [r] { run_ckpt_collect(r, true); })) return false;
    r->step = done;
    return true;
}

// train.log closed; with a log directory and a loss, the curve as loss.svg (returns whether written).
static bool run_close_log(Run* r, const std::string& log_dir, const std::string& title) {
    if (r->logf) fclose_or_fail(r->logf, r->log_path);
    if (log_dir.empty() || r->curve.train.empty()) return false;
    write_loss_svg(r->curve, log_dir + "/loss.svg", title);
    return true;
}

// After the model is freed: a background save still in flight, cuBLAS, the stream;
// several GPUs: every rank meets, the communicator goes.
static void run_finish(Run* r, cudaStream_t stream) {
    params_ckpt_finish(r->saver.get());
    cublas_free();
    cudaCheck(cudaStreamDestroy(stream));
    dist_finish(r->dist);
}
