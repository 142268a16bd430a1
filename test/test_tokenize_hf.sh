#!/usr/bin/env bash
# scripts/tokenize_hf.py with test/data/hf/llama_tiny's tokenizer.json on a small text file and a
# JSONL file: the llm.c shards pass the C++ loader's validation (test/test_dataloader --init),
# the Megatron .idx/.bin pass llmc/data/megatron_data.h's (test/test_megatron_data --open), and their
# tokens are exactly each document's ids from the tokenizers library followed by the
# end-of-document token; meta.txt counts match; bad input ends with exit 1 and one stderr line
# and leaves no output (--out a file, under a file or in /proc, a missing tokenizer folder, an
# empty input); a second run into a folder holding a first run's outputs is refused.
# Prints SKIP when no python3 with numpy and tokenizers is found (CI may not have them); set
# PYTHON to choose the interpreter.
set -u
cd "$(dirname "$0")/.."

. test/test_lib.sh   # test_begin, ok/bad, test_python, latest_step, wait_line
test_begin tokenize_hf
test_python tokenize_hf "numpy, tokenizers"   # sets PY, or SKIP
for b in test/test_dataloader test/test_megatron_data; do
    [ -x "$b" ] || { echo "FAIL tokenize_hf/setup: $b is not built (make $b)"; exit 1; }
done
TOK=test/data/hf/llama_tiny

printf '{"text": "First Citizen: hello there."}\n{"id": 2, "text": "Second doc, caf\\u00e9 \\u4e2d\\u6587 \\ud83d\\ude42"}\n\n{"text": "third\\nline"}\n{"text": "fourth"}\n' > "$T/docs.jsonl"
head -c 4000 data/tinyshakespeare.txt > "$T/plain.txt"

if "$PY" scripts/tokenize_hf.py --tokenizer "$TOK" --input "$T/plain.txt" --input "$T/docs.jsonl" --out "$T/llmc" --val-fraction 0.2 \
        --shard-tokens 700 > "$T/llmc.log" 2>&1; then ok "llmc_runs"; else ko "llmc_runs: $(tail -1 "$T/llmc.log")"; fi
if "$PY" scripts/tokenize_hf.py --tokenizer "$TOK/tokenizer.json" --input "$T/docs.jsonl" --format megatron --out "$T/meg" \
        --val-fraction 0.25 > "$T/meg.log" 2>&1; then ok "megatron_runs"; else ko "megatron_runs: $(tail -1 "$T/meg.log")"; fi
./test/test_dataloader --init "$T/llmc/train_*.bin" 300 1 8 > /dev/null 2> "$T/dl.err" && ok "llmc_train_shards_load" || ko "llmc_train_shards_load: $(cat "$T/dl.err")"
./test/test_dataloader --init "$T/llmc/val_*.bin" 300 1 4 > /dev/null 2> "$T/dl.err" && ok "llmc_val_shard_loads" || ko "llmc_val_shard_loads: $(cat "$T/dl.err")"
./test/test_megatron_data --open "$T/meg/train_text_document" 300 > /dev/null 2> "$T/mg.err" && ok "megatron_train_opens" || ko "megatron_train_opens: $(cat "$T/mg.err")"
./test/test_megatron_data --open "$T/meg/val_text_document" 300 > /dev/null 2> "$T/mg.err" && ok "megatron_val_opens" || ko "megatron_val_opens: $(cat "$T/mg.err")"

# the contents, against the tokenizers library directly
if "$PY" - "$T" "$TOK/tokenizer.json" > "$T/verify.log" 2>&1 <<'EOF'
import glob, json, os, sys
import numpy as np
from tokenizers import Tokenizer
d, tj = sys.argv[1], sys.argv[2]
tok = Tokenizer.from_file(tj)
enc = lambda s: tok.encode(s, add_special_tokens=False).ids
docs = [json.loads(l)["text"] for l in open(d + "/docs.jsonl", encoding="utf-8") if l.strip()]
plain = open(d + "/plain.txt", encoding="utf-8").read()
EOD = 0  # <|endoftext|>: the tokenizer's EOS
alld = [plain] + docs
n_val = max(1, round(0.2 * len(alld)))
want_train = [x for s in alld[:-n_val] for x in enc(s) + [EOD]]
want_val = [x for s in alld[-n_val:] for x in enc(s) + [EOD]]
def shard(p):
    h = np.fromfile(p, dtype=np.int32, count=256)
    assert h[0] == 20240520 and h[1] == 1, h[:3]
    t = np.fromfile(p, dtype=np.uint16, offset=1024)
    assert len(t) == h[2]
    return t.tolist()
