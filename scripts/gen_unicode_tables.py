#!/usr/bin/env python3
"""Writes llmc/formats/unicode_tables.h: the Unicode properties llmc/formats/hf_tokenizer.h needs to encode text
exactly as the tokenizers library does, as sorted code point ranges [lo, hi] (inclusive):

  unicode_L     General_Category L* (Lu Ll Lt Lm Lo): the regexes' \\p{L}
  unicode_N     General_Category N* (Nd Nl No): \\p{N}
  unicode_WS    White_Space (PropList.txt): the regexes' \\s (Oniguruma and Rust's regex crate both
                use White_Space for \\s)
  unicode_nfc_no, unicode_nfc_maybe   NFC_Quick_Check = No / Maybe
  unicode_ccc   Canonical_Combining_Class != 0, as ranges with their class (lo, hi, ccc)
  unicode_decomp  canonical decompositions, one level (cp -> a b, b 0 for a singleton), from
                UnicodeData.txt through unicodedata.decomposition; Hangul syllables are
                algorithmic and not listed. With unicode_nfc_no (Full_Composition_Exclusion)
                and unicode_ccc this is all NFC needs: llmc/formats/hf_tokenizer.h's hf_nfc.

From Python's unicodedata (its Unicode version is written into the header). The tokenizers
library's regex engine (Oniguruma 6.9.8, through the onig crate) is on Unicode 14.0; make the
tables with a Python whose unicodedata.unidata_version is 14.0.0 (Python 3.11) to match it.

NFC_Quick_Check is derived here, not read from DerivedNormalizationProps.txt (not in Python):
No = a code point that is not NFC by itself (NFC(c) != c: singletons, composition exclusions,
non-starter decompositions); Maybe = the second code point of a primary composite's canonical
decomposition (c -> a b with NFC(a b) == c), plus the Hangul medial vowels and final consonants
(U+1161..U+1175, U+11A8..U+11C2), which compose algorithmically. A self-check follows: every
string that the quick check calls Yes must be NFC by unicodedata.is_normalized; and NFC
computed from these tables alone (hf_nfc's algorithm) must equal unicodedata.normalize("NFC")
for every code point and for 200000 random strings of decomposable characters, combining
marks and Hangul jamo.

    python3 scripts/gen_unicode_tables.py            (writes llmc/formats/unicode_tables.h)
"""
import os
import sys
import unicodedata

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MAXCP = 0x110000

