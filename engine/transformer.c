/* transformer.c — the reference tiny transformer (a GPT-style decoder): its
 * parameter table, its buffers and the model ops of one training step.
 *
 * Model, on token data (data.kind "chars"): T = data.features - 1 input
 * tokens per sequence, V = data.classes symbols, C = model.d_model, H =
 * model.heads of D = C/H, L = model.layers blocks, M = model.mlp. Names and
 * layouts are a small torch module's (tests/parity_transformer.py writes it),
 * so a checkpoint maps onto it 1:1:
 *   wte.weight [V, C]                  token embedding
 *   wpe.weight [T, C]                  position embedding
 *   blocks.<i>.ln1.weight, .ln1.bias [C]
 *   blocks.<i>.attn.qkv.weight [3C, C], .attn.qkv.bias [3C]   (q, k, v rows in that order)
 *   blocks.<i>.attn.proj.weight [C, C], .attn.proj.bias [C]
 *   blocks.<i>.ln2.weight, .ln2.bias [C]
 *   blocks.<i>.mlp.fc.weight [M, C], .mlp.fc.bias [M]
 *   blocks.<i>.mlp.proj.weight [C, M], .mlp.proj.bias [C]
 *   ln_f.weight, ln_f.bias [C]
 *   head.weight [V, C]                 only when not tied; no head bias
 * Forward, per sequence (rows r = b·T + t, batch-major as t->tok_in):
 *   x = wte[tokens] + wpe
 *   per block: x = x + proj(attn(ln1(x)));  x = x + proj(gelu(fc(ln2(x))))
 *   logits = ln_f(x) · Wᵀ, W = head.weight, or wte.weight when tied
 *   loss = softmax cross-entropy, the mean over all B·T positions, the target
 *          of position t being token t + 1 (t->tok_tgt)
 * attn: qkv = x·Wqkvᵀ + b [B, T, 3C], split into q, k, v [B, H, T, D] (q =
 * columns 0..C-1, k = C..2C-1, v = 2C..3C-1; head h = columns h·D..h·D+D-1
 * of each, PyTorch's qkv.split(C, -1) then .view(B, T, H, D).transpose(1, 2)),
 * causal scaled dot-product attention (scale 1/sqrt(D)), the heads merged
 * back to [B, T, C]. Layer norms: eps 1e-5 (PyTorch's default), biased
 * variance. GELU: the tanh approximation (PyTorch's approximate='tanh').
 * Init (each tensor from its own stream "init/<name>"): wte and wpe normal
 * N(0, 0.02²) — GPT-2's, not nn.Embedding's N(0, 1): with a tied head the
 * logits are ln_f(x)·wteᵀ, sums of C unit-sized terms, and N(0, 1) would
 * start them at a spread of √C (a loss far above ln V); layer norms ones
 * and zeros; every Linear's weight and bias uniform in ±1/sqrt(fan_in)
 * (nn.Linear's default; fan_in = C, except mlp.proj: M).
 *
 * Ops, each through sb_run_op (tracing.c) with a stable layer path, so every
 * tensor write is traced:
 *   forward  wte/lookup.fwd, wpe/add.fwd, then per block blocks.<i>/ln1.fwd,
 *            …/attn.qkv/matmul.fwd, …/attn.qkv/bias.fwd, …/attn/split_heads.fwd,
 *            …/attn/sdpa.fwd, …/attn/merge_heads.fwd, …/attn.proj/matmul.fwd,
 *            …/attn.proj/bias.fwd, …/residual1.fwd, …/ln2.fwd,
 *            …/mlp.fc/matmul.fwd, …/mlp.fc/bias.fwd, …/mlp/gelu.fwd,
 *            …/mlp.proj/matmul.fwd, …/mlp.proj/bias.fwd, …/residual2.fwd;
 *            ln_f.fwd, head/matmul.fwd, loss/xent.fwd
 *   backward loss/xent.bwd, head/matmul.bwd_weight, head/matmul.bwd_input,
 *            ln_f.bwd, then per block from the last: …/residual2.bwd,
 *            …/mlp.proj/matmul.bwd_weight, …/mlp.proj/bias.grad,
 *            …/mlp.proj/matmul.bwd_input, …/mlp/gelu.bwd, …/mlp.fc/(the
 *            same three), …/ln2.bwd, …/residual1.bwd, …/attn.proj/(three),
 *            …/attn/merge_heads.bwd, …/attn/sdpa.bwd, …/attn/split_heads.bwd,
 *            …/attn.qkv/(three), …/ln1.bwd; then wpe/add.bwd,
 *            wte/scatter_add.bwd; then the shared optimizer (train.c).
 *   A layer norm's backward is one record with outputs (dweight, dbias,
 *   dinput), as the CNN's conv.bwd.
 * Every op that adds into its output either zeroes it first inside the op or
 * lists what it adds to among its inputs (recheck restores the outputs before
 * running an op again, so both run twice to the same bits).
 *
 * Reduction orders (beyond each kernel's own, kernels/kernels.h):
 *   - the residual stream's gradient: residualN.bwd copies the incoming
 *     gradient into both branches (zeroed first: 0 + g, exact); the layer
 *     norm's backward then ADDS its input gradient into the residual branch's
 *     copy: dx = g + ln'(…), one rounding, in every mode;
 *   - every weight and bias gradient is ONE weight_grad / bias_grad over all
 *     B·T rows in row order (b outermost, then t): the kernel's order;
 *   - wpe.weight's gradient is bias_grad over the B sequences of the [B, T·C]
 *     input gradient (the kernel's order over b);
 *   - tied: wte.weight's gradient is the head's weight gradient first
 *     (head/matmul.bwd_weight writes it: weight_grad overwrites), then the
 *     embedding's scatter-add adds every position's row straight into it
 *     (wte/scatter_add.bwd, embedding_backward's order: rows 0..B·T-1):
 *     ((head + row_0) + row_1) + … . PyTorch sums the two contributions as
 *     head + (the whole scatter-add): the same terms, another rounding;
 *     untied: the scatter-add into a zeroed gradient.
 * In fast mode the unordered reductions are the kernels' (weight_grad,
 * bias_grad, layernorm_backward, attention_backward, embedding_backward, the
 * loss); the permutes and the elementwise ops have none.
 * The key third of attn.qkv.bias gets a gradient that is zero in exact
 * arithmetic (a softmax row ignores a shift of all its scores) and rounding
 * noise (~1e-10) in float. Adam with PyTorch's eps 1e-8 turns that noise
 * into steps of up to lr, so the key bias is where two backends (or
 * samebits and PyTorch) part first; the shipped suite and the tests use
 * eps 1e-6 (suites/transformer.json).
 *
 * The head permutes (split_heads, merge_heads) are plain loops over host
 * memory: right for the ref and blas backends, whose memory is host memory.
 * A device backend will need a permute kernel in kernels/ for them.
 *
 * Not here: the token split data/tokens, the data ops and the optimizer
 * (train.c), the kernels, checkpoints (checkpoint.c walks the same table),
 * dropout (validation rejects it for this model).
 */
