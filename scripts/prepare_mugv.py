#!/usr/bin/env python3
"""
prepare_mugv.py: turns a MUG-V training set into the latent shards the DiT
trainer reads (format: llmc/data/latent_data.h). Needs numpy and PyTorch (only to
torch.load the .pt files); run it where those are installed.

MUG-V layout:
  train.csv        columns sample_id, source, latent_path, text_feat_path
                   (optional: fps, caption or text); paths relative to --root
                   (default: the csv's folder) unless absolute
  latent .pt       tensor [C, T, H, W] (C = 24 for MUG-V's VAE; [1, C, T, H, W] is accepted)
  text .pt         {'y': [1, 1, L, D] (D = 4096, T5-XXL), 'mask': [1, L]}

Output (--out-dir): NAME_000.lat, NAME_001.lat, ... (--shard-samples each) and
NAME_samples.tsv (global index, sample_id, source, caption). Only valid text
tokens (mask == 1) are stored. Latents with source 'real' are stored raw with
source flag 'real', and the per-channel VAE mean/std (--vae-mean/--vae-std, or
--vae-stats FILE.json {"mean": [...], "std": [...]}) go into every shard's
header; the C++ loader normalizes them ((z - mean_c) / std_c) when it reads
them. 'generated' latents are already normalized and stored as they are.

  python3 scripts/prepare_mugv.py --csv /data/mugv/train.csv --out-dir data/mugv \\
      --vae-stats /data/mugv/vae_stats.json --dtype bf16 --shard-samples 256
  ./train_dit --train-data "data/mugv/train_*.lat" ...

Every bad input ends with one line 'error: ...' on stderr naming the file or
the csv row (a repeated or empty sample_id too), and exit code 1. --out-dir is
checked first: it must be (or become) a folder without NAME_*.lat or
NAME_samples.tsv from an earlier run (the training glob would mix them). Shards
and the .tsv are written to NAME.tmp, fsync'ed, and renamed into place only when
all are whole, so a failed or interrupted run leaves no shard behind.
"""
import argparse
import csv
import json
import math
import os
import struct
import sys

LATENT_MAGIC = 20251205
LATENT_VERSION = 1
HEADER_BYTES = 1024
ENTRY_BYTES = 64
DTYPES = {"f32": 0, "bf16": 1}
SOURCES = {"generated": 0, "real": 1}


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from script_util import fail, open_tmp as _open_tmp, out_dir_ready, commit_tmp  # noqa: E402  (one error line, temp files removed)


np = None  # numpy, imported by main() so that --help works without it


def import_torch():
    try:
        import torch
    except ImportError:
        fail("prepare_mugv.py needs PyTorch to read MUG-V's .pt files (pip install torch)")
    return torch


