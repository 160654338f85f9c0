/* cnn.c — the reference CNN: its parameter table, its buffers and the model
 * ops of one training step.
 *
 * Model (NCHW, PyTorch's layouts, so a checkpoint loads into torch.nn):
 *   x [B, Cin, H, W]
 *   conv1: Conv2d(Cin, C1, k, stride 1, padding k/2) → act → pool1 (2×2, stride 2)
 *   conv2: Conv2d(C1, C2, k, stride 1, padding k/2) → act → pool2 (2×2, stride 2)
 *   fc:    Linear(C2·H2·W2, classes) on pool2's output flattened per sample
 *          (C2, H2, W2 order: torch.flatten(x, 1)) → softmax cross-entropy.
 * Parameters, in one buffer: conv1.weight [C1, Cin, k, k], conv1.bias [C1],
 * conv2.weight [C2, C1, k, k], conv2.bias [C2], fc.weight [classes, F],
 * fc.bias [classes]; each initialised uniform in ±1/sqrt(fan_in) (fan_in =
 * Cin·k·k, C1·k·k, F: PyTorch's default bound for Conv2d and Linear).
 *
 * Ops, each through sb_exec_op (tracing.c) so every tensor write is traced:
 *   forward  conv1/conv.fwd, conv1/<act>.fwd, pool1/<max|avg>pool.fwd, conv2/…,
 *            pool2/…, fc/matmul.fwd, fc/bias.fwd, loss/xent.fwd
 *   backward loss/xent.bwd, fc/matmul.bwd_weight, fc/bias.grad,
 *            fc/matmul.bwd_input, pool2/….bwd, conv2/<act>.bwd, conv2/conv.bwd
 *            (one record, outputs dinput, dweight, dbias), pool1/….bwd,
 *            conv1/<act>.bwd, conv1/conv.bwd (dweight, dbias).
 * The reduction orders are the kernels' (kernels/kernels.h); every op that
 * adds into its output zeroes it first inside the op, so recheck can run it
 * twice.
 *
 * Not here: the data ops and the optimizer (train.c, shared with the MLP),
 * the kernels, checkpoints (checkpoint.c walks the same parameter table).
 */
#include "train_internal.h"

#include <math.h>
#include <string.h>

enum { P_W1, P_B1, P_W2, P_B2, P_WFC, P_BFC, N_PARAMS };

struct sb_cnn {
    sb_conv2d_shape conv[2];
    sb_pool2d_shape pool[2];
    int flat;                 /* C2·H2·W2: fc's input features */
    size_t nz[2], np[2];      /* elements of conv l's output and pool l's output (whole batch) */
    float *z[2], *a[2], *p[2];     /* conv output (pre-activation), activation, pool output */
    float *dz[2], *da[2], *dp[2];  /* their gradients; dp[1] is dflat */
    float *logits, *probs, *dlogits;
};

/* ====================================================================== */
/* setup                                                                  */
/* ====================================================================== */

