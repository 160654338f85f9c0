/* canonical_gemm.c — the canonical GEMM engine: cache blocking, packing, the
 * split of C among threads, the SIMD path selection, and the scalar
 * micro-kernel. The AVX2 and AVX-512 micro-kernels are in
 * canonical_gemm_x86.c.
 *
 * The order (docs/canonical.md §2): every element's k range is cut into
 * blocks of SB_CANON_KB (256) steps; each block is ONE sequential fused
 * multiply-add chain p = fmaf(op(A)[i,k], op(B)[k,j], p) from +0.0f, and
 * the block sums are added in increasing k (acc = p0, acc = acc + p1, ...;
 * this keeps the error of long products at OpenBLAS's level or below: a
 * single chain's grows like K, blocks' like 256·sqrt(K/256)); then
 * c = alpha*acc, then (beta != 0) c = c + beta*C. How that is made fast
 * without changing it:
 *   - threads split C into regions of rows or columns, never k;
 *   - every path's cache block over k is the canonical block: a kernel
 *     call runs one block's chains from +0.0f, then stores them (the first
 *     block) or adds them to the accumulators stored before (W = W + p);
 *   - a micro-kernel keeps an MR x NR tile of accumulators in registers,
 *     one element per vector lane; lanes are never added to each other
 *     (AVX-512: 14 x 32, or 28 x 16 for a region of at most 16 columns);
 *   - for K <= SB_CANON_SHORT_K and op(A) = A the AVX-512 path holds op(B)'s
 *     K rows of a tile in registers instead and streams op(A)'s rows past
 *     them, each element's chain (one block) whole, then its epilogue (the
 *     short-k call);
 *   - which operand sits in the lanes is free: the normal orientation puts
 *     columns of C in the lanes (op(A) broadcast), the transposed one — for
 *     op(B) = Bᵀ with few rows or few columns — rows of C (op(B) broadcast
 *     straight from B's rows, Cᵀ accumulated in the workspace);
 *   - for op(B) = Bᵀ, op(A) = A and at most 16 columns the AVX-512 path
 *     has a call of its own (nt_few): rows of C in the lanes, one register
 *     per column, A's 16-row panels turned k-major in registers as the
 *     chains go (never packed), each element's blocks in turn (the sums
 *     kept on the stack), then its epilogue;
 *   - packing is a copy (the AVX-512 path transposes 16 x 16 blocks in
 *     registers); an operand that would serve few tiles is read in place,
 *     unless its rows are a multiple of 4 KiB apart (they would share one
 *     L1 set): then it is packed, or its rows copied apart;
 *     a one-k-block product of at most 16 columns takes a short path
 *     (region_narrow) with the same panel calls and less bookkeeping;
 *   - the scalar and AVX2 kernels compute zero-padded edge tiles on a copy;
 *     the AVX-512 kernel walks a whole row panel in one call, running edge
 *     tiles with only their rows and masked columns, and applies alpha and
 *     beta itself when the accumulators live in C.
 * So every ISA, blocking, orientation and thread split computes each
 * element with the same operations on the same operands: the same bits.
 *
 * Where the accumulators live between k-blocks (the short-k call has
 * none: each chain is whole in a register): in C itself when beta == 0
 * (C is not read before the first block writes it) or when K is one
 * k-block and the kernel applies the epilogue (C is read once, after the
 * chain); else in the thread's workspace (a fixed ACC_FLOATS buffer; C is
 * then done in strips that fit). After the last k-block the epilogue
 * applies alpha and beta.
 *
 * What it is not: a BLAS. Row-major only, float only, no packed-operand
 * reuse across calls.
 */
#include "canonical.h"

#include <stdlib.h>
#include <string.h>

#define KC SB_CANON_KB   /* k-block: B block KC x NC, A panel MR x KC; the
                          * canonical k-block, so not a free tuning knob */
