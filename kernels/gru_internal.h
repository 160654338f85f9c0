/* gru_internal.h — the GRU cell's elementwise step shared between the
 * kernels/ sources: the "ref" entries (ref_gru.c), which also hold the one
 * row loop of each direction, and the "blas" entries (blas_gru.c), which run
 * those entries on disjoint row ranges of the backend's pool. kernels.h
 * documents what the op computes and its exact formulas.
 *
 * What it is not: a public header, nor the GRU layer: the two GEMMs per step
 * (gi, gh and their gradients) are the engine's, through gemm/weight_grad.
 */
#ifndef SB_GRU_INTERNAL_H
#define SB_GRU_INTERNAL_H

#include "kernels.h"

/* "ref" (ref_gru.c): the mode (canonical or not) is read from be->mode and
 * nothing else of be is used, so they are reentrant and blas calls them on
 * row ranges (a range of rows is the op with B = the range's length). */
void sb_ref_gru_forward(sb_backend *be, float *h, float *saved, const float *gi, const float *gh,
                        const float *h_prev, int B, int H);
void sb_ref_gru_backward(sb_backend *be, float *dgi, float *dgh, float *dh_prev, const float *dh,
                         const float *saved, const float *h_prev, int B, int H);

/* "blas" (blas_gru.c), all three modes. */
void sb_blas_gru_forward(sb_backend *be, float *h, float *saved, const float *gi, const float *gh,
                         const float *h_prev, int B, int H);
void sb_blas_gru_backward(sb_backend *be, float *dgi, float *dgh, float *dh_prev, const float *dh,
                          const float *saved, const float *h_prev, int B, int H);

#endif /* SB_GRU_INTERNAL_H */
