/*
 * spool.c — request bodies that go to disk instead of memory.
 *
 * A route registered with spool_above (px_route_spec_t) takes bodies larger than that as
 * a temporary file. The file is written as the body arrives, never held whole: bytes are
 * gathered into a chunk, and a chunk is written (and hashed, so the blob store never reads
 * the file again to name it) by one job on libuv's thread pool at a time, which keeps the
 * writes in order and the loop free of disk I/O. When the disk is slower than the client,
 * the backlog grows past SPOOL_HIGH and the connection stops reading until the writer has
 * caught up: memory stays at a few chunks whatever the body's size.
 *
 * The file is made with O_TMPFILE (or given a name and unlinked at once where the file
 * system has no O_TMPFILE), so it has no name to leak: closing it, which the request does
 * when it ends however it ends, deletes it, and so does the process dying.
 *
 * Routing at the headers. The route's body limit (max_body) must apply before the body is
 * read — a Content-Length over it is a 413 before a byte of body — so the request is
 * matched once its headers are complete (spool_body_begin) and the match is kept for the
 * body. The gateway (tokens, limits, hooks) still runs at dispatch, once the body is in.
 *
 * The request is dispatched only when its whole body is on disk (spool_body_wait): the
 * connection holds it, reading what follows into its pipelining stash, meanwhile.
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_internal.h"
#include "log.h"
#include "util.h"
#include "worker.h"

/* One write job's worth: big enough that the pool is not busy with tiny writes, small
 * enough that a few of them are nothing next to a worker's idle footprint. */
#define CHUNK (128 * 1024)

typedef struct spool_job {
    uv_work_t uv;
    spool_t *spool;
    char *data;
    size_t len;
} spool_job_t;

struct spool {
    uv_loop_t *loop;
    char *dir;
    int fd;
    int err;          /* errno of the first failure, from the job */
    int status;       /* 0 or PX_EUNAVAIL, as the loop has seen it */
    uint64_t size;    /* bytes accepted by spool_write */
    uint64_t written; /* bytes on disk */
    EVP_MD_CTX *sha;
    char *fill; /* the chunk being gathered */
    size_t fill_len;
    size_t fill_cap;
    bool busy;     /* a job is on the pool */
    bool orphaned; /* spool_free ran while busy: the job's completion frees */
    spool_fn drain_fn;
    void *drain_arg;
    spool_fn flush_fn;
    void *flush_arg;
};

/* Create the file: O_TMPFILE where the file system has it, else a name unlinked at once. */
static int open_tmp(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    char path[4096];
    snprintf(path, sizeof(path), "%s/spool-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

void spool_make_dirs(const char *dir, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, mode);
        *p = '/';
    }
    mkdir(path, mode);
}

int spool_tmpfile(const char *dir)
{
    int fd = open_tmp(dir);
    if (fd < 0 && errno == ENOENT) {
        spool_make_dirs(dir, 0700);
        fd = open_tmp(dir);
    }
    return fd;
}

static void job_run(uv_work_t *uv)
{
    spool_job_t *job = (spool_job_t *)uv;
    spool_t *s = job->spool;
    if (s->err)
        return;
    if (s->fd < 0) {
        s->fd = spool_tmpfile(s->dir);
        if (s->fd < 0) {
            s->err = errno;
            return;
        }
    }
    size_t off = 0;
    while (off < job->len) {
        ssize_t n = pwrite(s->fd, job->data + off, job->len - off, (off_t)(s->written + off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->err = n < 0 ? errno : EIO;
            return;
        }
        off += (size_t)n;
    }
    EVP_DigestUpdate(s->sha, job->data, job->len);
}

static void job_start(spool_t *s);

static void on_closed(uv_fs_t *req)
{
    uv_fs_req_cleanup(req);
    free(req);
}

void spool_close(uv_loop_t *loop, int fd)
{
    if (fd < 0)
        return;
    uv_fs_t *req = xmalloc(sizeof(*req));
    if (uv_fs_close(loop, req, fd, on_closed) < 0) {
        free(req);
        close(fd);
    }
}

static void spool_destroy(spool_t *s)
{
    spool_close(s->loop, s->fd);
    EVP_MD_CTX_free(s->sha);
    free(s->fill);
    free(s->dir);
    free(s);
}

static void job_after(uv_work_t *uv, int status)
{
    spool_job_t *job = (spool_job_t *)uv;
    spool_t *s = job->spool;
    s->busy = false;
    if (status == 0 && !s->err)
        s->written += job->len;
    free(job->data);
    free(job);
    if (s->orphaned) {
        spool_destroy(s);
        return;
    }
    if (s->err || status) {
        if (!s->status)
            log_error("cannot spool a request body into %s: %s", s->dir,
                      strerror(s->err ? s->err : ECANCELED));
        s->status = PX_EUNAVAIL;
    }
    if (!s->status && s->fill_len >= CHUNK)
        job_start(s);
    else if (!s->status && s->flush_fn && s->fill_len)
        job_start(s);
    if (s->drain_fn && (s->status || spool_backlog(s) <= SPOOL_HIGH / 2)) {
        spool_fn fn = s->drain_fn;
        s->drain_fn = NULL;
        fn(s->drain_arg);
    }
    if (s->flush_fn && (s->status || (!s->busy && !s->fill_len))) {
        spool_fn fn = s->flush_fn;
        s->flush_fn = NULL;
        fn(s->flush_arg);
    }
}

/* Hand the gathered chunk to the pool. */
static void job_start(spool_t *s)
{
    spool_job_t *job = xcalloc(1, sizeof(*job));
    job->spool = s;
    job->data = s->fill;
    job->len = s->fill_len;
    s->fill = NULL;
    s->fill_len = s->fill_cap = 0;
    s->busy = true;
    if (uv_queue_work(s->loop, &job->uv, job_run, job_after) != 0) {
        s->err = EAGAIN;
        job_after(&job->uv, UV_ECANCELED);
    }
}

spool_t *spool_new(uv_loop_t *loop, const char *dir)
{
    spool_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->dir = xstrdup(dir && *dir ? dir : P_tmpdir);
    s->fd = -1;
    s->sha = EVP_MD_CTX_new();
    if (!s->sha || EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL) != 1)
        abort(); /* like allocation failure: OpenSSL out of memory */
    return s;
}