# White_Space, PropList.txt (unchanged since Unicode 6.3)
WHITE_SPACE = [(0x9, 0xD), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
               (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]


def ranges(pred):
    out, lo = [], None
    for cp in range(MAXCP + 1):
        inside = cp < MAXCP and pred(cp)
        if inside and lo is None:
            lo = cp
        elif not inside and lo is not None:
            out.append((lo, cp - 1))
            lo = None
    return out


def main():
    cat = [unicodedata.category(chr(cp)) for cp in range(MAXCP)]
    L = ranges(lambda cp: cat[cp][0] == "L")
    N = ranges(lambda cp: cat[cp][0] == "N")
    # White_Space: Python's isspace() is the same set plus U+001C..U+001F (bidi class B/S)
    ws_set = {cp for lo, hi in WHITE_SPACE for cp in range(lo, hi + 1)}
    py_space = {cp for cp in range(MAXCP) if chr(cp).isspace()}
    assert py_space - ws_set == set(range(0x1C, 0x20)) and ws_set <= py_space, "White_Space list out of date"

    nfc_no = set()
    maybe = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    for cp in range(MAXCP):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if unicodedata.normalize("NFC", c) != c:
            nfc_no.add(cp)
        d = unicodedata.decomposition(c)
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            if len(parts) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == c:
                maybe.add(parts[1])
    maybe -= nfc_no
    ccc = {cp: unicodedata.combining(chr(cp)) for cp in range(MAXCP) if unicodedata.combining(chr(cp))}

    def quick_check_yes(s):
        last = 0
        for ch in s:
            cp = ord(ch)
            k = ccc.get(cp, 0)
            if k and last > k:
                return False
            if cp in nfc_no or cp in maybe:
                return False
            last = k
        return True

    # self-check: single code points, and pairs/triples over a set of starters and marks
    for cp in range(MAXCP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if quick_check_yes(chr(cp)):
            assert unicodedata.is_normalized("NFC", chr(cp)), hex(cp)
    sample = [0x41, 0x61, 0x65, 0xC5, 0x3B1, 0x915, 0x1100, 0xAC00, 0x3042, 0x4E2D] + sorted(ccc)[:400:7] + sorted(maybe)[::5]
    for a in sample:
        for b in sample:
            s = chr(a) + chr(b)
            if quick_check_yes(s):
                assert unicodedata.is_normalized("NFC", s), (hex(a), hex(b))
            for c in sample[::9]:
                if quick_check_yes(s + chr(c)):
                    assert unicodedata.is_normalized("NFC", s + chr(c)), (hex(a), hex(b), hex(c))

    # canonical decompositions, and a self-check of NFC built from these tables alone (the
    # algorithm hf_nfc implements) against unicodedata.normalize
    decomp = {}
    for cp in range(MAXCP):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            assert 1 <= len(parts) <= 2
            decomp[cp] = (parts[0], parts[1] if len(parts) == 2 else 0)
    compose = {(a, b): cp for cp, (a, b) in decomp.items() if b and cp not in nfc_no}

    def nfc(s):
        out = []
        def dec(cp):
            if 0xAC00 <= cp < 0xAC00 + 11172:
                si = cp - 0xAC00
                out.extend([0x1100 + si // 588, 0x1161 + (si % 588) // 28] + ([0x11A7 + si % 28] if si % 28 else []))
            elif cp in decomp:
                a, b = decomp[cp]
                dec(a)
                if b:
                    dec(b)
            else:
                out.append(cp)
        for ch in s:
            dec(ord(ch))
        for i in range(1, len(out)):   # canonical order: stable insertion sort of non-starters
            j = i
            while j > 0 and ccc.get(out[j], 0) != 0 and ccc.get(out[j - 1], 0) > ccc.get(out[j], 0):
                out[j - 1], out[j] = out[j], out[j - 1]
                j -= 1
        res, starter, last = [], -1, -1
        for cp in out:
            k = ccc.get(cp, 0)
            if starter >= 0 and (last < k or last == 0):
                a = res[starter]
                c = None
                if 0x1100 <= a < 0x1113 and 0x1161 <= cp < 0x1176:
                    c = 0xAC00 + ((a - 0x1100) * 21 + (cp - 0x1161)) * 28
                elif 0xAC00 <= a < 0xAC00 + 11172 and (a - 0xAC00) % 28 == 0 and 0x11A8 <= cp < 0x11C3:
                    c = a + cp - 0x11A7
                else:
                    c = compose.get((a, cp))
                if c is not None:
                    res[starter] = c
                    continue
            if k == 0:
                starter = len(res)
            last = k if starter >= 0 else 256
            res.append(cp)
        return "".join(map(chr, res))

    for cp in range(MAXCP):
        if not 0xD800 <= cp <= 0xDFFF:
            assert nfc(chr(cp)) == unicodedata.normalize("NFC", chr(cp)), hex(cp)
    import random
    rng = random.Random(0)
    pieces = [chr(c) for c in list(decomp)[::3] + sorted(ccc)[::2] + sorted(maybe) + [0x41, 0x61, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xAC01]]
    for _ in range(200000):
        s = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 6)))
        assert nfc(s) == unicodedata.normalize("NFC", s), [hex(ord(c)) for c in s]

    ccc_ranges = []
    for cp in sorted(ccc):
        if ccc_ranges and ccc_ranges[-1][1] == cp - 1 and ccc_ranges[-1][2] == ccc[cp]:
            ccc_ranges[-1][1] = cp
        else:
            ccc_ranges.append([cp, cp, ccc[cp]])

    def table(name, rs):
        lines = []
        items = [f"{{0x{lo:X},0x{hi:X}}}" for lo, hi in rs]
        for i in range(0, len(items), 8):
            lines.append("    " + ",".join(items[i:i + 8]) + ",")
        return f"static const UnicodeRange {name}[] = {{\n" + "\n".join(lines) + "\n};\n"

    ver = unicodedata.unidata_version
    out = [
        "// Generated by scripts/gen_unicode_tables.py from Python " + sys.version.split()[0] +
        "'s unicodedata, Unicode " + ver + ". Do not edit.",
        "// Code point ranges [lo, hi] (inclusive), sorted: General_Category L* and N*, White_Space,",
        "// NFC_Quick_Check No and Maybe, Canonical_Combining_Class (nonzero) with its value; and the",
        "// canonical decompositions (one level; Hangul syllables are algorithmic).",
        "#pragma once",
        "#include <cstdint>",
        "",
        f'#define UNICODE_TABLES_VERSION "{ver}"',
        "struct UnicodeRange { uint32_t lo, hi; };",
        "struct UnicodeCccRange { uint32_t lo, hi; uint8_t ccc; };",
        "",
        table("unicode_L", L), table("unicode_N", N), table("unicode_WS", WHITE_SPACE),
        table("unicode_nfc_no", ranges(lambda cp: cp in nfc_no)), table("unicode_nfc_maybe", ranges(lambda cp: cp in maybe)),
    ]
    items = [f"{{0x{lo:X},0x{hi:X},{k}}}" for lo, hi, k in ccc_ranges]
    out.append("static const UnicodeCccRange unicode_ccc[] = {\n" +
               "\n".join("    " + ",".join(items[i:i + 6]) + "," for i in range(0, len(items), 6)) + "\n};\n")
    out.append("struct UnicodeDecomp { uint32_t cp, a, b; };")
    items = [f"{{0x{cp:X},0x{a:X},0x{b:X}}}" for cp, (a, b) in sorted(decomp.items())]
    out.append("static const UnicodeDecomp unicode_decomp[] = {\n" +
               "\n".join("    " + ",".join(items[i:i + 6]) + "," for i in range(0, len(items), 6)) + "\n};\n")
    path = os.path.join(ROOT, "llmc", "formats", "unicode_tables.h")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"{path}: Unicode {ver}: L {len(L)} ranges, N {len(N)}, WS {len(WHITE_SPACE)}, NFC_QC No {len(nfc_no)} cps, "
          f"Maybe {len(maybe)} cps, ccc {len(ccc_ranges)} ranges, {len(decomp)} canonical decompositions")


if __name__ == "__main__":
    main()
