#!/usr/bin/env bash
# The multi-GPU check, for a machine with 2 or more GPUs (DP=4 parts need 4); about
# 8 minutes on 4 H200s after the build. Builds train_gpt and train_dit, then checks
# (one PASS/FAIL line each), for each data-parallel size N in 2 and 4 (4 when present):
#   gpt_dpN_vs_single    DP=N by mpirun (ZeRO-1) = one GPU with gradient accumulation to
#                        the same global batch (shakespeare preset, B8 T256, 8192 tokens/step, 20 steps)
#   gpt_dpN_zero0 / _zero2  DP=N with --zero 0 and --zero 2 = --zero 1
#   gpt_dpN_env_vs_mpirun   N processes launched with WORLD_SIZE/RANK/LOCAL_RANK/MASTER_ADDR/
#                        MASTER_PORT = the mpirun launch
#   dit_dpN_vs_single_z1 / _z2  train_dit DP=N (4/N samples per GPU, ZeRO-1 and ZeRO-2) = one
#                        GPU with B4 (tiny preset on random synthetic batches, 20 steps)
# and once:
#   gpt_kill_rank1       kill -9 of rank 1 of N mid-run: every other rank exits non-zero (not by a
#                        signal) within 60 s, rank 0 with an "error: rank 0: ..." line (--dist-timeout 15)
#   gpt_hang_rank1       the same with rank 1 stopped (SIGSTOP: a hang)
#   resume_2to1 / resume_2toN  a 2-GPU ZeRO-1 checkpoint (step 10) loaded on 1 GPU and on N GPUs
#                        (ZeRO-2) and saved again at once: model.bin and the state payload (AdamW
#                        moments, master weights) byte-identical; then resumed there to step 20:
#                        losses and norms as the 2-GPU run that resumed (tolerances below)
#   gpt1b_scaling / dit1b_scaling  tokens/s on 1, 2 and N GPUs with a fixed per-GPU batch
#                        (gpt-1b B8 T2048 random tokens; the 1B DiT, 28 layers, 14x48x80 latents,
#                        B1), ZeRO-1; PASS at >= 95% of N x the one-GPU figure (issue 5's bar)
#   gpt1b_memory         gpt-1b per-rank memory lines of ZeRO 0/1/2 on N GPUs: the per-rank
#                        total must fall with the stage
# and context parallel on 2 GPUs (issue 23, docs/context_parallel.md), the same tolerances:
#   gpt_cp2_vs_single / dit_cp2_vs_single   --cp 2 over 2 processes (one group) = one GPU, the same
#                        global batch, ZeRO-1, 20 steps; gpt_cp2_repeat: bit-identical run to run
#   gpt_cp2_zero2 / gpt_cp2_full / dit_cp2_zero2 / dit_cp2_full   with ZeRO-2, with full recompute
#   cp_resume_2to1 / cp_resume_1to2   a --cp 2 checkpoint (step 10) resumed with --cp 1 on one GPU,
#                        and a one-GPU checkpoint resumed with --cp 2: steps 11-20 as the uninterrupted run
#   gpt_cp_kill_rank1    kill -9 of rank 1 of a --cp 2 run mid-step: rank 0 exits non-zero within 60 s
#                        with one "error: rank 0: ..." line, and the last checkpoint stays whole (it verifies)
#   cp_speed_gpt / cp_speed_dit   tokens/s of one sample split over 2 GPUs >= 1.8 x one GPU's:
#                        gpt-1b T 32768, the 1B DiT (28 layers) at 50,400 tokens (full recompute)
#   cp_plan_memory       each rank's peak (nvidia-smi) within 5% of the memory plan's total per rank,
#                        ZeRO 0/1/2 with --cp 2 and --cp 1 x DP 2 (gpt-1b T 32768)
#   cp_length_dit        the longest 1B DiT sample (frames of 48 x 80 latents) --cp 2 trains against
#                        --cp 1 (aim: 2x); a table, PASS when --cp 2 trains a longer one
# Tolerances (bf16 weights and activations, fp32 gradients and optimizer): both runs start
# from the same weights and see the same samples per step, so step 1 differs only by the
# order of fp32 additions: |a - b| <= 1e-3 |b| for the loss and the grad norm. Later steps
# carry those differences through bf16 weight updates: every one of the 20 steps within
# 2e-2 |b| (loss) and 5e-2 |b| (norm). Every comparison also allows the printing
# resolution (loss %.4f / %.6f, norm %.3f / %.4f).
# QUICK=1: the equality checks only (no kill/hang, resume, scaling): a few minutes after the build.
# CP=only: the context-parallel part alone (with QUICK=1: its equality checks only).
# MAXGPU=N: use at most N GPUs. Logs under ${OUT:-log/multi_gpu}; a table of the scaling runs in
# $OUT/scaling.txt; the last line is "N passed, M failed" (exit 1 on a failure).
# NCCL_NVLS_ENABLE=0 is exported for every run (NVLink multicast off on these machines).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/multi_gpu}
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/*.txt; rm -rf "$OUT"/*.train   # this script's files from an earlier run
export NCCL_NVLS_ENABLE=0
passed=0; failed=0
pass() { echo "PASS $1: $2"; passed=$((passed + 1)); }
failc() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
finish() { echo; echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }
port() { echo $((20000 + RANDOM % 12000)); }   # below the ephemeral range NCCL binds in
now_ms() { date +%s%3N; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
[ -n "${MAXGPU:-}" ] && [ "$ngpu" -gt "$MAXGPU" ] && ngpu=$MAXGPU
echo "GPUs: $ngpu ($(head -1 "$OUT/gpu.txt"))"
if [ "$ngpu" -lt 2 ]; then failc gpus "this check needs 2 GPUs, found $ngpu"; finish; fi
NMAX=$([ "$ngpu" -ge 4 ] && echo 4 || echo 2)
DPS=$([ "$NMAX" = 4 ] && echo "2 4" || echo "2")
if ! make -j train_gpt train_dit > "$OUT/build.log" 2>&1; then
    tail -20 "$OUT/build.log"; failc build "make -j train_gpt train_dit failed (see $OUT/build.log)"; finish
fi
if ! ldd ./train_gpt | grep -q libnccl; then failc build "train_gpt is not linked with NCCL (nccl.h not found at build time?)"; finish; fi
mpi_ok=0
if command -v mpirun > /dev/null 2>&1 && mpirun --version 2>&1 | grep -q "Open MPI"; then mpi_ok=1; fi
echo "mpirun: $([ $mpi_ok = 1 ] && mpirun --version 2>&1 | head -1 || echo 'no Open MPI mpirun: the DP runs use the environment-variable launch')"

# mpi NP NAME BIN ARGS...: NP processes by mpirun; the output (rank 0's, plus each rank's memory line) in $OUT/NAME.log.
# MASTER_ADDR/MASTER_PORT let a build without MPI (no mpi.h) use the TCP rendezvous under mpirun.
mpi() {
    local np=$1 name=$2 bin=$3; shift 3
    timeout 600 mpirun --allow-run-as-root -np "$np" --bind-to none -x NCCL_NVLS_ENABLE -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT="$(port)" \
        "$bin" "$@" > "$OUT/$name.log" 2>&1
}
# start_ranks NP PORT NAME CMD...: ranks 1..NP-1 of an environment-variable launch of CMD in the
# background (output in $OUT/NAME.rankR.log), their pids in RANK_PIDS; the `&` is on CMD itself,
# so a pid is the process (a signal to it reaches CMD). The caller starts rank 0.
start_ranks() {
    local np=$1 p=$2 name=$3 r; shift 3
    RANK_PIDS=()
    for r in $(seq 1 $((np - 1))); do
        WORLD_SIZE=$np RANK=$r LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$p "$@" > "$OUT/$name.rank$r.log" 2>&1 &
        RANK_PIDS+=($!)
    done
}
# envrun NP NAME BIN ARGS...: NP processes with WORLD_SIZE/RANK/LOCAL_RANK/MASTER_ADDR/MASTER_PORT;
# rank 0's output in $OUT/NAME.log, rank r's in $OUT/NAME.rankR.log
envrun() {
    local np=$1 name=$2 bin=$3; shift 3
    local p r rc=0; p=$(port)
    start_ranks "$np" "$p" "$name" timeout 600 "$bin" "$@"
    WORLD_SIZE=$np RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p timeout 600 "$bin" "$@" > "$OUT/$name.log" 2>&1 || rc=1
    for r in "${RANK_PIDS[@]}"; do wait "$r" || rc=1; done
    return $rc
}
dp() { if [ $mpi_ok = 1 ]; then mpi "$@"; else envrun "$@"; fi; }
single() {  # single NAME BIN ARGS...: one process on GPU 0
    local name=$1 bin=$2; shift 2
    CUDA_VISIBLE_DEVICES=0 timeout 600 "$bin" "$@" > "$OUT/$name.log" 2>&1
}
steps_of() { grep -cE '^step +[0-9]+/[0-9]+ \| loss' "$OUT/$1.log"; }

. scripts/compare_steps.sh   # compare NAME REF TEST FIRST_TOL LOSS_TOL NORM_TOL [NORM_STEPS [CONTROL]]
# same_steps NAME DETAIL A B: the step lines' loss, lr and norm of two logs identical (20 steps)
same_steps() {
    if [ "$(steps_of "$3")" -eq 20 ] && cmp -s <(grep -E '^step +[0-9]+/' "$OUT/$3.log" | cut -d'|' -f1-4) \
                                               <(grep -E '^step +[0-9]+/' "$OUT/$4.log" | cut -d'|' -f1-4); then
        pass "$1" "$2: 20 steps' loss, lr and norm identical"
    else
        failc "$1" "$2: the step lines differ (see $OUT/$3.log, $OUT/$4.log)"
    fi
}
# the runs every part uses: the GPT (shakespeare, 8192 tokens a step), the DiT (tiny, random), resume, tokens/s
GPT_NORM_STEPS=10
GPT=(--preset shakespeare --batch-size 8 --seq-len 256 --total-batch-tokens 8192 --steps 20 --warmup 2 --lr 1e-3 --dropout 0
     --val-every 0 --sample-every -1 --log-dir "")
DIT=(--preset tiny --random-data 1 --frames 2 --height 16 --width 16 --text-len 16 --caption-channels 64 --in-channels 4
     --out-channels 8 --steps 20 --lr 3e-4 --log-dir "")
RES=(--preset shakespeare --batch-size 8 --seq-len 256 --total-batch-tokens 8192 --warmup 2 --lr 1e-3 --dropout 0
     --val-every 0 --sample-every -1 --log-dir "")
toks() { grep '^summary' "$OUT/$1.log" | sed -E 's/.*\| ([0-9]+) tok\/s.*/\1/'; }
if [ ! -f data/shakespeare/tokenizer.bin ]; then   # the default dataset is built by one process, once
    CUDA_VISIBLE_DEVICES=0 ./train_gpt --steps 0 --val-every 0 --sample-every -1 --log-dir "" > "$OUT/build_data.log" 2>&1
