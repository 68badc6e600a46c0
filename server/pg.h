/*
 * pg.h — the per-worker asynchronous PostgreSQL pool.
 *
 * One pool per worker loop, a few connections each. Callers never see a connection: they
 * hand the pool SQL and parameters and get the answer in a callback on the same loop. The
 * pool connects, queues, reconnects and cleans up after abandoned transactions by itself.
 *
 * Threading: every function here must be called on the loop thread the pool was made for.
 * Make the pool in the worker process, after fork: connections cannot be shared across it.
 * Close it (pg_pool_close) and let the loop run until `done` before closing the loop's other
 * handles wholesale (uv_walk): the pool closes its own handles, and only it may.
 *
 * Callbacks:
 *  - never run inside the pg_* call that started the work; they run from the loop (an
 *    immediate failure, such as a full queue, is delivered on the next loop iteration);
 *  - run exactly once for every call that returned 0, unless the work was cancelled with
 *    pg_cancel (or its transaction abandoned): then they never run;
 *  - may call any pg_* function, including pg_pool_close.
 *
 * Handles: every call that starts work can return a pg_handle_t through `handle_out` (NULL
 * if the caller does not want one). The handle is valid until its callback starts or until
 * pg_cancel is called on it, whichever comes first; after that it must not be used.
 *
 * Errors: functions return 0 or a negative errno value (-EINVAL for bad arguments,
 * -ESHUTDOWN once pg_pool_close was called); on error the callback never runs.
 * What went wrong with the work itself arrives in the callback as a pg_error_t.
 */
#ifndef PX_PG_H
#define PX_PG_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct pg_pool pg_pool_t;
typedef struct pg_handle pg_handle_t;
typedef struct pg_txn pg_txn_t;
typedef struct pg_result pg_result_t;

#define PG_DEFAULT_SIZE 4
#define PG_DEFAULT_STATEMENT_TIMEOUT_MS 5000
#define PG_DEFAULT_QUEUE_MAX 256
#define PG_DEFAULT_WAIT_TIMEOUT_MS 2000
#define PG_DEFAULT_CONNECT_TIMEOUT_MS 5000

/* A zero field means its default. pg_pool_new copies what it needs; the struct and its
 * strings may be freed when it returns. */
typedef struct pg_config {
    /* libpq keyword=value string or postgresql:// URI, e.g.
     * "host=/run/postgresql port=5432 dbname=panthera user=panthera". Parameters it leaves
     * out come from the PG* environment variables, as with psql. */
    const char *conninfo;
    int size;                 /* connections per worker, default 4 */
    int statement_timeout_ms; /* set on every connection at connect, default 5000; -1: none */
    int queue_max;            /* queries that may wait for a connection, default 256 */
    int wait_timeout_ms;      /* how long a query may wait for a connection, default 2000 */
    int connect_timeout_ms;   /* one connection attempt, name lookup included, default 5000 */
} pg_config_t;

typedef enum pg_errkind {
    /* No answer from PostgreSQL: no connection is up (fail fast, see pg_query), the queue
     * is full, no connection became free within wait_timeout_ms, or the connection was
     * lost while the query ran (it may or may not have been executed). The pool never
     * retries on its own: the caller decides. */
    PG_EUNAVAILABLE = 1,
    /* The server answered with an error: sqlstate says which (e.g. "23505"). */
    PG_EQUERY = 2,
    /* pg_pool_close was called before the work finished. */
    PG_ECANCELLED = 3,
} pg_errkind_t;

/* Borrowed by the callback; every string is valid only while it runs. */
typedef struct pg_error {
    pg_errkind_t kind;
    /* SQLSTATE, five characters: always set for PG_EQUERY (see the PostgreSQL manual,
     * appendix A); set for PG_EUNAVAILABLE when the server said why it went away
     * ("57P01" admin shutdown, ...); "" otherwise. */
    char sqlstate[6];
    const char *message;    /* one line, never NULL */
    const char *detail;     /* PostgreSQL's DETAIL, or NULL */
    const char *constraint; /* the violated constraint (23xxx errors), or NULL */
} pg_error_t;

typedef void (*pg_query_cb)(const pg_result_t *res, const pg_error_t *err, void *ud);
typedef void (*pg_txn_cb)(pg_txn_t *txn, const pg_error_t *err, void *ud);
typedef void (*pg_done_cb)(const pg_error_t *err, void *ud);
typedef void (*pg_close_cb)(void *ud);

