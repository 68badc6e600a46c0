/* migrate.h — applying the plugins' schema migrations before workers start. */
#ifndef PX_MIGRATE_H
#define PX_MIGRATE_H

#include "config.h"
#include "plugin.h"

/* Apply every pending migration of the loaded plugins `set` to cfg's database, plugins in
 * dependency order. Blocking: run it in the migrator process only. Returns 0, or -1 with
 * the reason logged (plugin, migration and PostgreSQL's message). */
int migrate_apply(const config_t *cfg, const plugin_set_t *set);

/* migrate_run's answer when the plugins themselves did not load (ABI refusal, route
 * clash, missing dependency...): nothing was migrated because nothing could be, and the
 * migrator has logged the plugins' errors, not a migration's. */
#define MIGRATE_EPLUGINS (-2)

/* From the master: fork a process that loads the plugins of `cfg` and applies their
 * migrations; wait for it. Returns 0 when every migration is in place, MIGRATE_EPLUGINS
 * when the plugins did not load, -1 when a migration (or the database) failed. */
int migrate_run(const config_t *cfg);

#endif
