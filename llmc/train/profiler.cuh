/*
`--profile-step N`: CUPTI's Activity API records step N's kernels, copies and memsets
(start, end, name) and llmc/train/profile.h makes the table. Why CUPTI rather than CUDA
events: events time only what the trainer wraps, on one stream, and cannot see inside
cuBLASLt or between kernels; CUPTI sees every kernel by name with GPU timestamps, on every
stream, and so also the gaps between them (the idle time). Why the Activity API's
concurrent-kernel records: they do not serialize kernels (CUPTI_ACTIVITY_KIND_KERNEL
does), so the step runs as it does unprofiled.

Which work a kernel did: each ProfileWork scope (llmc/core/profile_work.h) pushes a CUPTI
external correlation id; CUPTI then emits an external-correlation record for every CUDA
API call made inside the scope (these need the runtime and driver API records on: cuBLASLt
launches through the driver API), which ties the launched kernel's correlation id to the
scope.

Nothing when off: without the flag no CUPTI function is called (the hooks stay null), and
CUPTI initializes lazily, at its first call: the linked library does nothing. With it, CUPTI's buffers are registered before the loop and the activity kinds are enabled
only from the top of step N to the end of its update, then disabled and flushed. Tracing
the API calls costs host time per launch: the table prints the step's wall time beside
the one before it. Only rank 0 profiles (its own GPU). A build without CUPTI (the Makefile
defines MEGA_CUPTI where the toolkit has it) refuses the flag with one line.
*/
#pragma once
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>
#include "../core/cuda_common.h"
#include "../core/utils.h"
#include "../core/profile_work.h"
#include "profile.h"
#ifdef MEGA_CUPTI
#include <cupti.h>
#endif

struct Profiler {
    int step = 0;              // the step to profile, as the step lines number them (0: off)
    std::string path;          // log_dir/profile_step_N.txt ("": printed only)
    bool active = false;       // between profiler_begin and profiler_end
#ifdef MEGA_CUPTI
    uint64_t t0 = 0;
    std::mutex mu;             // CUPTI may hand back full buffers on a thread of its own
    std::vector<ProfileActivity> acts;
    std::unordered_map<uint32_t, uint64_t> scope_of;   // correlation id of an API call -> its ProfileWork scope
    std::vector<ProfileWorkRecord> works;
    bool in_scope = false;
#endif
};
static Profiler profiler;

static ProfileCeilings profiler_ceilings() {
#if defined(ENABLE_FP32)
    return profile_ceilings(gpu_peaks(cuda_device_props().name), true);
#else
    return profile_ceilings(gpu_peaks(cuda_device_props().name), false);
#endif
}

// `--profile-step n` of a run of `steps` steps on rank `rank`: checked before the GPU is touched
static void profiler_configure(int n, int steps, int rank, const std::string& log_dir) {
    profile_validate_step(n, steps);
#ifndef MEGA_CUPTI
    if (n > 0) fail("flag --profile-step: this build has no CUPTI (the Makefile did not find the CUDA toolkit's cupti.h and libcupti)");
#endif
    profiler.step = rank == 0 ? n : 0;
    profiler.path = n > 0 && !log_dir.empty() ? log_dir + "/profile_step_" + std::to_string(n) + ".txt" : "";
}

#ifdef MEGA_CUPTI
static void cupti_check(CUptiResult r, const char* what, const char* file, int line) {
    if (r == CUPTI_SUCCESS) return;
    const char* msg = "?";
    cuptiGetResultString(r, &msg);
    fail("--profile-step: CUPTI %s failed: %s (%s:%d)", what, msg, file, line);
}
#define cuptiCheck(x) cupti_check((x), #x, __FILE__, __LINE__)

// The record versions of this toolkit's header: the fields read here (start, end, correlation
// id, name, bytes, copy kind) keep their offsets from one version to the next
#if CUPTI_API_VERSION >= 130000
typedef CUpti_ActivityKernel10 ProfilerKernelRecord;
typedef CUpti_ActivityMemcpy6 ProfilerMemcpyRecord;
#else
typedef CUpti_ActivityKernel9 ProfilerKernelRecord;
typedef CUpti_ActivityMemcpy5 ProfilerMemcpyRecord;
#endif
typedef CUpti_ActivityMemset4 ProfilerMemsetRecord;

static const size_t PROFILER_BUFFER_BYTES = 8 << 20;
static const CUpti_ExternalCorrelationKind PROFILER_SCOPE_KIND = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;
static const CUpti_ActivityKind PROFILER_KINDS[] = {
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET,
    CUPTI_ACTIVITY_KIND_RUNTIME, CUPTI_ACTIVITY_KIND_DRIVER, CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION};

static void CUPTIAPI profiler_buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *buffer = (uint8_t*)aligned_alloc(8, PROFILER_BUFFER_BYTES);   // CUPTI wants 8-byte aligned records
    if (!*buffer) fail("--profile-step: out of host memory for CUPTI's buffers");
    *size = PROFILER_BUFFER_BYTES;
    *max_records = 0;   // as many as fit
}

