/* canonical_gemm_x86.c — the AVX2 and AVX-512 micro-kernels of the canonical
 * GEMM (see canonical_gemm.c for the driver and canonical.h for the
 * contract).
 *
 * Each kernel holds an MR x NR tile of C in vector registers, one element
 * per lane. Per k step it loads the NR packed values of op(B)'s row k,
 * broadcasts each of the MR packed values of op(A)'s column k, and does
 * p = fma(a, b, p) lane by lane — the vector form of
 * p = fmaf(op(A)[i,k], op(B)[k,j], p), correctly rounded per lane exactly
 * like the scalar fmaf — over one canonical k-block from +0.0f, then adds
 * the block sum to the accumulators of the blocks before it (W = W + p;
 * the first block stores p). Lanes are never combined, so the kernels give
 * the scalar kernel's bits.
 *
 * The functions are compiled for their ISA with target attributes (the rest
 * of the build stays baseline x86-64); canonical_gemm.c calls them only after
 * checking the CPU. The AVX-512 path also brings the copies for packing (a
 * transposing one through registers and a strided one; permutations of
 * values, no arithmetic), and its kernel is the general panel call of
 * canonical.h: operands in place or packed, edge tiles, and the alpha/beta
 * epilogue on the last k-block (a rounded product, then a rounded sum, as
 * the scalar epilogue). While a tile computes, it prefetches the C rows of
 * the next tile it will add to and, with B read in place, the next tile's
 * row k of B at step k (hints; no value depends on them). For products
 * of at most SB_CANON_SHORT_K steps it also has the short-k call, which
 * keeps op(B)'s rows of a tile in registers instead of accumulators and
 * runs each element's whole chain in turn — the same FMAs in the same order.
 */
#include "canonical.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

/* ---- AVX-512: two register tiles ----
 *   wide:   14 rows x 32 columns (28 accumulators, 2 B vectors, 1 A
 *           broadcast: 31 of the 32 zmm registers), for panels of more than
 *           16 columns;
 *   narrow: up to 28 rows x 16 columns (28 accumulators, 1 B vector, each A
 *           value the broadcast memory operand of its FMA), for panels of at
 *           most 16 columns (a 32 x 16 product runs as two panels of 16 rows
 *           instead of three of 14, 9 and 9).
 * One tile body, instantiated for every tile shape of a panel call
 * (sb_canon_panel): its rows, two vectors of 16 columns or one, whole or
 * masked, and how op(A) is laid out. A partial tile runs only its rows
 * (never the padding of a packed panel) and loads and stores only its
 * columns (masked), so nothing outside the operands or the tile is touched.
 * The FMAs each element sees are the same in every instantiation.
 *
 * op(A) is a[k*a_k + r*a_r]: with a_r = 1 (a packed A panel, or Aᵀ read
 * in place) the row offsets are compile-time constants (AM_ROWS; measured
 * 1.1x on 32 x 16 x 32 Aᵀ·B); with any other a_r (AM_ANY) rows 0..6 come
 * from ap, 7..13 from ap + 7*a_r and so on, each offset a register times
 * 1, 2, 4 or 8 (an x86 address), so runtime strides need a few registers,
 * not one per row. */
#define MR16 14 /* rows of a wide tile */
#define MRN 28  /* rows of a narrow tile */
#define NR16 32

enum { AM_ROWS, AM_ANY };

