/* safetensors.c — the safetensors reader and writer, SHA-256 digests of files
 * and tensors, and the atomic file writing every samebits writer goes through
 * (see safetensors.h for the format and the contracts).
 *
 * The reader trusts nothing: every length, shape and offset is checked before
 * it is used, and every error is one line naming the file and the place. The
 * JSON header is parsed with cJSON; because cJSON keeps numbers only as
 * doubles, the header's number tokens are also scanned from the text so that
 * shapes and offsets are read as exact 64-bit integers and "1.0" or "-1" are
 * rejected as the reference reader rejects them.
 *
 * Deliberately not here: tensor interpretation (diffs, stats) and dtype
 * conversion. Assumes a little-endian host (the format's byte order).
 */
#include "safetensors.h"
#include "strbuf.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "samebits assumes a little-endian host (safetensors data is little-endian)"
#endif

/* The reference implementation refuses headers above 100 MB; so do we. And
 * since cJSON spends ~80 bytes per value, the count of values is capped too
 * (counted from the text before parsing): 2^24 is well above what a 100 MB
 * header of real tensors holds (~10 per tensor, ~100 bytes per tensor). */
#define SB_ST_MAX_HEADER 100000000ull
#define SB_ST_MAX_VALUES (1u << 24)

/* ====================================================================== */
/* dtypes                                                                 */
/* ====================================================================== */

static const struct { const char *name; size_t size; } dtypes[SB_DT_COUNT] = {
    [SB_DT_F64] = {"F64", 8},  [SB_DT_F32] = {"F32", 4},   [SB_DT_F16] = {"F16", 2},
    [SB_DT_BF16] = {"BF16", 2}, [SB_DT_I64] = {"I64", 8},  [SB_DT_I32] = {"I32", 4},
    [SB_DT_I16] = {"I16", 2},  [SB_DT_I8] = {"I8", 1},     [SB_DT_U64] = {"U64", 8},
    [SB_DT_U32] = {"U32", 4},  [SB_DT_U16] = {"U16", 2},   [SB_DT_U8] = {"U8", 1},
    [SB_DT_BOOL] = {"BOOL", 1}, [SB_DT_F8_E4M3] = {"F8_E4M3", 1},
    [SB_DT_F8_E5M2] = {"F8_E5M2", 1},
};

const char *sb_dtype_name(sb_dtype d) {
    return (unsigned)d < SB_DT_COUNT ? dtypes[d].name : "?";
}

size_t sb_dtype_size(sb_dtype d) { return (unsigned)d < SB_DT_COUNT ? dtypes[d].size : 0; }

int sb_dtype_parse(const char *name, sb_dtype *out) {
    for (int i = 0; i < SB_DT_COUNT; i++)
        if (name && strcmp(name, dtypes[i].name) == 0) {
            *out = (sb_dtype)i;
            return 0;
        }
    return -1;
}

/* ====================================================================== */
/* small helpers                                                          */
/* ====================================================================== */

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Offset of the first byte that is not valid UTF-8, or -1 when all is valid. */
long sb_utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return (long)i;
        if (n - i < len) return (long)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return (long)i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (long)i;
        i += len;
    }
    return -1;
}

