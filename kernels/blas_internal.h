/* blas_internal.h — what the "blas" backend's files share: the fast-mode work
 * queue, atomic float adds and tile-locked accumulation (blas.c), and the
 * convolution/pooling (blas_conv.c), layer-norm/embedding (blas_norm.c) and
 * batch-norm (blas_batchnorm.c) entries (softmax/residual/attention:
 * attn_internal.h; GRU: gru_internal.h) that both of its vtables — the
 * deterministic/fast one (blas.c) and the canonical one (blas_canonical.c) —
 * install.
 *
 * What it is not: a public header; only kernels/ sources include it.
 */
#ifndef SB_BLAS_INTERNAL_H
#define SB_BLAS_INTERNAL_H

#include "kernels.h"
#include "threadpool.h"

#include <stdatomic.h>

/* Most pool workers that call OpenBLAS's SGEMM at once (its buffer table is
 * finite; see blas.c's header). */
#define SB_BLAS_MAX_SGEMM_WORKERS 32
/* Floats of an accumulation target under one spin lock. */
#define SB_BLAS_TILE 2048

/* ---- blas.c (deterministic/fast backend only) ---- */

/* The fast-mode work queue: the k-th chunk taken is (mul*k + add) mod n;
 * identity unless the backend's perturb switch is on, in which case mul and
 * add are drawn per call from the backend's entropy-seeded generator. */
typedef struct sb_blas_queue {
    atomic_size_t next;
    size_t n, mul, add;
} sb_blas_queue;
void sb_blas_queue_init(sb_backend *be, sb_blas_queue *q, size_t nchunks);
/* next chunk index, or (size_t)-1 when the queue is empty */
size_t sb_blas_queue_take(sb_blas_queue *q);
/* dst += v as one atomic read-modify-write (a CAS loop on the float) */
void sb_blas_atomic_add(float *dst, float v);
/* n bytes of zeroed spin locks, one per SB_BLAS_TILE floats of a target of
 * `floats` floats, owned by the backend; NULL when memory is short. */
unsigned char *sb_blas_tile_locks(sb_backend *be, size_t floats);
/* dst[i] += part[i] for i < n, tile by tile under locks (NULL: one atomic
 * add per element), starting at tile start/SB_BLAS_TILE and wrapping so
 * concurrent callers spread out. Per element the callers' adds land in the
 * order they get the lock: completion order. */
void sb_blas_locked_add(float *dst, const float *part, size_t n, unsigned char *locks,
                        size_t start);
/* The conv scratch of the deterministic/fast backend. */
struct sb_blas_conv *sb_blas_conv_of_fast(sb_backend *be);
/* The worker pool of the deterministic/fast backend. */
sb_pool *sb_blas_pool_of_fast(sb_backend *be);

/* ---- blas_canonical.c ---- */
struct sb_blas_conv *sb_blas_conv_of_canonical(sb_backend *be);
sb_pool *sb_blas_pool_of_canonical(sb_backend *be);
/* Attention (blas_attn.c) runs whole canonical GEMMs on its own workers:
 * sb_blas_canonical_workers makes sure workers 0..k-1 have a workspace
 * (creating them on the calling thread, before the pool runs) and returns k
 * (1 <= k <= want); sb_blas_canonical_gemm computes all of *g on worker w's
 * workspace (w < k) with the backend's SIMD path — the §2 order, the same
 * bits as any other split. */
int sb_blas_canonical_workers(sb_backend *be, int want);
struct sb_canon_gemm;
void sb_blas_canonical_gemm(sb_backend *be, int w, const struct sb_canon_gemm *g);

/* ---- blas_conv.c ---- */

/* Scratch buffers of the conv ops, per worker; created with the backend
 * (pool and ref borrowed), freed with it. */
typedef struct sb_blas_conv sb_blas_conv;
sb_blas_conv *sb_blas_conv_new(sb_pool *pool, sb_backend *ref); /* NULL: out of memory */
void sb_blas_conv_free(sb_blas_conv *c);                       /* NULL is a no-op */

void sb_blas_conv2d_forward(sb_backend *be, float *out, const float *inp, const float *weight,
                            const float *bias, const sb_conv2d_shape *s);
void sb_blas_conv2d_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight,
                             const sb_conv2d_shape *s);
void sb_blas_maxpool2d_forward(sb_backend *be, float *out, const float *inp,
                               const sb_pool2d_shape *s);
void sb_blas_maxpool2d_backward(sb_backend *be, float *dinp, const float *dout, const float *inp,
                                const sb_pool2d_shape *s);
void sb_blas_avgpool2d_forward(sb_backend *be, float *out, const float *inp,
                               const sb_pool2d_shape *s);
void sb_blas_avgpool2d_backward(sb_backend *be, float *dinp, const float *dout,
                                const sb_pool2d_shape *s);

/* ---- blas_norm.c (all three modes; the mode is read from be) ---- */
void sb_blas_layernorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                               const float *inp, const float *weight, const float *bias, int R,
                               int C, float eps);
void sb_blas_layernorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                const float *dout, const float *inp, const float *weight,
                                const float *mean, const float *rstd, int R, int C);
void sb_blas_embedding_forward(sb_backend *be, float *out, const float *table, const int32_t *ids,
                               int n, int V, int D);
void sb_blas_embedding_backward(sb_backend *be, float *dtable, const float *dout,
                                const int32_t *ids, int n, int V, int D);

/* ---- blas_batchnorm.c (all three modes; the mode is read from be) ---- */
void sb_blas_batchnorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                               float *running_mean, float *running_var, const float *inp,
                               const float *weight, const float *bias, int N, int C, int S,
                               float eps, float momentum);
void sb_blas_batchnorm_forward_eval(sb_backend *be, float *out, const float *inp,
                                    const float *weight, const float *bias,
                                    const float *running_mean, const float *running_var, int N,
                                    int C, int S, float eps);
void sb_blas_batchnorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                const float *dout, const float *inp, const float *weight,
                                const float *mean, const float *rstd, int N, int C, int S);

/* ref.c's host memory entries, shared by the blas backends (whose memory is
 * the same host memory); they ignore `be`. */
void *sb_ref_alloc(sb_backend *be, size_t bytes);
void sb_ref_free(sb_backend *be, void *p);
void sb_ref_upload(sb_backend *be, void *dst, const void *host_src, size_t bytes);
void sb_ref_download(sb_backend *be, void *host_dst, const void *src, size_t bytes);
void sb_ref_zero(sb_backend *be, float *x, size_t n);

#endif /* SB_BLAS_INTERNAL_H */
