/* test_config.c — server/config.c: defaults, every host key, drop-ins, and errors that
 * name the file and line they come from. Each test writes its files into a fresh
 * temporary directory: <dir>/pantherad.conf and <dir>/conf.d/NN-name.conf. */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "util.h"

typedef struct fixture {
    char dir[64];
    char *main_path;
    config_errors_t errs;
    config_t *cfg;
} fixture_t;

static void fx_open(fixture_t *f)
{
    memset(f, 0, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/pxconf.XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        perror("mkdtemp");
        exit(2);
    }
    f->main_path = xasprintf("%s/pantherad.conf", f->dir);
}

/* The full path of `rel` inside the fixture, malloc'd. */
static char *fx_path(const fixture_t *f, const char *rel)
{
    return xasprintf("%s/%s", f->dir, rel);
}

/* Write `rel` (creating its directory) with `content`. */
static void fx_write(const fixture_t *f, const char *rel, const char *content)
{
    char *path = fx_path(f, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (mkdir(path, 0700) && errno != EEXIST) {
        perror(path);
        exit(2);
    }
    *slash = '/';
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(content, fp) == EOF || fclose(fp)) {
        perror(path);
        exit(2);
    }
    free(path);
}

static config_t *fx_load(fixture_t *f, const char *main_content)
{
    if (main_content)
        fx_write(f, "pantherad.conf", main_content);
    config_free(f->cfg);
    config_errors_free(&f->errs);
    f->cfg = config_load(f->main_path, &f->errs);
    return f->cfg;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fx_close(fixture_t *f)
{
    config_free(f->cfg);
    config_errors_free(&f->errs);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f->main_path);
}

static void dump_errors(const fixture_t *f)
{
    for (size_t i = 0; i < f->errs.n; i++)
        fprintf(stderr, "    error: %s\n", f->errs.items[i]);
}

/* An error reads "<dir>/<rel>:<line>: ...<text>..." (line 0: "<dir>/<rel>: ..."). */
static void check_error(const fixture_t *f, const char *rel, int line, const char *text,
                        int src_line)
{
    char *prefix = line > 0 ? xasprintf("%s/%s:%d: ", f->dir, rel, line)
                            : xasprintf("%s/%s: ", f->dir, rel);
    bool found = false;
    for (size_t i = 0; i < f->errs.n && !found; i++)
        found = !strncmp(f->errs.items[i], prefix, strlen(prefix)) &&
                strstr(f->errs.items[i] + strlen(prefix), text);
    if (!check_report(found, __FILE__, src_line)) {
        fprintf(stderr, "no error \"%s...%s\" among %zu:\n", prefix, text, f->errs.n);
        dump_errors(f);
    }
    free(prefix);
}

#define CHECK_ERROR(f, rel, line, text) check_error((f), (rel), (line), (text), __LINE__)

#define CHECK_LOADED(f, cfg)                                                                 \
    do {                                                                                     \
        CHECK((cfg) != NULL);                                                                \
        if (!(cfg))                                                                          \
            dump_errors(f);                                                                  \
        CHECK_EQ_INT((f)->errs.n, 0);                                                        \
    } while (0)

/* ---- defaults and values ---- */

static void test_defaults(void)
{
    config_t *d = config_new_defaults();
    CHECK_EQ_INT(d->workers, 0);
    CHECK_EQ_INT(d->nlisten, 0);
    CHECK_EQ_INT(d->log_level, LOG_INFO);
    CHECK_STR(d->plugin_path, PX_DEFAULT_PLUGIN_PATH);
    CHECK_EQ_U64(d->shutdown_timeout_ms, 10000);
    CHECK_EQ_U64(d->http.max_header_size, 8192);
    CHECK_EQ_U64(d->http.max_headers, 100);
    CHECK_EQ_U64(d->http.max_body_size, 1024 * 1024);
    CHECK_EQ_U64(d->http.header_timeout_ms, 60000);
    CHECK_EQ_U64(d->http.body_timeout_ms, 60000);
    CHECK_EQ_U64(d->http.min_body_rate, 1024);
    CHECK_EQ_U64(d->http.keepalive_timeout_ms, 75000);
    CHECK_EQ_U64(d->http.keepalive_requests, 1000);
    CHECK_EQ_U64(d->http.send_timeout_ms, 60000);
    CHECK_EQ_U64(d->http.max_connections, 4096);
    CHECK(config_workers_effective(d) >= 1);
    config_free(d);
    config_free(NULL);

    /* An empty main file gives the same, plus the default listener and conf.d. */
    fixture_t f;
    fx_open(&f);
    config_t *cfg = fx_load(&f, "; nothing here\n");
    CHECK_LOADED(&f, cfg);
    if (cfg) {
        CHECK_STR(cfg->path, f.main_path);
        CHECK_EQ_INT(cfg->nlisten, 1);
        CHECK_STR(cfg->listen[0], "127.0.0.1:8080");
        char *confd = fx_path(&f, "conf.d");
        CHECK_STR(cfg->conf_dir, confd);
        free(confd);
        CHECK_EQ_INT(cfg->workers, 0);
        CHECK_EQ_INT(cfg->nplugins, 0);
        CHECK(cfg->pid_file == NULL);
        CHECK(cfg->access_log == NULL);
        CHECK_EQ_U64(cfg->http.max_body_size, 1024 * 1024);
    }
    fx_close(&f);
}