#include "train_internal.h"

#include <math.h>
#include <string.h>

#define LN_EPS 1e-5f /* PyTorch's nn.LayerNorm default */

/* parameter indices: wte, wpe, the blocks' 12 each, then ln_f and the head */
enum { P_WTE, P_WPE, P_BLOCK0 };
enum {
    B_LN1W, B_LN1B, B_QKVW, B_QKVB, B_PROJW, B_PROJB, B_LN2W, B_LN2B, B_FCW, B_FCB, B_MPW, B_MPB,
    B_N
};

typedef struct block_buf { /* one block's saved activations (backend memory) */
    float *ln1, *ln1_mean, *ln1_rstd; /* [R, C], [R], [R] */
    float *qkv;                       /* [R, 3C] */
    float *qkvh;                      /* q, k, v [B, H, T, D] each, one after the other */
    float *att;                       /* [B, H, T, T] softmax probabilities */
    float *atto;                      /* [B, H, T, D] attention output per head */
    float *attm;                      /* [R, C] heads merged */
    float *attp;                      /* [R, C] attn.proj output */
    float *xmid;                      /* [R, C] x + attn branch */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fc, *gelu;                 /* [R, M] pre-activation, activation */
    float *mlpp;                      /* [R, C] mlp.proj output */
} block_buf;

struct sb_tf {
    int B, T, V, C, H, D, L, M, R;
    size_t RC;
    int p_lnfw, p_lnfb, p_head; /* parameter indices (p_head = P_WTE when tied) */
    float *x[SB_MAX_BLOCKS + 1];     /* [R, C] the residual stream: x[i] enters block i */
    block_buf blk[SB_MAX_BLOCKS];
    float *lnf, *lnf_mean, *lnf_rstd; /* [R, C], [R], [R] */
    float *logits, *probs;            /* [R, V] */
    /* backward scratch, shared by the blocks */
    float *dlogits;                   /* [R, V] */
    float *dlnf;                      /* [R, C] gradient at ln_f's output */
    float *dres[2];                   /* [R, C] gradient of the residual stream: x[i]'s in dres[i & 1] */
    float *dxmid;                     /* [R, C] gradient at xmid */
    float *dbranch;                   /* [R, C] gradient at attn.proj's / mlp.proj's output */
    float *dln;                       /* [R, C] gradient at ln1's / ln2's output */
    float *dfc, *dgelu;               /* [R, M] */
    float *dqkv;                      /* [R, 3C] */
    float *dqkvh;                     /* dq, dk, dv [B, H, T, D] each */
    float *datto;                     /* [B, H, T, D] */
    float *dattm;                     /* [R, C] */
    float *attscratch;                /* [B, H, T, T] attention_backward's scratch */
};

static int bp(int i, int k) { return P_BLOCK0 + B_N * i + k; } /* block i's parameter k */

/* ====================================================================== */
/* setup                                                                  */
/* ====================================================================== */

