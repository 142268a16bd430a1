/*
Data parallel training on several GPUs, one process per GPU, shared by both
trainers: the process group (launch environment and NCCL id broadcast:
llmc/dist/rendezvous.h; MPI when built with it and launched by mpirun), the NCCL
communicator, ZeRO stages 0/1/2 (plan: llmc/dist/zero.h zero_grad_layout; the
optimizer math on shards: llmc/model/params.cuh), the communication stream and its
overlap with the compute stream, the per-rank memory report, and failure
handling (a watchdog). dev/DISTRIBUTED.md has the design; README "Several GPUs"
the launch lines. A one-process run (world 1) touches none of it: no NCCL, no
second stream, and ModelParams::comm stays null so every hook is a no-op.

Flags (llmc/dist/zero.h dist_add_flags, the same in both trainers): --zero 0|1|2,
--dist-timeout SECONDS, --rendezvous-file PATH, --bucket-mb N.

What runs where, per optimizer step (compute = the trainer's stream, comm = a
second non-blocking stream; every NCCL call is on comm, in the same order on
every rank):
  backward  the trainer calls params_grads_ready(stage) after the head, after
            each layer l (from the last), and after the tail; each call records
            an event on compute and enqueues that stage's buckets on comm behind
            it: ZeRO-0 all-reduce (average) in place, ZeRO-1 reduce-scatter
            (average) into this rank's gradient shard, both at the last
            micro-step only (gradients accumulate locally before); ZeRO-2 the
            reduce-scatter at every micro-step, added into the shard. So the
            reduction of layer l overlaps the backward of layers l-1 .. 0.
            ZeRO-2 keeps only two layer gradient slots (layer l in slot l % 2):
            before layer l-1's backward writes its slot, compute waits for the
            reduce-scatter of layer l+1 (the slot's previous user) and zeroes it.
  update    compute waits for the last bucket; global grad norm (ZeRO 1/2: the
            shard's sum of squares, all-reduced: the padding is zero); AdamW on
            this rank's pieces (llmc/model/params.cuh); ZeRO 1/2 then all-gather the
            bf16 shards on comm, bucket by bucket in forward order (tail, layer
            0 .. L-1, head), each copied out of a staging buffer into the
            weights, with an event per stage.
  forward   params_forward_wait(stage) before the forward uses a stage's
            weights: compute waits on that stage's gather event, so the gather
            of layer l+1.. overlaps the forward of layer l (and the host work
            between steps). ZeRO-0 updates the weights in place: no gather.
  loss      dist_step_agree: one all-reduce of (loss, stop request, time limit)
            before the update, so every rank skips a non-finite step, stops on
            a signal and at --max-minutes together. SIGTERM/SIGINT are blocked in
            every thread of a multi-GPU process (from dist_launch on, so CUDA's,
            NCCL's and the watchdog's threads inherit it) and taken by the main
            thread only there: a signal can never change the trainer's stop flag
            (llmc/train/run_control.h stop_signal) between the agreement and the checkpoint it decides.

Failure handling: the communicator is created non-blocking and its setup
polled against --dist-timeout (as is the rendezvous). A watchdog thread polls
ncclCommGetAsyncError every 200 ms and, while a step (or a barrier) is in
progress, its deadline: --dist-timeout, or 3x the median step time when that
is longer. On an error or a missed deadline it prints one line
("error: rank 1: no progress for 60 s in step 12 (...); another rank died or
hangs"), aborts the communicator and _exit(1)s. Checkpoints are written by rank
0 while the others wait at a barrier with a longer deadline
(max(10 x --dist-timeout, 600 s)).

Builds without NCCL (MEGA_NCCL undefined) compile; a launch with more than one
process then fails at once with one line.
*/
#pragma once
#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <csignal>
#include <pthread.h>
#include <unistd.h>
#include "../core/utils.h"
#include "rendezvous.h"
#include "zero.h"
#include "../core/cuda_common.h"
#include "../model/params.cuh"
#ifdef MEGA_NCCL
#include <nccl.h>
#include "nccl_wait.h"
#endif
#ifdef MEGA_MPI
#include <mpi.h>
#endif

struct DistComm;

struct Dist {
    DistFlags flags;
    LaunchEnv env;
    int rank = 0, world = 1, device = 0;
    bool mpi = false;            // MPI_Init was called (MEGA_MPI build launched by mpirun)
    std::string id_via;          // how the NCCL id travelled (for the startup line)
    DistComm* comm = nullptr;    // world > 1
};

