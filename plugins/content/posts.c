/*
 * posts.c — GET/POST /v1/posts and GET/PUT/DELETE /v1/posts/{id}.
 *
 * Who sees what: a published post is anyone's to read, a draft only its author's; a post
 * the caller cannot see is 404 for every method (never 403, which would confirm it
 * exists). Of what the caller can see, only the author or an admin writes (else 403).
 *
 * Writes run in one transaction: the post is locked (SELECT ... FOR UPDATE) so the
 * If-Match check and the change see the same version, then changed and committed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"

/* What a chain of callbacks carries; request memory. */
typedef struct op {
    const char *id;
    const char *viewer;
    post_fields_t f;
    post_filter_t filter;
    bool remove; /* DELETE rather than PUT */
    const char *author, *old_status; /* of the locked post */
    px_pg_txn_t *txn;
    const char *post_text, *tag; /* the answer and its ETag, while the post's media are
                                  * attached */
    int status;                  /* its status code */
    bool published;              /* the post written is published */
    const render_key_t *keep;    /* GET /v1/posts: keep the answer there (render.c) */
    const char *list_viewer;     /* whom the list is rendered for (NULL: everyone) */
    int media_count, media_next; /* DELETE: the media that went, whose refs are dropped */
    const char **media_ids, **blob_ids;
} op_t;

static op_t *op_new(px_req_t *req)
{
    op_t *op = px_req_alloc(req, sizeof(*op));
    memset(op, 0, sizeof(*op));
    op->viewer = px_req_caller_id(req);
    return op;
}

static const char *field(px_req_t *req, const json_t *body, const char *name)
{
    const char *v = json_string_value(json_object_get(body, name));
    return v ? px_req_strdup(req, v) : NULL;
}

/* The fields of a body that passed its schema, copied to request memory (a hook's value
 * is freed before the SQL runs); tags as JSON text for the SQL. */
static void fields_read(px_req_t *req, json_t *body, post_fields_t *f)
{
    memset(f, 0, sizeof(*f));
    f->kind = field(req, body, "kind");
    f->title = field(req, body, "title");
    f->body = field(req, body, "body");
    f->status = field(req, body, "status");
    json_t *tags = json_object_get(body, "tags");
    if (tags) {
        char *text = json_dumps(tags, JSON_COMPACT);
        f->tags_json = px_req_strdup(req, text);
        free(text);
    }
}

/* The fields as the before_post_publish hook sees them: those the request sets. */
static json_t *fields_json(const post_fields_t *f, const char *id)
{
    json_t *v = json_object();
    if (id)
        json_object_set_new(v, "id", json_string(id));
    const char *names[] = {"kind", "title", "body", "status"};
    const char *values[] = {f->kind, f->title, f->body, f->status};
    for (int i = 0; i < 4; i++)
        if (values[i])
            json_object_set_new(v, names[i], json_string(values[i]));
    if (f->tags_json)
        json_object_set_new(v, "tags", json_loads(f->tags_json, 0, NULL));
    return v;
}

/* Run before_post_publish on a write whose result is a published post. The hook may
 * veto (PX_DONE: answered) or change the fields; what it gives back must pass the same
 * schema as the request (else 400, as if the client had sent it). `id` is NULL on a
 * create (and then not shown to the hook). */
static int publish_hook(px_req_t *req, post_fields_t *f, const char *id)
{
    json_t *value = fields_json(f, id);
    int rc = px_hook_run(req, "before_post_publish", &value);
    if (rc) {
        json_decref(value);
        return rc;
    }
    json_object_del(value, "id");
    json_t *bad = NULL;
    rc = px_schema_check(content_plugin, id ? "UpdatePostRequest" : "CreatePostRequest", value,
                         &bad);
    if (rc == PX_EINVAL) {
        json_decref(value);
        px_res_error(req, 400, "validation_failed", "the before_post_publish hook gave "
                     "invalid fields", bad);
        return PX_DONE;
    }
    if (!rc)
        fields_read(req, value, f);
    json_decref(value);
    return rc;
}

/* Parse a post's JSON text from the database; NULL only if PostgreSQL sent garbage. */
static json_t *post_parse(const char *text)
{
    return text ? json_loads(text, 0, NULL) : NULL;
}

