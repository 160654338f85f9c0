/* test_engine.c — the engine: Philox known answers, named streams, the data
 * pipeline, and training determinism (twice → same bits; save → restore →
 * continue equals an uninterrupted run, bitwise).
 */
#include "engine.h"
#include "sb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Philox4x32-10: the Random123 known-answer vectors (kat_vectors) ---- */
static int philox_should_match_random123_known_answers(void) {
    static const struct {
        uint32_t ctr[4], key[2], want[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        sb_philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int w = 0; w < 4; w++)
            CHECK(out[w] == kat[i].want[w], "vector %zu word %d: got %08x want %08x", i, w,
                  out[w], kat[i].want[w]);
    }
    return 0;
}

static int streams_should_not_shift_when_another_stream_draws_more(void) {
    sb_rng a, b, other;
    sb_rng_init(&a, 42, "init/fc1.weight", 0);
    sb_rng_init(&other, 42, "init/fc2.weight", 0);
    for (int i = 0; i < 1000; i++) sb_rng_u32(&other); /* another purpose draws a lot */
    sb_rng_init(&b, 42, "init/fc1.weight", 0);
    for (int i = 0; i < 100; i++) {
        uint32_t x = sb_rng_u32(&a), y = sb_rng_u32(&b);
        CHECK(x == y, "draw %d: %08x vs %08x", i, x, y);
    }
    /* different purposes, indices and seeds give different numbers */
    sb_rng c, d, e;
    sb_rng_init(&c, 42, "data/shuffle", 1);
    sb_rng_init(&d, 42, "data/shuffle", 2);
    sb_rng_init(&e, 43, "data/shuffle", 1);
    uint32_t xc = sb_rng_u32(&c), xd = sb_rng_u32(&d), xe = sb_rng_u32(&e);
    CHECK(xc != xd && xc != xe, "streams collide: %08x %08x %08x", xc, xd, xe);
    return 0;
}

static int rng_below_should_stay_in_range_and_hit_every_value(void) {
    sb_rng r;
    sb_rng_init(&r, 7, "test/below", 0);
    int seen[7] = {0};
    for (int i = 0; i < 7000; i++) {
        uint32_t v = sb_rng_below(&r, 7);
        CHECK(v < 7, "value %u out of range", v);
        seen[v]++;
    }
    /* each bucket expects 1000; 800 is > 6 standard deviations (sd ≈ 29) away */
    for (int k = 0; k < 7; k++) CHECK(seen[k] > 800 && seen[k] < 1200, "bucket %d: %d", k, seen[k]);
    float u;
    for (int i = 0; i < 10000; i++) {
        u = sb_rng_uniform(&r);
        CHECK(u >= 0.0f && u < 1.0f, "uniform %g out of [0,1)", (double)u);
    }
    return 0;
}

static sb_run_config small_config(const char *backend, sb_mode mode, int threads, const char *opt) {
    sb_run_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model.kind, sizeof c.model.kind, "mlp");
    c.model.n_widths = 4;
    c.model.widths[0] = 8;
    c.model.widths[1] = 24;
    c.model.widths[2] = 16;
    c.model.widths[3] = 3;
    c.model.act = SB_ACT_TANH;
    snprintf(c.data.kind, sizeof c.data.kind, "blobs");
    c.data.samples = 200;
    c.data.features = 8;
    c.data.classes = 3;
    c.data.noise = 1.5f;
    c.data.shuffle = SB_SHUFFLE_EPOCH;
    snprintf(c.optim.name, sizeof c.optim.name, "%s", opt);
    c.optim.lr = !strcmp(opt, "adam") ? 0.01f : 0.05f;
    c.optim.momentum = 0.9f;
    c.optim.beta1 = 0.9f;
    c.optim.beta2 = 0.999f;
    c.optim.eps = 1e-8f;
    c.optim.weight_decay = 0.001f;
    c.steps = 60; /* 60 steps × batch 24 = 7.2 epochs: crosses epoch boundaries mid-batch */
    c.batch = 24;
    c.seed = 5;
    snprintf(c.backend, sizeof c.backend, "%s", backend);
    c.mode = mode;
    c.threads = threads;
    return c;
}

