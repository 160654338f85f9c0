/* train.c — the MLP, its optimizers and the training loop on one backend.
 *
 * Model: widths w0 → w1 → … → wL. Layer l (1-based) is fc<l>: z = a·Wᵀ + b with
 * W [w_l, w_{l-1}] and b [w_l]; every layer but the last is followed by the
 * activation; the last feeds softmax cross-entropy.
 *
 * Memory (llm.c style): one parameter buffer with named views (fc1.weight,
 * fc1.bias, fc2.weight, …), one gradient buffer with the same layout, one
 * optimizer-state buffer (SGD: momentum; Adam: m then v). Activations live in
 * per-layer buffers sized for one batch.
 *
 * Data position: batches are consecutive slices of the endless sequence
 * epoch0-order ‖ epoch1-order ‖ …, so the position after `step` steps is
 * step·batch, from which the epoch and offset follow. A checkpoint therefore
 * only needs the step to continue exactly.
 *
 * Not here: checkpoint files (checkpoint.c), suites, processes, reports.
 */
#include "train_internal.h"

#include <math.h>
#include <string.h>

static size_t layer_w(const sb_trainer *t, int l) { /* weight elements of layer l (0-based) */
    return (size_t)t->cfg.model.widths[l + 1] * (size_t)t->cfg.model.widths[l];
}

