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
#include "../engine/engine.h"
#include "../engine/trace.h"
#include "sb_test.h"

#include <dirent.h>
#include <pthread.h>
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

static double ref_sumsq(const float *x, size_t n, float *maxabs); /* below */
static void fill_floats(float *x, size_t n, uint32_t seed);

/* sb_digest_tensors's sum of squares and max |x| of x[0..n) (one thread) */
static double digest_sumsq(const float *x, size_t n, float *maxabs) {
    sb_digest d = {.p = x, .bytes = n * sizeof(float), .is_float = 1};
    sb_digest_tensors(&d, 1, NULL, NULL, 1);
    *maxabs = d.maxabs;
    return d.sumsq;
}

static int stats_should_sum_float_lanes_per_block_and_the_blocks_in_double(void) {
    float l2, ma;
    float x[3] = {-3.0f, 2.0f, 1.0f};
    sb_trace_stats(x, 3, &l2, &ma);
    CHECK(l2 == (float)sqrt(14.0) && ma == 3.0f, "l2 %.9g maxabs %.9g", l2, ma);
    static float y[4096];
    /* 4096^2 = 2^24, then 1 in the same lane of the same block: a float
     * lane stays at 2^24 (2^24 + 1 rounds to even) */
    memset(y, 0, sizeof y);
    y[0] = 4096.0f;
    y[64] = 1.0f;
    CHECK(digest_sumsq(y, 4096, &ma) == 0x1p24 && ma == 4096.0f, "same lane, same block: %a",
          digest_sumsq(y, 4096, &ma));
    /* ... in another lane of the block, or in the same lane of the next
     * block: the lanes and the blocks meet in double, exactly */
    y[64] = 0.0f;
    y[1] = 1.0f;
    CHECK(digest_sumsq(y, 4096, &ma) == 0x1p24 + 1.0, "other lane: %a", digest_sumsq(y, 4096, &ma));
    y[1] = 0.0f;
    y[2048] = 1.0f;
    CHECK(digest_sumsq(y, 4096, &ma) == 0x1p24 + 1.0, "next block: %a", digest_sumsq(y, 4096, &ma));
    /* a square that overflows float: that block is summed in double */
    y[2048] = 2e19f;
    double want = 0x1p24 + (double)2e19f * (double)2e19f;
    CHECK(digest_sumsq(y, 4096, &ma) == want && ma == 2e19f, "float overflow: %a vs %a",
          digest_sumsq(y, 4096, &ma), want);
    sb_trace_stats(y + 2048, 1, &l2, &ma);
    CHECK(l2 == 2e19f, "float overflow: l2 %g", l2);
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
    /* the lanes meet in the documented tree (lane k += lane k + half, half =
     * 32, 16, ..., 1): lane 0 holds 2^52 (one ulp: 1) and lanes a and b
     * 0.5625 each. Where a and b meet before either meets lane 0 the sum is
     * 2^52 + 1 (1.125 rounded), where they join lane 0 one by one 2^52 + 2;
     * so a tree that pairs the lanes otherwise (at any level) gives another
     * sum. In a tensor of its own, in the second block and in the second
     * chunk. */
    static const int pairs[][2] = {{16, 48}, {8, 24}, {4, 12}, {2, 6}, {1, 3}, {32, 33}, {5, 7}};
    for (size_t pi = 0; pi < sizeof pairs / sizeof pairs[0]; pi++)
        for (int k = 0; k < 3; k++) {
            size_t at = k == 0 ? 0 : k == 1 ? 2048 : SB_HASH_CHUNK / sizeof(float);
            size_t n = at + 64 + (k == 2 ? 5 : 0);
            float *u = calloc(n, sizeof *u), rm;
            u[at] = 0x1p26f;
            u[at + (size_t)pairs[pi][0]] = 0.75f;
            u[at + (size_t)pairs[pi][1]] = -0.75f;
            double got = digest_sumsq(u, n, &ma), ref = ref_sumsq(u, n, &rm);
            CHECK((ref == 0x1p52 + 1.0 || ref == 0x1p52 + 2.0) && got == ref && ma == 0x1p26f,
                  "lane tree, lanes %d and %d (at %zu): %a, documented order %a", pairs[pi][0],
                  pairs[pi][1], at, got, ref);
            free(u);
        }
    float nz[2] = {-0.0f, -0.0f};
    sb_trace_stats(nz, 2, &l2, &ma);
    CHECK(l2 == 0.0f && ma == 0.0f && !signbit(ma), "-0: l2 %g maxabs %g", l2, ma);
    return 0;
}

