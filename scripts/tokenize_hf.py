#!/usr/bin/env python3
"""
Text or JSONL -> token data for train_gpt, with any Hugging Face tokenizer (the model's own, so
that the ids are exactly what transformers gives). For one plain text file and a byte-level BPE
tokenizer.json, ./build_data --hf-tokenizer does the same without Python
(llmc/formats/hf_tokenizer.h); this script also reads JSONL and other tokenizers and writes Megatron data.

    python3 scripts/tokenize_hf.py --tokenizer path/to/hf_model --input corpus.jsonl --field text \\
        --format llmc --out data/mine --val-fraction 0.01
    ./train_gpt --init-hf path/to/hf_model --train-data "data/mine/train_*.bin" --val-data "data/mine/val_*.bin" ...

--tokenizer: a local directory (or tokenizer.json file), or a Hugging Face hub name when
transformers is installed and the hub can be reached. With transformers, AutoTokenizer is used
(add_special_tokens=False: no BOS is added); without it, the `tokenizers` library reads
DIR/tokenizer.json directly.
--input (repeatable): a .jsonl file is one document per line (the string in --field); any other
file is one document (its whole UTF-8 text).
Every document is followed by the end-of-document token (--eod-id, default the tokenizer's EOS
token, else <|endoftext|>), as Megatron's preprocess_data.py --append-eod does.
--val-fraction: the last documents (at least one when the fraction is > 0 and there are two or
more) go to the validation split; a single document is split by tokens instead.

Outputs (--out is a directory):
  --format llmc      OUT/train_000.bin, train_001.bin, ... and OUT/val_000.bin: llm.c shards
                     (llmc/data/token_shard.h: 256 int32 header, magic 20240520 version 1 with uint16 tokens
                     when the tokenizer has <= 65536 ids, else magic 20240801 version 7 with uint32),
                     at most --shard-tokens tokens each; and OUT/meta.txt (vocab_size, train/val bytes
                     and tokens, the token counts without the end-of-document tokens) for nats/byte
  --format megatron  OUT/train_text_document.{idx,bin} and OUT/val_text_document.{idx,bin}: Megatron
                     indexed datasets (llmc/data/megatron_data.h; written by scripts/write_megatron_fixture.py's
                     writer), one sequence per document, uint16 when the vocabulary is < 65500 ids,
                     else int32 (Megatron's DType.optimal_dtype)
Errors end with one line naming the file and what was wrong, exit 1, and leave no output: --out
is made (or must be a folder without an earlier run's outputs, which a training glob would mix
with the new ones) before the work, and every file is written as NAME.tmp and renamed into
place once all are whole. Documents without a token are skipped (an input without text is an
error).
"""
import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from write_megatron_fixture import write_indexed_dataset  # noqa: E402
from script_util import fail, open_tmp, out_dir_ready, commit_tmp  # noqa: E402  (one "error: ..." line, exit 1)

SHARD_MAGIC_U16, SHARD_VERSION_U16 = 20240520, 1
SHARD_MAGIC_U32, SHARD_VERSION_U32 = 20240801, 7


