/* Claims the next SDK ABI major: the host must refuse it with both versions named. */
#include <panthera/panthera.h>

static int init(px_plugin_t *self)
{
    (void)self;
    return 0;
}

PX__HIDDEN const px_api_t *px_api;
PX__EXPORT const px_plugin_info_t px_plugin_info = {
    PX_PLUGIN_MAGIC, PX_ABI_MAJOR + 1, 0, "abi_major", "1.0.0", NULL, &px_api, init, NULL};
