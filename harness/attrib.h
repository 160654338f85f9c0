/* attrib.h — drift attribution: which op, stage and step two runs that
 * should match first part ways, which ops are the sources of the difference
 * and which only propagate it, and how the difference grows (DESIGN.md §5).
 *
 * Two traces (engine/trace.h) are walked record by record in execution
 * order. Records are matched by position; a pair must have the same step,
 * stage and op name (op ids are per file and are not compared), else the
 * traces differ in structure (different models, step counts, …): the walk
 * stops there and says so. For each pair whose OUT hashes differ:
 *   - a **source** when its IN hashes agree (the op itself, or a random
 *     stream it draws from, made the difference); a **propagated** difference
 *     when its inputs already differ;
 *   - the first such pair is the first divergence;
 *   - an optimizer-stage pair means the weights (or the optimizer state)
 *     differ from that step on; init-stage pairs too: they are the weights
 *     before step 1, reported as step 0.
 * Where both records carry snapshot values (same element count), the values
 * are compared too: per op, the max abs / rel / ULP error and the step of
 * the worst ULP error; per snapshot step, the max abs / ULP difference of
 * the optimizer-stage outputs (the weights after that step): the growth.
 * Errors follow diff.h: abs and rel over finite pairs, ULP by
 * sb_ulp_distance_f32 (UINT64_MAX when a NaN meets a number).
 *
 * Not here: reading or writing traces (engine/trace.c), deciding which
 * comparisons need attribution (checks.c), printing tables (summary.c,
 * cmd_trace_diff.c); only the JSON form of a result is built here, so that
 * summary.json and `trace-diff --json` cannot drift apart.
 */
#ifndef SB_ATTRIB_H
#define SB_ATTRIB_H

#include "../engine/trace.h"

typedef enum sb_drift_kind { SB_DRIFT_SOURCE = 0, SB_DRIFT_PROPAGATED = 1 } sb_drift_kind;
const char *sb_drift_kind_name(sb_drift_kind k); /* "source" / "propagated" */

#define SB_ATTRIB_OP_NAME 128 /* trace op names are at most 127 bytes */

/* An op and the steps at which something happened to it (a source of drift,
 * or a recheck flag): the first such step and how many distinct steps. */
typedef struct sb_attrib_op {
    char op[SB_ATTRIB_OP_NAME];
    sb_stage stage;
    uint32_t first_step;
    uint32_t steps;
} sb_attrib_op;

/* Largest error of one op's snapshot values along the walk. */
typedef struct sb_attrib_op_error {
    char op[SB_ATTRIB_OP_NAME];
    sb_stage stage;
    double max_abs, max_rel;   /* over finite pairs */
    uint64_t max_ulp;          /* UINT64_MAX: a NaN met a number */
    uint32_t step;             /* where max_ulp was first reached */
    uint64_t compared;         /* elements compared over all its snapshots */
} sb_attrib_op_error;

/* The weights' difference after one snapshot step. */
typedef struct sb_attrib_growth {
    uint32_t step;
    double max_abs;
    uint64_t max_ulp;
} sb_attrib_growth;

/* A record's place, for the first divergence and structure mismatches. */
typedef struct sb_attrib_place {
    size_t record;             /* index in execution order */
    uint32_t step;
    sb_stage stage;
    char op[SB_ATTRIB_OP_NAME];
} sb_attrib_place;

typedef struct sb_attribution {
    int agree;                 /* same structure and every OUT hash equal */
    size_t records;            /* record pairs walked */

    int has_divergence;
    sb_attrib_place first;     /* the first pair whose OUT differs */
    sb_drift_kind first_kind;

    int n_sources;             /* in order of first appearance */
    sb_attrib_op *sources;

    int weights_differ;        /* an optimizer- or init-stage OUT differs */
    uint32_t weights_first_differ_step; /* 0 = at init */

    int n_growth;              /* snapshot steps, increasing */
    sb_attrib_growth *growth;

    int n_op_errors;           /* ops whose snapshot values differ, in order of first appearance */
    sb_attrib_op_error *op_errors;

    int structure_differs;     /* the walk stopped early */
    sb_attrib_place structure_at; /* A's record there (op "" when A ended) */
    char structure_msg[640];   /* "record 41: A has step 3 fc1/matmul.fwd (forward), B has …" */

    char note[256];            /* a sentence when the result needs one ("" otherwise) */
} sb_attribution;

/* Walks traces a and b. out is filled (free its arrays with
 * sb_attribution_free); on failure (only SB_ERR_NOMEM) out holds nothing to
 * free. A structure mismatch is a result, not an error. */
sb_status sb_attrib_compare(const sb_trace *a, const sb_trace *b, sb_attribution *out,
                            sb_error *err);
void sb_attribution_free(sb_attribution *x); /* frees the arrays, not x; NULL is a no-op */

/* Reads both traces then sb_attrib_compare. On a missing or corrupt file,
 * err->msg names the file and the place (from sb_trace_read). */
sb_status sb_attrib_files(const char *path_a, const char *path_b, sb_attribution *out,
                          sb_error *err);

/* The ops of one trace flagged SB_TRACE_RECHECK_DIFFERS (nondeterministic
 * when executed twice on the same inputs), in order of first appearance.
 * *ops is malloc'ed (caller frees; NULL when *n is 0). */
sb_status sb_attrib_nondeterministic(const sb_trace *t, sb_attrib_op **ops, int *n,
                                     sb_error *err);

/* JSON forms (cJSON), as summary.json and `trace-diff --json` write them
 * (README "summary.json"): a list of ops [{"op", "stage", "first_step",
 * "steps"}] (a new array, NULL when out of memory), and the attribution's
 * keys added to obj: first_divergence, attribution_note (when there is one),
 * sources, weights_first_differ_at_step, growth, op_errors (when asked),
 * structure_mismatch. */
struct cJSON;
struct cJSON *sb_attrib_ops_json(const sb_attrib_op *ops, int n);
void sb_attribution_add_json(struct cJSON *obj, const sb_attribution *x, int with_op_errors);

/* The trace file of a run: ARG itself when it is a file, ARG/trace.sbt when
 * it is a folder. */
void sb_trace_path_of(const char *arg, char *out, size_t n);

/* ---- subcommand (cmd_trace_diff.c) ---- */
int sb_cmd_trace_diff(int argc, char **argv);

#endif /* SB_ATTRIB_H */
