/*
 * stream.c — POST /v1/notifications/stream-tickets and GET /v1/notifications/stream.
 *
 * PostgreSQL is the record, the channel only a hint. A stream keeps `last`, the seq of
 * the last row it sent (seq order is commit order: consumer.c), and only ever sends the
 * caller's in-app rows after it, in order:
 *
 *  1. Subscribe to the caller's channel FIRST, then find the starting point (the resume
 *     id's seq, or the newest row's), then catch up from PostgreSQL. A row committed
 *     while this happens is either in the catch-up's result or arrives as a message
 *     afterwards; the seq test below drops the copy that comes twice.
 *  2. A live message carries its row's seq and `prev`, the seq of the user's previous
 *     in-app row. prev == last: the row is next, send it as it is (no query). seq <=
 *     last: already sent. Anything else (a message lost, two hosts' messages crossing):
 *     catch up from PostgreSQL instead. While a catch-up runs, messages only mark that
 *     another is due.
 *  3. PX_CHANNEL_DOWN (Redis gone): poll PostgreSQL every poll_interval until UP, which
 *     catches up once more (messages published during the outage are lost, not the rows).
 *     UP catches up and polls three more times (the publishers' connections may come
 *     back after ours). A catch-up that fails (PostgreSQL away, its queue full) polls
 *     the same way until a read works, so a stream whose last message has already come
 *     is never stranded.
 *  4. A client that stops reading (PX_EBUSY) has the stream ended rather than a row
 *     skipped: it reconnects with the last id it got and misses nothing.
 *
 * A resume id that names no row of the caller's (swept by the retention, or never theirs)
 * gets `event: reset` first: reload the inbox; the stream then goes on from the newest
 * row. Reload and shutdown are the host's: it ends the stream with a `retry:` and the
 * client resumes with Last-Event-ID on the new workers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notification.h"

typedef struct stream {
    px_req_t *req;
    const char *user;
    const char *resume;   /* the Last-Event-ID, or NULL */
    int64_t last;         /* seq of the last row sent (or the starting point) */
    bool started;         /* `last` is known */
    bool querying;        /* a PostgreSQL read is in flight */
    bool again;           /* something arrived meanwhile: read once more */
    bool ended;
    bool polling;         /* on the worker's poll list (channel down, or a read failed) */
    bool channel_down;    /* Redis down or not configured: poll until it is back */
    int grace;            /* polls left after the channel came back (see on_status) */
    struct stream *poll_prev, *poll_next;
    char last_s[24], batch_s[24];
} stream_t;

/* Streams that read PostgreSQL every poll_interval because their channel is down. One
 * timer per worker drives them all (a stream request cannot own a timer once its answer
 * has begun), on the worker's "stream-poll" background task. */
static stream_t *polling;
static px_req_t *poller;

static void poll_add(stream_t *s)
{
    if (s->polling)
        return;
    s->polling = true;
    s->poll_prev = NULL;
    s->poll_next = polling;
    if (polling)
        polling->poll_prev = s;
    polling = s;
}

static void poll_remove(stream_t *s)
{
    if (!s->polling)
        return;
    s->polling = false;
    if (s->poll_prev)
        s->poll_prev->poll_next = s->poll_next;
    else
        polling = s->poll_next;
    if (s->poll_next)
        s->poll_next->poll_prev = s->poll_prev;
    s->poll_prev = s->poll_next = NULL;
}

static void catch_up(stream_t *s);

static void end(stream_t *s)
{
    poll_remove(s);
    if (!s->ended) {
        s->ended = true;
        px_res_stream_end(s->req);
    }
}

/* Sends one row; false when the stream had to end. */
static bool send_row(stream_t *s, int64_t seq, const char *id, const char *json, size_t len)
{
    px_sse_event_t ev = PX_SSE_INIT;
    ev.id = id;
    ev.event = "notification";
    ev.data = json;
    ev.data_len = len;
    if (px_res_sse_send(s->req, &ev)) {
        end(s); /* not reading (PX_EBUSY) or gone: never skip a row, let it resume */
        return false;
    }
    s->last = seq;
    return true;
}

