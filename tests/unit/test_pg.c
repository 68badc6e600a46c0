/*
 * test_pg.c — server/pg.c against a real PostgreSQL. Not part of the unit suite (that one
 * runs without services): tests/api/test_pg_pool.py runs it with the PANTHERA_PG* variables
 * that scripts/dev prints.
 *
 *   test_pg basic          parameters, types, errors, prepared statements, transactions,
 *                          cancel, unreachable servers, closing with work pending
 *   test_pg queue          size 2, queue_max 5: overflow and wait timeouts
 *   test_pg loop SECONDS   a query every 10 ms; one summary line; exit 1 on an error other
 *                          than "unavailable" or on a callback later than wait_timeout + 1 s
 *
 * Every subcommand ends by closing its pools and checking that the loop has no handle left
 * (uv_loop_close), so ASan's leak checker sees every allocation the pool made.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "pg.h"
#include "pg_internal.h" /* a transaction's ndone: which path test_abandon_due took */
#include "util.h"

static uv_loop_t *loop;
static uv_timer_t deadline;
static bool deadline_hit;

static void on_deadline(uv_timer_t *t)
{
    UNUSED(t);
    deadline_hit = true;
}

/* Runs the loop until *counter reaches target or timeout_ms pass. */
static bool wait_for(const int *counter, int target, int timeout_ms)
{
    deadline_hit = false;
    uv_timer_start(&deadline, on_deadline, (uint64_t)timeout_ms, 0);
    while (*counter < target && !deadline_hit)
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
    return *counter >= target;
}