fi
if [ "${CP:-}" != only ]; then

# ---------------------------------------------------------------- train_gpt: equality
# The GPT run's gradient norm is chaotic. Measured on one H200 (2026-11-29), ONE GPU, the same
# 8192-token steps as B8 x 4 micro-steps, B16 x 2 and B32 x 1 (only the order of fp32 additions
# differs): the same loss to 5e-3 at step 15, but grad norms 0.449 / 0.703 / 1.252 at step 15 and
# 0.557 / 1.708 / 54.65 at step 14; on 2 H200s DP=2 was 6% off one GPU in the norm at step 4 while
# B16 x 2 and B8 x 4 were 16% apart by step 10. So norms are compared over the first 10 steps,
# and DP = one GPU is judged against the one-GPU B16 x 2 run as compare's CONTROL. The losses
# stay within tolerance over all 20 steps.
single gpt_single ./train_gpt "${GPT[@]}" || true
if [ "$(steps_of gpt_single)" -ne 20 ]; then
    failc gpt_single "the one-GPU reference did not run 20 steps (see $OUT/gpt_single.log: $(tail -1 "$OUT/gpt_single.log"))"
fi
# the control: one GPU, the same steps as B16 x 2 micro-steps (only the order of additions differs)
single gpt_single_b16 ./train_gpt "${GPT[@]}" --batch-size 16 || true
launcher=$([ $mpi_ok = 1 ] && echo mpirun || echo "environment variables (no mpirun)")
for n in $DPS; do
    dp "$n" gpt_dp${n}_z1 ./train_gpt "${GPT[@]}" --zero 1 || true
    compare "gpt_dp${n}_vs_single (DP=$n by $launcher, ZeRO-1)" gpt_single gpt_dp${n}_z1 1e-3 2e-2 5e-2 $GPT_NORM_STEPS gpt_single_b16
    dp "$n" gpt_dp${n}_z0 ./train_gpt "${GPT[@]}" --zero 0 || true
    compare "gpt_dp${n}_zero0 (ZeRO-0 all-reduce vs ZeRO-1)" gpt_dp${n}_z1 gpt_dp${n}_z0 1e-3 2e-2 5e-2 $GPT_NORM_STEPS
    dp "$n" gpt_dp${n}_z2 ./train_gpt "${GPT[@]}" --zero 2 || true
    compare "gpt_dp${n}_zero2 (ZeRO-2 vs ZeRO-1)" gpt_dp${n}_z1 gpt_dp${n}_z2 1e-3 2e-2 5e-2 $GPT_NORM_STEPS
    envrun "$n" gpt_env${n}_z1 ./train_gpt "${GPT[@]}" --zero 1 || true
    if [ $mpi_ok = 1 ]; then
        compare "gpt_dp${n}_env_vs_mpirun (env-var launch vs mpirun, ZeRO-1)" gpt_dp${n}_z1 gpt_env${n}_z1 1e-3 2e-2 5e-2 $GPT_NORM_STEPS
    else
        failc gpt_dp${n}_env_vs_mpirun "no Open MPI mpirun on this machine: only the environment-variable launch ran"
    fi