_Static_assert(SB_CANON_SHORT_K <= SB_CANON_KB, "the short-k call runs one k-block");
#define NC 1024          /* columns per packed B block (a multiple of every NR) */
#define MR_MAX 16
#define MR_NARROW_MAX 28
#define NR_MAX 32
#define ACC_FLOATS 65536 /* accumulators outside C: a strip (256 KB) */
#define DIRECT_B_ROWS 64 /* regions of at most this many rows read B unpacked */
/* Regions of at most this many columns read op(A) unpacked: the few tiles
 * an A panel serves then cost less than packing it (measured with 32 and
 * 256: 512x64x256 NN 104.5 -> 113.7 GF/s, 64x64x64 101.9 -> 110.1,
 * 256x256x256 109.4 -> 112.6; square 1024 unchanged). Speed only. */
#define DIRECT_A_COLS 256
/* ws->ap: one packed A micro-panel (MR_MAX x KC), or a row panel of B
 * copied with rows SB_CANON_COPY_LD floats apart (MR_NARROW_MAX x KC_T) */
#define AP_FLOATS (MR_NARROW_MAX * SB_CANON_COPY_LD)
struct sb_canon_ws {
    float *ap;  /* [AP_FLOATS] */
    float *bp;  /* [KC * NC]     one packed B block (or op(A) block, transposed), NR-wide panels */
    float *acc; /* [ACC_FLOATS]  accumulators outside C */
};

sb_canon_ws *sb_canon_ws_new(void) {
    sb_canon_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    ws->ap = aligned_alloc(64, sizeof(float) * AP_FLOATS);
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
        return sb_canon_ukernel_avx2()->fn && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    case SB_CANON_ISA_AVX512:
        return sb_canon_ukernel_avx512()->panel && __builtin_cpu_supports("avx512f");
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
        for (int c = 0; c < SNR; c++) acc[r][c] = 0.0f;
    for (int k = 0; k < kc; k++) {
        for (int r = 0; r < SMR; r++) {
            float a = ap[r];
            for (int c = 0; c < SNR; c++) acc[r][c] = fmaf(a, bp[c], acc[r][c]);
        }
        ap += SMR;
        bp += SNR;
    }
    for (int r = 0; r < SMR; r++)
        for (int c = 0; c < SNR; c++) {
            float *o = w + (size_t)r * ldw + (size_t)c;
            *o = first ? acc[r][c] : *o + acc[r][c];
        }
}

