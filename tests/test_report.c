/* test_report.c — unit tests of the reports (harness/report*.c): escaping,
 * ULP buckets, loading a summary.json (and refusing a malformed one), the
 * verdict matrix, JUnit counts, the per-tensor ULP histograms and the
 * guard against paths that leave the results folder.
 *
 * Results folders here are synthetic: a hand-written summary.json (and, for
 * the histograms, two small checkpoints) in a scratch folder, so each case
 * pins one behaviour. Reports of real runs, rendered by Chromium and
 * validated by xmllint, are tested by tests/report_check.py.
 */
#include "../harness/harness.h"
#include "../harness/report.h"
#include "sb_test.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- scratch folder ---- */

static char scratch[64];

static void scratch_cleanup(void) { sb_rm_rf(scratch); }

/* A fresh, empty folder under the scratch folder. */
static void fresh_dir(char *out, size_t n, const char *name) {
    if (!scratch[0]) {
        snprintf(scratch, sizeof scratch, "/tmp/sb_test_report_XXXXXX");
        SB_ASSERT(mkdtemp(scratch));
        atexit(scratch_cleanup);
    }
    snprintf(out, n, "%s/%s", scratch, name);
    sb_rm_rf(out);
    sb_error err = {0};
    SB_ASSERT(sb_mkdir_p(out, &err) == 0);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    SB_ASSERT(f);
    fputs(text, f);
    fclose(f);
}

/* A summary with two cells (a: 2 repeats, b: one crashed run), a failing
 * repeatable check, a cross check that errs, and a baseline check. */
static const char *SUMMARY =
    "{\"schema\": \"samebits.summary/1\", \"suite\": \"syn\", \"suite_sha256\": \"ab\","
    " \"suite_file\": \"suite.json\", \"finished_at\": \"2026-01-02T03:04:05Z\", \"seconds\": 1.5,"
    " \"blas\": \"OpenBLAS test\", \"exit_code\": 3, \"verdict\": \"error\","
    " \"runs\": ["
    "  {\"id\": \"a-r0\", \"cell\": \"a\", \"config\": {\"repeat\": 0}, \"status\": \"ok\","
    "   \"checkpoint\": \"runs/a-r0/weights.safetensors\", \"sha256\": \"00\", \"dir\": \"runs/a-r0\", \"seconds\": 0.25},"
    "  {\"id\": \"a-r1\", \"cell\": \"a\", \"config\": {\"repeat\": 1}, \"status\": \"ok\","
    "   \"checkpoint\": \"runs/a-r1/weights.safetensors\", \"sha256\": \"00\", \"dir\": \"runs/a-r1\", \"seconds\": 0.5},"
    "  {\"id\": \"b-r0\", \"cell\": \"b\", \"status\": \"crashed\", \"checkpoint\": null,"
    "   \"error\": \"killed by signal 11\", \"dir\": \"runs/b-r0\", \"seconds\": 0.125}],"
    " \"checks\": ["
    "  {\"name\": \"rep\", \"kind\": \"repeatable\", \"expect\": \"bitwise\", \"status\": \"fail\","
    "   \"comparisons\": [{\"a\": \"a-r0\", \"b\": \"a-r1\", \"status\": \"fail\", \"bitwise_equal\": false,"
    "     \"max_abs\": 0.5, \"max_rel\": 0.25, \"max_ulp\": 8, \"mismatched\": 3, \"elements\": 4,"
    "     \"worst_tensor\": \"w\", \"first_divergence\": {\"step\": 2, \"stage\": \"backward\","
    "     \"op\": \"fc1/bias.grad\", \"kind\": \"source\"}, \"sources\": [{\"op\": \"fc1/bias.grad\","
    "     \"stage\": \"backward\", \"first_step\": 2, \"steps\": 5}], \"growth\": [{\"step\": 1,"
    "     \"max_abs\": 0, \"max_ulp\": 0}, {\"step\": 2, \"max_abs\": 0.5, \"max_ulp\": 8}]}]},"
    "  {\"name\": \"cross\", \"kind\": \"cross\", \"axis\": \"seed\", \"expect\": {\"atol\": 0.1},"
    "   \"status\": \"error\", \"message\": \"run b-r0 crashed\","
    "   \"comparisons\": [{\"a\": \"a-r0\", \"b\": \"b-r0\", \"status\": \"error\", \"error\": \"b-r0 did not finish\"}]},"
    "  {\"name\": \"base\", \"kind\": \"baseline\", \"expect\": \"bitwise\", \"status\": \"pass\","
    "   \"comparisons\": [{\"a\": \"a-r0\", \"b\": \"baseline:a\", \"status\": \"pass\", \"bitwise_equal\": true,"
    "     \"environment_differs\": [{\"field\": \"blas.core\", \"baseline\": \"Haswell\", \"run\": \"SkylakeX\"}],"
    "     \"expect_used\": \"expect\"}]}]}";

