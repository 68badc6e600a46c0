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
 * and them a p99 of a second under load). The render is patched as text, in place: a
 * page the caller likes nothing of goes out byte for byte as kept.
 */
#include <stdlib.h>
#include <string.h>

#include "content.h"

/* A page holds at most 100 posts (px_req_page); a render with more is not one of ours. */
#define MAX_POSTS 128
#define MAX_DEPTH 32

/* One post of a render: its id (36 bytes into the text) and where its likedByMe value
 * starts. */
typedef struct slot {
    const char *id;
    size_t liked_at;
} slot_t;

typedef struct overlay {
    char *text; /* a copy of the render, request memory: patched in place */
    size_t len;
    slot_t *slots;
    int n;
} overlay_t;

static bool is(const char *t, size_t s, size_t e, const char *word)
{
    return e - s == strlen(word) && !memcmp(t + s, word, e - s);
}

/* Walk the render once, building nothing (a full parse cost the signed-in hot feed two
 * thirds of its CPU, mostly malloc): for each object of the root's "posts" array, the
 * value of its "id" and the offset of its likedByMe value, whatever the order of the
 * keys (a search's render comes through jsonb, which sorts them). Strings are skipped
 * with their escapes, so nothing inside a title or a body can look like structure.
 * Returns the number of posts, or -1 when the text is not a render of posts. */
static int scan(const char *t, size_t len, slot_t *out)
{
    char stack[MAX_DEPTH];
    int depth = 0, n = 0, posts_depth = 0;
    bool key_next = false, in_post = false;
    size_t k1s = 0, k1e = 0, k3s = 0, k3e = 0; /* the last key of the root, of a post */
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (c == '"') {
            size_t s = ++i;
            while (i < len && t[i] != '"')
                i += t[i] == '\\' ? 2 : 1;
            if (i >= len)
                return -1;
            if (depth > 0 && stack[depth - 1] == '{' && key_next) {
                key_next = false;
                if (depth == 1)
                    k1s = s, k1e = i;
                else if (depth == 3 && in_post)
                    k3s = s, k3e = i;
            } else if (depth == 3 && in_post && is(t, k3s, k3e, "id") && i - s == 36) {
                out[n - 1].id = t + s;
            }
        } else if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH)
                return -1;
            if (c == '[' && depth == 1 && is(t, k1s, k1e, "posts"))
                posts_depth = 2;
            if (c == '{' && depth == 2 && posts_depth == 2) {
                if (n == MAX_POSTS)
                    return -1;
                out[n++] = (slot_t){NULL, 0};
                in_post = true;
                k3s = k3e = 0;
            }
            stack[depth++] = c;
            key_next = c == '{';
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[depth - 1] != (c == '}' ? '{' : '['))
                return -1;
            depth--;
            if (depth == 2 && in_post)
                in_post = false;
            if (depth == 1 && posts_depth == 2)
                posts_depth = -1; /* the posts array ended */
            key_next = false;
        } else if (c == ',') {
            key_next = depth > 0 && stack[depth - 1] == '{';
        } else if (c == ':' && depth == 3 && in_post && is(t, k3s, k3e, "likedByMe")) {
            size_t j = i + 1;
            while (j < len && (t[j] == ' ' || t[j] == '\n' || t[j] == '\t' || t[j] == '\r'))
                j++;
            out[n - 1].liked_at = j;
        }
    }
    if (depth != 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (!out[i].id || strspn(out[i].id, "0123456789abcdef-") < 36 || !out[i].liked_at ||
            out[i].liked_at + 5 > len || memcmp(t + out[i].liked_at, "false", 5))
            return -1;
    return n;
}

/* A liked post's likedByMe becomes "true " (the space is JSON whitespace): the same
 * length, so the render is patched where it lies. */
static int liked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    overlay_t *o = ud;
    for (int r = 0; r < px_pg_rows(res); r++) {
        const char *id = px_pg_value(res, r, 0);
        for (int i = 0; id && i < o->n; i++)
            if (!memcmp(o->slots[i].id, id, 36)) {
                memcpy(o->text + o->slots[i].liked_at, "true ", 5);
                break;
            }
    }
    return px_res_send(req, 200, "application/json; charset=utf-8", o->text, o->len);
}

int content_send_render(px_req_t *req, const char *text, size_t len)
{
    const char *viewer = px_req_caller_id(req);
    if (!viewer)
        return px_res_send(req, 200, "application/json; charset=utf-8", text, len);
    overlay_t *o = px_req_alloc(req, sizeof(*o));
    o->slots = px_req_alloc(req, sizeof(*o->slots) * MAX_POSTS);
    o->n = scan(text, len, o->slots);
    if (o->n < 0) {
        px_log(content_plugin, PX_LOG_ERROR, "[plugin:content] a kept render is not a list "
               "of posts");
        return PX_EINTERNAL;
    }
    if (o->n == 0)
        return px_res_send(req, 200, "application/json; charset=utf-8", text, len);
    o->text = px_req_alloc(req, len + 1);
    memcpy(o->text, text, len);
    o->text[len] = '\0';
    o->len = len;
    /* "{id,id,...}"; the ids now point into the copy, which outlives this call. */
    char *ids = px_req_alloc(req, (size_t)o->n * 37 + 3);
    size_t at = 0;
    ids[at++] = '{';
    for (int i = 0; i < o->n; i++) {
        o->slots[i].id = o->text + (o->slots[i].id - text);
        if (i)
            ids[at++] = ',';
        memcpy(ids + at, o->slots[i].id, 36);
        at += 36;
    }
    ids[at++] = '}';
    ids[at] = '\0';
    int rc = store_liked(req, viewer, ids, liked, o);
    return rc ? rc : PX_ASYNC;
}
