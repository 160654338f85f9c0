/* test_fingerprint.c — tests of the environment fingerprint
 * (harness/fingerprint.c, fingerprint_collect.c, cmd_env.c) and of the
 * suite's baseline "fallback" key (harness/suite.c).
 *
 * What it covers: the collected fields against what this machine reports,
 * read here independently (/proc/cpuinfo, the OpenBLAS library, dlopen of
 * the CUDA libraries); numerics environment variables being captured; the
 * difference between two fingerprints keeping exactly the fields that can
 * change bits; the warnings on synthetic fingerprints; `samebits env --json`
 * through sb_cmd_env; parsing of "fallback".
 *
 * What it is not: a test of storing fingerprints in runs, checkpoints,
 * summaries and baselines, or of baseline checks using them (tests/e2e.py
 * does those end to end). It never sets or unsets OPENBLAS_CORETYPE or
 * OPENBLAS_L2_SIZE.
 */
#include "fingerprint.h"
#include "sb_test.h"
#include "suite.h"

#include <cblas.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

static cJSON *collect(void) {
    sb_error err = {0};
    cJSON *fp = sb_fingerprint_collect(NULL, &err);
    if (!fp) fprintf(stderr, "collect: %s\n", err.msg);
    return fp;
}

static const char *str_at(const cJSON *fp, const char *section, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(fp, section), key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The value of the first "KEY : value" line of /proc/cpuinfo, trimmed, in a
 * malloc'd string ("" when absent; NULL when the file cannot be read). */
static char *cpuinfo(const char *key) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return NULL;
    char *line = NULL, *out = NULL;
    size_t cap = 0, klen = strlen(key);
    while (!out && getline(&line, &cap, f) > 0) {
        if (strncmp(line, key, klen) != 0) continue;
        char *p = line + klen;
        while (*p == ' ' || *p == '\t') p++;
        if (*p != ':') continue;
        p++;
        while (*p == ' ') p++;
        size_t n = strlen(p);
        while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == ' ')) p[--n] = '\0';
        out = strdup(p);
    }
    free(line);
    fclose(f);
    return out ? out : strdup("");
}

/* Whether word w is one of the space-separated words of list. */
static int has_word(const char *list, const char *w) {
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)) != NULL; p += n)
        if ((p == list || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\0' ||
                                                             p[n] == '\t' || p[n] == '\n'))
            return 1;
    return 0;
}

static int isa_has(const cJSON *fp, const char *flag) {
    const cJSON *isa = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fp, "cpu"),
                                                        "isa"), *x;
    cJSON_ArrayForEach(x, isa) if (cJSON_IsString(x) && !strcmp(x->valuestring, flag)) return 1;
    return 0;
}

static int warning_count(const cJSON *w, const char *code) {
    const cJSON *x;
    int n = 0;
    cJSON_ArrayForEach(x, w) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "code");
        if (cJSON_IsString(c) && !strcmp(c->valuestring, code)) n++;
    }
    return n;
}

static const char *warning_message(const cJSON *w, const char *code) {
    const cJSON *x;
    cJSON_ArrayForEach(x, w) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "code");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(x, "message");
        if (cJSON_IsString(c) && !strcmp(c->valuestring, code) && cJSON_IsString(m))
            return m->valuestring;
    }
    return "";
}

static void set_str(cJSON *fp, const char *section, const char *key, const char *v) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(fp, section);
    if (!s) s = cJSON_AddObjectToObject(fp, section);
    cJSON_DeleteItemFromObjectCaseSensitive(s, key);
    cJSON_AddStringToObject(s, key, v);
}

/* ---- collected fields against the machine ---- */

static int fingerprint_should_report_the_cpu_model_of_proc_cpuinfo(void) {
    char *model = cpuinfo("model name");
    cJSON *fp = collect();
    CHECK(fp, "collect failed");
    const char *got = str_at(fp, "cpu", "model");
    CHECK(got, "cpu.model missing");
    if (model && model[0]) /* x86 and most others name the model */
        CHECK(!strcmp(got, model), "cpu.model \"%s\", /proc/cpuinfo says \"%s\"", got, model);
    else
        CHECK(got[0], "cpu.model empty");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fp, "cpu"),
                                                      "logical_cpus");
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(cJSON_IsNumber(n) && (long)n->valuedouble == online, "logical_cpus %g, sysconf %ld",
          cJSON_IsNumber(n) ? n->valuedouble : -1.0, online);
    free(model);
    cJSON_Delete(fp);
    return 0;
}

