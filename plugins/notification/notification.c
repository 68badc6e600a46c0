/*
 * notification — the inbox, its live stream and the preferences (API.md,
 * "Notifications"), built from the task and content plugins' events.
 *
 * This file holds the descriptor, init, the configuration and the route table; see
 * notification.h for the map of the folder and README.md for the rules (who receives
 * what, the notification.created event the delivery side builds on). Needs the user
 * plugin (callers' tokens) and [postgres]; [redis] makes the stream live across hosts
 * (without it a stream polls PostgreSQL).
 */
#include <stdio.h>
#include <string.h>

#include "notification.h"
#include "delivery.h"

px_plugin_t *notif_plugin;
notif_config_t notif_cfg;

extern const px_migration_t notification_migrations[];
extern const char notification_schemas[];

const char *const notif_types[] = {"task.assigned", "task.status_changed", "task.commented",
                                   "mention", "post.commented", "post.liked",
                                   "project.member_added", NULL};

int notif_type_index(const char *type)
{
    for (int i = 0; type && notif_types[i]; i++)
        if (!strcmp(notif_types[i], type))
            return i;
    return -1;
}

void notif_user_channel(const char *user_id, char out[40])
{
    snprintf(out, 40, "u:%s", user_id);
}

static int bad(px_plugin_t *self, const char *key, const char *expected)
{
    px_log(self, PX_LOG_ERROR, "[plugin:notification] %s = %s: expected %s", key,
           px_config_get(self, key), expected);
    return PX_EINVAL;
}

static bool email_mode(const char *v)
{
    return v && (!strcmp(v, "off") || !strcmp(v, "instant") || !strcmp(v, "daily"));
}

/* Keys (README.md, "Configuration"): the global defaults, then one optional override per
 * type and field, named after the type with '.' as '_' ("email_post_liked = daily"). */
