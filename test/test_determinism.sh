#!/usr/bin/env bash
# Two train_gpt runs with the same seed must print bit-identical losses and grad norms.
set -u
cd "$(dirname "$0")/.."
mkdir -p test/tmp
args="--preset tiny --steps 12 --batch-size 8 --seq-len 64 --val-every 6 --val-batches 2 --sample-every -1 --seed 7 --log-dir test/tmp/det"
for k in 1 2; do
    ./train_gpt $args --vocab-size 1024 > test/tmp/det_$k.txt 2>&1 || { echo "FAIL determinism: train_gpt run $k failed"; tail -3 test/tmp/det_$k.txt; exit 1; }
done
grep -E '^(step|val)' test/tmp/det_1.txt | sed -E 's/\| [0-9.]+ ms.*//' > test/tmp/det_1.loss
grep -E '^(step|val)' test/tmp/det_2.txt | sed -E 's/\| [0-9.]+ ms.*//' > test/tmp/det_2.loss
n=$(wc -l < test/tmp/det_1.loss)
if [ "$n" -ge 12 ] && cmp -s test/tmp/det_1.loss test/tmp/det_2.loss; then
    echo "PASS determinism: two seed-7 runs of train_gpt give identical losses and norms over $n lines ($(tail -1 test/tmp/det_1.loss))"
else
    echo "FAIL determinism: runs differ or too short ($n lines)"; diff test/tmp/det_1.loss test/tmp/det_2.loss | head -5; exit 1
fi
