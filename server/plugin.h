/* plugin.h — loading plugins: dlopen, the descriptor and ABI check, dependency order,
 * init with registration, the check of their config sections, and unloading. */
#ifndef PX_PLUGIN_H
#define PX_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "panthera.h"
#include "router.h"

typedef struct config_key {
    char *key;
    char *default_value;
} config_key_t;

struct px_plugin {
    char *name;
    char *path;
    void *dl;
    const px_plugin_info_t *info;
    const config_plugin_t *section;
    config_key_t *keys;
    size_t nkeys;
    struct plugin_set *set;
    bool initialized;
    size_t nroutes;
    const px_migration_t *migrations; /* borrowed from the plugin, NULL-terminated */
    struct plugin_command *commands;
    size_t ncommands;
    json_t *openapi; /* the plugin's fragment of /openapi.json, or NULL */
    struct validate_registry *schemas; /* px_schema's, compiled (route_spec.c) */
    struct route_checks *checks;       /* what its routes' specs check (route_spec.c) */
    json_t *hook_points; /* px_hook_declare: name → description, or NULL */
    json_t *pg_conflicts; /* px_pg_conflict: constraint → 409 message, or NULL */
    void *command_db; /* PGconn of px_command_sql, in a command process only */
    struct px_generation *generations; /* px_generation_new's (api_generation.c) */
};

typedef struct plugin_command {
    char *name;
    char *usage;
    px_command_fn fn;
} plugin_command_t;

typedef struct plugin_set {
    struct px_plugin **items; /* in dependency order */
    size_t n;
    struct px_plugin *host; /* owns the host's own routes */
    router_t *router;
    struct px_plugin *registering; /* the plugin whose init is running */
    const config_t *cfg;           /* the configuration the plugins were loaded with */
    config_errors_t *errs;         /* where registration errors go during init */
    char *openapi_text;            /* GET /openapi.json, built once every init is over */
    size_t openapi_len;
    struct tasks_registry *tasks;  /* lifecycle functions and job queues (tasks.c, work.c) */
    struct events_registry *events; /* event subscriptions (events.c) */
} plugin_set_t;

extern const px_api_t plugin_api_table;

/* Create a set with an empty router and the built-in "host" plugin. */
void plugin_set_init(plugin_set_t *set);
/* dlopen every [plugin:NAME] of `cfg`, check descriptors and ABI, order by dependency,
 * run each init and check its config section. Returns 0, or -1 with errors appended to
 * `errs` (every plugin is looked at; one bad plugin does not hide the next one's error). */
int plugin_set_load(plugin_set_t *set, const config_t *cfg, config_errors_t *errs);
/* fini in reverse order, dlclose, free routes. */
void plugin_set_unload(plugin_set_t *set);

/* Register a host route (owner "host"); aborts on a programming error. */
void plugin_host_route(plugin_set_t *set, const char *method, const char *pattern,
                       px_handler_fn handler, void *userdata);

/* Find a plugin's .so along plugin_path (colon-separated): NAME.so or NAME/NAME.so.
 * Returns a malloc'd path or NULL. */
char *plugin_find_file(const char *plugin_path, const char *name);

#endif