static int stats_should_match_the_documented_order_on_random_data(void) {
    /* the order trace.c documents, written out in ref_sumsq, on random data
     * of every kind, across lane tails, block and chunk boundaries; and
     * within 2e-6 of the sum taken in long double */
    static const size_t lens[] = {1, 63, 64, 65, 995, 1003, 2047, 2048, 2049, 4159, 16383,
                                  16384, 16385, 40000};
    float *x = malloc(40000 * sizeof *x);
    fill_floats(x, 40000, 77);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        float rm, ma;
        double want = ref_sumsq(x, n, &rm), got = digest_sumsq(x, n, &ma);
        CHECK(!memcmp(&got, &want, sizeof got) && ma == rm, "n=%zu: sumsq %a vs %a, maxabs %a vs %a",
              n, got, want, ma, rm);
        long double exact = 0;
        for (size_t i = 0; i < n; i++) exact += (long double)x[i] * x[i];
        CHECK(fabsl((long double)got - exact) <= 2e-6L * exact, "n=%zu: sumsq %a, exact %La", n,
              got, exact);
    }
    free(x);
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

/* ---- tensor hashes: chunks, threads, known answers ------------------------ */

#define CH SB_HASH_CHUNK

/* The tensor hash as trace.h defines it, written out independently of
 * trace.c: XXH3-128 up to one chunk; above, XXH3-128 of the chunk hashes (lo,
 * hi little-endian) followed by the byte count as u64 little-endian. */
static sb_hash128 ref_tensor_hash(const void *p, size_t n) {
    if (n <= CH) return sb_hash_bytes(p, n);
    size_t k = (n + CH - 1) / CH;
    uint8_t *buf = malloc(16 * k + 8);
    for (size_t c = 0; c < k; c++) {
        size_t len = n - c * CH < CH ? n - c * CH : CH;
        sb_hash128 h = sb_hash_bytes((const uint8_t *)p + c * CH, len);
        wr64(buf + 16 * c, h.lo);
        wr64(buf + 16 * c + 8, h.hi);
    }
    wr64(buf + 16 * k, (uint64_t)n);
    sb_hash128 h = sb_hash_bytes(buf, 16 * k + 8);
    free(buf);
    return h;
}

/* The stats order trace.c documents, written out independently: per chunk
 * of CH/4 floats, per block of 2048 floats, lane i mod 64 summed in float by
 * fmaf from +0.0f; a block whose 64 float sums are all finite adds them to
 * the chunk's double lanes, any other block adds its lanes' sums of squares
 * taken in double instead; the 64 double lanes added as a pairwise tree; the
 * chunk sums added in chunk order; max |x| over the non-NaN elements (NaN
 * when the sum is NaN). */
static void ref_chunk_lanes(const float *x, size_t len, double acc[64]) {
    for (int k = 0; k < 64; k++) acc[k] = 0.0;
    for (size_t b = 0; b < len; b += 2048) {
        size_t bl = len - b < 2048 ? len - b : 2048;
        float f[64] = {0};
        double d[64] = {0};
        int finite = 1;
        for (size_t i = 0; i < bl; i++) {
            f[i % 64] = fmaf(x[b + i], x[b + i], f[i % 64]);
            d[i % 64] += (double)x[b + i] * (double)x[b + i];
        }
        for (int k = 0; k < 64; k++) finite = finite && isfinite(f[k]);
        for (int k = 0; k < 64; k++) acc[k] += finite ? (double)f[k] : d[k];
    }
}