static void run_for(int ms)
{
    int never = 0;
    wait_for(&never, 1, ms);
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void kv_append(buf_t *b, const char *key, const char *val)
{
    if (!val || !*val)
        return;
    buf_printf(b, "%s%s='", b->len ? " " : "", key);
    for (const char *p = val; *p; p++) {
        if (*p == '\'' || *p == '\\')
            buf_append(b, "\\", 1);
        buf_append(b, p, 1);
    }
    buf_appends(b, "'");
}

/* conninfo from the PANTHERA_PG* variables; `host` and `port` replace theirs if given. */
static char *conninfo(const char *host, const char *port)
{
    buf_t b = {0};
    kv_append(&b, "host", host ? host : getenv("PANTHERA_PGHOST"));
    kv_append(&b, "port", port ? port : getenv("PANTHERA_PGPORT"));
    kv_append(&b, "dbname", getenv("PANTHERA_PGDATABASE"));
    kv_append(&b, "user", getenv("PANTHERA_PGUSER"));
    return b.data;
}

/* `cfg` without conninfo: it comes from the environment, with `host` and `port` if given. */
static pg_pool_t *pool_make_cfg(const char *host, const char *port, pg_config_t cfg)
{
    char *info = conninfo(host, port);
    cfg.conninfo = info;
    pg_pool_t *pool = pg_pool_new(loop, &cfg);
    free(info);
    return pool;
}

static pg_pool_t *pool_make(const char *host, const char *port, int size, int queue_max,
                            int wait_timeout_ms)
{
    return pool_make_cfg(
        host, port,
        (pg_config_t){.size = size, .queue_max = queue_max, .wait_timeout_ms = wait_timeout_ms});
}

static void on_closed(void *ud)
{
    ++*(int *)ud;
}

static void pool_close_wait(pg_pool_t *pool)
{
    int closed = 0;
    pg_pool_close(pool, on_closed, &closed);
    CHECK(wait_for(&closed, 1, 3000));
}

/* True when the answer counted by `counter` comes from the loop's next few turns, none of
 * which blocks: a failure that waits for no timer and no I/O ("fails fast", whatever the
 * machine's load). */
static bool delivered_at_once(const int *counter, int target)
{
    for (int i = 0; i < 3 && *counter < target; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    return *counter >= target;
}

static bool wait_connected(pg_pool_t *pool, int n, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (pg_pool_status(pool).connected < n && now_ms() < end)
        run_for(10);
    return pg_pool_status(pool).connected >= n;
}

static bool wait_idle(pg_pool_t *pool, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while ((pg_pool_status(pool).busy || pg_pool_status(pool).waiting) && now_ms() < end)
        run_for(10);
    return pg_pool_status(pool).busy == 0 && pg_pool_status(pool).waiting == 0;
}

/* What a callback saw, copied out so the test can look at it afterwards. */
#define ANSWER_COLS 6
typedef struct answer {
    int done;
    int order; /* when it was called, among the answers of a test */
    bool ok;
    pg_errkind_t kind;
    char sqlstate[6];
    char *message;
    char *constraint;
    int rows, cols;
    int64_t affected;
    char *value[ANSWER_COLS]; /* first row */
    bool null[ANSWER_COLS];
    char *colname0;
    int64_t ival;
    int ival_rc;
    bool bval;
    int bval_rc;
    uint64_t at;
} answer_t;

static int answer_seq;

static void answer_clear(answer_t *a)
{
    free(a->message);
    free(a->constraint);
    free(a->colname0);
    for (int i = 0; i < ANSWER_COLS; i++)
        free(a->value[i]);
    memset(a, 0, sizeof(*a));
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void answer_error(answer_t *a, const pg_error_t *err)
{
    a->kind = err->kind;
    memcpy(a->sqlstate, err->sqlstate, sizeof(a->sqlstate));
    a->message = dup_or_null(err->message);
    a->constraint = dup_or_null(err->constraint);
}

static void on_answer(const pg_result_t *res, const pg_error_t *err, void *ud)
{
    answer_t *a = ud;
    a->done++;
    a->order = ++answer_seq;
    a->at = now_ms();
    a->ok = err == NULL;
    if (err) {
        CHECK(res == NULL);
        answer_error(a, err);
        return;
    }
    CHECK(res != NULL);
    a->rows = pg_result_rows(res);
    a->cols = pg_result_cols(res);
    a->affected = pg_result_affected(res);
    a->colname0 = dup_or_null(pg_result_colname(res, 0));
    for (int i = 0; i < a->cols && i < ANSWER_COLS && a->rows > 0; i++) {
        a->value[i] = dup_or_null(pg_result_value(res, 0, i));
        a->null[i] = pg_result_is_null(res, 0, i);
    }
    a->ival_rc = pg_result_int64(res, 0, 0, &a->ival);
    a->bval_rc = pg_result_bool(res, 0, 0, &a->bval);
}

static void on_done(const pg_error_t *err, void *ud)
{
    answer_t *a = ud;
    a->done++;
    a->order = ++answer_seq;
    a->at = now_ms();
    a->ok = err == NULL;
    if (err)
        answer_error(a, err);
}

static void query_sync(pg_pool_t *pool, answer_t *a, const char *sql, int n,
                       const char *const *values)
{
    answer_clear(a);
    CHECK_EQ_INT(pg_query(pool, sql, n, values, on_answer, a, NULL), 0);
    CHECK(wait_for(&a->done, 1, 8000));
}

static void txn_query_sync(pg_txn_t *txn, answer_t *a, const char *sql, int n,
                           const char *const *values)
{
    answer_clear(a);
    CHECK_EQ_INT(pg_txn_query(txn, sql, n, values, on_answer, a, NULL), 0);
    CHECK(wait_for(&a->done, 1, 8000));
}

typedef struct begun {
    int done;
    pg_txn_t *txn;
    pg_errkind_t kind;
} begun_t;

static void on_begin(pg_txn_t *txn, const pg_error_t *err, void *ud)
{
    begun_t *b = ud;
    b->done++;
    b->txn = txn;
    b->kind = err ? err->kind : 0;
    CHECK((txn == NULL) != (err == NULL));
}

static pg_txn_t *begin_sync(pg_pool_t *pool)
{
    begun_t b = {0};
    CHECK_EQ_INT(pg_txn_begin(pool, on_begin, &b, NULL), 0);
    CHECK(wait_for(&b.done, 1, 8000));
    return b.txn;
}

static void end_sync(pg_txn_t *txn, bool commit, answer_t *a)
{
    answer_clear(a);
    int rc = commit ? pg_txn_commit(txn, on_done, a, NULL) : pg_txn_rollback(txn, on_done, a, NULL);
    CHECK_EQ_INT(rc, 0);
    CHECK(wait_for(&a->done, 1, 8000));
}

/* ---- basic ---- */

static pg_pool_t *pool;
static char table[64];
static char sql[512];

static const char *sqlf(const char *fmt, const char *arg)
{
    snprintf(sql, sizeof(sql), fmt, arg, arg);
    return sql;
}

static int count_id(const char *id)
{
    answer_t a = {0};
    const char *v[] = {id};
    query_sync(pool, &a, sqlf("SELECT count(*) FROM %s WHERE id = $1", table), 1, v);
    int64_t n = a.ok ? a.ival : -1;
    answer_clear(&a);
    return (int)n;
}

static void test_setup(void)
{
    answer_t a = {0};
    CHECK_OR_RETURN(wait_connected(pool, 4, 5000));
    CHECK_EQ_INT(pg_ping(pool, on_done, &a, NULL), 0);
    CHECK(wait_for(&a.done, 1, 5000));
    CHECK(a.ok);
    query_sync(pool, &a, sqlf("DROP TABLE IF EXISTS %s", table), 0, NULL);
    CHECK(a.ok);
    query_sync(
        pool, &a,
        sqlf("CREATE TABLE %s (id bigint PRIMARY KEY, name text, flag boolean, n int)", table), 0,
        NULL);
    CHECK(a.ok);
    answer_clear(&a);
}

static void test_params(void)
{
    static const char *const evil = "'; DROP TABLE x; --";
    static const char *const utf8 = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 "
                                    "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\x98 \"q\" \\ $1";
    answer_t a = {0};
    const char *ins = sqlf("INSERT INTO %s (id, name, flag, n) VALUES ($1, $2, $3, $4)", table);
    char insert[sizeof(sql)];
    snprintf(insert, sizeof(insert), "%s", ins);
    const char *row1[] = {"1", evil, "t", NULL};
    query_sync(pool, &a, insert, 4, row1);
    CHECK(a.ok);
    CHECK_EQ_INT(a.affected, 1);
    const char *row2[] = {"2", utf8, "f", "-42"};
    query_sync(pool, &a, insert, 4, row2);
    CHECK(a.ok);
    CHECK_EQ_INT(a.affected, 1);

    const char *id1[] = {"1"};
    query_sync(pool, &a, sqlf("SELECT name, flag, n, id FROM %s WHERE id = $1", table), 1, id1);
    CHECK(a.ok);
    CHECK_EQ_INT(a.rows, 1);
    CHECK_EQ_INT(a.cols, 4);
    CHECK_STR(a.colname0, "name");
    CHECK_STR(a.value[0], evil);
    CHECK_STR(a.value[1], "t");
    CHECK(a.value[2] == NULL);
    CHECK(a.null[2]);
    CHECK(!a.null[0]);
    CHECK_STR(a.value[3], "1");
    CHECK_EQ_INT(a.ival_rc, -EINVAL); /* "'; DROP..." is no integer */

    const char *id2[] = {"2"};
    query_sync(pool, &a, sqlf("SELECT n, flag, name FROM %s WHERE id = $1", table), 1, id2);
    CHECK(a.ok);
    CHECK_EQ_INT(a.ival_rc, 0);
    CHECK_EQ_INT(a.ival, -42);
    CHECK_STR(a.value[2], utf8);
    CHECK_STR(a.value[1], "f");

    query_sync(pool, &a, "SELECT $1::boolean, $2::bigint", 2, (const char *const[]){"true", NULL});
    CHECK(a.ok);
    CHECK_EQ_INT(a.bval_rc, 0);
    CHECK(a.bval);
    CHECK(a.null[1]);

    query_sync(pool, &a, "SELECT 9223372036854775807::bigint", 0, NULL);
    CHECK_EQ_INT(a.ival_rc, 0);
    CHECK(a.ival == INT64_MAX);
    query_sync(pool, &a, "SELECT 99999999999999999999::numeric", 0, NULL);
    CHECK_EQ_INT(a.ival_rc, -ERANGE);

    /* The table survived the string above, and so did the literal "x" it names. */
    CHECK_EQ_INT(count_id("1"), 1);
    query_sync(pool, &a, sqlf("UPDATE %s SET n = 7 WHERE id IN (1, 2)", table), 0, NULL);
    CHECK(a.ok);
    CHECK_EQ_INT(a.affected, 2);
    query_sync(pool, &a, sqlf("SELECT id FROM %s ORDER BY id", table), 0, NULL);
    CHECK_EQ_INT(a.rows, 2);
    CHECK_EQ_INT(a.affected, 2);
    answer_clear(&a);
}

static void test_errors(void)
{
    answer_t a = {0};
    const char *dup[] = {"1", "again", "f", "0"};
    query_sync(pool, &a, sqlf("INSERT INTO %s (id, name, flag, n) VALUES ($1, $2, $3, $4)", table),
               4, dup);
    CHECK(!a.ok);
    CHECK_EQ_INT(a.kind, PG_EQUERY);
    CHECK_STR(a.sqlstate, "23505");
    char pkey[80];
    snprintf(pkey, sizeof(pkey), "%s_pkey", table);
    CHECK_STR(a.constraint, pkey);
    CHECK_CONTAINS(a.message, "duplicate key");

    query_sync(pool, &a, "SELEC 1", 0, NULL);
    CHECK(!a.ok);
    CHECK_EQ_INT(a.kind, PG_EQUERY);
    CHECK_STR(a.sqlstate, "42601");
    CHECK_CONTAINS(a.message, "syntax error");

    /* Parameters are never SQL: two statements in one call are refused. */
    query_sync(pool, &a, "SELECT 1; SELECT 2", 0, NULL);
    CHECK(!a.ok);
    CHECK_EQ_INT(a.kind, PG_EQUERY);
    CHECK_STR(a.sqlstate, "42601");

    query_sync(pool, &a, "SELECT 1/0", 0, NULL);
    CHECK_STR(a.sqlstate, "22012");

    /* statement_timeout (5 s) is set on the session. */
    query_sync(pool, &a, "SHOW statement_timeout", 0, NULL);
    CHECK_STR(a.value[0], "5s");

    CHECK_EQ_INT(pg_query(pool, NULL, 0, NULL, on_answer, &a, NULL), -EINVAL);
    CHECK_EQ_INT(pg_query(pool, "SELECT $1", 1, NULL, on_answer, &a, NULL), -EINVAL);
    CHECK_EQ_INT(pg_query_prepared(pool, "", "SELECT 1", 0, NULL, on_answer, &a, NULL), -EINVAL);
    CHECK(wait_idle(pool, 2000));
    answer_clear(&a);
}

typedef struct sum_slot {
    int done;
    int expect;
    bool right;
} sum_slot_t;

static int sums_done;

static void on_sum(const pg_result_t *res, const pg_error_t *err, void *ud)
{
    sum_slot_t *s = ud;
    int64_t v = 0;
    s->done++;
    sums_done++;
    s->right = !err && pg_result_int64(res, 0, 0, &v) == 0 && v == s->expect;
    if (err)
        fprintf(stderr, "prepared query failed: %s\n", err->message);
}

static void test_prepared(void)
{
    enum { TOTAL = 1000, BATCH = 100 };
    static sum_slot_t slots[TOTAL];
    sums_done = 0;
    for (int i = 0; i < TOTAL; i++) {
        char a[16], b[16];
        snprintf(a, sizeof(a), "%d", i);
        snprintf(b, sizeof(b), "%d", 3 * i);
        slots[i] = (sum_slot_t){.expect = 4 * i};
        const char *v[] = {a, b};
        CHECK_EQ_INT(pg_query_prepared(pool, "test_pg_sum", "SELECT $1::int + $2::int", 2, v,
                                       on_sum, &slots[i], NULL),
                     0);
        if ((i + 1) % BATCH == 0)
            CHECK(wait_for(&sums_done, i + 1, 10000));
    }
    int right = 0;
    for (int i = 0; i < TOTAL; i++)
        right += slots[i].right && slots[i].done == 1;
    CHECK_EQ_INT(right, TOTAL); /* had any connection prepared twice, PostgreSQL said 42P05 */

    /* One connection, so the per-connection cache is observable. */
    pg_pool_t *one = pool_make(NULL, NULL, 1, 0, 0);
    answer_t a = {0};
    const char *v[] = {"20", "22"};
    answer_clear(&a);
    pg_query_prepared(one, "test_pg_sum", "SELECT $1::int + $2::int", 2, v, on_answer, &a, NULL);
    CHECK(wait_for(&a.done, 1, 5000));
    CHECK_EQ_INT(a.ival, 42);
    answer_clear(&a);
    pg_query_prepared(one, "test_pg_sum", "SELECT $1::int * $2::int", 2, v, on_answer, &a, NULL);
    CHECK(wait_for(&a.done, 1, 5000));
    CHECK(!a.ok);
    CHECK_STR(a.sqlstate, "42P05");
    query_sync(one, &a, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'test_pg_sum'", 0,
               NULL);
    CHECK_EQ_INT(a.ival, 1);
    /* Someone deallocates behind the pool's back: it prepares again, invisibly. */
    query_sync(one, &a, "DEALLOCATE ALL", 0, NULL);
    CHECK(a.ok);
    answer_clear(&a);
    pg_query_prepared(one, "test_pg_sum", "SELECT $1::int + $2::int", 2, v, on_answer, &a, NULL);
    CHECK(wait_for(&a.done, 1, 5000));
    CHECK(a.ok);
    CHECK_EQ_INT(a.ival, 42);
    /* A syntax error while preparing is the caller's error, and nothing is cached. */
    answer_clear(&a);
    pg_query_prepared(one, "test_pg_bad", "SELEC $1", 1, v, on_answer, &a, NULL);
    CHECK(wait_for(&a.done, 1, 5000));
    CHECK_STR(a.sqlstate, "42601");
    answer_clear(&a);
    pg_query_prepared(one, "test_pg_bad", "SELECT $1::int", 1, v, on_answer, &a, NULL);
    CHECK(wait_for(&a.done, 1, 5000));
    CHECK_EQ_INT(a.ival, 20);
    answer_clear(&a);
    pool_close_wait(one);
}

/* What PostgreSQL sees of a group: one implicit transaction (txid_current() is the same
 * for all of it); when a member fails, the others are answered from transactions of
 * their own that committed, and what they wrote is there exactly once. */
static void test_groups(void)
{
    enum { N = 4 };
    pg_pool_t *one = pool_make(NULL, NULL, 1, 0, 0);
    CHECK_OR_RETURN(wait_connected(one, 1, 5000));
    answer_t a[N];
    memset(a, 0, sizeof(a));
    query_sync(one, &a[0], "SELECT 1", 0, NULL); /* until something is answered, no groups */
    answer_clear(&a[0]);
    for (int i = 0; i < N; i++)
        pg_query(one, "SELECT txid_current()", 0, NULL, on_answer, &a[i], NULL);
    CHECK(wait_for(&a[N - 1].done, 1, 5000));
    for (int i = 0; i < N; i++) {
        CHECK(a[i].ok);
        CHECK_EQ_INT(a[i].done, 1);
        CHECK(a[i].ival == a[0].ival); /* one group, one transaction */
    }
    for (int i = 0; i < N; i++)
        answer_clear(&a[i]);

    pg_query(one, sqlf("INSERT INTO %s (id) VALUES (40) RETURNING txid_current()", table), 0,
             NULL, on_answer, &a[0], NULL);
    pg_query(one, "SELECT txid_current()", 0, NULL, on_answer, &a[1], NULL);
    pg_query(one, sqlf("INSERT INTO %s (id) VALUES (40)", table), 0, NULL, on_answer, &a[2],
             NULL); /* fails, as it would after a[0] alone */
    pg_query(one, sqlf("INSERT INTO %s (id) VALUES (41) RETURNING txid_current()", table), 0,
             NULL, on_answer, &a[3], NULL);
    int all = 0;
    for (int i = 0; i < N && wait_for(&a[i].done, 1, 5000); i++)
        all++;
    CHECK_EQ_INT(all, N);
    CHECK(a[0].ok && a[1].ok && a[3].ok);
    CHECK(!a[2].ok);
    CHECK_STR(a[2].sqlstate, "23505");
    CHECK(a[0].ival != a[1].ival && a[1].ival != a[3].ival && a[0].ival != a[3].ival);
    CHECK(wait_idle(one, 2000));
    pool_close_wait(one);
    CHECK_EQ_INT(count_id("40"), 1);
    CHECK_EQ_INT(count_id("41"), 1);
    for (int i = 0; i < N; i++)
        answer_clear(&a[i]);
}

/* Queries submitted together go out together, as groups on one connection (a pipeline):
 * a failure touches no neighbour (the others run again, each on its own, and none is lost
 * or doubled), a PREPARE one of them sends serves the others and its failure is each
 * one's own, a BEGIN sent as plain SQL is rolled back before anything runs after it. */
static void test_pipeline(void)
{
    enum { N = 10 };
    pg_pool_t *one = pool_make(NULL, NULL, 1, 0, 0);
    CHECK_OR_RETURN(wait_connected(one, 1, 5000));
    answer_t hold = {0}, a[N];
    memset(a, 0, sizeof(a));
    const char *v[] = {"20"};
    pg_query(one, "SELECT pg_sleep(0.1)", 0, NULL, on_answer, &hold, NULL);
    pg_query(one, sqlf("INSERT INTO %s (id) VALUES (30)", table), 0, NULL, on_answer, &a[0], NULL);
    pg_query(one, "SELECT 1/0", 0, NULL, on_answer, &a[1], NULL);
    pg_query(one, sqlf("INSERT INTO %s (id) VALUES (31)", table), 0, NULL, on_answer, &a[2], NULL);
    pg_query_prepared(one, "test_pg_pipe_bad", "SELEC $1", 1, v, on_answer, &a[3], NULL);
    pg_query_prepared(one, "test_pg_pipe_bad", "SELEC $1", 1, v, on_answer, &a[4], NULL);
    pg_query_prepared(one, "test_pg_pipe", "SELECT $1::int", 1, v, on_answer, &a[5], NULL);
    pg_query_prepared(one, "test_pg_pipe", "SELECT $1::int", 1, v, on_answer, &a[6], NULL);
    pg_query(one, " /* a /* nested */ comment */ begin", 0, NULL, on_answer, &a[7], NULL);
    pg_query(one, sqlf("INSERT INTO %s (id) VALUES (32)", table), 0, NULL, on_answer, &a[8], NULL);
    pg_query(one, "SELECT 2", 0, NULL, on_answer, &a[9], NULL);
    CHECK_EQ_INT(pg_pool_status(one).waiting, N + 1);
    int all = 0;
    for (int i = 0; i < N && wait_for(&a[i].done, 1, 5000); i++)
        all++;
    CHECK_EQ_INT(all, N);
    CHECK(hold.ok);
    CHECK(a[0].ok);
    CHECK(!a[1].ok);
    CHECK_STR(a[1].sqlstate, "22012");
    CHECK(a[2].ok);
    CHECK_STR(a[3].sqlstate, "42601");
    CHECK_STR(a[4].sqlstate, "42601");
    CHECK(a[5].ok && a[5].ival == 20);
    CHECK(a[6].ok && a[6].ival == 20);
    CHECK(a[7].ok);
    CHECK(a[8].ok);
    CHECK(a[9].ok && a[9].ival == 2);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(a[i].done, 1);
    CHECK(wait_idle(one, 2000));
    pool_close_wait(one);
    CHECK_EQ_INT(count_id("30"), 1);
    CHECK_EQ_INT(count_id("31"), 1);
    CHECK_EQ_INT(count_id("32"), 1); /* not inside the BEGIN's transaction, then rolled back */
    answer_clear(&hold);
    for (int i = 0; i < N; i++)
        answer_clear(&a[i]);
}

static void test_transactions(void)
{
    answer_t a = {0}, end = {0};
    char insert[sizeof(sql)];
    snprintf(insert, sizeof(insert), "%s",
             sqlf("INSERT INTO %s (id, name) VALUES ($1, 'txn')", table));

    pg_txn_t *txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    txn_query_sync(txn, &a, insert, 1, (const char *const[]){"10"});
    CHECK_EQ_INT(a.affected, 1);
    CHECK_EQ_INT(count_id("10"), 0); /* not visible outside before COMMIT */
    end_sync(txn, true, &end);
    CHECK(end.ok);
    CHECK_EQ_INT(count_id("10"), 1);

    txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    txn_query_sync(txn, &a, insert, 1, (const char *const[]){"11"});
    CHECK(a.ok);
    end_sync(txn, false, &end);
    CHECK(end.ok);
    CHECK_EQ_INT(count_id("11"), 0);

    /* A failed statement poisons the transaction: COMMIT reports that statement's own
     * error (not the 25P02 the later ones got), so its caller can still tell a unique
     * violation from a bug. */
    txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    txn_query_sync(txn, &a, insert, 1, (const char *const[]){"12"});
    txn_query_sync(txn, &a, insert, 1, (const char *const[]){"1"});
    CHECK_STR(a.sqlstate, "23505");
    txn_query_sync(txn, &a, "SELECT 1", 0, NULL);
    CHECK_STR(a.sqlstate, "25P02");
    end_sync(txn, true, &end);
    CHECK(!end.ok);
    CHECK_EQ_INT(end.kind, PG_EQUERY);
    CHECK_STR(end.sqlstate, "23505");
    CHECK_EQ_INT(count_id("12"), 0);

    /* Several statements issued at once run in order; so does the COMMIT after them. */
    txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    answer_t q[3] = {{0}};
    answer_seq = 0;
    const char *ids[] = {"13", "14", "15"};
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(pg_txn_query_prepared(txn, "test_pg_txn_ins", insert, 1, &ids[i], on_answer,
                                           &q[i], NULL),
                     0);
    answer_clear(&end);
    CHECK_EQ_INT(pg_txn_commit(txn, on_done, &end, NULL), 0);
    CHECK_EQ_INT(pg_txn_query(txn, "SELECT 1", 0, NULL, on_answer, &a, NULL), -EINVAL);
    CHECK(wait_for(&end.done, 1, 5000));
    for (int i = 0; i < 3; i++) {
        CHECK(q[i].ok);
        CHECK_EQ_INT(q[i].order, i + 1);
        answer_clear(&q[i]);
    }
    CHECK_EQ_INT(end.order, 4);
    CHECK(end.ok);
    CHECK_EQ_INT(count_id("15"), 1);

    /* Abandoned: rolled back, connection back in the pool. */
    txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    txn_query_sync(txn, &a, insert, 1, (const char *const[]){"16"});
    pg_txn_abandon(txn);
    CHECK(wait_idle(pool, 2000));
    CHECK_EQ_INT(count_id("16"), 0);

    /* BEGIN through pg_query: the pool rolls it back before reusing the connection, so the
     * INSERT commits on its own and the ROLLBACK finds nothing to undo. */
    pg_pool_t *one = pool_make(NULL, NULL, 1, 0, 0);
    query_sync(one, &a, "BEGIN", 0, NULL);
    CHECK(a.ok);
    query_sync(one, &a, insert, 1, (const char *const[]){"17"});
    CHECK(a.ok);
    query_sync(one, &a, "ROLLBACK", 0, NULL);
    CHECK(a.ok);
    pool_close_wait(one);
    CHECK_EQ_INT(count_id("17"), 1);
    answer_clear(&a);
    answer_clear(&end);
}

/* pg_txn_query_joined: sent with the next statement, behind one sync point; when it fails,
 * the statement PostgreSQL skipped runs again alone and the COMMIT reports its error. */
static void test_txn_joined(void)
{
    answer_t j = {0}, a = {0}, end = {0};
    char insert[sizeof(sql)];
    snprintf(insert, sizeof(insert), "%s",
             sqlf("INSERT INTO %s (id, name) VALUES ($1, 'joined')", table));
    const char *const id30[] = {"9030"}, *const id31[] = {"9031"}, *const id1[] = {"1"};

    /* Both succeed, in order, then the COMMIT. */
    pg_txn_t *txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    answer_seq = 0;
    CHECK_EQ_INT(pg_txn_query_joined(txn, "test_pg_joined", insert, 1, id30, on_answer, &j, NULL),
                 0);
    CHECK_EQ_INT(pg_txn_query(txn, insert, 1, id31, on_answer, &a, NULL), 0);
    CHECK_EQ_INT(pg_txn_commit(txn, on_done, &end, NULL), 0);
    CHECK(wait_for(&end.done, 1, 8000));
    CHECK(j.ok && a.ok && end.ok);
    CHECK_EQ_INT(j.order, 1);
    CHECK_EQ_INT(a.order, 2);
    CHECK_EQ_INT(end.order, 3);
    CHECK_EQ_INT(count_id("9030") + count_id("9031"), 2);
    answer_clear(&j), answer_clear(&a), answer_clear(&end);

    /* Nothing follows before the loop blocks: it goes alone. */
    txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    CHECK_EQ_INT(pg_txn_query_joined(txn, "test_pg_joined", insert, 1,
                                     (const char *const[]){"9032"}, on_answer, &j, NULL),
                 0);
    CHECK(wait_for(&j.done, 1, 8000));
    CHECK(j.ok);
    end_sync(txn, true, &end);
    CHECK(end.ok);
    CHECK_EQ_INT(count_id("9032"), 1);
    answer_clear(&j), answer_clear(&end);

    /* It fails (duplicate key): the skipped statement runs alone and gets 25P02, the
     * COMMIT rolls back with the joined statement's own error. Then the same, the COMMIT
     * right behind it. */
    for (int commit_next = 0; commit_next < 2; commit_next++) {
        txn = begin_sync(pool);
        CHECK_OR_RETURN(txn);
        txn_query_sync(txn, &a, insert, 1, (const char *const[]){"9033"});
        CHECK_EQ_INT(pg_txn_query_joined(txn, "test_pg_joined", insert, 1, id1, on_answer, &j,
                                         NULL),
                     0);
        answer_clear(&a);
        if (!commit_next)
            CHECK_EQ_INT(pg_txn_query(txn, "SELECT 1", 0, NULL, on_answer, &a, NULL), 0);
        CHECK_EQ_INT(pg_txn_commit(txn, on_done, &end, NULL), 0);
        CHECK(wait_for(&end.done, 1, 8000));
        CHECK(!j.ok);
        CHECK_STR(j.sqlstate, "23505");
        if (!commit_next)
            CHECK_STR(a.sqlstate, "25P02");
        CHECK(!end.ok);
        CHECK_EQ_INT(end.kind, PG_EQUERY);
        CHECK_STR(end.sqlstate, "23505");
        CHECK_EQ_INT(count_id("9033"), 0);
        answer_clear(&j), answer_clear(&a), answer_clear(&end);
    }

    /* Unnamed and silent, several in a row (a savepoint, then the release of the one before,
     * as event deliveries send them): all ride on the next statement's sync point. */
    txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    answer_seq = 0;
    CHECK_EQ_INT(pg_txn_query_joined(txn, NULL, "SAVEPOINT j1", 0, NULL, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(pg_txn_query(txn, insert, 1, (const char *const[]){"9034"}, on_answer, &j,
                              NULL),
                 0);
    CHECK_EQ_INT(pg_txn_query_joined(txn, NULL, "RELEASE SAVEPOINT j1", 0, NULL, NULL, NULL,
                                     NULL),
                 0);
    CHECK_EQ_INT(pg_txn_query_joined(txn, NULL, "SAVEPOINT j2", 0, NULL, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(pg_txn_query(txn, insert, 1, (const char *const[]){"9035"}, on_answer, &a,
                              NULL),
                 0);
    CHECK_EQ_INT(pg_txn_commit(txn, on_done, &end, NULL), 0);
    CHECK(wait_for(&end.done, 1, 8000));
    CHECK(j.ok && a.ok && end.ok);
    CHECK_EQ_INT(j.order, 1);
    CHECK_EQ_INT(a.order, 2);
    CHECK_EQ_INT(count_id("9034") + count_id("9035"), 2);
    answer_clear(&j), answer_clear(&a), answer_clear(&end);

    /* A silent unnamed one that fails: the statement behind it gets 25P02, the COMMIT its
     * error. */
    txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    CHECK_EQ_INT(pg_txn_query_joined(txn, NULL, "SELECT 1 / 0", 0, NULL, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(pg_txn_query(txn, insert, 1, (const char *const[]){"9036"}, on_answer, &a,
                              NULL),
                 0);
    CHECK_EQ_INT(pg_txn_commit(txn, on_done, &end, NULL), 0);
    CHECK(wait_for(&end.done, 1, 8000));
    CHECK_STR(a.sqlstate, "25P02");
    CHECK(!end.ok);
    CHECK_STR(end.sqlstate, "22012");
    CHECK_EQ_INT(count_id("9036"), 0);
    answer_clear(&a), answer_clear(&end);

    CHECK(wait_idle(pool, 2000)); /* every connection back, none left in a transaction */
    query_sync(pool, &a, "SELECT 1", 0, NULL);
    CHECK(a.ok);
    answer_clear(&a);
}

typedef struct abandon_due {
    pg_txn_t *txn;
    answer_t answer;
    uv_check_t check;
    int abandoned;
} abandon_due_t;

/* Check handles run right after the poll phase: an answer read there is due, and its
 * callback would run at the start of the next iteration. The handler waits for the
 * iteration that read it, so the test takes the path it is about, however slow the
 * server or the machine. */
static void on_check_abandon(uv_check_t *check)
{
    abandon_due_t *d = check->data;
    if (d->txn->ndone == 0)
        return; /* not read yet: look again after the next poll */
    uv_check_stop(check);
    d->abandoned++;
    pg_txn_abandon(d->txn);
}

/* An answer that has arrived but whose callback has not run yet is silenced by abandoning
 * its transaction too: the caller may have freed what `ud` points to. */
static void test_abandon_due(void)
{
    abandon_due_t d = {0};
    d.txn = begin_sync(pool);
    CHECK_OR_RETURN(d.txn);
    CHECK_EQ_INT(pg_txn_query(d.txn, "SELECT 2", 0, NULL, on_answer, &d.answer, NULL), 0);
    uv_check_init(loop, &d.check);
    d.check.data = &d;
    uv_check_start(&d.check, on_check_abandon);
    CHECK(wait_for(&d.abandoned, 1, 10000)); /* abandoned with its answer due, not before */
    run_for(50);
    CHECK_EQ_INT(d.answer.done, 0);
    CHECK(wait_idle(pool, 2000));
    uv_close((uv_handle_t *)&d.check, NULL);
    run_for(10);
    answer_clear(&d.answer);
}

/* A statement alone on its connection whose caller went away is cancelled on the server
 * too: the connection serves the next query long before the statement would have ended. */
static void test_cancel_reaches_server(void)
{
    pg_pool_t *one = pool_make(NULL, NULL, 1, 0, 0);
    CHECK_OR_RETURN(wait_connected(one, 1, 5000));
    answer_t a = {0}, b = {0};
    pg_handle_t *h = NULL;
    CHECK_EQ_INT(pg_query(one, "SELECT pg_sleep(5)", 0, NULL, on_answer, &a, &h), 0);
    run_for(200);
    CHECK_EQ_INT(pg_pool_status(one).busy, 1);
    uint64_t t0 = now_ms();
    pg_cancel(h);
    query_sync(one, &b, "SELECT 1", 0, NULL);
    CHECK(b.ok);
    CHECK(now_ms() - t0 < 2500); /* not the 4.8 s the sleep had left */
    CHECK_EQ_INT(a.done, 0);
    answer_clear(&b);
    pool_close_wait(one);
}

/* pg_interrupt: the caller still gets its callback, soon. A running statement alone on
 * its connection is cancelled on the server (57014); one still waiting fails at once. */
static void test_interrupt(void)
{
    pg_pool_t *one = pool_make(NULL, NULL, 1, 0, 0);
    CHECK_OR_RETURN(wait_connected(one, 1, 5000));
    answer_t running = {0}, waiting = {0};
    pg_handle_t *hr = NULL, *hw = NULL;
    CHECK_EQ_INT(pg_query(one, "SELECT pg_sleep(5)", 0, NULL, on_answer, &running, &hr), 0);
    run_for(200);
    CHECK_EQ_INT(pg_query(one, "SELECT 1", 0, NULL, on_answer, &waiting, &hw), 0);
    CHECK_EQ_INT(pg_pool_status(one).waiting, 1);
    uint64_t t0 = now_ms();
    pg_interrupt(hw);
    pg_interrupt(hr);
    CHECK(wait_for(&running.done, 1, 3000));
    CHECK(now_ms() - t0 < 2500);
    CHECK_EQ_INT(waiting.done, 1);
    CHECK_EQ_INT(waiting.kind, PG_ECANCELLED);
    CHECK(!running.ok);
    CHECK_EQ_INT(running.kind, PG_EQUERY);
    CHECK_STR(running.sqlstate, "57014");
    answer_clear(&running);
    answer_clear(&waiting);
    CHECK(wait_idle(one, 3000));
    pool_close_wait(one);
}

static void test_cancel(void)
{
    answer_t a = {0};
    pg_handle_t *h = NULL;
    CHECK_EQ_INT(pg_query(pool, "SELECT pg_sleep(1)", 0, NULL, on_answer, &a, &h), 0);
    CHECK_OR_RETURN(h);
    run_for(50);
    CHECK_EQ_INT(pg_pool_status(pool).busy, 1);
    pg_cancel(h);
    run_for(1300);
    CHECK_EQ_INT(a.done, 0);
    CHECK_EQ_INT(pg_pool_status(pool).busy, 0);
    query_sync(pool, &a, "SELECT 1", 0, NULL);
    CHECK(a.ok);

    /* Waiting in the queue, then cancelled: never runs. */
    answer_t busy[4] = {{0}};
    int all = 0;
    for (int i = 0; i < 4; i++)
        pg_query(pool, "SELECT pg_sleep(0.3)", 0, NULL, on_answer, &busy[i], NULL);
    run_for(20); /* they go out when the loop is about to block */
    answer_clear(&a);
    CHECK_EQ_INT(pg_query(pool, "SELECT 1", 0, NULL, on_answer, &a, &h), 0);
    CHECK_EQ_INT(pg_pool_status(pool).waiting, 1);
    pg_cancel(h);
    CHECK_EQ_INT(pg_pool_status(pool).waiting, 0);
    run_for(600);
    for (int i = 0; i < 4; i++) {
        all += busy[i].done;
        answer_clear(&busy[i]);
    }
    CHECK_EQ_INT(all, 4);
    CHECK_EQ_INT(a.done, 0);

    /* Cancelled inside a transaction: the transaction is rolled back. */
    pg_txn_t *txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    txn_query_sync(txn, &a, sqlf("INSERT INTO %s (id) VALUES (20)", table), 0, NULL);
    CHECK(a.ok);
    answer_clear(&a);
    CHECK_EQ_INT(pg_txn_query(txn, "SELECT pg_sleep(0.3)", 0, NULL, on_answer, &a, &h), 0);
    run_for(50);
    pg_cancel(h);
    CHECK(wait_idle(pool, 2000));
    CHECK_EQ_INT(a.done, 0);
    CHECK_EQ_INT(count_id("20"), 0);

    /* Cancelled BEGIN: no callback, the connection comes back. */
    begun_t b = {0};
    CHECK_EQ_INT(pg_txn_begin(pool, on_begin, &b, &h), 0);
    pg_cancel(h);
    CHECK(wait_idle(pool, 2000));
    run_for(50);
    CHECK_EQ_INT(b.done, 0);
    answer_clear(&a);
}

static void test_unreachable(void)
{
    /* Nothing listens there: the first attempt fails, then every query fails fast. */
    pg_pool_t *p = pool_make("/nonexistent-panthera-test", NULL, 2, 0, 0);
    CHECK_OR_RETURN(p);
    answer_t a = {0};
    query_sync(p, &a, "SELECT 1", 0, NULL);
    CHECK(!a.ok);
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE);
    CHECK_CONTAINS(a.message, "unreachable");
    answer_clear(&a);
    CHECK_EQ_INT(pg_query(p, "SELECT 1", 0, NULL, on_answer, &a, NULL), 0);
    CHECK(delivered_at_once(&a.done, 1)); /* known down: fails fast */
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE);
    CHECK_EQ_INT(pg_pool_status(p).connected, 0);
    pool_close_wait(p);

    /* A host name goes through uv_getaddrinfo; what waits for the first attempt fails with it. */
    p = pool_make("localhost", "1", 1, 0, 0);
    CHECK_OR_RETURN(p);
    query_sync(p, &a, "SELECT 1", 0, NULL);
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE);
    pool_close_wait(p);

    /* Bad configuration: refused at once. */
    pg_config_t cfg = {.conninfo = "host=x nosuchkeyword=1"};
    CHECK(pg_pool_new(loop, &cfg) == NULL);
    cfg = (pg_config_t){.conninfo = "host=x", .size = -1};
    CHECK(pg_pool_new(loop, &cfg) == NULL);
    answer_clear(&a);
}

/* The server comes back while every connection waits out a long backoff: the next request
 * starts an attempt at once and, since attempts were failing fast, waits for it and is
 * served. Before pg_conn_probe it was answered "unreachable" for up to the 5 s backoff. */
static void test_comes_back(void)
{
    char dir[] = "/tmp/test_pg.XXXXXX";
    CHECK_OR_RETURN(mkdtemp(dir));
    const char *port = getenv("PANTHERA_PGPORT");
    if (!port || !*port)
        port = "5432";
    char link[256], target[256];
    snprintf(link, sizeof(link), "%s/.s.PGSQL.%s", dir, port);
    snprintf(target, sizeof(target), "%s/.s.PGSQL.%s", getenv("PANTHERA_PGHOST"), port);
    pg_pool_t *p = pool_make(dir, NULL, 2, 0, 0);
    CHECK_OR_RETURN(p);
    answer_t a = {0};
    query_sync(p, &a, "SELECT 1", 0, NULL);
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE); /* nothing listens there yet */
    answer_clear(&a);
    run_for(2000); /* every connection fails again and again: backoffs grow past a second */
    CHECK_OR_RETURN(symlink(target, link) == 0);
    CHECK_EQ_INT(pg_pool_status(p).connected, 0);
    query_sync(p, &a, "SELECT 1", 0, NULL);
    CHECK(a.ok);
    CHECK_EQ_INT(pg_pool_status(p).connected >= 1, 1);
    answer_clear(&a);
    pool_close_wait(p);
    unlink(link);
    rmdir(dir);
}

/* A server that accepts connections and never says a word. */
static void test_connect_timeout(void)
{
    char dir[] = "/tmp/test_pg.XXXXXX";
    CHECK_OR_RETURN(mkdtemp(dir));
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/.s.PGSQL.5999", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_OR_RETURN(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    CHECK(listen(fd, 16) == 0);
    pg_pool_t *p = pool_make_cfg(dir, "5999", (pg_config_t){.size = 2, .connect_timeout_ms = 300});
    answer_t a = {0};
    uint64_t t0 = now_ms();
    query_sync(p, &a, "SELECT 1", 0, NULL);
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE); /* waited for the attempt, not wait_timeout */
    CHECK(a.at - t0 >= 250);               /* never before connect_timeout */
    CHECK_CONTAINS(a.message, "no connection within 300 ms");
    answer_clear(&a);
    CHECK_EQ_INT(pg_query(p, "SELECT 1", 0, NULL, on_answer, &a, NULL), 0);
    CHECK(delivered_at_once(&a.done, 1)); /* now known down: fails fast */
    pool_close_wait(p);
    close(fd);
    unlink(addr.sun_path);
    rmdir(dir);
    answer_clear(&a);
}

/* The server ends a session: the transaction on it and a running query fail with
 * PG_EUNAVAILABLE, and the pool reconnects by itself. */
static void test_connection_lost(void)
{
    answer_t a = {0}, b = {0}, end = {0};
    pg_txn_t *txn = begin_sync(pool);
    CHECK_OR_RETURN(txn);
    txn_query_sync(txn, &a, "SELECT pg_backend_pid()", 0, NULL);
    char pid[32];
    snprintf(pid, sizeof(pid), "%s", a.value[0] ? a.value[0] : "0");
    query_sync(pool, &b, "SELECT pg_terminate_backend($1::int)", 1, (const char *const[]){pid});
    CHECK(b.ok && b.bval);
    txn_query_sync(txn, &a, "SELECT 1", 0, NULL);
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE);
    txn_query_sync(txn, &a, "SELECT 2", 0, NULL);
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE);
    end_sync(txn, true, &end);
    CHECK_EQ_INT(end.kind, PG_EUNAVAILABLE);
    CHECK(wait_connected(pool, 4, 3000));

    char tagged[128];
    snprintf(tagged, sizeof(tagged), "SELECT pg_sleep(3) -- %s", table);
    answer_clear(&a);
    CHECK_EQ_INT(pg_query(pool, tagged, 0, NULL, on_answer, &a, NULL), 0);
    run_for(100);
    query_sync(pool, &b, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1",
               1, (const char *const[]){tagged});
    CHECK_EQ_INT(b.rows, 1);
    CHECK(wait_for(&a.done, 1, 2000));
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE);
    CHECK_STR(a.sqlstate, "57P01");
    CHECK(wait_connected(pool, 4, 3000));
    query_sync(pool, &a, "SELECT 1", 0, NULL);
    CHECK(a.ok);
    answer_clear(&a);
    answer_clear(&b);
    answer_clear(&end);
}

/* statement_timeout is the server's; when the server ignores it, the pool's own answer
 * deadline (statement_timeout + 2 s) drops the connection. */
static void test_answer_deadline(void)
{
    pg_pool_t *p = pool_make_cfg(NULL, NULL, (pg_config_t){.size = 1, .statement_timeout_ms = 300});
    answer_t a = {0};
    query_sync(p, &a, "SELECT pg_sleep(1)", 0, NULL);
    CHECK_STR(a.sqlstate, "57014");
    query_sync(p, &a, "SET statement_timeout = 0", 0, NULL);
    CHECK(a.ok);
    uint64_t t0 = now_ms();
    query_sync(p, &a, "SELECT pg_sleep(4)", 0, NULL);
    CHECK_EQ_INT(a.kind, PG_EUNAVAILABLE);
    CHECK(a.at - t0 >= 2200); /* never before the deadline; the message names it */
    CHECK_CONTAINS(a.message, "no answer within 2300 ms");
    CHECK(wait_connected(p, 1, 3000));
    query_sync(p, &a, "SHOW statement_timeout", 0, NULL);
    CHECK_STR(a.value[0], "300ms"); /* a new session, configured again */
    pool_close_wait(p);
    answer_clear(&a);
}

static void test_multihost(void)
{
    /* The first host refuses (TCP port 1), libpq moves on to the second: a new socket, often
     * under the old descriptor number, while the pool is in the middle of polling. */
    char hosts[512], ports[64];
    snprintf(hosts, sizeof(hosts), "127.0.0.1,%s", getenv("PANTHERA_PGHOST"));
    snprintf(ports, sizeof(ports), "1,%s", getenv("PANTHERA_PGPORT"));
    pg_pool_t *p = pool_make(hosts, ports, 2, 0, 0);
    CHECK_OR_RETURN(p);
    CHECK(wait_connected(p, 2, 5000));
    answer_t a = {0};
    query_sync(p, &a, "SELECT 40 + 2", 0, NULL);
    CHECK_EQ_INT(a.ival, 42);
    answer_clear(&a);
    pool_close_wait(p);
}

static void on_begin_record(pg_txn_t *txn, const pg_error_t *err, void *ud)
{
    begun_t *b = ud;
    b->done++;
    b->txn = txn;
    b->kind = err ? err->kind : 0;
}

static void test_close_pending(void)
{
    pg_pool_t *p = pool_make(NULL, NULL, 1, 0, 0);
    CHECK_OR_RETURN(wait_connected(p, 1, 5000));
    answer_t q[3] = {{0}}, ping = {0};
    begun_t b = {0};
    pg_query(p, "SELECT pg_sleep(0.5)", 0, NULL, on_answer, &q[0], NULL);
    run_for(20); /* q[0] runs, the rest waits for it */
    pg_query(p, "SELECT 1", 0, NULL, on_answer, &q[1], NULL);
    pg_query_prepared(p, "x", "SELECT 2", 0, NULL, on_answer, &q[2], NULL);
    pg_txn_begin(p, on_begin_record, &b, NULL);
    pg_ping(p, on_done, &ping, NULL);
    CHECK_EQ_INT(pg_pool_status(p).waiting, 4);
    int closed = 0;
    pg_pool_close(p, on_closed, &closed);
    CHECK_EQ_INT(pg_query(p, "SELECT 1", 0, NULL, on_answer, &q[0], NULL), -ESHUTDOWN);
    CHECK(wait_for(&closed, 1, 3000));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(q[i].done, 1);
        CHECK_EQ_INT(q[i].kind, PG_ECANCELLED);
        answer_clear(&q[i]);
    }
    CHECK_EQ_INT(ping.kind, PG_ECANCELLED);
    CHECK_EQ_INT(b.done, 1);
    CHECK(b.txn == NULL);
    CHECK_EQ_INT(b.kind, PG_ECANCELLED);
    answer_clear(&ping);

    /* A transaction the caller holds keeps the pool until the caller ends it. */
    p = pool_make(NULL, NULL, 1, 0, 0);
    pg_txn_t *txn = begin_sync(p);
    CHECK_OR_RETURN(txn);
    closed = 0;
    pg_pool_close(p, on_closed, &closed);
    run_for(100);
    CHECK_EQ_INT(closed, 0);
    answer_t a = {0}, end = {0};
    txn_query_sync(txn, &a, "SELECT 1", 0, NULL);
    CHECK_EQ_INT(a.kind, PG_ECANCELLED);
    end_sync(txn, false, &end);
    CHECK_EQ_INT(end.kind, PG_ECANCELLED);
    CHECK(wait_for(&closed, 1, 3000));
    answer_clear(&a);
    answer_clear(&end);
}

