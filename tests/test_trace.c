/* test_trace.c — tests of engine/trace.c: stage names, XXH3-128 known answers
 * (computed with `xxhsum -H2` from Debian's xxhash package, which prints the
 * canonical form: high 64 bits first), the combine rule, output stats, the
 * writer (round trips, op ids, refusal to overwrite, no tmp file left) and
 * one table of corrupt files, each of which must fail with SB_ERR_FORMAT and
 * a one-line message naming the file and the place.
 *
 * Not tested here: what the engine traces (test_engine) and comparing traces
 * (the harness's attribution tests). No timings: speed is by construction.
 */
#include "../engine/trace.h"
#include "sb_test.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- scratch directories and files -------------------------------------- */

static char *scratch_new(void) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sb_test_trace_XXXXXX");
    return mkdtemp(dir);
}

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

static int count_files(const char *dir, const char *containing) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, containing))
            n++;
    if (d) closedir(d);
    return n;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p + 4) << 32 | rd32(p); }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- stages and hashes --------------------------------------------------- */

static int stage_names_should_round_trip_and_reject_unknown_names(void) {
    static const char *names[] = {"data.source", "data.shuffle", "data.augment", "data.batch",
                                  "init", "forward", "loss", "backward", "allreduce",
                                  "optimizer"};
    CHECK(SB_STAGE_COUNT == 10, "%d stages", SB_STAGE_COUNT);
    for (int i = 0; i < SB_STAGE_COUNT; i++) {
        sb_stage s;
        CHECK(strcmp(sb_stage_name((sb_stage)i), names[i]) == 0, "name of %d: %s", i,
              sb_stage_name((sb_stage)i));
        CHECK(sb_stage_parse(names[i], &s) == 0 && s == (sb_stage)i, "parse %s", names[i]);
    }
    sb_stage s;
    CHECK(sb_stage_parse("Forward", &s) == -1 && sb_stage_parse("", &s) == -1 &&
              sb_stage_parse("data", &s) == -1 && sb_stage_parse(NULL, &s) == -1,
          "unknown names");
    CHECK(strcmp(sb_stage_name(SB_STAGE_COUNT), "?") == 0, "out of range");
    return 0;
}

static int xxh3_128_should_match_xxhsum_known_answers(void) {
    static const struct { const char *text; const char *hex; } kat[] = {
        {"", "99aa06d3014798d86001c324468d497f"},
        {"a", "a96faf705af16834e6c632b61e964e1f"},
        {"abc", "06b05ab6733a618578af5f94892f3950"},
        {"samebits", "4d001dac508ee085c2c0677d8014e45b"},
    };
    char hex[33];
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        sb_hash_hex(sb_hash_bytes(kat[i].text, strlen(kat[i].text)), hex);
        CHECK(strcmp(hex, kat[i].hex) == 0, "\"%s\": got %s, xxhsum says %s", kat[i].text, hex,
              kat[i].hex);
    }
    /* bytes (7 i + 3) mod 256, at lengths that take XXH3's different paths */
    static const struct { size_t len; const char *hex; } pat[] = {
        {17, "bfd327edcc2fbd12eeed7654312a26d7"},  {129, "293e4968c4619023bd91ce7ace4d385b"},
        {240, "ad46c1021b076bc704e0b5f034bee80b"}, {1000, "6bcc7eff62da44c26c4f14bd97bd9e82"},
    };
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(7 * i + 3);
    for (size_t i = 0; i < sizeof pat / sizeof pat[0]; i++) {
        sb_hash_hex(sb_hash_bytes(buf, pat[i].len), hex);
        CHECK(strcmp(hex, pat[i].hex) == 0, "%zu bytes: got %s, xxhsum says %s", pat[i].len, hex,
              pat[i].hex);
    }
    /* xxhsum prints hi then lo: the hex is hi first, and the fields hold them */
    sb_hash128 e = sb_hash_bytes(NULL, 0);
    CHECK(e.hi == 0x99aa06d3014798d8ull && e.lo == 0x6001c324468d497full, "hi %016llx lo %016llx",
          (unsigned long long)e.hi, (unsigned long long)e.lo);
    CHECK(sb_hash_equal(e, sb_hash_bytes("", 0)) && !sb_hash_equal(e, sb_hash_bytes("a", 1)),
          "equality");
    CHECK(!sb_hash_equal((sb_hash128){1, 2}, (sb_hash128){1, 3}) &&
              !sb_hash_equal((sb_hash128){0, 2}, (sb_hash128){1, 2}),
          "equality looks at both halves");
    return 0;
}