/* A name as shown in an error: quoted, control bytes escaped, cut at 80. */
const char *sb_shown_name(const char *s, char buf[128]) {
    size_t o = 0, i = 0;
    buf[o++] = '"';
    for (; s[i] && o < 100; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(buf + o, 8, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    if (s[i]) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}

/* ====================================================================== */
/* whole-file reading and atomic writing                                  */
/* ====================================================================== */

char *sb_read_file(const char *path, size_t max_bytes, size_t *n, sb_error *err) {
    char *buf = NULL;
    size_t len = 0, cap;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sb_error_set(err, SB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        sb_error_set(err, SB_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        sb_error_set(err, SB_ERR_IO, "%s: is a directory, not a file", path);
        goto fail;
    }
    /* the size is only a hint (pipes report 0, files may grow); never above max+1 */
    cap = (S_ISREG(st.st_mode) && (uint64_t)st.st_size < max_bytes) ? (size_t)st.st_size + 1
                                                                      : 65536;
    if (cap > max_bytes) cap = max_bytes + 1;
    if (cap < 2) cap = 2;
    buf = malloc(cap);
    if (!buf) goto nomem;
    for (;;) {
        if (len + 1 >= cap) {
            if (len > max_bytes) break;
            size_t ncap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            if (ncap > max_bytes + 1) ncap = max_bytes + 2;
            char *nb = realloc(buf, ncap);
            if (!nb) goto nomem;
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            sb_error_set(err, SB_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    if (len > max_bytes) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: file is larger than the %zu-byte limit", path,
                     max_bytes);
        goto fail;
    }
    buf[len] = 0;
    close(fd);
    if (n) *n = len;
    return buf;
nomem:
    sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory reading the file", path);
fail:
    free(buf);
    close(fd);
    return NULL;
}

typedef struct atomic_out {
    char *tmp; /* PATH.tmp.<pid> */
    int fd;
} atomic_out;

static void atomic_abort(atomic_out *o) {
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    o->fd = -1;
    o->tmp = NULL;
}

static sb_status atomic_open(const char *path, int overwrite, atomic_out *o, sb_error *err) {
    struct stat st;
    o->fd = -1;
    o->tmp = NULL;
    /* early refusal, so a large write is not wasted; the rename re-checks */
    if (!overwrite && lstat(path, &st) == 0)
        return sb_error_set(err, SB_ERR_EXISTS, "%s: already exists; refusing to overwrite it",
                            path);
    size_t n = strlen(path) + 32;
    o->tmp = malloc(n);
    if (!o->tmp) return sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", path);
    snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    for (int attempt = 0; attempt < 2; attempt++) {
        o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (o->fd >= 0 || errno != EEXIST) break;
        unlink(o->tmp); /* left by a dead process that had our pid */
    }
    if (o->fd < 0) {
        sb_error_set(err, SB_ERR_IO, "%s: cannot create: %s", o->tmp, strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        return SB_ERR_IO;
    }
    return SB_OK;
}

static sb_status atomic_write(atomic_out *o, const void *data, size_t n, sb_error *err) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(o->fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return sb_error_set(err, SB_ERR_IO, "%s: cannot write: %s", o->tmp,
                                w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return SB_OK;
}

/* Moves tmp into place without ever replacing an existing file when
 * overwrite == 0: renameat2(RENAME_NOREPLACE), else link()+unlink() (both
 * atomic against a concurrent creator), else, on file systems with neither,
 * a stat before the rename. */
sb_status sb_place_noreplace(const char *tmp, const char *path, sb_error *err) {
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) return SB_OK;
    if (errno == EEXIST) goto exists;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) goto io;
    if (link(tmp, path) == 0) {
        unlink(tmp);
        return SB_OK;
    }
    if (errno == EEXIST) goto exists;
    if (errno != EPERM && errno != ENOTSUP && errno != ENOSYS) goto io;
    struct stat st;
    if (lstat(path, &st) == 0) goto exists;
    if (rename(tmp, path) == 0) return SB_OK;
io:
    return sb_error_set(err, SB_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
                        strerror(errno));
exists:
    return sb_error_set(err, SB_ERR_EXISTS, "%s: already exists; refusing to overwrite it", path);
}

static sb_status atomic_commit(atomic_out *o, const char *path, int overwrite, sb_error *err) {
    sb_status s;
    if (fsync(o->fd) != 0) {
        s = sb_error_set(err, SB_ERR_IO, "%s: fsync failed: %s", o->tmp, strerror(errno));
        goto fail;
    }
    int rc = close(o->fd);
    o->fd = -1;
    if (rc != 0) {
        s = sb_error_set(err, SB_ERR_IO, "%s: close failed: %s", o->tmp, strerror(errno));
        goto fail;
    }
    if (overwrite) {
        if (rename(o->tmp, path) != 0) {
            s = sb_error_set(err, SB_ERR_IO, "%s: cannot rename %s into place: %s", path,
                             o->tmp, strerror(errno));
            goto fail;
        }
    } else if ((s = sb_place_noreplace(o->tmp, path, err)) != SB_OK) {
        goto fail;
    }
    /* make the rename durable: fsync the directory (best effort) */
    {
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
        int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    free(o->tmp);
    o->tmp = NULL;
    return SB_OK;
fail:
    atomic_abort(o);
    return s;
}

sb_status sb_write_file_atomic(const char *path, const void *data, size_t n, int overwrite,
                               sb_error *err) {
    atomic_out o;
    sb_status s = atomic_open(path, overwrite, &o, err);
    if (s != SB_OK) return s;
    if ((s = atomic_write(&o, data, n, err)) != SB_OK) {
        atomic_abort(&o);
        return s;
    }
    return atomic_commit(&o, path, overwrite, err);
}

/* ====================================================================== */
/* SHA-256                                                                */
/* ====================================================================== */

static void to_hex(const unsigned char *md, char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = 0;
}

static EVP_MD_CTX *sha_begin(void) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    SB_ASSERT(c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1);
    return c;
}

static void sha_update(EVP_MD_CTX *c, const void *p, size_t n) {
    SB_ASSERT(EVP_DigestUpdate(c, p, n) == 1);
}

static void sha_end(EVP_MD_CTX *c, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    SB_ASSERT(EVP_DigestFinal_ex(c, md, &len) == 1 && len == 32);
    EVP_MD_CTX_free(c);
    to_hex(md, hex);
}

void sb_sha256_bytes(const void *data, size_t n, char hex[65]) {
    EVP_MD_CTX *c = sha_begin();
    sha_update(c, data, n);
    sha_end(c, hex);
}

sb_status sb_sha256_file(const char *path, char hex[65], sb_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sb_error_set(err, SB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *c = sha_begin();
    static _Thread_local unsigned char chunk[1 << 16];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            sb_error_set(err, SB_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            EVP_MD_CTX_free(c);
            close(fd);
            return SB_ERR_IO;
        }
        if (r == 0) break;
        sha_update(c, chunk, (size_t)r);
    }
    close(fd);
    sha_end(c, hex);
    return SB_OK;
}

static void sha_field(EVP_MD_CTX *c, const void *p, uint64_t n) {
    uint8_t len[8];
    put_le64(len, n);
    sha_update(c, len, 8);
    sha_update(c, p, (size_t)n);
}

static int cmp_tensor_ptr_name(const void *x, const void *y) {
    return strcmp((*(const sb_st_tensor *const *)x)->name, (*(const sb_st_tensor *const *)y)->name);
}

void sb_st_weights_digest(const sb_st_file *f, char hex[65]) {
    static const char tag[] = "samebits.weights.v1";
    const sb_st_tensor **order = malloc(sizeof *order * (size_t)(f->n_tensors ? f->n_tensors : 1));
    SB_ASSERT(order);
    for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_tensor_ptr_name);
    EVP_MD_CTX *c = sha_begin();
    uint8_t count[8];
    sha_field(c, tag, sizeof tag - 1);
    put_le64(count, (uint64_t)f->n_tensors);
    sha_update(c, count, 8);
    for (int i = 0; i < f->n_tensors; i++) {
        const sb_st_tensor *t = order[i];
        uint8_t dims[8 * SB_ST_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) put_le64(dims + 8 * d, (uint64_t)t->shape[d]);
        const char *dt = sb_dtype_name(t->dtype);
        sha_field(c, t->name, strlen(t->name));
        sha_field(c, dt, strlen(dt));
        sha_field(c, dims, 8u * (uint64_t)t->ndim);
        sha_field(c, t->data, t->end - t->begin);
    }
    sha_end(c, hex);
    free(order);
}

/* ====================================================================== */
/* reader                                                                 */
/* ====================================================================== */

typedef struct num_lex { size_t off, len; } num_lex;

typedef struct parse_ctx {
    sb_st_file *f;
    sb_error *err;
    num_lex *nums; /* every number token of the header, in text order */
    size_t n_nums, next_num;
    uint64_t data_size;
} parse_ctx;

typedef unsigned long long ull; /* for printf */

/* Sets a format error "<file>: header: <tensor "x": >message"; tn may be NULL. */
static sb_status hdr_err(parse_ctx *c, const char *tn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sb_status hdr_err(parse_ctx *c, const char *tn, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sb_error_set(c->err, SB_ERR_FORMAT, "%s: header: %s%s%s%s", c->f->path,
                        tn ? "tensor " : "", tn ? tn : "", tn ? ": " : "", msg);
}

static const char *json_kind(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "an unknown value";
}

/* Finds the number tokens of the JSON text, in order. When cJSON then
 * parses the text, it visits numbers in the same order, so the k-th number
 * item it yields is the k-th token. Also rejects \u0000 in strings (it would
 * cut names) and more than SB_ST_MAX_VALUES values (counted as commas and
 * opening brackets), before anything is allocated for them. */
static sb_status scan_numbers(parse_ctx *c, const char *s, size_t n) {
    size_t count = 0, values = 1;
    for (int pass = 0; pass < 2; pass++) {
        count = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ',' || s[i] == '[' || s[i] == '{') {
                values += pass == 0;
            } else if (s[i] == '"') {
                for (i++; i < n && s[i] != '"'; i++) {
                    if (s[i] != '\\') continue;
                    if (i + 5 < n && memcmp(s + i + 1, "u0000", 5) == 0)
                        return hdr_err(c, NULL, "byte %zu: a string contains \\u0000", i);
                    i++;
                }
            } else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
                size_t b = i;
                while (i < n && s[i] && strchr("0123456789+-.eE", s[i])) i++;
                if (pass == 1) c->nums[count] = (num_lex){b, i - b};
                count++;
                i--;
            }
        }
        if (pass == 0 && values > SB_ST_MAX_VALUES)
            return hdr_err(c, NULL, "about %zu JSON values, more than the %u samebits reads",
                           values, SB_ST_MAX_VALUES);
        if (pass == 0 && !(c->nums = malloc((count ? count : 1) * sizeof *c->nums)))
            return sb_error_set(c->err, SB_ERR_NOMEM, "%s: out of memory", c->f->path);
    }
    c->n_nums = count;
    return SB_OK;
}

/* Reads a number item as an exact non-negative integer from its token. */
static sb_status take_uint(parse_ctx *c, const char *tn, const cJSON *item, const char *place,
                           uint64_t *out) {
    if (!cJSON_IsNumber(item))
        return hdr_err(c, tn, "%s: expected a non-negative integer, got %s", place, json_kind(item));
    if (c->next_num >= c->n_nums) return hdr_err(c, tn, "%s: number tokens out of step", place);
    num_lex lx = c->nums[c->next_num++];
    const char *s = c->f->header_json + lx.off;
    uint64_t v = 0;
    int ok = lx.len > 0 && !(lx.len > 1 && s[0] == '0'); /* JSON has no leading zeros */
    for (size_t i = 0; ok > 0 && i < lx.len; i++) {
        if (s[i] < '0' || s[i] > '9') ok = 0;
        else if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10) ok = -1;
        else v = v * 10 + (uint64_t)(s[i] - '0');
    }
    for (size_t i = 0; ok < 0 && i < lx.len; i++) /* too long, but an integer at all? */
        if (s[i] < '0' || s[i] > '9') ok = 0;
    if (ok <= 0)
        return hdr_err(c, tn, "%s: %.*s%s is not %s", place, (int)(lx.len > 40 ? 40 : lx.len), s,
                       lx.len > 40 ? "..." : "", ok < 0 ? "below 2^64" : "a non-negative integer");
    *out = v;
    return SB_OK;
}

