/* engine.h — the public face of the engine: Philox RNG streams, the synthetic
 * dataset and data pipeline, the MLP, optimizers, the training loop and
 * checkpoints. The harness includes only this header (and safetensors.h).
 *
 * The engine knows nothing of suites, matrices, diffs or reports: it is given
 * one fully resolved sb_run_config and trains.
 */
#ifndef SB_ENGINE_H
#define SB_ENGINE_H

#include "../kernels/kernels.h"
#include "safetensors.h"

/* ======================================================================
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11; the Random123 reference) and named streams.
 * ==================================================================== */

/* One block: out = Philox4x32-10(ctr, key). */
void sb_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A stream is a counter subspace: key = the 64-bit seed; ctr[2..3] = a 64-bit
 * FNV-1a hash of "purpose/index" (e.g. "init/fc1.weight", "data/shuffle/epoch3"
 * with index 0); ctr[0..1] = the block number. Changing one stream never
 * shifts another; the numbers do not depend on backend or thread count. */
typedef struct sb_rng {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t buf[4];
    int avail; /* unread words left in buf (taken from buf[4-avail]) */
} sb_rng;

void sb_rng_init(sb_rng *r, uint64_t seed, const char *purpose, uint64_t index);
uint32_t sb_rng_u32(sb_rng *r);
float sb_rng_uniform(sb_rng *r);            /* [0, 1), 24 random bits */
double sb_rng_uniform_double(sb_rng *r);    /* [0, 1), 53 random bits */
float sb_rng_normal(sb_rng *r);             /* N(0,1) by Box–Muller in double */
uint32_t sb_rng_below(sb_rng *r, uint32_t n); /* uniform in [0, n), unbiased; n >= 1 */

/* ======================================================================
 * Run configuration (filled by the harness from a suite).
 * ==================================================================== */

#define SB_MAX_LAYERS 8
#define SB_MAX_BLOCKS 4 /* transformer blocks */

typedef enum sb_pool { SB_POOL_MAX = 0, SB_POOL_AVG = 1 } sb_pool;

typedef struct sb_model_config {
    char kind[16];                  /* "mlp", "cnn", "rnn" or "transformer" */
    /* mlp: */
    int n_widths;                   /* widths[0] = input features, last = classes */
    int widths[SB_MAX_LAYERS + 1];
    sb_act act;                     /* mlp: after every hidden layer; cnn: after each conv */
    float dropout;                  /* inverted dropout after every hidden activation; 0 = none */
    /* cnn (engine/cnn.c): conv1 → act → pool1 → conv2 → act → pool2 → fc, on
     * the data's [channels, height, width] images. Convs: stride 1, zero
     * padding kernel/2; pools: 2×2, stride 2; fc maps the flattened pool2
     * output to data.classes. */
    int channels[2];                /* output channels of conv1, conv2 */
    int kernel;                     /* odd, square */
    sb_pool pool;
    /* the sequence models read token data (data.kind "chars"): sequences of
     * T = data.features - 1 input tokens from a vocabulary of V =
     * data.classes; the target of position t is token t + 1.
     * rnn (engine/rnn.c): Embedding(V, embed) → GRU(embed, hidden), h0 = 0 →
     * Linear(hidden, V) at every position → softmax cross-entropy (mean over
     * batch·T positions). */
    int embed, hidden;
    /* transformer (engine/transformer.c): token + position embedding
     * (d_model) → `layers` pre-norm blocks (x + attn(ln1(x)), x + mlp(ln2(x)),
     * causal multi-head attention with `heads` heads, a GELU MLP of width
     * mlp) → final layer norm → output projection to V, tied to the token
     * embedding when `tied` → softmax cross-entropy over batch·T positions. */
    int d_model, heads, layers, mlp, tied;
} sb_model_config;

typedef enum sb_shuffle { SB_SHUFFLE_NONE = 0, SB_SHUFFLE_ONCE = 1, SB_SHUFFLE_EPOCH = 2 } sb_shuffle;

typedef struct sb_data_config {
    char kind[16];      /* "blobs" (Gaussian blobs), "spirals", "shapes" (images),
                         * "chars" (token sequences), or a file format: "idx",
                         * "csv", "npy" (datafile.c). chars: sample i is T+1
                         * token ids (exact small integers stored as floats,
                         * features = T+1) cut from one corpus, classes = the
                         * vocabulary size, label = the last token. */
    int samples, features, classes; /* for file formats: what the files hold */
    float noise;        /* blobs: cluster std-dev; spirals: jitter; shapes: pixel noise */
    /* "shapes" (images, features = channels·height·width): channels 1 or 3,
     * 0 for vector data */
    int channels, height, width;
    sb_shuffle shuffle; /* none, once (one permutation for all epochs), epoch */
    /* per-sample augmentation (stream "data/augment", index = the sample's
     * position in the run's sample sequence): x += aug_noise·N(0,1), then each
     * feature is zeroed with probability aug_feature_drop */
    float aug_noise, aug_feature_drop;
    /* images only, drawn before the noise: flip horizontally with probability
     * aug_flip, then shift by (dy, dx) uniform in [-aug_shift, aug_shift]²
     * with zero fill */
    float aug_flip;
    int aug_shift;
    /* parallel loader: `loader_workers` threads (0 = none, the trainer's own
     * thread) each prepare whole batches; loader_completion = 1 hands batches
     * to the trainer in the order workers finish them (the classic
     * nondeterministic loader), 0 in step order */
    int loader_workers, loader_completion;
    /* file formats (absolute paths, so a run started elsewhere finds them):
     * idx, npy: x_path = features, y_path = labels; csv: x_path = the table,
     * its label column by name (label_name, needs csv_header) or by 0-based
     * index (label_column; negative counts from the end, -1 = the last).
     * Every feature is multiplied by scale unless it is 1 (e.g. 1/255). */
    char x_path[512], y_path[512];
    char label_name[64];
    int label_column, csv_header;
    float scale;
} sb_data_config;

