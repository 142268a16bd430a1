#!/usr/bin/env python3
"""
Chat data -> SFT shards for train_gpt: every conversation tokenized with the model's own chat
template, a loss mask that is 1 only on the assistant's tokens (its end-of-turn token included),
and the conversations' boundaries (docs/formats.md, "SFT shards"; read by llmc/data/sft_data.h).

    python3 scripts/prepare_sft.py --model path/to/hf_model --input chats.jsonl --seq-len 2048 \\
        --out data/sft --val-fraction 0.01
    ./train_gpt --init-hf path/to/hf_model --train-data "data/sft/train_*.bin" --val-data "data/sft/val_*.bin" ...

--model: a local model folder with the tokenizer files (tokenizer.json, tokenizer_config.json and
its chat template, or chat_template.jinja); transformers' AutoTokenizer reads it with
local_files_only (nothing is downloaded). --chat-template FILE: a Jinja template to use instead
(e.g. an instruct model's, for its base model).
--input (repeatable): JSONL, one conversation per line, either
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
or  {"prompt": "...", "completion": "..."}  (a user turn and the assistant's answer; prompt and
    completion may also be lists of messages, as TRL's conversational prompt-completion form).
Other keys are ignored.

How the mask is found: the whole conversation is rendered by apply_chat_template and tokenized
(no special tokens added: the template writes them). Assistant turn k starts where the rendering
of the messages before it with add_generation_prompt=True ends (that text must be a prefix of the
whole rendering; else the template is refused), and ends with the first end-of-turn token after
its start (included). The end-of-turn token is the first special token the template writes after
an assistant's answer (probed with a one-turn conversation; --eot-token to name it). Tokens
from the start through it are 1, everything else (system, user, the assistant header, what the
template writes between turns) is 0.

--loss-on all puts every token but a conversation's first in the loss (a baseline to compare the
mask with; the answers are still what --prompts counts).

Conversations that cannot train are counted and reported, not written: no assistant turn, or
longer than --seq-len + 1 tokens (a training row holds T inputs and their T targets) with
--overflow drop (default); --overflow truncate keeps the first seq-len + 1 tokens (dropped
when no assistant token is left). A role other than system, user and assistant, a message
without string content, or invalid JSON stops the run with one line naming the file and line.

Outputs (--out, a folder written whole: into a temporary folder beside it, renamed into place at
the end; a folder holding an earlier run's outputs is replaced only with --force):
  OUT/train_000.bin, ...  SFT shards of at most --shard-tokens tokens (whole conversations)
  OUT/val_000.bin         the last conversations (--val-fraction, at least one when > 0)
  OUT/sft.json            the settings and the counts printed at the end
  OUT/prompts.txt         with --prompts FILE: chat prompts for train_gpt --chat-prompts, so that a
                          run shows the model answering (and, where a line gives the answer, counts
                          exact matches). FILE is JSONL like --input; a conversation that ends with a
                          user turn is a prompt alone, one that ends with an assistant turn is the
                          prompt before it and that answer. Each prompt is rendered with
                          add_generation_prompt=True; an answer is the tokens the loss mask gives
                          its last assistant turn (through the end-of-turn token). Format: a line
                          "mega.c chat prompts 1 eot=ID n=N", then per prompt its token ids, " | ",
                          and its answer's ids (none: nothing after the bar).
Errors end with one line "error: ..." on stderr, exit 1, and leave no output.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from script_util import fail, out_dir_tmp, commit_dir  # noqa: E402  (one "error: ..." line, exit 1)

SFT_SHARD_MAGIC, SFT_SHARD_VERSION = 20250312, 1   # llmc/data/sft_data.h
HEADER_INTS = 256
ROLES = ("system", "user", "assistant")
OUTPUTS = ["train_*.bin", "val_*.bin", "sft.json", "prompts.txt"]


def load_tokenizer(model, template_file):
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not os.path.isdir(model):
        fail("--model %s: no such folder (expected a local model folder with tokenizer.json and a chat template)" % model)
    try:
        from transformers import AutoTokenizer
    except ImportError:
        fail("transformers is not installed (pip install transformers): the chat template needs it")
    try:
        tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        fail("--model %s: cannot load the tokenizer (%s)" % (model, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if not tok.is_fast:
        fail("--model %s: the tokenizer is not a fast one (no tokenizer.json): the mask needs its offsets" % model)
    if template_file:
        try:
            tok.chat_template = open(template_file, encoding="utf-8").read()
        except OSError as e:
            fail("--chat-template %s: cannot read (%s)" % (template_file, e.strerror or e))
    if not tok.chat_template:
        fail("--model %s: the tokenizer has no chat template (tokenizer_config.json chat_template or chat_template.jinja): "
             "give --chat-template FILE" % model)
    return tok


def render(tok, messages, gen_prompt, where):
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)
    except Exception as e:  # noqa: BLE001
        fail("%s: the chat template failed (%s)" % (where, str(e).splitlines()[0] if str(e) else type(e).__name__))


def encode(tok, text):
    """ids and each token's end offset in text (the template writes the special tokens itself)."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], [e for _, e in enc["offset_mapping"]]


