/*
 * hooks.c — the Lua hook points before_task_create and before_task_update.
 *
 * A hook gets the request's fields (what the client sent) and a "context" object with
 * what a policy needs to decide: {projectId, role (the caller's in the project, null for
 * an admin who is not a member), admin, and for an update taskId, status, priority (the
 * task as it is)}. It may deny (its status and message are the answer) or `set` fields;
 * what it gives back is validated by the route's own schema, so a script cannot make the
 * plugin store what a client could not send. The hooks run after the gate, inside the
 * transaction, so the context is the locked, current state.
 */
#include <string.h>

#include "task.h"

int op_hook(task_op_t *op, const char *hook, const char *schema, const char *priority)
{
    json_t *value = json_deep_copy(op->body);
    json_t *ctx = json_pack("{s:s, s:s?, s:b}", "projectId", op->pid, "role", op->role, "admin",
                            op->admin);
    if (op->route->scope == SCOPE_TASK) {
        json_object_set_new(ctx, "taskId", json_string(op->tid));
        json_object_set_new(ctx, "status", json_string(op->status));
        json_object_set_new(ctx, "priority", priority ? json_string(priority) : json_null());
    }
    json_object_set_new(value, "context", ctx);
    int rc = px_hook_run(op->req, hook, &value);
    if (rc) {
        json_decref(value);
        return rc;
    }
    json_object_del(value, "context");
    json_t *fields = NULL;
    rc = px_schema_check(task_plugin, schema, value, &fields);
    if (rc) {
        json_decref(value);
        if (rc != PX_EINVAL)
            return PX_EINTERNAL;
        rc = px_res_error(op->req, 400, "validation_failed",
                          "the fields after the server's policy scripts are invalid", fields);
        return rc ? rc : PX_DONE;
    }
    /* The op keeps the changed body until the request ends (op_closed). */
    op->hooked = value;
    op->body = value;
    return 0;
}
