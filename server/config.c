/*
 * config.c — pantherad.conf and its drop-ins.
 *
 * The format is INI, parsed by Debian's libinih. inih does not tell its handler which
 * line a value came from (that is a compile-time option of the library), so we feed it
 * through our own line reader and count: inih calls the handler while processing the
 * line it just read, so the count is exactly the line of the value. Multi-line values
 * are switched off to keep that true.
 *
 * Host sections ([server], [http]) are described by one table; a key not in the table is
 * an error. [plugin:NAME] sections are kept as raw entries: which keys a plugin accepts
 * is only known once it has declared them during init (plugin.c checks that).
 */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <ini.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "ratelimit.h"
#include "tls.h"
#include "util.h"

enum value_kind { V_STRING, V_LIST, V_WORKERS, V_SIZE, V_DURATION, V_COUNT, V_INDEX, V_LOGLEVEL };

typedef struct key_spec {
    const char *section;
    const char *key;
    enum value_kind kind;
    size_t offset;
    bool main_file_only;
} key_spec_t;

#define CONFIG_MAX_LINE 16384

#define CFG(field) offsetof(config_t, field)
#define HTTP(field) (offsetof(config_t, http) + offsetof(http_limits_t, field))
#define PG(field) (offsetof(config_t, pg) + offsetof(pg_settings_t, field))
#define REDIS(field) (offsetof(config_t, redis) + offsetof(redis_settings_t, field))
#define AUTH(field) (offsetof(config_t, auth) + offsetof(auth_settings_t, field))
#define LUA(field) (offsetof(config_t, lua) + offsetof(lua_settings_t, field))
#define STORAGE(field) (offsetof(config_t, storage) + offsetof(storage_settings_t, field))
#define EVENTS(field) (offsetof(config_t, events) + offsetof(events_settings_t, field))
#define TLS(field) (offsetof(config_t, tls) + offsetof(tls_settings_t, field))

