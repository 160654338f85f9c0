/* fingerprint_collect.c — taking the environment fingerprint of this
 * process (fingerprint.h; keys in README "Environment fingerprint").
 *
 * Everything is read in-process: /etc/os-release, /proc/cpuinfo, uname,
 * sysconf, the linked libraries' own version calls (OpenBLAS, cJSON,
 * OpenSSL, xxHash, glibc) and, for CUDA, libraries loaded with dlopen and
 * closed again (never linked). No external program runs. Values the system
 * does not give are "unknown"; a CUDA library that cannot be loaded is
 * "absent"; a driver that finds no GPU gives "no device".
 *
 * OpenBLAS is asked directly (openblas_get_config, _corename, _num_threads,
 * _parallel): the fingerprint describes the library this process has loaded,
 * which is what the blas backend calls.
 *
 * Not here: which fields can change bits, warnings, differences and the
 * listing (fingerprint.c); storing fingerprints (cmd_train.c, summary.c,
 * baseline.c).
 */
#include "fingerprint.h"

#include <cblas.h>
#include <ctype.h>
#include <dlfcn.h>
#include <link.h>
#include <openssl/crypto.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <xxhash.h>
#ifdef __GLIBC__
#include <gnu/libc-version.h>
#endif

#ifndef SB_VERSION
#define SB_VERSION "unknown"
#endif
#ifndef SB_COMPILER
#define SB_COMPILER "unknown " __VERSION__
#endif
#ifndef SB_BUILD_FLAGS
#define SB_BUILD_FLAGS ""
#endif
#ifndef SB_BUILD_TYPE
#define SB_BUILD_TYPE "unknown"
#endif

extern char **environ;

#define N_OF(t) ((int)(sizeof(t) / sizeof((t)[0])))

/* Environment variables known to change numerics: every variable with one
 * of these prefixes, and these names exactly. */
static const char *const ENV_PREFIXES[] = {
    "OMP_", "KMP_", "OPENBLAS_", "GOTO_", "MKL_", "BLIS_", "ONEDNN_", "DNNL_",
    "CUBLAS_", "CUBLASLT_", "CUDNN_"};
static const char *const ENV_NAMES[] = {
    "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING", "CUDA_DEVICE_ORDER",
    "NVIDIA_TF32_OVERRIDE", "NCCL_ALGO", "NCCL_PROTO", "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC", "TF_ENABLE_ONEDNN_OPTS", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "XLA_FLAGS", "PYTHONHASHSEED", "LD_PRELOAD", "LD_LIBRARY_PATH", "GLIBC_TUNABLES",
    /* samebits' own: which SIMD path canonical mode takes (recorded, though by
     * construction it cannot change the bits) */
    "SB_CANONICAL_ISA"};
static int env_wanted(const char *name, size_t len) {
    char buf[256];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, name, len);
    buf[len] = '\0';
    for (int i = 0; i < N_OF(ENV_PREFIXES); i++)
        if (strncmp(buf, ENV_PREFIXES[i], strlen(ENV_PREFIXES[i])) == 0) return 1;
    for (int i = 0; i < N_OF(ENV_NAMES); i++)
        if (strcmp(buf, ENV_NAMES[i]) == 0) return 1;
    return 0;
}

/* The ISA flags that change numerics (vector width, FMA, reduced-precision
 * arithmetic), as /proc/cpuinfo spells them: x86 "flags" (SSE3 is "pni"),
 * arm64 "Features". Recorded in this order. */
static const char *const ISA_FLAGS[] = {
    "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "avx", "f16c", "fma", "fma4", "avx2",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi",
    "avx512_vbmi2", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
    "amx_bf16", "amx_int8", "amx_fp16",
    "fp", "asimd", "fphp", "asimdhp", "asimddp", "asimdfhm", "sve", "sve2", "bf16", "i8mm",
    "svebf16", "sme"};

/* ======================================================================
 * Small helpers
 * ==================================================================== */

static void trim(char *s) {
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i])) i++;
    if (i) memmove(s, s + i, n - i + 1);
}

/* The value of the first line "KEY<spaces>: value" of a /proc-style file, or
 * "" (KEY compared exactly, before the colon). */
