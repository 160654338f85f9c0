/* canonical_ops.c — the building blocks of canonical mode that "ref" and
 * "blas" share (the summation tree, the activations, one softmax row, Adam),
 * and the "ref" backend's canonical entries: the plain scalar statement of
 * each op's canonical order, the oracle (docs/canonical.md).
 *
 * What it is: scalar C, one order per op, written next to it. The elementwise
 * functions take element ranges so that "blas" can run them on its workers'
 * slices: an elementwise op has no order across elements, so any split gives
 * the same bits. The ops that do not appear here (bias_add, relu, xent
 * backward, SGD, dropout, memory) have no reduction and no transcendental;
 * canonical mode runs ref's own loops for them (ref.c), which are already
 * defined by their formula alone.
 *
 * What it is not: fast. The ref GEMM below is a triple loop calling fmaf;
 * the fast version of the same order is canonical_gemm.c.
 */
#include "canonical.h"
#include "sb_clones.h"

#include <stdint.h>

/* ====================================================================== */
/* the canonical sum                                                      */
/* ====================================================================== */

void sb_canon_tree_init(sb_canon_tree *t) { t->top = 0; }

/* Binary counter: the new block sum is a level-0 subtree; while the
 * subtree below it on the stack has the same level, they merge as
 * (older) + (newer). After nb pushes the stack holds the complete subtrees
 * of sizes given by nb's binary digits, largest first — exactly the partial
 * results the strided loop of canonical.h holds at p[0], p[2^a], ... */
void sb_canon_tree_push(sb_canon_tree *t, float block_sum) {
    float v = block_sum;
    unsigned char level = 0;
    while (t->top > 0 && t->level[t->top - 1] == level) {
        v = t->v[t->top - 1] + v;
        t->top--;
        level++;
    }
    SB_ASSERT(t->top < 64);
    t->v[t->top] = v;
    t->level[t->top] = level;
    t->top++;
}

/* The strided loop's last steps add each larger left subtree to the sum of
 * everything right of it: fold from the right, p = left + p. */
float sb_canon_tree_end(const sb_canon_tree *t) {
    if (t->top == 0) return 0.0f;
    float r = t->v[t->top - 1];
    for (int i = t->top - 2; i >= 0; i--) r = t->v[i] + r;
    return r;
}

/* Blocks of SB_CANON_BLOCK elements, each summed sequentially from +0.0f,
 * block sums through the tree. */
float sb_canon_sum(const float *x, size_t n, size_t stride) {
    sb_canon_tree t;
    sb_canon_tree_init(&t);
    for (size_t b0 = 0; b0 < n; b0 += SB_CANON_BLOCK) {
        size_t b1 = n - b0 < SB_CANON_BLOCK ? n : b0 + SB_CANON_BLOCK;
        float s = 0.0f;
        for (size_t i = b0; i < b1; i++) s = s + x[i * stride];
        sb_canon_tree_push(&t, s);
    }
    return sb_canon_tree_end(&t);
}

/* ====================================================================== */
/* activations (elementwise)                                              */
/* ====================================================================== */

/* GELU, tanh approximation, as ref.c writes it but with our tanh:
 *   gelu(x) = 0.5*x*(1 + tanh(sqrt(2/pi) * (x + 0.044715*x^3)))
 * left to right, each operation rounded (no FMA):
 *   x_cube = (x*x)*x;  u = BETA*(x + KAPPA*x_cube);  t = sb_canon_tanhf(u);
 *   gelu = (0.5*x)*(1 + t)
 * and d gelu/dx in ref.c's factorisation (PyTorch's GeluBackward):
 *   x_sq = x*x;  x_cube = x_sq*x;  u, t as above;
 *   left = 0.5*x;  right = 1 + t;  left_d = 0.5*right;  tanh_d = 1 - t*t;
 *   inner_d = BETA*(1 + (3*KAPPA)*x_sq);  right_d = (left*tanh_d)*inner_d;
 *   grad = left_d + right_d.
 * The elementwise ops run a chunk at a time: the arguments of tanh into a
 * buffer, sb_canon_tanhf_n over it (the SIMD path's lanes give the scalar
 * function's bits), then the rest; each element sees the same operations
 * in the same order as the formulas above. */
#define GELU_BETA 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_KAPPA 0.044715f
#define ACT_CHUNK 256

/* u[i] = tanh(BETA*(x + KAPPA*x_cube)), x_cube = (x*x)*x, for i < len */
static void gelu_tanh(sb_canon_isa isa, float *u, const float *x, size_t len) {
    for (size_t i = 0; i < len; i++) {
        float x_cube = x[i] * x[i] * x[i];
        u[i] = GELU_BETA * (x[i] + GELU_KAPPA * x_cube);
    }
    sb_canon_tanhf_n(isa, u, u, len);
}

