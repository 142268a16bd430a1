#!/usr/bin/env bash
# scripts/prepare_mugv.py on a tiny fake MUG-V directory (train.csv, latent and
# text-feature .pt files made here with torch), then the C++ loader reads the
# shards back (test/test_latent_data --dump) and every sample's shapes, fps,
# source, caption and value sums must match what the .pt files hold (real
# latents normalized with the given VAE statistics, only mask == 1 tokens).
# Bad inputs (among them --limit -3, a repeated or empty sample_id, --out-dir a
# file, under a file or in /proc, a folder holding an earlier run's shards) must
# end with exit 1 and one stderr line, leaving no shard behind (also when a later
# shard fails). Prints SKIP when no
# python3 with torch and numpy is found (CI may not have them); set PYTHON to
# choose the interpreter.
set -u
cd "$(dirname "$0")/.."

. test/test_lib.sh   # test_begin, ok/bad, test_python, latest_step, wait_line
test_begin prepare_mugv
test_python prepare_mugv "torch, numpy"   # sets PY, or SKIP
if [ ! -x test/test_latent_data ]; then
    echo "FAIL prepare_mugv/setup: test/test_latent_data is not built (make test/test_latent_data)"
    exit 1
fi

# ---- the fake MUG-V directory and the values the loader must produce
"$PY" - "$T" <<'EOF' || { echo "FAIL prepare_mugv/setup: making the fake MUG-V directory failed"; exit 1; }
import os, sys, json
import numpy as np, torch
d = sys.argv[1]
os.makedirs(d + "/mugv/latents", exist_ok=True); os.makedirs(d + "/mugv/text", exist_ok=True)
C, D, L = 24, 64, 20
g = torch.Generator().manual_seed(0)
mean = [0.1 * c - 1.0 for c in range(C)]; std = [0.5 + 0.05 * c for c in range(C)]
json.dump({"mean": mean, "std": std}, open(d + "/vae_stats.json", "w"))
shapes = [(3, 4, 6), (1, 2, 2), (5, 3, 4), (2, 4, 4), (4, 2, 6), (1, 1, 1), (2, 6, 2)]
rows, exp = ["sample_id,source,latent_path,text_feat_path,caption"], []
for i, (t, h, w) in enumerate(shapes):
    src = "real" if i % 2 == 0 else "generated"
    lat = torch.randn(C, t, h, w, generator=g) * 2 + 0.5
    if i == 3: lat = lat.to(torch.bfloat16)           # stored as bf16 in the .pt
    if i == 4: lat = lat.unsqueeze(0)                 # [1, C, T, H, W]
    n = [1, 20, 7, 13, 3, 9, 5][i]
    mask = torch.zeros(1, L, dtype=torch.long)
    if i == 2: mask[0, ::3] = 1; n = int(mask.sum())  # not a prefix
    else: mask[0, :n] = 1
    y = torch.randn(1, 1, L, D, generator=g)
    if i == 5: y = y.to(torch.bfloat16)
    torch.save(lat, "%s/mugv/latents/s%d.pt" % (d, i))
    torch.save({"y": y, "mask": mask}, "%s/mugv/text/s%d.pt" % (d, i))
    rows.append("vid%04d,%s,latents/s%d.pt,%s/mugv/text/s%d.pt,\"clip %d, %s\"" % (i, src, i, os.path.abspath(d), i, i, src))
    z = lat.float().reshape(C, t, h, w).numpy().astype(np.float64)
    if src == "real":
        z = (z - np.array(mean)[:, None, None, None]) / np.array(std)[:, None, None, None]
    txt = y[0, 0].float().numpy()[mask[0].numpy() == 1].astype(np.float64)
    exp.append(dict(T=t, H=h, W=w, L=n, source=int(src == "real"), lat=z, txt=txt, caption="clip %d, %s" % (i, src)))
open(d + "/mugv/train.csv", "w").write("\n".join(rows) + "\n")
np.save(d + "/expected.npy", np.array(exp, dtype=object), allow_pickle=True)
EOF

