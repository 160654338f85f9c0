/* baseline.c — blessed baselines: `samebits bless`, the manifest, and the
 * check that a stored baseline is the one that was blessed.
 *
 * Layout: BASELINES/<suite>/manifest.json and BASELINES/<suite>/<cell>/
 * weights.safetensors (and the run's trace.sbt) for every cell that a baseline check of the suite
 * covers (repeat 0 of that cell). The manifest (schema samebits.baseline/1)
 * records the suite's SHA-256, each cell's config, run id, the file's SHA-256,
 * the weights digest and every tensor's dtype, shape and SHA-256, and the
 * environment fingerprints (fingerprint.h): "environment" at the top level
 * (the blessing process's, for readers) and per cell (the blessed run's,
 * from its run.json: what baseline checks compare a run's environment
 * against, since it carries the run's own BLAS thread count).
 *
 * Writing is atomic for the whole suite folder: everything is built in
 * BASELINES/.<suite>.tmp-<pid>, then renamed into place. An existing baseline
 * is never replaced without --force; with --force the old folder is moved
 * aside, the new one renamed in, and only then is the old one removed.
 *
 * Not here: comparing runs to baselines (checks.c does, with sb_diff).
 */
#include "harness.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void sb_default_baselines_dir(const char *suite_path, char *out, size_t n) {
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", suite_path);
    const char *dir = dirname(tmp);
    char tmp2[2048];
    snprintf(tmp2, sizeof tmp2, "%s", dir);
    const char *base = basename(tmp2);
    size_t dl = strlen(dir);
    if (!strcmp(dir, "suites"))
        snprintf(out, n, "baselines");
    else if (dl > 7 && !strcmp(dir + dl - 7, "/suites"))
        snprintf(out, n, "%.*sbaselines", (int)(dl - 6), dir); /* keep the parent's '/' */
    else if (!strcmp(base, "suites"))
        snprintf(out, n, "%s/../baselines", dir);
    else
        snprintf(out, n, "%s/baselines", dir);
}

static cJSON *load_manifest(const char *baselines_dir, const char *suite, char *path, size_t pn,
                            sb_error *err) {
    snprintf(path, pn, "%s/%s/manifest.json", baselines_dir, suite);
    cJSON *j = sb_json_read_object(path, 64u << 20, err);
    if (!j) return NULL;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(j, "schema");
    if (!cJSON_IsString(schema) || strcmp(schema->valuestring, SB_MANIFEST_SCHEMA) != 0) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: schema: expected \"%s\"", path, SB_MANIFEST_SCHEMA);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

sb_status sb_baseline_verify(const char *baselines_dir, const char *suite, const char *cell,
                             sb_error *err) {
    char mpath[2048];
    cJSON *m = load_manifest(baselines_dir, suite, mpath, sizeof mpath, err);
    if (!m) return err ? err->status : SB_ERR_FORMAT;
    sb_status st = SB_ERR_FORMAT;
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(m, "cells");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cells, cell);
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(c, "sha256");
    if (!cJSON_IsString(sha) || strlen(sha->valuestring) != 64) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: cells.%s.sha256: missing or not a SHA-256", mpath, cell);
        goto done;
    }
    char path[2400], hex[65];
    snprintf(path, sizeof path, "%s/%s/%s/weights.safetensors", baselines_dir, suite, cell);
    if ((st = sb_sha256_file(path, hex, err)) != SB_OK) goto done;
    if (strcmp(hex, sha->valuestring) != 0) {
        st = sb_error_set(err, SB_ERR_FORMAT,
                          "%s: SHA-256 %.12s… differs from the manifest's %.12s… (changed since "
                          "it was blessed)", path, hex, sha->valuestring);
        goto done;
    }
    st = SB_OK;
done:
    cJSON_Delete(m);
    return st;
}

sb_status sb_baseline_environment(const char *baselines_dir, const char *suite, const char *cell,
                                  cJSON **out, sb_error *err) {
    char mpath[2048];
    *out = NULL;
    cJSON *m = load_manifest(baselines_dir, suite, mpath, sizeof mpath, err);
    if (!m) return err ? err->status : SB_ERR_FORMAT;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "cells"),
                                                      cell);
    cJSON *env = cJSON_GetObjectItemCaseSensitive(c, "environment");
    sb_status st = SB_OK;
    if (env && !cJSON_IsObject(env))
        st = sb_error_set(err, SB_ERR_FORMAT, "%s: cells.%s.environment: expected an object",
                          mpath, cell);
    else if (env && !(*out = cJSON_Duplicate(env, 1)))
        st = sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    cJSON_Delete(m);
    return st;
}