static void proc_value(const char *path, const char *key, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = '\0';
        trim(line);
        if (strcmp(line, key) != 0) continue;
        snprintf(out, n, "%s", colon + 1);
        trim(out);
        break;
    }
    free(line);
    fclose(f);
}

/* PRETTY_NAME of os-release, unquoted. */
static void os_name(char *out, size_t n) {
    static const char *const files[] = {"/etc/os-release", "/usr/lib/os-release"};
    snprintf(out, n, "unknown");
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f) continue;
        char line[512];
        int found = 0;
        while (!found && fgets(line, sizeof line, f)) {
            if (strncmp(line, "PRETTY_NAME=", 12) != 0) continue;
            char *v = line + 12;
            trim(v);
            size_t len = strlen(v);
            if (len >= 2 && (v[0] == '"' || v[0] == '\'') && v[len - 1] == v[0]) {
                v[len - 1] = '\0';
                v++;
            }
            snprintf(out, n, "%s", v);
            found = 1;
        }
        fclose(f);
        if (found) return;
    }
}

static void add_str(cJSON *o, const char *key, const char *v) {
    cJSON_AddStringToObject(o, key, v && v[0] ? v : "unknown");
}

/* ======================================================================
 * Collectors, one per section
 * ==================================================================== */

/* The build flags that change generated code: -O*, -f*, -m*, -std=*. */
static void codegen_flags(const char *all, char *out, size_t n) {
    size_t o = 0;
    out[0] = '\0';
    const char *p = all;
    while (*p) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, " ");
        if (len == 0) break;
        int keep = (len > 2 && p[0] == '-' && (p[1] == 'O' || p[1] == 'f' || p[1] == 'm')) ||
                   (len > 5 && strncmp(p, "-std=", 5) == 0) || (len == 2 && !strncmp(p, "-O", 2));
        if (keep && o + len + 2 < n) {
            o += (size_t)snprintf(out + o, n - o, "%s%.*s", o ? " " : "", (int)len, p);
        }
        p += len;
    }
}

static void collect_samebits(cJSON *s) {
    char cg[1024];
    add_str(s, "version", SB_VERSION);
    add_str(s, "compiler", SB_COMPILER);
    codegen_flags(SB_BUILD_FLAGS, cg, sizeof cg);
    add_str(s, "codegen_flags", cg);
    add_str(s, "build_type", SB_BUILD_TYPE);
    char all[2048];
    snprintf(all, sizeof all, "%s", SB_BUILD_FLAGS);
    trim(all);
    add_str(s, "build_flags", all);
}

static void collect_os_cpu(cJSON *os, cJSON *cpu) {
    char buf[1024];
    struct utsname u;
    int have_u = uname(&u) == 0;
    os_name(buf, sizeof buf);
    add_str(os, "name", buf);
    if (have_u) {
        snprintf(buf, sizeof buf, "%s %s %s", u.sysname, u.release, u.version);
        add_str(os, "kernel", buf);
        add_str(os, "hostname", u.nodename);
        add_str(cpu, "arch", u.machine);
    } else {
        add_str(os, "kernel", NULL);
        add_str(os, "hostname", NULL);
        add_str(cpu, "arch", NULL);
    }

    proc_value("/proc/cpuinfo", "model name", buf, sizeof buf);
    if (!buf[0]) proc_value("/proc/cpuinfo", "Hardware", buf, sizeof buf);
    if (!buf[0]) { /* arm64: no model name; the implementer and part identify the core */
        char impl[64], part[64];
        proc_value("/proc/cpuinfo", "CPU implementer", impl, sizeof impl);
        proc_value("/proc/cpuinfo", "CPU part", part, sizeof part);
        if (impl[0]) snprintf(buf, sizeof buf, "implementer %s part %s", impl, part);
    }
    add_str(cpu, "model", buf);

    /* the flags line can be long (hundreds of flags): read it whole */
    char *flags = NULL;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        while (!flags && getline(&line, &cap, f) > 0) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            *colon = '\0';
            trim(line);
            if (strcmp(line, "flags") == 0 || strcmp(line, "Features") == 0) {
                size_t len = strlen(colon + 1);
                flags = malloc(len + 3);
                if (flags) snprintf(flags, len + 3, " %s ", colon + 1);
            }
        }
        free(line);
        fclose(f);
    }
    cJSON *isa = cJSON_AddArrayToObject(cpu, "isa");
    for (char *p = flags; p && *p; p++)
        if (*p == '\t' || *p == '\n') *p = ' ';
    for (int i = 0; flags && i < N_OF(ISA_FLAGS); i++) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", ISA_FLAGS[i]);
        if (strstr(flags, pat)) cJSON_AddItemToArray(isa, cJSON_CreateString(ISA_FLAGS[i]));
    }
    free(flags);

    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cJSON_AddNumberToObject(cpu, "logical_cpus", online > 0 ? (double)online : 0);
    cpu_set_t set;
    CPU_ZERO(&set);
    int usable = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    cJSON_AddNumberToObject(cpu, "usable_cpus", usable);
}

