/* ref.c — the "ref" backend: the float32 oracle every other backend is tested
 * against (DESIGN.md §3).
 *
 * What it is: one thread, plain scalar C, float32 storage AND float32
 * accumulators, each reduction in one fixed sequential order that is written
 * next to it. The whole project builds with -ffp-contract=off, so every `a*b+c`
 * below is two roundings, exactly as written; no FMA, no fast-math, no SIMD
 * intrinsics. Given the same libm (expf, logf, tanhf, sqrtf, pow), the result
 * is a pure function of the inputs: one thread, one order, one set of bits.
 *
 * Why float and not double accumulators: the oracle should be the float32
 * computation done in the most obvious order, so that a backend agreeing with
 * it bitwise proves it does that computation, and one disagreeing shows by how
 * much a different order moves float32 results. A double oracle would be
 * "more exact" but no float32 backend could ever match it bit for bit.
 *
 * What it deliberately is not: fast. No blocking, no threads, no vectorising
 * tricks; `threads` in the config is ignored and the backend reports 1. It is
 * also not PyTorch: it follows PyTorch's formulas and order of operations
 * (noted at each op), but PyTorch's CPU kernels use SIMD tanh/exp (SLEEF) and
 * FMA in some vector paths, so matching PyTorch's bits is not promised.
 *
 * Canonical mode swaps in the canonical oracle (canonical_ops.c) for the ops
 * with a reduction or a transcendental; see ref_canonical_vtable below.
 *
 * Reentrancy: the ops keep no state (ctx is NULL), so they may be called
 * concurrently on disjoint memory. The "blas" backend relies on this: it runs
 * these very functions on disjoint ranges from its worker threads, which is
 * why its elementwise ops equal ref's bit for bit.
 */
#include "attn_internal.h"
#include "batchnorm_internal.h"
#include "canonical.h"
#include "conv_internal.h"
#include "gru_internal.h"
#include "kernels.h"
#include "norm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The elementwise loops carry SB_CLONES (sb_clones.h): vector clones that
 * give the plain scalar loop's bits. */
#include "sb_clones.h"

/* ====================================================================== */
/* memory: plain host memory (also the blas backends' memory entries:     */
/* declared in blas_internal.h; they ignore `be`)                         */
/* ====================================================================== */

void *sb_ref_alloc(sb_backend *be, size_t bytes) {
    (void)be;
    /* aligned_alloc wants a multiple of the alignment; 0 bytes still gets a
     * unique, freeable block so callers need no special case */
    size_t rounded = bytes == 0 ? 64 : bytes;
    if (rounded > SIZE_MAX - 63) return NULL;
    rounded = (rounded + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void sb_ref_free(sb_backend *be, void *p) {
    (void)be;
    free(p);
}

void sb_ref_upload(sb_backend *be, void *dst, const void *host_src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, host_src, bytes);
}

void sb_ref_download(sb_backend *be, void *host_dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(host_dst, src, bytes);
}

void sb_ref_zero(sb_backend *be, float *x, size_t n) {
    (void)be;
    for (size_t i = 0; i < n; i++) x[i] = 0.0f; /* +0.0f, never -0.0f */
}

/* ====================================================================== */
/* GEMM                                                                   */
/* ====================================================================== */

/* Programming-error checks shared by every GEMM entry: the strides must cover
 * the matrices as stored (the same rule cblas applies, which would otherwise
 * print a message and silently skip the call). */
static void check_gemm_args(int transA, int transB, int M, int N, int K, int lda, int ldb,
                            int ldc) {
    SB_ASSERT(M >= 0 && N >= 0 && K >= 0);
    SB_ASSERT(lda >= 1 && ldb >= 1 && ldc >= 1);
    SB_ASSERT(lda >= (transA ? M : K)); /* A stored [K,M] or [M,K] */
    SB_ASSERT(ldb >= (transB ? K : N)); /* B stored [N,K] or [K,N] */
    SB_ASSERT(ldc >= N);
}

/* C[i,j] = alpha * sum_k op(A)[i,k]*op(B)[k,j] + beta * C[i,j].
 * Reduction order: for each (i,j) independently, one float accumulator starting
 * at 0.0f, k = 0, 1, ..., K-1 in increasing order; then alpha*acc, then
 * + beta*C. As in BLAS, C is not read when beta == 0 (so garbage or NaN in C
 * does not leak in) and A, B are not read when alpha == 0. */
static void ref_gemm(sb_backend *be, int transA, int transB, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc) {
    (void)be;
    check_gemm_args(transA, transB, M, N, K, lda, ldb, ldc);
    /* element strides of op(A) along k and op(B) along k */
    size_t a_row = transA ? 1 : (size_t)lda, a_k = transA ? (size_t)lda : 1;
    size_t b_col = transB ? (size_t)ldb : 1, b_k = transB ? 1 : (size_t)ldb;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            if (alpha != 0.0f) {
                const float *a = A + (size_t)i * a_row;
                const float *b = B + (size_t)j * b_col;
                for (int k = 0; k < K; k++) acc += a[(size_t)k * a_k] * b[(size_t)k * b_k];
            }
            float c = alpha * acc;
            float *cij = C + (size_t)i * (size_t)ldc + (size_t)j;
            if (beta != 0.0f) c = c + beta * *cij;
            *cij = c;
        }
    }
}

