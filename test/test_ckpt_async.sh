#!/usr/bin/env bash
# Background checkpoint saves (--ckpt-async 1, the default) and the resume fallback of
# train_gpt (needs a GPU; test/test_ckpt_background and test/test_ckpt_fallback test the
# host code on the CPU):
#   same_bytes     a run saving in the background writes the same model.bin and state.bin
#                  bytes as one saving in the loop (--ckpt-async 0)
#   kill9_saves    20 kill -9s at random moments of a run saving every 2 steps in the
#                  background (so most land while a write is in flight): `latest` always
#                  resumes, continuing 20 steps identically to the uninterrupted run
#   fallback       the newest checkpoint corrupted (one flipped payload byte): --resume 1
#                  warns once (the file, the checksum) and continues from the older one
#                  identically; the corrupt one is kept (moved aside when its step is saved again)
#   resume_from    --resume-from the corrupt checkpoint: one line, exit 1, no fallback
#   write_error    a background write that fails (its step directory is a file) stops the
#                  run at the next step with one line naming the file, exit 1
# `make test` runs it on a GPU machine (test/run_tests.sh); test/test_resume.sh runs its
# cases with the default (background) saves too.
set -u
cd "$(dirname "$0")/.."
. test/test_lib.sh   # test_begin, ok/bad, latest_step, wait_line, gpt_losses, gpt_wait_step
test_begin ckpt_async

common="--preset tiny --vocab-size 1024 --batch-size 8 --seq-len 64 --seed 7 --val-batches 2 --sample-tokens 16"
args="$common --steps 3000 --val-every 1000 --sample-every -1"
# step K's line of the uninterrupted run, and the 20 after a resume from K
ref_steps() { grep '^step' $T/ref.loss | sed -n "$(($1 + 1)),$(($1 + 20))p"; }

# (to step 420: a kill meant for step 300 can land some steps later on a fast GPU, and its resumed
# run's 20 steps are compared line by line with this one's)
./train_gpt $args --log-dir '' --exit-at-step 420 > $T/ref.txt 2> $T/ref.err || bad reference "the uninterrupted run failed: $(tail -2 $T/ref.err)"
gpt_losses $T/ref.txt > $T/ref.loss

# ---- same_bytes: background and loop saves of step 10
./train_gpt $args --log-dir '' --ckpt-dir $T/sync --ckpt-async 0 --exit-at-step 10 > $T/sync.txt 2> $T/sync.err
rc1=$?
./train_gpt $args --log-dir '' --ckpt-dir $T/async --exit-at-step 10 > $T/async.txt 2> $T/async.err
rc2=$?
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && grep -q "saved checkpoint $T/async/step_00000010 (.*in the background; the loop waited" $T/async.txt &&
   cmp -s $T/sync/step_00000010/model.bin $T/async/step_00000010/model.bin && cmp -s $T/sync/step_00000010/state.bin $T/async/step_00000010/state.bin; then
    ok same_bytes "step 10 saved in the background = saved by the loop, byte for byte ($(grep -o 'the loop waited [0-9.]* s' $T/async.txt))"
else
    bad same_bytes "exit $rc1/$rc2; $(tail -1 $T/sync.err) $(tail -1 $T/async.err) $(cmp $T/sync/step_00000010/model.bin $T/async/step_00000010/model.bin 2>&1)"
fi

