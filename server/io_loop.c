/*
 * io_loop.c — the worker's event loop: our own epoll set, with libuv's loop embedded in it,
 * and the plain HTTP connections read through that set.
 *
 * Why our own epoll. A keep-alive GET /v1/hello costs the kernel about the same in any
 * server here (tests/bench/floor.c: one recv, one send, an epoll_wait now and then), and
 * what pantherad paid beyond that came from libuv's read path, not from our code: read(2)
 * through the file layer where a socket call skips it, and libuv's level-triggered epoll,
 * whose every reported fd is read again until EAGAIN and polled again. A plain connection
 * is therefore in this file's epoll set, edge-triggered (EPOLLIN | EPOLLRDHUP | EPOLLET),
 * and http.c reads it with recv(2) until a short read (the socket's queue is empty then)
 * or, after a hang-up or a pause, until EAGAIN or end of file. Everything else stays on
 * libuv: the connection is still a uv_tcp_t, so its writes (http.c's send(2) first, then
 * uv_write when the kernel is full), streams, file responses, 100 Continue, lingering and
 * closing are libuv's as before, as are the listeners, timers, signals, thread-pool
 * completions and the PostgreSQL and Redis sockets. TLS connections keep libuv's read
 * path too: tls.c feeds OpenSSL from on_read, and the record layer's work dwarfs what the
 * read path costs. An fd may thus sit in two epoll sets at once, ours for reading and
 * libuv's while a write waits for room.
 *
 * Embedding libuv. libuv's backend fd is itself in our set, and readable whenever one of
 * its fds is ready; uv_backend_timeout says how long libuv may sleep. The loop waits on
 * our set with that timeout and runs uv_run(UV_RUN_NOWAIT) when the backend fd was
 * readable, when libuv's deadline has passed (checked against loop time, not by the
 * wait's return, so a busy stream of our events never starves libuv's timers), when
 * libuv has work it would not sleep on (uv_backend_timeout 0: closing handles, pending
 * callbacks, idle handles) and when our own events left libuv work it does before or
 * after polling: fds to (re)register (the watcher queue, flushed only inside uv_run),
 * prepare handles (the PostgreSQL pool's kick) and check handles. Those three are libuv's
 * private loop fields, read only to know whether a turn is owed (uv_owes_turn). A
 * request answered at once is released right after our events (worker_release_finished)
 * instead of by the worker's check handle, which would cost a libuv turn per batch.
 * The loop ends when uv_loop_alive says so, exactly when uv_run(UV_RUN_DEFAULT) would:
 * the worker's tick timer keeps it alive until worker.c's drain closes everything.
 *
 * Edge-triggered reading. An edge is reported once. A connection that stops reading
 * (a request in flight with PENDING_MAX stashed, spool.c's back-pressure, a hang-up being
 * handled) ignores its events meanwhile, and when it reads again http.c calls
 * io_conn_read_again: the connection joins a list this loop reads, until EAGAIN, before
 * it next waits, since the data (or the hang-up) may have arrived while it was paused.
 *
 * Lifetimes. Our events carry the conn pointer. http_conn_close takes the connection out
 * of the set (EPOLL_CTL_DEL) and the read-again list before uv_close closes the fd, and
 * the conn is freed only in its close callback, inside uv_run, never in the middle of a
 * batch of our events; a conn closed earlier in the batch is skipped (c->closing). So an
 * event never reaches a freed conn or a reused fd number's new connection.
 */
#include "io_loop.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "worker.h"

#define IO_EVENTS 128

struct io_loop {
    int epfd;
    conn_t *again; /* connections to read until EAGAIN before the next wait */
    conn_t *again_tail;
    size_t nagain;
};

/* The tag of libuv's backend fd in our set: no conn has this address. */
static char backend_tag;

/* libuv's QUEUE (before 1.45) and struct uv__queue (since) both start with the next
 * pointer, and an empty queue's next is the queue itself. */
#if UV_VERSION_MAJOR == 1 && UV_VERSION_MINOR < 45
#define UVQ_EMPTY(q) ((q)[0] == (void *)(q))
#else
#define UVQ_EMPTY(q) ((q).next == &(q))
#endif

/* libuv work that our own events may have left and that uv_run does before it would
 * block (register fds, run prepare handles); with `checks`, also after polling (check
 * handles), which is what a batch of our events stands for. */
