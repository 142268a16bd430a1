/*
Tests of checkpoints written in the background (llmc/train/checkpoint_async.h, what
the trainers do with --ckpt-async 1, their default), on host buffers standing in for
the pinned copy of the GPU's state, in test/tmp/ckpt_background/:
  same_bytes      a background save writes exactly the bytes of a save in the loop's
                  thread (model.bin, state.bin with an extra array, latest)
  in_flight       while a save is in flight (its source held on a gate): the previous
                  `latest` stands and loads, the new step has no files under their final
                  names, a second save is refused, poll does not collect; once let go,
                  poll collects it and `latest` names it; never two writing at once
  error           a write that fails (its step directory is a file) comes back as one
                  line naming the file; `latest` and the previous checkpoint unchanged
  kill            kill -9 at random moments of a child that trains and saves in the
                  background back to back (as the trainers do: collect the previous save,
                  copy into the host buffer, start the next): `latest` always loads whole
                  with exactly its step's contents

  make test/test_ckpt_background && ./test/test_ckpt_background
  child mode:
    --bg-save-loop DIR   save steps latest+1, +2, ... into DIR in the background until killed (keep the last 2)
*/
#include <atomic>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/train/checkpoint_async.h"
#include "checkpoint_test_util.h"

static const std::string ROOT = "test/tmp/ckpt_background";

