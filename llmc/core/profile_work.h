// What a launcher tells `--profile-step` (llmc/train/profile.h) about the work of the
// kernels it launches: their FLOPs and the bytes they must move. The profiler sees the
// kernels by name only (cuBLASLt picks its own), so the launchers that know the shapes
// declare the work around their launches:
//
//     ProfileWork pw(2.0 * m * n * k, bytes);   // the kernels launched while pw lives
//
// While no step is being profiled the hook is null and a ProfileWork is one null check:
// nothing is recorded and CUPTI is never called. Host-only (no CUDA): the CPU builds
// include the launchers' headers too.
#pragma once

struct ProfileWorkHooks {
    bool (*begin)(double flops, double bytes);   // false: not recorded (a scope is already open)
    void (*end)();
};
static ProfileWorkHooks profile_work_hooks = {nullptr, nullptr};
// for work that takes a loop to count: skip it while nothing is profiled
static inline bool profile_work_on() { return profile_work_hooks.begin != nullptr; }

// flops > 0: tensor-core work (its rate is held to the matmul ceiling); otherwise bytes:
// memory-bound work (held to the memory ceiling). Bytes count each tensor the kernels read
// or write once (the least DRAM traffic): row-sized tensors; per-column vectors and small
// tables that stay in cache are left out.
struct ProfileWork {
    bool open;
    ProfileWork(double flops, double bytes) : open(profile_work_hooks.begin && profile_work_hooks.begin(flops, bytes)) {}
    ~ProfileWork() { if (open) profile_work_hooks.end(); }
    ProfileWork(const ProfileWork&) = delete;
    ProfileWork& operator=(const ProfileWork&) = delete;
};
