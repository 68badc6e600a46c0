/*
 * Built against the current header but stating it needs only SDK 1.1 (PX_MIN_MINOR 1):
 * its descriptor says 1.1, so a 1.1 host loads it too, and it calls a 1.2 function only
 * behind PX_HAS().
 *   GET /v1/minor1 -> {"descriptor_minor": 1, "has_task_begin": true, "is_task": 0,
 *                      "older_table_has_task_begin": false, "older_table_has_work": true}
 * The last two check PX_HAS's false branch against a table cut to the 1.1 size, as an
 * older host would hand over.
 */
#define PX_MIN_MINOR 1
#include <panthera/panthera.h>

static int init(px_plugin_t *self);
PX_PLUGIN("minor1", "1.0.0", init, NULL, NULL);

static int handler(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *out = json_object();
    json_object_set_new(out, "descriptor_minor", json_integer(px_plugin_info.abi_minor));
    int has = PX_HAS(task_begin);
    json_object_set_new(out, "has_task_begin", json_boolean(has));
    json_object_set_new(out, "is_task", has ? json_integer(px_req_is_task(req)) : json_null());
    px_api_t older = *px_api;
    older.size = offsetof(px_api_t, route_add); /* where the 1.1 table ended */
    const px_api_t *real = px_api;
    px_api = &older;
    int older_task = PX_HAS(task_begin), older_work = PX_HAS(work);
    px_api = real;
    json_object_set_new(out, "older_table_has_task_begin", json_boolean(older_task));
    json_object_set_new(out, "older_table_has_work", json_boolean(older_work));
    return px_res_json(req, 200, out);
}

static int init(px_plugin_t *self)
{
    return px_route(self, "GET", "/v1/minor1", handler, NULL);
}
