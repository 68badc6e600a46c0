/* migbad — its second migration fails: start-up must stop and leave nothing half-done. */
#include <panthera/panthera.h>

extern const px_migration_t migbad_migrations[];

static int init(px_plugin_t *self)
{
    return px_migrations(self, migbad_migrations);
}

PX_PLUGIN("migbad", "1.0.0", init, NULL, NULL);
