/* canonical_conv.c — canonical mode's convolution (docs/canonical.md §3.3):
 * the "ref" backend's canonical conv2d entries, the scalar statement of the
 * order, and the two-level canonical sum the bias gradient uses.
 *
 * What it is: ref_conv.c's loops with every multiply-accumulate one fmaf and
 * the bias gradient through the canonical tree; "blas" reaches the same bits
 * by im2col and the canonical GEMM (blas_conv.c). Pooling has no canonical
 * variant: its order (ref_conv.c) is already independent of any split.
 *
 * What it is not: fast; and not the deterministic-mode conv (ref_conv.c).
 */
#include "canonical.h"
#include "conv_internal.h"

#include <math.h>
#include <stddef.h>

/* The sequence x[o*stride + i] (o < outer, i < inner, o outer) cut into
 * blocks of SB_CANON_BLOCK consecutive elements of the sequence, each summed
 * sequentially from +0.0f, the block sums through the canonical tree. */
float sb_canon_sum_strided2(const float *x, size_t outer, size_t stride, size_t inner) {
    sb_canon_tree t;
    sb_canon_tree_init(&t);
    size_t fill = 0;
    float s = 0.0f;
    for (size_t o = 0; o < outer; o++) {
        const float *row = x + o * stride;
        for (size_t i = 0; i < inner; i++) {
            s = s + row[i];
            if (++fill == SB_CANON_BLOCK) {
                sb_canon_tree_push(&t, s);
                s = 0.0f;
                fill = 0;
            }
        }
    }
    if (fill) sb_canon_tree_push(&t, s);
    return sb_canon_tree_end(&t);
}

/* out[n,co,oy,ox] = acc + bias[co] (or acc when bias is NULL), overwriting.
 * Canonical order, per output element: the GEMM's blocked chain (§2,
 * sb_canon_chain) over ci = 0..cin-1, then ky = 0..kh-1, then kx = 0..kw-1
 * in increasing order, each step fmaf(w[co,ci,ky,kx], x, .), x = 0.0f at a
 * padded position (the step is still taken) — exactly the canonical GEMM's
 * chain over im2col's rows (ci, ky, kx). */
void sb_canon_ref_conv2d_forward(sb_backend *be, float *out, const float *inp, const float *weight,
                           const float *bias, const sb_conv2d_shape *s) {
    (void)be;
    sb_conv2d_check(s);
    const int OH = sb_conv2d_out_h(s), OW = sb_conv2d_out_w(s);
    const size_t hw = (size_t)s->h * (size_t)s->w;
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->cout; co++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    sb_canon_chain ch = SB_CANON_CHAIN_INIT;
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
                                sb_canon_chain_step(&ch, wk[(size_t)ky * (size_t)s->kw + (size_t)kx],
                                                    xv);
                            }
                        }
                    }
                    size_t o = (((size_t)n * (size_t)s->cout + (size_t)co) * (size_t)OH +
                                (size_t)oy) * (size_t)OW + (size_t)ox;
                    float acc = sb_canon_chain_end(&ch);
                    out[o] = bias ? acc + bias[co] : acc;
                }
}

/* Gradients in the canonical order, each element's sum formed from +0.0f and
 * then added once (dst = dst + sum); "chain" is the GEMM's blocked chain
 * (§2, sb_canon_chain):
 *   dweight[co,ci,ky,kx]: the chain over n = 0..N-1, then oy, then ox of
 *     fmaf(dout[n,co,oy,ox], x, .) (x = 0.0f at padding, step taken);
 *   dbias[co]: canon_sum of dout[n,co,:,:] over (n, oy, ox) in that order;
 *   dinp[n,ci,iy,ix]: for ky = 0..kh-1, then kx = 0..kw-1 increasing, when
 *     (iy + pad_h - ky) / stride_h = oy and (ix + pad_w - kx) / stride_w = ox
 *     are exact and inside the output: t = the chain of fmaf(w[co,ci,ky,kx],
 *     dout[n,co,oy,ox], .) over co = 0..cout-1, then s = s + t. */
void sb_canon_ref_conv2d_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
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
                    sb_canon_chain ch = SB_CANON_CHAIN_INIT;
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
                                sb_canon_chain_step(&ch, g[(size_t)oy * (size_t)OW + (size_t)ox], xv);
                            }
                        }
                    }
                    size_t wi = ((size_t)co * (size_t)s->cin + (size_t)ci) * kk +
                                (size_t)ky * (size_t)s->kw + (size_t)kx;
                    dweight[wi] = dweight[wi] + sb_canon_chain_end(&ch);
                }
        if (dbias) {
            dbias[co] = dbias[co] + sb_canon_sum_strided2(dout + (size_t)co * ohw, (size_t)s->n,
                                                          (size_t)s->cout * ohw, ohw);
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
                            sb_canon_chain t = SB_CANON_CHAIN_INIT;
                            for (int co = 0; co < s->cout; co++) {
                                float wv = weight[((size_t)co * (size_t)s->cin + (size_t)ci) * kk +
                                                  (size_t)ky * (size_t)s->kw + (size_t)kx];
                                float gv = dout[(((size_t)n * (size_t)s->cout + (size_t)co) *
                                                     (size_t)OH + (size_t)oy) * (size_t)OW +
                                                (size_t)ox];
                                sb_canon_chain_step(&t, wv, gv);
                            }
                            acc = acc + sb_canon_chain_end(&t);
                        }
                    }
                    size_t i = ((size_t)n * (size_t)s->cin + (size_t)ci) * hw +
                               (size_t)iy * (size_t)s->w + (size_t)ix;
                    dinp[i] = dinp[i] + acc;
                }
}
