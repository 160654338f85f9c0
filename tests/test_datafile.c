/* test_datafile.c — the real-data readers (engine/datafile.c) and the batch
 * export (sb_trainer_export_batches).
 *
 * Small IDX, .npy and CSV files are written byte by byte here, loaded, and
 * compared bitwise with the values written; a table of malformed files must
 * each fail with SB_ERR_FORMAT and one line naming the file and the place;
 * and the exported batches must hash to what a traced training run recorded
 * for data/batch and data/augment at every step.
 *
 * Not here: numpy-written files and the command line (tests/datafiles.py).
 */
#include "sb_test.h"

#include "../engine/engine.h"
#include "../engine/trace.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static const char *tmpdir(void) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/sb_test_datafile.%d", (int)getpid());
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
        if (system(cmd) != 0) return "/tmp";
    }
    return g_dir;
}

static const char *path_of(const char *name) {
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir(), name);
    return buf[k];
}

static int write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(b, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static size_t put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
    return 4;
}

/* An IDX header: magic 00 00 type ndim, then dims. Returns its length. */
static size_t idx_header(uint8_t *p, uint8_t type, int ndim, const uint32_t *dims) {
    p[0] = 0, p[1] = 0, p[2] = type, p[3] = (uint8_t)ndim;
    size_t n = 4;
    for (int i = 0; i < ndim; i++) n += put_be32(p + n, dims[i]);
    return n;
}

/* A .npy version 1.0 file: magic, header dict padded to 64 bytes, data. */
static size_t npy_file(uint8_t *out, const char *dict, const void *data, size_t n) {
    size_t dl = strlen(dict);
    size_t total = 10 + dl + 1;
    size_t pad = (64 - total % 64) % 64;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    uint16_t hl = (uint16_t)(dl + pad + 1);
    out[8] = (uint8_t)hl, out[9] = (uint8_t)(hl >> 8);
    memcpy(out + 10, dict, dl);
    memset(out + 10 + dl, ' ', pad);
    out[10 + dl + pad] = '\n';
    memcpy(out + 10 + dl + pad + 1, data, n);
    return 10 + dl + pad + 1 + n;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---------------------------------------------------------------------- */

static int idx_reader_should_load_every_element_type_bitwise(void) {
    /* 3 samples of 2x2; labels 0, 2, 1 as ubyte */
    uint8_t b[256], yb[32];
    uint32_t dx[3] = {3, 2, 2}, dy[1] = {3};
    size_t yn = idx_header(yb, 0x08, 1, dy);
    yb[yn++] = 0, yb[yn++] = 2, yb[yn++] = 1;
    CHECK(write_bytes(path_of("y.idx"), yb, yn) == 0, "write");
    const uint8_t types[] = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E};
    for (int t = 0; t < 6; t++) {
        size_t n = idx_header(b, types[t], 3, dx);
        float want[12];
        for (int i = 0; i < 12; i++) {
            int v = types[t] == 0x08 ? i * 20 : i * 20 - 100;
            want[i] = (float)v;
            if (types[t] == 0x08 || types[t] == 0x09) b[n++] = (uint8_t)(int8_t)v;
            else if (types[t] == 0x0B) b[n++] = (uint8_t)((uint16_t)v >> 8), b[n++] = (uint8_t)v;
            else if (types[t] == 0x0C) n += put_be32(b + n, (uint32_t)v);
            else if (types[t] == 0x0D) {
                float f = (float)v + 0.25f;
                want[i] = f;
                uint32_t u;
                memcpy(&u, &f, 4);
                n += put_be32(b + n, u);
            } else {
                double d = v + 1.0 / 3.0;
                want[i] = (float)d;
                uint64_t u;
                memcpy(&u, &d, 8);
                n += put_be32(b + n, (uint32_t)(u >> 32));
                n += put_be32(b + n, (uint32_t)u);
            }
        }
        CHECK(write_bytes(path_of("x.idx"), b, n) == 0, "write");
        sb_error err = {0};
        sb_dataset *d = sb_dataset_read_idx(path_of("x.idx"), path_of("y.idx"), 1.0f, 0, &err);
        CHECK(d, "type 0x%02x: %s", types[t], err.msg);
        CHECK(d->samples == 3 && d->features == 4 && d->classes == 3, "shape %d %d %d", d->samples,
              d->features, d->classes);
        for (int i = 0; i < 12; i++)
            CHECK(same_bits(d->x[i], want[i]), "type 0x%02x element %d: %a, want %a", types[t], i,
                  (double)d->x[i], (double)want[i]);
        CHECK(d->y[0] == 0 && d->y[1] == 2 && d->y[2] == 1, "labels %d %d %d", d->y[0], d->y[1], d->y[2]);
        sb_dataset_free(d);
    }
    return 0;
}