sb_status sb_tf_setup(sb_trainer *t, sb_error *err) {
    const sb_run_config *c = &t->cfg;
    const sb_model_config *m = &c->model;
    sb_backend *be = t->be;
    sb_tf *n = calloc(1, sizeof *n);
    if (!n) return sb_error_set(err, SB_ERR_NOMEM, "out of memory for the transformer");
    t->tf = n;
    n->B = c->batch;
    n->T = c->data.features - 1;
    n->V = c->data.classes;
    n->C = m->d_model;
    n->H = m->heads;
    n->D = m->d_model / m->heads;
    n->L = m->layers;
    n->M = m->mlp;
    n->R = n->B * n->T;
    n->RC = (size_t)n->R * (size_t)n->C;
    /* sb_run_config_validate has checked these; the buffers below rely on them */
    SB_ASSERT(n->T >= 1 && n->L >= 1 && n->L <= SB_MAX_BLOCKS && n->H >= 1 && n->D * n->H == n->C);
    SB_ASSERT(P_BLOCK0 + B_N * n->L + 3 <= SB_MAX_PARAMS);

    int V = n->V, T = n->T, C = n->C, M = n->M;
    size_t off = 0;
    int64_t s_wte[2] = {V, C}, s_wpe[2] = {T, C}, s_c[1] = {C}, s_qkvw[2] = {3 * C, C},
            s_qkvb[1] = {3 * C}, s_projw[2] = {C, C}, s_fcw[2] = {M, C}, s_fcb[1] = {M},
            s_mpw[2] = {C, M};
    sb_param_set(&t->params[P_WTE], "wte.weight", 2, s_wte, SB_INIT_NORMAL, 0, 0.02f, &off);
    sb_param_set(&t->params[P_WPE], "wpe.weight", 2, s_wpe, SB_INIT_NORMAL, 0, 0.02f, &off);
    static const struct {
        const char *name;
        int shape; /* 0 [C], 1 [3C, C], 2 [3C], 3 [C, C], 4 [M, C], 5 [M], 6 [C, M] */
        sb_init init;
        int fan_in_m; /* fan_in = M instead of C */
    } spec[B_N] = {
        {"ln1.weight", 0, SB_INIT_ONES, 0},       {"ln1.bias", 0, SB_INIT_ZEROS, 0},
        {"attn.qkv.weight", 1, SB_INIT_UNIFORM, 0}, {"attn.qkv.bias", 2, SB_INIT_UNIFORM, 0},
        {"attn.proj.weight", 3, SB_INIT_UNIFORM, 0}, {"attn.proj.bias", 0, SB_INIT_UNIFORM, 0},
        {"ln2.weight", 0, SB_INIT_ONES, 0},       {"ln2.bias", 0, SB_INIT_ZEROS, 0},
        {"mlp.fc.weight", 4, SB_INIT_UNIFORM, 0}, {"mlp.fc.bias", 5, SB_INIT_UNIFORM, 0},
        {"mlp.proj.weight", 6, SB_INIT_UNIFORM, 1}, {"mlp.proj.bias", 0, SB_INIT_UNIFORM, 1},
    };
    const int64_t *shapes[7] = {s_c, s_qkvw, s_qkvb, s_projw, s_fcw, s_fcb, s_mpw};
    const int ndims[7] = {1, 2, 1, 2, 2, 1, 2};
    for (int i = 0; i < n->L; i++)
        for (int k = 0; k < B_N; k++) {
            char name[48];
            snprintf(name, sizeof name, "blocks.%d.%s", i, spec[k].name);
            sb_param_set(&t->params[bp(i, k)], name, ndims[spec[k].shape], shapes[spec[k].shape],
                         spec[k].init, spec[k].fan_in_m ? M : C, 0.0f, &off);
        }
    int p = P_BLOCK0 + B_N * n->L;
    n->p_lnfw = p;
    n->p_lnfb = p + 1;
    sb_param_set(&t->params[p++], "ln_f.weight", 1, s_c, SB_INIT_ONES, 0, 0.0f, &off);
    sb_param_set(&t->params[p++], "ln_f.bias", 1, s_c, SB_INIT_ZEROS, 0, 0.0f, &off);
    if (m->tied) {
        n->p_head = P_WTE;
    } else {
        n->p_head = p;
        int64_t s_head[2] = {V, C};
        sb_param_set(&t->params[p++], "head.weight", 2, s_head, SB_INIT_UNIFORM, C, 0.0f, &off);
    }
    t->n_params = p;
    t->total = off;

    /* ---- buffers ---- */
    size_t R = (size_t)n->R, RC = n->RC, RM = R * (size_t)M, RV = R * (size_t)V;
    size_t att = (size_t)n->B * n->H * (size_t)T * T;
#define ALLOC(ptr, count)                                                                      \
    do {                                                                                       \
        (ptr) = be->i->alloc(be, (count) * sizeof(float));                                     \
        if (!(ptr)) goto nomem;                                                                \
    } while (0)
    for (int i = 0; i <= n->L; i++) ALLOC(n->x[i], RC);
    for (int i = 0; i < n->L; i++) {
        block_buf *b = &n->blk[i];
        ALLOC(b->ln1, RC);
        ALLOC(b->ln1_mean, R);
        ALLOC(b->ln1_rstd, R);
        ALLOC(b->qkv, 3 * RC);
        ALLOC(b->qkvh, 3 * RC);
        ALLOC(b->att, att);
        ALLOC(b->atto, RC);
        ALLOC(b->attm, RC);
        ALLOC(b->attp, RC);
        ALLOC(b->xmid, RC);
        ALLOC(b->ln2, RC);
        ALLOC(b->ln2_mean, R);
        ALLOC(b->ln2_rstd, R);
        ALLOC(b->fc, RM);
        ALLOC(b->gelu, RM);
        ALLOC(b->mlpp, RC);
    }
    ALLOC(n->lnf, RC);
    ALLOC(n->lnf_mean, R);
    ALLOC(n->lnf_rstd, R);
    ALLOC(n->logits, RV);
    ALLOC(n->probs, RV);
    ALLOC(n->dlogits, RV);
    ALLOC(n->dlnf, RC);
    ALLOC(n->dres[0], RC);
    ALLOC(n->dres[1], RC);
    ALLOC(n->dxmid, RC);
    ALLOC(n->dbranch, RC);
    ALLOC(n->dln, RC);
    ALLOC(n->dfc, RM);
    ALLOC(n->dgelu, RM);
    ALLOC(n->dqkv, 3 * RC);
    ALLOC(n->dqkvh, 3 * RC);
    ALLOC(n->datto, RC);
    ALLOC(n->dattm, RC);
    ALLOC(n->attscratch, att);
#undef ALLOC
    return SB_OK;
nomem:
    /* what was allocated is freed by sb_tf_free (from sb_trainer_free) */
    return sb_error_set(err, SB_ERR_NOMEM, "out of memory allocating the transformer");
}