sb_status sb_cnn_setup(sb_trainer *t, sb_error *err) {
    const sb_run_config *c = &t->cfg;
    const sb_model_config *m = &c->model;
    sb_backend *be = t->be;
    int B = c->batch, k = m->kernel, cin = c->data.channels, h = c->data.height, w = c->data.width;
    sb_cnn *n = calloc(1, sizeof *n);
    if (!n) return sb_error_set(err, SB_ERR_NOMEM, "out of memory for the cnn");
    t->cnn = n;
    for (int l = 0; l < 2; l++) {
        sb_conv2d_shape *cs = &n->conv[l];
        *cs = (sb_conv2d_shape){.n = B, .cin = cin, .h = h, .w = w, .cout = m->channels[l],
                                .kh = k, .kw = k, .stride_h = 1, .stride_w = 1,
                                .pad_h = k / 2, .pad_w = k / 2};
        int oh = sb_conv2d_out_h(cs), ow = sb_conv2d_out_w(cs);
        sb_pool2d_shape *ps = &n->pool[l];
        *ps = (sb_pool2d_shape){.n = B, .c = m->channels[l], .h = oh, .w = ow, .kh = 2, .kw = 2,
                                .stride_h = 2, .stride_w = 2, .pad_h = 0, .pad_w = 0};
        cin = m->channels[l];
        h = sb_pool2d_out_h(ps);
        w = sb_pool2d_out_w(ps);
        n->nz[l] = (size_t)B * m->channels[l] * oh * ow;
        n->np[l] = (size_t)B * m->channels[l] * h * w;
    }
    n->flat = cin * h * w;

    size_t off = 0;
    int classes = c->data.classes, c0 = c->data.channels, c1 = m->channels[0], c2 = m->channels[1];
    int64_t s_w1[4] = {c1, c0, k, k}, s_b1[1] = {c1}, s_w2[4] = {c2, c1, k, k}, s_b2[1] = {c2};
    int64_t s_wfc[2] = {classes, n->flat}, s_bfc[1] = {classes};
    sb_param_set(&t->params[P_W1], "conv1.weight", 4, s_w1, SB_INIT_UNIFORM, c0 * k * k, 0.0f, &off);
    sb_param_set(&t->params[P_B1], "conv1.bias", 1, s_b1, SB_INIT_UNIFORM, c0 * k * k, 0.0f, &off);
    sb_param_set(&t->params[P_W2], "conv2.weight", 4, s_w2, SB_INIT_UNIFORM, c1 * k * k, 0.0f, &off);
    sb_param_set(&t->params[P_B2], "conv2.bias", 1, s_b2, SB_INIT_UNIFORM, c1 * k * k, 0.0f, &off);
    sb_param_set(&t->params[P_WFC], "fc.weight", 2, s_wfc, SB_INIT_UNIFORM, n->flat, 0.0f, &off);
    sb_param_set(&t->params[P_BFC], "fc.bias", 1, s_bfc, SB_INIT_UNIFORM, n->flat, 0.0f, &off);
    t->n_params = N_PARAMS;
    t->total = off;

    for (int l = 0; l < 2; l++) {
        n->z[l] = be->i->alloc(be, n->nz[l] * sizeof(float));
        n->a[l] = be->i->alloc(be, n->nz[l] * sizeof(float));
        n->dz[l] = be->i->alloc(be, n->nz[l] * sizeof(float));
        n->da[l] = be->i->alloc(be, n->nz[l] * sizeof(float));
        n->p[l] = be->i->alloc(be, n->np[l] * sizeof(float));
        n->dp[l] = be->i->alloc(be, n->np[l] * sizeof(float));
        if (!n->z[l] || !n->a[l] || !n->dz[l] || !n->da[l] || !n->p[l] || !n->dp[l]) goto nomem;
    }
    size_t nl = (size_t)B * classes;
    n->logits = be->i->alloc(be, nl * sizeof(float));
    n->probs = be->i->alloc(be, nl * sizeof(float));
    n->dlogits = be->i->alloc(be, nl * sizeof(float));
    if (!n->logits || !n->probs || !n->dlogits) goto nomem;
    return SB_OK;
nomem:
    /* what was allocated is freed by sb_cnn_free (from sb_trainer_free) */
    return sb_error_set(err, SB_ERR_NOMEM, "out of memory allocating the cnn");
}

void sb_cnn_free(sb_trainer *t) {
    sb_cnn *n = t->cnn;
    if (!n) return;
    sb_backend *be = t->be;
    for (int l = 0; l < 2; l++) {
        float *bufs[6] = {n->z[l], n->a[l], n->dz[l], n->da[l], n->p[l], n->dp[l]};
        for (int i = 0; i < 6; i++) be->i->free(be, bufs[i]);
    }
    be->i->free(be, n->logits);
    be->i->free(be, n->probs);
    be->i->free(be, n->dlogits);
    free(n);
    t->cnn = NULL;
}

/* ====================================================================== */
/* the ops                                                                */
/* ====================================================================== */

enum {
    OP_CONV_FWD, OP_ACT_FWD, OP_POOL_FWD, OP_FC_FWD, OP_FC_BIAS, OP_XENT_FWD, OP_XENT_BWD,
    OP_FC_WGRAD, OP_FC_BGRAD, OP_FC_BWD_INPUT, OP_POOL_BWD, OP_ACT_BWD, OP_CONV_BWD
};

typedef struct opcall {
    int kind;
    int l; /* 0 = conv1/pool1, 1 = conv2/pool2 */
} opcall;

static const float *conv_input(const sb_trainer *t, int l) {
    return l == 0 ? t->act[0] : t->cnn->p[0];
}

