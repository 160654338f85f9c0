/* diff.c — compares two safetensors files tensor by tensor: bitwise, and by
 * absolute / relative / ULP tolerance (semantics in diff.h).
 *
 * F32 and F64 tensors are compared numerically; every other dtype is
 * compared element by element as bytes, whatever the tolerance. All
 * statistics are exact functions of the two files: elements are visited in
 * flat (row-major) index order and maxima keep the first index on ties.
 *
 * Not here: printing (cmd_diff.c), reading policy (safetensors.c), and any
 * per-tensor tolerance overrides (the suite checks layer builds those).
 */
#include "diff.h"

#include <math.h>
#include <string.h>

/* ---- tolerance ---------------------------------------------------------- */

/* A tolerance with no criterion given means bitwise, as does NULL. */
static int tol_is_bitwise(const sb_tolerance *t) {
    return !t || t->bitwise || !(t->has_atol || t->has_rtol || t->has_ulp);
}

/* Shortest %g rendering that reads back as the same double. */
static void fmt_shortest(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

void sb_tolerance_str(const sb_tolerance *t, char *buf, size_t n) {
    if (n == 0) return;
    if (tol_is_bitwise(t)) {
        snprintf(buf, n, "bitwise");
        return;
    }
    char num[40];
    size_t o = 0;
    buf[0] = 0;
    if (t->has_atol && o < n) {
        fmt_shortest(t->atol, num, sizeof num);
        o += (size_t)snprintf(buf + o, n - o, "atol=%s", num);
    }
    if (t->has_rtol && o < n) {
        fmt_shortest(t->rtol, num, sizeof num);
        o += (size_t)snprintf(buf + o, n - o, "%srtol=%s", o ? " " : "", num);
    }
    if (t->has_ulp && o < n)
        snprintf(buf + o, n - o, "%sulp=%llu", o ? " " : "", (unsigned long long)t->ulp);
}

/* ---- ULP distance --------------------------------------------------------
 * Sign-magnitude bits mapped onto one integer line: distance is the difference
 * of magnitudes on the same side of zero, their sum across it. The sum of two
 * f64 magnitudes is at most 2 * 0x7ff0000000000000, which fits in 64 bits. */

uint64_t sb_ulp_distance_f32(float a, float b) {
    if (isnan(a) || isnan(b)) return (isnan(a) && isnan(b)) ? 0 : UINT64_MAX;
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    uint64_t ma = ua & 0x7fffffffu, mb = ub & 0x7fffffffu;
    if ((ua >> 31) == (ub >> 31)) return ma > mb ? ma - mb : mb - ma;
    return ma + mb;
}

uint64_t sb_ulp_distance_f64(double a, double b) {
    if (isnan(a) || isnan(b)) return (isnan(a) && isnan(b)) ? 0 : UINT64_MAX;
    uint64_t ua, ub;
    memcpy(&ua, &a, 8);
    memcpy(&ub, &b, 8);
    uint64_t ma = ua & 0x7fffffffffffffffull, mb = ub & 0x7fffffffffffffffull;
    if ((ua >> 63) == (ub >> 63)) return ma > mb ? ma - mb : mb - ma;
    return ma + mb;
}

/* ---- one tensor --------------------------------------------------------- */

static int same_shape(const sb_st_tensor *a, const sb_st_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* Elements of a bytewise-compared tensor: equal bytes or not. */
static void diff_bytes(const sb_st_tensor *a, const sb_st_tensor *b, sb_tensor_diff *d) {
    size_t es = sb_dtype_size(a->dtype);
    for (uint64_t i = 0; i < a->numel; i++) {
        if (memcmp(a->data + i * es, b->data + i * es, es) == 0) continue;
        if (d->differing == 0) d->worst_index = i;
        d->differing++;
    }
    d->mismatched = d->differing;
}

/* Elements of an F32/F64 tensor, in flat index order. */
static void diff_floats(const sb_st_tensor *ta, const sb_st_tensor *tb, const sb_tolerance *tol,
                        sb_tensor_diff *d) {
    const int f32 = ta->dtype == SB_DT_F32;
    const size_t es = f32 ? 4 : 8;
    const int bitwise = tol_is_bitwise(tol);
    const int use_close = !bitwise && (tol->has_atol || tol->has_rtol);
    const double atol = !bitwise && tol->has_atol ? tol->atol : 0.0;
    const double rtol = !bitwise && tol->has_rtol ? tol->rtol : 0.0;
    int worst_differs = 0;
    for (uint64_t i = 0; i < ta->numel; i++) {
        const uint8_t *pa = ta->data + i * es, *pb = tb->data + i * es;
        const int differs = memcmp(pa, pb, es) != 0;
        double a, b;
        uint64_t ulp;
        if (f32) {
            float fa, fb;
            memcpy(&fa, pa, 4);
            memcpy(&fb, pb, 4);
            a = fa;
            b = fb;
            ulp = sb_ulp_distance_f32(fa, fb);
        } else {
            memcpy(&a, pa, 8);
            memcpy(&b, pb, 8);
            ulp = sb_ulp_distance_f64(a, b);
        }
        const int nan_a = isnan(a), nan_b = isnan(b);
        const int finite = isfinite(a) && isfinite(b);
        int agree;
        if (bitwise) agree = !differs;
        else if (nan_a || nan_b) agree = nan_a && nan_b;
        else if (!finite) agree = a == b;
        else {
            agree = 1;
            if (use_close) agree = fabs(a - b) <= atol + rtol * fabs(b);
            if (tol->has_ulp && ulp > tol->ulp) agree = 0;
        }
        if (nan_a != nan_b) d->nan_mismatch++;
        else if (!nan_a && !finite && a != b) d->inf_mismatch++;
        if (differs) d->differing++;
        if (!agree) d->mismatched++;
        if (finite) {
            double ad = fabs(a - b);
            double rel = b != 0.0 ? ad / fabs(b) : (ad == 0.0 ? 0.0 : INFINITY);
            if (ad > d->max_abs) d->max_abs = ad;
            if (rel > d->max_rel) d->max_rel = rel;
        }
        /* worst: largest ULP distance; among equals, the first whose bits differ */
        if (i == 0 || ulp > d->max_ulp || (ulp == d->max_ulp && differs && !worst_differs)) {
            d->max_ulp = ulp;
            d->worst_index = i;
            d->worst_a = a;
            d->worst_b = b;
            worst_differs = differs;
        }
    }
}

static void diff_tensor(const char *name, const sb_st_tensor *a, const sb_st_tensor *b,
                        const sb_tolerance *tol, sb_tensor_diff *d) {
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->in_a = a != NULL;
    d->in_b = b != NULL;
    snprintf(d->dtype_a, sizeof d->dtype_a, "%s", a ? sb_dtype_name(a->dtype) : "");
    snprintf(d->dtype_b, sizeof d->dtype_b, "%s", b ? sb_dtype_name(b->dtype) : "");
    if (!a || !b) { /* every element of the one present disagrees */
        d->numel = a ? a->numel : b->numel;
        d->differing = d->mismatched = d->numel;
        return;
    }
    d->same_dtype = a->dtype == b->dtype;
    d->same_shape = same_shape(a, b);
    if (!d->same_dtype || !d->same_shape) {
        d->numel = a->numel > b->numel ? a->numel : b->numel;
        d->differing = d->mismatched = d->numel;
        return;
    }
    d->numel = a->numel;
    if (a->dtype == SB_DT_F32 || a->dtype == SB_DT_F64) diff_floats(a, b, tol, d);
    else diff_bytes(a, b, d);
    d->bitwise_equal = d->differing == 0;
    d->within = d->mismatched == 0;
}

/* ---- whole files -------------------------------------------------------- */

static int cmp_tensor_name(const void *x, const void *y) {
    return strcmp((*(const sb_st_tensor *const *)x)->name, (*(const sb_st_tensor *const *)y)->name);
}

static const sb_st_tensor **sorted_by_name(const sb_st_file *f) {
    const sb_st_tensor **v = malloc(sizeof *v * (size_t)(f->n_tensors + 1));
    if (!v) return NULL;
    for (int i = 0; i < f->n_tensors; i++) v[i] = &f->tensors[i];
    qsort(v, (size_t)f->n_tensors, sizeof *v, cmp_tensor_name);
    return v;
}

/* Is tensor x a worse drift than y? Larger max ULP, then max abs, then more
 * differing elements. Only tensors compared element by element take part. */
static int worse(const sb_tensor_diff *x, const sb_tensor_diff *y) {
    if (x->max_ulp != y->max_ulp) return x->max_ulp > y->max_ulp;
    if (x->max_abs != y->max_abs) return x->max_abs > y->max_abs;
    return x->differing > y->differing;
}

sb_status sb_diff_st(const sb_st_file *a, const sb_st_file *b, const sb_tolerance *tol,
                     sb_file_diff *out, sb_error *err) {
    const sb_st_tensor **va = NULL, **vb = NULL;
    sb_error local;
    if (!err) err = &local;
    memset(out, 0, sizeof *out);
    va = sorted_by_name(a);
    vb = sorted_by_name(b);
    out->t = calloc((size_t)a->n_tensors + (size_t)b->n_tensors + 1, sizeof *out->t);
    if (!va || !vb || !out->t) {
        sb_error_set(err, SB_ERR_NOMEM, "diff %s %s: out of memory", a->path, b->path);
        goto fail;
    }
    out->bitwise_equal = out->within = 1;
    const sb_tensor_diff *worst = NULL;
    int ia = 0, ib = 0;
    while (ia < a->n_tensors || ib < b->n_tensors) {
        int c = ia == a->n_tensors ? 1 : ib == b->n_tensors ? -1 : strcmp(va[ia]->name, vb[ib]->name);
        const sb_st_tensor *ta = c <= 0 ? va[ia++] : NULL;
        const sb_st_tensor *tb = c >= 0 ? vb[ib++] : NULL;
        sb_tensor_diff *d = &out->t[out->n++];
        diff_tensor(ta ? ta->name : tb->name, ta, tb, tol, d);
        out->bitwise_equal &= d->bitwise_equal;
        out->within &= d->within;
        out->mismatched += d->mismatched;
        out->total += d->numel;
        if (!d->in_a || !d->in_b || !d->same_dtype || !d->same_shape) continue;
        if (d->max_abs > out->max_abs) out->max_abs = d->max_abs;
        if (d->max_rel > out->max_rel) out->max_rel = d->max_rel;
        if (d->max_ulp > out->max_ulp) out->max_ulp = d->max_ulp;
        if (!d->bitwise_equal && (!worst || worse(d, worst))) worst = d;
    }
    if (worst) snprintf(out->worst_tensor, sizeof out->worst_tensor, "%s", worst->name);
    free(va);
    free(vb);
    return SB_OK;
fail:
    free(va);
    free(vb);
    sb_file_diff_free(out);
    return err->status;
}

sb_status sb_diff_files(const char *path_a, const char *path_b, const sb_tolerance *tol,
                        sb_file_diff *out, sb_error *err) {
    sb_status s;
    sb_st_file *a = NULL, *b = NULL;
    sb_error local;
    if (!err) err = &local;
    memset(out, 0, sizeof *out);
    if (!(a = sb_st_read(path_a, err)) || !(b = sb_st_read(path_b, err))) {
        s = err->status;
        goto done;
    }
    s = sb_diff_st(a, b, tol, out, err);
done:
    sb_st_free(a);
    sb_st_free(b);
    return s;
}

void sb_file_diff_free(sb_file_diff *d) {
    if (!d) return;
    free(d->t);
    memset(d, 0, sizeof *d);
}