/* Two F32 checkpoints whose tensor w differs by 0, 1, 8 ULP and NaN-vs-number. */
static void write_checkpoints(const char *dir) {
    float a[4] = {1.0f, 1.0f, 2.0f, 1.0f}, b[4];
    memcpy(b, a, sizeof b);
    uint32_t u;
    memcpy(&u, &b[1], 4), u += 1, memcpy(&b[1], &u, 4);
    memcpy(&u, &b[2], 4), u += 8, memcpy(&b[2], &u, 4);
    b[3] = NAN;
    int64_t shape[1] = {4};
    const float *vals[2] = {a, b};
    const char *names[2] = {"a-r0", "a-r1"};
    for (int i = 0; i < 2; i++) {
        char run[512], path[600];
        snprintf(run, sizeof run, "%s/runs/%s", dir, names[i]);
        sb_error err = {0};
        SB_ASSERT(sb_mkdir_p(run, &err) == 0);
        snprintf(path, sizeof path, "%s/weights.safetensors", run);
        sb_st_writer *w = sb_st_writer_new();
        SB_ASSERT(w && sb_st_writer_add(w, "w", SB_DT_F32, 1, shape, vals[i], &err) == SB_OK);
        SB_ASSERT(sb_st_writer_save(w, path, 1, &err) == SB_OK);
        sb_st_writer_free(w);
    }
}

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* ---- cases ---- */

static int text_xml_should_escape_markup_and_replace_invalid_utf8(void) {
    sb_text t = {0};
    sb_text_xml_attr(&t, "<a href=\"x\">&'\n\t\x01\xff\xc3\x28\xed\xa0\x80 \xc3\xa9\xe2\x9c\x85");
    const char *want = "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&#10;&#9;\xef\xbf\xbd\xef\xbf\xbd"
                       "\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xc3\xa9\xe2\x9c\x85";
    CHECK(t.p && !strcmp(t.p, want), "got \"%s\"", t.p ? t.p : "(null)");
    t.len = 0;
    sb_text_xml(&t, "line\nnext\ttab\r");
    CHECK(!strcmp(t.p, "line\nnext\ttab&#13;"), "text keeps newlines and tabs: \"%s\"", t.p);
    t.len = 0;
    sb_text_xml(&t, NULL);
    CHECK(!strcmp(t.p, "\xe2\x80\x94"), "NULL is a dash: \"%s\"", t.p);
    sb_text_free(&t);
    return 0;
}

static int text_md_should_escape_markdown_and_keep_tables_intact(void) {
    sb_text t = {0};
    sb_text_md(&t, "a|b *c* _d_ `e` [f] <g> & #h\nnext");
    const char *want = "a\\|b \\*c\\* \\_d\\_ \\`e\\` \\[f\\] &lt;g&gt; &amp; \\#h next";
    CHECK(t.p && !strcmp(t.p, want), "got \"%s\"", t.p ? t.p : "(null)");
    t.len = 0;
    sb_text_md_code(&t, "x|y`z\n\x01");
    CHECK(!strcmp(t.p, "x\\|y'z  "), "code span: \"%s\"", t.p);
    sb_text_free(&t);
    return 0;
}

static int ulp_bucket_should_be_the_bit_length_of_the_distance(void) {
    static const struct { uint64_t ulp; int bucket; } T[] = {
        {0, 0}, {1, 1}, {2, 2}, {3, 2}, {4, 3}, {7, 3}, {8, 4}, {1ULL << 31, 32},
        {(1ULL << 32) - 1, 32}, {UINT64_MAX - 1, 64}, {UINT64_MAX, SB_REPORT_ULP_NAN}};
    for (size_t i = 0; i < sizeof T / sizeof *T; i++)
        CHECK(sb_report_ulp_bucket(T[i].ulp) == T[i].bucket, "ulp %llu: bucket %d, expected %d",
              (unsigned long long)T[i].ulp, sb_report_ulp_bucket(T[i].ulp), T[i].bucket);
    return 0;
}

