/* http_internal.h — what http.c (the connection), http_parse.c (the request),
 * http_response.c (the answer), stream.c (the answer in pieces), spool.c and
 * file_response.c (bodies read into files, files sent as bodies) call in one another;
 * nothing else includes it. http.h is the interface for the rest of the server. */
#ifndef PX_HTTP_INTERNAL_H
#define PX_HTTP_INTERNAL_H

#include <llhttp.h>
#include <stdbool.h>
#include <uv.h>

#include "http.h"

/* http.c */

/* (Re)start deadline `which` (a conn_timer) for `c` from now, leaving any other list. */
void http_timer_arm(conn_t *c, int which);
/* When `c`'s current deadline started running (loop time). */
uint64_t http_timer_started(const conn_t *c);
/* Put the response to `r`, already laid out in `bufs` (the head, then the body if it was
 * not copied in behind it), on `c`'s socket; with `keep` false the connection closes
 * once it is out. Takes `r`: it is released when written or when the connection fails.
 * `bufs` may be changed. */
void http_conn_write(conn_t *c, px_req_t *r, uv_buf_t *bufs, unsigned nbufs, bool keep);

/* Stop (hold) or restart reading `c`'s socket: spool.c's backpressure. */
void http_conn_hold_reading(conn_t *c, bool hold);

/* http_response.c, for stream.c */

/* The head of a streamed answer into r->out (chunked, or close-delimited for HTTP/1.0:
 * *chunked says which), the request marked answered. PX_ESTATE when already answered or
 * the client is gone; PX_EINTERNAL when an on_response hook failed (a 500 went instead). */
int http_respond_stream_head(px_req_t *r, int status, const char *content_type, bool *chunked);
/* Whether the connection may serve another request once this stream has ended. */
bool http_stream_keeps(const px_req_t *r);
/* A stream is over: count it and write its access log line (`bytes` sent in all; the
 * peer's address as the connection had it, which may be gone by now). */
void http_stream_finished(px_req_t *r, uint64_t bytes, int family, const uint8_t *addr);

/* Plaintext arrived on `c` (from the socket, or decrypted by tls.c): parse it, or keep it
 * behind a request in flight. */
void http_conn_input(conn_t *c, const char *data, size_t len);

/* http_parse.c */

/* Set up `c`'s parser: strict llhttp with this file's callbacks. */
void http_parse_init(conn_t *c);
/* llhttp took all of the bytes fed to it and wants more: what it has not handed to a
 * callback is about to be overwritten, so check it now. */
void http_parse_feed_done(conn_t *c);
/* Answer the request llhttp stopped on with `err` (or the status a callback or a deadline
 * left in c->err_status) and have the connection close after it. */
void http_parse_fail(conn_t *c, llhttp_errno_t err);

#endif
