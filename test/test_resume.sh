#!/usr/bin/env bash
# Checkpoints and exact resume of train_gpt (needs a GPU). A run that stops and
# resumes must print the same losses, grad norms, learning rates, validation
# losses and samples as the run that never stopped, and train.log must read as
# if it never stopped:
#   straight     20 steps straight = 10 steps (--exit-at-step 10) + --resume 1
#   sigterm      SIGTERM mid-run: exit 0 with a checkpoint; --resume 1 continues identically
#   kill9        kill -9 mid-run (checkpoints every 20, keep 2): `latest` names a
#                complete checkpoint, which resumes identically
#   kill9_random 6 kill -9s at random moments of a run saving every 3 steps (possibly
#                inside a save): each resumes from `latest` identically for 20 steps
#   two_signals  a second SIGINT exits at once (exit 1, no checkpoint)
#   init_from    --init-from a checkpoint's model.bin: its validation loss at step 0 is
#                the one the saving run measured with those weights
#   mismatch     resuming with another model config fails with one line naming the field
#   nan          a diverging run (lr 1e30) skips non-finite steps and stops after
#                --max-bad-steps with one line naming the step and the last good checkpoint
set -u
cd "$(dirname "$0")/.."
. test/test_lib.sh   # test_begin, ok/bad, test_python, latest_step, wait_line, gpt_losses, gpt_wait_step
test_begin resume

common="--preset tiny --vocab-size 1024 --batch-size 8 --seq-len 64 --seed 7 --val-batches 2 --sample-tokens 16"
# train.log without the timing column
logbody() { sed -E 's/ ms [0-9.]+$//' "$1"; }

# ---- straight: 20 steps vs 10 + 10
args="$common --steps 20 --val-every 5 --sample-every 5"
./train_gpt $args --log-dir $T/a > $T/a.txt 2> $T/a.err || bad straight "the uninterrupted run failed: $(tail -2 $T/a.err)"
./train_gpt $args --log-dir $T/b --ckpt-dir $T/b/ckpt --exit-at-step 10 > $T/b1.txt 2> $T/b1.err
rc1=$?
./train_gpt $args --log-dir $T/b --ckpt-dir $T/b/ckpt --resume 1 > $T/b2.txt 2> $T/b2.err
rc2=$?
gpt_losses $T/a.txt > $T/a.loss
cat <(gpt_losses $T/b1.txt) <(gpt_losses $T/b2.txt) > $T/b.loss
n=$(grep -c '^step' $T/a.loss)
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ "$n" -eq 20 ] && grep -q "resumed from $T/b/ckpt/step_00000010" $T/b2.txt && cmp -s $T/a.loss $T/b.loss; then
    ok straight "10 steps + resume 10 = 20 straight, $(wc -l < $T/a.loss) lines identical (losses, norms, lr, val, samples)"
else
    bad straight "exit codes $rc1/$rc2, $n step lines; $(diff $T/a.loss $T/b.loss | head -4 | tr '\n' ' ') $(tail -1 $T/b2.err)"
fi
straight_log_verdict $rc2 $T/a/train.log $T/b/train.log

# ---- sigterm: the reference for this and the next case is a 3000-step run
args="$common --steps 3000 --val-every 1000 --sample-every -1"
./train_gpt $args --log-dir $T/c > $T/c.txt 2> $T/c.err || bad reference "the 3000-step run failed: $(tail -2 $T/c.err)"
gpt_losses $T/c.txt > $T/c.loss
./train_gpt $args --log-dir $T/d --ckpt-dir $T/d/ckpt > $T/d1.txt 2> $T/d1.err &
pid=$!
if gpt_wait_step $T/d/train.log 30 $pid; then kill -TERM $pid; fi
wait $pid
rc1=$?
k=$(latest_step $T/d/ckpt)
./train_gpt $args --log-dir $T/d --ckpt-dir $T/d/ckpt --resume 1 > $T/d2.txt 2> $T/d2.err
rc2=$?
cat <(gpt_losses $T/d1.txt) <(gpt_losses $T/d2.txt) > $T/d.loss
if [ $rc1 -eq 0 ] && grep -q "stopping after step $k (SIGTERM): checkpoint $T/d/ckpt/step_" $T/d1.txt && [ "$k" -ge 30 ] && [ "$k" -lt 3000 ] &&
   [ $rc2 -eq 0 ] && cmp -s $T/c.loss $T/d.loss && cmp -s <(logbody $T/c/train.log) <(logbody $T/d/train.log); then
    ok sigterm "SIGTERM at step $k: exit 0 with a checkpoint; resumed, $(wc -l < $T/d.loss) lines and train.log identical to the uninterrupted run"
