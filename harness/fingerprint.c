/* fingerprint.c — what the fields of an environment fingerprint mean: which
 * can change bits (and for which backend), the warnings a fingerprint
 * deserves, the difference between two fingerprints, and the human listing
 * (API in fingerprint.h; keys in README "Environment fingerprint").
 *
 * Everything here works on a fingerprint as JSON — fresh, read from a file
 * or made up by a test — and trusts none of its types.
 *
 * Not here: taking a fingerprint (fingerprint_collect.c); the `samebits env`
 * command (cmd_env.c); storing fingerprints (cmd_train.c, summary.c,
 * baseline.c); baseline checks (checks.c).
 */
#include "fingerprint.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ======================================================================
 * The fields and their classes
 * ==================================================================== */

typedef enum fp_scope { SCOPE_ALL = 0, SCOPE_BLAS, SCOPE_CUDA } fp_scope;

typedef struct field_def {
    const char *section, *key;
    int bits;                /* can change the bits of a run's weights */
    fp_scope scope;          /* which backend's runs depend on it */
} field_def;

/* Every field except env.*, in listing and diff order. samebits.version is
 * informational on purpose: a changed samebits is what a baseline check
 * exists to catch, so it must not count as "another environment". */
static const field_def FIELDS[] = {
    {"samebits", "version", 0, SCOPE_ALL},
    {"samebits", "compiler", 1, SCOPE_ALL},
    {"samebits", "codegen_flags", 1, SCOPE_ALL},
    {"samebits", "build_type", 0, SCOPE_ALL},
    {"samebits", "build_flags", 0, SCOPE_ALL},
    {"os", "name", 0, SCOPE_ALL},
    {"os", "kernel", 0, SCOPE_ALL},
    {"os", "hostname", 0, SCOPE_ALL},
    {"cpu", "arch", 1, SCOPE_ALL},
    {"cpu", "model", 0, SCOPE_ALL},
    {"cpu", "isa", 1, SCOPE_ALL},
    {"cpu", "logical_cpus", 0, SCOPE_ALL},
    {"cpu", "usable_cpus", 0, SCOPE_ALL},
    {"libc", "version", 1, SCOPE_ALL},
    {"blas", "library", 1, SCOPE_BLAS},
    {"blas", "version", 1, SCOPE_BLAS},
    {"blas", "built_against", 0, SCOPE_BLAS},
    {"blas", "core", 1, SCOPE_BLAS},
    {"blas", "threads", 1, SCOPE_BLAS},
    {"blas", "parallel", 0, SCOPE_BLAS},
    {"blas", "config", 0, SCOPE_BLAS},
    {"libraries", "cjson", 0, SCOPE_ALL},
    {"libraries", "openssl", 0, SCOPE_ALL},
    {"libraries", "xxhash", 0, SCOPE_ALL},
    {"cuda", "driver", 1, SCOPE_CUDA},
    {"cuda", "runtime", 1, SCOPE_CUDA},
    {"cuda", "cudnn", 1, SCOPE_CUDA},
    {"cuda", "gpu", 1, SCOPE_CUDA},
    {"cuda", "driver_library", 0, SCOPE_CUDA},
    {"cuda", "runtime_library", 0, SCOPE_CUDA},
    {"cuda", "cudnn_library", 0, SCOPE_CUDA},
    {"cuda", "gpu_detail", 0, SCOPE_CUDA},
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

/* Variables that matter only to one backend (by prefix). */
static const char *const ENV_BLAS[] = {"OPENBLAS_", "GOTO_", "MKL_", "BLIS_"};
static const char *const ENV_CUDA[] = {"CUBLAS", "CUDNN_", "CUDA_", "NVIDIA_", "NCCL_",
                                       "TF_", "TORCH_", "XLA_"};

#define N_OF(t) ((int)(sizeof(t) / sizeof((t)[0])))

static int has_prefix(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

static fp_scope env_scope(const char *name) {
    for (int i = 0; i < N_OF(ENV_BLAS); i++)
        if (has_prefix(name, ENV_BLAS[i])) return SCOPE_BLAS;
    for (int i = 0; i < N_OF(ENV_CUDA); i++)
        if (has_prefix(name, ENV_CUDA[i])) return SCOPE_CUDA;
    return SCOPE_ALL;
}

static int scope_applies(fp_scope s, const char *backend) {
    if (!backend || s == SCOPE_ALL) return 1;
    if (s == SCOPE_BLAS) return strcmp(backend, "blas") == 0;
    return strcmp(backend, "cuda") == 0;
}

int sb_fingerprint_can_change_bits(const char *path, const char *backend) {
    if (!path) return 0;
    if (has_prefix(path, "env.")) return scope_applies(env_scope(path + 4), backend);
    for (int i = 0; i < N_FIELDS; i++) {
        size_t sl = strlen(FIELDS[i].section);
        if (strncmp(path, FIELDS[i].section, sl) == 0 && path[sl] == '.' &&
            strcmp(path + sl + 1, FIELDS[i].key) == 0)
            return FIELDS[i].bits && scope_applies(FIELDS[i].scope, backend);
    }
    return 0;
}

/* ======================================================================
 * Warnings
 * ==================================================================== */

static const char *get_str(const cJSON *fp, const char *section, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(fp, section), key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int has_isa(const cJSON *fp, const char *flag) {
    const cJSON *isa = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(fp, "cpu"), "isa");
    const cJSON *x;
    cJSON_ArrayForEach(x, isa) if (cJSON_IsString(x) && strcmp(x->valuestring, flag) == 0) return 1;
    return 0;
}

/* x86 vector tiers: 0 SSE, 1 AVX, 2 AVX2+FMA, 3 AVX-512. */
static const char *const TIER_ISA[] = {"SSE", "AVX", "AVX2/FMA", "AVX-512"};
static const char *const TIER_NATIVE[] = {"Nehalem", "Sandybridge", "Haswell", "SkylakeX"};

/* The tier an OpenBLAS x86 core (kernel) name uses, or -1 when unknown (or
 * not x86). */
static int core_tier(const char *core) {
    static const char *const t0[] = {"Katmai", "Coppermine", "Northwood", "Prescott", "Banias",
                                     "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                                     "Athlon", "Opteron", "Opteron(SSE3)", "Barcelona", "Nano",
                                     "Bobcat"};
    static const char *const t1[] = {"Sandybridge", "Bulldozer", "Piledriver", "Steamroller",
                                     "Excavator"};
    static const char *const t2[] = {"Haswell", "Zen"};
    static const char *const t3[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    const char *const *tiers[] = {t0, t1, t2, t3};
    const int counts[] = {N_OF(t0), N_OF(t1), N_OF(t2), N_OF(t3)};
    if (!core) return -1;
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < counts[t]; i++)
            if (strcasecmp(core, tiers[t][i]) == 0) return t;
    return -1;
}

/* The highest tier the CPU of fp supports (-1: not x86); *flag names the
 * flags that show it. */
static int cpu_tier(const cJSON *fp, const char **flag) {
    int t = -1;
    *flag = "";
    if (has_isa(fp, "avx512f")) t = 3, *flag = "avx512f";
    else if (has_isa(fp, "avx2") && has_isa(fp, "fma")) t = 2, *flag = "avx2, fma";
    else if (has_isa(fp, "avx")) t = 1, *flag = "avx";
    else if (has_isa(fp, "sse2")) t = 0, *flag = "sse2";
    return t;
}

static void warn(cJSON *w, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(cJSON *w, const char *code, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", msg);
    cJSON_AddItemToArray(w, o);
}

/* A positive integer environment value of fp, or 0. */
static int env_int(const cJSON *fp, const char *name) {
    const char *v = get_str(fp, "env", name);
    if (!v || !*v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    return (*end == '\0' && x > 0 && x < 1000000) ? (int)x : 0;
}

cJSON *sb_fingerprint_warnings(const cJSON *fp, const sb_fp_options *o) {
    cJSON *w = cJSON_CreateArray();
    if (!w) return NULL;
    const char *core = get_str(fp, "blas", "core");
    const char *version = get_str(fp, "blas", "version");
    const char *coretype = get_str(fp, "env", "OPENBLAS_CORETYPE");
    const char *flag;
    int ct = core_tier(core), pt = cpu_tier(fp, &flag);
    if (ct >= 0 && pt > ct) {
        char why[256];
        if (coretype)
            snprintf(why, sizeof why, "OPENBLAS_CORETYPE=%.100s forces it", coretype);
        else
            snprintf(why, sizeof why,
                     "OpenBLAS %.40s chose it itself (OPENBLAS_CORETYPE is not set): it does "
                     "not recognise this CPU", version ? version : "");
        warn(w, "blas-old-kernel",
             "OpenBLAS runs its %s kernel (%s) on a CPU with %s (%s): it is slower than the "
             "native %s kernel, and its results can differ bitwise from runs where OpenBLAS "
             "uses the native kernel; %s",
             core, TIER_ISA[ct], TIER_ISA[pt], flag, TIER_NATIVE[pt], why);
    } else if (coretype) {
        warn(w, "blas-coretype-forced",
             "OPENBLAS_CORETYPE=%.100s forces OpenBLAS's kernel (core %s): runs without it, "
             "or on a machine where OpenBLAS picks another kernel, can differ bitwise",
             coretype, core ? core : "unknown");
    }

    const cJSON *th = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fp, "blas"),
                                                       "threads");
    const char *backend = o ? o->backend : NULL;
    int want = 0;
    char source[160] = "";
    if (o && o->run_threads > 0 && (!backend || strcmp(backend, "blas") == 0)) {
        want = o->run_threads;
        snprintf(source, sizeof source, "the run");
    } else if (!backend) {
        static const char *const vars[] = {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                                           "OMP_NUM_THREADS"};
        for (int i = 0; i < 3 && !want; i++)
            if ((want = env_int(fp, vars[i])) > 0)
                snprintf(source, sizeof source, "%s", vars[i]);
    }
    if (want > 0 && cJSON_IsNumber(th) && (int)th->valuedouble != want)
        warn(w, "blas-threads",
             "OpenBLAS uses %d threads where %s asks for %d: its GEMM can split work "
             "differently from a run where the count is honoured",
             (int)th->valuedouble, source, want);

    const char *built = get_str(fp, "blas", "built_against");
    if (version && built && strcmp(version, "unknown") != 0 && strcmp(built, "unknown") != 0 &&
        strcmp(version, built) != 0)
        warn(w, "blas-version-mismatch",
             "OpenBLAS %.40s is loaded but samebits was built against %.40s: results can differ "
             "from a run on the library it was built for",
             version, built);

    const char *cvd = get_str(fp, "env", "CUDA_VISIBLE_DEVICES");
    const char *gpu = get_str(fp, "cuda", "gpu");
    if (cvd && (!gpu || strcmp(gpu, "no device") == 0)) {
        const char *detail = get_str(fp, "cuda", "gpu_detail");
        warn(w, "cuda-visible-devices",
             "CUDA_VISIBLE_DEVICES=%.100s is set but there is no GPU (%.200s)", cvd,
             detail ? detail : "no device");
    }
    const char *pre = get_str(fp, "env", "LD_PRELOAD");
    if (pre && *pre)
        warn(w, "ld-preload",
             "LD_PRELOAD=%.300s: preloaded libraries can replace math or BLAS functions", pre);
    const char *tun = get_str(fp, "env", "GLIBC_TUNABLES");
    if (tun && *tun)
        warn(w, "glibc-tunables",
             "GLIBC_TUNABLES=%.300s: tunables can change which CPU-specific variants of libm "
             "glibc runs", tun);
    return w;
}

/* ======================================================================
 * Differences
 * ==================================================================== */

/* v printed as one string (lists joined by spaces); NULL prints `missing`.
 * A value that does not fit ends in "...". */
static void value_str(const cJSON *v, const char *missing, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    if (!v) {
        snprintf(buf, n, "%s", missing);
        return;
    }
    if (cJSON_IsString(v)) {
        snprintf(buf, n, "%s", v->valuestring);
        o = strlen(v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        /* range first: converting a double outside long long's range (a
         * manifest or run.json may hold 1e300) is undefined behaviour */
        if (d > -1e15 && d < 1e15 && d == (double)(long long)d)
            snprintf(buf, n, "%lld", (long long)d);
        else
            snprintf(buf, n, "%.17g", d);
    } else if (cJSON_IsArray(v)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, v) {
            char item[256];
            value_str(x, "", item, sizeof item);
            if (o < n) o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? " " : "", item);
        }
    } else {
        char *t = cJSON_PrintUnformatted(v);
        snprintf(buf, n, "%s", t ? t : "?");
        o = t ? strlen(t) : 0;
        free(t);
    }
    if (o >= n && n > 4) memcpy(buf + n - 4, "...", 4);
}

static int add_diff(sb_fp_diff **d, int *n, int *cap, const char *field, const char *a,
                    const char *b) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        sb_fp_diff *p = realloc(*d, (size_t)nc * sizeof *p);
        if (!p) return -1;
        *d = p;
        *cap = nc;
    }
    sb_fp_diff *x = &(*d)[(*n)++];
    snprintf(x->field, sizeof x->field, "%s", field);
    snprintf(x->a, sizeof x->a, "%s", a);
    snprintf(x->b, sizeof x->b, "%s", b);
    if (strlen(a) >= sizeof x->a) memcpy(x->a + sizeof x->a - 4, "...", 4);
    if (strlen(b) >= sizeof x->b) memcpy(x->b + sizeof x->b - 4, "...", 4);
    return 0;
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

