/* Claims GET /v1/hello/:who, which the hello example already owns (as /v1/hello/:name). */
#include <panthera/panthera.h>

static int handler(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200, json_pack("{s:s}", "owner", "dup_route"));
}

static int init(px_plugin_t *self)
{
    return px_route(self, "GET", "/v1/hello/:who", handler, NULL);
}

static const char *const deps[] = {"hello", NULL};
PX_PLUGIN("dup_route", "1.0.0", init, NULL, deps);
