/* datafile.c — readers for real datasets in common formats: IDX (the MNIST
 * format), CSV and NumPy .npy. Each fills the engine's sb_dataset (features
 * as float [samples, features], labels as int32 [samples]).
 *
 * Every reader treats the file as hostile (DESIGN.md §8): sizes are checked
 * against the file length and for overflow before anything is allocated from
 * them, every value is checked (features finite, labels integral and in
 * [0, classes)), and the first problem becomes one line naming the file and
 * the place ("train.csv: row 17, column 3: expected a number, got \"abc\"").
 * Malformed input is SB_ERR_FORMAT; a file that cannot be read SB_ERR_IO.
 *
 * What it is not: no streaming (a file is read whole, at most
 * SB_DATA_MAX_FILE bytes), no compressed files (.gz, .npz), no pickled or
 * structured .npy arrays, no CSV quoting beyond a quoted header name, no
 * normalisation except the optional `scale` multiplier.
 */
#include "engine.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#define SB_DATA_MAX_FILE ((size_t)4 << 30)     /* bytes per data file */
#define SB_DATA_MAX_SAMPLES 100000000ull
#define SB_DATA_MAX_FEATURES 65536ull          /* the widest layer the engine takes */
#define SB_DATA_MAX_CLASSES 1000
#define SB_NPY_MAX_HEADER 65536u

/* ======================================================================
 * Shared helpers
 * ==================================================================== */

/* An element type: its size, how to read one element as double, and
 * whether it is an integer type. */
typedef enum elt_kind { ELT_U, ELT_I, ELT_F } elt_kind;
typedef struct elt_type {
    elt_kind kind;
    int size;       /* 1, 2, 4, 8 */
    int big_endian;
} elt_type;

static uint64_t load_uint(const uint8_t *p, int size, int big) {
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v |= (uint64_t)p[big ? size - 1 - i : i] << (8 * i);
    return v;
}

static double load_elt(const uint8_t *p, elt_type t) {
    uint64_t u = load_uint(p, t.size, t.big_endian);
    if (t.kind == ELT_U) return (double)u;
    if (t.kind == ELT_I) {
        int shift = 64 - 8 * t.size; /* sign-extend */
        return (double)((int64_t)(u << shift) >> shift);
    }
    if (t.size == 4) {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* A float feature: from a float32 element exactly (no double rounding),
 * otherwise the nearest float, then times scale when scale != 1. */
static float to_feature(const uint8_t *p, elt_type t, float scale) {
    float v;
    if (t.kind == ELT_F && t.size == 4) {
        uint32_t b = (uint32_t)load_uint(p, 4, t.big_endian);
        memcpy(&v, &b, 4);
    } else {
        v = (float)load_elt(p, t);
    }
    return scale != 1.0f ? v * scale : v;
}

static sb_dataset *dataset_alloc(uint64_t samples, uint64_t features, const char *label,
                                 sb_error *err) {
    sb_dataset *d = calloc(1, sizeof *d);
    if (d) {
        d->samples = (int)samples;
        d->features = (int)features;
        d->x = malloc((size_t)(samples * features) * sizeof(float));
        d->y = malloc((size_t)samples * sizeof(int32_t));
    }
    if (!d || !d->x || !d->y) {
        sb_dataset_free(d);
        sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory for %llu x %llu features", label,
                     (unsigned long long)samples, (unsigned long long)features);
        return NULL;
    }
    return d;
}

/* One label: an integral value in [0, classes) (classes 0: below the
 * inference limit). */
static sb_status check_label(double v, int classes, const char *label, const char *where,
                             int32_t *out, sb_error *err) {
    if (!(v == floor(v)) || v < 0)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: %s: label %.17g is not a non-negative integer",
                            label, where, v);
    int limit = classes > 0 ? classes : SB_DATA_MAX_CLASSES;
    if (v >= limit) {
        if (classes > 0)
            return sb_error_set(err, SB_ERR_FORMAT, "%s: %s: label %.0f out of range [0, %d) (classes)",
                                label, where, v, classes);
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: %s: label %.0f is too large (at most %d classes are inferred)",
                            label, where, v, SB_DATA_MAX_CLASSES);
    }
    *out = (int32_t)v;
    return SB_OK;
}

