/* attrib.c — drift attribution: the record-by-record walk of two traces
 * (attrib.h says what it reports and how each number is defined).
 *
 * The walk is one pass over the shorter trace's records; op names are
 * matched once up front (sorted merge of both op tables), so the walk
 * itself never compares strings. Per-op results are kept in arrays indexed
 * by trace A's op ids.
 *
 * Not here: reading traces (engine/trace.c), choosing what to compare
 * (checks.c), printing tables (summary.c, cmd_trace_diff.c). The JSON form
 * of a result is built at the end of this file, shared by summary.json and
 * `trace-diff --json`.
 */
#include "attrib.h"
#include "diff.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

const char *sb_drift_kind_name(sb_drift_kind k) {
    return k == SB_DRIFT_SOURCE ? "source" : "propagated";
}

void sb_trace_path_of(const char *arg, char *out, size_t n) {
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(out, n, "%s/trace.sbt", arg);
    else
        snprintf(out, n, "%s", arg);
}

void sb_attribution_free(sb_attribution *x) {
    if (!x) return;
    free(x->sources);
    free(x->growth);
    free(x->op_errors);
    x->sources = NULL;
    x->growth = NULL;
    x->op_errors = NULL;
    x->n_sources = x->n_growth = x->n_op_errors = 0;
}

/* ---- op tables ---------------------------------------------------------- */

typedef struct named_op {
    const char *name;
    int id;
} named_op;

static int cmp_named_op(const void *x, const void *y) {
    return strcmp(((const named_op *)x)->name, ((const named_op *)y)->name);
}

/* t's ops sorted by name (NULL on no memory). */
static named_op *sorted_ops(const sb_trace *t) {
    named_op *v = malloc(sizeof *v * ((size_t)t->n_ops + 1));
    if (!v) return NULL;
    for (int i = 0; i < t->n_ops; i++) v[i] = (named_op){t->op_names[i], i};
    qsort(v, (size_t)t->n_ops, sizeof *v, cmp_named_op);
    return v;
}

/* map[i] = the id in b of a's op i (same name), or -1. NULL on no memory. */
static int *match_ops(const sb_trace *a, const sb_trace *b) {
    int *map = malloc(sizeof *map * ((size_t)a->n_ops + 1));
    named_op *sa = sorted_ops(a), *sb = sorted_ops(b);
    if (!map || !sa || !sb) {
        free(map);
        map = NULL;
        goto done;
    }
    for (int i = 0; i < a->n_ops; i++) map[i] = -1;
    for (int i = 0, j = 0; i < a->n_ops && j < b->n_ops;) {
        int c = strcmp(sa[i].name, sb[j].name);
        if (c == 0) map[sa[i++].id] = sb[j].id;
        else if (c < 0) i++;
        else j++;
    }
done:
    free(sa);
    free(sb);
    return map;
}

/* ---- small helpers ------------------------------------------------------ */

/* Room for one more element of size `elem` after n: the (possibly moved)
 * array, or NULL when out of memory (arr is left as it was). */
static void *grow(void *arr, int n, int *cap, size_t elem) {
    if (n < *cap) return arr;
    int nc = *cap ? *cap * 2 : 8;
    void *p = realloc(arr, (size_t)nc * elem);
    if (p) *cap = nc;
    return p;
}

static const char *op_name(const sb_trace *t, uint32_t id) {
    return id < (uint32_t)t->n_ops ? t->op_names[id] : "?";
}

static const char *stage_name(unsigned s) {
    return s < SB_STAGE_COUNT ? sb_stage_name((sb_stage)s) : "?";
}

/* Per-op step counts (sources, recheck flags): slot[op id] is the op's index
 * in the list or -1, last[op id] the last step counted for it. */
typedef struct op_counter {
    int *slot;
    uint32_t *last;
    int cap;
} op_counter;

static int counter_init(op_counter *c, int n_ops) {
    c->slot = malloc(sizeof *c->slot * ((size_t)n_ops + 1));
    c->last = malloc(sizeof *c->last * ((size_t)n_ops + 1));
    c->cap = 0;
    if (!c->slot || !c->last) return -1;
    for (int i = 0; i < n_ops; i++) c->slot[i] = -1;
    return 0;
}

static void counter_free(op_counter *c) {
    free(c->slot);
    free(c->last);
}

