#!/usr/bin/env bash
# Checkpoints and exact resume of train_dit (needs a GPU), as test/test_resume.sh
# does for train_gpt: the tiny preset on a small moving-shapes dataset (96 clips
# of 4 frames at 16x16, written here by ./moving_shapes), with caption dropout
# and image-to-video draws on so that the augmentation RNG matters, and 24
# batches per epoch so that the loader's epoch shuffles matter. A run that stops
# and resumes must print the same losses, grad norms and learning rates, write
# the same samples, end with the same final checkpoint files byte for byte
# (weights, AdamW moments, RNG states, loader position), and its train.log must
# read as if it never stopped:
#   straight    20 steps straight (--resume 1 on an empty --ckpt-dir: a fresh start)
#               = 10 steps (--exit-at-step 10) + --resume 1; samples every 5 steps identical
#   sigterm     SIGTERM mid-run: exit 0 with a checkpoint; --resume 1 continues identically
#   kill9       kill -9 mid-run (checkpoints every 20, keep 2): `latest` names a
#               complete checkpoint, which resumes identically
#   init_from   --init-from a checkpoint's model.bin with --steps 0: the samples it writes
#               are the ones the saving run wrote with those weights, byte for byte
#   mismatch    resuming with another model config fails with one line naming the field
#   wrong_kind  a train_gpt checkpoint given to train_dit and a train_dit one to train_gpt
#               fail with one line naming both kinds
#   ema         --ema-decay: 10 steps + resume 10 = 20 straight, samples from the EMA weights
#   nan         a diverging run (lr 1e30) skips non-finite steps and stops after
#               --max-bad-steps with one line naming the step and the last good checkpoint
#   graph       the forward and backward replayed as a CUDA graph (the default) and launched
#               kernel by kernel (--cuda-graph 0) print the same losses and end with the same
#               checkpoint: synthetic batches of one shape (one capture, every later step
#               replayed; also with full recompute of one block and the EDM objective) and the
#               data one clip a step (captions of 4 to 6 words: the key changes, several
#               captures, eager steps between)
# Needs ./train_dit and ./moving_shapes (and ./train_gpt for wrong_kind):
#   make train_dit moving_shapes train_gpt && bash test/test_resume_dit.sh
set -u
cd "$(dirname "$0")/.."
. test/test_lib.sh   # test_begin, ok/bad, test_python, latest_step, wait_line
test_begin resume_dit

for b in train_dit moving_shapes; do
    [ -x ./$b ] || { echo "FAIL resume_dit/setup: ./$b is missing (make $b)"; exit 1; }
done
./moving_shapes --out-dir $T/data --train-samples 96 --val-samples 8 --frames 4 --size 16 --caption-channels 64 > $T/data.txt 2>&1 \
    || { echo "FAIL resume_dit/setup: moving_shapes failed: $(tail -2 $T/data.txt)"; exit 1; }

common=(--preset tiny --train-data "$T/data/train_*.lat" --in-channels 3 --out-channels 6 --caption-channels 64
        --batch-size 4 --seed 7 --lr 1e-3 --warmup 5 --wsd-decay-frac 0.2 --caption-dropout 0.1 --i2v-prob 0.25
        --sample-count 2 --sample-steps 3)
# the stdout lines that must match: step lines without their timing, samples lines without their time and directory
losses() { grep -E '^(step|samples step) ' "$1" | sed -E -e 's/\| [0-9.]+ ms.*//' -e 's/ in [0-9.]+ s( \|.*)?$//'; }
# train.log without the timing: the ms column, the samples lines' time and directory, the summary line
logbody() { sed -E -e 's/ ms [0-9.]+$//' -e 's/ in [0-9.]+ s( \|.*)?$//' -e '/^summary:/d' "$1"; }
# the final checkpoints of two runs: model.bin and state.bin byte for byte
same_ckpt() { cmp -s "$1/model.bin" "$2/model.bin" && cmp -s "$1/state.bin" "$2/state.bin"; }
# wait_step LOG N PID: until train.log has step N (or the process is gone, or 120 s)
wait_step() { wait_line "$1" "^step $2 loss" "$3"; }

