/* kernels.h — the backend interface: a vtable of memory entry points and the
 * ops the engine needs, plus the registry that creates a backend by name.
 *
 * Backends:
 *   "ref"  — one thread, scalar C, a fixed order for every reduction, built with
 *            -ffp-contract=off. The oracle every other backend is tested against.
 *   "blas" — OpenBLAS SGEMM; every other op multithreaded in C over a pool whose
 *            size the run sets. In canonical mode it does not call OpenBLAS at
 *            all: its own GEMM (canonical_gemm*.c) follows the canonical order.
 *
 * Determinism modes (DESIGN.md §3):
 *   SB_MODE_DETERMINISTIC — same inputs, same thread count, same machine → same
 *            bits: every reduction has a fixed partition and combination order.
 *   SB_MODE_FAST — no promise. On "blas", every reduction over the batch
 *            (bias gradient, weight gradient, the loss) is split into chunks
 *            taken from a dynamic work queue; each chunk's partial is
 *            atomically added to the result in completion order, as GPU
 *            atomics do. On "ref" (one thread) fast is
 *            the same as deterministic: the oracle has one order only.
 *   SB_MODE_CANONICAL — same inputs → same bits for ANY thread count, on
 *            "ref" and on "blas", whichever SIMD path (scalar, AVX2, AVX-512)
 *            "blas" runs, and by construction on any IEEE-754 device that
 *            follows the order: every op's order is defined independently of
 *            how the work is split (docs/canonical.md is the specification:
 *            GEMM outputs are one fmaf chain over k = 0..K-1; reductions are a
 *            fixed tree over 64-element blocks; expf/logf/tanhf are our own,
 *            kernels/canonical_math.c, never libm). The bits differ from the
 *            other modes' (FMA, another summation order, another tanh). NaN
 *            results are NaN on every path, but their payload and sign are not
 *            part of the promise. "blas" honours SB_CANONICAL_ISA
 *            (scalar|avx2|avx512, default: the best the CPU has) — a test
 *            switch that cannot change any result.
 *   perturb — a test aid (off by default): in fast mode, chunk partials are
 *            added in an order permuted from a per-run OS entropy source, so a
 *            difference between runs is guaranteed even on one thread.
 *
 * This header is not: a tensor library. Ops take raw float pointers that were
 * allocated by the same backend; shapes are explicit arguments.
 *
 * Convention for ops (llm.c): outputs first, then inputs, then sizes. Backward
 * ops ADD into their gradient outputs (+=) so gradients can accumulate; the
 * caller zeroes gradient buffers (be->i->zero) before a step.
 */
#ifndef SB_KERNELS_H
#define SB_KERNELS_H

#include "sb_base.h"

typedef enum sb_mode {
    SB_MODE_DETERMINISTIC = 0,
    SB_MODE_FAST = 1,
    SB_MODE_CANONICAL = 2
} sb_mode;

const char *sb_mode_name(sb_mode m);
/* returns 0 and sets *out when name is "deterministic", "fast" or
 * "canonical"; -1 otherwise */
int sb_mode_parse(const char *name, sb_mode *out);

typedef enum sb_act { SB_ACT_RELU = 0, SB_ACT_TANH = 1, SB_ACT_GELU = 2 } sb_act;
const char *sb_act_name(sb_act a);
int sb_act_parse(const char *name, sb_act *out);

typedef struct sb_backend_config {
    sb_mode mode;
    int threads; /* >= 1; "ref" always computes on one thread whatever this says */
    int perturb; /* order-perturbation test switch (fast mode only) */
} sb_backend_config;

typedef struct sb_backend sb_backend;

/* Shapes of the convolution and pooling ops (NCHW, row-major, contiguous).
 * Output sizes follow PyTorch (floor, no ceil_mode, no dilation, no groups):
 *   out_h = (h + 2*pad_h - kh) / stride_h + 1,  out_w likewise.
 * Valid shapes (SB_ASSERT otherwise): n >= 0; c/cin/cout, h, w, kh, kw,
 * strides >= 1; pads >= 0; out_h, out_w >= 1; for pooling also
 * pad <= kernel/2 in each dimension (PyTorch's rule: every window then holds
 * at least one element of the input). */
