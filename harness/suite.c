/* suite.c — reading, validating and expanding suite files (see suite.h).
 *
 * What it is: a strict reader. Every key, type and range of the suite format is
 * checked here; the first problem found becomes one line
 * "LABEL: json.path: what is wrong" in the caller's sb_error, and nothing is
 * returned. A suite that parses is complete: every default is filled in and
 * every check refers only to values the matrix has.
 *
 * Status codes: SB_ERR_FORMAT when the document does not have the shape of a
 * suite (malformed JSON, wrong type, unknown, missing or duplicate key, a key
 * that belongs to another optimizer or check kind); SB_ERR_ARG when the shape
 * is right but a value is not allowed (out of range, not integral, unknown
 * name, a where value outside the matrix, a check that could never fail).
 *
 * What it is not: it does not run anything, does not know how runs are
 * executed, compared or reported, and does not call sb_run_config_validate
 * (the checks below are the suite's own and are sufficient).
 */
#include "suite.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

/* Limits that keep a hostile suite from sizing allocations (DESIGN.md §8). */
#define MAX_SUITE_BYTES ((size_t)16 << 20)
/* 2^53 - 1: the largest integer a JSON number (a double) holds exactly and
 * uniquely; 2^53 + 1 would parse as 2^53 and silently run another seed. */
#define MAX_EXACT_INT 9007199254740991.0
#define MAX_CHECKS 256
#define MAX_RUNS 100000
#define MAX_TIMEOUT (30.0 * 24 * 3600) /* 30 days */
#define MAX_HIDDEN (SB_MAX_LAYERS - 1)

/* ======================================================================
 * Errors and paths
 * ==================================================================== */

typedef struct parser {
    const char *label;
    sb_error *err;
    const char *base_dir; /* absolute folder data file paths are relative to; NULL: cwd */
} parser;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static sb_status fail(const parser *p, sb_status st, const char *path, const char *fmt, ...) {
    char what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (path && path[0]) return sb_error_set(p->err, st, "%s: %s: %s", p->label, path, what);
    return sb_error_set(p->err, st, "%s: %s", p->label, what);
}

/* JSON paths are built only from the format's own key names, validated axis
 * names and indices below 256, so they stay far below PATH_LEN. */
#define PATH_LEN 160

static void path_key(char *out, const char *base, const char *key) {
    int n = base[0] ? snprintf(out, PATH_LEN, "%s.%s", base, key)
                    : snprintf(out, PATH_LEN, "%s", key);
    SB_ASSERT(n > 0 && n < PATH_LEN);
}

static void path_index(char *out, const char *base, int i) {
    int n = snprintf(out, PATH_LEN, "%s[%d]", base, i);
    SB_ASSERT(n > 0 && n < PATH_LEN);
}

/* Writes s quoted and escaped, cut after 40 characters ("abc…" as "abc...").
 * The text is valid UTF-8 by the time this runs (checked before parsing). */
static void quote(const char *s, char *buf, size_t n) {
    size_t o = 0;
    int chars = 0;
    if (n < 8) {
        if (n) buf[0] = '\0';
        return;
    }
    buf[o++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        int lead = (*c & 0xC0) != 0x80;
        if (lead && ++chars > 40) {
            if (o + 5 < n) memcpy(buf + o, "...", 3), o += 3;
            break;
        }
        char esc[8];
        size_t k;
        if (*c == '"' || *c == '\\') k = (size_t)snprintf(esc, sizeof esc, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7F) k = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *c);
        else esc[0] = (char)*c, k = 1;
        if (o + k + 2 > n) break;
        memcpy(buf + o, esc, k);
        o += k;
    }
    buf[o++] = '"';
    buf[o] = '\0';
}

/* Integers as integers (up to 2^53), anything else in the shortest "%g"
 * form that reads back as the same double. */
static void format_number(double d, char *buf, size_t n) {
    if (d == floor(d) && fabs(d) <= MAX_EXACT_INT + 1) {
        snprintf(buf, n, "%.0f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) return;
    }
}

/* A JSON value as it appears in "got ..." parts of messages. */
static void describe(const cJSON *v, char *buf, size_t n) {
    if (!v) snprintf(buf, n, "nothing");
    else if (cJSON_IsString(v)) quote(v->valuestring, buf, n);
    else if (cJSON_IsNumber(v)) {
        if (isfinite(v->valuedouble)) format_number(v->valuedouble, buf, n);
        else snprintf(buf, n, "a number out of range");
    } else if (cJSON_IsTrue(v)) snprintf(buf, n, "true");
    else if (cJSON_IsFalse(v)) snprintf(buf, n, "false");
    else if (cJSON_IsNull(v)) snprintf(buf, n, "null");
    else if (cJSON_IsArray(v)) snprintf(buf, n, "an array");
    else if (cJSON_IsObject(v)) snprintf(buf, n, "an object");
    else snprintf(buf, n, "an invalid value");
}

/* ======================================================================
 * Typed getters: each checks one JSON value at `path`.
 * ==================================================================== */

static sb_status want_object(const parser *p, const cJSON *v, const char *path) {
    char got[96];
    if (cJSON_IsObject(v)) return SB_OK;
    describe(v, got, sizeof got);
    return fail(p, SB_ERR_FORMAT, path, "expected an object, got %s", got);
}

static void int_expectation(double lo, double hi, char *buf, size_t n) {
    if (lo == 0 && hi == MAX_EXACT_INT) snprintf(buf, n, "a non-negative integer");
    else if (hi == MAX_EXACT_INT) snprintf(buf, n, "an integer >= %.0f", lo);
    else snprintf(buf, n, "an integer in %.0f..%.0f", lo, hi);
}

/* An integral, finite JSON number in [lo, hi] (both at most MAX_EXACT_INT). */
static sb_status want_int(const parser *p, const cJSON *v, const char *path, double lo, double hi,
                          int64_t *out) {
    char expect[96], got[96];
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (isfinite(d) && d == floor(d) && d >= lo && d <= hi) {
            *out = (int64_t)d;
            return SB_OK;
        }
    }
    int_expectation(lo, hi, expect, sizeof expect);
    describe(v, got, sizeof got);
    if (cJSON_IsNumber(v) && hi == MAX_EXACT_INT && isfinite(v->valuedouble) &&
        v->valuedouble > hi)
        return fail(p, SB_ERR_ARG, path,
                    "expected %s, got %s (the limit is 2^53 - 1, the largest integer a JSON "
                    "number holds exactly)",
                    expect, got);
    return fail(p, cJSON_IsNumber(v) ? SB_ERR_ARG : SB_ERR_FORMAT, path, "expected %s, got %s",
                expect, got);
}

typedef struct range {
    double lo, hi;       /* hi == INFINITY: no upper bound */
    int lo_open, hi_open;
} range;

static int in_range(const range *r, double d) {
    if (r->lo_open ? !(d > r->lo) : !(d >= r->lo)) return 0;
    if (isinf(r->hi)) return 1;
    return r->hi_open ? d < r->hi : d <= r->hi;
}

static void range_expectation(const range *r, char *buf, size_t n) {
    char lo[32], hi[32];
    format_number(r->lo, lo, sizeof lo);
    if (isinf(r->hi)) {
        snprintf(buf, n, "a number %s %s", r->lo_open ? ">" : ">=", lo);
        return;
    }
    format_number(r->hi, hi, sizeof hi);
    snprintf(buf, n, "a number in %c%s, %s%c", r->lo_open ? '(' : '[', lo, hi,
             r->hi_open ? ')' : ']');
}

/* A finite JSON number in r. With `f32`, the value must also stay in r once
 * rounded to a 32-bit float (lr 1e-50 would become 0, momentum 0.999999999
 * would become 1); *out is then the rounded value. */
static sb_status want_number(const parser *p, const cJSON *v, const char *path, const range *r,
                             int f32, double *out) {
    char expect[96], got[96];
    range_expectation(r, expect, sizeof expect);
    describe(v, got, sizeof got);
    if (!cJSON_IsNumber(v))
        return fail(p, SB_ERR_FORMAT, path, "expected %s, got %s", expect, got);
    double d = v->valuedouble;
    if (!isfinite(d) || !in_range(r, d))
        return fail(p, SB_ERR_ARG, path, "expected %s, got %s", expect, got);
    if (f32) {
        if (fabs(d) > FLT_MAX)
            return fail(p, SB_ERR_ARG, path, "expected %s that fits a 32-bit float, got %s", expect,
                        got);
        double rounded = (double)(float)d;
        if (!in_range(r, rounded)) {
            char as_float[32];
            format_number(rounded, as_float, sizeof as_float);
            return fail(p, SB_ERR_ARG, path, "expected %s, got %s (%s as a 32-bit float)", expect,
                        got, as_float);
        }
        d = rounded;
    }
    *out = d;
    return SB_OK;
}

/* A string no longer than n - 1 bytes, copied to buf. */
static sb_status want_string(const parser *p, const cJSON *v, const char *path, char *buf,
                             size_t n) {
    char got[96];
    if (!cJSON_IsString(v)) {
        describe(v, got, sizeof got);
        return fail(p, SB_ERR_FORMAT, path, "expected a string, got %s", got);
    }
    size_t len = strlen(v->valuestring);
    if (len >= n) return fail(p, SB_ERR_ARG, path, "longer than %zu bytes", n - 1);
    memcpy(buf, v->valuestring, len + 1);
    return SB_OK;
}

/* A string among names[0..count); *out is its index. */
static sb_status want_choice(const parser *p, const cJSON *v, const char *path,
                             const char *const *names, int count, int *out) {
    char expect[160] = "", got[96];
    if (cJSON_IsString(v)) {
        for (int i = 0; i < count; i++)
            if (strcmp(v->valuestring, names[i]) == 0) {
                *out = i;
                return SB_OK;
            }
    }
    for (int i = 0; i < count; i++) {
        size_t o = strlen(expect);
        snprintf(expect + o, sizeof expect - o, "%s\"%s\"", i ? ", " : "", names[i]);
    }
    describe(v, got, sizeof got);
    return fail(p, cJSON_IsString(v) ? SB_ERR_ARG : SB_ERR_FORMAT, path, "expected %s%s, got %s",
                count > 1 ? "one of " : "", expect, got);
}

