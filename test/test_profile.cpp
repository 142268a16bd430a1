/*
Tests of llmc/train/profile.h, the host side of `--profile-step` (the table made from
CUPTI's records), on synthetic records: kernel names shortened from their mangled form;
one hand-laid step (rows, calls, sort order, shares, a scope's work shared by time
between its kernels, rates and fractions of the ceilings, copies over the host link
without a fraction, a call without work not diluting its row's rate, overlapping streams,
an activity past the step's end clipped from the busy time, idle time); random steps
(the work summed over the rows is the work declared, busy + idle = span, rows sorted);
the text; the ceilings by device name. The flag's range (child mode: exit 1, one line).

  make test/test_profile && ./test/test_profile
  child mode: --validate N STEPS   profile_validate_step(N, STEPS)
*/
#include <cmath>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "../llmc/core/rand.h"
#include "test_util.h"
#include "../llmc/train/profile.h"

static bool close_to(double a, double b, double rel = 1e-9) { return std::fabs(a - b) <= rel * std::max(1.0, std::fabs(b)); }
static std::string num(double x) { char b[64]; snprintf(b, sizeof b, "%.9g", x); return b; }

static const ProfileCeilings CEIL = {989e12, "H200 dense BF16", 4.8e12, "H200 HBM3e"};
static const uint64_t MS = 1000000;   // ns

static ProfileActivity kernel(const char* name, double from_ms, double to_ms, long long work) {
    const uint64_t t0 = 1000;
    ProfileActivity a;
    a.name = name;
    a.start = t0 + (uint64_t)llround(from_ms * MS);
    a.end = t0 + (uint64_t)llround(to_ms * MS);
    a.work = work;
    return a;
}
static ProfileActivity copy(const char* name, double from_ms, double to_ms, double bytes, bool host_link) {
    ProfileActivity a = kernel(name, from_ms, to_ms, -1);
    a.copy = true;
    a.bytes = bytes;
    a.host_link = host_link;
    return a;
}
static const ProfileRow* row(const ProfileTable& t, const std::string& name) {
    for (const ProfileRow& r : t.rows) if (r.name == name) return &r;
    return nullptr;
}

static void test_names() {
    struct Case { const char* raw; const char* want; };
    const Case cases[] = {
        {"_Z22rmsnorm_forward_kernelPfS_", "rmsnorm_forward_kernel"},                // rmsnorm_forward_kernel(float*, float*)
        {"_Z6kernelILi64EEvPf", "kernel<64>"},                                        // void kernel<64>(float*)
        {"_ZN5flash10fwd_kernelILi128ELb1EEEvNS_6ParamsE", "flash::fwd_kernel<128, true>"},
        {"_ZN12_GLOBAL__N_16kernelEPf", "kernel"},                                    // (anonymous namespace)::kernel(float*)
        {"_Z1kIL4Kind1EEvv", "k<(Kind)1>"},                                           // a '(' inside the template arguments
        {"nvjet_sm90_tst_128x256_64x4_2x1_v_bz_coopA_NTN", "nvjet_sm90_tst_128x256_64x4_2x1_v_bz_coopA_NTN"},
    };
    for (const Case& c : cases) {
        const std::string got = profile_kernel_name(c.raw);
        check(got == c.want, std::string("kernel name ") + c.raw, "got '" + got + "', expected '" + c.want + "'");
    }
    check(profile_kernel_name(nullptr) == "(unnamed kernel)", "kernel name null", profile_kernel_name(nullptr));
}