static const key_spec_t host_keys[] = {
    {"server", "listen", V_LIST, CFG(listen), false},
    {"server", "workers", V_WORKERS, CFG(workers), false},
    {"server", "plugin_path", V_STRING, CFG(plugin_path), false},
    {"server", "conf_dir", V_STRING, CFG(conf_dir), true},
    {"server", "pid_file", V_STRING, CFG(pid_file), false},
    {"server", "error_log", V_STRING, CFG(error_log), false},
    {"server", "access_log", V_STRING, CFG(access_log), false},
    {"server", "log_level", V_LOGLEVEL, CFG(log_level), false},
    {"server", "shutdown_timeout", V_DURATION, CFG(shutdown_timeout_ms), false},
    {"server", "blocking_jobs", V_COUNT, CFG(blocking_jobs), false},
    {"server", "blocking_queue", V_COUNT, CFG(blocking_queue), false},
    {"server", "crash_limit", V_INDEX, CFG(crash_limit), false},
    {"server", "crash_window", V_DURATION, CFG(crash_window_ms), false},
    {"http", "max_header_size", V_SIZE, HTTP(max_header_size), false},
    {"http", "max_headers", V_COUNT, HTTP(max_headers), false},
    {"http", "max_body_size", V_SIZE, HTTP(max_body_size), false},
    {"http", "header_timeout", V_DURATION, HTTP(header_timeout_ms), false},
    {"http", "body_timeout", V_DURATION, HTTP(body_timeout_ms), false},
    {"http", "min_body_rate", V_SIZE, HTTP(min_body_rate), false},
    {"http", "keepalive_timeout", V_DURATION, HTTP(keepalive_timeout_ms), false},
    {"http", "keepalive_requests", V_COUNT, HTTP(keepalive_requests), false},
    {"http", "send_timeout", V_DURATION, HTTP(send_timeout_ms), false},
    {"http", "max_connections", V_COUNT, HTTP(max_connections), false},
    {"http", "max_connections_per_client", V_COUNT, HTTP(max_connections_per_client), false},
    {"http", "first_byte_timeout", V_DURATION, HTTP(first_byte_timeout_ms), false},
    {"http", "stream_backlog", V_SIZE, HTTP(stream_backlog), false},
    {"http", "stream_retry", V_DURATION, HTTP(stream_retry_ms), false},
    {"postgres", "conninfo", V_STRING, PG(conninfo), false},
    {"postgres", "pool_size", V_COUNT, PG(pool_size), false},
    {"postgres", "statement_timeout", V_DURATION, PG(statement_timeout_ms), false},
    {"postgres", "queue_max", V_COUNT, PG(queue_max), false},
    {"postgres", "wait_timeout", V_DURATION, PG(wait_timeout_ms), false},
    {"postgres", "connect_timeout", V_DURATION, PG(connect_timeout_ms), false},
    {"redis", "address", V_STRING, REDIS(address), false},
    {"redis", "username", V_STRING, REDIS(username), false},
    {"redis", "password", V_STRING, REDIS(password), false},
    {"redis", "password_file", V_STRING, REDIS(password_file), false},
    {"redis", "database", V_INDEX, REDIS(database), false},
    {"redis", "command_timeout", V_DURATION, REDIS(command_timeout_ms), false},
    {"redis", "connect_timeout", V_DURATION, REDIS(connect_timeout_ms), false},
    {"auth", "token_secret", V_STRING, AUTH(token_secret), false},
    {"auth", "token_secret_file", V_STRING, AUTH(token_secret_file), false},
    {"auth", "issuer", V_STRING, AUTH(issuer), false},
    {"auth", "access_ttl", V_DURATION, AUTH(access_ttl_ms), false},
    {"auth", "refresh_ttl", V_DURATION, AUTH(refresh_ttl_ms), false},
    {"auth", "leeway", V_DURATION, AUTH(leeway_ms), false},
    {"auth", "token_cache", V_INDEX, AUTH(token_cache), false},
    {"auth", "revocation_poll", V_DURATION, AUTH(revocation_poll_ms), false},
    {"lua", "dir", V_STRING, LUA(dir), false},
    {"lua", "instruction_budget", V_COUNT, LUA(instruction_budget), false},
    {"lua", "memory_limit", V_SIZE, LUA(memory_limit), false},
    {"storage", "backend", V_STRING, STORAGE(backend), false},
    {"storage", "dir", V_STRING, STORAGE(dir), false},
    {"storage", "spool_dir", V_STRING, STORAGE(spool_dir), false},
    {"storage", "sweep_grace", V_DURATION, STORAGE(sweep_grace_ms), false},
    {"storage", "sweep_interval", V_DURATION, STORAGE(sweep_interval_ms), false},
    {"events", "max_attempts", V_COUNT, EVENTS(max_attempts), false},
    {"events", "retention", V_DURATION, EVENTS(retention_ms), false},
    {"events", "poll_interval", V_DURATION, EVENTS(poll_interval_ms), false},
    {"events", "concurrency", V_COUNT, EVENTS(concurrency), false},
    {"events", "lease", V_DURATION, EVENTS(lease_ms), false},
    {"events", "batch", V_COUNT, EVENTS(batch), false},
    {"tls", "certificate", V_STRING, TLS(certificate), false},
    {"tls", "key", V_STRING, TLS(key), false},
    {"tls", "ciphers", V_STRING, TLS(ciphers), false},
    {"tls", "ticket_key_file", V_STRING, TLS(ticket_key_file), false},
    {"tls", "ticket_rotation", V_DURATION, TLS(ticket_rotation_ms), false},
    {"tls", "ocsp_response", V_STRING, TLS(ocsp_response), false},
    {"tls", "hsts", V_STRING, TLS(hsts), false},
};

/* Counts with a smaller ceiling than the usual 1,000,000,000. */
static const struct {
    const char *section, *key;
    long max;
} count_max[] = {
    {"events", "batch", EVENTS_BATCH_MAX},
};

static long key_max(const key_spec_t *spec)
{
    for (size_t i = 0; i < ARRAY_SIZE(count_max); i++)
        if (!strcmp(count_max[i].section, spec->section) && !strcmp(count_max[i].key, spec->key))
            return count_max[i].max;
    return 0;
}

void config_foreach_key(config_key_fn fn, void *ud)
{
    for (size_t i = 0; i < ARRAY_SIZE(host_keys); i++)
        fn(host_keys[i].section, host_keys[i].key, ud);
    ratelimit_config_foreach_key(fn, ud);
    tls_names_foreach_key(fn, ud);
}

static bool host_section(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(host_keys); i++)
        if (!strcmp(host_keys[i].section, name))
            return true;
    return false;
}