typedef struct pg_status {
    int size;      /* connections configured */
    int connected; /* connections up */
    int busy;      /* connections running a query or pinned by a transaction */
    int waiting;   /* queries and transactions waiting for a connection */
} pg_status_t;

/* Creates the pool and starts connecting all its connections (asynchronously: this never
 * waits for the server). Returns NULL, after logging why, when the configuration is
 * invalid (an unparsable conninfo, a negative value). */
pg_pool_t *pg_pool_new(uv_loop_t *loop, const pg_config_t *cfg);

/* Closes the pool. Waiting and running work gets PG_ECANCELLED (a running query's result
 * is thrown away; the server rolls back an open transaction when its session ends).
 * Transactions the caller holds still have to be ended (commit, rollback or abandon):
 * those calls report PG_ECANCELLED. When every callback has run, every transaction has
 * ended and every libuv handle is closed, `done` runs (may be NULL) and the pool is freed.
 * Calling it twice does nothing. NULL is accepted. */
void pg_pool_close(pg_pool_t *pool, pg_close_cb done, void *ud);

/* Runs `sql` with `nparams` parameters, `$1`..`$n` in the SQL. Values are text (as psql
 * would type them: "42", "t", "2024-01-31"), copied by this call, always sent apart from
 * the SQL (never pasted into it); a NULL value is SQL NULL. One statement only.
 *
 * When a connection is idle the query is sent at once; otherwise it waits (FIFO) for at
 * most wait_timeout_ms. PG_EUNAVAILABLE at once when queue_max queries already wait, or
 * when PostgreSQL is known to be unreachable (no connection is up and the last connection
 * attempt failed): waiting would only make the caller's own client wait for an error, and
 * the pool keeps reconnecting in the background (backoff 100 ms doubling to 5 s).
 *
 * A transaction left open by SQL sent this way ("BEGIN") is rolled back before the
 * connection is used again: transactions go through pg_txn_begin.
 *
 * `cb` receives either the result or an error. NULL `cb`: fire and forget. */
int pg_query(pg_pool_t *pool, const char *sql, int nparams, const char *const *values,
             pg_query_cb cb, void *ud, pg_handle_t **handle_out);

/* Same, as the named prepared statement `name` (1..63 bytes) for `sql`: prepared on each
 * connection the first time it runs there, then only executed. A name always stands for
 * the same SQL (a different SQL under a known name is a PG_EQUERY, SQLSTATE 42P05). */
int pg_query_prepared(pg_pool_t *pool, const char *name, const char *sql, int nparams,
                      const char *const *values, pg_query_cb cb, void *ud,
                      pg_handle_t **handle_out);

/* The caller no longer wants the answer (its client went away): the callback will not
 * run. Waiting work is dropped; a running query alone on its connection is cancelled on
 * the server, one in a group finishes there; either way its result is thrown away. If the work belongs to a transaction and was waiting or running, the whole
 * transaction is abandoned (pg_txn_abandon): the pointer must not be used afterwards.
 * Cancelling a COMMIT that was already sent cannot stop it; only its callback is dropped.
 * Must not be called on a handle whose callback has started. NULL is accepted. */
void pg_cancel(pg_handle_t *handle);

/* The work's client went away but its caller still holds it and will finish: end it
 * soon. Waiting work fails now with PG_ECANCELLED; a running statement alone on its
 * connection is cancelled on the server (its callback gets PostgreSQL's 57014); anything
 * else runs to its end. The callback runs in every case. NULL is accepted. */
void pg_interrupt(pg_handle_t *handle);

/* Runs SELECT 1; `cb` gets NULL when PostgreSQL answered. For readiness checks. */
int pg_ping(pg_pool_t *pool, pg_done_cb cb, void *ud, pg_handle_t **handle_out);

/* Counters right now; the pool owns nothing the caller has to free. */
pg_status_t pg_pool_status(const pg_pool_t *pool);