/* post.published (README.md, "Events"), from the post as answered, in the same
 * transaction as the change. */
static int emit_published(px_pg_txn_t *txn, const json_t *post, const char *actor)
{
    json_t *payload = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:s}",
                                "postId", json_object_get(post, "id"),
                                "authorId", json_object_get(post, "authorId"),
                                "title", json_object_get(post, "title"),
                                "kind", json_object_get(post, "kind"),
                                "tags", json_object_get(post, "tags"),
                                "publishedAt", json_object_get(post, "publishedAt"),
                                "actorId", actor);
    return px_event_emit(txn, "post.published",
                         json_string_value(json_object_get(post, "id")), payload);
}

/* ---- media a post holds (README.md, "Media") ---- */

static void put_answer(px_req_t *req, void *ud)
{
    op_t *op = ud;
    json_t *post = post_parse(op->post_text);
    if (!post) {
        content_fail(req, PX_EINTERNAL);
        return;
    }
    px_res_header(req, "ETag", content_etag(req, op->tag));
    px_res_json(req, op->status, post);
}

static void put_committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    if (err)
        px_res_pg_error(req, err);
    else
        content_touch(req, put_answer, ud);
}

static void create_answer(px_req_t *req, void *ud)
{
    op_t *op = ud;
    json_t *post = post_parse(op->post_text);
    int rc = post ? 0 : PX_EINTERNAL;
    if (post) {
        px_res_header(req, "ETag", content_etag(req, op->tag));
        rc = px_pg_commit_respond(op->txn, op->status, post);
    }
    if (rc)
        content_fail(req, rc);
}

/* A create is idempotent: its answer is stored with the commit, so a published one bumps
 * the content version just before (render.c says what that leaves open). A change to a
 * post shows at once: its answer waits for the commit and content_touch. */
static int attached(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    (void)res;
    if (op->status != 201)
        return px_pg_commit(op->txn, put_committed, op);
    if (op->published)
        content_touch(req, create_answer, op);
    else
        create_answer(req, op);
    return PX_ASYNC;
}

/* Every write that leaves a post's body in place gives it the uploads it links, in its
 * transaction; then the answer goes out with the commit. The post is kept as the text
 * PostgreSQL sent (request memory), so nothing leaks when a step on the way fails and
 * the host answers. */
static int attach_then_respond(px_req_t *req, op_t *op, const char *text, json_t *post,
                               int status)
{
    op->post_text = px_req_strdup(req, text);
    op->tag = content_post_tag(req, post);
    op->status = status;
    return store_media_attach(op->txn, op->id, attached, op);
}

/* After the delete committed: drop the blob reference of each media that went with the
 * post, one after the other, then 204. A reference that cannot be dropped now (the store
 * unavailable) keeps its blob until an operator looks (logged): the post is gone either
 * way, and a blob too many is the safe side of the SDK's ordering rule. */
static void unref_next(px_req_t *req, op_t *op);

static void unreffed(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    op_t *op = ud;
    (void)blob;
    if (!req)
        return;
    if (status)
        px_log(content_plugin, PX_LOG_WARN, "post %s: media %s keeps its blob %s (%d)", op->id,
               op->media_ids[op->media_next - 1], op->blob_ids[op->media_next - 1], status);
    unref_next(req, op);
}

static void unref_next(px_req_t *req, op_t *op)
{
    while (op->media_next < op->media_count) {
        int i = op->media_next++;
        char ref[48];
        snprintf(ref, sizeof(ref), "media:%s", op->media_ids[i]);
        int rc = px_blob_unref(req, op->blob_ids[i], ref, unreffed, op);
        if (!rc)
            return;
        px_log(content_plugin, PX_LOG_WARN, "post %s: media %s keeps its blob %s (%d)", op->id,
               op->media_ids[i], op->blob_ids[i], rc);
    }
    px_res_send(req, 204, NULL, "", 0);
}

static void delete_touched(px_req_t *req, void *ud)
{
    unref_next(req, ud);
}

static void delete_committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    if (err)
        px_res_pg_error(req, err);
    else
        content_touch(req, delete_touched, ud);
}

