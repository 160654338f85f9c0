/* canonical_norm.c — canonical mode's layer norm (docs/canonical.md §3.4):
 * the "ref" backend's canonical entries, the scalar statement of the order,
 * and the column-range piece "blas" runs on its workers.
 *
 * What it is: ref_norm.c's loops with every reduction through the canonical
 * block tree (canon_sum) or its FMA form (canon_dot: each block of 64 one
 * fmaf chain from +0.0f, the block sums through the same tree), and the
 * affine step one fmaf. Every result depends on the row or column alone, so
 * "blas" (blas_norm.c) reaches the same bits by calling these functions on
 * disjoint row or column ranges. Embedding has no canonical variant: its
 * token-order scatter-add (ref_norm.c) is already independent of any split.
 *
 * What it is not: fast; and not the deterministic-mode layer norm.
 */
#include "canonical.h"
#include "norm_internal.h"
#include "sb_clones.h"

#include <math.h>
#include <stddef.h>

/* SB_FMA_CLONES (sb_clones.h): with FMA in the target fmaf is one
 * instruction instead of a libm call (the call cost 9% of the tiny
 * transformer's canonical step); the same bits either way. */

/* Per row: m = canon_sum(x) / C; d_i = x_i - m; v = canon_dot(d, d) / C;
 * rstd = 1.0f / sqrtf(v + eps); out_i = fmaf(d_i * rstd, w_i, b_i). */
SB_FMA_CLONES
void sb_canon_ref_layernorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                                    const float *inp, const float *weight, const float *bias,
                                    int R, int C, float eps) {
    (void)be;
    SB_ASSERT(R >= 0 && C >= 1);
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * (size_t)C;
        float *o = out + (size_t)r * (size_t)C;
        const float m = sb_canon_sum(x, (size_t)C, 1) / (float)C;
        sb_canon_acc q;
        sb_canon_acc_init(&q);
        for (int i = 0; i < C; i++) {
            float d = x[i] - m;
            sb_canon_acc_fma(&q, d, d);
        }
        const float v = sb_canon_acc_end(&q) / (float)C;
        const float rs = 1.0f / sqrtf(v + eps);
        for (int i = 0; i < C; i++) o[i] = fmaf((x[i] - m) * rs, weight[i], bias[i]);
        mean[r] = m;
        rstd[r] = rs;
    }
}

/* Columns [j0, j1): dweight[j] = dweight[j] + canon_dot over r = 0..R-1 of
 * (dout[r,j], xhat[r,j]) with xhat = (x - mean[r]) * rstd[r];
 * dbias[j] = dbias[j] + canon_sum over r of dout[r,j]. */
SB_FMA_CLONES
void sb_canon_layernorm_param_cols(float *dweight, float *dbias, const float *dout,
                                   const float *inp, const float *mean, const float *rstd, int R,
                                   int C, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        sb_canon_acc sw, sb;
        sb_canon_acc_init(&sw), sb_canon_acc_init(&sb);
        for (int r = 0; r < R; r++) {
            size_t e = (size_t)r * (size_t)C + (size_t)j;
            sb_canon_acc_fma(&sw, dout[e], (inp[e] - mean[r]) * rstd[r]);
            sb_canon_acc_add(&sb, dout[e]);
        }
        float tw = sb_canon_acc_end(&sw), tb = sb_canon_acc_end(&sb);
        if (dweight) dweight[j] = dweight[j] + tw;
        if (dbias) dbias[j] = dbias[j] + tb;
    }
}

/* dinp, per row: g_i = dout_i * w_i; xhat_i = (x_i - m) * rstd;
 * a = canon_sum(g) / C; b = canon_dot(g, xhat) / C;
 * dinp_i = dinp_i + fmaf(-xhat_i, b, g_i - a) * rstd. */
SB_FMA_CLONES
void sb_canon_ref_layernorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *mean, const float *rstd, int R, int C) {
    (void)be;
    SB_ASSERT(R >= 0 && C >= 1);
    if (dweight || dbias)
        sb_canon_layernorm_param_cols(dweight, dbias, dout, inp, mean, rstd, R, C, 0, C);
    if (!dinp) return;
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * (size_t)C, *g = dout + (size_t)r * (size_t)C;
        float *d = dinp + (size_t)r * (size_t)C;
        const float m = mean[r], rs = rstd[r];
        sb_canon_acc sa, sbx;
        sb_canon_acc_init(&sa), sb_canon_acc_init(&sbx);
        for (int i = 0; i < C; i++) {
            float gi = g[i] * weight[i];
            sb_canon_acc_add(&sa, gi);
            sb_canon_acc_fma(&sbx, gi, (x[i] - m) * rs);
        }
        const float a = sb_canon_acc_end(&sa) / (float)C, b = sb_canon_acc_end(&sbx) / (float)C;
        for (int i = 0; i < C; i++) {
            float gi = g[i] * weight[i];
            float xhat = (x[i] - m) * rs;
            d[i] = d[i] + fmaf(-xhat, b, gi - a) * rs;
        }
    }
}
