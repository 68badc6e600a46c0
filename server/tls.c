/*
 * tls.c — HTTPS: OpenSSL as a transport under the connection of http.c.
 *
 * The seam. http.c owns the socket, the deadlines and the order of requests, and knows
 * of TLS at three points only: on_read hands the ciphertext it read to tls_conn_input,
 * which decrypts and passes the plaintext on to http_conn_input (where a plain
 * connection's bytes go directly); http_conn_write hands the response to
 * tls_conn_encrypt, which turns it into records, then writes those as it would have
 * written the response; and a lingering close calls tls_conn_shutdown. A writer with bytes
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
 * Tickets. Session resumption is stateless (RFC 5077 tickets, TLS 1.3 PSK tickets): the
 * key that seals a ticket is derived from a secret and the number of the rotation period,
 * HMAC-SHA256(secret, label || period). Every worker, every generation after a reload and
 * every host that shares ticket_key_file derives the same keys without talking to one
 * another, and the key changes on schedule by itself. A ticket is accepted in the period it
 * was issued and the next (and the previous, for a host whose clock is a little ahead);
 * one from the previous period is renewed. Without a key file the secret is random per
 * master start and inherited by the workers it forks.
 *
 * Reload. The files are read by config_load (tls_settings_load), in the master, so a bad
 * certificate fails the reload before any worker starts and the old generation serves on
 * with the old certificate; a good one reaches the new workers as the bytes that were
 * checked.
 */
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "http_internal.h"
#include "log.h"
#include "worker.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Mozilla's "intermediate" configuration (version 5.7) for TLS 1.2; TLS 1.3's suites are
 * OpenSSL's defaults, which are that configuration's as well. */
#define INTERMEDIATE_CIPHERS                                                               \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                           \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                           \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                           \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define GROUPS "X25519:prime256v1:secp384r1"
#define EXPIRY_WARN_DAYS 30
#define TICKET_KEYS 4
#define PLAIN_MAX (16 * 1024) /* one record's plaintext */

typedef struct ticket_key {
    int64_t period;
    bool set;
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
} ticket_key_t;

struct tls_server {
    SSL_CTX *ctx;
    EVP_CIPHER *ticket_cipher; /* fetched once, not by name at every ticket */
    const tls_settings_t *settings;
    int64_t rotation_s;
    ticket_key_t keys[TICKET_KEYS];
};

struct tls_conn {
    SSL *ssl;
    const char *in; /* ciphertext lent by on_read, consumed by the BIO */
    size_t in_len;
    buf_t out;    /* what OpenSSL wrote and nobody has sent yet */
    buf_t *sink;  /* where the BIO appends: &out, or a sealing writer's buffer */
    buf_t spare;  /* a response's head buffer, kept for the next swap */
    uv_shutdown_t shutdown;
    bool shut;
};

typedef struct own_write {
    uv_write_t req;
    buf_t buf;
} own_write_t;

static unsigned char seed_secret[32];
static bool seeded;

/* Randomness or HMAC missing from libcrypto: no ticket can be made safely. */
__attribute__((noreturn)) static void crypto_broken(const char *what)
{
    log_error("tls: %s", what);
    abort();
}

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

/* ---- loading and checking the files ---- */

static void openssl_reason(char *err, size_t len, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256];
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "no further detail");
    snprintf(err, len, "%s: %s", what, reason);
    ERR_clear_error();
}

static int read_file(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf_t b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        buf_append(&b, chunk, n);
    bool failed = ferror(fp);
    fclose(fp);
    if (failed) {
        snprintf(err, errlen, "%s: read error", path);
        buf_free(&b);
        return -1;
    }
    buf_append(&b, "", 1); /* PEM readers like a terminated string */
    *data = b.data;
    *len = b.len - 1;
    return 0;
}

static void warn_expiry(const char *path, X509 *leaf)
{
    int days = 0, secs = 0;
    const ASN1_TIME *not_after = X509_get0_notAfter(leaf);
    if (!ASN1_TIME_diff(&days, &secs, NULL, not_after))
        return;
    char when[64] = "?";
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, not_after)) {
        int n = BIO_read(b, when, sizeof(when) - 1);
        when[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    if (days < 0 || (days == 0 && secs < 0))
        log_warn("tls certificate %s EXPIRED on %s: clients will refuse it", path, when);
    else if (days < EXPIRY_WARN_DAYS)
        log_warn("tls certificate %s expires in %d days (%s): renew it", path, days, when);
}

/* The chain (leaf first) and key from memory into `ctx`. */
static int ctx_use_files(SSL_CTX *ctx, const tls_settings_t *t, bool warn, char *err,
                         size_t errlen)
{
    int rc = -1;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    BIO *cb = BIO_new_mem_buf(t->cert_pem, (int)t->cert_pem_len);
    BIO *kb = BIO_new_mem_buf(t->key_pem, (int)t->key_pem_len);
    if (!cb || !kb) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    leaf = PEM_read_bio_X509_AUX(cb, NULL, NULL, NULL);
    if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
        char what[600];
        snprintf(what, sizeof(what), "certificate %s has no usable PEM certificate",
                 t->certificate);
        openssl_reason(err, errlen, what);
        goto fail;
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(cb, NULL, NULL, NULL))) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            openssl_reason(err, errlen, "certificate chain");
            goto fail;
        }
    }
    ERR_clear_error(); /* the end of the PEM file reads as "no start line" */
    key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (!key) {
        char what[600];
        snprintf(what, sizeof(what), "key %s has no usable PEM private key", t->key);
        openssl_reason(err, errlen, what);
        goto fail;
    }
    /* OpenSSL refuses a key of another certificate when it is set, or at the check. */
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        char what[1200];
        snprintf(what, sizeof(what), "key %s does not match certificate %s", t->key,
                 t->certificate);
        openssl_reason(err, errlen, what);
        goto fail;
    }
    if (warn)
        warn_expiry(t->certificate, leaf);
    rc = 0;