static int hash_combine_should_hash_the_hashes_in_order(void) {
    sb_hash128 h[2] = {sb_hash_bytes("a", 1), sb_hash_bytes("abc", 3)};
    sb_hash128 r[2] = {h[1], h[0]};
    char hex[33];
    /* expected: xxhsum -H2 of the 32 bytes lo(a) hi(a) lo(abc) hi(abc), each u64 LE */
    sb_hash_hex(sb_hash_combine(h, 2), hex);
    CHECK(strcmp(hex, "b905c604ad07bdfb6a9bf2964754c02a") == 0, "combine(a, abc) = %s", hex);
    sb_hash_hex(sb_hash_combine(r, 2), hex);
    CHECK(strcmp(hex, "60fafc1c2dcb6dba163987350e39f822") == 0, "combine(abc, a) = %s", hex);
    CHECK(!sb_hash_equal(sb_hash_combine(h, 2), sb_hash_combine(r, 2)), "order-sensitive");
    sb_hash128 z = sb_hash_combine(NULL, 0);
    CHECK(z.lo == 0 && z.hi == 0, "no hashes: {0,0}");
    CHECK(sb_hash_equal(sb_hash_combine(h, 1), h[0]), "one hash: itself");
    sb_hash128 three[3] = {h[0], h[0], h[1]};
    CHECK(!sb_hash_equal(sb_hash_combine(three, 3), sb_hash_combine(h, 2)), "repeats count");
    return 0;
}

/* ---- stats --------------------------------------------------------------- */

static int stats_should_accumulate_l2_in_double_and_take_the_max_abs(void) {
    float l2, ma;
    float x[3] = {-3.0f, 2.0f, 1.0f};
    sb_trace_stats(x, 3, &l2, &ma);
    CHECK(l2 == (float)sqrt(14.0) && ma == 3.0f, "l2 %.9g maxabs %.9g", l2, ma);
    /* 4096^2 = 2^24 then 1000 ones: a float sum stays at 2^24, a double sum is exact */
    static float y[1001];
    y[0] = 4096.0f;
    for (int i = 1; i <= 1000; i++) y[i] = 1.0f;
    sb_trace_stats(y, 1001, &l2, &ma);
    CHECK(l2 == (float)sqrt(16777216.0 + 1000.0) && l2 != 4096.0f, "l2 %.9g", l2);
    CHECK(ma == 4096.0f, "maxabs %.9g", ma);
    /* every length 0..40 (all lane tails), integer values: every sum is exact */
    float z[40];
    for (int n = 0; n <= 40; n++) {
        double ss = 0;
        float m = 0;
        for (int i = 0; i < n; i++) {
            z[i] = (float)((i * 37) % 23) - 11.0f;
            ss += (double)z[i] * z[i];
            m = fabsf(z[i]) > m ? fabsf(z[i]) : m;
        }
        sb_trace_stats(z, (size_t)n, &l2, &ma);
        CHECK(l2 == (float)sqrt(ss) && ma == m, "n=%d: l2 %.9g vs %.9g, maxabs %.9g vs %.9g", n,
              l2, (float)sqrt(ss), ma, m);
    }
    float nz[2] = {-0.0f, -0.0f};
    sb_trace_stats(nz, 2, &l2, &ma);
    CHECK(l2 == 0.0f && ma == 0.0f && !signbit(ma), "-0: l2 %g maxabs %g", l2, ma);
    return 0;
}

static int stats_should_match_a_double_lane_reference_on_random_data(void) {
    /* the order trace.c documents (lane i mod 8, lanes added pairwise), on
     * random data across every tail length; after the rounding to float the
     * order rarely shows, so this mostly checks the vectorized loop's values */
    static float x[1003];
    uint32_t u = 12345;
    for (int i = 0; i < 1003; i++) {
        u = u * 1664525u + 1013904223u;
        x[i] = (float)(u >> 8) * 0x1p-20f - 8.0f; /* [-8, 8), 24 significant bits */
    }
    for (int n = 995; n <= 1003; n++) {
        double acc[8] = {0};
        float m = 0, l2, ma;
        for (int i = 0; i < n; i++) {
            acc[i % 8] += (double)x[i] * (double)x[i];
            m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
        }
        double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        sb_trace_stats(x, (size_t)n, &l2, &ma);
        CHECK(l2 == (float)sqrt(s) && ma == m, "n=%d: l2 %a vs %a, maxabs %a vs %a", n, l2,
              (float)sqrt(s), ma, m);
    }
    return 0;
}

