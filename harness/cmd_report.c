/* cmd_report.c — `samebits report RESULTS_DIR [--force]`: (re)generates
 * junit.xml, report.html and report.md of a finished invocation from its
 * summary.json and files, exactly as `samebits run` wrote them.
 *
 * Not here: what the reports hold (report*.c).
 */
#include "harness.h"
#include "report.h"

#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits report RESULTS_DIR [--force]\n"
            "\n"
            "Writes RESULTS_DIR/junit.xml, report.html and report.md from its summary.json,\n"
            "its runs' run.json and checkpoints: the same files `samebits run` writes, byte\n"
            "for byte. Existing reports are kept unless --force is given; no other file of\n"
            "RESULTS_DIR is ever written.\n"
            "\n"
            "options:\n"
            "  --force   replace existing report files\n"
            "\n"
            "exit: 0 written, 2 bad input or usage (missing or corrupt summary.json,\n"
            "      a report exists without --force)\n");
}

int sb_cmd_report(int argc, char **argv) {
    const char *dir = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return SB_EXIT_OK;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "samebits report: unknown option %s\n", a);
            return SB_EXIT_USAGE;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "samebits report: unexpected argument %s\n", a);
            return SB_EXIT_USAGE;
        }
    }
    if (!dir) {
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    sb_error err = {0};
    if (sb_report_write(dir, force, &err) != SB_OK) {
        fprintf(stderr, "samebits report: %s\n", err.msg);
        return SB_EXIT_USAGE;
    }
    printf("reports: %s/report.html %s/junit.xml %s/report.md\n", dir, dir, dir);
    return SB_EXIT_OK;
}
