/* report_html.c — report.html: the audit report, one self-contained file a
 * person can open offline and print.
 *
 * Sections: the suite with its SHA-256 and the verdict; the environment
 * fingerprint (summary.environment, shown generically as key/value rows);
 * a matrix of cells × checks coloured by verdict; the checks; per failing
 * check its comparisons and, for the first few failing ones, the drift
 * attribution (first divergence, sources, weights-first-differ step) with
 * the growth of the difference over steps as a chart; baseline fingerprint
 * differences; ULP-distance histograms per tensor; the loss curves of each
 * cell's repeats overlaid; the runs; every artifact with its SHA-256.
 *
 * Self-contained means: inline CSS, inline SVG, no script, no URL of any
 * kind in src or href (only #fragment links), and a Content-Security-Policy
 * that forbids fetching anything should a future edit slip one in. Colours
 * always come with a word (pass / FAIL / error), so the report reads in
 * black and white too.
 *
 * Not here: the charts' drawing (report_svg.c), loading (report.c).
 */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

static const char *const CSS =
    ":root{--pass:#1b5e20;--pass-bg:#c8e6c9;--fail:#b71c1c;--fail-bg:#ffcdd2;--err:#8a4b00;"
    "--err-bg:#ffe0b2;--nc:#8a8a8a;--nc-bg:#f4f4f4}\n"
    "*{box-sizing:border-box;-webkit-print-color-adjust:exact;print-color-adjust:exact}\n"
    "body{font:14px/1.45 system-ui,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;color:#1a1a1a;"
    "max-width:1120px;margin:24px auto;padding:0 18px}\n"
    "code,.mono{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:12px}\n"
    ".hash{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:10.5px;white-space:nowrap}\n"
    "h1{font-size:23px;margin:0 0 6px}h2{font-size:18px;border-bottom:2px solid #d8d8d8;"
    "padding-bottom:4px;margin:34px 0 10px}h3{font-size:15.5px;margin:22px 0 6px}"
    "h4{font-size:14px;margin:16px 0 4px}\n"
    "table{border-collapse:collapse;margin:8px 0 12px;font-size:12.5px}"
    "th,td{border:1px solid #d0d0d0;padding:3px 7px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".pass{background:var(--pass-bg);color:var(--pass)}.fail{background:var(--fail-bg);color:var(--fail)}"
    ".error{background:var(--err-bg);color:var(--err)}.nc{background:var(--nc-bg);color:var(--nc)}\n"
    ".badge{display:inline-block;padding:1px 9px;border-radius:4px;font-weight:700}\n"
    ".verdict{font-size:17px;padding:3px 14px}\n"
    "table.matrix td.v{text-align:center;font-weight:700;min-width:30px;font-size:11.5px}"
    "table.matrix th.check{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;"
    "text-align:left;vertical-align:bottom;padding:6px 3px;font-size:11.5px}\n"
    "dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 18px;margin:8px 0}"
    "dl.kv dt{font-weight:600;color:#444}dl.kv dd{margin:0}\n"
    "nav{margin:10px 0;font-size:13px}nav a{margin-right:12px;color:#0b57d0}\n"
    "figure{margin:8px 0 16px;break-inside:avoid}figcaption{font-size:12px;color:#555}\n"
    "svg{max-width:100%;height:auto;display:block;font-family:inherit}\n"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:8px 18px}\n"
    ".env{columns:2 380px;column-gap:28px;font-size:12.5px;margin:8px 0}"
    ".kvrow{break-inside:avoid;padding:2px 0;border-bottom:1px solid #eee}"
    ".kvrow .k{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:11.5px;font-weight:600;color:#333}\n"
    ".cmp{border-left:3px solid #e0e0e0;padding-left:12px;margin:10px 0 18px}\n"
    ".note{color:#555;font-size:12.5px}.legend span{margin-right:10px}\n"
    "footer{margin-top:36px;border-top:1px solid #ddd;padding-top:8px;color:#666;font-size:12px}\n"
    "@page{size:A4;margin:13mm}\n"
    "@media print{body{max-width:none;margin:0;padding:0;font-size:11px}nav{display:none}"
    "h2{break-after:avoid}h3,h4{break-after:avoid}.cmp,figure,table.small{break-inside:avoid}"
    "a{color:inherit;text-decoration:none}.hash{white-space:normal;word-break:break-all}}\n";

