/*
 * feed.c — GET /v1/feed (?sort=new|hot), the consumer that keeps the hot set, and
 * GET /v1/tags (the most used tags of published posts, with counts).
 *
 * sort=new reads PostgreSQL by keyset on (published_at, id): `?cursor=` (from the Link
 * header of the previous page) continues strictly after the last post seen, straight off
 * the index, however deep; `?page` without a cursor is an offset, as for every list.
 *
 * sort=hot: every post stores its hot score (migrations/006_hot.sql: time-independent, so
 * it changes only when the post's engagement does). The hottest [plugin:content] hot_size
 * posts are kept in a Redis sorted set (hot_key). A page inside that set is one script
 * call (PAGE_LUA): ZREVRANGE for the page's ids, ZCARD, the cached total, and the page as
 * rendered before, if any. Rendering a page (10 posts as JSON, by content_post_json in
 * PostgreSQL) costs far more than the rest of the answer, and every anonymous caller gets
 * the same bytes, so the rendered page is kept in Redis under a key made of everything
 * it shows: the content version (render.c: INCR'd after every committed change to what a
 * post shows, by the writers and by the consumer below with every rescore),
 * the page's bounds and the SHA1 of its ids (so any change of order in the set,
 * even one made by hand, is a different key). A hit is that one call and no PostgreSQL at
 * all; a miss renders from PostgreSQL for the ids and keeps the render (render_put;
 * renewed ahead of its expiry by one caller, see PAGE_LUA). Before all that, a worker
 * serves its own copy of the page while the host's generation has not moved (local.c),
 * and a caller with a token gets the same render with likedByMe of their own laid over
 * it (overlay.c). The total of published posts is counted at most every TOTAL_TTL seconds and kept
 * beside the set, so it may lag by that much. When Redis is down or the page lies deeper,
 * PostgreSQL answers alone from its (hot, id) index — slower, never wrong; when Redis
 * answers but has lost the set (empty), the set is rebuilt from PostgreSQL and this page
 * answered from PostgreSQL.
 *
 * The consumer group "content-hot" follows post.* events: post.published, post.liked and
 * post.commented (re)score the post in the set and trim it to hot_size; post.deleted
 * removes it. post.unliked and comment.deleted (a second group, "content-hot-uncomment":
 * one pattern per group) rescore it too, so a score they lower is lowered in the set.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"

static px_redis_script_t *page_script, *rescore_script;
static const char *hot_key;
static char *total_key;
static int64_t hot_size;

/* KEYS: the set, the cached total, the version. ARGV: the page's first and last rank, "1"
 * when the render may come from (and go to) the cache (always, since every caller gets
 * the shared render), RENEW_MS. The answer: ZCARD (0:
 * the set is gone), the cached total (-1: none), the render's key ("" when it is not to
 * be cached), the render ("" on a miss), then on a miss the page's ids (a hit skips ZCARD
 * and the total, which only a miss needs). In its last
 * RENEW_MS a render is a miss for one caller (the ":renew" marker, SET NX), who renders
 * it again, while everyone else still gets it: without that, every caller in flight when
 * it expires would render the same page at once. */
static const char PAGE_LUA[] =
    "local ids = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2])\n"
    "local key = ''\n"
    "if ARGV[3] == '1' and #ids > 0 then\n"
    "  key = KEYS[1] .. ':page:' .. (redis.call('GET', KEYS[3]) or '0') .. ':' .. ARGV[1] ..\n"
    "        ':' .. ARGV[2] .. ':' .. redis.sha1hex(table.concat(ids, ','))\n"
    "  local page = redis.call('GET', key)\n"
    "  if page and (redis.call('PTTL', key) > tonumber(ARGV[4]) or\n"
    "      not redis.call('SET', key .. ':renew', '1', 'PX', ARGV[4], 'NX')) then\n"
    "    return {1, -1, key, page}\n" /* the set holds this page: ZCARD > 0 */
    "  end\n"
    "end\n"
    "local out = {redis.call('ZCARD', KEYS[1]),\n"
    "             tonumber(redis.call('GET', KEYS[2]) or '-1'), key, ''}\n"
    "for i = 1, #ids do out[#out + 1] = ids[i] end\n"
    "return out\n";
/* The consumer's change to the set, with the version in the same step, so no reader sees
 * the new order under the old version. KEYS: the set, the version, the cached total.
 * ARGV: the post's id, its score ("": remove it), the rank below which the set is
 * trimmed, "1" when the number of published posts changed (the cached total goes). */
