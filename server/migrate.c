/*
 * migrate.c — each plugin owns its schema; the master makes sure it is in place before
 * any worker serves.
 *
 * The master never loads plugin code (a plugin must not be able to crash it), so it forks
 * a short-lived migrator: the child loads the plugins exactly as a worker would, which
 * runs their init and so collects their px_migrations() lists, connects to PostgreSQL
 * with plain blocking libpq (this process has no event loop to stall) and applies what is
 * missing. The master waits for it.
 *
 * Several hosts may start at once against one database: the whole run holds a session
 * advisory lock, so the second host waits, then finds every migration recorded in
 * panthera_migrations and applies nothing. Each migration runs in its own transaction
 * together with the row that records it, so a failure leaves nothing half-applied and
 * nothing recorded; start-up then stops with the plugin, the migration and PostgreSQL's
 * own message.
 */
#include "migrate.h"

#include <errno.h>
#include <libpq-fe.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "revocation.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

#define MIGRATE_CONNECT_WAIT_S 30

/* EX_CONFIG, as a worker whose plugins fail: the master tells it from a failed migration. */
#define MIGRATOR_EXIT_PLUGINS 78

/* "panthera" in ASCII: the advisory lock every Panthera host takes to migrate. */
#define MIGRATION_LOCK_KEY "8097880389138280289"

/* The host's own schema, recorded under the plugin name "host". */
static const px_migration_t host_migrations[] = {
    {"001_idempotency",
     "CREATE TABLE panthera_idempotency ("
     " scope text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,"
     " status int NOT NULL, headers text NOT NULL DEFAULT '', body text NOT NULL,"
     " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, key))"},
    {"002_events", events_schema_sql},
    {"003_events_prune_by_id", events_schema_prune_by_id_sql},
    {"004_events_deliveries", events_schema_deliveries_sql},
    {"005_token_revocations", revocation_schema_sql},
    {"006_events_frontier_by_id", events_schema_frontier_by_id_sql},
    {NULL, NULL},
};

static bool any_migrations(const plugin_set_t *set)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->items[i]->migrations && set->items[i]->migrations[0].name)
            return true;
    return false;
}

static void checksum(const char *sql, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)sql, strlen(sql), digest);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

