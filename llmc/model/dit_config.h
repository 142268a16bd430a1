// The video DiT's configuration, presets and parameter layout (MUG-V 10B
// architecture, docs/dit.md). Shared by train_dit.cu, the CPU
// reference dev/cpu/dit.cpp, the PyTorch reference dev/reference/dit.py and
// the tests, so that all of them agree on one layout. The contract in words:
// dev/DESIGN.md, section "DiT".
//
// Shapes: C = d_model, L = n_layer, nh = n_head, hd = head_dim (nh*hd == C),
// F = ffn_hidden (= C*mlp_ratio), Cin/Cout = in/out_channels, Cy =
// caption_channels, P = patch_t*patch_h*patch_w, Fq = freq_dim (256).
//
// Parameter tensors, in this fixed order (names are MUG-V's state-dict names
// with the block index dropped: the per-block tensors are stacked [L, ...]):
//   x_embedder.proj.weight                [C, Cin*P]  Conv3d weight [C,Cin,pt,ph,pw] flattened:
//                                                     column ((ci*pt + tp)*ph + hp)*pw + wp
//   x_embedder.proj.bias                  [C]
//   start_token                           [C]
//   end_token                             [C]
//   t_embedder.mlp.0.weight               [C, Fq]     t_embedder.mlp.0.bias   [C]
//   t_embedder.mlp.2.weight               [C, C]      t_embedder.mlp.2.bias   [C]
//   fps_embedder.mlp.0.weight             [C, Fq]     fps_embedder.mlp.0.bias [C]
//   fps_embedder.mlp.2.weight             [C, C]      fps_embedder.mlp.2.bias [C]
//   t_block.1.weight                      [6C, C]     t_block.1.bias          [6C]
//   y_embedder.y_proj.fc1.weight          [C, Cy]     y_embedder.y_proj.fc1.bias [C]
//   y_embedder.y_proj.fc2.weight          [C, C]      y_embedder.y_proj.fc2.bias [C]
//   blocks.scale_shift_table              [L, 6, C]   rows: shift1 scale1 gate1 shift2 scale2 gate2
//   blocks.attn.qkv.weight                [L, 3C, C]  rows [3][nh][hd]: q heads, k heads, v heads
//   blocks.attn.qkv.bias                  [L, 3C]
//   blocks.attn.q_norm.weight             [L, hd]
//   blocks.attn.k_norm.weight             [L, hd]
//   blocks.attn.proj.weight               [L, C, C]   blocks.attn.proj.bias [L, C]
//   blocks.cross_attn_norm.weight         [L, C]      blocks.cross_attn_norm.bias [L, C]
//   blocks.cross_attn.q_linear.weight     [L, C, C]   blocks.cross_attn.q_linear.bias [L, C]
//   blocks.cross_attn.kv_linear.weight    [L, 2C, C]  rows [2][nh][hd]: k heads, v heads
//   blocks.cross_attn.kv_linear.bias      [L, 2C]
//   blocks.cross_attn.q_norm.weight       [L, hd]
//   blocks.cross_attn.k_norm.weight       [L, hd]
//   blocks.cross_attn.proj.weight         [L, C, C]   blocks.cross_attn.proj.bias [L, C]
//   blocks.mlp.fc1.weight                 [L, F, C]   blocks.mlp.fc1.bias [L, F]
//   blocks.mlp.fc2.weight                 [L, C, F]   blocks.mlp.fc2.bias [L, C]
//   final_layer.scale_shift_table         [2, C]      rows: shift, scale
//   final_layer.linear.weight             [P*Cout, C] row ((tp*ph + hp)*pw + wp)*Cout + co
//   final_layer.linear.bias               [P*Cout]
// Linear weights are [out, in] as in PyTorch. The LayerNorms without affine
// (block norm, caption pre/post norm, final norm) have no parameters.
// Weight decay flags: true for the 2-D linear weight matrices (x_embedder,
// t/fps embedders, t_block, y_embedder, qkv, proj, q_linear, kv_linear, cross
// proj, fc1, fc2, final linear); false for biases, norm weights, tables and
// the start/end tokens. (The MUG-V recipe uses weight decay 0.)
//
// Token order and 3D RoPE positions (per sample; every sample may have its own
// latent shape T x H x W):
//   The latent [Cin, T, H, W] is zero-padded at the end of each axis up to a
//   multiple of the patch size: T' = ceil(T/pt), H' = ceil(H/ph), W' = ceil(W/pw).
//   Sequence = [start, patch tokens, end], Lx = T'H'W' + 2. Patch token j
//   (0-based, = sequence index j+1) is at frame i = j / (H'W'), row r =
//   (j / W') % H', column c = j % W' (t-major, then h, then w).
//   Positions (h, w, t): patch token (r, c, min(i+1, rope_max_t-1)); start
//   token (0, 0, 0); end token (H'-1, W'-1, min(T'+1, rope_max_t-1)).
//   H' and W' must be <= rope_max_hw (384): MUG-V's spatial table has 384 rows.
//   Angles: hd/2 interleaved pairs (x[2s], x[2s+1]), s = 0..hd/2-1, in three
//   groups of n = hd/6 slots: s in [0, n): h; [n, 2n): w; [2n, 3n): t. Slot k of
//   a group has angle pos * f_k, f_k = rope_theta^(-6k/hd) (dit_rope_freqs).
//   x'[2s] = x[2s] cos a - x[2s+1] sin a;  x'[2s+1] = x[2s+1] cos a + x[2s] sin a.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include "../core/args.h"
#include "param_tensor.h"
#include "../core/utils.h"