static const char *const PALETTE[SB_REPORT_MAX_LOSS_RUNS] = {
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
static const char *const DASHES[SB_REPORT_MAX_LOSS_RUNS] = {NULL, "7 4", "2 3", "10 3 2 3",
                                                            "4 4", "1 2", "12 4", "6 2 2 2"};

/* ---- small pieces ---- */

static const char *status_class(const char *st) {
    if (!st) return "nc";
    if (!strcmp(st, "pass") || !strcmp(st, "ok")) return "pass";
    if (!strcmp(st, "fail")) return "fail";
    return "error";
}

static void badge(sb_text *t, const char *st) {
    sb_text_printf(t, "<span class=\"badge %s\">", status_class(st));
    sb_text_xml(t, st && !strcmp(st, "fail") ? "FAIL" : st);
    sb_text_puts(t, "</span>");
}

static void td(sb_text *t, const char *cls, const char *s) {
    if (cls) sb_text_printf(t, "<td class=\"%s\">", cls);
    else sb_text_puts(t, "<td>");
    sb_text_xml(t, s);
    sb_text_puts(t, "</td>");
}

static void th_row(sb_text *t, const char *const *cols, int n) {
    sb_text_puts(t, "<thead><tr>");
    for (int i = 0; i < n; i++) sb_text_printf(t, "<th>%s</th>", cols[i]);
    sb_text_puts(t, "</tr></thead>\n");
}

/* "bitwise", or "atol=… rtol=… ulp=…" from an expect value. */
static void expect_str(const cJSON *e, char *buf, size_t n) {
    if (cJSON_IsString(e)) {
        snprintf(buf, n, "%s", e->valuestring);
        return;
    }
    buf[0] = '\0';
    const cJSON *x;
    size_t used = 0;
    cJSON_ArrayForEach(x, e) {
        if (!cJSON_IsNumber(x) || !x->string) continue;
        used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s=%g", used ? " " : "",
                                 x->string, x->valuedouble);
        if (used >= n) break;
    }
    if (!buf[0]) snprintf(buf, n, "\xe2\x80\x94");
}

/* A JSON value as one line of text ("a, b" for arrays of strings). */
static void value_text(sb_text *t, const cJSON *v) {
    if (cJSON_IsString(v)) {
        sb_text_xml(t, v->valuestring);
        return;
    }
    if (cJSON_IsNull(v)) {
        sb_text_xml(t, NULL);
        return;
    }
    char *p = cJSON_PrintUnformatted(v);
    sb_text_xml(t, p ? p : "?");
    free(p);
}

/* The environment object flattened to rows "a.b.c" → value. */
static void env_rows(sb_text *t, const cJSON *o, const char *prefix, int depth) {
    const cJSON *x;
    cJSON_ArrayForEach(x, o) {
        char key[512];
        snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", x->string ? x->string : "?");
        if (cJSON_IsObject(x) && depth < 6 && x->child) {
            env_rows(t, x, key, depth + 1);
            continue;
        }
        sb_text_puts(t, "<div class=\"kvrow\"><span class=\"k\">");
        sb_text_xml(t, key);
        sb_text_puts(t, "</span> <span class=\"v\">");
        if (cJSON_IsObject(x) && !x->child) {
            sb_text_puts(t, "(none)");
        } else if (cJSON_IsArray(x)) {
            int first = 1;
            const cJSON *y;
            cJSON_ArrayForEach(y, x) {
                if (!first) sb_text_puts(t, ", ");
                value_text(t, y);
                first = 0;
            }
            if (first) sb_text_puts(t, "(none)");
        } else {
            value_text(t, x);
        }
        sb_text_puts(t, "</span></div>\n");
    }
}

/* ---- sections ---- */

static void header(sb_text *t, const sb_report *r) {
    const cJSON *s = r->summary;
    const char *suite = sb_report_str(s, "suite"), *verdict = sb_report_str(s, "verdict");
    sb_text_puts(t, "<header>\n<h1>samebits audit report: ");
    sb_text_xml(t, suite);
    sb_text_puts(t, "</h1>\n<p>verdict ");
    sb_text_printf(t, "<span class=\"badge verdict %s\">", status_class(verdict));
    sb_text_xml(t, verdict ? (!strcmp(verdict, "pass") ? "PASS" : !strcmp(verdict, "fail") ? "FAIL" : "ERROR")
                           : NULL);
    sb_text_puts(t, "</span>");
    double ec;
    if (sb_report_num(s, "exit_code", &ec))
        sb_text_printf(t, " exit code %.0f (%s)", ec,
                       ec == 0 ? "every check passed" : ec == 1 ? "a check failed: drift"
                       : ec == 3 ? "a run crashed, failed or timed out"
                                 : "bad input, or a check could not be evaluated");
    sb_text_puts(t, "</p>\n<dl class=\"kv\">\n<dt>suite</dt><dd>");
    sb_text_xml(t, suite);
    sb_text_puts(t, " (<code>");
    sb_text_xml(t, sb_report_str(s, "suite_file"));
    sb_text_puts(t, "</code>)</dd>\n<dt>suite SHA-256</dt><dd class=\"hash\">");
    sb_text_xml(t, sb_report_str(s, "suite_sha256"));
    sb_text_puts(t, "</dd>\n<dt>finished</dt><dd>");
    sb_text_xml(t, sb_report_str(s, "finished_at"));
    double secs;
    if (sb_report_num(s, "seconds", &secs)) sb_text_printf(t, " after %.1f s", secs);
    int ok = 0, np = 0, nf = 0, ne = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, r->runs) ok += sb_report_run_ok(x);
    cJSON_ArrayForEach(x, r->checks) {
        const char *st = sb_report_str(x, "status");
        np += !strcmp(st, "pass"), nf += !strcmp(st, "fail");
        ne += strcmp(st, "pass") && strcmp(st, "fail");
    }
    sb_text_printf(t, "</dd>\n<dt>runs</dt><dd>%d in %d cells, %d ok</dd>\n", r->n_runs, r->n_cells, ok);
    sb_text_printf(t, "<dt>checks</dt><dd>%d: %d pass, %d fail, %d error</dd>\n", r->n_checks, np, nf, ne);
    sb_text_puts(t, "<dt>BLAS</dt><dd>");
    sb_text_xml(t, sb_report_str(s, "blas"));
    sb_text_puts(t, "</dd>\n<dt>schema</dt><dd>");
    sb_text_xml(t, sb_report_str(s, "schema"));
    sb_text_puts(t, "</dd>\n</dl>\n<nav><a href=\"#matrix\">Verdict matrix</a>"
                    "<a href=\"#checks\">Checks</a><a href=\"#environment\">Environment</a><a href=\"#drift\">Drift attribution</a>"
                    "<a href=\"#ulp\">ULP histograms</a><a href=\"#losses\">Loss curves</a>"
                    "<a href=\"#runs\">Runs</a><a href=\"#artifacts\">Artifacts</a></nav>\n</header>\n");
}

