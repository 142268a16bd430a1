#!/usr/bin/env bash
# What `make test` runs: the CPU tests always; the GPU tests and every dev/cuda
# kernel check where a GPU is present (otherwise each is listed as skipped).
# Every test program prints PASS/FAIL/SKIP lines; this script counts them and
# ends with the summary line. TEST_PART=gpu runs the GPU half alone (on a GPU machine
# whose command limit the whole suite does not fit), TEST_PART=cpu the CPU half alone.
set -u
TEST_PART=${TEST_PART:-all}
case $TEST_PART in all|cpu|gpu) ;; *) echo "TEST_PART takes all, cpu or gpu, got '$TEST_PART'"; exit 2;; esac
cd "$(dirname "$0")/.."
mkdir -p test/tmp
LOG=test/tmp/test_output.log
: > "$LOG"
failed_programs=0

run() {  # run NAME CMD...: run one test program, keep its lines
    local name=$1; shift
    echo "== $name: $*"
    local out rc
    out=$("$@" 2>&1); rc=$?
    echo "$out" | grep -E '^(PASS|FAIL|SKIP|info)' || true
    echo "$out" >> "$LOG"
    if [ $rc -ne 0 ]; then
        failed_programs=$((failed_programs + 1))
        if ! echo "$out" | grep -q '^FAIL'; then
            echo "FAIL $name: exited with code $rc"
            echo "FAIL $name: exited with code $rc" >> "$LOG"
            echo "$out" | tail -5
        fi
    fi
}

