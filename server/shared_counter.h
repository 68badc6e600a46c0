/* shared_counter.h — 64-bit counters every worker of a host shares (px_shared_counter,
 * shared_counter.c). */
#ifndef PX_SHARED_COUNTER_H
#define PX_SHARED_COUNTER_H

#include <stdint.h>

#include "panthera.h"

#define SHARED_COUNTERS 256
#define SHARED_COUNTER_NAME_MAX 47

/* The master, before forking (or on first use). Returns 0 or -errno. */
int shared_counter_init(void);
/* The counter `plugin` calls `name`, claimed on first use: 0 with *out, PX_EINVAL for a
 * bad name, PX_EOVERFLOW when every cell is taken. */
int shared_counter_find(const char *plugin, const char *name, px_shared_counter_t **out);
uint64_t shared_counter_add(px_shared_counter_t *c, uint64_t n);

#endif