static void environment(sb_text *t, const sb_report *r) {
    sb_text_puts(t, "<section id=\"environment\">\n<h2>Environment fingerprint</h2>\n");
    if (!r->environment) {
        sb_text_puts(t, "<p class=\"note\">summary.json holds no environment fingerprint; the BLAS "
                        "library was: ");
        sb_text_xml(t, sb_report_str(r->summary, "blas"));
        sb_text_puts(t, "</p>\n</section>\n");
        return;
    }
    sb_text_puts(t, "<div class=\"env\">\n");
    env_rows(t, r->environment, "", 0);
    sb_text_puts(t, "</div>\n</section>\n");
}

static void matrix(sb_text *t, const sb_report *r) {
    static const char *const word[] = {"\xc2\xb7", "pass", "FAIL", "error"};
    static const char *const cls[] = {"nc", "pass", "fail", "error"};
    sb_text_puts(t, "<section id=\"matrix\">\n<h2>Verdict matrix</h2>\n"
                    "<p class=\"legend note\"><span class=\"badge pass\">pass</span>"
                    "<span class=\"badge fail\">FAIL</span><span class=\"badge error\">error</span>"
                    "<span class=\"badge nc\">\xc2\xb7 not covered</span> each square: the check's "
                    "comparisons that involve the cell (the worst of them)</p>\n");
    sb_text_puts(t, "<table class=\"matrix\"><thead><tr><th>cell</th><th>runs ok</th>");
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        sb_text_puts(t, "<th class=\"check\">");
        sb_text_xml(t, sb_report_str(chk, "name"));
        sb_text_puts(t, "</th>");
    }
    sb_text_puts(t, "</tr></thead>\n<tbody>\n");
    for (int c = 0; c < r->n_cells; c++) {
        int n = 0, ok = 0, i = 0;
        const cJSON *run;
        cJSON_ArrayForEach(run, r->runs) {
            if (r->cell_of_run[i++] != c) continue;
            n++;
            ok += sb_report_run_ok(run);
        }
        sb_text_puts(t, "<tr><th class=\"mono\">");
        sb_text_xml(t, r->cells[c]);
        sb_text_printf(t, "</th><td class=\"v %s\">%d/%d</td>", ok == n ? "pass" : "error", ok, n);
        for (int k = 0; k < r->n_checks; k++) {
            int v = r->matrix[(size_t)c * (size_t)r->n_checks + (size_t)k];
            sb_text_printf(t, "<td class=\"v %s\">%s</td>", cls[v], word[v]);
        }
        sb_text_puts(t, "</tr>\n");
    }
    sb_text_puts(t, "<tr><th>check verdict</th><td></td>");
    cJSON_ArrayForEach(chk, r->checks) {
        const char *st = sb_report_str(chk, "status");
        sb_text_printf(t, "<td class=\"v %s\">", status_class(st));
        sb_text_xml(t, !strcmp(st, "fail") ? "FAIL" : st);
        sb_text_puts(t, "</td>");
    }
    sb_text_puts(t, "</tr>\n</tbody></table>\n</section>\n");
}

