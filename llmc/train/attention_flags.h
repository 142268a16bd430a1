// The trainers' attention settings: the flag --attn-backward and the environment variable
// MEGA_FLASH_SM90, read here and handed to the kernels as a FlashSettings
// (llmc/attention/flash_attention.cuh), so that the kernel headers parse nothing.
//   --attn-backward deterministic  (the default) bit-identical gradients run to run, what exact
//                                  resume and the determinism tests rely on
//   --attn-backward fast           dq's fp32 sum order varies run to run (as in PyTorch's SDPA
//                                  backends); faster only where the sm90 kernels run; the GPT at
//                                  hd 64 runs the ordered kernel, as fast there
//   MEGA_FLASH_SM90=0 / 1 / 2      mma.sync kernels everywhere / the default per head dim / sm90
//                                  kernels everywhere they can run (to compare the trainers'
//                                  speed with either family: scripts/bench_attention_families.sh)
#pragma once
#include <cstdlib>
#include <cstring>
#include <string>
#include "../core/args.h"
#include "../attention/flash_attention.cuh"

struct FlashFlags {
    std::string backward = "deterministic";
};
static void flash_add_flags(ArgParser& ap, FlashFlags* f) {
    ap.section("attention");
    ap.add_string("--attn-backward", &f->backward, "deterministic (bit-identical run to run) or fast (Hopper: fp32 atomic "
                                                    "dQ sums, not bit-identical, except the GPT at hd 64 / 128, where the "
                                                    "ordered kernel is faster; docs/results.md)");
}
// MEGA_FLASH_SM90 (unset: the default); any other value than 0, 1, 2 is refused with one line
static FlashFamily flash_family_from_env() {
    const char* env = getenv("MEGA_FLASH_SM90");
    if (!env) return FlashFamily::per_head_dim;
    if (strcmp(env, "0") && strcmp(env, "1") && strcmp(env, "2"))
        fail("environment variable MEGA_FLASH_SM90=%s: expected 0 (mma.sync attention kernels), 1 (default) or 2 (sm90 kernels)", env);
    return static_cast<FlashFamily>(atoi(env));
}
// The flags and MEGA_FLASH_SM90 into the kernels' settings, checked with the other flags, before
// the GPU is touched: a bad value is one line and a non-zero exit.
static void flash_apply_flags(const FlashFlags& f) {
    FlashSettings s;
    if (f.backward == "deterministic") s.backward = FlashBwdPolicy::deterministic;
    else if (f.backward == "fast") s.backward = FlashBwdPolicy::fast;
    else fail("flag --attn-backward: expected deterministic or fast, got '%s'", f.backward.c_str());
    s.family = flash_family_from_env();
    flash_attention_configure(s);
}
// One line for the trainers' start-up report: which kernels and which backward run.
static void flash_print_config() {
    const FlashSettings& s = flash_settings;
    const FlashBwdAlgo now = flash_bwd_algo(s.backward);
#if defined(ENABLE_FP32)
    const bool fp32 = true;
#else
    const bool fp32 = false;
#endif
    printf("attention: %s kernels | backward %s\n",
           fp32 ? "fp32 scalar" : !flash_sm90_available() ? "mma.sync" : s.family == FlashFamily::mma_sync ? "mma.sync (MEGA_FLASH_SM90=0)"
                                                 : s.family == FlashFamily::sm90 ? "sm90 (MEGA_FLASH_SM90=2)" : "sm90 + mma.sync per head dim",
           now == FlashBwdAlgo::atomic              ? "fast (fused, fp32 atomic dQ sums: not bit-identical run to run; the GPT at hd 64: ordered, as fast there)"
           : s.backward == FlashBwdPolicy::fast     ? "deterministic (fast needs the sm90 kernels; split)"
           : now == FlashBwdAlgo::ordered           ? "deterministic (fused, ordered dQ sums: bit-identical run to run)"
                                                    : "deterministic (split: bit-identical run to run)");
}
