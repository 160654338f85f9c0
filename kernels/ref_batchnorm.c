/* ref_batchnorm.c — the "ref" backend's batch norm: plain scalar loops over
 * x[N, C, S], one fixed order per reduction, written next to it.
 *
 * What it is: the float32 oracle for batch norm in deterministic (and, on
 * ref, fast) mode, in the style of ref.c: float accumulators,
 * -ffp-contract=off (every a*b+c is two roundings), no threads, no SIMD.
 * Training forward with batch statistics (two passes: mean, then the sum of
 * squared deviations), the saved mean/rstd and PyTorch's running-statistics
 * update; eval forward from the running statistics; the training-mode
 * backward. Every channel is independent of every other, so blas's
 * deterministic mode runs these functions on disjoint channel ranges, and its
 * fast mode reuses the steps around the sums (finish, apply, dinp).
 *
 * What it is not: fast, nor canonical mode's batch norm
 * (canonical_batchnorm.c: fmaf and the block tree). Shapes and meaning are in
 * kernels.h; the layout in batchnorm_internal.h.
 */
#include "batchnorm_internal.h"

#include <math.h>

#define ROW(p, n, c) ((p) + ((size_t)(n) * (size_t)C + (size_t)(c)) * (size_t)S)

/* m = s / M (the caller's sum), then: v = q / M (biased: normalisation),
 * vu = q / (M - 1) (unbiased: running_var), rstd = 1.0f / sqrtf(v + eps);
 * running = (1.0f - momentum) * running + momentum * batch (two products
 * rounded, then the sum). M >= 2 (the forward asserts it). */
void sb_ref_bn_finish_chan(float *mean, float *rstd, float *running_mean, float *running_var,
                           int c, float m, float q, size_t M, float eps, float momentum) {
    const float v = q / (float)M;
    const float vu = q / (float)(M - 1);
    mean[c] = m;
    rstd[c] = 1.0f / sqrtf(v + eps);
    const float keep = 1.0f - momentum;
    if (running_mean) running_mean[c] = keep * running_mean[c] + momentum * m;
    if (running_var) running_var[c] = keep * running_var[c] + momentum * vu;
}

/* out = ((x - mean[c]) * rstd[c]) * weight[c] + bias[c], each step rounded */
void sb_ref_bn_apply_chans(float *out, const float *inp, const float *weight, const float *bias,
                           const float *mean, const float *rstd, int N, int C, int S, int c0,
                           int c1) {
    for (int n = 0; n < N; n++)
        for (int c = c0; c < c1; c++) {
            const float *x = ROW(inp, n, c);
            float *o = ROW(out, n, c);
            const float m = mean[c], rs = rstd[c], w = weight[c], b = bias[c];
            for (int s = 0; s < S; s++) o[s] = ((x[s] - m) * rs) * w + b;
        }
}

/* Per channel c in [c0, c1), over its M = N*S values in (n, s) order:
 * s = sum of x sequentially from 0.0f; m = s / M; q = sum of d*d with
 * d = x - m, sequentially from 0.0f (each product rounded, then the sum);
 * then sb_ref_bn_finish_chan and sb_ref_bn_apply_chans. */
void sb_ref_bn_forward_chans(float *out, float *mean, float *rstd, float *running_mean,
                             float *running_var, const float *inp, const float *weight,
                             const float *bias, int N, int C, int S, float eps, float momentum,
                             int c0, int c1) {
    const size_t M = (size_t)N * (size_t)S;
    for (int c = c0; c < c1; c++) {
        float sum = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c);
            for (int s = 0; s < S; s++) sum = sum + x[s];
        }
        const float m = sum / (float)M;
        float q = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c);
            for (int s = 0; s < S; s++) {
                float d = x[s] - m;
                q = q + d * d;
            }
        }
        sb_ref_bn_finish_chan(mean, rstd, running_mean, running_var, c, m, q, M, eps, momentum);
    }
    sb_ref_bn_apply_chans(out, inp, weight, bias, mean, rstd, N, C, S, c0, c1);
}

/* rs = 1.0f / sqrtf(running_var[c] + eps); out = ((x - running_mean[c]) * rs)
 * * weight[c] + bias[c]. No reduction. */