struct DiTConfig {
    int d_model = 144;              // C
    int n_layer = 2;
    int n_head = 2;
    int head_dim = 0;               // 0: d_model / n_head (must equal it: qkv is Linear(C, 3C))
    float mlp_ratio = 4.0f;
    int ffn_hidden = 0;             // 0: int(d_model * mlp_ratio)
    int in_channels = 24;           // latent channels Cin
    int out_channels = 48;          // Cout; the first in_channels are the velocity
    int caption_channels = 4096;    // text feature width (T5-XXL)
    int patch_t = 1, patch_h = 2, patch_w = 2;
    int max_text_len = 300;         // longest caption (valid tokens) accepted
    float norm_eps = 1e-6f;         // every LayerNorm and RMSNorm
    float rope_theta = 10000.0f;
    int rope_max_t = 480;           // temporal RoPE positions are clamped to rope_max_t - 1
    int rope_max_hw = 384;          // H', W' must not exceed this
    int freq_dim = 256;             // sinusoidal embedding width of t and fps
    float freq_max_period = 10000.0f;   // freqs_k = exp(-ln(max_period) * k / (freq_dim/2))
};

static inline bool dit_preset(const std::string& name, DiTConfig* c) {
    DiTConfig d;  // defaults
    *c = d;
    auto set = [&](int C, int L, int nh) { c->d_model = C; c->n_layer = L; c->n_head = nh; };
    if (name == "tiny") {
        // defaults above (tests override the channel counts to keep reference files small)
    } else if (name == "debug") {
        set(288, 2, 4);
    } else if (name == "dit-s") {
        set(576, 12, 8);
    } else if (name == "1B" || name == "1b") {
        set(1152, 56, 16);   // the benchmark uses --n-layer 28
    } else if (name == "4B" || name == "4b") {
        set(2304, 56, 32);
    } else if (name == "10B" || name == "10b") {
        set(3456, 56, 48);   // MUG-V 10B: 10.83B parameters
    } else if (name == "18B" || name == "18b") {
        set(4608, 56, 64);
    } else {
        return false;
    }
    return true;
}
#define DIT_PRESET_NAMES "tiny, debug, dit-s, 1B, 4B, 10B, 18B"

// Registers a flag for every config field.
static inline void dit_config_add_flags(ArgParser& ap, DiTConfig* c) {
    ap.section("model (every config field; a preset sets them, flags given after override)");
    ap.add_int("--d-model", &c->d_model, "model width C");
    ap.add_int("--n-layer", &c->n_layer, "DiT blocks");
    ap.add_int("--n-head", &c->n_head, "attention heads (n-head * head-dim == d-model)");
    ap.add_int("--head-dim", &c->head_dim, "head dim (0: d-model / n-head; a multiple of 6 for 3D RoPE)");
    ap.add_float("--mlp-ratio", &c->mlp_ratio, "MLP hidden = int(d-model * mlp-ratio)");
    ap.add_int("--ffn-hidden", &c->ffn_hidden, "MLP hidden size (0: from --mlp-ratio)");
    ap.add_int("--in-channels", &c->in_channels, "latent channels");
    ap.add_int("--out-channels", &c->out_channels, "output channels (>= in-channels; first in-channels = velocity)");
    ap.add_int("--caption-channels", &c->caption_channels, "text feature channels");
    ap.add_int("--patch-t", &c->patch_t, "patch size in time");
    ap.add_int("--patch-h", &c->patch_h, "patch size in height");
    ap.add_int("--patch-w", &c->patch_w, "patch size in width");
    ap.add_int("--max-text-len", &c->max_text_len, "longest caption in tokens");
    ap.add_float("--norm-eps", &c->norm_eps, "LayerNorm/RMSNorm epsilon");
    ap.add_float("--rope-theta", &c->rope_theta, "3D RoPE base");
    ap.add_int("--rope-max-t", &c->rope_max_t, "temporal RoPE positions clamped to this - 1");
    ap.add_int("--rope-max-hw", &c->rope_max_hw, "largest patch grid height/width");
    ap.add_int("--freq-dim", &c->freq_dim, "sinusoidal t/fps embedding width");
    ap.add_float("--freq-max-period", &c->freq_max_period, "sinusoidal t/fps embedding max period");
}