static int fingerprint_should_report_the_openblas_core_name_threads_and_version(void) {
    cJSON *fp = collect();
    CHECK(fp, "collect failed");
    const char *core = str_at(fp, "blas", "core"), *lib = openblas_get_corename();
    CHECK(core && lib && !strcmp(core, lib), "blas.core \"%s\", openblas_get_corename \"%s\"",
          core ? core : "(null)", lib ? lib : "(null)");
    const char *version = str_at(fp, "blas", "version"), *config = openblas_get_config();
    char want[128];
    snprintf(want, sizeof want, "OpenBLAS %s ", version ? version : "?");
    CHECK(version && !strncmp(config, want, strlen(want)), "blas.version \"%s\", config \"%s\"",
          version ? version : "(null)", config);
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fp, "blas"),
                                                       "threads");
    CHECK(cJSON_IsNumber(th) && (int)th->valuedouble == openblas_get_num_threads(),
          "blas.threads %g, openblas_get_num_threads %d",
          cJSON_IsNumber(th) ? th->valuedouble : -1.0, openblas_get_num_threads());
    cJSON_Delete(fp);
    return 0;
}

static int fingerprint_should_list_the_numerics_isa_flags_of_proc_cpuinfo(void) {
    char *flags = cpuinfo("flags");
    if (flags && !flags[0]) { /* arm64 */
        free(flags);
        flags = cpuinfo("Features");
    }
    CHECK(flags, "cannot read /proc/cpuinfo");
    cJSON *fp = collect();
    CHECK(fp, "collect failed");
    /* every flag recorded is one the CPU has */
    const cJSON *isa = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fp, "cpu"),
                                                        "isa"), *x;
    CHECK(cJSON_IsArray(isa), "cpu.isa is not an array");
    cJSON_ArrayForEach(x, isa)
        CHECK(cJSON_IsString(x) && has_word(flags, x->valuestring),
              "cpu.isa has %s, which /proc/cpuinfo does not list", cJSON_IsString(x) ? x->valuestring : "?");
    /* and every flag that changes numerics that the CPU has is recorded */
    static const char *const must[] = {"sse2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                       "avx512vl", "avx512_fp16", "avx512_bf16", "amx_tile",
                                       "amx_bf16", "f16c", "asimd", "sve"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        CHECK(has_word(flags, must[i]) == isa_has(fp, must[i]),
              "%s: /proc/cpuinfo %s it, the fingerprint %s", must[i],
              has_word(flags, must[i]) ? "lists" : "does not list",
              isa_has(fp, must[i]) ? "has it" : "does not");
    free(flags);
    cJSON_Delete(fp);
    return 0;
}

static int fingerprint_should_capture_numerics_environment_variables(void) {
    /* harmless values of variables the fingerprint must capture; an
     * unrelated one must not be. OPENBLAS_CORETYPE / _L2_SIZE are never
     * touched (some machines need them). */
    setenv("OPENBLAS_VERBOSE", "0", 1);
    setenv("MKL_CBWR", "COMPATIBLE", 1);
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 1);
    setenv("SB_TEST_UNRELATED", "1", 1);
    cJSON *fp = collect();
    unsetenv("OPENBLAS_VERBOSE");
    unsetenv("MKL_CBWR");
    unsetenv("CUBLAS_WORKSPACE_CONFIG");
    unsetenv("SB_TEST_UNRELATED");
    CHECK(fp, "collect failed");
    const char *v = str_at(fp, "env", "OPENBLAS_VERBOSE");
    CHECK(v && !strcmp(v, "0"), "env.OPENBLAS_VERBOSE = %s", v ? v : "(missing)");
    v = str_at(fp, "env", "MKL_CBWR");
    CHECK(v && !strcmp(v, "COMPATIBLE"), "env.MKL_CBWR = %s", v ? v : "(missing)");
    v = str_at(fp, "env", "CUBLAS_WORKSPACE_CONFIG");
    CHECK(v && !strcmp(v, ":4096:8"), "env.CUBLAS_WORKSPACE_CONFIG = %s", v ? v : "(missing)");
    CHECK(!str_at(fp, "env", "SB_TEST_UNRELATED"), "captured an unrelated variable");
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    v = str_at(fp, "env", "OPENBLAS_CORETYPE");
    CHECK((!coretype && !v) || (coretype && v && !strcmp(v, coretype)),
          "OPENBLAS_CORETYPE is %s in the process, %s in the fingerprint",
          coretype ? coretype : "unset", v ? v : "missing");
    /* listed among the fields that can change bits */
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(fp, "can_change_bits"), *x;
    int found = 0;
    cJSON_ArrayForEach(x, bits) found += cJSON_IsString(x) && !strcmp(x->valuestring, "env.MKL_CBWR");
    CHECK(found == 1, "can_change_bits lists env.MKL_CBWR %d times", found);
    cJSON_Delete(fp);
    return 0;
}

