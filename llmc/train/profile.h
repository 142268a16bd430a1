/*
The `--profile-step N` table, host side: the activities CUPTI recorded during step N
(llmc/train/profiler.cuh collects them) turned into one row per kernel name, sorted by
time, with the time the GPU ran nothing. No CUDA here, so that test/test_profile.cpp
checks the arithmetic on synthetic records.

Rows: calls, summed time, share of the step (its span on CUPTI's clock, from the top of
the step to the end of its update), and the achieved rate where the work is known: FLOP/s
against the matmul ceiling when the launcher declared FLOPs, bytes/s against the memory
ceiling when it declared only bytes (llmc/core/profile_work.h); copies and memsets carry
their own byte counts. A ProfileWork scope's work is shared among the kernels launched
inside it in proportion to their time, so each of them shows the rate of the operation it
belongs to (a cuBLASLt split-K reduction or the two kernels of the split attention
backward, alike), and the work summed over the rows is the work declared. A row's rate
counts only its calls that carry work. Idle: the step's span minus the union of the
kernel, copy and memset intervals. Kernels on several streams may overlap; the rows then
sum to more than the busy time and the table says by how much. Above the rows, the same
sums by kind (profile_kind: matmuls, attention, optimizer, communication, copies, the rest),
so that a step's before and after compare in a few lines.
*/
#pragma once
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <map>
#include <string>
#include <vector>
#include "../core/utils.h"

// The ceilings the rates are held to, per GPU, from NVIDIA's datasheets (docs/perf.md): dense
// BF16 tensor (not the figure quoted with 2:4 sparsity), FP32, device memory. The trainers' MFU
// uses the first. The all-fp32 build multiplies in exact fp32 (cuBLASLt without TF32, scalar
// attention kernels): its ceiling is the FP32 one. A GPU not in the table is held to the H200's
// figures, and the name says so.
struct GpuPeaks {
    std::string name;        // the part the figures are for
    double bf16_flops, fp32_flops, mem_bytes;
    std::string mem_name;
};
static GpuPeaks gpu_peaks(const std::string& device_name) {
    struct Part { const char* match; const char* name; double bf16, fp32, mem; const char* mem_name; };
    static const Part parts[] = {   // the first whose match is in the device's name
        {"H200", "H200", 989e12, 67e12, 4.8e12, "HBM3e"},
        {"H100 PCIe", "H100 PCIe", 756e12, 51e12, 2.0e12, "HBM2e"},
        {"H100 NVL", "H100 NVL", 835e12, 60e12, 3.9e12, "HBM3"},
        {"H100", "H100 SXM", 989e12, 67e12, 3.35e12, "HBM3"},
    };
    for (const Part& g : parts)
        if (device_name.find(g.match) != std::string::npos) return {g.name, g.bf16, g.fp32, g.mem, g.mem_name};
    return {"H200 (assumed for " + device_name + ")", 989e12, 67e12, 4.8e12, "HBM3e"};
}

struct ProfileCeilings {
    double flops;            // FLOP/s of the matmul units in this build's precision
    std::string flops_name;
    double bytes;            // bytes/s of device memory
    std::string bytes_name;
};
static ProfileCeilings profile_ceilings(const GpuPeaks& g, bool fp32) {
    return {fp32 ? g.fp32_flops : g.bf16_flops, g.name + (fp32 ? " FP32" : " dense BF16"), g.mem_bytes, g.name + " " + g.mem_name};
}

// One kernel, copy or memset of the profiled step, on CUPTI's clock (ns)
struct ProfileActivity {
    std::string name;          // kernels: profile_kernel_name(); copies: "memcpy HtoD", ...; "memset"
    uint64_t start = 0, end = 0;
    uint32_t correlation = 0;  // CUPTI's id of the API call that launched it
    long long work = -1;       // kernels: the ProfileWork scope they ran in (-1: none)
    bool copy = false;         // a copy or memset: carries `bytes` itself, never a scope's work
    double bytes = 0;
    bool host_link = false;    // a copy to or from the host: bound by the host link, not HBM (no fraction)
};
struct ProfileWorkRecord { double flops = 0, bytes = 0; };

