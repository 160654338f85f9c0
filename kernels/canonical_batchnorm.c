/* canonical_batchnorm.c — canonical mode's batch norm (docs/canonical.md
 * §3.5): the "ref" backend's canonical entries, the scalar statement of the
 * order, and the channel-range pieces "blas" runs on its workers.
 *
 * What it is: ref_batchnorm.c's loops with every per-channel reduction over
 * the batch through the canonical block tree — canon_sum, or canon_dot (each
 * block of 64 one fmaf chain from +0.0f) — over the channel's M = N*S values
 * in (n, s) order, and the affine steps one fmaf. Every result depends on its
 * channel alone, so "blas" (blas_batchnorm.c) reaches the same bits by
 * calling these functions on disjoint channel ranges, whatever the thread
 * count or SIMD path.
 *
 * What it is not: fast; and not the deterministic-mode batch norm.
 */
#include "batchnorm_internal.h"
#include "canonical.h"

#include <math.h>

#define ROW(p, n, c) ((p) + ((size_t)(n) * (size_t)C + (size_t)(c)) * (size_t)S)


/* Per channel c in [c0, c1), its M values in (n, s) order:
 * m = canon_sum(x) / M; d = x - m; q = canon_dot(d, d);
 * rstd = 1.0f / sqrtf(q / M + eps); vu = q / (M - 1);
 * running_mean = fmaf(momentum, m, (1.0f - momentum) * running_mean),
 * running_var = fmaf(momentum, vu, (1.0f - momentum) * running_var)
 * (NULL: skipped); out = fmaf((x - m) * rstd, weight[c], bias[c]). */
void sb_canon_bn_forward_chans(float *out, float *mean, float *rstd, float *running_mean,
                               float *running_var, const float *inp, const float *weight,
                               const float *bias, int N, int C, int S, float eps, float momentum,
                               int c0, int c1) {
    const size_t M = (size_t)N * (size_t)S;
    const float keep = 1.0f - momentum;
    for (int c = c0; c < c1; c++) {
        sb_canon_acc sx, q;
        sb_canon_acc_init(&sx), sb_canon_acc_init(&q);
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c);
            for (int s = 0; s < S; s++) sb_canon_acc_add(&sx, x[s]);
        }
        const float m = sb_canon_acc_end(&sx) / (float)M;
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c);
            for (int s = 0; s < S; s++) {
                float d = x[s] - m;
                sb_canon_acc_fma(&q, d, d);
            }
        }
        const float qs = sb_canon_acc_end(&q);
        const float rs = 1.0f / sqrtf(qs / (float)M + eps);
        const float vu = qs / (float)(M - 1);
        mean[c] = m;
        rstd[c] = rs;
        if (running_mean) running_mean[c] = fmaf(momentum, m, keep * running_mean[c]);
        if (running_var) running_var[c] = fmaf(momentum, vu, keep * running_var[c]);
        const float w = weight[c], b = bias[c];
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c);
            float *o = ROW(out, n, c);
            for (int s = 0; s < S; s++) o[s] = fmaf((x[s] - m) * rs, w, b);
        }
    }
}

/* rs = 1.0f / sqrtf(running_var[c] + eps);
 * out = fmaf((x - running_mean[c]) * rs, weight[c], bias[c]). */
void sb_canon_bn_eval_chans(float *out, const float *inp, const float *weight, const float *bias,
                            const float *running_mean, const float *running_var, int N, int C,
                            int S, float eps, int c0, int c1) {
    for (int n = 0; n < N; n++)
        for (int c = c0; c < c1; c++) {
            const float *x = ROW(inp, n, c);
            float *o = ROW(out, n, c);
            const float m = running_mean[c], rs = 1.0f / sqrtf(running_var[c] + eps);
            const float w = weight[c], b = bias[c];
            for (int s = 0; s < S; s++) o[s] = fmaf((x[s] - m) * rs, w, b);
        }
}

/* Per channel c in [c0, c1), its values in (n, s) order, xhat = (x -
 * mean[c]) * rstd[c]: sg = canon_sum(dout), sgx = canon_dot(dout, xhat);
 * dbias[c] = dbias[c] + sg, dweight[c] = dweight[c] + sgx (NULL: skipped);
 * a = sg / M, b = sgx / M, k = weight[c] * rstd[c];
 * dinp = dinp + fmaf(-xhat, b, dout - a) * k (NULL: skipped). */
void sb_canon_bn_backward_chans(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *mean,
                                const float *rstd, int N, int C, int S, int c0, int c1) {
    const float M = (float)((size_t)N * (size_t)S);
    for (int c = c0; c < c1; c++) {
        const float m = mean[c], rs = rstd[c];
        sb_canon_acc sg, sgx;
        sb_canon_acc_init(&sg), sb_canon_acc_init(&sgx);
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c), *g = ROW(dout, n, c);
            for (int s = 0; s < S; s++) {
                sb_canon_acc_add(&sg, g[s]);
                sb_canon_acc_fma(&sgx, g[s], (x[s] - m) * rs);
            }
        }
        const float tg = sb_canon_acc_end(&sg), tgx = sb_canon_acc_end(&sgx);
        if (dbias) dbias[c] = dbias[c] + tg;
        if (dweight) dweight[c] = dweight[c] + tgx;
        if (!dinp) continue;
        const float a = tg / M, b = tgx / M, k = weight[c] * rs;
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c), *g = ROW(dout, n, c);
            float *d = ROW(dinp, n, c);
            for (int s = 0; s < S; s++) {
                float xhat = (x[s] - m) * rs;
                d[s] = d[s] + fmaf(-xhat, b, g[s] - a) * k;
            }
        }
    }
}

/* ====================================================================== */
/* the vtable entries: every channel                                      */
/* ====================================================================== */

void sb_canon_ref_batchnorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                                    float *running_mean, float *running_var, const float *inp,
                                    const float *weight, const float *bias, int N, int C, int S,
                                    float eps, float momentum) {
    (void)be;
    SB_ASSERT(N >= 1 && C >= 1 && S >= 1 && (size_t)N * (size_t)S >= 2);
    sb_canon_bn_forward_chans(out, mean, rstd, running_mean, running_var, inp, weight, bias, N, C,
                              S, eps, momentum, 0, C);
}

void sb_canon_ref_batchnorm_forward_eval(sb_backend *be, float *out, const float *inp,
                                         const float *weight, const float *bias,
                                         const float *running_mean, const float *running_var,
                                         int N, int C, int S, float eps) {
    (void)be;
    SB_ASSERT(N >= 0 && C >= 1 && S >= 1);
    sb_canon_bn_eval_chans(out, inp, weight, bias, running_mean, running_var, N, C, S, eps, 0, C);
}

void sb_canon_ref_batchnorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *mean, const float *rstd, int N, int C, int S) {
    (void)be;
    SB_ASSERT(N >= 1 && C >= 1 && S >= 1);
    sb_canon_bn_backward_chans(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, S, 0, C);
}