static void run_op(sb_trainer *t, void *arg) {
    const opcall *c = arg;
    const sb_run_config *cfg = &t->cfg;
    sb_backend *be = t->be;
    const sb_backend_i *k = be->i;
    sb_cnn *n = t->cnn;
    int B = cfg->batch, K = cfg->data.classes, F = n->flat, l = c->l;
    int avg = cfg->model.pool == SB_POOL_AVG;
    switch (c->kind) {
    case OP_CONV_FWD: /* z[l] = conv(input, W) + b */
        k->conv2d_forward(be, n->z[l], conv_input(t, l), sb_param_data(t, l ? P_W2 : P_W1),
                          sb_param_data(t, l ? P_B2 : P_B1), &n->conv[l]);
        return;
    case OP_ACT_FWD:
        k->act_forward(be, cfg->model.act, n->a[l], n->z[l], n->nz[l]);
        return;
    case OP_POOL_FWD:
        if (avg)
            k->avgpool2d_forward(be, n->p[l], n->a[l], &n->pool[l]);
        else
            k->maxpool2d_forward(be, n->p[l], n->a[l], &n->pool[l]);
        return;
    case OP_FC_FWD: /* logits[B, K] = flat[B, F] · Wᵀ */
        k->gemm(be, 0, 1, B, K, F, 1.0f, n->p[1], F, sb_param_data(t, P_WFC), F, 0.0f, n->logits, K);
        return;
    case OP_FC_BIAS:
        k->bias_add(be, n->logits, sb_param_data(t, P_BFC), B, K);
        return;
    case OP_XENT_FWD:
        k->xent_forward(be, n->probs, t->loss, n->logits, t->labels, B, K);
        return;
    case OP_XENT_BWD:
        k->zero(be, n->dlogits, (size_t)B * K);
        k->xent_backward(be, n->dlogits, n->probs, t->labels, B, K);
        return;
    case OP_FC_WGRAD: /* dW[K, F] = dlogitsᵀ · flat */
        k->weight_grad(be, sb_grad_data(t, P_WFC), n->dlogits, n->p[1], B, K, F);
        return;
    case OP_FC_BGRAD:
        k->zero(be, sb_grad_data(t, P_BFC), (size_t)K);
        k->bias_grad(be, sb_grad_data(t, P_BFC), n->dlogits, B, K);
        return;
    case OP_FC_BWD_INPUT: /* dflat[B, F] = dlogits · W */
        k->gemm(be, 0, 0, B, F, K, 1.0f, n->dlogits, K, sb_param_data(t, P_WFC), F, 0.0f, n->dp[1], F);
        return;
    case OP_POOL_BWD: /* da[l] = pool'ᵀ · dp[l] */
        k->zero(be, n->da[l], n->nz[l]);
        if (avg)
            k->avgpool2d_backward(be, n->da[l], n->dp[l], &n->pool[l]);
        else
            k->maxpool2d_backward(be, n->da[l], n->dp[l], n->a[l], &n->pool[l]);
        return;
    case OP_ACT_BWD: /* dz[l] = da[l] ⊙ f'(z[l]) */
        k->zero(be, n->dz[l], n->nz[l]);
        k->act_backward(be, cfg->model.act, n->dz[l], n->da[l], n->z[l], n->nz[l]);
        return;
    case OP_CONV_BWD: { /* dW, db (and for conv2 the input gradient dp[0]) from dz[l] */
        int w = l ? P_W2 : P_W1, b = l ? P_B2 : P_B1;
        k->zero(be, sb_grad_data(t, w), t->params[w].numel);
        k->zero(be, sb_grad_data(t, b), t->params[b].numel);
        if (l) k->zero(be, n->dp[0], n->np[0]);
        k->conv2d_backward(be, l ? n->dp[0] : NULL, sb_grad_data(t, w), sb_grad_data(t, b), n->dz[l],
                           conv_input(t, l), sb_param_data(t, w), &n->conv[l]);
        return;
    }
    }
}

/* Runs one op of the step (traced when a trace is open). */
static void op(sb_trainer *t, int kind, int l, const char *name, sb_stage stage, int n_in,
               const sb_view *in, int n_out, const sb_view *out) {
    opcall c = {.kind = kind, .l = l};
    sb_run_op(t, name, stage, n_in, in, n_out, out, 0, NULL, run_op, &c);
}

#define F32 SB_F32
#define I32 SB_I32
#define PARAM(p) F32(sb_param_data(t, (p)), t->params[(p)].numel)
#define GRAD(p) F32(sb_grad_data(t, (p)), t->params[(p)].numel)

