/* cmd_run.c — `samebits run`: expand a suite, run every run as a child
 * process, evaluate the checks, write summary.json, print the verdict.
 *
 * Results folder (README "Results layout"):
 *   DIR/suite.json            the suite exactly as run (its SHA-256 is recorded)
 *   DIR/runs/<id>/            weights.safetensors, run.json, log.txt per run
 *   DIR/summary.json          written atomically once the checks are evaluated; never rewritten
 *   DIR/junit.xml, report.html, report.md   made from summary.json (report.h)
 *
 * Not here: how runs execute (runner.c), checks (checks.c), rendering
 * (summary.c, report*.c).
 */
#include "harness.h"
#include "report.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits run SUITE.json [options]\n"
            "\n"
            "Runs every run of the suite's matrix (each in its own process), evaluates\n"
            "its checks and writes DIR/summary.json.\n"
            "\n"
            "options:\n"
            "  --out DIR          results folder (default results/<suite>-<UTC timestamp>)\n"
            "  -j, --jobs N       runs at once (default 1)\n"
            "  --resume           continue an interrupted invocation in --out DIR: finished\n"
            "                     runs are kept, the rest run again\n"
            "  --timeout SECONDS  per-run limit (default: the suite's, else 600)\n"
            "  --perturb          order-perturbation test aid for every run (fast mode)\n"
            "  --recheck          run every op twice on the same inputs in every run and\n"
            "                     report the ops whose outputs differ (nondeterministic)\n"
            "  --baselines DIR    where baselines live (default: see README)\n"
            "\n"
            "exit: 0 all checks pass, 1 a check failed, 2 bad input or usage,\n"
            "      3 a run crashed, failed or timed out\n");
}

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "samebits run: %s%s\n", msg, arg ? arg : "");
    return SB_EXIT_USAGE;
}

/* results/<suite>-YYYYmmdd-HHMMSS, with -2, -3 … when taken. */
static void default_out(const sb_suite *s, char *out, size_t n) {
    char ts[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tmv);
    snprintf(out, n, "results/%s-%s", s->name, ts);
    for (int k = 2; sb_path_exists(out) && k < 1000; k++)
        snprintf(out, n, "results/%s-%s-%d", s->name, ts, k);
}

int sb_self_exe(char *buf, size_t n) {
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) return -1;
    buf[len] = '\0';
    return 0;
}

