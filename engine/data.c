/* data.c — the synthetic classification datasets and the per-epoch order.
 *
 * Sources (stream "data/source"):
 *   blobs   — `classes` Gaussian clusters in `features` dimensions: centres
 *             drawn N(0, 3²) per coordinate, samples centre + noise·N(0, 1);
 *             sample i has class i mod classes (balanced).
 *   spirals — `classes` interleaved arms in 2-D: radius t ∈ [0, 1), angle
 *             2πk/classes + 4t + noise·N(0, 1).
 *   shapes  — images [channels, height, width] (row-major, the sample's
 *             features): one shape per image, class i mod classes, at a random
 *             size, position and colour, plus pixel noise (draw_shape).
 *   chars   — token sequences cut from one seeded corpus (make_corpus): sample
 *             i is tokens [i·T, i·T + T] (T + 1 = features of them; windows
 *             overlap by one token, so every position is a target once per
 *             epoch); its label is the last token.
 * Shuffle (stream "data/shuffle", DESIGN.md §4): Fisher–Yates over the sample
 * indices; `once` uses index 0 for every epoch, `epoch` uses the epoch number.
 *
 * Files (idx, csv, npy) are read by datafile.c; here only dispatched to.
 *
 * Not here: batching and augmentation (pipeline.c).
 */
#include "engine.h"

#include <math.h>
#include <string.h>

/* ---- shapes ---- */

static const char *const SHAPE_NAMES[SB_SHAPES_MAX] = {
    "square", "disk", "triangle", "plus", "hbar", "vbar", "ring", "frame", "x", "diagonal"};

const char *sb_shape_name(int k) { return k >= 0 && k < SB_SHAPES_MAX ? SHAPE_NAMES[k] : "?"; }

static int iabs(int v) { return v < 0 ? -v : v; }

/* Whether local pixel (u row, v column) of an s×s box belongs to shape k.
 * Integer arithmetic only (doubled coordinates centre the box at s-1), so
 * the pixels are the same on every machine. */
static int shape_covers(int k, int s, int u, int v) {
    int cu = 2 * u - (s - 1), cv = 2 * v - (s - 1), d2 = cu * cu + cv * cv;
    int th = s / 5 > 2 ? s / 5 : 2, th2 = s / 8 > 1 ? s / 8 : 1;
    switch (k) {
    case 0: return 1;                                           /* filled square */
    case 1: return d2 <= s * s;                                 /* disk */
    case 2: return iabs(cv) <= u;                               /* triangle, apex up */
    case 3: return iabs(cu) <= s / 3 || iabs(cv) <= s / 3;      /* plus */
    case 4: return iabs(cu) <= s / 3;                           /* horizontal bar */
    case 5: return iabs(cv) <= s / 3;                           /* vertical bar */
    case 6: return d2 <= s * s && d2 >= (s - 2 * th) * (s - 2 * th); /* ring */
    case 7: return u < th || u >= s - th || v < th || v >= s - th;  /* frame */
    case 8: return iabs(u - v) <= th2 || iabs(u + v - (s - 1)) <= th2; /* X */
    default: return iabs(u - v) <= th2;                         /* diagonal */
    }
}

/* Sample i (class i mod classes): draws, in this order, the box size s in
 * [3/8, 5/8] of min(H, W), its top row and left column, one colour per
 * channel (grey 0.5..1 for one channel, 0.2..1 per channel otherwise), then
 * noise·N(0,1) for every pixel in (channel, row, column) order. */
