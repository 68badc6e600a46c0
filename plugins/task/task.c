/*
 * task — projects, members, tasks, comments, attachments, activity (API.md, "Projects and
 * tasks").
 *
 * This file holds the descriptor, init and the route table. Every route's handler is
 * op_route (access.c) with the route's pipeline (a task_route_t, declared beside its
 * steps in projects.c, members.c, tasks.c, ...) as userdata; see task.h for the map of
 * the folder. The plugin needs the user plugin: members are rows of its
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
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = op_route,        \
     .userdata = (void *)&fn,                                                                  \
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
        {200, "TaskList",
         "With ETag: \"<the project's list version>\", which every task write moves "
         "(If-None-Match: 304)",
         NULL},
        {404, "Error", GATED, NULL}, {0}};
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
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = op_route,        \
     .userdata = (void *)&fn,                                                                  \
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
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = op_route,        \
     .userdata = (void *)&fn,                                                                  \
     .auth = PX_AUTH_REQUIRED, .request_schema = body, .responses = resp, .summary = text,   \
     .tag = "comments", .query = q, .params = pp}
    static const px_response_spec_t attachment_201[] = {
        {201, "Attachment", "Stored (Location); the type is the sniffed one", NULL},
        {400, "Error", "Empty body; a filename that is missing or has control characters",
         NULL},
        {403, "Error", "A viewer", NULL}, {404, "Error", GATED, NULL},
        {413, "Error", "Larger than attachment_max_size", NULL},
        {415, "Error", "A type outside attachment_types, or not the declared one", NULL},
        {0}};
    static const px_response_spec_t attachment_list[] = {
        {200, "AttachmentList", "Oldest first", NULL}, {404, "Error", GATED, NULL}, {0}};
    static const px_response_spec_t attachment_200[] = {
        {200, NULL, "The file (ETag, one Range, nosniff, CSP sandbox, Content-Disposition)",
         "application/octet-stream"},
        {404, "Error", GATED, NULL}, {0}};
    static const px_response_spec_t attachment_204[] = {
        {204, NULL, NULL, NULL},
        {403, "Error", "Not the uploader, an owner or an admin", NULL},
        {404, "Error", GATED, NULL}, {0}};
    static const px_param_spec_t upload_q[] = {
        {"filename", "{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 255}", 1,
         "the file's name (its last path segment is kept; no control characters)"},
        {NULL, NULL, 0, NULL}};
#define ATTACHMENT_ROUTE(m, p, fn, resp, text, q)                                             \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = op_route,        \
     .userdata = (void *)&fn,                                                                  \
     .auth = PX_AUTH_REQUIRED, .responses = resp, .summary = text, .tag = "attachments",     \
     .query = q, .params = project_p}
    static const px_route_spec_t routes[] = {
        ATTACHMENT_ROUTE("GET", "/v1/tasks/:id/attachments", attachments_list, attachment_list,
                         "A task's attachments (members)", page_q),
        ATTACHMENT_ROUTE("POST", "/v1/tasks/:id/attachments", attachments_upload,
                         attachment_201, "Attach a file: the raw body with its Content-Type "
                         "and ?filename= (members and owners; Idempotency-Key)", upload_q),
        ATTACHMENT_ROUTE("GET", "/v1/attachments/:id", attachments_get, attachment_200,
                         "Download an attachment (members)", NULL),
        ATTACHMENT_ROUTE("DELETE", "/v1/attachments/:id", attachments_delete, attachment_204,
                         "Delete an attachment (its uploader, an owner, an admin)", NULL),
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
              "Add a member with a role, by userId or username (owners; Idempotency-Key)", NULL, project_p),
        ROUTE("PUT", "/v1/projects/:id/members/:userId", members_update, "MemberUpdate",
              member_200, "Change a member's role (owners)", NULL, member_p),
        ROUTE("DELETE", "/v1/projects/:id/members/:userId", members_remove, NULL, done_204,
              "Remove a member (owners)", NULL, member_p),
        ROUTE("GET", "/v1/projects/:id/activity", activity_list, NULL, activity_list_200,
              "The project's activity feed, newest first (members)", page_q, project_p),
    };
    px_config_declare(self, "rank_max_length", "32");
    px_config_declare(self, "attachment_max_size", "25m");
    px_config_declare(self, "attachment_types",
                      "image/png, image/jpeg, image/gif, image/webp, application/pdf, "
                      "text/plain, text/csv, application/zip, application/json");
    px_config_declare(self, "release_interval", "60s");
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
        rc = attachments_config(self);
    if (!rc)
        rc = listcache_config(self);
    if (!rc)
        rc = generation_init(self);
    int64_t interval = 0;
    if (!rc)
        rc = px_config_duration_ms(self, "release_interval", &interval);
    if (!rc && interval < 100) {
        px_log(self, PX_LOG_ERROR, "[plugin:task] release_interval must be at least 100ms");
        rc = PX_EINVAL;
    }
    task_release_interval_ms = (uint64_t)interval;
    if (!rc)
        rc = px_on_worker_start(self, task_release_start, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, task_release_stop, NULL);
    if (!rc)
        rc = px_migrations(self, task_migrations);
    if (!rc)
        rc = px_schema(self, NULL, task_schemas);
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++) {
        px_route_spec_t spec = routes[i];
        if (spec.userdata == &attachments_upload) {
            /* The limit is checked on Content-Length, before the body is read. */
            spec.max_body = (size_t)attachment_max_size;
            spec.spool_above = 1024 * 1024;
            spec.content_types = attachment_types;
        }
        rc = px_route_add(self, &spec);
    }
    return rc;
}

static const char *const task_depends[] = {"user", NULL};

PX_PLUGIN("task", "1.0.0", task_init, NULL, task_depends);
