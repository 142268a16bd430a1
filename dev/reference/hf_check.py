#!/usr/bin/env python3
"""Checks a train_gpt --export-hf directory with transformers (scripts/check_hf.sh runs it).

  hf_check.py --original DIR --export DIR --fixture FILE.mgt [--export-tol X]
              [--train-gpt-log LOG --loss-tol X]
      the export loads with AutoModelForCausalLM with no missing, unexpected or mismatched tensors;
      its config has the original's shape; the original's tokenizer.json came along; its fp32
      logits on the fixture's tokens match the original's (rel err <= --export-tol: 1e-6 for an
      fp32 export of the same weights, a few 1e-2 for bf16); the original still gives the
      fixture's logits (this transformers vs the one that made them); and train_gpt's
      `eval: loss` (--eval-tokens) on those tokens matches transformers' loss (--loss-tol)
      [--sharded] the export is sharded as save_pretrained shards: model.safetensors.index.json
      and no model.safetensors; shards model-0000k-of-0000N.safetensors (N > 1), each holding
      exactly the tensors weight_map gives it, "format": "pt"; total_size the sum of their bytes
      [--same-as DIR] the export's weights equal DIR's (another export) bit for bit
  hf_check.py --original DIR --export DIR --val-shard FILE.bin --seq-len T --n-seqs N
              --train-gpt-log LOG --loss-tol X --min-gain G
      after a fine-tune: transformers' loss of the export on the first N sequences of the llm.c
      shard matches train_gpt's last `val loss` line (--loss-tol) and is lower than the
      original's by at least G nats (the export holds the trained weights)
Prints PASS/FAIL lines; exits 1 if anything failed.
"""
import argparse
import json
import os
import re
import struct
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM

failed = 0


def check(ok, name, detail):
    global failed
    print("%s hf_check/%s: %s" % ("PASS" if ok else "FAIL", name, detail))
    failed += 0 if ok else 1


def read_mgt(path):
    """llmc/formats/tensorfile.h"""
    out = {}
    with open(path, "rb") as f:
        magic, version, n = struct.unpack("<iii", f.read(12))
        assert magic == 20251121 and version == 1, path
        for _ in range(n):
            (ln,) = struct.unpack("<i", f.read(4))
            name = f.read(ln).decode()
            dt, nd = struct.unpack("<ii", f.read(8))
            shape = struct.unpack("<%di" % nd, f.read(4 * nd))
            cnt = int(np.prod(shape)) if nd else 1
            out[name] = np.frombuffer(f.read(4 * cnt), dtype="<f4" if dt == 0 else "<i4").reshape(shape)
    return out


def load(path):
    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    model.eval()
    return model, info


def logits_of(model, x):
    with torch.no_grad():
        return model(input_ids=torch.tensor(np.array(x), dtype=torch.long)).logits.float()


def ce(logits, y):
    return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.tensor(np.array(y), dtype=torch.long).reshape(-1)))


