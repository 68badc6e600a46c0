/* Claims a newer SDK ABI minor than the host's: the host must refuse it. */
#include <panthera/panthera.h>

static int init(px_plugin_t *self)
{
    (void)self;
    return 0;
}

PX__HIDDEN const px_api_t *px_api;
PX__EXPORT const px_plugin_info_t px_plugin_info = {
    PX_PLUGIN_MAGIC, PX_ABI_MAJOR, PX_ABI_MINOR + 1, "abi_minor", "1.0.0", NULL, &px_api, init,
    NULL};