done

# ---------------------------------------------------------------- train_dit: equality
single dit_single ./train_dit "${DIT[@]}" --batch-size 4 || true
if [ "$(steps_of dit_single)" -ne 20 ]; then failc dit_single "the one-GPU reference did not run 20 steps (see $OUT/dit_single.log)"; fi
for n in $DPS; do
    for z in 1 2; do
        dp "$n" dit_dp${n}_z$z ./train_dit "${DIT[@]}" --batch-size $((4 / n)) --zero $z || true
        compare "dit_dp${n}_vs_single_z$z (DP=$n x B$((4 / n)) vs one GPU B4, ZeRO-$z)" dit_single dit_dp${n}_z$z 1e-3 2e-2 5e-2
    done
done
if [ "${QUICK:-0}" != 1 ]; then   # QUICK=1: on to the context-parallel equality checks

# ---------------------------------------------------------------- train_gpt: a rank dies or hangs
# kill_test NAME SIGNAL: NMAX env-launched processes; after rank 0 logged step 10, SIGNAL to rank 1;
# every other rank must exit non-zero (not by a signal) within 60 s, rank 0 with one "error: rank 0: ..." line.
kill_test() {   # NAME SIGNAL [NP [EXTRA FLAGS...]]
    local name=$1 sig=$2 d="$OUT/$1.train" np=${3:-$NMAX}
    shift 2; [ $# -gt 0 ] && shift
    rm -rf "$d"
    local p r; p=$(port)
    local args=(--preset shakespeare --batch-size 8 --seq-len 256 --steps 100000 --warmup 2 --dropout 0 --val-every 0 --sample-every -1 --dist-timeout 15 "$@")
    start_ranks "$np" "$p" "$name" ./train_gpt "${args[@]}" --log-dir ""
    local pids=("${RANK_PIDS[@]}")
    WORLD_SIZE=$np RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p ./train_gpt "${args[@]}" --log-dir "$d" > "$OUT/$name.log" 2>&1 &
    local pid0=$! victim=${pids[0]} i
    for i in $(seq 1 180); do
        grep -q '^step 10 ' "$d/train.log" 2>/dev/null && break
        kill -0 $pid0 2>/dev/null || break
        sleep 0.5
    done
    if ! grep -q '^step 10 ' "$d/train.log" 2>/dev/null; then
        failc "$name" "rank 0 never logged step 10 (see $OUT/$name.log: $(tail -1 "$OUT/$name.log"))"
        kill -9 $pid0 "${pids[@]}" 2>/dev/null; wait $pid0 "${pids[@]}" 2>/dev/null; return
    fi
    kill -"$sig" "$victim"
    local t0; t0=$(now_ms)
    local survivors=($pid0 "${pids[@]:1}")
    for i in $(seq 1 240); do
        local any=0 q
        for q in "${survivors[@]}"; do kill -0 "$q" 2>/dev/null && any=1; done
        [ $any = 0 ] && break
        sleep 0.25
    done
    local t1; t1=$(now_ms)
    local alive=0 codes="" rc0=0 allbad=1 q
    for q in "${survivors[@]}"; do
        kill -0 "$q" 2>/dev/null && { alive=$((alive + 1)); kill -9 "$q"; }
        wait "$q"; local rc=$?
        [ "$q" = "$pid0" ] && rc0=$rc
        codes="$codes $rc"
        { [ $rc -eq 0 ] || [ $rc -ge 128 ]; } && allbad=0
    done
    kill -9 "$victim" 2>/dev/null; wait "$victim" 2>/dev/null
    local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
    local msg; msg=$(grep -m1 '^error: rank 0' "$OUT/$name.log")
    local steps; steps=$(grep -c '^step ' "$d/train.log")
    if [ $alive = 0 ] && [ $allbad = 1 ] && [ -n "$msg" ] && awk -v s="$secs" 'BEGIN { exit !(s <= 60) }'; then
        pass "$name" "all $((np - 1)) other ranks exited non-zero (codes$codes) within ${secs} s of SIG$sig to rank 1 of $np after step 10 (rank 0 logged $steps steps): $msg"
    else
        failc "$name" "$alive of $((np - 1)) other ranks still alive after ${secs} s, exit codes$codes (rank 0: $rc0), rank 0's message '${msg:-none}' (see $OUT/$name.log)"
    fi
}
kill_test gpt_kill_rank1 KILL
kill_test gpt_hang_rank1 STOP

# ---------------------------------------------------------------- checkpoints across GPU counts
# A 2-GPU ZeRO-1 run saves at step 10 (--exit-at-step); loaded on 1 GPU and on NMAX GPUs with
# ZeRO-2 and --steps 10 into another --ckpt-dir, it is saved again at once (the shards gathered
# from the new partition): model.bin identical, state.bin's payload (m, v) identical (its header
# differs in sched_steps only). Then each resumes from step 10 to 20 and is compared with the
# 2-GPU run's own resume.
R="$OUT/resume.train"; rm -rf "$R"; mkdir -p "$R"
dp 2 resume_save2 ./train_gpt "${RES[@]}" --steps 20 --zero 1 --ckpt-dir "$R/two" --exit-at-step 10 || true
c10="$R/two/step_00000010"
if [ ! -f "$c10/state.bin" ]; then
    failc resume "the 2-GPU run wrote no checkpoint at step 10 (see $OUT/resume_save2.log: $(tail -1 "$OUT/resume_save2.log"))"
else
    dp 2 resume_ref2 ./train_gpt "${RES[@]}" --steps 20 --zero 1 --resume-from "$c10" || true
    for n in 1 $NMAX; do
        if [ "$n" = 1 ]; then run1() { single "$@"; }; else run1() { local nm=$1; shift; dp "$n" "$nm" "$@"; }; fi
        run1 resume_load$n ./train_gpt "${RES[@]}" --steps 10 --zero 2 --resume-from "$c10" --ckpt-dir "$R/n$n" || true
        c="$R/n$n/step_00000010"
        if [ -f "$c/state.bin" ] && cmp -s "$c10/model.bin" "$c/model.bin" && cmp -s -i 1024 "$c10/state.bin" "$c/state.bin"; then
            same="model.bin and state.bin's payload byte-identical after loading and saving on $n GPU(s)"; sok=1
        else
            same="re-saved on $n GPU(s): $( [ -f "$c/state.bin" ] || echo 'no checkpoint;') model.bin $(cmp "$c10/model.bin" "$c/model.bin" 2>&1 | head -1 || true); state payload $(cmp -i 1024 "$c10/state.bin" "$c/state.bin" 2>&1 | head -1 || true) (see $OUT/resume_load$n.log)"; sok=0
        fi
        run1 resume_cont$n ./train_gpt "${RES[@]}" --steps 20 --zero 2 --resume-from "$c10" || true
        res=$(compare "x" resume_ref2 resume_cont$n 1e-3 2e-2 5e-2 13)   # norms over steps 11-13 (see GPT_NORM_STEPS)
        if [ $sok = 1 ] && [[ $res == PASS* ]]; then pass "resume_2to$n" "$same; steps 11-20 on $n GPU(s) vs 2: ${res#PASS x: }"
        else failc "resume_2to$n" "$same; steps 11-20: ${res#* x: }"; fi
    done
fi

# ---------------------------------------------------------------- scaling: gpt-1b and the 1B DiT
G1B=(--preset gpt-1b --random-data 1 --batch-size 8 --seq-len 2048 --steps 8 --warmup 2 --val-every 0 --sample-every -1 --log-dir "")
D1B=(--preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 --random-data 1 --steps 8 --log-dir "")
: > "$OUT/scaling.txt"
scaling() {   # scaling NAME BIN ARGS...: one line of the table, PASS at >= 0.95 N x on every N
    local name=$1 bin=$2; shift 2
    single "${name}_1gpu" "$bin" "$@" --zero 1 || true
    local t1 n tn line="" ok=1
    t1=$(toks "${name}_1gpu")
    [ -z "$t1" ] && { failc "${name}_scaling" "no summary line on 1 GPU (see $OUT/${name}_1gpu.log: $(tail -1 "$OUT/${name}_1gpu.log"))"; return; }
    line="1 GPU $t1 tok/s"
    for n in $DPS; do
        dp "$n" "${name}_${n}gpu" "$bin" "$@" --zero 1 || true
        tn=$(toks "${name}_${n}gpu")
        if [ -z "$tn" ]; then line="$line; $n GPUs: no summary ($OUT/${name}_${n}gpu.log)"; ok=0; continue; fi
        local eff; eff=$(awk -v a="$t1" -v b="$tn" -v n="$n" 'BEGIN { printf "%.3f", b / (n * a) }')
        line="$line; $n GPUs $tn tok/s = $eff of ${n}x"
        awk -v e="$eff" 'BEGIN { exit !(e >= 0.95) }' || ok=0
    done
    echo "$name: $line" >> "$OUT/scaling.txt"
    if [ $ok = 1 ]; then pass "${name}_scaling" "$line (fixed per-GPU batch, ZeRO-1)"; else failc "${name}_scaling" "$line: below 0.95 of N x"; fi
}
scaling gpt1b ./train_gpt "${G1B[@]}"
scaling dit1b ./train_dit "${D1B[@]}"

# ---------------------------------------------------------------- gpt-1b: per-rank memory, ZeRO 0/1/2
# Start NMAX processes, keep their memory lines (printed before the weights are initialized),
# then stop them: the init of 1.5B weights on the CPU is what takes time
mem_only() {
    local z=$1 name="gpt1b_mem_z$1" np=$NMAX
    local p i; p=$(port)
    start_ranks "$np" "$p" "$name" ./train_gpt "${G1B[@]}" --zero "$z"
    local pids=("${RANK_PIDS[@]}")
    WORLD_SIZE=$np RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p ./train_gpt "${G1B[@]}" --zero "$z" > "$OUT/$name.log" 2>&1 &
    local pid0=$!
    for i in $(seq 1 240); do
        grep -q '^memory rank' "$OUT/$name.log" && grep -q '^memory rank' "$OUT/$name.rank1.log" && break
        kill -0 $pid0 2>/dev/null || break
        sleep 0.25
    done
    kill -9 $pid0 "${pids[@]}" 2>/dev/null; wait $pid0 "${pids[@]}" 2>/dev/null
}
for z in 0 1 2; do mem_only $z; done
: > "$OUT/memory_gpt1b.txt"
tot() { grep -h -m1 "^memory rank 0" "$OUT/$1.log" 2>/dev/null | head -1 | sed -E 's/.*\| total ([0-9.]+) GiB.*/\1/'; }
for z in 0 1 2; do grep -h '^memory rank' "$OUT/gpt1b_mem_z$z.log" "$OUT"/gpt1b_mem_z$z.rank*.log 2>/dev/null | sort -u >> "$OUT/memory_gpt1b.txt"; done
grep -h '^memory rank' "$OUT/gpt1b_1gpu.log" >> "$OUT/memory_gpt1b.txt" 2>/dev/null
m0=$(tot gpt1b_mem_z0); m1=$(tot gpt1b_mem_z1); m2=$(tot gpt1b_mem_z2)
if [ -n "$m0" ] && [ -n "$m1" ] && [ -n "$m2" ] && awk -v a="$m0" -v b="$m1" -v c="$m2" 'BEGIN { exit !(a > b && b > c) }'; then
    pass gpt1b_memory "rank 0 of $NMAX, total per rank: ZeRO-0 $m0 GiB > ZeRO-1 $m1 GiB > ZeRO-2 $m2 GiB ($OUT/memory_gpt1b.txt)"
else
    failc gpt1b_memory "ZeRO-0 '${m0:-?}' ZeRO-1 '${m1:-?}' ZeRO-2 '${m2:-?}' GiB (see $OUT/memory_gpt1b.txt)"
fi
cat "$OUT/scaling.txt" "$OUT/memory_gpt1b.txt"
fi   # QUICK != 1
fi   # CP != only

# ---------------------------------------------------------------- context parallel on 2 GPUs
# One CP group of the 2 ranks (--cp 2, data parallel 1) against one GPU with the same global batch.
[ -f "$OUT/gpt_single.log" ] || single gpt_single ./train_gpt "${GPT[@]}" || true   # (made above unless CP=only)
dp 2 gpt_cp2_z1 ./train_gpt "${GPT[@]}" --cp 2 --zero 1 || true
compare "gpt_cp2_vs_single (--cp 2 on 2 GPUs vs one GPU, ZeRO-1)" gpt_single gpt_cp2_z1 2e-3 2e-2 5e-2 $GPT_NORM_STEPS
dp 2 gpt_cp2_z1_again ./train_gpt "${GPT[@]}" --cp 2 --zero 1 || true
same_steps gpt_cp2_repeat "--cp 2 run to run" gpt_cp2_z1 gpt_cp2_z1_again
dp 2 gpt_cp2_z2 ./train_gpt "${GPT[@]}" --cp 2 --zero 2 || true
compare "gpt_cp2_zero2 (--cp 2, ZeRO-2 vs ZeRO-1)" gpt_cp2_z1 gpt_cp2_z2 1e-3 2e-2 5e-2 $GPT_NORM_STEPS
dp 2 gpt_cp2_full ./train_gpt "${GPT[@]}" --cp 2 --zero 1 --recompute full || true
same_steps gpt_cp2_full "--cp 2 with full recompute vs without" gpt_cp2_z1 gpt_cp2_full
[ -f "$OUT/dit_single.log" ] || single dit_single ./train_dit "${DIT[@]}" --batch-size 4 || true
for z in 1 2; do
    dp 2 dit_cp2_z$z ./train_dit "${DIT[@]}" --batch-size 4 --cp 2 --zero $z || true
    compare "dit_cp2_vs_single_z$z (--cp 2 on 2 GPUs vs one GPU, B4, ZeRO-$z)" dit_single dit_cp2_z$z 2e-3 2e-2 5e-2
done
dp 2 dit_cp2_full ./train_dit "${DIT[@]}" --batch-size 4 --cp 2 --zero 1 --recompute full || true
same_steps dit_cp2_full "--cp 2 with full recompute vs without" dit_cp2_z1 dit_cp2_full
[ "${QUICK:-0}" = 1 ] && finish

# checkpoints across CP sizes: a --cp 2 run saves at step 10, a --cp 1 run (one GPU) resumes it to
# step 20, and the reverse; each against the uninterrupted run of its resuming CP size
R="$OUT/cp_resume.train"; rm -rf "$R"; mkdir -p "$R"
dp 2 cp_save2 ./train_gpt "${RES[@]}" --steps 20 --cp 2 --ckpt-dir "$R/cp2" --exit-at-step 10 || true
single cp_save1 ./train_gpt "${RES[@]}" --steps 20 --ckpt-dir "$R/cp1" --exit-at-step 10 || true
single cp_full1 ./train_gpt "${RES[@]}" --steps 20 || true
dp 2 cp_full2 ./train_gpt "${RES[@]}" --steps 20 --cp 2 || true
single cp_resume_2to1 ./train_gpt "${RES[@]}" --steps 20 --resume-from "$R/cp2/step_00000010" || true
compare "cp_resume_2to1 (a --cp 2 checkpoint resumed on one GPU vs one GPU throughout, steps 11-20)" cp_full1 cp_resume_2to1 2e-3 2e-2 5e-2 13
dp 2 cp_resume_1to2 ./train_gpt "${RES[@]}" --steps 20 --cp 2 --resume-from "$R/cp1/step_00000010" || true
compare "cp_resume_1to2 (a one-GPU checkpoint resumed with --cp 2 vs --cp 2 throughout, steps 11-20)" cp_full2 cp_resume_1to2 2e-3 2e-2 5e-2 13

# a rank of a CP group dies mid-step: the other stops within 60 s, and the checkpoint it leaves verifies
kill_test gpt_cp_kill_rank1 KILL 2 --cp 2 --ckpt-dir "$OUT/gpt_cp_kill_rank1.ckpt" --ckpt-every 5
if ./train_gpt --preset shakespeare --batch-size 8 --seq-len 256 --resume-from "$OUT/gpt_cp_kill_rank1.ckpt" --steps 0 \
       --val-every 0 --sample-every -1 --log-dir "" > "$OUT/gpt_cp_kill_verify.log" 2>&1; then
    pass gpt_cp_kill_checkpoint "the last checkpoint of the killed --cp 2 run verifies and loads ($(grep -m1 '^resumed from' "$OUT/gpt_cp_kill_verify.log"))"
else
    failc gpt_cp_kill_checkpoint "the killed --cp 2 run left no checkpoint that loads: $(tail -1 "$OUT/gpt_cp_kill_verify.log")"
fi

# speed: one sample split over 2 GPUs against one GPU
cp_speed() {   # NAME BIN ARGS...
    local name=$1 bin=$2; shift 2
    single "${name}_1gpu" "$bin" "$@" || true
    dp 2 "${name}_cp2" "$bin" "$@" --cp 2 || true
    local t1 t2; t1=$(toks "${name}_1gpu"); t2=$(toks "${name}_cp2")
    if [ -z "$t1" ] || [ -z "$t2" ]; then failc "$name" "no summary line (one GPU: '${t1:-?}', --cp 2: '${t2:-?}'; see $OUT/${name}_*.log)"; return; fi
    local r; r=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b / a }')
    echo "$name: 1 GPU $t1 tok/s, --cp 2 $t2 tok/s = ${r}x" >> "$OUT/scaling.txt"
    if awk -v r="$r" 'BEGIN { exit !(r >= 1.8) }'; then pass "$name" "--cp 2 $t2 tok/s = ${r}x one GPU's $t1"
    else failc "$name" "--cp 2 $t2 tok/s = ${r}x one GPU's $t1 (bar 1.8x)"; fi
}
CPG=(--preset gpt-1b --random-data 1 --batch-size 1 --max-seq-len 32768 --seq-len 32768 --steps 8 --warmup 2 --val-every 0 --sample-every -1
     --recompute full --log-dir "")
