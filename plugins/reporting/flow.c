/*
 * flow.c — GET /v1/reports/projects/{id}/flow: cumulative flow, the tasks in each status
 * at the end of every day. Charted as stacked areas, done at the bottom (the order of
 * the columns is the order of the stack).
 */
#include "reporting.h"

static const char *const columns[] = {"date", "done", "in_progress", "todo", NULL};
static const char *const labels[] = {"Done", "In progress", "To do"};

const report_kind_t report_flow = {
    .name = "flow", .title = "Cumulative flow", .project = true, .ranged = true, .svg = true,
    .sql_name = "flow", .sql = sql_flow, .columns = columns, .labels = labels,
    .stacked = true,
};