static bool uv_owes_turn(const uv_loop_t *loop, bool checks)
{
    if (!UVQ_EMPTY(loop->watcher_queue) || !UVQ_EMPTY(loop->prepare_handles))
        return true;
    return checks && !UVQ_EMPTY(loop->check_handles);
}

int io_loop_open(worker_t *w)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &backend_tag};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, uv_backend_fd(w->loop), &ev) < 0) {
        int err = -errno;
        close(epfd);
        return err;
    }
    io_loop_t *io = xcalloc(1, sizeof(*io));
    io->epfd = epfd;
    w->io = io;
    return 0;
}

void io_loop_free(worker_t *w)
{
    if (!w->io)
        return;
    close(w->io->epfd);
    free(w->io);
    w->io = NULL;
}

int io_conn_add(conn_t *c, int fd)
{
    io_loop_t *io = c->worker->io;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return uv_translate_sys_error(errno);
    c->fd = fd;
    c->io_owned = true;
    return 0;
}

static void again_unlink(io_loop_t *io, conn_t *c)
{
    if (!c->io_queued)
        return;
    if (c->io_prev)
        c->io_prev->io_next = c->io_next;
    else
        io->again = c->io_next;
    if (c->io_next)
        c->io_next->io_prev = c->io_prev;
    else
        io->again_tail = c->io_prev;
    c->io_prev = c->io_next = NULL;
    c->io_queued = false;
    io->nagain--;
}

void io_conn_remove(conn_t *c)
{
    if (!c->io_owned)
        return;
    io_loop_t *io = c->worker->io;
    again_unlink(io, c);
    /* The fd is still open: uv_close closes it after this. */
    if (epoll_ctl(io->epfd, EPOLL_CTL_DEL, c->fd, NULL) < 0)
        log_errno(LOG_WARN, "epoll_ctl(DEL) of a connection");
    c->io_owned = false;
}

void io_conn_read_again(conn_t *c)
{
    if (!c->io_owned || c->io_queued)
        return;
    io_loop_t *io = c->worker->io;
    c->io_queued = true;
    c->io_next = NULL;
    c->io_prev = io->again_tail;
    if (io->again_tail)
        io->again_tail->io_next = c;
    else
        io->again = c;
    io->again_tail = c;
    io->nagain++;
}

/* Those queued when it starts: one queued again meanwhile (an upload past its reads per
 * turn) is behind them and waits for the next turn, after the next (zero-timeout) wait. */
static void read_again(io_loop_t *io)
{
    conn_t *c;
    for (size_t n = io->nagain; n > 0 && (c = io->again); n--) {
        again_unlink(io, c);
        http_conn_readable(c, true);
    }
}

/* Our events and what they left behind: the connections that resumed reading, and the
 * requests answered at once. */
static void settle(worker_t *w)
{
    read_again(w->io);
    worker_release_finished(w);
}

void io_loop_run(worker_t *w)
{
    io_loop_t *io = w->io;
    uv_loop_t *loop = w->loop;
    struct epoll_event ev[IO_EVENTS];
    uv_run(loop, UV_RUN_NOWAIT);
    while (uv_loop_alive(loop)) {
        settle(w);
        if (uv_owes_turn(loop, false)) {
            uv_run(loop, UV_RUN_NOWAIT);
            continue;
        }
        int timeout = io->again ? 0 : uv_backend_timeout(loop);
        uint64_t due = timeout < 0 ? UINT64_MAX : uv_now(loop) + (uint64_t)timeout;
        int n = epoll_wait(io->epfd, ev, IO_EVENTS, timeout);
        if (n < 0) {
            if (errno != EINTR)
                log_errno(LOG_ERROR, "epoll_wait");
            n = 0;
        }
        uv_update_time(loop);
        bool turn = uv_now(loop) >= due;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &backend_tag) {
                turn = true;
                continue;
            }
            conn_t *c = ev[i].data.ptr;
            if (c->closing || !c->io_owned)
                continue;
            http_conn_readable(c, (ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        }
        settle(w);
        if (turn || uv_backend_timeout(loop) == 0 || uv_owes_turn(loop, true))
            uv_run(loop, UV_RUN_NOWAIT);
    }
}
