/* train.c — the MLP, its optimizers and the training step on one backend.
 *
 * Model: widths w0 → w1 → … → wL. Layer l (1-based) is fc<l>: z = a·Wᵀ + b with
 * W [w_l, w_{l-1}] and b [w_l]; every layer but the last is followed by the
 * activation (and, when configured, inverted dropout); the last feeds softmax
 * cross-entropy.
 *
 * Memory (llm.c style): one parameter buffer with named views (fc1.weight,
 * fc1.bias, fc2.weight, …), one gradient buffer with the same layout, one
 * optimizer-state buffer (SGD: momentum; Adam: m then v). Activations live in
 * per-layer buffers sized for one batch.
 *
 * Every stage and op of a step runs through sb_exec_op (tracing.c) with its
 * stable name — data/shuffle, data/batch, data/augment, fc1/matmul.fwd,
 * fc1/bias.fwd, fc1/relu.fwd, dropout1/fwd, loss/xent.fwd, loss/xent.bwd,
 * fc2/matmul.bwd_weight, fc2/bias.grad, fc2/matmul.bwd_input, dropout1/bwd,
 * fc1/relu.bwd, …, sgd/update or adam/update — so a trace names where drift
 * enters. Every write to a tensor happens inside an op (the hash cache
 * depends on it).
 *
 * The CNN (cnn.c) shares the trainer, the data ops and the optimizer op
 * (sb_step_data, sb_step_optimizer); sb_trainer_new and sb_trainer_step
 * dispatch on model.kind.
 *
 * Not here: the CNN's layers (cnn.c), checkpoint files (checkpoint.c), the data pipeline (pipeline.c),
 * tracing (tracing.c), suites, processes, reports.
 */
#include "train_internal.h"

#include <math.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void draw_entropy(uint64_t *out, int n) {
    for (int i = 0; i < n; i++) {
        uint64_t v = 0;
        if (getrandom(&v, sizeof v, 0) != sizeof v) {
            /* no OS entropy: fall back to a clock-derived value (still unseeded) */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)i << 48);
        }
        out[i] = v & ((1ull << 53) - 1); /* printable exactly as a JSON number too */
    }
}

void sb_param_set(sb_param *pp, const char *name, int ndim, const int64_t *shape, sb_init init,
                  int fan_in, float init_std, size_t *off) {
    snprintf(pp->name, sizeof pp->name, "%s", name);
    pp->ndim = ndim;
    pp->numel = 1;
    for (int d = 0; d < ndim; d++) {
        pp->shape[d] = shape[d];
        pp->numel *= (size_t)shape[d];
    }
    pp->init = init;
    pp->fan_in = fan_in;
    pp->init_std = init_std;
    pp->offset = *off;
    *off += pp->numel;
}

/* the MLP's op names, per layer: t->mlp_op[l][MN_*] */
enum {
    MN_MATMUL_FWD, MN_BIAS_FWD, MN_ACT_FWD, MN_DROPOUT_FWD, MN_WEIGHT_GRAD, MN_BIAS_GRAD,
    MN_MATMUL_BWD_INPUT, MN_DROPOUT_BWD, MN_ACT_BWD
};