static void test_every_host_key(void)
{
    fixture_t f;
    fx_open(&f);
    fx_write(&f, "drop/.keep", "");
    config_t *cfg = fx_load(&f, "# every key the host knows\n"
                                "[server]\n"
                                "listen = 127.0.0.1:9000, [::1]:9001\t8080\n"
                                "workers = 4 ; inline comment\n"
                                "plugin_path = /opt/px/plugins:/usr/lib/px\n"
                                "conf_dir = drop\n"
                                "pid_file = /run/pantherad.pid\n"
                                "error_log = /var/log/panthera/error.log\n"
                                "access_log = off\n"
                                "log_level = debug\n"
                                "shutdown_timeout = 2m\n"
                                "\n"
                                "[http]\n"
                                "max_header_size = 8k\n"
                                "max_headers = 50\n"
                                "max_body_size = 2m\n"
                                "header_timeout = 500ms\n"
                                "body_timeout = 30s\n"
                                "min_body_rate = 1k\n"
                                "keepalive_timeout = 1h\n"
                                "keepalive_requests = 10\n"
                                "send_timeout = 45\n"
                                "max_connections = 100\n");
    CHECK_LOADED(&f, cfg);
    if (!cfg) {
        fx_close(&f);
        return;
    }
    CHECK_EQ_INT(cfg->nlisten, 3);
    if (cfg->nlisten == 3) {
        CHECK_STR(cfg->listen[0], "127.0.0.1:9000");
        CHECK_STR(cfg->listen[1], "[::1]:9001");
        CHECK_STR(cfg->listen[2], "8080");
    }
    CHECK_EQ_INT(cfg->workers, 4);
    CHECK_EQ_INT(config_workers_effective(cfg), 4);
    CHECK_STR(cfg->plugin_path, "/opt/px/plugins:/usr/lib/px");
    char *drop = fx_path(&f, "drop");
    CHECK_STR(cfg->conf_dir, drop); /* relative to the main file */
    free(drop);
    CHECK_STR(cfg->pid_file, "/run/pantherad.pid");
    CHECK_STR(cfg->error_log, "/var/log/panthera/error.log");
    CHECK_STR(cfg->access_log, "off");
    CHECK_EQ_INT(cfg->log_level, LOG_DEBUG);
    CHECK_EQ_U64(cfg->shutdown_timeout_ms, 120000);
    CHECK_EQ_U64(cfg->http.max_header_size, 8192);
    CHECK_EQ_U64(cfg->http.max_headers, 50);
    CHECK_EQ_U64(cfg->http.max_body_size, 2 * 1024 * 1024);
    CHECK_EQ_U64(cfg->http.header_timeout_ms, 500);
    CHECK_EQ_U64(cfg->http.body_timeout_ms, 30000);
    CHECK_EQ_U64(cfg->http.min_body_rate, 1024);
    CHECK_EQ_U64(cfg->http.keepalive_timeout_ms, 3600000);
    CHECK_EQ_U64(cfg->http.keepalive_requests, 10);
    CHECK_EQ_U64(cfg->http.send_timeout_ms, 45000);
    CHECK_EQ_U64(cfg->http.max_connections, 100);
    fx_close(&f);

    /* "auto" workers, and an absolute conf_dir. */
    fx_open(&f);
    fx_write(&f, "abs/10-x.conf", "[plugin:x]\n");
    char *main = xasprintf("[server]\nworkers = auto\nconf_dir = %s/abs\n", f.dir);
    cfg = fx_load(&f, main);
    free(main);
    CHECK_LOADED(&f, cfg);
    if (cfg) {
        CHECK_EQ_INT(cfg->workers, 0);
        CHECK(config_plugin_find(cfg, "x") != NULL);
    }
    fx_close(&f);
}

