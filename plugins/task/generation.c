/*
 * generation.c — the host's task generation: when a list may be answered from a worker's
 * memory alone, without asking PostgreSQL whether anything changed.
 *
 * Why. A kept page (listcache.c) still cost each list one statement: the project's list
 * version and the caller's membership read by primary key, about 180 µs of PostgreSQL's
 * CPU, most of what a list cost once pages were kept (tests/bench/README.md). While
 * nothing in the plugin was written, the answer to that statement is known already.
 *
 * The mechanism is the SDK's px_generation (server/api_generation.c says how it bounds
 * other hosts' writes and what the channel being down means), on the plugin's channel
 * "list". Every transaction of the plugin that may write (the gate's writes and creates:
 * access.c) bumps it on commit, before its answer goes out. A list request reads the
 * generation first, before anything else; what it learns from PostgreSQL (the page, that
 * a kept page is current, the caller's role) is stamped with that generation and
 * answered from memory only to a request that reads the same generation, while memory is
 * trusted. So:
 *   - a client that wrote and then lists, on any worker of the host, finds the generation
 *     moved and asks PostgreSQL, where its write shows;
 *   - a member removed (or demoted, or a project deleted) is a write like any other: the
 *     next request on any worker of the host asks PostgreSQL and gets 404;
 *   - a reader whose PostgreSQL read raced a write stamps what it read with the
 *     generation it read before, which the write's bump has made (or will make, before
 *     the writer is answered) unreachable.
 * Writes made outside the plugin are not seen this way: a user deleted by the user plugin
 * (assignees set to NULL, memberships gone by foreign key) or a change made with psql;
 * nor is a write whose client left while its COMMIT was under way. For those, and for
 * other hosts, each stamp holds at most list_cache_ttl; list_cache_ttl = 0 asks
 * PostgreSQL on every list, as before (this host then only publishes its bumps).
 */
#include "task.h"

static px_generation_t *generation;

uint64_t generation_now(void)
{
    return px_generation_read(generation, NULL);
}

bool generation_heard(void)
{
    int trusted = 0;
    px_generation_read(generation, &trusted);
    return trusted;
}

int generation_on_commit(px_pg_txn_t *txn)
{
    return px_generation_bump_on_commit(generation, txn);
}

int generation_init(px_plugin_t *self)
{
    bool keep = task_list_cache_ttl_ms && task_list_cache_size;
    return px_generation_new(self, "list", keep ? 0 : PX_GENERATION_PUBLISH_ONLY,
                             &generation);
}
