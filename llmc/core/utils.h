// Host-side helpers shared by every program in mega.c: one-line fatal errors,
// checked file I/O, strict number parsing. No CUDA here, so CPU references and
// tests include it too.
#pragma once
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>
#include <sys/stat.h>
#include <unistd.h>  // fsync

#ifdef MEGA_FUZZ
#include <stdexcept>
// Fuzz builds only (fuzz/, -DMEGA_FUZZ): a libFuzzer target runs millions of
// inputs in one process, so a rejected input must not exit(1); fail() throws
// this instead, with the same one-line message, and the target catches it.
struct MegaFailure : std::runtime_error {
    explicit MegaFailure(const std::string& msg) : std::runtime_error(msg) {}
};
[[noreturn]] static inline void fail(const char* fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    throw MegaFailure(std::string("error: ") + buf);
}
#else
// Every bad input ends here: one line on stderr, naming what was wrong, exit 1.
[[noreturn]] static inline void fail(const char* fmt, ...) {
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}
#endif

// printf into a std::string (names of checks and table rows in the tests and dev/cuda)
static inline std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static inline std::string strf(const char* fmt, ...) {
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    return b;
}

static inline bool file_exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

static inline FILE* fopen_or_fail(const std::string& path, const char* mode) {
    FILE* f = fopen(path.c_str(), mode);
    if (!f) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
    return f;
}

static inline long file_size_or_fail(FILE* f, const std::string& path) {
    if (fseek(f, 0, SEEK_END) != 0) fail("%s: cannot seek (%s)", path.c_str(), strerror(errno));
    long n = ftell(f);
    if (n < 0) fail("%s: cannot tell size (%s)", path.c_str(), strerror(errno));
    if (fseek(f, 0, SEEK_SET) != 0) fail("%s: cannot seek (%s)", path.c_str(), strerror(errno));
    return n;
}

// Reads exactly n bytes or fails naming the file and the field being read.
static inline void fread_exact(void* dst, size_t n, FILE* f, const std::string& path, const char* field) {
    if (n == 0) return;
    size_t got = fread(dst, 1, n, f);
    if (got != n) fail("%s: truncated while reading %s (expected %zu bytes, got %zu)", path.c_str(), field, n, got);
}

static inline void fwrite_exact(const void* src, size_t n, FILE* f, const std::string& path) {
    if (n == 0) return;
    if (fwrite(src, 1, n, f) != n) fail("%s: write failed (%s)", path.c_str(), strerror(errno));
}

static inline void fclose_or_fail(FILE* f, const std::string& path) {
    if (fclose(f) != 0) fail("%s: close failed (%s)", path.c_str(), strerror(errno));
}

// Finishes an atomic write: flush, fsync, close the temporary file, then rename it
// over the final name, so a reader never sees a half-written file.
static inline void finish_atomic_write(FILE* f, const std::string& tmp, const std::string& path) {
    if (fflush(f) != 0) fail("%s: write failed (%s)", tmp.c_str(), strerror(errno));
    if (fsync(fileno(f)) != 0) fail("%s: fsync failed (%s)", tmp.c_str(), strerror(errno));
    fclose_or_fail(f, tmp);
    if (rename(tmp.c_str(), path.c_str()) != 0) fail("%s: rename from %s failed (%s)", path.c_str(), tmp.c_str(), strerror(errno));
}

// fopen() happily opens a directory, whose "size" is garbage: name the real problem
static inline void require_regular_file(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
    if (!S_ISREG(st.st_mode)) fail("%s: not a regular file", path.c_str());
}

// Whole-file read, for small inputs (tokenizer, text corpus).
static inline std::string read_file_or_fail(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) fail("%s: not a regular file", path.c_str());
    FILE* f = fopen_or_fail(path, "rb");
    long n = file_size_or_fail(f, path);
    std::string s((size_t)n, '\0');
    fread_exact(&s[0], (size_t)n, f, path, "contents");
    fclose_or_fail(f, path);
    return s;
}

// Strict parsing: the whole string must be a number, else one line naming the flag.
static inline long long parse_int_or_fail(const char* s, const char* what) {
    if (s == nullptr || *s == '\0') fail("%s: expected an integer, got an empty value", what);
    char* end = nullptr;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') fail("%s: expected an integer, got '%s'", what, s);
    return v;
}

static inline double parse_float_or_fail(const char* s, const char* what) {
    if (s == nullptr || *s == '\0') fail("%s: expected a number, got an empty value", what);
    char* end = nullptr;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || v != v) fail("%s: expected a number, got '%s'", what, s);
    return v;
}

static inline double wall_seconds() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Makes every missing directory of a path's parent ("a/b/c.bin" makes a/ and a/b/).
static inline void make_parent_dirs(const std::string& path) {
    for (size_t i = 1; i < path.size(); i++) {
        if (path[i] == '/') {
            std::string d = path.substr(0, i);
            if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) fail("%s: cannot create directory (%s)", d.c_str(), strerror(errno));
        }
    }
}