def find_eot(tok, eot_token):
    """The end-of-turn token id: --eot-token, or the first special token after a probe answer."""
    if eot_token:
        i = tok.convert_tokens_to_ids(eot_token)
        if i is None or i == tok.unk_token_id or eot_token not in tok.get_vocab():
            fail("--eot-token %s: not a token of the tokenizer" % eot_token)
        return i
    probe = [{"role": "user", "content": "x"}]
    p = render(tok, probe, True, "the end-of-turn probe")
    f = render(tok, probe + [{"role": "assistant", "content": "y"}], False, "the end-of-turn probe")
    if not f.startswith(p):
        fail("the chat template: the generation prompt is not a prefix of the rendered answer: the mask cannot be placed")
    # the tokenizer's named special tokens, and the added tokens tokenizer.json marks special
    special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
    ids, ends = encode(tok, f)
    for i, e in zip(ids, ends):
        if e > len(p) and i in special:
            return i
    fail("the chat template writes no special token after an assistant's answer: name the end-of-turn token with --eot-token")


def read_conversations(paths):
    """[(messages, where)], checked: roles, string contents."""
    out = []
    for path in paths:
        if not os.path.isfile(path):
            fail("%s: no such file" % path)
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    where = "%s: line %d" % (path, n)
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        fail("%s: invalid JSON (%s)" % (where, e.msg))
                    if not isinstance(obj, dict):
                        fail("%s: expected an object with messages, or prompt and completion" % where)
                    if "messages" in obj:
                        msgs = obj["messages"]
                        if not isinstance(msgs, list):
                            fail("%s: messages: expected a list of {role, content}" % where)
                    elif "prompt" in obj and "completion" in obj:
                        p, c = obj["prompt"], obj["completion"]
                        msgs = (p if isinstance(p, list) else [{"role": "user", "content": p}]) + \
                               (c if isinstance(c, list) else [{"role": "assistant", "content": c}])
                    else:
                        fail("%s: expected a messages list, or prompt and completion" % where)
                    for k, m in enumerate(msgs):
                        if not isinstance(m, dict) or "role" not in m or "content" not in m:
                            fail("%s: message %d: expected {\"role\": ..., \"content\": ...}" % (where, k))
                        if m["role"] not in ROLES:
                            fail("%s: message %d: role '%s' is not one of %s" % (where, k, m["role"], ", ".join(ROLES)))
                        if not isinstance(m["content"], str):
                            fail("%s: message %d: content is not a string" % (where, k))
                    out.append(([{"role": m["role"], "content": m["content"]} for m in msgs], where))
        except UnicodeDecodeError as e:
            fail("%s: not UTF-8 text (byte %d)" % (path, e.start))
    if not out:
        fail("%s: no conversations" % ", ".join(paths))
    return out


def tokenize_conversation(tok, msgs, eot, where):
    """(ids, mask) of one conversation; mask 1 on the assistant's tokens."""
    full = render(tok, msgs, False, where)
    ids, ends = encode(tok, full)
    mask = [0] * len(ids)
    starts = [0] + ends[:-1]   # a token spans (its start, its end]: starts[i] is the previous token's end
    for k, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prefix = render(tok, msgs[:k], True, where)
        if not full.startswith(prefix):
            fail("%s: the chat template renders the prompt before message %d differently from the whole conversation: the mask cannot "
                 "be placed" % (where, k))
        i = 0
        while i < len(ids) and ends[i] <= len(prefix):
            i += 1
        # a token across the prompt/answer boundary is the answer's: generation after the prompt writes it
        while i < len(ids):
            mask[i] = 1
            if ids[i] == eot and starts[i] >= len(prefix):
                break
            i += 1
        else:
            fail("%s: assistant message %d: no end-of-turn token (id %d) after it" % (where, k, eot))
    return ids, mask