// One step laid out by hand (times in ms from t0; the span is 10 ms):
//   gemm          [1, 2] scope 0 (0.5e12 FLOPs)        [3, 4] scope 1, shared with splitKreduce_kernel [4, 4.5] (0.3e12)
//   other         [1.5, 2.5] on another stream, no work (overlaps gemm by 0.5)
//   norm          [5, 5.25] scope 2, [5.25, 5.5] scope 3 (1e9 bytes each), [5.5, 6] no work; a call with scope 99 (none)
//   memcpy HtoD   [6.5, 7] 1e7 bytes      memset [7.5, 7.6] 4e8 bytes
//   late          [9.8, 10.3]: past the step's end, clipped from the busy time
static void test_hand_laid() {
    std::vector<ProfileWorkRecord> works = {{0.5e12, 1e9}, {0.3e12, 0}, {0, 1e9}, {0, 1e9}};
    std::vector<ProfileActivity> acts = {
        kernel("gemm", 1, 2, 0),         kernel("other", 1.5, 2.5, -1), kernel("gemm", 3, 4, 1),  kernel("splitKreduce_kernel", 4, 4.5, 1),
        kernel("norm", 5, 5.25, 2),      kernel("norm", 5.25, 5.5, 3),  kernel("norm", 5.5, 6, -1), kernel("norm", 6, 6, 99),
        copy("memcpy HtoD", 6.5, 7, 1e7, true), copy("memset", 7.5, 7.6, 4e8, false), kernel("late", 9.8, 10.3, -1),
    };
    const uint64_t t0 = 1000, t1 = t0 + 10 * MS;
    const ProfileTable t = profile_aggregate(acts, works, t0, t1, CEIL, 7);
    check(close_to(t.span_ms, 10), "span", num(t.span_ms) + " ms");
    // busy: [1, 2.5] + [3, 4.5] + [5, 6] + [6.5, 7] + [7.5, 7.6] + [9.8, 10] = 4.8
    check(close_to(t.busy_ms, 4.8), "busy: union of intervals, clipped to the span", num(t.busy_ms) + " ms, expected 4.8");
    check(close_to(t.idle_ms, 5.2), "idle = span - busy", num(t.idle_ms) + " ms, expected 5.2");
    check(close_to(t.rows_ms, 5.6), "rows sum (overlap and the late kernel's full time counted)", num(t.rows_ms) + " ms, expected 5.6");
    check(t.kernels == 9 && t.copies == 2, "kernel and copy counts", std::to_string(t.kernels) + " kernels, " + std::to_string(t.copies) + " copies");
    const char* order[] = {"gemm", "norm", "other", "late", "memcpy HtoD", "splitKreduce_kernel", "memset"};
    bool order_ok = t.rows.size() == 7;
    for (size_t i = 0; order_ok && i < 7; i++) order_ok = t.rows[i].name == order[i];
    std::string got;
    for (const ProfileRow& r : t.rows) got += r.name + " ";
    check(order_ok, "rows sorted by time, ties by name", got);

    const ProfileRow* g = row(t, "gemm");
    // scope 1's 0.3e12 shared by time: gemm 1 ms of 1.5 -> 0.2e12, splitKreduce_kernel 0.1e12
    check(g && g->calls == 2 && close_to(g->ms, 2) && close_to(g->share, 0.2), "gemm: calls, ms, share", g ? num(g->ms) : "missing");
    check(g && g->compute && close_to(g->flops, 0.7e12) && close_to(g->rate, 350e12) && close_to(g->frac, 350.0 / 989.0),
          "gemm: FLOPs of its scopes, TFLOP/s, fraction of the matmul ceiling", g ? num(g->rate / 1e12) + " TFLOP/s" : "missing");
    const ProfileRow* s = row(t, "splitKreduce_kernel");
    check(s && close_to(s->flops, 0.1e12) && close_to(s->rate, 200e12), "a scope's second kernel: its share of the scope's work",
          s ? num(s->rate / 1e12) + " TFLOP/s" : "missing");
    const ProfileRow* n = row(t, "norm");
    check(n && n->calls == 4 && close_to(n->ms, 1.0) && !n->compute && close_to(n->bytes, 2e9) && close_to(n->rated_ms, 0.5) &&
              close_to(n->rate, 4e12) && close_to(n->frac, 4.0 / 4.8),
          "norm: bytes only; calls without work (none, unknown scope) count in time, not in the rate",
          n ? num(n->rate / 1e9) + " GB/s over " + num(n->rated_ms) + " ms" : "missing");
    const ProfileRow* o = row(t, "other");
    check(o && o->rate == 0 && o->frac < 0, "a kernel without work: no rate, no fraction", o ? num(o->rate) : "missing");
    const ProfileRow* h = row(t, "memcpy HtoD");
    check(h && close_to(h->rate, 20e9) && h->frac < 0, "copy over the host link: GB/s, no HBM fraction", h ? num(h->rate / 1e9) : "missing");
    const ProfileRow* m = row(t, "memset");
    check(m && close_to(m->rate, 4e12) && close_to(m->frac, 4.0 / 4.8), "memset: GB/s against HBM", m ? num(m->rate / 1e9) : "missing");

    // by kind: gemm + splitKreduce_kernel (matmuls: 0.8e12 FLOPs over 2.5 ms), norm + other + late (the rest:
    // 2e9 bytes over norm's 0.5 rated ms), memcpy HtoD + memset (copies: over the host link, no fraction)
    const ProfileRow* km = nullptr; const ProfileRow* kr = nullptr; const ProfileRow* kc = nullptr;
    for (const ProfileRow& k : t.kinds) {
        if (k.name == PROFILE_KIND_NAMES[KIND_MATMUL]) km = &k;
        if (k.name == PROFILE_KIND_NAMES[KIND_OTHER]) kr = &k;
        if (k.name == PROFILE_KIND_NAMES[KIND_COPY]) kc = &k;
    }
    check(t.kinds.size() == 3 && km && kr && kc && t.kinds[0].name == km->name, "kinds: three, matmuls first", std::to_string(t.kinds.size()));
    check(km && km->calls == 3 && close_to(km->ms, 2.5) && close_to(km->share, 0.25) && close_to(km->rate, 320e12),
          "kind matmuls: calls, ms, share, TFLOP/s over its rows", km ? num(km->rate / 1e12) + " TFLOP/s" : "missing");
    check(kr && kr->calls == 6 && close_to(kr->ms, 2.5) && !kr->compute && close_to(kr->rate, 4e12) && close_to(kr->frac, 4.0 / 4.8),
          "kind the rest: time of every row, GB/s over the rows that declared bytes", kr ? num(kr->rate / 1e9) + " GB/s" : "missing");
    check(kc && kc->calls == 2 && close_to(kc->ms, 0.6) && close_to(kc->rate, 4.1e8 / 0.6e-3) && kc->frac < 0,
          "kind copies: a host-link copy among them: no fraction", kc ? num(kc->rate / 1e9) + " GB/s" : "missing");
    double kinds_ms = 0;
    for (const ProfileRow& k : t.kinds) kinds_ms += k.ms;
    check(close_to(kinds_ms, t.rows_ms), "kinds sum to the rows", num(kinds_ms));

    const std::string text = profile_format(t, 11.5, 10.25);
    bool has_rows = true;
    for (const char* r : order) has_rows = has_rows && text.find(r) != std::string::npos;
    check(text.find("profile of step 7") == 0 && has_rows && text.find("(idle") != std::string::npos &&
              text.find("350.0 TFLOP/s") != std::string::npos && text.find("4000 GB/s") != std::string::npos &&
              text.find("35.4%") != std::string::npos && text.find("kernels overlapped") != std::string::npos &&
              text.find("the step before: 10.250 ms") != std::string::npos && text.find("989 TFLOP/s") != std::string::npos,
          "text: title, every row, rates, fractions, idle, overlap, the step before, the ceilings", "");
    check(text.find("kind\n") != std::string::npos && text.find(PROFILE_KIND_NAMES[KIND_MATMUL]) < text.find(" gemm\n") &&
              text.find("320.0 TFLOP/s") != std::string::npos,
          "text: the kinds above the kernels", "");
    printf("%s", text.c_str());

    // a scope whose kernels took no measurable time: shared by count, and no rate (no NaN)
    const ProfileTable z = profile_aggregate({kernel("a", 1, 1, 0), kernel("b", 1, 1, 0)}, {{1e9, 0}}, t0, t1, CEIL, 1);
    const ProfileRow* za = row(z, "a");
    check(za && close_to(za->flops, 0.5e9) && za->rate == 0 && za->frac < 0 && close_to(z.idle_ms, 10), "zero-length kernels",
          za ? num(za->flops) : "missing");
    const ProfileTable e = profile_aggregate({}, {}, t0, t1, CEIL, 1);
    check(e.rows.empty() && close_to(e.idle_ms, 10) && e.busy_ms == 0, "no activity: all idle", num(e.idle_ms));
}