static int config_init(px_plugin_t *self)
{
    static char in_app_keys[NOTIF_NTYPES][48], email_keys[NOTIF_NTYPES][48];
    static const struct { const char *key, *def; } keys[] = {
        {"default_in_app", "yes"}, {"default_email", "instant"}, {"retention", "30d"},
        {"sweep_interval", "1h"},   {"heartbeat", "15s"},         {"poll_interval", "3s"},
        {"replay_batch", "500"}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        px_config_declare(self, keys[i].key, keys[i].def);
    for (int t = 0; t < NOTIF_NTYPES; t++) {
        char base[40];
        snprintf(base, sizeof(base), "%s", notif_types[t]);
        for (char *c = base; *c; c++)
            if (*c == '.')
                *c = '_';
        snprintf(in_app_keys[t], sizeof(in_app_keys[t]), "in_app_%s", base);
        snprintf(email_keys[t], sizeof(email_keys[t]), "email_%s", base);
        px_config_declare(self, in_app_keys[t], NULL);
        px_config_declare(self, email_keys[t], NULL);
    }
    int in_app = 1, rc;
    if ((rc = px_config_bool(self, "default_in_app", &in_app)))
        return rc;
    const char *email = px_config_get(self, "default_email");
    if (!email_mode(email))
        return bad(self, "default_email", "off, instant or daily");
    for (int t = 0; t < NOTIF_NTYPES; t++) {
        int v = in_app;
        rc = px_config_bool(self, in_app_keys[t], &v);
        if (rc && rc != PX_ENOENT)
            return rc;
        notif_cfg.in_app[t] = v;
        const char *e = px_config_get(self, email_keys[t]);
        if (e && !email_mode(e))
            return bad(self, email_keys[t], "off, instant or daily");
        notif_cfg.email[t] = e ? e : email;
    }
    if ((rc = px_config_duration_ms(self, "retention", &notif_cfg.retention_ms)) ||
        (rc = px_config_duration_ms(self, "sweep_interval", &notif_cfg.sweep_interval_ms)) ||
        (rc = px_config_duration_ms(self, "heartbeat", &notif_cfg.heartbeat_ms)) ||
        (rc = px_config_duration_ms(self, "poll_interval", &notif_cfg.poll_ms)) ||
        (rc = px_config_int(self, "replay_batch", &notif_cfg.replay_batch)))
        return rc;
    if (notif_cfg.retention_ms < 1000)
        return bad(self, "retention", "at least 1s");
    if (notif_cfg.sweep_interval_ms < 100)
        return bad(self, "sweep_interval", "at least 100ms");
    if (notif_cfg.heartbeat_ms < 100)
        return bad(self, "heartbeat", "at least 100ms");
    if (notif_cfg.poll_ms < 100)
        return bad(self, "poll_interval", "at least 100ms");
    if (notif_cfg.replay_batch < 1 || notif_cfg.replay_batch > 10000)
        return bad(self, "replay_batch", "1 to 10000");
    return 0;
}

static int routes_init(px_plugin_t *self)
{
#define ROUTE(m, p, fn, body, resp, text, q, pp)                                              \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = fn,              \
     .auth = PX_AUTH_REQUIRED, .request_schema = body, .responses = resp, .summary = text,   \
     .tag = "notifications", .query = q, .params = pp}
    static const px_response_spec_t list_200[] = {
        {200, "NotificationList", "Newest first; Last-Modified", NULL},
        {304, NULL, "Not modified since If-Modified-Since", NULL}, {0}};
    static const px_response_spec_t done_204[] = {
        {204, NULL, NULL, NULL}, {404, "Error", "Not one of the caller's notifications", NULL},
        {0}};
    static const px_response_spec_t count_200[] = {
        {200, "UnreadCount", "Last-Modified as the list", NULL},
        {304, NULL, "Not modified since If-Modified-Since", NULL}, {0}};
    static const px_response_spec_t ticket_200[] = {
        {200, "StreamTicket", "Single use, for ?ticket= on the stream", NULL}, {0}};
    static const px_response_spec_t stream_200[] = {
        {200, NULL, "Server-Sent Events: notification (id: its id), reset", "text/event-stream"},
        {0}};
    static const px_response_spec_t prefs_200[] = {
        {200, "Preferences", "Every type's effective preferences", NULL}, {0}};
    static const px_param_spec_t list_q[] = {
        {"page", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1000000000, \"default\": 1}",
         0, NULL},
        {"limit", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100, \"default\": 10}", 0,
         NULL},
        {"unread", "{\"type\": \"boolean\"}", 0, "true: only unread ones"},
        {"type",
         "{\"type\": \"string\", \"enum\": [\"task.assigned\", \"task.status_changed\", "
         "\"task.commented\", \"mention\", \"post.commented\", \"post.liked\", "
         "\"project.member_added\"]}",
         0, NULL},
        {NULL, NULL, 0, NULL}};
    static const px_param_spec_t stream_q[] = {
        {"lastEventId", "{\"type\": \"string\", \"maxLength\": 100}", 0,
         "resume after this notification id (as the Last-Event-ID header)"},
        {"ticket", "{\"type\": \"string\", \"maxLength\": 200}", 0,
         "a stream ticket, instead of the Authorization header"},
        {NULL, NULL, 0, NULL}};
    static const px_param_spec_t id_p[] = {
        {"id", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL}, {NULL, NULL, 0, NULL}};
    static const px_route_spec_t routes[] = {
        ROUTE("GET", "/v1/notifications", inbox_list, NULL, list_200,
              "The caller's notifications, newest first (?unread=true&type=)", list_q, NULL),
        ROUTE("POST", "/v1/notifications/:id/read", inbox_read, NULL, done_204,
              "Mark one notification read", NULL, id_p),
        ROUTE("POST", "/v1/notifications/read-all", inbox_read_all, NULL, done_204,
              "Mark all read, or those up to and including {before: id}", NULL, NULL),
        ROUTE("GET", "/v1/notifications/unread-count", inbox_unread_count, NULL, count_200,
              "How many are unread", NULL, NULL),
        ROUTE("POST", "/v1/notifications/stream-tickets", stream_ticket, NULL, ticket_200,
              "A single-use 60 s ticket for the stream (EventSource cannot send headers)",
              NULL, NULL),
        {.size = sizeof(px_route_spec_t), .method = "GET", .pattern = "/v1/notifications/stream",
         .handler = stream_open, .auth = PX_AUTH_REQUIRED,
         .flags = PX_ROUTE_STREAM | PX_ROUTE_TICKET, .responses = stream_200,
         .summary = "New notifications live (SSE); resume with Last-Event-ID or ?lastEventId=",
         .tag = "notifications", .query = stream_q},
        ROUTE("GET", "/v1/notifications/preferences", preferences_get, NULL, prefs_200,
              "Per type {inApp, email}", NULL, NULL),
        ROUTE("PUT", "/v1/notifications/preferences", preferences_put, "PreferencesPut",
              prefs_200, "Change some types' preferences (each with inApp and email)", NULL,
              NULL),
    };
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = px_route_add(self, &routes[i]);
    return rc;
}

static int notification_init(px_plugin_t *self)
{
    notif_plugin = self;
    int rc = config_init(self);
    if (!rc)
        rc = px_migrations(self, notification_migrations);
    if (!rc)
        rc = px_schema(self, NULL, notification_schemas);
    if (!rc)
        rc = consumer_init(self);
    if (!rc)
        rc = user_deleted_init(self); /* a deleted user's rows: README "Deleted users" */
    if (!rc)
        rc = routes_init(self);
    if (!rc)
        rc = delivery_init(self); /* email, digests, unsubscribe, webhooks: delivery.h */
    if (!rc)
        rc = px_on_worker_start(self, sweep_start, NULL);
    if (!rc)
        rc = px_on_worker_start(self, stream_worker_start, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, sweep_stop, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, stream_worker_stop, NULL);
    return rc;
}

static const char *const notification_depends[] = {"user", NULL};

PX_PLUGIN("notification", "1.0.0", notification_init, NULL, notification_depends);
