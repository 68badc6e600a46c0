/*
 * revokekit — exercises px_token_revoke (SDK 1.3; tests/api/test_token_revocation.py).
 * Never in production: anyone may revoke anyone here.
 *
 *   POST /v1/revokekit/revoke  {"sub", "rollback"?}  one transaction that revokes `sub`'s
 *        access tokens, then commits (204) or, with "rollback": true, rolls back (200)
 *   GET  /v1/revokekit/misuse  {"outside": code of px_token_revoke(NULL, "a"),
 *        "empty": ..., "too_long": ... (64 bytes), "longest": ... (63 bytes, rolled back)}
 */
#include <panthera/panthera.h>
#include <string.h>

static void committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err)
        px_res_pg_error(req, err);
    else
        px_res_send(req, 204, NULL, "", 0);
}

static void rolled_back(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err)
        px_res_pg_error(req, err);
    else
        px_res_json(req, 200, json_pack("{s:b}", "rolledBack", 1));
}

static void revoke_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    json_t *body = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    int rc = px_token_revoke(txn, json_string_value(json_object_get(body, "sub")));
    if (rc) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_error(req, 400, "validation_failed", "px_token_revoke refused the sub", NULL);
        return;
    }
    if (json_is_true(json_object_get(body, "rollback")))
        px_pg_rollback(txn, rolled_back, NULL);
    else
        px_pg_commit(txn, committed, NULL);
}

static int revoke(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    if (!json_is_string(json_object_get(body, "sub")))
        return px_res_error(req, 400, "validation_failed", "sub is required", NULL);
    rc = px_pg_begin(req, revoke_begun, body);
    return rc ? rc : PX_ASYNC;
}

static void misuse_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    char too_long[65], longest[64];
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    memset(longest, 'b', 63);
    longest[63] = '\0';
    json_t *out = json_object();
    json_object_set_new(out, "outside", json_integer(px_token_revoke(NULL, "a")));
    json_object_set_new(out, "null_sub", json_integer(px_token_revoke(txn, NULL)));
    json_object_set_new(out, "empty", json_integer(px_token_revoke(txn, "")));
    json_object_set_new(out, "too_long", json_integer(px_token_revoke(txn, too_long)));
    json_object_set_new(out, "longest", json_integer(px_token_revoke(txn, longest)));
    px_pg_rollback(txn, NULL, NULL);
    px_res_json(req, 200, out);
}

static int misuse(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_pg_begin(req, misuse_begun, NULL);
    return rc ? rc : PX_ASYNC;
}

static int revokekit_init(px_plugin_t *self)
{
    int rc = px_route(self, "POST", "/v1/revokekit/revoke", revoke, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/revokekit/misuse", misuse, NULL);
    return rc;
}

PX_PLUGIN("revokekit", "1.0.0", revokekit_init, NULL, NULL);
