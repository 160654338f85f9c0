/* cmd_diff.c — `samebits diff A.safetensors B.safetensors`: the command-line
 * face of diff.c. Parses options strictly, prints a per-tensor table and a
 * one-line verdict (or a JSON document with --json), and maps the outcome to
 * the exit code: 0 agree, 1 disagree, 2 bad input or usage.
 *
 * Not here: the comparison itself (diff.c) or any file validation
 * (safetensors.c); this file only formats what they return.
 */
#include "diff.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <math.h>
#include <string.h>

static const char usage_text[] =
    "usage: samebits diff A.safetensors B.safetensors [--atol X] [--rtol Y] [--ulp N] [--json]\n"
    "\n"
    "Compares two checkpoints tensor by tensor. With no tolerance every tensor must be\n"
    "bitwise equal. With tolerances an F32/F64 element agrees when every given criterion\n"
    "holds: |a-b| <= atol + rtol*|b| (b is the second file), and ULP distance <= N.\n"
    "NaN agrees only with NaN, Inf only with the same Inf; other dtypes compare bytewise.\n"
    "\n"
    "  --atol X   absolute tolerance (a non-negative number)\n"
    "  --rtol Y   relative tolerance (a non-negative number)\n"
    "  --ulp N    maximum ULP distance (a non-negative integer)\n"
    "  --json     print a JSON document instead of the table\n"
    "  --help     this text\n"
    "\n"
    "exit status: 0 all tensors agree, 1 some do not, 2 bad input or usage\n";

/* ---- strict number parsing ---------------------------------------------- */

static int parse_tol_double(const char *s, double *out) {
    char *end;
    if (!s || !*s || strchr(" \t\n+-", s[0])) return -1; /* no sign, no blanks */
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v) || v < 0) return -1;
    *out = v;
    return 0;
}

static int parse_uint(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (!s || !*s) return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

/* ---- value formatting --------------------------------------------------- */

/* Shortest decimal that reads back as the same value (as float when f32). */
static void fmt_value(double v, int f32, char *buf, size_t n) {
    if (isnan(v)) { snprintf(buf, n, "nan"); return; }
    if (isinf(v)) { snprintf(buf, n, v > 0 ? "inf" : "-inf"); return; }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        double r = strtod(buf, NULL);
        if (f32 ? (float)r == (float)v : r == v) return;
    }
}

static void fmt_hexfloat(double v, char *buf, size_t n) {
    if (isnan(v)) snprintf(buf, n, "nan");
    else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
    else snprintf(buf, n, "%a", v);
}

