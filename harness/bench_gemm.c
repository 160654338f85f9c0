/* bench_gemm.c — `samebits bench --gemm`: GFLOP/s of the canonical GEMM (the
 * "blas" backend in canonical mode) next to OpenBLAS's SGEMM (the "blas"
 * backend in deterministic mode, one cblas_sgemm per call) on the GEMM
 * shapes of the reference models (MLP, CNN through im2col, tiny
 * transformer with its per-head attention), on an MLP 1024-1024-16 whose
 * leading dimensions are multiples of 4 KiB, and on square matrices in the
 * three transposes the engine uses, on 1 and 2 threads, measured in the
 * same process on the same inputs.
 *
 * Each measurement repeats the call until at least --seconds have passed
 * (after one warm-up call) and keeps the best (or, with --median, the
 * median) of --reps such rounds; the two sides' rounds alternate, so both
 * see the same load on a shared machine. FLOPs are counted as 2*M*N*K.
 * Shapes with beta 1 (the engine's accumulating GEMMs) start from C = 0.
 *
 * Before the table, the machine's FP32 peak is measured on each thread count
 * (bench_peak.c: a register-only FMA probe), and each row shows the
 * canonical GEMM's share of it ("% peak"): on a shared VM the peak moves
 * from day to day, so it is measured in the same run as the GEMMs.
 *
 * Not here: assertions on speed (a benchmark reports, it never fails a
 * build), or any look inside the kernels: both sides are called through the
 * backend vtable.
 */
#include "harness.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct gemm_shape {
    const char *name;
    int tA, tB, M, N, K;
    float beta; /* 0, or 1 where the engine accumulates into C */
} gemm_shape;

/* The GEMMs of the reference models, as the engine calls them (transposes
 * and beta), then square matrices. "fwd" is a layer's forward, "dx" its
 * input gradient, "dW" its weight gradient (weight_grad: [N_out, K_in] =
 * doutᵀ · inp, a K = batch-rows reduction). */