// Random steps: invariants that hold whatever the layout
static void test_random() {
    Rng rng;
    rng_seed(&rng, 42);
    int bad = 0;
    for (int trial = 0; trial < 300; trial++) {
        const int n_scopes = (int)(rng_u32(&rng) % 20), n_acts = (int)(rng_u32(&rng) % 60);
        std::vector<ProfileWorkRecord> works(n_scopes);
        for (auto& w : works) { w.flops = rng_u32(&rng) % 2 ? (rng_u32(&rng) % 1000) * 1e9 : 0; w.bytes = (rng_u32(&rng) % 1000) * 1e6; }
        const uint64_t t0 = 5000, t1 = t0 + 1 + rng_u32(&rng) % (20 * MS);
        std::vector<ProfileActivity> acts;
        std::vector<bool> used(n_scopes, false);
        const char* names[] = {"k0", "k1", "k2", "k3", "memcpy DtoD"};
        for (int i = 0; i < n_acts; i++) {
            ProfileActivity a;
            a.name = names[rng_u32(&rng) % 5];
            a.start = t0 + rng_u32(&rng) % (t1 - t0);
            a.end = a.start + rng_u32(&rng) % (2 * MS);
            a.copy = a.name == "memcpy DtoD";
            if (a.copy) a.bytes = (rng_u32(&rng) % 1000) * 1e6;
            else if (n_scopes > 0 && rng_u32(&rng) % 4) { a.work = rng_u32(&rng) % n_scopes; used[a.work] = true; }
            acts.push_back(a);
        }
        const ProfileTable t = profile_aggregate(acts, works, t0, t1, CEIL, 1);
        double declared_f = 0, declared_b = 0, rows_f = 0, rows_b = 0, copies_b = 0, sum_ms = 0;
        for (int k = 0; k < n_scopes; k++) if (used[k]) { declared_f += works[k].flops; declared_b += works[k].bytes; }
        for (const ProfileActivity& a : acts) if (a.copy) copies_b += a.bytes;
        for (const ProfileRow& r : t.rows) { rows_f += r.flops; rows_b += r.bytes; sum_ms += r.ms; }
        bool sorted = true;
        for (size_t i = 1; i < t.rows.size(); i++) sorted = sorted && t.rows[i - 1].ms >= t.rows[i].ms;
        const bool ok = close_to(rows_f, declared_f, 1e-9) && close_to(rows_b, declared_b + copies_b, 1e-9) &&
                        close_to(t.busy_ms + t.idle_ms, t.span_ms, 1e-9) && t.busy_ms <= t.span_ms + 1e-9 &&
                        t.busy_ms <= sum_ms + 1e-9 && close_to(sum_ms, t.rows_ms, 1e-9) && sorted;
        if (!ok && bad++ < 3)
            printf("info: trial %d: flops %g vs %g, bytes %g vs %g, busy %g idle %g span %g, sorted %d\n", trial, rows_f, declared_f, rows_b,
                   declared_b + copies_b, t.busy_ms, t.idle_ms, t.span_ms, (int)sorted);
    }
    check(bad == 0, "random steps: work conserved over the rows, busy + idle = span, busy <= rows, rows sorted",
          std::to_string(bad) + " of 300 failed");
}

