/* trace.h — trace records: what every pipeline stage and op of a run did,
 * compactly enough to keep for every op of every step (DESIGN.md §4, §7).
 *
 * A record says: at step S, in stage G, op O (a stable layer path such as
 * "fc1/matmul.fwd") read inputs whose combined hash is IN and wrote outputs
 * whose combined hash is OUT (each tensor hashed by sb_hash_tensor: XXH3-128,
 * per 64 KiB chunk for larger tensors), with cheap stats of the outputs (L2
 * norm, max |x|, element count). Two runs that should match are compared
 * record by record in execution order (harness/attrib.c): an op whose IN
 * hashes agree but whose OUT hashes differ is a source of drift; one whose IN
 * already differ propagates it.
 *
 * RNG streams are not inputs: an op that draws random numbers (shuffle,
 * augmentation, dropout) and whose outputs differ although its data inputs
 * agree is a source — which is exactly how an unseeded stream shows up.
 *
 * Snapshots: at snapshot steps (1, 2, 4, 8, … and the last step) output
 * values are stored too — the optimizer's (the weights) always, any other
 * op's when its outputs hold at most 16 Ki floats — so comparisons under a
 * tolerance can report real per-op max abs / rel / ULP errors and how the
 * difference grows. (Which records carry values is the writer's choice; the
 * format allows any.)
 *
 * File format "trace.sbt" (version 3), little-endian:
 *   offset 0   char[8]  magic "SBTRACE\0"
 *          8   u32      version (3; 2 is read too)
 *         12   u32      record size in bytes (sizeof(sb_trace_record) = 64)
 *         16   u64      number of records
 *         24   u64      offset of the footer
 *         32   records, back to back, in execution order
 *              value blobs (raw float32 outputs at snapshot steps), each
 *              referenced by a record's `values` offset
 *   footer     u32 length, then that many bytes of JSON:
 *              {"schema": "samebits.trace/1", "run": {...caller's JSON...},
 *               "ops": [{"name": "fc1/matmul.fwd", "stage": "forward"}, …]}
 *              ("run" is absent when the writer was given none); the footer
 *              ends the file.
 * Blobs lie between the end of the records and the footer, at offsets that
 * are multiples of 4; the writer stores them in emission order. An op's index
 * in "ops" is its id; names are unique, 1..127 bytes of UTF-8 without control
 * characters.
 * The file is written to PATH.tmp.<pid> and renamed into place on close, so a
 * trace that exists is complete.
 * Version 1 had the same layout but hashed every tensor whole (XXH3-128 of
 * all its bytes) and its stats in one piece; version 2 hashes tensors over
 * SB_HASH_CHUNK bytes chunk by chunk (sb_hash_tensor), so the hashes of large
 * tensors differ. The reader rejects version 1 with a message saying so
 * (re-create the trace) rather than compare hashes that cannot agree.
 * Version 3 has version 2's layout and hashes; only the stats' summation
 * order changed (float lanes per block instead of every square in double:
 * sb_trace_stats), which moves out_l2 by at most a few float ULPs. Records
 * are compared by hash, never by stats, so the reader takes versions 2 and 3
 * alike (a baseline's version 2 trace still names drift against a new run).
 * The footer's "schema" is unchanged ("samebits.trace/1": the footer's JSON).
 *
 * Not here: comparing traces (harness/attrib.c), deciding what to trace
 * (engine/train.c).
 */
#ifndef SB_TRACE_H
#define SB_TRACE_H

#include "../kernels/sb_base.h"

typedef enum sb_stage {
    SB_STAGE_DATA_SOURCE = 0, /* "data.source" */
    SB_STAGE_DATA_SHUFFLE,    /* "data.shuffle" */
    SB_STAGE_DATA_AUGMENT,    /* "data.augment" */
    SB_STAGE_DATA_BATCH,      /* "data.batch" */
    SB_STAGE_INIT,            /* "init" */
    SB_STAGE_FORWARD,         /* "forward" */
    SB_STAGE_LOSS,            /* "loss" */
    SB_STAGE_BACKWARD,        /* "backward" */
    SB_STAGE_ALLREDUCE,       /* "allreduce" */
    SB_STAGE_OPTIMIZER,       /* "optimizer" */
    SB_STAGE_COUNT
} sb_stage;

const char *sb_stage_name(sb_stage s);
int sb_stage_parse(const char *name, sb_stage *out); /* 0 ok, -1 unknown */

typedef struct sb_hash128 {
    uint64_t lo, hi;
} sb_hash128;

/* XXH3-128 of bytes. */
sb_hash128 sb_hash_bytes(const void *data, size_t n);

