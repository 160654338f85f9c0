/* strbuf.h — a growable text buffer for the JSON the engine writes by hand
 * (the safetensors header, the trace footer), where the exact bytes matter
 * and cJSON's number formatting would not do. Shared by safetensors.c and
 * trace.c; not a general string library.
 *
 * An allocation failure sets `oom` and makes every later append a no-op, so
 * callers check once at the end. Free `p` when done.
 */
#ifndef SB_STRBUF_H
#define SB_STRBUF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sb_strbuf {
    char *p;
    size_t len, cap;
    int oom;
} sb_strbuf;

static inline void sb_strbuf_put(sb_strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1) ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static inline void sb_strbuf_puts(sb_strbuf *b, const char *s) { sb_strbuf_put(b, s, strlen(s)); }

/* s as a JSON string: quote and backslash escaped, control characters as
 * \u00XX; other bytes (UTF-8) as they are. */
static inline void sb_strbuf_json_string(sb_strbuf *b, const char *s) {
    sb_strbuf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_strbuf_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_strbuf_put(b, esc, 6);
        } else {
            sb_strbuf_put(b, (const char *)&c, 1);
        }
    }
    sb_strbuf_put(b, "\"", 1);
}

#endif /* SB_STRBUF_H */