static void test_crlf_and_comments(void)
{
    fixture_t f;
    fx_open(&f);
    config_t *cfg = fx_load(&f, "; a comment\r\n# another\r\n\r\n[http]\r\nmax_headers = 7\r\n");
    CHECK_LOADED(&f, cfg);
    if (cfg)
        CHECK_EQ_U64(cfg->http.max_headers, 7);
    /* Line numbers count comments, blank lines and CRLF lines alike. */
    cfg = fx_load(&f, "; a comment\r\n\r\n[http]\r\n\r\nmax_headers = lots\r\n");
    CHECK(cfg == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 5, "max_headers");
    fx_close(&f);
}

/* ---- errors ---- */

static void test_error_unknown_key(void)
{
    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "[server]\nworkers = 2\nbogus = 1\n[http]\nmax_body = 1k\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 3, "unknown key \"bogus\" in [server]");
    CHECK_ERROR(&f, "pantherad.conf", 5, "unknown key \"max_body\" in [http]");
    CHECK_EQ_INT(f.errs.n, 2);
    /* A host key in the other host section is unknown there. */
    CHECK(fx_load(&f, "[http]\nworkers = 2\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "unknown key \"workers\" in [http]");
    fx_close(&f);
}

static void test_error_unknown_section(void)
{
    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "[server]\nworkers = 2\n\n[nope]\nx = 1\n[Server]\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 4, "unknown section [nope]");
    CHECK_ERROR(&f, "pantherad.conf", 6, "unknown section [Server]");
    /* Reported once per section, not once per key in it. */
    CHECK_EQ_INT(f.errs.n, 2);
    fx_close(&f);
}

static void test_error_duplicate_key(void)
{
    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "[server]\nworkers = 2\n\nworkers = 3\n") == NULL);
    char *first = xasprintf("first set at %s:2", f.main_path);
    CHECK_ERROR(&f, "pantherad.conf", 4, "duplicate key \"workers\"");
    CHECK_ERROR(&f, "pantherad.conf", 4, first);
    CHECK_EQ_INT(f.errs.n, 1);
    free(first);

    /* Across files: the drop-in's line is the error, the main file the first place. */
    fx_write(&f, "conf.d/10-limits.conf", "[http]\nmax_headers = 6\n");
    CHECK(fx_load(&f, "[http]\nmax_headers = 5\n") == NULL);
    first = xasprintf("first set at %s:2", f.main_path);
    CHECK_ERROR(&f, "conf.d/10-limits.conf", 2, first);
    free(first);

    /* Inside a plugin section too. */
    CHECK(fx_load(&f, "[plugin:x]\na = 1\nb = 2\na = 3\n") == NULL);
    first = xasprintf("first set at %s:2", f.main_path);
    CHECK_ERROR(&f, "pantherad.conf", 4, "duplicate key \"a\" in [plugin:x]");
    CHECK_ERROR(&f, "pantherad.conf", 4, first);
    free(first);
    fx_close(&f);
}

