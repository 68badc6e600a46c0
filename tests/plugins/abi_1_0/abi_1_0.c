/*
 * Built against a frozen copy of the SDK 1.0 header (panthera/panthera.h beside this
 * file, never edited): the host of a newer minor must still load it and serve its route.
 *   GET /v1/abi10 -> {"abi": "1.0", "host_abi_minor": N}
 */
#include "panthera/panthera.h"

static int handler(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:s, s:i, s:b}", "abi", "1.0", "host_abi_minor",
                                 (int)px_api->abi_minor, "has_route", PX_HAS(route)));
}

static int init(px_plugin_t *self)
{
    return px_route(self, "GET", "/v1/abi10", handler, NULL);
}

PX_PLUGIN("abi_1_0", "1.0.0", init, NULL, NULL);
