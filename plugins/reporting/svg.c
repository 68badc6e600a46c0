/*
 * svg.c — the charts of the burndown, flow and activity reports, drawn here as SVG.
 *
 * One layout for all: an 800×400 viewBox drawn at width 100%, so it is sharp at 800×400
 * and shrinks to a phone's width with its proportions (labels are 14 units, the fewest
 * that stay legible at 360 px). Colours are Okabe and Ito's palette, chosen to stay
 * distinct under the common colour-vision deficiencies, and every series also has its own
 * dash pattern, so the chart reads in grey scale too. The document carries role="img",
 * a <title> and a <desc> that states each series' first, last and highest value in words,
 * for screen readers. Every piece of text passes through rbuf_xml.
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

void svg_render(rbuf_t *b, const chart_t *c)
{
    double max = 0;
    for (int i = 0; i < c->ndays; i++)
        for (int s = 0; s < c->nseries; s++)
            max = fmax(max, level(c, s, i));
    double step = nice_step(max), top = step * fmax(1, ceil(max / step));
#define YPOS(v) (Y1 - (Y1 - Y0) * (v) / top)

    rbuf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
                   "width=\"100%%\" preserveAspectRatio=\"xMidYMid meet\" role=\"img\" "
                   "aria-labelledby=\"chart-title chart-desc\" font-family=\"sans-serif\" "
                   "font-size=\"14\">\n<title id=\"chart-title\">", W, H);
    rbuf_xml(b, c->title);
    rbuf_puts(b, "</title>\n<desc id=\"chart-desc\">");
    describe(b, c);
    rbuf_printf(b, "</desc>\n<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
    rbuf_puts(b, "<text x=\"400\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" "
                 "font-weight=\"bold\">");
    rbuf_xml(b, c->title);
    rbuf_puts(b, "</text>\n<g class=\"y-axis\">\n");
    for (double v = 0; v <= top + step / 2; v += step) {
        double y = YPOS(v);
        rbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    X0, y, X1, y, X0 - 8, y + 5, v);
    }
    rbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000000\"/>\n"
                   "</g>\n<g class=\"x-axis\">\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                   "y2=\"%.1f\" stroke=\"#000000\"/>\n",
                X0, Y0, X0, Y1, X0, Y1, X1, Y1);
    int labels = c->ndays < 6 ? c->ndays : 6;
    for (int k = 0; k < labels; k++) {
        int i = labels > 1 ? (int)((int64_t)k * (c->ndays - 1) / (labels - 1)) : 0;
        double x = xpos(c, i);
        const char *anchor = labels == 1 ? "middle" : k == 0 ? "start" : k == labels - 1 ? "end"
                                                                                         : "middle";
        rbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000000\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">",
                    x, Y1, x, Y1 + 5, x, Y1 + 22, anchor);
        rbuf_xml(b, c->dates[i]);
        rbuf_puts(b, "</text>\n");
    }
    rbuf_puts(b, "</g>\n<g class=\"series\">\n");
    /* Stacked areas first (bottom series first), then every line over them. */
    for (int s = 0; c->stacked && s < c->nseries; s++) {
        rbuf_printf(b, "<polygon fill=\"%s\" fill-opacity=\"0.3\" points=\"", colours[s]);
        for (int i = 0; i < c->ndays; i++)
            rbuf_printf(b, "%.1f,%.1f ", xpos(c, i), YPOS(level(c, s, i)));
        for (int i = c->ndays - 1; i >= 0; i--)
            rbuf_printf(b, "%.1f,%.1f ", xpos(c, i), YPOS(s ? level(c, s - 1, i) : 0));
        rbuf_puts(b, "\"/>\n");
    }
    for (int s = 0; s < c->nseries; s++) {
        rbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"3\" "
                       "stroke-dasharray=\"%s\" stroke-linejoin=\"round\" points=\"",
                    colours[s], dashes[s]);
        for (int i = 0; i < c->ndays; i++)
            rbuf_printf(b, "%.1f,%.1f ", xpos(c, i), YPOS(level(c, s, i)));
        if (c->ndays == 1) /* one day: a short flat stroke, so it shows */
            rbuf_printf(b, "%.1f,%.1f", xpos(c, 0) + 6, YPOS(level(c, s, 0)));
        rbuf_puts(b, "\"/>\n");
    }
    rbuf_puts(b, "</g>\n<g class=\"legend\">\n");
    for (int s = 0; s < c->nseries; s++) {
        double x = X0 + (s % 5) * 142, y = 348 + (s / 5) * 24;
        rbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                       "stroke-width=\"3\" stroke-dasharray=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">",
                    x, y, x + 30, y, colours[s], dashes[s], x + 36, y + 5);
        rbuf_xml(b, c->labels[s]);
        rbuf_puts(b, "</text>\n");
    }
    rbuf_puts(b, "</g>\n</svg>\n");
#undef YPOS
}