# ---- straight: 20 steps vs 10 + 10, samples every 5 steps
args=("${common[@]}" --steps 20 --sample-every 5)
./train_dit "${args[@]}" --log-dir $T/a --ckpt-dir $T/a/ckpt --resume 1 > $T/a.txt 2> $T/a.err || bad straight "the uninterrupted run failed: $(tail -2 $T/a.err)"
./train_dit "${args[@]}" --log-dir $T/b --ckpt-dir $T/b/ckpt --exit-at-step 10 > $T/b1.txt 2> $T/b1.err
rc1=$?
./train_dit "${args[@]}" --log-dir $T/b --ckpt-dir $T/b/ckpt --resume 1 > $T/b2.txt 2> $T/b2.err
rc2=$?
losses $T/a.txt > $T/a.loss
cat <(losses $T/b1.txt) <(losses $T/b2.txt) > $T/b.loss
n=$(grep -c '^step' $T/a.loss)
ns=$(ls -d $T/a/samples/step_* 2>/dev/null | wc -l)
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ "$n" -eq 20 ] && [ "$ns" -eq 4 ] && grep -q "resume: no checkpoint in $T/a/ckpt yet: starting from scratch" $T/a.txt &&
   grep -q "stopping after step 10 (--exit-at-step): checkpoint $T/b/ckpt/step_00000010" $T/b1.txt &&
   grep -q "resumed from $T/b/ckpt/step_00000010" $T/b2.txt && cmp -s $T/a.loss $T/b.loss && diff -r -q $T/a/samples $T/b/samples > /dev/null &&
   same_ckpt $T/a/ckpt/step_00000020 $T/b/ckpt/step_00000020; then
    ok straight "10 steps + resume 10 = 20 straight: $(wc -l < $T/a.loss) lines (losses, norms, lr, samples), the samples of steps 5-20 and the step-20 model.bin/state.bin identical"
else
    bad straight "exit codes $rc1/$rc2, $n step lines, $ns sample dirs; $(diff $T/a.loss $T/b.loss | head -4 | tr '\n' ' ') $(diff -r -q $T/a/samples $T/b/samples 2>&1 | head -2 | tr '\n' ' ') $(same_ckpt $T/a/ckpt/step_00000020 $T/b/ckpt/step_00000020 || echo 'final checkpoints differ') $(tail -1 $T/b2.err)"
fi
straight_log_verdict $rc2 $T/a/train.log $T/b/train.log

# ---- ema: with --ema-decay the samples come from the EMA weights and state.bin carries them
# (n_extra 1): 20 straight = 10 + resume 10 only if the EMA is saved and restored exactly
args=("${common[@]}" --steps 20 --sample-every 5 --ema-decay 0.9)
./train_dit "${args[@]}" --log-dir $T/m --ckpt-dir $T/m/ckpt > $T/m.txt 2> $T/m.err || bad ema "the uninterrupted EMA run failed: $(tail -2 $T/m.err)"
./train_dit "${args[@]}" --log-dir $T/n --ckpt-dir $T/n/ckpt --exit-at-step 10 > $T/n1.txt 2> $T/n1.err
rc1=$?
./train_dit "${args[@]}" --log-dir $T/n --ckpt-dir $T/n/ckpt --resume 1 > $T/n2.txt 2> $T/n2.err
rc2=$?
losses $T/m.txt > $T/m.loss
cat <(losses $T/n1.txt) <(losses $T/n2.txt) > $T/n.loss
sa=$(stat -c %s $T/a/ckpt/step_00000020/state.bin 2>/dev/null || echo 0)
sm=$(stat -c %s $T/m/ckpt/step_00000020/state.bin 2>/dev/null || echo 0)
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ "$(grep -c '^step' $T/m.loss)" -eq 20 ] && cmp -s $T/m.loss $T/n.loss &&
   diff -r -q $T/m/samples $T/n/samples > /dev/null && same_ckpt $T/m/ckpt/step_00000020 $T/n/ckpt/step_00000020 &&
   ! diff -r -q $T/a/samples/step_000020 $T/m/samples/step_000020 > /dev/null && [ "$sm" -gt "$sa" ]; then
    ok ema "--ema-decay 0.9: 10 steps + resume 10 = 20 straight (losses, EMA samples, checkpoints); the EMA samples differ from the plain run's; state.bin $sa -> $sm bytes"
