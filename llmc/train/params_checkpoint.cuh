// A model's parameters (llmc/model/params.cuh) in checkpoints (llmc/train/checkpoint.h):
// saving the device buffers, gathered from the ranks of a multi-GPU run, and
// loading them, into shards where a run keeps them sharded.
#pragma once
#include <cstring>
#include <new>
#include <string>
#include <vector>
#include "../core/utils.h"
#include "../core/cuda_common.h"
#include "../model/params.cuh"
#include "checkpoint.h"
#include "checkpoint_async.h"

// ----------------------------------------------------------------------------
// Checkpoints (format, atomic writes, validation: llmc/train/checkpoint.h).
// model.bin holds the fp32 master weights; the compute weights are derived from
// them on load exactly as the AdamW kernel derives them ((floatX)master), so they
// come back bit-identical. state.bin holds the AdamW moments and step count and
// what the trainer puts in its CkptState. Device buffers stream to and from the
// files through a host chunk.

static CkptSource device_source(const float* dev) {
    return [dev](size_t off, size_t n, float* dst) { cudaCheck(cudaMemcpy(dst, dev + off, n * sizeof(float), cudaMemcpyDeviceToHost)); };
}
static CkptSink device_sink(float* dev) {
    return [dev](size_t off, size_t n, const float* src) { cudaCheck(cudaMemcpy(dev + off, src, n * sizeof(float), cudaMemcpyHostToDevice)); };
}

// What the saves of a run keep from one to the next. Background saves (--ckpt-async 1)
// need a host copy of everything a checkpoint holds, made once per save while the
// loop waits: one GPU (and rank 0 of a ZeRO-0 run) copies its master weights, AdamW
// moments (and EMA) into pinned memory allocated once (params_ckpt_prepare); ZeRO
// 1/2 gathers them to rank 0 into host arrays kept from save to save. The writer
// thread then has them until the save is collected (params_ckpt_collect).
struct CkptSaver {
    bool async = false;
    float* pinned = nullptr;            // [arrays][num_params]: master, m, v, then the EMA if any
    size_t pinned_arrays = 0;
    std::vector<float> gathered[3];     // ZeRO 1/2, rank 0: master, m, v
    CkptAsyncWriter writer;
    double waited_s = 0, mib = 0;       // the save in flight: the loop's wait, its size
};

// Whether this rank writes the checkpoint files (rank 0 of several; the others wait for it).
static bool params_ckpt_writes(const ModelParams* p) { return !p->comm || p->comm->rank == 0; }

static double params_ckpt_mib(const ModelParams* p) { return (double)p->num_params * (12.0 + (p->ema ? 4.0 : 0.0)) / 1048576.0; }

// Allocates what background saves need, once, at the start of a run with --ckpt-dir.
// Where the host cannot give it (a large model on a small host), the run says so in one
// line and saves in the loop, as --ckpt-async 0 does: nothing is found out at the first save.
static void params_ckpt_prepare(CkptSaver* s, ModelParams* p, bool async) {
    s->async = async;
    if (!async || !params_ckpt_writes(p)) return;
    const size_t n = p->num_params;
    if (params_sharded(p)) {
        try {
            for (std::vector<float>& g : s->gathered) g.reserve(n);   // gather_state's assign() keeps this capacity
        } catch (const std::bad_alloc&) {
            for (std::vector<float>& g : s->gathered) std::vector<float>().swap(g);
            printf("note: --ckpt-async 1: %.2f GiB of host memory for the gathered checkpoint cannot be had: checkpoints are saved in the loop (--ckpt-async 0)\n",
                   3.0 * n * sizeof(float) / 1073741824.0);
            s->async = false;
        }
        return;
    }
    s->pinned_arrays = 3 + (p->ema ? 1 : 0);
    const size_t bytes = s->pinned_arrays * n * sizeof(float);
    const cudaError_t e = cudaMallocHost((void**)&s->pinned, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();   // clear the failed allocation's error
        s->pinned = nullptr;
        s->async = false;
        printf("note: --ckpt-async 1: %.2f GiB of pinned host memory for background saves cannot be had (%s): checkpoints are saved in the loop (--ckpt-async 0)\n",
               bytes / 1073741824.0, cudaGetErrorString(e));
    }
}