sb_status sb_fingerprint_diff(const cJSON *a, const cJSON *b, const char *backend,
                              sb_fp_diff **out, int *n, sb_error *err) {
    sb_fp_diff *d = NULL;
    const char **names = NULL;
    int nd = 0, cap = 0;
    char va[1024], vb[1024];
    *out = NULL;
    *n = 0;
    for (int i = 0; i < N_FIELDS; i++) {
        const field_def *f = &FIELDS[i];
        if (!f->bits || !scope_applies(f->scope, backend)) continue;
        const cJSON *xa = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(a, f->section), f->key);
        const cJSON *xb = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(b, f->section), f->key);
        value_str(xa, "(not recorded)", va, sizeof va);
        value_str(xb, "(not recorded)", vb, sizeof vb);
        if (strcmp(va, vb) == 0) continue;
        char path[96];
        snprintf(path, sizeof path, "%s.%s", f->section, f->key);
        if (add_diff(&d, &nd, &cap, path, va, vb) != 0) goto nomem;
    }

    /* environment variables: the union of both sides' names, sorted */
    const cJSON *ea = cJSON_GetObjectItemCaseSensitive(a, "env");
    const cJSON *eb = cJSON_GetObjectItemCaseSensitive(b, "env");
    int total = cJSON_GetArraySize(ea) + cJSON_GetArraySize(eb), k = 0;
    names = calloc((size_t)total + 1, sizeof *names);
    if (!names) goto nomem;
    const cJSON *sides[2] = {cJSON_IsObject(ea) ? ea : NULL, cJSON_IsObject(eb) ? eb : NULL};
    for (int s = 0; s < 2; s++)
        for (const cJSON *x = sides[s] ? sides[s]->child : NULL; x && k < total; x = x->next)
            if (x->string) names[k++] = x->string;
    qsort(names, (size_t)k, sizeof *names, str_cmp);
    for (int i = 0; i < k; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        if (!scope_applies(env_scope(names[i]), backend)) continue;
        value_str(sides[0] ? cJSON_GetObjectItemCaseSensitive(sides[0], names[i]) : NULL,
                  sides[0] ? "(unset)" : "(not recorded)", va, sizeof va);
        value_str(sides[1] ? cJSON_GetObjectItemCaseSensitive(sides[1], names[i]) : NULL,
                  sides[1] ? "(unset)" : "(not recorded)", vb, sizeof vb);
        if (strcmp(va, vb) == 0) continue;
        char path[96];
        snprintf(path, sizeof path, "env.%.88s", names[i]);
        if (add_diff(&d, &nd, &cap, path, va, vb) != 0) goto nomem;
    }
    free(names);
    *out = d;
    *n = nd;
    return SB_OK;
