/* trace.c — trace records (see trace.h for the format and the contracts):
 * stage names, XXH3-128 hashes, output stats, the streaming writer and the
 * validating reader of "trace.sbt" files.
 *
 * The writer is built to cost next to nothing per record: records go into a
 * 1 MiB buffer that is written out every 16,384 records; value blobs go into
 * a 4 MiB buffer that spills to an unlinked side file ("PATH.tmp.<pid>.values",
 * removed from the directory as soon as it is created). Since the records
 * must come first in the file and their count is only known at close, a blob's
 * final offset is unknown when it is emitted: close writes the last records,
 * patches the `values` field of the (few) records that have blobs, appends
 * the blobs, the footer, the real header, then fsyncs and renames into place
 * without ever replacing an existing file.
 *
 * The reader trusts nothing (DESIGN.md §8): every count, length and offset is
 * checked before use, every error is one line naming the file and the place.
 *
 * Not here: what to trace (engine/tracing.c), comparing traces
 * (harness/attrib.c). Assumes a little-endian host, as the format is.
 */
#include "trace.h"
#include "strbuf.h"
#include "safetensors.h" /* sb_read_file */

#include <cjson/cJSON.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack (xxHash's documented way) */
#include <xxhash.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "samebits assumes a little-endian host (trace files are little-endian)"
#endif

_Static_assert(sizeof(sb_trace_record) == 64, "trace records are 64 bytes");
_Static_assert(offsetof(sb_trace_record, in) == 16 && offsetof(sb_trace_record, out) == 32 &&
                   offsetof(sb_trace_record, out_l2) == 48 &&
                   offsetof(sb_trace_record, values) == 56,
               "trace record layout (no padding)");
_Static_assert(sizeof(sb_hash128) == 16, "hashes are 16 bytes");

#define TRACE_MAGIC "SBTRACE"            /* + its NUL: 8 bytes */
#define TRACE_VERSION 3u /* 1: tensors hashed whole (see the reader); 2: stats in double lanes */
#define TRACE_HEADER 32u
#define TRACE_REC 64u
#define TRACE_SCHEMA "samebits.trace/1"
#define TRACE_MAX_FILE (4ull << 30)      /* the reader holds the whole file */
#define TRACE_MAX_FOOTER (16u << 20)
#define TRACE_MAX_JSON_VALUES (1u << 21) /* cJSON spends ~64 bytes per value */
#define TRACE_MAX_OPS (1u << 19)     /* 3 JSON values each in the footer */
#define TRACE_MAX_NAME 127
#define TRACE_KNOWN_FLAGS SB_TRACE_RECHECK_DIFFERS
#define REC_BUF_RECORDS 16384u           /* 1 MiB of records per write */
#define VAL_BUF_BYTES (4u << 20)

typedef unsigned long long ull;

/* ====================================================================== */
/* stages                                                                 */
/* ====================================================================== */

static const char *const stage_names[SB_STAGE_COUNT] = {
    "data.source", "data.shuffle", "data.augment", "data.batch", "init",
    "forward",     "loss",         "backward",     "allreduce",  "optimizer",
};

const char *sb_stage_name(sb_stage s) {
    return (unsigned)s < SB_STAGE_COUNT ? stage_names[s] : "?";
}

int sb_stage_parse(const char *name, sb_stage *out) {
    for (int i = 0; name && i < SB_STAGE_COUNT; i++)
        if (strcmp(name, stage_names[i]) == 0) {
            *out = (sb_stage)i;
            return 0;
        }
    return -1;
}

/* ====================================================================== */
/* hashes and stats                                                       */
/* ====================================================================== */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
sb_hash128 sb_xxh3_128_avx512(const void *data, size_t n); /* xxh_avx512.c */
sb_hash128 sb_xxh3_128_avx2(const void *data, size_t n);   /* xxh_avx2.c */
sb_hash128 sb_xxh3_digest_avx512(const void *p, size_t n, double *acc, float *mx);
sb_hash128 sb_xxh3_digest_avx2(const void *p, size_t n, double *acc, float *mx);
sb_hash128 sb_xxh3_chunk_avx512(const void *p, size_t n, double *sumsq, float *maxabs);
sb_hash128 sb_xxh3_chunk_avx2(const void *p, size_t n, double *sumsq, float *maxabs);
#define SB_XXH_SIMD 1
#endif

_Static_assert(SB_HASH_CHUNK % (4 * SB_STAT_BLOCK) == 0, "a chunk holds whole stats blocks");

static sb_hash128 xxh3_generic(const void *data, size_t n) {
    XXH128_hash_t h = XXH3_128bits(data, n);
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}

/* Order of the stats of one chunk (SB_HASH_CHUNK bytes, or fewer at a
 * tensor's end). The chunk is cut into blocks of SB_STAT_BLOCK floats (the
 * last one shorter); element i of a block goes to lane i mod SB_STAT_LANES.
 * Within a block each lane sums the squares in float: s = fmaf(x, x, s) from
 * +0.0f in increasing i (one rounding per element, as a vector FMA does).
 * At the block's end each lane's float sum is converted to double and added
 * to the chunk's double lane k — unless one of the block's 64 float sums is
 * not finite (a square or a sum overflowed, or an element is Inf or NaN):
 * then the whole block is summed again in double (per lane, (double)x*x
 * exactly, in increasing i from +0.0) and those sums are added instead, so
 * overflow of float never reaches the stats (sb_stats_block_double). The 64
 * double lanes are then added as a balanced pairwise tree (lane k with k+32,
 * then k with k+16, …). A tensor's sum of squares is its chunks' sums added
 * in chunk order. A lane sums at most 32 squares in float, so the relative
 * error of the sum is below 2e-6 (the sqrt stored in a record, a float, is
 * nearly always the exact value's rounding).
 * max |x| is order-free: the largest |x| over the non-NaN elements, however
 * a path groups them (a > m ? a : m per lane, then the largest lane); when
 * the sum is NaN (an element is NaN: the squares are >= 0, so +inf never
 * meets -inf) max |x| is NaN too.
 * The order is fixed by the length alone, so the stats are the same on
 * every machine, build, vector path and thread count. The lanes are plain C
 * arrays here (the reference the vector paths in xxh_avx2.c / xxh_avx512.c
 * follow operation for operation).
 * (Trace format 2 summed every square in double over 32 lanes: the same
 * stats to within that error, at about twice the cost, since a double lane
 * holds 8 squares per 512-bit operation against 16.) */
enum { STAT_LANES = SB_STAT_LANES };

void sb_stats_block_double(double *acc, const float *x, size_t n) {
    double s[SB_STAT_LANES] = {0};
    for (size_t i = 0; i < n; i++) s[i % SB_STAT_LANES] += (double)x[i] * (double)x[i];
    for (int k = 0; k < SB_STAT_LANES; k++) acc[k] += s[k];
}

