/* test_threadpool.c — the blas backend's fork-join pool (kernels/threadpool.c):
 * every worker runs every job exactly once with that job's argument, the
 * caller sees what the helpers wrote, a job after an idle period longer than
 * the spin (helpers asleep) still runs, more threads than cores work, and
 * freeing a pool whose helpers spin or sleep returns. */
#include "sb_test.h"
#include "threadpool.h"

#include <stdlib.h>
#include <time.h>

#define MAXW 16

typedef struct job {
    int round;
    int seen[MAXW]; /* round each worker last saw */
    int runs[MAXW]; /* how many times each worker ran */
    int nworkers[MAXW];
} job;

static void record(void *arg, int w, int n) {
    job *j = arg;
    j->seen[w] = j->round;
    j->runs[w]++;
    j->nworkers[w] = n;
}

static void pause_us(long us) {
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

/* rounds of sb_pool_run; every `idle_every`-th round follows an idle gap of
 * idle_us (longer than the spin: the helpers go to sleep) */
static int run_rounds(int threads, int rounds, int idle_every, long idle_us) {
    sb_error err = {0};
    sb_pool *p = sb_pool_new(threads, &err);
    CHECK(p != NULL, "sb_pool_new(%d): %s", threads, err.msg);
    CHECK(sb_pool_size(p) == threads, "size %d, want %d", sb_pool_size(p), threads);
    job j = {0};
    for (int r = 1; r <= rounds; r++) {
        if (idle_every && r % idle_every == 0) pause_us(idle_us);
        j.round = r;
        sb_pool_run(p, record, &j);
        for (int w = 0; w < threads; w++) {
            CHECK(j.seen[w] == r, "%d threads, round %d: worker %d last ran round %d", threads, r,
                  w, j.seen[w]);
            CHECK(j.runs[w] == r, "%d threads, round %d: worker %d ran %d times", threads, r, w,
                  j.runs[w]);
            CHECK(j.nworkers[w] == threads, "worker %d told %d workers", w, j.nworkers[w]);
        }
    }
    sb_pool_free(p);
    return 0;
}

static int every_worker_should_run_every_job_once(void) {
    for (int t = 1; t <= 3; t++)
        if (run_rounds(t, 20000, 0, 0)) return 1;
    return 0;
}

static int jobs_after_idle_gaps_should_wake_sleeping_helpers(void) {
    /* 5 ms gaps: far past the spin, so the helpers and the caller sleep */
    for (int t = 2; t <= 3; t++)
        if (run_rounds(t, 200, 10, 5000)) return 1;
    return 0;
}

static int more_threads_than_cores_should_still_run_every_job(void) {
    return run_rounds(MAXW, 3000, 500, 2000);
}

static int free_should_return_whether_helpers_spin_or_sleep(void) {
    sb_error err = {0};
    for (int k = 0; k < 50; k++) {
        sb_pool *p = sb_pool_new(3, &err);
        CHECK(p != NULL, "%s", err.msg);
        job j = {.round = 1};
        if (k % 2) sb_pool_run(p, record, &j); /* helpers are spinning when freed */
        if (k % 5 == 0) pause_us(2000);      /* ... or asleep */
        sb_pool_free(p);
    }
    sb_pool *p = sb_pool_new(0, &err);
    CHECK(p == NULL && err.status == SB_ERR_ARG, "threads 0 must be refused");
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(every_worker_should_run_every_job_once),
    SB_CASE(jobs_after_idle_gaps_should_wake_sleeping_helpers),
    SB_CASE(more_threads_than_cores_should_still_run_every_job),
    SB_CASE(free_should_return_whether_helpers_spin_or_sleep),
};

SB_TEST_MAIN(cases)