int sb_cmd_run(int argc, char **argv) {
    const char *suite_path = NULL, *out_arg = NULL, *jobs_s = NULL, *timeout_s = NULL,
               *baselines_arg = NULL;
    int resume = 0, perturb = 0, recheck = 0;
    const sb_opt opts[] = {
        {"--out", NULL, &out_arg, NULL, 0},       {"--jobs", "-j", &jobs_s, NULL, 1},
        {"--timeout", NULL, &timeout_s, NULL, 0}, {"--baselines", NULL, &baselines_arg, NULL, 0},
        {"--resume", NULL, NULL, &resume, 0},     {"--perturb", NULL, NULL, &perturb, 0},
        {"--recheck", NULL, NULL, &recheck, 0},
    };
    int prc = sb_parse_opts(argc, argv, "run", opts, (int)(sizeof opts / sizeof opts[0]),
                            &suite_path, usage);
    if (prc) return prc == 1 ? 0 : SB_EXIT_USAGE;
    if (!suite_path) {
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    long long jobs = 1;
    if (jobs_s && sb_parse_int(jobs_s, 1, 256, &jobs) != 0)
        return usage_error("-j: expected an integer 1..256, got ", jobs_s);
    double timeout = 0;
    if (timeout_s && (sb_parse_double(timeout_s, &timeout) != 0 || timeout <= 0))
        return usage_error("--timeout: expected a positive number of seconds, got ", timeout_s);
    if (resume && !out_arg) return usage_error("--resume needs --out DIR", NULL);

    sb_error err = {0};
    sb_suite *s = sb_suite_load(suite_path, &err);
    if (!s) {
        fprintf(stderr, "samebits run: %s\n", err.msg);
        return SB_EXIT_USAGE;
    }
    if (perturb) s->perturb = s->base.perturb = 1;
    if (recheck) s->base.recheck = s->base.trace = 1;
    if (!timeout_s) timeout = s->timeout;

    int rc = SB_EXIT_USAGE, n = 0;
    sb_run_spec *specs = NULL;
    sb_run_result *results = NULL;
    sb_check_result *checks = NULL;
    char out[1024], suite_copy[1200], baselines[1024], exe[1024];
    if (out_arg)
        snprintf(out, sizeof out, "%s", out_arg);
    else
        default_out(s, out, sizeof out);
    if (baselines_arg)
        snprintf(baselines, sizeof baselines, "%s", baselines_arg);
    else
        sb_default_baselines_dir(suite_path, baselines, sizeof baselines);
    snprintf(suite_copy, sizeof suite_copy, "%s/suite.json", out);

    char summary[1200];
    snprintf(summary, sizeof summary, "%s/summary.json", out);
    if (sb_path_exists(summary)) {
        fprintf(stderr, "samebits run: %s: holds a finished invocation (summary.json); "
                        "results are never rewritten, choose another --out\n", out);
        goto done;
    }
    if (sb_path_exists(suite_copy)) {
        if (!resume) {
            fprintf(stderr, "samebits run: %s: already holds runs; use --resume to continue "
                            "them or choose another --out\n", out);
            goto done;
        }
        size_t len;
        char *prev = sb_read_file(suite_copy, 16u << 20, &len, &err);
        int same = prev && len == s->text_len && memcmp(prev, s->text, len) == 0;
        free(prev);
        if (!same) {
            fprintf(stderr, "samebits run: %s: was started with a different suite file; "
                            "cannot resume it with %s\n", out, suite_path);
            goto done;
        }
    } else {
        if (sb_mkdir_p(out, &err) != 0 ||
            sb_write_file_atomic(suite_copy, s->text, s->text_len, 0, &err) != SB_OK) {
            fprintf(stderr, "samebits run: %s\n", err.msg);
            goto done;
        }
    }
    if (sb_self_exe(exe, sizeof exe) != 0) {
        fprintf(stderr, "samebits run: cannot find my own executable\n");
        goto done;
    }
    n = sb_suite_expand(s, &specs);
    if (n < 0) {
        fprintf(stderr, "samebits run: out of memory\n");
        goto done;
    }
    results = calloc((size_t)n, sizeof *results);
    if (!results) goto done;

    char suite_dir[4096];
    sb_exec_options o = {.exe = exe, .results_dir = out, .suite_copy = suite_copy,
                         .suite_dir = sb_suite_dir(suite_path, suite_dir, sizeof suite_dir) == 0
                                          ? suite_dir : NULL,
                         .jobs = (int)jobs, .timeout = timeout, .resume = resume,
                         .progress = isatty(2)};
    double t0 = sb_now();
    if (sb_execute_runs(&o, specs, n, results, &err) != SB_OK) {
        fprintf(stderr, "samebits run: %s\n", err.msg);
        rc = SB_EXIT_RUN;
        goto done;
    }
    if (sb_evaluate_checks(s, specs, results, n, out, baselines, &checks, &err) != SB_OK) {
        fprintf(stderr, "samebits run: %s\n", err.msg);
        goto done;
    }
    double secs = sb_now() - t0;
    rc = sb_verdict_exit_code(results, n, checks, s->n_checks);
    if (sb_write_summary(out, s, results, n, checks, s->n_checks, secs, rc, &err) != SB_OK) {
        fprintf(stderr, "samebits run: %s\n", err.msg);
        rc = SB_EXIT_USAGE;
        goto done;
    }
    /* The reports are made from summary.json as written (the same code as
     * `samebits report`). Report files already here can only be stale ones
     * of an interrupted invocation (a finished one has a summary.json), so
     * they are replaced. A report that cannot be written never touches
     * summary.json; it makes the exit code 2 (3 still wins). */
    int report_failed = sb_report_write(out, 1, &err) != SB_OK;
    sb_print_verdict(stdout, s, results, n, checks, s->n_checks, out, secs, rc);
    if (report_failed) {
        fprintf(stderr, "samebits run: reports: %s\n", err.msg);
        if (rc != SB_EXIT_RUN) rc = SB_EXIT_USAGE;
    } else {
        printf("reports: %s/report.html %s/junit.xml %s/report.md\n", out, out, out);
    }
done:
    sb_check_results_free(checks, s->n_checks);
    free(results);
    free(specs);
    sb_suite_free(s);
    return rc;
}