typedef struct sb_conv2d_shape {
    int n, cin, h, w; /* input [n, cin, h, w] */
    int cout, kh, kw; /* weight [cout, cin, kh, kw], bias [cout] */
    int stride_h, stride_w, pad_h, pad_w;
} sb_conv2d_shape;

typedef struct sb_pool2d_shape {
    int n, c, h, w; /* input [n, c, h, w]; output [n, c, out_h, out_w] */
    int kh, kw, stride_h, stride_w, pad_h, pad_w;
} sb_pool2d_shape;

static inline int sb_conv2d_out_h(const sb_conv2d_shape *s) {
    return (s->h + 2 * s->pad_h - s->kh) / s->stride_h + 1;
}
static inline int sb_conv2d_out_w(const sb_conv2d_shape *s) {
    return (s->w + 2 * s->pad_w - s->kw) / s->stride_w + 1;
}
static inline int sb_pool2d_out_h(const sb_pool2d_shape *s) {
    return (s->h + 2 * s->pad_h - s->kh) / s->stride_h + 1;
}
static inline int sb_pool2d_out_w(const sb_pool2d_shape *s) {
    return (s->w + 2 * s->pad_w - s->kw) / s->stride_w + 1;
}

/* The vtable. Every entry is required unless marked optional. */
typedef struct sb_backend_i {
    /* ---- memory ---- */
    /* allocates `bytes` of zeroed, 64-byte aligned backend memory; NULL on failure */
    void *(*alloc)(sb_backend *be, size_t bytes);
    void (*free)(sb_backend *be, void *p); /* free(NULL) is a no-op */
    void (*upload)(sb_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(sb_backend *be, void *host_dst, const void *src, size_t bytes);
    void (*zero)(sb_backend *be, float *x, size_t n);

    /* ---- ops ---- */
    /* C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, row-major.
     * op(X) = X when trans == 0, X^T when trans == 1. lda/ldb/ldc are the row
     * strides of A, B, C as stored. As in BLAS, C is not read when beta == 0
     * (it may hold garbage) and A, B are not read when alpha == 0. */
    void (*gemm)(sb_backend *be, int transA, int transB, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);
    /* out[B,N] += bias[N] (broadcast over rows) */
    void (*bias_add)(sb_backend *be, float *out, const float *bias, int B, int N);
    /* dbias[N] += sum over b of dout[b,N]  — a reduction over the batch */
    void (*bias_grad)(sb_backend *be, float *dbias, const float *dout, int B, int N);
    /* out[i] = f(inp[i]) for i < n */
    void (*act_forward)(sb_backend *be, sb_act act, float *out, const float *inp, size_t n);
    /* dinp[i] += dout[i] * f'(inp[i]) */
    void (*act_backward)(sb_backend *be, sb_act act, float *dinp, const float *dout,
                         const float *inp, size_t n);
    /* probs[B,C] = softmax(logits[B,C]) row by row (max-subtracted);
     * *loss = mean over b of -log(probs[b, labels[b]]) — a reduction over the
     * batch. `loss` points to one float of backend memory. labels[B] are in
     * [0, C) (the caller validates). */
    void (*xent_forward)(sb_backend *be, float *probs, float *loss, const float *logits,
                         const int32_t *labels, int B, int C);
    /* dlogits[B,C] += (probs - onehot(labels)) / B */
    void (*xent_backward)(sb_backend *be, float *dlogits, const float *probs,
                          const int32_t *labels, int B, int C);
    /* SGD with momentum and L2 weight decay, PyTorch's convention:
     *   g' = g + wd*w;  mom = momentum*mom + g';  w -= lr*mom
     * (when momentum == 0 the buffer is untouched and w -= lr*g'). */
    void (*sgd_update)(sb_backend *be, float *w, float *mom, const float *g, size_t n,
                       float lr, float momentum, float weight_decay);
    /* Adam (AdamW-style decoupled decay when weight_decay > 0), PyTorch's order
     * of operations; t is the 1-based step. See ref.c for the exact formula. */
    void (*adam_update)(sb_backend *be, float *w, float *m, float *v, const float *g,
                        size_t n, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int t);

    /* dW[N,K] = sum over b of dout[b,N]ᵀ · inp[b,K] — the weight gradient of a
     * linear layer, a reduction over the batch (overwrites dW).
     * ref: per element, b = 0, 1, …, B-1 in increasing order from 0.0f.
     * blas deterministic: one OpenBLAS SGEMM (fixed order for a fixed build and
     * thread count). blas fast: the batch is cut into small row chunks taken
     * from the work queue; each chunk's partial product (an SGEMM into worker
     * scratch) is atomically added into dW in completion order. */
    void (*weight_grad)(sb_backend *be, float *dW, const float *dout, const float *inp, int B,
                        int N, int K);
    /* Inverted dropout with a given keep-mask (mask[i] is 0.0f or 1.0f, drawn
     * by the engine from a named RNG stream): out[i] = mask[i] != 0 ? inp[i] *
     * scale : 0, with scale = 1/(1-p). Backward: dinp[i] += mask[i] != 0 ?
     * dout[i] * scale : 0. */
    void (*dropout_forward)(sb_backend *be, float *out, const float *inp, const float *mask,
                            size_t n, float scale);
    void (*dropout_backward)(sb_backend *be, float *dinp, const float *dout, const float *mask,
                             size_t n, float scale);

    /* ---- convolution and pooling (kernels/ref_conv.c, blas_conv.c,
     * canonical_conv.c; shapes above; OH, OW are the output sizes). The
     * padding is zeros: a padded position enters every sum of the conv as a
     * term w*0.0f (so an infinite weight meeting padding gives NaN, as in
     * PyTorch); pooling skips padded positions. ---- */

    /* out[n,co,oy,ox] = acc + bias[co] (bias NULL: out = acc), overwriting
     * out [n,cout,OH,OW], with acc = sum over (ci, ky, kx) of
     * weight[co,ci,ky,kx] * inp[n,ci,oy*stride_h-pad_h+ky, ox*stride_w-pad_w+kx].
     * Order of acc, per output element:
     *   ref deterministic/fast: from 0.0f, ci outermost, then ky, then kx,
     *     each step acc = acc + w*x (two roundings).
     *   blas deterministic/fast: im2col into col[cin*kh*kw, n*OH*OW] (rows in
     *     (ci, ky, kx) order), then ONE cblas_sgemm weight[cout, cin*kh*kw] ·
     *     col: OpenBLAS's order (fixed for a build, core and thread count),
     *     then + bias.
     *   canonical (both): one fmaf chain over (ci, ky, kx) in that nesting
     *     order from +0.0f, then + bias (docs/canonical.md §3.3). */
    void (*conv2d_forward)(sb_backend *be, float *out, const float *inp, const float *weight,
                           const float *bias, const sb_conv2d_shape *s);
    /* The conv's gradients, each ADDED into (+=) its buffer:
     *   dweight[cout,cin,kh,kw] += sum over (n, oy, ox) of dout[n,co,oy,ox] * x
     *     (x the input element that weight met, 0.0f at padding);
     *   dbias[cout] += sum over (n, oy, ox) of dout[n,co,oy,ox] (NULL: skipped);
     *   dinp[n,cin,h,w] += sum over the (ky, kx) whose window covers the
     *     element, of t(ky,kx) = sum over co of weight[co,ci,ky,kx] *
     *     dout[n,co,oy,ox] (NULL: skipped — e.g. the first layer).
     * Each element's sum is formed first (from 0.0f) and added to the buffer
     * once. Orders:
     *   ref (both modes): dweight and dbias over n, then oy, then ox, in
     *     increasing order; dinp: t over co = 0..cout-1, the t's over ky then kx
     *     increasing.
     *   blas deterministic: dbias as ref, bit for bit (workers own disjoint
     *     channels). dweight: ONE cblas_sgemm (beta 1) over the whole batch,
     *     K = n*OH*OW: OpenBLAS's order. dinp: one cblas_sgemm for every t
     *     (K = cout, OpenBLAS's order), then the t's in ref's (ky, kx) order
     *     (col2im as a gather, workers own disjoint (n, ci) planes).
     *   blas fast: dinp as deterministic. dweight and dbias: UNORDERED — the
     *     batch is cut into chunks of a few images taken from the work queue;
     *     a chunk's partial dweight (im2col + one SGEMM into worker scratch)
     *     is added into dweight tile by tile under spin locks, its partial
     *     dbias (per channel, sequential) by atomic adds: in completion order,
     *     permuted per call when perturb is on.
     *   canonical (both): dweight = dweight + (one fmaf chain over (n, oy, ox));
     *     dbias = dbias + canon_sum of the n*OH*OW values in (n, oy, ox)
     *     order; dinp: t = one fmaf chain over co, the t's summed from +0.0f in
     *     (ky, kx) order (docs/canonical.md §3.3). */
    void (*conv2d_backward)(sb_backend *be, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            const sb_conv2d_shape *s);
    /* out[n,c,oy,ox] = max over the window's non-padded elements (overwrites
     * out [n,c,OH,OW]). The winner is the first element in (ky, kx) order
     * that is greater than every earlier one, or the last NaN (a NaN always
     * wins, as in PyTorch). No rounding: the same bits in every mode and
     * backend. */
    void (*maxpool2d_forward)(sb_backend *be, float *out, const float *inp,
                              const sb_pool2d_shape *s);
    /* dinp[winner of (n,c,oy,ox)] += dout[n,c,oy,ox], the winner recomputed
     * from inp as in the forward. When windows overlap an element collects
     * several terms: per (n,c) plane the outputs are visited in increasing
     * (oy, ox) order, each adding straight into dinp. That order holds in
     * every mode and backend (blas: workers own disjoint planes), so the
     * bits are the same everywhere. */
    void (*maxpool2d_backward)(sb_backend *be, float *dinp, const float *dout, const float *inp,
                               const sb_pool2d_shape *s);
    /* out[n,c,oy,ox] = (sum of the window's non-padded elements, from 0.0f
     * in (ky, kx) order) / (float)(kh*kw) — a division; padded positions
     * count in the divisor (PyTorch's count_include_pad=True). Overwrites
     * out. The same bits in every mode and backend. */
    void (*avgpool2d_forward)(sb_backend *be, float *out, const float *inp,
                              const sb_pool2d_shape *s);
    /* g = dout[n,c,oy,ox] / (float)(kh*kw); dinp[e] += g for each non-padded
     * element e of the window. Per (n,c) plane the outputs are visited in
     * increasing (oy, ox) order, each adding straight into dinp: the same
     * bits in every mode and backend. */
    void (*avgpool2d_backward)(sb_backend *be, float *dinp, const float *dout,
                               const sb_pool2d_shape *s);

    /* ---- layer norm and embedding (kernels/ref_norm.c, blas_norm.c,
     * canonical_norm.c). rsqrt is 1.0f / sqrtf(v) in every mode and backend
     * (two correctly rounded operations), never an approximation. ---- */

    /* Layer norm over the last dimension of inp[R, C] (R rows >= 0, C >= 1),
     * PyTorch's formula with biased variance; overwrites out[R, C], mean[R]
     * and rstd[R] (saved for backward). Per row, in every mode:
     *   m = S(x) / C;  d_i = x_i - m;  v = Q(d) / C;  rstd = 1.0f / sqrtf(v + eps);
     *   xhat_i = d_i * rstd;  out_i = xhat_i * weight[i] + bias[i]
     * (canonical: out_i = fmaf(xhat_i, weight[i], bias[i])).
     * S and Q (sum of squares) are per-row reductions over i:
     *   ref, blas deterministic and fast: S sequential from 0.0f, i = 0..C-1;
     *     Q the same over d_i*d_i (product rounded, then the sum) — blas runs
     *     ref's row function on disjoint row ranges: ref's bits.
     *   canonical: S = canon_sum; Q = canon_dot(d, d) (docs/canonical.md §3.4:
     *     blocks of 64, each one fmaf chain, block sums through the tree). */
    void (*layernorm_forward)(sb_backend *be, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias, int R,
                              int C, float eps);
    /* Gradients of layer norm, each ADDED into (+=) its buffer, from the saved
     * mean[R], rstd[R] (xhat_i recomputed as (x_i - m) * rstd):
     *   dinp[r,i] += ((g_i - a) - xhat_i * b) * rstd, with g_i = dout_i *
     *     weight[i], a = S(g) / C, b = D(g, xhat) / C, per row (canonical:
     *     dinp += fmaf(-xhat_i, b, g_i - a) * rstd); dinp NULL: skipped;
     *   dweight[i] += sum over rows r of dout[r,i] * xhat[r,i];
     *   dbias[i]   += sum over rows r of dout[r,i].
     * Per-row S and D as in the forward (ref/deterministic/fast: sequential
     * from 0.0f, products rounded; canonical: canon_sum and canon_dot). The
     * column sums over rows, each formed first and added once:
     *   ref: r = 0..R-1 increasing from 0.0f.
     *   blas deterministic: the same, bit for bit (workers own disjoint
     *     columns; independent of the thread count).
     *   blas fast: UNORDERED — rows cut into chunks from the work queue; a
     *     chunk's partials (its rows in increasing order from 0.0f) are added
     *     into dweight/dbias tile by tile under spin locks, in completion order
     *     (permuted per call when perturb is on). dinp as deterministic.
     *   canonical (both): dbias += canon_sum over rows, dweight += canon_dot
     *     over rows of (dout, xhat) (workers own disjoint columns). */
    void (*layernorm_backward)(sb_backend *be, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int R, int C);
    /* out[t, :] = table[ids[t], :] for t < n (overwrites out[n, D]); table
     * [V, D]; ids in [0, V) (SB_ASSERT: the caller validates). A copy: the
     * same bits in every mode and backend. */
    void (*embedding_forward)(sb_backend *be, float *out, const float *table,
                              const int32_t *ids, int n, int V, int D);
    /* The scatter-add: dtable[ids[t], :] += dout[t, :] for t < n; a token id
     * that occurs several times collects every one of its rows. Order per
     * element of dtable: each occurrence adds straight into dtable
     * (dtable = dtable + dout, no partial sum):
     *   ref, blas deterministic, canonical (both): t = 0..n-1 increasing (blas:
     *     workers own disjoint column ranges) — the same bits everywhere.
     *   blas fast: UNORDERED — tokens cut into chunks from the work queue; each
     *     row is added element by element with atomic adds, in completion
     *     order (permuted per call when perturb is on), as GPU atomics do. */
    void (*embedding_backward)(sb_backend *be, float *dtable, const float *dout,
                               const int32_t *ids, int n, int V, int D);

    /* ---- batch norm (kernels/ref_batchnorm.c, blas_batchnorm.c,
     * canonical_batchnorm.c), PyTorch's BatchNorm1d/2d. inp[N, C, S]
     * contiguous (S = H*W; S = 1 for [N, C] inputs); weight, bias and every
     * statistic are [C]. A channel's M = N*S values are taken in (n, s)
     * order, n outermost. rsqrt is 1.0f / sqrtf(v) as for layer norm. ---- */

    /* Training-mode forward with batch statistics (N*S >= 2, as PyTorch
     * requires). Per channel c, in every mode:
     *   m = S(x) / M;  d = x - m;  Q = S2(d);  v = Q / M (biased);
     *   rstd = 1.0f / sqrtf(v + eps);  out = ((x - m) * rstd) * weight[c] + bias[c]
     *   (canonical: out = fmaf((x - m) * rstd, weight[c], bias[c]));
     * overwrites out[N, C, S], mean[C] = m, rstd[C] = rstd (saved for
     * backward). running_mean[C] and running_var[C] are updated in place,
     * PyTorch's rule with the UNBIASED variance vu = Q / (M - 1):
     *   running = (1.0f - momentum) * running + momentum * batch
     *   (canonical: fmaf(momentum, batch, (1.0f - momentum) * running));
     * either may be NULL (not tracked). (PyTorch's momentum=None, the
     * cumulative average, is the caller passing momentum = 1/t.)
     * S (the mean's sum) and S2 (sum of squares) per channel:
     *   ref, blas deterministic: sequential from 0.0f over the M values in
     *     (n, s) order; S2 adds d*d (product rounded, then the sum). blas:
     *     workers own disjoint channels, ref's bits for any thread count.
     *   blas fast: UNORDERED — the batch is cut into chunks of 2 images from
     *     the work queue; a chunk's partial per channel (its images
     *     increasing, then s, from 0.0f) is added into a zeroed per-channel
     *     total under spin locks, in completion order (permuted per call
     *     when perturb is on): one pass for S, then one for S2.
     *   canonical (both): S = canon_sum, S2 = canon_dot(d, d) over the M
     *     values (docs/canonical.md §3.5; workers own disjoint channels). */
    void (*batchnorm_forward)(sb_backend *be, float *out, float *mean, float *rstd,
                              float *running_mean, float *running_var, const float *inp,
                              const float *weight, const float *bias, int N, int C, int S,
                              float eps, float momentum);
    /* Eval-mode forward from the running statistics (N >= 0), overwriting
     * out[N, C, S]; nothing else is written. Per channel rstd = 1.0f /
     * sqrtf(running_var[c] + eps); out = ((x - running_mean[c]) * rstd) *
     * weight[c] + bias[c] (canonical: the last two steps one fmaf). No
     * reduction: the same bits for every split; deterministic and fast are
     * identical. */
    void (*batchnorm_forward_eval)(sb_backend *be, float *out, const float *inp,
                                   const float *weight, const float *bias,
                                   const float *running_mean, const float *running_var, int N,
                                   int C, int S, float eps);
    /* Training-mode gradients (PyTorch's formula, batch statistics), each
     * ADDED into (+=) its buffer, from the saved mean[C], rstd[C] (xhat =
     * (x - mean[c]) * rstd[c] recomputed). Per channel, over its M values:
     *   G = S(dout), X = S(dout * xhat) (products rounded, then the sum);
     *   dbias[c] += G;  dweight[c] += X  (each formed first, added once);
     *   dinp += ((dout - G/M) - xhat * (X/M)) * (weight[c] * rstd[c])
     *   (canonical: dinp += fmaf(-xhat, X/M, dout - G/M) * (weight[c] * rstd[c])).
     * Any of dinp, dweight, dbias may be NULL (skipped); the sums are formed
     * whenever dinp is asked for. Order of G and X:
     *   ref, blas deterministic: sequential from 0.0f in (n, s) order (blas:
     *     workers own disjoint channels; ref's bits for any thread count).
     *   blas fast: UNORDERED — chunks of 2 images from the work queue, each
     *     chunk's partials added into zeroed totals under spin locks in
     *     completion order (permuted per call when perturb is on); the totals
     *     then go to dbias/dweight and into dinp as above.
     *   canonical (both): G = canon_sum, X = canon_dot(dout, xhat) (§3.5). */
    void (*batchnorm_backward)(sb_backend *be, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int N, int C, int S);

    /* ---- softmax, residual add and causal attention (kernels/ref_attn.c,
     * blas_attn.c; attn_internal.h). A "softmax row" of n valid entries of a
     * row x[0..C) is, in every mode: max = x[0], replaced by each later
     * x[j] > max (j < n; a NaN never wins, so it reaches the sum);
     * e_j = exp(x_j - max); sum = S(e_0..e_{n-1}); p_j = e_j / sum (a
     * division) for j < n, and p_j = +0.0f exactly for n <= j < C (never
     * exp(-inf - -inf)). exp is libm's expf in deterministic/fast and
     * sb_canon_expf in canonical; S is sequential from 0.0f in increasing j
     * (deterministic/fast) or canon_sum (canonical, docs/canonical.md §3.6).
     * Its backward, from the saved p and the incoming dp: s = D(p, dp) over
     * j < n (deterministic/fast: sequential from 0.0f, each p_j*dp_j rounded,
     * then the sum; canonical: canon_dot); dx_j = p_j * (dp_j - s) for j < n,
     * +0.0f for j >= n. Rows are independent: blas runs ref's row function on
     * disjoint rows, so softmax (both directions) is ref's bits in every mode
     * and for any thread count. ---- */

    /* out[R, C] = softmax of each row of inp[R, C] (n = C valid entries;
     * R >= 0, C >= 1). Overwrites out; out == inp is allowed. */
    void (*softmax_forward)(sb_backend *be, float *out, const float *inp, int R, int C);
    /* dinp[r, j] += dx_j, the row backward above with p = out[r, :] (the
     * forward's output) and dp = dout[r, :]. */
    void (*softmax_backward)(sb_backend *be, float *dinp, const float *dout, const float *out,
                             int R, int C);
    /* out[i] = a[i] + b[i] for i < n (one rounding; out may alias a or b).
     * The same bits in every mode and backend. */
    void (*residual_forward)(sb_backend *be, float *out, const float *a, const float *b, size_t n);
    /* da[i] = da[i] + dout[i]; db[i] = db[i] + dout[i] (either may be NULL:
     * skipped; da and db must not alias). The same bits everywhere. */
    void (*residual_backward)(sb_backend *be, float *da, float *db, const float *dout, size_t n);
    /* Causal scaled dot-product attention, heads already split: q, k, v,
     * out are [B, H, T, D] contiguous (head h of batch b is the [T, D] matrix
     * at offset (b*H + h)*T*D; the caller permutes [B, T, H*D] activations);
     * att is [B, H, T, T]. B, H >= 0; T, D >= 1; scale = 1.0f / sqrtf(D).
     * Per head, with G(...) the GEMM of this mode (ref deterministic/fast:
     * ref's gemm loops; blas deterministic/fast: one cblas_sgemm per head
     * and product on OpenBLAS's serial driver — so its bits do not depend on
     * the thread count; canonical: the §2 GEMM, one fmaf chain per element):
     *   att = G(q · kᵀ, alpha = scale)  [T, T], all T keys;
     *   att[t, :] = the softmax row of att[t, :] with n = t + 1 valid
     *     entries (key j <= t; masked keys get exactly +0.0f);
     *   out = G(att · v)  [T, D], K = T: masked keys enter as 0*v terms (a
     *     non-finite future v gives NaN, as in PyTorch's math path).
     * Overwrites out and att (att saved for the backward). */
    void (*attention_forward)(sb_backend *be, float *out, float *att, const float *q,
                              const float *k, const float *v, int B, int H, int T, int D);
    /* Its gradients, ADDED into dq, dk, dv [B, H, T, D]; att is the saved
     * forward output; scratch [B, H, T, T] is backend memory the op
     * overwrites (it holds datt, then dpre). Per head:
     *   datt = G(dout · vᵀ);  dv += G(attᵀ · dout);
     *   dpre[t, :] = the softmax row backward of (att[t, :], datt[t, :]),
     *     n = t + 1;
     *   dq += G(dpre · k, alpha = scale);  dk += G(dpreᵀ · q, alpha = scale)
     * (each "+=" is G with beta = 1: C = alpha*acc + C). dk and dv are sums
     * over the query positions t:
     *   ref, blas deterministic, canonical (both backends): one GEMM chain
     *     over all t = 0..T-1 per element (blas: workers own disjoint heads).
     *   blas fast: UNORDERED — each head's query rows are cut into chunks
     *     taken from the work queue; a chunk [t0, t1) forms its rows of datt
     *     and dpre, adds its dq rows directly, and computes partial dk, dv
     *     for keys 0..t1-1 (cblas_sgemm, K = t1 - t0) that are added into dk
     *     and dv tile by tile under spin locks in completion order (permuted
     *     per call when perturb is on), as GPU atomics do. */
    void (*attention_backward)(sb_backend *be, float *dq, float *dk, float *dv, float *scratch,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *att, int B, int H, int T, int D);

    /* ---- GRU cell, the elementwise step (kernels/ref_gru.c, blas_gru.c;
     * gru_internal.h). PyTorch's nn.GRU with gate order (r, z, n) along the
     * 3H columns. The two GEMMs are the engine's (gemm, weight_grad):
     * gi = x·W_ihᵀ + b_ih and gh = h_prev·W_hhᵀ + b_hh, both [B, 3H]. Per
     * (b, j), j < H, with a_g = gi[b, g*H + j], c_g = gh[b, g*H + j]:
     *   r = σ(a_r + c_r);  z = σ(a_z + c_z);  n = tanh(a_n + r*c_n);
     *   h = n + z*(h_prev - n)   (= (1 - z)*n + z*h_prev; PyTorch CPU's form)
     * σ(x) = 1/(1 + exp(-x)) for x >= 0 and e/(1 + e), e = exp(x), for
     * x < 0: exp only sees -|x|, so it never overflows (σ(±inf) = 1, 0; NaN
     * stays NaN). exp and tanh are libm's expf, tanhf in deterministic and
     * fast mode; sb_canon_expf, sb_canon_tanhf in canonical mode, where also
     * n = tanh(fmaf(r, c_n, a_n)) and h = fmaf(z, h_prev - n, n)
     * (docs/canonical.md §3.7). No reduction: "blas" runs ref's rows on
     * disjoint row ranges, so it equals "ref" bit for bit in every mode and
     * for any thread count; fast is the same as deterministic. B >= 0,
     * H >= 1; no output aliases an input. ---- */

    /* Overwrites h[B, H] and saved[B, 4H], the forward's record for the
     * backward: row b of saved is r[0..H), z[0..H), n[0..H), c_n[0..H)
     * (c_n = gh[b, 2H..3H) copied, so the backward needs neither gi nor gh;
     * it takes h_prev from the caller). */
    void (*gru_forward)(sb_backend *be, float *h, float *saved, const float *gi, const float *gh,
                        const float *h_prev, int B, int H);
    /* From dh[B, H] (the gradient reaching h: from the output and from the
     * next step), saved and h_prev [B, H], per (b, j):
     *   dn = dh*(1 - z);  dz = dh*(h_prev - n);  dan = dn*(1 - n*n);
     *   dar = (dan*(r*(1 - r)))*c_n;  daz = dz*(z*(1 - z));
     *   dgi[b, (r,z,n)] = (dar, daz, dan);  dgh[b, (r,z,n)] = (dar, daz, dan*r);
     *   dh_prev = dh_prev + dh*z
     * (canonical: 1 - n*n is fmaf(-n, n, 1.0f), dh_prev = fmaf(dh, z,
     * dh_prev)). dgi and dgh [B, 3H] are OVERWRITTEN — unlike the other
     * backward ops: they are fresh every step and go straight into the
     * GEMMs; dh_prev is ADDED into (+=), NULL skips it (e.g. a fixed h0). */
    void (*gru_backward)(sb_backend *be, float *dgi, float *dgh, float *dh_prev, const float *dh,
                         const float *saved, const float *h_prev, int B, int H);

    /* ---- host work on the backend's threads (optional: NULL = the caller
     * alone; "ref" has none) ----
     * Runs fn(arg, w, n) once for every worker w in [0, n) of the backend's
     * own pool (w = 0 on the calling thread) and returns when all of them
     * have returned, for host-side work between ops that should use the
     * run's threads (tracing's tensor hashes, engine/tracing.c). Never called
     * while an op runs; fn must not call the backend. */
    void (*host_parallel)(sb_backend *be, void (*fn)(void *arg, int worker, int nworkers),
                          void *arg);

    /* ---- lifetime ---- */
    void (*destroy)(sb_backend *be); /* frees ctx; called by sb_backend_free */
} sb_backend_i;

struct sb_backend {
    const sb_backend_i *i;
    const char *name;  /* "ref", "blas" */
    sb_mode mode;
    int threads;       /* threads the backend computes on ("ref": always 1) */
    int perturb;       /* 1 only when the switch is in effect (fast mode, "blas") */
    void *ctx;         /* backend private state */
};

/* Creates a backend by name ("ref", "blas"). Returns NULL and fills err when the
 * name is unknown, the configuration is invalid (threads < 1; ref with
 * threads != 1 is allowed and runs on one thread) or resources fail.
 * The caller frees with sb_backend_free. */
sb_backend *sb_backend_new(const char *name, const sb_backend_config *cfg, sb_error *err);
void sb_backend_free(sb_backend *be); /* NULL is a no-op */

/* Names of the compiled-in backends, NULL-terminated. */
const char *const *sb_backend_names(void);

/* Description of the BLAS library the "blas" backend uses (e.g. "OpenBLAS
 * 0.3.21 core=Prescott"), for fingerprints. Never NULL. */
const char *sb_blas_info(void);

#endif /* SB_KERNELS_H */