// Fills the derived fields and checks every constraint; errors name the flag.
static inline void dit_config_finalize(DiTConfig* c) {
    if (c->n_layer <= 0) fail("flag --n-layer: must be > 0, got %d", c->n_layer);
    if (c->d_model <= 0) fail("flag --d-model: must be > 0, got %d", c->d_model);
    if (c->n_head <= 0) fail("flag --n-head: must be > 0, got %d", c->n_head);
    if (c->head_dim == 0) {
        if (c->d_model % c->n_head != 0) fail("flag --n-head: %d does not divide --d-model %d", c->n_head, c->d_model);
        c->head_dim = c->d_model / c->n_head;
    }
    if (c->head_dim <= 0 || c->head_dim % 6 != 0)
        fail("flag --head-dim: must be a positive multiple of 6 (3D RoPE: 3 axes of pairs), got %d", c->head_dim);
    if (c->n_head * c->head_dim != c->d_model)
        fail("flag --head-dim: --n-head %d x --head-dim %d must equal --d-model %d", c->n_head, c->head_dim, c->d_model);
    if (!(c->mlp_ratio > 0)) fail("flag --mlp-ratio: must be > 0");
    if (c->ffn_hidden == 0) c->ffn_hidden = (int)(c->d_model * (double)c->mlp_ratio);
    if (c->ffn_hidden <= 0) fail("flag --ffn-hidden: must be > 0, got %d", c->ffn_hidden);
    if (c->in_channels <= 0) fail("flag --in-channels: must be > 0, got %d", c->in_channels);
    if (c->out_channels < c->in_channels)
        fail("flag --out-channels: must be >= --in-channels %d, got %d", c->in_channels, c->out_channels);
    if (c->caption_channels <= 0) fail("flag --caption-channels: must be > 0, got %d", c->caption_channels);
    if (c->patch_t <= 0) fail("flag --patch-t: must be > 0, got %d", c->patch_t);
    if (c->patch_h <= 0) fail("flag --patch-h: must be > 0, got %d", c->patch_h);
    if (c->patch_w <= 0) fail("flag --patch-w: must be > 0, got %d", c->patch_w);
    if (c->max_text_len <= 0) fail("flag --max-text-len: must be > 0, got %d", c->max_text_len);
    if (!(c->norm_eps > 0 && std::isfinite(c->norm_eps))) fail("flag --norm-eps: must be a finite number > 0");
    if (!(c->rope_theta > 0 && std::isfinite(c->rope_theta))) fail("flag --rope-theta: must be a finite number > 0");
    if (c->rope_max_t <= 0) fail("flag --rope-max-t: must be > 0, got %d", c->rope_max_t);
    if (c->rope_max_hw <= 0) fail("flag --rope-max-hw: must be > 0, got %d", c->rope_max_hw);
    if (c->freq_dim <= 0 || c->freq_dim % 2 != 0) fail("flag --freq-dim: must be a positive even number, got %d", c->freq_dim);
    if (!(c->freq_max_period > 0)) fail("flag --freq-max-period: must be > 0");
}

static inline int dit_patch_size(const DiTConfig& c) { return c.patch_t * c.patch_h * c.patch_w; }