else
    bad ema "exit codes $rc1/$rc2, state.bin $sa / $sm bytes; $(diff $T/m.loss $T/n.loss | head -4 | tr '\n' ' ') $(diff -r -q $T/m/samples $T/n/samples 2>&1 | head -2 | tr '\n' ' ') $(tail -1 $T/n2.err)"
fi

# ---- sigterm: the reference for this and the next case is a 1000-step run (42 epochs of the data)
args=("${common[@]}" --steps 1000)
./train_dit "${args[@]}" --log-dir $T/c --ckpt-dir $T/c/ckpt > $T/c.txt 2> $T/c.err || bad reference "the 1000-step run failed: $(tail -2 $T/c.err)"
losses $T/c.txt > $T/c.loss
./train_dit "${args[@]}" --log-dir $T/d --ckpt-dir $T/d/ckpt > $T/d1.txt 2> $T/d1.err &
pid=$!
if wait_step $T/d/train.log 30 $pid; then kill -TERM $pid; fi
wait $pid
rc1=$?
k=$(latest_step $T/d/ckpt)
./train_dit "${args[@]}" --log-dir $T/d --ckpt-dir $T/d/ckpt --resume 1 > $T/d2.txt 2> $T/d2.err
rc2=$?
cat <(losses $T/d1.txt) <(losses $T/d2.txt) > $T/d.loss
if [ $rc1 -eq 0 ] && grep -q "stopping after step $k (SIGTERM): checkpoint $T/d/ckpt/step_" $T/d1.txt && [ "$k" -ge 30 ] && [ "$k" -lt 1000 ] &&
   [ $rc2 -eq 0 ] && cmp -s $T/c.loss $T/d.loss && cmp -s <(logbody $T/c/train.log) <(logbody $T/d/train.log) &&
   same_ckpt $T/c/ckpt/step_00001000 $T/d/ckpt/step_00001000; then
    ok sigterm "SIGTERM at step $k: exit 0 with a checkpoint; resumed, $(wc -l < $T/d.loss) lines, train.log and the step-1000 checkpoint identical to the uninterrupted run"
else
    bad sigterm "exit $rc1 (expected 0), stopped at step $k, resume exit $rc2; $(diff $T/c.loss $T/d.loss | head -4 | tr '\n' ' ') $(same_ckpt $T/c/ckpt/step_00001000 $T/d/ckpt/step_00001000 || echo 'final checkpoints differ') $(tail -1 $T/d1.err)"
fi

