/* stream.h — answers in pieces (chunked, or close-delimited for HTTP/1.0), Server-Sent
 * Events on top of them, and px_req_on_close. See the essay atop stream.c. */
#ifndef PX_STREAM_H
#define PX_STREAM_H

#include <stdint.h>

#include "panthera.h"
#include "util.h"

struct worker;

/* Format one SSE event (see px_sse_event_t) onto `out`. 0, or PX_EINVAL for an id or
 * event holding CR, LF or NUL, or an event with no field at all (nothing is appended). */
int sse_format(buf_t *out, const px_sse_event_t *ev);
/* A comment line ": text\n" (text NULL: ":\n"). 0 or PX_EINVAL for CR, LF or NUL. */
int sse_format_comment(buf_t *out, const char *text);

/* The connection under a streamed answer is closing (http_conn_close): the request ends
 * on this loop iteration, after the code that closed it has returned. */
void stream_conn_lost(px_req_t *req);
/* The client left while a handler holds the request (api_req_interrupt_work): the close
 * callbacks run now, with PX_CLOSE_CLIENT. */
void stream_req_interrupted(px_req_t *req);
/* The request ends (api_req_cancel_work): close callbacks not run yet run now; a stream
 * is counted, logged and freed. */
void stream_req_end(px_req_t *req);

/* The worker's tick: heartbeats of the SSE streams that are due. */
void stream_tick(struct worker *w, uint64_t now);
/* The worker drains: every stream gets its last words (a retry: for SSE) and ends. */
void stream_drain(struct worker *w);
/* The same for the streams a caller opened with a token (or ticket) issued for `sub` at
 * or before `revoked_at_ms` (revocation.c): they reconnect, and are refused. Their close
 * callbacks get PX_CLOSE_DRAIN. Returns how many ended. */
size_t stream_end_revoked(struct worker *w, const char *sub, int64_t revoked_at_ms);

#endif
