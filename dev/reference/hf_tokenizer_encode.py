#!/usr/bin/env python3
"""Fixtures for the tokenizer.json ENCODING test (test/test_hf_tokenizer.cpp, llmc/formats/hf_tokenizer.h).

Trains tiny byte-level BPE tokenizers with the tokenizers library on data/tinyshakespeare.txt plus
the multilingual lines below, configured as the real model families' tokenizer.json files are, and
writes under test/data/hf_encode/:
  gpt2.json         GPT-2 style: no normalizer, ByteLevel(add_prefix_space false, use_regex true)
                    pre-tokenizer (GPT-2's regex), ByteLevel post-processor, <|endoftext|> special
                    (normalized, as GPT-2's is), plus non-special added tokens with lstrip, rstrip,
                    single_word and normalized flags; vocab 1000 + 2 tokens appended to model.vocab
                    without merges (ignore_merges is false here, so they never appear)
  gpt2_prefix.json  GPT-2 style with ByteLevel(add_prefix_space true); vocab 600
  llama3.json       Llama 3 style: Sequence[Split(Llama 3 regex, isolated), ByteLevel(use_regex
                    false)], ignore_merges true (the 2 appended vocab tokens are emitted whole),
                    post-processor Sequence[ByteLevel, TemplateProcessing(<|begin_of_text|> $A)],
                    Llama 3's special tokens; vocab 1000
  qwen2.json        Qwen2 style: NFC normalizer (the library's own NFC), Sequence[Split(Qwen2 regex: single digits),
                    ByteLevel(use_regex false)], ByteLevel post-processor, <|endoftext|>,
                    <|im_start|>, <|im_end|>; merges written as "a b" strings (older files, and
                    Qwen2's own, have that form; the others have [a, b] pairs); vocab 1000
  cases.txt         one line per (tokenizer, text): NAME <tab> hex(UTF-8 text) <tab> ids of
                    encode(text, add_special_tokens=False) <tab> ids with add_special_tokens=True
                    <tab> the byte lengths of the pre-tokens that pre_tokenizer.pre_tokenize_str
                    gives for the whole text (no added-token split, no normalizer); numbers
                    space-separated, '-' for none) <tab> 1 if the library's decode of the ids
                    gives the text back (0: NFC changed it, or an lstrip/rstrip token, or the
                    prefix space). The texts: CASES and NFC_CASES below, 120 random strings over
                    POOL (not for gpt2_prefix), and for qwen2 150 random strings over NFC_POOL
  nfc.txt           hex(text) <tab> hex(unicodedata.normalize("NFC", text)) for 600 random strings
                    over NFC_POOL (combining marks in every order, Hangul jamo, exclusions,
                    singletons) (Python's Unicode 14.0, as llmc/formats/unicode_tables.h)
  long.txt          NAME <tab> number of ids <tab> FNV-1a 64 of the ids (as uint32 little-endian
                    bytes), for the whole of data/tinyshakespeare.txt

Made with (CPU only): Python 3.11.7, tokenizers 0.23.3:
    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers
    /tmp/tokvenv/bin/python dev/reference/hf_tokenizer_encode.py
"""
import json
import os
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, normalizers, trainers

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "test", "data", "hf_encode")

LLAMA3_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

MULTI = [
    "Café, naïve façade, Ünïcödé résumé; déjà vu à la carte. Ça va? Größe, Straße, Ærø, Øre, Åsa.",
    "中文字符测试：你好，世界！这是一个简单的句子。日本語のテキスト、ひらがなとカタカナ。",
    "한국어 문장입니다. 안녕하세요! Русский текст: Привет, мир! Ελληνικά: Γειά σου Κόσμε.",
    "العربية: مرحبا بالعالم ١٢٣ ٤٥٦. עברית: שלום עולם. हिन्दी: नमस्ते दुनिया। ไทย: สวัสดีชาวโลก",
    "Emoji 🙂🙂 👍🏽 👨‍👩‍👧 🇫🇷 ❤️ ✨🚀 and symbols © ® ™ € £ ¥ § ¶ • … – — « » “quotes” ‘single’",
    "Numbers 0 12 345 6789 1234567890 3.14159 2,718 ½ ¾ ² ³ Ⅻ ⅷ 10% $5.99 #1 v2.0.1 0x1F 1e-9",
    "Contractions: don't can't won't I'm you're he's she'll we've they'd It'S I'LL WE'RE YOU'VE I'D 'M",
    "Tabs\tand\t\ttabs,\nnew lines\n\nand\r\nCRLF\r\n\r\n  indented\n\t\tcode();\n    return x;\n",
    "mixed CASE Words, UPPER lower Title camelCase snake_case kebab-case path/to/file.txt a@b.c",
]


def corpus():
    text = open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8").read()
    lines = text.split("\n")
    for i in range(0, len(lines), 50):
        yield "\n".join(lines[i:i + 50])
    for _ in range(30):
        for m in MULTI:
            yield m


