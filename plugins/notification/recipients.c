/*
 * recipients.c — who receives what (README.md, "Recipients"), decided from the source
 * event's type and payload. The SQL that follows (consumer.c) adds the task's watchers,
 * then keeps only the event's members (the people allowed to see the thing after the
 * change, so a removed member is never notified) and drops the actor (nobody is notified
 * of their own act).
 */
#include <string.h>

#include "notification.h"

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void add(json_t *list, const char *user)
{
    if (user && *user)
        json_array_append_new(list, json_string(user));
}

/* The members' user ids; an empty array when the payload has none (nobody may see). */
static json_t *member_ids(const json_t *payload)
{
    json_t *ids = json_array(), *m;
    size_t i;
    json_array_foreach(json_object_get(payload, "members"), i, m)
        add(ids, str(m, "userId"));
    return ids;
}

/* The payload a notification carries: what a client needs to show and link it, never the
 * member list. */
static json_t *pick(const json_t *payload, const char *const *keys)
{
    json_t *out = json_object();
    for (; *keys; keys++) {
        json_t *v = json_object_get(payload, *keys);
        if (v)
            json_object_set(out, *keys, v);
    }
    return out;
}

int notif_plan(const char *t, json_t *p, notif_plan_t *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->actor = str(p, "actorId");
    plan->project_id = str(p, "projectId");
    static const char *const assigned_keys[] = {"projectId", "taskId", "title", "actorId",
                                                "assigneeId", "previousAssigneeId", NULL};
    static const char *const status_keys[] = {"projectId", "taskId", "title", "actorId",
                                              "from", "to", NULL};
    static const char *const comment_keys[] = {"projectId", "taskId", "title", "actorId",
                                               "commentId", "excerpt", NULL};
    static const char *const mention_keys[] = {"source", "projectId", "taskId", "postId",
                                               "title", "commentId", "excerpt", "actorId",
                                               NULL};
    static const char *const post_keys[] = {"postId", "title", "actorId", NULL};
    static const char *const post_comment_keys[] = {"postId", "title", "commentId", "excerpt",
                                                    "actorId", NULL};
    static const char *const member_keys[] = {"projectId", "projectName", "role", "actorId",
                                               NULL};
    json_t *cand = json_array();
    plan->candidates = cand;
    plan->task_id = str(p, "taskId");
    if (!strcmp(t, "task.created")) {
        /* No notification (the assignee hears of it through task.assigned); the task's
         * creator starts watching it. */
        plan->watch_add_reason = "creator";
        plan->watch_add_user = plan->actor;
        return plan->task_id ? 0 : 1;
    }
    if (!strcmp(t, "task.deleted")) {
        plan->watch_forget = true;
        return plan->task_id ? 0 : 1;
    }
    if (!strcmp(t, "task.assigned")) {
        plan->type = "task.assigned";
        add(cand, str(p, "assigneeId"));
        plan->watch_add_reason = "assignee";
        plan->watch_add_user = str(p, "assigneeId");
        plan->watch_replace = true;
        plan->payload = pick(p, assigned_keys);
    } else if (!strcmp(t, "task.status_changed")) {
        plan->type = "task.status_changed";
        plan->watch_reasons = "{assignee,creator}";
        plan->payload = pick(p, status_keys);
    } else if (!strcmp(t, "task.commented")) {
        plan->type = "task.commented";
        plan->watch_reasons = "{assignee,creator,commenter}";
        plan->watch_add_reason = "commenter";
        plan->watch_add_user = plan->actor;
        plan->payload = pick(p, comment_keys);
    } else if (!strcmp(t, "comment.mentioned")) {
        plan->type = "mention";
        plan->task_id = NULL; /* a mention notifies only whom it names */
        json_t *u;
        size_t i;
        json_array_foreach(json_object_get(p, "mentionedUserIds"), i, u)
            add(cand, json_string_value(u));
        plan->payload = pick(p, mention_keys);
    } else if (!strcmp(t, "post.commented") || !strcmp(t, "post.liked")) {
        plan->type = !strcmp(t, "post.liked") ? "post.liked" : "post.commented";
        add(cand, str(p, "authorId"));
        plan->payload = pick(p, plan->type[5] == 'l' ? post_keys : post_comment_keys);
    } else if (!strcmp(t, "project.member_added")) {
        plan->type = "project.member_added";
        plan->task_id = NULL;
        add(cand, str(p, "userId"));
        plan->payload = pick(p, member_keys);
    } else {
        return 1;
    }
    /* Project events say who may see the thing. A published post is visible to every
     * user; a draft only to its author, who is then the actor: nobody else may hear of
     * it (only a mention names others; content says the post's status there). */
    if (json_object_get(p, "members") || plan->project_id)
        plan->members = member_ids(p);
    else if (!strcmp(t, "comment.mentioned") && str(p, "postStatus") &&
             strcmp(str(p, "postStatus"), "published"))
        plan->members = json_array();
    return 0;
}

void notif_plan_free(notif_plan_t *plan)
{
    json_decref(plan->candidates);
    json_decref(plan->members);
    json_decref(plan->payload);
    memset(plan, 0, sizeof(*plan));
}