static int cmp_meta_pair(const void *x, const void *y) {
    return strcmp(((char *const *)x)[0], ((char *const *)y)[0]);
}

/* Metadata is kept sorted by key (so listings are stable); duplicates are
 * found after sorting. */
static sb_status parse_meta(parse_ctx *c, const cJSON *m) {
    sb_st_file *f = c->f;
    char nb[128];
    char **pairs = NULL; /* key0, val0, key1, val1, ... (borrowed from cJSON) */
    sb_status s = SB_OK;
    if (!cJSON_IsObject(m)) return hdr_err(c, NULL, "__metadata__: expected an object, got %s",
                                           json_kind(m));
    int n = cJSON_GetArraySize(m), k = 0;
    pairs = malloc(sizeof *pairs * 2 * ((size_t)n + 1));
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_vals = calloc((size_t)n + 1, sizeof(char *));
    if (!pairs || !f->meta_keys || !f->meta_vals) goto nomem;
    for (const cJSON *e = m->child; e; e = e->next, k++) {
        if (!cJSON_IsString(e)) {
            s = hdr_err(c, NULL, "__metadata__: %s: expected a string value, got %s",
                        sb_shown_name(e->string, nb), json_kind(e));
            goto fail;
        }
        pairs[2 * k] = e->string;
        pairs[2 * k + 1] = e->valuestring;
    }
    qsort(pairs, (size_t)n, 2 * sizeof *pairs, cmp_meta_pair);
    for (k = 0; k < n; k++) {
        if (k > 0 && strcmp(pairs[2 * k - 2], pairs[2 * k]) == 0) {
            s = hdr_err(c, NULL, "__metadata__: duplicate key %s", sb_shown_name(pairs[2 * k], nb));
            goto fail;
        }
        f->meta_keys[k] = strdup(pairs[2 * k]);
        f->meta_vals[k] = strdup(pairs[2 * k + 1]);
        f->n_meta = k + 1; /* both freed by sb_st_free, even if one is NULL */
        if (!f->meta_keys[k] || !f->meta_vals[k]) goto nomem;
    }
    free(pairs);
    return SB_OK;
nomem:
    s = sb_error_set(c->err, SB_ERR_NOMEM, "%s: out of memory", f->path);
fail:
    free(pairs);
    return s;
}

