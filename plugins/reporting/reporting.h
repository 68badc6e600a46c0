/*
 * reporting.h — the reporting plugin's shared declarations (API.md, "Reports").
 *
 * The folder: reporting.c (descriptor, init, route table), consumer.c (the event consumer
 * that writes the history), report.c (the request pipeline every report shares: range,
 * negotiation, access, cache, rendering), summary.c, burndown.c, flow.c, activity.c (what
 * differs per report), csv.c and svg.c (the two non-JSON renderings), buf.c (a growable
 * byte buffer), date.c (UTC calendar days), store.c (every SQL statement), rebuild.c
 * (`pantherad reporting:rebuild`), migrations/ (the log, the days, the report functions).
 */
#ifndef REPORTING_H
#define REPORTING_H

#include <panthera/panthera.h>
#include <stdbool.h>

extern px_plugin_t *reporting_plugin;
extern const char reporting_schemas[];
extern int64_t reporting_cache_ttl_s;

/* buf.c: bytes on the heap; aborts when memory runs out (as the host does). */
typedef struct rbuf {
    char *p;
    size_t len, cap;
} rbuf_t;
void rbuf_put(rbuf_t *b, const void *data, size_t n);
void rbuf_puts(rbuf_t *b, const char *s);
void rbuf_printf(rbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `s` with & < > " ' as XML entities. */
void rbuf_xml(rbuf_t *b, const char *s);
void rbuf_free(rbuf_t *b);

/* date.c: days since 1970-01-01 <-> "YYYY-MM-DD". parse returns 0 or -1 (not a real
 * date in that exact form). */
int date_parse(const char *s, int64_t *days);
void date_format(int64_t days, char out[11]);
int64_t date_today(void);

/* The three representations, in the order of the negotiation offers. */
enum report_format { FMT_JSON = 0, FMT_CSV = 1, FMT_SVG = 2 };

/* A chart for svg.c: one value per day per series. */
#define CHART_MAX_SERIES 6
typedef struct chart {
    const char *title;           /* plain text; escaped by svg.c */
    int ndays;
    char (*dates)[11];
    int nseries;
    const char *labels[CHART_MAX_SERIES];
    double *values[CHART_MAX_SERIES]; /* ndays each */
    bool stacked;                /* cumulative flow: series drawn as stacked areas */
} chart_t;
/* The SVG document of `c`, with <title>, a <desc> summarising every series, axes with
 * dates and values, and a legend. */
void svg_render(rbuf_t *out, const chart_t *c);

/* csv.c: RFC 4180 cells. A text cell that a spreadsheet would read as a formula (starts
 * with = + - @, tab, CR, LF or a full-width = + - @) gets a leading '. */
void csv_text(rbuf_t *b, const char *s);
void csv_number(rbuf_t *b, const json_t *v);
void csv_sep(rbuf_t *b);
void csv_eol(rbuf_t *b);
/* The rows of `days` (objects) under a header of `columns` ("date" first, a text cell;
 * the others numbers). */
void csv_days(rbuf_t *b, const json_t *days, const char *const *columns);

/* What differs per report. */
typedef struct report_kind {
    const char *name;                      /* "burndown": also the file name's start */
    const char *title;                     /* "Burndown": the chart's title */
    bool project;                          /* about the project in :id */
    bool ranged;                           /* ?from&to */
    bool svg;                              /* has a chart */
    const char *sql_name;
    const char *sql;                       /* ($1 project, or nothing), $2/$1 first day,
                                            * last day -> one jsonb value */
    const char *const *columns;            /* ranged: the keys of a day, "date" first */
    const char *const *labels;             /* chart series (columns[1..]) legend labels */
    bool stacked;
    void (*csv)(rbuf_t *b, const json_t *doc); /* NULL: csv_days over doc.days */
} report_kind_t;

extern const report_kind_t report_summary, report_burndown, report_flow, report_activity;
int report_handle(px_req_t *req, void *kind);
void summary_csv(rbuf_t *b, const json_t *doc);

/* consumer.c */
int consumer_init(px_plugin_t *self);

/* rebuild.c */
int rebuild_command(px_plugin_t *plugin, int argc, char **argv);

/* store.c */
extern const char sql_gate_project[], sql_gate_site[], sql_apply[], sql_rebuild[];
extern const char sql_summary[], sql_burndown[], sql_flow[], sql_activity[];

#endif
