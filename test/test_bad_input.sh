#!/usr/bin/env bash
# Bad input to train_gpt (and train_dit's checkpoint flags): every case must
# exit non-zero with ONE line on stderr that names the flag or file, and must
# not crash (no signal, no core). All cases fail before the GPU is touched, so
# this runs on CPU-only machines.
set -u
cd "$(dirname "$0")/.."
T=test/tmp/bad_input
rm -rf "$T"; mkdir -p "$T"
pass=0; fail=0

# a small valid dataset to corrupt: vocab 300 tokenizer and shards
head -c 60000 data/tinyshakespeare.txt > "$T/text.txt"
./build_data --input "$T/text.txt" --out-dir "$T/ok" --vocab-size 300 --val-fraction 0.1 > /dev/null 2>&1 \
    || { echo "FAIL bad_input/setup: build_data failed"; exit 1; }
good="$T/ok/train_000.bin"
cp "$good" "$T/magic.bin";     printf '\x01\x02\x03\x04' | dd of="$T/magic.bin" bs=1 seek=0 conv=notrunc status=none
cp "$good" "$T/version.bin";   printf '\x09\x00\x00\x00' | dd of="$T/version.bin" bs=1 seek=4 conv=notrunc status=none
cp "$good" "$T/trunc.bin";     truncate -s $(( $(stat -c %s "$good") - 7 )) "$T/trunc.bin"
head -c 100 "$good" > "$T/header_only.bin"
printf 'not a tokenizer at all' > "$T/tok_bad.bin"
head -c 20 "$T/ok/tokenizer.bin" > "$T/tok_trunc.bin"

common="--preset tiny --tokenizer '' --steps 1 --batch-size 2 --seq-len 32 --val-every 0 --sample-every -1 --log-dir ''"
# expect NAME "PATTERN in the message" ARGS...
expect() {
    local name=$1 pattern=$2; shift 2
    local err="$T/$name.err"
    eval "${BIN:-./train_gpt}" "$@" > "$T/$name.out" 2> "$err"
    local rc=$?
    local lines; lines=$(grep -c . "$err")
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" -eq 1 ] && grep -q -- "$pattern" "$err"; then
        echo "PASS bad_input/$name: exit $rc: $(cat "$err")"; pass=$((pass + 1))
    else
        echo "FAIL bad_input/$name: exit $rc, $lines stderr lines, expected '$pattern': $(head -3 "$err")"; fail=$((fail + 1))
    fi
}

expect unknown_flag      "--bogus"              --bogus 1
MEGA_FLASH_SM90=3 expect bad_sm90_env "MEGA_FLASH_SM90" $common
MEGA_FLASH_SM90=1x BIN=./train_dit expect bad_sm90_env_dit "MEGA_FLASH_SM90" --steps 1
expect bad_attn_backward "--attn-backward"     $common --attn-backward fastest
BIN=./train_dit expect bad_attn_backward_dit "--attn-backward" --steps 1 --attn-backward atomic
expect non_numeric       "--batch-size"         $common --batch-size abc
expect trailing_garbage  "--lr"                 $common --lr 1e-3x
expect missing_value     "--steps"              $common --steps
expect bad_bool          "--qk-norm"            $common --qk-norm 2
expect bad_ckpt_async    "--ckpt-async"         $common --ckpt-async 2
expect unknown_preset    "--preset"             --preset gpt-9000
expect bad_dropout       "--dropout"            $common --dropout 1
expect bad_schedule      "--schedule"           $common --schedule exponential
expect kv_heads          "--n-kv-head"          $common --n-kv-head 3
expect seq_too_long      "--seq-len"            $common --seq-len 100000
expect accum_mismatch    "--total-batch-tokens" $common --total-batch-tokens 100
expect negative_batch    "--batch-size"         $common --batch-size -4
expect missing_data      "$T/none_"             $common --train-data "$T/none_*.bin"
expect missing_megatron  "$T/none_mg.idx"       $common --train-data "megatron:$T/none_mg"
# SFT shards (scripts/prepare_sft.py; test/test_sft_data writes one of vocabulary 1000): --pack 0 or 1,
# a model vocabulary that holds the shard's, chat prompts that fit the model
if ./test/test_sft_data --write "$T/sft/train_000.bin" 2> "$T/sft_write.err"; then
    expect sft_pack_2      "flag --pack: expected 0 (one conversation a row) or 1" $common --train-data "$T/sft/train_*.bin" --vocab-size 1000 --pack 2
    expect sft_small_vocab "train_000.bin"             $common --train-data "$T/sft/train_*.bin" --vocab-size 500
