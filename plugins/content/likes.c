/*
 * likes.c — POST and DELETE /v1/posts/{id}/like: 204 either way, idempotent.
 *
 * One statement per request adds (or removes) the caller's like row and moves the post's
 * likeCount only when the row really came (or went): a repeated like changes nothing and
 * emits nothing, and concurrent likes by different users each add one (store.c). The
 * statement runs in a transaction so post.liked (or post.unliked, when a like really
 * went) commits with the change or not at all.
 */
#include <string.h>

#include "content.h"

typedef struct like {
    char id[37];
    bool on;
    px_pg_txn_t *txn;
} like_t;

static int liked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    like_t *l = ud;
    if (px_pg_rows(res) == 0)
        return px_res_error(req, 404, "not_found", "no such post", NULL);
    int64_t changed = 0;
    px_pg_int64(res, 0, 2, &changed);
    if (changed) {
        json_t *payload = json_pack("{s:s, s:s, s:s, s:s}", "postId", l->id, "authorId",
                                    px_pg_value(res, 0, 0), "title", px_pg_value(res, 0, 1),
                                    "actorId", px_req_caller_id(req));
        int rc = px_event_emit(l->txn, l->on ? "post.liked" : "post.unliked", l->id, payload);
        if (rc)
            return rc;
    }
    return px_pg_commit(l->txn, content_committed_204, l);
}

static int begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    like_t *l = ud;
    l->txn = txn;
    return store_like(txn, l->id, px_req_caller_id(req), l->on, liked, l);
}

static int like_start(px_req_t *req, bool on)
{
    like_t *l = px_req_alloc(req, sizeof(*l));
    memset(l, 0, sizeof(*l));
    l->on = on;
    int rc = px_req_uuid(req, "id", l->id);
    if (rc)
        return rc;
    rc = px_pg_begin_run(req, 0, begun, l);
    return rc ? rc : PX_ASYNC;
}

int likes_add(px_req_t *req, void *ud)
{
    (void)ud;
    return like_start(req, true);
}

int likes_remove(px_req_t *req, void *ud)
{
    (void)ud;
    return like_start(req, false);
}
