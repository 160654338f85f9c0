/* canonical_gemm_x86.c — the AVX2 and AVX-512 micro-kernels of the canonical
 * GEMM (see canonical_gemm.c for the driver and canonical.h for the
 * contract).
 *
 * Each kernel holds an MR x NR tile of C in vector registers, one element
 * per lane. Per k step it loads the NR packed values of op(B)'s row k,
 * broadcasts each of the MR packed values of op(A)'s column k, and does
 * acc = fma(a, b, acc) lane by lane — the vector form of
 * acc = fmaf(op(A)[i,k], op(B)[k,j], acc), correctly rounded per lane
 * exactly like the scalar fmaf. Lanes are never combined, so the kernels
 * give the scalar kernel's bits.
 *
 * The functions are compiled for their ISA with target attributes (the rest
 * of the build stays baseline x86-64); canonical_gemm.c calls them only after
 * checking the CPU. The AVX-512 path also brings the copies for packing (a
 * transposing one through registers and a strided one; permutations of
 * values, no arithmetic), and its kernel is the general panel call of
 * canonical.h: operands in place or packed, edge tiles, and the alpha/beta
 * epilogue on the last k-block (a rounded product, then a rounded sum, as
 * the scalar epilogue). While a tile computes, it prefetches the C rows of
 * the next tile it will load (a hint; no value depends on it).
 */
#include "canonical.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

/* ---- AVX-512: 14 rows x 32 columns (28 accumulators, 2 B vectors, 1 A
 * broadcast: 31 of the 32 zmm registers) ----
 * One tile body, instantiated for every tile shape of a panel call
 * (sb_canon_panel): 1..14 rows, two vectors of 16 columns or — for the last
 * tile of a panel — one, and the A operand packed (constant strides) or read
 * in place (any strides). A partial tile runs only its rows (never the
 * padding of a packed panel) and loads and stores only its columns (masked),
 * so nothing outside the operands or the tile is touched. The FMAs each
 * element sees are the same in every instantiation. */
#define MR16 14
#define NR16 32

