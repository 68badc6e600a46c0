/*
 * store.c — every SQL statement of the content plugin.
 *
 * Statements are prepared by name (the host prefixes the names with the plugin's). Posts
 * come back as JSON text built by content_post_json() in the database, so the C side
 * never maps columns to fields one by one.
 */
#include <stdio.h>

#include "content.h"

#define POST_JSON_VALUE(alias, viewer) "content_post_json(" alias ", " viewer "::uuid)"
#define POST_JSON(alias, viewer) POST_JSON_VALUE(alias, viewer) "::text"

int store_post_insert(px_pg_txn_t *txn, const char *id, const char *author,
                      const post_fields_t *f, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id, author, f->kind ? f->kind : "post", f->title, f->body,
                       f->tags_json, f->status ? f->status : "published"};
    return px_pg_txn_run(
        txn, "post_insert",
        "INSERT INTO content_posts AS p (id, author_id, kind, title, body, tags, status, "
        "published_at) VALUES ($1, $2, $3, $4, $5, content_tags_norm($6::json), $7, "
        "CASE WHEN $7 = 'published' THEN now() END) "
        "RETURNING " POST_JSON("p", "$2") ", p.version",
        7, v, cb, ud);
}

int store_post_get(px_req_t *req, const char *id, const char *viewer, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id, viewer};
    return px_pg_run(req, "post_get",
                       "SELECT " POST_JSON("p", "$2") ", p.version FROM content_posts p "
                       "WHERE p.id = $1 AND (p.status = 'published' OR p.author_id = $2::uuid)",
                       2, v, cb, ud);
}

int store_post_lock(px_pg_txn_t *txn, const char *id, const char *viewer, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id, viewer};
    return px_pg_txn_run(txn, "post_lock",
                           "SELECT author_id, version, status FROM content_posts WHERE id = $1 AND "
                           "(status = 'published' OR author_id = $2::uuid) FOR UPDATE",
                           2, v, cb, ud);
}

int store_post_update(px_pg_txn_t *txn, const char *id, const char *viewer,
                      const post_fields_t *f, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id, viewer, f->kind, f->title, f->body, f->tags_json, f->status};
    /* A first publication stamps publishedAt; going back to draft clears it (the CHECK
     * keeps the two in step). */
    return px_pg_txn_run(
        txn, "post_update",
        "UPDATE content_posts AS p SET kind = coalesce($3, kind), title = coalesce($4, title), "
        "body = coalesce($5, body), "
        "tags = CASE WHEN $6::json IS NULL THEN tags ELSE content_tags_norm($6::json) END, "
        "status = coalesce($7, status), "
        "published_at = CASE WHEN coalesce($7, status) = 'draft' THEN NULL "
        "ELSE coalesce(published_at, now()) END, "
        "version = version + 1, updated_at = now() WHERE id = $1 "
        "RETURNING " POST_JSON("p", "$2") ", p.version",
        7, v, cb, ud);
}

int store_post_delete(px_pg_txn_t *txn, const char *id, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id};
    /* The media go in the same statement, before the foreign key is checked (at its end). */
    return px_pg_txn_run(txn, "post_delete",
                           "WITH m AS (DELETE FROM content_media WHERE post_id = $1 "
                           "RETURNING id, blob_id), p AS (DELETE FROM content_posts WHERE "
                           "id = $1) SELECT id::text, blob_id FROM m",
                           1, v, cb, ud);
}

int store_media_attach(px_pg_txn_t *txn, const char *post_id, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {post_id};
    return px_pg_txn_run(
        txn, "media_attach",
        "UPDATE content_media m SET post_id = p.id FROM content_posts p WHERE p.id = $1 AND "
        "m.owner_id = p.author_id AND m.post_id IS NULL AND m.id IN (SELECT (regexp_matches("
        "p.body, '/v1/media/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
        "[0-9a-fA-F]{12})', 'g'))[1]::uuid)",
        1, v, cb, ud);
}

int store_media_get(px_req_t *req, const char *id, const char *viewer, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id, viewer};
    return px_pg_run(req, "media_get",
                       "SELECT m.blob_id, m.filename FROM content_media m LEFT JOIN "
                       "content_posts p ON p.id = m.post_id WHERE m.id = $1 AND CASE WHEN "
                       "m.post_id IS NULL THEN m.owner_id = $2::uuid ELSE p.status = "
                       "'published' OR p.author_id = $2::uuid END",
                       2, v, cb, ud);
}

