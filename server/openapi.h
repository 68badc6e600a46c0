/* openapi.h — GET /openapi.json, merged from what every loaded plugin contributed. */
#ifndef PX_OPENAPI_H
#define PX_OPENAPI_H

#include "plugin.h"

/* Register the host route; the document is built on the first request. */
void openapi_register(plugin_set_t *set);
/* The merged document (a new reference). */
json_t *openapi_document(const plugin_set_t *set);

#endif
