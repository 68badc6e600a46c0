/*
 * events.c — the events of PLUGINS.md ("Task plugin events"), emitted with px_event_emit
 * in the transaction of the change they describe, just before it commits.
 *
 * A handler queues its events on the op (op_event) and ends with op_finish. Every
 * payload carries "members", the project's members after the change ([{userId, role}]),
 * so a consumer knows who may see it: op_finish reads them in the same transaction,
 * after the change (or takes op->members, read by the change's own statement), and fills
 * in every queued payload that does not carry its own (a
 * deleted project's events carry the members as they were before). A payload with a
 * "projectName" of null gets the project's name the same way.
 */
#include <string.h>

#include "task.h"

void op_event(task_op_t *op, const char *type, const char *aggregate, json_t *payload)
{
    if (!op->events)
        op->events = json_array();
    json_object_set_new(payload, "actorId", json_string(op->caller));
    json_array_append_new(op->events,
                          json_pack("{s:s, s:s, s:o}", "type", type, "aggregate", aggregate,
                                    "payload", payload));
}

static int commit(task_op_t *op)
{
    json_t *body = op->answer;
    op->answer = NULL;
    if (op->answer_status == 204)
        return op_commit_204(op);
    return op_commit(op, op->answer_status, body);
}

/* Emits the queued events with the project's `name` and `members` (taken), then commits. */
static int emit_with(task_op_t *op, const char *name, json_t *members)
{
    size_t i;
    json_t *ev;
    int rc = 0;
    json_array_foreach(op->events, i, ev) {
        json_t *payload = json_object_get(ev, "payload");
        if (!json_object_get(payload, "members"))
            json_object_set_new(payload, "members",
                                members ? json_incref(members) : json_array());
        json_t *pn = json_object_get(payload, "projectName");
        if (pn && json_is_null(pn) && name)
            json_object_set_new(payload, "projectName", json_string(name));
        if (!rc)
            rc = px_event_emit(op->txn, json_string_value(json_object_get(ev, "type")),
                               json_string_value(json_object_get(ev, "aggregate")),
                               json_incref(payload));
    }
    json_decref(members);
    json_decref(op->events);
    op->events = NULL;
    if (rc)
        return px_res_code(op->req, PX_EINTERNAL, "the change's event could not be recorded");
    return commit(op);
}

static int emit_all(task_op_t *op, const px_pg_result_t *res)
{
    return emit_with(op, px_pg_value(res, 0, 0), op_json(res, 0, 1));
}

int op_finish(task_op_t *op, int status, json_t *body)
{
    op->answer_status = status;
    op->answer = body;
    json_t *members = op->members;
    op->members = NULL;
    if (!op->events || !json_array_size(op->events)) {
        json_decref(members);
        return commit(op);
    }
    /* The change's statement read the members already (a move, a PUT): one round trip
     * less under the project's lock. */
    if (members)
        return emit_with(op, NULL, members);
    const char *values[] = {op->pid};
    return op_query(op, "event_members", sql_event_members, 1, values, emit_all);
}
