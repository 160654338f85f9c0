/* canonical_gemm.c — the canonical GEMM engine: cache blocking, packing, the
 * split of C among threads, the SIMD path selection, and the scalar
 * micro-kernel. The AVX2 and AVX-512 micro-kernels are in
 * canonical_gemm_x86.c.
 *
 * The order (docs/canonical.md §2): every element of C is ONE sequential
 * fused multiply-add chain acc = fmaf(op(A)[i,k], op(B)[k,j], acc) over
 * k = 0, 1, ..., K-1 from +0.0f, then c = alpha*acc, then (beta != 0)
 * c = c + beta*C. How that is made fast without changing it:
 *   - threads split C into regions of rows or columns, never k;
 *   - the k loop is cut into blocks of KC; between blocks each element's
 *     accumulator is stored as a float (it IS a float in every step of the
 *     chain) and reloaded, so blocking does not change the chain;
 *   - a micro-kernel keeps an MR x NR tile of accumulators in registers,
 *     one element per vector lane; lanes are never added to each other;
 *   - panels are zero-padded to whole tiles; the padding lanes are computed
 *     and thrown away, never stored into C (the AVX-512 path runs edge
 *     tiles with only their rows and masked columns instead);
 *   - packing is a copy (the AVX-512 path transposes 16 x 16 blocks in
 *     registers); a region of few rows reads op(B) = B in place, unpacked.
 * So every ISA, blocking and thread split computes each element with the
 * same operations on the same operands: the same bits.
 *
 * Where the accumulators live between k-blocks: in C itself when beta == 0
 * (C is not read before the first block writes it), else in the thread's
 * workspace (a fixed ACC_FLOATS buffer; C is then done in row strips that
 * fit). After the last k-block, the epilogue applies alpha and beta.
 *
 * What it is not: a BLAS. Row-major only, float only, no
 * packed-operand reuse across calls, no prefetch tuning beyond the loop
 * order.
 */
#include "canonical.h"

#include <stdlib.h>
#include <string.h>

#define KC 256           /* k-block: B block KC x NC, A panel MR x KC */
#define NC 1024          /* columns per packed B block (a multiple of every NR) */
#define MR_MAX 16
#define NR_MAX 32
#define ACC_FLOATS 65536 /* beta != 0: accumulator strip (256 KB) */
#define DIRECT_B_ROWS 64 /* regions of at most this many rows read B unpacked */

struct sb_canon_ws {
    float *ap;  /* [MR_MAX * KC] one packed A micro-panel */
    float *bp;  /* [KC * NC]     one packed B block, NR-wide panels */
    float *acc; /* [ACC_FLOATS]  accumulators when beta != 0 */
};

sb_canon_ws *sb_canon_ws_new(void) {
    sb_canon_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    ws->ap = aligned_alloc(64, sizeof(float) * MR_MAX * KC);
    ws->bp = aligned_alloc(64, sizeof(float) * KC * NC);
    ws->acc = aligned_alloc(64, sizeof(float) * ACC_FLOATS);
    if (!ws->ap || !ws->bp || !ws->acc) {
        sb_canon_ws_free(ws);
        return NULL;
    }
    return ws;
}

void sb_canon_ws_free(sb_canon_ws *ws) {
    if (!ws) return;
    free(ws->ap);
    free(ws->bp);
    free(ws->acc);
    free(ws);
}

/* ====================================================================== */
/* ISA selection                                                          */
/* ====================================================================== */

