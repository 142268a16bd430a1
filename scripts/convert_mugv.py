#!/usr/bin/env python3
"""
convert_mugv.py: MUG-V's DiT weights <-> mega.c's DiT checkpoint (model.bin).

  python3 scripts/convert_mugv.py to-mega dit.pt ckpt/mugv10b/model.bin [--dtype auto|fp32|bf16] [config flags]
  python3 scripts/convert_mugv.py to-safetensors ckpt/mugv10b/model.bin mugv10b.safetensors
  python3 scripts/convert_mugv.py check dit.pt          (or a .safetensors or a model.bin: validate, print the config)
  ./train_dit --preset 10B --init-from ckpt/mugv10b/model.bin ...   (model flags as printed by to-mega)

to-mega reads MUG-V's state dict (the released `dit.pt`, a plain state dict
for torch.load; a dict holding it under 'state_dict', 'model' or 'module' and
'module.' / '_orig_mod.' name prefixes are accepted too) or a .safetensors file
with MUG-V's names (what to-safetensors writes), infers the model config from
the tensor shapes (table below), checks that every tensor of that model is
there with its shape and that there is nothing else, and writes a mega.c
model.bin (format: llmc/train/checkpoint.h; kind 2 = dit, the 19 DiTConfig fields,
XXH64 checksums, tensors in dit_param_layout order). --dtype auto (default)
writes bfloat16 when every input tensor is bfloat16, else float32; bf16 values
are rounded to nearest even (exact when the input is bf16). to-safetensors
writes the inverse: MUG-V's names and shapes, the model.bin's dtype, and the
19 config fields as JSON in the metadata ("config"), which to-mega reads back,
so model.bin -> safetensors -> model.bin is bit-identical.

Mapping (mega.c's layout was chosen to be MUG-V's: no value is transposed,
split, merged or permuted; names are MUG-V's with the block index dropped):

  MUG-V state dict name                 MUG-V shape           mega.c model.bin tensor          mega.c shape
  x_embedder.proj.weight (Conv3d)       [C, Cin, pt, ph, pw]  x_embedder.proj.weight           [C, Cin*pt*ph*pw] (row-major
                                                                column ((ci*pt + tp)*ph + hp)*pw + wp: Conv3d's own flatten)
  x_embedder.proj.bias                  [C]                   x_embedder.proj.bias             [C]
  start_token, end_token                [C]                   start_token, end_token           [C]
  t_embedder.mlp.0.{weight,bias}        [C, Fq], [C]          same names                       same shapes
  t_embedder.mlp.2.{weight,bias}        [C, C], [C]           same                             same
  fps_embedder.mlp.{0,2}.{weight,bias}  as t_embedder         same                             same
  t_block.1.{weight,bias}               [6C, C], [6C]         same                             same
  y_embedder.y_proj.fc1.{weight,bias}   [C, Cy], [C]          same                             same
  y_embedder.y_proj.fc2.{weight,bias}   [C, C], [C]           same                             same
  blocks.{i}.X, i = 0..L-1              S                     blocks.X (layers stacked)        [L, *S]
  final_layer.scale_shift_table         [2, C]                same                             same
  final_layer.linear.{weight,bias}      [P*Cout, C], [P*Cout] same                             same
with the per-block X and S:
  scale_shift_table [6, C] (rows shift1 scale1 gate1 shift2 scale2 gate2)
  attn.qkv.weight [3C, C] (rows [3][nh][hd]), attn.qkv.bias [3C]
  attn.q_norm.weight [hd], attn.k_norm.weight [hd], attn.proj.weight [C, C], attn.proj.bias [C]
  cross_attn_norm.weight [C], cross_attn_norm.bias [C]
  cross_attn.q_linear.weight [C, C], .bias [C]; cross_attn.kv_linear.weight [2C, C] (rows [2][nh][hd]), .bias [2C]
  cross_attn.q_norm.weight [hd], cross_attn.k_norm.weight [hd], cross_attn.proj.weight [C, C], .bias [C]
  mlp.fc1.weight [F, C], mlp.fc1.bias [F], mlp.fc2.weight [C, F], mlp.fc2.bias [C]
The LayerNorms without affine (block norm, caption pre/post norm, final norm)
have no parameters in either; MUG-V's RoPE tables are not in its state dict.

Config inferred from the shapes:
  d_model C, in_channels Cin, patch_t/h/w   x_embedder.proj.weight [C, Cin, pt, ph, pw]
  n_layer L                                 blocks.0 .. blocks.{L-1}
  head_dim hd, n_head = C / hd              blocks.0.attn.q_norm.weight [hd]
  ffn_hidden F, mlp_ratio = F / C           blocks.0.mlp.fc1.weight [F, C]
  caption_channels Cy                       y_embedder.y_proj.fc1.weight [C, Cy]
  freq_dim Fq                               t_embedder.mlp.0.weight [C, Fq]
  out_channels Cout                         final_layer.linear.weight [P*Cout, C], P = pt*ph*pw
Not in the weights (flags; the defaults are MUG-V's, docs/dit.md):
  --max-text-len 300, --norm-eps 1e-6, --rope-theta 10000, --rope-max-t 480,
  --rope-max-hw 384, --freq-max-period 10000; --mlp-ratio overrides F / C.
From a .safetensors written by to-safetensors these come from its metadata.

Every bad input ends with one line 'error: ...' on stderr and exit code 1
(a missing, mis-shaped or unexpected tensor is named). Outputs are written to
OUT.tmp, fsync'ed and renamed, so a failed run leaves no partial file.

Needs numpy; torch only to read .pt files. Checksums use the `xxhash` package
when it is installed; without it a pure-Python XXH64 runs at about 20 MB/s:
instant for test models, but about half an hour per pass over the 10B model
(43 GB in fp32): `pip install xxhash` before converting it. Reading a .pt needs the whole state
dict in memory unless torch >= 2.1 (mmap); .safetensors inputs are memory-mapped.
"""
import argparse
import inspect
import json
import os
import re
import struct
import sys

