/* test_suite.c — tests of the suite parser and matrix expansion (harness/suite.c).
 *
 * What it covers: a full suite parsing into the right values, defaults,
 * expansion order and ids, where clauses, axis names, loading from a file,
 * and a table of bad suites, each of which must fail with the right status
 * and a one-line message naming the file and the exact JSON path.
 *
 * What it is not: a test of the engine or of running anything; the run
 * configs built here are only compared, never trained.
 */
#include "sb_test.h"
#include "suite.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LABEL "suites/x.json"

/* Every key the format has, with non-default values where there are defaults. */
static const char FULL[] =
    "{\n"
    "  \"name\": \"smoke\",\n"
    "  \"description\": \"a full suite\",\n"
    "  \"model\": {\"kind\": \"mlp\", \"hidden\": [16, 8], \"activation\": \"tanh\"},\n"
    "  \"data\": {\"kind\": \"blobs\", \"samples\": 256, \"features\": 6, \"classes\": 3,\n"
    "           \"noise\": 0.5, \"shuffle\": \"once\"},\n"
    "  \"train\": {\"steps\": 40, \"batch\": 32,\n"
    "            \"optimizer\": {\"name\": \"adam\", \"lr\": 0.005, \"beta2\": 0.99,\n"
    "                          \"weight_decay\": 0.01}},\n"
    "  \"matrix\": {\"seeds\": [7, 1], \"backends\": [\"ref\", \"blas\"],\n"
    "             \"modes\": [\"deterministic\", \"fast\"], \"threads\": [1, 4]},\n"
    "  \"repeats\": 3,\n"
    "  \"timeout\": 90.5,\n"
    "  \"perturb\": true,\n"
    "  \"checks\": [\n"
    "    {\"name\": \"det-repeatable\", \"kind\": \"repeatable\", \"expect\": \"bitwise\",\n"
    "     \"where\": {\"mode\": \"deterministic\"}},\n"
    "    {\"name\": \"backends-agree\", \"kind\": \"cross\", \"axis\": \"backends\",\n"
    "     \"expect\": {\"atol\": 1e-5, \"rtol\": 1e-4}},\n"
    "    {\"name\": \"baseline\", \"kind\": \"baseline\", \"expect\": {\"ulp\": 4},\n"
    "     \"where\": {\"backends\": [\"ref\"], \"seed\": [1, 7], \"threads\": 4}}\n"
    "  ]\n"
    "}\n";

/* Only what is required. */
static const char MINIMAL[] =
    "{\"name\": \"min\",\n"
    " \"model\": {\"kind\": \"mlp\"},\n"
    " \"data\": {\"kind\": \"blobs\", \"samples\": 64, \"features\": 4, \"classes\": 2},\n"
    " \"train\": {\"steps\": 5, \"batch\": 8, \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},\n"
    " \"checks\": [{\"name\": \"rep\", \"kind\": \"repeatable\", \"expect\": \"bitwise\"}]}";

static sb_suite *parse(const char *text, sb_error *err) {
    memset(err, 0, sizeof *err);
    return sb_suite_parse(text, strlen(text), LABEL, err);
}

/* ======================================================================
 * Valid suites
 * ==================================================================== */