/* The hash a trace gives a tensor (format version 2): XXH3-128 of its n bytes
 * when n <= SB_HASH_CHUNK; otherwise the bytes are cut into chunks of
 * SB_HASH_CHUNK bytes (the last one shorter), each chunk is hashed with
 * XXH3-128, and the tensor's hash is XXH3-128 of the chunk hashes (16 bytes
 * each, lo then hi, each u64 little-endian) followed by n as a u64
 * little-endian. A pure function of the bytes: chunks can be hashed on any
 * number of threads in any order, and the value is the same. */
#define SB_HASH_CHUNK 65536
sb_hash128 sb_hash_tensor(const void *data, size_t n);

/* The stats' lanes and blocks (trace.c documents the order): a block of
 * SB_STAT_BLOCK floats is summed in SB_STAT_LANES float lanes, then added
 * into double lanes. For the vector digest paths (xxh_avx2.c,
 * xxh_avx512.c), which follow the plain C lanes of trace.c exactly:
 * sb_stats_block_finish adds a block's float lane sums s[SB_STAT_LANES]
 * into acc, or when one is not finite the block x[0..n) re-summed in double
 * (sb_stats_block_double). */
#define SB_STAT_LANES 64
#define SB_STAT_BLOCK 2048
void sb_stats_block_double(double *acc, const float *x, size_t n);
/* A vector path's whole-chunk digest (trace.c's digest_chunk for a float
 * chunk): the lanes zeroed, the chunk digested into them, the lanes reduced
 * by the documented tree, in one function so the three inline into each
 * other (xxh_avx2.c and xxh_avx512.c instantiate it with their own steps;
 * trace.c's scalar loops for the first and the last cost more than the
 * hash on tensors of a few KiB). */
#define SB_CHUNK_DIGEST(name, align, zero, digest, tree)                                        \
    sb_hash128 name(const void *p, size_t n, double *sumsq, float *maxabs) {                    \
        double acc[SB_STAT_LANES] __attribute__((aligned(align)));                              \
        float mx[SB_STAT_LANES] __attribute__((aligned(align)));                                \
        zero(acc, mx);                                                                          \
        sb_hash128 h = digest(p, n, acc, mx);                                                   \
        tree(acc, mx, sumsq, maxabs);                                                           \
        return h;                                                                               \
    }
void sb_stats_block_finish(double *acc, const float *s, const float *x, size_t n);
/* Combines hashes in order (for ops with several inputs or outputs):
 * XXH3-128 of the concatenated hashes, each as 16 bytes: lo then hi, each
 * u64 little-endian (the in-memory layout of sb_hash128). n == 1 gives h[0]
 * itself and n == 0 gives {0,0}, so an op's IN/OUT hash is the same whether
 * or not its caller short-cuts a single tensor. */
sb_hash128 sb_hash_combine(const sb_hash128 *h, int n);
int sb_hash_equal(sb_hash128 a, sb_hash128 b);
void sb_hash_hex(sb_hash128 h, char out[33]); /* 32 lowercase hex digits, hi then lo */

#define SB_TRACE_RECHECK_DIFFERS 1u /* --recheck: a second execution on the same inputs gave other outputs */

typedef struct sb_trace_record {
    uint32_t step;      /* 1-based optimizer step; 0 for data.source and init */
    uint16_t stage;     /* sb_stage */
    uint16_t flags;     /* SB_TRACE_* bits */
    uint32_t op;        /* index into the op table */
    uint32_t n_out;     /* float elements in the outputs (all outputs together) */
    sb_hash128 in;      /* combined hash of the inputs ({0,0} when none) */
    sb_hash128 out;     /* combined hash of the outputs */
    float out_l2;       /* sqrt of the sum of squares of the outputs (see sb_trace_stats) */
    float out_maxabs;   /* max |x| over the outputs (NaN if any is NaN) */
    uint64_t values;    /* file offset of n_out raw float32 output values, 0 = none */
} sb_trace_record;     /* 64 bytes, no padding */

/* Stats of a float buffer, as records carry them: l2 = sqrt of the sum of
 * squares (per chunk of SB_HASH_CHUNK bytes: float lanes per block of
 * SB_STAT_BLOCK floats, the blocks' lane sums added in double, the chunk
 * sums added in chunk order: trace.c documents the order), maxabs = max |x|,
 * NaN when any element is NaN; both 0 when n == 0.
 * The same values on every machine, vector path and thread count. */
void sb_trace_stats(const float *x, size_t n, float *l2, float *maxabs);
/* sb_hash_tensor of the buffer's bytes and sb_trace_stats of it, in one pass
 * (block by block, each block hashed and then measured while in cache). */
void sb_hash_stats_f32(const float *x, size_t n, sb_hash128 *h, float *l2, float *maxabs);

