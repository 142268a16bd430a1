#!/usr/bin/env bash
# GPU check of train_gpt's Hugging Face import/export (llmc/formats/hf.h) against transformers, on the
# tiny models of test/data/hf (dev/reference/hf_tiny.py):
#   gpu phase: builds train_gpt (bf16) and an fp32 train_gpt; for each tiny model runs
#     ./train_gpt --init-hf test/data/hf/M --export-hf DIR --steps 0 --eval-tokens test/data/hf/M.mgt
#     (its loss on the fixture's tokens, a sample decoded with tokenizer.json) with F32 and BF16
#     exports, an F32 export sharded at 20 KB (--export-hf-shard-mb 0.02: several shards and an
#     index; the embeddings, larger, alone in theirs), and the fp32 build with an F32 export
#     (byte-identical to the bf16 build's: both are the imported weights); then a 30-step
#     fine-tune of qwen3_tiny on build_data token ids, exported at the end
#   py phase: dev/reference/hf_check.py loads every export with transformers (no missing or
#     unexpected tensors, same config, tokenizer.json copied), compares its logits on the fixed
#     tokens with the original's (F32 export: rel err <= 1e-6; BF16: <= 5e-2), train_gpt's loss on
#     them with transformers' (bf16 build: 2e-2 relative, fp32 build: 1e-4), the sharded export's
#     index and shards (--sharded) and its weights bit-identical to the single-file F32 export's
#     (--same-as), and for the fine-tune:
#     the export's loss on the validation sequences is train_gpt's last val loss (2e-2) and at least
#     0.05 below the original's
# Usage, on a GPU machine with python3, torch and transformers: bash scripts/check_hf.sh
#   OUT=DIR      logs and exports go to DIR/check_hf (default /tmp)
#   PYTHON=...   the interpreter with transformers (default python3)
#   FP32=0       skip the fp32 build and its runs (saves two builds of train_gpt)
#   PHASES="gpu" on a GPU machine without transformers, then PHASES="py" with the same DIR/check_hf
#                on a machine with transformers (default "gpu py")
# Exits non-zero on any mismatch; the last line counts the checks.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}
D="$OUT/check_hf"
PHASES=${PHASES:-"gpu py"}
PY=${PYTHON:-python3}
FP32=${FP32:-1}
RUNS="bf16run.fp32 bf16run.bf16 bf16run.shard"
[ "$FP32" = 1 ] && RUNS="$RUNS fp32run.fp32"
MODELS="llama_tiny qwen3_tiny qwen2_tiny mistral_tiny"
mkdir -p "$D"
nfail=0
bad() { echo "FAIL check_hf/$1"; nfail=$((nfail + 1)); }

