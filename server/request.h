/* request.h — struct px_req, the one request object the host, the SDK functions (api.c)
 * and the HTTP code (http.c) share. Requests are pooled per worker: an idle keep-alive
 * connection holds none, and a busy one reuses buffers instead of allocating. */
#ifndef PX_REQUEST_H
#define PX_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "panthera.h"
#include "router.h"
#include "util.h"

struct conn;
struct worker;

/* A bump allocator whose memory all dies with the request. The first block is kept
 * when the request returns to the pool. */
typedef struct arena_block {
    struct arena_block *next;
    size_t cap;
    size_t used;
    char data[];
} arena_block_t;

typedef struct arena {
    arena_block_t *head;
    arena_block_t *spare; /* a grown block kept across arena_reset for the next growth */
} arena_t;

void *arena_alloc(arena_t *a, size_t size);
char *arena_strndup(arena_t *a, const char *s, size_t n);
void arena_reset(arena_t *a);
void arena_free(arena_t *a);
/* Frees the spare block: for a request that will hold its arena for long (a stream). */
void arena_drop_spare(arena_t *a);

typedef struct header {
    uint32_t name_off;
    uint32_t name_len;
    uint32_t value_off;
    uint32_t value_len;
} header_t;

enum header_state { HS_NONE, HS_FIELD, HS_NAME_DONE, HS_VALUE, HS_VALUE_DONE };

/* Work a request started on a pool (a query, a Redis command, a transaction) and has not
 * seen the end of: when the request ends first, the work is cancelled (its callback never
 * runs) and an open transaction is rolled back. */
typedef union req_op_cb {
    px_pg_fn pg;
    px_pg_txn_fn txn;
    px_pg_done_fn done;
    px_redis_fn redis;
} req_op_cb_t;

typedef struct req_op {
    struct req_op *next;
    struct req_op *prev;
    px_req_t *req;
    int kind; /* enum req_op_kind in api.c */
    void *handle;
    req_op_cb_t cb;
    void *userdata;
} req_op_t;

typedef struct query_pair {
    const char *name;
    const char *value;
} query_pair_t;

struct px_req {
    /* Kept when the request goes back to the pool (req_release): the buffers, whose
     * capacity the next request reuses, and the text fields, of which only the first
     * byte is cleared, as they are only ever read as C strings. Everything from nheaders
     * on starts at zero: req_release clears that part of the struct in one go. */
    struct worker *worker;
    struct px_req *next_free;
    arena_t arena;
    /* Request line and headers, copied out of the shared read buffer as llhttp hands
     * them over; each piece is NUL-terminated so it can be lent as a C string. */
    buf_t head;
    buf_t body;
    /* The response. */
    buf_t out; /* status line and headers */
    buf_t extra_headers;
    header_t *headers;
    char id[72]; /* up to 64 characters taken from X-Request-Id, or our own */
    char caller_id[64];
    char caller_role[16];
    uint32_t cap_headers;

    uint32_t nheaders;
    uint32_t url_off;
    uint32_t url_len;
    struct conn *conn; /* NULL once the client has gone, and always for a task */
    struct task *task; /* non-NULL: a background task (tasks.c), never a client */
    struct req_timer *timers; /* px_timer_start timers it owns (tasks.c) */

    /* The small fields sit together, here and below, so that the compiler leaves no
     * holes: every open stream holds one px_req for as long as it is open. */
    uint8_t header_state;
    bool query_parsed;
    uint8_t id_len; /* strlen(id) once ensure_request_id (http_response.c) has seen it */
    uint8_t method_name_len;
    int method; /* enum router_method, or METHOD_UNKNOWN */
    const char *method_name;
    char *path; /* raw path, NUL-terminated, no query */
    size_t path_len;
    const char *query; /* raw query string after '?', or NULL */
    query_pair_t *query_pairs;
    size_t nquery;

    const route_t *route;
    /* The route's path parameters, decoded, in the arena; NULL until dispatch (and for
     * a route without any), so a request holds no room for parameters it does not have. */
    const char **param_values;
    const char *plugin; /* owner for logs and metrics */

    json_t *json;
    const char *json_error;

    req_op_t *ops;             /* outstanding pool work */
    struct stream *stream;     /* stream.c: a streamed answer under way, or NULL */
    struct req_closer *closers; /* stream.c: px_req_on_close callbacks not run yet */
    struct px_channel_sub *chan_subs; /* channel.c: subscriptions the request owns */
    struct px_pg_txn *txns;    /* open transactions */
    json_t *header_overrides;  /* set/removed by an on_request hook: name → value or null */
    int plugin_metrics_id;
    bool has_caller;
    bool hook_caller; /* a token on a route without auth: lent to the Lua hooks only */
    /* When the caller's token (or ticket) was issued: a stream it opened ends if that is
     * revoked (revocation.c). */
    int64_t caller_issued_ms;
    bool in_on_response;
    bool client_gone; /* hung up while the handler worked: logged as 499, nothing sent */

    /* Files (spool.c, blob.c, file_response.c). */
    const route_t *body_route; /* matched when the headers were complete, or NULL */
    uint64_t body_limit;       /* the route's max_body or [http] max_body_size */
    struct spool *spool;       /* the body, when it went to a temporary file */
    struct blob_job *blob_jobs; /* store work not yet answered: detached at the end */
    struct file_send *file;    /* a file body being sent (file_response.c) */

    uint64_t start_ns;
    int status; /* of the response */
    bool is_head;
    bool keepalive;
    bool responded;
    bool expect_continue;
    bool in_body;
    bool http10;
    bool res_body_owned; /* free(res_body) after the write */
    char *res_body;
    size_t res_len;
};

/* From the worker's pool; `c` is the connection it arrived on. */
px_req_t *req_acquire(struct worker *w, struct conn *c);
/* Back to the pool: frees the JSON, the owned body and the arena's extra blocks. */
void req_release(px_req_t *r);
/* For a request about to live long (an open stream) whose head has been written: gives
 * back what only reading the request and building the answer needed — the arena's spare
 * block, an empty body's buffer, the slack of the header table. */
void req_trim_for_long_life(px_req_t *r);
#endif
