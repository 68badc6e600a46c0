/*
 * preferences.c — GET/PUT /v1/notifications/preferences: per type {inApp, email}.
 *
 * The answer always lists every type with its EFFECTIVE value: the caller's row where
 * there is one, else the [plugin:notification] default for that type. A PUT names only
 * the types it changes, each with both fields (schema "PreferencesPut"); a type it leaves
 * out keeps what it had. A stored row stays as written even if the defaults change later.
 */
#include <stdlib.h>
#include <string.h>

#include "notification.h"

static void answer(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    json_t *out = json_object();
    for (int t = 0; t < NOTIF_NTYPES; t++)
        json_object_set_new(out, notif_types[t],
                            json_pack("{s:b, s:s}", "inApp", notif_cfg.in_app[t], "email",
                                      notif_cfg.email[t]));
    for (int i = 0; i < px_pg_rows(res); i++) {
        const char *type = px_pg_value(res, i, 0);
        int in_app = 0;
        if (notif_type_index(type) < 0 || px_pg_bool(res, i, 1, &in_app))
            continue; /* a type this version no longer has */
        json_object_set_new(out, type, json_pack("{s:b, s:s}", "inApp", in_app, "email",
                                                 px_pg_value(res, i, 2)));
    }
    px_res_json(req, 200, out);
}

int preferences_get(px_req_t *req, void *ud)
{
    (void)ud;
    const char *values[] = {px_req_caller_id(req)};
    int rc = px_pg_query(req, "prefs_get", sql_prefs_get, 1, values, answer, NULL);
    return rc ? rc : PX_ASYNC;
}

static void stored(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)res, (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    int rc = preferences_get(req, NULL);
    if (rc != PX_ASYNC)
        px_res_code(req, rc, NULL);
}

int preferences_put(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body); /* validated by the route's schema already */
    if (rc)
        return rc;
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text)
        return PX_EINTERNAL;
    const char *values[] = {px_req_caller_id(req), text};
    rc = px_pg_query(req, "prefs_put", sql_prefs_put, 2, values, stored, NULL);
    free(text);
    return rc ? rc : PX_ASYNC;
}
