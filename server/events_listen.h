/* events_listen.h — the one dedicated PostgreSQL session of a worker's event consumers:
 * LISTEN for wake-ups and the session advisory locks that elect a group's consumer. */
#ifndef PX_EVENTS_LISTEN_H
#define PX_EVENTS_LISTEN_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct ev_listen ev_listen_t;

typedef struct ev_listen_events {
    void (*up)(void *ud);     /* connected: (re)issue LISTEN and the locks */
    void (*down)(void *ud);   /* the session is gone, and with it every lock it held */
    void (*notify)(void *ud); /* a NOTIFY arrived (any number of them, coalesced) */
} ev_listen_events_t;

/* `res` is NULL when the session was lost before the answer; borrowed for the call. */
typedef void (*ev_listen_cb)(const PGresult *res, void *ud);

/* Connects now and again after every loss (1 s, doubling to 10 s). Never NULL. */
ev_listen_t *ev_listen_new(uv_loop_t *loop, const char *conninfo, const ev_listen_events_t *ev,
                           void *ud);
/* One statement with at most one text parameter, answered in order. Returns 0, or -1
 * when the session is not up (then `cb` never runs). */
int ev_listen_query(ev_listen_t *l, const char *sql, const char *param, ev_listen_cb cb,
                    void *ud);
/* Ends the session (its locks go with it); pending callbacks get NULL. */
void ev_listen_close(ev_listen_t *l);

#endif
