#!/usr/bin/python3
"""Reference for the mega.c video DiT (MUG-V 10B architecture): with rectified flow
(--objective rf, the default) writes test/data/dit_tiny.mgt; with EDM (--objective edm,
Karras et al. 2022; llmc/model/dit_objective.h) writes test/data/dit_tiny_edm.mgt on a
smaller configuration, with the first steps of the Heun sampler.

The model spec in code: docs/dit.md, dev/DESIGN.md (section "DiT"),
llmc/model/dit_config.h. All math is float64 on the CPU; tensors are stored as
float32 (int32 for shapes, lengths and masks). Only torch 1.13-era APIs are
used (Debian python3-torch), and every piece of the model (LayerNorm without
affine, RMSNorm QK-norm, interleaved 3D RoPE, attention over packed
variable-length samples and text, GELU(tanh), sinusoidal embeddings,
patchify/unpatchify, the rectified-flow and EDM losses, clipping, AdamW, the EDM
Heun sampler) is written out by hand and checked against naive loops, torch's own ops
or closed forms in self_check().

Usage: /usr/bin/python3 dev/reference/dit.py [--objective rf|edm]   (from anywhere; writes into test/data/)
"""
import argparse
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as Fn

torch.set_num_threads(1)          # keep float64 reductions in one fixed order
DT = torch.float64
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO, "test", "data")
N_STEPS = 10


def f32(x):
    """The float32 value of a config float, as C++ holds it (DiTConfig fields are float)."""
    return float(np.float32(x))


# ----------------------------------------------------------------------------
# configs (fields as in DiTConfig, after dit_config_finalize)

# tiny preset (C 144, 2 layers, 2 heads, hd 72) with small channel counts so that
# the file stays small, and rope_max_t 4 so that the clamp of temporal positions
# is exercised (sample 0's end token has t = T'+1 = 4 -> 3).
TINY = dict(d_model=144, n_layer=2, n_head=2, head_dim=72, ffn_hidden=576, in_channels=4, out_channels=8,
            caption_channels=32, patch_t=1, patch_h=2, patch_w=2, max_text_len=300, rope_max_t=4,
            rope_max_hw=384, freq_dim=256, mlp_ratio=4.0, norm_eps=1e-6, rope_theta=10000.0,
            freq_max_period=10000.0)

# MUG-V recipe: AdamW betas (0.9, 0.999), eps 1e-10, weight decay 0, clip 1.0.
# lr is larger than a fine-tuning lr so that 10 steps move the loss visibly.
TRAIN = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-10, weight_decay=0.0, grad_clip=1.0)

# The batch: two samples of different latent shapes (H, then W not divisible by the
# patch size), different text lengths and fps; sample 0 is image-to-video (frame 0
# clean), sample 1 text-to-video (no mask).
SAMPLES = [dict(T=3, H=6, W=5, text_len=5, fps=24.0, mask=[0, 1, 1]),
           dict(T=2, H=5, W=4, text_len=9, fps=12.0, mask=None)]
SHIFT_RATIO = 2.0   # a given shift ratio (the data side's setting) for t

# EDM (DiTObjective's defaults): sigma_data, training ln sigma ~ N(p_mean, p_std^2), the sampler's
# schedule (sigma_min, sigma_max, rho). The EDM file uses a smaller model (one head of 48) so that it
# stays small: the architecture is the rf file's business, the objective this one's.
EDM = dict(sigma_data=0.5, p_mean=-1.2, p_std=1.2, sigma_min=0.002, sigma_max=80.0, rho=7.0)
EDM_TINY = dict(TINY, d_model=48, n_layer=2, n_head=1, head_dim=48, ffn_hidden=192, caption_channels=16, freq_dim=64)
# the sampler check: a schedule of EDM_SAMPLE_STEPS steps, guidance scale EDM_CFG, the first
# EDM_SAMPLE_KEEP steps stored (each a Heun step: two guided evaluations)
EDM_SAMPLE_STEPS, EDM_SAMPLE_KEEP, EDM_CFG = 4, 2, 3.0


def edm_precond(sigma, sd):
    """(c_skip, c_out, c_in, c_noise, lambda) of EDM's Table 1 for noise level sigma (float)."""
    s2 = sigma * sigma + sd * sd
    return sd * sd / s2, sigma * sd / math.sqrt(s2), 1.0 / math.sqrt(s2), 0.25 * math.log(sigma), s2 / (sigma * sd) ** 2


def edm_sigma_steps(obj, n):
    """The sampler's n + 1 noise levels: sigma_max .. sigma_min on the rho schedule, then 0."""
    a, b, rho = f32(obj["sigma_max"]) ** (1 / f32(obj["rho"])), f32(obj["sigma_min"]) ** (1 / f32(obj["rho"])), f32(obj["rho"])
    return [(a + (i / (n - 1) if n > 1 else 0.0) * (b - a)) ** rho for i in range(n)] + [0.0]


