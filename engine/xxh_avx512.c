/* xxh_avx512.c — XXH3-128 compiled with xxHash's own AVX512 code path, and
 * the chunk digest of tracing (XXH3-128 of one chunk plus the chunk's stats
 * lanes) with AVX-512 intrinsics.
 *
 * The XXH3 value does not depend on which vector path computes it (xxHash
 * guarantees one result for all of them); Debian's libxxhash is built for
 * baseline x86-64, so tracing, which hashes every tensor an op writes, calls
 * this copy when the CPU has AVX512F and AVX512DQ (trace.c picks it at run
 * time). The stats lanes follow the order trace.c documents (element i into
 * lane i mod 32, in double, increasing i within a lane): each square of a
 * float is exact in double, so the fused multiply-add here rounds exactly as
 * the scalar loop's multiply then add; max |x| per lane is vrangeps
 * (AVX512DQ: the larger magnitude, sign cleared), the scalar `a > m ? a : m`
 * for every non-NaN input (a NaN makes the sum NaN, and trace.c then reports
 * NaN whatever the lane holds). Not here: the chunking, the combination and
 * the lane tree (trace.c).
 */
#include "trace.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx512f,avx512dq")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX512
#include <xxhash.h>
#include <immintrin.h>
#include <math.h>

sb_hash128 sb_xxh3_128_avx512(const void *data, size_t n) {
    XXH128_hash_t h = XXH3_128bits(data, n);
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}

/* n floats into the 32 lanes; n is a multiple of 32 except at a tensor's end */
static void lanes_feed(double acc[32], float mx[32], const float *x, size_t n) {
    __m512d a0 = _mm512_loadu_pd(acc), a1 = _mm512_loadu_pd(acc + 8);
    __m512d a2 = _mm512_loadu_pd(acc + 16), a3 = _mm512_loadu_pd(acc + 24);
    __m512 m0 = _mm512_loadu_ps(mx), m1 = _mm512_loadu_ps(mx + 16);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d v0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        __m512d v1 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        __m512d v2 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16));
        __m512d v3 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24));
        a0 = _mm512_fmadd_pd(v0, v0, a0);
        a1 = _mm512_fmadd_pd(v1, v1, a1);
        a2 = _mm512_fmadd_pd(v2, v2, a2);
        a3 = _mm512_fmadd_pd(v3, v3, a3);
        /* vrangeps 0b1011: the larger magnitude, sign cleared: max(|x|, m) */
        m0 = _mm512_range_ps(_mm512_loadu_ps(x + i), m0, 0x0B);
        m1 = _mm512_range_ps(_mm512_loadu_ps(x + i + 16), m1, 0x0B);
    }
    _mm512_storeu_pd(acc, a0);
    _mm512_storeu_pd(acc + 8, a1);
    _mm512_storeu_pd(acc + 16, a2);
    _mm512_storeu_pd(acc + 24, a3);
    _mm512_storeu_ps(mx, m0);
    _mm512_storeu_ps(mx + 16, m1);
    for (int k = 0; i < n; i++, k++) { /* the tail: only at the tensor's end */
        double v = (double)x[i];
        float a = fabsf(x[i]);
        acc[k] += v * v;
        mx[k] = a > mx[k] ? a : mx[k];
    }
}

#define DIGEST_BLOCK 8192 /* bytes hashed, then measured while in L1; a multiple of 128 */

/* XXH3-128 of the n bytes at p; when acc is non-NULL, the n/4 floats are also
 * fed into the lanes (acc, mx: 32 each, added to), block by block right after
 * each block was hashed. */
sb_hash128 sb_xxh3_digest_avx512(const void *p, size_t n, double *acc, float *mx) {
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
typedef int sb_xxh_avx512_unused; /* ISO C wants at least one declaration */
#endif