sb_trainer *sb_trainer_new(const sb_run_config *c, sb_error *err) {
    if (sb_run_config_validate(c, err) != SB_OK) return NULL;
    sb_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        sb_error_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->cfg = *c;
    sb_backend_config bc = {.mode = c->mode, .threads = c->threads, .perturb = c->perturb};
    t->be = sb_backend_new(c->backend, &bc, err);
    if (!t->be) goto fail;
    t->data = sb_dataset_new(&c->data, c->seed, err);
    if (!t->data) goto fail;

    /* ---- parameter table ---- */
    int L = c->model.n_widths - 1;
    t->n_layers = L;
    t->n_params = 2 * L;
    size_t off = 0;
    for (int l = 0; l < L; l++) {
        sb_param *w = &t->params[2 * l], *b = &t->params[2 * l + 1];
        snprintf(w->name, sizeof w->name, "fc%d.weight", l + 1);
        snprintf(b->name, sizeof b->name, "fc%d.bias", l + 1);
        w->ndim = 2;
        w->shape[0] = c->model.widths[l + 1];
        w->shape[1] = c->model.widths[l];
        w->offset = off;
        w->numel = layer_w(t, l);
        off += w->numel;
        b->ndim = 1;
        b->shape[0] = c->model.widths[l + 1];
        b->offset = off;
        b->numel = (size_t)c->model.widths[l + 1];
        off += b->numel;
    }
    t->total = off;
    t->n_slots = strcmp(c->optim.name, "adam") == 0 ? 2 : 1;

    sb_backend *be = t->be;
    t->param = be->i->alloc(be, t->total * sizeof(float));
    t->grad = be->i->alloc(be, t->total * sizeof(float));
    t->state = be->i->alloc(be, (size_t)t->n_slots * t->total * sizeof(float));
    int B = c->batch, maxw = 0;
    for (int l = 0; l < c->model.n_widths; l++)
        if (c->model.widths[l] > maxw) maxw = c->model.widths[l];
    for (int l = 0; l <= L; l++) {
        /* act[0] is the input batch; act[l] (l ≥ 1) is the activation after
         * layer l (for the last layer: the softmax probabilities);
         * pre[l] is layer l's pre-activation z (l ≥ 1). */
        t->act[l] = be->i->alloc(be, (size_t)B * c->model.widths[l] * sizeof(float));
        if (l > 0) t->pre[l] = be->i->alloc(be, (size_t)B * c->model.widths[l] * sizeof(float));
        if (!t->act[l] || (l > 0 && !t->pre[l])) goto nomem;
    }
    t->dz = be->i->alloc(be, (size_t)B * maxw * sizeof(float));
    t->da = be->i->alloc(be, (size_t)B * maxw * sizeof(float));
    t->labels = be->i->alloc(be, (size_t)B * sizeof(int32_t));
    t->loss = be->i->alloc(be, sizeof(float));
    t->host_x = malloc((size_t)B * c->data.features * sizeof(float));
    t->host_y = malloc((size_t)B * sizeof(int32_t));
    t->order = malloc((size_t)c->data.samples * sizeof(int32_t));
    float *host = malloc(t->total * sizeof(float));
    if (!t->param || !t->grad || !t->state || !t->dz || !t->da || !t->labels || !t->loss ||
        !t->host_x || !t->host_y || !t->order || !host) {
        free(host);
        goto nomem;
    }
    t->order_epoch = -1;

    /* ---- init: each tensor from its own stream "init/<name>", uniform in
     * ±1/sqrt(fan_in) (PyTorch's nn.Linear default bound) ---- */
    for (int p = 0; p < t->n_params; p++) {
        sb_param *pp = &t->params[p];
        int fan_in = c->model.widths[p / 2];
        float bound = 1.0f / sqrtf((float)fan_in);
        sb_rng r;
        char purpose[80];
        snprintf(purpose, sizeof purpose, "init/%s", pp->name);
        sb_rng_init(&r, c->seed, purpose, 0);
        for (size_t i = 0; i < pp->numel; i++)
            host[pp->offset + i] = (2.0f * sb_rng_uniform(&r) - 1.0f) * bound;
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
    sb_backend *be = t->be;
    if (be) {
        be->i->free(be, t->param);
        be->i->free(be, t->grad);
        be->i->free(be, t->state);
        for (int l = 0; l <= SB_MAX_LAYERS; l++) {
            be->i->free(be, t->act[l]);
            be->i->free(be, t->pre[l]);
        }
        be->i->free(be, t->dz);
        be->i->free(be, t->da);
        be->i->free(be, t->labels);
        be->i->free(be, t->loss);
    }
    sb_backend_free(be);
    sb_dataset_free(t->data);
    free(t->host_x);
    free(t->host_y);
    free(t->order);
    free(t);
}

/* Fills host_x/host_y with the next batch and advances the data position. */
static void next_batch(sb_trainer *t) {
    const sb_run_config *c = &t->cfg;
    int F = c->data.features, N = c->data.samples;
    for (int b = 0; b < c->batch; b++) {
        uint64_t pos = (uint64_t)t->step * (uint64_t)c->batch + (uint64_t)b;
        int epoch = (int)(pos / (uint64_t)N);
        int idx = (int)(pos % (uint64_t)N);
        if (epoch != t->order_epoch) {
            sb_epoch_order(&c->data, c->seed, epoch, t->order);
            t->order_epoch = epoch;
        }
        int s = t->order[idx];
        memcpy(t->host_x + (size_t)b * F, t->data->x + (size_t)s * F, (size_t)F * sizeof(float));
        t->host_y[b] = t->data->y[s];
    }
}

sb_status sb_trainer_step(sb_trainer *t, float *loss_out, sb_error *err) {
    const sb_run_config *c = &t->cfg;
    sb_backend *be = t->be;
    const sb_backend_i *k = be->i;
    const int *w = c->model.widths;
    int B = c->batch, L = t->n_layers;

    next_batch(t);
    k->upload(be, t->act[0], t->host_x, (size_t)B * w[0] * sizeof(float));
    k->upload(be, t->labels, t->host_y, (size_t)B * sizeof(int32_t));

    /* ---- forward ---- */
    for (int l = 1; l <= L; l++) {
        const float *W = t->param + t->params[2 * (l - 1)].offset;
        const float *bias = t->param + t->params[2 * (l - 1) + 1].offset;
        /* pre[l][B, w_l] = act[l-1][B, w_{l-1}] · Wᵀ */
        k->gemm(be, 0, 1, B, w[l], w[l - 1], 1.0f, t->act[l - 1], w[l - 1], W, w[l - 1], 0.0f,
                t->pre[l], w[l]);
        k->bias_add(be, t->pre[l], bias, B, w[l]);
        if (l < L) k->act_forward(be, c->model.act, t->act[l], t->pre[l], (size_t)B * w[l]);
    }
    k->xent_forward(be, t->act[L], t->loss, t->pre[L], t->labels, B, w[L]);
    float loss;
    k->download(be, &loss, t->loss, sizeof loss);
    if (!isfinite(loss))
        return sb_error_set(err, SB_ERR_RUN, "step %d: loss is %s", t->step + 1,
                            isnan(loss) ? "NaN" : "infinite");

    /* ---- backward ---- */
    /* Each weight gradient is written once per step by a GEMM with beta = 0,
     * so only the bias gradients (which bias_grad adds into) need zeroing —
     * this spares clearing the whole gradient buffer every step. */
    for (int l = 1; l <= L; l++)
        k->zero(be, t->grad + t->params[2 * (l - 1) + 1].offset, (size_t)w[l]);
    k->zero(be, t->dz, (size_t)B * w[L]);
    k->xent_backward(be, t->dz, t->act[L], t->labels, B, w[L]);
    for (int l = L; l >= 1; l--) {
        float *dW = t->grad + t->params[2 * (l - 1)].offset;
        float *db = t->grad + t->params[2 * (l - 1) + 1].offset;
        const float *W = t->param + t->params[2 * (l - 1)].offset;
        /* dW[w_l, w_{l-1}] = dzᵀ · act[l-1] */
        k->gemm(be, 1, 0, w[l], w[l - 1], B, 1.0f, t->dz, w[l], t->act[l - 1], w[l - 1], 0.0f,
                dW, w[l - 1]);
        k->bias_grad(be, db, t->dz, B, w[l]);
        if (l > 1) {
            /* da[B, w_{l-1}] = dz · W, then dz ← da ⊙ f'(pre[l-1]) */
            k->gemm(be, 0, 0, B, w[l - 1], w[l], 1.0f, t->dz, w[l], W, w[l - 1], 0.0f, t->da,
                    w[l - 1]);
            k->zero(be, t->dz, (size_t)B * w[l - 1]);
            k->act_backward(be, c->model.act, t->dz, t->da, t->pre[l - 1], (size_t)B * w[l - 1]);
        }
    }

    /* ---- optimizer (one call over the whole parameter buffer) ---- */
    const sb_optim_config *o = &c->optim;
    if (t->n_slots == 2)
        k->adam_update(be, t->param, t->state, t->state + t->total, t->grad, t->total, o->lr,
                       o->beta1, o->beta2, o->eps, o->weight_decay, t->step + 1);
    else
        k->sgd_update(be, t->param, t->state, t->grad, t->total, o->lr, o->momentum,
                      o->weight_decay);
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
