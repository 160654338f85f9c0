/* bench_peak.c — the machine's FP32 peak as `samebits bench --gemm` measures
 * it: a probe that does nothing but independent fused multiply-adds on
 * registers, on the widest vector path the CPU has, so the GEMM figures can
 * be read as a fraction of what this core delivers now (on a shared VM the
 * peak moves from day to day; a figure from another day is no yardstick).
 *
 * The probe keeps 12 accumulators in flight (more than latency x ports of
 * any x86 core with two FMA units: 4 x 2), each FMA counted as 2 FLOPs per
 * lane, and runs on `threads` threads at once (the aggregate is returned),
 * best of `reps` rounds of at least `seconds`.
 *
 * Not here: the GEMMs (bench_gemm.c).
 */
#include "harness.h"

#include <math.h>
#include <pthread.h>
#include <time.h>

#define PROBE_ACC 12
#define PROBE_CHUNK 1000000L /* iterations between clock reads */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static float probe_avx512(long iters) {
    __m512 a[PROBE_ACC];
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < PROBE_ACC; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < PROBE_ACC; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    __m512 s = a[0];
    for (int i = 1; i < PROBE_ACC; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float probe_avx2(long iters) {
    __m256 a[PROBE_ACC];
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < PROBE_ACC; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < PROBE_ACC; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
    float out[8], s = 0.0f;
    __m256 t = a[0];
    for (int i = 1; i < PROBE_ACC; i++) t = _mm256_add_ps(t, a[i]);
    _mm256_storeu_ps(out, t);
    for (int i = 0; i < 8; i++) s += out[i];
    return s;
}
#endif

/* Runs `iters` iterations; *flops_per_iter tells what one is worth. */
static float probe_run(long iters, double *flops_per_iter, const char **path) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *flops_per_iter = 2.0 * 16 * PROBE_ACC;
        *path = "AVX-512";
        return probe_avx512(iters);
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *flops_per_iter = 2.0 * 8 * PROBE_ACC;
        *path = "AVX2";
        return probe_avx2(iters);
    }
#endif
    float a[PROBE_ACC];
    for (int i = 0; i < PROBE_ACC; i++) a[i] = (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < PROBE_ACC; i++) a[i] = fmaf(a[i], 0.999999f, 1e-7f);
    float s = 0.0f;
    for (int i = 0; i < PROBE_ACC; i++) s += a[i];
    *flops_per_iter = 2.0 * PROBE_ACC;
    *path = "scalar";
    return s;
}

typedef struct probe_job {
    double seconds, gflops;
    const char *path;
    volatile float sink;
} probe_job;

static void *probe_thread(void *arg) {
    probe_job *j = arg;
    double per = 0.0, t0 = now_s(), t;
    long done = 0;
    float s = 0.0f;
    do {
        s += probe_run(PROBE_CHUNK, &per, &j->path);
        done += PROBE_CHUNK;
        t = now_s() - t0;
    } while (t < j->seconds);
    j->sink = s;
    j->gflops = per * (double)done / t * 1e-9;
    return NULL;
}

double sb_bench_fma_peak(int threads, int reps, double seconds, const char **path) {
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    double best = 0.0;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        pthread_t tid[64];
        probe_job jobs[64];
        int started = 0;
        for (int i = 0; i < threads; i++) {
            jobs[i] = (probe_job){.seconds = seconds};
            if (i > 0 && pthread_create(&tid[i], NULL, probe_thread, &jobs[i]) != 0) break;
            started = i + 1;
        }
        probe_thread(&jobs[0]); /* this thread is one of them */
        double sum = jobs[0].gflops;
        for (int i = 1; i < started; i++) {
            pthread_join(tid[i], NULL);
            sum += jobs[i].gflops;
        }
        if (path) *path = jobs[0].path;
        if (sum > best) best = sum;
    }
    return best;
}