static int stats_should_make_maxabs_and_l2_nan_when_any_element_is_nan(void) {
    float x[19], l2, ma;
    for (int pos = 0; pos < 19; pos++) { /* each lane, and the tail */
        for (int i = 0; i < 19; i++) x[i] = (float)i;
        x[pos] = bits_to_float(pos % 2 ? 0xffc00001u : 0x7fc00000u); /* either sign, a payload */
        sb_trace_stats(x, 19, &l2, &ma);
        CHECK(isnan(ma) && isnan(l2), "NaN at %d: l2 %g maxabs %g", pos, l2, ma);
    }
    float y[3] = {INFINITY, NAN, -INFINITY};
    sb_trace_stats(y, 3, &l2, &ma);
    CHECK(isnan(ma) && isnan(l2), "NaN among infinities: l2 %g maxabs %g", l2, ma);
    return 0;
}

static int stats_should_report_inf_and_zero_for_empty_input(void) {
    float l2 = -1, ma = -1;
    sb_trace_stats(NULL, 0, &l2, &ma);
    CHECK(l2 == 0.0f && ma == 0.0f, "empty: l2 %g maxabs %g", l2, ma);
    float x[3] = {1.0f, -INFINITY, 2.0f};
    sb_trace_stats(x, 3, &l2, &ma);
    CHECK(isinf(l2) && l2 > 0 && isinf(ma) && ma > 0, "inf: l2 %g maxabs %g", l2, ma);
    float big[2] = {3e38f, 3e38f}; /* squares overflow float, not double; the norm does */
    sb_trace_stats(big, 2, &l2, &ma);
    CHECK(isinf(l2) && ma == 3e38f, "big: l2 %g maxabs %g", l2, ma);
    return 0;
}

/* ---- writing and reading -------------------------------------------------- */

/* Record i of the round-trip trace; fields from i so every one is checked. */
static sb_trace_record rt_record(uint32_t i, const uint32_t *ops, int op_of_i) {
    static const sb_stage stages[3] = {SB_STAGE_FORWARD, SB_STAGE_BACKWARD, SB_STAGE_OPTIMIZER};
    sb_trace_record r;
    memset(&r, 0, sizeof r);
    r.step = i / 3 + 1;
    r.stage = (uint16_t)stages[op_of_i];
    r.flags = (uint16_t)(i % 7 == 0 ? SB_TRACE_RECHECK_DIFFERS : 0);
    r.op = ops[op_of_i];
    r.in = sb_hash_bytes(&i, sizeof i);
    r.out = sb_hash_combine(&r.in, 1);
    r.out.lo ^= 0x5555;
    r.out_l2 = bits_to_float(0x3f800000u + i);
    r.out_maxabs = bits_to_float(i % 11 == 0 ? 0x7fc01234u : 0x40000000u + i); /* NaN payloads too */
    return r;
}

/* Element k of record i's values: bit patterns, so NaN, -0, Inf, subnormals occur. */
static uint32_t rt_bits(uint32_t i, uint32_t k) { return (i * 2654435761u) ^ (k * 40503u) ^ k << 23; }

static uint32_t rt_nvalues(uint32_t i) { /* 0 = no values; some blobs above the 4 MiB buffer */
    if (i % 997 == 5) return i % 3 == 0 ? 1500000u : 1000u + i % 5000;
    return 0;
}

