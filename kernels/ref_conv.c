/* ref_conv.c — the "ref" backend's convolution and pooling (NCHW): plain
 * scalar loops, one fixed order per reduction, written next to it.
 *
 * What it is: the float32 oracle for conv2d (forward; input, weight and bias
 * gradients) and max/average pooling, in the style of ref.c: float
 * accumulators, -ffp-contract=off (every a*b+c is two roundings), no
 * threads, no SIMD. The pooling functions are also what every other mode and
 * backend runs (on ranges of (n,c) planes): pooling has no order that a split
 * could change, so they are the definition everywhere.
 *
 * What it is not: fast (direct loops, no im2col), nor canonical mode's conv
 * (canonical_conv.c, which uses fmaf). Shapes and the meaning of each op are
 * in kernels.h.
 */
#include "canonical.h"
#include "conv_internal.h"
#include "sb_clones.h"

#include <stddef.h>

void sb_conv2d_check(const sb_conv2d_shape *s) {
    SB_ASSERT(s->n >= 0 && s->cin >= 1 && s->h >= 1 && s->w >= 1);
    SB_ASSERT(s->cout >= 1 && s->kh >= 1 && s->kw >= 1);
    SB_ASSERT(s->stride_h >= 1 && s->stride_w >= 1 && s->pad_h >= 0 && s->pad_w >= 0);
    SB_ASSERT(s->h + 2 * s->pad_h >= s->kh && s->w + 2 * s->pad_w >= s->kw);
}

void sb_pool2d_check(const sb_pool2d_shape *s) {
    SB_ASSERT(s->n >= 0 && s->c >= 1 && s->h >= 1 && s->w >= 1);
    SB_ASSERT(s->kh >= 1 && s->kw >= 1 && s->stride_h >= 1 && s->stride_w >= 1);
    SB_ASSERT(s->pad_h >= 0 && s->pad_w >= 0 && 2 * s->pad_h <= s->kh && 2 * s->pad_w <= s->kw);
    SB_ASSERT(s->h + 2 * s->pad_h >= s->kh && s->w + 2 * s->pad_w >= s->kw);
}

/* ====================================================================== */
/* conv2d                                                                 */
/* ====================================================================== */

/* out[n,co,oy,ox] = acc + bias[co] (or acc when bias is NULL), overwriting.
 * Reduction order, per output element: acc from 0.0f; ci = 0..cin-1, then
 * ky = 0..kh-1, then kx = 0..kw-1 in increasing order, each step
 * acc = acc + w[co,ci,ky,kx] * x (product rounded, then the sum), x = 0.0f at
 * a padded position (the term is still added: Inf*0 gives NaN). */
void sb_ref_conv2d_forward(sb_backend *be, float *out, const float *inp, const float *weight,
                           const float *bias, const sb_conv2d_shape *s) {
    (void)be;
    sb_conv2d_check(s);
    const int OH = sb_conv2d_out_h(s), OW = sb_conv2d_out_w(s);
    const size_t hw = (size_t)s->h * (size_t)s->w;
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->cout; co++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    float acc = 0.0f;
                    for (int ci = 0; ci < s->cin; ci++) {
                        const float *x = inp + ((size_t)n * (size_t)s->cin + (size_t)ci) * hw;
                        const float *wk =
                            weight + (((size_t)co * (size_t)s->cin + (size_t)ci) * (size_t)s->kh) *
                                         (size_t)s->kw;
                        for (int ky = 0; ky < s->kh; ky++) {
                            int iy = oy * s->stride_h - s->pad_h + ky;
                            for (int kx = 0; kx < s->kw; kx++) {
                                int ix = ox * s->stride_w - s->pad_w + kx;
                                float xv = iy >= 0 && iy < s->h && ix >= 0 && ix < s->w
                                               ? x[(size_t)iy * (size_t)s->w + (size_t)ix]
                                               : 0.0f;
                                acc = acc + wk[(size_t)ky * (size_t)s->kw + (size_t)kx] * xv;
                            }
                        }
                    }
                    size_t o = (((size_t)n * (size_t)s->cout + (size_t)co) * (size_t)OH +
                                (size_t)oy) * (size_t)OW + (size_t)ox;
                    out[o] = bias ? acc + bias[co] : acc;
                }
}

