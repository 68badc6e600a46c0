/*
 * generation.c — the host's task generation: when a list may be answered from a worker's
 * memory alone, without asking PostgreSQL whether anything changed.
 *
 * Why. A kept page (listcache.c) still cost each list one statement: the project's list
 * version and the caller's membership read by primary key, about 180 µs of PostgreSQL's
 * CPU, most of what a list cost once pages were kept (tests/bench/README.md). While
 * nothing in the plugin was written, the answer to that statement is known already.
 *
 * The generation is a counter every worker of the host shares (px_shared_counter). Every
 * transaction of the plugin that may write (the gate's writes and creates: access.c)
 * bumps it from px_pg_on_commit, i.e. after its COMMIT succeeded and before its answer
 * goes out, and publishes the plugin's channel "list" (the message: the host it came
 * from) so every other host's workers bump theirs when they hear it. A list request reads
 * the generation first, before anything else; what it learns from PostgreSQL (the page,
 * that a kept page is current, the caller's role) is stamped with that generation and
 * answered from memory only to a request that reads the same generation. So:
 *   - a client that wrote and then lists, on any worker of the host, finds the generation
 *     moved and asks PostgreSQL, where its write shows;
 *   - a member removed (or demoted, or a project deleted) is a write like any other: the
 *     next request on any worker of the host asks PostgreSQL and gets 404;
 *   - a reader whose PostgreSQL read raced a write stamps what it read with the
 *     generation it read before, which the write's bump has made (or will make, before
 *     the writer is answered) unreachable.
 * Writes made outside the plugin are not seen this way: a user deleted by the user plugin
 * (assignees set to NULL, memberships gone by foreign key) or a change made with psql;
 * nor is a write whose client left while its COMMIT was under way (px_pg_on_commit runs
 * only for a request still alive: nobody is answered, but others may list soon after).
 * For those, and for other hosts (a message over pub/sub arrives well under a
 * millisecond later on a LAN, but it is not synchronous), each stamp holds at most
 * list_cache_ttl; list_cache_ttl = 0 asks PostgreSQL on every list, as before.
 *
 * The channel. A worker answers from memory only while its subscription is up: while
 * Redis is away other hosts' bumps cannot arrive. When it comes back (PX_CHANNEL_UP),
 * what was published meanwhile is lost, so the worker bumps the generation itself: every
 * stamp of the host becomes unreachable (the pages stay, for listcache.c's version
 * check).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "task.h"

static px_shared_counter_t *generation;
static bool heard;         /* this worker's subscription is up */
static px_req_t *listener; /* the task holding it */
static char origin[300];   /* this host: "<hostname>/<master pid>" */

uint64_t generation_now(void)
{
    return px_shared_counter_add(generation, 0);
}

bool generation_heard(void)
{
    return heard;
}

/* px_pg_on_commit's hook of every writing transaction (access.c). */
void generation_committed(px_req_t *req, void *ud)
{
    (void)ud;
    px_shared_counter_add(generation, 1);
    if (*origin)
        px_channel_publish(req, "list", origin, strlen(origin));
}

static void on_message(px_req_t *owner, const char *channel, const void *data, size_t len,
                       void *ud)
{
    (void)owner, (void)channel, (void)ud;
    /* Our own host bumped before it published. */
    if (len != strlen(origin) || memcmp(data, origin, len))
        px_shared_counter_add(generation, 1);
}

static void on_status(px_req_t *owner, int status, void *ud)
{
    (void)owner, (void)ud;
    heard = status == PX_CHANNEL_UP;
    if (heard)
        px_shared_counter_add(generation, 1);
}

static void worker_start(px_plugin_t *self, void *ud)
{
    (void)ud;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    snprintf(origin, sizeof(origin), "%s/%d", host, (int)getppid());
    if (!task_list_cache_ttl_ms || !task_list_cache_size)
        return;
    listener = px_task_begin(self, "task.list_generation");
    if (!listener ||
        px_channel_subscribe(listener, "list", 0, on_message, on_status, NULL, NULL)) {
        px_log(self, PX_LOG_WARN, "[plugin:task] no channel: every task list asks "
               "PostgreSQL whether its kept page is current");
        if (listener)
            px_task_end(listener, PX_EUNAVAIL);
        listener = NULL;
    }
}

static void worker_stop(px_plugin_t *self, void *ud)
{
    (void)self, (void)ud;
    heard = false;
    if (listener)
        px_task_end(listener, 0);
    listener = NULL;
}

int generation_init(px_plugin_t *self)
{
    int rc = px_shared_counter(self, "list", &generation);
    if (!rc)
        rc = px_on_worker_start(self, worker_start, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, worker_stop, NULL);
    return rc;
}
