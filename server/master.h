/* master.h — the supervising process: listeners, workers, signals, reloads. */
#ifndef PX_MASTER_H
#define PX_MASTER_H

#include "config.h"

/* Takes ownership of `cfg`. Returns the process exit code. */
int master_run(config_t *cfg);

/* Bind one "host:port" / "[v6]:port" / "port" address. Returns an fd or -1 (logged). */
int master_bind(const char *address);

#endif
