#!/usr/bin/env bash
# scripts/prepare_dfm.py on small tar shards written here in NVIDIA DFM's Energon
# WebDataset layout (as examples/megatron/recipes/dit/prepare_energon_dataset_*.py
# writes them through webdataset's ShardWriter: KEY.pth = torch.save of a bf16
# latent [1, C, T, H, W], KEY.pickle = pickle.dumps of bf16 T5 embeddings
# [1, 512, D] zero after the caption, KEY.json = {"image_height", "image_width"}),
# with the variations the converter accepts (a [C, T, H, W] fp32 latent, an fps
# and a .txt caption, an unknown member, a zero row inside the caption). The
# converted shards are parsed here byte by byte and must hold exactly the
# expected values (f32; bf16 rounded to nearest even), the C++ loader must read
# them (test/test_latent_data --dump), and bad inputs must end with exit 1 and one
# stderr line, leaving no shard behind. Prints SKIP when no python3 with torch and
# numpy is found; set PYTHON to choose the interpreter.
set -u
cd "$(dirname "$0")/.."

. test/test_lib.sh   # test_begin, ok/bad, test_python, expect_one_line
test_begin prepare_dfm
test_python prepare_dfm "torch, numpy"   # sets PY, or SKIP
if [ ! -x test/test_latent_data ]; then
    echo "FAIL prepare_dfm/setup: test/test_latent_data is not built (make test/test_latent_data)"
    exit 1
fi

# ---- DFM shards (and bad variants) and the values the converter must store
"$PY" - "$T" <<'EOF' || { echo "FAIL prepare_dfm/setup: writing the DFM shards failed"; exit 1; }
import io, json, os, pickle, sys, tarfile
import numpy as np, torch
d = sys.argv[1]
C, D, LPAD = 4, 8, 512
g = torch.Generator().manual_seed(0)

def pth(x):
    b = io.BytesIO(); torch.save(x, b); return b.getvalue()

def t5(n, zero_row=None):
    e = torch.zeros(1, LPAD, D, dtype=torch.bfloat16)
    e[0, :n] = torch.randn(n, D, generator=g).to(torch.bfloat16)
    if zero_row is not None: e[0, zero_row] = 0
    return e

def write_tar(path, samples):
    with tarfile.open(path, "w") as tf:
        for key, members in samples:
            for ext, data in members:
                ti = tarfile.TarInfo("%s.%s" % (key, ext)); ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))

# (tar, key, latent, text, fps, caption, extra members)
spec = [("rank0-000000.tar", "000000", (3, 4, 6), 5, None, None, None),
        ("rank0-000000.tar", "000001", (1, 2, 2), 512, 12.0, "a red circle", None),   # no padding left; fps; caption
        ("rank0-000000.tar", "000002", (2, 3, 4), 9, None, None, "zero"),             # a zero row inside the caption
        ("rank1-000000.tar", "000003", (5, 2, 2), 1, None, None, "fp32"),             # [C, T, H, W] float32
        ("rank1-000000.tar", "000004", (2, 4, 4), 7, 30, None, "extra")]              # an unknown member
tars, exp = {}, []
for tar, key, (t, h, w), n, fps, cap, var in spec:
    if var == "fp32":
        lat = torch.randn(C, t, h, w, generator=g) * 3 + 1
    else:
        lat = (torch.randn(1, C, t, h, w, generator=g) * 3 + 1).to(torch.bfloat16)
    emb = t5(n, zero_row=2 if var == "zero" else None)
    js = {"image_height": 8 * h, "image_width": 8 * w}
    if fps is not None: js["fps"] = fps
    members = [("pth", pth(lat)), ("pickle", pickle.dumps(emb)), ("json", json.dumps(js).encode())]
    if cap: members.append(("txt", cap.encode()))
    if var == "extra": members.append(("meta.bin", b"\x00\x01"))
    tars.setdefault(tar, []).append((key, members))
    exp.append(dict(T=t, H=h, W=w, lat=lat.float().reshape(C, t, h, w).numpy(), txt=emb[0, :n].float().numpy(),
                    txt_pad=emb[0].float().numpy(), fps=float(fps or 24.0), caption=cap or "", key="%s:%s" % (tar, key)))
