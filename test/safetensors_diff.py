"""Differential test of llmc/formats/safetensors.h against the reference safetensors library.

Generates valid and corrupt files into test/tmp/safetensors_diff/ (header length off by one or
eight, gaps, overlaps, trailing and missing bytes, offsets out of order or reversed, bad dtypes,
shapes that disagree with the byte count, broken JSON, and random mutations of a valid file's
header numbers), opens each with the library (safetensors.deserialize: the library's own header
checks, no framework needed), with ./test/test_safetensors --open (mega.c's reader, in a child)
and, where numpy is installed, with scripts/convert_mugv.py's own reader (read_safetensors and
every tensor's load, in a child).

The rule: whatever the library refuses, mega.c refuses (exit 1, one stderr line naming the file).
A file the library accepts may be refused by mega.c only where mega.c is stricter on purpose: a
dtype other than F32, F16, BF16 (it cannot use it), or a tensor named twice in the header (the
library keeps the last; mega.c's JSON parser refuses duplicate keys as ambiguous). Any other
disagreement fails.

    python3 test/safetensors_diff.py     (run by test/test_safetensors_diff.sh)
"""
import json
import os
import random
import struct
import subprocess
import sys

from safetensors import deserialize

DIR = "test/tmp/safetensors_diff"
BIN = "./test/test_safetensors"
MEGA_DTYPES = {"F32", "F16", "BF16"}
CONVERT_DTYPES = MEGA_DTYPES | {"F64"}  # convert_mugv.py reads F64 too
# convert_mugv.py's reader on every file named on stdin, in one child: a JSON line per file with its
# exit code (0 when every tensor loads) and what it wrote to stderr
CONVERT = """
import io, json, sys
sys.path.insert(0, "scripts")
import numpy, convert_mugv as cm
cm.np = numpy
for path in sys.stdin.read().split("\\n"):
    err, sys.stderr = sys.stderr, io.StringIO()
    try:
        refs, meta = cm.read_safetensors(path)
        for r in refs.values():
            r.load()
        code = 0
    except SystemExit as e:
        code = e.code
    except Exception as e:  # a traceback in a real run
        code, sys.stderr = 99, io.StringIO("traceback: %r" % e)
    text, sys.stderr = sys.stderr.getvalue(), err
    print(json.dumps([path, code, text]))
"""