void sb_stats_block_finish(double *acc, const float *s, const float *x, size_t n) {
    for (int k = 0; k < SB_STAT_LANES; k++)
        if (!isfinite(s[k])) {
            sb_stats_block_double(acc, x, n);
            return;
        }
    for (int k = 0; k < SB_STAT_LANES; k++) acc[k] += (double)s[k];
}

static void lanes_feed_scalar(double *restrict acc, float *restrict mx, const float *restrict x,
                              size_t n) {
    for (size_t b = 0; b < n; b += SB_STAT_BLOCK) {
        size_t len = n - b < SB_STAT_BLOCK ? n - b : SB_STAT_BLOCK;
        float s[SB_STAT_LANES] = {0};
        for (size_t i = 0; i < len; i++) {
            float v = x[b + i], a = fabsf(v);
            int k = (int)(i % SB_STAT_LANES);
            s[k] = fmaf(v, v, s[k]);
            mx[k] = a > mx[k] ? a : mx[k];
        }
        sb_stats_block_finish(acc, s, x + b, len);
    }
}

static sb_hash128 digest_generic(const void *p, size_t n, double *acc, float *mx) {
    sb_hash128 h = xxh3_generic(p, n);
    if (acc) lanes_feed_scalar(acc, mx, p, n / sizeof(float));
    return h;
}

typedef struct hash_impl {
    sb_hash128 (*bytes)(const void *, size_t);
    sb_hash128 (*digest)(const void *, size_t, double *, float *);
    /* a float chunk whole, lanes from 0 through the tree (NULL: digest_chunk
     * does those around digest) */
    sb_hash128 (*chunk)(const void *, size_t, double *, float *);
} hash_impl;

/* XXH3-128 by the widest vector path the CPU has; every path gives the same
 * value (xxHash's guarantee, and test_trace checks known answers). The choice
 * is made once; two threads racing to make it store the same value. */
static hash_impl pick_impl(void) {
    static int isa = -1; /* 2: AVX-512, 1: AVX2, 0: neither */
    int v = __atomic_load_n(&isa, __ATOMIC_RELAXED);
    if (v < 0) {
        v = 0;
#ifdef SB_XXH_SIMD
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") ? 2
            : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")       ? 1
                                                                                     : 0;
#endif
        __atomic_store_n(&isa, v, __ATOMIC_RELAXED);
    }
#ifdef SB_XXH_SIMD
    if (v == 2) return (hash_impl){sb_xxh3_128_avx512, sb_xxh3_digest_avx512, sb_xxh3_chunk_avx512};
    if (v == 1) return (hash_impl){sb_xxh3_128_avx2, sb_xxh3_digest_avx2, sb_xxh3_chunk_avx2};
#endif
    return (hash_impl){xxh3_generic, digest_generic, NULL};
}

sb_hash128 sb_hash_bytes(const void *data, size_t n) {
    return pick_impl().bytes(n ? data : "", n);
}

sb_hash128 sb_hash_combine(const sb_hash128 *h, int n) {
    SB_ASSERT(n >= 0 && (n == 0 || h));
    if (n == 0) return (sb_hash128){0, 0};
    if (n == 1) return h[0];
    /* an sb_hash128 in memory is lo then hi, each little-endian: the bytes
     * the format names, so the array is hashed as it is */
    return sb_hash_bytes(h, (size_t)n * sizeof *h);
}

int sb_hash_equal(sb_hash128 a, sb_hash128 b) { return a.lo == b.lo && a.hi == b.hi; }

void sb_hash_hex(sb_hash128 h, char out[33]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[i] = digits[(h.hi >> (60 - 4 * i)) & 15];
        out[16 + i] = digits[(h.lo >> (60 - 4 * i)) & 15];
    }
    out[32] = 0;
}

/* One chunk: its XXH3-128 and (float tensors) its sum of squares and max |x|. */
typedef struct chunk_digest {
    sb_hash128 h;
    double sumsq;
    float maxabs;
} chunk_digest;

/* The stats lanes are cleared by plain stores: GCC turns `= {0}` (or a
 * loop it recognises as memset) into `rep stos` here, whose start-up cost
 * was a third of this function's time on small tensors (perf, smoke MLP). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static void digest_chunk(hash_impl impl, const void *p, size_t n, int is_float,
                         chunk_digest *out) {
    if (!n) p = ""; /* a NULL pointer is fine for an empty tensor */
    out->sumsq = 0.0;
    out->maxabs = 0.0f;
    if (!is_float) {
        out->h = impl.bytes(p, n);
        return;
    }
    if (impl.chunk) {
        out->h = impl.chunk(p, n, &out->sumsq, &out->maxabs);
        return;
    }
    double acc[STAT_LANES];
    float mx[STAT_LANES];
    for (int k = 0; k < STAT_LANES; k++) {
        acc[k] = 0.0;
        mx[k] = 0.0f;
    }
    out->h = impl.digest(p, n, acc, mx);
    for (int half = STAT_LANES / 2; half >= 1; half /= 2)
        for (int k = 0; k < half; k++) {
            acc[k] = acc[k] + acc[k + half];
            mx[k] = mx[k + half] > mx[k] ? mx[k + half] : mx[k];
        }
    out->sumsq = acc[0];
    out->maxabs = mx[0];
}

/* A tensor's chunks, combined in order (see sb_hash_tensor for the hash). */
typedef struct combiner {
    XXH3_state_t st;
    size_t k;
    chunk_digest acc; /* the first chunk's hash; the running sum and max */
} combiner;

static void comb_add(combiner *c, const chunk_digest *d) {
    /* hashes go in as lo then hi, each little-endian: the in-memory layout of
     * sb_hash128; the state is only started by a second chunk */
    if (c->k == 0) {
        c->acc = *d;
    } else {
        if (c->k == 1) {
            XXH3_128bits_reset(&c->st);
            XXH3_128bits_update(&c->st, &c->acc.h, sizeof c->acc.h);
        }
        XXH3_128bits_update(&c->st, &d->h, sizeof d->h);
        c->acc.sumsq = c->acc.sumsq + d->sumsq;
        c->acc.maxabs = d->maxabs > c->acc.maxabs ? d->maxabs : c->acc.maxabs;
    }
    c->k++;
}

static void comb_finish(combiner *c, sb_digest *d) {
    d->h = c->acc.h;
    if (c->k > 1) {
        uint8_t len[8];
        for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)d->bytes >> (8 * i));
        XXH3_128bits_update(&c->st, len, sizeof len);
        XXH128_hash_t h = XXH3_128bits_digest(&c->st);
        d->h = (sb_hash128){.lo = h.low64, .hi = h.high64};
    }
    d->sumsq = c->acc.sumsq;
    d->maxabs = isnan(c->acc.sumsq) ? NAN : c->acc.maxabs;
}