struct ProfileRow {
    std::string name;
    int calls = 0;
    double ms = 0, share = 0;   // summed time; ms / the step's span
    double flops = 0, bytes = 0, rated_ms = 0;   // the work of the calls that carry some, and their time
    double rate = 0;            // FLOP/s (compute) or bytes/s; 0: unknown
    double frac = -1;           // rate / ceiling (-1: none)
    bool compute = false;
    bool copy = false;          // a copy or memset
    bool host_link = false;     // copies over the host link: no fraction of the HBM ceiling
};
struct ProfileTable {
    int step = 0;
    double span_ms = 0, busy_ms = 0, idle_ms = 0, rows_ms = 0;
    int kernels = 0, copies = 0;
    long long dropped = 0;      // records CUPTI could not keep: the table is incomplete
    std::vector<ProfileRow> rows;
    std::vector<ProfileRow> kinds;   // the rows summed by kind (profile_kind), sorted by time
    ProfileCeilings ceil;
};

// A kernel's demangled name without its return type, parameter list and "(anonymous
// namespace)::", template arguments kept (each instantiation is its own kernel); names
// that do not demangle (cuBLAS's nvjet_*) are kept as they are.
static std::string profile_kernel_name(const char* raw) {
    if (!raw) return "(unnamed kernel)";
    int status = 0;
    char* dm = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
    std::string s = status == 0 && dm ? dm : raw;
    free(dm);
    const std::string anon = "(anonymous namespace)::";
    for (size_t p; (p = s.find(anon)) != std::string::npos;) s.erase(p, anon.size());
    // the parameter list: the first '(' outside template brackets, after the name began
    int depth = 0;
    size_t name_start = 0;
    for (size_t i = 0; i < s.size(); i++) {
        const char c = s[i];
        if (c == '<') depth++;
        else if (c == '>') depth--;
        else if (c == ' ' && depth == 0) name_start = i + 1;   // "void f<...>(...)": the return type ends
        else if (c == '(' && depth == 0 && i > name_start) { s = s.substr(name_start, i - name_start); break; }
    }
    return s;
}

// The kind of a row, for the table's summary by kind (by the kernel's name: cuBLASLt's own,
// mega.c's flash and context-parallel ring kernels, the optimizer's, NCCL's).
enum ProfileKind { KIND_MATMUL, KIND_ATTENTION, KIND_OPTIMIZER, KIND_COMM, KIND_COPY, KIND_OTHER, PROFILE_KINDS };
static const char* const PROFILE_KIND_NAMES[PROFILE_KINDS] = {
    "matmuls (cuBLASLt)", "attention (flash, ring merges)", "optimizer (AdamW, grad norm, EMA)", "communication (NCCL)",
    "copies and memsets", "the rest (norms, activations, RoPE, AdaLN, embeddings, loss)"};
static ProfileKind profile_kind(const std::string& name, bool copy) {
    if (copy) return KIND_COPY;
    std::string n = name;
    for (char& c : n) c = (char)tolower((unsigned char)c);
    auto starts = [&](const char* p) { return n.rfind(p, 0) == 0; };
    auto has = [&](const char* p) { return n.find(p) != std::string::npos; };
    if (starts("nvjet") || has("gemm") || has("xmma") || has("cutlass") || starts("cublas") || has("splitkreduce")) return KIND_MATMUL;
    if (has("flash") || starts("cp_")) return KIND_ATTENTION;
    if (starts("adamw") || starts("global_norm") || starts("ema_")) return KIND_OPTIMIZER;
    if (starts("nccl")) return KIND_COMM;
    return KIND_OTHER;
}

// `--profile-step`: 0 (off) or a step of this run, 1..steps (the numbers the step lines print)
static void profile_validate_step(int n, int steps) {
    if (n < 0 || n > steps)
        fail("flag --profile-step: must be 0 (off) or a step of this run, 1..--steps (%d), got %d", steps, n);
}