sb_trainer *sb_trainer_new(const sb_run_config *c, sb_error *err) {
    if (sb_run_config_validate(c, err) != SB_OK) return NULL;
    sb_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        sb_error_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->cfg = *c;
    draw_entropy(t->entropy, SB_UNSEEDED_COUNT);
    draw_entropy(t->entropy2, SB_UNSEEDED_COUNT);
    sb_backend_config bc = {.mode = c->mode, .threads = c->threads, .perturb = c->perturb};
    t->be = sb_backend_new(c->backend, &bc, err);
    if (!t->be) goto fail;
    t->data = sb_dataset_new(&c->data, sb_stream_seed(t, SB_UNSEEDED_SOURCE, 0), err);
    if (!t->data) goto fail;

    /* ---- parameter table ---- */
    int cnn = !strcmp(c->model.kind, "cnn"), rnn = !strcmp(c->model.kind, "rnn");
    int tf = !strcmp(c->model.kind, "transformer"), mlp = !cnn && !rnn && !tf;
    int L = mlp ? c->model.n_widths - 1 : 0;
    t->n_layers = L;
    t->n_params = 2 * L;
    size_t off = 0;
    if (cnn && sb_cnn_setup(t, err) != SB_OK) goto fail;
    if (rnn && sb_rnn_setup(t, err) != SB_OK) goto fail;
    if (tf && sb_tf_setup(t, err) != SB_OK) goto fail;
    if (rnn || tf) { /* the token split's buffers */
        size_t n = (size_t)c->batch * (size_t)(c->data.features - 1);
        t->tok_in = t->be->i->alloc(t->be, n * sizeof(int32_t));
        t->tok_tgt = t->be->i->alloc(t->be, n * sizeof(int32_t));
        t->host_tok = malloc((2 * n + (size_t)c->batch * c->data.features) * sizeof(int32_t));
        if (!t->tok_in || !t->tok_tgt || !t->host_tok) goto nomem;
    }
    for (int l = 0; l < L; l++) {
        char name[32];
        int64_t shape[2] = {c->model.widths[l + 1], c->model.widths[l]};
        snprintf(name, sizeof name, "fc%d.weight", l + 1);
        sb_param_set(&t->params[2 * l], name, 2, shape, SB_INIT_UNIFORM, c->model.widths[l], 0.0f,
                     &off);
        snprintf(name, sizeof name, "fc%d.bias", l + 1);
        sb_param_set(&t->params[2 * l + 1], name, 1, shape, SB_INIT_UNIFORM, c->model.widths[l],
                     0.0f, &off);
    }
    if (mlp) t->total = off;
    for (int l = 1; mlp && l <= L; l++) { /* mlp_step's op names (MN_*) */
        const char *act = sb_act_name(c->model.act);
        snprintf(t->mlp_op[l][MN_MATMUL_FWD], sizeof t->mlp_op[l][0], "fc%d/matmul.fwd", l);
        snprintf(t->mlp_op[l][MN_BIAS_FWD], sizeof t->mlp_op[l][0], "fc%d/bias.fwd", l);
        snprintf(t->mlp_op[l][MN_ACT_FWD], sizeof t->mlp_op[l][0], "fc%d/%s.fwd", l, act);
        snprintf(t->mlp_op[l][MN_DROPOUT_FWD], sizeof t->mlp_op[l][0], "dropout%d/fwd", l);
        snprintf(t->mlp_op[l][MN_WEIGHT_GRAD], sizeof t->mlp_op[l][0], "fc%d/matmul.bwd_weight", l);
        snprintf(t->mlp_op[l][MN_BIAS_GRAD], sizeof t->mlp_op[l][0], "fc%d/bias.grad", l);
        snprintf(t->mlp_op[l][MN_MATMUL_BWD_INPUT], sizeof t->mlp_op[l][0], "fc%d/matmul.bwd_input",
                 l);
        snprintf(t->mlp_op[l][MN_DROPOUT_BWD], sizeof t->mlp_op[l][0], "dropout%d/bwd", l);
        snprintf(t->mlp_op[l][MN_ACT_BWD], sizeof t->mlp_op[l][0], "fc%d/%s.bwd", l, act);
    }
    t->n_slots = strcmp(c->optim.name, "adam") == 0 ? 2 : 1;

    sb_backend *be = t->be;
    t->param = be->i->alloc(be, t->total * sizeof(float));
    t->grad = be->i->alloc(be, t->total * sizeof(float));
    t->state = be->i->alloc(be, (size_t)t->n_slots * t->total * sizeof(float));
    int B = c->batch, maxw = 1;
    for (int l = 0; l < c->model.n_widths; l++)
        if (c->model.widths[l] > maxw) maxw = c->model.widths[l];
    for (int l = 0; l <= L; l++) {
        /* act[0] is the input batch; act[l] (l ≥ 1) is the activation after
         * layer l (for the last layer: the softmax probabilities); pre[l] is
         * layer l's pre-activation z; drop[l] and mask[l] exist for hidden
         * layers when dropout is on. */
        size_t n = (size_t)B * (l == 0 ? c->data.features : c->model.widths[l]);
        t->act[l] = be->i->alloc(be, n * sizeof(float));
        if (!t->act[l]) goto nomem;
        if (l > 0) {
            t->pre[l] = be->i->alloc(be, n * sizeof(float));
            if (!t->pre[l]) goto nomem;
        }
        if (l > 0 && l < L && c->model.dropout > 0.0f) {
            t->drop[l] = be->i->alloc(be, n * sizeof(float));
            t->mask[l] = be->i->alloc(be, n * sizeof(float));
            if (!t->drop[l] || !t->mask[l]) goto nomem;
        }
    }
    t->host_mask = malloc((size_t)B * maxw * sizeof(float));
    t->dz = be->i->alloc(be, (size_t)B * maxw * sizeof(float));
    t->da = be->i->alloc(be, (size_t)B * maxw * sizeof(float));
    t->dd = be->i->alloc(be, (size_t)B * maxw * sizeof(float));
    t->labels = be->i->alloc(be, (size_t)B * sizeof(int32_t));
    t->loss = be->i->alloc(be, sizeof(float));
    t->order = malloc((size_t)c->data.samples * sizeof(int32_t));
    t->border = malloc((size_t)c->data.samples * sizeof(int32_t));
    float *host = malloc(t->total * sizeof(float));
    if (!t->param || !t->grad || !t->state || !t->host_mask || !t->dz || !t->da || !t->labels ||
        !t->dd || !t->loss || !t->order || !t->border || !host || sb_batch_alloc(&t->cur, B, c->data.features) != 0) {
        free(host);
        goto nomem;
    }
    t->order_epoch = -1;
    t->border_epoch = -1;
    t->traced_epoch = -1;
    if (sb_loader_new(t, err) != SB_OK) {
        free(host);
        goto fail;
    }

    /* ---- init: each tensor from its own stream "init/<name>": uniform in
     * ±1/sqrt(fan_in) (PyTorch's nn.Linear default bound), normal, or a
     * constant (sb_init) ---- */
    for (int p = 0; p < t->n_params; p++) {
        sb_param *pp = &t->params[p];
        float bound = 1.0f / sqrtf((float)(pp->fan_in > 0 ? pp->fan_in : 1));
        sb_rng r;
        char purpose[80];
        snprintf(purpose, sizeof purpose, "init/%s", pp->name);
        sb_rng_init(&r, sb_stream_seed(t, SB_UNSEEDED_INIT, 0), purpose, 0);
        float *dst = host + pp->offset;
        for (size_t i = 0; i < pp->numel; i++) {
            switch (pp->init) {
            case SB_INIT_UNIFORM: dst[i] = (2.0f * sb_rng_uniform(&r) - 1.0f) * bound; break;
            case SB_INIT_NORMAL: dst[i] = pp->init_std * sb_rng_normal(&r); break;
            case SB_INIT_ONES: dst[i] = 1.0f; break;
            case SB_INIT_ZEROS: dst[i] = 0.0f; break;
            }
        }
    }
    be->i->upload(be, t->param, host, t->total * sizeof(float));
    free(host);
    return t;
nomem:
    sb_error_set(err, SB_ERR_NOMEM, "out of memory allocating the model");
fail:
    sb_trainer_free(t);
    return NULL;
}

