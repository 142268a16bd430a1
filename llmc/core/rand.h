// A small deterministic RNG (xorshift64*), identical on every platform, for
// parameter init, data shuffling and sampling. std:: distributions are not
// specified bit-for-bit across library versions, so we do not use them.
#pragma once
#include <cmath>
#include <cstdint>

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

// Fisher-Yates shuffle of an index array
template <typename T>
static inline void rng_shuffle(Rng* r, T* a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_u32(r) % i;
        T t = a[i - 1]; a[i - 1] = a[j]; a[j] = t;
    }
}
