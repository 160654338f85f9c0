/* cmd_train.c — `samebits train`: one training run, in this process.
 *
 * This is exactly what the harness's child processes run: the suite gives the
 * model, data and training settings; options pick one point of its matrix.
 * Output folder: weights.safetensors (the checkpoint), then run.json (the run's
 * record, written last, so a folder with run.json is a finished run). Both
 * carry this process's environment fingerprint (fingerprint.h): run.json as
 * "environment", the checkpoint's metadata as "samebits.environment".
 * --init-only writes the freshly initialised model (step 0) the same way and
 * trains nothing, so other frameworks can start from our initial weights.
 *
 * Not here: matrices, checks, repeats (cmd_run.c).
 */
#include "fingerprint.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits train SUITE.json --out DIR [options]\n"
            "\n"
            "Trains one run of SUITE (the first value of each matrix axis unless given)\n"
            "and writes DIR/weights.safetensors and DIR/run.json.\n"
            "\n"
            "options:\n"
            "  --seed N          data/init seed\n"
            "  --backend NAME    ref | blas\n"
            "  --mode MODE       deterministic | fast\n"
            "  --threads N       worker threads of the backend\n"
            "  --perturb         order-perturbation test aid (fast mode)\n"
            "  --recheck         run every op twice on the same inputs; flag ops that differ\n"
            "  --no-trace        do not write DIR/trace.sbt\n"
            "  --steps N         train until N optimizer steps are done\n"
            "  --init-only       write the initialised model (step 0) and run.json; no training\n"
            "  --resume CKPT     continue from a checkpoint of the same run config\n"
            "  --id ID           run id recorded in run.json (default: derived)\n"
            "  --repeat N        repeat index recorded in run.json (default 0)\n"
            "  --case NAME       which case of a suite with cases (default: the first)\n"
            "  --suite-dir DIR   data file paths are relative to DIR, not SUITE's folder\n"
            "                    (run passes the original suite's folder to its copy)\n"
            "  --force           replace DIR's checkpoint and run.json if present\n");
}

static int bad(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "samebits train: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return SB_EXIT_USAGE;
}

/* Writes run.json atomically. */
static sb_status write_run_json(const char *path, const sb_trainer *t, const char *id,
                                const sb_suite *s,
                                const sb_run_config *c, int repeat, const char *status,
                                const char *error, int first_step, int steps_done,
                                const float *losses, int n_losses, double seconds,
                                const char *resume, const cJSON *env, int overwrite,
                                int init_only, sb_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", SB_RUN_SCHEMA);
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "suite", s->name);
    cJSON_AddStringToObject(root, "suite_sha256", s->sha256);
    char *cfg = sb_run_config_to_json(c);
    cJSON_AddItemToObject(root, "config", cJSON_Parse(cfg));
    free(cfg);
    cJSON_AddNumberToObject(root, "repeat", repeat);
    cJSON_AddStringToObject(root, "status", status);
    if (error) cJSON_AddStringToObject(root, "error", error);
    cJSON_AddNumberToObject(root, "first_step", first_step);
    cJSON_AddNumberToObject(root, "steps_done", steps_done);
    if (resume) cJSON_AddStringToObject(root, "resumed_from", resume);
    cJSON *l = cJSON_AddArrayToObject(root, "losses");
    for (int i = 0; i < n_losses; i++) cJSON_AddItemToArray(l, cJSON_CreateNumber(losses[i]));
    cJSON_AddNumberToObject(root, "seconds", seconds);
    cJSON_AddStringToObject(root, "checkpoint",
                            (steps_done > 0 || init_only) && !error ? "weights.safetensors" : "");
    if (init_only) cJSON_AddBoolToObject(root, "init_only", 1);
    cJSON_AddBoolToObject(root, "perturb", c->perturb);
    char *un = sb_trainer_unseeded_json(t);
    cJSON *unj = un ? cJSON_Parse(un) : NULL;
    free(un);
    cJSON_AddItemToObject(root, "unseeded_streams", unj ? unj : cJSON_CreateArray());
    cJSON_AddStringToObject(root, "trace", c->trace ? "trace.sbt" : "");
    cJSON *rc = cJSON_AddObjectToObject(root, "recheck");
    cJSON_AddBoolToObject(rc, "enabled", c->recheck);
    cJSON_AddNumberToObject(rc, "ops_that_differed", sb_trainer_recheck_flags(t));
    cJSON_AddStringToObject(root, "blas", sb_blas_info());
    cJSON_AddItemToObject(root, "data_files", sb_data_files_json(&c->data));
    cJSON_AddItemToObject(root, "environment", cJSON_Duplicate(env, 1));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    sb_status st = sb_write_file_atomic(path, text, strlen(text), overwrite, err);
    free(text);
    return st;
}

