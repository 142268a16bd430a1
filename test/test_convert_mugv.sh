#!/usr/bin/env bash
# scripts/convert_mugv.py on a random-initialized DiT state dict with MUG-V's
# names (the tiny config of test/data/dit_tiny.mgt; made here by a skeleton of
# MUG-V's module tree, so the names are the ones PyTorch gives MUGDiT's
# modules): to-mega, then test/test_convert_mugv reads the model.bin through
# llmc/train/checkpoint.h and the fp32 CPU reference dev/cpu/dit.cpp must give the
# v_pred and loss that dev/reference/dit.py computes (float64) from the state
# dict on fixed inputs (rel. error <= 1e-5). Then model.bin -> safetensors
# (MUG-V names) -> model.bin is bit-identical (fp32 and bf16), the pure-Python
# XXH64 agrees with llmc/train/checkpoint.h's, and a missing, mis-shaped or extra
# tensor, a corrupted model.bin and a safetensors file whose header length is one
# byte short or that has trailing bytes end with exit 1 and one stderr line.
# Prints SKIP when no python3 with torch and numpy is found (CI may not have
# them); PYTHON=... selects the interpreter (then only that one is tried:
# PYTHON=a-python-without-torch shows the SKIP).
set -u
cd "$(dirname "$0")/.."

. test/test_lib.sh   # test_begin, ok/bad, test_python, latest_step, wait_line
test_begin convert_mugv
test_python convert_mugv "torch, numpy"   # sets PY, or SKIP
if [ ! -x test/test_convert_mugv ]; then
    echo "FAIL convert_mugv/setup: test/test_convert_mugv is not built (make test/test_convert_mugv)"
    exit 1
fi
CONV="scripts/convert_mugv.py"

# ---- the MUG-V state dict, the inputs and dit.py's outputs, the bad variants
"$PY" - "$T" <<'EOF' > "$T/setup.log" 2>&1 || { echo "FAIL convert_mugv/setup: making the state dict failed: $(tail -3 "$T/setup.log")"; exit 1; }
import math, os, sys
import numpy as np, torch, torch.nn as nn
sys.path.insert(0, "dev/reference")
import dit  # the reference model (float64); its TINY config is the one of test/data/dit_tiny.mgt
d = sys.argv[1]
c = dit.TINY
C, L, nh, hd, F = c["d_model"], c["n_layer"], c["n_head"], c["head_dim"], c["ffn_hidden"]
Cin, Cout, Cy, Fq = c["in_channels"], c["out_channels"], c["caption_channels"], c["freq_dim"]
patch = (c["patch_t"], c["patch_h"], c["patch_w"])

# A skeleton of MUG-V's MUGDiT (mug_v/dit/model.py, module.py): the same module tree and parameters,
# no forward. Its state_dict() names are what PyTorch names MUG-V's modules.
class RMSNorm(nn.Module):
    def __init__(self, n): super().__init__(); self.weight = nn.Parameter(torch.ones(n))
class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C); self.q_norm = RMSNorm(hd); self.k_norm = RMSNorm(hd); self.proj = nn.Linear(C, C)
class CrossAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_linear = nn.Linear(C, C); self.kv_linear = nn.Linear(C, 2 * C)
        self.q_norm = RMSNorm(hd); self.k_norm = RMSNorm(hd); self.proj = nn.Linear(C, C)
class MLP(nn.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.fc1 = nn.Linear(i, h); self.act = nn.GELU(approximate="tanh"); self.fc2 = nn.Linear(h, o)
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(C, eps=1e-6, elementwise_affine=False)
        self.attn = Attention()
        self.cross_attn_norm = nn.LayerNorm(C, eps=1e-6, elementwise_affine=True)
        self.cross_attn = CrossAttention()
        self.mlp = MLP(C, F, C)
        self.scale_shift_table = nn.Parameter(torch.randn(6, C) / C ** 0.5)
class TimestepEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(Fq, C), nn.SiLU(), nn.Linear(C, C))
class PatchEmbed3D(nn.Module):
    def __init__(self): super().__init__(); self.proj = nn.Conv3d(Cin, C, kernel_size=patch, stride=patch)
class TextEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.y_proj = MLP(Cy, C, C)
        self.pre_norm = nn.LayerNorm(Cy, eps=1e-6, elementwise_affine=False)
        self.post_norm = nn.LayerNorm(C, eps=1e-6, elementwise_affine=False)
class FinalLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm_final = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(C, int(np.prod(patch)) * Cout)
        self.scale_shift_table = nn.Parameter(torch.randn(2, C) / C ** 0.5)
class MUGDiT(nn.Module):
    def __init__(self):
        super().__init__()
        self.x_embedder = PatchEmbed3D()
        self.t_embedder = TimestepEmbedder()
        self.fps_embedder = TimestepEmbedder()
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        self.y_embedder = TextEmbedder()
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.start_token = nn.Parameter(torch.empty(C))
        self.end_token = nn.Parameter(torch.empty(C))
        self.final_layer = FinalLayer()

# random init (as dit.py's init_params: every value random, so any mix-up shows), float32
g = torch.Generator().manual_seed(4242)
sd = MUGDiT().state_dict()
for n, p in sd.items():
    r = torch.randn(p.shape, generator=g, dtype=torch.float64)
    if n.endswith("norm.weight"): v = 1.0 + 0.1 * r
    elif n.endswith(".bias"): v = 0.1 * r
    elif "scale_shift_table" in n: v = r / math.sqrt(C)
    elif n in ("start_token", "end_token"): v = 0.02 * r
    else: v = r / math.sqrt(p[0].numel())
    sd[n] = v.float()
torch.save(sd, d + "/mugv_tiny.pt")

# dit.py's parameters from the state dict: blocks.{i}.X stacked into blocks.X; the Conv3d weight
# [C, Cin, pt, ph, pw] flattened row-major (dit.py's self_check: patchify @ w.reshape(C, -1).T == conv3d)
P = {}
for name, shape, _ in dit.param_layout(c):
    if name.startswith("blocks."):
        P[name] = torch.stack([sd["blocks.%d.%s" % (i, name[7:])] for i in range(L)]).to(torch.float64)
    else:
        P[name] = sd[name].reshape(shape).to(torch.float64)
    assert list(P[name].shape) == shape, name
batch = dit.make_batch(c, torch.Generator().manual_seed(77))
v_pred, loss = dit.forward(c, P, batch)
cfg_i = [c[k] for k in ("d_model", "n_layer", "n_head", "head_dim", "ffn_hidden", "in_channels", "out_channels",
                        "caption_channels", "patch_t", "patch_h", "patch_w", "max_text_len", "rope_max_t", "rope_max_hw",
                        "freq_dim")] + [0, 0, 0]
cfg_f = [c[k] for k in ("mlp_ratio", "norm_eps", "rope_theta", "freq_max_period")]
flat = lambda xs: torch.cat([x.reshape(-1) for x in xs]).numpy()
masks = [torch.ones(s["T"], dtype=torch.int32) if m is None else m.to(torch.int32) for s, m in zip(dit.SAMPLES, batch["masks"])]
dit.write_mgt(d + "/ref.mgt", [
    ("config", np.array(cfg_i, dtype=np.int32)), ("config_f", np.array(cfg_f, dtype=np.float32)),
    ("shapes", np.array([[s["T"], s["H"], s["W"]] for s in dit.SAMPLES], dtype=np.int32)),
    ("x0", flat(batch["x0"])), ("eps", flat(batch["eps"])), ("t", batch["t"].numpy()), ("fps", batch["fps"].numpy()),
    ("text", torch.cat(batch["text"], dim=0).numpy()),
    ("text_lens", np.array([s["text_len"] for s in dit.SAMPLES], dtype=np.int32)),
    ("has_mask", np.array([0 if s["mask"] is None else 1 for s in dit.SAMPLES], dtype=np.int32)),
    ("frame_mask", torch.cat(masks).numpy().astype(np.int32)),
    ("v_pred", flat(v_pred)), ("loss", np.array([loss.item()]))])
print("state dict: %d tensors, %d params; dit.py loss %.7f" % (len(sd), sum(p.numel() for p in sd.values()), loss.item()))

# bad variants: a missing tensor, a wrong shape, an extra tensor, a non-tensor entry, a wrapper
bad = dict(sd); del bad["blocks.1.cross_attn.k_norm.weight"]; torch.save(bad, d + "/missing.pt")
bad = dict(sd); bad["blocks.0.mlp.fc2.bias"] = torch.zeros(C + 1); torch.save(bad, d + "/shape.pt")
bad = dict(sd); bad["blocks.0.attn.rope_freqs"] = torch.zeros(36); torch.save(bad, d + "/extra.pt")
bad = dict(sd); bad["epoch"] = 3; torch.save(bad, d + "/notensor.pt")
torch.save({"model": {"module." + k: v.to(torch.bfloat16) for k, v in sd.items()}}, d + "/wrapped_bf16.pt")
# bytes for the XXH64 comparison with llmc/train/checkpoint.h
open(d + "/bytes.bin", "wb").write(np.random.RandomState(5).randint(0, 256, 4099).astype(np.uint8).tobytes())
EOF
ok "setup: $(tail -1 "$T/setup.log")"