static double ref_sumsq(const float *x, size_t n, float *maxabs) {
    double total = 0.0;
    float m = 0.0f;
    size_t per = CH / sizeof(float);
    for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += per) {
        size_t len = n - c0 < per ? n - c0 : per;
        double acc[64];
        ref_chunk_lanes(x + c0, len, acc);
        for (size_t i = 0; i < len; i++)
            if (fabsf(x[c0 + i]) > m) m = fabsf(x[c0 + i]);
        for (int half = 32; half >= 1; half /= 2)
            for (int k = 0; k < half; k++) acc[k] = acc[k] + acc[k + half];
        total = c0 == 0 ? acc[0] : total + acc[0];
        if (n == 0) break;
    }
    *maxabs = isnan(total) ? NAN : m;
    return total;
}

static uint32_t lcg(uint32_t *u) { return *u = *u * 1664525u + 1013904223u; }

/* random floats of every kind a tensor may hold: signs, a wide exponent
 * range, subnormals, zeros of both signs */
static void fill_floats(float *x, size_t n, uint32_t seed) {
    uint32_t u = seed;
    for (size_t i = 0; i < n; i++) {
        uint32_t r = lcg(&u);
        if (r % 97 == 0) x[i] = (r & 256) ? -0.0f : 0.0f;
        else if (r % 89 == 0) x[i] = bits_to_float((lcg(&u) & 0x807fffffu) | 1u); /* subnormal */
        else
            x[i] = ldexpf((float)(lcg(&u) >> 8) * 0x1p-24f, (int)(r % 41) - 20) *
                   ((r & 1) ? -1.0f : 1.0f);
    }
}

/* A fork-join runner of its own (threads started per call; the engine uses
 * the backend's pool): fn(arg, w, n) on n threads, the caller being w = 0. */
typedef struct fj_thread {
    void (*fn)(void *, int, int);
    void *arg;
    int w, n;
} fj_thread;

static void *fj_main(void *p) {
    fj_thread *t = p;
    t->fn(t->arg, t->w, t->n);
    return NULL;
}

static int pool_runs;
static void pool_runner(void *ctx, void (*fn)(void *, int, int), void *arg) {
    int n = *(const int *)ctx;
    pthread_t tid[16];
    fj_thread ft[16];
    pool_runs++;
    for (int w = 1; w < n; w++) {
        ft[w] = (fj_thread){fn, arg, w, n};
        if (pthread_create(&tid[w], NULL, fj_main, &ft[w]) != 0) abort();
    }
    fn(arg, 0, n);
    for (int w = 1; w < n; w++) pthread_join(tid[w], NULL);
}

static int tensor_hash_should_be_plain_xxh3_up_to_one_chunk_and_chunked_above(void) {
    size_t max = 5 * (size_t)CH + 123;
    uint8_t *b = malloc(max);
    uint32_t u = 7;
    for (size_t i = 0; i < max; i++) b[i] = (uint8_t)(lcg(&u) >> 24);
    const size_t sizes[] = {0, 1, CH - 1, CH, CH + 1, 2 * (size_t)CH, 2 * (size_t)CH + 1, max};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        sb_hash128 h = sb_hash_tensor(b, n);
        CHECK(sb_hash_equal(h, ref_tensor_hash(b, n)), "n=%zu: not the documented rule", n);
        if (n <= CH)
            CHECK(sb_hash_equal(h, sb_hash_bytes(b, n)), "n=%zu: not plain XXH3-128", n);
        else
            CHECK(!sb_hash_equal(h, sb_hash_bytes(b, n)), "n=%zu: chunks not used", n);
        if (n == 0) continue;
        /* every byte counts, in the first chunk and in the last */
        b[0] ^= 1;
        CHECK(!sb_hash_equal(h, sb_hash_tensor(b, n)), "n=%zu: first byte ignored", n);
        b[0] ^= 1;
        b[n - 1] ^= 0x80;
        CHECK(!sb_hash_equal(h, sb_hash_tensor(b, n)), "n=%zu: last byte ignored", n);
        b[n - 1] ^= 0x80;
        CHECK(sb_hash_equal(h, sb_hash_tensor(b, n)), "n=%zu: not a function of the bytes", n);
    }
    /* the length is part of a chunked hash: a tensor whose bytes are another
     * tensor's chunk hashes does not collide with it */
    sb_hash128 ch[2] = {sb_hash_bytes(b, CH), sb_hash_bytes(b + CH, 1)};
    CHECK(!sb_hash_equal(sb_hash_tensor(b, CH + 1), sb_hash_tensor(ch, sizeof ch)),
          "collides with the hash of its chunk hashes");
    CHECK(sb_hash_equal(sb_hash_tensor(NULL, 0), sb_hash_bytes("", 0)), "empty");
    free(b);
    return 0;
}