/* One statement whose failure we only report. Returns 0 or -1. */
static int exec_ok(PGconn *pg, const char *sql, const char *what)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        log_error("migrations: %s failed: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

static int apply_one(PGconn *pg, const char *plugin, const px_migration_t *m)
{
    char sum[65];
    checksum(m->sql, sum);
    const char *params[] = {plugin, m->name};
    PGresult *res = PQexecParams(pg,
                                 "SELECT checksum FROM panthera_migrations "
                                 "WHERE plugin = $1 AND name = $2",
                                 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_error("migrations: cannot read panthera_migrations: %s", PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    if (PQntuples(res) == 1) {
        if (strcmp(PQgetvalue(res, 0, 0), sum) != 0)
            log_warn("plugin \"%s\": migration %s changed since it was applied; applied "
                     "migrations are never re-run: add a new one instead",
                     plugin, m->name);
        PQclear(res);
        return 0;
    }
    PQclear(res);

    if (exec_ok(pg, "BEGIN", "BEGIN"))
        return -1;
    res = PQexec(pg, m->sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        /* PostgreSQL's message already names the line and the problem. */
        char *msg = xstrdup(PQresultErrorMessage(res));
        size_t n = strlen(msg);
        while (n > 0 && msg[n - 1] == '\n')
            msg[--n] = '\0';
        for (char *nl = strchr(msg, '\n'); nl; nl = strchr(nl, '\n'))
            *nl = ' '; /* one log line */
        log_error("plugin \"%s\": migration %s failed and was rolled back: %s", plugin, m->name,
                  msg);
        free(msg);
        PQclear(res);
        exec_ok(pg, "ROLLBACK", "ROLLBACK");
        return -1;
    }
    PQclear(res);
    const char *rec[] = {plugin, m->name, sum};
    res = PQexecParams(pg, "INSERT INTO panthera_migrations (plugin, name, checksum) "
                           "VALUES ($1, $2, $3)",
                       3, NULL, rec, NULL, NULL, 0);
    bool recorded = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!recorded)
        log_error("plugin \"%s\": cannot record migration %s: %s", plugin, m->name,
                  PQresultErrorMessage(res));
    PQclear(res);
    if (!recorded) {
        exec_ok(pg, "ROLLBACK", "ROLLBACK");
        return -1;
    }
    if (exec_ok(pg, "COMMIT", "COMMIT"))
        return -1;
    log_info("plugin \"%s\": applied migration %s", plugin, m->name);
    return 0;
}

/* "relation already exists, skipping" and friends are not worth a line on stderr. */
static void quiet_notice(void *arg, const char *message)
{
    UNUSED(arg);
    log_debug("postgres: %s", message);
}

int migrate_apply(const config_t *cfg, const plugin_set_t *set)
{
    bool have_pg = cfg->pg.conninfo && *cfg->pg.conninfo;
    if (!have_pg && !any_migrations(set))
        return 0;
    if (!have_pg) {
        for (size_t i = 0; i < set->n; i++)
            if (set->items[i]->migrations && set->items[i]->migrations[0].name)
                log_error("plugin \"%s\" has migrations but [postgres] conninfo is not set",
                          set->items[i]->name);
        return -1;
    }
    /* A database that is still starting (hosts and PostgreSQL booting together) is
     * waited for, a while; one that stays away fails the start loudly. */
    PGconn *pg = NULL;
    for (int attempt = 0;; attempt++) {
        pg = PQconnectdb(cfg->pg.conninfo);
        if (PQstatus(pg) == CONNECTION_OK)
            break;
        if (attempt == 0)
            log_warn("migrations: cannot connect to PostgreSQL yet, retrying for %d s: %s",
                     MIGRATE_CONNECT_WAIT_S, PQerrorMessage(pg));
        if (attempt >= MIGRATE_CONNECT_WAIT_S * 2) {
            log_error("migrations: cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
            PQfinish(pg);
            return -1;
        }
        PQfinish(pg);
        usleep(500 * 1000);
    }
    PQsetNoticeProcessor(pg, quiet_notice, NULL);
    int rc = -1;
    /* Waiting behind another host's migrations is expected; forever is not. */
    if (exec_ok(pg, "SET lock_timeout = '120s'", "SET lock_timeout") ||
        exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", "taking the migration lock"))
        goto done;
    if (exec_ok(pg,
                "CREATE TABLE IF NOT EXISTS panthera_migrations ("
                " plugin text NOT NULL, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (plugin, name))",
                "creating panthera_migrations"))
        goto unlock;
    rc = 0;
    for (const px_migration_t *m = host_migrations; m->name && rc == 0; m++)
        rc = apply_one(pg, "host", m);
    /* Answers older than their 24 h promise are dead weight. */
    if (rc == 0)
        exec_ok(pg, "DELETE FROM panthera_idempotency WHERE created_at < now() - interval '24 hours'",
                "expiring idempotency keys");
    for (size_t i = 0; i < set->n && rc == 0; i++) {
        const struct px_plugin *p = set->items[i];
        for (const px_migration_t *m = p->migrations; m && m->name && rc == 0; m++)
            rc = apply_one(pg, p->name, m);
    }
    if (rc == 0)
        rc = events_register_groups(pg, set);
unlock:
    exec_ok(pg, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")", "releasing the lock");
done:
    PQfinish(pg);
    return rc;
}

static int migrator_main(const config_t *cfg)
{
    log_set_role("migrate");
    plugin_set_t plugins;
    plugin_set_init(&plugins);
    worker_host_routes(&plugins);
    config_errors_t errs = {0};
    int rc = plugin_set_load(&plugins, cfg, &errs);
    if (rc) {
        config_errors_print(&errs);
        config_errors_free(&errs);
        plugin_set_unload(&plugins);
        return MIGRATOR_EXIT_PLUGINS;
    }
    rc = migrate_apply(cfg, &plugins);
    plugin_set_unload(&plugins);
    return rc ? 1 : 0;
}

int migrate_run(const config_t *cfg)
{
    /* Without a database there is nothing to migrate: a plugin that has migrations then
     * refuses to load (api.c), in the workers and in -t alike. */
    if (!cfg->pg.conninfo || !*cfg->pg.conninfo)
        return 0;
    pid_t pid = fork();
    if (pid < 0) {
        log_errno(LOG_ERROR, "fork (migrations)");
        return -1;
    }
    if (pid == 0) {
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        exit(migrator_main(cfg));
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            log_errno(LOG_ERROR, "waitpid (migrations)");
            return -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == MIGRATOR_EXIT_PLUGINS)
        return MIGRATE_EPLUGINS;
    if (WIFSIGNALED(status))
        log_error("the migrator was killed by signal %d", WTERMSIG(status));
    return -1;
}
