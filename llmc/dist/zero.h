/*
ZeRO partition planning, host only (no CUDA): which part of the flat parameter
buffer (n elements, tensors at their ParamTensor offsets) each of W ranks owns,
with padding instead of any divisibility requirement on the model's shapes.
dev/DISTRIBUTED.md has the design around it.

Flat partition (zero_partition; one reduce-scatter over the whole buffer):
  shard  = ceil(n / W) rounded up to a multiple of `align` elements
           (align 16 keeps every fp32 and bf16 shard 64/32-byte aligned)
  padded = shard * W  (>= n, and padded - n < W * align)
Rank r owns [r*shard, (r+1)*shard) of the padded buffer; its part of the real
buffer is [begin, end) = that range clipped to [0, n) (may be empty for tiny
n), the rest of its shard is padding. The gradient and bf16 parameter buffers
are allocated with `padded` elements (padding zeroed, never read by the model),
so ncclReduceScatter(grads -> shard) and ncclAllGather(shard -> params) need no
special cases. The optimizer state and the fp32 master weights are `shard`
elements per rank.

Pieces: per rank, the list of (tensor, offset in tensor, offset in shard,
count) runs, in buffer order, that its shard covers; a shard may start and end
inside tensors. The AdamW step runs once per piece with that tensor's decay
flag (params.cuh runs it once per tensor on the unsharded buffer).

Bucket plan (zero_bucket_plan; reduce-scatter overlapped with the backward):
tensors grouped in reverse layout order (the order backward finishes their
gradients) into buckets of consecutive tensors with at most max_bytes of
gradients each (a single tensor larger than that gets a bucket of its own);
each bucket is a contiguous range [begin, end) of the flat buffer, padded to a
multiple of W * align, and reduce-scattered on its own: rank r owns slice
[r*s, (r+1)*s) of the padded bucket, s = padded / W. A rank's shard is the
concatenation of its slices over the buckets, in bucket order; the pieces map
it to tensors as above. The padded communication buffer lays the buckets out
one after another (comm_offset), so the per-bucket padding is the only memory
this costs. With one bucket this is exactly the flat partition.
*/
#pragma once
#include <cstddef>
#include <string>
#include <vector>
#include "../core/utils.h"
#include "../core/args.h"
#include "../model/param_tensor.h"

struct ZeroPiece {
    int tensor;            // index into the layout
    size_t tensor_offset;  // first element, counted inside the tensor
    size_t shard_offset;   // where it lands in the rank's shard
    size_t count;          // elements
};

struct ZeroPartition {
    size_t n = 0;          // real elements
    int world = 1;
    size_t align = 1;
    size_t shard = 0;      // elements per rank, a multiple of align
    size_t padded = 0;     // shard * world
    std::vector<size_t> begin, end;                // per rank, in the real buffer, clipped to [0, n]
    std::vector<std::vector<ZeroPiece>> pieces;    // per rank, in buffer order (only with a layout)
};

static inline size_t zero_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

static inline void zero_check_args(int world, size_t align, const char* who) {
    if (world < 1) fail("%s: world size must be >= 1, got %d", who, world);
    if (align < 1) fail("%s: alignment must be >= 1 element, got %zu", who, align);
}

// The per-tensor pieces of the real-buffer range [lo, hi), landing in the shard at
// shard_base + (offset - lo); appended to out in buffer order.
static inline void zero_add_pieces(const std::vector<ParamTensor>& layout, size_t lo, size_t hi, size_t shard_base,
                                   std::vector<ZeroPiece>* out) {
    if (lo >= hi) return;
    // binary search for the tensor that holds lo
    size_t a = 0, b = layout.size();
    while (b - a > 1) {
        size_t m = (a + b) / 2;
        if (layout[m].offset <= lo) a = m; else b = m;
    }
    for (size_t t = a; t < layout.size() && layout[t].offset < hi; t++) {
        const size_t t0 = layout[t].offset, t1 = t0 + layout[t].numel;
        const size_t s = lo > t0 ? lo : t0, e = hi < t1 ? hi : t1;
        if (s >= e) continue;
        out->push_back({(int)t, s - t0, shard_base + (s - lo), e - s});
    }
}

