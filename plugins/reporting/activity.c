/*
 * activity.c — GET /v1/reports/activity (admins): per day, sign-ups (user.registered),
 * published posts (post.published), comments on posts (post.commented), tasks created
 * (task.created) and tasks moved to done (task.status_changed to done, or created done),
 * each counted on the UTC day of its event. Counters only grow: deleting a post later
 * does not rewrite the day it was published.
 */
#include "reporting.h"

static const char *const columns[] = {"date", "signups", "posts", "comments", "tasksCreated",
                                      "tasksDone", NULL};
static const char *const labels[] = {"Sign-ups", "Posts", "Comments", "Tasks created",
                                     "Tasks done"};

const report_kind_t report_activity = {
    .name = "activity", .title = "Activity", .project = false, .ranged = true, .svg = true,
    .sql_name = "activity", .sql = sql_activity, .columns = columns, .labels = labels,
};
