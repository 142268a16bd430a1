#!/usr/bin/env bash
# Hyper-parameter sweep for the default shakespeare run (the record of how its
# defaults were chosen). Each line: flags and the best / final validation loss
# in nats per byte. Usage on a GPU machine: bash scripts/sweep_shakespeare.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/sweep}; mkdir -p "$OUT"
make -s train_gpt build_data
for V in ${VOCABS:-257 512 1024 2048}; do
    [ -f data/sweep_v$V/tokenizer.bin ] || ./build_data --input data/tinyshakespeare.txt --out-dir data/sweep_v$V --vocab-size $V --val-fraction 0.1 > /dev/null
done
run() {  # run VOCAB FLAGS...
    local V=$1; shift
    ./train_gpt --train-data "data/sweep_v$V/train_*.bin" --val-data "data/sweep_v$V/val_*.bin" --tokenizer data/sweep_v$V/tokenizer.bin \
        --sample-every -1 --log-dir "" "$@" > "$OUT/run.txt" 2>&1 || { echo "V$V $* FAILED: $(tail -1 $OUT/run.txt)"; return; }
    local best final
    best=$(grep -o '= [0-9.]* nats/byte' "$OUT/run.txt" | awk '{print $2}' | sort -g | head -1)
    final=$(grep -o '= [0-9.]* nats/byte' "$OUT/run.txt" | tail -1 | awk '{print $2}')
    echo "V$V $* | best $best final $final | $(grep -o 'median step [0-9.]* ms' $OUT/run.txt)" | tee -a "$OUT/sweep.txt"
}
round1() { while read -r line; do [ -n "$line" ] && run $line; done <<'CONFIGS'
1024 --steps 300 --val-every 25 --warmup 30 --min-lr-frac 0
1024 --steps 300 --val-every 25 --warmup 30 --min-lr-frac 0 --weight-decay 1.0
1024 --steps 200 --val-every 25 --warmup 20 --min-lr-frac 0 --lr 2e-3
1024 --steps 600 --val-every 50 --warmup 50 --min-lr-frac 0 --batch-size 16
1024 --steps 1200 --val-every 100 --warmup 50 --min-lr-frac 0 --batch-size 16 --lr 5e-4
512 --steps 300 --val-every 25 --warmup 30 --min-lr-frac 0
512 --steps 600 --val-every 50 --warmup 50 --min-lr-frac 0 --batch-size 16
257 --steps 400 --val-every 50 --warmup 40 --min-lr-frac 0
257 --steps 800 --val-every 50 --warmup 50 --min-lr-frac 0 --weight-decay 1.0
257 --steps 1000 --val-every 100 --warmup 50 --min-lr-frac 0 --batch-size 16
2048 --steps 200 --val-every 25 --warmup 20 --min-lr-frac 0
2048 --steps 400 --val-every 50 --warmup 40 --min-lr-frac 0 --batch-size 16
1024 --steps 300 --val-every 25 --warmup 30 --min-lr-frac 0 --n-layer 4 --d-model 256 --n-head 4 --ffn-hidden 704
1024 --steps 300 --val-every 25 --warmup 30 --min-lr-frac 0 --n-layer 8 --d-model 512 --n-head 8 --ffn-hidden 1408
CONFIGS
}
# round 2: around the best of round 1 (V1024, B16, 600 steps: 1.4617)
round2() { while read -r line; do [ -n "$line" ] && run $line; done <<'CONFIGS'
1024 --batch-size 16 --steps 600 --warmup 50 --min-lr-frac 0 --val-every 50 --seed 1
1024 --batch-size 16 --steps 600 --warmup 50 --min-lr-frac 0 --val-every 50 --seed 2
1024 --batch-size 16 --steps 600 --warmup 50 --min-lr-frac 0 --val-every 50 --seed 3
1024 --batch-size 16 --steps 500 --warmup 50 --min-lr-frac 0 --val-every 50
1024 --batch-size 16 --steps 800 --warmup 50 --min-lr-frac 0 --val-every 50
1024 --batch-size 16 --steps 600 --warmup 50 --min-lr-frac 0 --val-every 50 --weight-decay 0.3
1024 --batch-size 16 --steps 600 --warmup 50 --min-lr-frac 0 --val-every 50 --lr 1.5e-3
1024 --batch-size 16 --steps 800 --warmup 50 --min-lr-frac 0 --val-every 50 --lr 7e-4
1024 --batch-size 8 --steps 1200 --warmup 100 --min-lr-frac 0 --val-every 100
1024 --batch-size 8 --steps 1200 --warmup 100 --min-lr-frac 0 --val-every 100 --lr 7e-4
1024 --batch-size 32 --steps 400 --warmup 40 --min-lr-frac 0 --val-every 50
512 --batch-size 16 --steps 800 --warmup 50 --min-lr-frac 0 --val-every 50
512 --batch-size 8 --steps 1200 --warmup 100 --min-lr-frac 0 --val-every 100
1024 --batch-size 16 --steps 600 --warmup 50 --min-lr-frac 0 --val-every 50 --beta2 0.99
CONFIGS
}
# round 3: residual dropout (seed spread matters: compare means over seeds)
round3() { for seed in 1337 1 2; do while read -r line; do [ -n "$line" ] && run $line --seed $seed; done <<'CONFIGS'
1024 --batch-size 8 --steps 1200 --warmup 100 --min-lr-frac 0 --val-every 100 --lr 7e-4 --dropout 0.1
1024 --batch-size 8 --steps 1200 --warmup 100 --min-lr-frac 0 --val-every 100 --lr 7e-4 --dropout 0.2
1024 --batch-size 8 --steps 2400 --warmup 100 --min-lr-frac 0 --val-every 200 --lr 7e-4 --dropout 0.2
1024 --batch-size 16 --steps 1500 --warmup 100 --min-lr-frac 0 --val-every 100 --lr 1e-3 --dropout 0.2
CONFIGS
done; }
round${ROUND:-2}
