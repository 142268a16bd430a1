#!/usr/bin/python3
"""Reference for the mega.c GPT (Llama-family decoder): writes test/data/gpt_*.mgt.

gpt_sft.mgt is a packed SFT batch (llmc/data/sft_data.h's rows): several conversations a row,
positions restarting at each one (RoPE), attention inside each one, targets -100 (transformers'
ignore index) off the loss mask and on padding, the loss the mean over the targets that count;
its extra tensor is `positions` [B,T]. gpt_sft_rows.mgt is the unpacked layout (train_gpt --pack 0):
one conversation a row, padding after it, plain causal attention and positions 0..T-1 (the padding
is never attended to by a counted target), no `positions` tensor.

The model spec in code: docs/gpt.md, dev/DESIGN.md, llmc/model/gpt_config.h.
All math is float64 on the CPU; tensors are stored as float32 (int32 for ids).
Only torch 1.13-era APIs are used (Debian python3-torch), and every piece of
the model (RMSNorm, RoPE, QK-norm, GQA attention, SwiGLU, padded-vocab masked
cross-entropy, clipping, AdamW) is written out by hand.

Usage: /usr/bin/python3 dev/reference/gpt.py [FILE ...]   (from anywhere; writes into test/data/;
       FILE: only these, e.g. gpt_sft.mgt; default all)
"""
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)          # keep float64 reductions in one fixed order
DT = torch.float64
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO, "test", "data")
N_STEPS = 10


def f32(x):
    """The float32 value of a config float, as C++ holds it (GPTConfig fields are float)."""
    return float(np.float32(x))


# ----------------------------------------------------------------------------
# configs (fields as in GPTConfig, after gpt_config_finalize)

TINY = dict(vocab_size=512, padded_vocab_size=512, max_seq_len=64, n_layer=2, n_head=4,
            n_kv_head=2, d_model=128, head_dim=32, ffn_hidden=352, rope_theta=10000.0,
            rope_scaling=0, rope_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
            rope_original_ctx=8192, norm_eps=1e-5, tie_embeddings=1, qk_norm=0, qkv_bias=0)

GQA = dict(vocab_size=500, padded_vocab_size=512, max_seq_len=32, n_layer=2, n_head=4,
           n_kv_head=1, d_model=128, head_dim=48, ffn_hidden=256, rope_theta=10000.0,
           rope_scaling=1, rope_factor=4.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
           rope_original_ctx=16, norm_eps=1e-6, tie_embeddings=0, qk_norm=1, qkv_bias=1)

# the packed SFT batch: padded vocabulary, GQA, qk-norm and q/k/v bias, untied
SFT = dict(vocab_size=96, padded_vocab_size=128, max_seq_len=32, n_layer=2, n_head=4,
           n_kv_head=2, d_model=64, head_dim=16, ffn_hidden=128, rope_theta=10000.0,
           rope_scaling=0, rope_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
           rope_original_ctx=8192, norm_eps=1e-5, tie_embeddings=0, qk_norm=1, qkv_bias=1)
IGNORE = -100

TRAIN = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0)


def param_layout(c):
    """gpt_param_layout: list of (name, shape, decay) in file/buffer order."""
    L, C, hd, F, Vp = c["n_layer"], c["d_model"], c["head_dim"], c["ffn_hidden"], c["padded_vocab_size"]
    qd = c["n_head"] * hd
    QKV = qd + 2 * c["n_kv_head"] * hd
    t = [("wte", [Vp, C], False), ("attn_norm", [L, C], False), ("wqkv", [L, QKV, C], True)]
    if c["qkv_bias"]:
        t.append(("bqkv", [L, QKV], False))
    if c["qk_norm"]:
        t += [("q_norm", [L, hd], False), ("k_norm", [L, hd], False)]
    t += [("wo", [L, C, qd], True), ("mlp_norm", [L, C], False), ("wgateup", [L, 2 * F, C], True),
          ("wdown", [L, C, F], True), ("final_norm", [C], False)]
    if not c["tie_embeddings"]:
        t.append(("lm_head", [Vp, C], True))
    return t


# ----------------------------------------------------------------------------
# model pieces

