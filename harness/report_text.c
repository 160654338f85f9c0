/* report_text.c — the small text tools the report renderers share: a
 * growable buffer, escaping for XML/HTML and Markdown (with UTF-8 clean-up),
 * and tolerant accessors that turn summary.json values into short strings.
 *
 * Not here: any layout of a report (report_junit.c, report_html.c,
 * report_md.c) or reading files (report.c).
 */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---- buffer ---- */

static int text_reserve(sb_text *t, size_t extra) {
    if (t->oom) return -1;
    if (t->len + extra + 1 <= t->cap) return 0;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            t->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(t->p, cap);
    if (!p) {
        t->oom = 1;
        return -1;
    }
    t->p = p;
    t->cap = cap;
    return 0;
}

static void text_put(sb_text *t, const char *s, size_t n) {
    if (text_reserve(t, n) != 0) return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

void sb_text_puts(sb_text *t, const char *s) { text_put(t, s, strlen(s)); }

void sb_text_printf(sb_text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        text_put(t, small, (size_t)n);
        return;
    }
    if (text_reserve(t, (size_t)n) != 0) return;
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void sb_text_free(sb_text *t) {
    if (!t) return;
    free(t->p);
    t->p = NULL;
    t->len = t->cap = 0;
}

/* ---- escaping ---- */

/* Decodes the UTF-8 sequence at s: its length, and *cp (U+FFFD, length 1,
 * for a byte that does not start a well-formed sequence: overlong forms,
 * surrogates and values past U+10FFFF included). */
static size_t utf8_next(const unsigned char *s, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) n = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return n;
}

static void put_cp(sb_text *t, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) b[0] = (char)cp, n = 1;
    else if (cp < 0x800) b[0] = (char)(0xC0 | (cp >> 6)), b[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        b[0] = (char)(0xE0 | (cp >> 12)), b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
        b[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        b[0] = (char)(0xF0 | (cp >> 18)), b[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    text_put(t, b, n);
}

/* Characters neither XML 1.0 nor a printed page should carry. */
static int unprintable(uint32_t cp) {
    return (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7F ||
           (cp >= 0x80 && cp <= 0x9F) || cp == 0xFFFE || cp == 0xFFFF;
}

static void xml_escape(sb_text *t, const char *s, int attr) {
    if (!s) {
        sb_text_puts(t, "\xe2\x80\x94");
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        p += utf8_next(p, &cp);
        if (unprintable(cp)) cp = 0xFFFD;
        switch (cp) {
        case '&': sb_text_puts(t, "&amp;"); break;
        case '<': sb_text_puts(t, "&lt;"); break;
        case '>': sb_text_puts(t, "&gt;"); break;
        case '"': sb_text_puts(t, "&quot;"); break;
        case '\'': sb_text_puts(t, "&#39;"); break;
        case '\r': sb_text_puts(t, "&#13;"); break;
        case '\n': sb_text_puts(t, attr ? "&#10;" : "\n"); break;
        case '\t': sb_text_puts(t, attr ? "&#9;" : "\t"); break;
        default: put_cp(t, cp);
        }
    }
}

void sb_text_xml(sb_text *t, const char *s) { xml_escape(t, s, 0); }
void sb_text_xml_attr(sb_text *t, const char *s) { xml_escape(t, s, 1); }

void sb_text_md(sb_text *t, const char *s) {
    if (!s) {
        sb_text_puts(t, "\xe2\x80\x94");
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        p += utf8_next(p, &cp);
        if (unprintable(cp)) cp = 0xFFFD;
        if (cp == '\n' || cp == '\r' || cp == '\t') cp = ' ';
        if (cp == '<') sb_text_puts(t, "&lt;");
        else if (cp == '>') sb_text_puts(t, "&gt;");
        else if (cp == '&') sb_text_puts(t, "&amp;");
        else if (cp < 0x80 && strchr("\\`*_[]|~#", (int)cp)) {
            char b[3] = {'\\', (char)cp, 0};
            sb_text_puts(t, b);
        } else
            put_cp(t, cp);
    }
}

void sb_text_md_code(sb_text *t, const char *s) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        uint32_t cp;
        p += utf8_next(p, &cp);
        if (unprintable(cp) || cp == '\n' || cp == '\r' || cp == '\t') cp = ' ';
        if (cp == '`') cp = '\'';
        if (cp == '|') sb_text_puts(t, "\\|");
        else put_cp(t, cp);
    }
}

/* ---- accessors ---- */

const char *sb_report_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int sb_report_num(const cJSON *obj, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return 0;
    *out = v->valuedouble;
    return 1;
}

void sb_report_fmt_count(const cJSON *obj, const char *key, char *buf, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNull(v))
        snprintf(buf, n, "NaN");
    else if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        snprintf(buf, n, "\xe2\x80\x94");
    else if (fabs(v->valuedouble) < 9007199254740992.0 && v->valuedouble == floor(v->valuedouble))
        snprintf(buf, n, "%.0f", v->valuedouble);
    else
        snprintf(buf, n, "%.4g", v->valuedouble);
}

