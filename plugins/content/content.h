/*
 * content.h — the content plugin's shared declarations (API.md, "Content").
 *
 * The folder: content.c (descriptor, init, route table), posts.c (the /v1/posts routes),
 * likes.c, comments.c, feed.c (the feed, the hot set and its consumer), render.c (answers
 * kept in Redis under the content version), local.c (each worker's copies of them),
 * overlay.c (a signed-in caller's likedByMe over an anonymous render), media*.c with
 * image.c, video.c, pdf.c (uploads), user_deleted.c (what a deleted user owned goes),
 * store.c (every SQL statement), migrations/ (the schema), schemas.json (bodies and
 * answers). Posts are built as JSON by PostgreSQL itself (content_post_json in
 * migrations/003_likes.sql), so every route answers the same shape.
 */
#ifndef CONTENT_H
#define CONTENT_H

#include <panthera/panthera.h>
#include <stdbool.h>

extern px_plugin_t *content_plugin;
extern const char content_schemas[];

/* Answer a PX_E* code (503 with a hint to retry for PX_EUNAVAIL). */
int content_fail(px_req_t *req, int rc);
/* True when the caller's token says admin. */
bool content_is_admin(px_req_t *req);
/* The ETag header for a version: "\"3\"" in request memory (px_res_etag takes the bare
 * version). */
const char *content_etag(px_req_t *req, const char *version);
/* A post's representation tag (bare, for px_res_etag): "<version>-<likeCount>-
 * <commentCount>-<likedByMe 0/1>", so a GET's If-None-Match stops matching when anything
 * the body shows changes, counters included (they move without `version`). */
const char *content_post_tag(px_req_t *req, const json_t *post);
/* px_req_if_match on a post's `version`, also accepting a representation tag of that
 * version (what the client got as ETag): 0 or PX_EPRECONDITION. */
int content_if_match(px_req_t *req, const char *version);

/* posts.c */
int posts_list(px_req_t *req, void *ud);
int posts_create(px_req_t *req, void *ud);
int posts_get(px_req_t *req, void *ud);
int posts_update(px_req_t *req, void *ud);
int posts_delete(px_req_t *req, void *ud);

/* store.c: each runs one statement and hands its result to `cb`; 0 or a PX_E* code
 * (then `cb` is not called). Those taking a px_pg_ok_fn run by px_pg_run / px_pg_txn_run:
 * a failed statement is answered by the host and `cb` sees only results (and returns what
 * a handler returns); the three taking a px_pg_fn (feed_new, hot_top, hot_one) tell
 * failures apart themselves. `viewer` is the caller's id or NULL. */
typedef struct post_fields {
    const char *kind, *title, *body, *tags_json, *status; /* NULL: not given */
} post_fields_t;
typedef struct post_filter {
    const char *status, *author_id, *tag, *kind;
    const char *q; /* search text (valid UTF-8, not blank), or NULL */
    bool fuzzy;    /* q through the typo fallback (content_tsquery_fuzzy), not exactly */
    int page, limit;
} post_filter_t;

int store_post_insert(px_pg_txn_t *txn, const char *id, const char *author,
                      const post_fields_t *f, px_pg_ok_fn cb, void *ud);
int store_post_get(px_req_t *req, const char *id, const char *viewer, px_pg_ok_fn cb, void *ud);
/* Lock a post the viewer can see: one row (author_id, version, status) or none. */
int store_post_lock(px_pg_txn_t *txn, const char *id, const char *viewer, px_pg_ok_fn cb,
                    void *ud);
int store_post_update(px_pg_txn_t *txn, const char *id, const char *viewer,
                      const post_fields_t *f, px_pg_ok_fn cb, void *ud);
/* Deletes the post and its media rows: rows (media id, blob id) of the media that went,
 * whose blob references the caller drops after the commit. */
int store_post_delete(px_pg_txn_t *txn, const char *id, px_pg_ok_fn cb, void *ud);
/* Give the post the uploads of its author that its body links (/v1/media/<id>) and no
 * post holds yet; no rows. */
int store_media_attach(px_pg_txn_t *txn, const char *post_id, px_pg_ok_fn cb, void *ud);
/* A media the viewer may see (its post's visibility; no post: the uploader's): one row
 * (blob id, filename) or none. */