// The kind of the kernels the trainers launch, by name
static void test_kinds() {
    struct Case { const char* name; bool copy; ProfileKind want; };
    const Case cases[] = {
        {"nvjet_sm90_tst_192x208_64x4_1x2_h_bz_coopB_NNT", false, KIND_MATMUL},
        {"sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", false, KIND_MATMUL},
        {"cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm>", false, KIND_MATMUL},
        {"splitKreduce_kernel<32, 16, int, float, __nv_bfloat16>", false, KIND_MATMUL},
        {"flash::flash_bwd_dkdv_sm90_kernel<80, 2, 128, false, 3, 0>", false, KIND_ATTENTION},
        {"flash_bwd_prep_kernel", false, KIND_ATTENTION},
        {"cp_merge_kernel", false, KIND_ATTENTION},
        {"adamw_kernel", false, KIND_OPTIMIZER},
        {"adamw_pieces_kernel", false, KIND_OPTIMIZER},
        {"global_norm_squared_partial_kernel", false, KIND_OPTIMIZER},
        {"ema_update_kernel", false, KIND_OPTIMIZER},
        {"ncclDevKernel_AllReduce_Sum_f32_RING_LL", false, KIND_COMM},
        {"memcpy DtoD", true, KIND_COPY},
        {"memset", true, KIND_COPY},
        {"rmsnorm_forward_kernel", false, KIND_OTHER},
        {"adaln_reduce_partial_kernel", false, KIND_OTHER},
        {"fused_classifier_kernel", false, KIND_OTHER},
        {"column_reduce_partial_kernel<__nv_bfloat16, __nv_bfloat16>", false, KIND_OTHER},
    };
    for (const Case& c : cases) {
        const ProfileKind k = profile_kind(c.name, c.copy);
        check(k == c.want, std::string("kind of ") + c.name, std::string("got '") + PROFILE_KIND_NAMES[k] + "', expected '" +
              PROFILE_KIND_NAMES[c.want] + "'");
    }
}

