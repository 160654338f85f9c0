/* report_md.c — report.md: the audit report's content as GitHub-flavoured
 * Markdown, for pasting into a pull request or an issue.
 *
 * The same sections as report.html, as headings and tables; where the HTML
 * draws a chart, a small table of numbers stands in: the growth of the
 * difference per snapshot step, ULP distances in a few coarse buckets per
 * tensor, and each cell's losses at steps 1, 2, 4, 8, … and the last.
 * Long lists (comparisons, artifacts) fold into <details>.
 *
 * Not here: loading (report.c).
 */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#define PASS_MARK "\xe2\x9c\x85"           /* ✅ */
#define FAIL_MARK "\xe2\x9d\x8c"           /* ❌ */
#define ERROR_MARK "\xe2\x9a\xa0\xef\xb8\x8f" /* ⚠️ */
#define DASH "\xe2\x80\x94"                /* — */

static const char *mark(const char *st) {
    if (!st) return DASH;
    if (!strcmp(st, "pass")) return PASS_MARK " pass";
    if (!strcmp(st, "ok")) return PASS_MARK " ok";
    if (!strcmp(st, "fail")) return FAIL_MARK " **FAIL**";
    if (!strcmp(st, "crashed")) return ERROR_MARK " crashed"; /* run statuses */
    if (!strcmp(st, "timeout")) return ERROR_MARK " timeout";
    if (!strcmp(st, "failed")) return ERROR_MARK " failed";
    return ERROR_MARK " error";
}

/* "| a | b |" header and its separator; right = columns aligned right. */
static void head(sb_text *t, const char *const *cols, int n, unsigned right) {
    for (int i = 0; i < n; i++) sb_text_printf(t, "| %s ", cols[i]);
    sb_text_puts(t, "|\n");
    for (int i = 0; i < n; i++) sb_text_puts(t, right >> i & 1 ? "|---:" : "|---");
    sb_text_puts(t, "|\n");
}

static void cell(sb_text *t, const char *s) {
    sb_text_puts(t, "| ");
    sb_text_md(t, s);
    sb_text_puts(t, " ");
}

static void code_cell(sb_text *t, const char *s) {
    if (!s) {
        cell(t, NULL);
        return;
    }
    sb_text_puts(t, "| `");
    sb_text_md_code(t, s);
    sb_text_puts(t, "` ");
}

static void expect_str(const cJSON *e, char *buf, size_t n) {
    if (cJSON_IsString(e)) {
        snprintf(buf, n, "%s", e->valuestring);
        return;
    }
    buf[0] = '\0';
    size_t used = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, e) {
        if (!cJSON_IsNumber(x) || !x->string) continue;
        used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s=%g", used ? " " : "",
                                 x->string, x->valuedouble);
        if (used >= n) break;
    }
    if (!buf[0]) snprintf(buf, n, DASH);
}

static void json_cell(sb_text *t, const cJSON *v) {
    if (cJSON_IsString(v)) {
        cell(t, v->valuestring);
        return;
    }
    if (!v || cJSON_IsNull(v)) {
        cell(t, NULL);
        return;
    }
    char *p = cJSON_PrintUnformatted(v);
    cell(t, p ? p : "?");
    free(p);
}

static void env_rows(sb_text *t, const cJSON *o, const char *prefix, int depth) {
    const cJSON *x;
    cJSON_ArrayForEach(x, o) {
        char key[512];
        snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", x->string ? x->string : "?");
        if (cJSON_IsObject(x) && depth < 6 && x->child) {
            env_rows(t, x, key, depth + 1);
            continue;
        }
        code_cell(t, key);
        if (cJSON_IsObject(x) && !x->child) {
            sb_text_puts(t, "| (none) ");
        } else if (cJSON_IsArray(x)) {
            sb_text_puts(t, "| ");
            int first = 1;
            const cJSON *y;
            cJSON_ArrayForEach(y, x) {
                if (!first) sb_text_puts(t, ", ");
                if (cJSON_IsString(y)) sb_text_md(t, y->valuestring);
                else {
                    char *p = cJSON_PrintUnformatted(y);
                    sb_text_md(t, p ? p : "?");
                    free(p);
                }
                first = 0;
            }
            sb_text_puts(t, first ? "(none) " : " ");
        } else {
            json_cell(t, x);
        }
        sb_text_puts(t, "|\n");
    }
}

