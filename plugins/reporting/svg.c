/*
 * svg.c — the charts of the burndown, flow and activity reports, drawn here as SVG.
 *
 * Two layouts in one document. The 800×400 viewBox is drawn at width 100%, so at 800×400
 * it is sharp with 14-unit labels. Shown narrower than NARROW_PX CSS pixels (a phone: the
 * console's <img>, or the file opened directly) those labels would be 6 to 7 px tall, so a
 * <style> with a media query on the image's own viewport switches to the narrow rules:
 * 28-unit labels (12 px at 345 px wide), the title on two lines, fewer date labels (the
 * others carry class "xo" and are hidden), value labels inside the plot above their
 * gridlines, the plot squeezed vertically to make room, and the legend in two columns.
 * Everything is positioned in C and the narrow positions are CSS transforms, so a
 * renderer without media queries (rsvg-convert) simply draws the 800×400 layout.
 *
 * Date labels never overlap, at either size and any number of days: a label's width is
 * estimated from its characters at CHAR_EM em each (more than any glyph of the digits and
 * hyphens of a date in the usual sans-serif fonts), and the count is the largest whose
 * evenly spaced labels keep a gap of one em; the narrow set is a subset of those.
 *
 * Colours are Okabe and Ito's palette, chosen to stay distinct under the common
 * colour-vision deficiencies, and every series also has its own dash pattern, so the
 * chart reads in grey scale too. The document carries role="img", a <title> and a <desc>
 * that states each series' first, last and highest value in words, for screen readers.
 * Every piece of text passes through rbuf_xml.
 */
#include <math.h>
#include <string.h>

#include "reporting.h"

#define W 800
#define H 400
#define X0 64.0
#define X1 776.0
#define Y0 48.0  /* top of the plot */
#define Y1 300.0 /* bottom of the plot: the date axis */
#define FONT 14.0
#define CHAR_EM 0.65
#define BOLD_EM 1.1 /* bold glyphs run about a tenth wider */
#define MAX_XLABELS 12

/* The narrow rules (units of the viewBox; at 345 px wide one unit is 0.43 px). Rows are
 * spaced so that no two texts' full boxes (ascent 0.93 em over the baseline, descent
 * 0.24 em under it, as a browser measures them, rounded out to whole pixels) meet. */
#define NARROW_PX 560
#define NFONT 28.0        /* axis and legend labels */
#define NTITLE 24.0       /* the title's first line (baseline 24), at most */
#define NRANGE 24.0       /* its second line, the date range (baseline 55), at most */
#define NY0 96.0          /* top of the plot: its top value label clears the title */
#define NROW 35.0         /* legend row pitch */
#define NLAST_ROW 391.0   /* baseline of the last legend row */
#define NXLABEL 30.0      /* date labels' baseline under the axis */
#define NXGAP 36.0        /* from their baseline to the first legend row's */
#define NCOL_X 24.0       /* the legend's two columns */
#define NCOL_W 388.0

static const char *const colours[CHART_MAX_SERIES] = {"#0072B2", "#E69F00", "#009E73",
                                                      "#CC79A7", "#D55E00", "#56B4E9"};
static const char *const dashes[CHART_MAX_SERIES] = {"none", "8 4", "2 4", "10 4 2 4",
                                                     "4 4", "1 3"};

