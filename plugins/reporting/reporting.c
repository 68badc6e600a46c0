/*
 * reporting — summaries, burndown, cumulative flow and site activity, as JSON, CSV and
 * SVG charts (API.md, "Reports"). This file holds the descriptor, init and the route
 * table (see reporting.h for the map of the folder).
 *
 * Reports are answered from the plugin's own history, which the event consumer
 * (consumer.c) writes: never from the task plugin's tables, so a past day stays as it
 * was recorded. The plugin needs the task plugin (its events, and its activity rows for
 * reporting:rebuild) and [postgres]; [redis] is optional (the cache).
 */

#include "reporting.h"

px_plugin_t *reporting_plugin;
int64_t reporting_cache_ttl_s;

extern const px_migration_t reporting_migrations[];

#define CYCLE_DEF                                                                             \
    "Cycle time of a done task: from its first move to in_progress to its last move to "    \
    "done; a task reopened (moved out of done) counts from the first move to in_progress "  \
    "at or after its last reopening. Tasks that never passed through in_progress have "     \
    "none. medianSeconds and p85Seconds interpolate (percentile_cont)."
#define NEGOTIATION                                                                           \
    " Accept (with q-values) chooses application/json, text/csv (RFC 4180, CRLF, a header " \
    "row, an attachment; text cells that start like a formula are prefixed with ')"
#define CHARTED NEGOTIATION " or image/svg+xml (a chart); none acceptable: 406."
#define TABLED NEGOTIATION "; none acceptable: 406."
#define RANGE                                                                                 \
    " Days are UTC; from..to (both included) defaults to the 30 days up to today and may "  \
    "cover at most 366 days (400 otherwise)."

/* Each representation is its own 200 entry: the host merges entries of one status into
 * one response with several media types. The descriptions name them too, for readers of
 * the prose. */
static int reporting_init(px_plugin_t *self)
{
    reporting_plugin = self;
    static const px_param_spec_t project_p[] = {
        {"id", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL}, {NULL, NULL, 0, NULL}};
    static const px_param_spec_t range_q[] = {
        {"from", "{\"type\": \"string\", \"format\": \"date\"}", 0,
         "first UTC day (YYYY-MM-DD), included"},
        {"to", "{\"type\": \"string\", \"format\": \"date\"}", 0,
         "last UTC day (YYYY-MM-DD), included; default today"},
        {NULL, NULL, 0, NULL}};
#define GATED "404 for a project the caller is not a member of (admins see all)"
#define AS_CSV {200, "CsvTable", "As text/csv: one row per day under a header row", "text/csv"}
#define AS_SVG {200, "SvgChart", "As image/svg+xml: a chart of the days", "image/svg+xml"}
    static const px_response_spec_t summary_200[] = {
        {200, "Summary", "The project now, and its cycle time", NULL},
        {200, "CsvTable", "As text/csv: section, key, value rows", "text/csv"},
        {404, "Error", GATED, NULL}, {406, "Error", "Accept allows neither JSON nor CSV", NULL},
        {0}};
    static const px_response_spec_t days_200[] = {
        {200, "DaysReport", "One entry per day", NULL}, AS_CSV, AS_SVG,
        {404, "Error", GATED, NULL},
        {406, "Error", "Accept allows none of JSON, CSV, SVG", NULL}, {0}};
    static const px_response_spec_t activity_200[] = {
        {200, "ActivityReport", "One entry per day", NULL}, AS_CSV, AS_SVG,
        {403, "Error", "Not an admin", NULL},
        {406, "Error", "Accept allows none of JSON, CSV, SVG", NULL}, {0}};
#define REPORT(p, kind, who, q, pp, resp, text, desc)                                        \
    {.size = sizeof(px_route_spec_t), .method = "GET", .pattern = p, .handler = report_handle, \
     .userdata = (void *)&kind, .auth = PX_AUTH_REQUIRED, .role = who, .query = q,           \
     .params = pp, .responses = resp, .summary = text, .description = desc, .tag = "reports"}
    static const px_route_spec_t routes[] = {
        REPORT("/v1/reports/projects/:id/summary", report_summary, NULL, NULL, project_p,
               summary_200, "A project's summary (members)",
               "Tasks by status, by priority and by assignee, overdue (due before today, UTC, "
               "and not done), completion percent (done of all, one decimal). " CYCLE_DEF TABLED),
        REPORT("/v1/reports/projects/:id/burndown", report_burndown, NULL, range_q, project_p,
               days_200, "A project's burndown (members)",
               "Per day: scope (tasks that existed at the end of the day), done (of those, "
               "done) and remaining (the rest), from the recorded history of changes: a task "
               "added later raises the scope from its day on, never on earlier days." RANGE
                   CHARTED),
        REPORT("/v1/reports/projects/:id/flow", report_flow, NULL, range_q, project_p, days_200,
               "A project's cumulative flow (members)",
               "Per day: the tasks in each status (done, in_progress, todo) at the end of the "
               "day, from the recorded history of changes." RANGE CHARTED),
        REPORT("/v1/reports/activity", report_activity, "admin", range_q, NULL, activity_200,
               "Site activity per day (admins)",
               "Per day: sign-ups, published posts, comments on posts, tasks created and tasks "
               "moved to done, each counted on the UTC day of its event." RANGE CHARTED),
    };
    px_config_declare(self, "cache_ttl", "1h");
    int64_t ttl_ms = 0;
    int rc = px_config_duration_ms(self, "cache_ttl", &ttl_ms);
    if (!rc && (ttl_ms < 1000 || ttl_ms > 7LL * 86400 * 1000)) {
        px_log(self, PX_LOG_ERROR, "[plugin:reporting] cache_ttl = %s: expected 1s to 7d",
               px_config_get(self, "cache_ttl"));
        rc = PX_EINVAL;
    }
    reporting_cache_ttl_s = ttl_ms / 1000;
    if (!rc)
        rc = px_migrations(self, reporting_migrations);
    if (!rc)
        rc = px_schema(self, NULL, reporting_schemas);
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = px_route_add(self, &routes[i]);
    if (!rc)
        rc = px_command(self, "rebuild",
                        "reporting:rebuild - import the task history recorded before the "
                        "reporting plugin was enabled",
                        rebuild_command);
    if (!rc)
        rc = consumer_init(self);
    return rc;
}

static const char *const reporting_depends[] = {"task", NULL};

PX_PLUGIN("reporting", "1.0.0", reporting_init, NULL, reporting_depends);