/* ---- sections ---- */

static void header(sb_text *t, const sb_report *r) {
    const cJSON *s = r->summary;
    const char *verdict = sb_report_str(s, "verdict");
    sb_text_puts(t, "# samebits report: ");
    sb_text_md(t, sb_report_str(s, "suite"));
    sb_text_printf(t, " %s\n\n", mark(verdict));
    static const char *const cols[] = {"", ""};
    head(t, cols, 2, 0);
    sb_text_puts(t, "| suite ");
    cell(t, sb_report_str(s, "suite"));
    sb_text_puts(t, "|\n| suite SHA-256 ");
    code_cell(t, sb_report_str(s, "suite_sha256"));
    sb_text_puts(t, "|\n| finished ");
    char when[128];
    double secs, ec;
    const char *fin = sb_report_str(s, "finished_at");
    if (sb_report_num(s, "seconds", &secs))
        snprintf(when, sizeof when, "%s after %.1f s", fin ? fin : "?", secs);
    else
        snprintf(when, sizeof when, "%s", fin ? fin : DASH);
    cell(t, when);
    sb_text_puts(t, "|\n");
    if (sb_report_num(s, "exit_code", &ec)) sb_text_printf(t, "| exit code | %.0f |\n", ec);
    int ok = 0, np = 0, nf = 0, ne = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, r->runs) ok += sb_report_run_ok(x);
    cJSON_ArrayForEach(x, r->checks) {
        const char *st = sb_report_str(x, "status");
        np += !strcmp(st, "pass"), nf += !strcmp(st, "fail");
        ne += strcmp(st, "pass") && strcmp(st, "fail");
    }
    sb_text_printf(t, "| runs | %d in %d cells, %d ok |\n", r->n_runs, r->n_cells, ok);
    sb_text_printf(t, "| checks | %d: %d pass, %d fail, %d error |\n", r->n_checks, np, nf, ne);
    sb_text_puts(t, "| BLAS ");
    cell(t, sb_report_str(s, "blas"));
    sb_text_puts(t, "|\n\n");
}

static void environment(sb_text *t, const sb_report *r) {
    sb_text_puts(t, "## Environment fingerprint\n\n");
    if (!r->environment) {
        sb_text_puts(t, "summary.json holds no environment fingerprint.\n\n");
        return;
    }
    static const char *const cols[] = {"field", "value"};
    head(t, cols, 2, 0);
    env_rows(t, r->environment, "", 0);
    sb_text_puts(t, "\n");
}

static void matrix(sb_text *t, const sb_report *r) {
    static const char *const word[] = {"\xc2\xb7", PASS_MARK, FAIL_MARK, ERROR_MARK};
    sb_text_puts(t, "## Verdict matrix\n\n" PASS_MARK " pass, " FAIL_MARK " fail, " ERROR_MARK
                    " error, \xc2\xb7 not covered\n\n| cell | runs ok ");
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) cell(t, sb_report_str(chk, "name"));
    sb_text_puts(t, "|\n|---|---:");
    for (int k = 0; k < r->n_checks; k++) sb_text_puts(t, "|:---:");
    sb_text_puts(t, "|\n");
    for (int c = 0; c < r->n_cells; c++) {
        int n = 0, ok = 0, i = 0;
        const cJSON *run;
        cJSON_ArrayForEach(run, r->runs) {
            if (r->cell_of_run[i++] != c) continue;
            n++;
            ok += sb_report_run_ok(run);
        }
        code_cell(t, r->cells[c]);
        sb_text_printf(t, "| %d/%d ", ok, n);
        for (int k = 0; k < r->n_checks; k++)
            sb_text_printf(t, "| %s ", word[r->matrix[(size_t)c * (size_t)r->n_checks + (size_t)k]]);
        sb_text_puts(t, "|\n");
    }
    sb_text_puts(t, "\n");
}