static int idx_reader_should_scale_ubyte_images_by_the_given_factor(void) {
    uint8_t b[64], yb[16];
    uint32_t dx[2] = {2, 3}, dy[1] = {2};
    size_t n = idx_header(b, 0x08, 2, dx), yn = idx_header(yb, 0x08, 1, dy);
    const uint8_t px[6] = {0, 1, 127, 128, 254, 255};
    memcpy(b + n, px, 6);
    n += 6;
    yb[yn++] = 1, yb[yn++] = 0;
    CHECK(write_bytes(path_of("xs.idx"), b, n) == 0 && write_bytes(path_of("ys.idx"), yb, yn) == 0,
          "write");
    sb_error err = {0};
    float scale = 1.0f / 255.0f;
    sb_dataset *d = sb_dataset_read_idx(path_of("xs.idx"), path_of("ys.idx"), scale, 4, &err);
    CHECK(d, "%s", err.msg);
    CHECK(d->classes == 4, "given classes kept, got %d", d->classes);
    for (int i = 0; i < 6; i++)
        CHECK(same_bits(d->x[i], (float)px[i] * scale), "pixel %d: %a", i, (double)d->x[i]);
    CHECK(d->x[5] == 1.0f, "255 * (1/255f) rounds to 1, got %a", (double)d->x[5]);
    sb_dataset_free(d);
    return 0;
}

static int npy_reader_should_load_c_and_fortran_order_and_both_byte_orders(void) {
    /* x = [[1.5, -2, 3], [4, 5.25, -6]] as <f4 (C order), >f8 (C order) and
     * <f4 in Fortran order; y = [1, 0] as <i8 */
    const float xv[6] = {1.5f, -2.0f, 3.0f, 4.0f, 5.25f, -6.0f};
    uint8_t buf[512], data[64];
    int64_t yv[2] = {1, 0};
    size_t n = npy_file(buf, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", yv, 16);
    CHECK(write_bytes(path_of("y.npy"), buf, n) == 0, "write");
    for (int variant = 0; variant < 3; variant++) {
        const char *dict;
        size_t dn;
        if (variant == 0) {
            dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
            memcpy(data, xv, 24);
            dn = 24;
        } else if (variant == 1) {
            dict = "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3), }";
            for (int i = 0; i < 6; i++) {
                double d = xv[i];
                uint64_t u;
                memcpy(&u, &d, 8);
                for (int k = 0; k < 8; k++) data[i * 8 + k] = (uint8_t)(u >> (56 - 8 * k));
            }
            dn = 48;
        } else {
            dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
            float col[6];
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < 3; c++) col[c * 2 + r] = xv[r * 3 + c];
            memcpy(data, col, 24);
            dn = 24;
        }
        n = npy_file(buf, dict, data, dn);
        CHECK(write_bytes(path_of("x.npy"), buf, n) == 0, "write");
        sb_error err = {0};
        sb_dataset *d = sb_dataset_read_npy(path_of("x.npy"), path_of("y.npy"), 1.0f, 0, &err);
        CHECK(d, "variant %d: %s", variant, err.msg);
        CHECK(d->samples == 2 && d->features == 3 && d->classes == 2, "variant %d shape", variant);
        for (int i = 0; i < 6; i++)
            CHECK(same_bits(d->x[i], xv[i]), "variant %d element %d: %a", variant, i, (double)d->x[i]);
        CHECK(d->y[0] == 1 && d->y[1] == 0, "labels");
        sb_dataset_free(d);
    }
    return 0;
}

