/*
Tests of llmc/train/memory_plan.h (the memory plan of --plan and of the trainers'
start-up check) against byte counts worked out by hand here, from the shapes:
the parameter count, bf16 weights, fp32 master, gradients and AdamW state of the GPT
presets tiny and gpt-1b (one GPU; 8 GPUs with ZeRO 0, 1, 2: the layer-ordered
gradient buffer's padding by hand) and the DiT presets tiny and 1B (with the EMA);
the activations of the GPT tiny and gpt-1b and of the DiT tiny and 1B, slot by slot as
the trainers carve them (each rounded up to 256 bytes), without recompute and with
selective and full recompute over all or some blocks (what each mode keeps, by hand);
recompute's slot indices; the --recompute flags; a plan
that does not fit (exit 1 and one stderr line naming the largest consumer; exit 0
when it fits); the plan flags (bad values: one line naming the flag, exit 1).

  make test/test_memory_plan && ./test/test_memory_plan
  child mode: --apply PRESET B T GIB   apply a GPT plan as --plan does
              --flags ARGS...          parse and validate the plan flags (world 1)
              --recompute-flags MODE K ARGS...   the recompute flags parse to MODE, K (16 blocks)
*/
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/train/memory_plan.h"

static const std::string DIR = "test/tmp/memory_plan";
typedef unsigned long long u64;

static void check_eq(const std::string& name, u64 got, u64 want) {
    check(got == want, name, std::to_string(got) + (got == want ? "" : " bytes, expected " + std::to_string(want)));
}
static u64 r256(u64 b) { return (b + 255) / 256 * 256; }
static u64 r(u64 x, u64 m) { return (x + m - 1) / m * m; }
static u64 sum256(const std::vector<u64>& slots) {
    u64 s = 0;
    for (u64 b : slots) s += r256(b);
    return s;
}

static GPTConfig gpt(const char* preset) {
    GPTConfig c;
    if (!gpt_preset(preset, &c)) fail("no preset %s", preset);
    gpt_config_finalize(&c);
    return c;
}
static DiTConfig dit(const char* preset) {
    DiTConfig c;
    if (!dit_preset(preset, &c)) fail("no preset %s", preset);
    dit_config_finalize(&c);
    return c;
}

// One GPU: every buffer holds all n parameters.
static void check_one_gpu(const std::string& name, const MemoryPlan& p, u64 n, bool ema) {
    check_eq(name + " params", p.num_params, n);
    check_eq(name + " bf16 weights", p.weights, 2 * n);
    check_eq(name + " fp32 master", p.master, 4 * n);
    check_eq(name + " gradients", p.grads, 4 * n);
    check_eq(name + " AdamW m and v", p.adam, 8 * n);
    check_eq(name + " EMA", p.ema, ema ? 4 * n : 0);
    check_eq(name + " communication", p.comm, 0);
}