static void checks(sb_text *t, const sb_report *r) {
    static const char *const cols[] = {"check", "kind", "expect", "agree", "status", "source · worst · message"};
    sb_text_puts(t, "## Checks\n\n");
    head(t, cols, 6, 1u << 3);
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        int np, nf, ne;
        sb_report_check_counts(chk, &np, &nf, &ne);
        char ex[160], agree[48], kind[96], what[1200] = "";
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
        const char *msg = sb_report_str(chk, "message");
        const cJSON *w = sb_report_worst_failing(chk);
        if (w) {
            char src[640], ulp[32];
            const char *wt = sb_report_str(w, "worst_tensor");
            sb_report_source_str(w, src, sizeof src);
            sb_report_fmt_count(w, "max_ulp", ulp, sizeof ulp);
            snprintf(what, sizeof what, "%s%s%s, max ULP %s", src, src[0] ? "; " : "", wt ? wt : DASH, ulp);
        } else if (msg) {
            snprintf(what, sizeof what, "%s", msg);
        }
        code_cell(t, sb_report_str(chk, "name"));
        cell(t, kind);
        cell(t, ex);
        cell(t, agree);
        sb_text_printf(t, "| %s ", mark(sb_report_str(chk, "status")));
        cell(t, what[0] ? what : NULL);
        sb_text_puts(t, "|\n");
    }
    sb_text_puts(t, "\n");
}

static void attribution(sb_text *t, const cJSON *x) {
    sb_text_puts(t, "#### ");
    sb_text_md(t, sb_report_str(x, "a"));
    sb_text_puts(t, " vs ");
    sb_text_md(t, sb_report_str(x, "b"));
    sb_text_puts(t, "\n\n");
    const cJSON *fd = cJSON_GetObjectItemCaseSensitive(x, "first_divergence");
    double v;
    const char *s;
    if (cJSON_IsObject(fd)) {
        sb_text_puts(t, "- first divergence: ");
        if (sb_report_num(fd, "step", &v)) sb_text_printf(t, "step %.0f, ", v);
        sb_text_md(t, sb_report_str(fd, "op"));
        sb_text_puts(t, " (");
        sb_text_md(t, sb_report_str(fd, "stage"));
        sb_text_puts(t, "), ");
        sb_text_md(t, sb_report_str(fd, "kind"));
        sb_text_puts(t, "\n");
    } else if (cJSON_IsNull(fd)) {
        sb_text_puts(t, "- first divergence: none, every traced output agrees\n");
    }
    if (sb_report_num(x, "weights_first_differ_at_step", &v))
        sb_text_printf(t, "- weights first differ at step %.0f\n", v);
    if ((s = sb_report_str(x, "attribution_note"))) {
        sb_text_puts(t, "- note: ");
        sb_text_md(t, s);
        sb_text_puts(t, "\n");
    }
    if ((s = sb_report_str(x, "attribution_error"))) {
        sb_text_puts(t, "- no attribution: ");
        sb_text_md(t, s);
        sb_text_puts(t, "\n");
    }
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(x, "structure_mismatch");
    if (cJSON_IsObject(sm)) {
        sb_text_puts(t, "- traces differ in structure: ");
        sb_text_md(t, sb_report_str(sm, "message"));
        sb_text_puts(t, "\n");
    }
    sb_text_puts(t, "\n");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(x, "sources");
    if (cJSON_IsArray(src) && src->child) {
        static const char *const cols[] = {"source op", "stage", "first step", "steps"};
        head(t, cols, 4, 0xC);
        const cJSON *o;
        cJSON_ArrayForEach(o, src) {
            char a[32], b[32];
            sb_report_fmt_count(o, "first_step", a, sizeof a);
            sb_report_fmt_count(o, "steps", b, sizeof b);
            code_cell(t, sb_report_str(o, "op"));
            cell(t, sb_report_str(o, "stage"));
            cell(t, a);
            cell(t, b);
            sb_text_puts(t, "|\n");
        }
        sb_text_puts(t, "\n");
    }
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(x, "growth");
    if (cJSON_IsArray(g) && g->child) {
        static const char *const cols[] = {"step", "max abs difference of the weights", "max ULP"};
        head(t, cols, 3, 0x7);
        const cJSON *o;
        cJSON_ArrayForEach(o, g) {
            char a[32], b[32], c[32];
            sb_report_fmt_count(o, "step", a, sizeof a);
            sb_report_fmt_num(o, "max_abs", b, sizeof b);
            sb_report_fmt_count(o, "max_ulp", c, sizeof c);
            cell(t, a);
            cell(t, b);
            cell(t, c);
            sb_text_puts(t, "|\n");
        }
        sb_text_puts(t, "\n");
    }
}