def pack(header, data, hlen=None, pad=True):
    """A file: uint64 header length (or hlen), the header text (padded with spaces to 8), data."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text) if hlen is None else hlen) + text + data


def base_tensors():
    """A valid header of three tensors (F32 [2,3], BF16 [5], F16 [0]) and its data."""
    return {"__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "BF16", "shape": [5], "data_offsets": [24, 34]},
            "e": {"dtype": "F16", "shape": [0], "data_offsets": [34, 34]},
            "c": {"dtype": "F16", "shape": [3], "data_offsets": [34, 40]}}, bytes(range(40))


def cases():
    h, d = base_tensors()
    valid = pack(h, d)
    n = struct.unpack("<Q", valid[:8])[0]
    yield "valid", valid
    yield "valid_unpadded", pack(h, d, pad=False)
    yield "valid_empty_file", pack({}, b"")
    for delta in (-8, -1, 1, 8):
        yield f"header_len_{delta:+d}", struct.pack("<Q", n + delta) + valid[8:]
    yield "header_len_huge", struct.pack("<Q", 1 << 62) + valid[8:]
    yield "header_len_zero", struct.pack("<Q", 0) + valid[8:]
    yield "short_file", valid[:5]
    yield "trailing_1", valid + b"\0"
    yield "trailing_8", valid + b"\0" * 8
    yield "missing_last_byte", valid[:-1]
    yield "no_data", pack(h, b"")

    def edit(name, fn, data=d):
        hh = json.loads(json.dumps(h))
        fn(hh)
        return name, pack(hh, data)

    def set_(t, k, v):
        return lambda hh: hh[t].__setitem__(k, v)

    yield edit("gap_middle", lambda hh: (set_("b", "data_offsets", [26, 36])(hh), set_("c", "data_offsets", [36, 42])(hh),
                                         set_("e", "data_offsets", [36, 36])(hh)), d + b"\0\0")
    yield edit("gap_leading", lambda hh: [hh[t].__setitem__("data_offsets", [o + 4 for o in hh[t]["data_offsets"]]) for t in "abec"],
               d + b"\0" * 4)
    yield edit("gap_end", lambda hh: hh.pop("c"))
    yield edit("overlap", set_("b", "data_offsets", [22, 32]))
    yield edit("overlap_same_range", lambda hh: hh.__setitem__("d", dict(hh["c"])))
    yield edit("empty_inside_other", set_("e", "data_offsets", [4, 4]))
    yield edit("empty_past_end", set_("e", "data_offsets", [60, 60]))
    yield edit("reversed_offsets", set_("e", "data_offsets", [34, 30]))
    yield edit("offsets_out_of_json_order", lambda hh: hh.update({"a": hh.pop("a")}))  # accepted by both
    yield edit("offsets_swapped", lambda hh: (set_("a", "data_offsets", [16, 40])(hh), set_("b", "data_offsets", [6, 16])(hh),
                                              set_("c", "data_offsets", [0, 6])(hh), set_("e", "data_offsets", [6, 6])(hh)))
    yield edit("offsets_three", set_("a", "data_offsets", [0, 24, 24]))
    yield edit("offsets_one", set_("a", "data_offsets", [0]))
    yield edit("offsets_negative", set_("a", "data_offsets", [-4, 24]))
    yield edit("offsets_float", set_("a", "data_offsets", [0.0, 24]))
    yield edit("offsets_string", set_("a", "data_offsets", ["0", 24]))
    yield edit("offsets_missing", lambda hh: hh["a"].pop("data_offsets"))
    for dt in ("F64", "I64", "U8", "BOOL", "f32", "FLOAT", "", 4, None):
        yield edit(f"dtype_{dt!r}", set_("e", "dtype", dt))
    yield edit("dtype_missing", lambda hh: hh["a"].pop("dtype"))
    yield edit("shape_fewer", set_("a", "shape", [2, 2]))
    yield edit("shape_more", set_("a", "shape", [2, 4]))
    yield edit("shape_scalar_for_6", set_("a", "shape", []))
    yield edit("shape_negative", set_("a", "shape", [-2, -3]))
    yield edit("shape_float", set_("a", "shape", [2.0, 3]))
    yield edit("shape_string", set_("a", "shape", "6"))
    yield edit("shape_missing", lambda hh: hh["a"].pop("shape"))
    yield edit("shape_huge", set_("a", "shape", [1 << 40, 1 << 40]))
    yield edit("bf16_as_f32", set_("b", "dtype", "F32"))
    yield edit("metadata_number", set_("__metadata__", "format", 1))
    yield edit("metadata_not_object", lambda hh: hh.__setitem__("__metadata__", "pt"))
    yield edit("tensor_not_object", lambda hh: hh.__setitem__("x", [1, 2]))
    text = json.dumps(h, separators=(",", ":")).encode()
    yield "json_truncated", pack(text[:-1], d)
    yield "json_array", pack(b"[1,2]", b"")
    yield "json_garbage_after", pack(text + b"x", d)
    yield "json_leading_space", pack(b" " + text, d)
    yield "json_invalid_utf8", pack(text.replace(b'"pt"', b'"p\xc3("'), d)
    yield "json_duplicate_key", pack(text[:-1] + b',"a":' + json.dumps(h["a"]).encode() + b"}", d)
    yield "json_nul_padding", pack(text + b"\0" * (-len(text) % 8 or 8), d, pad=False)

    # random mutations of the valid file: one number in the header, or the header length, or the tail
    rng = random.Random(19)
    for i in range(150):
        kind = rng.randrange(3)
        if kind == 0:
            hh = json.loads(json.dumps(h))
            t = rng.choice("abec")
            field = rng.choice(["shape", "data_offsets"])
            arr = hh[t][field]
            if not arr:
                arr.append(rng.randrange(4))
            else:
                j = rng.randrange(len(arr))
                arr[j] = max(0, arr[j] + rng.choice([-8, -2, -1, 1, 2, 8]))
            yield f"random_{i:03d}_{t}_{field}", pack(hh, d)
        elif kind == 1:
            yield f"random_{i:03d}_hlen", struct.pack("<Q", max(0, n + rng.randint(-12, 12))) + valid[8:]
        else:
            k = rng.randint(-6, 6)
            yield f"random_{i:03d}_tail", valid[:len(valid) + k] if k < 0 else valid + bytes(rng.randrange(256) for _ in range(k))


def library_accepts(blob):
    try:
        deserialize(blob)
        return True, ""
    except Exception as e:  # the library's own error types (SafetensorError, ...)
        return False, f"{type(e).__name__}: {e}"


def verdict(path, blob, lib_ok, lib_err, r, dtypes_ok):
    """(agrees, what happened) for one reader's run r on the file at path."""
    err = r.stderr.strip()
    accepts = r.returncode == 0 and not err
    one_line = r.returncode == 1 and len(r.stderr.splitlines()) == 1 and path in err
    if not lib_ok:
        return one_line, f"library refuses ({lib_err}); reader: " + (err if one_line else f"exit {r.returncode}, stderr {err!r}")
    if accepts:
        return True, "both accept"
    dtypes = {v.get("dtype") for k, v in json.loads(blob[8:8 + struct.unpack("<Q", blob[:8])[0]]).items() if k != "__metadata__"}
    good = one_line and (not dtypes <= dtypes_ok or "duplicate keys" in err)
    return good, f"library accepts; reader refuses: {err}" + ("" if good else " (only an unsupported dtype or a duplicate key may be)")