static void test_gpt() {
    // tiny: vocab 512 (padded 512), L 2, C 128, 4 heads / 2 kv of 32, F 352, tied
    const u64 tiny_n = 512 * 128 + 2 * 128 + 2 * (128 + 2 * 64) * 128 + 2 * 128 * 128 + 2 * 128 + 2 * (2 * 352) * 128 +
                       2 * 128 * 352 + 128;
    check_eq("gpt tiny param count by hand", tiny_n, 434816);
    const MemoryPlan tiny = gpt_memory_plan(gpt("tiny"), 4, 64, 1, 1, 200, 2, 139.8);
    check_one_gpu("gpt tiny 1 GPU", tiny, tiny_n, false);
    // activations, B 4 x T 64 (BT 256), in carving order; per layer [L=2, ...]: blocks held by the
    // kept kinds (2), the kinds full recompute drops (f) and the cheap ones selective drops too (h)
    auto tiny_acts = [](u64 f, u64 h) -> std::vector<u64> {
        return {
            256 * 128 * 2,                                                    // encoded
            f * 256 * 128 * 2, 2 * 256 * 128 * 2, h * 256 * 128 * 2, h * 256 * 128 * 2,   // resid_mid, resid_out, ln1, ln2
            2 * 256 * 4, 2 * 256 * 4,                                         // rstd1, rstd2
            f * 256 * 256 * 2, f * 256 * (4 + 2) * 4,                         // qkv (QKV 256), qk_rstd
            h * 256 * 128 * 2, h * 256 * 64 * 2, h * 256 * 64 * 2,           // qp, kp, vp
            f * 4 * 4 * 64 * 4,                                               // lse [B, nh, T] per block
            f * 256 * 128 * 2, f * 256 * 704 * 2, h * 256 * 352 * 2,         // atty, gateup, swiglu
            256 * 128 * 2, 256 * 4, 256 * 512 * 2, 256 * 4,                 // lnf, rstdf, logits, losses
            256 * 128 * 2, 256 * 128 * 2, 256 * 128 * 2, 256 * 128 * 2,     // proj, dresid, dbuf, datty
            256 * 128 * 2, 256 * 64 * 2, 256 * 64 * 2, 256 * 256 * 2,       // dqp, dkp, dvp, dqkv
            256 * 704 * 2, 256 * 352 * 2,                                     // dgateup, dswiglu
            16,                                                               // dnw_scratch (no qk_norm)
            66 * 256 * 4,                                                     // reduce scratch: 66 x max(C, QKV, (nh+nkv)hd, 64)
            256 * 4, 256 * 4, 256 * 4, (3 * 256 + 1) * 4,                   // tokens, targets, positions, encoder ints
        };
    };
    const std::vector<u64> tiny_acts_none = tiny_acts(2, 2);
    const GPTConfig tc = gpt("tiny");
    // selective keeps the matmul outputs for both blocks, the cheap kinds in one shared block;
    // full keeps only the blocks' outputs (and norm statistics); --recompute-layers 1: block 0 only
    const struct { const char* name; RecomputeMode mode; int k; u64 f, h; } modes[] = {
        {"selective", RECOMPUTE_SELECTIVE, 2, 2, 1}, {"full", RECOMPUTE_FULL, 2, 1, 1},
        {"selective, layers 1", RECOMPUTE_SELECTIVE, 1, 2, 2}, {"full, layers 1", RECOMPUTE_FULL, 1, 2, 2},
        {"full, layers 0", RECOMPUTE_FULL, 0, 2, 2},
    };
    for (const auto& m : modes) {
        Recompute rc;
        rc.mode = m.mode;
        rc.layers = m.k;
        const MemoryPlan p = gpt_memory_plan(tc, 4, 64, 1, 1, 200, 2, 139.8, rc);
        check_eq(std::string("gpt tiny activations B4 T64 (recompute ") + m.name + ")", p.activations, sum256(tiny_acts(m.f, m.h)));
    }
    // attention scratch: (2 + hd) floats per query row (B nh T rows) + 16 + counters B nkv ceil(T r / 16)
    const u64 tiny_attn = (2 + 32) * 4 * 4 * 64 * 4 + 16 + 4 * 2 * 8 * 4;
    check_eq("gpt tiny activations B4 T64 (recompute none)", tiny.activations, sum256(tiny_acts_none));
    check_eq("gpt tiny attention scratch", tiny.attention, r256(tiny_attn));
    check_eq("gpt tiny workspace (cuBLASLt, RoPE table, norm scratch)", tiny.workspace, (32 << 20) + 64 * 32 * 4 + 516 * 4);

    // --cp 2, B 2 x T 64: a rank holds 2 chunks of T / 4 = 16 tokens per row (local 1: 4 rows of 16;
    // simulated, local 2: 8 rows), the slots of that shape plus the ring's buffers:
    // cp_ring_bytes(local, 64 tokens, nh 4, nkv 2, hd 32, 2): per held rank 4*64*64*2 (K/V) + 4*64*64*4
    // (dK/dV) + 64*128*4 (output, dQ); once 64*384*2 (a call's output or dQ of q's stride up to 2*nh*hd, dK, dV) + 2*64*4*4 (lse) + 8*256
    {
        const u64 per_rank = 4 * 64 * 64 * 2 + 4 * 64 * 64 * 4 + 64 * 128 * 4, once = 64 * 384 * 2 + 2 * 64 * 4 * 4 + 8 * 256;
        for (int local : {1, 2}) {
            CpGroup cp;
            cp.n = 2; cp.local = local;
            const MemoryPlan p = gpt_memory_plan(tc, 2, 64, local == 1 ? 2 : 1, 1, 200, 2, 139.8, Recompute(), cp);
            const MemoryPlan rows = gpt_memory_plan(tc, 4 * local, 16, 1, 1, 200, 2, 139.8);
            const std::string nm = std::string("gpt tiny B2 T64 --cp 2") + (local == 1 ? " (a rank of 2)" : " (simulated)");
            check_eq(nm + " activations: those of " + std::to_string(4 * local) + " rows of 16 and a row of logits", p.activations,
                     rows.activations + r256((u64)tc.padded_vocab_size * 4));
            // the flash scratch of 4 local rows x 16 (counters B nkv ceil(T r / 16)), and the ring
            const u64 flash = (2 + 32) * 4 * 4 * local * 16 * 4 + 16 + 4 * local * 2 * 2 * 4;
            check_eq(nm + " attention scratch and ring", p.attention, r256(flash) + r256(local * per_rank + once));
        }
    }

    // gpt-1b: vocab 128256 (a multiple of 128), L 16, C 2048, 32 heads / 8 kv of 64, F 8192, untied
    const u64 V = 128256, C = 2048, L = 16;
    const u64 per_layer = C + 3072 * C + C * 2048 + C + 2 * 8192 * C + C * 8192;   // attn_norm, wqkv, wo, mlp_norm, wgateup, wdown
    const u64 n = V * C + L * per_layer + C + V * C;
    check_eq("gpt-1b param count by hand", n, 1498482688ull);
    const GPTConfig g1 = gpt("gpt-1b");
    const MemoryPlan one = gpt_memory_plan(g1, 1, 2048, 1, 1, 200, 2, 139.8);
    check_one_gpu("gpt-1b 1 GPU", one, n, false);
    const u64 BT = 2048;
    const std::vector<u64> acts = {
        BT * C * 2,
        L * BT * C * 2, L * BT * C * 2, L * BT * C * 2, L * BT * C * 2,
        L * BT * 4, L * BT * 4,
        L * BT * 3072 * 2, L * BT * 40 * 4,
        L * BT * 2048 * 2, L * BT * 512 * 2, L * BT * 512 * 2,
        L * 1 * 32 * 2048 * 4,
        L * BT * 2048 * 2, L * BT * 16384 * 2, L * BT * 8192 * 2,
        BT * C * 2, BT * 4, BT * V * 2, BT * 4,
        BT * C * 2, BT * C * 2, BT * C * 2, BT * 2048 * 2,
        BT * 2048 * 2, BT * 512 * 2, BT * 512 * 2, BT * 3072 * 2,
        BT * 16384 * 2, BT * 8192 * 2,
        16,
        66 * 3072 * 4,
        BT * 4, BT * 4, BT * 4, (3 * BT + 1) * 4,
    };
    check_eq("gpt-1b activations B1 T2048 (recompute none)", one.activations, sum256(acts));
    check_eq("gpt-1b attention scratch", one.attention, r256((2 + 64) * 32 * 2048 * 4 + 16 + 8 * (2048 * 4 / 16) * 4));
    {
        // what one block of each kind holds per token: the cheap kinds (ln1, ln2, qp, kp, vp, swiglu)
        // and those full drops too (resid_mid, qkv, qk_rstd, lse: 32 heads, atty, gateup)
        const u64 cheap = 2 * C * 2 + (2048 + 512 + 512) * 2 + 8192 * 2;
        const u64 matmul = C * 2 + 3072 * 2 + 40 * 4 + 32 * 4 + 2048 * 2 + 16384 * 2;
        Recompute full;
        full.mode = RECOMPUTE_FULL;
        full.layers = 16;   // every block: one shared block instead of 16
        check_eq("gpt-1b activations B1 T2048 (recompute full): 15 blocks of both kinds fewer",
                 gpt_memory_plan(g1, 1, 2048, 1, 1, 200, 2, 139.8, full).activations, sum256(acts) - 15 * BT * (cheap + matmul));
        Recompute sel;
        sel.mode = RECOMPUTE_SELECTIVE;
        sel.layers = 4;     // blocks 0-3 share one block: 3 fewer
        check_eq("gpt-1b activations B1 T2048 (recompute selective, layers 4): 3 cheap blocks fewer",
                 gpt_memory_plan(g1, 1, 2048, 1, 1, 200, 2, 139.8, sel).activations, sum256(acts) - 3 * BT * cheap);
    }

    // 8 GPUs: gradients in completion order, every tensor (layer slice) at a multiple of 16
    // elements, regions padded to lcm(8 x 16, 16) = 128: head = final_norm + lm_head,
    // one slot per layer, tail = wte; buckets of 200 MiB = 52428800 floats (a multiple of 128)
    const u64 head = r(r(C, 16) + V * C, 128), tail = r(V * C, 128);
    const u64 slot = r(r(r(r(r(r(C, 16) + 3072 * C, 16) + C * 2048, 16) + C, 16) + 2 * 8192 * C, 16) + C * 8192, 128);
    const u64 total = head + L * slot + tail, shard = total / 8, bucket = 52428800;
    check_eq("gpt-1b 8 GPUs: gradient buffer by hand", total, 262670336ull + 16 * 60821504ull + 262668288ull);
    const u64 nccl = PLAN_NCCL_BYTES + 128;
    for (int z = 0; z <= 2; z++) {
        const MemoryPlan p = gpt_memory_plan(g1, 1, 2048, 8, z, 200, 2, 139.8);
        const std::string nm = "gpt-1b 8 GPUs ZeRO-" + std::to_string(z);
        check_eq(nm + " bf16 weights", p.weights, z == 0 ? 2 * n : 2 * n + 2 * shard);
        check_eq(nm + " fp32 master", p.master, z == 0 ? 4 * n : 4 * shard);
        check_eq(nm + " AdamW m and v", p.adam, z == 0 ? 8 * n : 8 * shard);
        const u64 grads = z == 0 ? 4 * total : z == 1 ? 4 * (total + shard) : 4 * (head + 2 * slot + tail + shard + bucket / 8);
        check_eq(nm + " gradients", p.grads, grads);
        check_eq(nm + " communication", p.comm, z == 0 ? nccl : nccl + bucket * 2 + bucket * 4);
        check_eq(nm + " activations (per rank: the same)", p.activations, sum256(acts));
    }
}