/* ts_headline's bounds: at most 3 fragments of up to 20 words; the text is the escaped
 * title and body, so the marks are the only markup. */
#define HEADLINE_OPTS                                                                         \
    "'StartSel=<b>, StopSel=</b>, MaxFragments=3, MaxWords=20, MinWords=5, "                \
    "FragmentDelimiter=\" … \"'"

int store_post_list(px_req_t *req, const char *viewer, const post_filter_t *f,
                    px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {viewer, f->status, f->author_id, f->tag, f->kind,
                       px_req_printf(req, "%d", f->limit),
                       px_req_printf(req, "%lld", (long long)(f->page - 1) * f->limit), f->q,
                       px_req_printf(req, "%d", f->page), f->fuzzy ? "t" : "f"};
    /* Drafts are listed only as the caller's own. With q, posts are ranked by
     * ts_rank_cd, ties newest first then by id, so a page never shuffles. The matches
     * (m) carry only what orders and counts them; the rows of the returned page alone
     * are read whole, turned into JSON and given their highlight (ts_headline parses the
     * whole text: the dearest part of a search). The whole answer is built here (see
     * store_feed_hot): the plugin sends it as it comes. */
    return px_pg_run(
        req, "post_list",
        "WITH tq AS MATERIALIZED (SELECT CASE WHEN $10::bool THEN content_tsquery_fuzzy($8) "
        "ELSE websearch_to_tsquery('content_search', $8) END AS q), "
        "m AS (SELECT p.id, p.published_at, p.updated_at, "
        "CASE WHEN $8::text IS NULL THEN 0 ELSE ts_rank_cd(p.search, (SELECT q FROM tq)) END "
        "AS rank FROM content_posts p WHERE "
        "CASE WHEN $2 = 'draft' THEN p.status = 'draft' AND p.author_id = $1::uuid "
        "ELSE p.status = 'published' END "
        "AND ($3::uuid IS NULL OR p.author_id = $3::uuid) "
        "AND ($4::text IS NULL OR p.tags @> ARRAY[lower($4::text)]) "
        "AND ($5::text IS NULL OR p.kind = $5) "
        "AND ($8::text IS NULL OR p.search @@ (SELECT q FROM tq))), "
        "n AS (SELECT count(*) AS n FROM m), "
        "pg AS (SELECT m.rank, m.published_at, m.updated_at, m.id FROM m "
        "ORDER BY m.rank DESC, m.published_at DESC NULLS LAST, m.updated_at DESC, m.id DESC "
        "LIMIT $6::int OFFSET $7::bigint) "
        "SELECT n.n, json_build_object('total', n.n, 'page', $9::int, "
        "'limit', $6::int, 'posts', coalesce((SELECT json_agg(CASE WHEN $8::text IS NULL "
        "THEN " POST_JSON_VALUE("r", "$1") " ELSE (" POST_JSON_VALUE("r", "$1") "::jsonb "
        "|| jsonb_build_object('highlight', ts_headline('content_search', "
        "content_html_escape(r.title || E'\\n' || r.body), (SELECT q FROM tq), "
        HEADLINE_OPTS ")))::json END ORDER BY x.rank DESC, x.published_at DESC NULLS LAST, "
        "x.updated_at DESC, x.id DESC) FROM pg x JOIN content_posts r ON r.id = x.id), "
        "'[]'::json))::text FROM n",
        10, v, cb, ud);
}

/* ---- likes ---- */

/* The post must be one the viewer can see; the counter moves in the same statement as
 * the like row, and only when a row really came or went, so concurrent likes never lose
 * an update (each UPDATE waits for the row and adds to the committed count). */
#define VISIBLE_POST                                                                          \
    "p AS (SELECT id, author_id, title FROM content_posts WHERE id = $1 AND "               \
    "(status = 'published' OR author_id = $2::uuid)) "

int store_like(px_pg_txn_t *txn, const char *post_id, const char *user_id, bool on,
               px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {post_id, user_id};
    if (on)
        return px_pg_txn_run(
            txn, "like_add",
            "WITH " VISIBLE_POST ", "
            "ins AS (INSERT INTO content_likes (post_id, user_id) SELECT id, $2 FROM p "
            "ON CONFLICT DO NOTHING RETURNING post_id), "
            "upd AS (UPDATE content_posts c SET like_count = like_count + 1 FROM ins "
            "WHERE c.id = ins.post_id RETURNING c.id) "
            "SELECT p.author_id, p.title, (SELECT count(*) FROM upd) FROM p",
            2, v, cb, ud);
    return px_pg_txn_run(
        txn, "like_remove",
        "WITH " VISIBLE_POST ", "
        "del AS (DELETE FROM content_likes l USING p WHERE l.post_id = p.id "
        "AND l.user_id = $2 RETURNING l.post_id), "
        "upd AS (UPDATE content_posts c SET like_count = like_count - 1 FROM del "
        "WHERE c.id = del.post_id RETURNING c.id) "
        "SELECT p.author_id, p.title, (SELECT count(*) FROM upd) FROM p",
        2, v, cb, ud);
}