int main(int argc, char** argv) {
    child_err_path = ROOT + "/child.err";
    const std::string mode = argc > 1 ? argv[1] : "";
    if (argc == 3 && mode == "--bg-save-loop") {
        // a training run that saves after every step: the state changes every step (kill_arrays);
        // the host buffer is written only once the save reading it has been collected
        const CkptModelInfo info = gpt_ckpt_info(kill_test_config());
        const size_t n = (size_t)info.n_params;
        std::string sd, err;
        int64_t step = ckpt_find_latest(argv[2], &sd, &err) ? ckpt_parse_step_name(sd.substr(sd.rfind('/') + 1)) : 0;
        Arrays host = make_arrays(n, 0);
        CkptAsyncWriter writer;
        for (;;) {
            step++;
            const Arrays device = kill_arrays(n, step);
            const CkptAsyncResult prev = ckpt_async_wait(&writer);
            if (!prev.ok) fail("%s", prev.err.c_str());
            memcpy(host.p.data(), device.p.data(), n * sizeof(float));
            memcpy(host.m.data(), device.m.data(), n * sizeof(float));
            memcpy(host.v.data(), device.v.data(), n * sizeof(float));
            if (!ckpt_async_start(&writer, make_write(argv[2], step, info, host, 2, 0))) fail("a save was refused");
        }
    }
    if (argc != 1) fail("usage: %s [--bg-save-loop DIR]", argv[0]);
    rm_tree(ROOT);
    make_parent_dirs(ROOT + "/x");
    const CkptModelInfo info = gpt_ckpt_info(kill_test_config());
    const size_t n = (size_t)info.n_params;

    // ---- same bytes as a save in the loop's thread (float32 model, moments, an extra array: a DiT's EMA)
    {
        const Arrays a = make_arrays(n, 7);
        const std::string ds = ROOT + "/sync", da = ROOT + "/async";
        ckpt_save_or_fail(make_write(ds, 10, info, a, 0, 0, CKPT_F32, true));
        CkptAsyncWriter w;
        const bool started = ckpt_async_start(&w, make_write(da, 10, info, a, 0, 0, CKPT_F32, true));
        const CkptAsyncResult r = ckpt_async_wait(&w);
        bool same = started && r.ok && r.step == 10 && r.dir == da + "/step_00000010";
        for (const char* f : {"model.bin", "state.bin"})
            same = same && read_file_or_fail(ds + "/step_00000010/" + f) == read_file_or_fail(da + "/step_00000010/" + f);
        same = same && read_file_or_fail(ds + "/latest") == read_file_or_fail(da + "/latest");
        check(same, "same_bytes", same ? "model.bin (" + str(file_len(da + "/step_00000010/model.bin")) + " bytes), state.bin (" +
                                             str(file_len(da + "/step_00000010/state.bin")) + " bytes) and latest byte-identical to a synchronous save"
                                       : "differ: " + r.err);
    }

    // ---- one save in flight, held on a gate inside its first source
    const std::string d = ROOT + "/flight";
    const Arrays a10 = make_arrays(n, 10), a20 = make_arrays(n, 20);
    ckpt_save_or_fail(make_write(d, 10, info, a10, 3));
    CkptAsyncWriter w;
    {
        std::atomic<bool> gate{false}, entered{false};
        CkptWrite cw = make_write(d, 20, info, a20, 3);
        const CkptSource params = cw.params;
        cw.params = [&gate, &entered, params](size_t off, size_t cnt, float* dst) {
            entered.store(true);
            while (!gate.load()) usleep(1000);
            params(off, cnt, dst);
        };
        const bool started = ckpt_async_start(&w, cw);
        for (int i = 0; i < 5000 && !entered.load(); i++) usleep(1000);
        CkptAsyncResult r;
        const bool polled = ckpt_async_poll(&w, &r);
        const bool refused = !ckpt_async_start(&w, make_write(d, 21, info, a20, 3));
        Arrays got;
        std::string err, sd;
        const bool prev_ok = ckpt_find_latest(d, &sd, &err) && sd == d + "/step_00000010" && load_all(sd, info, &got, nullptr, nullptr, &err) &&
                             same_bits(got.p, a10.p);
        const bool no_final = !file_exists(d + "/step_00000020/model.bin") && !file_exists(d + "/step_00000020/state.bin");
        check(started && entered.load() && ckpt_async_busy(&w) && !polled && refused && prev_ok && no_final, "in_flight_previous_stands",
              "a save in flight: busy, not collected by poll, a second start refused; latest still names step_00000010, which loads; no "
              "step_00000020/model.bin or state.bin yet" + (err.empty() ? "" : ": " + err));
        gate.store(true);
        bool collected = false;
        for (int i = 0; i < 10000 && !(collected = ckpt_async_poll(&w, &r)); i++) usleep(1000);
        const bool loads = collected && r.ok && ckpt_find_latest(d, &sd, &err) && sd == d + "/step_00000020" &&
                           load_all(sd, info, &got, nullptr, nullptr, &err) && same_bits(got.p, a20.p);
        check(loads && !ckpt_async_busy(&w), "in_flight_collected", loads ? "let go: poll collected step 20 (written in " + str((long long)(r.write_s * 1000)) +
                                                                     " ms), latest names it and it loads" : "poll " + str(collected) + ": " + r.err + err);
    }
    {
        // the trainers' pattern, 6 saves back to back: collect, then start; never two writing at once
        std::vector<Arrays> states;
        for (int s = 30; s < 36; s++) states.push_back(make_arrays(n, s));
        bool all_ok = true;
        for (int s = 30; s < 36; s++) {
            const CkptAsyncResult r = ckpt_async_wait(&w);
            all_ok = all_ok && r.ok;
            all_ok = all_ok && ckpt_async_start(&w, make_write(d, s, info, states[s - 30], 3));
        }
        const CkptAsyncResult r = ckpt_async_wait(&w);
        check(all_ok && r.ok && w.most_writing.load() == 1 && ckpt_read_latest_name(d) == "step_00000035" && join(steps_in(d)) == "33 34 35",
              "at_most_one_in_flight", "7 background saves of one writer: at most " + str(w.most_writing.load()) + " writing at once; latest step_00000035, kept " +
                                           join(steps_in(d)));
    }

    // ---- a write that fails: one line naming the file, latest and the previous checkpoint untouched
    {
        write_raw(d + "/step_00000040", "a file where the step directory goes\n");
        const Arrays a40 = make_arrays(n, 40);
        ckpt_async_start(&w, make_write(d, 40, info, a40, 3));
        const CkptAsyncResult r = ckpt_async_wait(&w);
        Arrays got;
        std::string err;
        const bool prev = load_all(d + "/step_00000035", info, &got, nullptr, nullptr, &err);
        check(!r.ok && r.err == d + "/step_00000040/model.bin.tmp: cannot create (Not a directory); " + d + "/latest still names step_00000035" &&
              ckpt_read_latest_name(d) == "step_00000035" && prev, "error_one_line", r.ok ? "the save succeeded" : r.err);
    }

    // ---- kill -9 while a background save of the step before is being written
    check_kill_during_saves("kill_during_background_saves", ROOT + "/kill", "--bg-save-loop", 12);

    printf("%s\n", n_failed ? "some background checkpoint tests FAILED" : "all background checkpoint tests passed");
    return n_failed ? 1 : 0;
}