static void checks(sb_text *t, const sb_report *r) {
    static const char *const cols[] = {"check", "kind", "expect", "agree", "status",
                                       "worst comparison · source · message"};
    sb_text_puts(t, "<section id=\"checks\">\n<h2>Checks</h2>\n<table>");
    th_row(t, cols, 6);
    sb_text_puts(t, "<tbody>\n");
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        int np, nf, ne;
        sb_report_check_counts(chk, &np, &nf, &ne);
        char ex[160], agree[48], kind[96];
        expect_str(cJSON_GetObjectItemCaseSensitive(chk, "expect"), ex, sizeof ex);
        const cJSON *fb = cJSON_GetObjectItemCaseSensitive(chk, "fallback");
        if (fb) {
            char f[96];
            expect_str(fb, f, sizeof f);
            size_t u = strlen(ex);
            snprintf(ex + u, sizeof ex - u, "; fallback %s", f);
        }
        snprintf(agree, sizeof agree, "%d/%d", np, np + nf + ne);
        const char *k = sb_report_str(chk, "kind"), *axis = sb_report_str(chk, "axis");
        snprintf(kind, sizeof kind, "%s%s%s", k ? k : "?", axis ? " over " : "", axis ? axis : "");
        sb_text_puts(t, "<tr>");
        td(t, "mono", sb_report_str(chk, "name"));
        td(t, NULL, kind);
        td(t, "mono", ex);
        td(t, "num", agree);
        sb_text_puts(t, "<td>");
        badge(t, sb_report_str(chk, "status"));
        sb_text_puts(t, "</td><td>");
        const char *msg = sb_report_str(chk, "message");
        if (msg) sb_text_xml(t, msg);
        const cJSON *w = sb_report_worst_failing(chk);
        if (w) {
            char src[640], ulp[32];
            sb_report_source_str(w, src, sizeof src);
            sb_report_fmt_count(w, "max_ulp", ulp, sizeof ulp);
            if (msg) sb_text_puts(t, "<br>");
            sb_text_xml(t, sb_report_str(w, "worst_tensor"));
            sb_text_printf(t, ", max ULP %s", ulp);
            if (src[0]) {
                sb_text_puts(t, "<br>");
                sb_text_xml(t, src);
            }
        }
        sb_text_puts(t, "</td></tr>\n");
    }
    sb_text_puts(t, "</tbody></table>\n</section>\n");
}

static void growth_chart(sb_text *t, const cJSON *x) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(x, "growth");
    int n = cJSON_GetArraySize(g);
    if (!cJSON_IsArray(g) || n == 0) return;
    double *xs = malloc((size_t)n * sizeof *xs), *ys = malloc((size_t)n * sizeof *ys);
    if (!xs || !ys) {
        t->oom = 1;
        goto done;
    }
    int m = 0, zeros = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, g) {
        xs[m] = ys[m] = NAN;
        sb_report_num(o, "step", &xs[m]);
        sb_report_num(o, "max_abs", &ys[m]);
        zeros += ys[m] == 0;
        m++;
    }
    sb_svg_series s = {.x = xs, .y = ys, .n = m, .color = "#b71c1c", .width = 2.2,
                       .label = "max |a - b| of the weights"};
    sb_text_puts(t, "<figure>");
    sb_svg_line_chart(t, "Difference of the weights over training steps", "step",
                      "max abs difference", &s, 1, 1, 1);
    sb_text_puts(t, "<figcaption>At each snapshot step of the trace: the largest absolute "
                    "difference between the two runs' optimizer outputs (weights and state)");
    if (zeros) sb_text_puts(t, "; steps where they agree sit on the chart's floor");
    sb_text_puts(t, ".</figcaption></figure>\n");
done:
    free(xs);
    free(ys);
}