def rel(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def last_match(log, pattern):
    m = re.findall(pattern, open(log, encoding="utf-8", errors="replace").read())
    return float(m[-1]) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--original", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--fixture")
    ap.add_argument("--export-tol", type=float, default=1e-6)
    ap.add_argument("--train-gpt-log")
    ap.add_argument("--loss-tol", type=float, default=2e-2)
    ap.add_argument("--val-shard")
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--n-seqs", type=int, default=16)
    ap.add_argument("--min-gain", type=float, default=0.05)
    ap.add_argument("--sharded", action="store_true")
    ap.add_argument("--same-as")
    a = ap.parse_args()
    tag = os.path.basename(os.path.normpath(a.export))

    orig, _ = load(a.original)
    exp, info = load(a.export)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and len(v)}
    check(not bad, tag + "/loads_cleanly", "transformers loads the export as %s with no missing/unexpected/mismatched tensors%s" %
          (type(exp).__name__, "" if not bad else ": %s" % bad))
    co, ce_ = AutoConfig.from_pretrained(a.original), AutoConfig.from_pretrained(a.export)
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "head_dim", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings"]
    def field(c, k):  # head_dim: Qwen2 configs may leave it out (hidden_size / heads)
        v = getattr(c, k, None)
        return c.hidden_size // c.num_attention_heads if k == "head_dim" and v is None else v
    diff = [k for k in keys if field(co, k) != field(ce_, k)]
    def rp(c):  # transformers 4: rope_theta + rope_scaling; 5: rope_parameters holding rope_theta
        v4 = getattr(c, "rope_theta", None) is not None
        d = dict((getattr(c, "rope_scaling", None) if v4 else getattr(c, "rope_parameters", None)) or {})
        out = {"rope_theta": c.rope_theta if v4 else d.get("rope_theta"), "rope_type": d.get("rope_type", d.get("type", "default"))}
        for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if out["rope_type"] != "default":
                out[k] = d.get(k)
        return out
    check(not diff and rp(co) == rp(ce_), tag + "/config", "export config matches the original (%s, rope %s)%s" %
          (", ".join(keys), rp(ce_), "" if not diff else ": differs in %s" % diff))
    if a.sharded:
        from safetensors import safe_open
        ix = os.path.join(a.export, "model.safetensors.index.json")
        why, wm, total = "", {}, 0
        if not os.path.exists(ix) or os.path.exists(os.path.join(a.export, "model.safetensors")):
            why = "expected model.safetensors.index.json and no model.safetensors"
        else:
            index = json.load(open(ix))
            wm = index["weight_map"]
            n = len(set(wm.values()))
            names = ["model-%05d-of-%05d.safetensors" % (k + 1, n) for k in range(n)]
            if n < 2 or sorted(set(wm.values())) != names:
                why = "weight_map names %s" % sorted(set(wm.values()))
            for fn in [] if why else names:
                with safe_open(os.path.join(a.export, fn), framework="pt") as sf:
                    keys = set(sf.keys())
                    if keys != {k for k, v in wm.items() if v == fn} or (sf.metadata() or {}).get("format") != "pt":
                        why = why or "%s holds %s, metadata %s" % (fn, sorted(keys), sf.metadata())
                    for k in keys:
                        t = sf.get_tensor(k)
                        total += t.numel() * t.element_size()
            if not why and index["metadata"]["total_size"] != total:
                why = "total_size %s, the shards hold %d bytes" % (index["metadata"]["total_size"], total)
        check(not why, tag + "/sharded", "%d shards + model.safetensors.index.json, each of %d tensors in the shard it names, "
              "total_size %d%s" % (len(set(wm.values())), len(wm), total, "" if not why else ": " + why))
    if a.same_as:
        ref, _ = load(a.same_as)
        sd, rd = exp.state_dict(), ref.state_dict()
        diff = sorted(set(sd) ^ set(rd)) + [k for k in sd if k in rd and not torch.equal(sd[k], rd[k])]
        check(not diff, tag + "/same_weights", "every tensor bit-identical to %s's%s" %
              (os.path.basename(os.path.normpath(a.same_as)), "" if not diff else ": differ in %s" % diff[:5]))
    tj = os.path.join(a.original, "tokenizer.json")
    if os.path.exists(tj):
        same = os.path.exists(os.path.join(a.export, "tokenizer.json")) and \
            open(tj, "rb").read() == open(os.path.join(a.export, "tokenizer.json"), "rb").read()
        check(same, tag + "/tokenizer_copied", "tokenizer.json came along with the export")

    if a.fixture:
        f = read_mgt(a.fixture)
        x, y = f["tokens"], f["targets"]
        lo, le = logits_of(orig, x), logits_of(exp, x)
        e = rel(le, lo)
        check(e <= a.export_tol, tag + "/export_logits", "export vs original logits rel err %.3e (tol %.0e)" % (e, a.export_tol))
        ref = torch.from_numpy(f["logits"].copy())
        e1 = rel(le, ref)
        check(e1 <= max(a.export_tol, 1e-5), tag + "/export_vs_fixture", "export logits vs the fixture's (transformers that made it) rel err %.3e" % e1)
        e0 = rel(lo, ref)
        check(e0 <= 1e-5, tag + "/fixture_logits", "original vs the fixture's stored logits rel err %.3e (this transformers %s)" %
              (e0, __import__("transformers").__version__))
        if a.train_gpt_log:
            tl = last_match(a.train_gpt_log, r"eval: loss ([0-9.eE+-]+)")
            ref = ce(lo, y)
            ok = tl is not None and abs(tl - ref) / abs(ref) <= a.loss_tol
            check(ok, tag + "/train_gpt_loss", "train_gpt --eval-tokens loss %s vs transformers %.6f (rel tol %.0e)" %
                  ("missing" if tl is None else "%.6f" % tl, ref, a.loss_tol))
    if a.val_shard:
        T, n = a.seq_len, a.n_seqs
        hdr = np.fromfile(a.val_shard, dtype=np.int32, count=256)
        toks = np.fromfile(a.val_shard, dtype=np.uint16 if hdr[0] == 20240520 else np.uint32, offset=1024).astype(np.int64)
        n = min(n, (len(toks) - 1) // T)
        x = np.stack([toks[k * T:k * T + T] for k in range(n)])
        y = np.stack([toks[k * T + 1:k * T + T + 1] for k in range(n)])
        l_orig, l_exp = ce(logits_of(orig, x), y), ce(logits_of(exp, x), y)
        check(l_exp <= l_orig - a.min_gain, tag + "/finetune_gain", "transformers loss on %d val sequences: original %.4f -> export %.4f "
              "(must drop by >= %g)" % (n, l_orig, l_exp, a.min_gain))
        tl = last_match(a.train_gpt_log, r"val loss ([0-9.eE+-]+)")
        ok = tl is not None and abs(tl - l_exp) / l_exp <= a.loss_tol
        check(ok, tag + "/finetune_val_loss", "train_gpt's last val loss %s vs transformers on the export %.4f (rel tol %.0e)" %
              ("missing" if tl is None else "%.4f" % tl, l_exp, a.loss_tol))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