void config_error(config_errors_t *errs, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    errs->items = xrealloc(errs->items, (errs->n + 1) * sizeof(char *));
    errs->items[errs->n++] = line > 0 ? xasprintf("%s:%d: %s", file, line, msg)
                                      : xasprintf("%s: %s", file, msg);
}

void config_errors_print(const config_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        log_error("%s", errs->items[i]);
}

void config_errors_free(config_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        free(errs->items[i]);
    free(errs->items);
    errs->items = NULL;
    errs->n = 0;
}

config_t *config_new_defaults(void)
{
    config_t *cfg = xcalloc(1, sizeof(*cfg));
    cfg->workers = 0;
    cfg->plugin_path = xstrdup(PX_DEFAULT_PLUGIN_PATH);
    cfg->log_level = LOG_INFO;
    cfg->shutdown_timeout_ms = 10000;
    cfg->crash_limit = 3;
    cfg->crash_window_ms = 60000;
    /* Password hashing is the typical job: ~128 MiB and ~0.3 s each, so few at once. */
    cfg->blocking_jobs = 2;
    cfg->blocking_queue = 64;
    cfg->events = (events_settings_t){.max_attempts = 5,
                                      .retention_ms = 7ull * 24 * 3600 * 1000,
                                      .poll_interval_ms = 1000,
                                      .concurrency = 8,
                                      .batch = 32,
                                      .lease_ms = 60000};
    /* nginx's defaults where nginx has one: 60 s header/body/send timeouts, 75 s
     * keep-alive, 1 MiB bodies, 1000 requests per connection. */
    cfg->http = (http_limits_t){
        .max_header_size = 8192,
        .max_headers = 100,
        .max_body_size = 1024 * 1024,
        .header_timeout_ms = 60000,
        .body_timeout_ms = 60000,
        .min_body_rate = 1024,
        .keepalive_timeout_ms = 75000,
        .keepalive_requests = 1000,
        .send_timeout_ms = 60000,
        .max_connections = 4096,
        .first_byte_timeout_ms = 10000,
        .stream_backlog = 64 * 1024,
        .stream_retry_ms = 1000,
    };
    cfg->pg = (pg_settings_t){.pool_size = 4,
                              .statement_timeout_ms = 5000,
                              .queue_max = 256,
                              .wait_timeout_ms = 2000,
                              .connect_timeout_ms = 5000};
    cfg->redis = (redis_settings_t){.command_timeout_ms = 100, .connect_timeout_ms = 500};
    cfg->auth = (auth_settings_t){.issuer = xstrdup("panthera"),
                                  .access_ttl_ms = 15 * 60 * 1000,
                                  .refresh_ttl_ms = 30ull * 24 * 3600 * 1000,
                                  .leeway_ms = 30 * 1000,
                                  .token_cache = 1024,
                                  .revocation_poll_ms = 10 * 1000};
    cfg->lua = (lua_settings_t){.instruction_budget = 1000000, .memory_limit = 16 * 1024 * 1024};
    /* A day's grace: an upload is referenced by the plugin's row within its request, so
     * only abandoned ones are that old without a reference. */
    cfg->storage = (storage_settings_t){.backend = xstrdup("dir"),
                                        .sweep_grace_ms = 24ull * 3600 * 1000,
                                        .sweep_interval_ms = 3600 * 1000};
    cfg->tls = (tls_settings_t){.ticket_rotation_ms = 3600 * 1000};
    return cfg;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void config_free(config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free_list(cfg->listen, cfg->nlisten);
    free(cfg->listen_mode);
    free(cfg->plugin_path);
    free(cfg->conf_dir);
    free(cfg->pid_file);
    free(cfg->error_log);
    free(cfg->access_log);
    free(cfg->pg.conninfo);
    free(cfg->redis.address);
    free(cfg->redis.username);
    free(cfg->redis.password);
    free(cfg->redis.password_file);
    free(cfg->auth.token_secret);
    free(cfg->auth.token_secret_file);
    free(cfg->auth.issuer);
    free(cfg->lua.dir);
    free(cfg->storage.backend);
    free(cfg->storage.dir);
    free(cfg->storage.spool_dir);
    tls_settings_free(&cfg->tls);
    ratelimit_config_free(cfg->ratelimit);
    for (size_t i = 0; i < cfg->nplugins; i++) {
        config_plugin_t *p = &cfg->plugins[i];
        for (size_t j = 0; j < p->nentries; j++) {
            free(p->entries[j].key);
            free(p->entries[j].value);
            free(p->entries[j].file);
        }
        free(p->entries);
        free(p->name);
        free(p->file);
    }
    free(cfg->plugins);
    free(cfg);
}

/* Where each host key was set, to report duplicates with both places. */
typedef struct seen_key {
    const key_spec_t *spec;
    char *file;
    int line;
} seen_key_t;

typedef struct parse_state {
    config_t *cfg;
    config_errors_t *errs;
    const char *file;
    bool main_file;
    FILE *fp;
    int line;
    bool at_line_start;
    char section[128];
    int section_line;
    config_plugin_t *plugin; /* current [plugin:NAME] section, or NULL */
    seen_key_t seen[ARRAY_SIZE(host_keys)];
} parse_state_t;

static bool valid_plugin_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

static void split_list(const char *value, char ***out, size_t *n)
{
    free_list(*out, *n);
    *out = NULL;
    *n = 0;
    char *copy = xstrdup(value);
    char *save = NULL;
    for (char *tok = strtok_r(copy, " ,\t", &save); tok; tok = strtok_r(NULL, " ,\t", &save)) {
        *out = xrealloc(*out, (*n + 1) * sizeof(char *));
        (*out)[(*n)++] = xstrdup(tok);
    }
    free(copy);
}

/* "127.0.0.1:8080, 0.0.0.0:8443 ssl, [::]:80 redirect": a mode word follows the address
 * it is about, as in nginx's listen directive. */
static int parse_listen(parse_state_t *st, const char *value)
{
    config_t *cfg = st->cfg;
    free_list(cfg->listen, cfg->nlisten);
    free(cfg->listen_mode);
    cfg->listen = NULL;
    cfg->listen_mode = NULL;
    cfg->nlisten = 0;
    char **words = NULL;
    size_t nwords = 0;
    split_list(value, &words, &nwords);
    int rc = 0;
    for (size_t i = 0; i < nwords; i++) {
        bool ssl = !strcmp(words[i], "ssl"), redirect = !strcmp(words[i], "redirect");
        if (ssl || redirect) {
            if (cfg->nlisten == 0 || cfg->listen_mode[cfg->nlisten - 1] != LISTEN_PLAIN) {
                config_error(st->errs, st->file, st->line,
                             "listen: \"%s\" must follow the address it is about, once", words[i]);
                rc = -1;
                continue;
            }
            cfg->listen_mode[cfg->nlisten - 1] = ssl ? LISTEN_SSL : LISTEN_REDIRECT;
            continue;
        }
        cfg->listen = xrealloc(cfg->listen, (cfg->nlisten + 1) * sizeof(char *));
        cfg->listen_mode = xrealloc(cfg->listen_mode, cfg->nlisten + 1);
        cfg->listen[cfg->nlisten] = xstrdup(words[i]);
        cfg->listen_mode[cfg->nlisten++] = LISTEN_PLAIN;
    }
    free_list(words, nwords);
    if (cfg->nlisten == 0 && rc == 0) {
        config_error(st->errs, st->file, st->line, "listen: needs at least one address");
        rc = -1;
    }
    return rc;
}

static int set_host_value(parse_state_t *st, const key_spec_t *spec, const char *value)
{
    char *base = (char *)st->cfg;
    void *field = base + spec->offset;
    switch (spec->kind) {
    case V_STRING:
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        return 0;
    case V_LIST:
        return parse_listen(st, value);
    case V_WORKERS:
        if (!strcmp(value, "auto")) {
            *(long *)field = 0;
            return 0;
        }
        if (parse_int(value, 1, 1024, (long *)field))
            return config_error(st->errs, st->file, st->line,
                                "workers: expected \"auto\" or a number from 1 to 1024, got \"%s\"",
                                value),
                   -1;
        return 0;
    case V_SIZE:
        if (parse_size(value, (uint64_t *)field))
            return config_error(st->errs, st->file, st->line,
                                "%s: expected a size such as 8192, 8k or 1m, got \"%s\"",
                                spec->key, value),
                   -1;
        return 0;
    case V_DURATION:
        if (parse_duration_ms(value, (uint64_t *)field))
            return config_error(st->errs, st->file, st->line,
                                "%s: expected a duration such as 30s, 500ms or 2m, got \"%s\"",
                                spec->key, value),
                   -1;
        return 0;
    case V_COUNT:
    case V_INDEX: {
        long v, min = spec->kind == V_COUNT ? 1 : 0;
        long max = key_max(spec);
        if (parse_int(value, min, max ? max : 1000000000, &v)) {
            if (max)
                return config_error(st->errs, st->file, st->line,
                                    "%s: expected a whole number from %ld to %ld, got \"%s\"",
                                    spec->key, min, max, value),
                       -1;
            return config_error(st->errs, st->file, st->line, "%s: expected a %s, got \"%s\"",
                                spec->key,
                                min ? "positive whole number" : "whole number from 0", value),
                   -1;
        }
        *(uint64_t *)field = (uint64_t)v;
        return 0;
    }
    case V_LOGLEVEL: {
        int level = log_level_parse(value);
        if (level < 0)
            return config_error(st->errs, st->file, st->line,
                                "log_level: expected error, warn, info or debug, got \"%s\"",
                                value),
                   -1;
        *(int *)field = level;
        return 0;
    }
    }
    return -1;
}

static void plugin_entry_add(parse_state_t *st, const char *key, const char *value)
{
    config_plugin_t *p = st->plugin;
    for (size_t i = 0; i < p->nentries; i++) {
        if (!strcmp(p->entries[i].key, key)) {
            config_error(st->errs, st->file, st->line,
                         "duplicate key \"%s\" in [plugin:%s] (first set at %s:%d)", key,
                         p->name, p->entries[i].file, p->entries[i].line);
            return;
        }
    }
    p->entries = xrealloc(p->entries, (p->nentries + 1) * sizeof(config_entry_t));
    p->entries[p->nentries++] = (config_entry_t){
        .key = xstrdup(key), .value = xstrdup(value), .file = xstrdup(st->file), .line = st->line};
}

static void enter_section(parse_state_t *st, const char *section)
{
    snprintf(st->section, sizeof(st->section), "%s", section);
    st->section_line = st->line;
    st->plugin = NULL;
    if (host_section(section) || !strcmp(section, "ratelimit"))
        return;
    if (!strncmp(section, "tls:", 4)) {
        if (valid_plugin_name(section + 4))
            tls_name_section(&st->cfg->tls, section + 4, st->file, st->line);
        else
            config_error(st->errs, st->file, st->line,
                         "[%s]: a name is 1-64 characters of a-z, 0-9, _ and -", section);
        return;
    }
    if (!strncmp(section, "plugin:", 7)) {
        const char *name = section + 7;
        if (!valid_plugin_name(name)) {
            config_error(st->errs, st->file, st->line,
                         "[%s]: a plugin name is 1-64 characters of a-z, 0-9, _ and -", section);
            return;
        }
        config_t *cfg = st->cfg;
        for (size_t i = 0; i < cfg->nplugins; i++) {
            if (!strcmp(cfg->plugins[i].name, name)) {
                /* A section continued later in the same file is fine, as in any INI. */
                if (!strcmp(cfg->plugins[i].file, st->file)) {
                    st->plugin = &cfg->plugins[i];
                    return;
                }
                config_error(st->errs, st->file, st->line,
                             "[plugin:%s] is already configured at %s:%d; one drop-in per plugin",
                             name, cfg->plugins[i].file, cfg->plugins[i].line);
                return;
            }
        }
        cfg->plugins = xrealloc(cfg->plugins, (cfg->nplugins + 1) * sizeof(config_plugin_t));
        cfg->plugins[cfg->nplugins] =
            (config_plugin_t){.name = xstrdup(name), .file = xstrdup(st->file), .line = st->line};
        st->plugin = &cfg->plugins[cfg->nplugins++];
        return;
    }
    config_error(st->errs, st->file, st->line,
                 "unknown section [%s] (expected [server], [http], [postgres], [redis], [auth], "
                 "[lua], [storage], [events], [tls], [tls:NAME], [ratelimit] or [plugin:NAME])",
                 section);
}

static char *counting_reader(char *str, int num, void *stream)
{
    parse_state_t *st = stream;
    char *line = fgets(str, num, st->fp);
    if (!line)
        return NULL;
    /* inih reads a long line in several calls (it grows its buffer): count a line only
     * when a read starts one. */
    bool starts_line = st->at_line_start;
    size_t len = strlen(line);
    st->at_line_start = len > 0 && line[len - 1] == '\n';
    if (!starts_line)
        return line;
    st->line++;
    /* Debian's inih only calls the handler for key = value lines, but an empty
     * [plugin:NAME] section is how a plugin is enabled: spot section headers here. */
    const char *p = line + strspn(line, " \t");
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (end) {
            char name[sizeof(st->section)];
            snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
            enter_section(st, name);
        }
    }
    return line;
}