/* ---- differences ---- */

static int diff_should_report_exactly_the_changed_bit_relevant_fields(void) {
    cJSON *a = collect();
    CHECK(a, "collect failed");
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "env"), "MKL_CBWR");
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "env"),
                                            "OMP_DYNAMIC");
    cJSON *b = cJSON_Duplicate(a, 1);
    /* bit-relevant changes */
    set_str(b, "blas", "core", "Haswell-test");
    set_str(b, "libc", "version", "glibc 0.0");
    cJSON *isa = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "cpu"), "isa");
    cJSON_AddItemToArray(isa, cJSON_CreateString("avx_test_flag"));
    set_str(b, "env", "MKL_CBWR", "AVX2");
    set_str(b, "env", "OMP_DYNAMIC", "false");
    /* informational changes, to be ignored */
    set_str(b, "os", "kernel", "Linux 0.0-test");
    set_str(b, "os", "hostname", "elsewhere");
    set_str(b, "cpu", "model", "Some Other CPU");
    set_str(b, "samebits", "version", "9.9.9");
    set_str(b, "libraries", "cjson", "0.0.1");
    set_str(b, "blas", "config", "other config");
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "cpu"), "logical_cpus");
    cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(b, "cpu"), "logical_cpus", 512);

    static const char *const order_any[] = {"cpu.isa", "libc.version", "blas.core",
                                            "env.MKL_CBWR", "env.OMP_DYNAMIC"};
    static const char *const want_ref[] = {"cpu.isa", "libc.version", "env.OMP_DYNAMIC"};
    sb_fp_diff *d = NULL;
    int n = 0;
    sb_error err = {0};
    CHECK(sb_fingerprint_diff(a, b, NULL, &d, &n, &err) == SB_OK, "%s", err.msg);
    CHECK(n == 5, "%d differences, expected 5 (%s …)", n, n ? d[0].field : "");
    for (int i = 0; i < n; i++)
        CHECK(!strcmp(d[i].field, order_any[i]), "difference %d is %s, expected %s", i,
              d[i].field, order_any[i]);
    CHECK(!strcmp(d[2].b, "Haswell-test") && strcmp(d[2].a, "Haswell-test") != 0,
          "blas.core values %s / %s", d[2].a, d[2].b);
    CHECK(!strcmp(d[3].a, "(unset)") && !strcmp(d[3].b, "AVX2"), "env.MKL_CBWR values %s / %s",
          d[3].a, d[3].b);
    char line[1024];
    sb_fingerprint_diff_str(d, n, line, sizeof line);
    CHECK(strstr(line, "blas.core ") && strstr(line, " \xe2\x86\x92 Haswell-test") &&
              strstr(line, "cpu.isa +avx_test_flag") && strstr(line, "env.MKL_CBWR (unset)"),
          "diff line: %s", line);
    free(d);

    /* a ref run depends on neither the BLAS library nor its variables */
    CHECK(sb_fingerprint_diff(a, b, "ref", &d, &n, &err) == SB_OK, "%s", err.msg);
    CHECK(n == 3, "ref: %d differences, expected 3", n);
    for (int i = 0; i < n; i++)
        CHECK(!strcmp(d[i].field, want_ref[i]), "ref: difference %d is %s, expected %s", i,
              d[i].field, want_ref[i]);
    free(d);

    /* equal fingerprints: nothing */
    CHECK(sb_fingerprint_diff(a, a, NULL, &d, &n, &err) == SB_OK && n == 0 && !d,
          "a fingerprint differs from itself in %d fields", n);
    CHECK(sb_fingerprint_can_change_bits("blas.core", NULL) &&
              !sb_fingerprint_can_change_bits("blas.core", "ref") &&
              !sb_fingerprint_can_change_bits("os.kernel", NULL) &&
              sb_fingerprint_can_change_bits("env.OMP_NUM_THREADS", "ref") &&
              !sb_fingerprint_can_change_bits("no.such", NULL),
          "field classes");
    cJSON_Delete(a);
    cJSON_Delete(b);
    return 0;
}

