/* base.c — sb_status strings and the sb_error setter (see sb_base.h). */
#include "sb_base.h"

#include <stdarg.h>
#include <string.h>

const char *sb_status_str(sb_status s) {
    switch (s) {
    case SB_OK: return "ok";
    case SB_ERR_IO: return "i/o error";
    case SB_ERR_FORMAT: return "malformed input";
    case SB_ERR_NOMEM: return "out of memory";
    case SB_ERR_UNSUPPORTED: return "unsupported";
    case SB_ERR_ARG: return "bad argument";
    case SB_ERR_EXISTS: return "already exists";
    case SB_ERR_RUN: return "run failed";
    }
    return "unknown status";
}

sb_status sb_error_set(sb_error *err, sb_status status, const char *fmt, ...) {
    if (!err) return status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* one line: replace embedded newlines so the CLI prints exactly one line */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return status;
}