static void collect_libc(cJSON *s) {
#ifdef __GLIBC__
    char buf[64];
    snprintf(buf, sizeof buf, "glibc %s", gnu_get_libc_version());
    add_str(s, "version", buf);
#else
    add_str(s, "version", NULL);
#endif
}

static void collect_blas(cJSON *s) {
    const char *config = openblas_get_config();
    const char *core = openblas_get_corename();
    if (!config) config = "";
    char version[64] = "unknown";
    const char *rest = config;
    if (strncmp(config, "OpenBLAS ", 9) == 0) { /* "OpenBLAS 0.3.21 DYNAMIC_ARCH …" */
        size_t len = strcspn(config + 9, " ");
        snprintf(version, sizeof version, "%.*s", (int)len, config + 9);
        rest = config + 9 + len;
    }
    char built[64] = "unknown";
#ifdef OPENBLAS_VERSION
    const char *hv = OPENBLAS_VERSION; /* " OpenBLAS 0.3.21 " */
    while (*hv == ' ') hv++;
    if (strncmp(hv, "OpenBLAS ", 9) == 0) hv += 9;
    snprintf(built, sizeof built, "%.*s", (int)strcspn(hv, " "), hv);
#endif
    const char *parallel = "unknown";
    switch (openblas_get_parallel()) {
    case 0: parallel = "sequential"; break;
    case 1: parallel = "pthread"; break;
    case 2: parallel = "openmp"; break;
    }
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s", rest);
    trim(cfg);
    add_str(s, "library", "OpenBLAS");
    add_str(s, "version", version);
    add_str(s, "built_against", built);
    add_str(s, "core", core);
    cJSON_AddNumberToObject(s, "threads", openblas_get_num_threads());
    add_str(s, "parallel", parallel);
    add_str(s, "config", cfg);
}

static void collect_libraries(cJSON *s) {
    char buf[128];
    add_str(s, "cjson", cJSON_Version());
    add_str(s, "openssl", OpenSSL_version(OPENSSL_VERSION));
    unsigned v = XXH_versionNumber(); /* major*10000 + minor*100 + release */
    snprintf(buf, sizeof buf, "%u.%u.%u", v / 10000, (v / 100) % 100, v % 100);
    add_str(s, "xxhash", buf);
}

/* ---- CUDA, through dlopen ---- */

/* Loads the first of names[] that loads; its path (or why none did) in
 * `where`. NULL when none loads. */
static void *load_first(const char *const *names, int n, char *where, size_t wn) {
    where[0] = '\0';
    for (int i = 0; i < n; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            struct link_map *lm = NULL;
            if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
                snprintf(where, wn, "%s", lm->l_name);
            else
                snprintf(where, wn, "%s", names[i]);
            return h;
        }
        const char *e = dlerror(); /* read (and so clear) every failure; keep the first */
        if (i == 0) snprintf(where, wn, "not found (%s)", e ? e : names[0]);
    }
    return NULL;
}

typedef int (*cu_int_fn)(int *);
typedef int (*cu_init_fn)(unsigned);
typedef int (*cu_get_fn)(int *, int);
typedef int (*cu_name_fn)(char *, int, int);
typedef int (*cu_attr_fn)(int *, int, int);
typedef size_t (*cudnn_ver_fn)(void);

