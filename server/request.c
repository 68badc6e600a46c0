/* request.c — the request arena and the per-worker request pool. */
#include "request.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "blob.h"
#include "http.h"
#include "worker.h"

/* Most requests need a little arena (path, query, a plugin's small state): the first
 * block, kept while the request is pooled and held by every open stream (issue 9's
 * 2 KiB per stream), is sized for those. A request that needs more grows by bigger
 * blocks, and one of those is kept as the arena's spare across requests, so a pooled
 * request that once needed a few KiB does not go to malloc for them every time; an open
 * stream gives its spare back (req_trim_for_long_life). */
#define ARENA_FIRST_BLOCK 256
#define ARENA_BLOCK 4096
#define POOL_MAX 1024
/* A request that needed big buffers gives them back rather than pinning them. */
#define KEEP_BUFFER_MAX (64 * 1024)

static arena_block_t *block_new(size_t cap)
{
    arena_block_t *b = xmalloc(sizeof(*b) + cap);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

void *arena_alloc(arena_t *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    arena_block_t *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t min = b ? ARENA_BLOCK : ARENA_FIRST_BLOCK;
        size_t cap = size > min ? size : min;
        arena_block_t *nb;
        if (b && size <= ARENA_BLOCK && a->spare) {
            nb = a->spare;
            a->spare = NULL;
            nb->used = 0;
        } else {
            nb = block_new(cap);
        }
        if (b && size <= ARENA_BLOCK) {
            nb->next = b;
            a->head = nb;
        } else if (b) {
            /* An oversized block goes behind the current one so the current one's free
             * space stays usable. */
            nb->next = b->next;
            b->next = nb;
            nb->used = size;
            return nb->data;
        } else {
            a->head = nb;
        }
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

char *arena_strndup(arena_t *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void arena_reset(arena_t *a)
{
    arena_block_t *keep = NULL;
    for (arena_block_t *b = a->head, *next; b; b = next) {
        next = b->next;
        if (!keep && b->cap == ARENA_FIRST_BLOCK) {
            keep = b;
            keep->used = 0;
            keep->next = NULL;
        } else if (!a->spare && b->cap == ARENA_BLOCK) {
            a->spare = b;
            b->next = NULL;
        } else {
            free(b);
        }
    }
    a->head = keep;
}

void arena_drop_spare(arena_t *a)
{
    free(a->spare);
    a->spare = NULL;
}

void arena_free(arena_t *a)
{
    for (arena_block_t *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    arena_drop_spare(a);
}

static void trim_buffer(buf_t *b)
{
    if (b->cap > KEEP_BUFFER_MAX)
        buf_free(b);
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

px_req_t *req_acquire(worker_t *w, conn_t *c)
{
    px_req_t *r = w->free_reqs;
    if (r) {
        w->free_reqs = r->next_free;
        w->nfree_reqs--;
    } else {
        r = xcalloc(1, sizeof(*r));
    }
    r->next_free = NULL;
    r->conn = c;
    r->worker = w;
    r->start_ns = uv_hrtime();
    r->method = METHOD_UNKNOWN;
    return r;
}

void http_req_destroy(px_req_t *r)
{
    arena_free(&r->arena);
    buf_free(&r->head);
    buf_free(&r->body);
    buf_free(&r->out);
    buf_free(&r->extra_headers);
    free(r->headers);
    free(r);
}

void req_trim_for_long_life(px_req_t *r)
{
    arena_drop_spare(&r->arena);
    /* A body a handler may still read stays; the capacity a pooled request kept from an
     * earlier one goes. The head stays too: header values were lent into it. */
    if (r->body.len == 0)
        buf_free(&r->body);
    /* The table holds offsets into the head, nothing a plugin was lent: it may move. */
    if (r->cap_headers > r->nheaders) {
        if (r->nheaders) {
            r->headers = xrealloc(r->headers, r->nheaders * sizeof(header_t));
        } else {
            free(r->headers);
            r->headers = NULL;
        }
        r->cap_headers = r->nheaders;
    }
}

void req_release(px_req_t *r)
{
    worker_t *w = r->worker;
    api_req_cancel_work(r);
    blob_req_release(r);
    json_decref(r->json);
    if (r->res_body_owned)
        free(r->res_body);
    arena_reset(&r->arena);
    trim_buffer(&r->head);
    trim_buffer(&r->body);
    trim_buffer(&r->out);
    trim_buffer(&r->extra_headers);
    if (r->cap_headers > 256) {
        free(r->headers);
        r->headers = NULL;
        r->cap_headers = 0;
    }
    /* From nheaders on, request.h's fields are cleared whole rather than one by one, so
     * that a field added there can never carry over into the next request. */
    memset((char *)r + offsetof(px_req_t, nheaders), 0, sizeof(*r) - offsetof(px_req_t, nheaders));
    r->id[0] = r->caller_id[0] = r->caller_role[0] = '\0';
    if (w->nfree_reqs >= POOL_MAX) {
        http_req_destroy(r);
        return;
    }
    r->worker = w;
    r->next_free = w->free_reqs;
    w->free_reqs = r;
    w->nfree_reqs++;
}