static int diff_should_treat_a_malformed_fingerprint_as_not_recorded(void) {
    cJSON *a = collect();
    CHECK(a, "collect failed");
    const char *bad[] = {"\"a string\"", "[1, 2]", "{\"cpu\": 7, \"env\": [\"X\"]}",
                         "{\"blas\": {\"core\": {\"nested\": true}}, \"env\": {\"OMP_X\": 3}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *b = cJSON_Parse(bad[i]);
        CHECK(b, "test JSON %zu", i);
        sb_fp_diff *d = NULL;
        int n = 0;
        sb_error err = {0};
        CHECK(sb_fingerprint_diff(a, b, NULL, &d, &n, &err) == SB_OK, "%s", err.msg);
        int isa = -1;
        for (int k = 0; k < n; k++)
            if (!strcmp(d[k].field, "cpu.isa")) isa = k;
        CHECK(isa >= 0 && !strcmp(d[isa].b, "(not recorded)"), "%s: cpu.isa not reported as "
              "not recorded", bad[i]);
        free(d);
        cJSON_Delete(b);
    }
    cJSON_Delete(a);
    return 0;
}

/* A manifest or run.json can hold any number where the fingerprint has a
 * string or a small integer: values outside long long's range (1e300, 2^63)
 * must be printed, never converted to an integer (undefined behaviour, which
 * the sanitizer build reports). */
static int diff_should_print_numbers_outside_the_integer_range(void) {
    cJSON *a = collect();
    CHECK(a, "collect failed");
    static const char *const cases[][2] = {
        {"1e300", "1.0000000000000001e+300"},
        {"-1e300", "-1.0000000000000001e+300"},
        {"9223372036854775808", "9.2233720368547758e+18"},
        {"1e400", "inf"},
        {"123", "123"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "{\"cpu\": {\"arch\": %s}}", cases[i][0]);
        cJSON *b = cJSON_Parse(text);
        CHECK(b, "test JSON %s", text);
        sb_fp_diff *d = NULL;
        int n = 0;
        sb_error err = {0};
        CHECK(sb_fingerprint_diff(a, b, "ref", &d, &n, &err) == SB_OK, "%s", err.msg);
        int arch = -1;
        for (int k = 0; k < n; k++)
            if (!strcmp(d[k].field, "cpu.arch")) arch = k;
        CHECK(arch >= 0 && !strcmp(d[arch].b, cases[i][1]), "cpu.arch %s printed as \"%s\", "
              "expected \"%s\"", cases[i][0], arch >= 0 ? d[arch].b : "(no difference)",
              cases[i][1]);
        free(d);
        cJSON_Delete(b);
    }
    cJSON_Delete(a);
    return 0;
}

/* ---- warnings ---- */

static cJSON *synthetic(const char *core, const char *const *isa, int n_isa) {
    cJSON *fp = cJSON_CreateObject();
    set_str(fp, "blas", "core", core);
    set_str(fp, "blas", "version", "0.3.21");
    set_str(fp, "blas", "built_against", "0.3.21");
    cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(fp, "blas"), "threads", 2);
    cJSON *cpu = cJSON_AddObjectToObject(fp, "cpu");
    cJSON_AddItemToObject(cpu, "isa", cJSON_CreateStringArray(isa, n_isa));
    cJSON_AddObjectToObject(fp, "env");
    set_str(fp, "cuda", "gpu", "no device");
    return fp;
}

