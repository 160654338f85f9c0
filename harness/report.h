/* report.h — the reports of a results folder: junit.xml for CI systems,
 * report.html for auditors (one self-contained, printable file), report.md
 * for pull requests (README "Reports").
 *
 * Every report is a pure function of the results folder: summary.json, the
 * runs' run.json (loss curves), their checkpoints (ULP histograms) and the
 * SHA-256 of every artifact. Nothing else goes in: no clock, no host name,
 * no absolute path, so `samebits report DIR` regenerates byte-identical
 * files any time, and `samebits run` calls the very same code.
 *
 * The loaded folder (sb_report) is shared by the three renderers
 * (report_junit.c, report_html.c, report_md.c); report.c loads it and
 * writes the files. summary.json is read as untrusted input (DESIGN.md §8):
 * only its skeleton is required (schema, suite, runs[] with id and status,
 * checks[] with name, status and comparisons[] with a, b and status); every
 * other field may be missing or of the wrong type and is then shown as "—".
 * Paths taken from it must be relative and free of ".." or they are not
 * opened.
 *
 * Not here: evaluating checks or attributing drift (checks.c, attrib.c:
 * their results arrive through summary.json), the terminal table
 * (summary.c).
 */
#ifndef SB_REPORT_H
#define SB_REPORT_H

#include "../engine/safetensors.h"

struct cJSON;

/* Caps on the work a report does (and on its size). */
#define SB_REPORT_MAX_HISTS 8        /* comparisons whose checkpoints are read for ULP histograms */
#define SB_REPORT_MAX_LOSS_CELLS 24  /* cells whose loss curves are drawn */
#define SB_REPORT_MAX_LOSS_RUNS 8    /* repeats overlaid per cell */
#define SB_REPORT_MAX_DETAILS 3      /* failing comparisons detailed per check */
#define SB_REPORT_MAX_FILE (256u << 20) /* summary.json / run.json read at most this many bytes */

/* ULP-distance buckets: 0 (equal), k = 1..64 for [2^(k-1), 2^k), and
 * SB_REPORT_ULP_NAN for a NaN met a number. */
#define SB_REPORT_ULP_NAN 65
#define SB_REPORT_ULP_BUCKETS 66
int sb_report_ulp_bucket(uint64_t ulp);

/* ---- a growable text buffer; an allocation failure is sticky (oom) ---- */
typedef struct sb_text {
    char *p;
    size_t len, cap;
    int oom;
} sb_text;

