/*
 * pg_pipeline.c — what the connections of the PostgreSQL pool send and how their answers
 * come back: groups of requests with one sync point each, the statements prepared on each
 * connection, reading the results and the socket callback of a working connection. The
 * pool's requests, its wait queue, transactions and the calls of pg.h are in pg.c; one
 * connection's life (name lookup, handshake, backoff, loss) is in pg_conn.c.
 *
 * Every connection is in libpq's pipeline mode. A connection with nothing in flight takes
 * work: one request of a transaction, or a group of waiting requests written with one
 * send. Requests submitted while a connection is idle are not sent at once but when the
 * loop is about to block (the kick, in pg.c), so that what one loop iteration read from
 * its clients goes to PostgreSQL as one group on one connection: one send, one wake-up of
 * one backend, one answer to read, where sending each at once costs one of each per
 * request.
 *
 * A group ends with one sync point, so PostgreSQL runs it as one implicit transaction.
 * Its answers are therefore held until the sync point arrives and delivered only if every
 * statement of the group succeeded, that is, committed. If one failed, PostgreSQL rolled
 * back the ones before it and skipped the ones after it (PGRES_PIPELINE_ABORTED); none of
 * those is delivered: they go back to the head of the queue and run again, each in a group
 * of its own, where they behave exactly as they would have alone. The one that failed
 * keeps its error (it failed where it stood in a serial order), unless it is an error a
 * neighbour can cause by holding locks or by a statement it prepared (class 40, 55P03,
 * 26000): then it goes again alone too. So no request is answered from a transaction that
 * did not commit or fails for a neighbour's error; what grouping adds is only that the
 * statements of one group see each other's writes, in order, as they would one after
 * another.
 *
 * A request that needs a statement prepared carries the PREPARE in the same group, ahead
 * of its execution; a group ends before a request that would rely on a PREPARE still
 * unanswered. A 26000 of a request alone (DEALLOCATE or DISCARD behind the pool's back)
 * sends the request again, with its PREPARE, at the end of the pipeline, and so does a
 * deadlock or serialization failure of a request alone outside a transaction (up to
 * PG_CONFLICT_RETRIES times): the two cases where answers can come back out of the order
 * of the queue.
 *
 * What is never grouped: a transaction's statements (its connection is pinned, nothing
 * else goes there) and SQL that may open a transaction block (BEGIN, START ...), which
 * would swallow what follows it; these go alone, and the connection is checked for an
 * open transaction (and rolled back) before it takes more. A transaction's statements
 * are each a group of their own but do not wait for each other: each is sent as soon as
 * it is issued, behind the ones still in flight. With a sync point after each, PostgreSQL
 * runs them exactly as it would one at a time (a failed one aborts the transaction block,
 * and the ones after it get 25P02 as they would have anyway), and a transaction of k
 * statements costs one round trip instead of k — a write with one px_event_emit paid a
 * whole round trip for its INSERT (tests/bench/events.sh), a batch of event deliveries one
 * per SAVEPOINT.
 *
 * Still, each sync point costs an answer of its own: PostgreSQL flushes at every one, and
 * on a busy machine each flush is a wake-up of this process (and each send one of the
 * backend's), which made px_event_emit's statement cost several times what running it
 * costs. So a statement issued with pg_txn_query_joined waits for the transaction's next
 * one and shares its sync point (pg.c sends it alone at the kick if none comes). Nothing
 * changes for either statement when both succeed. When the first fails, PostgreSQL skips
 * the second (PGRES_PIPELINE_ABORTED): it gets the 25P02 it would have got alone, or, as a
 * COMMIT, runs again alone, rolls back and reports the first error, exactly as without
 * joining (txn_group_finish).
 *
 * Waiting. A request taken into a group no longer waits for a connection but for the
 * statements ahead of it. So that grouping does not stretch wait_timeout_ms, a request
 * joins a group only if the ones ahead of it are expected to be done before its own wait
 * deadline, going by how long a statement has kept a connection lately (a decaying
 * maximum, quick to rise when queries get slow), and a group takes at most GROUP_MAX.
 * Slow queries therefore still wait in the pool's queue for whichever connection frees
 * first.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg_internal.h"
#include "util.h"

#define GROUP_MAX 16          /* requests one connection takes from the queue at once */
#define GROUP_SPAN_NS 2000000 /* how long a group may keep its connection, see group_cap */