int store_media_get(px_req_t *req, const char *id, const char *viewer, px_pg_ok_fn cb, void *ud);
/* One row: (total, the answer's JSON text {total, page, limit, posts}; with q, each post
 * has its highlight). */
int store_post_list(px_req_t *req, const char *viewer, const post_filter_t *f, px_pg_ok_fn cb,
                    void *ud);

/* likes.c, comments.c */
int likes_add(px_req_t *req, void *ud);
int likes_remove(px_req_t *req, void *ud);
int comments_list(px_req_t *req, void *ud);
int comments_create(px_req_t *req, void *ud);
int comments_update(px_req_t *req, void *ud);
int comments_delete(px_req_t *req, void *ud);

/* Commit callback that answers 204 (or the commit's error), after content_touch: every
 * route using it changes what a post shows (a counter, the post itself). */
void content_committed_204(px_req_t *req, const px_pg_error_t *err, void *ud);

/* Likes: rows (post author_id, title, 1 when the like came or went / 0) or none when the
 * viewer cannot see the post. */
int store_like(px_pg_txn_t *txn, const char *post_id, const char *user_id, bool on,
               px_pg_ok_fn cb, void *ud);
/* Comments. Insert: one row (comment json, post author_id, post title, excerpt,
 * mentioned ids json, 1) or none when the post is not visible. Lock: (author_id,
 * version, post author_id) or none. Update: (comment json, version). List: rows
 * (posts visible 0/1, total, comment json or NULL). */
int store_comment_insert(px_pg_txn_t *txn, const char *post_id, const char *id,
                         const char *author, const char *body, px_pg_ok_fn cb, void *ud);
int store_comment_lock(px_pg_txn_t *txn, const char *post_id, const char *id,
                       const char *viewer, px_pg_ok_fn cb, void *ud);
int store_comment_update(px_pg_txn_t *txn, const char *id, const char *author,
                         const char *body, px_pg_ok_fn cb, void *ud);
int store_comment_delete(px_pg_txn_t *txn, const char *id, px_pg_ok_fn cb, void *ud);
int store_comment_list(px_req_t *req, const char *post_id, const char *viewer, int page,
                       int limit, px_pg_ok_fn cb, void *ud);

/* feed.c */
int feed_init(px_plugin_t *self);
void feed_fini(void);
int feed_get(px_req_t *req, void *ud);

int tags_get(px_req_t *req, void *ud);
/* media.c, media_sweep.c (the uploads no post took, removed after media_unattached_ttl) */
int media_sweep_init(px_plugin_t *self);
int media_upload(px_req_t *req, void *ud);
int media_get(px_req_t *req, void *ud);
/* Tags of published posts by use: rows (distinct tags, tag or NULL, count). */
int store_tags(px_req_t *req, int page, int limit, px_pg_ok_fn cb, void *ud);

/* Feed. New: rows (published total, post json or NULL, publishedAt with microseconds, id)
 * newest first, after the cursor (before_ts, before_id; NULLs: none). Hot: one row
 * (total, the answer's JSON text: {total, page, limit, posts}) by the stored hot score.
 * Ids: the same one row for a uuid array text ("{a,b}"), in its order, published ones
 * only; `total` as given, or counted when NULL. Top: (id, hot) of the n
 * hottest. One: (hot) of a published post, or no row. */
int store_feed_new(px_req_t *req, const char *viewer, const char *before_ts,
                   const char *before_id, int page, int limit, px_pg_fn cb, void *ud);
int store_feed_hot(px_req_t *req, const char *viewer, int page, int limit, px_pg_ok_fn cb,
                   void *ud);
int store_feed_ids(px_req_t *req, const char *viewer, const char *ids_array,
                   const char *total, int page, int limit, px_pg_ok_fn cb, void *ud);
int store_hot_top(px_req_t *req, int64_t n, px_pg_fn cb, void *ud);
int store_hot_one(px_pg_txn_t *txn, const char *id, px_pg_fn cb, void *ud);

/* user_deleted.c: the consumer of user.deleted (group content-users). */
int user_deleted_init(px_plugin_t *self);
/* Rows of a deleted user removed per statement; the statement runs again while a batch
 * comes back full. */
