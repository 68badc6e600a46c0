/* gateway.h — the route's auth gate and the admins' request/response hooks. */
#ifndef PX_GATEWAY_H
#define PX_GATEWAY_H

#include "request.h"
#include "router.h"

/* Verify the bearer token (or on a PX_ROUTE_TICKET route a stream ticket, ticket.h) and
 * the route's role; ?access_token= is refused. Returns non-zero when it has answered
 * (401, 403, 503) or will call `resume` once a ticket is redeemed; otherwise the caller
 * is on the request (or absent for optional auth). */
int gateway_check_caller(px_req_t *req, const route_t *route, void (*resume)(px_req_t *req));
/* Run on_request. Returns non-zero when a hook answered (deny, or 500 on a failure);
 * header changes become the request's header overrides. */
int gateway_on_request(px_req_t *req);
/* Run on_response with the response's status and headers. Returns non-zero when a hook
 * failed (the caller answers 500 instead). */
int gateway_on_response(px_req_t *req, int status);

#endif