/* ---- prepared statements, per connection ---- */

static stmt_t *stmt_find(conn_t *c, const char *name)
{
    for (size_t i = 0; i < c->nstmts; i++)
        if (!strcmp(c->stmts[i].name, name))
            return &c->stmts[i];
    return NULL;
}

static void stmt_add(conn_t *c, const char *name, const char *sql)
{
    if (c->nstmts == c->capstmts) {
        c->capstmts = c->capstmts ? c->capstmts * 2 : 8;
        c->stmts = xrealloc(c->stmts, c->capstmts * sizeof(*c->stmts));
    }
    c->stmts[c->nstmts++] = (stmt_t){xstrdup(name), xstrdup(sql), true};
}

static void stmt_forget(conn_t *c, const char *name)
{
    stmt_t *st = stmt_find(c, name);
    if (!st)
        return;
    free(st->name);
    free(st->sql);
    *st = c->stmts[--c->nstmts];
}

void pg_stmts_clear(conn_t *c)
{
    for (size_t i = 0; i < c->nstmts; i++) {
        free(c->stmts[i].name);
        free(c->stmts[i].sql);
    }
    free(c->stmts);
    c->stmts = NULL;
    c->nstmts = c->capstmts = 0;
}

/* ---- sending ---- */

/* Whether `sql` may open a transaction block: its first word is BEGIN or START. */
static bool may_begin(const char *s)
{
    for (;;) {
        s += strspn(s, " \t\n\r\f\v");
        if (s[0] == '-' && s[1] == '-') {
            s += strcspn(s, "\n");
        } else if (s[0] == '/' && s[1] == '*') {
            int depth = 1; /* PostgreSQL's block comments nest */
            for (s += 2; *s && depth > 0; s++) {
                if (s[0] == '/' && s[1] == '*')
                    depth++, s++;
                else if (s[0] == '*' && s[1] == '/')
                    depth--, s++;
            }
        } else {
            break;
        }
    }
    return !strncasecmp(s, "begin", 5) || !strncasecmp(s, "start", 5);
}

/* Requests that run with nothing else in the pipeline. */
static bool req_alone(const pg_handle_t *req)
{
    return req->alone || req->kind == REQ_BEGIN || req->kind == REQ_COMMIT ||
           req->kind == REQ_ROLLBACK || req->txn || (req->kind == REQ_QUERY && may_begin(req->sql));
}

static int pipeline_sync(PGconn *pg)
{
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
    return PQsendPipelineSync(pg); /* libpq 17: no flush, conn_flush sends the batch */
#else
    return PQpipelineSync(pg);
#endif
}

static bool conn_flush(conn_t *c)
{
    int flushed = PQflush(c->pg);
    if (flushed < 0) {
        pg_conn_lost(c, PQerrorMessage(c->pg), NULL);
        return false;
    }
    c->flushing = flushed == 1;
    return true;
}

/* Appends the request's statements to the pipeline: PREPARE if this connection does not
 * know the statement yet, then the statement; conn_sync ends the group. False when the
 * connection was lost. */
static bool conn_queue(conn_t *c, pg_handle_t *req)
{
    req->preparing = false;
    req->group_end = false;
    if (req->name) {
        const stmt_t *st = stmt_find(c, req->name);
        if (st && strcmp(st->sql, req->sql) != 0) {
            char *why =
                xasprintf("prepared statement \"%s\" already stands for other SQL", req->name);
            pg_req_fail(req, PG_EQUERY, "42P05", why);
            free(why);
            return true;
        }
        req->preparing = !st;
    }
    req->where = AT_RUNNING;
    list_push(&c->sent, &req->link);
    if (c->nsent++ == 0) {
        c->head_since = uv_hrtime();
        c->reading = req;
        c->phase = 0;
        c->last_null = false;
    }
    bool ok = !req->preparing || PQsendPrepare(c->pg, req->name, req->sql, req->nparams, NULL);
    if (ok && req->name)
        ok = PQsendQueryPrepared(c->pg, req->name, req->nparams, req->values, NULL, NULL, 0);
    else if (ok)
        ok = PQsendQueryParams(c->pg, req->sql, req->nparams, NULL, req->values, NULL, NULL, 0);
    if (!ok) {
        pg_conn_lost(c, PQerrorMessage(c->pg), NULL); /* fails req with the rest */
        return false;
    }
    if (req->preparing)
        stmt_add(c, req->name, req->sql);
    return true;
}

