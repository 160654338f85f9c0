/* safetensors.h — reading and writing the safetensors format, and the digests
 * samebits records for checkpoint files.
 *
 * Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * unsigned header length N, N bytes of UTF-8 JSON header, then the raw
 * little-endian tensor bytes. The header maps each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
 * start of the data region) and may hold "__metadata__": {string: string}.
 *
 * The reader validates everything before trusting it (DESIGN.md §8): header
 * length against the file size, JSON syntax, dtype names, shapes (non-negative
 * integers, element count without overflow), offsets in range, the byte count
 * matching dtype × shape, no two tensors overlapping, no holes in the data
 * region, no duplicate names. Nothing is allocated from an unchecked field.
 * Stricter than the reference reader (which ignores or tolerates these):
 * unknown fields in a tensor entry, duplicate names, NUL bytes (raw or
 * \u0000) in the header, more than SB_ST_MAX_DIMS dimensions and
 * dimensions above INT64_MAX are rejected. Numbers must be plain JSON
 * integers ("1.0", "1e0", "-1" are rejected, as the reference does). Limits:
 * header at most 100,000,000 bytes (as the reference), at most 2^24 JSON
 * values in it (so parsing memory stays bounded).
 *
 * Not here: interpretation of tensors (the diff lives in the harness), and any
 * dtype conversion.
 */
#ifndef SB_SAFETENSORS_H
#define SB_SAFETENSORS_H

#include "../kernels/sb_base.h"

typedef enum sb_dtype {
    SB_DT_F64, SB_DT_F32, SB_DT_F16, SB_DT_BF16,
    SB_DT_I64, SB_DT_I32, SB_DT_I16, SB_DT_I8,
    SB_DT_U64, SB_DT_U32, SB_DT_U16, SB_DT_U8,
    SB_DT_BOOL, SB_DT_F8_E4M3, SB_DT_F8_E5M2,
    SB_DT_COUNT
} sb_dtype;

const char *sb_dtype_name(sb_dtype d);   /* "F32", ... */
size_t sb_dtype_size(sb_dtype d);        /* bytes per element */
int sb_dtype_parse(const char *name, sb_dtype *out); /* 0 ok, -1 unknown */

#define SB_ST_MAX_DIMS 8

typedef struct sb_st_tensor {
    char *name;
    sb_dtype dtype;
    int ndim;
    int64_t shape[SB_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;   /* offsets in the data region */
    const uint8_t *data;   /* points into the file's buffer */
} sb_st_tensor;

typedef struct sb_st_file {
    char *path;
    uint8_t *buf;          /* whole file */
    size_t size;
    uint64_t header_len;
    char *header_json;     /* NUL-terminated copy of the header */
    int n_tensors;
    sb_st_tensor *tensors; /* in ascending order of begin offset (then end, name) */
    int n_meta;
    char **meta_keys, **meta_vals; /* sorted by key (byte order) */
} sb_st_file;

/* Reads and validates a whole file. NULL on failure with err->msg naming the
 * file and the place ("a.safetensors: header: tensor \"w\": data_offsets: end
 * 4096 is past the end of the data (1024 bytes)"). Free with sb_st_free. */
sb_st_file *sb_st_read(const char *path, sb_error *err);
/* Same, from memory (the buffer is copied); `label` names it in errors. */
sb_st_file *sb_st_parse(const uint8_t *bytes, size_t size, const char *label, sb_error *err);
void sb_st_free(sb_st_file *f);
const sb_st_tensor *sb_st_find(const sb_st_file *f, const char *name);
const char *sb_st_meta(const sb_st_file *f, const char *key); /* NULL if absent */

/* ---- writer ----
 * Collects tensors (by pointer: the data must stay valid until save) and
 * metadata, then writes the file atomically: to PATH.tmp.<pid>, fsync, rename.
 * Tensors are written in the order added; the header's keys are sorted as the
 * reference implementation does, "__metadata__" first (its keys sorted too),
 * and the header is padded with spaces to a multiple of 8 bytes. add and
 * meta fail with SB_ERR_ARG on a bad or duplicate name, key or shape. */
typedef struct sb_st_writer sb_st_writer;
sb_st_writer *sb_st_writer_new(void);
void sb_st_writer_free(sb_st_writer *w);
sb_status sb_st_writer_add(sb_st_writer *w, const char *name, sb_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, sb_error *err);
sb_status sb_st_writer_meta(sb_st_writer *w, const char *key, const char *value, sb_error *err);
/* overwrite == 0: fail with SB_ERR_EXISTS when path exists. */
sb_status sb_st_writer_save(sb_st_writer *w, const char *path, int overwrite, sb_error *err);

/* ---- digests (SHA-256, lowercase hex, 64 chars + NUL) ---- */
sb_status sb_sha256_file(const char *path, char hex[65], sb_error *err);
void sb_sha256_bytes(const void *data, size_t n, char hex[65]);
/* Digest of the tensors alone: for each tensor in name order, its name, dtype,
 * shape and bytes (each field length-prefixed). Two files with bitwise equal
 * tensors have equal digests whatever their metadata or layout.
 * Exactly: SHA-256 of F("samebits.weights.v1") u64(n_tensors), then per
 * tensor in strcmp order of names F(name) F(dtype name, e.g. "F32")
 * F(shape as ndim u64 values) F(data bytes), where u64 is 8 bytes little-
 * endian and F(x) = u64(byte length of x) followed by x. */
void sb_st_weights_digest(const sb_st_file *f, char hex[65]);

/* ---- atomic file writing helpers (used by every writer in samebits) ---- */
/* Writes `n` bytes to path via PATH.tmp.<pid> + fsync + rename. overwrite == 0
 * fails with SB_ERR_EXISTS when path exists. */
sb_status sb_write_file_atomic(const char *path, const void *data, size_t n, int overwrite,
                               sb_error *err);
/* Offset of the first byte of s[0..n) that is not valid UTF-8, -1 if none. */
long sb_utf8_invalid_at(const uint8_t *s, size_t n);
/* A name as shown in an error message: quoted, control bytes escaped, cut
 * after about 100 bytes with "...". Returns buf. */
const char *sb_shown_name(const char *s, char buf[128]);

/* Moves a finished temporary file into place without ever replacing an
 * existing one: renameat2(RENAME_NOREPLACE), else link()+unlink(), else (file
 * systems with neither) a check before rename. SB_ERR_EXISTS when path exists;
 * tmp is left for the caller to remove on failure. */
sb_status sb_place_noreplace(const char *tmp, const char *path, sb_error *err);
/* Reads a whole file (NUL-terminated for convenience; *n excludes the NUL;
 * n may be NULL). Caller frees. max_bytes guards against absurd inputs: a
 * longer file fails with SB_ERR_FORMAT; a missing file or a directory with
 * SB_ERR_IO. */
char *sb_read_file(const char *path, size_t max_bytes, size_t *n, sb_error *err);

#endif /* SB_SAFETENSORS_H */
