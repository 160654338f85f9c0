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
 * checking the CPU. The AVX-512 path also brings a transposing copy for
 * packing (a permutation of values, no arithmetic).
 */
#include "canonical.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

/* ---- AVX-512: 14 rows x 32 columns (28 accumulators, 2 B vectors, 1 A
 * broadcast: 31 of the 32 zmm registers) ----
 * One body, instantiated for the full tile (MR = 14, all 32 columns) and for
 * every partial row count 1..13 / column count 1..31 of an edge tile: a
 * partial tile runs only its MR rows (the zero-padded rows of the packed A
 * panel are skipped, not computed) and loads and stores only its columns
 * (masked; the padded B lanes compute values that are never stored). The
 * FMAs each element sees are the same in every instantiation. */
#define MR16 14

__attribute__((target("avx512f"), always_inline)) static inline void
k512_body(int kc, const float *ap, const float *bp, size_t bstride, float *w, size_t ldw,
          int first, const int MR, const int full, __mmask16 m0, __mmask16 m1) {
    __m512 c0[MR16], c1[MR16];
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        if (first) {
            c0[r] = _mm512_setzero_ps();
            c1[r] = _mm512_setzero_ps();
        } else if (full) {
            c0[r] = _mm512_loadu_ps(w + (size_t)r * ldw);
            c1[r] = _mm512_loadu_ps(w + (size_t)r * ldw + 16);
        } else {
            c0[r] = _mm512_maskz_loadu_ps(m0, w + (size_t)r * ldw);
            c1[r] = _mm512_maskz_loadu_ps(m1, w + (size_t)r * ldw + 16);
        }
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0, b1;
        if (full) {
            b0 = _mm512_load_ps(bp);
            b1 = _mm512_load_ps(bp + 16);
        } else {
            b0 = _mm512_maskz_loadu_ps(m0, bp);
            b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
        }
#pragma GCC unroll 14
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(ap[r]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
        ap += MR16;
        bp += bstride;
    }
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        if (full) {
            _mm512_storeu_ps(w + (size_t)r * ldw, c0[r]);
            _mm512_storeu_ps(w + (size_t)r * ldw + 16, c1[r]);
        } else {
            _mm512_mask_storeu_ps(w + (size_t)r * ldw, m0, c0[r]);
            _mm512_mask_storeu_ps(w + (size_t)r * ldw + 16, m1, c1[r]);
        }
    }
}

__attribute__((target("avx512f"))) static void ukr_avx512(int kc, const float *ap,
                                                          const float *bp, float *w, size_t ldw,
                                                          int first) {
    k512_body(kc, ap, bp, 32, w, ldw, first, MR16, 1, 0xFFFF, 0xFFFF);
}

__attribute__((target("avx512f"))) static void edge_avx512(int kc, const float *ap,
                                                           const float *bp, size_t bstride,
                                                           float *w, size_t ldw, int first,
                                                           int mr, int nr) {
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFFu : (1u << nr) - 1u);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFFu : nr <= 16 ? 0u : (1u << (nr - 16)) - 1u);
    switch (mr) {
#define K512_CASE(R)                                                                              \
    case R: k512_body(kc, ap, bp, bstride, w, ldw, first, R, 0, m0, m1); break;
        K512_CASE(1) K512_CASE(2) K512_CASE(3) K512_CASE(4) K512_CASE(5) K512_CASE(6)
        K512_CASE(7) K512_CASE(8) K512_CASE(9) K512_CASE(10) K512_CASE(11) K512_CASE(12)
        K512_CASE(13) K512_CASE(14)
#undef K512_CASE
    default: break;
    }
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

sb_canon_ukernel sb_canon_ukernel_avx512(void) {
    return (sb_canon_ukernel){MR16, 32, ukr_avx512, edge_avx512, pack_t_avx512};
}
sb_canon_ukernel sb_canon_ukernel_avx2(void) {
    return (sb_canon_ukernel){MR8, 16, ukr_avx2, NULL, NULL};
}

#else /* not x86-64 GCC: the scalar path only */

sb_canon_ukernel sb_canon_ukernel_avx512(void) { return (sb_canon_ukernel){0, 0, NULL, NULL, NULL}; }
sb_canon_ukernel sb_canon_ukernel_avx2(void) { return (sb_canon_ukernel){0, 0, NULL, NULL, NULL}; }

#endif
