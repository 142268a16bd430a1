#!/usr/bin/env python3
"""Tiny random Hugging Face models for the import/export tests (test/test_hf.cpp, scripts/check_hf.sh).

Writes, under test/data/hf/:
  llama_tiny/   LlamaForCausalLM: vocab 384, hidden 64, 2 layers, 4 heads / 2 kv heads (GQA),
                llama3 rope scaling (original context 64: some frequencies kept, some smoothed, some
                divided by the factor), untied lm_head; saved in bf16 and sharded (index + 3 files)
  qwen3_tiny/   Qwen3ForCausalLM: vocab 300 (mega.c pads it to 384), hidden 64, 2 layers,
                4 heads / 2 kv heads, head_dim 32 != 64/4, qk-norm, tied embeddings, theta 1e6;
                saved in fp32, one model.safetensors
  qwen2_tiny/   Qwen2ForCausalLM: vocab 256, hidden 32, 1 layer, 2 heads / 1 kv head, q/k/v bias, tied;
                bf16, one model.safetensors, no tokenizer.json (kept small)
  mistral_tiny/ MistralForCausalLM: vocab 300, hidden 64, 2 layers, 4 heads / 2 kv heads, theta 1e6,
                untied, sliding_window 32 = the fixture's T (transformers applies its window mask,
                which masks nothing at T = 32: checked here against T = 33, where it does); fp32
  each with config.json (+ generation_config.json) written by save_pretrained, plus the
  transformers 4 RoPE keys (legacy_rope_keys), and llama_tiny and qwen3_tiny with the tokenizer
  below as tokenizer.json
  llama_tiny.mgt, qwen3_tiny.mgt, qwen2_tiny.mgt, mistral_tiny.mgt   (llmc/formats/tensorfile.h) tokens int32 [2, T], targets
                int32 [2, T] (the next tokens; T 32, 16 for qwen2), logits float32 [2, T, V] and loss
                float32 [1]: what
                transformers computes in fp32 (eager attention) from the saved files
  tokenizer.mgt ids int32 [n] and bytes int32 [m]: a text with ASCII, Latin-1, CJK, an emoji, a
                newline and special tokens, encoded by the tokenizer, and the bytes that
                tokenizers' decode(skip_special_tokens=False) gives back for those ids
The tokenizer: byte-level BPE trained here (tokenizers) on the start of data/tinyshakespeare.txt,
vocab 300 = 2 special tokens (<|endoftext|> 0, <|begin_of_text|> 1) + 256 bytes + 42 merges, with
Llama 3's pre-tokenizer regex and a ByteLevel decoder, as Llama 3 / Qwen tokenizer.json files have.

Weights are random (seeded) and large enough that the logits are O(1), so that a mistake in any
tensor's placement changes them: matrices N(0, 1/fan_in), embeddings N(0, 0.5^2), every RMSNorm
weight (qk-norm included) 1 + N(0, 0.2^2), biases N(0, 0.5^2).

Made with (CPU only): Python 3.11.7, torch 2.15.0, transformers 5.24.0, tokenizers 0.23.3,
safetensors 0.8.0, numpy 2.4.6:
    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch transformers tokenizers safetensors numpy
    /tmp/hfenv/bin/python dev/reference/hf_tiny.py [NAME ...]    (only these models; default all and the tokenizer)
mistral_tiny was added later, made alone with Python 3.11.7, torch 2.15.0, transformers 5.25.0.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "test", "data", "hf")
sys.path.insert(0, HERE)
from gpt import write_mgt  # noqa: E402  (llmc/formats/tensorfile.h writer)

B = 2
LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TOKENIZER_TEXT = "Hello, world!  Café 中文 🙂\n\tFirst Citizen:<|endoftext|><|begin_of_text|> 1234 end"


def make_tokenizer():
    text = open(os.path.join(REPO, "data", "tinyshakespeare.txt"), encoding="utf-8").read()[:20000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|begin_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    assert tok.get_vocab_size() == 300, tok.get_vocab_size()
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|begin_of_text|>") == 1
    return tok


def randomize(model, seed):
    """Re-draws every parameter (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def reference(path, vocab, seed, T):
    """transformers' fp32 logits and loss on fixed tokens, from the saved directory."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, vocab, (B, T + 1), generator=g)
    x, y = seq[:, :T], seq[:, 1:]
    with torch.no_grad():
        logits = model(input_ids=x).logits.float()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
    return x.numpy().astype(np.int32), y.numpy().astype(np.int32), logits.numpy(), float(loss)


def legacy_rope_keys(path):
    """transformers 5 writes RoPE as rope_parameters {rope_theta, rope_type, ...}, which transformers 4
    does not read (it would run the default theta without scaling); add the transformers 4 keys
    rope_theta and rope_scaling with the same values, so that both read the same model (5 takes
    rope_scaling first). test_hf checks that mega.c reads either form alone the same way."""
    c = json.load(open(path))
    rp = dict(c["rope_parameters"])
    c["rope_theta"] = rp.pop("rope_theta")
    c["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    with open(path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")


def save(name, model, tok, dtype, shard, seed, T=32):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    model = model.to(dtype)
    model.save_pretrained(path, safe_serialization=True, max_shard_size=shard)
    if tok is not None:
        tok.save(os.path.join(path, "tokenizer.json"))
    legacy_rope_keys(os.path.join(path, "config.json"))
    x, y, logits, loss = reference(path, model.config.vocab_size, seed, T)
    write_mgt(os.path.join(OUT, name + ".mgt"), [("tokens", x), ("targets", y), ("logits", logits), ("loss", np.array([loss]))])
    files = sorted(os.listdir(path))
    size = sum(os.path.getsize(os.path.join(path, f)) for f in files)
    print(f"{name}: {files} ({size} bytes), loss {loss:.6f}, logits std {logits.std():.3f}")


def mistral_window_bites(path, T):
    """True when transformers' sliding-window mask changes the logits of a T-token sequence compared
    with full causal attention (the same model with sliding_window None)."""
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    full = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager", sliding_window=None).eval()
    x = torch.randint(0, m.config.vocab_size, (1, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return not torch.equal(m(input_ids=x).logits, full(input_ids=x).logits)


def main():
    only = set(sys.argv[1:])
    want = lambda name: not only or name in only  # noqa: E731
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    tok = make_tokenizer()
    if want("mistral_tiny"):
        mistral = MistralConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, sliding_window=32,
                                bos_token_id=1, eos_token_id=0)
        m = MistralForCausalLM(mistral)
        randomize(m, 4)
        save("mistral_tiny", m, tok, torch.float32, "10MB", 14, T=32)
        path = os.path.join(OUT, "mistral_tiny")
        assert not mistral_window_bites(path, 32) and mistral_window_bites(path, 33), "sliding_window 32: full attention up to T = 32 only"
    if only:
        return

    llama = LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
                        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                        bos_token_id=1, eos_token_id=0)
    m = LlamaForCausalLM(llama)
    randomize(m, 1)
    save("llama_tiny", m, tok, torch.bfloat16, "100KB", 11)

    qwen = Qwen3Config(vocab_size=300, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=32, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, bos_token_id=1, eos_token_id=0)
    m = Qwen3ForCausalLM(qwen)
    randomize(m, 2)
    save("qwen3_tiny", m, tok, torch.float32, "10MB", 12)

    qwen2 = Qwen2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        num_key_value_heads=1, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=True,
                        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, use_sliding_window=False,
                        bos_token_id=1, eos_token_id=0)
    m = Qwen2ForCausalLM(qwen2)
    randomize(m, 3)
    save("qwen2_tiny", m, None, torch.bfloat16, "10MB", 13, T=16)

    ids = tok.encode(TOKENIZER_TEXT).ids
    back = tok.decode(ids, skip_special_tokens=False)
    assert back == TOKENIZER_TEXT, (back, TOKENIZER_TEXT)
    data = np.frombuffer(back.encode("utf-8"), dtype=np.uint8).astype(np.int32)
    write_mgt(os.path.join(OUT, "tokenizer.mgt"), [("ids", np.array(ids, dtype=np.int32)), ("bytes", data)])
    print(f"tokenizer: {len(ids)} ids for {len(data)} bytes")
    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"test/data/hf: {total} bytes in all")


if __name__ == "__main__":
    main()
