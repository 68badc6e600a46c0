/* main.c — the command line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "hooks.h"
#include "llhttp.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "panthera.h"
#include "plugin.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pantherad [-c FILE] [-t] [-V] [-h]\n"
            "  -c FILE  configuration file (default " PX_DEFAULT_CONFIG ")\n"
            "  -t       check the configuration and every enabled plugin, then exit\n"
            "  -V       print version, SDK ABI and built-in paths, then exit\n"
            "  -h       this help\n"
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

static int check_config(config_t *cfg)
{
    plugin_set_t plugins;
    plugin_set_init(&plugins);
    metrics_register_routes(&plugins);
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
        printf("configuration OK\n");
    }
    config_errors_free(&errs);
    plugin_set_unload(&plugins);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *path = PX_DEFAULT_CONFIG;
    bool test = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
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
    if (optind < argc) {
        fprintf(stderr, "pantherad: unexpected argument \"%s\"\n", argv[optind]);
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
    int rc = log_open(cfg->error_log, cfg->log_level);
    if (rc)
        fprintf(stderr, "pantherad: cannot open error_log %s: %s\n", cfg->error_log,
                strerror(-rc));
    return master_run(cfg);
}
