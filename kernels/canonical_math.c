/* canonical_math.c — expf, logf and tanhf of the canonical mode: one
 * implementation, ours, used by every backend in canonical mode (ref and blas
 * on any SIMD path; a CUDA port must transcribe these lines, see
 * docs/canonical.md §4).
 *
 * What it is: straight-line float code that uses only +, -, *, /, fmaf,
 * comparisons and integer bit manipulation, each operation written out in
 * the order it is evaluated (the project builds with -ffp-contract=off, so
 * the compiler fuses nothing; every FMA below is an explicit fmaf). Under
 * IEEE-754 binary32 arithmetic with round-to-nearest-even and no
 * flush-to-zero, the result is therefore a pure function of the input on any
 * machine: fmaf compiles to one fused instruction where the CPU has FMA, and
 * glibc's software fmaf is correctly rounded too, so both give the same bits.
 *
 * Accuracy (measured by tests/test_canonical.c against double-precision libm,
 * over every float in the tested ranges it samples): expf and logf within 1
 * ULP, tanhf within 2 ULP (its 1 - 2/(e^2|x|+1) branch inherits expf's error).
 * Special values follow C99 Annex F: exp(NaN) = NaN, exp(+inf) = +inf,
 * exp(-inf) = +0, overflow to +inf above 88.72283, gradual underflow to
 * subnormals then +0 below -103.97; log(±0) = -inf, log(x<0) = NaN,
 * log(+inf) = +inf; tanh(±0) = ±0, tanh(±inf) = ±1.
 *
 * What it is not: correctly rounded (CORE-MATH is; it is much longer), nor a
 * vector library. The functions carry target clones so that on CPUs with FMA
 * the fmaf calls become instructions instead of libm calls — the clones
 * compute the same bits, only faster.
 */
#include "canonical.h"
#include "canonical_math_consts.h"

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define SB_MATH_CLONES __attribute__((target_clones("default", "fma")))
#else
#define SB_MATH_CLONES
#endif

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* 2^n for n in [-126, 127], exactly (a normal power of two). */
static float pow2i(int n) { return from_bits((uint32_t)(n + 127) << 23); }


/* exp(x).
 * 1. n = round-to-nearest-even(x * LOG2E) via the magic constant.
 * 2. r = x - n*ln2 in two FMA steps (Cody-Waite with FMA): the first,
 *    fmaf(-n, LN2_HI, x), is exact; the second adds -n*LN2_LO with one
 *    rounding. |r| <= 0.3466.
 * 3. e^r by its Taylor polynomial to degree 7 (truncation < 5.2e-9, well
 *    under half an ULP), Horner from the highest coefficient down, every
 *    step one fmaf: p = 1/7!; p = fmaf(p, r, 1/6!); ...; p = fmaf(p, r, 1);
 *    p = fmaf(p, r, 1).
 * 4. result = (p * 2^(n>>1)) * 2^(n - (n>>1)), two multiplications by
 *    powers of two: the first is exact, the second rounds once, which makes
 *    gradual underflow correctly rounded from p and lets n reach 128. */
SB_MATH_CLONES
float sb_canon_expf(float x) {
    if (x != x) return x + x; /* NaN, quieted */
    if (x > EXP_MAX) return from_bits(0x7f800000u); /* +inf (also for +inf) */
    if (x < EXP_MIN) return 0.0f;                   /* +0 (also for -inf) */
    float z = x * LOG2E;
    float kf = (z + ROUND_MAGIC) - ROUND_MAGIC;
    int n = (int)kf;
    float r = fmaf(-kf, LN2_HI, x);
    r = fmaf(-kf, LN2_LO, r);
    float p = 0x1.a01a02p-13f;   /* 1/5040 */
    p = fmaf(p, r, 0x1.6c16c2p-10f); /* 1/720 */
    p = fmaf(p, r, 0x1.111112p-7f);  /* 1/120 */
    p = fmaf(p, r, 0x1.555556p-5f);  /* 1/24 */
    p = fmaf(p, r, 0x1.555556p-3f);  /* 1/6 */
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int n1 = n >> 1; /* arithmetic shift: floor(n/2); n in [-150, 128] */
    return (p * pow2i(n1)) * pow2i(n - n1);
}

/* log(x).
 * 1. Specials: NaN -> NaN; x < 0 -> NaN; ±0 -> -inf; +inf -> +inf.
 *    Subnormal x is first multiplied by 2^23 (exact) and e starts at -23.
 * 2. x = 2^e * m with m in [sqrt(2)/2, sqrt(2)), from the bits: subtract the
 *    bits of 0.70710677f, the exponent field is e, the mantissa plus those
 *    bits is m. f = m - 1 is exact (Sterbenz), f in [-0.293, 0.415).
 * 3. s = f / (2 + f), z = s*s, hfsq = (0.5*f)*f. With log(1+f) = 2 atanh(s)
 *    = 2s + s*R(z), R(z) = z*(2/3 + z*(2/5 + z*(2/7 + z*(2/9 + z*2/11))))
 *    (the atanh series, truncated where the next term is < 2^-30 relative),
 *    and the identity 2s = f - hfsq + s*hfsq:
 *        log(1+f) = f - (hfsq - s*(hfsq + R)).
 *    R: t = fmaf(z, 2/11, 2/9); t = fmaf(z, t, 2/7); t = fmaf(z, t, 2/5);
 *       t = fmaf(z, t, 2/3); R = z*t.
 * 4. lo = fmaf(s, hfsq + R, e*LN2_LO)   (e*LN2_LO rounded first)
 *    result = fmaf(e, LN2_HI, f - (hfsq - lo)). */
