// A model's parameters (llmc/model/params.cuh) in checkpoints (llmc/train/checkpoint.h):
// saving the device buffers, gathered from the ranks of a multi-GPU run, and
// loading them, into shards where a run keeps them sharded.
#pragma once
#include <cstring>
#include <string>
#include <vector>
#include "../core/utils.h"
#include "../core/cuda_common.h"
#include "../model/params.cuh"
#include "checkpoint.h"

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

// Writes dir/step_N (N = st.step) and moves `latest`, keeping the newest keep_last
// (and multiples of keep_every); a write error (full disk) ends the run with one
// line, the previous checkpoint intact. Returns the checkpoint's directory.
// A multi-GPU run: every rank calls it (the shards are gathered to rank 0, which
// writes the single-GPU format; the others return ""), then waits for rank 0.
static std::string params_save_checkpoint(ModelParams* p, const CkptModelInfo& info, const CkptState& st, const std::string& dir,
                                          int keep_last, int keep_every, cudaStream_t stream) {
    const double t0 = wall_seconds();
    cudaCheck(cudaStreamSynchronize(stream));
    std::vector<float> hm, hmm, hv;   // ZeRO 1/2: the gathered master weights and moments (rank 0)
    if (p->comm && !p->comm->gather_state(p, &hm, &hmm, &hv)) {
        p->comm->rank0_done(p, "checkpoint write");
        return "";
    }
    auto host_source = [](const std::vector<float>& h) -> CkptSource {
        const float* d = h.data();
        return [d](size_t off, size_t n, float* dst) { memcpy(dst, d + off, n * sizeof(float)); };
    };
    CkptWrite w;
    w.dir = dir;
    w.step = st.step;
    w.info = info;
    w.dtype = CKPT_F32;
    w.params = hm.empty() ? device_source(p->master) : host_source(hm);
    w.state = st;
    w.m = hmm.empty() ? device_source(p->adam_m) : host_source(hmm);
    w.v = hv.empty() ? device_source(p->adam_v) : host_source(hv);
    if (p->ema) w.extra.push_back(device_source(p->ema));   // n_extra = 1 (the EMA needs the full master: never sharded)
    w.keep_last = keep_last;
    w.keep_every = keep_every;
    std::vector<int64_t> removed;
    const std::string saved = ckpt_save_or_fail(w, &removed);
    printf("saved checkpoint %s (%.1f MiB, %.2f s%s)\n", saved.c_str(), (double)p->num_params * 12.0 / 1048576.0, wall_seconds() - t0,
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