else
    echo "FAIL bad_input/sft_shards: test/test_sft_data --write failed: $(head -1 "$T/sft_write.err")"; fail=$((fail + 1))
fi
printf 'mega.c chat prompts 1 eot=2 n=1\n5 6 | 7 2\n' > "$T/prompts_ok.txt"
printf 'mega.c chat prompts 1 eot=2 n=1\n5 600 | 7 2\n' > "$T/prompts_vocab.txt"
expect chat_prompts_missing "$T/none_prompts.txt: cannot open" $common --chat-prompts "$T/none_prompts.txt"
expect chat_prompts_vocab   "token id 600 is outside the vocabulary" $common --vocab-size 512 --chat-prompts "$T/prompts_vocab.txt"
expect megatron_vocab    "dtype8_uint16"        $common --train-data "megatron:test/data/megatron/dtype8_uint16" --vocab-size 200
expect wrong_magic       "magic.bin"            $common --train-data "$T/magic.bin" --vocab-size 300
expect wrong_version     "version.bin"          $common --train-data "$T/version.bin" --vocab-size 300
expect truncated_body    "trunc.bin"            $common --train-data "$T/trunc.bin" --vocab-size 300
expect header_only       "header_only.bin"      $common --train-data "$T/header_only.bin" --vocab-size 300
expect token_out_of_range "train_000.bin"       $common --train-data "$good" --vocab-size 200
expect bad_tokenizer     "tok_bad.bin"          $common --train-data "$good" --tokenizer "$T/tok_bad.bin"
expect trunc_tokenizer   "tok_trunc.bin"        $common --train-data "$good" --tokenizer "$T/tok_trunc.bin"
expect missing_tokenizer "nope.bin"             $common --train-data "$good" --tokenizer "$T/nope.bin"
expect small_vocab_flag  "--vocab-size"         $common --train-data "$good" --tokenizer "$T/ok/tokenizer.bin" --vocab-size 100

# --init-hf / --export-hf (llmc/formats/hf.h): a bad model directory or flags that contradict its config.json
hf=test/data/hf/qwen3_tiny
mkdir -p "$T/hf_nofield" "$T/hf_lies"
grep -v '"hidden_size"' "$hf/config.json" > "$T/hf_nofield/config.json"
cp "$hf/config.json" "$T/hf_lies/"; head -c 300000 "$hf/model.safetensors" > "$T/hf_lies/model.safetensors"
hf_common="--steps 0 --log-dir ''"
expect hf_missing_dir    "$T/no_model/config.json: cannot open" $hf_common --init-hf "$T/no_model"
expect hf_missing_field  "hf_nofield/config.json: hidden_size: missing field" $hf_common --init-hf "$T/hf_nofield"
expect hf_header_lies    "hf_lies/model.safetensors: " $hf_common --init-hf "$T/hf_lies"
expect hf_shape_flag     "flag --n-layer: 3 contradicts" $hf_common --init-hf "$hf" --n-layer 3
expect hf_with_preset    "flag --preset: cannot be combined with --init-hf" $hf_common --preset tiny --init-hf "$hf"
expect hf_needs_data     "flag --train-data: --init-hf" --init-hf "$hf" --steps 5 --log-dir "''"
expect hf_dtype          "flag --hf-dtype" $hf_common --init-hf "$hf" --hf-dtype fp16
expect hf_export_onto_source "flag --export-hf" $hf_common --init-hf "$hf" --export-hf "$hf"
expect hf_eval_vocab     "llama_tiny.mgt: token id" $hf_common --init-hf "$hf" --eval-tokens test/data/hf/llama_tiny.mgt
expect hf_mistral_window "mistral_tiny/config.json: sliding_window: 32 is shorter than the sequence length 64" $hf_common \
       --init-hf test/data/hf/mistral_tiny --seq-len 64

