#!/usr/bin/env python3
"""
Writes small Megatron-LM indexed datasets (PREFIX.idx + PREFIX.bin) exactly as
Megatron's IndexedDatasetBuilder (megatron/core/datasets/indexed_dataset.py)
does, with numpy only. Used to make the committed fixtures of
test/test_megatron_data.cpp:

    python3 scripts/write_megatron_fixture.py test/data/megatron

.idx layout: b"MMIDIDX\\x00\\x00", uint64 version 1, uint8 dtype code,
uint64 sequence_count, uint64 document_count, int32 sequence_lengths,
int64 sequence_pointers (byte offsets into .bin), int64 document_indices
([0, ..., sequence_count]). The fixtures' token values follow formulas that the
C++ test recomputes (see fixture_tokens / blend_tokens there).
"""
import os
import struct
import sys

import numpy as np

# Megatron's DType codes
DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6, np.float32: 7, np.uint16: 8}


def write_indexed_dataset(prefix, sequences, document_indices, dtype):
    """sequences: list of 1-D int arrays; document_indices: [0, ..., len(sequences)]."""
    assert document_indices[0] == 0 and document_indices[-1] == len(sequences)
    with open(prefix + ".bin", "wb") as f:
        for s in sequences:
            f.write(np.asarray(s, dtype=dtype).tobytes(order="C"))
    itemsize = np.dtype(dtype).itemsize
    lengths = [len(s) for s in sequences]
    pointers, curr = [], 0
    for n in lengths:
        pointers.append(curr)
        curr += n * itemsize
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", DTYPE_CODES[dtype]))
        f.write(struct.pack("<Q", len(sequences)))
        f.write(struct.pack("<Q", len(document_indices)))
        f.write(np.array(lengths, dtype=np.int32).tobytes(order="C"))
        f.write(np.array(pointers, dtype=np.int64).tobytes(order="C"))
        f.write(np.array(document_indices, dtype=np.int64).tobytes(order="C"))


def split(stream, lengths):
    out, o = [], 0
    for n in lengths:
        out.append(stream[o:o + n])
        o += n
    assert o == len(stream)
    return out


# one dataset per dtype code: 8 sequences, 5 documents, token i of the stream = (37*i + 11*code) % M
FIXTURE_LENGTHS = [5, 17, 3, 9, 12, 1, 20, 8]
FIXTURE_DOCS = [0, 1, 3, 4, 7, 8]
FIXTURE_MOD = {1: 256, 2: 128, 3: 32768, 4: 150000, 5: 150000, 6: 150000, 7: 150000, 8: 65536}
NAMES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float64", 7: "float32", 8: "uint16"}

# three datasets for blending: token i of dataset d = 1000*d + i % 1000
BLEND = [("blend_a", np.uint16, 401, [100, 150, 151]),
         ("blend_b", np.int32, 301, [1, 200, 100]),
         ("blend_c", np.uint16, 201, [201])]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "test/data/megatron"
    os.makedirs(out, exist_ok=True)
    for dtype, code in DTYPE_CODES.items():
        n = sum(FIXTURE_LENGTHS)
        stream = [(37 * i + 11 * code) % FIXTURE_MOD[code] for i in range(n)]
        write_indexed_dataset(os.path.join(out, "dtype%d_%s" % (code, NAMES[code])), split(stream, FIXTURE_LENGTHS), FIXTURE_DOCS, dtype)
    for d, (name, dtype, n, lengths) in enumerate(BLEND):
        stream = [1000 * d + i % 1000 for i in range(n)]
        docs = list(range(len(lengths) + 1))
        write_indexed_dataset(os.path.join(out, name), split(stream, lengths), docs, dtype)


if __name__ == "__main__":
    main()
