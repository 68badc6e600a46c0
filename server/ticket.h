/* ticket.h — stream tickets: single-use, short-lived stand-ins for a caller on routes
 * flagged PX_ROUTE_TICKET (see the essay atop ticket.c). */
#ifndef PX_TICKET_H
#define PX_TICKET_H

#include <stdint.h>

#include "panthera.h"

#define TICKET_TTL_S 60

enum ticket_error { TICKET_EMALFORMED = -1, TICKET_EEXPIRED = -2 };

typedef struct ticket {
    char nonce[33];
    char sub[64];
    char role[16];
    int64_t exp;
} ticket_t;

/* A new ticket for (sub, role) valid from `now` for TICKET_TTL_S; malloc'd, the caller
 * frees it. NULL without a secret or when sub or role is missing. */
char *ticket_make(const char *secret, const char *sub, const char *role, int64_t now);
/* 0 and *out filled for a ticket we made and that has not expired at `now`; else a
 * ticket_error. Says nothing of whether it was used already (ticket_redeem does). */
int ticket_check(const char *secret, const char *ticket, int64_t now, ticket_t *out);
/* Check `ticket` and mark it used in Redis; once that is done the request carries the
 * ticket's caller and `resume` runs. Answers 401 (bad, expired or used) or 503 (Redis
 * unreachable) itself. Always returns 1: the gateway has nothing more to do now. */
int ticket_redeem(px_req_t *req, const char *ticket, void (*resume)(px_req_t *req));

#endif
