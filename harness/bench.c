/* bench.c — `samebits bench`: training steps per second of the reference
 * MLPs on the blas backend, in this process (no child processes, no files).
 *
 * Models (kept in step with tools/bench_torch.py, which runs the same ones in
 * PyTorch so tools/bench can print the ratio from one invocation):
 *   smoke — 16-32-32-4, tanh, batch 32 (the model of suites/smoke.json)
 *   mlp784 — 784-256-256-10, relu, batch 64
 *   cnn — conv(1→8) relu maxpool conv(8→16) relu maxpool fc, 1×28×28, batch 32
 *   rnn — chars (vocab 27, 32 tokens), embed 16, GRU 64, batch 16
 *   transformer — chars (vocab 27, 32 tokens), d_model 64, 4 heads, 2 blocks,
 *                 mlp 256, untied head, batch 16
 * Each is timed with SGD (momentum 0.9) and Adam, 1 and 2 threads, modes
 * deterministic, fast and canonical: warm-up steps, then timed steps, best
 * of `reps`. `--gemm` hands over to bench_gemm.c (GEMM GFLOP/s).
 *
 * Not here: assertions on speed; a benchmark reports, it never fails a build.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sb_cmd_bench_gemm(int argc, char **argv); /* bench_gemm.c */

typedef struct bench_model {
    const char *name;
    const char *kind;  /* model.kind */
    int widths[4];     /* mlp; cnn: {pixels, unused, unused, classes}; sequence models:
                        * {tokens + 1, unused, unused, vocabulary} */
    sb_act act;
    int batch, samples;
} bench_model;

static const bench_model MODELS[] = {
    {"smoke", "mlp", {16, 32, 32, 4}, SB_ACT_TANH, 32, 512},
    {"mlp784", "mlp", {784, 256, 256, 10}, SB_ACT_RELU, 64, 4096},
    {"cnn", "cnn", {784, 0, 0, 10}, SB_ACT_RELU, 32, 1024},
    {"rnn", "rnn", {33, 0, 0, 27}, SB_ACT_TANH, 16, 512},
    {"transformer", "transformer", {33, 0, 0, 27}, SB_ACT_GELU, 16, 512},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits bench [options]\n"
            "\n"
            "Times training steps/s of the reference models on the blas backend.\n"
            "  --steps N      timed steps per measurement (default 300)\n"
            "  --reps N       measurements, best kept (default 3)\n"
            "  --threads L    comma-separated thread counts (default 1,2)\n"
            "  --model NAME   only this model (smoke, mlp784, cnn, rnn, transformer)\n"
            "  --optimizer O  only this optimizer (sgd, adam)\n"
            "  --mode M       only this mode (deterministic, fast, canonical)\n"
            "  --trace        also time each configuration with tracing on (as runs do):\n"
            "                 untraced and traced blocks alternate in one process; medians\n"
            "  --json         one JSON object per line instead of a table\n"
            "  --gemm         GEMM GFLOP/s instead: canonical vs OpenBLAS (--gemm --help)\n");
}

/* A warmed-up trainer for one configuration (tracing into a real trace file
 * at `path`, as runs write it, when `trace`); NULL with err filled. */
static sb_trainer *bench_trainer(const bench_model *m, const char *opt, sb_mode mode, int threads,
                                 int trace, const char *path, sb_error *err) {
    sb_run_config c;
    memset(&c, 0, sizeof c);
    c.model.act = m->act;
    c.data.samples = m->samples;
    c.data.features = m->widths[0];
    c.data.classes = m->widths[3];
    c.data.noise = 1.0f;
    snprintf(c.model.kind, sizeof c.model.kind, "%s", m->kind);
    if (!strcmp(m->kind, "rnn") || !strcmp(m->kind, "transformer")) {
        c.model.embed = 16;
        c.model.hidden = 64;
        c.model.d_model = 64;
        c.model.heads = 4;
        c.model.layers = 2;
        c.model.mlp = 256;
        c.model.tied = 0;
        snprintf(c.data.kind, sizeof c.data.kind, "chars");
        c.data.noise = 0.1f;
    } else if (!strcmp(m->kind, "cnn")) {
        c.model.channels[0] = 8;
        c.model.channels[1] = 16;
        c.model.kernel = 3;
        c.model.pool = SB_POOL_MAX;
        snprintf(c.data.kind, sizeof c.data.kind, "shapes");
        c.data.channels = 1;
        c.data.height = 28;
        c.data.width = 28;
        c.data.noise = 0.1f;
    } else {
        c.model.n_widths = 4;
        memcpy(c.model.widths, m->widths, sizeof m->widths);
        snprintf(c.data.kind, sizeof c.data.kind, "blobs");
    }
    c.data.shuffle = SB_SHUFFLE_EPOCH;
    snprintf(c.optim.name, sizeof c.optim.name, "%s", opt);
    c.optim.lr = !strcmp(opt, "sgd") ? 0.01f : 0.001f;
    c.optim.momentum = 0.9f;
    c.optim.beta1 = 0.9f;
    c.optim.beta2 = 0.999f;
    c.optim.eps = 1e-8f;
    c.steps = 1000000000;
    c.batch = m->batch;
    c.seed = 1;
    snprintf(c.backend, sizeof c.backend, "blas");
    c.mode = mode;
    c.threads = threads;
    c.trace = trace;
    sb_trainer *t = sb_trainer_new(&c, err);
    if (!t) return NULL;
    if (trace) {
        unlink(path);
        if (sb_trainer_trace_open(t, path, err) != SB_OK) {
            sb_trainer_free(t);
            return NULL;
        }
    }
    float loss;
    for (int i = 0; i < 20; i++)
        if (sb_trainer_step(t, &loss, err) != SB_OK) {
            sb_trainer_free(t); /* abandons an open trace */
            return NULL;
        }
    return t;
}