int store_liked(px_req_t *req, const char *user_id, const char *ids_array, px_pg_ok_fn cb,
                void *ud)
{
    const char *v[] = {user_id, ids_array};
    /* The primary key (post_id, user_id): one probe per id of the page. */
    return px_pg_run(req, "liked",
                     "SELECT post_id::text FROM content_likes WHERE post_id = ANY($2::uuid[]) "
                     "AND user_id = $1::uuid",
                     2, v, cb, ud);
}

/* ---- comments ---- */

/* The ids of the users an `@username` in BODY names (a trailing '.' ends a sentence, not
 * the name), the author AUTHOR left out; both are parameters ("$3"). */
#define MENTIONS(AUTHOR, BODY)                                                                \
    "(SELECT coalesce(array_agg(DISTINCT u.id), '{}') FROM users u WHERE u.id <> " AUTHOR  \
    "::uuid AND lower(u.username) IN (SELECT lower(n) FROM regexp_matches(" BODY ", "       \
    "'(?:^|[^A-Za-z0-9_.@])@([A-Za-z0-9_.]{3,30})', 'g') m, "                               \
    "LATERAL (VALUES (m[1]), (rtrim(m[1], '.'))) t(n)))"

int store_comment_insert(px_pg_txn_t *txn, const char *post_id, const char *id,
                         const char *author, const char *body, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {post_id, id, author, body};
    return px_pg_txn_run(
        txn, "comment_insert",
        "WITH p AS (SELECT id, author_id, title, status FROM content_posts WHERE id = $1 AND "
        "(status = 'published' OR author_id = $3::uuid)), "
        "ins AS (INSERT INTO content_comments (id, post_id, author_id, body, "
        "mentioned_user_ids) SELECT $2, p.id, $3, $4, " MENTIONS("$3", "$4") " FROM p RETURNING *), "
        "upd AS (UPDATE content_posts c SET comment_count = comment_count + 1 FROM ins "
        "WHERE c.id = ins.post_id RETURNING c.id) "
        "SELECT content_comment_json(ins)::text, p.author_id, p.title, left(ins.body, 200), "
        "to_json(ins.mentioned_user_ids)::text, (SELECT count(*) FROM upd), p.status "
        "FROM ins, p",
        4, v, cb, ud);
}

int store_comment_lock(px_pg_txn_t *txn, const char *post_id, const char *id,
                       const char *viewer, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {post_id, id, viewer};
    return px_pg_txn_run(
        txn, "comment_lock",
        "SELECT c.author_id, c.version, p.author_id FROM content_comments c "
        "JOIN content_posts p ON p.id = c.post_id WHERE c.post_id = $1 AND c.id = $2 AND "
        "(p.status = 'published' OR p.author_id = $3::uuid) FOR UPDATE OF c",
        3, v, cb, ud);
}

int store_comment_update(px_pg_txn_t *txn, const char *id, const char *author,
                         const char *body, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id, author, body};
    return px_pg_txn_run(
        txn, "comment_update",
        "UPDATE content_comments c SET body = $3, mentioned_user_ids = " MENTIONS("$2", "$3")
        ", version = version + 1, updated_at = now() WHERE id = $1 "
        "RETURNING content_comment_json(c)::text, c.version",
        3, v, cb, ud);
}

int store_comment_delete(px_pg_txn_t *txn, const char *id, px_pg_ok_fn cb, void *ud)
{
    const char *v[] = {id};
    return px_pg_txn_run(
        txn, "comment_delete",
        "WITH del AS (DELETE FROM content_comments WHERE id = $1 RETURNING post_id) "
        "UPDATE content_posts c SET comment_count = comment_count - 1 FROM del "
        "WHERE c.id = del.post_id",
        1, v, cb, ud);
}

