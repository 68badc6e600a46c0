/*
 * summary.c — GET /v1/reports/projects/{id}/summary: the project now (tasks by status,
 * priority and assignee, overdue, completion) and its cycle time (README.md defines it:
 * first move to in_progress, counted from the last reopening, to the last move to done;
 * median and 85th percentile, interpolated). No chart; as CSV it is a table of
 * (section, key, value) rows.
 */
#include "reporting.h"

static void row(rbuf_t *b, const char *section, const char *key, const json_t *value)
{
    csv_text(b, section);
    csv_sep(b);
    csv_text(b, key);
    csv_sep(b);
    if (json_is_string(value))
        csv_text(b, json_string_value(value));
    else
        csv_number(b, value);
    csv_eol(b);
}

void summary_csv(rbuf_t *b, const json_t *doc)
{
    static const char *const totals[] = {"total", "overdue", "completionPercent"};
    static const char *const groups[] = {"byStatus", "byPriority"};
    csv_text(b, "section");
    csv_sep(b);
    csv_text(b, "key");
    csv_sep(b);
    csv_text(b, "value");
    csv_eol(b);
    row(b, "project", "id", json_object_get(doc, "projectId"));
    row(b, "project", "name", json_object_get(doc, "name"));
    row(b, "project", "asOf", json_object_get(doc, "asOf"));
    for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++)
        row(b, "tasks", totals[i], json_object_get(doc, totals[i]));
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)json_object_get(doc, groups[g]), key, v)
            row(b, groups[g], key, v);
    }
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(doc, "byAssignee"), i, a) {
        const json_t *id = json_object_get(a, "assigneeId");
        row(b, "byAssignee", json_is_string(id) ? json_string_value(id) : "unassigned",
            json_object_get(a, "count"));
    }
    const json_t *ct = json_object_get(doc, "cycleTime");
    row(b, "cycleTime", "tasks", json_object_get(ct, "tasks"));
    row(b, "cycleTime", "medianSeconds", json_object_get(ct, "medianSeconds"));
    row(b, "cycleTime", "p85Seconds", json_object_get(ct, "p85Seconds"));
}

const report_kind_t report_summary = {
    .name = "summary", .title = "Summary", .project = true, .ranged = false, .svg = false,
    .sql_name = "summary", .sql = sql_summary, .csv = summary_csv,
};
