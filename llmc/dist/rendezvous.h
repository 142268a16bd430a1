/*
Process-group setup without CUDA or NCCL types: which process this is (rank,
world size, local rank) from the launch environment, and broadcasting an
opaque byte blob (in practice the 128-byte ncclUniqueId) from rank 0 to all
other ranks, over TCP or through a shared file. dev/DISTRIBUTED.md has the
whole design; with MPI the id goes through MPI_Bcast instead.

Launch environment, first match wins:
  torchrun style  WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE
  Open MPI        OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE
  Slurm (srun)    SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID
  none of them    one process: world 1, rank 0
plus MASTER_ADDR / MASTER_PORT (rank 0's address and a free port) for the TCP
rendezvous. Every bad value ends the program with one line naming the variable.

TCP rendezvous (rendezvous_broadcast_tcp): rank 0 listens on
MASTER_ADDR:MASTER_PORT (bound to that address; to any address only when it
is not one of this machine's), accepts world-1 connections, checks each one's
hello (magic, rank, world, blob length; a duplicate rank or a different world
size fails both sides), sends every rank the blob and then waits for each
rank's one-byte acknowledgement, so a return from it on rank 0 means every
rank has the blob. The other ranks connect with retries (rank 0 may start
later) until the deadline. Every socket is non-blocking and every wait is a
poll() bounded by one deadline (now + timeout_s), so no call can hang longer
than the timeout; every error is one line naming the rank, the address and
the cause.

File rendezvous (rendezvous_broadcast_file): rank 0 writes PATH atomically
(PATH.tmp.<pid>, fsync, rename), the others poll for it, read it and create
PATH.ack.<rank>; rank 0 waits for all acknowledgements and then removes PATH
and the ack files. PATH must be on a file system all ranks see and should be
unique per launch (e.g. contain the job id): rank 0 refuses a PATH that
already exists (left by a crashed run), since the other ranks could have read
the stale id.
*/
#pragma once
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>  // utils.h uses clock_gettime
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <vector>
#include "../core/utils.h"

// ---------------------------------------------------------------- launch environment

struct LaunchEnv {
    int world = 1, rank = 0;
    int local_rank = -1;        // -1: not given by the launcher
    int local_world = -1;       // -1: not given
    std::string master_addr;    // empty: not set
    int master_port = 0;        // 0: not set
    std::string source = "none";  // which variables were used
    std::string world_var = "WORLD_SIZE", rank_var = "RANK", local_rank_var = "LOCAL_RANK";
};

// An integer environment variable in [lo, hi]; fails with one line naming it.
static inline long long env_int_in_range(const char* name, const char* value, long long lo, long long hi, const char* what) {
    std::string label = std::string("environment variable ") + name;
    long long v = parse_int_or_fail(value, label.c_str());
    if (v < lo || v > hi) fail("environment variable %s: %s, got %lld", name, what, v);
    return v;
}

