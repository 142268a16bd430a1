#!/usr/bin/env bash
# The trainers' speed with each attention configuration, same GPU, same run:
#   default   per head dim the faster of the sm90 / mma.sync kernels, deterministic backward
#   fast      the same with --attn-backward fast (Hopper: the fused backward, atomic dQ sums)
#   mma.sync  MEGA_FLASH_SM90=0: the kernels before the sm90 ones, deterministic
#   sm90      MEGA_FLASH_SM90=2: the sm90 kernels everywhere, deterministic
# Shapes of scripts/bench_gpt.sh (gpt-1b) and scripts/bench_dit.sh (the 1B DiT), random data.
# Usage (on a GPU machine): bash scripts/bench_attention_families.sh   (logs in $OUT;
# CONFIGS="default fast" to run some of them)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/bench_attention_families}; mkdir -p "$OUT"
STEPS=${STEPS:-20}
make -s train_gpt train_dit || exit 1
for name in ${CONFIGS:-default fast mma.sync sm90}; do
    fam=1; bwd=deterministic
    case $name in
        fast) bwd=fast ;;
        mma.sync) fam=0 ;;
        sm90) fam=2 ;;
    esac
    MEGA_FLASH_SM90=$fam ./train_dit --preset 1B --n-layer 28 --batch-size 1 --frames 14 --height 48 --width 80 --text-len 300 \
        --random-data 1 --steps $STEPS --log-dir "" --attn-backward $bwd > "$OUT/dit1b_$name.log" 2>&1
    MEGA_FLASH_SM90=$fam ./train_gpt --preset gpt-1b --random-data 1 --batch-size 8 --seq-len 2048 --steps $STEPS --warmup 5 \
        --val-every 0 --sample-every -1 --log-dir "" --attn-backward $bwd > "$OUT/gpt1b_$name.log" 2>&1
    for m in dit1b gpt1b; do
        echo "$m [$name]: $(grep '^summary' "$OUT/${m}_$name.log" || tail -2 "$OUT/${m}_$name.log")"
    done
done