else
    bad sigterm "exit $rc1 (expected 0), stopped at step $k, resume exit $rc2; $(diff $T/c.loss $T/d.loss | head -4 | tr '\n' ' ') $(tail -1 $T/d1.err)"
fi

# ---- kill9: checkpoints every 20 steps, keep 2; kill -9 somewhere after step 101 is logged. The
# checkpoint of step 100 is copied between step 100's line and step 101 and written in the
# background (--ckpt-async 1, the default) while the steps go on, so `latest` is 100, or 80 when
# the kill lands before that write finished (kill9_random and test_ckpt_async.sh aim kills at writes)
./train_gpt $args --log-dir $T/e --ckpt-dir $T/e/ckpt --ckpt-every 20 --ckpt-keep 2 > $T/e1.txt 2> $T/e1.err &
pid=$!
if gpt_wait_step $T/e/train.log 101 $pid; then kill -9 $pid; fi
wait $pid 2>/dev/null
rc1=$?
k=$(latest_step $T/e/ckpt)
ndirs=$(ls -d $T/e/ckpt/step_* 2>/dev/null | wc -l)
./train_gpt $args --log-dir $T/e --ckpt-dir $T/e/ckpt --ckpt-every 20 --ckpt-keep 2 --resume 1 > $T/e2.txt 2> $T/e2.err
rc2=$?
gpt_losses $T/e2.txt > $T/e.loss
m=$(wc -l < $T/e.loss)
first=$(grep -m1 '^step' $T/e.loss | awk '{print $2}')
if [ $rc1 -eq 137 ] && [ "$k" -ge 80 ] && [ $((k % 20)) -eq 0 ] && [ "$ndirs" -le 3 ] && [ $rc2 -eq 0 ] && [ "$first" = "$((k + 1))/3000" ] &&
   cmp -s <(tail -n "$m" $T/c.loss) $T/e.loss && cmp -s <(logbody $T/c/train.log) <(logbody $T/e/train.log); then
    ok kill9 "killed -9 after step 101: latest = step $k ($ndirs step dirs kept); resumed from it, $m lines and train.log identical to the uninterrupted run"
else
    bad kill9 "kill exit $rc1, latest step $k, $ndirs step dirs, resume exit $rc2, first step $first; $(diff <(tail -n "$m" $T/c.loss) $T/e.loss | head -4 | tr '\n' ' ') $(tail -1 $T/e2.err)"
fi

