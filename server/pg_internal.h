/*
 * pg_internal.h — what the three parts of the PostgreSQL pool share, and nothing else
 * includes: pg.c (requests and their delivery, the wait queue, transactions, the calls of
 * pg.h), pg_pipeline.c (what a connection sends and reads: groups, prepared statements,
 * answers) and pg_conn.c (one connection's life: name lookup, handshake, socket watcher,
 * backoff, loss).
 *
 * The structs are the pool's whole state; all three files read and write their fields. Who
 * owns what: the pool owns its connections (an array, never reallocated) and every request
 * until its callback has run; a connection owns its PGconn, its uv_poll_t and the list of
 * what it has sent.
 */
#ifndef PX_PG_INTERNAL_H
#define PX_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "list.h"
#include "pg.h"

enum req_kind { REQ_QUERY, REQ_PING, REQ_BEGIN, REQ_COMMIT, REQ_ROLLBACK };
enum req_where { AT_NONE, AT_WAITING, AT_TXN, AT_RUNNING, AT_DONE, AT_CALLBACK };
enum conn_state { CONN_DOWN, CONN_RESOLVING, CONN_CONNECTING, CONN_READY, CONN_CLOSED };

typedef struct conn conn_t;
typedef struct lookup lookup_t; /* a name lookup in flight, pg_conn.c's own */

struct pg_result {
    PGresult *pg;
};

struct pg_handle {
    link_t link; /* in pool->waiting, txn->queue or pool->done, per `where` */
    pg_pool_t *pool;
    pg_txn_t *txn; /* the transaction it belongs to, until its callback has run */
    enum req_kind kind;
    enum req_where where;
    bool silent; /* no callback: none given, cancelled, or the pool's own ROLLBACK */
    bool reprepared;
    uint8_t conflict_retries; /* times it ran again alone after losing a lock conflict */
    bool preparing; /* sent with its PREPARE in front (the first statement of its segment) */
    bool group_end; /* a sync point follows it in the pipeline */
    bool alone;     /* its group failed: it goes again in a group of its own */
    bool joins;     /* a transaction's statement sent with the next one, one sync point */
    uint64_t deadline;
    union {
        pg_query_cb query;
        pg_txn_cb txn;
        pg_done_cb done;
    } cb;
    void *ud;
    const char *name; /* prepared statement, or NULL */
    const char *sql;
    int nparams;
    const char **values;
    /* The outcome. errkind 0 is success; an error is described by message and sqlstate
     * when message is set, else by the server's error result. While it runs, result holds
     * what has arrived (see pg_answer_keep). */
    pg_result_t result;
    pg_errkind_t errkind;
    char sqlstate[6];
    char *message;
    char *detail;     /* with message: PostgreSQL's DETAIL, or NULL */
    char *constraint; /* with message: the violated constraint, or NULL */
    /* values and strings follow */
};

typedef struct stmt {
    char *name;
    char *sql;
    bool pending; /* its PREPARE is in the pipeline, unanswered */
} stmt_t;

struct conn {
    pg_pool_t *pool;
    enum conn_state state;
    PGconn *pg;
    uv_poll_t *poll; /* watches fd; replaced when libpq's socket changes */
    int fd;
    int events;
    uv_timer_t timer; /* by state: backoff, connect deadline, answer deadline */
    lookup_t *lookup;
    unsigned backoff_ms;
    uint64_t attempt_at; /* uv_now() when the current or last connection attempt began */
    link_t sent; /* requests in the pipeline, in the order their answers come */
    int nsent;
    pg_handle_t *reading; /* the one of `sent` whose results arrive now */
    int phase;            /* statements of `reading` answered so far */
    bool last_null;       /* PQgetResult's last word was NULL (two in a row: lost track) */
    uint64_t head_since;  /* uv_hrtime() when the first group of `sent` became first */
    bool flushing;        /* PQflush has more to send */
    pg_txn_t *txn;        /* the transaction this connection is pinned to */
    bool cancelling;      /* a cancel request for it is on its way: it takes no new work */
    bool txn_kick;        /* its transaction has a joining statement to send at the kick */
    stmt_t *stmts;        /* prepared on this connection */
    size_t nstmts, capstmts;
};

struct pg_txn {
    pg_pool_t *pool;
    conn_t *conn;       /* pinned connection; NULL before BEGIN runs or once it is lost */
    link_t queue;       /* issued, waiting for the connection */
    pg_handle_t *begin; /* the BEGIN request until its callback is delivered */
    int ndone;          /* other requests of it whose callback is due */
    bool ended;         /* committed, rolled back or abandoned: no more calls */
    bool abandoned;     /* no more callbacks; the pool rolls back */
    /* The first statement of it that failed (not with 25P02, which only says an earlier
     * one did): what its COMMIT reports, so a statement queued without a callback still
     * has its own error seen. */
    bool failed;
    char fail_sqlstate[6];
    char *fail_message, *fail_detail, *fail_constraint;
};

