// A step's forward and backward as one CUDA graph, replayed while the batch's
// shapes repeat. A small model's step is a thousand short kernels; launched one
// by one, the host's launch time leaves the GPU waiting between them. A graph
// hands the whole chain to the GPU in one launch.
//
// The same kernels with the same arguments on the same buffers: a replay gives
// the bits of the launches it was captured from. What the capture cannot hold
// runs eagerly first: a batch of new shapes runs kernel by kernel (the matmuls
// are tuned on their first call, kernel attributes set, plans made); only a key
// seen at the step before is captured. The key is whatever the host passes the
// kernels that may change between steps (token counts, per-sample lengths);
// data (tokens, latents, timesteps) stays in device buffers the batch fills
// before the graph runs. Everything in the captured work must go to the one
// stream, with no synchronization and no host reads of device results: those
// happen after the replay (the loss and grad norm), as when it runs eagerly.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>
#include "../core/cuda_common.h"

struct StepGraph {
    bool on = false;                  // the trainer's choice (--cuda-graph, one GPU)
    std::vector<int64_t> key;         // the shapes the graph was captured for
    std::vector<int64_t> last_key;    // the previous step's
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    int captures = 0;
    long long replays = 0;
};

static void step_graph_free(StepGraph* s) {
    if (s->exec) cudaCheck(cudaGraphExecDestroy(s->exec));
    if (s->graph) cudaCheck(cudaGraphDestroy(s->graph));
    s->exec = nullptr;
    s->graph = nullptr;
}

// Runs work() for this step's key: replayed from the graph, captured (then
// replayed) when the key repeats the previous step's, else eagerly. eager:
// this step must launch kernel by kernel (--profile-step's step).
static void step_graph_run(StepGraph* s, const std::vector<int64_t>& key, bool eager, cudaStream_t stream,
                           const std::function<void()>& work) {
    const bool replay = s->on && !eager && s->exec && key == s->key;
    const bool capture = s->on && !eager && !replay && key == s->last_key;   // new shapes: kernel by kernel, once
    s->last_key = key;
    if (!replay && !capture) {
        work();
        return;
    }
    if (capture) {
        step_graph_free(s);
        // thread-local: a call in the work that cannot be captured fails here, not in another thread
        cudaCheck(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        work();
        cudaCheck(cudaStreamEndCapture(stream, &s->graph));
        cudaCheck(cudaGraphInstantiate(&s->exec, s->graph, 0));
        s->key = key;
        if (s->captures++ == 0) {
            size_t nodes = 0;
            cudaCheck(cudaGraphGetNodes(s->graph, nullptr, &nodes));
            printf("cuda graph: the forward and backward captured (%zu nodes); replayed while the batch's shapes repeat "
                   "(--cuda-graph 0: kernel by kernel)\n", nodes);
        }
    }
    cudaCheck(cudaGraphLaunch(s->exec, stream));
    s->replays++;
}
