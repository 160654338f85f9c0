/* bench_gemm.c — `samebits bench --gemm`: GFLOP/s of the canonical GEMM (the
 * "blas" backend in canonical mode) next to OpenBLAS's SGEMM (the "blas"
 * backend in deterministic mode, one cblas_sgemm per call) on the MLP's
 * shapes and on square matrices, on 1 and 2 threads, measured in the same
 * process on the same inputs.
 *
 * Each measurement repeats the call until at least --seconds have passed
 * (after one warm-up call) and keeps the best of --reps such rounds.
 * FLOPs are counted as 2*M*N*K.
 *
 * Not here: assertions on speed (a benchmark reports, it never fails a
 * build), or any look inside the kernels: both sides are called through the
 * backend vtable.
 */
#include "harness.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

typedef struct gemm_shape {
    const char *name;
    int tA, tB, M, N, K;
} gemm_shape;

static const gemm_shape SHAPES[] = {
    {"mlp784 fc1 fwd", 0, 1, 64, 256, 784},
    {"mlp784 fc1 dx", 0, 0, 64, 784, 256},
    {"mlp784 fc1 dW", 1, 0, 256, 784, 64},
    {"mlp784 fc2 fwd", 0, 1, 64, 256, 256},
    {"mlp784 fc3 dW", 1, 0, 10, 256, 64},
    {"square 256", 0, 0, 256, 256, 256},
    {"square 512", 0, 0, 512, 512, 512},
    {"square 1024", 0, 0, 1024, 1024, 1024},
    {"square 2048", 0, 0, 2048, 2048, 2048},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits bench --gemm [options]\n"
            "\n"
            "GFLOP/s of the canonical GEMM next to OpenBLAS's SGEMM.\n"
            "  --threads L    comma-separated thread counts (default 1,2)\n"
            "  --reps N       rounds, best kept (default 3)\n"
            "  --seconds S    minimum seconds per round (default 0.2)\n"
            "  --max N        skip shapes with a dimension above N\n"
            "  --json         one JSON object per line instead of a table\n"
            "SB_CANONICAL_ISA=scalar|avx2|avx512 forces the canonical GEMM's SIMD path.\n");
}

/* Best GFLOP/s of `reps` rounds of gemm calls on backend be. */
static double time_gemm(sb_backend *be, const gemm_shape *s, const float *A, const float *B,
                        float *C, int reps, double min_s) {
    int lda = s->tA ? s->M : s->K, ldb = s->tB ? s->K : s->N;
    double flops = 2.0 * s->M * (double)s->N * (double)s->K, best = 0;
    be->i->gemm(be, s->tA, s->tB, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
    for (int r = 0; r < reps; r++) {
        long calls = 0;
        double t0 = sb_now(), t;
        do {
            be->i->gemm(be, s->tA, s->tB, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
            calls++;
            t = sb_now() - t0;
        } while (t < min_s);
        double g = flops * (double)calls / t / 1e9;
        if (g > best) best = g;
    }
    return best;
}

static sb_backend *make_backend(sb_mode mode, int threads) {
    sb_backend_config cfg = {.mode = mode, .threads = threads};
    sb_error err = {0};
    sb_backend *be = sb_backend_new("blas", &cfg, &err);
    if (!be) fprintf(stderr, "samebits bench --gemm: %s\n", err.msg);
    return be;
}

int sb_cmd_bench_gemm(int argc, char **argv) {
    long long reps = 3, max_dim = 1 << 20;
    double seconds = 0.2;
    int json = 0, threads[8] = {1, 2}, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--gemm")) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return SB_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            if (sb_parse_int(argv[++i], 1, 1000, &reps) != 0) goto bad;
        } else if (!strcmp(a, "--max") && i + 1 < argc) {
            if (sb_parse_int(argv[++i], 1, 1 << 20, &max_dim) != 0) goto bad;
        } else if (!strcmp(a, "--seconds") && i + 1 < argc) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end || !(seconds > 0 && seconds <= 60)) goto bad;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            n_threads = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                long long v;
                if (n_threads == 8 || sb_parse_int(tok, 1, 256, &v) != 0) goto bad;
                threads[n_threads++] = (int)v;
            }
            if (n_threads == 0) goto bad;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "samebits bench --gemm: bad or incomplete option '%s'\n", a);
        return SB_EXIT_USAGE;
    }
    const char *isa = getenv("SB_CANONICAL_ISA");
    if (!json) {
        printf("blas: %s\n", sb_blas_info());
        printf("openblas_get_corename(): %s\n", openblas_get_corename());
        printf("canonical path: %s\n", isa && *isa ? isa : "best for this CPU");
        printf("%-16s %-16s %-7s %14s %14s %7s\n", "shape", "MxNxK", "threads", "canonical GF/s",
               "OpenBLAS GF/s", "ratio");
    }
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const gemm_shape *s = &SHAPES[si];
        if (s->M > max_dim || s->N > max_dim || s->K > max_dim) continue;
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
        float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C);
        if (!A || !B || !C) {
            free(A), free(B), free(C);
            fprintf(stderr, "samebits bench --gemm: out of memory\n");
            return SB_EXIT_RUN;
        }
        uint32_t x = 12345;
        for (size_t i = 0; i < na; i++) A[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
        for (size_t i = 0; i < nb; i++) B[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
        for (int ti = 0; ti < n_threads; ti++) {
            sb_backend *canon = make_backend(SB_MODE_CANONICAL, threads[ti]);
            sb_backend *ob = canon ? make_backend(SB_MODE_DETERMINISTIC, threads[ti]) : NULL;
            if (!canon || !ob) {
                sb_backend_free(canon);
                free(A), free(B), free(C);
                return SB_EXIT_RUN;
            }
            double gc = time_gemm(canon, s, A, B, C, (int)reps, seconds);
            double go = time_gemm(ob, s, A, B, C, (int)reps, seconds);
            sb_backend_free(canon);
            sb_backend_free(ob);
            char dims[48];
            snprintf(dims, sizeof dims, "%dx%dx%d%s%s", s->M, s->N, s->K, s->tA ? " At" : "",
                     s->tB ? " Bt" : "");
            if (json)
                printf("{\"shape\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"transA\": %d, "
                       "\"transB\": %d, \"threads\": %d, \"canonical_gflops\": %.2f, "
                       "\"openblas_gflops\": %.2f, \"openblas_core\": \"%s\"}\n",
                       s->name, s->M, s->N, s->K, s->tA, s->tB, threads[ti], gc, go,
                       openblas_get_corename());
            else
                printf("%-16s %-16s %-7d %14.1f %14.1f %6.2fx\n", s->name, dims, threads[ti], gc, go,
                       gc / go);
            fflush(stdout);
        }
        free(A), free(B), free(C);
    }
    return SB_EXIT_OK;
}