/* Digests of several tensors at once, their chunks spread over a caller's
 * worker threads: for each d[i], h = sb_hash_tensor(p, bytes) and, when
 * is_float (bytes a multiple of 4), sumsq = the sum of squares whose sqrt is
 * sb_trace_stats's l2 and maxabs = its max |x| (0.0 and 0 otherwise). `run`
 * is a fork-join runner (threadpool.h's sb_pool_run has this shape, ctx
 * being the pool): it calls fn(arg, w, nw) once for every worker w in
 * [0, nw) and returns when all of them have returned; nworkers is how many
 * workers it has (the work is cut into that many ranges). With run == NULL,
 * nworkers <= 1, or when the work is too small to be worth waking threads
 * for, the caller computes everything alone. The results never depend on
 * which: each chunk is digested on its own and the chunks are combined in
 * order. */
typedef struct sb_digest {
    const void *p;     /* in: the tensor's bytes */
    size_t bytes;      /* in */
    int is_float;      /* in: also the stats */
    sb_hash128 h;      /* out */
    double sumsq;      /* out */
    float maxabs;      /* out */
} sb_digest;
typedef void (*sb_fork_join)(void *ctx, void (*fn)(void *arg, int worker, int nworkers),
                             void *arg);
void sb_digest_tensors(sb_digest *d, int n, sb_fork_join run, void *ctx, int nworkers);

/* ---- writing ---- */
typedef struct sb_trace_writer sb_trace_writer;

/* Opens PATH.tmp.<pid> for writing. Fails with SB_ERR_EXISTS when path exists
 * (traces are never overwritten). */
sb_trace_writer *sb_trace_writer_new(const char *path, sb_error *err);
/* Registers an op name with its stage; returns its id (the same id for the
 * same name). Names are 1..127 bytes of UTF-8 without control characters.
 * A bad name, a known name with another stage, or running out of memory is
 * remembered (close reports it) and UINT32_MAX is returned. */
uint32_t sb_trace_op(sb_trace_writer *w, const char *name, sb_stage stage);
/* Appends a record. When `values` is non-NULL the n_out floats are copied
 * (the caller may reuse its buffer at once) and rec->values is set to a
 * non-zero placeholder: the blob's file offset is only known at close, which
 * writes it into the file. Otherwise (or when n_out is 0) rec->values is set
 * to 0. rec->op must be a registered id, rec->stage that op's stage, and
 * rec->flags only SB_TRACE_* bits. Errors (those, I/O, the 4 GiB limit the
 * reader has) are remembered and reported by close; later calls do nothing. */
void sb_trace_emit(sb_trace_writer *w, sb_trace_record *rec, const float *values);
/* Writes the footer (run_json is a JSON object, may be NULL; it is stored
 * verbatim), fsyncs and renames into place. Frees w whatever happens, and on
 * failure leaves no file: SB_ERR_ARG for a remembered misuse or a run_json
 * that is not one JSON object, SB_ERR_EXISTS when path appeared meanwhile,
 * SB_ERR_IO, SB_ERR_NOMEM. */
sb_status sb_trace_writer_close(sb_trace_writer *w, const char *run_json, sb_error *err);
/* Abandons the file (removes the tmp file) and frees w. NULL is a no-op. */
void sb_trace_writer_abort(sb_trace_writer *w);

/* ---- reading ---- */
typedef struct sb_trace {
    char *path;
    int n_ops;
    char **op_names;     /* [n_ops] */
    uint8_t *op_stages;  /* [n_ops] sb_stage */
    size_t n;            /* records */
    sb_trace_record *rec; /* [n], points into buf (not freed on its own) */
    char *run_json;      /* the footer's "run" object, printed; "" if none */
    uint8_t *buf;        /* whole file (value blobs are read from here) */
    size_t size;
} sb_trace;

/* Reads and validates a trace file: magic, version, record size, record
 * count against the file size, footer JSON, every record's op index and
 * stage, every value offset and length in range. NULL with err->msg naming
 * the file and the place on failure ("run/trace.sbt: record 17: op index 99
 * out of range (12 ops)"): SB_ERR_FORMAT for a malformed file, SB_ERR_IO when
 * it cannot be read. Also rejected: unknown fields or flag bits, duplicate op
 * names, invalid UTF-8 or \u0000 in the footer, bytes after the footer.
 * Limits: the whole file is read into memory, so at most 4 GiB; the footer
 * at most 16 MiB and 2^21 JSON values; at most 2^19 ops. Free with
 * sb_trace_free. */
sb_trace *sb_trace_read(const char *path, sb_error *err);
void sb_trace_free(sb_trace *t);
/* The stored output values of record i, or NULL when it has none. */
const float *sb_trace_values(const sb_trace *t, size_t i);

#endif /* SB_TRACE_H */
