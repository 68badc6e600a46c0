/*
 * blob_pg.c — the blob store in PostgreSQL ([storage] backend = postgres), for hosts that
 * share nothing but the database.
 *
 * Bytes are kept as bytea chunks of 1 MiB (panthera_blob_chunks), not as large objects:
 * chunks are ordinary rows, so they replicate, dump and get deleted with their blob by a
 * foreign key, and no lo_unlink can be forgotten. References (panthera_blob_refs) point at
 * the blob with a foreign key that does not cascade, which is what makes the sweep safe
 * against a reference added meanwhile: the database refuses to delete a referenced blob,
 * and refuses a reference to a deleted one.
 *
 * The backend runs on the thread pool, blocking, on its own connection (one per worker,
 * behind the store's mutex) rather than the worker's pipelined pool: a blob is megabytes
 * moved in a loop, and large bodies in the pool's pipeline would hold up every small
 * query behind them. The tables are created on first use, under an advisory lock, since
 * they belong to the host and not to a plugin's migrations.
 *
 * Serving reads the chunks one row at a time (single-row mode) into a temporary file,
 * which is then sent like any other (sendfile): memory stays at one chunk.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blob_internal.h"
#include "log.h"
#include "spool.h"
#include "util.h"

#define PG_CHUNK (1024 * 1024)

static const char schema_sql[] =
    "SELECT pg_advisory_xact_lock(hashtext('panthera blob store'));"
    "CREATE TABLE IF NOT EXISTS panthera_blobs ("
    "  id text PRIMARY KEY, size bigint NOT NULL, content_type text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  stored_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS panthera_blob_chunks ("
    "  id text NOT NULL REFERENCES panthera_blobs ON DELETE CASCADE, n int NOT NULL,"
    "  data bytea NOT NULL, PRIMARY KEY (id, n));"
    "CREATE TABLE IF NOT EXISTS panthera_blob_refs ("
    "  id text NOT NULL REFERENCES panthera_blobs, owner text NOT NULL, ref text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id, owner, ref));"
    "CREATE INDEX IF NOT EXISTS panthera_blobs_stored ON panthera_blobs (stored_at);";

/* The store's connection, (re)connected and with its tables; NULL when unreachable. Called
 * with the store's lock held. */
static PGconn *conn_get(blob_store_t *s)
{
    PGconn *c = s->conn;
    if (c && PQstatus(c) == CONNECTION_OK)
        return c;
    if (c)
        PQfinish(c);
    s->conn = c = PQconnectdb(s->conninfo ? s->conninfo : "");
    if (PQstatus(c) != CONNECTION_OK) {
        log_error("blob store (postgres): cannot connect: %s", PQerrorMessage(c));
        return NULL;
    }
    if (!s->schema_ready) {
        PGresult *res = PQexec(c, "BEGIN");
        PQclear(res);
        res = PQexec(c, schema_sql);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
        if (!ok)
            log_error("blob store (postgres): cannot create its tables: %s",
                      PQresultErrorMessage(res));
        PQclear(res);
        res = PQexec(c, ok ? "COMMIT" : "ROLLBACK");
        PQclear(res);
        if (!ok)
            return NULL;
        s->schema_ready = true;
    }
    return c;
}

/* Run one statement with text parameters; returns the result (the caller clears it) or
 * NULL on a failure other than `accept_state` (e.g. "23503"), which is reported in *state. */
static PGresult *run(PGconn *c, const char *sql, int n, const char *const *values,
                     const int *lengths, const int *formats, char state[6])
{
    PGresult *res = PQexecParams(c, sql, n, NULL, values, lengths, formats, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (state)
            state[0] = '\0';
        return res;
    }
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state)
        snprintf(state, 6, "%s", code ? code : "");
    else /* an expected failure (the caller names the state) is the caller's to report */
        log_error("blob store (postgres): %s", PQresultErrorMessage(res));
    PQclear(res);
    return NULL;
}