static inline std::vector<ParamTensor> dit_param_layout(const DiTConfig& c) {
    const int L = c.n_layer, C = c.d_model, hd = c.head_dim, F = c.ffn_hidden, P = dit_patch_size(c);
    std::vector<ParamTensor> t;
    auto add = [&](const std::string& n, std::vector<int> s, bool decay) {
        size_t k = 1;
        for (int d : s) k *= (size_t)d;
        size_t off = t.empty() ? 0 : t.back().offset + t.back().numel;
        t.push_back({n, s, k, off, decay});
    };
    add("x_embedder.proj.weight", {C, c.in_channels * P}, true);
    add("x_embedder.proj.bias", {C}, false);
    add("start_token", {C}, false);
    add("end_token", {C}, false);
    for (const char* e : {"t_embedder", "fps_embedder"}) {
        const std::string p = std::string(e) + ".mlp.";
        add(p + "0.weight", {C, c.freq_dim}, true);
        add(p + "0.bias", {C}, false);
        add(p + "2.weight", {C, C}, true);
        add(p + "2.bias", {C}, false);
    }
    add("t_block.1.weight", {6 * C, C}, true);
    add("t_block.1.bias", {6 * C}, false);
    add("y_embedder.y_proj.fc1.weight", {C, c.caption_channels}, true);
    add("y_embedder.y_proj.fc1.bias", {C}, false);
    add("y_embedder.y_proj.fc2.weight", {C, C}, true);
    add("y_embedder.y_proj.fc2.bias", {C}, false);
    add("blocks.scale_shift_table", {L, 6, C}, false);
    add("blocks.attn.qkv.weight", {L, 3 * C, C}, true);
    add("blocks.attn.qkv.bias", {L, 3 * C}, false);
    add("blocks.attn.q_norm.weight", {L, hd}, false);
    add("blocks.attn.k_norm.weight", {L, hd}, false);
    add("blocks.attn.proj.weight", {L, C, C}, true);
    add("blocks.attn.proj.bias", {L, C}, false);
    add("blocks.cross_attn_norm.weight", {L, C}, false);
    add("blocks.cross_attn_norm.bias", {L, C}, false);
    add("blocks.cross_attn.q_linear.weight", {L, C, C}, true);
    add("blocks.cross_attn.q_linear.bias", {L, C}, false);
    add("blocks.cross_attn.kv_linear.weight", {L, 2 * C, C}, true);
    add("blocks.cross_attn.kv_linear.bias", {L, 2 * C}, false);
    add("blocks.cross_attn.q_norm.weight", {L, hd}, false);
    add("blocks.cross_attn.k_norm.weight", {L, hd}, false);
    add("blocks.cross_attn.proj.weight", {L, C, C}, true);
    add("blocks.cross_attn.proj.bias", {L, C}, false);
    add("blocks.mlp.fc1.weight", {L, F, C}, true);
    add("blocks.mlp.fc1.bias", {L, F}, false);
    add("blocks.mlp.fc2.weight", {L, C, F}, true);
    add("blocks.mlp.fc2.bias", {L, C}, false);
    add("final_layer.scale_shift_table", {2, C}, false);
    add("final_layer.linear.weight", {P * c.out_channels, C}, true);
    add("final_layer.linear.bias", {P * c.out_channels}, false);
    return t;
}

// The backward finishes the final layer first and the embedders and conditioning
// last; the blocks' tensors are stacked per block.
static inline std::vector<int> dit_param_stages(const std::vector<ParamTensor>& layout) {
    std::vector<int> k;
    for (const ParamTensor& t : layout)
        k.push_back(t.name.rfind("blocks.", 0) == 0 ? PARAM_LAYER : t.name.rfind("final_layer.", 0) == 0 ? PARAM_HEAD : PARAM_TAIL);
    return k;
}

static inline const ParamTensor* dit_find_param(const std::vector<ParamTensor>& t, const std::string& name) {
    for (const ParamTensor& p : t) if (p.name == name) return &p;
    return nullptr;
}

// Per-axis RoPE frequencies f_k = rope_theta^(-6k/hd), k < hd/6 (double, host).
static inline std::vector<double> dit_rope_freqs(const DiTConfig& c) {
    std::vector<double> f(c.head_dim / 6);
    for (int k = 0; k < c.head_dim / 6; k++) f[k] = pow((double)c.rope_theta, -6.0 * k / c.head_dim);
    return f;
}

// Sinusoidal embedding frequencies of t and fps: exp(-ln(max_period) * k / half),
// k < half = freq_dim/2. The embedding of a value s is [cos(s f_0..), sin(s f_0..)].
static inline std::vector<double> dit_freq_embedding_freqs(const DiTConfig& c) {
    const int half = c.freq_dim / 2;
    std::vector<double> f(half);
    for (int k = 0; k < half; k++) f[k] = exp(-log((double)c.freq_max_period) * k / half);
    return f;
}

// The patch grid of one sample of latent shape T x H x W.
struct DiTGrid {
    int T, H, W;        // latent frames, height, width (before padding)
    int Tp, Hp, Wp;     // patch grid T', H', W'
    int n_patch;        // T'H'W'
    int L;              // sequence length n_patch + 2 (start and end tokens)
};

