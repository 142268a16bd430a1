# Helpers shared by the shell tests (sourced, not run).

# test_python NAME IMPORTS: sets PY to the first interpreter among $PYTHON (alone when set),
# python3 and /usr/bin/python3 that can `import IMPORTS`; without one, prints
# "SKIP NAME: ..." and exits 0 (CI machines may lack torch, tokenizers, ...).
test_python() {
    local cand cands="${PYTHON:-python3 /usr/bin/python3}"
    PY=""
    for cand in $cands; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import $2" >/dev/null 2>&1; then PY=$cand; return 0; fi
    done
    echo "SKIP $1: no python3 with $2 (set PYTHON=...)"
    exit 0
}

# latest_step CKPT_DIR: the step the `latest` marker names (-1 if there is none)
latest_step() { local n; n=$(cat "$1/latest" 2>/dev/null) || { echo -1; return; }; echo $((10#${n#step_})); }

# wait_line LOG REGEX PID: until LOG has a line matching REGEX (0), or the process
# is gone or 120 s passed (1)
wait_line() {
    local i
    for i in $(seq 2400); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# gpt_losses OUT: the lines of train_gpt's output two runs must share to be the same run: step
# lines without their timing, validation lines, sample blocks
gpt_losses() {
    awk '/^---- sample at step/ {s = 1} s {print} /^---------------------------$/ {s = 0; next} !s && /^(step|val) / {print}' "$1" |
        sed -E 's/\| [0-9.]+ ms.*//'
}

# gpt_wait_step LOG N PID: until train_gpt's train.log has step N (or the process is gone, or 120 s)
gpt_wait_step() { wait_line "$1" "^step $2 train_loss" "$3"; }

# nan_verdict RC OUT ERR CKPT_DIR: a run made to diverge (--lr 1e30 --max-bad-steps 3) must skip
# updates and stop with exit 1 and one line naming the last good checkpoint (ok/bad: the caller's)
nan_verdict() {
    if [ "$1" -eq 1 ] && [ "$(grep -c . "$3")" -eq 1 ] &&
       grep -q "3 steps in a row had a non-finite loss or gradient norm (updates skipped); stopping. last good checkpoint: $4/step_" "$3" &&
       grep -q "skipping" "$2"; then
        ok nan "$(cat "$3")"
    else
        bad nan "exit $1: $(head -3 "$3" | tr '\n' ' ') $(grep -m2 -E 'warning|skipping' "$2" | tr '\n' ' ')"
    fi
}

# test_begin SUITE: a fresh test/tmp/SUITE as $T, pass/fail counters, and the PASS/FAIL
# line writers ok/bad (ko: the same as bad) taking a check name and an optional detail
test_begin() {
    SUITE=$1
    T=test/tmp/$SUITE
    rm -rf "$T"; mkdir -p "$T"
    pass=0; fail=0
}
ok()  { echo "PASS $SUITE/$1${2:+: $2}"; pass=$((pass + 1)); }
bad() { echo "FAIL $SUITE/$1${2:+: $2}"; fail=$((fail + 1)); }
ko()  { bad "$@"; }

# straight_log_verdict RC REF_LOG RUN_LOG: the train.log a resumed run (exit RC) leaves must
# read as the uninterrupted run's, timing aside (logbody: the caller's filter)
straight_log_verdict() {
    if [ "$1" -eq 0 ] && cmp -s <(logbody "$2") <(logbody "$3"); then
        ok straight_log "train.log of the resumed run = the uninterrupted run's ($(wc -l < "$3") lines)"
    else
        bad straight_log "train.log differs: $(diff <(logbody "$2") <(logbody "$3") | head -4 | tr '\n' ' ')"
    fi
}

# expect_one_line NAME PATTERN CMD...: bad input must make CMD exit 1 with exactly one stderr line
# containing PATTERN (ok/ko NAME with that line; outputs in $T/NAME.out and $T/NAME.err)
expect_one_line() {
    local name=$1 pattern=$2; shift 2
    "$@" > "$T/$name.out" 2> "$T/$name.err"
    local rc=$? lines; lines=$(grep -c . "$T/$name.err")
    if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -q -- "$pattern" "$T/$name.err"; then ok "$name" "$(cut -c1-200 "$T/$name.err")"
    else ko "$name" "exit $rc, $lines stderr lines, expected '$pattern': $(head -3 "$T/$name.err")"; fi
}