// The table of a step from its activities, the ProfileWork scopes' work and the step's span [t0, t1].
static ProfileTable profile_aggregate(const std::vector<ProfileActivity>& acts, const std::vector<ProfileWorkRecord>& works,
                                      uint64_t t0, uint64_t t1, const ProfileCeilings& ceil, int step) {
    ProfileTable t;
    t.step = step;
    t.ceil = ceil;
    t.span_ms = t1 > t0 ? (t1 - t0) / 1e6 : 0.0;
    auto dur = [](const ProfileActivity& a) { return a.end > a.start ? (double)(a.end - a.start) : 0.0; };
    auto in_scope = [&](const ProfileActivity& a) { return !a.copy && a.work >= 0 && a.work < (long long)works.size(); };
    // each scope's kernels' summed time and count: the shares of its work
    std::vector<double> scope_ns(works.size(), 0.0);
    std::vector<int> scope_n(works.size(), 0);
    for (const ProfileActivity& a : acts)
        if (in_scope(a)) { scope_ns[a.work] += dur(a); scope_n[a.work]++; }
    std::map<std::string, ProfileRow> rows;
    for (const ProfileActivity& a : acts) {
        ProfileRow& r = rows[a.name];
        r.name = a.name;
        r.calls++;
        r.copy = a.copy;
        r.ms += dur(a) / 1e6;
        (a.copy ? t.copies : t.kernels)++;
        if (a.copy) {
            r.bytes += a.bytes;
            r.rated_ms += dur(a) / 1e6;
            r.host_link = r.host_link || a.host_link;
        } else if (in_scope(a)) {
            const double part = scope_ns[a.work] > 0 ? dur(a) / scope_ns[a.work] : 1.0 / scope_n[a.work];
            r.flops += part * works[a.work].flops;
            r.bytes += part * works[a.work].bytes;
            r.rated_ms += dur(a) / 1e6;
        }
    }
    auto finish_row = [&](ProfileRow& r) {
        r.share = t.span_ms > 0 ? r.ms / t.span_ms : 0.0;
        r.compute = r.flops > 0;
        if (r.rated_ms > 0 && (r.flops > 0 || r.bytes > 0)) {
            r.rate = (r.compute ? r.flops : r.bytes) / (r.rated_ms / 1e3);
            const double c = r.compute ? ceil.flops : ceil.bytes;
            if (!r.host_link && c > 0) r.frac = r.rate / c;
        }
    };
    auto by_time = [](const ProfileRow& a, const ProfileRow& b) { return a.ms != b.ms ? a.ms > b.ms : a.name < b.name; };
    for (auto& kv : rows) {
        ProfileRow r = kv.second;
        finish_row(r);
        t.rows_ms += r.ms;
        t.rows.push_back(r);
    }
    std::sort(t.rows.begin(), t.rows.end(), by_time);
    // by kind: a kind that declared FLOPs shows its rate over the rows that did (the
    // attention's small memory-bound kernels then count in its time, not in its rate)
    std::vector<ProfileRow> kinds(PROFILE_KINDS);
    for (const ProfileRow& r : t.rows) {
        ProfileRow& k = kinds[profile_kind(r.name, r.copy)];
        k.calls += r.calls;
        k.ms += r.ms;
        k.flops += r.flops;
        k.host_link = k.host_link || r.host_link;
    }
    for (const ProfileRow& r : t.rows) {   // the rated time and bytes of the kind's rate
        ProfileRow& k = kinds[profile_kind(r.name, r.copy)];
        if (k.flops > 0 ? r.flops > 0 : r.bytes > 0) { k.rated_ms += r.rated_ms; if (k.flops == 0) k.bytes += r.bytes; }
    }
    for (int i = 0; i < PROFILE_KINDS; i++) {
        ProfileRow k = kinds[i];
        if (k.calls == 0) continue;
        k.name = PROFILE_KIND_NAMES[i];
        finish_row(k);
        t.kinds.push_back(k);
    }
    std::sort(t.kinds.begin(), t.kinds.end(), by_time);
    // busy: the union of the intervals, clipped to the span
    std::vector<std::pair<uint64_t, uint64_t>> iv;
    for (const ProfileActivity& a : acts) {
        const uint64_t s = std::max(a.start, t0), e = std::min(a.end, t1);
        if (e > s) iv.push_back({s, e});
    }
    std::sort(iv.begin(), iv.end());
    uint64_t busy = 0, cur_s = 0, cur_e = 0;
    bool open = false;
    for (const auto& p : iv) {
        if (open && p.first <= cur_e) { cur_e = std::max(cur_e, p.second); continue; }
        if (open) busy += cur_e - cur_s;
        cur_s = p.first; cur_e = p.second; open = true;
    }
    if (open) busy += cur_e - cur_s;
    t.busy_ms = busy / 1e6;
    t.idle_ms = std::max(0.0, t.span_ms - t.busy_ms);
    return t;
}

