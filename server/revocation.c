/*
 * revocation.c — access tokens that stop working before they expire (px_token_revoke).
 *
 * Access tokens are checked by signature alone, with no lookup, so once signed one works
 * until its exp (15 minutes by default) — for a deleted account too, on every plugin's
 * routes: a deleted user could still write posts that nobody would ever clean up. A
 * plugin that must end a subject's tokens (the user plugin, when an account is deleted)
 * calls px_token_revoke inside the transaction that makes it so. The host then refuses,
 * on every host, each token for that subject issued at or before that moment, for as long
 * as such a token could still be valid: until now + access_ttl + leeway. Tokens issued
 * later are untouched, and nothing is kept past that end, so the list stays as small as
 * the number of revocations in the last quarter of an hour.
 *
 * Where it is kept. PostgreSQL holds the record (panthera_token_revocations, one row per
 * subject, written in the caller's transaction: it exists exactly when the change
 * does). Each worker keeps the rows still in force in a hash table and the gateway looks
 * the caller up there after the signature check; while the table is empty (almost
 * always) that costs one comparison. A worker learns of a revocation
 *   - at once, if it committed it (a commit hook, before the answer goes out: the
 *     client that deleted an account is refused on its next request);
 *   - from the host's channel `revocations`, published after the commit to every
 *     worker of every host (held while Redis is away, like px_channel_publish_on_commit);
 *   - by reading the table when it starts, whenever its subscription comes back after an
 *     outage (what was published meanwhile is lost), and every [auth] revocation_poll
 *     (10 s): a message lost anyhow, a commit whose client left first, a revocation
 *     written with psql.
 * So the bound is Redis's latency while it is up and revocation_poll otherwise. The first
 * time a worker hears of a revocation it also ends the streams the revoked tokens opened
 * (stream_end_revoked: a retry: as on a reload), which passed their check when they
 * opened and would otherwise go on; their clients reconnect and are refused. A worker
 * whose first read failed (PostgreSQL down at its start) refuses nothing it has not
 * heard of until a read succeeds; it says so in the log.
 *
 * When a token was issued is its iat_ms claim (auth.c; the host's tokens carry it since
 * SDK 1.3): a subject that stays, whose role changed, gets a new token by refreshing at
 * once, even in the revocation's own second. A token with only iat (seconds) counts as
 * issued at the start of that second, so it is refused if the revocation came in it. The
 * hosts' clocks are trusted to agree within the milliseconds between a refresh and the
 * revocation before it (NTP does better).
 */
#include "revocation.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "channel.h"
#include "log.h"
#include "stream.h"
#include "tasks.h"
#include "util.h"
#include "worker.h"

#define CHANNEL "revocations"
#define SUB_MAX 63
/* Rows past their end linger this long before a reader deletes them: a host whose clock
 * is behind still finds what it needs. */
#define PRUNE_GRACE_MS 60000

/* Times in milliseconds since the epoch: tokens issued at or before revoked_at_ms are
 * refused, and none of them is valid after ends_at_ms. */
const char revocation_schema_sql[] = "CREATE TABLE panthera_token_revocations ("
                                     " sub text PRIMARY KEY,"
                                     " revoked_at_ms bigint NOT NULL,"
                                     " ends_at_ms bigint NOT NULL);";

static const char sql_revoke[] =
    "INSERT INTO panthera_token_revocations AS r (sub, revoked_at_ms, ends_at_ms)"
    " VALUES ($1, $2::bigint, $3::bigint) ON CONFLICT (sub) DO UPDATE SET"
    " revoked_at_ms = greatest(r.revoked_at_ms, EXCLUDED.revoked_at_ms),"
    " ends_at_ms = greatest(r.ends_at_ms, EXCLUDED.ends_at_ms)";

static const char sql_read[] =
    "WITH gone AS (DELETE FROM panthera_token_revocations"
    " WHERE ends_at_ms < $1::bigint - $2::bigint)"
    " SELECT sub, revoked_at_ms, ends_at_ms FROM panthera_token_revocations"
    " WHERE ends_at_ms >= $1::bigint";

typedef struct entry {
    char sub[SUB_MAX + 1]; /* "" marks a free slot */
    int64_t revoked_at_ms;
    int64_t ends_at_ms;
} entry_t;

/* Open addressing, linear probing, at most half full; entries only ever leave in
 * revocation_prune, which builds the table anew. */
static entry_t *slots;
static size_t nslots, nused;

static struct {
    px_req_t *task;
    bool reading;  /* a read of the table is under way */
    bool again;    /* ... and another was asked for meanwhile */
    bool read_ok;  /* the last read succeeded (said once per change in the log) */
    bool read_any; /* one has ever succeeded */
} rv;