static const gemm_shape SHAPES[] = {
    /* MLP 784-256-256-10, batch 64 (engine/train.c) */
    {"mlp784 fc1 fwd", 0, 1, 64, 256, 784, 0},
    {"mlp784 fc1 dx", 0, 0, 64, 784, 256, 0},
    {"mlp784 fc1 dW", 1, 0, 256, 784, 64, 0},
    {"mlp784 fc2 fwd", 0, 1, 64, 256, 256, 0},
    {"mlp784 fc2 dx", 0, 0, 64, 256, 256, 0},
    {"mlp784 fc2 dW", 1, 0, 256, 256, 64, 0},
    {"mlp784 fc3 fwd", 0, 1, 64, 10, 256, 0},
    {"mlp784 fc3 dx", 0, 0, 64, 256, 10, 0},
    {"mlp784 fc3 dW", 1, 0, 10, 256, 64, 0},
    /* CNN on 28x28x1, batch 32: conv 1->8 and 8->16, 3x3, padding 1, 2x2
     * pools, fc 16*7*7 -> 10 (engine/cnn.c). Convs are im2col GEMMs
     * (kernels/blas_conv.c): fwd weight[cout, cin*9] · col[cin*9, n*OH*OW],
     * dx weightᵀ · doutT (conv1 has none: its input is the data), dW
     * doutT · colᵀ with beta 1. */
    {"cnn conv1 fwd", 0, 0, 8, 32 * 28 * 28, 9, 0},
    {"cnn conv1 dW", 0, 1, 8, 9, 32 * 28 * 28, 1},
    {"cnn conv2 fwd", 0, 0, 16, 32 * 14 * 14, 72, 0},
    {"cnn conv2 dx", 1, 0, 72, 32 * 14 * 14, 16, 0},
    {"cnn conv2 dW", 0, 1, 16, 72, 32 * 14 * 14, 1},
    {"cnn fc fwd", 0, 1, 32, 10, 784, 0},
    {"cnn fc dx", 0, 0, 32, 784, 10, 0},
    {"cnn fc dW", 1, 0, 10, 784, 32, 0},
    /* tiny transformer: vocab 64, T 32, d 64, 4 heads, MLP 256, batch 16
     * (B*T = 512 rows); attention per head [T, D = 16] (docs/canonical.md
     * §3.6; dv, dq, dk accumulate with beta 1) */
    {"tf qkv fwd", 0, 1, 512, 192, 64, 0},
    {"tf qkv dx", 0, 0, 512, 64, 192, 0},
    {"tf qkv dW", 1, 0, 192, 64, 512, 0},
    {"tf attn proj fwd", 0, 1, 512, 64, 64, 0},
    {"tf attn proj dx", 0, 0, 512, 64, 64, 0},
    {"tf attn proj dW", 1, 0, 64, 64, 512, 0},
    {"tf mlp fc fwd", 0, 1, 512, 256, 64, 0},
    {"tf mlp fc dx", 0, 0, 512, 64, 256, 0},
    {"tf mlp fc dW", 1, 0, 256, 64, 512, 0},
    {"tf mlp proj fwd", 0, 1, 512, 64, 256, 0},
    {"tf mlp proj dx", 0, 0, 512, 256, 64, 0},
    {"tf mlp proj dW", 1, 0, 64, 256, 512, 0},
    {"tf lm head fwd", 0, 1, 512, 64, 64, 0},
    {"tf lm head dx", 0, 0, 512, 64, 64, 0},
    {"tf lm head dW", 1, 0, 64, 64, 512, 0},
    {"tf head q.kT", 0, 1, 32, 32, 16, 0},
    {"tf head att.v", 0, 0, 32, 16, 32, 0},
    {"tf head dout.vT", 0, 1, 32, 32, 16, 0},
    {"tf head attT.do", 1, 0, 32, 16, 32, 1},
    {"tf head dpre.k", 0, 0, 32, 16, 32, 1},
    {"tf head dpreT.q", 1, 0, 32, 16, 32, 1},
    /* not a reference model: an MLP 1024-1024-16 at batch 256, whose
     * leading dimensions of 1024 floats put a matrix's rows in one L1 set
     * (canonical_gemm.c copies or packs such operands) */
    {"w1024 fc1 fwd", 0, 1, 256, 1024, 1024, 0},
    {"w1024 fc1 dx", 0, 0, 256, 1024, 1024, 0},
    {"w1024 fc1 dW", 1, 0, 1024, 1024, 256, 0},
    {"w1024 fc2 fwd", 0, 1, 256, 16, 1024, 0},
    {"w1024 fc2 dx", 0, 0, 256, 1024, 16, 0},
    {"w1024 fc2 dW", 1, 0, 16, 1024, 256, 0},
    /* squares: NN, and the two other transposes the engine uses */
    {"square 256", 0, 0, 256, 256, 256, 0},
    {"square 512", 0, 0, 512, 512, 512, 0},
    {"square 1024", 0, 0, 1024, 1024, 1024, 0},
    {"square 2048", 0, 0, 2048, 2048, 2048, 0},
    {"square 256 NT", 0, 1, 256, 256, 256, 0},
    {"square 1024 NT", 0, 1, 1024, 1024, 1024, 0},
    {"square 2048 NT", 0, 1, 2048, 2048, 2048, 0},
    {"square 256 TN", 1, 0, 256, 256, 256, 0},
    {"square 1024 TN", 1, 0, 1024, 1024, 1024, 0},
    {"square 2048 TN", 1, 0, 2048, 2048, 2048, 0},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits bench --gemm [options]\n"
            "\n"
            "GFLOP/s of the canonical GEMM next to OpenBLAS's SGEMM.\n"
            "  --threads L    comma-separated thread counts (default 1,2)\n"
            "  --reps N       rounds, best kept (default 3)\n"
            "  --median       keep the median round instead of the best\n"
            "  --only S       only shapes whose name contains S (e.g. 'cnn', 'tf ', 'square')\n"
            "  --seconds S    minimum seconds per round (default 0.2)\n"
            "  --max N        skip shapes with a dimension above N\n"
            "  --json         one JSON object per line instead of a table\n"
            "SB_CANONICAL_ISA=scalar|avx2|avx512 forces the canonical GEMM's SIMD path.\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One round: gemm calls on be for at least min_s seconds; GFLOP/s. */
static double gemm_round(sb_backend *be, const gemm_shape *s, const float *A, const float *B,
                         float *C, double min_s) {
    int lda = s->tA ? s->M : s->K, ldb = s->tB ? s->K : s->N;
    double flops = 2.0 * s->M * (double)s->N * (double)s->K;
    long calls = 0;
    double t0 = sb_now(), t;
    do {
        be->i->gemm(be, s->tA, s->tB, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, s->beta, C, s->N);
        calls++;
        t = sb_now() - t0;
    } while (t < min_s);
    return flops * (double)calls / t / 1e9;
}

/* After a multithreaded OpenBLAS call its helper threads keep polling
 * (sched_yield) for about 0.1 s before they sleep (OpenBLAS's
 * THREAD_TIMEOUT, 2^28 TSC ticks by default), and while they poll they
 * share the cores with whatever runs next: the canonical rounds that
 * followed OpenBLAS's ran up to 25% slower on 2 threads for that alone.
 * So with more than one thread each OpenBLAS round is followed by a pause
 * long enough for them to park; each GEMM is timed on quiet cores. */
#define OPENBLAS_SETTLE_S 0.25

static void settle(double s) {
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&t, &t) != 0) {
    }
}

/* The best (or median) of `reps` rounds on each of the two backends; the
 * rounds alternate (a, b, a, b, ...) so that both see the same machine load
 * (on a shared machine the load drifts within seconds). One warm-up call
 * each first. b_settle: seconds to pause after each round of b. */