def param_layout(c):
    """dit_param_layout: list of (name, shape, decay) in file/buffer order."""
    L, C, hd, F = c["n_layer"], c["d_model"], c["head_dim"], c["ffn_hidden"]
    P = c["patch_t"] * c["patch_h"] * c["patch_w"]
    t = [("x_embedder.proj.weight", [C, c["in_channels"] * P], True), ("x_embedder.proj.bias", [C], False),
         ("start_token", [C], False), ("end_token", [C], False)]
    for e in ("t_embedder", "fps_embedder"):
        t += [(e + ".mlp.0.weight", [C, c["freq_dim"]], True), (e + ".mlp.0.bias", [C], False),
              (e + ".mlp.2.weight", [C, C], True), (e + ".mlp.2.bias", [C], False)]
    t += [("t_block.1.weight", [6 * C, C], True), ("t_block.1.bias", [6 * C], False),
          ("y_embedder.y_proj.fc1.weight", [C, c["caption_channels"]], True),
          ("y_embedder.y_proj.fc1.bias", [C], False),
          ("y_embedder.y_proj.fc2.weight", [C, C], True), ("y_embedder.y_proj.fc2.bias", [C], False),
          ("blocks.scale_shift_table", [L, 6, C], False),
          ("blocks.attn.qkv.weight", [L, 3 * C, C], True), ("blocks.attn.qkv.bias", [L, 3 * C], False),
          ("blocks.attn.q_norm.weight", [L, hd], False), ("blocks.attn.k_norm.weight", [L, hd], False),
          ("blocks.attn.proj.weight", [L, C, C], True), ("blocks.attn.proj.bias", [L, C], False),
          ("blocks.cross_attn_norm.weight", [L, C], False), ("blocks.cross_attn_norm.bias", [L, C], False),
          ("blocks.cross_attn.q_linear.weight", [L, C, C], True), ("blocks.cross_attn.q_linear.bias", [L, C], False),
          ("blocks.cross_attn.kv_linear.weight", [L, 2 * C, C], True),
          ("blocks.cross_attn.kv_linear.bias", [L, 2 * C], False),
          ("blocks.cross_attn.q_norm.weight", [L, hd], False), ("blocks.cross_attn.k_norm.weight", [L, hd], False),
          ("blocks.cross_attn.proj.weight", [L, C, C], True), ("blocks.cross_attn.proj.bias", [L, C], False),
          ("blocks.mlp.fc1.weight", [L, F, C], True), ("blocks.mlp.fc1.bias", [L, F], False),
          ("blocks.mlp.fc2.weight", [L, C, F], True), ("blocks.mlp.fc2.bias", [L, C], False),
          ("final_layer.scale_shift_table", [2, C], False),
          ("final_layer.linear.weight", [P * c["out_channels"], C], True),
          ("final_layer.linear.bias", [P * c["out_channels"]], False)]
    return t


# ----------------------------------------------------------------------------
# model pieces

def layernorm(x, eps):
    """LayerNorm over the last dim without affine (biased variance)."""
    mu = x.mean(dim=-1, keepdim=True)
    xc = x - mu
    return xc / torch.sqrt((xc * xc).mean(dim=-1, keepdim=True) + eps)


def rmsnorm(x, w, eps):
    """y = x / sqrt(mean(x^2) + eps) * w over the last dimension."""
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def silu(x):
    return x * torch.sigmoid(x)


def lin(x, P, name, l=None):
    """x @ W^T + b for P[name.weight], P[name.bias] (layer l of a stacked tensor)."""
    w, b = P[name + ".weight"], P[name + ".bias"]
    if l is not None:
        w, b = w[l], b[l]
    return x @ w.t() + b