static const char RESCORE_LUA[] =
    "if ARGV[2] == '' then\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "else\n"
    "  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
    "  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, ARGV[3])\n"
    "end\n"
    "if ARGV[4] == '1' then redis.call('DEL', KEYS[3]) end\n"
    "return redis.call('INCR', KEYS[2])\n";
/* How long the hot feed's `total` may be reused: counting 100,000 published posts on every
 * request would cost more than the rest of the answer. */
#define TOTAL_TTL "10"
/* A kept page (render.c, RENDER_TTL_MS) holds its total, so it is as old as that total:
 * post.published and post.deleted drop the cached total with the version bump, so a
 * render after them counts again; other changes of the count (back to draft) show within
 * TOTAL_TTL + RENDER_TTL_MS. */

typedef struct feed {
    int page, limit;
    bool cache_total;  /* the total was counted: keep it in Redis for TOTAL_TTL */
    bool anonymous;    /* rendered for nobody: kept, and laid over for a signed-in caller */
    render_key_t keep; /* where the render is kept (render.c, local.c) */
} feed_t;

/* ---- answers ---- */

/* sort=new: rows (total, post json, publishedAt, id); a full page also gets a Link to
 * the next one by cursor (columns 2 and 3 of its last row). */
static void answered_new(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                         void *ud)
{
    feed_t *f = ud;
    /* A cursor of the right shape can still name no instant or uuid (February 30th). */
    if (err && !strncmp(px_pg_error_sqlstate(err), "22", 2)) {
        px_res_error(req, 400, "validation_failed", "the request has invalid fields",
                     json_pack("{s:s}", "cursor", "is not a cursor this feed gave"));
        return;
    }
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    int64_t total = 0;
    px_pg_int64(res, 0, 0, &total);
    json_t *posts = json_array();
    int rows = px_pg_rows(res);
    for (int i = 0; i < rows; i++) {
        const char *text = px_pg_value(res, i, 1);
        json_t *post = text ? json_loads(text, 0, NULL) : NULL;
        if (post)
            json_array_append_new(posts, post);
    }
    if ((int)json_array_size(posts) == f->limit) {
        char link[256];
        snprintf(link, sizeof(link), "</v1/feed?sort=new&limit=%d&cursor=%s,%s>; rel=\"next\"",
                 f->limit, px_pg_value(res, rows - 1, 2), px_pg_value(res, rows - 1, 3));
        px_res_header(req, "Link", link);
    }
    px_res_list(req, "posts", posts, total, f->page, f->limit);
}

/* Hot pages: (total, the answer as JSON text), sent as PostgreSQL wrote it; an anonymous
 * render is kept for the next callers (in Redis when hot_read gave a key, in the
 * worker) and answered through the overlay. */
static int answered(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    feed_t *f = ud;
    if (px_pg_rows(res) != 1 || !px_pg_value(res, 0, 1))
        return PX_EINTERNAL;
    const char *text = px_pg_value(res, 0, 1);
    size_t len = strlen(text);
    if (f->cache_total) {
        const char *set[] = {"SET", total_key, px_pg_value(res, 0, 0), "EX", TOTAL_TTL};
        px_redis_command(req, 5, set, NULL, NULL, NULL);
    }
    if (!f->anonymous)
        return px_res_send(req, 200, "application/json; charset=utf-8", text, len);
    render_put(req, &f->keep, text, len);
    return content_send_render(req, text, len);
}

static int from_postgres(px_req_t *req, feed_t *f)
{
    return store_feed_hot(req, px_req_caller_id(req), f->page, f->limit, answered, f);
}

/* ---- the set lost: rebuild, then answer from PostgreSQL ---- */

static void rebuilt(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    feed_t *f = ud;
    int rows = err ? 0 : px_pg_rows(res);
    if (rows) {
        int argc = 2 + 2 * rows;
        const char **argv = px_req_alloc(req, sizeof(*argv) * (size_t)argc);
        argv[0] = "ZADD";
        argv[1] = hot_key;
        for (int i = 0; i < rows; i++) {
            argv[2 + 2 * i] = px_pg_value(res, i, 1);
            argv[3 + 2 * i] = px_pg_value(res, i, 0);
        }
        /* Fire and forget: if it fails, the next request finds the set empty again. */
        px_redis_command(req, argc, argv, NULL, NULL, NULL);
    }
    int rc = from_postgres(req, f);
    if (rc)
        content_fail(req, rc);
}

/* ---- the set's page ---- */