static int old_kernel_warning_should_fire_for_prescott_on_an_avx512_cpu(void) {
    static const char *const avx512[] = {"sse2", "avx", "fma", "avx2", "avx512f", "avx512bw"};
    static const char *const avx2[] = {"sse2", "avx", "fma", "avx2"};
    struct {
        const char *core;
        const char *const *isa;
        int n_isa, fires;
    } cases[] = {{"Prescott", avx512, 6, 1}, {"Haswell", avx512, 6, 1},
                 {"Sandybridge", avx2, 4, 1}, {"SkylakeX", avx512, 6, 0},
                 {"Haswell", avx2, 4, 0},     {"NEOVERSEN1", avx512, 6, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *fp = synthetic(cases[i].core, cases[i].isa, cases[i].n_isa);
        cJSON *w = sb_fingerprint_warnings(fp, NULL);
        CHECK(w, "out of memory");
        CHECK(warning_count(w, "blas-old-kernel") == cases[i].fires,
              "core %s on a CPU with %s: warning %s", cases[i].core,
              cases[i].isa[cases[i].n_isa - 1], cases[i].fires ? "missing" : "given");
        if (cases[i].fires) {
            const char *m = warning_message(w, "blas-old-kernel");
            CHECK(strstr(m, cases[i].core) && strstr(m, "OPENBLAS_CORETYPE is not set") &&
                      strstr(m, "differ"), "message: %s", m);
        }
        cJSON_Delete(w);
        cJSON_Delete(fp);
    }
    /* forced by OPENBLAS_CORETYPE (in the synthetic fingerprint only) */
    cJSON *fp = synthetic("Prescott", avx512, 6);
    set_str(fp, "env", "OPENBLAS_CORETYPE", "Prescott");
    cJSON *w = sb_fingerprint_warnings(fp, NULL);
    CHECK(strstr(warning_message(w, "blas-old-kernel"), "OPENBLAS_CORETYPE=Prescott forces it"),
          "forced kernel not named: %s", warning_message(w, "blas-old-kernel"));
    CHECK(warning_count(w, "blas-coretype-forced") == 0, "both warnings for one cause");
    cJSON_Delete(w);
    cJSON_Delete(fp);
    fp = synthetic("SkylakeX", avx512, 6);
    set_str(fp, "env", "OPENBLAS_CORETYPE", "SkylakeX");
    w = sb_fingerprint_warnings(fp, NULL);
    CHECK(warning_count(w, "blas-coretype-forced") == 1 && warning_count(w, "blas-old-kernel") == 0,
          "a forced native kernel should be noted, not called old");
    cJSON_Delete(w);
    cJSON_Delete(fp);
    return 0;
}

static int warnings_should_flag_threads_versions_and_devices(void) {
    static const char *const isa[] = {"sse2", "avx", "fma", "avx2"};
    cJSON *fp = synthetic("Haswell", isa, 4); /* OpenBLAS uses 2 threads */
    struct {
        sb_fp_options o;
        int fires;
    } t[] = {{{"blas", 4}, 1}, {{"blas", 2}, 0}, {{"ref", 4}, 0}, {{NULL, 0}, 0}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        cJSON *w = sb_fingerprint_warnings(fp, &t[i].o);
        CHECK(warning_count(w, "blas-threads") == t[i].fires, "case %zu: threads warning %s", i,
              t[i].fires ? "missing" : "given");
        cJSON_Delete(w);
    }
    set_str(fp, "env", "OPENBLAS_NUM_THREADS", "8");
    cJSON *w = sb_fingerprint_warnings(fp, NULL);
    CHECK(warning_count(w, "blas-threads") == 1 &&
              strstr(warning_message(w, "blas-threads"), "OPENBLAS_NUM_THREADS asks for 8"),
          "OPENBLAS_NUM_THREADS=8 with 2 threads in use: %s", warning_message(w, "blas-threads"));
    CHECK(warning_count(w, "blas-version-mismatch") == 0 &&
              warning_count(w, "cuda-visible-devices") == 0, "spurious warnings");
    cJSON_Delete(w);
    set_str(fp, "blas", "built_against", "0.3.26");
    set_str(fp, "env", "CUDA_VISIBLE_DEVICES", "0");
    w = sb_fingerprint_warnings(fp, NULL);
    CHECK(warning_count(w, "blas-version-mismatch") == 1, "version mismatch not flagged");
    CHECK(warning_count(w, "cuda-visible-devices") == 1, "CUDA_VISIBLE_DEVICES without a GPU");
    cJSON_Delete(w);
    set_str(fp, "cuda", "gpu", "NVIDIA H100 (sm_90)");
    w = sb_fingerprint_warnings(fp, NULL);
    CHECK(warning_count(w, "cuda-visible-devices") == 0, "CUDA_VISIBLE_DEVICES with a GPU flagged");
    cJSON_Delete(w);
    cJSON_Delete(fp);
    return 0;
}

/* ---- CUDA ---- */

/* The first of names[] that dlopen loads (closed again), or -1. */
static int loads(const char *const *names, int n) {
    for (int i = 0; i < n; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            dlclose(h);
            return i;
        }
    }
    return -1;
}

