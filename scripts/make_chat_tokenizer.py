#!/usr/bin/env python3
"""A byte-level tokenizer with a ChatML chat template, made here (no downloads), for the SFT tests
and checks (test/test_prepare_sft.sh, scripts/sft_check.sh, scripts/sft_recipe_check.sh): ids 0-2
are <|endoftext|>, <|im_start|>, <|im_end|> (the end-of-turn token), ids 3..258 the 256 bytes in
byte-level alphabet order. Written with transformers' save_pretrained, as a model folder's
tokenizer files are.

    python3 scripts/make_chat_tokenizer.py OUT_DIR
"""
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

TEMPLATE = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}"
            "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}")


def make(out_dir):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[c] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    t = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>")
    t.chat_template = TEMPLATE
    t.save_pretrained(out_dir)
    return t


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_chat_tokenizer.py OUT_DIR")
    make(sys.argv[1])