/* ====================================================================== */
/* bias                                                                   */
/* ====================================================================== */

SB_CLONES
static void ref_bias_add(sb_backend *be, float *out, const float *bias, int B, int N) {
    (void)be;
    for (int b = 0; b < B; b++) {
        float *row = out + (size_t)b * (size_t)N;
        for (int j = 0; j < N; j++) row[j] = row[j] + bias[j];
    }
}

/* dbias[j] += sum_b dout[b,j].
 * Reduction order: per column j, one float accumulator starting at 0.0f,
 * rows b = 0, 1, ..., B-1 in increasing order; the finished sum is then added
 * to dbias[j] once (dbias[j] = dbias[j] + sum). */
static void ref_bias_grad(sb_backend *be, float *dbias, const float *dout, int B, int N) {
    (void)be;
    for (int j = 0; j < N; j++) {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += dout[(size_t)b * (size_t)N + (size_t)j];
        dbias[j] = dbias[j] + s;
    }
}

/* ====================================================================== */
/* activations                                                            */
/* ====================================================================== */

/* GELU, tanh approximation (PyTorch's gelu(approximate='tanh')):
 *   gelu(x) = 0.5*x*(1 + tanh(sqrt(2/pi) * (x + 0.044715*x^3)))
 * evaluated left to right in float with the constants rounded to float. */
#define GELU_BETA 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_KAPPA 0.044715f

static float gelu_fwd(float x) {
    float x_cube = x * x * x;
    float inner = GELU_BETA * (x + GELU_KAPPA * x_cube);
    return 0.5f * x * (1.0f + tanhf(inner));
}

/* d gelu / dx, in the same factorisation PyTorch's GeluBackward uses:
 *   left = x/2, right = 1 + tanh(inner)
 *   d = right/2 + left * (1 - tanh^2) * sqrt(2/pi) * (1 + 3*0.044715*x^2) */
static float gelu_grad(float x) {
    float x_sq = x * x;
    float x_cube = x_sq * x;
    float inner = GELU_BETA * (x + GELU_KAPPA * x_cube);
    float t = tanhf(inner);
    float left = 0.5f * x;
    float right = 1.0f + t;
    float left_d = 0.5f * right;
    float tanh_d = 1.0f - t * t;
    float inner_d = GELU_BETA * (1.0f + (3.0f * GELU_KAPPA) * x_sq);
    float right_d = left * tanh_d * inner_d;
    return left_d + right_d;
}

