/* runner.c — the run executor: every run in its own child process.
 *
 * Each run is `samebits train <suite copy> --seed … --out <results>/runs/<id>`
 * started with fork+exec in its own process group, stdout and stderr going
 * to the run's log.txt, and OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to the
 * run's thread count (nothing else in the environment is touched; in
 * particular OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE pass through as they are).
 * At most `jobs` children run at once; one that outlives the timeout is
 * killed (the whole group). A crash, failure or timeout marks that run only.
 *
 * The child's verdict comes from its exit code and its run.json; the
 * checkpoint's SHA-256 and weights digest are computed here, by the parent.
 *
 * Not here: checks or reports.
 */
#include "harness.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *sb_run_status_name(sb_run_status s) {
    switch (s) {
    case SB_RUN_PENDING: return "pending";
    case SB_RUN_OK: return "ok";
    case SB_RUN_FAILED: return "failed";
    case SB_RUN_CRASHED: return "crashed";
    case SB_RUN_TIMEOUT: return "timeout";
    }
    return "?";
}

/* Reads a finished run's run.json and checkpoint into r. Returns 0 when the
 * run finished ok and its files are sound, -1 otherwise (r->message says). */
static int collect(const char *results_dir, sb_run_result *r) {
    char path[2048];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/run.json", r->dir);
    size_t n;
    char *text = sb_read_file(path, 64u << 20, &n, &err);
    if (!text) {
        snprintf(r->message, sizeof r->message, "no run.json: %s", err.msg);
        return -1;
    }
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(j, "losses");
    if (!j || !cJSON_IsString(status)) {
        snprintf(r->message, sizeof r->message, "%s: malformed run.json", path);
        cJSON_Delete(j);
        return -1;
    }
    if (strcmp(status->valuestring, "ok") != 0) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        snprintf(r->message, sizeof r->message, "%s",
                 cJSON_IsString(e) ? e->valuestring : "run reported failure");
        cJSON_Delete(j);
        r->status = SB_RUN_FAILED;
        return -1;
    }
    int nl = cJSON_GetArraySize(losses);
    if (nl > 0) r->final_loss = (float)cJSON_GetArrayItem(losses, nl - 1)->valuedouble;
    cJSON_Delete(j);

    snprintf(path, sizeof path, "%s/weights.safetensors", r->dir);
    sb_st_file *f = sb_st_read(path, &err);
    if (!f) {
        snprintf(r->message, sizeof r->message, "%s", err.msg);
        return -1;
    }
    sb_st_weights_digest(f, r->weights_sha256);
    sb_st_free(f);
    if (sb_sha256_file(path, r->sha256, &err) != SB_OK) {
        snprintf(r->message, sizeof r->message, "%s", err.msg);
        return -1;
    }
    snprintf(r->rel_checkpoint, sizeof r->rel_checkpoint, "runs/%s/weights.safetensors",
             r->spec->id);
    SB_UNUSED(results_dir);
    return 0;
}

static pid_t spawn(const sb_exec_options *o, const sb_run_spec *sp, const char *dir) {
    char seed[32], threads[16], repeat[16], log[2048];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)sp->cfg.seed);
    snprintf(threads, sizeof threads, "%d", sp->cfg.threads);
    snprintf(repeat, sizeof repeat, "%d", sp->repeat);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    const char *args[32];
    int a = 0;
    args[a++] = o->exe;
    args[a++] = "train";
    args[a++] = o->suite_copy;
    if (o->suite_dir) {
        args[a++] = "--suite-dir";
        args[a++] = o->suite_dir;
    }
    args[a++] = "--seed";
    args[a++] = seed;
    args[a++] = "--backend";
    args[a++] = sp->cfg.backend;
    args[a++] = "--mode";
    args[a++] = sb_mode_name(sp->cfg.mode);
    args[a++] = "--threads";
    args[a++] = threads;
    args[a++] = "--id";
    args[a++] = sp->id;
    args[a++] = "--repeat";
    args[a++] = repeat;
    if (sp->cfg.perturb) args[a++] = "--perturb";
    if (sp->cfg.recheck) args[a++] = "--recheck";
    if (sp->case_name[0]) {
        args[a++] = "--case";
        args[a++] = sp->case_name;
    }
    args[a++] = "--out";
    args[a++] = dir;
    args[a] = NULL;

    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid; /* parent (or -1) */
    /* child */
    setpgid(0, 0);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    setenv("OPENBLAS_NUM_THREADS", threads, 1);
    setenv("OMP_NUM_THREADS", threads, 1);
    execv(o->exe, (char *const *)args);
    fprintf(stderr, "samebits: cannot execute %s: %s\n", o->exe, strerror(errno));
    _exit(127);
}