void sb_tf_free(sb_trainer *t) {
    sb_tf *n = t->tf;
    if (!n) return;
    sb_backend *be = t->be;
    for (int i = 0; i <= SB_MAX_BLOCKS; i++) be->i->free(be, n->x[i]);
    for (int i = 0; i < SB_MAX_BLOCKS; i++) {
        block_buf *b = &n->blk[i];
        float *bufs[] = {b->ln1, b->ln1_mean, b->ln1_rstd, b->qkv, b->qkvh, b->att, b->atto,
                         b->attm, b->attp, b->xmid, b->ln2, b->ln2_mean, b->ln2_rstd, b->fc,
                         b->gelu, b->mlpp};
        for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) be->i->free(be, bufs[k]);
    }
    float *bufs[] = {n->lnf,    n->lnf_mean, n->lnf_rstd, n->logits, n->probs, n->dlogits,
                     n->dlnf,   n->dres[0],  n->dres[1],  n->dxmid,  n->dbranch, n->dln,
                     n->dfc,    n->dgelu,    n->dqkv,     n->dqkvh,  n->datto, n->dattm,
                     n->attscratch};
    for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) be->i->free(be, bufs[k]);
    free(n);
    t->tf = NULL;
}

/* ====================================================================== */
/* the layers' tensors                                                    */
/* ====================================================================== */


/* The linear layers: y[R, N] = x[R, K] · Wᵀ (+ b). */
enum { LIN_QKV, LIN_PROJ, LIN_FC, LIN_MPROJ, LIN_HEAD };
typedef struct linear {
    const char *name;          /* layer path, e.g. "attn.qkv" (blocks get their prefix) */
    float *x, *y, *dy, *dx;    /* input [R, K], output [R, N], their gradients */
    int w, b;                  /* parameter indices; b = -1: no bias */
    int N, K;
} linear;

static linear get_linear(const sb_trainer *t, int which, int i) {
    const sb_tf *n = t->tf;
    const block_buf *b = &n->blk[i];
    int C = n->C;
    switch (which) {
    case LIN_QKV:
        return (linear){"attn.qkv", b->ln1, b->qkv, n->dqkv, n->dln, bp(i, B_QKVW), bp(i, B_QKVB),
                        3 * C, C};
    case LIN_PROJ:
        return (linear){"attn.proj", b->attm, b->attp, n->dbranch, n->dattm, bp(i, B_PROJW),
                        bp(i, B_PROJB), C, C};
    case LIN_FC:
        return (linear){"mlp.fc", b->ln2, b->fc, n->dfc, n->dln, bp(i, B_FCW), bp(i, B_FCB), n->M,
                        C};
    case LIN_MPROJ:
        return (linear){"mlp.proj", b->gelu, b->mlpp, n->dbranch, n->dgelu, bp(i, B_MPW),
                        bp(i, B_MPB), C, n->M};
    default:
        return (linear){"head", n->lnf, n->logits, n->dlogits, n->dlnf, n->p_head, -1, n->V, C};
    }
}

/* The layer norms: y = ln(x) with saved mean and rstd; dx is where the input
 * gradient is added (zero_dx: zeroed first, nothing else feeds it). */
enum { LN_1, LN_2, LN_F };
typedef struct lnorm {
    const char *name;
    float *x, *y, *mean, *rstd, *dy, *dx;
    int w, b, zero_dx;
} lnorm;

static lnorm get_lnorm(const sb_trainer *t, int which, int i) {
    const sb_tf *n = t->tf;
    const block_buf *b = &n->blk[i];
    switch (which) {
    case LN_1:
        return (lnorm){"ln1", n->x[i], b->ln1, b->ln1_mean, b->ln1_rstd, n->dln, n->dres[i & 1],
                       bp(i, B_LN1W), bp(i, B_LN1B), 0};
    case LN_2:
        return (lnorm){"ln2", b->xmid, b->ln2, b->ln2_mean, b->ln2_rstd, n->dln, n->dxmid,
                       bp(i, B_LN2W), bp(i, B_LN2B), 0};
    default:
        return (lnorm){"ln_f", n->x[n->L], n->lnf, n->lnf_mean, n->lnf_rstd, n->dlnf,
                       n->dres[n->L & 1], n->p_lnfw, n->p_lnfb, 1};
    }
}

/* ---- the head permutes (host loops: ref and blas memory is host memory) ----
 * rows [B, T, S·C] (S = 3 for qkv, 1 for the attention output), column
 * s·C + h·D + d  <->  heads [S][B, H, T, D]. Copies: the same bits everywhere. */
static void heads_split(float *heads, const float *rows, int S, const sb_tf *n) {
    int B = n->B, T = n->T, H = n->H, D = n->D, C = n->C;
    for (int s = 0; s < S; s++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int tt = 0; tt < T; tt++)
                    memcpy(heads + (size_t)s * n->RC + (((size_t)b * H + h) * T + tt) * D,
                           rows + ((size_t)b * T + tt) * (size_t)(S * C) + (size_t)s * C +
                               (size_t)h * D,
                           (size_t)D * sizeof(float));
}

