/*
Tests of llmc/dist/zero.h (ZeRO partition and bucket planning), exhaustively on
small cases: every n from 1 to 200 (random layouts of 1..7 tensors summing to
n, some with empty-range ranks), world sizes 1..8, alignments 1, 4 and 16.
Flat partition: equal shards that are multiples of the alignment, padding
< W*align and minimal, rank ranges disjoint and covering [0, n), pieces cover
every element exactly once, land at the right shard offsets and carry their
tensor's decay flag. Bucket plans (several bucket sizes): every tensor in
exactly one bucket, reverse layout order, size limit kept, padding to
W*align, contiguous communication offsets, pieces cover every element once;
one big bucket equals the flat partition. Then the real presets (tensor-level
coverage) and bad arguments (exit 1, one line; child process).
The layer-ordered gradient layout of the multi-GPU runs (zero_grad_layout,
llmc/dist/distributed.cuh): random layouts of head / per-layer / tail tensors, 1..5
layers, world sizes 1..8, alignments 1/4/16, bucket sizes 4 B..1 GiB, every
layer its own slot or two slots reused (ZeRO-2): every element in exactly one
rank's piece, at the logical place its bucket slice says; segments aligned and
disjoint; buckets contiguous, in completion order (head, layers from the last,
tail), padded, under the size limit; the physical offsets of a ring of slots;
the trainers' presets with their stage kinds (and the stacked-layout strides the
trainers' backward uses); the memory arithmetic; the flags --zero,
--dist-timeout, --bucket-mb (bad values: one line, exit 1).

  make test/test_zero && ./test/test_zero
  child mode: --plan WORLD ALIGN MAX_BYTES   plan the tiny model
              --flags ARGS...                parse and validate the data-parallel flags
*/
#include <algorithm>
#include <ctime>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/core/rand.h"
#include "../llmc/dist/zero.h"
#include "../llmc/model/gpt_config.h"
#include "../llmc/model/dit_config.h"

static const std::string DIR = "test/tmp/zero";
static std::string str(long long x) { return std::to_string(x); }

static std::vector<ParamTensor> random_layout(size_t n, Rng* rng) {
    const size_t max_t = n < 7 ? n : 7;
    const size_t k = 1 + rng_u32(rng) % max_t;
    // k-1 distinct cut points in [1, n)
    std::vector<size_t> cuts;
    while (cuts.size() + 1 < k) {
        size_t c = 1 + rng_u32(rng) % (n - 1);
        bool dup = false;
        for (size_t x : cuts) dup = dup || x == c;
        if (!dup) cuts.push_back(c);
    }
    cuts.push_back(0);
    cuts.push_back(n);
    std::sort(cuts.begin(), cuts.end());
    std::vector<ParamTensor> t;
    for (size_t i = 0; i + 1 < cuts.size(); i++)
        t.push_back({"t" + std::to_string(i), {(int)(cuts[i + 1] - cuts[i])}, cuts[i + 1] - cuts[i], cuts[i], (rng_u32(rng) & 1) != 0});
    return t;
}

// Checks one rank's pieces: in order, inside their tensors, non-overlapping in the
// shard, and each element's global index equal to global(rank, shard offset).
// Marks cover[] and returns "" or the first problem.
template <class Global>
static std::string check_pieces(const std::vector<ParamTensor>& L, const std::vector<ZeroPiece>& ps, size_t shard,
                                Global global, std::vector<int>* cover) {
    size_t prev_end = 0;
    for (const ZeroPiece& p : ps) {
        if (p.tensor < 0 || p.tensor >= (int)L.size()) return "tensor index out of range";
        const ParamTensor& t = L[p.tensor];
        if (p.count == 0) return "empty piece";
        if (p.tensor_offset + p.count > t.numel) return "piece runs past its tensor";
        if (p.shard_offset + p.count > shard) return "piece runs past the shard";
        if (p.shard_offset < prev_end) return "pieces overlap or are out of order in the shard";
        prev_end = p.shard_offset + p.count;
        for (size_t k = 0; k < p.count; k++) {
            const size_t g = t.offset + p.tensor_offset + k;
            if (global(p.shard_offset + k) != g) return "element lands at the wrong shard offset";
            (*cover)[g]++;
        }
    }
    return "";
}