static __mmask16 mask16(int n) { /* the first n lanes (none for n <= 0, all for n >= 16) */
    return (__mmask16)(n <= 0 ? 0u : n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

__attribute__((target("avx512f"), always_inline)) static inline void
k512_tile(int kc, const float *ap, const int AM, ptrdiff_t a_k, ptrdiff_t a_r, const float *bp,
          size_t b_k, float *w, size_t ldw, int first, const sb_canon_panel *ep, const int MR,
          const int NV, const int full, __mmask16 m0, __mmask16 m1, const float *pf, int pfb) {
    __m512 c0[MRN], c1[MR16];
    if (AM == AM_ROWS) a_r = 1;
    const ptrdiff_t a_r3 = 3 * a_r, a_r5 = 5 * a_r;
    const float *aq[4] = {ap, ap, ap, ap}; /* AM_ANY: rows 7q.. from aq[q] */
    if (AM == AM_ANY)
        for (int q = 1; q < 4; q++)
            if (MR > 7 * q) aq[q] = ap + 7 * q * a_r;
#pragma GCC unroll 28
    for (int r = 0; r < MR; r++) { /* one k-block's chains, from +0.0f */
        c0[r] = _mm512_setzero_ps();
        if (NV == 2) c1[r] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0, b1 = _mm512_setzero_ps();
        if (full) { /* unaligned loads: B may be read in place with ldb == 32 */
            b0 = _mm512_loadu_ps(bp);
            if (NV == 2) b1 = _mm512_loadu_ps(bp + 16);
        } else {
            b0 = _mm512_maskz_loadu_ps(m0, bp);
            if (NV == 2) b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
        }
#pragma GCC unroll 28
        for (int r = 0; r < MR; r++) {
            __m512 a;
            if (AM != AM_ANY) {
                a = _mm512_set1_ps(ap[r * a_r]);
            } else {
                const int rr = r % 7;
                ptrdiff_t o = rr == 0 ? 0 : rr == 1 ? a_r : rr == 2 ? 2 * a_r : rr == 3 ? a_r3
                            : rr == 4 ? 4 * a_r : rr == 5 ? a_r5 : 2 * a_r3;
                a = _mm512_set1_ps(aq[r / 7][o]);
            }
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            if (NV == 2) c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
        if (pfb) { /* B in place: the next tile's row k (a hint) */
            _mm_prefetch((const char *)(bp + NV * 16), _MM_HINT_T0);
            if (NV == 2) _mm_prefetch((const char *)(bp + 48), _MM_HINT_T0);
        }
        if (pf && k < 2 * MR) /* the next tile's C rows, one line per step (a hint) */
            _mm_prefetch((const char *)(pf + (size_t)(k >> 1) * ldw + (size_t)(k & 1) * 16),
                         _MM_HINT_T0);
        ap += a_k;
        if (AM == AM_ANY)
            for (int q = 0; q < 4; q++)
                if (MR > 7 * q) aq[q] += a_k;
        bp += b_k;
    }
    if (!first) { /* a later k-block: acc = W + p, the block sum added */
#pragma GCC unroll 28
        for (int r = 0; r < MR; r++) {
            __m512 o0 = full ? _mm512_loadu_ps(w + (size_t)r * ldw)
                             : _mm512_maskz_loadu_ps(m0, w + (size_t)r * ldw);
            c0[r] = _mm512_add_ps(o0, c0[r]);
            if (NV == 2) {
                __m512 o1 = full ? _mm512_loadu_ps(w + (size_t)r * ldw + 16)
                                 : _mm512_maskz_loadu_ps(m1, w + (size_t)r * ldw + 16);
                c1[r] = _mm512_add_ps(o1, c1[r]);
            }
        }
    }
    if (ep) { /* the last k-block, W = C: c = alpha*acc (+ beta*C); a product
               * by 1 is exact, so alpha == 1 and beta == 1 skip theirs */
        const int ma = ep->alpha != 1.0f, mb = ep->beta != 1.0f;
        __m512 va = _mm512_set1_ps(ep->alpha), vb = _mm512_set1_ps(ep->beta);
        if (ep->beta != 0.0f) {
#pragma GCC unroll 28
            for (int r = 0; r < MR; r++) {
                __m512 o0 = full ? _mm512_loadu_ps(w + (size_t)r * ldw)
                                 : _mm512_maskz_loadu_ps(m0, w + (size_t)r * ldw);
                c0[r] = _mm512_add_ps(ma ? _mm512_mul_ps(va, c0[r]) : c0[r],
                                      mb ? _mm512_mul_ps(vb, o0) : o0);
                if (NV == 2) {
                    __m512 o1 = full ? _mm512_loadu_ps(w + (size_t)r * ldw + 16)
                                     : _mm512_maskz_loadu_ps(m1, w + (size_t)r * ldw + 16);
                    c1[r] = _mm512_add_ps(ma ? _mm512_mul_ps(va, c1[r]) : c1[r],
                                          mb ? _mm512_mul_ps(vb, o1) : o1);
                }
            }
        } else if (ma) {
#pragma GCC unroll 28
            for (int r = 0; r < MR; r++) {
                c0[r] = _mm512_mul_ps(va, c0[r]);
                if (NV == 2) c1[r] = _mm512_mul_ps(va, c1[r]);
            }
        }
    }
#pragma GCC unroll 28
    for (int r = 0; r < MR; r++) {
        if (full) {
            _mm512_storeu_ps(w + (size_t)r * ldw, c0[r]);
            if (NV == 2) _mm512_storeu_ps(w + (size_t)r * ldw + 16, c1[r]);
        } else {
            _mm512_mask_storeu_ps(w + (size_t)r * ldw, m0, c0[r]);
            if (NV == 2) _mm512_mask_storeu_ps(w + (size_t)r * ldw + 16, m1, c1[r]);
        }
    }
}

/* A wide panel of R <= 14 rows: its whole tiles of 32 columns, then the
 * last partial tile with one or two vectors. The 14-row tile over a packed
 * B panel without an epilogue runs unmasked, with a packed A panel's stride
 * as a constant (the hot loop of large products). */
#define K512_WIDE(AM, R)                                                                          \
    __attribute__((target("avx512f"))) static void k512_wide_##AM##_##R(const sb_canon_panel *t) { \
        const sb_canon_panel *ep = t->ep ? t : NULL;                                              \
        const int fast = AM == AM_ROWS && R == MR16 && !ep && t->b_k == NR16 && t->a_k == MR16;   \
        const int pfb = t->b_j == NR16 && t->b_k > NR16; /* B in place, rows apart */            \
        int j = 0;                                                                                \
        for (; j + NR16 <= t->nc; j += NR16) {                                                    \
            const float *b = t->b + (size_t)(j / NR16) * t->b_j;                                  \
            const float *pf = t->first || j + NR16 >= t->nc ? NULL : t->w + j + NR16;          \
            if (fast)                                                                             \
                k512_tile(t->kc, t->a, AM_ROWS, MR16, 1, b, NR16, t->w + j, t->ldw, t->first,    \
                          NULL, MR16, 2, 1, 0xFFFF, 0xFFFF, pf, 0);                                \
            else                                                                                  \
                k512_tile(t->kc, t->a, AM, t->a_k, t->a_r, b, t->b_k, t->w + j, t->ldw, t->first, \
                          ep, R, 2, 0, 0xFFFF, 0xFFFF, pf, pfb);                                   \
        }                                                                                         \
        int nr = t->nc - j;                                                                       \
        const float *b = t->b + (size_t)(j / NR16) * t->b_j;                                      \
        if (nr > 16)                                                                              \
            k512_tile(t->kc, t->a, AM, t->a_k, t->a_r, b, t->b_k, t->w + j, t->ldw, t->first, ep, \
                      R, 2, 0, 0xFFFF, mask16(nr - 16), NULL, 0);                                  \
        else if (nr > 0)                                                                          \
            k512_tile(t->kc, t->a, AM, t->a_k, t->a_r, b, t->b_k, t->w + j, t->ldw, t->first, ep, \
                      R, 1, 0, mask16(nr), 0, NULL, 0);                                            \
    }
/* A narrow panel of R <= 28 rows and at most 16 columns: one tile. */
#define K512_NARROW(AM, R)                                                                        \
    __attribute__((target("avx512f"))) static void k512_narrow_##AM##_##R(                       \
        const sb_canon_panel *t) {                                                               \
        const sb_canon_panel *ep = t->ep ? t : NULL;                                              \
        if (t->nc == 16)                                                                          \
            k512_tile(t->kc, t->a, AM, t->a_k, t->a_r, t->b, t->b_k, t->w, t->ldw, t->first, ep, \
                      R, 1, 1, 0xFFFF, 0, NULL, 0);                                                \
        else                                                                                      \
            k512_tile(t->kc, t->a, AM, t->a_k, t->a_r, t->b, t->b_k, t->w, t->ldw, t->first, ep, \
                      R, 1, 0, mask16(t->nc), 0, NULL, 0);                                         \
    }
#define K512_14(F, AM)                                                                            \
    F(AM, 1) F(AM, 2) F(AM, 3) F(AM, 4) F(AM, 5) F(AM, 6) F(AM, 7) F(AM, 8) F(AM, 9) F(AM, 10)    \
    F(AM, 11) F(AM, 12) F(AM, 13) F(AM, 14)
#define K512_28(F, AM)                                                                            \
    K512_14(F, AM) F(AM, 15) F(AM, 16) F(AM, 17) F(AM, 18) F(AM, 19) F(AM, 20) F(AM, 21)          \
    F(AM, 22) F(AM, 23) F(AM, 24) F(AM, 25) F(AM, 26) F(AM, 27) F(AM, 28)
K512_14(K512_WIDE, AM_ROWS)
K512_14(K512_WIDE, AM_ANY)
K512_28(K512_NARROW, AM_ROWS)
K512_28(K512_NARROW, AM_ANY)
#define K512_W_PTR(AM, R) k512_wide_##AM##_##R,
#define K512_N_PTR(AM, R) k512_narrow_##AM##_##R,

static void panel_avx512(const sb_canon_panel *t) {
    static sb_canon_panel_fn const wide[2][MR16 + 1] = {{NULL, K512_14(K512_W_PTR, AM_ROWS)},
                                                        {NULL, K512_14(K512_W_PTR, AM_ANY)}};
    static sb_canon_panel_fn const narrow[2][MRN + 1] = {{NULL, K512_28(K512_N_PTR, AM_ROWS)},
                                                         {NULL, K512_28(K512_N_PTR, AM_ANY)}};
    SB_ASSERT(t->mr >= 1 && t->nc >= 1 && t->mr <= (t->nc <= 16 ? MRN : MR16));
    int am = t->a_r == 1 ? AM_ROWS : AM_ANY;
    (t->nc <= 16 ? narrow[am] : wide[am])[t->mr](t);
}
#undef K512_W_PTR
#undef K512_N_PTR
#undef K512_14
#undef K512_28
#undef K512_WIDE
#undef K512_NARROW

/* ---- AVX-512, the short-k call (sb_canon_ukernel.stream): a product
 * whose whole k range is at most SB_CANON_SHORT_K steps ----
 * A tile of 32 columns (or the last one: two vectors or one, masked) holds
 * op(B)'s kc rows of it in registers (2 x 14 vectors at most), and the rows
 * of op(A) stream past: each row's element chains — kc FMAs from +0, the
 * same ones in the same order as in k512_tile — then its epilogue, then its
 * store. With few steps per element, a register tile would spend as much on
 * zeroing and storing its 28 accumulators in bursts as on its FMAs; here
 * the stores are spread evenly between them. op(A)'s rows are contiguous in
 * k (a_k = 1), so each broadcast is one load from [row + constant]. */
__attribute__((target("avx512f"), always_inline)) static inline __m512
k512_ep(__m512 acc, const float *c, const sb_canon_panel *ep, __m512 va, __m512 vb,
        const int full, __mmask16 m) {
    if (!ep) return acc;
    if (ep->beta == 0.0f) return ep->alpha != 1.0f ? _mm512_mul_ps(va, acc) : acc;
    __m512 o = full ? _mm512_loadu_ps(c) : _mm512_maskz_loadu_ps(m, c);
    /* a product by 1 is exact: alpha == 1 and beta == 1 skip theirs */
    return _mm512_add_ps(ep->alpha != 1.0f ? _mm512_mul_ps(va, acc) : acc,
                         ep->beta != 1.0f ? _mm512_mul_ps(vb, o) : o);
}

__attribute__((target("avx512f"), always_inline)) static inline void
k512_stream_tile(const sb_canon_panel *t, const float *bp, float *w, const sb_canon_panel *ep,
                 const int KS, const int NV, const int full, __mmask16 m0, __mmask16 m1) {
    __m512 b0[SB_CANON_SHORT_K], b1[SB_CANON_SHORT_K];
#pragma GCC unroll 14
    for (int k = 0; k < KS; k++) {
        const float *b = bp + (size_t)k * t->b_k;
        b0[k] = full ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(m0, b);
        if (NV == 2) b1[k] = full ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(m1, b + 16);
    }
    const __m512 va = _mm512_set1_ps(t->alpha), vb = _mm512_set1_ps(t->beta);
    const float *a = t->a;
    for (int r = 0; r < t->mr; r++, a += t->a_r, w += t->ldw) {
        __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();
#pragma GCC unroll 14
        for (int k = 0; k < KS; k++) {
            __m512 av = _mm512_set1_ps(a[k]);
            c0 = _mm512_fmadd_ps(av, b0[k], c0);
            if (NV == 2) c1 = _mm512_fmadd_ps(av, b1[k], c1);
        }
        c0 = k512_ep(c0, w, ep, va, vb, full, m0);
        if (full) _mm512_storeu_ps(w, c0);
        else _mm512_mask_storeu_ps(w, m0, c0);
        if (NV == 2) {
            c1 = k512_ep(c1, w + 16, ep, va, vb, full, m1);
            if (full) _mm512_storeu_ps(w + 16, c1);
            else _mm512_mask_storeu_ps(w + 16, m1, c1);
        }
    }
}

#define K512_STREAM(KS)                                                                           \
    __attribute__((target("avx512f"))) static void k512_stream_##KS(const sb_canon_panel *t) {    \
        const sb_canon_panel *ep = t->ep ? t : NULL;                                              \
        int j = 0;                                                                                \
        for (; j + NR16 <= t->nc; j += NR16)                                                      \
            k512_stream_tile(t, t->b + (size_t)(j / NR16) * t->b_j, t->w + j, ep, KS, 2, 1,       \
                             0xFFFF, 0xFFFF);                                                     \
        int nr = t->nc - j;                                                                       \
        const float *b = t->b + (size_t)(j / NR16) * t->b_j;                                      \
        if (nr > 16)                                                                              \
            k512_stream_tile(t, b, t->w + j, ep, KS, 2, 0, 0xFFFF, mask16(nr - 16));              \
        else if (nr > 0)                                                                          \
            k512_stream_tile(t, b, t->w + j, ep, KS, 1, 0, mask16(nr), 0);                        \
    }
