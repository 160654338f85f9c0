/* cmd_env.c — `samebits env [--json]`: the environment fingerprint of this
 * machine and process, warnings first (what a qualification engineer wants
 * to know at once), then every field, those that can change bits marked.
 *
 * Not here: what the fields are and how they are taken (fingerprint.c,
 * fingerprint_collect.c).
 */
#include "fingerprint.h"
#include "harness.h"

#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits env [--json]\n"
            "\n"
            "Prints the environment fingerprint that every run records: OS and kernel,\n"
            "CPU model and ISA flags, compiler and build flags, glibc, the BLAS library\n"
            "(version, kernel, threads), cJSON/OpenSSL/xxHash, CUDA driver, runtime,\n"
            "cuDNN and GPU where present, and the environment variables known to change\n"
            "numerics. Warnings come first; fields marked * can change bits.\n"
            "\n"
            "options:\n"
            "  --json    the fingerprint as JSON (schema " SB_ENV_SCHEMA ")\n");
}

int sb_cmd_env(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return SB_EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "samebits env: unexpected argument '%s'\n", argv[i]);
            return SB_EXIT_USAGE;
        }
    }
    sb_error err = {0};
    cJSON *fp = sb_fingerprint_collect(NULL, &err);
    if (!fp) {
        fprintf(stderr, "samebits env: %s\n", err.msg);
        return SB_EXIT_USAGE;
    }
    int rc = SB_EXIT_OK;
    if (json) {
        char *text = cJSON_Print(fp);
        if (!text) {
            fprintf(stderr, "samebits env: out of memory\n");
            rc = SB_EXIT_USAGE;
        } else {
            printf("%s\n", text);
            free(text);
        }
    } else {
        sb_fingerprint_print(stdout, fp);
    }
    cJSON_Delete(fp);
    if (fflush(stdout) != 0) rc = SB_EXIT_USAGE;
    return rc;
}