static void heads_merge(float *rows, const float *heads, int S, const sb_tf *n) {
    int B = n->B, T = n->T, H = n->H, D = n->D, C = n->C;
    for (int s = 0; s < S; s++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int tt = 0; tt < T; tt++)
                    memcpy(rows + ((size_t)b * T + tt) * (size_t)(S * C) + (size_t)s * C +
                               (size_t)h * D,
                           heads + (size_t)s * n->RC + (((size_t)b * H + h) * T + tt) * D,
                           (size_t)D * sizeof(float));
}

/* ====================================================================== */
/* the ops                                                                */
/* ====================================================================== */

enum {
    OP_WTE_FWD, OP_WPE_FWD, OP_LN_FWD, OP_MATMUL_FWD, OP_BIAS_FWD, OP_SPLIT_FWD, OP_SDPA_FWD,
    OP_MERGE_FWD, OP_RES1_FWD, OP_RES2_FWD, OP_GELU_FWD, OP_XENT_FWD,
    OP_XENT_BWD, OP_WGRAD, OP_BGRAD, OP_BWD_INPUT, OP_LN_BWD, OP_RES2_BWD, OP_RES1_BWD,
    OP_GELU_BWD, OP_MERGE_BWD, OP_SDPA_BWD, OP_SPLIT_BWD, OP_WPE_BWD, OP_WTE_BWD
};

typedef struct opcall {
    int kind;
    int i;     /* block */
    int which; /* LIN_* or LN_* */
} opcall;

static void run_op(sb_trainer *t, void *arg) {
    const opcall *c = arg;
    sb_backend *be = t->be;
    const sb_backend_i *k = be->i;
    sb_tf *n = t->tf;
    const block_buf *b = &n->blk[c->i];
    int B = n->B, T = n->T, V = n->V, C = n->C, H = n->H, D = n->D, R = n->R;
    size_t RC = n->RC, RM = (size_t)R * n->M;
    switch (c->kind) {
    case OP_WTE_FWD: /* x0[R, C] = wte[tokens] */
        k->embedding_forward(be, n->x[0], sb_param_data(t, P_WTE), t->tok_in, R, V, C);
        return;
    case OP_WPE_FWD: /* x0[b] += wpe, as a bias over the [B, T·C] rows */
        k->bias_add(be, n->x[0], sb_param_data(t, P_WPE), B, T * C);
        return;
    case OP_LN_FWD: {
        lnorm ln = get_lnorm(t, c->which, c->i);
        k->layernorm_forward(be, ln.y, ln.mean, ln.rstd, ln.x, sb_param_data(t, ln.w), sb_param_data(t, ln.b), R,
                             C, LN_EPS);
        return;
    }
    case OP_MATMUL_FWD: { /* y[R, N] = x[R, K] · Wᵀ */
        linear l = get_linear(t, c->which, c->i);
        k->gemm(be, 0, 1, R, l.N, l.K, 1.0f, l.x, l.K, sb_param_data(t, l.w), l.K, 0.0f, l.y, l.N);
        return;
    }
    case OP_BIAS_FWD: {
        linear l = get_linear(t, c->which, c->i);
        k->bias_add(be, l.y, sb_param_data(t, l.b), R, l.N);
        return;
    }
    case OP_SPLIT_FWD: /* qkv [B, T, 3C] → q, k, v [B, H, T, D] */
        heads_split(b->qkvh, b->qkv, 3, n);
        return;
    case OP_SDPA_FWD:
        k->attention_forward(be, b->atto, b->att, b->qkvh, b->qkvh + RC, b->qkvh + 2 * RC, B, H,
                             T, D);
        return;
    case OP_MERGE_FWD: /* [B, H, T, D] → [B, T, C] */
        heads_merge(b->attm, b->atto, 1, n);
        return;
    case OP_RES1_FWD:
        k->residual_forward(be, b->xmid, n->x[c->i], b->attp, RC);
        return;
    case OP_RES2_FWD:
        k->residual_forward(be, n->x[c->i + 1], b->xmid, b->mlpp, RC);
        return;
    case OP_GELU_FWD:
        k->act_forward(be, SB_ACT_GELU, b->gelu, b->fc, RM);
        return;
    case OP_XENT_FWD:
        k->xent_forward(be, n->probs, t->loss, n->logits, t->tok_tgt, R, V);
        return;
    case OP_XENT_BWD:
        k->zero(be, n->dlogits, (size_t)R * V);
        k->xent_backward(be, n->dlogits, n->probs, t->tok_tgt, R, V);
        return;
    case OP_WGRAD: { /* dW[N, K] = dyᵀ · x (overwrites) */
        linear l = get_linear(t, c->which, c->i);
        k->weight_grad(be, sb_grad_data(t, l.w), l.dy, l.x, R, l.N, l.K);
        return;
    }
    case OP_BGRAD: {
        linear l = get_linear(t, c->which, c->i);
        k->zero(be, sb_grad_data(t, l.b), (size_t)l.N);
        k->bias_grad(be, sb_grad_data(t, l.b), l.dy, R, l.N);
        return;
    }
    case OP_BWD_INPUT: { /* dx[R, K] = dy[R, N] · W */
        linear l = get_linear(t, c->which, c->i);
        k->gemm(be, 0, 0, R, l.K, l.N, 1.0f, l.dy, l.N, sb_param_data(t, l.w), l.K, 0.0f, l.dx, l.K);
        return;
    }
    case OP_LN_BWD: {
        lnorm ln = get_lnorm(t, c->which, c->i);
        k->zero(be, sb_grad_data(t, ln.w), (size_t)C);
        k->zero(be, sb_grad_data(t, ln.b), (size_t)C);
        if (ln.zero_dx) k->zero(be, ln.dx, RC);
        k->layernorm_backward(be, ln.dx, sb_grad_data(t, ln.w), sb_grad_data(t, ln.b), ln.dy, ln.x,
                              sb_param_data(t, ln.w), ln.mean, ln.rstd, R, C);
        return;
    }
    case OP_RES2_BWD: /* dxmid = dbranch = dx[i+1] */
        k->zero(be, n->dxmid, RC);
        k->zero(be, n->dbranch, RC);
        k->residual_backward(be, n->dxmid, n->dbranch, n->dres[(c->i + 1) & 1], RC);
        return;
    case OP_RES1_BWD: /* dx[i] = dbranch = dxmid */
        k->zero(be, n->dres[c->i & 1], RC);
        k->zero(be, n->dbranch, RC);
        k->residual_backward(be, n->dres[c->i & 1], n->dbranch, n->dxmid, RC);
        return;
    case OP_GELU_BWD:
        k->zero(be, n->dfc, RM);
        k->act_backward(be, SB_ACT_GELU, n->dfc, n->dgelu, b->fc, RM);
        return;
    case OP_MERGE_BWD: /* the merge's transpose: [B, T, C] → [B, H, T, D] */
        heads_split(n->datto, n->dattm, 1, n);
        return;
    case OP_SDPA_BWD:
        k->zero(be, n->dqkvh, 3 * RC);
        k->attention_backward(be, n->dqkvh, n->dqkvh + RC, n->dqkvh + 2 * RC, n->attscratch,
                              n->datto, b->qkvh, b->qkvh + RC, b->qkvh + 2 * RC, b->att, B, H, T,
                              D);
        return;
    case OP_SPLIT_BWD: /* the split's transpose: dq, dk, dv → [B, T, 3C] */
        heads_merge(n->dqkv, n->dqkvh, 3, n);
        return;
    case OP_WPE_BWD: /* dwpe[T·C] = sum over b of dx0[b, T·C] */
        k->zero(be, sb_grad_data(t, P_WPE), (size_t)T * C);
        k->bias_grad(be, sb_grad_data(t, P_WPE), n->dres[0], B, T * C);
        return;
    case OP_WTE_BWD: /* tied: onto the head's weight gradient; else into zeros */
        if (!t->cfg.model.tied) k->zero(be, sb_grad_data(t, P_WTE), (size_t)V * C);
        k->embedding_backward(be, sb_grad_data(t, P_WTE), n->dres[0], t->tok_in, R, V, C);
        return;
    }
}