int sb_cmd_train(int argc, char **argv) {
    const char *suite_path = NULL, *out = NULL, *resume = NULL, *id_arg = NULL;
    const char *seed_s = NULL, *backend = NULL, *mode_s = NULL, *threads_s = NULL, *steps_s = NULL;
    const char *repeat_s = NULL, *case_s = NULL, *suite_dir = NULL;
    int perturb = 0, force = 0, recheck = 0, no_trace = 0, init_only = 0;
    const sb_opt opts[] = {
        {"--out", NULL, &out, NULL, 0},           {"--seed", NULL, &seed_s, NULL, 0},
        {"--backend", NULL, &backend, NULL, 0},   {"--mode", NULL, &mode_s, NULL, 0},
        {"--threads", NULL, &threads_s, NULL, 0}, {"--steps", NULL, &steps_s, NULL, 0},
        {"--resume", NULL, &resume, NULL, 0},     {"--id", NULL, &id_arg, NULL, 0},
        {"--repeat", NULL, &repeat_s, NULL, 0},   {"--case", NULL, &case_s, NULL, 0},
        {"--suite-dir", NULL, &suite_dir, NULL, 0},
        {"--perturb", NULL, NULL, &perturb, 0},   {"--force", NULL, NULL, &force, 0},
        {"--recheck", NULL, NULL, &recheck, 0},   {"--no-trace", NULL, NULL, &no_trace, 0},
        {"--init-only", NULL, NULL, &init_only, 0},
    };
    int prc = sb_parse_opts(argc, argv, "train", opts, (int)(sizeof opts / sizeof opts[0]),
                            &suite_path, usage);
    if (prc) return prc == 1 ? 0 : SB_EXIT_USAGE;
    if (!suite_path || !out) {
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (init_only && (resume || recheck))
        return bad("--init-only cannot be combined with %s%s", resume ? "--resume" : "--recheck", "");

    sb_error err = {0};
    sb_suite *s = sb_suite_load_dir(suite_path, suite_dir, &err);
    if (!s) {
        fprintf(stderr, "samebits train: %s\n", err.msg);
        return SB_EXIT_USAGE;
    }
    const sb_suite *cs = s; /* the case trained (the suite itself without cases) */
    if (case_s || s->n_cases > 0) {
        int ci = case_s ? sb_suite_find_case(s, case_s) : 0;
        if (ci < 0 || s->n_cases == 0) {
            fprintf(stderr, "samebits train: %s: no case named '%s'\n", suite_path, case_s);
            sb_suite_free(s);
            return SB_EXIT_USAGE;
        }
        cs = s->cases[ci];
    }
    sb_run_config c = cs->base;
    c.perturb = c.perturb || perturb;
    c.recheck = c.recheck || recheck;
    if (no_trace) c.trace = 0;
    if (c.recheck) c.trace = 1; /* recheck results live in the trace */
    if (init_only) c.trace = c.recheck = 0; /* no step runs: nothing to trace */
    long long v;
    int repeat = 0;
    if (seed_s) {
        if (sb_parse_int(seed_s, 0, 9007199254740991LL, &v) != 0) {
            sb_suite_free(s);
            return bad("--seed: expected a non-negative integer, got '%s'%s", seed_s, "");
        }
        c.seed = (uint64_t)v;
    }
    if (backend) snprintf(c.backend, sizeof c.backend, "%s", backend);
    if (mode_s && sb_mode_parse(mode_s, &c.mode) != 0) {
        sb_suite_free(s);
        return bad("--mode: expected deterministic or fast, got '%s'%s", mode_s, "");
    }
    if (threads_s) {
        if (sb_parse_int(threads_s, 1, 1024, &v) != 0) {
            sb_suite_free(s);
            return bad("--threads: expected an integer 1..1024, got '%s'%s", threads_s, "");
        }
        c.threads = (int)v;
    }
    if (steps_s) {
        if (sb_parse_int(steps_s, 1, 100000000, &v) != 0) {
            sb_suite_free(s);
            return bad("--steps: expected a positive integer, got '%s'%s", steps_s, "");
        }
        c.steps = (int)v;
    }
    if (repeat_s) {
        if (sb_parse_int(repeat_s, 0, 1000000, &v) != 0) {
            sb_suite_free(s);
            return bad("--repeat: expected a non-negative integer, got '%s'%s", repeat_s, "");
        }
        repeat = (int)v;
    }
    char id[160];
    if (id_arg)
        snprintf(id, sizeof id, "%s", id_arg);
    else
        snprintf(id, sizeof id, "seed%llu-%s-%s-t%d-r%d", (unsigned long long)c.seed, c.backend,
                 sb_mode_name(c.mode), c.threads, repeat);

    int rc = SB_EXIT_USAGE;
    sb_trainer *t = NULL;
    float *losses = NULL;
    cJSON *env = NULL;
    char *env_text = NULL;
    char ckpt[4200], runjson[4200], tracep[4200];
    snprintf(ckpt, sizeof ckpt, "%s/weights.safetensors", out);
    snprintf(runjson, sizeof runjson, "%s/run.json", out);
    snprintf(tracep, sizeof tracep, "%s/trace.sbt", out);
    if (force) unlink(tracep); /* --force replaces the whole run */
    if (!force && (sb_path_exists(ckpt) || sb_path_exists(runjson) || sb_path_exists(tracep))) {
        fprintf(stderr, "samebits train: %s already holds a run; use --force to replace it\n", out);
        goto done;
    }
    if (sb_mkdir_p(out, &err) != 0) {
        fprintf(stderr, "samebits train: %s\n", err.msg);
        goto done;
    }
    t = sb_trainer_new(&c, &err);
    if (!t) {
        fprintf(stderr, "samebits train: %s: %s\n", suite_path, err.msg);
        goto done;
    }
    /* after the backend exists, so the BLAS thread count is the run's */
    sb_fp_options fo = {.backend = c.backend, .run_threads = c.threads};
    env = sb_fingerprint_collect(&fo, &err);
    env_text = env ? cJSON_PrintUnformatted(env) : NULL;
    if (!env_text) {
        fprintf(stderr, "samebits train: %s\n", env ? "out of memory" : err.msg);
        rc = SB_EXIT_RUN;
        goto done;
    }
    if (resume && sb_trainer_restore(t, resume, &err) != SB_OK) {
        fprintf(stderr, "samebits train: %s\n", err.msg);
        goto done;
    }
    if (c.trace && sb_trainer_trace_open(t, tracep, &err) != SB_OK) {
        fprintf(stderr, "samebits train: %s\n", err.msg);
        goto done;
    }
    int first = sb_trainer_steps_done(t);
    if (first > c.steps) {
        fprintf(stderr, "samebits train: %s: checkpoint is at step %d, past --steps %d\n",
                resume, first, c.steps);
        goto done;
    }
    losses = malloc(sizeof(float) * (size_t)(c.steps - first + 1));
    if (!losses) {
        fprintf(stderr, "samebits train: out of memory\n");
        goto done;
    }
    double t0 = sb_now();
    int n = 0;
    const char *status = "ok";
    const char *error = NULL;
    while (!init_only && sb_trainer_steps_done(t) < c.steps) {
        if (sb_trainer_step(t, &losses[n], &err) != SB_OK) {
            status = "failed";
            error = err.msg;
            break;
        }
        n++;
    }
    double secs = sb_now() - t0;
    if (c.trace) {
        char run[600];
        snprintf(run, sizeof run, "{\"id\": \"%s\", \"suite\": \"%s\", \"status\": \"%s\"}", id,
                 s->name, status);
        sb_error terr = {0};
        if (sb_trainer_trace_close(t, run, &terr) != SB_OK) {
            fprintf(stderr, "samebits train: %s\n", terr.msg);
            rc = SB_EXIT_RUN;
            goto done;
        }
    }
    if (!error) {
        const char *keys[] = {"samebits.run_id", "samebits.suite", "samebits.blas",
                               "samebits.environment"};
        const char *vals[] = {id, s->name, sb_blas_info(), env_text};
        if (sb_trainer_save(t, ckpt, force, 4, keys, vals, &err) != SB_OK) {
            fprintf(stderr, "samebits train: %s\n", err.msg);
            rc = SB_EXIT_RUN;
            goto done;
        }
    }
    sb_error werr = {0};
    if (write_run_json(runjson, t, id, s, &c, repeat, status, error, first, sb_trainer_steps_done(t),
                       losses, n, secs, resume, env, force, init_only, &werr) != SB_OK) {
        fprintf(stderr, "samebits train: %s\n", werr.msg);
        rc = SB_EXIT_RUN;
        goto done;
    }
    if (error) {
        fprintf(stderr, "samebits train: %s: %s\n", id, error);
        rc = SB_EXIT_RUN;
        goto done;
    }
    if (init_only)
        printf("%s: initial weights (step 0) -> %s\n", id, ckpt);
    else
        printf("%s: %d steps (%d..%d), final loss %.6g, %.2f s -> %s\n", id, n, first + 1,
               c.steps, n > 0 ? (double)losses[n - 1] : NAN, secs, ckpt);
    rc = SB_EXIT_OK;
done:
    free(env_text);
    cJSON_Delete(env);
    free(losses);
    sb_trainer_free(t);
    sb_suite_free(s);
    return rc;
}