int store_comment_list(px_req_t *req, const char *post_id, const char *viewer, int page,
                       int limit, px_pg_ok_fn cb, void *ud)
{
    char lim[16], off[24];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(off, sizeof(off), "%lld", (long long)(page - 1) * limit);
    const char *v[] = {post_id, viewer, lim, off};
    return px_pg_run(
        req, "comment_list",
        "WITH " VISIBLE_POST ", "
        "m AS (SELECT c FROM content_comments c JOIN p ON c.post_id = p.id) "
        "SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM m), "
        "CASE WHEN x.id IS NOT NULL THEN content_comment_json(x.c)::text END "
        "FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT c, (c).id, (c).created_at FROM m "
        "ORDER BY (c).created_at, (c).id LIMIT $3::int OFFSET $4::bigint) x ON true "
        "ORDER BY x.created_at, x.id",
        4, v, cb, ud);
}

/* ---- feed ---- */

int store_feed_new(px_req_t *req, const char *viewer, const char *before_ts,
                   const char *before_id, int page, int limit, px_pg_fn cb, void *ud)
{
    char lim[16], off[24];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(off, sizeof(off), "%lld", (long long)(page - 1) * limit);
    const char *v[] = {viewer, lim, off, before_ts, before_id};
    /* Keyset: with a cursor, the rows strictly after it in (published_at, id) order, read
     * straight off content_posts_published; without one, the first rows (page 1), or an
     * offset for a later ?page. */
    return px_pg_query(
        req, "feed_new",
        "SELECT (SELECT count(*) FROM content_posts WHERE status = 'published'), "
        "CASE WHEN x.id IS NOT NULL THEN " POST_JSON("x.r", "$1") " END, "
        "to_char(x.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), x.id "
        "FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT p AS r, p.published_at, p.id "
        "FROM content_posts p WHERE p.status = 'published' AND ($4::timestamptz IS NULL OR "
        "(p.published_at, p.id) < ($4::timestamptz, $5::uuid)) "
        "ORDER BY p.published_at DESC, p.id DESC LIMIT $2::int OFFSET $3::bigint) x ON true "
        "ORDER BY x.published_at DESC, x.id DESC",
        5, v, cb, ud);
}

/* Hot pages: one row (total, the whole answer in the list shape of API.md as text),
 * built by PostgreSQL so the plugin sends the posts without parsing and printing them
 * again. */
int store_feed_hot(px_req_t *req, const char *viewer, int page, int limit, px_pg_ok_fn cb,
                   void *ud)
{
    char lim[16], off[24], pg[16];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(off, sizeof(off), "%lld", (long long)(page - 1) * limit);
    snprintf(pg, sizeof(pg), "%d", page);
    const char *v[] = {viewer, lim, off, pg};
    return px_pg_run(
        req, "feed_hot",
        "WITH t AS (SELECT count(*) AS n FROM content_posts WHERE status = 'published') "
        "SELECT t.n, json_build_object('total', t.n, 'page', $4::int, 'limit', $2::int, "
        "'posts', coalesce((SELECT json_agg(" POST_JSON_VALUE("x.r", "$1") " ORDER BY x.hot "
        "DESC, x.id DESC) FROM (SELECT p AS r, p.hot, p.id FROM content_posts p "
        "WHERE p.status = 'published' ORDER BY p.hot DESC, p.id DESC "
        "LIMIT $2::int OFFSET $3::bigint) x), '[]'::json))::text FROM t",
        4, v, cb, ud);
}

int store_feed_ids(px_req_t *req, const char *viewer, const char *ids_array,
                   const char *total, int page, int limit, px_pg_ok_fn cb, void *ud)
{
    char lim[16], pg[16];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(pg, sizeof(pg), "%d", page);
    const char *v[] = {viewer, ids_array, total, pg, lim};
    /* The count runs only when no total is given (an InitPlan is evaluated on first use). */
    return px_pg_run(
        req, "feed_ids",
        "WITH t AS (SELECT CASE WHEN $3::bigint IS NULL THEN (SELECT count(*) FROM "
        "content_posts WHERE status = 'published') ELSE $3::bigint END AS n) "
        "SELECT t.n, json_build_object('total', t.n, 'page', $4::int, 'limit', $5::int, "
        "'posts', coalesce((SELECT json_agg(" POST_JSON_VALUE("p", "$1") " ORDER BY u.ord) "
        "FROM unnest($2::uuid[]) WITH ORDINALITY u(id, ord) JOIN content_posts p "
        "ON p.id = u.id AND p.status = 'published'), '[]'::json))::text FROM t",
        5, v, cb, ud);
}

