/* Depends on a plugin nobody enables: the host must refuse to start it. */
#include <panthera/panthera.h>

static int init(px_plugin_t *self)
{
    (void)self;
    return 0;
}

static const char *const deps[] = {"nonexistent", NULL};
PX_PLUGIN("needs_missing", "1.0.0", init, NULL, deps);