static int csv_reader_should_take_the_label_column_by_name_or_index(void) {
    const char *text = "a, label ,b\r\n0.1,2,-3e-2\r\n1e10,0,  7 \r\n-0,1,0.30000001\n";
    CHECK(write_bytes(path_of("t.csv"), text, strlen(text)) == 0, "write");
    sb_error err = {0};
    sb_dataset *d = sb_dataset_read_csv(path_of("t.csv"), 1, -1, "label", 1.0f, 0, &err);
    CHECK(d, "%s", err.msg);
    CHECK(d->samples == 3 && d->features == 2 && d->classes == 3, "shape %d %d %d", d->samples,
          d->features, d->classes);
    const float want[6] = {strtof("0.1", NULL), strtof("-3e-2", NULL), 1e10f, 7.0f, -0.0f,
                           strtof("0.30000001", NULL)};
    for (int i = 0; i < 6; i++)
        CHECK(same_bits(d->x[i], want[i]), "element %d: %a, want %a", i, (double)d->x[i],
              (double)want[i]);
    CHECK(d->y[0] == 2 && d->y[1] == 0 && d->y[2] == 1, "labels");
    sb_dataset_free(d);
    /* the same by index (1), and by -2 (second from the end) */
    for (int k = 0; k < 2; k++) {
        d = sb_dataset_read_csv(path_of("t.csv"), 1, k ? -2 : 1, "", 1.0f, 0, &err);
        CHECK(d && d->y[0] == 2 && same_bits(d->x[1], want[1]), "index %d: %s", k ? -2 : 1, err.msg);
        sb_dataset_free(d);
    }
    /* without a header the header row is data: "a" is not a number */
    d = sb_dataset_read_csv(path_of("t.csv"), 0, 1, "", 1.0f, 0, &err);
    CHECK(!d && err.status == SB_ERR_FORMAT && strstr(err.msg, "row 1, column 1: expected a number, got \"a\""),
          "%s", err.msg);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* malformed files                                                         */
/* ---------------------------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    char kind;              /* 'i' idx, 'n' npy, 'c' csv */
    int classes;
    const char *want;       /* a substring of the message */
} bad_case;