static size_t n_chunks(size_t bytes) {
    return bytes <= SB_HASH_CHUNK ? 1 : bytes / SB_HASH_CHUNK + (bytes % SB_HASH_CHUNK != 0);
}

/* chunk c (0-based) of tensor d: its start and length */
static const void *chunk_at(const sb_digest *d, size_t c, size_t *len) {
    size_t off = c * (size_t)SB_HASH_CHUNK;
    *len = d->bytes - off < SB_HASH_CHUNK ? d->bytes - off : SB_HASH_CHUNK;
    return off ? (const char *)d->p + off : d->p;
}

static void digest_serial(hash_impl impl, sb_digest *d) {
    combiner c;
    c.k = 0;
    size_t k = n_chunks(d->bytes);
    for (size_t i = 0; i < k; i++) {
        chunk_digest cd;
        size_t len;
        const void *p = chunk_at(d, i, &len);
        digest_chunk(impl, p, len, d->is_float, &cd);
        comb_add(&c, &cd);
    }
    comb_finish(&c, d);
}

/* The chunks of every tensor, numbered in order, cut into `parts` ranges of
 * about equal bytes, one per worker the caller expects: worker w digests
 * range w (the memory its thread most likely wrote, as the backend splits
 * its ops the same way), then helps with the others. Every chunk's digest
 * goes to its own slot, so which worker computes a chunk never matters. */
#define DIGEST_MAX_PARTS 64

typedef struct digest_job {
    hash_impl impl;
    sb_digest *d;
    int n;
    const size_t *first; /* [n + 1]: tensor t owns chunks [first[t], first[t+1]) */
    chunk_digest *out;   /* [first[n]] */
    int parts;
    size_t end[DIGEST_MAX_PARTS];  /* range p: chunks [p ? end[p-1] : 0, end[p]) */
    size_t next[DIGEST_MAX_PARTS]; /* the next chunk of range p to take (atomic) */
} digest_job;

static void digest_worker(void *arg, int worker, int nworkers) {
    (void)nworkers;
    digest_job *j = arg;
    for (int k = 0; k < j->parts; k++) {
        int p = (worker + k) % j->parts;
        for (;;) {
            size_t c = __atomic_fetch_add(&j->next[p], 1, __ATOMIC_RELAXED);
            if (c >= j->end[p]) break;
            /* the tensor holding chunk c: first[lo] <= c < first[lo + 1] */
            int lo = 0, hi = j->n - 1;
            while (lo < hi) {
                int mid = (lo + hi + 1) / 2;
                if (j->first[mid] <= c) lo = mid;
                else hi = mid - 1;
            }
            size_t len;
            const void *ptr = chunk_at(&j->d[lo], c - j->first[lo], &len);
            digest_chunk(j->impl, ptr, len, j->d[lo].is_float, &j->out[c]);
        }
    }
}

/* Below this many bytes in one call the caller digests alone. Waking the
 * pool's workers and waiting for them costs 20-60 us on the 2-vCPU VM this
 * was measured on (about what 256-512 KiB take to digest on one thread), and
 * the data an op's workers wrote on other cores is slower to read anyway:
 * there, 512 KiB was the best threshold for the 784-256-256-10 MLP's steps
 * (its 784 KiB and 1 MiB outputs in parallel, the rest alone). */
#define DIGEST_PAR_MIN (512u << 10)
#define DIGEST_STACK_CHUNKS 128
#define DIGEST_STACK_TENSORS 64

void sb_digest_tensors(sb_digest *d, int n, sb_fork_join run, void *ctx, int nworkers) {
    SB_ASSERT(n >= 0 && (n == 0 || d));
    hash_impl impl = pick_impl();
    size_t total = 0, bytes = 0;
    for (int t = 0; t < n; t++) {
        total += n_chunks(d[t].bytes);
        bytes += d[t].bytes;
    }
    chunk_digest sout[DIGEST_STACK_CHUNKS], *out = NULL;
    size_t sfirst[DIGEST_STACK_TENSORS + 1], *first = NULL;
    void *heap = NULL;
    if (run && nworkers > 1 && total > 1 && bytes >= DIGEST_PAR_MIN) {
        if (total <= DIGEST_STACK_CHUNKS && n <= DIGEST_STACK_TENSORS) {
            out = sout;
            first = sfirst;
        } else if ((heap = malloc(total * sizeof *out + ((size_t)n + 1) * sizeof *first))) {
            out = heap;
            first = (size_t *)(void *)(out + total);
        }
    }
    if (!out) { /* chunk by chunk, in order, on this thread (also when out of memory) */
        for (int t = 0; t < n; t++) digest_serial(impl, &d[t]);
        return;
    }
    digest_job j;
    j.impl = impl;
    j.d = d;
    j.n = n;
    j.first = first;
    j.out = out;
    j.parts = nworkers < DIGEST_MAX_PARTS ? nworkers : DIGEST_MAX_PARTS;
    first[0] = 0;
    for (int t = 0; t < n; t++) first[t + 1] = first[t] + n_chunks(d[t].bytes);
    /* range p ends at the first chunk starting at or after (p+1)/parts of the bytes */
    int p = 0;
    size_t at = 0; /* bytes before the current chunk */
    j.next[0] = 0;
    for (int t = 0; t < n; t++)
        for (size_t c = first[t]; c < first[t + 1]; c++) {
            while (p < j.parts - 1 && at >= (bytes / (size_t)j.parts) * (size_t)(p + 1)) {
                j.end[p++] = c;
                j.next[p] = c;
            }
            size_t len;
            chunk_at(&d[t], c - first[t], &len);
            at += len;
        }
    while (p < j.parts) {
        j.end[p++] = total;
        if (p < j.parts) j.next[p] = total;
    }
    run(ctx, digest_worker, &j); /* a barrier: every slot is written when it returns */
    for (int t = 0; t < n; t++) {
        combiner c;
        c.k = 0;
        for (size_t i = first[t]; i < first[t + 1]; i++) comb_add(&c, &out[i]);
        comb_finish(&c, &d[t]);
    }
    free(heap);
}

sb_hash128 sb_hash_tensor(const void *data, size_t n) {
    sb_digest d = {.p = data, .bytes = n, .is_float = 0};
    digest_serial(pick_impl(), &d);
    return d.h;
}

void sb_hash_stats_f32(const float *x, size_t n, sb_hash128 *h, float *l2, float *maxabs) {
    sb_digest d = {.p = x, .bytes = n * sizeof(float), .is_float = 1};
    digest_serial(pick_impl(), &d);
    *h = d.h;
    *l2 = (float)sqrt(d.sumsq);
    *maxabs = d.maxabs;
}