# ---- kill9_random: 6 trials of kill -9 at a random moment (a random step in 20..300, then a
# random 0-40 ms) of a run that saves every 3 steps (keep 2), so a kill can land inside a save
# (the PASS line counts how many left .tmp files; the tiny model saves in about a millisecond,
# so few do: test/test_checkpoint kills inside writes on purpose); each resumes from `latest`
# for 20 steps, which must be the uninterrupted run's steps
RANDOM=12345   # the same moments every run of the test
in_save=0; trials=0; kbad=""
for i in 1 2 3 4 5 6; do
    d=$T/r$i; s=$((20 + RANDOM % 281)); ms=$((RANDOM % 41))
    ./train_gpt $args --log-dir $d --ckpt-dir $d/ckpt --ckpt-every 3 --ckpt-keep 2 > $d.1.txt 2> $d.1.err &
    pid=$!
    if gpt_wait_step $d/train.log $s $pid; then sleep "0.0$(printf %02d $ms)"; kill -9 $pid; fi
    wait $pid 2>/dev/null
    rc1=$?
    ls $d/ckpt/step_*/*.tmp $d/ckpt/latest.tmp > /dev/null 2>&1 && in_save=$((in_save + 1))
    k=$(latest_step $d/ckpt)
    ./train_gpt $args --log-dir '' --ckpt-dir $d/ckpt --ckpt-every 3 --ckpt-keep 2 --resume 1 --exit-at-step $((k + 20)) > $d.2.txt 2> $d.2.err
    rc2=$?
    gpt_losses $d.2.txt | grep '^step' > $d.loss
    first=$(head -1 $d.loss | awk '{print $2}')
    if [ $rc1 -eq 137 ] && [ "$k" -ge 3 ] && [ $rc2 -eq 0 ] && [ "$(wc -l < $d.loss)" -eq 20 ] && [ "$first" = "$((k + 1))/3000" ] &&
       cmp -s <(grep '^step' $T/c.loss | sed -n "$((k + 1)),$((k + 20))p") $d.loss; then
        trials=$((trials + 1))
    else
        kbad="$kbad trial $i (step $s + $ms ms: kill exit $rc1, latest $k, resume exit $rc2, first step $first: $(tail -1 $d.2.err))"
    fi
done
if [ -z "$kbad" ]; then
    ok kill9_random "$trials of 6 random kill -9 moments (${in_save} inside a save, .tmp files left) resumed from latest: 20 steps each identical to the uninterrupted run"
else
    bad kill9_random "$kbad"
fi

# ---- two_signals: 64 micro-batches per step, so both signals land in one step
./train_gpt $common --steps 3000 --total-batch-tokens $((8 * 64 * 64)) --val-every 0 --sample-every -1 --log-dir $T/f --ckpt-dir $T/f/ckpt > $T/f.txt 2> $T/f.err &
pid=$!
if gpt_wait_step $T/f/train.log 2 $pid; then kill -INT $pid; sleep 0.01; kill -INT $pid; fi
wait $pid
rc=$?
if [ $rc -eq 1 ] && grep -q "second stop signal" $T/f.err && [ ! -e $T/f/ckpt/latest ]; then
    ok two_signals "a second SIGINT exits at once: exit 1, no checkpoint"
else
    bad two_signals "exit $rc (expected 1), latest $(cat $T/f/ckpt/latest 2>/dev/null || echo none): $(tail -2 $T/f.err | tr '\n' ' ')"
fi

# ---- init_from: the weights of the straight run's final checkpoint (step 20)
./train_gpt $common --steps 1 --val-every 5 --sample-every -1 --log-dir '' --init-from $T/b/ckpt/step_00000020/model.bin > $T/i.txt 2> $T/i.err
rc=$?
v20=$(grep -m1 'val loss .* (step 20,' $T/a.txt | awk '{print $3}')
v0=$(grep -m1 'val loss .* (step 0,' $T/i.txt | awk '{print $3}')
if [ $rc -eq 0 ] && grep -q "initialized the weights from $T/b/ckpt/step_00000020/model.bin" $T/i.txt && [ -n "$v20" ] && [ "$v0" = "$v20" ]; then
    ok init_from "validation loss at step 0 from the step-20 weights: $v0 = the saving run's at step 20"
else
    bad init_from "exit $rc, val loss $v0 vs $v20: $(tail -1 $T/i.err)"
fi

# ---- mismatch: resume a 2-layer checkpoint as a 3-layer model
./train_gpt $common --steps 20 --n-layer 3 --log-dir '' --resume-from $T/b/ckpt > $T/g.out 2> $T/g.err
rc=$?
if [ $rc -eq 1 ] && [ "$(grep -c . $T/g.err)" -eq 1 ] && grep -q "$T/b/ckpt/step_00000020/model.bin: config n_layer is 2, the model has 3" $T/g.err; then
    ok mismatch "$(cat $T/g.err)"
else
    bad mismatch "exit $rc: $(head -3 $T/g.err | tr '\n' ' ')"
fi

# ---- nan: a learning rate of 1e30 blows the weights up; updates are skipped, 3 in a row stop the run
./train_gpt $common --steps 50 --lr 1e30 --warmup 0 --max-bad-steps 3 --val-every 0 --sample-every -1 --log-dir '' \
    --ckpt-dir $T/h/ckpt --ckpt-every 1 > $T/h.out 2> $T/h.err
nan_verdict $? $T/h.out $T/h.err $T/h/ckpt

echo "resume: $pass passed, $fail failed"
[ $fail -eq 0 ]
