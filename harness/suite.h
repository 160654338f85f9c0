/* suite.h — the suite format: parsing, validation and matrix expansion.
 *
 * A suite (suites/NAME.json) names a model, data, training settings, a matrix
 * of axes, a repeat count and checks. Parsing is strict: unknown keys, wrong
 * types and out-of-range values are errors that name the file and the JSON
 * path ("suites/x.json: matrix.seeds[2]: expected a non-negative integer").
 * The format is documented in README.md ("Suite format").
 *
 *   {
 *     "name": "smoke",                       // [A-Za-z0-9_.-]{1,63}
 *     "description": "...",                  // optional string
 *     "model": {"kind": "mlp", "hidden": [32, 32], "activation": "tanh"},
 *     "data":  {"kind": "blobs", "samples": 512, "features": 16, "classes": 4,
 *               "noise": 1.0, "shuffle": "epoch"},      // none | once | epoch
 *     "train": {"steps": 100, "batch": 32,
 *               "optimizer": {"name": "adam", "lr": 0.01, "beta1": 0.9,
 *                             "beta2": 0.999, "eps": 1e-8, "weight_decay": 0}},
 *     "matrix": {"seeds": [1], "backends": ["ref", "blas"],
 *                "modes": ["deterministic", "fast"], "threads": [1, 2]},
 *     "repeats": 2,
 *     "timeout": 120,                        // seconds per run, optional
 *     "perturb": false,                      // order-perturbation test aid
 *     "checks": [
 *       {"name": "det-repeatable", "kind": "repeatable", "expect": "bitwise",
 *        "where": {"mode": "deterministic"}},
 *       {"name": "backends-agree", "kind": "cross", "axis": "backends",
 *        "expect": {"atol": 1e-5, "rtol": 1e-4}},
 *       {"name": "baseline", "kind": "baseline", "expect": "bitwise",
 *        "fallback": {"atol": 1e-5},          // baseline checks only, optional
 *        "where": {"backend": "ref"}}
 *     ]
 *   }
 *
 * data.kind may also be a file format, "idx" or "npy" ({"x": PATH, "y": PATH})
 * or "csv" ({"path": PATH, "label_column": NAME or INDEX, "header": BOOL}),
 * each with optional "scale" and "classes" and without samples/features:
 * the files are read and validated while parsing (engine/datafile.c; a bad
 * file fails the suite with the reader's one line), their sample, feature
 * and class counts fill the config, and their paths, relative to the suite
 * file's folder, are stored absolute.
 *
 * The input width of the MLP is data.features and its output width
 * data.classes; "hidden" lists the widths in between (0 to 7 of them).
 *
 * Defaults: description "", hidden [32], activation "relu", noise 1.0 (blobs)
 * or 0.2 (spirals), shuffle "epoch", momentum 0.9 (sgd), beta1 0.9, beta2
 * 0.999, eps 1e-8 (adam), weight_decay 0, seeds [0], backends ["ref"], modes
 * ["deterministic"], threads [1], repeats 2, timeout 600, perturb false.
 * Required: name, model.kind, data.kind/samples/features/classes, train.steps/
 * batch/optimizer, optimizer name and lr, checks (non-empty), and for each
 * check name, kind, expect, and axis for cross checks (only for them).
 * "fallback" (baseline checks only, optional) is an object like expect's
 * ({atol, rtol, ulp}, at least one): the tolerance used instead of expect
 * when the baseline comes from another environment (fingerprint.h).
 * Optimizer fields of the other optimizer are errors; the run config holds 0
 * for them.
 *
 * Limits (DESIGN.md §8): files up to 16 MiB; seeds 0..2^53-1 (a JSON number
 * holds no larger integer exactly: 2^53+1 would read as 2^53); timeout in
 * (0, 30 days]; at most 256 checks; the matrix times repeats at most 100000
 * runs. Float fields must stay in range once rounded to float (lr 1e-50 is
 * an error, not 0). JSON is checked more strictly than cJSON does: valid UTF-8,
 * no NUL bytes or "\u0000", RFC 8259 numbers (no "01" or "1."); a leading
 * UTF-8 BOM is allowed.
 *
 * Errors: SB_ERR_FORMAT when the document does not have a suite's shape
 * (malformed JSON with "line L, column C", wrong type, unknown, missing or
 * duplicate key, a key of the other optimizer or of another check kind);
 * SB_ERR_ARG when a value is not allowed (range, unknown name, a where value
 * not in the matrix, a check that could never fail: repeatable with repeats 1,
 * cross over an axis with one value in the matrix or left by its where);
 * SB_ERR_IO when the file cannot be read; SB_ERR_NOMEM.
 */
#ifndef SB_SUITE_H
#define SB_SUITE_H

#include "../engine/engine.h"
#include "diff.h"

typedef enum sb_check_kind {
    SB_CHECK_REPEATABLE = 0, /* all repeats of each cell agree */
    SB_CHECK_CROSS = 1,      /* cells that differ only along `axis` agree */
    SB_CHECK_BASELINE = 2    /* each covered cell matches its stored baseline */
} sb_check_kind;

const char *sb_check_kind_name(sb_check_kind k);

typedef enum sb_axis {
    SB_AXIS_SEED = 0, SB_AXIS_BACKEND = 1, SB_AXIS_MODE = 2, SB_AXIS_THREADS = 3,
    SB_AXIS_COUNT = 4
} sb_axis;