static void draw_shape(const sb_data_config *c, sb_rng *r, int i, sb_dataset *d) {
    int C = c->channels, H = c->height, W = c->width, k = i % c->classes;
    int side = H < W ? H : W, lo = side * 3 / 8, hi = side * 5 / 8;
    if (lo < 3) lo = side < 3 ? side : 3;
    if (hi < lo) hi = lo;
    int s = lo + (int)sb_rng_below(r, (uint32_t)(hi - lo + 1));
    int y0 = (int)sb_rng_below(r, (uint32_t)(H - s + 1));
    int x0 = (int)sb_rng_below(r, (uint32_t)(W - s + 1));
    float colour[3];
    for (int ch = 0; ch < C && ch < 3; ch++)
        colour[ch] = C == 1 ? 0.5f + 0.5f * sb_rng_uniform(r) : 0.2f + 0.8f * sb_rng_uniform(r);
    float *x = d->x + (size_t)i * c->features;
    for (int ch = 0; ch < C; ch++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                int u = y - y0, v = xx - x0;
                int on = u >= 0 && u < s && v >= 0 && v < s && shape_covers(k, s, u, v);
                float px = on ? colour[ch % 3] : 0.0f;
                if (c->noise > 0.0f) px = px + c->noise * sb_rng_normal(r);
                x[((size_t)ch * H + y) * W + xx] = px;
            }
    d->y[i] = k;
}

/* ---- chars ---- */

char sb_chars_symbol(int id) {
    static const char sym[] = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#";
    return id >= 0 && id < (int)(sizeof sym - 1) ? sym[id] : '?';
}

#define CHARS_WORDS 48  /* lexicon size */
#define CHARS_NEXT 3    /* likely successors per word */
#define CHARS_MAXLEN 6  /* letters per word: 2..CHARS_MAXLEN */

/* Fills tok[0..n) with the corpus over V symbols, drawing from r in this
 * order: per lexicon word its length (2..6) and letters (1..V-1), then per
 * word its CHARS_NEXT successors, then the start word, then per word of the
 * walk one uniform u: u < noise picks a uniformly random next word (a second
 * draw), otherwise successor 0, 1 or 2 for u in the remaining mass split
 * 60/30/10. Every word is followed by the separator 0. */
static void make_corpus(sb_rng *r, int V, float noise, int32_t *tok, size_t n) {
    int32_t lex[CHARS_WORDS][CHARS_MAXLEN];
    int len[CHARS_WORDS], next[CHARS_WORDS][CHARS_NEXT];
    for (int w = 0; w < CHARS_WORDS; w++) {
        len[w] = 2 + (int)sb_rng_below(r, CHARS_MAXLEN - 1);
        for (int j = 0; j < len[w]; j++) lex[w][j] = 1 + (int32_t)sb_rng_below(r, (uint32_t)(V - 1));
    }
    for (int w = 0; w < CHARS_WORDS; w++)
        for (int j = 0; j < CHARS_NEXT; j++) next[w][j] = (int)sb_rng_below(r, CHARS_WORDS);
    int w = (int)sb_rng_below(r, CHARS_WORDS);
    size_t i = 0;
    while (i < n) {
        for (int j = 0; j < len[w] && i < n; j++) tok[i++] = lex[w][j];
        if (i < n) tok[i++] = 0;
        float u = sb_rng_uniform(r);
        if (u < noise) {
            w = (int)sb_rng_below(r, CHARS_WORDS);
        } else {
            float v = (u - noise) / (1.0f - noise);
            w = next[w][v < 0.6f ? 0 : v < 0.9f ? 1 : 2];
        }
    }
}

/* A file format: read it, and insist it still holds what the suite saw. */
static sb_dataset *dataset_from_files(const sb_data_config *c, sb_error *err) {
    sb_dataset *d = sb_dataset_read(c, c->classes, err);
    if (d && (d->samples != c->samples || d->features != c->features)) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: now holds %d samples of %d features, the run config "
                     "says %d of %d (did the file change?)", c->x_path, d->samples, d->features,
                     c->samples, c->features);
        sb_dataset_free(d);
        return NULL;
    }
    return d;
}