static std::string describe(size_t n, int W, size_t a) { return "n=" + str(n) + " W=" + str(W) + " align=" + str(a); }

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 5 && std::string(argv[1]) == "--plan") {
        GPTConfig c;
        gpt_config_finalize(&c);
        std::vector<ParamTensor> L = gpt_param_layout(c);
        ZeroPartition p = zero_partition(L, (int)parse_int_or_fail(argv[2], "WORLD"), (size_t)parse_int_or_fail(argv[3], "ALIGN"));
        ZeroBucketPlan b = zero_bucket_plan(L, p.world, p.align, (size_t)parse_int_or_fail(argv[4], "MAX_BYTES"), 4);
        printf("%zu %zu\n", p.shard, b.shard);
        return 0;
    }
    if (argc >= 2 && std::string(argv[1]) == "--flags") {
        DistFlags f;
        ArgParser ap;
        ap.program = "test_zero";
        dist_add_flags(ap, &f);
        ap.parse(argc - 1, argv + 1);
        dist_validate_flags(f);
        printf("%d %g %s %d\n", f.zero, f.timeout, f.rendezvous_file.c_str(), f.bucket_mb);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--plan WORLD ALIGN MAX_BYTES | --flags ARGS...]", argv[0]);
    make_parent_dirs(DIR + "/x");
    const double t0 = wall_seconds();
    Rng rng;
    rng_seed(&rng, 1234);

    long long n_flat = 0, n_plans = 0, n_empty_ranks = 0, n_multi_tensor_shards = 0;
    std::string flat_err, piece_err, bucket_err, equal_err;
    const size_t aligns[3] = {1, 4, 16};
    for (size_t n = 1; n <= 200; n++) {
        for (int layouts = 0; layouts < 3; layouts++) {
            std::vector<ParamTensor> L = random_layout(n, &rng);
            for (int W = 1; W <= 8; W++) {
                for (size_t a : aligns) {
                    const std::string where = describe(n, W, a) + " tensors=" + str((long long)L.size());
                    // ---- flat partition
                    ZeroPartition p = zero_partition(L, W, a);
                    n_flat++;
                    const size_t ceil_nw = (n + W - 1) / W;
                    std::string e;
                    if (p.shard % a != 0) e = "shard not a multiple of the alignment";
                    else if (p.shard < ceil_nw || p.shard >= ceil_nw + a) e = "shard not ceil(n/W) rounded up to the alignment";
                    else if (p.padded != p.shard * W) e = "padded != shard * W";
                    else if (p.padded < n || p.padded - n >= (size_t)W * a) e = "padding >= W*align";
                    else if ((int)p.begin.size() != W || (int)p.end.size() != W || (int)p.pieces.size() != W) e = "per-rank vectors of the wrong size";
                    else if (p.begin[0] != 0 || p.end[W - 1] != n) e = "ranges do not span [0, n)";
                    for (int r = 0; r < W && e.empty(); r++) {
                        if (p.begin[r] > p.end[r] || p.end[r] - p.begin[r] > p.shard) e = "bad range of rank " + str(r);
                        else if (r > 0 && p.begin[r] != p.end[r - 1]) e = "ranges of ranks " + str(r - 1) + " and " + str(r) + " overlap or leave a gap";
                        else if (p.begin[r] != std::min(n, (size_t)r * p.shard)) e = "rank " + str(r) + " does not start at r*shard";
                        n_empty_ranks += p.begin[r] == p.end[r];
                    }
                    if (!e.empty() && flat_err.empty()) flat_err = where + ": " + e;
                    // ---- its pieces
                    std::vector<int> cover(n, 0);
                    for (int r = 0; r < W && e.empty(); r++) {
                        const size_t base = p.begin[r];
                        e = check_pieces(L, p.pieces[r], p.shard, [&](size_t so) { return base + so; }, &cover);
                        if (e.empty()) {
                            size_t sum = 0;
                            for (const ZeroPiece& q : p.pieces[r]) sum += q.count;
                            if (sum != p.end[r] - p.begin[r]) e = "pieces of rank " + str(r) + " do not add up to its range";
                            // decay flags per shard element, as the optimizer would apply them
                            for (const ZeroPiece& q : p.pieces[r])
                                for (size_t k = 0; k < q.count && e.empty(); k++) {
                                    const size_t g = base + q.shard_offset + k;
                                    size_t ti = 0;
                                    while (!(L[ti].offset <= g && g < L[ti].offset + L[ti].numel)) ti++;
                                    if (L[q.tensor].decay != L[ti].decay || (int)ti != q.tensor) e = "decay flag of the wrong tensor";
                                }
                            n_multi_tensor_shards += p.pieces[r].size() > 1;
                        }
                    }
                    for (size_t i = 0; i < n && e.empty(); i++)
                        if (cover[i] != 1) e = "element " + str((long long)i) + " covered " + str(cover[i]) + " times";
                    if (!e.empty() && piece_err.empty()) piece_err = where + ": " + e;

                    // ---- bucket plans
                    const size_t sizes[5] = {4, 16, 100, 400, 1u << 30};
                    for (size_t mb : sizes) {
                        ZeroBucketPlan b = zero_bucket_plan(L, W, a, mb, 4);
                        n_plans++;
                        std::string be;
                        const size_t unit = (size_t)W * a;
                        std::vector<int> tcount(L.size(), 0);
                        size_t comm = 0;
                        for (size_t k = 0; k < b.buckets.size() && be.empty(); k++) {
                            const ZeroBucket& B = b.buckets[k];
                            if (B.first > B.last) be = "bucket with first > last";
                            else if (k == 0 && B.last != (int)L.size() - 1) be = "first bucket does not hold the last tensor";
                            else if (k > 0 && B.last != b.buckets[k - 1].first - 1) be = "buckets not in reverse layout order";
                            else if (B.begin != L[B.first].offset || B.end != L[B.last].offset + L[B.last].numel) be = "bucket range does not match its tensors";
                            else if ((B.end - B.begin) * 4 > mb && B.first != B.last) be = "bucket over the size limit with more than one tensor";
                            else if (B.first > 0 && (B.end - B.begin + L[B.first - 1].numel) * 4 <= mb) be = "bucket could have taken the next tensor";
                            else if (B.padded % unit != 0 || B.padded < B.end - B.begin || B.padded - (B.end - B.begin) >= unit) be = "bucket padding not the next multiple of W*align";
                            else if (B.comm_offset != comm || B.shard_offset != comm / W) be = "communication / shard offsets not contiguous";
                            for (int t = B.first; t <= B.last && be.empty(); t++) tcount[t]++;
                            comm += B.padded;
                        }
                        if (be.empty() && (b.comm_total != comm || b.shard * W != comm)) be = "totals wrong";
                        if (be.empty() && !b.buckets.empty() && b.buckets.back().first != 0) be = "last bucket does not reach tensor 0";
                        for (size_t t = 0; t < L.size() && be.empty(); t++)
                            if (tcount[t] != 1) be = "tensor " + str((long long)t) + " in " + str(tcount[t]) + " buckets";
                        std::vector<int> bcover(n, 0);
                        for (int r = 0; r < W && be.empty(); r++) {
                            auto global = [&](size_t so) -> size_t {
                                for (const ZeroBucket& B : b.buckets) {
                                    const size_t s = B.padded / W;
                                    if (so >= B.shard_offset && so < B.shard_offset + s) return B.begin + (size_t)r * s + (so - B.shard_offset);
                                }
                                return (size_t)-1;
                            };
                            be = check_pieces(L, b.pieces[r], b.shard, global, &bcover);
                        }
                        for (size_t i = 0; i < n && be.empty(); i++)
                            if (bcover[i] != 1) be = "element " + str((long long)i) + " covered " + str(bcover[i]) + " times";
                        if (!be.empty() && bucket_err.empty()) bucket_err = where + " max_bytes=" + str((long long)mb) + ": " + be;
                        // one bucket holding everything is the flat partition
                        if (mb == (1u << 30) && equal_err.empty()) {
                            bool same = b.buckets.size() == 1 && b.shard == p.shard && b.comm_total == p.padded;
                            for (int r = 0; r < W && same; r++) {
                                same = b.pieces[r].size() == p.pieces[r].size();
                                for (size_t i = 0; i < p.pieces[r].size() && same; i++) {
                                    const ZeroPiece &x = b.pieces[r][i], &y = p.pieces[r][i];
                                    same = x.tensor == y.tensor && x.tensor_offset == y.tensor_offset && x.shard_offset == y.shard_offset && x.count == y.count;
                                }
                            }
                            if (!same) equal_err = where;
                        }
                    }
                }
            }
        }
    }
    check(flat_err.empty(), "flat_partition", flat_err.empty() ? str(n_flat) + " cases (n 1..200 x 3 layouts, W 1..8, align 1/4/16): equal aligned shards, padding < W*align, disjoint ranges covering [0, n), " + str(n_empty_ranks) + " empty ranks" : flat_err);
    check(piece_err.empty(), "flat_pieces", piece_err.empty() ? "every element in exactly one piece at the right shard offset with its tensor's decay flag; " + str(n_multi_tensor_shards) + " shards span several tensors" : piece_err);
    check(bucket_err.empty(), "bucket_plans", bucket_err.empty() ? str(n_plans) + " plans (bucket sizes 4 B..1 GiB): every tensor in one bucket, reverse order, limit kept, W*align padding, every element covered once" : bucket_err);
    check(equal_err.empty(), "one_bucket_is_flat", equal_err.empty() ? "a single bucket gives the flat partition's shard and pieces" : equal_err);

    // ---- real presets: tensor-level coverage (too big for per-element arrays)
    for (const char* name : {"tiny", "shakespeare", "gpt-s", "gpt-1b", "qwen3-0.6b"}) {
        GPTConfig c;
        gpt_preset(name, &c);
        gpt_config_finalize(&c);
        std::vector<ParamTensor> L = gpt_param_layout(c);
        const size_t n = layout_numel(L);
        for (int W : {3, 8}) {
            ZeroPartition p = zero_partition(L, W, 16);
            ZeroBucketPlan b = zero_bucket_plan(L, W, 16, 25u << 20, 4);
            std::vector<size_t> got(L.size(), 0), gotb(L.size(), 0);
            for (int r = 0; r < W; r++) {
                for (const ZeroPiece& q : p.pieces[r]) got[q.tensor] += q.count;
                for (const ZeroPiece& q : b.pieces[r]) gotb[q.tensor] += q.count;
            }
            bool ok = p.padded - n < (size_t)W * 16 && b.comm_total - n < b.buckets.size() * W * 16;
            for (size_t t = 0; t < L.size(); t++) ok = ok && got[t] == L[t].numel && gotb[t] == L[t].numel;
            check(ok, std::string("preset_") + name + "_W" + str(W),
                  str((long long)n) + " params: shard " + str((long long)p.shard) + " (+" + str((long long)(p.padded - n)) + " padding); " +
                  str((long long)b.buckets.size()) + " buckets of <= 25 MiB, shard " + str((long long)b.shard) + " (+" + str((long long)(b.comm_total - n)) + " padding)");
        }
    }
    // ---- memory report arithmetic
    {
        ZeroMemory m0 = zero_memory_per_rank(1000, 1024, 128, 0, 2, 0), m1 = zero_memory_per_rank(1000, 1024, 128, 1, 2, 0),
                   m2 = zero_memory_per_rank(1000, 1024, 128, 2, 2, 256);
        check(m0.total() == 1000 * 18 && m1.total() == 1024 * 2 + 128 * 12 + 1024 * 4 && m2.total() == 1024 * 2 + 128 * 12 + 128 * 4 + 256,
              "memory_per_rank", "stage 0: 18 B/param; stage 1: bf16 + fp32 grads full, master + moments sharded; stage 2: grads sharded too");
    }
    // ---- the layer-ordered gradient layout (multi-GPU runs)
    {
        long long n_layouts = 0, n_ring = 0;
        std::string err;
        for (int trial = 0; trial < 400 && err.empty(); trial++) {
            const int L = 1 + (int)(rng_u32(&rng) % 5);
            const int nt = 1 + (int)(rng_u32(&rng) % 7);
            std::vector<ParamTensor> lay;
            std::vector<int> kinds;
            size_t off = 0;
            for (int t = 0; t < nt; t++) {
                const int kd = (int)(rng_u32(&rng) % 3);
                const size_t numel = kd == PARAM_LAYER ? (size_t)L * (1 + rng_u32(&rng) % 9) : 1 + rng_u32(&rng) % 40;
                lay.push_back({"t" + str(t), {(int)numel}, numel, off, (rng_u32(&rng) & 1) != 0});
                kinds.push_back(kd);
                off += numel;
            }
            const size_t n = off;
            for (int W = 1; W <= 8 && err.empty(); W++)
                for (size_t a : aligns)
                    for (size_t mb : {(size_t)4, (size_t)64, (size_t)400, (size_t)1 << 30})
                        for (int slots : {0, 2}) {
                            if (!err.empty()) break;
                            const ZeroGradLayout g = zero_grad_layout(lay, kinds, L, W, a, mb, slots);
                            n_layouts++;
                            n_ring += g.slots < L;
                            const std::string where = "trial " + str(trial) + " L=" + str(L) + " W=" + str(W) + " align=" + str((long long)a) +
                                                      " max_bytes=" + str((long long)mb) + " slots=" + str(slots);
                            std::string e;
                            size_t gg = (size_t)W * a, gb = g.seg_align;
                            while (gb) { const size_t t = gg % gb; gg = gb; gb = t; }
                            const size_t unit = (size_t)W * a / gg * g.seg_align;
                            // segments: aligned, disjoint, inside their region, one per tensor / layer slice
                            std::vector<size_t> seg_elems(nt, 0);
                            for (size_t k = 0; k < g.segments.size() && e.empty(); k++) {
                                const ZeroSegment& sg = g.segments[k];
                                if (sg.grad % g.seg_align != 0) e = "segment not aligned";
                                else if (k > 0 && sg.grad < g.segments[k - 1].grad + g.segments[k - 1].count) e = "segments overlap or out of order";
                                else if (sg.grad + sg.count > g.total) e = "segment past the buffer";
                                else if (kinds[sg.tensor] == PARAM_HEAD && !(sg.stage == ZERO_HEAD && sg.grad + sg.count <= g.head_size)) e = "head segment outside the head";
                                else if (kinds[sg.tensor] == PARAM_TAIL && !(sg.stage == ZERO_TAIL && sg.grad >= g.tail_begin)) e = "tail segment outside the tail";
                                else if (kinds[sg.tensor] == PARAM_LAYER &&
                                         !(sg.stage >= 0 && sg.grad >= g.slot_begin + (size_t)sg.stage * g.slot_size &&
                                           sg.grad + sg.count <= g.slot_begin + (size_t)(sg.stage + 1) * g.slot_size &&
                                           sg.tensor_offset == (size_t)sg.stage * (lay[sg.tensor].numel / L)))
                                    e = "layer segment outside its slot";
                                seg_elems[sg.tensor] += sg.count;
                            }
                            for (int t = 0; t < nt && e.empty(); t++)
                                if (seg_elems[t] != lay[t].numel) e = "tensor " + str(t) + " not covered by its segments";
                            if (e.empty() && (g.head_size % unit || g.slot_size % unit || g.tail_size % unit || g.slot_begin != g.head_size ||
                                              g.tail_begin != g.slot_begin + (size_t)L * g.slot_size || g.total != g.tail_begin + g.tail_size))
                                e = "regions not padded to lcm(W*align, seg_align) or not contiguous";
                            // buckets: in completion order, tiling [0, total) (layer slots lie in layer order)
                            size_t pos = 0, sh = 0;
                            std::vector<std::pair<size_t, size_t>> tiles;
                            int prev_rank = -1;   // order: head 0, layer l -> 1 + (L-1-l), tail L+1
                            const size_t max_chunk = mb / 4 >= unit ? mb / 4 / unit * unit : unit;
                            for (size_t k = 0; k < g.buckets.size() && e.empty(); k++) {
                                const ZeroCommBucket& b = g.buckets[k];
                                const int rk = b.stage == ZERO_HEAD ? 0 : b.stage == ZERO_TAIL ? L + 1 : 1 + (L - 1 - b.stage);
                                tiles.push_back({b.begin, b.size});
                                if (k > 0 && b.stage == g.buckets[k - 1].stage && b.begin != g.buckets[k - 1].begin + g.buckets[k - 1].size)
                                    e = "a stage's buckets not contiguous";
                                else if (b.size == 0 || b.size % unit || b.size > max_chunk) e = "bucket size not a multiple of the unit under the limit";
                                else if (rk < prev_rank) e = "buckets not in completion order";
                                else if (b.shard_offset != sh) e = "shard offsets not cumulative";
                                else if (b.phys != zero_phys(g, b.begin) || b.phys + b.size > g.phys_total) e = "bad physical offset";
                                else if (b.stage >= 0 && !(b.begin >= g.slot_begin + (size_t)b.stage * g.slot_size &&
                                                           b.begin + b.size <= g.slot_begin + (size_t)(b.stage + 1) * g.slot_size)) e = "layer bucket outside its slot";
                                prev_rank = rk;
                                pos += b.size;
                                sh += b.size / W;
                            }
                            std::sort(tiles.begin(), tiles.end());
                            size_t at = 0;
                            for (const auto& tl : tiles) { if (tl.first != at && e.empty()) e = "buckets do not tile the buffer"; at = tl.first + tl.second; }
                            if (e.empty() && (pos != g.total || at != g.total || sh != g.shard || g.shard * W != g.total)) e = "buckets do not cover the buffer";
                            if (e.empty() && slots == 0 && g.phys_total != g.total) e = "every layer its own slot, yet phys != logical";
                            if (e.empty() && g.slots != (slots == 0 || slots > L ? L : slots)) e = "slot count";
                            // every element once, at the logical place of its bucket slice; decay flags via the tensor index
                            std::vector<std::vector<int>> cover(nt);
                            for (int t = 0; t < nt; t++) cover[t].assign(lay[t].numel, 0);
                            for (int r = 0; r < W && e.empty(); r++) {
                                size_t prev_end = 0;
                                for (const ZeroPiece& q : g.pieces[r]) {
                                    if (q.count == 0 || q.tensor_offset + q.count > lay[q.tensor].numel || q.shard_offset + q.count > g.shard ||
                                        q.shard_offset < prev_end) { e = "bad piece of rank " + str(r); break; }
                                    prev_end = q.shard_offset + q.count;
                                    const ZeroCommBucket* bk = nullptr;
                                    for (const ZeroCommBucket& b : g.buckets)
                                        if (q.shard_offset >= b.shard_offset && q.shard_offset < b.shard_offset + b.size / W) bk = &b;
                                    if (!bk || q.shard_offset + q.count > bk->shard_offset + bk->size / W) { e = "piece crosses a bucket slice"; break; }
                                    const size_t x = bk->begin + (size_t)r * (bk->size / W) + (q.shard_offset - bk->shard_offset);  // logical
                                    const ZeroSegment* sgp = nullptr;
                                    for (const ZeroSegment& sg : g.segments)
                                        if (x >= sg.grad && x < sg.grad + sg.count) sgp = &sg;
                                    if (!sgp || sgp->tensor != q.tensor || sgp->tensor_offset + (x - sgp->grad) != q.tensor_offset ||
                                        x + q.count > sgp->grad + sgp->count) { e = "piece not where its bucket slice is"; break; }
                                    // the trainer's pointer for this element (physical) matches the bucket's physical place
                                    const int lyr = sgp->stage;
                                    const size_t ptr = g.off[q.tensor] + (lyr >= 0 ? (size_t)(lyr % g.slots) * g.slot_size : 0) +
                                                       (q.tensor_offset - (lyr >= 0 ? (size_t)lyr * (lay[q.tensor].numel / L) : 0));
                                    if (ptr != zero_phys(g, x) || ptr != bk->phys + (x - bk->begin)) { e = "physical pointer mismatch"; break; }
                                    for (size_t k = 0; k < q.count; k++) cover[q.tensor][q.tensor_offset + k]++;
                                }
                            }
                            for (int t = 0; t < nt && e.empty(); t++)
                                for (size_t k = 0; k < lay[t].numel && e.empty(); k++)
                                    if (cover[t][k] != 1) e = "tensor " + str(t) + " element " + str((long long)k) + " covered " + str(cover[t][k]) + " times";
                            (void)n;
                            if (!e.empty()) err = where + ": " + e;
                        }
        }
        check(err.empty(), "grad_layout_random", err.empty() ? str(n_layouts) + " plans (" + str(n_ring) + " with a ring of slots): every element in one rank's piece at its bucket slice, aligned disjoint segments, contiguous padded buckets in completion order, physical slots" : err);
    }
    // the trainers' presets: kinds by name, per-layer strides, tensor-level coverage
    {
        std::string err;
        long long n_plans = 0;
        auto run = [&](const std::string& name, const std::vector<ParamTensor>& L, const std::vector<int>& kinds, int nl,
                       const std::vector<std::pair<std::string, size_t>>& strides) {
            for (const auto& st : strides) {
                const ParamTensor* t = nullptr;
                for (const ParamTensor& x : L) if (x.name == st.first) t = &x;
                if (t && t->numel / nl != st.second && err.empty()) err = name + ": " + st.first + " stride " + str((long long)st.second) + " != numel / n_layer";
            }
            for (size_t i = 0; i < L.size(); i++)
                if (kinds[i] == PARAM_LAYER && L[i].shape[0] != nl && err.empty()) err = name + ": " + L[i].name + " is not stacked per layer";
            for (int W : {2, 3, 8})
                for (int z2 : {0, 2}) {
                    const ZeroGradLayout g = zero_grad_layout(L, kinds, nl, W, 16, 25u << 20, z2);
                    n_plans++;
                    std::vector<size_t> got(L.size(), 0);
                    for (int r = 0; r < W; r++)
                        for (const ZeroPiece& q : g.pieces[r]) got[q.tensor] += q.count;
                    for (size_t t = 0; t < L.size(); t++)
                        if (got[t] != L[t].numel && err.empty()) err = name + " W" + str(W) + ": tensor " + L[t].name + " not covered once";
                    for (size_t t = 0; t < L.size(); t++)
                        if (g.off[t] % 16 != 0 && err.empty()) err = name + ": gradient of " + L[t].name + " not 64-byte aligned";
                }
        };
        for (const char* name : {"tiny", "shakespeare", "gpt-1b", "qwen3-0.6b"}) {
            GPTConfig c;
            gpt_preset(name, &c);
            gpt_config_finalize(&c);
            const size_t C = c.d_model, F = c.ffn_hidden, hd = c.head_dim, qd = (size_t)c.n_head * hd, QKV = qd + 2 * (size_t)c.n_kv_head * hd;
            // the strides gpt_backward used before the layer-grads accessor (dw.X + l * stride)
            run(name, gpt_param_layout(c), gpt_param_stages(gpt_param_layout(c)), c.n_layer,
                {{"attn_norm", C}, {"wqkv", QKV * C}, {"bqkv", QKV}, {"q_norm", hd}, {"k_norm", hd}, {"wo", C * qd}, {"mlp_norm", C},
                 {"wgateup", 2 * F * C}, {"wdown", C * F}});
        }
        for (const char* name : {"tiny", "debug", "1B"}) {
            DiTConfig c;
            dit_preset(name, &c);
            dit_config_finalize(&c);
            const size_t C = c.d_model, F = c.ffn_hidden, hd = c.head_dim;
            run(std::string("dit-") + name, dit_param_layout(c), dit_param_stages(dit_param_layout(c)), c.n_layer,
                {{"blocks.scale_shift_table", 6 * C}, {"blocks.attn.qkv.weight", 3 * C * C}, {"blocks.attn.qkv.bias", 3 * C},
                 {"blocks.attn.q_norm.weight", hd}, {"blocks.mlp.fc1.weight", F * C}, {"blocks.mlp.fc2.weight", C * F},
                 {"blocks.cross_attn.kv_linear.weight", 2 * C * C}, {"blocks.cross_attn.kv_linear.bias", 2 * C}});
        }
        check(err.empty(), "grad_layout_presets", err.empty() ? str(n_plans) + " plans of the GPT and DiT presets: kinds by name, per-layer tensors stacked with the backward's strides, every tensor covered once, gradients 64-byte aligned" : err);
    }
    {
        GPTConfig c;
        gpt_preset("gpt-1b", &c);
        gpt_config_finalize(&c);
        const std::vector<ParamTensor> L = gpt_param_layout(c);
        const size_t n = layout_numel(L);
        const ZeroGradLayout g1 = zero_grad_layout(L, gpt_param_stages(L), c.n_layer, 2, 16, 25u << 20, 0);
        const ZeroGradLayout g2 = zero_grad_layout(L, gpt_param_stages(L), c.n_layer, 2, 16, 25u << 20, 2);
        const ZeroMemory m0 = zero_grad_layout_memory(g1, n, 0, 2), m1 = zero_grad_layout_memory(g1, n, 1, 2), m2 = zero_grad_layout_memory(g2, n, 2, 2);
        const bool ok = m0.total() > m1.total() && m1.total() > m2.total() && m1.master * 2 >= n * 4 && m1.master * 2 < n * 4 + 4096 * 64 &&
                        m2.grads < m1.grads && g2.phys_total < g1.total;
        check(ok, "grad_layout_memory", "gpt-1b on 2 GPUs: ZeRO-0 " + std::to_string(m0.total() >> 20) + " MiB, ZeRO-1 " + std::to_string(m1.total() >> 20) +
              " MiB, ZeRO-2 " + std::to_string(m2.total() >> 20) + " MiB per rank (weights, grads, master, AdamW)");
    }
    // ---- the data-parallel flags
    {
        child_err_path = DIR + "/flags.err";
        Child c = run_child({"--flags", "--zero", "2", "--dist-timeout", "30", "--bucket-mb", "8", "--rendezvous-file", "/tmp/x"});
        check(c.exited && c.code == 0, "dist_flags_ok", "--zero 2 --dist-timeout 30 --bucket-mb 8 --rendezvous-file parse and validate");
        check_fails_one_line("dist_flags_zero", {"--flags", "--zero", "3"}, "flag --zero: expected 0, 1 or 2, got 3");
        check_fails_one_line("dist_flags_timeout", {"--flags", "--dist-timeout", "0"}, "flag --dist-timeout: must be in [1, 86400] seconds");
        check_fails_one_line("dist_flags_bucket", {"--flags", "--bucket-mb", "0"}, "flag --bucket-mb: must be in [1, 16384]");
        check_fails_one_line("dist_flags_value", {"--flags", "--zero", "one"}, "flag --zero: expected an integer");
        child_err_path = DIR + "/child.err";
    }
    // ---- bad arguments: one line, exit 1
    check_fails_one_line("bad_world", {"--plan", "0", "16", "1000"}, "zero_partition: world size must be >= 1, got 0");
    check_fails_one_line("bad_align", {"--plan", "2", "0", "1000"}, "zero_partition: alignment must be >= 1 element, got 0");
    check_fails_one_line("bad_bucket", {"--plan", "2", "16", "2"}, "zero_bucket_plan: bucket size must be at least one element (4 bytes), got 2");

    const double secs = wall_seconds() - t0;
    check(secs < 10, "total_time", std::to_string(secs).substr(0, 4) + " s");
    printf("%s\n", n_failed == 0 ? "all zero tests passed" : "SOME ZERO TESTS FAILED");
    return n_failed == 0 ? 0 : 1;
}