/* Sets d->classes (given, or max label + 1) and checks there are at least 2. */
static sb_status finish_classes(sb_dataset *d, int classes, const char *label, sb_error *err) {
    int maxl = -1;
    for (int i = 0; i < d->samples; i++)
        if (d->y[i] > maxl) maxl = d->y[i];
    d->classes = classes > 0 ? classes : maxl + 1;
    if (d->classes < 2)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: labels: every label is %d; need at least 2 classes",
                            label, maxl);
    return SB_OK;
}

static sb_status check_shape(uint64_t samples, uint64_t features, const char *label,
                             sb_error *err) {
    if (samples < 1 || samples > SB_DATA_MAX_SAMPLES)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: %llu samples, expected 1..%llu", label,
                            (unsigned long long)samples, SB_DATA_MAX_SAMPLES);
    if (features < 1 || features > SB_DATA_MAX_FEATURES)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: %llu features per sample, expected 1..%llu",
                            label, (unsigned long long)features, SB_DATA_MAX_FEATURES);
    return SB_OK;
}

static sb_status check_finite(const sb_dataset *d, const char *label, sb_error *err) {
    size_t n = (size_t)d->samples * (size_t)d->features;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(d->x[i]))
            return sb_error_set(err, SB_ERR_FORMAT, "%s: sample %zu, feature %zu: %s is not finite",
                                label, i / (size_t)d->features, i % (size_t)d->features,
                                isnan(d->x[i]) ? "NaN" : "Inf");
    return SB_OK;
}

static uint8_t *read_whole(const char *path, size_t *n, sb_error *err) {
    return (uint8_t *)sb_read_file(path, SB_DATA_MAX_FILE, n, err);
}

/* ======================================================================
 * IDX: magic 0x00 0x00 TYPE NDIM, NDIM big-endian u32 dimensions, then the
 * elements big-endian in row-major order.
 * ==================================================================== */

typedef struct idx_array {
    elt_type t;
    int ndim;
    uint64_t dims[255];
    uint64_t first, rest;  /* dims[0], product of the others */
    const uint8_t *data;
} idx_array;

static sb_status idx_parse(const uint8_t *b, size_t n, const char *label, idx_array *a,
                           sb_error *err) {
    if (n < 4)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: truncated (%zu bytes, the magic needs 4)",
                            label, n);
    if (b[0] != 0 || b[1] != 0)
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: header: bad magic %02x %02x %02x %02x (expected 00 00 TYPE NDIM)",
                            label, b[0], b[1], b[2], b[3]);
    switch (b[2]) {
    case 0x08: a->t = (elt_type){ELT_U, 1, 1}; break;
    case 0x09: a->t = (elt_type){ELT_I, 1, 1}; break;
    case 0x0B: a->t = (elt_type){ELT_I, 2, 1}; break;
    case 0x0C: a->t = (elt_type){ELT_I, 4, 1}; break;
    case 0x0D: a->t = (elt_type){ELT_F, 4, 1}; break;
    case 0x0E: a->t = (elt_type){ELT_F, 8, 1}; break;
    default:
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: header: type 0x%02x is not an IDX type (08, 09, 0B, 0C, 0D, 0E)",
                            label, b[2]);
    }
    a->ndim = b[3];
    if (a->ndim < 1)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: 0 dimensions", label);
    size_t hdr = 4 + 4 * (size_t)a->ndim;
    if (n < hdr)
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: header: truncated (%zu bytes, %d dimensions need %zu)", label, n,
                            a->ndim, hdr);
    uint64_t rest = 1;
    for (int i = 0; i < a->ndim; i++) {
        a->dims[i] = load_uint(b + 4 + 4 * i, 4, 1);
        if (a->dims[i] == 0)
            return sb_error_set(err, SB_ERR_FORMAT, "%s: header: dimension %d is 0", label, i);
        if (i > 0) {
            if (a->dims[i] > SB_DATA_MAX_FEATURES || rest * a->dims[i] > SB_DATA_MAX_FEATURES)
                return sb_error_set(err, SB_ERR_FORMAT,
                                    "%s: header: dimensions after the first hold more than %llu "
                                    "features per sample",
                                    label, SB_DATA_MAX_FEATURES);
            rest *= a->dims[i];
        }
    }
    a->first = a->dims[0];
    a->rest = rest;
    /* first ≤ 2^32 and rest·size ≤ 2^19: the product fits in 64 bits */
    uint64_t need = a->first * a->rest * (uint64_t)a->t.size;
    if (need > n - hdr)
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: data: truncated: dimensions need %llu bytes after the %zu-byte "
                            "header, the file has %zu",
                            label, (unsigned long long)need, hdr, n - hdr);
    if (need < n - hdr)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: data: %llu bytes after the end of the data",
                            label, (unsigned long long)(n - hdr - need));
    a->data = b + hdr;
    return SB_OK;
}