#define F32 SB_F32
#define I32 SB_I32
#define PARAM(p) F32(sb_param_data(t, (p)), t->params[(p)].numel)
#define GRAD(p) F32(sb_grad_data(t, (p)), t->params[(p)].numel)

/* Runs one op of the step (traced when a trace is open). */
static void op(sb_trainer *t, int kind, int i, int which, const char *name, sb_stage stage,
               int n_in, const sb_view *in, int n_out, const sb_view *out, int n_side,
               const sb_view *side) {
    opcall c = {.kind = kind, .i = i, .which = which};
    sb_run_op(t, name, stage, n_in, in, n_out, out, n_side, side, run_op, &c);
}

/* "blocks.<i>/<rest>" inside a block (i >= 0), "<rest>" outside */
static const char *op_name(char *buf, size_t cap, int i, const char *rest) {
    if (i >= 0)
        snprintf(buf, cap, "blocks.%d/%s", i, rest);
    else
        snprintf(buf, cap, "%s", rest);
    return buf;
}

static void linear_fwd(sb_trainer *t, int which, int i) {
    linear l = get_linear(t, which, i);
    int R = t->tf->R, blk = which == LIN_HEAD ? -1 : i;
    char rest[48], name[64];
    sb_view in[2] = {F32(l.x, (size_t)R * l.K), PARAM(l.w)};
    sb_view y[1] = {F32(l.y, (size_t)R * l.N)};
    snprintf(rest, sizeof rest, "%s/matmul.fwd", l.name);
    op(t, OP_MATMUL_FWD, i, which, op_name(name, sizeof name, blk, rest), SB_STAGE_FORWARD, 2, in,
       1, y, 0, NULL);
    if (l.b < 0) return;
    sb_view inb[2] = {y[0], PARAM(l.b)};
    snprintf(rest, sizeof rest, "%s/bias.fwd", l.name);
    op(t, OP_BIAS_FWD, i, which, op_name(name, sizeof name, blk, rest), SB_STAGE_FORWARD, 2, inb,
       1, y, 0, NULL);
}