/* One tensor entry; its fields are visited in text order (see scan_numbers). */
static sb_status parse_tensor(parse_ctx *c, const cJSON *e, sb_st_tensor *t) {
    char nb[128], place[128];
    const char *tn = sb_shown_name(e->string, nb);
    int seen_dtype = 0, seen_shape = 0, seen_off = 0;
    uint64_t begin = 0, end = 0;
    sb_status s;
    if (!cJSON_IsObject(e)) return hdr_err(c, NULL, "%s: expected a tensor object, got %s", tn,
                                           json_kind(e));
    for (const cJSON *fld = e->child; fld; fld = fld->next) {
        const char *k = fld->string;
        int *seen = !strcmp(k, "dtype") ? &seen_dtype : !strcmp(k, "shape") ? &seen_shape
                  : !strcmp(k, "data_offsets") ? &seen_off : NULL;
        if (!seen) return hdr_err(c, tn, "unknown field %s", sb_shown_name(k, place));
        if ((*seen)++) return hdr_err(c, tn, "duplicate field \"%s\"", k);
        if (seen == &seen_dtype) {
            if (!cJSON_IsString(fld))
                return hdr_err(c, tn, "dtype: expected a string, got %s", json_kind(fld));
            if (sb_dtype_parse(fld->valuestring, &t->dtype) != 0)
                return hdr_err(c, tn, "dtype: unknown dtype %s", sb_shown_name(fld->valuestring, place));
        } else if (seen == &seen_shape) {
            if (!cJSON_IsArray(fld))
                return hdr_err(c, tn, "shape: expected an array, got %s", json_kind(fld));
            int nd = cJSON_GetArraySize(fld);
            if (nd > SB_ST_MAX_DIMS)
                return hdr_err(c, tn, "shape: %d dimensions, at most %d are supported", nd,
                               SB_ST_MAX_DIMS);
            t->ndim = 0;
            for (const cJSON *d = fld->child; d; d = d->next) {
                uint64_t v;
                snprintf(place, sizeof place, "shape[%d]", t->ndim);
                if ((s = take_uint(c, tn, d, place, &v)) != SB_OK) return s;
                if (v > (uint64_t)INT64_MAX) return hdr_err(c, tn, "%s: %llu is too large", place,
                                                            (ull)v);
                t->shape[t->ndim++] = (int64_t)v;
            }
        } else {
            if (!cJSON_IsArray(fld) || cJSON_GetArraySize(fld) != 2)
                return hdr_err(c, tn, "data_offsets: expected [begin, end], got %s%s",
                               json_kind(fld), cJSON_IsArray(fld) ? " of another length" : "");
            if ((s = take_uint(c, tn, fld->child, "data_offsets[0]", &begin)) != SB_OK ||
                (s = take_uint(c, tn, fld->child->next, "data_offsets[1]", &end)) != SB_OK)
                return s;
        }
    }
    if (!seen_dtype || !seen_shape || !seen_off)
        return hdr_err(c, tn, "missing field \"%s\"",
                       !seen_dtype ? "dtype" : !seen_shape ? "shape" : "data_offsets");
    /* element and byte counts, overflow checked in the reference's order */
    uint64_t numel = 1, size = sb_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        uint64_t v = (uint64_t)t->shape[d];
        if (v != 0 && numel > UINT64_MAX / v)
            return hdr_err(c, tn, "shape: element count overflows 64 bits");
        numel *= v;
    }
    if (numel > UINT64_MAX / size) return hdr_err(c, tn, "shape: byte count overflows 64 bits");
    t->numel = numel;
    if (begin > end)
        return hdr_err(c, tn, "data_offsets: begin %llu is after end %llu", (ull)begin, (ull)end);
    if (end > c->data_size)
        return hdr_err(c, tn, "data_offsets: end %llu is past the end of the data (%llu bytes)",
                       (ull)end, (ull)c->data_size);
    if (end - begin != numel * size)
        return hdr_err(c, tn, "data_offsets: [%llu, %llu) is %llu bytes but %llu %s elements need "
                       "%llu", (ull)begin, (ull)end, (ull)(end - begin), (ull)numel,
                       sb_dtype_name(t->dtype), (ull)(numel * size));
    t->begin = begin;
    t->end = end;
    if (!(t->name = strdup(e->string)))
        return sb_error_set(c->err, SB_ERR_NOMEM, "%s: out of memory", c->f->path);
    return SB_OK;
}