os.makedirs(d + "/dfm", exist_ok=True)
for tar, samples in tars.items():
    write_tar(d + "/dfm/" + tar, samples)
np.save(d + "/expected.npy", np.array(exp, dtype=object), allow_pickle=True)
json.dump({"mean": [0.5, -1.0, 0.0, 2.0], "std": [1.0, 2.0, 0.5, 3.0]}, open(d + "/vae_stats.json", "w"))

# bad shards: each breaks one thing of a good sample
def good(key="000000", lat=None, emb=None, js=None):
    lat = (torch.randn(1, C, 2, 2, 2, generator=g)).to(torch.bfloat16) if lat is None else lat
    emb = t5(3) if emb is None else emb
    js = {"image_height": 16, "image_width": 16} if js is None else js
    return [("pth", pth(lat)), ("pickle", pickle.dumps(emb)), ("json", js if isinstance(js, bytes) else json.dumps(js).encode())]
os.makedirs(d + "/bad", exist_ok=True)
bad = {
    "no_pickle": [("000000", [m for m in good() if m[0] != "pickle"])],
    "latent_3d": [("000000", [("pth", pth(torch.zeros(C, 2, 2)))] + good()[1:])],
    "latent_nan": [("000000", [("pth", pth(torch.full((1, C, 1, 2, 2), float("nan"))))] + good()[1:])],
    "text_zero": [("000000", good(emb=torch.zeros(1, LPAD, D, dtype=torch.bfloat16)))],
    "text_not_pickle": [("000000", good()[:1] + [("pickle", b"not a pickle")] + good()[2:])],
    "json_list": [("000000", good(js=b"[1, 2]"))],
    "json_fps": [("000000", good(js={"fps": -3}))],
    "channels": [("000000", good()), ("000001", good(lat=torch.zeros(1, C + 1, 1, 2, 2)))],
    "text_channels": [("000000", good()), ("000001", good(emb=torch.ones(1, 4, D + 2)))],
    "repeat_key": [("000000", good()), ("000001", good()), ("000000", good())],
}
for name, samples in bad.items():
    write_tar("%s/bad/%s.tar" % (d, name), samples)
# a good first tar and a bad second one: with --shard-samples 1 the first shards are written before the failure
write_tar(d + "/bad/late_a.tar", [("000000", good()), ("000001", good())])
write_tar(d + "/bad/late_b.tar", [("000002", [("pth", pth(torch.zeros(C, 2, 2)))] + good()[1:])])
open(d + "/bad/not_a_tar.tar", "wb").write(b"this is not a tar file at all" * 10)
EOF