static int round_trip(int with_values) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    const uint32_t n = 40000; /* > 2 record buffers */
    CHECK(dir, "mkdtemp");
    snprintf(path, sizeof path, "%s/trace.sbt", dir);
    sb_trace_writer *w = sb_trace_writer_new(path, &err);
    CHECK(w, "%s", err.msg);
    uint32_t ops[3] = {sb_trace_op(w, "fc1/matmul.fwd", SB_STAGE_FORWARD),
                       sb_trace_op(w, "fc1/matmul.bwd", SB_STAGE_BACKWARD),
                       sb_trace_op(w, "sgd/update", SB_STAGE_OPTIMIZER)};
    float *vals = malloc(sizeof *vals * 1500000);
    CHECK(vals, "malloc");
    for (uint32_t i = 0; i < n; i++) {
        sb_trace_record r = rt_record(i, ops, (int)(i % 3));
        uint32_t nv = with_values ? rt_nvalues(i) : 0;
        r.n_out = nv ? nv : i % 50;
        r.values = 12345; /* whatever the caller left there is replaced */
        for (uint32_t k = 0; k < nv; k++) {
            uint32_t b = rt_bits(i, k);
            memcpy(&vals[k], &b, 4);
        }
        sb_trace_emit(w, &r, nv ? vals : NULL);
        CHECK(nv ? r.values != 0 : r.values == 0, "record %u: rec->values %llu", i,
              (unsigned long long)r.values);
        memset(vals, 0xAB, sizeof *vals * nv); /* the writer must have copied them */
    }
    free(vals);
    CHECK(sb_trace_writer_close(w, "{\"seed\": 7, \"name\": \"x\"}", &err) == SB_OK, "%s",
          err.msg);
    sb_trace *t = sb_trace_read(path, &err);
    CHECK(t, "%s", err.msg);
    CHECK(t->n == n && t->n_ops == 3, "%zu records, %d ops", t->n, t->n_ops);
    CHECK(strcmp(t->op_names[1], "fc1/matmul.bwd") == 0 && t->op_stages[1] == SB_STAGE_BACKWARD &&
              strcmp(t->op_names[2], "sgd/update") == 0 && t->op_stages[2] == SB_STAGE_OPTIMIZER,
          "op table");
    CHECK(strcmp(t->run_json, "{\"seed\":7,\"name\":\"x\"}") == 0, "run %s", t->run_json);
    uint64_t blob_end = 32 + 64ull * n;
    for (uint32_t i = 0; i < n; i++) {
        sb_trace_record r = rt_record(i, ops, (int)(i % 3));
        uint32_t nv = with_values ? rt_nvalues(i) : 0;
        r.n_out = nv ? nv : i % 50;
        r.values = t->rec[i].values;
        CHECK(memcmp(&r, &t->rec[i], sizeof r) == 0, "record %u differs", i);
        const float *v = sb_trace_values(t, i);
        if (!nv) {
            CHECK(v == NULL && t->rec[i].values == 0, "record %u has values", i);
            continue;
        }
        CHECK(v && t->rec[i].values == blob_end, "record %u: values at %llu, expected %llu", i,
              (unsigned long long)t->rec[i].values, (unsigned long long)blob_end);
        blob_end += 4ull * nv;
        for (uint32_t k = 0; k < nv; k++) {
            uint32_t got;
            memcpy(&got, &v[k], 4);
            CHECK(got == rt_bits(i, k), "record %u value %u: %08x, expected %08x", i, k, got,
                  rt_bits(i, k));
        }
    }
    CHECK(rd64(t->buf + 24) == blob_end, "footer at %llu, blobs end at %llu",
          (unsigned long long)rd64(t->buf + 24), (unsigned long long)blob_end);
    CHECK(sb_trace_values(t, n) == NULL, "past the end");
    sb_trace_free(t);
    CHECK(count_files(dir, ".tmp.") == 0, "tmp file left");
    scratch_free(dir);
    return 0;
}

static int round_trip_should_preserve_many_records_and_values_bitwise(void) {
    return round_trip(1);
}

static int round_trip_without_values_should_store_records_only(void) { return round_trip(0); }

static int op_ids_should_be_stable_for_repeated_names(void) {
    char *dir = scratch_new(), path[256], name[64];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/t.sbt", dir);
    sb_trace_writer *w = sb_trace_writer_new(path, &err);
    CHECK(w, "%s", err.msg);
    for (uint32_t i = 0; i < 300; i++) { /* enough to grow the lookup table a few times */
        snprintf(name, sizeof name, "layer%u/op", i);
        CHECK(sb_trace_op(w, name, (sb_stage)(i % SB_STAGE_COUNT)) == i, "new op %u", i);
    }
    for (uint32_t i = 300; i-- > 0;) {
        snprintf(name, sizeof name, "layer%u/op", i);
        uint32_t id = sb_trace_op(w, name, (sb_stage)(i % SB_STAGE_COUNT));
        CHECK(id == i, "%s again: id %u", name, id);
    }
    sb_trace_record r = {.stage = SB_STAGE_INIT, .op = 4};
    sb_trace_emit(w, &r, NULL);
    CHECK(sb_trace_writer_close(w, NULL, &err) == SB_OK, "%s", err.msg);
    sb_trace *t = sb_trace_read(path, &err);
    CHECK(t && t->n_ops == 300 && t->n == 1, "%s", t ? "counts" : err.msg);
    CHECK(strcmp(t->op_names[123], "layer123/op") == 0 && t->op_stages[123] == 123 % 10,
          "op 123 is %s", t->op_names[123]);
    CHECK(strcmp(t->run_json, "") == 0, "no run: \"%s\"", t->run_json);
    sb_trace_free(t);
    scratch_free(dir);
    return 0;
}

