/*
 * plugin.c — how a .so becomes part of the server.
 *
 * Order of checks, each with one log line that names the plugin and the fix:
 * the file is found along plugin_path; dlopen(RTLD_NOW | RTLD_LOCAL) succeeds (NOW so a
 * missing symbol fails here rather than at the first request, LOCAL so plugins cannot
 * interpose on each other); the descriptor exists and carries our magic; the ABI major
 * equals ours and the minor is not newer; the descriptor's name matches its section;
 * dependencies are enabled and acyclic. Only then are the inits run, in dependency order,
 * each free to register routes and declare config keys. Keys left undeclared in the
 * plugin's section are reported with their file:line.
 */
#include "plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "events.h"
#include "log.h"
#include "openapi.h"
#include "route_spec.h"
#include "tasks.h"
#include "util.h"

static struct px_plugin *plugin_new(const char *name)
{
    struct px_plugin *p = xcalloc(1, sizeof(*p));
    p->name = xstrdup(name);
    return p;
}

static void plugin_free(struct px_plugin *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->ncommands; i++) {
        free(p->commands[i].name);
        free(p->commands[i].usage);
    }
    free(p->commands);
    json_decref(p->openapi);
    route_spec_free(p);
    json_decref(p->hook_points);
    json_decref(p->pg_conflicts);
    api_generation_free_all(p);
    for (size_t i = 0; i < p->nkeys; i++) {
        free(p->keys[i].key);
        free(p->keys[i].default_value);
    }
    free(p->keys);
    free(p->name);
    free(p->path);
    free(p);
}

void plugin_set_init(plugin_set_t *set)
{
    memset(set, 0, sizeof(*set));
    set->router = router_new();
    set->host = plugin_new("host");
    set->host->set = set;
}

void plugin_host_route(plugin_set_t *set, const char *method, const char *pattern,
                       px_handler_fn handler, void *userdata)
{
    char err[256];
    if (router_add(set->router, method, pattern, handler, userdata, "host", 0, err, sizeof(err))) {
        log_error("host route: %s", err);
        abort();
    }
}

char *plugin_find_file(const char *plugin_path, const char *name)
{
    if (strchr(name, '/'))
        return access(name, R_OK) == 0 ? xstrdup(name) : NULL;
    char *copy = xstrdup(plugin_path ? plugin_path : "");
    char *save = NULL;
    char *found = NULL;
    const char *suffix = strstr(name, ".so") ? "" : ".so";
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char *a = xasprintf("%s/%s%s", dir, name, suffix);
        char *b = xasprintf("%s/%s/%s%s", dir, name, name, suffix);
        if (access(a, R_OK) == 0)
            found = xstrdup(a);
        else if (access(b, R_OK) == 0)
            found = xstrdup(b);
        free(a);
        free(b);
    }
    free(copy);
    return found;
}

static int open_plugin(struct px_plugin *p, const config_t *cfg, config_errors_t *errs)
{
    const config_plugin_t *sec = p->section;
    const config_entry_t *load = config_plugin_entry(sec, "load");
    const char *file = load ? load->value : p->name;
    p->path = plugin_find_file(cfg->plugin_path, file);
    if (!p->path) {
        config_error(errs, sec->file, load ? load->line : sec->line,
                     "plugin \"%s\": cannot find %s%s along plugin_path \"%s\"; install the plugin "
                     "or set load = /path/to/%s.so",
                     p->name, file, strstr(file, ".so") ? "" : ".so",
                     cfg->plugin_path ? cfg->plugin_path : "", p->name);
        return -1;
    }
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        config_error(errs, sec->file, sec->line, "plugin \"%s\": cannot load %s: %s", p->name,
                     p->path, dlerror());
        return -1;
    }
    p->info = dlsym(p->dl, PX_PLUGIN_SYMBOL);
    if (!p->info) {
        config_error(errs, sec->file, sec->line,
                     "plugin \"%s\": %s is not a Panthera plugin (no " PX_PLUGIN_SYMBOL
                     " descriptor); build it with PX_PLUGIN() from <panthera/panthera.h>",
                     p->name, p->path);
        return -1;
    }
    /* The symbol is there but is not ours (or is corrupt): say what was found, since
     * "no descriptor" would send the author looking for a missing export. */
    if (p->info->magic != PX_PLUGIN_MAGIC) {
        config_error(errs, sec->file, sec->line,
                     "plugin \"%s\": %s has a " PX_PLUGIN_SYMBOL " descriptor with magic number "
                     "0x%08x, not 0x%08x (PX_PLUGIN_MAGIC): it was not made by PX_PLUGIN() from "
                     "<panthera/panthera.h>; rebuild the plugin with PX_PLUGIN()",
                     p->name, p->path, (unsigned)p->info->magic, (unsigned)PX_PLUGIN_MAGIC);
        p->info = NULL;
        return -1;
    }
    const px_plugin_info_t *in = p->info;
    if (in->abi_major != PX_ABI_MAJOR || in->abi_minor > PX_ABI_MINOR) {
        config_error(errs, sec->file, sec->line,
                     "plugin \"%s\" (%s) is not binary compatible: it needs SDK ABI %u.%u, this "
                     "host has ABI %u.%u; %s",
                     p->name, p->path, in->abi_major, in->abi_minor, PX_ABI_MAJOR, PX_ABI_MINOR,
                     in->abi_major != PX_ABI_MAJOR
                         ? "rebuild the plugin against this host's panthera-dev"
                         : "upgrade pantherad or rebuild the plugin against this host's "
                           "panthera-dev");
        p->info = NULL;
        return -1;
    }
    if (!in->name || strcmp(in->name, p->name) != 0 || !in->api || !in->init) {
        config_error(errs, sec->file, sec->line,
                     "plugin \"%s\": %s describes itself as \"%s\"%s; the section must be "
                     "[plugin:%s]",
                     p->name, p->path, in->name ? in->name : "(null)",
                     in->init ? "" : " and has no init function", in->name ? in->name : "NAME");
        p->info = NULL;
        return -1;
    }
    return 0;
}