# compare DUMP with expected.npy; bf16=1 rounds the expected values to bf16 first
compare() {
    "$PY" - "$T" "$1" "$2" <<'EOF'
import sys
import numpy as np
d, dump, bf16 = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
exp = np.load(d + "/expected.npy", allow_pickle=True)
lines = open(dump).read().splitlines()
head = lines[0].split()
assert head[1] == str(len(exp)) and head[3] == "24" and head[5] == "64" and head[7] == "1", "header line: " + lines[0]
mean = np.array([0.1 * c - 1.0 for c in range(24)], dtype=np.float32)[:, None, None, None]
std = np.array([0.5 + 0.05 * c for c in range(24)], dtype=np.float32)[:, None, None, None]
def rb(x):  # bf16 round trip, nearest even
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
for i, (e, line) in enumerate(zip(exp, lines[1:])):
    parts = line.split(" caption ", 1)
    f = parts[0].split()
    kv = dict(zip(f[0::2], f[1::2]))
    assert int(kv["sample"]) == i and int(kv["T"]) == e["T"] and int(kv["H"]) == e["H"] and int(kv["W"]) == e["W"], line
    assert int(kv["L"]) == e["L"] and int(kv["source"]) == e["source"] and float(kv["fps"]) == 24.0 and int(kv["clean"]) == 0, line
    assert parts[1] == e["caption"], (parts[1], e["caption"])
    lat, txt = e["lat"], e["txt"]
    if bf16:  # stored raw in bf16, normalized after
        raw = lat * std.astype(np.float64) + mean.astype(np.float64) if e["source"] else lat
        raw = rb(raw.astype(np.float32)).astype(np.float64)
        lat = (raw - mean) / std if e["source"] else raw
        txt = rb(txt.astype(np.float32)).astype(np.float64)
    for name, want in (("lat_sum", lat.sum()), ("lat_sumsq", (lat * lat).sum()), ("text_sum", txt.sum()), ("text_sumsq", (txt * txt).sum())):
        got = float(kv[name])
        tol = 1e-4 * (1 + np.abs(lat).sum() if name.startswith("lat") else 1 + np.abs(txt).sum())
        assert abs(got - want) <= tol, "sample %d %s: got %r want %r" % (i, name, got, want)
print("%d samples match" % len(exp))
EOF
}

# ---- f32 and bf16 conversions, read back by the C++ loader
for dt in f32 bf16; do
    out="$T/out_$dt"
    if "$PY" scripts/prepare_mugv.py --csv "$T/mugv/train.csv" --out-dir "$out" --vae-stats "$T/vae_stats.json" --dtype $dt --shard-samples 3 \
         > "$T/convert_$dt.log" 2>&1; then
        n=$(ls "$out"/train_*.lat 2>/dev/null | wc -l)
        [ "$n" -eq 3 ] && [ -f "$out/train_samples.tsv" ] && ok "convert_$dt: 7 samples -> $n shards of <= 3" || ko "convert_$dt: expected 3 shards, found $n"
    else
        ko "convert_$dt: exit code $?: $(tail -2 "$T/convert_$dt.log")"
    fi
    if ./test/test_latent_data --dump "$out/train_*.lat" 24 64 300 > "$T/dump_$dt.txt" 2> "$T/dump_$dt.err"; then
        bf=0; [ $dt = bf16 ] && bf=1
        if msg=$(compare "$T/dump_$dt.txt" $bf 2>&1); then
            ok "loader_reads_$dt: $msg (shapes, fps, source, captions, normalized real latents, mask==1 tokens only)"
        else
            ko "loader_reads_$dt: $(echo "$msg" | tail -1)"
        fi
    else
        ko "loader_reads_$dt: the C++ loader failed: $(cat "$T/dump_$dt.err")"
    fi
done
# the C++ loader checks the model's sizes against what was converted
./test/test_latent_data --dump "$T/out_f32/train_*.lat" 24 64 10 > /dev/null 2> "$T/maxlen.err"
rc=$?
[ $rc -eq 1 ] && [ "$(grep -c . "$T/maxlen.err")" -eq 1 ] && grep -q "text length" "$T/maxlen.err" && ok "loader_max_text_len: $(cat "$T/maxlen.err")" \
    || ko "loader_max_text_len: exit $rc: $(cat "$T/maxlen.err")"

