/*
 * test_tls.c — server/tls.c without a master: the files checked as config_load checks
 * them (a matching key, a mismatched one, a bad cipher list, a short ticket key file),
 * then a worker on a private loop adopts one end of a socketpair as an ssl listener's
 * connection and an OpenSSL client on the other end handshakes, asks and reads. Two
 * contexts built from one configuration stand for two workers: a ticket one issued
 * resumes on the other, and not on a context with another ticket secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "http.h"
#include "plugin.h"
#include "tls.h"
#include "worker.h"

PX__HIDDEN const px_api_t *px_api = &plugin_api_table;

static uv_loop_t loop;
static config_t *cfg;
static plugin_set_t set;
static worker_t *worker;
static char dir[] = "/tmp/panthera-test-tls-XXXXXX";

static int h_hello(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_send(req, 200, "text/plain", "hello", 5);
}

/* ---- certificates ---- */

static void write_pem(const char *name, EVP_PKEY *key, X509 *cert)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        perror(path);
        exit(2);
    }
    if (key)
        PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL);
    if (cert)
        PEM_write_X509(fp, cert);
    fclose(fp);
}

/* A self-signed P-256 certificate valid for `days`, as NAME.crt and NAME.key. */
static void make_cert(const char *name, int days)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509_sign(x, key, EVP_sha256());
    char file[64];
    snprintf(file, sizeof(file), "%s.crt", name);
    write_pem(file, NULL, x);
    snprintf(file, sizeof(file), "%s.key", name);
    write_pem(file, key, NULL);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void settings_for(tls_settings_t *t, const char *cert, const char *key)
{
    tls_settings_free(t);
    *t = (tls_settings_t){.ticket_rotation_ms = 3600 * 1000};
    t->certificate = xasprintf("%s/%s.crt", dir, cert);
    t->key = xasprintf("%s/%s.key", dir, key);
}

static void test_files_checked(void)
{
    tls_settings_t t = {0};
    char err[1024] = "";
    settings_for(&t, "a", "a");
    CHECK_EQ_INT(tls_settings_load(&t, err, sizeof(err)), 0);

    settings_for(&t, "a", "b");
    CHECK_EQ_INT(tls_settings_load(&t, err, sizeof(err)), -1);
    CHECK(strstr(err, "does not match certificate") != NULL);
    CHECK(strstr(err, "b.key") != NULL);

    settings_for(&t, "a", "a");
    t.ciphers = xstrdup("NO-SUCH-CIPHER");
    CHECK_EQ_INT(tls_settings_load(&t, err, sizeof(err)), -1);
    CHECK(strstr(err, "names no cipher") != NULL);

    settings_for(&t, "a", "a");
    t.ticket_key_file = xasprintf("%s/a.crt.short", dir);
    FILE *fp = fopen(t.ticket_key_file, "w");
    fputs("too short", fp);
    fclose(fp);
    CHECK_EQ_INT(tls_settings_load(&t, err, sizeof(err)), -1);
    CHECK(strstr(err, "at least 32") != NULL);

    settings_for(&t, "missing", "a");
    CHECK_EQ_INT(tls_settings_load(&t, err, sizeof(err)), -1);
    CHECK(strstr(err, "missing.crt") != NULL);
    tls_settings_free(&t);
}

/* ---- a client over a socketpair ---- */

typedef struct client {
    int fd;
    SSL *ssl;
} client_t;

static SSL_CTX *client_ctx;

static void client_open(client_t *cl, tls_server_t *server, SSL_SESSION *resume)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        perror("socketpair");
        exit(2);
    }
    worker->tls = server;
    CHECK_EQ_INT(http_conn_open_listener(worker, sv[0], LISTEN_SSL), 0);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    cl->fd = sv[1];
    cl->ssl = SSL_new(client_ctx);
    SSL_set_fd(cl->ssl, cl->fd);
    SSL_set_alpn_protos(cl->ssl, (const unsigned char *)"\x08http/1.1", 9);
    if (resume)
        SSL_set_session(cl->ssl, resume);
}

