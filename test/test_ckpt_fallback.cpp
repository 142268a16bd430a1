/*
Tests of resuming from the newest checkpoint that verifies (llmc/train/checkpoint.h
ckpt_verify, ckpt_choose_resume; llmc/train/run_control.h ckpt_start_or_fail, what
the trainers call before the GPU is touched), on checkpoints written by the real
writer (ckpt_save) into test/tmp/ckpt_fallback/:
  - the newest corrupted in each way a disk or a person can (a flipped payload byte in
    model.bin or state.bin, a flipped header byte, a truncated file, a missing file,
    `latest` garbage, a directory, or naming a step that is not there): --resume 1
    takes the newest older checkpoint that verifies, with ONE warning line naming the
    failed file and what was wrong, and nothing is deleted
  - two corrupt in a row: both named, the third taken; all corrupt: one error line, exit 1
  - no `latest`: the newest that verifies, with a note; newer step directories than the
    one latest names (another branch of the run) are not taken
  - --resume-from a corrupt checkpoint: one error line, exit 1, no fallback
  - the trainers (./train_gpt, ./train_dit where built): --resume 1 takes the older checkpoint
    before the GPU is touched (so this runs without one)
  - retention after a fallback: a corrupt checkpoint is neither deleted nor counted
    among the kept ones; a save of its step moves it aside (.corrupt), never over it

  make test/test_ckpt_fallback && ./test/test_ckpt_fallback
  child modes:
    --start-resume DIR OUT        ckpt_start_or_fail with --ckpt-dir DIR --resume 1; the chosen directory into OUT
    --start-resume-from PATH      ckpt_start_or_fail with --resume-from PATH
*/
#include <algorithm>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/train/run_control.h"
#include "checkpoint_test_util.h"

static const std::string ROOT = "test/tmp/ckpt_fallback";

static std::string has(const std::vector<int64_t>& v) {
    std::vector<long long> l(v.begin(), v.end());
    return join(l);
}

static void flip_byte(const std::string& path, long long at) {
    std::string b = read_file_or_fail(path);
    if (at < 0) at += (long long)b.size();
    b[(size_t)at] ^= 0x20;
    write_raw(path, b);
}

static void truncate_by(const std::string& path, long long n) {
    const std::string b = read_file_or_fail(path);
    write_raw(path, b.substr(0, b.size() - (size_t)n));
}