void sb_trainer_free(sb_trainer *t) {
    if (!t) return;
    sb_trace_writer_abort(t->tw);
    sb_cnn_free(t);
    sb_rnn_free(t);
    sb_tf_free(t);
    sb_backend *be = t->be;
    if (be) {
        be->i->free(be, t->tok_in);
        be->i->free(be, t->tok_tgt);
        be->i->free(be, t->param);
        be->i->free(be, t->grad);
        be->i->free(be, t->state);
        for (int l = 0; l <= SB_MAX_LAYERS; l++) {
            be->i->free(be, t->act[l]);
            be->i->free(be, t->pre[l]);
            be->i->free(be, t->drop[l]);
            be->i->free(be, t->mask[l]);
        }
        be->i->free(be, t->dz);
        be->i->free(be, t->da);
        be->i->free(be, t->dd);
        be->i->free(be, t->labels);
        be->i->free(be, t->loss);
    }
    sb_loader_free(t->loader);
    sb_backend_free(be);
    sb_dataset_free(t->data);
    sb_batch_free(&t->cur);
    free(t->host_mask);
    free(t->host_tok);
    free(t->order);
    free(t->border);
    free(t->scratch);
    free(t->scratch2);
    free(t);
}

/* ====================================================================== */
/* the ops of one step                                                    */
/* ====================================================================== */