if [[ " $PHASES " == *" gpu "* ]]; then
    rm -rf "${D:?}"/*
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$D/gpu.txt" 2>&1
    echo "== build (bf16 and fp32 train_gpt, build_data)"
    if [ "$FP32" = 1 ]; then
        if ! make -B PRECISION=FP32 train_gpt > "$D/build_fp32.log" 2>&1 || ! mv train_gpt "$D/train_gpt_fp32"; then tail -20 "$D/build_fp32.log"; exit 1; fi
    fi
    if ! make train_gpt build_data > "$D/build.log" 2>&1; then tail -20 "$D/build.log"; exit 1; fi
    for m in $MODELS; do
        common=(--init-hf "test/data/hf/$m" --steps 0 --batch-size 2 --seq-len 32 --eval-tokens "test/data/hf/$m.mgt"
                --sample-every 0 --sample-tokens 24 --log-dir "")
        for run in "bf16run.fp32 ./train_gpt fp32 0" "bf16run.bf16 ./train_gpt bf16 0" "fp32run.fp32 $D/train_gpt_fp32 fp32 0" \
                   "bf16run.shard ./train_gpt fp32 0.02"; do
            read -r tag bin dt shard_mb <<< "$run"
            [[ " $RUNS " == *" $tag "* ]] || continue
            echo "== $m: $bin --hf-dtype $dt --export-hf-shard-mb $shard_mb"
            if "$bin" "${common[@]}" --export-hf "$D/$m.$tag" --hf-dtype "$dt" --export-hf-shard-mb "$shard_mb" > "$D/$m.$tag.log" 2>&1; then
                grep -E "^(eval:|exported)" "$D/$m.$tag.log"
            else
                bad "$m/$tag: train_gpt failed: $(tail -1 "$D/$m.$tag.log")"
            fi
        done
        [ "$FP32" = 1 ] || continue
        cmp -s "$D/$m.bf16run.fp32/model.safetensors" "$D/$m.fp32run.fp32/model.safetensors" \
            && echo "PASS check_hf/$m/exports_identical: the bf16 and fp32 builds export the same bytes" \
            || bad "$m/exports_identical: the bf16 and fp32 builds' F32 exports differ"
    done
    echo "== fine-tune qwen3_tiny for 30 steps, export"
    ./build_data --input data/tinyshakespeare.txt --out-dir "$D/data" --vocab-size 300 --val-fraction 0.1 > "$D/build_data.log" 2>&1 \
        || bad "finetune: build_data failed: $(tail -1 "$D/build_data.log")"
    if ./train_gpt --init-hf test/data/hf/qwen3_tiny --train-data "$D/data/train_*.bin" --val-data "$D/data/val_*.bin" --tokenizer "" \
            --steps 30 --lr 3e-3 --warmup 0 --batch-size 8 --seq-len 32 --val-every 30 --val-batches 4 --dropout 0 --sample-every 0 \
            --sample-tokens 24 --log-dir "" --export-hf "$D/qwen3_tiny.finetuned" > "$D/qwen3_tiny.finetuned.log" 2>&1; then
        grep -E "^(val loss|step +30|exported)" "$D/qwen3_tiny.finetuned.log"
    else
        bad "finetune: train_gpt failed: $(tail -1 "$D/qwen3_tiny.finetuned.log")"
    fi
fi

if [[ " $PHASES " == *" py "* ]]; then
    if ! "$PY" -c "import torch, transformers" > /dev/null 2>&1; then
        echo "FAIL check_hf: $PY has no torch and transformers (set PYTHON=..., or PHASES=gpu here and PHASES=py elsewhere)"
        exit 1
    fi
    for m in $MODELS; do
        for run in "bf16run.fp32 1e-6 2e-2" "bf16run.bf16 5e-2 2e-2" "fp32run.fp32 1e-6 1e-4" "bf16run.shard 1e-6 2e-2"; do
            read -r tag etol ltol <<< "$run"
            [[ " $RUNS " == *" $tag "* ]] || continue
            [ -d "$D/$m.$tag" ] || { bad "$m/$tag: no export in $D (run the gpu phase)"; continue; }
            sharded=()
            [ "$tag" = bf16run.shard ] && sharded=(--sharded --same-as "$D/$m.bf16run.fp32")
            "$PY" dev/reference/hf_check.py --original "test/data/hf/$m" --export "$D/$m.$tag" --fixture "test/data/hf/$m.mgt" \
                --export-tol "$etol" --train-gpt-log "$D/$m.$tag.log" --loss-tol "$ltol" ${sharded[@]+"${sharded[@]}"} \
                2> "$D/$m.$tag.check.err" | tee "$D/$m.$tag.check.log"
            [ "${PIPESTATUS[0]}" -eq 0 ] || bad "$m/$tag: hf_check.py failed ($(grep -c '^FAIL' "$D/$m.$tag.check.log") checks; $D/$m.$tag.check.err)"
        done
    done
    "$PY" dev/reference/hf_check.py --original test/data/hf/qwen3_tiny --export "$D/qwen3_tiny.finetuned" --val-shard "$D/data/val_000.bin" \
        --seq-len 32 --n-seqs 32 --train-gpt-log "$D/qwen3_tiny.finetuned.log" --loss-tol 2e-2 --min-gain 0.05 \
        2> "$D/finetuned.check.err" | tee "$D/finetuned.check.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || bad "finetune: hf_check.py failed ($D/finetuned.check.err)"
fi

p=$(cat "$D"/*.check.log 2>/dev/null | grep -c '^PASS')
echo "check_hf: logs in $D; $p hf_check passes, $nfail failures"
[ "$nfail" -eq 0 ]
