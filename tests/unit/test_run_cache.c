/* test_run_cache.c — px_pg_run / px_pg_txn_run / px_pg_begin_run (api_run.c) and
 * px_cache_get / px_cache_set / px_cache_del (api_cache.c) without PostgreSQL or Redis:
 * misuse is refused, a missing pool is reported and no callback runs, a missing Redis is
 * a miss whose callback runs at once, exactly once, and a callback's negative code is
 * answered (here: on a request answered already, so nothing is sent twice). The paths
 * with the services are the user plugin's API tests (tests/api/test_user_*.py). Also
 * px_pg_conflict's declarations and which plugin's message an error gets (api_pg.c), and
 * px_pg_on_commit's misuse (api_async.c; its hooks run in the task plugin's API tests,
 * whose lists are served from memory only because they do). */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "check.h"
#include "pg.h"
#include "plugin.h"
#include "request.h"
#include "worker.h"

static int calls;
static const char *seen_value;
static size_t seen_len;
static int cb_result;

static int never(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    (void)req, (void)res, (void)ud;
    calls++;
    return 0;
}

static int never_txn(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    (void)req, (void)txn, (void)ud;
    calls++;
    return 0;
}

static int got(px_req_t *req, const char *value, size_t len, void *ud)
{
    (void)req;
    calls++;
    seen_value = value;
    seen_len = len;
    CHECK(ud == &calls);
    return cb_result;
}

static int then(px_req_t *req, void *ud)
{
    (void)req;
    CHECK(ud == &calls);
    calls++;
    return cb_result;
}

static px_req_t *fake_req(worker_t *w)
{
    px_req_t *r = calloc(1, sizeof(*r));
    r->worker = w;
    r->plugin = "test";
    return r;
}

static void free_req(px_req_t *r)
{
    arena_free(&r->arena);
    free(r);
}

static void test_pg_run_misuse(void)
{
    worker_t w;
    memset(&w, 0, sizeof(w)); /* no [postgres]: pg is NULL */
    px_req_t *r = fake_req(&w);
    calls = 0;
    CHECK_EQ_INT(api_pg_run(NULL, NULL, "SELECT 1", 0, NULL, never, NULL), PX_EINVAL);
    CHECK_EQ_INT(api_pg_run(r, NULL, "SELECT 1", 0, NULL, NULL, NULL), PX_EINVAL);
    CHECK_EQ_INT(api_pg_run(r, NULL, "SELECT 1", 0, NULL, never, NULL), PX_EUNAVAIL);
    CHECK_EQ_INT(api_pg_run(r, "a_name", "SELECT 1", 0, NULL, never, NULL), PX_EUNAVAIL);
    CHECK_EQ_INT(api_pg_txn_run(NULL, NULL, "SELECT 1", 0, NULL, never, NULL), PX_EINVAL);
    CHECK_EQ_INT(api_pg_begin_run(NULL, 0, never_txn, NULL), PX_EINVAL);
    CHECK_EQ_INT(api_pg_begin_run(r, 0, NULL, NULL), PX_EINVAL);
    CHECK_EQ_INT(api_pg_begin_run(r, 2, never_txn, NULL), PX_EINVAL); /* unknown flag */
    CHECK_EQ_INT(api_pg_begin_run(r, 0, never_txn, NULL), PX_EUNAVAIL);
    CHECK_EQ_INT(calls, 0);
    free_req(r);
}

static void hook(px_req_t *req, void *ud)
{
    (void)req, (void)ud;
    calls++;
}

static void test_on_commit_misuse(void)
{
    calls = 0;
    CHECK_EQ_INT(api_pg_on_commit(NULL, hook, NULL), PX_EINVAL);
    /* The hook is checked before the transaction is touched. */
    CHECK_EQ_INT(api_pg_on_commit((px_pg_txn_t *)&calls, NULL, NULL), PX_EINVAL);
    CHECK_EQ_INT(calls, 0);
}

static void test_run_answer(void)
{
    worker_t w;
    memset(&w, 0, sizeof(w));
    px_req_t *r = fake_req(&w);
    CHECK_EQ_INT(api_run_answer(r, PX_OK), PX_OK);
    CHECK_EQ_INT(api_run_answer(r, PX_ASYNC), PX_ASYNC);
    CHECK_EQ_INT(api_run_answer(r, PX_DONE), PX_DONE);
    r->responded = true; /* answered already: the code is not sent again */
    CHECK_EQ_INT(api_run_answer(r, PX_ENOENT), PX_DONE);
    CHECK_EQ_INT(api_run_answer(r, -999), PX_DONE); /* unknown code: 500, still handled */
    free_req(r);
}

static void test_cache_misuse(void)
{
    worker_t w;
    memset(&w, 0, sizeof(w)); /* no [redis] */
    px_req_t *r = fake_req(&w);
    char long_key[202];
    memset(long_key, 'k', 201);
    long_key[201] = '\0';
    calls = 0;
    CHECK_EQ_INT(api_cache_get(NULL, "k", got, &calls), PX_EINVAL);
    CHECK_EQ_INT(api_cache_get(r, NULL, got, &calls), PX_EINVAL);
    CHECK_EQ_INT(api_cache_get(r, "", got, &calls), PX_EINVAL);
    CHECK_EQ_INT(api_cache_get(r, long_key, got, &calls), PX_EINVAL);
    CHECK_EQ_INT(api_cache_get(r, "k", NULL, &calls), PX_EINVAL);
    CHECK_EQ_INT(api_cache_set(NULL, "k", "v", 1, 1000), PX_EINVAL);
    CHECK_EQ_INT(api_cache_set(r, "k", NULL, 1, 1000), PX_EINVAL);
    CHECK_EQ_INT(api_cache_set(r, "k", "v", 1, 0), PX_EINVAL);
    CHECK_EQ_INT(api_cache_set(r, "k", "v", 1, -5), PX_EINVAL);
    CHECK_EQ_INT(api_cache_set(r, long_key, "v", 1, 1000), PX_EINVAL);
    CHECK_EQ_INT(api_cache_del(NULL, "k", then, &calls), PX_EINVAL);
    CHECK_EQ_INT(api_cache_del(r, "", then, &calls), PX_EINVAL);
    CHECK_EQ_INT(calls, 0);
    long_key[200] = '\0'; /* 200 bytes is allowed */
    CHECK_EQ_INT(api_cache_set(r, long_key, "v", 1, 1000), PX_EUNAVAIL);
    free_req(r);
}