sb_dataset *sb_dataset_read_idx(const char *x_path, const char *y_path, float scale, int classes,
                                sb_error *err) {
    uint8_t *xb = NULL, *yb = NULL;
    size_t xn = 0, yn = 0;
    sb_dataset *d = NULL;
    idx_array xa, ya;
    if (!(xb = read_whole(x_path, &xn, err)) || !(yb = read_whole(y_path, &yn, err))) goto fail;
    if (idx_parse(xb, xn, x_path, &xa, err) != SB_OK || idx_parse(yb, yn, y_path, &ya, err) != SB_OK)
        goto fail;
    if (ya.ndim != 1) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: header: labels need 1 dimension, got %d", y_path,
                     ya.ndim);
        goto fail;
    }
    if (ya.first != xa.first) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: %llu labels, but %s has %llu samples", y_path,
                     (unsigned long long)ya.first, x_path, (unsigned long long)xa.first);
        goto fail;
    }
    if (check_shape(xa.first, xa.rest, x_path, err) != SB_OK) goto fail;
    if (!(d = dataset_alloc(xa.first, xa.rest, x_path, err))) goto fail;
    size_t total = (size_t)(xa.first * xa.rest);
    for (size_t i = 0; i < total; i++) d->x[i] = to_feature(xa.data + i * (size_t)xa.t.size, xa.t, scale);
    if (check_finite(d, x_path, err) != SB_OK) goto fail;
    for (int i = 0; i < d->samples; i++) {
        char where[48];
        snprintf(where, sizeof where, "label %d", i);
        if (check_label(load_elt(ya.data + (size_t)i * (size_t)ya.t.size, ya.t), classes, y_path,
                        where, &d->y[i], err) != SB_OK)
            goto fail;
    }
    if (finish_classes(d, classes, y_path, err) != SB_OK) goto fail;
    free(xb);
    free(yb);
    return d;
fail:
    free(xb);
    free(yb);
    sb_dataset_free(d);
    return NULL;
}

/* ======================================================================
 * NumPy .npy: "\x93NUMPY", major, minor, header length (u16 LE for 1.x,
 * u32 LE for 2.x/3.x), a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (N, F), }, the data.
 * ==================================================================== */

typedef struct npy_array {
    elt_type t;
    int fortran;
    int ndim;
    uint64_t dims[SB_ST_MAX_DIMS];
    uint64_t first, rest, count;
    const uint8_t *data;
} npy_array;

typedef struct lexer {
    const char *s, *end;
} lexer;

static void skip_ws(lexer *l) {
    while (l->s < l->end && (*l->s == ' ' || *l->s == '\t' || *l->s == '\n' || *l->s == '\r')) l->s++;
}

static int eat(lexer *l, char c) {
    skip_ws(l);
    if (l->s < l->end && *l->s == c) {
        l->s++;
        return 1;
    }
    return 0;
}

/* a quoted string ('…' or "…", no escapes) into out; 0 on failure */
static int lex_string(lexer *l, char *out, size_t cap) {
    skip_ws(l);
    if (l->s >= l->end || (*l->s != '\'' && *l->s != '"')) return 0;
    char q = *l->s++;
    size_t k = 0;
    while (l->s < l->end && *l->s != q) {
        if (*l->s == '\\' || k + 1 >= cap) return 0;
        out[k++] = *l->s++;
    }
    if (l->s >= l->end) return 0;
    l->s++;
    out[k] = '\0';
    return 1;
}

