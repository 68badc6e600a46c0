/*
 * file_response.c — px_res_file: a stored blob as an HTTP answer.
 *
 * What is decided. The blob's SHA-256 is its strong ETag, so If-None-Match needs no
 * other state (304). One Range gives 206 with Content-Range; several give the whole file
 * (200: multipart/byteranges is rarely worth its code, and RFC 9110 lets a server ignore
 * Range); one outside the file gives 416 naming the size. The type is the sniffed one,
 * and the headers keep a hostile upload from running in our origin: nosniff, a sandbox
 * CSP, and Content-Disposition: attachment for everything but raster images (an SVG or
 * HTML file shown inline would run script). The file name goes out twice: an ASCII
 * fallback with anything risky replaced, and RFC 8187's filename*=UTF-8''... with
 * everything outside attr-char percent-encoded — a quote or CR/LF in a name can neither
 * end the parameter nor split the header.
 *
 * How the body goes. Opening (and, for the postgres backend, fetching into a temporary
 * file) runs on the thread pool (blob.c). The body then leaves with sendfile(2) straight
 * from the page cache to the socket, on the loop, as nginx does: a socket that is full
 * (EAGAIN) is waited for by writing one chunk read off the loop the ordinary way (libuv
 * tells us when it is out), and so is a long file every SEND_BUDGET bytes, so one
 * download cannot hold the loop. The last piece (or a whole small file) goes through
 * http_conn_write like any response, which ends the request and moves the connection on.
 * Meanwhile the connection keeps the request in flight, so nothing else is written on it.
 */
#include "file_response.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "api.h"
#include "blob.h"
#include "http_internal.h"
#include "log.h"
#include "spool.h"
#include "worker.h"

#define TAIL (64 * 1024)          /* read and written the ordinary way */
#define SEND_BUDGET (1024 * 1024) /* sendfile bytes before giving the loop back */
#define FILENAME_MAX_BYTES 255

struct file_send {
    px_req_t *req;
    int fd;
    uint64_t off; /* next byte to send */
    uint64_t end; /* one past the last */
    bool keep;
    bool tail; /* the read in flight is the last piece */
    uv_buf_t head;
    uv_write_t wr;
    uv_fs_t fs;
    char *chunk;
};

/* ---- the decisions ---- */

static bool parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(*s - '0');
    *p = s;
    *out = v;
    return true;
}

int file_range_parse(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (!h || strncasecmp(h, "bytes=", 6) || strchr(h, ','))
        return FILE_RANGE_NONE;
    const char *p = h + 6;
    while (*p == ' ' || *p == '\t')
        p++;
    uint64_t a = 0, b = UINT64_MAX;
    if (*p == '-') {
        p++;
        uint64_t suffix;
        if (!parse_u64(&p, &suffix))
            return FILE_RANGE_NONE;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p)
            return FILE_RANGE_NONE;
        if (suffix == 0 || size == 0)
            return FILE_RANGE_UNSATISFIABLE;
        *first = suffix >= size ? 0 : size - suffix;
        *last = size - 1;
        return FILE_RANGE_ONE;
    }
    if (!parse_u64(&p, &a) || *p++ != '-')
        return FILE_RANGE_NONE;
    if (*p >= '0' && *p <= '9' && !parse_u64(&p, &b))
        return FILE_RANGE_NONE;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p || b < a)
        return FILE_RANGE_NONE;
    if (a >= size)
        return FILE_RANGE_UNSATISFIABLE;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return FILE_RANGE_ONE;
}

bool file_etag_matches(const char *h, const char *etag)
{
    if (!h)
        return false;
    size_t elen = strlen(etag);
    const char *p = h;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (!strncmp(p, "W/", 2))
            p += 2;
        const char *start = p;
        if (*p != '"')
            return false;
        const char *close = strchr(p + 1, '"');
        if (!close)
            return false;
        size_t len = (size_t)(close - start) + 1;
        if (len == elen && !memcmp(start, etag, len))
            return true;
        p = close + 1;
    }
    return false;
}

bool file_type_inline(const char *t)
{
    static const char *const raster[] = {"image/png",  "image/jpeg", "image/gif",
                                         "image/webp", "image/avif", "image/bmp"};
    for (size_t i = 0; i < ARRAY_SIZE(raster); i++)
        if (t && !strcasecmp(t, raster[i]))
            return true;
    return false;
}