enum {
    OP_SHUFFLE, OP_BATCH, OP_AUGMENT, OP_UPLOAD, OP_MATMUL_FWD, OP_BIAS_FWD, OP_ACT_FWD,
    OP_DROPOUT_FWD, OP_XENT_FWD, OP_XENT_BWD, OP_WEIGHT_GRAD, OP_BIAS_GRAD, OP_MATMUL_BWD_INPUT,
    OP_DROPOUT_BWD, OP_ACT_BWD, OP_OPTIMIZER, OP_TOKENS
};

typedef struct opcall {
    int kind;
    int l;        /* layer (1-based) */
    int epoch;    /* OP_SHUFFLE */
} opcall;

int sb_augmenting(const sb_run_config *c) {
    return c->data.aug_noise > 0.0f || c->data.aug_feature_drop > 0.0f ||
           c->data.aug_flip > 0.0f || c->data.aug_shift > 0;
}

/* the layer's input activation (after dropout when enabled) */
static float *layer_input(const sb_trainer *t, int l) {
    return l > 1 && t->drop[l - 1] ? t->drop[l - 1] : t->act[l - 1];
}

static void run_op(sb_trainer *t, void *arg) {
    const opcall *c = arg;
    const sb_run_config *cfg = &t->cfg;
    sb_backend *be = t->be;
    const sb_backend_i *k = be->i;
    const int *w = cfg->model.widths;
    int B = cfg->batch, L = t->n_layers, l = c->l;
    switch (c->kind) {
    case OP_SHUFFLE:
        sb_epoch_order(&cfg->data, sb_stream_seed(t, SB_UNSEEDED_SHUFFLE, c->epoch), c->epoch,
                       t->order);
        t->order_epoch = c->epoch;
        return;
    case OP_BATCH:
        if (t->recheck_pass) { /* what a plain, in-order pipeline hands out for this step */
            sb_batch tmp;
            int32_t *ord = malloc((size_t)cfg->data.samples * sizeof(int32_t));
            int oe = -1;
            if (ord && sb_batch_alloc(&tmp, B, cfg->data.features) == 0) {
                sb_prepare_batch(t, t->step, &tmp, ord, &oe);
                memcpy(t->cur.raw, tmp.raw, (size_t)B * cfg->data.features * sizeof(float));
                memcpy(t->cur.y, tmp.y, (size_t)B * sizeof(int32_t));
                sb_batch_free(&tmp);
            }
            free(ord);
        } else {
            sb_loader_next(t);
        }
        return;
    case OP_AUGMENT:
        sb_augment_batch(t, &t->cur);
        return;
    case OP_UPLOAD:
        k->upload(be, t->act[0], sb_augmenting(cfg) ? t->cur.x : t->cur.raw,
                  (size_t)B * cfg->data.features * sizeof(float));
        k->upload(be, t->labels, t->cur.y, (size_t)B * sizeof(int32_t));
        return;
    case OP_MATMUL_FWD: /* pre[l][B, w_l] = in[B, w_{l-1}] · Wᵀ */
        k->gemm(be, 0, 1, B, w[l], w[l - 1], 1.0f, layer_input(t, l), w[l - 1],
                t->param + t->params[2 * (l - 1)].offset, w[l - 1], 0.0f, t->pre[l], w[l]);
        return;
    case OP_BIAS_FWD:
        k->bias_add(be, t->pre[l], t->param + t->params[2 * (l - 1) + 1].offset, B, w[l]);
        return;
    case OP_ACT_FWD:
        k->act_forward(be, cfg->model.act, t->act[l], t->pre[l], (size_t)B * w[l]);
        return;
    case OP_DROPOUT_FWD: { /* mask from stream "dropout/fc<l>" index step */
        size_t n = (size_t)B * w[l];
        float p = cfg->model.dropout;
        sb_rng r;
        char purpose[32];
        snprintf(purpose, sizeof purpose, "dropout/fc%d", l);
        sb_rng_init(&r, sb_stream_seed(t, SB_UNSEEDED_DROPOUT, 0), purpose, (uint64_t)t->step);
        for (size_t i = 0; i < n; i++) t->host_mask[i] = sb_rng_uniform(&r) < p ? 0.0f : 1.0f;
        k->upload(be, t->mask[l], t->host_mask, n * sizeof(float));
        k->dropout_forward(be, t->drop[l], t->act[l], t->mask[l], n, 1.0f / (1.0f - p));
        return;
    }
    case OP_XENT_FWD:
        k->xent_forward(be, t->act[L], t->loss, t->pre[L], t->labels, B, w[L]);
        return;
    case OP_XENT_BWD:
        k->zero(be, t->dz, (size_t)B * w[L]);
        k->xent_backward(be, t->dz, t->act[L], t->labels, B, w[L]);
        return;
    case OP_WEIGHT_GRAD: /* dW[w_l, w_{l-1}] = dzᵀ · in */
        k->weight_grad(be, t->grad + t->params[2 * (l - 1)].offset, t->dz, layer_input(t, l), B,
                       w[l], w[l - 1]);
        return;
    case OP_BIAS_GRAD: {
        float *db = t->grad + t->params[2 * (l - 1) + 1].offset;
        k->zero(be, db, (size_t)w[l]);
        k->bias_grad(be, db, t->dz, B, w[l]);
        return;
    }
    case OP_MATMUL_BWD_INPUT: /* da[B, w_{l-1}] = dz · W */
        k->gemm(be, 0, 0, B, w[l - 1], w[l], 1.0f, t->dz, w[l],
                t->param + t->params[2 * (l - 1)].offset, w[l - 1], 0.0f, t->da, w[l - 1]);
        return;
    case OP_DROPOUT_BWD: /* dd = mask ⊙ da · scale */
        k->zero(be, t->dd, (size_t)B * w[l]);
        k->dropout_backward(be, t->dd, t->da, t->mask[l], (size_t)B * w[l],
                            1.0f / (1.0f - cfg->model.dropout));
        return;
    case OP_ACT_BWD: /* dz ← (dd or da) ⊙ f'(pre[l]) */
        k->zero(be, t->dz, (size_t)B * w[l]);
        k->act_backward(be, cfg->model.act, t->dz, t->drop[l] ? t->dd : t->da, t->pre[l],
                        (size_t)B * w[l]);
        return;
    case OP_TOKENS: { /* [B, T+1] float ids → inputs [B, T], targets [B, T] */
        int T = cfg->data.features - 1;
        size_t n = (size_t)B * T;
        float *rows = (float *)(t->host_tok + 2 * n); /* staging after the two id blocks */
        k->download(be, rows, t->act[0], (size_t)B * (T + 1) * sizeof(float));
        for (int b = 0; b < B; b++)
            for (int j = 0; j < T; j++) {
                t->host_tok[(size_t)b * T + j] = (int32_t)rows[(size_t)b * (T + 1) + j];
                t->host_tok[n + (size_t)b * T + j] = (int32_t)rows[(size_t)b * (T + 1) + j + 1];
            }
        k->upload(be, t->tok_in, t->host_tok, n * sizeof(int32_t));
        k->upload(be, t->tok_tgt, t->host_tok + n, n * sizeof(int32_t));
        return;
    }
    case OP_OPTIMIZER: {
        const sb_optim_config *o = &cfg->optim;
        if (t->n_slots == 2)
            k->adam_update(be, t->param, t->state, t->state + t->total, t->grad, t->total, o->lr,
                           o->beta1, o->beta2, o->eps, o->weight_decay, t->step + 1);
        else
            k->sgd_update(be, t->param, t->state, t->grad, t->total, o->lr, o->momentum,
                          o->weight_decay);
        return;
    }
    }
}

