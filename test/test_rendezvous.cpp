/*
Tests of llmc/dist/rendezvous.h: the launch environment (torchrun, Open MPI and
Slurm variables; every bad value ends a child process with exit 1 and one
stderr line naming the variable) and the blob broadcast over TCP and through a
file, with fork()ed processes on 127.0.0.1 only (the port is found by binding
port 0 first). World 2, 4 and 8 get rank 0's 128-byte blob; a missing rank 0
(or another missing rank, or a duplicate rank) makes the others fail with one
line within the timeout. Every child has an alarm() so nothing can hang.

  make test/test_rendezvous && ./test/test_rendezvous
  child modes:  --env NEED_MASTER   launch_env_read(NEED_MASTER)
                --device COUNT      launch_env_device(launch_env_read(0), COUNT)
*/
#include <csignal>
#include <ctime>
#include <arpa/inet.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/dist/rendezvous.h"

static const std::string DIR = "test/tmp/rendezvous";
static const size_t BLOB = 128;  // sizeof(ncclUniqueId)

static std::string str(long long x) { return std::to_string(x); }

// A free TCP port on 127.0.0.1: bind port 0, read it back, close.
static int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket failed (%s)", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0) fail("bind 127.0.0.1:0 failed (%s)", strerror(errno));
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr*)&a, &len) != 0) fail("getsockname failed (%s)", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static std::vector<uint8_t> blob_pattern(uint64_t seed) {
    std::vector<uint8_t> b(BLOB);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < BLOB; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; b[i] = (uint8_t)x; }
    return b;
}

struct RankResult { int rank; bool exited; int code; double seconds; std::string err; };

// One process per entry of `ranks` (a rank may be left out or repeated); each
// runs the broadcast and exits 0 when its blob equals rank 0's, 3 when not, 1 on fail().
static std::vector<RankResult> run_group(const std::vector<int>& ranks, int world, bool tcp, int port, const std::string& path,
                                         double timeout_s, const std::string& tag, int rank0_delay_ms = 0) {
    const std::vector<uint8_t> want = blob_pattern((uint64_t)port * 31 + world);
    std::vector<pid_t> pids;
    std::vector<RankResult> res;
    const double t0 = wall_seconds();
    fflush(stdout);
    fflush(stderr);
    for (size_t i = 0; i < ranks.size(); i++) {
        const int r = ranks[i];
        const std::string err_path = DIR + "/" + tag + "." + str((long long)i) + ".err";
        pid_t pid = fork();
        if (pid < 0) fail("fork failed (%s)", strerror(errno));
        if (pid == 0) {
            alarm((unsigned)timeout_s + 10);  // a hung child dies by SIGALRM, which the parent reports
            int fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int nul = open("/dev/null", O_WRONLY);
            if (fd < 0 || nul < 0) _exit(127);
            dup2(fd, 2);
            dup2(nul, 1);
            std::vector<uint8_t> b = r == 0 ? want : std::vector<uint8_t>(BLOB, 0);
            if (r == 0 && rank0_delay_ms > 0) rv_sleep_ms(rank0_delay_ms);
            if (tcp) rendezvous_broadcast_tcp(b.data(), BLOB, r, world, "127.0.0.1", port, timeout_s);
            else rendezvous_broadcast_file(b.data(), BLOB, r, world, path, timeout_s);
            _exit(b == want ? 0 : 3);
        }
        pids.push_back(pid);
        res.push_back({r, false, -1, 0, err_path});
    }
    for (size_t done = 0; done < pids.size(); done++) {
        int status = 0;
        pid_t p = waitpid(-1, &status, 0);
        if (p < 0) fail("waitpid failed (%s)", strerror(errno));
        for (size_t i = 0; i < pids.size(); i++)
            if (pids[i] == p) {
                res[i].exited = WIFEXITED(status);
                res[i].code = res[i].exited ? WEXITSTATUS(status) : -WTERMSIG(status);
                res[i].seconds = wall_seconds() - t0;
            }
    }
    for (RankResult& r : res) r.err = read_file_or_fail(r.err);
    return res;
}

