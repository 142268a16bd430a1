// Command-line flags shared by the trainers: every flag is registered once with
// its type, a pointer to the value and a help line, so that parsing, validation
// and --help cannot drift apart. Unknown flags, missing values and non-numeric
// numbers fail with one line naming the flag.
#pragma once
#include <string>
#include <vector>
#include "utils.h"

struct ArgSpec {
    std::string name;   // "--n-layer"
    char type;          // 'i' int, 'l' int64, 'f' float, 's' string, 'b' bool flag (0/1 value)
    void* ptr;
    std::string help;
    std::string group;
};

struct ArgParser {
    std::string program, usage;
    std::vector<ArgSpec> specs;
    std::string group = "";
    void section(const std::string& g) { group = g; }
    void add_int(const char* n, int* p, const char* h) { specs.push_back({n, 'i', p, h, group}); }
    void add_int64(const char* n, long long* p, const char* h) { specs.push_back({n, 'l', p, h, group}); }
    void add_float(const char* n, float* p, const char* h) { specs.push_back({n, 'f', p, h, group}); }
    void add_string(const char* n, std::string* p, const char* h) { specs.push_back({n, 's', p, h, group}); }
    void add_bool(const char* n, int* p, const char* h) { specs.push_back({n, 'b', p, h, group}); }

    const ArgSpec* find(const std::string& n) const {
        for (const ArgSpec& s : specs) if (s.name == n) return &s;
        return nullptr;
    }
    std::string value_string(const ArgSpec& s) const {
        char buf[64];
        switch (s.type) {
            case 'i': case 'b': snprintf(buf, sizeof buf, "%d", *(int*)s.ptr); return buf;
            case 'l': snprintf(buf, sizeof buf, "%lld", *(long long*)s.ptr); return buf;
            case 'f': snprintf(buf, sizeof buf, "%g", *(float*)s.ptr); return buf;
            default: return "\"" + *(std::string*)s.ptr + "\"";
        }
    }
    void print_help() const {
        printf("usage: %s\n", usage.c_str());
        std::string g = "\x01";
        for (const ArgSpec& s : specs) {
            if (s.group != g) { g = s.group; printf("\n%s:\n", g.c_str()); }
            const char* meta = s.type == 's' ? "STR" : s.type == 'f' ? "X" : s.type == 'b' ? "0|1" : "N";
            std::string left = s.name + " " + meta;
            printf("  %-26s %s (default %s)\n", left.c_str(), s.help.c_str(), value_string(s).c_str());
        }
    }
    // Sets one flag from its string value; fails naming the flag on bad input.
    void set(const ArgSpec& s, const char* v) const {
        std::string what = "flag " + s.name;
        switch (s.type) {
            case 'i': {
                long long x = parse_int_or_fail(v, what.c_str());
                if (x < -2147483647LL || x > 2147483647LL) fail("%s: value %s out of range", what.c_str(), v);
                *(int*)s.ptr = (int)x; break;
            }
            case 'l': *(long long*)s.ptr = parse_int_or_fail(v, what.c_str()); break;
            case 'f': *(float*)s.ptr = (float)parse_float_or_fail(v, what.c_str()); break;
            case 'b': {
                long long x = parse_int_or_fail(v, what.c_str());
                if (x != 0 && x != 1) fail("%s: expected 0 or 1, got '%s'", what.c_str(), v);
                *(int*)s.ptr = (int)x; break;
            }
            default: *(std::string*)s.ptr = v;
        }
    }
    // Returns false if --help was asked for. Accepts "--flag value" and "--flag=value", and a
// bool flag alone (at the end, or before the next flag) as 1.
    bool parse(int argc, char** argv) const {
        for (int k = 1; k < argc; k++) {
            std::string a = argv[k];
            if (a == "-h" || a == "--help") return false;
            std::string name = a, val;
            bool has_val = false;
            size_t eq = a.find('=');
            if (a.rfind("--", 0) == 0 && eq != std::string::npos) { name = a.substr(0, eq); val = a.substr(eq + 1); has_val = true; }
            const ArgSpec* s = find(name);
            if (!s) fail("unknown flag '%s' (see %s --help)", a.c_str(), program.c_str());
            if (!has_val) {
                const bool bare = k + 1 >= argc || strncmp(argv[k + 1], "--", 2) == 0;
                if (bare && s->type == 'b') val = "1";   // a bool flag alone means 1 (--plan)
                else if (bare && k + 1 >= argc) fail("flag %s: missing value", name.c_str());
                else val = argv[++k];
            }
            set(*s, val.c_str());
        }
        return true;
    }
};

// A flag's value before the full parse (last one wins; "--flag value" or
// "--flag=value"; dflt where it is not given): the preset and the data decide
// defaults that the flags then override.
static std::string prescan_flag(int argc, char** argv, const char* name, const std::string& dflt) {
    std::string v = dflt;
    const size_t n = strlen(name);
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], name) == 0 && k + 1 < argc) v = argv[++k];
        else if (strncmp(argv[k], name, n) == 0 && argv[k][n] == '=') v = argv[k] + n + 1;
    }
    return v;
}