# several GPUs (llmc/dist/distributed.cuh): bad flags and launch variables fail before any GPU or network use
expect dist_zero         "flag --zero: expected 0, 1 or 2"  $common --zero 3
expect dist_timeout      "flag --dist-timeout"  $common --dist-timeout 0
expect dist_bucket       "flag --bucket-mb"     $common --bucket-mb 0
# context parallel (--cp, llmc/dist/context_parallel.h)
expect cp_zero           "flag --cp: must be in \[1, 1024\]" $common --cp 0
expect cp_seq_len        "flag --cp 3: --seq-len 32 must be a multiple of 2 x 3 = 6" $common --cp 3
expect cp_pack           "flag --cp 2: packed SFT rows (--pack 1)" $common --cp 2 --pack 1
expect cp_plan_world     "flag --cp 4: the 6 ranks of this launch are not a multiple of it" $common --cp 4 --plan --plan-gpus 6
expect cp_eval_len       "gpt_gqa.mgt: tokens are \[2, 32\]: with --cp 3 the length must be a multiple of 6" $common --seq-len 48 --cp 3 --random-data 1 \
       --eval-tokens test/data/gpt_gqa.mgt
WORLD_SIZE=3 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 expect cp_world \
    "flag --cp 2: the 3 ranks of this launch are not a multiple of it\\|this build has no NCCL" $common --cp 2
WORLD_SIZE=2 RANK=1 expect dist_no_master "environment variable MASTER_ADDR: not set" $common --train-data "$good" --vocab-size 300
WORLD_SIZE=2 RANK=2 expect dist_bad_rank "environment variable RANK: must be in .0, WORLD_SIZE=2), got 2" $common --train-data "$good" --vocab-size 300
WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 expect dist_accum "total-batch-tokens: 64 is not a multiple of batch-size\*seq-len\*(processes/cp)\\|this build has no NCCL" \
    $common --train-data "$good" --vocab-size 300 --total-batch-tokens 64

# train_dit: its checkpoint, resume and fault flags (llmc/train/run_control.h), on synthetic batches (no data read)
dit() { local BIN=./train_dit; expect "$@"; }
dit_common="--random-data 1 --preset tiny --steps 1 --batch-size 1 --frames 2 --height 4 --width 4 --text-len 4 --log-dir ''"
if [ -x ./train_dit ]; then
    mkdir -p "$T/dit_garbage" "$T/dit_cut"
    printf 'garbage\n' > "$T/dit_garbage/latest"
    head -c 100 "$good" > "$T/dit_cut/model.bin"; cp "$good" "$T/dit_cut/state.bin"
    dit dit_unknown_flag     "--bogus"              $dit_common --bogus 1
    dit dit_ckpt_every       "--ckpt-every"         $dit_common --ckpt-every -1
    dit dit_max_bad_steps    "--max-bad-steps"      $dit_common --max-bad-steps -1
    dit dit_exit_at_step     "--exit-at-step"       $dit_common --exit-at-step -3
    dit dit_resume_no_dir    "flag --resume: needs --ckpt-dir" $dit_common --resume 1
    dit dit_resume_twice     "flag --resume-from: cannot be combined" $dit_common --ckpt-dir "$T/dit_ck" --resume 1 --resume-from "$T/dit_ck"
    dit dit_init_and_resume  "flag --init-from: cannot be combined" $dit_common --resume-from "$T/dit_ck" --init-from "$T/dit_ck"
    dit dit_resume_missing   "flag --resume-from: $T/dit_nope does not exist" $dit_common --resume-from "$T/dit_nope"
    dit dit_latest_garbage   "$T/dit_garbage/latest: expected a checkpoint name" $dit_common --ckpt-dir "$T/dit_garbage" --resume 1
    dit dit_model_truncated  "$T/dit_cut/model.bin: file is 100 bytes" $dit_common --resume-from "$T/dit_cut"
    dit dit_init_not_ckpt    "$T/text.txt: magic: expected 20251210" $dit_common --init-from "$T/text.txt"
    dit dit_zero             "flag --zero: expected 0, 1 or 2" $dit_common --zero 5
    dit dit_cp_short_sample  "flag --cp 16: sample 0 has 10 tokens, fewer than the 16 ranks" $dit_common --cp 16 --sample-every 0 --eval-samples 0
    dit dit_ema_decay        "flag --ema-decay: must be in" $dit_common --ema-decay 1.5
    WORLD_SIZE=2 RANK=0 dit dit_no_master "environment variable MASTER_ADDR: not set" $dit_common
else
    echo "SKIP bad_input/train_dit: ./train_dit is missing (make train_dit)"
fi

