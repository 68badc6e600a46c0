/*
 * shared_counter.c — 64-bit counters every worker of a host shares (px_shared_counter).
 *
 * Why. A plugin that keeps answers in each worker's memory (the content plugin's hot
 * pages) must drop them the moment any worker of the host changes what they show, or a
 * client whose write went to one worker reads its old state from another. A round trip
 * to Redis per request is what such a copy exists to avoid; a word of memory all the
 * workers map costs an atomic load. So the master maps a table of counters before it
 * forks (as for the metrics, metrics.c), and each worker finds its plugins' counters
 * there by name.
 *
 * Claiming. Plugins' init runs in every worker, concurrently, so a name is claimed in the
 * table without a lock: a cell goes from FREE to CLAIMING by compare-and-swap, its name
 * is written, then it is READY; a worker that finds a cell CLAIMING waits for it (a few
 * instructions) before comparing names. Cells are never freed: the same names come back
 * with every reload, and a plugin has a handful at most. A worker that died between the
 * swap and READY would leave the cell CLAIMING for good: after a bounded wait it is
 * skipped (one cell lost, never a hang).
 */
#include "shared_counter.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { FREE = 0, CLAIMING = 1, READY = 2 };
#define FULL_NAME_MAX 112
#define CLAIM_WAIT_SPINS 100000

/* One cache line each, so workers bumping one counter never slow another's. */
struct px_shared_counter {
    uint64_t value;
    uint32_t state;
    char name[FULL_NAME_MAX]; /* "<plugin>\x1f<name>" */
} __attribute__((aligned(64)));

static struct px_shared_counter *table; /* SHARED_COUNTERS of them */

int shared_counter_init(void)
{
    if (table)
        return 0;
    void *p = mmap(NULL, sizeof(*table) * SHARED_COUNTERS, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    table = p;
    return 0;
}

/* READY, or FREE/CLAIMING when it stayed claimed past the wait (a dead claimer). */
static uint32_t settled(struct px_shared_counter *c)
{
    uint32_t s = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
    for (int i = 0; s == CLAIMING && i < CLAIM_WAIT_SPINS; i++) {
        sched_yield();
        s = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
    }
    return s;
}

int shared_counter_find(const char *plugin, const char *name, px_shared_counter_t **out)
{
    size_t len = name ? strlen(name) : 0;
    if (!out || !plugin || len == 0 || len > SHARED_COUNTER_NAME_MAX)
        return PX_EINVAL;
    char full[FULL_NAME_MAX];
    int n = snprintf(full, sizeof(full), "%s\x1f%s", plugin, name);
    if (n < 0 || (size_t)n >= sizeof(full))
        return PX_EINVAL;
    if (!table && shared_counter_init() != 0)
        abort();
    for (int i = 0; i < SHARED_COUNTERS; i++) {
        struct px_shared_counter *c = &table[i];
        uint32_t s = FREE;
        if (__atomic_compare_exchange_n(&c->state, &s, CLAIMING, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            memcpy(c->name, full, (size_t)n + 1);
            __atomic_store_n(&c->state, READY, __ATOMIC_RELEASE);
            *out = c;
            return 0;
        }
        if (settled(c) == READY && !strcmp(c->name, full)) {
            *out = c;
            return 0;
        }
    }
    return PX_EOVERFLOW;
}

uint64_t shared_counter_add(px_shared_counter_t *c, uint64_t n)
{
    if (!c)
        return 0;
    return n ? __atomic_add_fetch(&c->value, n, __ATOMIC_SEQ_CST)
             : __atomic_load_n(&c->value, __ATOMIC_SEQ_CST);
}