/* ReLU keeps NaN (x < 0 is false for NaN) so a NaN is never hidden as 0. */
SB_CLONES
static void ref_act_forward(sb_backend *be, sb_act act, float *restrict out,
                            const float *restrict inp, size_t n) {
    (void)be;
    switch (act) {
    case SB_ACT_RELU:
        for (size_t i = 0; i < n; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
        return;
    case SB_ACT_TANH:
        for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
        return;
    case SB_ACT_GELU:
        for (size_t i = 0; i < n; i++) out[i] = gelu_fwd(inp[i]);
        return;
    }
    SB_ASSERT(!"unknown activation");
}

/* dinp[i] += dout[i] * f'(inp[i]).
 * ReLU: f'(x) = 0 for x <= 0 (the kink counts as 0, like PyTorch's
 * threshold_backward), and the gradient is selected rather than multiplied so
 * an infinite dout does not turn into NaN at x <= 0.
 * tanh: f'(x) = 1 - tanh(x)^2, recomputed from the input. */
SB_CLONES
static void ref_act_backward(sb_backend *be, sb_act act, float *restrict dinp,
                             const float *restrict dout, const float *restrict inp, size_t n) {
    (void)be;
    switch (act) {
    case SB_ACT_RELU:
        for (size_t i = 0; i < n; i++) {
            float d = dout[i]; /* loaded unconditionally so the select vectorizes */
            dinp[i] = dinp[i] + (inp[i] <= 0.0f ? 0.0f : d);
        }
        return;
    case SB_ACT_TANH:
        for (size_t i = 0; i < n; i++) {
            float t = tanhf(inp[i]);
            dinp[i] = dinp[i] + dout[i] * (1.0f - t * t);
        }
        return;
    case SB_ACT_GELU:
        for (size_t i = 0; i < n; i++) dinp[i] = dinp[i] + dout[i] * gelu_grad(inp[i]);
        return;
    }
    SB_ASSERT(!"unknown activation");
}

/* ====================================================================== */
/* softmax cross-entropy                                                  */
/* ====================================================================== */

/* One row: probs = softmax(logits) and the row's loss -log(probs[label]).
 * Reductions, both over j = 0, 1, ..., C-1 in increasing order: the max
 * (a NaN logit never wins a comparison, so it reaches the sum and makes the
 * row NaN), then the float sum of exp(x_j - max) starting at 0.0f.
 * probs[j] = exp(x_j - max) / sum (a division, not a multiplication by 1/sum).
 * The loss is computed as log(sum) - (x_label - max) — the log-softmax form
 * PyTorch's cross_entropy uses — which equals -log(probs[label]) but stays
 * finite when probs[label] underflows to 0. */
static float softmax_xent_row(float *probs, const float *logits, int32_t label, int C) {
    float max = logits[0];
    for (int j = 1; j < C; j++)
        if (logits[j] > max) max = logits[j];
    float sum = 0.0f;
    for (int j = 0; j < C; j++) {
        float e = expf(logits[j] - max);
        probs[j] = e;
        sum += e;
    }
    for (int j = 0; j < C; j++) probs[j] = probs[j] / sum;
    return logf(sum) - (logits[label] - max);
}

/* *loss = (sum over b of row losses) / B.
 * Reduction order: one float accumulator starting at 0.0f, rows b = 0, 1, ...,
 * B-1 in increasing order, then one division by (float)B. For B == 1 the loss
 * is the row loss exactly (0 + l = l, l / 1 = l); blas.c relies on that. */
static void ref_xent_forward(sb_backend *be, float *probs, float *loss, const float *logits,
                             const int32_t *labels, int B, int C) {
    (void)be;
    SB_ASSERT(B >= 1 && C >= 1);
    float s = 0.0f;
    for (int b = 0; b < B; b++) {
        SB_ASSERT(labels[b] >= 0 && labels[b] < C);
        size_t off = (size_t)b * (size_t)C;
        s += softmax_xent_row(probs + off, logits + off, labels[b], C);
    }
    *loss = s / (float)B;
}

/* dlogits[b,j] += (probs[b,j] - onehot) / B, elementwise (no reduction). */
static void ref_xent_backward(sb_backend *be, float *dlogits, const float *probs,
                              const int32_t *labels, int B, int C) {
    (void)be;
    float fB = (float)B;
    for (int b = 0; b < B; b++) {
        SB_ASSERT(labels[b] >= 0 && labels[b] < C);
        size_t off = (size_t)b * (size_t)C;
        for (int j = 0; j < C; j++) {
            float y = j == labels[b] ? 1.0f : 0.0f;
            dlogits[off + (size_t)j] = dlogits[off + (size_t)j] + (probs[off + (size_t)j] - y) / fB;
        }
    }
}

/* ====================================================================== */
/* optimizers (elementwise, no reductions)                                */
/* ====================================================================== */

/* torch.optim.SGD (dampening 0, no Nesterov), per element:
 *   d = g + wd*w            (skipped when wd == 0, as PyTorch does)
 *   buf = buf*momentum + d  (skipped when momentum == 0; PyTorch's first step
 *                            sets buf = d, and 0*momentum + d == d)
 *   w = w - lr*buf          (PyTorch: w + (-lr)*buf, the same bits) */
SB_CLONES
static void ref_sgd_update(sb_backend *be, float *restrict w, float *restrict mom,
                           const float *restrict g, size_t n, float lr, float momentum,
                           float weight_decay) {
    (void)be;
    for (size_t i = 0; i < n; i++) {
        float d = g[i];
        if (weight_decay != 0.0f) d = d + weight_decay * w[i];
        if (momentum != 0.0f) {
            float buf = mom[i] * momentum + d;
            mom[i] = buf;
            d = buf;
        }
        w[i] = w[i] - lr * d;
    }
}

/* torch.optim.AdamW / Adam(decoupled_weight_decay=True), single-tensor,
 * non-fused, non-capturable path, per element. Scalars are computed in double
 * as Python does, then rounded to float where PyTorch hands them to a float
 * kernel:
 *   bc1 = 1 - beta1^t, bc2 = 1 - beta2^t           (double)
 *   step_size = lr / bc1, bc2_sqrt = sqrt(bc2)      (double)
 *   w = w * (float)(1 - lr*wd)                      (only when wd != 0)
 *   m = lerp(m, g, (float)(1 - beta1))              (PyTorch's lerp: for weight
 *        < 0.5 m + wt*(g - m), else g - (g - m)*(1 - wt))
 *   v = v*beta2 + ((float)(1 - beta2) * g) * g      (mul_ then addcmul_)
 *   denom = sqrt(v) / (float)bc2_sqrt + (float)eps
 *   w = w + ((float)(-step_size) * m) / denom       (addcdiv_: value*t1/t2,
 *        left to right, as PyTorch's CPU kernel evaluates it)
 * One caveat for bitwise PyTorch parity: PyTorch's lr/betas/eps are Python
 * doubles, ours arrive as floats, so e.g. beta1 = 0.9f is not Python's 0.9. */
SB_CLONES
static void ref_adam_update(sb_backend *be, float *restrict w, float *restrict m,
                            float *restrict v, const float *restrict g,
                            size_t n, float lr, float beta1, float beta2, float eps,
                            float weight_decay, int t) {
    (void)be;
    SB_ASSERT(t >= 1);
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    double step_size = (double)lr / bc1;
    double bc2_sqrt = sqrt(bc2);
    const float neg_step = (float)(-step_size);
    const float bc2_sqrt_f = (float)bc2_sqrt;
    const float lerp_wt = (float)(1.0 - (double)beta1);
    const float one_minus_beta2 = (float)(1.0 - (double)beta2);
    const float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    const int lerp_small = fabsf(lerp_wt) < 0.5f;
    for (size_t i = 0; i < n; i++) {
        float wi = w[i], gi = g[i], mi = m[i], vi = v[i];
        if (weight_decay != 0.0f) wi = wi * decay;
        mi = lerp_small ? mi + lerp_wt * (gi - mi) : gi - (gi - mi) * (1.0f - lerp_wt);
        vi = vi * beta2;
        vi = vi + one_minus_beta2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt_f + eps;
        wi = wi + neg_step * mi / denom;
        w[i] = wi;
        m[i] = mi;
        v[i] = vi;
    }
}

/* ====================================================================== */
/* weight gradient (a reduction over the batch)                           */
/* ====================================================================== */

/* dW[n,k] = sum over b of dout[b,n] * inp[b,k], overwriting dW.
 * dout is [B,N], inp is [B,K], dW is [N,K], all row-major and contiguous.
 * Reduction order: for each (n,k) independently, one float accumulator
 * starting at 0.0f (+0.0f), rows b = 0, 1, ..., B-1 in increasing order, each
 * step acc = acc + dout[b,n]*inp[b,k]: the product rounded, then the sum
 * rounded (-ffp-contract=off: no FMA). B == 0 gives +0.0f everywhere.
 * The accumulators live in dW itself and the loops run b outermost, so the
 * inner loop walks a row of inp and a row of dW contiguously; that changes
 * the order in which memory is touched, never the order of any element's
 * additions. No zero-skipping: 0 * Inf must still give NaN. */
static void ref_weight_grad(sb_backend *be, float *restrict dW, const float *restrict dout,
                            const float *restrict inp, int B, int N, int K) {
    (void)be;
    SB_ASSERT(B >= 0 && N >= 0 && K >= 0);
    size_t nk = (size_t)N * (size_t)K;
    for (size_t i = 0; i < nk; i++) dW[i] = 0.0f;
    for (int b = 0; b < B; b++) {
        const float *g = dout + (size_t)b * (size_t)N;
        const float *x = inp + (size_t)b * (size_t)K;
        for (int n = 0; n < N; n++) {
            const float gn = g[n];
            float *row = dW + (size_t)n * (size_t)K;
            for (int k = 0; k < K; k++) row[k] = row[k] + gn * x[k];
        }
    }
}

/* ====================================================================== */
/* dropout (elementwise, no reductions)                                   */
/* ====================================================================== */

/* Inverted dropout with a keep-mask drawn by the engine (mask[i] is 0.0f or
 * 1.0f; any value comparing equal to 0, -0.0f included, drops):
 *   out[i] = mask[i] != 0 ? inp[i]*scale : +0.0f
 * The value is selected, not multiplied by the mask, exactly as kernels.h
 * specifies: a dropped element is +0.0f even when its input is Inf or NaN
 * (PyTorch multiplies by mask/(1-p) and would give NaN there). A kept element
 * is one rounding, inp*scale. The product is computed for every element so
 * the select vectorizes; the clones give the scalar loop's bits. */
SB_CLONES
static void ref_dropout_forward(sb_backend *be, float *restrict out, const float *restrict inp,
                                const float *restrict mask, size_t n, float scale) {
    (void)be;
    for (size_t i = 0; i < n; i++) {
        float kept = inp[i] * scale;
        out[i] = mask[i] != 0.0f ? kept : 0.0f;
    }
}

/* dinp[i] += mask[i] != 0 ? dout[i]*scale : +0.0f — elementwise, no
 * reduction; the selected term is added with one float addition (so a
 * dropped element adds +0.0f, as ReLU's backward does). */
SB_CLONES
static void ref_dropout_backward(sb_backend *be, float *restrict dinp, const float *restrict dout,
                                 const float *restrict mask, size_t n, float scale) {
    (void)be;
    for (size_t i = 0; i < n; i++) {
        float kept = dout[i] * scale;
        dinp[i] = dinp[i] + (mask[i] != 0.0f ? kept : 0.0f);
    }
}

/* ====================================================================== */
/* lifetime                                                               */
/* ====================================================================== */

static void ref_destroy(sb_backend *be) { (void)be; /* no private state */ }

static const sb_backend_i ref_vtable = {
    .alloc = sb_ref_alloc,
    .free = sb_ref_free,
    .upload = sb_ref_upload,
    .download = sb_ref_download,
    .zero = sb_ref_zero,
    .gemm = ref_gemm,
    .bias_add = ref_bias_add,
    .bias_grad = ref_bias_grad,
    .act_forward = ref_act_forward,
    .act_backward = ref_act_backward,
    .xent_forward = ref_xent_forward,
    .xent_backward = ref_xent_backward,
    .sgd_update = ref_sgd_update,
    .adam_update = ref_adam_update,
    .weight_grad = ref_weight_grad,
    .dropout_forward = ref_dropout_forward,
    .dropout_backward = ref_dropout_backward,
    .conv2d_forward = sb_ref_conv2d_forward, /* ref_conv.c */
    .conv2d_backward = sb_ref_conv2d_backward,
    .maxpool2d_forward = sb_ref_maxpool2d_forward,
    .maxpool2d_backward = sb_ref_maxpool2d_backward,
    .avgpool2d_forward = sb_ref_avgpool2d_forward,
    .avgpool2d_backward = sb_ref_avgpool2d_backward,
    .layernorm_forward = sb_ref_layernorm_forward, /* ref_norm.c */
    .layernorm_backward = sb_ref_layernorm_backward,
    .embedding_forward = sb_ref_embedding_forward,
    .embedding_backward = sb_ref_embedding_backward,
    .batchnorm_forward = sb_ref_batchnorm_forward, /* ref_batchnorm.c */
    .batchnorm_forward_eval = sb_ref_batchnorm_forward_eval,
    .batchnorm_backward = sb_ref_batchnorm_backward,
    .softmax_forward = sb_ref_softmax_forward, /* ref_attn.c */
    .softmax_backward = sb_ref_softmax_backward,
    .residual_forward = sb_ref_residual_forward,
    .residual_backward = sb_ref_residual_backward,
    .attention_forward = sb_ref_attention_forward,
    .attention_backward = sb_ref_attention_backward,
    .gru_forward = sb_ref_gru_forward, /* ref_gru.c: canonical by be->mode */
    .gru_backward = sb_ref_gru_backward,
    .destroy = ref_destroy,
};

/* Canonical mode (docs/canonical.md): the ops with a reduction or a
 * transcendental take their canonical oracle from canonical_ops.c; the rest
 * (memory, bias_add, xent_backward, SGD, dropout) are the loops above, whose
 * result is already fixed by their formula. */
static const sb_backend_i ref_canonical_vtable = {
    .alloc = sb_ref_alloc,
    .free = sb_ref_free,
    .upload = sb_ref_upload,
    .download = sb_ref_download,
    .zero = sb_ref_zero,
    .gemm = sb_canon_ref_gemm,
    .bias_add = ref_bias_add,
    .bias_grad = sb_canon_ref_bias_grad,
    .act_forward = sb_canon_ref_act_forward,
    .act_backward = sb_canon_ref_act_backward,
    .xent_forward = sb_canon_ref_xent_forward,
    .xent_backward = ref_xent_backward,
    .sgd_update = ref_sgd_update,
    .adam_update = sb_canon_ref_adam_update,
    .weight_grad = sb_canon_ref_weight_grad,
    .dropout_forward = ref_dropout_forward,
    .dropout_backward = ref_dropout_backward,
    .conv2d_forward = sb_canon_ref_conv2d_forward, /* canonical_conv.c */
    .conv2d_backward = sb_canon_ref_conv2d_backward,
    .maxpool2d_forward = sb_ref_maxpool2d_forward, /* pooling: one order everywhere */
    .maxpool2d_backward = sb_ref_maxpool2d_backward,
    .avgpool2d_forward = sb_ref_avgpool2d_forward,
    .avgpool2d_backward = sb_ref_avgpool2d_backward,
    .layernorm_forward = sb_canon_ref_layernorm_forward, /* canonical_norm.c */
    .layernorm_backward = sb_canon_ref_layernorm_backward,
    .embedding_forward = sb_ref_embedding_forward, /* embedding: one order everywhere */
    .embedding_backward = sb_ref_embedding_backward,
    .batchnorm_forward = sb_canon_ref_batchnorm_forward, /* canonical_batchnorm.c */
    .batchnorm_forward_eval = sb_canon_ref_batchnorm_forward_eval,
    .batchnorm_backward = sb_canon_ref_batchnorm_backward,
    .softmax_forward = sb_ref_softmax_forward, /* ref_attn.c: canonical by be->mode */
    .softmax_backward = sb_ref_softmax_backward,
    .residual_forward = sb_ref_residual_forward,
    .residual_backward = sb_ref_residual_backward,
    .attention_forward = sb_ref_attention_forward,
    .attention_backward = sb_ref_attention_backward,
    .gru_forward = sb_ref_gru_forward, /* ref_gru.c: canonical by be->mode */
    .gru_backward = sb_ref_gru_backward,
    .destroy = ref_destroy,
};

/* Called by sb_backend_new (backend.c) with a validated configuration. The
 * oracle has one order per mode: fast mode computes exactly like
 * deterministic mode, canonical mode follows docs/canonical.md; it runs on
 * one thread whatever was asked, and perturb has no effect. */
sb_status sb_ref_init(sb_backend *be, sb_error *err) {
    (void)err;
    be->i = be->mode == SB_MODE_CANONICAL ? &ref_canonical_vtable : &ref_vtable;
    be->ctx = NULL;
    be->threads = 1;
    be->perturb = 0;
    return SB_OK;
}
