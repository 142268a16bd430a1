#!/usr/bin/env bash
# scripts/bench_lib.sh, the speed comparison of scripts/bench_gpt.sh and bench_dit.sh, with a
# stand-in trainer and stand-in peers (no GPU): the medians over the rounds, the spread, the
# ratio to the FASTER of the two peers, a run that printed no number, PEER=none.
set -u
cd "$(dirname "$0")/.."
. test/test_lib.sh
test_begin bench_lib
OUT=$T; STEPS=5
. scripts/bench_lib.sh
# the stand-ins print the next number of their list (one file per program) as the real ones do
mkdir -p "$T/peer"
cat > "$T/peer/fake_peer.py" <<'PY'
import os, sys
sdpa = "cudnn" if "--sdpa" in sys.argv else "default"
f = os.path.join(os.path.dirname(__file__), "rates_" + sdpa)
rates = open(f).read().split()
open(f, "w").write(" ".join(rates[1:]))
if rates[0] != "none":
    print(f"step_ms=1.0 samples/s=1.00 tok/s={rates[0]} TFLOP/s=1.0")
PY
trainer() {
    local rates; read -r -a rates < "$T/rates_mega"
    echo "${rates[*]:1}" > "$T/rates_mega"
    echo "mega.c trainer | $*"
    [ "${rates[0]}" = none ] || echo "summary: 20 steps | median step 1.00 ms | ${rates[0]} tok/s | 1.0 TFLOP/s"
}
# expect NAME PATTERN MEGA_RATES DEFAULT_RATES CUDNN_RATES
expect() {
    echo "$3" > "$T/rates_mega"; echo "$4" > "$T/peer/rates_default"; echo "$5" > "$T/peer/rates_cudnn"
    local line; line=$(bench_config "$1" fake_peer.py trainer --flag "" 2>&1)
    if [[ $line == *"$2"* ]]; then ok "$1" "$line"; else bad "$1" "expected '$2', got: $line"; fi
}
PEER=$T/peer
# medians 110 / 100 / 120: the cuDNN peer is the faster, 110 / 120
expect medians "mega.c median 110 tok/s (90-130, 3 of 3 runs) | torch.compile median 100 tok/s (95-105, 3 of 3 runs) | torch.compile --sdpa cudnn median 120 tok/s (118-200, 3 of 3 runs) | ratio to the faster peer 0.917" \
    "130 90 110" "95 100 105" "200 118 120"
expect faster_default "ratio to the faster peer 1.500" "150 150 150" "100 100 100" "50 60 70"
# a run with no number counts as missing, not as zero
expect missing_run "mega.c median 105 tok/s (100-110, 2 of 3 runs)" "100 none 110" "100 100 100" "100 100 100"
expect no_peer_number "torch.compile --sdpa cudnn no number in 3 runs | ratio to the faster peer 1.000" "100 100 100" "100 100 100" "none none none"
ROUNDS=1 expect one_round "(100-100, 1 of 1 runs)" "100" "50" "60"
PEER=none
expect peer_none "mega.c median 100 tok/s (90-110, 3 of 3 runs) (PEER=none)" "90 100 110" "" ""
# the trainer's own arguments reach it (an empty one included), and every line lands in bench.txt
grep -q "mega.c trainer | --flag " "$T/mega_medians_1.log" && ok trainer_args || bad trainer_args "$(cat "$T/mega_medians_1.log")"
[ "$(grep -c '^bench ' "$T/bench.txt")" -eq 6 ] && ok bench_txt "6 lines" || bad bench_txt "$(cat "$T/bench.txt")"
echo "bench_lib: $pass passed, $fail failed"
[ $fail -eq 0 ]