/* out[i] = f(inp[i]) (out may be inp). ReLU as ref (keeps NaN); tanh and
 * GELU through sb_canon_tanhf. */
void sb_canon_act_forward(sb_act act, float *out, const float *inp, size_t n) {
    sb_canon_isa isa = sb_canon_math_isa();
    float u[ACT_CHUNK];
    switch (act) {
    case SB_ACT_RELU:
        for (size_t i = 0; i < n; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
        return;
    case SB_ACT_TANH:
        sb_canon_tanhf_n(isa, out, inp, n);
        return;
    case SB_ACT_GELU:
        for (size_t i0 = 0; i0 < n; i0 += ACT_CHUNK) {
            size_t len = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
            const float *x = inp + i0;
            gelu_tanh(isa, u, x, len);
            for (size_t i = 0; i < len; i++) out[i0 + i] = 0.5f * x[i] * (1.0f + u[i]);
        }
        return;
    }
    SB_ASSERT(!"unknown activation");
}

/* dinp[i] = dinp[i] + dout[i] * f'(inp[i]); ReLU selects (f' = 0 at x <= 0),
 * tanh: f' = 1 - t*t with t = sb_canon_tanhf(x) recomputed. */
void sb_canon_act_backward(sb_act act, float *dinp, const float *dout, const float *inp,
                           size_t n) {
    sb_canon_isa isa = sb_canon_math_isa();
    float u[ACT_CHUNK];
    switch (act) {
    case SB_ACT_RELU:
        for (size_t i = 0; i < n; i++) dinp[i] = dinp[i] + (inp[i] <= 0.0f ? 0.0f : dout[i]);
        return;
    case SB_ACT_TANH:
        for (size_t i0 = 0; i0 < n; i0 += ACT_CHUNK) {
            size_t len = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
            sb_canon_tanhf_n(isa, u, inp + i0, len);
            float *d = dinp + i0;
            const float *g = dout + i0;
            for (size_t i = 0; i < len; i++) d[i] = d[i] + g[i] * (1.0f - u[i] * u[i]);
        }
        return;
    case SB_ACT_GELU:
        for (size_t i0 = 0; i0 < n; i0 += ACT_CHUNK) {
            size_t len = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
            const float *x = inp + i0;
            gelu_tanh(isa, u, x, len);
            float *d = dinp + i0;
            const float *g = dout + i0;
            for (size_t i = 0; i < len; i++) {
                float x_sq = x[i] * x[i];
                float t = u[i];
                float left = 0.5f * x[i];
                float right = 1.0f + t;
                float left_d = 0.5f * right;
                float tanh_d = 1.0f - t * t;
                float inner_d = GELU_BETA * (1.0f + (3.0f * GELU_KAPPA) * x_sq);
                float right_d = left * tanh_d * inner_d;
                d[i] = d[i] + g[i] * (left_d + right_d);
            }
        }
        return;
    }
    SB_ASSERT(!"unknown activation");
}

/* ====================================================================== */
/* softmax cross-entropy, one row                                         */
/* ====================================================================== */

/* max over j = 0..C-1 sequentially (exact; a NaN never wins a comparison so
 * it reaches the sum), e_j = expf(x_j - max) into probs, sum = the canonical
 * sum of e_0..e_{C-1}, probs[j] = e_j / sum (a division),
 * loss = logf(sum) - (x_label - max). */
float sb_canon_xent_row(float *probs, const float *logits, int32_t label, int C) {
    float max = logits[0];
    for (int j = 1; j < C; j++)
        if (logits[j] > max) max = logits[j];
    for (int j = 0; j < C; j++) probs[j] = logits[j] - max;
    sb_canon_expf_n(sb_canon_math_isa(), probs, probs, (size_t)C); /* sb_canon_expf each */
    float sum = sb_canon_sum(probs, (size_t)C, 1);
    for (int j = 0; j < C; j++) probs[j] = probs[j] / sum;
    return sb_canon_logf(sum) - (logits[label] - max);
}

/* ====================================================================== */
/* Adam (elementwise)                                                     */
/* ====================================================================== */

/* ref.c's Adam formula (PyTorch's order of operations) with one change: the
 * bias corrections use sb_canon_powi instead of libm pow, so the scalars are
 * the same on any IEEE machine. sqrt and sqrtf are correctly rounded.
 * The loop has vector clones (SB_CLONES, the scalar bits): the baseline
 * build alone ran it 4 lanes wide, a quarter of the 784 MLP's canonical
 * Adam step. */
SB_CLONES
void sb_canon_adam(float *w, float *m, float *v, const float *g, size_t n, float lr, float beta1,
                   float beta2, float eps, float weight_decay, int t) {
    SB_ASSERT(t >= 1);
    double bc1 = 1.0 - sb_canon_powi((double)beta1, t);
    double bc2 = 1.0 - sb_canon_powi((double)beta2, t);
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
/* the ref backend's canonical entries (the oracle)                       */
/* ====================================================================== */

/* C[i,j] = alpha*acc + beta*C[i,j] with, per (i,j): k cut into blocks of
 * SB_CANON_KB steps, each block p = +0.0f then p = fmaf(op(A)[i,k],
 * op(B)[k,j], p) for its k in increasing order; acc = the first block's p,
 * then acc = acc + p for each later block (acc = +0.0f when K == 0); then
 * c = alpha*acc (rounded), and when beta != 0, c = c + beta*C[i,j] (the
 * product rounded, then the sum). C is not read when beta == 0; A and B are
 * not read when alpha == 0 (acc stays +0.0f). */
void sb_canon_ref_gemm(sb_backend *be, int transA, int transB, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc) {
    (void)be;
    SB_ASSERT(M >= 0 && N >= 0 && K >= 0);
    SB_ASSERT(lda >= 1 && ldb >= 1 && ldc >= 1);
    SB_ASSERT(lda >= (transA ? M : K) && ldb >= (transB ? K : N) && ldc >= N);
    size_t a_row = transA ? 1 : (size_t)lda, a_k = transA ? (size_t)lda : 1;
    size_t b_col = transB ? (size_t)ldb : 1, b_k = transB ? 1 : (size_t)ldb;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            if (alpha != 0.0f) {
                const float *a = A + (size_t)i * a_row;
                const float *b = B + (size_t)j * b_col;
                for (int k0 = 0; k0 < K; k0 += SB_CANON_KB) {
                    int k1 = K - k0 < SB_CANON_KB ? K : k0 + SB_CANON_KB;
                    float p = 0.0f;
                    for (int k = k0; k < k1; k++) p = fmaf(a[(size_t)k * a_k], b[(size_t)k * b_k], p);
                    acc = k0 == 0 ? p : acc + p;
                }
            }
            float c = alpha * acc;
            float *cij = C + (size_t)i * (size_t)ldc + (size_t)j;
            if (beta != 0.0f) c = c + beta * *cij;
            *cij = c;
        }
    }
}

