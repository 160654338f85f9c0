/* test_cnn.c — the CNN reference model and the shapes dataset: it learns,
 * deterministic runs repeat bitwise on ref and blas (1 and 2 threads),
 * save → restore → continue equals an uninterrupted run, the dataset is a
 * function of the seed with every class present, and image augmentation
 * changes pixels only through stream "data/augment".
 *
 * Not here: the conv and pool kernels themselves (test_kernels_conv.c), the
 * suite parser (test_suite.c), the end-to-end suite (e2e.py).
 */
#include "engine.h"
#include "sb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A small CNN on 1×16×16 shapes, 4 classes, with every image augmentation on. */
static sb_run_config cnn_config(const char *backend, int threads, const char *opt) {
    sb_run_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model.kind, sizeof c.model.kind, "cnn");
    c.model.channels[0] = 4;
    c.model.channels[1] = 8;
    c.model.kernel = 3;
    c.model.pool = SB_POOL_MAX;
    c.model.act = SB_ACT_RELU;
    snprintf(c.data.kind, sizeof c.data.kind, "shapes");
    c.data.samples = 256;
    c.data.classes = 4;
    c.data.channels = 1;
    c.data.height = 16;
    c.data.width = 16;
    c.data.features = 16 * 16;
    c.data.noise = 0.1f;
    c.data.shuffle = SB_SHUFFLE_EPOCH;
    c.data.aug_flip = 0.5f;
    c.data.aug_shift = 2;
    c.data.aug_noise = 0.05f;
    snprintf(c.optim.name, sizeof c.optim.name, "%s", opt);
    c.optim.lr = !strcmp(opt, "adam") ? 0.01f : 0.05f;
    c.optim.momentum = 0.9f;
    c.optim.beta1 = 0.9f;
    c.optim.beta2 = 0.999f;
    c.optim.eps = 1e-8f;
    c.optim.weight_decay = 0.001f;
    c.steps = 40; /* 40 steps × batch 24 = 3.75 epochs: crosses epoch boundaries mid-batch */
    c.batch = 24;
    c.seed = 11;
    snprintf(c.backend, sizeof c.backend, "%s", backend);
    c.mode = SB_MODE_DETERMINISTIC;
    c.threads = threads;
    return c;
}

/* Trains `steps` steps; returns all parameters (caller frees) and their count. */
static float *train_params(const sb_run_config *c, int steps, float *losses, size_t *n_out) {
    sb_error err = {0};
    sb_trainer *t = sb_trainer_new(c, &err);
    if (!t) {
        fprintf(stderr, "trainer: %s\n", err.msg);
        return NULL;
    }
    for (int i = 0; i < steps; i++) {
        float loss;
        if (sb_trainer_step(t, &loss, &err) != SB_OK) {
            fprintf(stderr, "step: %s\n", err.msg);
            sb_trainer_free(t);
            return NULL;
        }
        if (losses) losses[i] = loss;
    }
    size_t n = sb_trainer_param_numel(t, -1);
    float *p = malloc(n * sizeof *p);
    if (p) sb_trainer_param_download(t, -1, p);
    sb_trainer_free(t);
    *n_out = n;
    return p;
}

static int bitwise_equal(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        CHECK(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s: element %zu: %.9g vs %.9g", what, i,
              (double)a[i], (double)b[i]);
    return 0;
}

static int cnn_should_learn_the_shapes(void) {
    sb_run_config c = cnn_config("blas", 1, "adam");
    c.steps = 300;
    float losses[300];
    size_t n = 0;
    float *p = train_params(&c, c.steps, losses, &n);
    CHECK(p, "training failed");
    free(p);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) first += losses[i] / 10.0;
    for (int i = 280; i < 300; i++) last += losses[i] / 20.0;
    /* chance is ln 4 ≈ 1.386; a model that sees the shapes ends far below it
     * (0.18 here, from 1.39); half of chance leaves room for another machine's BLAS */
    double chance = log(4.0);
    CHECK(fabs(first - chance) < 0.3, "first losses %.4f, expected near chance %.4f", first, chance);
    CHECK(last < 0.5 * chance, "mean loss of the last 20 steps %.4f, not below %.4f", last,
          0.5 * chance);
    return 0;
}