/* Flat index → "[i,j,k]" for a row-major shape ("[]" for a scalar). */
static void fmt_index(uint64_t flat, const sb_st_tensor *t, char *buf, size_t n) {
    uint64_t idx[SB_ST_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        uint64_t extent = (uint64_t)t->shape[d];
        idx[d] = extent ? flat % extent : 0;
        flat = extent ? flat / extent : 0;
    }
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%llu", d ? "," : "", (unsigned long long)idx[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static void fmt_shape(const sb_st_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* An element of a bytewise-compared tensor, as its little-endian bits. */
static void fmt_raw(const sb_st_tensor *t, uint64_t i, char *buf, size_t n) {
    size_t es = sb_dtype_size(t->dtype);
    size_t o = (size_t)snprintf(buf, n, "0x");
    for (size_t k = es; k-- > 0 && o < n;)
        o += (size_t)snprintf(buf + o, n - o, "%02x", t->data[i * es + k]);
}

static int is_float(const sb_st_tensor *t) {
    return t && (t->dtype == SB_DT_F32 || t->dtype == SB_DT_F64);
}

/* Control bytes in names would break the one-row-per-tensor table. */
static void fmt_name(const char *s, char *buf, size_t n) {
    size_t o = 0;
    for (; *s && o + 5 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    buf[o] = 0;
}

/* ---- the table ---------------------------------------------------------- */

enum { C_NAME, C_DTYPE, C_ELEMS, C_BITWISE, C_DIFFERING, C_MAXABS, C_MAXREL, C_MAXULP, C_AT,
       C_A, C_B, C_NANINF, C_STATUS, NCOL };
static const char *const headings[NCOL] = {"tensor", "dtype", "elements", "bitwise", "differing",
                                           "max_abs", "max_rel", "max_ulp", "at", "a", "b",
                                           "nan/inf", "status"};
#define CELL 600

static void fill_row(char (*row)[CELL], const sb_tensor_diff *d, const sb_st_tensor *ta,
                     const sb_st_tensor *tb) {
    for (int c = 0; c < NCOL; c++) snprintf(row[c], CELL, "-");
    fmt_name(d->name, row[C_NAME], CELL);
    if (d->same_dtype || !d->in_a || !d->in_b)
        snprintf(row[C_DTYPE], CELL, "%s", d->in_a ? d->dtype_a : d->dtype_b);
    else
        snprintf(row[C_DTYPE], CELL, "%s/%s", d->dtype_a, d->dtype_b);
    snprintf(row[C_ELEMS], CELL, "%llu", (unsigned long long)d->numel);
    snprintf(row[C_BITWISE], CELL, "%s", d->bitwise_equal ? "yes" : "no");
    if (!d->in_a || !d->in_b) {
        snprintf(row[C_STATUS], CELL, "only in %s", d->in_a ? "A" : "B");
        return;
    }
    if (!d->same_dtype || !d->same_shape) {
        char sa[200], sb[200];
        fmt_shape(ta, sa, sizeof sa);
        fmt_shape(tb, sb, sizeof sb);
        if (!d->same_dtype) snprintf(row[C_STATUS], CELL, "dtype %s vs %s", d->dtype_a, d->dtype_b);
        else snprintf(row[C_STATUS], CELL, "shape %s vs %s", sa, sb);
        return;
    }
    double frac = d->numel ? (double)d->differing / (double)d->numel : 0.0;
    snprintf(row[C_DIFFERING], CELL, "%llu (%.3g%%)", (unsigned long long)d->differing, 100 * frac);
    snprintf(row[C_STATUS], CELL, "%s", d->within ? "ok" : "DIFFERS");
    if (is_float(ta)) {
        snprintf(row[C_MAXABS], CELL, "%.3g", d->max_abs);
        snprintf(row[C_MAXREL], CELL, "%.3g", d->max_rel);
        if (d->max_ulp == UINT64_MAX) snprintf(row[C_MAXULP], CELL, "inf");
        else snprintf(row[C_MAXULP], CELL, "%llu", (unsigned long long)d->max_ulp);
        snprintf(row[C_NANINF], CELL, "%llu/%llu", (unsigned long long)d->nan_mismatch,
                 (unsigned long long)d->inf_mismatch);
    }
    if (d->differing == 0) return;
    fmt_index(d->worst_index, ta, row[C_AT], CELL);
    if (is_float(ta)) {
        fmt_value(d->worst_a, ta->dtype == SB_DT_F32, row[C_A], CELL);
        fmt_value(d->worst_b, ta->dtype == SB_DT_F32, row[C_B], CELL);
    } else {
        fmt_raw(ta, d->worst_index, row[C_A], CELL);
        fmt_raw(tb, d->worst_index, row[C_B], CELL);
    }
}

/* Two passes over the rows, one row in memory: widths, then printing. */
static void print_table(const sb_file_diff *fd, const sb_st_tensor **pa, const sb_st_tensor **pb) {
    char row[NCOL][CELL];
    int width[NCOL];
    for (int c = 0; c < NCOL; c++) width[c] = (int)strlen(headings[c]);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            for (int c = 0; c < NCOL; c++)
                printf("%-*s%s", c + 1 < NCOL ? width[c] : 0, headings[c],
                       c + 1 < NCOL ? "  " : "\n");
        for (int i = 0; i < fd->n; i++) {
            fill_row(row, &fd->t[i], pa[i], pb[i]);
            for (int c = 0; c < NCOL; c++) {
                if (pass == 0 && (int)strlen(row[c]) > width[c]) width[c] = (int)strlen(row[c]);
                if (pass == 1)
                    printf("%-*s%s", c + 1 < NCOL ? width[c] : 0, row[c], c + 1 < NCOL ? "  " : "\n");
            }
        }
    }
}

static void print_verdict(const sb_file_diff *fd, const char *tol) {
    int bad = 0, only = 0, mism = 0;
    for (int i = 0; i < fd->n; i++) {
        const sb_tensor_diff *d = &fd->t[i];
        if (!d->within) bad++;
        if (!d->in_a || !d->in_b) only++;
        else if (!d->same_dtype || !d->same_shape) mism++;
    }
    char worst[400] = "";
    if (fd->worst_tensor[0]) {
        char nm[280];
        fmt_name(fd->worst_tensor, nm, sizeof nm);
        if (fd->max_ulp == UINT64_MAX) snprintf(worst, sizeof worst, "; worst %s (NaN mismatch)", nm);
        else snprintf(worst, sizeof worst, "; worst %s (max ULP %llu)", nm,
                      (unsigned long long)fd->max_ulp);
    }
    if (fd->within)
        printf("verdict: AGREE (%s): %d tensors, %llu elements%s\n", tol, fd->n,
               (unsigned long long)fd->total,
               fd->bitwise_equal ? ", all bitwise equal" : ", within tolerance but not bitwise");
    else
        printf("verdict: DIFFER (%s): %d of %d tensors disagree (%d in one file only, %d with "
               "another dtype or shape), %llu of %llu elements%s\n", tol, bad, fd->n, only, mism,
               (unsigned long long)fd->mismatched, (unsigned long long)fd->total, worst);
}

/* ---- JSON --------------------------------------------------------------- */

static void add_u64(cJSON *o, const char *k, uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    cJSON_AddRawToObject(o, k, b);
}

/* A float as {key: decimal-or-null, key_hex: "%a"}: exact and readable. */
static void add_float(cJSON *o, const char *k, double v, int f32) {
    char b[64], hk[64];
    if (isfinite(v)) {
        fmt_value(v, f32, b, sizeof b);
        cJSON_AddRawToObject(o, k, b);
    } else {
        cJSON_AddNullToObject(o, k);
    }
    fmt_hexfloat(v, b, sizeof b);
    snprintf(hk, sizeof hk, "%s_hex", k);
    cJSON_AddStringToObject(o, hk, b);
}

static cJSON *shape_json(const sb_st_tensor *t) {
    cJSON *a = cJSON_CreateArray();
    char b[32];
    for (int d = 0; t && d < t->ndim; d++) {
        snprintf(b, sizeof b, "%lld", (long long)t->shape[d]);
        cJSON_AddItemToArray(a, cJSON_CreateRaw(b));
    }
    return a;
}

static cJSON *tensor_json(const sb_tensor_diff *d, const sb_st_tensor *ta, const sb_st_tensor *tb) {
    cJSON *o = cJSON_CreateObject();
    char b[600];
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddBoolToObject(o, "in_a", d->in_a);
    cJSON_AddBoolToObject(o, "in_b", d->in_b);
    if (ta) cJSON_AddStringToObject(o, "dtype_a", d->dtype_a); else cJSON_AddNullToObject(o, "dtype_a");
    if (tb) cJSON_AddStringToObject(o, "dtype_b", d->dtype_b); else cJSON_AddNullToObject(o, "dtype_b");
    cJSON_AddItemToObject(o, "shape_a", ta ? shape_json(ta) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "shape_b", tb ? shape_json(tb) : cJSON_CreateNull());
    add_u64(o, "elements", d->numel);
    cJSON_AddBoolToObject(o, "bitwise_equal", d->bitwise_equal);
    cJSON_AddBoolToObject(o, "within", d->within);
    add_u64(o, "differing", d->differing);
    cJSON_AddNumberToObject(o, "differing_fraction",
                            d->numel ? (double)d->differing / (double)d->numel : 0.0);
    add_u64(o, "mismatched", d->mismatched);
    add_u64(o, "nan_mismatch", d->nan_mismatch);
    add_u64(o, "inf_mismatch", d->inf_mismatch);
    int compared = d->in_a && d->in_b && d->same_dtype && d->same_shape;
    cJSON_AddStringToObject(o, "compared", !compared ? "no" : is_float(ta) ? "numeric" : "bytewise");
    if (compared && is_float(ta)) { /* max_ulp null: a NaN met a number */
        add_float(o, "max_abs", d->max_abs, 0);
        add_float(o, "max_rel", d->max_rel, 0);
        if (d->max_ulp == UINT64_MAX) cJSON_AddNullToObject(o, "max_ulp");
        else add_u64(o, "max_ulp", d->max_ulp);
    }
    if (!compared || d->differing == 0) {
        cJSON_AddNullToObject(o, "worst");
        return o;
    }
    cJSON *w = cJSON_AddObjectToObject(o, "worst");
    add_u64(w, "flat_index", d->worst_index);
    cJSON *idx = cJSON_AddArrayToObject(w, "index");
    uint64_t flat = d->worst_index, at[SB_ST_MAX_DIMS];
    for (int k = ta->ndim - 1; k >= 0; k--) {
        uint64_t e = (uint64_t)ta->shape[k];
        at[k] = e ? flat % e : 0;
        flat = e ? flat / e : 0;
    }
    for (int k = 0; k < ta->ndim; k++) {
        snprintf(b, sizeof b, "%llu", (unsigned long long)at[k]);
        cJSON_AddItemToArray(idx, cJSON_CreateRaw(b));
    }
    if (is_float(ta)) {
        add_float(w, "a", d->worst_a, ta->dtype == SB_DT_F32);
        add_float(w, "b", d->worst_b, ta->dtype == SB_DT_F32);
    } else {
        fmt_raw(ta, d->worst_index, b, sizeof b);
        cJSON_AddStringToObject(w, "a_bits", b);
        fmt_raw(tb, d->worst_index, b, sizeof b);
        cJSON_AddStringToObject(w, "b_bits", b);
    }
    return o;
}

static int print_json(const sb_file_diff *fd, const sb_st_file *a, const sb_st_file *b,
                      const sb_tolerance *tol, const char *tolstr, const sb_st_tensor **pa,
                      const sb_st_tensor **pb) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "samebits.diff/1");
    cJSON_AddStringToObject(root, "a", a->path);
    cJSON_AddStringToObject(root, "b", b->path);
    cJSON *t = cJSON_AddObjectToObject(root, "tolerance");
    cJSON_AddStringToObject(t, "text", tolstr);
    cJSON_AddBoolToObject(t, "bitwise", tol->bitwise);
    if (tol->has_atol) add_float(t, "atol", tol->atol, 0);
    if (tol->has_rtol) add_float(t, "rtol", tol->rtol, 0);
    if (tol->has_ulp) add_u64(t, "ulp", tol->ulp);
    cJSON_AddStringToObject(root, "verdict", fd->within ? "agree" : "differ");
    cJSON_AddBoolToObject(root, "within", fd->within);
    cJSON_AddBoolToObject(root, "bitwise_equal", fd->bitwise_equal);
    add_u64(root, "tensors", (uint64_t)fd->n);
    add_u64(root, "total", fd->total);
    add_u64(root, "mismatched", fd->mismatched);
    add_float(root, "max_abs", fd->max_abs, 0);
    add_float(root, "max_rel", fd->max_rel, 0);
    if (fd->max_ulp == UINT64_MAX) cJSON_AddNullToObject(root, "max_ulp");
    else add_u64(root, "max_ulp", fd->max_ulp);
    if (fd->worst_tensor[0]) cJSON_AddStringToObject(root, "worst_tensor", fd->worst_tensor);
    else cJSON_AddNullToObject(root, "worst_tensor");
    cJSON *arr = cJSON_AddArrayToObject(root, "tensor_diffs");
    for (int i = 0; i < fd->n; i++) cJSON_AddItemToArray(arr, tensor_json(&fd->t[i], pa[i], pb[i]));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) {
        fprintf(stderr, "samebits diff: out of memory printing JSON\n");
        return 2;
    }
    puts(s);
    cJSON_free(s);
    return 0;
}

