/* cmd_inspect.c — `samebits inspect FILE.safetensors [--json]`: what is in a
 * checkpoint. File size, header length, SHA-256 of the file, the samebits
 * weights digest, metadata, and per tensor its dtype, shape, byte range,
 * SHA-256 and, for float tensors (F64, F32, F16, BF16), min / max / mean /
 * L2 norm over finite elements and the NaN and Inf counts.
 *
 * Not here: validation (sb_st_read does it all before anything is printed)
 * or comparison (diff). Exit 0 when the file is valid, 2 otherwise.
 */
#include "diff.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <string.h>

static const char usage_text[] =
    "usage: samebits inspect FILE.safetensors [--json]\n"
    "\n"
    "Validates a checkpoint and prints its size, header length, SHA-256, weights digest\n"
    "(independent of metadata and layout), metadata, and per tensor: dtype, shape, byte\n"
    "range, SHA-256 and, for F64/F32/F16/BF16, min, max, mean and L2 norm over finite\n"
    "elements with the count of NaN and Inf.\n"
    "\n"
    "  --json     print a JSON document instead of text\n"
    "  --help     this text\n"
    "\n"
    "exit status: 0 valid file, 2 bad input or usage\n";

/* ---- statistics --------------------------------------------------------- */

typedef struct stats {
    uint64_t finite, nan, inf;
    double min, max, mean, l2;
} stats;

/* What is computed once per tensor (hash and stats), then printed. */
typedef struct tinfo {
    char sha[65];
    int has_stats;
    stats s;
} tinfo;

static double half_to_double(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return sign ? -v : v;
}