# ---- to-mega, then the C++ side: config, checksums, forward vs dit.py
if "$PY" $CONV to-mega "$T/mugv_tiny.pt" "$T/mega/model.bin" --rope-max-t 4 > "$T/to_mega.log" 2>&1; then
    ok "to_mega: $(head -1 "$T/to_mega.log")"
else
    ko "to_mega: exit $?: $(tail -2 "$T/to_mega.log")"
fi
if "$PY" $CONV to-safetensors "$T/mega/model.bin" "$T/mugv.safetensors" > "$T/to_st.log" 2>&1; then
    ok "to_safetensors: $(cat "$T/to_st.log")"
else
    ko "to_safetensors: exit $?: $(tail -2 "$T/to_st.log")"
fi
./test/test_convert_mugv "$T/mega/model.bin" "$T/ref.mgt" "$T/mugv.safetensors" > "$T/cpp.log" 2>&1
rc=$?
grep -E '^(PASS|FAIL)' "$T/cpp.log"
pass=$((pass + $(grep -c '^PASS' "$T/cpp.log"))); fail=$((fail + $(grep -c '^FAIL' "$T/cpp.log")))
if [ $rc -ne 0 ] && ! grep -q '^FAIL' "$T/cpp.log"; then ko "cpu_reference: test_convert_mugv exited $rc: $(tail -2 "$T/cpp.log")"; fi

# ---- round trips: model.bin -> safetensors -> model.bin bit-identical (fp32; bf16)
if "$PY" $CONV to-mega "$T/mugv.safetensors" "$T/rt/model.bin" > "$T/rt.log" 2>&1 && cmp -s "$T/mega/model.bin" "$T/rt/model.bin"; then
    ok "roundtrip_fp32: model.bin -> safetensors -> model.bin bit-identical ($(stat -c %s "$T/rt/model.bin") bytes; config from the metadata, no flags)"
else
    ko "roundtrip_fp32: $(tail -2 "$T/rt.log") $(cmp "$T/mega/model.bin" "$T/rt/model.bin" 2>&1)"
fi
if "$PY" $CONV to-mega "$T/mugv_tiny.pt" "$T/bf16/model.bin" --rope-max-t 4 --dtype bf16 > "$T/bf16.log" 2>&1 &&
   "$PY" $CONV to-safetensors "$T/bf16/model.bin" "$T/bf16.safetensors" >> "$T/bf16.log" 2>&1 &&
   "$PY" $CONV to-mega "$T/bf16.safetensors" "$T/bf16_rt/model.bin" >> "$T/bf16.log" 2>&1 &&
   cmp -s "$T/bf16/model.bin" "$T/bf16_rt/model.bin"; then
    ok "roundtrip_bf16: bf16 model.bin -> BF16 safetensors -> model.bin (--dtype auto) bit-identical"
else
    ko "roundtrip_bf16: $(tail -2 "$T/bf16.log")"
fi
# a wrapped ({'model': ...}), 'module.'-prefixed bf16 state dict converts by default (auto) to the bf16 model.bin
if "$PY" $CONV to-mega "$T/wrapped_bf16.pt" "$T/wrapped/model.bin" --rope-max-t 4 > "$T/wrapped.log" 2>&1 &&
   cmp -s "$T/bf16/model.bin" "$T/wrapped/model.bin"; then
    ok "wrapped_bf16_state_dict: {'model': {'module.'+name: bf16}} gives the same bf16 model.bin"
else
    ko "wrapped_bf16_state_dict: $(tail -2 "$T/wrapped.log")"
fi
# the pure-Python XXH64 path (forced) writes the same file
if "$PY" $CONV to-mega "$T/mugv_tiny.pt" "$T/pure/model.bin" --rope-max-t 4 --pure-python-xxh64 > "$T/pure.log" 2>&1 &&
   cmp -s "$T/mega/model.bin" "$T/pure/model.bin"; then
    ok "pure_python_xxh64_file: same model.bin"
else
    ko "pure_python_xxh64_file: $(tail -2 "$T/pure.log")"