def chat_prompts(tok, eot, path, seq_len):
    """[(prompt ids, answer ids)] of --prompts: a conversation ending with an assistant turn gives
    the prompt before it and that turn's masked tokens as the answer; one ending with a user turn
    the prompt alone."""
    out = []
    for msgs, where in read_conversations([path]):
        prompt_msgs = msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
        if not prompt_msgs or prompt_msgs[-1]["role"] != "user":
            fail("%s: a prompt must end with a user turn (then, optionally, the assistant's answer)" % where)
        if msgs[-1]["role"] == "assistant":
            ids, mask = tokenize_conversation(tok, msgs, eot, where)
            end = len(mask)
            while end > 0 and not mask[end - 1]:
                end -= 1
            start = end
            while start > 0 and mask[start - 1]:
                start -= 1
            answer = ids[start:end]
        else:
            answer = []
        prompt, _ = encode(tok, render(tok, prompt_msgs, True, where))
        if len(prompt) + max(len(answer), 1) > seq_len:
            fail("%s: the prompt (%d tokens) and its answer (%d) do not fit --seq-len %d" % (where, len(prompt), len(answer), seq_len))
        out.append((prompt, answer))
    return out


def write_shard(path, docs, vocab_size, seq_len):
    """docs: [(ids, mask)] -> one SFT shard (docs/formats.md)."""
    n_tok = sum(len(d) for d, _ in docs)
    if n_tok > 2**31 - 1:
        fail("%s: %d tokens do not fit the int32 count of the header (lower --shard-tokens)" % (path, n_tok))
    u16 = vocab_size <= 65536
    hdr = np.zeros(HEADER_INTS, dtype=np.int32)
    hdr[0], hdr[1] = SFT_SHARD_MAGIC, SFT_SHARD_VERSION
    hdr[2] = 2 if u16 else 4
    hdr[3] = len(docs)
    hdr[4] = n_tok
    hdr[5] = vocab_size
    hdr[6] = seq_len
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(d) for d, _ in docs])
    tokens = np.concatenate([np.asarray(d, dtype=np.int64) for d, _ in docs])
    mask = np.concatenate([np.asarray(m, dtype=np.uint8) for _, m in docs])
    with open(path, "wb") as f:
        f.write(hdr.tobytes())
        f.write(offsets.tobytes())
        f.write(tokens.astype(np.uint16 if u16 else np.uint32).tobytes())
        f.write(mask.tobytes())


