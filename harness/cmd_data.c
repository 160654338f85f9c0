/* cmd_data.c — `samebits data export`: the exact batches a run trains on, in
 * step order, as one safetensors file, so anyone can audit what the model saw
 * and replay it in another framework.
 *
 * The batches come from the engine's own pipeline code (sb_trainer_export_
 * batches: gather in epoch order, shuffle, augmentation), so they are what
 * `samebits train` feeds the model, bit for bit. File layout:
 *   "x"  F32 [steps, batch, features]   after augmentation
 *   "y"  I32 [steps, batch]             class labels
 *   __metadata__: samebits.format "batches/1", samebits.suite,
 *   samebits.suite_sha256, samebits.case, samebits.config (the run config as
 *   JSON), samebits.seed, samebits.unseeded_streams (entropy seeds this export
 *   drew; another process draws others), samebits.order, samebits.data_files.
 *
 * Also here: sb_data_files_json, the data files' SHA-256 for run.json.
 *
 * Not here: training, reading data files (engine/datafile.c).
 */
#include "harness.h"

#include <cjson/cJSON.h>
#include <string.h>

/* One export holds at most this many floats (4 GiB): more is a mistake or
 * needs --steps. */
#define MAX_EXPORT_FLOATS ((uint64_t)1 << 30)

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits data export SUITE.json --out FILE.safetensors [options]\n"
            "\n"
            "Writes the batches a run of SUITE trains on, in step order, after the whole\n"
            "pipeline (shuffle, augmentation): x F32 [steps, batch, features] and\n"
            "y I32 [steps, batch], with the config and seeds in the metadata.\n"
            "\n"
            "options:\n"
            "  --case NAME       which case of a suite with cases (default: the first)\n"
            "  --seed N          the run's seed (default: the matrix's first)\n"
            "  --steps N         export the first N steps (default: train.steps)\n"
            "  --suite-dir DIR   data file paths are relative to DIR, not SUITE's folder\n"
            "  --force           replace FILE if it exists\n");
}

static int bad(const char *what, const char *arg) {
    fprintf(stderr, "samebits data export: %s%s\n", what, arg ? arg : "");
    return SB_EXIT_USAGE;
}