// ---------------------------------------------------------------- launch
// Open MPI's mpirun, or MPICH's mpiexec (srun's tasks are not: they use the
// Slurm variables and the TCP rendezvous, whatever PMI variables srun sets).
static bool dist_mpi_launched() {
    if (getenv("OMPI_COMM_WORLD_SIZE")) return true;
    return getenv("PMI_SIZE") && getenv("PMI_RANK") && !getenv("SLURM_PROCID");
}

// SIGTERM and SIGINT blocked (true) or not in the calling thread; threads started later inherit it.
static void dist_block_stop_signals(bool block) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &s, nullptr);
}

// This process's rank and the world size: before any data is read (the loaders
// need them) and before the GPU is touched. One process: returns at once.
static Dist dist_launch(const DistFlags& f) {
    dist_validate_flags(f);
    Dist d;
    d.flags = f;
#ifdef MEGA_MPI
    const bool use_mpi = dist_mpi_launched();
#else
    const bool use_mpi = false;
#endif
    d.env = launch_env_read(!use_mpi && f.rendezvous_file.empty());
    // before MPI, CUDA and NCCL start their threads, which inherit it (dist_step_agree)
    if (d.env.world > 1 || use_mpi) dist_block_stop_signals(true);
#ifdef MEGA_MPI
    if (use_mpi) {
        if (MPI_Init(nullptr, nullptr) != MPI_SUCCESS) fail("MPI_Init failed (launched by mpirun: OMPI_COMM_WORLD_SIZE or PMI_SIZE is set)");
        d.mpi = true;
        int r = 0, w = 1, lr = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        MPI_Comm_size(MPI_COMM_WORLD, &w);
        MPI_Comm local;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &local);
        MPI_Comm_rank(local, &lr);
        MPI_Comm_free(&local);
        if (d.env.source != "none" && (d.env.world != w || d.env.rank != r))
            fail("rank %d: MPI says rank %d of %d, but %s=%d %s=%d (launch with mpirun alone, without torchrun variables)", r, r, w,
                 d.env.world_var.c_str(), d.env.world, d.env.rank_var.c_str(), d.env.rank);
        d.env.world = w; d.env.rank = r; d.env.local_rank = lr;
        if (d.env.source == "none") d.env.source = "MPI";
    }
#endif
    d.rank = d.env.rank;
    d.world = d.env.world;
    if (d.world == 1) dist_block_stop_signals(false);
    if (d.world > 1) {
#ifndef MEGA_NCCL
        fail("rank %d: %s=%d processes, but this build has no NCCL (nccl.h was not found when it was built); install NCCL and rebuild, or run one process",
             d.rank, d.env.world_var.c_str(), d.world);
#endif
    }
    return d;
}

// ---------------------------------------------------------------- NCCL communication
#ifdef MEGA_NCCL

#if defined(ENABLE_FP32)
static const ncclDataType_t NCCL_FLOATX = ncclFloat32;
#else
static const ncclDataType_t NCCL_FLOATX = ncclBfloat16;
#endif

// gshard[i] += tmp[i] (ZeRO-2: a later micro-step's reduced bucket slice)
__global__ static void dist_add_kernel(float* dst, const float* src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) dst[i] += src[i];
}

// One run of a bucket's elements: staging offset -> place in the layout
struct DistCopy { size_t staging, layout, count; };

struct DistComm : ParamsComm {
    ncclComm_t nc = nullptr;
    std::atomic<ncclComm_t> cp{nullptr};             // the context-parallel group's (--cp; dist_cp_comm), watched too
    cudaStream_t comm_stream = nullptr, compute = nullptr;
    double timeout = 60;
    int n_layer = 0;
    std::vector<std::vector<int>> stage_buckets;     // by zero_stage_index: the buckets of that stage
    std::vector<std::vector<DistCopy>> copies;       // per bucket: its segments' runs
    cudaEvent_t ev_compute = nullptr;                // compute -> comm (re-recorded for each handoff)
    cudaEvent_t ev_reduced = nullptr;                // comm: the last gradient reduction of a backward
    cudaEvent_t ev_slot_free[2] = {nullptr, nullptr};  // ZeRO-2: a layer slot's reduce-scatter finished
    std::vector<cudaEvent_t> ev_gathered;            // by stage index: that stage's weights gathered
    floatX* ag_staging = nullptr;                    // ZeRO 1/2: one bucket of gathered weights
    float* rs_temp = nullptr;                        // ZeRO-2: one bucket slice for accumulation
    size_t max_bucket = 0;
    double* scalars_dev = nullptr;                   // dist_step_agree, barriers
    double* scalars_host = nullptr;                  // pinned
    // watchdog
    std::thread watchdog;
    std::atomic<bool> watchdog_stop{false};
    std::atomic<double> deadline{0.0};               // wall_seconds(); 0: nothing in progress
    std::atomic<double> armed_for{0.0};              // seconds the current deadline allows
    std::mutex mu;
    std::string phase = "startup";
    int step = 0;
    std::vector<double> step_ms;