MODEL_MAGIC = 20251210
STATE_MAGIC = 20251211
VERSION = 1
KIND_DIT = 2
HEADER_BYTES = 1024
CONFIG_AT = 16
DTYPE_CODES = {"fp32": 0, "bf16": 1}
CHUNK = 1 << 24  # bytes per streamed chunk

# the 19 dit config fields of a model.bin, in header order (llmc/train/checkpoint.h); True: float
CONFIG_FIELDS = [("d_model", False), ("n_layer", False), ("n_head", False), ("head_dim", False), ("mlp_ratio", True),
                 ("ffn_hidden", False), ("in_channels", False), ("out_channels", False), ("caption_channels", False),
                 ("patch_t", False), ("patch_h", False), ("patch_w", False), ("max_text_len", False), ("norm_eps", True),
                 ("rope_theta", True), ("rope_max_t", False), ("rope_max_hw", False), ("freq_dim", False),
                 ("freq_max_period", True)]
# fields that are not in the weights: their defaults (MUG-V's) and flags
NOT_INFERRED = {"max_text_len": 300, "norm_eps": 1e-6, "rope_theta": 10000.0, "rope_max_t": 480, "rope_max_hw": 384,
                "freq_max_period": 10000.0}

np = None  # numpy, imported by main() so that --help works without it
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from script_util import fail, open_tmp as _open_tmp  # noqa: E402  (one error line, temp files removed)


def f32(x):
    """The float32 value of x as a Python float (what a DiTConfig float field holds)."""
    return float(np.float32(x))


# ----------------------------------------------------------------------------
# XXH64 (seed 0): the `xxhash` package when present, else pure Python

M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                      0x27D4EB2F165667C5)


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _round(acc, x):
    acc = (acc + x * P2) & M64
    return (((acc << 31) | (acc >> 33)) & M64) * P1 & M64