int store_hot_top(px_req_t *req, int64_t n, px_pg_fn cb, void *ud)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%lld", (long long)n);
    const char *v[] = {lim};
    return px_pg_query(req, "hot_top",
                       "SELECT id, hot FROM content_posts WHERE status = 'published' "
                       "ORDER BY hot DESC, id DESC LIMIT $1::bigint",
                       1, v, cb, ud);
}

int store_hot_one(px_pg_txn_t *txn, const char *id, px_pg_fn cb, void *ud)
{
    const char *v[] = {id};
    return px_pg_txn_query(txn, "hot_one",
                           "SELECT hot FROM content_posts WHERE id = $1::uuid AND "
                           "status = 'published'",
                           1, v, cb, ud);
}

/* ---- tags ---- */

int store_tags(px_req_t *req, int page, int limit, px_pg_ok_fn cb, void *ud)
{
    char lim[16], off[24];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(off, sizeof(off), "%lld", (long long)(page - 1) * limit);
    const char *v[] = {lim, off};
    return px_pg_run(
        req, "tags",
        "WITH t AS (SELECT tag, count(*) AS n FROM content_posts, unnest(tags) tag "
        "WHERE status = 'published' GROUP BY tag) "
        "SELECT (SELECT count(*) FROM t), x.tag, x.n FROM (SELECT 1) one LEFT JOIN LATERAL "
        "(SELECT tag, n FROM t ORDER BY n DESC, tag LIMIT $1::int OFFSET $2::bigint) x ON true "
        "ORDER BY x.n DESC, x.tag",
        2, v, cb, ud);
}

/* ---- what a deleted user leaves (user_deleted.c) ---- */

/* Each takes at most USER_GONE_BATCH rows of the user, in id order, and is run again in
 * the same transaction while a batch comes back full: one statement stays far inside
 * statement_timeout however much the user wrote. */
int store_user_posts_remove(px_pg_txn_t *txn, const char *user_id, px_pg_fn cb, void *ud)
{
    const char *v[] = {user_id, USER_GONE_BATCH_TEXT};
    /* Comments, likes and the search vector go with each post (cascades, a column). Media
     * rows only lose their post: their blobs need px_blob_unref, which the media sweep does
     * for rows no post holds (media_sweep.c), so they are detached before the foreign key
     * is checked at the statement's end, never deleted here. */
    return px_pg_txn_query(
        txn, "user_posts_remove",
        "WITH p AS (SELECT id FROM content_posts WHERE author_id = $1::uuid ORDER BY id "
        "LIMIT $2::int FOR UPDATE), "
        "m AS (UPDATE content_media SET post_id = NULL WHERE post_id IN (SELECT id FROM p)), "
        "d AS (DELETE FROM content_posts WHERE id IN (SELECT id FROM p) RETURNING id) "
        "SELECT id::text FROM d",
        2, v, cb, ud);
}

int store_user_likes_remove(px_pg_txn_t *txn, const char *user_id, px_pg_fn cb, void *ud)
{
    const char *v[] = {user_id, USER_GONE_BATCH_TEXT};
    /* One like per (post, user): each post of the batch loses exactly one. */
    return px_pg_txn_query(
        txn, "user_likes_remove",
        "WITH l AS (DELETE FROM content_likes WHERE user_id = $1::uuid AND post_id IN ("
        "SELECT post_id FROM content_likes WHERE user_id = $1::uuid ORDER BY post_id "
        "LIMIT $2::int) RETURNING post_id), "
        "u AS (UPDATE content_posts c SET like_count = like_count - 1 FROM l "
        "WHERE c.id = l.post_id RETURNING c.id, c.author_id, c.title) "
        "SELECT id::text, author_id::text, title FROM u",
        2, v, cb, ud);
}

int store_user_comments_remove(px_pg_txn_t *txn, const char *user_id, px_pg_fn cb, void *ud)
{
    const char *v[] = {user_id, USER_GONE_BATCH_TEXT};
    return px_pg_txn_query(
        txn, "user_comments_remove",
        "WITH c AS (DELETE FROM content_comments WHERE id IN (SELECT id FROM content_comments "
        "WHERE author_id = $1::uuid ORDER BY id LIMIT $2::int) RETURNING id, post_id), "
        "n AS (SELECT post_id, count(*) AS n FROM c GROUP BY post_id), "
        "u AS (UPDATE content_posts p SET comment_count = comment_count - n.n FROM n "
        "WHERE p.id = n.post_id RETURNING p.id, p.author_id) "
        "SELECT c.id::text, c.post_id::text, u.author_id::text FROM c JOIN u ON u.id = c.post_id",
        2, v, cb, ud);
}