K512_STREAM(1) K512_STREAM(2) K512_STREAM(3) K512_STREAM(4) K512_STREAM(5) K512_STREAM(6)
K512_STREAM(7) K512_STREAM(8) K512_STREAM(9) K512_STREAM(10) K512_STREAM(11) K512_STREAM(12)
K512_STREAM(13) K512_STREAM(14)
#undef K512_STREAM

_Static_assert(SB_CANON_SHORT_K == 14, "one k512_stream_ instance per kc");

static void stream_avx512(const sb_canon_panel *t) {
    static sb_canon_panel_fn const by_k[SB_CANON_SHORT_K + 1] = {
        NULL,         k512_stream_1,  k512_stream_2,  k512_stream_3,  k512_stream_4,
        k512_stream_5, k512_stream_6, k512_stream_7,  k512_stream_8,  k512_stream_9,
        k512_stream_10, k512_stream_11, k512_stream_12, k512_stream_13, k512_stream_14};
    SB_ASSERT(t->kc >= 1 && t->kc <= SB_CANON_SHORT_K && t->a_k == 1 && t->first && t->mr >= 1 &&
              t->nc >= 1);
    by_k[t->kc](t);
}

/* 16 x 16 transpose in registers (a permutation of the values). */
__attribute__((target("avx512f"), always_inline)) static inline void tr16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0x88);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