/* A name: [A-Za-z0-9_.-]{1,63}. */
static sb_status want_name(const parser *p, const cJSON *v, const char *path, char out[64]) {
    char got[96];
    describe(v, got, sizeof got);
    if (!cJSON_IsString(v))
        return fail(p, SB_ERR_FORMAT, path, "expected a string, got %s", got);
    const char *s = v->valuestring;
    size_t len = strlen(s);
    int ok = len >= 1 && len <= 63;
    for (size_t i = 0; ok && i < len; i++) {
        char c = s[i];
        ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == '-';
    }
    if (!ok)
        return fail(p, SB_ERR_ARG, path,
                    "expected a name of 1 to 63 characters from A-Z a-z 0-9 _ . -, got %s", got);
    memcpy(out, s, len + 1);
    return SB_OK;
}

/* An array of lo..hi elements; *n is its length. */
static sb_status want_array(const parser *p, const cJSON *v, const char *path, int lo, int hi,
                            int *n) {
    char got[96];
    if (!cJSON_IsArray(v)) {
        describe(v, got, sizeof got);
        return fail(p, SB_ERR_FORMAT, path, "expected an array, got %s", got);
    }
    int count = 0;
    for (const cJSON *c = v->child; c && count <= hi; c = c->next) count++;
    if (count > hi) return fail(p, SB_ERR_ARG, path, "expected at most %d values", hi);
    if (count < lo) {
        if (lo == 1) return fail(p, SB_ERR_ARG, path, "must not be empty");
        return fail(p, SB_ERR_ARG, path, "expected at least %d values", lo);
    }
    *n = count;
    return SB_OK;
}

/* ======================================================================
 * Key tables: every object's keys are declared once; check_keys rejects
 * unknown and duplicate keys and reports missing required ones.
 * ==================================================================== */

typedef struct key_spec {
    const char *key;
    int required;
} key_spec;

static sb_status check_keys(const parser *p, const cJSON *obj, const char *path,
                            const key_spec *keys, int n_keys) {
    uint32_t seen = 0;
    SB_ASSERT(n_keys <= 32);
    for (const cJSON *c = obj->child; c; c = c->next) {
        int k = -1;
        for (int i = 0; i < n_keys && k < 0; i++)
            if (strcmp(c->string, keys[i].key) == 0) k = i;
        if (k < 0) {
            char q[96], known[256] = "";
            quote(c->string, q, sizeof q);
            for (int i = 0; i < n_keys; i++) {
                size_t o = strlen(known);
                snprintf(known + o, sizeof known - o, "%s%s", i ? ", " : "", keys[i].key);
            }
            return fail(p, SB_ERR_FORMAT, path, "unknown key %s (known: %s)", q, known);
        }
        if (seen & (UINT32_C(1) << k))
            return fail(p, SB_ERR_FORMAT, path, "duplicate key \"%s\"", keys[k].key);
        seen |= UINT32_C(1) << k;
    }
    for (int i = 0; i < n_keys; i++)
        if (keys[i].required && !(seen & (UINT32_C(1) << i)))
            return fail(p, SB_ERR_FORMAT, path, "missing required key \"%s\"", keys[i].key);
    return SB_OK;
}

#define N_KEYS(t) ((int)(sizeof(t) / sizeof((t)[0])))

