/* norm_internal.h — the layer-norm and embedding entries shared between the
 * kernels/ sources: ref's loops (ref_norm.c), the canonical oracle
 * (canonical_norm.c), and the column-range pieces "blas" (blas_norm.c) runs on
 * its workers. kernels.h documents what each op computes; each definition
 * states its order.
 *
 * What it is not: a public header. Only kernels/ sources and the kernel tests
 * include it.
 */
#ifndef SB_NORM_INTERNAL_H
#define SB_NORM_INTERNAL_H

#include "kernels.h"

/* ref_norm.c: the "ref" backend's deterministic (and fast) entries. They are
 * reentrant; blas runs them on row ranges (a range of rows is the op with
 * R = the range's length). layernorm_backward also accepts NULL dweight and
 * dbias (skipped), which is how blas asks for dinp alone. */
void sb_ref_layernorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias, int R,
                              int C, float eps);
void sb_ref_layernorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int R, int C);
/* dweight[j] += sum_r dout[r,j]*xhat[r,j], dbias[j] += sum_r dout[r,j] for
 * columns j in [j0, j1), r = 0..R-1 from 0.0f (either output may be NULL). */
void sb_ref_layernorm_param_cols(float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *mean, const float *rstd, int R,
                                 int C, int j0, int j1);
void sb_ref_embedding_forward(sb_backend *be, float *out, const float *table, const int32_t *ids,
                              int n, int V, int D);
void sb_ref_embedding_backward(sb_backend *be, float *dtable, const float *dout,
                               const int32_t *ids, int n, int V, int D);
/* the scatter-add on columns [j0, j1) only, tokens t = 0..n-1 increasing */
void sb_ref_embedding_backward_cols(float *dtable, const float *dout, const int32_t *ids, int n,
                                    int V, int D, int j0, int j1);

/* canonical_norm.c: the canonical oracle (docs/canonical.md §3.4); the same
 * NULL and range conventions. Embedding has no canonical variant: its
 * order (ref_norm.c) is already independent of any split. */
void sb_canon_ref_layernorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                                    const float *inp, const float *weight, const float *bias,
                                    int R, int C, float eps);
void sb_canon_ref_layernorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *mean, const float *rstd, int R, int C);
void sb_canon_layernorm_param_cols(float *dweight, float *dbias, const float *dout,
                                   const float *inp, const float *mean, const float *rstd, int R,
                                   int C, int j0, int j1);

#endif /* SB_NORM_INTERNAL_H */