static void attribution(sb_text *t, const cJSON *x) {
    sb_text_puts(t, "<div class=\"cmp\">\n<h4>");
    sb_text_xml(t, sb_report_str(x, "a"));
    sb_text_puts(t, " vs ");
    sb_text_xml(t, sb_report_str(x, "b"));
    sb_text_puts(t, "</h4>\n<dl class=\"kv\">");
    const cJSON *fd = cJSON_GetObjectItemCaseSensitive(x, "first_divergence");
    double v;
    const char *s;
    if (cJSON_IsObject(fd)) {
        sb_text_puts(t, "<dt>first divergence</dt><dd>");
        if (sb_report_num(fd, "step", &v)) sb_text_printf(t, "step %.0f, ", v);
        sb_text_puts(t, "<code>");
        sb_text_xml(t, sb_report_str(fd, "op"));
        sb_text_puts(t, "</code> (");
        sb_text_xml(t, sb_report_str(fd, "stage"));
        sb_text_puts(t, "), ");
        sb_text_xml(t, sb_report_str(fd, "kind"));
        sb_text_puts(t, "</dd>");
    } else if (cJSON_IsNull(fd)) {
        sb_text_puts(t, "<dt>first divergence</dt><dd>none: every traced output agrees</dd>");
    }
    if (sb_report_num(x, "weights_first_differ_at_step", &v))
        sb_text_printf(t, "<dt>weights first differ</dt><dd>at step %.0f%s</dd>", v,
                       v == 0 ? " (initialisation)" : "");
    if ((s = sb_report_str(x, "attribution_note"))) {
        sb_text_puts(t, "<dt>note</dt><dd>");
        sb_text_xml(t, s);
        sb_text_puts(t, "</dd>");
    }
    if ((s = sb_report_str(x, "attribution_error"))) {
        sb_text_puts(t, "<dt>no attribution</dt><dd>");
        sb_text_xml(t, s);
        sb_text_puts(t, "</dd>");
    }
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(x, "structure_mismatch");
    if (cJSON_IsObject(sm)) {
        sb_text_puts(t, "<dt>structure differs</dt><dd>");
        sb_text_xml(t, sb_report_str(sm, "message"));
        sb_text_puts(t, "</dd>");
    }
    sb_text_puts(t, "</dl>\n");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(x, "sources");
    if (cJSON_IsArray(src) && src->child) {
        static const char *const cols[] = {"source op", "stage", "first step", "steps"};
        sb_text_puts(t, "<table class=\"small\">");
        th_row(t, cols, 4);
        sb_text_puts(t, "<tbody>\n");
        const cJSON *o;
        cJSON_ArrayForEach(o, src) {
            char a[32], b[32];
            sb_report_fmt_count(o, "first_step", a, sizeof a);
            sb_report_fmt_count(o, "steps", b, sizeof b);
            sb_text_puts(t, "<tr>");
            td(t, "mono", sb_report_str(o, "op"));
            td(t, NULL, sb_report_str(o, "stage"));
            td(t, "num", a);
            td(t, "num", b);
            sb_text_puts(t, "</tr>\n");
        }
        sb_text_puts(t, "</tbody></table>\n");
    }
    growth_chart(t, x);
    const cJSON *oe = cJSON_GetObjectItemCaseSensitive(x, "op_errors");
    if (cJSON_IsArray(oe) && oe->child) {
        static const char *const cols[] = {"op", "stage", "max abs", "max rel", "max ULP", "at step"};
        sb_text_puts(t, "<table class=\"small\">");
        th_row(t, cols, 6);
        sb_text_puts(t, "<tbody>\n");
        int n = 0;
        const cJSON *o;
        cJSON_ArrayForEach(o, oe) {
            if (n++ == 12) break;
            char a[32], b[32], c[32], d[32];
            sb_report_fmt_num(o, "max_abs", a, sizeof a);
            sb_report_fmt_num(o, "max_rel", b, sizeof b);
            sb_report_fmt_count(o, "max_ulp", c, sizeof c);
            sb_report_fmt_count(o, "step", d, sizeof d);
            sb_text_puts(t, "<tr>");
            td(t, "mono", sb_report_str(o, "op"));
            td(t, NULL, sb_report_str(o, "stage"));
            td(t, "num", a);
            td(t, "num", b);
            td(t, "num", c);
            td(t, "num", d);
            sb_text_puts(t, "</tr>\n");
        }
        sb_text_puts(t, "</tbody></table>\n");
        if (cJSON_GetArraySize(oe) > 12)
            sb_text_printf(t, "<p class=\"note\">%d more ops with errors in summary.json.</p>\n",
                           cJSON_GetArraySize(oe) - 12);
    }
    sb_text_puts(t, "</div>\n");
}

static void comparisons_table(sb_text *t, const cJSON *chk) {
    static const char *const cols[] = {"a", "b", "status", "max ULP", "max abs", "max rel",
                                       "disagree", "worst tensor", "source"};
    sb_text_puts(t, "<table>");
    th_row(t, cols, 9);
    sb_text_puts(t, "<tbody>\n");
    int n = 0, total = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(chk, "comparisons")) {
        total++;
        if (n >= 200) continue;
        n++;
        char ulp[32], ab[32], rel[32], mism[32], el[32], dis[80], src[640];
        sb_report_fmt_count(x, "max_ulp", ulp, sizeof ulp);
        sb_report_fmt_num(x, "max_abs", ab, sizeof ab);
        sb_report_fmt_num(x, "max_rel", rel, sizeof rel);
        sb_report_fmt_count(x, "mismatched", mism, sizeof mism);
        sb_report_fmt_count(x, "elements", el, sizeof el);
        snprintf(dis, sizeof dis, "%s / %s", mism, el);
        sb_report_source_str(x, src, sizeof src);
        const char *st = sb_report_str(x, "status");
        sb_text_puts(t, "<tr>");
        td(t, "mono", sb_report_str(x, "a"));
        td(t, "mono", sb_report_str(x, "b"));
        sb_text_puts(t, "<td>");
        badge(t, st);
        sb_text_puts(t, "</td>");
        td(t, "num", ulp);
        td(t, "num", ab);
        td(t, "num", rel);
        td(t, "num", dis);
        td(t, "mono", sb_report_str(x, "worst_tensor"));
        td(t, NULL, !strcmp(st, "error") ? sb_report_str(x, "error") : src);
        sb_text_puts(t, "</tr>\n");
    }
    sb_text_puts(t, "</tbody></table>\n");
    if (total > n)
        sb_text_printf(t, "<p class=\"note\">%d more comparisons in summary.json.</p>\n", total - n);
}