static void drift(sb_text *t, const sb_report *r) {
    sb_text_puts(t, "## Drift attribution\n\n");
    int any = 0;
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        const char *st = sb_report_str(chk, "status");
        if (!strcmp(st, "pass")) continue;
        any = 1;
        sb_text_puts(t, "### ");
        sb_text_md(t, sb_report_str(chk, "name"));
        sb_text_printf(t, " %s\n\n", mark(st));
        const char *msg = sb_report_str(chk, "message");
        if (msg) {
            sb_text_md(t, msg);
            sb_text_puts(t, "\n\n");
        }
        const cJSON *cmps = cJSON_GetObjectItemCaseSensitive(chk, "comparisons");
        int total = cJSON_GetArraySize(cmps);
        if (total > 4) sb_text_printf(t, "<details><summary>%d comparisons</summary>\n\n", total);
        static const char *const cols[] = {"a", "b", "status", "max ULP", "max abs", "max rel",
                                           "disagree", "worst tensor", "source"};
        head(t, cols, 9, 0x78);
        const cJSON *x;
        int n = 0;
        cJSON_ArrayForEach(x, cmps) {
            if (n++ == 200) break;
            char ulp[32], ab[32], rel[32], mism[32], el[32], dis[80], src[640];
            sb_report_fmt_count(x, "max_ulp", ulp, sizeof ulp);
            sb_report_fmt_num(x, "max_abs", ab, sizeof ab);
            sb_report_fmt_num(x, "max_rel", rel, sizeof rel);
            sb_report_fmt_count(x, "mismatched", mism, sizeof mism);
            sb_report_fmt_count(x, "elements", el, sizeof el);
            snprintf(dis, sizeof dis, "%s / %s", mism, el);
            sb_report_source_str(x, src, sizeof src);
            const char *xs = sb_report_str(x, "status");
            code_cell(t, sb_report_str(x, "a"));
            code_cell(t, sb_report_str(x, "b"));
            sb_text_printf(t, "| %s ", mark(xs));
            cell(t, ulp);
            cell(t, ab);
            cell(t, rel);
            cell(t, dis);
            code_cell(t, sb_report_str(x, "worst_tensor"));
            cell(t, !strcmp(xs, "error") ? sb_report_str(x, "error") : src[0] ? src : NULL);
            sb_text_puts(t, "|\n");
        }
        if (total > 200) sb_text_printf(t, "\n%d more comparisons in summary.json.\n", total - 200);
        sb_text_puts(t, total > 4 ? "\n</details>\n\n" : "\n");
        int shown = 0, failing = 0;
        cJSON_ArrayForEach(x, cmps) {
            if (strcmp(sb_report_str(x, "status"), "fail") != 0) continue;
            failing++;
            if (shown < SB_REPORT_MAX_DETAILS) {
                attribution(t, x);
                shown++;
            }
        }
        if (failing > shown)
            sb_text_printf(t, "%d more failing comparisons; their attribution is in summary.json.\n\n",
                           failing - shown);
    }
    if (!any) sb_text_puts(t, "Every check passed: nothing drifted.\n\n");
}

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
                sb_text_puts(t, "## Baseline fingerprints\n\n");
                head(t, cols, 7, 0);
                any = 1;
            }
            char vs[600];
            snprintf(vs, sizeof vs, "%s vs %s", sb_report_str(x, "a"), sb_report_str(x, "b"));
            int rows = cJSON_IsArray(ed) ? cJSON_GetArraySize(ed) : 0;
            const cJSON *o = cJSON_IsArray(ed) ? ed->child : NULL;
            for (int i = 0; i < (rows ? rows : 1); i++, o = o ? o->next : NULL) {
                code_cell(t, sb_report_str(chk, "name"));
                code_cell(t, vs);
                sb_text_printf(t, "| %s ", mark(sb_report_str(x, "status")));
                json_cell(t, eu);
                if (o) {
                    code_cell(t, sb_report_str(o, "field"));
                    json_cell(t, cJSON_GetObjectItemCaseSensitive(o, "baseline"));
                    json_cell(t, cJSON_GetObjectItemCaseSensitive(o, "run"));
                } else {
                    cell(t, note ? note : cJSON_IsArray(ed) ? "no field differs" : "not compared");
                    sb_text_puts(t, "| | ");
                }
                sb_text_puts(t, "|\n");
            }
        }
    }
    if (any) sb_text_puts(t, "\n");
}

