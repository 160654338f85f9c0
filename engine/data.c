/* data.c — the synthetic classification datasets and the per-epoch order.
 *
 * Sources (stream "data/source"):
 *   blobs   — `classes` Gaussian clusters in `features` dimensions: centres
 *             drawn N(0, 3²) per coordinate, samples centre + noise·N(0, 1);
 *             sample i has class i mod classes (balanced).
 *   spirals — `classes` interleaved arms in 2-D: radius t ∈ [0, 1), angle
 *             2πk/classes + 4t + noise·N(0, 1).
 * Shuffle (stream "data/shuffle", DESIGN.md §4): Fisher–Yates over the sample
 * indices; `once` uses index 0 for every epoch, `epoch` uses the epoch number.
 *
 * Files (idx, csv, npy) are read by datafile.c; here only dispatched to.
 *
 * Not here: batching and augmentation (pipeline.c).
 */
#include "engine.h"

#include <math.h>
#include <string.h>

/* A file format: read it, and insist it still holds what the suite saw. */
static sb_dataset *dataset_from_files(const sb_data_config *c, sb_error *err) {
    sb_dataset *d = sb_dataset_read(c, c->classes, err);
    if (d && (d->samples != c->samples || d->features != c->features)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: now holds %d samples of %d features, the run config "
                     "says %d of %d (did the file change?)", c->x_path, d->samples, d->features,
                     c->samples, c->features);
        sb_dataset_free(d);
        return NULL;
    }
    return d;
}

sb_dataset *sb_dataset_new(const sb_data_config *c, uint64_t seed, sb_error *err) {
    if (sb_data_kind_is_file(c->kind)) return dataset_from_files(c, err);
    sb_dataset *d = calloc(1, sizeof *d);
    float *centres = NULL;
    if (!d) goto nomem;
    d->samples = c->samples;
    d->features = c->features;
    d->classes = c->classes;
    d->x = malloc((size_t)c->samples * (size_t)c->features * sizeof(float));
    d->y = malloc((size_t)c->samples * sizeof(int32_t));
    if (!d->x || !d->y) goto nomem;

    sb_rng r;
    sb_rng_init(&r, seed, "data/source", 0);
    if (!strcmp(c->kind, "blobs")) {
        centres = malloc((size_t)c->classes * (size_t)c->features * sizeof(float));
        if (!centres) goto nomem;
        for (size_t i = 0; i < (size_t)c->classes * (size_t)c->features; i++)
            centres[i] = 3.0f * sb_rng_normal(&r);
        for (int i = 0; i < c->samples; i++) {
            int k = i % c->classes;
            d->y[i] = k;
            for (int f = 0; f < c->features; f++) {
                float z = sb_rng_normal(&r);
                d->x[(size_t)i * c->features + f] = centres[(size_t)k * c->features + f] + c->noise * z;
            }
        }
    } else if (!strcmp(c->kind, "spirals")) {
        if (c->features != 2) {
            sb_error_set(err, SB_ERR_ARG, "data.features: spirals are 2-D, got %d", c->features);
            goto fail;
        }
        for (int i = 0; i < c->samples; i++) {
            int k = i % c->classes;
            double t = sb_rng_uniform_double(&r);
            double angle = 6.283185307179586 * k / c->classes + 4.0 * t + c->noise * sb_rng_normal(&r);
            d->y[i] = k;
            d->x[(size_t)i * 2 + 0] = (float)(t * sin(angle));
            d->x[(size_t)i * 2 + 1] = (float)(t * cos(angle));
        }
    } else {
        sb_error_set(err, SB_ERR_ARG, "data.kind: unknown dataset \"%s\"", c->kind);
        goto fail;
    }
    free(centres);
    return d;
nomem:
    sb_error_set(err, SB_ERR_NOMEM, "out of memory building the dataset");
fail:
    free(centres);
    sb_dataset_free(d);
    return NULL;
}

void sb_dataset_free(sb_dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->y);
    free(d);
}

void sb_epoch_order(const sb_data_config *c, uint64_t seed, int epoch, int32_t *order) {
    for (int i = 0; i < c->samples; i++) order[i] = i;
    if (c->shuffle == SB_SHUFFLE_NONE) return;
    sb_rng r;
    sb_rng_init(&r, seed, "data/shuffle", c->shuffle == SB_SHUFFLE_ONCE ? 0 : (uint64_t)epoch);
    /* Fisher–Yates from the end: position i swaps with a uniform j in [0, i]. */
    for (int i = c->samples - 1; i > 0; i--) {
        int j = (int)sb_rng_below(&r, (uint32_t)i + 1);
        int32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}
