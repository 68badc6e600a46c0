/*
 * tls.c — HTTPS connections: OpenSSL as a transport under the connection of http.c.
 *
 * The seam. http.c owns the socket, the deadlines and the order of requests, and knows
 * of TLS at a few points only: on_read hands the ciphertext it read to tls_conn_input,
 * which decrypts and passes the plaintext on to http_conn_input (where a plain
 * connection's bytes go directly); http_conn_write hands the response to
 * tls_conn_encrypt, which turns it into records, then writes those as it would have
 * written the response; a lingering close calls tls_conn_shutdown; dispatch lets
 * tls_request_policy add HSTS or answer with the redirect. A writer with bytes
 * of its own (a file, a stream) seals them with tls_conn_seal instead of writing them.
 *
 * Memory BIOs. The SSL object never sees the socket. Its BIO (one of ours, both ways) reads
 * from the buffer libuv just filled, without copying it in first, and appends what OpenSSL
 * writes to a buf_t. Encrypting a response therefore costs what encryption needs: OpenSSL
 * seals each record into its own buffer and that is appended once to ours, which then goes
 * to the socket. The response's head buffer is swapped for the records (it is reused by
 * the next response of the pooled request), and an owned body is freed as soon as it is
 * sealed, so a big answer does not sit in memory twice while the client reads it.
 *
 * Our own writes. The handshake, session tickets, alerts and close_notify are written by
 * this file (uv_try_write, else a uv_write carrying the buffer it owns). libuv keeps a
 * stream's writes in order and uv_try_write refuses while any are queued, so these and
 * the responses leave in the order OpenSSL produced them.
 *
 * Deadlines. A new connection starts under the header deadline (http.c) and nothing moves
 * it until the first plaintext arrives, so a slow or stalled handshake is closed at
 * header_timeout like a slow request head.
 *
 * The files, the context and the tickets are tls_context.c's.
 */
#include "tls_internal.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http_internal.h"
#include "log.h"
#include "worker.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define PLAIN_MAX (16 * 1024) /* one record's plaintext */

struct tls_conn {
    SSL *ssl;
    const char *in; /* ciphertext lent by on_read, consumed by the BIO */
    size_t in_len;
    buf_t out;   /* what OpenSSL wrote and nobody has sent yet */
    buf_t *sink; /* where the BIO appends: &out, or a sealing writer's buffer */
    buf_t spare; /* a response's head buffer, kept for the next swap */
    uv_shutdown_t shutdown;
    bool shut;
};

typedef struct own_write {
    uv_write_t req;
    buf_t buf;
} own_write_t;

/* ---- the BIO ---- */

static int bio_write(BIO *b, const char *data, int len)
{
    tls_conn_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    buf_append(t->sink, data, (size_t)len);
    return len;
}

