#!/usr/bin/env bash
# Differential test of llmc/formats/safetensors.h: generated valid and corrupt files (see
# test/safetensors_diff.py); whatever the reference safetensors library refuses, mega.c refuses
# with one line naming the file. Prints SKIP when no python3 has the safetensors library.
#
#   make test/test_safetensors && bash test/test_safetensors_diff.sh
set -u
cd "$(dirname "$0")/.."
. test/test_lib.sh
test_python safetensors_diff safetensors   # sets PY, or SKIP
exec "$PY" test/safetensors_diff.py