static void test_error_bad_values(void)
{
    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "[server]\n"
                      "workers = abc\n"
                      "log_level = loud\n"
                      "shutdown_timeout = -5s\n"
                      "[http]\n"
                      "max_body_size = 1x\n"
                      "header_timeout = fast\n"
                      "max_headers = 0\n"
                      "keepalive_requests = 1.5\n"
                      "min_body_rate = 1 k\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "workers: expected \"auto\" or a number");
    CHECK_ERROR(&f, "pantherad.conf", 2, "\"abc\"");
    CHECK_ERROR(&f, "pantherad.conf", 3, "log_level");
    CHECK_ERROR(&f, "pantherad.conf", 4, "shutdown_timeout");
    CHECK_ERROR(&f, "pantherad.conf", 6, "max_body_size: expected a size");
    CHECK_ERROR(&f, "pantherad.conf", 6, "\"1x\"");
    CHECK_ERROR(&f, "pantherad.conf", 7, "header_timeout: expected a duration");
    CHECK_ERROR(&f, "pantherad.conf", 7, "\"fast\"");
    CHECK_ERROR(&f, "pantherad.conf", 8, "max_headers");
    CHECK_ERROR(&f, "pantherad.conf", 9, "keepalive_requests");
    CHECK_ERROR(&f, "pantherad.conf", 10, "min_body_rate");
    CHECK_EQ_INT(f.errs.n, 8);

    CHECK(fx_load(&f, "[server]\nworkers = 0\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "workers");
    CHECK(fx_load(&f, "[server]\nworkers = 1025\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "workers");
    fx_close(&f);
}

/* [events]: defaults, every key, and a bad value named with its file:line. */
static void test_events_section(void)
{
    fixture_t f;
    fx_open(&f);
    config_t *cfg = fx_load(&f, "[server]\n");
    CHECK_LOADED(&f, cfg);
    CHECK_EQ_INT(cfg->events.max_attempts, 5);
    CHECK_EQ_INT(cfg->events.retention_ms, 7ull * 24 * 3600 * 1000);
    CHECK_EQ_INT(cfg->events.poll_interval_ms, 1000);
    CHECK_EQ_INT(cfg->events.concurrency, 8);
    CHECK_EQ_INT(cfg->events.batch, 32);
    cfg = fx_load(&f, "[events]\nmax_attempts = 3\nretention = 48h\npoll_interval = 250ms\n"
                      "concurrency = 32\nbatch = 64\n");
    CHECK_LOADED(&f, cfg);
    CHECK_EQ_INT(cfg->events.max_attempts, 3);
    CHECK_EQ_INT(cfg->events.retention_ms, 48ull * 3600 * 1000);
    CHECK_EQ_INT(cfg->events.poll_interval_ms, 250);
    CHECK_EQ_INT(cfg->events.concurrency, 32);
    CHECK_EQ_INT(cfg->events.batch, 64);
    cfg = fx_load(&f, "[events]\nbatch = 1\n");
    CHECK_LOADED(&f, cfg);
    CHECK_EQ_INT(cfg->events.batch, 1);
    CHECK(fx_load(&f, "[events]\nmax_attempts = 0\nretention = soon\nbatches = 5\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "max_attempts");
    CHECK_ERROR(&f, "pantherad.conf", 3, "retention: expected a duration");
    CHECK_ERROR(&f, "pantherad.conf", 4, "unknown key \"batches\" in [events]");
    /* batch: 1 to 64 (a subtransaction per handler, see events_deliver.c), whole numbers. */
    static const char *const bad_batch[] = {"0", "65", "8.5", "-1", "lots", "1000000"};
    for (size_t i = 0; i < sizeof(bad_batch) / sizeof(bad_batch[0]); i++) {
        char text[64], want[96];
        snprintf(text, sizeof(text), "[events]\nbatch = %s\n", bad_batch[i]);
        snprintf(want, sizeof(want), "batch: expected a whole number from 1 to 64, got \"%s\"",
                 bad_batch[i]);
        CHECK(fx_load(&f, text) == NULL);
        CHECK_ERROR(&f, "pantherad.conf", 2, want);
    }
    fx_close(&f);
}

static void test_error_outside_section(void)
{
    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "; header comment\nworkers = 2\n[server]\nlisten = 8080\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "\"workers\" is outside any section");
    CHECK_EQ_INT(f.errs.n, 1);
    fx_close(&f);
}

static void test_error_syntax(void)
{
    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "[server]\nworkers = 2\nthis line means nothing\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 3, "syntax error");
    CHECK(fx_load(&f, "[server]\n[http\nmax_headers = 5\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "syntax error");

    /* A syntax error in a drop-in names the drop-in, and the others are still read. */
    fx_write(&f, "conf.d/10-a.conf", "[plugin:a]\nkey value\n");
    fx_write(&f, "conf.d/20-b.conf", "[server]\nbogus = 1\n");
    CHECK(fx_load(&f, "[server]\nworkers = 1\n") == NULL);
    CHECK_ERROR(&f, "conf.d/10-a.conf", 2, "syntax error");
    CHECK_ERROR(&f, "conf.d/20-b.conf", 2, "unknown key \"bogus\"");
    CHECK_EQ_INT(f.errs.n, 2);
    fx_close(&f);
}

static void test_error_conf_dir_in_dropin(void)
{
    fixture_t f;
    fx_open(&f);
    fx_write(&f, "extra/10-a.conf", "[server]\n\nconf_dir = elsewhere\n");
    CHECK(fx_load(&f, "[server]\nconf_dir = extra\n") == NULL);
    CHECK_ERROR(&f, "extra/10-a.conf", 3, "conf_dir may only be set in the main file");
    CHECK_EQ_INT(f.errs.n, 1);

    /* A conf_dir that is not there is an error when set explicitly... */
    CHECK(fx_load(&f, "[server]\nconf_dir = missing\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 0, "is not a directory");
    /* ...and fine when it is the default conf.d. */
    CHECK(fx_load(&f, "[server]\nworkers = 1\n") != NULL);
    fx_close(&f);
}

static void test_error_plugin_in_two_dropins(void)
{
    fixture_t f;
    fx_open(&f);
    fx_write(&f, "conf.d/10-a.conf", "[plugin:x]\nkey = 1\n");
    fx_write(&f, "conf.d/20-b.conf", "; takes x over\n[plugin:x]\nkey = 2\n");
    CHECK(fx_load(&f, "[server]\nworkers = 1\n") == NULL);
    char *where = xasprintf("already configured at %s/conf.d/10-a.conf:1", f.dir);
    CHECK_ERROR(&f, "conf.d/20-b.conf", 2, "[plugin:x]");
    CHECK_ERROR(&f, "conf.d/20-b.conf", 2, where);
    free(where);
    /* The rejected section's keys are not reported again, nor mixed into the first. */
    CHECK_EQ_INT(f.errs.n, 1);

    /* The main file and a drop-in clash the same way. */
    CHECK(fx_load(&f, "[plugin:x]\n") == NULL);
    CHECK_ERROR(&f, "conf.d/10-a.conf", 1, "already configured");
    fx_close(&f);

    /* A section continued later in the same file is one section. */
    fx_open(&f);
    config_t *cfg = fx_load(&f, "[plugin:y]\na = 1\n[server]\nworkers = 1\n[plugin:y]\nb = 2\n");
    CHECK_LOADED(&f, cfg);
    if (cfg) {
        const config_plugin_t *p = config_plugin_find(cfg, "y");
        CHECK(p != NULL);
        CHECK_EQ_INT(cfg->nplugins, 1);
        if (p) {
            CHECK_EQ_INT(p->nentries, 2);
            CHECK_EQ_INT(p->line, 1);
        }
    }
    fx_close(&f);
}

static void test_error_plugin_names(void)
{
    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "[plugin:Hello]\n[plugin:]\n[plugin:a/b]\nkey = 1\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 1, "plugin name");
    CHECK_ERROR(&f, "pantherad.conf", 2, "plugin name");
    CHECK_ERROR(&f, "pantherad.conf", 3, "plugin name");
    CHECK_EQ_INT(f.errs.n, 3);
    fx_close(&f);
}

static void test_several_errors_reported(void)
{
    fixture_t f;
    fx_open(&f);
    fx_write(&f, "conf.d/10-a.conf", "[http]\nmax_headers = many\n");
    fx_write(&f, "conf.d/20-b.conf", "[bogus]\n");
    CHECK(fx_load(&f, "[server]\nworkers = abc\nlisten = nowhere\n[http]\nwhat = 1\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "workers");
    CHECK_ERROR(&f, "pantherad.conf", 3, "listen");
    CHECK_ERROR(&f, "pantherad.conf", 5, "unknown key \"what\"");
    CHECK_ERROR(&f, "conf.d/10-a.conf", 2, "max_headers");
    CHECK_ERROR(&f, "conf.d/20-b.conf", 1, "unknown section [bogus]");
    CHECK_EQ_INT(f.errs.n, 5);
    fx_close(&f);
}

/* ---- drop-ins and plugins ---- */

static void test_dropin_order(void)
{
    fixture_t f;
    fx_open(&f);
    /* Written in the reverse order, so directory order cannot pass for lexical order. */
    fx_write(&f, "conf.d/20-b.conf", "[plugin:beta]\n[http]\nmax_headers = 6\n");
    fx_write(&f, "conf.d/10-a.conf", "[plugin:alpha]\n[http]\nmax_headers = 5\n");
    fx_write(&f, "conf.d/README", "not a drop-in: [[[ garbage\n");
    fx_write(&f, "conf.d/30-c.conf.disabled", "[plugin:gamma]\n");
    CHECK(fx_load(&f, "[server]\nworkers = 1\n") == NULL);
    /* 10-a was read first: its value is the first one, 20-b's the duplicate. */
    char *first = xasprintf("first set at %s/conf.d/10-a.conf:3", f.dir);
    CHECK_ERROR(&f, "conf.d/20-b.conf", 3, first);
    free(first);
    CHECK_EQ_INT(f.errs.n, 1);

    fx_write(&f, "conf.d/20-b.conf", "[plugin:beta]\n");
    config_t *cfg = fx_load(&f, NULL);
    CHECK_LOADED(&f, cfg);
    if (cfg) {
        CHECK_EQ_INT(cfg->nplugins, 2);
        if (cfg->nplugins == 2) {
            CHECK_STR(cfg->plugins[0].name, "alpha");
            CHECK_STR(cfg->plugins[1].name, "beta");
        }
        CHECK(config_plugin_find(cfg, "gamma") == NULL);
        CHECK_EQ_U64(cfg->http.max_headers, 5);
    }
    fx_close(&f);
}

static void test_empty_plugin_section_enables(void)
{
    fixture_t f;
    fx_open(&f);
    fx_write(&f, "conf.d/50-world.conf", "# enable world\n\n[plugin:world]\n");
    config_t *cfg = fx_load(&f, "[server]\nworkers = 1\n[plugin:hello]\n");
    CHECK_LOADED(&f, cfg);
    if (cfg) {
        CHECK_EQ_INT(cfg->nplugins, 2);
        const config_plugin_t *p = config_plugin_find(cfg, "hello");
        CHECK(p != NULL);
        if (p) {
            CHECK_EQ_INT(p->nentries, 0);
            CHECK_STR(p->file, f.main_path);
            CHECK_EQ_INT(p->line, 3);
            CHECK(config_plugin_entry(p, "load") == NULL);
        }
        p = config_plugin_find(cfg, "world");
        CHECK(p != NULL);
        if (p) {
            char *path = fx_path(&f, "conf.d/50-world.conf");
            CHECK_STR(p->file, path);
            free(path);
            CHECK_EQ_INT(p->line, 3);
        }
        CHECK(config_plugin_find(cfg, "hell") == NULL);
        CHECK(config_plugin_entry(NULL, "load") == NULL);
    }
    fx_close(&f);
}

static void test_plugin_entries_keep_file_line(void)
{
    fixture_t f;
    fx_open(&f);
    fx_write(&f, "conf.d/10-hello.conf",
             "# hello\n[plugin:hello]\ngreeting = hi there\n\nload = /x/hello.so\n");
    config_t *cfg = fx_load(&f, "[server]\nworkers = 1\n");
    CHECK_LOADED(&f, cfg);
    const config_plugin_t *p = cfg ? config_plugin_find(cfg, "hello") : NULL;
    CHECK(p != NULL);
    if (p) {
        char *path = fx_path(&f, "conf.d/10-hello.conf");
        CHECK_EQ_INT(p->line, 2);
        CHECK_STR(p->file, path);
        CHECK_EQ_INT(p->nentries, 2);
        const config_entry_t *e = config_plugin_entry(p, "greeting");
        CHECK(e != NULL);
        if (e) {
            CHECK_STR(e->value, "hi there");
            CHECK_STR(e->file, path);
            CHECK_EQ_INT(e->line, 3);
        }
        e = config_plugin_entry(p, "load");
        CHECK(e != NULL);
        if (e) {
            CHECK_STR(e->value, "/x/hello.so");
            CHECK_EQ_INT(e->line, 5);
        }
        CHECK(config_plugin_entry(p, "missing") == NULL);
        free(path);
    }
    fx_close(&f);
}

static void test_listen_errors(void)
{
    static const char *bad[] = {"localhost",     "127.0.0.1:99999", "127.0.0.1:",
                                "0",             "127.0.0.1:0",     "[::1]",
                                "127.0.0.1:http", "8080 example.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fixture_t f;
        fx_open(&f);
        char *main = xasprintf("[server]\nworkers = 1\nlisten = %s\n", bad[i]);
        config_t *cfg = fx_load(&f, main);
        if (cfg)
            fprintf(stderr, "listen = %s was accepted\n", bad[i]);
        CHECK(cfg == NULL);
        CHECK_ERROR(&f, "pantherad.conf", 3, "listen:");
        CHECK_EQ_INT(f.errs.n, 1);
        free(main);
        fx_close(&f);
    }

    fixture_t f;
    fx_open(&f);
    CHECK(fx_load(&f, "[server]\nlisten = localhost\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "\"localhost\" is not ADDRESS:PORT");
    CHECK(fx_load(&f, "[server]\nlisten = , ,\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "needs at least one address");
    /* A listen set in a drop-in is reported there. */
    fx_write(&f, "conf.d/10-net.conf", "[server]\n\nlisten = 1.2.3.4:70000\n");
    CHECK(fx_load(&f, "[server]\nworkers = 1\n") == NULL);
    CHECK_ERROR(&f, "conf.d/10-net.conf", 3, "\"1.2.3.4:70000\"");
    fx_close(&f);

    fx_open(&f);
    config_t *cfg = fx_load(&f, "[server]\nlisten = 0.0.0.0:1 [2001:db8::1]:65535 :443\n");
    CHECK_LOADED(&f, cfg);
    if (cfg)
        CHECK_EQ_INT(cfg->nlisten, 3);
    fx_close(&f);
}

/* "ssl" and "redirect" follow the address they are about; an ssl listener needs [tls]. */
static void test_listen_modes(void)
{
    fixture_t f;
    fx_open(&f);
    config_t *cfg = fx_load(&f, "[server]\nlisten = 127.0.0.1:80 redirect, 127.0.0.1:81, "
                                "127.0.0.1:80\n");
    CHECK(cfg == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "a redirect listener sends clients to an ssl one");
    fx_close(&f);

    fx_open(&f);
    CHECK(fx_load(&f, "[server]\nlisten = ssl 127.0.0.1:443\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "\"ssl\" must follow the address it is about");
    CHECK(fx_load(&f, "[server]\nlisten = 127.0.0.1:443 ssl ssl\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "\"ssl\" must follow the address it is about");
    CHECK(fx_load(&f, "[server]\nlisten = 127.0.0.1:443 ssl\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "an ssl listener needs [tls] certificate and key");
    /* Relative to the main file, and read at load: a missing file is named. */
    CHECK(fx_load(&f, "[server]\nlisten = 127.0.0.1:443 ssl\n[tls]\ncertificate = c.pem\n"
                      "key = k.pem\n") == NULL);
    char *missing = fx_path(&f, "c.pem");
    CHECK_ERROR(&f, "pantherad.conf", 4, missing);
    free(missing);
    fx_close(&f);

    /* [tls] without an ssl listener is not read, and the modes land where they belong. */
    fx_open(&f);
    cfg = fx_load(&f, "[server]\nlisten = 127.0.0.1:80, [::1]:81 redirect 82 ssl\n"
                      "[tls]\ncertificate = nowhere.pem\nkey = nowhere.key\n");
    CHECK(cfg == NULL); /* there is an ssl listener: the files must exist */
    fx_close(&f);
    fx_open(&f);
    cfg = fx_load(&f, "[server]\nlisten = 127.0.0.1:80, [::1]:81\n"
                      "[tls]\ncertificate = nowhere.pem\nhsts = max-age=60\n"
                      "ticket_rotation = 10m\n");
    CHECK_LOADED(&f, cfg);
    if (cfg) {
        CHECK_EQ_INT(cfg->nlisten, 2);
        CHECK_EQ_INT(cfg->listen_mode[0], LISTEN_PLAIN);
        CHECK_EQ_INT(cfg->listen_mode[1], LISTEN_PLAIN);
        CHECK_STR(cfg->tls.hsts, "max-age=60");
        CHECK_EQ_U64(cfg->tls.ticket_rotation_ms, 600000);
        CHECK(cfg->tls.cert_pem == NULL);
    }
    fx_close(&f);
}

static void test_missing_main_file(void)
{
    config_errors_t errs = {0};
    config_t *cfg = config_load("/nonexistent/panthera/pantherad.conf", &errs);
    CHECK(cfg == NULL);
    CHECK_EQ_INT(errs.n, 1);
    if (errs.n)
        CHECK_CONTAINS(errs.items[0], "/nonexistent/panthera/pantherad.conf: cannot open");
    config_errors_free(&errs);
    CHECK_EQ_INT(errs.n, 0);
}

static void test_long_value(void)
{
    /* A value longer than inih's line buffer: either it is read whole, or the error
     * names the line it is on. Never a truncated value, nor an error on a line that is
     * not there. */
    fixture_t f;
    fx_open(&f);
    char path[400];
    memset(path, 'p', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    char *main = xasprintf("[server]\nplugin_path = %s\n", path);
    config_t *cfg = fx_load(&f, main);
    free(main);
    if (cfg) {
        CHECK_STR(cfg->plugin_path, path);
    } else {
        CHECK_EQ_INT(f.errs.n, 1);
        CHECK_ERROR(&f, "pantherad.conf", 2, "plugin_path");
    }

    /* A long comment is still a comment, and the lines after it keep their numbers. */
    main = xasprintf("[server]\n# %s\nworkers = abc\n", path);
    cfg = fx_load(&f, main);
    free(main);
    CHECK(cfg == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 3, "workers");
    CHECK_EQ_INT(f.errs.n, 1);
    fx_close(&f);
}

static void test_storage(void)
{
    fixture_t f;
    fx_open(&f);
    /* Defaults: a directory under the state dir, its spool inside it, a daily grace. */
    config_t *cfg = fx_load(&f, "[server]\nworkers = 1\n");
    CHECK_LOADED(&f, cfg);
    CHECK_STR(cfg->storage.backend, "dir");
    CHECK_STR(cfg->storage.dir, PX_DEFAULT_STATE_DIR "/blobs");
    CHECK_STR(cfg->storage.spool_dir, PX_DEFAULT_STATE_DIR "/blobs/.spool");
    CHECK_EQ_U64(cfg->storage.sweep_grace_ms, 24ull * 3600 * 1000);
    /* Relative paths are taken from the config file's folder. */
    cfg = fx_load(&f, "[storage]\ndir = files\nspool_dir = tmp\nsweep_grace = 10m\n"
                      "sweep_interval = 0\n");
    CHECK_LOADED(&f, cfg);
    char *dir = fx_path(&f, "files"), *spool = fx_path(&f, "tmp");
    CHECK_STR(cfg->storage.dir, dir);
    CHECK_STR(cfg->storage.spool_dir, spool);
    free(dir);
    free(spool);
    CHECK_EQ_U64(cfg->storage.sweep_grace_ms, 600000);
    CHECK_EQ_U64(cfg->storage.sweep_interval_ms, 0);
    /* postgres needs a database; an unknown backend names the choices. */
    CHECK(fx_load(&f, "[storage]\nbackend = postgres\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "needs [postgres] conninfo");
    CHECK(fx_load(&f, "[storage]\nbackend = s3\n") == NULL);
    CHECK_ERROR(&f, "pantherad.conf", 2, "\"dir\" or \"postgres\", not \"s3\"");
    cfg = fx_load(&f, "[postgres]\nconninfo = dbname=x\n[storage]\nbackend = postgres\n");
    CHECK_LOADED(&f, cfg);
    fx_close(&f);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_every_host_key);
    RUN(test_crlf_and_comments);
    RUN(test_error_unknown_key);
    RUN(test_error_unknown_section);
    RUN(test_error_duplicate_key);
    RUN(test_error_bad_values);
    RUN(test_events_section);
    RUN(test_error_outside_section);
    RUN(test_error_syntax);
    RUN(test_error_conf_dir_in_dropin);
    RUN(test_error_plugin_in_two_dropins);
    RUN(test_error_plugin_names);
    RUN(test_several_errors_reported);
    RUN(test_dropin_order);
    RUN(test_empty_plugin_section_enables);
    RUN(test_plugin_entries_keep_file_line);
    RUN(test_listen_errors);
    RUN(test_listen_modes);
    RUN(test_missing_main_file);
    RUN(test_long_value);
    RUN(test_storage);
    return check_finish();
}