/* Coarse ULP buckets for text: = 0, 1, 2–15, 16–255, 256–65535, 2^16–2^24, ≥ 2^24. */
static const int COARSE_TO[] = {0, 1, 4, 8, 16, 24, 64}; /* last fine bucket of each */
static const char *const COARSE_NAME[] = {"0", "1", "2\xe2\x80\x93" "15", "16\xe2\x80\x93" "255",
                                           "256\xe2\x80\x93" "65535", "2^16\xe2\x80\x93" "2^24",
                                           "\xe2\x89\xa5 2^24"};

static void hists(sb_text *t, const sb_report *r) {
    sb_text_puts(t, "## ULP distances per tensor\n\n");
    if (r->n_hists == 0) {
        sb_text_puts(t, "No comparison differs: nothing to count.\n\n");
        return;
    }
    for (int i = 0; i < r->n_hists; i++) {
        const sb_report_hist *h = &r->hists[i];
        const cJSON *chk = cJSON_GetArrayItem(r->checks, h->check);
        const cJSON *x = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(chk, "comparisons"), h->cmp);
        sb_text_puts(t, "### ");
        sb_text_md(t, sb_report_str(chk, "name"));
        sb_text_puts(t, ": ");
        sb_text_md(t, sb_report_str(x, "a"));
        sb_text_puts(t, " vs ");
        sb_text_md(t, sb_report_str(x, "b"));
        sb_text_puts(t, "\n\n");
        if (h->error[0]) {
            sb_text_puts(t, "Not counted: ");
            sb_text_md(t, h->error);
            sb_text_puts(t, "\n\n");
            continue;
        }
        sb_text_puts(t, "Elements per ULP distance:\n\n| tensor | elements | differ | max ULP ");
        for (size_t k = 0; k < sizeof COARSE_TO / sizeof *COARSE_TO; k++)
            sb_text_printf(t, "| %s ", COARSE_NAME[k]);
        sb_text_puts(t, "| NaN |\n|---|---:|---:|---:");
        for (size_t k = 0; k <= sizeof COARSE_TO / sizeof *COARSE_TO; k++) sb_text_puts(t, "|---:");
        sb_text_puts(t, "|\n");
        for (int j = 0; j < h->n; j++) {
            const sb_report_hist_tensor *e = &h->t[j];
            code_cell(t, e->name);
            sb_text_printf(t, "| %llu | %llu ", (unsigned long long)e->numel,
                           (unsigned long long)e->differing);
            if (e->max_ulp == UINT64_MAX) sb_text_puts(t, "| NaN ");
            else sb_text_printf(t, "| %llu ", (unsigned long long)e->max_ulp);
            if (!e->elementwise) {
                sb_text_printf(t, "| not compared element by element (%s) ", e->dtype);
                for (size_t k = 0; k < sizeof COARSE_TO / sizeof *COARSE_TO; k++) sb_text_puts(t, "| ");
                sb_text_puts(t, "|\n");
                continue;
            }
            int from = 0;
            for (size_t k = 0; k < sizeof COARSE_TO / sizeof *COARSE_TO; k++) {
                uint64_t n = 0;
                for (int b = from; b <= COARSE_TO[k]; b++) n += e->bucket[b];
                from = COARSE_TO[k] + 1;
                sb_text_printf(t, "| %llu ", (unsigned long long)n);
            }
            sb_text_printf(t, "| %llu |\n", (unsigned long long)e->bucket[SB_REPORT_ULP_NAN]);
        }
        sb_text_puts(t, "\n");
    }
}