void sb_ref_bn_eval_chans(float *out, const float *inp, const float *weight, const float *bias,
                          const float *running_mean, const float *running_var, int N, int C,
                          int S, float eps, int c0, int c1) {
    for (int n = 0; n < N; n++)
        for (int c = c0; c < c1; c++) {
            const float *x = ROW(inp, n, c);
            float *o = ROW(out, n, c);
            const float m = running_mean[c], rs = 1.0f / sqrtf(running_var[c] + eps);
            const float w = weight[c], b = bias[c];
            for (int s = 0; s < S; s++) o[s] = ((x[s] - m) * rs) * w + b;
        }
}

/* Given channel c's sums sg = S(dout), sgx = S(dout*xhat): a = sg / M,
 * b = sgx / M, k = weight[c] * rstd[c]; dinp = dinp + ((dout - a) - xhat *
 * b) * k, with xhat = (x - mean[c]) * rstd[c] (each step rounded). */
static void dinp_chan(float *dinp, const float *dout, const float *inp, const float *weight,
                      const float *mean, const float *rstd, float sg, float sgx, int N, int C,
                      int S, int c) {
    const float M = (float)((size_t)N * (size_t)S);
    const float m = mean[c], rs = rstd[c];
    const float a = sg / M, b = sgx / M, k = weight[c] * rs;
    for (int n = 0; n < N; n++) {
        const float *x = ROW(inp, n, c), *g = ROW(dout, n, c);
        float *d = ROW(dinp, n, c);
        for (int s = 0; s < S; s++) {
            float xhat = (x[s] - m) * rs;
            d[s] = d[s] + ((g[s] - a) - xhat * b) * k;
        }
    }
}

void sb_ref_bn_dinp_chans(float *dinp, const float *dout, const float *inp, const float *weight,
                          const float *mean, const float *rstd, const float *sum_g,
                          const float *sum_gx, int N, int C, int S, int c0, int c1) {
    for (int c = c0; c < c1; c++)
        dinp_chan(dinp, dout, inp, weight, mean, rstd, sum_g[c], sum_gx[c], N, C, S, c);
}

/* Per channel c in [c0, c1), over its values in (n, s) order, sequentially
 * from 0.0f: sg = sum of dout, sgx = sum of dout * xhat (product rounded,
 * then the sum); dbias[c] = dbias[c] + sg, dweight[c] = dweight[c] + sgx
 * (either NULL: skipped); then the input gradient as sb_ref_bn_dinp_chans
 * (dinp NULL: skipped). */
void sb_ref_bn_backward_chans(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C, int S, int c0, int c1) {
    for (int c = c0; c < c1; c++) {
        const float m = mean[c], rs = rstd[c];
        float sg = 0.0f, sgx = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *x = ROW(inp, n, c), *g = ROW(dout, n, c);
            for (int s = 0; s < S; s++) {
                float xhat = (x[s] - m) * rs;
                sg = sg + g[s];
                sgx = sgx + g[s] * xhat;
            }
        }
        if (dbias) dbias[c] = dbias[c] + sg;
        if (dweight) dweight[c] = dweight[c] + sgx;
        if (dinp) dinp_chan(dinp, dout, inp, weight, mean, rstd, sg, sgx, N, C, S, c);
    }
}

/* ====================================================================== */
/* the vtable entries: every channel                                      */
/* ====================================================================== */

void sb_ref_batchnorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                              float *running_mean, float *running_var, const float *inp,
                              const float *weight, const float *bias, int N, int C, int S,
                              float eps, float momentum) {
    (void)be;
    SB_ASSERT(N >= 1 && C >= 1 && S >= 1 && (size_t)N * (size_t)S >= 2);
    sb_ref_bn_forward_chans(out, mean, rstd, running_mean, running_var, inp, weight, bias, N, C,
                            S, eps, momentum, 0, C);
}

void sb_ref_batchnorm_forward_eval(sb_backend *be, float *out, const float *inp,
                                   const float *weight, const float *bias,
                                   const float *running_mean, const float *running_var, int N,
                                   int C, int S, float eps) {
    (void)be;
    SB_ASSERT(N >= 0 && C >= 1 && S >= 1);
    sb_ref_bn_eval_chans(out, inp, weight, bias, running_mean, running_var, N, C, S, eps, 0, C);
}

void sb_ref_batchnorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int N, int C, int S) {
    (void)be;
    SB_ASSERT(N >= 1 && C >= 1 && S >= 1);
    sb_ref_bn_backward_chans(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, S, 0, C);
}