static void CUPTIAPI profiler_buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
    std::lock_guard<std::mutex> lock(profiler.mu);
    CUpti_Activity* rec = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        ProfileActivity a;
        switch (rec->kind) {
            case CUPTI_ACTIVITY_KIND_KERNEL:
            case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
                const ProfilerKernelRecord* k = (const ProfilerKernelRecord*)rec;
                a.name = profile_kernel_name(k->name);
                a.start = k->start; a.end = k->end; a.correlation = k->correlationId;
                profiler.acts.push_back(a);
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMCPY: {
                const ProfilerMemcpyRecord* m = (const ProfilerMemcpyRecord*)rec;
                const CUpti_ActivityMemcpyKind kind = (CUpti_ActivityMemcpyKind)m->copyKind;
                a.name = kind == CUPTI_ACTIVITY_MEMCPY_KIND_HTOD ? "memcpy HtoD" : kind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOH ? "memcpy DtoH"
                         : kind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOD ? "memcpy DtoD" : kind == CUPTI_ACTIVITY_MEMCPY_KIND_PTOP ? "memcpy PtoP"
                                                                    : "memcpy (host or array)";
                a.host_link = kind != CUPTI_ACTIVITY_MEMCPY_KIND_DTOD;
                a.start = m->start; a.end = m->end; a.correlation = m->correlationId;
                a.copy = true; a.bytes = (double)m->bytes;
                profiler.acts.push_back(a);
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMSET: {
                const ProfilerMemsetRecord* m = (const ProfilerMemsetRecord*)rec;
                a.name = "memset";
                a.start = m->start; a.end = m->end; a.correlation = m->correlationId;
                a.copy = true; a.bytes = (double)m->bytes;
                profiler.acts.push_back(a);
                break;
            }
            case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
                const CUpti_ActivityExternalCorrelation* e = (const CUpti_ActivityExternalCorrelation*)rec;
                if (e->externalKind == PROFILER_SCOPE_KIND) profiler.scope_of[e->correlationId] = e->externalId;
                break;
            }
            default: break;   // the API records: only their external correlations matter
        }
    }
    free(buffer);
}

static bool profiler_scope_begin(double flops, double bytes) {
    if (profiler.in_scope) return false;   // an enclosing scope's work covers it
    profiler.in_scope = true;
    profiler.works.push_back({flops, bytes});
    cuptiCheck(cuptiActivityPushExternalCorrelationId(PROFILER_SCOPE_KIND, profiler.works.size() - 1));
    return true;
}
static void profiler_scope_end() {
    uint64_t id = 0;
    cuptiCheck(cuptiActivityPopExternalCorrelationId(PROFILER_SCOPE_KIND, &id));
    profiler.in_scope = false;
}

// Before the loop (only with the flag): CUPTI's first call, and its buffers
static void profiler_init() {
    if (profiler.step <= 0) return;
    cuptiCheck(cuptiActivityRegisterCallbacks(profiler_buffer_requested, profiler_buffer_completed));
}

// At the top of the step (the GPU idle: the step before ended with a synchronize)
static void profiler_begin() {
    for (CUpti_ActivityKind k : PROFILER_KINDS) cuptiCheck(cuptiActivityEnable(k));
    profile_work_hooks = {profiler_scope_begin, profiler_scope_end};
    profiler.active = true;
    cuptiCheck(cuptiGetTimestamp(&profiler.t0));
}

// After the step's update has synchronized: the table, printed and written to profiler.path.
static void profiler_end(double step_ms, double prev_ms) {
    uint64_t t1 = 0;
    cuptiCheck(cuptiGetTimestamp(&t1));
    profile_work_hooks = {nullptr, nullptr};
    profiler.active = false;
    for (CUpti_ActivityKind k : PROFILER_KINDS) cuptiCheck(cuptiActivityDisable(k));
    cuptiCheck(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    size_t dropped = 0;
    cuptiCheck(cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped));
    std::string text;
    {
        std::lock_guard<std::mutex> lock(profiler.mu);
        for (ProfileActivity& a : profiler.acts) {
            auto it = profiler.scope_of.find(a.correlation);
            a.work = it == profiler.scope_of.end() ? -1 : (long long)it->second;
        }
        ProfileTable t = profile_aggregate(profiler.acts, profiler.works, profiler.t0, t1, profiler_ceilings(), profiler.step);
        t.dropped = (long long)dropped;
        text = profile_format(t, step_ms, prev_ms);
        profiler.acts.clear();
        profiler.scope_of.clear();
        profiler.works.clear();
    }
    fputs(text.c_str(), stdout);
    if (!profiler.path.empty()) {
        make_parent_dirs(profiler.path);
        const std::string tmp = profiler.path + ".tmp";
        FILE* f = fopen_or_fail(tmp, "w");
        fwrite_exact(text.data(), text.size(), f, tmp);
        finish_atomic_write(f, tmp, profiler.path);
        printf("wrote %s\n", profiler.path.c_str());
    }
}
#else
static void profiler_init() {}
static void profiler_begin() {}
static void profiler_end(double, double) {}
#endif