void sb_report_fmt_num(const cJSON *obj, const char *key, char *buf, size_t n) {
    double v;
    if (sb_report_num(obj, key, &v))
        snprintf(buf, n, "%.3g", v);
    else
        snprintf(buf, n, "\xe2\x80\x94");
}

/* "op (stage) at step N" of an object with op, stage and a step key. */
static void op_at(const cJSON *o, const char *step_key, char *buf, size_t n) {
    double step;
    const char *op = sb_report_str(o, "op"), *stage = sb_report_str(o, "stage");
    if (sb_report_num(o, step_key, &step))
        snprintf(buf, n, "%s (%s) at step %.0f", op ? op : "?", stage ? stage : "?", step);
    else
        snprintf(buf, n, "%s (%s)", op ? op : "?", stage ? stage : "?");
}

void sb_report_source_str(const cJSON *cmp, char *buf, size_t n) {
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(cmp, "sources");
    const cJSON *fd = cJSON_GetObjectItemCaseSensitive(cmp, "first_divergence");
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(cmp, "structure_mismatch");
    const char *aerr = sb_report_str(cmp, "attribution_error");
    char where[400];
    buf[0] = '\0';
    if (cJSON_IsArray(src) && cJSON_GetArraySize(src) > 0 && cJSON_IsObject(src->child)) {
        op_at(src->child, "first_step", where, sizeof where);
        int more = cJSON_GetArraySize(src) - 1;
        if (more > 0)
            snprintf(buf, n, "source: %s (+%d more)", where, more);
        else
            snprintf(buf, n, "source: %s", where);
    } else if (cJSON_IsObject(fd)) {
        const char *kind = sb_report_str(fd, "kind");
        op_at(fd, "step", where, sizeof where);
        snprintf(buf, n, "first divergence: %s, %s", where, kind ? kind : "?");
    } else if (cJSON_IsObject(sm)) {
        const char *msg = sb_report_str(sm, "message");
        snprintf(buf, n, "traces differ in structure: %s", msg ? msg : "?");
    } else if (aerr) {
        snprintf(buf, n, "no attribution: %s", aerr);
    } else if (cJSON_GetObjectItemCaseSensitive(cmp, "first_divergence")) {
        snprintf(buf, n, "traces agree (the drift is in no traced op)");
    }
}

void sb_report_check_counts(const cJSON *check, int *pass, int *fail, int *error) {
    *pass = *fail = *error = 0;
    const cJSON *cmps = cJSON_GetObjectItemCaseSensitive(check, "comparisons");
    const cJSON *x;
    cJSON_ArrayForEach(x, cmps) {
        const char *st = sb_report_str(x, "status");
        if (st && !strcmp(st, "pass")) (*pass)++;
        else if (st && !strcmp(st, "fail")) (*fail)++;
        else (*error)++;
    }
}

const cJSON *sb_report_worst_failing(const cJSON *check) {
    const cJSON *w = NULL, *x;
    double wu = -2;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(check, "comparisons")) {
        const char *st = sb_report_str(x, "status");
        if (!st || strcmp(st, "fail") != 0) continue;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(x, "max_ulp");
        double v = cJSON_IsNull(u) ? INFINITY : cJSON_IsNumber(u) ? u->valuedouble : -1;
        if (v > wu) wu = v, w = x;
    }
    return w;
}

int sb_report_run_ok(const cJSON *run) {
    const char *st = sb_report_str(run, "status");
    return st && !strcmp(st, "ok");
}

int sb_report_ulp_bucket(uint64_t ulp) {
    if (ulp == UINT64_MAX) return SB_REPORT_ULP_NAN;
    int k = 0;
    while (ulp) {
        k++;
        ulp >>= 1;
    }
    return k; /* 0 for 0; k for [2^(k-1), 2^k) */
}