static int tensor_hash_and_stats_should_match_pinned_known_answers(void) {
    /* bytes (i*i + 7i) mod 251; the expected values were computed with
     * xxhsum -H2 (Debian's xxhash 0.8.1) over each chunk and then over the
     * chunk hashes and the length, as trace.h defines */
    size_t n = 3 * (size_t)CH + 1000;
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(((uint64_t)i * i + 7 * (uint64_t)i) % 251);
    char hex[33];
    sb_hash_hex(sb_hash_tensor(b, n), hex);
    CHECK(!strcmp(hex, "663ca1b0a4f1892488cd3c35bb3f371f"), "4 chunks: %s", hex);
    sb_hash_hex(sb_hash_tensor(b, CH), hex);
    CHECK(!strcmp(hex, "0739a6b56ebc80ed1e1d94dcf34eaa4b"), "one chunk: %s", hex);
    sb_hash_hex(sb_hash_tensor(b, CH + 1), hex);
    CHECK(!strcmp(hex, "50e3217179a4c0537472539d6a20c93c"), "chunk + 1 byte: %s", hex);
    sb_hash_hex(sb_hash_bytes(b, n), hex); /* the whole-buffer XXH3 (format version 1) */
    CHECK(!strcmp(hex, "229c538a5e3dcff567958e0f6c458d3d"), "plain: %s", hex);
    free(b);

    /* stats of 4 chunks and a tail: integer multiples of 1/64, so the sum of
     * squares is exact in any order and the expected value is plain algebra */
    size_t nf = 3 * (CH / 4) + 16384 / 2 + 17;
    float *x = malloc(nf * sizeof *x);
    uint64_t k2 = 0;
    for (size_t i = 0; i < nf; i++) {
        int64_t k = (int64_t)((i * 37) % 1001) - 500;
        x[i] = (float)k / 64.0f;
        k2 += (uint64_t)(k * k);
    }
    float l2, ma;
    sb_hash128 h;
    sb_hash_stats_f32(x, nf, &h, &l2, &ma);
    CHECK(l2 == (float)sqrt((double)k2 / 4096.0) && ma == 500.0f / 64.0f, "exact: l2 %a maxabs %a",
          l2, ma);
    /* random data, where the order shows in the last bits: pinned */
    fill_floats(x, nf, 99);
    sb_hash_stats_f32(x, nf, &h, &l2, &ma);
    float rm;
    double rs = ref_sumsq(x, nf, &rm);
    CHECK(l2 == (float)sqrt(rs) && ma == rm, "reference: l2 %a vs %a", l2, (float)sqrt(rs));
    CHECK(l2 == 0x1.8584eep+24f && ma == 0x1.fffe88p+19f, "pinned: l2 %a maxabs %a", l2, ma);
    sb_hash_hex(h, hex);
    CHECK(!strcmp(hex, "827998c52a71e75667dfdbce795d2627"), "pinned hash: %s", hex);
    free(x);
    return 0;
}

/* the vector paths (trace.c picks one at run time) against the plain C lanes */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
sb_hash128 sb_xxh3_digest_avx512(const void *p, size_t n, double *acc, float *mx);
sb_hash128 sb_xxh3_digest_avx2(const void *p, size_t n, double *acc, float *mx);
sb_hash128 sb_xxh3_chunk_avx512(const void *p, size_t n, double *sumsq, float *maxabs);
sb_hash128 sb_xxh3_chunk_avx2(const void *p, size_t n, double *sumsq, float *maxabs);
#endif

/* trace.c's lane tree over 64 lanes: half = 32, 16, ..., 1, lane k += lane k + half */
static double lane_tree(const double lanes[64]) {
    double a[64];
    memcpy(a, lanes, sizeof a);
    for (int half = 32; half >= 1; half /= 2)
        for (int k = 0; k < half; k++) a[k] = a[k] + a[k + half];
    return a[0];
}