/* The page from PAGE_LUA's answer; returns what a handler returns. */
static int hot_page(px_req_t *req, const px_redis_reply_t *reply, int err, feed_t *f)
{
    if (err || px_redis_type(reply) != PX_REDIS_ARRAY || px_redis_elements(reply) < 4 ||
        px_redis_type(px_redis_element(reply, 0)) != PX_REDIS_INTEGER ||
        px_redis_type(px_redis_element(reply, 1)) != PX_REDIS_INTEGER ||
        px_redis_type(px_redis_element(reply, 2)) != PX_REDIS_STRING ||
        px_redis_type(px_redis_element(reply, 3)) != PX_REDIS_STRING) {
        return from_postgres(req, f);
    }
    if (px_redis_integer(px_redis_element(reply, 0)) == 0) {
        return store_hot_top(req, hot_size, rebuilt, f);
    }
    size_t key_len = 0, page_len = 0;
    const char *key = px_redis_string(px_redis_element(reply, 2), &key_len);
    const char *page = px_redis_string(px_redis_element(reply, 3), &page_len);
    if (page_len) {
        local_put(f->keep.local, f->keep.gen, page, page_len);
        return content_send_render(req, page, page_len);
    }
    long long cached = px_redis_integer(px_redis_element(reply, 1));
    size_t n = px_redis_elements(reply) - 4;
    if (n == 0) {
        /* past the set's end: PostgreSQL knows whether more exist */
        return from_postgres(req, f);
    }
    /* "{id,id,...}": ids are uuids the consumer put there; anything else is skipped. */
    char *ids = px_req_alloc(req, n * 37 + 3);
    size_t at = 0;
    ids[at++] = '{';
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *id = px_redis_string(px_redis_element(reply, i + 4), &len);
        if (!id || len != 36 || strspn(id, "0123456789abcdef-") != 36)
            continue;
        if (at > 1)
            ids[at++] = ',';
        memcpy(ids + at, id, 36);
        at += 36;
    }
    ids[at++] = '}';
    ids[at] = '\0';
    f->cache_total = cached < 0;
    f->anonymous = true;
    f->keep.redis = key_len ? px_req_strdup(req, key) : NULL;
    return store_feed_ids(req, NULL, ids,
                          cached < 0 ? NULL : px_req_printf(req, "%lld", cached), f->page,
                          f->limit, answered, f);
}

static void hot_read(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    int rc = hot_page(req, reply, err, ud);
    if (rc < 0)
        content_fail(req, rc);
}

static feed_t *feed_new(px_req_t *req)
{
    feed_t *f = px_req_alloc(req, sizeof(*f));
    memset(f, 0, sizeof(*f));
    return f;
}

int feed_get(px_req_t *req, void *ud)
{
    (void)ud;
    feed_t *f = feed_new(req);
    int rc = px_req_page(req, &f->page, &f->limit);
    if (rc)
        return rc;
    const char *sort = px_req_query(req, "sort");
    if (!sort || !strcmp(sort, "new")) {
        /* The cursor passed its pattern: "<timestamp>,<uuid>". */
        const char *cursor = px_req_query(req, "cursor");
        char *ts = NULL, *id = NULL;
        if (cursor) {
            ts = (char *)px_req_strdup(req, cursor);
            id = strchr(ts, ',');
            *id++ = '\0';
            f->page = 1;
        }
        rc = store_feed_new(req, px_req_caller_id(req), ts, id, f->page, f->limit,
                            answered_new, f);
        return rc ? content_fail(req, rc) : PX_ASYNC;
    }
    int64_t start = (int64_t)(f->page - 1) * f->limit, stop = start + f->limit - 1;
    if (stop >= hot_size) {
        rc = from_postgres(req, f);
        return rc ? rc : PX_ASYNC;
    }
    /* Every caller gets the anonymous render (a signed-in one with their likedByMe laid
     * over it): the worker's copy under the generation the request began with, else the
     * render kept in Redis, else a new one. */
    f->keep.gen = local_generation();
    if (local_enabled()) {
        size_t len = 0;
        f->keep.local = px_req_printf(req, "hot\x1e%" PRId64 ":%" PRId64, start, stop);
        const char *page = local_get(f->keep.local, f->keep.gen, &len);
        if (page) {
            rc = content_send_render(req, page, len);
            return rc < 0 ? content_fail(req, rc) : rc;
        }
    }
    const char *argv[] = {hot_key, total_key, render_ver_key(),
                          px_req_printf(req, "%" PRId64, start),
                          px_req_printf(req, "%" PRId64, stop), "1", RENEW_MS};
    rc = px_redis_eval(req, page_script, 3, 7, argv, NULL, hot_read, f);
    if (rc == PX_EUNAVAIL)
        rc = from_postgres(req, f);
    return rc ? content_fail(req, rc) : PX_ASYNC;
}

/* ---- the consumer ---- */

