// Waiting on a non-blocking NCCL communicator (the world's, llmc/dist/distributed.cuh, and the
// context-parallel group's split from it, llmc/attention/ring_attention.cuh): making one, a call
// on one (the first use of a connection waits for the peer) and finalizing one may return
// ncclInProgress. nccl_wait polls the communicator until that ends or give_up() says to stop,
// and returns the last state (ncclInProgress when it gave up); between polls it sleeps pause_us
// microseconds, or only yields (0) on the step's path.
#pragma once
#ifdef MEGA_NCCL
#include <nccl.h>
#include <sched.h>
#include <unistd.h>

template <class GiveUp>
static ncclResult_t nccl_wait(ncclComm_t comm, ncclResult_t r, int pause_us, GiveUp give_up) {
    while (r == ncclInProgress) {
        if (give_up()) break;
        if (pause_us > 0) usleep(pause_us);
        else sched_yield();
        if (ncclCommGetAsyncError(comm, &r) != ncclSuccess) break;
    }
    return r;
}
#endif