/* Runs one op of the step (traced when a trace is open). */
static void op_side(sb_trainer *t, int kind, int l, const char *name, sb_stage stage, int n_in,
                    const sb_view *in, int n_out, const sb_view *out, int n_side,
                    const sb_view *side, int epoch) {
    opcall c = {.kind = kind, .l = l, .epoch = epoch};
    sb_run_op(t, name, stage, n_in, in, n_out, out, n_side, side, run_op, &c);
}

static void op(sb_trainer *t, int kind, int l, const char *name, sb_stage stage, int n_in,
               const sb_view *in, int n_out, const sb_view *out, int epoch) {
    op_side(t, kind, l, name, stage, n_in, in, n_out, out, 0, NULL, epoch);
}

#define F32 SB_F32
#define I32 SB_I32

/* data: shuffle (when an epoch starts), batch, augment, upload */
void sb_step_data(sb_trainer *t) {
    const sb_run_config *c = &t->cfg;
    int B = c->batch, F = c->data.features, N = c->data.samples;

    /* ---- data: shuffle (when an epoch starts), batch, augment, upload ---- */
    uint64_t first = (uint64_t)t->step * (uint64_t)B, last = first + (uint64_t)B - 1;
    for (int e = (int)(first / (uint64_t)N); e <= (int)(last / (uint64_t)N); e++) {
        if (e <= t->traced_epoch) continue;
        sb_view out = I32(t->order, N);
        op(t, OP_SHUFFLE, 0, "data/shuffle", SB_STAGE_DATA_SHUFFLE, 0, NULL, 1, &out, e);
        t->traced_epoch = e;
    }
    {
        /* inputs: the epoch order the batch is cut from (a pure function of the
         * config and the step) */
        sb_view in[1] = {I32(t->order, N)};
        sb_view out[2] = {F32(t->cur.raw, (size_t)B * F), I32(t->cur.y, B)};
        op(t, OP_BATCH, 0, "data/batch", SB_STAGE_DATA_BATCH, 1, in, 2, out, 0);
    }
    if (sb_augmenting(c)) {
        sb_view in[1] = {F32(t->cur.raw, (size_t)B * F)};
        sb_view out[1] = {F32(t->cur.x, (size_t)B * F)};
        op(t, OP_AUGMENT, 0, "data/augment", SB_STAGE_DATA_AUGMENT, 1, in, 1, out, 0);
    }
    {
        /* to backend memory: a copy, not an op of its own; the copies carry
         * the hashes of what they copy */
        opcall up = {.kind = OP_UPLOAD};
        run_op(t, &up);
        sb_view src[2] = {F32(sb_augmenting(c) ? t->cur.x : t->cur.raw, (size_t)B * F),
                          I32(t->cur.y, B)};
        sb_view dst[2] = {F32(t->act[0], (size_t)B * F), I32(t->labels, B)};
        for (int i = 0; i < 2; i++) sb_cache_alias(t, &dst[i], &src[i]);
    }
}

