/* report_junit.c — junit.xml: the verdict in the JUnit XML shape CI systems
 * read (Jenkins, GitLab, GitHub actions' test reporters; the Ant/Jenkins
 * junit-10 form, tests/junit.xsd).
 *
 *   <testsuites>
 *     <testsuite name=SUITE …>          one per suite
 *       <properties> suite_sha256, finished_at, exit_code, verdict, blas
 *       <testcase classname="SUITE.runs" name=RUN>           per run; <error> unless ok
 *       <testcase classname="SUITE.CHECK" name=CHECK>        per check; <failure> / <error>
 *       <testcase classname="SUITE.CHECK" name="A vs B">     per comparison
 *
 * A failing comparison's <failure message> carries the worst tensor, max
 * ULP / abs / rel and the source op and stage; its text the whole
 * attribution. tests counts testcases, failures those with <failure>,
 * errors those with <error>; nothing is skipped. time: a run's wall time,
 * 0 for checks and comparisons (not timed separately), the invocation's
 * for the suite.
 *
 * Not here: loading the results (report.c).
 */
#include "report.h"

#include <cjson/cJSON.h>
#include <string.h>

/* What one comparison's failure says in one line. */
static void cmp_message(const cJSON *x, char *buf, size_t n) {
    char ulp[32], abs_[32], rel[32], src[640];
    sb_report_fmt_count(x, "max_ulp", ulp, sizeof ulp);
    sb_report_fmt_num(x, "max_abs", abs_, sizeof abs_);
    sb_report_fmt_num(x, "max_rel", rel, sizeof rel);
    sb_report_source_str(x, src, sizeof src);
    const char *worst = sb_report_str(x, "worst_tensor");
    char mism[32], elems[32];
    sb_report_fmt_count(x, "mismatched", mism, sizeof mism);
    sb_report_fmt_count(x, "elements", elems, sizeof elems);
    snprintf(buf, n, "worst tensor %s: max ULP %s, max abs %s, max rel %s (%s of %s elements disagree)%s%s",
             worst ? worst : "\xe2\x80\x94", ulp, abs_, rel, mism, elems, src[0] ? "; " : "", src);
}

/* The attribution as text lines, for a failure's body. */
static void cmp_details(sb_text *t, const cJSON *x) {
    char line[1024];
    const char *s;
    const cJSON *fd = cJSON_GetObjectItemCaseSensitive(x, "first_divergence");
    double v;
    if (cJSON_IsObject(fd) && sb_report_num(fd, "step", &v)) {
        const char *op = sb_report_str(fd, "op"), *st = sb_report_str(fd, "stage"),
                   *kind = sb_report_str(fd, "kind");
        snprintf(line, sizeof line, "first divergence: step %.0f, %s (%s), %s\n", v,
                 op ? op : "?", st ? st : "?", kind ? kind : "?");
        sb_text_xml(t, line);
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(x, "sources")) {
        double first = 0, steps = 0;
        sb_report_num(o, "first_step", &first);
        sb_report_num(o, "steps", &steps);
        const char *op = sb_report_str(o, "op"), *st = sb_report_str(o, "stage");
        snprintf(line, sizeof line, "source: %s (%s) first at step %.0f, at %.0f steps\n",
                 op ? op : "?", st ? st : "?", first, steps);
        sb_text_xml(t, line);
    }
    if (sb_report_num(x, "weights_first_differ_at_step", &v)) {
        snprintf(line, sizeof line, "weights first differ at step %.0f\n", v);
        sb_text_xml(t, line);
    }
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(x, "growth")) {
        char a[32], u[32];
        double step = 0;
        sb_report_num(o, "step", &step);
        sb_report_fmt_num(o, "max_abs", a, sizeof a);
        sb_report_fmt_count(o, "max_ulp", u, sizeof u);
        snprintf(line, sizeof line, "growth: step %.0f max abs %s max ULP %s\n", step, a, u);
        sb_text_xml(t, line);
    }
    if ((s = sb_report_str(x, "attribution_note"))) {
        sb_text_puts(t, "note: ");
        sb_text_xml(t, s);
        sb_text_puts(t, "\n");
    }
    if ((s = sb_report_str(x, "attribution_error"))) {
        sb_text_puts(t, "no attribution: ");
        sb_text_xml(t, s);
        sb_text_puts(t, "\n");
    }
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(x, "structure_mismatch");
    if (cJSON_IsObject(sm) && (s = sb_report_str(sm, "message"))) {
        sb_text_puts(t, "traces differ in structure: ");
        sb_text_xml(t, s);
        sb_text_puts(t, "\n");
    }
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(x, "environment_differs")) {
        const char *f = sb_report_str(o, "field");
        sb_text_puts(t, "environment differs: ");
        sb_text_xml(t, f ? f : "?");
        sb_text_puts(t, ": baseline ");
        sb_text_xml(t, sb_report_str(o, "baseline"));
        sb_text_puts(t, ", this run ");
        sb_text_xml(t, sb_report_str(o, "run"));
        sb_text_puts(t, "\n");
    }
    const cJSON *eu = cJSON_GetObjectItemCaseSensitive(x, "expect_used");
    if (eu) {
        char *p = cJSON_PrintUnformatted(eu);
        sb_text_puts(t, "expect used: ");
        sb_text_xml(t, p ? p : "?");
        sb_text_puts(t, "\n");
        free(p);
    }
}