/* dbias[j] = dbias[j] + (canonical sum of column j over b = 0..B-1). */
void sb_canon_ref_bias_grad(sb_backend *be, float *dbias, const float *dout, int B, int N) {
    (void)be;
    if (B <= 0 || N <= 0) return;
    for (int j = 0; j < N; j++)
        dbias[j] = dbias[j] + sb_canon_sum(dout + j, (size_t)B, (size_t)N);
}

void sb_canon_ref_act_forward(sb_backend *be, sb_act act, float *out, const float *inp, size_t n) {
    (void)be;
    sb_canon_act_forward(act, out, inp, n);
}

void sb_canon_ref_act_backward(sb_backend *be, sb_act act, float *dinp, const float *dout,
                               const float *inp, size_t n) {
    (void)be;
    sb_canon_act_backward(act, dinp, dout, inp, n);
}

/* Rows through sb_canon_xent_row; *loss = (canonical sum of the B row
 * losses, in row order) / (float)B. */
void sb_canon_ref_xent_forward(sb_backend *be, float *probs, float *loss, const float *logits,
                               const int32_t *labels, int B, int C) {
    (void)be;
    SB_ASSERT(B >= 1 && C >= 1);
    sb_canon_tree t;
    sb_canon_tree_init(&t);
    for (int b0 = 0; b0 < B; b0 += SB_CANON_BLOCK) {
        int b1 = B - b0 < SB_CANON_BLOCK ? B : b0 + SB_CANON_BLOCK;
        float s = 0.0f;
        for (int b = b0; b < b1; b++) {
            SB_ASSERT(labels[b] >= 0 && labels[b] < C);
            size_t off = (size_t)b * (size_t)C;
            s = s + sb_canon_xent_row(probs + off, logits + off, labels[b], C);
        }
        sb_canon_tree_push(&t, s);
    }
    *loss = sb_canon_tree_end(&t) / (float)B;
}

void sb_canon_ref_adam_update(sb_backend *be, float *w, float *m, float *v, const float *g,
                              size_t n, float lr, float beta1, float beta2, float eps,
                              float weight_decay, int t) {
    (void)be;
    sb_canon_adam(w, m, v, g, n, lr, beta1, beta2, eps, weight_decay, t);
}

/* dW[N,K] = dout[B,N]^T · inp[B,K]: the canonical GEMM (transA = 1, beta 0),
 * i.e. per (n,k) the blocked fmaf chain over b = 0..B-1. */
void sb_canon_ref_weight_grad(sb_backend *be, float *dW, const float *dout, const float *inp,
                              int B, int N, int K) {
    SB_ASSERT(B >= 0 && N >= 0 && K >= 0);
    if (N == 0 || K == 0) return;
    sb_canon_ref_gemm(be, 1, 0, N, K, B, 1.0f, dout, N, inp, K, 0.0f, dW, K);
}