static int vector_digests_should_equal_the_plain_c_lanes(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    struct {
        const char *name;
        sb_hash128 (*fn)(const void *, size_t, double *, float *);
        sb_hash128 (*chunk)(const void *, size_t, double *, float *);
    } paths[] = {{"avx2", sb_xxh3_digest_avx2, sb_xxh3_chunk_avx2},
                 {"avx512", sb_xxh3_digest_avx512, sb_xxh3_chunk_avx512}};
    size_t per = CH / sizeof(float);
    float *x = malloc(per * sizeof *x);
    fill_floats(x, per, 3);
    const size_t sizes[] = {0, 1, 31, 32, 33, 63, 64, 65, 2047, 2048, 2049, 4097, per - 1, per};
    int tested = 0;
    __builtin_cpu_init();
    for (int p = 0; p < 2; p++) {
        int have = p == 0 ? __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                          : __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
        if (!have) continue;
        tested++;
        /* random data, then with squares that overflow float in two blocks
         * (those are summed in double) and an infinity in a third */
        for (int variant = 0; variant < 2; variant++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            fill_floats(x, per, 3);
            if (variant) {
                x[40] = 3e19f;
                x[2100] = -2.5e19f;
                x[9000] = INFINITY;
            }
            size_t n = sizes[s];
            double acc[64] = {0}, racc[64];
            float mx[64] = {0}, lmax = 0.0f, rmax = 0.0f;
            sb_hash128 h = paths[p].fn(x, n * sizeof(float), acc, mx);
            ref_chunk_lanes(x, n, racc);
            for (size_t i = 0; i < n; i++) rmax = fabsf(x[i]) > rmax ? fabsf(x[i]) : rmax;
            for (int k = 0; k < 64; k++) lmax = mx[k] > lmax ? mx[k] : lmax;
            CHECK(sb_hash_equal(h, sb_hash_bytes(x, n * sizeof(float))), "%s n=%zu: hash",
                  paths[p].name, n);
            CHECK(!memcmp(acc, racc, sizeof acc) && lmax == rmax,
                  "%s n=%zu%s: lanes differ from the documented order", paths[p].name, n,
                  variant ? " (overflow, inf)" : "");
            CHECK(sb_hash_equal(paths[p].fn(x, n * sizeof(float), NULL, NULL), h),
                  "%s n=%zu: hash without stats", paths[p].name, n);
            /* the whole chunk: lanes from 0, then the tree */
            double cs, want = lane_tree(racc);
            float cm;
            CHECK(sb_hash_equal(paths[p].chunk(x, n * sizeof(float), &cs, &cm), h) &&
                      !memcmp(&cs, &want, sizeof cs) && cm == rmax,
                  "%s n=%zu%s: chunk sum %a (tree %a), max %a (%a)", paths[p].name, n,
                  variant ? " (overflow, inf)" : "", cs, want, cm, rmax);
        }
        /* lane values for which every other pairing of the tree gives
         * another sum (see stats_should_sum_float_lanes_per_block...) */
        static const int pairs[][2] = {{16, 48}, {8, 24}, {4, 12}, {2, 6}, {1, 3}, {32, 33}};
        for (size_t pi = 0; pi < sizeof pairs / sizeof pairs[0]; pi++) {
            float t[64] = {0};
            t[0] = 0x1p26f;
            t[pairs[pi][0]] = 0.75f;
            t[pairs[pi][1]] = -0.75f;
            double lanes[64], cs;
            float cm;
            ref_chunk_lanes(t, 64, lanes);
            double want = lane_tree(lanes);
            paths[p].chunk(t, sizeof t, &cs, &cm);
            CHECK(cs == want && cm == 0x1p26f, "%s lane tree, lanes %d and %d: %a, documented %a",
                  paths[p].name, pairs[pi][0], pairs[pi][1], cs, want);
        }
    }
    free(x);
    if (!tested) printf("(no AVX2 on this CPU: nothing to compare)\n");
#endif
    return 0;
}

