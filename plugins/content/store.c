/*
 * store.c — every SQL statement of the content plugin.
 *
 * Statements are prepared by name (the host prefixes the names with the plugin's). Posts
 * come back as JSON text built by content_post_json() in the database, so the C side
 * never maps columns to fields one by one.
 */
#include <stdio.h>

#include "content.h"

#define POST_JSON(alias, viewer) "content_post_json(" alias ", " viewer "::uuid)::text"

int store_post_insert(px_pg_txn_t *txn, const char *id, const char *author,
                      const post_fields_t *f, px_pg_fn cb, void *ud)
{
    const char *v[] = {id, author, f->kind ? f->kind : "post", f->title, f->body,
                       f->tags_json, f->status ? f->status : "published"};
    return px_pg_txn_query(
        txn, "post_insert",
        "INSERT INTO content_posts AS p (id, author_id, kind, title, body, tags, status, "
        "published_at) VALUES ($1, $2, $3, $4, $5, content_tags_norm($6::json), $7, "
        "CASE WHEN $7 = 'published' THEN now() END) "
        "RETURNING " POST_JSON("p", "$2") ", p.version",
        7, v, cb, ud);
}

int store_post_get(px_req_t *req, const char *id, const char *viewer, px_pg_fn cb, void *ud)
{
    const char *v[] = {id, viewer};
    return px_pg_query(req, "post_get",
                       "SELECT " POST_JSON("p", "$2") ", p.version FROM content_posts p "
                       "WHERE p.id = $1 AND (p.status = 'published' OR p.author_id = $2::uuid)",
                       2, v, cb, ud);
}

int store_post_lock(px_pg_txn_t *txn, const char *id, const char *viewer, px_pg_fn cb, void *ud)
{
    const char *v[] = {id, viewer};
    return px_pg_txn_query(txn, "post_lock",
                           "SELECT author_id, version, status FROM content_posts WHERE id = $1 AND "
                           "(status = 'published' OR author_id = $2::uuid) FOR UPDATE",
                           2, v, cb, ud);
}

int store_post_update(px_pg_txn_t *txn, const char *id, const char *viewer,
                      const post_fields_t *f, px_pg_fn cb, void *ud)
{
    const char *v[] = {id, viewer, f->kind, f->title, f->body, f->tags_json, f->status};
    /* A first publication stamps publishedAt; going back to draft clears it (the CHECK
     * keeps the two in step). */
    return px_pg_txn_query(
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

int store_post_delete(px_pg_txn_t *txn, const char *id, px_pg_fn cb, void *ud)
{
    const char *v[] = {id};
    return px_pg_txn_query(txn, "post_delete", "DELETE FROM content_posts WHERE id = $1", 1, v,
                           cb, ud);
}

/* ts_headline's bounds: at most 3 fragments of up to 20 words; the text is the escaped
 * title and body, so the marks are the only markup. */
#define HEADLINE_OPTS                                                                         \
    "'StartSel=<b>, StopSel=</b>, MaxFragments=3, MaxWords=20, MinWords=5, "                \
    "FragmentDelimiter=\" … \"'"

int store_post_list(px_req_t *req, const char *viewer, const post_filter_t *f, px_pg_fn cb,
                    void *ud)
{
    char limit[16], offset[24];
    snprintf(limit, sizeof(limit), "%d", f->limit);
    snprintf(offset, sizeof(offset), "%lld", (long long)(f->page - 1) * f->limit);
    const char *v[] = {viewer, f->status, f->author_id, f->tag, f->kind, limit, offset, f->q};
    /* Drafts are listed only as the caller's own. With q, posts are ranked by
     * ts_rank_cd, ties newest first then by id, so a page never shuffles; the highlight
     * is computed in the outer query, for the returned page only. The page is joined to
     * the count so an empty page still reports the total. */
    return px_pg_query(
        req, "post_list",
        "WITH tq AS MATERIALIZED (SELECT content_tsquery($8) AS q), "
        "m AS (SELECT p AS r, p.published_at, p.updated_at, p.id, "
        "CASE WHEN $8::text IS NULL THEN 0 ELSE ts_rank_cd(p.search, (SELECT q FROM tq)) END "
        "AS rank FROM content_posts p WHERE "
        "CASE WHEN $2 = 'draft' THEN p.status = 'draft' AND p.author_id = $1::uuid "
        "ELSE p.status = 'published' END "
        "AND ($3::uuid IS NULL OR p.author_id = $3::uuid) "
        "AND ($4::text IS NULL OR p.tags @> ARRAY[lower($4::text)]) "
        "AND ($5::text IS NULL OR p.kind = $5) "
        "AND ($8::text IS NULL OR p.search @@ (SELECT q FROM tq))) "
        "SELECT (SELECT count(*) FROM m), "
        "CASE WHEN x.id IS NOT NULL THEN " POST_JSON("x.r", "$1") " END, "
        "CASE WHEN $8::text IS NOT NULL AND x.id IS NOT NULL THEN ts_headline('content_search', "
        "content_html_escape((x.r).title || E'\\n' || (x.r).body), (SELECT q FROM tq), "
        HEADLINE_OPTS ") END "
        "FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT m.r, m.rank, m.published_at, "
        "m.updated_at, m.id FROM m "
        "ORDER BY m.rank DESC, m.published_at DESC NULLS LAST, m.updated_at DESC, m.id DESC "
        "LIMIT $6::int OFFSET $7::bigint) x ON true "
        "ORDER BY x.rank DESC, x.published_at DESC NULLS LAST, x.updated_at DESC, x.id DESC",
        8, v, cb, ud);
}