    void set_phase(const std::string& s) { std::lock_guard<std::mutex> g(mu); phase = s; }
    void arm(double seconds, const std::string& what) {
        set_phase(what);
        armed_for.store(seconds);
        deadline.store(wall_seconds() + seconds);
    }
    void disarm() { deadline.store(0.0); }
    std::string describe() {
        std::lock_guard<std::mutex> g(mu);
        return phase;
    }
    // One line, the communicator aborted (bounded: a stuck abort does not keep the process), exit 1.
    [[noreturn]] void die(const std::string& msg) {
        fflush(stdout);
        fprintf(stderr, "error: rank %d: %s\n", rank, msg.c_str());
        fflush(stderr);
        std::thread([] { sleep(10); _exit(1); }).detach();
        if (ncclComm_t x = cp.load()) ncclCommAbort(x);
        if (nc) ncclCommAbort(nc);
        _exit(1);
    }
    // An NCCL call on this non-blocking communicator: it may return ncclInProgress
    // while it is being enqueued (the first use of a connection waits for the peers);
    // wait for that, bounded by the watchdog's deadline or, outside a step, by the long one.
    void ok(ncclResult_t r, const char* what) {
        const double t0 = wall_seconds();
        r = nccl_wait(nc, r, 0, [&] { return deadline.load() == 0 && wall_seconds() - t0 > long_deadline(); });
        if (r == ncclInProgress) {
            char buf[256];
            snprintf(buf, sizeof buf, "NCCL %s in %s was not enqueued within %.0f s; another rank died or hangs", what, describe().c_str(),
                     long_deadline());
            die(buf);
        }
        if (r != ncclSuccess) {
            char buf[512];
            snprintf(buf, sizeof buf, "NCCL %s failed in %s: %s (%s); another rank died or the communicator broke", what,
                     describe().c_str(), ncclGetErrorString(r), ncclGetLastError(nc));
            die(buf);
        }
    }
    void record_compute_then_comm_waits() {
        cudaCheck(cudaEventRecord(ev_compute, compute));
        cudaCheck(cudaStreamWaitEvent(comm_stream, ev_compute, 0));
    }
    // The host waits for the comm stream (the watchdog's deadline is armed by the caller).
    void sync_comm() { cudaCheck(cudaStreamSynchronize(comm_stream)); }
    double long_deadline() const { return std::max(10.0 * timeout, 600.0); }

    // ---- ParamsComm
    void backward_begin(ModelParams* p) override {
        if (zero != 2) return;
        // the previous micro-step's reductions read these buffers: wait, then zero what this backward accumulates into
        cudaCheck(cudaStreamWaitEvent(compute, ev_reduced, 0));
        // head, the layer slots and tail are back to back: the whole buffer (zero_grad_layout's phys_total)
        cudaCheck(cudaMemsetAsync(p->grads, 0, p->grad_elems * sizeof(float), compute));
    }