# SHARDS_DIR NAME BF16 KEEP_PADDING STATS: parse the .lat files by their documented layout and compare every
# value with expected.npy (exact: bf16 data converts to f32 exactly; bf16 output rounds to nearest even)
check_shards() {
    "$PY" - "$T" "$@" <<'EOF'
import glob, struct, sys
import numpy as np
d, out, name, bf16, keep, stats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5] == "1", sys.argv[6] == "1"
exp = list(np.load(d + "/expected.npy", allow_pickle=True))
def rb(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
got = []
for path in sorted(glob.glob("%s/%s_*.lat" % (out, name))):
    b = open(path, "rb").read()
    magic, ver, C, D, ldt, tdt, has_norm, zero = struct.unpack_from("<8i", b, 0)
    n, = struct.unpack_from("<q", b, 32)
    assert (magic, ver, C, D, ldt, tdt, has_norm, zero) == (20251205, 1, 4, 8, int(bf16), int(bf16), int(stats), 0), (path, magic, C, D, ldt, has_norm)
    assert b[40:1024] == bytes(984), path
    off = 1024
    if has_norm:
        mean = np.frombuffer(b, "<f4", 4, off); std = np.frombuffer(b, "<f4", 4, off + 16); off += 32
        assert mean.tolist() == [0.5, -1.0, 0.0, 2.0] and std.tolist() == [1.0, 2.0, 0.5, 3.0], (mean, std)
    for i in range(n):
        lo, to, co, cl, T, H, W, L, fps, src, clean, z = struct.unpack_from("<qqqiiiiifiiq", b, off + 64 * i)
        def arr(o, cnt, isbf):
            if isbf:
                return (np.frombuffer(b, "<u2", cnt, o).astype(np.uint32) << 16).view(np.float32)
            return np.frombuffer(b, "<f4", cnt, o)
        got.append(dict(T=T, H=H, W=W, L=L, fps=fps, src=src, clean=clean, z=z, lat=arr(lo, C * T * H * W, bf16).reshape(C, T, H, W),
                        txt=arr(to, L * D, bf16).reshape(L, D), caption=b[co:co + cl].decode()))
assert len(got) == len(exp), (len(got), len(exp))
for i, (e, g) in enumerate(zip(exp, got)):
    txt = e["txt_pad"] if keep else e["txt"]
    lat, txt = (rb(e["lat"]), rb(txt)) if bf16 else (e["lat"], txt)
    assert (g["T"], g["H"], g["W"], g["L"]) == (e["T"], e["H"], e["W"], txt.shape[0]), (i, g["T"], g["H"], g["W"], g["L"])
    assert g["fps"] == e["fps"] and g["src"] == int(stats) and g["clean"] == 0 and g["z"] == 0 and g["caption"] == e["caption"], (i, g["fps"], g["caption"])
    assert np.array_equal(g["lat"], lat), "sample %d latent differs (max %g)" % (i, np.abs(g["lat"] - lat).max())
    assert np.array_equal(g["txt"], txt), "sample %d text differs" % i
tsv = open("%s/%s_samples.tsv" % (out, name)).read().splitlines()
assert [l.split("\t")[1] for l in tsv[1:]] == [e["key"] for e in exp], tsv
print("%d samples in %d shards match exactly" % (len(got), len(glob.glob("%s/%s_*.lat" % (out, name)))))
EOF
}

# ---- conversions: f32 and bf16, with the caption's rows or all 512, raw with VAE statistics
run_case() {   # NAME BF16 KEEP STATS ARGS...
    local name=$1 bf=$2 keep=$3 stats=$4; shift 4
    local out="$T/out_$name"
    if "$PY" scripts/prepare_dfm.py --input "$T/dfm" --out-dir "$out" --shard-samples 2 "$@" > "$T/$name.log" 2>&1; then
        if msg=$(check_shards "$out" train $bf $keep $stats 2>&1); then ok "convert_$name" "$msg"
        else ko "convert_$name" "$(echo "$msg" | tail -1)"; fi
    else
        ko "convert_$name" "exit $?: $(tail -2 "$T/$name.log")"
    fi
}
run_case f32 0 0 0 --dtype f32
run_case bf16 1 0 0 --dtype bf16
run_case f32_padding 0 1 0 --dtype f32 --keep-text-padding
run_case f32_stats 0 0 1 --dtype f32 --vae-stats "$T/vae_stats.json"
# the C++ loader reads them: 5 samples, their shapes, text lengths and fps
if ./test/test_latent_data --dump "$T/out_f32/train_*.lat" 4 8 512 > "$T/dump.txt" 2> "$T/dump.err"; then
    shapes=$(tail -n +2 "$T/dump.txt" | awk '{for (i = 1; i < NF; i++) if ($i == "T" || $i == "H" || $i == "W" || $i == "L" || $i == "fps") printf "%s ", $(i+1); printf "| "}')
    want="3 4 6 5 24 | 1 2 2 512 12 | 2 3 4 9 24 | 5 2 2 1 24 | 2 4 4 7 30 | "
    [ "$shapes" = "$want" ] && ok loader_reads "T H W L fps per sample: $shapes" || ko loader_reads "got '$shapes', expected '$want'"
else
    ko loader_reads "the C++ loader failed: $(cat "$T/dump.err")"
fi
# --limit and the input given as tar files and a glob
if "$PY" scripts/prepare_dfm.py --input "$T/dfm/rank1-000000.tar" "$T/dfm/rank0-*.tar" --out-dir "$T/out_limit" --limit 4 --dtype f32 > "$T/limit.log" 2>&1 &&
   [ "$(tail -n +2 "$T/out_limit/train_samples.tsv" | cut -f2 | tr '\n' ' ')" = "rank1-000000.tar:000003 rank1-000000.tar:000004 rank0-000000.tar:000000 rank0-000000.tar:000001 " ]; then
    ok limit_and_order "files then glob, in the order given, first 4 samples"