static int suite_should_parse_a_full_suite_into_its_values(void) {
    sb_error err;
    sb_suite *s = parse(FULL, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    const sb_run_config *b = &s->base;

    CHECK(strcmp(s->path, LABEL) == 0, "path %s", s->path);
    CHECK(strcmp(s->name, "smoke") == 0, "name %s", s->name);
    CHECK(strcmp(s->description, "a full suite") == 0, "description %s", s->description);

    CHECK(strcmp(b->model.kind, "mlp") == 0, "model kind %s", b->model.kind);
    CHECK(b->model.n_widths == 4, "n_widths %d", b->model.n_widths);
    const int widths[4] = {6, 16, 8, 3}; /* features, hidden..., classes */
    for (int i = 0; i < 4; i++)
        CHECK(b->model.widths[i] == widths[i], "widths[%d] = %d, want %d", i, b->model.widths[i],
              widths[i]);
    CHECK(b->model.act == SB_ACT_TANH, "act %d", (int)b->model.act);

    CHECK(strcmp(b->data.kind, "blobs") == 0, "data kind %s", b->data.kind);
    CHECK(b->data.samples == 256 && b->data.features == 6 && b->data.classes == 3,
          "data %d %d %d", b->data.samples, b->data.features, b->data.classes);
    CHECK(b->data.noise == 0.5f, "noise %g", (double)b->data.noise);
    CHECK(b->data.shuffle == SB_SHUFFLE_ONCE, "shuffle %d", (int)b->data.shuffle);

    CHECK(b->steps == 40 && b->batch == 32, "steps %d batch %d", b->steps, b->batch);
    CHECK(strcmp(b->optim.name, "adam") == 0, "optimizer %s", b->optim.name);
    CHECK(b->optim.lr == 0.005f, "lr %g", (double)b->optim.lr);
    CHECK(b->optim.beta1 == 0.9f, "beta1 default %g", (double)b->optim.beta1);
    CHECK(b->optim.beta2 == 0.99f, "beta2 %g", (double)b->optim.beta2);
    CHECK(b->optim.eps == 1e-8f, "eps default %g", (double)b->optim.eps);
    CHECK(b->optim.weight_decay == 0.01f, "weight_decay %g", (double)b->optim.weight_decay);
    CHECK(b->optim.momentum == 0.0f, "momentum unused by adam: %g", (double)b->optim.momentum);

    CHECK(s->n_seeds == 2 && s->seeds[0] == 7 && s->seeds[1] == 1, "seeds");
    CHECK(s->n_backends == 2 && !strcmp(s->backends[0], "ref") && !strcmp(s->backends[1], "blas"),
          "backends");
    CHECK(s->n_modes == 2 && s->modes[0] == SB_MODE_DETERMINISTIC && s->modes[1] == SB_MODE_FAST,
          "modes");
    CHECK(s->n_threads == 2 && s->threads[0] == 1 && s->threads[1] == 4, "threads");
    CHECK(b->seed == 7 && !strcmp(b->backend, "ref") && b->mode == SB_MODE_DETERMINISTIC &&
              b->threads == 1,
          "base takes the first matrix values: seed %" PRIu64 " backend %s threads %d", b->seed,
          b->backend, b->threads);
    CHECK(s->repeats == 3, "repeats %d", s->repeats);
    CHECK(s->timeout == 90.5, "timeout %g", s->timeout);
    CHECK(s->perturb == 1 && b->perturb == 1, "perturb %d %d", s->perturb, b->perturb);

    CHECK(s->n_checks == 3, "n_checks %d", s->n_checks);
    const sb_check *c0 = &s->checks[0], *c1 = &s->checks[1], *c2 = &s->checks[2];
    CHECK(!strcmp(c0->name, "det-repeatable") && c0->kind == SB_CHECK_REPEATABLE, "check 0");
    CHECK(c0->expect.bitwise == 1, "check 0 bitwise");
    CHECK(c0->where.n_values[SB_AXIS_MODE] == 1 &&
              !strcmp(c0->where.values[SB_AXIS_MODE][0], "deterministic"),
          "check 0 where mode");
    CHECK(c0->where.n_values[SB_AXIS_SEED] == 0 && c0->where.n_values[SB_AXIS_BACKEND] == 0 &&
              c0->where.n_values[SB_AXIS_THREADS] == 0,
          "check 0 restricts only the mode");

    CHECK(!strcmp(c1->name, "backends-agree") && c1->kind == SB_CHECK_CROSS, "check 1");
    CHECK(c1->axis == SB_AXIS_BACKEND, "check 1 axis %d", (int)c1->axis);
    CHECK(!c1->expect.bitwise && c1->expect.has_atol && c1->expect.has_rtol &&
              !c1->expect.has_ulp,
          "check 1 tolerance flags");
    CHECK(c1->expect.atol == 1e-5 && c1->expect.rtol == 1e-4, "check 1 atol %g rtol %g",
          c1->expect.atol, c1->expect.rtol);

    CHECK(!strcmp(c2->name, "baseline") && c2->kind == SB_CHECK_BASELINE, "check 2");
    CHECK(!c2->expect.bitwise && c2->expect.has_ulp && c2->expect.ulp == 4 &&
              !c2->expect.has_atol && !c2->expect.has_rtol,
          "check 2 ulp");
    CHECK(c2->where.n_values[SB_AXIS_BACKEND] == 1 &&
              !strcmp(c2->where.values[SB_AXIS_BACKEND][0], "ref"),
          "check 2 where backend");
    CHECK(c2->where.n_values[SB_AXIS_SEED] == 2 &&
              !strcmp(c2->where.values[SB_AXIS_SEED][0], "1") &&
              !strcmp(c2->where.values[SB_AXIS_SEED][1], "7"),
          "check 2 where seeds");
    CHECK(c2->where.n_values[SB_AXIS_THREADS] == 1 &&
              !strcmp(c2->where.values[SB_AXIS_THREADS][0], "4"),
          "check 2 where threads");
    sb_suite_free(s);
    return 0;
}

static int suite_should_fill_defaults_for_optional_keys(void) {
    sb_error err;
    sb_suite *s = parse(MINIMAL, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    const sb_run_config *b = &s->base;
    CHECK(s->description[0] == '\0', "description %s", s->description);
    CHECK(b->model.n_widths == 3 && b->model.widths[0] == 4 && b->model.widths[1] == 32 &&
              b->model.widths[2] == 2,
          "hidden defaults to [32]: n_widths %d", b->model.n_widths);
    CHECK(b->model.act == SB_ACT_RELU, "activation defaults to relu");
    CHECK(b->data.noise == 1.0f, "blobs noise defaults to 1.0, got %g", (double)b->data.noise);
    CHECK(b->data.shuffle == SB_SHUFFLE_EPOCH, "shuffle defaults to epoch");
    CHECK(strcmp(b->optim.name, "sgd") == 0, "optimizer %s", b->optim.name);
    CHECK(b->optim.momentum == 0.9f, "sgd momentum defaults to 0.9, got %g",
          (double)b->optim.momentum);
    CHECK(b->optim.weight_decay == 0.0f, "weight_decay defaults to 0");
    CHECK(b->optim.beta1 == 0.0f && b->optim.beta2 == 0.0f && b->optim.eps == 0.0f,
          "adam fields are unused by sgd");
    CHECK(s->n_seeds == 1 && s->seeds[0] == 0, "seeds default to [0]");
    CHECK(s->n_backends == 1 && !strcmp(s->backends[0], "ref"), "backends default to [ref]");
    CHECK(s->n_modes == 1 && s->modes[0] == SB_MODE_DETERMINISTIC, "modes default");
    CHECK(s->n_threads == 1 && s->threads[0] == 1, "threads default to [1]");
    CHECK(b->seed == 0 && !strcmp(b->backend, "ref") && b->threads == 1, "base matrix fields");
    CHECK(s->repeats == 2, "repeats defaults to 2, got %d", s->repeats);
    CHECK(s->timeout == 600, "timeout defaults to 600, got %g", s->timeout);
    CHECK(s->perturb == 0 && b->perturb == 0, "perturb defaults to false");
    CHECK(s->n_checks == 1 && s->checks[0].where.n_values[SB_AXIS_SEED] == 0, "checks");
    sb_suite_free(s);

    /* adam defaults; spirals default noise 0.2; an empty hidden list is a linear model */
    const char *adam =
        "{\"name\": \"a\", \"model\": {\"kind\": \"mlp\", \"hidden\": []},\n"
        " \"data\": {\"kind\": \"spirals\", \"samples\": 10, \"features\": 2, \"classes\": 3},\n"
        " \"train\": {\"steps\": 1, \"batch\": 10,\n"
        "            \"optimizer\": {\"name\": \"adam\", \"lr\": 1}},\n"
        " \"repeats\": 1, \"checks\": [{\"name\": \"b\", \"kind\": \"baseline\", \"expect\": "
        "\"bitwise\"}]}";
    s = parse(adam, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    b = &s->base;
    CHECK(b->data.noise == 0.2f, "spirals noise defaults to 0.2, got %g", (double)b->data.noise);
    CHECK(b->optim.beta1 == 0.9f && b->optim.beta2 == 0.999f && b->optim.eps == 1e-8f,
          "adam defaults %g %g %g", (double)b->optim.beta1, (double)b->optim.beta2,
          (double)b->optim.eps);
    CHECK(b->optim.momentum == 0.0f, "momentum unused by adam");
    CHECK(b->model.n_widths == 2 && b->model.widths[0] == 2 && b->model.widths[1] == 3,
          "hidden [] gives widths [features, classes]");
    CHECK(s->repeats == 1, "repeats 1 is fine without a repeatable check");
    sb_suite_free(s);
    return 0;
}

static int suite_should_keep_the_exact_text_and_its_sha256(void) {
    sb_error err;
    sb_suite *s = parse(FULL, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    char want[65];
    sb_sha256_bytes(FULL, strlen(FULL), want);
    CHECK(s->text_len == strlen(FULL) && memcmp(s->text, FULL, s->text_len) == 0 &&
              s->text[s->text_len] == '\0',
          "text is not the input");
    CHECK(strcmp(s->sha256, want) == 0, "sha256 %s, want %s", s->sha256, want);
    CHECK(strlen(s->sha256) == 64, "sha256 length %zu", strlen(s->sha256));
    sb_suite_free(s);
    return 0;
}

static int suite_should_accept_integral_numbers_in_any_spelling(void) {
    /* 1e1 and 4.0 are integral JSON numbers; -0 is zero; 2^53 - 1 is the
     * largest seed a double holds exactly. */
    const char *text =
        "{\"name\": \"n\", \"model\": {\"kind\": \"mlp\", \"hidden\": [1e1, 4.0]},\n"
        " \"data\": {\"kind\": \"blobs\", \"samples\": 64, \"features\": 4, \"classes\": 2},\n"
        " \"train\": {\"steps\": 5, \"batch\": 8, \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1,"
        " \"momentum\": 0}},\n"
        " \"matrix\": {\"seeds\": [-0, 9007199254740991]},\n"
        " \"checks\": [{\"name\": \"c\", \"kind\": \"cross\", \"axis\": \"seed\", \"expect\": "
        "{\"ulp\": 0}}]}";
    sb_error err;
    sb_suite *s = parse(text, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    CHECK(s->base.model.widths[1] == 10 && s->base.model.widths[2] == 4, "hidden %d %d",
          s->base.model.widths[1], s->base.model.widths[2]);
    CHECK(s->seeds[0] == 0 && s->seeds[1] == UINT64_C(9007199254740991), "seeds %" PRIu64,
          s->seeds[1]);
    CHECK(s->base.optim.momentum == 0.0f, "momentum 0 is allowed");
    CHECK(s->checks[0].axis == SB_AXIS_SEED, "singular axis name accepted");
    sb_suite_free(s);
    return 0;
}

static int suite_should_accept_a_utf8_byte_order_mark(void) {
    /* RFC 8259 lets a parser ignore a leading BOM, and some editors write one */
    char text[sizeof MINIMAL + 3] = "\xef\xbb\xbf";
    memcpy(text + 3, MINIMAL, sizeof MINIMAL);
    sb_error err;
    sb_suite *s = parse(text, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    CHECK(s->text_len == strlen(text), "text keeps the BOM");
    sb_suite_free(s);
    return 0;
}

/* ======================================================================
 * Expansion and where
 * ==================================================================== */

static int expand_should_nest_seeds_backends_modes_threads_repeats(void) {
    sb_error err;
    sb_suite *s = parse(FULL, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    sb_run_spec *runs = NULL;
    int n = sb_suite_expand(s, &runs);
    CHECK(n == 2 * 2 * 2 * 2 * 3, "expanded to %d runs, want 48", n);
    CHECK(runs != NULL, "no runs");

    CHECK(!strcmp(runs[0].id, "seed7-ref-deterministic-t1-r0"), "runs[0] %s", runs[0].id);
    CHECK(!strcmp(runs[1].id, "seed7-ref-deterministic-t1-r1"), "runs[1] %s", runs[1].id);
    CHECK(!strcmp(runs[3].id, "seed7-ref-deterministic-t4-r0"), "runs[3] %s", runs[3].id);
    CHECK(!strcmp(runs[6].id, "seed7-ref-fast-t1-r0"), "runs[6] %s", runs[6].id);
    CHECK(!strcmp(runs[12].id, "seed7-blas-deterministic-t1-r0"), "runs[12] %s", runs[12].id);
    CHECK(!strcmp(runs[24].id, "seed1-ref-deterministic-t1-r0"), "runs[24] %s", runs[24].id);
    CHECK(!strcmp(runs[47].id, "seed1-blas-fast-t4-r2"), "runs[47] %s", runs[47].id);
    CHECK(!strcmp(runs[47].cell, "seed1-blas-fast-t4"), "runs[47] cell %s", runs[47].cell);

    /* every run: fields match its position, the cell is the id minus "-rN",
     * and everything else is the base config */
    for (int k = 0; k < n; k++) {
        const sb_run_spec *r = &runs[k];
        int rep = k % 3, ti = (k / 3) % 2, mi = (k / 6) % 2, bi = (k / 12) % 2, si = k / 24;
        char want_cell[128], want_id[160];
        CHECK(r->repeat == rep, "run %d repeat %d", k, r->repeat);
        CHECK(r->cfg.seed == s->seeds[si] && !strcmp(r->cfg.backend, s->backends[bi]) &&
                  r->cfg.mode == s->modes[mi] && r->cfg.threads == s->threads[ti],
              "run %d (%s) has the wrong matrix point", k, r->id);
        snprintf(want_cell, sizeof want_cell, "seed%" PRIu64 "-%s-%s-t%d", s->seeds[si],
                 s->backends[bi], mi ? "fast" : "deterministic", s->threads[ti]);
        snprintf(want_id, sizeof want_id, "%s-r%d", want_cell, rep);
        CHECK(!strcmp(r->cell, want_cell), "run %d cell %s, want %s", k, r->cell, want_cell);
        CHECK(!strcmp(r->id, want_id), "run %d id %s, want %s", k, r->id, want_id);
        CHECK(r->cfg.steps == 40 && r->cfg.batch == 32 && r->cfg.model.n_widths == 4 &&
                  r->cfg.perturb == 1 && !strcmp(r->cfg.optim.name, "adam"),
              "run %d lost the base config", k);
    }
    free(runs);
    sb_suite_free(s);

    s = parse(MINIMAL, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    n = sb_suite_expand(s, &runs);
    CHECK(n == 2, "minimal suite expands to %d runs, want 2 (one cell, 2 repeats)", n);
    CHECK(!strcmp(runs[0].id, "seed0-ref-deterministic-t1-r0") &&
              !strcmp(runs[1].id, "seed0-ref-deterministic-t1-r1") &&
              !strcmp(runs[1].cell, "seed0-ref-deterministic-t1"),
          "ids %s %s", runs[0].id, runs[1].id);
    free(runs);
    sb_suite_free(s);
    return 0;
}

static int where_should_match_only_the_listed_axis_values(void) {
    sb_error err;
    sb_suite *s = parse(FULL, &err);
    CHECK(s != NULL, "parse failed: %s", err.msg);
    sb_run_spec *runs = NULL;
    int n = sb_suite_expand(s, &runs);
    CHECK(n == 48, "expanded to %d", n);

    const sb_where *w0 = &s->checks[0].where; /* mode deterministic */
    const sb_where *w1 = &s->checks[1].where; /* everything */
    const sb_where *w2 = &s->checks[2].where; /* ref, seeds 1 and 7, threads 4 */
    int m0 = 0, m1 = 0, m2 = 0;
    for (int k = 0; k < n; k++) {
        const sb_run_config *c = &runs[k].cfg;
        int want0 = c->mode == SB_MODE_DETERMINISTIC;
        int want2 = !strcmp(c->backend, "ref") && c->threads == 4;
        CHECK(sb_where_matches(w0, c) == want0, "where mode vs %s", runs[k].id);
        CHECK(sb_where_matches(w1, c) == 1, "empty where vs %s", runs[k].id);
        CHECK(sb_where_matches(w2, c) == want2, "where backend/seed/threads vs %s", runs[k].id);
        m0 += want0, m1++, m2 += want2;
    }
    CHECK(m0 == 24 && m1 == 48 && m2 == 12, "coverage %d %d %d", m0, m1, m2);

    /* a hand-built where: seed 12345678901 only */
    sb_where w;
    memset(&w, 0, sizeof w);
    w.n_values[SB_AXIS_SEED] = 1;
    snprintf(w.values[SB_AXIS_SEED][0], sizeof w.values[0][0], "12345678901");
    sb_run_config c = s->base;
    c.seed = UINT64_C(12345678901);
    CHECK(sb_where_matches(&w, &c) == 1, "seed 12345678901 should match");
    c.seed = 1234567890;
    CHECK(sb_where_matches(&w, &c) == 0, "seed 1234567890 should not match");
    CHECK(sb_where_matches(NULL, &c) == 1, "NULL where covers everything");
    free(runs);
    sb_suite_free(s);
    return 0;
}

static int axis_names_should_parse_both_spellings_and_print_values(void) {
    static const struct { const char *name; int ok; sb_axis axis; } cases[] = {
        {"seed", 1, SB_AXIS_SEED},       {"seeds", 1, SB_AXIS_SEED},
        {"backend", 1, SB_AXIS_BACKEND}, {"backends", 1, SB_AXIS_BACKEND},
        {"mode", 1, SB_AXIS_MODE},       {"modes", 1, SB_AXIS_MODE},
        {"threads", 1, SB_AXIS_THREADS}, {"thread", 0, SB_AXIS_SEED},
        {"Seeds", 0, SB_AXIS_SEED},      {"", 0, SB_AXIS_SEED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_axis a = SB_AXIS_COUNT;
        int rc = sb_axis_parse(cases[i].name, &a);
        CHECK((rc == 0) == cases[i].ok, "sb_axis_parse(\"%s\") = %d", cases[i].name, rc);
        if (cases[i].ok) CHECK(a == cases[i].axis, "\"%s\" parsed to %d", cases[i].name, (int)a);
    }
    CHECK(!strcmp(sb_axis_name(SB_AXIS_SEED), "seed") &&
              !strcmp(sb_axis_name(SB_AXIS_BACKEND), "backend") &&
              !strcmp(sb_axis_name(SB_AXIS_MODE), "mode") &&
              !strcmp(sb_axis_name(SB_AXIS_THREADS), "threads"),
          "singular axis names");
    CHECK(!strcmp(sb_check_kind_name(SB_CHECK_REPEATABLE), "repeatable") &&
              !strcmp(sb_check_kind_name(SB_CHECK_CROSS), "cross") &&
              !strcmp(sb_check_kind_name(SB_CHECK_BASELINE), "baseline"),
          "check kind names");

    sb_run_config c;
    memset(&c, 0, sizeof c);
    c.seed = UINT64_C(9007199254740991);
    snprintf(c.backend, sizeof c.backend, "blas");
    c.mode = SB_MODE_FAST;
    c.threads = 16;
    char buf[32];
    sb_axis_value(&c, SB_AXIS_SEED, buf, sizeof buf);
    CHECK(!strcmp(buf, "9007199254740991"), "seed value %s", buf);
    sb_axis_value(&c, SB_AXIS_BACKEND, buf, sizeof buf);
    CHECK(!strcmp(buf, "blas"), "backend value %s", buf);
    sb_axis_value(&c, SB_AXIS_MODE, buf, sizeof buf);
    CHECK(!strcmp(buf, "fast"), "mode value %s", buf);
    sb_axis_value(&c, SB_AXIS_THREADS, buf, sizeof buf);
    CHECK(!strcmp(buf, "16"), "threads value %s", buf);
    return 0;
}

/* ======================================================================
 * Bad suites
 * ==================================================================== */

/* Finds the parent of the last segment of a dotted path ("a.b[2].c") in
 * root; *key / *index name the last segment (index -1 for a key). */
static cJSON *walk(cJSON *root, const char *path, char *key, int *index) {
    cJSON *cur = root;
    char seg[64];
    const char *p = path;
    for (;;) {
        size_t n = strcspn(p, ".[");
        SB_ASSERT(n < sizeof seg);
        memcpy(seg, p, n);
        seg[n] = '\0';
        p += n;
        *index = -1;
        if (n) {
            if (!*p) {
                snprintf(key, 64, "%s", seg);
                return cur;
            }
            cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
            SB_ASSERT(cur);
        }
        if (*p == '[') {
            int i = atoi(p + 1);
            p = strchr(p, ']') + 1;
            if (!*p) {
                *index = i;
                key[0] = '\0';
                return cur;
            }
            cur = cJSON_GetArrayItem(cur, i);
            SB_ASSERT(cur);
        }
        if (*p == '.') p++;
    }
}

/* FULL with one edit: the value at `path` set to `json` (added when absent,
 * appended when the index is one past the end), deleted when json is NULL,
 * or added a second time when dup. "" replaces the whole document. */
static char *edited(const char *path, const char *json, int dup) {
    cJSON *root = cJSON_Parse(FULL);
    SB_ASSERT(root);
    if (!path[0]) {
        cJSON_Delete(root);
        root = cJSON_Parse(json);
        SB_ASSERT(root);
    } else {
        char key[64];
        int index;
        cJSON *parent = walk(root, path, key, &index);
        cJSON *value = json ? cJSON_Parse(json) : NULL;
        SB_ASSERT(!json || value);
        if (index >= 0) {
            if (!json) cJSON_DeleteItemFromArray(parent, index);
            else if (index >= cJSON_GetArraySize(parent)) cJSON_AddItemToArray(parent, value);
            else cJSON_ReplaceItemInArray(parent, index, value);
        } else if (dup) {
            cJSON *copy = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(parent, key), 1);
            SB_ASSERT(copy);
            cJSON_AddItemToObject(parent, key, copy);
        } else if (!json) {
            cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
        } else if (cJSON_GetObjectItemCaseSensitive(parent, key)) {
            cJSON_ReplaceItemInObjectCaseSensitive(parent, key, value);
        } else {
            cJSON_AddItemToObject(parent, key, value);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    SB_ASSERT(text);
    return text;
}

/* Checks one failure: the status, a message "LABEL: PATH: ..." (or
 * "LABEL: ..." when path is "") containing want, on one line. */
static int expect_failure(const char *what, const char *text, size_t len, sb_status status,
                          const char *path, const char *want) {
    sb_error err;
    memset(&err, 0, sizeof err);
    sb_suite *s = sb_suite_parse(text, len, LABEL, &err);
    if (s) {
        sb_suite_free(s);
        fprintf(stderr, "%s: parsed, want an error at %s containing: %s\n", what, path, want);
        return 1;
    }
    char prefix[256];
    if (path[0]) snprintf(prefix, sizeof prefix, "%s: %s: ", LABEL, path);
    else snprintf(prefix, sizeof prefix, "%s: ", LABEL);
    int ok = err.status == status && strncmp(err.msg, prefix, strlen(prefix)) == 0 &&
             strstr(err.msg, want) != NULL && !strchr(err.msg, '\n');
    if (!ok)
        fprintf(stderr, "%s:\n  got  [%s] %s\n  want [%s] %s... containing %s\n", what,
                sb_status_str(err.status), err.msg, sb_status_str(status), prefix, want);
    return !ok;
}

typedef struct bad_edit {
    const char *path;   /* what to edit in FULL */
    const char *json;   /* new value; NULL deletes */
    int dup;            /* add the key a second time */
    sb_status status;
    const char *where;  /* JSON path the message must name ("" for the top level) */
    const char *want;   /* text the message must contain */
} bad_edit;

#define F SB_ERR_FORMAT
#define A SB_ERR_ARG

static const bad_edit BAD_EDITS[] = {
    /* top level */
    {"", "[1, 2]", 0, F, "", "expected a JSON object at the top level, got an array"},
    {"", "\"smoke\"", 0, F, "", "expected a JSON object at the top level, got \"smoke\""},
    {"nmae", "\"x\"", 0, F, "", "unknown key \"nmae\""},
    {"name", NULL, 0, F, "", "missing required key \"name\""},
    {"name", NULL, 1, F, "", "duplicate key \"name\""},
    {"name", "\"a b\"", 0, A, "name", "expected a name"},
    {"name", "\"\"", 0, A, "name", "expected a name"},
    {"name", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", 0, A, "name",
     "expected a name"},
    {"name", "7", 0, F, "name", "expected a string, got 7"},
    {"description", "3", 0, F, "description", "expected a string, got 3"},
    {"model", NULL, 0, F, "", "missing required key \"model\""},
    {"repeats", "0", 0, A, "repeats", "expected an integer in 1..100, got 0"},
    {"repeats", "101", 0, A, "repeats", "expected an integer in 1..100, got 101"},
    {"repeats", "2.5", 0, A, "repeats", "got 2.5"},
    {"repeats", "1", 0, A, "checks[0]", "repeatable check needs repeats >= 2"},
    {"timeout", "0", 0, A, "timeout", "expected a number in (0, 2592000], got 0"},
    {"timeout", "\"60\"", 0, F, "timeout", "got \"60\""},
    {"perturb", "1", 0, F, "perturb", "expected true or false, got 1"},
    {"checks", NULL, 0, F, "", "missing required key \"checks\""},
    {"checks", "[]", 0, A, "checks", "must not be empty"},
    {"checks", "{}", 0, F, "checks", "expected an array, got an object"},
    /* model */
    {"model", "[]", 0, F, "model", "expected an object, got an array"},
    {"model.kind", NULL, 0, F, "model", "missing required key \"kind\""},
    {"model.kind", "\"lstm\"", 0, A, "model.kind",
     "expected one of \"mlp\", \"cnn\", \"rnn\", \"transformer\", got \"lstm\""},
    {"model.kind", "\"cnn\"", 0, F, "model.hidden", "not a key of model.kind \"cnn\""},
    {"model.kind", NULL, 1, F, "model", "duplicate key \"kind\""},
    {"model.depth", "2", 0, F, "model", "unknown key \"depth\""},
    {"model.hidden", "[1, 2, 3, 4, 5, 6, 7, 8]", 0, A, "model.hidden", "at most 7"},
    {"model.hidden", "16", 0, F, "model.hidden", "expected an array, got 16"},
    {"model.hidden[1]", "0", 0, A, "model.hidden[1]", "expected an integer in 1..4096, got 0"},
    {"model.hidden[1]", "4097", 0, A, "model.hidden[1]", "got 4097"},
    {"model.hidden[0]", "1.5", 0, A, "model.hidden[0]", "got 1.5"},
    {"model.hidden[0]", "\"16\"", 0, F, "model.hidden[0]", "got \"16\""},
    {"model.activation", "\"sigmoid\"", 0, A, "model.activation",
     "expected one of \"relu\", \"tanh\", \"gelu\", got \"sigmoid\""},
    /* data */
    {"data", "null", 0, F, "data", "expected an object, got null"},
    {"data.kind", NULL, 0, F, "data", "missing required key \"kind\""},
    {"data.kind", "\"moons\"", 0, A, "data.kind", "got \"moons\""},
    {"data.kind", "\"spirals\"", 0, A, "data.features", "spirals have 2 features, got 6"},
    {"data.kind", "\"shapes\"", 0, F, "data", "unknown key \"features\""},
    {"data.augment", "{\"flip\": 0.5}", 0, A, "data.augment.flip", "needs image data"},
    {"data.samples", "1", 0, A, "data.samples", "expected an integer in 2..1000000, got 1"},
    {"data.samples", "1000001", 0, A, "data.samples", "got 1000001"},
    {"data.features", "0", 0, A, "data.features", "expected an integer in 1..4096, got 0"},
    {"data.classes", "1001", 0, A, "data.classes", "expected an integer in 2..1000, got 1001"},
    {"data.classes", "true", 0, F, "data.classes", "got true"},
    {"data.noise", "-0.1", 0, A, "data.noise", "expected a number >= 0, got -0.1"},
    {"data.shuffle", "true", 0, F, "data.shuffle", "got true"},
    {"data.shuffle", "\"always\"", 0, A, "data.shuffle", "got \"always\""},
    {"data.seed", "1", 0, F, "data", "unknown key \"seed\""},
    /* train */
    {"train", "3", 0, F, "train", "expected an object, got 3"},
    {"train.steps", "0", 0, A, "train.steps", "expected an integer in 1..10000000, got 0"},
    {"train.steps", "-3", 0, A, "train.steps", "got -3"},
    {"train.steps", NULL, 0, F, "train", "missing required key \"steps\""},
    {"train.batch", "257", 0, A, "train.batch", "257 is larger than data.samples (256)"},
    {"train.batch", "0", 0, A, "train.batch", "got 0"},
    {"train.epochs", "1", 0, F, "train", "unknown key \"epochs\""},
    {"train.optimizer", "\"adam\"", 0, F, "train.optimizer", "expected an object, got \"adam\""},
    {"train.optimizer.lerning_rate", "0.1", 0, F, "train.optimizer",
     "unknown key \"lerning_rate\""},
    {"train.optimizer.name", NULL, 0, F, "train.optimizer", "missing required key \"name\""},
    {"train.optimizer.name", "\"rmsprop\"", 0, A, "train.optimizer.name", "got \"rmsprop\""},
    {"train.optimizer.lr", NULL, 0, F, "train.optimizer", "missing required key \"lr\""},
    {"train.optimizer.lr", NULL, 1, F, "train.optimizer", "duplicate key \"lr\""},
    {"train.optimizer.lr", "0", 0, A, "train.optimizer.lr", "expected a number > 0, got 0"},
    {"train.optimizer.lr", "1e-50", 0, A, "train.optimizer.lr", "as a 32-bit float"},
    {"train.optimizer.lr", "1e300", 0, A, "train.optimizer.lr", "32-bit float"},
    {"train.optimizer.momentum", "0.9", 0, F, "train.optimizer.momentum", "only for sgd"},
    {"train.optimizer", "{\"name\": \"sgd\", \"lr\": 0.1, \"momentum\": 1}", 0, A,
     "train.optimizer.momentum", "expected a number in [0, 1), got 1"},
    {"train.optimizer", "{\"name\": \"sgd\", \"lr\": 0.1, \"eps\": 1e-8}", 0, F,
     "train.optimizer.eps", "only for adam"},
    {"train.optimizer.name", "\"sgd\"", 0, F, "train.optimizer.beta2", "only for adam"},
    {"train.optimizer.beta1", "1", 0, A, "train.optimizer.beta1",
     "expected a number in [0, 1), got 1"},
    {"train.optimizer.beta2", "0.9999999999", 0, A, "train.optimizer.beta2",
     "(1 as a 32-bit float)"},
    {"train.optimizer.eps", "0", 0, A, "train.optimizer.eps", "expected a number > 0"},
    {"train.optimizer.weight_decay", "-1", 0, A, "train.optimizer.weight_decay", "got -1"},
    /* matrix */
    {"matrix", "[]", 0, F, "matrix", "expected an object, got an array"},
    {"matrix.devices", "[\"cpu\"]", 0, F, "matrix", "unknown key \"devices\""},
    {"matrix.seeds", NULL, 1, F, "matrix", "duplicate key \"seeds\""},
    {"matrix.seeds[2]", "\"abc\"", 0, F, "matrix.seeds[2]",
     "expected a non-negative integer, got \"abc\""},
    {"matrix.seeds[0]", "-1", 0, A, "matrix.seeds[0]", "expected a non-negative integer, got -1"},
    {"matrix.seeds[2]", "7", 0, A, "matrix.seeds[2]", "duplicate value 7 (also matrix.seeds[0])"},
    {"matrix.seeds", "[]", 0, A, "matrix.seeds", "must not be empty"},
    {"matrix.seeds",
     "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32]",
     0, A, "matrix.seeds", "expected at most 32 values"},
    {"matrix.backends[1]", "\"tpu\"", 0, A, "matrix.backends[1]", "unknown backend \"tpu\""},
    {"matrix.backends[1]", "\"ref\"", 0, A, "matrix.backends[1]",
     "duplicate value \"ref\" (also matrix.backends[0])"},
    {"matrix.backends", "\"ref\"", 0, F, "matrix.backends", "expected an array, got \"ref\""},
    {"matrix.modes[0]", "\"turbo\"", 0, A, "matrix.modes[0]",
     "expected one of \"deterministic\", \"fast\", \"canonical\", got \"turbo\""},
    {"matrix.threads[1]", "257", 0, A, "matrix.threads[1]", "expected an integer in 1..256"},
    {"matrix.threads[1]", "0", 0, A, "matrix.threads[1]", "got 0"},
    {"matrix.threads", "4", 0, F, "matrix.threads", "expected an array, got 4"},
    /* checks */
    {"checks[0]", "\"det\"", 0, F, "checks[0]", "expected an object, got \"det\""},
    {"checks[0].extra", "1", 0, F, "checks[0]", "unknown key \"extra\""},
    {"checks[0].name", NULL, 0, F, "checks[0]", "missing required key \"name\""},
    {"checks[0].name", "\"no spaces\"", 0, A, "checks[0].name", "expected a name"},
    {"checks[2].name", "\"det-repeatable\"", 0, A, "checks[2].name",
     "duplicate check name \"det-repeatable\" (also checks[0].name)"},
    {"checks[0].kind", "\"bitwise\"", 0, A, "checks[0].kind", "got \"bitwise\""},
    {"checks[0].kind", NULL, 1, F, "checks[0]", "duplicate key \"kind\""},
    {"checks[0].axis", "\"seeds\"", 0, F, "checks[0].axis", "only for cross checks"},
    {"checks[1].axis", NULL, 0, F, "checks[1]", "missing required key \"axis\""},
    {"checks[1].axis", "\"device\"", 0, A, "checks[1].axis", "got \"device\""},
    {"checks[1].axis", "2", 0, F, "checks[1].axis", "got 2"},
    {"matrix.backends", "[\"ref\"]", 0, A, "checks[1].axis", "matrix.backends has only one value"},
    {"checks[0].expect", NULL, 0, F, "checks[0]", "missing required key \"expect\""},
    {"checks[0].expect", "\"exact\"", 0, A, "checks[0].expect", "got \"exact\""},
    {"checks[0].expect", "true", 0, F, "checks[0].expect", "got true"},
    {"checks[0].expect", "{}", 0, A, "checks[0].expect", "at least one of atol, rtol, ulp"},
    {"checks[1].expect.abs", "1", 0, F, "checks[1].expect", "unknown key \"abs\""},
    {"checks[1].expect.atol", "-1e-5", 0, A, "checks[1].expect.atol", "expected a number >= 0"},
    {"checks[1].expect.rtol", "\"1e-4\"", 0, F, "checks[1].expect.rtol", "got \"1e-4\""},
    {"checks[2].expect.ulp", "1.5", 0, A, "checks[2].expect.ulp",
     "expected a non-negative integer, got 1.5"},
    {"checks[2].expect.ulp", "-4", 0, A, "checks[2].expect.ulp", "got -4"},
    {"checks[0].where", "[]", 0, F, "checks[0].where", "expected an object, got an array"},
    {"checks[0].where.device", "\"cpu\"", 0, F, "checks[0].where", "unknown key \"device\""},
    {"checks[0].where.mode", NULL, 1, F, "checks[0].where", "duplicate key \"mode\""},
    {"checks[0].where.modes", "\"fast\"", 0, F, "checks[0].where",
     "duplicate key \"modes\" (same axis as \"mode\")"},
    {"checks[0].where.mode", "\"turbo\"", 0, A, "checks[0].where.mode",
     "\"turbo\" is not in matrix.modes (\"deterministic\", \"fast\")"},
    {"checks[0].where.mode", "[]", 0, A, "checks[0].where.mode", "must not be empty"},
    {"checks[0].where.mode", "[\"fast\", \"fast\"]", 0, A, "checks[0].where.mode[1]",
     "duplicate value \"fast\""},
    {"checks[2].where.seed[1]", "3", 0, A, "checks[2].where.seed[1]",
     "3 is not in matrix.seeds (7, 1)"},
    {"checks[2].where.backends[0]", "\"cuda\"", 0, A, "checks[2].where.backends[0]",
     "\"cuda\" is not in matrix.backends (\"ref\", \"blas\")"},
    {"checks[2].where.threads", "\"4\"", 0, F, "checks[2].where.threads",
     "expected an integer in 1..256, got \"4\""},
    {"checks[2].where.threads", "2", 0, A, "checks[2].where.threads",
     "2 is not in matrix.threads (1, 4)"},
    {"checks[1].where", "{\"backend\": \"ref\"}", 0, A, "checks[1].where",
     "cross check over backends compares nothing"},
};

static int suite_should_reject_each_bad_suite_naming_its_json_path(void) {
    int failures = 0;
    for (size_t i = 0; i < sizeof BAD_EDITS / sizeof BAD_EDITS[0]; i++) {
        const bad_edit *b = &BAD_EDITS[i];
        char what[256];
        snprintf(what, sizeof what, "case %zu (%s%s = %s)", i, b->dup ? "duplicate " : "", b->path,
                 b->json ? b->json : "deleted");
        char *text = edited(b->path, b->json, b->dup);
        failures += expect_failure(what, text, strlen(text), b->status, b->where, b->want);
        free(text);
    }
    CHECK(failures == 0, "%d of %zu bad suites were not rejected as expected", failures,
          sizeof BAD_EDITS / sizeof BAD_EDITS[0]);
    return 0;
}

/* FULL with the first occurrence of `from` replaced by `to`. */
static char *replaced(const char *from, const char *to) {
    const char *at = strstr(FULL, from);
    SB_ASSERT(at);
    size_t head = (size_t)(at - FULL), n = strlen(FULL) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    SB_ASSERT(out);
    memcpy(out, FULL, head);
    memcpy(out + head, to, strlen(to));
    strcpy(out + head + strlen(to), at + strlen(from));
    return out;
}

typedef struct bad_text {
    const char *from, *to;   /* edit of FULL's text; from == NULL: `to` is the whole text */
    sb_status status;
    const char *where;
    const char *want;
} bad_text;

static const bad_text BAD_TEXTS[] = {
    /* FULL's line 4 is `  "model": {"kind": "mlp", "hidden": [16, 8], "activation": "tanh"},` */
    /* cJSON points at or just after the offending character; where it points
     * one past (a missing key string), only the line is pinned down */
    {"\"tanh\"}", "\"tanh\",}", F, "", "line 4, column "},
    {"\"repeats\": 3,", "\"repeats\" 3,", F, "", "line 12, column 13: malformed JSON"},
    {"\"samples\": 256", "\"samples\": 1e400", A, "data.samples", "got a number out of range"},
    {"\"noise\": 0.5", "\"noise\": -1e400", A, "data.noise", "got a number out of range"},
    /* numbers cJSON accepts but JSON does not */
    {"\"samples\": 256", "\"samples\": 0256", F, "",
     "line 5, column 40: malformed JSON: an invalid number"},
    {"\"noise\": 0.5", "\"noise\": 1.", F, "",
     "line 6, column 21: malformed JSON: an invalid number"},
    {"\"a full suite\"", "\"a \\u0000 full suite\"", F, "",
     "line 3, column 21: malformed JSON: a NUL character"},
    {"\"a full suite\"", "\"caf\xc3\"", F, "", "line 3, column 22: invalid UTF-8"},
    {"\"a full suite\"", "\"\xed\xa0\x80\"", F, "", "line 3, column 19: invalid UTF-8"},
    {"\"a full suite\"", "\"\\ud800\"", F, "", "line 3, column "},
    {"\"lr\": 0.005", "\"lr\": NaN", F, "", "line 8, column 49: malformed JSON"},
    {"  ]\n}\n", "  ]\n}\n}", F, "", "line 24, column 1: malformed JSON: text after the end"},
    {"  ]\n}\n", "  ]\n", F, "", "malformed JSON"},
    {"\"seeds\": [7, 1]", "\"seeds\": [9007199254740992, 1]", A, "matrix.seeds[0]",
     "expected a non-negative integer, got 9007199254740992 (the limit is 2^53 - 1"},
    {"\"seeds\": [7, 1]", "\"seeds\": [7, 1, 9007199254740993]", A, "matrix.seeds[2]",
     "got 9007199254740992"},
    {"\"seeds\": [7, 1]", "\"seeds\": [7, 1e400]", A, "matrix.seeds[1]",
     "expected a non-negative integer, got a number out of range"},
    {NULL, "", F, "", "empty"},
    {NULL, " \n\t ", F, "", "empty"},
    {NULL, "{\"a\": 1} x", F, "", "line 1, column 10: malformed JSON"},
    {NULL, "[", F, "", "line 1, column 1: malformed JSON"},
    {NULL, "null", F, "", "expected a JSON object at the top level, got null"},
};

/* The sequence models and their token data: values, defaults, and each bad
 * key or value named by its path. */
static char *seq_suite(const char *model, const char *data) {
    static const char fmt[] =
        "{\"name\": \"seq\", \"model\": %s, \"data\": %s,\n"
        " \"train\": {\"steps\": 3, \"batch\": 4, \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},\n"
        " \"checks\": [{\"name\": \"rep\", \"kind\": \"repeatable\", \"expect\": \"bitwise\"}]}";
    size_t n = strlen(fmt) + strlen(model) + strlen(data) + 1;
    char *out = malloc(n);
    SB_ASSERT(out);
    snprintf(out, n, fmt, model, data);
    return out;
}

static int suite_should_parse_the_sequence_models_and_reject_their_bad_keys(void) {
    static const char chars[] =
        "{\"kind\": \"chars\", \"samples\": 40, \"seq_len\": 12, \"vocab\": 27}";
    sb_error err;
    char *text = seq_suite("{\"kind\": \"rnn\", \"embed\": 8, \"hidden\": 24}", chars);
    sb_suite *s = parse(text, &err);
    free(text);
    CHECK(s != NULL, "rnn suite: %s", err.msg);
    const sb_run_config *b = &s->base;
    CHECK(!strcmp(b->model.kind, "rnn") && b->model.embed == 8 && b->model.hidden == 24,
          "rnn sizes %d %d", b->model.embed, b->model.hidden);
    CHECK(!strcmp(b->data.kind, "chars") && b->data.samples == 40 && b->data.features == 13 &&
              b->data.classes == 27 && b->data.noise == 0.1f,
          "chars: features = seq_len + 1, classes = vocab, noise defaults to 0.1");
    CHECK(sb_run_config_validate(b, &err) == SB_OK, "validate: %s", err.msg);
    sb_suite_free(s);

    text = seq_suite("{\"kind\": \"transformer\", \"tied\": true}", chars);
    s = parse(text, &err);
    free(text);
    CHECK(s != NULL, "transformer suite: %s", err.msg);
    b = &s->base;
    CHECK(b->model.d_model == 64 && b->model.heads == 4 && b->model.layers == 2 &&
              b->model.mlp == 256 && b->model.tied == 1,
          "transformer defaults: d_model 64, heads 4, layers 2, mlp 256; tied as given");
    CHECK(sb_run_config_validate(b, &err) == SB_OK, "validate: %s", err.msg);
    char *json = sb_run_config_to_json(b);
    CHECK(json && strstr(json, "\"d_model\":64") && strstr(json, "\"tied\":true"),
          "config JSON: %s", json ? json : "(null)");
    free(json);
    sb_suite_free(s);

    static const struct {
        const char *model, *data;
        sb_status status;
        const char *where, *want;
    } bad[] = {
        {"{\"kind\": \"rnn\", \"heads\": 2}", chars, F, "model.heads",
         "not a key of model.kind \"rnn\""},
        {"{\"kind\": \"transformer\", \"hidden\": 2}", chars, F, "model.hidden",
         "not a key of model.kind \"transformer\""},
        {"{\"kind\": \"mlp\", \"embed\": 2}", chars, F, "model.embed",
         "not a key of model.kind \"mlp\""},
        {"{\"kind\": \"rnn\", \"hidden\": 0}", chars, A, "model.hidden",
         "expected an integer in 1..1024, got 0"},
        {"{\"kind\": \"rnn\", \"hidden\": [8]}", chars, F, "model.hidden", "got an array"},
        {"{\"kind\": \"transformer\", \"d_model\": 30, \"heads\": 4}", chars, A, "model.heads",
         "4 heads do not divide d_model 30"},
        {"{\"kind\": \"transformer\", \"layers\": 5}", chars, A, "model.layers",
         "expected an integer in 1..4, got 5"},
        {"{\"kind\": \"transformer\", \"tied\": 1}", chars, F, "model.tied",
         "expected true or false"},
        {"{\"kind\": \"rnn\"}",
         "{\"kind\": \"blobs\", \"samples\": 40, \"features\": 4, \"classes\": 3}", A,
         "model.kind", "a rnn needs token data"},
        {"{\"kind\": \"mlp\"}", chars, A, "model.kind", "token data (data.kind \"chars\") needs"},
        {"{\"kind\": \"rnn\"}",
         "{\"kind\": \"chars\", \"samples\": 40, \"seq_len\": 12, \"vocab\": 65}", A,
         "data.vocab", "expected an integer in 2..64, got 65"},
        {"{\"kind\": \"rnn\"}", "{\"kind\": \"chars\", \"samples\": 40, \"vocab\": 27}", F,
         "data", "missing required key \"seq_len\""},
        {"{\"kind\": \"rnn\"}",
         "{\"kind\": \"chars\", \"samples\": 40, \"seq_len\": 4, \"vocab\": 27, "
         "\"augment\": {\"noise\": 1}}",
         F, "data", "unknown key \"augment\""},
        {"{\"kind\": \"rnn\"}",
         "{\"kind\": \"chars\", \"samples\": 40, \"seq_len\": 4, \"vocab\": 27, "
         "\"noise\": 1}",
         A, "data.noise", "got 1"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "sequence case %zu", i);
        text = seq_suite(bad[i].model, bad[i].data);
        failures += expect_failure(what, text, strlen(text), bad[i].status, bad[i].where,
                                   bad[i].want);
        free(text);
    }
    CHECK(failures == 0, "%d sequence-model suites were not rejected as expected", failures);

    /* the engine's own check, for configs filled by hand */
    sb_run_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model.kind, sizeof c.model.kind, "transformer");
    c.model.d_model = 32;
    c.model.heads = 3;
    c.model.layers = 1;
    c.model.mlp = 64;
    snprintf(c.data.kind, sizeof c.data.kind, "chars");
    c.data.samples = 10;
    c.data.features = 9;
    c.data.classes = 27;
    c.batch = 2;
    c.steps = 1;
    c.threads = 1;
    snprintf(c.optim.name, sizeof c.optim.name, "sgd");
    c.optim.lr = 0.1f;
    CHECK(sb_run_config_validate(&c, &err) == SB_ERR_ARG && strstr(err.msg, "model.heads"),
          "heads 3 of 32: %s", err.msg);
    c.model.heads = 4;
    CHECK(sb_run_config_validate(&c, &err) == SB_OK, "valid: %s", err.msg);
    c.data.aug_noise = 0.5f;
    CHECK(sb_run_config_validate(&c, &err) == SB_ERR_ARG && strstr(err.msg, "data.augment"),
          "token data with noise augmentation: %s", err.msg);
    return 0;
}

static int suite_should_report_malformed_text_with_line_and_column(void) {
    int failures = 0;
    for (size_t i = 0; i < sizeof BAD_TEXTS / sizeof BAD_TEXTS[0]; i++) {
        const bad_text *b = &BAD_TEXTS[i];
        char what[256];
        snprintf(what, sizeof what, "text case %zu (%s)", i, b->to);
        char *text = b->from ? replaced(b->from, b->to) : strdup(b->to);
        SB_ASSERT(text);
        failures += expect_failure(what, text, strlen(text), b->status, b->where, b->want);
        free(text);
    }
    /* a NUL byte inside the text (cJSON alone would skip it as whitespace) */
    static const char with_nul[] = "{\"name\":\0 \"x\"}";
    failures += expect_failure("NUL byte", with_nul, sizeof with_nul - 1, F, "",
                               "line 1, column 9: a NUL byte");
    CHECK(failures == 0, "%d malformed texts were not rejected as expected", failures);
    return 0;
}

static int suite_should_refuse_a_matrix_of_more_than_100000_runs(void) {
    /* 32 seeds x 2 backends x 2 modes x 32 threads x 100 repeats = 409600 runs */
    char seeds[256] = "[", threads[256] = "[";
    for (int i = 0; i < 32; i++) {
        size_t o = strlen(seeds), t = strlen(threads);
        snprintf(seeds + o, sizeof seeds - o, "%s%d", i ? "," : "", i);
        snprintf(threads + t, sizeof threads - t, "%s%d", i ? "," : "", i + 1);
    }
    strcat(seeds, "]");
    strcat(threads, "]");
    char matrix[700];
    snprintf(matrix, sizeof matrix,
             "{\"seeds\": %s, \"backends\": [\"ref\", \"blas\"], \"modes\": [\"deterministic\", "
             "\"fast\"], \"threads\": %s}",
             seeds, threads);
    char *text = edited("matrix", matrix, 0);
    char *text2 = NULL;
    int rc = 0;
    /* with FULL's 3 repeats it is 12288 runs: fine */
    sb_error err;
    sb_suite *s = parse(text, &err);
    if (!s) fprintf(stderr, "12288 runs should parse: %s\n", err.msg), rc = 1;
    sb_suite_free(s);
    free(text);
    text = NULL;
    if (rc == 0) {
        /* now with 100 repeats */
        cJSON *root = cJSON_Parse(FULL);
        SB_ASSERT(root);
        cJSON_ReplaceItemInObjectCaseSensitive(root, "matrix", cJSON_Parse(matrix));
        cJSON_ReplaceItemInObjectCaseSensitive(root, "repeats", cJSON_CreateNumber(100));
        text2 = cJSON_Print(root);
        cJSON_Delete(root);
        rc = expect_failure("409600 runs", text2, strlen(text2), A, "matrix",
                            "expands to 409600 runs");
    }
    free(text2);
    CHECK(rc == 0, "run-count limit");
    return 0;
}

/* ======================================================================
 * Loading files
 * ==================================================================== */

/* 0 when loading `path` fails with `status` and a message starting
 * "PATH: " + start. */
static int load_fails(const char *path, sb_status status, const char *start) {
    sb_error err;
    char prefix[512];
    memset(&err, 0, sizeof err);
    snprintf(prefix, sizeof prefix, "%s: %s", path, start);
    sb_suite *s = sb_suite_load(path, &err);
    if (!s && err.status == status && strncmp(err.msg, prefix, strlen(prefix)) == 0) return 0;
    fprintf(stderr, "loading %s: got [%s] %s, want [%s] %s...\n", path, sb_status_str(err.status),
            s ? "(parsed)" : err.msg, sb_status_str(status), prefix);
    sb_suite_free(s);
    return 1;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    int bad = fputs(text, f) == EOF;
    return fclose(f) != 0 || bad;
}

static int suite_load_should_read_a_file_and_name_it_in_errors(void) {
    char dir[] = "/tmp/sb_test_suite_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
    char good[256], bad[256], missing[256], big[256];
    snprintf(good, sizeof good, "%s/good.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    snprintf(missing, sizeof missing, "%s/missing.json", dir);
    snprintf(big, sizeof big, "%s/big.json", dir);
    int failures = write_text(good, FULL) + write_text(bad, "{\"name\": \"x\", \"bogus\": 1}");
    /* 16 MiB + 1 bytes (zeros then a space): over the limit before any parsing */
    FILE *f = fopen(big, "wb");
    if (!f || fseek(f, 16L * 1024 * 1024, SEEK_SET) != 0 || fputc(' ', f) == EOF) failures++;
    if (f && fclose(f) != 0) failures++;

    sb_error err;
    memset(&err, 0, sizeof err);
    sb_suite *s = sb_suite_load(good, &err);
    if (!s) fprintf(stderr, "load failed: %s\n", err.msg), failures++;
    else if (strcmp(s->path, good) != 0 || s->n_checks != 3 || s->text_len != strlen(FULL))
        fprintf(stderr, "loaded: path %s, %d checks\n", s->path, s->n_checks), failures++;
    sb_suite_free(s);

    failures += load_fails(bad, SB_ERR_FORMAT, "unknown key \"bogus\"");
    failures += load_fails(missing, SB_ERR_IO, "cannot read: ");
    failures += load_fails(dir, SB_ERR_IO, "cannot read: ");
    failures += load_fails(big, SB_ERR_FORMAT, "larger than 16 MiB");

    unlink(good);
    unlink(bad);
    unlink(big);
    rmdir(dir);
    CHECK(failures == 0, "%d file checks failed", failures);
    return 0;
}

static int suite_free_should_accept_null(void) {
    sb_suite_free(NULL);
    sb_run_spec *runs = (sb_run_spec *)&runs; /* must be reset to NULL on failure */
    CHECK(sb_suite_expand(NULL, &runs) == -1 && runs == NULL, "expand of NULL suite");
    return 0;
}

static const sb_test_case CASES[] = {
    SB_CASE(suite_should_parse_a_full_suite_into_its_values),
    SB_CASE(suite_should_fill_defaults_for_optional_keys),
    SB_CASE(suite_should_keep_the_exact_text_and_its_sha256),
    SB_CASE(suite_should_accept_integral_numbers_in_any_spelling),
    SB_CASE(suite_should_accept_a_utf8_byte_order_mark),
    SB_CASE(expand_should_nest_seeds_backends_modes_threads_repeats),
    SB_CASE(where_should_match_only_the_listed_axis_values),
    SB_CASE(axis_names_should_parse_both_spellings_and_print_values),
    SB_CASE(suite_should_reject_each_bad_suite_naming_its_json_path),
    SB_CASE(suite_should_parse_the_sequence_models_and_reject_their_bad_keys),
    SB_CASE(suite_should_report_malformed_text_with_line_and_column),
    SB_CASE(suite_should_refuse_a_matrix_of_more_than_100000_runs),
    SB_CASE(suite_load_should_read_a_file_and_name_it_in_errors),
    SB_CASE(suite_free_should_accept_null),
};

SB_TEST_MAIN(CASES)
