/* util.c — small helpers the harness modules share: time, folders, strict
 * number parsing, terminal colour, copying and removing files.
 *
 * Not here: anything about suites, runs or checks.
 */
#include "harness.h"

#include <cjson/cJSON.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double sb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int sb_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int sb_mkdir_p(const char *path, sb_error *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        sb_error_set(err, SB_ERR_ARG, "%s: path too long", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                sb_error_set(err, SB_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
                return -1;
            }
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        sb_error_set(err, SB_ERR_IO, "%s: not a folder", path);
        return -1;
    }
    return 0;
}

int sb_use_color(FILE *f) {
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc) return 0;
    return isatty(fileno(f));
}

int sb_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return -1;
    const char *p = s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (!*p) return -1;
    unsigned long long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (v > (unsigned long long)9e17) return -1;
        v = v * 10 + (unsigned)(*p - '0');
    }
    long long x = neg ? -(long long)v : (long long)v;
    if (x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

int sb_parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

sb_status sb_copy_file(const char *src, const char *dst, sb_error *err) {
    size_t n;
    char *data = sb_read_file(src, (size_t)1 << 34, &n, err);
    if (!data) return err ? err->status : SB_ERR_IO;
    sb_status st = sb_write_file_atomic(dst, data, n, 0, err);
    free(data);
    return st;
}

int sb_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[4096];
        if ((size_t)snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= sizeof child) {
            rc = -1;
            continue;
        }
        if (sb_rm_rf(child) != 0) rc = -1;
    }
    closedir(d);
    if (rmdir(path) != 0) rc = -1;
    return rc;
}

/* Depth-first: the first object holding a key twice; its JSON path
 * ("runs[3].config.seed") into path. */
static int find_duplicate(const cJSON *j, char *path, size_t n, size_t at, int depth) {
    if (depth > 1000) return 0; /* cJSON's own nesting limit is lower */
    int i = 0;
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next, i++) {
        size_t len = at;
        if (cJSON_IsObject(j)) {
            for (const cJSON *d = j->child; d != c; d = d->next)
                if (d->string && c->string && !strcmp(d->string, c->string)) {
                    snprintf(path + at, n - at, "%s%s: duplicate key", at ? "." : "", c->string);
                    return 1;
                }
            len += (size_t)snprintf(path + at, n - at, "%s%s", at ? "." : "",
                                    c->string ? c->string : "");
        } else {
            len += (size_t)snprintf(path + at, n - at, "[%d]", i);
        }
        if (len >= n) len = n - 1;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && find_duplicate(c, path, n, len, depth + 1))
            return 1;
        path[at] = 0;
    }
    return 0;
}

int sb_json_find_duplicate_key(const cJSON *j, char *path, size_t n) {
    if (!n) return 0;
    path[0] = 0;
    return find_duplicate(j, path, n, 0, 0);
}

cJSON *sb_json_read_object(const char *path, size_t max_bytes, sb_error *err) {
    size_t n;
    char *text = sb_read_file(path, max_bytes, &n, err);
    if (!text) return NULL;
    if (memchr(text, '\0', n)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: holds a NUL byte: not a JSON text", path);
        free(text);
        return NULL;
    }
    const char *end = NULL;
    /* the length includes sb_read_file's terminating NUL: cJSON then also
     * rejects anything but white space after the value */
    cJSON *j = cJSON_ParseWithLengthOpts(text, n + 1, &end, 1);
    char where[512];
    if (!j) {
        /* cJSON points at (or just past) the offending character */
        size_t off = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        sb_error_set(err, SB_ERR_FORMAT, "%s: line %d, column %d: malformed JSON", path, line, col);
    } else if (!cJSON_IsObject(j)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
        cJSON_Delete(j);
        j = NULL;
    } else if (sb_json_find_duplicate_key(j, where, sizeof where)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: %s", path, where);
        cJSON_Delete(j);
        j = NULL;
    }
    free(text);
    return j;
}

int sb_parse_opts(int argc, char **argv, const char *cmd, const sb_opt *opts, int n_opts,
                  const char **positional, void (*usage)(FILE *)) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        const sb_opt *o = NULL;
        const char *attached = NULL;
        for (int k = 0; k < n_opts && !o; k++) {
            if (!strcmp(a, opts[k].name) || (opts[k].alias && !strcmp(a, opts[k].alias))) {
                o = &opts[k];
            } else if (opts[k].attached && opts[k].alias &&
                       !strncmp(a, opts[k].alias, strlen(opts[k].alias)) &&
                       a[strlen(opts[k].alias)]) {
                o = &opts[k];
                attached = a + strlen(opts[k].alias);
            }
        }
        if (!o) {
            if (a[0] == '-' && a[1]) {
                fprintf(stderr, "samebits %s: unknown option '%s'\n", cmd, a);
                return 2;
            }
            if (!positional || *positional) {
                fprintf(stderr, "samebits %s: unexpected argument '%s'\n", cmd, a);
                return 2;
            }
            *positional = a;
            continue;
        }
        if (o->flag) {
            *o->flag = 1;
        } else if (attached) {
            *o->value = attached;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "samebits %s: %s needs a value\n", cmd, a);
                return 2;
            }
            *o->value = argv[++i];
        }
    }
    return 0;
}