// The DiT's parameters: embedders, L stacked blocks, final layer.
static u64 dit_params_by_hand(u64 C, u64 L, u64 hd, u64 F, u64 Cin, u64 P, u64 Cout, u64 Cy, u64 Fq) {
    const u64 embed = C * Cin * P + C + C + C + 2 * (C * Fq + C + C * C + C) + 6 * C * C + 6 * C + C * Cy + C + C * C + C;
    const u64 block = 6 * C + 3 * C * C + 3 * C + hd + hd + C * C + C     // table, self attention
                    + C + C + C * C + C + 2 * C * C + 2 * C + hd + hd + C * C + C   // cross attention and its norm
                    + F * C + F + C * F + C;                              // MLP
    return embed + L * block + 2 * C + P * Cout * C + P * Cout;
}

// The DiT's activations for B samples, N tokens, Np patch tokens, Nt text tokens; per block: the
// kinds full recompute drops hold f blocks, the cheap ones h, the full recompute's inputs k.
static u64 dit_acts_by_hand(u64 C, u64 L, u64 nh, u64 hd, u64 F, u64 Cin, u64 P, u64 Cout, u64 Cy, u64 Fq, u64 B, u64 N, u64 Np,
                            u64 Nt, u64 frames, u64 lat, u64 out, u64* attn, u64 f = 0, u64 h = 0, u64 k = 0) {
    if (f == 0) f = h = L;   // recompute none
    const u64 PC = P * Cout;
    std::vector<u64> s;
    s.push_back(f * N * C * 2); s.push_back(h * N * C * 2); s.push_back(f * N * 3 * C * 2);   // xhat1 h1 qkv
    s.push_back(h * N * 2 * C * 2);                                                        // qkr
    for (int i = 0; i < 4; i++) s.push_back(f * N * C * 2);                               // atty o1 xhat_a ha
    s.push_back(f * N * C * 2); s.push_back(h * N * C * 2);                               // cq cqn
    s.push_back(f * Nt * 2 * C * 2); s.push_back(h * Nt * C * 2);                        // ckv ckn
    s.push_back(f * N * C * 2); s.push_back(f * N * C * 2); s.push_back(h * N * C * 2);   // catty xhat2 h2
    s.push_back(f * N * F * 2); s.push_back(f * N * C * 2);                              // f1 o2
    for (u64 w : {(u64)1, 2 * nh, nh, (u64)1, nh}) s.push_back(f * N * w * 4);                    // rstd1 qk_rstd lse_s rstd_a cq_rstd
    s.push_back(f * Nt * nh * 4); s.push_back(f * nh * N * 4); s.push_back(f * N * 4);   // ck_rstd lse_c rstd2
    s.push_back(k * N * C * 2);                                                          // block_in
    s.push_back(2 * B * Fq * 2); s.push_back(B * Fq * 2);                                // tfreq ffreq
    for (u64 k : {2, 2, 2, 1, 1, 1, 2, 2, 12}) s.push_back(k * B * C * 2);               // th ths temb fh fhs femb cond conds mods
    s.push_back(Nt * Cy * 2); s.push_back(Nt * Cy * 2);                                  // text ylnx
    for (int k = 0; k < 4; k++) s.push_back(Nt * C * 2);                                 // yh yg yo y
    s.push_back(Nt * 4); s.push_back(Nt * 4);                                            // ylr yr
    s.push_back(Np * Cin * P * 2);                                                       // patches
    for (int k = 0; k < 3; k++) s.push_back(Np * C * 2);                                 // xf lnf hf
    s.push_back(Np * PC * 2); s.push_back(Np * PC * 2);                                  // out dout
    s.push_back(Np * 4); s.push_back(Np * 4); s.push_back(out * 4);                      // rstdf loss_tok v_pred
    s.push_back(N * C * 2); s.push_back(N * F * 2);                                      // resid f1g
    s.push_back(lat * 4); s.push_back(lat * 4); s.push_back(Nt * Cy * 4); s.push_back(3 * B * Fq * 4);   // x0 eps text_f32 freq_f32
    s.push_back(frames * 4); s.push_back(N * 4); s.push_back(Np * 4);                    // frame_mask tokrow patrow
    for (int k = 0; k < 3; k++) s.push_back((B + 1) * 4);                                // cu_x cu_p cu_t
    s.push_back(B * 72);                                                                 // samples (DiTSample: 10 ints, 2 int64, 2 floats, 2 ints)
    s.push_back(N * (hd / 2) * 8);                                                       // rope_cs
    for (int k = 0; k < 4; k++) s.push_back(N * C * 2);                                  // dres dbuf1-3
    s.push_back(N * 3 * C * 2); s.push_back(N * 2 * C * 2); s.push_back(N * F * 2);      // dqkv dqk dF
    s.push_back(Nt * 2 * C * 2);                                                         // dckv
    for (int k = 0; k < 4; k++) s.push_back(Nt * C * 2);                                 // dck dy dyb1 dyb2
    for (u64 k : {12, 2, 2, 1, 2, 2, 1, 1}) s.push_back(k * B * C * 2);                  // dmods_x dconds dtemb dfemb dths dth dfhs dfh
    s.push_back(12 * B * C * 4); s.push_back(2 * B * C * 4);                             // dmods dcond (fp32)
    s.push_back(2 * 1056 * hd * 4);                                                      // dnw: 2 x ROPE3D_BWD_BLOCKS x hd
    u64 cols = F;
    for (u64 c : {6 * C, PC, 3 * C, (u64)64}) cols = std::max(cols, c);
    s.push_back(std::max(66 * cols, 792 * C) * 4);                                       // reduce: column sums or the LayerNorm backward's
    s.push_back((std::max(32 * B, (u64)256) * 4 + 4 * B) * C * 4);                       // adaLN partials and row sums
    // L, D, the fp32 dQ sums and counters; the query split's fp32 dK / dV partials, 8 chunks of the Nt text keys
    *attn = (2 + hd) * N * nh * 4 + 16 + nh * (N / 64 + B + 1) * 4 + 2 * 8 * Nt * nh * hd * 4 + 16;
    return sum256(s);
}