/* ---- GET /v1/posts ---- */

/* A search that matched nothing exactly runs once more through the typo fallback
 * (README.md, "Search"): a query that matches pays for one scan, not a probe first. */
static int listed(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    int64_t total = -1;
    const char *text = px_pg_rows(res) == 1 ? px_pg_value(res, 0, 1) : NULL;
    if (!text || px_pg_int64(res, 0, 0, &total))
        return PX_EINTERNAL;
    if (total == 0 && op->filter.q && !op->filter.fuzzy) {
        op->filter.fuzzy = true;
        return store_post_list(req, op->list_viewer, &op->filter, listed, op);
    }
    size_t len = strlen(text);
    if (op->list_viewer)
        return px_res_send(req, 200, "application/json; charset=utf-8", text, len);
    render_put(req, op->keep, text, len);
    return content_send_render(req, text, len);
}

/* The list everyone shares, as kept (render.c), else built for nobody; a signed-in
 * caller gets their likedByMe laid over it (overlay.c). */
static int list_kept(px_req_t *req, const render_key_t *key, const char *render, size_t len,
                     void *ud)
{
    op_t *op = ud;
    if (render)
        return content_send_render(req, render, len);
    op->keep = key;
    return store_post_list(req, NULL, &op->filter, listed, op);
}

/* What an anonymous list depends on, for its key: each parameter present or absent. */
static const char *list_words(px_req_t *req, const post_filter_t *f)
{
    const char *v[] = {f->q, f->status, f->author_id, f->tag, f->kind};
    const char *out = px_req_printf(req, "%d/%d", f->page, f->limit);
    for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++)
        out = px_req_printf(req, "%s\x1f%s%s", out, v[i] ? "+" : "-", v[i] ? v[i] : "");
    return out;
}

/* A blank q searches nothing: it is the plain list. */
static const char *search_text(const char *q)
{
    if (!q)
        return NULL;
    for (const char *c = q; *c; c++)
        if (!isspace((unsigned char)*c))
            return q;
    return NULL;
}

int posts_list(px_req_t *req, void *ud)
{
    (void)ud;
    op_t *op = op_new(req);
    post_filter_t *f = &op->filter;
    int rc = px_req_page(req, &f->page, &f->limit);
    if (rc)
        return rc;
    f->status = px_req_query(req, "status");
    f->author_id = px_req_query(req, "authorId");
    f->tag = px_req_query(req, "tag");
    f->kind = px_req_query(req, "kind");
    f->q = search_text(px_req_query(req, "q"));
    /* A list is the same for everyone but for likedByMe (overlay.c), unless it is the
     * caller's own drafts. */
    if (op->viewer && f->status && !strcmp(f->status, "draft")) {
        op->list_viewer = op->viewer;
        rc = store_post_list(req, op->viewer, f, listed, op);
    } else {
        rc = render_get(req, "list", list_words(req, f), list_kept, op);
    }
    return rc ? rc : PX_ASYNC;
}

/* ---- POST /v1/posts ---- */

static int inserted(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    const char *text = px_pg_value(res, 0, 0);
    json_t *post = post_parse(text);
    if (!post)
        return PX_EINTERNAL;
    const char *status = json_string_value(json_object_get(post, "status"));
    op->published = !strcmp(status, "published");
    int rc = op->published ? emit_published(op->txn, post, op->viewer) : 0;
    if (!rc) {
        px_res_header(req, "Location", px_req_printf(req, "/v1/posts/%s", op->id));
        rc = attach_then_respond(req, op, text, post, 201);
    }
    json_decref(post);
    return rc;
}

static int create_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    op_t *op = ud;
    (void)req;
    op->txn = txn;
    return store_post_insert(txn, op->id, op->viewer, &op->f, inserted, op);
}

