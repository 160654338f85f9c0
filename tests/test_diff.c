/* test_diff.c — tests of harness/diff.c (ULP distance, tolerance semantics,
 * per-tensor and per-file results) and of the `samebits diff` / `samebits
 * inspect` commands (exit codes, one-line errors, JSON that parses).
 *
 * Not tested here: file validation (test_safetensors.c) and bad files on the
 * command line (tests/bad_input.sh). The CLI cases find the samebits binary
 * in the SB_BIN environment variable and a Python in SB_PYTHON (default
 * python3; only its json module is used), both set by tests/safetensors.cmake.
 */
#include "../harness/diff.h"
#include "sb_test.h"

#include <cjson/cJSON.h>

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- scratch files ------------------------------------------------------ */

static char scratch[64];

static void scratch_cleanup(void) {
    DIR *d = opendir(scratch);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", scratch, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(scratch);
}

static const char *scratch_dir(void) {
    if (!scratch[0]) {
        snprintf(scratch, sizeof scratch, "/tmp/sb_test_diff_XXXXXX");
        SB_ASSERT(mkdtemp(scratch));
        atexit(scratch_cleanup);
    }
    return scratch;
}

typedef struct tspec {
    const char *name;
    sb_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
} tspec;

/* Writes tensors to scratch/<tag>.safetensors and reads the file back. */
static sb_st_file *mkfile(const char *tag, const tspec *t, int n) {
    char path[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/%s.safetensors", scratch_dir(), tag);
    sb_st_writer *w = sb_st_writer_new();
    for (int i = 0; i < n; i++)
        if (sb_st_writer_add(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape, t[i].data, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            sb_st_writer_free(w);
            return NULL;
        }
    sb_status s = sb_st_writer_save(w, path, 1, &err);
    sb_st_writer_free(w);
    if (s != SB_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    sb_st_file *f = sb_st_read(path, &err);
    if (!f) fprintf(stderr, "%s\n", err.msg);
    return f;
}

static const sb_tolerance BITWISE = {.bitwise = 1};

static sb_tolerance tol_atol_rtol(double atol, double rtol) {
    sb_tolerance t = {.has_atol = 1, .has_rtol = 1, .atol = atol, .rtol = rtol};
    return t;
}

static sb_tolerance tol_ulp(uint64_t ulp) {
    sb_tolerance t = {.has_ulp = 1, .ulp = ulp};
    return t;
}

static float f32_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Diffs one single-tensor pair of F32 arrays. */
static int diff1(const float *a, const float *b, int n, const sb_tolerance *tol, sb_file_diff *out) {
    tspec ta = {"t", SB_DT_F32, 1, {n}, a}, tb = {"t", SB_DT_F32, 1, {n}, b};
    sb_st_file *fa = mkfile("a", &ta, 1), *fb = mkfile("b", &tb, 1);
    sb_error err = {0};
    int rc = fa && fb && sb_diff_st(fa, fb, tol, out, &err) == SB_OK ? 0 : -1;
    if (rc) fprintf(stderr, "diff: %s\n", err.msg);
    sb_st_free(fa);
    sb_st_free(fb);
    return rc;
}

/* ---- ULP distance ------------------------------------------------------- */

static int ulp_distance_should_be_zero_for_equal_values(void) {
    const float v[] = {0.0f, 1.0f, -3.5f, FLT_MAX, FLT_MIN, f32_bits(1), INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK(sb_ulp_distance_f32(v[i], v[i]) == 0, "%a", (double)v[i]);
    return 0;
}

static int ulp_distance_should_be_zero_between_plus_and_minus_zero(void) {
    CHECK(sb_ulp_distance_f32(0.0f, -0.0f) == 0, "f32");
    CHECK(sb_ulp_distance_f32(-0.0f, 0.0f) == 0, "f32 reversed");
    CHECK(sb_ulp_distance_f64(0.0, -0.0) == 0, "f64");
    return 0;
}

static int ulp_distance_should_be_one_to_the_next_float(void) {
    CHECK(sb_ulp_distance_f32(1.0f, nextafterf(1.0f, 2.0f)) == 1, "up");
    CHECK(sb_ulp_distance_f32(nextafterf(1.0f, 0.0f), 1.0f) == 1, "down");
    CHECK(sb_ulp_distance_f32(-1.0f, nextafterf(-1.0f, -2.0f)) == 1, "negative side");
    /* across a binade boundary the step size changes but the count does not */
    CHECK(sb_ulp_distance_f32(nextafterf(2.0f, 0.0f), nextafterf(2.0f, 4.0f)) == 2, "binade");
    return 0;
}

static int ulp_distance_should_count_values_across_zero_on_sign_crossing(void) {
    float tiny = f32_bits(1); /* smallest positive subnormal */
    CHECK(sb_ulp_distance_f32(tiny, -tiny) == 2, "got %llu",
          (unsigned long long)sb_ulp_distance_f32(tiny, -tiny));
    CHECK(sb_ulp_distance_f32(-1.0f, 1.0f) == 2ull * 0x3f800000u, "got %llu",
          (unsigned long long)sb_ulp_distance_f32(-1.0f, 1.0f));
    CHECK(sb_ulp_distance_f32(-0.0f, tiny) == 1, "-0 to the first subnormal");
    return 0;
}

static int ulp_distance_should_count_subnormals_one_by_one(void) {
    CHECK(sb_ulp_distance_f32(0.0f, f32_bits(1)) == 1, "0 to the first subnormal");
    CHECK(sb_ulp_distance_f32(f32_bits(0x007fffff), FLT_MIN) == 1, "largest subnormal to FLT_MIN");
    CHECK(sb_ulp_distance_f32(0.0f, FLT_MIN) == 0x00800000u, "all subnormals below FLT_MIN");
    CHECK(sb_ulp_distance_f32(f32_bits(5), f32_bits(0x80000003)) == 8, "5 + 3 across zero");
    return 0;
}

static int ulp_distance_should_be_one_from_flt_max_to_infinity(void) {
    CHECK(sb_ulp_distance_f32(FLT_MAX, INFINITY) == 1, "+");
    CHECK(sb_ulp_distance_f32(-FLT_MAX, -INFINITY) == 1, "-");
    return 0;
}

static int ulp_distance_should_span_the_whole_line_from_minus_to_plus_infinity(void) {
    CHECK(sb_ulp_distance_f32(-INFINITY, INFINITY) == 2ull * 0x7f800000u, "got %llu",
          (unsigned long long)sb_ulp_distance_f32(-INFINITY, INFINITY));
    return 0;
}

static int ulp_distance_should_be_infinite_from_nan_to_a_number_and_zero_between_nans(void) {
    float qnan = f32_bits(0x7fc00000), other = f32_bits(0xffc12345);
    CHECK(sb_ulp_distance_f32(qnan, 1.0f) == UINT64_MAX, "nan vs 1");
    CHECK(sb_ulp_distance_f32(0.0f, qnan) == UINT64_MAX, "0 vs nan");
    CHECK(sb_ulp_distance_f32(INFINITY, qnan) == UINT64_MAX, "inf vs nan");
    CHECK(sb_ulp_distance_f32(qnan, other) == 0, "nan vs nan of another payload");
    return 0;
}

static int ulp_distance_f64_should_follow_the_same_rules(void) {
    double tiny = 4.9406564584124654e-324, qnan = NAN;
    CHECK(sb_ulp_distance_f64(1.0, 1.0) == 0, "equal");
    CHECK(sb_ulp_distance_f64(0.0, -0.0) == 0, "zeros");
    CHECK(sb_ulp_distance_f64(1.0, nextafter(1.0, 2.0)) == 1, "next");
    CHECK(sb_ulp_distance_f64(tiny, -tiny) == 2, "subnormal sign crossing");
    CHECK(sb_ulp_distance_f64(-1.0, 1.0) == 2ull * 0x3ff0000000000000ull, "-1 vs 1");
    CHECK(sb_ulp_distance_f64(0.0, DBL_MIN) == 0x0010000000000000ull, "subnormals");
    CHECK(sb_ulp_distance_f64(DBL_MAX, INFINITY) == 1, "max to inf");
    CHECK(sb_ulp_distance_f64(-INFINITY, INFINITY) == 2ull * 0x7ff0000000000000ull, "whole line");
    CHECK(sb_ulp_distance_f64(qnan, 0.0) == UINT64_MAX && sb_ulp_distance_f64(qnan, -qnan) == 0,
          "nan");
    return 0;
}

static int tolerance_str_should_print_only_the_given_fields(void) {
    char b[128];
    sb_tolerance t = {.has_atol = 1, .atol = 1e-6, .has_ulp = 1, .ulp = 4};
    sb_tolerance_str(&t, b, sizeof b);
    CHECK(!strcmp(b, "atol=1e-06 ulp=4"), "%s", b);
    t = tol_atol_rtol(0, 0.125);
    sb_tolerance_str(&t, b, sizeof b);
    CHECK(!strcmp(b, "atol=0 rtol=0.125"), "%s", b);
    t = (sb_tolerance){.has_rtol = 1, .rtol = 0.1};
    sb_tolerance_str(&t, b, sizeof b);
    CHECK(!strcmp(b, "rtol=0.1"), "%s", b);
    sb_tolerance_str(&BITWISE, b, sizeof b);
    CHECK(!strcmp(b, "bitwise"), "%s", b);
    sb_tolerance none = {0};
    sb_tolerance_str(&none, b, sizeof b);
    CHECK(!strcmp(b, "bitwise"), "no criterion is bitwise: %s", b);
    return 0;
}

/* ---- diff semantics ----------------------------------------------------- */

static int diff_should_report_identical_files_as_bitwise_equal(void) {
    float w[6] = {1, -2, 3.5f, 0, -0.0f, 1e-30f};
    double b[2] = {0.25, -7};
    tspec t[2] = {{"w", SB_DT_F32, 2, {2, 3}, w}, {"b", SB_DT_F64, 1, {2}, b}};
    sb_st_file *fa = mkfile("a", t, 2), *fb = mkfile("b", t, 2);
    sb_file_diff d;
    sb_error err = {0};
    CHECK(fa && fb && sb_diff_st(fa, fb, &BITWISE, &d, &err) == SB_OK, "%s", err.msg);
    CHECK(d.n == 2 && !strcmp(d.t[0].name, "b") && !strcmp(d.t[1].name, "w"), "sorted union");
    CHECK(d.bitwise_equal && d.within && d.mismatched == 0 && d.total == 8, "equal");
    CHECK(d.worst_tensor[0] == 0, "worst %s", d.worst_tensor);
    CHECK(d.t[1].bitwise_equal && d.t[1].within && d.t[1].numel == 6, "tensor");
    sb_file_diff_free(&d);
    sb_file_diff_free(&d); /* twice is harmless */
    sb_st_free(fa);
    sb_st_free(fb);
    return 0;
}

static int diff_should_fail_bitwise_but_pass_a_tolerance_for_one_ulp(void) {
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {1, 2, 3, 4, 5};
    b[3] = nextafterf(4.0f, 5.0f);
    sb_file_diff d;
    CHECK(diff1(a, b, 5, &BITWISE, &d) == 0, "diff");
    CHECK(!d.within && !d.bitwise_equal && d.mismatched == 1, "bitwise: mismatched %llu",
          (unsigned long long)d.mismatched);
    CHECK(d.t[0].differing == 1 && d.t[0].max_ulp == 1 && d.t[0].worst_index == 3, "stats");
    CHECK(d.t[0].worst_a == 4.0 && d.t[0].worst_b == (double)b[3], "values %a %a", d.t[0].worst_a,
          d.t[0].worst_b);
    CHECK(d.t[0].max_abs == (double)b[3] - 4.0, "max_abs %a", d.t[0].max_abs);
    sb_file_diff_free(&d);
    sb_tolerance t = tol_ulp(1);
    CHECK(diff1(a, b, 5, &t, &d) == 0, "diff");
    CHECK(d.within && !d.bitwise_equal && d.mismatched == 0 && d.t[0].differing == 1, "ulp=1");
    sb_file_diff_free(&d);
    t = (sb_tolerance){.has_atol = 1, .atol = 1e-6}; /* 1 ULP at 4 is 4.8e-7 */
    CHECK(diff1(a, b, 5, &t, &d) == 0, "diff");
    CHECK(d.within, "atol=1e-6");
    sb_file_diff_free(&d);
    return 0;
}

static int diff_should_apply_atol_and_rtol_like_allclose_relative_to_b(void) {
    /* |a-b| = 0.5 and 1.0; all values exact in binary, so the boundaries are exact */
    double a[2] = {1.0, 2.0}, b[2] = {1.5, 1.0};
    tspec ta = {"t", SB_DT_F64, 1, {2}, a}, tb = {"t", SB_DT_F64, 1, {2}, b};
    sb_st_file *fa = mkfile("a", &ta, 1), *fb = mkfile("b", &tb, 1);
    sb_file_diff d;
    sb_tolerance t;
    CHECK(fa && fb, "files");
    t = (sb_tolerance){.has_atol = 1, .atol = 0.5}; /* 0.5 <= 0.5 holds, 1 does not */
    CHECK(sb_diff_st(fa, fb, &t, &d, NULL) == SB_OK && d.mismatched == 1 && !d.within, "atol");
    CHECK(d.max_abs == 1.0 && d.t[0].max_rel == 1.0, "max_abs %g max_rel %g", d.max_abs, d.max_rel);
    sb_file_diff_free(&d);
    t = (sb_tolerance){.has_rtol = 1, .rtol = 0.5}; /* 0.5 <= 0.75 yes, 1 <= 0.5 no */
    CHECK(sb_diff_st(fa, fb, &t, &d, NULL) == SB_OK && d.mismatched == 1, "rtol vs b");
    sb_file_diff_free(&d);
    /* swapped, b = {1, 2} is the reference: 0.5 <= 0.5 and 1 <= 1 */
    CHECK(sb_diff_st(fb, fa, &t, &d, NULL) == SB_OK && d.mismatched == 0 && d.within, "rtol vs a");
    sb_file_diff_free(&d);
    t = tol_atol_rtol(0.25, 0.25); /* 0.5 <= 0.625 yes, 1 <= 0.5 no */
    CHECK(sb_diff_st(fa, fb, &t, &d, NULL) == SB_OK && d.mismatched == 1, "atol + rtol");
    CHECK(d.t[0].worst_index == 1, "worst %llu", (unsigned long long)d.t[0].worst_index);
    sb_file_diff_free(&d);
    sb_st_free(fa);
    sb_st_free(fb);
    return 0;
}

static int diff_should_apply_the_ulp_limit(void) {
    float a[1] = {1.0f}, b[1] = {f32_bits(0x3f800003)}; /* 3 ULP above 1 */
    sb_file_diff d;
    sb_tolerance t = tol_ulp(2);
    CHECK(diff1(a, b, 1, &t, &d) == 0 && !d.within && d.max_ulp == 3, "ulp=2");
    sb_file_diff_free(&d);
    t = tol_ulp(3);
    CHECK(diff1(a, b, 1, &t, &d) == 0 && d.within, "ulp=3");
    sb_file_diff_free(&d);
    return 0;
}

static int diff_should_require_every_given_criterion(void) {
    /* near zero: 1000 ULP apart but only 1.4e-42 in value */
    float a[1] = {0.0f}, b[1] = {f32_bits(1000)};
    sb_file_diff d;
    sb_tolerance t = {.has_atol = 1, .atol = 1e-6};
    CHECK(diff1(a, b, 1, &t, &d) == 0 && d.within, "atol alone passes");
    sb_file_diff_free(&d);
    t.has_ulp = 1;
    t.ulp = 10;
    CHECK(diff1(a, b, 1, &t, &d) == 0 && !d.within, "atol and ulp: ulp fails");
    sb_file_diff_free(&d);
    /* large: 1 ULP apart but 7.6e22 in value */
    float c[1] = {1e30f}, e[1] = {nextafterf(1e30f, INFINITY)};
    t = (sb_tolerance){.has_ulp = 1, .ulp = 1};
    CHECK(diff1(c, e, 1, &t, &d) == 0 && d.within, "ulp alone passes");
    sb_file_diff_free(&d);
    t.has_atol = 1;
    t.atol = 1.0;
    CHECK(diff1(c, e, 1, &t, &d) == 0 && !d.within, "ulp and atol: atol fails");
    sb_file_diff_free(&d);
    return 0;
}

static int diff_should_report_tensors_present_in_one_file_only(void) {
    float x[3] = {1, 2, 3}, y[2] = {4, 5}, z[4] = {0};
    tspec ta[2] = {{"x", SB_DT_F32, 1, {3}, x}, {"y", SB_DT_F32, 1, {2}, y}};
    tspec tb[2] = {{"z", SB_DT_F32, 1, {4}, z}, {"y", SB_DT_F32, 1, {2}, y}};
    sb_st_file *fa = mkfile("a", ta, 2), *fb = mkfile("b", tb, 2);
    sb_file_diff d;
    sb_tolerance t = tol_atol_rtol(1e9, 1e9);
    CHECK(fa && fb && sb_diff_st(fa, fb, &t, &d, NULL) == SB_OK, "diff");
    CHECK(d.n == 3 && !strcmp(d.t[0].name, "x") && !strcmp(d.t[2].name, "z"), "union");
    CHECK(d.t[0].in_a && !d.t[0].in_b && !d.t[0].within && d.t[0].mismatched == 3, "x only in a");
    CHECK(d.t[1].in_a && d.t[1].in_b && d.t[1].within && d.t[1].bitwise_equal, "y in both");
    CHECK(!d.t[2].in_a && d.t[2].in_b && !d.t[2].within && d.t[2].numel == 4, "z only in b");
    CHECK(!d.within && !d.bitwise_equal && d.mismatched == 7 && d.total == 9, "file: %llu of %llu",
          (unsigned long long)d.mismatched, (unsigned long long)d.total);
    sb_file_diff_free(&d);
    sb_st_free(fa);
    sb_st_free(fb);
    return 0;
}

static int diff_should_report_dtype_and_shape_mismatches(void) {
    float w[6] = {0};
    double w64[6] = {0};
    tspec ta[2] = {{"v", SB_DT_F32, 2, {2, 3}, w}, {"w", SB_DT_F32, 2, {2, 3}, w}};
    tspec tb[2] = {{"v", SB_DT_F32, 2, {3, 2}, w}, {"w", SB_DT_F64, 2, {2, 3}, w64}};
    sb_st_file *fa = mkfile("a", ta, 2), *fb = mkfile("b", tb, 2);
    sb_file_diff d;
    sb_tolerance t = tol_atol_rtol(1e9, 1e9);
    CHECK(fa && fb && sb_diff_st(fa, fb, &t, &d, NULL) == SB_OK, "diff");
    CHECK(d.t[0].same_dtype && !d.t[0].same_shape && !d.t[0].within, "v: shape");
    CHECK(!d.t[1].same_dtype && !d.t[1].within, "w: dtype");
    CHECK(!strcmp(d.t[1].dtype_a, "F32") && !strcmp(d.t[1].dtype_b, "F64"), "dtype names");
    CHECK(!d.within && !d.bitwise_equal, "file");
    sb_file_diff_free(&d);
    sb_st_free(fa);
    sb_st_free(fb);
    return 0;
}

static int diff_should_count_nan_in_one_file_and_fail_even_with_a_huge_tolerance(void) {
    float a[3] = {1, 2, 3}, b[3] = {1, NAN, 3};
    sb_file_diff d;
    sb_tolerance t = tol_atol_rtol(1e300, 1e300);
    t.has_ulp = 1;
    t.ulp = UINT64_MAX;
    CHECK(diff1(a, b, 3, &t, &d) == 0, "diff");
    CHECK(!d.within && d.mismatched == 1 && d.t[0].nan_mismatch == 1, "nan mismatch %llu",
          (unsigned long long)d.t[0].nan_mismatch);
    CHECK(d.t[0].max_ulp == UINT64_MAX && d.t[0].worst_index == 1 && isnan(d.t[0].worst_b), "worst");
    CHECK(d.t[0].inf_mismatch == 0 && d.max_abs == 0, "nan is not a finite pair");
    CHECK(!strcmp(d.worst_tensor, "t"), "worst tensor");
    sb_file_diff_free(&d);
    return 0;
}

static int diff_should_let_nan_agree_with_nan_under_a_tolerance_but_see_payload_bits(void) {
    float a[2] = {f32_bits(0x7fc00000), 1}, b[2] = {f32_bits(0x7fc00001), 1};
    sb_file_diff d;
    sb_tolerance t = tol_ulp(0);
    CHECK(diff1(a, b, 2, &t, &d) == 0, "diff");
    CHECK(d.within && !d.bitwise_equal && d.t[0].differing == 1 && d.t[0].nan_mismatch == 0,
          "tolerance");
    sb_file_diff_free(&d);
    CHECK(diff1(a, b, 2, &BITWISE, &d) == 0 && !d.within, "bitwise sees the payload");
    sb_file_diff_free(&d);
    CHECK(diff1(a, a, 2, &BITWISE, &d) == 0 && d.within, "same NaN bits are equal");
    sb_file_diff_free(&d);
    return 0;
}

static int diff_should_count_inf_mismatches(void) {
    float a[4] = {INFINITY, -INFINITY, FLT_MAX, 1}, b[4] = {INFINITY, INFINITY, INFINITY, 1};
    sb_file_diff d;
    sb_tolerance t = tol_atol_rtol(1e300, 1e300);
    t.has_ulp = 1;
    t.ulp = 10;
    CHECK(diff1(a, b, 4, &t, &d) == 0, "diff");
    CHECK(d.t[0].inf_mismatch == 2 && d.mismatched == 2 && !d.within, "inf mismatches %llu",
          (unsigned long long)d.t[0].inf_mismatch);
    CHECK(d.t[0].max_ulp == 2ull * 0x7f800000u && d.t[0].worst_index == 1, "worst");
    CHECK(d.t[0].max_abs == 0, "only finite pairs count for max_abs: %g", d.t[0].max_abs);
    sb_file_diff_free(&d);
    return 0;
}

static int diff_should_see_the_sign_of_zero_bitwise_but_not_under_a_tolerance(void) {
    float a[2] = {1, 0.0f}, b[2] = {1, -0.0f};
    sb_file_diff d;
    CHECK(diff1(a, b, 2, &BITWISE, &d) == 0 && !d.within && d.t[0].differing == 1, "bitwise");
    CHECK(d.t[0].max_ulp == 0 && d.t[0].worst_index == 1, "worst is the differing element");
    CHECK(!strcmp(d.worst_tensor, "t"), "worst tensor '%s'", d.worst_tensor);
    sb_file_diff_free(&d);
    sb_tolerance t = tol_atol_rtol(0, 0);
    CHECK(diff1(a, b, 2, &t, &d) == 0 && d.within, "atol=0 rtol=0");
    sb_file_diff_free(&d);
    return 0;
}

static int diff_should_name_the_worst_tensor_and_its_worst_index(void) {
    float t0a[2] = {0.5f, 0.5f}, t0b[2] = {0.5f, f32_bits(0x3f000002)}; /* 2 ULP at 0.5 */
    float t1a[20], t1b[20];
    double t2a[3] = {1, 2, 3}, t2b[3] = {1, 2, 3};
    for (int i = 0; i < 20; i++) t1a[i] = t1b[i] = 1.0f;
    t1b[19] = f32_bits(0x3f800001); /* [3,4]: 1 ULP */
    t1b[7] = f32_bits(0x3f800002);  /* [1,2]: 2 ULP, first of the maximum */
    t1b[12] = f32_bits(0x3f800002); /* [2,2]: 2 ULP, a tie later on */
    t2b[2] = nextafter(3.0, 4.0);
    tspec ta[3] = {{"t0", SB_DT_F32, 1, {2}, t0a}, {"t1", SB_DT_F32, 2, {4, 5}, t1a},
                   {"t2", SB_DT_F64, 1, {3}, t2a}};
    tspec tb[3] = {{"t0", SB_DT_F32, 1, {2}, t0b}, {"t1", SB_DT_F32, 2, {4, 5}, t1b},
                   {"t2", SB_DT_F64, 1, {3}, t2b}};
    sb_st_file *fa = mkfile("a", ta, 3), *fb = mkfile("b", tb, 3);
    sb_file_diff d;
    CHECK(fa && fb && sb_diff_st(fa, fb, &BITWISE, &d, NULL) == SB_OK, "diff");
    /* t0 and t1 both reach 2 ULP; t1's step is larger, so its abs error wins */
    CHECK(!strcmp(d.worst_tensor, "t1"), "worst tensor %s", d.worst_tensor);
    CHECK(d.max_ulp == 2 && d.t[1].worst_index == 7, "worst index %llu",
          (unsigned long long)d.t[1].worst_index);
    CHECK(d.t[1].worst_a == 1.0 && d.t[1].worst_b == 1.0 + 0x1p-22, "values %a %a", d.t[1].worst_a,
          d.t[1].worst_b);
    CHECK(d.t[1].differing == 3 && d.t[2].max_ulp == 1 && d.mismatched == 5, "counts");
    sb_file_diff_free(&d);
    sb_st_free(fa);
    sb_st_free(fb);
    return 0;
}

static int diff_should_compare_other_dtypes_bytewise_whatever_the_tolerance(void) {
    int32_t ia[3] = {1, 2, 3}, ib[3] = {1, 2, 4};
    uint16_t ha[2] = {0x3f80, 0x4000}, hb[2] = {0x3f81, 0x4000}; /* BF16, 1 ULP apart */
    tspec ta[2] = {{"bf", SB_DT_BF16, 1, {2}, ha}, {"i", SB_DT_I32, 1, {3}, ia}};
    tspec tb[2] = {{"bf", SB_DT_BF16, 1, {2}, hb}, {"i", SB_DT_I32, 1, {3}, ib}};
    sb_st_file *fa = mkfile("a", ta, 2), *fb = mkfile("b", tb, 2);
    sb_file_diff d;
    sb_tolerance t = tol_atol_rtol(1e9, 1e9);
    t.has_ulp = 1;
    t.ulp = 1000;
    CHECK(fa && fb && sb_diff_st(fa, fb, &t, &d, NULL) == SB_OK, "diff");
    CHECK(!d.t[0].within && d.t[0].mismatched == 1 && d.t[0].worst_index == 0, "bf16 bytewise");
    CHECK(!d.t[1].within && d.t[1].mismatched == 1 && d.t[1].worst_index == 2, "i32 bytewise");
    CHECK(d.t[1].max_ulp == 0 && d.t[1].max_abs == 0, "no numeric stats for bytewise tensors");
    sb_file_diff_free(&d);
    CHECK(sb_diff_st(fa, fa, &t, &d, NULL) == SB_OK && d.within && d.bitwise_equal, "self");
    sb_file_diff_free(&d);
    sb_st_free(fa);
    sb_st_free(fb);
    return 0;
}

static int diff_files_should_report_the_bad_file(void) {
    float x[1] = {1};
    tspec t = {"x", SB_DT_F32, 1, {1}, x};
    sb_st_file *f = mkfile("good", &t, 1);
    CHECK(f, "file");
    char bad[256], missing[256];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", scratch_dir());
    snprintf(missing, sizeof missing, "%s/missing.safetensors", scratch_dir());
    FILE *fp = fopen(bad, "wb");
    CHECK(fp && fwrite("abc", 1, 3, fp) == 3 && fclose(fp) == 0, "write");
    sb_file_diff d;
    sb_error err = {0};
    CHECK(sb_diff_files(f->path, missing, &BITWISE, &d, &err) == SB_ERR_IO, "missing");
    CHECK(strstr(err.msg, missing) == err.msg, "%s", err.msg);
    CHECK(sb_diff_files(bad, f->path, &BITWISE, &d, &err) == SB_ERR_FORMAT, "bad");
    CHECK(strstr(err.msg, bad) == err.msg, "%s", err.msg);
    CHECK(d.n == 0 && d.t == NULL, "nothing to free after failure");
    CHECK(sb_diff_files(f->path, f->path, &BITWISE, &d, &err) == SB_OK && d.within, "self");
    sb_file_diff_free(&d);
    sb_st_free(f);
    return 0;
}

/* ---- the command line --------------------------------------------------- */

/* Runs `samebits ARGS`, stdout and stderr to files; returns the exit code
 * (or 1000 + signal). */
static int run(const char *args, char *out_path, char *err_path) {
    const char *bin = getenv("SB_BIN");
    char cmd[4096];
    if (!bin) {
        fprintf(stderr, "SB_BIN is not set\n");
        return -1;
    }
    snprintf(out_path, 256, "%s/stdout", scratch_dir());
    snprintf(err_path, 256, "%s/stderr", scratch_dir());
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", bin, args, out_path, err_path);
    int st = system(cmd);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

static const char *python(void) {
    const char *p = getenv("SB_PYTHON");
    return p && *p ? p : "python3";
}

static char *slurp(const char *path) {
    sb_error err;
    size_t n;
    char *s = sb_read_file(path, 1 << 24, &n, &err);
    return s ? s : calloc(1, 1);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Two files for the CLI: A and B differ by 2 ULP at t1[1,2]. */
static int cli_files(char *pa, char *pb) {
    float a[20], b[20];
    for (int i = 0; i < 20; i++) a[i] = b[i] = 1.0f;
    b[7] = f32_bits(0x3f800002);
    double c[2] = {0.5, 0.25};
    tspec ta[2] = {{"t1", SB_DT_F32, 2, {4, 5}, a}, {"c", SB_DT_F64, 1, {2}, c}};
    tspec tb[2] = {{"t1", SB_DT_F32, 2, {4, 5}, b}, {"c", SB_DT_F64, 1, {2}, c}};
    sb_st_file *fa = mkfile("cli_a", ta, 2), *fb = mkfile("cli_b", tb, 2);
    if (!fa || !fb) return -1;
    snprintf(pa, 256, "%s", fa->path);
    snprintf(pb, 256, "%s", fb->path);
    sb_st_free(fa);
    sb_st_free(fb);
    return 0;
}

static int cli_diff_should_exit_0_for_equal_files_and_1_for_drift(void) {
    char pa[256], pb[256], args[1024], o[256], e[256];
    CHECK(cli_files(pa, pb) == 0, "files");
    snprintf(args, sizeof args, "diff '%s' '%s'", pa, pa);
    CHECK(run(args, o, e) == 0, "equal files");
    char *out = slurp(o);
    CHECK(strstr(out, "verdict: AGREE (bitwise)"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "diff '%s' '%s'", pa, pb);
    CHECK(run(args, o, e) == 1, "drift");
    out = slurp(o);
    CHECK(strstr(out, "verdict: DIFFER (bitwise)") && strstr(out, "[1,2]") &&
              strstr(out, "worst t1 (max ULP 2)"), "%s", out);
    free(out);
    char *err = slurp(e);
    CHECK(err[0] == 0, "stderr: %s", err);
    free(err);
    return 0;
}

static int cli_diff_should_exit_0_when_drift_is_within_the_ulp_limit(void) {
    char pa[256], pb[256], args[1024], o[256], e[256];
    CHECK(cli_files(pa, pb) == 0, "files");
    snprintf(args, sizeof args, "diff '%s' '%s' --ulp 2", pa, pb);
    CHECK(run(args, o, e) == 0, "--ulp 2");
    snprintf(args, sizeof args, "diff --ulp=1 '%s' '%s'", pa, pb);
    CHECK(run(args, o, e) == 1, "--ulp=1");
    snprintf(args, sizeof args, "diff '%s' '%s' --atol 1e-3", pa, pb);
    CHECK(run(args, o, e) == 0, "--atol 1e-3");
    snprintf(args, sizeof args, "diff '%s' '%s' --atol 1e-9 --rtol 1e-9", pa, pb);
    CHECK(run(args, o, e) == 1, "--atol 1e-9 --rtol 1e-9");
    return 0;
}

static int cli_diff_should_exit_2_with_one_line_on_bad_usage_and_sloppy_numbers(void) {
    char pa[256], pb[256], args[1024], o[256], e[256];
    CHECK(cli_files(pa, pb) == 0, "files");
    const char *bad[] = {"", "'A'", "--frobnicate 'A' 'B'", "'A' 'B' --atol 1e-3x",
                         "'A' 'B' --atol -1", "'A' 'B' --rtol nan", "'A' 'B' --rtol inf",
                         "'A' 'B' --ulp -1", "'A' 'B' --ulp 1.5", "'A' 'B' --ulp ''",
                         "'A' 'B' --atol", "'A' 'B' 'A'", "'A' /nonexistent/x.safetensors",
                         "'A' /tmp", "'A' 'B' --ulp 99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char a[1024] = "diff ";
        size_t o2 = strlen(a);
        for (const char *p = bad[i]; *p && o2 + 300 < sizeof a; p++) {
            if (*p == 'A' || *p == 'B') o2 += (size_t)snprintf(a + o2, sizeof a - o2, "%s", *p == 'A' ? pa : pb);
            else a[o2++] = *p;
        }
        a[o2] = 0;
        snprintf(args, sizeof args, "%s", a);
        int rc = run(args, o, e);
        char *out = slurp(o), *err = slurp(e);
        int lines = count_lines(err), empty_out = out[0] == 0;
        CHECK(rc == 2 && lines == 1 && empty_out, "`samebits %s`: exit %d, %d stderr lines: %s", args,
              rc, lines, err);
        free(out);
        free(err);
    }
    CHECK(run("diff --help", o, e) == 0, "--help");
    char *out = slurp(o);
    CHECK(strstr(out, "usage: samebits diff"), "%s", out);
    free(out);
    return 0;
}

static int cli_diff_json_should_parse_and_carry_exact_values(void) {
    char pa[256], pb[256], args[1024], o[256], e[256], cmd[1024];
    CHECK(cli_files(pa, pb) == 0, "files");
    snprintf(args, sizeof args, "diff --json '%s' '%s'", pa, pb);
    CHECK(run(args, o, e) == 1, "drift");
    snprintf(cmd, sizeof cmd, "'%s' -c 'import json,sys; json.load(sys.stdin)' < '%s'", python(), o);
    CHECK(system(cmd) == 0, "python3 could not parse the JSON");
    char *out = slurp(o);
    cJSON *j = cJSON_Parse(out);
    CHECK(j, "cJSON could not parse: %s", out);
    free(out);
    int ok = 0;
    const cJSON *w = NULL, *t1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tensor_diffs"), 1);
    if (t1) w = cJSON_GetObjectItem(t1, "worst");
    const cJSON *idx = w ? cJSON_GetObjectItem(w, "index") : NULL;
    ok = !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "verdict")), "differ") &&
         !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "worst_tensor")), "t1") &&
         !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(t1, "name")), "t1") && idx &&
         cJSON_GetArraySize(idx) == 2 && cJSON_GetArrayItem(idx, 0)->valuedouble == 1 &&
         cJSON_GetArrayItem(idx, 1)->valuedouble == 2 &&
         !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(w, "a_hex")), "0x1p+0") &&
         !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(w, "b_hex")), "0x1.000004p+0") &&
         cJSON_GetObjectItem(t1, "max_ulp")->valuedouble == 2 &&
         cJSON_GetObjectItem(t1, "differing")->valuedouble == 1;
    cJSON_Delete(j);
    CHECK(ok, "unexpected JSON content");
    return 0;
}

