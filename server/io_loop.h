/* io_loop.h — the worker's own epoll loop, with libuv's loop embedded in it, and the
 * plain HTTP connections it reads (io_loop.c). */
#ifndef PX_IO_LOOP_H
#define PX_IO_LOOP_H

#include <stdbool.h>

#include "http.h"

struct worker;
typedef struct io_loop io_loop_t;

/* Create w->io: an epoll set holding libuv's backend fd. 0, or a negative errno (logged
 * by the caller; the worker then runs plain uv_run and reads through libuv). */
int io_loop_open(struct worker *w);
/* Close w->io (NULL is fine). No connection may still be in it. */
void io_loop_free(struct worker *w);
/* Run the worker until libuv's loop has nothing alive, as uv_run(UV_RUN_DEFAULT) would. */
void io_loop_run(struct worker *w);

/* Read `c` (socket `fd`) through the worker's epoll, edge-triggered. 0, or a negative uv
 * error (the connection then stays on libuv's read path). */
int io_conn_add(conn_t *c, int fd);
/* Take `c` out of the epoll set and the read-again list: before its fd is closed, so a
 * reused fd number never reports for it. Idempotent. */
void io_conn_remove(conn_t *c);
/* `c` resumed reading: the edge may have passed while it was paused, so it is read again
 * (http_conn_readable with drain) from the loop, outside the caller's stack. */
void io_conn_read_again(conn_t *c);

#endif
