/* cmd_trace_diff.c — `samebits trace-diff A B`: the command-line face of
 * attrib.c. Reads two traces (run folders or trace.sbt files), walks them,
 * and prints the first divergence, the source ops, the step at which the
 * weights first differ, the growth of the difference, per-op errors over the
 * snapshot values and the ops --recheck flagged in either run — as tables,
 * or as one JSON document with --json. Exit 0 the traces agree, 1 they
 * differ (a structure mismatch included), 2 bad input or usage.
 *
 * Not here: the walk (attrib.c) or any file validation (engine/trace.c);
 * this file only formats what they return.
 */
#include "attrib.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <string.h>

static const char usage_text[] =
    "usage: samebits trace-diff A B [--json]\n"
    "\n"
    "A and B are run folders (their trace.sbt is read) or trace files. Walks both\n"
    "traces record by record in execution order and prints where they part ways:\n"
    "the first divergent step, stage and op (a source when its inputs agree,\n"
    "propagated when they already differ), every source op with the first step and\n"
    "the number of steps at which it diverged, the step at which the weights first\n"
    "differ, how the weight difference grows over the snapshot steps (max abs, max\n"
    "ULP), and per-op errors of the snapshot values. Ops that --recheck flagged as\n"
    "nondeterministic in either run are listed too.\n"
    "\n"
    "  --json   print a JSON document instead of tables\n"
    "  --help   this text\n"
    "\n"
    "exit status: 0 the traces agree, 1 they differ, 2 bad input or usage\n";

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "samebits trace-diff: %s%s%s (see 'samebits trace-diff --help')\n", msg,
            arg ? " " : "", arg ? arg : "");
    return SB_EXIT_USAGE;
}

/* Names come from files: control bytes would break a table row. */
static void clean(const char *s, char *buf, size_t n) {
    size_t o = 0;
    for (; *s && o + 5 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    buf[o] = 0;
}

static void ulp_str(uint64_t u, char *buf, size_t n) {
    if (u == UINT64_MAX) snprintf(buf, n, "NaN");
    else snprintf(buf, n, "%llu", (unsigned long long)u);
}

/* ---- tables ------------------------------------------------------------- */

static int op_width(const sb_attrib_op *ops, int n, int w) {
    char b[SB_ATTRIB_OP_NAME * 4 + 8];
    for (int i = 0; i < n; i++) {
        clean(ops[i].op, b, sizeof b);
        if ((int)strlen(b) > w) w = (int)strlen(b);
    }
    return w;
}

static void print_ops(const char *title, const sb_attrib_op *ops, int n) {
    char b[SB_ATTRIB_OP_NAME * 4 + 8];
    int w = op_width(ops, n, 2);
    printf("%s\n  %-*s  %-12s  %-10s  %s\n", title, w, "op", "stage", "first_step", "steps");
    for (int i = 0; i < n; i++) {
        clean(ops[i].op, b, sizeof b);
        printf("  %-*s  %-12s  %-10u  %u\n", w, b, sb_stage_name(ops[i].stage), ops[i].first_step,
               ops[i].steps);
    }
}

static void print_text(const sb_trace *a, const sb_trace *b, const sb_attribution *x,
                       const sb_attrib_op *nd_a, int n_nd_a, const sb_attrib_op *nd_b,
                       int n_nd_b) {
    char b1[SB_ATTRIB_OP_NAME * 4 + 8], b2[2600];
    clean(a->path, b2, sizeof b2);
    printf("A: %s (%zu records)\n", b2, a->n);
    clean(b->path, b2, sizeof b2);
    printf("B: %s (%zu records)\n", b2, b->n);
    if (x->has_divergence) {
        clean(x->first.op, b1, sizeof b1);
        printf("first divergence: step %u, %s, %s (%s)\n", x->first.step,
               sb_stage_name(x->first.stage), b1, sb_drift_kind_name(x->first_kind));
    } else {
        printf("first divergence: none\n");
    }
    if (x->n_sources > 0) print_ops("sources (inputs agree, outputs differ):", x->sources, x->n_sources);
    else printf("sources: none\n");
    if (x->weights_differ) printf("weights first differ at step %u%s\n",
                                  x->weights_first_differ_step,
                                  x->weights_first_differ_step == 0 ? " (init)" : "");
    else printf("weights: no init or optimizer output differs\n");
    if (x->n_growth > 0) {
        printf("growth of the weight difference (snapshot steps):\n  %-8s  %-10s  %s\n", "step",
               "max_abs", "max_ulp");
        for (int i = 0; i < x->n_growth; i++) {
            char u[24];
            ulp_str(x->growth[i].max_ulp, u, sizeof u);
            printf("  %-8u  %-10.3g  %s\n", x->growth[i].step, x->growth[i].max_abs, u);
        }
    }
    if (x->n_op_errors > 0) {
        int w = 2;
        for (int i = 0; i < x->n_op_errors; i++) {
            clean(x->op_errors[i].op, b1, sizeof b1);
            if ((int)strlen(b1) > w) w = (int)strlen(b1);
        }
        printf("op errors (snapshot values):\n  %-*s  %-12s  %-10s  %-10s  %-10s  %s\n", w, "op",
               "stage", "max_abs", "max_rel", "max_ulp", "step");
        for (int i = 0; i < x->n_op_errors; i++) {
            const sb_attrib_op_error *e = &x->op_errors[i];
            char u[24];
            ulp_str(e->max_ulp, u, sizeof u);
            clean(e->op, b1, sizeof b1);
            printf("  %-*s  %-12s  %-10.3g  %-10.3g  %-10s  %u\n", w, b1, sb_stage_name(e->stage),
                   e->max_abs, e->max_rel, u, e->step);
        }
    }
    if (n_nd_a > 0) print_ops("nondeterministic ops in A (--recheck):", nd_a, n_nd_a);
    if (n_nd_b > 0) print_ops("nondeterministic ops in B (--recheck):", nd_b, n_nd_b);
    if (x->structure_differs) {
        clean(x->structure_msg, b2, sizeof b2);
        printf("structure differs: %s\n", b2);
    }
    if (x->note[0]) printf("note: %s\n", x->note);
    if (x->agree)
        printf("verdict: AGREE: %zu records, every output hash equal\n", x->records);
    else
        printf("verdict: DIFFER: %d source op%s over %zu records walked%s\n", x->n_sources,
               x->n_sources == 1 ? "" : "s", x->records,
               x->structure_differs ? ", then the structure differs" : "");
}

/* ---- JSON --------------------------------------------------------------- */

static int print_json(const sb_trace *a, const sb_trace *b, const sb_attribution *x,
                      const sb_attrib_op *nd_a, int n_nd_a, const sb_attrib_op *nd_b,
                      int n_nd_b) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return -1;
    cJSON_AddStringToObject(root, "schema", "samebits.trace_diff/1");
    cJSON_AddStringToObject(root, "a", a->path);
    cJSON_AddStringToObject(root, "b", b->path);
    cJSON_AddNumberToObject(root, "records_a", (double)a->n);
    cJSON_AddNumberToObject(root, "records_b", (double)b->n);
    cJSON_AddNumberToObject(root, "records_compared", (double)x->records);
    cJSON_AddStringToObject(root, "verdict", x->agree ? "agree" : "differ");
    cJSON_AddBoolToObject(root, "agree", x->agree);
    sb_attribution_add_json(root, x, 1);
    cJSON *nd = cJSON_AddObjectToObject(root, "nondeterministic_ops");
    cJSON_AddItemToObject(nd, "a", sb_attrib_ops_json(nd_a, n_nd_a));
    cJSON_AddItemToObject(nd, "b", sb_attrib_ops_json(nd_b, n_nd_b));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return -1;
    puts(s);
    cJSON_free(s);
    return 0;
}