static void test_teardown(void)
{
    answer_t a = {0};
    query_sync(pool, &a, sqlf("DROP TABLE IF EXISTS %s", table), 0, NULL);
    CHECK(a.ok);
    answer_clear(&a);
    CHECK_EQ_INT(pg_pool_status(pool).busy, 0);
}

static int cmd_basic(void)
{
    snprintf(table, sizeof(table), "test_pg_%d", (int)getpid());
    pool = pool_make(NULL, NULL, 4, 0, 0);
    if (!pool)
        return 1;
    RUN(test_setup);
    RUN(test_params);
    RUN(test_errors);
    RUN(test_prepared);
    RUN(test_groups);
    RUN(test_pipeline);
    RUN(test_transactions);
    RUN(test_txn_joined);
    RUN(test_cancel);
    RUN(test_cancel_reaches_server);
    RUN(test_interrupt);
    RUN(test_abandon_due);
    RUN(test_connection_lost);
    RUN(test_answer_deadline);
    RUN(test_unreachable);
    RUN(test_comes_back);
    RUN(test_connect_timeout);
    RUN(test_multihost);
    RUN(test_close_pending);
    RUN(test_teardown);
    pool_close_wait(pool);
    return 0;
}

/* ---- queue ---- */

static int cmd_queue(void)
{
    /* The pool's queue, told by what happens and in which order, not by the clock: two
     * statements that outlast every wait here hold both connections, five more queue, the
     * rest are refused at once; the queued ones expire (never before wait_timeout), and
     * once a connection frees a queued statement runs on it. */
    enum { N = 20, WAIT_MS = 300, SIZE = 2, QUEUE = 5 };
    pg_pool_t *p = pool_make_cfg(NULL, NULL,
                                 (pg_config_t){.size = SIZE, .queue_max = QUEUE,
                                               .wait_timeout_ms = WAIT_MS,
                                               .statement_timeout_ms = 60000});
    check_current = "queue";
    if (!p || !wait_connected(p, SIZE, 10000)) {
        CHECK(!"two connections within 10 s");
        return 1;
    }
    static answer_t a[N];
    uint64_t t0 = now_ms();
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(pg_query(p, i < SIZE ? "SELECT pg_sleep(4)" : "SELECT 1", 0, NULL, on_answer,
                              &a[i], NULL),
                     0);
    /* The overflow is answered on the loop's next turns, without waiting for anything. */
    for (int turn = 0; turn < 3; turn++)
        uv_run(loop, UV_RUN_NOWAIT);
    int overflow = 0;
    for (int i = SIZE + QUEUE; i < N; i++)
        overflow += a[i].done == 1 && a[i].kind == PG_EUNAVAILABLE;
    CHECK_EQ_INT(overflow, N - SIZE - QUEUE);
    pg_status_t st = pg_pool_status(p);
    CHECK_EQ_INT(st.busy, SIZE);
    CHECK_EQ_INT(st.waiting, QUEUE);
    /* The queued ones expire while the sleepers hold both connections. */
    int expired = 0;
    for (int i = SIZE; i < SIZE + QUEUE; i++) {
        CHECK(wait_for(&a[i].done, 1, 10000));
        expired += a[i].kind == PG_EUNAVAILABLE && a[i].at - t0 >= WAIT_MS - 1;
    }
    CHECK_EQ_INT(expired, QUEUE);
    for (int i = 0; i < SIZE; i++) {
        CHECK(wait_for(&a[i].done, 1, 20000));
        CHECK(a[i].ok);
        CHECK(a[i].order > a[SIZE + QUEUE - 1].order); /* held their connections throughout */
    }
    printf("queue: ok=%d overflow=%d expired=%d\n", a[0].ok + a[1].ok, overflow, expired);
    for (int i = 0; i < N; i++)
        answer_clear(&a[i]);
    CHECK(wait_idle(p, 10000));
    pool_close_wait(p);

    /* A queued statement runs as soon as a connection frees (a wait no run here reaches). */
    p = pool_make(NULL, NULL, 1, 1, 600000);
    CHECK(p && wait_connected(p, 1, 10000));
    answer_t first = {0}, queued = {0};
    CHECK_EQ_INT(pg_query(p, "SELECT pg_sleep(0.5)", 0, NULL, on_answer, &first, NULL), 0);
    CHECK_EQ_INT(pg_query(p, "SELECT 1", 0, NULL, on_answer, &queued, NULL), 0);
    CHECK(wait_for(&queued.done, 1, 20000));
    CHECK(first.done == 1 && first.ok && queued.ok);
    CHECK(first.order < queued.order);
    answer_clear(&first);
    answer_clear(&queued);
    pool_close_wait(p);
    return 0;
}