// Reads and validates the launch environment. need_master: a multi-process run
// that passes the NCCL id over TCP (no MPI, no rendezvous file), so MASTER_ADDR
// and MASTER_PORT are required when the world has more than one process.
static inline LaunchEnv launch_env_read(bool need_master) {
    LaunchEnv e;
    struct Names { const char *world, *rank, *local_rank, *local_world, *source; };
    const Names sets[3] = {
        {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "torchrun"},
        {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "Open MPI"},
        {"SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", nullptr, "Slurm"},
    };
    const Names* used = nullptr;
    for (const Names& s : sets) {
        // Slurm sets SLURM_NTASKS in any allocation; only srun's tasks have SLURM_PROCID
        const bool present = (s.local_world == nullptr) ? getenv(s.rank) != nullptr
                                                        : (getenv(s.world) != nullptr || getenv(s.rank) != nullptr);
        if (present) { used = &s; break; }
    }
    if (used) {
        const char* w = getenv(used->world);
        const char* r = getenv(used->rank);
        if (!w) fail("environment variable %s: not set, but %s=%s is (set both, or neither for one process)", used->world, used->rank, r);
        if (!r) fail("environment variable %s: not set, but %s=%s is (set both, or neither for one process)", used->rank, used->world, w);
        e.source = used->source;
        e.world_var = used->world; e.rank_var = used->rank; e.local_rank_var = used->local_rank;
        e.world = (int)env_int_in_range(used->world, w, 1, 1 << 20, "must be in [1, 1048576]");
        char what[96];
        snprintf(what, sizeof what, "must be in [0, %s=%d)", used->world, e.world);
        e.rank = (int)env_int_in_range(used->rank, r, 0, e.world - 1, what);
        if (used->local_world && getenv(used->local_world)) {
            snprintf(what, sizeof what, "must be in [1, %s=%d]", used->world, e.world);
            e.local_world = (int)env_int_in_range(used->local_world, getenv(used->local_world), 1, e.world, what);
        }
        if (const char* lr = getenv(used->local_rank)) {
            if (e.local_world > 0) snprintf(what, sizeof what, "must be in [0, %s=%d)", used->local_world, e.local_world);
            else snprintf(what, sizeof what, "must be in [0, %s=%d)", used->world, e.world);
            e.local_rank = (int)env_int_in_range(used->local_rank, lr, 0, (e.local_world > 0 ? e.local_world : e.world) - 1, what);
        }
    }
    if (const char* a = getenv("MASTER_ADDR")) {
        if (*a == '\0') fail("environment variable MASTER_ADDR: empty (rank 0's host name or IP address)");
        for (const char* p = a; *p; p++)
            if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '/')
                fail("environment variable MASTER_ADDR: '%s' is not a host name or IP address", a);
        e.master_addr = a;
    }
    if (const char* p = getenv("MASTER_PORT"))
        e.master_port = (int)env_int_in_range("MASTER_PORT", p, 1, 65535, "must be a TCP port in [1, 65535]");
    if (need_master && e.world > 1) {
        if (e.master_addr.empty())
            fail("environment variable MASTER_ADDR: not set; a run of %s=%d processes without MPI needs MASTER_ADDR and MASTER_PORT (rank 0's address and a free port)",
                 e.world_var.c_str(), e.world);
        if (e.master_port == 0)
            fail("environment variable MASTER_PORT: not set; a run of %s=%d processes without MPI needs MASTER_ADDR and MASTER_PORT (rank 0's address and a free port)",
                 e.world_var.c_str(), e.world);
    }
    return e;
}

// The GPU this process drives (one process per GPU): its local rank; without
// one, its rank when the whole world fits on this machine.
static inline int launch_env_device(const LaunchEnv& e, int device_count) {
    if (device_count <= 0) fail("rank %d: no GPU visible to this process (CUDA_VISIBLE_DEVICES?)", e.rank);
    int d = e.local_rank;
    if (d < 0) {
        if (e.world > device_count)
            fail("environment variable %s: not set, and %s=%d is more than this machine's %d GPUs; set it to the process's index on its machine",
                 e.local_rank_var.c_str(), e.world_var.c_str(), e.world, device_count);
        d = e.rank;
    }
    if (d >= device_count)
        fail("environment variable %s: %d, but this process sees only %d GPUs (one process per GPU; check CUDA_VISIBLE_DEVICES and the processes per node)",
             e.local_rank_var.c_str(), d, device_count);
    return d;
}

// ---------------------------------------------------------------- TCP rendezvous

static const uint32_t RENDEZVOUS_MAGIC = 0x4d475256u;  // "MGRV"
static const uint32_t RENDEZVOUS_VERSION = 1;

// milliseconds left until deadline (a wall_seconds() time), >= 0
static inline int rv_ms_left(double deadline) {
    double r = deadline - wall_seconds();
    if (r <= 0) return 0;
    return r > 3600 ? 3600000 : (int)(r * 1000) + 1;
}

static inline void rv_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static inline std::string rv_errno(const char* what) { return std::string(what) + " (" + strerror(errno) + ")"; }

static inline void rv_close(int fd) {
    if (fd >= 0) close(fd);
}

// Sends n bytes before the deadline on a non-blocking socket; "" or the error.
static inline std::string rv_send_all(int fd, const void* buf, size_t n, double deadline) {
    const char* p = (const char*)buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k > 0) { p += k; n -= (size_t)k; continue; }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ms = rv_ms_left(deadline);
            if (ms == 0) return "timed out while sending";
            struct pollfd pf = {fd, POLLOUT, 0};
            if (poll(&pf, 1, ms) < 0 && errno != EINTR) return rv_errno("poll failed");
            continue;
        }
        return rv_errno("send failed");
    }
    return "";
}

// Receives exactly n bytes before the deadline; "" or the error ("closed" when the peer closed).
static inline std::string rv_recv_all(int fd, void* buf, size_t n, double deadline) {
    char* p = (char*)buf;
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k > 0) { p += k; n -= (size_t)k; continue; }
        if (k == 0) return "closed";
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int ms = rv_ms_left(deadline);
            if (ms == 0) return "timed out";
            struct pollfd pf = {fd, POLLIN, 0};
            if (poll(&pf, 1, ms) < 0 && errno != EINTR) return rv_errno("poll failed");
            continue;
        }
        return rv_errno("recv failed");
    }
    return "";
}

