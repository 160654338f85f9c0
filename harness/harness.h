/* harness.h — the harness's modules as main.c and the tests see them: the
 * run executor, check evaluation, summaries, baselines and the subcommands.
 *
 * Exit codes (DESIGN.md §6), used by every subcommand:
 *   0 all checks pass · 1 a check failed (drift) · 2 bad input or usage ·
 *   3 a run crashed, failed or timed out.
 */
#ifndef SB_HARNESS_H
#define SB_HARNESS_H

#include "attrib.h"
#include "diff.h"
#include "fingerprint.h"
#include "suite.h"

enum { SB_EXIT_OK = 0, SB_EXIT_DRIFT = 1, SB_EXIT_USAGE = 2, SB_EXIT_RUN = 3 };

#define SB_SUMMARY_SCHEMA "samebits.summary/1"
#define SB_RUN_SCHEMA "samebits.run/1"
#define SB_MANIFEST_SCHEMA "samebits.baseline/1"

/* ---- run results ---- */
typedef enum sb_run_status {
    SB_RUN_PENDING = 0, SB_RUN_OK, SB_RUN_FAILED, SB_RUN_CRASHED, SB_RUN_TIMEOUT
} sb_run_status;
const char *sb_run_status_name(sb_run_status s);

typedef struct sb_run_result {
    const sb_run_spec *spec;
    sb_run_status status;
    char dir[1024];          /* absolute or results-relative folder of the run */
    char rel_checkpoint[512];/* checkpoint path relative to the results folder */
    char sha256[65];         /* of the checkpoint file */
    char weights_sha256[65]; /* sb_st_weights_digest */
    double seconds;          /* wall time of the child process */
    float final_loss;
    int exit_code;           /* child's exit code, or -signal */
    int resumed;             /* taken from an earlier invocation (--resume) */
    char message[512];       /* why it failed, "" when ok */
} sb_run_result;

/* ---- executor (runner.c) ----
 * Runs every spec as a child process `samebits train <suite copy> … --out
 * <results>/runs/<id>` with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to the
 * run's thread count, at most `jobs` at once, killing a run after `timeout`
 * seconds. A crash or timeout fails that run only. With `resume`, runs whose
 * folder already holds a finished run.json are kept and not rerun.
 * `progress` prints a progress line on stderr (when it is a terminal). */
typedef struct sb_exec_options {
    const char *exe;         /* path of the samebits executable */
    const char *results_dir;
    const char *suite_copy;  /* the suite file inside results_dir */
    const char *suite_dir;   /* the original suite's folder (its data file paths are relative
                              * to it; passed as `train --suite-dir`); NULL: none */
    int jobs;
    double timeout;
    int resume;
    int progress;
} sb_exec_options;

sb_status sb_execute_runs(const sb_exec_options *o, const sb_run_spec *specs, int n,
                          sb_run_result *results, sb_error *err);

/* ---- checks (checks.c) ---- */
typedef struct sb_comparison {
    char a[128], b[160];     /* run ids; for baselines b is "baseline:<cell>" */
    int ok;                  /* evaluated (both sides present and readable) */
    int pass;                /* agrees under the check's expectation */
    int bitwise_equal;
    double max_abs, max_rel;
    uint64_t max_ulp;        /* UINT64_MAX: a NaN met a non-NaN */
    uint64_t mismatched, total;
    char worst_tensor[256];
    char error[512];         /* why it could not be evaluated */
    /* Drift attribution (attrib.h), attempted for every evaluated comparison
     * that does not pass: both runs' trace.sbt walked record by record.
     * attrib is owned by the comparison (freed by sb_check_results_free) and
     * NULL when not attempted or when it failed; then attribution_error says
     * why, naming the file ("" when not attempted). Attribution never
     * changes ok or pass. */
    sb_attribution *attrib;
    char attribution_error[512];
    /* Baseline comparisons only: the run's environment fingerprint (its
     * run.json "environment") against the baseline's (the manifest's cell,
     * else its top level). env_compared is 1 when both were there; then
     * env_diff (owned, freed by sb_check_results_free) lists the fields that
     * can change bits for the run's backend and differ (n_env_diff of
     * them); else env_note says what was missing. used_fallback: the
     * environments differ and the check's "fallback" tolerance was used
     * instead of its "expect". */
    int env_compared;
    int n_env_diff;
    sb_fp_diff *env_diff;
    char env_note[512];
    int used_fallback;
} sb_comparison;

typedef enum sb_check_status { SB_CHECK_PASS = 0, SB_CHECK_FAIL = 1, SB_CHECK_ERROR = 2 } sb_check_status;
const char *sb_check_status_name(sb_check_status s);

typedef struct sb_check_result {
    const sb_check *check;
    sb_check_status status;
    int n;                   /* comparisons */
    sb_comparison *cmp;
    char message[1024];      /* for error: why; for a baseline check whose baseline comes
                                from another environment: which fields differ (and, when
                                used, that the fallback tolerance was) */
} sb_check_result;

/* Evaluates every check of the suite on the finished runs. baselines_dir is
 * where "<suite>/<cell>/weights.safetensors" live. results[] parallels specs. */