/* Counts record r's op at r's step; a step is counted once per op. */
static int counter_hit(op_counter *c, sb_attrib_op **list, int *n, const sb_trace *t,
                       const sb_trace_record *r) {
    int k = c->slot[r->op];
    if (k >= 0) {
        if (c->last[r->op] != r->step) {
            (*list)[k].steps++;
            c->last[r->op] = r->step;
        }
        return 0;
    }
    sb_attrib_op *p = grow(*list, *n, &c->cap, sizeof *p);
    if (!p) return -1;
    *list = p;
    k = c->slot[r->op] = (*n)++;
    memset(&p[k], 0, sizeof p[k]);
    snprintf(p[k].op, sizeof p[k].op, "%s", op_name(t, r->op));
    p[k].stage = (sb_stage)r->stage;
    p[k].first_step = r->step;
    p[k].steps = 1;
    c->last[r->op] = r->step;
    return 0;
}

/* ---- value comparison --------------------------------------------------- */

typedef struct val_err {
    double max_abs, max_rel;
    uint64_t max_ulp;
} val_err;

/* Compares n float32 values (diff.h's rules); the pointers need not be
 * aligned. Relative error is |a − b| / |b|, 0 when both are 0, +Inf when
 * only b is. */
static val_err compare_values(const float *pa, const float *pb, size_t n) {
    val_err e = {0, 0, 0};
    const unsigned char *ba = (const unsigned char *)pa, *bb = (const unsigned char *)pb;
    for (size_t i = 0; i < n; i++) {
        float x, y;
        memcpy(&x, ba + 4 * i, 4);
        memcpy(&y, bb + 4 * i, 4);
        uint64_t u = sb_ulp_distance_f32(x, y);
        if (u > e.max_ulp) e.max_ulp = u;
        if (isfinite(x) && isfinite(y)) {
            double d = fabs((double)x - (double)y);
            double rel = d == 0 ? 0 : y == 0 ? INFINITY : d / fabs((double)y);
            if (d > e.max_abs) e.max_abs = d;
            if (rel > e.max_rel) e.max_rel = rel;
        }
    }
    return e;
}

/* ---- the walk ----------------------------------------------------------- */

static void place_of(sb_attrib_place *p, const sb_trace *t, size_t i) {
    memset(p, 0, sizeof *p);
    p->record = i;
    p->stage = SB_STAGE_COUNT;
    if (i >= t->n) return; /* the trace ended: op "" */
    p->step = t->rec[i].step;
    p->stage = (sb_stage)t->rec[i].stage;
    snprintf(p->op, sizeof p->op, "%s", op_name(t, t->rec[i].op));
}

static void describe(char *buf, size_t n, const char *side, const sb_trace *t, size_t i) {
    if (i >= t->n)
        snprintf(buf, n, "%s ends after %zu records", side, t->n);
    else
        snprintf(buf, n, "%s has step %u %s (%s)", side, t->rec[i].step,
                 op_name(t, t->rec[i].op), stage_name(t->rec[i].stage));
}

/* Adds one optimizer record's difference to the growth row of its step. */
static int add_growth(sb_attribution *x, int *cap, uint32_t step, val_err e) {
    if (x->n_growth > 0 && x->growth[x->n_growth - 1].step == step) {
        sb_attrib_growth *g = &x->growth[x->n_growth - 1];
        if (e.max_abs > g->max_abs) g->max_abs = e.max_abs;
        if (e.max_ulp > g->max_ulp) g->max_ulp = e.max_ulp;
        return 0;
    }
    sb_attrib_growth *p = grow(x->growth, x->n_growth, cap, sizeof *p);
    if (!p) return -1;
    x->growth = p;
    p[x->n_growth++] = (sb_attrib_growth){.step = step, .max_abs = e.max_abs, .max_ulp = e.max_ulp};
    return 0;
}

static int add_op_error(sb_attribution *x, int *slot, int *cap, const sb_trace *a,
                        const sb_trace_record *r, val_err e) {
    int k = slot[r->op];
    if (k < 0) {
        sb_attrib_op_error *p = grow(x->op_errors, x->n_op_errors, cap, sizeof *p);
        if (!p) return -1;
        x->op_errors = p;
        k = slot[r->op] = x->n_op_errors++;
        memset(&p[k], 0, sizeof p[k]);
        snprintf(p[k].op, sizeof p[k].op, "%s", op_name(a, r->op));
        p[k].stage = (sb_stage)r->stage;
        p[k].step = r->step;
    }
    sb_attrib_op_error *o = &x->op_errors[k];
    if (e.max_abs > o->max_abs) o->max_abs = e.max_abs;
    if (e.max_rel > o->max_rel) o->max_rel = e.max_rel;
    if (e.max_ulp > o->max_ulp) {
        o->max_ulp = e.max_ulp;
        o->step = r->step;
    }
    o->compared += r->n_out;
    return 0;
}