static void drift(sb_text *t, const sb_report *r) {
    sb_text_puts(t, "<section id=\"drift\">\n<h2>Drift attribution</h2>\n");
    int any = 0;
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        const char *st = sb_report_str(chk, "status");
        if (!strcmp(st, "pass")) continue;
        any = 1;
        sb_text_puts(t, "<h3>");
        sb_text_xml(t, sb_report_str(chk, "name"));
        sb_text_puts(t, " ");
        badge(t, st);
        sb_text_puts(t, "</h3>\n");
        const char *msg = sb_report_str(chk, "message");
        if (msg) {
            sb_text_puts(t, "<p>");
            sb_text_xml(t, msg);
            sb_text_puts(t, "</p>\n");
        }
        comparisons_table(t, chk);
        int shown = 0, failing = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(chk, "comparisons")) {
            if (strcmp(sb_report_str(x, "status"), "fail") != 0) continue;
            failing++;
            if (shown < SB_REPORT_MAX_DETAILS) {
                attribution(t, x);
                shown++;
            }
        }
        if (failing > shown)
            sb_text_printf(t, "<p class=\"note\">%d more failing comparisons of this check; their "
                              "attribution is in summary.json.</p>\n", failing - shown);
    }
    if (!any) sb_text_puts(t, "<p>Every check passed: nothing drifted.</p>\n");
    sb_text_puts(t, "</section>\n");
}

/* Baseline comparisons whose environment fingerprint differs, or that used
 * another expectation than the check's; only when summary.json has them. */
static void baseline_env(sb_text *t, const sb_report *r) {
    int any = 0;
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(chk, "comparisons")) {
            const cJSON *ed = cJSON_GetObjectItemCaseSensitive(x, "environment_differs");
            const cJSON *eu = cJSON_GetObjectItemCaseSensitive(x, "expect_used");
            const char *note = sb_report_str(x, "environment_note");
            if (!ed && !eu && !note) continue;
            if (!any) {
                static const char *const cols[] = {"check", "comparison", "status", "expect used",
                                                   "field", "baseline", "this run"};
                sb_text_puts(t, "<section id=\"baseline-environment\">\n<h2>Baseline fingerprints</h2>\n"
                                "<p class=\"note\">Per baseline comparison: the fields of the "
                                "environment fingerprint that can change bits and in which the "
                                "baseline and the run differ, and which expectation was used "
                                "(the check's, or its fallback tolerance).</p>\n<table>");
                th_row(t, cols, 7);
                sb_text_puts(t, "<tbody>\n");
                any = 1;
            }
            int rows = cJSON_IsArray(ed) ? cJSON_GetArraySize(ed) : 0;
            const cJSON *o = cJSON_IsArray(ed) ? ed->child : NULL;
            for (int i = 0; i < (rows ? rows : 1); i++, o = o ? o->next : NULL) {
                sb_text_puts(t, "<tr>");
                td(t, "mono", sb_report_str(chk, "name"));
                sb_text_puts(t, "<td class=\"mono\">");
                sb_text_xml(t, sb_report_str(x, "a"));
                sb_text_puts(t, " vs ");
                sb_text_xml(t, sb_report_str(x, "b"));
                sb_text_puts(t, "</td><td>");
                badge(t, sb_report_str(x, "status"));
                sb_text_puts(t, "</td><td class=\"mono\">");
                if (eu) value_text(t, eu);
                sb_text_puts(t, "</td>");
                if (o) {
                    td(t, "mono", sb_report_str(o, "field"));
                    sb_text_puts(t, "<td>");
                    value_text(t, cJSON_GetObjectItemCaseSensitive(o, "baseline"));
                    sb_text_puts(t, "</td><td>");
                    value_text(t, cJSON_GetObjectItemCaseSensitive(o, "run"));
                    sb_text_puts(t, "</td>");
                } else {
                    sb_text_puts(t, "<td colspan=\"3\">");
                    sb_text_xml(t, note ? note : cJSON_IsArray(ed) ? "no field differs" : "not compared");
                    sb_text_puts(t, "</td>");
                }
                sb_text_puts(t, "</tr>\n");
            }
        }
    }
    if (any) sb_text_puts(t, "</tbody></table>\n</section>\n");
}

