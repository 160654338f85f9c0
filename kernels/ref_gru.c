/* ref_gru.c — the elementwise step of a GRU cell (PyTorch's nn.GRU, gate
 * order r, z, n): the "ref" backend's entries for every mode, and the row
 * loops "blas" (blas_gru.c) runs on its workers.
 *
 * What it is: the oracle for gru_forward and gru_backward, in the style of
 * ref.c — float arithmetic, -ffp-contract=off (every a*b+c two roundings
 * unless written as fmaf), no threads. One set of formulas serves every
 * mode: `canonical` switches exp and tanh to sb_canon_expf/sb_canon_tanhf
 * and the three a*b+c steps to fmaf (docs/canonical.md §3.7); its rows run
 * through loops the compiler vectorizes and the array forms of exp and tanh
 * (the same operations per element; test_canonical_pinned pins the bits). Nothing is
 * summed across elements, so every output depends on its own (b, j) alone:
 * any split of the rows gives these bits.
 *
 * What it is not: the GRU layer. The GEMMs that make gi and gh, and that
 * carry dgi, dgh back to x, h_prev and the weights, are the engine's.
 */
#include "canonical.h"
#include "gru_internal.h"
#include "sb_clones.h"

#include <math.h>
#include <stddef.h>

/* σ(x) without overflow: exp only ever sees -|x| <= 0, so its result is in
 * (0, 1] and never inf. x >= 0: 1/(1 + e^-x); x < 0: e^x/(1 + e^x). Both are
 * σ exactly in real arithmetic; σ(+inf) = 1, σ(-inf) = 0, NaN stays NaN (the
 * comparison is false and exp(NaN) is NaN). */
static float sigmoid(float x, int canonical) {
    if (x >= 0.0f) {
        float e = canonical ? sb_canon_expf(-x) : expf(-x);
        return 1.0f / (1.0f + e);
    }
    float e = canonical ? sb_canon_expf(x) : expf(x);
    return e / (1.0f + e);
}

/* canonical rows: the loops vectorize, with the explicit fmaf one FMA
 * instruction (SB_FMA_CLONES: an "avx2" clone alone has no FMA and called
 * libm's fmaf per element) */
#define GRU_CHUNK 128

/* One row of the canonical forward, GRU_CHUNK columns at a time: the gates'
 * arguments into a buffer, σ's exp and tanh through the array forms of
 * sb_canon_expf / sb_canon_tanhf (the scalar function's bits on any path),
 * the rest elementwise. Per element exactly sigmoid(·, 1), sb_canon_tanhf and
 * the fmaf steps of the scalar loop below. */
SB_FMA_CLONES
static void gru_forward_row_canon(float *ho, float *sr, float *sz,
                                  float *sn, float *sc, const float *a,
                                  const float *c, const float *hp, size_t uH) {
    const sb_canon_isa isa = sb_canon_math_isa();
    float u[2 * GRU_CHUNK], w[2 * GRU_CHUNK], g[2 * GRU_CHUNK], t[GRU_CHUNK];
    for (size_t j0 = 0; j0 < uH; j0 += GRU_CHUNK) {
        size_t len = uH - j0 < GRU_CHUNK ? uH - j0 : GRU_CHUNK;
        for (size_t j = 0; j < len; j++) {
            u[j] = a[j0 + j] + c[j0 + j];                   /* r's argument */
            u[len + j] = a[uH + j0 + j] + c[uH + j0 + j];   /* z's */
        }
        /* σ(x): e = exp(x >= 0 ? -x : x); x >= 0 ? 1/(1 + e) : e/(1 + e) */
        for (size_t j = 0; j < 2 * len; j++) w[j] = u[j] >= 0.0f ? -u[j] : u[j];
        sb_canon_expf_n(isa, w, w, 2 * len);
        for (size_t j = 0; j < 2 * len; j++)
            g[j] = u[j] >= 0.0f ? 1.0f / (1.0f + w[j]) : w[j] / (1.0f + w[j]);
        for (size_t j = 0; j < len; j++) t[j] = fmaf(g[j], c[2 * uH + j0 + j], a[2 * uH + j0 + j]);
        sb_canon_tanhf_n(isa, t, t, len);
        for (size_t j = 0; j < len; j++) {
            const float r = g[j], z = g[len + j], n = t[j], cn = c[2 * uH + j0 + j];
            ho[j0 + j] = fmaf(z, hp[j0 + j] - n, n);
            sr[j0 + j] = r, sz[j0 + j] = z, sn[j0 + j] = n, sc[j0 + j] = cn;
        }
    }
}

/* Per (b, j), j < H, independent of every other element (kernels.h):
 *   r = σ(a_r + c_r);  z = σ(a_z + c_z);
 *   n = tanh(a_n + r*c_n)         canonical: tanh(fmaf(r, c_n, a_n))
 *   h = n + z*(h_prev - n)        canonical: fmaf(z, h_prev - n, n)
 * with a = gi[b, gate*H + j], c = gh[b, gate*H + j]; saved row b is
 * (r, z, n, c_n), H floats each. */