sb_status sb_attrib_compare(const sb_trace *a, const sb_trace *b, sb_attribution *x,
                            sb_error *err) {
    memset(x, 0, sizeof *x);
    op_counter src = {0};
    int *err_slot = malloc(sizeof *err_slot * ((size_t)a->n_ops + 1));
    int *map = match_ops(a, b);
    int err_cap = 0, growth_cap = 0;
    if (!map || !err_slot || counter_init(&src, a->n_ops) != 0) goto fail;
    for (int k = 0; k < a->n_ops; k++) err_slot[k] = -1;

    size_t n = a->n < b->n ? a->n : b->n, i;
    for (i = 0; i < n; i++) {
        const sb_trace_record *ra = &a->rec[i], *rb = &b->rec[i];
        /* the reader validates op ids; a bad one still only stops the walk */
        if (ra->op >= (uint32_t)a->n_ops || rb->op >= (uint32_t)b->n_ops) break;
        if (ra->step != rb->step || ra->stage != rb->stage || map[ra->op] != (int)rb->op) break;
        int out_differs = !sb_hash_equal(ra->out, rb->out);
        const float *va = sb_trace_values(a, i), *vb = sb_trace_values(b, i);
        int snap = va && vb && ra->n_out == rb->n_out;
        val_err e = {0, 0, 0};
        if (snap && out_differs) e = compare_values(va, vb, ra->n_out);
        if (snap && ra->stage == SB_STAGE_OPTIMIZER && add_growth(x, &growth_cap, ra->step, e) != 0)
            goto fail;
        if (!out_differs) continue;

        int source = sb_hash_equal(ra->in, rb->in);
        if (!x->has_divergence) {
            x->has_divergence = 1;
            place_of(&x->first, a, i);
            x->first_kind = source ? SB_DRIFT_SOURCE : SB_DRIFT_PROPAGATED;
        }
        if (source && counter_hit(&src, &x->sources, &x->n_sources, a, ra) != 0) goto fail;
        if (!x->weights_differ &&
            (ra->stage == SB_STAGE_OPTIMIZER || ra->stage == SB_STAGE_INIT)) {
            x->weights_differ = 1;
            x->weights_first_differ_step = ra->step; /* init records are step 0 */
        }
        if (snap && (e.max_ulp > 0 || e.max_abs > 0) &&
            add_op_error(x, err_slot, &err_cap, a, ra, e) != 0)
            goto fail;
    }
    x->records = i;
    if (i < a->n || i < b->n) {
        char da[300], db[300];
        x->structure_differs = 1;
        place_of(&x->structure_at, a, i);
        describe(da, sizeof da, "A", a, i);
        describe(db, sizeof db, "B", b, i);
        snprintf(x->structure_msg, sizeof x->structure_msg, "record %zu: %s, %s", i, da, db);
    }
    x->agree = !x->has_divergence && !x->structure_differs;
    if (x->structure_differs)
        snprintf(x->note, sizeof x->note,
                 "the traces differ in structure at record %zu (another model or other settings?); "
                 "attribution covers the records before it", i);
    else if (x->agree)
        snprintf(x->note, sizeof x->note, "traces agree: every traced op gave the same output");
    else if (x->first_kind == SB_DRIFT_PROPAGATED)
        snprintf(x->note, sizeof x->note,
                 "the first divergent op's inputs already differ: drift entered through "
                 "something not traced");
    counter_free(&src);
    free(err_slot);
    free(map);
    return SB_OK;
fail:
    counter_free(&src);
    free(err_slot);
    free(map);
    sb_attribution_free(x);
    return sb_error_set(err, SB_ERR_NOMEM, "out of memory comparing traces %s and %s", a->path,
                        b->path);
}

sb_status sb_attrib_files(const char *path_a, const char *path_b, sb_attribution *out,
                          sb_error *err) {
    sb_error e = {0};
    memset(out, 0, sizeof *out);
    sb_trace *a = sb_trace_read(path_a, &e);
    sb_trace *b = a ? sb_trace_read(path_b, &e) : NULL;
    sb_status st = a && b ? sb_attrib_compare(a, b, out, &e) : e.status ? e.status : SB_ERR_IO;
    sb_trace_free(a);
    sb_trace_free(b);
    if (st != SB_OK) sb_error_set(err, st, "%s", e.msg[0] ? e.msg : "cannot read trace");
    return st;
}