/* ---- loop ---- */

typedef struct loop_state {
    pg_pool_t *pool;
    uv_timer_t tick;
    uint64_t stop_at;
    unsigned seq;
    int outstanding;
    long ok, unavailable, other;
    uint64_t max_latency;
    int64_t first_unavail, last_unavail, first_ok_after;
    long ok_before, ok_after;
} loop_state_t;

typedef struct loop_op {
    loop_state_t *st;
    uint64_t t0;
    pg_txn_t *txn;
} loop_op_t;

static void loop_count(loop_op_t *op, const pg_error_t *err, bool final)
{
    loop_state_t *st = op->st;
    uint64_t took = now_ms() - op->t0;
    if (took > st->max_latency)
        st->max_latency = took;
    op->t0 = now_ms();
    if (err && err->kind != PG_EUNAVAILABLE) {
        fprintf(stderr, "loop: unexpected %s error %s: %s\n", pg_errkind_name(err->kind),
                err->sqlstate, err->message);
        st->other++;
    }
    if (err && err->kind == PG_EUNAVAILABLE) {
        int64_t now = wall_ms();
        if (!st->first_unavail)
            st->first_unavail = now;
        st->last_unavail = now;
        st->first_ok_after = 0;
        st->unavailable++;
    }
    if (!err && final) {
        st->ok++;
        if (!st->first_unavail)
            st->ok_before++;
        else
            st->ok_after++;
        if (st->first_unavail && !st->first_ok_after)
            st->first_ok_after = wall_ms();
    }
    if (err || final) {
        st->outstanding--;
        free(op);
    }
}