static __mmask16 mask16(int n) { /* the first n lanes (none for n <= 0, all for n >= 16) */
    return (__mmask16)(n <= 0 ? 0u : n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

__attribute__((target("avx512f"), always_inline)) static inline void
k512_tile(int kc, const float *ap, ptrdiff_t a_k, ptrdiff_t a_r, const float *bp, size_t b_k,
          float *w, size_t ldw, int first, const sb_canon_panel *ep, const int MR, const int NV,
          const int full, __mmask16 m0, __mmask16 m1, const float *pf) {
    __m512 c0[MR16], c1[MR16];
    const ptrdiff_t a_r3 = 3 * a_r, a_r5 = 5 * a_r;
    const float *aq = MR > 7 ? ap + 7 * a_r : ap; /* rows 7.. (only formed when they exist) */
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        if (first) {
            c0[r] = _mm512_setzero_ps();
            if (NV == 2) c1[r] = _mm512_setzero_ps();
        } else if (full) {
            c0[r] = _mm512_loadu_ps(w + (size_t)r * ldw);
            c1[r] = _mm512_loadu_ps(w + (size_t)r * ldw + 16);
        } else {
            c0[r] = _mm512_maskz_loadu_ps(m0, w + (size_t)r * ldw);
            if (NV == 2) c1[r] = _mm512_maskz_loadu_ps(m1, w + (size_t)r * ldw + 16);
        }
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0, b1 = _mm512_setzero_ps();
        if (full) { /* unaligned loads: B may be read in place with ldb == 32 */
            b0 = _mm512_loadu_ps(bp);
            b1 = _mm512_loadu_ps(bp + 16);
        } else {
            b0 = _mm512_maskz_loadu_ps(m0, bp);
            if (NV == 2) b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
        }
#pragma GCC unroll 14
        for (int r = 0; r < MR; r++) {
            /* rows 0..6 from ap, 7..13 from aq = ap + 7*a_r: every offset is
             * a register times 1, 2, 4 or 8 (an x86 address), so runtime
             * strides need 5 registers, not 14 */
            const float *base = r < 7 ? ap : aq;
            const int rr = r % 7;
            ptrdiff_t o = rr == 0 ? 0 : rr == 1 ? a_r : rr == 2 ? 2 * a_r : rr == 3 ? a_r3
                        : rr == 4 ? 4 * a_r : rr == 5 ? a_r5 : 2 * a_r3;
            __m512 a = _mm512_set1_ps(base[o]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            if (NV == 2) c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
        if (pf && k < 2 * MR) /* the next tile's C rows, one line per step (a hint) */
            _mm_prefetch((const char *)(pf + (size_t)(k >> 1) * ldw + (size_t)(k & 1) * 16),
                         _MM_HINT_T0);
        ap += a_k;
        aq += a_k;
        bp += b_k;
    }
    if (ep) { /* the last k-block, W = C: c = alpha*acc (+ beta*C) */
        __m512 va = _mm512_set1_ps(ep->alpha), vb = _mm512_set1_ps(ep->beta);
        if (ep->beta != 0.0f) {
#pragma GCC unroll 14
            for (int r = 0; r < MR; r++) {
                __m512 o0 = _mm512_maskz_loadu_ps(m0, w + (size_t)r * ldw);
                c0[r] = _mm512_add_ps(_mm512_mul_ps(va, c0[r]), _mm512_mul_ps(vb, o0));
                if (NV == 2) {
                    __m512 o1 = _mm512_maskz_loadu_ps(m1, w + (size_t)r * ldw + 16);
                    c1[r] = _mm512_add_ps(_mm512_mul_ps(va, c1[r]), _mm512_mul_ps(vb, o1));
                }
            }
        } else {
#pragma GCC unroll 14
            for (int r = 0; r < MR; r++) {
                c0[r] = _mm512_mul_ps(va, c0[r]);
                if (NV == 2) c1[r] = _mm512_mul_ps(va, c1[r]);
            }
        }
    }
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        if (full) {
            _mm512_storeu_ps(w + (size_t)r * ldw, c0[r]);
            _mm512_storeu_ps(w + (size_t)r * ldw + 16, c1[r]);
        } else {
            _mm512_mask_storeu_ps(w + (size_t)r * ldw, m0, c0[r]);
            if (NV == 2) _mm512_mask_storeu_ps(w + (size_t)r * ldw + 16, m1, c1[r]);
        }
    }
}

/* One panel of R rows: its whole tiles of 32 columns, then the last partial
 * tile with one or two vectors. A packed A panel (PACKED) gets its strides
 * as constants; the full 14-row tile over a packed B panel without an
 * epilogue runs unmasked (the hot loop of large products). */
#define K512_PANEL(PACKED, R)                                                                     \
    __attribute__((target("avx512f"))) static void k512_panel_##PACKED##_##R(                    \
        const sb_canon_panel *t) {                                                               \
        const ptrdiff_t a_k = PACKED ? MR16 : t->a_k, a_r = PACKED ? 1 : t->a_r;                  \
        const sb_canon_panel *ep = t->ep ? t : NULL;                                              \
        const int fast = PACKED && R == MR16 && !ep && t->b_k == NR16;                            \
        int j = 0;                                                                                \
        for (; j + NR16 <= t->nc; j += NR16) {                                                    \
            const float *b = t->b + (size_t)(j / NR16) * t->b_j;                                  \
            const float *pf = t->first || j + NR16 >= t->nc ? NULL : t->w + j + NR16;          \
            if (fast)                                                                             \
                k512_tile(t->kc, t->a, MR16, 1, b, NR16, t->w + j, t->ldw, t->first, NULL, MR16,  \
                          2, 1, 0xFFFF, 0xFFFF, pf);                                              \
            else                                                                                  \
                k512_tile(t->kc, t->a, a_k, a_r, b, t->b_k, t->w + j, t->ldw, t->first, ep, R, 2, \
                          0, 0xFFFF, 0xFFFF, pf);                                                 \
        }                                                                                         \
        int nr = t->nc - j;                                                                       \
        const float *b = t->b + (size_t)(j / NR16) * t->b_j;                                      \
        if (nr > 16)                                                                              \
            k512_tile(t->kc, t->a, a_k, a_r, b, t->b_k, t->w + j, t->ldw, t->first, ep, R, 2, 0,  \
                      0xFFFF, mask16(nr - 16), NULL);                                             \
        else if (nr > 0)                                                                          \
            k512_tile(t->kc, t->a, a_k, a_r, b, t->b_k, t->w + j, t->ldw, t->first, ep, R, 1, 0,  \
                      mask16(nr), 0, NULL);                                                       \
    }
#define K512_PANELS(PACKED)                                                                       \
    K512_PANEL(PACKED, 1) K512_PANEL(PACKED, 2) K512_PANEL(PACKED, 3) K512_PANEL(PACKED, 4)       \
    K512_PANEL(PACKED, 5) K512_PANEL(PACKED, 6) K512_PANEL(PACKED, 7) K512_PANEL(PACKED, 8)       \
    K512_PANEL(PACKED, 9) K512_PANEL(PACKED, 10) K512_PANEL(PACKED, 11) K512_PANEL(PACKED, 12)    \
    K512_PANEL(PACKED, 13) K512_PANEL(PACKED, 14)
K512_PANELS(0)
K512_PANELS(1)
#undef K512_PANELS
#undef K512_PANEL

#define K512_ROWS(PACKED)                                                                         \
    {NULL,                     k512_panel_##PACKED##_1,  k512_panel_##PACKED##_2,                 \
     k512_panel_##PACKED##_3,  k512_panel_##PACKED##_4,  k512_panel_##PACKED##_5,                 \
     k512_panel_##PACKED##_6,  k512_panel_##PACKED##_7,  k512_panel_##PACKED##_8,                 \
     k512_panel_##PACKED##_9,  k512_panel_##PACKED##_10, k512_panel_##PACKED##_11,                \
     k512_panel_##PACKED##_12, k512_panel_##PACKED##_13, k512_panel_##PACKED##_14}

static void panel_avx512(const sb_canon_panel *t) {
    static sb_canon_panel_fn const by_rows[2][MR16 + 1] = {K512_ROWS(0), K512_ROWS(1)};
    SB_ASSERT(t->mr >= 1 && t->mr <= MR16 && t->nc >= 1);
    int packed = t->a_k == MR16 && t->a_r == 1;
    by_rows[packed][t->mr](t);
}
#undef K512_ROWS

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

/* ---- AVX2 + FMA: 6 rows x 16 columns (12 accumulators, 2 B vectors, 1 A
 * broadcast: 15 of the 16 ymm registers) ---- */
#define MR8 6

__attribute__((target("avx2,fma"))) static void ukr_avx2(int kc, const float *ap, const float *bp,
                                                         float *w, size_t ldw, int first) {
    __m256 c0[MR8], c1[MR8];
#pragma GCC unroll 6
    for (int r = 0; r < MR8; r++) {
        if (first) {
            c0[r] = _mm256_setzero_ps();
            c1[r] = _mm256_setzero_ps();
        } else {
            c0[r] = _mm256_loadu_ps(w + (size_t)r * ldw);
            c1[r] = _mm256_loadu_ps(w + (size_t)r * ldw + 8);
        }
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
        _mm256_storeu_ps(w + (size_t)r * ldw, c0[r]);
        _mm256_storeu_ps(w + (size_t)r * ldw + 8, c1[r]);
    }
}

static const sb_canon_ukernel K512 = {MR16, NR16, NULL, panel_avx512, pack_t_avx512,
                                      pack_n_avx512};
static const sb_canon_ukernel K256 = {MR8, 16, ukr_avx2, NULL, NULL, NULL};
const sb_canon_ukernel *sb_canon_ukernel_avx512(void) { return &K512; }
const sb_canon_ukernel *sb_canon_ukernel_avx2(void) { return &K256; }

#else /* not x86-64 GCC: the scalar path only */

static const sb_canon_ukernel NONE = {0, 0, NULL, NULL, NULL, NULL};
const sb_canon_ukernel *sb_canon_ukernel_avx512(void) { return &NONE; }
const sb_canon_ukernel *sb_canon_ukernel_avx2(void) { return &NONE; }

#endif
