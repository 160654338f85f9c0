/* report.c — loading a results folder for its reports, and writing them.
 *
 * Loading (sb_report_load) reads summary.json (its skeleton checked, see
 * report.h), then derives what the renderers show and summary.json does not
 * hold: the cells in order of first appearance and the cells × checks
 * verdict matrix; the SHA-256 and size of every artifact (suite.json,
 * summary.json, and per run its run.json, checkpoint, trace.sbt, log.txt);
 * the loss curves of the first cells' runs (their run.json "losses"); and
 * ULP-distance histograms per tensor of the worst comparisons, read from
 * both checkpoints with the diff code.
 *
 * Writing (sb_report_write) renders all three reports in memory first, then
 * writes each atomically. It never writes any other file of the folder.
 *
 * Not here: the layout of each report (report_junit.c, report_html.c,
 * report_md.c), the command line (cmd_report.c).
 */
#include "report.h"

#include "diff.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

static const char *const REPORT_FILES[3] = {"junit.xml", "report.html", "report.md"};

/* ---- summary.json skeleton ---- */

static int require_str(const cJSON *o, const char *key, const char *path, const char *where,
                       sb_error *err) {
    if (sb_report_str(o, key)) return 0;
    sb_error_set(err, SB_ERR_FORMAT, "%s: %s%s%s: expected a string", path, where,
                 where[0] ? "." : "", key);
    return -1;
}

static int check_skeleton(const cJSON *root, const char *path, sb_error *err) {
    if (!cJSON_IsObject(root))
        return sb_error_set(err, SB_ERR_FORMAT, "%s: expected a JSON object", path), -1;
    const char *schema = sb_report_str(root, "schema");
    if (!schema || strcmp(schema, SB_SUMMARY_SCHEMA) != 0)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: schema: expected \"%s\"", path,
                            SB_SUMMARY_SCHEMA), -1;
    if (require_str(root, "suite", path, "", err)) return -1;
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(root, "runs");
    if (!cJSON_IsArray(runs))
        return sb_error_set(err, SB_ERR_FORMAT, "%s: runs: expected an array", path), -1;
    char where[96];
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, runs) {
        snprintf(where, sizeof where, "runs[%d]", i++);
        if (!cJSON_IsObject(x))
            return sb_error_set(err, SB_ERR_FORMAT, "%s: %s: expected an object", path, where), -1;
        if (require_str(x, "id", path, where, err) || require_str(x, "status", path, where, err))
            return -1;
    }
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(root, "checks");
    if (!cJSON_IsArray(checks))
        return sb_error_set(err, SB_ERR_FORMAT, "%s: checks: expected an array", path), -1;
    i = 0;
    cJSON_ArrayForEach(x, checks) {
        snprintf(where, sizeof where, "checks[%d]", i);
        if (!cJSON_IsObject(x))
            return sb_error_set(err, SB_ERR_FORMAT, "%s: %s: expected an object", path, where), -1;
        if (require_str(x, "name", path, where, err) || require_str(x, "status", path, where, err))
            return -1;
        const cJSON *cmps = cJSON_GetObjectItemCaseSensitive(x, "comparisons");
        if (!cJSON_IsArray(cmps))
            return sb_error_set(err, SB_ERR_FORMAT, "%s: %s.comparisons: expected an array", path,
                                where), -1;
        int k = 0;
        const cJSON *y;
        cJSON_ArrayForEach(y, cmps) {
            snprintf(where, sizeof where, "checks[%d].comparisons[%d]", i, k++);
            if (!cJSON_IsObject(y))
                return sb_error_set(err, SB_ERR_FORMAT, "%s: %s: expected an object", path,
                                    where), -1;
            if (require_str(y, "a", path, where, err) || require_str(y, "b", path, where, err) ||
                require_str(y, "status", path, where, err))
                return -1;
        }
        i++;
    }
    return 0;
}

/* A path from summary.json that may be opened: relative, without "..". */
static int safe_rel(const char *p) {
    if (!p || !p[0] || p[0] == '/' || strlen(p) > 900) return 0;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') return 0;
        s += n;
        if (*s == '/') s++;
    }
    return 1;
}

/* ---- runs and cells ---- */