static int cnn_deterministic_runs_should_be_bitwise_equal_on_ref_and_blas(void) {
    const char *backends[] = {"ref", "blas"};
    float *ref1 = NULL;
    size_t n_ref = 0;
    for (int b = 0; b < 2; b++)
        for (int th = 1; th <= 2; th++) {
            sb_run_config c = cnn_config(backends[b], th, "adam");
            size_t n1 = 0, n2 = 0;
            float *a = train_params(&c, c.steps, NULL, &n1);
            float *z = train_params(&c, c.steps, NULL, &n2);
            CHECK(a && z && n1 == n2, "training failed");
            char what[64];
            snprintf(what, sizeof what, "%s, %d threads, run 2 vs run 1", backends[b], th);
            int rc = bitwise_equal(a, z, n1, what);
            /* ref computes on one thread whatever the thread count */
            if (!rc && b == 0 && th == 2) rc = bitwise_equal(ref1, a, n1, "ref 2 threads vs 1");
            free(z);
            if (b == 0 && th == 1) {
                ref1 = a;
                n_ref = n1;
            } else {
                free(a);
            }
            if (rc) {
                free(ref1);
                return rc;
            }
        }
    CHECK(n_ref > 0, "no parameters");
    free(ref1);
    return 0;
}

static int cnn_save_restore_continue_should_equal_an_uninterrupted_run(void) {
    const char *backends[] = {"ref", "blas"};
    const char *opts[] = {"sgd", "adam"};
    char dir[] = "/tmp/sb_cnn_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
    for (int b = 0; b < 2; b++)
        for (int o = 0; o < 2; o++) {
            sb_run_config c = cnn_config(backends[b], 2, opts[o]);
            size_t n = 0;
            float *whole = train_params(&c, c.steps, NULL, &n);
            CHECK(whole, "training failed");
            /* 13 steps · 24 = 312 samples: mid-epoch (epoch 1, position 56) */
            sb_error err = {0};
            float loss;
            sb_trainer *t = sb_trainer_new(&c, &err);
            CHECK(t, "%s", err.msg);
            for (int i = 0; i < 13; i++) CHECK(sb_trainer_step(t, &loss, &err) == SB_OK, "%s", err.msg);
            char path[128];
            snprintf(path, sizeof path, "%s/ckpt-%d-%d.safetensors", dir, b, o);
            CHECK(sb_trainer_save(t, path, 0, 0, NULL, NULL, &err) == SB_OK, "%s", err.msg);
            sb_trainer_free(t);
            /* PyTorch's layouts: conv weights [out, in, k, k], fc [classes, features] */
            sb_st_file *f = sb_st_read(path, &err);
            CHECK(f, "%s", err.msg);
            const sb_st_tensor *w1 = sb_st_find(f, "conv1.weight"), *fc = sb_st_find(f, "fc.weight");
            CHECK(w1 && w1->ndim == 4 && w1->shape[0] == 4 && w1->shape[1] == 1 &&
                      w1->shape[2] == 3 && w1->shape[3] == 3,
                  "conv1.weight missing or not [4, 1, 3, 3]");
            CHECK(fc && fc->ndim == 2 && fc->shape[0] == 4 && fc->shape[1] == 8 * 4 * 4,
                  "fc.weight missing or not [4, 128]");
            sb_st_free(f);
            t = sb_trainer_new(&c, &err);
            CHECK(t, "%s", err.msg);
            CHECK(sb_trainer_restore(t, path, &err) == SB_OK, "%s", err.msg);
            for (int i = 13; i < c.steps; i++)
                CHECK(sb_trainer_step(t, &loss, &err) == SB_OK, "%s", err.msg);
            float *resumed = malloc(n * sizeof(float));
            sb_trainer_param_download(t, -1, resumed);
            sb_trainer_free(t);
            char what[64];
            snprintf(what, sizeof what, "%s/%s resumed", backends[b], opts[o]);
            int rc = bitwise_equal(whole, resumed, n, what);
            free(whole);
            free(resumed);
            if (rc) return rc;
            unlink(path);
        }
    rmdir(dir);
    return 0;
}

