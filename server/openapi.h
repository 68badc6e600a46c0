/* openapi.h — GET /openapi.json, described from every loaded plugin's routes and schemas. */
#ifndef PX_OPENAPI_H
#define PX_OPENAPI_H

#include "plugin.h"

/* Build the document once every plugin's init is over (plugin_set_load does). 0, or -1
 * with the errors (two plugins serving the same schema name...) added to `errs`. */
int openapi_build(plugin_set_t *set, config_errors_t *errs);
/* Register the host route that serves it. */
void openapi_register(plugin_set_t *set);

#endif
