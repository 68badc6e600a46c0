/*
 * overlay.c — a signed-in caller's list of posts: the anonymous render with likedByMe of
 * their own laid over it.
 *
 * Why. Of a post as content_post_json shows it, only likedByMe depends on who asks; and
 * of the lists that are kept (the hot feed, GET /v1/posts), only ?status=draft holds
 * anything but published posts, which posts.c renders for its caller alone. So a
 * signed-in caller is served the render everyone shares (kept in the worker or Redis,
 * render.c, local.c), with the ids of the page looked up once in content_likes by its
 * primary key, instead of a render of their own (which cost PostgreSQL the whole page,
 * and them a p99 of a second under load). A page the caller likes nothing of goes out
 * byte for byte as kept.
 */
#include <stdlib.h>
#include <string.h>

#include "content.h"

typedef struct overlay {
    const char *text; /* the render, request memory */
    size_t len;
} overlay_t;

/* The ids of the render's posts as a uuid array text ("{a,b}"), NULL when it has none (or
 * is not a list of posts). */
static const char *page_ids(px_req_t *req, const json_t *doc)
{
    json_t *posts = json_object_get(doc, "posts");
    size_t n = json_array_size(posts);
    if (n == 0)
        return NULL;
    char *ids = px_req_alloc(req, n * 37 + 3);
    size_t at = 0;
    ids[at++] = '{';
    for (size_t i = 0; i < n; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(posts, i), "id"));
        if (!id || strlen(id) != 36 || strspn(id, "0123456789abcdef-") != 36)
            continue;
        if (at > 1)
            ids[at++] = ',';
        memcpy(ids + at, id, 36);
        at += 36;
    }
    ids[at++] = '}';
    ids[at] = '\0';
    return at > 2 ? ids : NULL;
}

static int liked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    overlay_t *o = ud;
    int rows = px_pg_rows(res);
    if (rows == 0)
        return px_res_send(req, 200, "application/json; charset=utf-8", o->text, o->len);
    json_t *doc = json_loadb(o->text, o->len, 0, NULL);
    json_t *posts = json_object_get(doc, "posts");
    if (!posts) {
        json_decref(doc);
        return PX_EINTERNAL;
    }
    for (size_t i = 0; i < json_array_size(posts); i++) {
        json_t *post = json_array_get(posts, i);
        const char *id = json_string_value(json_object_get(post, "id"));
        for (int r = 0; id && r < rows; r++)
            if (!strcmp(id, px_pg_value(res, r, 0))) {
                json_object_set_new(post, "likedByMe", json_true());
                break;
            }
    }
    return px_res_json(req, 200, doc);
}

int content_send_render(px_req_t *req, const char *text, size_t len)
{
    const char *viewer = px_req_caller_id(req);
    if (!viewer)
        return px_res_send(req, 200, "application/json; charset=utf-8", text, len);
    json_t *doc = json_loadb(text, len, 0, NULL);
    if (!doc)
        return PX_EINTERNAL;
    const char *ids = page_ids(req, doc);
    json_decref(doc);
    if (!ids)
        return px_res_send(req, 200, "application/json; charset=utf-8", text, len);
    overlay_t *o = px_req_alloc(req, sizeof(*o));
    char *copy = px_req_alloc(req, len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    o->text = copy;
    o->len = len;
    int rc = store_liked(req, viewer, ids, liked, o);
    return rc ? rc : PX_ASYNC;
}