static inline int rv_socket(int family) {
    return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

// addrinfo list for host:port; "" or the error.
static inline std::string rv_resolve(const std::string& host, int port, struct addrinfo** out) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host.c_str(), ps, &hints, out);
    if (rc != 0) return std::string("cannot resolve it (") + gai_strerror(rc) + ")";
    return "";
}

struct RendezvousHello { uint32_t magic, version, rank, world; uint64_t len; };
struct RendezvousReply { uint32_t magic, status, world, pad; uint64_t len; };
enum { RV_OK = 0, RV_BAD_WORLD = 1, RV_BAD_LEN = 2, RV_BAD_RANK = 3, RV_DUP_RANK = 4 };

// Rank 0's side; "" or the error (without the "rank 0: " prefix).
static inline std::string rv_tcp_serve(const void* blob, size_t len, int world, const std::string& addr, int port,
                                       double timeout_s, double deadline) {
    char where[320];
    snprintf(where, sizeof where, "MASTER_ADDR=%s:%d", addr.c_str(), port);
    struct addrinfo* ai = nullptr;
    std::string err = rv_resolve(addr, port, &ai);
    if (!err.empty()) return std::string("cannot listen on ") + where + ": " + err;
    int lfd = -1;
    std::string bind_err;
    // bind to MASTER_ADDR itself; to the wildcard address only when MASTER_ADDR is not this machine's
    for (int pass = 0; pass < 2 && lfd < 0; pass++) {
        for (struct addrinfo* a = ai; a && lfd < 0; a = a->ai_next) {
            int fd = rv_socket(a->ai_family);
            if (fd < 0) { bind_err = rv_errno("socket failed"); continue; }
            int one = 1;
            if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) { bind_err = rv_errno("setsockopt failed"); close(fd); continue; }
            struct sockaddr_storage ss;
            memcpy(&ss, a->ai_addr, a->ai_addrlen);
            if (pass == 1) {
                if (a->ai_family == AF_INET) ((struct sockaddr_in*)&ss)->sin_addr.s_addr = htonl(INADDR_ANY);
                else if (a->ai_family == AF_INET6) ((struct sockaddr_in6*)&ss)->sin6_addr = in6addr_any;
            }
            if (bind(fd, (struct sockaddr*)&ss, a->ai_addrlen) != 0) {
                const bool not_here = errno == EADDRNOTAVAIL;
                bind_err = rv_errno("bind failed");
                close(fd);
                if (pass == 0 && !not_here) { pass = 2; break; }  // e.g. port in use: the wildcard would not help
                continue;
            }
            if (listen(fd, world < SOMAXCONN ? world : SOMAXCONN) != 0) { bind_err = rv_errno("listen failed"); close(fd); continue; }
            lfd = fd;
        }
    }
    freeaddrinfo(ai);
    if (lfd < 0) return std::string("cannot listen on ") + where + ": " + bind_err + "; pick another MASTER_PORT";

    std::vector<int> fds(world, -1);
    int connected = 0;
    auto cleanup = [&]() { for (int fd : fds) rv_close(fd); rv_close(lfd); };
    while (connected < world - 1) {
        const int ms = rv_ms_left(deadline);
        if (ms == 0) {
            std::string missing;
            int shown = 0;
            for (int r = 1; r < world; r++)
                if (fds[r] < 0) { if (shown++ < 16) missing += (missing.empty() ? "" : ", ") + std::to_string(r); }
            if (shown > 16) missing += ", ...";
            char buf[512];
            snprintf(buf, sizeof buf, "only %d of the %d other ranks connected to %s within %g s (missing: %s)",
                     connected, world - 1, where, timeout_s, missing.c_str());
            cleanup();
            return buf;
        }
        struct pollfd pf = {lfd, POLLIN, 0};
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno != EINTR) { err = rv_errno("poll failed"); cleanup(); return err; }
        if (pr <= 0) continue;
        int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) continue;
            err = rv_errno("accept failed"); cleanup(); return err;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // latency only; failure is harmless
        // a connection has a few seconds to say who it is; a stray one is dropped
        RendezvousHello h;
        const double hello_deadline = std::min(deadline, wall_seconds() + 5.0);
        if (!rv_recv_all(cfd, &h, sizeof h, hello_deadline).empty() || h.magic != RENDEZVOUS_MAGIC || h.version != RENDEZVOUS_VERSION) {
            close(cfd);
            continue;
        }
        RendezvousReply rep = {RENDEZVOUS_MAGIC, RV_OK, (uint32_t)world, 0, (uint64_t)len};
        char buf[512];
        buf[0] = '\0';
        if (h.world != (uint32_t)world) {
            rep.status = RV_BAD_WORLD;
            snprintf(buf, sizeof buf, "rank %u connected with world size %u, but this rank has %d (all ranks must get the same WORLD_SIZE)", h.rank, h.world, world);
        } else if (h.len != (uint64_t)len) {
            rep.status = RV_BAD_LEN;
            snprintf(buf, sizeof buf, "rank %u expects a %llu-byte id, this rank sends %zu (different builds?)", h.rank, (unsigned long long)h.len, len);
        } else if (h.rank == 0 || h.rank >= (uint32_t)world) {
            rep.status = RV_BAD_RANK;
            snprintf(buf, sizeof buf, "a process connected as rank %u (must be in [1, %d); two processes with RANK=0?)", h.rank, world);
        } else if (fds[h.rank] >= 0) {
            rep.status = RV_DUP_RANK;
            snprintf(buf, sizeof buf, "two processes connected as rank %u (duplicate RANK)", h.rank);
        }
        if (rep.status != RV_OK) {
            rv_send_all(cfd, &rep, sizeof rep, std::min(deadline, wall_seconds() + 2.0));  // best effort: tell it why
            close(cfd);
            cleanup();
            return buf;
        }
        fds[h.rank] = cfd;
        connected++;
    }
    rv_close(lfd);
    lfd = -1;
    for (int r = 1; r < world; r++) {
        RendezvousReply rep = {RENDEZVOUS_MAGIC, RV_OK, (uint32_t)world, 0, (uint64_t)len};
        err = rv_send_all(fds[r], &rep, sizeof rep, deadline);
        if (err.empty()) err = rv_send_all(fds[r], blob, len, deadline);
        if (!err.empty()) { err = "sending the id to rank " + std::to_string(r) + " failed: " + err; cleanup(); return err; }
    }
    for (int r = 1; r < world; r++) {
        uint8_t ack = 0;
        err = rv_recv_all(fds[r], &ack, 1, deadline);
        if (err.empty() && ack != 1) err = "bad acknowledgement";
        if (!err.empty()) {
            char buf[256];
            snprintf(buf, sizeof buf, "rank %d did not confirm receiving the id within %g s (%s)", r, timeout_s,
                     err == "closed" ? "it closed the connection" : err.c_str());
            cleanup();
            return buf;
        }
    }
    cleanup();
    return "";
}