def rope_inv_freq(c):
    """gpt_rope_inv_freq: theta^(-2i/hd) for i < hd/2, Llama 3.1 scaling when rope_scaling."""
    hd = c["head_dim"]
    theta, factor = f32(c["rope_theta"]), f32(c["rope_factor"])
    lo, hi, orig = f32(c["rope_low_freq_factor"]), f32(c["rope_high_freq_factor"]), c["rope_original_ctx"]
    out = []
    for i in range(hd // 2):
        inv = theta ** (-2.0 * i / hd)
        if c["rope_scaling"]:
            low_wl, high_wl = orig / lo, orig / hi
            wl = 2 * math.pi / inv
            if wl > low_wl:                      # long wavelengths: slowed down by factor
                inv = inv / factor
            elif wl >= high_wl:                  # band in between: smooth interpolation
                s = (orig / wl - lo) / (hi - lo)
                inv = (1 - s) * inv / factor + s * inv
        out.append(inv)
    return torch.tensor(out, dtype=DT)


def rmsnorm(x, w, eps):
    """y = x / sqrt(mean(x^2) + eps) * w over the last dimension."""
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    """Half rotation on x [..., T, hd] with cos/sin [..., T, hd/2] (broadcast): pairs (i, i + hd/2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(q, k, v, seg=None):
    """Causal GQA attention with explicit matmuls, no K/V copies.
    q [B,nh,T,hd], k/v [B,nkv,T,hd] -> y [B,nh,T,hd]; query head h reads kv head h // (nh/nkv).
    seg [B,T]: each token's document number in its row; a query sees only keys of its document."""
    B, nh, T, hd = q.shape
    nkv = k.shape[1]
    g = nh // nkv
    qg = q.reshape(B, nkv, g, T, hd)                    # head h = kv * g + j
    att = qg @ k.unsqueeze(2).transpose(-1, -2) / math.sqrt(hd)   # [B,nkv,g,T,T]
    allowed = torch.ones(T, T, dtype=torch.bool).tril().expand(B, T, T)
    if seg is not None:
        allowed = allowed & (seg[:, :, None] == seg[:, None, :])
    att = att.masked_fill(~allowed[:, None, None], float("-inf"))
    att = torch.softmax(att, dim=-1)
    y = att @ v.unsqueeze(2)                            # [B,nkv,g,T,hd]
    return y.reshape(B, nh, T, hd)


def cross_entropy(logits, targets, vocab_size):
    """Mean CE over the (B,T) whose target is not IGNORE; logits [B,T,Vp], columns >= vocab_size
    excluded from the softmax."""
    Vp = logits.shape[-1]
    pad = torch.arange(Vp) >= vocab_size
    z = logits.masked_fill(pad, float("-inf"))
    m = z.max(dim=-1, keepdim=True).values.detach()
    lse = m.squeeze(-1) + torch.log(torch.exp(z - m).sum(dim=-1))
    counts = targets != IGNORE
    zt = z.gather(-1, torch.where(counts, targets, torch.zeros_like(targets)).unsqueeze(-1)).squeeze(-1)
    return ((lse - zt) * counts).sum() / counts.sum()


def forward(c, P, tokens, targets, pos=None):
    """Returns (logits [B,T,Vp], mean loss). P: name -> float64 tensor in gpt_param_layout.
    pos [B,T] (None: t): documents packed in rows, each starting where pos is 0."""
    B, T = tokens.shape
    nh, nkv, hd, F, eps = c["n_head"], c["n_kv_head"], c["head_dim"], c["ffn_hidden"], f32(c["norm_eps"])
    qd, kvd = nh * hd, nkv * hd
    seg = None if pos is None else torch.cumsum((pos == 0).long(), dim=1)  # document number in the row
    p = torch.arange(T).expand(B, T) if pos is None else pos
    ang = p[..., None].to(DT) * rope_inv_freq(c)                           # [B,T,hd/2]
    cos, sin = torch.cos(ang)[:, None], torch.sin(ang)[:, None]            # [B,1,T,hd/2]

    x = P["wte"][tokens]                                                   # [B,T,C]
    for l in range(c["n_layer"]):
        h = rmsnorm(x, P["attn_norm"][l], eps)
        qkv = h @ P["wqkv"][l].t()                                         # [B,T,QKV]
        if c["qkv_bias"]:
            qkv = qkv + P["bqkv"][l]
        q = qkv[..., :qd].reshape(B, T, nh, hd).transpose(1, 2)            # [B,nh,T,hd]
        k = qkv[..., qd:qd + kvd].reshape(B, T, nkv, hd).transpose(1, 2)   # [B,nkv,T,hd]
        v = qkv[..., qd + kvd:].reshape(B, T, nkv, hd).transpose(1, 2)
        if c["qk_norm"]:
            q = rmsnorm(q, P["q_norm"][l], eps)
            k = rmsnorm(k, P["k_norm"][l], eps)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = attention(q, k, v, seg).transpose(1, 2).reshape(B, T, qd)      # heads concatenated
        x = x + y @ P["wo"][l].t()
        h = rmsnorm(x, P["mlp_norm"][l], eps)
        gu = h @ P["wgateup"][l].t()                                       # [B,T,2F]
        gate, up = gu[..., :F], gu[..., F:]
        a = gate * torch.sigmoid(gate) * up                                # silu(gate) * up
        x = x + a @ P["wdown"][l].t()
    h = rmsnorm(x, P["final_norm"], eps)
    head = P["wte"] if c["tie_embeddings"] else P["lm_head"]
    logits = h @ head.t()                                                  # [B,T,Vp]
    return logits, cross_entropy(logits, targets, c["vocab_size"])


# ----------------------------------------------------------------------------
# init, training

def init_params(c, gen):
    """Matrices N(0, 0.02) (wte rows >= vocab zero), norm weights 1 + 0.1 N, biases 0.02 N.
    Values are rounded to float32 so that the stored file is exactly the starting point."""
    P = {}
    for name, shape, _ in param_layout(c):
        r = torch.randn(shape, generator=gen, dtype=DT)
        if name in ("attn_norm", "mlp_norm", "final_norm", "q_norm", "k_norm"):
            p = 1.0 + 0.1 * r
        elif name == "bqkv":
            p = 0.02 * r
        else:
            p = 0.02 * r
            if name == "wte":
                p[c["vocab_size"]:] = 0
        P[name] = p.float().to(DT)
    return P


def grads_of(c, P, tokens, targets, pos=None):
    """(logits, loss, grads) of the mean loss by autograd."""
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in P.items()}
    logits, loss = forward(c, leaves, tokens, targets, pos)
    loss.backward()
    return logits.detach(), loss.detach(), {n: t.grad.detach() for n, t in leaves.items()}