CPD=(--preset 1B --n-layer 28 --batch-size 1 --frames 21 --height 96 --width 100 --text-len 300 --random-data 1 --steps 6 --recompute full --log-dir "")
cp_speed cp_speed_gpt ./train_gpt "${CPG[@]}"
cp_speed cp_speed_dit ./train_dit "${CPD[@]}"

# the memory plan against each rank's peak: gpt-1b T 32768, --cp 2 with ZeRO 0/1/2, and DP 2 (--cp 1)
plan_vs_peak() {   # NAME ARGS...: run on 2 GPUs with nvidia-smi sampling; each rank's peak against --plan's total
    local name=$1; shift
    local planned; planned=$(./train_gpt "$@" --plan --plan-gpus 2 2>&1 | awk '$1 == "total" { print $2 }')
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/$name.smi" 2>/dev/null &
    local smi=$!
    dp 2 "$name" ./train_gpt "$@" || true
    kill $smi 2>/dev/null; wait $smi 2>/dev/null
    local peaks; peaks=$(awk -F', ' '$1 < 2 { if ($2 > m[$1]) m[$1] = $2 } END { printf "%.3f %.3f", m[0] / 1024, m[1] / 1024 }' "$OUT/$name.smi")
    echo "$name: plan ${planned:-?} GiB per rank, peaks $peaks GiB" >> "$OUT/memory_cp.txt"
    awk -v p="${planned:-0}" -v a="${peaks% *}" -v b="${peaks#* }" 'BEGIN { d1 = (a - p) / p; d2 = (b - p) / p; if (d1 < 0) d1 = -d1; if (d2 < 0) d2 = -d2;
                                                                          exit !(p > 0 && d1 <= 0.05 && d2 <= 0.05) }'
}
: > "$OUT/memory_cp.txt"
mem_ok=1
for z in 0 1 2; do plan_vs_peak cp_mem_cp2_z$z "${CPG[@]}" --cp 2 --zero $z || mem_ok=0; done
plan_vs_peak cp_mem_dp2_z1 "${CPG[@]}" --batch-size 1 --zero 1 || mem_ok=0
if [ $mem_ok = 1 ]; then pass cp_plan_memory "every rank's peak within 5% of the plan ($(tr '\n' ';' < "$OUT/memory_cp.txt"))"
else failc cp_plan_memory "a rank's peak is more than 5% off the plan ($(tr '\n' ';' < "$OUT/memory_cp.txt"))"; fi