/* dst[k*dstride + r] = src[r*ld + k] (r < rows), 0 for rows <= r < width:
 * 16 x 16 blocks through registers, masked at the edges. A copy. */
__attribute__((target("avx512f"))) static void pack_t_avx512(const float *src, size_t ld,
                                                             int rows, int kc, float *dst,
                                                             size_t dstride, int width) {
    __mmask16 mw = (__mmask16)((1u << width) - 1u);
    for (int k0 = 0; k0 < kc; k0 += 16) {
        int kk = kc - k0 < 16 ? kc - k0 : 16;
        __mmask16 mk = (__mmask16)((1u << kk) - 1u);
        __m512 v[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
            v[r] = r < rows ? _mm512_maskz_loadu_ps(mk, src + (size_t)r * ld + (size_t)k0)
                            : _mm512_setzero_ps();
        tr16(v);
        if (kk == 16) {
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                _mm512_mask_storeu_ps(dst + (size_t)(k0 + i) * dstride, mw, v[i]);
        } else {
            for (int i = 0; i < kk; i++)
                _mm512_mask_storeu_ps(dst + (size_t)(k0 + i) * dstride, mw, v[i]);
        }
    }
}

/* dst[k*dstride + r] = src[k*ld + r] (r < rows), 0 for rows <= r < width
 * (width <= 32): masked vector copies. */
__attribute__((target("avx512f"))) static void pack_n_avx512(const float *src, size_t ld,
                                                             int rows, int kc, float *dst,
                                                             size_t dstride, int width) {
    __mmask16 r0 = mask16(rows), r1 = mask16(rows - 16);
    __mmask16 w0 = mask16(width), w1 = mask16(width - 16);
    for (int k = 0; k < kc; k++) {
        const float *s = src + (size_t)k * ld;
        float *d = dst + (size_t)k * dstride;
        _mm512_mask_storeu_ps(d, w0, _mm512_maskz_loadu_ps(r0, s));
        if (w1) _mm512_mask_storeu_ps(d + 16, w1, _mm512_maskz_loadu_ps(r1, s + 16));
    }
}

/* ---- AVX-512, the few-columns NT call (sb_canon_ukernel.nt_few):
 * C = alpha*A·Bᵀ (+ beta*C) with at most SB_CANON_NT_FEW_N columns ----
 * Rows of C sit in the lanes and each of the region's columns n has one
 * accumulator vector: per k, acc[n] = fma(A[rows, k], B[n, k], acc[n]),
 * B[n, k] the broadcast memory operand. A's 16-row panel is turned k-major
 * in registers as it goes, 4 steps at a time, and never packed: four
 * 128-bit loads (4 k of 4 rows) fill one vector per group of 4 rows, and
 * one in-lane 4 x 4 transpose (8 shuffles for 16 x 4 values) gives the 4
 * vectors of steps k..k+3. The loads do half the work of a 16 x 16
 * register transpose (tr16: 64 shuffles for 16 x 16), so the shuffles
 * leave the FMA pipes nearly free: measured 114 GF/s (98% of the FMA probe)
 * on 32 x 10 x 784, against 77 packing A first (region_transposed) and 106
 * for OpenBLAS. Lane l of a panel holds row 4*(l & 3) + (l >> 2). Each
 * element's order is the same: per k-block every k in turn from +0.0f, the
 * block sums added in increasing k, then the epilogue of canonical_gemm.c's
 * epilogue(), element by element. */
#define NTF_ROW(l) (4 * ((l) & 3) + ((l) >> 2))

/* Steps k..k+nk-1 (nk <= 4) of one panel. ar[q] points at row 4q's step k
 * and bn[g] at B's row 4g's; the other rows are 1, 2 and 3 strides of la
 * (lb) bytes further, la3 = 3*la. Pointer arithmetic in bytes, so each
 * address is one base register plus at most one index register. */
__attribute__((target("avx512f"), always_inline)) static inline void
ntf_steps(const char *const ar[4], size_t la, size_t la3, const char *const bn[4], size_t lb,
          size_t lb3, __m512 acc[], const int NN, const int nk) {
    __m512 z[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) { /* rows 4q..4q+3, 4 steps each: one row per 128-bit lane */
        const char *p = ar[q];
        __m512 t = _mm512_castps128_ps512(_mm_loadu_ps((const float *)p));
        t = _mm512_insertf32x4(t, _mm_loadu_ps((const float *)(p + la)), 1);
        t = _mm512_insertf32x4(t, _mm_loadu_ps((const float *)(p + 2 * la)), 2);
        z[q] = _mm512_insertf32x4(t, _mm_loadu_ps((const float *)(p + la3)), 3);
    }
    __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(z[0], z[1]));
    __m512d t1 = _mm512_castps_pd(_mm512_unpackhi_ps(z[0], z[1]));
    __m512d t2 = _mm512_castps_pd(_mm512_unpacklo_ps(z[2], z[3]));
    __m512d t3 = _mm512_castps_pd(_mm512_unpackhi_ps(z[2], z[3]));
    __m512 v[4] = {_mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)),
                   _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)),
                   _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)),
                   _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3))}; /* v[i]: step k+i */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        if (i >= nk) break;
