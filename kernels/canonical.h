/* canonical.h — the internal interface of the canonical determinism mode
 * (SB_MODE_CANONICAL, kernels.h): the canonical math functions, the
 * canonical summation tree, the canonical GEMM engine with its SIMD paths,
 * and the op building blocks that "ref" and "blas" share.
 *
 * The specification of every op's order is docs/canonical.md; each function
 * below repeats the part of it that it implements.
 *
 * What it is not: a public header. Only the kernels/ sources and the kernel tests
 * include it; the engine and the harness see canonical mode only as
 * SB_MODE_CANONICAL through the vtable.
 */
#ifndef SB_CANONICAL_H
#define SB_CANONICAL_H

#include "kernels.h"

#include <math.h>
#include <stddef.h>

/* ====================================================================== */
/* math (canonical_math.c): our own, never libm                           */
/* ====================================================================== */

float sb_canon_expf(float x);
float sb_canon_logf(float x);
float sb_canon_tanhf(float x);
/* base^t for t >= 0 by binary exponentiation in double (Adam's 1 - beta^t) */
double sb_canon_powi(double base, int t);

/* ====================================================================== */
/* the canonical sum (canonical_ops.c)                                    */
/* ====================================================================== */

/* Sum of n floats in the canonical order: blocks of SB_CANON_BLOCK
 * consecutive elements (the last one shorter), each summed sequentially from
 * +0.0f (s = s + x[i]); then the block sums p[0..nb) combined by the
 * power-of-two tree:  for (s = 1; s < nb; s *= 2) for (i = 0; i + s < nb;
 * i += 2*s) p[i] = p[i] + p[i + s];  the result is p[0] (+0.0f when n == 0).
 * The shape depends on n only. */
#define SB_CANON_BLOCK 64

/* The tree, fed one block sum at a time (a binary counter: equal-size
 * subtrees merge left + right as soon as both exist; sb_canon_tree_end folds
 * what is left from the right). Gives exactly the loop above. */
typedef struct sb_canon_tree {
    float v[64];
    unsigned char level[64];
    int top;
} sb_canon_tree;

void sb_canon_tree_init(sb_canon_tree *t);
void sb_canon_tree_push(sb_canon_tree *t, float block_sum);
float sb_canon_tree_end(const sb_canon_tree *t);

/* The canonical sum (or dot) fed one term at a time — the same order as
 * sb_canon_sum / canon_dot: blocks of SB_CANON_BLOCK consecutive terms, each
 * accumulated from +0.0f, the block sums through the canonical tree. For
 * ops whose terms are not contiguous in memory (norms over strided data). */
typedef struct sb_canon_acc {
    sb_canon_tree t;
    float s;
    int fill;
} sb_canon_acc;

static inline void sb_canon_acc_init(sb_canon_acc *a) {
    sb_canon_tree_init(&a->t);
    a->s = 0.0f;
    a->fill = 0;
}

static inline void sb_canon_acc_block_done(sb_canon_acc *a) {
    if (++a->fill == SB_CANON_BLOCK) {
        sb_canon_tree_push(&a->t, a->s);
        a->s = 0.0f;
        a->fill = 0;
    }
}

static inline void sb_canon_acc_add(sb_canon_acc *a, float v) { /* s = s + v */
    a->s = a->s + v;
    sb_canon_acc_block_done(a);
}

static inline void sb_canon_acc_fma(sb_canon_acc *a, float x, float y) { /* s = fmaf(x, y, s) */
    a->s = fmaf(x, y, a->s);
    sb_canon_acc_block_done(a);
}

static inline float sb_canon_acc_end(sb_canon_acc *a) {
    if (a->fill) sb_canon_tree_push(&a->t, a->s);
    a->fill = 0;
    return sb_canon_tree_end(&a->t);
}
/* canonical sum of x[0], x[stride], ..., x[(n-1)*stride] */
float sb_canon_sum(const float *x, size_t n, size_t stride);