static int on_ini_value(void *user, const char *section, const char *key, const char *value)
{
    parse_state_t *st = user;
    if (!*section) {
        config_error(st->errs, st->file, st->line, "\"%s\" is outside any section", key);
        return 1;
    }
    if (st->plugin) {
        plugin_entry_add(st, key, value);
        return 1;
    }
    if (!strncmp(section, "plugin:", 7))
        return 1; /* the section header was already reported */
    if (!strncmp(section, "tls:", 4)) {
        char err[600];
        if (valid_plugin_name(section + 4) &&
            tls_name_set(&st->cfg->tls, section + 4, key, value, err, sizeof(err)))
            config_error(st->errs, st->file, st->line, "%s", err);
        return 1;
    }
    if (!strcmp(section, "ratelimit")) {
        char err[600];
        if (ratelimit_config_set(&st->cfg->ratelimit, key, value, st->file, st->line, err,
                                 sizeof(err)))
            config_error(st->errs, st->file, st->line, "%s", err);
        return 1;
    }
    for (size_t i = 0; i < ARRAY_SIZE(host_keys); i++) {
        const key_spec_t *spec = &host_keys[i];
        if (strcmp(spec->section, section) || strcmp(spec->key, key))
            continue;
        if (spec->main_file_only && !st->main_file) {
            config_error(st->errs, st->file, st->line, "%s may only be set in the main file",
                         key);
            return 1;
        }
        if (st->seen[i].file) {
            config_error(st->errs, st->file, st->line,
                         "duplicate key \"%s\" in [%s] (first set at %s:%d)", key, section,
                         st->seen[i].file, st->seen[i].line);
            return 1;
        }
        st->seen[i] = (seen_key_t){.spec = spec, .file = xstrdup(st->file), .line = st->line};
        set_host_value(st, spec, value);
        return 1;
    }
    if (host_section(section))
        config_error(st->errs, st->file, st->line, "unknown key \"%s\" in [%s]", key, section);
    return 1;
}

