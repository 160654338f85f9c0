/* checks.c — evaluating a suite's checks on finished runs.
 *
 *   repeatable — for every covered cell, repeat 0 against each other repeat.
 *   cross      — covered cells are grouped by every axis but `axis`; in each
 *                group of two or more, the first cell (matrix order) against
 *                each other, repeat 0 of each.
 *   baseline   — every covered run against baselines/<suite>/<cell>/
 *                weights.safetensors.
 *
 * A check passes when it has at least one comparison and all of them agree
 * under its expectation; it fails when one disagrees; it is an error when a
 * comparison cannot be made (a run failed, a baseline is missing or
 * unreadable) or when it covers nothing (a check that cannot fail must not
 * pass silently).
 *
 * Every evaluated comparison that does not pass gets drift attribution
 * (attrib.h): the two runs' RUN_DIR/trace.sbt walked record by record; a
 * baseline's trace is BASELINES/<suite>/<cell>/trace.sbt when it exists. A
 * missing or unreadable trace leaves the comparison as it is, with
 * attribution_error naming the file: attribution never turns a fail into a
 * pass or an error.
 *
 * A baseline comparison also compares environments (fingerprint.h): the
 * run's run.json "environment" against the one the manifest records for the
 * baseline's cell, keeping the fields that can change bits for the run's
 * backend. When they differ and the check has a "fallback" tolerance, that
 * tolerance replaces "expect" for the comparison; the check's message names
 * the differing fields ("baseline from another environment: blas.core
 * SkylakeX → Haswell") when the check fails or used its fallback. A side
 * that records no environment is noted, never a difference: the comparison
 * then keeps "expect".
 *
 * Not here: running, printing (summary.c), the walk itself (attrib.c).
 */
#include "harness.h"

#include <string.h>

const char *sb_check_status_name(sb_check_status s) {
    return s == SB_CHECK_PASS ? "pass" : s == SB_CHECK_FAIL ? "fail" : "error";
}

static int add_cmp(sb_check_result *r, int *cap) {
    if (r->n == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        sb_comparison *p = realloc(r->cmp, (size_t)nc * sizeof *p);
        if (!p) return -1;
        r->cmp = p;
        *cap = nc;
    }
    memset(&r->cmp[r->n], 0, sizeof r->cmp[r->n]);
    return r->n++;
}

/* Attaches attribution to comparison c: run a's trace against trace_b, or,
 * when trace_b is NULL, the reason there is none (no_trace). */
static void attribute(sb_comparison *c, const sb_run_result *a, const char *trace_b,
                      const char *no_trace) {
    char trace_a[2048];
    snprintf(trace_a, sizeof trace_a, "%s/trace.sbt", a->dir);
    if (!trace_b) {
        snprintf(c->attribution_error, sizeof c->attribution_error, "%s", no_trace);
        return;
    }
    const char *missing = !sb_path_exists(trace_a) ? trace_a
                          : !sb_path_exists(trace_b) ? trace_b : NULL;
    if (missing) {
        snprintf(c->attribution_error, sizeof c->attribution_error, "no trace at %s", missing);
        return;
    }
    sb_attribution *x = calloc(1, sizeof *x);
    sb_error err = {0};
    if (!x) {
        snprintf(c->attribution_error, sizeof c->attribution_error, "out of memory");
        return;
    }
    if (sb_attrib_files(trace_a, trace_b, x, &err) != SB_OK) {
        snprintf(c->attribution_error, sizeof c->attribution_error, "%s", err.msg);
        free(x);
        return;
    }
    if (x->agree)
        snprintf(x->note, sizeof x->note,
                 "traces agree: the weights differ but every traced op output agrees "
                 "(the difference is not in any traced op)");
    c->attrib = x;
}

/* Compares the checkpoint of run a against file path_b (label b); when they
 * do not agree, attributes the drift with trace_b (NULL: none, why in
 * no_trace). */
static void compare(sb_comparison *c, const sb_run_result *a, const char *path_b,
                    const char *label_b, const sb_run_result *b, const char *trace_b,
                    const char *no_trace, const sb_tolerance *tol) {
    snprintf(c->a, sizeof c->a, "%s", a->spec->id);
    snprintf(c->b, sizeof c->b, "%s", label_b);
    if (a->status != SB_RUN_OK || (b && b->status != SB_RUN_OK)) {
        const sb_run_result *bad = a->status != SB_RUN_OK ? a : b;
        snprintf(c->error, sizeof c->error, "run %s %s", bad->spec->id,
                 sb_run_status_name(bad->status));
        return;
    }
    char path_a[2048];
    snprintf(path_a, sizeof path_a, "%s/weights.safetensors", a->dir);
    sb_file_diff d;
    sb_error err = {0};
    if (sb_diff_files(path_a, path_b, tol, &d, &err) != SB_OK) {
        snprintf(c->error, sizeof c->error, "%s", err.msg);
        return;
    }
    c->ok = 1;
    c->pass = tol->bitwise ? d.bitwise_equal : d.within;
    c->bitwise_equal = d.bitwise_equal;
    c->max_abs = d.max_abs;
    c->max_rel = d.max_rel;
    c->max_ulp = d.max_ulp;
    c->mismatched = d.mismatched;
    c->total = d.total;
    snprintf(c->worst_tensor, sizeof c->worst_tensor, "%s", d.worst_tensor);
    sb_file_diff_free(&d);
    if (!c->pass) attribute(c, a, trace_b, no_trace);
}