/* Ends the group queued since the last sync point, if any. False when the connection was
 * lost. */
static bool conn_sync(conn_t *c)
{
    if (c->nsent == 0)
        return true;
    pg_handle_t *last = pg_req_of(c->sent.prev);
    if (last->group_end)
        return true;
    if (!pipeline_sync(c->pg)) {
        pg_conn_lost(c, PQerrorMessage(c->pg), NULL);
        return false;
    }
    last->group_end = true;
    return true;
}

static pg_handle_t *rollback_new(pg_pool_t *pool, pg_txn_t *txn)
{
    pg_handle_t *req = pg_req_new(pool, REQ_ROLLBACK, NULL, "ROLLBACK", 0, NULL);
    req->silent = true;
    req->txn = txn;
    return req;
}

/* Only meaningful with nothing in flight: libpq says "active" while it has commands. */
static bool conn_in_txn(const conn_t *c)
{
    PGTransactionStatusType st = PQtransactionStatus(c->pg);
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR;
}

/* How many waiting requests this connection may take into its group now. Filling one
 * connection before the next saves sends and wake-ups (see the top), but the statements of
 * a group run one after another while other connections may sit idle: so a group takes as
 * many as PostgreSQL is expected to answer within GROUP_SPAN_NS, going by service_ns (few
 * when queries are slow, one until the first answer), or its share of the queue among the
 * idle connections if that is more; conn_pick keeps either within the wait deadlines. */
static int group_cap(const conn_t *c)
{
    const pg_pool_t *pool = c->pool;
    int idle = pg_idle_count(pool);
    if (idle < 1)
        idle = 1;
    uint64_t share = (uint64_t)(pool->nwaiting + idle - 1) / (uint64_t)idle;
    if (pool->service_ns == 0)
        return 1; /* nothing answered yet: how slow it is, nobody knows */
    uint64_t fit = GROUP_SPAN_NS / pool->service_ns;
    uint64_t cap = fit > share ? fit : share;
    return cap < 1 ? 1 : cap > GROUP_MAX ? GROUP_MAX : (int)cap;
}

/* What this connection should send next, or NULL when it has nothing (more) to send. */
static pg_handle_t *conn_pick(conn_t *c, int cap)
{
    pg_pool_t *pool = c->pool;
    pg_txn_t *txn = c->txn;
    if (c->cancelling)
        return NULL; /* see "cancelling" in pg.c */
    if (c->nsent > 0 && txn && !txn->abandoned) {
        /* A transaction's next statement follows the ones in flight, in a group of its
         * own (see the top): only once the one before it has its sync point, unless that
         * one joins it (pg_txn_query_joined). */
        const pg_handle_t *prev = pg_req_of(c->sent.prev);
        if ((!prev->group_end && !prev->joins) || list_empty(&txn->queue))
            return NULL;
        return pg_req_pop(&txn->queue);
    }
    if (c->nsent > 0 && (txn || req_alone(pg_req_of(c->sent.prev))))
        return NULL;
    if (txn) {
        if (!txn->abandoned)
            return list_empty(&txn->queue) ? NULL : pg_req_pop(&txn->queue);
        if (conn_in_txn(c))
            return rollback_new(pool, txn);
        pg_txn_unpin(txn);
    }
    if (c->nsent == 0 && conn_in_txn(c))
        return rollback_new(pool, NULL); /* someone sent BEGIN through pg_query */
    if (list_empty(&pool->waiting))
        return NULL;
    pg_handle_t *req = pg_req_first(&pool->waiting);
    if (c->nsent > 0) {
        if (c->nsent >= cap || req_alone(req))
            return NULL;
        const stmt_t *st = req->name ? stmt_find(c, req->name) : NULL;
        if (st && st->pending)
            return NULL; /* not behind a PREPARE that may fail: see the top */
        uint64_t ahead_ms = pool->service_ns * (uint64_t)c->nsent / 1000000;
        if (req->deadline && uv_now(pool->loop) + ahead_ms >= req->deadline)
            return NULL;
    }
    list_unlink(&req->link);
    pool->nwaiting--;
    if (req->kind == REQ_BEGIN) {
        c->txn = req->txn;
        req->txn->conn = c;
    }
    return req;
}

