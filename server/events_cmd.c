/* events_cmd.c — `pantherad events:list` and `events:replay`: the operator's view of the
 * consumer groups and their dead letters, with plain blocking libpq (a command process
 * has no event loop). */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "util.h"

static int usage(void)
{
    fprintf(stderr, "usage: pantherad events:list [GROUP]\n"
                    "       pantherad events:replay GROUP EVENT_ID|all\n");
    return 2;
}

static PGresult *run(PGconn *pg, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "pantherad: %s", PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }
    return res;
}

static int list(PGconn *pg, const char *group)
{
    const char *params[] = {group};
    PGresult *res = run(pg,
                        "SELECT g.group_name, g.plugin, g.pattern,"
                        " count(*) FILTER (WHERE d.state = 'pending'),"
                        " count(*) FILTER (WHERE d.state = 'dead')"
                        " FROM panthera_event_groups g LEFT JOIN panthera_event_deliveries d"
                        " USING (group_name) WHERE $1::text IS NULL OR g.group_name = $1"
                        " GROUP BY 1, 2, 3 ORDER BY 1",
                        1, params);
    if (!res)
        return 1;
    printf("%-24s %-12s %-20s %8s %8s\n", "GROUP", "PLUGIN", "PATTERN", "PENDING", "DEAD");
    for (int i = 0; i < PQntuples(res); i++)
        printf("%-24s %-12s %-20s %8s %8s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
               PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
    PQclear(res);
    res = run(pg,
              "SELECT d.group_name, d.event_id, e.type, e.aggregate_id, d.attempts,"
              " coalesce(d.last_error, '') FROM panthera_event_deliveries d"
              " JOIN panthera_events e ON e.id = d.event_id WHERE d.state = 'dead'"
              " AND ($1::text IS NULL OR d.group_name = $1) ORDER BY 1, 2",
              1, params);
    if (!res)
        return 1;
    printf("\ndead letters:\n");
    if (!PQntuples(res))
        printf("  (none)\n");
    for (int i = 0; i < PQntuples(res); i++)
        printf("  %s %s %s %s attempts=%s error=%s\n", PQgetvalue(res, i, 0),
               PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
               PQgetvalue(res, i, 4), PQgetvalue(res, i, 5));
    PQclear(res);
    return 0;
}

static int replay(PGconn *pg, const char *group, const char *which)
{
    bool all = !strcmp(which, "all");
    char *end = NULL;
    if (!all && (strtoll(which, &end, 10) <= 0 || *end))
        return usage();
    const char *params[] = {group, all ? NULL : which};
    PGresult *res = run(pg,
                        "UPDATE panthera_event_deliveries SET state = 'pending', attempts = 0,"
                        " next_at = now(), last_error = NULL WHERE group_name = $1"
                        " AND state = 'dead' AND ($2::bigint IS NULL OR event_id = $2)",
                        2, params);
    if (!res)
        return 1;
    printf("%s dead letters of group %s sent again\n", PQcmdTuples(res), group);
    PQclear(res);
    /* Wake the group's consumer now rather than at its next poll. */
    res = run(pg, "SELECT pg_notify('panthera_events', '')", 0, NULL);
    PQclear(res);
    return 0;
}

int events_command(void *conn, const events_settings_t *cfg, int argc, char **argv)
{
    UNUSED(cfg);
    PGconn *pg = conn;
    const char *cmd = argv[0] + strlen("events:");
    if (!strcmp(cmd, "list") && argc <= 2)
        return list(pg, argc == 2 ? argv[1] : NULL);
    if (!strcmp(cmd, "replay") && argc == 3)
        return replay(pg, argv[1], argv[2]);
    return usage();
}
