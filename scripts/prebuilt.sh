#!/usr/bin/env bash
# The builds of a GPU session made ahead, on a machine without a GPU (nvcc compiles for sm_90a
# there too), so that the GPU's minutes go to tests and timings rather than to compiling:
#   pack    `make all`, then .prebuilt.tgz (git-ignored): every ELF binary among the ignored
#           files and a manifest, the sha256 of each build input (the Makefile and every
#           tracked .cu .cuh .h .cpp .c file)
#   unpack  on the GPU machine: when every input in the manifest has its hash there, the
#           binaries land with the current time, so that make takes them as up to date (a
#           binary of an input added since is not in the archive: make builds it); when one
#           differs, nothing lands and make builds everything, as without the archive
# The binaries need the same CUDA toolkit (nvcc 13.0 here and there) and the same GPU_ARCH.
# Usage: bash scripts/prebuilt.sh pack   (here; then carry ".prebuilt.tgz" into the device calls)
#        bash scripts/prebuilt.sh unpack (there; scripts/device_session.sh checks does it first)
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=.prebuilt.tgz
case ${1:-} in
pack)
    make -j"$(nproc)" all > /dev/null
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    git ls-files -- Makefile '*.cu' '*.cuh' '*.h' '*.cpp' '*.c' | xargs sha256sum > "$tmp/prebuilt.manifest"
    git ls-files -oi --exclude-standard | grep -vE '^(\.peer|\.sess|\.base|log|runs|data|fuzz|test/tmp)/' |
        while read -r f; do [ -f "$f" ] && [ "$(head -c4 "$f" | tail -c3 | tr -d '\0')" = ELF ] && echo "$f"; done > "$tmp/prebuilt.files"
    cp "$tmp/prebuilt.manifest" "$tmp/prebuilt.files" .
    tar czf "$ARCHIVE" prebuilt.manifest prebuilt.files -T prebuilt.files
    rm -f prebuilt.manifest prebuilt.files
    echo "$ARCHIVE: $(wc -l < "$tmp/prebuilt.files") binaries, $(wc -l < "$tmp/prebuilt.manifest") inputs, $(du -h "$ARCHIVE" | cut -f1)"
    ;;
unpack)
    [ -f "$ARCHIVE" ] || { echo "prebuilt: no $ARCHIVE, make builds everything"; exit 0; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    tar xzf "$ARCHIVE" -C "$tmp" prebuilt.manifest prebuilt.files
    if ! sha256sum --quiet -c "$tmp/prebuilt.manifest" > "$tmp/check.log" 2>&1; then
        echo "prebuilt: $ARCHIVE was built from other sources ($(grep -c FAILED "$tmp/check.log") inputs differ, e.g." \
             "$(grep -m1 FAILED "$tmp/check.log" | cut -d: -f1)): not used, make builds everything"
        exit 0
    fi
    tar xzmf "$ARCHIVE" -T "$tmp/prebuilt.files"   # m: the current time, newer than every input
    echo "prebuilt: $(wc -l < "$tmp/prebuilt.files") binaries from $ARCHIVE"
    ;;
*)
    echo "usage: bash scripts/prebuilt.sh pack|unpack"; exit 2 ;;
esac