/* A transaction with statements still to send on a connection already busy with its
 * earlier ones. */
static bool txn_more(const conn_t *c)
{
    return c->txn && !c->txn->abandoned && !list_empty(&c->txn->queue);
}

void pg_pipeline_next(conn_t *c)
{
    while (c->state == CONN_READY && (c->nsent == 0 || txn_more(c))) {
        bool was_idle = c->nsent == 0;
        int cap = group_cap(c), picked = 0;
        pg_handle_t *req;
        while ((req = conn_pick(c, cap))) {
            picked++;
            if (!conn_queue(c, req))
                return;
        }
        if (c->nsent == 0) {
            if (picked > 0)
                continue; /* all refused at once (42P05): look again */
            uv_timer_stop(&c->timer);
            pg_conn_arm(c);
            return;
        }
        if (!conn_sync(c) || !conn_flush(c))
            return;
        if (was_idle) /* the watchdog is the head statement's, not restarted by what follows */
            pg_conn_deadline(c);
        pg_conn_arm(c);
    }
}

/* ---- answers ---- */

/* Errors that mean the session is over, not that the statement was wrong. */
static bool server_gone(const char *sqlstate)
{
    return sqlstate && (!strncmp(sqlstate, "57P0", 4) || !strncmp(sqlstate, "08", 2));
}

static bool result_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

/* Errors a statement can get from what a neighbour in its group did rather than from
 * what it is: a lock the group held (deadlock, serialization, NOWAIT) or a prepared
 * statement that went missing. */
static bool neighbour_caused(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state &&
           (!strncmp(state, "40", 2) || !strcmp(state, "55P03") || !strcmp(state, "26000"));
}

/* How many times a statement alone runs again after losing a lock conflict (below). */
#define PG_CONFLICT_RETRIES 3

/* A deadlock or a serialization failure: the statement lost to a concurrent one, not
 * wrong in itself. */
static bool lock_conflict(const char *sqlstate)
{
    return !strcmp(sqlstate, "40P01") || !strcmp(sqlstate, "40001");
}

/* A group of several requests reached its sync point: all succeeded and committed, or
 * `failed` (NULL if none) keeps its error and the others go again alone (see the top). */
static void group_finish(conn_t *c, int n, pg_handle_t *failed, bool all_ok)
{
    pg_pool_t *pool = c->pool;
    link_t again;
    list_init(&again);
    for (int i = 0; i < n; i++) {
        pg_handle_t *req = pg_req_pop(&c->sent);
        c->nsent--;
        if (all_ok || req->silent) {
            pg_req_finish(req);
            continue;
        }
        if (req == failed && !neighbour_caused(req->result.pg)) {
            req->errkind = PG_EQUERY;
            pg_req_finish(req);
            continue;
        }
        if (req->name && req == failed)
            stmt_forget(c, req->name); /* 26000: it prepares again */
        PQclear(req->result.pg);
        req->result.pg = NULL;
        req->alone = true;
        req->where = AT_WAITING;
        list_push(&again, &req->link);
        pool->nwaiting++;
    }
    if (!list_empty(&again))
        pg_wait_requeue(pool, &again);
}

/* PostgreSQL answers COMMIT in a failed transaction with a successful ROLLBACK. */
static void commit_rolled_back(pg_handle_t *req)
{
    req->errkind = PG_EQUERY;
    if (!pg_txn_first_error(req->txn, req)) {
        memcpy(req->sqlstate, "25P02", 6);
        req->message = xstrdup("the transaction was rolled back: an earlier statement failed");
    }
}

