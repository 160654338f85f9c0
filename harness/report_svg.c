/* report_svg.c — the charts of report.html, drawn as inline SVG: a line
 * chart (linear or log axes, several series overlaid) and the per-tensor
 * histogram of ULP distances.
 *
 * Output is plain SVG 1.1 elements with presentation attributes, so it
 * renders and prints without scripts or style sheets; every text is
 * escaped. Coordinates are printed with one decimal, so the same data
 * always gives the same bytes.
 *
 * Not here: choosing what to chart (report_html.c).
 */
#include "report.h"

#include <math.h>
#include <string.h>

#define W 560.0
#define H 250.0
#define ML 62.0 /* margins: left, right, top, bottom */
#define MR 14.0
#define MT 26.0
#define MB 38.0
#define MAX_POINTS 600 /* a polyline keeps at most this many points (evenly strided, last kept) */

typedef struct axis {
    int log;          /* log10 (y) or log2 (x) scale */
    double lo, hi;    /* in scale units */
    double p0, p1;    /* pixel range */
} axis;

static double to_scale(const axis *a, double v, int base2) {
    if (!a->log) return v;
    return base2 ? log2(v) : log10(v);
}

static double px(const axis *a, double v, int base2) {
    double s = to_scale(a, v, base2);
    if (s < a->lo) s = a->lo; /* zeros and tiny values on a log axis sit on its floor */
    double f = a->hi > a->lo ? (s - a->lo) / (a->hi - a->lo) : 0.5;
    return a->p0 + f * (a->p1 - a->p0);
}

/* A "nice" linear tick step (1, 2 or 5 times a power of ten) for about 5 ticks. */
static double nice_step(double span) {
    if (!(span > 0)) return 1;
    double raw = span / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v, int log, int base2) {
    if (log && base2) snprintf(buf, n, "%.0f", pow(2, v));
    else if (log) snprintf(buf, n, "1e%.0f", v);
    else snprintf(buf, n, "%.4g", fabs(v) < 1e-12 ? 0.0 : v);
}

/* Range of finite values (positive ones on a log axis); 0 when there is none. */
static int range_of(const sb_svg_series *s, int ns, int use_y, int log, double *lo, double *hi) {
    int any = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double v = use_y ? s[k].y[i] : s[k].x[i];
            if (!isfinite(v) || (log && v <= 0)) continue;
            if (!any || v < *lo) *lo = v;
            if (!any || v > *hi) *hi = v;
            any = 1;
        }
    return any;
}

static void set_axis(axis *a, double lo, double hi, int log, int base2) {
    a->log = log;
    if (log) {
        a->lo = floor(base2 ? log2(lo) : log10(lo));
        a->hi = ceil(base2 ? log2(hi) : log10(hi));
        if (a->hi <= a->lo) a->hi = a->lo + 1;
    } else {
        if (hi <= lo) lo -= 0.5, hi += 0.5;
        double st = nice_step(hi - lo);
        a->lo = floor(lo / st) * st;
        a->hi = ceil(hi / st) * st;
    }
}

static void ticks(sb_text *t, const axis *a, int vertical, int base2) {
    double step = a->log ? ceil((a->hi - a->lo) / 8) : nice_step(a->hi - a->lo);
    if (step <= 0) step = 1;
    for (int i = 0; i <= 40; i++) {
        double v = a->lo + i * step;
        if (v > a->hi + step * 1e-9) break;
        double f = a->hi > a->lo ? (v - a->lo) / (a->hi - a->lo) : 0.5;
        double p = a->p0 + f * (a->p1 - a->p0);
        char lab[32];
        fmt_tick(lab, sizeof lab, v, a->log, base2);
        if (vertical) {
            sb_text_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>",
                           ML, p, W - MR, p);
            sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\" fill=\"#444\">%s</text>\n",
                           ML - 5, p + 3.5, lab);
        } else {
            sb_text_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>",
                           p, MT, p, H - MB);
            sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\" fill=\"#444\">%s</text>\n",
                           p, H - MB + 14, lab);
        }
    }
}