static uint64_t hash_sub(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static entry_t *find(const char *sub)
{
    if (!nused)
        return NULL;
    for (size_t i = hash_sub(sub) & (nslots - 1);; i = (i + 1) & (nslots - 1)) {
        if (!slots[i].sub[0])
            return NULL;
        if (!strcmp(slots[i].sub, sub))
            return &slots[i];
    }
}

static void insert(entry_t *table, size_t n, const entry_t *e)
{
    size_t i = hash_sub(e->sub) & (n - 1);
    while (table[i].sub[0])
        i = (i + 1) & (n - 1);
    table[i] = *e;
}

static void rebuild(size_t n, int64_t keep_from_ms)
{
    entry_t *table = xcalloc(n, sizeof(*table));
    size_t kept = 0;
    for (size_t i = 0; i < nslots; i++) {
        if (slots[i].sub[0] && slots[i].ends_at_ms >= keep_from_ms) {
            insert(table, n, &slots[i]);
            kept++;
        }
    }
    free(slots);
    slots = table;
    nslots = n;
    nused = kept;
}

bool revocation_note(const char *sub, int64_t revoked_at_ms, int64_t ends_at_ms)
{
    size_t len = sub ? strlen(sub) : 0;
    if (len == 0 || len > SUB_MAX)
        return false;
    entry_t *e = find(sub);
    if (e) {
        if (ends_at_ms > e->ends_at_ms)
            e->ends_at_ms = ends_at_ms;
        if (revoked_at_ms <= e->revoked_at_ms)
            return false;
        e->revoked_at_ms = revoked_at_ms;
        return true;
    }
    if (2 * (nused + 1) > nslots)
        rebuild(nslots ? 2 * nslots : 16, INT64_MIN);
    entry_t add = {.revoked_at_ms = revoked_at_ms, .ends_at_ms = ends_at_ms};
    memcpy(add.sub, sub, len + 1);
    insert(slots, nslots, &add);
    nused++;
    return true;
}

/* A worker heard of a revocation: note it, and the first time, end the streams the
 * revoked tokens opened (their clients reconnect and are refused; stream.c). */
static void learned(worker_t *w, const char *sub, int64_t revoked_at_ms, int64_t ends_at_ms)
{
    if (revocation_note(sub, revoked_at_ms, ends_at_ms) && w) {
        size_t n = stream_end_revoked(w, sub, revoked_at_ms);
        if (n)
            log_info("token revocations: ended %zu stream(s) of %s", n, sub);
    }
}

void revocation_prune(int64_t now_ms)
{
    if (!nused)
        return;
    size_t live = 0;
    for (size_t i = 0; i < nslots; i++)
        live += slots[i].sub[0] && slots[i].ends_at_ms >= now_ms;
    if (live == nused)
        return;
    size_t n = 16;
    while (2 * live > n)
        n *= 2;
    rebuild(n, now_ms);
}

size_t revocation_count(void)
{
    return nused;
}

void revocation_reset(void)
{
    free(slots);
    slots = NULL;
    nslots = nused = 0;
}

bool revocation_refused_at(const char *sub, int64_t issued_ms, int64_t now_ms)
{
    const entry_t *e = find(sub);
    return e && now_ms <= e->ends_at_ms && issued_ms <= e->revoked_at_ms;
}

bool revocation_refused(const char *sub, int64_t issued_ms)
{
    return nused && revocation_refused_at(sub, issued_ms, wall_clock_ms());
}

/* "<revoked_at_ms> <ends_at_ms> <sub>": what revoke_committed publishes. */
static int note_message(worker_t *w, const char *data, size_t len)
{
    char text[24 + 24 + SUB_MAX + 2];
    if (len >= sizeof(text) || memchr(data, '\0', len))
        return -1;
    memcpy(text, data, len);
    text[len] = '\0';
    long long revoked_at_ms, ends_at_ms;
    int sub_at = 0;
    if (sscanf(text, "%lld %lld %n", &revoked_at_ms, &ends_at_ms, &sub_at) != 2 || sub_at <= 0 ||
        sub_at >= (int)len)
        return -1;
    learned(w, text + sub_at, revoked_at_ms, ends_at_ms);
    return 0;
}

int revocation_note_message(const char *data, size_t len)
{
    return note_message(NULL, data, len);
}

/* ---- revoking (px_token_revoke) ---- */

static void revoke_queued(px_req_t *r, const px_pg_result_t *res, const px_pg_error_t *err,
                          void *ud)
{
    UNUSED(r), UNUSED(res), UNUSED(ud);
    UNUSED(err); /* a failed upsert fails the transaction: its commit reports it */
}

static void revoke_committed(px_req_t *r, void *ud)
{
    const entry_t *rk = ud;
    learned(r->worker, rk->sub, rk->revoked_at_ms, rk->ends_at_ms);
    char msg[24 + 24 + SUB_MAX + 2];
    int n = snprintf(msg, sizeof(msg), "%" PRId64 " %" PRId64 " %s", rk->revoked_at_ms,
                     rk->ends_at_ms, rk->sub);
    channel_publish_host(r, CHANNEL, msg, (size_t)n);
}

int api_token_revoke(px_pg_txn_t *txn, const char *sub)
{
    if (!txn)
        return PX_ESTATE;
    size_t len = sub ? strlen(sub) : 0;
    if (len == 0 || len > SUB_MAX)
        return PX_EINVAL;
    px_req_t *r = api_txn_req(txn);
    const auth_settings_t *a = &r->worker->cfg->auth;
    entry_t *rk = arena_alloc(&r->arena, sizeof(*rk));
    memcpy(rk->sub, sub, len + 1);
    rk->revoked_at_ms = wall_clock_ms();
    /* The longest a token issued now can live, and the clock skew its check allows (exp
     * has whole seconds: one more). */
    rk->ends_at_ms = rk->revoked_at_ms + (int64_t)(a->access_ttl_ms + a->leeway_ms) + 1000;
    char at[24], ends[24];
    snprintf(at, sizeof(at), "%" PRId64, rk->revoked_at_ms);
    snprintf(ends, sizeof(ends), "%" PRId64, rk->ends_at_ms);
    const char *params[] = {rk->sub, at, ends};
    /* Like an emit: it shares the next statement's sync point (pg_pipeline.c). */
    int rc =
        api_pg_txn_query_joined(txn, "px_token_revoke", sql_revoke, 3, params, revoke_queued, NULL);
    if (rc == 0)
        rc = api_pg_on_commit(txn, revoke_committed, rk);
    return rc;
}

/* ---- keeping the worker's table current ---- */

static void read_table(void);

static void table_read(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    UNUSED(ud);
    rv.reading = false;
    if (!rv.task)
        return; /* the worker is draining: the task ended with the read under way */
    if (err) {
        if (rv.read_ok || !rv.read_any)
            log_warn("token revocations: cannot read panthera_token_revocations (%s); "
                     "%s until a read succeeds",
                     api_pg_error_message(err),
                     rv.read_any ? "revocations other hosts make are heard only by channel"
                                 : "tokens revoked before this worker started are accepted");
        rv.read_ok = false;
    } else {
        for (int i = 0, n = api_pg_rows(res); i < n; i++)
            learned(task->worker, api_pg_value(res, i, 0),
                    strtoll(api_pg_value(res, i, 1), NULL, 10),
                    strtoll(api_pg_value(res, i, 2), NULL, 10));
        revocation_prune(wall_clock_ms());
        if (!rv.read_ok && rv.read_any)
            log_info("token revocations: read again (%zu in force)", nused);
        rv.read_ok = rv.read_any = true;
    }
    if (rv.again && rv.task) {
        rv.again = false;
        read_table();
    }
}

static void read_table(void)
{
    if (rv.reading) {
        rv.again = true;
        return;
    }
    char now[24], grace[24];
    snprintf(now, sizeof(now), "%" PRId64, wall_clock_ms());
    snprintf(grace, sizeof(grace), "%d", PRUNE_GRACE_MS);
    const char *params[] = {now, grace};
    if (api_pg_query(rv.task, "px_revocations_read", sql_read, 2, params, table_read, NULL) == 0)
        rv.reading = true;
}

static void on_message(px_req_t *task, const char *channel, const void *data, size_t len, void *ud)
{
    UNUSED(channel), UNUSED(ud);
    if (note_message(task->worker, data, len))
        log_warn("token revocations: a malformed message on the host's channel \"%s\" "
                 "was ignored",
                 CHANNEL);
}

static void on_status(px_req_t *task, int status, void *ud)
{
    UNUSED(task), UNUSED(ud);
    /* What was published while this worker could not hear is lost: read the record. */
    if (status == PX_CHANNEL_UP)
        read_table();
}

static void on_poll(px_req_t *task, int64_t id, void *ud)
{
    UNUSED(task), UNUSED(id), UNUSED(ud);
    read_table();
}

void revocation_worker_start(worker_t *w)
{
    if (!w->pg)
        return; /* nowhere to keep a revocation: px_token_revoke has no transaction */
    rv.task = tasks_begin(w, "host", "auth.revocations");
    if (!rv.task)
        return;
    if (w->redis)
        api_channel_subscribe(rv.task, CHANNEL, 0, on_message, on_status, NULL, NULL);
    read_table();
    uint64_t every = w->cfg->auth.revocation_poll_ms;
    if (every) /* ends with the task */
        api_timer_start(rv.task, every, every, on_poll, NULL);
}

void revocation_worker_stop(void)
{
    px_req_t *task = rv.task;
    rv.task = NULL; /* first: ending it cancels a read, whose callback then sees no task */
    rv.again = false;
    if (task)
        api_task_end(task, 0);
}