static int writer_should_report_misuse_at_close_and_leave_no_file(void) {
    static const char *expect[] = {"now with \"loss\"", "op index 7", "stage 5 (forward)",
                                   "unknown flag bits 0x8", "is empty", "is longer than 127",
                                   "control character", "not one JSON object"};
    char *dir = scratch_new(), path[256], longname[200];
    memset(longname, 'x', 150);
    longname[150] = 0;
    for (int c = 0; c < 8; c++) {
        sb_error err = {0};
        snprintf(path, sizeof path, "%s/bad%d.sbt", dir, c);
        sb_trace_writer *w = sb_trace_writer_new(path, &err);
        CHECK(w, "%s", err.msg);
        uint32_t a = sb_trace_op(w, "a", SB_STAGE_INIT);
        sb_trace_record r = {.stage = SB_STAGE_INIT, .op = a};
        if (c == 0) CHECK(sb_trace_op(w, "a", SB_STAGE_LOSS) == UINT32_MAX, "other stage");
        if (c == 1) r.op = 7;
        if (c == 2) r.stage = SB_STAGE_FORWARD;
        if (c == 3) r.flags = 8;
        if (c == 4) CHECK(sb_trace_op(w, "", SB_STAGE_INIT) == UINT32_MAX, "empty name");
        if (c == 5) CHECK(sb_trace_op(w, longname, SB_STAGE_INIT) == UINT32_MAX, "long name");
        if (c == 6) CHECK(sb_trace_op(w, "a\nb", SB_STAGE_INIT) == UINT32_MAX, "newline");
        sb_trace_emit(w, &r, NULL);
        sb_status s = sb_trace_writer_close(w, c == 7 ? "[1] x" : "{}", &err);
        CHECK(s == SB_ERR_ARG, "case %d: status %d (%s)", c, s, err.msg);
        CHECK(strncmp(err.msg, path, strlen(path)) == 0 && strstr(err.msg, expect[c]) &&
                  !strchr(err.msg, '\n'),
              "case %d: message \"%s\" should name %s and say %s", c, err.msg, path, expect[c]);
        CHECK(access(path, F_OK) != 0, "case %d: %s exists", c, path);
    }
    CHECK(count_files(dir, "") == 0, "files left behind");
    scratch_free(dir);
    return 0;
}

static int writer_should_refuse_to_overwrite_an_existing_trace(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/trace.sbt", dir);
    CHECK(write_bytes(path, "precious", 8) == 0, "write");
    CHECK(sb_trace_writer_new(path, &err) == NULL && err.status == SB_ERR_EXISTS, "status %d",
          err.status);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "already exists"), "%s", err.msg);
    /* the target appears while the trace is being written: close refuses too */
    snprintf(path, sizeof path, "%s/later.sbt", dir);
    sb_trace_writer *w = sb_trace_writer_new(path, &err);
    CHECK(w, "%s", err.msg);
    sb_trace_op(w, "a", SB_STAGE_INIT);
    CHECK(write_bytes(path, "precious", 8) == 0, "write");
    sb_status s = sb_trace_writer_close(w, NULL, &err);
    CHECK(s == SB_ERR_EXISTS && strstr(err.msg, path), "status %d: %s", s, err.msg);
    size_t n = 0;
    uint8_t *b = read_bytes(path, &n);
    CHECK(b && n == 8 && memcmp(b, "precious", 8) == 0, "the existing file was changed");
    free(b);
    CHECK(count_files(dir, ".tmp.") == 0, "tmp file left");
    scratch_free(dir);
    return 0;
}

