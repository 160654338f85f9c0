/* fingerprint.h — the environment fingerprint: what a run executed on, as far
 * as it can change the bits of the weights, plus what a person auditing it
 * wants to read (DESIGN.md §6 "Environment fingerprint", README
 * "Environment fingerprint").
 *
 * A fingerprint is a cJSON object (schema samebits.environment/1) with one
 * section per subject — samebits (version, compiler, flags), os, cpu, libc,
 * blas, libraries, cuda, env (the numerics environment variables present) —
 * plus "warnings" (what a qualification engineer wants to know at once) and
 * "can_change_bits" (the fields of this fingerprint that can change bits).
 * Every field is named by its path, "section.key" ("blas.core"), or
 * "env.NAME" for an environment variable.
 *
 * Each field is classified once, here: it *can change bits* (compiler and
 * code-generation flags, CPU architecture and ISA flags, glibc's libm, the
 * BLAS library, version, core and threads, CUDA driver/runtime/cuDNN/GPU,
 * every captured environment variable) or it is informational (samebits'
 * version, OS name, kernel, host name, CPU model and count, cJSON, OpenSSL,
 * xxHash). BLAS fields matter only to the blas backend and CUDA fields only
 * to a cuda backend: sb_fingerprint_diff can leave out the fields another
 * backend's run does not depend on.
 *
 * Collecting runs no external program: it reads /etc/os-release, /proc and
 * uname, asks the libraries linked in (OpenBLAS, cJSON, OpenSSL, xxHash,
 * glibc), and loads the CUDA driver, runtime and cuDNN with dlopen (never
 * linked), recording "absent" when a library cannot be loaded and
 * "no device" when the driver finds no GPU — never a guessed value.
 *
 * Implemented in fingerprint_collect.c (taking one) and fingerprint.c
 * (classes, warnings, differences, listing).
 *
 * Not here: where fingerprints are stored (cmd_train.c, summary.c,
 * baseline.c) or how a baseline check uses a difference (checks.c).
 */
#ifndef SB_FINGERPRINT_H
#define SB_FINGERPRINT_H

#include "../engine/engine.h"

#include <cjson/cJSON.h>
#include <stdio.h>

#define SB_ENV_SCHEMA "samebits.environment/1"

/* What the fingerprint is taken for. Both fields may be zero/NULL (outside a
 * run, e.g. `samebits env` or the harness process itself). */
typedef struct sb_fp_options {
    const char *backend;     /* the run's backend ("ref", "blas"), or NULL */
    int run_threads;         /* the run's thread count, or 0 */
} sb_fp_options;

/* Collects this process's fingerprint, warnings included. Returns a new
 * object the caller frees with cJSON_Delete; NULL with err set when out of
 * memory (a value the system does not give is recorded as "unknown", never
 * an error). o may be NULL. */
cJSON *sb_fingerprint_collect(const sb_fp_options *o, sb_error *err);

/* The warnings a fingerprint deserves — computed from its fields alone, so
 * a stored or synthetic fingerprint gets the same ones as a fresh one. A new
 * array of {"code", "message"} objects (codes: "blas-old-kernel",
 * "blas-coretype-forced", "blas-threads", "blas-version-mismatch",
 * "cuda-visible-devices", "ld-preload", "glibc-tunables"); NULL when out of
 * memory. o gives the run's backend and threads (NULL: none). */
cJSON *sb_fingerprint_warnings(const cJSON *fp, const sb_fp_options *o);

/* Whether field `path` ("blas.core", "env.OMP_NUM_THREADS") can change bits
 * for a run on `backend` (NULL: on any backend). Unknown fields are
 * informational. */
int sb_fingerprint_can_change_bits(const char *path, const char *backend);

/* One field in which two fingerprints differ. Values are printed as
 * strings: lists joined by spaces, "(unset)" for an environment variable
 * set on one side only, "(not recorded)" for a field one side lacks; values
 * longer than the buffer end in "...". */
typedef struct sb_fp_diff {
    char field[96];
    char a[256];
    char b[256];
} sb_fp_diff;

/* The fields that can change bits (for a run on `backend`; NULL: any) in
 * which fingerprints a and b differ, in a fixed order (the sections as
 * listed above, then environment variables by name). Informational fields
 * are ignored. *out (free() it; NULL when *n is 0) and *n are set. Either
 * fingerprint may be any JSON value (read from a file): what is missing or
 * of another type is compared as printed. SB_ERR_NOMEM only. */
sb_status sb_fingerprint_diff(const cJSON *a, const cJSON *b, const char *backend,
                              sb_fp_diff **out, int *n, sb_error *err);

/* One line naming differences, for messages: "blas.core SkylakeX → Haswell,
 * cpu.isa +avx512f, env.MKL_CBWR (unset) → AVX2" (a → b; for lists, +x is
 * only in b, -x only in a; long values are left out, the field named). */
void sb_fingerprint_diff_str(const sb_fp_diff *d, int n, char *buf, size_t len);

/* Human-readable listing: warnings first, then every field, those that can
 * change bits marked with '*'. */
void sb_fingerprint_print(FILE *f, const cJSON *fp);

/* `samebits env [--json]` (cmd_env.c); argv[0] is "env". Returns the
 * process exit code. */
int sb_cmd_env(int argc, char **argv);

#endif /* SB_FINGERPRINT_H */
