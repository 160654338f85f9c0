/* ref_norm.c — the "ref" backend's layer norm and embedding: plain scalar
 * loops, one fixed order per reduction, written next to it.
 *
 * What it is: the float32 oracle for layer norm (forward with saved mean and
 * rstd; input, weight and bias gradients) and the embedding lookup with its
 * scatter-add gradient, in the style of ref.c: float accumulators,
 * -ffp-contract=off (every a*b+c is two roundings), no threads, no SIMD.
 * rsqrt is 1.0f / sqrtf(v): two correctly rounded operations. The embedding
 * functions are also what canonical mode and blas's deterministic mode run
 * (on column ranges): a scatter-add in token order has nothing a split could
 * change.
 *
 * What it is not: fast, nor canonical mode's layer norm (canonical_norm.c,
 * which uses fmaf and the block tree). Shapes and meaning are in kernels.h.
 */
#include "norm_internal.h"

#include <math.h>
#include <stddef.h>

/* ====================================================================== */
/* layer norm                                                             */
/* ====================================================================== */

/* Per row r (rows independent): m = (x_0 + x_1 + ... + x_{C-1}) / C, summed
 * sequentially from 0.0f in increasing i; v = (d_0*d_0 + ... ) / C with
 * d_i = x_i - m, the same order (each product rounded, then the sum);
 * rstd = 1.0f / sqrtf(v + eps); out_i = ((x_i - m) * rstd) * w_i + b_i. */
void sb_ref_layernorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias, int R,
                              int C, float eps) {
    (void)be;
    SB_ASSERT(R >= 0 && C >= 1);
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * (size_t)C;
        float *o = out + (size_t)r * (size_t)C;
        float s = 0.0f;
        for (int i = 0; i < C; i++) s = s + x[i];
        const float m = s / (float)C;
        float q = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = x[i] - m;
            q = q + d * d;
        }
        const float v = q / (float)C;
        const float rs = 1.0f / sqrtf(v + eps);
        for (int i = 0; i < C; i++) {
            float xhat = (x[i] - m) * rs;
            o[i] = xhat * weight[i] + bias[i];
        }
        mean[r] = m;
        rstd[r] = rs;
    }
}

/* Columns [j0, j1): per column, r = 0..R-1 increasing from 0.0f,
 * sw = sw + dout[r,j] * xhat[r,j] (xhat = (x - mean[r]) * rstd[r], product
 * rounded, then the sum) and sb = sb + dout[r,j]; then dweight[j] =
 * dweight[j] + sw, dbias[j] = dbias[j] + sb. */
void sb_ref_layernorm_param_cols(float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *mean, const float *rstd, int R,
                                 int C, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        float sw = 0.0f, sb = 0.0f;
        for (int r = 0; r < R; r++) {
            size_t e = (size_t)r * (size_t)C + (size_t)j;
            float xhat = (inp[e] - mean[r]) * rstd[r];
            sw = sw + dout[e] * xhat;
            sb = sb + dout[e];
        }
        if (dweight) dweight[j] = dweight[j] + sw;
        if (dbias) dbias[j] = dbias[j] + sb;
    }
}

/* dinp, per row: g_i = dout_i * w_i; a = (g_0 + ... + g_{C-1}) / C and
 * b = (g_0*xhat_0 + ... ) / C, each sequential from 0.0f in increasing i
 * (products rounded); dinp_i = dinp_i + ((g_i - a) - xhat_i * b) * rstd.
 * dweight, dbias: sb_ref_layernorm_param_cols over all columns. */
void sb_ref_layernorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int R, int C) {
    (void)be;
    SB_ASSERT(R >= 0 && C >= 1);
    if (dweight || dbias)
        sb_ref_layernorm_param_cols(dweight, dbias, dout, inp, mean, rstd, R, C, 0, C);
    if (!dinp) return;
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * (size_t)C, *g = dout + (size_t)r * (size_t)C;
        float *d = dinp + (size_t)r * (size_t)C;
        const float m = mean[r], rs = rstd[r];
        float sa = 0.0f, sbx = 0.0f;
        for (int i = 0; i < C; i++) {
            float gi = g[i] * weight[i];
            float xhat = (x[i] - m) * rs;
            sa = sa + gi;
            sbx = sbx + gi * xhat;
        }
        const float a = sa / (float)C, b = sbx / (float)C;
        for (int i = 0; i < C; i++) {
            float gi = g[i] * weight[i];
            float xhat = (x[i] - m) * rs;
            d[i] = d[i] + ((gi - a) - xhat * b) * rs;
        }
    }
}

/* ====================================================================== */
/* embedding: the definition for every mode but blas fast                 */
/* ====================================================================== */

void sb_ref_embedding_forward(sb_backend *be, float *out, const float *table, const int32_t *ids,
                              int n, int V, int D) {
    (void)be;
    SB_ASSERT(n >= 0 && V >= 1 && D >= 1);
    for (int t = 0; t < n; t++) {
        SB_ASSERT(ids[t] >= 0 && ids[t] < V);
        const float *row = table + (size_t)ids[t] * (size_t)D;
        float *o = out + (size_t)t * (size_t)D;
        for (int j = 0; j < D; j++) o[j] = row[j];
    }
}

/* Tokens t = 0..n-1 in increasing order, each doing dtable[ids[t], j] =
 * dtable[ids[t], j] + dout[t, j] for j in [j0, j1): a repeated id adds once
 * per occurrence, in token order. */
void sb_ref_embedding_backward_cols(float *dtable, const float *dout, const int32_t *ids, int n,
                                    int V, int D, int j0, int j1) {
    for (int t = 0; t < n; t++) {
        SB_ASSERT(ids[t] >= 0 && ids[t] < V);
        float *row = dtable + (size_t)ids[t] * (size_t)D;
        const float *g = dout + (size_t)t * (size_t)D;
        for (int j = j0; j < j1; j++) row[j] = row[j] + g[j];
    }
}

void sb_ref_embedding_backward(sb_backend *be, float *dtable, const float *dout,
                               const int32_t *ids, int n, int V, int D) {
    (void)be;
    SB_ASSERT(n >= 0 && V >= 1 && D >= 1);
    sb_ref_embedding_backward_cols(dtable, dout, ids, n, V, D, 0, D);
}
