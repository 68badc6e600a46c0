/*
 * task — projects, their members and activity (API.md, "Projects and tasks").
 *
 * This file holds the descriptor, init and the route table; the handlers are in
 * projects.c, members.c and activity.c, the gate they share in access.c (see task.h for
 * the map of the folder). The plugin needs the user plugin: members are rows of its
 * `users` table (migrations reference users(id)), so it is loaded first.
 */
#include <inttypes.h>

#include "task.h"

px_plugin_t *task_plugin;

extern const px_migration_t task_migrations[];

static int task_init(px_plugin_t *self)
{
    task_plugin = self;
#define ROUTE(m, p, fn, body, resp, text, q, pp)                                              \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = fn,              \
     .auth = PX_AUTH_REQUIRED, .request_schema = body, .responses = resp, .summary = text,   \
     .tag = "projects", .query = q, .params = pp}
#define GATED "404 for a project the caller is not a member of (admins see all)"
    static const px_response_spec_t project_201[] = {
        {201, "Project", "Created; the caller is its owner (Location)", NULL},
        {409, "Error", "The Idempotency-Key was used for another request", NULL}, {0}};
    static const px_response_spec_t project_200[] = {
        {200, "Project", "With ETag: \"<version>\" (If-None-Match: 304)", NULL},
        {403, "Error", "Not an owner (writes)", NULL},
        {404, "Error", GATED, NULL},
        {412, "Error", "If-Match names an older version (precondition_failed)", NULL}, {0}};
    static const px_response_spec_t project_list[] = {{200, "ProjectList", NULL, NULL}, {0}};
    static const px_response_spec_t done_204[] = {
        {204, NULL, NULL, NULL}, {403, "Error", "Not an owner", NULL}, {404, "Error", GATED, NULL},
        {409, "Error", "The last owner cannot be removed", NULL}, {0}};
    static const px_response_spec_t member_201[] = {
        {201, "Member", NULL, NULL}, {403, "Error", "Not an owner", NULL},
        {404, "Error", GATED, NULL}, {409, "Error", "Already a member", NULL}, {0}};
    static const px_response_spec_t member_200[] = {
        {200, "Member", NULL, NULL}, {403, "Error", "Not an owner", NULL},
        {404, "Error", GATED, NULL}, {409, "Error", "The last owner cannot be demoted", NULL},
        {0}};
    static const px_response_spec_t member_list[] = {
        {200, "MemberList", NULL, NULL}, {404, "Error", GATED, NULL}, {0}};
    static const px_response_spec_t activity_list_200[] = {
        {200, "ActivityList", "Newest first", NULL}, {404, "Error", GATED, NULL}, {0}};
#define PAGE_Q                                                                                \
    {"page", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1000000000, \"default\": 1}", \
     0, NULL},                                                                                  \
        {"limit", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100, \"default\": 10}", \
         0, NULL}
    static const px_param_spec_t page_q[] = {PAGE_Q, {NULL, NULL, 0, NULL}};
    static const px_param_spec_t projects_q[] = {
        PAGE_Q,
        {"status", "{\"type\": \"string\", \"enum\": [\"active\", \"archived\", \"completed\"]}",
         0, NULL},
        {"q", "{\"type\": \"string\", \"maxLength\": 200}", 0,
         "matches name and description, case-insensitively"},
        {NULL, NULL, 0, NULL}};
    /* An id that is not a uuid names nothing: 404, as for one that does not exist. */
