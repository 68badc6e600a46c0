/* Claims GET /readyz, one of the host's own routes: the host registers its routes before
 * any plugin's, so this is a route clash every loader reports (-t, the migrator, the
 * workers), never a worker that aborts after loading it. */
#include <panthera/panthera.h>

static int handler(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200, json_pack("{s:s}", "owner", "claims_readyz"));
}

static int init(px_plugin_t *self)
{
    return px_route(self, "GET", "/readyz", handler, NULL);
}

PX_PLUGIN("claims_readyz", "1.0.0", init, NULL, NULL);
