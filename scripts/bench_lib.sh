# Sourced by scripts/bench_gpt.sh and scripts/bench_dit.sh: docs/perf.md's way of comparing
# speed with the PyTorch peers. For one config, ROUNDS rounds (default 3) in turn: our trainer,
# then $PEER/PEER_SCRIPT CONFIG --compile, then the same with --sdpa cudnn (the fastest
# attention PyTorch has); tokens/s is each run's median step (our summary line, the peer's
# tok/s=); then one line: the median over the rounds of each, its spread (min-max) and how
# many runs gave a number, and the ratio of our median to the faster peer's median.
# PEER=none: our trainer alone. Needs OUT, PEER, STEPS.
#   bench_config CONFIG PEER_SCRIPT TRAINER ARGS...

bench_tok_s() {   # FILE: the run's tokens/s (empty when it printed none)
    sed -nE 's/^summary: .*\| ([0-9]+) tok\/s.*/\1/p; s/.*tok\/s=([0-9]+).*/\1/p' "$1" | tail -1
}

bench_config() {
    local cfg=$1 peer_py=$2 r ours="" p1="" p2=""
    shift 2
    for r in $(seq 1 "${ROUNDS:-3}"); do
        "$@" > "$OUT/mega_${cfg}_$r.log" 2>&1
        ours+=" $(bench_tok_s "$OUT/mega_${cfg}_$r.log")"
        [ "$PEER" = none ] && continue
        python3 "$PEER/$peer_py" "$cfg" --compile --steps "$STEPS" > "$OUT/torch_${cfg}_$r.log" 2>&1
        p1+=" $(bench_tok_s "$OUT/torch_${cfg}_$r.log")"
        python3 "$PEER/$peer_py" "$cfg" --compile --sdpa cudnn --steps "$STEPS" > "$OUT/torch_cudnn_${cfg}_$r.log" 2>&1
        p2+=" $(bench_tok_s "$OUT/torch_cudnn_${cfg}_$r.log")"
    done
    python3 - "$cfg" "${ROUNDS:-3}" "$PEER" "$ours" "$p1" "$p2" <<'PY' | tee -a "$OUT/bench.txt"
import statistics, sys
cfg, rounds, peer, *cols = sys.argv[1:]
runs = [[float(x) for x in c.split()] for c in cols]
def part(name, v):
    if not v:
        return None, f"{name} no number in {rounds} runs"
    return statistics.median(v), f"{name} median {statistics.median(v):.0f} tok/s ({min(v):.0f}-{max(v):.0f}, {len(v)} of {rounds} runs)"
ours, ours_s = part("mega.c", runs[0])
if peer == "none":
    print(f"bench {cfg}: {ours_s} (PEER=none)")
    sys.exit(0)
c, c_s = part("torch.compile", runs[1])
d, d_s = part("torch.compile --sdpa cudnn", runs[2])
best = max([x for x in (c, d) if x is not None], default=None)
ratio = f"{ours / best:.3f}" if ours is not None and best else "?"
print(f"bench {cfg}: {ours_s} | {c_s} | {d_s} | ratio to the faster peer {ratio}")
PY
}
