// Learning-rate schedule, the same flags in both trainers: linear warmup, then
// cosine / linear / wsd (constant, then a linear decay over the last
// wsd_decay_frac of the steps) / constant, ending at lr * min_lr_frac; or
// trapezoid: wsd whose decay is the line down from lr at the decay's start to
// lr * min_lr_frac at the last step, the lr the smaller of it and the warmup's
// line where the two meet. Host code.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include "../core/args.h"
#include "../core/utils.h"

struct Schedule {
    std::string kind = "cosine";
    int warmup = 0, steps = 1;
    float lr = 1e-3f, min_lr_frac = 0.1f, wsd_decay_frac = 0.2f;
};

// the lr of step `step` (0-based: steps done before it)
static inline float schedule_lr(const Schedule& s, int step) {
    const float lo = s.lr * s.min_lr_frac;
    if (s.kind == "trapezoid") {
        const int decay_start = s.steps - (int)(s.wsd_decay_frac * s.steps);
        const float up = step < s.warmup ? s.lr * (step + 1) / s.warmup : s.lr;
        if (step < decay_start || s.wsd_decay_frac <= 0) return up;
        return std::min(up, lo + (s.lr - lo) * (float)(s.steps - step) / (float)(s.steps - decay_start));
    }
    if (step < s.warmup) return s.lr * (step + 1) / s.warmup;
    if (s.kind == "constant") return s.lr;
    const float span = (float)std::max(1, s.steps - s.warmup);
    const float p = std::min(1.0f, (step - s.warmup) / span);
    if (s.kind == "cosine") return lo + 0.5f * (s.lr - lo) * (1.0f + cosf(3.14159265f * p));
    if (s.kind == "linear") return s.lr - (s.lr - lo) * p;
    // wsd
    const int decay_start = s.steps - (int)(s.wsd_decay_frac * s.steps);
    if (step < decay_start) return s.lr;
    return s.lr - (s.lr - lo) * std::min(1.0f, (float)(step - decay_start) / std::max(1, s.steps - decay_start));
}

// --warmup, --schedule, --min-lr-frac, --wsd-decay-frac (the trainer adds --lr and --steps)
static inline void schedule_add_flags(ArgParser& ap, Schedule* s) {
    ap.add_int("--warmup", &s->warmup, "linear warmup steps");
    ap.add_string("--schedule", &s->kind, "decay after warmup: cosine, linear, wsd, trapezoid or constant");
    ap.add_float("--min-lr-frac", &s->min_lr_frac, "final lr as a fraction of the peak");
    ap.add_float("--wsd-decay-frac", &s->wsd_decay_frac, "wsd, trapezoid: fraction of steps spent decaying at the end");
}

static inline void schedule_validate(const Schedule& s) {
    if (s.warmup < 0) fail("flag --warmup: must be >= 0, got %d", s.warmup);
    if (!(s.min_lr_frac >= 0 && s.min_lr_frac <= 1)) fail("flag --min-lr-frac: must be in [0, 1]");
    if (!(s.wsd_decay_frac >= 0 && s.wsd_decay_frac <= 1)) fail("flag --wsd-decay-frac: must be in [0, 1]");
    if (s.kind != "cosine" && s.kind != "linear" && s.kind != "wsd" && s.kind != "trapezoid" && s.kind != "constant")
        fail("flag --schedule: expected cosine, linear, wsd, trapezoid or constant, got '%s'", s.kind.c_str());
}