#define UUID_P(n) {n, "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL}
    static const px_param_spec_t project_p[] = {UUID_P("id"), {NULL, NULL, 0, NULL}};
    static const px_param_spec_t member_p[] = {UUID_P("id"), UUID_P("userId"),
                                               {NULL, NULL, 0, NULL}};
    static const px_response_spec_t task_201[] = {
        {201, "Task", "Created at the end of its status column (Location)", NULL},
        {400, "Error", "Validation, an assignee who is not a member, a foreign dependency", NULL},
        {403, "Error", "A viewer", NULL}, {404, "Error", GATED, NULL},
        {409, "Error", "done while a dependency is open; Idempotency-Key reused", NULL}, {0}};
    static const px_response_spec_t task_200[] = {
        {200, "Task", "With ETag: \"<version>\" (If-None-Match: 304)", NULL},
        {403, "Error", "A viewer (writes)", NULL}, {404, "Error", GATED, NULL},
        {409, "Error", "A dependency cycle, or done while a dependency is open", NULL},
        {412, "Error", "If-Match names an older version", NULL}, {0}};
    static const px_response_spec_t task_204[] = {
        {204, NULL, NULL, NULL}, {403, "Error", "A viewer", NULL}, {404, "Error", GATED, NULL},
        {412, "Error", "If-Match names an older version", NULL}, {0}};
    static const px_response_spec_t task_list[] = {
        {200, "TaskList", NULL, NULL}, {404, "Error", GATED, NULL}, {0}};
    static const px_param_spec_t tasks_q[] = {
        PAGE_Q,
        {"status", "{\"type\": \"string\", \"enum\": [\"todo\", \"in_progress\", \"done\"]}", 0,
         NULL},
        {"assigneeId", "{\"type\": \"string\", \"format\": \"uuid\"}", 0, NULL},
        {"priority", "{\"type\": \"string\", \"enum\": [\"low\", \"medium\", \"high\"]}", 0, NULL},
        {"dueBefore", "{\"type\": \"string\", \"format\": \"date\"}", 0, "due strictly before"},
        {"dueAfter", "{\"type\": \"string\", \"format\": \"date\"}", 0, "due strictly after"},
        {"q", "{\"type\": \"string\", \"maxLength\": 200}", 0,
         "matches title and description, case-insensitively"},
        {"sort",
         "{\"type\": \"string\", \"enum\": [\"rank\", \"dueDate\", \"-updatedAt\", \"priority\"], "
         "\"default\": \"-updatedAt\"}",
         0, "rank: board order (todo, in_progress, done, each by rank)"},
        {NULL, NULL, 0, NULL}};
#define TASK_ROUTE(m, p, fn, body, resp, text, q)                                             \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = fn,              \
     .auth = PX_AUTH_REQUIRED, .request_schema = body, .responses = resp, .summary = text,   \
     .tag = "tasks", .query = q, .params = project_p}
    static const px_response_spec_t comment_201[] = {
        {201, "Comment", "Created (Location)", NULL}, {403, "Error", "A viewer", NULL},
        {404, "Error", GATED, NULL}, {0}};
    static const px_response_spec_t comment_200[] = {
        {200, "Comment", NULL, NULL}, {403, "Error", "Not the author", NULL},
        {404, "Error", GATED, NULL}, {412, "Error", "If-Match names an older version", NULL},
        {0}};
    static const px_response_spec_t comment_204[] = {
        {204, NULL, NULL, NULL}, {403, "Error", "Not the author, an owner or an admin", NULL},
        {404, "Error", GATED, NULL}, {0}};
    static const px_response_spec_t comment_list[] = {
        {200, "CommentList", "Oldest first", NULL}, {404, "Error", GATED, NULL}, {0}};
    static const px_param_spec_t comment_p[] = {UUID_P("id"), UUID_P("commentId"),
                                                {NULL, NULL, 0, NULL}};
