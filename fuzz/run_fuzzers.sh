#!/usr/bin/env bash
# Builds every libFuzzer target in fuzz/ (clang++ -fsanitize=fuzzer,address,undefined
# -DMEGA_FUZZ) and runs each for a bounded time, starting from a seed corpus of
# valid files that fuzz/make_seeds writes at run time.
#
#   bash fuzz/run_fuzzers.sh [SECONDS]     (per target; default 30)
#
# One line per target: "PASS fuzz/<name>: N runs, no findings (...)" or
# "FAIL fuzz/<name>: <what> ... input <path>" (the crash input, for
# ./fuzz/out/bin/<name> <path> to reproduce). Any crash, sanitizer report
# (ASan, UBSan, LeakSanitizer), out-of-memory or timeout is a finding; the
# script exits non-zero if there is one. Without clang++ and libFuzzer it
# prints one SKIP line and exits 0.
# Outputs (ignored by git) go to fuzz/out/: bin/, seeds/, corpus/ (kept between
# runs, so repeated runs go deeper), crashes/, logs/.
set -u
cd "$(dirname "$0")/.."
secs=${1:-30}
case "$secs" in ''|*[!0-9]*) echo "usage: bash fuzz/run_fuzzers.sh [SECONDS]: SECONDS must be a positive integer, got '$secs'"; exit 2;; esac
[ "$secs" -gt 0 ] || { echo "usage: bash fuzz/run_fuzzers.sh [SECONDS]: SECONDS must be > 0"; exit 2; }

CXX=${FUZZ_CXX:-clang++}
FLAGS="-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -DMEGA_FUZZ -Wall -Wno-unused-function"
# target and its -max_len: a few times the largest seed, so that size-changing mutations have room
TARGETS="fuzz_tokenizer:16384 fuzz_token_shard:8192 fuzz_latent_shard:8192 fuzz_checkpoint:16384 fuzz_tensorfile:4096 fuzz_dataset_meta:1024 fuzz_safetensors:8192 fuzz_hf_config:32768 fuzz_megatron_idx:4096 fuzz_sft_shard:4096"
OUT=fuzz/out

# ---- is there a clang++ that links libFuzzer with ASan + UBSan?
probe=$(mktemp -d "${TMPDIR:-/tmp}/mega_fuzz_probe.XXXXXX")
trap 'rm -rf "$probe"' EXIT
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' > "$probe/p.cpp"
if ! command -v "$CXX" >/dev/null 2>&1 || ! "$CXX" $FLAGS "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1; then
    echo "SKIP fuzz: clang++ with libFuzzer not found"
    exit 0
fi

mkdir -p "$OUT/bin" "$OUT/logs"
# the temporary files the targets write go to RAM where possible (one file per run)
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
export FUZZ_TMPDIR
FUZZ_TMPDIR=$(mktemp -d "$base/mega_fuzz_run.XXXXXX")
trap 'rm -rf "$probe" "$FUZZ_TMPDIR"' EXIT
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# ---- build (only what is older than its sources)
deps="fuzz/fuzz_common.h fuzz/fuzz_seeds.h llmc/*/*.h"
stale() {  # stale BIN SRC: does BIN need a rebuild?
    [ -x "$1" ] || return 0
    [ -n "$(find $2 $deps -newer "$1" 2>/dev/null | head -1)" ]
}
echo "info fuzz: building with $("$CXX" --version | head -1)"
t0=$(date +%s)
if stale "$OUT/bin/make_seeds" fuzz/make_seeds.cpp; then
    # a normal build (exit-on-error fail()), only writes the seed files
    if ! "$CXX" -std=c++17 -O1 -Wall -Wno-unused-function fuzz/make_seeds.cpp -o "$OUT/bin/make_seeds" > "$OUT/logs/make_seeds.build.log" 2>&1; then
        echo "FAIL fuzz: build of fuzz/make_seeds.cpp failed (see $OUT/logs/make_seeds.build.log)"
        tail -20 "$OUT/logs/make_seeds.build.log"
        exit 1
    fi
fi
pids=()
for tm in $TARGETS; do
    t=${tm%%:*}
    if stale "$OUT/bin/$t" "fuzz/$t.cpp"; then
        rm -f "$OUT/bin/$t"
        ( "$CXX" $FLAGS "fuzz/$t.cpp" -o "$OUT/bin/$t" > "$OUT/logs/$t.build.log" 2>&1 ) &
        pids+=($!)
        # at most nproc compilers at once (the CI box has 2 cores)
        while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do sleep 0.2; done
    fi
done
for p in "${pids[@]}"; do wait "$p"; done
echo "info fuzz: built in $(( $(date +%s) - t0 )) s"

# ---- seeds: small valid files from the project's own writers
rm -rf "$OUT/seeds"
if ! "$OUT/bin/make_seeds" "$OUT/seeds" > "$OUT/logs/make_seeds.log" 2>&1; then
    echo "FAIL fuzz: fuzz/make_seeds failed: $(tail -1 "$OUT/logs/make_seeds.log")"
    exit 1
fi

# ---- run each target
findings=0
for tm in $TARGETS; do
    t=${tm%%:*}
    max_len=${tm##*:}
    if [ ! -x "$OUT/bin/$t" ]; then
        echo "FAIL fuzz/$t: build failed (see $OUT/logs/$t.build.log)"
        grep -m5 'error' "$OUT/logs/$t.build.log"
        findings=$((findings + 1))
        continue
    fi
    mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t"
    log="$OUT/logs/$t.log"
    # -timeout: one input running longer is a hang; -rss_limit_mb also caps
    # single mallocs (-malloc_limit_mb defaults to it): a 2^40-element header is
    # a finding, not a swapping machine. The outer timeout only guards the guard.
    timeout -k 10 $((secs + 120)) "$OUT/bin/$t" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$OUT/crashes/$t/" "$OUT/corpus/$t" "$OUT/seeds/$t" > "$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    if [ $rc -eq 0 ] && [ -n "$runs" ]; then
        took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
        rate=$(( runs / (took > 0 ? took : 1) ))
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
        ninputs=$(ls "$OUT/corpus/$t" | wc -l)
        echo "PASS fuzz/$t: $runs runs, no findings (${took} s, $rate exec/s, coverage ${cov:-?} edges, corpus $ninputs inputs)"
        continue
    fi
    findings=$((findings + 1))
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    what=$(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|FUZZ_CHECK failed|terminate called|out-of-memory' "$log" | sed 's/^==[0-9]*==//')
    [ -n "$what" ] || what="exited with code $rc"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && what="did not finish within $((secs + 120)) s ($what)"
    echo "FAIL fuzz/$t: $what; input ${input:-none written}; log $log"
    # the first frames of the report, for the CI log
    grep -E '^ *#[0-9]+ .* in .*(llmc/[a-z]+|fuzz)/[A-Za-z_]+\.(h|cpp):' "$log" | head -5
done
exit $(( findings > 0 ? 1 : 0 ))