# build_data --hf-tokenizer (a Hugging Face tokenizer.json encodes the text)
bd() { local BIN=./build_data; expect "$@"; }
sed 's/<|endoftext|>/<|eos|>/g' test/data/hf_encode/gpt2.json > "$T/tok_no_eot.json"
printf 'ok \377 bad byte\nmore text here for the split\n' > "$T/bad_utf8.txt"
bd build_data_eot_alone   "flag --eot: only with --hf-tokenizer" --input "$T/text.txt" --out-dir "$T/bd" --eot x
bd build_data_no_tokenizer "$T/none.json"        --input "$T/text.txt" --out-dir "$T/bd" --hf-tokenizer "$T/none.json"
bd build_data_unknown_eot "no token '<|nope|>'"  --input "$T/text.txt" --out-dir "$T/bd" --hf-tokenizer test/data/hf_encode/gpt2.json --eot "'<|nope|>'"
bd build_data_no_eot      "name one with --eot"  --input "$T/text.txt" --out-dir "$T/bd" --hf-tokenizer "$T/tok_no_eot.json"
bd build_data_bad_utf8    "not valid UTF-8"      --input "$T/bad_utf8.txt" --out-dir "$T/bd" --hf-tokenizer test/data/hf_encode/gpt2.json --val-fraction 0.5

# the memory plan (llmc/train/memory_plan.h): its flags, and a run or --plan that does not fit
expect plan_gpus         "flag --plan-gpus"     $common --plan --plan-gpus 0
expect plan_gpu_mem      "flag --plan-gpu-mem"  $common --plan --plan-gpu-mem 0
expect plan_gpu_mem_huge "flag --plan-gpu-mem"  $common --plan-gpu-mem 1e9
expect plan_no_fit       "does not fit in 0.50 GiB" $common --plan --plan-gpu-mem 0.5
expect run_no_fit        "the largest consumer is" $common --plan-gpu-mem 0.5
if [ -x ./train_dit ]; then
    dit dit_plan_gpus    "flag --plan-gpus"     $dit_common --plan --plan-gpus -5
    dit dit_plan_no_fit  "the largest consumer is" $dit_common --plan --plan-gpu-mem 0.5
fi
# activation recompute (llmc/train/recompute.h): the mode, the block count against the model's
expect recompute_mode    "flag --recompute: expected none, selective or full" $common --recompute some
expect recompute_layers  "(the model.s blocks) or -1 for all, got 3" $common --recompute full --recompute-layers 3
expect recompute_none_k  "flag --recompute-layers: 1 given with --recompute none" $common --recompute-layers 1
if [ -x ./train_dit ]; then
    dit dit_recompute_layers "flag --recompute-layers" $dit_common --recompute selective --recompute-layers -4
fi
# --profile-step: a step of this run (1..--steps) or 0 (off)
expect profile_step_negative "flag --profile-step" $common --profile-step -1
expect profile_step_past_end "flag --profile-step" $common --profile-step 2
if [ -x ./train_dit ]; then
    dit dit_profile_step_past_end "flag --profile-step" $dit_common --profile-step 5
fi

# progress lines reach a redirected stdout as they are printed (setvbuf in main; the trainers do the same,
# and they cannot run here): dev/cpu/gpt's first lines are in the file while it still runs
if [ -x ./dev/cpu/gpt ]; then
    ./dev/cpu/gpt --data-dir "$T/ok" --steps 100000 --val-every 0 > "$T/linebuf.out" 2>&1 &
    lb_pid=$!
    for _ in $(seq 300); do grep -q . "$T/linebuf.out" && break; kill -0 $lb_pid 2> /dev/null || break; sleep 0.1; done
    if kill -0 $lb_pid 2> /dev/null && grep -q . "$T/linebuf.out"; then echo "PASS bad_input/stdout_line_buffered: $(head -1 "$T/linebuf.out")"; pass=$((pass + 1))
    else echo "FAIL bad_input/stdout_line_buffered: nothing in the redirected stdout while running: $(head -2 "$T/linebuf.out")"; fail=$((fail + 1)); fi
    kill $lb_pid 2> /dev/null; wait $lb_pid 2> /dev/null
fi