static int cmp_by_offset(const void *x, const void *y) {
    const sb_st_tensor *a = x, *b = y;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int cmp_str_ptr(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Names unique, and the tensors tile the data region exactly (as the
 * reference requires: sorted by offset, each begins where the last ended). */
static sb_status check_layout(parse_ctx *c) {
    sb_st_file *f = c->f;
    char na[128], nb[128];
    const char **names = malloc(sizeof *names * (size_t)(f->n_tensors + 1));
    if (!names) return sb_error_set(c->err, SB_ERR_NOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
    qsort(names, (size_t)f->n_tensors, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < f->n_tensors; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            sb_status s = hdr_err(c, NULL, "duplicate tensor name %s", sb_shown_name(names[i], na));
            free(names);
            return s;
        }
    free(names);
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_by_offset);
    uint64_t cursor = 0;
    const sb_st_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors; i++) {
        const sb_st_tensor *t = &f->tensors[i];
        if (t->begin < cursor)
            return hdr_err(c, NULL, "tensors %s [%llu, %llu) and %s [%llu, %llu) overlap",
                           sb_shown_name(prev->name, na), (ull)prev->begin, (ull)prev->end,
                           sb_shown_name(t->name, nb), (ull)t->begin, (ull)t->end);
        if (t->begin > cursor)
            return hdr_err(c, NULL, "data bytes [%llu, %llu) before tensor %s belong to no tensor "
                           "(a hole)", (ull)cursor, (ull)t->begin, sb_shown_name(t->name, na));
        cursor = t->end;
        prev = t;
    }
    if (cursor != c->data_size)
        return hdr_err(c, NULL, "data bytes [%llu, %llu) at the end belong to no tensor (a hole)",
                       (ull)cursor, (ull)c->data_size);
    return SB_OK;
}

/* Takes ownership of buf (malloc'd, size bytes). */
static sb_st_file *parse_owned(uint8_t *buf, size_t size, const char *label, sb_error *err) {
#define FAIL(status, ...) do { sb_error_set(err, status, __VA_ARGS__); goto fail; } while (0)
    parse_ctx c = {.err = err};
    cJSON *root = NULL;
    sb_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(label))) {
        free(buf);
        free(f);
        sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", label);
        return NULL;
    }
    c.f = f;
    f->buf = buf;
    f->size = size;
    if (size < 8)
        FAIL(SB_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
             label, size);
    uint64_t n = le64(buf);
    if (n == 0) FAIL(SB_ERR_FORMAT, "%s: header length is 0 (no JSON header)", label);
    if (n > SB_ST_MAX_HEADER)
        FAIL(SB_ERR_FORMAT, "%s: header length %llu is above the %llu-byte limit", label, (ull)n,
             SB_ST_MAX_HEADER);
    if (n > size - 8)
        FAIL(SB_ERR_FORMAT, "%s: header length %llu is past the end of the file (%zu bytes after "
             "the length field)", label, (ull)n, size - 8);
    f->header_len = n;
    c.data_size = size - 8 - n;
    if (!(f->header_json = malloc((size_t)n + 1))) FAIL(SB_ERR_NOMEM, "%s: out of memory", label);
    memcpy(f->header_json, buf + 8, (size_t)n);
    f->header_json[n] = 0;
    const char *nul = memchr(f->header_json, 0, (size_t)n);
    if (nul) FAIL(SB_ERR_FORMAT, "%s: header: byte %zu is a NUL byte", label,
                  (size_t)(nul - f->header_json));
    long bad = sb_utf8_invalid_at((const uint8_t *)f->header_json, (size_t)n);
    if (bad >= 0) FAIL(SB_ERR_FORMAT, "%s: header: byte %ld is not valid UTF-8", label, bad);
    if (scan_numbers(&c, f->header_json, (size_t)n) != SB_OK) goto fail;
    const char *end = NULL;
    if (!(root = cJSON_ParseWithLengthOpts(f->header_json, (size_t)n, &end, 0))) {
        size_t at = end ? (size_t)(end - f->header_json) : 0, line = 1, col = 1;
        for (size_t i = 0; i < at && i < n; i++, col++)
            if (f->header_json[i] == '\n') { line++; col = 0; }
        FAIL(SB_ERR_FORMAT, "%s: header: malformed JSON at byte %zu (line %zu, column %zu)",
             label, at, line, col);
    }
    for (const char *p = end; p < f->header_json + n; p++) /* padding, as the reference allows */
        if (!strchr(" \t\r\n", *p))
            FAIL(SB_ERR_FORMAT, "%s: header: unexpected text after the JSON object at byte %zu",
                 label, (size_t)(p - f->header_json));
    if (!cJSON_IsObject(root))
        FAIL(SB_ERR_FORMAT, "%s: header: expected a JSON object, got %s", label, json_kind(root));
    int seen_meta = 0;
    if (!(f->tensors = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *f->tensors)))
        FAIL(SB_ERR_NOMEM, "%s: out of memory", label);
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++) FAIL(SB_ERR_FORMAT, "%s: header: duplicate __metadata__", label);
            if (parse_meta(&c, e) != SB_OK) goto fail;
        } else {
            if (parse_tensor(&c, e, &f->tensors[f->n_tensors]) != SB_OK) goto fail;
            f->n_tensors++;
        }
    }
    if (check_layout(&c) != SB_OK) goto fail;
    for (int i = 0; i < f->n_tensors; i++) f->tensors[i].data = buf + 8 + n + f->tensors[i].begin;
    cJSON_Delete(root);
    free(c.nums);
    return f;