static inline DiTGrid dit_grid(const DiTConfig& c, int T, int H, int W) {
    DiTGrid g;
    g.T = T; g.H = H; g.W = W;
    g.Tp = (T + c.patch_t - 1) / c.patch_t;
    g.Hp = (H + c.patch_h - 1) / c.patch_h;
    g.Wp = (W + c.patch_w - 1) / c.patch_w;
    g.n_patch = g.Tp * g.Hp * g.Wp;
    g.L = g.n_patch + 2;
    return g;
}

// RoPE positions (h, w, t) of sequence index j in [0, L) of a sample (see the
// rule at the top of this file).
static inline void dit_rope_position(const DiTConfig& c, const DiTGrid& g, int j, int* ph, int* pw, int* pt) {
    if (j == 0) { *ph = 0; *pw = 0; *pt = 0; return; }
    if (j == g.L - 1) { *ph = g.Hp - 1; *pw = g.Wp - 1; *pt = std::min(g.Tp + 1, c.rope_max_t - 1); return; }
    const int p = j - 1;
    *ph = (p / g.Wp) % g.Hp;
    *pw = p % g.Wp;
    *pt = std::min(p / (g.Hp * g.Wp) + 1, c.rope_max_t - 1);
}

// The per-token (cos, sin) table of a batch, token i being token pos[i] of the sample
// grids[sample[i]]: out[(i hd/2 + s) 2 + {0, 1}] = cos, sin of slot s's angle, in double,
// rounded to float (the CPU reference evaluates every entry; this gives the same bits).
// An angle is p f_k with p a small integer position on one axis, so each (axis, position, k)
// triple's cos and sin are computed once and each token's row gathered from them: evaluating
// every entry is two double-precision sin/cos per entry, hundreds of thousands a batch, on the
// host at the start of a training step while the GPU waits.
static inline void dit_rope_table_at(float* out, const DiTConfig& c, const std::vector<DiTGrid>& grids,
                                     const std::vector<int>& sample, const std::vector<int>& pos) {
    const int half = c.head_dim / 2, n6 = c.head_dim / 6;   // half = 3 n6 (dit_config_finalize)
    const std::vector<double> f = dit_rope_freqs(c);
    std::vector<int> p(3 * pos.size());   // each token's positions (h, w, t)
    int pmax[3] = {0, 0, 0};
    for (size_t i = 0; i < pos.size(); i++) {
        int* pi = &p[3 * i];
        dit_rope_position(c, grids[sample[i]], pos[i], &pi[0], &pi[1], &pi[2]);
        for (int a = 0; a < 3; a++) pmax[a] = std::max(pmax[a], pi[a]);
    }
    std::vector<float> lut[3];   // axis a: [pmax[a] + 1][n6] pairs
    for (int a = 0; a < 3; a++) {
        lut[a].resize((size_t)(pmax[a] + 1) * n6 * 2);
        for (int q = 0; q <= pmax[a]; q++)
            for (int k = 0; k < n6; k++) {
                const double ang = q * f[k];
                lut[a][((size_t)q * n6 + k) * 2] = (float)cos(ang);
                lut[a][((size_t)q * n6 + k) * 2 + 1] = (float)sin(ang);
            }
    }
    for (size_t i = 0; i < pos.size(); i++)
        for (int a = 0; a < 3; a++)
            std::copy_n(&lut[a][(size_t)p[3 * i + a] * n6 * 2], n6 * 2, out + (i * half + a * n6) * 2);
}

// Model FLOPs of one training step (forward + backward = 3x forward) for one
// sample with Lx tokens and Lt text tokens (docs/dit.md "Counting
// FLOPs"). Per token per layer: 2*14*C^2 for the matmuls the spec lists (qkv 3,
// proj 1, cross q 1, cross proj 1, MLP 8 C^2; the spec's "2*12*C^2" leaves out
// the two cross-attention ones although it names them) + 4*Lx*C (self-attention
// scores and values, non-causal) + 4*Lt*C (cross-attention); per text token per
// layer 2*2*C^2 (cross kv). Embedders and the final layer are not counted.
static inline double dit_train_flops_per_sample(const DiTConfig& c, double Lx, double Lt) {
    const double C = c.d_model;
    const double fwd = c.n_layer * (Lx * (28.0 * C * C + 4.0 * Lx * C + 4.0 * Lt * C) + Lt * 4.0 * C * C);
    return 3.0 * fwd;
}
