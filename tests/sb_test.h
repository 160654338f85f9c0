/* sb_test.h — the minimal test runner every tests/test_*.c uses.
 *
 * A test file defines its cases as `static int name(void)` returning 0 on
 * success, lists them in a table, and calls sb_test_main. With no argument
 * every case runs; with arguments only the named cases run (CTest registers
 * each case as its own test, see tests/CMakeLists.txt). A case fails by
 * returning non-zero; the executable's exit code is the number of failures.
 */
#ifndef SB_TEST_H
#define SB_TEST_H

#include <stdio.h>
#include <string.h>

typedef struct sb_test_case {
    const char *name;
    int (*fn)(void);
} sb_test_case;

#define SB_CASE(fn) { #fn, fn }

/* Fails the current case, printing where and why. */
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,   \
                    #cond);                                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            return 1;                                                          \
        }                                                                      \
    } while (0)

static inline int sb_test_main(int argc, char **argv, const sb_test_case *cases, int n) {
    int failed = 0, ran = 0;
    for (int i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strcmp(argv[a], cases[i].name) == 0) wanted = 1;
        if (!wanted) continue;
        ran++;
        int rc = cases[i].fn();
        printf("%s - %s\n", rc == 0 ? "ok" : "FAIL", cases[i].name);
        fflush(stdout);
        if (rc != 0) failed++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test case matched\n");
        return 2;
    }
    return failed;
}

#define SB_TEST_MAIN(table)                                                    \
    int main(int argc, char **argv) {                                          \
        return sb_test_main(argc, argv, table,                                 \
                            (int)(sizeof(table) / sizeof((table)[0])));        \
    }

#endif /* SB_TEST_H */