static sb_status npy_descr(const char *descr, elt_type *t, const char *label, sb_error *err) {
    char bo = descr[0];
    char kind = bo ? descr[1] : 0;
    int size = 0;
    if (kind && descr[2] >= '1' && descr[2] <= '8' && descr[3] == '\0') size = descr[2] - '0';
    int ok = (bo == '<' || bo == '>' || bo == '|' || bo == '=') && size > 0 &&
             (((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
              (kind == 'f' && (size == 4 || size == 8)) || (kind == 'b' && size == 1));
    if (ok && bo == '|' && size != 1) ok = 0;
    if (!ok)
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: header: 'descr' '%s' is not supported (integers i1..i8, u1..u8, "
                            "bool b1, floats f4, f8)",
                            label, descr);
    t->kind = kind == 'f' ? ELT_F : kind == 'i' ? ELT_I : ELT_U;
    t->size = size;
    t->big_endian = bo == '>';
    return SB_OK;
}

static sb_status npy_parse(const uint8_t *b, size_t n, const char *label, npy_array *a,
                           sb_error *err) {
    static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (n < 10 || memcmp(b, magic, 6) != 0)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: not a .npy file (bad magic)", label);
    int major = b[6];
    if (major < 1 || major > 3)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: format version %d.%d is not supported",
                            label, major, b[7]);
    size_t start = major == 1 ? 10 : 12;
    if (n < start)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: truncated", label);
    uint64_t hlen = major == 1 ? load_uint(b + 8, 2, 0) : load_uint(b + 8, 4, 0);
    if (hlen > SB_NPY_MAX_HEADER)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: %llu bytes long, more than %u",
                            label, (unsigned long long)hlen, SB_NPY_MAX_HEADER);
    if (hlen > n - start)
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: header: truncated (%llu header bytes declared, %zu in the file)",
                            label, (unsigned long long)hlen, n - start);
    const char *h = (const char *)b + start;
    for (size_t i = 0; i < hlen; i++)
        if (h[i] == '\0')
            return sb_error_set(err, SB_ERR_FORMAT, "%s: header: a NUL byte at offset %zu", label,
                                start + i);
    lexer l = {h, h + hlen};
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    if (!eat(&l, '{'))
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: expected a dict '{…}'", label);
    while (!eat(&l, '}')) {
        char key[32], descr[32];
        if (!lex_string(&l, key, sizeof key) || !eat(&l, ':'))
            return sb_error_set(err, SB_ERR_FORMAT, "%s: header: expected 'key': value at offset %zu",
                                label, start + (size_t)(l.s - h));
        if (!strcmp(key, "descr") && !seen_descr) {
            if (!lex_string(&l, descr, sizeof descr))
                return sb_error_set(err, SB_ERR_FORMAT,
                                    "%s: header: 'descr' is not a simple type string (structured "
                                    "arrays are not supported)",
                                    label);
            if (npy_descr(descr, &a->t, label, err) != SB_OK) return err ? err->status : SB_ERR_FORMAT;
            seen_descr = 1;
        } else if (!strcmp(key, "fortran_order") && !seen_fortran) {
            skip_ws(&l);
            if ((size_t)(l.end - l.s) >= 4 && !memcmp(l.s, "True", 4)) {
                a->fortran = 1;
                l.s += 4;
            } else if ((size_t)(l.end - l.s) >= 5 && !memcmp(l.s, "False", 5)) {
                a->fortran = 0;
                l.s += 5;
            } else {
                return sb_error_set(err, SB_ERR_FORMAT, "%s: header: 'fortran_order' must be True or False",
                                    label);
            }
            seen_fortran = 1;
        } else if (!strcmp(key, "shape") && !seen_shape) {
            if (!eat(&l, '('))
                return sb_error_set(err, SB_ERR_FORMAT, "%s: header: 'shape' must be a tuple", label);
            a->ndim = 0;
            while (!eat(&l, ')')) {
                skip_ws(&l);
                uint64_t v = 0;
                int digits = 0;
                while (l.s < l.end && isdigit((unsigned char)*l.s)) {
                    if (v > (UINT64_MAX - 9) / 10)
                        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: 'shape': a dimension overflows",
                                            label);
                    v = v * 10 + (uint64_t)(*l.s++ - '0');
                    digits++;
                }
                if (l.s < l.end && *l.s == 'L') l.s++; /* Python 2 longs */
                if (!digits || a->ndim == SB_ST_MAX_DIMS)
                    return sb_error_set(err, SB_ERR_FORMAT,
                                        "%s: header: 'shape' must be a tuple of at most %d "
                                        "non-negative integers",
                                        label, SB_ST_MAX_DIMS);
                a->dims[a->ndim++] = v;
                if (!eat(&l, ',')) {
                    if (!eat(&l, ')'))
                        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: 'shape': expected ',' or ')'",
                                            label);
                    break;
                }
            }
            seen_shape = 1;
        } else {
            return sb_error_set(err, SB_ERR_FORMAT, "%s: header: unexpected or repeated key '%s'",
                                label, key);
        }
        if (!eat(&l, ',')) {
            if (!eat(&l, '}'))
                return sb_error_set(err, SB_ERR_FORMAT, "%s: header: expected ',' or '}' at offset %zu",
                                    label, start + (size_t)(l.s - h));
            break;
        }
    }
    skip_ws(&l);
    if (l.s != l.end)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: text after the dict", label);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: missing '%s'", label,
                            !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    if (a->ndim < 1)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: 'shape' () is a scalar, not an array",
                            label);
    a->first = a->dims[0];
    a->rest = 1;
    for (int i = 1; i < a->ndim; i++) {
        if (a->dims[i] == 0 || a->dims[i] > SB_DATA_MAX_FEATURES || a->rest * a->dims[i] > SB_DATA_MAX_FEATURES)
            return sb_error_set(err, SB_ERR_FORMAT,
                                "%s: header: 'shape': dimensions after the first must hold 1..%llu "
                                "features per sample",
                                label, SB_DATA_MAX_FEATURES);
        a->rest *= a->dims[i];
    }
    if (a->first > SB_DATA_MAX_SAMPLES)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: header: 'shape': %llu samples, more than %llu",
                            label, (unsigned long long)a->first, SB_DATA_MAX_SAMPLES);
    a->count = a->first * a->rest; /* ≤ 2^27 · 2^16: no overflow, nor times 8 */
    uint64_t need = a->count * (uint64_t)a->t.size;
    size_t have = n - start - (size_t)hlen;
    if (need > have)
        return sb_error_set(err, SB_ERR_FORMAT,
                            "%s: data: truncated: shape and descr need %llu bytes, the file has %zu",
                            label, (unsigned long long)need, have);
    if (need < have)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: data: %llu bytes after the end of the data",
                            label, (unsigned long long)(have - need));
    a->data = b + start + hlen;
    return SB_OK;
}

