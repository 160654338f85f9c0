/* attn_internal.h — the softmax, residual and causal-attention pieces shared
 * between the kernels/ sources: the row functions and the per-head attention
 * steps (ref_attn.c), which "ref" runs with its own gemm and "blas"
 * (blas_attn.c) runs on its workers with cblas_sgemm or the canonical GEMM;
 * and the entries both backends install. kernels.h documents what each op
 * computes; each definition states its order.
 *
 * What it is not: a public header. Only kernels/ sources and the kernel tests
 * include it.
 */
#ifndef SB_ATTN_INTERNAL_H
#define SB_ATTN_INTERNAL_H

#include "kernels.h"

/* ---- rows (ref_attn.c); canonical != 0 selects canonical mode's order ---- */

/* p[0..C) = the softmax row of x[0..C) with n valid entries (1 <= n <= C),
 * kernels.h: p_j = +0.0f for j >= n. p == x is allowed. */
void sb_attn_softmax_row(float *p, const float *x, int n, int C, int canonical);
/* The row backward: s = D(p, dp) over j < n; when add, dx_j = dx_j +
 * p_j*(dp_j - s) for j < n (dx_j, j >= n, untouched); otherwise dx_j =
 * p_j*(dp_j - s) for j < n and +0.0f for n <= j < C. dx == dp is allowed. */
void sb_attn_softmax_backward_row(float *dx, const float *p, const float *dp, int n, int C,
                                  int canonical, int add);

/* ---- per-head steps, over a GEMM supplied by the caller ---- */

/* C = alpha * op(A) · op(B) + beta * C, kernels.h's gemm semantics. */
typedef void (*sb_attn_gemm_fn)(void *ctx, int transA, int transB, int M, int N, int K,
                                float alpha, const float *A, int lda, const float *B, int ldb,
                                float beta, float *C, int ldc);

/* One head: q, k, v, out [T, D], att [T, T] (kernels.h's forward). */
void sb_attn_head_forward(sb_attn_gemm_fn gemm, void *gctx, int canonical, float *out, float *att,
                          const float *q, const float *k, const float *v, int T, int D);
/* One head's backward for query rows [t0, t1) over keys [0, Tk) (Tk >= t1;
 * every key a row of [t0, t1) can see): rows t0..t1-1 of datt/dpre in s
 * [T, T]; dq rows t0..t1-1 += (beta 1); then dkv_k = G(dpreᵀ·q) and dkv_v =
 * G(attᵀ·dout) over those rows for keys 0..Tk-1, with beta = kv_beta into
 * dk_dst, dv_dst ([Tk, D], row stride D). The whole head is t0 = 0, t1 = Tk
 * = T, kv_beta = 1, dk_dst = dk, dv_dst = dv. */
void sb_attn_head_backward_rows(sb_attn_gemm_fn gemm, void *gctx, int canonical, float *dq,
                                float *dk_dst, float *dv_dst, float kv_beta, float *s,
                                const float *dout, const float *q, const float *k, const float *v,
                                const float *att, int T, int D, int t0, int t1, int Tk);

/* ---- "ref" entries (ref_attn.c); the mode is read from be (canonical or
 * not), the GEMM is be->i->gemm (ref_gemm, or the canonical oracle). They
 * are reentrant. ---- */
void sb_ref_softmax_forward(sb_backend *be, float *out, const float *inp, int R, int C);
void sb_ref_softmax_backward(sb_backend *be, float *dinp, const float *dout, const float *out,
                             int R, int C);
void sb_ref_residual_forward(sb_backend *be, float *out, const float *a, const float *b, size_t n);
void sb_ref_residual_backward(sb_backend *be, float *da, float *db, const float *dout, size_t n);
void sb_ref_attention_forward(sb_backend *be, float *out, float *att, const float *q,
                              const float *k, const float *v, int B, int H, int T, int D);
void sb_ref_attention_backward(sb_backend *be, float *dq, float *dk, float *dv, float *scratch,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *att, int B, int H, int T, int D);

/* ---- "blas" entries (blas_attn.c), all three modes ---- */
void sb_blas_softmax_forward(sb_backend *be, float *out, const float *inp, int R, int C);
void sb_blas_softmax_backward(sb_backend *be, float *dinp, const float *dout, const float *out,
                              int R, int C);
void sb_blas_residual_forward(sb_backend *be, float *out, const float *a, const float *b,
                              size_t n);
void sb_blas_residual_backward(sb_backend *be, float *da, float *db, const float *dout, size_t n);
void sb_blas_attention_forward(sb_backend *be, float *out, float *att, const float *q,
                               const float *k, const float *v, int B, int H, int T, int D);
void sb_blas_attention_backward(sb_backend *be, float *dq, float *dk, float *dv, float *scratch,
                                const float *dout, const float *q, const float *k, const float *v,
                                const float *att, int B, int H, int T, int D);

#endif /* SB_ATTN_INTERNAL_H */
