/* backend.c — the backend registry (sb_backend_new / sb_backend_free), the
 * names of modes and activations, and the BLAS description for fingerprints.
 *
 * It is deliberately not an op implementation: every op lives in ref.c or
 * blas.c. Validation of the configuration (name, threads, mode) happens here,
 * once, so each backend's init only deals with its own resources.
 */
#include "kernels.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Largest thread count we accept. Far above any machine we expect, but it keeps
 * a typo ("threads": 1000000) from trying to start a million pthreads. */
#define SB_MAX_THREADS 1024

/* Per-backend initialisers, defined in ref.c and blas.c. They receive a zeroed
 * sb_backend whose name, mode, threads and perturb are already set from the
 * validated config; they set `i` and `ctx` and may lower threads/perturb to
 * what the backend really uses. On failure they free what they built, fill err
 * and return a negative status (ctx is then ignored). */
sb_status sb_ref_init(sb_backend *be, sb_error *err);
sb_status sb_blas_init(sb_backend *be, sb_error *err);

typedef struct registry_entry {
    const char *name;
    sb_status (*init)(sb_backend *be, sb_error *err);
} registry_entry;

static const registry_entry registry[] = {
    {"ref", sb_ref_init},
    {"blas", sb_blas_init},
};
#define N_BACKENDS (sizeof registry / sizeof registry[0])

static const char *const backend_names[N_BACKENDS + 1] = {"ref", "blas", NULL};

const char *const *sb_backend_names(void) { return backend_names; }

sb_backend *sb_backend_new(const char *name, const sb_backend_config *cfg, sb_error *err) {
    if (!name) {
        sb_error_set(err, SB_ERR_ARG, "backend name is missing");
        return NULL;
    }
    const registry_entry *entry = NULL;
    for (size_t k = 0; k < N_BACKENDS; k++)
        if (strcmp(registry[k].name, name) == 0) entry = &registry[k];
    if (!entry) {
        sb_error_set(err, SB_ERR_ARG, "unknown backend '%s' (known: ref, blas)", name);
        return NULL;
    }
    if (!cfg) {
        sb_error_set(err, SB_ERR_ARG, "backend '%s': configuration is missing", name);
        return NULL;
    }
    if (cfg->threads < 1 || cfg->threads > SB_MAX_THREADS) {
        sb_error_set(err, SB_ERR_ARG, "backend '%s': threads must be between 1 and %d (got %d)",
                     name, SB_MAX_THREADS, cfg->threads);
        return NULL;
    }
    if (cfg->mode != SB_MODE_DETERMINISTIC && cfg->mode != SB_MODE_FAST &&
        cfg->mode != SB_MODE_CANONICAL) {
        sb_error_set(err, SB_ERR_ARG, "backend '%s': unknown determinism mode %d", name,
                     (int)cfg->mode);
        return NULL;
    }

    sb_backend *be = calloc(1, sizeof *be);
    if (!be) {
        sb_error_set(err, SB_ERR_NOMEM, "backend '%s': out of memory", name);
        return NULL;
    }
    be->name = entry->name; /* static storage, outlives the caller's string */
    be->mode = cfg->mode;
    be->threads = cfg->threads;
    /* perturb is a fast-mode test aid; deterministic and canonical modes keep
     * their promise */
    be->perturb = (cfg->perturb && cfg->mode == SB_MODE_FAST) ? 1 : 0;
    if (entry->init(be, err) != SB_OK) {
        free(be);
        return NULL;
    }
    return be;
}

void sb_backend_free(sb_backend *be) {
    if (!be) return;
    if (be->i && be->i->destroy) be->i->destroy(be);
    free(be);
}

/* ---- names ---- */

const char *sb_mode_name(sb_mode m) {
    switch (m) {
    case SB_MODE_DETERMINISTIC: return "deterministic";
    case SB_MODE_FAST: return "fast";
    case SB_MODE_CANONICAL: return "canonical";
    }
    return "unknown";
}

int sb_mode_parse(const char *name, sb_mode *out) {
    if (!name) return -1;
    if (strcmp(name, "deterministic") == 0) {
        if (out) *out = SB_MODE_DETERMINISTIC;
        return 0;
    }
    if (strcmp(name, "fast") == 0) {
        if (out) *out = SB_MODE_FAST;
        return 0;
    }
    if (strcmp(name, "canonical") == 0) {
        if (out) *out = SB_MODE_CANONICAL;
        return 0;
    }
    return -1;
}

const char *sb_act_name(sb_act a) {
    switch (a) {
    case SB_ACT_RELU: return "relu";
    case SB_ACT_TANH: return "tanh";
    case SB_ACT_GELU: return "gelu";
    }
    return "unknown";
}

int sb_act_parse(const char *name, sb_act *out) {
    static const sb_act all[] = {SB_ACT_RELU, SB_ACT_TANH, SB_ACT_GELU};
    if (!name) return -1;
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        if (strcmp(name, sb_act_name(all[k])) == 0) {
            if (out) *out = all[k];
            return 0;
        }
    }
    return -1;
}

/* ---- BLAS description ---- */

static char blas_info[512];
static pthread_once_t blas_info_once = PTHREAD_ONCE_INIT;

/* Builds "OpenBLAS 0.3.21 core=SkylakeX parallel=pthread config=<...>". The
 * version comes from the runtime config string (the library actually loaded,
 * which may differ from the headers we compiled against, e.g. through
 * LD_LIBRARY_PATH); the header version is added only when they disagree. */
static void build_blas_info(void) {
    const char *config = openblas_get_config();
    const char *core = openblas_get_corename();
    if (!config) config = "";
    if (!core) core = "unknown";

    char version[64] = "unknown";
    const char *rest = config;
    if (strncmp(config, "OpenBLAS ", 9) == 0) {
        const char *v = config + 9;
        size_t len = strcspn(v, " ");
        if (len >= sizeof version) len = sizeof version - 1;
        memcpy(version, v, len);
        version[len] = '\0';
        rest = v + len;
        while (*rest == ' ') rest++;
    }

    const char *parallel = "unknown";
    switch (openblas_get_parallel()) {
    case 0: parallel = "sequential"; break;
    case 1: parallel = "pthread"; break;
    case 2: parallel = "openmp"; break;
    }

    int n = snprintf(blas_info, sizeof blas_info, "OpenBLAS %s core=%s parallel=%s config=%s",
                     version, core, parallel, rest);
#ifdef OPENBLAS_VERSION
    /* OPENBLAS_VERSION is " OpenBLAS 0.3.21 " (padded with spaces) */
    const char *hv = OPENBLAS_VERSION;
    while (*hv == ' ') hv++;
    if (strncmp(hv, "OpenBLAS ", 9) == 0) hv += 9;
    size_t hlen = strcspn(hv, " ");
    if (n > 0 && (size_t)n < sizeof blas_info &&
        (hlen != strlen(version) || strncmp(hv, version, hlen) != 0))
        snprintf(blas_info + n, sizeof blas_info - (size_t)n, " (built against %.*s)",
                 (int)hlen, hv);
#else
    (void)n;
#endif
}

const char *sb_blas_info(void) {
    pthread_once(&blas_info_once, build_blas_info);
    return blas_info;
}