sb_status sb_run_environment(const char *run_dir, cJSON **out, sb_error *err) {
    char path[2048];
    *out = NULL;
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    cJSON *j = sb_json_read_object(path, 256u << 20, err);
    if (!j) return err ? err->status : SB_ERR_FORMAT;
    cJSON *env = cJSON_DetachItemFromObjectCaseSensitive(j, "environment");
    cJSON_Delete(j);
    if (env && !cJSON_IsObject(env)) {
        cJSON_Delete(env);
        return sb_error_set(err, SB_ERR_FORMAT, "%s: environment: expected an object", path);
    }
    *out = env;
    return SB_OK;
}

/* ---- bless ---- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits bless SUITE.json [options]\n"
            "\n"
            "Writes the baselines of every cell a baseline check of SUITE covers:\n"
            "BASELINES/<suite>/<cell>/weights.safetensors and BASELINES/<suite>/manifest.json.\n"
            "\n"
            "options:\n"
            "  --from DIR         take the runs from an existing results folder of this\n"
            "                     suite instead of running them\n"
            "  --force            replace an existing baseline\n"
            "  --baselines DIR    where baselines live (default: see README)\n"
            "  -j N               runs at once (default 1)\n");
}

static cJSON *tensor_table(const char *path, sb_error *err, char weights_hex[65]) {
    sb_st_file *f = sb_st_read(path, err);
    if (!f) return NULL;
    cJSON *t = cJSON_CreateObject();
    for (int i = 0; i < f->n_tensors; i++) {
        const sb_st_tensor *x = &f->tensors[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "dtype", sb_dtype_name(x->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < x->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)x->shape[d]));
        char hex[65];
        sb_sha256_bytes(x->data, (size_t)(x->end - x->begin), hex);
        cJSON_AddStringToObject(o, "sha256", hex);
        cJSON_AddItemToObject(t, x->name, o);
    }
    sb_st_weights_digest(f, weights_hex);
    sb_st_free(f);
    return t;
}

int sb_cmd_bless(int argc, char **argv) {
    const char *suite_path = NULL, *from = NULL, *baselines_arg = NULL, *jobs_s = NULL;
    int force = 0;
    const sb_opt opts[] = {
        {"--from", NULL, &from, NULL, 0},
        {"--baselines", NULL, &baselines_arg, NULL, 0},
        {"--jobs", "-j", &jobs_s, NULL, 1},
        {"--force", NULL, NULL, &force, 0},
    };
    int prc = sb_parse_opts(argc, argv, "bless", opts, (int)(sizeof opts / sizeof opts[0]),
                            &suite_path, usage);
    if (prc) return prc == 1 ? 0 : SB_EXIT_USAGE;
    if (!suite_path) {
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    long long jobs = 1;
    if (jobs_s && sb_parse_int(jobs_s, 1, 256, &jobs) != 0) {
        fprintf(stderr, "samebits bless: -j: expected an integer 1..256, got %s\n", jobs_s);
        return SB_EXIT_USAGE;
    }
    sb_error err = {0};
    sb_suite *s = sb_suite_load(suite_path, &err);
    if (!s) {
        fprintf(stderr, "samebits bless: %s\n", err.msg);
        return SB_EXIT_USAGE;
    }
    int rc = SB_EXIT_USAGE, n = 0, m = 0;
    sb_run_spec *specs = NULL, *want = NULL;
    sb_run_result *results = NULL;
    cJSON *manifest = NULL;
    char baselines[1024], target[1400], tmp[1400], old[1400], rdir[1400];
    tmp[0] = '\0';
    if (baselines_arg)
        snprintf(baselines, sizeof baselines, "%s", baselines_arg);
    else
        sb_default_baselines_dir(suite_path, baselines, sizeof baselines);
    snprintf(target, sizeof target, "%s/%s", baselines, s->name);
    if (sb_path_exists(target) && !force) {
        fprintf(stderr, "samebits bless: %s exists; use --force to replace it\n", target);
        goto done;
    }

    /* the cells to bless: repeat 0 of every cell a baseline check covers */
    n = sb_suite_expand(s, &specs);
    want = calloc((size_t)(n > 0 ? n : 1), sizeof *want);
    if (n < 0 || !want) goto nomem;
    for (int i = 0; i < n; i++) {
        if (specs[i].repeat != 0) continue;
        for (int c = 0; c < s->n_checks; c++)
            if (s->checks[c].kind == SB_CHECK_BASELINE &&
                sb_check_covers(&s->checks[c], &specs[i])) {
                want[m++] = specs[i];
                break;
            }
    }
    if (m == 0) {
        fprintf(stderr, "samebits bless: %s: no baseline check covers any cell; nothing to bless\n",
                suite_path);
        goto done;
    }
    results = calloc((size_t)m, sizeof *results);
    if (!results) goto nomem;

    if (from) {
        /* the results must come from this very suite file */
        char copy[1400];
        snprintf(copy, sizeof copy, "%s/suite.json", from);
        size_t len;
        char *prev = sb_read_file(copy, 16u << 20, &len, &err);
        int same = prev && len == s->text_len && memcmp(prev, s->text, len) == 0;
        free(prev);
        if (!same) {
            fprintf(stderr, "samebits bless: %s: not a results folder of %s (suite.json differs "
                            "or is missing)\n", from, suite_path);
            goto done;
        }
        snprintf(rdir, sizeof rdir, "%s", from);
    } else {
        char exe[1024];
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        char ts[32];
        strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tmv);
        snprintf(rdir, sizeof rdir, "results/%s-bless-%s-%d", s->name, ts, (int)getpid());
        char copy[1500];
        snprintf(copy, sizeof copy, "%s/suite.json", rdir);
        if (sb_self_exe(exe, sizeof exe) != 0 || sb_mkdir_p(rdir, &err) != 0 ||
            sb_write_file_atomic(copy, s->text, s->text_len, 0, &err) != SB_OK) {
            fprintf(stderr, "samebits bless: %s\n", err.msg[0] ? err.msg : "cannot start runs");
            goto done;
        }
        char suite_dir[4096];
        sb_exec_options o = {.exe = exe, .results_dir = rdir, .suite_copy = copy,
                             .suite_dir = sb_suite_dir(suite_path, suite_dir, sizeof suite_dir) == 0
                                              ? suite_dir : NULL,
                             .jobs = (int)jobs, .timeout = s->timeout, .resume = 0,
                             .progress = isatty(2)};
        if (sb_execute_runs(&o, want, m, results, &err) != SB_OK) {
            fprintf(stderr, "samebits bless: %s\n", err.msg);
            rc = SB_EXIT_RUN;
            goto done;
        }
    }

    /* build the new folder beside the target, then rename it into place */
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%d", baselines, s->name, (int)getpid());
    if (sb_mkdir_p(tmp, &err) != 0) {
        fprintf(stderr, "samebits bless: %s\n", err.msg);
        tmp[0] = '\0';
        goto done;
    }
    manifest = cJSON_CreateObject();
    cJSON_AddStringToObject(manifest, "schema", SB_MANIFEST_SCHEMA);
    cJSON_AddStringToObject(manifest, "suite", s->name);
    cJSON_AddStringToObject(manifest, "suite_sha256", s->sha256);
    char when[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    cJSON_AddStringToObject(manifest, "blessed_at", when);
    cJSON_AddStringToObject(manifest, "blas", sb_blas_info());
    cJSON *env = sb_fingerprint_collect(NULL, &err);
    if (!env) {
        fprintf(stderr, "samebits bless: %s\n", err.msg);
        goto done;
    }
    cJSON_AddItemToObject(manifest, "environment", env);
    cJSON *cells = cJSON_AddObjectToObject(manifest, "cells");
    for (int i = 0; i < m; i++) {
        char src[2048], rj[2048], dst_dir[2048], dst[2100];
        snprintf(src, sizeof src, "%s/runs/%s/weights.safetensors", rdir, want[i].id);
        snprintf(rj, sizeof rj, "%s/runs/%s/run.json", rdir, want[i].id);
        if (!from && results[i].status != SB_RUN_OK) {
            fprintf(stderr, "samebits bless: run %s %s: %s\n", want[i].id,
                    sb_run_status_name(results[i].status), results[i].message);
            rc = SB_EXIT_RUN;
            goto done;
        }
        if (from && !sb_path_exists(rj)) {
            fprintf(stderr, "samebits bless: %s: run %s did not finish\n", from, want[i].id);
            goto done;
        }
        snprintf(dst_dir, sizeof dst_dir, "%s/%s", tmp, want[i].cell);
        snprintf(dst, sizeof dst, "%s/weights.safetensors", dst_dir);
        char whex[65], fhex[65];
        cJSON *tensors = tensor_table(src, &err, whex);
        if (!tensors || sb_mkdir_p(dst_dir, &err) != 0 || sb_copy_file(src, dst, &err) != SB_OK ||
            sb_sha256_file(dst, fhex, &err) != SB_OK) {
            cJSON_Delete(tensors);
            fprintf(stderr, "samebits bless: %s\n", err.msg);
            goto done;
        }
        cJSON *c = cJSON_AddObjectToObject(cells, want[i].cell);
        char *cfg = sb_run_config_to_json(&want[i].cfg);
        cJSON_AddItemToObject(c, "config", cJSON_Parse(cfg));
        free(cfg);
        cJSON_AddStringToObject(c, "run_id", want[i].id);
        char rel[300];
        snprintf(rel, sizeof rel, "%s/weights.safetensors", want[i].cell);
        cJSON_AddStringToObject(c, "checkpoint", rel);
        cJSON_AddStringToObject(c, "sha256", fhex);
        cJSON_AddStringToObject(c, "weights_sha256", whex);
        cJSON_AddItemToObject(c, "tensors", tensors);
        /* the run's trace too, when it has one: later failures against this
         * baseline can then be attributed op by op */
        char tsrc[2100], tdst[2100], thex[65];
        snprintf(tsrc, sizeof tsrc, "%s/runs/%s/trace.sbt", rdir, want[i].id);
        snprintf(tdst, sizeof tdst, "%s/trace.sbt", dst_dir);
        if (sb_path_exists(tsrc)) {
            if (sb_copy_file(tsrc, tdst, &err) != SB_OK || sb_sha256_file(tdst, thex, &err) != SB_OK) {
                fprintf(stderr, "samebits bless: %s\n", err.msg);
                goto done;
            }
            snprintf(rel, sizeof rel, "%s/trace.sbt", want[i].cell);
            cJSON *tr = cJSON_AddObjectToObject(c, "trace");
            cJSON_AddStringToObject(tr, "path", rel);
            cJSON_AddStringToObject(tr, "sha256", thex);
        }
        cJSON *renv = NULL;
        char run_dir[2048];
        snprintf(run_dir, sizeof run_dir, "%s/runs/%s", rdir, want[i].id);
        if (sb_run_environment(run_dir, &renv, NULL) == SB_OK && renv)
            cJSON_AddItemToObject(c, "environment", renv);
    }
    char *text = cJSON_Print(manifest);
    char mpath[1500];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", tmp);
    if (!text || sb_write_file_atomic(mpath, text, strlen(text), 0, &err) != SB_OK) {
        free(text);
        fprintf(stderr, "samebits bless: %s\n", err.msg);
        goto done;
    }
    free(text);
    if (sb_path_exists(target)) { /* --force: move the old one aside first */
        snprintf(old, sizeof old, "%s/.%s.old-%d", baselines, s->name, (int)getpid());
        if (rename(target, old) != 0) {
            fprintf(stderr, "samebits bless: cannot move %s aside: %s\n", target, strerror(errno));
            goto done;
        }
        if (rename(tmp, target) != 0) {
            fprintf(stderr, "samebits bless: cannot rename into %s: %s\n", target, strerror(errno));
            rename(old, target); /* put the old one back */
            goto done;
        }
        sb_rm_rf(old);
    } else if (rename(tmp, target) != 0) {
        fprintf(stderr, "samebits bless: cannot rename into %s: %s\n", target, strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
    printf("blessed %d cell%s of %s into %s (from the runs in %s)\n", m, m == 1 ? "" : "s",
           s->name, target, rdir);
    rc = SB_EXIT_OK;
    goto done;
nomem:
    fprintf(stderr, "samebits bless: out of memory\n");
done:
    if (tmp[0]) sb_rm_rf(tmp);
    cJSON_Delete(manifest);
    free(results);
    free(want);
    free(specs);
    sb_suite_free(s);
    return rc;
}