void sb_svg_line_chart(sb_text *t, const char *title, const char *xlabel, const char *ylabel,
                       const sb_svg_series *s, int ns, int logx, int logy) {
    double xlo = 0, xhi = 0, ylo = 0, yhi = 0;
    /* a log axis needs positive values; without any, fall back to linear */
    if (logx && !range_of(s, ns, 0, 1, &xlo, &xhi)) logx = 0;
    if (logy && !range_of(s, ns, 1, 1, &ylo, &yhi)) logy = 0;
    int have = range_of(s, ns, 0, logx, &xlo, &xhi) && range_of(s, ns, 1, logy, &ylo, &yhi);
    sb_text_printf(t, "<svg viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
                   W, H, W, H);
    sb_text_puts(t, "<title>");
    sb_text_xml(t, title);
    sb_text_puts(t, "</title>\n<text x=\"8\" y=\"16\" font-size=\"12\" font-weight=\"600\" fill=\"#222\">");
    sb_text_xml(t, title);
    sb_text_puts(t, "</text>\n");
    if (!have) {
        sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#777\">no finite values to draw</text>\n</svg>\n",
                       W / 2, H / 2);
        return;
    }
    axis ax = {.p0 = ML, .p1 = W - MR}, ay = {.p0 = H - MB, .p1 = MT};
    set_axis(&ax, xlo, xhi, logx, 1);
    set_axis(&ay, ylo, yhi, logy, 0);
    ticks(t, &ay, 1, 0);
    ticks(t, &ax, 0, 1);
    sb_text_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
                   ML, MT, W - ML - MR, H - MT - MB);
    sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">",
                   (ML + W - MR) / 2, H - 6);
    sb_text_xml(t, xlabel);
    sb_text_printf(t, "%s</text>\n", logx ? " (log scale)" : "");
    sb_text_printf(t, "<text transform=\"translate(13 %.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">",
                   (MT + H - MB) / 2);
    sb_text_xml(t, ylabel);
    sb_text_printf(t, "%s</text>\n", logy ? " (log)" : "");
    int clamped = 0; /* values at or below the floor of a log y axis */
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++)
            if (logy && isfinite(s[k].y[i]) && (s[k].y[i] <= 0 || log10(s[k].y[i]) < ay.lo)) clamped++;
    if (clamped)
        sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#777\">values of 0 are drawn on the floor</text>\n",
                       ML + 6, H - MB - 6);
    for (int k = 0; k < ns; k++) {
        int stride = s[k].n > MAX_POINTS ? (s[k].n + MAX_POINTS - 1) / MAX_POINTS : 1;
        sb_text_printf(t, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\"%s%s%s points=\"",
                       s[k].color, s[k].width, s[k].dash ? " stroke-dasharray=\"" : "",
                       s[k].dash ? s[k].dash : "", s[k].dash ? "\"" : "");
        for (int i = 0; i < s[k].n; i++) {
            if (i % stride && i != s[k].n - 1) continue;
            double x = s[k].x[i], y = s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            sb_text_printf(t, "%.1f,%.1f ", px(&ax, x, 1), px(&ay, y, 0));
        }
        sb_text_puts(t, "\"><title>");
        sb_text_xml(t, s[k].label);
        sb_text_puts(t, "</title></polyline>\n");
        if (s[k].n <= 40)
            for (int i = 0; i < s[k].n; i++)
                if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
                    sb_text_printf(t, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\" fill=\"%s\"/>",
                                   px(&ax, s[k].x[i], 1), px(&ay, s[k].y[i], 0), s[k].color);
        if (ns < 2) continue; /* one series: the axis label says what it is */
        /* legend, top right, one row per series */
        double ly = MT + 12 + 14 * k;
        sb_text_printf(t, "\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.1f\"%s%s%s/>",
                       W - MR - 150, ly - 4, W - MR - 126, ly - 4, s[k].color, s[k].width,
                       s[k].dash ? " stroke-dasharray=\"" : "", s[k].dash ? s[k].dash : "",
                       s[k].dash ? "\"" : "");
        sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#222\">", W - MR - 120, ly);
        sb_text_xml(t, s[k].label);
        sb_text_puts(t, "</text>\n");
    }
    sb_text_puts(t, "</svg>\n");
}

/* ---- ULP histogram ---- */

#define HROW 30.0   /* per tensor */
#define HLAB 210.0  /* tensor-name column */
#define HRIGHT 120.0
#define HMAXROWS 32