def train(pre, vocab, special, normalizer=None, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=special, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    return tok


def append_vocab(tok, words):
    """Adds byte-level tokens to model.vocab with no merge that makes them (ignore_merges test)."""
    j = json.loads(tok.to_str())
    n = max(max(j["model"]["vocab"].values()), max(a["id"] for a in j["added_tokens"])) + 1
    for w in words:
        j["model"]["vocab"][w] = n
        n += 1
    return Tokenizer.from_str(json.dumps(j))


def split_seq(pat):
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


CASES = [
    "", "a", " ", "  ", "\n", "Hello", " Hello", "Hello world", "Hello, world!", "hello   world  ", "   leading",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
    "don't DON'T Don'T it's IT'S we'll WE'LL you're YOU'RE I've I'VE I'm I'M he'd HE'D 'S 's 'll",
    "'ſ 'ſt x'ſ 'K 'Ｓ",
    "abc123def 1 12 123 1234 12345 1234567 3.14159 -42 +7 1,000,000",
    "١٢٣٤٥ ½¾ ²³ Ⅻ ⅷ ⑩ 𝟙𝟚𝟛",
    "a  b   c    d", "a \n\n b", "\t\tx", "  \n", "x\r\n\r\ny", "end   ", " \n \n ", "\n\n\n", "x \t\n y",
    "a\u00a0b \u00a0c\u3000d\u2003e\u0085f\u000bg\u000ch\u001ci\u001fj\u200bk\u2028l\u2029m\u202fn\u205fo\u1680p\u180eq",
    "Café naïve façade Ünïcödé Größe Ærø",
    "中文字符测试 日本語のテキスト 한국어 문장",
    "Привет, мир! Γειά σου Κόσμε. مرحبا بالعالم שלום עולם नमस्ते दुनिया สวัสดีชาวโลก",
    "🙂👍🏽 family 👨‍👩‍👧 🇫🇷 ❤️ ✨🚀",
    "!!!...??? --- *** ((())) [x] {y} <z> \"q\" #$%&", " !!", "x!!\n\n", "...\r\n", " ?\n",
    "<|endoftext|>", "<|endoftext|>Hello<|endoftext|> <|endoftext|>world", "<|endoftext", "a<|endoftext|>b",
    "<|begin_of_text|>Hi<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>",
    "say <mask> now", "say<mask>now", "   <mask>   x", "tail <tail>   next", "tail <tail>x",
    "a <word> b", "a<word>b", "<word>", "x <word>, y", "_<word>", "NORM here", "NORMAL",
    " zzyzx", "zzyzx", " qqqqq zzyzx", "the the the the", "thethethe", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "Speak, speak. You are all resolved rather to die than to famish?",
    "mixed CASE camelCase snake_case kebab-case path/to/file.txt a@b.c x=y+z; f(x) { return 0; }",
    "\ufeffBOM and \u00ad soft hyphen and \ufffd replacement",
    "𐍈 gothic, 𝒜 math script, 🀄 mahjong",
    "'ſſ 'SS 'Ss 'sS 'LLL 'Ll 'REd 'VEe 'T 'D 'M'm ''s '''ll don''t '", "  \n  x", "\t \n\t", " \r\n\r\n x", "a\n\n\nb",
    "x  \u3000y", " 12345", "a1b22c333d4444e55555", "...\n\n", " ...\r\n\r\n", "\u00a0\u00a0x", "\u00a0x", "\u3000x", "x\u00a0",
    " \u00a0 x", "\u001c\u001dx \u001e", "A\u0085B \u0085 C", "\n x", "\n\tx", " \n", "\r", "x \r", "x\r\ny \r\n z",
    "??!\n\n\n", " ?!\r\n", "a?\n b", "١٢٣٤ x١٢ ٣", " ½ Ⅻ", "e\u0301 n\u0303", "한\u1100\u1161",
]
POOL = ["a", "Z", "é", "ſ", "s", "S", "'", " ", "  ", "\t", "\n", "\r", "\r\n", "0", "12", "١", "½", ".", "!", "?", "-", "_",
        "\u00a0", "\u3000", "\u0085", "\u001c", "\u200b", "中", "🙂", "<|endoftext|>", "ll", "re", "ve", "t", "d", "m"]

NFC_CASES = [
    "e\u0301", "cafe\u0301 nai\u0308ve", "A\u030a \u212b \u2126 \u00c5", "\u0958\u0959 \u0915\u093c", "a\u0323\u0302 a\u0302\u0323 \u1ead",
    "\u1100\u1161\u11a8 \u1100\u1161 \uac00\u11a8 \u1100\uac00", "\u0344 \u1e9b\u0323 \u017f\u0323\u0307", "\u0f73 \u0f75 \u0f71\u0f72",
    "\u00c5\u0300 x\u0301\u0301 q\u0307\u0323", "\u0301start", "\u304b\u3099 \u30cf\u309a", "\u09c7\u09be \u0b47\u0b3e",
    "<|im_start|>e\u0301<|im_end|>\u0301", "<|endoftext|>\u0308a", "\U0001d15e \U0001d15f \U0001d158\U0001d165",
]
NFC_POOL = ["a", "e", "A", "o", "u", " ", "\u0301", "\u0300", "\u0302", "\u0308", "\u0323", "\u0327", "\u030a", "\u0328", "\u0304",
            "\u031b", "\u0345", "\u0307", "\u1100", "\u1161", "\u11a8", "\uac00", "\uac01", "\u0915", "\u093c", "\u0958", "\u212b",
            "\u2126", "\u00c5", "\u00e9", "\u0344", "\u0f71", "\u0f72", "\u0f73", "\u09c7", "\u09be", "\u0b47", "\u0b3e", "\u0cc6",
            "\u0cc2", "\u0cd5", "\u3099", "\u304b", "\u30cf", "\u309a", "\u1e9b", "\u017f", "\u03b1", "\u0313", "\u0342", "\u1f00",
            "\U0001d15e", "\U0001d165", "\u05d1", "\u05bc", "\ufb2c", "1", "'"]

EXTRA_VOCAB = ["\u0120zzyzx", "qqqqq"]   # byte-level forms of " zzyzx" and "qqqqq"


def main():
    import random
    rng = random.Random(1234)
    randoms = ["".join(rng.choice(POOL) for _ in range(rng.randrange(1, 14))) for _ in range(120)]
    nfc_randoms = ["".join(rng.choice(NFC_POOL) for _ in range(rng.randrange(1, 8))) for _ in range(600)]
    os.makedirs(OUT, exist_ok=True)
    toks = {}

    # GPT-2 style
    gpt2 = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), 1000, [])
    gpt2.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=True)])
    gpt2.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False),
                     AddedToken("<tail>", lstrip=False, rstrip=True, normalized=False),
                     AddedToken("<word>", single_word=True, normalized=False),
                     AddedToken("NORM", normalized=True)])
    gpt2.post_processor = processors.ByteLevel(trim_offsets=False)
    toks["gpt2"] = append_vocab(gpt2, EXTRA_VOCAB)

    gp = train(pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True), 600, ["<|endoftext|>"])
    gp.post_processor = processors.ByteLevel(trim_offsets=True)
    toks["gpt2_prefix"] = gp

    # Llama 3 style
    l3_special = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>"]
    l3 = train(split_seq(LLAMA3_PAT), 1000, l3_special, ignore_merges=True)
    bos = l3.token_to_id("<|begin_of_text|>")
    l3.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    toks["llama3"] = append_vocab(l3, EXTRA_VOCAB)

    # Qwen2 style
    qw = train(split_seq(QWEN2_PAT), 1000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], normalizer=normalizers.NFC())
    qw.post_processor = processors.ByteLevel(trim_offsets=False)
    toks["qwen2"] = qw

    long_text = open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8").read()
    cases, longs = [], []
    for name, tok in toks.items():
        j = json.loads(tok.to_str())
        if name == "qwen2":   # merges as "a b" strings
            j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
        s = json.dumps(j, ensure_ascii=False, separators=(",", ":"))
        path = os.path.join(OUT, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(s)
        tok = Tokenizer.from_file(path)   # what the C++ side reads
        texts = CASES + NFC_CASES + (randoms if name != "gpt2_prefix" else []) + (nfc_randoms[:150] if name == "qwen2" else [])
        for text in texts:
            a = tok.encode(text, add_special_tokens=False).ids
            b = tok.encode(text, add_special_tokens=True).ids
            want = unicodedata.normalize("NFC", text) if name == "qwen2" else text
            assert tok.decode(a, skip_special_tokens=False) == want or name in ("gpt2_prefix",) or "<mask>" in text \
                or "<tail>" in text, (name, text, tok.decode(a, skip_special_tokens=False))
            rt = int(tok.decode(a, skip_special_tokens=False) == text)
            fmt = lambda ids: " ".join(map(str, ids)) if ids else "-"
            pre = [len(p) for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]   # byte-level: one char per byte
            cases.append(f"{name}\t{text.encode('utf-8').hex()}\t{fmt(a)}\t{fmt(b)}\t{fmt(pre)}\t{rt}")
        ids = tok.encode(long_text, add_special_tokens=False).ids
        h = 0xcbf29ce484222325
        for x in ids:
            for byte in int(x).to_bytes(4, "little"):
                h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        longs.append(f"{name}\t{len(ids)}\t{h:016x}")
        print(f"{name}: vocab {tok.get_vocab_size()}, {len(s)} bytes, tinyshakespeare -> {len(ids)} ids")
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(cases) + "\n")
    with open(os.path.join(OUT, "nfc.txt"), "w") as f:
        f.write("".join(f"{t.encode().hex()}\t{unicodedata.normalize('NFC', t).encode().hex()}\n" for t in nfc_randoms))
    with open(os.path.join(OUT, "long.txt"), "w") as f:
        f.write("\n".join(longs) + "\n")
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