/* Element offset of the i-th element in C order (row-major) within the
 * array's storage. */
static uint64_t npy_offset(const npy_array *a, uint64_t i) {
    if (!a->fortran || a->ndim == 1) return i;
    uint64_t off = 0, stride = 1, idx[SB_ST_MAX_DIMS];
    for (int k = a->ndim - 1; k >= 0; k--) {
        idx[k] = i % a->dims[k];
        i /= a->dims[k];
    }
    for (int k = 0; k < a->ndim; k++) {
        off += idx[k] * stride;
        stride *= a->dims[k];
    }
    return off;
}

sb_dataset *sb_dataset_read_npy(const char *x_path, const char *y_path, float scale, int classes,
                                sb_error *err) {
    uint8_t *xb = NULL, *yb = NULL;
    size_t xn = 0, yn = 0;
    sb_dataset *d = NULL;
    npy_array xa, ya;
    memset(&xa, 0, sizeof xa);
    memset(&ya, 0, sizeof ya);
    if (!(xb = read_whole(x_path, &xn, err)) || !(yb = read_whole(y_path, &yn, err))) goto fail;
    if (npy_parse(xb, xn, x_path, &xa, err) != SB_OK || npy_parse(yb, yn, y_path, &ya, err) != SB_OK)
        goto fail;
    if (ya.ndim != 1) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: header: 'shape': labels need a 1-D array, got %d-D",
                     y_path, ya.ndim);
        goto fail;
    }
    if (ya.first != xa.first) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: %llu labels, but %s has %llu samples", y_path,
                     (unsigned long long)ya.first, x_path, (unsigned long long)xa.first);
        goto fail;
    }
    if (check_shape(xa.first, xa.rest, x_path, err) != SB_OK) goto fail;
    if (!(d = dataset_alloc(xa.first, xa.rest, x_path, err))) goto fail;
    for (uint64_t i = 0; i < xa.count; i++)
        d->x[i] = to_feature(xa.data + npy_offset(&xa, i) * (uint64_t)xa.t.size, xa.t, scale);
    if (check_finite(d, x_path, err) != SB_OK) goto fail;
    for (int i = 0; i < d->samples; i++) {
        char where[48];
        snprintf(where, sizeof where, "element %d", i);
        if (check_label(load_elt(ya.data + (size_t)i * (size_t)ya.t.size, ya.t), classes, y_path,
                        where, &d->y[i], err) != SB_OK)
            goto fail;
    }
    if (finish_classes(d, classes, y_path, err) != SB_OK) goto fail;
    free(xb);
    free(yb);
    return d;
