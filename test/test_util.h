// Shared by the CPU test programs: PASS/FAIL lines, and running this same
// binary in a child mode to check that bad input ends the program the way the
// project promises: exit code 1 (not a signal) and exactly one stderr line
// naming the file or flag.
#pragma once
#include <fcntl.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include "../llmc/core/utils.h"

static int n_failed = 0;
// where a child's stderr is kept; each test sets it to a file under its own test/tmp/ folder
static std::string child_err_path = "test/tmp/child.err";

static void check(bool ok, const std::string& name, const std::string& detail) {
    if (ok) printf("PASS %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
    else { printf("FAIL %s: %s\n", name.c_str(), detail.c_str()); n_failed++; }
}

// Runs this binary with args in a child; returns its exit status and stderr.
struct Child { bool exited; int code; std::string err; };
static Child run_child(const std::vector<std::string>& args) {
    const std::string err_path = child_err_path;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) fail("fork failed (%s)", strerror(errno));
    if (pid == 0) {
        int fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_WRONLY);
        if (fd < 0 || nul < 0) _exit(127);
        dup2(fd, 2);
        dup2(nul, 1);
        std::vector<char*> argv;
        argv.push_back((char*)"child");
        for (const std::string& a : args) argv.push_back((char*)a.c_str());
        argv.push_back(nullptr);
        execv("/proc/self/exe", argv.data());
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) fail("waitpid failed (%s)", strerror(errno));
    Child c;
    c.exited = WIFEXITED(status);
    c.code = c.exited ? WEXITSTATUS(status) : -1;
    c.err = read_file_or_fail(err_path);
    return c;
}

// A bad input must exit 1 (not a signal) with exactly one stderr line containing `needle`.
static void check_fails_one_line(const std::string& name, const std::vector<std::string>& args, const std::string& needle) {
    Child c = run_child(args);
    size_t lines = 0;
    for (char ch : c.err) lines += ch == '\n';
    const bool ok = c.exited && c.code == 1 && lines == 1 && c.err.back() == '\n' && c.err.find(needle) != std::string::npos;
    std::string msg = c.err;
    if (!msg.empty() && msg.back() == '\n') msg.pop_back();
    char buf[160];
    snprintf(buf, sizeof buf, "exit %d, %zu stderr lines, expected exit 1 and one line containing '%s': ", c.code, lines, needle.c_str());
    check(ok, name, ok ? msg : buf + msg);
}