enum { CU_ERROR_NO_DEVICE = 100, CU_ATTR_CC_MAJOR = 75, CU_ATTR_CC_MINOR = 76 };

static void cuda_driver(cJSON *s) {
    static const char *const names[] = {"libcuda.so.1"};
    char where[512], gpu[1024] = "no device", detail[512] = "";
    void *h = load_first(names, 1, where, sizeof where);
    if (!h) {
        add_str(s, "driver", "absent");
        snprintf(detail, sizeof detail, "no CUDA driver");
    } else {
        cu_int_fn version = (cu_int_fn)dlsym(h, "cuDriverGetVersion");
        cu_init_fn init = (cu_init_fn)dlsym(h, "cuInit");
        cu_int_fn count = (cu_int_fn)dlsym(h, "cuDeviceGetCount");
        cu_get_fn get = (cu_get_fn)dlsym(h, "cuDeviceGet");
        cu_name_fn name = (cu_name_fn)dlsym(h, "cuDeviceGetName");
        cu_attr_fn attr = (cu_attr_fn)dlsym(h, "cuDeviceGetAttribute");
        int v = 0, rc;
        char buf[64];
        if (version && version(&v) == 0 && v > 0)
            snprintf(buf, sizeof buf, "%d.%d", v / 1000, (v % 1000) / 10);
        else
            snprintf(buf, sizeof buf, "unknown");
        add_str(s, "driver", buf);
        int n = 0;
        if (!init || !count || !get || !name) {
            snprintf(gpu, sizeof gpu, "unknown");
            snprintf(detail, sizeof detail, "the driver lacks cuInit/cuDeviceGet*");
        } else if ((rc = init(0)) != 0) {
            if (rc != CU_ERROR_NO_DEVICE) snprintf(gpu, sizeof gpu, "error %d", rc);
            snprintf(detail, sizeof detail, "cuInit: error %d%s", rc,
                     rc == CU_ERROR_NO_DEVICE ? " (no CUDA-capable device)" : "");
        } else if ((rc = count(&n)) != 0 || n <= 0) {
            snprintf(detail, sizeof detail, "cuDeviceGetCount: %d devices (error %d)", n, rc);
        } else {
            size_t o = 0;
            for (int i = 0; i < n && i < 16; i++) {
                int dev = 0, maj = 0, min = 0;
                char nm[256] = "unknown";
                if (get(&dev, i) != 0 || name(nm, (int)sizeof nm, dev) != 0)
                    snprintf(nm, sizeof nm, "unknown");
                nm[sizeof nm - 1] = '\0';
                if (attr) {
                    attr(&maj, CU_ATTR_CC_MAJOR, dev);
                    attr(&min, CU_ATTR_CC_MINOR, dev);
                }
                if (o < sizeof gpu)
                    o += (size_t)snprintf(gpu + o, sizeof gpu - o, "%s%s (sm_%d%d)", i ? "; " : "",
                                          nm, maj, min);
            }
            snprintf(detail, sizeof detail, "%d device%s", n, n == 1 ? "" : "s");
        }
        dlclose(h);
    }
    add_str(s, "gpu", gpu);
    add_str(s, "driver_library", where);
    add_str(s, "gpu_detail", detail);
}

static void cuda_runtime(cJSON *s) {
    static const char *const names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                                        "libcudart.so.11.0"};
    char where[512], buf[64] = "absent";
    void *h = load_first(names, N_OF(names), where, sizeof where);
    if (h) {
        cu_int_fn version = (cu_int_fn)dlsym(h, "cudaRuntimeGetVersion");
        int v = 0;
        if (version && version(&v) == 0 && v > 0)
            snprintf(buf, sizeof buf, "%d.%d", v / 1000, (v % 1000) / 10);
        else
            snprintf(buf, sizeof buf, "unknown");
        dlclose(h);
    }
    add_str(s, "runtime", buf);
    add_str(s, "runtime_library", where);
}