static void progress_line(const sb_exec_options *o, int done, int total, double t0) {
    if (!o->progress) return;
    double el = sb_now() - t0;
    double eta = done > 0 ? el / done * (total - done) : 0.0;
    fprintf(stderr, "\r  runs %d/%d  elapsed %.0fs  eta %.0fs   ", done, total, el, eta);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

sb_status sb_execute_runs(const sb_exec_options *o, const sb_run_spec *specs, int n,
                          sb_run_result *results, sb_error *err) {
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    double *start = calloc((size_t)n, sizeof *start);
    if (!pids || !start) {
        free(pids);
        free(start);
        return sb_error_set(err, SB_ERR_NOMEM, "out of memory");
    }
    double t0 = sb_now();
    int next = 0, running = 0, done = 0;
    for (int i = 0; i < n; i++) {
        sb_run_result *r = &results[i];
        memset(r, 0, sizeof *r);
        r->spec = &specs[i];
        r->status = SB_RUN_PENDING;
        snprintf(r->dir, sizeof r->dir, "%s/runs/%s", o->results_dir, specs[i].id);
        if (o->resume) {
            char rj[2048];
            snprintf(rj, sizeof rj, "%s/run.json", r->dir);
            if (sb_path_exists(rj) && collect(o->results_dir, r) == 0) {
                r->status = SB_RUN_OK;
                r->resumed = 1;
                done++;
                continue;
            }
            /* unfinished or unsound: start it again from nothing */
            r->message[0] = '\0';
            r->status = SB_RUN_PENDING;
            sb_rm_rf(r->dir);
        }
    }
    progress_line(o, done, n, t0);
    while (done < n) {
        /* start runs while there is room */
        while (running < o->jobs && next < n) {
            sb_run_result *r = &results[next];
            if (r->status != SB_RUN_PENDING) {
                next++;
                continue;
            }
            if (sb_mkdir_p(r->dir, err) != 0) goto fail;
            pids[next] = spawn(o, &specs[next], r->dir);
            if (pids[next] < 0) {
                sb_error_set(err, SB_ERR_IO, "cannot start a run: %s", strerror(errno));
                goto fail;
            }
            start[next] = sb_now();
            running++;
            next++;
        }
        /* reap finished children; kill those past the timeout */
        int reaped = 0;
        for (int i = 0; i < next; i++) {
            if (pids[i] <= 0) continue;
            int wstatus;
            pid_t w = waitpid(pids[i], &wstatus, WNOHANG);
            sb_run_result *r = &results[i];
            if (w == 0) {
                if (sb_now() - start[i] > o->timeout) {
                    kill(-pids[i], SIGKILL);
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], &wstatus, 0);
                    r->status = SB_RUN_TIMEOUT;
                    r->seconds = sb_now() - start[i];
                    r->exit_code = -SIGKILL;
                    snprintf(r->message, sizeof r->message, "killed after the %.0f s timeout",
                             o->timeout);
                } else {
                    continue;
                }
            } else {
                r->seconds = sb_now() - start[i];
                if (WIFEXITED(wstatus)) {
                    r->exit_code = WEXITSTATUS(wstatus);
                    if (r->exit_code == 0 && collect(o->results_dir, r) == 0) {
                        r->status = SB_RUN_OK;
                    } else if (r->status == SB_RUN_PENDING) {
                        r->status = r->exit_code == SB_EXIT_RUN ? SB_RUN_FAILED : SB_RUN_CRASHED;
                        if (!r->message[0] || r->exit_code != 0)
                            snprintf(r->message, sizeof r->message,
                                     "exited with code %d (see runs/%s/log.txt)", r->exit_code,
                                     specs[i].id);
                    }
                } else {
                    int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
                    r->exit_code = -sig;
                    r->status = SB_RUN_CRASHED;
                    snprintf(r->message, sizeof r->message, "killed by signal %d (%s)", sig,
                             strsignal(sig));
                }
            }
            pids[i] = 0;
            running--;
            done++;
            reaped++;
            progress_line(o, done, n, t0);
        }
        if (!reaped) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    free(pids);
    free(start);
    return SB_OK;
fail:
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) {
            kill(-pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    free(pids);
    free(start);
    return err ? err->status : SB_ERR_IO;
}