/* A round step (1, 2 or 5 × 10^k) giving about five gridlines up to `max`. */
static double nice_step(double max)
{
    if (max <= 5)
        return 1;
    double raw = max / 5, mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static double xpos(const chart_t *c, int i)
{
    return c->ndays > 1 ? X0 + (X1 - X0) * i / (c->ndays - 1) : (X0 + X1) / 2;
}

/* The value a series' line is drawn at: stacked series sit on the ones before them. */
static double level(const chart_t *c, int s, int i)
{
    double v = 0;
    for (int k = c->stacked ? 0 : s; k <= s; k++)
        v += c->values[k][i];
    return v;
}

/* Characters (UTF-8 code points) of `s`, up to `n` bytes. */
static int chars(const char *s, size_t n)
{
    int count = 0;
    for (size_t i = 0; i < n && s[i]; i++)
        count += ((unsigned char)s[i] & 0xC0) != 0x80;
    return count;
}

/* The date labels: day indices, text anchors, and the horizontal extent each takes. */
typedef struct xlabels {
    int n, day[MAX_XLABELS];
    bool narrow[MAX_XLABELS]; /* also shown under the narrow rules */
} xlabels_t;

static const char *anchor_of(int k, int n)
{
    return n == 1 ? "middle" : k == 0 ? "start" : k == n - 1 ? "end" : "middle";
}

/* [*l, *r] of label k of n at `font`, with half an em of margin on each side. */
static void xbox(const chart_t *c, const xlabels_t *xl, int k, double font, double *l, double *r)
{
    double x = xpos(c, xl->day[k]);
    double w = chars(c->dates[xl->day[k]], sizeof(c->dates[0])) * CHAR_EM * font;
    const char *a = anchor_of(k, xl->n);
    *l = (a[0] == 's' ? x : a[0] == 'e' ? x - w : x - w / 2) - font / 2;
    *r = *l + w + font;
}

/* The most evenly spaced labels (first and last day included) that do not overlap at
 * FONT, then the greedy subset of them that does not overlap at NFONT. */
static void choose_xlabels(const chart_t *c, xlabels_t *xl)
{
    for (xl->n = c->ndays < MAX_XLABELS ? c->ndays : MAX_XLABELS; xl->n >= 1; xl->n--) {
        bool fits = true;
        double pr = -1e9, l, r;
        for (int k = 0; k < xl->n; k++) {
            xl->day[k] = xl->n > 1 ? (int)((int64_t)k * (c->ndays - 1) / (xl->n - 1)) : 0;
            xbox(c, xl, k, FONT, &l, &r);
            fits = fits && l >= pr;
            pr = r;
        }
        if (fits)
            break;
    }
    double last_l = 1e9, last_r, kept_r = -1e9, l, r;
    if (xl->n > 1)
        xbox(c, xl, xl->n - 1, NFONT, &last_l, &last_r);
    for (int k = 0; k < xl->n; k++) {
        xbox(c, xl, k, NFONT, &l, &r);
        bool last = k == xl->n - 1;
        xl->narrow[k] = l >= kept_r && (last || r <= last_l);
        if (xl->narrow[k])
            kept_r = r;
    }
}

static void describe(rbuf_t *b, const chart_t *c)
{
    rbuf_printf(b, "%s, %s to %s (%d days). ", "Daily values", c->dates[0],
                c->dates[c->ndays - 1], c->ndays);
    for (int s = 0; s < c->nseries; s++) {
        int top = 0;
        for (int i = 1; i < c->ndays; i++)
            if (c->values[s][i] > c->values[s][top])
                top = i;
        rbuf_xml(b, c->labels[s]);
        rbuf_printf(b, ": %g on %s, %g on %s, highest %g on %s. ", c->values[s][0], c->dates[0],
                    c->values[s][c->ndays - 1], c->dates[c->ndays - 1], c->values[s][top],
                    c->dates[top]);
    }
}

/* The title on two lines for the narrow rules: before and after its last ", " (the date
 * range), each at most its size and smaller when a long project name would not fit. */
static void narrow_title(rbuf_t *b, rbuf_t *css, const char *title)
{
    const char *cut = NULL;
    for (const char *p = strstr(title, ", "); p; p = strstr(p + 1, ", "))
        cut = p;
    size_t n1 = cut ? (size_t)(cut - title) : strlen(title);
    char first[256];
    snprintf(first, sizeof(first), "%.*s", (int)n1, title);
    const char *second = cut ? cut + 2 : "";
    double f1 = fmin(NTITLE, (W - 40) / (fmax(1, chars(first, n1)) * CHAR_EM * BOLD_EM));
    double f2 = fmin(NRANGE, (W - 40) / (fmax(1, chars(second, strlen(second))) * CHAR_EM));
    rbuf_printf(css, ".t1{font-size:%.1fpx}.t2{font-size:%.1fpx;font-weight:normal}", f1, f2);
    rbuf_puts(b, "<text class=\"title-narrow\" display=\"none\" text-anchor=\"middle\" "
                 "font-weight=\"bold\"><tspan class=\"t1\" x=\"400\" y=\"24\">");
    rbuf_xml(b, first);
    rbuf_puts(b, "</tspan><tspan class=\"t2\" x=\"400\" y=\"55\">");
    rbuf_xml(b, second);
    rbuf_puts(b, "</tspan></text>\n");
}

void svg_render(rbuf_t *b, const chart_t *c)
{
    double max = 0;
    for (int i = 0; i < c->ndays; i++)
        for (int s = 0; s < c->nseries; s++)
            max = fmax(max, level(c, s, i));
    double step = nice_step(max), top = step * fmax(1, ceil(max / step));
#define YPOS(v) (Y1 - (Y1 - Y0) * (v) / top)
    /* The narrow layout, from the bottom up: the legend's rows, the date labels above
     * them, the plot between those and the title. */
    int rows = (c->nseries + 1) / 2;
    double first_row = NLAST_ROW - (rows - 1) * NROW;
    double ny1 = fmin(Y1, first_row - NXGAP - NXLABEL), sy = (ny1 - NY0) / (Y1 - Y0);
#define NYPOS(y) (NY0 + ((y) - Y0) * sy)
    rbuf_t body = {0}, css = {0};
    rbuf_printf(&css, "text{font-size:%.0fpx}.title{display:none}.title-narrow{display:inline}"
                      ".plot{transform-origin:0 0;transform:matrix(1,0,0,%.4f,0,%.2f)}"
                      ".x-labels text{transform:translate(0px,%.1fpx)}.x-labels .xo{display:none}"
                      ".y-labels text{text-anchor:start;paint-order:stroke;stroke:#ffffff;"
                      "stroke-width:6px;stroke-linejoin:round}"
                      ".legend line{transform:translate(0px,-5px)}",
                NFONT, sy, NY0 - Y0 * sy, ny1 + NXLABEL - (Y1 + 22));

    rbuf_printf(&body, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
    rbuf_puts(&body, "<text class=\"title\" x=\"400\" y=\"28\" text-anchor=\"middle\" "
                     "font-size=\"16\" font-weight=\"bold\">");
    rbuf_xml(&body, c->title);
    rbuf_puts(&body, "</text>\n");
    narrow_title(&body, &css, c->title);

    /* Everything drawn in plot coordinates: squeezed as one under the narrow rules. */
    rbuf_puts(&body, "<g class=\"plot\">\n<g class=\"y-axis\">\n");
    for (double v = 0; v <= top + step / 2; v += step)
        rbuf_printf(&body, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                           "stroke=\"#dddddd\"/>\n", X0, YPOS(v), X1, YPOS(v));
    rbuf_printf(&body, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                       "stroke=\"#000000\"/>\n</g>\n<g class=\"x-axis\">\n"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                       "stroke=\"#000000\"/>\n",
                X0, Y0, X0, Y1, X0, Y1, X1, Y1);
    xlabels_t xl;
    choose_xlabels(c, &xl);
    for (int k = 0; k < xl.n; k++) {
        double x = xpos(c, xl.day[k]);
        rbuf_printf(&body, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                           "stroke=\"#000000\"%s/>\n",
                    x, Y1, x, Y1 + 5, xl.narrow[k] ? "" : " class=\"xo\"");
    }
    rbuf_puts(&body, "</g>\n<g class=\"series\">\n");
    /* Stacked areas first (bottom series first), then every line over them. */
    for (int s = 0; c->stacked && s < c->nseries; s++) {
        rbuf_printf(&body, "<polygon fill=\"%s\" fill-opacity=\"0.3\" points=\"", colours[s]);
        for (int i = 0; i < c->ndays; i++)
            rbuf_printf(&body, "%.1f,%.1f ", xpos(c, i), YPOS(level(c, s, i)));
        for (int i = c->ndays - 1; i >= 0; i--)
            rbuf_printf(&body, "%.1f,%.1f ", xpos(c, i), YPOS(s ? level(c, s - 1, i) : 0));
        rbuf_puts(&body, "\"/>\n");
    }
    for (int s = 0; s < c->nseries; s++) {
        rbuf_printf(&body, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"3\" "
                           "stroke-dasharray=\"%s\" stroke-linejoin=\"round\" points=\"",
                    colours[s], dashes[s]);
        for (int i = 0; i < c->ndays; i++)
            rbuf_printf(&body, "%.1f,%.1f ", xpos(c, i), YPOS(level(c, s, i)));
        if (c->ndays == 1) /* one day: a short flat stroke, so it shows */
            rbuf_printf(&body, "%.1f,%.1f", xpos(c, 0) + 6, YPOS(level(c, s, 0)));
        rbuf_puts(&body, "\"/>\n");
    }
    rbuf_puts(&body, "</g>\n</g>\n");

    /* Labels are outside the squeezed group (text must not be squashed): each moves on
     * its own under the narrow rules. Values go inside the plot, over their gridline. */
    rbuf_puts(&body, "<g class=\"y-labels\" text-anchor=\"end\">\n");
    /* In the squeezed plot gridlines may be closer than a row: label every stride-th. */
    double pitch = (ny1 - NY0) * step / top;
    int stride = pitch >= NROW ? 1 : (int)ceil(NROW / pitch);
    rbuf_puts(&css, ".y-labels .yo{display:none}");
    int j = 0;
    for (double v = 0; v <= top + step / 2; v += step, j++) {
        double y = YPOS(v);
        rbuf_printf(&css, ".yv%d{transform:translate(14px,%.1fpx)}", j, NYPOS(y) - 6 - (y + 5));
        rbuf_printf(&body, "<text class=\"yv%d%s\" x=\"%.1f\" y=\"%.1f\">%g</text>\n", j,
                    j % stride ? " yo" : "", X0 - 8, y + 5, v);
    }
    rbuf_puts(&body, "</g>\n<g class=\"x-labels\">\n");
    for (int k = 0; k < xl.n; k++) {
        rbuf_printf(&body, "<text%s x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">",
                    xl.narrow[k] ? "" : " class=\"xo\"", xpos(c, xl.day[k]), Y1 + 22,
                    anchor_of(k, xl.n));
        rbuf_xml(&body, c->dates[xl.day[k]]);
        rbuf_puts(&body, "</text>\n");
    }
    rbuf_puts(&body, "</g>\n<g class=\"legend\">\n");
    for (int s = 0; s < c->nseries; s++) {
        double x = X0 + (s % 5) * 142, y = 348 + (s / 5) * 24;
        double nx = NCOL_X + (s % 2) * NCOL_W, nbase = first_row + (s / 2) * NROW;
        rbuf_printf(&css, ".lg%d{transform:translate(%.1fpx,%.1fpx)}", s, nx - x,
                    nbase - (y + 5));
        rbuf_printf(&body, "<g class=\"lg%d\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                           "y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\" stroke-dasharray=\"%s\"/>"
                           "<text x=\"%.1f\" y=\"%.1f\">",
                    s, x, y, x + 30, y, colours[s], dashes[s], x + 36, y + 5);
        rbuf_xml(&body, c->labels[s]);
        rbuf_puts(&body, "</text></g>\n");
    }
    rbuf_puts(&body, "</g>\n</svg>\n");

    rbuf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
                   "width=\"100%%\" preserveAspectRatio=\"xMidYMid meet\" role=\"img\" "
                   "aria-labelledby=\"chart-title chart-desc\" font-family=\"sans-serif\" "
                   "font-size=\"%.0f\">\n<title id=\"chart-title\">", W, H, FONT);
    rbuf_xml(b, c->title);
    rbuf_puts(b, "</title>\n<desc id=\"chart-desc\">");
    describe(b, c);
    /* Inside the media query, one rule per moved element; `max-width` is the width the
     * image is drawn at (its own viewport), not the page's. */
    rbuf_printf(b, "</desc>\n<style>@media (max-width: %dpx) {", NARROW_PX);
    rbuf_put(b, css.p, css.len);
    rbuf_puts(b, "}</style>\n");
    rbuf_put(b, body.p, body.len);
    rbuf_free(&css);
    rbuf_free(&body);
#undef NYPOS
#undef YPOS
}