#pragma GCC unroll 16
        for (int n = 0; n < NN; n++) {
            const char *p = bn[n >> 2] + 4 * i;
            const int j = n & 3;
            const float *f =
                (const float *)(j == 0 ? p : j == 1 ? p + lb : j == 2 ? p + 2 * lb : p + lb3);
            acc[n] = _mm512_fmadd_ps(v[i], _mm512_set1_ps(*f), acc[n]);
        }
    }
}

/* An empty asm that claims to change x: the compiler must keep x in a
 * register as it is, instead of making a new pointer for every base + x it
 * sees (measured: 81 -> 114 GF/s on 32 x 10 x 784). Generates no code. */
#define NTF_OPAQUE(x) __asm__("" : "+r"(x))

/* At a leading dimension of SB_CANON_L1_SET_STRIDE the 16 rows of an A
 * panel, read side by side, evict each other and B's rows (measured:
 * 32 x 10 x 1024 at 57 GF/s, 256 x 16 x 1024 at 45, against 112 for
 * K = 1000). Then each k-block of the panel's A rows is first copied to a
 * buffer with rows SB_CANON_COPY_LD apart, and B's rows once per call to
 * the scratch buffer when that repays it (ntf_copy_b); the panel runs on
 * the copies — the same values, so the same bits. A copy of the whole of K
 * measured slower (the copy went through L2); one block at a time stays in
 * L1. */