static void test_dit() {
    // tiny: C 144, L 2, 2 heads of 72, F 576, Cin 24, Cout 48, Cy 4096, patch 1x2x2, Fq 256
    const u64 tiny_n = dit_params_by_hand(144, 2, 72, 576, 24, 4, 48, 4096, 256);
    const DiTConfig t = dit("tiny");
    // two samples of 2x4x4 latents (patch grid 2x2x2: 8 patches + start and end tokens), 4 text tokens each
    PlanDiTShape s;
    s.B = 2; s.N = 20; s.Np = 16; s.Nt = 8; s.frames = 4; s.lat = 2 * 24 * 2 * 4 * 4; s.out = 2 * 48 * 2 * 4 * 4;
    const MemoryPlan tiny = dit_memory_plan(t, s, 1, 1, 200, 2, false, 139.8);
    check_one_gpu("dit tiny 1 GPU", tiny, tiny_n, false);
    u64 attn = 0;
    const u64 acts = dit_acts_by_hand(144, 2, 2, 72, 576, 24, 4, 48, 4096, 256, 2, 20, 16, 8, 4, s.lat, s.out, &attn);
    check_eq("dit tiny activations, 2 samples of 10 tokens (recompute none)", tiny.activations, acts);
    check_eq("dit tiny attention scratch", tiny.attention, r256(attn));
    check_eq("dit tiny workspace (cuBLASLt, norm scratch)", tiny.workspace, (32 << 20) + 516 * 4);

    // 1B: C 1152, L 56, 16 heads of 72, F 4608; one 21x40x64 sample (21 x 20 x 32 patches + 2), 300 text tokens; EMA
    const u64 n = dit_params_by_hand(1152, 56, 72, 4608, 24, 4, 48, 4096, 256);
    PlanDiTShape b;
    b.B = 1; b.N = 13442; b.Np = 13440; b.Nt = 300; b.frames = 21; b.lat = 24ull * 21 * 40 * 64; b.out = 48ull * 21 * 40 * 64;
    const MemoryPlan big = dit_memory_plan(dit("1B"), b, 1, 1, 200, 2, true, 139.8);
    check_one_gpu("dit 1B 1 GPU with --ema-decay", big, n, true);
    const u64 big_acts = dit_acts_by_hand(1152, 56, 16, 72, 4608, 24, 4, 48, 4096, 256, 1, 13442, 13440, 300, 21, b.lat, b.out, &attn);
    check_eq("dit 1B activations, 13442 tokens (recompute none)", big.activations, big_acts);
    {
        // full: one shared block of every per-block kind, and the 56 blocks' inputs; selective over
        // the first 20 blocks: the cheap kinds (h1, qkr, cqn, ckn, h2) in 56 - 20 + 1 blocks
        Recompute full;
        full.mode = RECOMPUTE_FULL;
        full.layers = 56;
        const MemoryPlan pf = dit_memory_plan(dit("1B"), b, 1, 1, 200, 2, true, 139.8, full);
        check_eq("dit 1B activations, 13442 tokens (recompute full)", pf.activations,
                 dit_acts_by_hand(1152, 56, 16, 72, 4608, 24, 4, 48, 4096, 256, 1, 13442, 13440, 300, 21, b.lat, b.out, &attn, 1, 1, 56));
        Recompute sel;
        sel.mode = RECOMPUTE_SELECTIVE;
        sel.layers = 20;
        const MemoryPlan ps = dit_memory_plan(dit("1B"), b, 1, 1, 200, 2, true, 139.8, sel);
        check_eq("dit 1B activations, 13442 tokens (recompute selective, layers 20)", ps.activations,
                 dit_acts_by_hand(1152, 56, 16, 72, 4608, 24, 4, 48, 4096, 256, 1, 13442, 13440, 300, 21, b.lat, b.out, &attn, 56, 37, 0));
    }
    check_eq("dit 1B attention scratch", big.attention, r256(attn));
    // --cp 3 on the two tiny samples of 10 tokens: the largest part is ceil(10 / 3) = 4 tokens; a rank
    // (local 1) holds 2 pseudo-samples of 4 tokens, all patch tokens, and the 8 text tokens; simulated
    // (local 3) 6 pseudo-samples, 24 tokens, the 16 patch tokens and 3 copies of the text; both the
    // whole latents, the parts' offsets (3 x 3 ints) and cp_ring_bytes(local, 8 tokens, 2, 2, 72, 2):
    // per held rank 4*8*144*2 + 4*8*144*4 + 8*144*4, once 8*576*2 + 2*8*2*4 + 8*256
    {
        const u64 per_rank = 4 * 8 * 144 * 2 + 4 * 8 * 144 * 4 + 8 * 144 * 4, once = 8 * 576 * 2 + 2 * 8 * 2 * 4 + 8 * 256;
        for (int local : {1, 3}) {
            CpGroup cp;
            cp.n = 3; cp.local = local;
            const MemoryPlan p = dit_memory_plan(t, s, local == 1 ? 3 : 1, 1, 200, 2, false, 139.8, Recompute(), cp);
            u64 a = 0;
            const u64 acts = dit_acts_by_hand(144, 2, 2, 72, 576, 24, 4, 48, 4096, 256, 2 * local, 8 * local, local == 1 ? 8 : 16,
                                              8 * local, 4, s.lat, s.out, &a);
            const std::string nm = std::string("dit tiny 2 samples of 10 tokens --cp 3") + (local == 1 ? " (a rank of 3)" : " (simulated)");
            check_eq(nm + " activations", p.activations, acts + r256(3 * 3 * 4));
            check_eq(nm + " attention scratch and ring", p.attention, r256(a) + r256(local * per_rank + once));
        }
    }
    // the total: every line plus the CUDA context allowance
    const u64 sum = 22 * n +   // 2 + 4 + 4 + 8 + 4 (EMA) bytes per parameter
                     big_acts + r256(attn) + (32 << 20) + 516 * 4 + PLAN_CUDA_CONTEXT_BYTES;
    check_eq("dit 1B total", big.total(), sum);
}