/* RFC 8187 attr-char: what may stand unescaped in filename*. */
static bool attr_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("!#$&+-.^_`|~", ch) != NULL;
}

void file_disposition(buf_t *out, const char *filename, bool inline_)
{
    buf_appends(out, inline_ ? "inline" : "attachment");
    if (!filename || !*filename)
        return;
    /* The name only: a client must never be handed a path. */
    const char *base = filename;
    for (const char *p = filename; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;
    size_t len = strnlen(base, FILENAME_MAX_BYTES);
    if (len == 0)
        return;
    buf_appends(out, "; filename=\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)base[i];
        char safe =
            ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '%' ? (char)ch : '_';
        buf_append(out, &safe, 1);
    }
    buf_appends(out, "\"; filename*=UTF-8''");
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)base[i];
        if (attr_char(ch)) {
            buf_append(out, &ch, 1);
        } else {
            char esc[3] = {'%', digits[ch >> 4], digits[ch & 15]};
            buf_append(out, esc, 3);
        }
    }
}

/* ---- sending the body ---- */

static void pump(struct file_send *f);

/* The connection went away under us: nobody reads the rest; the request just ends. */
static void send_abort(px_req_t *r)
{
    if (r->conn)
        http_conn_close(r->conn); /* clears r->conn: the request is ours to end */
    req_release(r);
}

static void on_written(uv_write_t *wr, int status)
{
    struct file_send *f = wr->data;
    px_req_t *r = f->req;
    if (status < 0 || !r->conn) {
        send_abort(r);
        return;
    }
    pump(f);
}

static void on_read(uv_fs_t *fs)
{
    struct file_send *f = fs->data;
    px_req_t *r = f->req;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    if (!r->conn || n <= 0) {
        if (n <= 0 && r->conn)
            log_error("file response: reading the blob failed: %s",
                      n < 0 ? uv_strerror((int)n) : "file shorter than its size");
        send_abort(r);
        return;
    }
    conn_t *c = r->conn;
    uv_buf_t piece = uv_buf_init(f->chunk, (unsigned)n);
    f->off += (uint64_t)n;
    if (f->head.len && f->off != f->end) {
        /* A small file read short: it changed under us, and the head promised its size. */
        log_error("file response: the blob is shorter than its size");
        send_abort(r);
        return;
    }
    if (f->tail && f->off == f->end) {
        /* The last piece ends the request the ordinary way (with the head, if still due). */
        uv_buf_t bufs[2] = {f->head, piece};
        bool with_head = f->head.len > 0;
        f->head.len = 0;
        http_conn_write(c, r, with_head ? bufs : &bufs[1], with_head ? 2 : 1, f->keep);
        return;
    }
    f->wr.data = f;
    http_timer_arm(c, CT_WRITE);
    if (uv_write(&f->wr, (uv_stream_t *)&c->tcp, &piece, 1, on_written) < 0)
        send_abort(r);
}

/* Read the next piece off the loop: the tail, or one to wait for a full socket with. */
static void read_piece(struct file_send *f, bool tail)
{
    uint64_t left = f->end - f->off;
    size_t want = left < TAIL ? (size_t)left : TAIL;
    f->tail = tail || want == left;
    if (f->tail && want != left)
        want = (size_t)left;
    if (!f->chunk)
        f->chunk = xmalloc(TAIL);
    uv_buf_t b = uv_buf_init(f->chunk, (unsigned)want);
    f->fs.data = f;
    if (uv_fs_read(f->req->worker->loop, &f->fs, f->fd, &b, 1, (int64_t)f->off, on_read) < 0)
        send_abort(f->req);
}

static void pump(struct file_send *f)
{
    px_req_t *r = f->req;
    conn_t *c = r->conn;
    int sock;
    if (uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0) {
        send_abort(r);
        return;
    }
    uint64_t budget = SEND_BUDGET;
    while (f->end - f->off > TAIL) {
        if (budget == 0) {
            read_piece(f, false);
            return;
        }
        uint64_t want = f->end - f->off - TAIL;
        if (want > budget)
            want = budget;
        off_t pos = (off_t)f->off;
        ssize_t n = sendfile(sock, f->fd, &pos, (size_t)want);
        if (n > 0) {
            f->off += (uint64_t)n;
            budget -= (uint64_t)n;
            http_timer_arm(c, CT_WRITE);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            read_piece(f, false);
            return;
        }
        send_abort(r); /* the peer is gone (EPIPE, ECONNRESET) or the file shrank */
        return;
    }
    read_piece(f, true);
}