/* A transaction's group (joined statements, see the top) reached its sync point. Those that
 * ran are answered as they would have been alone. One that PostgreSQL skipped after a
 * failure would have found the transaction aborted: it gets the 25P02 it would have got,
 * now, in order (the statements sent behind the group ran in the aborted transaction and
 * got theirs). A skipped COMMIT or ROLLBACK, the transaction's last statement, must still
 * end it: it goes back to the transaction's queue and runs alone, where a COMMIT rolls back
 * and reports the first error (in an abandoned transaction it is dropped: the pool rolls
 * back). True when it ended the transaction (a COMMIT or ROLLBACK ran). */
static bool txn_group_finish(conn_t *c, int n)
{
    pg_txn_t *txn = c->txn;
    bool ends = false;
    for (int i = 0; i < n; i++) {
        pg_handle_t *req = pg_req_pop(&c->sent);
        c->nsent--;
        PGresult *res = req->result.pg;
        bool last = req->kind == REQ_COMMIT || req->kind == REQ_ROLLBACK;
        if (!res || PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
            if (last && !txn->abandoned) {
                PQclear(res);
                req->result.pg = NULL;
                req->where = AT_TXN;
                list_push(&txn->queue, &req->link); /* nothing can follow a COMMIT */
            } else {
                pg_req_fail(req, PG_EQUERY, "25P02",
                            "current transaction is aborted, commands ignored until end of "
                            "transaction block");
            }
            continue;
        }
        if (!result_ok(res))
            req->errkind = PG_EQUERY;
        else if (req->kind == REQ_COMMIT && !strcmp(PQcmdStatus(res), "ROLLBACK"))
            commit_rolled_back(req);
        ends = ends || last;
        pg_req_finish(req);
    }
    if (ends)
        pg_txn_unpin(txn);
    return ends;
}

/* The first group's sync point arrived: its answers are complete. False when the
 * connection is no longer usable (lost, or no longer CONN_READY). */
static bool conn_finish(conn_t *c)
{
    pg_pool_t *pool = c->pool;
    c->phase = 0;
    c->last_null = false;
    int n = 0;
    bool all_ok = true;
    pg_handle_t *req = NULL, *failed = NULL;
    for (link_t *l = c->sent.next; l != &c->sent; l = l->next) {
        req = pg_req_of(l);
        n++;
        const PGresult *res = req->result.pg;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (server_gone(state) || PQstatus(c->pg) == CONNECTION_BAD) {
            char *why = pg_one_line(res && !result_ok(res) ? PQresultErrorMessage(res)
                                                           : PQerrorMessage(c->pg));
            c->reading = req; /* pg_conn_lost reports its SQLSTATE */
            pg_conn_lost(c, why, NULL);
            free(why);
            return false;
        }
        if (!res || !result_ok(res)) {
            all_ok = false;
            if (!failed && res && PQresultStatus(res) == PGRES_FATAL_ERROR)
                failed = req;
        }
        if (req->group_end)
            break;
    }
    uint64_t now = uv_hrtime(), took = (now - c->head_since) / (uint64_t)n;
    c->head_since = now;
    pool->service_ns =
        took > pool->service_ns ? took : pool->service_ns - pool->service_ns / 8 + took / 8;
    bool ends = false;
    if (n > 1 && c->txn) {
        ends = txn_group_finish(c, n);
        c->reading = c->nsent > 0 ? pg_req_first(&c->sent) : NULL;
    } else if (n > 1) {
        group_finish(c, n, failed, all_ok);
        c->reading = c->nsent > 0 ? pg_req_first(&c->sent) : NULL;
    } else {
        list_unlink(&req->link);
        c->nsent--;
        c->reading = c->nsent > 0 ? pg_req_first(&c->sent) : NULL;
        PGresult *res = req->result.pg;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        bool again = false;
        if (!all_ok && req->name && state && !strcmp(state, "26000")) {
            /* Someone ran DEALLOCATE or DISCARD behind our back. Nothing was executed,
             * so preparing again is safe, once, unless the error has aborted a
             * transaction. */
            stmt_forget(c, req->name);
            again = !req->reprepared && !req->txn;
            req->reprepared = true;
        } else if (!all_ok && !req->txn && state && lock_conflict(state) &&
                   req->conflict_retries < PG_CONFLICT_RETRIES) {
            /* PostgreSQL broke a lock cycle (or a serialization conflict) by failing this
             * statement, which ran in a transaction of its own and so left nothing
             * behind: running it again is what any client would do, and by now the
             * statement it collided with has usually committed. Inside a caller's
             * transaction only the caller can start over (api_res_pg_error says so). */
            req->conflict_retries++;
            again = true;
        }
        if (again) {
            PQclear(res);
            req->result.pg = NULL;
            if (!conn_queue(c, req) || !conn_sync(c) || !conn_flush(c))
                return false;
            if (c->nsent == 1)
                pg_conn_deadline(c);
            if (c->nsent > 0)
                return true;
            pg_pipeline_next(c); /* it was refused at once (42P05) */
            return c->state == CONN_READY;
        }
        if (!res)
            pg_req_fail(req, PG_EQUERY, "XX000", "no result from PostgreSQL");
        else if (!all_ok)
            req->errkind = PG_EQUERY;
        else if (req->kind == REQ_COMMIT && !strcmp(PQcmdStatus(res), "ROLLBACK"))
            commit_rolled_back(req);
        ends = req->kind == REQ_COMMIT || req->kind == REQ_ROLLBACK;
        pg_txn_t *txn = ends ? req->txn : NULL;
        if (res)
            pg_req_finish(req);
        if (txn)
            pg_txn_unpin(txn);
    }
    if (c->nsent > 0) {
        pg_conn_deadline(c);
        return true;
    }
    if (ends && conn_in_txn(c)) {
        pg_conn_lost(c, "still inside a transaction after COMMIT or ROLLBACK", NULL);
        return false;
    }
    pg_pipeline_next(c);
    return c->state == CONN_READY;
}

