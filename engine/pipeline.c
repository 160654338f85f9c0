/* pipeline.c — the data pipeline after the source: which seed each RNG stream
 * uses, batch preparation (gather in epoch order, per-sample augmentation)
 * and the parallel loader.
 *
 * Batches are consecutive slices of the endless sequence epoch0-order ‖
 * epoch1-order ‖ …; batch s holds positions s·B … s·B+B-1. Augmenting sample
 * position p draws from stream "data/augment" index p, so the same sample
 * gets fresh noise in every epoch and the numbers do not depend on which
 * thread prepares the batch.
 *
 * The loader: with W workers, steps are taken in groups of W. For each group
 * W threads each gather one batch; with completion order the batches are
 * handed to the trainer in the order the workers finished them (a real race,
 * like a multi-worker data loader that yields whatever is ready), otherwise
 * in step order. With the perturb test aid the hand-out order of each group
 * is permuted from OS entropy, so a difference is guaranteed.
 *
 * sb_trainer_export_batches replays the same code for `samebits data
 * export`, so what is exported is what training sees.
 *
 * Not here: the model, tracing.
 */
#include "train_internal.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>

uint64_t sb_stream_seed(const sb_trainer *t, uint32_t flag, int epoch) {
    uint32_t un = t->cfg.unseeded;
    int bit = -1;
    if (un & flag) {
        for (int i = 0; i < SB_UNSEEDED_COUNT; i++)
            if (flag == (1u << i)) bit = i;
    } else if (flag == SB_UNSEEDED_SHUFFLE && (un & SB_UNSEEDED_RESHUFFLE) && epoch >= 1) {
        /* the classic "first epoch matches": later epochs reshuffle unseeded */
        for (int i = 0; i < SB_UNSEEDED_COUNT; i++)
            if (SB_UNSEEDED_RESHUFFLE == (1u << i)) bit = i;
    }
    if (bit < 0) return t->cfg.seed;
    return t->recheck_pass ? t->entropy2[bit] : t->entropy[bit];
}

int sb_batch_alloc(sb_batch *b, int batch, int features) {
    size_t n = (size_t)batch * (size_t)features;
    b->raw = malloc(n * sizeof(float));
    b->x = malloc(n * sizeof(float));
    b->y = malloc((size_t)batch * sizeof(int32_t));
    b->step = -1;
    return b->raw && b->x && b->y ? 0 : -1;
}

void sb_batch_free(sb_batch *b) {
    free(b->raw);
    free(b->x);
    free(b->y);
    b->raw = b->x = NULL;
    b->y = NULL;
}

/* Gathers batch `step` into b->raw and b->y; `order`/`order_epoch` are the
 * caller's cache of the current epoch order (so concurrent callers each pass
 * their own). */
void sb_prepare_batch(const sb_trainer *t, int step, sb_batch *b, int32_t *order,
                      int *order_epoch) {
    const sb_run_config *c = &t->cfg;
    int F = c->data.features, N = c->data.samples;
    for (int i = 0; i < c->batch; i++) {
        uint64_t pos = (uint64_t)step * (uint64_t)c->batch + (uint64_t)i;
        int epoch = (int)(pos / (uint64_t)N);
        int idx = (int)(pos % (uint64_t)N);
        if (epoch != *order_epoch) {
            sb_epoch_order(&c->data, sb_stream_seed(t, SB_UNSEEDED_SHUFFLE, epoch), epoch, order);
            *order_epoch = epoch;
        }
        int s = order[idx];
        memcpy(b->raw + (size_t)i * F, t->data->x + (size_t)s * F, (size_t)F * sizeof(float));
        b->y[i] = t->data->y[s];
    }
    b->step = step;
}

/* Images: x = raw flipped horizontally (when a uniform draw < aug_flip), then
 * shifted by (dy, dx), each uniform in [-aug_shift, aug_shift] (dy drawn
 * first), zeros where the shift uncovers pixels. Each draw is made only when
 * its setting is on, so vector data draws exactly what it did before. */