static inline void zero_check_layout(const std::vector<ParamTensor>& layout, const char* who) {
    size_t off = 0;
    for (size_t i = 0; i < layout.size(); i++) {
        if (layout[i].offset != off)
            fail("%s: tensor %s starts at %zu, expected %zu (the layout must be contiguous, in order)", who, layout[i].name.c_str(), layout[i].offset, off);
        off += layout[i].numel;
    }
}

// The flat partition of n elements (no tensor pieces).
static inline ZeroPartition zero_partition_flat(size_t n, int world, size_t align) {
    zero_check_args(world, align, "zero_partition");
    ZeroPartition p;
    p.n = n; p.world = world; p.align = align;
    p.shard = zero_round_up((n + (size_t)world - 1) / (size_t)world, align);
    p.padded = p.shard * (size_t)world;
    p.begin.resize(world); p.end.resize(world); p.pieces.resize(world);
    for (int r = 0; r < world; r++) {
        const size_t b = (size_t)r * p.shard, e = b + p.shard;
        p.begin[r] = b < n ? b : n;
        p.end[r] = e < n ? e : n;
    }
    return p;
}

// The flat partition of a layout's buffer, with each rank's tensor pieces.
static inline ZeroPartition zero_partition(const std::vector<ParamTensor>& layout, int world, size_t align) {
    zero_check_layout(layout, "zero_partition");
    ZeroPartition p = zero_partition_flat(layout_numel(layout), world, align);
    for (int r = 0; r < world; r++) zero_add_pieces(layout, p.begin[r], p.end[r], 0, &p.pieces[r]);
    return p;
}

struct ZeroBucket {
    int first, last;       // tensors first..last (layout indices, first <= last), contiguous in the buffer
    size_t begin, end;     // their range in the real buffer
    size_t padded;         // end - begin rounded up to a multiple of world * align
    size_t comm_offset;    // where the bucket starts in the padded communication buffer
    size_t shard_offset;   // where each rank's slice (padded / world elements) starts in its shard
};

struct ZeroBucketPlan {
    int world = 1;
    size_t align = 1, max_bytes = 0, elem_bytes = 4;
    std::vector<ZeroBucket> buckets;               // in reduce order: bucket 0 holds the last tensors
    size_t comm_total = 0;                         // sum of padded sizes
    size_t shard = 0;                              // elements per rank: comm_total / world
    std::vector<std::vector<ZeroPiece>> pieces;    // per rank, in shard order
};

// Buckets of at most max_bytes of elem_bytes-sized gradients (fp32: 4), tensors in
// reverse layout order; the pieces of each rank's shard.
static inline ZeroBucketPlan zero_bucket_plan(const std::vector<ParamTensor>& layout, int world, size_t align,
                                              size_t max_bytes, size_t elem_bytes) {
    zero_check_args(world, align, "zero_bucket_plan");
    zero_check_layout(layout, "zero_bucket_plan");
    if (elem_bytes < 1) fail("zero_bucket_plan: element size must be >= 1 byte");
    if (max_bytes < elem_bytes) fail("zero_bucket_plan: bucket size must be at least one element (%zu bytes), got %zu", elem_bytes, max_bytes);
    ZeroBucketPlan plan;
    plan.world = world; plan.align = align; plan.max_bytes = max_bytes; plan.elem_bytes = elem_bytes;
    const size_t unit = (size_t)world * align;
    const size_t max_elems = max_bytes / elem_bytes;
    int t = (int)layout.size() - 1;
    while (t >= 0) {
        ZeroBucket b;
        b.last = t;
        b.first = t;
        size_t elems = layout[t].numel;
        while (b.first > 0 && elems + layout[b.first - 1].numel <= max_elems) elems += layout[--b.first].numel;
        b.begin = layout[b.first].offset;
        b.end = layout[b.last].offset + layout[b.last].numel;
        b.padded = zero_round_up(b.end - b.begin, unit);
        if (b.padded == 0) b.padded = unit;  // empty tensors only: keep every bucket non-empty for NCCL
        b.comm_offset = plan.comm_total;
        b.shard_offset = plan.comm_total / (size_t)world;
        plan.comm_total += b.padded;
        plan.buckets.push_back(b);
        t = b.first - 1;
    }
    plan.shard = plan.comm_total / (size_t)world;
    plan.pieces.resize(world);
    for (int r = 0; r < world; r++)
        for (const ZeroBucket& b : plan.buckets) {
            const size_t s = b.padded / (size_t)world;
            const size_t lo = b.begin + (size_t)r * s, hi = lo + s;
            zero_add_pieces(layout, lo < b.end ? lo : b.end, hi < b.end ? hi : b.end, b.shard_offset, &plan.pieces[r]);
        }
    return plan;
}