# The dev/cuda programs, one per kernel file: their checks against the CPU
# references, without their timings (DEV_CUDA_CHECK_ONLY=1; attention: the small
# shapes, ATTN_QUICK=1). Named with the llmc files their header comment names.
DEV_CUDA_CHECKS=$(ls dev/cuda/*.cu | sed 's/\.cu$//')
describe() {  # describe dev/cuda/X
    local files
    files=$(head -12 "$1.cu" | grep -o 'llmc/[A-Za-z0-9_/]*\.cuh*' | awk '!seen[$0]++' | paste -sd, - | sed 's/,/, /g')
    echo "${files:-its kernels} against the CPU reference"
}

has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then has_gpu=1; fi

# ---- CPU half: references, formats, parsers, bad input
if [ "$TEST_PART" != gpu ]; then
run "gpt CPU reference vs PyTorch" ./test/test_gpt_cpu
run "dit CPU reference vs PyTorch" ./test/test_dit_cpu
run "tokenizer" ./test/test_tokenizer
run "dataloader" ./test/test_dataloader
run "latent data" ./test/test_latent_data
run "safetensors + json" ./test/test_safetensors
run "safetensors vs the reference safetensors library (differential)" bash test/test_safetensors_diff.sh
run "megatron data" ./test/test_megatron_data
run "token data (llm.c shards and Megatron through one interface)" ./test/test_token_data
run "Hugging Face import/export and tokenizer.json" ./test/test_hf
run "tokenizer.json encoding vs the tokenizers library" ./test/test_hf_tokenizer
run "tokenize_hf.py" bash test/test_tokenize_hf.sh
run "SFT shards and their loader (conversations, loss mask, packing)" ./test/test_sft_data
run "prepare_sft.py (chat template, assistant-only mask)" bash test/test_prepare_sft.sh
run "moving shapes" ./test/test_moving_shapes
run "gif and png writers" ./test/test_gif
run "RNG jump-ahead and threaded normal fill (the parameter init)" ./test/test_rand
run "prepare_mugv.py" bash test/test_prepare_mugv.sh
run "prepare_dfm.py" bash test/test_prepare_dfm.sh
run "convert_mugv.py (MUG-V DiT weights <-> model.bin)" bash test/test_convert_mugv.sh
run "checkpoint" ./test/test_checkpoint
run "resume from the newest checkpoint that verifies" ./test/test_ckpt_fallback
run "checkpoints written in the background" ./test/test_ckpt_background
run "rendezvous (launch env, TCP and file broadcast)" ./test/test_rendezvous
run "ZeRO partition and buckets" ./test/test_zero
run "memory plan (--plan) against byte counts by hand" ./test/test_memory_plan
run "context parallelism: the split, the ring's schedule, --cp checks, ring attention vs dense (CPU reference)" ./test/test_context_parallel
run "--profile-step table (llmc/train/profile.h) from synthetic records" ./test/test_profile
run "step-log comparison of the multi-GPU check (scripts/compare_steps.sh)" bash test/test_compare_steps.sh
run "the speed comparison with the PyTorch peers (scripts/bench_lib.sh: medians, the faster peer)" bash test/test_bench_lib.sh
run "bad input (train_gpt, train_dit)" bash test/test_bad_input.sh
run "defaults a preset decides (train_gpt: dropout, --preset=NAME)" bash test/test_flag_defaults.sh
run "fuzzers" bash fuzz/run_fuzzers.sh ${FUZZ_SECONDS:-30}
fi

# ---- GPU half
if [ "$TEST_PART" = cpu ]; then
    echo "(TEST_PART=cpu: the GPU half not run)"
elif [ $has_gpu -eq 1 ]; then
    # GPU_TESTS (optional): only these of the GPU half, by name (dev/cuda/X, test_gpt, test_gpt_fp32,
    # test_dit, test_dit_fp32, determinism, resume, resume_dit, profile_step, ckpt_async)
    want() { [ -z "${GPU_TESTS:-}" ] || [[ " $(echo $GPU_TESTS) " == *" $1 "* ]]; }
    make -s -k -j4 test/test_gpt test/test_gpt_fp32 test/test_dit test/test_dit_fp32 train_dit $DEV_CUDA_CHECKS || { echo "FAIL build of the GPU tests"; failed_programs=$((failed_programs + 1)); }
    for c in $DEV_CUDA_CHECKS; do
        want "$c" && run "$c ($(describe "$c"))" env DEV_CUDA_CHECK_ONLY=1 ATTN_QUICK=1 "./$c"
    done
    want test_gpt && run "gpt GPU bf16 vs PyTorch" ./test/test_gpt
    want test_gpt_fp32 && run "gpt GPU fp32 vs PyTorch" ./test/test_gpt_fp32
    want test_dit && run "dit GPU bf16 vs PyTorch" ./test/test_dit
    want test_dit_fp32 && run "dit GPU fp32 vs PyTorch" ./test/test_dit_fp32
    want determinism && run "train_gpt determinism" bash test/test_determinism.sh
    want resume && run "train_gpt resume" bash test/test_resume.sh
    want resume_dit && run "train_dit resume" bash test/test_resume_dit.sh
    want profile_step && run "--profile-step in both trainers" bash test/test_profile_step.sh
    want ckpt_async && run "train_gpt background checkpoints and resume fallback" bash test/test_ckpt_async.sh
else
    for c in $DEV_CUDA_CHECKS; do
        echo "SKIP $c ($(describe "$c")): no GPU on this machine"
        echo "SKIP $c" >> "$LOG"
    done
    for t in "gpt_gpu_bf16 (test/test_gpt: GPU bf16 vs PyTorch reference)" \
             "gpt_gpu_fp32 (test/test_gpt_fp32: GPU fp32 vs PyTorch reference)" \
             "dit_gpu_bf16 (test/test_dit: GPU bf16 vs PyTorch reference)" \
             "dit_gpu_fp32 (test/test_dit_fp32: GPU fp32 vs PyTorch reference)" \
             "train_gpt determinism (test/test_determinism.sh: two same-seed runs bit-identical)" \
             "train_gpt resume (test/test_resume.sh: resumed, SIGTERM-stopped and kill -9'd runs continue bit-identically)" \
             "train_dit resume (test/test_resume_dit.sh: resumed, SIGTERM-stopped and kill -9'd runs continue bit-identically)" \
             "profile_step (test/test_profile_step.sh: --profile-step 3 of both trainers: the table, its rows, shares + idle = 100%)" \
             "train_gpt background checkpoints (test/test_ckpt_async.sh: kill -9 around background saves, a corrupt newest checkpoint, a failed write)"; do
        echo "SKIP $t: no GPU on this machine"
        echo "SKIP $t" >> "$LOG"
    done
fi

p=$(grep -c '^PASS' "$LOG"); f=$(grep -c '^FAIL' "$LOG"); s=$(grep -c '^SKIP' "$LOG")
echo
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ] && [ $failed_programs -eq 0 ]