/* Fill of bucket k: grey for equal, yellow to red as the distance grows, purple for NaN. */
static void bucket_color(int k, char *buf, size_t n) {
    if (k == 0) snprintf(buf, n, "#9e9e9e");
    else if (k == SB_REPORT_ULP_NAN) snprintf(buf, n, "#6a1b9a");
    else {
        double f = (k - 1) / 31.0;
        if (f > 1) f = 1;
        int g = (int)lround(190 - 170 * f), b = (int)lround(40 - 20 * f);
        snprintf(buf, n, "#%02x%02x%02x", 230, g, b);
    }
}

void sb_svg_ulp_hist(sb_text *t, const sb_report_hist *h, const char *title) {
    /* the title is the SVG's accessible name; the page shows it as a heading */
    int last = h->max_bucket < 1 ? 1 : h->max_bucket;
    int ncols = last + 1 + (h->has_nan ? 1 : 0);
    int rows = h->n < HMAXROWS ? h->n : HMAXROWS;
    double cw = (W + 120 - HLAB - HRIGHT) / ncols;
    if (cw > 22) cw = 22;
    double width = HLAB + cw * ncols + HRIGHT, height = 8 + HROW * rows + 44;
    sb_text_printf(t, "<svg viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
                   width, height, width, height);
    sb_text_puts(t, "<title>");
    sb_text_xml(t, title);
    sb_text_puts(t, "</title>\n");
    for (int r = 0; r < rows; r++) {
        const sb_report_hist_tensor *x = &h->t[r];
        double y0 = 8 + HROW * r, base = y0 + HROW - 4;
        char name[40];
        size_t nl = strlen(x->name);
        if (nl > 30) snprintf(name, sizeof name, "%.27s...", x->name);
        else snprintf(name, sizeof name, "%s", x->name);
        sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10.5\" fill=\"#222\">",
                       HLAB - 8, base - 6);
        sb_text_xml(t, name);
        sb_text_puts(t, "<title>");
        sb_text_xml(t, x->name);
        sb_text_puts(t, "</title></text>");
        sb_text_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\"/>\n",
                       HLAB, base, HLAB + cw * ncols, base);
        if (!x->elementwise) {
            sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#777\">not compared element by element (%s)</text>\n",
                           HLAB + 4, base - 6, x->dtype);
        } else {
            double full = log10(1.0 + (double)x->numel);
            for (int c = 0; c < ncols; c++) {
                int k = c <= last ? c : SB_REPORT_ULP_NAN;
                uint64_t cnt = x->bucket[k];
                if (!cnt) continue;
                double hgt = full > 0 ? (HROW - 8) * log10(1.0 + (double)cnt) / full : 0;
                if (hgt < 1.5) hgt = 1.5;
                char col[16];
                bucket_color(k, col, sizeof col);
                sb_text_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%llu elements</title></rect>",
                               HLAB + cw * c + 1, base - hgt, cw - 2, hgt, col,
                               (unsigned long long)cnt);
            }
        }
        sb_text_printf(t, "\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#444\">%llu / %llu differ</text>\n",
                       HLAB + cw * ncols + 8, base - 6, (unsigned long long)x->differing,
                       (unsigned long long)x->numel);
    }
    /* x axis: bucket k holds distances in [2^(k-1), 2^k); label its lower bound */
    double ya = 8 + HROW * rows + 14;
    int every = 1; /* label every column that has room for "2^10" */
    while (cw * every < 30) every *= 2;
    for (int c = 0; c < ncols; c++) {
        int k = c <= last ? c : SB_REPORT_ULP_NAN;
        if (k != SB_REPORT_ULP_NAN && c % every) continue;
        char lab[16];
        if (k == SB_REPORT_ULP_NAN) snprintf(lab, sizeof lab, "NaN");
        else if (k <= 10) snprintf(lab, sizeof lab, "%llu", k == 0 ? 0ULL : 1ULL << (k - 1));
        else snprintf(lab, sizeof lab, "2^%d", k - 1);
        sb_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9.5\" fill=\"#444\">%s</text>",
                       HLAB + cw * (c + 0.5), ya, lab);
    }
    sb_text_printf(t, "\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">ULP distance (bucket from its lower bound to twice it); bar height: log of the element count</text>\n",
                   HLAB + cw * ncols / 2, ya + 18);
    if (h->n > rows)
        sb_text_printf(t, "<text x=\"8\" y=\"%.1f\" font-size=\"10\" fill=\"#777\">(%d more tensors not drawn)</text>\n",
                       ya + 18, h->n - rows);
    sb_text_puts(t, "</svg>\n");
}
