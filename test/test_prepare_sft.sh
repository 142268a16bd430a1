#!/usr/bin/env bash
# scripts/prepare_sft.py on a tiny byte-level tokenizer with a ChatML chat template, both made
# here (no downloads): the SFT shards hold exactly the tokens and loss mask worked out here
# independently (each byte its token, the special tokens theirs; 1 exactly on the assistants'
# answers and their <|im_end|>, in every turn of a multi-turn conversation, and in a
# prompt/completion pair; a non-ASCII answer), the conversations' boundaries, the counts of
# what was skipped (no assistant turn, too long: dropped, or truncated); the C++ reader
# (llmc/data/sft_data.h, test/test_sft_data --check) accepts the shards; bad input ends with
# exit 1 and one stderr line and leaves no output (an unknown role, invalid JSON, a folder of
# other files); a folder holding an earlier run's outputs is refused without --force and
# replaced whole with it; --prompts writes prompts.txt exactly (the generation prompt, the
# answer's tokens) and the C++ reader takes it; a prompt without a user turn is refused.
# Prints SKIP when no python3 with transformers, tokenizers and numpy is found; set PYTHON to
# choose the interpreter.
set -u
cd "$(dirname "$0")/.."

. test/test_lib.sh   # test_begin, ok/bad, test_python
test_begin prepare_sft
test_python prepare_sft "numpy, tokenizers, transformers, jinja2"
[ -x test/test_sft_data ] || { echo "FAIL prepare_sft/setup: test/test_sft_data is not built (make test/test_sft_data)"; exit 1; }

# the tokenizer: 256 byte tokens (ids 3..258 in byte-level alphabet order) after 3 special tokens
"$PY" scripts/make_chat_tokenizer.py "$T/model" > "$T/make_tok.log" 2>&1 || { echo "FAIL prepare_sft/make_tokenizer: $(tail -1 "$T/make_tok.log")"; exit 1; }

cat > "$T/chats.jsonl" <<'EOF'
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}, {"role": "assistant", "content": "5"}, {"role": "user", "content": "and 4+4?"}, {"role": "assistant", "content": "8"}]}
{"prompt": "reverse abc", "completion": "cba", "id": 7}

{"messages": [{"role": "user", "content": "no answer here"}]}
{"messages": [{"role": "user", "content": "caf\u00e9?"}, {"role": "assistant", "content": "caf\u00e9 \u2615"}]}
{"prompt": "long one", "completion": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}
{"prompt": "last", "completion": "one"}
EOF
run() { "$PY" scripts/prepare_sft.py --model "$T/model" "$@"; }
if run --input "$T/chats.jsonl" --seq-len 100 --out "$T/out" --val-fraction 0.25 --shard-tokens 120 > "$T/run.log" 2>&1; then
    ok "runs" "$(head -1 "$T/run.log")"
else
    ko "runs: $(tail -1 "$T/run.log")"
fi
if run --input "$T/chats.jsonl" --seq-len 100 --overflow truncate --out "$T/trunc" > "$T/trunc.log" 2>&1; then
    ok "runs_truncate" "$(head -1 "$T/trunc.log")"
else
    ko "runs_truncate: $(tail -1 "$T/trunc.log")"
fi

# the contents, worked out here from the bytes and the template's text
"$PY" - "$T" > "$T/verify.log" 2>&1 <<'EOF'
import glob, json, os, sys
import numpy as np
from tokenizers import pre_tokenizers
d = sys.argv[1]
alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
# bytes_to_unicode: the byte-level alphabet character of each byte
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_id = {b: 3 + alphabet.index(chr(c)) for b, c in zip(bs, cs)}
START, END = 1, 2
def text(s, m):
    return [(byte_id[b], m) for b in s.encode("utf-8")]
def turn(role, content):
    m = 1 if role == "assistant" else 0
    return [(START, 0)] + text(role + "\n", 0) + text(content, m) + [(END, m)] + text("\n", 0)
