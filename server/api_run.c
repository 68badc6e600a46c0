/*
 * api_run.c — PostgreSQL calls whose failures the host answers (SDK 1.2, HELPERS area:
 * px_pg_run, px_pg_txn_run, px_pg_begin_run).
 *
 * Why. Nearly every callback of a plugin began with "if the query failed, answer the
 * error and return", and nearly every step ended with "if starting the next step failed,
 * answer that code": two plugins of this tree had about sixty such blocks, each a place to
 * forget the return or answer twice. The answer was the same everywhere (px_res_pg_error,
 * px_res_code), so the host gives it: a plugin's callback sees only successes and returns
 * what a handler returns, and the host answers a negative code the way it answers a
 * handler's (http.c's dispatch). Callbacks that must tell failures apart (a 23505 that
 * names the field taken, a 23503 that means the row went away) keep px_pg_query.
 *
 * How. Each call wraps the plugin's callback and userdata in request memory and starts
 * the 1.1 call with a trampoline of its own, so cancellation, statement names and
 * transactions behave exactly as for px_pg_query. A background task (px_req_t of
 * tasks.c) has nobody to answer: its failures are logged with the plugin's name.
 */
#include "api.h"
#include "log.h"
#include "pg.h"
#include "request.h"

typedef struct run {
    union {
        px_pg_ok_fn query;
        px_pg_txn_ok_fn txn;
    } cb;
    void *userdata;
} run_t;

int api_run_answer(px_req_t *r, int rc)
{
    if (rc >= 0)
        return rc;
    if (r->task) {
        log_warn("plugin \"%s\": a task's step failed with code %d", r->plugin ? r->plugin : "?",
                 rc);
        return rc;
    }
    api_res_code(r, rc, NULL);
    return PX_DONE;
}

static void run_failed(px_req_t *r, const px_pg_error_t *err)
{
    if (r->task)
        log_warn("plugin \"%s\": a task's query failed (SQLSTATE %s): %s",
                 r->plugin ? r->plugin : "?", api_pg_error_sqlstate(err),
                 api_pg_error_message(err));
    else
        api_res_pg_error(r, err);
}

static void ran(px_req_t *r, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    run_t *run = ud;
    if (err)
        run_failed(r, err);
    else
        api_run_answer(r, run->cb.query(r, res, run->userdata));
}

static run_t *run_new(px_req_t *r, void *ud)
{
    run_t *run = api_req_alloc(r, sizeof(*run));
    run->userdata = ud;
    return run;
}

int api_pg_run(px_req_t *r, const char *name, const char *sql, int nparams,
               const char *const *values, px_pg_ok_fn cb, void *ud)
{
    if (!r || !cb)
        return PX_EINVAL;
    run_t *run = run_new(r, ud);
    run->cb.query = cb;
    return api_pg_query(r, name, sql, nparams, values, ran, run);
}

int api_pg_txn_run(px_pg_txn_t *t, const char *name, const char *sql, int nparams,
                   const char *const *values, px_pg_ok_fn cb, void *ud)
{
    if (!t || !cb)
        return PX_EINVAL;
    run_t *run = run_new(api_txn_req(t), ud);
    run->cb.query = cb;
    return api_pg_txn_query(t, name, sql, nparams, values, ran, run);
}

static void begun(px_req_t *r, px_pg_txn_t *t, const px_pg_error_t *err, void *ud)
{
    run_t *run = ud;
    if (err)
        run_failed(r, err);
    else
        api_run_answer(r, run->cb.txn(r, t, run->userdata));
}

int api_pg_begin_run(px_req_t *r, unsigned flags, px_pg_txn_ok_fn cb, void *ud)
{
    if (!r || !cb || (flags & ~PX_PG_IDEMPOTENT))
        return PX_EINVAL;
    run_t *run = run_new(r, ud);
    run->cb.txn = cb;
    return flags & PX_PG_IDEMPOTENT ? api_pg_begin_idempotent(r, begun, run)
                                    : api_pg_begin(r, begun, run);
}