static int cmp_by_key(const void *x, const void *y, void *keys) {
    int a = *(const int *)x, b = *(const int *)y;
    int c = strcmp(((const char *const *)keys)[a], ((const char *const *)keys)[b]);
    return c ? c : (a > b) - (a < b);
}

/* Sorted index of keys[0..n) (ties by index), for binary search. */
static int *sorted_index(const char **keys, int n) {
    int *idx = malloc((size_t)(n > 0 ? n : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (int i = 0; i < n; i++) idx[i] = i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_by_key, (void *)keys);
    return idx;
}

static int find_key(const char *const *keys, const int *idx, int n, const char *key) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(keys[idx[mid]], key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && !strcmp(keys[idx[lo]], key) ? idx[lo] : -1;
}

typedef struct report_index {
    const char **run_ids;    /* [n_runs] */
    int *run_sorted;
    int *cell_sorted;        /* index of r->cells */
} report_index;

/* The private part of sb_report, behind the public struct. */
typedef struct report_full {
    sb_report pub;
    report_index ix;
} report_full;

int sb_report_find_run(const sb_report *r, const char *id) {
    const report_full *f = (const report_full *)r;
    return id ? find_key(f->ix.run_ids, f->ix.run_sorted, r->n_runs, id) : -1;
}

static int find_cell(const report_full *f, const char *cell) {
    return find_key(f->pub.cells, f->ix.cell_sorted, f->pub.n_cells, cell);
}

/* The cell a comparison side belongs to: a run's cell, or <cell> of
 * "baseline:<cell>"; -1 when unknown. */
static int cell_of_side(const report_full *f, const char *side) {
    if (!strncmp(side, "baseline:", 9)) return find_cell(f, side + 9);
    int i = sb_report_find_run(&f->pub, side);
    return i < 0 ? -1 : f->pub.cell_of_run[i];
}

static int severity(int v) { /* how a cell shows several comparisons: fail > error > pass */
    return v == SB_REPORT_FAIL ? 3 : v == SB_REPORT_ERROR ? 2 : v == SB_REPORT_PASS ? 1 : 0;
}

/* Cells in order of first appearance: runs grouped by cell id (a sorted
 * index), each group numbered when its first run comes up. */
static sb_status build_cells(report_full *f, sb_error *err) {
    sb_report *r = &f->pub;
    size_t n = (size_t)(r->n_runs > 0 ? r->n_runs : 1);
    const char **keys = calloc(n, sizeof *keys);
    int *by_cell = NULL, *group = malloc(n * sizeof *group), *number = malloc(n * sizeof *number);
    r->cells = calloc(n, sizeof *r->cells);
    r->cell_of_run = calloc(n, sizeof *r->cell_of_run);
    f->ix.run_ids = calloc(n, sizeof *f->ix.run_ids);
    if (!keys || !group || !number || !r->cells || !r->cell_of_run || !f->ix.run_ids) goto oom;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, r->runs) {
        f->ix.run_ids[i] = sb_report_str(x, "id");
        const char *cell = sb_report_str(x, "cell");
        keys[i++] = cell ? cell : sb_report_str(x, "id");
    }
    f->ix.run_sorted = sorted_index(f->ix.run_ids, r->n_runs);
    by_cell = sorted_index(keys, r->n_runs);
    if (!f->ix.run_sorted || !by_cell) goto oom;
    int groups = 0;
    for (int k = 0; k < r->n_runs; k++) {
        if (k == 0 || strcmp(keys[by_cell[k]], keys[by_cell[k - 1]]) != 0) number[groups++] = -1;
        group[by_cell[k]] = groups - 1;
    }
    for (int k = 0; k < r->n_runs; k++) {
        int *num = &number[group[k]];
        if (*num < 0) {
            *num = r->n_cells;
            r->cells[r->n_cells++] = keys[k];
        }
        r->cell_of_run[k] = *num;
    }
    f->ix.cell_sorted = sorted_index(r->cells, r->n_cells);
    if (!f->ix.cell_sorted) goto oom;
    free(by_cell);
    free(group);
    free(number);
    free(keys);
    return SB_OK;
oom:
    free(by_cell);
    free(group);
    free(number);
    free(keys);
    return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
}