static int shapes_dataset_should_be_reproducible_and_hold_every_class(void) {
    sb_run_config c = cnn_config("ref", 1, "sgd");
    c.data.classes = SB_SHAPES_MAX;
    for (int colour = 0; colour < 2; colour++) {
        if (colour) { /* 3×32×32 with random colours */
            c.data.channels = 3;
            c.data.height = c.data.width = 32;
            c.data.features = 3 * 32 * 32;
        }
        sb_error err = {0};
        sb_dataset *a = sb_dataset_new(&c.data, 7, &err), *b = sb_dataset_new(&c.data, 7, &err),
                   *o = sb_dataset_new(&c.data, 8, &err);
        CHECK(a && b && o, "dataset: %s", err.msg);
        size_t nx = (size_t)a->samples * a->features;
        int rc = memcmp(a->x, b->x, nx * sizeof(float)) || memcmp(a->y, b->y, a->samples * sizeof(int32_t));
        int other = memcmp(a->x, o->x, nx * sizeof(float)) != 0;
        int count[SB_SHAPES_MAX] = {0};
        int blank = -1;
        for (int i = 0; i < a->samples; i++) {
            if (a->y[i] >= 0 && a->y[i] < SB_SHAPES_MAX) count[a->y[i]]++;
            /* every image holds its shape: some pixel far above the noise (0.1) */
            float mx = 0.0f;
            for (int f = 0; f < a->features; f++)
                if (a->x[(size_t)i * a->features + f] > mx) mx = a->x[(size_t)i * a->features + f];
            if (mx < 0.5f && blank < 0) blank = i;
        }
        sb_dataset_free(a);
        sb_dataset_free(b);
        sb_dataset_free(o);
        CHECK(!rc, "%d channels: the same seed gave different data", c.data.channels);
        CHECK(other, "%d channels: seeds 7 and 8 gave the same images", c.data.channels);
        CHECK(blank < 0, "%d channels: sample %d shows no shape", c.data.channels, blank);
        for (int k = 0; k < SB_SHAPES_MAX; k++)
            CHECK(count[k] > 0, "%d channels: class %d (%s) never appears", c.data.channels, k,
                  sb_shape_name(k));
    }
    return 0;
}

/* The batches of steps 0..n-1 after augmentation (caller frees x and y). */
static int export_batches(const sb_run_config *c, int n, float **x, int32_t **y) {
    sb_error err = {0};
    sb_trainer *t = sb_trainer_new(c, &err);
    if (!t) {
        fprintf(stderr, "trainer: %s\n", err.msg);
        return -1;
    }
    *x = malloc((size_t)n * c->batch * c->data.features * sizeof(float));
    *y = malloc((size_t)n * c->batch * sizeof(int32_t));
    sb_status st = *x && *y ? sb_trainer_export_batches(t, 0, n, *x, *y, &err) : SB_ERR_NOMEM;
    sb_trainer_free(t);
    return st == SB_OK ? 0 : -1;
}

