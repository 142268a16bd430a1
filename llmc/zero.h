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
#include "utils.h"
#include "gpt_config.h"  // ParamTensor

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
    ZeroPartition p = zero_partition_flat(gpt_num_params(layout), world, align);
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
