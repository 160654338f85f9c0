/* canonical_math_x86.c — sb_canon_expf and sb_canon_tanhf over arrays, on
 * the scalar, AVX2 or AVX-512 path (the path the canonical GEMM uses:
 * SB_CANONICAL_ISA, or the best this CPU runs).
 *
 * Every lane computes exactly what canonical_math.c's scalar function
 * computes for its element: the same operations on the same values in the
 * same order, each one IEEE binary32 with one rounding (vector add, sub,
 * mul, div and FMA round as their scalar forms do; fmaf(-a, b, c) is
 * vfnmadd(a, b, c), the negation being exact). The scalar code branches on
 * the input's range; here every lane computes the candidate results and a
 * comparison mask picks the one the scalar code would have returned, with
 * the same precedence (NaN, then the saturated range, then tiny inputs,
 * then the polynomial, else the exponential). Lanes that take another
 * branch compute garbage that is thrown away; nothing traps (the project
 * runs with floating-point exceptions masked, as C does by default).
 * tests/test_canonical.c compares every path with the scalar functions
 * over samples of the whole float range.
 *
 * Not here: the definitions and their accuracy (canonical_math.c).
 */
#include "canonical.h"
#include "canonical_math_consts.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


static void tanh_scalar(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = sb_canon_tanhf(x[i]);
}

static void exp_scalar(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = sb_canon_expf(x[i]);
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#include <immintrin.h>
#define SB_MATH_X86 1

/* ---- AVX-512 ---- */

/* sb_canon_expf's steps 1-4 (no special cases) */
__attribute__((target("avx512f"), always_inline)) static inline __m512 exp_core512(__m512 x) {
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(LOG2E));
    __m512 kf = _mm512_sub_ps(_mm512_add_ps(z, _mm512_set1_ps(ROUND_MAGIC)),
                              _mm512_set1_ps(ROUND_MAGIC));
    __m512i n = _mm512_cvttps_epi32(kf);
    __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(0x1.a01a02p-13f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.6c16c2p-10f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.111112p-7f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.555556p-5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.555556p-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i n1 = _mm512_srai_epi32(n, 1);
    __m512i bias = _mm512_set1_epi32(127);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
    __m512 s2 = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(n, n1), bias), 23));
    return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

__attribute__((target("avx512f"), always_inline)) static inline __m512 exp512(__m512 x) {
    __m512 r = exp_core512(x);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_MIN), _CMP_LT_OQ),
                           _mm512_setzero_ps());
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_MAX), _CMP_GT_OQ),
                           _mm512_castsi512_ps(_mm512_set1_epi32(0x7f800000)));
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_add_ps(x, x));
}

__attribute__((target("avx512f"), always_inline)) static inline __m512 tanh512(__m512 x) {
    __m512i ix = _mm512_castps_si512(x);
    __m512i sign = _mm512_and_si512(ix, _mm512_set1_epi32((int)0x80000000u));
    __m512 a = _mm512_castsi512_ps(_mm512_and_si512(ix, _mm512_set1_epi32(0x7fffffff)));
    /* a < 0.55: the odd series */
    __m512 z = _mm512_mul_ps(a, a);
    __m512 p = _mm512_set1_ps(-0x1.f57d78p-13f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0x1.355824p-11f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-0x1.7da364p-10f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0x1.d6d3d0p-9f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-0x1.226e36p-7f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0x1.664f48p-6f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-0x1.ba1ba2p-5f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0x1.111112p-3f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-0x1.555556p-2f));
    __m512 rp = _mm512_fmadd_ps(_mm512_mul_ps(a, z), p, a);
    /* otherwise: 1 - 2/(e^(2a) + 1); 2a <= 19 never reaches expf's special cases */
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = exp_core512(_mm512_mul_ps(_mm512_set1_ps(2.0f), a));
    __m512 r = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.55f), _CMP_LT_OQ), rp);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, _mm512_set1_ps(9.5f), _CMP_GT_OQ), one);
    r = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), sign));
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, _mm512_set1_ps(0x1p-12f), _CMP_LT_OQ), x);
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_add_ps(x, x));
}