SB_MATH_CLONES
float sb_canon_logf(float x) {
    uint32_t ix = bits(x);
    if (x != x) return x + x;
    if (ix & 0x80000000u) /* negative, or -0 */
        return (ix & 0x7fffffffu) ? from_bits(0x7fc00000u) : from_bits(0xff800000u);
    if (ix == 0) return from_bits(0xff800000u); /* log(+0) = -inf */
    if (ix == 0x7f800000u) return x;            /* log(+inf) = +inf */
    int e = 0;
    if (ix < 0x00800000u) { /* subnormal */
        x = x * 0x1p23f;
        ix = bits(x);
        e = -23;
    }
    uint32_t t = ix - 0x3f3504f3u;
    e += (int32_t)t >> 23; /* arithmetic shift: the signed exponent (GCC: modular cast) */
    float m = from_bits((t & 0x007fffffu) + 0x3f3504f3u);
    float f = m - 1.0f;
    float s = f / (2.0f + f);
    float z = s * s;
    float hfsq = (0.5f * f) * f;
    float tt = fmaf(z, 0x1.745d18p-3f, 0x1.c71c72p-3f); /* 2/11, 2/9 */
    tt = fmaf(z, tt, 0x1.24924ap-2f);                  /* 2/7 */
    tt = fmaf(z, tt, 0x1.99999ap-2f);                  /* 2/5 */
    tt = fmaf(z, tt, 0x1.555556p-1f);                  /* 2/3 */
    float R = z * tt;
    float ef = (float)e;
    float lo = fmaf(s, hfsq + R, ef * LN2_LO);
    return fmaf(ef, LN2_HI, f - (hfsq - lo));
}

/* tanh(x), odd: computed for a = |x| and the sign put back.
 * - NaN -> NaN; a > 9.5 -> ±1 (tanh(9.5) rounds to 1); a < 2^-12 -> x itself
 *   (|tanh(x) - x| < x^3/3 is below half an ULP; keeps ±0 and subnormals).
 * - a < 0.55: the Taylor series to x^19 (truncation < 1e-9 relative):
 *   z = a*a; P = c19; P = fmaf(P, z, c17); ...; P = fmaf(P, z, c3);
 *   result = fmaf(a*z, P, a), with c_k the series coefficients rounded to float.
 * - otherwise: E = sb_canon_expf(2a) (2a exact); result = 1 - 2/(E + 1). */
SB_MATH_CLONES
float sb_canon_tanhf(float x) {
    uint32_t ix = bits(x);
    uint32_t sign = ix & 0x80000000u;
    float a = from_bits(ix & 0x7fffffffu);
    float r;
    if (x != x) return x + x;
    if (a > 9.5f) {
        r = 1.0f;
    } else if (a < 0x1p-12f) {
        return x;
    } else if (a < 0.55f) {
        float z = a * a;
        float p = -0x1.f57d78p-13f;  /* c19 */
        p = fmaf(p, z, 0x1.355824p-11f);  /* c17 */
        p = fmaf(p, z, -0x1.7da364p-10f); /* c15 */
        p = fmaf(p, z, 0x1.d6d3d0p-9f);   /* c13 */
        p = fmaf(p, z, -0x1.226e36p-7f);  /* c11 */
        p = fmaf(p, z, 0x1.664f48p-6f);   /* c9 */
        p = fmaf(p, z, -0x1.ba1ba2p-5f);  /* c7 */
        p = fmaf(p, z, 0x1.111112p-3f);   /* c5 = 2/15 */
        p = fmaf(p, z, -0x1.555556p-2f);  /* c3 = -1/3 */
        r = fmaf(a * z, p, a);
    } else {
        float E = sb_canon_expf(2.0f * a);
        r = 1.0f - 2.0f / (E + 1.0f);
    }
    return from_bits(bits(r) | sign);
}

/* Exact-order integer power in double for Adam's bias corrections:
 * binary exponentiation, low bit first: r = 1; b = base; while t: if t odd
 * r = r*b; b = b*b; t >>= 1. Every step is one IEEE double multiplication,
 * so the result is the same on any IEEE machine (unlike libm pow). */
double sb_canon_powi(double base, int t) {
    double r = 1.0, b = base;
    unsigned u = t < 0 ? 0u : (unsigned)t;
    while (u) {
        if (u & 1u) r = r * b;
        b = b * b;
        u >>= 1;
    }
    return r;
}
