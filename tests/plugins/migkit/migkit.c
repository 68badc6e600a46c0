/*
 * migkit — a plugin with schema migrations, for the host's migration tests.
 *   GET /v1/migkit/applied -> {"rows": N}  (rows of migkit_applied: 1 when 002 ran once)
 */
#include <panthera/panthera.h>

extern const px_migration_t migkit_migrations[];

static void counted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_json(req, 200, json_pack("{s:s}", "rows", px_pg_value(res, 0, 0)));
}

static int applied(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_pg_query(req, NULL, "SELECT count(*)::text FROM migkit_applied", 0, NULL, counted,
                         NULL);
    return rc ? rc : PX_ASYNC;
}

static int init(px_plugin_t *self)
{
    int rc = px_migrations(self, migkit_migrations);
    return rc ? rc : px_route(self, "GET", "/v1/migkit/applied", applied, NULL);
}

PX_PLUGIN("migkit", "1.0.0", init, NULL, NULL);