int posts_create(px_req_t *req, void *ud)
{
    (void)ud;
    op_t *op = op_new(req);
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    fields_read(req, body, &op->f);
    if (!op->f.status || !strcmp(op->f.status, "published")) {
        rc = publish_hook(req, &op->f, NULL);
        if (rc)
            return rc;
    }
    char *id = px_req_alloc(req, 37);
    rc = px_uuid_new(id);
    if (rc)
        return rc;
    op->id = id;
    /* Idempotency-Key: a retried create gets the first answer, the same id. */
    rc = px_pg_begin_run(req, PX_PG_IDEMPOTENT, create_begun, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- GET /v1/posts/{id} ---- */

static int got(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    (void)ud;
    if (px_pg_rows(res) == 0)
        return px_res_error(req, 404, "not_found", "no such post", NULL);
    json_t *post = post_parse(px_pg_value(res, 0, 0));
    if (!post)
        return PX_EINTERNAL;
    if (px_res_etag(req, content_post_tag(req, post)) == PX_DONE) {
        json_decref(post);
        return PX_DONE;
    }
    return px_res_json(req, 200, post);
}

int posts_get(px_req_t *req, void *ud)
{
    (void)ud;
    char id[37];
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    rc = store_post_get(req, id, px_req_caller_id(req), got, NULL);
    return rc ? rc : PX_ASYNC;
}

/* ---- PUT and DELETE /v1/posts/{id} ---- */

static int changed(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    const char *text = px_pg_value(res, 0, 0);
    json_t *post = post_parse(text);
    if (!post)
        return PX_EINTERNAL;
    const char *status = json_string_value(json_object_get(post, "status"));
    int rc = 0;
    if (!strcmp(op->old_status, "draft") && !strcmp(status, "published"))
        rc = emit_published(op->txn, post, op->viewer);
    if (!rc)
        rc = attach_then_respond(req, op, text, post, 200);
    json_decref(post);
    return rc;
}

static int removed(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    op->media_count = px_pg_rows(res);
    op->media_ids = px_req_alloc(req, sizeof(char *) * (size_t)(op->media_count + 1));
    op->blob_ids = px_req_alloc(req, sizeof(char *) * (size_t)(op->media_count + 1));
    for (int i = 0; i < op->media_count; i++) {
        op->media_ids[i] = px_req_strdup(req, px_pg_value(res, i, 0));
        op->blob_ids[i] = px_req_strdup(req, px_pg_value(res, i, 1));
    }
    json_t *payload = json_pack("{s:s, s:s, s:s}", "postId", op->id, "authorId", op->author,
                                "actorId", op->viewer);
    int rc = px_event_emit(op->txn, "post.deleted", op->id, payload);
    return rc ? rc : px_pg_commit(op->txn, delete_committed, op);
}

static int locked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    if (px_pg_rows(res) == 0)
        return px_res_error(req, 404, "not_found", "no such post", NULL);
    if (strcmp(px_pg_value(res, 0, 0), op->viewer) && !content_is_admin(req))
        return px_res_error(req, 403, "forbidden",
                            "only the author or an admin may change a post", NULL);
    op->author = px_req_strdup(req, px_pg_value(res, 0, 0));
    op->old_status = px_req_strdup(req, px_pg_value(res, 0, 2));
    int rc = content_if_match(req, px_pg_value(res, 0, 1));
    const char *status = op->f.status ? op->f.status : op->old_status;
    if (!rc && !op->remove && !strcmp(status, "published"))
        rc = publish_hook(req, &op->f, op->id);
    if (rc)
        return rc;
    return op->remove ? store_post_delete(op->txn, op->id, removed, op)
                      : store_post_update(op->txn, op->id, op->viewer, &op->f, changed, op);
}

static int write_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    op_t *op = ud;
    (void)req;
    op->txn = txn;
    return store_post_lock(txn, op->id, op->viewer, locked, op);
}

static int write_start(px_req_t *req, bool remove)
{
    op_t *op = op_new(req);
    char *id = px_req_alloc(req, 37);
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    op->id = id;
    op->remove = remove;
    if (!remove) {
        json_t *body;
        rc = px_req_json(req, &body);
        if (rc)
            return rc;
        fields_read(req, body, &op->f);
    }
    rc = px_pg_begin_run(req, 0, write_begun, op);
    return rc ? rc : PX_ASYNC;
}

int posts_update(px_req_t *req, void *ud)
{
    (void)ud;
    return write_start(req, false);
}

int posts_delete(px_req_t *req, void *ud)
{
    (void)ud;
    return write_start(req, true);
}