else
    ko limit_and_order "$(tail -2 "$T/limit.log"; cat "$T/out_limit/train_samples.tsv" 2>/dev/null)"
fi

# ---- bad inputs: exit 1, one line naming the tar and the sample
expect() { local name=$1 pattern=$2; shift 2; expect_one_line "bad_$name" "$pattern" "$PY" scripts/prepare_dfm.py --out-dir "$T/bad_out" "$@"; }
B="$T/bad"
expect no_pickle "$B/no_pickle.tar: sample '000000' has no .pickle member (found: json, pth)" --input "$B/no_pickle.tar"
expect latent_3d "$B/latent_3d.tar: sample '000000': latent (.pth): expected shape" --input "$B/latent_3d.tar"
expect latent_nan "$B/latent_nan.tar: sample '000000': latent (.pth): expected finite values" --input "$B/latent_nan.tar"
expect text_zero "$B/text_zero.tar: sample '000000': text length (rows up to the last nonzero one): expected in \[1, 512\]" --input "$B/text_zero.tar"
expect text_too_long "$T/dfm/rank0-000000.tar: sample '000001': text length" --input "$T/dfm" --max-text-len 100
expect text_not_pickle "$B/text_not_pickle.tar: sample '000000': cannot unpickle" --input "$B/text_not_pickle.tar"
expect json_list "$B/json_list.tar: sample '000000': .json: expected a JSON object, found list" --input "$B/json_list.tar"
expect json_fps "$B/json_fps.tar: sample '000000': .json fps: expected a number > 0, found -3" --input "$B/json_fps.tar"
expect channels "$B/channels.tar: sample '000001': latent channels: expected 4 (as the first sample), found 5" --input "$B/channels.tar"
expect text_channels "$B/text_channels.tar: sample '000001': text embedding channels: expected 8" --input "$B/text_channels.tar"
expect repeat_key "$B/repeat_key.tar: sample '000000' repeats" --input "$B/repeat_key.tar"
expect not_a_tar "$B/not_a_tar.tar: cannot read the tar file" --input "$B/not_a_tar.tar"
expect no_input "--input $T/nothing_\*.tar: no such file, folder or matching .tar files" --input "$T/nothing_*.tar"
mkdir -p "$T/empty_dir"
expect empty_folder "--input $T/empty_dir: the folder holds no .tar files" --input "$T/empty_dir"
expect stats_channels "VAE statistics: 2 channels given, the latents have 4" --input "$T/dfm" --vae-mean 0,0 --vae-std 1,1
expect negative_limit "--limit: must be >= 0" --input "$T/dfm" --limit -1
expect late_shard "$B/late_b.tar: sample '000002': latent (.pth): expected shape" --input "$B/late_a.tar" "$B/late_b.tar" --shard-samples 1
: > "$T/afile"
expect_one_line bad_out_dir_is_file "--out-dir $T/afile: is a file, expected a folder" "$PY" scripts/prepare_dfm.py --input "$T/dfm" --out-dir "$T/afile"
sum_before=$(cat "$T"/out_f32/* | md5sum)
expect_one_line bad_rerun_same_out_dir "--out-dir $T/out_f32: already holds train_000.lat" "$PY" scripts/prepare_dfm.py --input "$T/dfm" --out-dir "$T/out_f32"
[ "$(cat "$T"/out_f32/* | md5sum)" = "$sum_before" ] && ok rerun_untouched "the first run's shards are unchanged" || ko rerun_untouched "$(ls "$T/out_f32")"
[ ! -e "$T/bad_out" ] || [ -z "$(ls -A "$T/bad_out")" ] && ok no_partial_shards "failed runs left no file behind (no .lat, no .tmp)" \
    || ko no_partial_shards "$(ls -A "$T/bad_out")"

echo "prepare_dfm: $pass passed, $fail failed"
[ $fail -eq 0 ]