/* Gradients, each element's sum formed from 0.0f and then added once:
 *   dweight[co,ci,ky,kx]: n = 0..N-1, then oy, then ox increasing, each step
 *     s = s + dout[n,co,oy,ox] * x (x = 0.0f at padding, the term still added);
 *   dbias[co]: n, then oy, then ox increasing, s = s + dout;
 *   dinp[n,ci,iy,ix]: for ky = 0..kh-1, then kx = 0..kw-1 increasing, when
 *     (iy + pad_h - ky) / stride_h = oy and (ix + pad_w - kx) / stride_w = ox
 *     are exact and inside the output: t = 0.0f, t = t + w[co,ci,ky,kx] *
 *     dout[n,co,oy,ox] for co = 0..cout-1 increasing, then s = s + t. */
void sb_ref_conv2d_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            const sb_conv2d_shape *s) {
    (void)be;
    sb_conv2d_check(s);
    const int OH = sb_conv2d_out_h(s), OW = sb_conv2d_out_w(s);
    const size_t hw = (size_t)s->h * (size_t)s->w, ohw = (size_t)OH * (size_t)OW;
    const size_t kk = (size_t)s->kh * (size_t)s->kw;
    for (int co = 0; co < s->cout; co++) {
        for (int ci = 0; ci < s->cin; ci++)
            for (int ky = 0; ky < s->kh; ky++)
                for (int kx = 0; kx < s->kw; kx++) {
                    float acc = 0.0f;
                    for (int n = 0; n < s->n; n++) {
                        const float *g = dout + ((size_t)n * (size_t)s->cout + (size_t)co) * ohw;
                        const float *x = inp + ((size_t)n * (size_t)s->cin + (size_t)ci) * hw;
                        for (int oy = 0; oy < OH; oy++) {
                            int iy = oy * s->stride_h - s->pad_h + ky;
                            for (int ox = 0; ox < OW; ox++) {
                                int ix = ox * s->stride_w - s->pad_w + kx;
                                float xv = iy >= 0 && iy < s->h && ix >= 0 && ix < s->w
                                               ? x[(size_t)iy * (size_t)s->w + (size_t)ix]
                                               : 0.0f;
                                acc = acc + g[(size_t)oy * (size_t)OW + (size_t)ox] * xv;
                            }
                        }
                    }
                    size_t wi = ((size_t)co * (size_t)s->cin + (size_t)ci) * kk +
                                (size_t)ky * (size_t)s->kw + (size_t)kx;
                    dweight[wi] = dweight[wi] + acc;
                }
        if (dbias) {
            float acc = 0.0f;
            for (int n = 0; n < s->n; n++) {
                const float *g = dout + ((size_t)n * (size_t)s->cout + (size_t)co) * ohw;
                for (size_t p = 0; p < ohw; p++) acc = acc + g[p];
            }
            dbias[co] = dbias[co] + acc;
        }
    }
    if (!dinp) return;
    for (int n = 0; n < s->n; n++)
        for (int ci = 0; ci < s->cin; ci++)
            for (int iy = 0; iy < s->h; iy++)
                for (int ix = 0; ix < s->w; ix++) {
                    float acc = 0.0f;
                    for (int ky = 0; ky < s->kh; ky++) {
                        int ty = iy + s->pad_h - ky;
                        if (ty < 0 || ty % s->stride_h != 0 || ty / s->stride_h >= OH) continue;
                        int oy = ty / s->stride_h;
                        for (int kx = 0; kx < s->kw; kx++) {
                            int tx = ix + s->pad_w - kx;
                            if (tx < 0 || tx % s->stride_w != 0 || tx / s->stride_w >= OW) continue;
                            int ox = tx / s->stride_w;
                            float t = 0.0f;
                            for (int co = 0; co < s->cout; co++) {
                                float wv = weight[((size_t)co * (size_t)s->cin + (size_t)ci) * kk +
                                                  (size_t)ky * (size_t)s->kw + (size_t)kx];
                                float gv = dout[(((size_t)n * (size_t)s->cout + (size_t)co) *
                                                     (size_t)OH + (size_t)oy) * (size_t)OW +
                                                (size_t)ox];
                                t = t + wv * gv;
                            }
                            acc = acc + t;
                        }
                    }
                    size_t i = ((size_t)n * (size_t)s->cin + (size_t)ci) * hw +
                               (size_t)iy * (size_t)s->w + (size_t)ix;
                    dinp[i] = dinp[i] + acc;
                }
}

/* ====================================================================== */
/* pooling: the definition for every mode and backend                     */
/* ====================================================================== */

/* The window of output (oy, ox) clipped to the input: rows [y0, y1), columns
 * [x0, x1). Never empty (pad <= kernel/2, checked). */
typedef struct window {
    int y0, y1, x0, x1;
} window;