    void grads_ready(ModelParams* p, int stage) override {
        const bool last_micro = p->micro + 1 >= p->micro_steps;
        if (zero != 2 && !last_micro) return;   // ZeRO 0/1 accumulate locally until the last micro-step
        const ZeroGradLayout& z = p->zl;
        const std::vector<int>& bs = stage_buckets[zero_stage_index(stage, n_layer)];
        if (!bs.empty()) {
            record_compute_then_comm_waits();
            for (int bi : bs) {
                const ZeroCommBucket& b = z.buckets[bi];
                const size_t s = b.size / (size_t)world;
                float* src = p->grads + b.phys;
                if (zero == 0) {
                    ok(ncclAllReduce(src, src, b.size, ncclFloat32, ncclAvg, nc, comm_stream), "all-reduce");
                } else if (zero == 1 || p->micro == 0) {
                    ok(ncclReduceScatter(src, p->grad_shard + b.shard_offset, s, ncclFloat32, ncclAvg, nc, comm_stream), "reduce-scatter");
                } else {
                    ok(ncclReduceScatter(src, rs_temp, s, ncclFloat32, ncclAvg, nc, comm_stream), "reduce-scatter");
                    dist_add_kernel<<<(unsigned)std::min<size_t>((s + 255) / 256, 1024), 256, 0, comm_stream>>>(p->grad_shard + b.shard_offset, rs_temp, s);
                    cudaLaunchCheck();
                }
            }
        }
        if (zero == 2 && stage >= 0) {
            // the slot of layer `stage` is free once its reduce-scatter is done; layer stage-1 writes
            // its slot next: if a later layer used that slot, wait for its reduce-scatter and zero it
            cudaCheck(cudaEventRecord(ev_slot_free[stage % z.slots], comm_stream));
            const int k = stage - 1;
            if (k >= 0 && k + z.slots <= n_layer - 1) {
                cudaCheck(cudaStreamWaitEvent(compute, ev_slot_free[k % z.slots], 0));
                cudaCheck(cudaMemsetAsync(p->grads + z.slot_begin + (size_t)(k % z.slots) * z.slot_size, 0, z.slot_size * sizeof(float), compute));
            }
        }
        if (stage == ZERO_TAIL) cudaCheck(cudaEventRecord(ev_reduced, comm_stream));
    }

    void forward_wait(ModelParams*, int stage) override {
        if (zero == 0) return;
        cudaCheck(cudaStreamWaitEvent(compute, ev_gathered[zero_stage_index(stage, n_layer)], 0));
    }

    void grads_wait(ModelParams*) override {
        set_phase("step " + std::to_string(step) + " (gradient reduction)");
        cudaCheck(cudaStreamWaitEvent(compute, ev_reduced, 0));
    }

    float sum_to_host(ModelParams*, float* dev) override {
        set_phase("step " + std::to_string(step) + " (grad-norm all-reduce)");
        record_compute_then_comm_waits();
        ok(ncclAllReduce(dev, dev, 1, ncclFloat32, ncclSum, nc, comm_stream), "all-reduce");
        float* h = (float*)scalars_host;
        cudaCheck(cudaMemcpyAsync(h, dev, sizeof(float), cudaMemcpyDeviceToHost, comm_stream));
        sync_comm();
        return *h;
    }

    void gather_params(ModelParams* p) override {
        if (zero == 0) return;
        set_phase("step " + std::to_string(step) + " (weight all-gather)");
        const ZeroGradLayout& z = p->zl;
        record_compute_then_comm_waits();
        auto gather_stage = [&](int stage) {
            const int si = zero_stage_index(stage, n_layer);
            for (int bi : stage_buckets[si]) {
                const ZeroCommBucket& b = z.buckets[bi];
                ok(ncclAllGather(p->params_shard + b.shard_offset, ag_staging, b.size / (size_t)world, NCCL_FLOATX, nc, comm_stream), "all-gather");
                for (const DistCopy& c : copies[bi])
                    cudaCheck(cudaMemcpyAsync(p->params + c.layout, ag_staging + c.staging, c.count * sizeof(floatX), cudaMemcpyDeviceToDevice, comm_stream));
            }
            cudaCheck(cudaEventRecord(ev_gathered[si], comm_stream));
        };
        gather_stage(ZERO_TAIL);                         // in the order the forward uses them
        for (int l = 0; l < n_layer; l++) gather_stage(l);
        gather_stage(ZERO_HEAD);
    }