static sb_status build_matrix(report_full *f, const char *path, sb_error *err) {
    sb_report *r = &f->pub;
    /* 2^25 entries hold 100000 cells x 256 checks (the suite format's limits) */
    if (r->n_checks > 0 && (size_t)r->n_cells > ((size_t)1 << 25) / (size_t)r->n_checks)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: %d cells x %d checks is too large to report",
                            path, r->n_cells, r->n_checks);
    size_t n = (size_t)r->n_cells * (size_t)r->n_checks;
    r->matrix = calloc(n ? n : 1, 1);
    if (!r->matrix) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    int c = 0;
    const cJSON *chk;
    cJSON_ArrayForEach(chk, r->checks) {
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(chk, "comparisons")) {
            const char *st = sb_report_str(x, "status");
            int v = !strcmp(st, "pass") ? SB_REPORT_PASS
                    : !strcmp(st, "fail") ? SB_REPORT_FAIL : SB_REPORT_ERROR;
            int cells[2] = {cell_of_side(f, sb_report_str(x, "a")),
                            cell_of_side(f, sb_report_str(x, "b"))};
            for (int s = 0; s < 2; s++) {
                if (cells[s] < 0) continue;
                unsigned char *m = &r->matrix[(size_t)cells[s] * (size_t)r->n_checks + (size_t)c];
                if (severity(v) > severity(*m)) *m = (unsigned char)v;
            }
        }
        c++;
    }
    return SB_OK;
}

/* ---- artifacts ---- */

static sb_status add_artifact(sb_report *r, const char *rel, const char *kind, const char *want_sha,
                              int optional, sb_error *err) {
    char full[2048];
    snprintf(full, sizeof full, "%s/%s", r->dir, rel);
    struct stat st;
    int exists = stat(full, &st) == 0 && S_ISREG(st.st_mode);
    if (!exists && optional) return SB_OK;
    sb_report_artifact *a = &r->artifacts[r->n_artifacts];
    a->path = strdup(rel);
    if (!a->path) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    r->n_artifacts++;
    a->kind = kind;
    a->bytes = -1;
    a->note = "";
    sb_error e = {0};
    if (!exists) {
        a->note = "missing";
    } else if (sb_sha256_file(full, a->sha256, &e) != SB_OK) {
        a->sha256[0] = '\0';
        a->note = "unreadable";
    } else {
        a->bytes = (long long)st.st_size;
        if (want_sha)
            a->note = !strcmp(want_sha, a->sha256) ? "matches summary.json" : "DIFFERS from summary.json";
    }
    return SB_OK;
}

static sb_status build_artifacts(sb_report *r, sb_error *err) {
    size_t cap = 2 + 4 * (size_t)r->n_runs;
    r->artifacts = calloc(cap, sizeof *r->artifacts);
    if (!r->artifacts) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    if (add_artifact(r, "suite.json", "suite", sb_report_str(r->summary, "suite_sha256"), 0, err) ||
        add_artifact(r, "summary.json", "summary", NULL, 0, err))
        return SB_ERR_NOMEM; /* add_artifact fails only so */
    const cJSON *x;
    cJSON_ArrayForEach(x, r->runs) {
        const char *dir = sb_report_str(x, "dir");
        const char *ck = sb_report_str(x, "checkpoint");
        char rel[3][1024];
        int dir_ok = safe_rel(dir);
        if (dir_ok) {
            snprintf(rel[0], sizeof rel[0], "%s/run.json", dir);
            snprintf(rel[1], sizeof rel[1], "%s/trace.sbt", dir);
            snprintf(rel[2], sizeof rel[2], "%s/log.txt", dir);
        }
        if ((dir_ok && add_artifact(r, rel[0], "run record", NULL, 1, err)) ||
            (safe_rel(ck) && add_artifact(r, ck, "checkpoint", sb_report_str(x, "sha256"), 0, err)) ||
            (dir_ok && add_artifact(r, rel[1], "trace", NULL, 1, err)) ||
            (dir_ok && add_artifact(r, rel[2], "log", NULL, 1, err)))
            return SB_ERR_NOMEM;
    }
    return SB_OK;
}

/* ---- loss curves ---- */