sb_dataset *sb_dataset_new(const sb_data_config *c, uint64_t seed, sb_error *err) {
    if (sb_data_kind_is_file(c->kind)) return dataset_from_files(c, err);
    sb_dataset *d = calloc(1, sizeof *d);
    float *centres = NULL;
    if (!d) goto nomem;
    d->samples = c->samples;
    d->features = c->features;
    d->classes = c->classes;
    d->x = malloc((size_t)c->samples * (size_t)c->features * sizeof(float));
    d->y = malloc((size_t)c->samples * sizeof(int32_t));
    if (!d->x || !d->y) goto nomem;

    sb_rng r;
    sb_rng_init(&r, seed, "data/source", 0);
    if (!strcmp(c->kind, "blobs")) {
        centres = malloc((size_t)c->classes * (size_t)c->features * sizeof(float));
        if (!centres) goto nomem;
        for (size_t i = 0; i < (size_t)c->classes * (size_t)c->features; i++)
            centres[i] = 3.0f * sb_rng_normal(&r);
        for (int i = 0; i < c->samples; i++) {
            int k = i % c->classes;
            d->y[i] = k;
            for (int f = 0; f < c->features; f++) {
                float z = sb_rng_normal(&r);
                d->x[(size_t)i * c->features + f] = centres[(size_t)k * c->features + f] + c->noise * z;
            }
        }
    } else if (!strcmp(c->kind, "spirals")) {
        if (c->features != 2) {
            sb_error_set(err, SB_ERR_ARG, "data.features: spirals are 2-D, got %d", c->features);
            goto fail;
        }
        for (int i = 0; i < c->samples; i++) {
            int k = i % c->classes;
            double t = sb_rng_uniform_double(&r);
            double angle = 6.283185307179586 * k / c->classes + 4.0 * t + c->noise * sb_rng_normal(&r);
            d->y[i] = k;
            d->x[(size_t)i * 2 + 0] = (float)(t * sin(angle));
            d->x[(size_t)i * 2 + 1] = (float)(t * cos(angle));
        }
    } else if (!strcmp(c->kind, "shapes")) {
        if (c->channels < 1 || c->height < 1 || c->width < 1 ||
            (size_t)c->features != (size_t)c->channels * c->height * c->width ||
            c->classes > SB_SHAPES_MAX) {
            sb_error_set(err, SB_ERR_ARG, "data: shapes need channels·height·width = features "
                         "and at most %d classes", SB_SHAPES_MAX);
            goto fail;
        }
        for (int i = 0; i < c->samples; i++) draw_shape(c, &r, i, d);
    } else if (!strcmp(c->kind, "chars")) {
        int T = c->features - 1;
        if (T < 1 || c->classes < 2 || c->classes > SB_CHARS_MAX_VOCAB ||
            !(c->noise >= 0.0f && c->noise < 1.0f)) {
            sb_error_set(err, SB_ERR_ARG, "data: chars need features = seq_len + 1 >= 2, a "
                         "vocabulary of 2..%d and noise in [0, 1)", SB_CHARS_MAX_VOCAB);
            goto fail;
        }
        size_t n = (size_t)c->samples * (size_t)T + 1;
        int32_t *tok = malloc(n * sizeof *tok);
        if (!tok) goto nomem;
        make_corpus(&r, c->classes, c->noise, tok, n);
        for (int i = 0; i < c->samples; i++) {
            const int32_t *w = tok + (size_t)i * T;
            for (int j = 0; j <= T; j++) d->x[(size_t)i * c->features + j] = (float)w[j];
            d->y[i] = w[T];
        }
        free(tok);
    } else {
        sb_error_set(err, SB_ERR_ARG, "data.kind: unknown dataset \"%s\"", c->kind);
        goto fail;
    }
    free(centres);
    return d;
nomem:
    sb_error_set(err, SB_ERR_NOMEM, "out of memory building the dataset");
fail:
    free(centres);
    sb_dataset_free(d);
    return NULL;
}

void sb_dataset_free(sb_dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->y);
    free(d);
}

void sb_epoch_order(const sb_data_config *c, uint64_t seed, int epoch, int32_t *order) {
    for (int i = 0; i < c->samples; i++) order[i] = i;
    if (c->shuffle == SB_SHUFFLE_NONE) return;
    sb_rng r;
    sb_rng_init(&r, seed, "data/shuffle", c->shuffle == SB_SHUFFLE_ONCE ? 0 : (uint64_t)epoch);
    /* Fisher–Yates from the end: position i swaps with a uniform j in [0, i]. */
    for (int i = c->samples - 1; i > 0; i--) {
        int j = (int)sb_rng_below(&r, (uint32_t)i + 1);
        int32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}
