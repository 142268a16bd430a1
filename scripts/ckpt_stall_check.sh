#!/usr/bin/env bash
# How long a checkpoint save stalls training (issue 19's before/after table), on one GPU:
# train_gpt --preset llama3.2-1b (1.24B parameters, a 14.9 GB checkpoint) on random tokens,
# saving every EVERY steps (enough steps for a background write to finish before the next
# save, which waits for it), once with --ckpt-async 0 (the loop writes the files) and once
# with --ckpt-async 1 (the loop waits only for the copy to pinned memory; a thread writes).
# Every output line is time-stamped as it arrives, so the stall is measured from outside:
# the gap between a save step's line and the next step's line, against the median gap
# between two step lines without a save in between. Also listed: what the trainer says
# the loop waited ("the loop waited X s") and how long the write took, and the whole run.
# Usage (GPU machine): OUT=dir EVERY=200 STEPS=610 bash scripts/ckpt_stall_check.sh
#   (defaults: OUT=log/ckpt_stall; CKPT=$OUT/ckpt on the disk to measure: it needs room
#   for two checkpoints, about 30 GB; the table goes to $OUT/ckpt_stall.md)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/ckpt_stall}; mkdir -p "$OUT"
CKPT=${CKPT:-$OUT/ckpt}
EVERY=${EVERY:-200}; STEPS=${STEPS:-610}
FLAGS=${FLAGS:-"--preset llama3.2-1b --random-data 1 --batch-size 4 --seq-len 2048 --val-every 0 --sample-every -1 --log-dir ''"}
make -j"$(nproc)" train_gpt > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }

for mode in 0 1; do
    rm -rf "$CKPT"
    t0=$(date +%s.%N)
    eval ./train_gpt $FLAGS --steps "$STEPS" --ckpt-dir "$CKPT" --ckpt-every "$EVERY" --ckpt-keep 1 --ckpt-async $mode 2>&1 |
        while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$OUT/run_async$mode.log"
    rc=${PIPESTATUS[0]}
    echo "$t0 $(date +%s.%N) $rc" > "$OUT/run_async$mode.time"
    [ "$rc" -eq 0 ] || { echo "--ckpt-async $mode: exit $rc"; tail -5 "$OUT/run_async$mode.log"; }
done
rm -rf "$CKPT"

python3 - "$OUT" "$EVERY" "$STEPS" <<'EOF'
import re, statistics, sys
out, every, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
for mode in (0, 1):
    lines = [l.rstrip('\n').split(' ', 1) for l in open(f'{out}/run_async{mode}.log')]
    t_start, t_end, rc = open(f'{out}/run_async{mode}.time').read().split()
    at, ms = {}, {}
    waited, written = [], []
    for ts, text in (x for x in lines if len(x) == 2):
        m = re.match(r'step\s+(\d+)/\d+ .*\| ([0-9.]+) ms', text)
        if m:
            at[int(m.group(1))] = float(ts); ms[int(m.group(1))] = float(m.group(2))
        m = re.search(r'written in ([0-9.]+) s.*the loop waited ([0-9.]+) s', text)
        if m:
            written.append(float(m.group(1))); waited.append(float(m.group(2)))
    # the gap after step k: the time from step k's line to step k+1's (k+1's own time included)
    gaps = {k: at[k + 1] - at[k] for k in at if k + 1 in at}
    save_gaps = [gaps[k] for k in gaps if k % every == 0]
    plain = [gaps[k] for k in gaps if k % every != 0 and k > 3]
    med = statistics.median(plain) if plain else float('nan')
    stall = [g - med for g in save_gaps]
    rows.append((mode, len(waited), statistics.median(ms.values()) if ms else float('nan'), med * 1000,
                 max(stall) if stall else float('nan'), statistics.mean(stall) if stall else float('nan'),
                 statistics.mean(waited) if waited else float('nan'), statistics.mean(written) if written else float('nan'),
                 float(t_end) - float(t_start), rc))
hdr = ('| --ckpt-async | saves | median step ms | median gap ms (no save) | stall per save, max s | stall per save, mean s '
       '| the loop waited (trainer), mean s | write, mean s | whole run s | exit |')
table = [hdr, '|' + '---|' * 10]
for r in rows:
    table.append('| %d | %d | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f | %s |' % r)
text = '\n'.join(table)
print(text)
open(f'{out}/ckpt_stall.md', 'w').write(text + '\n')
EOF