// Bytes per rank for a ZeRO stage, for the memory report: stage 0 = plain data
// parallel, 1 = optimizer state + master sharded, 2 = gradients too. param_bytes:
// bf16 compute weights (2) or fp32 (4). Gradient buffers are fp32; with stage 2
// the full gradient buffer is replaced by the shard plus `bucket_bytes` of staging.
struct ZeroMemory { size_t params, master, grads, adam; size_t total() const { return params + master + grads + adam; } };
static inline ZeroMemory zero_memory_per_rank(size_t n, size_t padded, size_t shard, int stage, size_t param_bytes, size_t bucket_bytes) {
    ZeroMemory m;
    if (stage == 0) {
        m.params = n * param_bytes; m.master = n * 4; m.grads = n * 4; m.adam = 2 * n * 4;
    } else {
        m.params = padded * param_bytes; m.master = shard * 4; m.adam = 2 * shard * 4;
        m.grads = stage == 1 ? padded * 4 : shard * 4 + bucket_bytes;
    }
    return m;
}

// ---------------------------------------------------------------- data-parallel flags
// The flags of a multi-GPU run, the same in both trainers (llmc/dist/distributed.cuh
// uses them; they live here, without CUDA, so that test/test_zero checks them).
// A one-process run ignores them all.

struct DistFlags {
    int zero = 1;                   // 0: all-reduce (plain DDP); 1: optimizer state sharded; 2: gradients sharded too
    float timeout = 60.0f;          // --dist-timeout: rendezvous, communicator setup, and the watchdog of every step
    std::string rendezvous_file;    // "": TCP on MASTER_ADDR:MASTER_PORT (launches without MPI)
    // gradient buckets of at most this many MiB of fp32: larger buckets mean fewer NCCL calls to
    // enqueue while a layer is still 1-2 buckets (the sweep: dev/DISTRIBUTED.md "Bucket size")
    int bucket_mb = 200;
    int cp = 1;                     // --cp: ranks per context-parallel group (llmc/dist/context_parallel.h)
};

static inline void dist_add_flags(ArgParser& ap, DistFlags* f) {
    ap.section("several GPUs (one process per GPU: mpirun, or WORLD_SIZE/RANK/LOCAL_RANK + MASTER_ADDR/MASTER_PORT; README \"Several GPUs\")");
    ap.add_int("--zero", &f->zero, "0: all-reduce the gradients; 1: shard the AdamW state and master weights (ZeRO-1); 2: shard the gradients too (ZeRO-2)");
    ap.add_float("--dist-timeout", &f->timeout, "seconds: rendezvous and NCCL setup limit; a rank that waits this long on the others exits 1 (a rank died or hangs)");
    ap.add_string("--rendezvous-file", &f->rendezvous_file, "pass the NCCL id through this new file on a file system all ranks share (\"\": TCP on MASTER_ADDR:MASTER_PORT)");
    ap.add_int("--bucket-mb", &f->bucket_mb, "gradient communication buckets of at most this many MiB (fp32)");
    ap.add_int("--cp", &f->cp, "context parallel: split each sample's tokens over groups of this many consecutive ranks (ring attention); "
               "with one process, all of them run on its GPU (the simulated ring: a check, no memory saved)");
}