static void exec_simple(PGconn *c, const char *sql)
{
    PQclear(PQexec(c, sql));
}

static int pg_put(blob_store_t *s, int fd, uint64_t size, const char *id, const char *ctype)
{
    int rc = PX_EUNAVAIL;
    char *chunk = NULL;
    pthread_mutex_lock(&s->lock);
    PGconn *c = conn_get(s);
    if (!c)
        goto out;
    exec_simple(c, "BEGIN");
    char size_text[24];
    snprintf(size_text, sizeof(size_text), "%" PRIu64, size);
    const char *vals[3] = {id, size_text, ctype};
    /* A second store of the same bytes waits here for the first one's row lock, then
     * finds the blob stored and only freshens it. */
    PGresult *res = run(c,
                        "INSERT INTO panthera_blobs (id, size, content_type) VALUES ($1, $2, $3) "
                        "ON CONFLICT (id) DO UPDATE SET stored_at = now() "
                        "RETURNING (xmax = 0)::int",
                        3, vals, NULL, NULL, NULL);
    if (!res)
        goto rollback;
    bool inserted = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "1");
    PQclear(res);
    chunk = inserted ? xmalloc(PG_CHUNK) : NULL;
    for (uint64_t off = 0, n = 0; inserted && off < size; n++) {
        size_t want = size - off < PG_CHUNK ? (size_t)(size - off) : PG_CHUNK;
        size_t got = 0;
        while (got < want) {
            ssize_t r = pread(fd, chunk + got, want - got, (off_t)(off + got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                goto rollback;
            got += (size_t)r;
        }
        char n_text[24];
        snprintf(n_text, sizeof(n_text), "%" PRIu64, n);
        const char *cv[3] = {id, n_text, chunk};
        const int lens[3] = {0, 0, (int)want};
        const int fmts[3] = {0, 0, 1};
        res = run(c, "INSERT INTO panthera_blob_chunks (id, n, data) VALUES ($1, $2, $3)", 3, cv,
                  lens, fmts, NULL);
        if (!res)
            goto rollback;
        PQclear(res);
        off += want;
    }
    res = run(c, "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (res) {
        PQclear(res);
        rc = 0;
    }
    goto out;
rollback:
    exec_simple(c, "ROLLBACK");
out:
    pthread_mutex_unlock(&s->lock);
    free(chunk);
    return rc;
}

static int pg_stat(blob_store_t *s, const char *id, uint64_t *size, char *ctype, size_t ctlen)
{
    int rc = PX_EUNAVAIL;
    pthread_mutex_lock(&s->lock);
    PGconn *c = conn_get(s);
    const char *vals[1] = {id};
    PGresult *res = c ? run(c, "SELECT size, content_type FROM panthera_blobs WHERE id = $1", 1,
                            vals, NULL, NULL, NULL)
                      : NULL;
    if (res) {
        rc = PX_ENOENT;
        if (PQntuples(res) == 1) {
            *size = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
            snprintf(ctype, ctlen, "%s", PQgetvalue(res, 0, 1));
            rc = 0;
        }
        PQclear(res);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Copy the chunks into a temporary file, one row in memory at a time. */
static int pg_open(blob_store_t *s, const char *id, int *fd, uint64_t *size)
{
    char ctype[8];
    int rc = pg_stat(s, id, size, ctype, sizeof(ctype));
    if (rc)
        return rc;
    *fd = spool_tmpfile(s->cfg->spool_dir);
    if (*fd < 0)
        return PX_EUNAVAIL;
    pthread_mutex_lock(&s->lock);
    PGconn *c = conn_get(s);
    const char *vals[1] = {id};
    uint64_t off = 0;
    bool ok = c &&
              PQsendQueryParams(c,
                                "SELECT data FROM panthera_blob_chunks WHERE id = $1 "
                                "ORDER BY n",
                                1, NULL, vals, NULL, NULL, 1) &&
              PQsetSingleRowMode(c);
    for (PGresult *res; c && (res = PQgetResult(c));) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && ok) {
            size_t len = (size_t)PQgetlength(res, 0, 0);
            if (pwrite(*fd, PQgetvalue(res, 0, 0), len, (off_t)off) != (ssize_t)len)
                ok = false;
            off += len;
        } else if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE) {
            ok = false;
        }
        PQclear(res);
    }
    pthread_mutex_unlock(&s->lock);
    if (!ok || off != *size) {
        close(*fd);
        *fd = -1;
        return ok ? PX_ENOENT : PX_EUNAVAIL; /* swept between the two reads */
    }
    return 0;
}