void sb_step_tokens(sb_trainer *t) {
    const sb_run_config *c = &t->cfg;
    int B = c->batch, T = c->data.features - 1;
    sb_view in[1] = {F32(t->act[0], (size_t)B * (T + 1))};
    sb_view out[2] = {I32(t->tok_in, (size_t)B * T), I32(t->tok_tgt, (size_t)B * T)};
    op(t, OP_TOKENS, 0, "data/tokens", SB_STAGE_DATA_BATCH, 1, in, 2, out, 0);
}

/* the MLP's forward and backward; *loss_out gets the loss */
static sb_status mlp_step(sb_trainer *t, float *loss_out, sb_error *err) {
    const sb_run_config *c = &t->cfg;
    const int *w = c->model.widths;
    int B = c->batch, L = t->n_layers;

    /* ---- forward ---- */
    for (int l = 1; l <= L; l++) {
        sb_param *W = &t->params[2 * (l - 1)], *b = &t->params[2 * (l - 1) + 1];
        size_t nin = (size_t)B * w[l - 1], nout = (size_t)B * w[l];
        sb_view in2[2] = {F32(layer_input(t, l), nin), F32(t->param + W->offset, W->numel)};
        sb_view out1[1] = {F32(t->pre[l], nout)};
        op(t, OP_MATMUL_FWD, l, t->mlp_op[l][MN_MATMUL_FWD], SB_STAGE_FORWARD, 2, in2, 1, out1, 0);
        sb_view inb[2] = {F32(t->pre[l], nout), F32(t->param + b->offset, b->numel)};
        op(t, OP_BIAS_FWD, l, t->mlp_op[l][MN_BIAS_FWD], SB_STAGE_FORWARD, 2, inb, 1, out1, 0);
        if (l == L) break;
        sb_view ina[1] = {F32(t->pre[l], nout)};
        sb_view outa[1] = {F32(t->act[l], nout)};
        op(t, OP_ACT_FWD, l, t->mlp_op[l][MN_ACT_FWD], SB_STAGE_FORWARD, 1, ina, 1, outa, 0);
        if (t->drop[l]) {
            sb_view outd[2] = {F32(t->drop[l], nout), F32(t->mask[l], nout)};
            op(t, OP_DROPOUT_FWD, l, t->mlp_op[l][MN_DROPOUT_FWD], SB_STAGE_FORWARD, 1, outa, 2, outd, 0);
        }
    }
    {
        sb_view in[2] = {F32(t->pre[L], (size_t)B * w[L]), I32(t->labels, B)};
        sb_view out[2] = {F32(t->act[L], (size_t)B * w[L]), F32(t->loss, 1)};
        op(t, OP_XENT_FWD, L, "loss/xent.fwd", SB_STAGE_LOSS, 2, in, 2, out, 0);
    }
    float loss;
    t->be->i->download(t->be, &loss, t->loss, sizeof loss);
    if (!isfinite(loss))
        return sb_error_set(err, SB_ERR_RUN, "step %d: loss is %s", t->step + 1,
                            isnan(loss) ? "NaN" : "infinite");

    /* ---- backward ---- */
    {
        sb_view in[2] = {F32(t->act[L], (size_t)B * w[L]), I32(t->labels, B)};
        sb_view out[1] = {F32(t->dz, (size_t)B * w[L])};
        op(t, OP_XENT_BWD, L, "loss/xent.bwd", SB_STAGE_BACKWARD, 2, in, 1, out, 0);
    }
    for (int l = L; l >= 1; l--) {
        sb_param *W = &t->params[2 * (l - 1)], *b = &t->params[2 * (l - 1) + 1];
        size_t nin = (size_t)B * w[l - 1], nout = (size_t)B * w[l];
        sb_view dz[1] = {F32(t->dz, nout)};
        sb_view inw[2] = {F32(t->dz, nout), F32(layer_input(t, l), nin)};
        sb_view outw[1] = {F32(t->grad + W->offset, W->numel)};
        op(t, OP_WEIGHT_GRAD, l, t->mlp_op[l][MN_WEIGHT_GRAD], SB_STAGE_BACKWARD, 2, inw, 1, outw, 0);
        sb_view outb[1] = {F32(t->grad + b->offset, b->numel)};
        op(t, OP_BIAS_GRAD, l, t->mlp_op[l][MN_BIAS_GRAD], SB_STAGE_BACKWARD, 1, dz, 1, outb, 0);
        if (l == 1) break;
        sb_view inx[2] = {F32(t->dz, nout), F32(t->param + W->offset, W->numel)};
        sb_view da[1] = {F32(t->da, nin)};
        op(t, OP_MATMUL_BWD_INPUT, l, t->mlp_op[l][MN_MATMUL_BWD_INPUT], SB_STAGE_BACKWARD, 2, inx, 1, da, 0);
        if (t->drop[l - 1]) {
            sb_view ind[2] = {F32(t->da, nin), F32(t->mask[l - 1], nin)};
            sb_view outd[1] = {F32(t->dd, nin)};
            op(t, OP_DROPOUT_BWD, l - 1, t->mlp_op[l - 1][MN_DROPOUT_BWD], SB_STAGE_BACKWARD, 2, ind, 1, outd, 0);
        }
        sb_view ina[2] = {F32(t->drop[l - 1] ? t->dd : t->da, nin), F32(t->pre[l - 1], nin)};
        sb_view outz[1] = {F32(t->dz, nin)};
        op(t, OP_ACT_BWD, l - 1, t->mlp_op[l - 1][MN_ACT_BWD], SB_STAGE_BACKWARD, 2, ina, 1, outz, 0);
    }
    *loss_out = loss;
    return SB_OK;
}