__attribute__((target("avx512f"))) static void tanh_avx512(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, tanh512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, m, tanh512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

__attribute__((target("avx512f"))) static void exp_avx512(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, m, exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* ---- AVX2 + FMA: the same, 8 lanes, blends for the masks ---- */

#define T256 __attribute__((target("avx2,fma"), always_inline)) static inline

T256 __m256 exp_core256(__m256 x) {
    __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(LOG2E));
    __m256 kf = _mm256_sub_ps(_mm256_add_ps(z, _mm256_set1_ps(ROUND_MAGIC)),
                              _mm256_set1_ps(ROUND_MAGIC));
    __m256i n = _mm256_cvttps_epi32(kf);
    __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(0x1.a01a02p-13f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.6c16c2p-10f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.111112p-7f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.555556p-5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.555556p-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i n1 = _mm256_srai_epi32(n, 1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(n, n1), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

T256 __m256 pick256(__m256 mask, __m256 yes, __m256 no) { return _mm256_blendv_ps(no, yes, mask); }

T256 __m256 exp256(__m256 x) {
    __m256 r = exp_core256(x);
    r = pick256(_mm256_cmp_ps(x, _mm256_set1_ps(EXP_MIN), _CMP_LT_OQ), _mm256_setzero_ps(), r);
    r = pick256(_mm256_cmp_ps(x, _mm256_set1_ps(EXP_MAX), _CMP_GT_OQ),
                _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)), r);
    return pick256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), _mm256_add_ps(x, x), r);
}

T256 __m256 tanh256(__m256 x) {
    __m256i ix = _mm256_castps_si256(x);
    __m256i sign = _mm256_and_si256(ix, _mm256_set1_epi32((int)0x80000000u));
    __m256 a = _mm256_castsi256_ps(_mm256_and_si256(ix, _mm256_set1_epi32(0x7fffffff)));
    __m256 z = _mm256_mul_ps(a, a);
    __m256 p = _mm256_set1_ps(-0x1.f57d78p-13f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(0x1.355824p-11f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-0x1.7da364p-10f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(0x1.d6d3d0p-9f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-0x1.226e36p-7f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(0x1.664f48p-6f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-0x1.ba1ba2p-5f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(0x1.111112p-3f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-0x1.555556p-2f));
    __m256 rp = _mm256_fmadd_ps(_mm256_mul_ps(a, z), p, a);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp_core256(_mm256_mul_ps(_mm256_set1_ps(2.0f), a));
    __m256 r = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    r = pick256(_mm256_cmp_ps(a, _mm256_set1_ps(0.55f), _CMP_LT_OQ), rp, r);
    r = pick256(_mm256_cmp_ps(a, _mm256_set1_ps(9.5f), _CMP_GT_OQ), one, r);
    r = _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(r), sign));
    r = pick256(_mm256_cmp_ps(a, _mm256_set1_ps(0x1p-12f), _CMP_LT_OQ), x, r);
    return pick256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), _mm256_add_ps(x, x), r);
}

__attribute__((target("avx2,fma"))) static void tanh_avx2(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, tanh256(_mm256_loadu_ps(x + i)));
    tanh_scalar(y + i, x + i, n - i); /* the same bits, element by element */
}

__attribute__((target("avx2,fma"))) static void exp_avx2(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp256(_mm256_loadu_ps(x + i)));
    exp_scalar(y + i, x + i, n - i);
}
#endif

void sb_canon_tanhf_n(sb_canon_isa isa, float *y, const float *x, size_t n) {
#ifdef SB_MATH_X86
    if (isa == SB_CANON_ISA_AVX512) {
        tanh_avx512(y, x, n);
        return;
    }
    if (isa == SB_CANON_ISA_AVX2) {
        tanh_avx2(y, x, n);
        return;
    }
#endif
    (void)isa;
    tanh_scalar(y, x, n);
}

void sb_canon_expf_n(sb_canon_isa isa, float *y, const float *x, size_t n) {
#ifdef SB_MATH_X86
    if (isa == SB_CANON_ISA_AVX512) {
        exp_avx512(y, x, n);
        return;
    }
    if (isa == SB_CANON_ISA_AVX2) {
        exp_avx2(y, x, n);
        return;
    }
#endif
    (void)isa;
    exp_scalar(y, x, n);
}

sb_canon_isa sb_canon_math_isa(void) {
    static int cached = -1; /* two threads racing store the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        sb_canon_isa isa;
        if (sb_canon_isa_from_env(&isa, NULL) != SB_OK) isa = sb_canon_isa_best();
        v = (int)isa;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return (sb_canon_isa)v;
}
