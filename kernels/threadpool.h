/* threadpool.h — a fixed-size pool of persistent worker threads for the
 * "blas" backend (blas.c).
 *
 * What it is: `threads` workers, the calling thread being worker 0, so a pool
 * of n starts n-1 pthreads once and reuses them for every op. sb_pool_run
 * hands the same function to every worker and returns when all have finished
 * (a fork-join barrier); how the work is split is the caller's business.
 *
 * What it is not: a task queue, a scheduler or a general-purpose library. It
 * is not reentrant (one sb_pool_run at a time, from one thread, and the
 * function must not call sb_pool_run itself), and it does not survive fork().
 * Workers block every signal, so signals reach the caller's threads only.
 */
#ifndef SB_THREADPOOL_H
#define SB_THREADPOOL_H

#include "sb_base.h"

typedef struct sb_pool sb_pool;

/* fn is called once per worker with worker in [0, nworkers). */
typedef void (*sb_pool_fn)(void *arg, int worker, int nworkers);

/* Starts threads-1 helper threads (threads >= 1). Returns NULL and fills err
 * when threads cannot be started. The caller frees with sb_pool_free. */
sb_pool *sb_pool_new(int threads, sb_error *err);

/* Stops and joins the helper threads. NULL is a no-op. */
void sb_pool_free(sb_pool *p);

/* Number of workers, the caller included. */
int sb_pool_size(const sb_pool *p);

/* Runs fn(arg, w, n) on every worker w (w = 0 on the calling thread) and
 * returns when all of them returned. Everything the workers wrote is visible
 * to the caller afterwards (the completion handshake is a mutex). */
void sb_pool_run(sb_pool *p, sb_pool_fn fn, void *arg);

#endif /* SB_THREADPOOL_H */