static void test_verdict() {
    // gpt-1b B1 T2048 on one GPU needs ~25 GiB: fits 139.8 GiB, not 10 GiB
    const MemoryPlan fits = gpt_memory_plan(gpt("gpt-1b"), 1, 2048, 1, 1, 200, 2, 139.8);
    const MemoryPlan small = gpt_memory_plan(gpt("gpt-1b"), 1, 2048, 1, 1, 200, 2, 10.0);
    check(fits.fits() && !small.fits(), "gpt-1b fits 139.8 GiB, not 10 GiB", "");
    // the largest consumer: AdamW m and v (8 bytes per parameter) at T 2048; the activations at B 8 x T 8192
    check(std::string(memory_plan_largest(small).name) == "AdamW m and v", "largest consumer at B1 T2048", memory_plan_largest(small).name);
    const MemoryPlan act = gpt_memory_plan(gpt("gpt-1b"), 8, 2048, 1, 1, 200, 2, 139.8);
    check(std::string(memory_plan_largest(act).name) == "activations", "largest consumer at B8 T2048", memory_plan_largest(act).name);
    Child c = run_child({"--apply", "gpt-1b", "1", "2048", "139.8"});
    check(c.exited && c.code == 0 && c.err.empty(), "--plan that fits: exit 0, nothing on stderr", "exit " + std::to_string(c.code));
    check_fails_one_line("--plan that does not fit", {"--apply", "gpt-1b", "1", "2048", "10"}, "the largest consumer is AdamW m and v");
    check_fails_one_line("--plan that does not fit (activations)", {"--apply", "gpt-1b", "64", "2048", "139.8"}, "the largest consumer is activations");
}