# flags whose value makes no sense (issue 19 item 5): refused before the run starts
expect neg_total_batch   "flag --total-batch-tokens: must be >= 0" $common --total-batch-tokens -64
expect neg_seq_len       "flag --seq-len: must be >= 0" $common --seq-len -5
expect lr_inf            "flag --lr: must be a finite number > 0" $common --lr inf
expect lr_nan            "flag --lr"            $common --lr nan
expect lr_zero           "flag --lr: must be a finite number > 0" $common --lr 0
expect lr_negative       "flag --lr: must be a finite number > 0" $common --lr -1e-3
expect neg_val_every     "flag --val-every: must be >= 0" $common --val-every -5
expect neg_max_minutes   "flag --max-minutes: must be a finite number >= 0" $common --max-minutes -1
expect inf_max_minutes   "flag --max-minutes: must be a finite number >= 0" $common --max-minutes inf
expect neg_sample_tokens "flag --sample-tokens: must be > 0" $common --sample-tokens -1
expect bad_sample_every  "flag --sample-every: must be >= -1" $common --sample-every -2
expect inf_temperature   "flag --temperature"   $common --temperature inf
expect inf_weight_decay  "flag --weight-decay"  $common --weight-decay inf
expect inf_rope_theta    "flag --rope-theta"    $common --rope-theta inf
if [ -x ./train_dit ]; then
    dit dit_lr_inf       "flag --lr: must be a finite number > 0" $dit_common --lr inf
    dit dit_lr_zero      "flag --lr: must be a finite number > 0" $dit_common --lr 0
    dit dit_neg_steps    "flag --steps: must be >= 0" $dit_common --steps -5
    dit dit_max_minutes  "flag --max-minutes: must be a finite number >= 0" $dit_common --max-minutes -1
    dit dit_fps_inf      "flag --fps"           $dit_common --fps inf
    dit dit_t_shift_inf  "flag --t-shift"       $dit_common --t-shift inf
    dit dit_text_len     "flag --text-len"      $dit_common --text-len -1
    # the objective (llmc/model/dit_objective.h) and EDM's settings
    dit dit_objective    "flag --objective: expected rf or edm, got 'ddpm'" $dit_common --objective ddpm
    dit dit_edm_sigma_data "flag --edm-sigma-data: must be > 0" $dit_common --objective edm --edm-sigma-data 0
    dit dit_edm_p_std    "flag --edm-p-std: must be >= 0" $dit_common --objective edm --edm-p-std -1
    dit dit_edm_sigma_min "flag --edm-sigma-min: must be > 0" $dit_common --objective edm --edm-sigma-min 0
    dit dit_edm_sigma_max "flag --edm-sigma-max: must be finite and > --edm-sigma-min" $dit_common --objective edm --edm-sigma-max 0.001
    dit dit_edm_rho      "flag --edm-rho: must be > 0" $dit_common --objective edm --edm-rho 0
    dit dit_edm_flag_rf  "flag --edm-\*: EDM's settings are used with --objective edm only" $dit_common --edm-sigma-data 1
    dit dit_edm_flag_rf_ms "flag --edm-\*: EDM's settings are used with --objective edm only" --steps 1 --log-dir "''" --edm-sigma-data 0.5
    dit dit_t_shift_edm  "flag --t-shift: rectified flow's timestep shift, not used with --objective edm" $dit_common --objective edm --t-shift 2
    # a checkpoint trained with the other objective: one line naming it and both objectives, before the GPU
    if [ -x ./test/test_checkpoint ]; then
        ./test/test_checkpoint --save-dit "$T/dit_edm_ck" edm > /dev/null 2>&1 && ./test/test_checkpoint --save-dit "$T/dit_rf_ck" rf > /dev/null 2>&1 \
            || { echo "FAIL bad_input/setup: test_checkpoint --save-dit failed"; fail=$((fail + 1)); }
        dit dit_resume_edm_as_rf "$T/dit_edm_ck/step_00000001/model.bin: the weights were trained with --objective edm, this run has --objective rf" \
            $dit_common --resume-from "$T/dit_edm_ck"
        dit dit_init_rf_as_edm "$T/dit_rf_ck/step_00000001/model.bin: the weights were trained with --objective rf, this run has --objective edm" \
            $dit_common --objective edm --init-from "$T/dit_rf_ck"
        # the same objective goes on to the ordinary config check (the test checkpoint is another model)
        dit dit_resume_edm_config "config d_model is 24, the model has" $dit_common --objective edm --resume-from "$T/dit_edm_ck"
    else
        echo "SKIP bad_input/dit_resume_other_objective: ./test/test_checkpoint is missing (make test/test_checkpoint)"
    fi
    dit dit_ms_size      "flag --ms-frames/--ms-size" --steps 1 --log-dir "''" --ms-size 0
fi

