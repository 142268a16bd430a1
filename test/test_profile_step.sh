#!/usr/bin/env bash
# --profile-step on the GPU (test/test_profile.cpp checks the table's arithmetic on synthetic
# records without one). Each trainer, tiny, on random data, profiles step 3 of 4:
#   table   printed, and written to the log dir as profile_step_3.txt (the same text)
#   rows    at least 5 kernel rows; the matrix products show TFLOP/s with a fraction in (0, 100%]
#           and some memory-bound kernel GB/s; the idle time is under the whole step
#   sum     the rows' ms plus the idle ms make the step's span (more only where the table says
#           kernels overlapped), and the share column with idle sums to about 100%
#   off     the same run without the flag prints no table and writes no file, and its step
#           losses and norms are bit-identical to the profiled run's (profiling changes no number)
# Needs ./train_gpt and ./train_dit:  make train_gpt train_dit && bash test/test_profile_step.sh
set -u
cd "$(dirname "$0")/.."
. test/test_lib.sh   # test_begin, ok/bad
test_begin profile_step

for b in train_gpt train_dit; do
    [ -x ./$b ] || { echo "FAIL profile_step/setup: ./$b is missing (make $b)"; exit 1; }
done
gpt_args=(--preset tiny --random-data 1 --tokenizer "" --steps 4 --batch-size 8 --seq-len 64 --val-every 0 --sample-every -1 --seed 7)
dit_args=(--preset tiny --random-data 1 --steps 4 --batch-size 2 --frames 2 --height 4 --width 4 --text-len 4 --eval-samples 0 --seed 7)
# the trainers' step lines ("step     3/4 | loss ...", not the table's "step wall time" line) without their timing
losses() { grep -E '^step +[0-9]+/' "$1" | sed -E 's/\| [0-9.]+ ms.*//'; }

check_trainer() {  # check_trainer NAME ARGS...
    local name=$1; shift
    local dir=$T/$name file=$T/$name/profile_step_3.txt
    "./train_$name" "$@" --profile-step 3 --log-dir "$dir" > "$T/$name.out" 2> "$T/$name.err"
    local rc=$?
    if [ $rc -ne 0 ] || [ ! -s "$file" ]; then
        bad "$name/table" "exit $rc, $file $([ -s "$file" ] && echo present || echo missing): $(tail -3 "$T/$name.err" | tr '\n' ' ')"
        return
    fi
    if grep -q '^profile of step 3: ' "$file" && grep -qF "$(head -1 "$file")" "$T/$name.out" && grep -q '(idle' "$T/$name.out"; then
        ok "$name/table" "$(head -1 "$file" | cut -c1-200)"
    else
        bad "$name/table" "no 'profile of step 3' table in $file and stdout: $(head -2 "$file" | tr '\n' ' ')"
    fi
    # the kernel rows: between the kernel table's column header (first field "ms", last "kernel";
    # the table by kind above it has the same columns) and its idle line
    awk '$1 == "ms" && $2 == "share" && $NF == "kernel" { on = 1; next } /\(idle: / { on = 0 } on' "$file" > "$T/$name.rows"
    local nrows tf gb
    nrows=$(grep -c . "$T/$name.rows")
    tf=$(awk '$5 == "TFLOP/s" && $6 ~ /%$/ { f = $6 + 0; if (f > 0 && f <= 100) n++ } END { print n + 0 }' "$T/$name.rows")
    gb=$(awk '$5 == "GB/s" { n++ } END { print n + 0 }' "$T/$name.rows")
    if [ "$nrows" -ge 5 ] && [ "$tf" -ge 1 ] && [ "$gb" -ge 1 ]; then
        ok "$name/rows" "$nrows rows, $tf with TFLOP/s, $gb with GB/s; the longest: $(head -1 "$T/$name.rows" | tr -s ' ')"
    else
        bad "$name/rows" "$nrows rows ($tf with TFLOP/s and a fraction in (0, 100%], $gb with GB/s): $(head -3 "$T/$name.rows" | tr '\n' '|')"
    fi
    # span (the title's "N ms on the GPU"), idle (the idle line's ms and share), the rows' ms and shares
    local span idle idle_share verdict
    span=$(sed -nE '1s/^profile of step 3: ([0-9.]+) ms on the GPU.*/\1/p' "$file")
    idle=$(awk '/\(idle: / { print $1; exit }' "$file")
    idle_share=$(awk '/\(idle: / { sub(/%/, "", $2); print $2; exit }' "$file")
    overlap=$(grep -c '^kernels overlapped' "$file")
    verdict=$(awk -v span="$span" -v idle="$idle" -v ishare="$idle_share" -v overlap="$overlap" -v n="$nrows" '
        { ms += $1; sh += $2 + 0 }
        END {
            tot = ms + idle; stot = sh + ishare
            ok = span > 0 && idle < span && (overlap ? tot >= span * 0.995 : tot <= span * 1.005 + 0.001 * n && tot >= span * 0.995 - 0.001 * n)
            ok = ok && (overlap ? stot >= 99.5 - 0.05 * n : stot <= 100.5 + 0.05 * n && stot >= 99.5 - 0.05 * n)
            printf "%s rows %.3f ms + idle %.3f ms = %.3f ms of a %.3f ms span; shares + idle %.1f%%%s", ok ? "ok" : "bad", ms, idle, tot, span, stot,
                   overlap ? " (kernels overlapped)" : ""
        }' "$T/$name.rows")
    if [ "${verdict%% *}" = ok ]; then ok "$name/sum" "${verdict#ok }"; else bad "$name/sum" "${verdict#bad }"; fi
    # off: no table, no file, the same numbers
    "./train_$name" "$@" --log-dir "$dir.off" > "$T/$name.off.out" 2> "$T/$name.off.err"
    rc=$?
    if [ $rc -eq 0 ] && ! grep -q 'profile of step' "$T/$name.off.out" && [ -z "$(ls "$dir.off"/profile_step_* 2>/dev/null)" ] &&
       [ "$(losses "$T/$name.out" | wc -l)" -eq 4 ] && cmp -s <(losses "$T/$name.out") <(losses "$T/$name.off.out"); then
        ok "$name/off" "without the flag: no table, no file; 4 step lines identical to the profiled run's"
    else
        bad "$name/off" "exit $rc; $(grep -c 'profile of step' "$T/$name.off.out") tables; $(diff <(losses "$T/$name.out") <(losses "$T/$name.off.out") | head -4 | tr '\n' ' ')"
    fi
}

check_trainer gpt "${gpt_args[@]}"
check_trainer dit "${dit_args[@]}"
echo "profile_step: $pass passed, $fail failed"
[ $fail -eq 0 ]