/* ---- the command -------------------------------------------------------- */

static int cmp_tensor_name(const void *x, const void *y) {
    return strcmp((*(const sb_st_tensor *const *)x)->name, (*(const sb_st_tensor *const *)y)->name);
}

/* For each row of the diff (names sorted), the tensor in a file or NULL. */
static const sb_st_tensor **rows_of(const sb_file_diff *fd, const sb_st_file *f, int side_a) {
    const sb_st_tensor **sorted = malloc(sizeof *sorted * (size_t)(f->n_tensors + 1));
    const sb_st_tensor **rows = calloc((size_t)fd->n + 1, sizeof *rows);
    if (!sorted || !rows) {
        free(sorted);
        free(rows);
        return NULL;
    }
    for (int i = 0; i < f->n_tensors; i++) sorted[i] = &f->tensors[i];
    qsort(sorted, (size_t)f->n_tensors, sizeof *sorted, cmp_tensor_name);
    for (int i = 0, k = 0; i < fd->n; i++)
        if (side_a ? fd->t[i].in_a : fd->t[i].in_b) rows[i] = sorted[k++];
    free(sorted);
    return rows;
}

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "samebits diff: %s%s%s (see 'samebits diff --help')\n", msg, arg ? " " : "",
            arg ? arg : "");
    return 2;
}