def conv(msgs):
    out = [x for r, c in msgs for x in turn(r, c)]
    return [t for t, _ in out], [m for _, m in out]
want = [conv([("system", "Be brief."), ("user", "2+3?"), ("assistant", "5"), ("user", "and 4+4?"), ("assistant", "8")]),
        conv([("user", "reverse abc"), ("assistant", "cba")]),
        conv([("user", "caf\u00e9?"), ("assistant", "caf\u00e9 \u2615")]),
        conv([("user", "last"), ("assistant", "one")])]
long = conv([("user", "long one"), ("assistant", "x" * 118)])
fails = 0
def check(cond, name, detail):
    global fails
    print("%s prepare_sft/%s: %s" % ("PASS" if cond else "FAIL", name, detail))
    fails += 0 if cond else 1
def read(path):
    raw = open(path, "rb").read()
    h = np.frombuffer(raw[:1024], dtype=np.int32)
    assert h[0] == 20250312 and h[1] == 1, (path, h[:2])
    tb, nd, nt, vocab, seq = [int(x) for x in h[2:7]]
    o = 1024
    off = np.frombuffer(raw[o:o + 8 * (nd + 1)], dtype=np.int64); o += 8 * (nd + 1)
    tok = np.frombuffer(raw[o:o + tb * nt], dtype=np.uint16 if tb == 2 else np.uint32); o += tb * nt
    mask = np.frombuffer(raw[o:o + nt], dtype=np.uint8); o += nt
    assert o == len(raw), (path, o, len(raw))
    return [(tok[off[k]:off[k + 1]].tolist(), mask[off[k]:off[k + 1]].tolist()) for k in range(nd)], vocab, seq
def docs(pattern):
    out = []
    for p in sorted(glob.glob(os.path.join(d, pattern))):
        ds, vocab, seq = read(p)
        check(vocab == 259 and seq == 100, "header/" + os.path.basename(p), "vocab %d, seq_len %d" % (vocab, seq))
        out.append(ds)
    return out
def first0(ds):  # the first token of a conversation is no one's target
    return [(t, [0] + m[1:]) for t, m in ds]
train, val = docs("out/train_*.bin"), docs("out/val_*.bin")
check([len(s) for s in train] == [2, 1], "shards", "train shards of %s conversations (75 + 35 tokens, then 36: at most 120 a shard)" % [len(s) for s in train])
check([x for s in train for x in s] == first0(want[:3]), "train_tokens_and_mask",
      "3 conversations, every token and mask bit as the template and the bytes give them")
check(len(val) == 1 and val[0] == first0(want[3:]), "val_tokens_and_mask", "the last conversation")
w = want[0]
check(sum(w[1]) == 4 and [x for s in train for x in s][0][1] == w[1], "mask_multi_turn", "both answers and their <|im_end|> (4 tokens)")
st = json.load(open(os.path.join(d, "out/sft.json")))
check(st["conversations"] == 6 and st["no_assistant_turn"] == 1 and st["too_long_dropped"] == 1 and st["written"] == 4,
      "counts", "6 read, 1 without an assistant turn, 1 too long (dropped), 4 written")
tr = [x for p in sorted(glob.glob(os.path.join(d, "trunc/train_*.bin"))) for x in read(p)[0]]
lt, lm = long
check(len(tr) == 5 and tr[3] == (lt[:101], [0] + lm[1:101]) and json.load(open(os.path.join(d, "trunc/sft.json")))["truncated"] == 1,
      "truncate", "the long conversation cut to seq-len + 1 = 101 tokens, its mask with it")
print("%d loss targets" % sum(sum(m[1:]) for s in train for _, m in s))
check(not glob.glob(os.path.join(d, ".out.tmp-*")) and not glob.glob(os.path.join(d, ".out.old-*")), "no_temporaries", "no temporary folder left")
sys.exit(1 if fails else 0)
EOF
vrc=$?
grep -E "^(PASS|FAIL)" "$T/verify.log"
pass=$((pass + $(grep -c "^PASS" "$T/verify.log"))); fail=$((fail + $(grep -c "^FAIL" "$T/verify.log")))
[ $vrc -eq 0 ] || grep -q "^FAIL" "$T/verify.log" || ko "verify: $(tail -2 "$T/verify.log" | tr '\n' ' ')"

