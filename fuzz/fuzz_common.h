// Shared by the libFuzzer targets in fuzz/ (built by fuzz/run_fuzzers.sh with
// clang++ -fsanitize=fuzzer,address,undefined -DMEGA_FUZZ).
//
// - The parsers take paths, so every input is written to a file in a
//   per-process temporary directory (under $FUZZ_TMPDIR, else /tmp), removed
//   at exit.
// - With -DMEGA_FUZZ, fail() throws MegaFailure (llmc/core/utils.h) instead of
//   exit(1): a rejected input is the expected outcome and fuzz_run() catches
//   it. Any other exception (std::bad_alloc from a size taken on trust, ...)
//   escapes and aborts: a finding, like a crash, a sanitizer report, a leak or
//   a timeout.
// - A parser that fails halfway leaves its FILE* open (in the real program
//   exit(1) follows). To keep those from showing up as leaks (and running the
//   process out of descriptors), this header counts the streams that the
//   llmc headers open, through a macro on fopen/fclose, and fuzz_run() closes
//   whatever a rejected input left open. Include this header before any llmc
//   header.
#pragma once
#ifndef MEGA_FUZZ
#error "fuzz targets are built with -DMEGA_FUZZ (see fuzz/run_fuzzers.sh)"
#endif
// every system header the llmc headers use, before the fopen/fclose macros
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <glob.h>
#include <map>
#include <queue>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

static std::set<FILE*>& fuzz_open_files() {
    static std::set<FILE*>* s = new std::set<FILE*>;  // never freed: outlives every input
    return *s;
}
static inline FILE* fuzz_fopen(const char* path, const char* mode) {
    FILE* f = ::fopen(path, mode);
    if (f) fuzz_open_files().insert(f);
    return f;
}
static inline int fuzz_fclose(FILE* f) {
    fuzz_open_files().erase(f);
    return ::fclose(f);
}
#define fopen fuzz_fopen
#define fclose fuzz_fclose

#include "../llmc/core/utils.h"

// A hard check inside a target: a broken invariant is a finding (abort -> crash report).
#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static std::string& fuzz_dir_ref() {
    static std::string* d = new std::string;
    return *d;
}

static void fuzz_rm_rf(const std::string& p) {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        if (DIR* d = opendir(p.c_str())) {
            while (struct dirent* e = readdir(d)) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                fuzz_rm_rf(p + "/" + e->d_name);
            }
            closedir(d);
        }
        rmdir(p.c_str());
    } else {
        unlink(p.c_str());
    }
}

static void fuzz_cleanup() {
    if (!fuzz_dir_ref().empty()) fuzz_rm_rf(fuzz_dir_ref());
}

// This process's temporary directory (made on first use, removed at exit).
static const std::string& fuzz_dir() {
    std::string& d = fuzz_dir_ref();
    if (d.empty()) {
        const char* base = getenv("FUZZ_TMPDIR");
        std::string t = std::string(base && *base ? base : "/tmp") + "/mega_fuzz.XXXXXX";
        std::vector<char> buf(t.begin(), t.end());
        buf.push_back('\0');
        if (!mkdtemp(buf.data())) {
            fprintf(stderr, "fuzz: cannot create a temporary directory %s (%s)\n", t.c_str(), strerror(errno));
            abort();
        }
        d = buf.data();
        atexit(fuzz_cleanup);
    }
    return d;
}

// Writes bytes to fuzz_dir()/name (truncating) and returns the path.
static std::string fuzz_write(const std::string& name, const uint8_t* data, size_t size) {
    const std::string path = fuzz_dir() + "/" + name;
    FILE* f = ::fopen(path.c_str(), "wb");
    if (!f) { fprintf(stderr, "fuzz: cannot write %s (%s)\n", path.c_str(), strerror(errno)); abort(); }
    if (size && fwrite(data, 1, size, f) != size) { fprintf(stderr, "fuzz: write to %s failed\n", path.c_str()); abort(); }
    ::fclose(f);
    return path;
}

static void fuzz_mkdir(const std::string& p) {
    if (mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) { fprintf(stderr, "fuzz: cannot create %s (%s)\n", p.c_str(), strerror(errno)); abort(); }
}

// Runs one input: a MegaFailure (the parser rejected the input with its
// one-line error) is the normal outcome; the streams it left open are closed.
template <typename F>
static int fuzz_run(F body) {
    try {
        body();
    } catch (const MegaFailure&) {
    }
    for (FILE* f : fuzz_open_files()) ::fclose(f);
    fuzz_open_files().clear();
    return 0;
}
