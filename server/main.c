/* main.c — the command line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "events.h"
#include <libpq-fe.h>
#include "migrate.h"
#include "hooks.h"
#include "llhttp.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "panthera.h"
#include "plugin.h"
#include "worker.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pantherad [-c FILE] [-t] [-V] [-h] [PLUGIN:COMMAND [ARGS...]]\n"
            "  -c FILE  configuration file (default " PX_DEFAULT_CONFIG ")\n"
            "  -t       check the configuration and every enabled plugin, then exit\n"
            "  -V       print version, SDK ABI and built-in paths, then exit\n"
            "  -h       this help\n"
            "  PLUGIN:COMMAND  run a command a plugin provides (e.g. user:create-admin) and exit\n"
            "  events:list [GROUP], events:replay GROUP ID|all  consumer groups, dead letters\n"
            "signals: HUP reload, TERM/INT graceful stop, USR1 reopen logs\n");
}

static void print_version(void)
{
    printf("pantherad %s\n", PX_VERSION);
    printf("SDK ABI %d.%d\n", PX_ABI_MAJOR, PX_ABI_MINOR);
    printf("config: %s\n", PX_DEFAULT_CONFIG);
    printf("plugin_path: %s\n", PX_DEFAULT_PLUGIN_PATH);
    printf("libuv %s, llhttp %d.%d.%d, jansson %s\n", uv_version_string(), LLHTTP_VERSION_MAJOR,
           LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, JANSSON_VERSION);
}

static void print_route(const route_t *rt, void *arg)
{
    (void)arg;
    printf("  %-7s %-40s %s\n", router_method_name(rt->method), rt->pattern, rt->owner);
}

/* The hook points an admin's Lua script may define: the host's two, then what each
 * plugin declared (px_hook_declare). */
static void print_hooks(const plugin_set_t *plugins)
{
    printf("hooks:\n");
    printf("  %-28s %-12s %s\n", "on_request", "host", "every routed request, before its plugin");
    printf("  %-28s %-12s %s\n", "on_response", "host", "every answer, before it is sent");
    for (size_t i = 0; i < plugins->n; i++) {
        const char *name;
        json_t *description;
        json_object_foreach(plugins->items[i]->hook_points, name, description)
        {
            printf("  %-28s %-12s %s\n", name, plugins->items[i]->name,
                   json_string_value(description));
        }
    }
}

static bool hook_declared(const plugin_set_t *plugins, const char *name)
{
    if (!strcmp(name, "on_request") || !strcmp(name, "on_response"))
        return true;
    for (size_t i = 0; i < plugins->n; i++)
        if (plugins->items[i]->hook_points && json_object_get(plugins->items[i]->hook_points, name))
            return true;
    return false;
}

/* A script's global function that no hook point names is a typo, a helper that should be
 * local, or a hook of a plugin that is not enabled: worth a note, not an error. Only
 * names shaped like hooks (on_..., before_..., after_...) are noted. */
static void note_undeclared(const char *name, const char *script, void *ctx)
{
    const plugin_set_t *plugins = ctx;
    bool hook_shaped = !strncmp(name, "on_", 3) || !strncmp(name, "before_", 7) ||
                       !strncmp(name, "after_", 6);
    if (hook_shaped && !hook_declared(plugins, name))
        printf("note: lua: %s defines %s, which is no hook point of the host or of an enabled "
               "plugin\n",
               script, name);
}

static int check_config(config_t *cfg)
{
    plugin_set_t plugins;
    plugin_set_init(&plugins);
    worker_host_routes(&plugins);
    config_errors_t errs = {0};
    int rc = plugin_set_load(&plugins, cfg, &errs);
    if (cfg->lua.dir && *cfg->lua.dir) {
        /* The scripts are compiled and run once, as a worker would at start. */
        hooks_limits_t limits = {.instruction_budget = cfg->lua.instruction_budget,
                                 .memory_cap = cfg->lua.memory_limit};
        hooks_t *hooks = hooks_new(&limits);
        char err[512];
        if (hooks_load_dir(hooks, cfg->lua.dir, err, sizeof(err)) < 0) {
            config_error(&errs, cfg->lua.dir, 0, "lua: %s", err);
            rc = -1;
        } else if (!rc) {
            hooks_foreach(hooks, note_undeclared, &plugins);
        }
        hooks_free(hooks);
    }
    if (rc) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "pantherad: %s\n", errs.items[i]);
        fprintf(stderr, "pantherad: configuration %s has errors\n", cfg->path);
    } else {
        printf("plugins:\n");
        for (size_t i = 0; i < plugins.n; i++)
            printf("  %s %s (%s)\n", plugins.items[i]->name, plugins.items[i]->info->version,
                   plugins.items[i]->path);
        printf("routes:\n");
        router_foreach(plugins.router, print_route, NULL);
        print_hooks(&plugins);
        printf("configuration OK\n");
    }
    config_errors_free(&errs);
    plugin_set_unload(&plugins);
    return rc ? 1 : 0;
}