static void test_flags() {
    child_err_path = DIR + "/flags.err";
    check_fails_one_line("--plan-gpus 0", {"--flags", "--plan-gpus", "0"}, "flag --plan-gpus");
    check_fails_one_line("--plan-gpus -3", {"--flags", "--plan-gpus", "-3"}, "flag --plan-gpus");
    check_fails_one_line("--plan-gpus 100000", {"--flags", "--plan-gpus", "100000"}, "flag --plan-gpus");
    check_fails_one_line("--plan-gpu-mem 0", {"--flags", "--plan-gpu-mem", "0"}, "flag --plan-gpu-mem");
    check_fails_one_line("--plan-gpu-mem -1", {"--flags", "--plan-gpu-mem", "-1"}, "flag --plan-gpu-mem");
    check_fails_one_line("--plan-gpu-mem 1e9", {"--flags", "--plan-gpu-mem", "1e9"}, "flag --plan-gpu-mem");
    check_fails_one_line("--plan-gpu-mem nan", {"--flags", "--plan-gpu-mem", "nan"}, "flag --plan-gpu-mem");
    check_fails_one_line("--plan 2", {"--flags", "--plan", "2"}, "flag --plan");
    Child c = run_child({"--flags", "--plan", "--plan-gpus", "8", "--plan-gpu-mem", "80"});
    check(c.exited && c.code == 0, "bare --plan, then --plan-gpus 8 --plan-gpu-mem 80", c.err);
    // --recompute and --recompute-layers (a model of 16 blocks)
    check_fails_one_line("--recompute partial", {"--recompute-flags", "x", "0", "--recompute", "partial"}, "flag --recompute: expected none, selective or full");
    check_fails_one_line("--recompute-layers 17", {"--recompute-flags", "x", "0", "--recompute", "full", "--recompute-layers", "17"}, "flag --recompute-layers");
    check_fails_one_line("--recompute-layers -2", {"--recompute-flags", "x", "0", "--recompute", "full", "--recompute-layers", "-2"}, "flag --recompute-layers");
    check_fails_one_line("--recompute-layers 4 with none", {"--recompute-flags", "x", "0", "--recompute-layers", "4"}, "flag --recompute-layers");
    const std::vector<std::vector<std::string>> ok = {
        {"--recompute-flags", "none", "0"},
        {"--recompute-flags", "full", "16", "--recompute", "full"},
        {"--recompute-flags", "selective", "5", "--recompute", "selective", "--recompute-layers", "5"},
        {"--recompute-flags", "full", "16", "--recompute", "full", "--recompute-layers", "16"},
        {"--recompute-flags", "full", "0", "--recompute", "full", "--recompute-layers", "0"},
    };
    for (const auto& args : ok) {
        Child r = run_child(args);
        check(r.exited && r.code == 0, "recompute flags parse to " + args[1] + " " + args[2], r.err);
    }
    child_err_path = DIR + "/child.err";
}