/* n floats from s to d, 16 at a time (a masked last vector) */
__attribute__((target("avx512f"), always_inline)) static inline void ntf_copy(float *d,
                                                                            const float *s,
                                                                            int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(s + i));
    if (i < n) {
        __mmask16 m = mask16(n - i);
        _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, s + i));
    }
}

/* One panel: A's rows r0..r0+15 (all inside A), C's rows s0..s1-1 of them
 * stored (a shifted last panel recomputes rows another panel stored and
 * does not store them again), columns n0..n0+NN-1 of C; B: the region's
 * NN rows of op(B)ᵀ, ldb apart. abuf: NULL (A read in place), or
 * 16 * SB_CANON_COPY_LD floats for the copies of A's k-blocks. */
__attribute__((target("avx512f"), always_inline)) static inline void
ntf_panel(const sb_canon_gemm *g, const float *B, size_t ldb, int r0, int s0, int s1, int n0,
          float *abuf, const int NN) {
    const size_t lda = (size_t)g->lda, ldc = (size_t)g->ldc;
    const size_t lb = ldb * sizeof(float);
    __m512 acc[SB_CANON_NT_FEW_N];
    /* the block sums so far, column n's in w[n] (lane l: row NTF_ROW(l)) */
    float w[SB_CANON_NT_FEW_N][16] __attribute__((aligned(64)));
    /* through an opaque pointer: in memory, not in 16 more registers (kept
     * there by the compiler, they cost the step loop 4% on 32 x 10 x 784) */
    float(*ws)[16] = w;
    NTF_OPAQUE(ws);
    const int K = g->K;
    const float *A = g->A + (size_t)r0 * lda;
    for (int k0 = 0; k0 < K; k0 += SB_CANON_KB) {
        const int kb = K - k0 < SB_CANON_KB ? K - k0 : SB_CANON_KB;
        const char *ar[4], *bn[4];
        size_t la = lda * sizeof(float);
        if (abuf) { /* the block's 16 rows, SB_CANON_COPY_LD apart (the 4-step
                     * group past the block's end, read by a last short group,
                     * zeroed) */
            for (int r = 0; r < 16; r++) {
                float *d = abuf + (size_t)r * SB_CANON_COPY_LD;
                ntf_copy(d, A + (size_t)r * lda + (size_t)k0, kb);
                memset(d + kb, 0, 4 * sizeof(float));
            }
            la = SB_CANON_COPY_LD * sizeof(float);
        }
        for (int q = 0; q < 4; q++) {
            ar[q] = abuf ? (const char *)(abuf + (size_t)(4 * q) * SB_CANON_COPY_LD)
                         : (const char *)(A + (size_t)(4 * q) * lda + (size_t)k0);
            bn[q] = (const char *)(B + (size_t)(4 * q < NN ? 4 * q : 0) * ldb + (size_t)k0);
        }
#pragma GCC unroll 16
        for (int n = 0; n < NN; n++) acc[n] = _mm512_setzero_ps();
        int k = 0;
        for (; k + 4 <= kb; k += 4) {
            size_t la3 = 3 * la, lb3 = 3 * lb;
            NTF_OPAQUE(la);
            NTF_OPAQUE(la3);
            size_t lbo = lb; /* (lb stays a known value for the last short group) */
            NTF_OPAQUE(lbo);
            NTF_OPAQUE(lb3);
            ntf_steps(ar, la, la3, bn, lbo, lb3, acc, NN, 4);
            for (int q = 0; q < 4; q++) ar[q] += 4 * sizeof(float), bn[q] += 4 * sizeof(float);
        }
        if (k < kb) { /* the last 1..3 steps (of the last block: SB_CANON_KB % 4 == 0):
                       * from the copy, or through a small one (no read past a row) */
            if (abuf) {
                ntf_steps(ar, la, 3 * la, bn, lb, 3 * lb, acc, NN, kb - k);
            } else {
                float buf[16 * 4] __attribute__((aligned(64))) = {0};
                for (int r = 0; r < 16; r++)
                    for (int i = 0; i < kb - k; i++)
                        buf[r * 4 + i] = A[(size_t)r * lda + (size_t)(k0 + k + i)];
                const char *br[4];
                for (int q = 0; q < 4; q++) br[q] = (const char *)(buf + 16 * q);
                ntf_steps(br, 4 * sizeof(float), 12 * sizeof(float), bn, lb, 3 * lb, acc, NN,
                          kb - k);
            }
        }
#pragma GCC unroll 16
        for (int n = 0; n < NN; n++) /* acc = p0, then acc = acc + p */
            _mm512_store_ps(ws[n], k0 == 0 ? acc[n] : _mm512_add_ps(_mm512_load_ps(ws[n]), acc[n]));
    }
    const float alpha = g->alpha, beta = g->beta;
    for (int l = 0; l < 16; l++) {
        int row = r0 + NTF_ROW(l);
        if (row < s0 || row >= s1) continue;
        float *c = g->C + (size_t)row * ldc + (size_t)n0;
        if (beta != 0.0f) {
            for (int n = 0; n < NN; n++) {
                float t = alpha * ws[n][l];
                c[n] = t + beta * c[n];
            }
        } else {
            for (int n = 0; n < NN; n++) c[n] = alpha * ws[n][l];
        }
    }
}