// A non-rank-0 side; "" or the error (without the "rank N: " prefix).
static inline std::string rv_tcp_join(void* blob, size_t len, int rank, int world, const std::string& addr, int port,
                                      double timeout_s, double deadline) {
    char where[320];
    snprintf(where, sizeof where, "MASTER_ADDR=%s:%d", addr.c_str(), port);
    std::string last_err = "no attempt";
    int fd = -1;
    while (fd < 0) {
        if (rv_ms_left(deadline) == 0) {
            char buf[512];
            snprintf(buf, sizeof buf, "could not reach %s within %g s (last error: %s; is rank 0 running?)", where, timeout_s, last_err.c_str());
            return buf;
        }
        struct addrinfo* ai = nullptr;
        std::string err = rv_resolve(addr, port, &ai);
        if (!err.empty()) {
            last_err = err;
        } else {
            for (struct addrinfo* a = ai; a && fd < 0; a = a->ai_next) {
                int s = rv_socket(a->ai_family);
                if (s < 0) { last_err = rv_errno("socket failed"); continue; }
                if (connect(s, a->ai_addr, a->ai_addrlen) != 0) {
                    if (errno != EINPROGRESS && errno != EINTR) { last_err = strerror(errno); close(s); continue; }
                    struct pollfd pf = {s, POLLOUT, 0};
                    int ms = rv_ms_left(deadline);
                    int pr = ms > 0 ? poll(&pf, 1, ms) : 0;
                    int soerr = 0;
                    socklen_t sl = sizeof soerr;
                    if (pr <= 0) { last_err = pr == 0 ? "connect timed out" : rv_errno("poll failed"); close(s); continue; }
                    if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) { last_err = rv_errno("getsockopt failed"); close(s); continue; }
                    if (soerr != 0) { last_err = strerror(soerr); close(s); continue; }
                }
                fd = s;
            }
            freeaddrinfo(ai);
        }
        if (fd < 0) rv_sleep_ms(std::min(100, rv_ms_left(deadline)));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    RendezvousHello h = {RENDEZVOUS_MAGIC, RENDEZVOUS_VERSION, (uint32_t)rank, (uint32_t)world, (uint64_t)len};
    std::string err = rv_send_all(fd, &h, sizeof h, deadline);
    if (!err.empty()) { close(fd); return std::string("connected to ") + where + " but could not send: " + err; }
    RendezvousReply rep;
    err = rv_recv_all(fd, &rep, sizeof rep, deadline);
    if (err.empty() && rep.magic != RENDEZVOUS_MAGIC) err = "not a mega.c rendezvous (another program on that port?)";
    if (err.empty() && rep.status != RV_OK) {
        char buf[256];
        if (rep.status == RV_BAD_WORLD) snprintf(buf, sizeof buf, "rank 0 has world size %u, this rank %d (all ranks must get the same WORLD_SIZE)", rep.world, world);
        else if (rep.status == RV_BAD_LEN) snprintf(buf, sizeof buf, "rank 0 sends a %llu-byte id, this rank expects %zu (different builds?)", (unsigned long long)rep.len, len);
        else if (rep.status == RV_DUP_RANK) snprintf(buf, sizeof buf, "another process already connected as rank %d (duplicate RANK)", rank);
        else snprintf(buf, sizeof buf, "rank 0 rejected rank %d (status %u)", rank, rep.status);
        close(fd);
        return buf;
    }
    if (err.empty()) err = rv_recv_all(fd, blob, len, deadline);
    if (!err.empty()) {
        close(fd);
        char buf[512];
        if (err == "closed") snprintf(buf, sizeof buf, "rank 0 at %s closed the connection before sending the id (rank 0 failed or timed out: see its log)", where);
        else if (err == "timed out") snprintf(buf, sizeof buf, "connected to %s but got no id from rank 0 within %g s (other ranks missing? see rank 0's log)", where, timeout_s);
        else snprintf(buf, sizeof buf, "receiving the id from %s failed: %s", where, err.c_str());
        return buf;
    }
    uint8_t ack = 1;
    err = rv_send_all(fd, &ack, 1, deadline);
    close(fd);
    if (!err.empty()) return std::string("could not confirm the id to rank 0: ") + err;
    return "";
}