static const cJSON *member(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* ======================================================================
 * Axes
 * ==================================================================== */

static const char *const AXIS_SINGULAR[SB_AXIS_COUNT] = {"seed", "backend", "mode", "threads"};
static const char *const AXIS_PLURAL[SB_AXIS_COUNT] = {"seeds", "backends", "modes", "threads"};
static const char *const MODE_NAMES[] = {"deterministic", "fast", "canonical"};

const char *sb_axis_name(sb_axis a) {
    return (unsigned)a < SB_AXIS_COUNT ? AXIS_SINGULAR[a] : "?";
}

int sb_axis_parse(const char *name, sb_axis *out) {
    if (!name) return -1;
    for (int a = 0; a < SB_AXIS_COUNT; a++)
        if (strcmp(name, AXIS_SINGULAR[a]) == 0 || strcmp(name, AXIS_PLURAL[a]) == 0) {
            if (out) *out = (sb_axis)a;
            return 0;
        }
    return -1;
}

const char *sb_check_kind_name(sb_check_kind k) {
    switch (k) {
    case SB_CHECK_REPEATABLE: return "repeatable";
    case SB_CHECK_CROSS: return "cross";
    case SB_CHECK_BASELINE: return "baseline";
    }
    return "?";
}

void sb_axis_value(const sb_run_config *c, sb_axis axis, char *buf, size_t n) {
    if (!buf || n == 0) return;
    switch (axis) {
    case SB_AXIS_SEED: snprintf(buf, n, "%" PRIu64, c->seed); return;
    case SB_AXIS_BACKEND: snprintf(buf, n, "%s", c->backend); return;
    case SB_AXIS_MODE: snprintf(buf, n, "%s", sb_mode_name(c->mode)); return;
    case SB_AXIS_THREADS: snprintf(buf, n, "%d", c->threads); return;
    case SB_AXIS_COUNT: break;
    }
    buf[0] = '\0';
}

int sb_where_matches(const sb_where *w, const sb_run_config *c) {
    if (!w) return 1;
    for (int a = 0; a < SB_AXIS_COUNT; a++) {
        if (w->n_values[a] <= 0) continue;
        char v[32];
        int found = 0;
        sb_axis_value(c, (sb_axis)a, v, sizeof v);
        for (int i = 0; i < w->n_values[a] && i < SB_MAX_AXIS_VALUES && !found; i++)
            found = strcmp(v, w->values[a][i]) == 0;
        if (!found) return 0;
    }
    return 1;
}

static int axis_count(const sb_suite *s, sb_axis a) {
    switch (a) {
    case SB_AXIS_SEED: return s->n_seeds;
    case SB_AXIS_BACKEND: return s->n_backends;
    case SB_AXIS_MODE: return s->n_modes;
    case SB_AXIS_THREADS: return s->n_threads;
    case SB_AXIS_COUNT: break;
    }
    return 0;
}

/* The i-th matrix value of axis a, printed as sb_axis_value prints it. */
static void axis_value_at(const sb_suite *s, sb_axis a, int i, char *buf, size_t n) {
    sb_run_config c;
    memset(&c, 0, sizeof c);
    switch (a) {
    case SB_AXIS_SEED: c.seed = s->seeds[i]; break;
    case SB_AXIS_BACKEND: memcpy(c.backend, s->backends[i], sizeof c.backend); break;
    case SB_AXIS_MODE: c.mode = s->modes[i]; break;
    case SB_AXIS_THREADS: c.threads = s->threads[i]; break;
    case SB_AXIS_COUNT: break;
    }
    sb_axis_value(&c, a, buf, n);
}

/* Index of `value` among the first `count` matrix values of axis a, or -1. */
static int axis_find(const sb_suite *s, sb_axis a, int count, const char *value) {
    for (int i = 0; i < count; i++) {
        char v[32];
        axis_value_at(s, a, i, v, sizeof v);
        if (strcmp(v, value) == 0) return i;
    }
    return -1;
}

/* "1, 2" or "\"ref\", \"blas\"": the matrix values of axis a, for messages. */
static void axis_list(const sb_suite *s, sb_axis a, char *buf, size_t n) {
    int numeric = a == SB_AXIS_SEED || a == SB_AXIS_THREADS;
    buf[0] = '\0';
    for (int i = 0; i < axis_count(s, a); i++) {
        char v[32];
        size_t o = strlen(buf);
        axis_value_at(s, a, i, v, sizeof v);
        snprintf(buf + o, n - o, numeric ? "%s%s" : "%s\"%s\"", i ? ", " : "", v);
    }
}

/* One value of axis a as a where clause gives it (seed, threads: an integer;
 * backend, mode: a string), printed into out as sb_axis_value prints it. */
static sb_status want_axis_value(const parser *p, const cJSON *v, const char *path, sb_axis a,
                                 char out[32]) {
    int64_t i = 0;
    sb_status st;
    switch (a) {
    case SB_AXIS_SEED:
        if ((st = want_int(p, v, path, 0, MAX_EXACT_INT, &i)) != SB_OK) return st;
        snprintf(out, 32, "%" PRIu64, (uint64_t)i);
        return SB_OK;
    case SB_AXIS_THREADS:
        if ((st = want_int(p, v, path, 1, 256, &i)) != SB_OK) return st;
        snprintf(out, 32, "%d", (int)i);
        return SB_OK;
    case SB_AXIS_BACKEND:
    case SB_AXIS_MODE:
        if (!cJSON_IsString(v)) {
            char got[96];
            describe(v, got, sizeof got);
            return fail(p, SB_ERR_FORMAT, path, "expected a string, got %s", got);
        }
        if (strlen(v->valuestring) >= 32) {
            char got[96];
            describe(v, got, sizeof got);
            return fail(p, SB_ERR_ARG, path, "unknown %s %s", AXIS_SINGULAR[a], got);
        }
        snprintf(out, 32, "%s", v->valuestring);
        return SB_OK;
    case SB_AXIS_COUNT: break;
    }
    SB_ASSERT(0);
    return SB_ERR_ARG;
}

/* ======================================================================
 * Sections
 * ==================================================================== */

static sb_status parse_model(const parser *p, const cJSON *v, sb_model_config *m, int *n_hidden,
                             int hidden[MAX_HIDDEN]) {
    static const key_spec keys[] = {{"kind", 1},    {"hidden", 0},  {"activation", 0},
                                    {"dropout", 0}, {"channels", 0}, {"kernel", 0},
                                    {"pool", 0},    {"embed", 0},   {"d_model", 0},
                                    {"heads", 0},   {"layers", 0},  {"mlp", 0},
                                    {"tied", 0}};
    static const char *const kinds[] = {"mlp", "cnn", "rnn", "transformer"};
    /* the keys each kind takes besides "kind" (sb_model_config documents them) */
    static const char *const kind_keys[4][6] = {
        {"hidden", "activation", "dropout"},
        {"channels", "kernel", "pool", "activation"},
        {"embed", "hidden"},
        {"d_model", "heads", "layers", "mlp", "tied"}};
    static const char *const pools[] = {"max", "avg"}; /* sb_pool order */
    static const range dropout_range = {0, 1, 0, 1};
    static const char *const acts[] = {"relu", "tanh", "gelu"};
    char path[PATH_LEN];
    const cJSON *x;
    sb_status st;
    int k = 0;

    if ((st = want_object(p, v, "model")) != SB_OK) return st;
    if ((st = check_keys(p, v, "model", keys, N_KEYS(keys))) != SB_OK) return st;
    if ((st = want_choice(p, member(v, "kind"), "model.kind", kinds, N_KEYS(kinds), &k)) != SB_OK)
        return st;
    snprintf(m->kind, sizeof m->kind, "%s", kinds[k]);
    int kind = k;
    for (const cJSON *c = v->child; c; c = c->next) {
        int ok = !strcmp(c->string, "kind");
        for (int i = 0; i < 6 && kind_keys[kind][i] && !ok; i++)
            ok = !strcmp(c->string, kind_keys[kind][i]);
        if (!ok) {
            path_key(path, "model", c->string);
            return fail(p, SB_ERR_FORMAT, path, "not a key of model.kind \"%s\"", m->kind);
        }
    }
    if (kind >= 2) { /* the sequence models */
        static const struct { const char *key; int lo, hi, def; } sizes[] = {
            {"embed", 1, 1024, 16}, {"hidden", 1, 1024, 64}, {"d_model", 1, 1024, 64},
            {"heads", 1, 1024, 4},  {"layers", 1, SB_MAX_BLOCKS, 2}, {"mlp", 1, 4096, 256}};
        int *dst[] = {&m->embed, &m->hidden, &m->d_model, &m->heads, &m->layers, &m->mlp};
        for (int i = 0; i < N_KEYS(sizes); i++) {
            int64_t val = sizes[i].def;
            path_key(path, "model", sizes[i].key);
            if ((x = member(v, sizes[i].key)) != NULL &&
                (st = want_int(p, x, path, sizes[i].lo, sizes[i].hi, &val)) != SB_OK)
                return st;
            *dst[i] = (int)val;
        }
        m->tied = 0;
        if ((x = member(v, "tied")) != NULL) {
            if (!cJSON_IsBool(x)) return fail(p, SB_ERR_FORMAT, "model.tied", "expected true or false");
            m->tied = cJSON_IsTrue(x);
        }
        if (kind == 3 && m->d_model % m->heads != 0)
            return fail(p, SB_ERR_ARG, "model.heads", "%d heads do not divide d_model %d", m->heads,
                        m->d_model);
        m->act = SB_ACT_GELU;
        m->dropout = 0.0f;
        *n_hidden = 0;
        return SB_OK;
    }
    m->channels[0] = 8;
    m->channels[1] = 16;
    m->kernel = 3;
    m->pool = SB_POOL_MAX;
    if ((x = member(v, "channels")) != NULL) {
        int n = 0;
        if ((st = want_array(p, x, "model.channels", 2, 2, &n)) != SB_OK) return st;
        int i = 0;
        for (const cJSON *c = x->child; c; c = c->next, i++) {
            int64_t ch = 0;
            path_index(path, "model.channels", i);
            if ((st = want_int(p, c, path, 1, 1024, &ch)) != SB_OK) return st;
            m->channels[i] = (int)ch;
        }
    }
    if ((x = member(v, "kernel")) != NULL) {
        int64_t ks = 0;
        if ((st = want_int(p, x, "model.kernel", 1, 15, &ks)) != SB_OK) return st;
        if (ks % 2 == 0)
            return fail(p, SB_ERR_ARG, "model.kernel", "expected an odd size (padding kernel/2 "
                        "keeps the image size), got %d", (int)ks);
        m->kernel = (int)ks;
    }
    if ((x = member(v, "pool")) != NULL) {
        if ((st = want_choice(p, x, "model.pool", pools, N_KEYS(pools), &k)) != SB_OK) return st;
        m->pool = (sb_pool)k;
    }

    *n_hidden = 1;
    hidden[0] = 32;
    if (kind == 0 && (x = member(v, "hidden")) != NULL) {
        if ((st = want_array(p, x, "model.hidden", 0, MAX_HIDDEN, n_hidden)) != SB_OK) return st;
        int i = 0;
        for (const cJSON *c = x->child; c; c = c->next, i++) {
            int64_t w = 0;
            path_index(path, "model.hidden", i);
            if ((st = want_int(p, c, path, 1, 4096, &w)) != SB_OK) return st;
            hidden[i] = (int)w;
        }
    }

    m->act = SB_ACT_RELU;
    if ((x = member(v, "activation")) != NULL) {
        if ((st = want_choice(p, x, "model.activation", acts, N_KEYS(acts), &k)) != SB_OK)
            return st;
        if (sb_act_parse(acts[k], &m->act) != 0)
            return fail(p, SB_ERR_ARG, "model.activation", "\"%s\" is not supported by this build",
                        acts[k]);
    }
    m->dropout = 0.0f;
    if ((x = member(v, "dropout")) != NULL) {
        double d = 0;
        if ((st = want_number(p, x, "model.dropout", &dropout_range, 1, &d)) != SB_OK) return st;
        m->dropout = (float)d;
    }
    return SB_OK;
}

/* A data file path from the suite: relative paths are relative to the suite
 * file's folder (p->base_dir); stored absolute, so a run started from a copy
 * of the suite elsewhere reads the same file. */
static sb_status want_data_path(const parser *p, const cJSON *v, const char *path, char out[512]) {
    char rel[512], cwd[PATH_MAX], joined[PATH_MAX + 520], real[PATH_MAX];
    sb_status st;
    if ((st = want_string(p, v, path, rel, sizeof rel)) != SB_OK) return st;
    if (!rel[0]) return fail(p, SB_ERR_ARG, path, "expected a file path, got \"\"");
    const char *base = p->base_dir;
    if (!base) base = getcwd(cwd, sizeof cwd) ? cwd : ".";
    if (rel[0] == '/')
        snprintf(joined, sizeof joined, "%s", rel);
    else
        snprintf(joined, sizeof joined, "%s/%s", base, rel);
    const char *use = realpath(joined, real) ? real : joined; /* a missing file: reported on read */
    if (strlen(use) >= 512) return fail(p, SB_ERR_ARG, path, "resolves to a path longer than 511 bytes");
    memcpy(out, use, strlen(use) + 1);
    return SB_OK;
}

/* data.kind "idx", "npy" ({"x", "y"}) or "csv" ({"path", "label_column",
 * "header"}), each with optional "scale" and "classes". The files are read
 * and validated here, so a bad file fails the suite before anything runs;
 * samples, features (and classes unless given) come from them. */
static sb_status parse_data_files(const parser *p, const cJSON *v, sb_data_config *d) {
    static const char *const csv_only[] = {"path", "label_column", "header"};
    static const char *const xy_only[] = {"x", "y"};
    static const range scale_range = {0, INFINITY, 1, 0};
    int csv = !strcmp(d->kind, "csv");
    const cJSON *x;
    sb_status st;
    int64_t i = 0;
    char kpath[PATH_LEN];
    for (int k = 0; k < (csv ? 2 : 3); k++) {
        const char *key = csv ? xy_only[k] : csv_only[k];
        path_key(kpath, "data", key);
        if (member(v, key))
            return fail(p, SB_ERR_FORMAT, kpath, "not a key of data.kind \"%s\"", d->kind);
    }
    for (int k = 0; k < (csv ? 1 : 2); k++) {
        const char *key = csv ? csv_only[k] : xy_only[k];
        path_key(kpath, "data", key);
        if (!member(v, key))
            return fail(p, SB_ERR_FORMAT, "data", "missing required key \"%s\" (data.kind \"%s\")",
                        key, d->kind);
        if ((st = want_data_path(p, member(v, key), kpath, k ? d->y_path : d->x_path)) != SB_OK)
            return st;
    }
    d->csv_header = 0;
    d->label_column = -1;
    if ((x = member(v, "header")) != NULL) {
        if (!cJSON_IsBool(x)) return fail(p, SB_ERR_FORMAT, "data.header", "expected true or false");
        d->csv_header = cJSON_IsTrue(x);
    }
    if ((x = member(v, "label_column")) != NULL) {
        if (cJSON_IsString(x)) {
            if ((st = want_string(p, x, "data.label_column", d->label_name, sizeof d->label_name)) != SB_OK)
                return st;
            if (!d->csv_header)
                return fail(p, SB_ERR_ARG, "data.label_column", "a column name needs \"header\": true");
        } else {
            if ((st = want_int(p, x, "data.label_column", -65537, 65536, &i)) != SB_OK) return st;
            d->label_column = (int)i;
        }
    }
    d->scale = 1.0f;
    if ((x = member(v, "scale")) != NULL) {
        double sc = 1;
        if ((st = want_number(p, x, "data.scale", &scale_range, 1, &sc)) != SB_OK) return st;
        d->scale = (float)sc;
    }
    int classes = 0;
    if ((x = member(v, "classes")) != NULL) {
        if ((st = want_int(p, x, "data.classes", 2, 1000, &i)) != SB_OK) return st;
        classes = (int)i;
    }
    d->noise = 0.0f;
    sb_dataset *ds = sb_dataset_read(d, classes, p->err);
    if (!ds) return p->err ? p->err->status : SB_ERR_FORMAT; /* the reader's line names the file */
    d->samples = ds->samples;
    d->features = ds->features;
    d->classes = ds->classes;
    sb_dataset_free(ds);
    if (d->samples < 2)
        return fail(p, SB_ERR_ARG, csv ? "data.path" : "data.x", "%s holds %d sample; need at least 2",
                    d->x_path, d->samples);
    return SB_OK;
}

/* data.kind "shapes": images [channels, height, width] drawn by the engine
 * (engine/data.c); features = channels·height·width. */
static sb_status parse_data_shapes(const parser *p, const cJSON *v, sb_data_config *d) {
    static const range noise_range = {0, INFINITY, 0, 0};
    const cJSON *x;
    sb_status st;
    int64_t i = 0;
    if ((st = want_int(p, member(v, "samples"), "data.samples", 2, 1000000, &i)) != SB_OK) return st;
    d->samples = (int)i;
    if ((st = want_int(p, member(v, "classes"), "data.classes", 2, SB_SHAPES_MAX, &i)) != SB_OK)
        return st;
    d->classes = (int)i;
    if ((st = want_int(p, member(v, "channels"), "data.channels", 1, 3, &i)) != SB_OK) return st;
    d->channels = (int)i;
    if ((st = want_int(p, member(v, "height"), "data.height", 4, 256, &i)) != SB_OK) return st;
    d->height = (int)i;
    if ((st = want_int(p, member(v, "width"), "data.width", 4, 256, &i)) != SB_OK) return st;
    d->width = (int)i;
    d->features = d->channels * d->height * d->width;
    d->noise = 0.1f;
    if ((x = member(v, "noise")) != NULL) {
        double noise = 0;
        if ((st = want_number(p, x, "data.noise", &noise_range, 1, &noise)) != SB_OK) return st;
        d->noise = (float)noise;
    }
    return SB_OK;
}

/* data.kind "chars": token sequences cut from a corpus the engine draws
 * (engine/data.c); features = seq_len + 1 (inputs and the last target),
 * classes = vocab. */
static sb_status parse_data_chars(const parser *p, const cJSON *v, sb_data_config *d) {
    static const range noise_range = {0, 1, 0, 1};
    const cJSON *x;
    sb_status st;
    int64_t i = 0;
    if ((st = want_int(p, member(v, "samples"), "data.samples", 2, 1000000, &i)) != SB_OK) return st;
    d->samples = (int)i;
    if ((st = want_int(p, member(v, "seq_len"), "data.seq_len", 1, 256, &i)) != SB_OK) return st;
    d->features = (int)i + 1;
    if ((st = want_int(p, member(v, "vocab"), "data.vocab", 2, SB_CHARS_MAX_VOCAB, &i)) != SB_OK)
        return st;
    d->classes = (int)i;
    d->noise = 0.1f;
    if ((x = member(v, "noise")) != NULL) {
        double noise = 0;
        if ((st = want_number(p, x, "data.noise", &noise_range, 1, &noise)) != SB_OK) return st;
        d->noise = (float)noise;
    }
    return SB_OK;
}

static sb_status parse_data(const parser *p, const cJSON *v, sb_data_config *d) {
    static const key_spec keys[] = {{"kind", 1},    {"samples", 1}, {"features", 1},
                                    {"classes", 1}, {"noise", 0},   {"shuffle", 0},
                                    {"augment", 0}, {"loader", 0}};
    static const key_spec shapes_keys[] = {{"kind", 1},   {"samples", 1}, {"classes", 1},
                                           {"channels", 1}, {"height", 1},  {"width", 1},
                                           {"noise", 0},  {"shuffle", 0}, {"augment", 0},
                                           {"loader", 0}};
    static const key_spec chars_keys[] = {{"kind", 1},    {"samples", 1}, {"seq_len", 1},
                                          {"vocab", 1},   {"noise", 0},   {"shuffle", 0},
                                          {"loader", 0}};
    static const key_spec aug_keys[] = {{"noise", 0}, {"feature_drop", 0}, {"flip", 0},
                                        {"shift", 0}};
    static const key_spec loader_keys[] = {{"workers", 1}, {"order", 0}};
    static const char *const orders[] = {"ordered", "completion"};
    static const range drop_range = {0, 1, 0, 1};
    static const range flip_range = {0, 1, 0, 0};
    static const char *const kinds[] = {"blobs", "spirals", "idx", "csv", "npy", "shapes", "chars"};
    static const key_spec file_keys[] = {{"kind", 1},  {"x", 0},           {"y", 0},
                                         {"path", 0},  {"label_column", 0}, {"header", 0},
                                         {"scale", 0}, {"classes", 0},     {"shuffle", 0},
                                         {"augment", 0}, {"loader", 0}};
    static const char *const shuffles[] = {"none", "once", "epoch"}; /* sb_shuffle order */
    static const range noise_range = {0, INFINITY, 0, 0};
    const cJSON *x;
    sb_status st;
    int64_t i = 0;
    int k = 0;

    if ((st = want_object(p, v, "data")) != SB_OK) return st;
    x = member(v, "kind");
    int files = cJSON_IsString(x) && sb_data_kind_is_file(x->valuestring);
    int shapes = cJSON_IsString(x) && !strcmp(x->valuestring, "shapes");
    int chars = cJSON_IsString(x) && !strcmp(x->valuestring, "chars");
    if ((st = files    ? check_keys(p, v, "data", file_keys, N_KEYS(file_keys))
              : shapes ? check_keys(p, v, "data", shapes_keys, N_KEYS(shapes_keys))
              : chars  ? check_keys(p, v, "data", chars_keys, N_KEYS(chars_keys))
                       : check_keys(p, v, "data", keys, N_KEYS(keys))) != SB_OK)
        return st;
    if ((st = want_choice(p, member(v, "kind"), "data.kind", kinds, N_KEYS(kinds), &k)) != SB_OK)
        return st;
    snprintf(d->kind, sizeof d->kind, "%s", kinds[k]);
    int spirals = k == 1;

    d->channels = d->height = d->width = 0;
    if (files) {
        if ((st = parse_data_files(p, v, d)) != SB_OK) return st;
    } else if (shapes) {
        if ((st = parse_data_shapes(p, v, d)) != SB_OK) return st;
    } else if (chars) {
        if ((st = parse_data_chars(p, v, d)) != SB_OK) return st;
    } else {
        if ((st = want_int(p, member(v, "samples"), "data.samples", 2, 1000000, &i)) != SB_OK)
            return st;
        d->samples = (int)i;
        if ((st = want_int(p, member(v, "features"), "data.features", 1, 4096, &i)) != SB_OK)
            return st;
        d->features = (int)i;
        if (spirals && d->features != 2)
            return fail(p, SB_ERR_ARG, "data.features", "spirals have 2 features, got %d",
                        d->features);
        if ((st = want_int(p, member(v, "classes"), "data.classes", 2, 1000, &i)) != SB_OK) return st;
        d->classes = (int)i;

        d->noise = spirals ? 0.2f : 1.0f;
        if ((x = member(v, "noise")) != NULL) {
            double noise = 0;
            if ((st = want_number(p, x, "data.noise", &noise_range, 1, &noise)) != SB_OK) return st;
            d->noise = (float)noise;
        }
    }

    d->shuffle = SB_SHUFFLE_EPOCH;
    if ((x = member(v, "shuffle")) != NULL) {
        if ((st = want_choice(p, x, "data.shuffle", shuffles, N_KEYS(shuffles), &k)) != SB_OK)
            return st;
        d->shuffle = (sb_shuffle)k;
    }

    d->aug_noise = d->aug_feature_drop = d->aug_flip = 0.0f;
    d->aug_shift = 0;
    if ((x = member(v, "augment")) != NULL) {
        const cJSON *y;
        double val = 0;
        if ((st = want_object(p, x, "data.augment")) != SB_OK) return st;
        if ((st = check_keys(p, x, "data.augment", aug_keys, N_KEYS(aug_keys))) != SB_OK) return st;
        if ((y = member(x, "noise")) != NULL) {
            if ((st = want_number(p, y, "data.augment.noise", &noise_range, 1, &val)) != SB_OK)
                return st;
            d->aug_noise = (float)val;
        }
        if ((y = member(x, "feature_drop")) != NULL) {
            if ((st = want_number(p, y, "data.augment.feature_drop", &drop_range, 1, &val)) != SB_OK)
                return st;
            d->aug_feature_drop = (float)val;
        }
        for (int a = 0; a < 2; a++) {
            const char *key = a ? "shift" : "flip";
            char apath[PATH_LEN];
            path_key(apath, "data.augment", key);
            if ((y = member(x, key)) == NULL) continue;
            if (d->height < 1)
                return fail(p, SB_ERR_ARG, apath, "needs image data (data.kind \"shapes\")");
            int side = d->height < d->width ? d->height : d->width;
            if (a) {
                if ((st = want_int(p, y, apath, 0, side - 1, &i)) != SB_OK) return st;
                d->aug_shift = (int)i;
            } else {
                if ((st = want_number(p, y, apath, &flip_range, 1, &val)) != SB_OK) return st;
                d->aug_flip = (float)val;
            }
        }
    }
    d->loader_workers = 0;
    d->loader_completion = 0;
    if ((x = member(v, "loader")) != NULL) {
        const cJSON *y;
        if ((st = want_object(p, x, "data.loader")) != SB_OK) return st;
        if ((st = check_keys(p, x, "data.loader", loader_keys, N_KEYS(loader_keys))) != SB_OK)
            return st;
        if ((st = want_int(p, member(x, "workers"), "data.loader.workers", 0, 64, &i)) != SB_OK)
            return st;
        d->loader_workers = (int)i;
        if ((y = member(x, "order")) != NULL) {
            if ((st = want_choice(p, y, "data.loader.order", orders, 2, &k)) != SB_OK) return st;
            d->loader_completion = k;
        }
    }
    return SB_OK;
}

/* "rng": {"unseeded": ["data/shuffle", …]} — streams drawn from OS entropy. */
static sb_status parse_rng(const parser *p, const cJSON *v, uint32_t *unseeded) {
    static const key_spec keys[] = {{"unseeded", 0}};
    char path[PATH_LEN];
    sb_status st;
    const cJSON *x;
    int n = 0;
    *unseeded = 0;
    if ((st = want_object(p, v, "rng")) != SB_OK) return st;
    if ((st = check_keys(p, v, "rng", keys, N_KEYS(keys))) != SB_OK) return st;
    if ((x = member(v, "unseeded")) == NULL) return SB_OK;
    if ((st = want_array(p, x, "rng.unseeded", 0, SB_UNSEEDED_COUNT, &n)) != SB_OK) return st;
    int i = 0;
    for (const cJSON *c = x->child; c; c = c->next, i++) {
        uint32_t bit;
        path_index(path, "rng.unseeded", i);
        if (!cJSON_IsString(c) || sb_unseeded_parse(c->valuestring, &bit) != 0)
            return fail(p, cJSON_IsString(c) ? SB_ERR_ARG : SB_ERR_FORMAT, path,
                        "expected one of \"init\", \"data/source\", \"data/shuffle\", "
                        "\"data/reshuffle\", \"data/augment\", \"dropout\"");
        if (*unseeded & bit) return fail(p, SB_ERR_ARG, path, "listed twice");
        *unseeded |= bit;
    }
    return SB_OK;
}

/* The optimizer's numeric fields, table-driven: which optimizer each belongs
 * to (NULL: both), its range and its default (required when has_default is 0). */
typedef struct optim_field {
    const char *key;
    const char *only;
    range r;
    int has_default;
    float dflt;
    size_t off;
} optim_field;

static const optim_field OPTIM_FIELDS[] = {
    {"lr", NULL, {0, INFINITY, 1, 0}, 0, 0.0f, offsetof(sb_optim_config, lr)},
    {"momentum", "sgd", {0, 1, 0, 1}, 1, 0.9f, offsetof(sb_optim_config, momentum)},
    {"beta1", "adam", {0, 1, 0, 1}, 1, 0.9f, offsetof(sb_optim_config, beta1)},
    {"beta2", "adam", {0, 1, 0, 1}, 1, 0.999f, offsetof(sb_optim_config, beta2)},
    {"eps", "adam", {0, INFINITY, 1, 0}, 1, 1e-8f, offsetof(sb_optim_config, eps)},
    {"weight_decay", NULL, {0, INFINITY, 0, 0}, 1, 0.0f, offsetof(sb_optim_config, weight_decay)},
};
#define N_OPTIM_FIELDS N_KEYS(OPTIM_FIELDS)

static sb_status parse_optimizer(const parser *p, const cJSON *v, sb_optim_config *o) {
    static const char *const names[] = {"sgd", "adam"};
    key_spec keys[1 + N_OPTIM_FIELDS];
    const char *base = "train.optimizer";
    char path[PATH_LEN];
    sb_status st;
    int k = 0;

    keys[0] = (key_spec){"name", 1};
    for (int i = 0; i < N_OPTIM_FIELDS; i++)
        keys[1 + i] = (key_spec){OPTIM_FIELDS[i].key, !OPTIM_FIELDS[i].has_default};

    if ((st = want_object(p, v, base)) != SB_OK) return st;
    if ((st = check_keys(p, v, base, keys, N_KEYS(keys))) != SB_OK) return st;
    if ((st = want_choice(p, member(v, "name"), "train.optimizer.name", names, N_KEYS(names),
                          &k)) != SB_OK)
        return st;
    snprintf(o->name, sizeof o->name, "%s", names[k]);

    for (int i = 0; i < N_OPTIM_FIELDS; i++) {
        const optim_field *f = &OPTIM_FIELDS[i];
        const cJSON *x = member(v, f->key);
        int applies = !f->only || strcmp(f->only, o->name) == 0;
        float *dst = (float *)(void *)((char *)o + f->off);
        path_key(path, base, f->key);
        if (!applies) {
            if (x) return fail(p, SB_ERR_FORMAT, path, "only for %s", f->only);
            *dst = 0.0f; /* unused by this optimizer */
            continue;
        }
        *dst = f->dflt;
        if (x) {
            double d = 0;
            if ((st = want_number(p, x, path, &f->r, 1, &d)) != SB_OK) return st;
            *dst = (float)d;
        }
    }
    return SB_OK;
}

static sb_status parse_train(const parser *p, const cJSON *v, int samples, sb_run_config *c) {
    static const key_spec keys[] = {{"steps", 1}, {"batch", 1}, {"optimizer", 1}};
    sb_status st;
    int64_t i = 0;

    if ((st = want_object(p, v, "train")) != SB_OK) return st;
    if ((st = check_keys(p, v, "train", keys, N_KEYS(keys))) != SB_OK) return st;
    if ((st = want_int(p, member(v, "steps"), "train.steps", 1, 10000000, &i)) != SB_OK) return st;
    c->steps = (int)i;
    if ((st = want_int(p, member(v, "batch"), "train.batch", 1, 1000000, &i)) != SB_OK) return st;
    if (i > samples)
        return fail(p, SB_ERR_ARG, "train.batch", "%" PRId64 " is larger than data.samples (%d)",
                    i, samples);
    c->batch = (int)i;
    return parse_optimizer(p, member(v, "optimizer"), &c->optim);
}

/* Stores value `i` of matrix axis a from JSON value x, after checking it. */
static sb_status parse_axis_element(const parser *p, const cJSON *x, const char *path, sb_axis a,
                                    sb_suite *s, int i) {
    int64_t n = 0;
    int k = 0;
    sb_status st;
    switch (a) {
    case SB_AXIS_SEED:
        if ((st = want_int(p, x, path, 0, MAX_EXACT_INT, &n)) != SB_OK) return st;
        s->seeds[i] = (uint64_t)n;
        return SB_OK;
    case SB_AXIS_THREADS:
        if ((st = want_int(p, x, path, 1, 256, &n)) != SB_OK) return st;
        s->threads[i] = (int)n;
        return SB_OK;
    case SB_AXIS_MODE:
        if ((st = want_choice(p, x, path, MODE_NAMES, N_KEYS(MODE_NAMES), &k)) != SB_OK) return st;
        if (sb_mode_parse(MODE_NAMES[k], &s->modes[i]) != 0)
            return fail(p, SB_ERR_ARG, path, "mode \"%s\" is not supported by this build",
                        MODE_NAMES[k]);
        return SB_OK;
    case SB_AXIS_BACKEND: {
        const char *const *names = sb_backend_names();
        char got[96], known[256] = "";
        if (!cJSON_IsString(x)) {
            describe(x, got, sizeof got);
            return fail(p, SB_ERR_FORMAT, path, "expected a string, got %s", got);
        }
        for (int b = 0; names && names[b]; b++) {
            if (strcmp(x->valuestring, names[b]) == 0 && strlen(names[b]) < sizeof s->backends[i]) {
                snprintf(s->backends[i], sizeof s->backends[i], "%s", names[b]);
                return SB_OK;
            }
            size_t o = strlen(known);
            snprintf(known + o, sizeof known - o, "%s\"%s\"", b ? ", " : "", names[b]);
        }
        describe(x, got, sizeof got);
        return fail(p, SB_ERR_ARG, path, "unknown backend %s (this build has: %s)", got, known);
    }
    case SB_AXIS_COUNT: break;
    }
    SB_ASSERT(0);
    return SB_ERR_ARG;
}

static int *axis_count_ptr(sb_suite *s, sb_axis a) {
    switch (a) {
    case SB_AXIS_SEED: return &s->n_seeds;
    case SB_AXIS_BACKEND: return &s->n_backends;
    case SB_AXIS_MODE: return &s->n_modes;
    case SB_AXIS_THREADS: return &s->n_threads;
    case SB_AXIS_COUNT: break;
    }
    SB_ASSERT(0);
    return NULL;
}

static sb_status parse_matrix(const parser *p, const cJSON *v, sb_suite *s) {
    static const key_spec keys[] = {{"seeds", 0}, {"backends", 0}, {"modes", 0}, {"threads", 0}};
    char base[PATH_LEN], path[PATH_LEN];
    sb_status st;

    /* defaults: one value per axis */
    s->n_seeds = 1, s->seeds[0] = 0;
    s->n_backends = 1, snprintf(s->backends[0], sizeof s->backends[0], "ref");
    s->n_modes = 1, s->modes[0] = SB_MODE_DETERMINISTIC;
    s->n_threads = 1, s->threads[0] = 1;
    if (!v) return SB_OK;

    if ((st = want_object(p, v, "matrix")) != SB_OK) return st;
    if ((st = check_keys(p, v, "matrix", keys, N_KEYS(keys))) != SB_OK) return st;
    for (int a = 0; a < SB_AXIS_COUNT; a++) {
        const cJSON *x = member(v, AXIS_PLURAL[a]);
        int n, i = 0;
        if (!x) continue;
        path_key(base, "matrix", AXIS_PLURAL[a]);
        if ((st = want_array(p, x, base, 1, SB_MAX_AXIS_VALUES, &n)) != SB_OK) return st;
        for (const cJSON *c = x->child; c; c = c->next, i++) {
            char value[32], got[96];
            path_index(path, base, i);
            if ((st = parse_axis_element(p, c, path, (sb_axis)a, s, i)) != SB_OK) return st;
            axis_value_at(s, (sb_axis)a, i, value, sizeof value);
            int prev = axis_find(s, (sb_axis)a, i, value);
            describe(c, got, sizeof got);
            if (prev >= 0)
                return fail(p, SB_ERR_ARG, path, "duplicate value %s (also %s[%d])", got, base,
                            prev);
        }
        *axis_count_ptr(s, (sb_axis)a) = n;
    }
    return SB_OK;
}

static sb_status parse_expect(const parser *p, const cJSON *v, const char *path, sb_tolerance *t) {
    static const key_spec keys[] = {{"atol", 0}, {"rtol", 0}, {"ulp", 0}};
    static const range nonneg = {0, INFINITY, 0, 0};
    char sub[PATH_LEN];
    const cJSON *x;
    sb_status st;

    memset(t, 0, sizeof *t);
    if (cJSON_IsString(v) && strcmp(v->valuestring, "bitwise") == 0) {
        t->bitwise = 1;
        return SB_OK;
    }
    if (!cJSON_IsObject(v)) {
        char got[96];
        describe(v, got, sizeof got);
        return fail(p, cJSON_IsString(v) ? SB_ERR_ARG : SB_ERR_FORMAT, path,
                    "expected \"bitwise\" or an object with atol, rtol and/or ulp, got %s", got);
    }
    if ((st = check_keys(p, v, path, keys, N_KEYS(keys))) != SB_OK) return st;
    if (!v->child) return fail(p, SB_ERR_ARG, path, "give at least one of atol, rtol, ulp");
    if ((x = member(v, "atol")) != NULL) {
        path_key(sub, path, "atol");
        if ((st = want_number(p, x, sub, &nonneg, 0, &t->atol)) != SB_OK) return st;
        t->has_atol = 1;
    }
    if ((x = member(v, "rtol")) != NULL) {
        path_key(sub, path, "rtol");
        if ((st = want_number(p, x, sub, &nonneg, 0, &t->rtol)) != SB_OK) return st;
        t->has_rtol = 1;
    }
    if ((x = member(v, "ulp")) != NULL) {
        int64_t u = 0;
        path_key(sub, path, "ulp");
        if ((st = want_int(p, x, sub, 0, MAX_EXACT_INT, &u)) != SB_OK) return st;
        t->ulp = (uint64_t)u;
        t->has_ulp = 1;
    }
    return SB_OK;
}

static sb_status parse_where(const parser *p, const cJSON *v, const char *path, const sb_suite *s,
                             sb_where *w) {
    const char *spelled[SB_AXIS_COUNT] = {NULL, NULL, NULL, NULL};
    char kpath[PATH_LEN], vpath[PATH_LEN];
    sb_status st;

    memset(w, 0, sizeof *w);
    if ((st = want_object(p, v, path)) != SB_OK) return st;
    for (const cJSON *c = v->child; c; c = c->next) {
        sb_axis a;
        if (sb_axis_parse(c->string, &a) != 0) {
            char q[96];
            quote(c->string, q, sizeof q);
            return fail(p, SB_ERR_FORMAT, path,
                        "unknown key %s (known: seed, backend, mode, threads, or seeds, "
                        "backends, modes)",
                        q);
        }
        if (spelled[a]) {
            if (strcmp(spelled[a], c->string) == 0)
                return fail(p, SB_ERR_FORMAT, path, "duplicate key \"%s\"", c->string);
            return fail(p, SB_ERR_FORMAT, path, "duplicate key \"%s\" (same axis as \"%s\")",
                        c->string, spelled[a]);
        }
        spelled[a] = c->string;
        path_key(kpath, path, c->string);

        const cJSON *first = c, *one;
        int n = 1;
        if (cJSON_IsArray(c)) {
            if ((st = want_array(p, c, kpath, 1, SB_MAX_AXIS_VALUES, &n)) != SB_OK) return st;
            first = c->child;
        }
        int i = 0;
        for (one = first; one && i < n; one = one->next, i++) {
            char value[32], list[512];
            if (cJSON_IsArray(c)) path_index(vpath, kpath, i);
            else snprintf(vpath, sizeof vpath, "%s", kpath);
            if ((st = want_axis_value(p, one, vpath, a, value)) != SB_OK) return st;
            if (axis_find(s, a, axis_count(s, a), value) < 0) {
                char got[96];
                describe(one, got, sizeof got);
                axis_list(s, a, list, sizeof list);
                return fail(p, SB_ERR_ARG, vpath, "%s is not in matrix.%s (%s)", got,
                            AXIS_PLURAL[a], list);
            }
            for (int j = 0; j < w->n_values[a]; j++)
                if (strcmp(w->values[a][j], value) == 0) {
                    char got[96];
                    describe(one, got, sizeof got);
                    return fail(p, SB_ERR_ARG, vpath, "duplicate value %s", got);
                }
            snprintf(w->values[a][w->n_values[a]++], sizeof w->values[a][0], "%s", value);
        }
    }
    return SB_OK;
}

static sb_status parse_check(const parser *p, const cJSON *v, const char *path, const sb_suite *s,
                             int index, sb_check *ch) {
    static const key_spec keys[] = {
        {"name", 1}, {"kind", 1}, {"axis", 0}, {"expect", 1}, {"where", 0}, {"fallback", 0}};
    /* in sb_check_kind order */
    static const char *const kinds[] = {"repeatable", "cross", "baseline"};
    char sub[PATH_LEN];
    const cJSON *x;
    sb_status st;
    int k = 0;

    if ((st = want_object(p, v, path)) != SB_OK) return st;
    if ((st = check_keys(p, v, path, keys, N_KEYS(keys))) != SB_OK) return st;

    path_key(sub, path, "name");
    ch->case_index = -1;
    if ((st = want_name(p, member(v, "name"), sub, ch->name)) != SB_OK) return st;
    for (int j = 0; j < index; j++)
        if (strcmp(s->checks[j].name, ch->name) == 0)
            return fail(p, SB_ERR_ARG, sub, "duplicate check name \"%s\" (also checks[%d].name)",
                        ch->name, j);

    path_key(sub, path, "kind");
    if ((st = want_choice(p, member(v, "kind"), sub, kinds, N_KEYS(kinds), &k)) != SB_OK)
        return st;
    ch->kind = (sb_check_kind)k;

    x = member(v, "axis");
    path_key(sub, path, "axis");
    ch->axis = SB_AXIS_SEED;
    if (ch->kind != SB_CHECK_CROSS && x)
        return fail(p, SB_ERR_FORMAT, sub, "only for cross checks");
    if (ch->kind == SB_CHECK_CROSS) {
        if (!x)
            return fail(p, SB_ERR_FORMAT, path,
                        "missing required key \"axis\" (a cross check needs one)");
        if (!cJSON_IsString(x) || sb_axis_parse(x->valuestring, &ch->axis) != 0) {
            char got[96];
            describe(x, got, sizeof got);
            return fail(p, cJSON_IsString(x) ? SB_ERR_ARG : SB_ERR_FORMAT, sub,
                        "expected one of \"seeds\", \"backends\", \"modes\", \"threads\", got %s",
                        got);
        }
        if (axis_count(s, ch->axis) < 2) {
            char list[512];
            axis_list(s, ch->axis, list, sizeof list);
            return fail(p, SB_ERR_ARG, sub,
                        "matrix.%s has only one value (%s), so a cross check over it compares "
                        "nothing",
                        AXIS_PLURAL[ch->axis], list);
        }
    }

    path_key(sub, path, "expect");
    if ((st = parse_expect(p, member(v, "expect"), sub, &ch->expect)) != SB_OK) return st;

    /* fallback: a tolerance (never "bitwise") for a baseline from another
     * environment */
    x = member(v, "fallback");
    path_key(sub, path, "fallback");
    ch->has_fallback = 0;
    memset(&ch->fallback, 0, sizeof ch->fallback);
    if (x && ch->kind != SB_CHECK_BASELINE)
        return fail(p, SB_ERR_FORMAT, sub, "only for baseline checks");
    if (x) {
        if (!cJSON_IsObject(x)) {
            char got[96];
            describe(x, got, sizeof got);
            return fail(p, cJSON_IsString(x) ? SB_ERR_ARG : SB_ERR_FORMAT, sub,
                        "expected an object with atol, rtol and/or ulp, got %s", got);
        }
        if ((st = parse_expect(p, x, sub, &ch->fallback)) != SB_OK) return st;
        ch->has_fallback = 1;
    }

    memset(&ch->where, 0, sizeof ch->where);
    if ((x = member(v, "where")) != NULL) {
        path_key(sub, path, "where");
        if ((st = parse_where(p, x, sub, s, &ch->where)) != SB_OK) return st;
        if (ch->kind == SB_CHECK_CROSS && ch->where.n_values[ch->axis] == 1) {
            int numeric = ch->axis == SB_AXIS_SEED || ch->axis == SB_AXIS_THREADS;
            return fail(p, SB_ERR_ARG, sub,
                        numeric ? "keeps only one %s (%s), so the cross check over %s compares "
                                  "nothing"
                                : "keeps only one %s (\"%s\"), so the cross check over %s "
                                  "compares nothing",
                        AXIS_SINGULAR[ch->axis], ch->where.values[ch->axis][0],
                        AXIS_PLURAL[ch->axis]);
        }
    }

    if (ch->kind == SB_CHECK_REPEATABLE && s->repeats < 2)
        return fail(p, SB_ERR_ARG, path,
                    "a repeatable check needs repeats >= 2 (repeats is %d), or it could never "
                    "fail",
                    s->repeats);
    return SB_OK;
}

static sb_status parse_checks(const parser *p, const cJSON *v, sb_suite *s) {
    char path[PATH_LEN];
    sb_status st;
    int n, i = 0;

    if ((st = want_array(p, v, "checks", 1, MAX_CHECKS, &n)) != SB_OK) return st;
    s->checks = calloc((size_t)n, sizeof *s->checks);
    if (!s->checks) return fail(p, SB_ERR_NOMEM, "checks", "out of memory");
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        path_index(path, "checks", i);
        if ((st = parse_check(p, c, path, s, i, &s->checks[i])) != SB_OK) return st;
        s->n_checks = i + 1;
    }
    return SB_OK;
}