static void redis_done(px_req_t *task, const px_redis_reply_t *reply, int err, void *ud)
{
    const px_event_t *ev = ud;
    /* The version moved with the set (RESCORE_LUA): now the workers' copies. */
    local_bump(task);
    if (!err && px_redis_type(reply) != PX_REDIS_ERROR) {
        px_event_ack(ev);
        return;
    }
    /* Redis is a cache here: a few retries ride out a blip; after that the event is
     * acknowledged and the set catches up at the post's next event or a rebuild. */
    if (px_event_attempt(ev) < 3) {
        px_event_retry(ev, 2000, "redis unavailable");
        return;
    }
    (void)task;
    px_event_ack(ev);
}

static void rescore(px_req_t *task, const px_event_t *ev, const char *id, const char *score)
{
    const char *type = px_event_type(ev);
    bool counted = !strcmp(type, "post.published") || !strcmp(type, "post.deleted");
    const char *argv[] = {hot_key, render_ver_key(), total_key, id, score ? score : "",
                          px_req_printf(task, "%" PRId64, -hot_size - 1), counted ? "1" : "0"};
    if (px_redis_eval(task, rescore_script, 3, 7, argv, NULL, redis_done, (void *)ev))
        redis_done(task, NULL, PX_REDIS_UNAVAILABLE, (void *)ev);
}

static void scored(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    const px_event_t *ev = ud;
    if (err) {
        px_event_retry(ev, 1000, px_pg_error_message(err));
        return;
    }
    /* No row: deleted or back to draft since; either way not in the feed. */
    rescore(task, ev, px_event_aggregate(ev), px_pg_rows(res) ? px_pg_value(res, 0, 0) : NULL);
}

static void on_post_event(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)ud;
    const char *type = px_event_type(ev), *id = px_event_aggregate(ev);
    if (!strcmp(type, "post.deleted")) {
        rescore(task, ev, id, NULL);
        return;
    }
    if (strcmp(type, "post.published") && strcmp(type, "post.liked") &&
        strcmp(type, "post.commented") && strcmp(type, "post.unliked") &&
        strcmp(type, "comment.deleted")) {
        px_event_ack(ev);
        return;
    }
    int rc = store_hot_one(txn, id, scored, (void *)ev);
    if (rc)
        px_event_retry(ev, 1000, "could not query the post");
}

int feed_init(px_plugin_t *self)
{
    px_config_declare(self, "hot_key", "content:hot");
    px_config_declare(self, "hot_size", "1000");
    hot_key = px_config_get(self, "hot_key");
    int rc = px_config_int(self, "hot_size", &hot_size);
    if (rc)
        return rc;
    if (hot_size < 10 || hot_size > 100000 || !*hot_key) {
        px_log(self, PX_LOG_ERROR,
               "[plugin:content] hot_size must be 10 to 100000 and hot_key not empty");
        return PX_EINVAL;
    }
    size_t n = strlen(hot_key) + sizeof(":total");
    total_key = malloc(n);
    if (!total_key)
        abort();
    snprintf(total_key, n, "%s:total", hot_key);
    rc = render_init(self, hot_key);
    if (!rc)
        rc = local_init(self);
    if (rc)
        return rc;
    page_script = px_redis_script_new(self, PAGE_LUA);
    rescore_script = px_redis_script_new(self, RESCORE_LUA);
    rc = px_event_subscribe(self, "content-hot", "post.*", on_post_event, NULL);
    return rc ? rc
              : px_event_subscribe(self, "content-hot-uncomment", "comment.deleted",
                                   on_post_event, NULL);
}

void feed_fini(void)
{
    px_redis_script_free(page_script);
    px_redis_script_free(rescore_script);
    page_script = rescore_script = NULL;
    free(total_key);
    total_key = NULL;
    render_fini();
}

/* ---- GET /v1/tags ---- */

static int tags_read(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    feed_t *f = ud;
    int64_t total = 0, n = 0;
    px_pg_int64(res, 0, 0, &total);
    json_t *tags = json_array();
    for (int i = 0; i < px_pg_rows(res); i++)
        if (px_pg_value(res, i, 1) && !px_pg_int64(res, i, 2, &n))
            json_array_append_new(tags, json_pack("{s:s, s:I}", "tag", px_pg_value(res, i, 1),
                                                  "count", (json_int_t)n));
    return px_res_list(req, "tags", tags, total, f->page, f->limit);
}

int tags_get(px_req_t *req, void *ud)
{
    (void)ud;
    feed_t *f = feed_new(req);
    int rc = px_req_page(req, &f->page, &f->limit);
    if (rc)
        return rc;
    rc = store_tags(req, f->page, f->limit, tags_read, f);
    return rc ? rc : PX_ASYNC;
}