    bool gather_state(ModelParams* p, std::vector<float>* master, std::vector<float>* m, std::vector<float>* v) override {
        if (zero == 0) return rank == 0;   // every rank holds the full state: rank 0 writes its own
        arm(long_deadline(), "gathering the optimizer state for a checkpoint");
        cudaCheck(cudaStreamSynchronize(compute));
        const ZeroGradLayout& z = p->zl;
        float* staging = (float*)cuda_malloc_or_fail(std::max<size_t>(max_bucket, 1) * sizeof(float), "checkpoint gather staging");
        float* srcs[3] = {p->master, p->adam_m, p->adam_v};
        std::vector<float>* dsts[3] = {master, m, v};
        for (int a = 0; a < 3; a++) {
            if (!dsts[a]) continue;
            if (rank == 0) dsts[a]->assign(p->num_params, 0.0f);
            for (size_t bi = 0; bi < z.buckets.size(); bi++) {
                const ZeroCommBucket& b = z.buckets[bi];
                ok(ncclAllGather(srcs[a] + b.shard_offset, staging, b.size / (size_t)world, ncclFloat32, nc, comm_stream), "all-gather");
                sync_comm();
                if (rank == 0)
                    for (const DistCopy& c : copies[bi])
                        cudaCheck(cudaMemcpy(dsts[a]->data() + c.layout, staging + c.staging, c.count * sizeof(float), cudaMemcpyDeviceToHost));
            }
        }
        cudaCheck(cudaFree(staging));
        disarm();
        return rank == 0;
    }

    // A barrier of the hosts: all-reduce of one number on the comm stream, the host waits
    // (the long deadline: rank 0 may be writing files). Does not touch the compute stream
    // (dist_finish runs after the trainer destroyed it).
    void barrier(const char* what) {
        arm(long_deadline(), std::string("waiting for every rank after ") + what);
        ok(ncclAllReduce(scalars_dev, scalars_dev, 1, ncclFloat64, ncclSum, nc, comm_stream), "all-reduce");
        sync_comm();
        disarm();
    }
    void rank0_done(ModelParams*, const char* what) override { barrier(what); }

    void watchdog_loop() {
        while (!watchdog_stop.load()) {
            usleep(200 * 1000);
            if (watchdog_stop.load()) return;
            for (ncclComm_t comm : {nc, cp.load()}) {
                if (!comm) continue;
                ncclResult_t e = ncclSuccess;
                ncclResult_t q = ncclCommGetAsyncError(comm, &e);
                if (q == ncclSuccess && e != ncclSuccess && e != ncclInProgress) {
                    char buf[512];
                    snprintf(buf, sizeof buf, "NCCL reported %s during %s (%s%s); another rank died or the network failed", ncclGetErrorString(e),
                             describe().c_str(), comm == nc ? "" : "context-parallel group: ", ncclGetLastError(comm));
                    die(buf);
                }
            }
            const double dl = deadline.load();
            if (dl > 0 && wall_seconds() > dl) {
                char buf[512];
                snprintf(buf, sizeof buf, "no progress for %.0f s in %s; another rank died or hangs (raise --dist-timeout if steps legitimately take this long)",
                         armed_for.load(), describe().c_str());
                die(buf);
            }
        }
    }
};
#else
struct DistComm : ParamsComm {};
#endif  // MEGA_NCCL

// ---------------------------------------------------------------- process group
// Picks this process's GPU and (world > 1) creates the communicator: the NCCL id
// from rank 0 over MPI, TCP or a file, then a non-blocking init polled against
// --dist-timeout; starts the watchdog. Replaces the trainers' cudaSetDevice(0).
static void dist_start(Dist* d) {
    // the run's first CUDA call: without a GPU or driver, one line that says so (CUDA's own
    // error there is "driver version is insufficient", a wrong diagnosis)
    int n_dev = 0;
    const cudaError_t ce = cudaGetDeviceCount(&n_dev);
    const std::string who = d->world > 1 ? "rank " + std::to_string(d->rank) + ": " : "";
    if (ce != cudaSuccess) fail("%sno CUDA GPU found (cudaGetDeviceCount: %s)", who.c_str(), cudaGetErrorString(ce));
    if (n_dev == 0) fail("%sno CUDA GPU found (cudaGetDeviceCount: 0 devices)", who.c_str());
    if (d->world == 1) {
        d->device = 0;
        cudaCheck(cudaSetDevice(0));
        return;
    }
#ifdef MEGA_NCCL
    d->device = launch_env_device(d->env, n_dev);
    cudaCheck(cudaSetDevice(d->device));
    const double timeout = d->flags.timeout;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (d->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) fail("rank 0: ncclGetUniqueId failed: %s", ncclGetErrorString(r));
    }
    if (d->mpi) {
#ifdef MEGA_MPI
        if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) fail("rank %d: MPI_Bcast of the NCCL id failed", d->rank);
        d->id_via = "MPI";