# ---- kill9: checkpoints every 20 steps, keep 2; kill -9 somewhere after step 100 (a step takes ~3 ms,
# so the kill can land while step 100's checkpoint is being written: then `latest` is step 80)
./train_dit "${args[@]}" --log-dir $T/e --ckpt-dir $T/e/ckpt --ckpt-every 20 --ckpt-keep 2 > $T/e1.txt 2> $T/e1.err &
pid=$!
if wait_step $T/e/train.log 100 $pid; then kill -9 $pid; fi
wait $pid 2>/dev/null
rc1=$?
k=$(latest_step $T/e/ckpt)
ndirs=$(ls -d $T/e/ckpt/step_* 2>/dev/null | wc -l)
./train_dit "${args[@]}" --log-dir $T/e --ckpt-dir $T/e/ckpt --ckpt-every 20 --ckpt-keep 2 --resume 1 > $T/e2.txt 2> $T/e2.err
rc2=$?
losses $T/e2.txt > $T/e.loss
m=$(wc -l < $T/e.loss)
first=$(grep -m1 '^step' $T/e.loss | awk '{print $2}')
if [ $rc1 -eq 137 ] && [ "$k" -ge 80 ] && [ $((k % 20)) -eq 0 ] && [ "$ndirs" -le 3 ] && [ $rc2 -eq 0 ] && [ "$first" = "$((k + 1))/1000" ] &&
   cmp -s <(tail -n "$m" $T/c.loss) $T/e.loss && cmp -s <(logbody $T/c/train.log) <(logbody $T/e/train.log) &&
   same_ckpt $T/c/ckpt/step_00001000 $T/e/ckpt/step_00001000; then
    ok kill9 "killed -9 after step 100: latest = step $k ($ndirs step dirs kept); resumed from it, $m lines, train.log and the step-1000 checkpoint identical to the uninterrupted run"
else
    bad kill9 "kill exit $rc1, latest step $k, $ndirs step dirs, resume exit $rc2, first step $first; $(diff <(tail -n "$m" $T/c.loss) $T/e.loss | head -4 | tr '\n' ' ') $(same_ckpt $T/c/ckpt/step_00001000 $T/e/ckpt/step_00001000 || echo 'final checkpoints differ') $(tail -1 $T/e2.err)"
fi

# ---- init_from: the weights of the straight run's final checkpoint (step 20), sampled at step 0
./train_dit "${common[@]}" --steps 0 --sample-every 5 --log-dir $T/i --init-from $T/b/ckpt/step_00000020/model.bin > $T/i.txt 2> $T/i.err
rc=$?
if [ $rc -eq 0 ] && grep -q "initialized the weights from $T/b/ckpt/step_00000020/model.bin" $T/i.txt && [ -e $T/i/samples/step_000000/grid.png ] &&
   diff -r -q $T/i/samples/step_000000 $T/a/samples/step_000020 > /dev/null; then
    ok init_from "samples at step 0 from the step-20 weights = the saving run's samples at step 20 (grid.png, GIFs, captions)"
else
    bad init_from "exit $rc: $(diff -r -q $T/i/samples/step_000000 $T/a/samples/step_000020 2>&1 | head -2 | tr '\n' ' ') $(tail -1 $T/i.err)"
fi

# ---- mismatch: resume a 2-block checkpoint as a 3-block model
./train_dit "${common[@]}" --steps 20 --n-layer 3 --log-dir '' --resume-from $T/b/ckpt > $T/g.out 2> $T/g.err
rc=$?
if [ $rc -eq 1 ] && [ "$(grep -c . $T/g.err)" -eq 1 ] && grep -q "$T/b/ckpt/step_00000020/model.bin: config n_layer is 2, the model has 3" $T/g.err; then
    ok mismatch "$(cat $T/g.err)"
else
    bad mismatch "exit $rc: $(head -3 $T/g.err | tr '\n' ' ')"
fi

# ---- wrong_kind: checkpoints of the other trainer
if [ -x ./train_gpt ]; then
    ./train_gpt --preset tiny --random-data 1 --steps 1 --batch-size 2 --seq-len 64 --val-every 0 --sample-every -1 --log-dir '' \
        --ckpt-dir $T/gpt > $T/k1.out 2> $T/k1.err || bad wrong_kind "train_gpt could not write a checkpoint: $(tail -1 $T/k1.err)"
    ./train_dit "${common[@]}" --steps 20 --log-dir '' --resume-from $T/gpt > $T/k2.out 2> $T/k2.err
    rc2=$?
    ./train_gpt --preset tiny --random-data 1 --steps 1 --batch-size 2 --seq-len 64 --val-every 0 --sample-every -1 --log-dir '' \
        --init-from $T/b/ckpt > $T/k3.out 2> $T/k3.err
    rc3=$?
    if [ $rc2 -eq 1 ] && [ "$(grep -c . $T/k2.err)" -eq 1 ] && grep -q "$T/gpt/step_00000001/model.bin: model kind is gpt (1), the model is dit (2)" $T/k2.err &&
       [ $rc3 -eq 1 ] && [ "$(grep -c . $T/k3.err)" -eq 1 ] && grep -q "$T/b/ckpt/step_00000020/model.bin: model kind is dit (2), the model is gpt (1)" $T/k3.err; then
        ok wrong_kind "$(cat $T/k2.err) / $(cat $T/k3.err)"
    else
        bad wrong_kind "exit $rc2 / $rc3: $(head -2 $T/k2.err | tr '\n' ' ') / $(head -2 $T/k3.err | tr '\n' ' ')"
    fi