fail:
    cJSON_Delete(root);
    free(c.nums);
    sb_st_free(f);
    return NULL;
#undef FAIL
}

sb_st_file *sb_st_parse(const uint8_t *bytes, size_t size, const char *label, sb_error *err) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", label);
        return NULL;
    }
    if (size) memcpy(copy, bytes, size);
    return parse_owned(copy, size, label, err);
}

sb_st_file *sb_st_read(const char *path, sb_error *err) {
    size_t n = 0;
    char *buf = sb_read_file(path, SIZE_MAX / 2, &n, err);
    if (!buf) return NULL;
    return parse_owned((uint8_t *)buf, n, path, err);
}

void sb_st_free(sb_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->header_json);
    free(f->buf);
    free(f->path);
    free(f);
}

const sb_st_tensor *sb_st_find(const sb_st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *sb_st_meta(const sb_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

/* ====================================================================== */
/* writer                                                                 */
/* ====================================================================== */

typedef struct wtensor {
    char *name;
    sb_dtype dtype;
    int ndim;
    int64_t shape[SB_ST_MAX_DIMS];
    uint64_t nbytes, begin;
    const void *data;
} wtensor;

struct sb_st_writer {
    wtensor *t;
    int n, cap;
    char **mkeys, **mvals;
    int nm, capm;
};

sb_st_writer *sb_st_writer_new(void) { return calloc(1, sizeof(sb_st_writer)); }

void sb_st_writer_free(sb_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < w->nm; i++) {
        free(w->mkeys[i]);
        free(w->mvals[i]);
    }
    free(w->t);
    free(w->mkeys);
    free(w->mvals);
    free(w);
}

static int valid_text(const char *s) {
    return s && sb_utf8_invalid_at((const uint8_t *)s, strlen(s)) < 0;
}

#define WRITER_ERR(status, ...) sb_error_set(err, status, "safetensors writer: " __VA_ARGS__)

sb_status sb_st_writer_add(sb_st_writer *w, const char *name, sb_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, sb_error *err) {
    char nb[128];
    if (!valid_text(name))
        return WRITER_ERR(SB_ERR_ARG, "tensor name is %s", name ? "not valid UTF-8" : "NULL");
    const char *tn = sb_shown_name(name, nb);
    if (strcmp(name, "__metadata__") == 0)
        return WRITER_ERR(SB_ERR_ARG, "the tensor name \"__metadata__\" is reserved");
    if ((unsigned)dtype >= SB_DT_COUNT)
        return WRITER_ERR(SB_ERR_ARG, "tensor %s: bad dtype %d", tn, (int)dtype);
    if (ndim < 0 || ndim > SB_ST_MAX_DIMS || (ndim > 0 && !shape))
        return WRITER_ERR(SB_ERR_ARG, "tensor %s: bad rank %d", tn, ndim);
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return WRITER_ERR(SB_ERR_ARG, "tensor %s: shape[%d] is negative", tn, d);
        if (shape[d] != 0 && numel > UINT64_MAX / (uint64_t)shape[d])
            return WRITER_ERR(SB_ERR_ARG, "tensor %s: element count overflows", tn);
        numel *= (uint64_t)shape[d];
    }
    if (numel > UINT64_MAX / sb_dtype_size(dtype))
        return WRITER_ERR(SB_ERR_ARG, "tensor %s: byte count overflows", tn);
    uint64_t nbytes = numel * sb_dtype_size(dtype);
    if (nbytes > 0 && !data) return WRITER_ERR(SB_ERR_ARG, "tensor %s: data is NULL", tn);
    for (int i = 0; i < w->n; i++) /* linear: checkpoints have hundreds of tensors, not millions */
        if (strcmp(w->t[i].name, name) == 0)
            return WRITER_ERR(SB_ERR_ARG, "duplicate tensor name %s", tn);
    if (w->n == w->cap) {
        int ncap = w->cap ? 2 * w->cap : 16;
        wtensor *nt = realloc(w->t, sizeof *nt * (size_t)ncap);
        if (!nt) return WRITER_ERR(SB_ERR_NOMEM, "out of memory");
        w->t = nt;
        w->cap = ncap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return WRITER_ERR(SB_ERR_NOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->nbytes = nbytes;
    t->data = data;
    w->n++;
    return SB_OK;
}

sb_status sb_st_writer_meta(sb_st_writer *w, const char *key, const char *value, sb_error *err) {
    char nb[128];
    if (!valid_text(key) || !valid_text(value))
        return WRITER_ERR(SB_ERR_ARG, "metadata key or value is NULL or not valid UTF-8");
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mkeys[i], key) == 0)
            return WRITER_ERR(SB_ERR_ARG, "duplicate metadata key %s", sb_shown_name(key, nb));
    if (w->nm == w->capm) {
        int ncap = w->capm ? 2 * w->capm : 8;
        char **nk = realloc(w->mkeys, sizeof *nk * (size_t)ncap);
        if (nk) w->mkeys = nk;
        char **nv = realloc(w->mvals, sizeof *nv * (size_t)ncap);
        if (nv) w->mvals = nv;
        if (!nk || !nv) return WRITER_ERR(SB_ERR_NOMEM, "out of memory");
        w->capm = ncap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return WRITER_ERR(SB_ERR_NOMEM, "out of memory");
    }
    w->mkeys[w->nm] = k;
    w->mvals[w->nm] = v;
    w->nm++;
    return SB_OK;
}


