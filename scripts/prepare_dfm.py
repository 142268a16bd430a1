#!/usr/bin/env python3
"""
prepare_dfm.py: turns NVIDIA DFM's Energon WebDataset shards (the data its
Megatron DiT trains on) into the latent shards the DiT trainer reads (format:
llmc/data/latent_data.h, docs/formats.md). Needs numpy and PyTorch (to load the
.pth and .pickle members); run it where those are installed.

DFM layout (examples/megatron/recipes/dit/prepare_energon_dataset_*.py, written
with webdataset's ShardWriter as rank{R}-{NNNNNN}.tar; read back by DFM's
DiTTaskEncoder):
  KEY.pth      torch.save of the video latent, bf16 [1, C, T, H, W] (or [C, T, H, W])
  KEY.pickle   pickle.dumps of the T5 text embeddings, bf16 [1, 512, D] (or [L, D]),
               zero rows after the caption's tokens
  KEY.json     {"image_height": ..., "image_width": ...} (an "fps" there is used)
  KEY.txt      optional: the caption, for NAME_samples.tsv
A sample is the tar members sharing KEY (the member name up to the first dot of
its base name, as webdataset groups them). Other members are ignored.

Output (--out-dir): NAME_000.lat, NAME_001.lat, ... (--shard-samples each) and
NAME_samples.tsv (global index, tar:key, source, caption). The text keeps its
leading rows up to the last row that is not all zero (the caption's tokens;
DFM's encoder zeroes the rest), or all L rows with --keep-text-padding (DFM's
own task encoder attends to the whole padded 512). The latents are stored as
they are (source 'generated'; DFM's EDM pipeline takes them as they are, times
sigma_data) unless the VAE's per-channel --vae-mean/--vae-std (or --vae-stats)
are given: then they are stored raw with source 'real' and the loader
normalizes them.

  python3 scripts/prepare_dfm.py --input /data/butterfly_webdataset --out-dir data/dfm --shard-samples 256
  ./train_dit --train-data "data/dfm/train_*.lat" --in-channels 16 --caption-channels 1024 --max-text-len 512 ...

Every bad input ends with one line 'error: ...' on stderr naming the tar file
and sample key (a missing member, a repeated key, a bad shape or value), and exit
code 1; outputs are checked and written as prepare_mugv.py's (NAME.tmp files
renamed into place only when all are whole). The .pickle members are Python
pickles: convert only shards you trust.
"""
import argparse
import glob
import io
import json
import math
import os
import pickle
import re
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from script_util import fail, out_dir_ready  # noqa: E402
import prepare_mugv as mugv  # noqa: E402  (the shard writer, dtypes, VAE statistics flags)

np = None  # numpy, imported by main() so that --help works without it
# webdataset's grouping: KEY (folders and the base name up to its first dot), EXT (the rest)
MEMBER_RE = re.compile(r"^((?:.*/|)[^./][^.]*)\.([^/]+)$")
NEEDED = ("pth", "pickle", "json")


def import_torch():
    try:
        import torch
    except ImportError:
        fail("prepare_dfm.py needs PyTorch to read DFM's .pth and .pickle members (pip install torch)")
    return torch


def input_tars(specs):
    """Tar files from --input: files, folders (their *.tar, sorted) or globs, in the order given."""
    out = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(glob.glob(os.path.join(glob.escape(spec), "*.tar")))
            if not found:
                fail("--input %s: the folder holds no .tar files" % spec)
        elif os.path.isfile(spec):
            found = [spec]
        else:
            found = sorted(glob.glob(spec))
            if not found:
                fail("--input %s: no such file, folder or matching .tar files" % spec)
        out += [f for f in found if f not in out]
    return out