class HFTok:
    """encode(text) -> ids without special tokens added; vocab_size (ids are < it); eod id."""

    def __init__(self, name):
        self.name = name
        path = name
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        # transformers' import-time advice (e.g. "PyTorch was not found") would be a second stderr line
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        try:
            from transformers import AutoTokenizer  # noqa: F401
            have_tf = True
        except ImportError:
            have_tf = False
        # a hub name is "repo" or "namespace/repo"; anything else that does not exist is a missing path
        hub_like = re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) is not None and not name.endswith(".json")
        if not os.path.exists(name) and not (have_tf and hub_like):
            fail("%s: no such folder or file (expected a model folder with tokenizer.json, a tokenizer.json%s)" %
                 (name, ", or a hub name" if have_tf else "; a hub name needs transformers"))
        if have_tf and os.path.isdir(name) or have_tf and not os.path.exists(name):
            from transformers import AutoTokenizer
            try:
                t = AutoTokenizer.from_pretrained(name)
            except Exception as e:  # noqa: BLE001
                fail("%s: cannot load the tokenizer%s (%s)" % (name, "" if os.path.exists(name) else ": no such folder, nor a hub name it can load",
                                                                str(e).splitlines()[0] if str(e) else type(e).__name__))
            self.encode = lambda s: t.encode(s, add_special_tokens=False)
            self.vocab_size = len(t)
            self.eos = t.eos_token_id
            self.find = lambda s: t.convert_tokens_to_ids(s) if s in t.get_vocab() else None
        else:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                fail("%s: neither transformers nor tokenizers is installed (pip install tokenizers)" % name)
            if not os.path.isfile(path):
                fail("%s: no tokenizer.json there (a hub name needs transformers)" % path)
            try:
                t = Tokenizer.from_file(path)
            except Exception as e:  # noqa: BLE001
                fail("%s: cannot load the tokenizer (%s)" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
            self.encode = lambda s: t.encode(s, add_special_tokens=False).ids
            self.vocab_size = t.get_vocab_size(with_added_tokens=True)
            self.eos = None
            cfg = os.path.join(os.path.dirname(path), "tokenizer_config.json")
            if os.path.isfile(cfg):
                eos = json.load(open(cfg, encoding="utf-8")).get("eos_token")
                if isinstance(eos, dict):
                    eos = eos.get("content")
                if isinstance(eos, str):
                    self.eos = t.token_to_id(eos)
            self.find = t.token_to_id
        if self.eos is None:
            self.eos = self.find("<|endoftext|>")


def read_documents(inputs, field):
    """[(text, source)]: a .jsonl is one document per line, any other file one document."""
    docs = []
    for path in inputs:
        if not os.path.isfile(path):
            fail("%s: no such file" % path)
        try:
            if path.endswith(".jsonl"):
                with open(path, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        try:
                            obj = json.loads(line)
                        except json.JSONDecodeError as e:
                            fail("%s: line %d: invalid JSON (%s)" % (path, n, e.msg))
                        if not isinstance(obj, dict) or field not in obj:
                            fail("%s: line %d: no field '%s' (set --field)" % (path, n, field))
                        if not isinstance(obj[field], str):
                            fail("%s: line %d: field '%s' is not a string" % (path, n, field))
                        docs.append(obj[field])
            else:
                with open(path, encoding="utf-8") as f:
                    docs.append(f.read())
        except UnicodeDecodeError as e:
            fail("%s: not UTF-8 text (byte %d)" % (path, e.start))
    if not docs:
        fail("%s: no documents" % ", ".join(inputs))
    return docs


def write_llmc_shard(tmp, tokens, vocab_size):
    """Writes one shard to tmp (renamed into place with the others by commit_tmp)."""
    u16 = vocab_size <= 65536
    hdr = np.zeros(256, dtype=np.int32)
    hdr[0] = SHARD_MAGIC_U16 if u16 else SHARD_MAGIC_U32
    hdr[1] = SHARD_VERSION_U16 if u16 else SHARD_VERSION_U32
    hdr[2] = len(tokens)
    open_tmp.append(tmp)
    with open(tmp, "wb") as f:
        f.write(hdr.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16 if u16 else np.uint32).tobytes())
        f.flush()
        os.fsync(f.fileno())


# every file name either format writes: a folder holding one already holds an earlier run's outputs
OUTPUTS = ["train_*.bin", "val_*.bin", "meta.txt", "train_text_document.*", "val_text_document.*", "*.tmp"]


def main():
    ap = argparse.ArgumentParser(description="text/JSONL -> llm.c shards or Megatron indexed data, with a Hugging Face tokenizer")
    ap.add_argument("--tokenizer", required=True, help="model directory, tokenizer.json, or hub name (with transformers)")
    ap.add_argument("--input", required=True, action="append", help="a text file (one document) or .jsonl (one per line); repeatable")
    ap.add_argument("--field", default="text", help="the JSONL field holding the text (default: text)")
    ap.add_argument("--format", choices=["llmc", "megatron"], default="llmc", help="output format (default: llmc)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--val-fraction", type=float, default=0.0, help="fraction of documents for validation (default 0)")
    ap.add_argument("--eod-id", type=int, default=None, help="end-of-document token id (default: the tokenizer's EOS)")
    ap.add_argument("--shard-tokens", type=int, default=100_000_000, help="llmc: tokens per shard at most (default 1e8)")
    args = ap.parse_args()
    if not 0.0 <= args.val_fraction < 1.0:
        fail("--val-fraction: must be in [0, 1), got %g" % args.val_fraction)
    if args.shard_tokens < 1:
        fail("--shard-tokens: must be >= 1")

    out_dir_ready(args.out, "--out", OUTPUTS)
    tok = HFTok(args.tokenizer)
    eod = args.eod_id if args.eod_id is not None else tok.eos
    if eod is None:
        fail("%s: the tokenizer has no EOS token: give --eod-id" % args.tokenizer)
    if not 0 <= eod < tok.vocab_size:
        fail("--eod-id: %d is outside the tokenizer's %d ids" % (eod, tok.vocab_size))
    texts = read_documents(args.input, args.field)
    docs = [list(tok.encode(t)) for t in texts]
    # a document without a token would be a lone end-of-document token
    keep = [k for k, d in enumerate(docs) if d]
    if not keep:
        fail("%s: no text to tokenize (every document is empty)" % ", ".join(args.input))
    if len(keep) < len(docs):
        print("note: %d empty documents skipped" % (len(docs) - len(keep)))
    texts, docs = [texts[k] for k in keep], [docs[k] for k in keep]
    nbytes = [len(t.encode("utf-8")) for t in texts]

    # the split: the last documents, or the tail of a single document's tokens
    n_val = 0
    if args.val_fraction > 0 and len(docs) >= 2:
        n_val = min(len(docs) - 1, max(1, round(args.val_fraction * len(docs))))
        train, val = docs[:len(docs) - n_val], docs[len(docs) - n_val:]
        train_bytes, val_bytes = sum(nbytes[:len(docs) - n_val]), sum(nbytes[len(docs) - n_val:])
    elif args.val_fraction > 0:
        d = docs[0]
        cut = len(d) - max(1, round(args.val_fraction * len(d)))
        if cut < 1:
            fail("%s: too few tokens (%d) to split off a validation part" % (args.input[0], len(d)))
        train, val = [d[:cut]], [d[cut:]]
        # bytes of each part, by decoding is not possible without the tokenizer's decode: share by tokens
        train_bytes = round(nbytes[0] * cut / len(d))
        val_bytes = nbytes[0] - train_bytes
    else:
        train, val, train_bytes, val_bytes = docs, [], sum(nbytes), 0
    for part in (train, val):
        for d in part:
            for x in d:
                if not 0 <= x < tok.vocab_size:
                    fail("%s: the tokenizer produced id %d outside its %d ids" % (args.tokenizer, x, tok.vocab_size))
    train = [d + [eod] for d in train]
    val = [d + [eod] for d in val]

    # every output is written as NAME.tmp and renamed into place once all are whole
    n_train = sum(len(d) for d in train)
    n_val_tok = sum(len(d) for d in val)
    written = []  # (tmp, path)
    try:
        if args.format == "llmc":
            stream = [x for d in train for x in d]
            for k, i in enumerate(range(0, len(stream), args.shard_tokens)):
                p = os.path.join(args.out, "train_%03d.bin" % k)
                write_llmc_shard(p + ".tmp", stream[i:i + args.shard_tokens], tok.vocab_size)
                written.append((p + ".tmp", p))
            if val:
                p = os.path.join(args.out, "val_000.bin")
                write_llmc_shard(p + ".tmp", [x for d in val for x in d], tok.vocab_size)
                written.append((p + ".tmp", p))
            p = os.path.join(args.out, "meta.txt")
            open_tmp.append(p + ".tmp")
            with open(p + ".tmp", "w") as f:
                f.write("vocab_size %d\ntrain_bytes %d\ntrain_tokens %d\nval_bytes %d\nval_tokens %d\n" %
                        (tok.vocab_size, train_bytes, n_train - len(train), val_bytes, n_val_tok - len(val)))
                f.flush()
                os.fsync(f.fileno())
            written.append((p + ".tmp", p))
        else:
            dtype = np.uint16 if tok.vocab_size < 65500 else np.int32
            for split, part in (("train", train), ("val", val)):
                if not part:
                    continue
                prefix = os.path.join(args.out, split + "_text_document")
                open_tmp.extend([prefix + ".tmp.idx", prefix + ".tmp.bin"])
                write_indexed_dataset(prefix + ".tmp", part, list(range(len(part) + 1)), dtype)
                for ext in (".tmp.idx", ".tmp.bin"):  # the fixture writer does not fsync: durable before the rename
                    fd = os.open(prefix + ext, os.O_RDONLY)
                    os.fsync(fd)
                    os.close(fd)
                written += [(prefix + ".tmp.bin", prefix + ".bin"), (prefix + ".tmp.idx", prefix + ".idx")]
    except OSError as e:
        fail("%s: write failed (%s)" % (e.filename or args.out, e.strerror or e))
    commit_tmp(written)
    names = [p for _, p in written]
    print("%s: %d documents -> %d train tokens (%d docs), %d val tokens (%d docs), eod %d, vocab %d" %
          (args.tokenizer, len(docs), n_train, len(train), n_val_tok, len(val), eod, tok.vocab_size))
    for p in names:
        print("  wrote %s (%d bytes)" % (p, os.path.getsize(p)))


if __name__ == "__main__":
    main()