# ---- kill9_saves: a random step in 20..300, then a random 0-20 ms; every second step saved (keep 2)
RANDOM=4242   # the same moments every run of the test
in_save=0; trials=0; kbad=""
for i in $(seq 1 20); do
    d=$T/k$i; s=$((20 + RANDOM % 281)); ms=$((RANDOM % 21))
    ./train_gpt $args --log-dir $d --ckpt-dir $d/ckpt --ckpt-every 2 --ckpt-keep 2 > $d.1.txt 2> $d.1.err &
    pid=$!
    if gpt_wait_step $d/train.log $s $pid; then sleep "0.0$(printf %02d $ms)"; kill -9 $pid; fi
    wait $pid 2>/dev/null
    rc1=$?
    ls $d/ckpt/step_*/*.tmp $d/ckpt/latest.tmp > /dev/null 2>&1 && in_save=$((in_save + 1))
    k=$(latest_step $d/ckpt)
    ./train_gpt $args --log-dir '' --ckpt-dir $d/ckpt --ckpt-every 2 --ckpt-keep 2 --resume 1 --exit-at-step $((k + 20)) > $d.2.txt 2> $d.2.err
    rc2=$?
    gpt_losses $d.2.txt | grep '^step' > $d.loss
    first=$(head -1 $d.loss | awk '{print $2}')
    if [ $rc1 -eq 137 ] && [ "$k" -ge 2 ] && [ $rc2 -eq 0 ] && [ ! -s $d.2.err ] && [ "$(wc -l < $d.loss)" -eq 20 ] &&
       [ "$first" = "$((k + 1))/3000" ] && cmp -s <(ref_steps $k) $d.loss; then
        trials=$((trials + 1))
    else
        kbad="$kbad trial $i (step $s + $ms ms: kill exit $rc1, latest $k, resume exit $rc2, first step $first: $(head -1 $d.2.err))"
    fi
done
if [ -z "$kbad" ]; then
    ok kill9_saves "$trials of 20 kill -9s around background saves (${in_save} left a write's .tmp files) resumed from latest: 20 steps each identical to the uninterrupted run"
else
    bad kill9_saves "$kbad"
fi

# ---- fallback: checkpoints 10, 20, 30; step 30's model.bin gets one flipped payload byte
ck=$T/fb/ckpt
./train_gpt $args --log-dir '' --ckpt-dir $ck --ckpt-every 10 --ckpt-keep 0 --exit-at-step 30 > $T/fb1.txt 2> $T/fb1.err
rc1=$?
f=$ck/step_00000030/model.bin
at=$(( $(stat -c %s $f) - 100 ))
byte=$(od -An -tu1 -j $at -N1 $f | tr -d ' ')
printf "$(printf '\\%03o' $(( byte ^ 1 )))" | dd of=$f bs=1 seek=$at conv=notrunc status=none
cp $f $T/corrupt_model.bin
./train_gpt $args --log-dir '' --ckpt-dir $ck --ckpt-every 10 --ckpt-keep 0 --resume 1 --exit-at-step 50 > $T/fb2.txt 2> $T/fb2.err
rc2=$?
gpt_losses $T/fb2.txt | grep '^step' > $T/fb.loss
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ "$(grep -c . $T/fb2.err)" -eq 1 ] &&
   grep -q "^warning: $f: payload checksum: stored [0-9a-f]*, computed [0-9a-f]* (the file is corrupted); resuming from $ck/step_00000020, the newest older checkpoint that verifies" $T/fb2.err &&
   grep -q "resumed from $ck/step_00000020: step 20" $T/fb2.txt && [ "$(wc -l < $T/fb.loss)" -eq 30 ] &&
   cmp -s <(grep '^step' $T/ref.loss | sed -n '21,50p') $T/fb.loss &&
   cmp -s $T/corrupt_model.bin $ck/step_00000030.corrupt/model.bin && [ "$(latest_step $ck)" -eq 50 ]; then
    ok fallback "$(cat $T/fb2.err | cut -c1-160)...; steps 21-50 identical to the uninterrupted run; the corrupt step 30 kept as step_00000030.corrupt"
else
    bad fallback "exit $rc1/$rc2, latest $(latest_step $ck): $(head -2 $T/fb2.err | tr '\n' ' ') $(diff <(grep '^step' $T/ref.loss | sed -n '21,50p') $T/fb.loss | head -3 | tr '\n' ' ')"
fi

# ---- resume_from: the corrupt checkpoint named: no fallback
mkdir -p $T/corrupt_dir && cp $T/corrupt_model.bin $T/corrupt_dir/model.bin && cp $ck/step_00000030.corrupt/state.bin $T/corrupt_dir/state.bin
expect_one_line resume_from "flag --resume-from: $T/corrupt_dir/model.bin: payload checksum" ./train_gpt $args --log-dir '' --resume-from $T/corrupt_dir

# ---- write_error: a regular file where step 4's directory goes
mkdir -p $T/we/ckpt && echo "in the way" > $T/we/ckpt/step_00000004
expect_one_line write_error "$T/we/ckpt/step_00000004/model.bin.tmp: cannot create (Not a directory)" \
    ./train_gpt $args --log-dir '' --ckpt-dir $T/we/ckpt --ckpt-every 4 --exit-at-step 12
# the failure is seen at the first step boundary after the thread gave up: within a step or two of step 4's save
last=$(grep '^step' $T/write_error.out | tail -1 | awk '{print $2}' | cut -d/ -f1)
if [ -e $T/we/ckpt/latest ] || [ -z "$last" ] || [ "$last" -lt 4 ] || [ "$last" -gt 6 ]; then
    bad write_error_boundary "expected the run to stop after step 4..6 with no latest; last step line: ${last:-none}"
else
    ok write_error_boundary "the run stopped after step $last (the failed save was step 4's), no latest"
fi

echo "ckpt_async: $pass passed, $fail failed"
[ $fail -eq 0 ]