static int bio_read(BIO *b, char *data, int len)
{
    tls_conn_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
    memcpy(data, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    UNUSED(b);
    UNUSED(num);
    UNUSED(ptr);
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method(void)
{
    static BIO_METHOD *m;
    if (!m) {
        m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "panthera connection");
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_ctrl(m, bio_ctrl);
        BIO_meth_set_create(m, bio_create);
    }
    return m;
}

/* ---- a connection ---- */

int tls_conn_start(conn_t *c, tls_server_t *s)
{
    SSL *ssl = s ? SSL_new(tls_server_ctx(s)) : NULL;
    BIO *bio = ssl ? BIO_new(bio_method()) : NULL;
    if (!bio) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    tls_conn_t *t = xcalloc(1, sizeof(*t));
    t->ssl = ssl;
    t->sink = &t->out;
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_accept_state(ssl);
    c->tls = t;
    return 0;
}

void tls_conn_free(conn_t *c)
{
    tls_conn_t *t = c->tls;
    if (!t)
        return;
    SSL_free(t->ssl);
    buf_free(&t->out);
    buf_free(&t->spare);
    free(t);
    c->tls = NULL;
}

static void on_own_write(uv_write_t *req, int status)
{
    own_write_t *w = container_of(req, own_write_t, req);
    conn_t *c = req->handle->data;
    buf_free(&w->buf);
    free(w);
    /* UV_ECANCELED: the connection is being closed (and is freed after this). */
    if (status < 0 && status != UV_ECANCELED && !c->closing)
        http_conn_close(c);
}

/* Send what OpenSSL wrote on its own (handshake, tickets, alerts). */
static void flush(conn_t *c)
{
    tls_conn_t *t = c->tls;
    if (t->out.len == 0 || c->closing) {
        t->out.len = 0;
        return;
    }
    uv_stream_t *stream = (uv_stream_t *)&c->tcp;
    uv_buf_t b = uv_buf_init(t->out.data, (unsigned)t->out.len);
    int sent = uv_try_write(stream, &b, 1);
    if (sent == (int)t->out.len) {
        t->out.len = 0;
        return;
    }
    if (sent < 0 && sent != UV_EAGAIN) {
        http_conn_close(c);
        return;
    }
    size_t skip = sent > 0 ? (size_t)sent : 0;
    own_write_t *w = xmalloc(sizeof(*w));
    w->buf = t->out;
    t->out = (buf_t){0};
    b = uv_buf_init(w->buf.data + skip, (unsigned)(w->buf.len - skip));
    if (uv_write(&w->req, stream, &b, 1, on_own_write) < 0) {
        buf_free(&w->buf);
        free(w);
        http_conn_close(c);
    }
}

void tls_conn_input(conn_t *c, const char *data, size_t len)
{
    static char plain[PLAIN_MAX]; /* one worker, one loop: lent to the parser per call */
    tls_conn_t *t = c->tls;
    t->in = data;
    t->in_len = len;
    while (!c->closing && !t->shut) {
        int n = SSL_read(t->ssl, plain, sizeof(plain));
        if (n > 0) {
            flush(c); /* tickets go out before the answer to what follows them */
            if (c->closing)
                break;
            http_conn_input(c, plain, (size_t)n);
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) /* close_notify: the FIN follows */
            break;
        /* A malformed or refused handshake (an old protocol, no shared cipher) or a
         * record that does not authenticate: OpenSSL wrote the alert; send it and go. */
        unsigned long code = ERR_peek_error();
        log_debug("tls: %s", code ? ERR_reason_error_string(code) : "connection failed");
        ERR_clear_error();
        flush(c);
        http_conn_close(c);
        break;
    }
    t->in = NULL;
    t->in_len = 0;
    if (!c->closing)
        flush(c);
}

int tls_conn_seal(conn_t *c, const uv_buf_t *in, unsigned nin, buf_t *out)
{
    tls_conn_t *t = c->tls;
    t->sink = out;
    int rc = 0;
    for (unsigned i = 0; i < nin && rc == 0; i++) {
        if (in[i].len == 0)
            continue;
        if (SSL_write(t->ssl, in[i].base, (int)in[i].len) <= 0) {
            ERR_clear_error();
            rc = -1;
        }
    }
    t->sink = &t->out;
    return rc;
}

int tls_conn_seal_pending(conn_t *c, const uv_buf_t *in, unsigned nin, buf_t *out)
{
    tls_conn_t *t = c->tls;
    if (t->out.len) {
        buf_append(out, t->out.data, t->out.len);
        t->out.len = 0;
    }
    return tls_conn_seal(c, in, nin, out);
}

int tls_conn_encrypt(conn_t *c, px_req_t *r, uv_buf_t *bufs, unsigned *nbufs)
{
    tls_conn_t *t = c->tls;
    buf_t sealed = t->spare;
    sealed.len = 0;
    /* Anything OpenSSL left for us to send goes first. */
    if (t->out.len) {
        buf_append(&sealed, t->out.data, t->out.len);
        t->out.len = 0;
    }
    t->spare = (buf_t){0};
    if (tls_conn_seal(c, bufs, *nbufs, &sealed)) {
        buf_free(&sealed);
        return -1;
    }
    t->spare = r->out; /* the plaintext head, sealed now: its buffer serves the next time */
    r->out = sealed;
    if (r->res_body_owned) {
        free(r->res_body);
        r->res_body = NULL;
        r->res_body_owned = false;
    }
    bufs[0] = uv_buf_init(r->out.data, (unsigned)r->out.len);
    *nbufs = 1;
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    UNUSED(req);
    UNUSED(status);
}

void tls_conn_shutdown(conn_t *c)
{
    tls_conn_t *t = c->tls;
    if (t->shut || c->closing)
        return;
    t->shut = true;
    if (SSL_is_init_finished(t->ssl))
        SSL_shutdown(t->ssl);
    ERR_clear_error();
    flush(c);
    if (!c->closing)
        uv_shutdown(&t->shutdown, (uv_stream_t *)&c->tcp, on_shutdown);
}

/* ---- HTTPS policy ---- */

/* The port of the first ssl listener, or 0 when it is 443 (left out of the URL). */
static long https_port(const config_t *cfg)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (cfg->listen_mode[i] != LISTEN_SSL)
            continue;
        const char *colon = strrchr(cfg->listen[i], ':');
        long port = strtol(colon ? colon + 1 : cfg->listen[i], NULL, 10);
        return port == 443 ? 0 : port;
    }
    return 0;
}

/* Only a host name or an address goes into the Location we write. */
static bool host_ok(const char *h, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']'))
            return false;
    }
    return true;
}

static void redirect(px_req_t *r)
{
    const char *host = api_req_header(r, "Host");
    size_t len = host ? strlen(host) : 0;
    /* Drop the plain port: "[::1]:8080" → "[::1]", "example.org:80" → "example.org". */
    const char *colon = host ? strrchr(host, ':') : NULL;
    if (colon && !strchr(colon, ']'))
        len = (size_t)(colon - host);
    if (!host || !host_ok(host, len)) {
        http_respond_error(r, 400, "bad_request",
                           "this address only redirects to HTTPS and needs a valid Host header",
                           NULL);
        return;
    }
    long port = https_port(r->worker->cfg);
    char portpart[16] = "";
    if (port)
        snprintf(portpart, sizeof(portpart), ":%ld", port);
    const char *target = r->head.data + r->url_off;
    char *location = arena_alloc(&r->arena, len + strlen(portpart) + r->url_len + 16);
    sprintf(location, "https://%.*s%s%.*s", (int)len, host, portpart, (int)r->url_len, target);
    if (http_add_header(r, "Location", location)) {
        http_respond_error(r, 400, "bad_request", "the request target cannot be redirected", NULL);
        return;
    }
    http_respond(r, 308, NULL, (char *)"", 0, false); /* not NULL: the body is copied */
}

bool tls_request_policy(conn_t *c, px_req_t *r)
{
    if (c->listen_mode == LISTEN_REDIRECT) {
        redirect(r);
        return true;
    }
    const char *hsts = r->worker->cfg->tls.hsts;
    if (c->tls && hsts && *hsts)
        http_add_header(r, "Strict-Transport-Security", hsts);
    return false;
}
