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
 * checking the CPU. What this file is not: a tuned BLAS kernel (no software
 * prefetch, no k unrolling beyond what the compiler does).
 */
#include "canonical.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

/* ---- AVX-512: 14 rows x 32 columns (28 accumulators, 2 B vectors, 1 A
 * broadcast: 31 of the 32 zmm registers) ---- */
#define MR16 14

__attribute__((target("avx512f"))) static void ukr_avx512(int kc, const float *ap,
                                                          const float *bp, float *w, size_t ldw,
                                                          int first) {
    __m512 c0[MR16], c1[MR16];
#pragma GCC unroll 14
    for (int r = 0; r < MR16; r++) {
        if (first) {
            c0[r] = _mm512_setzero_ps();
            c1[r] = _mm512_setzero_ps();
        } else {
            c0[r] = _mm512_loadu_ps(w + (size_t)r * ldw);
            c1[r] = _mm512_loadu_ps(w + (size_t)r * ldw + 16);
        }
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 14
        for (int r = 0; r < MR16; r++) {
            __m512 a = _mm512_set1_ps(ap[r]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
        ap += MR16;
        bp += 32;
    }
#pragma GCC unroll 14
    for (int r = 0; r < MR16; r++) {
        _mm512_storeu_ps(w + (size_t)r * ldw, c0[r]);
        _mm512_storeu_ps(w + (size_t)r * ldw + 16, c1[r]);
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

sb_canon_ukernel sb_canon_ukernel_avx512(void) { return (sb_canon_ukernel){MR16, 32, ukr_avx512}; }
sb_canon_ukernel sb_canon_ukernel_avx2(void) { return (sb_canon_ukernel){MR8, 16, ukr_avx2}; }

#else /* not x86-64 GCC: the scalar path only */

sb_canon_ukernel sb_canon_ukernel_avx512(void) { return (sb_canon_ukernel){0, 0, NULL}; }
sb_canon_ukernel sb_canon_ukernel_avx2(void) { return (sb_canon_ukernel){0, 0, NULL}; }

#endif
