/* test_attrib.c — tests of drift attribution (harness/attrib.c), of its use in
 * check evaluation and summary.json (checks.c, summary.c), and of the
 * `samebits trace-diff` command.
 *
 * Traces are synthetic, written with the trace writer API into a scratch
 * folder: a small "training" of a few ops per step whose records carry the
 * hashes of their real inputs, so that a difference injected into trace B at
 * one op flows on to every op that reads it, as in a real run. The CLI
 * cases find the samebits binary in SB_BIN (set by tests/attrib.cmake).
 *
 * Not tested here: the trace file format itself (engine/trace.c's tests).
 */
#include "../harness/attrib.h"
#include "../harness/harness.h"
#include "sb_test.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- scratch folder ----------------------------------------------------- */

static char scratch[64];

static void scratch_cleanup(void) { sb_rm_rf(scratch); }

static const char *scratch_dir(void) {
    if (!scratch[0]) {
        snprintf(scratch, sizeof scratch, "/tmp/sb_test_attrib_XXXXXX");
        SB_ASSERT(mkdtemp(scratch));
        atexit(scratch_cleanup);
    }
    return scratch;
}

/* A fresh path (or folder, made) under the scratch folder. */
static void scratch_path(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", scratch_dir(), name);
}

/* ---- a synthetic training trace ----------------------------------------- */

/* Ops of each step, in execution order, and which outputs each one reads.
 * DATASET is data/source's output (step 0), WEIGHTS the latest of
 * init/params (step 0) and sgd/update. fc1/dropout.mask reads no data: it
 * only draws random numbers, like an unseeded stream would. */
enum { O_SHUFFLE, O_BATCH, O_MASK, O_FWD, O_LOSS, O_BGRAD, O_WGRAD, O_UPDATE, N_STEP_OPS,
       DATASET = N_STEP_OPS, WEIGHTS, N_SLOTS };
static const struct {
    const char *name;
    sb_stage stage;
    int in[3]; /* slots read, -1 = none */
} STEP_OPS[N_STEP_OPS] = {
    [O_SHUFFLE] = {"data/shuffle", SB_STAGE_DATA_SHUFFLE, {DATASET, -1, -1}},
    [O_BATCH] = {"data/batch", SB_STAGE_DATA_BATCH, {O_SHUFFLE, -1, -1}},
    [O_MASK] = {"fc1/dropout.mask", SB_STAGE_FORWARD, {-1, -1, -1}},
    [O_FWD] = {"fc1/matmul.fwd", SB_STAGE_FORWARD, {O_BATCH, WEIGHTS, O_MASK}},
    [O_LOSS] = {"loss/xent", SB_STAGE_LOSS, {O_FWD, -1, -1}},
    [O_BGRAD] = {"fc1/bias.grad", SB_STAGE_BACKWARD, {O_LOSS, -1, -1}},
    [O_WGRAD] = {"fc1/matmul.grad", SB_STAGE_BACKWARD, {O_LOSS, O_BATCH, -1}},
    [O_UPDATE] = {"sgd/update", SB_STAGE_OPTIMIZER, {O_BGRAD, O_WGRAD, WEIGHTS}},
};

/* (op, steps from..to): in trace B, that op's output differs there (noise),
 * or the record carries the recheck flag (flags). */
typedef struct op_steps {
    const char *op;
    uint32_t from, to;
} op_steps;

typedef struct gen {
    uint32_t steps;
    op_steps noise[4];
    op_steps flags[4];
    const char *extra_op; /* an op of another model, emitted after fc1/matmul.fwd */
} gen;

static int in_list(const op_steps *l, const char *op, uint32_t step) {
    for (int i = 0; i < 4 && l[i].op; i++)
        if (!strcmp(l[i].op, op) && step >= l[i].from && step <= l[i].to) return 1;
    return 0;
}

static int is_snapshot(uint32_t step, uint32_t last) {
    return step == last || (step > 0 && (step & (step - 1)) == 0);
}

typedef struct salted { /* hashed as bytes: no padding */
    uint32_t op, step;
    sb_hash128 in;
    uint32_t salt, zero;
} salted;

/* Writes trace `name`: trace A when noisy is 0 (no noise), else B. The
 * weights snapshot of sgd/update is {1, 2}, shifted by `step` ULPs in B
 * from the first step whose update reads anything that differs: so the
 * growth at snapshot step s is exactly s ULP, max abs s * 2^-22. */
