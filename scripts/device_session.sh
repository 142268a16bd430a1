#!/usr/bin/env bash
# A GPU session in three bounded commands (each under 10 minutes on one H100 or H200), for
# when device time is short: the correctness work shares the GPU (nothing in it is timed),
# the timings get the GPU to themselves. Logs go to $OUT; W (default /tmp/device_session)
# keeps the state between the parts, which must run on the same machine, in this order:
#   checks   builds everything (what `bash scripts/prebuilt.sh pack` built ahead, carried as
#            .prebuilt.tgz, is taken where it matches this tree); then side by side: the GPU
#            half of `make test` (TEST_PART=gpu; CHECKS piece test_gpu), the EDM quality runs
#            (scripts/edm_check.sh, OBJECTIVES "rf edm", PARALLEL=1; edm), the SFT recipes
#            (scripts/sft_recipe_check.sh; recipe) and the lab attention variants' checks
#            (scripts/attention_variants_check.sh PHASE=check; variants): CHECKS, default all
#            four (test_quick instead of test_gpu: the quick_tests part, the GPU half's tests that
#            a change to the products, the classifier, the norms or the step touches); it returns
#            once they have ended or its time is nearly up
#   timings  waits for whatever `checks` left running, then: the variants' timings
#            (PHASE=time; only with VARIANTS=1), the dev/cuda programs KERNELS (default
#            classifier, reduce and matmul: the cuBLASLt algorithm per shape and the tuner), the
#            attention timings at the four perf shapes (ATTN_NOCHECK=1) beside the SDPA peer
#            (torch_attn.py; ATTN=0 skips them), and --profile-step 4 of the bench configs
#            PROFILES (default "gpt1b gpts dit1b dits")
#   peers    the PyTorch peers' steps kernel by kernel (scripts/peer_profile.py, torch.compile,
#            PEER_CONFIGS, default "gpt-1b gpt-s"); their compiles also warm the cache for bench
#   bench    scripts/bench_gpt.sh and scripts/bench_dit.sh against the PyTorch peers (PEER,
#            default .peer: a copy of ../shared/bench), ROUNDS rounds (default 1), CONFIGS (e.g.
#            "dit-1b gpt-1b"; one round of all four does not fit one command: the peers compile
#            first); a config still running at BENCH_S (560) s is stopped, each finished one is packed
#   stall    scripts/ckpt_stall_check.sh (issue 19's save-stall table)
#   attn     one command for an attention change when device time is short: builds, then one after
#            another dev/cuda/attention (its checks and timings), the SDPA peer (torch_attn.py), and
#            the trainers' tests ATTN_TESTS (default test_gpt test_dit test_gpt_fp32 determinism
#            resume; "all": the whole GPU half of make test) in the time left before ATTN_S (540) s;
#            its logs go straight to $OUT/attn, so what ran comes back even if the call is cut off
#   ab       an attention kernel change against a baseline, on one GPU in one command: the new
#            build of dev/cuda/attention (AB_NEW, default .sess/attention.gz, gzipped, built here
#            and carried) runs its checks with AB_ENV (the lab variants under test, e.g.
#            "ATTN_ORDERED=43 ATTN_ATOMIC=26"; several, separated by ';': the first, or
#            AB_CHECK_ENV, itself one or several) and without (AB_CHECKS=0: not); then its timings (ATTN_NOCHECK=1) with
#            each AB_ENV and without alternate AB_ROUNDS (2) times with the baseline's (AB_BASE, a
#            gzipped build, or several separated by spaces: base0, base1, ...; default the carried
#            .prebuilt.tgz's), and the SDPA peer runs once
#   peer_method  the trainers' attention timed the SDPA peer's way (dev/cuda/attention with
#            ATTN_PEER_METHOD=1; the build AB_NEW if given, else made here) and the peer
#            (torch_attn.py), alternated PM_ROUNDS (3) times, then one full timing run
#            (ATTN_NOCHECK=1); the SM clock, temperature and power are sampled all along
#            (nvidia-smi, every 500 ms, into clocks.csv)
# Each part ends with one line per piece and writes $OUT/<part>.tgz (the logs, no weights).
# Usage (GPU machine): OUT=dir bash scripts/device_session.sh checks   (then timings, peers, bench, stall; or attn alone)
#   (here, first: bash scripts/prebuilt.sh pack; the device calls carry [".peer", ".prebuilt.tgz"])
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
part=${1:-}
OUT=${OUT:-log/device_session}; W=${W:-/tmp/device_session}; mkdir -p "$OUT" "$W"
t0=$(date +%s)
since() { echo $(( $(date +%s) - t0 )); }
# bg NAME CMD: CMD in its own process session (it outlives this command), NAME.rc when it ends
bg() { local n=$1; shift; setsid bash -c "$* > $W/$n.log 2>&1; echo \$? > $W/$n.rc" < /dev/null > /dev/null 2>&1 & }
state() { local n; for n in "$@"; do echo "$n: $( [ -f "$W/$n.rc" ] && echo "exit $(cat "$W/$n.rc")" || echo running)"; done; }
wait_for() {  # wait_for SECONDS NAME...: until each NAME.rc exists or SECONDS pass
    local limit=$1; shift
    while [ "$(since)" -lt "$limit" ]; do
        local n left=0; for n in "$@"; do [ -f "$W/$n.rc" ] || left=1; done
        [ $left = 0 ] && return 0; sleep 5
    done
    return 1
}
# pack: the state in W and the part's own logs ($OUT/<part>: attn, ab, peer_method) as one file
# (the device tool brings back a few files only)
pack() {
    local own=(); [ -d "$OUT/$part" ] && own=(-C "$OUT" "$part")
    tar czf "$OUT/$part.tgz" --exclude='*.bin' --exclude='*.safetensors' --exclude='ckpt*' --exclude='*.gif' -C "$W" . "${own[@]}" 2>/dev/null
}
# gpu_name DIR: the GPU's name, memory and driver, printed and into DIR/gpu.txt
gpu_name() { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$1/gpu.txt"; }
# gpu_and_prebuilt DIR: gpu_name, then the builds made ahead (.prebuilt.tgz, carried) unpacked
# where they match this tree
gpu_and_prebuilt() {
    gpu_name "$1"
    bash scripts/prebuilt.sh unpack
}
# unzip_build GZ DEST: a gzipped build (made elsewhere and carried) into the executable DEST
unzip_build() { gzip -dc "$1" > "$2" && chmod +x "$2"; }
# attn_rows LOG: a dev/cuda/attention log's forward+backward rows of the sm90 family and the
# default at the four perf shapes, without the ceiling column
attn_rows() { grep -E 'forward\+backward \[(sm90|default)\]' "$1" | grep -v varlen | sed 's/ of 780.*//'; }
# attn_peer DIR SECONDS [NAME]: the SDPA peer's attention timings (torch_attn.py) into
# DIR/NAME (default torch_attn.log), its rows printed
attn_peer() {
    local log="$1/${3:-torch_attn.log}"
    timeout "$2" python3 "${PEER:-.peer}/torch_attn.py" > "$log" 2>&1; echo "torch_attn: exit $?"
    grep -v Warning "$log" | grep '|'
}
# CHECKS: which of the checks part's pieces run (default all four); the timings part waits for them
CHECKS=${CHECKS:-test_gpu edm recipe variants}
BG=()
for c in test_gpu test_quick edm recipe; do [[ " $CHECKS " == *" $c "* ]] && BG+=("$c"); done
case $part in
checks)
    gpu_and_prebuilt "$W"
    make -j"$(nproc)" train_dit train_gpt > "$W/build1.log" 2>&1 || { tail -30 "$W/build1.log"; exit 1; }
    rm -f "$W"/*.rc
    [[ " $CHECKS " == *" edm "* ]] && bg edm "OUT=$W/edm OBJECTIVES='rf edm' PARALLEL=1 bash scripts/edm_check.sh"
    make -j"$(nproc)" all > "$W/build2.log" 2>&1 || { tail -30 "$W/build2.log"; exit 1; }
    echo "builds: $(since) s"
    [[ " $CHECKS " == *" test_gpu "* ]] && bg test_gpu "TEST_PART=gpu bash test/run_tests.sh"
    [[ " $CHECKS " == *" test_quick "* ]] && bg test_quick "bash scripts/device_session.sh quick_tests"
    [[ " $CHECKS " == *" recipe "* ]] && bg recipe "OUT=$W/recipe bash scripts/sft_recipe_check.sh"
    if [[ " $CHECKS " == *" variants "* ]]; then
        PHASE=check CHECK_S=80 OUT="$W/av" timeout $(( 540 - $(since) )) bash scripts/attention_variants_check.sh > "$W/av_check.log" 2>&1
        echo "variant checks: $(grep -c 'checks passed' "$W/av_check.log") run, passed every check: $(tr '\n' ' ' < "$W/av/passed.txt" 2>/dev/null)"
    fi
    wait_for 560 "${BG[@]}"
    state "${BG[@]}"
    for t in test_gpu test_quick; do [ -f "$W/$t.log" ] && { tail -1 "$W/$t.log"; grep '^FAIL' "$W/$t.log" | head -10; }; done
    ;;
quick_tests)   # CHECKS piece test_quick: the part of make test's GPU half that a change to the
    # matmul, classifier, norm, optimizer or reduction code or to the trainers' step touches (the rest of
    # the dev/cuda checks and the checkpoint tests left out)
    TEST_PART=gpu GPU_TESTS="dev/cuda/adamw dev/cuda/classifier dev/cuda/matmul dev/cuda/rmsnorm dev/cuda/reduce test_gpt test_gpt_fp32 test_dit
        test_dit_fp32 determinism resume resume_dit" bash test/run_tests.sh
    ;;
timings)
    STARTED=()   # the pieces the checks part started on this machine (not CHECKS of this call)
    for c in test_gpu test_quick edm recipe; do [ -f "$W/$c.log" ] && STARTED+=("$c"); done
    wait_for 300 "${STARTED[@]}" || echo "still running after 300 s: the timings share the GPU"
    state "${STARTED[@]}"
    [ -f "$W/test_gpu.log" ] && { tail -1 "$W/test_gpu.log"; grep '^FAIL' "$W/test_gpu.log" | head -10; }
    cat "$W/edm.log" "$W/recipe.log" 2>/dev/null
    [ "${VARIANTS:-0}" = 1 ] && [ -s "$W/av/passed.txt" ] && PHASE=time TIME_S=100 OUT="$W/av" timeout $(( 450 - $(since) )) bash scripts/attention_variants_check.sh > "$W/av_time.log" 2>&1
    [ -f "$W/av_time.log" ] && tail -40 "$W/av_time.log"
    for k in ${KERNELS:-classifier reduce matmul}; do timeout 120 "./dev/cuda/$k" > "$W/$k.log" 2>&1; echo "$k: exit $?"; done
    [ -f "$W/matmul.log" ] && grep -E '^matmul_(forward|backward)' "$W/matmul.log" | grep -E ' (first|tuned) ' || true
    if [ "${ATTN:-1}" = 1 ]; then
        ATTN_NOCHECK=1 timeout 150 ./dev/cuda/attention > "$W/attention_time.log" 2>&1; echo "attention timings: exit $?"
        attn_peer "$W" 150
    fi
    # the bench configs' flags (scripts/bench_gpt.sh, bench_dit.sh), six steps, the fourth traced
    profile() {   # profile NAME TRAINER FLAGS...
        local n=$1; shift
        timeout 90 "$@" --log-dir "$W/prof_$n" --profile-step 4 > "$W/prof_$n.log" 2>&1; echo "profile $n: exit $?"
    }
    gpt_flags="--random-data 1 --steps 6 --warmup 5 --dropout 0 --val-every 0 --sample-every -1"
    want() { [[ " ${PROFILES:-gpt1b gpts dit1b dits} " == *" $1 "* ]]; }
    want gpt1b && profile gpt1b ./train_gpt --preset gpt-1b --batch-size 8 --seq-len 2048 $gpt_flags
    want gpts && profile gpts ./train_gpt --preset gpt-s --batch-size 32 --seq-len 1024 $gpt_flags
    want dit1b && profile dit1b ./train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 --random-data 1 --steps 6
    want dits && profile dits ./train_dit --preset dit-s --batch-size 8 --frames 8 --height 32 --width 32 --text-len 128 --random-data 1 --steps 6
    for n in gpt1b gpts dit1b dits; do [ -f "$W/prof_$n/profile_step_4.txt" ] && { echo "== $n"; sed -n '1,9p' "$W/prof_$n/profile_step_4.txt"; grep summary "$W/prof_$n.log"; }; done
    ;;
peers)
    PEER=${PEER:-.peer}
    for c in ${PEER_CONFIGS:-gpt-1b gpt-s}; do
        case $c in gpt-*) p=torch_gpt.py ;; dit-*) p=torch_dit.py ;; *) echo "PEER_CONFIGS: unknown $c"; exit 1 ;; esac
        left=$(( 560 - $(since) )); [ "$left" -gt 30 ] || { echo "peer $c: not started, no time left"; continue; }
        timeout "$left" python3 scripts/peer_profile.py "$PEER/$p" "$c" --compile > "$W/peer_$c.log" 2>&1
        echo "peer $c: exit $?"; sed -n '/^peer step/,/^$/p' "$W/peer_$c.log"
    done
    ;;
bench)
    PEER=${PEER:-.peer}; [ -d "$PEER" ] || { echo "no peer folder $PEER (copy ../shared/bench there)"; exit 1; }
    for c in ${CONFIGS:-gpt-s gpt-1b dit-s dit-1b}; do
        case $c in gpt-*) s=bench_gpt.sh ;; dit-*) s=bench_dit.sh ;; *) echo "CONFIGS: unknown $c"; exit 1 ;; esac
        left=$(( ${BENCH_S:-560} - $(since) )); [ "$left" -gt 5 ] || { echo "bench $c: not started, no time left"; continue; }
        # its own process group, killed whole when its time is up (a peer's python outlives a plain timeout)
        setsid env PEER="$PEER" ROUNDS="${ROUNDS:-1}" OUT="$W/bench" bash "scripts/$s" "$c" > "$W/bench_$c.txt" 2>&1 &
        pid=$!
        # (the watcher's output away from this command's, and its sleep ended with it: a sleep left
        # holding the caller's pipe keeps the device call open until it ends)
        ( sleep "$left"; kill -- -"$pid" 2>/dev/null ) > /dev/null 2>&1 & watcher=$!
        wait "$pid" || echo "bench $c: exit $? (stopped after $left s?)"
        pkill -P "$watcher" 2>/dev/null; kill "$watcher" 2>/dev/null
        grep '^bench ' "$W/bench_$c.txt" | tee -a "$W/bench.txt"
        pack   # what has finished comes back even if a later config is cut off
    done
    ;;
attn)
    A="$OUT/attn"; mkdir -p "$A"
    gpu_and_prebuilt "$A"
    make -j"$(nproc)" all > "$A/build.log" 2>&1 || { tail -30 "$A/build.log"; exit 1; }
    echo "builds: $(since) s"
    timeout 240 ./dev/cuda/attention > "$A/attention.log" 2>&1; echo "attention: exit $? at $(since) s"
    grep -E 'forward\+backward|^attention' "$A/attention.log"
    attn_peer "$A" 120
    left=$(( ${ATTN_S:-540} - $(since) ))
    if [ "$left" -gt 30 ]; then
        tests=${ATTN_TESTS:-test_gpt test_dit test_gpt_fp32 determinism resume}
        [ "$tests" = all ] && tests=""   # GPU_TESTS empty: the whole GPU half
        TEST_PART=gpu GPU_TESTS="$tests" timeout "$left" bash test/run_tests.sh > "$A/tests.log" 2>&1; echo "tests: exit $?"
        tail -1 "$A/tests.log"; grep '^FAIL' "$A/tests.log" | head -10
    else
        echo "tests: not started, no time left"
    fi
    ;;
ab)
    A="$OUT/ab"; B=/tmp/device_ab; mkdir -p "$A" "$B"   # (the builds outside $OUT and $W: they need not come back)
    gpu_name "$A"
    read -r -a ab_bases <<< "${AB_BASE:-}"   # (several baselines: separated by spaces, timed base0, base1, ...)
    if [ ${#ab_bases[@]} = 0 ]; then tar xzf .prebuilt.tgz -O dev/cuda/attention > "$B/base0" && chmod +x "$B/base0" || exit 1
    else for k in "${!ab_bases[@]}"; do unzip_build "${ab_bases[$k]}" "$B/base$k" || exit 1; done; fi
    nbases=$(( ${#ab_bases[@]} > 0 ? ${#ab_bases[@]} : 1 ))
    unzip_build "${AB_NEW:-.sess/attention.gz}" "$B/new" || exit 1
    IFS=';' read -r -a ab_envs <<< "${AB_ENV:-}"   # (several variants: separated by ';')
    # (AB_CHECK_ENV set and empty: the checks without it only; several, separated by ';': one run each)
    IFS=';' read -r -a check_envs <<< "${AB_CHECK_ENV-${ab_envs[0]:-}}"
    if [ "${AB_CHECKS:-1}" = 1 ]; then   # (AB_CHECKS=0: the timings only, for a build already checked)
        for k in "${!check_envs[@]}"; do
            e=${check_envs[$k]}; [ -n "$e" ] || continue
            timeout 150 env $e "$B/new" > "$A/check_env$k.log" 2>&1
            echo "checks with $e: exit $?, $(grep -c '^FAIL' "$A/check_env$k.log") FAIL lines"; tail -1 "$A/check_env$k.log"
        done
        timeout 150 "$B/new" > "$A/check.log" 2>&1; echo "checks: exit $?"; tail -1 "$A/check.log"
    fi
    for i in $(seq 1 "${AB_ROUNDS:-2}"); do
        runs=()
        for k in $(seq 0 $((nbases - 1))); do runs+=("base$k"); done
        runs+=(new)
        for k in "${!ab_envs[@]}"; do runs+=("env$k"); done
        for run in "${runs[@]}"; do
            case $run in
                base*) bin="$B/$run"; e="" ;;
                new) bin="$B/new"; e="" ;;
                env*) bin="$B/new"; e="${ab_envs[${run#env}]}" ;;
            esac
            timeout 120 env ATTN_NOCHECK=1 $e "$bin" > "$A/time_${run}_$i.log" 2>&1
            echo "== $run $e round $i (exit $?, $(since) s)"
            attn_rows "$A/time_${run}_$i.log"
        done
    done
    attn_peer "$A" 120
    ;;
peer_method)
    A="$OUT/peer_method"; mkdir -p "$A"
    gpu_name "$A"
    bin=./dev/cuda/attention
    if [ -n "${AB_NEW:-}" ]; then bin=/tmp/device_pm_attention; unzip_build "$AB_NEW" $bin || exit 1
    else make dev/cuda/attention > "$A/build.log" 2>&1 || { tail -20 "$A/build.log"; exit 1; }; fi
    nvidia-smi --query-gpu=timestamp,clocks.sm,temperature.gpu,power.draw --format=csv -lms 500 > "$A/clocks.csv" 2>&1 &
    smi=$!
    for i in $(seq 1 "${PM_ROUNDS:-3}"); do
        echo "== round $i ($(since) s)"
        ATTN_PEER_METHOD=1 timeout 120 $bin > "$A/mega_$i.log" 2>&1; echo "attention: exit $?"; grep '^peer method' "$A/mega_$i.log"
        attn_peer "$A" 120 "torch_attn_$i.log"
    done
    echo "== full timing run from $(since) s"
    ATTN_NOCHECK=1 timeout 150 $bin > "$A/full.log" 2>&1; echo "attention: exit $? at $(since) s"
    attn_rows "$A/full.log"
    kill $smi
    ;;
stall)
    OUT="$W/stall" EVERY=200 STEPS=610 timeout 540 bash scripts/ckpt_stall_check.sh
    ;;
*)
    echo "usage: OUT=dir bash scripts/device_session.sh checks|timings|peers|bench|stall|attn|ab|peer_method"; exit 2 ;;
esac
echo "$part: $(since) s"
pack