static void linear_bwd(sb_trainer *t, int which, int i) {
    linear l = get_linear(t, which, i);
    int R = t->tf->R, blk = which == LIN_HEAD ? -1 : i;
    char rest[48], name[64];
    sb_view dy[1] = {F32(l.dy, (size_t)R * l.N)};
    sb_view inw[2] = {dy[0], F32(l.x, (size_t)R * l.K)};
    sb_view dw[1] = {GRAD(l.w)};
    snprintf(rest, sizeof rest, "%s/matmul.bwd_weight", l.name);
    op(t, OP_WGRAD, i, which, op_name(name, sizeof name, blk, rest), SB_STAGE_BACKWARD, 2, inw, 1,
       dw, 0, NULL);
    if (l.b >= 0) {
        sb_view db[1] = {GRAD(l.b)};
        snprintf(rest, sizeof rest, "%s/bias.grad", l.name);
        op(t, OP_BGRAD, i, which, op_name(name, sizeof name, blk, rest), SB_STAGE_BACKWARD, 1, dy,
           1, db, 0, NULL);
    }
    sb_view inx[2] = {dy[0], PARAM(l.w)};
    sb_view dx[1] = {F32(l.dx, (size_t)R * l.K)};
    snprintf(rest, sizeof rest, "%s/matmul.bwd_input", l.name);
    op(t, OP_BWD_INPUT, i, which, op_name(name, sizeof name, blk, rest), SB_STAGE_BACKWARD, 2, inx,
       1, dx, 0, NULL);
}

static void lnorm_fwd(sb_trainer *t, int which, int i) {
    lnorm ln = get_lnorm(t, which, i);
    size_t R = (size_t)t->tf->R, RC = t->tf->RC;
    char rest[48], name[64];
    sb_view in[3] = {F32(ln.x, RC), PARAM(ln.w), PARAM(ln.b)};
    sb_view out[3] = {F32(ln.y, RC), F32(ln.mean, R), F32(ln.rstd, R)};
    snprintf(rest, sizeof rest, "%s.fwd", ln.name);
    op(t, OP_LN_FWD, i, which, op_name(name, sizeof name, which == LN_F ? -1 : i, rest),
       SB_STAGE_FORWARD, 3, in, 3, out, 0, NULL);
}

static void lnorm_bwd(sb_trainer *t, int which, int i) {
    lnorm ln = get_lnorm(t, which, i);
    size_t R = (size_t)t->tf->R, RC = t->tf->RC;
    char rest[48], name[64];
    /* inputs: the incoming gradient, what the forward saw and saved, and —
     * unless zeroed here — the residual gradient the input gradient adds to */
    sb_view in[6] = {F32(ln.dy, RC), F32(ln.x, RC), PARAM(ln.w), F32(ln.mean, R),
                     F32(ln.rstd, R), F32(ln.dx, RC)};
    sb_view out[3] = {GRAD(ln.w), GRAD(ln.b), F32(ln.dx, RC)};
    snprintf(rest, sizeof rest, "%s.bwd", ln.name);
    op(t, OP_LN_BWD, i, which, op_name(name, sizeof name, which == LN_F ? -1 : i, rest),
       SB_STAGE_BACKWARD, ln.zero_dx ? 5 : 6, in, 3, out, 0, NULL);
}