def main():
    os.makedirs(DIR, exist_ok=True)
    if not os.access(BIN, os.X_OK):
        print(f"FAIL safetensors_diff: {BIN} is missing (make test/test_safetensors)")
        return 1
    files = []
    for name, blob in cases():
        path = f"{DIR}/{name}.safetensors"
        with open(path, "wb") as f:
            f.write(blob)
        files.append((name, path, blob, library_accepts(blob)))
    runs = {"mega.c": {}}
    for name, path, _, _ in files:
        runs["mega.c"][path] = subprocess.run([BIN, "--open", path], capture_output=True, text=True, errors="replace")
    try:
        import numpy  # noqa: F401
        r = subprocess.run([sys.executable, "-c", CONVERT], input="\n".join(p for _, p, _, _ in files), capture_output=True, text=True)
        runs["convert_mugv.py"] = {p: subprocess.CompletedProcess([], c, "", t) for p, c, t in map(json.loads, r.stdout.splitlines())}
        if len(runs["convert_mugv.py"]) != len(files):
            print(f"FAIL safetensors_diff/convert_mugv.py: the reader's child failed: {r.stderr.strip()[-300:]}")
            return 1
    except ImportError:
        print("SKIP safetensors_diff/convert_mugv.py: no numpy (its reader needs it)")
    passed = failed = 0
    for reader, results in runs.items():
        dtypes_ok = CONVERT_DTYPES if reader == "convert_mugv.py" else MEGA_DTYPES
        for name, path, blob, (lib_ok, lib_err) in files:
            good, what = verdict(path, blob, lib_ok, lib_err, results[path], dtypes_ok)
            if name.startswith("random_") and good:
                passed += 1
                continue  # the 150 random cases are counted, not listed, when they agree
            print(f"{'PASS' if good else 'FAIL'} safetensors_diff/{reader}/{name}: {what}")
            passed += good
            failed += not good
    print(f"{'PASS' if not failed else 'FAIL'} safetensors_diff/summary: {passed} cases agree, {failed} disagree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