nomem:
    free(names);
    free(d);
    return sb_error_set(err, SB_ERR_NOMEM, "out of memory comparing environments");
}

/* Appends the words of list `x` that are not in list `y`, each after sign. */
static size_t list_minus(char *buf, size_t o, size_t n, const char *x, const char *y, char sign) {
    const char *p = x;
    while (*p) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, " ");
        if (!len) break;
        int found = 0;
        for (const char *q = y; *q && !found;) {
            while (*q == ' ') q++;
            size_t l2 = strcspn(q, " ");
            if (l2 == len && strncmp(p, q, len) == 0) found = 1;
            q += l2;
        }
        if (!found && o < n) o += (size_t)snprintf(buf + o, n - o, " %c%.*s", sign, (int)len, p);
        p += len;
    }
    return o;
}

void sb_fingerprint_diff_str(const sb_fp_diff *d, int n, char *buf, size_t len) {
    size_t o = 0;
    if (!len) return;
    buf[0] = '\0';
    for (int i = 0; i < n && o < len; i++) {
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "", d[i].field);
        if (o >= len) break;
        if (strcmp(d[i].field, "cpu.isa") == 0) {
            o = list_minus(buf, o, len, d[i].b, d[i].a, '+');
            if (o < len) o = list_minus(buf, o, len, d[i].a, d[i].b, '-');
        } else if (strlen(d[i].a) + strlen(d[i].b) <= 64) {
            o += (size_t)snprintf(buf + o, len - o, " %s \xe2\x86\x92 %s", d[i].a, d[i].b);
        }
    }
    if (o >= len && len > 4) memcpy(buf + len - 4, "...", 4);
}