const char *sb_canon_isa_name(sb_canon_isa isa) {
    switch (isa) {
    case SB_CANON_ISA_SCALAR: return "scalar";
    case SB_CANON_ISA_AVX2: return "avx2";
    case SB_CANON_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

int sb_canon_isa_supported(sb_canon_isa isa) {
    switch (isa) {
    case SB_CANON_ISA_SCALAR: return 1;
#if defined(__GNUC__) && defined(__x86_64__)
    case SB_CANON_ISA_AVX2:
        return sb_canon_ukernel_avx2().fn && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    case SB_CANON_ISA_AVX512:
        return sb_canon_ukernel_avx512().fn && __builtin_cpu_supports("avx512f");
#else
    default: return 0;
#endif
    }
    return 0;
}

sb_canon_isa sb_canon_isa_best(void) {
    if (sb_canon_isa_supported(SB_CANON_ISA_AVX512)) return SB_CANON_ISA_AVX512;
    if (sb_canon_isa_supported(SB_CANON_ISA_AVX2)) return SB_CANON_ISA_AVX2;
    return SB_CANON_ISA_SCALAR;
}

sb_status sb_canon_isa_from_env(sb_canon_isa *out, sb_error *err) {
    const char *v = getenv("SB_CANONICAL_ISA");
    if (!v || !*v) {
        *out = sb_canon_isa_best();
        return SB_OK;
    }
    static const sb_canon_isa all[] = {SB_CANON_ISA_SCALAR, SB_CANON_ISA_AVX2,
                                       SB_CANON_ISA_AVX512};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        if (strcmp(v, sb_canon_isa_name(all[k])) != 0) continue;
        if (!sb_canon_isa_supported(all[k]))
            return sb_error_set(err, SB_ERR_ARG,
                                "SB_CANONICAL_ISA=%s: this CPU or build cannot run that path", v);
        *out = all[k];
        return SB_OK;
    }
    return sb_error_set(err, SB_ERR_ARG,
                        "SB_CANONICAL_ISA=%s: unknown (expected scalar, avx2 or avx512)", v);
}

/* ====================================================================== */
/* the scalar micro-kernel                                                */
/* ====================================================================== */

#define SMR 4
#define SNR 8

/* Plain C with fmaf (a library call without hardware FMA in the build
 * flags, correctly rounded either way). */
static void ukr_scalar(int kc, const float *ap, const float *bp, float *w, size_t ldw,
                       int first) {
    float acc[SMR][SNR];
    for (int r = 0; r < SMR; r++)
        for (int c = 0; c < SNR; c++) acc[r][c] = first ? 0.0f : w[(size_t)r * ldw + (size_t)c];
    for (int k = 0; k < kc; k++) {
        for (int r = 0; r < SMR; r++) {
            float a = ap[r];
            for (int c = 0; c < SNR; c++) acc[r][c] = fmaf(a, bp[c], acc[r][c]);
        }
        ap += SMR;
        bp += SNR;
    }
    for (int r = 0; r < SMR; r++)
        for (int c = 0; c < SNR; c++) w[(size_t)r * ldw + (size_t)c] = acc[r][c];
}

static sb_canon_ukernel ukernel_for(sb_canon_isa isa) {
    sb_canon_ukernel u = {SMR, SNR, ukr_scalar, NULL, NULL};
    if (isa == SB_CANON_ISA_AVX512) u = sb_canon_ukernel_avx512();
    if (isa == SB_CANON_ISA_AVX2) u = sb_canon_ukernel_avx2();
    SB_ASSERT(u.fn && u.mr <= MR_MAX && u.nr <= NR_MAX && NC % u.nr == 0);
    return u;
}

/* ====================================================================== */
/* packing (copies; no arithmetic)                                        */
/* ====================================================================== */

/* op(A)[i0+r, p0+k] for r < mr, k < kc into ap[k*MR + r]; rows >= mr are 0 */
static void pack_a(const sb_canon_ukernel *u, const sb_canon_gemm *g, int i0, int mr, int p0,
                   int kc, int MR, float *ap) {
    size_t lda = (size_t)g->lda;
    if (!g->transA && u->pack_t && MR <= 16) {
        u->pack_t(g->A + (size_t)i0 * lda + (size_t)p0, lda, mr, kc, ap, (size_t)MR, MR);
        return;
    }
    if (g->transA) { /* A stored [K, M]: op(A)[i,k] = A[k*lda + i] */
        for (int k = 0; k < kc; k++) {
            const float *src = g->A + (size_t)(p0 + k) * lda + (size_t)i0;
            float *dst = ap + (size_t)k * (size_t)MR;
            int r = 0;
            for (; r < mr; r++) dst[r] = src[r];
            for (; r < MR; r++) dst[r] = 0.0f;
        }
    } else { /* A stored [M, K] */
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                const float *src = g->A + (size_t)(i0 + r) * lda + (size_t)p0;
                for (int k = 0; k < kc; k++) ap[(size_t)k * (size_t)MR + (size_t)r] = src[k];
            } else {
                for (int k = 0; k < kc; k++) ap[(size_t)k * (size_t)MR + (size_t)r] = 0.0f;
            }
        }
    }
}

/* op(B)[p0+k, j0+c] for k < kc, c < nc into NR-wide panels:
 * panel q holds columns [q*NR, q*NR+NR) as bp[q*kc*NR + k*NR + c]; columns
 * past nc are 0 */
