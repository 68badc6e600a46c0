/* spool.h — request bodies too large for memory, streamed to a temporary file as they
 * arrive (spool_t), and the glue that routes a request when its headers are complete so
 * its route's body limit and spool size apply (spool_body_*, called by http_parse.c and
 * http.c). */
#ifndef PX_SPOOL_H
#define PX_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "request.h"

struct conn;

typedef struct spool spool_t;
typedef void (*spool_fn)(void *arg);

/* A spool whose file is created (O_TMPFILE, or a name unlinked at once) in `dir` by its
 * first write job, off the loop. Never NULL. */
spool_t *spool_new(uv_loop_t *loop, const char *dir);
/* Queue `len` bytes (copied). Returns 0, or PX_EUNAVAIL once a write has failed (logged). */
int spool_write(spool_t *s, const void *data, size_t len);
/* Bytes queued and not yet on disk. */
size_t spool_backlog(const spool_t *s);
/* Call `fn(arg)` once, when the backlog has dropped to half its high mark or below. */
void spool_on_drain(spool_t *s, spool_fn fn, void *arg);
/* Write out what is queued; returns false when everything is already on disk (then `fn`
 * is not called), true when `fn(arg)` will run once it is. */
bool spool_flush(spool_t *s, spool_fn fn, void *arg);
/* 0, or PX_EUNAVAIL when the file could not be created or written. */
int spool_status(const spool_t *s);
/* The file, readable with pread once flushed; -1 before the first write job ran. */
int spool_fd(const spool_t *s);
uint64_t spool_size(const spool_t *s);
/* SHA-256 of every byte written, computed as they went to disk; valid once flushed. */
void spool_sha256(const spool_t *s, unsigned char out[32]);
/* Close and forget the file (a write job still running finishes first, then the file is
 * closed, which deletes it). Accepts NULL. */
void spool_free(spool_t *s);

/* A temporary file in `dir` (made, with its parents, when missing): O_TMPFILE, or a name
 * unlinked at once. Blocking: thread pool only. -1 with errno on failure. */
int spool_tmpfile(const char *dir);
/* Close `fd` on the thread pool: the last close of a temporary file frees its blocks,
 * which for a large one is disk work the loop must not wait for. */
void spool_close(uv_loop_t *loop, int fd);
/* mkdir -p with `mode`; errors are left to the open that follows. */
void spool_make_dirs(const char *dir, mode_t mode);

/* Past this backlog a connection stops reading until the disk catches up. */
#define SPOOL_HIGH (512 * 1024)

/* Headers complete: match the route (kept in r->body_route) and store in *limit the body
 * limit that applies, the route's max_body or [http] max_body_size. Returns 0, or a status
 * to refuse the request with before its body (401: a spooling route that requires a
 * caller, and no Authorization header), its message in c->err_message. */
int spool_body_begin(struct conn *c, px_req_t *r, uint64_t *limit);
/* A piece of body: into memory, or into the spool once the route's spool_above is passed.
 * Returns 0, or an HTTP status to fail the request with (413, 503). */
int spool_body_append(struct conn *c, px_req_t *r, const char *at, size_t len);
/* The request is complete: true when its spool is still being written, in which case
 * `ready(c)` (the connection as its argument) runs once it is on disk (not at all if the connection
 * closes first). */
bool spool_body_wait(struct conn *c, spool_fn ready);

#endif