void file_send_start(conn_t *c, px_req_t *r, uv_buf_t head, bool keep)
{
    struct file_send *f = r->file;
    f->keep = keep;
    f->head = head;
    if (f->end - f->off <= TAIL) {
        read_piece(f, true); /* one write: head and body */
        return;
    }
    f->head.len = 0;
    f->wr.data = f;
    http_timer_arm(c, CT_WRITE);
    if (uv_write(&f->wr, (uv_stream_t *)&c->tcp, &head, 1, on_written) < 0)
        send_abort(r);
}

void file_response_release(px_req_t *r)
{
    struct file_send *f = r->file;
    if (!f)
        return;
    spool_close(r->worker->loop, f->fd);
    free(f->chunk);
    free(f);
    r->file = NULL;
}

/* ---- px_res_file ---- */

typedef struct file_ask {
    const char *filename;
    const char *cache_control;
} file_ask_t;

static void answer(px_req_t *r, blob_open_t *res, void *arg)
{
    file_ask_t *ask = arg;
    if (res->status) {
        http_respond_error(r, res->status == PX_ENOENT ? 404 : 503, NULL,
                           res->status == PX_ENOENT ? "no such file" : "the file store failed",
                           NULL);
        return;
    }
    char etag[70];
    snprintf(etag, sizeof(etag), "\"%s\"", res->id);
    http_add_header(r, "ETag", etag);
    http_add_header(r, "Cache-Control", ask->cache_control);
    http_add_header(r, "X-Content-Type-Options", "nosniff");
    http_add_header(r, "Content-Security-Policy", "sandbox");
    http_add_header(r, "Accept-Ranges", "bytes");
    buf_t disp = {0};
    file_disposition(&disp, ask->filename, file_type_inline(res->content_type));
    http_add_header(r, "Content-Disposition", disp.data);
    buf_free(&disp);

    if (file_etag_matches(api_req_header(r, "If-None-Match"), etag)) {
        spool_close(r->worker->loop, res->fd);
        http_respond(r, 304, NULL, NULL, 0, false);
        return;
    }
    uint64_t first = 0, last = res->size ? res->size - 1 : 0;
    const char *if_range = api_req_header(r, "If-Range");
    int range = if_range && strcmp(if_range, etag)
                    ? FILE_RANGE_NONE
                    : file_range_parse(api_req_header(r, "Range"), res->size, &first, &last);
    char cr[80];
    if (range == FILE_RANGE_UNSATISFIABLE) {
        spool_close(r->worker->loop, res->fd);
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)res->size);
        http_add_header(r, "Content-Range", cr);
        http_respond_error(r, 416, "range_not_satisfiable", "the range is outside the file", NULL);
        return;
    }
    if (range == FILE_RANGE_ONE) {
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)res->size);
        http_add_header(r, "Content-Range", cr);
    }
    struct file_send *f = xcalloc(1, sizeof(*f));
    f->req = r;
    f->fd = res->fd;
    f->off = first;
    f->end = res->size ? last + 1 : 0;
    r->file = f;
    http_respond(r, range == FILE_RANGE_ONE ? 206 : 200, res->content_type, NULL,
                 (size_t)(f->end - f->off), false);
}

int api_res_file(px_req_t *r, const px_file_response_t *resp)
{
    if (!resp || resp->size < offsetof(px_file_response_t, filename) || r->responded)
        return PX_EINVAL;
    px_file_response_t copy = {0};
    memcpy(&copy, resp, resp->size < sizeof(copy) ? resp->size : sizeof(copy));
    file_ask_t *ask = arena_alloc(&r->arena, sizeof(*ask));
    ask->filename =
        copy.filename ? arena_strndup(&r->arena, copy.filename, strlen(copy.filename)) : NULL;
    ask->cache_control =
        copy.cache_control && !strpbrk(copy.cache_control, "\r\n")
            ? arena_strndup(&r->arena, copy.cache_control, strlen(copy.cache_control))
            : "private, no-cache";
    if (!blob_id_valid(copy.blob_id)) {
        http_respond_error(r, 404, NULL, "no such file", NULL);
        return PX_ASYNC;
    }
    if (blob_open_async(r, copy.blob_id, answer, ask))
        http_respond_error(r, 503, NULL, "the file store is busy", NULL);
    return PX_ASYNC;
}