static std::string profile_rate_str(const ProfileRow& r) {
    char b[32];
    if (r.rate <= 0) return "-";
    if (r.compute) snprintf(b, sizeof b, "%.1f TFLOP/s", r.rate / 1e12);
    else snprintf(b, sizeof b, "%.0f GB/s", r.rate / 1e9);
    return b;
}

// The table as text. prev_ms: the wall time of the step before (unprofiled; <= 0: none), beside
// this step's, shows what tracing cost.
static std::string profile_format(const ProfileTable& t, double step_ms, double prev_ms) {
    std::string s;
    char b[512];
    auto pct = [&](double ms) { return t.span_ms > 0 ? 100.0 * ms / t.span_ms : 0.0; };
    snprintf(b, sizeof b, "profile of step %d: %.3f ms on the GPU from the step's top to the end of its update | busy %.3f ms (%.1f%%) | idle %.3f ms (%.1f%%) | %d kernels, %d copies/memsets\n",
             t.step, t.span_ms, t.busy_ms, pct(t.busy_ms), t.idle_ms, pct(t.idle_ms), t.kernels, t.copies);
    s += b;
    if (prev_ms > 0) snprintf(b, sizeof b, "step wall time %.3f ms with tracing on (the step before: %.3f ms)\n", step_ms, prev_ms);
    else snprintf(b, sizeof b, "step wall time %.3f ms with tracing on\n", step_ms);
    s += b;
    auto table = [&](const std::vector<ProfileRow>& rows, const char* what) {
        snprintf(b, sizeof b, "%10s %7s %6s %15s %8s  %s\n", "ms", "share", "calls", "achieved", "of peak", what);
        s += b;
        for (const ProfileRow& r : rows) {
            char frac[16] = "-";
            if (r.frac >= 0) snprintf(frac, sizeof frac, "%.1f%%", 100.0 * r.frac);
            snprintf(b, sizeof b, "%10.3f %6.1f%% %6d %15s %8s  %s\n", r.ms, 100.0 * r.share, r.calls, profile_rate_str(r).c_str(), frac,
                     r.name.c_str());
            s += b;
        }
        snprintf(b, sizeof b, "%10.3f %6.1f%% %6s %15s %8s  %s\n", t.idle_ms, pct(t.idle_ms), "-", "-", "-", "(idle: no kernel, copy or memset running)");
        s += b;
    };
    table(t.kinds, "kind");
    s += "\n";
    table(t.rows, "kernel");
    if (t.rows_ms > t.busy_ms + 1e-6) {
        snprintf(b, sizeof b, "kernels overlapped (several streams): the rows sum to %.3f ms, %.3f ms more than the busy time\n",
                 t.rows_ms, t.rows_ms - t.busy_ms);
        s += b;
    }
    snprintf(b, sizeof b, "of peak: TFLOP/s against %.0f TFLOP/s (%s), GB/s against %.0f GB/s (%s); '-': work not declared (llmc/core/profile_work.h)\n",
             t.ceil.flops / 1e12, t.ceil.flops_name.c_str(), t.ceil.bytes / 1e9, t.ceil.bytes_name.c_str());
    s += b;
    if (t.dropped > 0) {
        snprintf(b, sizeof b, "warning: CUPTI dropped %lld records: the table is incomplete\n", t.dropped);
        s += b;
    }
    return s;
}