void sb_ref_gru_forward(sb_backend *be, float *h, float *saved, const float *gi, const float *gh,
                        const float *h_prev, int B, int H) {
    SB_ASSERT(B >= 0 && H >= 1);
    const int canonical = be->mode == SB_MODE_CANONICAL;
    const size_t uH = (size_t)H;
    for (int b = 0; b < B; b++) {
        const float *a = gi + (size_t)b * 3 * uH, *c = gh + (size_t)b * 3 * uH;
        const float *hp = h_prev + (size_t)b * uH;
        float *ho = h + (size_t)b * uH;
        float *sr = saved + (size_t)b * 4 * uH, *sz = sr + uH, *sn = sz + uH, *sc = sn + uH;
        if (canonical) {
            gru_forward_row_canon(ho, sr, sz, sn, sc, a, c, hp, uH);
            continue;
        }
        for (size_t j = 0; j < uH; j++) {
            const float r = sigmoid(a[j] + c[j], canonical);
            const float z = sigmoid(a[uH + j] + c[uH + j], canonical);
            const float cn = c[2 * uH + j];
            float n, hv;
            if (canonical) {
                n = sb_canon_tanhf(fmaf(r, cn, a[2 * uH + j]));
                hv = fmaf(z, hp[j] - n, n);
            } else {
                n = tanhf(a[2 * uH + j] + r * cn);
                hv = n + z * (hp[j] - n);
            }
            ho[j] = hv;
            sr[j] = r, sz[j] = z, sn[j] = n, sc[j] = cn;
        }
    }
}

/* One row of the canonical backward: the scalar loop's canonical steps,
 * vectorizable (no transcendental, no branch per element). */
SB_FMA_CLONES
static void gru_backward_row_canon(float *di, float *dc, float *dp,
                                   const float *sr, const float *hp, const float *g, size_t uH) {
    const float *sz = sr + uH, *sn = sz + uH, *sc = sn + uH;
    for (size_t j = 0; j < uH; j++) {
        const float r = sr[j], z = sz[j], n = sn[j], cn = sc[j], d = g[j];
        const float dn = d * (1.0f - z);
        const float dz = d * (hp[j] - n);
        const float dan = dn * fmaf(-n, n, 1.0f);
        const float dar = (dan * (r * (1.0f - r))) * cn;
        const float daz = dz * (z * (1.0f - z));
        di[j] = dar, di[uH + j] = daz, di[2 * uH + j] = dan;
        dc[j] = dar, dc[uH + j] = daz, dc[2 * uH + j] = dan * r;
    }
    if (dp)
        for (size_t j = 0; j < uH; j++) dp[j] = fmaf(g[j], sz[j], dp[j]);
}

/* Per (b, j), from the saved (r, z, n, c_n), h_prev and dh (kernels.h):
 *   dn = dh*(1 - z);  dz = dh*(h_prev - n);
 *   dan = dn*(1 - n*n)            canonical: dn*fmaf(-n, n, 1)
 *   dar = (dan*(r*(1 - r)))*c_n;  daz = dz*(z*(1 - z));
 * (dar multiplies by c_n last: a saturated r gives r*(1 - r) = 0 and
 * dar = 0, never 0 * an overflowed dan*c_n = NaN).
 *   dgi = (dar, daz, dan), dgh = (dar, daz, dan*r)   (overwritten)
 *   dh_prev = dh_prev + dh*z      canonical: fmaf(dh, z, dh_prev)
 * (dh_prev NULL: skipped). */
void sb_ref_gru_backward(sb_backend *be, float *dgi, float *dgh, float *dh_prev, const float *dh,
                         const float *saved, const float *h_prev, int B, int H) {
    SB_ASSERT(B >= 0 && H >= 1);
    const int canonical = be->mode == SB_MODE_CANONICAL;
    const size_t uH = (size_t)H;
    for (int b = 0; b < B; b++) {
        const float *sr = saved + (size_t)b * 4 * uH, *sz = sr + uH, *sn = sz + uH, *sc = sn + uH;
        const float *hp = h_prev + (size_t)b * uH, *g = dh + (size_t)b * uH;
        float *di = dgi + (size_t)b * 3 * uH, *dc = dgh + (size_t)b * 3 * uH;
        float *dp = dh_prev ? dh_prev + (size_t)b * uH : NULL;
        if (canonical) {
            gru_backward_row_canon(di, dc, dp, sr, hp, g, uH);
            continue;
        }
        for (size_t j = 0; j < uH; j++) {
            const float r = sr[j], z = sz[j], n = sn[j], cn = sc[j], d = g[j];
            const float dn = d * (1.0f - z);
            const float dz = d * (hp[j] - n);
            const float dan = canonical ? dn * fmaf(-n, n, 1.0f) : dn * (1.0f - n * n);
            const float dar = (dan * (r * (1.0f - r))) * cn;
            const float daz = dz * (z * (1.0f - z));
            di[j] = dar, di[uH + j] = daz, di[2 * uH + j] = dan;
            dc[j] = dar, dc[uH + j] = daz, dc[2 * uH + j] = dan * r;
            if (dp) dp[j] = canonical ? fmaf(d, z, dp[j]) : dp[j] + d * z;
        }
    }
}