static void augment_geometry(const sb_data_config *d, sb_rng *r, const float *raw, float *x) {
    int C = d->channels, H = d->height, W = d->width;
    int flip = d->aug_flip > 0.0f && sb_rng_uniform(r) < d->aug_flip, dy = 0, dx = 0;
    if (d->aug_shift > 0) {
        uint32_t span = 2u * (uint32_t)d->aug_shift + 1u;
        dy = (int)sb_rng_below(r, span) - d->aug_shift;
        dx = (int)sb_rng_below(r, span) - d->aug_shift;
    }
    for (int ch = 0; ch < C; ch++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                int sy = y - dy, sx = xx - dx;
                float v = 0.0f;
                if (sy >= 0 && sy < H && sx >= 0 && sx < W)
                    v = raw[((size_t)ch * H + sy) * W + (flip ? W - 1 - sx : sx)];
                x[((size_t)ch * H + y) * W + xx] = v;
            }
}

/* Per-sample augmentation: sample position p draws from stream "data/augment"
 * index p: for images flip and shift first (augment_geometry), then x = x +
 * aug_noise·N(0,1), then each feature is zeroed with probability
 * aug_feature_drop. */
void sb_augment_batch(const sb_trainer *t, sb_batch *b) {
    const sb_run_config *c = &t->cfg;
    int F = c->data.features, N = c->data.samples;
    int geometric = c->data.height > 0 && (c->data.aug_flip > 0.0f || c->data.aug_shift > 0);
    for (int i = 0; i < c->batch; i++) {
        uint64_t pos = (uint64_t)b->step * (uint64_t)c->batch + (uint64_t)i;
        int epoch = (int)(pos / (uint64_t)N);
        const float *raw = b->raw + (size_t)i * F;
        float *x = b->x + (size_t)i * F;
        sb_rng r;
        sb_rng_init(&r, sb_stream_seed(t, SB_UNSEEDED_AUGMENT, epoch), "data/augment", pos);
        if (geometric) {
            augment_geometry(&c->data, &r, raw, x);
            raw = x; /* noise and drop below read the moved pixels, in place */
        }
        for (int f = 0; f < F; f++) {
            float v = raw[f];
            if (c->data.aug_noise > 0.0f) v = v + c->data.aug_noise * sb_rng_normal(&r);
            if (c->data.aug_feature_drop > 0.0f && sb_rng_uniform(&r) < c->data.aug_feature_drop)
                v = 0.0f;
            x[f] = v;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* the parallel loader                                                     */
/* ---------------------------------------------------------------------- */

typedef struct loader_slot {
    sb_batch b;
    int32_t *order;
    int order_epoch;
} loader_slot;

struct sb_loader {
    sb_trainer *t;
    int workers;
    loader_slot *slots;      /* [workers] */
    int *handout;            /* [workers]: slot index for the k-th step of the group */
    int finished;            /* completion tickets taken (atomic) */
    int group_first;         /* first step of the prepared group, -1 none */
    int group_len;
    uint64_t perturb_state;
};

typedef struct worker_arg {
    sb_loader *l;
    int w;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *a = p;
    sb_loader *l = a->l;
    loader_slot *s = &l->slots[a->w];
    sb_prepare_batch(l->t, l->group_first + a->w, &s->b, s->order, &s->order_epoch);
    /* completion order: take the next ticket as this batch is done */
    int ticket = __atomic_fetch_add(&l->finished, 1, __ATOMIC_ACQ_REL);
    if (l->t->cfg.data.loader_completion) l->handout[ticket] = a->w;
    return NULL;
}

static void prepare_group(sb_loader *l, int first) {
    const sb_run_config *c = &l->t->cfg;
    int n = l->workers;
    if (first + n > c->steps) n = c->steps - first;
    if (n < 1) n = 1;
    l->group_first = first;
    l->group_len = n;
    l->finished = 0;
    pthread_t tid[64];
    worker_arg args[64];
    int started[64];
    for (int w = 0; w < n; w++) l->handout[w] = w; /* before any worker can take a ticket */
    for (int w = 0; w < n; w++) {
        args[w].l = l;
        args[w].w = w;
        started[w] = pthread_create(&tid[w], NULL, worker_main, &args[w]) == 0;
        if (!started[w]) worker_main(&args[w]); /* no thread: prepare it here, still correct */
    }
    for (int w = 0; w < n; w++)
        if (started[w]) pthread_join(tid[w], NULL);
    if (c->data.loader_completion && c->perturb) {
        /* test aid: permute the hand-out order (Fisher–Yates, OS entropy) */
        for (int i = n - 1; i > 0; i--) {
            uint64_t x = l->perturb_state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            l->perturb_state = x;
            int j = (int)(x % (uint64_t)(i + 1));
            int tmp = l->handout[i];
            l->handout[i] = l->handout[j];
            l->handout[j] = tmp;
        }
    }
}

sb_status sb_loader_new(sb_trainer *t, sb_error *err) {
    int W = t->cfg.data.loader_workers;
    if (W <= 0) return SB_OK;
    if (W > 64) return sb_error_set(err, SB_ERR_ARG, "data.loader.workers: at most 64");
    sb_loader *l = calloc(1, sizeof *l);
    if (!l) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    l->t = t;
    l->workers = W;
    l->group_first = -1;
    l->slots = calloc((size_t)W, sizeof *l->slots);
    l->handout = calloc((size_t)W, sizeof *l->handout);
    if (!l->slots || !l->handout) goto nomem;
    for (int w = 0; w < W; w++) {
        if (sb_batch_alloc(&l->slots[w].b, t->cfg.batch, t->cfg.data.features) != 0) goto nomem;
        l->slots[w].order = malloc((size_t)t->cfg.data.samples * sizeof(int32_t));
        if (!l->slots[w].order) goto nomem;
        l->slots[w].order_epoch = -1;
    }
    if (getrandom(&l->perturb_state, sizeof l->perturb_state, 0) != sizeof l->perturb_state ||
        l->perturb_state == 0)
        l->perturb_state = 0x9E3779B97F4A7C15ull;
    t->loader = l;
    return SB_OK;
nomem:
    t->loader = l;
    sb_loader_free(l);
    t->loader = NULL;
    return sb_error_set(err, SB_ERR_NOMEM, "out of memory for the loader");
}

void sb_loader_free(sb_loader *l) {
    if (!l) return;
    if (l->slots)
        for (int w = 0; w < l->workers; w++) {
            sb_batch_free(&l->slots[w].b);
            free(l->slots[w].order);
        }
    free(l->slots);
    free(l->handout);
    free(l);
}

void sb_loader_next(sb_trainer *t) {
    sb_loader *l = t->loader;
    int s = t->step;
    if (!l) {
        sb_prepare_batch(t, s, &t->cur, t->border, &t->border_epoch);
        return;
    }
    if (l->group_first < 0 || s < l->group_first || s >= l->group_first + l->group_len)
        prepare_group(l, s);
    int k = s - l->group_first;
    const sb_batch *src = &l->slots[l->handout[k]].b;
    size_t n = (size_t)t->cfg.batch * (size_t)t->cfg.data.features;
    memcpy(t->cur.raw, src->raw, n * sizeof(float));
    memcpy(t->cur.y, src->y, (size_t)t->cfg.batch * sizeof(int32_t));
    t->cur.step = src->step;
}

/* ---------------------------------------------------------------------- */
/* export: the batches a run trains on                                    */
/* ---------------------------------------------------------------------- */

sb_status sb_trainer_export_batches(const sb_trainer *t, int first_step, int n_steps, float *x,
                                    int32_t *y, sb_error *err) {
    const sb_run_config *c = &t->cfg;
    size_t per = (size_t)c->batch * (size_t)c->data.features;
    sb_batch b;
    memset(&b, 0, sizeof b);
    int32_t *order = malloc((size_t)c->data.samples * sizeof(int32_t));
    int order_epoch = -1;
    if (!order || sb_batch_alloc(&b, c->batch, c->data.features) != 0) {
        free(order);
        sb_batch_free(&b);
        return sb_error_set(err, SB_ERR_NOMEM, "out of memory for a batch");
    }
    for (int s = 0; s < n_steps; s++) {
        /* what sb_loader_next and the data/augment op do for this step */
        sb_prepare_batch(t, first_step + s, &b, order, &order_epoch);
        sb_augment_batch(t, &b); /* without augmentation x = raw, bit for bit */
        memcpy(x + (size_t)s * per, b.x, per * sizeof(float));
        memcpy(y + (size_t)s * (size_t)c->batch, b.y, (size_t)c->batch * sizeof(int32_t));
    }
    free(order);
    sb_batch_free(&b);
    return SB_OK;
}
