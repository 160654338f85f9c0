/* conv_internal.h — the convolution and pooling entries shared between the
 * kernels/ sources: ref's loops (ref_conv.c), the canonical oracle
 * (canonical_conv.c) and the shape checks both use. The vtable documents
 * what each op computes (kernels.h); each definition states its order.
 *
 * What it is not: a public header. Only kernels/ sources and the kernel tests
 * include it.
 */
#ifndef SB_CONV_INTERNAL_H
#define SB_CONV_INTERNAL_H

#include "kernels.h"

/* SB_ASSERTs the rules of kernels.h on a shape (programming errors). */
void sb_conv2d_check(const sb_conv2d_shape *s);
void sb_pool2d_check(const sb_pool2d_shape *s);

/* ref_conv.c: the "ref" backend's deterministic (and fast) entries. The pool
 * entries are also canonical mode's (pooling has no mode-dependent order)
 * and blas's, which runs them on ranges of (n,c) planes (they are
 * reentrant; a range of planes is the shape with n = planes, c = 1). */
void sb_ref_conv2d_forward(sb_backend *be, float *out, const float *inp, const float *weight,
                           const float *bias, const sb_conv2d_shape *s);
void sb_ref_conv2d_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            const sb_conv2d_shape *s);
void sb_ref_maxpool2d_forward(sb_backend *be, float *out, const float *inp,
                              const sb_pool2d_shape *s);
void sb_ref_maxpool2d_backward(sb_backend *be, float *dinp, const float *dout, const float *inp,
                               const sb_pool2d_shape *s);
void sb_ref_avgpool2d_forward(sb_backend *be, float *out, const float *inp,
                              const sb_pool2d_shape *s);
void sb_ref_avgpool2d_backward(sb_backend *be, float *dinp, const float *dout,
                               const sb_pool2d_shape *s);

/* canonical_conv.c: the canonical oracle (docs/canonical.md §3.3). */
void sb_canon_ref_conv2d_forward(sb_backend *be, float *out, const float *inp,
                                 const float *weight, const float *bias,
                                 const sb_conv2d_shape *s);
void sb_canon_ref_conv2d_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                  const float *dout, const float *inp, const float *weight,
                                  const sb_conv2d_shape *s);
/* canon_sum (docs/canonical.md §1) of the sequence x[o*stride + i] for
 * o = 0..outer-1, i = 0..inner-1 in that order (the blocks of 64 are cut
 * from the sequence, not per o): a conv's dbias over (n, oy, ox). */
float sb_canon_sum_strided2(const float *x, size_t outer, size_t stride, size_t inner);

#endif /* SB_CONV_INTERNAL_H */
