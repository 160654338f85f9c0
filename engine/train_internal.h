/* train_internal.h — the trainer's private layout, shared by the engine's
 * training files (train.c, pipeline.c, tracing.c, checkpoint.c) only. Nothing
 * outside engine/ includes this. */
#ifndef SB_TRAIN_INTERNAL_H
#define SB_TRAIN_INTERNAL_H

#include "engine.h"
#include "trace.h"

/* How a parameter starts (each from its own stream "init/<name>"):
 * uniform in ±1/sqrt(fan_in) (PyTorch's Linear, Conv2d and GRU default),
 * normal N(0, init_std²) (embeddings), or constant ones / zeros (norms). */
typedef enum sb_init { SB_INIT_UNIFORM = 0, SB_INIT_NORMAL, SB_INIT_ONES, SB_INIT_ZEROS } sb_init;

/* parameter tensors per model (the transformer: 2 + 12 per block + 3, 53 at 4 blocks) */
#define SB_MAX_PARAMS 64

typedef struct sb_param {
    char name[48];
    int ndim;
    int64_t shape[4];
    sb_init init;
    float init_std;       /* SB_INIT_NORMAL */
    int fan_in;           /* SB_INIT_UNIFORM: bound 1/sqrt(fan_in) */
    size_t offset, numel; /* view into the parameter buffer, in floats */
} sb_param;

/* ---- tracing: a tensor view, its cached hash, and an op's description ---- */
typedef struct sb_view {
    const void *p;
    size_t bytes;
    int is_float;        /* counts toward n_out, stats and stored values */
} sb_view;

#define SB_HASH_CACHE 96
typedef struct sb_hash_entry {
    const void *p;
    size_t bytes;
    sb_hash128 h;
} sb_hash_entry;

#define SB_OP_MAX_IO (2 * SB_MAX_PARAMS) /* the optimizer: every parameter and its gradient */
typedef struct sb_opspec {
    uint32_t id;
    sb_stage stage;
    int n_in, n_out;
    sb_view in[SB_OP_MAX_IO];
    sb_view out[SB_OP_MAX_IO];
    /* written by the op but not part of its record (the optimizer state):
     * recheck saves and restores them like outputs; they are not hashed */
    int n_side;
    sb_view side[2];
} sb_opspec;

/* One prepared batch (host memory). */
typedef struct sb_batch {
    float *raw;          /* [batch, features] gathered, before augmentation */
    float *x;            /* [batch, features] after augmentation (unused without it) */
    int32_t *y;          /* [batch] */
    int step;            /* the 0-based step whose samples these are */
} sb_batch;

typedef struct sb_loader sb_loader; /* pipeline.c */
typedef struct sb_cnn sb_cnn;       /* cnn.c */
typedef struct sb_rnn sb_rnn;       /* rnn.c */
typedef struct sb_tf sb_tf;         /* transformer.c */

struct sb_trainer {
    sb_run_config cfg;
    sb_backend *be;
    sb_dataset *data;
    int n_layers, n_params;
    sb_param params[SB_MAX_PARAMS];
    size_t total;          /* floats in the parameter buffer */
    int n_slots;           /* optimizer state slots: 1 (SGD momentum) or 2 (Adam m, v) */
    float *param, *grad, *state;        /* backend memory */
    float *act[SB_MAX_LAYERS + 1];      /* backend memory, [batch, width]; act[0] = input */
    float *pre[SB_MAX_LAYERS + 1];      /* pre-activations z */
    float *drop[SB_MAX_LAYERS + 1];     /* after dropout (when enabled), else NULL */
    float *mask[SB_MAX_LAYERS + 1];     /* dropout keep-masks, backend memory */
    float *host_mask;                   /* host staging for one mask */
    float *dz, *da, *dd;                /* backend memory, [batch, max width]; dd: after dropout.bwd */
    int32_t *labels;                    /* backend memory, [batch] */
    float *loss;                        /* backend memory, 1 float */
    sb_batch cur;                       /* the batch of the current step (host) */
    int32_t *order;                     /* host: the traced epoch order (data/shuffle's output) */
    int order_epoch;                    /* epoch whose order is in `order`, -1 none */
    int32_t *border;                    /* host: the batcher's own copy of the epoch order */
    int border_epoch;
    int traced_epoch;                   /* last epoch whose shuffle was traced */
    int step;                           /* optimizer steps done */
    sb_loader *loader;                  /* parallel loader, NULL when loader_workers == 0 */
    sb_cnn *cnn;                        /* the CNN's buffers (cnn.c), NULL for the MLP */
    sb_rnn *rnn;                        /* the recurrent net's (rnn.c) */
    sb_tf *tf;                          /* the transformer's (transformer.c) */
    int32_t *tok_in, *tok_tgt;          /* sequence models: backend memory, [batch, T] each */
    int32_t *host_tok;                  /* host staging: ids, targets, then the [batch, T+1] float rows */
    /* the MLP's op names per layer (train.c), made once instead of every step */
    char mlp_op[SB_MAX_LAYERS + 1][9][32];