/* PLUGIN:COMMAND: the plugins are loaded and migrated as for serving, then the command
 * runs in this process with a blocking database connection of its own. */
static int run_command(config_t *cfg, int argc, char **argv)
{
    const char *colon = strchr(argv[0], ':');
    plugin_set_t plugins;
    plugin_set_init(&plugins);
    config_errors_t errs = {0};
    int rc = 1;
    if (plugin_set_load(&plugins, cfg, &errs)) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "pantherad: %s\n", errs.items[i]);
        goto done;
    }
    if (!strncmp(argv[0], "events:", 7)) {
        /* The host's own commands (events.c's log), after the same load and migration. */
        if (!cfg->pg.conninfo || !*cfg->pg.conninfo) {
            fprintf(stderr, "pantherad: %s needs [postgres] conninfo\n", argv[0]);
            goto done;
        }
        if (migrate_apply(cfg, &plugins))
            goto done;
        PGconn *db = PQconnectdb(cfg->pg.conninfo);
        if (PQstatus(db) != CONNECTION_OK)
            fprintf(stderr, "pantherad: cannot connect to PostgreSQL: %s", PQerrorMessage(db));
        else
            rc = events_command(db, &cfg->events, argc, argv);
        PQfinish(db);
        goto done;
    }
    struct px_plugin *p = NULL;
    for (size_t i = 0; i < plugins.n && !p; i++)
        if (strlen(plugins.items[i]->name) == (size_t)(colon - argv[0]) &&
            !strncmp(plugins.items[i]->name, argv[0], (size_t)(colon - argv[0])))
            p = plugins.items[i];
    const plugin_command_t *cmd = NULL;
    for (size_t i = 0; p && i < p->ncommands && !cmd; i++)
        if (!strcmp(p->commands[i].name, colon + 1))
            cmd = &p->commands[i];
    if (!cmd) {
        fprintf(stderr, "pantherad: no command \"%s\"; the enabled plugins offer:\n", argv[0]);
        for (size_t i = 0; i < plugins.n; i++)
            for (size_t k = 0; k < plugins.items[i]->ncommands; k++)
                fprintf(stderr, "  %s:%s  %s\n", plugins.items[i]->name,
                        plugins.items[i]->commands[k].name, plugins.items[i]->commands[k].usage);
        rc = 2;
        goto done;
    }
    if (migrate_apply(cfg, &plugins))
        goto done;
    PGconn *db = NULL;
    if (cfg->pg.conninfo && *cfg->pg.conninfo) {
        db = PQconnectdb(cfg->pg.conninfo);
        if (PQstatus(db) != CONNECTION_OK) {
            fprintf(stderr, "pantherad: cannot connect to PostgreSQL: %s", PQerrorMessage(db));
            PQfinish(db);
            goto done;
        }
        p->command_db = db;
    }
    rc = cmd->fn(p, argc, argv);
    p->command_db = NULL;
    PQfinish(db);
done:
    config_errors_free(&errs);
    plugin_set_unload(&plugins);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = PX_DEFAULT_CONFIG;
    bool test = false;
    int opt;
    while ((opt = getopt(argc, argv, "+c:tVh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = true;
            break;
        case 'V':
            print_version();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    const char *command = optind < argc ? argv[optind] : NULL;
    if (command && (!strchr(command, ':') || test)) {
        fprintf(stderr, "pantherad: unexpected argument \"%s\"\n", command);
        usage(stderr);
        return 2;
    }
    config_errors_t errs = {0};
    config_t *cfg = config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "pantherad: %s\n", errs.items[i]);
        fprintf(stderr, "pantherad: configuration %s has errors\n", path);
        config_errors_free(&errs);
        return 1;
    }
    if (test) {
        int rc = check_config(cfg);
        config_free(cfg);
        return rc;
    }
    if (command) {
        int rc = run_command(cfg, argc - optind, argv + optind);
        config_free(cfg);
        return rc;
    }
    int rc = log_open(cfg->error_log, cfg->log_level);
    if (rc)
        fprintf(stderr, "pantherad: cannot open error_log %s: %s\n", cfg->error_log,
                strerror(-rc));
    return master_run(cfg);
}