static void test_cache_without_redis(void)
{
    worker_t w;
    memset(&w, 0, sizeof(w));
    px_req_t *r = fake_req(&w);
    calls = 0;
    cb_result = PX_OK;
    seen_value = "unset";
    seen_len = 99;
    /* A miss, reported before the call returns, once. */
    CHECK_EQ_INT(api_cache_get(r, "profile:1", got, &calls), 0);
    CHECK_EQ_INT(calls, 1);
    CHECK(seen_value == NULL);
    CHECK_EQ_INT((int)seen_len, 0);
    /* Nothing stored, said so. */
    CHECK_EQ_INT(api_cache_set(r, "profile:1", "u1:{}", 5, 60000), PX_EUNAVAIL);
    /* The write's answer still goes on: `then` runs at once; NULL `then` is fine. */
    CHECK_EQ_INT(api_cache_del(r, "profile:1", then, &calls), 0);
    CHECK_EQ_INT(calls, 2);
    CHECK_EQ_INT(api_cache_del(r, "profile:1", NULL, NULL), 0);
    CHECK_EQ_INT(calls, 2);
    /* A callback's code is answered by the host (here: already answered, not again). */
    r->responded = true;
    cb_result = PX_EINTERNAL;
    CHECK_EQ_INT(api_cache_get(r, "profile:1", got, &calls), 0);
    CHECK_EQ_INT(api_cache_del(r, "profile:1", then, &calls), 0);
    CHECK_EQ_INT(calls, 4);
    free_req(r);
}

static void test_pg_conflict(void)
{
    plugin_set_t set;
    memset(&set, 0, sizeof(set));
    struct px_plugin a = {.name = "a", .set = &set}, b = {.name = "b", .set = &set};
    struct px_plugin *items[] = {&a, &b};
    set.items = items;
    set.n = 2;
    /* Only during init. */
    CHECK_EQ_INT(api_pg_conflict(&a, "users_email_key", "this email is taken"), PX_ESTATE);
    CHECK_EQ_INT(api_pg_conflict(NULL, "users_email_key", "this email is taken"), PX_ESTATE);
    set.registering = &a;
    CHECK_EQ_INT(api_pg_conflict(&a, "users_email_key", "this email is taken"), 0);
    CHECK_EQ_INT(api_pg_conflict(&a, "users_email_key", "again"), PX_EEXIST);
    CHECK_EQ_INT(api_pg_conflict(&a, "", "m"), PX_EINVAL);
    CHECK_EQ_INT(api_pg_conflict(&a, NULL, "m"), PX_EINVAL);
    CHECK_EQ_INT(api_pg_conflict(&a, "c", NULL), PX_EINVAL);
    CHECK_EQ_INT(api_pg_conflict(&a, "c", ""), PX_EINVAL);
    CHECK_EQ_INT(api_pg_conflict(&a, "c", "two\nlines"), PX_EINVAL);
    CHECK_EQ_INT(api_pg_conflict(&a, "c", "\xff not UTF-8"), PX_EINVAL);
    char long_name[70];
    memset(long_name, 'c', 64);
    long_name[64] = '\0';
    CHECK_EQ_INT(api_pg_conflict(&a, long_name, "m"), PX_EINVAL);
    CHECK_EQ_INT(api_pg_conflict(&b, "other", "m"), PX_ESTATE); /* b is not initialising */
    set.registering = &b;
    CHECK_EQ_INT(api_pg_conflict(&b, "users_email_key", "b's own words"), 0);
    set.registering = NULL;

    /* The message is the failing request's plugin's. */
    worker_t w;
    memset(&w, 0, sizeof(w));
    w.plugins = &set;
    px_req_t *r = fake_req(&w);
    pg_error_t err = {.kind = PG_EQUERY, .sqlstate = "23505", .message = "duplicate key",
                      .constraint = "users_email_key"};
    const px_pg_error_t *e = (const px_pg_error_t *)&err;
    r->plugin = "a";
    CHECK_STR(api_pg_conflict_message(r, e), "this email is taken");
    r->plugin = "b";
    CHECK_STR(api_pg_conflict_message(r, e), "b's own words");
    r->plugin = "c"; /* no such plugin, no declaration */
    CHECK(api_pg_conflict_message(r, e) == NULL);
    r->plugin = "a";
    err.constraint = "undeclared";
    CHECK(api_pg_conflict_message(r, e) == NULL);
    err.constraint = NULL;
    CHECK(api_pg_conflict_message(r, e) == NULL);
    free_req(r);
    json_decref(a.pg_conflicts);
    json_decref(b.pg_conflicts);
}

int main(void)
{
    RUN(test_pg_conflict);
    RUN(test_pg_run_misuse);
    RUN(test_run_answer);
    RUN(test_on_commit_misuse);
    RUN(test_cache_misuse);
    RUN(test_cache_without_redis);
    return check_finish();
}