#endif
    } else if (!d->flags.rendezvous_file.empty()) {
        rendezvous_broadcast_file(&id, sizeof id, d->rank, d->world, d->flags.rendezvous_file, timeout);
        d->id_via = "file " + d->flags.rendezvous_file;
    } else {
        rendezvous_broadcast_tcp(&id, sizeof id, d->rank, d->world, d->env.master_addr, d->env.master_port, timeout);
        d->id_via = "TCP " + d->env.master_addr + ":" + std::to_string(d->env.master_port);
    }
    DistComm* c = new DistComm();
    c->rank = d->rank;
    c->world = d->world;
    c->zero = d->flags.zero;
    c->timeout = timeout;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    const double dl = wall_seconds() + timeout;
    ncclResult_t r = ncclCommInitRankConfig(&c->nc, d->world, id, d->rank, &cfg);
    r = nccl_wait(c->nc, r, 10 * 1000, [&] { return wall_seconds() > dl; });
    if (r == ncclInProgress) {
        ncclCommAbort(c->nc);
        fail("rank %d: the NCCL communicator of %d ranks was not ready within %g s (--dist-timeout); another rank failed or is missing",
             d->rank, d->world, timeout);
    }
    if (r != ncclSuccess)
        fail("rank %d: NCCL communicator setup failed: %s (%s)", d->rank, ncclGetErrorString(r), c->nc ? ncclGetLastError(c->nc) : "");
    cudaCheck(cudaStreamCreateWithFlags(&c->comm_stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&c->ev_compute, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&c->ev_reduced, cudaEventDisableTiming));
    for (cudaEvent_t& e : c->ev_slot_free) cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    c->scalars_dev = (double*)cuda_malloc_or_fail(16 * sizeof(double), "communication scalars");
    cudaCheck(cudaMemset(c->scalars_dev, 0, 16 * sizeof(double)));
    cudaCheck(cudaMallocHost(&c->scalars_host, 16 * sizeof(double)));
    c->watchdog = std::thread([c] { c->watchdog_loop(); });
    d->comm = c;
    int v = 0;
    ncclGetVersion(&v);
    if (d->rank == 0)
        printf("data parallel: %d processes (%s variables; NCCL id via %s) | ZeRO-%d | buckets of %d MiB | NCCL %d.%d.%d | --dist-timeout %g s\n",
               d->world, d->env.source.c_str(), d->id_via.c_str(), d->flags.zero, d->flags.bucket_mb, v / 10000, (v / 100) % 100, v % 100, timeout);
#endif
}

// The communicator of this rank's context-parallel group (--cp n: ranks g*n .. g*n+n-1), split
// from the world's, as an opaque pointer for llmc/attention/ring_attention.cuh; null on one process.
static void* dist_cp_comm(Dist* d, int n) {
    if (d->world == 1 || n <= 1) return nullptr;
#ifdef MEGA_NCCL
    DistComm* c = d->comm;
    ncclComm_t cp = nullptr;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    const double dl = wall_seconds() + d->flags.timeout;
    ncclResult_t r = ncclCommSplit(c->nc, d->rank / n, d->rank % n, &cp, &cfg);
    r = nccl_wait(cp ? cp : c->nc, r, 10 * 1000, [&] { return wall_seconds() > dl; });
    if (r == ncclInProgress) fail("rank %d: the context-parallel communicator was not ready within %g s (--dist-timeout)", d->rank, d->flags.timeout);
    if (r != ncclSuccess || !cp) fail("rank %d: NCCL could not make the context-parallel communicator: %s", d->rank, ncclGetErrorString(r));
    c->cp.store(cp);   // watched by the watchdog, closed by dist_finish
    return (void*)cp;
#else
    return nullptr;
#endif
}