static double element(const sb_st_tensor *t, uint64_t i) {
    switch (t->dtype) {
    case SB_DT_F64: { double v; memcpy(&v, t->data + 8 * i, 8); return v; }
    case SB_DT_F32: { float v; memcpy(&v, t->data + 4 * i, 4); return v; }
    case SB_DT_F16: { uint16_t h; memcpy(&h, t->data + 2 * i, 2); return half_to_double(h); }
    case SB_DT_BF16: {
        uint16_t h;
        memcpy(&h, t->data + 2 * i, 2);
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    default: return NAN;
    }
}

static int has_stats(const sb_st_tensor *t) {
    return t->dtype == SB_DT_F64 || t->dtype == SB_DT_F32 || t->dtype == SB_DT_F16 ||
           t->dtype == SB_DT_BF16;
}

/* One pass in flat index order. The sum for the mean is a plain left-to-right
 * double sum; the L2 norm is accumulated scaled (as BLAS nrm2 does) so that it
 * neither overflows nor underflows: l2 = scale * sqrt(ssq). */
static void compute_stats(const sb_st_tensor *t, stats *s) {
    double sum = 0.0, scale = 0.0, ssq = 1.0;
    memset(s, 0, sizeof *s);
    for (uint64_t i = 0; i < t->numel; i++) {
        double v = element(t, i);
        if (isnan(v)) { s->nan++; continue; }
        if (isinf(v)) { s->inf++; continue; }
        if (s->finite == 0 || v < s->min) s->min = v;
        if (s->finite == 0 || v > s->max) s->max = v;
        s->finite++;
        sum += v;
        double a = fabs(v);
        if (a > 0.0) {
            if (scale < a) {
                ssq = 1.0 + ssq * (scale / a) * (scale / a);
                scale = a;
            } else {
                ssq += (a / scale) * (a / scale);
            }
        }
    }
    s->mean = s->finite ? sum / (double)s->finite : 0.0;
    s->l2 = scale * sqrt(ssq);
}

/* ---- formatting helpers ------------------------------------------------- */

/* Control bytes would break one-line-per-item output. */
static void fmt_text(const char *s, char *buf, size_t n) {
    size_t o = 0;
    for (; *s && o + 5 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    if (*s && o + 4 <= n) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = 0;
}

static void fmt_shape(const sb_st_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Shortest decimal that reads back as the same double. */
static void fmt_double(double v, char *buf, size_t n) {
    if (isnan(v)) { snprintf(buf, n, "nan"); return; }
    if (isinf(v)) { snprintf(buf, n, v > 0 ? "inf" : "-inf"); return; }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* ---- text output -------------------------------------------------------- */

enum { C_NAME, C_DTYPE, C_SHAPE, C_BYTES, C_SHA, C_MIN, C_MAX, C_MEAN, C_L2, C_NAN, C_INF, NCOL };
static const char *const headings[NCOL] = {"tensor", "dtype", "shape", "bytes", "sha256", "min",
                                           "max", "mean", "l2", "nan", "inf"};
#define CELL 1100

static void fill_row(char (*row)[CELL], const sb_st_tensor *t, const tinfo *ti) {
    const stats *s = &ti->s;
    for (int c = 0; c < NCOL; c++) snprintf(row[c], CELL, "-");
    fmt_text(t->name, row[C_NAME], CELL);
    snprintf(row[C_DTYPE], CELL, "%s", sb_dtype_name(t->dtype));
    fmt_shape(t, row[C_SHAPE], CELL);
    snprintf(row[C_BYTES], CELL, "[%llu, %llu)", (unsigned long long)t->begin,
             (unsigned long long)t->end);
    snprintf(row[C_SHA], CELL, "%s", ti->sha);
    if (!ti->has_stats) return;
    if (s->finite) {
        snprintf(row[C_MIN], CELL, "%.6g", s->min);
        snprintf(row[C_MAX], CELL, "%.6g", s->max);
        snprintf(row[C_MEAN], CELL, "%.6g", s->mean);
        snprintf(row[C_L2], CELL, "%.6g", s->l2);
    }
    snprintf(row[C_NAN], CELL, "%llu", (unsigned long long)s->nan);
    snprintf(row[C_INF], CELL, "%llu", (unsigned long long)s->inf);
}

static void print_text(const sb_st_file *f, const tinfo *info, const char *file_sha,
                       const char *weights) {
    char a[CELL], b[CELL];
    char row[NCOL][CELL];
    int width[NCOL];
    fmt_text(f->path, a, sizeof a);
    printf("file:           %s\n", a);
    printf("size:           %zu bytes\n", f->size);
    printf("header:         %llu bytes (data: %llu bytes)\n", (unsigned long long)f->header_len,
           (unsigned long long)(f->size - 8 - f->header_len));
    printf("sha256:         %s\n", file_sha);
    printf("weights digest: %s\n", weights);
    printf("metadata:       %d key%s\n", f->n_meta, f->n_meta == 1 ? "" : "s");
    for (int i = 0; i < f->n_meta; i++) {
        fmt_text(f->meta_keys[i], a, sizeof a);
        fmt_text(f->meta_vals[i], b, sizeof b);
        printf("  %s = %s\n", a, b);
    }
    printf("tensors:        %d\n", f->n_tensors);
    if (f->n_tensors == 0) return;
    for (int c = 0; c < NCOL; c++) width[c] = (int)strlen(headings[c]);
    /* two passes with one row in memory: widths, then printing */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            for (int c = 0; c < NCOL; c++)
                printf("%-*s%s", c + 1 < NCOL ? width[c] : 0, headings[c],
                       c + 1 < NCOL ? "  " : "\n");
        for (int i = 0; i < f->n_tensors; i++) {
            fill_row(row, &f->tensors[i], &info[i]);
            for (int c = 0; c < NCOL; c++) {
                if (pass == 0 && (int)strlen(row[c]) > width[c]) width[c] = (int)strlen(row[c]);
                if (pass == 1)
                    printf("%-*s%s", c + 1 < NCOL ? width[c] : 0, row[c], c + 1 < NCOL ? "  " : "\n");
            }
        }
    }
}

/* ---- JSON output -------------------------------------------------------- */

static void add_u64(cJSON *o, const char *k, uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    cJSON_AddRawToObject(o, k, b);
}

/* {key: decimal, key_hex: "%a"}: the hex string is the exact value. */
static void add_float(cJSON *o, const char *k, double v) {
    char b[64], hk[64];
    fmt_double(v, b, sizeof b);
    if (isfinite(v)) cJSON_AddRawToObject(o, k, b);
    else cJSON_AddNullToObject(o, k);
    if (isfinite(v)) snprintf(b, sizeof b, "%a", v);
    snprintf(hk, sizeof hk, "%s_hex", k);
    cJSON_AddStringToObject(o, hk, b);
}

static cJSON *tensor_json(const sb_st_tensor *t, const tinfo *ti) {
    cJSON *o = cJSON_CreateObject();
    char b[32];
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "dtype", sb_dtype_name(t->dtype));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->ndim; d++) {
        snprintf(b, sizeof b, "%lld", (long long)t->shape[d]);
        cJSON_AddItemToArray(shape, cJSON_CreateRaw(b));
    }
    add_u64(o, "elements", t->numel);
    cJSON *off = cJSON_AddArrayToObject(o, "data_offsets");
    snprintf(b, sizeof b, "%llu", (unsigned long long)t->begin);
    cJSON_AddItemToArray(off, cJSON_CreateRaw(b));
    snprintf(b, sizeof b, "%llu", (unsigned long long)t->end);
    cJSON_AddItemToArray(off, cJSON_CreateRaw(b));
    cJSON_AddStringToObject(o, "sha256", ti->sha);
    if (!ti->has_stats) {
        cJSON_AddNullToObject(o, "stats");
        return o;
    }
    stats s = ti->s;
    cJSON *st = cJSON_AddObjectToObject(o, "stats");
    add_u64(st, "finite", s.finite);
    add_u64(st, "nan", s.nan);
    add_u64(st, "inf", s.inf);
    if (s.finite) {
        add_float(st, "min", s.min);
        add_float(st, "max", s.max);
        add_float(st, "mean", s.mean);
        add_float(st, "l2", s.l2);
    }
    return o;
}

static int print_json(const sb_st_file *f, const tinfo *info, const char *file_sha,
                      const char *weights) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "samebits.inspect/1");
    cJSON_AddStringToObject(root, "file", f->path);
    add_u64(root, "size", f->size);
    add_u64(root, "header_length", f->header_len);
    add_u64(root, "data_length", f->size - 8 - f->header_len);
    cJSON_AddStringToObject(root, "sha256", file_sha);
    cJSON_AddStringToObject(root, "weights_digest", weights);
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    for (int i = 0; i < f->n_meta; i++)
        cJSON_AddStringToObject(meta, f->meta_keys[i], f->meta_vals[i]);
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    for (int i = 0; i < f->n_tensors; i++) cJSON_AddItemToArray(arr, tensor_json(&f->tensors[i], &info[i]));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) {
        fprintf(stderr, "samebits inspect: out of memory printing JSON\n");
        return 2;
    }
    puts(s);
    cJSON_free(s);
    return 0;
}