# train_dit on latent shards whose captions are longer than --max-text-len: the error names that flag
if [ -x ./train_dit ] && [ -x ./moving_shapes ]; then
    ./moving_shapes --out-dir "$T/lat" --train-samples 8 --val-samples 2 --frames 2 --size 16 --caption-channels 64 > /dev/null 2>&1 \
        || { echo "FAIL bad_input/setup: moving_shapes failed"; fail=$((fail + 1)); }
    dit dit_max_text_len "max-text-len" --preset tiny --train-data "$T/lat/train_*.lat" --in-channels 3 --out-channels 6 \
        --caption-channels 64 --max-text-len 2 --steps 1 --batch-size 1 --log-dir "''"
fi

# --ckpt-dir and --log-dir that cannot hold the run's files: refused at start-up, not at the first save
printf 'x' > "$T/a_file"
expect ckpt_dir_file     "flag --ckpt-dir: $T/a_file exists and is not a directory" $common --ckpt-dir "$T/a_file"
expect ckpt_dir_under_file "flag --ckpt-dir: $T/a_file/ck lies under $T/a_file" $common --ckpt-dir "$T/a_file/ck"
expect ckpt_dir_proc     "flag --ckpt-dir: cannot create directory /proc/x" $common --ckpt-dir /proc/x
expect log_dir_file      "flag --log-dir: $T/a_file exists and is not a directory" $common --log-dir "$T/a_file"
expect log_dir_proc      "flag --log-dir: cannot create directory /proc/x" $common --log-dir /proc/x
if [ -x ./train_dit ]; then
    dit dit_resume_file  "flag --ckpt-dir: $T/a_file exists and is not a directory" $dit_common --ckpt-dir "$T/a_file" --resume 1
    dit dit_log_dir_under_file "flag --log-dir: $T/a_file/log lies under $T/a_file" $dit_common --log-dir "$T/a_file/log"
fi

# dev/cpu/gpt --data-dir on a user's folder without a tokenizer: refused, nothing written into it
if [ -x ./dev/cpu/gpt ]; then
    mkdir -p "$T/user_dir"; printf 'mine\n' > "$T/user_dir/notes.txt"
    BIN=./dev/cpu/gpt expect cpu_gpt_data_dir "flag --data-dir: $T/user_dir exists but has no tokenizer.bin" --data-dir "$T/user_dir"
    if [ "$(ls -A "$T/user_dir")" = "notes.txt" ]; then echo "PASS bad_input/cpu_gpt_data_dir_untouched"; pass=$((pass + 1))
    else echo "FAIL bad_input/cpu_gpt_data_dir_untouched: $(ls -A "$T/user_dir" | tr '\n' ' ')"; fail=$((fail + 1)); fi
fi

# no GPU or driver (only where there is none): one line that says so, not CUDA's "driver version is insufficient"
if [ ! -e /dev/nvidia0 ] && [ ! -e /dev/nvidiactl ]; then
    expect no_gpu        "no CUDA GPU found (cudaGetDeviceCount: " $common --train-data "$good" --vocab-size 300
    if [ -x ./train_dit ]; then dit dit_no_gpu "no CUDA GPU found (cudaGetDeviceCount: " $dit_common; fi
else
    echo "SKIP bad_input/no_gpu: this machine has a GPU"
fi

# --init-hf DIR --steps 0 --export-hf OUT is a conversion on the host (no GPU needed, a GPU is not
# touched): it exits 0, and exporting its export again gives the same files byte for byte
conv() { ./train_gpt --init-hf "$1" --steps 0 --log-dir "''" --export-hf "$2" --hf-dtype bf16 > "$2.out" 2> "$2.err"; }
rm -rf "$T/conv1" "$T/conv2"
if conv test/data/hf/llama_tiny "$T/conv1" && conv "$T/conv1" "$T/conv2" &&
   grep -q "converting on the host" "$T/conv1.out" && ls "$T/conv1"/*.safetensors > /dev/null 2>&1 &&
   ( for f in "$T/conv1"/*.safetensors; do cmp -s "$f" "$T/conv2/$(basename "$f")" || exit 1; done ); then
    echo "PASS bad_input/hf_convert_host: --init-hf llama_tiny --steps 0 --export-hf: $(tail -1 "$T/conv1.out")"; pass=$((pass + 1))
else
    echo "FAIL bad_input/hf_convert_host: $(tail -2 "$T/conv1.err" "$T/conv2.err" 2>/dev/null | tr '\n' ' ')"; fail=$((fail + 1))
fi

echo "bad_input: $pass passed, $fail failed"
[ $fail -eq 0 ]
