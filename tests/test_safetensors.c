/* test_safetensors.c — tests of engine/safetensors.c: round trips, the
 * writer's header layout, weights digests, atomic writes, and one case per
 * kind of malformed file (each must fail with SB_ERR_FORMAT and a one-line
 * message naming the file and the place).
 *
 * Not tested here: the command line (tests/bad_input.sh runs `samebits` on
 * the same bad files, written by `test_safetensors --write-bad DIR`) and
 * interop with the reference implementation (tests/interop.py).
 */
#include "../engine/safetensors.h"
#include "sb_test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- scratch directories ------------------------------------------------ */

static char *scratch_new(void) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sb_test_st_XXXXXX");
    return mkdtemp(dir);
}

/* Removes a flat scratch directory and what is in it. */
static void scratch_free(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(dir);
}

static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

/* ---- building files by hand --------------------------------------------- */

/* 8-byte length + header + data_len bytes of data (value i & 0xff). */
static uint8_t *mk_file(const char *json, size_t json_len, size_t data_len, size_t *n) {
    *n = 8 + json_len + data_len;
    uint8_t *b = malloc(*n + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)json_len >> (8 * i));
    memcpy(b + 8, json, json_len);
    for (size_t i = 0; i < data_len; i++) b[8 + json_len + i] = (uint8_t)i;
    return b;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* ---- dtypes and hashes -------------------------------------------------- */

static int dtype_names_and_sizes_should_follow_the_spec(void) {
    static const char *names[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64",
                                  "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"};
    static const size_t sizes[] = {8, 4, 2, 2, 8, 4, 2, 1, 8, 4, 2, 1, 1, 1, 1};
    for (int i = 0; i < SB_DT_COUNT; i++) {
        sb_dtype d;
        CHECK(sb_dtype_parse(names[i], &d) == 0 && d == (sb_dtype)i, "parse %s", names[i]);
        CHECK(strcmp(sb_dtype_name(d), names[i]) == 0, "name of %d", i);
        CHECK(sb_dtype_size(d) == sizes[i], "size of %s is %zu", names[i], sb_dtype_size(d));
    }
    sb_dtype d;
    CHECK(sb_dtype_parse("f32", &d) == -1, "dtype names are case-sensitive");
    CHECK(sb_dtype_parse("F4", &d) == -1 && sb_dtype_parse("", &d) == -1, "unknown names");
    return 0;
}