/* Seconds for `steps` steps; -1 on failure. */
static double time_steps(sb_trainer *t, int steps, sb_error *err) {
    float loss;
    double t0 = sb_now();
    for (int i = 0; i < steps; i++)
        if (sb_trainer_step(t, &loss, err) != SB_OK) return -1;
    return sb_now() - t0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Untraced: the best of `reps` blocks of `steps` steps, in steps/s. */
static double measure(const bench_model *m, const char *opt, sb_mode mode, int threads,
                      int steps, int reps, sb_error *err) {
    sb_trainer *t = bench_trainer(m, opt, mode, threads, 0, NULL, err);
    if (!t) return -1;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double s = time_steps(t, steps, err);
        if (s < 0) {
            sb_trainer_free(t);
            return -1;
        }
        if (steps / s > best) best = steps / s;
    }
    sb_trainer_free(t);
    return best;
}

/* Traced against untraced on a shared, noisy machine: two trainers of the
 * same configuration in this process, their blocks of `steps` steps
 * alternated (untraced, traced, untraced, …) so both see the same load; per
 * pair of blocks the overhead is traced time / untraced time - 1. Reports
 * the median steps/s of each and the median overhead. 0 or -1. */
static int measure_traced(const bench_model *m, const char *opt, sb_mode mode, int threads,
                          int steps, int reps, double *sps, double *tps, double *overhead,
                          double *bytes_per_step, sb_error *err) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/samebits-bench-%d.sbt", (int)getpid());
    sb_trainer *u = bench_trainer(m, opt, mode, threads, 0, NULL, err);
    sb_trainer *t = u ? bench_trainer(m, opt, mode, threads, 1, path, err) : NULL;
    double us[1000], ts[1000], ov[1000];
    int n = 0, rc = -1;
    if (!t) goto done;
    uint64_t hashed0 = sb_trainer_hashed_bytes(t);
    for (; n < reps; n++) {
        double a = time_steps(u, steps, err), b = a < 0 ? -1 : time_steps(t, steps, err);
        if (a < 0 || b < 0) goto done;
        us[n] = steps / a;
        ts[n] = steps / b;
        ov[n] = b / a - 1.0;
    }
    *sps = median(us, n);
    *tps = median(ts, n);
    *overhead = median(ov, n);
    *bytes_per_step = (double)(sb_trainer_hashed_bytes(t) - hashed0) / ((double)n * steps);
    rc = 0;
done:
    if (t) sb_trainer_trace_close(t, NULL, err);
    unlink(path);
    sb_trainer_free(t);
    sb_trainer_free(u);
    return rc;
}

/* What tracing's hashing costs at best: XXH3-128 plus the stats of a 64 KiB
 * float tensor (one chunk, in cache), repeated for 0.1 s on this thread,
 * in bytes per second. With the bytes a traced step hashes this gives the
 * overhead that hashing alone implies ("floor"), whatever the bookkeeping
 * around it costs. 0 when out of memory. */
static double digest_rate(void) {
    enum { N = 16384 };
    float *x = malloc(N * sizeof *x);
    if (!x) return 0;
    for (int i = 0; i < N; i++) x[i] = (float)(i % 97) * 0.01f - 0.5f;
    sb_hash128 h;
    float l2, mx;
    sb_hash_stats_f32(x, N, &h, &l2, &mx); /* warm-up */
    double best = 0;
    for (int r = 0; r < 3; r++) {
        long calls = 0;
        double t0 = sb_now(), t;
        do {
            for (int k = 0; k < 64; k++) sb_hash_stats_f32(x, N, &h, &l2, &mx);
            calls += 64;
            t = sb_now() - t0;
        } while (t < 0.1 / 3);
        if (calls * (double)N * sizeof *x / t > best) best = calls * (double)N * sizeof *x / t;
    }
    free(x);
    return best;
}