// The save in flight, if it has finished (wait: waits for it): prints its line and
// returns its directory; a failed write ends the run with its one line. "": none.
static std::string params_ckpt_collect(CkptSaver* s, bool wait) {
    if (!ckpt_async_busy(&s->writer)) return "";
    CkptAsyncResult r;
    if (wait) r = ckpt_async_wait(&s->writer);
    else if (!ckpt_async_poll(&s->writer, &r)) return "";
    if (!r.ok) fail("%s", r.err.c_str());
    printf("saved checkpoint %s (%.1f MiB, written in %.2f s in the background; the loop waited %.2f s%s)\n", r.dir.c_str(), s->mib, r.write_s,
           s->waited_s, r.removed.empty() ? "" : ("; deleted " + std::to_string(r.removed.size()) + " older").c_str());
    return r.dir;
}

// The end of a run: the save in flight is collected, the pinned memory freed.
static void params_ckpt_finish(CkptSaver* s) {
    params_ckpt_collect(s, true);
    if (s->pinned) cudaCheck(cudaFreeHost(s->pinned));
    s->pinned = nullptr;
}

// Writes dir/step_N (N = st.step) and moves `latest`, keeping the newest keep_last
// (and multiples of keep_every; never deleting corrupt_steps); a write error (full
// disk) ends the run with one line, the previous checkpoint intact. With s->async
// the loop waits only for the host copy, a thread writes the files (collected by
// params_ckpt_collect, which the caller must have done for the previous save),
// and it returns ""; else it returns the checkpoint's directory once written.
// A multi-GPU run: every rank calls it (the shards are gathered to rank 0, which
// writes the single-GPU format; the others return ""), then waits for rank 0 (its
// copy, with s->async; its files, without). t0: when the loop began on this save
// (wall_seconds(), before collecting the previous one), for the "the loop waited" it prints.
static std::string params_save_checkpoint(CkptSaver* s, ModelParams* p, const CkptModelInfo& info, const CkptState& st, const std::string& dir,
                                          int keep_last, int keep_every, const std::vector<int64_t>& corrupt_steps, cudaStream_t stream,
                                          double t0) {
    if (ckpt_async_busy(&s->writer)) fail("checkpoint of step %lld: the previous save was not collected (a bug)", (long long)st.step);
    cudaCheck(cudaStreamSynchronize(stream));
    std::vector<float> local[3];   // ZeRO 1/2: the gathered master weights and moments (rank 0), kept only for background saves
    std::vector<float>* g = s->async ? s->gathered : local;
    if (p->comm && !p->comm->gather_state(p, &g[0], &g[1], &g[2])) {
        p->comm->rank0_done(p, "checkpoint write");
        return "";
    }
    const bool gathered = !g[0].empty();
    CkptWrite w;
    w.dir = dir;
    w.step = st.step;
    w.info = info;
    w.dtype = CKPT_F32;
    w.state = st;
    w.keep_last = keep_last;
    w.keep_every = keep_every;
    w.corrupt_steps = corrupt_steps;
    const size_t n = p->num_params;
    if (s->async) {
        // one copy the loop waits for; the thread reads only host memory
        const float* arrays[4] = {p->master, p->adam_m, p->adam_v, p->ema};
        const float* host[4] = {nullptr, nullptr, nullptr, nullptr};
        for (int a = 0; a < 4; a++) {
            if (!arrays[a]) continue;
            if (gathered && a < 3) { host[a] = g[a].data(); continue; }
            if (!s->pinned || (size_t)a >= s->pinned_arrays) fail("checkpoint of step %lld: no pinned buffer for array %d (a bug)", (long long)st.step, a);
            cudaCheck(cudaMemcpyAsync(s->pinned + (size_t)a * n, arrays[a], n * sizeof(float), cudaMemcpyDeviceToHost, stream));
            host[a] = s->pinned + (size_t)a * n;
        }
        cudaCheck(cudaStreamSynchronize(stream));
        w.params = ckpt_source_from(host[0]);
        w.m = ckpt_source_from(host[1]);
        w.v = ckpt_source_from(host[2]);
        if (host[3]) w.extra.push_back(ckpt_source_from(host[3]));   // n_extra = 1 (the EMA needs the full master: never sharded)
        s->mib = params_ckpt_mib(p);
        ckpt_async_start(&s->writer, std::move(w));
        s->waited_s = wall_seconds() - t0;
        if (p->comm) p->comm->rank0_done(p, "checkpoint copy");
        return "";
    }
    w.params = gathered ? ckpt_source_from(g[0].data()) : device_source(p->master);
    w.m = gathered ? ckpt_source_from(g[1].data()) : device_source(p->adam_m);
    w.v = gathered ? ckpt_source_from(g[2].data()) : device_source(p->adam_v);
    if (p->ema) w.extra.push_back(device_source(p->ema));
    std::vector<int64_t> removed;
    const std::string saved = ckpt_save_or_fail(w, &removed);
    const double took = wall_seconds() - t0;
    printf("saved checkpoint %s (%.1f MiB, written in %.2f s; the loop waited %.2f s%s)\n", saved.c_str(), params_ckpt_mib(p), took, took,
           removed.empty() ? "" : ("; deleted " + std::to_string(removed.size()) + " older").c_str());
    if (p->comm) p->comm->rank0_done(p, "checkpoint write");
    return saved;
}