int sb_cmd_diff(int argc, char **argv) {
    sb_tolerance tol = {.bitwise = 1};
    const char *files[2] = {NULL, NULL};
    int nfiles = 0, json = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!opts_done && arg[0] == '-' && arg[1]) {
            if (!strcmp(arg, "--")) { opts_done = 1; continue; }
            if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
                fputs(usage_text, stdout);
                return 0;
            }
            if (!strcmp(arg, "--json")) { json = 1; continue; }
            const char *eq = strchr(arg, '=');
            size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
            int is_atol = !strncmp(arg, "--atol", klen) && klen == 6;
            int is_rtol = !strncmp(arg, "--rtol", klen) && klen == 6;
            int is_ulp = !strncmp(arg, "--ulp", klen) && klen == 5;
            if (!is_atol && !is_rtol && !is_ulp) return usage_error("unknown option", arg);
            const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val) return usage_error("missing value after", arg);
            if (is_ulp) {
                if (parse_uint(val, &tol.ulp) != 0)
                    return usage_error("--ulp: expected a non-negative integer, got", val);
                tol.has_ulp = 1;
            } else if (parse_tol_double(val, is_atol ? &tol.atol : &tol.rtol) != 0) {
                return usage_error(is_atol ? "--atol: expected a non-negative number, got"
                                           : "--rtol: expected a non-negative number, got", val);
            } else {
                *(is_atol ? &tol.has_atol : &tol.has_rtol) = 1;
            }
            tol.bitwise = 0;
            continue;
        }
        if (nfiles == 2) return usage_error("too many files:", arg);
        files[nfiles++] = arg;
    }
    if (nfiles != 2) return usage_error("expected two files", NULL);

    int rc = 2;
    sb_error err = {0};
    sb_file_diff fd = {0};
    const sb_st_tensor **pa = NULL, **pb = NULL;
    char tolstr[256];
    sb_st_file *a = sb_st_read(files[0], &err);
    sb_st_file *b = a ? sb_st_read(files[1], &err) : NULL;
    if (!a || !b || sb_diff_st(a, b, &tol, &fd, &err) != SB_OK) {
        fprintf(stderr, "samebits diff: %s\n", err.msg);
        goto fail;
    }
    pa = rows_of(&fd, a, 1);
    pb = rows_of(&fd, b, 0);
    if (!pa || !pb) {
        fprintf(stderr, "samebits diff: out of memory\n");
        goto fail;
    }
    sb_tolerance_str(&tol, tolstr, sizeof tolstr);
    if (json) {
        if (print_json(&fd, a, b, &tol, tolstr, pa, pb) != 0) goto fail;
    } else {
        char na[600], nb[600];
        fmt_name(a->path, na, sizeof na);
        fmt_name(b->path, nb, sizeof nb);
        printf("A: %s\nB: %s\n", na, nb);
        print_table(&fd, pa, pb);
        print_verdict(&fd, tolstr);
    }
    rc = fd.within ? 0 : 1;
fail:
    free(pa);
    free(pb);
    sb_file_diff_free(&fd);
    sb_st_free(a);
    sb_st_free(b);
    return rc;
}
