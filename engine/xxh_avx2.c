/* xxh_avx2.c — XXH3-128 compiled with xxHash's own AVX2 code path, and
 * the chunk digest of tracing (XXH3-128 of one chunk plus the chunk's stats
 * lanes) with AVX2 intrinsics.
 *
 * The XXH3 value does not depend on which vector path computes it (xxHash
 * guarantees one result for all of them); Debian's libxxhash is built for
 * baseline x86-64, so tracing, which hashes every tensor an op writes, calls
 * this copy when the CPU has AVX2 but not AVX-512 (trace.c picks it at run
 * time; it needs FMA too). The stats lanes follow the order trace.c documents
 * (per block of SB_STAT_BLOCK floats, element i into float lane i mod 64, one
 * fused multiply-add per element, as the scalar loop's fmaf; the block's
 * lane sums then go to double through sb_stats_block_finish); max is the
 * scalar `a > m ? a : m` (vmaxps returns its second operand unless the first
 * is greater). Not here: the chunking, the combination and the lane tree
 * (trace.c).
 */
#include "trace.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,fma")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>
#include <immintrin.h>
#include <math.h>

sb_hash128 sb_xxh3_128_avx2(const void *data, size_t n) {
    XXH128_hash_t h = XXH3_128bits(data, n);
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}

/* A block's 64 float lane sums s into acc, in double, when all are finite
 * (returns 1); else nothing (returns 0: the caller re-sums the block in
 * double): sb_stats_block_finish in vectors. s - s is 0 exactly when s is
 * finite. */
static int block_to_double(double acc[SB_STAT_LANES], const float *s) {
    __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int k = 0; k < SB_STAT_LANES; k += 8) {
        __m256 v = _mm256_loadu_ps(s + k);
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_EQ_OQ));
    }
    if (_mm256_movemask_ps(ok) != 0xFF) return 0;
    for (int k = 0; k < SB_STAT_LANES; k += 4)
        _mm256_storeu_pd(acc + k, _mm256_add_pd(_mm256_loadu_pd(acc + k),
                                                _mm256_cvtps_pd(_mm_loadu_ps(s + k))));
    return 1;
}

/* The n floats of one chunk into the lanes, block by block (trace.c's
 * order): eight 8-float accumulators are the 64 float lanes of a block,
 * element i of the block in lane i mod 64; the block's tail (shorter than
 * 64, only at a tensor's end) goes through the same fmaf per lane. max |x|
 * is order-free, so two accumulators (mx[0..15]) take every full group and
 * mx[16] the tail. */
static void lanes_feed(double acc[SB_STAT_LANES], float mx[SB_STAT_LANES], const float *x,
                       size_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_loadu_ps(mx), m1 = _mm256_loadu_ps(mx + 8);
    for (size_t b = 0; b < n; b += SB_STAT_BLOCK) {
        size_t len = n - b < SB_STAT_BLOCK ? n - b : SB_STAT_BLOCK;
        const float *xb = x + b;
        __m256 a[8];
        for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 64 <= len; i += 64)
            for (int k = 0; k < 8; k += 2) {
                __m256 v0 = _mm256_loadu_ps(xb + i + 8 * k), v1 = _mm256_loadu_ps(xb + i + 8 * k + 8);
                a[k] = _mm256_fmadd_ps(v0, v0, a[k]);
                a[k + 1] = _mm256_fmadd_ps(v1, v1, a[k + 1]);
                m0 = _mm256_max_ps(_mm256_and_ps(v0, absmask), m0);
                m1 = _mm256_max_ps(_mm256_and_ps(v1, absmask), m1);
            }
        float s[SB_STAT_LANES];
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(s + 8 * k, a[k]);
        for (int k = 0; i < len; i++, k++) { /* the tail: only at a tensor's end */
            float v = xb[i], av = fabsf(v);
            s[k] = fmaf(v, v, s[k]);
            mx[16] = av > mx[16] ? av : mx[16];
        }
        if (!block_to_double(acc, s)) sb_stats_block_double(acc, xb, len);
    }
    _mm256_storeu_ps(mx, m0);
    _mm256_storeu_ps(mx + 8, m1);
}

/* XXH3-128 of the n bytes at p (a chunk: at most SB_HASH_CHUNK); when acc is
 * non-NULL, the n/4 floats are also fed into the lanes (acc, mx: 64 each,
 * added to) in a second pass. One call per chunk is faster than hashing it
 * block by block through XXH3's streaming state with the stats in between
 * (measured on 64 KiB: 4.1 us against 4.9; the chunk is read back from L2). */
sb_hash128 sb_xxh3_digest_avx2(const void *p, size_t n, double *acc, float *mx) {
    XXH128_hash_t h = XXH3_128bits(p, n);
    if (acc) lanes_feed(acc, mx, p, n / sizeof(float));
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}
/* trace.c's lane tree (half = 32, 16, ..., 1: lane k += lane k + half), four
 * doubles to a vector, lane by lane the same additions. The max lanes hold
 * no NaN (vmaxps keeps m when x is NaN), so their reduction order does not
 * matter. */
static void lanes_tree(const double *acc, const float *mx, double *sumsq, float *maxabs) {
    __m256d d[16];
    for (int k = 0; k < 16; k++) d[k] = _mm256_load_pd(acc + 4 * k);
    for (int half = 8; half >= 1; half /= 2) /* lanes 4k.. += lanes 4(k + half).. */
        for (int k = 0; k < half; k++) d[k] = _mm256_add_pd(d[k], d[k + half]);
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(d[0]), _mm256_extractf128_pd(d[0], 1));
    *sumsq = _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
    __m256 m = _mm256_max_ps(_mm256_load_ps(mx), _mm256_load_ps(mx + 8));
    for (int k = 16; k < SB_STAT_LANES; k += 8) m = _mm256_max_ps(_mm256_load_ps(mx + k), m);
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    r = _mm_max_ps(_mm_movehl_ps(r, r), r);
    *maxabs = _mm_cvtss_f32(_mm_max_ss(_mm_shuffle_ps(r, r, 1), r));
}

static void lanes_zero(double *acc, float *mx) {
    for (int k = 0; k < SB_STAT_LANES; k += 4) _mm256_store_pd(acc + k, _mm256_setzero_pd());
    for (int k = 0; k < SB_STAT_LANES; k += 8) _mm256_store_ps(mx + k, _mm256_setzero_ps());
}

SB_CHUNK_DIGEST(sb_xxh3_chunk_avx2, 32, lanes_zero, sb_xxh3_digest_avx2, lanes_tree)
#else
typedef int sb_xxh_avx2_unused; /* ISO C wants at least one declaration */
#endif