cJSON *sb_data_files_json(const sb_data_config *d) {
    cJSON *a = cJSON_CreateArray();
    if (!a || !sb_data_kind_is_file(d->kind)) return a;
    const char *paths[2] = {d->x_path, strcmp(d->kind, "csv") != 0 ? d->y_path : NULL};
    for (int i = 0; i < 2; i++) {
        if (!paths[i]) continue;
        cJSON *o = cJSON_CreateObject();
        char hex[65];
        sb_error err = {0};
        cJSON_AddStringToObject(o, "path", paths[i]);
        if (sb_sha256_file(paths[i], hex, &err) == SB_OK)
            cJSON_AddStringToObject(o, "sha256", hex);
        else
            cJSON_AddNullToObject(o, "sha256");
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static int export_main(int argc, char **argv) {
    const char *suite_path = NULL, *out = NULL, *case_s = NULL, *seed_s = NULL, *steps_s = NULL;
    const char *suite_dir = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return SB_EXIT_OK;
        } else if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        } else if (!strcmp(a, "--out")) slot = &out;
        else if (!strcmp(a, "--case")) slot = &case_s;
        else if (!strcmp(a, "--seed")) slot = &seed_s;
        else if (!strcmp(a, "--steps")) slot = &steps_s;
        else if (!strcmp(a, "--suite-dir")) slot = &suite_dir;
        else if (a[0] == '-' && a[1]) return bad("unknown option ", a);
        else if (!suite_path) {
            suite_path = a;
            continue;
        } else
            return bad("unexpected argument ", a);
        if (i + 1 >= argc) return bad("a value is missing after ", a);
        *slot = argv[++i];
    }
    if (!suite_path || !out) {
        usage(stderr);
        return SB_EXIT_USAGE;
    }

    int rc = SB_EXIT_USAGE;
    sb_error err = {0};
    sb_trainer *t = NULL;
    sb_st_writer *w = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    char *cfg_json = NULL, *unseeded = NULL, *files_text = NULL;
    cJSON *files = NULL;
    sb_suite *s = sb_suite_load_dir(suite_path, suite_dir, &err);
    if (!s) {
        fprintf(stderr, "samebits data export: %s\n", err.msg);
        return SB_EXIT_USAGE;
    }
    const sb_suite *cs = s;
    if (case_s || s->n_cases > 0) {
        int ci = case_s ? sb_suite_find_case(s, case_s) : 0;
        if (ci < 0 || s->n_cases == 0) {
            fprintf(stderr, "samebits data export: %s: no case named '%s'\n", suite_path, case_s);
            goto done;
        }
        cs = s->cases[ci];
    }
    sb_run_config c = cs->base;
    c.trace = 0;
    c.recheck = 0;
    long long v;
    if (seed_s) {
        if (sb_parse_int(seed_s, 0, 9007199254740991LL, &v) != 0) {
            rc = bad("--seed: expected a non-negative integer, got ", seed_s);
            goto done;
        }
        c.seed = (uint64_t)v;
    }
    if (steps_s) {
        if (sb_parse_int(steps_s, 1, 100000000, &v) != 0) {
            rc = bad("--steps: expected a positive integer, got ", steps_s);
            goto done;
        }
        c.steps = (int)v;
    }
    uint64_t per = (uint64_t)c.batch * (uint64_t)c.data.features;
    if ((uint64_t)c.steps * per > MAX_EXPORT_FLOATS) {
        fprintf(stderr, "samebits data export: %d steps of %d x %d features exceed the limit of "
                        "2^30 floats; export fewer with --steps\n", c.steps, c.batch, c.data.features);
        goto done;
    }
    t = sb_trainer_new(&c, &err);
    if (!t) {
        fprintf(stderr, "samebits data export: %s\n", err.msg);
        goto done;
    }
    x = malloc((size_t)((uint64_t)c.steps * per) * sizeof(float));
    y = malloc((size_t)c.steps * (size_t)c.batch * sizeof(int32_t));
    if (!x || !y) {
        fprintf(stderr, "samebits data export: out of memory\n");
        rc = SB_EXIT_RUN;
        goto done;
    }
    if (sb_trainer_export_batches(t, 0, c.steps, x, y, &err) != SB_OK) {
        fprintf(stderr, "samebits data export: %s\n", err.msg);
        rc = SB_EXIT_RUN;
        goto done;
    }

    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c.seed);
    cfg_json = sb_run_config_to_json(&c);
    unseeded = sb_trainer_unseeded_json(t);
    files = sb_data_files_json(&c.data);
    files_text = files ? cJSON_PrintUnformatted(files) : NULL;
    const char *order =
        c.data.loader_workers > 0 && c.data.loader_completion
            ? "step order: batch i is what step i+1 trains on with an in-order pipeline. This "
              "suite's loader hands batches out in the order its workers finish "
              "(data.loader.order \"completion\"), which is nondeterministic: a training run "
              "uses these batches, but not necessarily at these steps."
            : "step order: batch i is what step i+1 trains on";
    int64_t xs[3] = {c.steps, c.batch, c.data.features}, ys[2] = {c.steps, c.batch};
    const char *keys[] = {"samebits.format", "samebits.suite", "samebits.suite_sha256",
                          "samebits.case", "samebits.config", "samebits.seed",
                          "samebits.unseeded_streams", "samebits.order", "samebits.data_files"};
    const char *vals[] = {"batches/1", s->name, s->sha256, cs != s ? case_s ? case_s : s->case_names[0] : "",
                          cfg_json, seed, unseeded, order, files_text};
    w = sb_st_writer_new();
    if (!w || !cfg_json || !unseeded || !files_text) {
        fprintf(stderr, "samebits data export: out of memory\n");
        rc = SB_EXIT_RUN;
        goto done;
    }
    if (sb_st_writer_add(w, "x", SB_DT_F32, 3, xs, x, &err) != SB_OK ||
        sb_st_writer_add(w, "y", SB_DT_I32, 2, ys, y, &err) != SB_OK) {
        fprintf(stderr, "samebits data export: %s\n", err.msg);
        rc = SB_EXIT_RUN;
        goto done;
    }
    for (int i = 0; i < (int)(sizeof keys / sizeof keys[0]); i++)
        if (sb_st_writer_meta(w, keys[i], vals[i], &err) != SB_OK) {
            fprintf(stderr, "samebits data export: %s\n", err.msg);
            rc = SB_EXIT_RUN;
            goto done;
        }
    if (sb_st_writer_save(w, out, force, &err) != SB_OK) {
        if (err.status == SB_ERR_EXISTS)
            fprintf(stderr, "samebits data export: %s exists; use --force to replace it\n", out);
        else
            fprintf(stderr, "samebits data export: %s\n", err.msg);
        rc = err.status == SB_ERR_EXISTS ? SB_EXIT_USAGE : SB_EXIT_RUN;
        goto done;
    }
    printf("%s: %d batches of %d x %d features (seed %s) -> %s\n", s->name, c.steps, c.batch,
           c.data.features, seed, out);
    rc = SB_EXIT_OK;
done:
    sb_st_writer_free(w);
    cJSON_Delete(files);
    free(files_text);
    free(unseeded);
    free(cfg_json);
    free(x);
    free(y);
    sb_trainer_free(t);
    sb_suite_free(s);
    return rc;
}

int sb_cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SB_EXIT_USAGE : SB_EXIT_OK;
    }
    if (strcmp(argv[1], "export") != 0) {
        fprintf(stderr, "samebits data: unknown subcommand '%s' (known: export)\n", argv[1]);
        return SB_EXIT_USAGE;
    }
    return export_main(argc - 1, argv + 1);
}