static inline void dist_validate_flags(const DistFlags& f) {
    if (f.zero < 0 || f.zero > 2) fail("flag --zero: expected 0, 1 or 2, got %d", f.zero);
    if (!(f.timeout >= 1 && f.timeout <= 86400)) fail("flag --dist-timeout: must be in [1, 86400] seconds, got %g", f.timeout);
    if (f.bucket_mb < 1 || f.bucket_mb > 16384) fail("flag --bucket-mb: must be in [1, 16384], got %d", f.bucket_mb);
    if (f.cp < 1 || f.cp > 1024) fail("flag --cp: must be in [1, 1024] ranks per context-parallel group, got %d", f.cp);
}

// ---------------------------------------------------------------- gradient layout by layer
// The plan zero_bucket_plan makes buckets of whole tensors, and the layouts stack
// layers ([L, ...] per tensor), so a tensor's gradient is complete only at the end
// of the backward: almost no overlap. zero_grad_layout instead keeps the
// *gradients* of a multi-GPU run in their own buffer, ordered the way the
// backward completes them (the parameters keep the model's layout):
//
//   head region   tensors complete before the last layer's backward (lm_head, final norm)
//   layer slots   slot l: layer l's slice of every per-layer tensor, one after another
//   tail region   tensors complete only at the end (embeddings, conditioning)
//
// Every tensor / layer slice starts at a multiple of seg_align elements (kernels and
// cuBLAS need aligned pointers); every region and slot is padded to a multiple of
// unit = lcm(world * align, seg_align), and cut into buckets of at most max_bytes
// (multiples of unit; at least one unit) in completion order: head, layer L-1, ..., layer 0,
// tail. A bucket is a contiguous range of this buffer, reduced on its own as soon
// as the backward has finished its stage: rank r owns slice [r*s, (r+1)*s) of it,
// s = size / world; the rank's shard is the concatenation of its slices in bucket
// order, and `pieces` maps it to (tensor, offset in the tensor) as for the flat
// partition. The padding is zero and never written by the model.
//
// "Logical" offsets place every layer's slot (the full buffer of ZeRO 0/1);
// ZeRO-2 allocates only `slots` slots, reused round-robin (layer l in slot
// l % slots), so its physical buffer is head + slots * slot + tail. The gradient
// of layer l's slice of tensor t is at physical offset off[t] + (l % slots) * slot_size.

static const int ZERO_HEAD = -1;   // backward stage: the head's gradients are complete
static const int ZERO_TAIL = -2;   // backward stage: the tail's (and so every) gradient is complete

struct ZeroSegment {
    size_t grad;           // logical offset in the gradient buffer
    int tensor;            // layout index
    size_t tensor_offset;  // first element inside the tensor (layer * slice for a layer's slice)
    size_t count;
    int stage;             // ZERO_HEAD, the layer, or ZERO_TAIL
};

struct ZeroCommBucket {
    size_t begin;          // logical offset (a multiple of world * align)
    size_t size;           // a multiple of world * align
    size_t phys;           // physical offset in the allocated gradient buffer
    size_t shard_offset;   // where each rank's slice (size / world) lands in its shard
    int stage;             // when it is complete: ZERO_HEAD, a layer, ZERO_TAIL
};

struct ZeroGradLayout {
    int world = 1, n_layer = 0, slots = 0;
    size_t align = 16, seg_align = 16, max_bytes = 0;
    std::vector<int> kind;               // per tensor
    std::vector<size_t> off;             // per tensor: physical offset of its gradient (layer 0's slice for a layer tensor)
    size_t head_size = 0, slot_begin = 0, slot_size = 0, tail_begin = 0, tail_size = 0;  // logical regions
    size_t total = 0;                    // logical size: head + n_layer slots + tail
    size_t phys_total = 0;               // allocated: head + slots * slot_size + tail
    std::vector<ZeroSegment> segments;   // by logical offset
    std::vector<ZeroCommBucket> buckets; // in completion order
    size_t shard = 0;                    // elements per rank (sum of size / world)
    std::vector<std::vector<ZeroPiece>> pieces;  // per rank, in shard order
};

// Index 0..n_layer+1 of a backward stage (head 0, layer l at 1 + l, tail n_layer + 1).
static inline int zero_stage_index(int stage, int n_layer) {
    return stage == ZERO_HEAD ? 0 : stage == ZERO_TAIL ? n_layer + 1 : 1 + stage;
}