def main():
    ap = argparse.ArgumentParser(description="chat JSONL -> SFT shards (tokens, assistant-only loss mask, conversation boundaries)")
    ap.add_argument("--model", required=True, help="local model folder with the tokenizer files and chat template")
    ap.add_argument("--input", required=True, action="append", help="JSONL of conversations (messages, or prompt/completion); repeatable")
    ap.add_argument("--out", required=True, help="output folder (written whole)")
    ap.add_argument("--seq-len", type=int, required=True, help="the training sequence length T: a conversation holds at most T+1 tokens")
    ap.add_argument("--overflow", choices=["drop", "truncate"], default="drop", help="longer conversations: drop (default) or truncate")
    ap.add_argument("--val-fraction", type=float, default=0.0, help="fraction of conversations for validation (the last ones; default 0)")
    ap.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard at most (default 1e8)")
    ap.add_argument("--chat-template", default=None, help="a Jinja chat template file to use instead of the model's")
    ap.add_argument("--eot-token", default=None, help="the end-of-turn token (default: found by rendering a one-turn probe)")
    ap.add_argument("--force", action="store_true", help="replace an --out folder holding an earlier run's outputs")
    ap.add_argument("--loss-on", choices=["assistant", "all"], default="assistant",
                    help="which tokens the loss counts: the assistants' (default) or every token (the baseline an SFT mask is compared with)")
    ap.add_argument("--prompts", default=None, help="JSONL of chat prompts (and answers) for train_gpt --chat-prompts: OUT/prompts.txt")
    args = ap.parse_args()
    if args.seq_len < 1:
        fail("--seq-len: must be >= 1, got %d" % args.seq_len)
    if not 0.0 <= args.val_fraction < 1.0:
        fail("--val-fraction: must be in [0, 1), got %g" % args.val_fraction)
    if args.shard_tokens < args.seq_len + 1:
        fail("--shard-tokens: must hold one whole conversation (>= --seq-len + 1 = %d), got %d" % (args.seq_len + 1, args.shard_tokens))

    tmp = out_dir_tmp(args.out, "--out", OUTPUTS, args.force)
    tok = load_tokenizer(args.model, args.chat_template)
    vocab = len(tok)
    eot = find_eot(tok, args.eot_token)
    convs = read_conversations(args.input)
    prompts = chat_prompts(tok, eot, args.prompts, args.seq_len) if args.prompts else []

    counts = {"conversations": len(convs), "written": 0, "no_assistant_turn": 0, "too_long_dropped": 0, "truncated": 0,
              "truncated_to_nothing": 0}
    docs = []
    for msgs, where in convs:
        if not any(m["role"] == "assistant" for m in msgs):
            counts["no_assistant_turn"] += 1
            continue
        ids, mask = tokenize_conversation(tok, msgs, eot, where)
        for x in ids:
            if not 0 <= x < vocab:
                fail("%s: the tokenizer produced id %d outside its %d ids" % (where, x, vocab))
        if len(ids) > args.seq_len + 1:
            if args.overflow == "drop":
                counts["too_long_dropped"] += 1
                continue
            ids, mask = ids[:args.seq_len + 1], mask[:args.seq_len + 1]
            if not any(mask[1:]):
                counts["truncated_to_nothing"] += 1
                continue
            counts["truncated"] += 1
        if args.loss_on == "all":
            mask = [1] * len(ids)
        mask[0] = 0   # the first token is no one's target
        docs.append((ids, mask))
    if not docs:
        fail("%s: no conversation to train on (%s)" % (", ".join(args.input), ", ".join("%s %d" % kv for kv in counts.items())))
    counts["written"] = len(docs)

    n_val = min(len(docs) - 1, max(1, round(args.val_fraction * len(docs)))) if args.val_fraction > 0 and len(docs) >= 2 else 0
    train, val = docs[:len(docs) - n_val], docs[len(docs) - n_val:]
    files = []
    try:
        shard, n = [], 0
        for d in train:
            if shard and n + len(d[0]) > args.shard_tokens:
                files.append(("train_%03d.bin" % len(files), shard))
                shard, n = [], 0
            shard.append(d)
            n += len(d[0])
        files.append(("train_%03d.bin" % len(files), shard))
        if val:
            files.append(("val_000.bin", val))
        for name, part in files:
            write_shard(os.path.join(tmp, name), part, vocab, args.seq_len)
        stats = dict(counts, model=args.model, seq_len=args.seq_len, overflow=args.overflow, loss_on=args.loss_on, eot_id=eot, vocab_size=vocab,
                     train_conversations=len(train), val_conversations=len(val),
                     train_tokens=sum(len(d) for d, _ in train), train_loss_tokens=sum(sum(m) for _, m in train),
                     val_tokens=sum(len(d) for d, _ in val), val_loss_tokens=sum(sum(m) for _, m in val))
        with open(os.path.join(tmp, "sft.json"), "w") as f:
            json.dump(stats, f, indent=1)
            f.write("\n")
        if prompts:
            with open(os.path.join(tmp, "prompts.txt"), "w") as f:
                f.write("mega.c chat prompts 1 eot=%d n=%d\n" % (eot, len(prompts)))
                for prompt, answer in prompts:
                    f.write(" ".join(map(str, prompt)) + " |" + "".join(" %d" % x for x in answer) + "\n")
            files.append(("prompts.txt", None))
    except OSError as e:
        fail("%s: write failed (%s)" % (e.filename or args.out, e.strerror or e))
    commit_dir(tmp, args.out)
    print("%s: %d conversations: %d written (%d train, %d val), %d without an assistant turn, %d longer than %d tokens %s%s" %
          (", ".join(args.input), counts["conversations"], len(docs), len(train), len(val), counts["no_assistant_turn"],
           counts["too_long_dropped"] + counts["truncated"] + counts["truncated_to_nothing"], args.seq_len + 1,
           "dropped" if args.overflow == "drop" else "truncated",
           " (%d left without an assistant token, dropped)" % counts["truncated_to_nothing"] if counts["truncated_to_nothing"] else ""))
    print("  train: %d tokens, %d in the loss; val: %d tokens, %d in the loss; end-of-turn id %d; vocab %d" %
          (stats["train_tokens"], stats["train_loss_tokens"], stats["val_tokens"], stats["val_loss_tokens"], eot, vocab))
    for name, _ in files:
        print("  wrote %s (%d bytes)" % (os.path.join(args.out, name), os.path.getsize(os.path.join(args.out, name))))


if __name__ == "__main__":
    main()
