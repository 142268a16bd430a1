#!/usr/bin/env bash
# SFT end to end on one GPU (issue 20 item 4): a synthetic instruction task whose answers follow
# from the prompt (reverse a string of 3-6 letters), a byte-level tokenizer with a ChatML chat
# template made here (no downloads), scripts/prepare_sft.py with the loss on the answers only and,
# for comparison, on every token (--loss-on all); a small model trained from scratch by
# train_gpt --pack 0 on each; the exact-match accuracy on held-out prompts (greedy,
# --chat-prompts); the masked run's weights exported (--export-hf) and reloaded in transformers,
# whose greedy answers to the same prompts are compared with train_gpt's.
#   OUT=dir STEPS=1500 bash scripts/sft_check.sh     (needs python3 with torch, transformers)
# Writes $OUT/sft_check.md (the table) and the logs; exit 1 when a step fails or the masked run
# is below 90% exact.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/sft_check}; mkdir -p "$OUT"
STEPS=${STEPS:-1500}
PY=${PYTHON:-python3}
make -j"$(nproc)" train_gpt > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }

# the tokenizer (259 ids: 3 special tokens, 256 bytes) and the task's conversations
"$PY" - "$OUT" > "$OUT/make_data.log" 2>&1 <<'EOF' || { echo "make_data failed: $(tail -2 "$OUT/make_data.log")"; exit 1; }
import json, os, random, sys
sys.path.insert(0, "scripts")
from make_chat_tokenizer import make
out = sys.argv[1]
make(out + "/tok")
rng = random.Random(1234)
def word():
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6)))
seen, held = set(), []
while len(held) < 200:
    w = word()
    if w not in seen:
        seen.add(w); held.append(w)
with open(out + "/train.jsonl", "w") as f:
    n = 0
    while n < 40000:
        w = word()
        if w in seen:   # the held-out words never train
            continue
        f.write(json.dumps({"prompt": "reverse: " + w, "completion": w[::-1]}) + "\n"); n += 1
with open(out + "/heldout.jsonl", "w") as f:
    for w in held:
        f.write(json.dumps({"prompt": "reverse: " + w, "completion": w[::-1]}) + "\n")
print("tokenizer, 40000 training conversations, 200 held-out prompts")
EOF

MODEL="--vocab-size 259 --max-seq-len 64 --n-layer 4 --n-head 4 --n-kv-head 4 --d-model 256 --head-dim 64 --ffn-hidden 704"
TRAIN="--seq-len 64 --batch-size 64 --steps $STEPS --lr 1e-3 --warmup 100 --dropout 0 --val-every 0 --sample-every $((STEPS / 3)) --tokenizer '' --seed 7"
printf '| run | exact match on 200 held-out prompts (greedy) | final train loss |\n|---|---|---|\n' > "$OUT/sft_check.md"
status=0
for loss_on in assistant all; do
    "$PY" scripts/prepare_sft.py --model "$OUT/tok" --input "$OUT/train.jsonl" --prompts "$OUT/heldout.jsonl" --seq-len 64 \
        --loss-on $loss_on --out "$OUT/data_$loss_on" --force > "$OUT/prepare_$loss_on.log" 2>&1 ||
        { echo "prepare_sft ($loss_on) failed: $(tail -1 "$OUT/prepare_$loss_on.log")"; exit 1; }
    export_flag=""; [ $loss_on = assistant ] && export_flag="--export-hf $OUT/hf_assistant"
    eval ./train_gpt $MODEL $TRAIN --train-data "'$OUT/data_$loss_on/train_*.bin'" --val-data "''" \
        --chat-prompts "$OUT/data_$loss_on/prompts.txt" --log-dir "$OUT/log_$loss_on" $export_flag > "$OUT/train_$loss_on.log" 2>&1 ||
        { echo "train_gpt ($loss_on) failed: $(tail -2 "$OUT/train_$loss_on.log")"; status=1; continue; }
    acc=$(grep "^chat eval at step" "$OUT/train_$loss_on.log" | tail -1 | sed -nE 's/.*: ([0-9]+ of [0-9]+ answers exact \([0-9.]+%).*/\1)/p')
    loss=$(grep "^step " "$OUT/train_$loss_on.log" | tail -1 | sed -nE 's/.*\| loss ([0-9.]+) .*/\1/p')
    printf '| loss on %s tokens | %s | %s |\n' "$loss_on" "${acc:-?}" "${loss:-?}" | tee -a "$OUT/sft_check.md"
    if [ $loss_on = assistant ]; then
        pct=$(echo "$acc" | sed -nE 's/.*\(([0-9.]+)%\)/\1/p')
        python3 -c "import sys; sys.exit(0 if float('${pct:-0}') >= 90.0 else 1)" || { echo "below the 90% bar"; status=1; }
    fi
done

# the export in transformers: greedy answers to the same prompts, against train_gpt's
"$PY" - "$OUT" >> "$OUT/sft_check.md" 2> "$OUT/hf.err" <<'EOF' || { echo "transformers check failed: $(tail -2 "$OUT/hf.err")"; status=1; }
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
out = sys.argv[1]
tok = AutoTokenizer.from_pretrained(out + "/tok", local_files_only=True)
model = AutoModelForCausalLM.from_pretrained(out + "/hf_assistant", local_files_only=True, torch_dtype=torch.float32).eval()
lines = open(out + "/data_assistant/prompts.txt").read().split("\n")
eot = int(lines[0].split("eot=")[1].split()[0])
exact = n = 0
for line in lines[1:]:
    if not line.strip():
        continue
    p, a = line.split("|")
    prompt, answer = [int(x) for x in p.split()], [int(x) for x in a.split()]
    ids = torch.tensor([prompt])
    with torch.no_grad():
        g = model.generate(ids, max_new_tokens=len(answer) + 4, do_sample=False, eos_token_id=eot, pad_token_id=eot)
    exact += g[0, len(prompt):].tolist() == answer
    n += 1
print("| the export in transformers (%s), same prompts | %d of %d answers exact (%.1f%%) | |" % (type(model).__name__, exact, n, 100.0 * exact / n))
EOF
cat "$OUT/sft_check.md"
exit $status
