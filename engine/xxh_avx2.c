/* xxh_avx2.c — XXH3-128 compiled with xxHash's own AVX2 code path, and
 * the chunk digest of tracing (XXH3-128 of one chunk plus the chunk's stats
 * lanes) with AVX2 intrinsics.
 *
 * The XXH3 value does not depend on which vector path computes it (xxHash
 * guarantees one result for all of them); Debian's libxxhash is built for
 * baseline x86-64, so tracing, which hashes every tensor an op writes, calls
 * this copy when the CPU has AVX2 but not AVX-512 (trace.c picks it at run
 * time). The stats lanes follow the order trace.c documents (element i into
 * lane i mod 32, in double, increasing i within a lane): each square of a
 * float is exact in double, and the vector multiply then add round as the
 * scalar loop's do; max is the scalar `a > m ? a : m` (vmaxps returns its
 * second operand unless the first is greater). Not here: the chunking, the
 * combination and the lane tree (trace.c).
 */
#include "trace.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>
#include <immintrin.h>
#include <math.h>

sb_hash128 sb_xxh3_128_avx2(const void *data, size_t n) {
    XXH128_hash_t h = XXH3_128bits(data, n);
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}

/* n floats into the 32 lanes; n is a multiple of 32 except at a tensor's end */
static void lanes_feed(double acc[32], float mx[32], const float *x, size_t n) {
    __m256d a[8];
    __m256 m[4];
    for (int k = 0; k < 8; k++) a[k] = _mm256_loadu_pd(acc + 4 * k);
    for (int k = 0; k < 4; k++) m[k] = _mm256_loadu_ps(mx + 8 * k);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 8; k++) {
            __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * k));
            a[k] = _mm256_add_pd(a[k], _mm256_mul_pd(v, v));
        }
        for (int k = 0; k < 4; k++)
            m[k] = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 8 * k), absmask), m[k]);
    }
    for (int k = 0; k < 8; k++) _mm256_storeu_pd(acc + 4 * k, a[k]);
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(mx + 8 * k, m[k]);
    for (int k = 0; i < n; i++, k++) { /* the tail: only at the tensor's end */
        double v = (double)x[i];
        float a1 = fabsf(x[i]);
        acc[k] += v * v;
        mx[k] = a1 > mx[k] ? a1 : mx[k];
    }
}

#define DIGEST_BLOCK 8192 /* bytes hashed, then measured while in L1; a multiple of 128 */

/* XXH3-128 of the n bytes at p; when acc is non-NULL, the n/4 floats are also
 * fed into the lanes (acc, mx: 32 each, added to), block by block right after
 * each block was hashed. */
sb_hash128 sb_xxh3_digest_avx2(const void *p, size_t n, double *acc, float *mx) {
    XXH128_hash_t h;
    if (!acc || n <= DIGEST_BLOCK) {
        h = XXH3_128bits(p, n);
        if (acc) lanes_feed(acc, mx, p, n / sizeof(float));
    } else {
        XXH3_state_t st;
        XXH3_128bits_reset(&st);
        const char *b = p;
        for (size_t off = 0; off < n; off += DIGEST_BLOCK) {
            size_t len = n - off < DIGEST_BLOCK ? n - off : DIGEST_BLOCK;
            XXH3_128bits_update(&st, b + off, len);
            lanes_feed(acc, mx, (const float *)(const void *)(b + off), len / sizeof(float));
        }
        h = XXH3_128bits_digest(&st);
    }
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}
#else
typedef int sb_xxh_avx2_unused; /* ISO C wants at least one declaration */
#endif