static int is_version(const char *v) {
    if (!v || !(*v >= '0' && *v <= '9')) return 0;
    for (; *v; v++)
        if (!((*v >= '0' && *v <= '9') || *v == '.')) return 0;
    return 1;
}

static int cuda_fields_should_say_absent_or_no_device_when_missing(void) {
    static const char *const driver[] = {"libcuda.so.1"};
    static const char *const runtime[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                                          "libcudart.so.11.0"};
    static const char *const cudnn[] = {"libcudnn.so", "libcudnn.so.9", "libcudnn.so.8"};
    cJSON *fp = collect();
    CHECK(fp, "collect failed");
    const char *d = str_at(fp, "cuda", "driver"), *g = str_at(fp, "cuda", "gpu");
    const char *r = str_at(fp, "cuda", "runtime"), *n = str_at(fp, "cuda", "cudnn");
    CHECK(d && g && r && n, "a cuda field is missing");
    if (loads(driver, 1) < 0) {
        CHECK(!strcmp(d, "absent"), "no libcuda.so.1 here, yet cuda.driver = %s", d);
        CHECK(!strcmp(g, "no device"), "no driver here, yet cuda.gpu = %s", g);
    } else {
        CHECK(is_version(d), "libcuda.so.1 loads, cuda.driver = %s", d);
    }
    if (loads(runtime, 4) < 0)
        CHECK(!strcmp(r, "absent"), "no libcudart here, yet cuda.runtime = %s", r);
    else
        CHECK(is_version(r), "libcudart loads, cuda.runtime = %s", r);
    if (loads(cudnn, 3) < 0)
        CHECK(!strcmp(n, "absent"), "no libcudnn here, yet cuda.cudnn = %s", n);
    else
        CHECK(is_version(n), "libcudnn loads, cuda.cudnn = %s", n);
    cJSON_Delete(fp);
    return 0;
}

/* ---- samebits env ---- */