/* Builds the x (and y) file of case i; returns 0 ok. */
static int build_bad(int i, const char *xp, const char *yp) {
    uint8_t b[1024];
    size_t n = 0;
    uint32_t d3[3] = {2, 2, 2}, d1[1] = {2};
    uint8_t ygood[16];
    size_t yn = idx_header(ygood, 0x08, 1, d1);
    ygood[yn++] = 0, ygood[yn++] = 1;
    uint8_t npy_y[256];
    int64_t yv[2] = {0, 1};
    size_t nyn = npy_file(npy_y, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", yv, 16);
    float f4[4] = {1, 2, 3, 4};
    const char *csv = NULL;
    switch (i) {
    case 0: /* idx truncated data */
        n = idx_header(b, 0x08, 3, d3);
        memset(b + n, 7, 5);
        n += 5;
        break;
    case 1: /* idx bad magic */
        memcpy(b, "\x01\x02\x08\x01", 4);
        n = 4 + put_be32(b + 4, 2);
        break;
    case 2: /* idx dims past the end of the file */
        b[0] = 0, b[1] = 0, b[2] = 0x08, b[3] = 3;
        n = 4 + put_be32(b + 4, 2);
        break;
    case 3: { /* idx dimensions whose product overflows */
        uint32_t big[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
        n = idx_header(b, 0x0E, 3, big);
        break;
    }
    case 4: /* idx unknown type */
        n = idx_header(b, 0x0A, 3, d3);
        break;
    case 5: { /* idx label out of range (classes 2) */
        n = idx_header(b, 0x08, 3, d3);
        memset(b + n, 1, 8);
        n += 8;
        uint8_t y[16];
        size_t m = idx_header(y, 0x08, 1, d1);
        y[m++] = 0, y[m++] = 5;
        if (write_bytes(xp, b, n) || write_bytes(yp, y, m)) return -1;
        return 0;
    }
    case 6: /* npy unsupported dtype */
        n = npy_file(b, "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }", f4, 16);
        break;
    case 7: /* npy header too long */
        memcpy(b, "\x93NUMPY\x02\x00", 8);
        b[8] = 0, b[9] = 0, b[10] = 0, b[11] = 0x40; /* 1 GiB */
        n = 12;
        break;
    case 8: /* npy truncated data */
        n = npy_file(b, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4, 16);
        break;
    case 9: /* npy bad magic */
        memcpy(b, "\x93NUMPX\x01\x00\x10\x00", 10);
        n = 10;
        break;
    case 10: /* npy structured descr */
        n = npy_file(b, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", f4, 8);
        break;
    case 11: /* npy NaN feature */
        f4[3] = NAN;
        n = npy_file(b, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f4, 16);
        break;
    case 12: csv = "1,2,0\n3,4\n"; break;                 /* ragged */
    case 13: csv = "1,2,0\n3,abc,1\n"; break;             /* non-numeric */
    case 14: csv = "1,2,0\n3,4,1.5\n"; break;             /* non-integer label */
    case 15: csv = "1,2,0\n3,4,7\n"; break;               /* label out of range (classes 3) */
    case 16: csv = "1,2,0\n3,4,1\n5,6,1,9\n"; break;      /* too many cells */
    case 17: csv = "1,2,0\n3,,1\n"; break;                /* empty cell */
    case 18: csv = "1,2,0\n3,1e999,1\n"; break;           /* overflow to Inf */
    case 19: csv = "1,0\n2,1500\n"; break;                /* inferred classes too many */
    default: return -1;
    }
    if (csv) return write_bytes(xp, csv, strlen(csv));
    if (write_bytes(xp, b, n)) return -1;
    if (i <= 5) return write_bytes(yp, ygood, yn);
    return write_bytes(yp, npy_y, nyn);
}

static int malformed_files_should_fail_with_one_line_naming_the_file_and_the_place(void) {
    static const bad_case cases[] = {
        {"idx truncated data", 'i', 0, "data: truncated"},
        {"idx bad magic", 'i', 0, "header: bad magic"},
        {"idx dims past the end", 'i', 0, "header: truncated"},
        {"idx overflowing dims", 'i', 0, "header: dimensions after the first"},
        {"idx unknown type", 'i', 0, "header: type 0x0a"},
        {"idx label out of range", 'i', 2, "label 1: label 5 out of range [0, 2)"},
        {"npy unsupported dtype", 'n', 0, "header: 'descr' '<c8' is not supported"},
        {"npy header too long", 'n', 0, "header: 1073741824 bytes long"},
        {"npy truncated data", 'n', 0, "data: truncated"},
        {"npy bad magic", 'n', 0, "header: not a .npy file"},
        {"npy structured descr", 'n', 0, "structured arrays are not supported"},
        {"npy NaN feature", 'n', 0, "sample 1, feature 1: NaN is not finite"},
        {"csv ragged row", 'c', 0, "row 2: 2 cells, expected 3"},
        {"csv non-numeric cell", 'c', 0, "row 2, column 2: expected a number, got \"abc\""},
        {"csv non-integer label", 'c', 0, "row 2, column 3: label 1.5 is not a non-negative integer"},
        {"csv label out of range", 'c', 3, "row 2, column 3: label 7 out of range [0, 3)"},
        {"csv too many cells", 'c', 0, "row 3: 4 cells, expected 3"},
        {"csv empty cell", 'c', 0, "row 2, column 2: expected a number, got \"\""},
        {"csv overflowing number", 'c', 0, "row 2, column 2: expected a finite number"},
        {"csv too many inferred classes", 'c', 0, "row 2, column 2: label 1500 is too large"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        const bad_case *c = &cases[i];
        const char *xp = path_of(c->kind == 'c' ? "bad.csv" : c->kind == 'i' ? "bad_x.idx" : "bad_x.npy");
        const char *yp = path_of(c->kind == 'i' ? "bad_y.idx" : "bad_y.npy");
        CHECK(build_bad(i, xp, yp) == 0, "%s: cannot write", c->name);
        sb_error err = {0};
        sb_dataset *d = c->kind == 'i'   ? sb_dataset_read_idx(xp, yp, 1.0f, c->classes, &err)
                        : c->kind == 'n' ? sb_dataset_read_npy(xp, yp, 1.0f, c->classes, &err)
                                         : sb_dataset_read_csv(xp, 0, -1, "", 1.0f, c->classes, &err);
        CHECK(!d, "%s: accepted", c->name);
        CHECK(err.status == SB_ERR_FORMAT, "%s: status %d (%s)", c->name, err.status, err.msg);
        CHECK(strstr(err.msg, c->want) != NULL, "%s: message \"%s\" lacks \"%s\"", c->name, err.msg,
              c->want);
        /* names the file: the x file, or the y file for label problems */
        CHECK(strncmp(err.msg, xp, strlen(xp)) == 0 || strncmp(err.msg, yp, strlen(yp)) == 0,
              "%s: message does not start with the file: %s", c->name, err.msg);
        CHECK(!strchr(err.msg, '\n'), "%s: more than one line", c->name);
    }
    sb_error err = {0};
    CHECK(!sb_dataset_read_csv(path_of("missing.csv"), 0, -1, "", 1.0f, 0, &err) &&
              err.status == SB_ERR_IO && strstr(err.msg, "missing.csv"),
          "a missing file is an I/O error naming it: %s", err.msg);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* export == what training saw                                             */
/* ---------------------------------------------------------------------- */

static sb_run_config base_config(void) {
    sb_run_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model.kind, sizeof c.model.kind, "mlp");
    c.model.n_widths = 3;
    c.model.widths[0] = 5, c.model.widths[1] = 8, c.model.widths[2] = 3;
    c.model.act = SB_ACT_RELU;
    snprintf(c.data.kind, sizeof c.data.kind, "blobs");
    c.data.samples = 70, c.data.features = 5, c.data.classes = 3;
    c.data.noise = 1.0f;
    c.data.shuffle = SB_SHUFFLE_EPOCH;
    c.data.scale = 1.0f;
    snprintf(c.optim.name, sizeof c.optim.name, "sgd");
    c.optim.lr = 0.05f, c.optim.momentum = 0.9f;
    c.steps = 13, c.batch = 16; /* 16 does not divide 70: batches straddle epochs */
    c.seed = 7;
    snprintf(c.backend, sizeof c.backend, "ref");
    c.mode = SB_MODE_DETERMINISTIC;
    c.threads = 1;
    c.trace = 1;
    return c;
}

static int exported_batches_should_hash_to_the_traced_batches_of_every_step(void) {
    for (int variant = 0; variant < 3; variant++) {
        sb_run_config c = base_config();
        if (variant >= 1) c.data.aug_noise = 0.3f, c.data.aug_feature_drop = 0.2f;
        if (variant == 2) c.data.loader_workers = 3; /* in order: the same batches */
        sb_error err = {0};
        sb_trainer *t = sb_trainer_new(&c, &err);
        CHECK(t, "%s", err.msg);
        size_t per = (size_t)c.batch * (size_t)c.data.features;
        float *x = malloc((size_t)c.steps * per * sizeof(float));
        int32_t *y = malloc((size_t)c.steps * (size_t)c.batch * sizeof(int32_t));
        CHECK(x && y, "oom");
        CHECK(sb_trainer_export_batches(t, 0, c.steps, x, y, &err) == SB_OK, "%s", err.msg);
        const char *tp = path_of("export.sbt");
        unlink(tp);
        CHECK(sb_trainer_trace_open(t, tp, &err) == SB_OK, "%s", err.msg);
        for (int s = 0; s < c.steps; s++) CHECK(sb_trainer_step(t, NULL, &err) == SB_OK, "%s", err.msg);
        CHECK(sb_trainer_trace_close(t, "{}", &err) == SB_OK, "%s", err.msg);
        sb_trainer_free(t);
        sb_trace *tr = sb_trace_read(tp, &err);
        CHECK(tr, "%s", err.msg);
        int seen = 0;
        for (size_t r = 0; r < tr->n; r++) {
            const sb_trace_record *rec = &tr->rec[r];
            int s = (int)rec->step - 1;
            const float *xs = x + (size_t)s * per;
            const int32_t *ys = y + (size_t)s * (size_t)c.batch;
            if (rec->stage == SB_STAGE_DATA_BATCH && variant == 0) {
                /* data/batch outputs: the gathered batch and its labels */
                sb_hash128 h[2] = {sb_hash_tensor(xs, per * sizeof(float)),
                                   sb_hash_tensor(ys, (size_t)c.batch * sizeof(int32_t))};
                CHECK(sb_hash_equal(rec->out, sb_hash_combine(h, 2)), "variant %d step %d: batch differs",
                      variant, s + 1);
                seen++;
            } else if (rec->stage == SB_STAGE_DATA_AUGMENT) {
                CHECK(sb_hash_equal(rec->out, sb_hash_tensor(xs, per * sizeof(float))),
                      "variant %d step %d: augmented batch differs", variant, s + 1);
                seen++;
            }
        }
        CHECK(seen == c.steps, "variant %d: %d of %d steps compared", variant, seen, c.steps);
        sb_trace_free(tr);
        unlink(tp);
        free(x);
        free(y);
    }
    return 0;
}

static int export_should_not_move_the_trainer(void) {
    sb_run_config c = base_config();
    c.trace = 0;
    sb_error err = {0};
    sb_trainer *a = sb_trainer_new(&c, &err), *b = sb_trainer_new(&c, &err);
    CHECK(a && b, "%s", err.msg);
    float x[3 * 16 * 5];
    int32_t y[3 * 16];
    CHECK(sb_trainer_export_batches(a, 2, 3, x, y, &err) == SB_OK, "%s", err.msg);
    CHECK(sb_trainer_steps_done(a) == 0, "export moved the trainer");
    for (int s = 0; s < 4; s++) {
        float la, lb;
        CHECK(sb_trainer_step(a, &la, &err) == SB_OK && sb_trainer_step(b, &lb, &err) == SB_OK, "%s",
              err.msg);
        CHECK(same_bits(la, lb), "step %d: loss %a vs %a", s + 1, (double)la, (double)lb);
    }
    sb_trainer_free(a);
    sb_trainer_free(b);
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(idx_reader_should_load_every_element_type_bitwise),
    SB_CASE(idx_reader_should_scale_ubyte_images_by_the_given_factor),
    SB_CASE(npy_reader_should_load_c_and_fortran_order_and_both_byte_orders),
    SB_CASE(csv_reader_should_take_the_label_column_by_name_or_index),
    SB_CASE(malformed_files_should_fail_with_one_line_naming_the_file_and_the_place),
    SB_CASE(exported_batches_should_hash_to_the_traced_batches_of_every_step),
    SB_CASE(export_should_not_move_the_trainer),
};

int main(int argc, char **argv) {
    int rc = sb_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
    if (g_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