static void load_losses(const sb_report *r, sb_report_losses *l) {
    const cJSON *run = cJSON_GetArrayItem(r->runs, l->run);
    const char *dir = sb_report_str(run, "dir");
    if (!safe_rel(dir)) {
        snprintf(l->error, sizeof l->error, "no safe run folder in summary.json");
        return;
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/%s/run.json", r->dir, dir);
    sb_error e = {0};
    size_t len;
    char *text = sb_read_file(path, SB_REPORT_MAX_FILE, &len, &e);
    if (!text) {
        snprintf(l->error, sizeof l->error, "%s/run.json: cannot read", dir);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(j, "losses");
    if (!cJSON_IsArray(losses)) {
        snprintf(l->error, sizeof l->error, "%s/run.json: no losses", dir);
        cJSON_Delete(j);
        return;
    }
    double first = 0;
    if (sb_report_num(j, "first_step", &first) && first >= 0 && first < 1e9) l->first_step = (int)first;
    int n = cJSON_GetArraySize(losses);
    l->v = malloc((size_t)(n > 0 ? n : 1) * sizeof *l->v);
    if (!l->v) {
        snprintf(l->error, sizeof l->error, "out of memory");
        cJSON_Delete(j);
        return;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, losses) l->v[l->n++] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(j);
}

static sb_status build_losses(sb_report *r, sb_error *err) {
    r->n_loss_cells = r->n_cells < SB_REPORT_MAX_LOSS_CELLS ? r->n_cells : SB_REPORT_MAX_LOSS_CELLS;
    r->losses = calloc((size_t)r->n_loss_cells * SB_REPORT_MAX_LOSS_RUNS + 1, sizeof *r->losses);
    if (!r->losses) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    for (int c = 0; c < r->n_loss_cells; c++) {
        int taken = 0;
        for (int i = 0; i < r->n_runs && taken < SB_REPORT_MAX_LOSS_RUNS; i++) {
            if (r->cell_of_run[i] != c) continue;
            sb_report_losses *l = &r->losses[r->n_losses++];
            l->run = i;
            load_losses(r, l);
            taken++;
        }
    }
    return SB_OK;
}

void sb_report_loss_spread(const sb_report *r, int c, int *runs, int *first_at, double *max_delta,
                           int *max_at) {
    const sb_report_losses *ref = NULL;
    *runs = *first_at = *max_at = 0;
    *max_delta = 0;
    for (int i = 0; i < r->n_losses; i++) {
        const sb_report_losses *l = &r->losses[i];
        if (r->cell_of_run[l->run] != c || l->error[0]) continue;
        (*runs)++;
        if (!ref) {
            ref = l;
            continue;
        }
        for (int k = 0; k < l->n; k++) {
            long long j = (long long)l->first_step + k - ref->first_step; /* same step in ref */
            if (j < 0 || j >= ref->n) continue;
            double a = l->v[k], b = ref->v[j];
            double d = isnan(a) && isnan(b) ? 0 : isnan(a) || isnan(b) ? INFINITY : fabs(a - b);
            int step = l->first_step + k + 1;
            if (d > 0 && (*first_at == 0 || step < *first_at)) *first_at = step;
            if (d > *max_delta) {
                *max_delta = d;
                *max_at = step;
            }
        }
    }
}

/* ---- ULP histograms ---- */

/* Path of a run's checkpoint, or an error naming why there is none. */
static int checkpoint_of(const sb_report *r, const char *id, char *path, size_t n, char *why,
                         size_t wn) {
    if (!strncmp(id, "baseline:", 9)) {
        snprintf(why, wn, "the baseline's checkpoint is not in the results folder");
        return -1;
    }
    int i = sb_report_find_run(r, id);
    const char *ck = i < 0 ? NULL : sb_report_str(cJSON_GetArrayItem(r->runs, i), "checkpoint");
    if (!safe_rel(ck)) {
        snprintf(why, wn, "%s has no checkpoint in summary.json", id);
        return -1;
    }
    snprintf(path, n, "%s/%s", r->dir, ck);
    return 0;
}

static void fill_tensor(sb_report_hist_tensor *h, const sb_tensor_diff *d, const sb_st_file *fa,
                        const sb_st_file *fb) {
    snprintf(h->name, sizeof h->name, "%s", d->name);
    snprintf(h->dtype, sizeof h->dtype, "%s", d->in_a ? d->dtype_a : d->dtype_b);
    h->numel = d->numel;
    h->differing = d->differing;
    h->max_ulp = d->max_ulp;
    const sb_st_tensor *ta = sb_st_find(fa, d->name), *tb = sb_st_find(fb, d->name);
    if (!ta || !tb || !d->same_dtype || !d->same_shape || ta->numel != tb->numel ||
        (ta->dtype != SB_DT_F32 && ta->dtype != SB_DT_F64))
        return;
    h->elementwise = 1;
    h->max_ulp = 0;
    for (uint64_t i = 0; i < ta->numel; i++) {
        uint64_t u;
        if (ta->dtype == SB_DT_F32) {
            float a, b;
            memcpy(&a, ta->data + 4 * i, 4);
            memcpy(&b, tb->data + 4 * i, 4);
            u = sb_ulp_distance_f32(a, b);
        } else {
            double a, b;
            memcpy(&a, ta->data + 8 * i, 8);
            memcpy(&b, tb->data + 8 * i, 8);
            u = sb_ulp_distance_f64(a, b);
        }
        h->bucket[sb_report_ulp_bucket(u)]++;
        if (u > h->max_ulp) h->max_ulp = u;
    }
}

static void compute_hist(const sb_report *r, sb_report_hist *h, const cJSON *cmp) {
    char pa[2048], pb[2048];
    if (checkpoint_of(r, sb_report_str(cmp, "a"), pa, sizeof pa, h->error, sizeof h->error) ||
        checkpoint_of(r, sb_report_str(cmp, "b"), pb, sizeof pb, h->error, sizeof h->error))
        return;
    sb_error e = {0};
    sb_file_diff d = {0};
    sb_st_file *fa = sb_st_read(pa, &e);
    sb_st_file *fb = fa ? sb_st_read(pb, &e) : NULL;
    if (!fa || !fb || sb_diff_st(fa, fb, NULL, &d, &e) != SB_OK) {
        /* the message names the file by its full path; keep the results-relative part */
        size_t skip = strlen(r->dir) + 1;
        snprintf(h->error, sizeof h->error, "%s",
                 strncmp(e.msg, r->dir, skip - 1) == 0 && strlen(e.msg) >= skip ? e.msg + skip
                                                                                 : e.msg);
        goto done;
    }
    h->t = calloc((size_t)(d.n > 0 ? d.n : 1), sizeof *h->t);
    if (!h->t) {
        snprintf(h->error, sizeof h->error, "out of memory");
        goto done;
    }
    h->n = d.n;
    for (int i = 0; i < d.n; i++) {
        fill_tensor(&h->t[i], &d.t[i], fa, fb);
        for (int k = 1; k <= 64; k++)
            if (h->t[i].bucket[k] && k > h->max_bucket) h->max_bucket = k;
        if (h->t[i].bucket[SB_REPORT_ULP_NAN]) h->has_nan = 1;
    }
done:
    sb_file_diff_free(&d);
    sb_st_free(fa);
    sb_st_free(fb);
}

/* max_ulp of a comparison for ranking: null (a NaN met a number) is the worst. */
static double rank_ulp(const cJSON *x) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, "max_ulp");
    if (cJSON_IsNull(v)) return INFINITY;
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Charted: each failing check's worst failing comparison, then each other
 * check's worst comparison that passed without being bitwise equal (a
 * tolerance at work), at most SB_REPORT_MAX_HISTS in all. */