/* Runs sb_cmd_env with stdout into a file; returns the output (malloc'd). */
static char *run_env(int json, int *rc) {
    char path[] = "/tmp/sb_test_env_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    char *argv[] = {"env", json ? "--json" : NULL, NULL};
    *rc = sb_cmd_env(json ? 2 : 1, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (buf && pread(fd, buf, (size_t)len, 0) == (ssize_t)len) buf[len] = '\0';
    else if (buf) buf[0] = '\0';
    close(fd);
    unlink(path);
    return buf;
}

static int env_command_should_print_every_field_warnings_first(void) {
    int rc = -1;
    char *text = run_env(1, &rc);
    CHECK(text && rc == 0, "samebits env --json: exit %d", rc);
    cJSON *fp = cJSON_Parse(text);
    CHECK(fp, "output is not JSON: %.200s", text);
    static const char *const fields[][2] = {
        {"os", "name"},     {"os", "kernel"},        {"cpu", "model"},      {"cpu", "arch"},
        {"samebits", "compiler"}, {"samebits", "codegen_flags"}, {"libc", "version"},
        {"blas", "library"}, {"blas", "version"},    {"blas", "core"},      {"libraries", "cjson"},
        {"libraries", "openssl"}, {"libraries", "xxhash"}, {"cuda", "driver"},
        {"cuda", "runtime"}, {"cuda", "cudnn"},      {"cuda", "gpu"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        CHECK(str_at(fp, fields[i][0], fields[i][1]), "%s.%s missing", fields[i][0], fields[i][1]);
    const char *cg = str_at(fp, "samebits", "codegen_flags");
    CHECK(strstr(cg, "-ffp-contract=off") && strstr(cg, "-fno-math-errno") &&
              !has_word(cg, "-ffast-math") && !has_word(cg, "-Ofast") &&
              !has_word(cg, "-ffp-contract=fast"),
          "codegen flags: %s", cg);
    CHECK(fp->child && fp->child->next && !strcmp(fp->child->next->string, "warnings") &&
              cJSON_IsArray(fp->child->next), "warnings should come right after the schema");
    cJSON_Delete(fp);
    free(text);
    text = run_env(0, &rc);
    CHECK(text && rc == 0 && !strncmp(text, "warnings:", 9), "human listing: exit %d, starts %.40s",
          rc, text ? text : "");
    CHECK(strstr(text, "* core ") && strstr(text, "  kernel "), "listing lacks marked fields");
    free(text);
    return 0;
}

/* ---- suite "fallback" ---- */

static int suite_should_accept_a_baseline_fallback_and_reject_it_elsewhere(void) {
    static const char *const head =
        "{\"name\": \"fb\", \"model\": {\"kind\": \"mlp\"},"
        " \"data\": {\"kind\": \"blobs\", \"samples\": 64, \"features\": 4, \"classes\": 2},"
        " \"train\": {\"steps\": 5, \"batch\": 8, \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},"
        " \"checks\": [";
    struct {
        const char *check, *error;
    } t[] = {
        {"{\"name\": \"b\", \"kind\": \"baseline\", \"expect\": \"bitwise\", "
         "\"fallback\": {\"atol\": 1e-5, \"ulp\": 8}}", NULL},
        {"{\"name\": \"r\", \"kind\": \"repeatable\", \"expect\": \"bitwise\", "
         "\"fallback\": {\"atol\": 1e-5}}", "checks[0].fallback: only for baseline checks"},
        {"{\"name\": \"b\", \"kind\": \"baseline\", \"expect\": \"bitwise\", "
         "\"fallback\": \"bitwise\"}", "checks[0].fallback: expected an object"},
        {"{\"name\": \"b\", \"kind\": \"baseline\", \"expect\": \"bitwise\", "
         "\"fallback\": {}}", "checks[0].fallback: give at least one"},
        {"{\"name\": \"b\", \"kind\": \"baseline\", \"expect\": \"bitwise\", "
         "\"fallback\": {\"atol\": -1}}", "checks[0].fallback.atol"},
        {"{\"name\": \"b\", \"kind\": \"baseline\", \"expect\": \"bitwise\", "
         "\"fallback\": {\"atl\": 1}}", "unknown key \"atl\""},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char text[2048];
        snprintf(text, sizeof text, "%s%s]}", head, t[i].check);
        sb_error err = {0};
        sb_suite *s = sb_suite_parse(text, strlen(text), "x.json", &err);
        if (!t[i].error) {
            CHECK(s, "case %zu: %s", i, err.msg);
            const sb_check *c = &s->checks[0];
            CHECK(c->has_fallback && c->fallback.has_atol && c->fallback.atol == 1e-5 &&
                      c->fallback.has_ulp && c->fallback.ulp == 8 && !c->fallback.has_rtol &&
                      !c->fallback.bitwise && c->expect.bitwise,
                  "fallback not parsed into its values");
            sb_suite_free(s);
        } else {
            CHECK(!s, "case %zu: accepted", i);
            CHECK(strstr(err.msg, "x.json: ") && strstr(err.msg, t[i].error),
                  "case %zu: message \"%s\" lacks \"%s\"", i, err.msg, t[i].error);
        }
    }
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(fingerprint_should_report_the_cpu_model_of_proc_cpuinfo),
    SB_CASE(fingerprint_should_report_the_openblas_core_name_threads_and_version),
    SB_CASE(fingerprint_should_list_the_numerics_isa_flags_of_proc_cpuinfo),
    SB_CASE(fingerprint_should_capture_numerics_environment_variables),
    SB_CASE(diff_should_report_exactly_the_changed_bit_relevant_fields),
    SB_CASE(diff_should_treat_a_malformed_fingerprint_as_not_recorded),
    SB_CASE(diff_should_print_numbers_outside_the_integer_range),
    SB_CASE(old_kernel_warning_should_fire_for_prescott_on_an_avx512_cpu),
    SB_CASE(warnings_should_flag_threads_versions_and_devices),
    SB_CASE(cuda_fields_should_say_absent_or_no_device_when_missing),
    SB_CASE(env_command_should_print_every_field_warnings_first),
    SB_CASE(suite_should_accept_a_baseline_fallback_and_reject_it_elsewhere),
};

SB_TEST_MAIN(cases)