sb_status sb_tf_step(sb_trainer *t, float *loss_out, sb_error *err) {
    sb_tf *n = t->tf;
    int L = n->L, R = n->R, V = n->V;
    size_t RC = n->RC, RM = (size_t)R * n->M, RV = (size_t)R * V;
    size_t att = (size_t)n->B * n->H * (size_t)n->T * n->T;
    char name[64];

    sb_step_tokens(t);

    /* ---- forward ---- */
    {
        sb_view in[2] = {I32(t->tok_in, R), PARAM(P_WTE)};
        sb_view x0[1] = {F32(n->x[0], RC)};
        op(t, OP_WTE_FWD, 0, 0, "wte/lookup.fwd", SB_STAGE_FORWARD, 2, in, 1, x0, 0, NULL);
        sb_view inp[2] = {x0[0], PARAM(P_WPE)};
        op(t, OP_WPE_FWD, 0, 0, "wpe/add.fwd", SB_STAGE_FORWARD, 2, inp, 1, x0, 0, NULL);
    }
    for (int i = 0; i < L; i++) {
        block_buf *b = &n->blk[i];
        lnorm_fwd(t, LN_1, i);
        linear_fwd(t, LIN_QKV, i);
        sb_view qkv[1] = {F32(b->qkv, 3 * RC)}, qkvh[1] = {F32(b->qkvh, 3 * RC)};
        op(t, OP_SPLIT_FWD, i, 0, op_name(name, sizeof name, i, "attn/split_heads.fwd"),
           SB_STAGE_FORWARD, 1, qkv, 1, qkvh, 0, NULL);
        sb_view sdpa[2] = {F32(b->atto, RC), F32(b->att, att)};
        op(t, OP_SDPA_FWD, i, 0, op_name(name, sizeof name, i, "attn/sdpa.fwd"), SB_STAGE_FORWARD,
           1, qkvh, 2, sdpa, 0, NULL);
        sb_view attm[1] = {F32(b->attm, RC)};
        op(t, OP_MERGE_FWD, i, 0, op_name(name, sizeof name, i, "attn/merge_heads.fwd"),
           SB_STAGE_FORWARD, 1, sdpa, 1, attm, 0, NULL);
        linear_fwd(t, LIN_PROJ, i);
        sb_view in1[2] = {F32(n->x[i], RC), F32(b->attp, RC)}, xmid[1] = {F32(b->xmid, RC)};
        op(t, OP_RES1_FWD, i, 0, op_name(name, sizeof name, i, "residual1.fwd"), SB_STAGE_FORWARD,
           2, in1, 1, xmid, 0, NULL);
        lnorm_fwd(t, LN_2, i);
        linear_fwd(t, LIN_FC, i);
        sb_view fc[1] = {F32(b->fc, RM)}, gelu[1] = {F32(b->gelu, RM)};
        op(t, OP_GELU_FWD, i, 0, op_name(name, sizeof name, i, "mlp/gelu.fwd"), SB_STAGE_FORWARD,
           1, fc, 1, gelu, 0, NULL);
        linear_fwd(t, LIN_MPROJ, i);
        sb_view in2[2] = {xmid[0], F32(b->mlpp, RC)}, xo[1] = {F32(n->x[i + 1], RC)};
        op(t, OP_RES2_FWD, i, 0, op_name(name, sizeof name, i, "residual2.fwd"), SB_STAGE_FORWARD,
           2, in2, 1, xo, 0, NULL);
    }
    lnorm_fwd(t, LN_F, 0);
    linear_fwd(t, LIN_HEAD, 0);
    {
        sb_view in[2] = {F32(n->logits, RV), I32(t->tok_tgt, R)};
        sb_view out[2] = {F32(n->probs, RV), F32(t->loss, 1)};
        op(t, OP_XENT_FWD, 0, 0, "loss/xent.fwd", SB_STAGE_LOSS, 2, in, 2, out, 0, NULL);
    }
    float loss;
    t->be->i->download(t->be, &loss, t->loss, sizeof loss);
    if (!isfinite(loss))
        return sb_error_set(err, SB_ERR_RUN, "step %d: loss is %s", t->step + 1,
                            isnan(loss) ? "NaN" : "infinite");

    /* ---- backward ---- */
    {
        sb_view in[2] = {F32(n->probs, RV), I32(t->tok_tgt, R)};
        sb_view out[1] = {F32(n->dlogits, RV)};
        op(t, OP_XENT_BWD, 0, 0, "loss/xent.bwd", SB_STAGE_BACKWARD, 2, in, 1, out, 0, NULL);
    }
    linear_bwd(t, LIN_HEAD, 0);
    lnorm_bwd(t, LN_F, 0);
    for (int i = L - 1; i >= 0; i--) {
        block_buf *b = &n->blk[i];
        sb_view dxo[1] = {F32(n->dres[(i + 1) & 1], RC)};
        sb_view split2[2] = {F32(n->dxmid, RC), F32(n->dbranch, RC)};
        op(t, OP_RES2_BWD, i, 0, op_name(name, sizeof name, i, "residual2.bwd"),
           SB_STAGE_BACKWARD, 1, dxo, 2, split2, 0, NULL);
        linear_bwd(t, LIN_MPROJ, i);
        sb_view ing[2] = {F32(n->dgelu, RM), F32(b->fc, RM)}, dfc[1] = {F32(n->dfc, RM)};
        op(t, OP_GELU_BWD, i, 0, op_name(name, sizeof name, i, "mlp/gelu.bwd"), SB_STAGE_BACKWARD,
           2, ing, 1, dfc, 0, NULL);
        linear_bwd(t, LIN_FC, i);
        lnorm_bwd(t, LN_2, i);
        sb_view dxmid[1] = {F32(n->dxmid, RC)};
        sb_view split1[2] = {F32(n->dres[i & 1], RC), F32(n->dbranch, RC)};
        op(t, OP_RES1_BWD, i, 0, op_name(name, sizeof name, i, "residual1.bwd"),
           SB_STAGE_BACKWARD, 1, dxmid, 2, split1, 0, NULL);
        linear_bwd(t, LIN_PROJ, i);
        sb_view dattm[1] = {F32(n->dattm, RC)}, datto[1] = {F32(n->datto, RC)};
        op(t, OP_MERGE_BWD, i, 0, op_name(name, sizeof name, i, "attn/merge_heads.bwd"),
           SB_STAGE_BACKWARD, 1, dattm, 1, datto, 0, NULL);
        /* the scratch (datt, then dpre) is written by the op but is no result
         * of it: a side output, saved and restored by recheck, not hashed */
        sb_view ins[3] = {datto[0], F32(b->qkvh, 3 * RC), F32(b->att, att)};
        sb_view dqkvh[1] = {F32(n->dqkvh, 3 * RC)}, scratch[1] = {F32(n->attscratch, att)};
        op(t, OP_SDPA_BWD, i, 0, op_name(name, sizeof name, i, "attn/sdpa.bwd"),
           SB_STAGE_BACKWARD, 3, ins, 1, dqkvh, 1, scratch);
        sb_view dqkv[1] = {F32(n->dqkv, 3 * RC)};
        op(t, OP_SPLIT_BWD, i, 0, op_name(name, sizeof name, i, "attn/split_heads.bwd"),
           SB_STAGE_BACKWARD, 1, dqkvh, 1, dqkv, 0, NULL);
        linear_bwd(t, LIN_QKV, i);
        lnorm_bwd(t, LN_1, i);
    }
    {
        sb_view dx0[1] = {F32(n->dres[0], RC)};
        sb_view dwpe[1] = {GRAD(P_WPE)};
        op(t, OP_WPE_BWD, 0, 0, "wpe/add.bwd", SB_STAGE_BACKWARD, 1, dx0, 1, dwpe, 0, NULL);
        /* tied: the head's weight gradient (already in wte's) is an input too */
        sb_view in[3] = {dx0[0], I32(t->tok_in, R), GRAD(P_WTE)};
        sb_view dwte[1] = {GRAD(P_WTE)};
        op(t, OP_WTE_BWD, 0, 0, "wte/scatter_add.bwd", SB_STAGE_BACKWARD,
           t->cfg.model.tied ? 3 : 2, in, 1, dwte, 0, NULL);
    }
    *loss_out = loss;
    return SB_OK;
}
