/*
 * blob.c — the blob store's front: the px_blob_* calls, the jobs that run them on the
 * thread pool, content sniffing, and the periodic sweep. Where blobs live is a backend's
 * business (blob_dir.c, blob_pg.c); how one is sent back is file_response.c's.
 *
 * Content-addressed. A blob's id is the hex SHA-256 of its bytes, so storing the same
 * bytes twice stores them once, a stored blob never changes, and its id is a strong ETag.
 * A spooled body was hashed while it went to disk (spool.c); bytes are hashed by the job.
 *
 * The type is the bytes', never the client's: libmagic looks at the first 64 KiB. Its
 * handle is not thread-safe, so one per process sits behind a mutex (a lookup takes well
 * under a millisecond; the database is loaded once).
 *
 * No orphans. A new blob belongs to nobody. A plugin that keeps it records a reference
 * (px_blob_ref, with its own key, e.g. "attachment:<uuid>"), and drops it when its row
 * goes (px_blob_unref). The sweep removes blobs that have no reference and were last
 * stored more than sweep_grace ago — the grace covers the window between an upload and
 * the plugin's reference. Each backend makes "reference added while the sweep removes"
 * safe: either the reference fails with PX_ENOENT (store again) or the blob stays.
 *
 * Nothing here blocks the loop: every backend call, hash and sniff runs in a job on
 * libuv's pool, and a job whose request ended meanwhile is detached, not cancelled (a
 * write to disk cannot be stopped halfway safely): its callback gets req NULL.
 */
#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <magic.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "blob_internal.h"
#include "file_response.h"
#include "log.h"
#include "spool.h"
#include "util.h"
#include "worker.h"

#define SNIFF_BYTES (64 * 1024)
#define JOBS_MAX 1024 /* store jobs on the pool at once, per worker */

/* One per process: a worker serves one configuration for its whole life. */
static blob_store_t *the_store;
static size_t jobs_running;
static uv_timer_t sweep_timer;
static bool sweeping;

static pthread_mutex_t magic_lock = PTHREAD_MUTEX_INITIALIZER;
static magic_t magic_cookie;
static bool magic_failed;

/* ---- small helpers shared with the backends ---- */