static sb_hash128 stats_only(const void *p, size_t n, double *acc, float *mx) {
    lanes_feed_scalar(acc, mx, p, n / sizeof(float));
    return (sb_hash128){0, 0};
}

/* The stats alone, by the plain C lanes (the reference the vector paths of
 * sb_hash_stats_f32 must equal). */
void sb_trace_stats(const float *x, size_t n, float *l2, float *maxabs) {
    sb_digest d = {.p = x, .bytes = n * sizeof(float), .is_float = 1};
    digest_serial((hash_impl){xxh3_generic, stats_only, NULL}, &d);
    *l2 = (float)sqrt(d.sumsq);
    *maxabs = d.maxabs;
}

/* ====================================================================== */
/* small helpers                                                          */
/* ====================================================================== */

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p + 4) << 32 | le32(p); }

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Why an op name is unacceptable, or NULL when it is fine. */
static const char *name_problem(const char *s) {
    if (!s) return "is NULL";
    size_t n = strlen(s);
    if (n == 0) return "is empty";
    if (n > TRACE_MAX_NAME) return "is longer than 127 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return "contains a control character";
    if (sb_utf8_invalid_at((const uint8_t *)s, n) >= 0) return "is not valid UTF-8";
    return NULL;
}

/* Scans JSON text once: counts an upper bound of its values (each value
 * is the root, the first in its container or follows a comma) and finds the
 * first escaped NUL (\u0000) inside a string. Returns its offset or -1. */
static long json_scan(const char *s, size_t n, size_t *values) {
    size_t v = 1;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '"') in_str = 0;
            else if (c == '\\' && i + 1 < n) {
                if (s[i + 1] == 'u' && n - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
                    return (long)i;
                i++;
            }
        } else if (c == '"') in_str = 1;
        else if (c == ',' || c == '[' || c == '{') v++;
    }
    *values = v;
    return -1;
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { if (w == 0) errno = EIO; return -1; }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int pio_all(int fd, void *p, size_t n, uint64_t off, int do_write) {
    uint8_t *b = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r = do_write ? pwrite(fd, b, chunk, (off_t)off) : pread(fd, b, chunk, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (r == 0) errno = EIO; return -1; }
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}


/* ====================================================================== */
/* writer                                                                 */
/* ====================================================================== */

typedef struct blob_ref { uint64_t rec, rel; } blob_ref; /* record index, offset in the blobs */

struct sb_trace_writer {
    char *path, *tmp;
    int fd;                   /* PATH.tmp.<pid>, positioned after the last written record */
    int vfd;                  /* spilled blobs (unlinked), -1 until the buffer first overflows */
    sb_trace_record *rbuf;    /* [REC_BUF_RECORDS] records not yet written */
    size_t rlen;
    uint64_t n_rec;           /* records emitted */
    uint8_t *vbuf;            /* [VAL_BUF_BYTES] blob bytes not yet spilled, NULL until needed */
    size_t vlen;
    uint64_t vsize;           /* blob bytes emitted (spilled + buffered) */
    blob_ref *refs;           /* records with blobs, in emission order */
    size_t n_refs, cap_refs;
    char **names;             /* [n_ops] */
    uint8_t *stages;          /* [n_ops] */
    uint32_t n_ops, cap_ops;
    uint32_t *slots;          /* open addressing by name hash: op id + 1, 0 = empty */
    uint32_t n_slots;         /* a power of two, > 2 * n_ops */
    sb_error err;             /* the first error; err.status != SB_OK once failed */
};

__attribute__((format(printf, 3, 4))) /* gcc and clang, the compilers we build with */
static void wfail(sb_trace_writer *w, sb_status s, const char *fmt, ...) {
    if (w->err.status != SB_OK) return; /* the first error is the one reported */
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sb_error_set(&w->err, s, "%s: %s", w->path, msg);
}

static void writer_free(sb_trace_writer *w) {
    if (w->fd >= 0) close(w->fd);
    if (w->vfd >= 0) close(w->vfd);
    if (w->tmp) unlink(w->tmp);
    for (uint32_t i = 0; i < w->n_ops; i++) free(w->names[i]);
    free(w->names);
    free(w->stages);
    free(w->slots);
    free(w->refs);
    free(w->rbuf);
    free(w->vbuf);
    free(w->tmp);
    free(w->path);
    free(w);
}