/* optimizer: one update over the whole parameter buffer */
void sb_step_optimizer(sb_trainer *t) {
    {
        /* The record covers the parameters and gradients, not the optimizer
         * state (momentum; Adam's m and v): hashing 1-2 more copies of the
         * model every step would cost more than the rest of tracing, and state
         * that drifts shows in the parameters it updates. Recheck still saves
         * and restores the state (a side output of the op). */
        /* per-parameter views, the very views forward and backward use, so
         * every hash is computed once per write and found in the cache */
        sb_view in[SB_OP_MAX_IO], out[SB_OP_MAX_IO];
        for (int p = 0; p < t->n_params; p++) {
            const sb_param *pp = &t->params[p];
            in[p] = F32(t->param + pp->offset, pp->numel);
            in[t->n_params + p] = F32(t->grad + pp->offset, pp->numel);
            out[p] = F32(t->param + pp->offset, pp->numel);
        }
        sb_view side[1] = {F32(t->state, (size_t)t->n_slots * t->total)};
        op_side(t, OP_OPTIMIZER, 0, t->n_slots == 2 ? "adam/update" : "sgd/update",
                SB_STAGE_OPTIMIZER, 2 * t->n_params, in, t->n_params, out, 1, side, 0);
    }
}

sb_status sb_trainer_step(sb_trainer *t, float *loss_out, sb_error *err) {
    float loss = 0.0f;
    sb_step_data(t);
    sb_status st = t->cnn   ? sb_cnn_step(t, &loss, err)
                   : t->rnn ? sb_rnn_step(t, &loss, err)
                   : t->tf  ? sb_tf_step(t, &loss, err)
                            : mlp_step(t, &loss, err);
    if (st != SB_OK) return st;
    sb_step_optimizer(t);
    t->step++;
    if (loss_out) *loss_out = loss;
    return SB_OK;
}

