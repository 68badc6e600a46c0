/* http.h — connections: llhttp parsing, limits and deadlines, keep-alive and pipelining,
 * responses written with uv_write iovecs. */
#ifndef PX_HTTP_H
#define PX_HTTP_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "panthera.h"
#include "request.h"

struct worker;

/* Which deadline a connection is under; each has its own FIFO list in the worker, and
 * since every member of a list shares one timeout the list stays sorted by deadline. */
enum conn_timer {
    CT_NONE = -1,
    CT_IDLE = 0, /* keep-alive, waiting for the first byte of a request */
    CT_HEADER,   /* reading the request line and headers */
    CT_BODY,     /* reading the body */
    CT_WRITE,    /* the kernel will not take our response */
    CT_LINGER,   /* response sent, discarding what the client still sends */
    CT_FRESH,    /* accepted, not a byte yet (first_byte_timeout) */
    CT_COUNT
};

typedef struct conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    struct worker *worker;
    px_req_t *req;    /* the request being read; NULL when idle */
    px_req_t *active; /* the request a handler has and has not answered yet */
    char *pending; /* bytes after a pipelined request, kept until it is answered */
    size_t pending_len;
    struct conn *tprev;
    struct conn *tnext;
    uint64_t deadline;
    uint64_t body_started;
    uint64_t body_bytes;
    uint32_t requests;
    int8_t timer;
    uint8_t family;
    uint8_t addr[16];
    bool reading;
    bool in_flight;   /* a handler has the request and has not answered yet */
    bool close_after; /* close once the queued responses are written */
    bool closing;
    bool peer_eof;
    bool lingering;
    bool feeding; /* inside conn_feed: a response must not restart parsing itself */
    uint16_t writes; /* uv_write calls not yet completed */
    const char *feed_start; /* the bytes llhttp is parsing now */
    const char *feed_end;
    /* obs-fold detection (http_parse.c): the separators between the pieces llhttp hands
     * over are scanned from scan_from (NULL: the start of this feed) */
    const char *scan_from;
    bool scanning;  /* inside a header section or a trailer */
    bool scan_lf;   /* the last separator byte scanned was LF */
    bool fold_seen; /* an LF followed by SP or HT: an obs-fold */
    uint32_t trailer_off; /* a trailer field's name, in the request's head buffer */
    uint32_t trailer_len;
    bool trailer_name; /* inside a trailer field's name */
    bool admit_counted; /* counted against its address's max_connections_per_client */
    uint16_t err_status;
    const char *err_message;
    struct tls_conn *tls; /* tls.c's state on an ssl listener's connection, else NULL */
    uint8_t listen_mode;  /* enum listen_mode of the listener it came from */
    /* io_loop.c: read through the worker's own epoll (plain connections), and queued to
     * be read again after a pause */
    bool io_owned;
    bool io_queued;
    int fd;
    struct conn *io_prev;
    struct conn *io_next;
} conn_t;

/* Adopt an accepted, non-blocking socket. Returns 0 or a negative uv error (the fd is
 * closed either way on error). */
int http_conn_open(struct worker *w, int fd);
/* The same for a listener of `listen_mode` (config.h): TLS on an ssl one. */
int http_conn_open_listener(struct worker *w, int fd, uint8_t listen_mode);
void http_conn_close(conn_t *c);
/* io_loop.c's event for a connection it reads: recv until a short read, or with `drain`
 * (a hang-up was reported, or reading resumed after a pause) until EAGAIN or EOF. */
void http_conn_readable(conn_t *c, bool drain);

/* Send a response for `req`. `body` is copied unless `take` is set, in which case it is
 * freed with free() after the write. Returns 0 or PX_ESTATE when already answered. */
int http_respond(px_req_t *req, int status, const char *content_type, char *body, size_t len,
                 bool take);
int http_respond_error(px_req_t *req, int status, const char *code, const char *message,
                       json_t *fields);
int http_add_header(px_req_t *req, const char *name, const char *value);
const char *http_status_reason(int status);
int http_error_status(int px_error, const char **code);

/* Called by the worker's tick with the loop time: enforce deadlines on list `which`. */
void http_expire(struct worker *w, uint64_t now);
/* Start a graceful drain: idle connections get a short grace, busy ones close after
 * their current response. */
void http_drain(struct worker *w);

/* Percent-decode into the request's arena; NULL on a bad escape or %00. */
char *http_decode(px_req_t *req, const char *s, size_t len, bool plus_is_space);
const char *http_req_id(px_req_t *req);

/* Free a pooled request (worker shutdown). */
void http_req_destroy(px_req_t *req);

#endif