// Where a checkpoint's full layout-ordered array goes: the device buffer, or with
// ZeRO 1/2 the part of it this rank's shard holds (every rank reads the file).
static CkptSink params_sink(const ModelParams* p, float* dev) {
    if (!params_sharded(p)) return device_sink(dev);
    return [p, dev](size_t off, size_t n, const float* src) { params_shard_from_host(p, dev, off, n, src); };
}

// Weights from a model.bin into the fp32 master copy and, derived from it, the
// compute copy; AdamW starts fresh (a fine-tune, or before the state is read).
static void params_load_weights(ModelParams* p, const CkptModelHeader& h, cudaStream_t stream) {
    ckpt_read_model_params_or_fail(h, params_sink(p, p->master));
    params_refresh_weights(p, stream);
    cudaCheck(cudaMemset(p->adam_m, 0, p->state_elems * sizeof(float)));
    cudaCheck(cudaMemset(p->adam_v, 0, p->state_elems * sizeof(float)));
    cudaCheck(cudaStreamSynchronize(stream));
    p->adam_step = 0;
}

// The AdamW moments and step of a state.bin (after params_load_weights of its model.bin).
static void params_load_state(ModelParams* p, const CkptStateHeader& s, cudaStream_t stream) {
    std::vector<CkptSink> sinks = {params_sink(p, p->adam_m), params_sink(p, p->adam_v)};
    if (s.has_master) sinks.push_back(params_sink(p, p->master));
    if (p->ema && s.n_extra >= 1) sinks.push_back(device_sink(p->ema));
    if (p->ema && s.n_extra < 1) printf("note: %s has no EMA weights: the EMA starts from the resumed weights\n", s.path.c_str());
    if (!p->ema && s.n_extra >= 1) printf("note: %s holds EMA weights; this run keeps none (--ema-decay 0)\n", s.path.c_str());
    ckpt_read_state_arrays_or_fail(s, sinks);
    if (s.has_master) params_refresh_weights(p, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    p->adam_step = (int)s.st.adam_step;
}