static void rows_read(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                      void *ud)
{
    (void)req;
    stream_t *s = ud;
    s->querying = false;
    if (err) {
        /* PostgreSQL away or its queue full (a hundred streams catching up at once):
         * nothing was sent. Poll until a read works: waiting for the next message
         * instead would strand a stream whose last message has come. */
        s->again = true;
        if (!s->polling)
            px_log(notif_plugin, PX_LOG_WARN, "stream: catch-up failed, polling: %s",
                   px_pg_error_message(err));
        poll_add(s);
        return;
    }
    if (!s->channel_down && s->grace <= 0)
        poll_remove(s);
    int rows = px_pg_rows(res);
    for (int i = 0; i < rows; i++) {
        int64_t seq;
        if (px_pg_int64(res, i, 0, &seq) || seq <= s->last)
            continue;
        const char *json = px_pg_value(res, i, 2);
        if (!send_row(s, seq, px_pg_value(res, i, 1), json, strlen(json)))
            return;
    }
    if (rows >= notif_cfg.replay_batch || s->again)
        catch_up(s);
}

static void catch_up(stream_t *s)
{
    if (s->ended)
        return;
    if (!s->started || s->querying) {
        s->again = true;
        return;
    }
    s->again = false;
    s->querying = true;
    snprintf(s->last_s, sizeof(s->last_s), "%" PRId64, s->last);
    const char *values[] = {s->user, s->last_s, s->batch_s};
    if (px_pg_query(s->req, "stream_after", sql_stream_after, 3, values, rows_read, s)) {
        s->querying = false;
        s->again = true;
    }
}

static void on_live(px_req_t *req, const char *channel, const void *data, size_t len, void *ud)
{
    (void)req, (void)channel;
    stream_t *s = ud;
    if (s->ended)
        return;
    json_t *msg = json_loadb(data, len, 0, NULL);
    if (json_is_true(json_object_get(msg, "gone"))) {
        /* The user was deleted (user_deleted.c): nothing more will come for them. */
        json_decref(msg);
        end(s);
        return;
    }
    if (!s->started || s->querying) {
        json_decref(msg);
        s->again = true;
        return;
    }
    json_t *n = json_object_get(msg, "notification");
    int64_t seq = json_integer_value(json_object_get(msg, "seq"));
    int64_t prev = json_integer_value(json_object_get(msg, "prev"));
    const char *id = json_string_value(json_object_get(n, "id"));
    if (!id || seq <= 0) {
        catch_up(s);
    } else if (seq > s->last) {
        if (prev == s->last) {
            char *text = json_dumps(n, JSON_COMPACT);
            if (text)
                send_row(s, seq, id, text, strlen(text));
            else
                catch_up(s);
            free(text);
        } else {
            catch_up(s);
        }
    }
    json_decref(msg);
}

static void poll_tick(px_req_t *task, int64_t timer_id, void *ud)
{
    (void)task, (void)timer_id, (void)ud;
    for (stream_t *s = polling, *next; s; s = next) {
        next = s->poll_next; /* catch_up may end the stream, which takes it off the list */
        if (s->grace > 0)
            s->grace--;
        catch_up(s);
    }
}

void stream_worker_start(px_plugin_t *p, void *ud)
{
    (void)ud;
    poller = px_task_begin(p, "stream-poll");
    if (poller)
        px_timer_start(poller, (uint64_t)notif_cfg.poll_ms, (uint64_t)notif_cfg.poll_ms,
                       poll_tick, NULL);
}

void stream_worker_stop(px_plugin_t *p, void *ud)
{
    (void)p, (void)ud;
    if (poller)
        px_task_end(poller, 0);
    poller = NULL;
}