def train(c, P, tokens, targets, hp, pos=None):
    """N_STEPS of clip + AdamW on the same batch. Returns (losses, grad norms before clipping)."""
    decay = {n: d for n, _, d in param_layout(c)}
    P = {n: p.clone() for n, p in P.items()}
    m = {n: torch.zeros_like(p) for n, p in P.items()}
    v = {n: torch.zeros_like(p) for n, p in P.items()}
    lr, b1, b2, eps, wd, clip = (hp[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip"))
    losses, norms = [], []
    for t in range(1, N_STEPS + 1):
        _, loss, G = grads_of(c, P, tokens, targets, pos)
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


# ----------------------------------------------------------------------------
# self-checks of the reference against naive formulas

def close(a, b, what, tol=1e-12):
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), f"self-check {what}: max err {err}"


def self_check():
    g = torch.Generator().manual_seed(1234)
    # RMSNorm vs a per-row loop
    x, w = torch.randn(3, 5, 24, generator=g, dtype=DT), torch.randn(24, generator=g, dtype=DT)
    ref = torch.empty_like(x)
    for i in range(3):
        for j in range(5):
            row = x[i, j]
            ref[i, j] = row / math.sqrt(sum(float(e) ** 2 for e in row) / 24 + 1e-5) * w
    close(rmsnorm(x, w, 1e-5), ref, "rmsnorm")
    # RoPE vs the DESIGN.md per-element formula
    cfg = dict(GQA)
    inv = rope_inv_freq(cfg)
    T, hd = 7, cfg["head_dim"]
    x = torch.randn(2, T, hd, generator=g, dtype=DT)
    ang = torch.arange(T, dtype=DT)[:, None] * inv[None, :]
    ref = torch.empty_like(x)
    for b in range(2):
        for t in range(T):
            for i in range(hd // 2):
                a = t * inv[i].item()
                c_, s_ = math.cos(a), math.sin(a)
                ref[b, t, i] = x[b, t, i] * c_ - x[b, t, i + hd // 2] * s_
                ref[b, t, i + hd // 2] = x[b, t, i + hd // 2] * c_ + x[b, t, i] * s_
    close(rope(x, torch.cos(ang), torch.sin(ang)), ref, "rope")
    # Llama 3.1 scaling vs HF's vectorized _compute_llama3_parameters
    base = cfg["rope_theta"] ** (-torch.arange(0, hd, 2, dtype=DT) / hd)
    wl = 2 * math.pi / base
    orig, lo, hi, fac = cfg["rope_original_ctx"], cfg["rope_low_freq_factor"], cfg["rope_high_freq_factor"], cfg["rope_factor"]
    hf = torch.where(wl > orig / lo, base / fac, base)
    s = (orig / wl - lo) / (hi - lo)
    smooth = (1 - s) * hf / fac + s * hf
    band = (wl >= orig / hi) & (wl <= orig / lo)
    hf = torch.where(band, smooth, hf)
    close(inv, hf, "rope_inv_freq")
    # GQA attention vs a naive per-head, per-query loop
    for nh, nkv in ((4, 2), (4, 1), (3, 3)):
        B, T, hd = 2, 6, 8
        q = torch.randn(B, nh, T, hd, generator=g, dtype=DT)
        k = torch.randn(B, nkv, T, hd, generator=g, dtype=DT)
        v = torch.randn(B, nkv, T, hd, generator=g, dtype=DT)
        ref = torch.zeros(B, nh, T, hd, dtype=DT)
        for b in range(B):
            for h in range(nh):
                kh = h // (nh // nkv)
                for t in range(T):
                    sc = [float(q[b, h, t] @ k[b, kh, u]) / math.sqrt(hd) for u in range(t + 1)]
                    mx = max(sc)
                    e = [math.exp(z - mx) for z in sc]
                    for u in range(t + 1):
                        ref[b, h, t] += e[u] / sum(e) * v[b, kh, u]
        close(attention(q, k, v), ref, f"attention nh={nh} nkv={nkv}")
    # masked cross-entropy vs F.cross_entropy on the unpadded columns
    logits = torch.randn(2, 3, 16, generator=g, dtype=DT)
    tg = torch.randint(0, 13, (2, 3), generator=g)
    ref = torch.nn.functional.cross_entropy(logits[..., :13].reshape(-1, 13), tg.reshape(-1))
    close(cross_entropy(logits, tg, 13), ref, "cross_entropy")
    tg[0, 1] = tg[1, 2] = IGNORE
    ref = torch.nn.functional.cross_entropy(logits[..., :13].reshape(-1, 13), tg.reshape(-1), ignore_index=IGNORE)
    close(cross_entropy(logits, tg, 13), ref, "cross_entropy with ignored targets")


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


def sft_rows(c, gen, rows, T):
    """A packed SFT batch laid out as llmc/data/sft_data.h does: rows = per row the token counts of
    its conversations. A conversation of n tokens (random ids; loss mask 1 on its second half, the
    "answer") gives n-1 positions: inputs tokens 0..n-2, targets 1..n-1 (IGNORE where the mask is
    0), positions 0..n-2; the rest of a row is padding (input 0, target IGNORE, positions from 0).
    Returns tokens, targets, positions [B,T] and the conversations (tokens, mask) for the self-check."""
    B = len(rows)
    x = torch.zeros(B, T, dtype=torch.long)
    y = torch.full((B, T), IGNORE, dtype=torch.long)
    pos = torch.zeros(B, T, dtype=torch.long)
    convs = []
    for b, lens in enumerate(rows):
        t = 0
        for n in lens:
            tok = torch.randint(0, c["vocab_size"], (n,), generator=gen)
            mask = torch.arange(n) >= n // 2
            x[b, t:t + n - 1] = tok[:-1]
            y[b, t:t + n - 1] = torch.where(mask[1:], tok[1:], torch.full_like(tok[1:], IGNORE))
            pos[b, t:t + n - 1] = torch.arange(n - 1)
            convs.append((b, t, n - 1))
            t += n - 1
        assert t <= T
        pos[b, t:] = torch.arange(T - t)
    return x, y, pos, convs


def check_packing(c, P, tokens, pos, convs):
    """Each conversation's logits in the packed batch equal its logits alone in a row of its own."""
    logits, _ = forward(c, P, tokens, torch.zeros_like(tokens), pos)
    for b, t, n in convs:
        alone, _ = forward(c, P, tokens[b:b + 1, t:t + n], torch.zeros(1, n, dtype=torch.long))
        close(logits[b:b + 1, t:t + n], alone, "packed conversation (row %d, from %d, %d positions) vs alone" % (b, t, n))


def make(fname, c, seed, B, T, hp, packed_rows=None, positions=True):
    gen = torch.Generator().manual_seed(seed)
    P = init_params(c, gen)
    pos = None
    if packed_rows is None:
        tokens = torch.randint(0, c["vocab_size"], (B, T), generator=gen)
        targets = torch.randint(0, c["vocab_size"], (B, T), generator=gen)
    else:
        tokens, targets, pos, convs = sft_rows(c, gen, packed_rows, T)
        if not positions:
            assert all(t == 0 for _, t, _ in convs), "without positions: one conversation a row, at its start"
            pos = None
        check_packing(c, P, tokens, pos, convs)

    logits, loss, G = grads_of(c, P, tokens, targets, pos)
    grad_norm = math.sqrt(sum((g * g).sum().item() for g in G.values()))
    losses, norms = train(c, P, tokens, targets, hp, pos)
    assert losses[0] == loss.item()
    assert norms[0] > hp["grad_clip"], "grad clipping must trigger at step 0"

    cfg_i = [c[k] for k in ("vocab_size", "padded_vocab_size", "max_seq_len", "n_layer", "n_head",
                            "n_kv_head", "d_model", "head_dim", "ffn_hidden", "tie_embeddings",
                            "qk_norm", "qkv_bias", "rope_scaling", "rope_original_ctx")]
    cfg_f = [c[k] for k in ("rope_theta", "norm_eps", "rope_factor", "rope_low_freq_factor",
                            "rope_high_freq_factor")]
    tr = [hp[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip")]
    names = [n for n, _, _ in param_layout(c)]
    out = [("config", np.array(cfg_i, dtype=np.int32)), ("config_f", np.array(cfg_f, dtype=np.float32)),
           ("train", np.array(tr, dtype=np.float32)),
           ("tokens", tokens.numpy().astype(np.int32)), ("targets", targets.numpy().astype(np.int32))]
    if pos is not None:
        out.append(("positions", pos.numpy().astype(np.int32)))
    out += [(n, P[n].numpy()) for n in names]
    out += [("logits", logits[..., :c["vocab_size"]].numpy()), ("loss", np.array([loss.item()]))]
    out += [("grad." + n, G[n].numpy()) for n in names]
    out += [("grad_norm", np.array([grad_norm])), ("losses", np.array(losses))]
    path = os.path.join(OUT_DIR, fname)
    write_mgt(path, out)

    print(f"{fname}: B={B} T={T} loss {loss.item():.6f} grad_norm {grad_norm:.6f} "
          f"grad_clip {hp['grad_clip']} ({os.path.getsize(path)} bytes)")
    print("  losses    " + " ".join(f"{x:.4f}" for x in losses))
    print("  grad norms " + " ".join(f"{x:.4f}" for x in norms))


def main():
    self_check()
    # the gqa config must change frequencies at its short lengths: some divided by factor, some
    # in the smoothed band (2*pi > original_ctx/high_freq_factor here, so none stays unchanged)
    inv, base = rope_inv_freq(GQA), rope_inv_freq(dict(GQA, rope_scaling=0))
    wl = 2 * math.pi / base
    smoothed = (wl >= GQA["rope_original_ctx"] / GQA["rope_high_freq_factor"]) & \
               (wl <= GQA["rope_original_ctx"] / GQA["rope_low_freq_factor"])
    assert (inv == base / GQA["rope_factor"]).any() and smoothed.any() and (inv[smoothed] != base[smoothed]).all()
    print(f"self-checks passed; gqa rope: {int((inv == base).sum())} unchanged, "
          f"{int(smoothed.sum())} smoothed, {int((inv == base / GQA['rope_factor']).sum())} divided by factor")
    os.makedirs(OUT_DIR, exist_ok=True)
    only = set(sys.argv[1:])
    if not only or "gpt_tiny.mgt" in only:
        make("gpt_tiny.mgt", TINY, 1337, 2, 64, TRAIN)
    if not only or "gpt_gqa.mgt" in only:
        make("gpt_gqa.mgt", GQA, 42, 2, 32, TRAIN)
    if not only or "gpt_sft.mgt" in only:
        # row 0: conversations of 7 and 10 tokens (6 + 9 positions) and 9 of padding; row 1: 12 and 13
        # tokens (11 + 12 positions) filling all 23 positions but the last (1 of padding)
        make("gpt_sft.mgt", SFT, 7, 2, 24, TRAIN, packed_rows=[[7, 10], [12, 13]])
    if not only or "gpt_sft_rows.mgt" in only:
        # one conversation a row (--pack 0): 10 tokens (9 positions, 15 of padding) and 13 (12, 12)
        make("gpt_sft_rows.mgt", SFT, 11, 2, 24, TRAIN, packed_rows=[[10], [13]], positions=False)


if __name__ == "__main__":
    main()