static window window_of(const sb_pool2d_shape *s, int oy, int ox) {
    window wd;
    int ys = oy * s->stride_h - s->pad_h, xs = ox * s->stride_w - s->pad_w;
    wd.y0 = ys < 0 ? 0 : ys;
    wd.y1 = ys + s->kh > s->h ? s->h : ys + s->kh;
    wd.x0 = xs < 0 ? 0 : xs;
    wd.x1 = xs + s->kw > s->w ? s->w : xs + s->kw;
    return wd;
}

/* Index (in the plane) of the window's maximum: the first non-padded element
 * in (ky, kx) order, replaced by each later one that is greater or NaN.
 * Comparisons only: exact. */
static size_t argmax_of(const float *x, int w, window wd) {
    size_t best = (size_t)wd.y0 * (size_t)w + (size_t)wd.x0;
    float bv = x[best];
    for (int y = wd.y0; y < wd.y1; y++)
        for (int xx = wd.x0; xx < wd.x1; xx++) {
            size_t i = (size_t)y * (size_t)w + (size_t)xx;
            float v = x[i];
            if (v > bv || v != v) bv = v, best = i;
        }
    return best;
}

/* 2 x 2 windows with stride 2 and no padding (the CNN's pools): windows are
 * whole and disjoint, and argmax_of's comparisons — the first element, then
 * each later one in (ky, kx) order that is greater or NaN — are written out
 * for one row of outputs, as selects the compiler can vectorize (SB_CLONES:
 * comparisons and selects only, so every clone gives the same bits).
 * Measured: the CNN's pools took 40% of its canonical step through the
 * generic loops. */

static int is_max2x2(const sb_pool2d_shape *s) {
    return s->kh == 2 && s->kw == 2 && s->stride_h == 2 && s->stride_w == 2 && s->pad_h == 0 &&
           s->pad_w == 0;
}

SB_CLONES static void max2x2_forward_row(float *restrict o, const float *restrict r0,
                                           const float *restrict r1, int ow) {
    for (int ox = 0; ox < ow; ox++) {
        float bv = r0[2 * ox], v = r0[2 * ox + 1];
        bv = v > bv || v != v ? v : bv;
        v = r1[2 * ox];
        bv = v > bv || v != v ? v : bv;
        v = r1[2 * ox + 1];
        bv = v > bv || v != v ? v : bv;
        o[ox] = bv;
    }
}

/* The winner's gradient element gets one addition; the others are left as
 * they are (not + 0.0f, which would turn -0.0f into +0.0f). */
