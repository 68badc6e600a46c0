/*
 * rebuild.c — `pantherad reporting:rebuild`: imports the history the task plugin
 * recorded before this plugin was enabled (its activity rows), so reports cover it too.
 * The work is one statement (reporting_rebuild in 002_reports.sql), so it is one
 * transaction: it either imports everything or nothing, and running it again adds
 * nothing (every imported row names its source).
 */
#include <stdio.h>

#include "reporting.h"

int rebuild_command(px_plugin_t *plugin, int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: pantherad -c FILE reporting:rebuild\n");
        return 2;
    }
    char err[512];
    int rc = px_command_sql(plugin, sql_rebuild, 0, NULL, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "reporting:rebuild failed: %s\n", err);
        return 1;
    }
    printf("reporting: history rebuilt from the task plugin's activity\n");
    return 0;
}
