/* sb_base.h — status codes, the error object and assertions shared by every
 * samebits module (kernels, engine, harness).
 *
 * It is deliberately tiny: no allocation helpers, no logging. Library code
 * reports failures by returning a status and filling an sb_error the caller
 * owns (never a global); SB_ASSERT is only for programming errors.
 */
#ifndef SB_BASE_H
#define SB_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum sb_status {
    SB_OK = 0,
    SB_ERR_IO = -1,          /* a file could not be read or written */
    SB_ERR_FORMAT = -2,      /* a file or document is malformed */
    SB_ERR_NOMEM = -3,       /* allocation failed */
    SB_ERR_UNSUPPORTED = -4, /* the backend / build cannot do this */
    SB_ERR_ARG = -5,         /* bad argument or configuration */
    SB_ERR_EXISTS = -6,      /* refusing to overwrite an existing output */
    SB_ERR_RUN = -7          /* a training run failed (NaN loss, crash, ...) */
} sb_status;

const char *sb_status_str(sb_status s);

/* The caller owns an sb_error (usually on its stack) and passes it down.
 * Functions that fail write one human-readable line into msg (no newline). */
typedef struct sb_error {
    sb_status status;
    char msg[1024];
} sb_error;

/* Sets err->status and formats err->msg; returns status so callers can write
 * `return sb_error_set(err, SB_ERR_FORMAT, "...")`. err may be NULL. */
sb_status sb_error_set(sb_error *err, sb_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define SB_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "samebits: assertion failed at %s:%d: %s\n",       \
                    __FILE__, __LINE__, #cond);                                \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define SB_UNUSED(x) ((void)(x))

#endif /* SB_BASE_H */