/* ====================================================================== */
/* op building blocks (canonical_ops.c), on element or row ranges         */
/* ====================================================================== */

void sb_canon_act_forward(sb_act act, float *out, const float *inp, size_t n);
void sb_canon_act_backward(sb_act act, float *dinp, const float *dout, const float *inp,
                           size_t n);
/* one row of softmax + cross-entropy; returns the row loss */
float sb_canon_xent_row(float *probs, const float *logits, int32_t label, int C);
void sb_canon_adam(float *w, float *m, float *v, const float *g, size_t n, float lr, float beta1,
                   float beta2, float eps, float weight_decay, int t);

/* The oracle entries of the "ref" backend in canonical mode (vtable
 * signatures; canonical_ops.c). */
void sb_canon_ref_gemm(sb_backend *be, int transA, int transB, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc);
void sb_canon_ref_bias_grad(sb_backend *be, float *dbias, const float *dout, int B, int N);
void sb_canon_ref_act_forward(sb_backend *be, sb_act act, float *out, const float *inp, size_t n);
void sb_canon_ref_act_backward(sb_backend *be, sb_act act, float *dinp, const float *dout,
                               const float *inp, size_t n);
void sb_canon_ref_xent_forward(sb_backend *be, float *probs, float *loss, const float *logits,
                               const int32_t *labels, int B, int C);
void sb_canon_ref_adam_update(sb_backend *be, float *w, float *m, float *v, const float *g,
                              size_t n, float lr, float beta1, float beta2, float eps,
                              float weight_decay, int t);
void sb_canon_ref_weight_grad(sb_backend *be, float *dW, const float *dout, const float *inp,
                              int B, int N, int K);

/* ====================================================================== */
/* the GEMM engine (canonical_gemm.c, canonical_gemm_x86.c)               */
/* ====================================================================== */

typedef enum sb_canon_isa {
    SB_CANON_ISA_SCALAR = 0,
    SB_CANON_ISA_AVX2 = 1,   /* AVX2 + FMA */
    SB_CANON_ISA_AVX512 = 2  /* AVX-512F */
} sb_canon_isa;

const char *sb_canon_isa_name(sb_canon_isa isa);
int sb_canon_isa_supported(sb_canon_isa isa); /* 1 when this CPU (and OS) runs it */
sb_canon_isa sb_canon_isa_best(void);
/* The path SB_CANONICAL_ISA asks for (scalar|avx2|avx512), or the best one
 * when it is unset or empty. Fails with SB_ERR_ARG on an unknown value or a
 * path this CPU cannot run. */
sb_status sb_canon_isa_from_env(sb_canon_isa *out, sb_error *err);

/* canonical_math_x86.c: y[i] = sb_canon_tanhf(x[i]) / sb_canon_expf(x[i])
 * for i < n, on the given path (every path gives the scalar function's
 * bits; y may be x). sb_canon_math_isa: the path the elementwise ops use,
 * SB_CANONICAL_ISA's (as sb_canon_isa_from_env, the best one when unset or
 * invalid), read once per process. */
void sb_canon_tanhf_n(sb_canon_isa isa, float *y, const float *x, size_t n);
void sb_canon_expf_n(sb_canon_isa isa, float *y, const float *x, size_t n);
sb_canon_isa sb_canon_math_isa(void);

/* The GEMM's k-block (docs/canonical.md §2): each element's k range is cut
 * into blocks of SB_CANON_KB steps, each one fmaf chain from +0.0f, and the
 * block sums are added in increasing k (acc = p0; acc = acc + p1; ...).
 * Every GEMM path's cache block over k is exactly this block. */
#define SB_CANON_KB 256

/* A leading dimension that is a multiple of 1024 floats (4 KiB) puts every
 * row of an operand in the same set of a 32 KiB 8-way L1 cache: rows read
 * side by side in place evict each other (2-7x slower). The GEMM paths then
 * pack such an operand, or copy a k-block of its rows SB_CANON_COPY_LD
 * floats apart (17 cache lines: a different set for each row). Speed only. */
