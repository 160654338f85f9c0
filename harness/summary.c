/* summary.c — summary.json (schema samebits.summary/1, documented in
 * README.md "summary.json") and the terminal verdict table.
 *
 * Not here: evaluating anything; this file only renders results. The one
 * thing it reads itself is each run's trace.sbt, for the ops its --recheck
 * flagged ("nondeterministic_ops"); drift attribution of comparisons comes
 * ready-made from checks.c. The top-level "environment" is this (the
 * harness's) process's fingerprint; each run's own is in its run.json.
 */
#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <time.h>

int sb_verdict_exit_code(const sb_run_result *runs, int n_runs, const sb_check_result *checks,
                         int n_checks) {
    for (int i = 0; i < n_runs; i++)
        if (runs[i].status != SB_RUN_OK) return SB_EXIT_RUN;
    for (int c = 0; c < n_checks; c++)
        if (checks[c].status == SB_CHECK_ERROR) return SB_EXIT_USAGE;
    for (int c = 0; c < n_checks; c++)
        if (checks[c].status == SB_CHECK_FAIL) return SB_EXIT_DRIFT;
    return SB_EXIT_OK;
}

static cJSON *expect_json(const sb_tolerance *t) {
    if (t->bitwise) return cJSON_CreateString("bitwise");
    cJSON *o = cJSON_CreateObject();
    if (t->has_atol) cJSON_AddNumberToObject(o, "atol", t->atol);
    if (t->has_rtol) cJSON_AddNumberToObject(o, "rtol", t->rtol);
    if (t->has_ulp) cJSON_AddNumberToObject(o, "ulp", (double)t->ulp);
    return o;
}

/* Adds "nondeterministic_ops" to a run's object when its trace has ops that
 * --recheck flagged, or "trace_error" when the trace exists but cannot be
 * read. A run without a trace gets neither. */
static void add_recheck_json(cJSON *o, const sb_run_result *r) {
    char path[2048];
    snprintf(path, sizeof path, "%s/trace.sbt", r->dir);
    if (!sb_path_exists(path)) return;
    sb_error err = {0};
    sb_attrib_op *ops = NULL;
    int n = 0;
    sb_trace *t = sb_trace_read(path, &err);
    if (!t || sb_attrib_nondeterministic(t, &ops, &n, &err) != SB_OK)
        cJSON_AddStringToObject(o, "trace_error", err.msg);
    else if (n > 0)
        cJSON_AddItemToObject(o, "nondeterministic_ops", sb_attrib_ops_json(ops, n));
    free(ops);
    sb_trace_free(t);
}

/* The environment keys of a baseline comparison: "environment_differs"
 * (fields that can change bits, baseline vs run) when both sides record an
 * environment, else "environment_note"; and, when it was evaluated, which
 * tolerance it used ("expect_used": "expect" or "fallback"). */
static void add_environment_json(cJSON *x, const sb_comparison *c) {
    if (c->env_compared) {
        cJSON *d = cJSON_AddArrayToObject(x, "environment_differs");
        for (int i = 0; i < c->n_env_diff; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "field", c->env_diff[i].field);
            cJSON_AddStringToObject(o, "baseline", c->env_diff[i].a);
            cJSON_AddStringToObject(o, "run", c->env_diff[i].b);
            cJSON_AddItemToArray(d, o);
        }
    } else if (c->env_note[0]) {
        cJSON_AddStringToObject(x, "environment_note", c->env_note);
    }
    if (c->ok) cJSON_AddStringToObject(x, "expect_used", c->used_fallback ? "fallback" : "expect");
}