static int load_should_name_the_place_of_a_malformed_summary(void) {
    static const struct { const char *text, *where; } T[] = {
        {"{\"schema\": \"samebits.summary/1\", \"suite\": ", "line 1, column"},
        {"{\"schema\": \"x\"}", "schema"},
        {"{\"schema\": \"samebits.summary/1\", \"suite\": \"s\", \"runs\": [{\"id\": 1}], \"checks\": []}",
         "runs[0].id"},
        {"{\"schema\": \"samebits.summary/1\", \"suite\": \"s\", \"runs\": [], \"checks\": "
         "[{\"name\": \"c\", \"status\": \"pass\", \"comparisons\": [{\"a\": \"x\", \"status\": \"pass\"}]}]}",
         "checks[0].comparisons[0].b"},
        {"{\"schema\": \"samebits.summary/1\", \"suite\": \"s\", \"runs\": [], \"checks\": []} x",
         "not valid JSON"},
        {"{\"schema\": \"samebits.summary/1\", \"suite\": \"s\", \"runs\": [{\"id\": \"a\", "
         "\"status\": \"ok\", \"status\": \"crashed\"}], \"checks\": []}",
         "runs[0].status: duplicate key"},
    };
    char dir[256];
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        fresh_dir(dir, sizeof dir, "bad");
        write_text(dir, "summary.json", T[i].text);
        sb_error err = {0};
        sb_report *r = sb_report_load(dir, &err);
        CHECK(!r, "case %zu loaded", i);
        CHECK(err.status == SB_ERR_FORMAT && strstr(err.msg, "summary.json") &&
                  strstr(err.msg, T[i].where) && !strchr(err.msg, '\n'),
              "case %zu: \"%s\" should name %s", i, err.msg, T[i].where);
    }
    fresh_dir(dir, sizeof dir, "none");
    sb_error err = {0};
    CHECK(!sb_report_load(dir, &err) && err.status == SB_ERR_IO && strstr(err.msg, "summary.json"),
          "missing summary: %s", err.msg);
    return 0;
}

static int matrix_should_mark_each_cell_with_its_worst_comparison(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "matrix");
    write_text(dir, "summary.json", SUMMARY);
    sb_error err = {0};
    sb_report *r = sb_report_load(dir, &err);
    CHECK(r, "load: %s", err.msg);
    CHECK(r->n_cells == 2 && !strcmp(r->cells[0], "a") && !strcmp(r->cells[1], "b"), "cells");
    CHECK(r->cell_of_run[0] == 0 && r->cell_of_run[1] == 0 && r->cell_of_run[2] == 1, "cell of run");
    const unsigned char *m = r->matrix; /* [cell][check]: rep, cross, base */
    CHECK(m[0] == SB_REPORT_FAIL && m[1] == SB_REPORT_ERROR && m[2] == SB_REPORT_PASS,
          "cell a: %d %d %d", m[0], m[1], m[2]);
    CHECK(m[3] == SB_REPORT_NOT_COVERED && m[4] == SB_REPORT_ERROR && m[5] == SB_REPORT_NOT_COVERED,
          "cell b: %d %d %d", m[3], m[4], m[5]);
    CHECK(sb_report_find_run(r, "b-r0") == 2 && sb_report_find_run(r, "zz") == -1, "find run");
    sb_report_free(r);
    return 0;
}

static int junit_should_count_a_crashed_run_an_erring_check_and_a_failure(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "junit");
    write_text(dir, "summary.json", SUMMARY);
    sb_error err = {0};
    sb_report *r = sb_report_load(dir, &err);
    CHECK(r, "load: %s", err.msg);
    char *x = NULL;
    size_t len = 0;
    CHECK(sb_report_junit(r, &x, &len, &err) == SB_OK && x && strlen(x) == len, "render: %s", err.msg);
    /* 3 runs + 3 checks + 3 comparisons; failures: rep and its comparison; errors: the
       crashed run, the cross check and its comparison */
    CHECK(strstr(x, "<testsuite name=\"syn\" tests=\"9\" failures=\"2\" errors=\"3\" skipped=\"0\" "
                    "time=\"1.500\" timestamp=\"2026-01-02T03:04:05\">"), "%s", x);
    CHECK(count(x, "<testcase ") == 9 && count(x, "<failure ") == 2 && count(x, "<error ") == 3,
          "%s", x);
    CHECK(strstr(x, "<error type=\"crashed\" message=\"run crashed: killed by signal 11\""), "%s", x);
    CHECK(strstr(x, "<error type=\"check-error\" message=\"check could not be evaluated: run b-r0 crashed\""),
          "%s", x);
    CHECK(strstr(x, "name=\"a-r0 vs a-r1\" time=\"0.000\">\n      <failure type=\"drift\" message=\"worst "
                    "tensor w: max ULP 8, max abs 0.5, max rel 0.25 (3 of 4 elements disagree); source: "
                    "fc1/bias.grad (backward) at step 2\""), "%s", x);
    CHECK(strstr(x, "environment differs") == NULL, "passing comparisons carry no details");
    CHECK(strstr(x, "classname=\"syn.runs\" name=\"a-r0\" time=\"0.250\"/>"), "%s", x);
    free(x);
    sb_report_free(r);
    return 0;
}