class PyXXH64:
    """Streaming XXH64 with seed 0, the same as llmc/train/checkpoint.h's Xxh64."""

    def __init__(self):
        self.v = [(P1 + P2) & M64, P2, 0, (-P1) & M64]
        self.total = 0
        self.buf = b""

    def update(self, data):
        data = bytes(data)
        self.total += len(data)
        if self.buf:
            data = self.buf + data
        n = len(data) // 32 * 32
        self.buf = data[n:]
        if n == 0:
            return
        vals = np.frombuffer(data, dtype="<u8", count=n // 8).tolist()
        v = self.v
        for lane in range(4):
            a = v[lane]
            for x in vals[lane::4]:  # one lane's inputs are every 4th word
                a = (a + x * P2) & M64
                a = (((a << 31) | (a >> 33)) & M64) * P1 & M64
            v[lane] = a

    def intdigest(self):
        v = self.v
        if self.total >= 32:
            h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M64
            for a in v:
                h = ((h ^ _round(0, a)) * P1 + P4) & M64
        else:
            h = P5
        h = (h + self.total) & M64
        p = self.buf
        i = 0
        while len(p) - i >= 8:
            h = (_rotl(h ^ _round(0, struct.unpack_from("<Q", p, i)[0]), 27) * P1 + P4) & M64
            i += 8
        if len(p) - i >= 4:
            h = (_rotl(h ^ (struct.unpack_from("<I", p, i)[0] * P1 & M64), 23) * P2 + P3) & M64
            i += 4
        while i < len(p):
            h = (_rotl(h ^ (p[i] * P5 & M64), 11) * P1) & M64
            i += 1
        h ^= h >> 33
        h = h * P2 & M64
        h ^= h >> 29
        h = h * P3 & M64
        h ^= h >> 32
        return h


def new_hasher(nbytes=0, pure=False):
    """An XXH64 hasher; a note on stdout when a large payload is hashed in pure Python."""
    if not pure:
        try:
            import xxhash
            return xxhash.xxh64(seed=0)
        except ImportError:
            pass
        if nbytes > (1 << 30):
            print("note: the xxhash package is not installed: hashing %.1f GB in pure Python takes about %d minutes "
                  "(pip install xxhash)" % (nbytes / 1e9, max(1, nbytes // (20 << 20) // 60)), flush=True)
    return PyXXH64()


def xxh64(data, pure=False):
    h = new_hasher(len(data), pure)
    h.update(data)
    return h.intdigest()


# ----------------------------------------------------------------------------
# the parameter layout (llmc/model/dit_config.h dit_param_layout) and MUG-V's names

def mega_layout(c):
    """[(name, shape)] in model.bin order."""
    L, C, hd, F = c["n_layer"], c["d_model"], c["head_dim"], c["ffn_hidden"]
    P = c["patch_t"] * c["patch_h"] * c["patch_w"]
    t = [("x_embedder.proj.weight", [C, c["in_channels"] * P]), ("x_embedder.proj.bias", [C]),
         ("start_token", [C]), ("end_token", [C])]
    for e in ("t_embedder", "fps_embedder"):
        t += [(e + ".mlp.0.weight", [C, c["freq_dim"]]), (e + ".mlp.0.bias", [C]),
              (e + ".mlp.2.weight", [C, C]), (e + ".mlp.2.bias", [C])]
    t += [("t_block.1.weight", [6 * C, C]), ("t_block.1.bias", [6 * C]),
          ("y_embedder.y_proj.fc1.weight", [C, c["caption_channels"]]), ("y_embedder.y_proj.fc1.bias", [C]),
          ("y_embedder.y_proj.fc2.weight", [C, C]), ("y_embedder.y_proj.fc2.bias", [C])]
    blk = [("scale_shift_table", [6, C]), ("attn.qkv.weight", [3 * C, C]), ("attn.qkv.bias", [3 * C]),
           ("attn.q_norm.weight", [hd]), ("attn.k_norm.weight", [hd]), ("attn.proj.weight", [C, C]),
           ("attn.proj.bias", [C]), ("cross_attn_norm.weight", [C]), ("cross_attn_norm.bias", [C]),
           ("cross_attn.q_linear.weight", [C, C]), ("cross_attn.q_linear.bias", [C]),
           ("cross_attn.kv_linear.weight", [2 * C, C]), ("cross_attn.kv_linear.bias", [2 * C]),
           ("cross_attn.q_norm.weight", [hd]), ("cross_attn.k_norm.weight", [hd]),
           ("cross_attn.proj.weight", [C, C]), ("cross_attn.proj.bias", [C]),
           ("mlp.fc1.weight", [F, C]), ("mlp.fc1.bias", [F]), ("mlp.fc2.weight", [C, F]), ("mlp.fc2.bias", [C])]
    t += [("blocks." + n, [L] + s) for n, s in blk]
    t += [("final_layer.scale_shift_table", [2, C]), ("final_layer.linear.weight", [P * c["out_channels"], C]),
          ("final_layer.linear.bias", [P * c["out_channels"]])]
    return t


def mugv_tensors(c):
    """[(MUG-V name, MUG-V shape)] in model.bin payload order: mega.c tensor by tensor, a stacked
    blocks.X layer by layer. The bytes of these tensors back to back are exactly the payload."""
    out = []
    for name, shape in mega_layout(c):
        if name.startswith("blocks."):
            out += [("blocks.%d.%s" % (i, name[len("blocks."):]), shape[1:]) for i in range(c["n_layer"])]
        elif name == "x_embedder.proj.weight":
            out.append((name, [c["d_model"], c["in_channels"], c["patch_t"], c["patch_h"], c["patch_w"]]))
        else:
            out.append((name, shape))
    return out


def n_params(c):
    n = 0
    for _, s in mega_layout(c):
        k = 1
        for d in s:
            k *= d
        n += k
    return n


def f32s(x):
    """The shortest text that reads back as the same float32."""
    return str(np.float32(x))  # numpy prints float32 scalars with the shortest round-trip digits


def check_config(c, what):
    """dit_config_finalize's constraints (the derived fields already set)."""
    def bad(field, msg):
        fail("%s: config %s: %s" % (what, field, msg))
    for k in ("d_model", "n_layer", "n_head", "head_dim", "ffn_hidden", "in_channels", "caption_channels", "patch_t",
              "patch_h", "patch_w", "max_text_len", "rope_max_t", "rope_max_hw", "freq_dim"):
        if not c[k] > 0:
            bad(k, "must be > 0, got %d" % c[k])
    if c["head_dim"] % 6:
        bad("head_dim", "must be a multiple of 6 (3D RoPE), got %d" % c["head_dim"])
    if c["n_head"] * c["head_dim"] != c["d_model"]:
        bad("n_head", "%d heads x head_dim %d != d_model %d" % (c["n_head"], c["head_dim"], c["d_model"]))
    if c["out_channels"] < c["in_channels"]:
        bad("out_channels", "must be >= in_channels %d, got %d" % (c["in_channels"], c["out_channels"]))
    if c["freq_dim"] % 2:
        bad("freq_dim", "must be even, got %d" % c["freq_dim"])
    for k in ("mlp_ratio", "norm_eps", "rope_theta", "freq_max_period"):
        if not c[k] > 0:
            bad(k, "must be > 0, got %r" % c[k])


def config_str(c):
    return ("C %d, %d layers, %d heads x %d, F %d, Cin %d, Cout %d, Cy %d, patch %dx%dx%d, max_text_len %d, "
            "rope_max_t %d, rope_max_hw %d, freq_dim %d" %
            (c["d_model"], c["n_layer"], c["n_head"], c["head_dim"], c["ffn_hidden"], c["in_channels"],
             c["out_channels"], c["caption_channels"], c["patch_t"], c["patch_h"], c["patch_w"], c["max_text_len"],
             c["rope_max_t"], c["rope_max_hw"], c["freq_dim"]))


def train_dit_flags(c):
    """The model flags of train_dit that give this config (--init-from checks every field)."""
    fl = ["--d-model %d" % c["d_model"], "--n-layer %d" % c["n_layer"], "--n-head %d" % c["n_head"],
          "--in-channels %d" % c["in_channels"], "--out-channels %d" % c["out_channels"],
          "--caption-channels %d" % c["caption_channels"]]
    if c["ffn_hidden"] != int(c["d_model"] * c["mlp_ratio"]) or c["mlp_ratio"] != 4.0:
        fl += ["--mlp-ratio %s" % f32s(c["mlp_ratio"]), "--ffn-hidden %d" % c["ffn_hidden"]]
    if (c["patch_t"], c["patch_h"], c["patch_w"]) != (1, 2, 2):
        fl += ["--patch-t %d --patch-h %d --patch-w %d" % (c["patch_t"], c["patch_h"], c["patch_w"])]
    if c["freq_dim"] != 256:
        fl.append("--freq-dim %d" % c["freq_dim"])
    for k, v in NOT_INFERRED.items():
        if c[k] != (f32(v) if isinstance(v, float) else v):
            fl.append("--%s %s" % (k.replace("_", "-"), f32s(c[k]) if isinstance(v, float) else c[k]))
    return " ".join(fl)


# ----------------------------------------------------------------------------
# inputs: name -> Ref (shape, dtype, load() -> float32 numpy array)

class Ref:
    def __init__(self, shape, dtype, load):
        self.shape, self.dtype, self.load = list(shape), dtype, load


def import_torch():
    try:
        import torch
    except ImportError:
        fail("convert_mugv.py needs PyTorch to read .pt files (pip install torch), or give a .safetensors file")
    return torch


def read_torch(path):
    torch = import_torch()
    params = inspect.signature(torch.load).parameters
    kw = {"map_location": "cpu"}
    if "weights_only" in params:
        kw["weights_only"] = True  # a state dict needs no code execution
    obj = None
    if "mmap" in params:
        try:
            obj = torch.load(path, mmap=True, **kw)
        except Exception:  # legacy (non-zip) files cannot be mapped: load them whole
            obj = None
    if obj is None:
        try:
            obj = torch.load(path, **kw)
        except Exception as e:  # torch raises many kinds
            fail("%s: cannot load with torch.load (%s: %s)" % (path, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        inner = [k for k in ("state_dict", "model", "module") if isinstance(obj.get(k), dict)]
        if len(inner) != 1:
            odd = [k for k, v in obj.items() if not torch.is_tensor(v)][0]
            fail("%s: expected a state dict of tensors (or one under 'state_dict', 'model' or 'module'), found entry "
                 "'%s' of type %s" % (path, odd, type(obj[odd]).__name__))
        obj = obj[inner[0]]
    if not isinstance(obj, dict):
        fail("%s: expected a state dict (a dict of tensors), found %s" % (path, type(obj).__name__))
    for k, v in obj.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            fail("%s: expected a state dict of tensors, entry '%s' is %s" % (path, k, type(v).__name__))
    for prefix in ("module.", "_orig_mod."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64"}
    refs = {}
    for k, t in obj.items():
        dt = names.get(t.dtype, str(t.dtype).replace("torch.", ""))
        refs[k] = Ref(tuple(t.shape), dt, lambda t=t: t.detach().to(torch.float32).contiguous().numpy())
    return refs, {}


ST_SIZES = {"F32": 4, "BF16": 2, "F16": 2, "F64": 8}


def read_safetensors(path):
    """Pure-Python safetensors reader (validates the header like llmc/formats/safetensors.h and the reference
    library: the tensors tile the data section exactly); data memory-mapped."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            fail("%s: file is %d bytes, expected at least the 8-byte header length" % (path, size))
        n = struct.unpack("<Q", head)[0]
        if n > size - 8 or n > (100 << 20):
            fail("%s: header length %d is past the end of the file (%d bytes) or over 100 MiB" % (path, n, size))
        try:
            hdr = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            fail("%s: the header is not valid JSON (%s)" % (path, e))
    if not isinstance(hdr, dict):
        fail("%s: the header is not a JSON object" % path)
    meta = hdr.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        fail("%s: __metadata__ is not an object of strings" % path)
    start = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r") if size > start else np.zeros(0, np.uint8)
    refs, spans = {}, []
    for name, e in hdr.items():
        try:
            dt, shape, (b, en) = e["dtype"], list(e["shape"]), list(e["data_offsets"])
        except (TypeError, KeyError, ValueError):
            fail("%s: tensor %s: expected {dtype, shape, data_offsets: [begin, end]}" % (path, name))
        if not all(type(x) is int and x >= 0 for x in shape + [b, en]):
            fail("%s: tensor %s: shape %s and data_offsets [%s, %s] must be non-negative integers" % (path, name, shape, b, en))
        if not isinstance(dt, str) or dt not in ST_SIZES:
            fail("%s: tensor %s: dtype %s, expected a floating-point dtype (F32, BF16, F16, F64)" % (path, name, dt))
        k = 1
        for d in shape:
            k *= d
        if not b <= en <= size - start or en - b != k * ST_SIZES[dt]:
            fail("%s: tensor %s: data_offsets [%d, %d] do not hold %s %s inside the data section" % (path, name, b, en, dt, shape))
        spans.append((b, en, name))
    # the tensors, in offset order, tile the data section exactly (the reference library's rule): a
    # header length off by a byte, a gap, an overlap or trailing bytes would read tensors shifted
    covered = 0
    for b, en, name in sorted(spans):
        if b != covered:
            fail("%s: tensor %s: data_offsets begin at %d, expected %d (%s)" %
                 (path, name, b, covered, "overlaps the tensor before it" if b < covered else "a gap no tensor owns"))
        covered = en
    if covered != size - start:
        fail("%s: the tensors cover %d bytes of data, but %d follow the %d-byte header (header length or data size wrong)" %
             (path, covered, size - start, n))
    for name, e in hdr.items():
        dt, shape, (b, en) = e["dtype"], list(e["shape"]), list(e["data_offsets"])

        def load(b=b, en=en, dt=dt, shape=shape):
            raw = mm[start + b:start + en]
            if dt == "F32":
                a = raw.view("<f4")
            elif dt == "BF16":
                a = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
            elif dt == "F16":
                a = raw.view("<f2").astype(np.float32)
            else:
                a = raw.view("<f8").astype(np.float32)
            return a.reshape(shape)
        refs[name] = Ref(shape, dt, load)
    return refs, meta


def read_input(path):
    if not os.path.isfile(path):
        fail("%s: does not exist (or is not a file)" % path)
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if len(magic) == 4 and struct.unpack("<i", magic)[0] in (MODEL_MAGIC, STATE_MAGIC):
        fail("%s: is a mega.c checkpoint file, expected MUG-V's state dict (.pt) or a .safetensors" % path)
    return read_torch(path)


# ----------------------------------------------------------------------------
# config inference and validation of a MUG-V state dict

def infer_config(refs, meta, args, path):
    def need(name, ndim):
        if name not in refs:
            fail("%s: missing tensor %s (needed to infer the config)" % (path, name))
        s = refs[name].shape
        if len(s) != ndim:
            fail("%s: tensor %s has shape %s, expected %d dimensions" % (path, name, s, ndim))
        return s
    C, Cin, pt, ph, pw = need("x_embedder.proj.weight", 5)
    layers = set()
    for k in refs:
        m = re.match(r"blocks\.(\d+)\.", k)
        if m:
            layers.add(int(m.group(1)))
    if not layers:
        fail("%s: no blocks.{i}.* tensors (is this MUG-V's DiT state dict?)" % path)
    L = max(layers) + 1
    hd = need("blocks.0.attn.q_norm.weight", 1)[0]
    if hd <= 0 or C % hd:
        fail("%s: blocks.0.attn.q_norm.weight has %d values (the head dim), which does not divide d_model %d" % (path, hd, C))
    F = need("blocks.0.mlp.fc1.weight", 2)[0]
    Cy = need("y_embedder.y_proj.fc1.weight", 2)[1]
    Fq = need("t_embedder.mlp.0.weight", 2)[1]
    rows = need("final_layer.linear.weight", 2)[0]
    P = pt * ph * pw
    if P <= 0 or rows % P:
        fail("%s: final_layer.linear.weight has %d rows, not a multiple of the patch volume %d" % (path, rows, P))
    c = dict(d_model=C, n_layer=L, n_head=C // hd, head_dim=hd, ffn_hidden=F, in_channels=Cin, out_channels=rows // P,
             caption_channels=Cy, patch_t=pt, patch_h=ph, patch_w=pw, freq_dim=Fq)
    c["mlp_ratio"] = 4.0 if F == int(C * 4.0) else f32(F / C)

    # metadata config (a file written by to-safetensors): must agree with the shapes; fills the rest
    mc = {}
    if "config" in meta:
        try:
            mc = json.loads(meta["config"])
            assert isinstance(mc, dict)
        except (ValueError, AssertionError):
            fail("%s: metadata 'config' is not a JSON object" % path)
        for k, v in c.items():
            if k in mc and k != "mlp_ratio" and mc[k] != v:
                fail("%s: metadata config %s is %r, the tensors give %r" % (path, k, mc[k], v))
        if "mlp_ratio" in mc:
            c["mlp_ratio"] = mc["mlp_ratio"]
    for k, v in NOT_INFERRED.items():
        flag = getattr(args, k, None)
        c[k] = flag if flag is not None else mc.get(k, v)
    if getattr(args, "mlp_ratio", None) is not None:
        c["mlp_ratio"] = args.mlp_ratio
    for k, isf in CONFIG_FIELDS:
        try:
            c[k] = f32(c[k]) if isf else int(c[k])
        except (TypeError, ValueError):
            fail("%s: config %s: expected a number, got %r" % (path, k, c[k]))
    check_config(c, path)
    return c


def validate(refs, c, path):
    """Every expected tensor present with its shape, floating point, nothing else: else one line."""
    want = mugv_tensors(c)
    wanted = set(n for n, _ in want)
    missing = [n for n, _ in want if n not in refs]
    if missing:
        more = " (and %d more)" % (len(missing) - 1) if len(missing) > 1 else ""
        s = dict(want)[missing[0]]
        fail("%s: missing tensor %s %s%s; inferred: %s" % (path, missing[0], s, more, config_str(c)))
    for n, s in want:
        if refs[n].shape != s:
            fail("%s: tensor %s has shape %s, expected %s (inferred: %s)" % (path, n, refs[n].shape, s, config_str(c)))
        if refs[n].dtype not in ST_SIZES:
            fail("%s: tensor %s has dtype %s, expected a floating-point tensor" % (path, n, refs[n].dtype))
    extra = sorted(k for k in refs if k not in wanted)
    if extra:
        more = " (and %d more)" % (len(extra) - 1) if len(extra) > 1 else ""
        fail("%s: unexpected tensor %s %s%s: not part of MUG-V's DiT (inferred: %s)" %
             (path, extra[0], refs[extra[0]].shape, more, config_str(c)))
    return want


# ----------------------------------------------------------------------------
# model.bin

def bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even, NaN stays NaN (llmc/train/checkpoint.h ckpt_f32_to_bf16)."""
    u = np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32)
    r = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def encode(a, dtype):
    if dtype == "bf16":
        return bf16_bits(a).tobytes()
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def make_header(c, dtype, payload_sum, pure=False):
    h = bytearray(HEADER_BYTES)
    struct.pack_into("<iiiiii", h, 0, MODEL_MAGIC, VERSION, KIND_DIT, DTYPE_CODES[dtype], len(CONFIG_FIELDS),
                     len(mega_layout(c)))
    struct.pack_into("<q", h, 24, n_params(c))
    struct.pack_into("<Q", h, 40, payload_sum)
    for i, (k, isf) in enumerate(CONFIG_FIELDS):
        struct.pack_into("<f" if isf else "<i", h, 4 * (CONFIG_AT + i), c[k])
    struct.pack_into("<Q", h, 32, xxh64(bytes(h), pure))  # over the header with its own checksum 0
    return bytes(h)


def open_tmp(path):
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        tmp = path + ".tmp"
        f = open(tmp, "wb")
    except OSError as e:
        fail("%s: cannot create (%s)" % (path, e))
    _open_tmp.append(tmp)
    return f, tmp


def finish_tmp(f, tmp, path):
    try:
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        _open_tmp.remove(tmp)
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        except OSError:
            pass  # file systems that cannot sync directories
        os.close(dfd)
    except OSError as e:
        fail("%s: write failed (%s)" % (path, e))


def write_model_bin(path, c, dtype, tensors, pure=False):
    """tensors: iterable of float32 arrays in payload order. Atomic: PATH.tmp, fsync, rename."""
    nbytes = n_params(c) * (2 if dtype == "bf16" else 4)
    f, tmp = open_tmp(path)
    h = new_hasher(nbytes, pure)
    written = 0
    try:
        f.write(bytes(HEADER_BYTES))
        for a in tensors:
            b = encode(a, dtype)
            h.update(b)
            f.write(b)
            written += len(b)
        if written != nbytes:
            fail("%s: internal error: wrote %d payload bytes, expected %d" % (path, written, nbytes))
        payload_sum = h.intdigest()
        f.seek(0)
        f.write(make_header(c, dtype, payload_sum, pure))
    except OSError as e:
        fail("%s: write failed (%s)" % (tmp, e))
    finish_tmp(f, tmp, path)
    return payload_sum


def read_model_header(path, pure=False):
    """Validates a model.bin header as llmc/train/checkpoint.h does; returns (config, dtype, payload_sum)."""
    if not os.path.isfile(path):
        fail("%s: does not exist (or is not a file)" % path)
    size = os.path.getsize(path)
    if size < HEADER_BYTES:
        fail("%s: file is %d bytes, shorter than the %d-byte header (truncated)" % (path, size, HEADER_BYTES))
    with open(path, "rb") as f:
        h = f.read(HEADER_BYTES)
    ints = struct.unpack("<256i", h)
    if ints[0] != MODEL_MAGIC:
        fail("%s: magic: expected %d (a mega.c model checkpoint (model.bin)), found %d%s" %
             (path, MODEL_MAGIC, ints[0], " (a state.bin file)" if ints[0] == STATE_MAGIC else ""))
    if ints[1] != VERSION:
        fail("%s: version: expected %d, found %d" % (path, VERSION, ints[1]))
    stored = struct.unpack_from("<Q", h, 32)[0]
    z = bytearray(h)
    struct.pack_into("<Q", z, 32, 0)
    have = xxh64(bytes(z), pure)
    if stored != have:
        fail("%s: header checksum: stored %016x, computed %016x (the header is corrupted)" % (path, stored, have))
    if ints[2] != KIND_DIT:
        fail("%s: model kind: expected %d (dit), found %d" % (path, KIND_DIT, ints[2]))
    if ints[3] not in (0, 1):
        fail("%s: dtype: expected 0 (float32) or 1 (bfloat16), found %d" % (path, ints[3]))
    if ints[4] != len(CONFIG_FIELDS):
        fail("%s: n_config is %d, a dit model has %d config fields" % (path, ints[4], len(CONFIG_FIELDS)))
    c = {}
    for i, (k, isf) in enumerate(CONFIG_FIELDS):
        c[k] = struct.unpack_from("<f" if isf else "<i", h, 4 * (CONFIG_AT + i))[0]
    check_config(c, path)
    dtype = "bf16" if ints[3] == 1 else "fp32"
    n = struct.unpack_from("<q", h, 24)[0]
    if ints[5] != len(mega_layout(c)) or n != n_params(c):
        fail("%s: n_tensors %d / n_params %d, the config's model has %d / %d" % (path, ints[5], n, len(mega_layout(c)), n_params(c)))
    want = HEADER_BYTES + n * (2 if dtype == "bf16" else 4)
    if size != want:
        fail("%s: file length: n_params %d needs %d bytes, found %d (%s)" %
             (path, n, want, size, "truncated" if size < want else "extra bytes after the payload"))
    return c, dtype, struct.unpack_from("<Q", h, 40)[0]


def check_payload(path, payload_sum, pure=False):
    h = new_hasher(os.path.getsize(path), pure)
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    have = h.intdigest()
    if have != payload_sum:
        fail("%s: payload checksum: stored %016x, computed %016x (the file is corrupted)" % (path, payload_sum, have))


# ----------------------------------------------------------------------------
# commands

def cmd_to_mega(args):
    refs, meta = read_input(args.input)
    c = infer_config(refs, meta, args, args.input)
    want = validate(refs, c, args.input)
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bf16" if all(refs[n].dtype == "BF16" for n, _ in want) else "fp32"
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        fail("%s: the output would overwrite the input" % args.output)

    def tensors():
        for n, s in want:
            a = refs[n].load()
            if list(a.shape) != s:  # a loader that disagrees with its own header
                fail("%s: tensor %s loads as shape %s, expected %s" % (args.input, n, list(a.shape), s))
            yield a
    psum = write_model_bin(args.output, c, dtype, tensors(), args.pure_python_xxh64)
    print("wrote %s: MUG-V DiT, %s, %d tensors (%d MUG-V names), %d params, %s, payload xxh64 %016x" %
          (args.output, config_str(c), len(mega_layout(c)), len(want), n_params(c), dtype, psum))
    print("train_dit model flags: %s" % train_dit_flags(c))


def cmd_to_safetensors(args):
    c, dtype, psum = read_model_header(args.input, args.pure_python_xxh64)
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        fail("%s: the output would overwrite the input" % args.output)
    st_dtype, esize = ("BF16", 2) if dtype == "bf16" else ("F32", 4)
    cfg = {k: c[k] for k, _ in CONFIG_FIELDS}
    for k, isf in CONFIG_FIELDS:
        if isf:
            cfg[k] = float(f32s(c[k]))  # the shortest text that gives the same float32
    hdr = {"__metadata__": {"format": "pt", "model": "MUG-V DiT (MUGDiT), written by mega.c scripts/convert_mugv.py",
                            "config": json.dumps(cfg)}}
    off = 0
    for n, s in mugv_tensors(c):  # payload order: the data section is the model.bin payload as it is
        k = 1
        for d in s:
            k *= d
        hdr[n] = {"dtype": st_dtype, "shape": s, "data_offsets": [off, off + k * esize]}
        off += k * esize
    text = json.dumps(hdr, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data 8-byte aligned, as the HF writer does
    f, tmp = open_tmp(args.output)
    h = new_hasher(off, args.pure_python_xxh64)
    try:
        f.write(struct.pack("<Q", len(text)) + text)
        with open(args.input, "rb") as src:
            src.seek(HEADER_BYTES)
            left = off
            while left > 0:
                b = src.read(min(CHUNK, left))
                if not b:
                    fail("%s: truncated while reading the payload (file changed?)" % args.input)
                h.update(b)
                f.write(b)
                left -= len(b)
    except OSError as e:
        fail("%s: write failed (%s)" % (tmp, e))
    have = h.intdigest()
    if have != psum:
        fail("%s: payload checksum: stored %016x, computed %016x (the file is corrupted)" % (args.input, psum, have))
    finish_tmp(f, tmp, args.output)
    print("wrote %s: %d tensors with MUG-V names, %s, %s; config in the metadata" %
          (args.output, len(mugv_tensors(c)), st_dtype, config_str(c)))


def cmd_check(args):
    magic = b""
    if os.path.isfile(args.input):
        with open(args.input, "rb") as f:
            magic = f.read(4)
    if len(magic) == 4 and struct.unpack("<i", magic)[0] == MODEL_MAGIC:
        c, dtype, psum = read_model_header(args.input, args.pure_python_xxh64)
        check_payload(args.input, psum, args.pure_python_xxh64)
        print("%s: mega.c dit model.bin, %s, %s, %d params, checksums ok" % (args.input, dtype, config_str(c), n_params(c)))
    else:
        refs, meta = read_input(args.input)
        c = infer_config(refs, meta, args, args.input)
        want = validate(refs, c, args.input)
        print("%s: MUG-V DiT state dict, %d tensors, all present with the expected shapes; %s, %d params" %
              (args.input, len(want), config_str(c), n_params(c)))
    print("train_dit model flags: %s" % train_dit_flags(c))


def main():
    ap = argparse.ArgumentParser(description="MUG-V DiT weights <-> mega.c DiT checkpoint (model.bin); the mapping is in "
                                             "this script's docstring")
    sub = ap.add_subparsers(dest="cmd")

    def config_flags(p):
        g = p.add_argument_group("config fields that are not in the weights (default: a .safetensors' metadata, "
                                 "else MUG-V's value)")
        g.add_argument("--max-text-len", dest="max_text_len", type=int, default=None, help="longest caption (300)")
        g.add_argument("--norm-eps", dest="norm_eps", type=float, default=None, help="LayerNorm/RMSNorm eps (1e-6)")
        g.add_argument("--rope-theta", dest="rope_theta", type=float, default=None, help="3D RoPE base (10000)")
        g.add_argument("--rope-max-t", dest="rope_max_t", type=int, default=None, help="temporal RoPE positions (480)")
        g.add_argument("--rope-max-hw", dest="rope_max_hw", type=int, default=None, help="largest patch grid side (384)")
        g.add_argument("--freq-max-period", dest="freq_max_period", type=float, default=None,
                       help="t/fps sinusoidal max period (10000)")
        g.add_argument("--mlp-ratio", dest="mlp_ratio", type=float, default=None,
                       help="stored mlp_ratio (default: 4.0 when ffn_hidden == 4*d_model, else ffn_hidden/d_model)")

    p = sub.add_parser("to-mega", help="MUG-V state dict (.pt) or MUG-V-named .safetensors -> mega.c model.bin")
    p.add_argument("input")
    p.add_argument("output", help="the model.bin to write (its folder is created)")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="stored dtype (auto: bf16 when every input tensor is bf16, else fp32)")
    config_flags(p)
    p = sub.add_parser("to-safetensors", help="mega.c dit model.bin -> .safetensors with MUG-V names")
    p.add_argument("input")
    p.add_argument("output")
    p = sub.add_parser("check", help="validate a MUG-V state dict, .safetensors or model.bin; print its config")
    p.add_argument("input")
    config_flags(p)
    for p in sub.choices.values():
        p.add_argument("--pure-python-xxh64", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cmd is None:
        ap.print_help()
        sys.exit(2)
    global np
    try:
        import numpy as np
    except ImportError:
        fail("convert_mugv.py needs numpy (pip install numpy)")
    {"to-mega": cmd_to_mega, "to-safetensors": cmd_to_safetensors, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