// Plans where the gradients live and how they are reduced (llmc/dist/zero.h), and
// hooks the communicator into the model: call before the trainer's build
// (params_alloc reads the plan). kinds: per tensor its ParamStage (the model's
// gpt_param_stages or dit_param_stages).
static void dist_attach(Dist* d, ModelParams* p, const std::vector<ParamTensor>& layout, const std::vector<int>& kinds, int n_layer,
                        cudaStream_t compute) {
    if (d->world == 1) return;
#ifdef MEGA_NCCL
    DistComm* c = d->comm;
    p->zl = zero_grad_layout(layout, kinds, n_layer, d->world, 16, (size_t)d->flags.bucket_mb << 20, d->flags.zero == 2 ? 2 : 0);
    p->comm = c;
    c->compute = compute;
    c->n_layer = n_layer;
    const ZeroGradLayout& z = p->zl;
    c->stage_buckets.assign(n_layer + 2, {});
    c->copies.assign(z.buckets.size(), {});
    for (size_t bi = 0; bi < z.buckets.size(); bi++) {
        const ZeroCommBucket& b = z.buckets[bi];
        c->stage_buckets[zero_stage_index(b.stage, n_layer)].push_back((int)bi);
        c->max_bucket = std::max(c->max_bucket, b.size);
        for (const ZeroSegment& sg : z.segments) {
            const size_t x0 = std::max(b.begin, sg.grad), x1 = std::min(b.begin + b.size, sg.grad + sg.count);
            if (x0 < x1) c->copies[bi].push_back({x0 - b.begin, layout[sg.tensor].offset + sg.tensor_offset + (x0 - sg.grad), x1 - x0});
        }
    }
    c->ev_gathered.assign(n_layer + 2, nullptr);
    for (cudaEvent_t& e : c->ev_gathered) cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    if (c->zero >= 1) {
        c->ag_staging = (floatX*)cuda_malloc_or_fail(c->max_bucket * sizeof(floatX), "all-gather staging");
        cudaCheck(cudaMemset(c->ag_staging, 0, c->max_bucket * sizeof(floatX)));
    }
    if (c->zero == 2) c->rs_temp = (float*)cuda_malloc_or_fail(c->max_bucket / (size_t)d->world * sizeof(float), "reduce-scatter staging");
#else
    (void)p; (void)layout; (void)kinds; (void)n_layer; (void)compute;
#endif
}

// Every rank prints its memory (one line each, from the plan: llmc/dist/zero.h
// zero_grad_layout_memory), then ranks other than 0 stop printing to stdout
// (errors still go to stderr). Nothing on one GPU.
static void dist_memory_report(Dist* d, const ModelParams* p, size_t activation_bytes) {
    if (d->world == 1) return;
#ifdef MEGA_NCCL
    const DistComm* c = d->comm;
    const ZeroGradLayout& z = p->zl;
    const ZeroMemory m = zero_grad_layout_memory(z, p->num_params, c->zero, sizeof(floatX));
    const size_t comm_bytes = (c->ag_staging ? c->max_bucket * sizeof(floatX) : 0);
    size_t free_b = 0, total_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    const size_t total = m.total() + activation_bytes + comm_bytes;
    char line[640];
    snprintf(line, sizeof line,
             "memory rank %d (GPU %d, ZeRO-%d): weights %.3f GiB | grads %.3f GiB | master %.3f GiB | AdamW %.3f GiB | activations %.3f GiB | "
             "comm %.3f GiB | total %.3f GiB | GPU used %.2f of %.2f GiB | shard %zu of %zu params (+%zu padding), %zu buckets\n",
             d->rank, d->device, c->zero, gib(m.params), gib(m.grads), gib(m.master), gib(m.adam), gib(activation_bytes), gib(comm_bytes), gib(total),
             gib(total_b - free_b), gib(total_b), c->zero >= 1 ? z.shard : p->num_params, p->num_params,
             (size_t)d->world * z.shard - p->num_params, z.buckets.size());
    fputs(line, stdout);
    fflush(stdout);
    if (d->rank != 0 && !freopen("/dev/null", "w", stdout)) fail("rank %d: cannot redirect stdout to /dev/null", d->rank);
#else
    (void)p; (void)activation_bytes;
#endif
}

// ---------------------------------------------------------------- the step
// Around each training step (forward, backward, update): the watchdog's deadline.
static void dist_step_begin(Dist* d, int step) {
    if (d->world == 1) return;
#ifdef MEGA_NCCL
    DistComm* c = d->comm;
    c->step = step;
    double budget = c->timeout;
    if (c->step_ms.size() >= 3) {
        std::vector<double> s(c->step_ms);
        std::sort(s.begin(), s.end());
        budget = std::max(budget, 3.0 * s[s.size() / 2] / 1000.0);
    }
    c->arm(budget, "step " + std::to_string(step) + " (forward, backward and gradient reduction)");
#else
    (void)step;
#endif
}

static void dist_step_end(Dist* d, double ms) {
    if (d->world == 1) return;
#ifdef MEGA_NCCL
    DistComm* c = d->comm;
    c->disarm();
    c->step_ms.push_back(ms);
    if (c->step_ms.size() > 64) c->step_ms.erase(c->step_ms.begin());
#else
    (void)ms;
#endif
}

