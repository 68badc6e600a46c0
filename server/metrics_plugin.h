/* metrics_plugin.h — counters and histograms plugins declare, summed across workers like
 * the host's own (metrics_plugin.c). */
#ifndef PX_METRICS_PLUGIN_H
#define PX_METRICS_PLUGIN_H

#include <stdint.h>

#include "panthera.h"

#define METRICS_PLUGIN_MAX_BOUNDS 32

/* The master, before forking (or on first use). Returns 0 or -errno. */
int metrics_plugin_init(void);
/* A worker writes into metrics slot `slot` (the one metrics_attach got). */
void metrics_plugin_attach(int slot);
/* Declare during init; return the metric's id (>= 0), PX_EINVAL for a bad name, help or
 * bounds (or when the table is full), PX_EEXIST when the plugin declared the name already
 * or another plugin declared it with the other kind. */
int metrics_plugin_counter(const char *plugin, const char *name, const char *help);
int metrics_plugin_histogram(const char *plugin, const char *name, const char *help,
                             const double *bounds, int nbounds);
/* Ids of another plugin or kind are ignored. */
void metrics_plugin_add(const char *plugin, int id, uint64_t n);
void metrics_plugin_observe(const char *plugin, int id, double value);
/* Forget every declaration (tests). */
void metrics_plugin_reset(void);

#endif