/* Trains `steps` steps and returns all parameters (caller frees). */
static float *train_params(const sb_run_config *c, int steps, float *last_loss) {
    sb_error err = {0};
    sb_trainer *t = sb_trainer_new(c, &err);
    if (!t) {
        fprintf(stderr, "trainer: %s\n", err.msg);
        return NULL;
    }
    for (int i = 0; i < steps; i++)
        if (sb_trainer_step(t, last_loss, &err) != SB_OK) {
            fprintf(stderr, "step: %s\n", err.msg);
            sb_trainer_free(t);
            return NULL;
        }
    size_t n = sb_trainer_param_numel(t, -1);
    float *p = malloc(n * sizeof *p);
    sb_trainer_param_download(t, -1, p);
    sb_trainer_free(t);
    return p;
}

static size_t param_count(const sb_run_config *c) {
    size_t n = 0;
    for (int l = 0; l + 1 < c->model.n_widths; l++)
        n += (size_t)c->model.widths[l + 1] * (c->model.widths[l] + 1);
    return n;
}

static int bitwise_equal(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        CHECK(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s: element %zu: %.9g vs %.9g", what, i,
              (double)a[i], (double)b[i]);
    return 0;
}

static int training_should_learn_the_blobs(void) {
    sb_run_config c = small_config("ref", SB_MODE_DETERMINISTIC, 1, "adam");
    float first = 0, last = 0;
    float *p = train_params(&c, 1, &first);
    free(p);
    p = train_params(&c, 60, &last);
    CHECK(p != NULL, "training failed");
    free(p);
    /* ln(3) ≈ 1.10 at chance; a working model on separable blobs gets far below it */
    CHECK(last < 0.5f * first, "loss did not fall: first %g last %g", (double)first, (double)last);
    return 0;
}

static int deterministic_runs_should_be_bitwise_equal(void) {
    const char *backends[] = {"ref", "blas"};
    const char *opts[] = {"sgd", "adam"};
    for (int b = 0; b < 2; b++)
        for (int o = 0; o < 2; o++)
            for (int th = 1; th <= 2; th++) {
                sb_run_config c = small_config(backends[b], SB_MODE_DETERMINISTIC, th, opts[o]);
                float l1, l2;
                float *p1 = train_params(&c, 60, &l1), *p2 = train_params(&c, 60, &l2);
                CHECK(p1 && p2, "training failed");
                char what[64];
                snprintf(what, sizeof what, "%s/%s/t%d", backends[b], opts[o], th);
                int rc = bitwise_equal(p1, p2, param_count(&c), what);
                free(p1);
                free(p2);
                if (rc) return rc;
            }
    return 0;
}

static int save_restore_continue_should_equal_an_uninterrupted_run(void) {
    const char *backends[] = {"ref", "blas"};
    const char *opts[] = {"sgd", "adam"};
    char dir[] = "/tmp/sb_engine_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
    for (int b = 0; b < 2; b++)
        for (int o = 0; o < 2; o++) {
            sb_run_config c = small_config(backends[b], SB_MODE_DETERMINISTIC, 2, opts[o]);
            float loss;
            float *whole = train_params(&c, 60, &loss);
            CHECK(whole, "training failed");
            /* 23 steps, save, new trainer, restore, 37 more: 23·24 = 552 samples is
             * mid-epoch (epoch 2, position 152), so the data position must resume too */
            sb_error err = {0};
            sb_trainer *t = sb_trainer_new(&c, &err);
            CHECK(t, "%s", err.msg);
            for (int i = 0; i < 23; i++) CHECK(sb_trainer_step(t, &loss, &err) == SB_OK, "%s", err.msg);
            char path[128];
            snprintf(path, sizeof path, "%s/ckpt-%d-%d.safetensors", dir, b, o);
            CHECK(sb_trainer_save(t, path, 0, 0, NULL, NULL, &err) == SB_OK, "%s", err.msg);
            sb_trainer_free(t);
            /* refuses to overwrite silently */
            t = sb_trainer_new(&c, &err);
            CHECK(sb_trainer_save(t, path, 0, 0, NULL, NULL, &err) == SB_ERR_EXISTS,
                  "overwrote an existing checkpoint");
            CHECK(sb_trainer_restore(t, path, &err) == SB_OK, "%s", err.msg);
            CHECK(sb_trainer_steps_done(t) == 23, "restored step %d", sb_trainer_steps_done(t));
            for (int i = 0; i < 37; i++) CHECK(sb_trainer_step(t, &loss, &err) == SB_OK, "%s", err.msg);
            float *resumed = malloc(param_count(&c) * sizeof(float));
            sb_trainer_param_download(t, -1, resumed);
            sb_trainer_free(t);
            char what[64];
            snprintf(what, sizeof what, "%s/%s resumed", backends[b], opts[o]);
            int rc = bitwise_equal(whole, resumed, param_count(&c), what);
            free(whole);
            free(resumed);
            if (rc) return rc;
            unlink(path);
        }
    rmdir(dir);
    return 0;
}