fail:
    free(xb);
    free(yb);
    sb_dataset_free(d);
    return NULL;
}

/* ======================================================================
 * CSV: one sample per row, cells separated by ',', optional header row,
 * every cell a number; the label column holds non-negative integers.
 * Rows end in "\n" or "\r\n"; the last may lack it.
 * ==================================================================== */

/* The next cell of the row [s, end): trimmed bounds in *b, *e; returns the
 * position after the separator, or NULL at the end of the row. */
static const char *next_cell(const char *s, const char *end, const char **b, const char **e) {
    const char *c = s;
    while (c < end && *c != ',') c++;
    *b = s;
    *e = c;
    while (*b < *e && (**b == ' ' || **b == '\t')) (*b)++;
    while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
    return c < end ? c + 1 : NULL;
}

static void quote_cell(const char *b, const char *e, char *out, size_t cap) {
    size_t k = 0;
    for (const char *p = b; p < e && k + 5 < cap; p++)
        out[k++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    if (e - b > (long)(cap - 6)) out[k++] = '.', out[k++] = '.', out[k++] = '.';
    out[k] = '\0';
}

sb_dataset *sb_dataset_read_csv(const char *path, int header, int label_column,
                                const char *label_name, float scale, int classes, sb_error *err) {
    size_t n = 0;
    char *text = NULL;
    sb_dataset *d = NULL;
    if (!(text = sb_read_file(path, SB_DATA_MAX_FILE, &n, err))) goto fail;
    if (memchr(text, '\0', n)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: a NUL byte at offset %zu: not a text file", path,
                     (size_t)((char *)memchr(text, '\0', n) - text));
        goto fail;
    }
    /* rows: lines, without a final empty one */
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    if (n > 0 && text[n - 1] != '\n') lines++;
    if (lines < (size_t)(header ? 2 : 1)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: no data rows", path);
        goto fail;
    }
    size_t rows = lines - (header ? 1 : 0);
    /* the first line fixes the column count */
    const char *line_end = memchr(text, '\n', n);
    const char *first_end = line_end ? line_end : text + n;
    if (first_end > text && first_end[-1] == '\r') first_end--;
    int cols = 0;
    for (const char *p = text, *b, *e; p; cols++) p = next_cell(p, first_end, &b, &e);
    if (cols < 2) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: row 1: %d column, need a label and at least one feature",
                     path, cols);
        goto fail;
    }
    int label_col = label_column < 0 ? cols + label_column : label_column;
    if (label_name && label_name[0]) {
        if (!header) {
            sb_error_set(err, SB_ERR_ARG, "%s: label column \"%s\" is named but the file has no header",
                         path, label_name);
            goto fail;
        }
        label_col = -1;
        int c = 0;
        for (const char *p = text, *b, *e; p; c++) {
            p = next_cell(p, first_end, &b, &e);
            if (e - b >= 2 && *b == '"' && e[-1] == '"') b++, e--;
            if ((size_t)(e - b) == strlen(label_name) && !memcmp(b, label_name, (size_t)(e - b))) {
                label_col = c;
                break;
            }
        }
        if (label_col < 0) {
            sb_error_set(err, SB_ERR_FORMAT, "%s: row 1: no column named \"%s\" in the header", path,
                         label_name);
            goto fail;
        }
    }
    if (label_col < 0 || label_col >= cols) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: label column %d is outside the %d columns", path,
                     label_column, cols);
        goto fail;
    }
    if (check_shape(rows, (uint64_t)cols - 1, path, err) != SB_OK) goto fail;
    if (!(d = dataset_alloc(rows, (uint64_t)cols - 1, path, err))) goto fail;

    const char *p = text, *end = text + n;
    size_t row = 0;
    for (size_t line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *next = nl ? nl + 1 : end;
        if (le > p && le[-1] == '\r') le--;
        if (line == 1 && header) {
            p = next;
            continue;
        }
        int c = 0, f = 0;
        for (const char *q = p, *b, *e; q; c++) {
            q = next_cell(q, le, &b, &e);
            if (c >= cols) {
                c++;
                while (q) q = next_cell(q, le, &b, &e), c++;
                break;
            }
            char cell[64], shown[48];
            quote_cell(b, e, shown, sizeof shown);
            if (e == b || (size_t)(e - b) >= sizeof cell) {
                sb_error_set(err, SB_ERR_FORMAT, "%s: row %zu, column %d: expected a number, got \"%s\"",
                             path, line, c + 1, shown);
                goto fail;
            }
            memcpy(cell, b, (size_t)(e - b));
            cell[e - b] = '\0';
            char *stop = NULL;
            if (c == label_col) {
                double v = strtod(cell, &stop);
                if (*stop != '\0' || stop == cell) {
                    sb_error_set(err, SB_ERR_FORMAT,
                                 "%s: row %zu, column %d: expected an integer label, got \"%s\"",
                                 path, line, c + 1, shown);
                    goto fail;
                }
                char where[64];
                snprintf(where, sizeof where, "row %zu, column %d", line, c + 1);
                if (check_label(v, classes, path, where, &d->y[row], err) != SB_OK) goto fail;
            } else {
                float v = strtof(cell, &stop);
                if (*stop != '\0' || stop == cell || !isfinite(v)) {
                    sb_error_set(err, SB_ERR_FORMAT, "%s: row %zu, column %d: expected %s, got \"%s\"",
                                 path, line, c + 1, stop && *stop == '\0' && stop != cell ? "a finite number" : "a number",
                                 shown);
                    goto fail;
                }
                v = scale != 1.0f ? v * scale : v;
                if (!isfinite(v)) {
                    sb_error_set(err, SB_ERR_FORMAT, "%s: row %zu, column %d: not finite once scaled",
                                 path, line, c + 1);
                    goto fail;
                }
                d->x[row * (size_t)(cols - 1) + (size_t)f++] = v;
            }
        }
        if (c != cols) {
            sb_error_set(err, SB_ERR_FORMAT, "%s: row %zu: %d cells, expected %d (as in row 1)", path,
                         line, c, cols);
            goto fail;
        }
        row++;
        p = next;
    }
    SB_ASSERT(row == rows);
    if (finish_classes(d, classes, path, err) != SB_OK) goto fail;
    free(text);
    return d;
fail:
    free(text);
    sb_dataset_free(d);
    return NULL;
}

/* ======================================================================
 * From a run config
 * ==================================================================== */

int sb_data_kind_is_file(const char *kind) {
    return !strcmp(kind, "idx") || !strcmp(kind, "csv") || !strcmp(kind, "npy");
}

sb_dataset *sb_dataset_read(const sb_data_config *c, int classes, sb_error *err) {
    if (!strcmp(c->kind, "idx")) return sb_dataset_read_idx(c->x_path, c->y_path, c->scale, classes, err);
    if (!strcmp(c->kind, "npy")) return sb_dataset_read_npy(c->x_path, c->y_path, c->scale, classes, err);
    if (!strcmp(c->kind, "csv"))
        return sb_dataset_read_csv(c->x_path, c->csv_header, c->label_column, c->label_name, c->scale,
                                   classes, err);
    sb_error_set(err, SB_ERR_ARG, "data.kind: \"%s\" is not a file format", c->kind);
    return NULL;
}