/* (key, index) pairs, sorted by key with qsort: no global sort context. */
typedef struct keyed { const char *key; int i; } keyed;

static int cmp_keyed(const void *x, const void *y) {
    return strcmp(((const keyed *)x)->key, ((const keyed *)y)->key);
}

sb_status sb_st_writer_save(sb_st_writer *w, const char *path, int overwrite, sb_error *err) {
    sb_strbuf h = {0};
    keyed *idx = malloc(sizeof *idx * (size_t)((w->n > w->nm ? w->n : w->nm) + 1));
    atomic_out o = {.fd = -1};
    sb_status s;
    char num[64];
    if (!idx) return sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", path);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        w->t[i].begin = off;
        off += w->t[i].nbytes;
    }
    sb_strbuf_puts(&h, "{");
    if (w->nm > 0) {
        for (int i = 0; i < w->nm; i++) idx[i] = (keyed){w->mkeys[i], i};
        qsort(idx, (size_t)w->nm, sizeof *idx, cmp_keyed);
        sb_strbuf_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            if (i) sb_strbuf_puts(&h, ",");
            sb_strbuf_json_string(&h, w->mkeys[idx[i].i]);
            sb_strbuf_puts(&h, ":");
            sb_strbuf_json_string(&h, w->mvals[idx[i].i]);
        }
        sb_strbuf_puts(&h, "}");
    }
    for (int i = 0; i < w->n; i++) idx[i] = (keyed){w->t[i].name, i};
    qsort(idx, (size_t)w->n, sizeof *idx, cmp_keyed);
    for (int i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[idx[i].i];
        if (i || w->nm) sb_strbuf_puts(&h, ",");
        sb_strbuf_json_string(&h, t->name);
        sb_strbuf_puts(&h, ":{\"dtype\":\"");
        sb_strbuf_puts(&h, sb_dtype_name(t->dtype));
        sb_strbuf_puts(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_strbuf_puts(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}",
                 (unsigned long long)t->begin, (unsigned long long)(t->begin + t->nbytes));
        sb_strbuf_puts(&h, num);
    }
    sb_strbuf_puts(&h, "}");
    while (!h.oom && h.len % 8 != 0) sb_strbuf_puts(&h, " "); /* data starts 8-aligned */
    if (h.oom) {
        s = sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory building the header", path);
        goto fail;
    }
    if (h.len > SB_ST_MAX_HEADER) {
        s = sb_error_set(err, SB_ERR_ARG, "%s: header would be %zu bytes, above the %llu-byte "
                         "limit", path, h.len, SB_ST_MAX_HEADER);
        goto fail;
    }
    uint8_t lenbuf[8];
    put_le64(lenbuf, h.len);
    if ((s = atomic_open(path, overwrite, &o, err)) != SB_OK) goto fail;
    if ((s = atomic_write(&o, lenbuf, 8, err)) != SB_OK) goto fail;
    if ((s = atomic_write(&o, h.p, h.len, err)) != SB_OK) goto fail;
    for (int i = 0; i < w->n; i++)
        if ((s = atomic_write(&o, w->t[i].data, (size_t)w->t[i].nbytes, err)) != SB_OK) goto fail;
    s = atomic_commit(&o, path, overwrite, err); /* cleans up itself on failure */
    o.fd = -1;
    o.tmp = NULL;
fail:
    atomic_abort(&o);
    free(h.p);
    free(idx);
    return s;
}