static void client_close(client_t *cl)
{
    /* Freed without a shutdown, OpenSSL would mark the session not resumable. */
    SSL_set_shutdown(cl->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(cl->ssl);
    close(cl->fd);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

/* Run the loop while `step` wants to read or write, two seconds at most. */
static int pump(client_t *cl, int (*step)(SSL *, void *), void *arg)
{
    uint64_t deadline = now_ms_monotonic() + 2000;
    for (;;) {
        uv_run(&loop, UV_RUN_NOWAIT);
        int rc = step(cl->ssl, arg);
        if (rc > 0)
            return rc;
        int e = SSL_get_error(cl->ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return -1;
        if (now_ms_monotonic() > deadline)
            return -1;
        poll(NULL, 0, 1);
    }
}

static int step_connect(SSL *ssl, void *arg)
{
    (void)arg;
    return SSL_connect(ssl);
}

typedef struct reading {
    char data[4096];
    size_t len;
} reading_t;

static bool ask(client_t *cl, reading_t *r)
{
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (SSL_write(cl->ssl, req, sizeof(req) - 1) != (int)sizeof(req) - 1)
        return false;
    memset(r, 0, sizeof(*r));
    uint64_t deadline = now_ms_monotonic() + 2000;
    while (!strstr(r->data, "\r\n\r\nhello")) {
        uv_run(&loop, UV_RUN_NOWAIT);
        int n = SSL_read(cl->ssl, r->data + r->len, (int)(sizeof(r->data) - 1 - r->len));
        if (n > 0) {
            r->len += (size_t)n;
            r->data[r->len] = '\0';
            continue;
        }
        int e = SSL_get_error(cl->ssl, n);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
            now_ms_monotonic() > deadline)
            return false;
        poll(NULL, 0, 1);
    }
    return true;
}

static void test_request_over_tls(void)
{
    char err[1024];
    tls_server_t *s = tls_server_new(cfg, err, sizeof(err));
    CHECK_OR_RETURN(s != NULL);
    client_t cl;
    client_open(&cl, s, NULL);
    CHECK(pump(&cl, step_connect, NULL) == 1);
    CHECK(SSL_version(cl.ssl) == TLS1_3_VERSION);
    const unsigned char *alpn;
    unsigned alpn_len;
    SSL_get0_alpn_selected(cl.ssl, &alpn, &alpn_len);
    CHECK(alpn_len == 8 && !memcmp(alpn, "http/1.1", 8));
    reading_t r;
    CHECK(ask(&cl, &r));
    CHECK(!strncmp(r.data, "HTTP/1.1 200 OK\r\n", 17));
    /* Keep-alive: a second request on the same session. */
    CHECK(ask(&cl, &r));
    client_close(&cl);
    tls_server_free(s);
    worker->tls = NULL;
}

/* A TLS 1.3 ticket arrives after the handshake: read an answer, then take the session. */
static SSL_SESSION *session_from(tls_server_t *s, bool *reused, SSL_SESSION *resume)
{
    client_t cl;
    client_open(&cl, s, resume);
    SSL_SESSION *sess = NULL;
    reading_t r;
    if (pump(&cl, step_connect, NULL) == 1 && ask(&cl, &r)) {
        *reused = SSL_session_reused(cl.ssl);
        sess = SSL_get1_session(cl.ssl);
    }
    client_close(&cl);
    return sess;
}

static void test_ticket_resumes_on_another_worker(void)
{
    char err[1024];
    tls_server_t *a = tls_server_new(cfg, err, sizeof(err));
    tls_server_t *b = tls_server_new(cfg, err, sizeof(err));
    config_t *other = config_new_defaults();
    other->tls = cfg->tls; /* borrowed, bar the secret */
    other->tls.ticket_secret_set = true;
    memset(other->tls.ticket_secret, 7, sizeof(other->tls.ticket_secret));
    tls_server_t *c = tls_server_new(other, err, sizeof(err));
    CHECK_OR_RETURN(a && b && c);

    bool reused = true;
    SSL_SESSION *first = session_from(a, &reused, NULL);
    CHECK_OR_RETURN(first != NULL);
    CHECK(!reused);
    CHECK(SSL_SESSION_has_ticket(first));
    SSL_SESSION *again = session_from(b, &reused, first);
    CHECK(reused);
    SSL_SESSION_free(again);
    again = session_from(c, &reused, first);
    CHECK(!reused);
    SSL_SESSION_free(again);
    SSL_SESSION_free(first);

    tls_server_free(a);
    tls_server_free(b);
    tls_server_free(c);
    other->tls = (tls_settings_t){0};
    config_free(other);
    worker->tls = NULL;
}

/* With a 1 s rotation: a ticket from period p resumes in p + 1 (the neighbour's key), and
 * not from p + 2 on. The clock is read around each handshake and a handshake that
 * straddled a period boundary is tried again, so no timing is assumed. */
static void test_ticket_keys_rotate(void)
{
    char err[1024];
    config_t *fast = config_new_defaults();
    fast->tls = cfg->tls; /* borrowed */
    fast->tls.ticket_rotation_ms = 1000;
    tls_server_t *s = tls_server_new(fast, err, sizeof(err));
    CHECK_OR_RETURN(s != NULL);
    bool reused = false, checked_next = false, checked_late = false;
    for (int attempt = 0; attempt < 10 && !(checked_next && checked_late); attempt++) {
        time_t p0 = time(NULL);
        SSL_SESSION *first = session_from(s, &reused, NULL);
        if (!first || time(NULL) != p0) {
            SSL_SESSION_free(first);
            continue;
        }
        while (time(NULL) == p0)
            poll(NULL, 0, 20);
        SSL_SESSION *next = session_from(s, &reused, first);
        if (time(NULL) == p0 + 1) {
            CHECK(reused);
            checked_next = true;
        }
        SSL_SESSION_free(next);
        while (time(NULL) < p0 + 2)
            poll(NULL, 0, 20);
        next = session_from(s, &reused, first);
        CHECK(!reused);
        checked_late = true;
        SSL_SESSION_free(next);
        SSL_SESSION_free(first);
    }
    CHECK(checked_next && checked_late);
    tls_server_free(s);
    fast->tls = (tls_settings_t){0};
    config_free(fast);
    worker->tls = NULL;
}

static void test_garbage_closes(void)
{
    char err[1024];
    tls_server_t *s = tls_server_new(cfg, err, sizeof(err));
    CHECK_OR_RETURN(s != NULL);
    client_t cl;
    client_open(&cl, s, NULL);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(cl.fd, junk, sizeof(junk) - 1) == (ssize_t)sizeof(junk) - 1);
    size_t before = worker->nconns;
    uint64_t deadline = now_ms_monotonic() + 2000;
    while (worker->nconns == before && now_ms_monotonic() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    CHECK_EQ_INT(worker->nconns, before - 1);
    client_close(&cl);
    tls_server_free(s);
    worker->tls = NULL;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    make_cert("a", 90);
    make_cert("b", 90);
    uv_loop_init(&loop);
    cfg = config_new_defaults();
    settings_for(&cfg->tls, "a", "a");
    char err[1024];
    if (tls_settings_load(&cfg->tls, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    plugin_set_init(&set);
    plugin_host_route(&set, "GET", "/hello", h_hello, NULL);
    worker = worker_new(&loop, cfg, &set);
    client_ctx = SSL_CTX_new(TLS_client_method());

    RUN(test_files_checked);
    RUN(test_request_over_tls);
    RUN(test_ticket_resumes_on_another_worker);
    RUN(test_ticket_keys_rotate);
    RUN(test_garbage_closes);

    SSL_CTX_free(client_ctx);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_finish();
}