sb_status sb_attrib_nondeterministic(const sb_trace *t, sb_attrib_op **ops, int *n,
                                     sb_error *err) {
    *ops = NULL;
    *n = 0;
    op_counter c = {0};
    if (counter_init(&c, t->n_ops) != 0) goto fail;
    for (size_t i = 0; i < t->n; i++) {
        const sb_trace_record *r = &t->rec[i];
        if (!(r->flags & SB_TRACE_RECHECK_DIFFERS) || r->op >= (uint32_t)t->n_ops) continue;
        if (counter_hit(&c, ops, n, t, r) != 0) goto fail;
    }
    counter_free(&c);
    return SB_OK;
fail:
    counter_free(&c);
    free(*ops);
    *ops = NULL;
    *n = 0;
    return sb_error_set(err, SB_ERR_NOMEM, "out of memory reading %s", t->path);
}

/* ---- JSON form (summary.json, trace-diff --json) ------------------------- */

static cJSON *num_or_null(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *ulp_or_null(uint64_t u) {
    return u == UINT64_MAX ? cJSON_CreateNull() : cJSON_CreateNumber((double)u);
}

struct cJSON *sb_attrib_ops_json(const sb_attrib_op *ops, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", ops[i].op);
        cJSON_AddStringToObject(o, "stage", stage_name(ops[i].stage));
        cJSON_AddNumberToObject(o, "first_step", ops[i].first_step);
        cJSON_AddNumberToObject(o, "steps", ops[i].steps);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

void sb_attribution_add_json(struct cJSON *obj, const sb_attribution *x, int with_op_errors) {
    if (x->has_divergence) {
        cJSON *f = cJSON_AddObjectToObject(obj, "first_divergence");
        cJSON_AddNumberToObject(f, "step", x->first.step);
        cJSON_AddStringToObject(f, "stage", stage_name(x->first.stage));
        cJSON_AddStringToObject(f, "op", x->first.op);
        cJSON_AddStringToObject(f, "kind", sb_drift_kind_name(x->first_kind));
    } else {
        cJSON_AddNullToObject(obj, "first_divergence");
    }
    if (x->note[0]) cJSON_AddStringToObject(obj, "attribution_note", x->note);
    cJSON_AddItemToObject(obj, "sources", sb_attrib_ops_json(x->sources, x->n_sources));
    if (x->weights_differ)
        cJSON_AddNumberToObject(obj, "weights_first_differ_at_step", x->weights_first_differ_step);
    else
        cJSON_AddNullToObject(obj, "weights_first_differ_at_step");
    cJSON *g = cJSON_AddArrayToObject(obj, "growth");
    for (int i = 0; g && i < x->n_growth; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "step", x->growth[i].step);
        cJSON_AddItemToObject(o, "max_abs", num_or_null(x->growth[i].max_abs));
        cJSON_AddItemToObject(o, "max_ulp", ulp_or_null(x->growth[i].max_ulp));
        cJSON_AddItemToArray(g, o);
    }
    if (with_op_errors) {
        cJSON *e = cJSON_AddArrayToObject(obj, "op_errors");
        for (int i = 0; e && i < x->n_op_errors; i++) {
            const sb_attrib_op_error *r = &x->op_errors[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "op", r->op);
            cJSON_AddStringToObject(o, "stage", stage_name(r->stage));
            cJSON_AddItemToObject(o, "max_abs", num_or_null(r->max_abs));
            cJSON_AddItemToObject(o, "max_rel", num_or_null(r->max_rel));
            cJSON_AddItemToObject(o, "max_ulp", ulp_or_null(r->max_ulp));
            cJSON_AddNumberToObject(o, "step", r->step);
            cJSON_AddItemToArray(e, o);
        }
    }
    if (x->structure_differs) {
        cJSON *m = cJSON_AddObjectToObject(obj, "structure_mismatch");
        cJSON_AddNumberToObject(m, "record", (double)x->structure_at.record);
        cJSON_AddStringToObject(m, "message", x->structure_msg);
    } else {
        cJSON_AddNullToObject(obj, "structure_mismatch");
    }
}