def to_bf16_bits(x):
    """float32 array -> uint16 bf16 bits, round to nearest even (as llmc/data/latent_data.h)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def encode(x, dtype):
    if dtype == DTYPES["bf16"]:
        return to_bf16_bits(x).tobytes()
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def parse_floats(s, what):
    try:
        return [float(v) for v in s.split(",") if v.strip() != ""]
    except ValueError:
        fail("%s: expected comma-separated numbers, got '%s'" % (what, s))


def add_vae_flags(ap):
    """The VAE statistics flags (prepare_mugv.py, prepare_dfm.py): read back by vae_stats."""
    ap.add_argument("--vae-mean", default=None, help="per-channel VAE latent mean, C comma-separated numbers")
    ap.add_argument("--vae-std", default=None, help="per-channel VAE latent std, C comma-separated numbers")
    ap.add_argument("--vae-stats", default=None, help='JSON file {"mean": [...], "std": [...]} instead of --vae-mean/--vae-std')


def vae_stats(args):
    """(mean, std) lists from --vae-stats or --vae-mean/--vae-std, checked; (None, None) without them."""
    mean = std = None
    if args.vae_stats is not None:
        if args.vae_mean is not None or args.vae_std is not None:
            fail("give --vae-stats or --vae-mean/--vae-std, not both")
        try:
            with open(args.vae_stats) as f:
                st = json.load(f)
            mean, std = [float(v) for v in st["mean"]], [float(v) for v in st["std"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail('%s: expected JSON {"mean": [...], "std": [...]} (%s: %s)' % (args.vae_stats, type(e).__name__, e))
    elif args.vae_mean is not None or args.vae_std is not None:
        if args.vae_mean is None or args.vae_std is None:
            fail("--vae-mean and --vae-std go together")
        mean, std = parse_floats(args.vae_mean, "--vae-mean"), parse_floats(args.vae_std, "--vae-std")
    if mean is not None:
        if len(mean) != len(std):
            fail("VAE statistics: %d means but %d stds" % (len(mean), len(std)))
        for c, (m, s) in enumerate(zip(mean, std)):
            if not math.isfinite(m) or not (math.isfinite(s) and s > 0):
                fail("VAE statistics: channel %d mean %g std %g: expected a finite mean and std > 0" % (c, m, s))
    return mean, std


class ShardWriter:
    """Writes one shard: header, optional mean/std, index (filled at close), data."""

    def __init__(self, path, C, D, latent_dtype, text_dtype, n, mean, std):
        self.path, self.tmp = path, path + ".tmp"
        self.C, self.D, self.latent_dtype, self.text_dtype, self.n = C, D, latent_dtype, text_dtype, n
        self.has_norm = mean is not None
        self.entries = []
        hdr = bytearray(HEADER_BYTES)
        struct.pack_into("<iiiiiiii", hdr, 0, LATENT_MAGIC, LATENT_VERSION, C, D, latent_dtype, text_dtype, int(self.has_norm), 0)
        struct.pack_into("<q", hdr, 32, n)
        try:
            self.f = open(self.tmp, "wb")
            _open_tmp.append(self.tmp)
            self.f.write(hdr)
            if self.has_norm:
                self.f.write(np.asarray(mean, dtype="<f4").tobytes())
                self.f.write(np.asarray(std, dtype="<f4").tobytes())
            self.index_offset = self.f.tell()
            self.f.write(bytes(ENTRY_BYTES * n))
        except OSError as e:
            fail("%s: write failed (%s)" % (self.tmp, e))
        self.end = self.f.tell()

    def _put(self, b):
        try:
            self.f.write(b)
        except OSError as e:
            fail("%s: write failed (%s)" % (self.tmp, e))
        off = self.end
        self.end += len(b)
        return off

    def add(self, latent, text, fps, source, caption, clean_frames=0):
        C, T, H, W = latent.shape
        cap = caption.encode("utf-8")
        lat_off = self._put(encode(latent, self.latent_dtype))
        txt_off = self._put(encode(text, self.text_dtype))
        cap_off = self._put(cap)
        self.entries.append(struct.pack("<qqqiiiiifiiq", lat_off, txt_off, cap_off, len(cap), T, H, W, text.shape[0], fps, source, clean_frames, 0))

    def close(self):
        """Completes and fsyncs NAME.tmp; main renames every shard into place once all are whole."""
        if len(self.entries) != self.n:
            fail("%s: %d samples added, %d announced" % (self.path, len(self.entries), self.n))
        try:
            self.f.seek(self.index_offset)
            self.f.write(b"".join(self.entries))
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
        except OSError as e:
            fail("%s: write failed (%s)" % (self.tmp, e))


def load_pt(torch, path, what, row):
    if not os.path.isfile(path):
        fail("%s line %d: %s file %s does not exist" % (row["_csv"], row["_line"], what, path))
    try:
        return torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds
        fail("%s: cannot load %s (%s: %s)" % (path, what, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))


def read_latent(torch, path, row):
    x = load_pt(torch, path, "latent", row)
    if isinstance(x, dict):
        tensors = [v for v in x.values() if torch.is_tensor(v)]
        if len(tensors) != 1:
            fail("%s: latent: expected a tensor [C, T, H, W], found a dict with keys %s" % (path, sorted(x.keys())))
        x = tensors[0]
    if not torch.is_tensor(x):
        fail("%s: latent: expected a tensor [C, T, H, W], found %s" % (path, type(x).__name__))
    if x.dim() == 5 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 4 or min(x.shape) <= 0:
        fail("%s: latent: expected shape [C, T, H, W] with every size > 0, found %s" % (path, list(x.shape)))
    a = x.detach().float().numpy()
    if not np.isfinite(a).all():
        fail("%s: latent: expected finite values, found %d NaN/Inf" % (path, int((~np.isfinite(a)).sum())))
    return a


def read_text(torch, path, row, max_text_len):
    d = load_pt(torch, path, "text features", row)
    if not isinstance(d, dict) or "y" not in d or "mask" not in d:
        fail("%s: text features: expected a dict with 'y' [1, 1, L, D] and 'mask' [1, L], found %s" %
             (path, sorted(d.keys()) if isinstance(d, dict) else type(d).__name__))
    y, mask = d["y"], d["mask"]
    if not torch.is_tensor(y) or y.dim() != 4 or y.shape[0] != 1 or y.shape[1] != 1:
        fail("%s: text features 'y': expected shape [1, 1, L, D], found %s" % (path, list(y.shape) if torch.is_tensor(y) else type(y).__name__))
    if not torch.is_tensor(mask) or mask.dim() != 2 or mask.shape[0] != 1 or mask.shape[1] != y.shape[2]:
        fail("%s: text 'mask': expected shape [1, L] with L = %d (y's length), found %s" %
             (path, y.shape[2], list(mask.shape) if torch.is_tensor(mask) else type(mask).__name__))
    m = mask[0].detach().float().numpy()
    if not np.isin(m, [0.0, 1.0]).all():
        fail("%s: text 'mask': expected only 0 and 1, found %s" % (path, sorted(set(m.tolist()))[:5]))
    keep = m == 1.0
    n = int(keep.sum())
    if n < 1 or n > max_text_len:
        fail("%s: text length (mask == 1): expected in [1, %d] (--max-text-len), found %d" % (path, max_text_len, n))
    t = y[0, 0].detach().float().numpy()[keep]
    if not np.isfinite(t).all():
        fail("%s: text features: expected finite values, found NaN/Inf" % path)
    return t


def check_shard_flags(args, unit):
    """The flags prepare_mugv.py and prepare_dfm.py share (unit: what --limit counts)."""
    if args.limit < 0:
        fail("--limit: must be >= 0 (0: all %s), got %d" % (unit, args.limit))
    if args.shard_samples <= 0:
        fail("--shard-samples: must be > 0, got %d" % args.shard_samples)
    if args.max_text_len <= 0:
        fail("--max-text-len: must be > 0, got %d" % args.max_text_len)
    if not (args.fps > 0 and math.isfinite(args.fps)):
        fail("--fps: must be > 0, got %g" % args.fps)
    if not args.name or os.sep in args.name or any(ch in args.name for ch in "*?["):
        fail("--name: '%s' must be a plain file-name prefix" % args.name)


def write_shards(args, items, read_sample, tsv_header, latent_dtype, text_dtype, mean, std, tool):
    """Converts items, --shard-samples a shard, into OUT/NAME_###.lat with OUT/NAME_samples.tsv,
    written as .tmp files and renamed into place once all are whole (prepare_mugv.py and
    prepare_dfm.py). read_sample(item) -> (lat [C,T,H,W], txt [L,D], fps, source, caption,
    the sample's id in the .tsv, where its latent is, where its text is). Every sample must have
    the first's channel counts. Returns (C, D, text tokens, shards, the .tsv's path)."""
    C = D = None
    n_tokens = 0
    tsv = [tsv_header]
    n_shards = (len(items) + args.shard_samples - 1) // args.shard_samples
    written = []  # (tmp, path)
    for s in range(n_shards):
        part = items[s * args.shard_samples:(s + 1) * args.shard_samples]
        path = os.path.join(args.out_dir, "%s_%03d.lat" % (args.name, s))
        w = None
        for item in part:
            lat, txt, fps, source, caption, sample_id, lat_where, txt_where = read_sample(item)
            if C is None:
                C, D = lat.shape[0], txt.shape[1]
                if mean is not None and len(mean) != C:
                    fail("VAE statistics: %d channels given, the latents have %d (%s)" % (len(mean), C, lat_where))
            if lat.shape[0] != C:
                fail("%s: latent channels: expected %d (as the first sample), found %d" % (lat_where, C, lat.shape[0]))
            if txt.shape[1] != D:
                fail("%s: text embedding channels: expected %d (as the first sample), found %d" % (txt_where, D, txt.shape[1]))
            if w is None:
                w = ShardWriter(path, C, D, latent_dtype, text_dtype, len(part), mean, std)
            w.add(lat, txt, fps, SOURCES[source], caption)
            tsv.append("%d\t%s\t%s\t%s" % (len(tsv) - 1, sample_id, source, caption.replace("\t", " ").replace("\n", " ")))
            n_tokens += txt.shape[0]
        w.close()
        written.append((w.tmp, path))
        print("%s: wrote %s (%d samples)" % (tool, w.tmp, len(part)), flush=True)
    tsv_path = os.path.join(args.out_dir, "%s_samples.tsv" % args.name)
    try:
        _open_tmp.append(tsv_path + ".tmp")
        with open(tsv_path + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(tsv) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        fail("%s: write failed (%s)" % (tsv_path + ".tmp", e))
    commit_tmp(written + [(tsv_path + ".tmp", tsv_path)])
    print("%s: renamed the %d shards and %s into place" % (tool, n_shards, tsv_path))
    return C, D, n_tokens, n_shards, tsv_path


def main():
    ap = argparse.ArgumentParser(description="MUG-V train.csv + .pt latents/text features -> latent shards (llmc/data/latent_data.h)")
    ap.add_argument("--csv", required=True, help="MUG-V train.csv")
    ap.add_argument("--root", default=None, help="folder the csv's relative paths start from (default: the csv's folder)")
    ap.add_argument("--out-dir", required=True, help="where NAME_000.lat ... and NAME_samples.tsv go")
    ap.add_argument("--name", default="train", help="shard name prefix (train, val, ...)")
    ap.add_argument("--shard-samples", type=int, default=256, help="samples per shard file")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="stored dtype of the latents")
    ap.add_argument("--text-dtype", choices=sorted(DTYPES), default=None, help="stored dtype of the text features (default: --dtype)")
    add_vae_flags(ap)
    ap.add_argument("--fps", type=float, default=24.0, help="fps of every clip when the csv has no fps column (MUG-V trains at 24)")
    ap.add_argument("--max-text-len", type=int, default=300, help="longest text allowed (valid tokens)")
    ap.add_argument("--limit", type=int, default=0, help="convert only the first N rows (0: all)")
    args = ap.parse_args()
    global np
    try:
        import numpy as np
    except ImportError:
        fail("prepare_mugv.py needs numpy (pip install numpy)")

    check_shard_flags(args, "rows")
    # NAME_*.lat is the training glob: an earlier run's shards there would be mixed with these
    out_dir_ready(args.out_dir, "--out-dir", ["%s_*.lat" % args.name, "%s_*.lat.tmp" % args.name, "%s_samples.tsv" % args.name])
    latent_dtype = DTYPES[args.dtype]
    text_dtype = DTYPES[args.text_dtype or args.dtype]

    mean, std = vae_stats(args)

    # ---- read and check the csv
    if not os.path.isfile(args.csv):
        fail("%s: csv file does not exist" % args.csv)
    root = args.root if args.root is not None else os.path.dirname(os.path.abspath(args.csv))
    with open(args.csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for c in ("sample_id", "source", "latent_path", "text_feat_path"):
            if c not in cols:
                fail("%s: missing column '%s' (found columns: %s)" % (args.csv, c, ", ".join(cols)))
        rows = []
        for i, r in enumerate(reader):
            r["_csv"], r["_line"] = args.csv, i + 2  # header is line 1
            rows.append(r)
    if args.limit > 0:
        rows = rows[: args.limit]
    if not rows:
        fail("%s: no samples" % args.csv)
    caption_col = "caption" if "caption" in cols else "text" if "text" in cols else None
    n_real = 0
    line_of = {}  # sample_id -> its csv line: ids name the samples in NAME_samples.tsv, so they are unique
    for r in rows:
        sid = (r["sample_id"] or "").strip()
        if not sid:
            fail("%s line %d: sample_id is empty" % (args.csv, r["_line"]))
        if sid in line_of:
            fail("%s line %d: sample_id '%s' repeats line %d (expected unique ids)" % (args.csv, r["_line"], sid, line_of[sid]))
        line_of[sid] = r["_line"]
        src = (r["source"] or "").strip().lower()
        if src not in SOURCES:
            fail("%s line %d: source: expected 'real' or 'generated', found '%s'" % (args.csv, r["_line"], r["source"]))
        r["_source"] = SOURCES[src]
        n_real += src == "real"
        fps = args.fps
        if "fps" in cols and (r.get("fps") or "").strip():
            try:
                fps = float(r["fps"])
            except ValueError:
                fps = float("nan")
            if not (math.isfinite(fps) and fps > 0):
                fail("%s line %d: fps: expected a number > 0, found '%s'" % (args.csv, r["_line"], r["fps"]))
        r["_fps"] = fps
        for k in ("latent_path", "text_feat_path"):
            p = (r[k] or "").strip()
            if not p:
                fail("%s line %d: %s is empty" % (args.csv, r["_line"], k))
            r["_" + k] = p if os.path.isabs(p) else os.path.join(root, p)
    if n_real and mean is None:
        fail("%s: %d samples have source 'real' (raw VAE latents): give the VAE's per-channel --vae-mean and --vae-std (or --vae-stats)" %
             (args.csv, n_real))

    # ---- convert, shard by shard, into NAME_*.tmp files renamed into place once all are whole
    torch = import_torch()

    def read_sample(r):
        caption = (r.get(caption_col) or "") if caption_col else ""
        return (read_latent(torch, r["_latent_path"], r), read_text(torch, r["_text_feat_path"], r, args.max_text_len), r["_fps"],
                r["source"].strip().lower(), caption, r["sample_id"], r["_latent_path"], r["_text_feat_path"])
    C, D, n_tokens, n_shards, _ = write_shards(args, rows, read_sample, "# index\tsample_id\tsource\tcaption", latent_dtype, text_dtype,
                                               mean, std, "prepare_mugv")
    print("prepare_mugv: %d samples (%d real, %d generated), C %d, text channels %d, %.1f valid text tokens per sample, %d shards, %s latents, %s text" %
          (len(rows), n_real, len(rows) - n_real, C, D, n_tokens / len(rows), n_shards, args.dtype, args.text_dtype or args.dtype))


if __name__ == "__main__":
    main()