static void loop_on_query(const pg_result_t *res, const pg_error_t *err, void *ud)
{
    int64_t v = 0;
    if (!err && (pg_result_int64(res, 0, 0, &v) != 0 || v != 42)) {
        fprintf(stderr, "loop: wrong answer\n");
        ((loop_op_t *)ud)->st->other++;
    }
    loop_count(ud, err, true);
}

static void loop_on_commit(const pg_error_t *err, void *ud)
{
    loop_count(ud, err, true);
}

static void loop_on_txn_query(const pg_result_t *res, const pg_error_t *err, void *ud)
{
    loop_op_t *op = ud;
    UNUSED(res);
    pg_txn_t *txn = op->txn;
    if (err) {
        pg_txn_rollback(txn, NULL, NULL, NULL);
        loop_count(op, err, true);
        return;
    }
    loop_count(op, NULL, false);
    pg_txn_commit(txn, loop_on_commit, op, NULL);
}

static void loop_on_begin(pg_txn_t *txn, const pg_error_t *err, void *ud)
{
    loop_op_t *op = ud;
    if (err) {
        loop_count(op, err, true);
        return;
    }
    loop_count(op, NULL, false);
    op->txn = txn;
    pg_txn_query(txn, "SELECT $1::int", 1, (const char *const[]){"42"}, loop_on_txn_query, op,
                 NULL);
}