/* Axis names as used in "matrix" ("seeds", "backends", "modes", "threads") and,
 * singular, in "where" and "axis" ("seed", "backend", "mode", "threads"); both
 * spellings are accepted in "where" and "axis". */
const char *sb_axis_name(sb_axis a);  /* singular */
int sb_axis_parse(const char *name, sb_axis *out);

#define SB_MAX_AXIS_VALUES 32

/* A restriction of the cells a check covers: for each axis with n_values > 0,
 * the cell's value (printed as in run ids: seeds in decimal, modes and
 * backends by name, threads in decimal) must be one of values[].
 * In a suite, "where" is an object keyed by axis name (either spelling), each
 * value a scalar or a non-empty array of scalars (integers for seed and
 * threads, strings for backend and mode), each one of the matrix's values
 * for that axis, no duplicates. */
typedef struct sb_where {
    int n_values[SB_AXIS_COUNT];
    char values[SB_AXIS_COUNT][SB_MAX_AXIS_VALUES][32];
} sb_where;

typedef struct sb_check {
    char name[128];          /* "<case>/<name>" in a suite with cases */
    int case_index;          /* the case whose runs it covers; -1 in a suite without cases */
    sb_check_kind kind;
    sb_axis axis;            /* SB_CHECK_CROSS only */
    sb_tolerance expect;
    /* Baseline checks only ("fallback" in the suite): the tolerance used
     * instead of expect when the baseline's environment fingerprint differs
     * from the run's in a field that can change bits. */
    int has_fallback;
    sb_tolerance fallback;
    sb_where where;
} sb_check;

#define SB_MAX_CASES 32

typedef struct sb_suite {
    char *path;              /* as given to sb_suite_load (label for errors) */
    /* A suite may hold "cases": named variants, each the top-level document
     * with the case's sections merged over it (objects key by key, anything
     * else replaced), parsed and validated as a suite of its own. Run ids and
     * cells are then "<case>/<cell>", baselines live in <suite>/<case>/…, and
     * every check covers only its own case's runs. */
    int n_cases;
    char case_names[SB_MAX_CASES][64];
    struct sb_suite *cases[SB_MAX_CASES];
    char name[64];
    char description[256];
    sb_run_config base;      /* model, data, optim, steps, batch; matrix fields = first values */
    int n_seeds;    uint64_t seeds[SB_MAX_AXIS_VALUES];
    int n_backends; char backends[SB_MAX_AXIS_VALUES][16];
    int n_modes;    sb_mode modes[SB_MAX_AXIS_VALUES];
    int n_threads;  int threads[SB_MAX_AXIS_VALUES];
    int repeats;             /* >= 1 */
    double timeout;          /* seconds per run; default 600 */
    int perturb;
    int n_checks;
    sb_check *checks;
    char *text;              /* the file's bytes, NUL-terminated */
    size_t text_len;
    char sha256[65];         /* of text */
} sb_suite;

/* Loads, parses and validates. NULL on failure with err->msg of the form
 * "PATH: json.path: what is wrong" (one line). Free with sb_suite_free.
 * sb_suite_parse copies text (len bytes, need not be NUL-terminated) and
 * uses `label` where sb_suite_load uses PATH (and stores it in s->path). */
sb_suite *sb_suite_load(const char *path, sb_error *err);
/* Same, with data file paths (data.x, data.y, data.path) relative to
 * data_dir instead of the suite file's folder (NULL: that folder). A run
 * of a copied suite passes the original's folder (`train --suite-dir`).
 * sb_suite_parse resolves them against the working directory. */
sb_suite *sb_suite_load_dir(const char *path, const char *data_dir, sb_error *err);
/* The absolute folder a suite file sits in; 0 ok, -1 when it cannot be
 * resolved (missing file, path too long). */
int sb_suite_dir(const char *path, char *out, size_t n);
sb_suite *sb_suite_parse(const char *text, size_t len, const char *label, sb_error *err);
void sb_suite_free(sb_suite *s);

/* One run of the expanded matrix. */
typedef struct sb_run_spec {
    char id[128];            /* e.g. "seed1-blas-fast-t2-r0", or "<case>/seed1-…" */
    char cell[128];          /* the id without "-r<repeat>" */
    int repeat;
    int case_index;          /* -1 in a suite without cases */
    char case_name[64];
    sb_run_config cfg;       /* fully resolved */
} sb_run_spec;

/* Expands seeds × backends × modes × threads × repeats, in that nesting order
 * (repeats innermost). Returns the number of runs and sets *out (caller
 * frees with free()); -1 with *out = NULL on allocation failure or a suite
 * whose counts are out of range (only possible for a hand-built suite). */
int sb_suite_expand(const sb_suite *s, sb_run_spec **out);

/* The value of `axis` for a run config, printed as in ids/where ("1", "blas",
 * "fast", "2"). */
void sb_axis_value(const sb_run_config *c, sb_axis axis, char *buf, size_t n);
/* The case of a suite with cases by name, or -1. */
int sb_suite_find_case(const sb_suite *s, const char *name);
/* Whether a run is covered by a check: its case and its `where`. */
int sb_check_covers(const sb_check *c, const sb_run_spec *r);
/* Whether a run config is covered by `where`. */
int sb_where_matches(const sb_where *w, const sb_run_config *c);

#endif /* SB_SUITE_H */