/* Transactions. pg_txn_begin waits for a connection like a query (same queue, same limits),
 * pins it and sends BEGIN; `cb` gets the transaction, or NULL and the error. `cb` must not
 * be NULL. Until the caller ends it with pg_txn_commit, pg_txn_rollback or pg_txn_abandon,
 * the connection serves only this transaction: keep transactions short.
 *
 * pg_txn_query and pg_txn_query_prepared work like pg_query and pg_query_prepared on the
 * pinned connection; several may be issued without waiting, they run in order. After a
 * statement failed, PostgreSQL refuses the following ones (25P02) and COMMIT rolls back:
 * pg_txn_commit then reports PG_EQUERY with the first failed statement's own error
 * (SQLSTATE, message, detail, constraint; the transaction keeps a copy, so this holds for
 * a statement issued without a callback too).
 *
 * pg_txn_commit and pg_txn_rollback end the transaction: they run after the queries
 * already issued, their callback (may be NULL) says how it went, and the txn pointer must
 * not be used after the call. PG_EUNAVAILABLE from a COMMIT that was sent means the
 * outcome is unknown.
 *
 * pg_txn_abandon ends it without any more callbacks (for the transaction's pending
 * queries either, even one whose answer has already arrived): the pool rolls it back and
 * returns the connection.
 *
 * If the connection is lost, the pending queries get PG_EUNAVAILABLE, every later
 * pg_txn_query, pg_txn_commit or pg_txn_rollback reports PG_EUNAVAILABLE too (nothing was
 * committed, the server has rolled back), and the caller must still end the transaction
 * with one of the three calls so the pool can free it.
 *
 * pg_txn_* return -EINVAL for a NULL or already ended transaction. */
int pg_txn_begin(pg_pool_t *pool, pg_txn_cb cb, void *ud, pg_handle_t **handle_out);
int pg_txn_query(pg_txn_t *txn, const char *sql, int nparams, const char *const *values,
                 pg_query_cb cb, void *ud, pg_handle_t **handle_out);
int pg_txn_query_prepared(pg_txn_t *txn, const char *name, const char *sql, int nparams,
                          const char *const *values, pg_query_cb cb, void *ud,
                          pg_handle_t **handle_out);
/* Like pg_txn_query_prepared (or pg_txn_query, `name` NULL), for a statement whose
 * failure matters only to the transaction (its COMMIT then fails): it is not sent on its own but with the next
 * statement of the transaction (or its COMMIT) issued before the loop blocks, both behind
 * one sync point, so it costs PostgreSQL no answer and the process no wake-up of their
 * own. If none is issued by then, it goes alone. Each statement is still answered as it
 * would have been alone: one that PostgreSQL skipped because this one failed gets 25P02,
 * and a COMMIT rolls back and reports this one's error (pg_pipeline.c). */
int pg_txn_query_joined(pg_txn_t *txn, const char *name, const char *sql, int nparams,
                        const char *const *values, pg_query_cb cb, void *ud,
                        pg_handle_t **handle_out);
int pg_txn_commit(pg_txn_t *txn, pg_done_cb cb, void *ud, pg_handle_t **handle_out);
int pg_txn_rollback(pg_txn_t *txn, pg_done_cb cb, void *ud, pg_handle_t **handle_out);
void pg_txn_abandon(pg_txn_t *txn);

/* Results: owned by the pool, valid only while the callback runs. Values are text as
 * PostgreSQL prints them. Out-of-range rows or columns read as NULL. */
int pg_result_rows(const pg_result_t *res);
int pg_result_cols(const pg_result_t *res);
/* NULL for SQL NULL; otherwise a NUL-terminated string owned by the result. */
const char *pg_result_value(const pg_result_t *res, int row, int col);
bool pg_result_is_null(const pg_result_t *res, int row, int col);
/* 0, or -EINVAL when the value is NULL or not a decimal integer, -ERANGE when it does not
 * fit; `*out` is untouched on error. */
int pg_result_int64(const pg_result_t *res, int row, int col, int64_t *out);
/* 0, or -EINVAL when the value is NULL or not a boolean ("t" / "f"). */
int pg_result_bool(const pg_result_t *res, int row, int col, bool *out);
/* Rows inserted, updated, deleted or selected by the statement; 0 for other commands. */
int64_t pg_result_affected(const pg_result_t *res);
/* The column's name, NULL when out of range. */
const char *pg_result_colname(const pg_result_t *res, int col);
/* The column's index, -1 when there is no such column. */
int pg_result_colindex(const pg_result_t *res, const char *name);

/* "unavailable", "query", "cancelled": for log lines. */
const char *pg_errkind_name(pg_errkind_t kind);

#endif