def freq_embedding(c, s):
    """Sinusoidal embedding of scalars s [B]: [cos(s f), sin(s f)], f_k = exp(-ln(max_period) k / half)."""
    half = c["freq_dim"] // 2
    f = torch.tensor([math.exp(-math.log(f32(c["freq_max_period"])) * k / half) for k in range(half)], dtype=DT)
    a = s[:, None] * f[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


def embed_mlp(P, prefix, e):
    """TimestepEmbedder / FpsEmbedder MLP: Linear -> SiLU -> Linear."""
    return lin(silu(lin(e, P, prefix + ".mlp.0")), P, prefix + ".mlp.2")


def grid(c, T, H, W):
    """(T', H', W') of a latent T x H x W (padded up to the patch size)."""
    return (-(-T // c["patch_t"]), -(-H // c["patch_h"]), -(-W // c["patch_w"]))


def positions(c, T, H, W):
    """3D RoPE positions (h, w, t) of the L = T'H'W' + 2 tokens of one sample: LongTensor [L, 3]."""
    Tp, Hp, Wp = grid(c, T, H, W)
    mt = c["rope_max_t"] - 1
    pos = [(0, 0, 0)]
    for i in range(Tp):
        for r in range(Hp):
            for col in range(Wp):
                pos.append((r, col, min(i + 1, mt)))
    pos.append((Hp - 1, Wp - 1, min(Tp + 1, mt)))
    return torch.tensor(pos, dtype=torch.long)


def rope_freqs(c):
    """Per-axis frequencies theta^(-6k/hd), k < hd/6."""
    hd = c["head_dim"]
    return torch.tensor([f32(c["rope_theta"]) ** (-6.0 * k / hd) for k in range(hd // 6)], dtype=DT)


def rope_angles(c, pos):
    """Angles [N, hd/2] of positions [N, 3] (h, w, t): slots [h group | w group | t group]."""
    f = rope_freqs(c)
    p = pos.to(DT)
    return torch.cat([p[:, 0:1] * f, p[:, 1:2] * f, p[:, 2:3] * f], dim=1)


def rope(x, cos, sin):
    """Interleaved rotation of x [N, nh, hd] with cos/sin [N, hd/2]: pairs (x[2s], x[2s+1])."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], dim=-1).flatten(-2)


def segments(cu):
    """Segment id of every row of a packed array with boundaries cu (len B+1)."""
    return torch.cat([torch.full((cu[b + 1] - cu[b],), b, dtype=torch.long) for b in range(len(cu) - 1)])


def packed_attention(q, k, v, cu_q, cu_k):
    """Attention over packed samples: queries cu_q[b]:cu_q[b+1] attend (no causal mask) to keys
    cu_k[b]:cu_k[b+1] only. q [Nq,nh,hd], k/v [Nk,nh,hd] -> [Nq,nh,hd]; scale 1/sqrt(hd)."""
    hd = q.shape[-1]
    allowed = segments(cu_q)[:, None] == segments(cu_k)[None, :]        # [Nq, Nk] block diagonal
    s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
    s = s.masked_fill(~allowed[None], float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("hqk,khd->qhd", p, v)


def patchify(c, x):
    """x [Cin, T, H, W] -> zero-padded patches [T'H'W', Cin*P], token order (t, h, w), patch vector
    order (c, tp, hp, wp) as a Conv3d weight flattens."""
    pt, ph, pw = c["patch_t"], c["patch_h"], c["patch_w"]
    Cin, T, H, W = x.shape
    Tp, Hp, Wp = grid(c, T, H, W)
    x = Fn.pad(x, (0, Wp * pw - W, 0, Hp * ph - H, 0, Tp * pt - T))
    x = x.reshape(Cin, Tp, pt, Hp, ph, Wp, pw).permute(1, 3, 5, 0, 2, 4, 6)
    return x.reshape(Tp * Hp * Wp, Cin * pt * ph * pw)


def unpatchify(c, o, T, H, W):
    """o [T'H'W', P*Cout] -> [Cout, T, H, W]: 'B (Nt Nh Nw) (Tp Hp Wp Cout) -> B Cout (Nt Tp) (Nh Hp) (Nw Wp)',
    then the padding is cropped."""
    pt, ph, pw, Cout = c["patch_t"], c["patch_h"], c["patch_w"], c["out_channels"]
    Tp, Hp, Wp = grid(c, T, H, W)
    o = o.reshape(Tp, Hp, Wp, pt, ph, pw, Cout).permute(6, 0, 3, 1, 4, 2, 5)
    return o.reshape(Cout, Tp * pt, Hp * ph, Wp * pw)[:, :T, :H, :W]


def forward(c, P, batch, obj=None):
    """Returns (v_pred list of [Cout,T,H,W] per sample, loss). P: name -> float64 tensor (dit_param_layout).
    batch: dict with per-sample lists x0, eps ([Cin,T,H,W]), text ([Lt,Cy]), t, fps (float64 [B]) and
    masks (list of bool tensors [T] (True = noisy) or None). obj: None for rectified flow (t: flow time,
    v_pred: the velocity); an EDM dict for EDM (t: sigma, v_pred: the network's raw output F)."""
    C, nh, hd, L = c["d_model"], c["n_head"], c["head_dim"], c["n_layer"]
    eps, Cin, pt = f32(c["norm_eps"]), c["in_channels"], c["patch_t"]
    B = len(batch["x0"])
    t, fps = batch["t"], batch["fps"]

    # conditioning: c = t_emb(1000 t) + fps_emb(fps); c0 with timestep 0; t_block. EDM: c_noise(sigma),
    # and clean tokens c_noise(sigma_min)
    if obj is None:
        tv, tv0 = 1000.0 * t, torch.zeros(B, dtype=DT)
        pre = None
    else:
        sd = f32(obj["sigma_data"])
        pre = [edm_precond(t[b].item(), sd) for b in range(B)]
        tv = torch.tensor([p[3] for p in pre], dtype=DT)
        tv0 = torch.full((B,), 0.25 * math.log(f32(obj["sigma_min"])), dtype=DT)
    te = embed_mlp(P, "t_embedder", freq_embedding(c, tv))
    te0 = embed_mlp(P, "t_embedder", freq_embedding(c, tv0))
    fe = embed_mlp(P, "fps_embedder", freq_embedding(c, fps))
    cv, c0 = te + fe, te0 + fe
    tm, t0m = lin(silu(cv), P, "t_block.1"), lin(silu(c0), P, "t_block.1")     # [B, 6C]

    # caption: LN -> fc1 -> GELU(tanh) -> fc2 -> LN over the packed valid tokens
    y = torch.cat(batch["text"], dim=0)
    y = layernorm(y, eps)
    y = lin(gelu_tanh(lin(y, P, "y_embedder.y_proj.fc1")), P, "y_embedder.y_proj.fc2")
    y = layernorm(y, eps)
    cu_t = [0]
    for tx in batch["text"]:
        cu_t.append(cu_t[-1] + tx.shape[0])

    # tokens of every sample, packed; per-token modulation rows and positions
    xs, mods, fins, poss, cu_x, xts = [], [], [], [], [0], []
    for b in range(B):
        x0, ep, mask = batch["x0"][b], batch["eps"][b], batch["masks"][b]
        _, T, H, W = x0.shape
        Tp, Hp, Wp = grid(c, T, H, W)
        if obj is None:
            xt = (1.0 - t[b]) * x0 + t[b] * ep
            if mask is not None:
                xt = torch.where(mask[None, :, None, None], xt, x0)      # clean frames hold x0
        else:
            xt = pre[b][2] * (x0 + t[b] * ep)                            # c_in x, x = x0 + sigma eps
            if mask is not None:
                xt = torch.where(mask[None, :, None, None], xt, x0 / sd)  # clean frames: c_in(0) x0
        xts.append(xt)
        tok = lin(patchify(c, xt), P, "x_embedder.proj")
        xs.append(torch.cat([P["start_token"][None], tok, P["end_token"][None]], dim=0))
        if mask is None:
            noisy = torch.ones(Tp * Hp * Wp, dtype=torch.bool)
            se_noisy = True
        else:
            noisy = mask[torch.arange(Tp) * pt].repeat_interleave(Hp * Wp)  # token frame i: latent frame i*pt
            se_noisy = False                                                 # start/end use t0 with a mask
        se = torch.tensor([se_noisy])
        nz = torch.cat([se, noisy, se])
        mods.append(torch.where(nz[:, None], tm[b][None], t0m[b][None]))
        fins.append(torch.where(noisy[:, None], cv[b][None], c0[b][None]))
        poss.append(positions(c, T, H, W))
        cu_x.append(cu_x[-1] + Tp * Hp * Wp + 2)
    x = torch.cat(xs, dim=0)                      # [N, C]
    N = x.shape[0]
    mod = torch.cat(mods, dim=0).reshape(N, 6, C)
    ang = rope_angles(c, torch.cat(poss, dim=0))
    cos, sin = torch.cos(ang), torch.sin(ang)

    for l in range(L):
        m = P["blocks.scale_shift_table"][l][None] + mod               # [N, 6, C]
        shift1, scale1, gate1, shift2, scale2, gate2 = m.unbind(1)
        # self-attention
        h = layernorm(x, eps) * (1.0 + scale1) + shift1
        qkv = lin(h, P, "blocks.attn.qkv", l).reshape(N, 3, nh, hd)
        q, k, v = qkv.unbind(1)
        q = rope(rmsnorm(q, P["blocks.attn.q_norm.weight"][l], eps), cos, sin)
        k = rope(rmsnorm(k, P["blocks.attn.k_norm.weight"][l], eps), cos, sin)
        a = packed_attention(q, k, v, cu_x, cu_x).reshape(N, C)
        x = x + gate1 * lin(a, P, "blocks.attn.proj", l)
        # cross-attention (no modulation, no gate)
        h = layernorm(x, eps) * P["blocks.cross_attn_norm.weight"][l] + P["blocks.cross_attn_norm.bias"][l]
        q = lin(h, P, "blocks.cross_attn.q_linear", l).reshape(N, nh, hd)
        kv = lin(y, P, "blocks.cross_attn.kv_linear", l).reshape(-1, 2, nh, hd)
        k, v = kv.unbind(1)
        q = rmsnorm(q, P["blocks.cross_attn.q_norm.weight"][l], eps)
        k = rmsnorm(k, P["blocks.cross_attn.k_norm.weight"][l], eps)
        a = packed_attention(q, k, v, cu_x, cu_t).reshape(N, C)
        x = x + lin(a, P, "blocks.cross_attn.proj", l)
        # MLP
        h = layernorm(x, eps) * (1.0 + scale2) + shift2
        x = x + gate2 * lin(gelu_tanh(lin(h, P, "blocks.mlp.fc1", l)), P, "blocks.mlp.fc2", l)

    # final layer on the patch tokens (start and end dropped), unpatchify, loss
    xp = torch.cat([x[cu_x[b] + 1:cu_x[b + 1] - 1] for b in range(B)], dim=0)
    fin = torch.cat(fins, dim=0)
    tf = P["final_layer.scale_shift_table"]
    h = layernorm(xp, eps) * (1.0 + (tf[1][None] + fin)) + (tf[0][None] + fin)
    o = lin(h, P, "final_layer.linear")
    v_pred, losses, off = [], [], 0
    for b in range(B):
        x0, ep, mask = batch["x0"][b], batch["eps"][b], batch["masks"][b]
        _, T, H, W = x0.shape
        Tp, Hp, Wp = grid(c, T, H, W)
        n = Tp * Hp * Wp
        vp = unpatchify(c, o[off:off + n], T, H, W)
        off += n
        v_pred.append(vp)
        if obj is None:
            d = (vp[:Cin] - (x0 - ep)) ** 2                            # [Cin, T, H, W]
        else:                                                          # lambda (D - x0)^2
            c_skip, c_out, _, _, lam = pre[b]
            d = lam * (c_skip * (x0 + t[b] * ep) + c_out * vp[:Cin] - x0) ** 2
        fm = torch.ones(T, dtype=torch.bool) if mask is None else mask
        nf = int(fm.sum())
        losses.append(d[:, fm].sum() / (nf * Cin * H * W))
    return v_pred, torch.stack(losses).mean()


# ----------------------------------------------------------------------------
# init, training

def init_params(c, gen):
    """Matrices N(0, 1/fan_in), norm weights 1 + 0.1 N, biases (incl. LayerNorm bias) 0.1 N, tables
    N/sqrt(C), start/end tokens 0.02 N. Random everywhere (no zero init) so that every parameter gets
    a gradient. Values are rounded to float32 so that the stored file is exactly the starting point."""
    P = {}
    C = c["d_model"]
    for name, shape, _ in param_layout(c):
        r = torch.randn(shape, generator=gen, dtype=DT)
        if name.endswith("norm.weight"):
            p = 1.0 + 0.1 * r
        elif name.endswith(".bias"):
            p = 0.1 * r
        elif "scale_shift_table" in name:
            p = r / math.sqrt(C)
        elif name in ("start_token", "end_token"):
            p = 0.02 * r
        else:
            p = r / math.sqrt(shape[-1])
        P[name] = p.float().to(DT)
    return P


def grads_of(c, P, batch, obj=None):
    """(v_pred, loss, grads) of the loss by autograd."""
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in P.items()}
    v_pred, loss = forward(c, leaves, batch, obj)
    loss.backward()
    return [v.detach() for v in v_pred], loss.detach(), {n: t.grad.detach() for n, t in leaves.items()}


def train(c, P, batch, hp, obj=None):
    """N_STEPS of clip + AdamW on the same batch. Returns (losses, grad norms before clipping)."""
    decay = {n: d for n, _, d in param_layout(c)}
    P = {n: p.clone() for n, p in P.items()}
    m = {n: torch.zeros_like(p) for n, p in P.items()}
    v = {n: torch.zeros_like(p) for n, p in P.items()}
    lr, b1, b2, eps, wd, clip = (f32(hp[k]) for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip"))
    losses, norms = [], []
    for t in range(1, N_STEPS + 1):
        _, loss, G = grads_of(c, P, batch, obj)
        losses.append(loss.item())
        norm = math.sqrt(sum((g * g).sum().item() for g in G.values()))
        norms.append(norm)
        scale = min(1.0, clip / (norm + 1e-6))
        for n in P:
            g = G[n] * scale
            if decay[n]:
                P[n] = P[n] - lr * wd * P[n]
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            mhat = m[n] / (1 - b1 ** t)
            vhat = v[n] / (1 - b2 ** t)
            P[n] = P[n] - lr * mhat / (torch.sqrt(vhat) + eps)
    return losses, norms


def train_torch(c, P, batch, hp, obj=None):
    """The same 10 steps with torch.optim.AdamW and clip_grad_norm_ (a self-check of train())."""
    decay = {n: d for n, _, d in param_layout(c)}
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in P.items()}
    lr, b1, b2, eps, wd, clip = (f32(hp[k]) for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip"))
    groups = [{"params": [leaves[n] for n in leaves if decay[n]], "weight_decay": wd},
              {"params": [leaves[n] for n in leaves if not decay[n]], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(b1, b2), eps=eps)
    losses = []
    for _ in range(N_STEPS):
        opt.zero_grad()
        _, loss = forward(c, leaves, batch, obj)
        loss.backward()
        losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(list(leaves.values()), clip)
        opt.step()
    return losses


# ----------------------------------------------------------------------------
# self-checks of the reference against naive formulas and torch's own ops

def close(a, b, what, tol=1e-12):
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), f"self-check {what}: max err {err}"


def self_check(c):
    g = torch.Generator().manual_seed(1234)
    eps = f32(c["norm_eps"])
    # LayerNorm (no affine) vs F.layer_norm, RMSNorm vs a per-row loop, GELU(tanh) and SiLU vs torch
    x = torch.randn(3, 5, 24, generator=g, dtype=DT) * 2 + 0.5
    close(layernorm(x, eps), Fn.layer_norm(x, (24,), eps=eps), "layernorm")
    w = torch.randn(24, generator=g, dtype=DT)
    ref = torch.empty_like(x)
    for i in range(3):
        for j in range(5):
            row = x[i, j]
            ref[i, j] = row / math.sqrt(sum(float(e) ** 2 for e in row) / 24 + eps) * w
    close(rmsnorm(x, w, eps), ref, "rmsnorm")
    close(gelu_tanh(x), Fn.gelu(x, approximate="tanh"), "gelu_tanh")
    close(silu(x), Fn.silu(x), "silu")
    # sinusoidal embedding vs the per-element formula (cos first)
    s = torch.tensor([0.0, 1.5, 731.25, 24.0], dtype=DT)
    e = freq_embedding(c, s)
    half = c["freq_dim"] // 2
    for i in range(4):
        for k in range(0, half, 7):
            f = math.exp(-math.log(10000.0) * k / half)
            assert abs(e[i, k].item() - math.cos(s[i].item() * f)) < 1e-12
            assert abs(e[i, half + k].item() - math.sin(s[i].item() * f)) < 1e-12
    # 3D RoPE vs complex multiplication (MUG-V's view_as_complex form) and vs a per-element loop
    T, H, W = 3, 6, 5
    pos = positions(c, T, H, W)
    Tp, Hp, Wp = grid(c, T, H, W)
    assert pos.shape[0] == Tp * Hp * Wp + 2
    assert pos[0].tolist() == [0, 0, 0] and pos[-1].tolist() == [Hp - 1, Wp - 1, min(Tp + 1, c["rope_max_t"] - 1)]
    j = 1 + 1 * Hp * Wp + 2 * Wp + 1                      # frame 1, row 2, column 1
    assert pos[j].tolist() == [2, 1, 2]
    nh, hd = 2, c["head_dim"]
    xq = torch.randn(pos.shape[0], nh, hd, generator=g, dtype=DT)
    ang = rope_angles(c, pos)
    out = rope(xq, torch.cos(ang), torch.sin(ang))
    cplx = torch.view_as_complex(xq.reshape(pos.shape[0], nh, hd // 2, 2).contiguous())
    rot = torch.polar(torch.ones_like(ang), ang)[:, None, :]
    close(out, torch.view_as_real(cplx * rot).flatten(-2), "rope complex")
    n6 = hd // 6
    ref = torch.empty_like(xq)
    for tok in range(pos.shape[0]):
        for h in range(nh):
            for sl in range(hd // 2):
                axis, k = sl // n6, sl % n6
                a = pos[tok, axis].item() * f32(c["rope_theta"]) ** (-6.0 * k / hd)
                x0, x1 = xq[tok, h, 2 * sl].item(), xq[tok, h, 2 * sl + 1].item()
                ref[tok, h, 2 * sl] = x0 * math.cos(a) - x1 * math.sin(a)
                ref[tok, h, 2 * sl + 1] = x1 * math.cos(a) + x0 * math.sin(a)
    close(out, ref, "rope loop")
    # packed attention vs a naive per-sample, per-head, per-query loop (self: Nq = Nk; cross: text)
    for cu_q, cu_k in (([0, 4, 11], [0, 4, 11]), ([0, 4, 11], [0, 5, 14])):
        hd = 6
        q = torch.randn(cu_q[-1], 2, hd, generator=g, dtype=DT)
        k = torch.randn(cu_k[-1], 2, hd, generator=g, dtype=DT)
        v = torch.randn(cu_k[-1], 2, hd, generator=g, dtype=DT)
        ref = torch.zeros_like(q)
        for b in range(2):
            for h in range(2):
                for i in range(cu_q[b], cu_q[b + 1]):
                    sc = [float(q[i, h] @ k[j, h]) / math.sqrt(hd) for j in range(cu_k[b], cu_k[b + 1])]
                    mx = max(sc)
                    ex = [math.exp(z - mx) for z in sc]
                    for jj, j in enumerate(range(cu_k[b], cu_k[b + 1])):
                        ref[i, h] += ex[jj] / sum(ex) * v[j, h]
        close(packed_attention(q, k, v, cu_q, cu_k), ref, "packed attention")
    # patch embedding vs Conv3d on the zero-padded latent; unpatchify vs the einops formula by loop;
    # patchify -> reorder (c,t,h,w) -> (t,h,w,c) -> unpatchify is the identity
    cc = dict(c, patch_t=2, patch_h=2, patch_w=3, out_channels=c["in_channels"])
    Cin, C = cc["in_channels"], 8
    pt, ph, pw = 2, 2, 3
    x = torch.randn(Cin, 3, 5, 4, generator=g, dtype=DT)
    Tp, Hp, Wp = grid(cc, 3, 5, 4)
    wconv = torch.randn(C, Cin, pt, ph, pw, generator=g, dtype=DT)
    bconv = torch.randn(C, generator=g, dtype=DT)
    xpad = Fn.pad(x, (0, Wp * pw - 4, 0, Hp * ph - 5, 0, Tp * pt - 3))
    conv = Fn.conv3d(xpad[None], wconv, bconv, stride=(pt, ph, pw))[0].flatten(1).t()
    close(patchify(cc, x) @ wconv.reshape(C, -1).t() + bconv, conv, "patch embed vs conv3d")
    Cout = cc["out_channels"]
    o = torch.randn(Tp * Hp * Wp, pt * ph * pw * Cout, generator=g, dtype=DT)
    ref = torch.zeros(Cout, Tp * pt, Hp * ph, Wp * pw, dtype=DT)
    for nt in range(Tp):
        for nhh in range(Hp):
            for nw in range(Wp):
                for a in range(pt):
                    for bb in range(ph):
                        for d in range(pw):
                            for co in range(Cout):
                                ref[co, nt * pt + a, nhh * ph + bb, nw * pw + d] = \
                                    o[(nt * Hp + nhh) * Wp + nw, ((a * ph + bb) * pw + d) * Cout + co]
    close(unpatchify(cc, o, 3, 5, 4), ref[:, :3, :5, :4], "unpatchify loop")
    pch = patchify(cc, x).reshape(-1, Cin, pt * ph * pw).transpose(1, 2).reshape(Tp * Hp * Wp, -1)
    close(unpatchify(cc, pch, 3, 5, 4), x, "patchify/unpatchify round trip", tol=0)
    # EDM: the preconditioning's identities (lambda c_out^2 = 1, c_in^2 (sigma^2 + sd^2) = 1, D = x0 when F
    # is its target), the schedule's ends, and Heun on a one-point data set (D(x) = x*, whose ODE solution
    # x* + sigma / sigma_0 (x_0 - x*) is linear in sigma, so every Heun step is exact)
    sd = f32(EDM["sigma_data"])
    for sigma in (0.002, 0.3, 1.7, 80.0):
        c_skip, c_out, c_in, c_noise, lam = edm_precond(sigma, sd)
        assert abs(lam * c_out * c_out - 1) < 1e-12 and abs(c_in * c_in * (sigma * sigma + sd * sd) - 1) < 1e-12
        assert abs(c_noise - math.log(sigma) / 4) < 1e-15
        x0 = torch.randn(5, generator=g, dtype=DT)
        x = x0 + sigma * torch.randn(5, generator=g, dtype=DT)
        close(c_skip * x + c_out * ((x0 - c_skip * x) / c_out), x0, "edm D = x0 at F's target")
    sig = edm_sigma_steps(EDM, 6)
    assert len(sig) == 7 and sig[-1] == 0.0 and all(a > b for a, b in zip(sig, sig[1:]))
    assert abs(sig[0] - f32(EDM["sigma_max"])) < 1e-12 * sig[0] and abs(sig[5] - f32(EDM["sigma_min"])) < 1e-12
    xstar = torch.randn(7, generator=g, dtype=DT)
    z0 = sig[0] * torch.randn(7, generator=g, dtype=DT)
    traj = heun(lambda zs, sigma: [xstar for _ in zs], [z0], sig, lambda z, k: z, len(sig) - 1)
    for i, zs in enumerate(traj):
        close(zs[0], xstar + sig[i + 1] / sig[0] * (z0 - xstar), f"heun step {i} on one point", tol=1e-12)


def check_packing(c, P, batch, obj=None):
    """Packing the samples into one batch changes nothing: each sample alone gives the same v_pred."""
    v_all, _ = forward(c, P, batch, obj)
    for b in range(len(batch["x0"])):
        one = {k: (v[b:b + 1] if torch.is_tensor(v) else v[b:b + 1]) for k, v in batch.items()}
        v_one, _ = forward(c, P, one, obj)
        close(v_one[0], v_all[b], f"packing sample {b}", tol=1e-12)


# ----------------------------------------------------------------------------
# the EDM sampler

def heun(denoise, zs, sig, pin, keep):
    """EDM's deterministic sampler (Algorithm 1 without churn) over noise levels sig (the last 0):
    d = (z - D(z; s_i)) / s_i, z' = z + (s_{i+1} - s_i) d, and unless s_{i+1} = 0 the correction
    z <- z + (s_{i+1} - s_i) (d + d') / 2 with d' at (z', s_{i+1}). denoise(zs, sigma) -> D per clip;
    pin(z, k) puts clip k's clean frames back after every update. Returns the clips after each of the
    first `keep` steps."""
    out = []
    for i in range(keep):
        s0, s1 = sig[i], sig[i + 1]
        d0 = [(z - d) / s0 for z, d in zip(zs, denoise(zs, s0))]
        z1 = [pin(z + (s1 - s0) * d, k) for k, (z, d) in enumerate(zip(zs, d0))]
        if s1 > 0:
            d1 = [(z - d) / s1 for z, d in zip(z1, denoise(z1, s1))]
            z1 = [pin(z + (s1 - s0) * 0.5 * (a + b), k) for k, (z, a, b) in enumerate(zip(zs, d0, d1))]
        zs = z1
        out.append(zs)
    return out


def edm_sample(c, P, obj, prompts, noise, null_text, steps, cfg, keep):
    """The trainer's EDM sampling of prompts (dicts: text, fps, mask, first frame or None): z = sigma_max
    noise, clean frames pinned, classifier-free guidance D = D_u + cfg (D_c - D_u) with the null caption,
    on the float32 noise levels of edm_sigma_steps. The network runs on x0 = z, eps = 0, so its input is
    c_in z (clean frames z / sd), and D = c_skip z + c_out F."""
    sig = [f32(x) for x in edm_sigma_steps(obj, steps)]
    sd, Cin = f32(obj["sigma_data"]), c["in_channels"]

    def pin(z, k):
        if prompts[k]["first"] is None:
            return z
        z = z.clone()
        z[:, 0] = prompts[k]["first"]
        return z

    def run(zs, sigma, texts):
        batch = dict(x0=zs, eps=[torch.zeros_like(z) for z in zs], text=texts, masks=[p["mask"] for p in prompts],
                     t=torch.full((len(zs),), sigma, dtype=DT), fps=torch.tensor([p["fps"] for p in prompts], dtype=DT))
        F, _ = forward(c, P, batch, obj)
        c_skip, c_out = edm_precond(sigma, sd)[:2]
        return [c_skip * z + c_out * f[:Cin] for z, f in zip(zs, F)]

    def denoise(zs, sigma):
        dc = run(zs, sigma, [p["text"] for p in prompts])
        if cfg == 1.0:
            return dc
        du = run(zs, sigma, [null_text for _ in prompts])
        return [u + cfg * (a - u) for a, u in zip(dc, du)]

    zs = [pin(sig[0] * n, k) for k, n in enumerate(noise)]
    return heun(denoise, zs, sig, pin, keep)


# ----------------------------------------------------------------------------
# output

def write_mgt(path, tensors):
    """llmc/formats/tensorfile.h format; tensors: list of (name, array) with float or int data."""
    with open(path, "wb") as f:
        f.write(struct.pack("<iii", 20251121, 1, len(tensors)))
        for name, a in tensors:
            a = np.asarray(a)
            if a.dtype.kind in "iub":
                dtype, a = 1, a.astype("<i4")
            else:
                dtype, a = 0, a.astype("<f4")
            nb = name.encode()
            f.write(struct.pack("<i", len(nb)) + nb)
            f.write(struct.pack("<ii", dtype, a.ndim))
            f.write(struct.pack("<%di" % a.ndim, *a.shape))
            f.write(np.ascontiguousarray(a).tobytes())


def r32(x):
    """Round to float32 and back: inputs are stored as float32, so the math starts from those values."""
    return x.float().to(DT)


def make_batch(c, gen, obj=None):
    """The batch of SAMPLES: x0 ~ N(0,1) latents, eps ~ N(0,1), t = shift(sigmoid(N(0,1))) with the given
    ratio (EDM: sigma = exp(p_mean + p_std N(0,1))), text features ~ N(0.3, 1.5^2) (a nonzero mean for the
    pre-norm to remove)."""
    Cin, Cy = c["in_channels"], c["caption_channels"]
    batch = dict(x0=[], eps=[], text=[], masks=[])
    ts = []
    for s in SAMPLES:
        batch["x0"].append(r32(torch.randn(Cin, s["T"], s["H"], s["W"], generator=gen, dtype=DT)))
        batch["eps"].append(r32(torch.randn(Cin, s["T"], s["H"], s["W"], generator=gen, dtype=DT)))
        batch["text"].append(r32(0.3 + 1.5 * torch.randn(s["text_len"], Cy, generator=gen, dtype=DT)))
        batch["masks"].append(None if s["mask"] is None else torch.tensor(s["mask"], dtype=torch.bool))
        if obj is None:
            u = torch.sigmoid(torch.randn(1, generator=gen, dtype=DT)).item()
            ts.append(SHIFT_RATIO * u / (1 + (SHIFT_RATIO - 1) * u))
        else:
            ts.append(math.exp(f32(obj["p_mean"]) + f32(obj["p_std"]) * torch.randn(1, generator=gen, dtype=DT).item()))
    batch["t"] = r32(torch.tensor(ts, dtype=DT))
    batch["fps"] = r32(torch.tensor([s["fps"] for s in SAMPLES], dtype=DT))
    return batch


def make(fname, c, seed, hp, obj=None):
    gen = torch.Generator().manual_seed(seed)
    P = init_params(c, gen)
    batch = make_batch(c, gen, obj)
    check_packing(c, P, batch, obj)

    v_pred, loss, G = grads_of(c, P, batch, obj)
    grad_norm = math.sqrt(sum((g * g).sum().item() for g in G.values()))
    losses, norms = train(c, P, batch, hp, obj)
    assert losses[0] == loss.item()
    assert norms[0] > hp["grad_clip"], "grad clipping must trigger at step 0"
    lt = train_torch(c, P, batch, hp, obj)
    assert max(abs(a - b) for a, b in zip(losses, lt)) < 1e-9 * max(losses), f"train vs torch AdamW: {losses} {lt}"
    # every parameter gets a gradient; output channels >= Cin do not (the loss reads the velocity only)
    for n, gr in G.items():
        assert gr.abs().sum() > 0, f"zero gradient for {n}"
    P_ = c["patch_t"] * c["patch_h"] * c["patch_w"]
    gw = G["final_layer.linear.weight"].reshape(P_, c["out_channels"], -1)
    assert gw[:, c["in_channels"]:].abs().sum() == 0 and gw[:, :c["in_channels"]].abs().sum() > 0

    cfg_i = [c[k] for k in ("d_model", "n_layer", "n_head", "head_dim", "ffn_hidden", "in_channels",
                            "out_channels", "caption_channels", "patch_t", "patch_h", "patch_w", "max_text_len",
                            "rope_max_t", "rope_max_hw", "freq_dim")] + [0, 0, 0]
    cfg_f = [c[k] for k in ("mlp_ratio", "norm_eps", "rope_theta", "freq_max_period")]
    tr = [hp[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip")]
    names = [n for n, _, _ in param_layout(c)]
    flat = lambda xs: torch.cat([x.reshape(-1) for x in xs]).numpy()
    masks = [torch.ones(s["T"], dtype=torch.int32) if m is None else m.to(torch.int32)
             for s, m in zip(SAMPLES, batch["masks"])]
    out = [("config", np.array(cfg_i, dtype=np.int32)), ("config_f", np.array(cfg_f, dtype=np.float32)),
           ("train", np.array(tr, dtype=np.float32)),
           ("shapes", np.array([[s["T"], s["H"], s["W"]] for s in SAMPLES], dtype=np.int32)),
           ("x0", flat(batch["x0"])), ("eps", flat(batch["eps"])),
           ("t", batch["t"].numpy()), ("fps", batch["fps"].numpy()),
           ("text", torch.cat(batch["text"], dim=0).numpy()),
           ("text_lens", np.array([s["text_len"] for s in SAMPLES], dtype=np.int32)),
           ("has_mask", np.array([0 if s["mask"] is None else 1 for s in SAMPLES], dtype=np.int32)),
           ("frame_mask", torch.cat(masks).numpy().astype(np.int32))]
    out += [(n, P[n].numpy()) for n in names]
    out += [("v_pred", flat(v_pred)), ("loss", np.array([loss.item()]))]
    out += [("grad." + n, G[n].numpy()) for n in names]
    out += [("grad_norm", np.array([grad_norm])), ("losses", np.array(losses))]
    if obj is not None:
        # the sampler from the same parameters: the batch's samples as prompts (sample 0 image-to-video with
        # its frame 0, sample 1 text-to-video), N(0,1) starting noise and a null caption of one token
        prompts = [dict(text=batch["text"][b], fps=batch["fps"][b].item(), mask=batch["masks"][b],
                        first=None if batch["masks"][b] is None else batch["x0"][b][:, 0])
                   for b in range(len(SAMPLES))]
        noise = [r32(torch.randn(x.shape, generator=gen, dtype=DT)) for x in batch["x0"]]
        null_text = r32(0.3 + 1.5 * torch.randn(1, c["caption_channels"], generator=gen, dtype=DT))
        traj = edm_sample(c, P, obj, prompts, noise, null_text, EDM_SAMPLE_STEPS, EDM_CFG, EDM_SAMPLE_KEEP)
        out += [("objective", np.array([1], dtype=np.int32)),
                ("edm", np.array([obj[k] for k in ("sigma_data", "p_mean", "p_std", "sigma_min", "sigma_max", "rho")],
                                 dtype=np.float32)),
                ("sampler", np.array([EDM_SAMPLE_STEPS, EDM_SAMPLE_KEEP, EDM_CFG], dtype=np.float32)),
                ("sample_noise", flat(noise)), ("null_text", null_text.numpy()),
                ("sample_z", np.stack([flat(zs) for zs in traj]))]
    path = os.path.join(OUT_DIR, fname)
    write_mgt(path, out)

    nparams = sum(p.numel() for p in P.values())
    print(f"{fname}: {nparams} params, B={len(SAMPLES)} shapes "
          + " ".join(f"{s['T']}x{s['H']}x{s['W']}" for s in SAMPLES)
          + f" t {' '.join(f'{x:.4f}' for x in batch['t'].tolist())} loss {loss.item():.6f} "
          f"grad_norm {grad_norm:.6f} ({os.path.getsize(path)} bytes)")
    print("  losses     " + " ".join(f"{x:.4f}" for x in losses))
    print("  grad norms " + " ".join(f"{x:.4f}" for x in norms))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objective", choices=("rf", "edm"), default="rf",
                    help="rf: test/data/dit_tiny.mgt; edm: test/data/dit_tiny_edm.mgt")
    args = ap.parse_args()
    self_check(TINY)
    print("self-checks passed")
    os.makedirs(OUT_DIR, exist_ok=True)
    if args.objective == "rf":
        make("dit_tiny.mgt", TINY, 2024, TRAIN)
    else:
        make("dit_tiny_edm.mgt", EDM_TINY, 2025, TRAIN, EDM)


if __name__ == "__main__":
    main()
