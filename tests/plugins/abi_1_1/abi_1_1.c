/*
 * Built against a frozen copy of the SDK 1.1 header (panthera/panthera.h beside this
 * file, taken from commit 0cdc667 and never edited): a host of a newer minor must still
 * load it, hand it a table whose 1.1 slots are where it expects them, and serve it.
 *   GET /v1/abi11 -> {"abi": "1.1", "host_abi_minor": N, "has_work": true,
 *                     "host_table_larger": true, "job": "ran"}   (via px_work, a 1.1 call)
 */
#include "panthera/panthera.h"

static void job(void *ud)
{
    *(int *)ud = 1;
}

static void job_done(px_req_t *req, int status, void *ud)
{
    int *ran = ud;
    if (!req)
        return;
    px_res_json(req, status ? 503 : 200,
                json_pack("{s:s, s:i, s:b, s:b, s:s}", "abi", "1.1", "host_abi_minor",
                          (int)px_api->abi_minor, "has_work", PX_HAS(work),
                          "host_table_larger", px_api->size > sizeof(px_api_t), "job",
                          *ran ? "ran" : "not run"));
}

static int handler(px_req_t *req, void *ud)
{
    (void)ud;
    int *ran = px_req_alloc(req, sizeof(int));
    *ran = 0;
    int rc = px_work(req, job, job_done, ran);
    return rc ? rc : PX_ASYNC;
}

static int init(px_plugin_t *self)
{
    return px_route_auth(self, "GET", "/v1/abi11", handler, NULL, PX_AUTH_NONE, NULL);
}

PX_PLUGIN("abi_1_1", "1.1.0", init, NULL, NULL);
