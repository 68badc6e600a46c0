/*
 * tls_context.c — what an HTTPS listener is made of: [tls]'s files, read and checked at
 * configuration load, and the SSL_CTX a worker builds from them (protocols, ciphers,
 * ALPN, OCSP stapling, session tickets). The connections are tls.c's.
 *
 * Tickets. Session resumption is stateless (RFC 5077 tickets, TLS 1.3 PSK tickets): the
 * key that seals a ticket is derived from a secret and the number of the rotation period,
 * HMAC-SHA256(secret, label || period). Every worker, every generation after a reload and
 * every host that shares ticket_key_file derives the same keys without talking to one
 * another, and the key changes on schedule by itself. A ticket is accepted in the period it
 * was issued and the next (and the one before, for a host whose clock is a little ahead),
 * so it lives one to two periods; every resumption is handed a fresh ticket. Without a key
 * file the secret is random per master start and inherited by the workers it forks.
 *
 * Reload. The files are read by config_load (tls_settings_load), in the master, so a bad
 * certificate fails the reload before any worker starts and the old generation serves on
 * with the old certificate; a good one reaches the new workers as the bytes that were
 * checked.
 */
#include "tls_internal.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Mozilla's "intermediate" configuration (version 5.7) for TLS 1.2; TLS 1.3's suites are
 * OpenSSL's defaults, which are that configuration's as well. */
#define INTERMEDIATE_CIPHERS                                                                       \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define GROUPS "X25519:prime256v1:secp384r1"
#define EXPIRY_WARN_DAYS 30
#define TICKET_KEYS 4

typedef struct ticket_key {
    int64_t period;
    bool set;
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
} ticket_key_t;

struct tls_server {
    SSL_CTX *ctx;    /* [tls]'s certificate: no server name, or one no [tls:NAME] claims */
    SSL_CTX **named; /* one per [tls:NAME], in cfg->tls.names' order */
    size_t nnamed;
    EVP_CIPHER *ticket_cipher; /* fetched once, not by name at every ticket */
    const tls_settings_t *settings;
    int64_t rotation_s;
    ticket_key_t keys[TICKET_KEYS];
};

static unsigned char seed_secret[32];
static bool seeded;