fail:
    X509_free(leaf);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

static SSL_CTX *ctx_new(const tls_settings_t *t, bool warn, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        openssl_reason(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* Renegotiation is a denial-of-service lever and HTTP/1.1 has no use for it. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* An idle keep-alive connection holds no read buffer (http.c): nor its SSL. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_dh_auto(ctx, 1);
    const char *ciphers = t->ciphers && *t->ciphers ? t->ciphers : INTERMEDIATE_CIPHERS;
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        char what[600];
        snprintf(what, sizeof(what), "ciphers \"%.400s\" names no cipher OpenSSL knows",
                 ciphers);
        openssl_reason(err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_set1_groups_list(ctx, GROUPS) != 1) {
        openssl_reason(err, errlen, "groups");
        goto fail;
    }
    if (ctx_use_files(ctx, t, warn, err, errlen))
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int load_ocsp(tls_settings_t *t, char *err, size_t errlen)
{
    char *der;
    size_t len;
    if (read_file(t->ocsp_response, &der, &len, err, errlen))
        return -1;
    const unsigned char *p = (const unsigned char *)der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    int status = resp ? OCSP_response_status(resp) : -1;
    OCSP_RESPONSE_free(resp);
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, errlen, "ocsp_response %s: %s", t->ocsp_response,
                 status < 0 ? "not a DER OCSP response" : "the responder did not answer "
                                                          "\"successful\"");
        ERR_clear_error();
        free(der);
        return -1;
    }
    t->ocsp_der = (unsigned char *)der;
    t->ocsp_der_len = len;
    return 0;
}

static int load_ticket_secret(tls_settings_t *t, char *err, size_t errlen)
{
    char *data;
    size_t len;
    if (read_file(t->ticket_key_file, &data, &len, err, errlen))
        return -1;
    int rc = -1;
    if (len < 32) {
        snprintf(err, errlen,
                 "ticket_key_file %s has %zu bytes; it needs at least 32 random ones (make it "
                 "with \"openssl rand 80 > FILE\")",
                 t->ticket_key_file, len);
        goto fail;
    }
    unsigned int n = 0;
    if (!EVP_Digest(data, len, t->ticket_secret, &n, EVP_sha256(), NULL)) {
        openssl_reason(err, errlen, "ticket_key_file");
        goto fail;
    }
    t->ticket_secret_set = true;
    rc = 0;
fail:
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

int tls_settings_load(tls_settings_t *t, char *err, size_t errlen)
{
    if (read_file(t->certificate, &t->cert_pem, &t->cert_pem_len, err, errlen) ||
        read_file(t->key, &t->key_pem, &t->key_pem_len, err, errlen))
        return -1;
    if (t->ocsp_response && load_ocsp(t, err, errlen))
        return -1;
    if (t->ticket_key_file && load_ticket_secret(t, err, errlen))
        return -1;
    if (t->ticket_rotation_ms < 1000) {
        snprintf(err, errlen, "ticket_rotation must be at least 1s");
        return -1;
    }
    SSL_CTX *ctx = ctx_new(t, true, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_free(ctx);
    return 0;
}

void tls_settings_free(tls_settings_t *t)
{
    free(t->certificate);
    free(t->key);
    free(t->ciphers);
    free(t->ticket_key_file);
    free(t->ocsp_response);
    free(t->hsts);
    free(t->cert_pem);
    if (t->key_pem)
        OPENSSL_cleanse(t->key_pem, t->key_pem_len);
    free(t->key_pem);
    free(t->ocsp_der);
    OPENSSL_cleanse(t->ticket_secret, sizeof(t->ticket_secret));
}

/* ---- the worker's context ---- */

void tls_ticket_seed(void)
{
    if (seeded)
        return;
    if (RAND_bytes(seed_secret, sizeof(seed_secret)) != 1)
        crypto_broken("cannot draw a random session ticket secret");
    seeded = true;
}

static void derive(const unsigned char secret[32], const char *label, int64_t period,
                   unsigned char out[32])
{
    unsigned char msg[64];
    size_t n = (size_t)snprintf((char *)msg, sizeof(msg), "panthera ticket %s %lld", label,
                                (long long)period);
    size_t outlen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, 32, msg, n, out, 32, &outlen))
        crypto_broken("HMAC-SHA256 is not available");
}