SB_CLONES static void max2x2_backward_row(float *restrict d0, float *restrict d1,
                                            const float *restrict r0, const float *restrict r1,
                                            const float *restrict g, int ow) {
    for (int ox = 0; ox < ow; ox++) {
        float bv = r0[2 * ox], v = r0[2 * ox + 1];
        int k = 0;
        if (v > bv || v != v) bv = v, k = 1;
        v = r1[2 * ox];
        if (v > bv || v != v) bv = v, k = 2;
        v = r1[2 * ox + 1];
        if (v > bv || v != v) k = 3;
        const float gv = g[ox];
        float a = d0[2 * ox], b = d0[2 * ox + 1], c = d1[2 * ox], d = d1[2 * ox + 1];
        d0[2 * ox] = k == 0 ? a + gv : a;
        d0[2 * ox + 1] = k == 1 ? b + gv : b;
        d1[2 * ox] = k == 2 ? c + gv : c;
        d1[2 * ox + 1] = k == 3 ? d + gv : d;
    }
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#include <immintrin.h>
/* The same rows with AVX-512 and masks: the CNN's rows hold 14 and 7
 * outputs, too short for the compiler's 16-wide loops (their scalar tails
 * ran). 16 outputs at a time: a row's 32 inputs in two masked loads, split
 * into even and odd columns by permutes (a = row 0 even, b = row 0 odd,
 * c = row 1 even, d = row 1 odd: the window's (ky, kx) order), then the
 * selects of max2x2_forward_row lane by lane. Lanes past the row are loaded
 * as 0 and never stored. */
__attribute__((target("avx512f"), always_inline)) static inline __mmask16 pool_mask(int n) {
    return (__mmask16)(n <= 0 ? 0u : n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

/* even (e = 1: odd) columns of the 2n inputs at r as n lanes */
__attribute__((target("avx512f"), always_inline)) static inline __m512
pool_cols(const float *r, int n, __m512i idx) {
    __m512 lo = _mm512_maskz_loadu_ps(pool_mask(2 * n), r);
    __m512 hi = _mm512_maskz_loadu_ps(pool_mask(2 * n - 16), r + 16);
    return _mm512_permutex2var_ps(lo, idx, hi);
}

/* v replaces bv where v > bv or v is NaN: the lanes where it does */
__attribute__((target("avx512f"), always_inline)) static inline __mmask16 pool_beats(__m512 v,
                                                                                     __m512 bv) {
    return _mm512_cmp_ps_mask(v, bv, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}

/* The window's winner per lane: its value (*bv) and its place k (0..3 in
 * the window's order; each later element that beats the current one takes
 * over, as in argmax_of). */
__attribute__((target("avx512f"), always_inline)) static inline __m512i
pool_winner(const float *p0, const float *p1, int n, __m512 *bv_out) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    __m512 bv = pool_cols(p0, n, ev);
    __m512i k = _mm512_setzero_si512();
    for (int j = 1; j < 4; j++) {
        __m512 v = pool_cols(j < 2 ? p0 : p1, n, j & 1 ? od : ev);
        __mmask16 m = pool_beats(v, bv);
        bv = _mm512_mask_mov_ps(bv, m, v);
        k = _mm512_mask_mov_epi32(k, m, _mm512_set1_epi32(j));
    }
    *bv_out = bv;
    return k;
}

__attribute__((target("avx512f"))) static void max2x2_forward_row_avx512(float *o, const float *r0,
                                                                        const float *r1, int ow) {
    for (int ox = 0; ox < ow; ox += 16) {
        int n = ow - ox < 16 ? ow - ox : 16;
        __m512 bv;
        (void)pool_winner(r0 + 2 * ox, r1 + 2 * ox, n, &bv);
        _mm512_mask_storeu_ps(o + ox, pool_mask(n), bv);
    }
}

/* Each row's elements 2*ox + (k & 1) of row k >> 1 get g[ox] added (masked:
 * the other elements are not written). */
__attribute__((target("avx512f"))) static void
max2x2_backward_row_avx512(float *d0, float *d1, const float *r0, const float *r1, const float *g,
                           int ow) {
    /* lane j of a row's 16 elements is output j/2 (first half) or 8 + j/2 */
    const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
    const __m512i par = _mm512_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
    const __m512i par1 = _mm512_add_epi32(par, _mm512_set1_epi32(2));
    for (int ox = 0; ox < ow; ox += 16) {
        int n = ow - ox < 16 ? ow - ox : 16;
        __m512 bv;
        __m512i k = pool_winner(r0 + 2 * ox, r1 + 2 * ox, n, &bv);
        __m512 gv = _mm512_maskz_loadu_ps(pool_mask(n), g + ox);
        for (int h = 0; h < 2; h++) { /* elements 0..15, then 16..31 of both rows */
            __m512i kk = _mm512_permutexvar_epi32(h ? dup_hi : dup_lo, k);
            __m512 gg = _mm512_permutexvar_ps(h ? dup_hi : dup_lo, gv);
            __mmask16 valid = pool_mask(2 * n - 16 * h);
            float *q0 = d0 + 2 * ox + 16 * h, *q1 = d1 + 2 * ox + 16 * h;
            __mmask16 w0 = valid & _mm512_cmpeq_epi32_mask(kk, par);
            __mmask16 w1 = valid & _mm512_cmpeq_epi32_mask(kk, par1);
            _mm512_mask_storeu_ps(q0, w0, _mm512_add_ps(_mm512_maskz_loadu_ps(w0, q0), gg));
            _mm512_mask_storeu_ps(q1, w1, _mm512_add_ps(_mm512_maskz_loadu_ps(w1, q1), gg));
        }
    }
}

/* The AVX-512 rows when the canonical kernels' path is AVX-512: the best
 * the CPU has, unless SB_CANONICAL_ISA names another (scalar, avx2), so
 * tests reach the portable rows on any machine. Read per call (a few pool
 * calls per step), so a test can switch it between calls. */
static int pool_avx512(void) {
    sb_canon_isa isa;
    if (sb_canon_isa_from_env(&isa, NULL) != SB_OK) isa = sb_canon_isa_best();
    return isa == SB_CANON_ISA_AVX512;
}
#define POOL_ROW(fn) (pool_avx512() ? fn##_avx512 : fn)
#else
#define POOL_ROW(fn) fn
#endif

void sb_ref_maxpool2d_forward(sb_backend *be, float *out, const float *inp,
                              const sb_pool2d_shape *s) {
    (void)be;
    sb_pool2d_check(s);
    const int OH = sb_pool2d_out_h(s), OW = sb_pool2d_out_w(s);
    const size_t planes = (size_t)s->n * (size_t)s->c, hw = (size_t)s->h * (size_t)s->w;
    if (is_max2x2(s)) {
        void (*row)(float *, const float *, const float *, int) = POOL_ROW(max2x2_forward_row);
        for (size_t p = 0; p < planes; p++)
            for (int oy = 0; oy < OH; oy++) {
                const float *r0 = inp + p * hw + (size_t)(2 * oy) * (size_t)s->w;
                row(out + (p * (size_t)OH + (size_t)oy) * (size_t)OW, r0, r0 + s->w, OW);
            }
        return;
    }
    for (size_t p = 0; p < planes; p++) {
        const float *x = inp + p * hw;
        float *o = out + p * (size_t)OH * (size_t)OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                o[(size_t)oy * (size_t)OW + (size_t)ox] = x[argmax_of(x, s->w, window_of(s, oy, ox))];
    }
}

/* Per plane, outputs in increasing (oy, ox) order, each doing
 * dinp[winner] = dinp[winner] + dout (one addition straight into dinp). */
void sb_ref_maxpool2d_backward(sb_backend *be, float *dinp, const float *dout, const float *inp,
                               const sb_pool2d_shape *s) {
    (void)be;
    sb_pool2d_check(s);
    const int OH = sb_pool2d_out_h(s), OW = sb_pool2d_out_w(s);
    const size_t planes = (size_t)s->n * (size_t)s->c, hw = (size_t)s->h * (size_t)s->w;
    if (is_max2x2(s)) { /* disjoint windows: the order of outputs does not matter */
        void (*row)(float *, float *, const float *, const float *, const float *, int) =
            POOL_ROW(max2x2_backward_row);
        for (size_t p = 0; p < planes; p++)
            for (int oy = 0; oy < OH; oy++) {
                size_t r = p * hw + (size_t)(2 * oy) * (size_t)s->w;
                row(dinp + r, dinp + r + s->w, inp + r, inp + r + s->w,
                    dout + (p * (size_t)OH + (size_t)oy) * (size_t)OW, OW);
            }
        return;
    }
    for (size_t p = 0; p < planes; p++) {
        const float *x = inp + p * hw;
        float *d = dinp + p * hw;
        const float *g = dout + p * (size_t)OH * (size_t)OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                size_t i = argmax_of(x, s->w, window_of(s, oy, ox));
                d[i] = d[i] + g[(size_t)oy * (size_t)OW + (size_t)ox];
            }
    }
}

/* Per output: sum from 0.0f over the window's non-padded elements, ky then kx
 * increasing, then one division by (float)(kh*kw) (count_include_pad). */
void sb_ref_avgpool2d_forward(sb_backend *be, float *out, const float *inp,
                              const sb_pool2d_shape *s) {
    (void)be;
    sb_pool2d_check(s);
    const int OH = sb_pool2d_out_h(s), OW = sb_pool2d_out_w(s);
    const size_t planes = (size_t)s->n * (size_t)s->c, hw = (size_t)s->h * (size_t)s->w;
    const float div = (float)(s->kh * s->kw);
    for (size_t p = 0; p < planes; p++) {
        const float *x = inp + p * hw;
        float *o = out + p * (size_t)OH * (size_t)OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                window wd = window_of(s, oy, ox);
                float acc = 0.0f;
                for (int y = wd.y0; y < wd.y1; y++)
                    for (int xx = wd.x0; xx < wd.x1; xx++)
                        acc = acc + x[(size_t)y * (size_t)s->w + (size_t)xx];
                o[(size_t)oy * (size_t)OW + (size_t)ox] = acc / div;
            }
    }
}

/* Per plane, outputs in increasing (oy, ox) order: g = dout / (float)(kh*kw),
 * then dinp[e] = dinp[e] + g for the window's non-padded elements e. */
void sb_ref_avgpool2d_backward(sb_backend *be, float *dinp, const float *dout,
                               const sb_pool2d_shape *s) {
    (void)be;
    sb_pool2d_check(s);
    const int OH = sb_pool2d_out_h(s), OW = sb_pool2d_out_w(s);
    const size_t planes = (size_t)s->n * (size_t)s->c, hw = (size_t)s->h * (size_t)s->w;
    const float div = (float)(s->kh * s->kw);
    for (size_t p = 0; p < planes; p++) {
        float *d = dinp + p * hw;
        const float *gp = dout + p * (size_t)OH * (size_t)OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                window wd = window_of(s, oy, ox);
                float g = gp[(size_t)oy * (size_t)OW + (size_t)ox] / div;
                for (int y = wd.y0; y < wd.y1; y++)
                    for (int xx = wd.x0; xx < wd.x1; xx++) {
                        size_t i = (size_t)y * (size_t)s->w + (size_t)xx;
                        d[i] = d[i] + g;
                    }
            }
    }
}