static void on_status(px_req_t *req, int status, void *ud)
{
    (void)req;
    stream_t *s = ud;
    if (status == PX_CHANNEL_DOWN) {
        s->channel_down = true;
        poll_add(s);
        return;
    }
    /* Back: catch up at once, and keep polling a few more times, because the publishers'
     * own connections may come back after ours and their first messages be lost. */
    s->channel_down = false;
    s->grace = 3;
    catch_up(s); /* whatever was published before the subscription was live */
}

/* The starting point is known: say so (a comment, which EventSource ignores; tests and
 * tools wait for it before acting), then catch up. */
static void started(stream_t *s)
{
    s->started = true;
    if (px_res_sse_comment(s->req, "ready")) {
        end(s);
        return;
    }
    catch_up(s);
}

static void head_read(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                      void *ud)
{
    (void)req;
    stream_t *s = ud;
    s->querying = false;
    if (err || px_pg_int64(res, 0, 0, &s->last)) {
        end(s); /* no starting point: the client reconnects */
        return;
    }
    started(s);
}

static void start_from_head(stream_t *s)
{
    const char *values[] = {s->user};
    s->querying = true;
    if (px_pg_query(s->req, "stream_head", sql_stream_head, 1, values, head_read, s))
        end(s);
}

static void point_read(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    stream_t *s = ud;
    s->querying = false;
    if (err) {
        end(s);
        return;
    }
    if (res && px_pg_rows(res) == 1 && !px_pg_int64(res, 0, 0, &s->last)) {
        started(s);
        return;
    }
    static const char reset[] = "{\"reason\":\"the resume point is older than the retention; "
                                "reload the inbox\"}";
    px_sse_event_t ev = PX_SSE_INIT;
    ev.event = "reset";
    ev.data = reset;
    ev.data_len = sizeof(reset) - 1;
    if (px_res_sse_send(req, &ev)) {
        end(s);
        return;
    }
    start_from_head(s);
}

static bool is_uuid(const char *v)
{
    if (strlen(v) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = v[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? c != '-' : !hex)
            return false;
    }
    return true;
}

static void closed(px_req_t *req, int reason, void *ud)
{
    (void)req, (void)reason;
    stream_t *s = ud;
    s->ended = true;
    poll_remove(s);
}

int stream_open(px_req_t *req, void *ud)
{
    (void)ud;
    stream_t *s = px_req_alloc(req, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->req = req;
    s->user = px_req_caller_id(req);
    snprintf(s->batch_s, sizeof(s->batch_s), "%" PRId64, notif_cfg.replay_batch);
    s->resume = px_req_header(req, "Last-Event-ID");
    if (!s->resume || !*s->resume)
        s->resume = px_req_query(req, "lastEventId");
    char channel[40];
    notif_user_channel(s->user, channel);
    bool redis = true;
    int rc = px_channel_subscribe(req, channel, 0, on_live, on_status, s, NULL);
    if (rc == PX_EUNAVAIL)
        redis = false; /* no [redis]: PostgreSQL alone, polled */
    else if (rc)
        return rc;
    rc = px_res_sse_begin(req, notif_cfg.heartbeat_ms);
    if (rc)
        return rc;
    px_req_on_close(req, closed, s);
    if (!redis) {
        s->channel_down = true;
        poll_add(s);
    }
    if (s->resume && *s->resume) {
        if (is_uuid(s->resume)) {
            const char *values[] = {s->user, s->resume};
            s->querying = true;
            if (px_pg_query(req, "stream_point", sql_stream_point, 2, values, point_read, s))
                end(s);
        } else {
            point_read(req, NULL, NULL, s); /* names no row: reset */
        }
    } else {
        start_from_head(s);
    }
    return PX_ASYNC;
}

/* ---- tickets ---- */

int stream_ticket(px_req_t *req, void *ud)
{
    (void)ud;
    int64_t expires = 0;
    const char *ticket = px_ticket_issue(req, &expires);
    if (!ticket)
        return px_res_error(req, 503, "unavailable", "stream tickets need [auth] token_secret",
                            NULL);
    return px_res_json(req, 200, json_pack("{s:s, s:I}", "ticket", ticket, "expiresIn",
                                           (json_int_t)expires));
}
