/*
 * notification.h — what the files of the notification plugin share. Not part of any
 * public interface: the plugin talks to the host only through <panthera/panthera.h>.
 *
 *   notification.c  descriptor, init, config, the route table
 *   consumer.c      the event consumers: source events -> inbox rows, notification.created
 *   recipients.c    who receives what (the rules of README.md "Recipients")
 *   inbox.c         GET /v1/notifications, read, read-all, unread-count
 *   preferences.c   GET/PUT /v1/notifications/preferences
 *   stream.c        stream tickets and the SSE stream (replay, live, poll fallback)
 *   sweep.c         the retention sweep (a background task per worker)
 *   store.c         the SQL statements shared by several files
 */
#ifndef NOTIFICATION_PLUGIN_H
#define NOTIFICATION_PLUGIN_H

#include <panthera/panthera.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern px_plugin_t *notif_plugin;

/* The notification types (API.md), in the order preferences list them. */
extern const char *const notif_types[];
#define NOTIF_NTYPES 7

/* The configuration, read once in init. */
typedef struct notif_config {
    bool in_app[NOTIF_NTYPES];     /* default inApp per type */
    const char *email[NOTIF_NTYPES]; /* default email per type: off, instant, daily */
    int64_t retention_ms;          /* rows older than this are swept */
    int64_t sweep_interval_ms;
    int64_t heartbeat_ms;          /* the stream's ": " comment interval */
    int64_t poll_ms;               /* the stream's PostgreSQL poll while Redis is down */
    int64_t replay_batch;          /* rows per replay query */
} notif_config_t;
extern notif_config_t notif_cfg;

/* Index of `type` in notif_types, or -1. */
int notif_type_index(const char *type);

/* The live channel of one user ("u:<uuid>"): the consumer publishes there, streams
 * listen. `out` holds at least 40 bytes. */
void notif_user_channel(const char *user_id, char out[40]);

/* Who receives a source event, decided from its type and payload alone (recipients.c).
 * Fills `plan`; returns 0, or 1 when the event notifies nobody (nothing to do but ack).
 * The plan's candidates are then filtered in SQL: members only (when `members` is set),
 * never the actor, and the task's watchers of the given reasons are added. */
typedef struct notif_plan {
    const char *type;        /* the notification type */
    json_t *candidates;      /* array of user id strings (owned) */
    json_t *members;         /* array of user id strings allowed to see it (owned), or NULL */
    const char *actor;       /* never notified; may be NULL */
    const char *project_id;  /* may be NULL */
    const char *task_id;     /* watchers of this task are candidates too, when ... */
    const char *watch_reasons; /* ... this is set: a text[] literal ("{creator,assignee}") */
    json_t *payload;         /* the notification's payload (owned) */
    /* Changes to the watch table this event makes, after the recipients are chosen. */
    const char *watch_add_reason;  /* add `watch_add_user` with this reason, or NULL */
    const char *watch_add_user;
    bool watch_replace;            /* the reason's old rows go first (a new assignee) */
    bool watch_forget;             /* the task is gone: drop its rows */
} notif_plan_t;
int notif_plan(const char *event_type, json_t *payload, notif_plan_t *plan);
void notif_plan_free(notif_plan_t *plan);

/* Consumers (consumer.c): subscribe the groups. Only during init. */
int consumer_init(px_plugin_t *self);

/* user_deleted.c: the consumer of user.deleted (group notification-users). */
int user_deleted_init(px_plugin_t *self);

/* Route handlers. */
int inbox_list(px_req_t *req, void *ud);
int inbox_read(px_req_t *req, void *ud);
int inbox_read_all(px_req_t *req, void *ud);
int inbox_unread_count(px_req_t *req, void *ud);
int preferences_get(px_req_t *req, void *ud);
int preferences_put(px_req_t *req, void *ud);
int stream_ticket(px_req_t *req, void *ud);
int stream_open(px_req_t *req, void *ud);

/* The stream's per-worker poller (stream.c). */
void stream_worker_start(px_plugin_t *p, void *ud);
void stream_worker_stop(px_plugin_t *p, void *ud);

/* The retention sweep's worker hooks (sweep.c). */
void sweep_start(px_plugin_t *p, void *ud);
void sweep_stop(px_plugin_t *p, void *ud);

/* SQL (store.c; each statement's parameters are documented there). */
extern const char sql_inbox_lock[], sql_inbox_insert[], sql_inbox_insert_batch[], sql_fail[],
    sql_watch_forget[], sql_watch_clear[], sql_watch_add[], sql_watch_apply[];
extern const char sql_inbox_list[], sql_inbox_modified[], sql_inbox_read[], sql_inbox_read_all[],
    sql_inbox_unread[];
extern const char sql_prefs_get[], sql_prefs_put[];
extern const char sql_stream_point[], sql_stream_head[], sql_stream_after[];
extern const char sql_sweep[];

#endif