static void loop_tick(uv_timer_t *t)
{
    loop_state_t *st = t->data;
    if (now_ms() >= st->stop_at) {
        uv_timer_stop(t);
        return;
    }
    loop_op_t *op = xcalloc(1, sizeof(*op));
    op->st = st;
    op->t0 = now_ms();
    st->outstanding++;
    const char *v[] = {"40", "2"};
    switch (st->seq++ % 3) {
    case 0: pg_query(st->pool, "SELECT $1::int + $2::int", 2, v, loop_on_query, op, NULL); break;
    case 1:
        pg_query_prepared(st->pool, "loop_add", "SELECT $1::int + $2::int", 2, v, loop_on_query, op,
                          NULL);
        break;
    default: pg_txn_begin(st->pool, loop_on_begin, op, NULL); break;
    }
}

static int cmd_loop(int seconds)
{
    loop_state_t st = {0};
    st.pool = pool_make(NULL, NULL, 4, 0, 0);
    if (!st.pool)
        return 1;
    wait_connected(st.pool, 4, 5000);
    st.stop_at = now_ms() + (uint64_t)seconds * 1000;
    uv_timer_init(loop, &st.tick);
    st.tick.data = &st;
    uv_timer_start(&st.tick, loop_tick, 0, 10);
    printf("running\n"); /* the driver restarts PostgreSQL only after this */
    fflush(stdout);
    while (now_ms() < st.stop_at)
        run_for(100);
    uv_timer_stop(&st.tick);
    uint64_t end = now_ms() + PG_DEFAULT_WAIT_TIMEOUT_MS + 3000;
    while (st.outstanding > 0 && now_ms() < end)
        run_for(20);
    /* max_latency is a figure for the driver to print; a hang is a callback never made. */
    printf("loop: ok=%ld unavailable=%ld other=%ld outstanding=%d max_latency_ms=%" PRIu64
           " ok_before=%ld ok_after=%ld first_unavailable=%" PRId64 " last_unavailable=%" PRId64
           " first_ok_after=%" PRId64 "\n",
           st.ok, st.unavailable, st.other, st.outstanding, st.max_latency, st.ok_before,
           st.ok_after, st.first_unavail, st.last_unavail, st.first_ok_after);
    fflush(stdout);
    if (st.outstanding > 0) {
        fprintf(stderr, "loop: %d operations never got their callback\n", st.outstanding);
        return 1; /* the pool cannot be closed cleanly with callbacks owed to freed state */
    }
    uv_close((uv_handle_t *)&st.tick, NULL);
    pool_close_wait(st.pool);
    return st.other ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !getenv("PANTHERA_PGHOST")) {
        fprintf(stderr, "usage: PANTHERA_PGHOST=... test_pg basic | queue | loop SECONDS\n");
        return 2;
    }
    static uv_loop_t the_loop;
    loop = &the_loop;
    uv_loop_init(loop);
    uv_timer_init(loop, &deadline);
    int rc;
    if (!strcmp(argv[1], "basic")) {
        rc = cmd_basic();
    } else if (!strcmp(argv[1], "queue")) {
        rc = cmd_queue();
    } else if (!strcmp(argv[1], "loop") && argc == 3 && atoi(argv[2]) > 0) {
        rc = cmd_loop(atoi(argv[2]));
    } else {
        fprintf(stderr, "unknown command %s\n", argv[1]);
        return 2;
    }
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    int closed = uv_loop_close(loop);
    check_current = "loop";
    CHECK_EQ_INT(closed, 0); /* a handle left behind means the pool did not close it */
    int failed = check_finish();
    return rc ? rc : failed;
}