/* ---- the command -------------------------------------------------------- */

int sb_cmd_trace_diff(int argc, char **argv) {
    const char *args[2] = {NULL, NULL};
    int nargs = 0, json = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!opts_done && arg[0] == '-' && arg[1]) {
            if (!strcmp(arg, "--")) opts_done = 1;
            else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
                fputs(usage_text, stdout);
                return SB_EXIT_OK;
            } else if (!strcmp(arg, "--json")) json = 1;
            else return usage_error("unknown option", arg);
            continue;
        }
        if (nargs == 2) return usage_error("too many arguments:", arg);
        args[nargs++] = arg;
    }
    if (nargs != 2) return usage_error("expected two run folders or trace files", NULL);

    int rc = SB_EXIT_USAGE;
    sb_error err = {0};
    sb_attribution x = {0};
    sb_attrib_op *nd_a = NULL, *nd_b = NULL;
    int n_nd_a = 0, n_nd_b = 0, have_x = 0;
    char pa[2048], pb[2048];
    sb_trace_path_of(args[0], pa, sizeof pa);
    sb_trace_path_of(args[1], pb, sizeof pb);
    sb_trace *a = sb_trace_read(pa, &err);
    sb_trace *b = a ? sb_trace_read(pb, &err) : NULL;
    if (!a || !b) goto fail;
    if (sb_attrib_compare(a, b, &x, &err) != SB_OK) goto fail;
    have_x = 1;
    if (sb_attrib_nondeterministic(a, &nd_a, &n_nd_a, &err) != SB_OK ||
        sb_attrib_nondeterministic(b, &nd_b, &n_nd_b, &err) != SB_OK)
        goto fail;
    if (json) {
        if (print_json(a, b, &x, nd_a, n_nd_a, nd_b, n_nd_b) != 0) {
            sb_error_set(&err, SB_ERR_NOMEM, "out of memory printing JSON");
            goto fail;
        }
    } else {
        print_text(a, b, &x, nd_a, n_nd_a, nd_b, n_nd_b);
    }
    rc = x.agree ? SB_EXIT_OK : SB_EXIT_DRIFT;
fail:
    if (rc == SB_EXIT_USAGE) fprintf(stderr, "samebits trace-diff: %s\n", err.msg);
    if (have_x) sb_attribution_free(&x);
    free(nd_a);
    free(nd_b);
    sb_trace_free(a);
    sb_trace_free(b);
    return rc;
}