static void pack_b(const sb_canon_ukernel *u, const sb_canon_gemm *g, int p0, int kc, int j0,
                   int nc, int NR, float *bp) {
    size_t ldb = (size_t)g->ldb;
    for (int q0 = 0; q0 < nc; q0 += NR) {
        int w = nc - q0 < NR ? nc - q0 : NR;
        float *panel = bp + (size_t)q0 * (size_t)kc;
        if (!g->transB) { /* B stored [K, N] */
            for (int k = 0; k < kc; k++) {
                const float *src = g->B + (size_t)(p0 + k) * ldb + (size_t)(j0 + q0);
                float *dst = panel + (size_t)k * (size_t)NR;
                memcpy(dst, src, (size_t)w * sizeof(float));
                for (int c = w; c < NR; c++) dst[c] = 0.0f;
            }
        } else if (u->pack_t) { /* B stored [N, K]: 16-column transposed copies */
            for (int h = 0; h < NR; h += 16) {
                int rows = w - h < 0 ? 0 : w - h < 16 ? w - h : 16;
                const float *src = rows ? g->B + (size_t)(j0 + q0 + h) * ldb + (size_t)p0 : g->B;
                u->pack_t(src, ldb, rows, kc, panel + h, (size_t)NR, NR - h < 16 ? NR - h : 16);
            }
        } else { /* B stored [N, K]: op(B)[k,j] = B[j*ldb + k]; w row streams */
            const float *src[NR_MAX];
            for (int c = 0; c < w; c++) src[c] = g->B + (size_t)(j0 + q0 + c) * ldb + (size_t)p0;
            for (int k = 0; k < kc; k++) {
                float *dst = panel + (size_t)k * (size_t)NR;
                int c = 0;
                for (; c < w; c++) dst[c] = src[c][k];
                for (; c < NR; c++) dst[c] = 0.0f;
            }
        }
    }
}

/* ====================================================================== */
/* the region driver                                                      */
/* ====================================================================== */

/* One MR x NR tile (or the part of it inside the region): full tiles run
 * on W directly, edge tiles on a padded copy. */
static void tile(const sb_canon_ukernel *u, int kc, const float *ap, const float *bp, float *w,
                 size_t ldw, int mr, int nr, int first) {
    if (mr == u->mr && nr == u->nr) {
        u->fn(kc, ap, bp, w, ldw, first);
        return;
    }
    if (u->edge) {
        u->edge(kc, ap, bp, (size_t)u->nr, w, ldw, first, mr, nr);
        return;
    }
    float t[MR_MAX * NR_MAX] __attribute__((aligned(64)));
    if (!first)
        for (int r = 0; r < mr; r++)
            memcpy(t + (size_t)r * (size_t)u->nr, w + (size_t)r * ldw, (size_t)nr * sizeof(float));
    u->fn(kc, ap, bp, t, (size_t)u->nr, first);
    for (int r = 0; r < mr; r++)
        memcpy(w + (size_t)r * ldw, t + (size_t)r * (size_t)u->nr, (size_t)nr * sizeof(float));
}

/* C[r, c] = alpha*W[r, c] (+ beta*C[r, c]) over rows x cols, elementwise:
 * the product rounded, then the sum. W may be C itself (beta == 0). */
static void epilogue(const sb_canon_gemm *g, float *c, size_t ldc, const float *w, size_t ldw,
                     int rows, int cols) {
    float alpha = g->alpha, beta = g->beta;
    for (int r = 0; r < rows; r++) {
        float *cr = c + (size_t)r * ldc;
        const float *wr = w + (size_t)r * ldw;
        if (beta != 0.0f) {
            for (int j = 0; j < cols; j++) {
                float t = alpha * wr[j];
                cr[j] = t + beta * cr[j];
            }
        } else {
            for (int j = 0; j < cols; j++) cr[j] = alpha * wr[j];
        }
    }
}

