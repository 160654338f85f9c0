/* threadpool.c — the persistent fork-join pool of the "blas" backend (see
 * threadpool.h).
 *
 * One mutex, two condition variables: `start` wakes the helpers when the
 * generation counter moves, `done` wakes the caller when the last helper
 * finished. Sleeping on a condition variable instead of spinning keeps the
 * pool from stealing cores from OpenBLAS's own threads between ops. It is
 * deliberately not lock-free: a few microseconds per op do not matter next to
 * the ops we run, and this is easy to check by eye.
 */
#include "threadpool.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

typedef struct worker {
    sb_pool *pool;
    int id;
    pthread_t tid;
} worker;

struct sb_pool {
    int n;            /* workers, the caller included */
    int started;      /* helper threads running (n-1 once fully built) */
    worker *workers;  /* [n-1] helpers, ids 1..n-1 */
    pthread_mutex_t mu;
    pthread_cond_t start;
    pthread_cond_t done;
    unsigned long generation; /* bumped by every sb_pool_run */
    int pending;              /* helpers still running the current job */
    int stop;
    sb_pool_fn fn;
    void *arg;
};

static void *worker_main(void *wp) {
    worker *w = wp;
    sb_pool *p = w->pool;
    unsigned long seen = 0; /* generation is 0 until the first run */
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        sb_pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, w->id, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void stop_and_join(sb_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
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
    pthread_mutex_lock(&p->mu);
    SB_ASSERT(p->pending == 0); /* not reentrant */
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n);

    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
