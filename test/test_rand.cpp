/*
Tests of llmc/core/rand.h's jump-ahead and threaded normal fill: rng_jump(n) lands where n
rng_u32 calls land, and rng_fill_normal gives bit for bit the floats (and the final state) of
the sequential rng_normal loop, at sizes below, at and across its per-thread split.

  make test/test_rand && ./test/test_rand
*/
#include <cstring>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/core/rand.h"

int main() {
    for (uint64_t seed : {1ull, 1234ull}) {
        for (uint64_t n : {0ull, 1ull, 2ull, 63ull, 64ull, 1000ull, 123457ull, 5000000ull}) {
            Rng a, b;
            rng_seed(&a, seed);
            rng_seed(&b, seed);
            for (uint64_t i = 0; i < n; i++) rng_u32(&a);
            rng_jump(&b, n);
            check(a.state == b.state, "rng_jump " + std::to_string(n) + " (seed " + std::to_string(seed) + ")",
                  "the state of " + std::to_string(n) + " rng_u32 calls");
        }
    }
    // sizes: one thread's worth, just above the split, several threads with a ragged last part
    for (size_t n : {(size_t)1000, ((size_t)1 << 22) * 2 + 1, ((size_t)1 << 22) * 7 + 12345}) {
        Rng a, b;
        rng_seed(&a, 7);
        rng_seed(&b, 7);
        rng_u32(&a);   // a state that is not the seed's
        rng_u32(&b);
        std::vector<float> seq(n);
        for (size_t k = 0; k < n; k++) seq[k] = 0.02f * rng_normal(&a);
        for (unsigned threads : {0u, 3u, 16u}) {   // the host's count, and splits this machine may not have
            Rng c = b;
            std::vector<float> par(n);
            rng_fill_normal(par.data(), n, 0.02f, &c, threads);
            const std::string nm = "rng_fill_normal n=" + std::to_string(n) + " threads " + (threads ? std::to_string(threads) : "auto");
            check(memcmp(seq.data(), par.data(), n * sizeof(float)) == 0, nm, "the sequential loop's floats, bit for bit");
            check(a.state == c.state, nm + " final state", "where the sequential loop leaves it");
        }
    }
    printf("%s\n", n_failed ? "FAIL: rand" : "rand: all passed");
    return n_failed ? 1 : 0;
}