got_train = [x for p in sorted(glob.glob(d + "/llmc/train_*.bin")) for x in shard(p)]
assert len(glob.glob(d + "/llmc/train_*.bin")) >= 2, "expected several shards of 700 tokens"
assert got_train == want_train, "train tokens differ"
assert shard(d + "/llmc/val_000.bin") == want_val, "val tokens differ"
meta = dict(l.split() for l in open(d + "/llmc/meta.txt"))
assert int(meta["val_tokens"]) == len(want_val) - n_val and int(meta["train_tokens"]) == len(want_train) - (len(alld) - n_val), meta
assert int(meta["val_bytes"]) == sum(len(s.encode()) for s in alld[-n_val:]), meta
# megatron: one sequence per document, uint16
n_mv = max(1, round(0.25 * len(docs)))
for split, part in (("train", docs[:-n_mv]), ("val", docs[-n_mv:])):
    idx = open(d + "/meg/%s_text_document.idx" % split, "rb").read()
    assert idx[:9] == b"MMIDIDX\x00\x00" and idx[17] == 8, "magic / uint16 dtype code"
    S = int(np.frombuffer(idx[18:26], dtype=np.uint64)[0])
    lens = np.frombuffer(idx[34:34 + 4 * S], dtype=np.int32).tolist()
    want = [enc(s) + [EOD] for s in part]
    assert lens == [len(w) for w in want], (lens, [len(w) for w in want])
    assert np.fromfile(d + "/meg/%s_text_document.bin" % split, dtype=np.uint16).tolist() == [x for w in want for x in w]
print("contents ok: %d train + %d val llmc tokens, %d megatron docs" % (len(want_train), len(want_val), len(docs)))
EOF
then ok "contents: $(tail -1 "$T/verify.log")"; else ko "contents: $(tail -3 "$T/verify.log" | tr '\n' ' ')"; fi

# bad input: exit 1, one stderr line naming the file
expect() { local name=$1 pattern=$2; shift 2; expect_one_line "$name" "$pattern" "$PY" scripts/tokenize_hf.py "$@"; }   # NAME PATTERN ARGS...
printf '{"body": "x"}\n' > "$T/nofield.jsonl"
printf '{"text": "x"\n' > "$T/badjson.jsonl"
expect missing_input "nope.txt: no such file" --tokenizer "$TOK" --input "$T/nope.txt" --out "$T/x"
expect missing_field "nofield.jsonl: line 1: no field 'text'" --tokenizer "$TOK" --input "$T/nofield.jsonl" --out "$T/x"
expect bad_json "badjson.jsonl: line 1: invalid JSON" --tokenizer "$TOK" --input "$T/badjson.jsonl" --out "$T/x"
expect bad_fraction "--val-fraction" --tokenizer "$TOK" --input "$T/plain.txt" --out "$T/x" --val-fraction 1.5
: > "$T/afile"; : > "$T/empty.txt"; printf '{"text": ""}\n{"text": ""}\n' > "$T/empty.jsonl"
expect out_is_file "--out $T/afile: is a file, expected a folder" --tokenizer "$TOK" --input "$T/plain.txt" --out "$T/afile"
expect out_under_file "--out $T/afile/sub: cannot make the folder (Not a directory)" --tokenizer "$TOK" --input "$T/plain.txt" --out "$T/afile/sub"
expect out_in_proc "--out /proc/x/y: cannot make the folder" --tokenizer "$TOK" --input "$T/plain.txt" --out /proc/x/y
expect missing_tokenizer_dir "$T/no_model/x: no such folder or file" --tokenizer "$T/no_model/x" --input "$T/plain.txt" --out "$T/x"
expect empty_input "empty.txt: no text to tokenize (every document is empty)" --tokenizer "$TOK" --input "$T/empty.txt" --out "$T/x"
expect empty_documents "empty.jsonl: no text to tokenize" --tokenizer "$TOK" --input "$T/empty.jsonl" --out "$T/x" --format megatron
[ ! -e "$T/x" ] && ok "no_partial_output: the failed runs left no --out folder behind" || ko "no_partial_output: $(ls -A "$T/x")"
# a second run into a folder holding the first run's shards is refused, the shards untouched (the
# training glob would otherwise mix old train_001... with the new train_000)
sum_before=$(cat "$T"/llmc/* | md5sum)
expect rerun_same_out "--out $T/llmc: already holds meta.txt, train_000.bin, train_001.bin and" --tokenizer "$TOK" --input "$T/docs.jsonl" --out "$T/llmc"
expect rerun_other_format "--out $T/meg: already holds train_text_document.bin" --tokenizer "$TOK" --input "$T/docs.jsonl" --out "$T/meg"
[ "$(cat "$T"/llmc/* | md5sum)" = "$sum_before" ] && ok "rerun_untouched: the first run's files are unchanged" || ko "rerun_untouched: $(ls "$T/llmc")"
# an empty document among others is skipped (no lone end-of-document token)
if "$PY" scripts/tokenize_hf.py --tokenizer "$TOK" --input "$T/empty.txt" --input "$T/plain.txt" --out "$T/skip" > "$T/skip.log" 2>&1 &&
   grep -q "note: 1 empty documents skipped" "$T/skip.log" && cmp -s "$T/skip/train_000.bin" <("$PY" scripts/tokenize_hf.py --tokenizer "$TOK" \
        --input "$T/plain.txt" --out "$T/noskip" > /dev/null 2>&1; cat "$T/noskip/train_000.bin"); then
    ok "empty_document_skipped: the shard equals the one without the empty file"
else
    ko "empty_document_skipped: $(tail -2 "$T/skip.log")"
fi

echo "tokenize_hf: $pass passed, $fail failed"
[ $fail -eq 0 ]
