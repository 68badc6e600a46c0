/* A descriptor by the right name whose magic number is wrong: what a plugin built against
 * a corrupted or foreign header looks like. The host must say it found the descriptor and
 * what is wrong with it, not that there is none. */
#include <panthera/panthera.h>

static int init(px_plugin_t *self)
{
    (void)self;
    return 0;
}

PX__HIDDEN const px_api_t *px_api;
PX__EXPORT const px_plugin_info_t px_plugin_info = {
    0xdeadbeefu, PX_ABI_MAJOR, PX_MIN_MINOR, "bad_magic", "1.0.0", NULL, &px_api, init, NULL};