static void testcase_open(sb_text *t, const char *suite, const char *cls, const char *name,
                          double seconds) {
    sb_text_puts(t, "    <testcase classname=\"");
    sb_text_xml_attr(t, suite);
    if (cls) {
        sb_text_puts(t, ".");
        sb_text_xml_attr(t, cls);
    }
    sb_text_puts(t, "\" name=\"");
    sb_text_xml_attr(t, name);
    sb_text_printf(t, "\" time=\"%.3f\"", seconds);
}

/* <failure> or <error> with a message attribute and a text body. */
static void problem(sb_text *t, const char *tag, const char *type, const char *msg,
                    const cJSON *details) {
    sb_text_printf(t, "      <%s type=\"", tag);
    sb_text_xml_attr(t, type);
    sb_text_puts(t, "\" message=\"");
    sb_text_xml_attr(t, msg);
    sb_text_puts(t, "\">");
    sb_text_xml(t, msg);
    sb_text_puts(t, "\n");
    if (details) cmp_details(t, details);
    sb_text_printf(t, "</%s>\n", tag);
}

sb_status sb_report_junit(const sb_report *r, char **out, size_t *len, sb_error *err) {
    sb_text body = {0}, t = {0};
    const char *suite = sb_report_str(r->summary, "suite");
    int tests = 0, failures = 0, errors = 0;
    char msg[2048];

    /* runs */
    const cJSON *run;
    cJSON_ArrayForEach(run, r->runs) {
        double secs = 0;
        sb_report_num(run, "seconds", &secs);
        tests++;
        testcase_open(&body, suite, "runs", sb_report_str(run, "id"), secs);
        if (sb_report_run_ok(run)) {
            sb_text_puts(&body, "/>\n");
            continue;
        }
        errors++;
        sb_text_puts(&body, ">\n");
        const char *e = sb_report_str(run, "error");
        snprintf(msg, sizeof msg, "run %s: %s", sb_report_str(run, "status"), e ? e : "no message");
        problem(&body, "error", sb_report_str(run, "status"), msg, NULL);
        sb_text_puts(&body, "    </testcase>\n");
    }

    /* checks and their comparisons */
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        const char *name = sb_report_str(chk, "name"), *st = sb_report_str(chk, "status");
        int np, nf, ne;
        sb_report_check_counts(chk, &np, &nf, &ne);
        tests++;
        testcase_open(&body, suite, name, name, 0);
        if (!strcmp(st, "pass")) {
            sb_text_puts(&body, "/>\n");
        } else if (!strcmp(st, "fail")) {
            failures++;
            sb_text_puts(&body, ">\n");
            const cJSON *w = sb_report_worst_failing(chk);
            char one[1600] = "";
            if (w) cmp_message(w, one, sizeof one);
            snprintf(msg, sizeof msg, "%d of %d comparisons disagree; worst %s vs %s: %s", nf,
                     np + nf + ne, w ? sb_report_str(w, "a") : "?", w ? sb_report_str(w, "b") : "?",
                     one);
            problem(&body, "failure", "drift", msg, NULL);
            sb_text_puts(&body, "    </testcase>\n");
        } else {
            errors++;
            sb_text_puts(&body, ">\n");
            const char *m = sb_report_str(chk, "message");
            snprintf(msg, sizeof msg, "check could not be evaluated: %s",
                     m ? m : "a comparison could not be made");
            problem(&body, "error", "check-error", msg, NULL);
            sb_text_puts(&body, "    </testcase>\n");
        }
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(chk, "comparisons")) {
            const char *xs = sb_report_str(x, "status");
            char vs[600];
            snprintf(vs, sizeof vs, "%s vs %s", sb_report_str(x, "a"), sb_report_str(x, "b"));
            tests++;
            testcase_open(&body, suite, name, vs, 0);
            if (!strcmp(xs, "pass")) {
                sb_text_puts(&body, "/>\n");
                continue;
            }
            sb_text_puts(&body, ">\n");
            if (!strcmp(xs, "fail")) {
                failures++;
                cmp_message(x, msg, sizeof msg);
                problem(&body, "failure", "drift", msg, x);
            } else {
                errors++;
                const char *e = sb_report_str(x, "error");
                snprintf(msg, sizeof msg, "not compared: %s", e ? e : "no message");
                problem(&body, "error", "comparison-error", msg, NULL);
            }
            sb_text_puts(&body, "    </testcase>\n");
        }
    }

    double secs = 0;
    sb_report_num(r->summary, "seconds", &secs);
    const char *when = sb_report_str(r->summary, "finished_at");
    sb_text_puts(&t, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb_text_puts(&t, "<testsuites name=\"samebits\"");
    sb_text_printf(&t, " tests=\"%d\" failures=\"%d\" errors=\"%d\" time=\"%.3f\">\n", tests,
                   failures, errors, secs);
    sb_text_puts(&t, "  <testsuite name=\"");
    sb_text_xml_attr(&t, suite);
    sb_text_printf(&t, "\" tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"0\" time=\"%.3f\"",
                   tests, failures, errors, secs);
    /* timestamp: the Ant form, yyyy-mm-ddThh:mm:ss (UTC, as finished_at without its Z) */
    if (when && strlen(when) == 20 && when[10] == 'T' && when[19] == 'Z')
        sb_text_printf(&t, " timestamp=\"%.19s\"", when);
    sb_text_puts(&t, ">\n    <properties>\n");
    static const char *const props[] = {"suite_sha256", "suite_file", "finished_at", "verdict",
                                        "blas"};
    for (size_t i = 0; i < sizeof props / sizeof *props; i++) {
        const char *v = sb_report_str(r->summary, props[i]);
        if (!v) continue;
        sb_text_printf(&t, "      <property name=\"%s\" value=\"", props[i]);
        sb_text_xml_attr(&t, v);
        sb_text_puts(&t, "\"/>\n");
    }
    double ec;
    if (sb_report_num(r->summary, "exit_code", &ec))
        sb_text_printf(&t, "      <property name=\"exit_code\" value=\"%.0f\"/>\n", ec);
    sb_text_puts(&t, "    </properties>\n");
    if (body.p) sb_text_puts(&t, body.p);
    sb_text_puts(&t, "  </testsuite>\n</testsuites>\n");
    sb_text_free(&body);
    if (t.oom || body.oom) {
        sb_text_free(&t);
        return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    }
    *out = t.p;
    *len = t.len;
    return SB_OK;
}