int spool_write(spool_t *s, const void *data, size_t len)
{
    if (s->status)
        return s->status;
    if (s->fill_len + len > s->fill_cap) {
        size_t cap = s->fill_cap ? s->fill_cap : CHUNK;
        while (cap < s->fill_len + len)
            cap *= 2;
        s->fill = xrealloc(s->fill, cap);
        s->fill_cap = cap;
    }
    memcpy(s->fill + s->fill_len, data, len);
    s->fill_len += len;
    s->size += len;
    if (!s->busy && s->fill_len >= CHUNK)
        job_start(s);
    return s->status;
}

size_t spool_backlog(const spool_t *s)
{
    return (size_t)(s->size - s->written);
}

void spool_on_drain(spool_t *s, spool_fn fn, void *arg)
{
    s->drain_fn = fn;
    s->drain_arg = arg;
}

bool spool_flush(spool_t *s, spool_fn fn, void *arg)
{
    if (!s->status && !s->busy && s->fill_len)
        job_start(s);
    if (!s->busy)
        return false;
    s->flush_fn = fn;
    s->flush_arg = arg;
    return true;
}

int spool_status(const spool_t *s)
{
    return s->status;
}

int spool_fd(const spool_t *s)
{
    return s->fd;
}

uint64_t spool_size(const spool_t *s)
{
    return s->written;
}

void spool_sha256(const spool_t *s, unsigned char out[32])
{
    /* A copy: the running context stays usable, and finishing it twice is an error. */
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!copy || EVP_MD_CTX_copy_ex(copy, s->sha) != 1 || EVP_DigestFinal_ex(copy, out, &n) != 1)
        abort();
    EVP_MD_CTX_free(copy);
}

void spool_free(spool_t *s)
{
    if (!s)
        return;
    s->drain_fn = s->flush_fn = NULL;
    if (s->busy) {
        s->orphaned = true;
        return;
    }
    spool_destroy(s);
}

/* ---- the request body ---- */

/* An anonymous body for a route that requires a caller is refused before it is read,
 * when the route spools: otherwise anyone could make us write max_body to disk just to
 * hear 401. (A token that is present is checked at dispatch, as on every route.) */
static bool has_authorization(const px_req_t *r)
{
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const header_t *h = &r->headers[i];
        if (h->name_len == 13 && !strncasecmp(r->head.data + h->name_off, "authorization", 13))
            return true;
    }
    return false;
}

int spool_body_begin(conn_t *c, px_req_t *r, uint64_t *limit)
{
    worker_t *w = c->worker;
    router_match_t m;
    router_match(w->router, r->method, r->path, r->path_len, &m);
    const route_t *rt = m.route;
    r->body_route = rt;
    r->body_limit = rt && rt->max_body ? rt->max_body : w->limits->max_body_size;
    *limit = r->body_limit;
    if (rt && rt->spec.spool_above && rt->auth == PX_AUTH_REQUIRED && !has_authorization(r)) {
        c->err_message = "a bearer token is required";
        return 401;
    }
    return 0;
}

static void resume_reading(void *arg)
{
    http_conn_hold_reading(arg, false);
}

int spool_body_append(conn_t *c, px_req_t *r, const char *at, size_t len)
{
    if (c->body_bytes + len > r->body_limit)
        return 413;
    const route_t *rt = r->body_route;
    if (!r->spool) {
        size_t above = rt ? rt->spec.spool_above : 0;
        if (!above || r->body.len + len <= above) {
            buf_append(&r->body, at, len);
            return 0;
        }
        const config_t *cfg = c->worker->cfg;
        r->spool = spool_new(c->worker->loop, cfg->storage.spool_dir);
        if (r->body.len)
            spool_write(r->spool, r->body.data, r->body.len);
        r->body.len = 0;
    }
    if (spool_write(r->spool, at, len))
        return 503;
    if (spool_backlog(r->spool) > SPOOL_HIGH) {
        http_conn_hold_reading(c, true);
        spool_on_drain(r->spool, resume_reading, c);
    }
    return 0;
}

bool spool_body_wait(conn_t *c, spool_fn ready)
{
    px_req_t *r = c->req;
    return r && r->spool && spool_flush(r->spool, ready, c);
}