/* B's rows at an L1-set stride are copied when they are more than the 8
 * ways of a set, or the region has at least this many panels: at 2 panels
 * of 10 columns (32 x 10 x 1024) the copy cost more than it saved. */
#define NTF_BCOPY_PANELS 4

/* The region's nn rows of B (from row n0): *B and *ldb where the panels read
 * them — in place, or copied to scratch after the A buffer, rows a
 * non-L1-set stride apart. Speed only. */
__attribute__((target("avx512f"))) static void ntf_copy_b(const sb_canon_gemm *g, int n0, int nn,
                                                          int panels, float *scratch,
                                                          size_t scratch_floats,
                                                          const float **B, size_t *ldb) {
    *B = g->B + (size_t)n0 * (size_t)g->ldb, *ldb = (size_t)g->ldb;
    size_t pk = ((size_t)g->K + 15) / 16 * 16 + 16;
    if (SB_CANON_L1_SET_STRIDE(pk)) pk += 16;
    if (!SB_CANON_L1_SET_STRIDE(g->ldb) || (nn <= 8 && panels < NTF_BCOPY_PANELS) ||
        16 * SB_CANON_COPY_LD + (size_t)nn * pk > scratch_floats)
        return;
    float *bc = scratch + 16 * SB_CANON_COPY_LD;
    for (int n = 0; n < nn; n++) ntf_copy(bc + (size_t)n * pk, *B + (size_t)n * *ldb, g->K);
    *B = bc, *ldb = pk;
}