def scan(path):
    """[(key, {ext: TarInfo})] of one tar, in order; a key's members must be consecutive (webdataset)."""
    try:
        tf = tarfile.open(path, "r:*")
        members = tf.getmembers()
    except (OSError, tarfile.TarError, EOFError) as e:
        fail("%s: cannot read the tar file (%s)" % (path, e))
    samples, seen = [], {}
    for m in members:
        if not m.isfile():
            continue
        mt = MEMBER_RE.match(m.name)
        if not mt:
            fail("%s: member '%s': expected KEY.EXT (webdataset naming)" % (path, m.name))
        key, ext = mt.group(1), mt.group(2)
        if samples and samples[-1][0] == key:
            if ext in samples[-1][1]:
                fail("%s: sample '%s' has two .%s members" % (path, key, ext))
            samples[-1][1][ext] = m
            continue
        if key in seen:
            fail("%s: sample '%s' repeats (its members are not together, or the key is used twice)" % (path, key))
        seen[key] = True
        samples.append((key, {ext: m}))
    tf.close()
    for key, mem in samples:
        for ext in NEEDED:
            if ext not in mem:
                fail("%s: sample '%s' has no .%s member (found: %s)" % (path, key, ext, ", ".join(sorted(mem))))
    return samples


def read_member(tf, path, key, m):
    try:
        return tf.extractfile(m).read()
    except (OSError, tarfile.TarError, EOFError, AttributeError) as e:
        fail("%s: sample '%s': cannot read %s (%s)" % (path, key, m.name, e))


def as_array(torch, x, what, where):
    """A torch tensor or numpy array as float32 numpy, finite."""
    if torch.is_tensor(x):
        a = x.detach().float().cpu().numpy()
    elif isinstance(x, np.ndarray) and x.dtype.kind in "fiu":
        a = x.astype(np.float32)
    else:
        fail("%s: %s: expected a tensor, found %s" % (where, what, type(x).__name__))
    if not np.isfinite(a).all():
        fail("%s: %s: expected finite values, found %d NaN/Inf" % (where, what, int((~np.isfinite(a)).sum())))
    return a