# length: the longest 1B DiT sample (48 x 80 latents, frames growing) that trains 2 steps, --cp 1 and --cp 2
longest() {   # CP: the most frames of the list that train
    local cp=$1 f best=0
    for f in 64 96 128 160 192 256 320 384; do
        local args=(--preset 1B --n-layer 28 --batch-size 1 --frames $f --height 48 --width 80 --text-len 300 --random-data 1 --steps 2
                    --recompute full --log-dir "")
        if [ "$cp" = 1 ]; then single "cp_len1_f$f" ./train_dit "${args[@]}" || break
        else dp 2 "cp_len2_f$f" ./train_dit "${args[@]}" --cp 2 || break; fi
        best=$f
    done
    echo $best
}
l1=$(longest 1); l2=$(longest 2)
echo "cp_length_dit: longest 1B DiT sample of 48x80 latents: --cp 1 $l1 frames ($((l1 * 960 + 2)) tokens), --cp 2 $l2 frames ($((l2 * 960 + 2)) tokens)" >> "$OUT/scaling.txt"
if [ "$l2" -gt "$l1" ]; then pass cp_length_dit "--cp 2 trains $l2 frames ($((l2 * 960 + 2)) tokens), --cp 1 $l1 ($((l1 * 960 + 2))): $(awk -v a="$l1" -v b="$l2" 'BEGIN { printf "%.2f", a > 0 ? b / a : 0 }')x"
else failc cp_length_dit "--cp 2 trains $l2 frames, --cp 1 $l1: not longer"; fi
cat "$OUT/scaling.txt" "$OUT/memory_cp.txt"
finish