static int digests_should_not_depend_on_the_thread_count(void) {
    /* float and byte tensors across the chunk boundaries, together well
     * above the size below which the caller digests alone */
    static const struct { size_t bytes; int is_float; } shapes[] = {
        {0, 1}, {4, 1}, {CH - 4, 1}, {CH, 1}, {CH + 4, 1}, {5 * (size_t)CH + 124, 1},
        {802816, 1}, {1024, 1}, {40, 1}, {262144, 1},
        {0, 0}, {1, 0}, {CH - 1, 0}, {CH, 0}, {CH + 1, 0}, {3 * (size_t)CH + 5, 0}};
    enum { N = sizeof shapes / sizeof shapes[0] };
    void *mem[N];
    sb_digest ref[N], d[N];
    for (int i = 0; i < N; i++) {
        mem[i] = malloc(shapes[i].bytes + 4);
        if (shapes[i].is_float)
            fill_floats(mem[i], shapes[i].bytes / 4, 100u + (uint32_t)i);
        else
            for (size_t k = 0; k < shapes[i].bytes; k++)
                ((uint8_t *)mem[i])[k] = (uint8_t)(k * 7 + (size_t)i);
        ref[i] = (sb_digest){.p = mem[i], .bytes = shapes[i].bytes,
                             .is_float = shapes[i].is_float};
        ref[i].h = ref_tensor_hash(mem[i], shapes[i].bytes);
        ref[i].sumsq = 0.0;
        ref[i].maxabs = 0.0f;
        if (shapes[i].is_float)
            ref[i].sumsq = ref_sumsq(mem[i], shapes[i].bytes / 4, &ref[i].maxabs);
    }
    /* pool size and the caller's worker count, including mismatched ones */
    static const int runs[][2] = {{1, 1}, {2, 2}, {3, 3}, {8, 8}, {3, 8}, {8, 2}, {2, 1}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        int threads = runs[r][0];
        for (int rep = 0; rep < 3; rep++) {
            for (int i = 0; i < N; i++)
                d[i] = (sb_digest){.p = ref[i].p, .bytes = ref[i].bytes,
                                   .is_float = ref[i].is_float};
            pool_runs = 0;
            sb_digest_tensors(d, N, pool_runner, &threads, runs[r][1]);
            CHECK(pool_runs == (runs[r][1] > 1), "pool %d, workers %d: %d pool runs", runs[r][0],
                  runs[r][1], pool_runs);
            for (int i = 0; i < N; i++) {
                char a[33], b[33];
                sb_hash_hex(d[i].h, a);
                sb_hash_hex(ref[i].h, b);
                CHECK(sb_hash_equal(d[i].h, ref[i].h),
                      "threads %d: tensor %d (%zu bytes): %s vs %s", runs[r][0], i,
                      shapes[i].bytes, a, b);
                CHECK(!memcmp(&d[i].sumsq, &ref[i].sumsq, sizeof(double)) &&
                          !memcmp(&d[i].maxabs, &ref[i].maxabs, sizeof(float)),
                      "threads %d: tensor %d (%zu bytes): sumsq %a vs %a, maxabs %a vs %a",
                      runs[r][0], i, shapes[i].bytes, d[i].sumsq, ref[i].sumsq, d[i].maxabs,
                      ref[i].maxabs);
            }
        }
    }
    /* without a runner, and one tensor at a time: the same */
    for (int i = 0; i < N; i++) {
        d[i] = (sb_digest){.p = ref[i].p, .bytes = ref[i].bytes,
                           .is_float = ref[i].is_float};
        sb_digest_tensors(&d[i], 1, NULL, NULL, 4);
        CHECK(sb_hash_equal(d[i].h, ref[i].h) && !memcmp(&d[i].sumsq, &ref[i].sumsq, 8),
              "tensor %d alone", i);
        if (shapes[i].is_float) {
            float l2, ma, l2b, mab;
            sb_hash128 h;
            sb_hash_stats_f32(mem[i], shapes[i].bytes / 4, &h, &l2, &ma);
            sb_trace_stats(mem[i], shapes[i].bytes / 4, &l2b, &mab);
            CHECK(sb_hash_equal(h, ref[i].h) && l2 == (float)sqrt(ref[i].sumsq) && l2 == l2b &&
                      ma == ref[i].maxabs && ma == mab,
                  "tensor %d: sb_hash_stats_f32 / sb_trace_stats", i);
        }
    }
    for (int i = 0; i < N; i++) free(mem[i]);
    return 0;
}