static void hists(sb_text *t, const sb_report *r) {
    sb_text_printf(t, "<section id=\"ulp\">\n<h2>ULP distances per tensor</h2>\n<p class=\"note\">Both "
                      "checkpoints of each failing check's worst comparison (then of comparisons "
                      "that passed within a tolerance without being bitwise equal), at most %d, read "
                      "and compared element by element.</p>\n", SB_REPORT_MAX_HISTS);
    if (r->n_hists == 0) sb_text_puts(t, "<p>No comparison differs: nothing to chart.</p>\n");
    for (int i = 0; i < r->n_hists; i++) {
        const sb_report_hist *h = &r->hists[i];
        const cJSON *chk = cJSON_GetArrayItem(r->checks, h->check);
        const cJSON *x = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(chk, "comparisons"), h->cmp);
        char title[900];
        snprintf(title, sizeof title, "%s: %s vs %s", sb_report_str(chk, "name"),
                 sb_report_str(x, "a"), sb_report_str(x, "b"));
        sb_text_puts(t, "<h3>");
        sb_text_xml(t, title);
        sb_text_puts(t, " ");
        badge(t, sb_report_str(x, "status"));
        sb_text_puts(t, "</h3>\n");
        if (h->error[0]) {
            sb_text_puts(t, "<p class=\"note\">not charted: ");
            sb_text_xml(t, h->error);
            sb_text_puts(t, "</p>\n");
            continue;
        }
        sb_text_puts(t, "<figure>");
        sb_svg_ulp_hist(t, h, title);
        sb_text_puts(t, "<figcaption>Grey: equal elements; yellow to red: growing ULP distance; purple: a NaN "
                        "met a number.</figcaption></figure>\n");
    }
    sb_text_puts(t, "</section>\n");
}

static void loss_chart(sb_text *t, const sb_report *r, int c) {
    sb_svg_series s[SB_REPORT_MAX_LOSS_RUNS];
    double *xs[SB_REPORT_MAX_LOSS_RUNS] = {0};
    char labels[SB_REPORT_MAX_LOSS_RUNS][48];
    int ns = 0;
    sb_text_puts(t, "<figure>");
    for (int i = 0; i < r->n_losses && ns < SB_REPORT_MAX_LOSS_RUNS; i++) {
        const sb_report_losses *l = &r->losses[i];
        if (r->cell_of_run[l->run] != c || l->error[0] || l->n == 0) continue;
        xs[ns] = malloc((size_t)l->n * sizeof *xs[ns]);
        if (!xs[ns]) {
            t->oom = 1;
            break;
        }
        for (int k = 0; k < l->n; k++) xs[ns][k] = l->first_step + k + 1;
        const cJSON *run = cJSON_GetArrayItem(r->runs, l->run);
        double rep = -1;
        sb_report_num(cJSON_GetObjectItemCaseSensitive(run, "config"), "repeat", &rep);
        if (rep >= 0) snprintf(labels[ns], sizeof labels[ns], "repeat %.0f", rep);
        else snprintf(labels[ns], sizeof labels[ns], "run %d", ns + 1);
        s[ns] = (sb_svg_series){.x = xs[ns], .y = l->v, .n = l->n, .color = PALETTE[ns],
                                .dash = DASHES[ns], .width = ns == 0 ? 3.2 : 1.7,
                                .label = labels[ns]};
        ns++;
    }
    char title[300];
    snprintf(title, sizeof title, "%s", r->cells[c]);
    sb_svg_line_chart(t, title, "step", "training loss", s, ns, 0, 1);
    int runs, first, at;
    double d;
    sb_report_loss_spread(r, c, &runs, &first, &d, &at);
    sb_text_puts(t, "<figcaption>");
    if (runs < 2) sb_text_printf(t, "%d run with a loss curve.", runs);
    else if (first == 0) sb_text_printf(t, "%d repeats: identical losses at every step.", runs);
    else sb_text_printf(t, "%d repeats: losses first differ at step %d, by up to %.3g (step %d).",
                        runs, first, d, at);
    for (int i = 0; i < r->n_losses; i++)
        if (r->cell_of_run[r->losses[i].run] == c && r->losses[i].error[0]) {
            sb_text_puts(t, " ");
            sb_text_xml(t, r->losses[i].error);
            sb_text_puts(t, ".");
        }
    sb_text_puts(t, "</figcaption></figure>\n");
    for (int i = 0; i < ns; i++) free(xs[i]);
}

static void losses(sb_text *t, const sb_report *r) {
    sb_text_puts(t, "<section id=\"losses\">\n<h2>Loss curves</h2>\n<p class=\"note\">Each cell's "
                    "repeats overlaid: where they agree bitwise the lines coincide.</p>\n<div class=\"grid\">\n");
    for (int c = 0; c < r->n_loss_cells; c++) loss_chart(t, r, c);
    sb_text_puts(t, "</div>\n");
    if (r->n_cells > r->n_loss_cells)
        sb_text_printf(t, "<p class=\"note\">%d more cells not drawn.</p>\n", r->n_cells - r->n_loss_cells);
    sb_text_puts(t, "</section>\n");
}

