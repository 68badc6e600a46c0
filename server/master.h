/* master.h — the supervising process: listeners, workers, signals, reloads. */
#ifndef PX_MASTER_H
#define PX_MASTER_H

#include <stdint.h>

#include "config.h"

/* Takes ownership of `cfg`. Returns the process exit code. */
int master_run(config_t *cfg);

/* Bind one "host:port" / "[v6]:port" / "port" address. Returns an fd or -1 (logged). */
int master_bind(const char *address);

/* How long to wait before starting a worker again after `young_deaths` deaths in a row
 * before it was ready or healthy: 100 ms, doubling, at most 30 s. */
uint64_t master_respawn_delay_ms(unsigned young_deaths);

#endif
