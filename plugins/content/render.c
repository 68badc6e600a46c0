/*
 * render.c — answers rendered once and kept in Redis under the content version.
 *
 * Why. A page of posts is built by PostgreSQL (content_post_json, and for a search the
 * ranking and ts_headline), which costs far more than sending it: on 100,000 posts a
 * search is a few milliseconds of PostgreSQL, the hot feed's page about one. Every
 * anonymous caller asking the same thing gets the same bytes, so those answers are kept:
 * the hot feed's pages (feed.c, whose own script reads the set and the render in one
 * call) and the lists and searches of GET /v1/posts (posts.c, through render_get). A
 * caller with a token is served the same render with likedByMe of their own laid over
 * it (overlay.c); only their own drafts (?status=draft) are rendered for them alone.
 * Each worker also keeps its own copies of what it served (local.c), so most requests
 * never reach Redis.
 *
 * Correctness. Every key holds the content version (hot_key:ver), which is INCR'd after
 * each committed change to what a post shows (and then the host's generation, which
 * the workers' copies hang on: local.c): by the writers through content_touch
 * before they answer (an edit, a delete, a like, a comment's deletion, a publication), so
 * a client's next read shows its own write, and by the hot consumer (feed.c) with every
 * event it applies (post.published, post.commented, ...), so what other workers and
 * other clients did shows as soon as its event is consumed. A bump makes every kept
 * render unreachable at once; they expire after RENDER_TTL_MS, which also bounds what a
 * bump lost while Redis was away can leave stale. A creation bumps before its commit
 * (its answer is stored with the commit, px_pg_commit_respond); a reader racing that
 * commit may keep the old render until post.published bumps again, moments later.
 *
 * Renewal. In its last RENEW_MS a render is a miss for one caller (a ":renew" marker set
 * with NX), who renders it again, while everyone else still gets it: without that, every
 * caller in flight when it expires would render the same page at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"

static const char *base; /* hot_key: every key here starts with it */
static char *ver_key;
static px_redis_script_t *get_script;

/* KEYS: the version. ARGV: the key's prefix, the request's words (hashed), RENEW_MS. The
 * answer: the key under the current version, and the render or "" (a miss). */
static const char GET_LUA[] =
    "local key = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0') .. ':' ..\n"
    "            redis.sha1hex(ARGV[2])\n"
    "local page = redis.call('GET', key)\n"
    "if page and (redis.call('PTTL', key) > tonumber(ARGV[3]) or\n"
    "    not redis.call('SET', key .. ':renew', '1', 'PX', ARGV[3], 'NX')) then\n"
    "  return {key, page}\n"
    "end\n"
    "return {key, ''}\n";

int render_init(px_plugin_t *self, const char *hot_key)
{
    size_t n = strlen(hot_key) + sizeof(":ver");
    ver_key = malloc(n);
    if (!ver_key)
        abort();
    snprintf(ver_key, n, "%s:ver", hot_key);
    base = hot_key;
    get_script = px_redis_script_new(self, GET_LUA);
    return 0;
}

void render_fini(void)
{
    px_redis_script_free(get_script);
    get_script = NULL;
    free(ver_key);
    ver_key = NULL;
}

const char *render_ver_key(void)
{
    return ver_key;
}

/* ---- the writers' bump ---- */

typedef struct touch {
    content_touched_fn then;
    void *ud;
} touch_t;

/* Redis first, then the generation (local.c says why the order). */
static void touched(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    touch_t *t = ud;
    (void)reply, (void)err;
    local_bump(req);
    t->then(req, t->ud);
}

void content_touch(px_req_t *req, content_touched_fn then, void *ud)
{
    touch_t *t = px_req_alloc(req, sizeof(*t));
    t->then = then;
    t->ud = ud;
    const char *argv[] = {"INCR", ver_key};
    /* Redis away: nothing to wait for; what it keeps expires within RENDER_TTL_MS. */
    if (px_redis_command(req, 2, argv, NULL, touched, t)) {
        local_bump(req);
        then(req, ud);
    }
}

/* ---- reading and keeping a render ---- */

typedef struct lookup {
    render_fn cb;
    void *ud;
    render_key_t key;
} lookup_t;

static void got(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    lookup_t *l = ud;
    size_t key_len = 0, len = 0;
    const char *key = NULL, *page = NULL;
    if (!err && px_redis_type(reply) == PX_REDIS_ARRAY && px_redis_elements(reply) == 2 &&
        px_redis_type(px_redis_element(reply, 0)) == PX_REDIS_STRING &&
        px_redis_type(px_redis_element(reply, 1)) == PX_REDIS_STRING) {
        key = px_redis_string(px_redis_element(reply, 0), &key_len);
        page = px_redis_string(px_redis_element(reply, 1), &len);
    }
    l->key.redis = key ? px_req_strdup(req, key) : NULL;
    if (len)
        local_put(l->key.local, l->key.gen, page, len);
    int rc = l->cb(req, &l->key, len ? page : NULL, len, l->ud);
    if (rc < 0)
        content_fail(req, rc);
}

int render_get(px_req_t *req, const char *prefix, const char *words, render_fn cb, void *ud)
{
    lookup_t *l = px_req_alloc(req, sizeof(*l));
    l->cb = cb;
    l->ud = ud;
    l->key.redis = NULL;
    l->key.local = NULL;
    l->key.gen = local_generation();
    if (local_enabled()) {
        size_t len = 0;
        l->key.local = px_req_printf(req, "%s\x1e%s", prefix, words);
        const char *page = local_get(l->key.local, l->key.gen, &len);
        if (page)
            return cb(req, &l->key, page, len, ud);
    }
    const char *argv[] = {ver_key, px_req_printf(req, "%s:%s:", base, prefix),
                          words, RENEW_MS};
    int rc = px_redis_eval(req, get_script, 1, 4, argv, NULL, got, l);
    return rc == PX_EUNAVAIL ? cb(req, &l->key, NULL, 0, ud) : rc;
}

void render_put(px_req_t *req, const render_key_t *key, const char *text, size_t len)
{
    if (key->redis) {
        const char *argv[] = {"SET", key->redis, text, "PX", RENDER_TTL_MS};
        const size_t lens[] = {3, strlen(key->redis), len, 2, strlen(RENDER_TTL_MS)};
        px_redis_command(req, 5, argv, lens, NULL, NULL);
    }
    local_put(key->local, key->gen, text, len);
}