/* RNG streams a suite may leave unseeded (drawn from OS entropy), to
 * reproduce the classic mistakes. Bit flags for sb_run_config.unseeded. */
enum {
    SB_UNSEEDED_INIT = 1u << 0,      /* "init": parameter initialisation */
    SB_UNSEEDED_SOURCE = 1u << 1,    /* "data/source": the synthetic dataset */
    SB_UNSEEDED_SHUFFLE = 1u << 2,   /* "data/shuffle": every epoch's order */
    SB_UNSEEDED_RESHUFFLE = 1u << 3, /* "data/reshuffle": epochs after the first only */
    SB_UNSEEDED_AUGMENT = 1u << 4,   /* "data/augment" */
    SB_UNSEEDED_DROPOUT = 1u << 5,   /* "dropout" */
    SB_UNSEEDED_COUNT = 6
};
const char *sb_unseeded_name(int bit_index); /* "init", "data/source", … */
int sb_unseeded_parse(const char *name, uint32_t *bit); /* 0 ok, -1 unknown */

typedef struct sb_optim_config {
    char name[8];       /* "sgd" or "adam" */
    float lr, momentum, beta1, beta2, eps, weight_decay;
} sb_optim_config;

typedef struct sb_run_config {
    sb_model_config model;
    sb_data_config data;
    sb_optim_config optim;
    int steps, batch;
    uint64_t seed;
    char backend[16];
    sb_mode mode;
    int threads;
    int perturb;        /* order-perturbation test switch */
    uint32_t unseeded;  /* SB_UNSEEDED_* streams drawn from OS entropy */
    int trace;          /* write trace records (sb_trainer_trace_open); default on */
    int recheck;        /* run every op twice on the same inputs; flag those that differ */
} sb_run_config;

/* Checks ranges and consistency (widths vs features/classes, batch <= samples,
 * ...). Returns SB_OK or SB_ERR_ARG with a message naming the field. */
sb_status sb_run_config_validate(const sb_run_config *c, sb_error *err);

/* ======================================================================
 * Dataset and pipeline.
 * ==================================================================== */

typedef struct sb_dataset {
    int samples, features, classes;
    float *x;        /* host [samples, features] */
    int32_t *y;      /* host [samples] */
} sb_dataset;

/* Generates the synthetic dataset from stream "data/source" of the seed. */
sb_dataset *sb_dataset_new(const sb_data_config *c, uint64_t seed, sb_error *err);
void sb_dataset_free(sb_dataset *d);

/* ---- real data files (datafile.c) ----
 * Readers for IDX (magic 00 00 TYPE NDIM, big-endian u32 dims, big-endian
 * data; x = N×…, y = N labels), NumPy .npy (versions 1.0–3.0, descr i1..i8,
 * u1..u8, b1, f4, f8 either byte order, C or Fortran order; x = N×…
 * flattened per sample, y = 1-D) and CSV (one sample per row, optional
 * header, numbers only). classes > 0: every label must be in [0, classes);
 * 0: inferred as max + 1 (at most 1000). Features are float, times scale
 * when scale != 1, and must be finite. NULL on failure with one line naming
 * the file and the place: SB_ERR_FORMAT (malformed), SB_ERR_IO (unreadable),
 * SB_ERR_NOMEM. Free with sb_dataset_free. */
sb_dataset *sb_dataset_read_idx(const char *x_path, const char *y_path, float scale, int classes,
                                sb_error *err);
sb_dataset *sb_dataset_read_npy(const char *x_path, const char *y_path, float scale, int classes,
                                sb_error *err);
sb_dataset *sb_dataset_read_csv(const char *path, int header, int label_column,
                                const char *label_name, float scale, int classes, sb_error *err);
/* The reader c->kind names, with c's paths and options. */
sb_dataset *sb_dataset_read(const sb_data_config *c, int classes, sb_error *err);
int sb_data_kind_is_file(const char *kind); /* "idx", "csv", "npy" */

/* The order in which epoch `epoch` visits the samples (a permutation of
 * [0, samples)), from stream "data/shuffle" index epoch (SB_SHUFFLE_EPOCH), index
 * 0 (ONCE), or identity (NONE). Fisher–Yates. */