static const sb_canon_ukernel *ukernel_for(sb_canon_isa isa) {
    static const sb_canon_ukernel scalar = {SMR,  SMR,  SNR,  ukr_scalar, NULL,
                                            NULL, NULL, NULL, NULL};
    const sb_canon_ukernel *u = &scalar;
    if (isa == SB_CANON_ISA_AVX512) u = sb_canon_ukernel_avx512();
    if (isa == SB_CANON_ISA_AVX2) u = sb_canon_ukernel_avx2();
    SB_ASSERT((u->fn || u->panel) && u->mr <= MR_MAX && u->mr_narrow <= MR_NARROW_MAX &&
              u->nr <= NR_MAX && NC % u->nr == 0);
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
    if (g->transA && u->pack_n) {
        u->pack_n(g->A + (size_t)p0 * lda + (size_t)i0, lda, mr, kc, ap, (size_t)MR, MR);
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

/* Rows k < kc of a matrix X whose element (k, c) is X[k*sk + c*sc], columns
 * c < nc, into NR-wide panels: panel q holds columns [q*NR, q*NR+NR) as
 * bp[q*kc*NR + k*NR + c]; columns past nc are 0. sc == 1 (rows contiguous)
 * or sk == 1 (columns contiguous: a transposing copy). */
static void pack_panels(const sb_canon_ukernel *u, const float *X, size_t sk, size_t sc, int kc,
                        int nc, int NR, float *bp) {
    for (int q0 = 0; q0 < nc; q0 += NR) {
        int w = nc - q0 < NR ? nc - q0 : NR;
        float *panel = bp + (size_t)q0 * (size_t)kc;
        const float *x = X + (size_t)q0 * sc;
        if (sc == 1 && u->pack_n) {
            u->pack_n(x, sk, w, kc, panel, (size_t)NR, NR);
        } else if (sc == 1) {
            for (int k = 0; k < kc; k++) {
                float *dst = panel + (size_t)k * (size_t)NR;
                memcpy(dst, x + (size_t)k * sk, (size_t)w * sizeof(float));
                for (int c = w; c < NR; c++) dst[c] = 0.0f;
            }
        } else if (u->pack_t) { /* 16-column transposed copies */
            for (int h = 0; h < NR; h += 16) {
                int rows = w - h < 0 ? 0 : w - h < 16 ? w - h : 16;
                const float *src = rows ? x + (size_t)h * sc : x;
                u->pack_t(src, sc, rows, kc, panel + h, (size_t)NR, NR - h < 16 ? NR - h : 16);
            }
        } else { /* w column streams */
            for (int k = 0; k < kc; k++) {
                float *dst = panel + (size_t)k * (size_t)NR;
                int c = 0;
                for (; c < w; c++) dst[c] = x[(size_t)c * sc + (size_t)k];
                for (; c < NR; c++) dst[c] = 0.0f;
            }
        }
    }
}

/* op(B)[p0+k, j0+c] for k < kc, c < nc into NR-wide panels (pack_panels) */
static void pack_b(const sb_canon_ukernel *u, const sb_canon_gemm *g, int p0, int kc, int j0,
                   int nc, int NR, float *bp) {
    size_t ldb = (size_t)g->ldb;
    if (!g->transB) /* B stored [K, N] */
        pack_panels(u, g->B + (size_t)p0 * ldb + (size_t)j0, ldb, 1, kc, nc, NR, bp);
    else /* B stored [N, K]: op(B)[k,j] = B[j*ldb + k] */
        pack_panels(u, g->B + (size_t)j0 * ldb + (size_t)p0, 1, ldb, kc, nc, NR, bp);
}

/* ====================================================================== */
/* the region driver                                                      */
/* ====================================================================== */

/* One row panel: the kernel's panel call, or — for kernels with the full
 * tile only (packed operands, no epilogue) — its tiles, each edge tile run
 * on a zero-padded copy. */
static void run_panel(const sb_canon_ukernel *u, const sb_canon_panel *t) {
    if (u->panel) {
        u->panel(t);
        return;
    }
    SB_ASSERT(t->a_k == u->mr && t->a_r == 1 && t->b_k == (size_t)u->nr && !t->ep);
    float tmp[MR_MAX * NR_MAX] __attribute__((aligned(64)));
    size_t ldt = (size_t)u->nr;
    for (int j = 0; j < t->nc; j += u->nr) {
        const float *b = t->b + (size_t)(j / u->nr) * t->b_j;
        float *w = t->w + j;
        int nr = t->nc - j < u->nr ? t->nc - j : u->nr;
        if (t->mr == u->mr && nr == u->nr) {
            u->fn(t->kc, t->a, b, w, t->ldw, t->first);
            continue;
        }
        size_t row = (size_t)nr * sizeof(float);
        if (!t->first)
            for (int r = 0; r < t->mr; r++) memcpy(tmp + (size_t)r * ldt, w + (size_t)r * t->ldw, row);
        u->fn(t->kc, t->a, b, tmp, ldt, t->first);
        for (int r = 0; r < t->mr; r++) memcpy(w + (size_t)r * t->ldw, tmp + (size_t)r * ldt, row);
    }
}

/* The height of the row panel starting at r of n rows: MR, except that
 * with a panel call a short last panel is evened out with the one before it
 * (14 + 2 rows run as 8 + 8: a panel of few rows has too few accumulator
 * chains to hide the FMA latency). Speed only. */
static int panel_rows(const sb_canon_ukernel *u, int MR, int r, int n) {
    int left = n - r;
    if (left <= MR) return left;
    if (u->panel && left < 2 * MR && left - MR < MR / 2) return (left + 1) / 2;
    return MR;
}

/* C[r, c] = alpha*W[r, c] (+ beta*C[r, c]) over rows x cols, elementwise:
 * the product rounded, then the sum. W may be C itself (beta == 0). With
 * wt set, W is stored transposed: W[c*ldw + r]. */
static void epilogue(const sb_canon_gemm *g, float *c, size_t ldc, const float *w, size_t ldw,
                     int rows, int cols, int wt) {
    float alpha = g->alpha, beta = g->beta;
    for (int r = 0; r < rows; r++) {
        float *cr = c + (size_t)r * ldc;
        const float *wr = wt ? w + r : w + (size_t)r * ldw;
        size_t ws = wt ? ldw : 1;
        if (beta != 0.0f) {
            for (int j = 0; j < cols; j++) {
                float t = alpha * wr[(size_t)j * ws];
                cr[j] = t + beta * cr[j];
            }
        } else {
            for (int j = 0; j < cols; j++) cr[j] = alpha * wr[(size_t)j * ws];
        }
    }
}

/* The normal orientation: tile rows are rows of C (op(A) broadcast), tile
 * columns are columns of C (op(B) in vector lanes).
 *
 * Loops: column blocks of NC (or NC_ACC), k-blocks of KC (op(B)'s block
 * packed once per k-block, or read in place for few rows), row panels of
 * op(A) (packed; for few columns read in place when op(A) = Aᵀ, else its
 * rows copied a constant stride apart), each one kernel call over the
 * block's columns (panels of up to MR_NARROW rows when the region has at
 * most 16 columns). The accumulators live in C when beta ==
 * 0 (C is not read), and also when beta != 0 but K fits one k-block with a
 * kernel that applies the epilogue itself (C is read once, at the end of the
 * chain); else in the workspace, in strips of rows. */
#define NC_ACC 256 /* column block when the accumulators live in the workspace */

/* region_normal for a product of at most SB_CANON_SHORT_K steps with
 * op(A) = A: the short-k call per strip of SHORT_ROWS rows (their op(A)
 * rows stay in L1 while the call walks the column tiles) and column block,
 * op(A) read in place, op(B) = B too, op(B) = Bᵀ packed. */
#define SHORT_ROWS 256

static void region_short(const sb_canon_ukernel *u, const sb_canon_gemm *g, int m0, int m1,
                         int n0, int n1, sb_canon_ws *ws) {
    const size_t lda = (size_t)g->lda, ldc = (size_t)g->ldc;
    sb_canon_panel t;
    t.kc = g->K, t.first = 1, t.ep = g->alpha != 1.0f || g->beta != 0.0f;
    t.a_k = 1, t.a_r = (ptrdiff_t)lda, t.ldw = ldc, t.alpha = g->alpha, t.beta = g->beta;
    for (int jc = n0; jc < n1; jc += NC) {
        t.nc = n1 - jc < NC ? n1 - jc : NC;
        if (!g->transB) {
            t.b = g->B + (size_t)jc, t.b_k = (size_t)g->ldb, t.b_j = (size_t)u->nr;
        } else {
            pack_b(u, g, 0, g->K, jc, t.nc, u->nr, ws->bp);
            t.b = ws->bp, t.b_k = (size_t)u->nr, t.b_j = (size_t)g->K * (size_t)u->nr;
        }
        for (int s0 = m0; s0 < m1; s0 += SHORT_ROWS) {
            t.mr = m1 - s0 < SHORT_ROWS ? m1 - s0 : SHORT_ROWS;
            t.a = g->A + (size_t)s0 * lda;
            t.w = g->C + (size_t)s0 * ldc + (size_t)jc;
            u->stream(&t);
        }
    }
}

/* region_normal for a narrow product in one k-block — at most 16 columns,
 * op(B) = B — with the bookkeeping cut to the bone (it is a good part of
 * the time of a 32 x 16 x 32 product): the same panel calls on the same
 * operands as region_normal (B and Aᵀ in place, A's rows copied, the
 * accumulators in C, the epilogue in the kernel). */
static void region_narrow(const sb_canon_ukernel *u, const sb_canon_gemm *g, int m0, int m1,
                          int n0, int n1, sb_canon_ws *ws) {
    const size_t lda = (size_t)g->lda, ldc = (size_t)g->ldc;
    sb_canon_panel t;
    t.kc = g->K, t.nc = n1 - n0, t.first = 1, t.ep = g->alpha != 1.0f || g->beta != 0.0f;
    t.b = g->B + (size_t)n0, t.b_k = (size_t)g->ldb, t.b_j = (size_t)u->nr;
    t.ldw = ldc, t.alpha = g->alpha, t.beta = g->beta;
    t.a_k = g->transA ? (ptrdiff_t)lda : 1;
    t.a_r = g->transA ? 1 : (ptrdiff_t)lda;
    for (int ir = m0; ir < m1; ir += t.mr) {
        t.mr = panel_rows(u, u->mr_narrow, ir - m0, m1 - m0);
        t.a = g->A + (g->transA ? (size_t)ir : (size_t)ir * lda);
        t.w = g->C + (size_t)ir * ldc + (size_t)n0;
        u->panel(&t);
    }
}

/* op(A) may be read in place: Aᵀ (one row per k), or A whose rows do not
 * share an L1 set (SB_CANON_L1_SET_STRIDE); else it is packed. Speed only. */
static int a_in_place(const sb_canon_gemm *g) {
    return g->transA || !SB_CANON_L1_SET_STRIDE(g->lda);
}

static void region_normal(const sb_canon_ukernel *u, const sb_canon_gemm *g, int m0, int m1,
                          int n0, int n1, sb_canon_ws *ws) {
    if (u->stream && g->K <= SB_CANON_SHORT_K && !g->transA) {
        region_short(u, g, m0, m1, n0, n1, ws);
        return;
    }
    if (u->panel && n1 - n0 <= 16 && g->K <= KC && !g->transB && a_in_place(g)) {
        region_narrow(u, g, m0, m1, n0, n1, ws);
        return;
    }
    const size_t ldc = (size_t)g->ldc, ldb = (size_t)g->ldb;
    float *C = g->C;
    const int general = u->panel != NULL;
    const int in_c = g->beta == 0.0f || (general && g->K <= KC);
    /* the kernel applies alpha and beta on the last k-block */
    const int fused = general && in_c && (g->alpha != 1.0f || g->beta != 0.0f);
    /* Few rows: each B block would serve few tiles, so the kernel reads
     * op(B) = B in place (row k of a tile is B[k*ldb + j..]) instead of
     * packing it. Only where the operands come from changes. */
    const int direct_b = general && !g->transB && m1 - m0 <= DIRECT_B_ROWS;
    const int a_direct_ok = general && a_in_place(g);
    /* narrow panels (MR_NARROW rows) only over op(A) in place: packed
     * panels are MR rows */
    const int MR = a_direct_ok && n1 - n0 <= 16 ? u->mr_narrow : u->mr;
    /* Few columns: an A panel would serve one tile, so the kernel
     * broadcasts op(A) from where it is (a[k*a_k + r*a_r]); so it does for
     * op(A) = Aᵀ of one row panel, whose rows are already side by side (a
     * packed copy would differ only in its stride). */
    const int direct_a =
        a_direct_ok && (n1 - n0 <= DIRECT_A_COLS || (g->transA && m1 - m0 <= MR));
    const size_t lda = (size_t)g->lda;
    const int ncb = in_c ? NC : NC_ACC;
    const int width = n1 - n0 < ncb ? n1 - n0 : ncb;
    int strip = m1 - m0;
    if (!in_c) {
        strip = ACC_FLOATS / width / MR * MR;
        if (strip < MR) strip = MR; /* width <= NC, so MR*width <= ACC_FLOATS */
    }
    sb_canon_panel t; /* every field set below (no zeroing: small calls count) */
    t.a = ws->ap, t.a_k = u->mr, t.a_r = 1;
    if (direct_a) {
        t.a_k = g->transA ? (ptrdiff_t)lda : 1;
        t.a_r = g->transA ? 1 : (ptrdiff_t)lda;
    }
    t.alpha = g->alpha, t.beta = g->beta;
    for (int s0 = m0; s0 < m1; s0 += strip) {
        int s1 = m1 - s0 < strip ? m1 : s0 + strip;
        for (int jc = n0; jc < n1; jc += ncb) {
            int nc = n1 - jc < ncb ? n1 - jc : ncb;
            float *W = in_c ? C + (size_t)s0 * ldc + (size_t)jc : ws->acc;
            t.ldw = in_c ? ldc : (size_t)nc;
            t.nc = nc;
            for (int pc = 0; pc < g->K; pc += KC) {
                t.kc = g->K - pc < KC ? g->K - pc : KC;
                t.first = pc == 0;
                t.ep = fused && pc + t.kc == g->K;
                if (direct_b) {
                    t.b = g->B + (size_t)pc * ldb + (size_t)jc;
                    t.b_k = ldb;
                    t.b_j = (size_t)u->nr;
                } else {
                    pack_b(u, g, pc, t.kc, jc, nc, u->nr, ws->bp);
                    t.b = ws->bp;
                    t.b_k = (size_t)u->nr;
                    t.b_j = (size_t)t.kc * (size_t)u->nr;
                }
                for (int ir = s0; ir < s1; ir += t.mr) {
                    t.mr = panel_rows(u, MR, ir - s0, s1 - s0);
                    if (direct_a)
                        t.a = g->A + (g->transA ? (size_t)pc * lda + (size_t)ir
                                                : (size_t)ir * lda + (size_t)pc);
                    else
                        pack_a(u, g, ir, t.mr, pc, t.kc, u->mr, ws->ap);
                    t.w = W + (size_t)(ir - s0) * t.ldw;
                    run_panel(u, &t);
                }
            }
            if (!in_c || (!fused && g->alpha != 1.0f)) /* alpha == 1: alpha*acc == acc */
                epilogue(g, C + (size_t)s0 * ldc + (size_t)jc, ldc, W, t.ldw, s1 - s0, nc, 0);
        }
    }
}

#define KC_T SB_CANON_KB /* k-block of the transposed orientation (the canonical
                         * one: was 128 while blocks only carried the chain;
                         * 256 measured as fast on 8x9x25088 and 16x72x6272) */

/* The transposed orientation, for op(B) = Bᵀ (B stored [N, K]) and few
 * rows: tile rows are columns j of C, broadcast straight from B's rows
 * (B[j*ldb + k], never packed; panels of up to MR_NARROW of them when the
 * region has at most 16 rows), tile columns are rows i of C, op(A) packed
 * into NR-wide k-major panels. The accumulators — Cᵀ of the region — live
 * in the workspace (strips of C's columns), and the epilogue writes them
 * back transposed. Each element's chain is unchanged; only the lane it
 * runs in differs. Needs a kernel with the general entry. */
static void region_transposed(const sb_canon_ukernel *u, const sb_canon_gemm *g, int m0, int m1,
                              int n0, int n1, sb_canon_ws *ws) {
    const size_t ldc = (size_t)g->ldc, lda = (size_t)g->lda, ldb = (size_t)g->ldb;
    const int mreg = m1 - m0;
    int strip = ACC_FLOATS / mreg; /* columns of C per strip */
    SB_ASSERT(strip >= 1 && mreg <= NC);
    /* op(A) panels NR wide, or 16 (one vector) when that holds every row */
    const int pw = mreg <= 16 ? 16 : u->nr;
    const int MR = mreg <= 16 ? u->mr_narrow : u->mr;
    const int copy_b = SB_CANON_L1_SET_STRIDE(g->ldb);
    sb_canon_panel t; /* every field set below */
    t.a_k = 1, t.a_r = copy_b ? SB_CANON_COPY_LD : (ptrdiff_t)ldb;
    t.b = ws->bp, t.b_k = (size_t)pw, t.nc = mreg;
    t.w = ws->acc, t.ldw = (size_t)mreg, t.ep = 0, t.alpha = g->alpha, t.beta = g->beta;
    for (int s0 = n0; s0 < n1; s0 += strip) {
        int s1 = n1 - s0 < strip ? n1 : s0 + strip;
        for (int pc = 0; pc < g->K; pc += KC_T) {
            t.kc = g->K - pc < KC_T ? g->K - pc : KC_T;
            t.first = pc == 0;
            /* op(A)ᵀ's rows k, columns i: A[i*lda + k] */
            pack_panels(u, g->A + (size_t)m0 * lda + (size_t)pc, 1, lda, t.kc, mreg, pw, ws->bp);
            t.b_j = (size_t)t.kc * (size_t)pw;
            for (int jr = s0; jr < s1; jr += t.mr) {
                t.mr = panel_rows(u, MR, jr - s0, s1 - s0);
                t.a = g->B + (size_t)jr * ldb + (size_t)pc;
                if (copy_b) { /* B's rows would share one L1 set: copied apart */
                    for (int r = 0; r < t.mr; r++)
                        memcpy(ws->ap + (size_t)r * SB_CANON_COPY_LD, t.a + (size_t)r * ldb,
                               (size_t)t.kc * sizeof(float));
                    t.a = ws->ap;
                }
                t.w = ws->acc + (size_t)(jr - s0) * t.ldw;
                u->panel(&t);
            }
        }
        float *c = g->C + (size_t)m0 * ldc + (size_t)s0;
        int cols = s1 - s0;
        if (g->beta == 0.0f && u->pack_t) { /* transposing copies, then alpha */
            for (int j = 0; j < cols; j += 16) {
                int w = cols - j < 16 ? cols - j : 16;
                u->pack_t(ws->acc + (size_t)j * t.ldw, t.ldw, w, mreg, c + j, ldc, w);
            }
            if (g->alpha != 1.0f) epilogue(g, c, ldc, c, ldc, mreg, cols, 0);
        } else {
            epilogue(g, c, ldc, ws->acc, t.ldw, mreg, cols, 1);
        }
    }
}

/* Which orientation: the transposed one for op(B) = Bᵀ when the region has
 * at most one vector of rows (op(B) would be packed for only a few rows of
 * use each) or fewer columns than one vector (the normal orientation would
 * leave most lanes idle). Measured on AVX-512: 1.3-1.6x on 8x9, 16x72,
 * 16x256 and 32x10; with 32 or more of both, packing op(B) and running the
 * normal orientation is faster (0.87-0.95x transposed). Speed only. */
#define TRANSPOSED_ROWS 16

static int use_transposed(const sb_canon_ukernel *u, const sb_canon_gemm *g, int mreg,
                          int nreg) {
    if (!u->panel || !u->pack_t || !g->transB || g->transA) return 0;
    /* B's rows at an L1-set stride are copied first (region_transposed);
     * with fewer rows than a vector, whose lanes would run half empty, the
     * normal orientation's packing is then faster (8 x 64 x 1024: 58
     * against 43 GF/s; 16 x 64 x 1024: 74 against 87) */
    if (SB_CANON_L1_SET_STRIDE(g->ldb) && mreg < TRANSPOSED_ROWS) return 0;
    return mreg <= TRANSPOSED_ROWS || (nreg < TRANSPOSED_ROWS && mreg <= NC);
}

/* The few-columns NT call (canonical_gemm_x86.c) instead of either
 * orientation: op(B) = Bᵀ, op(A) = A, at most SB_CANON_NT_FEW_N columns in
 * the region, at least 16 rows in A, and more steps than the short-k call
 * takes. With a whole vector of columns and few steps the normal
 * orientation is faster (its packed op(B) serves every row panel): at
 * 64 x 16, K 16 and 32 it ran 75 and 89 GF/s against 59 and 79 here; from
 * K 64 or with fewer columns this call wins (32 x 10 x 784: 112 against 77,
 * 256 x 12 x 128: 104 against 81, 512 x 8 x 20: 59 against 48). Speed only. */
static int use_nt_few(const sb_canon_ukernel *u, const sb_canon_gemm *g, int nreg) {
    if (!u->nt_few || !g->transB || g->transA || nreg > SB_CANON_NT_FEW_N || g->M < 16) return 0;
    return g->K > SB_CANON_SHORT_K && (nreg < 16 || g->K >= 64);
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
    const sb_canon_ukernel *u = ukernel_for(isa);
    if (use_nt_few(u, g, n1 - n0)) {
        u->nt_few(g, m0, m1, n0, n1, ws->bp, (size_t)KC * NC);
        return;
    }
    if (use_transposed(u, g, m1 - m0, n1 - n0))
        region_transposed(u, g, m0, m1, n0, n1, ws);
    else
        region_normal(u, g, m0, m1, n0, n1, ws);
}

/* ====================================================================== */
/* the thread split (speed only)                                          */
/* ====================================================================== */

#define SPLIT_N 16 /* column split unit: one vector */
#define SPLIT_M 16 /* row split unit */
/* A part is worth a worker from about 1 MFLOP (~10 us on one core): handing
 * a job to the pool's spinning helpers and waiting for them costs 1-3 us,
 * ~40 us when they have gone to sleep (threadpool.c; measured here). */
#define MIN_FLOPS_PER_PART 1048576.0

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