static int restore_should_reject_a_checkpoint_of_another_config(void) {
    char path[] = "/tmp/sb_engine_ckpt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    unlink(path);
    sb_run_config c = small_config("ref", SB_MODE_DETERMINISTIC, 1, "sgd");
    sb_error err = {0};
    sb_trainer *t = sb_trainer_new(&c, &err);
    CHECK(t, "%s", err.msg);
    CHECK(sb_trainer_save(t, path, 0, 0, NULL, NULL, &err) == SB_OK, "%s", err.msg);
    sb_trainer_free(t);
    c.seed = 6; /* another seed: another dataset and init */
    t = sb_trainer_new(&c, &err);
    sb_status st = sb_trainer_restore(t, path, &err);
    sb_trainer_free(t);
    unlink(path);
    CHECK(st == SB_ERR_ARG, "restore accepted a checkpoint of another seed (status %d)", st);
    CHECK(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    return 0;
}

static int epoch_order_should_be_a_permutation_that_changes_per_epoch(void) {
    sb_data_config d = {.kind = "blobs", .samples = 100, .features = 2, .classes = 2,
                        .shuffle = SB_SHUFFLE_EPOCH};
    int32_t o1[100], o2[100], o1b[100];
    sb_epoch_order(&d, 9, 1, o1);
    sb_epoch_order(&d, 9, 2, o2);
    sb_epoch_order(&d, 9, 1, o1b);
    int seen[100] = {0}, same = 0;
    for (int i = 0; i < 100; i++) {
        CHECK(o1[i] >= 0 && o1[i] < 100, "index %d out of range", o1[i]);
        seen[o1[i]]++;
        same += o1[i] == o2[i];
        CHECK(o1[i] == o1b[i], "epoch 1 order not reproducible at %d", i);
    }
    for (int i = 0; i < 100; i++) CHECK(seen[i] == 1, "index %d seen %d times", i, seen[i]);
    CHECK(same < 20, "epochs 1 and 2 share %d of 100 positions", same);
    d.shuffle = SB_SHUFFLE_ONCE;
    sb_epoch_order(&d, 9, 1, o1);
    sb_epoch_order(&d, 9, 2, o2);
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "shuffle once must reuse one order");
    return 0;
}

static int config_validation_should_name_the_field(void) {
    sb_run_config c = small_config("ref", SB_MODE_DETERMINISTIC, 1, "sgd");
    sb_error err = {0};
    c.batch = 500;
    CHECK(sb_run_config_validate(&c, &err) == SB_ERR_ARG, "batch > samples accepted");
    CHECK(strstr(err.msg, "train.batch") != NULL, "message: %s", err.msg);
    c = small_config("ref", SB_MODE_DETERMINISTIC, 1, "sgd");
    c.model.widths[0] = 9;
    CHECK(sb_run_config_validate(&c, &err) == SB_ERR_ARG, "width/features mismatch accepted");
    c = small_config("nosuch", SB_MODE_DETERMINISTIC, 1, "sgd");
    CHECK(sb_trainer_new(&c, &err) == NULL, "unknown backend accepted");
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(philox_should_match_random123_known_answers),
    SB_CASE(streams_should_not_shift_when_another_stream_draws_more),
    SB_CASE(rng_below_should_stay_in_range_and_hit_every_value),
    SB_CASE(training_should_learn_the_blobs),
    SB_CASE(deterministic_runs_should_be_bitwise_equal),
    SB_CASE(save_restore_continue_should_equal_an_uninterrupted_run),
    SB_CASE(restore_should_reject_a_checkpoint_of_another_config),
    SB_CASE(epoch_order_should_be_a_permutation_that_changes_per_epoch),
    SB_CASE(config_validation_should_name_the_field),
};
SB_TEST_MAIN(cases)