void sb_canon_gemm_region(sb_canon_isa isa, const sb_canon_gemm *g, int m0, int m1, int n0, int n1,
                          sb_canon_ws *ws) {
    if (m1 <= m0 || n1 <= n0) return;
    const size_t ldc = (size_t)g->ldc;
    float *C = g->C;
    if (g->alpha == 0.0f || g->K == 0) {
        /* acc = +0.0f for every element; A and B are not read */
        for (int i = m0; i < m1; i++) {
            float *cr = C + (size_t)i * ldc;
            for (int j = n0; j < n1; j++) {
                float c = g->alpha * 0.0f;
                if (g->beta != 0.0f) c = c + g->beta * cr[j];
                cr[j] = c;
            }
        }
        return;
    }
    const sb_canon_ukernel u = ukernel_for(isa);
    const int in_c = g->beta == 0.0f; /* accumulate in C itself */
    /* Few rows: each B block would serve few tiles, so the kernel reads
     * op(B) = B in place (row k of a tile is B[k*ldb + j..]) instead of
     * packing it. Only where the operands come from changes. */
    const int direct_b = u.edge && !g->transB && m1 - m0 <= DIRECT_B_ROWS;
    const size_t ldb = (size_t)g->ldb;
    const int width = n1 - n0 < NC ? n1 - n0 : NC;
    int strip = m1 - m0;
    if (!in_c) {
        strip = ACC_FLOATS / width / u.mr * u.mr;
        if (strip < u.mr) strip = u.mr; /* width <= NC, so mr*width <= ACC_FLOATS */
    }
    for (int s0 = m0; s0 < m1; s0 += strip) {
        int s1 = m1 - s0 < strip ? m1 : s0 + strip;
        for (int jc = n0; jc < n1; jc += NC) {
            int nc = n1 - jc < NC ? n1 - jc : NC;
            float *W = in_c ? C + (size_t)s0 * ldc + (size_t)jc : ws->acc;
            size_t ldw = in_c ? ldc : (size_t)nc;
            for (int pc = 0; pc < g->K; pc += KC) {
                int kc = g->K - pc < KC ? g->K - pc : KC;
                int first = pc == 0;
                if (!direct_b) pack_b(&u, g, pc, kc, jc, nc, u.nr, ws->bp);
                for (int ir = s0; ir < s1; ir += u.mr) {
                    int mr = s1 - ir < u.mr ? s1 - ir : u.mr;
                    pack_a(&u, g, ir, mr, pc, kc, u.mr, ws->ap);
                    float *wrow = W + (size_t)(ir - s0) * ldw;
                    for (int jr = 0; jr < nc; jr += u.nr) {
                        int nr = nc - jr < u.nr ? nc - jr : u.nr;
                        if (direct_b) {
                            const float *b = g->B + (size_t)pc * ldb + (size_t)(jc + jr);
                            u.edge(kc, ws->ap, b, ldb, wrow + jr, ldw, first, mr, nr);
                            continue;
                        }
                        tile(&u, kc, ws->ap, ws->bp + (size_t)jr * (size_t)kc, wrow + jr, ldw, mr,
                             nr, first);
                    }
                }
            }
            if (!in_c || g->alpha != 1.0f) /* alpha == 1: alpha*acc == acc */
                epilogue(g, C + (size_t)s0 * ldc + (size_t)jc, ldc, W, ldw, s1 - s0, nc);
        }
    }
}

/* ====================================================================== */
/* the thread split (speed only)                                          */
/* ====================================================================== */

#define SPLIT_N 32 /* column split unit */
#define SPLIT_M 16 /* row split unit */
#define MIN_FLOPS_PER_PART 262144.0

static int split_columns(const sb_canon_gemm *g) {
    int n_units = (g->N + SPLIT_N - 1) / SPLIT_N, m_units = (g->M + SPLIT_M - 1) / SPLIT_M;
    return n_units >= m_units;
}

int sb_canon_gemm_nparts(const sb_canon_gemm *g, int max_parts) {
    if (g->M <= 0 || g->N <= 0) return 1;
    int units = split_columns(g) ? (g->N + SPLIT_N - 1) / SPLIT_N : (g->M + SPLIT_M - 1) / SPLIT_M;
    double flops = 2.0 * g->M * (double)g->N * (double)(g->K > 0 ? g->K : 1);
    int by_work = (int)(flops / MIN_FLOPS_PER_PART);
    int p = max_parts;
    if (p > units) p = units;
    if (p > by_work) p = by_work;
    return p < 1 ? 1 : p;
}

void sb_canon_gemm_part(const sb_canon_gemm *g, int p, int nparts, int *m0, int *m1, int *n0,
                        int *n1) {
    int cols = split_columns(g);
    int unit = cols ? SPLIT_N : SPLIT_M, len = cols ? g->N : g->M;
    int units = (len + unit - 1) / unit;
    int q = units / nparts, r = units % nparts;
    int u0 = p * q + (p < r ? p : r), u1 = u0 + q + (p < r ? 1 : 0);
    int lo = u0 * unit, hi = u1 * unit < len ? u1 * unit : len;
    if (cols) {
        *m0 = 0, *m1 = g->M, *n0 = lo, *n1 = hi;
    } else {
        *m0 = lo, *m1 = hi, *n0 = 0, *n1 = g->N;
    }
}