# the C++ reader takes the shards as they are
# the same count of loss targets
want=$(grep -o "^[0-9]* loss targets" "$T/verify.log")
if ./test/test_sft_data --check "$T/out/train_*.bin" 259 100 > "$T/cpp.log" 2>&1 && [ -n "$want" ] && grep -q "3 conversations, .* $want\$" "$T/cpp.log"; then
    ok "cpp_reader" "$(tail -1 "$T/cpp.log")"
else
    ko "cpp_reader: expected 3 conversations and $want: $(tail -1 "$T/cpp.log")"
fi

# --loss-on all: every token but a conversation's first is a loss target
if run --input "$T/chats.jsonl" --seq-len 100 --out "$T/all" --loss-on all > "$T/all.log" 2>&1 &&
   ./test/test_sft_data --check "$T/all/train_*.bin" 259 100 > "$T/allcpp.log" 2>&1; then
    read -r nd nt nl < <(sed -nE 's/.* ([0-9]+) conversations, ([0-9]+) tokens, ([0-9]+) loss targets$/\1 \2 \3/p' "$T/allcpp.log")
    if [ -n "${nd:-}" ] && [ "$nl" -eq $((nt - nd)) ]; then ok "loss_on_all" "$nl loss targets = $nt tokens - $nd conversations"
    else ko "loss_on_all: $(cat "$T/allcpp.log")"; fi
else
    ko "loss_on_all: $(tail -1 "$T/all.log") $(tail -1 "$T/allcpp.log")"
fi

# --prompts: OUT/prompts.txt holds each prompt rendered with the generation prompt and, where the
# line ends with the assistant's turn, that answer's tokens through <|im_end|> (worked out here)
cat > "$T/prompts.jsonl" <<'EOF2'
{"prompt": "2+3?", "completion": "5"}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}
EOF2
if run --input "$T/chats.jsonl" --prompts "$T/prompts.jsonl" --seq-len 100 --out "$T/pout" > "$T/pout.log" 2>&1; then
    "$PY" - "$T/pout/prompts.txt" > "$T/pverify.log" 2>&1 <<'EOF2'
import sys
from tokenizers import pre_tokenizers
alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_id = {b: 3 + alphabet.index(chr(c)) for b, c in zip(bs, cs)}
def text(s):
    return [byte_id[b] for b in s.encode("utf-8")]
def turn(role, content):
    return [1] + text(role + "\n" + content) + [2] + text("\n")
gen = [1] + text("assistant\n")
want = ["mega.c chat prompts 1 eot=2 n=2",
        " ".join(map(str, turn("user", "2+3?") + gen)) + " | " + " ".join(map(str, text("5") + [2])),
        " ".join(map(str, turn("system", "Be brief.") + turn("user", "hi") + gen)) + " |"]
got = open(sys.argv[1]).read().split("\n")
ok = got[:-1] == want and got[-1] == ""
print(("PASS" if ok else "FAIL") + " prepare_sft/prompts_file: " + ("2 prompts, the first with its answer 5<|im_end|>" if ok else "got %r, want %r" % (got, want)))
EOF2
    grep -E "^(PASS|FAIL)" "$T/pverify.log" || ko "prompts_file: $(tail -2 "$T/pverify.log" | tr '\n' ' ')"
    pass=$((pass + $(grep -c "^PASS" "$T/pverify.log"))); fail=$((fail + $(grep -c "^FAIL" "$T/pverify.log")))
    if ./test/test_sft_data --prompts "$T/pout/prompts.txt" 259 100 > "$T/pcpp.log" 2>&1 && grep -q "2 prompts (.*), 1 with answers, end-of-turn 2" "$T/pcpp.log"; then
        ok "prompts_cpp_reader" "$(cat "$T/pcpp.log")"
    else
        ko "prompts_cpp_reader: $(tail -1 "$T/pcpp.log")"
    fi