static int sha256_should_match_the_fips_test_vectors(void) {
    char hex[65];
    sb_sha256_bytes("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "%s", hex);
    sb_sha256_bytes("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "%s", hex);
    char *dir = scratch_new(), path[256], fhex[65];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/abc", dir);
    CHECK(write_bytes(path, "abc", 3) == 0, "write");
    CHECK(sb_sha256_file(path, fhex, &err) == SB_OK, "%s", err.msg);
    sb_sha256_bytes("abc", 3, hex);
    CHECK(!strcmp(hex, fhex), "file %s vs bytes %s", fhex, hex);
    scratch_free(dir);
    return 0;
}

/* ---- round trips -------------------------------------------------------- */

typedef struct sample {
    const char *name;
    sb_dtype dtype;
    int ndim;
    int64_t shape[3];
} sample;

/* Added in this (unsorted) order; the data is a byte pattern per tensor. */
static const sample samples[] = {
    {"z.weight", SB_DT_F32, 2, {2, 3}},     {"a.bias", SB_DT_F64, 1, {3}},
    {"step", SB_DT_I64, 0, {0}},            {"empty", SB_DT_U8, 2, {0, 5}},
    {"h.bf16", SB_DT_BF16, 1, {4}},         {"flags", SB_DT_BOOL, 1, {3}},
    {"cube", SB_DT_I8, 3, {2, 2, 2}},       {"f8", SB_DT_F8_E4M3, 1, {2}},
    {"u16 scalar", SB_DT_U16, 0, {0}},      {"f16", SB_DT_F16, 2, {1, 3}},
};
#define N_SAMPLES ((int)(sizeof samples / sizeof samples[0]))

static uint8_t sample_bytes[N_SAMPLES][64];

static sb_st_writer *sample_writer(void) {
    sb_st_writer *w = sb_st_writer_new();
    sb_error err = {0};
    for (int i = 0; i < N_SAMPLES; i++) {
        for (int k = 0; k < 64; k++) sample_bytes[i][k] = (uint8_t)(i * 31 + k * 7 + 1);
        const void *data = i == 3 ? NULL : sample_bytes[i]; /* zero-size: NULL is fine */
        if (sb_st_writer_add(w, samples[i].name, samples[i].dtype, samples[i].ndim,
                             samples[i].shape, data, &err) != SB_OK) {
            fprintf(stderr, "add %s: %s\n", samples[i].name, err.msg);
            sb_st_writer_free(w);
            return NULL;
        }
    }
    return w;
}

static int round_trip_should_preserve_names_dtypes_shapes_and_bytes(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    sb_st_writer *w = sample_writer();
    CHECK(w, "writer");
    CHECK(sb_st_writer_save(w, path, 0, &err) == SB_OK, "%s", err.msg);
    sb_st_writer_free(w);
    sb_st_file *f = sb_st_read(path, &err);
    CHECK(f, "%s", err.msg);
    CHECK(f->n_tensors == N_SAMPLES, "%d tensors", f->n_tensors);
    CHECK(f->n_meta == 0, "no metadata");
    for (int i = 0; i < N_SAMPLES; i++) {
        const sb_st_tensor *t = sb_st_find(f, samples[i].name);
        CHECK(t, "tensor %s missing", samples[i].name);
        /* data are laid out in the order added */
        CHECK(t == &f->tensors[i], "tensor %s is at position %d", t->name, (int)(t - f->tensors));
        CHECK(t->dtype == samples[i].dtype && t->ndim == samples[i].ndim, "%s dtype/rank", t->name);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK(t->shape[d] == samples[i].shape[d], "%s shape[%d]", t->name, d);
            numel *= (uint64_t)t->shape[d];
        }
        CHECK(t->numel == numel, "%s numel %llu", t->name, (unsigned long long)t->numel);
        size_t nb = (size_t)(numel * sb_dtype_size(t->dtype));
        CHECK(t->end - t->begin == nb, "%s byte count", t->name);
        CHECK(nb == 0 || memcmp(t->data, sample_bytes[i], nb) == 0, "%s bytes differ", t->name);
    }
    const sb_st_tensor *s = sb_st_find(f, "step");
    CHECK(s->ndim == 0 && s->numel == 1 && s->end - s->begin == 8, "0-d scalar has one element");
    const sb_st_tensor *e = sb_st_find(f, "empty");
    CHECK(e->numel == 0 && e->begin == e->end, "zero-size tensor");
    CHECK(sb_st_find(f, "nope") == NULL, "absent tensor");
    sb_st_free(f);
    scratch_free(dir);
    return 0;
}

static int round_trip_should_preserve_metadata(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/meta.safetensors", dir);
    sb_st_writer *w = sb_st_writer_new();
    float x = 1.5f;
    int64_t one = 1;
    CHECK(sb_st_writer_add(w, "x", SB_DT_F32, 1, &one, &x, &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_meta(w, "suite", "smoke", &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_meta(w, "quote", "a \"b\" \\ c\nd\te \xc3\xa9", &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_meta(w, "empty", "", &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_meta(w, "suite", "again", &err) == SB_ERR_ARG, "duplicate key accepted");
    CHECK(sb_st_writer_meta(w, "bad", "\xff", &err) == SB_ERR_ARG, "invalid UTF-8 accepted");
    CHECK(sb_st_writer_save(w, path, 0, &err) == SB_OK, "%s", err.msg);
    sb_st_writer_free(w);
    sb_st_file *f = sb_st_read(path, &err);
    CHECK(f, "%s", err.msg);
    CHECK(f->n_meta == 3, "%d keys", f->n_meta);
    CHECK(!strcmp(sb_st_meta(f, "suite"), "smoke"), "suite");
    CHECK(!strcmp(sb_st_meta(f, "quote"), "a \"b\" \\ c\nd\te \xc3\xa9"), "quote: %s",
          sb_st_meta(f, "quote"));
    CHECK(!strcmp(sb_st_meta(f, "empty"), ""), "empty");
    CHECK(sb_st_meta(f, "absent") == NULL, "absent");
    CHECK(!strcmp(f->meta_keys[0], "empty") && !strcmp(f->meta_keys[2], "suite"), "keys sorted");
    sb_st_free(f);
    scratch_free(dir);
    return 0;
}

static int writer_should_sort_keys_put_metadata_first_and_pad_the_header_to_8_bytes(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    sb_st_writer *w = sb_st_writer_new();
    float b = 2.0f;
    uint8_t a[3] = {1, 2, 3};
    int64_t s1 = 1, s3 = 3;
    CHECK(sb_st_writer_add(w, "b", SB_DT_F32, 1, &s1, &b, &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_add(w, "a", SB_DT_U8, 1, &s3, a, &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_meta(w, "z", "1", &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_meta(w, "a", "x\"y", &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_save(w, path, 0, &err) == SB_OK, "%s", err.msg);
    sb_st_writer_free(w);
    size_t n = 0;
    char *raw = sb_read_file(path, 1 << 20, &n, &err);
    CHECK(raw, "%s", err.msg);
    const char *want = "{\"__metadata__\":{\"a\":\"x\\\"y\",\"z\":\"1\"},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[4,7]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)raw[i];
    CHECK(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
    CHECK(hl >= strlen(want) && hl < strlen(want) + 8, "header length %llu", (unsigned long long)hl);
    CHECK(memcmp(raw + 8, want, strlen(want)) == 0, "header is %.*s", (int)hl, raw + 8);
    for (size_t i = strlen(want); i < hl; i++) CHECK(raw[8 + i] == ' ', "padding is spaces");
    CHECK(n == 8 + hl + 7, "file size %zu", n);
    CHECK(memcmp(raw + 8 + hl, &b, 4) == 0 && memcmp(raw + 8 + hl + 4, a, 3) == 0, "data order");
    free(raw);
    scratch_free(dir);
    return 0;
}

static int writer_should_reject_bad_tensors_and_duplicate_names(void) {
    sb_st_writer *w = sb_st_writer_new();
    sb_error err = {0};
    float x[4] = {0};
    int64_t ok[1] = {4}, neg[1] = {-1}, huge[2] = {INT64_MAX, INT64_MAX};
    CHECK(sb_st_writer_add(w, "x", SB_DT_F32, 1, ok, x, &err) == SB_OK, "%s", err.msg);
    CHECK(sb_st_writer_add(w, "x", SB_DT_F32, 1, ok, x, &err) == SB_ERR_ARG, "duplicate");
    CHECK(strstr(err.msg, "duplicate"), "%s", err.msg);
    CHECK(sb_st_writer_add(w, "n", SB_DT_F32, 1, neg, x, &err) == SB_ERR_ARG, "negative");
    CHECK(sb_st_writer_add(w, "h", SB_DT_F32, 2, huge, x, &err) == SB_ERR_ARG, "overflow");
    CHECK(sb_st_writer_add(w, "r", SB_DT_F32, 9, ok, x, &err) == SB_ERR_ARG, "rank 9");
    CHECK(sb_st_writer_add(w, "d", SB_DT_COUNT, 1, ok, x, &err) == SB_ERR_ARG, "bad dtype");
    CHECK(sb_st_writer_add(w, "__metadata__", SB_DT_F32, 1, ok, x, &err) == SB_ERR_ARG, "reserved");
    CHECK(sb_st_writer_add(w, "p", SB_DT_F32, 1, ok, NULL, &err) == SB_ERR_ARG, "NULL data");
    CHECK(sb_st_writer_add(w, "\xc0\x80", SB_DT_F32, 1, ok, x, &err) == SB_ERR_ARG, "overlong");
    sb_st_writer_free(w);
    sb_st_writer_free(NULL);
    return 0;
}

static int reader_should_accept_reference_layouts_padding_and_empty_tensors(void) {
    /* as the reference accepts: whitespace around the JSON, tensors listed
     * out of offset order, zero-size tensors at the start and the end, and
     * an empty header with no data */
    static const char *ok[] = {
        " {\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"z1\":{\"dtype\":\"F64\",\"shape\":[3,0],\"data_offsets\":[6,6]},"
        "\"z2\":{\"dtype\":\"F64\",\"shape\":[0,9223372036854775807],\"data_offsets\":[6,6]}}\n  ",
        "{}", "{\"__metadata__\":{}}    ",
    };
    static const size_t data[] = {6, 0, 0};
    for (int i = 0; i < 3; i++) {
        size_t n;
        uint8_t *b = mk_file(ok[i], strlen(ok[i]), data[i], &n);
        sb_error err = {0};
        sb_st_file *f = sb_st_parse(b, n, "ok.safetensors", &err);
        free(b);
        CHECK(f, "case %d: %s", i, err.msg);
        if (i == 0) {
            CHECK(f->n_tensors == 5, "%d tensors", f->n_tensors);
            CHECK(f->tensors[0].begin == 0 && f->tensors[4].begin == 6, "sorted by offset");
            CHECK(!strcmp(f->tensors[2].name, "b"), "order %s", f->tensors[2].name);
            CHECK(sb_st_find(f, "b")->data[0] == 4, "data points into the file");
        }
        sb_st_free(f);
    }
    return 0;
}

/* ---- digests ------------------------------------------------------------ */

static int save_two(const char *path, int reversed, const char *meta, int64_t rows, uint8_t flip) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    double b[2] = {0.5, -0.25};
    int64_t sw[2] = {rows, 6 / rows}, sb[1] = {2};
    uint8_t *p = (uint8_t *)w;
    p[5] ^= flip;
    sb_st_writer *wr = sb_st_writer_new();
    sb_error err = {0};
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        if ((k == 0) != (reversed != 0)) rc |= sb_st_writer_add(wr, "w", SB_DT_F32, 2, sw, w, &err);
        else rc |= sb_st_writer_add(wr, "b", SB_DT_F64, 1, sb, b, &err);
    }
    if (meta) rc |= sb_st_writer_meta(wr, "note", meta, &err);
    rc |= sb_st_writer_save(wr, path, 1, &err);
    sb_st_writer_free(wr);
    if (rc) fprintf(stderr, "save %s: %s\n", path, err.msg);
    return rc;
}

static int digest_of(const char *path, char hex[65]) {
    sb_error err = {0};
    sb_st_file *f = sb_st_read(path, &err);
    if (!f) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    sb_st_weights_digest(f, hex);
    sb_st_free(f);
    return 0;
}

static int weights_digest_should_ignore_metadata_and_tensor_order(void) {
    char *dir = scratch_new(), p1[256], p2[256], d1[65], d2[65], s1[65], s2[65];
    sb_error err = {0};
    snprintf(p1, sizeof p1, "%s/one.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/two.safetensors", dir);
    CHECK(save_two(p1, 0, "first", 2, 0) == 0 && save_two(p2, 1, "second run", 2, 0) == 0, "save");
    CHECK(digest_of(p1, d1) == 0 && digest_of(p2, d2) == 0, "read");
    CHECK(!strcmp(d1, d2), "digests differ: %s vs %s", d1, d2);
    CHECK(sb_sha256_file(p1, s1, &err) == SB_OK && sb_sha256_file(p2, s2, &err) == SB_OK, "sha");
    CHECK(strcmp(s1, s2) != 0, "the files themselves should differ");
    scratch_free(dir);
    return 0;
}

static int weights_digest_should_change_when_one_bit_flips(void) {
    char *dir = scratch_new(), p1[256], p2[256], p3[256], d1[65], d2[65], d3[65];
    snprintf(p1, sizeof p1, "%s/one.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/flip.safetensors", dir);
    snprintf(p3, sizeof p3, "%s/reshaped.safetensors", dir);
    CHECK(save_two(p1, 0, NULL, 2, 0) == 0 && save_two(p2, 0, NULL, 2, 0x01) == 0, "save");
    CHECK(save_two(p3, 0, NULL, 3, 0) == 0, "save");
    CHECK(digest_of(p1, d1) == 0 && digest_of(p2, d2) == 0 && digest_of(p3, d3) == 0, "read");
    CHECK(strcmp(d1, d2) != 0, "one flipped bit left the digest at %s", d1);
    CHECK(strcmp(d1, d3) != 0, "same bytes in another shape left the digest at %s", d1);
    scratch_free(dir);
    return 0;
}

/* ---- malformed files ---------------------------------------------------- */

typedef struct bad_case {
    const char *name;   /* test case name (also the file name for bad_input.sh) */
    const char *json;   /* header text, or NULL for a raw file */
    size_t json_len;    /* 0: strlen(json) */
    size_t data_len;    /* bytes after the header */
    const char *raw;    /* whole file, when json is NULL */
    size_t raw_len;
    const char *expect; /* the message must contain this */
} bad_case;

#define T1(body) "{\"a\":{" body "}}"
static const bad_case bad_cases[] = {
    {"reader_should_reject_a_file_shorter_than_the_length_field", NULL, 0, 0, "\x01\x02\x03\x04\x05",
     5, "file is 5 bytes, too short for the 8-byte header length"},
    {"reader_should_reject_an_empty_file", NULL, 0, 0, "", 0, "file is 0 bytes"},
    {"reader_should_reject_a_header_length_past_the_end_of_the_file", NULL, 0, 0,
     "\xe8\x03\0\0\0\0\0\0" "{}", 10, "header length 1000 is past the end of the file"},
    {"reader_should_reject_a_header_length_above_the_limit", NULL, 0, 0,
     "\0\0\0\0\0\x01\0\0" "{}", 10, "header length 1099511627776 is above the 100000000-byte limit"},
    {"reader_should_reject_a_zero_header_length", NULL, 0, 0, "\0\0\0\0\0\0\0\0" "{}", 10,
     "header length is 0"},
    {"reader_should_reject_malformed_json", "{\"a\":{\"dtype\":\"F32\",", 0, 0, NULL, 0,
     "header: malformed JSON at byte"},
    {"reader_should_reject_a_header_that_is_not_an_object", "[1, 2]", 0, 0, NULL, 0,
     "header: expected a JSON object, got an array"},
    {"reader_should_reject_text_after_the_json", "{} x", 0, 0, NULL, 0,
     "header: unexpected text after the JSON object at byte 3"},
    {"reader_should_reject_invalid_utf8", "{\"\xff\":1}", 0, 0, NULL, 0,
     "header: byte 2 is not valid UTF-8"},
    {"reader_should_reject_a_nul_byte_in_the_header", "{\"a\0\":1}", 8, 0, NULL, 0,
     "header: byte 3 is a NUL byte"},
    {"reader_should_reject_an_escaped_nul_in_a_name",
     "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 0, 1, NULL, 0,
     "a string contains \\u0000"},
    {"reader_should_reject_an_unknown_dtype", T1("\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]"),
     0, 4, NULL, 0, "header: tensor \"a\": dtype: unknown dtype \"F33\""},
    {"reader_should_reject_a_dtype_that_is_not_a_string", T1("\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]"),
     0, 4, NULL, 0, "tensor \"a\": dtype: expected a string, got a number"},
    {"reader_should_reject_a_missing_field", T1("\"dtype\":\"F32\",\"shape\":[1]"), 0, 4, NULL, 0,
     "tensor \"a\": missing field \"data_offsets\""},
    {"reader_should_reject_an_unknown_field",
     T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"foo\":1"), 0, 4, NULL, 0,
     "tensor \"a\": unknown field \"foo\""},
    {"reader_should_reject_a_duplicate_field",
     T1("\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NULL, 0,
     "tensor \"a\": duplicate field \"dtype\""},
    {"reader_should_reject_duplicate_tensor_names",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 0, 2, NULL, 0,
     "header: duplicate tensor name \"a\""},
    {"reader_should_reject_a_non_object_entry",
     "{\"x\":5,\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 0, 1, NULL, 0,
     "header: \"x\": expected a tensor object, got a number"},
    {"reader_should_reject_a_non_string_metadata_value", "{\"__metadata__\":{\"k\":1}}", 0, 0, NULL,
     0, "header: __metadata__: \"k\": expected a string value, got a number"},
    {"reader_should_reject_metadata_that_is_not_an_object", "{\"__metadata__\":[\"k\"]}", 0, 0, NULL,
     0, "header: __metadata__: expected an object, got an array"},
    {"reader_should_reject_a_duplicate_metadata_key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}",
     0, 0, NULL, 0, "header: __metadata__: duplicate key \"k\""},
    {"reader_should_reject_a_negative_dimension", T1("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"),
     0, 4, NULL, 0, "tensor \"a\": shape[0]: -1 is not a non-negative integer"},
    {"reader_should_reject_a_fractional_dimension", T1("\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]"),
     0, 4, NULL, 0, "tensor \"a\": shape[0]: 1.0 is not a non-negative integer"},
    {"reader_should_reject_a_dimension_above_2_to_the_64",
     T1("\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]"), 0, 4, NULL, 0,
     "tensor \"a\": shape[0]: 18446744073709551616 is not below 2^64"},
    {"reader_should_reject_a_shape_whose_element_count_overflows",
     T1("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]"), 0, 0, NULL, 0,
     "tensor \"a\": shape: element count overflows 64 bits"},
    {"reader_should_reject_a_shape_whose_byte_count_overflows",
     T1("\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]"), 0, 0, NULL, 0,
     "tensor \"a\": shape: byte count overflows 64 bits"},
    {"reader_should_reject_too_many_dimensions",
     T1("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]"), 0, 1, NULL, 0,
     "tensor \"a\": shape: 9 dimensions, at most 8"},
    {"reader_should_reject_offsets_past_the_end_of_the_data",
     T1("\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]"), 0, 1024, NULL, 0,
     "tensor \"a\": data_offsets: end 4096 is past the end of the data (1024 bytes)"},
    {"reader_should_reject_an_end_offset_before_the_begin",
     T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]"), 0, 8, NULL, 0,
     "tensor \"a\": data_offsets: begin 8 is after end 4"},
    {"reader_should_reject_a_byte_count_not_matching_the_shape",
     T1("\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]"), 0, 20, NULL, 0,
     "tensor \"a\": data_offsets: [0, 20) is 20 bytes but 6 F32 elements need 24"},
    {"reader_should_reject_data_offsets_of_the_wrong_length",
     T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]"), 0, 4, NULL, 0,
     "tensor \"a\": data_offsets: expected [begin, end]"},
    {"reader_should_reject_overlapping_tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 12, NULL, 0,
     "header: tensors \"a\" [0, 8) and \"b\" [4, 12) overlap"},
    {"reader_should_reject_a_hole_between_tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 0, 12, NULL, 0,
     "header: data bytes [4, 8) before tensor \"b\" belong to no tensor"},
    {"reader_should_reject_trailing_bytes_after_the_last_tensor",
     T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), 0, 8, NULL, 0,
     "header: data bytes [4, 8) at the end belong to no tensor"},
};
#define N_BAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

static uint8_t *build_bad(const bad_case *c, size_t *n) {
    if (c->json) return mk_file(c->json, c->json_len ? c->json_len : strlen(c->json), c->data_len, n);
    uint8_t *b = malloc(c->raw_len + 1);
    memcpy(b, c->raw, c->raw_len);
    *n = c->raw_len;
    return b;
}

static int check_error(const char *label, sb_st_file *f, const sb_error *err, const bad_case *c) {
    CHECK(f == NULL, "%s: accepted", c->name);
    CHECK(err->status == SB_ERR_FORMAT, "%s: status %s", c->name, sb_status_str(err->status));
    CHECK(strncmp(err->msg, label, strlen(label)) == 0 && err->msg[strlen(label)] == ':',
          "message does not start with the file name: %s", err->msg);
    CHECK(strstr(err->msg, c->expect), "message \"%s\" lacks \"%s\"", err->msg, c->expect);
    CHECK(!strchr(err->msg, '\n'), "message has a newline: %s", err->msg);
    return 0;
}

/* From memory and from disk: the same error naming the label / path. */
static int check_bad(const char *name) {
    const bad_case *c = NULL;
    for (int i = 0; i < N_BAD; i++)
        if (!strcmp(bad_cases[i].name, name)) c = &bad_cases[i];
    CHECK(c, "no bad case %s", name);
    size_t n;
    uint8_t *b = build_bad(c, &n);
    sb_error err = {0};
    sb_st_file *f = sb_st_parse(b, n, "mem/bad.safetensors", &err);
    int rc = check_error("mem/bad.safetensors", f, &err, c);
    char *dir = scratch_new(), path[256];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    if (rc == 0 && write_bytes(path, b, n) == 0) {
        sb_error err2 = {0};
        sb_st_file *g = sb_st_read(path, &err2);
        rc = check_error(path, g, &err2, c);
        CHECK(rc || strcmp(err.msg + strlen("mem/bad.safetensors"), err2.msg + strlen(path)) == 0,
              "memory and disk messages differ: %s / %s", err.msg, err2.msg);
    }
    free(b);
    scratch_free(dir);
    return rc;
}

/* A 33 MB header of zeros: rejected before cJSON would spend ~1.3 GB on it. */
static int reader_should_reject_a_header_with_too_many_values(void) {
    size_t count = (size_t)1 << 24, len = 6 + 2 * count + 3, n;
    char *json = malloc(len);
    memcpy(json, "{\"a\":[", 6);
    for (size_t i = 0; i < count; i++) memcpy(json + 6 + 2 * i, "0,", 2);
    memcpy(json + 6 + 2 * count, "0]}", 3);
    uint8_t *b = mk_file(json, len, 0, &n);
    free(json);
    sb_error err = {0};
    sb_st_file *f = sb_st_parse(b, n, "big.safetensors", &err);
    free(b);
    CHECK(!f && err.status == SB_ERR_FORMAT, "accepted");
    CHECK(strstr(err.msg, "big.safetensors: header: about 16777219 JSON values, more than the "
                          "16777216 samebits reads"), "%s", err.msg);
    return 0;
}

/* ---- I/O and atomic writes ---------------------------------------------- */

static int reader_should_name_the_file_and_report_io_errors_for_missing_files(void) {
    sb_error err = {0};
    CHECK(sb_st_read("/nonexistent/dir/x.safetensors", &err) == NULL, "read");
    CHECK(err.status == SB_ERR_IO, "status %s", sb_status_str(err.status));
    CHECK(strstr(err.msg, "/nonexistent/dir/x.safetensors: cannot open") == err.msg, "%s", err.msg);
    CHECK(sb_st_read("/tmp", &err) == NULL && err.status == SB_ERR_IO, "a directory");
    CHECK(strstr(err.msg, "/tmp: is a directory"), "%s", err.msg);
    size_t n;
    char *dir = scratch_new(), path[256];
    snprintf(path, sizeof path, "%s/big", dir);
    CHECK(write_bytes(path, "0123456789", 10) == 0, "write");
    CHECK(sb_read_file(path, 9, &n, &err) == NULL && err.status == SB_ERR_FORMAT, "limit");
    char *ok = sb_read_file(path, 10, &n, &err);
    CHECK(ok && n == 10 && ok[10] == 0, "exactly at the limit");
    free(ok);
    scratch_free(dir);
    return 0;
}

static int atomic_write_should_refuse_to_overwrite_without_the_flag(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    size_t n;
    snprintf(path, sizeof path, "%s/out", dir);
    CHECK(sb_write_file_atomic(path, "first", 5, 0, &err) == SB_OK, "%s", err.msg);
    CHECK(sb_write_file_atomic(path, "second", 6, 0, &err) == SB_ERR_EXISTS, "overwrote");
    CHECK(strstr(err.msg, path) == err.msg && strstr(err.msg, "already exists"), "%s", err.msg);
    char *got = sb_read_file(path, 100, &n, &err);
    CHECK(got && n == 5 && !memcmp(got, "first", 5), "original changed: %s", got ? got : "");
    free(got);
    CHECK(count_tmp_files(dir) == 0, "tmp file left behind");
    scratch_free(dir);
    return 0;
}

static int atomic_write_should_replace_the_file_with_the_flag(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    size_t n;
    snprintf(path, sizeof path, "%s/out", dir);
    CHECK(sb_write_file_atomic(path, "first", 5, 1, &err) == SB_OK, "%s", err.msg);
    CHECK(sb_write_file_atomic(path, "second", 6, 1, &err) == SB_OK, "%s", err.msg);
    char *got = sb_read_file(path, 100, &n, &err);
    CHECK(got && n == 6 && !memcmp(got, "second", 6), "not replaced");
    free(got);
    CHECK(sb_write_file_atomic(path, "", 0, 1, &err) == SB_OK, "empty file: %s", err.msg);
    got = sb_read_file(path, 100, &n, &err);
    CHECK(got && n == 0, "not emptied");
    free(got);
    CHECK(count_tmp_files(dir) == 0, "tmp file left behind");
    scratch_free(dir);
    return 0;
}

static int atomic_write_should_leave_no_tmp_file_after_success_or_failure(void) {
    char *dir = scratch_new(), path[256], sub[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/ok", dir);
    CHECK(sb_write_file_atomic(path, "x", 1, 0, &err) == SB_OK, "%s", err.msg);
    CHECK(count_tmp_files(dir) == 0, "after success");
    /* target is a directory: the rename fails after the tmp file was written */
    snprintf(sub, sizeof sub, "%s/adir", dir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    CHECK(sb_write_file_atomic(sub, "x", 1, 1, &err) == SB_ERR_IO, "rename over a directory");
    CHECK(count_tmp_files(dir) == 0, "after a failed rename");
    CHECK(sb_write_file_atomic(sub, "x", 1, 0, &err) == SB_ERR_EXISTS, "exists");
    CHECK(count_tmp_files(dir) == 0, "after a refusal");
    rmdir(sub);
    snprintf(path, sizeof path, "%s/missing/x", dir);
    CHECK(sb_write_file_atomic(path, "x", 1, 0, &err) == SB_ERR_IO, "missing directory");
    CHECK(strstr(err.msg, "cannot create"), "%s", err.msg);
    /* a stale tmp file of our own pid (a crashed earlier process) is replaced */
    snprintf(path, sizeof path, "%s/stale", dir);
    snprintf(sub, sizeof sub, "%s/stale.tmp.%ld", dir, (long)getpid());
    CHECK(write_bytes(sub, "old", 3) == 0, "stale");
    CHECK(sb_write_file_atomic(path, "new", 3, 0, &err) == SB_OK, "%s", err.msg);
    CHECK(count_tmp_files(dir) == 0, "stale tmp left");
    scratch_free(dir);
    return 0;
}

static int writer_save_should_refuse_to_overwrite_and_leave_no_tmp_file(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    CHECK(write_bytes(path, "keep", 4) == 0, "write");
    sb_st_writer *w = sample_writer();
    CHECK(w, "writer");
    CHECK(sb_st_writer_save(w, path, 0, &err) == SB_ERR_EXISTS, "overwrote: %s", err.msg);
    size_t n;
    char *got = sb_read_file(path, 100, &n, &err);
    CHECK(got && n == 4 && !memcmp(got, "keep", 4), "original changed");
    free(got);
    CHECK(count_tmp_files(dir) == 0, "tmp left after refusal");
    CHECK(sb_st_writer_save(w, path, 1, &err) == SB_OK, "%s", err.msg);
    CHECK(count_tmp_files(dir) == 0, "tmp left after success");
    sb_st_writer_free(w);
    sb_st_file *f = sb_st_read(path, &err);
    CHECK(f && f->n_tensors == N_SAMPLES, "%s", err.msg);
    sb_st_free(f);
    scratch_free(dir);
    return 0;
}

/* ---- the table ---------------------------------------------------------- */

#define BAD_CASE(fn) static int fn(void) { return check_bad(#fn); }
BAD_CASE(reader_should_reject_a_file_shorter_than_the_length_field)
BAD_CASE(reader_should_reject_an_empty_file)
BAD_CASE(reader_should_reject_a_header_length_past_the_end_of_the_file)
BAD_CASE(reader_should_reject_a_header_length_above_the_limit)
BAD_CASE(reader_should_reject_a_zero_header_length)
BAD_CASE(reader_should_reject_malformed_json)
BAD_CASE(reader_should_reject_a_header_that_is_not_an_object)
BAD_CASE(reader_should_reject_text_after_the_json)
BAD_CASE(reader_should_reject_invalid_utf8)
BAD_CASE(reader_should_reject_a_nul_byte_in_the_header)
BAD_CASE(reader_should_reject_an_escaped_nul_in_a_name)
BAD_CASE(reader_should_reject_an_unknown_dtype)
BAD_CASE(reader_should_reject_a_dtype_that_is_not_a_string)
BAD_CASE(reader_should_reject_a_missing_field)
BAD_CASE(reader_should_reject_an_unknown_field)
BAD_CASE(reader_should_reject_a_duplicate_field)
BAD_CASE(reader_should_reject_duplicate_tensor_names)
BAD_CASE(reader_should_reject_a_non_object_entry)
BAD_CASE(reader_should_reject_a_non_string_metadata_value)
BAD_CASE(reader_should_reject_metadata_that_is_not_an_object)
BAD_CASE(reader_should_reject_a_duplicate_metadata_key)
BAD_CASE(reader_should_reject_a_negative_dimension)
BAD_CASE(reader_should_reject_a_fractional_dimension)
BAD_CASE(reader_should_reject_a_dimension_above_2_to_the_64)
BAD_CASE(reader_should_reject_a_shape_whose_element_count_overflows)
BAD_CASE(reader_should_reject_a_shape_whose_byte_count_overflows)
BAD_CASE(reader_should_reject_too_many_dimensions)
BAD_CASE(reader_should_reject_offsets_past_the_end_of_the_data)
BAD_CASE(reader_should_reject_an_end_offset_before_the_begin)
BAD_CASE(reader_should_reject_a_byte_count_not_matching_the_shape)
BAD_CASE(reader_should_reject_data_offsets_of_the_wrong_length)
BAD_CASE(reader_should_reject_overlapping_tensors)
BAD_CASE(reader_should_reject_a_hole_between_tensors)
BAD_CASE(reader_should_reject_trailing_bytes_after_the_last_tensor)

static const sb_test_case cases[] = {
    SB_CASE(dtype_names_and_sizes_should_follow_the_spec),
    SB_CASE(sha256_should_match_the_fips_test_vectors),
    SB_CASE(round_trip_should_preserve_names_dtypes_shapes_and_bytes),
    SB_CASE(round_trip_should_preserve_metadata),
    SB_CASE(writer_should_sort_keys_put_metadata_first_and_pad_the_header_to_8_bytes),
    SB_CASE(writer_should_reject_bad_tensors_and_duplicate_names),
    SB_CASE(reader_should_accept_reference_layouts_padding_and_empty_tensors),
    SB_CASE(weights_digest_should_ignore_metadata_and_tensor_order),
    SB_CASE(weights_digest_should_change_when_one_bit_flips),
    SB_CASE(reader_should_reject_a_file_shorter_than_the_length_field),
    SB_CASE(reader_should_reject_an_empty_file),
    SB_CASE(reader_should_reject_a_header_length_past_the_end_of_the_file),
    SB_CASE(reader_should_reject_a_header_length_above_the_limit),
    SB_CASE(reader_should_reject_a_zero_header_length),
    SB_CASE(reader_should_reject_malformed_json),
    SB_CASE(reader_should_reject_a_header_that_is_not_an_object),
    SB_CASE(reader_should_reject_text_after_the_json),
    SB_CASE(reader_should_reject_invalid_utf8),
    SB_CASE(reader_should_reject_a_nul_byte_in_the_header),
    SB_CASE(reader_should_reject_an_escaped_nul_in_a_name),
    SB_CASE(reader_should_reject_an_unknown_dtype),
    SB_CASE(reader_should_reject_a_dtype_that_is_not_a_string),
    SB_CASE(reader_should_reject_a_missing_field),
    SB_CASE(reader_should_reject_an_unknown_field),
    SB_CASE(reader_should_reject_a_duplicate_field),
    SB_CASE(reader_should_reject_duplicate_tensor_names),
    SB_CASE(reader_should_reject_a_non_object_entry),
    SB_CASE(reader_should_reject_a_non_string_metadata_value),
    SB_CASE(reader_should_reject_metadata_that_is_not_an_object),
    SB_CASE(reader_should_reject_a_duplicate_metadata_key),
    SB_CASE(reader_should_reject_a_negative_dimension),
    SB_CASE(reader_should_reject_a_fractional_dimension),
    SB_CASE(reader_should_reject_a_dimension_above_2_to_the_64),
    SB_CASE(reader_should_reject_a_shape_whose_element_count_overflows),
    SB_CASE(reader_should_reject_a_shape_whose_byte_count_overflows),
    SB_CASE(reader_should_reject_too_many_dimensions),
    SB_CASE(reader_should_reject_offsets_past_the_end_of_the_data),
    SB_CASE(reader_should_reject_an_end_offset_before_the_begin),
    SB_CASE(reader_should_reject_a_byte_count_not_matching_the_shape),
    SB_CASE(reader_should_reject_data_offsets_of_the_wrong_length),
    SB_CASE(reader_should_reject_overlapping_tensors),
    SB_CASE(reader_should_reject_a_hole_between_tensors),
    SB_CASE(reader_should_reject_trailing_bytes_after_the_last_tensor),
    SB_CASE(reader_should_reject_a_header_with_too_many_values),
    SB_CASE(reader_should_name_the_file_and_report_io_errors_for_missing_files),
    SB_CASE(atomic_write_should_refuse_to_overwrite_without_the_flag),
    SB_CASE(atomic_write_should_replace_the_file_with_the_flag),
    SB_CASE(atomic_write_should_leave_no_tmp_file_after_success_or_failure),
    SB_CASE(writer_save_should_refuse_to_overwrite_and_leave_no_tmp_file),
};

/* `--write-bad DIR` writes every bad case as DIR/<case>.safetensors and
 * `--write-good FILE` a valid file, for tests/bad_input.sh. */
int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-bad")) {
        char path[4096];
        for (int i = 0; i < N_BAD; i++) {
            size_t n;
            uint8_t *b = build_bad(&bad_cases[i], &n);
            snprintf(path, sizeof path, "%s/%s.safetensors", argv[2], bad_cases[i].name);
            int rc = write_bytes(path, b, n);
            free(b);
            if (rc) { fprintf(stderr, "cannot write %s\n", path); return 1; }
        }
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--write-good")) {
        sb_st_writer *w = sample_writer();
        sb_error err = {0};
        if (!w || sb_st_writer_save(w, argv[2], 1, &err) != SB_OK) {
            fprintf(stderr, "%s\n", err.msg);
            sb_st_writer_free(w);
            return 1;
        }
        sb_st_writer_free(w);
        return 0;
    }
    return sb_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