static sb_status build_hists(sb_report *r, sb_error *err) {
    r->hists = calloc(SB_REPORT_MAX_HISTS, sizeof *r->hists);
    if (!r->hists) return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    for (int pass = 0; pass < 2; pass++) {
        int c = 0;
        const cJSON *chk;
        cJSON_ArrayForEach(chk, r->checks) {
            int best = -1, k = 0;
            double worst = -2;
            const cJSON *x;
            cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(chk, "comparisons")) {
                const char *st = sb_report_str(x, "status");
                int want = pass == 0 ? !strcmp(st, "fail")
                                     : !strcmp(st, "pass") &&
                                           cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(x, "bitwise_equal"));
                if (want && rank_ulp(x) > worst) worst = rank_ulp(x), best = k;
                k++;
            }
            if (best >= 0 && r->n_hists < SB_REPORT_MAX_HISTS) {
                sb_report_hist *h = &r->hists[r->n_hists++];
                h->check = c;
                h->cmp = best;
                compute_hist(r, h, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(chk, "comparisons"), best));
            }
            c++;
        }
    }
    return SB_OK;
}

/* ---- load / free ---- */

sb_report *sb_report_load(const char *dir, sb_error *err) {
    report_full *f = calloc(1, sizeof *f);
    char *text = NULL;
    if (!f) {
        sb_error_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sb_report *r = &f->pub;
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    size_t dl = strlen(r->dir);
    while (dl > 1 && r->dir[dl - 1] == '/') r->dir[--dl] = '\0';
    char path[1200];
    snprintf(path, sizeof path, "%s/summary.json", r->dir);
    size_t len;
    text = sb_read_file(path, SB_REPORT_MAX_FILE, &len, err);
    if (!text) goto fail;
    const char *end = NULL;
    if (memchr(text, '\0', len)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: holds a NUL byte: not a JSON text", path);
        goto fail;
    }
    /* the length includes the terminating NUL: cJSON then checks nothing follows the value */
    r->summary = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!r->summary) {
        int line = 1, col = 1;
        for (const char *p = text; end && p < end && p < text + len; p++)
            if (*p == '\n') line++, col = 1;
            else col++;
        sb_error_set(err, SB_ERR_FORMAT, "%s: line %d, column %d: not valid JSON", path, line, col);
        goto fail;
    }
    char dup[512];
    if (sb_json_find_duplicate_key(r->summary, dup, sizeof dup)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: %s", path, dup);
        goto fail;
    }
    if (check_skeleton(r->summary, path, err) != 0) goto fail;
    r->runs = cJSON_GetObjectItemCaseSensitive(r->summary, "runs");
    r->checks = cJSON_GetObjectItemCaseSensitive(r->summary, "checks");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(r->summary, "environment");
    r->environment = cJSON_IsObject(env) ? env : NULL;
    r->n_runs = cJSON_GetArraySize(r->runs);
    r->n_checks = cJSON_GetArraySize(r->checks);
    if (build_cells(f, err) != SB_OK || build_matrix(f, path, err) != SB_OK ||
        build_artifacts(r, err) != SB_OK || build_losses(r, err) != SB_OK ||
        build_hists(r, err) != SB_OK)
        goto fail;
    free(text);
    return r;
fail:
    free(text);
    sb_report_free(r);
    return NULL;
}

