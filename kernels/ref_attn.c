/* ref_attn.c — softmax over rows, the residual add, and causal multi-head
 * scaled dot-product attention: the "ref" backend's entries (all modes) and
 * the row and per-head pieces "blas" runs on its workers (blas_attn.c).
 *
 * What it is: the oracle for these ops, in the style of ref.c — float
 * accumulators, -ffp-contract=off (every a*b+c two roundings unless written
 * as fmaf), no threads, no SIMD. One code path serves both orders: the
 * `canonical` flag switches the softmax row to canonical mode's exp and
 * block-tree sums (docs/canonical.md §3.6), and the GEMM steps of attention
 * go through whatever gemm the caller hands in — ref's own loops (be->i->gemm
 * of ref, or of ref in canonical mode: the §2 oracle), cblas_sgemm or the
 * canonical engine on blas. So ref and blas in canonical mode run the same
 * steps on the same data, and equal each other bit for bit.
 *
 * What it is not: a fused (flash) attention; att [B,H,T,T] is materialised
 * and the masked upper triangle is computed and then overwritten.
 */
#include "attn_internal.h"
#include "canonical.h"

#include <math.h>
#include <stddef.h>

/* ====================================================================== */
/* softmax rows                                                           */
/* ====================================================================== */

/* canon_dot over j < n: blocks of SB_CANON_BLOCK pairs, each one fmaf chain
 * from +0.0f in increasing j, the block sums through the canonical tree. */
static float canon_dot(const float *a, const float *b, int n) {
    sb_canon_tree t;
    sb_canon_tree_init(&t);
    for (int j0 = 0; j0 < n; j0 += SB_CANON_BLOCK) {
        int j1 = n - j0 < SB_CANON_BLOCK ? n : j0 + SB_CANON_BLOCK;
        float s = 0.0f;
        for (int j = j0; j < j1; j++) s = fmaf(a[j], b[j], s);
        sb_canon_tree_push(&t, s);
    }
    return sb_canon_tree_end(&t);
}

/* max: first valid entry, replaced by each later one that is greater (in
 * increasing j; no rounding). Sum of e_j over j < n: sequential from 0.0f
 * in increasing j (deterministic/fast), canon_sum (canonical). */
void sb_attn_softmax_row(float *p, const float *x, int n, int C, int canonical) {
    SB_ASSERT(n >= 1 && n <= C);
    float max = x[0];
    for (int j = 1; j < n; j++)
        if (x[j] > max) max = x[j];
    float sum = 0.0f;
    if (canonical) {
        for (int j = 0; j < n; j++) p[j] = x[j] - max;
        sb_canon_expf_n(sb_canon_math_isa(), p, p, (size_t)n); /* sb_canon_expf per element */
        sum = sb_canon_sum(p, (size_t)n, 1);
    } else {
        for (int j = 0; j < n; j++) {
            float e = expf(x[j] - max);
            p[j] = e;
            sum = sum + e;
        }
    }
    for (int j = 0; j < n; j++) p[j] = p[j] / sum;
    for (int j = n; j < C; j++) p[j] = 0.0f; /* masked: exactly +0.0f */
}

/* s = sum over j < n of p_j*dp_j: sequential from 0.0f in increasing j,
 * each product rounded then added (deterministic/fast); canon_dot
 * (canonical). Then dx_j (=|+=) p_j * (dp_j - s). */
void sb_attn_softmax_backward_row(float *dx, const float *p, const float *dp, int n, int C,
                                  int canonical, int add) {
    SB_ASSERT(n >= 1 && n <= C);
    float s = 0.0f;
    if (canonical) {
        s = canon_dot(p, dp, n);
    } else {
        for (int j = 0; j < n; j++) s = s + p[j] * dp[j];
    }
    if (add) {
        for (int j = 0; j < n; j++) dx[j] = dx[j] + p[j] * (dp[j] - s);
    } else {
        for (int j = 0; j < n; j++) dx[j] = p[j] * (dp[j] - s);
        for (int j = n; j < C; j++) dx[j] = 0.0f;
    }
}

/* ====================================================================== */
/* attention, one head                                                    */
/* ====================================================================== */

/* kernels.h: att = G(q·kᵀ, alpha = scale) over all keys; each row t then
 * the softmax row with t + 1 valid entries (in place); out = G(att·v), K = T. */
void sb_attn_head_forward(sb_attn_gemm_fn gemm, void *gctx, int canonical, float *out, float *att,
                          const float *q, const float *k, const float *v, int T, int D) {
    const float scale = 1.0f / sqrtf((float)D);
    gemm(gctx, 0, 1, T, T, D, scale, q, D, k, D, 0.0f, att, T);
    for (int t = 0; t < T; t++) {
        float *row = att + (size_t)t * (size_t)T;
        sb_attn_softmax_row(row, row, t + 1, T, canonical);
    }
    gemm(gctx, 0, 0, T, D, T, 1.0f, att, T, v, D, 0.0f, out, D);
}