static int cli_inspect_should_list_tensors_and_parse_as_json(void) {
    char pa[256], pb[256], args[1024], o[256], e[256], cmd[1024];
    CHECK(cli_files(pa, pb) == 0, "files");
    snprintf(args, sizeof args, "inspect '%s'", pa);
    CHECK(run(args, o, e) == 0, "inspect");
    char *out = slurp(o);
    CHECK(strstr(out, "t1") && strstr(out, "[4, 5]") && strstr(out, "weights digest:"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "inspect --json '%s'", pa);
    CHECK(run(args, o, e) == 0, "inspect --json");
    snprintf(cmd, sizeof cmd,
             "'%s' -c 'import json,sys; d=json.load(sys.stdin); "
             "t={x[\"name\"]: x for x in d[\"tensors\"]}; "
             "assert t[\"t1\"][\"shape\"]==[4,5] and t[\"c\"][\"stats\"][\"max\"]==0.5, d' < '%s'",
             python(), o);
    CHECK(system(cmd) == 0, "inspect JSON content");
    CHECK(run("inspect /nonexistent.safetensors", o, e) == 2, "missing file");
    char *err = slurp(e);
    CHECK(count_lines(err) == 1 && strstr(err, "/nonexistent.safetensors"), "%s", err);
    free(err);
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(ulp_distance_should_be_zero_for_equal_values),
    SB_CASE(ulp_distance_should_be_zero_between_plus_and_minus_zero),
    SB_CASE(ulp_distance_should_be_one_to_the_next_float),
    SB_CASE(ulp_distance_should_count_values_across_zero_on_sign_crossing),
    SB_CASE(ulp_distance_should_count_subnormals_one_by_one),
    SB_CASE(ulp_distance_should_be_one_from_flt_max_to_infinity),
    SB_CASE(ulp_distance_should_span_the_whole_line_from_minus_to_plus_infinity),
    SB_CASE(ulp_distance_should_be_infinite_from_nan_to_a_number_and_zero_between_nans),
    SB_CASE(ulp_distance_f64_should_follow_the_same_rules),
    SB_CASE(tolerance_str_should_print_only_the_given_fields),
    SB_CASE(diff_should_report_identical_files_as_bitwise_equal),
    SB_CASE(diff_should_fail_bitwise_but_pass_a_tolerance_for_one_ulp),
    SB_CASE(diff_should_apply_atol_and_rtol_like_allclose_relative_to_b),
    SB_CASE(diff_should_apply_the_ulp_limit),
    SB_CASE(diff_should_require_every_given_criterion),
    SB_CASE(diff_should_report_tensors_present_in_one_file_only),
    SB_CASE(diff_should_report_dtype_and_shape_mismatches),
    SB_CASE(diff_should_count_nan_in_one_file_and_fail_even_with_a_huge_tolerance),
    SB_CASE(diff_should_let_nan_agree_with_nan_under_a_tolerance_but_see_payload_bits),
    SB_CASE(diff_should_count_inf_mismatches),
    SB_CASE(diff_should_see_the_sign_of_zero_bitwise_but_not_under_a_tolerance),
    SB_CASE(diff_should_name_the_worst_tensor_and_its_worst_index),
    SB_CASE(diff_should_compare_other_dtypes_bytewise_whatever_the_tolerance),
    SB_CASE(diff_files_should_report_the_bad_file),
    SB_CASE(cli_diff_should_exit_0_for_equal_files_and_1_for_drift),
    SB_CASE(cli_diff_should_exit_0_when_drift_is_within_the_ulp_limit),
    SB_CASE(cli_diff_should_exit_2_with_one_line_on_bad_usage_and_sloppy_numbers),
    SB_CASE(cli_diff_json_should_parse_and_carry_exact_values),
    SB_CASE(cli_inspect_should_list_tensors_and_parse_as_json),
};

SB_TEST_MAIN(cases)
