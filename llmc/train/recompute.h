/*
Activation recompute, shared by both trainers: which per-layer activations the
forward keeps for the backward, and which the backward rebuilds, trading memory
for time in three steps (Megatron's --recompute-granularity, torchtitan's
activation checkpointing):

  none       every activation of every block is kept.
  selective  the matmul and attention outputs are kept; what is cheap to redo from
             them (norm outputs, modulations, QK-norm + RoPE, SwiGLU) is dropped
             and rebuilt at the top of the block's backward.
  full       only the block's input is kept (and the per-sample conditioning, which
             is not per block); the block's forward is rerun inside its backward.

--recompute-layers K applies the mode to the first K blocks only (Megatron's "block"
method; -1: all), so memory and time move in steps of one block.

Every kernel is deterministic and the rerun reads the same bits in the same order,
so gradients with recompute are bit-identical to those without (test/test_gpt.cu,
test/test_dit.cu check it).

A per-layer activation carries how long it is kept (ActKeep). A dropped one lives,
for the recomputed blocks, in one shared one-block slot (index 0), and for the
others at index l - K + 1: the slot holds L - K + 1 blocks instead of L.
*/
#pragma once
#include <string>
#include "../core/args.h"
#include "../core/utils.h"

enum RecomputeMode { RECOMPUTE_NONE = 0, RECOMPUTE_SELECTIVE = 1, RECOMPUTE_FULL = 2 };

static inline const char* recompute_mode_name(RecomputeMode m) {
    return m == RECOMPUTE_FULL ? "full" : m == RECOMPUTE_SELECTIVE ? "selective" : "none";
}

enum ActKeep {
    ACT_KEPT,        // every mode keeps it for every block: block inputs, norm statistics
    ACT_FULL_DROPS,  // selective keeps it, full rebuilds it: matmul and attention outputs
    ACT_CHEAP,       // selective and full rebuild it: norm outputs, modulations, RoPE, SwiGLU
    ACT_FULL_INPUT,  // full only, the recomputed blocks only: the input a block's rerun starts from
};

struct Recompute {
    RecomputeMode mode = RECOMPUTE_NONE;
    int layers = 0;   // the first `layers` blocks are recomputed (0 with mode none)

    bool on(int l) const { return mode != RECOMPUTE_NONE && l < layers; }
    bool full(int l) const { return mode == RECOMPUTE_FULL && l < layers; }
    bool drops(ActKeep k) const {
        return layers > 0 && ((k == ACT_CHEAP && mode != RECOMPUTE_NONE) || (k == ACT_FULL_DROPS && mode == RECOMPUTE_FULL));
    }
    // blocks a per-layer slot of kind k holds, out of n_layer
    int slot_layers(ActKeep k, int n_layer) const {
        if (k == ACT_FULL_INPUT) return mode == RECOMPUTE_FULL ? layers : 0;
        return drops(k) ? n_layer - layers + 1 : n_layer;
    }
    // where block l's activation of kind k is in its slot
    int slot_index(ActKeep k, int l) const {
        if (k == ACT_FULL_INPUT) return l;
        if (!drops(k)) return l;
        return l < layers ? 0 : l - layers + 1;
    }
};

struct RecomputeFlags {
    std::string mode = "none";   // --recompute
    int layers = -1;             // --recompute-layers (-1: all)
};

static inline void recompute_add_flags(ArgParser& ap, RecomputeFlags* f) {
    ap.section("activation recompute (memory for time: docs/memory.md)");
    ap.add_string("--recompute", &f->mode, "none | selective (rebuild norms, RoPE, SwiGLU/GELU in the backward) | full (rerun each block's forward in its backward)");
    ap.add_int("--recompute-layers", &f->layers, "recompute only the first K blocks (-1: all of them)");
}

// n_layer: the model's blocks; the one line names the flag.
static inline Recompute recompute_from_flags(const RecomputeFlags& f, int n_layer) {
    Recompute r;
    if (f.mode == "none") r.mode = RECOMPUTE_NONE;
    else if (f.mode == "selective") r.mode = RECOMPUTE_SELECTIVE;
    else if (f.mode == "full") r.mode = RECOMPUTE_FULL;
    else fail("flag --recompute: expected none, selective or full, got '%s'", f.mode.c_str());
    if (f.layers < -1 || f.layers > n_layer)
        fail("flag --recompute-layers: must be in [0, %d] (the model's blocks) or -1 for all, got %d", n_layer, f.layers);
    if (r.mode == RECOMPUTE_NONE && f.layers > 0) fail("flag --recompute-layers: %d given with --recompute none (choose selective or full)", f.layers);
    r.layers = r.mode == RECOMPUTE_NONE ? 0 : f.layers < 0 ? n_layer : f.layers;
    return r;
}