/* Compares the environment of run a (cell of spec si) with its baseline's;
 * fills c's env_* fields. */
static void compare_environments(sb_comparison *c, const char *baselines_dir, const char *suite,
                                 const sb_run_spec *si, const sb_run_result *a) {
    cJSON *base = NULL, *run = NULL;
    sb_error err = {0};
    if (sb_baseline_environment(baselines_dir, suite, si->cell, &base, &err) != SB_OK)
        snprintf(c->env_note, sizeof c->env_note, "%s", err.msg);
    else if (!base)
        snprintf(c->env_note, sizeof c->env_note,
                 "the baseline records no environment for %s (blessed before fingerprints; "
                 "bless it again to record one)", si->cell);
    else if (sb_run_environment(a->dir, &run, &err) != SB_OK)
        snprintf(c->env_note, sizeof c->env_note, "%s", err.msg);
    else if (!run)
        snprintf(c->env_note, sizeof c->env_note, "%s/run.json records no environment", a->dir);
    else if (sb_fingerprint_diff(base, run, si->cfg.backend, &c->env_diff, &c->n_env_diff, &err) !=
             SB_OK)
        snprintf(c->env_note, sizeof c->env_note, "%s", err.msg);
    else
        c->env_compared = 1;
    cJSON_Delete(base);
    cJSON_Delete(run);
}

/* The message of a baseline check whose baseline comes from another
 * environment: when it used its fallback, or when it failed. */
static void environment_message(sb_check_result *r) {
    const sb_comparison *d = NULL;
    int fallbacks = 0;
    for (int k = 0; k < r->n; k++) {
        const sb_comparison *c = &r->cmp[k];
        fallbacks += c->used_fallback;
        /* name the differences of a failing comparison first, else any */
        if (c->n_env_diff > 0 && (!d || (c->ok && !c->pass && (d->pass || !d->ok)))) d = c;
    }
    if (!d || r->message[0] || (r->status != SB_CHECK_FAIL && !fallbacks)) return;
    char diff[700];
    sb_fingerprint_diff_str(d->env_diff, d->n_env_diff, diff, sizeof diff);
    if (fallbacks) {
        char tol[96];
        sb_tolerance_str(&r->check->fallback, tol, sizeof tol);
        snprintf(r->message, sizeof r->message,
                 "used the fallback tolerance (%s) in %d of %d comparisons: baseline from "
                 "another environment: %s", tol, fallbacks, r->n, diff);
    } else {
        snprintf(r->message, sizeof r->message, "baseline from another environment: %s", diff);
    }
}

/* True when runs x and y are at the same matrix point except along `axis`. */
static int same_but(const sb_run_config *x, const sb_run_config *y, int axis) {
    for (int a = 0; a < SB_AXIS_COUNT; a++) {
        if (a == axis) continue;
        char vx[32], vy[32];
        sb_axis_value(x, (sb_axis)a, vx, sizeof vx);
        sb_axis_value(y, (sb_axis)a, vy, sizeof vy);
        if (strcmp(vx, vy) != 0) return 0;
    }
    return 1;
}

