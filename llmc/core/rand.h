// A small deterministic RNG (xorshift64*), identical on every platform, for
// parameter init, data shuffling and sampling. std:: distributions are not
// specified bit-for-bit across library versions, so we do not use them.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

struct Rng {
    uint64_t state;
};

static inline void rng_seed(Rng* r, uint64_t seed) {
    // splitmix64 of the seed so that small seeds still give well-mixed states
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    r->state = (z ^ (z >> 31)) | 1ull;
}

static inline uint32_t rng_u32(Rng* r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

// uniform in [0, 1)
static inline float rng_uniform(Rng* r) { return (rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

static inline float rng_normal(Rng* r) {
    // Box-Muller; u1 kept away from 0
    float u1 = ((rng_u32(r) >> 8) + 1) * (1.0f / 16777217.0f);
    float u2 = rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

// Jump-ahead: the state after n more rng_u32 calls. xorshift64*'s state update is linear over
// GF(2) (three shift-xors; the multiply only shapes the output), so n steps are the n-th power
// of its 64 x 64 bit matrix, applied by repeated squaring: 64^2 log2(n) word operations, not n
// steps. A matrix is its 64 columns, column j the image of bit j.
static inline uint64_t rng_bits_apply(const uint64_t* m, uint64_t s) {
    uint64_t r = 0;
    for (int j = 0; j < 64; j++)
        if ((s >> j) & 1) r ^= m[j];
    return r;
}
static inline void rng_jump(Rng* r, uint64_t n) {
    uint64_t m[64], sq[64];
    for (int j = 0; j < 64; j++) {   // one step
        uint64_t s = 1ull << j;
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        m[j] = s;
    }
    for (; n; n >>= 1) {
        if (n & 1) r->state = rng_bits_apply(m, r->state);
        for (int j = 0; j < 64; j++) sq[j] = rng_bits_apply(m, m[j]);   // m <- m m
        std::copy(sq, sq + 64, m);
    }
}

// x[k] = scale * rng_normal(r) for k < n, and r left where that loop would leave it: the same
// floats, but split over the host's threads, each starting from the state jumped 2 k0 draws
// ahead (rng_normal takes two). A parameter init of billions of values takes seconds, not
// minutes, and stays the one the sequential loop gave. threads: 0 for the host's count.
static inline void rng_fill_normal(float* x, size_t n, float scale, Rng* r, unsigned threads = 0) {
    const size_t min_per_thread = (size_t)1 << 22;
    const size_t hw = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
    const size_t nt = std::min(hw, std::max<size_t>(1, n / min_per_thread));
    if (nt <= 1) {
        for (size_t k = 0; k < n; k++) x[k] = scale * rng_normal(r);
        return;
    }
    const size_t per = (n + nt - 1) / nt;
    std::vector<std::thread> workers;
    for (size_t t = 0; t < nt && t * per < n; t++) {
        const size_t k0 = t * per, k1 = std::min(n, k0 + per);
        Rng rt = *r;
        rng_jump(&rt, 2 * (uint64_t)k0);
        auto part = [x, k0, k1, scale, rt]() mutable {
            for (size_t k = k0; k < k1; k++) x[k] = scale * rng_normal(&rt);
        };
        try {
            workers.emplace_back(part);
        } catch (const std::exception&) {   // no thread to be had: this part here, the same floats
            part();
        }
    }
    for (std::thread& w : workers) w.join();
    rng_jump(r, 2 * (uint64_t)n);
}

// Fisher-Yates shuffle of an index array
template <typename T>
static inline void rng_shuffle(Rng* r, T* a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_u32(r) % i;
        T t = a[i - 1]; a[i - 1] = a[j]; a[j] = t;
    }
}