else
    echo "SKIP resume_dit/wrong_kind: ./train_gpt is missing (make train_gpt)"
fi

# ---- graph: --cuda-graph 1 (the default) against 0, the same bits
graph_pair() {   # NAME ARGS...: both runs, then the verdict
    local name=$1; shift
    ./train_dit "$@" --log-dir '' --ckpt-dir $T/$name-e --cuda-graph 0 > $T/$name-e.txt 2> $T/$name-e.err
    local rc0=$?
    ./train_dit "$@" --log-dir '' --ckpt-dir $T/$name-g > $T/$name-g.txt 2> $T/$name-g.err
    local rc1=$?
    losses $T/$name-e.txt > $T/$name-e.loss; losses $T/$name-g.txt > $T/$name-g.loss
    local summary; summary=$(grep '^cuda graph: .* steps replayed' $T/$name-g.txt)
    local captures; captures=$(echo "$summary" | sed -n -E 's/.*\(([0-9]+) captures?\).*/\1/p')
    if [ $rc0 -eq 0 ] && [ $rc1 -eq 0 ] && [ -s $T/$name-e.loss ] && cmp -s $T/$name-e.loss $T/$name-g.loss &&
       same_ckpt $T/$name-e/step_000000$steps_tag $T/$name-g/step_000000$steps_tag && [ "${captures:-0}" -ge "$min_captures" ] &&
       ! grep -q '^cuda graph' $T/$name-e.txt; then
        ok "$name" "$(grep -c '^step' $T/$name-g.loss) step lines and the final checkpoint identical; $summary"
    else
        bad "$name" "exit $rc0/$rc1, captures '${captures}' (at least $min_captures); $(diff $T/$name-e.loss $T/$name-g.loss | head -4 | tr '\n' ' ') $(tail -1 $T/$name-g.err)"
    fi
}
steps_tag=12 min_captures=1 graph_pair graph_synthetic --preset tiny --random-data 1 --in-channels 3 --out-channels 6 --caption-channels 64 \
    --frames 4 --height 16 --width 16 --text-len 5 --batch-size 2 --seed 7 --lr 1e-3 --steps 12
steps_tag=8 min_captures=1 graph_pair graph_recompute --preset tiny --random-data 1 --in-channels 3 --out-channels 6 --caption-channels 64 \
    --frames 4 --height 16 --width 16 --text-len 5 --batch-size 2 --seed 7 --lr 1e-3 --steps 8 --recompute full --recompute-layers 1 --objective edm
steps_tag=40 min_captures=2 graph_pair graph_data "${common[@]}" --batch-size 1 --caption-dropout 0 --i2v-prob 0.25 --steps 40

# ---- nan: a learning rate of 1e30 blows the weights up; updates are skipped, 3 in a row stop the run
./train_dit "${common[@]}" --steps 50 --lr 1e30 --warmup 0 --max-bad-steps 3 --log-dir '' --ckpt-dir $T/h/ckpt --ckpt-every 1 > $T/h.out 2> $T/h.err
nan_verdict $? $T/h.out $T/h.err $T/h/ckpt

echo "resume_dit: $pass passed, $fail failed"
[ $fail -eq 0 ]