void sb_report_free(sb_report *r) {
    if (!r) return;
    report_full *f = (report_full *)r;
    cJSON_Delete(r->summary);
    free(r->cells);
    free(r->cell_of_run);
    free(r->matrix);
    for (int i = 0; i < r->n_artifacts; i++) free(r->artifacts[i].path);
    free(r->artifacts);
    for (int i = 0; i < r->n_losses; i++) free(r->losses[i].v);
    free(r->losses);
    for (int i = 0; i < r->n_hists; i++) free(r->hists[i].t);
    free(r->hists);
    free(f->ix.run_ids);
    free(f->ix.run_sorted);
    free(f->ix.cell_sorted);
    free(f);
}

/* ---- writing ---- */

sb_status sb_report_write(const char *dir, int overwrite, sb_error *err) {
    char path[3][1200];
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s", dir, REPORT_FILES[i]);
        if (!overwrite && sb_path_exists(path[i]))
            return sb_error_set(err, SB_ERR_EXISTS,
                                "%s: exists; reports are never rewritten silently "
                                "(--force regenerates them)", path[i]);
    }
    char *text[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0};
    sb_status st = SB_OK;
    sb_report *r = sb_report_load(dir, err);
    if (!r) return err && err->status != SB_OK ? err->status : SB_ERR_FORMAT;
    if ((st = sb_report_junit(r, &text[0], &len[0], err)) != SB_OK ||
        (st = sb_report_html(r, &text[1], &len[1], err)) != SB_OK ||
        (st = sb_report_md(r, &text[2], &len[2], err)) != SB_OK)
        goto done;
    for (int i = 0; i < 3; i++)
        if ((st = sb_write_file_atomic(path[i], text[i], len[i], overwrite, err)) != SB_OK) goto done;
done:
    for (int i = 0; i < 3; i++) free(text[i]);
    sb_report_free(r);
    return st;
}