#define SB_CANON_L1_SET_STRIDE(ld) ((ld) % 1024 == 0)
#define SB_CANON_COPY_LD (SB_CANON_KB + 16)

/* The same chain fed one step at a time, for loops whose k is a nest of
 * indices (the convolution oracle, canonical_conv.c): p = fmaf(a, b, p) per
 * step; every SB_CANON_KB steps the block sum joins acc and p restarts at
 * +0.0f. sb_canon_chain_end gives the chain's acc (+0.0f after no step). */
typedef struct sb_canon_chain {
    float acc, p;
    int n;
} sb_canon_chain;
#define SB_CANON_CHAIN_INIT {0.0f, 0.0f, 0}
static inline void sb_canon_chain_step(sb_canon_chain *c, float a, float b) {
    c->p = fmaf(a, b, c->p);
    if (++c->n % SB_CANON_KB == 0) {
        c->acc = c->n == SB_CANON_KB ? c->p : c->acc + c->p;
        c->p = 0.0f;
    }
}
static inline float sb_canon_chain_end(const sb_canon_chain *c) {
    if (c->n % SB_CANON_KB == 0) return c->acc;
    return c->n < SB_CANON_KB ? c->p : c->acc + c->p;
}

/* A micro-kernel: one k-block of the MR x NR tile W[r*ldw + c] (r < MR,
 * c < NR): for k in 0..kc-1, for every (r, c):
 *     p[r][c] = fmaf(ap[k*MR + r], bp[k*NR + c], p[r][c])
 * from +0.0f; then W = p when first, else W = W + p (the block sum added to
 * the blocks before it). Each (r, c) is its own lane or register: nothing is
 * ever added across k-chains. */
typedef void (*sb_canon_ukernel_fn)(int kc, const float *ap, const float *bp, float *w,
                                    size_t ldw, int first);

/* The general call: one k-block (kc <= SB_CANON_KB) of a panel of mr rows
 * and nc columns of W (any nc; the kernel walks it in tiles of NR columns;
 * mr <= MR, or <= MR_NARROW when nc <= 16), its operands anywhere:
 *     p[r][c] = fmaf(a[k*a_k + r*a_r], b(k, c), p[r][c]),
 *     b(k, c) = b[(c/NR)*b_j + k*b_k + c%NR]
 * for k in 0..kc-1 from +0.0f; then acc = p when first, else acc = W + p.
 * A packed A panel has a_k = MR, a_r = 1; op(A) (or op(B), in the
 * transposed orientation) read in place has its own strides. Packed
 * B panels have b_k = NR, b_j = kc*NR; B read in place b_k = ldb, b_j = NR.
 * Only rows r < mr and columns c < nc are read or written. With ep set (the
 * last k-block, W being C itself) the kernel stores alpha*acc, or
 * alpha*acc + beta*W when beta != 0 — the product rounded, then the sum
 * (docs/canonical.md §2) — instead of acc (first is then set: with beta !=
 * 0, W = C only holds the accumulators of a one-block product). */
typedef struct sb_canon_panel {
    int kc, mr, nc, first, ep;
    const float *a;
    ptrdiff_t a_k, a_r;
    const float *b;
    size_t b_k, b_j;
    float *w;
    size_t ldw;
    float alpha, beta;
} sb_canon_panel;
typedef void (*sb_canon_panel_fn)(const sb_canon_panel *t);
/* Copies (no arithmetic), rows <= r < width zero-filled (width <= 16 for
 * pack_t, <= 32 for pack_n):
 * pack_t: dst[k*dstride + r] = src[r*ld + k]   (a transposing copy)
 * pack_n: dst[k*dstride + r] = src[k*ld + r]   (a strided copy)
 * for r < rows, k < kc. */
typedef void (*sb_canon_pack_fn)(const float *src, size_t ld, int rows, int kc, float *dst,
                                 size_t dstride, int width);