/* ======================================================================
 * Text checks that cJSON does not make: UTF-8, NUL bytes, strict numbers.
 * ==================================================================== */

/* Offset of the first byte that is not valid UTF-8 (or is NUL), or len. */
static size_t bad_utf8(const unsigned char *t, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = t[i];
        size_t k;
        uint32_t cp, min;
        if (c == 0) return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) k = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) k = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (len - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((t[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (t[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return len;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Whether t[0..n) is a JSON number (RFC 8259):
 * -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int json_number_ok(const char *t, size_t n) {
    size_t i = 0;
    if (i < n && t[i] == '-') i++;
    if (i < n && t[i] == '0') i++;
    else if (i < n && t[i] >= '1' && t[i] <= '9')
        while (i < n && is_digit(t[i])) i++;
    else return 0;
    if (i < n && t[i] == '.') {
        size_t d = ++i;
        while (i < n && is_digit(t[i])) i++;
        if (i == d) return 0;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        size_t d = i;
        while (i < n && is_digit(t[i])) i++;
        if (i == d) return 0;
    }
    return i == n;
}

/* cJSON accepts a few things JSON does not ("01", "1.", "\u0000" inside a
 * string, which it would silently cut the string at). Called on text cJSON
 * has already parsed, so tokens are otherwise well formed. Returns the offset
 * of the first offence and sets *what, or returns len. */
static size_t lexical_offence(const char *t, size_t len, const char **what) {
    size_t i = 0;
    while (i < len) {
        char c = t[i];
        if (c == '"') {
            for (i++; i < len && t[i] != '"'; i++) {
                if (t[i] != '\\') continue;
                if (i + 5 < len && t[i + 1] == 'u' && memcmp(t + i + 2, "0000", 4) == 0) {
                    *what = "a NUL character (\\u0000) in a string";
                    return i;
                }
                i++; /* skip the escaped character */
            }
            i++;
        } else if (c == '-' || is_digit(c)) {
            size_t j = i;
            while (j < len && (is_digit(t[j]) || t[j] == '-' || t[j] == '+' || t[j] == '.' ||
                               t[j] == 'e' || t[j] == 'E'))
                j++;
            if (!json_number_ok(t + i, j - i)) {
                *what = "an invalid number";
                return i;
            }
            i = j;
        } else {
            i++;
        }
    }
    return len;
}

/* 1-based line and column (in characters) of byte offset off. */
static void locate(const char *t, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (t[i] == '\n') (*line)++, *col = 1;
        else if (((unsigned char)t[i] & 0xC0) != 0x80) (*col)++;
    }
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ======================================================================
 * Cases
 * ==================================================================== */

/* dst ← dst with src merged over it: objects key by key, anything else
 * replaced. Returns 0, or -1 on allocation failure. */
static int merge_into(cJSON *dst, const cJSON *src) {
    for (const cJSON *c = src->child; c; c = c->next) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, c->string);
        if (d && cJSON_IsObject(d) && cJSON_IsObject(c)) {
            if (merge_into(d, c) != 0) return -1;
            continue;
        }
        cJSON *copy = cJSON_Duplicate(c, 1);
        if (!copy) return -1;
        if (d)
            cJSON_ReplaceItemInObjectCaseSensitive(dst, c->string, copy);
        else
            cJSON_AddItemToObject(dst, c->string, copy);
    }
    return 0;
}

/* parses one document (a case is parsed as a suite of its own) */
static sb_suite *parse_text(const char *text, size_t len, const char *label, const char *base_dir,
                            sb_error *err);

static sb_status parse_cases(const parser *p, const cJSON *root, sb_suite *s) {
    static const key_spec keys[] = {
        {"name", 1},   {"description", 0}, {"model", 0},   {"data", 0},    {"train", 0},
        {"matrix", 0}, {"repeats", 0},     {"timeout", 0}, {"perturb", 0}, {"checks", 0},
        {"rng", 0},    {"trace", 0},       {"recheck", 0}, {"cases", 1}};
    static const key_spec case_keys[] = {
        {"name", 1},   {"description", 0}, {"model", 0},   {"data", 0},    {"train", 0},
        {"matrix", 0}, {"repeats", 0},     {"timeout", 0}, {"perturb", 0}, {"checks", 0},
        {"rng", 0},    {"trace", 0},       {"recheck", 0}};
    char path[PATH_LEN];
    sb_status st;
    const cJSON *x;
    int n = 0;
    if ((st = check_keys(p, root, "", keys, N_KEYS(keys))) != SB_OK) return st;
    if ((st = want_name(p, member(root, "name"), "name", s->name)) != SB_OK) return st;
    if ((x = member(root, "description")) != NULL &&
        (st = want_string(p, x, "description", s->description, sizeof s->description)) != SB_OK)
        return st;
    const cJSON *cases = member(root, "cases");
    if ((st = want_array(p, cases, "cases", 1, SB_MAX_CASES, &n)) != SB_OK) return st;
    int i = 0, total_checks = 0;
    uint64_t total_runs = 0;
    for (const cJSON *c = cases->child; c; c = c->next, i++) {
        path_index(path, "cases", i);
        if ((st = want_object(p, c, path)) != SB_OK) return st;
        if ((st = check_keys(p, c, path, case_keys, N_KEYS(case_keys))) != SB_OK) return st;
        char cname[64], npath[PATH_LEN + 8];
        snprintf(npath, sizeof npath, "%s.name", path);
        if ((st = want_name(p, member(c, "name"), npath, cname)) != SB_OK) return st;
        for (int j = 0; j < i; j++)
            if (!strcmp(s->case_names[j], cname))
                return fail(p, SB_ERR_ARG, npath, "case \"%s\" is named twice", cname);
        snprintf(s->case_names[i], sizeof s->case_names[i], "%s", cname);

        /* the top level with the case merged over it, parsed as a suite */
        cJSON *merged = cJSON_Duplicate(root, 1);
        if (!merged) return fail(p, SB_ERR_NOMEM, path, "out of memory");
        cJSON_DeleteItemFromObjectCaseSensitive(merged, "cases");
        if (merge_into(merged, c) != 0) {
            cJSON_Delete(merged);
            return fail(p, SB_ERR_NOMEM, path, "out of memory");
        }
        char *text = cJSON_PrintUnformatted(merged);
        cJSON_Delete(merged);
        if (!text) return fail(p, SB_ERR_NOMEM, path, "out of memory");
        char label[512];
        snprintf(label, sizeof label, "%s: %s (%s)", p->label, path, cname);
        s->cases[i] = parse_text(text, strlen(text), label, p->base_dir, p->err);
        free(text);
        if (!s->cases[i]) return p->err ? p->err->status : SB_ERR_FORMAT;
        s->n_cases = i + 1;
        total_checks += s->cases[i]->n_checks;
        const sb_suite *cs = s->cases[i];
        total_runs += (uint64_t)cs->n_seeds * cs->n_backends * cs->n_modes * cs->n_threads *
                      cs->repeats;
    }
    if (total_runs > MAX_RUNS)
        return fail(p, SB_ERR_ARG, "cases", "expand to %" PRIu64 " runs, more than the limit of %d",
                    total_runs, MAX_RUNS);
    if (total_checks > MAX_CHECKS)
        return fail(p, SB_ERR_ARG, "cases", "%d checks in all, more than the limit of %d",
                    total_checks, MAX_CHECKS);
    s->checks = calloc((size_t)total_checks, sizeof *s->checks);
    if (!s->checks) return fail(p, SB_ERR_NOMEM, "cases", "out of memory");
    for (int k = 0; k < s->n_cases; k++)
        for (int j = 0; j < s->cases[k]->n_checks; j++) {
            sb_check *ck = &s->checks[s->n_checks++];
            *ck = s->cases[k]->checks[j];
            snprintf(ck->name, sizeof ck->name, "%s/%s", s->case_names[k],
                     s->cases[k]->checks[j].name);
            ck->case_index = k;
        }
    /* the container's own fields mirror the first case (for tools that read
     * one configuration); runs and checks come from every case */
    const sb_suite *c0 = s->cases[0];
    s->base = c0->base;
    s->n_seeds = c0->n_seeds;
    memcpy(s->seeds, c0->seeds, sizeof s->seeds);
    s->n_backends = c0->n_backends;
    memcpy(s->backends, c0->backends, sizeof s->backends);
    s->n_modes = c0->n_modes;
    memcpy(s->modes, c0->modes, sizeof s->modes);
    s->n_threads = c0->n_threads;
    memcpy(s->threads, c0->threads, sizeof s->threads);
    s->repeats = c0->repeats;
    s->perturb = c0->perturb;
    s->timeout = 0;
    for (int k = 0; k < s->n_cases; k++)
        if (s->cases[k]->timeout > s->timeout) s->timeout = s->cases[k]->timeout;
    return SB_OK;
}

int sb_suite_find_case(const sb_suite *s, const char *name) {
    for (int i = 0; i < s->n_cases; i++)
        if (!strcmp(s->case_names[i], name)) return i;
    return -1;
}

int sb_check_covers(const sb_check *c, const sb_run_spec *r) {
    if (c->case_index >= 0 && c->case_index != r->case_index) return 0;
    return sb_where_matches(&c->where, &r->cfg);
}

/* ======================================================================
 * Public entry points
 * ==================================================================== */

void sb_suite_free(sb_suite *s) {
    if (!s) return;
    for (int i = 0; i < s->n_cases; i++) sb_suite_free(s->cases[i]);
    free(s->path);
    free(s->checks);
    free(s->text);
    free(s);
}

sb_suite *sb_suite_parse(const char *text, size_t len, const char *label, sb_error *err) {
    return parse_text(text, len, label, NULL, err);
}

static sb_suite *parse_text(const char *text, size_t len, const char *label, const char *base_dir,
                            sb_error *err) {
    static const key_spec keys[] = {
        {"name", 1},  {"description", 0}, {"model", 1},   {"data", 1},   {"train", 1},
        {"matrix", 0}, {"repeats", 0},    {"timeout", 0}, {"perturb", 0}, {"checks", 1},
        {"rng", 0},   {"trace", 0},       {"recheck", 0}, {"cases", 0}};
    static const range timeout_range = {0, MAX_TIMEOUT, 1, 0};
    parser p = {label ? label : "suite", err, base_dir};
    cJSON *root = NULL;
    sb_suite *s = NULL;
    const cJSON *x;
    int hidden[MAX_HIDDEN], n_hidden = 0;
    int line, col;
    size_t off;

    if (!text && len) {
        fail(&p, SB_ERR_ARG, "", "no text given");
        goto fail;
    }
    if (len > MAX_SUITE_BYTES) {
        fail(&p, SB_ERR_FORMAT, "", "larger than 16 MiB; not a suite");
        goto fail;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(p.label)) || !(s->text = malloc(len + 1))) {
        fail(&p, SB_ERR_NOMEM, "", "out of memory");
        goto fail;
    }
    if (len) memcpy(s->text, text, len);
    s->text[len] = '\0';
    s->text_len = len;
    sb_sha256_bytes(s->text, len, s->sha256);

    /* ---- syntax ---- */
    if ((off = bad_utf8((const unsigned char *)s->text, len)) < len) {
        locate(s->text, off, &line, &col);
        fail(&p, SB_ERR_FORMAT, "", "line %d, column %d: %s", line, col,
             s->text[off] ? "invalid UTF-8" : "a NUL byte");
        goto fail;
    }
    for (off = 0; off < len && is_space(s->text[off]); off++) {}
    if (off == len) {
        fail(&p, SB_ERR_FORMAT, "", "empty; expected a JSON object");
        goto fail;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(s->text, len, &end, 0);
    if (!root) {
        off = end && end >= s->text && end <= s->text + len ? (size_t)(end - s->text) : 0;
        locate(s->text, off, &line, &col);
        fail(&p, SB_ERR_FORMAT, "", "line %d, column %d: malformed JSON", line, col);
        goto fail;
    }
    for (off = (size_t)(end - s->text); off < len && is_space(s->text[off]); off++) {}
    if (off < len) {
        locate(s->text, off, &line, &col);
        fail(&p, SB_ERR_FORMAT, "", "line %d, column %d: malformed JSON: text after the end", line,
             col);
        goto fail;
    }
    const char *what = NULL;
    if ((off = lexical_offence(s->text, len, &what)) < len) {
        locate(s->text, off, &line, &col);
        fail(&p, SB_ERR_FORMAT, "", "line %d, column %d: malformed JSON: %s", line, col, what);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        char got[96];
        describe(root, got, sizeof got);
        fail(&p, SB_ERR_FORMAT, "", "expected a JSON object at the top level, got %s", got);
        goto fail;
    }

    if (member(root, "cases") != NULL) {
        if (parse_cases(&p, root, s) != SB_OK) goto fail;
        cJSON_Delete(root);
        return s;
    }

    /* ---- sections ---- */
    if (check_keys(&p, root, "", keys, N_KEYS(keys)) != SB_OK) goto fail;
    if (want_name(&p, member(root, "name"), "name", s->name) != SB_OK) goto fail;
    if ((x = member(root, "description")) != NULL &&
        want_string(&p, x, "description", s->description, sizeof s->description) != SB_OK)
        goto fail;
    if (parse_model(&p, member(root, "model"), &s->base.model, &n_hidden, hidden) != SB_OK)
        goto fail;
    if (parse_data(&p, member(root, "data"), &s->base.data) != SB_OK) goto fail;
    if (!strcmp(s->base.model.kind, "mlp")) {
        s->base.model.n_widths = n_hidden + 2;
        s->base.model.widths[0] = s->base.data.features;
        for (int i = 0; i < n_hidden; i++) s->base.model.widths[1 + i] = hidden[i];
        s->base.model.widths[n_hidden + 1] = s->base.data.classes;
    } else if (!strcmp(s->base.model.kind, "cnn") && s->base.data.height < 1) {
        fail(&p, SB_ERR_ARG, "model.kind", "a cnn needs image data (data.kind \"shapes\")");
        goto fail;
    }
    {
        int seq_model = !strcmp(s->base.model.kind, "rnn") ||
                        !strcmp(s->base.model.kind, "transformer");
        int tokens = !strcmp(s->base.data.kind, "chars");
        if (seq_model != tokens) {
            fail(&p, SB_ERR_ARG, "model.kind", tokens ? "token data (data.kind \"chars\") needs "
                 "model.kind \"rnn\" or \"transformer\"" : "a %s needs token data (data.kind "
                 "\"chars\")", s->base.model.kind);
            goto fail;
        }
    }
    if (parse_train(&p, member(root, "train"), s->base.data.samples, &s->base) != SB_OK)
        goto fail;
    if (parse_matrix(&p, member(root, "matrix"), s) != SB_OK) goto fail;

    s->repeats = 2;
    if ((x = member(root, "repeats")) != NULL) {
        int64_t r = 0;
        if (want_int(&p, x, "repeats", 1, 100, &r) != SB_OK) goto fail;
        s->repeats = (int)r;
    }
    uint64_t runs = (uint64_t)s->n_seeds * (uint64_t)s->n_backends * (uint64_t)s->n_modes *
                    (uint64_t)s->n_threads * (uint64_t)s->repeats;
    if (runs > MAX_RUNS) {
        fail(&p, SB_ERR_ARG, "matrix",
             "expands to %" PRIu64 " runs (seeds x backends x modes x threads x repeats), more "
             "than the limit of %d",
             runs, MAX_RUNS);
        goto fail;
    }
    s->timeout = 600;
    if ((x = member(root, "timeout")) != NULL &&
        want_number(&p, x, "timeout", &timeout_range, 0, &s->timeout) != SB_OK)
        goto fail;
    s->perturb = 0;
    if ((x = member(root, "perturb")) != NULL) {
        if (!cJSON_IsBool(x)) {
            char got[96];
            describe(x, got, sizeof got);
            fail(&p, SB_ERR_FORMAT, "perturb", "expected true or false, got %s", got);
            goto fail;
        }
        s->perturb = cJSON_IsTrue(x);
    }
    s->base.trace = 1;
    s->base.recheck = 0;
    {
        static const char *const flags[] = {"trace", "recheck"};
        int *dst[] = {&s->base.trace, &s->base.recheck};
        for (int f = 0; f < 2; f++) {
            if ((x = member(root, flags[f])) == NULL) continue;
            if (!cJSON_IsBool(x)) {
                char got[96];
                describe(x, got, sizeof got);
                fail(&p, SB_ERR_FORMAT, flags[f], "expected true or false, got %s", got);
                goto fail;
            }
            *dst[f] = cJSON_IsTrue(x);
        }
    }
    if (s->base.recheck && !s->base.trace) {
        fail(&p, SB_ERR_ARG, "recheck", "needs \"trace\": true (recheck results live in the trace)");
        goto fail;
    }
    if ((x = member(root, "rng")) != NULL && parse_rng(&p, x, &s->base.unseeded) != SB_OK)
        goto fail;
    if (parse_checks(&p, member(root, "checks"), s) != SB_OK) goto fail;

    /* ---- the base run: first value of every axis ---- */
    s->base.seed = s->seeds[0];
    memcpy(s->base.backend, s->backends[0], sizeof s->base.backend);
    s->base.mode = s->modes[0];
    s->base.threads = s->threads[0];
    s->base.perturb = s->perturb;

    cJSON_Delete(root);
    return s;

fail:
    cJSON_Delete(root);
    sb_suite_free(s);
    return NULL;
}

int sb_suite_dir(const char *path, char *out, size_t n) {
    char real[PATH_MAX];
    if (!realpath(path, real)) return -1;
    char *slash = strrchr(real, '/');
    if (slash == real) slash[1] = '\0';
    else if (slash) *slash = '\0';
    if (strlen(real) >= n) return -1;
    memcpy(out, real, strlen(real) + 1);
    return 0;
}

sb_suite *sb_suite_load(const char *path, sb_error *err) { return sb_suite_load_dir(path, NULL, err); }

sb_suite *sb_suite_load_dir(const char *path, const char *data_dir, sb_error *err) {
    parser p = {path ? path : "suite", err, NULL};
    char dir[PATH_MAX];
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    sb_suite *s = NULL;

    if (!path) {
        fail(&p, SB_ERR_ARG, "", "no path given");
        goto fail;
    }
    f = fopen(path, "rb");
    if (!f) {
        fail(&p, SB_ERR_IO, "", "cannot read: %s", strerror(errno));
        goto fail;
    }
    /* Read up to one byte past the limit, growing as needed: the size is not
     * trusted (a pipe or a growing file has none). */
    for (;;) {
        if (len == cap) {
            if (cap > MAX_SUITE_BYTES) break;
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > MAX_SUITE_BYTES + 1) ncap = MAX_SUITE_BYTES + 1;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                fail(&p, SB_ERR_NOMEM, "", "out of memory");
                goto fail;
            }
            buf = nb, cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        fail(&p, SB_ERR_IO, "", "cannot read: %s", strerror(errno ? errno : EIO));
        goto fail;
    }
    if (len > MAX_SUITE_BYTES) {
        fail(&p, SB_ERR_FORMAT, "", "larger than 16 MiB; not a suite");
        goto fail;
    }
    if (data_dir && !realpath(data_dir, dir)) {
        fail(&p, SB_ERR_IO, "", "data folder %s: %s", data_dir, strerror(errno));
        goto fail;
    }
    if (!data_dir && sb_suite_dir(path, dir, sizeof dir) != 0) {
        fail(&p, SB_ERR_IO, "", "cannot resolve its folder: %s", strerror(errno ? errno : ENAMETOOLONG));
        goto fail;
    }
    s = parse_text(buf, len, path, dir, err);

fail:
    if (f) fclose(f);
    free(buf);
    return s;
}

static int expand_one(const sb_suite *s, sb_run_spec **out);

int sb_suite_expand(const sb_suite *s, sb_run_spec **out) {
    if (!out) return -1;
    *out = NULL;
    if (!s || s->n_cases == 0) return expand_one(s, out);
    sb_run_spec *all = NULL;
    int total = 0;
    for (int c = 0; c < s->n_cases; c++) {
        sb_run_spec *part = NULL;
        int n = expand_one(s->cases[c], &part);
        if (n < 0) {
            free(all);
            return -1;
        }
        sb_run_spec *grown = realloc(all, (size_t)(total + n) * sizeof *grown);
        if (!grown) {
            free(part);
            free(all);
            return -1;
        }
        all = grown;
        for (int i = 0; i < n; i++) {
            sb_run_spec *x = &all[total + i];
            *x = part[i];
            x->case_index = c;
            snprintf(x->case_name, sizeof x->case_name, "%s", s->case_names[c]);
            snprintf(x->id, sizeof x->id, "%s/%s", s->case_names[c], part[i].id);
            snprintf(x->cell, sizeof x->cell, "%s/%s", s->case_names[c], part[i].cell);
        }
        total += n;
        free(part);
    }
    *out = all;
    return total;
}

static int expand_one(const sb_suite *s, sb_run_spec **out) {
    *out = NULL;
    if (!s || s->n_seeds < 1 || s->n_backends < 1 || s->n_modes < 1 || s->n_threads < 1 ||
        s->n_seeds > SB_MAX_AXIS_VALUES || s->n_backends > SB_MAX_AXIS_VALUES ||
        s->n_modes > SB_MAX_AXIS_VALUES || s->n_threads > SB_MAX_AXIS_VALUES || s->repeats < 1)
        return -1;
    uint64_t total = (uint64_t)s->n_seeds * (uint64_t)s->n_backends * (uint64_t)s->n_modes *
                     (uint64_t)s->n_threads * (uint64_t)s->repeats;
    if (total > (uint64_t)INT32_MAX || total > SIZE_MAX / sizeof(sb_run_spec)) return -1;
    sb_run_spec *runs = calloc((size_t)total, sizeof *runs);
    if (!runs) return -1;

    size_t k = 0;
    for (int si = 0; si < s->n_seeds; si++)
        for (int bi = 0; bi < s->n_backends; bi++)
            for (int mi = 0; mi < s->n_modes; mi++)
                for (int ti = 0; ti < s->n_threads; ti++)
                    for (int r = 0; r < s->repeats; r++, k++) {
                        sb_run_spec *x = &runs[k];
                        x->cfg = s->base;
                        x->cfg.seed = s->seeds[si];
                        memcpy(x->cfg.backend, s->backends[bi], sizeof x->cfg.backend);
                        x->cfg.backend[sizeof x->cfg.backend - 1] = '\0';
                        x->cfg.mode = s->modes[mi];
                        x->cfg.threads = s->threads[ti];
                        x->cfg.perturb = s->perturb;
                        x->repeat = r;
                        x->case_index = -1;
                        snprintf(x->cell, sizeof x->cell, "seed%" PRIu64 "-%s-%s-t%d",
                                 x->cfg.seed, x->cfg.backend, sb_mode_name(x->cfg.mode),
                                 x->cfg.threads);
                        snprintf(x->id, sizeof x->id, "seed%" PRIu64 "-%s-%s-t%d-r%d",
                                 x->cfg.seed, x->cfg.backend, sb_mode_name(x->cfg.mode),
                                 x->cfg.threads, r);
                    }
    *out = runs;
    return (int)total;
}