// Recompute's slot indices (llmc/train/recompute.h): for every mode, K and kind, each block's
// index lies in the slot, the blocks that keep a kind have indices of their own, and the
// recomputed blocks share index 0 (written and read inside one block's backward).
static void test_recompute_slots() {
    const int L = 6;
    int bad = 0, cases = 0;
    for (RecomputeMode mode : {RECOMPUTE_NONE, RECOMPUTE_SELECTIVE, RECOMPUTE_FULL}) {
        for (int k = 0; k <= (mode == RECOMPUTE_NONE ? 0 : L); k++) {
            Recompute rc;
            rc.mode = mode;
            rc.layers = k;
            for (ActKeep kind : {ACT_KEPT, ACT_FULL_DROPS, ACT_CHEAP, ACT_FULL_INPUT}) {
                cases++;
                const int held = rc.slot_layers(kind, L);
                std::vector<int> owner(held, -1);
                for (int l = 0; l < L; l++) {
                    const bool recomputed = rc.on(l), dropped = rc.drops(kind);
                    if (kind == ACT_FULL_INPUT) {
                        // held only by the blocks full recompute reruns
                        if (rc.full(l) && (rc.slot_index(kind, l) != l || l >= held)) bad++;
                        if (!rc.full(l) && l < held) bad++;
                        continue;
                    }
                    const int i = rc.slot_index(kind, l);
                    if (i < 0 || i >= held) { bad++; continue; }
                    if (dropped && recomputed) { if (i != 0) bad++; continue; }
                    if (owner[i] != -1 || (dropped && i == 0)) bad++;   // a kept block alone in its place
                    owner[i] = l;
                }
                // what the mode drops: the cheap kinds under selective and full, the matmul outputs under full
                const bool want_drop = k > 0 && ((kind == ACT_CHEAP && mode != RECOMPUTE_NONE) || (kind == ACT_FULL_DROPS && mode == RECOMPUTE_FULL));
                if (rc.drops(kind) != want_drop) bad++;
                if (kind != ACT_FULL_INPUT && held != (want_drop ? L - k + 1 : L)) bad++;
            }
        }
    }
    check(bad == 0, "recompute slot indices: " + std::to_string(cases) + " mode/K/kind cases of 6 blocks", std::to_string(bad) + " wrong");
}