static int write_gen(const char *path, const gen *g, int noisy) {
    sb_error err = {0};
    sb_trace_writer *w = sb_trace_writer_new(path, &err);
    if (!w) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    sb_hash128 cur[N_SLOTS];
    int tainted[N_SLOTS] = {0};
    memset(cur, 0, sizeof cur);
    /* step 0: the dataset and the initial weights */
    const char *s0[2] = {"data/source", "init/params"};
    sb_stage st0[2] = {SB_STAGE_DATA_SOURCE, SB_STAGE_INIT};
    for (int k = 0; k < 2; k++) {
        salted h = {100 + (uint32_t)k, 0, {0, 0}, noisy && in_list(g->noise, s0[k], 0) ? 7 : 0, 0};
        sb_trace_record r = {.step = 0, .stage = (uint16_t)st0[k], .n_out = 8};
        r.op = sb_trace_op(w, s0[k], st0[k]);
        r.out = sb_hash_bytes(&h, sizeof h);
        sb_trace_emit(w, &r, NULL);
        cur[k ? WEIGHTS : DATASET] = r.out;
        tainted[k ? WEIGHTS : DATASET] = h.salt != 0;
    }
    for (uint32_t step = 1; step <= g->steps; step++) {
        for (int o = 0; o < N_STEP_OPS; o++) {
            sb_hash128 ins[3];
            int n_in = 0, taint = 0;
            for (int k = 0; k < 3; k++)
                if (STEP_OPS[o].in[k] >= 0) {
                    ins[n_in++] = cur[STEP_OPS[o].in[k]];
                    taint |= tainted[STEP_OPS[o].in[k]];
                }
            sb_trace_record r = {.step = step, .stage = (uint16_t)STEP_OPS[o].stage, .n_out = 8};
            r.op = sb_trace_op(w, STEP_OPS[o].name, STEP_OPS[o].stage);
            r.in = n_in ? sb_hash_combine(ins, n_in) : (sb_hash128){0, 0};
            if (noisy && in_list(g->flags, STEP_OPS[o].name, step))
                r.flags = SB_TRACE_RECHECK_DIFFERS;
            salted h = {(uint32_t)o, step, r.in,
                        noisy && in_list(g->noise, STEP_OPS[o].name, step) ? 1000 + step : 0, 0};
            taint |= h.salt != 0;
            float v[2] = {1.0f, 2.0f};
            const float *vals = NULL;
            if (o == O_UPDATE && is_snapshot(step, g->steps)) {
                if (taint) { /* step ULPs up: exact, as 1 and 2 have 23 free mantissa bits */
                    v[0] += (float)step * 0x1p-23f;
                    v[1] += (float)step * 0x1p-22f;
                }
                r.n_out = 2;
                vals = v;
                r.out = sb_hash_bytes(v, sizeof v);
            } else {
                r.out = sb_hash_bytes(&h, sizeof h);
            }
            sb_trace_stats(v, 2, &r.out_l2, &r.out_maxabs);
            sb_trace_emit(w, &r, vals);
            cur[o] = r.out;
            tainted[o] = taint;
            if (o == O_UPDATE) {
                cur[WEIGHTS] = r.out;
                tainted[WEIGHTS] = taint;
            }
            if (o == O_FWD && g->extra_op && noisy) {
                sb_trace_record x = {.step = step, .stage = SB_STAGE_FORWARD, .n_out = 8,
                                     .in = r.out, .out = r.out};
                x.op = sb_trace_op(w, g->extra_op, SB_STAGE_FORWARD);
                sb_trace_emit(w, &x, NULL);
            }
        }
    }
    if (sb_trace_writer_close(w, "{\"id\": \"synthetic\"}", &err) != SB_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Writes A (clean, a_steps) and B (g) as scratch/<tag>_a.sbt, _b.sbt and
 * walks them. */
static int attribute(const char *tag, const gen *g, uint32_t a_steps, sb_attribution *x) {
    char pa[256], pb[256], na[64], nb[64];
    snprintf(na, sizeof na, "%s_a.sbt", tag);
    snprintf(nb, sizeof nb, "%s_b.sbt", tag);
    scratch_path(pa, sizeof pa, na);
    scratch_path(pb, sizeof pb, nb);
    gen ga = {.steps = a_steps ? a_steps : g->steps};
    if (write_gen(pa, &ga, 0) != 0 || write_gen(pb, g, 1) != 0) return -1;
    sb_error err = {0};
    if (sb_attrib_files(pa, pb, x, &err) != SB_OK) {
        fprintf(stderr, "attrib: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static const sb_attrib_op *find_op(const sb_attrib_op *l, int n, const char *op) {
    for (int i = 0; i < n; i++)
        if (!strcmp(l[i].op, op)) return &l[i];
    return NULL;
}

/* ---- the walk ----------------------------------------------------------- */

static int identical_traces_should_agree(void) {
    gen g = {.steps = 10};
    sb_attribution x;
    CHECK(attribute("same", &g, 0, &x) == 0, "attribute");
    CHECK(x.agree && !x.has_divergence && !x.structure_differs, "agree %d div %d struct %d",
          x.agree, x.has_divergence, x.structure_differs);
    CHECK(x.n_sources == 0 && !x.weights_differ && x.n_op_errors == 0, "sources %d",
          x.n_sources);
    CHECK(x.records == 2 + 10 * N_STEP_OPS, "walked %zu records", x.records);
    /* snapshot steps 1, 2, 4, 8 and the last (10), all without difference */
    static const uint32_t snaps[] = {1, 2, 4, 8, 10};
    CHECK(x.n_growth == 5, "%d growth rows, expected 5", x.n_growth);
    for (int i = 0; i < 5; i++)
        CHECK(x.growth[i].step == snaps[i] && x.growth[i].max_abs == 0 && x.growth[i].max_ulp == 0,
              "row %d: step %u abs %g ulp %llu", i, x.growth[i].step, x.growth[i].max_abs,
              (unsigned long long)x.growth[i].max_ulp);
    sb_attribution_free(&x);
    return 0;
}

static int source_in_the_middle_should_be_found_and_later_differences_called_propagated(void) {
    gen g = {.steps = 10, .noise = {{"fc1/bias.grad", 3, 3}}};
    sb_attribution x;
    CHECK(attribute("mid", &g, 0, &x) == 0, "attribute");
    CHECK(!x.agree && x.has_divergence, "no divergence found");
    CHECK(x.first.step == 3 && x.first.stage == SB_STAGE_BACKWARD &&
              !strcmp(x.first.op, "fc1/bias.grad") && x.first_kind == SB_DRIFT_SOURCE,
          "first divergence: step %u stage %d op %s kind %s", x.first.step, x.first.stage,
          x.first.op, sb_drift_kind_name(x.first_kind));
    CHECK(x.first.record == 2 + 2 * N_STEP_OPS + O_BGRAD, "record %zu", x.first.record);
    /* sgd/update at step 3 and every op reading the weights later differ only
     * because their inputs do: propagated, so the one source is the only one */
    CHECK(x.n_sources == 1, "%d sources, expected only fc1/bias.grad", x.n_sources);
    CHECK(!strcmp(x.sources[0].op, "fc1/bias.grad") && x.sources[0].stage == SB_STAGE_BACKWARD &&
              x.sources[0].first_step == 3 && x.sources[0].steps == 1,
          "source %s first %u steps %u", x.sources[0].op, x.sources[0].first_step,
          x.sources[0].steps);
    CHECK(x.weights_differ && x.weights_first_differ_step == 3, "weights differ at %u",
          x.weights_first_differ_step);
    CHECK(!x.structure_differs && x.note[0] == 0, "note: %s", x.note);
    sb_attribution_free(&x);
    return 0;
}

static int two_independent_sources_should_both_be_listed_with_counts_and_first_steps(void) {
    /* an unseeded shuffle at steps 2..4 and an unseeded dropout mask at 5..9:
     * both read only inputs that agree, so both are sources every time */
    gen g = {.steps = 12, .noise = {{"data/shuffle", 2, 4}, {"fc1/dropout.mask", 5, 9}}};
    sb_attribution x;
    CHECK(attribute("two", &g, 0, &x) == 0, "attribute");
    CHECK(x.first.step == 2 && !strcmp(x.first.op, "data/shuffle") &&
              x.first.stage == SB_STAGE_DATA_SHUFFLE && x.first_kind == SB_DRIFT_SOURCE,
          "first: step %u %s", x.first.step, x.first.op);
    CHECK(x.n_sources == 2, "%d sources, expected 2", x.n_sources);
    CHECK(!strcmp(x.sources[0].op, "data/shuffle") && x.sources[0].first_step == 2 &&
              x.sources[0].steps == 3 && x.sources[0].stage == SB_STAGE_DATA_SHUFFLE,
          "shuffle: first %u steps %u", x.sources[0].first_step, x.sources[0].steps);
    CHECK(!strcmp(x.sources[1].op, "fc1/dropout.mask") && x.sources[1].first_step == 5 &&
              x.sources[1].steps == 5 && x.sources[1].stage == SB_STAGE_FORWARD,
          "mask: %s first %u steps %u", x.sources[1].op, x.sources[1].first_step,
          x.sources[1].steps);
    CHECK(x.weights_first_differ_step == 2, "weights differ at %u", x.weights_first_differ_step);
    sb_attribution_free(&x);
    return 0;
}

static int weights_should_first_differ_at_the_first_optimizer_step_that_differs(void) {
    gen g = {.steps = 10, .noise = {{"data/batch", 6, 6}}};
    sb_attribution x;
    CHECK(attribute("wts", &g, 0, &x) == 0, "attribute");
    CHECK(x.weights_differ && x.weights_first_differ_step == 6, "weights differ %d at %u",
          x.weights_differ, x.weights_first_differ_step);
    CHECK(x.first.step == 6 && x.first.stage == SB_STAGE_DATA_BATCH, "first at %u", x.first.step);
    sb_attribution_free(&x);
    /* a different initialisation: the weights differ before any step */
    gen gi = {.steps = 4, .noise = {{"init/params", 0, 0}}};
    CHECK(attribute("init", &gi, 0, &x) == 0, "attribute");
    CHECK(x.weights_differ && x.weights_first_differ_step == 0 && x.first.stage == SB_STAGE_INIT,
          "weights differ %d at %u", x.weights_differ, x.weights_first_differ_step);
    CHECK(x.n_sources == 1 && !strcmp(x.sources[0].op, "init/params"), "sources %d",
          x.n_sources);
    sb_attribution_free(&x);
    return 0;
}

static int growth_should_be_computed_from_the_snapshot_values(void) {
    gen g = {.steps = 10, .noise = {{"fc1/bias.grad", 3, 3}}};
    sb_attribution x;
    CHECK(attribute("growth", &g, 0, &x) == 0, "attribute");
    /* B's weights are `step` ULPs above A's from step 3 on: values 1 and 2,
     * whose ULPs are 2^-23 and 2^-22, so max abs = step * 2^-22 exactly */
    static const uint32_t steps[] = {1, 2, 4, 8, 10};
    static const uint64_t ulps[] = {0, 0, 4, 8, 10};
    CHECK(x.n_growth == 5, "%d rows", x.n_growth);
    for (int i = 0; i < 5; i++) {
        double abs_want = (double)ulps[i] * 0x1p-22;
        CHECK(x.growth[i].step == steps[i] && x.growth[i].max_ulp == ulps[i] &&
                  x.growth[i].max_abs == abs_want,
              "row %d: step %u ulp %llu abs %a, expected step %u ulp %llu abs %a", i,
              x.growth[i].step, (unsigned long long)x.growth[i].max_ulp, x.growth[i].max_abs,
              steps[i], (unsigned long long)ulps[i], abs_want);
    }
    sb_attribution_free(&x);
    return 0;
}

/* One record with values; out hash from the values, in hash from in_tag. */
static void emit_vals(sb_trace_writer *w, uint32_t step, sb_stage st, const char *op, int in_tag,
                      const float *v, uint32_t n) {
    sb_trace_record r = {.step = step, .stage = (uint16_t)st, .n_out = n};
    r.op = sb_trace_op(w, op, st);
    r.in = sb_hash_bytes(&in_tag, sizeof in_tag);
    r.out = sb_hash_bytes(v, n * sizeof *v);
    sb_trace_stats(v, n, &r.out_l2, &r.out_maxabs);
    sb_trace_emit(w, &r, v);
}

static int per_op_errors_should_report_max_abs_rel_and_ulp_with_their_step(void) {
    char pa[256], pb[256];
    scratch_path(pa, sizeof pa, "operr_a.sbt");
    scratch_path(pb, sizeof pb, "operr_b.sbt");
    sb_error err = {0};
    for (int side = 0; side < 2; side++) {
        sb_trace_writer *w = sb_trace_writer_new(side ? pb : pa, &err);
        CHECK(w, "%s", err.msg);
        /* fc1/matmul.fwd: step 1 one value of A 1 ULP off B's -2.0 (abs 2^-22,
         * rel 2^-23); step 2 one 3 ULP off B's 4.0 (abs 3*2^-21, rel 3*2^-23);
         * relative to B, so B holds the round values */
        float s1[3] = {1.0f, -2.0f, 0.5f}, s2[2] = {4.0f, 0.0f};
        if (!side) {
            s1[1] = -2.0f - 0x1p-22f;
            s2[0] = 4.0f + 3 * 0x1p-21f;
        }
        emit_vals(w, 1, SB_STAGE_FORWARD, "fc1/matmul.fwd", 1, s1, 3);
        float same[2] = {5.0f, 6.0f};
        emit_vals(w, 1, SB_STAGE_LOSS, "loss/xent", 2, same, 2);
        emit_vals(w, 2, SB_STAGE_FORWARD, "fc1/matmul.fwd", 3, s2, 2);
        /* fc2/bias.grad: a value that is exactly 0 in B: rel error is +Inf */
        float g[1] = {side ? 0.0f : 0x1p-20f};
        emit_vals(w, 2, SB_STAGE_BACKWARD, "fc2/bias.grad", 4, g, 1);
        CHECK(sb_trace_writer_close(w, NULL, &err) == SB_OK, "%s", err.msg);
    }
    sb_attribution x;
    CHECK(sb_attrib_files(pa, pb, &x, &err) == SB_OK, "%s", err.msg);
    CHECK(x.n_op_errors == 2, "%d ops with errors, expected 2 (loss/xent agrees)", x.n_op_errors);
    const sb_attrib_op_error *e = &x.op_errors[0];
    CHECK(!strcmp(e->op, "fc1/matmul.fwd") && e->stage == SB_STAGE_FORWARD, "op %s", e->op);
    CHECK(e->max_abs == 3 * 0x1p-21 && e->max_rel == 3 * 0x1p-23 && e->max_ulp == 3 &&
              e->step == 2 && e->compared == 5,
          "abs %a rel %a ulp %llu step %u compared %llu", e->max_abs, e->max_rel,
          (unsigned long long)e->max_ulp, e->step, (unsigned long long)e->compared);
    e = &x.op_errors[1];
    CHECK(!strcmp(e->op, "fc2/bias.grad") && e->max_abs == 0x1p-20 && isinf(e->max_rel) &&
              e->max_ulp == 0x35800000u && e->step == 2,
          "%s abs %a rel %g ulp %llu", e->op, e->max_abs, e->max_rel,
          (unsigned long long)e->max_ulp);
    /* first divergence at step 1 is a source: its inputs (tag 1) agree */
    CHECK(x.first.step == 1 && x.first_kind == SB_DRIFT_SOURCE, "first %u", x.first.step);
    sb_attribution_free(&x);
    return 0;
}

static int structure_mismatch_should_be_reported_and_stop_the_walk(void) {
    /* B's model has an extra layer: the op sequences part at step 1 */
    gen g = {.steps = 6, .extra_op = "fc2/matmul.fwd"};
    sb_attribution x;
    CHECK(attribute("model", &g, 0, &x) == 0, "attribute");
    size_t at = 2 + O_FWD + 1;
    CHECK(!x.agree && x.structure_differs && x.structure_at.record == at && x.records == at,
          "structure %d at %zu (walked %zu), expected record %zu", x.structure_differs,
          x.structure_at.record, x.records, at);
    CHECK(strstr(x.structure_msg, "loss/xent") && strstr(x.structure_msg, "fc2/matmul.fwd"),
          "message: %s", x.structure_msg);
    CHECK(strstr(x.note, "structure"), "note: %s", x.note);
    sb_attribution_free(&x);
    /* B runs longer: the walk stops where A ends, after finding the drift */
    gen gl = {.steps = 8, .noise = {{"fc1/bias.grad", 2, 2}}};
    CHECK(attribute("longer", &gl, 5, &x) == 0, "attribute");
    CHECK(x.structure_differs && strstr(x.structure_msg, "A ends after") &&
              x.structure_at.op[0] == 0 && x.has_divergence && x.first.step == 2,
          "structure %d: %s", x.structure_differs, x.structure_msg);
    sb_attribution_free(&x);
    return 0;
}

static int recheck_flagged_ops_should_be_listed_with_first_step_and_count(void) {
    char p[256];
    scratch_path(p, sizeof p, "recheck.sbt");
    gen g = {.steps = 9, .flags = {{"fc1/bias.grad", 2, 3}, {"fc1/bias.grad", 7, 7},
                                   {"loss/xent", 5, 9}}};
    CHECK(write_gen(p, &g, 1) == 0, "write");
    sb_error err = {0};
    sb_trace *t = sb_trace_read(p, &err);
    CHECK(t, "%s", err.msg);
    sb_attrib_op *ops = NULL;
    int n = 0;
    CHECK(sb_attrib_nondeterministic(t, &ops, &n, &err) == SB_OK, "%s", err.msg);
    sb_trace_free(t);
    const sb_attrib_op *b = find_op(ops, n, "fc1/bias.grad"), *l = find_op(ops, n, "loss/xent");
    int ok = n == 2 && b && l && b == &ops[0] && b->first_step == 2 && b->steps == 3 &&
             b->stage == SB_STAGE_BACKWARD && l->first_step == 5 && l->steps == 5;
    if (!ok)
        for (int i = 0; i < n; i++)
            fprintf(stderr, "  %s first %u steps %u\n", ops[i].op, ops[i].first_step, ops[i].steps);
    free(ops);
    CHECK(ok, "%d flagged ops, expected fc1/bias.grad (2, 3 steps) and loss/xent (5, 5 steps)", n);
    /* an op run twice within a step (two micro-batches) counts that step once */
    scratch_path(p, sizeof p, "recheck_twice.sbt");
    sb_trace_writer *w = sb_trace_writer_new(p, &err);
    CHECK(w, "%s", err.msg);
    static const uint32_t steps[] = {2, 2, 3};
    for (int i = 0; i < 3; i++) {
        sb_trace_record r = {.step = steps[i], .stage = SB_STAGE_BACKWARD, .n_out = 1,
                             .flags = SB_TRACE_RECHECK_DIFFERS};
        r.op = sb_trace_op(w, "fc1/bias.grad", SB_STAGE_BACKWARD);
        sb_trace_emit(w, &r, NULL);
    }
    CHECK(sb_trace_writer_close(w, NULL, &err) == SB_OK, "%s", err.msg);
    CHECK((t = sb_trace_read(p, &err)), "%s", err.msg);
    sb_status st = sb_attrib_nondeterministic(t, &ops, &n, &err);
    sb_trace_free(t);
    ok = st == SB_OK && n == 1 && ops[0].first_step == 2 && ops[0].steps == 2;
    if (!ok && st == SB_OK && n == 1) fprintf(stderr, "counted %u steps\n", ops[0].steps);
    free(ops);
    CHECK(ok, "an op flagged twice in step 2 and once in 3 should count 2 steps");
    return 0;
}

static int corrupt_or_missing_trace_should_give_an_error_not_a_crash(void) {
    char good[256], bad[256], missing[256];
    scratch_path(good, sizeof good, "good.sbt");
    scratch_path(missing, sizeof missing, "missing.sbt");
    gen g = {.steps = 4};
    CHECK(write_gen(good, &g, 0) == 0, "write");
    size_t len;
    sb_error err = {0};
    char *bytes = sb_read_file(good, 1 << 24, &len, &err);
    CHECK(bytes && len > 100, "read back");
    sb_attribution x;
    /* missing, truncated at several places, wrong magic, a record count
     * past the end of the file */
    struct { const char *what; size_t keep; size_t poke_at; uint64_t poke; } cases[] = {
        {"truncated header", 20, 0, 0},  {"truncated records", 100, 0, 0},
        {"cut footer", len - 3, 0, 0},   {"bad magic", len, 0, 0x4141414141414141ull},
        {"huge count", len, 16, 1ull << 40},
    };
    CHECK(sb_attrib_files(good, missing, &x, &err) != SB_OK && strstr(err.msg, missing),
          "missing file: %s", err.msg);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char name[64];
        snprintf(name, sizeof name, "bad%zu.sbt", c);
        scratch_path(bad, sizeof bad, name);
        char *copy = malloc(len);
        CHECK(copy, "oom");
        memcpy(copy, bytes, len);
        if (cases[c].poke) memcpy(copy + cases[c].poke_at, &cases[c].poke, 8);
        sb_status st = sb_write_file_atomic(bad, copy, cases[c].keep, 1, &err);
        free(copy);
        CHECK(st == SB_OK, "%s", err.msg);
        memset(&err, 0, sizeof err);
        CHECK(sb_attrib_files(good, bad, &x, &err) != SB_OK, "%s: accepted", cases[c].what);
        CHECK(strstr(err.msg, bad), "%s: error does not name the file: %s", cases[c].what, err.msg);
        CHECK(sb_attrib_files(bad, good, &x, &err) != SB_OK, "%s as A: accepted", cases[c].what);
    }
    free(bytes);
    return 0;
}

/* ---- checks, summary.json and the verdict table ------------------------- */

static const char SUITE_JSON[] =
    "{\"name\": \"attrib\", \"model\": {\"kind\": \"mlp\", \"hidden\": [4]},"
    " \"data\": {\"kind\": \"blobs\", \"samples\": 64, \"features\": 4, \"classes\": 2},"
    " \"train\": {\"steps\": 10, \"batch\": 8, \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},"
    " \"repeats\": 2,"
    " \"checks\": [{\"name\": \"bits\", \"kind\": \"repeatable\", \"expect\": \"bitwise\"},"
    "   {\"name\": \"close\", \"kind\": \"repeatable\", \"expect\": {\"atol\": 0}},"
    "   {\"name\": \"base\", \"kind\": \"baseline\", \"expect\": \"bitwise\"}]}";

/* Two runs of one cell, r0 clean and r1 with gen's noise and flags, whose
 * weights differ by one ULP; a baseline that is r0's checkpoint (with r0's
 * trace beside it when baseline_trace). */
typedef struct fixture {
    char dir[256], baselines[300], trace[2][400];
    sb_suite *s;
    sb_run_spec *specs;
    int n;
    sb_run_result res[2];
    sb_check_result *checks;
} fixture;

static int write_weights(const char *path, float w1) {
    sb_error err = {0};
    float v[2] = {w1, 2.0f};
    int64_t shape[1] = {2};
    sb_st_writer *w = sb_st_writer_new();
    sb_status st = w ? sb_st_writer_add(w, "w", SB_DT_F32, 1, shape, v, &err) : SB_ERR_NOMEM;
    if (st == SB_OK) st = sb_st_writer_save(w, path, 0, &err);
    sb_st_writer_free(w);
    if (st != SB_OK) fprintf(stderr, "%s: %s\n", path, err.msg);
    return st == SB_OK ? 0 : -1;
}

static int fixture_make(fixture *f, const char *tag, const gen *g, int baseline_trace) {
    sb_error err = {0};
    memset(f, 0, sizeof *f);
    scratch_path(f->dir, sizeof f->dir, tag);
    snprintf(f->baselines, sizeof f->baselines, "%s/baselines", f->dir);
    f->s = sb_suite_parse(SUITE_JSON, strlen(SUITE_JSON), "attrib.json", &err);
    if (!f->s || (f->n = sb_suite_expand(f->s, &f->specs)) != 2) {
        fprintf(stderr, "suite: %s\n", err.msg);
        return -1;
    }
    char path[600];
    for (int i = 0; i < 2; i++) {
        sb_run_result *r = &f->res[i];
        r->spec = &f->specs[i];
        r->status = SB_RUN_OK;
        snprintf(r->dir, sizeof r->dir, "%s/runs/%s", f->dir, f->specs[i].id);
        snprintf(r->rel_checkpoint, sizeof r->rel_checkpoint, "runs/%s/weights.safetensors",
                 f->specs[i].id);
        snprintf(f->trace[i], sizeof f->trace[i], "%s/trace.sbt", r->dir);
        snprintf(path, sizeof path, "%s/weights.safetensors", r->dir);
        if (sb_mkdir_p(r->dir, &err) != 0 || write_weights(path, i ? 1.0f + 0x1p-23f : 1.0f) ||
            write_gen(f->trace[i], g, i))
            return -1;
    }
    char cell[600], hex[65], manifest[1200];
    snprintf(cell, sizeof cell, "%s/attrib/%s", f->baselines, f->specs[0].cell);
    snprintf(path, sizeof path, "%s/weights.safetensors", cell);
    if (sb_mkdir_p(cell, &err) != 0 || write_weights(path, 1.0f) ||
        sb_sha256_file(path, hex, &err) != SB_OK)
        return -1;
    snprintf(manifest, sizeof manifest,
             "{\"schema\": \"samebits.baseline/1\", \"cells\": {\"%s\": {\"sha256\": \"%s\"}}}",
             f->specs[0].cell, hex);
    snprintf(path, sizeof path, "%s/attrib/manifest.json", f->baselines);
    if (sb_write_file_atomic(path, manifest, strlen(manifest), 0, &err) != SB_OK) return -1;
    snprintf(path, sizeof path, "%s/trace.sbt", cell);
    if (baseline_trace && sb_copy_file(f->trace[0], path, &err) != SB_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int fixture_evaluate(fixture *f) {
    sb_error err = {0};
    if (sb_evaluate_checks(f->s, f->specs, f->res, f->n, f->dir, f->baselines, &f->checks,
                           &err) != SB_OK) {
        fprintf(stderr, "evaluate: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void fixture_free(fixture *f) {
    if (f->s) sb_check_results_free(f->checks, f->s->n_checks);
    free(f->specs);
    sb_suite_free(f->s);
}

/* The summary.json of a fixture, parsed (caller deletes). */
static cJSON *summary_of(fixture *f) {
    sb_error err = {0};
    if (sb_write_summary(f->dir, f->s, f->res, f->n, f->checks, f->s->n_checks, 1.0, 1, &err) !=
        SB_OK) {
        fprintf(stderr, "summary: %s\n", err.msg);
        return NULL;
    }
    char path[400];
    size_t n;
    snprintf(path, sizeof path, "%s/summary.json", f->dir);
    char *text = sb_read_file(path, 1 << 24, &n, &err);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static const cJSON *get(const cJSON *o, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok(buf, "."); k && o; k = strtok(NULL, "."))
        o = k[0] >= '0' && k[0] <= '9' ? cJSON_GetArrayItem(o, atoi(k))
                                       : cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

static int is_str(const cJSON *o, const char *path, const char *want) {
    const cJSON *v = get(o, path);
    return cJSON_IsString(v) && !strcmp(v->valuestring, want);
}

static int is_num(const cJSON *o, const char *path, double want) {
    const cJSON *v = get(o, path);
    return cJSON_IsNumber(v) && v->valuedouble == want;
}

static int failing_check_should_carry_attribution_into_summary_json_and_the_verdict(void) {
    fixture f;
    gen g = {.steps = 10, .noise = {{"fc1/bias.grad", 3, 3}}, .flags = {{"fc1/bias.grad", 3, 3}}};
    CHECK(fixture_make(&f, "sum", &g, 0) == 0 && fixture_evaluate(&f) == 0, "fixture");
    const sb_comparison *c = &f.checks[0].cmp[0];
    CHECK(f.checks[0].status == SB_CHECK_FAIL && c->ok && !c->pass, "check bits: status %d",
          f.checks[0].status);
    CHECK(c->attrib && c->attrib->n_sources == 1, "attribution: %s", c->attribution_error);
    cJSON *j = summary_of(&f);
    CHECK(j, "summary.json does not parse");
    const cJSON *x = get(j, "checks.0.comparisons.0");
    int ok = is_num(x, "first_divergence.step", 3) && is_str(x, "first_divergence.stage", "backward") &&
             is_str(x, "first_divergence.op", "fc1/bias.grad") &&
             is_str(x, "first_divergence.kind", "source") &&
             is_str(x, "sources.0.op", "fc1/bias.grad") && is_str(x, "sources.0.stage", "backward") &&
             is_num(x, "sources.0.first_step", 3) && is_num(x, "sources.0.steps", 1) &&
             is_num(x, "weights_first_differ_at_step", 3) &&
             cJSON_GetArraySize(get(x, "growth")) == 5 && is_num(x, "growth.2.step", 4) &&
             is_num(x, "growth.2.max_ulp", 4) && is_num(x, "growth.2.max_abs", 4 * 0x1p-22) &&
             !get(x, "op_errors") && is_str(x, "worst_tensor", "w") && is_num(x, "max_ulp", 1);
    /* the tolerance check reports per-op errors of the snapshot values */
    const cJSON *y = get(j, "checks.1.comparisons.0");
    ok = ok && is_str(y, "op_errors.0.op", "sgd/update") && is_num(y, "op_errors.0.max_ulp", 10) &&
         is_num(y, "op_errors.0.step", 10) && is_str(y, "op_errors.0.stage", "optimizer");
    /* --recheck flags of run r1 */
    ok = ok && !get(j, "runs.0.nondeterministic_ops") &&
         is_str(j, "runs.1.nondeterministic_ops.0.op", "fc1/bias.grad") &&
         is_num(j, "runs.1.nondeterministic_ops.0.steps", 1);
    if (!ok) {
        char *t = cJSON_Print(j);
        fprintf(stderr, "%s\n", t);
        free(t);
    }
    cJSON_Delete(j);
    CHECK(ok, "summary.json lacks an attribution key or value (printed above)");
    char *out = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&out, &len);
    CHECK(mf, "memstream");
    sb_print_verdict(mf, f.s, f.res, f.n, f.checks, f.s->n_checks, f.dir, 1.0, 1);
    fclose(mf);
    ok = strstr(out, "source: fc1/bias.grad (backward) at step 3") != NULL;
    if (!ok) fprintf(stderr, "%s", out);
    free(out);
    fixture_free(&f);
    CHECK(ok, "verdict table does not name the source op");
    return 0;
}

static int missing_trace_should_keep_the_fail_and_name_the_file(void) {
    gen g = {.steps = 6, .noise = {{"fc1/bias.grad", 2, 2}}};
    for (int corrupt = 0; corrupt < 2; corrupt++) {
        fixture f;
        sb_error err = {0};
        CHECK(fixture_make(&f, corrupt ? "corrupt" : "missing", &g, 0) == 0, "fixture");
        if (corrupt)
            CHECK(sb_write_file_atomic(f.trace[1], "SBTRACE", 7, 1, &err) == SB_OK, "%s", err.msg);
        else
            CHECK(unlink(f.trace[1]) == 0, "unlink");
        CHECK(fixture_evaluate(&f) == 0, "evaluate");
        const sb_comparison *c = &f.checks[0].cmp[0];
        CHECK(f.checks[0].status == SB_CHECK_FAIL && c->ok && !c->pass && !c->attrib,
              "status %d ok %d pass %d", f.checks[0].status, c->ok, c->pass);
        CHECK(strstr(c->attribution_error, f.trace[1]), "attribution_error: %s",
              c->attribution_error);
        cJSON *j = summary_of(&f);
        CHECK(j, "summary.json");
        int ok = is_str(j, "checks.0.status", "fail") &&
                 strstr(get(j, "checks.0.comparisons.0.attribution_error")->valuestring,
                        "trace.sbt") != NULL;
        cJSON_Delete(j);
        fixture_free(&f);
        CHECK(ok, "summary.json: no attribution_error or the check does not fail");
    }
    return 0;
}

static int baseline_without_a_trace_should_say_so_and_with_one_should_be_attributed(void) {
    gen g = {.steps = 6, .noise = {{"fc1/bias.grad", 2, 2}}};
    for (int with = 0; with < 2; with++) {
        fixture f;
        CHECK(fixture_make(&f, with ? "base_trace" : "base_none", &g, with) == 0 &&
                  fixture_evaluate(&f) == 0, "fixture");
        const sb_check_result *r = &f.checks[2];
        /* r0 is the baseline: it passes; r1 fails */
        int ok = r->status == SB_CHECK_FAIL && r->n == 2 && r->cmp[0].pass && !r->cmp[0].attrib &&
                 !r->cmp[0].attribution_error[0] && !r->cmp[1].pass;
        if (with)
            ok = ok && r->cmp[1].attrib && r->cmp[1].attrib->n_sources == 1 &&
                 r->cmp[1].attrib->first.step == 2;
        else
            ok = ok && !r->cmp[1].attrib &&
                 strstr(r->cmp[1].attribution_error, "baseline has no trace");
        if (!ok)
            fprintf(stderr, "status %d n %d error \"%s\" / \"%s\" attrib %p\n", r->status, r->n,
                    r->cmp[0].error, r->cmp[1].attribution_error, (void *)r->cmp[1].attrib);
        fixture_free(&f);
        CHECK(ok, "baseline comparison %s a trace", with ? "with" : "without");
    }
    return 0;
}

/* ---- the command line --------------------------------------------------- */

/* Runs `samebits ARGS`, stdout and stderr to scratch files; the exit code
 * (1000 + signal when killed). */
static int run(const char *args, char **out, char **err) {
    const char *bin = getenv("SB_BIN");
    char cmd[4096], po[256], pe[256];
    if (!bin) {
        fprintf(stderr, "SB_BIN is not set\n");
        return -1;
    }
    scratch_path(po, sizeof po, "stdout");
    scratch_path(pe, sizeof pe, "stderr");
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", bin, args, po, pe);
    int st = system(cmd);
    sb_error e = {0};
    size_t n;
    *out = sb_read_file(po, 1 << 24, &n, &e);
    *err = sb_read_file(pe, 1 << 24, &n, &e);
    if (!*out) *out = calloc(1, 1);
    if (!*err) *err = calloc(1, 1);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

/* Run folders scratch/cli/{a,b,c}: a and c the same clean run, b with a
 * source at fc1/bias.grad step 3. */
static int cli_runs(char dirs[3][256]) {
    static int made;
    sb_error err = {0};
    gen g = {.steps = 10, .noise = {{"fc1/bias.grad", 3, 3}}};
    for (int i = 0; i < 3; i++) {
        char name[32], path[300];
        snprintf(name, sizeof name, "cli/%c", 'a' + i);
        scratch_path(dirs[i], 256, name);
        snprintf(path, sizeof path, "%s/trace.sbt", dirs[i]);
        if (!made && (sb_mkdir_p(dirs[i], &err) != 0 || write_gen(path, &g, i == 1) != 0))
            return -1;
    }
    made = 1;
    return 0;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int cli_trace_diff_should_exit_0_when_traces_agree_and_1_when_they_differ(void) {
    char d[3][256], args[1024], *out, *err;
    CHECK(cli_runs(d) == 0, "runs");
    snprintf(args, sizeof args, "trace-diff '%s' '%s/trace.sbt'", d[0], d[2]);
    int rc = run(args, &out, &err);
    int ok = rc == 0 && strstr(out, "verdict: AGREE") && !err[0];
    if (!ok) fprintf(stderr, "exit %d\n%s%s", rc, out, err);
    free(out);
    free(err);
    CHECK(ok, "equal traces");
    snprintf(args, sizeof args, "trace-diff '%s' '%s'", d[0], d[1]);
    rc = run(args, &out, &err);
    ok = rc == 1 && strstr(out, "first divergence: step 3, backward, fc1/bias.grad (source)") &&
         strstr(out, "weights first differ at step 3") && strstr(out, "verdict: DIFFER") &&
         strstr(out, "fc1/bias.grad  backward") && !err[0];
    if (!ok) fprintf(stderr, "exit %d\n%s%s", rc, out, err);
    free(out);
    free(err);
    CHECK(ok, "differing traces");
    CHECK(run("trace-diff --help", &out, &err) == 0 && strstr(out, "usage: samebits trace-diff"),
          "--help");
    free(out);
    free(err);
    return 0;
}

static int cli_trace_diff_json_should_parse_and_name_the_source(void) {
    char d[3][256], args[1024], *out, *err;
    CHECK(cli_runs(d) == 0, "runs");
    snprintf(args, sizeof args, "trace-diff --json '%s' '%s'", d[0], d[1]);
    int rc = run(args, &out, &err);
    cJSON *j = cJSON_Parse(out);
    int ok = rc == 1 && j && is_str(j, "verdict", "differ") &&
             is_str(j, "first_divergence.kind", "source") &&
             is_str(j, "first_divergence.op", "fc1/bias.grad") &&
             is_num(j, "first_divergence.step", 3) && is_str(j, "sources.0.op", "fc1/bias.grad") &&
             is_num(j, "weights_first_differ_at_step", 3) &&
             cJSON_GetArraySize(get(j, "growth")) == 5 && is_num(j, "growth.4.max_ulp", 10) &&
             cJSON_IsNull(get(j, "structure_mismatch"));
    if (!ok) fprintf(stderr, "exit %d\n%s%s", rc, out, err);
    cJSON_Delete(j);
    free(out);
    free(err);
    CHECK(ok, "JSON of differing traces");
    return 0;
}

static int cli_trace_diff_should_exit_2_with_one_line_naming_a_bad_file(void) {
    char d[3][256], args[1024], bad[256], *out, *err;
    sb_error e = {0};
    CHECK(cli_runs(d) == 0, "runs");
    scratch_path(bad, sizeof bad, "cli/corrupt.sbt");
    CHECK(sb_write_file_atomic(bad, "SBTRACE\0garbage", 15, 1, &e) == SB_OK, "%s", e.msg);
    /* a corrupt trace, a run folder without one, a path that does not exist */
    char named[3][300];
    snprintf(named[0], sizeof named[0], "%s", bad);
    snprintf(named[1], sizeof named[1], "%s/..", d[0]);
    snprintf(named[2], sizeof named[2], "/nonexistent/run");
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "trace-diff '%s' '%s'", d[0], named[k]);
        int rc = run(args, &out, &err);
        int ok = rc == 2 && count_lines(err) == 1 && strstr(err, named[k]) && !out[0];
        if (!ok) fprintf(stderr, "%s: exit %d\nstdout: %s\nstderr: %s", named[k], rc, out, err);
        free(out);
        free(err);
        CHECK(ok, "bad input %s", named[k]);
    }
    static const char *usage[] = {"trace-diff", "trace-diff onlyone", "trace-diff a b c",
                                  "trace-diff --bogus a b"};
    for (int k = 0; k < 4; k++) {
        int rc = run(usage[k], &out, &err);
        int ok = rc == 2 && count_lines(err) == 1 && !out[0];
        free(out);
        free(err);
        CHECK(ok, "%s: exit %d", usage[k], rc);
    }
    return 0;
}


static const sb_test_case cases[] = {
    SB_CASE(identical_traces_should_agree),
    SB_CASE(source_in_the_middle_should_be_found_and_later_differences_called_propagated),
    SB_CASE(two_independent_sources_should_both_be_listed_with_counts_and_first_steps),
    SB_CASE(weights_should_first_differ_at_the_first_optimizer_step_that_differs),
    SB_CASE(growth_should_be_computed_from_the_snapshot_values),
    SB_CASE(per_op_errors_should_report_max_abs_rel_and_ulp_with_their_step),
    SB_CASE(structure_mismatch_should_be_reported_and_stop_the_walk),
    SB_CASE(recheck_flagged_ops_should_be_listed_with_first_step_and_count),
    SB_CASE(corrupt_or_missing_trace_should_give_an_error_not_a_crash),
    SB_CASE(failing_check_should_carry_attribution_into_summary_json_and_the_verdict),
    SB_CASE(missing_trace_should_keep_the_fail_and_name_the_file),
    SB_CASE(baseline_without_a_trace_should_say_so_and_with_one_should_be_attributed),
    SB_CASE(cli_trace_diff_should_exit_0_when_traces_agree_and_1_when_they_differ),
    SB_CASE(cli_trace_diff_json_should_parse_and_name_the_source),
    SB_CASE(cli_trace_diff_should_exit_2_with_one_line_naming_a_bad_file),
};

SB_TEST_MAIN(cases)
