/*
Checkpoints written in the background (the trainers' default, --ckpt-async 1).
Host code, no CUDA: the trainer copies what a checkpoint holds into host buffers
(llmc/train/params_checkpoint.cuh: pinned memory, one device-to-host copy), hands
ckpt_async_start a CkptWrite whose sources read those buffers, and goes on
training while a thread runs ckpt_save (llmc/train/checkpoint.h) on them: the
same function, the same bytes, the same order of durable steps (files under .tmp
names, fsync, rename, the directory fsync'ed, then `latest`, then old checkpoints
pruned) as a save in the loop's own thread. So kill -9 at any moment leaves the
previous `latest` naming a whole checkpoint, as before.

One save at most is in flight: the buffers belong to it until it is collected
(ckpt_async_wait, or ckpt_async_poll once it finished), and ckpt_async_start
refuses to start another before. A failed write comes back as its one line
from ckpt_save; the trainer stops on it at the next step boundary.
*/
#pragma once
#include <atomic>
#include <csignal>
#include <pthread.h>
#include <string>
#include <thread>
#include <vector>
#include "../core/utils.h"
#include "checkpoint.h"

struct CkptAsyncResult {
    int64_t step = -1;            // the step saved (-1: no save was in flight)
    bool ok = true;
    std::string dir;              // ok: the checkpoint written (DIR/step_XXXXXXXX)
    std::string err;              // !ok: ckpt_save's one line naming the file
    std::vector<int64_t> removed; // old checkpoints deleted after `latest` moved
    double write_s = 0;           // how long the thread took
};

struct CkptAsyncWriter {
    std::thread thread;
    bool busy = false;                  // started and not yet collected (the loop's thread only)
    std::atomic<bool> finished{false};  // the thread is done with the buffers and the files
    CkptAsyncResult result;             // written by the thread before `finished`
    std::atomic<int> writing{0};        // threads inside ckpt_save now, and the most ever seen:
    std::atomic<int> most_writing{0};   // kept for the tests (at most one save in flight)
};

static inline bool ckpt_async_busy(const CkptAsyncWriter* a) { return a->busy; }

// Starts writing w on a new thread. w's sources must read memory that stays
// unchanged until the save is collected. False (and nothing started) while a
// save is in flight: collect it first.
static inline bool ckpt_async_start(CkptAsyncWriter* a, CkptWrite w) {
    if (a->busy) return false;
    a->busy = true;
    a->finished.store(false);
    a->result = CkptAsyncResult();
    a->thread = std::thread([a, w = std::move(w)]() {
        // SIGTERM and SIGINT go to the loop's thread, which decides what a stop does (llmc/train/run_control.h)
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        sigaddset(&s, SIGINT);
        pthread_sigmask(SIG_BLOCK, &s, nullptr);
        const int now = a->writing.fetch_add(1) + 1;
        for (int m = a->most_writing.load(); now > m && !a->most_writing.compare_exchange_weak(m, now);) {}
        const double t0 = wall_seconds();
        CkptAsyncResult r;
        r.step = w.step;
        r.ok = ckpt_save(w, &r.dir, &r.err, &r.removed);
        r.write_s = wall_seconds() - t0;
        a->result = r;
        a->writing.fetch_sub(1);
        a->finished.store(true, std::memory_order_release);
    });
    return true;
}

// Waits for the save in flight and returns its result (step -1: none was in flight).
static inline CkptAsyncResult ckpt_async_wait(CkptAsyncWriter* a) {
    if (!a->busy) return CkptAsyncResult();
    a->thread.join();
    a->busy = false;
    return a->result;
}

// The result of the save in flight if it has finished (true), without waiting.
static inline bool ckpt_async_poll(CkptAsyncWriter* a, CkptAsyncResult* out) {
    if (!a->busy || !a->finished.load(std::memory_order_acquire)) return false;
    *out = ckpt_async_wait(a);
    return true;
}