/* The short-k call: what the general call computes with first and the
 * whole k range in one call, kc <= SB_CANON_SHORT_K, any number of rows mr,
 * op(A)'s rows contiguous in k (a_k = 1, any a_r) and W = C (ep as there).
 * It keeps op(B)'s kc rows of a tile in registers and runs the rows of op(A)
 * past them, each element's chain, then its epilogue, then its store. */
#define SB_CANON_SHORT_K 14
/* The few-columns NT call: C[m0:m1, n0:n1] of g whole (every element's
 * k-blocks and block sums, then its epilogue, W = C) for op(A) = A, op(B) = Bᵀ,
 * 1 <= n1 - n0 <= SB_CANON_NT_FEW_N and g->M >= 16 (it may read A's rows
 * outside m0..m1, never C's). Rows of C in the lanes; op(A) is transposed
 * in registers as the chains go instead of packed. scratch: scratch_floats
 * floats it may overwrite (where it copies operands whose rows would
 * collide in the L1 cache). */
#define SB_CANON_NT_FEW_N 16
struct sb_canon_gemm;
typedef void (*sb_canon_nt_few_fn)(const struct sb_canon_gemm *g, int m0, int m1, int n0, int n1,
                                   float *scratch, size_t scratch_floats);
/* A SIMD path: either the general panel call (AVX-512) or only the full
 * tile over two packed panels (scalar, AVX2: the driver then packs both
 * operands, pads edge tiles through a copy and applies alpha and beta in a
 * pass of its own). */
typedef struct sb_canon_ukernel {
    int mr, mr_narrow, nr; /* MR, MR_NARROW (== MR without a panel call), NR */
    sb_canon_ukernel_fn fn;   /* NULL when panel is set */
    sb_canon_panel_fn panel;  /* NULL: fn only */
    sb_canon_panel_fn stream; /* the short-k call; NULL without a panel call */
    sb_canon_pack_fn pack_t, pack_n; /* NULL: the driver's scalar copies */
    sb_canon_nt_few_fn nt_few;       /* NULL: no few-columns NT call */
} sb_canon_ukernel;

/* canonical_gemm_x86.c: the AVX2 (6x16) and AVX-512 (14x32, 28x16 and
 * short-k) kernels; NULL fn and panel when not compiled for this target */
const sb_canon_ukernel *sb_canon_ukernel_avx2(void);
const sb_canon_ukernel *sb_canon_ukernel_avx512(void);

typedef struct sb_canon_gemm {
    int transA, transB, M, N, K;
    float alpha;
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float beta;
    float *C;
    int ldc;
} sb_canon_gemm;

/* Per-thread packing buffers (fixed size, independent of the problem). */
typedef struct sb_canon_ws sb_canon_ws;
sb_canon_ws *sb_canon_ws_new(void); /* NULL when out of memory */
void sb_canon_ws_free(sb_canon_ws *ws);

/* Computes C[m0:m1, n0:n1] of g in the canonical order (C = alpha*acc +
 * beta*C per element, acc the fmaf chain over k = 0..K-1 from +0.0f). Any
 * split of C into regions gives the same bits. */
void sb_canon_gemm_region(sb_canon_isa isa, const sb_canon_gemm *g, int m0, int m1, int n0, int n1,
                          sb_canon_ws *ws);

/* How blas splits C among up to max_parts workers: the number of parts, and
 * part p's region. Only the speed depends on this. */
int sb_canon_gemm_nparts(const sb_canon_gemm *g, int max_parts);
void sb_canon_gemm_part(const sb_canon_gemm *g, int p, int nparts, int *m0, int *m1, int *n0,
                        int *n1);

/* ====================================================================== */
/* the blas backend in canonical mode (blas_canonical.c)                  */
/* ====================================================================== */

sb_status sb_blas_canonical_init(sb_backend *be, sb_error *err);

#endif /* SB_CANONICAL_H */