sb_status sb_cnn_step(sb_trainer *t, float *loss_out, sb_error *err) {
    const sb_run_config *c = &t->cfg;
    sb_cnn *n = t->cnn;
    int B = c->batch, K = c->data.classes;
    size_t nx = (size_t)B * c->data.features, nflat = (size_t)B * n->flat, nl = (size_t)B * K;
    const char *act = sb_act_name(c->model.act);
    const char *pool = c->model.pool == SB_POOL_AVG ? "avgpool" : "maxpool";
    char name[64];

    /* ---- forward ---- */
    for (int l = 0; l < 2; l++) {
        int w = l ? P_W2 : P_W1, b = l ? P_B2 : P_B1;
        sb_view in[3] = {F32(conv_input(t, l), l ? n->np[0] : nx), PARAM(w), PARAM(b)};
        sb_view z[1] = {F32(n->z[l], n->nz[l])}, a[1] = {F32(n->a[l], n->nz[l])};
        sb_view p[1] = {F32(n->p[l], n->np[l])};
        snprintf(name, sizeof name, "conv%d/conv.fwd", l + 1);
        op(t, OP_CONV_FWD, l, name, SB_STAGE_FORWARD, 3, in, 1, z);
        snprintf(name, sizeof name, "conv%d/%s.fwd", l + 1, act);
        op(t, OP_ACT_FWD, l, name, SB_STAGE_FORWARD, 1, z, 1, a);
        snprintf(name, sizeof name, "pool%d/%s.fwd", l + 1, pool);
        op(t, OP_POOL_FWD, l, name, SB_STAGE_FORWARD, 1, a, 1, p);
    }
    {
        sb_view in[2] = {F32(n->p[1], nflat), PARAM(P_WFC)};
        sb_view out[1] = {F32(n->logits, nl)};
        op(t, OP_FC_FWD, 0, "fc/matmul.fwd", SB_STAGE_FORWARD, 2, in, 1, out);
        sb_view inb[2] = {F32(n->logits, nl), PARAM(P_BFC)};
        op(t, OP_FC_BIAS, 0, "fc/bias.fwd", SB_STAGE_FORWARD, 2, inb, 1, out);
        sb_view inx[2] = {F32(n->logits, nl), I32(t->labels, B)};
        sb_view outx[2] = {F32(n->probs, nl), F32(t->loss, 1)};
        op(t, OP_XENT_FWD, 0, "loss/xent.fwd", SB_STAGE_LOSS, 2, inx, 2, outx);
    }
    float loss;
    t->be->i->download(t->be, &loss, t->loss, sizeof loss);
    if (!isfinite(loss))
        return sb_error_set(err, SB_ERR_RUN, "step %d: loss is %s", t->step + 1,
                            isnan(loss) ? "NaN" : "infinite");

    /* ---- backward ---- */
    {
        sb_view in[2] = {F32(n->probs, nl), I32(t->labels, B)};
        sb_view dl[1] = {F32(n->dlogits, nl)};
        op(t, OP_XENT_BWD, 0, "loss/xent.bwd", SB_STAGE_BACKWARD, 2, in, 1, dl);
        sb_view inw[2] = {F32(n->dlogits, nl), F32(n->p[1], nflat)};
        sb_view outw[1] = {GRAD(P_WFC)}, outb[1] = {GRAD(P_BFC)};
        op(t, OP_FC_WGRAD, 0, "fc/matmul.bwd_weight", SB_STAGE_BACKWARD, 2, inw, 1, outw);
        op(t, OP_FC_BGRAD, 0, "fc/bias.grad", SB_STAGE_BACKWARD, 1, dl, 1, outb);
        sb_view inx[2] = {F32(n->dlogits, nl), PARAM(P_WFC)};
        sb_view outx[1] = {F32(n->dp[1], nflat)};
        op(t, OP_FC_BWD_INPUT, 0, "fc/matmul.bwd_input", SB_STAGE_BACKWARD, 2, inx, 1, outx);
    }
    for (int l = 1; l >= 0; l--) {
        int w = l ? P_W2 : P_W1, b = l ? P_B2 : P_B1;
        sb_view inp[2] = {F32(n->dp[l], n->np[l]), F32(n->a[l], n->nz[l])};
        sb_view da[1] = {F32(n->da[l], n->nz[l])};
        snprintf(name, sizeof name, "pool%d/%s.bwd", l + 1, pool);
        op(t, OP_POOL_BWD, l, name, SB_STAGE_BACKWARD, 2, inp, 1, da);
        sb_view ina[2] = {F32(n->da[l], n->nz[l]), F32(n->z[l], n->nz[l])};
        sb_view dz[1] = {F32(n->dz[l], n->nz[l])};
        snprintf(name, sizeof name, "conv%d/%s.bwd", l + 1, act);
        op(t, OP_ACT_BWD, l, name, SB_STAGE_BACKWARD, 2, ina, 1, dz);
        sb_view inc[3] = {F32(n->dz[l], n->nz[l]), F32(conv_input(t, l), l ? n->np[0] : nx),
                          PARAM(w)};
        sb_view outc[3] = {GRAD(w), GRAD(b), F32(n->dp[0], n->np[0])};
        snprintf(name, sizeof name, "conv%d/conv.bwd", l + 1);
        op(t, OP_CONV_BWD, l, name, SB_STAGE_BACKWARD, 3, inc, l ? 3 : 2, outc);
    }
    *loss_out = loss;
    return SB_OK;
}
