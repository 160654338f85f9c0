/* xxh_avx512.c — XXH3-128 compiled with xxHash's own AVX512 code path, and
 * the chunk digest of tracing (XXH3-128 of one chunk plus the chunk's stats
 * lanes) with AVX-512 intrinsics.
 *
 * The XXH3 value does not depend on which vector path computes it (xxHash
 * guarantees one result for all of them); Debian's libxxhash is built for
 * baseline x86-64, so tracing, which hashes every tensor an op writes, calls
 * this copy when the CPU has AVX512F and AVX512DQ (trace.c picks it at run
 * time). The stats lanes follow the order trace.c documents (per block of
 * SB_STAT_BLOCK floats, element i into float lane i mod 64, one fused
 * multiply-add per element, as the scalar loop's fmaf; the block's lane sums
 * then go to double through sb_stats_block_finish); max |x| per lane is
 * vmaxps(|x|, m), which returns its second operand unless the first is
 * larger: the scalar `a > m ? a : m` for every input, NaN included (a NaN
 * also makes the sum NaN, and trace.c then reports NaN). vrangeps did the
 * same for non-NaN inputs; with vmaxps the digest of 64 KiB chunks went
 * from 32.6 to 36.7 GB/s here (AMD EPYC, Zen 4). Not here: the chunking,
 * the combination and the lane tree (trace.c).
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

/* A block's four lane-sum vectors into acc, in double, when all are finite
 * (returns 1); else nothing (returns 0: the caller re-sums the block in
 * double, sb_stats_block_double): sb_stats_block_finish in vectors. */
__attribute__((always_inline)) static inline int block_to_double(double acc[SB_STAT_LANES],
                                                                 __m512 s0, __m512 s1, __m512 s2,
                                                                 __m512 s3) {
    __mmask16 bad = _mm512_fpclass_ps_mask(s0, 0x99) | _mm512_fpclass_ps_mask(s1, 0x99) |
                    _mm512_fpclass_ps_mask(s2, 0x99) | _mm512_fpclass_ps_mask(s3, 0x99);
    if (bad) return 0; /* 0x99: NaN or infinite */
    const __m512 sv[4] = {s0, s1, s2, s3};
    for (int k = 0; k < 4; k++) {
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(sv[k]));
        __m512d hi = _mm512_cvtps_pd(
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sv[k]), 1)));
        _mm512_storeu_pd(acc + 16 * k, _mm512_add_pd(_mm512_loadu_pd(acc + 16 * k), lo));
        _mm512_storeu_pd(acc + 16 * k + 8, _mm512_add_pd(_mm512_loadu_pd(acc + 16 * k + 8), hi));
    }
    return 1;
}

/* The n floats of one chunk into the lanes, block by block (trace.c's
 * order): four 16-float accumulators are the 64 float lanes of a block,
 * element i of the block in lane i mod 64; the block's tail (shorter than
 * 64, only at a tensor's end) goes through the same fmaf per lane. */
