#!/usr/bin/env python3
"""Compares the kernels of two PTX files (e.g. a trainer before and after a refactor that must
not change device code): each .entry (and .func) body, with every mangled symbol (_Z...)
renamed by order of first appearance inside the body, branch labels without the function's
index and comments dropped, so a kernel whose
name changed (template arguments turned into a config struct) still compares by its code.
Kernels are paired by name, then the unpaired ones by body. Prints one line per kernel that
differs, is renamed, or is only on one side, and a summary; exit status 1 if any kernel of
the new file differs from or is missing in the old one.
--registers also renumbers the virtual registers (%r, %rd, %f, %p, ...) by order of first
appearance, drops their .reg declarations and the byte sizes of .param arrays: a change that
only grows a parameter struct at its end (the kernels read the same offsets) or moves register
numbers then compares equal, while any other instruction change still differs.

  nvcc -O3 -std=c++17 -arch=sm_90a -DMEGA_SM90A -DMEGA_NCCL -ptx train_gpt.cu -o new.ptx
  python3 scripts/ptx_compare.py [--registers] old.ptx new.ptx
"""
import hashlib
import re
import sys

HEAD = re.compile(r"^(?:\.visible |\.weak |\.extern )?\.(entry|func)\s+(?:\([^)]*\)\s*)?([A-Za-z0-9_$]+)")
SYMBOL = re.compile(r"\b_Z[A-Za-z0-9_$]+")
LABEL = re.compile(r"\$L__BB\d+_")  # branch labels carry the function's index in the file
REGISTER = re.compile(r"%(rs|rd|r|fd|f|hh|h|p)(\d+)\b")
PARAM_SIZE = re.compile(r"^(\s*\.param\b.*)\[\d+\]")


def renumber_registers(text):
    """virtual registers renamed by order of first appearance per class, .reg lines and
    .param array sizes dropped"""
    names, counts = {}, {}

    def rename(m):
        if m.group(0) not in names:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
            names[m.group(0)] = "%%%s#%d" % (m.group(1), counts[m.group(1)])
        return names[m.group(0)]

    lines = [line for line in text.split("\n") if not line.strip().startswith(".reg")]
    return "\n".join(REGISTER.sub(rename, PARAM_SIZE.sub(r"\1[]", line)) for line in lines)


def functions(path, registers=False):
    """{name: (kind, normalized text)} of every .entry / .func definition in a PTX file, and
    under the key None the file's other lines (globals, constants, declarations), sorted"""
    out, rest = {}, []
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        m = HEAD.match(lines[i])
        if not m:
            line = lines[i].split("//")[0].strip()
            if line:
                rest.append(line)
            i += 1
            continue
        kind, name = m.group(1), m.group(2)
        body, depth, opened = [], 0, False
        while i < len(lines):
            line = lines[i].split("//")[0].rstrip()
            body.append(line)
            depth += line.count("{") - line.count("}")
            opened = opened or "{" in line
            i += 1
            if line.endswith(";") and not opened and depth == 0:  # a declaration, not a definition
                break
            if opened and depth == 0:
                break
        if not opened:
            continue
        names = {}
        text = SYMBOL.sub(lambda s: names.setdefault(s.group(0), "SYM%d" % len(names)), "\n".join(body))
        text = LABEL.sub("$L__BB_", text)
        out[name] = (kind, renumber_registers(text) if registers else text)
    out[None] = ("rest", "\n".join(sorted(SYMBOL.sub("SYM", r) for r in rest)))
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "--registers"]
    registers = len(args) < len(sys.argv) - 1
    if len(args) != 2:
        sys.exit("usage: ptx_compare.py [--registers] OLD.ptx NEW.ptx")
    old, new = functions(args[0], registers), functions(args[1], registers)
    rest_same = old.pop(None)[1] == new.pop(None)[1]
    digest = lambda t: hashlib.sha1(t.encode()).hexdigest()
    same, differ, renamed = [], [], []
    for name in sorted(set(old) & set(new)):
        (same if old[name][1] == new[name][1] else differ).append(name)
    only_old = {n: digest(old[n][1]) for n in set(old) - set(new)}
    only_new = {n: digest(new[n][1]) for n in set(new) - set(old)}
    by_body = {}
    for n, h in only_old.items():
        by_body.setdefault(h, []).append(n)
    for n in sorted(only_new):
        cands = by_body.get(only_new[n])
        if cands:
            renamed.append((cands.pop(0), n))
    paired_old = {a for a, _ in renamed}
    paired_new = {b for _, b in renamed}
    missing_new = sorted(set(only_new) - paired_new)
    gone_old = sorted(set(only_old) - paired_old)
    for n in differ:
        print("DIFFERS  %s %s" % (new[n][0], n))
    for a, b in renamed:
        print("RENAMED  %s -> %s (identical code)" % (a, b))
    for n in missing_new:
        print("NEW ONLY %s %s" % (new[n][0], n))
    for n in gone_old:
        print("OLD ONLY %s %s" % (old[n][0], n))
    count = lambda names, d, kind: sum(1 for n in names if d[n][0] == kind)
    print("declarations outside the functions: %s" % ("identical" if rest_same else "DIFFER"))
    print("%s -> %s: entries %d old / %d new; identical by name %d, identical renamed %d, differing %d, "
          "only in new %d, only in old %d (funcs: %d identical, %d differing)"
          % (args[0], args[1], count(old, old, "entry"), count(new, new, "entry"),
             count(same, new, "entry"), sum(1 for _, b in renamed if new[b][0] == "entry"), count(differ, new, "entry"),
             count(missing_new, new, "entry"), count(gone_old, old, "entry"), count(same, new, "func"),
             count(differ, new, "func")))
    sys.exit(1 if differ or missing_new or not rest_same else 0)


if __name__ == "__main__":
    main()