int sb_cmd_bench(int argc, char **argv) {
    long long steps = 300, reps = 3;
    int json = 0, trace = 0;
    int threads[8] = {1, 2}, n_threads = 2;
    const char *only = NULL, *only_opt = NULL, *only_mode = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--gemm")) return sb_cmd_bench_gemm(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--trace")) {
            trace = 1;
        } else if (!strcmp(a, "--steps") && i + 1 < argc) {
            if (sb_parse_int(argv[++i], 1, 100000000, &steps) != 0) goto bad;
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            if (sb_parse_int(argv[++i], 1, 1000, &reps) != 0) goto bad;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(a, "--optimizer") && i + 1 < argc) {
            only_opt = argv[++i];
        } else if (!strcmp(a, "--mode") && i + 1 < argc) {
            only_mode = argv[++i];
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
        fprintf(stderr, "samebits bench: bad or incomplete option '%s'\n", a);
        return SB_EXIT_USAGE;
    }
    double rate = trace ? digest_rate() : 0;
    if (!json) {
        printf("blas: %s\n", sb_blas_info());
        if (trace)
            printf("hashing (XXH3-128 + stats of a 64 KiB tensor in cache, 1 thread): %.1f GB/s\n"
                   "floor: the overhead hashing alone implies at that rate on one thread\n",
                   rate * 1e-9);
        printf("%-8s %-5s %-14s %-7s %10s%s\n", "model", "opt", "mode", "threads", "steps/s",
               trace ? "  traced/s  overhead  KiB/step   floor" : "");
    }
    const char *opts[] = {"sgd", "adam"};
    const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST, SB_MODE_CANONICAL};
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        if (only && strcmp(only, MODELS[mi].name) != 0) continue;
        for (int o = 0; o < 2; o++)
            for (int ti = 0; ti < n_threads; ti++)
                for (int md = 0; md < 3; md++) {
                    if (only_opt && strcmp(only_opt, opts[o]) != 0) continue;
                    if (only_mode && strcmp(only_mode, sb_mode_name(modes[md])) != 0) continue;
                    sb_error err = {0};
                    double sps = 0, tps = 0, ov = 0, bps = 0;
                    if (trace) {
                        if (measure_traced(&MODELS[mi], opts[o], modes[md], threads[ti],
                                           (int)steps, (int)reps, &sps, &tps, &ov, &bps,
                                           &err) != 0)
                            sps = -1;
                    } else {
                        sps = measure(&MODELS[mi], opts[o], modes[md], threads[ti], (int)steps,
                                      (int)reps, &err);
                    }
                    if (sps < 0) {
                        fprintf(stderr, "samebits bench: %s\n", err.msg);
                        return SB_EXIT_RUN;
                    }
                    /* hashing time per step at the best rate, over the untraced step */
                    double floor = trace && rate > 0 && sps > 0 ? bps / rate * sps : 0;
                    if (json && trace)
                        printf("{\"impl\": \"samebits\", \"model\": \"%s\", \"optimizer\": \"%s\", "
                               "\"mode\": \"%s\", \"threads\": %d, \"batch\": %d, "
                               "\"steps_per_s\": %.2f, \"traced_steps_per_s\": %.2f, "
                               "\"trace_overhead\": %.4f, \"hashed_bytes_per_step\": %.0f, "
                               "\"hash_bytes_per_s\": %.4g, \"hash_floor\": %.4f}\n",
                               MODELS[mi].name, opts[o], sb_mode_name(modes[md]), threads[ti],
                               MODELS[mi].batch, sps, tps, ov, bps, rate, floor);
                    else if (json)
                        printf("{\"impl\": \"samebits\", \"model\": \"%s\", \"optimizer\": \"%s\", "
                               "\"mode\": \"%s\", \"threads\": %d, \"batch\": %d, "
                               "\"steps_per_s\": %.2f, \"traced_steps_per_s\": %.2f, "
                               "\"trace_overhead\": %.4f}\n",
                               MODELS[mi].name, opts[o], sb_mode_name(modes[md]), threads[ti],
                               MODELS[mi].batch, sps, tps, ov);
                    else if (trace)
                        printf("%-8s %-5s %-14s %-7d %10.1f %9.1f %8.1f%% %9.0f %6.1f%%\n",
                               MODELS[mi].name, opts[o], sb_mode_name(modes[md]), threads[ti], sps,
                               tps, 100.0 * ov, bps / 1024.0, 100.0 * floor);
                    else
                        printf("%-8s %-5s %-14s %-7d %10.1f\n", MODELS[mi].name, opts[o],
                               sb_mode_name(modes[md]), threads[ti], sps);
                    fflush(stdout);
                }
    }
    return SB_EXIT_OK;
}