struct pg_pool {
    uv_loop_t *loop;
    int size, statement_timeout_ms, queue_max, wait_timeout_ms, connect_timeout_ms;
    char **keys, **vals; /* libpq connection parameters */
    size_t nkeys;
    char *lookup_host; /* a host name we resolve so that libpq does not block on it */
    conn_t *conns;
    link_t waiting;
    int nwaiting;
    link_t done;
    uv_timer_t wait_timer;
    uv_idle_t deliver;
    uv_prepare_t kick; /* hands what this iteration submitted to idle connections */
    int up;            /* connections in CONN_READY */
    bool down;         /* no connection up and the last attempt failed */
    char *last_error;  /* why the last attempt failed */
    uint64_t last_attempt_ms; /* how long the last failed attempt took to fail */
    uint64_t probe_at;        /* uv_now() of the last attempt a request started (pg_conn_probe) */
    int ntxn;
    int open; /* handles and lookups whose close or callback has not run yet */
    bool closing, in_close, finishing;
    pg_close_cb close_cb;
    void *close_ud;
    uint64_t rng;
    uint64_t service_ns; /* how long one statement keeps a connection, a decaying maximum */
};

/* The request a link of `sent`, `waiting`, a transaction's queue or `done` belongs to. */
static inline pg_handle_t *pg_req_of(link_t *l)
{
    return (pg_handle_t *)((char *)l - offsetof(pg_handle_t, link));
}

static inline pg_handle_t *pg_req_first(const link_t *head)
{
    return pg_req_of(head->next);
}

static inline pg_handle_t *pg_req_pop(link_t *head)
{
    pg_handle_t *req = pg_req_first(head);
    list_unlink(&req->link);
    return req;
}

/* ---- pg.c ---- */

/* libpq's message on one line; the caller frees it. */
char *pg_one_line(const char *s);
/* A new request, not yet anywhere; it copies name (may be NULL), sql and values. */
pg_handle_t *pg_req_new(pg_pool_t *pool, enum req_kind kind, const char *name, const char *sql,
                        int nparams, const char *const *values);
/* The request's work is over: its callback is queued for the next loop iteration, or it is
 * freed at once when silent. */
void pg_req_finish(pg_handle_t *req);
/* Finishes the request with an error; `sqlstate` may be NULL, `why` is copied. */
void pg_req_fail(pg_handle_t *req, pg_errkind_t kind, const char *sqlstate, const char *why);
/* Keeps what a running request gets from the server (see pg.c). Takes `res`. */
void pg_answer_keep(pg_handle_t *req, PGresult *res);
/* Puts the requests of the non-empty list `again` (counted in nwaiting, marked AT_WAITING)
 * back at the head of the wait queue; the kick hands them out. */
void pg_wait_requeue(pg_pool_t *pool, link_t *again);
/* How many connections are up with nothing in flight and no transaction. */
int pg_idle_count(const pg_pool_t *pool);
/* The transaction lets go of its pinned connection; it is freed if nothing else holds it. */
void pg_txn_unpin(pg_txn_t *txn);
/* Fails every request on `sent` (emptying it) and breaks `txn` (may be NULL): their
 * connection is gone. `sqlstate` may be NULL. */
void pg_fail_sent(link_t *sent, pg_txn_t *txn, pg_errkind_t kind, const char *sqlstate,
                  const char *why);
/* Fails every request waiting for a connection. */
void pg_fail_waiting(pg_pool_t *pool, pg_errkind_t kind, const char *why);
/* One of the handles or lookups counted in pool->open is gone for good. */
void pg_release(pg_pool_t *pool);

/* ---- pg_pipeline.c ---- */

/* A connection with nothing in flight takes its next work, if there is any. */
void pg_pipeline_next(conn_t *c);
/* The uv_poll callback of every connection, from the handshake on. */
void pg_on_io(uv_poll_t *poll, int status, int events);
/* A COMMIT came back as ROLLBACK: give `commit` the error of the transaction's first
 * failed statement; false when none was recorded. */
bool pg_txn_first_error(pg_txn_t *txn, pg_handle_t *commit);

/* Forgets the statements prepared on a connection whose session is gone. */
void pg_stmts_clear(conn_t *c);

/* ---- pg_conn.c ---- */

/* Turns the conninfo into the keyword arrays every connection attempt uses; 0 or -EINVAL
 * after logging why. pg_conn_params_free frees what it made (also after a failure). */
int pg_conn_params(pg_pool_t *pool, const char *conninfo);
void pg_conn_params_free(pg_pool_t *pool);
/* Sets up a connection of `pool`, down and not yet trying. */
void pg_conn_init(conn_t *c, pg_pool_t *pool);
/* Starts a connection attempt: name lookup if needed, then the handshake. */
void pg_conn_connect(conn_t *c);
/* Every connection is down and a request wants one: starts an attempt now rather than when
 * the backoff ends (at most every PROBE_MIN_MS), so the first request after PostgreSQL is
 * back is served. True when the request should wait for an attempt on its way: only when
 * attempts fail fast, so a request never waits out a connect timeout to learn of an outage
 * it could be told of at once. */
bool pg_conn_probe(pg_pool_t *pool);
/* One step of the handshake, when the socket is ready as libpq asked. */
void pg_conn_step(conn_t *c);
/* Watches a connected socket for what the connection waits for; false when that failed
 * and the connection was lost. */
bool pg_conn_arm(conn_t *c);
/* Starts the answer deadline of the first request in the pipeline. */
void pg_conn_deadline(conn_t *c);
/* A working connection broke: what ran on it fails, its transaction is broken, it retries
 * later. */
void pg_conn_lost(conn_t *c, const char *why, const char *sqlstate);
/* The pool closes: the connection drops its session for good and closes its timer. The
 * caller has taken what it had sent and its transaction. */
void pg_conn_close(conn_t *c);

#endif