static int writer_should_leave_no_tmp_file_after_close_or_abort(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    static float big[2000000]; /* 8 MB: spills to the side file */
    for (int pass = 0; pass < 2; pass++) {
        snprintf(path, sizeof path, "%s/t%d.sbt", dir, pass);
        sb_trace_writer *w = sb_trace_writer_new(path, &err);
        CHECK(w, "%s", err.msg);
        CHECK(count_files(dir, ".tmp.") == 1, "while writing, only PATH.tmp.<pid> exists: %d",
              count_files(dir, ".tmp."));
        uint32_t op = sb_trace_op(w, "x", SB_STAGE_FORWARD);
        for (int i = 0; i < 20000; i++) {
            sb_trace_record r = {.step = 1, .stage = SB_STAGE_FORWARD, .op = op, .n_out = 2000000};
            sb_trace_emit(w, &r, i % 10000 == 0 ? big : NULL);
        }
        CHECK(count_files(dir, ".tmp.") == 1, "side file visible: %d", count_files(dir, ".tmp."));
        if (pass == 0) {
            CHECK(sb_trace_writer_close(w, NULL, &err) == SB_OK, "%s", err.msg);
            CHECK(access(path, F_OK) == 0, "closed trace missing");
        } else {
            sb_trace_writer_abort(w);
            CHECK(access(path, F_OK) != 0, "aborted trace exists");
        }
        CHECK(count_files(dir, ".tmp.") == 0, "pass %d: tmp file left", pass);
    }
    sb_trace_writer_abort(NULL);
    scratch_free(dir);
    return 0;
}

static int reader_should_report_io_errors_naming_the_file(void) {
    sb_error err = {0};
    CHECK(sb_trace_read("/nonexistent/trace.sbt", &err) == NULL && err.status == SB_ERR_IO,
          "status %d", err.status);
    CHECK(strncmp(err.msg, "/nonexistent/trace.sbt: ", 24) == 0, "%s", err.msg);
    CHECK(sb_trace_read("/tmp", &err) == NULL && err.status == SB_ERR_IO &&
              strstr(err.msg, "/tmp: is a directory"),
          "%s", err.msg);
    return 0;
}

/* ---- corrupt files ------------------------------------------------------- */

/* The base file: 3 ops, 4 records; records 1 (4 floats) and 3 (2 floats)
 * have values. Layout: header 0..32, records 32..288, blobs 288..312, footer. */
static uint8_t *base_trace(const char *dir, size_t *n) {
    char path[256];
    sb_error err = {0};
    snprintf(path, sizeof path, "%s/base.sbt", dir);
    sb_trace_writer *w = sb_trace_writer_new(path, &err);
    if (!w) return NULL;
    uint32_t src = sb_trace_op(w, "data/source", SB_STAGE_DATA_SOURCE);
    uint32_t fwd = sb_trace_op(w, "fc1/matmul.fwd", SB_STAGE_FORWARD);
    uint32_t bwd = sb_trace_op(w, "fc1/matmul.bwd", SB_STAGE_BACKWARD);
    float v[4] = {1, 2, 3, 4};
    sb_trace_record r[4] = {{.step = 0, .stage = SB_STAGE_DATA_SOURCE, .op = src, .n_out = 9},
                            {.step = 1, .stage = SB_STAGE_FORWARD, .op = fwd, .n_out = 4},
                            {.step = 1, .stage = SB_STAGE_BACKWARD, .op = bwd, .n_out = 4},
                            {.step = 2, .stage = SB_STAGE_FORWARD, .op = fwd, .n_out = 2}};
    for (int i = 0; i < 4; i++) sb_trace_emit(w, &r[i], i % 2 ? v : NULL);
    if (sb_trace_writer_close(w, "{\"seed\":1}", &err) != SB_OK) return NULL;
    return read_bytes(path, n);
}

#define REC(i) (32 + 64 * (i))
enum { BASE_BLOBS = 288, BASE_FOOTER = 312 };

typedef struct corrupt {
    const char *what, *place;  /* a description, and what the message must say */
    long cut;                  /* > 0: keep only this many bytes */
    size_t at;                 /* patch: offset, width (4 or 8) and value */
    int width;
    uint64_t value;
    const char *footer;        /* non-NULL: replaces the footer JSON */
    const char *append;        /* non-NULL: appended to the file */
} corrupt;

