/*
 * api_pg.c — the SDK's PostgreSQL ergonomics (1.2, HELPERS area): typed reads of a
 * result, the parts of an error a plugin tells cases apart by, and the names a plugin
 * gives its prepared statements.
 *
 * Statement names. A pooled connection serves every plugin, and a prepared statement
 * lives on the connection, so two plugins that both call a statement "item_by_id" for
 * different SQL would each break the other (42P05 on whichever came second). The host
 * therefore prepares a plugin's statement under "<plugin>:<name>": names are per plugin,
 * as a plugin author expects, and the host's own statements (px_idem_..., never with a
 * ':') cannot clash with either. PostgreSQL keeps 63 bytes of a name; a longer
 * combination keeps a readable head and ends in a hash of the whole, so it stays unique.
 *
 * Conflict messages (px_pg_conflict). A unique or foreign key violation is the client's
 * 409, but "that already exists" does not say which field; a plugin that wanted to say it
 * had to catch the error in every callback and compare constraint names. It declares the
 * message per constraint once, at init, and every answer the host gives for an error
 * naming that constraint (px_res_pg_error, px_pg_run, a commit) uses it. Declarations are
 * per plugin: a constraint is looked up among the declarations of the plugin whose
 * request failed, so two plugins never answer with each other's words.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg.h"
#include "plugin.h"
#include "worker.h"

#define STMT_NAME_MAX 63 /* NAMEDATALEN - 1 */

static uint64_t fnv1a(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *s = a; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ 0) * 1099511628211ull; /* "ab"+"c" must differ from "a"+"bc" */
    for (const char *s = b; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int api_pg_stmt_name(const char *plugin, const char *name, char out[64])
{
    if (!name || !*name || strlen(name) > STMT_NAME_MAX)
        return PX_EINVAL;
    if (!plugin || !*plugin)
        plugin = "host";
    int n = snprintf(out, 64, "%s:%s", plugin, name);
    if (n >= 0 && n <= STMT_NAME_MAX)
        return 0;
    snprintf(out, 64, "%.20s:%.25s~%016llx", plugin, name,
             (unsigned long long)fnv1a(plugin, name));
    return 0;
}

/* ---- errors ---- */

const char *api_pg_error_constraint(const px_pg_error_t *err)
{
    return err ? ((const pg_error_t *)err)->constraint : NULL;
}

const char *api_pg_error_detail(const px_pg_error_t *err)
{
    return err ? ((const pg_error_t *)err)->detail : NULL;
}

int api_pg_conflict(px_plugin_t *p, const char *constraint, const char *message)
{
    if (!p || !p->set || p->set->registering != p)
        return PX_ESTATE;
    if (!constraint || !*constraint || strlen(constraint) > STMT_NAME_MAX || !message ||
        !*message || strlen(message) > 200 || strpbrk(message, "\r\n"))
        return PX_EINVAL;
    if (!p->pg_conflicts)
        p->pg_conflicts = json_object();
    if (json_object_get(p->pg_conflicts, constraint))
        return PX_EEXIST;
    json_t *text = json_string(message);
    if (!text)
        return PX_EINVAL; /* not UTF-8 */
    json_object_set_new(p->pg_conflicts, constraint, text);
    return 0;
}

const char *api_pg_conflict_message(px_req_t *r, const px_pg_error_t *err)
{
    const char *constraint = api_pg_error_constraint(err);
    plugin_set_t *set = r && r->worker ? r->worker->plugins : NULL;
    if (!constraint || !set || !r->plugin)
        return NULL;
    for (size_t i = 0; i < set->n; i++)
        if (!strcmp(set->items[i]->name, r->plugin))
            return json_string_value(json_object_get(set->items[i]->pg_conflicts, constraint));
    return NULL;
}

/* ---- typed values ---- */

int api_pg_is_null(const px_pg_result_t *res, int row, int col)
{
    return api_pg_value(res, row, col) == NULL;
}

int api_pg_int64(const px_pg_result_t *res, int row, int col, int64_t *out)
{
    if (!out)
        return PX_EINVAL;
    int rc = pg_result_int64((const pg_result_t *)res, row, col, out);
    return rc == -ERANGE ? PX_EOVERFLOW : rc ? PX_EINVAL : 0;
}

int api_pg_bool(const px_pg_result_t *res, int row, int col, int *out)
{
    bool v;
    if (!out || pg_result_bool((const pg_result_t *)res, row, col, &v))
        return PX_EINVAL;
    *out = v ? 1 : 0;
    return 0;
}

int api_pg_double(const px_pg_result_t *res, int row, int col, double *out)
{
    const char *s = api_pg_value(res, row, col);
    if (!out || !s || !*s)
        return PX_EINVAL;
    char *end;
    double v = strtod(s, &end);
    if (*end)
        return PX_EINVAL;
    *out = v;
    return 0;
}

const char *api_pg_colname(const px_pg_result_t *res, int col)
{
    return pg_result_colname((const pg_result_t *)res, col);
}