// Copies rank 0's blob[0, len) into every rank's blob; returns when this rank
// has it (on rank 0: when every rank has confirmed it). Fails with one line
// ("rank 3: could not reach MASTER_ADDR=10.0.0.1:29500 within 60 s ...") on any
// error or when timeout_s passes.
static inline void rendezvous_broadcast_tcp(void* blob, size_t len, int rank, int world, const std::string& addr, int port,
                                            double timeout_s) {
    if (world < 1 || rank < 0 || rank >= world) fail("rendezvous: rank %d not in [0, world size %d)", rank, world);
    if (port < 1 || port > 65535) fail("rank %d: MASTER_PORT must be in [1, 65535], got %d", rank, port);
    if (!(timeout_s > 0)) fail("rank %d: rendezvous timeout must be > 0 s", rank);
    if (world == 1) return;
    const double deadline = wall_seconds() + timeout_s;
    std::string err = rank == 0 ? rv_tcp_serve(blob, len, world, addr, port, timeout_s, deadline)
                                : rv_tcp_join(blob, len, rank, world, addr, port, timeout_s, deadline);
    if (!err.empty()) fail("rank %d: %s", rank, err.c_str());
}

// ---------------------------------------------------------------- file rendezvous

static inline std::string rv_ack_path(const std::string& path, int r) { return path + ".ack." + std::to_string(r); }