    /* unseeded streams: the entropy seed each one uses in this run, and a
     * second one for recheck's re-execution (a fresh process would draw anew) */
    uint64_t entropy[SB_UNSEEDED_COUNT], entropy2[SB_UNSEEDED_COUNT];
    int recheck_pass;                   /* 1 while recheck re-executes an op */

    /* tracing */
    sb_trace_writer *tw;
    sb_hash_entry cache[SB_HASH_CACHE];
    int n_cache;
    void *scratch, *scratch2;           /* recheck / values staging */
    size_t scratch_cap;
    int recheck_flags;                  /* records flagged so far */
    uint64_t hashed_bytes;              /* bytes tracing hashed so far */
};

/* pipeline.c: streams, batches, augmentation, the loader */
uint64_t sb_stream_seed(const sb_trainer *t, uint32_t flag, int epoch);
/* gathers batch `step` (raw, y; x untouched) */
void sb_prepare_batch(const sb_trainer *t, int step, sb_batch *b, int32_t *order,
                      int *order_epoch);
/* b->x = augmented b->raw for the positions of batch b->step */
void sb_augment_batch(const sb_trainer *t, sb_batch *b);
sb_status sb_loader_new(sb_trainer *t, sb_error *err);
void sb_loader_free(sb_loader *l);
/* Hands out the batch for the trainer's next step into t->cur. */
void sb_loader_next(sb_trainer *t);
int sb_batch_alloc(sb_batch *b, int batch, int features);
void sb_batch_free(sb_batch *b);

/* train.c: the parts of a step every model shares. sb_step_data runs
 * data/shuffle, data/batch, data/augment and copies the batch into t->act[0]
 * and t->labels; sb_step_optimizer runs sgd/update or adam/update over the
 * whole parameter buffer. */
void sb_step_data(sb_trainer *t);
void sb_step_optimizer(sb_trainer *t);
int sb_augmenting(const sb_run_config *c);
/* Sequence models: the op "data/tokens" (stage data.batch) splits the batch's
 * [batch, T+1] token rows in t->act[0] into t->tok_in (positions 0..T-1) and
 * t->tok_tgt (positions 1..T), int32 [batch, T] each. */
void sb_step_tokens(sb_trainer *t);
/* Fills a parameter table entry at *off (in floats) and advances *off. */
void sb_param_set(sb_param *pp, const char *name, int ndim, const int64_t *shape, sb_init init,
                  int fan_in, float init_std, size_t *off);

/* cnn.c: the CNN. sb_cnn_setup fills the parameter table (names, shapes,
 * offsets, fan_in; t->total) and allocates t->cnn; the trainer then allocates
 * the shared buffers. sb_cnn_step runs the model's ops of one step (after
 * sb_step_data, before sb_step_optimizer) and downloads the loss. */
sb_status sb_cnn_setup(sb_trainer *t, sb_error *err);
void sb_cnn_free(sb_trainer *t);
sb_status sb_cnn_step(sb_trainer *t, float *loss, sb_error *err);

/* rnn.c and transformer.c: the sequence models, the same three entry points
 * as the CNN's. Their step starts with sb_step_tokens. */
sb_status sb_rnn_setup(sb_trainer *t, sb_error *err);
void sb_rnn_free(sb_trainer *t);
sb_status sb_rnn_step(sb_trainer *t, float *loss, sb_error *err);
sb_status sb_tf_setup(sb_trainer *t, sb_error *err);
void sb_tf_free(sb_trainer *t);
sb_status sb_tf_step(sb_trainer *t, float *loss, sb_error *err);

/* tracing.c: op execution with tracing and recheck */
void sb_exec_op(sb_trainer *t, sb_opspec *o, void (*fn)(sb_trainer *, void *), void *arg);
/* Runs fn(t, arg) as the op `name` with these input, output and side-output
 * views (traced and rechecked when enabled; straight through otherwise). */
void sb_run_op(sb_trainer *t, const char *name, sb_stage stage, int n_in, const sb_view *in,
               int n_out, const sb_view *out, int n_side, const sb_view *side,
               void (*fn)(sb_trainer *, void *), void *arg);

/* parameter p's values and gradient: views into the shared buffers */
static inline float *sb_param_data(const sb_trainer *t, int p) {
    return t->param + t->params[p].offset;
}
static inline float *sb_grad_data(const sb_trainer *t, int p) {
    return t->grad + t->params[p].offset;
}

/* views of float / int32 tensors, for op descriptions */
#define SB_F32(ptr, n) ((sb_view){(ptr), (size_t)(n) * sizeof(float), 1})
#define SB_I32(ptr, n) ((sb_view){(ptr), (size_t)(n) * sizeof(int32_t), 0})
void sb_trace_step0(sb_trainer *t);
/* dst now holds a copy of src: it gets src's cached hash (if any). */
void sb_cache_alias(sb_trainer *t, const sb_view *dst, const sb_view *src);
int sb_is_snapshot_step(const sb_trainer *t, int step);

#endif