/* Canonical mode gives the same bits on any thread count, so its traces must
 * be the same record for record, hashes and stats included: the traced
 * tensors (a 784x256 layer: 13 chunks) are hashed on the run's pool. */
static int canonical_traces_should_be_identical_on_1_2_and_3_threads(void) {
    char *dir = scratch_new();
    sb_trace *tr[3] = {0};
    for (int k = 0; k < 3; k++) {
        sb_run_config c;
        memset(&c, 0, sizeof c);
        snprintf(c.model.kind, sizeof c.model.kind, "mlp");
        c.model.n_widths = 4;
        int w[4] = {784, 256, 64, 10};
        memcpy(c.model.widths, w, sizeof w);
        c.model.act = SB_ACT_RELU;
        snprintf(c.data.kind, sizeof c.data.kind, "blobs");
        c.data.samples = 512;
        c.data.features = 784;
        c.data.classes = 10;
        c.data.noise = 1.0f;
        c.data.shuffle = SB_SHUFFLE_EPOCH;
        snprintf(c.optim.name, sizeof c.optim.name, "adam");
        c.optim.lr = 0.001f;
        c.optim.beta1 = 0.9f;
        c.optim.beta2 = 0.999f;
        c.optim.eps = 1e-8f;
        c.steps = 3;
        c.batch = 64;
        c.seed = 5;
        snprintf(c.backend, sizeof c.backend, "blas");
        c.mode = SB_MODE_CANONICAL;
        c.threads = k + 1;
        c.trace = 1;
        sb_error err = {0};
        sb_trainer *t = sb_trainer_new(&c, &err);
        CHECK(t, "%s", err.msg);
        char path[128];
        snprintf(path, sizeof path, "%s/t%d.sbt", dir, k + 1);
        CHECK(sb_trainer_trace_open(t, path, &err) == SB_OK, "%s", err.msg);
        for (int s = 0; s < c.steps; s++)
            CHECK(sb_trainer_step(t, NULL, &err) == SB_OK, "%s", err.msg);
        CHECK(sb_trainer_trace_close(t, NULL, &err) == SB_OK, "%s", err.msg);
        sb_trainer_free(t);
        CHECK((tr[k] = sb_trace_read(path, &err)), "%s", err.msg);
    }
    int chunked = 0;
    for (int k = 1; k < 3; k++) {
        CHECK(tr[k]->n == tr[0]->n, "threads %d: %zu records, 1 thread: %zu", k + 1, tr[k]->n,
              tr[0]->n);
        for (size_t i = 0; i < tr[0]->n; i++) {
            sb_trace_record a = tr[0]->rec[i], b = tr[k]->rec[i];
            a.values = b.values = 0; /* file offsets */
            CHECK(!memcmp(&a, &b, sizeof a), "threads %d: record %zu (%s) differs", k + 1, i,
                  tr[0]->op_names[a.op]);
            if (k == 1 && a.n_out > CH / 4) chunked++;
        }
    }
    CHECK(chunked > 0, "no record had a tensor over one chunk");
    for (int k = 0; k < 3; k++) sb_trace_free(tr[k]);
    scratch_free(dir);
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
    {"wrong version", "header: version 4 is not supported", .at = 8, .width = 4, .value = 4},
    {"version 1 (tensors hashed whole)",
     "header: trace format version 1 (tensors over 64 KiB hashed whole) is no longer read; "
     "this build reads versions 2 and 3", .at = 8, .width = 4, .value = 1},
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
    SB_CASE(stats_should_sum_float_lanes_per_block_and_the_blocks_in_double),
    SB_CASE(stats_should_match_the_documented_order_on_random_data),
    SB_CASE(stats_should_make_maxabs_and_l2_nan_when_any_element_is_nan),
    SB_CASE(stats_should_report_inf_and_zero_for_empty_input),
    SB_CASE(tensor_hash_should_be_plain_xxh3_up_to_one_chunk_and_chunked_above),
    SB_CASE(tensor_hash_and_stats_should_match_pinned_known_answers),
    SB_CASE(vector_digests_should_equal_the_plain_c_lanes),
    SB_CASE(digests_should_not_depend_on_the_thread_count),
    SB_CASE(canonical_traces_should_be_identical_on_1_2_and_3_threads),
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