/* A finite number, or null (JSON has no NaN/Inf). */
static cJSON *num_or_null(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

sb_status sb_write_summary(const char *results_dir, const sb_suite *s, const sb_run_result *runs,
                           int n_runs, const sb_check_result *checks, int n_checks,
                           double seconds, int exit_code, sb_error *err) {
    cJSON *env = sb_fingerprint_collect(NULL, err);
    if (!env) return err ? err->status : SB_ERR_NOMEM;
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        cJSON_Delete(env);
        return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    }
    cJSON_AddStringToObject(root, "schema", SB_SUMMARY_SCHEMA);
    cJSON_AddStringToObject(root, "suite", s->name);
    cJSON_AddStringToObject(root, "suite_sha256", s->sha256);
    cJSON_AddStringToObject(root, "suite_file", "suite.json");
    char when[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    cJSON_AddStringToObject(root, "finished_at", when);
    cJSON_AddNumberToObject(root, "seconds", seconds);
    cJSON_AddStringToObject(root, "blas", sb_blas_info());
    cJSON_AddItemToObject(root, "environment", env);
    cJSON_AddNumberToObject(root, "exit_code", exit_code);
    const char *verdict = exit_code == 0 ? "pass" : exit_code == 1 ? "fail" : "error";
    cJSON_AddStringToObject(root, "verdict", verdict);

    cJSON *jr = cJSON_AddArrayToObject(root, "runs");
    for (int i = 0; i < n_runs; i++) {
        const sb_run_result *r = &runs[i];
        const sb_run_config *c = &r->spec->cfg;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", r->spec->id);
        cJSON_AddStringToObject(o, "cell", r->spec->cell);
        cJSON *cfg = cJSON_AddObjectToObject(o, "config");
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
        cJSON_AddNumberToObject(cfg, "seed", (double)c->seed);
        cJSON_AddStringToObject(cfg, "seed_str", seed);
        cJSON_AddStringToObject(cfg, "backend", c->backend);
        cJSON_AddStringToObject(cfg, "mode", sb_mode_name(c->mode));
        cJSON_AddNumberToObject(cfg, "threads", c->threads);
        cJSON_AddNumberToObject(cfg, "repeat", r->spec->repeat);
        cJSON_AddBoolToObject(cfg, "perturb", c->perturb);
        cJSON_AddStringToObject(o, "status", sb_run_status_name(r->status));
        if (r->status == SB_RUN_OK) {
            cJSON_AddStringToObject(o, "checkpoint", r->rel_checkpoint);
            cJSON_AddStringToObject(o, "sha256", r->sha256);
            cJSON_AddStringToObject(o, "weights_sha256", r->weights_sha256);
            cJSON_AddItemToObject(o, "final_loss", num_or_null(r->final_loss));
        } else {
            cJSON_AddNullToObject(o, "checkpoint");
            cJSON_AddNullToObject(o, "sha256");
            cJSON_AddNullToObject(o, "weights_sha256");
            cJSON_AddStringToObject(o, "error", r->message);
        }
        char rel[600];
        snprintf(rel, sizeof rel, "runs/%s", r->spec->id);
        cJSON_AddStringToObject(o, "dir", rel);
        cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
        cJSON_AddBoolToObject(o, "resumed", r->resumed);
        cJSON_AddNumberToObject(o, "seconds", r->seconds);
        add_recheck_json(o, r);
        cJSON_AddItemToArray(jr, o);
    }

    cJSON *jc = cJSON_AddArrayToObject(root, "checks");
    for (int i = 0; i < n_checks; i++) {
        const sb_check_result *r = &checks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->check->name);
        cJSON_AddStringToObject(o, "kind", sb_check_kind_name(r->check->kind));
        if (r->check->kind == SB_CHECK_CROSS)
            cJSON_AddStringToObject(o, "axis", sb_axis_name(r->check->axis));
        cJSON_AddItemToObject(o, "expect", expect_json(&r->check->expect));
        if (r->check->has_fallback)
            cJSON_AddItemToObject(o, "fallback", expect_json(&r->check->fallback));
        cJSON_AddStringToObject(o, "status", sb_check_status_name(r->status));
        if (r->message[0]) cJSON_AddStringToObject(o, "message", r->message);
        cJSON *cmps = cJSON_AddArrayToObject(o, "comparisons");
        for (int k = 0; k < r->n; k++) {
            const sb_comparison *c = &r->cmp[k];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "a", c->a);
            cJSON_AddStringToObject(x, "b", c->b);
            if (!c->ok) {
                cJSON_AddStringToObject(x, "status", "error");
                cJSON_AddStringToObject(x, "error", c->error);
            } else {
                cJSON_AddStringToObject(x, "status", c->pass ? "pass" : "fail");
                cJSON_AddBoolToObject(x, "bitwise_equal", c->bitwise_equal);
                cJSON_AddItemToObject(x, "max_abs", num_or_null(c->max_abs));
                cJSON_AddItemToObject(x, "max_rel", num_or_null(c->max_rel));
                if (c->max_ulp == UINT64_MAX)
                    cJSON_AddNullToObject(x, "max_ulp"); /* a NaN met a number */
                else
                    cJSON_AddNumberToObject(x, "max_ulp", (double)c->max_ulp);
                cJSON_AddNumberToObject(x, "mismatched", (double)c->mismatched);
                cJSON_AddNumberToObject(x, "elements", (double)c->total);
                if (c->worst_tensor[0])
                    cJSON_AddStringToObject(x, "worst_tensor", c->worst_tensor);
                else
                    cJSON_AddNullToObject(x, "worst_tensor");
                if (c->attrib)
                    sb_attribution_add_json(x, c->attrib,
                                            c->used_fallback || !r->check->expect.bitwise);
                else if (c->attribution_error[0])
                    cJSON_AddStringToObject(x, "attribution_error", c->attribution_error);
            }
            if (r->check->kind == SB_CHECK_BASELINE) add_environment_json(x, c);
            cJSON_AddItemToArray(cmps, x);
        }
        cJSON_AddItemToArray(jc, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    char path[2048];
    snprintf(path, sizeof path, "%s/summary.json", results_dir);
    size_t len = strlen(text);
    text[len] = '\0';
    sb_status st = sb_write_file_atomic(path, text, len, 0, err);
    free(text);
    return st;
}

/* ---- terminal table ---- */

static void ulp_str(uint64_t u, char *buf, size_t n) {
    if (u == UINT64_MAX)
        snprintf(buf, n, "NaN");
    else
        snprintf(buf, n, "%llu", (unsigned long long)u);
}

/* Where a failing comparison's drift comes from, in a few words. */
static void source_str(const sb_comparison *c, char *buf, size_t n) {
    const sb_attribution *x = c->attrib;
    if (!x) {
        snprintf(buf, n, "no attribution (%s)", c->attribution_error);
    } else if (x->n_sources > 0) {
        const sb_attrib_op *o = &x->sources[0];
        char more[32] = "";
        if (x->n_sources > 1) snprintf(more, sizeof more, " +%d more", x->n_sources - 1);
        snprintf(buf, n, "source: %s (%s) at step %u%s", o->op, sb_stage_name(o->stage),
                 o->first_step, more);
    } else if (x->has_divergence) {
        snprintf(buf, n, "first divergence: %s (%s) at step %u (%s)", x->first.op,
                 sb_stage_name(x->first.stage), x->first.step, sb_drift_kind_name(x->first_kind));
    } else if (x->structure_differs) {
        snprintf(buf, n, "traces differ in structure at %s", x->structure_msg);
    } else {
        snprintf(buf, n, "traces agree (not in any traced op)");
    }
}

void sb_print_verdict(FILE *f, const sb_suite *s, const sb_run_result *runs, int n_runs,
                      const sb_check_result *checks, int n_checks, const char *results_dir,
                      double seconds, int exit_code) {
    int color = sb_use_color(f);
    const char *red = color ? "\033[31m" : "", *green = color ? "\033[32m" : "",
               *yellow = color ? "\033[33m" : "", *off = color ? "\033[0m" : "";
    int ok = 0;
    for (int i = 0; i < n_runs; i++) ok += runs[i].status == SB_RUN_OK;
    fprintf(f, "suite %s: %d runs (%d ok) in %.1f s\n", s->name, n_runs, ok, seconds);
    for (int i = 0; i < n_runs; i++)
        if (runs[i].status != SB_RUN_OK)
            fprintf(f, "  %srun %s %s%s: %s\n", red, runs[i].spec->id,
                    sb_run_status_name(runs[i].status), off, runs[i].message);
    int wname = 5; /* the CHECK column fits the longest check name */
    for (int c = 0; c < n_checks; c++) {
        int len = (int)strlen(checks[c].check->name);
        if (len > wname) wname = len;
    }
    fprintf(f, "\n%-*s %-10s %-22s %-6s %-6s %s\n", wname, "CHECK", "KIND", "EXPECT", "AGREE", "STATUS",
            "SOURCE; WORST");
    int failed = 0;
    for (int c = 0; c < n_checks; c++) {
        const sb_check_result *r = &checks[c];
        char expect[96], agree[32], worst[2200] = "";
        sb_tolerance_str(&r->check->expect, expect, sizeof expect);
        int good = 0;
        const sb_comparison *w = NULL, *attributed = NULL;
        for (int k = 0; k < r->n; k++) {
            if (r->cmp[k].ok && r->cmp[k].pass) good++;
            else if (r->cmp[k].ok && (!w || r->cmp[k].max_ulp > w->max_ulp)) w = &r->cmp[k];
            if (r->cmp[k].ok && !r->cmp[k].pass && r->cmp[k].attrib && !attributed)
                attributed = &r->cmp[k];
        }
        /* the worst comparison's attribution, else the first failing one's */
        if (w && w->attrib) attributed = w;
        snprintf(agree, sizeof agree, "%d/%d", good, r->n);
        if (r->status == SB_CHECK_ERROR) {
            snprintf(worst, sizeof worst, "%s", r->message);
        } else if (w) {
            char u[24], src[400];
            ulp_str(w->max_ulp, u, sizeof u);
            source_str(attributed ? attributed : w, src, sizeof src);
            snprintf(worst, sizeof worst,
                     "%s; %s vs %s: %s max_ulp %s max_abs %.3g (%llu/%llu differ)", src, w->a,
                     w->b, w->worst_tensor, u, w->max_abs, (unsigned long long)w->mismatched,
                     (unsigned long long)w->total);
        }
        if (r->status != SB_CHECK_ERROR && r->message[0]) { /* another environment */
            size_t o = strlen(worst);
            snprintf(worst + o, sizeof worst - o, "%s%s", o ? "; " : "", r->message);
        }
        const char *col = r->status == SB_CHECK_PASS ? green : r->status == SB_CHECK_FAIL ? red : yellow;
        if (r->status != SB_CHECK_PASS) failed++;
        fprintf(f, "%-*s %-10s %-22s %-6s %s%-6s%s %s\n", wname, r->check->name,
                sb_check_kind_name(r->check->kind), expect, agree, col,
                r->status == SB_CHECK_PASS ? "pass" : r->status == SB_CHECK_FAIL ? "FAIL" : "ERROR",
                off, worst);
    }
    const char *v = exit_code == 0 ? "PASS" : exit_code == 1 ? "FAIL" : exit_code == 3 ? "RUN FAILED" : "ERROR";
    fprintf(f, "\nverdict: %s%s%s (%d of %d checks did not pass; exit %d)\nresults: %s\n",
            exit_code == 0 ? green : red, v, off, failed, n_checks, exit_code, results_dir);
}