sb_status sb_evaluate_checks(const sb_suite *s, const sb_run_spec *specs,
                             const sb_run_result *results, int n, const char *results_dir,
                             const char *baselines_dir, sb_check_result **out, sb_error *err);
void sb_check_results_free(sb_check_result *r, int n);

/* ---- summary and terminal verdict (summary.c) ---- */
sb_status sb_write_summary(const char *results_dir, const sb_suite *s, const sb_run_result *runs,
                           int n_runs, const sb_check_result *checks, int n_checks,
                           double seconds, int exit_code, sb_error *err);
void sb_print_verdict(FILE *f, const sb_suite *s, const sb_run_result *runs, int n_runs,
                      const sb_check_result *checks, int n_checks, const char *results_dir,
                      double seconds, int exit_code);
/* The exit code for a set of run and check results. */
int sb_verdict_exit_code(const sb_run_result *runs, int n_runs, const sb_check_result *checks,
                         int n_checks);

/* ---- baselines (baseline.c) ---- */
/* Default baselines folder for a suite: "<dir>/../baselines" when the suite
 * file sits in a folder named "suites", else "<dir>/baselines". */
void sb_default_baselines_dir(const char *suite_path, char *out, size_t n);
/* Checks a baseline checkpoint against its suite's manifest.json (the file's
 * SHA-256 as blessed). SB_OK, or an error naming the file and what differs. */
sb_status sb_baseline_verify(const char *baselines_dir, const char *suite, const char *cell,
                             sb_error *err);
/* The environment fingerprint a baseline cell's run had: the manifest's
 * cells.<cell>.environment (the top-level "environment" is the blessing
 * process's, for readers only). *out is a new object (cJSON_Delete it), or
 * NULL when the cell records none (blessed before fingerprints). SB_OK, or
 * an error naming the file. */
/* The "environment" of a finished run: RUN_DIR/run.json's. *out is a new
 * object (cJSON_Delete it), or NULL when run.json records none. SB_OK, or an
 * error naming the file (missing, malformed). */
sb_status sb_run_environment(const char *run_dir, cJSON **out, sb_error *err);
sb_status sb_baseline_environment(const char *baselines_dir, const char *suite, const char *cell,
                                  cJSON **out, sb_error *err);

/* ---- small shared helpers (util.c) ---- */
double sb_now(void);                              /* monotonic seconds */
int sb_mkdir_p(const char *path, sb_error *err);  /* 0 ok */
int sb_path_exists(const char *path);
int sb_use_color(FILE *f);                        /* a terminal and NO_COLOR unset */
/* Parses a strict decimal integer / finite number; 0 ok, -1 bad. */
int sb_parse_int(const char *s, long long lo, long long hi, long long *out);
int sb_parse_double(const char *s, double *out);
/* Copies src to dst atomically (no overwrite). */
sb_status sb_copy_file(const char *src, const char *dst, sb_error *err);
int sb_rm_rf(const char *path);                   /* 0 ok */
/* Reads a JSON file whose top level must be an object; NULL with err naming
 * the file and, for malformed JSON (anything after the value included), the
 * line and column, or the JSON path of a duplicate key. Caller deletes. */
struct cJSON *sb_json_read_object(const char *path, size_t max_bytes, sb_error *err);
/* 1 when some object in j holds a key twice, with "a.b[2].c: duplicate key"
 * in path (n bytes); 0 when none. */
int sb_json_find_duplicate_key(const struct cJSON *j, char *path, size_t n);
int sb_self_exe(char *buf, size_t n);             /* path of this executable; 0 ok */

/* ---- command-line options (util.c) ----
 * A table of options: a flag sets *flag = 1; a valued option stores the next
 * argument in *value (or, with `attached`, the rest of "-j2" after its alias).
 * The one positional argument goes to *positional; a second is an error. */
typedef struct sb_opt {
    const char *name;        /* "--out" */
    const char *alias;       /* "-j", or NULL */
    const char **value;      /* valued option: where the argument goes */
    int *flag;               /* flag: set to 1 */
    int attached;            /* alias may carry its value attached ("-j2") */
} sb_opt;

/* Parses argv[1..] (argv[0] is the subcommand). --help/-h calls usage(stdout)
 * and returns 1 (the caller exits 0); a bad option prints one line
 * "samebits CMD: …" on stderr and returns 2; 0 otherwise. */
int sb_parse_opts(int argc, char **argv, const char *cmd, const sb_opt *opts, int n_opts,
                  const char **positional, void (*usage)(FILE *));

/* ---- subcommands ---- */
int sb_cmd_train(int argc, char **argv);
int sb_cmd_run(int argc, char **argv);
int sb_cmd_bless(int argc, char **argv);
int sb_cmd_bench(int argc, char **argv);
int sb_cmd_data(int argc, char **argv);   /* cmd_data.c: `samebits data export` */

/* The data files a run reads, as a JSON array [{"path", "sha256"}] (empty
 * for synthetic data; "sha256" is null when a file cannot be read). New
 * object, cJSON_Delete it. cmd_data.c. */
cJSON *sb_data_files_json(const sb_data_config *d);

#endif /* SB_HARNESS_H */