// What every rank must agree on before the update: the mean loss over the ranks
// (so a non-finite one skips the step everywhere), and whether any rank got a
// stop signal (*stop_signal, the flag the trainer's signal handler sets: set to
// SIGTERM on every rank when any rank got one) or reached --max-minutes. One
// all-reduce; the input on one GPU.
struct DistAgreed { double loss; bool out_of_time; };
static DistAgreed dist_step_agree(Dist* d, double loss, bool out_of_time, volatile sig_atomic_t* stop_signal) {
    DistAgreed a = {loss, out_of_time};
    if (d->world == 1) return a;
    // the one place a multi-GPU process takes a pending stop signal (see the top of this file)
    dist_block_stop_signals(false);
    dist_block_stop_signals(true);
    const bool stop = *stop_signal != 0;
#ifdef MEGA_NCCL
    DistComm* c = d->comm;
    c->set_phase("step " + std::to_string(c->step) + " (loss all-reduce)");
    double* h = c->scalars_host;
    h[0] = loss; h[1] = stop ? 1 : 0; h[2] = out_of_time ? 1 : 0;
    cudaCheck(cudaMemcpyAsync(c->scalars_dev, h, 3 * sizeof(double), cudaMemcpyHostToDevice, c->comm_stream));
    c->ok(ncclAllReduce(c->scalars_dev, c->scalars_dev, 3, ncclFloat64, ncclSum, c->nc, c->comm_stream), "all-reduce");
    cudaCheck(cudaMemcpyAsync(h, c->scalars_dev, 3 * sizeof(double), cudaMemcpyDeviceToHost, c->comm_stream));
    c->sync_comm();
    a.loss = h[0] / d->world;
    if (h[1] > 0 && !*stop_signal) *stop_signal = SIGTERM;
    a.out_of_time = h[2] > 0;
    c->set_phase("step " + std::to_string(c->step) + " (update)");
#endif
    return a;
}

// The mean of x over all ranks (every rank calls it at the same point): a value each rank
// computed on its own part, e.g. a context-parallel rank's validation loss over its tokens.
// The input on one GPU.
static double dist_mean(Dist* d, double x, const char* what) {
    if (d->world == 1) return x;
#ifdef MEGA_NCCL
    DistComm* c = d->comm;
    c->set_phase(std::string(what) + " (all-reduce)");
    double* h = c->scalars_host;
    h[0] = x;
    cudaCheck(cudaMemcpyAsync(c->scalars_dev, h, sizeof(double), cudaMemcpyHostToDevice, c->comm_stream));
    c->ok(ncclAllReduce(c->scalars_dev, c->scalars_dev, 1, ncclFloat64, ncclSum, c->nc, c->comm_stream), "all-reduce");
    cudaCheck(cudaMemcpyAsync(h, c->scalars_dev, sizeof(double), cudaMemcpyDeviceToHost, c->comm_stream));
    c->sync_comm();
    return h[0] / d->world;
#else
    (void)what;
    return x;
#endif
}

// At the end of main: every rank meets (rank 0 may still be writing files),
// then the communicator is torn down and MPI finalized.
#ifdef MEGA_NCCL
// Flushes and tears down a communicator, bounded: one that does not finish in time is aborted.
static void dist_comm_close(ncclComm_t* nc, double timeout) {
    if (!*nc) return;
    const double dl = wall_seconds() + timeout;
    const ncclResult_t r = nccl_wait(*nc, ncclCommFinalize(*nc), 1000, [&] { return wall_seconds() >= dl; });
    if (r == ncclSuccess) ncclCommDestroy(*nc);
    else ncclCommAbort(*nc);
    *nc = nullptr;
}
#endif

static void dist_finish(Dist* d) {
#ifdef MEGA_NCCL
    if (DistComm* c = d->comm) {
        c->barrier("the end of the run");
        c->watchdog_stop.store(true);
        c->watchdog.join();
        ncclComm_t cp = c->cp.exchange(nullptr);
        dist_comm_close(&cp, c->timeout);
        dist_comm_close(&c->nc, c->timeout);
    }
#endif
#ifdef MEGA_MPI
    if (d->mpi) MPI_Finalize();   // also after an mpirun of one process
#endif
    (void)d;
}
