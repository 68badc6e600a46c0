/*
 * burndown.c — GET /v1/reports/projects/{id}/burndown: per day, the project's scope (the
 * tasks that existed at the end of the day), how many of them were done, and the rest.
 * From the daily changes of the transition log, so a task added today raises the scope
 * from today on and a past day never changes.
 */
#include "reporting.h"

static const char *const columns[] = {"date", "scope", "done", "remaining", NULL};
static const char *const labels[] = {"Scope", "Done", "Remaining"};

const report_kind_t report_burndown = {
    .name = "burndown", .title = "Burndown", .project = true, .ranged = true, .svg = true,
    .sql_name = "burndown", .sql = sql_burndown, .columns = columns, .labels = labels,
};