int main(int argc, char** argv) {
    if (argc >= 2 && std::string(argv[1]) == "--apply") {
        if (argc != 6) fail("usage: --apply PRESET B T GIB");
        const MemoryPlan p = gpt_memory_plan(gpt(argv[2]), atoi(argv[3]), atoi(argv[4]), 1, 1, 200, 2, atof(argv[5]));
        memory_plan_apply(p, true);
    }
    if (argc >= 4 && std::string(argv[1]) == "--recompute-flags") {   // MODE LAYERS ARGS: a 16-block model's flags parse to these
        RecomputeFlags f;
        ArgParser ap;
        recompute_add_flags(ap, &f);
        ap.parse(argc - 3, argv + 3);
        const Recompute r = recompute_from_flags(f, 16);
        if (std::string(recompute_mode_name(r.mode)) != argv[2] || r.layers != atoi(argv[3]))
            fail("parsed --recompute %s, %d layers", recompute_mode_name(r.mode), r.layers);
        return 0;
    }
    if (argc >= 2 && std::string(argv[1]) == "--flags") {
        PlanFlags f;
        ArgParser ap;
        plan_add_flags(ap, &f);
        ap.parse(argc - 1, argv + 1);
        const int world = plan_validate_flags(f, 1);
        if (f.plan != 1 || world != 8 || f.gpu_gib != 80.0f) fail("parsed --plan %d, world %d, %g GiB", f.plan, world, f.gpu_gib);
        return 0;
    }
    make_parent_dirs(DIR + "/x");
    child_err_path = DIR + "/child.err";
    test_recompute_slots();
    test_gpt();
    test_dit();
    test_verdict();
    test_flags();
    printf("%s: memory_plan\n", n_failed ? "FAIL" : "PASS");
    return n_failed ? 1 : 0;
}