static int pg_ref(blob_store_t *s, const char *id, const char *owner, const char *ref)
{
    int rc = PX_EUNAVAIL;
    pthread_mutex_lock(&s->lock);
    PGconn *c = conn_get(s);
    const char *vals[3] = {id, owner, ref};
    char state[6] = "";
    PGresult *res = c ? run(c,
                            "INSERT INTO panthera_blob_refs (id, owner, ref) VALUES ($1, $2, $3) "
                            "ON CONFLICT DO NOTHING",
                            3, vals, NULL, NULL, state)
                      : NULL;
    if (res) {
        PQclear(res);
        rc = 0;
    } else if (!strcmp(state, "23503")) {
        rc = PX_ENOENT; /* no such blob (any more) */
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_unref(blob_store_t *s, const char *id, const char *owner, const char *ref)
{
    int rc = PX_EUNAVAIL;
    pthread_mutex_lock(&s->lock);
    PGconn *c = conn_get(s);
    const char *vals[3] = {id, owner, ref};
    PGresult *res =
        c ? run(c, "DELETE FROM panthera_blob_refs WHERE id = $1 AND owner = $2 AND ref = $3", 3,
                vals, NULL, NULL, NULL)
          : NULL;
    if (res) {
        PQclear(res);
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Candidates first, then each in its own statement: a reference that arrives in between
 * makes that one DELETE fail on the foreign key (or match nothing), never the sweep. */
static int pg_sweep(blob_store_t *s, uint64_t grace_ms, uint64_t *removed)
{
    int rc = PX_EUNAVAIL;
    *removed = 0;
    pthread_mutex_lock(&s->lock);
    PGconn *c = conn_get(s);
    char grace[32];
    snprintf(grace, sizeof(grace), "%" PRIu64 " milliseconds", grace_ms);
    const char *gv[1] = {grace};
    PGresult *list =
        c ? run(c,
                "SELECT b.id FROM panthera_blobs b WHERE b.stored_at < now() - $1::interval "
                "AND NOT EXISTS (SELECT 1 FROM panthera_blob_refs r WHERE r.id = b.id) LIMIT 1000",
                1, gv, NULL, NULL, NULL)
          : NULL;
    if (list) {
        rc = 0;
        for (int i = 0; i < PQntuples(list); i++) {
            const char *vals[2] = {PQgetvalue(list, i, 0), grace};
            PGresult *res = run(c,
                                "DELETE FROM panthera_blobs b WHERE b.id = $1 "
                                "AND b.stored_at < now() - $2::interval AND NOT EXISTS "
                                "(SELECT 1 FROM panthera_blob_refs r WHERE r.id = b.id)",
                                2, vals, NULL, NULL, NULL);
            if (res) {
                *removed += strtoull(PQcmdTuples(res), NULL, 10);
                PQclear(res);
            }
        }
        PQclear(list);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void pg_close(blob_store_t *s)
{
    if (s->conn)
        PQfinish(s->conn);
    s->conn = NULL;
}

const blob_backend_t blob_pg_backend = {
    .name = "postgres",
    .put = pg_put,
    .stat = pg_stat,
    .open = pg_open,
    .ref = pg_ref,
    .unref = pg_unref,
    .sweep = pg_sweep,
    .close = pg_close,
};