void sb_epoch_order(const sb_data_config *c, uint64_t seed, int epoch, int32_t *order);

/* The shapes dataset (data.c): class k of `classes` (<= SB_SHAPES_MAX) is a
 * shape — filled square, disk, triangle, plus, horizontal bar, vertical bar,
 * ring, frame, X, diagonal — drawn at a random size and position. */
#define SB_SHAPES_MAX 10
const char *sb_shape_name(int k);

/* The chars corpus (data.c): a seeded stream of text over a vocabulary of V
 * symbols (2 <= V <= SB_CHARS_MAX_VOCAB; id 0 is the word separator, shown as
 * ' '). Words come from a lexicon drawn from the seed and follow each other by
 * a first-order chain, so the text has structure a small model can learn.
 * sb_chars_symbol maps an id to the character it stands for (' ', 'a'..'z',
 * 'A'..'Z', '0'..'9', then '#'). */
#define SB_CHARS_MAX_VOCAB 64
char sb_chars_symbol(int id);

/* ======================================================================
 * Trainer: model + optimizer + data position on one backend.
 * ==================================================================== */

typedef struct sb_trainer sb_trainer;

/* Builds backend, data and model and initialises parameters from streams
 * "init/<param name>". NULL on failure with err filled. */
sb_trainer *sb_trainer_new(const sb_run_config *c, sb_error *err);
void sb_trainer_free(sb_trainer *t);

/* One optimizer step on the next batch. *loss gets the batch's mean loss.
 * Fails with SB_ERR_RUN when the loss is not finite. */
sb_status sb_trainer_step(sb_trainer *t, float *loss, sb_error *err);
int sb_trainer_steps_done(const sb_trainer *t);

/* Parameter table (llm.c's malloc_and_point_parameters): one contiguous
 * buffer, named views. */
int sb_trainer_n_params(const sb_trainer *t);
const char *sb_trainer_param_name(const sb_trainer *t, int i);
/* copies parameter i (or all parameters when i < 0) to host memory; returns
 * the element count */
size_t sb_trainer_param_numel(const sb_trainer *t, int i);
void sb_trainer_param_download(const sb_trainer *t, int i, float *host);

/* Writes a checkpoint (safetensors): parameters under their names
 * ("fc1.weight" …), optimizer state under "optim.<slot>.<name>" (slots
 * "momentum" for SGD, "m" and "v" for Adam), and __metadata__ holding
 * "samebits.format" = "checkpoint/1", "samebits.step", "samebits.epoch",
 * "samebits.position" (index within the epoch order), "samebits.config" (the
 * run config as JSON) plus the caller's extra pairs. Atomic; refuses to
 * overwrite unless `overwrite`. */
sb_status sb_trainer_save(const sb_trainer *t, const char *path, int overwrite,
                          int n_extra, const char *const *extra_keys,
                          const char *const *extra_vals, sb_error *err);

/* ---- tracing (engine/trace.h) ----
 * Opens a trace file and emits the step-0 records of the current state (the
 * dataset, the parameters). From then on every step emits one record per
 * stage/op. Close writes the footer (run_json: any JSON object describing the
 * run) and renames the file into place. */
sb_status sb_trainer_trace_open(sb_trainer *t, const char *path, sb_error *err);
sb_status sb_trainer_trace_close(sb_trainer *t, const char *run_json, sb_error *err);
/* The entropy-drawn seeds of the unseeded streams, as JSON: [{"stream":
 * "data/shuffle", "entropy_seed": "123…"}, …] (caller frees). */
char *sb_trainer_unseeded_json(const sb_trainer *t);
/* Ops flagged by recheck so far (count of records with the flag). */
int sb_trainer_recheck_flags(const sb_trainer *t);
/* Bytes tracing has hashed so far (outputs digested, inputs whose hash was
 * not cached): what the trace's cost scales with (samebits bench --trace). */
uint64_t sb_trainer_hashed_bytes(const sb_trainer *t);

/* The batches steps first_step .. first_step+n_steps-1 train on, after the
 * whole pipeline (gather in epoch order, shuffle, augmentation): x [n_steps,
 * batch, features], y [n_steps, batch], caller-allocated. Uses the same
 * batch code as sb_trainer_step, in step order (a loader in completion order
 * hands the same batches out in another order). Does not move the trainer. */
sb_status sb_trainer_export_batches(const sb_trainer *t, int first_step, int n_steps, float *x,
                                    int32_t *y, sb_error *err);

/* Restores parameters, optimizer state and data position from a checkpoint
 * written by sb_trainer_save for the same model/optimizer shape. Continuing
 * from a restored trainer equals never having stopped, bitwise. */
sb_status sb_trainer_restore(sb_trainer *t, const char *path, sb_error *err);

/* The run config as a compact JSON object (caller frees), as stored in
 * checkpoint metadata and run.json. */
char *sb_run_config_to_json(const sb_run_config *c);

#endif /* SB_ENGINE_H */
