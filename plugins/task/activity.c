/*
 * activity.c — GET /v1/projects/{id}/activity: the project's feed, newest first. The rows
 * are written by the statements that make the changes (store.c), in their transaction.
 */
#include "task.h"

const task_route_t activity_list = {
    .scope = SCOPE_PROJECT, .need = ROLE_VIEWER, .paged = true, .then = op_list,
    .list = sql_activity_list, .items = "activity"};