def read_latent(torch, raw, where):
    try:
        x = torch.load(io.BytesIO(raw), map_location="cpu")
    except Exception as e:  # torch raises many kinds
        fail("%s: cannot load the .pth latent (%s: %s)" % (where, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
    if not torch.is_tensor(x):
        fail("%s: latent (.pth): expected a tensor [1, C, T, H, W], found %s" % (where, type(x).__name__))
    if x.dim() == 5 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 4 or min(x.shape) <= 0:
        fail("%s: latent (.pth): expected shape [1, C, T, H, W] or [C, T, H, W] with every size > 0, found %s" % (where, list(x.shape)))
    return as_array(torch, x, "latent (.pth)", where)


def read_text(torch, raw, where, max_text_len, keep_padding):
    try:
        x = pickle.loads(raw)
    except Exception as e:  # unpickling raises many kinds
        fail("%s: cannot unpickle the .pickle text embeddings (%s: %s)" % (where, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
    a = as_array(torch, x, "text embeddings (.pickle)", where)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or min(a.shape) <= 0:
        fail("%s: text embeddings (.pickle): expected shape [1, L, D] or [L, D] with every size > 0, found %s" % (where, list(a.shape)))
    if keep_padding:
        n = a.shape[0]
    else:
        nonzero = np.flatnonzero(np.any(a != 0, axis=1))
        n = int(nonzero[-1]) + 1 if len(nonzero) else 0
    what = "rows" if keep_padding else "rows up to the last nonzero one"
    if n < 1 or n > max_text_len:
        fail("%s: text length (%s): expected in [1, %d] (--max-text-len), found %d" % (where, what, max_text_len, n))
    return a[:n]


def read_json(raw, where, default_fps):
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        fail("%s: .json: expected a JSON object (%s)" % (where, e))
    if not isinstance(d, dict):
        fail("%s: .json: expected a JSON object, found %s" % (where, type(d).__name__))
    fps = default_fps
    if "fps" in d:
        v = d["fps"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            fail("%s: .json fps: expected a number > 0, found %r" % (where, v))
        fps = float(v)
    return fps


def main():
    ap = argparse.ArgumentParser(description="DFM Energon WebDataset shards (.tar: .pth latents, .pickle T5 embeddings, .json) -> "
                                             "latent shards (llmc/data/latent_data.h)")
    ap.add_argument("--input", required=True, nargs="+", help="DFM .tar shards: files, folders (their *.tar) or globs")
    ap.add_argument("--out-dir", required=True, help="where NAME_000.lat ... and NAME_samples.tsv go")
    ap.add_argument("--name", default="train", help="shard name prefix (train, val, ...)")
    ap.add_argument("--shard-samples", type=int, default=256, help="samples per shard file")
    ap.add_argument("--dtype", choices=sorted(mugv.DTYPES), default="bf16", help="stored dtype of the latents")
    ap.add_argument("--text-dtype", choices=sorted(mugv.DTYPES), default=None, help="stored dtype of the text features (default: --dtype)")
    mugv.add_vae_flags(ap)
    ap.add_argument("--fps", type=float, default=24.0, help="fps of a clip whose .json has no fps")
    ap.add_argument("--max-text-len", type=int, default=512, help="longest text allowed (DFM's T5 length is 512)")
    ap.add_argument("--keep-text-padding", action="store_true", help="keep all L text rows (DFM attends to the zero padding too)")
    ap.add_argument("--limit", type=int, default=0, help="convert only the first N samples (0: all)")
    args = ap.parse_args()
    global np
    try:
        import numpy as np
    except ImportError:
        fail("prepare_dfm.py needs numpy (pip install numpy)")
    mugv.np = np

    mugv.check_shard_flags(args, "samples")
    mean, std = mugv.vae_stats(args)
    source = "real" if mean is not None else "generated"
    tars = input_tars(args.input)
    out_dir_ready(args.out_dir, "--out-dir", ["%s_*.lat" % args.name, "%s_*.lat.tmp" % args.name, "%s_samples.tsv" % args.name])
    latent_dtype = mugv.DTYPES[args.dtype]
    text_dtype = mugv.DTYPES[args.text_dtype or args.dtype]

    # ---- every tar's samples (names only) before any conversion
    items = []  # (tar path, key, members)
    for path in tars:
        items += [(path, key, mem) for key, mem in scan(path)]
    if args.limit > 0:
        items = items[: args.limit]
    if not items:
        fail("--input: the tar files hold no samples (%s)" % ", ".join(tars[:3]))

    # ---- convert, shard by shard, into NAME_*.tmp files renamed into place once all are whole
    torch = import_torch()
    open_tar = [None, None]  # (path, TarFile): the tar being read

    def read_sample(item):
        tar_path, key, mem = item
        if open_tar[0] != tar_path:
            if open_tar[1] is not None:
                open_tar[1].close()
            try:
                open_tar[:] = [tar_path, tarfile.open(tar_path, "r:*")]
            except (OSError, tarfile.TarError) as e:
                fail("%s: cannot read the tar file (%s)" % (tar_path, e))
        tf = open_tar[1]
        where = "%s: sample '%s'" % (tar_path, key)
        lat = read_latent(torch, read_member(tf, tar_path, key, mem["pth"]), where)
        txt = read_text(torch, read_member(tf, tar_path, key, mem["pickle"]), where, args.max_text_len, args.keep_text_padding)
        fps = read_json(read_member(tf, tar_path, key, mem["json"]), where, args.fps)
        caption = ""
        if "txt" in mem:
            try:
                caption = read_member(tf, tar_path, key, mem["txt"]).decode("utf-8").strip()
            except UnicodeDecodeError:
                fail("%s: .txt caption: expected UTF-8 text" % where)
        return lat, txt, fps, source, caption, "%s:%s" % (os.path.basename(tar_path), key), where, where
    C, D, n_tokens, n_shards, _ = mugv.write_shards(args, items, read_sample, "# index\ttar:key\tsource\tcaption", latent_dtype, text_dtype,
                                                    mean, std, "prepare_dfm")
    if open_tar[1] is not None:
        open_tar[1].close()
    print("prepare_dfm: %d samples from %d tar files, C %d, text channels %d, %.1f text tokens per sample, %d shards, %s latents, %s text, %s" %
          (len(items), len(tars), C, D, n_tokens / len(items), n_shards, args.dtype, args.text_dtype or args.dtype,
           "raw (normalized by the loader)" if mean is not None else "stored as they are"))


if __name__ == "__main__":
    main()