static void cuda_cudnn(cJSON *s) {
    static const char *const names[] = {"libcudnn.so", "libcudnn.so.9", "libcudnn.so.8"};
    char where[512], buf[64] = "absent";
    void *h = load_first(names, N_OF(names), where, sizeof where);
    if (h) {
        cudnn_ver_fn version = (cudnn_ver_fn)dlsym(h, "cudnnGetVersion");
        size_t v = version ? version() : 0;
        if (v >= 90000) /* cuDNN 9: major*10000 + minor*100 + patch */
            snprintf(buf, sizeof buf, "%zu.%zu.%zu", v / 10000, (v / 100) % 100, v % 100);
        else if (v > 0) /* cuDNN ≤ 8: major*1000 + minor*100 + patch */
            snprintf(buf, sizeof buf, "%zu.%zu.%zu", v / 1000, (v / 100) % 10, v % 100);
        else
            snprintf(buf, sizeof buf, "unknown");
        dlclose(h);
    }
    add_str(s, "cudnn", buf);
    add_str(s, "cudnn_library", where);
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds every numerics variable of environ, sorted by name. 0 ok, -1 nomem. */
static int collect_env(cJSON *s) {
    int n = 0, k = 0;
    for (char **e = environ; e && *e; e++) n++;
    const char **hit = calloc((size_t)n + 1, sizeof *hit);
    if (!hit) return -1;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && env_wanted(*e, (size_t)(eq - *e))) hit[k++] = *e;
    }
    qsort(hit, (size_t)k, sizeof *hit, name_cmp);
    for (int i = 0; i < k; i++) {
        const char *eq = strchr(hit[i], '=');
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - hit[i]), hit[i]);
        if (cJSON_GetObjectItemCaseSensitive(s, name)) continue; /* a duplicate: first wins */
        cJSON_AddStringToObject(s, name, eq + 1);
    }
    free(hit);
    return 0;
}

cJSON *sb_fingerprint_collect(const sb_fp_options *o, sb_error *err) {
    cJSON *fp = cJSON_CreateObject(), *w = NULL;
    if (!fp) goto nomem;
    cJSON_AddStringToObject(fp, "schema", SB_ENV_SCHEMA);
    cJSON_AddNullToObject(fp, "warnings"); /* first, for readers; filled in at the end */
    cJSON *sb = cJSON_AddObjectToObject(fp, "samebits");
    cJSON *os = cJSON_AddObjectToObject(fp, "os");
    cJSON *cpu = cJSON_AddObjectToObject(fp, "cpu");
    cJSON *libc = cJSON_AddObjectToObject(fp, "libc");
    cJSON *blas = cJSON_AddObjectToObject(fp, "blas");
    cJSON *libs = cJSON_AddObjectToObject(fp, "libraries");
    cJSON *cuda = cJSON_AddObjectToObject(fp, "cuda");
    cJSON *env = cJSON_AddObjectToObject(fp, "env");
    if (!sb || !os || !cpu || !libc || !blas || !libs || !cuda || !env) goto nomem;
    collect_samebits(sb);
    collect_os_cpu(os, cpu);
    collect_libc(libc);
    collect_blas(blas);
    collect_libraries(libs);
    cuda_driver(cuda);
    cuda_runtime(cuda);
    cuda_cudnn(cuda);
    if (collect_env(env) != 0) goto nomem;

    cJSON *bits = cJSON_AddArrayToObject(fp, "can_change_bits");
    if (!bits) goto nomem;
    for (const cJSON *sec = fp->child; sec; sec = sec->next) {
        for (const cJSON *x = cJSON_IsObject(sec) ? sec->child : NULL; x; x = x->next) {
            char path[300];
            snprintf(path, sizeof path, "%s.%s", sec->string, x->string);
            if (sb_fingerprint_can_change_bits(path, NULL))
                cJSON_AddItemToArray(bits, cJSON_CreateString(path));
        }
    }
    w = sb_fingerprint_warnings(fp, o);
    if (!w) goto nomem;
    cJSON_ReplaceItemInObjectCaseSensitive(fp, "warnings", w); /* takes w */
    return fp;
nomem:
    cJSON_Delete(fp);
    sb_error_set(err, SB_ERR_NOMEM, "out of memory collecting the environment fingerprint");
    return NULL;
}

