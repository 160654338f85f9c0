/* philox.c — Philox4x32-10 counter-based RNG and named streams (DESIGN.md §4).
 *
 * The block function follows the published algorithm (Salmon, Moraes, Dror,
 * Shaw, SC'11) and is checked against the Random123 known-answer vectors in
 * tests/test_engine.c. Streams are counter subspaces: a stream never draws
 * from another's counters, so adding draws to one purpose cannot shift any
 * other purpose's numbers.
 *
 * Not here: any global generator, any OS entropy (the harness decides when a
 * stream is unseeded and passes a seed drawn from the OS).
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void sb_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) { /* key schedule: bump before every round but the first */
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* 64-bit FNV-1a over the purpose string, then the index's 8 bytes (LE). */
static uint64_t stream_hash(const char *purpose, uint64_t index) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)purpose; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    h ^= 0xff; /* separator: "ab"+idx never equals "a"+"b..." */
    h *= 0x100000001b3ull;
    for (int i = 0; i < 8; i++) {
        h ^= (index >> (8 * i)) & 0xff;
        h *= 0x100000001b3ull;
    }
    return h;
}

void sb_rng_init(sb_rng *r, uint64_t seed, const char *purpose, uint64_t index) {
    uint64_t h = stream_hash(purpose, index);
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = 0;
    r->ctr[2] = (uint32_t)h;
    r->ctr[3] = (uint32_t)(h >> 32);
    r->avail = 0;
}

uint32_t sb_rng_u32(sb_rng *r) {
    if (r->avail == 0) {
        sb_philox4x32_10(r->ctr, r->key, r->buf);
        /* 64-bit block counter in ctr[0..1] */
        if (++r->ctr[0] == 0) r->ctr[1]++;
        r->avail = 4;
    }
    return r->buf[4 - r->avail--];
}

float sb_rng_uniform(sb_rng *r) {
    return (float)(sb_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

double sb_rng_uniform_double(sb_rng *r) {
    uint64_t hi = sb_rng_u32(r) >> 5; /* 27 bits */
    uint64_t lo = sb_rng_u32(r) >> 6; /* 26 bits */
    return (double)((hi << 26) | lo) * (1.0 / 9007199254740992.0);
}

float sb_rng_normal(sb_rng *r) {
    /* Box–Muller in double, one output per pair (no cached second value, so a
     * stream's state is just its counter). u1 in (0, 1] avoids log(0). */
    double u1 = 1.0 - sb_rng_uniform_double(r);
    double u2 = sb_rng_uniform_double(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t sb_rng_below(sb_rng *r, uint32_t n) {
    SB_ASSERT(n >= 1);
    /* Lemire's multiply-and-reject: unbiased, usually one draw. */
    uint64_t m = (uint64_t)sb_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)sb_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