// Same contract as rendezvous_broadcast_tcp, through a file on a shared file system.
static inline void rendezvous_broadcast_file(void* blob, size_t len, int rank, int world, const std::string& path,
                                             double timeout_s) {
    if (world < 1 || rank < 0 || rank >= world) fail("rendezvous: rank %d not in [0, world size %d)", rank, world);
    if (!(timeout_s > 0)) fail("rank %d: rendezvous timeout must be > 0 s", rank);
    if (path.empty()) fail("rank %d: rendezvous file path is empty", rank);
    if (world == 1) return;
    const double deadline = wall_seconds() + timeout_s;
    const uint64_t head[3] = {((uint64_t)RENDEZVOUS_VERSION << 32) | RENDEZVOUS_MAGIC, (uint64_t)world, (uint64_t)len};
    if (rank == 0) {
        if (file_exists(path))
            fail("rank 0: rendezvous file %s already exists (left by an earlier run?); remove it or use a path unique to this launch", path.c_str());
        for (int r = 1; r < world; r++) unlink(rv_ack_path(path, r).c_str());  // stale ones; missing is fine
        const std::string tmp = path + ".tmp." + std::to_string((long long)getpid());
        FILE* f = fopen(tmp.c_str(), "wb");
        if (!f) fail("rank 0: cannot create rendezvous file %s (%s)", tmp.c_str(), strerror(errno));
        if (fwrite(head, sizeof head, 1, f) != 1 || (len > 0 && fwrite(blob, len, 1, f) != 1) || fflush(f) != 0 || fsync(fileno(f)) != 0) {
            int e = errno;
            fclose(f);
            unlink(tmp.c_str());
            fail("rank 0: cannot write rendezvous file %s (%s)", tmp.c_str(), strerror(e));
        }
        if (fclose(f) != 0) { int e = errno; unlink(tmp.c_str()); fail("rank 0: cannot write rendezvous file %s (%s)", tmp.c_str(), strerror(e)); }
        if (rename(tmp.c_str(), path.c_str()) != 0) { int e = errno; unlink(tmp.c_str()); fail("rank 0: cannot rename %s to %s (%s)", tmp.c_str(), path.c_str(), strerror(e)); }
        std::vector<bool> acked(world, false);
        int n_acked = 0;
        while (n_acked < world - 1) {
            for (int r = 1; r < world; r++)
                if (!acked[r] && file_exists(rv_ack_path(path, r))) { acked[r] = true; n_acked++; }
            if (n_acked == world - 1) break;
            if (rv_ms_left(deadline) == 0) {
                std::string missing;
                int shown = 0;
                for (int r = 1; r < world; r++)
                    if (!acked[r]) { if (shown++ < 16) missing += (missing.empty() ? "" : ", ") + std::to_string(r); }
                if (shown > 16) missing += ", ...";
                unlink(path.c_str());
                for (int r = 1; r < world; r++) unlink(rv_ack_path(path, r).c_str());
                fail("rank 0: only %d of the %d other ranks read rendezvous file %s within %g s (missing: %s)", n_acked, world - 1,
                     path.c_str(), timeout_s, missing.c_str());
            }
            rv_sleep_ms(std::min(50, rv_ms_left(deadline)));
        }
        if (unlink(path.c_str()) != 0) fail("rank 0: cannot remove rendezvous file %s (%s)", path.c_str(), strerror(errno));
        for (int r = 1; r < world; r++) unlink(rv_ack_path(path, r).c_str());
        return;
    }
    FILE* f = nullptr;
    while (!(f = fopen(path.c_str(), "rb"))) {
        if (errno != ENOENT) fail("rank %d: cannot open rendezvous file %s (%s)", rank, path.c_str(), strerror(errno));
        if (rv_ms_left(deadline) == 0)
            fail("rank %d: rendezvous file %s did not appear within %g s (is rank 0 running, and is the path on a file system all ranks share?)",
                 rank, path.c_str(), timeout_s);
        rv_sleep_ms(std::min(50, rv_ms_left(deadline)));
    }
    uint64_t got[3];
    if (fread(got, sizeof got, 1, f) != 1 || got[0] != head[0]) { fclose(f); fail("rank %d: %s is not a mega.c rendezvous file", rank, path.c_str()); }
    if (got[1] != head[1]) { fclose(f); fail("rank %d: rendezvous file %s is for world size %llu, this rank has %d", rank, path.c_str(), (unsigned long long)got[1], world); }
    if (got[2] != head[2]) { fclose(f); fail("rank %d: rendezvous file %s holds a %llu-byte id, this rank expects %zu", rank, path.c_str(), (unsigned long long)got[2], len); }
    if (len > 0 && fread(blob, len, 1, f) != 1) { fclose(f); fail("rank %d: rendezvous file %s is truncated", rank, path.c_str()); }
    fclose(f);
    const std::string ack = rv_ack_path(path, rank);
    int fd = open(ack.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("rank %d: cannot create %s (%s)", rank, ack.c_str(), strerror(errno));
    if (close(fd) != 0) fail("rank %d: cannot create %s (%s)", rank, ack.c_str(), strerror(errno));
}