int sb_trainer_steps_done(const sb_trainer *t) { return t->step; }
int sb_trainer_n_params(const sb_trainer *t) { return t->n_params; }
const char *sb_trainer_param_name(const sb_trainer *t, int i) { return t->params[i].name; }

size_t sb_trainer_param_numel(const sb_trainer *t, int i) {
    return i < 0 ? t->total : t->params[i].numel;
}

void sb_trainer_param_download(const sb_trainer *t, int i, float *host) {
    if (i < 0)
        t->be->i->download(t->be, host, t->param, t->total * sizeof(float));
    else
        t->be->i->download(t->be, host, t->param + t->params[i].offset,
                           t->params[i].numel * sizeof(float));
}

char *sb_trainer_unseeded_json(const sb_trainer *t) {
    size_t cap = 64 + (size_t)SB_UNSEEDED_COUNT * 96, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    n += (size_t)snprintf(s + n, cap - n, "[");
    int first = 1;
    for (int i = 0; i < SB_UNSEEDED_COUNT; i++) {
        if (!(t->cfg.unseeded & (1u << i))) continue;
        n += (size_t)snprintf(s + n, cap - n, "%s{\"stream\": \"%s\", \"entropy_seed\": \"%llu\"}",
                              first ? "" : ", ", sb_unseeded_name(i),
                              (unsigned long long)t->entropy[i]);
        first = 0;
    }
    snprintf(s + n, cap - n, "]");
    return s;
}