/* The steps of kernels.h's backward for query rows [t0, t1), keys [0, Tk):
 * datt rows = G(dout·vᵀ) (columns < Tk; the rest is never read and set to
 * +0.0f by the row backward); dv_dst = G(attᵀ·dout) over these rows (beta
 * kv_beta); dpre rows in place of datt; dq rows += G(dpre·k, alpha scale);
 * dk_dst = G(dpreᵀ·q, alpha scale) (beta kv_beta). */
void sb_attn_head_backward_rows(sb_attn_gemm_fn gemm, void *gctx, int canonical, float *dq,
                                float *dk_dst, float *dv_dst, float kv_beta, float *s,
                                const float *dout, const float *q, const float *k, const float *v,
                                const float *att, int T, int D, int t0, int t1, int Tk) {
    SB_ASSERT(0 <= t0 && t0 < t1 && t1 <= Tk && Tk <= T);
    const float scale = 1.0f / sqrtf((float)D);
    const int n = t1 - t0;
    const size_t ro = (size_t)t0 * (size_t)T, rd = (size_t)t0 * (size_t)D;
    gemm(gctx, 0, 1, n, Tk, D, 1.0f, dout + rd, D, v, D, 0.0f, s + ro, T);
    gemm(gctx, 1, 0, Tk, D, n, 1.0f, att + ro, T, dout + rd, D, kv_beta, dv_dst, D);
    for (int t = t0; t < t1; t++) {
        float *row = s + (size_t)t * (size_t)T;
        sb_attn_softmax_backward_row(row, att + (size_t)t * (size_t)T, row, t + 1, T, canonical, 0);
    }
    gemm(gctx, 0, 0, n, D, Tk, scale, s + ro, T, k, D, 1.0f, dq + rd, D);
    gemm(gctx, 1, 0, Tk, D, n, scale, s + ro, T, q + rd, D, kv_beta, dk_dst, D);
}

/* ====================================================================== */
/* "ref" entries                                                          */
/* ====================================================================== */

static int is_canonical(const sb_backend *be) { return be->mode == SB_MODE_CANONICAL; }

static void ref_gemm_cb(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    sb_backend *be = ctx;
    be->i->gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* rows r = 0..R-1, each independent */
void sb_ref_softmax_forward(sb_backend *be, float *out, const float *inp, int R, int C) {
    SB_ASSERT(R >= 0 && C >= 1);
    for (int r = 0; r < R; r++) {
        size_t o = (size_t)r * (size_t)C;
        sb_attn_softmax_row(out + o, inp + o, C, C, is_canonical(be));
    }
}

void sb_ref_softmax_backward(sb_backend *be, float *dinp, const float *dout, const float *out,
                             int R, int C) {
    SB_ASSERT(R >= 0 && C >= 1);
    for (int r = 0; r < R; r++) {
        size_t o = (size_t)r * (size_t)C;
        sb_attn_softmax_backward_row(dinp + o, out + o, dout + o, C, C, is_canonical(be), 1);
    }
}

void sb_ref_residual_forward(sb_backend *be, float *out, const float *a, const float *b, size_t n) {
    (void)be;
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void sb_ref_residual_backward(sb_backend *be, float *da, float *db, const float *dout, size_t n) {
    (void)be;
    SB_ASSERT(!da || da != db);
    if (da)
        for (size_t i = 0; i < n; i++) da[i] = da[i] + dout[i];
    if (db)
        for (size_t i = 0; i < n; i++) db[i] = db[i] + dout[i];
}

/* heads (b, h) in increasing order, each independent */
void sb_ref_attention_forward(sb_backend *be, float *out, float *att, const float *q,
                              const float *k, const float *v, int B, int H, int T, int D) {
    SB_ASSERT(B >= 0 && H >= 0 && T >= 1 && D >= 1);
    const size_t td = (size_t)T * (size_t)D, tt = (size_t)T * (size_t)T;
    for (size_t h = 0; h < (size_t)B * (size_t)H; h++)
        sb_attn_head_forward(ref_gemm_cb, be, is_canonical(be), out + h * td, att + h * tt,
                             q + h * td, k + h * td, v + h * td, T, D);
}

/* one head at a time, all query rows at once: dk, dv are one GEMM chain
 * over t = 0..T-1 per element (ref's gemm: from 0.0f, increasing t) */
void sb_ref_attention_backward(sb_backend *be, float *dq, float *dk, float *dv, float *scratch,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *att, int B, int H, int T, int D) {
    SB_ASSERT(B >= 0 && H >= 0 && T >= 1 && D >= 1);
    const size_t td = (size_t)T * (size_t)D, tt = (size_t)T * (size_t)T;
    for (size_t h = 0; h < (size_t)B * (size_t)H; h++)
        sb_attn_head_backward_rows(ref_gemm_cb, be, is_canonical(be), dq + h * td, dk + h * td,
                                   dv + h * td, 1.0f, scratch + h * tt, dout + h * td, q + h * td,
                                   k + h * td, v + h * td, att + h * tt, T, D, 0, T, T);
}
