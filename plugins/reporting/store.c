/*
 * store.c — every SQL statement of the plugin. The reports themselves are functions of
 * the migrations (002_reports.sql), so each request is one round trip.
 */
#include "reporting.h"

/* $1 project, $2 caller is an admin, $3 caller -> (generation, name) when the caller
 * may see the project's reports (a member of any role, or an admin); no row otherwise. */
const char sql_gate_project[] =
    "SELECT generation, name FROM reporting_projects WHERE id = $1::uuid "
    "AND ($2::bool OR members @> jsonb_build_array(jsonb_build_object('userId', $3::text)))";

/* -> (generation, site_id) of the site-wide activity report: its cache key names both. */
const char sql_gate_site[] = "SELECT generation, site_id FROM reporting_meta WHERE id = 1";

/* $1 event id, $2 type, $3 time, $4 payload. */
const char sql_apply[] =
    "SELECT reporting_apply($1::bigint, $2, $3::timestamptz, $4::jsonb)";

const char sql_rebuild[] = "SELECT reporting_rebuild()";

/* $1 project, $2 today. */
const char sql_summary[] = "SELECT reporting_summary($1::uuid, $2::date)::text";
/* $1 project, $2 first day, $3 last day. */
const char sql_burndown[] = "SELECT reporting_burndown($1::uuid, $2::date, $3::date)::text";
const char sql_flow[] = "SELECT reporting_flow($1::uuid, $2::date, $3::date)::text";
/* $1 first day, $2 last day. */
const char sql_activity[] = "SELECT reporting_activity_days($1::date, $2::date)::text";