# ---- bad inputs: exit 1, one line
expect() { local name=$1 pattern=$2; shift 2; expect_one_line "bad_$name" "$pattern" "$PY" scripts/prepare_mugv.py "$@"; }   # NAME PATTERN ARGS...
csv="$T/mugv/train.csv"
expect no_stats_for_real "give the VAE's per-channel" --csv "$csv" --out-dir "$T/bad"
expect stats_wrong_channels "24" --csv "$csv" --out-dir "$T/bad" --vae-mean 0,0 --vae-std 1,1
expect zero_std "std" --csv "$csv" --out-dir "$T/bad" --vae-mean 0,0 --vae-std 1,0
expect text_too_long "text length" --csv "$csv" --out-dir "$T/bad" --vae-stats "$T/vae_stats.json" --max-text-len 10
expect missing_csv "does not exist" --csv "$T/nope.csv" --out-dir "$T/bad"
sed 's/,source,/,origin,/' "$csv" > "$T/mugv/nocol.csv"
expect missing_column "missing column 'source'" --csv "$T/mugv/nocol.csv" --out-dir "$T/bad"
sed 's/,real,/,photo,/' "$csv" > "$T/mugv/badsrc.csv"
expect bad_source "line 2: source" --csv "$T/mugv/badsrc.csv" --out-dir "$T/bad"
sed 's|latents/s1.pt|latents/missing.pt|' "$csv" > "$T/mugv/missing.csv"
expect missing_latent "missing.pt" --csv "$T/mugv/missing.csv" --out-dir "$T/bad" --vae-stats "$T/vae_stats.json"
"$PY" -c "import torch; torch.save({'y': torch.zeros(1,1,5,64), 'mask': torch.ones(1,4)}, '$T/mugv/badmask.pt')"
sed 's|'"$(cd "$T" && pwd)"'/mugv/text/s0.pt|text/../badmask.pt|' "$csv" > "$T/mugv/badmask.csv"
expect mask_length "mask" --csv "$T/mugv/badmask.csv" --out-dir "$T/bad" --vae-stats "$T/vae_stats.json"
# a sample of the third shard missing: the two shards written before it are not left behind either
sed 's|latents/s6.pt|latents/missing6.pt|' "$csv" > "$T/mugv/missing_late.csv"
expect missing_latent_late_shard "missing6.pt" --csv "$T/mugv/missing_late.csv" --out-dir "$T/bad" --vae-stats "$T/vae_stats.json" --shard-samples 3
expect negative_limit "--limit: must be >= 0" --csv "$csv" --out-dir "$T/bad" --vae-stats "$T/vae_stats.json" --limit -3
sed 's/^vid0003,/vid0001,/' "$csv" > "$T/mugv/dup.csv"
expect duplicate_sample_id "dup.csv line 5: sample_id 'vid0001' repeats line 3" --csv "$T/mugv/dup.csv" --out-dir "$T/bad" --vae-stats "$T/vae_stats.json"
sed 's/^vid0002,/,/' "$csv" > "$T/mugv/noid.csv"
expect empty_sample_id "noid.csv line 4: sample_id is empty" --csv "$T/mugv/noid.csv" --out-dir "$T/bad" --vae-stats "$T/vae_stats.json"
: > "$T/afile"
expect out_dir_is_file "--out-dir $T/afile: is a file, expected a folder" --csv "$csv" --out-dir "$T/afile" --vae-stats "$T/vae_stats.json"
expect out_dir_under_file "--out-dir $T/afile/x: cannot make the folder" --csv "$csv" --out-dir "$T/afile/x" --vae-stats "$T/vae_stats.json"
expect out_dir_in_proc "--out-dir /proc/x/y: cannot make the folder" --csv "$csv" --out-dir /proc/x/y --vae-stats "$T/vae_stats.json"
sum_before=$(cat "$T"/out_f32/* | md5sum)
expect rerun_same_out_dir "--out-dir $T/out_f32: already holds train_000.lat, train_001.lat, train_002.lat and 1 more" \
    --csv "$csv" --out-dir "$T/out_f32" --vae-stats "$T/vae_stats.json" --limit 2
[ "$(cat "$T"/out_f32/* | md5sum)" = "$sum_before" ] && ok "rerun_untouched: the first run's shards are unchanged" || ko "rerun_untouched: $(ls "$T/out_f32")"
# another --name beside them is fine (train and val shards share a folder)
if "$PY" scripts/prepare_mugv.py --csv "$csv" --out-dir "$T/out_f32" --name val --vae-stats "$T/vae_stats.json" --limit 2 > "$T/val.log" 2>&1 &&
   [ -f "$T/out_f32/val_000.lat" ] && [ -f "$T/out_f32/val_samples.tsv" ]; then
    ok "second_name_same_folder: --name val writes val_000.lat beside the train shards"
else
    ko "second_name_same_folder: $(tail -2 "$T/val.log")"
fi
[ ! -e "$T/bad" ] || [ -z "$(ls -A "$T/bad")" ] && ok "no_partial_shards: failed runs left no file behind (no .lat, no .tmp)" \
    || ko "no_partial_shards: $(ls -A "$T/bad")"

echo "prepare_mugv: $pass passed, $fail failed"
[ $fail -eq 0 ]