static void time_pair(sb_backend *a, sb_backend *b, const gemm_shape *s, const float *A,
                      const float *B, float *C, int reps, double min_s, int median,
                      double b_settle, double *ga, double *gb) {
    double ra[1000], rb[1000];
    memset(C, 0, (size_t)s->M * (size_t)s->N * sizeof *C);
    gemm_round(a, s, A, B, C, 0);
    gemm_round(b, s, A, B, C, 0);
    if (b_settle > 0) settle(b_settle);
    for (int r = 0; r < reps; r++) {
        ra[r] = gemm_round(a, s, A, B, C, min_s);
        rb[r] = gemm_round(b, s, A, B, C, min_s);
        if (b_settle > 0) settle(b_settle);
    }
    qsort(ra, (size_t)reps, sizeof ra[0], cmp_double);
    qsort(rb, (size_t)reps, sizeof rb[0], cmp_double);
    if (!median) {
        *ga = ra[reps - 1], *gb = rb[reps - 1];
    } else if (reps % 2) {
        *ga = ra[reps / 2], *gb = rb[reps / 2];
    } else {
        *ga = 0.5 * (ra[reps / 2 - 1] + ra[reps / 2]);
        *gb = 0.5 * (rb[reps / 2 - 1] + rb[reps / 2]);
    }
}

static sb_backend *make_backend(sb_mode mode, int threads) {
    sb_backend_config cfg = {.mode = mode, .threads = threads};
    sb_error err = {0};
    sb_backend *be = sb_backend_new("blas", &cfg, &err);
    if (!be) fprintf(stderr, "samebits bench --gemm: %s\n", err.msg);
    return be;
}

/* bench_peak.c: the FP32 FMA peak of `threads` threads (GF/s), best of
 * `reps` rounds of at least `seconds`; *path names the vector path */
double sb_bench_fma_peak(int threads, int reps, double seconds, const char **path);

int sb_cmd_bench_gemm(int argc, char **argv) {
    long long reps = 3, max_dim = 1 << 20;
    double seconds = 0.2;
    int json = 0, median = 0, threads[8] = {1, 2}, n_threads = 2;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--gemm")) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return SB_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--median")) {
            median = 1;
        } else if (!strcmp(a, "--only") && i + 1 < argc) {
            only = argv[++i];
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
    /* the yardstick, measured now: this machine's FP32 FMA peak on each
     * thread count (bench_peak.c) */
    double peak[8];
    const char *peak_path = "";
    for (int ti = 0; ti < n_threads; ti++)
        peak[ti] = sb_bench_fma_peak(threads[ti], (int)reps, seconds, &peak_path);
    if (!json) {
        printf("blas: %s\n", sb_blas_info());
        printf("openblas_get_corename(): %s\n", openblas_get_corename());
        printf("canonical path: %s\n", isa && *isa ? isa : "best for this CPU");
        printf("FP32 peak (%s FMA probe, measured now):", peak_path);
        for (int ti = 0; ti < n_threads; ti++)
            printf("%s %.1f GF/s on %d thread%s", ti ? "," : "", peak[ti], threads[ti],
                   threads[ti] == 1 ? "" : "s");
        printf("\n%-17s %-20s %-7s %14s %14s %7s %7s\n", "shape", "MxNxK op", "threads",
               "canonical GF/s", "OpenBLAS GF/s", "ratio", "% peak");
    }
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const gemm_shape *s = &SHAPES[si];
        if (s->M > max_dim || s->N > max_dim || s->K > max_dim) continue;
        if (only && !strstr(s->name, only)) continue;
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
            double gc, go;
            time_pair(canon, ob, s, A, B, C, (int)reps, seconds, median,
                      threads[ti] > 1 ? OPENBLAS_SETTLE_S : 0.0, &gc, &go);
            sb_backend_free(canon);
            sb_backend_free(ob);
            char dims[48];
            snprintf(dims, sizeof dims, "%dx%dx%d %s%s%s", s->M, s->N, s->K, s->tA ? "T" : "N",
                     s->tB ? "T" : "N", s->beta != 0.0f ? " b1" : "");
            if (json)
                printf("{\"shape\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"transA\": %d, "
                       "\"transB\": %d, \"beta\": %g, \"threads\": %d, \"canonical_gflops\": %.2f, "
                       "\"openblas_gflops\": %.2f, \"openblas_core\": \"%s\", "
                       "\"peak_gflops\": %.2f}\n",
                       s->name, s->M, s->N, s->K, s->tA, s->tB, (double)s->beta, threads[ti], gc,
                       go, openblas_get_corename(), peak[ti]);
            else
                printf("%-17s %-20s %-7d %14.1f %14.1f %6.2fx %6.0f%%\n", s->name, dims, threads[ti],
                       gc, go, gc / go, 100.0 * gc / peak[ti]);
            fflush(stdout);
        }
        free(A), free(B), free(C);
    }
    return SB_EXIT_OK;
}