static int parse_file(parse_state_t *st, const char *file, bool main_file)
{
    st->fp = fopen(file, "r");
    if (!st->fp) {
        config_error(st->errs, file, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    st->file = file;
    st->main_file = main_file;
    st->line = 0;
    st->at_line_start = true;
    st->section[0] = '\0';
    st->section_line = 0;
    st->plugin = NULL;
    int rc = ini_parse_stream(counting_reader, st, on_ini_value, st);
    fclose(st->fp);
    st->fp = NULL;
    if (rc > 0) {
        config_error(st->errs, file, rc,
                     "syntax error (expected \"[section]\", \"key = value\" or a comment)");
        return -1;
    }
    if (rc < 0) {
        config_error(st->errs, file, 0, "cannot parse (out of memory or unreadable)");
        return -1;
    }
    return 0;
}

static char *resolve_relative(const char *main_path, const char *p)
{
    if (p[0] == '/')
        return xstrdup(p);
    char *copy = xstrdup(main_path);
    char *out = xasprintf("%s/%s", dirname(copy), p);
    free(copy);
    return out;
}

static void check_listen(parse_state_t *st, config_t *cfg)
{
    for (size_t i = 0; i < ARRAY_SIZE(host_keys); i++) {
        if (host_keys[i].offset != CFG(listen) || !st->seen[i].file)
            continue;
        for (size_t j = 0; j < cfg->nlisten; j++) {
            const char *colon = strrchr(cfg->listen[j], ':');
            long port;
            const char *port_s = colon ? colon + 1 : cfg->listen[j];
            if (parse_int(port_s, 1, 65535, &port))
                config_error(st->errs, st->seen[i].file, st->seen[i].line,
                             "listen: \"%s\" is not ADDRESS:PORT, [IPv6]:PORT or PORT",
                             cfg->listen[j]);
        }
    }
}

static const seen_key_t *seen_of(const parse_state_t *st, size_t offset)
{
    for (size_t i = 0; i < ARRAY_SIZE(host_keys); i++)
        if (host_keys[i].offset == offset && st->seen[i].file)
            return &st->seen[i];
    return NULL;
}

/* A secret given either in the file (`value`) or, so that the main config can stay
 * world-readable, in a file of its own (`*_file`, read now, trailing newline dropped).
 * Returns where it was set (NULL: nowhere, or an error was reported). */
static const seen_key_t *secret_or_file(parse_state_t *st, size_t value_off, size_t file_off,
                                        char **value, const char *file_path, const char *name)
{
    const seen_key_t *inline_key = seen_of(st, value_off);
    const seen_key_t *file = seen_of(st, file_off);
    if (inline_key && file) {
        config_error(st->errs, file->file, file->line,
                     "%s_file and %s (at %s:%d) are both set; keep one", name, name,
                     inline_key->file, inline_key->line);
        return NULL;
    }
    if (!file)
        return inline_key;
    FILE *fp = fopen(file_path, "r");
    if (!fp) {
        config_error(st->errs, file->file, file->line, "%s_file %s: %s", name, file_path,
                     strerror(errno));
        return NULL;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    free(*value);
    *value = xstrdup(buf);
    return file;
}

/* HS256 needs a key at least as long as its hash (RFC 7518 3.2): a shorter secret is
 * refused at start rather than quietly weakening every token. */
static void check_auth(parse_state_t *st, config_t *cfg)
{
    const seen_key_t *secret =
        secret_or_file(st, AUTH(token_secret), AUTH(token_secret_file), &cfg->auth.token_secret,
                       cfg->auth.token_secret_file, "token_secret");
    if (secret && strlen(cfg->auth.token_secret) < 32)
        config_error(st->errs, secret->file, secret->line,
                     "the token secret is %zu bytes; HS256 needs at least 32 (generate one with "
                     "\"openssl rand -base64 48\")",
                     strlen(cfg->auth.token_secret));
}

/* AUTH username password needs both; a username alone would be silently ignored. */
static void check_redis(parse_state_t *st, config_t *cfg)
{
    secret_or_file(st, REDIS(password), REDIS(password_file), &cfg->redis.password,
                   cfg->redis.password_file, "password");
    const seen_key_t *user = seen_of(st, REDIS(username));
    if (user && !cfg->redis.password)
        config_error(st->errs, user->file, user->line,
                     "username needs a password as well (Redis's AUTH username password)");
}

/* The blob store's place: relative paths are taken from the config file's folder, like
 * [lua] dir; the postgres backend needs a database to put the blobs in. */
static void check_storage(parse_state_t *st, config_t *cfg, const char *path)
{
    storage_settings_t *s = &cfg->storage;
    const seen_key_t *backend = seen_of(st, STORAGE(backend));
    if (strcmp(s->backend, "dir") && strcmp(s->backend, "postgres"))
        config_error(st->errs, backend ? backend->file : path, backend ? backend->line : 0,
                     "[storage] backend is \"dir\" or \"postgres\", not \"%s\"", s->backend);
    else if (!strcmp(s->backend, "postgres") && (!cfg->pg.conninfo || !*cfg->pg.conninfo))
        config_error(st->errs, backend ? backend->file : path, backend ? backend->line : 0,
                     "[storage] backend = postgres needs [postgres] conninfo");
    char *dir = resolve_relative(path, s->dir && *s->dir ? s->dir : PX_DEFAULT_STATE_DIR "/blobs");
    free(s->dir);
    s->dir = dir;
    char *spool = s->spool_dir && *s->spool_dir ? resolve_relative(path, s->spool_dir)
                                                : xasprintf("%s/.spool", s->dir);
    free(s->spool_dir);
    s->spool_dir = spool;
}

static char *tls_path(const char *main_path, char **p)
{
    if (*p && **p) {
        char *abs = resolve_relative(main_path, *p);
        free(*p);
        *p = abs;
    }
    return *p && **p ? *p : NULL;
}

/* An `ssl` listener needs [tls]'s certificate and key; both are read and checked now (the
 * key matches the certificate, the chain parses, the cipher list is one OpenSSL knows), so
 * that a bad certificate fails `-t`, a start or a reload with the file's name and the
 * running workers keep the old one. */
static void check_tls(parse_state_t *st, config_t *cfg)
{
    bool ssl = false, redirect = false;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        ssl |= cfg->listen_mode[i] == LISTEN_SSL;
        redirect |= cfg->listen_mode[i] == LISTEN_REDIRECT;
    }
    const seen_key_t *where = seen_of(st, CFG(listen));
    const char *file = where ? where->file : cfg->path;
    int line = where ? where->line : 0;
    if (redirect && !ssl)
        config_error(st->errs, file, line,
                     "listen: a redirect listener sends clients to an ssl one, and there is none");
    tls_settings_t *t = &cfg->tls;
    tls_path(cfg->path, &t->certificate);
    tls_path(cfg->path, &t->key);
    tls_path(cfg->path, &t->ticket_key_file);
    tls_path(cfg->path, &t->ocsp_response);
    for (size_t i = 0; i < t->nnames; i++) {
        tls_path(cfg->path, &t->names[i].certificate);
        tls_path(cfg->path, &t->names[i].key);
    }
    char err[600];
    if (tls_names_check(t, err, sizeof(err))) {
        config_error(st->errs, file, line, "%s", err);
        return;
    }
    if (!ssl)
        return;
    if (!t->certificate || !t->key) {
        config_error(st->errs, file, line,
                     "listen: an ssl listener needs [tls] certificate and key");
        return;
    }
    if (tls_settings_load(t, err, sizeof(err))) {
        const seen_key_t *cert = seen_of(st, TLS(certificate));
        config_error(st->errs, cert ? cert->file : file, cert ? cert->line : line, "[tls]: %s",
                     err);
    }
}

config_t *config_load(const char *path, config_errors_t *errs)
{
    config_t *cfg = config_new_defaults();
    cfg->path = xstrdup(path);
    parse_state_t st = {.cfg = cfg, .errs = errs};
    size_t errors_before = errs->n;

    /* Debian's inih exposes its options as globals; one value per line keeps our line
     * count exact. */
    ini_allow_multiline = false;
    /* Long values (a plugin_path of several directories) must not be cut at inih's
     * default 200 bytes: a heap line buffer that grows up to CONFIG_MAX_LINE. */
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = CONFIG_MAX_LINE;

    if (parse_file(&st, path, true) == 0) {
        bool explicit_dir = cfg->conf_dir != NULL;
        char *dir = resolve_relative(path, cfg->conf_dir ? cfg->conf_dir : "conf.d");
        free(cfg->conf_dir);
        cfg->conf_dir = dir;
        struct stat sb;
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            char *pattern = xasprintf("%s/*.conf", dir);
            glob_t g;
            int grc = glob(pattern, 0, NULL, &g);
            if (grc == 0) {
                for (size_t i = 0; i < g.gl_pathc; i++)
                    parse_file(&st, g.gl_pathv[i], false);
            } else if (grc != GLOB_NOMATCH) {
                config_error(errs, dir, 0, "cannot list drop-ins");
            }
            globfree(&g);
            free(pattern);
        } else if (explicit_dir) {
            config_error(errs, path, 0, "conf_dir \"%s\" is not a directory", dir);
        }
    }
    if (cfg->nlisten == 0) {
        split_list("127.0.0.1:8080", &cfg->listen, &cfg->nlisten);
        cfg->listen_mode = xcalloc(1, 1);
    }
    check_listen(&st, cfg);
    check_tls(&st, cfg);
    check_auth(&st, cfg);
    check_redis(&st, cfg);
    check_storage(&st, cfg, path);
    if (cfg->lua.dir && *cfg->lua.dir) {
        char *dir = resolve_relative(path, cfg->lua.dir);
        free(cfg->lua.dir);
        cfg->lua.dir = dir;
    }
    for (size_t i = 0; i < ARRAY_SIZE(host_keys); i++)
        free(st.seen[i].file);
    if (errs->n > errors_before) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

const config_plugin_t *config_plugin_find(const config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (!strcmp(cfg->plugins[i].name, name))
            return &cfg->plugins[i];
    return NULL;
}

const config_entry_t *config_plugin_entry(const config_plugin_t *p, const char *key)
{
    for (size_t i = 0; p && i < p->nentries; i++)
        if (!strcmp(p->entries[i].key, key))
            return &p->entries[i];
    return NULL;
}

long config_workers_effective(const config_t *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}
