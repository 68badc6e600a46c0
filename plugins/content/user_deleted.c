/*
 * user_deleted.c — what a deleted user owned goes: the consumer of user.deleted (group
 * "content-users"; README.md, "Deleted users").
 *
 * The tables name users without a foreign key (the plugin is written against the SDK
 * alone, as a third party's would be), so PostgreSQL cannot cascade a user's deletion into
 * them; the user plugin's event says when one committed. The handler removes, in the
 * delivery's transaction (so a redelivery finds nothing left and does nothing twice):
 *   1. the user's posts, drafts and published, each with what hangs off it (comments and
 *      likes by the cascades; its media detached for the sweep), emitting post.deleted
 *      for each, as a post's DELETE does;
 *   2. their likes on other posts, like_count down, emitting post.unliked for each;
 *   3. their comments on other posts, comment_count down, emitting comment.deleted.
 * Posts go first so the likes and comments left are on posts that stay: no event about a
 * post that is going anyway. The events are what the consumers of a post's DELETE, an
 * unlike or a comment's deletion already act on (the hot set of feed.c, notification,
 * webhooks); `actorId` in them is the deleted user, since the user.deleted event names no
 * one else. Each kind is one statement of at most USER_GONE_BATCH rows, run again while a
 * batch comes back full. After the commit the content version and the host's generation
 * move (content_touch), as after any write: no kept render still shows what went.
 */
#include <stdlib.h>
#include <string.h>

#include "content.h"

typedef int (*remove_fn)(px_pg_txn_t *txn, const char *user_id, px_pg_fn cb, void *ud);

/* What one delivery carries from statement to statement; freed when the event is ended. */
typedef struct gone {
    const px_event_t *ev;
    px_pg_txn_t *txn;
    char user_id[37];
    size_t kind; /* index into kinds[] */
} gone_t;

static int emit_post(gone_t *g, const px_pg_result_t *res, int row)
{
    const char *post = px_pg_value(res, row, 0);
    return px_event_emit(g->txn, "post.deleted", post,
                         json_pack("{s:s, s:s, s:s}", "postId", post, "authorId", g->user_id,
                                   "actorId", g->user_id));
}

static int emit_like(gone_t *g, const px_pg_result_t *res, int row)
{
    const char *post = px_pg_value(res, row, 0);
    return px_event_emit(g->txn, "post.unliked", post,
                         json_pack("{s:s, s:s, s:s, s:s}", "postId", post, "authorId",
                                   px_pg_value(res, row, 1), "title", px_pg_value(res, row, 2),
                                   "actorId", g->user_id));
}

static int emit_comment(gone_t *g, const px_pg_result_t *res, int row)
{
    const char *post = px_pg_value(res, row, 1);
    return px_event_emit(g->txn, "comment.deleted", post,
                         json_pack("{s:s, s:s, s:s, s:s, s:s}", "postId", post, "authorId",
                                   px_pg_value(res, row, 2), "commentId",
                                   px_pg_value(res, row, 0), "commentAuthorId", g->user_id,
                                   "actorId", g->user_id));
}

static const struct {
    remove_fn remove;
    int (*emit)(gone_t *g, const px_pg_result_t *res, int row);
} kinds[] = {
    {store_user_posts_remove, emit_post},
    {store_user_likes_remove, emit_like},
    {store_user_comments_remove, emit_comment},
};
#define KINDS (sizeof(kinds) / sizeof(kinds[0]))

static void touched(px_req_t *task, void *ud)
{
    (void)task, (void)ud;
}

static void committed(px_req_t *task, void *ud)
{
    (void)ud;
    content_touch(task, touched, NULL);
}

static void retry(gone_t *g, const char *reason)
{
    px_event_retry(g->ev, 1000, reason);
    free(g);
}

static void next_batch(gone_t *g);

static void removed(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                    void *ud)
{
    (void)task;
    gone_t *g = ud;
    if (err) {
        retry(g, px_pg_error_message(err));
        return;
    }
    int rows = px_pg_rows(res);
    for (int i = 0; i < rows; i++)
        if (kinds[g->kind].emit(g, res, i)) {
            retry(g, "could not emit an event");
            return;
        }
    if (rows < USER_GONE_BATCH)
        g->kind++;
    next_batch(g);
}

static void next_batch(gone_t *g)
{
    if (g->kind < KINDS) {
        if (kinds[g->kind].remove(g->txn, g->user_id, removed, g))
            retry(g, "could not queue a statement");
        return;
    }
    /* Added last: a retry before it has nothing to touch. */
    if (px_pg_on_commit(g->txn, committed, NULL)) {
        retry(g, "could not add the commit hook");
        return;
    }
    px_event_ack(g->ev);
    free(g);
}

static void on_user_deleted(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)task, (void)ud;
    char user[37];
    if (px_uuid_parse(json_string_value(json_object_get(px_event_payload(ev), "userId")), user)) {
        /* Not the user plugin's event: nothing here names such a user, and a retry would
         * not change that. */
        px_log(content_plugin, PX_LOG_WARN, "user.deleted event %lld without a userId",
               (long long)px_event_id(ev));
        px_event_ack(ev);
        return;
    }
    gone_t *g = calloc(1, sizeof(*g));
    if (!g)
        abort();
    g->ev = ev;
    g->txn = txn;
    memcpy(g->user_id, user, sizeof(g->user_id));
    next_batch(g);
}

int user_deleted_init(px_plugin_t *self)
{
    return px_event_subscribe(self, "content-users", "user.deleted", on_user_deleted, NULL);
}