static const ticket_key_t *ticket_key(tls_server_t *s, int64_t period)
{
    ticket_key_t *k = &s->keys[(uint64_t)period % TICKET_KEYS];
    if (k->set && k->period == period)
        return k;
    const unsigned char *secret =
        s->settings->ticket_secret_set ? s->settings->ticket_secret : seed_secret;
    unsigned char name[32];
    derive(secret, "name", period, name);
    memcpy(k->name, name, sizeof(k->name));
    derive(secret, "hmac", period, k->hmac);
    derive(secret, "aes", period, k->aes);
    k->period = period;
    k->set = true;
    return k;
}

static int ticket_mac_init(EVP_MAC_CTX *hctx, const ticket_key_t *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string("key", (void *)k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket callback: 1 sealed or opened with the current key, 2 opened with a
 * neighbouring period's key (issue a new ticket), 0 unknown key (full handshake), -1
 * error. */
static int on_ticket(SSL *ssl, unsigned char name[16], unsigned char iv[16],
                     EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    tls_server_t *s = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    int64_t now = (int64_t)time(NULL) / s->rotation_s;
    if (enc) {
        const ticket_key_t *k = ticket_key(s, now);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(ectx, s->ticket_cipher, NULL, k->aes, iv) != 1 ||
            ticket_mac_init(hctx, k))
            return -1;
        memcpy(name, k->name, 16);
        return 1;
    }
    static const int64_t tried[] = {0, -1, 1};
    for (size_t i = 0; i < ARRAY_SIZE(tried); i++) {
        const ticket_key_t *k = ticket_key(s, now + tried[i]);
        if (CRYPTO_memcmp(name, k->name, 16))
            continue;
        if (EVP_DecryptInit_ex(ectx, s->ticket_cipher, NULL, k->aes, iv) != 1 ||
            ticket_mac_init(hctx, k))
            return -1;
        return tried[i] == 0 ? 1 : 2;
    }
    return 0;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    UNUSED(ssl);
    UNUSED(arg);
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol, RFC 7301 3.2 */
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* Called only when the client asked for a staple. OpenSSL frees what it is given. */
static int on_status(SSL *ssl, void *arg)
{
    const tls_server_t *s = arg;
    unsigned char *copy = OPENSSL_memdup(s->settings->ocsp_der, s->settings->ocsp_der_len);
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)s->settings->ocsp_der_len);
    return SSL_TLSEXT_ERR_OK;
}

tls_server_t *tls_server_new(const config_t *cfg, char *err, size_t errlen)
{
    const tls_settings_t *t = &cfg->tls;
    if (!t->cert_pem) {
        snprintf(err, errlen, "an ssl listener without a loaded [tls] certificate");
        return NULL;
    }
    tls_ticket_seed(); /* a no-op in a worker the master forked after seeding */
    SSL_CTX *ctx = ctx_new(t, false, err, errlen);
    if (!ctx)
        return NULL;
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (!cipher) {
        openssl_reason(err, errlen, "AES-256-CBC for session tickets");
        SSL_CTX_free(ctx);
        return NULL;
    }
    tls_server_t *s = xcalloc(1, sizeof(*s));
    s->ctx = ctx;
    s->ticket_cipher = cipher;
    s->settings = t;
    s->rotation_s = (int64_t)(t->ticket_rotation_ms / 1000);
    SSL_CTX_set_app_data(ctx, s);
    /* Tickets only: nothing to share between workers but the derived keys. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* A ticket opens until its key's next period ends: one to two periods after issue. */
    SSL_CTX_set_timeout(ctx, (long)(2 * s->rotation_s));
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, s);
    if (t->ocsp_der) {
        SSL_CTX_set_tlsext_status_cb(ctx, on_status);
        SSL_CTX_set_tlsext_status_arg(ctx, s);
    }
    return s;
}

void tls_server_free(tls_server_t *s)
{
    if (!s)
        return;
    SSL_CTX_free(s->ctx);
    EVP_CIPHER_free(s->ticket_cipher);
    OPENSSL_cleanse(s->keys, sizeof(s->keys));
    free(s);
}

/* ---- a connection ---- */

int tls_conn_start(conn_t *c, tls_server_t *s)
{
    SSL *ssl = s ? SSL_new(s->ctx) : NULL;
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
        http_respond_error(r, 400, "bad_request", "the request target cannot be redirected",
                           NULL);
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