static void lanes_feed(double acc[SB_STAT_LANES], float mx[SB_STAT_LANES], const float *x,
                       size_t n) {
    __m512 m0 = _mm512_loadu_ps(mx), m1 = _mm512_loadu_ps(mx + 16);
    __m512 m2 = _mm512_loadu_ps(mx + 32), m3 = _mm512_loadu_ps(mx + 48);
    for (size_t b = 0; b < n; b += SB_STAT_BLOCK) {
        size_t len = n - b < SB_STAT_BLOCK ? n - b : SB_STAT_BLOCK;
        const float *xb = x + b;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t i = 0;
        for (; i + 64 <= len; i += 64) {
            __m512 v0 = _mm512_loadu_ps(xb + i), v1 = _mm512_loadu_ps(xb + i + 16);
            __m512 v2 = _mm512_loadu_ps(xb + i + 32), v3 = _mm512_loadu_ps(xb + i + 48);
            s0 = _mm512_fmadd_ps(v0, v0, s0);
            s1 = _mm512_fmadd_ps(v1, v1, s1);
            s2 = _mm512_fmadd_ps(v2, v2, s2);
            s3 = _mm512_fmadd_ps(v3, v3, s3);
            m0 = _mm512_max_ps(_mm512_abs_ps(v0), m0);
            m1 = _mm512_max_ps(_mm512_abs_ps(v1), m1);
            m2 = _mm512_max_ps(_mm512_abs_ps(v2), m2);
            m3 = _mm512_max_ps(_mm512_abs_ps(v3), m3);
        }
        if (i < len) { /* the tail: only at a tensor's end */
            float s[SB_STAT_LANES];
            _mm512_storeu_ps(s, s0);
            _mm512_storeu_ps(s + 16, s1);
            _mm512_storeu_ps(s + 32, s2);
            _mm512_storeu_ps(s + 48, s3);
            _mm512_storeu_ps(mx, m0);
            _mm512_storeu_ps(mx + 16, m1);
            _mm512_storeu_ps(mx + 32, m2);
            _mm512_storeu_ps(mx + 48, m3);
            for (int k = 0; i < len; i++, k++) {
                float v = xb[i], a = fabsf(v);
                s[k] = fmaf(v, v, s[k]);
                mx[k] = a > mx[k] ? a : mx[k];
            }
            s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
            s2 = _mm512_loadu_ps(s + 32), s3 = _mm512_loadu_ps(s + 48);
            m0 = _mm512_loadu_ps(mx), m1 = _mm512_loadu_ps(mx + 16);
            m2 = _mm512_loadu_ps(mx + 32), m3 = _mm512_loadu_ps(mx + 48);
        }
        if (!block_to_double(acc, s0, s1, s2, s3)) sb_stats_block_double(acc, xb, len);
    }
    _mm512_storeu_ps(mx, m0);
    _mm512_storeu_ps(mx + 16, m1);
    _mm512_storeu_ps(mx + 32, m2);
    _mm512_storeu_ps(mx + 48, m3);
}

/* A whole chunk (SB_HASH_CHUNK bytes) in ONE pass: each 64-byte stripe is
 * loaded once, goes through XXH3's accumulate step and, as 16 floats, into
 * the stats lanes; the hash is XXH3_128bits's (its long-input loop with the
 * default secret, written out: 16-stripe blocks with a scramble after each
 * but the last, whose last stripe takes the secret at 192 - 64 - 7, then
 * the two merges), the lanes those of lanes_feed. Two passes cost the
 * integer work of the hash plus the float work of the stats and a second
 * read; here the two interleave: 36.7 -> 40.0 GB/s on 64 KiB chunks of a
 * 3 MiB buffer (both passes are bound by the vector pipes, not by memory:
 * the second pass over a chunk still in L1 was no faster). test_trace
 * checks the hash against XXH3_128bits and the lanes against plain C. */
_Static_assert(SB_HASH_CHUNK == 65536 && SB_STAT_BLOCK == 2048, "fused digest geometry");
#define FUSED_BLOCKS (SB_HASH_CHUNK / 1024) /* XXH3 blocks: 16 stripes of 64 bytes */

static sb_hash128 digest_chunk_fused(const void *p, double *acc, float *mx) {
    XXH_ALIGN(64) xxh_u64 xacc[XXH_ACC_NB] = XXH3_INIT_ACC;
    const xxh_u8 *const sec = XXH3_kSecret;
    XXH_STATIC_ASSERT(sizeof XXH3_kSecret == 192);
    const float *x = p;
    __m512 m[4];
    for (int j = 0; j < 4; j++) m[j] = _mm512_loadu_ps(mx + 16 * j);
    for (int b = 0; b < FUSED_BLOCKS; b += SB_STAT_BLOCK / 256) { /* 8 XXH3 blocks per stats block */
        __m512 sq[4];
        for (int j = 0; j < 4; j++) sq[j] = _mm512_setzero_ps();
        for (int xb = b; xb < b + SB_STAT_BLOCK / 256; xb++) {
            const float *xp = x + (size_t)xb * 256;
            const int last = xb == FUSED_BLOCKS - 1;
#pragma GCC unroll 1
            for (int st = 0; st < 16; st += 4) {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) { /* stripe st + j: floats into lanes 16j.. */
                    const xxh_u8 *k = sec + 8 * (st + j);
                    if (j == 3 && last && st == 12) k = sec + 192 - 64 - 7;
                    XXH3_accumulate_512_avx512(xacc, xp + 16 * (st + j), k);
                    __m512 v = _mm512_loadu_ps(xp + 16 * (st + j));
                    sq[j] = _mm512_fmadd_ps(v, v, sq[j]);
                    m[j] = _mm512_max_ps(_mm512_abs_ps(v), m[j]);
                }
            }
            if (!last) XXH3_scrambleAcc_avx512(xacc, sec + 192 - 64);
        }
        if (!block_to_double(acc, sq[0], sq[1], sq[2], sq[3]))
            sb_stats_block_double(acc, x + (size_t)b * 256, SB_STAT_BLOCK);
    }
    for (int j = 0; j < 4; j++) _mm512_storeu_ps(mx + 16 * j, m[j]);
    xxh_u64 lo = XXH3_mergeAccs(xacc, sec + 11, (xxh_u64)SB_HASH_CHUNK * XXH_PRIME64_1);
    xxh_u64 hi = XXH3_mergeAccs(xacc, sec + 192 - 64 - 11, ~((xxh_u64)SB_HASH_CHUNK * XXH_PRIME64_2));
    return (sb_hash128){.lo = lo, .hi = hi};
}