bool blob_id_valid(const char *id)
{
    if (!id)
        return false;
    size_t i = 0;
    for (; id[i]; i++)
        if (i >= 64 || !((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return i == 64;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        abort(); /* OpenSSL out of memory, like any allocation failure */
}

void blob_ref_key(const char *owner, const char *ref, char out[65])
{
    size_t lo = strlen(owner), lr = strlen(ref);
    char *text = xmalloc(lo + 1 + lr);
    memcpy(text, owner, lo);
    text[lo] = '\n';
    memcpy(text + lo + 1, ref, lr);
    unsigned char d[32];
    sha256(text, lo + 1 + lr, d);
    free(text);
    hex(d, 32, out);
}

void blob_sniff(const void *data, size_t len, char *out, size_t outlen)
{
    const char *type = NULL;
    pthread_mutex_lock(&magic_lock);
    if (!magic_cookie && !magic_failed) {
        magic_cookie = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
        if (!magic_cookie || magic_load(magic_cookie, NULL) != 0) {
            magic_failed = true;
            if (magic_cookie)
                magic_close(magic_cookie);
            magic_cookie = NULL;
        }
    }
    if (magic_cookie)
        type = magic_buffer(magic_cookie, data, len);
    snprintf(out, outlen, "%s", type && *type ? type : "application/octet-stream");
    pthread_mutex_unlock(&magic_lock);
}

void blob_sniff_fd(int fd, char *out, size_t outlen)
{
    char *head = xmalloc(SNIFF_BYTES);
    ssize_t n = pread(fd, head, SNIFF_BYTES, 0);
    blob_sniff(head, n > 0 ? (size_t)n : 0, out, outlen);
    free(head);
}

/* ---- the store ---- */

static blob_store_t *store_get(const worker_t *w)
{
    if (the_store)
        return the_store;
    blob_store_t *s = xcalloc(1, sizeof(*s));
    s->cfg = &w->cfg->storage;
    s->conninfo = w->cfg->pg.conninfo;
    s->backend = s->cfg->backend && !strcmp(s->cfg->backend, "postgres") ? &blob_pg_backend
                                                                         : &blob_dir_backend;
    pthread_mutex_init(&s->lock, NULL);
    the_store = s;
    return s;
}

/* ---- jobs ---- */

enum job_kind { J_PUT, J_STAT, J_REF, J_UNREF, J_OPEN };

typedef struct blob_job {
    uv_work_t uv;
    blob_store_t *store;
    uv_loop_t *store_loop; /* the worker's: files are closed on its thread pool */
    px_req_t *req;         /* NULL once the request ended */
    struct blob_job *next;
    struct blob_job *prev;
    int kind;
    int fd;     /* J_PUT: the content, ours to close */
    char *data; /* J_PUT of bytes: written to a temporary file by the job */
    size_t len;
    bool have_digest;
    unsigned char digest[32];
    char owner[65];
    char *ref;
    blob_open_t res;
    px_blob_fn cb;
    blob_open_fn open_fn;
    void *arg;
} blob_job_t;

static int put_run(blob_job_t *job)
{
    blob_store_t *s = job->store;
    if (job->data) {
        job->fd = spool_tmpfile(s->cfg->spool_dir);
        if (job->fd < 0)
            return PX_EUNAVAIL;
        for (size_t off = 0; off < job->len;) {
            ssize_t n = pwrite(job->fd, job->data + off, job->len - off, (off_t)off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return PX_EUNAVAIL;
            off += (size_t)n;
        }
        sha256(job->data, job->len, job->digest);
        job->res.size = job->len;
        free(job->data);
        job->data = NULL;
    }
    hex(job->digest, 32, job->res.id);
    blob_sniff_fd(job->fd, job->res.content_type, sizeof(job->res.content_type));
    return s->backend->put(s, job->fd, job->res.size, job->res.id, job->res.content_type);
}

static void job_run(uv_work_t *uv)
{
    blob_job_t *job = (blob_job_t *)uv;
    blob_store_t *s = job->store;
    blob_open_t *res = &job->res;
    if (job->kind != J_PUT && !blob_id_valid(res->id)) {
        res->status = job->kind == J_UNREF ? 0 : PX_ENOENT;
        return;
    }
    switch (job->kind) {
    case J_PUT: res->status = put_run(job); break;
    case J_STAT:
        res->status =
            s->backend->stat(s, res->id, &res->size, res->content_type, sizeof(res->content_type));
        break;
    case J_REF:
        res->status = s->backend->ref(s, res->id, job->owner, job->ref);
        if (res->status == 0)
            res->status = s->backend->stat(s, res->id, &res->size, res->content_type,
                                           sizeof(res->content_type));
        break;
    case J_UNREF: res->status = s->backend->unref(s, res->id, job->owner, job->ref); break;
    case J_OPEN:
        res->status = s->backend->open(s, res->id, &res->fd, &res->size);
        if (res->status == 0)
            blob_sniff_fd(res->fd, res->content_type, sizeof(res->content_type));
        break;
    }
}

static void job_unlink(blob_job_t *job)
{
    if (!job->req)
        return;
    if (job->prev)
        job->prev->next = job->next;
    else
        job->req->blob_jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->next = job->prev = NULL;
}

static void job_after(uv_work_t *uv, int status)
{
    blob_job_t *job = (blob_job_t *)uv;
    blob_open_t *res = &job->res;
    jobs_running--;
    if (status)
        res->status = PX_EUNAVAIL;
    if (res->status == PX_EUNAVAIL)
        log_error("blob store (%s): %s of %s failed", job->store->backend->name,
                  job->kind == J_PUT ? "storing" : "reading", res->id[0] ? res->id : "a blob");
    job_unlink(job);
    px_req_t *r = job->req;
    if (job->kind == J_OPEN) {
        if (r)
            job->open_fn(r, res, job->arg); /* takes the fd */
        else
            spool_close(job->store_loop, res->fd);
    } else if (job->cb) {
        px_blob_t blob = {
            .id = res->id, .sha256 = res->id, .size = res->size, .content_type = res->content_type};
        bool has_blob = res->status == 0 && job->kind != J_UNREF;
        job->cb(r, has_blob ? &blob : NULL, res->status, job->arg);
    }
    spool_close(job->store_loop, job->fd);
    free(job->data);
    free(job->ref);
    free(job);
}

static blob_job_t *job_new(px_req_t *r, int kind, const char *id)
{
    blob_job_t *job = xcalloc(1, sizeof(*job));
    job->store = store_get(r->worker);
    job->store_loop = r->worker->loop;
    job->req = r;
    job->kind = kind;
    job->fd = -1;
    job->res.fd = -1;
    if (id)
        snprintf(job->res.id, sizeof(job->res.id), "%s", id);
    snprintf(job->owner, sizeof(job->owner), "%s", r->plugin ? r->plugin : "host");
    return job;
}

static int job_submit(blob_job_t *job)
{
    px_req_t *r = job->req;
    if (jobs_running >= JOBS_MAX ||
        uv_queue_work(r->worker->loop, &job->uv, job_run, job_after) != 0) {
        spool_close(job->store_loop, job->fd);
        free(job->data);
        free(job->ref);
        free(job);
        return PX_EUNAVAIL;
    }
    jobs_running++;
    job->next = r->blob_jobs;
    if (r->blob_jobs)
        r->blob_jobs->prev = job;
    r->blob_jobs = job;
    return 0;
}

void blob_req_release(px_req_t *r)
{
    for (blob_job_t *job = r->blob_jobs, *next; job; job = next) {
        next = job->next;
        job->req = NULL;
        job->next = job->prev = NULL;
    }
    r->blob_jobs = NULL;
    spool_free(r->spool);
    r->spool = NULL;
    file_response_release(r);
}

int blob_open_async(px_req_t *r, const char *id, blob_open_fn fn, void *arg)
{
    blob_job_t *job = job_new(r, J_OPEN, id);
    job->open_fn = fn;
    job->arg = arg;
    return job_submit(job);
}

/* ---- the SDK calls ---- */

int api_req_body_file(px_req_t *r, int *fd, uint64_t *size)
{
    if (!r->spool || spool_fd(r->spool) < 0)
        return PX_ENOENT;
    if (fd)
        *fd = spool_fd(r->spool);
    if (size)
        *size = spool_size(r->spool);
    return 0;
}

int api_blob_put_body(px_req_t *r, px_blob_fn cb, void *userdata)
{
    if (!cb)
        return PX_EINVAL;
    if (!r->spool || spool_fd(r->spool) < 0)
        return api_blob_put(r, r->body.data, r->body.len, cb, userdata);
    blob_job_t *job = job_new(r, J_PUT, NULL);
    /* Its own descriptor: the job may outlive the request, which closes the spool's. */
    job->fd = fcntl(spool_fd(r->spool), F_DUPFD_CLOEXEC, 0);
    if (job->fd < 0) {
        log_errno(LOG_ERROR, "blob store: dup of a spooled body");
        free(job);
        return PX_EUNAVAIL;
    }
    job->res.size = spool_size(r->spool);
    spool_sha256(r->spool, job->digest);
    job->have_digest = true;
    job->cb = cb;
    job->arg = userdata;
    return job_submit(job);
}

int api_blob_put(px_req_t *r, const void *data, size_t len, px_blob_fn cb, void *userdata)
{
    if (!cb || (!data && len))
        return PX_EINVAL;
    blob_job_t *job = job_new(r, J_PUT, NULL);
    job->data = xmalloc(len ? len : 1);
    if (len)
        memcpy(job->data, data, len);
    job->len = len;
    job->cb = cb;
    job->arg = userdata;
    return job_submit(job);
}

/* A lookup by id: a malformed id is simply one that is not stored. */
static int lookup(px_req_t *r, int kind, const char *id, const char *ref, px_blob_fn cb,
                  void *userdata)
{
    if (!cb || (kind != J_STAT && (!ref || !*ref)))
        return PX_EINVAL;
    /* A malformed id is answered by the job all the same (job_run), so the callback
     * never runs inside the call. */
    blob_job_t *job = job_new(r, kind, blob_id_valid(id) ? id : NULL);
    job->cb = cb;
    job->arg = userdata;
    job->ref = ref ? xstrdup(ref) : NULL;
    return job_submit(job);
}

int api_blob_stat(px_req_t *r, const char *id, px_blob_fn cb, void *userdata)
{
    return lookup(r, J_STAT, id, NULL, cb, userdata);
}

int api_blob_ref(px_req_t *r, const char *id, const char *ref, px_blob_fn cb, void *userdata)
{
    return lookup(r, J_REF, id, ref, cb, userdata);
}

int api_blob_unref(px_req_t *r, const char *id, const char *ref, px_blob_fn cb, void *userdata)
{
    return lookup(r, J_UNREF, id, ref, cb, userdata);
}

/* ---- the sweep ---- */

typedef struct sweep_job {
    uv_work_t uv;
    blob_store_t *store;
    int status;
    uint64_t removed;
} sweep_job_t;

static void sweep_run(uv_work_t *uv)
{
    sweep_job_t *job = (sweep_job_t *)uv;
    blob_store_t *s = job->store;
    job->status = s->backend->sweep(s, s->cfg->sweep_grace_ms, &job->removed);
}

static void sweep_after(uv_work_t *uv, int status)
{
    sweep_job_t *job = (sweep_job_t *)uv;
    sweeping = false;
    if (status || job->status)
        log_warn("blob store (%s): the sweep failed; it runs again in the next interval",
                 job->store->backend->name);
    else if (job->removed)
        log_info("blob store (%s): swept %llu unreferenced blob(s)", job->store->backend->name,
                 (unsigned long long)job->removed);
    free(job);
}

static void on_sweep(uv_timer_t *t)
{
    worker_t *w = t->data;
    if (sweeping || w->draining)
        return;
    sweep_job_t *job = xcalloc(1, sizeof(*job));
    job->store = store_get(w);
    sweeping = true;
    if (uv_queue_work(w->loop, &job->uv, sweep_run, sweep_after) != 0) {
        sweeping = false;
        free(job);
    }
}

void blob_worker_start(worker_t *w)
{
    uint64_t every = w->cfg->storage.sweep_interval_ms;
    if (!every)
        return;
    /* Workers (and hosts) start together: a random first delay spreads their sweeps;
     * the backends keep two sweeps at once harmless anyway. */
    uint64_t first = every / 2 + (uint64_t)getpid() % (every / 2 + 1);
    uv_timer_init(w->loop, &sweep_timer);
    sweep_timer.data = w;
    uv_timer_start(&sweep_timer, on_sweep, first, every);
    uv_unref((uv_handle_t *)&sweep_timer); /* never what keeps a stopping worker alive */
}

void blob_worker_stop(void)
{
    if (sweep_timer.data && !uv_is_closing((uv_handle_t *)&sweep_timer))
        uv_close((uv_handle_t *)&sweep_timer, NULL);
}