void sb_text_puts(sb_text *t, const char *s);
void sb_text_printf(sb_text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* s escaped for XML and HTML text and attribute values (& < > " ' and
 * newline/tab in attributes as character references). Invalid UTF-8 and
 * characters XML 1.0 forbids (controls other than tab, newline, CR; U+FFFE,
 * U+FFFF; C1 controls too) become U+FFFD. NULL appends "—". In text,
 * newline and tab are kept; in attributes they become references. */
void sb_text_xml(sb_text *t, const char *s);
void sb_text_xml_attr(sb_text *t, const char *s); /* the same, for attribute values */
/* s escaped for one cell of a Markdown table (GitHub flavour): Markdown
 * punctuation backslash-escaped, < > & as entities, newlines as spaces, the
 * same UTF-8 clean-up as sb_text_xml. NULL appends "—". */
void sb_text_md(sb_text *t, const char *s);
/* s as the inside of a code span in a Markdown table cell: | escaped, `
 * replaced by ', line breaks by spaces, the same UTF-8 clean-up. */
void sb_text_md_code(sb_text *t, const char *s);
void sb_text_free(sb_text *t);

/* ---- the loaded results folder ---- */

/* A cell's verdict for one check, in the matrix. */
enum { SB_REPORT_NOT_COVERED = 0, SB_REPORT_PASS = 1, SB_REPORT_FAIL = 2, SB_REPORT_ERROR = 3 };

typedef struct sb_report_artifact {
    char *path;              /* relative to the results folder (owned) */
    const char *kind;        /* "suite", "summary", "run record", "checkpoint", "trace", "log" */
    char sha256[65];         /* "" when it could not be read */
    long long bytes;         /* -1 when it could not be read */
    const char *note;        /* "matches summary.json", "DIFFERS from summary.json" (checkpoints
                                and the suite), "missing", "unreadable", or "" */
} sb_report_artifact;

typedef struct sb_report_losses {
    int run;                 /* index in summary.runs */
    int first_step;          /* losses[i] is the loss of step first_step + i + 1 */
    int n;
    double *v;               /* NaN where run.json holds null */
    char error[512];         /* why there are none ("" when loaded) */
} sb_report_losses;

typedef struct sb_report_hist_tensor {
    char name[256];
    char dtype[16];
    uint64_t numel, differing;
    uint64_t max_ulp;        /* UINT64_MAX: a NaN met a number */
    int elementwise;         /* F32/F64 of the same shape in both files: buckets are filled */
    uint64_t bucket[SB_REPORT_ULP_BUCKETS];
} sb_report_hist_tensor;

typedef struct sb_report_hist {
    int check, cmp;          /* indices in summary.checks and its comparisons */
    int n;
    sb_report_hist_tensor *t; /* sorted by name (as sb_diff_st) */
    int max_bucket;          /* highest non-empty finite bucket over all tensors */
    int has_nan;
    char error[512];         /* why no histogram ("" when computed) */
} sb_report_hist;

typedef struct sb_report {
    char dir[1024];
    struct cJSON *summary;   /* owned */
    const struct cJSON *runs, *checks, *environment; /* views into summary; environment may be NULL */
    int n_runs, n_checks;

    int n_cells;
    const char **cells;      /* cell ids in order of first appearance (strings of summary) */
    int *cell_of_run;        /* [n_runs] */
    unsigned char *matrix;   /* [n_cells * n_checks]: SB_REPORT_* verdict of check c for cell i */

    int n_artifacts;
    sb_report_artifact *artifacts;

    int n_losses;            /* runs of the first SB_REPORT_MAX_LOSS_CELLS cells */
    sb_report_losses *losses;
    int n_loss_cells;        /* cells 0 .. n_loss_cells-1 have their runs in losses[] */

    int n_hists;
    sb_report_hist *hists;
} sb_report;

/* Loads DIR/summary.json and everything the reports show. NULL on failure
 * with err->msg one line naming the file and the place ("res/summary.json:
 * runs[3].id: expected a string"): SB_ERR_IO (missing), SB_ERR_FORMAT
 * (corrupt), SB_ERR_NOMEM. A missing or corrupt run.json or checkpoint is
 * not a failure: the report says so where it would show it. Free with
 * sb_report_free (NULL is a no-op). */
sb_report *sb_report_load(const char *dir, sb_error *err);
void sb_report_free(sb_report *r);

/* Index of run `id` in summary.runs, or -1. */
int sb_report_find_run(const sb_report *r, const char *id);

/* How far the loaded loss curves of cell c (< n_loss_cells) are apart:
 * *runs curves loaded; over the steps a curve shares with the first one,
 * *first_at the first step where they differ (0 when they never do),
 * *max_delta the largest |difference| (a NaN against a number counts as
 * infinite) and *max_at the step where it is first reached. */
void sb_report_loss_spread(const sb_report *r, int c, int *runs, int *first_at, double *max_delta,
                           int *max_at);

/* Small accessors of summary.json values, tolerant of missing keys and
 * wrong types (NULL / the fallback). */
const char *sb_report_str(const struct cJSON *obj, const char *key);
int sb_report_num(const struct cJSON *obj, const char *key, double *out); /* 1 when a number */
/* A count or ULP distance for display: "1352", "NaN" for null, "—" when missing. */
void sb_report_fmt_count(const struct cJSON *obj, const char *key, char *buf, size_t n);
/* A number to 3 significant digits: "1.19e-07", "0.157", "—" when missing or null. */
void sb_report_fmt_num(const struct cJSON *obj, const char *key, char *buf, size_t n);
/* One-line summary of a failing comparison's attribution: "source: data/shuffle
 * (data.shuffle) at step 1 (+2 more)", "first divergence: …", the
 * attribution_error, or "" when there is nothing to say. */
void sb_report_source_str(const struct cJSON *cmp, char *buf, size_t n);
/* Counts of a check's comparisons by status. */
void sb_report_check_counts(const struct cJSON *check, int *pass, int *fail, int *error);
/* The failing comparison of a check with the largest max_ulp (null, a NaN
 * met a number, is the largest; ties: the first), or NULL. */
const struct cJSON *sb_report_worst_failing(const struct cJSON *check);
/* 1 when the run's status is "ok". */
int sb_report_run_ok(const struct cJSON *run);

/* ---- inline SVG charts (report_svg.c), for report.html ---- */
typedef struct sb_svg_series {
    const double *x, *y;     /* n points; non-finite ones are skipped */
    int n;
    const char *color;       /* "#rrggbb" */
    const char *dash;        /* stroke-dasharray, or NULL for a solid line */
    double width;
    const char *label;       /* legend */
} sb_svg_series;

/* A line chart of the series overlaid. logx: log2 x axis; logy: log10 y
 * axis (values <= 0 sit on the floor); each falls back to linear when no
 * value is positive. */
void sb_svg_line_chart(sb_text *t, const char *title, const char *xlabel, const char *ylabel,
                       const sb_svg_series *s, int ns, int logx, int logy);
/* One row per tensor: its elements bucketed by log2 of the ULP distance. */
void sb_svg_ulp_hist(sb_text *t, const sb_report_hist *h, const char *title);

/* ---- renderers: a NUL-terminated text in *out (caller frees) ---- */
sb_status sb_report_junit(const sb_report *r, char **out, size_t *len, sb_error *err);
sb_status sb_report_html(const sb_report *r, char **out, size_t *len, sb_error *err);
sb_status sb_report_md(const sb_report *r, char **out, size_t *len, sb_error *err);

/* Loads DIR and writes DIR/junit.xml, DIR/report.html and DIR/report.md,
 * each atomically. overwrite == 0 fails with SB_ERR_EXISTS (naming the file)
 * before writing anything when one of them exists. Never touches any other
 * file of DIR. */
sb_status sb_report_write(const char *dir, int overwrite, sb_error *err);

/* `samebits report RESULTS_DIR [--force]` (cmd_report.c). */
int sb_cmd_report(int argc, char **argv);

#endif /* SB_REPORT_H */