/* Randomness or HMAC missing from libcrypto: no ticket can be made safely. */
__attribute__((noreturn)) static void crypto_broken(const char *what)
{
    log_error("tls: %s", what);
    abort();
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

/* A certificate chain and its key as read from their files: [tls]'s or a [tls:NAME]'s. */
typedef struct pem_pair {
    const char *certificate, *key; /* the paths, for messages */
    const char *cert_pem, *key_pem;
    size_t cert_pem_len, key_pem_len;
    const char *name; /* the server name the certificate should cover; NULL: any */
} pem_pair_t;

static pem_pair_t default_pair(const tls_settings_t *t)
{
    return (pem_pair_t){t->certificate, t->key, t->cert_pem, t->key_pem, t->cert_pem_len,
                        t->key_pem_len, NULL};
}

static pem_pair_t name_pair(const tls_name_t *n)
{
    return (pem_pair_t){n->certificate, n->key, n->cert_pem, n->key_pem, n->cert_pem_len,
                        n->key_pem_len, n->nserver_names ? n->server_names[0] : NULL};
}

/* A client that asks for `name` and gets a certificate that does not cover it refuses
 * the handshake: worth a warning at load, not an error (the certificate may be renewed
 * with the name before clients come). */
static void warn_name(const pem_pair_t *p, X509 *leaf)
{
    if (!p->name)
        return;
    /* A wildcard name is covered when any one label under it is: probe with one. */
    char probe[300];
    bool wildcard = p->name[0] == '*' && p->name[1] == '.';
    snprintf(probe, sizeof(probe), "%s%s", wildcard ? "sni-probe" : "",
             p->name + (wildcard ? 1 : 0));
    if (X509_check_host(leaf, probe, 0, 0, NULL) != 1)
        log_warn("tls certificate %s does not cover server_name %s: clients asking for it "
                 "will refuse the handshake",
                 p->certificate, p->name);
}

/* The chain (leaf first) and key from memory into `ctx`. */
static int ctx_use_files(SSL_CTX *ctx, const pem_pair_t *t, bool warn, char *err, size_t errlen)
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
    if (warn) {
        warn_expiry(t->certificate, leaf);
        warn_name(t, leaf);
    }
    rc = 0;
fail:
    X509_free(leaf);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

static SSL_CTX *ctx_new(const tls_settings_t *t, const pem_pair_t *pair, bool warn, char *err,
                        size_t errlen)
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
    /* An idle keep-alive connection holds no read buffer (http.c): nor its SSL. The chain
     * sent is the certificate file's, as it stands: without NO_AUTO_CHAIN a file holding
     * only the leaf has OpenSSL build a chain from its (empty) store at every handshake,
     * a verification that finds nothing and costs each full handshake (nginx sets it). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    /* Our BIO lends the whole of what libuv read: let OpenSSL take it in one call rather
     * than a record header, then its body (nginx sets it too). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_dh_auto(ctx, 1);
    const char *ciphers = t->ciphers && *t->ciphers ? t->ciphers : INTERMEDIATE_CIPHERS;
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        char what[600];
        snprintf(what, sizeof(what), "ciphers \"%.400s\" names no cipher OpenSSL knows", ciphers);
        openssl_reason(err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_set1_groups_list(ctx, GROUPS) != 1) {
        openssl_reason(err, errlen, "groups");
        goto fail;
    }
    if (ctx_use_files(ctx, pair, warn, err, errlen))
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
                 status < 0 ? "not a DER OCSP response"
                            : "the responder did not answer "
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

/* Every [tls:NAME]'s pair read and checked as [tls]'s is; the message names the section. */
static int load_names(tls_settings_t *t, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->nnames; i++) {
        tls_name_t *n = &t->names[i];
        char why[600];
        pem_pair_t pair;
        SSL_CTX *ctx = NULL;
        if (read_file(n->certificate, &n->cert_pem, &n->cert_pem_len, why, sizeof(why)) ||
            read_file(n->key, &n->key_pem, &n->key_pem_len, why, sizeof(why)))
            goto fail;
        pair = name_pair(n);
        ctx = ctx_new(t, &pair, true, why, sizeof(why));
        if (!ctx)
            goto fail;
        SSL_CTX_free(ctx);
        continue;
    fail:
        snprintf(err, errlen, "[tls:%s] (%s:%d): %s", n->name, n->file, n->line, why);
        return -1;
    }
    return 0;
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
    pem_pair_t pair = default_pair(t);
    SSL_CTX *ctx = ctx_new(t, &pair, true, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_free(ctx);
    return load_names(t, err, errlen);
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
    tls_names_free(t);
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

/* OpenSSL's ticket callback: 1 sealed, 2 opened (and issue a new one), 0 unknown key (a
 * full handshake), -1 error. Every resumption gets a fresh ticket: a TLS 1.3 client uses
 * a ticket once (OpenSSL's does), and without a new one its next connection would be a
 * full handshake, every other connection (wrk measured exactly that). */
static int on_ticket(SSL *ssl, unsigned char name[16], unsigned char iv[16], EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
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
        return 2;
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

/* What every context of the server shares. A connection switched to a [tls:NAME]'s
 * context by on_servername keeps the default one as its session context, whose ticket
 * callback seals and opens its tickets (so a ticket resumes whichever certificate issued
 * it); ALPN and the staple are asked of the context it ends up with. */
static void ctx_setup(tls_server_t *s, SSL_CTX *ctx)
{
    SSL_CTX_set_app_data(ctx, s);
    /* Tickets only: nothing to share between workers but the derived keys. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* A ticket opens until its key's next period ends: one to two periods after issue. */
    SSL_CTX_set_timeout(ctx, (long)(2 * s->rotation_s));
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, s);
}

/* Early in the ClientHello: a server name a [tls:NAME] claims moves the connection to
 * that certificate; no name, or another one, keeps [tls]'s (the default), as nginx's
 * default server does, rather than refusing the handshake. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    UNUSED(alert);
    tls_server_t *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !s->nnamed)
        return SSL_TLSEXT_ERR_OK;
    ssize_t i = tls_name_match(&s->settings->names[0], s->nnamed, name);
    if (i >= 0 && !SSL_set_SSL_CTX(ssl, s->named[i]))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
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
    pem_pair_t pair = default_pair(t);
    SSL_CTX *ctx = ctx_new(t, &pair, false, err, errlen);
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
    ctx_setup(s, ctx);
    if (t->ocsp_der) {
        SSL_CTX_set_tlsext_status_cb(ctx, on_status);
        SSL_CTX_set_tlsext_status_arg(ctx, s);
    }
    if (t->nnames) {
        s->named = xcalloc(t->nnames, sizeof(*s->named));
        for (; s->nnamed < t->nnames; s->nnamed++) {
            pair = name_pair(&t->names[s->nnamed]);
            SSL_CTX *named = ctx_new(t, &pair, false, err, errlen);
            if (!named) {
                tls_server_free(s);
                return NULL;
            }
            ctx_setup(s, named);
            s->named[s->nnamed] = named;
        }
        SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
        SSL_CTX_set_tlsext_servername_arg(ctx, s);
    }
    return s;
}

void tls_server_free(tls_server_t *s)
{
    if (!s)
        return;
    SSL_CTX_free(s->ctx);
    for (size_t i = 0; i < s->nnamed; i++)
        SSL_CTX_free(s->named[i]);
    free(s->named);
    EVP_CIPHER_free(s->ticket_cipher);
    OPENSSL_cleanse(s->keys, sizeof(s->keys));
    free(s);
}

SSL_CTX *tls_server_ctx(const tls_server_t *s)
{
    return s->ctx;
}