/* Depth-first topological sort; `mark` 1 = on the current path (a cycle), 2 = done. */
static int visit(plugin_set_t *set, struct px_plugin **all, size_t n, size_t i, int *mark,
                 config_errors_t *errs)
{
    struct px_plugin *p = all[i];
    if (mark[i] == 2)
        return 0;
    if (mark[i] == 1) {
        config_error(errs, p->section->file, p->section->line,
                     "plugin \"%s\" is part of a dependency cycle", p->name);
        return -1;
    }
    mark[i] = 1;
    int rc = 0;
    for (const char *const *d = p->info->depends; d && *d; d++) {
        size_t j;
        for (j = 0; j < n; j++)
            if (!strcmp(all[j]->name, *d))
                break;
        if (j == n) {
            config_error(errs, p->section->file, p->section->line,
                         "plugin \"%s\" depends on \"%s\", which is not enabled; enable it with a "
                         "[plugin:%s] drop-in",
                         p->name, *d, *d);
            rc = -1;
            continue;
        }
        if (!all[j]->info) {
            rc = -1; /* its own load error is already reported */
            continue;
        }
        if (visit(set, all, n, j, mark, errs))
            rc = -1;
    }
    mark[i] = 2;
    if (rc == 0) {
        set->items = xrealloc(set->items, (set->n + 1) * sizeof(*set->items));
        set->items[set->n++] = p;
    }
    return rc;
}

static int check_section_keys(struct px_plugin *p, config_errors_t *errs)
{
    int rc = 0;
    for (size_t i = 0; i < p->section->nentries; i++) {
        const config_entry_t *e = &p->section->entries[i];
        if (!strcmp(e->key, "load"))
            continue;
        bool declared = false;
        for (size_t k = 0; k < p->nkeys && !declared; k++)
            declared = !strcmp(p->keys[k].key, e->key);
        if (!declared) {
            buf_t known = {0};
            for (size_t k = 0; k < p->nkeys; k++)
                buf_printf(&known, "%s%s", k ? ", " : "", p->keys[k].key);
            config_error(errs, e->file, e->line,
                         "unknown key \"%s\" in [plugin:%s] (it accepts: load%s%s)", e->key,
                         p->name, p->nkeys ? ", " : "", known.data ? known.data : "");
            buf_free(&known);
            rc = -1;
        }
    }
    return rc;
}

int plugin_set_load(plugin_set_t *set, const config_t *cfg, config_errors_t *errs)
{
    size_t n = cfg->nplugins;
    size_t errors_before = errs->n;
    set->cfg = cfg;
    struct px_plugin **all = xcalloc(n ? n : 1, sizeof(*all));
    for (size_t i = 0; i < n; i++) {
        all[i] = plugin_new(cfg->plugins[i].name);
        all[i]->section = &cfg->plugins[i];
        all[i]->set = set;
        open_plugin(all[i], cfg, errs);
    }
    int *mark = xcalloc(n ? n : 1, sizeof(int));
    for (size_t i = 0; i < n; i++)
        if (all[i]->info)
            visit(set, all, n, i, mark, errs);
    free(mark);

    if (errs->n == errors_before) {
        set->errs = errs;
        for (size_t i = 0; i < set->n; i++) {
            struct px_plugin *p = set->items[i];
            *p->info->api = &plugin_api_table;
            set->registering = p;
            size_t errs_at_init = errs->n;
            int rc = p->info->init(p);
            set->registering = NULL;
            if (rc == 0 && errs->n == errs_at_init)
                rc = route_spec_finish(p, errs);
            if (rc != 0 && errs->n == errs_at_init)
                config_error(errs, p->section->file, p->section->line,
                             "plugin \"%s\": init failed (%d); see the lines above", p->name, rc);
            if (rc != 0 || errs->n != errs_at_init)
                break;
            p->initialized = true;
            check_section_keys(p, errs);
        }
        set->errs = NULL;
        if (errs->n == errors_before)
            openapi_build(set, errs);
    }
    /* Plugins that never made it into the ordered list are closed here; the ordered
     * ones are unloaded by plugin_set_unload. */
    for (size_t i = 0; i < n; i++) {
        bool ordered = false;
        for (size_t j = 0; j < set->n && !ordered; j++)
            ordered = set->items[j] == all[i];
        if (!ordered) {
            if (all[i]->dl)
                dlclose(all[i]->dl);
            plugin_free(all[i]);
        }
    }
    free(all);
    return errs->n == errors_before ? 0 : -1;
}

void plugin_set_unload(plugin_set_t *set)
{
    for (size_t i = set->n; i-- > 0;) {
        struct px_plugin *p = set->items[i];
        if (p->initialized && p->info->fini)
            p->info->fini(p);
    }
    /* Routes point into plugin code and data: drop them before the code goes. */
    router_free(set->router);
    set->router = NULL;
    for (size_t i = set->n; i-- > 0;) {
        struct px_plugin *p = set->items[i];
        if (p->dl)
            dlclose(p->dl);
        plugin_free(p);
    }
    free(set->items);
    set->items = NULL;
    set->n = 0;
    free(set->openapi_text);
    set->openapi_text = NULL;
    plugin_free(set->host);
    set->host = NULL;
    tasks_registry_free(set);
    events_registry_free(set);
}