static size_t count_lines(const std::string& s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

static std::string one_line(std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

// every process exited 0 (same blob as rank 0) with nothing on stderr
static void check_all_ok(const std::vector<RankResult>& res, const std::string& name, const std::string& what) {
    std::string bad;
    double worst = 0;
    for (const RankResult& r : res) {
        worst = std::max(worst, r.seconds);
        if (!(r.exited && r.code == 0 && r.err.empty()))
            bad += " rank " + str(r.rank) + ": exit " + str(r.code) + " '" + one_line(r.err) + "'";
    }
    char t[64];
    snprintf(t, sizeof t, " (%.2f s)", worst);
    check(bad.empty(), name, bad.empty() ? what + t : bad);
}

// process i exited 1 with one stderr line containing needle, before max_s
static void check_failed(const RankResult& r, const std::string& name, const std::string& needle, double max_s) {
    const bool ok = r.exited && r.code == 1 && count_lines(r.err) == 1 && r.err.find(needle) != std::string::npos && r.seconds < max_s;
    char t[128];
    snprintf(t, sizeof t, "exit %d after %.2f s (want 1 within %.1f s), %zu lines: ", r.code, r.seconds, max_s, count_lines(r.err));
    check(ok, name, ok ? one_line(r.err) + " (" + std::to_string(r.seconds).substr(0, 4) + " s)" : t + one_line(r.err) + " [want '" + needle + "']");
}

static const char* ENV_VARS[] = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                 "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                 "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"};

// clears every launch variable, then sets "NAME=value" entries
static void set_env(const std::vector<std::string>& kv) {
    for (const char* v : ENV_VARS) unsetenv(v);
    for (const std::string& s : kv) {
        size_t eq = s.find('=');
        setenv(s.substr(0, eq).c_str(), s.substr(eq + 1).c_str(), 1);
    }
}

static void env_fails(const std::string& name, const std::vector<std::string>& kv, const std::string& needle,
                      const std::vector<std::string>& mode = {"--env", "1"}) {
    set_env(kv);
    check_fails_one_line(name, mode, needle);
    set_env({});
}

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 3 && std::string(argv[1]) == "--env") {
        LaunchEnv e = launch_env_read(parse_int_or_fail(argv[2], "NEED_MASTER") != 0);
        printf("%d %d %d\n", e.world, e.rank, e.local_rank);
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--device") {
        printf("%d\n", launch_env_device(launch_env_read(false), (int)parse_int_or_fail(argv[2], "COUNT")));
        return 0;
    }
    if (argc != 1) fail("usage: %s [--env NEED_MASTER | --device COUNT]", argv[0]);
    make_parent_dirs(DIR + "/x");
    const double t_start = wall_seconds();

    // ---- launch environment: good values, each launcher's variables
    {
        set_env({});
        LaunchEnv e = launch_env_read(true);
        check(e.world == 1 && e.rank == 0 && e.local_rank == -1 && e.source == "none", "env_none", "no variables: one process (MASTER_* not needed)");
        set_env({"WORLD_SIZE=8", "RANK=5", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=4", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29500"});
        e = launch_env_read(true);
        check(e.world == 8 && e.rank == 5 && e.local_rank == 1 && e.local_world == 4 && e.master_addr == "127.0.0.1" && e.master_port == 29500,
              "env_torchrun", "WORLD_SIZE=8 RANK=5 LOCAL_RANK=1 LOCAL_WORLD_SIZE=4 MASTER_ADDR MASTER_PORT");
        set_env({"OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_LOCAL_RANK=3"});
        e = launch_env_read(false);
        check(e.world == 4 && e.rank == 3 && e.local_rank == 3 && e.source == "Open MPI", "env_openmpi", "OMPI_COMM_WORLD_* fallback");
        set_env({"SLURM_NTASKS=16", "SLURM_PROCID=9", "SLURM_LOCALID=1"});
        e = launch_env_read(false);
        check(e.world == 16 && e.rank == 9 && e.local_rank == 1 && e.source == "Slurm", "env_slurm", "SLURM_NTASKS/PROCID/LOCALID fallback");
        set_env({"SLURM_NTASKS=16"});
        e = launch_env_read(false);
        check(e.world == 1 && e.source == "none", "env_slurm_allocation", "SLURM_NTASKS without SLURM_PROCID (not under srun): one process");
        set_env({"WORLD_SIZE=2", "RANK=1", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_RANK=3"});
        e = launch_env_read(false);
        check(e.world == 2 && e.rank == 1, "env_precedence", "WORLD_SIZE/RANK win over OMPI_COMM_WORLD_*");
        set_env({"WORLD_SIZE=8", "RANK=6"});
        check(launch_env_device(launch_env_read(false), 8) == 6, "device_from_rank", "no LOCAL_RANK, world fits this machine: device = rank");
        set_env({"WORLD_SIZE=16", "RANK=13", "LOCAL_RANK=5"});
        check(launch_env_device(launch_env_read(false), 8) == 5, "device_from_local_rank", "device = LOCAL_RANK");
        set_env({});
    }
    // ---- launch environment: bad values end a child with one line naming the variable
    env_fails("env_rank_ge_world", {"WORLD_SIZE=4", "RANK=4"}, "environment variable RANK: must be in [0, WORLD_SIZE=4), got 4");
    env_fails("env_rank_negative", {"WORLD_SIZE=4", "RANK=-1"}, "environment variable RANK: must be in [0, WORLD_SIZE=4)");
    env_fails("env_world_non_numeric", {"WORLD_SIZE=four", "RANK=0"}, "environment variable WORLD_SIZE: expected an integer, got 'four'");
    env_fails("env_rank_non_numeric", {"WORLD_SIZE=4", "RANK=1x"}, "environment variable RANK: expected an integer, got '1x'");
    env_fails("env_rank_empty", {"WORLD_SIZE=4", "RANK="}, "environment variable RANK: expected an integer, got an empty value");
    env_fails("env_world_zero", {"WORLD_SIZE=0", "RANK=0"}, "environment variable WORLD_SIZE: must be in [1, 1048576], got 0");
    env_fails("env_world_overflow", {"WORLD_SIZE=99999999999999999999", "RANK=0"}, "environment variable WORLD_SIZE: expected an integer");
    env_fails("env_rank_without_world", {"RANK=1"}, "environment variable WORLD_SIZE: not set, but RANK=1 is");
    env_fails("env_world_without_rank", {"WORLD_SIZE=2"}, "environment variable RANK: not set, but WORLD_SIZE=2 is");
    env_fails("env_missing_master_port", {"WORLD_SIZE=2", "RANK=1", "MASTER_ADDR=127.0.0.1"}, "environment variable MASTER_PORT: not set");
    env_fails("env_missing_master_addr", {"WORLD_SIZE=2", "RANK=1", "MASTER_PORT=29500"}, "environment variable MASTER_ADDR: not set");
    env_fails("env_master_port_range", {"WORLD_SIZE=2", "RANK=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=70000"},
              "environment variable MASTER_PORT: must be a TCP port in [1, 65535], got 70000");
    env_fails("env_master_port_non_numeric", {"MASTER_PORT=http"}, "environment variable MASTER_PORT: expected an integer, got 'http'");
    env_fails("env_master_addr_empty", {"MASTER_ADDR="}, "environment variable MASTER_ADDR: empty");
    env_fails("env_local_rank_range", {"WORLD_SIZE=8", "RANK=0", "LOCAL_RANK=4", "LOCAL_WORLD_SIZE=4"},
              "environment variable LOCAL_RANK: must be in [0, LOCAL_WORLD_SIZE=4), got 4");
    env_fails("env_ompi_rank_range", {"OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_RANK=2"},
              "environment variable OMPI_COMM_WORLD_RANK: must be in [0, OMPI_COMM_WORLD_SIZE=2), got 2");
    env_fails("env_slurm_non_numeric", {"SLURM_NTASKS=2(x3)", "SLURM_PROCID=0"}, "environment variable SLURM_NTASKS: expected an integer, got '2(x3)'");
    env_fails("device_local_rank_too_big", {"WORLD_SIZE=16", "RANK=9", "LOCAL_RANK=9"},
              "environment variable LOCAL_RANK: 9, but this process sees only 8 GPUs", {"--device", "8"});
    env_fails("device_no_local_rank_multinode", {"WORLD_SIZE=16", "RANK=9"},
              "environment variable LOCAL_RANK: not set, and WORLD_SIZE=16 is more than this machine's 8 GPUs", {"--device", "8"});
    env_fails("device_none", {}, "no GPU visible", {"--device", "0"});

    // ---- TCP broadcast: every rank gets rank 0's blob
    for (int world : {2, 4, 8}) {
        std::vector<int> ranks;
        for (int r = world - 1; r >= 0; r--) ranks.push_back(r);  // rank 0 forked last
        const int port = free_port();
        check_all_ok(run_group(ranks, world, true, port, "", 10, "tcp" + str(world), world == 4 ? 300 : 0),
                     "tcp_world_" + str(world), str(world) + " processes on 127.0.0.1:" + str(port) + " got rank 0's 128 bytes" +
                     (world == 4 ? ", rank 0 started 0.3 s late" : ""));
    }
    {
        std::vector<int> ranks = {0};
        check_all_ok(run_group(ranks, 1, true, free_port(), "", 10, "tcp1"), "tcp_world_1", "world 1: returns at once");
    }
    // ---- TCP: rank 0 missing; the others fail within the timeout, naming the address
    {
        const int port = free_port();
        std::vector<RankResult> res = run_group({1, 2, 3}, 4, true, port, "", 2, "tcp_no0");
        for (const RankResult& r : res)
            check_failed(r, "tcp_missing_rank0_rank" + str(r.rank),
                         "rank " + str(r.rank) + ": could not reach MASTER_ADDR=127.0.0.1:" + str(port) + " within 2 s", 3.0);
    }
    // ---- TCP: rank 2 missing; rank 0 names it, rank 1 learns that rank 0 gave up
    {
        std::vector<RankResult> res = run_group({0, 1}, 3, true, free_port(), "", 1, "tcp_no2");
        check_failed(res[0], "tcp_missing_rank2_rank0", "rank 0: only 1 of the 2 other ranks connected to MASTER_ADDR=127.0.0.1:", 2.0);
        check(res[0].err.find("(missing: 2)") != std::string::npos, "tcp_missing_rank2_named", one_line(res[0].err));
        check_failed(res[1], "tcp_missing_rank2_rank1", "rank 1: ", 2.0);
    }
    // ---- TCP: two processes claim rank 1; rank 0 and the second one fail
    {
        std::vector<RankResult> res = run_group({0, 1, 1}, 3, true, free_port(), "", 2, "tcp_dup");
        check_failed(res[0], "tcp_duplicate_rank_rank0", "rank 0: two processes connected as rank 1 (duplicate RANK)", 3.0);
        const int a = res[1].code == 1 && res[1].err.find("duplicate") != std::string::npos;
        const int b = res[2].code == 1 && res[2].err.find("duplicate") != std::string::npos;
        check(a + b >= 1 && res[1].code == 1 && res[2].code == 1, "tcp_duplicate_rank_others",
              "both rank-1 processes exit 1, one names the duplicate: '" + one_line(a ? res[1].err : res[2].err) + "'");
    }
    // ---- TCP: a world size that differs between ranks
    {
        const int port = free_port();
        // rank 0 and rank 1 in one group would share `world`; run rank 1 with world 3 against a world-2 rank 0 by hand
        const std::vector<uint8_t> want = blob_pattern(7);
        fflush(stdout);
        pid_t p0 = fork();
        if (p0 == 0) {
            alarm(10);
            int fd = open((DIR + "/tcp_world0.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 2);
            std::vector<uint8_t> b = want;
            rendezvous_broadcast_tcp(b.data(), BLOB, 0, 2, "127.0.0.1", port, 2);
            _exit(0);
        }
        pid_t p1 = fork();
        if (p1 == 0) {
            alarm(10);
            int fd = open((DIR + "/tcp_world1.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 2);
            std::vector<uint8_t> b(BLOB, 0);
            rendezvous_broadcast_tcp(b.data(), BLOB, 1, 3, "127.0.0.1", port, 2);
            _exit(0);
        }
        int s0 = 0, s1 = 0;
        waitpid(p0, &s0, 0);
        waitpid(p1, &s1, 0);
        std::string e0 = read_file_or_fail(DIR + "/tcp_world0.err"), e1 = read_file_or_fail(DIR + "/tcp_world1.err");
        check(WIFEXITED(s0) && WEXITSTATUS(s0) == 1 && count_lines(e0) == 1 && e0.find("rank 1 connected with world size 3, but this rank has 2") != std::string::npos,
              "tcp_world_mismatch_rank0", one_line(e0));
        check(WIFEXITED(s1) && WEXITSTATUS(s1) == 1 && count_lines(e1) == 1 && e1.find("rank 1: rank 0 has world size 2, this rank 3") != std::string::npos,
              "tcp_world_mismatch_rank1", one_line(e1));
    }
    // ---- TCP: the port is taken
    {
        const int port = free_port();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        if (fd < 0 || bind(fd, (struct sockaddr*)&a, sizeof a) != 0 || listen(fd, 1) != 0) fail("cannot occupy port %d (%s)", port, strerror(errno));
        std::vector<RankResult> res = run_group({0}, 2, true, port, "", 2, "tcp_busy");
        close(fd);
        check_failed(res[0], "tcp_port_in_use", "rank 0: cannot listen on MASTER_ADDR=127.0.0.1:" + str(port) + ": bind failed (Address already in use)", 1.0);
    }

    // ---- file broadcast
    {
        const std::string path = DIR + "/ncclid_w4";
        for (int r = 0; r < 4; r++) unlink((r == 0 ? path : rv_ack_path(path, r)).c_str());
        check_all_ok(run_group({3, 2, 1, 0}, 4, false, 4321, path, 10, "file4", 200), "file_world_4", "4 processes read rank 0's 128 bytes from " + path);
        bool left = file_exists(path);
        for (int r = 1; r < 4; r++) left = left || file_exists(rv_ack_path(path, r));
        check(!left, "file_cleaned_up", "rank 0 removed the file and the acknowledgements");
    }
    {
        const std::string path = DIR + "/ncclid_no0";
        unlink(path.c_str());
        std::vector<RankResult> res = run_group({1, 2}, 3, false, 0, path, 1, "file_no0");
        for (const RankResult& r : res)
            check_failed(r, "file_missing_rank0_rank" + str(r.rank), "rank " + str(r.rank) + ": rendezvous file " + path + " did not appear within 1 s", 2.0);
    }
    {
        const std::string path = DIR + "/ncclid_no2";
        unlink(path.c_str());
        std::vector<RankResult> res = run_group({0, 1}, 3, false, 0, path, 1, "file_no2");
        check_failed(res[0], "file_missing_rank2", "rank 0: only 1 of the 2 other ranks read rendezvous file " + path + " within 1 s (missing: 2)", 2.0);
        check(!file_exists(path), "file_missing_rank2_cleaned", "rank 0 removed the file after giving up");
    }
    {
        const std::string path = DIR + "/ncclid_stale";
        FILE* f = fopen_or_fail(path, "wb");
        fclose_or_fail(f, path);
        std::vector<RankResult> res = run_group({0}, 2, false, 0, path, 1, "file_stale");
        check_failed(res[0], "file_stale_refused", "rank 0: rendezvous file " + path + " already exists", 1.0);
        unlink(path.c_str());
    }

    const double secs = wall_seconds() - t_start;
    check(secs < 10, "total_time", std::to_string(secs).substr(0, 4) + " s");
    printf("%s\n", n_failed == 0 ? "all rendezvous tests passed" : "SOME RENDEZVOUS TESTS FAILED");
    return n_failed == 0 ? 0 : 1;
}