#define USER_GONE_BATCH 500
#define USER_GONE_BATCH_TEXT "500"
/* Each removes up to USER_GONE_BATCH rows the user owns. Posts: rows (post id), the
 * post's comments and likes gone with it and its media detached (post_id NULL) for the
 * media sweep. Likes: rows (post id, post author_id, title), like_count down by one each.
 * Comments: rows (comment id, post id, post author_id), comment_count down. */
int store_user_posts_remove(px_pg_txn_t *txn, const char *user_id, px_pg_fn cb, void *ud);
int store_user_likes_remove(px_pg_txn_t *txn, const char *user_id, px_pg_fn cb, void *ud);
int store_user_comments_remove(px_pg_txn_t *txn, const char *user_id, px_pg_fn cb, void *ud);

/* local.c: each worker's own copies of the anonymous renders (see there). */
int local_init(px_plugin_t *self);
/* The host's generation: a copy is served only under the one its lookup began with. */
uint64_t local_generation(void);
/* After the content version moved in Redis: a new generation, on this host at once and
 * on the others through the channel. `ctx` is a request or a task. */
void local_bump(px_req_t *ctx);
/* True when copies are kept and served (local_pages > 0 and the channel is up). */
bool local_enabled(void);
/* The copy of `key` under `gen` and not past local_ttl_ms (`len` bytes, valid until the
 * worker's next local_put), or NULL. */
const char *local_get(const char *key, uint64_t gen, size_t *len);
/* Keep a copy of `len` bytes of `text` under `key` and `gen` (dropped when `gen` is
 * already gone, or the render alone exceeds local_bytes). */
void local_put(const char *key, uint64_t gen, const char *text, size_t len);

/* overlay.c: answer an anonymous render of a list of posts ({..., "posts": [...]}, every
 * likedByMe false); a signed-in caller gets it with likedByMe of their own, read in one
 * lookup of the page's ids. `text` is borrowed for the call. Returns what a handler
 * returns. */
int content_send_render(px_req_t *req, const char *text, size_t len);
/* Rows (post id) of the ids in `ids_array` ("{a,b}") that `user_id` likes. */
int store_liked(px_req_t *req, const char *user_id, const char *ids_array, px_pg_ok_fn cb,
                void *ud);

/* render.c: answers kept in Redis under the content version (see there). */
/* How long a render is kept, and the stretch before its end in which one caller renders
 * it again (milliseconds, as text for Redis). */
#define RENDER_TTL_MS "10000"
#define RENEW_MS "2000"
int render_init(px_plugin_t *self, const char *hot_key);
void render_fini(void);
/* The version's key (hot_key:ver), for the scripts of feed.c. */
const char *render_ver_key(void);
/* After a committed change to what a post shows (its fields, its counters, its being
 * there): a new content version, so no kept render shows the old state, then `then` — at
 * once when Redis is away. Call it before answering, so a client's next read shows its
 * own write. */
typedef void (*content_touched_fn)(px_req_t *req, void *ud);
void content_touch(px_req_t *req, content_touched_fn then, void *ud);
/* Where a render is kept: in Redis under the content version and in the worker under
 * the generation (local.c). Request memory. */
typedef struct render_key {
    const char *redis; /* NULL: Redis is away */
    const char *local; /* NULL: not kept in the worker */
    uint64_t gen;      /* the generation when the lookup began */
} render_key_t;
/* The render kept for `words` (what the answer depends on; hashed into the Redis key
 * hot_key:<prefix>:<version>), from the worker's copy or else Redis: `cb` gets where to
 * keep a new render and the render (NULL on a miss; `len` bytes, borrowed for the call),
 * and returns what a handler returns. Returns 0, or a code `cb` or the call gave (not
 * answered). A render found in Redis is also kept in the worker. */
typedef int (*render_fn)(px_req_t *req, const render_key_t *key, const char *render,
                         size_t len, void *ud);
int render_get(px_req_t *req, const char *prefix, const char *words, render_fn cb, void *ud);
/* Keep `len` bytes of `text` where `key` says: in Redis for RENDER_TTL_MS (fire and
 * forget) and in the worker. */
void render_put(px_req_t *req, const render_key_t *key, const char *text, size_t len);

#endif