sb_trace_writer *sb_trace_writer_new(const char *path, sb_error *err) {
    struct stat st;
    uint8_t hdr[TRACE_HEADER] = {0};
    if (!path || !*path) {
        sb_error_set(err, SB_ERR_ARG, "trace writer: no path given");
        return NULL;
    }
    if (lstat(path, &st) == 0) { /* early refusal; close re-checks atomically */
        sb_error_set(err, SB_ERR_EXISTS, "%s: already exists; refusing to overwrite it", path);
        return NULL;
    }
    sb_trace_writer *w = calloc(1, sizeof *w);
    if (!w) goto nomem;
    w->fd = w->vfd = -1;
    size_t n = strlen(path) + 32;
    if (!(w->path = strdup(path)) || !(w->tmp = malloc(n))) goto nomem;
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    if (!(w->rbuf = malloc(sizeof *w->rbuf * REC_BUF_RECORDS))) goto nomem;
    for (int attempt = 0; attempt < 2; attempt++) {
        w->fd = open(w->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (w->fd >= 0 || errno != EEXIST) break;
        unlink(w->tmp); /* left by a dead process that had our pid */
    }
    if (w->fd < 0) {
        sb_error_set(err, SB_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        free(w->tmp);
        w->tmp = NULL;
        goto fail;
    }
    /* a placeholder header: count 0, footer offset 0 (an unfinished file never reads as valid) */
    memcpy(hdr, TRACE_MAGIC, 8);
    put_le32(hdr + 8, TRACE_VERSION);
    put_le32(hdr + 12, TRACE_REC);
    if (write_all(w->fd, hdr, sizeof hdr) != 0) {
        sb_error_set(err, SB_ERR_IO, "%s: cannot write: %s", w->tmp, strerror(errno));
        goto fail;
    }
    return w;
nomem:
    sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", path);
fail:
    if (w) writer_free(w);
    return NULL;
}

/* Doubles the slot table and re-inserts every op. */
static int grow_slots(sb_trace_writer *w) {
    uint32_t ns = w->n_slots ? 2 * w->n_slots : 64;
    uint32_t *s = calloc(ns, sizeof *s);
    if (!s) return -1;
    for (uint32_t id = 0; id < w->n_ops; id++) {
        uint32_t i = (uint32_t)XXH3_64bits(w->names[id], strlen(w->names[id])) & (ns - 1);
        while (s[i]) i = (i + 1) & (ns - 1);
        s[i] = id + 1;
    }
    free(w->slots);
    w->slots = s;
    w->n_slots = ns;
    return 0;
}

uint32_t sb_trace_op(sb_trace_writer *w, const char *name, sb_stage stage) {
    char nb[128];
    SB_ASSERT(w);
    if (w->err.status != SB_OK) return UINT32_MAX;
    if (!name) {
        wfail(w, SB_ERR_ARG, "op name (NULL) %s", name_problem(name));
        return UINT32_MAX;
    }
    if ((unsigned)stage >= SB_STAGE_COUNT) {
        wfail(w, SB_ERR_ARG, "op %s: stage %d out of range", sb_shown_name(name, nb), (int)stage);
        return UINT32_MAX;
    }
    /* a known name (every op of every step) was checked when it was registered */
    size_t len = strlen(name);
    uint32_t i = 0;
    if (w->n_slots) {
        i = (uint32_t)XXH3_64bits(name, len) & (w->n_slots - 1);
        for (; w->slots[i]; i = (i + 1) & (w->n_slots - 1)) {
            uint32_t id = w->slots[i] - 1;
            if (strcmp(w->names[id], name) != 0) continue;
            if (w->stages[id] != stage) {
                wfail(w, SB_ERR_ARG, "op %s registered with stage \"%s\", now with \"%s\"",
                      sb_shown_name(name, nb), stage_names[w->stages[id]], stage_names[stage]);
                return UINT32_MAX;
            }
            return id;
        }
    }
    const char *problem = name_problem(name);
    if (problem) {
        wfail(w, SB_ERR_ARG, "op name %s %s", sb_shown_name(name, nb), problem);
        return UINT32_MAX;
    }
    if (w->n_ops >= TRACE_MAX_OPS) {
        wfail(w, SB_ERR_ARG, "more than %u ops", TRACE_MAX_OPS);
        return UINT32_MAX;
    }
    if (w->n_ops == w->cap_ops) {
        uint32_t nc = w->cap_ops ? 2 * w->cap_ops : 64;
        char **nn = realloc(w->names, sizeof *nn * nc);
        if (nn) w->names = nn;
        uint8_t *ns = realloc(w->stages, nc);
        if (ns) w->stages = ns;
        if (!nn || !ns) goto nomem;
        w->cap_ops = nc;
    }
    if (!(w->names[w->n_ops] = strdup(name))) goto nomem;
    w->stages[w->n_ops] = (uint8_t)stage;
    w->n_ops++;
    if (2 * w->n_ops >= w->n_slots) {
        if (grow_slots(w) != 0) { w->n_ops--; free(w->names[w->n_ops]); goto nomem; }
    } else {
        w->slots[i] = w->n_ops; /* i is the empty slot the probe stopped at */
    }
    return w->n_ops - 1;
nomem:
    wfail(w, SB_ERR_NOMEM, "out of memory registering an op");
    return UINT32_MAX;
}

static int spill_values(sb_trace_writer *w) {
    if (w->vfd < 0) {
        size_t n = strlen(w->tmp) + 8;
        char *vt = malloc(n);
        if (!vt) { errno = ENOMEM; return -1; }
        snprintf(vt, n, "%s.values", w->tmp);
        w->vfd = open(vt, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (w->vfd >= 0) unlink(vt); /* lives on as long as the descriptor */
        int e = errno;
        free(vt);
        errno = e;
        if (w->vfd < 0) return -1;
    }
    if (w->vlen && write_all(w->vfd, w->vbuf, w->vlen) != 0) return -1;
    w->vlen = 0;
    return 0;
}

static void append_values(sb_trace_writer *w, const float *values, size_t bytes) {
    if (!w->vbuf && !(w->vbuf = malloc(VAL_BUF_BYTES))) {
        wfail(w, SB_ERR_NOMEM, "out of memory buffering values");
        return;
    }
    if (bytes > VAL_BUF_BYTES - w->vlen) {
        if (spill_values(w) != 0) goto io;
        if (bytes >= VAL_BUF_BYTES) { /* big blobs go straight to the side file */
            if (write_all(w->vfd, values, bytes) != 0) goto io;
            w->vsize += bytes;
            return;
        }
    }
    memcpy(w->vbuf + w->vlen, values, bytes);
    w->vlen += bytes;
    w->vsize += bytes;
    return;
io:
    wfail(w, SB_ERR_IO, "cannot write values to %s.values: %s", w->tmp, strerror(errno));
}

void sb_trace_emit(sb_trace_writer *w, sb_trace_record *rec, const float *values) {
    SB_ASSERT(w && rec);
    if (w->err.status != SB_OK) return;
    uint64_t idx = w->n_rec;
    if (rec->op >= w->n_ops) {
        wfail(w, SB_ERR_ARG, "record %llu: op index %u is not a registered op (%u ops)",
              (ull)idx, rec->op, w->n_ops);
        return;
    }
    if (rec->stage != w->stages[rec->op]) {
        char nb[128];
        wfail(w, SB_ERR_ARG, "record %llu: stage %u (%s) is not the stage of op %s (%s)",
              (ull)idx, rec->stage, sb_stage_name((sb_stage)rec->stage),
              sb_shown_name(w->names[rec->op], nb), stage_names[w->stages[rec->op]]);
        return;
    }
    if (rec->flags & ~TRACE_KNOWN_FLAGS) {
        wfail(w, SB_ERR_ARG, "record %llu: unknown flag bits 0x%x", (ull)idx,
              (unsigned)(rec->flags & ~TRACE_KNOWN_FLAGS));
        return;
    }
    size_t bytes = values ? (size_t)rec->n_out * sizeof(float) : 0;
    if (TRACE_HEADER + (idx + 1) * TRACE_REC + w->vsize + bytes > TRACE_MAX_FILE) {
        wfail(w, SB_ERR_ARG, "record %llu: the trace would grow past the 4 GiB limit", (ull)idx);
        return;
    }
    rec->values = 0;
    if (bytes > 0) {
        if (w->n_refs == w->cap_refs) {
            size_t nc = w->cap_refs ? 2 * w->cap_refs : 256;
            blob_ref *nr = realloc(w->refs, sizeof *nr * nc);
            if (!nr) { wfail(w, SB_ERR_NOMEM, "out of memory"); return; }
            w->refs = nr;
            w->cap_refs = nc;
        }
        uint64_t rel = w->vsize;
        append_values(w, values, bytes);
        if (w->err.status != SB_OK) return;
        w->refs[w->n_refs++] = (blob_ref){idx, rel};
        rec->values = rel + 1; /* a placeholder; close writes the file offset */
    }
    w->rbuf[w->rlen++] = *rec;
    w->n_rec++;
    if (w->rlen == REC_BUF_RECORDS) {
        if (write_all(w->fd, w->rbuf, w->rlen * TRACE_REC) != 0) {
            wfail(w, SB_ERR_IO, "cannot write %s: %s", w->tmp, strerror(errno));
            return;
        }
        w->rlen = 0;
    }
}

/* Builds the footer's JSON, or fails with SB_ERR_ARG / SB_ERR_NOMEM. */
static sb_status build_footer(sb_trace_writer *w, const char *run_json, sb_strbuf *b) {
    if (run_json) { /* the checks the reader makes of the footer */
        size_t n = strlen(run_json), unused;
        const char *end = NULL, *why = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(run_json, n, &end, 0);
        if (sb_utf8_invalid_at((const uint8_t *)run_json, n) >= 0) why = "is not valid UTF-8";
        else if (json_scan(run_json, n, &unused) >= 0) why = "contains an escaped NUL (\\u0000)";
        else if (!cJSON_IsObject(j) || !end || strspn(end, " \t\r\n") != strlen(end))
            why = "is not one JSON object";
        cJSON_Delete(j);
        if (why) {
            wfail(w, SB_ERR_ARG, "run JSON %s", why);
            return SB_ERR_ARG;
        }
    }
    sb_strbuf_puts(b, "{\"schema\":\"" TRACE_SCHEMA "\"");
    if (run_json) { /* spliced verbatim: cJSON would reprint big integers as doubles */
        sb_strbuf_puts(b, ",\"run\":");
        sb_strbuf_puts(b, run_json);
    }
    sb_strbuf_puts(b, ",\"ops\":[");
    for (uint32_t i = 0; i < w->n_ops; i++) {
        sb_strbuf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        sb_strbuf_json_string(b, w->names[i]);
        sb_strbuf_puts(b, ",\"stage\":\"");
        sb_strbuf_puts(b, stage_names[w->stages[i]]);
        sb_strbuf_puts(b, "\"}");
    }
    sb_strbuf_puts(b, "]}");
    if (b->oom) {
        wfail(w, SB_ERR_NOMEM, "out of memory building the footer");
        return SB_ERR_NOMEM;
    }
    size_t nvals = 0;
    json_scan(b->p, b->len, &nvals);
    if (b->len > TRACE_MAX_FOOTER || nvals > TRACE_MAX_JSON_VALUES) { /* what the reader accepts */
        wfail(w, SB_ERR_ARG, "the footer would be %zu bytes with %zu JSON values, above the "
              "limits (%u bytes, %u values)", b->len, nvals, TRACE_MAX_FOOTER,
              TRACE_MAX_JSON_VALUES);
        return SB_ERR_ARG;
    }
    return SB_OK;
}

/* Writes the final file offset into the `values` field of every record that
 * has a blob: one read and one write per 1 MiB window holding such records. */
static int patch_value_offsets(sb_trace_writer *w, uint64_t blob_start) {
    for (size_t i = 0; i < w->n_refs;) {
        uint64_t first = w->refs[i].rec, cnt = w->n_rec - first;
        if (cnt > REC_BUF_RECORDS) cnt = REC_BUF_RECORDS;
        uint64_t off = TRACE_HEADER + first * TRACE_REC;
        if (pio_all(w->fd, w->rbuf, (size_t)cnt * TRACE_REC, off, 0) != 0) return -1;
        for (; i < w->n_refs && w->refs[i].rec < first + cnt; i++)
            w->rbuf[w->refs[i].rec - first].values = blob_start + w->refs[i].rel;
        if (pio_all(w->fd, w->rbuf, (size_t)cnt * TRACE_REC, off, 1) != 0) return -1;
    }
    return 0;
}

/* Appends the spilled blobs (then the buffered ones) at the file position. */
static int copy_blobs(sb_trace_writer *w) {
    if (w->vfd >= 0) {
        uint64_t left = w->vsize - w->vlen;
        loff_t in = 0;
        int plain = 0;
        while (left > 0 && !plain) {
            ssize_t r = copy_file_range(w->vfd, &in, w->fd, NULL, (size_t)left, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) plain = 1; /* not supported here (or no progress): copy by hand */
            else left -= (uint64_t)r;
        }
        uint8_t *chunk = (uint8_t *)w->rbuf; /* free again: the records are written and patched */
        while (left > 0) {
            size_t c = left > REC_BUF_RECORDS * TRACE_REC ? REC_BUF_RECORDS * TRACE_REC : left;
            if (pio_all(w->vfd, chunk, c, (uint64_t)in, 0) != 0) return -1;
            if (write_all(w->fd, chunk, c) != 0) return -1;
            in += (loff_t)c;
            left -= c;
        }
    }
    return w->vlen ? write_all(w->fd, w->vbuf, w->vlen) : 0;
}

sb_status sb_trace_writer_close(sb_trace_writer *w, const char *run_json, sb_error *err) {
    sb_strbuf foot = {0};
    uint8_t hdr[TRACE_HEADER] = {0}, flen[4];
    sb_status s;
    if (!w) return sb_error_set(err, SB_ERR_ARG, "trace writer: NULL");
    if (w->err.status == SB_OK && build_footer(w, run_json, &foot) == SB_OK) {
        uint64_t blob_start = TRACE_HEADER + w->n_rec * TRACE_REC;
        uint64_t foot_off = blob_start + w->vsize;
        if (foot_off + 4 + foot.len > TRACE_MAX_FILE)
            wfail(w, SB_ERR_ARG, "the trace would be larger than the 4 GiB limit");
        else if ((w->rlen && write_all(w->fd, w->rbuf, w->rlen * TRACE_REC) != 0) ||
                 patch_value_offsets(w, blob_start) != 0 || copy_blobs(w) != 0)
            wfail(w, SB_ERR_IO, "cannot write %s: %s", w->tmp, strerror(errno));
        put_le32(flen, (uint32_t)foot.len);
        memcpy(hdr, TRACE_MAGIC, 8);
        put_le32(hdr + 8, TRACE_VERSION);
        put_le32(hdr + 12, TRACE_REC);
        put_le64(hdr + 16, w->n_rec);
        put_le64(hdr + 24, foot_off);
        if (w->err.status == SB_OK &&
            (write_all(w->fd, flen, 4) != 0 || write_all(w->fd, foot.p, foot.len) != 0 ||
             pio_all(w->fd, hdr, sizeof hdr, 0, 1) != 0))
            wfail(w, SB_ERR_IO, "cannot write %s: %s", w->tmp, strerror(errno));
        if (w->err.status == SB_OK && fsync(w->fd) != 0)
            wfail(w, SB_ERR_IO, "fsync of %s failed: %s", w->tmp, strerror(errno));
    }
    free(foot.p);
    if (w->err.status != SB_OK) {
        s = sb_error_set(err, w->err.status, "%s", w->err.msg);
        goto fail;
    }
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) {
        s = sb_error_set(err, SB_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
        goto fail;
    }
    if ((s = sb_place_noreplace(w->tmp, w->path, err)) != SB_OK) goto fail;
    free(w->tmp);
    w->tmp = NULL; /* in place: nothing to unlink */
    { /* make the rename durable: fsync the directory (best effort) */
        const char *slash = strrchr(w->path, '/');
        char *dir = slash ? strndup(w->path, (size_t)(slash - w->path) + (slash == w->path))
                          : strdup(".");
        int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    writer_free(w);
    return SB_OK;
fail:
    writer_free(w); /* removes the tmp file */
    return s;
}

void sb_trace_writer_abort(sb_trace_writer *w) {
    if (w) writer_free(w);
}

/* ====================================================================== */
/* reader                                                                 */
/* ====================================================================== */

static const char *json_kind(const cJSON *j) {
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    return "null";
}

typedef struct named { const char *name; int i; } named;

static int cmp_named(const void *a, const void *b) {
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

#define RFAIL(...) do { sb_error_set(err, SB_ERR_FORMAT, __VA_ARGS__); goto fail; } while (0)

/* The op table: an array of {"name": string, "stage": known stage name}. */
static sb_status parse_ops(sb_trace *t, const cJSON *ops, sb_error *err) {
    const char *p = t->path;
    char nb[128];
    named *order = NULL;
    if (!cJSON_IsArray(ops)) RFAIL("%s: footer: ops: expected an array, got %s", p, json_kind(ops));
    int n = cJSON_GetArraySize(ops);
    if ((unsigned)n > TRACE_MAX_OPS) RFAIL("%s: footer: ops: %d ops, above the limit of %u", p, n,
                                           TRACE_MAX_OPS);
    t->op_names = calloc((size_t)n + 1, sizeof *t->op_names);
    t->op_stages = calloc((size_t)n + 1, 1);
    order = malloc(sizeof *order * ((size_t)n + 1));
    if (!t->op_names || !t->op_stages || !order) {
        sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", p);
        goto fail;
    }
    int i = 0;
    for (const cJSON *e = ops->child; e; e = e->next, i++) {
        const cJSON *name = NULL, *stage = NULL;
        if (!cJSON_IsObject(e)) RFAIL("%s: footer: ops[%d]: expected an object, got %s", p, i,
                                      json_kind(e));
        for (const cJSON *f = e->child; f; f = f->next) {
            const cJSON **slot = !strcmp(f->string, "name")    ? &name
                                 : !strcmp(f->string, "stage") ? &stage : NULL;
            if (!slot) RFAIL("%s: footer: ops[%d]: unknown field %s", p, i, sb_shown_name(f->string, nb));
            if (*slot) RFAIL("%s: footer: ops[%d]: duplicate field \"%s\"", p, i, f->string);
            *slot = f;
        }
        if (!name || !stage) RFAIL("%s: footer: ops[%d]: missing \"%s\"", p, i,
                                   name ? "stage" : "name");
        if (!cJSON_IsString(name)) RFAIL("%s: footer: ops[%d].name: expected a string, got %s",
                                         p, i, json_kind(name));
        const char *problem = name_problem(name->valuestring);
        if (problem) RFAIL("%s: footer: ops[%d].name: %s %s", p, i,
                           sb_shown_name(name->valuestring, nb), problem);
        sb_stage s;
        if (!cJSON_IsString(stage)) RFAIL("%s: footer: ops[%d].stage: expected a string, got %s",
                                          p, i, json_kind(stage));
        if (sb_stage_parse(stage->valuestring, &s) != 0)
            RFAIL("%s: footer: ops[%d].stage: unknown stage %s", p, i,
                  sb_shown_name(stage->valuestring, nb));
        if (!(t->op_names[i] = strdup(name->valuestring))) {
            sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", p);
            goto fail;
        }
        t->op_stages[i] = (uint8_t)s;
        t->n_ops = i + 1;
        order[i] = (named){t->op_names[i], i};
    }
    qsort(order, (size_t)n, sizeof *order, cmp_named);
    for (int k = 1; k < n; k++)
        if (strcmp(order[k - 1].name, order[k].name) == 0)
            RFAIL("%s: footer: ops[%d].name: duplicate op name %s (also ops[%d])", p, order[k].i,
                  sb_shown_name(order[k].name, nb), order[k - 1].i);
    free(order);
    return SB_OK;
fail:
    free(order);
    return err ? err->status : SB_ERR_FORMAT;
}

/* The footer: {"schema": "samebits.trace/1", "run": {...}, "ops": [...]}. */
static sb_status parse_footer(sb_trace *t, const char *text, size_t n, sb_error *err) {
    const char *p = t->path, *end = NULL;
    char nb[128];
    cJSON *root = NULL;
    const cJSON *schema = NULL, *run = NULL, *ops = NULL;
    size_t nvals = 0;
    const char *nul = memchr(text, 0, n);
    if (nul) RFAIL("%s: footer: byte %zu is a NUL byte", p, (size_t)(nul - text));
    long bad = sb_utf8_invalid_at((const uint8_t *)text, n);
    if (bad >= 0) RFAIL("%s: footer: byte %ld is not valid UTF-8", p, bad);
    long esc = json_scan(text, n, &nvals);
    if (esc >= 0) RFAIL("%s: footer: byte %ld: an escaped NUL (\\u0000) is not allowed", p, esc);
    if (nvals > TRACE_MAX_JSON_VALUES)
        RFAIL("%s: footer: more than %u JSON values", p, TRACE_MAX_JSON_VALUES);
    if (!(root = cJSON_ParseWithLengthOpts(text, n, &end, 0)))
        RFAIL("%s: footer: malformed JSON at byte %zu", p, end ? (size_t)(end - text) : (size_t)0);
    for (const char *q = end; q < text + n; q++)
        if (!strchr(" \t\r\n", *q))
            RFAIL("%s: footer: unexpected text after the JSON object at byte %zu", p,
                  (size_t)(q - text));
    if (!cJSON_IsObject(root)) RFAIL("%s: footer: expected a JSON object, got %s", p,
                                     json_kind(root));
    for (const cJSON *f = root->child; f; f = f->next) {
        const cJSON **slot = !strcmp(f->string, "schema") ? &schema
                             : !strcmp(f->string, "run")  ? &run
                             : !strcmp(f->string, "ops")  ? &ops : NULL;
        if (!slot) RFAIL("%s: footer: unknown field %s", p, sb_shown_name(f->string, nb));
        if (*slot) RFAIL("%s: footer: duplicate field \"%s\"", p, f->string);
        *slot = f;
    }
    if (!cJSON_IsString(schema) || strcmp(schema->valuestring, TRACE_SCHEMA) != 0)
        RFAIL("%s: footer: schema: expected \"" TRACE_SCHEMA "\", got %s", p,
              !schema ? "nothing" : cJSON_IsString(schema) ? sb_shown_name(schema->valuestring, nb)
                                                           : json_kind(schema));
    if (!ops) RFAIL("%s: footer: ops: missing", p);
    if (run && !cJSON_IsObject(run)) RFAIL("%s: footer: run: expected an object, got %s", p,
                                           json_kind(run));
    if (parse_ops(t, ops, err) != SB_OK) goto fail;
    t->run_json = run ? cJSON_PrintUnformatted(run) : strdup("");
    if (!t->run_json) {
        sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", p);
        goto fail;
    }
    cJSON_Delete(root);
    return SB_OK;
fail:
    cJSON_Delete(root);
    return err ? err->status : SB_ERR_FORMAT;
}

static sb_status check_records(sb_trace *t, uint64_t blob_start, uint64_t foot_off,
                               sb_error *err) {
    const char *p = t->path;
    char na[128];
    for (size_t i = 0; i < t->n; i++) {
        const sb_trace_record *r = &t->rec[i];
        if (r->stage >= SB_STAGE_COUNT)
            RFAIL("%s: record %zu: stage %u out of range (%d stages)", p, i, r->stage,
                  SB_STAGE_COUNT);
        if (r->op >= (uint32_t)t->n_ops)
            RFAIL("%s: record %zu: op index %u out of range (%d ops)", p, i, r->op, t->n_ops);
        if (r->stage != t->op_stages[r->op])
            RFAIL("%s: record %zu: stage \"%s\" does not match op %u %s (stage \"%s\")", p, i,
                  stage_names[r->stage], r->op, sb_shown_name(t->op_names[r->op], na),
                  stage_names[t->op_stages[r->op]]);
        if (r->flags & ~TRACE_KNOWN_FLAGS)
            RFAIL("%s: record %zu: unknown flag bits 0x%x", p, i,
                  (unsigned)(r->flags & ~TRACE_KNOWN_FLAGS));
        if (r->values == 0) continue;
        uint64_t bytes = (uint64_t)r->n_out * 4; /* at most 2^34: no overflow */
        if (r->values < blob_start || r->values > foot_off || bytes > foot_off - r->values)
            RFAIL("%s: record %zu: values at offset %llu (%llu bytes) are outside the value "
                  "region [%llu, %llu)", p, i, (ull)r->values, (ull)bytes, (ull)blob_start,
                  (ull)foot_off);
        if (r->values % 4 != 0)
            RFAIL("%s: record %zu: values offset %llu is not a multiple of 4", p, i,
                  (ull)r->values);
    }
    return SB_OK;
fail:
    return SB_ERR_FORMAT;
}

sb_trace *sb_trace_read(const char *path, sb_error *err) {
    sb_trace *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    const char *p = t->path;
    /* the whole file, NUL-terminated (so is the footer, which ends it) */
    if (!(t->buf = (uint8_t *)sb_read_file(path, TRACE_MAX_FILE, &t->size, err))) goto fail;
    const uint8_t *b = t->buf;
    size_t size = t->size;
    if (size < TRACE_HEADER)
        RFAIL("%s: file is %zu bytes, too short for the %u-byte header", p, size, TRACE_HEADER);
    if (memcmp(b, TRACE_MAGIC, 8) != 0)
        RFAIL("%s: header: bad magic (not a samebits trace)", p);
    uint32_t version = le32(b + 8), recsz = le32(b + 12);
    if (version == 1) /* same layout, but its hashes of tensors over 64 KiB are not comparable */
        RFAIL("%s: header: trace format version 1 (tensors over 64 KiB hashed whole) is no longer "
              "read; this build reads versions 2 and %u: re-create the trace (re-run, or re-bless "
              "the baseline)", p, TRACE_VERSION);
    if (version != TRACE_VERSION && version != 2) /* 2: same hashes, stats in double lanes */
        RFAIL("%s: header: version %u is not supported (this build reads versions 2 and %u)", p,
              version, TRACE_VERSION);
    if (recsz != TRACE_REC)
        RFAIL("%s: header: record size %u, expected %u", p, recsz, TRACE_REC);
    uint64_t n = le64(b + 16), foot_off = le64(b + 24);
    if (n > (size - TRACE_HEADER) / TRACE_REC)
        RFAIL("%s: header: record count %llu needs %s%llu bytes of records, but only %zu "
              "bytes follow the header", p, (ull)n, n > UINT64_MAX / TRACE_REC ? "more than " : "",
              n > UINT64_MAX / TRACE_REC ? (ull)UINT64_MAX : (ull)(n * TRACE_REC),
              size - TRACE_HEADER);
    uint64_t blob_start = TRACE_HEADER + n * TRACE_REC;
    if (foot_off < blob_start || foot_off > size - 4)
        RFAIL("%s: header: footer offset %llu out of range [%llu, %llu]", p, (ull)foot_off,
              (ull)blob_start, size >= blob_start + 4 ? (ull)(size - 4) : (ull)blob_start);
    uint32_t flen = le32(b + foot_off);
    uint64_t after = size - foot_off - 4;
    if (flen > TRACE_MAX_FOOTER)
        RFAIL("%s: footer: length %u is above the %u-byte limit", p, flen, TRACE_MAX_FOOTER);
    if (flen > after)
        RFAIL("%s: footer: length %u is past the end of the file (%llu bytes follow the length "
              "field)", p, flen, (ull)after);
    if (flen < after)
        RFAIL("%s: footer: %llu bytes of trailing data after the footer", p,
              (ull)(after - flen));
    if (parse_footer(t, (const char *)b + foot_off + 4, flen, err) != SB_OK) goto fail;
    t->n = (size_t)n;
    t->rec = (sb_trace_record *)(t->buf + TRACE_HEADER); /* 8-aligned: malloc + 32 */
    if (check_records(t, blob_start, foot_off, err) != SB_OK) goto fail;
    return t;
fail:
    sb_trace_free(t);
    return NULL;
}

#undef RFAIL

void sb_trace_free(sb_trace *t) {
    if (!t) return;
    for (int i = 0; i < t->n_ops; i++) free(t->op_names[i]);
    free(t->op_names);
    free(t->op_stages);
    free(t->run_json);
    free(t->buf);
    free(t->path);
    free(t);
}

const float *sb_trace_values(const sb_trace *t, size_t i) {
    if (!t || i >= t->n || t->rec[i].values == 0) return NULL;
    return (const float *)(const void *)(t->buf + t->rec[i].values);
}