/* XXH3-128 of the n bytes at p (a chunk: at most SB_HASH_CHUNK); when acc is
 * non-NULL, the n/4 floats are also fed into the lanes (acc, mx: 64 each,
 * added to): a whole chunk in the same pass (digest_chunk_fused), a shorter
 * one (a tensor's last) in a second pass. */
sb_hash128 sb_xxh3_digest_avx512(const void *p, size_t n, double *acc, float *mx) {
    if (acc && n == SB_HASH_CHUNK) return digest_chunk_fused(p, acc, mx);
    XXH128_hash_t h = XXH3_128bits(p, n);
    if (acc) lanes_feed(acc, mx, p, n / sizeof(float));
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}

/* trace.c's lane tree (half = 32, 16, ..., 1: lane k += lane k + half, and
 * lane k = lane k + half if that is larger) in vectors: each lane sees the
 * same operations on the same operands, so the same bits. */
static void lanes_tree(const double *acc, const float *mx, double *sumsq, float *maxabs) {
    __m512d d0 = _mm512_add_pd(_mm512_load_pd(acc), _mm512_load_pd(acc + 32));
    __m512d d1 = _mm512_add_pd(_mm512_load_pd(acc + 8), _mm512_load_pd(acc + 40));
    __m512d d2 = _mm512_add_pd(_mm512_load_pd(acc + 16), _mm512_load_pd(acc + 48));
    __m512d d3 = _mm512_add_pd(_mm512_load_pd(acc + 24), _mm512_load_pd(acc + 56));
    d0 = _mm512_add_pd(d0, d2);
    d1 = _mm512_add_pd(d1, d3);
    d0 = _mm512_add_pd(d0, d1);
    __m256d q = _mm256_add_pd(_mm512_castpd512_pd256(d0), _mm512_extractf64x4_pd(d0, 1));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
    *sumsq = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    /* _mm*_max_ps(a, b) is a > b ? a : b, lane by lane */
    __m512 m0 = _mm512_max_ps(_mm512_load_ps(mx + 32), _mm512_load_ps(mx));
    __m512 m1 = _mm512_max_ps(_mm512_load_ps(mx + 48), _mm512_load_ps(mx + 16));
    m0 = _mm512_max_ps(m1, m0);
    __m256 r8 = _mm256_max_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m0), 1)),
                              _mm512_castps512_ps256(m0));
    __m128 r4 = _mm_max_ps(_mm256_extractf128_ps(r8, 1), _mm256_castps256_ps128(r8));
    __m128 r2 = _mm_max_ps(_mm_movehl_ps(r4, r4), r4);
    *maxabs = _mm_cvtss_f32(_mm_max_ss(_mm_shuffle_ps(r2, r2, 1), r2));
}

static void lanes_zero(double *acc, float *mx) {
    for (int k = 0; k < SB_STAT_LANES; k += 8) _mm512_store_pd(acc + k, _mm512_setzero_pd());
    for (int k = 0; k < SB_STAT_LANES; k += 16) _mm512_store_ps(mx + k, _mm512_setzero_ps());
}

SB_CHUNK_DIGEST(sb_xxh3_chunk_avx512, 64, lanes_zero, sb_xxh3_digest_avx512, lanes_tree)
#else
typedef int sb_xxh_avx512_unused; /* ISO C wants at least one declaration */
#endif