#define K512_NTF(NN)                                                                              \
    __attribute__((target("avx512f"))) static void k512_ntf_##NN(                                \
        const sb_canon_gemm *g, int m0, int m1, int n0, float *scratch, size_t scratch_floats) {  \
        const float *B;                                                                           \
        size_t ldb;                                                                               \
        ntf_copy_b(g, n0, NN, (m1 - m0 + 15) / 16, scratch, scratch_floats, &B, &ldb);            \
        float *abuf = SB_CANON_L1_SET_STRIDE(g->lda) ? scratch : NULL;                            \
        for (int r = m0; r < m1; r += 16) {                                                       \
            const int r0 = r + 16 <= g->M ? r : g->M - 16, s1 = r + 16 < m1 ? r + 16 : m1;       \
            if (abuf)                                                                             \
                ntf_panel(g, B, ldb, r0, r, s1, n0, abuf, NN);                                    \
            else /* A in place: the instance without the copies */                               \
                ntf_panel(g, B, ldb, r0, r, s1, n0, NULL, NN);                                    \
        }                                                                                         \
    }
K512_NTF(1) K512_NTF(2) K512_NTF(3) K512_NTF(4) K512_NTF(5) K512_NTF(6) K512_NTF(7) K512_NTF(8)
K512_NTF(9) K512_NTF(10) K512_NTF(11) K512_NTF(12) K512_NTF(13) K512_NTF(14) K512_NTF(15)
K512_NTF(16)
#undef K512_NTF

_Static_assert(SB_CANON_NT_FEW_N == 16, "one k512_ntf_ instance per column count");
_Static_assert(SB_CANON_KB % 4 == 0, "nt_few's 4-step groups never straddle a k-block");

static void nt_few_avx512(const sb_canon_gemm *g, int m0, int m1, int n0, int n1, float *scratch,
                          size_t scratch_floats) {
    typedef void (*fn)(const sb_canon_gemm *, int, int, int, float *, size_t);
    static fn const by_n[SB_CANON_NT_FEW_N + 1] = {
        NULL,       k512_ntf_1,  k512_ntf_2,  k512_ntf_3,  k512_ntf_4,  k512_ntf_5,
        k512_ntf_6, k512_ntf_7,  k512_ntf_8,  k512_ntf_9,  k512_ntf_10, k512_ntf_11,
        k512_ntf_12, k512_ntf_13, k512_ntf_14, k512_ntf_15, k512_ntf_16};
    SB_ASSERT(!g->transA && g->transB && g->M >= 16 && m0 >= 0 && m1 <= g->M && m0 < m1 &&
              n1 - n0 >= 1 && n1 - n0 <= SB_CANON_NT_FEW_N);
    by_n[n1 - n0](g, m0, m1, n0, scratch, scratch_floats);
}

/* ---- AVX2 + FMA: 6 rows x 16 columns (12 accumulators, 2 B vectors, 1 A
 * broadcast: 15 of the 16 ymm registers) ---- */
#define MR8 6

__attribute__((target("avx2,fma"))) static void ukr_avx2(int kc, const float *ap, const float *bp,
                                                         float *w, size_t ldw, int first) {
    __m256 c0[MR8], c1[MR8];
#pragma GCC unroll 6
    for (int r = 0; r < MR8; r++) { /* one k-block's chains, from +0.0f */
        c0[r] = _mm256_setzero_ps();
        c1[r] = _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR8; r++) {
            __m256 a = _mm256_broadcast_ss(ap + r);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
        ap += MR8;
        bp += 16;
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR8; r++) {
        if (!first) { /* a later k-block: W + p */
            c0[r] = _mm256_add_ps(_mm256_loadu_ps(w + (size_t)r * ldw), c0[r]);
            c1[r] = _mm256_add_ps(_mm256_loadu_ps(w + (size_t)r * ldw + 8), c1[r]);
        }
        _mm256_storeu_ps(w + (size_t)r * ldw, c0[r]);
        _mm256_storeu_ps(w + (size_t)r * ldw + 8, c1[r]);
    }
}

static const sb_canon_ukernel K512 = {MR16,          MRN,           NR16,         NULL,
                                      panel_avx512,  stream_avx512, pack_t_avx512, pack_n_avx512,
                                      nt_few_avx512};
static const sb_canon_ukernel K256 = {MR8, MR8, 16, ukr_avx2, NULL, NULL, NULL, NULL, NULL};
const sb_canon_ukernel *sb_canon_ukernel_avx512(void) { return &K512; }
const sb_canon_ukernel *sb_canon_ukernel_avx2(void) { return &K256; }

#else /* not x86-64 GCC: the scalar path only */

static const sb_canon_ukernel NONE = {0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
const sb_canon_ukernel *sb_canon_ukernel_avx512(void) { return &NONE; }
const sb_canon_ukernel *sb_canon_ukernel_avx2(void) { return &NONE; }

#endif