static int eval_one(const sb_suite *s, const sb_check *ck, const sb_run_spec *specs,
                    const sb_run_result *res, int n, const char *baselines_dir,
                    sb_check_result *r) {
    int cap = 0;
    r->check = ck;
    int *used = calloc((size_t)n + 1, sizeof *used);
    if (!used) return -1;
    for (int i = 0; i < n; i++) {
        const sb_run_spec *si = &specs[i];
        if (!sb_check_covers(ck, si)) continue;
        if (ck->kind == SB_CHECK_REPEATABLE) {
            if (si->repeat != 0) continue;
            for (int j = i + 1; j < n; j++) {
                if (strcmp(specs[j].cell, si->cell) != 0) continue;
                int k = add_cmp(r, &cap);
                if (k < 0) goto nomem;
                char path_b[2048], trace_b[2048];
                snprintf(path_b, sizeof path_b, "%s/weights.safetensors", res[j].dir);
                snprintf(trace_b, sizeof trace_b, "%s/trace.sbt", res[j].dir);
                compare(&r->cmp[k], &res[i], path_b, specs[j].id, &res[j], trace_b, NULL,
                        &ck->expect);
            }
        } else if (ck->kind == SB_CHECK_CROSS) {
            if (si->repeat != 0 || used[i]) continue;
            used[i] = 1; /* i heads its group: compare it with every later peer */
            for (int j = i + 1; j < n; j++) {
                if (specs[j].repeat != 0 || used[j]) continue;
                if (!sb_check_covers(ck, &specs[j])) continue;
                if (specs[j].case_index != si->case_index) continue;
                if (!same_but(&si->cfg, &specs[j].cfg, ck->axis)) continue;
                used[j] = 1;
                int k = add_cmp(r, &cap);
                if (k < 0) goto nomem;
                char path_b[2048], trace_b[2048];
                snprintf(path_b, sizeof path_b, "%s/weights.safetensors", res[j].dir);
                snprintf(trace_b, sizeof trace_b, "%s/trace.sbt", res[j].dir);
                compare(&r->cmp[k], &res[i], path_b, specs[j].id, &res[j], trace_b, NULL,
                        &ck->expect);
            }
        } else { /* baseline */
            int k = add_cmp(r, &cap);
            if (k < 0) goto nomem;
            char path_b[2048], label[160];
            snprintf(path_b, sizeof path_b, "%s/%s/%s/weights.safetensors", baselines_dir, s->name,
                     si->cell);
            snprintf(label, sizeof label, "baseline:%s", si->cell);
            if (!sb_path_exists(path_b)) {
                snprintf(r->cmp[k].a, sizeof r->cmp[k].a, "%s", si->id);
                snprintf(r->cmp[k].b, sizeof r->cmp[k].b, "%s", label);
                snprintf(r->cmp[k].error, sizeof r->cmp[k].error,
                         "no baseline at %s (run: samebits bless %s)", path_b, s->path);
                continue;
            }
            sb_error verr = {0};
            if (sb_baseline_verify(baselines_dir, s->name, si->cell, &verr) != SB_OK) {
                snprintf(r->cmp[k].a, sizeof r->cmp[k].a, "%s", si->id);
                snprintf(r->cmp[k].b, sizeof r->cmp[k].b, "%s", label);
                snprintf(r->cmp[k].error, sizeof r->cmp[k].error, "%s", verr.msg);
                continue;
            }
            char trace_b[2048], no_trace[2200];
            snprintf(trace_b, sizeof trace_b, "%s/%s/%s/trace.sbt", baselines_dir, s->name,
                     si->cell);
            snprintf(no_trace, sizeof no_trace, "baseline has no trace (%s)", trace_b);
            const sb_tolerance *tol = &ck->expect;
            if (res[i].status == SB_RUN_OK) {
                compare_environments(&r->cmp[k], baselines_dir, s->name, si, &res[i]);
                if (ck->has_fallback && r->cmp[k].n_env_diff > 0) {
                    tol = &ck->fallback;
                    r->cmp[k].used_fallback = 1;
                }
            }
            compare(&r->cmp[k], &res[i], path_b, label, NULL,
                    sb_path_exists(trace_b) ? trace_b : NULL, no_trace, tol);
        }
    }
    free(used);
    r->status = SB_CHECK_PASS;
    if (r->n == 0) {
        r->status = SB_CHECK_ERROR;
        snprintf(r->message, sizeof r->message, "covers no comparisons (check \"where\")");
    }
    for (int k = 0; k < r->n; k++) {
        if (!r->cmp[k].ok) {
            r->status = SB_CHECK_ERROR;
            if (!r->message[0]) snprintf(r->message, sizeof r->message, "%s", r->cmp[k].error);
        } else if (!r->cmp[k].pass && r->status == SB_CHECK_PASS) {
            r->status = SB_CHECK_FAIL;
        }
    }
    if (ck->kind == SB_CHECK_BASELINE && r->status != SB_CHECK_ERROR) environment_message(r);
    return 0;
nomem:
    free(used);
    return -1;
}

sb_status sb_evaluate_checks(const sb_suite *s, const sb_run_spec *specs,
                             const sb_run_result *results, int n, const char *results_dir,
                             const char *baselines_dir, sb_check_result **out, sb_error *err) {
    SB_UNUSED(results_dir);
    sb_check_result *r = calloc((size_t)s->n_checks, sizeof *r);
    if (!r) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    for (int c = 0; c < s->n_checks; c++) {
        if (eval_one(s, &s->checks[c], specs, results, n, baselines_dir, &r[c]) != 0) {
            sb_check_results_free(r, s->n_checks);
            return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
        }
    }
    *out = r;
    return SB_OK;
}

void sb_check_results_free(sb_check_result *r, int n) {
    if (!r) return;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < r[i].n; k++) {
            sb_attribution_free(r[i].cmp[k].attrib);
            free(r[i].cmp[k].attrib);
            free(r[i].cmp[k].env_diff);
        }
        free(r[i].cmp);
    }
    free(r);
}