// Physical offset of a logical one (ZeRO-2 folds the layer slots onto `slots` of them).
static inline size_t zero_phys(const ZeroGradLayout& g, size_t x) {
    if (x < g.slot_begin) return x;
    if (x < g.tail_begin) {
        const size_t l = (x - g.slot_begin) / g.slot_size;
        return g.slot_begin + (l % (size_t)g.slots) * g.slot_size + (x - g.slot_begin - l * g.slot_size);
    }
    return x - g.tail_begin + g.slot_begin + (size_t)g.slots * g.slot_size;
}

// kind: per tensor of the layout, its ParamStage (llmc/model/param_tensor.h; the
// model's config says it); a PARAM_LAYER tensor's numel must be a multiple
// of n_layer (its layers are stacked [n_layer, ...]). slots: 0 for every layer its
// own slot (ZeRO 0/1), else the number of slots reused round-robin (ZeRO-2).
static inline ZeroGradLayout zero_grad_layout(const std::vector<ParamTensor>& layout, const std::vector<int>& kind, int n_layer,
                                              int world, size_t align, size_t max_bytes, int slots) {
    const char* who = "zero_grad_layout";
    zero_check_args(world, align, who);
    zero_check_layout(layout, who);
    if (kind.size() != layout.size()) fail("%s: %zu kinds for %zu tensors", who, kind.size(), layout.size());
    if (n_layer < 1) fail("%s: n_layer must be >= 1, got %d", who, n_layer);
    if (max_bytes < 4) fail("%s: bucket size must be at least one fp32 element (4 bytes), got %zu", who, max_bytes);
    if (slots < 0) fail("%s: slots must be >= 0, got %d", who, slots);
    ZeroGradLayout g;
    g.world = world; g.n_layer = n_layer; g.align = align; g.max_bytes = max_bytes;
    g.slots = (slots == 0 || slots > n_layer) ? n_layer : slots;
    g.kind = kind;
    g.off.assign(layout.size(), 0);
    const size_t sa = g.seg_align;
    size_t ga = (size_t)world * align, gb = sa;   // unit = lcm(world * align, seg_align)
    while (gb) { const size_t t = ga % gb; ga = gb; gb = t; }
    const size_t unit = (size_t)world * align / ga * sa;
    // the regions' contents, at seg_align-aligned offsets inside each region
    std::vector<size_t> in_region(layout.size(), 0);
    size_t head = 0, slot = 0, tail = 0;
    for (size_t t = 0; t < layout.size(); t++) {
        const ParamTensor& p = layout[t];
        if (kind[t] == PARAM_LAYER) {
            if (p.numel % (size_t)n_layer != 0) fail("%s: tensor %s has %zu elements, not a multiple of %d layers", who, p.name.c_str(), p.numel, n_layer);
            in_region[t] = slot; slot = zero_round_up(slot + p.numel / n_layer, sa);
        } else if (kind[t] == PARAM_HEAD) {
            in_region[t] = head; head = zero_round_up(head + p.numel, sa);
        } else if (kind[t] == PARAM_TAIL) {
            in_region[t] = tail; tail = zero_round_up(tail + p.numel, sa);
        } else {
            fail("%s: tensor %s has kind %d (expected head 0, layer 1 or tail 2)", who, p.name.c_str(), kind[t]);
        }
    }
    g.head_size = zero_round_up(head, unit);
    g.slot_begin = g.head_size;
    g.slot_size = zero_round_up(slot, unit);
    g.tail_begin = g.slot_begin + (size_t)n_layer * g.slot_size;
    g.tail_size = zero_round_up(tail, unit);
    g.total = g.tail_begin + g.tail_size;
    g.phys_total = g.slot_begin + (size_t)g.slots * g.slot_size + g.tail_size;
    for (size_t t = 0; t < layout.size(); t++) {
        const size_t logical = kind[t] == PARAM_HEAD ? in_region[t] : kind[t] == PARAM_LAYER ? g.slot_begin + in_region[t]
                                                                                                     : g.tail_begin + in_region[t];
        g.off[t] = zero_phys(g, logical);
    }
    // segments, by logical offset: head tensors, then layer by layer, then tail tensors
    for (size_t t = 0; t < layout.size(); t++)
        if (kind[t] == PARAM_HEAD && layout[t].numel > 0) g.segments.push_back({in_region[t], (int)t, 0, layout[t].numel, ZERO_HEAD});
    for (int l = 0; l < n_layer; l++)
        for (size_t t = 0; t < layout.size(); t++)
            if (kind[t] == PARAM_LAYER && layout[t].numel > 0) {
                const size_t s = layout[t].numel / n_layer;
                g.segments.push_back({g.slot_begin + (size_t)l * g.slot_size + in_region[t], (int)t, (size_t)l * s, s, l});
            }
    for (size_t t = 0; t < layout.size(); t++)
        if (kind[t] == PARAM_TAIL && layout[t].numel > 0) g.segments.push_back({g.tail_begin + in_region[t], (int)t, 0, layout[t].numel, ZERO_TAIL});
    // buckets in completion order
    const size_t max_elems = max_bytes / 4;
    const size_t chunk = max_elems >= unit ? max_elems / unit * unit : unit;
    auto cut = [&](size_t begin, size_t size, int stage) {
        for (size_t o = 0; o < size; o += chunk) {
            ZeroCommBucket b;
            b.begin = begin + o;
            b.size = size - o < chunk ? size - o : chunk;
            b.phys = zero_phys(g, b.begin);
            b.shard_offset = g.shard;
            b.stage = stage;
            g.shard += b.size / (size_t)world;
            g.buckets.push_back(b);
        }
    };
    cut(0, g.head_size, ZERO_HEAD);
    for (int l = n_layer - 1; l >= 0; l--) cut(g.slot_begin + (size_t)l * g.slot_size, g.slot_size, l);
    cut(g.tail_begin, g.tail_size, ZERO_TAIL);
    // each rank's pieces: its slice of every bucket against the segments
    g.pieces.resize(world);
    for (int r = 0; r < world; r++)
        for (const ZeroCommBucket& b : g.buckets) {
            const size_t s = b.size / (size_t)world, lo = b.begin + (size_t)r * s, hi = lo + s;
            // first segment that ends after lo
            size_t a = 0, e = g.segments.size();
            while (a < e) {
                const size_t m = (a + e) / 2;
                if (g.segments[m].grad + g.segments[m].count <= lo) a = m + 1; else e = m;
            }
            for (size_t k = a; k < g.segments.size() && g.segments[k].grad < hi; k++) {
                const ZeroSegment& sg = g.segments[k];
                const size_t x0 = lo > sg.grad ? lo : sg.grad, x1 = hi < sg.grad + sg.count ? hi : sg.grad + sg.count;
                if (x0 >= x1) continue;
                g.pieces[r].push_back({sg.tensor, sg.tensor_offset + (x0 - sg.grad), b.shard_offset + (x0 - lo), x1 - x0});
            }
        }
    return g;
}

// Per-rank memory of a multi-GPU run with this plan, in bytes (the memory report):
// stage 0 keeps everything full size with the gradients in the layer-ordered buffer;
// 1 shards master and moments; 2 also replaces the full gradient buffer by head,
// `slots` layer slots, tail and the shard plus one bucket slice of staging.
static inline ZeroMemory zero_grad_layout_memory(const ZeroGradLayout& g, size_t n, int stage, size_t param_bytes) {
    ZeroMemory m;
    size_t max_bucket = 0;
    for (const ZeroCommBucket& b : g.buckets) max_bucket = b.size > max_bucket ? b.size : max_bucket;
    m.params = n * param_bytes;
    if (stage == 0) {
        m.master = n * 4; m.adam = 2 * n * 4; m.grads = g.total * 4;
    } else {
        m.params += g.shard * param_bytes;   // the bf16 shard the optimizer writes, gathered into the weights
        m.master = g.shard * 4; m.adam = 2 * g.shard * 4;
        m.grads = stage == 1 ? (g.total + g.shard) * 4 : (g.phys_total + g.shard + max_bucket / (size_t)g.world) * 4;
    }
    return m;
}
