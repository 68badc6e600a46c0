/* http_admit.h — which connections a worker keeps when connections run short: room made
 * at max_connections by closing the longest-idle, max_connections_per_client per address
 * (see http_admit.c). http.c and worker.c call it. */
#ifndef PX_HTTP_ADMIT_H
#define PX_HTTP_ADMIT_H

#include <stdbool.h>

#include "http.h"

struct worker;

/* A connection was accepted and its peer is known. 0: keep it; -1: its address holds
 * max_connections_per_client already (counted and logged here), close it. */
int http_admit_conn(conn_t *c);
/* The connection closes: its address holds one fewer. */
void http_admit_release(conn_t *c);
/* At max_connections: close the connection that has waited longest without a request in
 * progress. False when every connection is busy (or just arrived). */
bool http_admit_make_room(struct worker *w);
/* Whether http_admit_make_room would find one. */
bool http_admit_can_make_room(struct worker *w);
/* The worker's table (worker_free). */
void http_admit_free(struct worker *w);

#endif
