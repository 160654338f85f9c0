/* batchnorm_internal.h — the batch-norm pieces shared between the kernels/
 * sources: ref's loops (ref_batchnorm.c), the canonical oracle
 * (canonical_batchnorm.c), and the channel-range pieces "blas"
 * (blas_batchnorm.c) runs on its workers. kernels.h documents what each op
 * computes; each definition states its order.
 *
 * Layout everywhere: x[N, C, S] contiguous, element (n, c, s) at
 * (n*C + c)*S + s; a channel's M = N*S values are visited in (n, s) order,
 * n outermost, both increasing.
 *
 * What it is not: a public header. Only kernels/ sources and the kernel tests
 * include it.
 */
#ifndef SB_BATCHNORM_INTERNAL_H
#define SB_BATCHNORM_INTERNAL_H

#include "kernels.h"

#include <stddef.h>

/* ---- ref_batchnorm.c: the "ref" backend's deterministic (and fast)
 * entries (vtable signatures) and their channel-range pieces. A channel
 * range [c0, c1) computes exactly what the whole op computes for those
 * channels, so blas's deterministic split gives ref's bits. ---- */
void sb_ref_batchnorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                              float *running_mean, float *running_var, const float *inp,
                              const float *weight, const float *bias, int N, int C, int S,
                              float eps, float momentum);
void sb_ref_batchnorm_forward_eval(sb_backend *be, float *out, const float *inp,
                                   const float *weight, const float *bias,
                                   const float *running_mean, const float *running_var, int N,
                                   int C, int S, float eps);
void sb_ref_batchnorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int N, int C, int S);

void sb_ref_bn_forward_chans(float *out, float *mean, float *rstd, float *running_mean,
                             float *running_var, const float *inp, const float *weight,
                             const float *bias, int N, int C, int S, float eps, float momentum,
                             int c0, int c1);
void sb_ref_bn_eval_chans(float *out, const float *inp, const float *weight, const float *bias,
                          const float *running_mean, const float *running_var, int N, int C,
                          int S, float eps, int c0, int c1);
void sb_ref_bn_backward_chans(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C, int S, int c0, int c1);

/* The steps around the sums, for blas's fast mode (which forms the sums
 * itself, unordered) — the same statements ref runs after its own sums:
 * sb_ref_bn_finish_chan, given channel c's mean m and its sum of squared
 * deviations q over M values, stores mean[c] = m, rstd[c] and updates the
 * running statistics (either may be NULL); sb_ref_bn_apply_chans writes
 * out for channels [c0, c1) from mean and rstd; sb_ref_bn_dinp_chans adds
 * the input gradient of channels [c0, c1) given sum_g[c] = S(dout) and
 * sum_gx[c] = S(dout*xhat). */
void sb_ref_bn_finish_chan(float *mean, float *rstd, float *running_mean, float *running_var,
                           int c, float m, float q, size_t M, float eps, float momentum);
void sb_ref_bn_apply_chans(float *out, const float *inp, const float *weight, const float *bias,
                           const float *mean, const float *rstd, int N, int C, int S, int c0,
                           int c1);
void sb_ref_bn_dinp_chans(float *dinp, const float *dout, const float *inp, const float *weight,
                          const float *mean, const float *rstd, const float *sum_g,
                          const float *sum_gx, int N, int C, int S, int c0, int c1);

/* ---- canonical_batchnorm.c: the canonical oracle (docs/canonical.md
 * §3.5); the same signatures and channel-range convention. ---- */
void sb_canon_ref_batchnorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                                    float *running_mean, float *running_var, const float *inp,
                                    const float *weight, const float *bias, int N, int C, int S,
                                    float eps, float momentum);
void sb_canon_ref_batchnorm_forward_eval(sb_backend *be, float *out, const float *inp,
                                         const float *weight, const float *bias,
                                         const float *running_mean, const float *running_var,
                                         int N, int C, int S, float eps);
void sb_canon_ref_batchnorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *mean, const float *rstd, int N, int C, int S);

void sb_canon_bn_forward_chans(float *out, float *mean, float *rstd, float *running_mean,
                               float *running_var, const float *inp, const float *weight,
                               const float *bias, int N, int C, int S, float eps, float momentum,
                               int c0, int c1);
void sb_canon_bn_eval_chans(float *out, const float *inp, const float *weight, const float *bias,
                            const float *running_mean, const float *running_var, int N, int C,
                            int S, float eps, int c0, int c1);
void sb_canon_bn_backward_chans(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *mean,
                                const float *rstd, int N, int C, int S, int c0, int c1);

#endif /* SB_BATCHNORM_INTERNAL_H */