static void runs(sb_text *t, const sb_report *r) {
    static const char *const cols[] = {"run", "status", "final loss", "seconds", "exit",
                                       "weights SHA-256", "notes"};
    sb_text_puts(t, "<section id=\"runs\">\n<h2>Runs</h2>\n<table>");
    th_row(t, cols, 7);
    sb_text_puts(t, "<tbody>\n");
    const cJSON *run;
    cJSON_ArrayForEach(run, r->runs) {
        char loss[32], secs[32], ec[32];
        sb_report_fmt_num(run, "final_loss", loss, sizeof loss);
        sb_report_fmt_num(run, "seconds", secs, sizeof secs);
        sb_report_fmt_count(run, "exit_code", ec, sizeof ec);
        sb_text_puts(t, "<tr>");
        td(t, "mono", sb_report_str(run, "id"));
        sb_text_puts(t, "<td>");
        badge(t, sb_report_str(run, "status"));
        sb_text_puts(t, "</td>");
        td(t, "num", loss);
        td(t, "num", secs);
        td(t, "num", ec);
        td(t, "hash", sb_report_str(run, "weights_sha256"));
        sb_text_puts(t, "<td>");
        const char *s;
        if ((s = sb_report_str(run, "error"))) sb_text_xml(t, s);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(run, "resumed")))
            sb_text_puts(t, " kept from an earlier invocation (--resume)");
        const cJSON *nd = cJSON_GetObjectItemCaseSensitive(run, "nondeterministic_ops");
        if (cJSON_IsArray(nd) && nd->child) {
            sb_text_puts(t, " nondeterministic ops (--recheck): ");
            const cJSON *o;
            int first = 1;
            cJSON_ArrayForEach(o, nd) {
                if (!first) sb_text_puts(t, ", ");
                sb_text_puts(t, "<code>");
                sb_text_xml(t, sb_report_str(o, "op"));
                sb_text_puts(t, "</code>");
                first = 0;
            }
        }
        if ((s = sb_report_str(run, "trace_error"))) {
            sb_text_puts(t, " trace: ");
            sb_text_xml(t, s);
        }
        sb_text_puts(t, "</td></tr>\n");
    }
    sb_text_puts(t, "</tbody></table>\n</section>\n");
}

static void artifacts(sb_text *t, const sb_report *r) {
    static const char *const cols[] = {"file", "kind", "bytes", "SHA-256", "check"};
    sb_text_puts(t, "<section id=\"artifacts\">\n<h2>Artifacts</h2>\n<p class=\"note\">Every file "
                    "of the results folder the verdict rests on, with its SHA-256 as read when "
                    "this report was made.</p>\n<table>");
    th_row(t, cols, 5);
    sb_text_puts(t, "<tbody>\n");
    for (int i = 0; i < r->n_artifacts; i++) {
        const sb_report_artifact *a = &r->artifacts[i];
        char bytes[32];
        if (a->bytes >= 0) snprintf(bytes, sizeof bytes, "%lld", a->bytes);
        else snprintf(bytes, sizeof bytes, "\xe2\x80\x94");
        const char *cls = !strncmp(a->note, "matches", 7) ? "pass" : a->note[0] ? "fail" : NULL;
        sb_text_puts(t, "<tr>");
        td(t, "mono", a->path);
        td(t, NULL, a->kind);
        td(t, "num", bytes);
        td(t, "hash", a->sha256[0] ? a->sha256 : NULL);
        td(t, cls, a->note);
        sb_text_puts(t, "</tr>\n");
    }
    sb_text_puts(t, "</tbody></table>\n</section>\n");
}

sb_status sb_report_html(const sb_report *r, char **out, size_t *len, sb_error *err) {
    sb_text t = {0};
    sb_text_puts(&t, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                     "style-src 'unsafe-inline'\">\n"
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                     "<meta name=\"generator\" content=\"samebits " SB_VERSION "\">\n<title>samebits report: ");
    sb_text_xml(&t, sb_report_str(r->summary, "suite"));
    sb_text_puts(&t, " (");
    sb_text_xml(&t, sb_report_str(r->summary, "verdict"));
    sb_text_puts(&t, ")</title>\n<style>\n");
    sb_text_puts(&t, CSS);
    sb_text_puts(&t, "</style>\n</head>\n<body>\n");
    header(&t, r);
    matrix(&t, r);
    checks(&t, r);
    environment(&t, r);
    drift(&t, r);
    baseline_env(&t, r);
    hists(&t, r);
    losses(&t, r);
    runs(&t, r);
    artifacts(&t, r);
    sb_text_puts(&t, "<footer>Made by samebits " SB_VERSION " from summary.json and the files of "
                     "its results folder; <code>samebits report RESULTS_DIR --force</code> makes "
                     "the same file again.</footer>\n</body>\n</html>\n");
    if (t.oom) {
        sb_text_free(&t);
        return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    }
    *out = t.p;
    *len = t.len;
    return SB_OK;
}
