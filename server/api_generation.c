/*
 * api_generation.c — a host generation heard across hosts (px_generation_new): when a
 * worker may answer from its own memory without asking PostgreSQL or Redis whether
 * anything changed.
 *
 * Why a generation. A plugin that keeps answers in each worker (the task plugin's list
 * pages, the content plugin's renders) saves a round trip per request only if it can
 * tell, without one, that nothing it kept went stale. Tracking which writes touch which
 * kept answer is the plugin's whole data model again, and easy to get wrong; a single
 * number that every write of the plugin moves is not. A kept answer is stamped with the
 * generation read BEFORE the source was asked, and served only to a request that reads
 * the same one: a write bumps it before its answer goes out (px_generation_bump after a
 * write that is visible already, or px_generation_bump_on_commit, a px_pg_on_commit hook
 * that runs after COMMIT succeeded and before the answer), so a client that wrote and
 * then reads, on any worker of the host, finds the generation moved and asks the source,
 * where its write shows. A reader whose read raced a write stamped what it read with the
 * generation it read before, which the bump has made unreachable. The counter is a
 * px_shared_counter: memory the master mapped before forking, an atomic load per read.
 *
 * Across hosts. Another host's workers cannot see this host's counter, so every bump is
 * also published on the plugin's channel `name` with this host's origin
 * ("<hostname>/<master pid>"), and each worker bumps its own host's counter when it hears
 * another host's (its own host bumped before publishing). That bounds cross-host
 * read-your-write by pub/sub latency (well under a millisecond on a LAN) but does not
 * close it: a client whose write went to host A and whose next read, a moment later,
 * goes to host B may be answered from B's memory before B heard. Nor does a bump reach
 * anyone for a write made outside the plugin (psql, another plugin), for a commit whose
 * request ended first, or for a message lost while Redis was away. For all of those the
 * plugin's TTL on what it keeps is the bound; deployments that need read-your-write
 * across hosts behind a balancer without affinity configure the memory off.
 *
 * Trust. A worker answers from memory only while its subscription is up: while Redis is
 * away other hosts' bumps cannot arrive. When it is back (PX_CHANNEL_UP) what was
 * published meanwhile is lost, so the worker bumps the counter itself and everything the
 * host stamped becomes unreachable. Before the worker started, and with
 * PX_GENERATION_PUBLISH_ONLY (the plugin keeps nothing here but other hosts must still
 * hear this host's writes), px_generation_read says memory is not to be trusted.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "plugin.h"
#include "shared_counter.h"
#include "util.h"

struct px_generation {
    px_plugin_t *plugin;
    char name[SHARED_COUNTER_NAME_MAX + 1];
    unsigned flags;
    px_shared_counter_t *counter;
    bool heard;          /* this worker's subscription is up */
    px_req_t *listener;  /* the task holding it */
    char origin[300];    /* this host: "<hostname>/<master pid>", set when the worker starts */
    struct px_generation *next; /* the plugin's, freed with it */
};

static bool name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > SHARED_COUNTER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return false;
    }
    return true;
}

static void on_message(px_req_t *owner, const char *channel, const void *data, size_t len,
                       void *ud)
{
    (void)owner, (void)channel;
    px_generation_t *g = ud;
    /* Our own host bumped before it published. */
    if (len != strlen(g->origin) || memcmp(data, g->origin, len))
        shared_counter_add(g->counter, 1);
}

static void on_status(px_req_t *owner, int status, void *ud)
{
    (void)owner;
    px_generation_t *g = ud;
    g->heard = status == PX_CHANNEL_UP;
    /* What other hosts published while this worker could not hear is lost. */
    if (g->heard)
        shared_counter_add(g->counter, 1);
}

static void worker_start(px_plugin_t *p, void *ud)
{
    px_generation_t *g = ud;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    snprintf(g->origin, sizeof(g->origin), "%s/%d", host, (int)getppid());
    if (g->flags & PX_GENERATION_PUBLISH_ONLY)
        return;
    char task[64];
    snprintf(task, sizeof(task), "generation.%s", g->name);
    g->listener = api_task_begin(p, task);
    if (!g->listener ||
        api_channel_subscribe(g->listener, g->name, 0, on_message, on_status, g, NULL)) {
        log_warn("plugin \"%s\": generation \"%s\": no channel, so nothing is answered "
                 "from this worker's memory (every request asks the source)", p->name, g->name);
        if (g->listener)
            api_task_end(g->listener, PX_EUNAVAIL);
        g->listener = NULL;
    }
}

static void worker_stop(px_plugin_t *p, void *ud)
{
    (void)p;
    px_generation_t *g = ud;
    g->heard = false;
    if (g->listener)
        api_task_end(g->listener, 0);
    g->listener = NULL;
}

int api_generation_new(px_plugin_t *p, const char *name, unsigned flags, px_generation_t **out)
{
    if (!p || !out || !name_ok(name) || (flags & ~PX_GENERATION_PUBLISH_ONLY))
        return PX_EINVAL;
    if (p->set->registering != p)
        return PX_ESTATE;
    for (px_generation_t *g = p->generations; g; g = g->next)
        if (!strcmp(g->name, name))
            return PX_EEXIST;
    px_shared_counter_t *counter = NULL;
    int rc = api_shared_counter(p, name, &counter);
    if (rc)
        return rc;
    px_generation_t *g = xcalloc(1, sizeof(*g));
    g->plugin = p;
    snprintf(g->name, sizeof(g->name), "%s", name);
    g->flags = flags;
    g->counter = counter;
    rc = api_on_worker_start(p, worker_start, g);
    if (!rc)
        rc = api_on_worker_stop(p, worker_stop, g);
    /* Registered hooks are only ever called with the set alive: freed with the plugin. */
    g->next = p->generations;
    p->generations = g;
    if (!rc)
        *out = g;
    return rc;
}

static void committed(px_req_t *req, void *ud)
{
    api_generation_bump(ud, req);
}

int api_generation_bump(px_generation_t *g, px_req_t *ctx)
{
    if (!g || !ctx)
        return PX_EINVAL;
    shared_counter_add(g->counter, 1);
    /* Fire and forget: without Redis the other hosts' TTL is the bound. */
    if (*g->origin)
        api_channel_publish(ctx, g->name, g->origin, strlen(g->origin));
    return 0;
}

int api_generation_bump_on_commit(px_generation_t *g, px_pg_txn_t *txn)
{
    if (!g || !txn)
        return PX_EINVAL;
    return api_pg_on_commit(txn, committed, g);
}

uint64_t api_generation_read(px_generation_t *g, int *trusted)
{
    if (trusted)
        *trusted = g && g->heard && g->listener;
    return g ? shared_counter_add(g->counter, 0) : 0;
}

void api_generation_free_all(px_plugin_t *p)
{
    while (p->generations) {
        px_generation_t *g = p->generations;
        p->generations = g->next;
        free(g);
    }
}