// The ceilings by the device's name (cudaDeviceProp::name as the driver reports it)
static void test_peaks() {
    struct Case { const char* device; const char* part; double bf16, mem; };
    const Case cases[] = {
        {"NVIDIA H200", "H200", 989e12, 4.8e12},
        {"NVIDIA H100 80GB HBM3", "H100 SXM", 989e12, 3.35e12},
        {"NVIDIA H100 PCIe", "H100 PCIe", 756e12, 2.0e12},
        {"NVIDIA H100 NVL", "H100 NVL", 835e12, 3.9e12},
    };
    for (const Case& c : cases) {
        const GpuPeaks g = gpu_peaks(c.device);
        check(g.name == c.part && g.bf16_flops == c.bf16 && g.mem_bytes == c.mem, std::string("peaks of ") + c.device,
              g.name + ": " + num(g.bf16_flops) + " FLOP/s, " + num(g.mem_bytes) + " B/s");
    }
    const GpuPeaks u = gpu_peaks("NVIDIA A100-SXM4-80GB");
    check(u.bf16_flops == 989e12 && u.name.find("assumed") != std::string::npos && u.name.find("A100-SXM4-80GB") != std::string::npos,
          "a GPU not in the table: the H200's figures, named as assumed", u.name);
    const ProfileCeilings b = profile_ceilings(gpu_peaks("NVIDIA H100 80GB HBM3"), false), f = profile_ceilings(gpu_peaks("NVIDIA H200"), true);
    check(b.flops == 989e12 && b.flops_name == "H100 SXM dense BF16" && b.bytes == 3.35e12 && b.bytes_name == "H100 SXM HBM3",
          "ceilings of the bf16 build on an H100", b.flops_name + ", " + b.bytes_name);
    check(f.flops == 67e12 && f.flops_name == "H200 FP32" && f.bytes_name == "H200 HBM3e", "ceilings of the fp32 build on an H200",
          f.flops_name + ", " + f.bytes_name);
}

static void test_flag() {
    child_err_path = "test/tmp/profile/child.err";
    make_parent_dirs(child_err_path);
    check_fails_one_line("--profile-step -1", {"--validate", "-1", "10"}, "flag --profile-step");
    check_fails_one_line("--profile-step beyond --steps", {"--validate", "11", "10"}, "flag --profile-step");
    check_fails_one_line("--profile-step with --steps 0", {"--validate", "1", "0"}, "flag --profile-step");
    for (const char* n : {"0", "1", "10"}) {
        const Child c = run_child({"--validate", n, "10"});
        check(c.exited && c.code == 0 && c.err.empty(), std::string("--profile-step ") + n + " of 10 accepted", "exit " + std::to_string(c.code));
    }
}

int main(int argc, char** argv) {
    if (argc == 4 && std::string(argv[1]) == "--validate") {
        profile_validate_step((int)parse_int_or_fail(argv[2], "N"), (int)parse_int_or_fail(argv[3], "STEPS"));
        return 0;
    }
    test_names();
    test_hand_laid();
    test_kinds();
    test_random();
    test_peaks();
    test_flag();
    printf("%s\n", n_failed ? "FAIL test_profile" : "PASS test_profile: all checks");
    return n_failed ? 1 : 0;
}