else
    ko "runs_prompts: $(tail -1 "$T/pout.log")"
fi
printf '{"messages": [{"role": "assistant", "content": "no user turn"}]}\n' > "$T/badprompt.jsonl"

# bad input: one line, exit 1, no output folder
refuse() {  # refuse NAME NEEDLE ARGS...: exit 1, one stderr line holding NEEDLE, no --out folder made
    local name=$1 needle=$2; shift 2
    "$PY" scripts/prepare_sft.py "$@" > "$T/$name.out" 2> "$T/$name.err"
    local rc=$? lines; lines=$(grep -c . "$T/$name.err")
    if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -qF -- "$needle" "$T/$name.err" && [ ! -e "$T/bad_$name" ] &&
       [ -z "$(ls -a "$T" | grep -E '^\.bad_.*\.tmp-')" ]; then
        ok "refuses_$name" "$(cat "$T/$name.err")"
    else
        ko "refuses_$name: exit $rc, $lines lines, expected '$needle', no $T/bad_$name: $(head -2 "$T/$name.err")"
    fi
}
printf '{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}\n' > "$T/role.jsonl"
printf '{"messages": [{"role": "user", "content": "hi"},\n' > "$T/json.jsonl"
printf '{"messages": [{"role": "user", "content": "hi"}]}\n' > "$T/none.jsonl"
refuse unknown_role "role.jsonl: line 1: message 1: role 'bot' is not one of system, user, assistant" \
    --model "$T/model" --input "$T/role.jsonl" --seq-len 64 --out "$T/bad_unknown_role"
refuse bad_json "json.jsonl: line 1: invalid JSON" --model "$T/model" --input "$T/json.jsonl" --seq-len 64 --out "$T/bad_bad_json"
refuse nothing_to_train "no conversation to train on" --model "$T/model" --input "$T/none.jsonl" --seq-len 64 --out "$T/bad_nothing_to_train"
refuse prompt_no_user "badprompt.jsonl: line 1: a prompt must end with a user turn" --model "$T/model" --input "$T/chats.jsonl" \
    --prompts "$T/badprompt.jsonl" --seq-len 64 --out "$T/bad_prompt_no_user"
refuse no_model "--model $T/nope: no such folder" --model "$T/nope" --input "$T/chats.jsonl" --seq-len 64 --out "$T/bad_no_model"
mkdir -p "$T/other"; echo x > "$T/other/notes.txt"
refuse other_files "holds files that are not this script's outputs (notes.txt)" --model "$T/model" --input "$T/chats.jsonl" --seq-len 64 --out "$T/other"
[ -f "$T/other/notes.txt" ] && ok "other_files_kept" || ko "other_files_kept: notes.txt is gone"

# an earlier run's outputs: refused, then replaced whole with --force
before=$(cksum "$T/out/val_000.bin")
refuse rerun "already holds sft.json, train_000.bin, train_001.bin and 1 more" --model "$T/model" --input "$T/chats.jsonl" --seq-len 100 --out "$T/out"
[ "$(cksum "$T/out/val_000.bin")" = "$before" ] && ok "rerun_left_outputs_alone" || ko "rerun_left_outputs_alone"
if run --input "$T/chats.jsonl" --seq-len 100 --out "$T/out" --force > "$T/force.log" 2>&1 && [ ! -e "$T/out/val_000.bin" ] &&
   [ -f "$T/out/train_000.bin" ] && [ -z "$(ls -a "$T" | grep -E '^\.out\.(tmp|old)-')" ]; then
    ok "force_replaces" "the folder now holds the new run's outputs only (no val split)"
else
    ko "force_replaces: $(tail -1 "$T/force.log"); $(ls -a "$T/out" | tr '\n' ' ')"
fi
echo "prepare_sft: $pass passed, $fail failed"
[ $fail -eq 0 ]