/* ======================================================================
 * The human listing
 * ==================================================================== */

void sb_fingerprint_print(FILE *f, const cJSON *fp) {
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(fp, "warnings"), *x;
    int nw = cJSON_GetArraySize(w);
    fprintf(f, "warnings: %s\n", nw ? "" : "none");
    cJSON_ArrayForEach(x, w) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(x, "message");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "code");
        fprintf(f, "  ! [%s] %s\n", cJSON_IsString(c) ? c->valuestring : "?",
                cJSON_IsString(m) ? m->valuestring : "?");
    }
    fprintf(f, "\nfields marked * can change bits; the others are informational\n");
    const char *section = "";
    char v[1024];
    for (int i = 0; i < N_FIELDS; i++) {
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(fp, FIELDS[i].section), FIELDS[i].key);
        if (!val) continue;
        if (strcmp(section, FIELDS[i].section) != 0) {
            section = FIELDS[i].section;
            fprintf(f, "\n%s\n", section);
        }
        value_str(val, "", v, sizeof v);
        fprintf(f, "%c %-16s %s\n", FIELDS[i].bits ? '*' : ' ', FIELDS[i].key, v);
    }
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(fp, "env");
    fprintf(f, "\nenv (variables known to change numerics)%s\n", env && env->child ? "" : ": none set");
    cJSON_ArrayForEach(x, env) {
        value_str(x, "", v, sizeof v);
        fprintf(f, "* %s=%s\n", x->string, v);
    }
}