int main(int argc, char** argv) {
    child_err_path = ROOT + "/child.err";
    const CkptModelInfo info = gpt_ckpt_info(test_config(2));
    const size_t n = (size_t)info.n_params;
    const std::string mode = argc > 1 ? argv[1] : "";
    if (argc == 4 && mode == "--start-resume") {
        CkptFlags f;
        f.ckpt_dir = argv[2];
        f.resume = 1;
        const CkptStart s = ckpt_start_or_fail(f, info);
        write_raw(argv[3], s.resume_dir + "\n");
        return 0;
    }
    if (argc == 3 && mode == "--start-resume-from") {
        CkptFlags f;
        f.resume_from = argv[2];
        ckpt_start_or_fail(f, info);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--start-resume DIR OUT | --start-resume-from PATH]", argv[0]);
    rm_tree(ROOT);
    make_parent_dirs(ROOT + "/x");

    // a fresh DIR with checkpoints of steps 100, 200, 300 (latest 300), written by ckpt_save
    auto fresh = [&](const std::string& name) {
        const std::string d = ROOT + "/" + name;
        for (int s : {100, 200, 300}) ckpt_save_or_fail(make_write(d, s, info, make_arrays(n, s)));
        return d;
    };
    auto sd = [](const std::string& d, int step) { return d + "/" + ckpt_step_name(step); };
    // the choice for DIR: step chosen (-1 none), the warning must contain every needle, the corrupt steps
    auto expect_choice = [&](const std::string& name, const std::string& d, int want, const std::vector<std::string>& needles,
                             const std::string& corrupt) {
        CkptResumeChoice c;
        std::string err;
        const bool ok = ckpt_choose_resume(d, &c, &err);
        bool warn_ok = needles.empty() ? c.warning.empty() : c.warning.find('\n') == std::string::npos;
        for (const std::string& s : needles) warn_ok = warn_ok && c.warning.find(s) != std::string::npos;
        const bool dir_ok = want < 0 ? c.dir.empty() : c.dir == sd(d, want);
        check(ok && dir_ok && warn_ok && has(c.corrupt_steps) == corrupt, name,
              ok ? "resumes from " + (c.dir.empty() ? std::string("nothing") : c.dir) + " | corrupt: [" + has(c.corrupt_steps) + "] | " +
                       (c.warning.empty() ? "no warning" : "warning: " + c.warning)
                 : "error: " + err);
    };
    const std::string resuming200 = "resuming from ";

    // ---- all whole: latest, no warning
    {
        const std::string d = fresh("whole");
        expect_choice("all_whole", d, 300, {}, "");
        CkptResumeChoice c;
        std::string err;
        check(ckpt_choose_resume(ROOT + "/nothing", &c, &err) && c.dir.empty() && err.empty(), "no_dir", "no directory: nothing to resume, no error");
        make_parent_dirs(ROOT + "/empty/x");
        check(ckpt_choose_resume(ROOT + "/empty", &c, &err) && c.dir.empty() && err.empty(), "empty_dir", "an empty directory: nothing to resume, no error");
    }

    // ---- the newest corrupted, one way at a time: step 200 is taken, the warning names the file and the fault
    struct Corruption { const char* name; const char* file; int kind; const char* needle; };
    // kind: 0 flip a payload byte, 1 flip a header byte, 2 truncate, 3 delete
    const Corruption cases[] = {
        {"model_payload_flip", "model.bin", 0, "/model.bin: payload checksum: stored"},
        {"state_payload_flip", "state.bin", 0, "/state.bin: payload checksum: stored"},
        {"model_header_flip", "model.bin", 1, "/model.bin: header checksum: stored"},
        {"state_truncated", "state.bin", 2, "/state.bin: file length: n_params 6736 needs 54912 bytes, found 54910 (truncated)"},
        {"model_truncated_to_header", "model.bin", 4, "/model.bin: file is 100 bytes, shorter than the 1024-byte header (truncated)"},
        {"state_missing", "state.bin", 3, "/state.bin: cannot open (No such file or directory)"},
        {"model_missing", "model.bin", 3, "/model.bin: cannot open (No such file or directory)"},
    };
    for (const Corruption& k : cases) {
        const std::string d = fresh(k.name), f = sd(d, 300) + "/" + k.file;
        const std::string before = k.kind == 3 ? "" : read_file_or_fail(f);
        if (k.kind == 0) flip_byte(f, -5);
        if (k.kind == 1) flip_byte(f, 4 * 20);
        if (k.kind == 2) truncate_by(f, 2);
        if (k.kind == 3) unlink(f.c_str());
        if (k.kind == 4) write_raw(f, before.substr(0, 100));
        expect_choice(std::string("newest_") + k.name, d, 200, {sd(d, 300) + k.needle, resuming200 + sd(d, 200) + ", the newest older checkpoint that verifies"}, "300");
        const bool kept = k.kind == 3 ? file_exists(sd(d, 300) + "/" + (std::string(k.file) == "model.bin" ? "state.bin" : "model.bin"))
                                      : file_exists(f) && read_file_or_fail(f) != before;
        check(kept && ckpt_read_latest_name(d) == "step_00000300", std::string("nothing_deleted_") + k.name,
              "the corrupt checkpoint's files and latest are left as they were");
    }

    // ---- `latest` itself broken: the newest checkpoint that verifies, the warning names latest
    {
        const std::string d = fresh("latest_garbage");
        write_raw(d + "/latest", "../../etc/passwd\n");
        expect_choice("latest_garbage", d, 300, {d + "/latest: expected a checkpoint name like step_00000100, found '../../etc/passwd'",
                                                 resuming200 + sd(d, 300) + ", the newest checkpoint that verifies"}, "");
        flip_byte(sd(d, 300) + "/model.bin", -1);
        expect_choice("latest_garbage_and_newest_corrupt", d, 200, {d + "/latest: expected", "also " + sd(d, 300) + "/model.bin: payload checksum",
                                                                    resuming200 + sd(d, 200)}, "300");
        const std::string d2 = fresh("latest_dir");
        unlink((d2 + "/latest").c_str());
        make_parent_dirs(d2 + "/latest/x");
        expect_choice("latest_is_directory", d2, 300, {d2 + "/latest: not a regular file"}, "");
        const std::string d3 = fresh("latest_names_missing");
        write_raw(d3 + "/latest", "step_00000400\n");
        expect_choice("latest_names_missing_step", d3, 300, {sd(d3, 400) + "/model.bin: cannot open (No such file or directory)",
                                                              resuming200 + sd(d3, 300) + ", the newest older"}, "400");
        const std::string d4 = fresh("latest_long");
        write_raw(d4 + "/latest", std::string(100, 'x'));
        expect_choice("latest_too_long", d4, 300, {d4 + "/latest: expected one line naming a checkpoint (step_XXXXXXXX), found 100 bytes"}, "");
    }

    // ---- two corrupt in a row: both named in the one line; all corrupt: an error naming each
    {
        const std::string d = fresh("two_corrupt");
        flip_byte(sd(d, 300) + "/state.bin", 2000);
        flip_byte(sd(d, 200) + "/model.bin", 3000);
        expect_choice("two_newest_corrupt", d, 100, {sd(d, 300) + "/state.bin: payload checksum", "also " + sd(d, 200) + "/model.bin: payload checksum",
                                                     resuming200 + sd(d, 100)}, "300 200");
        flip_byte(sd(d, 100) + "/model.bin", 1100);
        CkptResumeChoice c;
        std::string err;
        const bool ok = ckpt_choose_resume(d, &c, &err);
        check(!ok && err.find(sd(d, 300) + "/state.bin: payload checksum") != std::string::npos &&
              err.find(sd(d, 100) + "/model.bin: payload checksum") != std::string::npos &&
              err.find("no checkpoint in " + d + " verifies (nothing was deleted)") != std::string::npos && err.find('\n') == std::string::npos,
              "all_corrupt_error", ok ? "resumed from " + c.dir : err);
        check_fails_one_line("all_corrupt_exits", {"--start-resume", d, ROOT + "/out.txt"}, "no checkpoint in " + d + " verifies");
        // a lone corrupt checkpoint after a crash pruned the rest (--ckpt-keep 1): an error, not a fresh start
        const std::string d1 = ROOT + "/lone";
        ckpt_save_or_fail(make_write(d1, 50, info, make_arrays(n, 50)));
        flip_byte(sd(d1, 50) + "/model.bin", -9);
        check_fails_one_line("lone_corrupt_exits", {"--start-resume", d1, ROOT + "/out.txt"}, sd(d1, 50) + "/model.bin: payload checksum");
    }

    // ---- no latest: the newest complete checkpoint that verifies, with a note; another branch is not taken
    {
        const std::string d = fresh("no_latest");
        unlink((d + "/latest").c_str());
        flip_byte(sd(d, 300) + "/model.bin", -3);
        CkptResumeChoice c;
        std::string err;
        const bool ok = ckpt_choose_resume(d, &c, &err);
        check(ok && c.dir == sd(d, 200) && c.note.find(d + "/latest is missing") != std::string::npos && c.warning.find(sd(d, 300) + "/model.bin") == 0,
              "no_latest_fallback", ok ? c.note + " | " + c.warning : err);
        const std::string b = fresh("branch");
        write_raw(b + "/latest", "step_00000200\n");
        expect_choice("newer_branch_not_taken", b, 200, {}, "");
        flip_byte(sd(b, 200) + "/state.bin", -2);
        expect_choice("newer_branch_not_taken_on_fallback", b, 100, {sd(b, 200) + "/state.bin", resuming200 + sd(b, 100)}, "200");
    }

    // ---- what the trainers run: one warning line on stderr, exit 0, the older checkpoint chosen;
    // --resume-from never falls back
    {
        const std::string d = fresh("trainer");
        flip_byte(sd(d, 300) + "/model.bin", 1024 + 17);
        const std::string out = ROOT + "/chosen.txt";
        Child c = run_child({"--start-resume", d, out});
        size_t lines = 0;
        for (char ch : c.err) lines += ch == '\n';
        check(c.exited && c.code == 0 && lines == 1 && c.err.rfind("warning: " + sd(d, 300) + "/model.bin: payload checksum", 0) == 0 &&
              file_exists(out) && read_file_or_fail(out) == sd(d, 200) + "\n", "start_resume_falls_back",
              "exit " + str(c.code) + ", stderr: " + c.err.substr(0, c.err.size() - (c.err.empty() ? 0 : 1)));
        check_fails_one_line("resume_from_corrupt", {"--start-resume-from", sd(d, 300)}, "flag --resume-from: " + sd(d, 300) + "/model.bin: payload checksum");
        check_fails_one_line("resume_from_corrupt_root", {"--start-resume-from", d}, "flag --resume-from: " + sd(d, 300) + "/model.bin: payload checksum");
        unlink((sd(d, 300) + "/state.bin").c_str());
        check_fails_one_line("resume_from_incomplete", {"--start-resume-from", sd(d, 300)}, "flag --resume-from: " + sd(d, 300) + "/state.bin is missing");
        Child g = run_child({"--start-resume-from", sd(d, 200)});
        check(g.exited && g.code == 0 && g.err.empty(), "resume_from_whole", "a whole checkpoint: exit 0, nothing on stderr");
    }

    // ---- the trainers choose before the GPU is touched (so this runs without one): --resume 1 on
    // checkpoints of another model warns once about the corrupt step 300, takes step 200, and then
    // stops with one line on step 200's model (a config or kind the trainer's model does not have)
    {
        const std::string d = fresh("trainers");
        flip_byte(sd(d, 300) + "/state.bin", -21);
        const std::string gpt = "--random-data 1 --steps 1 --log-dir ''";
        const std::string dit = "--random-data 1 --preset tiny --steps 1 --batch-size 1 --frames 2 --height 4 --width 4 --text-len 4 --log-dir ''";
        const struct { const char* bin; std::string flags, error; } runs[] = {
            {"./train_gpt", gpt, "error: " + sd(d, 200) + "/model.bin: config vocab_size is 100, the model has "},
            {"./train_dit", dit, "error: " + sd(d, 200) + "/model.bin: model kind is gpt (1), the model is dit (2)"},
        };
        for (const auto& r : runs) {
            const std::string name = std::string("trainer_") + (r.bin + 2) + "_falls_back";
            if (access(r.bin, X_OK) != 0) { printf("SKIP ckpt_fallback/%s: %s is not built\n", name.c_str(), r.bin); continue; }
            const std::string out = ROOT + "/" + (r.bin + 2) + ".out", err = ROOT + "/" + (r.bin + 2) + ".err";
            const std::string cmd = std::string(r.bin) + " " + r.flags + " --ckpt-dir " + d + " --resume 1 > " + out + " 2> " + err;
            const int st = system(cmd.c_str());
            const int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            const std::string e = read_file_or_fail(err);
            const size_t nl = e.find('\n');
            const std::string first = e.substr(0, nl), second = nl == std::string::npos ? "" : e.substr(nl + 1);
            check(code == 1 && first.rfind("warning: " + sd(d, 300) + "/state.bin: payload checksum", 0) == 0 &&
                  first.find("resuming from " + sd(d, 200) + ", the newest older checkpoint that verifies") != std::string::npos &&
                  second.rfind(r.error, 0) == 0 && std::count(second.begin(), second.end(), '\n') == 1, name,
                  "exit " + str(code) + ": " + first.substr(0, 200) + "... | " + second.substr(0, second.empty() ? 0 : second.size() - 1));
        }
    }

    // ---- retention after a fallback (--ckpt-keep): a corrupt checkpoint is neither deleted
    // nor counted among the kept, so it never pushes out the good ones
    {
        auto plan = [](const std::vector<CkptEntry>& e, int64_t latest, int k, const std::vector<int64_t>& bad) {
            std::vector<long long> r;
            for (int64_t s : ckpt_prune_plan(e, latest, k, 0, bad)) r.push_back(s);
            return join(r);
        };
        const std::vector<CkptEntry> e = {{100, true}, {200, true}, {300, true}};
        check(plan(e, 300, 2, {}) == "100" && plan(e, 300, 2, {200}).empty() && plan(e, 300, 1, {200}) == "100" && plan(e, 300, 1, {100, 200}).empty() &&
              plan(e, 300, 1, {300}) == "100 200",
              "prune_plan_skips_corrupt", "keep 2 of 100 200(corrupt) 300: delete none (not 100: 200 does not count); keep 1: delete 100, never 200; "
              "300 just written over a corrupt one counts as good");
        // on disk: 100 good, 200 corrupt (the fallback found it), 300 saved with keep 2
        const std::string d = ROOT + "/keep";
        for (int s : {100, 200}) ckpt_save_or_fail(make_write(d, s, info, make_arrays(n, s), 2));
        flip_byte(sd(d, 200) + "/model.bin", -7);
        const Arrays a300 = make_arrays(n, 300);   // the sources point into it: it must outlive the save
        CkptWrite w = make_write(d, 300, info, a300, 2);
        w.corrupt_steps = {200};
        ckpt_save_or_fail(w);
        std::string err;
        check(join(steps_in(d)) == "100 200 300" && ckpt_verify(sd(d, 100), &err) && !ckpt_verify(sd(d, 200), &err), "keep_counts_only_good",
              "--ckpt-keep 2 after a fallback: the good 100 and the new 300 kept, the corrupt 200 left: " + join(steps_in(d)));
        // a save of the corrupt step itself: the old one is moved aside, never written over
        const std::string d2 = fresh("resave");
        flip_byte(sd(d2, 300) + "/state.bin", -11);
        const std::string old_state = read_file_or_fail(sd(d2, 300) + "/state.bin");
        const Arrays a301 = make_arrays(n, 301);
        CkptWrite w2 = make_write(d2, 300, info, a301, 3);
        w2.corrupt_steps = {300};
        ckpt_save_or_fail(w2);
        Arrays got;
        const bool ok = load_all(sd(d2, 300), info, &got, nullptr, nullptr, &err);
        check(ok && same_bits(got.p, a301.p) && file_exists(sd(d2, 300) + ".corrupt/state.bin") &&
              read_file_or_fail(sd(d2, 300) + ".corrupt/state.bin") == old_state && join(steps_in(d2)) == "100 200 300",
              "resave_moves_corrupt_aside", ok ? "step_00000300 written anew, the corrupt one kept as step_00000300.corrupt" : err);
    }

    printf("%s\n", n_failed ? "some fallback tests FAILED" : "all fallback tests passed");
    return n_failed ? 1 : 0;
}