fi
lens="0 1 3 4 7 8 9 15 16 31 32 33 35 36 40 63 64 65 100 1023 1024 4099"
if ./test/test_convert_mugv --xxh64 "$T/bytes.bin" $lens > "$T/xxh_c.txt" 2>&1 &&
   "$PY" - "$T/bytes.bin" $lens > "$T/xxh_py.txt" 2>&1 <<'EOF' && cmp -s "$T/xxh_c.txt" "$T/xxh_py.txt"; then
import sys
sys.path.insert(0, "scripts")
import numpy
import convert_mugv as cm
cm.np = numpy
data = open(sys.argv[1], "rb").read()
for n in map(int, sys.argv[2:]):
    h = cm.PyXXH64()
    h.update(data[:n // 3]); h.update(data[n // 3:n // 2]); h.update(data[n // 2:n])  # streaming in pieces
    assert h.intdigest() == cm.xxh64(data[:n], pure=True)
    print("%d %016x" % (n, h.intdigest()))
EOF
    ok "pure_python_xxh64: equals llmc/train/checkpoint.h's xxh64 on $(echo $lens | wc -w) lengths 0..4099 (streamed in pieces)"
else
    ko "pure_python_xxh64: $(diff "$T/xxh_c.txt" "$T/xxh_py.txt" | head -3)"
fi
if "$PY" $CONV check "$T/mugv_tiny.pt" > "$T/check.log" 2>&1 && grep -q "C 144, 2 layers, 2 heads x 72, F 576, Cin 4, Cout 8, Cy 32, patch 1x2x2" "$T/check.log"; then
    ok "check: $(head -1 "$T/check.log" | sed 's|.*: MUG-V|MUG-V|')"
else
    ko "check: $(tail -2 "$T/check.log")"
fi

# ---- bad inputs: exit 1, one line
expect() { local name=$1 pattern=$2; shift 2; expect_one_line "bad_$name" "$pattern" "$PY" $CONV "$@"; }   # NAME PATTERN ARGS...
expect missing_tensor "missing tensor blocks.1.cross_attn.k_norm.weight \[72\]" to-mega "$T/missing.pt" "$T/bad/model.bin"
expect wrong_shape "tensor blocks.0.mlp.fc2.bias has shape \[145\], expected \[144\]" to-mega "$T/shape.pt" "$T/bad/model.bin"
expect extra_tensor "unexpected tensor blocks.0.attn.rope_freqs" to-mega "$T/extra.pt" "$T/bad/model.bin"
expect not_a_tensor "entry 'epoch' of type int" to-mega "$T/notensor.pt" "$T/bad/model.bin"
expect missing_file "does not exist" to-mega "$T/nope.pt" "$T/bad/model.bin"
expect config_flag "config rope_max_t: must be > 0" to-mega "$T/mugv_tiny.pt" "$T/bad/model.bin" --rope-max-t 0
expect check_missing "missing tensor" check "$T/missing.pt"
# safetensors whose header does not tile the data exactly (the reference library refuses them too)
"$PY" - "$T" <<'EOF'
import struct, sys
d = sys.argv[1]
b = open(d + "/mugv.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
open(d + "/st_trailing.safetensors", "wb").write(b + b"\0")
open(d + "/st_hlen_short.safetensors", "wb").write(struct.pack("<Q", n - 1) + b[8:])
EOF
expect st_trailing_bytes "the tensors cover [0-9]* bytes of data, but [0-9]* follow" check "$T/st_trailing.safetensors"
expect st_header_len_short "st_hlen_short.safetensors: the tensors cover [0-9]* bytes of data, but [0-9]* follow the" to-mega "$T/st_hlen_short.safetensors" "$T/bad/model.bin"
cp "$T/mega/model.bin" "$T/corrupt.bin"
printf '\x01' | dd of="$T/corrupt.bin" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect corrupt_payload "payload checksum" to-safetensors "$T/corrupt.bin" "$T/bad/x.safetensors"
expect mega_file_as_input "mega.c checkpoint file" to-mega "$T/mega/model.bin" "$T/bad/model.bin"
[ ! -e "$T/bad" ] || [ -z "$(ls -A "$T/bad")" ] && ok "no_partial_files: failed runs left no file behind (no model.bin, no .tmp)" \
    || ko "no_partial_files: $(ls -A "$T/bad")"

echo "convert_mugv: $pass passed, $fail failed"
[ $fail -eq 0 ]