/* ---- the command -------------------------------------------------------- */

int sb_cmd_inspect(int argc, char **argv) {
    const char *file = NULL;
    int json = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!opts_done && arg[0] == '-' && arg[1]) {
            if (!strcmp(arg, "--")) { opts_done = 1; continue; }
            if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
                fputs(usage_text, stdout);
                return 0;
            }
            if (!strcmp(arg, "--json")) { json = 1; continue; }
            fprintf(stderr, "samebits inspect: unknown option %s (see 'samebits inspect --help')\n",
                    arg);
            return 2;
        }
        if (file) {
            fprintf(stderr, "samebits inspect: expected one file, got a second: %s\n", arg);
            return 2;
        }
        file = arg;
    }
    if (!file) {
        fprintf(stderr, "samebits inspect: expected a file (see 'samebits inspect --help')\n");
        return 2;
    }
    sb_error err = {0};
    sb_st_file *f = sb_st_read(file, &err);
    if (!f) {
        fprintf(stderr, "samebits inspect: %s\n", err.msg);
        return 2;
    }
    /* the file's hash from the bytes already read and validated, so what is
     * hashed is what was inspected even if the file changes meanwhile */
    char file_sha[65], weights[65];
    sb_sha256_bytes(f->buf, f->size, file_sha);
    sb_st_weights_digest(f, weights);
    tinfo *info = calloc((size_t)f->n_tensors + 1, sizeof *info);
    if (!info) {
        fprintf(stderr, "samebits inspect: %s: out of memory\n", file);
        sb_st_free(f);
        return 2;
    }
    for (int i = 0; i < f->n_tensors; i++) {
        const sb_st_tensor *t = &f->tensors[i];
        sb_sha256_bytes(t->data, (size_t)(t->end - t->begin), info[i].sha);
        info[i].has_stats = has_stats(t);
        if (info[i].has_stats) compute_stats(t, &info[i].s);
    }
    int rc = 0;
    if (json) rc = print_json(f, info, file_sha, weights);
    else print_text(f, info, file_sha, weights);
    free(info);
    sb_st_free(f);
    return rc;
}
