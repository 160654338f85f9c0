/* threadpool.c — the persistent fork-join pool of the "blas" backend (see
 * threadpool.h).
 *
 * Hand-off: the caller publishes fn and arg, then bumps `generation`; each
 * helper runs the job and decrements `pending`; the caller returns when
 * `pending` is 0. Both waits spin first and sleep after:
 *   - a helper that finished a job watches `generation` for SPIN_NS, then
 *     sleeps on the `start` condition variable;
 *   - the caller, after its own share, watches `pending` for SPIN_NS, then
 *     sleeps on `done`.
 * Why spin at all: waking a thread that sleeps on a condition variable
 * costs about 40 us on this project's 2-core VM (the idle vCPU is halted
 * and woken through the hypervisor; measured with an empty job), and a
 * training step dispatches tens of ops — canonical mode at 2 threads ran
 * slower than at 1. Why only briefly: between ops that are far apart (a
 * long OpenBLAS GEMM in deterministic mode, a checkpoint) and when the
 * harness runs several children on few cores, a spinning helper would
 * take a core from someone who needs it. The spin loop yields the core
 * (sched_yield) every few polls so a runnable thread on the same core —
 * OpenBLAS's own helper, another run — is not held up.
 *
 * No lost wake-up: a waiter announces itself (sleepers / caller_waiting)
 * and re-checks its condition under the mutex before it sleeps; the other
 * side changes the condition first and then, if it sees a waiter, takes
 * the mutex to signal. Both sides use sequentially consistent atomics, so
 * at least one of them sees the other's write (the Dekker pattern).
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define SPIN_NS 200000L /* how long a waiter polls before it sleeps */
#define POLLS_PER_YIELD 64

typedef struct worker {
    sb_pool *pool;
    int id;
    pthread_t tid;
} worker;

struct sb_pool {
    int n;           /* workers, the caller included */
    int started;     /* helper threads running (n-1 once fully built) */
    worker *workers; /* [n-1] helpers, ids 1..n-1 */
    pthread_mutex_t mu;
    pthread_cond_t start;
    pthread_cond_t done;
    atomic_ulong generation; /* bumped by every sb_pool_run (and by stop) */
    atomic_int pending;      /* helpers still running the current job */
    atomic_int sleepers;     /* helpers asleep on `start` (or about to be) */
    atomic_int caller_waiting; /* the caller asleep on `done` (or about to be) */
    atomic_int stop;
    sb_pool_fn fn; /* published before generation moves */
    void *arg;
};

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Polls until generation != seen or SPIN_NS passed; 1 when it moved. */
static int spin_for_generation(sb_pool *p, unsigned long seen) {
    long t0 = now_ns();
    for (int i = 1;; i++) {
        if (atomic_load(&p->generation) != seen) return 1;
        cpu_relax();
        if (i % POLLS_PER_YIELD == 0) {
            if (now_ns() - t0 > SPIN_NS) return 0;
            sched_yield();
        }
    }
}

static int spin_for_done(sb_pool *p) {
    long t0 = now_ns();
    for (int i = 1;; i++) {
        if (atomic_load(&p->pending) == 0) return 1;
        cpu_relax();
        if (i % POLLS_PER_YIELD == 0) {
            if (now_ns() - t0 > SPIN_NS) return 0;
            sched_yield();
        }
    }
}

static void *worker_main(void *wp) {
    worker *w = wp;
    sb_pool *p = w->pool;
    unsigned long seen = 0; /* generation is 0 until the first run */
    for (;;) {
        if (!spin_for_generation(p, seen)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen) pthread_cond_wait(&p->start, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        seen = atomic_load(&p->generation);
        if (atomic_load(&p->stop)) break;
        w->pool->fn(p->arg, w->id, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* generation moved: wake the helpers that sleep */
static void wake_helpers(sb_pool *p) {
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->mu);
    }
}

static void stop_and_join(sb_pool *p) {
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->generation, 1);
    wake_helpers(p);
    for (int k = 0; k < p->started; k++) pthread_join(p->workers[k].tid, NULL);
    p->started = 0;
}

sb_pool *sb_pool_new(int threads, sb_error *err) {
    if (threads < 1) {
        sb_error_set(err, SB_ERR_ARG, "thread pool: threads must be >= 1 (got %d)", threads);
        return NULL;
    }
    sb_pool *p = calloc(1, sizeof *p);
    if (!p) goto nomem;
    p->n = threads;
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof *p->workers);
        if (!p->workers) {
            free(p);
            goto nomem;
        }
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->stop, 0);

    /* helpers inherit this mask: block everything so that signals (SIGINT,
     * SIGTERM from the harness, SIGCHLD, ...) are delivered to the caller's
     * threads and never interrupt a worker */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (int k = 0; k < threads - 1; k++) {
        p->workers[k].pool = p;
        p->workers[k].id = k + 1;
        rc = pthread_create(&p->workers[k].tid, NULL, worker_main, &p->workers[k]);
        if (rc != 0) break;
        p->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        sb_error_set(err, SB_ERR_RUN, "thread pool: could not start thread %d of %d: %s",
                     p->started + 2, threads, strerror(rc));
        sb_pool_free(p);
        return NULL;
    }
    return p;

nomem:
    sb_error_set(err, SB_ERR_NOMEM, "thread pool: out of memory");
    return NULL;
}

void sb_pool_free(sb_pool *p) {
    if (!p) return;
    stop_and_join(p);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->start);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int sb_pool_size(const sb_pool *p) { return p->n; }

void sb_pool_run(sb_pool *p, sb_pool_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    SB_ASSERT(atomic_load(&p->pending) == 0); /* not reentrant */
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->generation, 1); /* publishes fn, arg and pending */
    wake_helpers(p);

    fn(arg, 0, p->n);

    if (!spin_for_done(p)) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waiting, 1);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_waiting, 0);
        pthread_mutex_unlock(&p->mu);
    }
}