#define COMMENT_ROUTE(m, p, fn, body, resp, text, q, pp)                                      \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = fn,              \
     .auth = PX_AUTH_REQUIRED, .request_schema = body, .responses = resp, .summary = text,   \
     .tag = "comments", .query = q, .params = pp}
    static const px_route_spec_t routes[] = {
        COMMENT_ROUTE("GET", "/v1/tasks/:id/comments", comments_list, NULL, comment_list,
                      "A task's comments (members)", page_q, project_p),
        COMMENT_ROUTE("POST", "/v1/tasks/:id/comments", comments_create, "CommentBody",
                      comment_201, "Comment; @username of a member mentions them "
                      "(members and owners; Idempotency-Key)", NULL, project_p),
        COMMENT_ROUTE("PUT", "/v1/tasks/:id/comments/:commentId", comments_update,
                      "CommentBody", comment_200, "Edit a comment (its author; If-Match)", NULL,
                      comment_p),
        COMMENT_ROUTE("DELETE", "/v1/tasks/:id/comments/:commentId", comments_delete, NULL,
                      comment_204, "Delete a comment (its author, an owner, an admin)", NULL,
                      comment_p),
        TASK_ROUTE("GET", "/v1/projects/:id/tasks", tasks_list, NULL, task_list,
                   "A project's tasks, filtered, sorted, paginated (members)", tasks_q),
        TASK_ROUTE("POST", "/v1/projects/:id/tasks", tasks_create, "TaskCreate", task_201,
                   "Create a task (members and owners; Idempotency-Key)", NULL),
        TASK_ROUTE("GET", "/v1/tasks/:id", tasks_get, NULL, task_200, "A task (members)", NULL),
        TASK_ROUTE("PUT", "/v1/tasks/:id", tasks_update, "TaskUpdate", task_200,
                   "Change a task (members and owners; If-Match)", NULL),
        TASK_ROUTE("DELETE", "/v1/tasks/:id", tasks_delete, NULL, task_204,
                   "Delete a task (members and owners)", NULL),
        TASK_ROUTE("POST", "/v1/tasks/:id/move", tasks_move, "TaskMove", task_200,
                   "Move a task on the board: {status?, before?, after?} (members and owners)",
                   NULL),
        ROUTE("GET", "/v1/projects", projects_list, NULL, project_list,
              "Projects the caller is a member of (admins: all)", projects_q, NULL),
        ROUTE("POST", "/v1/projects", projects_create, "ProjectCreate", project_201,
              "Create a project; the caller becomes its owner (Idempotency-Key)", NULL, NULL),
        ROUTE("GET", "/v1/projects/:id", projects_get, NULL, project_200,
              "A project (members)", NULL, project_p),
        ROUTE("PUT", "/v1/projects/:id", projects_update, "ProjectUpdate", project_200,
              "Change a project (owners; If-Match)", NULL, project_p),
        ROUTE("DELETE", "/v1/projects/:id", projects_delete, NULL, done_204,
              "Delete a project with everything in it (owners)", NULL, project_p),
        ROUTE("GET", "/v1/projects/:id/members", members_list, NULL, member_list,
              "The project's members (members)", page_q, project_p),
        ROUTE("POST", "/v1/projects/:id/members", members_add, "MemberAdd", member_201,
              "Add a member with a role (owners; Idempotency-Key)", NULL, project_p),
        ROUTE("PUT", "/v1/projects/:id/members/:userId", members_update, "MemberUpdate",
              member_200, "Change a member's role (owners)", NULL, member_p),
        ROUTE("DELETE", "/v1/projects/:id/members/:userId", members_remove, NULL, done_204,
              "Remove a member (owners)", NULL, member_p),
        ROUTE("GET", "/v1/projects/:id/activity", activity_list, NULL, activity_list_200,
              "The project's activity feed, newest first (members)", page_q, project_p),
    };
    px_config_declare(self, "rank_max_length", "32");
    int rc = px_config_int(self, "rank_max_length", &task_rank_max);
    if (!rc && (task_rank_max < 8 || task_rank_max > 255)) {
        px_log(self, PX_LOG_ERROR, "[plugin:task] rank_max_length = %s: expected 8 to 255",
               px_config_get(self, "rank_max_length"));
        rc = PX_EINVAL;
    }
    if (!rc)
        rc = px_hook_declare(self, "before_task_create",
                             "checks or changes a new task's fields, with context {projectId, "
                             "role, admin}");
    if (!rc)
        rc = px_hook_declare(self, "before_task_update",
                             "checks or changes a PUT /v1/tasks/{id}, with context {projectId, "
                             "taskId, role, admin, status, priority}");
    if (!rc)
        rc = px_migrations(self, task_migrations);
    if (!rc)
        rc = px_schema(self, NULL, task_schemas);
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = px_route_add(self, &routes[i]);
    return rc;
}

static const char *const task_depends[] = {"user", NULL};

PX_PLUGIN("task", "1.0.0", task_init, NULL, task_depends);