static int histogram_should_bucket_ulp_distances_per_tensor(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "hist");
    write_text(dir, "summary.json", SUMMARY);
    write_checkpoints(dir);
    sb_error err = {0};
    sb_report *r = sb_report_load(dir, &err);
    CHECK(r, "load: %s", err.msg);
    CHECK(r->n_hists == 1 && r->hists[0].check == 0 && r->hists[0].cmp == 0,
          "one histogram, of the failing check's comparison (%d)", r->n_hists);
    const sb_report_hist *h = &r->hists[0];
    CHECK(!h->error[0] && h->n == 1 && h->t[0].elementwise, "error \"%s\"", h->error);
    const uint64_t *b = h->t[0].bucket;
    CHECK(b[0] == 1 && b[1] == 1 && b[4] == 1 && b[SB_REPORT_ULP_NAN] == 1 && h->max_bucket == 4 &&
              h->has_nan && h->t[0].max_ulp == UINT64_MAX,
          "buckets 0:%llu 1:%llu 4:%llu nan:%llu max %d", (unsigned long long)b[0],
          (unsigned long long)b[1], (unsigned long long)b[4],
          (unsigned long long)b[SB_REPORT_ULP_NAN], h->max_bucket);
    char *html = NULL;
    size_t len;
    CHECK(sb_report_html(r, &html, &len, &err) == SB_OK, "html: %s", err.msg);
    CHECK(count(html, "<svg ") >= 3, "growth, histogram and loss charts expected");
    CHECK(!strstr(html, "http:") && !strstr(html, "https:") && !strstr(html, "<script"),
          "the page refers to nothing outside itself");
    CHECK(strstr(html, "Content-Security-Policy\" content=\"default-src 'none'"), "CSP");
    CHECK(strstr(html, "blas.core") && strstr(html, "Haswell"), "baseline fingerprint differences");
    free(html);
    sb_report_free(r);
    return 0;
}

static int paths_outside_the_results_folder_should_never_be_opened(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "escape");
    const char *text =
        "{\"schema\": \"samebits.summary/1\", \"suite\": \"s\", \"runs\": ["
        " {\"id\": \"x\", \"status\": \"ok\", \"checkpoint\": \"../escape/summary.json\", \"dir\": \"..\"},"
        " {\"id\": \"y\", \"status\": \"ok\", \"checkpoint\": \"/etc/hostname\", \"dir\": \"/etc\"}],"
        " \"checks\": [{\"name\": \"c\", \"status\": \"fail\", \"comparisons\": [{\"a\": \"x\", \"b\": \"y\","
        " \"status\": \"fail\", \"bitwise_equal\": false, \"max_ulp\": 1}]}]}";
    write_text(dir, "summary.json", text);
    sb_error err = {0};
    sb_report *r = sb_report_load(dir, &err);
    CHECK(r, "load: %s", err.msg);
    for (int i = 0; i < r->n_artifacts; i++)
        CHECK(!strstr(r->artifacts[i].path, "..") && r->artifacts[i].path[0] != '/',
              "artifact %s opened", r->artifacts[i].path);
    CHECK(r->n_artifacts == 2, "only suite.json and summary.json: %d", r->n_artifacts);
    CHECK(r->n_hists == 1 && strstr(r->hists[0].error, "no checkpoint"), "hist: %s", r->hists[0].error);
    for (int i = 0; i < r->n_losses; i++) CHECK(r->losses[i].error[0], "losses read from outside");
    sb_report_free(r);
    return 0;
}

static int write_should_refuse_existing_reports_unless_overwriting(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "write");
    write_text(dir, "summary.json", SUMMARY);
    sb_error err = {0};
    CHECK(sb_report_write(dir, 0, &err) == SB_OK, "first write: %s", err.msg);
    CHECK(sb_report_write(dir, 0, &err) == SB_ERR_EXISTS && strstr(err.msg, "junit.xml") &&
              strstr(err.msg, "--force"), "second write: %s", err.msg);
    CHECK(sb_report_write(dir, 1, &err) == SB_OK, "overwrite: %s", err.msg);
    return 0;
}

static const sb_test_case CASES[] = {
    SB_CASE(text_xml_should_escape_markup_and_replace_invalid_utf8),
    SB_CASE(text_md_should_escape_markdown_and_keep_tables_intact),
    SB_CASE(ulp_bucket_should_be_the_bit_length_of_the_distance),
    SB_CASE(load_should_name_the_place_of_a_malformed_summary),
    SB_CASE(matrix_should_mark_each_cell_with_its_worst_comparison),
    SB_CASE(junit_should_count_a_crashed_run_an_erring_check_and_a_failure),
    SB_CASE(histogram_should_bucket_ulp_distances_per_tensor),
    SB_CASE(paths_outside_the_results_folder_should_never_be_opened),
    SB_CASE(write_should_refuse_existing_reports_unless_overwriting),
};
SB_TEST_MAIN(CASES)