static const corrupt corrupts[] = {
    {"an empty file", "file is 0 bytes, too short", .cut = -1},
    {"a file shorter than the header", "file is 31 bytes, too short", .cut = 31},
    {"bad magic", "header: bad magic", .at = 0, .width = 4, .value = 0x41525453},
    {"wrong version", "header: version 2 is not supported", .at = 8, .width = 4, .value = 2},
    {"wrong record size", "header: record size 48, expected 64", .at = 12, .width = 4, .value = 48},
    {"count larger than the file", "header: record count 1099511627776", .at = 16, .width = 8,
     .value = 1ull << 40},
    {"a huge count", "header: record count 18446744073709551615 needs more than", .at = 16, .width = 8,
     .value = UINT64_MAX},
    {"truncated records", "header: record count 4 needs 256 bytes", .cut = REC(2) + 10},
    {"footer offset inside the records", "header: footer offset 100 out of range", .at = 24,
     .width = 8, .value = 100},
    {"footer offset past the end", "header: footer offset 99999 out of range", .at = 24,
     .width = 8, .value = 99999},
    {"footer offset of 2^64-1", "header: footer offset 18446744073709551615", .at = 24,
     .width = 8, .value = UINT64_MAX},
    {"footer length past the end", "footer: length 1000000 is past the end", .at = BASE_FOOTER,
     .width = 4, .value = 1000000},
    {"footer length above the limit", "footer: length 4294967295 is above", .at = BASE_FOOTER,
     .width = 4, .value = UINT32_MAX},
    {"bytes after the footer", "footer: 2 bytes of trailing data", .append = "xx"},
    {"malformed footer JSON", "footer: malformed JSON at byte", .footer = "{\"schema\": "},
    {"a footer that is an array", "footer: expected a JSON object, got an array",
     .footer = "[1]"},
    {"text after the footer JSON", "footer: unexpected text after", .footer = "{} {}"},
    {"wrong schema", "footer: schema: expected \"samebits.trace/1\", got \"samebits.trace/2\"",
     .footer = "{\"schema\":\"samebits.trace/2\",\"ops\":[]}"},
    {"no schema", "footer: schema: expected", .footer = "{\"ops\":[]}"},
    {"no ops", "footer: ops: missing", .footer = "{\"schema\":\"samebits.trace/1\"}"},
    {"ops not an array", "footer: ops: expected an array, got an object",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":{}}"},
    {"an unknown footer field", "footer: unknown field \"extra\"",
     .footer = "{\"schema\":\"samebits.trace/1\",\"extra\":1,\"ops\":[]}"},
    {"a run that is not an object", "footer: run: expected an object, got a string",
     .footer = "{\"schema\":\"samebits.trace/1\",\"run\":\"x\",\"ops\":[]}"},
    {"unknown stage name", "footer: ops[0].stage: unknown stage \"fwd\"",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":[{\"name\":\"a\",\"stage\":\"fwd\"}]}"},
    {"an op without a name", "footer: ops[0]: missing \"name\"",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":[{\"stage\":\"init\"}]}"},
    {"an empty op name", "footer: ops[0].name: \"\" is empty",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":[{\"name\":\"\",\"stage\":\"init\"}]}"},
    {"duplicate op names", "footer: ops[1].name: duplicate op name \"a\" (also ops[0])",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":[{\"name\":\"a\",\"stage\":\"init\"},"
               "{\"name\":\"a\",\"stage\":\"init\"}]}"},
    {"an escaped NUL in an op name", "footer: byte 46: an escaped NUL",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":[{\"name\":\"a\\u0000b\",\"stage\":"
               "\"init\"}]}"},
    {"invalid UTF-8 in the footer", "footer: byte 46 is not valid UTF-8",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":[{\"name\":\"a\xff\",\"stage\":"
               "\"init\"}]}"},
    {"records naming ops the footer lacks", "record 0: op index 0 out of range (0 ops)",
     .footer = "{\"schema\":\"samebits.trace/1\",\"ops\":[]}"},
    {"op index out of range", "record 2: op index 99 out of range (3 ops)", .at = REC(2) + 8,
     .width = 4, .value = 99},
    {"stage out of range", "record 2: stage 12 out of range (10 stages)", .at = REC(2) + 4,
     .width = 4, .value = 12},
    {"record stage not matching its op",
     "record 2: stage \"forward\" does not match op 2 \"fc1/matmul.bwd\" (stage \"backward\")",
     .at = REC(2) + 4, .width = 4, .value = SB_STAGE_FORWARD},
    {"unknown flag bits", "record 0: unknown flag bits 0x80", .at = REC(0) + 4, .width = 4,
     .value = SB_STAGE_DATA_SOURCE | 0x80u << 16},
    {"value offset inside the header", "record 1: values at offset 8 (16 bytes) are outside",
     .at = REC(1) + 56, .width = 8, .value = 8},
    {"value offset past the footer", "record 3: values at offset 1000 (8 bytes) are outside",
     .at = REC(3) + 56, .width = 8, .value = 1000},
    {"value offset of 2^64-4", "record 3: values at offset 18446744073709551612 (8 bytes)", .at = REC(3) + 56,
     .width = 8, .value = UINT64_MAX - 3},
    {"value blob overlapping the footer", "record 3: values at offset 308 (8 bytes) are "
     "outside the value region [288, 312)", .at = REC(3) + 56, .width = 8, .value = BASE_FOOTER - 4},
    {"a value count overrunning the footer", "record 1: values at offset 288 (400 bytes) are outside",
     .at = REC(1) + 12, .width = 4, .value = 100},
    {"a misaligned value offset", "record 1: values offset 290 is not a multiple of 4",
     .at = REC(1) + 56, .width = 8, .value = BASE_BLOBS + 2},
};