/* Steps 1, 2, 4, 8, … and the last of a loss curve set. */
static void losses(sb_text *t, const sb_report *r) {
    sb_text_puts(t, "## Loss curves\n\nEach cell's repeats at steps 1, 2, 4, 8, … and the last.\n\n");
    for (int c = 0; c < r->n_loss_cells; c++) {
        const sb_report_losses *ls[SB_REPORT_MAX_LOSS_RUNS];
        int n = 0, last = 0;
        for (int i = 0; i < r->n_losses && n < SB_REPORT_MAX_LOSS_RUNS; i++) {
            const sb_report_losses *l = &r->losses[i];
            if (r->cell_of_run[l->run] != c || l->error[0]) continue;
            ls[n++] = l;
            if (l->first_step + l->n > last) last = l->first_step + l->n;
        }
        sb_text_puts(t, "### ");
        sb_text_md(t, r->cells[c]);
        sb_text_puts(t, "\n\n");
        int runs, first, at;
        double d;
        sb_report_loss_spread(r, c, &runs, &first, &d, &at);
        if (runs >= 2 && first == 0)
            sb_text_printf(t, "%d repeats: identical losses at every step.\n\n", runs);
        else if (runs >= 2)
            sb_text_printf(t, "%d repeats: losses first differ at step %d, by up to %.3g (step %d).\n\n",
                           runs, first, d, at);
        for (int i = 0; i < r->n_losses; i++)
            if (r->cell_of_run[r->losses[i].run] == c && r->losses[i].error[0]) {
                sb_text_md(t, r->losses[i].error);
                sb_text_puts(t, "\n\n");
            }
        if (n == 0) continue;
        sb_text_puts(t, "| step ");
        for (int k = 0; k < n; k++) {
            double rep = -1;
            sb_report_num(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r->runs, ls[k]->run), "config"),
                          "repeat", &rep);
            if (rep >= 0) sb_text_printf(t, "| repeat %.0f ", rep);
            else sb_text_printf(t, "| run %d ", k + 1);
        }
        sb_text_puts(t, "|\n|---:");
        for (int k = 0; k < n; k++) sb_text_puts(t, "|---:");
        sb_text_puts(t, "|\n");
        for (long long step = 1; step <= last; step = step * 2 > last && step != last ? last : step * 2) {
            sb_text_printf(t, "| %lld ", step);
            for (int k = 0; k < n; k++) {
                long long j = step - 1 - ls[k]->first_step;
                if (j < 0 || j >= ls[k]->n) sb_text_puts(t, "| " DASH " ");
                else if (isnan(ls[k]->v[j])) sb_text_puts(t, "| NaN ");
                else sb_text_printf(t, "| %.9g ", ls[k]->v[j]);
            }
            sb_text_puts(t, "|\n");
            if (step == last) break;
        }
        sb_text_puts(t, "\n");
    }
    if (r->n_cells > r->n_loss_cells)
        sb_text_printf(t, "%d more cells not shown.\n\n", r->n_cells - r->n_loss_cells);
}