static int augmentation_should_change_images_only_through_its_stream(void) {
    enum { STEPS = 3 };
    sb_run_config seeded = cnn_config("ref", 1, "sgd"), plain = seeded, unseeded = seeded;
    plain.data.aug_flip = 0.0f;
    plain.data.aug_shift = 0;
    plain.data.aug_noise = 0.0f;
    unseeded.unseeded = SB_UNSEEDED_AUGMENT;
    float *xs1 = NULL, *xs2 = NULL, *xp = NULL, *xu = NULL;
    int32_t *ys1 = NULL, *ys2 = NULL, *yp = NULL, *yu = NULL;
    int ok = export_batches(&seeded, STEPS, &xs1, &ys1) == 0 &&
             export_batches(&seeded, STEPS, &xs2, &ys2) == 0 &&
             export_batches(&plain, STEPS, &xp, &yp) == 0 &&
             export_batches(&unseeded, STEPS, &xu, &yu) == 0;
    size_t nx = (size_t)STEPS * seeded.batch * seeded.data.features;
    size_t ny = (size_t)STEPS * seeded.batch * sizeof(int32_t);
    int repeats = ok && !memcmp(xs1, xs2, nx * sizeof(float));
    int changed = ok && memcmp(xs1, xp, nx * sizeof(float)) != 0;
    int differs = ok && memcmp(xs1, xu, nx * sizeof(float)) != 0;
    int labels = ok && !memcmp(ys1, yp, ny) && !memcmp(ys1, yu, ny) && !memcmp(ys1, ys2, ny);
    free(xs1);
    free(xs2);
    free(xp);
    free(xu);
    free(ys1);
    free(ys2);
    free(yp);
    free(yu);
    CHECK(ok, "export failed");
    CHECK(repeats, "a seeded augmentation did not repeat");
    CHECK(changed, "augmentation left every image as it was");
    CHECK(differs, "an unseeded augmentation gave the seeded one's images");
    CHECK(labels, "augmentation changed the labels or the sample order");

    /* flip alone, probability 1: every image is its raw mirror, exactly */
    sb_run_config flip = plain;
    flip.data.aug_flip = 1.0f;
    float *xf = NULL;
    int32_t *yf = NULL;
    CHECK(export_batches(&flip, 1, &xf, &yf) == 0 && export_batches(&plain, 1, &xp, &yp) == 0,
          "export failed");
    int H = plain.data.height, W = plain.data.width, bad = -1;
    for (int i = 0; i < plain.batch * H && bad < 0; i++)
        for (int x = 0; x < W; x++)
            if (memcmp(&xf[(size_t)i * W + x], &xp[(size_t)i * W + (W - 1 - x)], sizeof(float))) {
                bad = i;
                break;
            }
    free(xf);
    free(yf);
    free(xp);
    free(yp);
    CHECK(bad < 0, "flipped row %d is not the raw row mirrored", bad);
    return 0;
}

static int cnn_config_validation_should_name_the_field(void) {
    sb_run_config c = cnn_config("ref", 1, "sgd");
    sb_error err = {0};
    CHECK(sb_run_config_validate(&c, &err) == SB_OK, "%s", err.msg);
    c.model.kernel = 4;
    CHECK(sb_run_config_validate(&c, &err) == SB_ERR_ARG && strstr(err.msg, "model.kernel"),
          "an even kernel accepted (%s)", err.msg);
    c = cnn_config("ref", 1, "sgd");
    c.data.height = c.data.width = c.data.channels = 0;
    snprintf(c.data.kind, sizeof c.data.kind, "blobs");
    c.data.aug_flip = 0.0f;
    c.data.aug_shift = 0;
    CHECK(sb_run_config_validate(&c, &err) == SB_ERR_ARG && strstr(err.msg, "image data"),
          "a cnn on vector data accepted (%s)", err.msg);
    c = cnn_config("ref", 1, "sgd");
    c.data.aug_shift = 16;
    CHECK(sb_run_config_validate(&c, &err) == SB_ERR_ARG && strstr(err.msg, "data.augment.shift"),
          "a shift of the whole image accepted (%s)", err.msg);
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(cnn_should_learn_the_shapes),
    SB_CASE(cnn_deterministic_runs_should_be_bitwise_equal_on_ref_and_blas),
    SB_CASE(cnn_save_restore_continue_should_equal_an_uninterrupted_run),
    SB_CASE(shapes_dataset_should_be_reproducible_and_hold_every_class),
    SB_CASE(augmentation_should_change_images_only_through_its_stream),
    SB_CASE(cnn_config_validation_should_name_the_field),
};
SB_TEST_MAIN(cases)
