#!/usr/bin/env bash
# The bad-input campaign (issue 19's bar): every bad file, flag and script input the tests try,
# tallied in one table. A case is a run of a trainer, a tool, a script or a test's child mode on
# input it must refuse; it passes when it ends with exit status 1 and exactly one stderr line
# naming the file or flag (test/test_bad_input.sh `expect`, test/test_lib.sh `expect_one_line`,
# test/test_util.h `check_fails_one_line`: each prints the error line on PASS, and on FAIL the
# exit status and the number of stderr lines). A failed case is counted as
#   crash              killed by a signal or exit >= 128 (abort, segfault, bad_alloc)
#   silent acceptance  exit 0
#   traceback          a Python traceback on stderr
#   other              a non-zero exit with the wrong message or several lines
# The suites run as `make test` runs them (build first: make cpu train_gpt train_dit); the
# Python scripts' cases need python3 with numpy, torch, safetensors, tokenizers and transformers
# (PYTHON=...; without them those suites say SKIP and count nothing). Host only: no GPU.
#   bash scripts/bad_input_campaign.sh        (the table on stdout, logs under $OUT, default test/tmp/campaign)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-test/tmp/campaign}
mkdir -p "$OUT"
suites=(
    "bash test/test_bad_input.sh"
    "bash test/test_prepare_mugv.sh" "bash test/test_prepare_dfm.sh" "bash test/test_convert_mugv.sh"
    "bash test/test_tokenize_hf.sh" "bash test/test_prepare_sft.sh"
)
for t in test/test_*.cpp; do
    grep -q check_fails_one_line "$t" && suites+=("./${t%.cpp}")
done
printf '| suite | cases | one clear line | crash | silent acceptance | traceback | other |\n|---|---|---|---|---|---|---|\n'
total=0; good=0; crash=0; silent=0; trace=0; other=0
for s in "${suites[@]}"; do
    name=$(basename "${s##* }")
    log="$OUT/$name.log"
    $s > "$log" 2>&1
    # a bad-input case: a PASS line that echoes the error line, or a FAIL line with the exit status and stderr line count
    read -r n g c q tb o < <(awk '
        /^PASS / && /error: / { n++; g++; next }
        /^FAIL / && /exit -?[0-9]+,? [0-9]+ stderr lines/ {
            n++
            match($0, /exit -?[0-9]+/); rc = substr($0, RSTART + 5, RLENGTH - 5) + 0
            if (/Traceback/) tb++
            else if (rc < 0 || rc >= 128) c++
            else if (rc == 0) q++
            else o++
        }
        END { printf "%d %d %d %d %d %d\n", n, g, c, q, tb, o }' "$log")
    [ "$n" -eq 0 ] && { grep -q '^SKIP' "$log" && name="$name (skipped: $(grep -m1 '^SKIP' "$log" | cut -c1-60))"; }
    printf '| `%s` | %d | %d | %d | %d | %d | %d |\n' "$name" "$n" "$g" "$c" "$q" "$tb" "$o"
    total=$((total + n)); good=$((good + g)); crash=$((crash + c)); silent=$((silent + q)); trace=$((trace + tb)); other=$((other + o))
done
printf '| **all** | **%d** | **%d** | **%d** | **%d** | **%d** | **%d** |\n' "$total" "$good" "$crash" "$silent" "$trace" "$other"
echo
echo "bad-input campaign: $total cases: $good one clear line, $crash crashes, $silent silent acceptances, $trace tracebacks, $other other"
[ "$good" -eq "$total" ] && [ "$total" -ge 100 ]