/* Takes what libpq has parsed; false when the connection had to go. */
static bool conn_read(conn_t *c)
{
    while (c->nsent > 0 && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        pg_handle_t *req = c->reading;
        if (!res) { /* the end of one statement's results */
            if (c->last_null) {
                pg_conn_lost(c, "lost track of the pipeline", NULL);
                return false;
            }
            c->last_null = true;
            if (++c->phase == (req->preparing ? 2 : 1) && !req->group_end) {
                if (req->link.next == &c->sent) {
                    pg_conn_lost(c, "lost track of the pipeline", NULL);
                    return false;
                }
                c->reading = pg_req_of(req->link.next); /* the group's next statement */
                c->phase = 0;
                pg_conn_deadline(c);
            }
            continue;
        }
        c->last_null = false;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            if (!conn_finish(c))
                return false;
            continue;
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            list_unlink(&req->link);
            c->nsent--;
            c->reading = NULL;
            pg_req_fail(req, PG_EQUERY, "0A000", "COPY is not supported by the pool");
            pg_conn_lost(c, "the server started a COPY", NULL); /* no way back but a new session */
            return false;
        }
        if (req->preparing && c->phase == 0) { /* the PREPARE's answer */
            stmt_t *prepared = stmt_find(c, req->name);
            if (st == PGRES_COMMAND_OK) {
                if (prepared)
                    prepared->pending = false;
                PQclear(res);
                continue;
            }
            stmt_forget(c, req->name);
        }
        pg_answer_keep(req, res);
    }
    return true;
}

void pg_on_io(uv_poll_t *poll, int status, int events)
{
    conn_t *c = poll->data;
    if (c->state == CONN_CONNECTING) {
        pg_conn_step(c); /* PQconnectPoll reads the socket's error itself */
        return;
    }
    if (c->state != CONN_READY)
        return;
    if (status < 0) {
        PQconsumeInput(c->pg); /* for libpq's own words about what happened */
        pg_conn_lost(
            c, PQstatus(c->pg) == CONNECTION_BAD ? PQerrorMessage(c->pg) : uv_strerror(status),
            NULL);
        return;
    }
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        pg_conn_lost(c, PQerrorMessage(c->pg), NULL);
        return;
    }
    PGnotify *note;
    while ((note = PQnotifies(c->pg)))
        PQfreemem(note);
    if (c->flushing && !conn_flush(c))
        return;
    if (c->nsent > 0 && !conn_read(c))
        return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        pg_conn_lost(c, PQerrorMessage(c->pg), NULL);
        return;
    }
    pg_conn_arm(c);
}