static void runs(sb_text *t, const sb_report *r) {
    static const char *const cols[] = {"run", "status", "final loss", "seconds", "weights SHA-256", "notes"};
    sb_text_printf(t, "## Runs\n\n<details><summary>%d runs</summary>\n\n", r->n_runs);
    head(t, cols, 6, 0xC);
    const cJSON *run;
    cJSON_ArrayForEach(run, r->runs) {
        char loss[32], secs[32];
        sb_report_fmt_num(run, "final_loss", loss, sizeof loss);
        sb_report_fmt_num(run, "seconds", secs, sizeof secs);
        code_cell(t, sb_report_str(run, "id"));
        sb_text_printf(t, "| %s ", mark(sb_report_str(run, "status")));
        cell(t, loss);
        cell(t, secs);
        code_cell(t, sb_report_str(run, "weights_sha256"));
        char notes[1400] = "";
        const char *e = sb_report_str(run, "error"), *te = sb_report_str(run, "trace_error");
        size_t u = 0;
        if (e) u += (size_t)snprintf(notes + u, sizeof notes - u, "%s ", e);
        const cJSON *nd = cJSON_GetObjectItemCaseSensitive(run, "nondeterministic_ops"), *o;
        if (cJSON_IsArray(nd) && nd->child && u < sizeof notes) {
            u += (size_t)snprintf(notes + u, sizeof notes - u, "nondeterministic ops (--recheck):");
            cJSON_ArrayForEach(o, nd) {
                const char *op = sb_report_str(o, "op");
                if (u < sizeof notes) u += (size_t)snprintf(notes + u, sizeof notes - u, " %s", op ? op : "?");
            }
        }
        if (te && u < sizeof notes) snprintf(notes + u, sizeof notes - u, " trace: %s", te);
        cell(t, notes[0] ? notes : "");
        sb_text_puts(t, "|\n");
    }
    sb_text_puts(t, "\n</details>\n\n");
}

static void artifacts(sb_text *t, const sb_report *r) {
    static const char *const cols[] = {"file", "kind", "bytes", "SHA-256", "check"};
    sb_text_printf(t, "## Artifacts\n\n<details><summary>%d files with their SHA-256</summary>\n\n",
                   r->n_artifacts);
    head(t, cols, 5, 0x4);
    for (int i = 0; i < r->n_artifacts; i++) {
        const sb_report_artifact *a = &r->artifacts[i];
        char bytes[32];
        if (a->bytes >= 0) snprintf(bytes, sizeof bytes, "%lld", a->bytes);
        else snprintf(bytes, sizeof bytes, DASH);
        code_cell(t, a->path);
        cell(t, a->kind);
        cell(t, bytes);
        code_cell(t, a->sha256[0] ? a->sha256 : NULL);
        cell(t, a->note);
        sb_text_puts(t, "|\n");
    }
    sb_text_puts(t, "\n</details>\n\n");
}

sb_status sb_report_md(const sb_report *r, char **out, size_t *len, sb_error *err) {
    sb_text t = {0};
    header(&t, r);
    environment(&t, r);
    matrix(&t, r);
    checks(&t, r);
    drift(&t, r);
    baseline_env(&t, r);
    hists(&t, r);
    losses(&t, r);
    runs(&t, r);
    artifacts(&t, r);
    sb_text_puts(&t, "_Made by samebits " SB_VERSION " from summary.json and the files of its results "
                     "folder; `samebits report RESULTS_DIR --force` makes the same file again._\n");
    if (t.oom) {
        sb_text_free(&t);
        return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    }
    *out = t.p;
    *len = t.len;
    return SB_OK;
}