static int reader_should_reject_corrupt_files_naming_the_file_and_the_place(void) {
    char *dir = scratch_new(), path[256];
    sb_error err = {0};
    size_t n = 0;
    uint8_t *base = base_trace(dir, &n);
    CHECK(base, "writing the base trace");
    CHECK(rd64(base + 16) == 4 && rd64(base + 24) == BASE_FOOTER && rd64(base + REC(1) + 56) ==
              BASE_BLOBS && rd64(base + REC(3) + 56) == BASE_BLOBS + 16 && n > BASE_FOOTER + 4,
          "the base layout is not as the table assumes");
    snprintf(path, sizeof path, "%s/base.sbt", dir);
    sb_trace *t = sb_trace_read(path, &err);
    CHECK(t, "the base trace must read: %s", err.msg);
    sb_trace_free(t);
    int failed = 0;
    for (size_t c = 0; c < sizeof corrupts / sizeof corrupts[0]; c++) {
        const corrupt *k = &corrupts[c];
        uint8_t *b = malloc(n + 4096);
        size_t len = n;
        memcpy(b, base, n);
        if (k->cut) len = k->cut < 0 ? 0 : (size_t)k->cut;
        if (k->width == 4) wr32(b + k->at, (uint32_t)k->value);
        if (k->width == 8) wr64(b + k->at, k->value);
        if (k->footer) {
            len = BASE_FOOTER + 4 + strlen(k->footer);
            wr32(b + BASE_FOOTER, (uint32_t)strlen(k->footer));
            memcpy(b + BASE_FOOTER + 4, k->footer, strlen(k->footer));
        }
        if (k->append) {
            memcpy(b + len, k->append, strlen(k->append));
            len += strlen(k->append);
        }
        snprintf(path, sizeof path, "%s/bad%02zu.sbt", dir, c);
        CHECK(write_bytes(path, b, len) == 0, "write %s", path);
        free(b);
        err = (sb_error){0};
        t = sb_trace_read(path, &err);
        size_t pl = strlen(path);
        int ok = !t && err.status == SB_ERR_FORMAT && strncmp(err.msg, path, pl) == 0 &&
                 strncmp(err.msg + pl, ": ", 2) == 0 && strstr(err.msg, k->place) &&
                 !strchr(err.msg, '\n');
        if (!ok) {
            fprintf(stderr, "%s: %s: status %d, message \"%s\"; expected SB_ERR_FORMAT and "
                    "\"%s\" after the path\n", path, k->what, err.status, err.msg, k->place);
            failed++;
        }
        sb_trace_free(t);
    }
    free(base);
    CHECK(failed == 0, "%d of %zu corrupt files were not rejected as expected", failed,
          sizeof corrupts / sizeof corrupts[0]);
    scratch_free(dir);
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(stage_names_should_round_trip_and_reject_unknown_names),
    SB_CASE(xxh3_128_should_match_xxhsum_known_answers),
    SB_CASE(hash_combine_should_hash_the_hashes_in_order),
    SB_CASE(stats_should_accumulate_l2_in_double_and_take_the_max_abs),
    SB_CASE(stats_should_match_a_double_lane_reference_on_random_data),
    SB_CASE(stats_should_make_maxabs_and_l2_nan_when_any_element_is_nan),
    SB_CASE(stats_should_report_inf_and_zero_for_empty_input),
    SB_CASE(round_trip_should_preserve_many_records_and_values_bitwise),
    SB_CASE(round_trip_without_values_should_store_records_only),
    SB_CASE(op_ids_should_be_stable_for_repeated_names),
    SB_CASE(writer_should_report_misuse_at_close_and_leave_no_file),
    SB_CASE(writer_should_refuse_to_overwrite_an_existing_trace),
    SB_CASE(writer_should_leave_no_tmp_file_after_close_or_abort),
    SB_CASE(reader_should_report_io_errors_naming_the_file),
    SB_CASE(reader_should_reject_corrupt_files_naming_the_file_and_the_place),
};

SB_TEST_MAIN(cases)
