/* tls.h — HTTPS as a transport under a connection (tls.c): [tls]'s files read and checked
 * at configuration load, one SSL_CTX per worker, and per connection an SSL object that
 * turns the socket's ciphertext into the plaintext http.c parses and back. */
#ifndef PX_TLS_H
#define PX_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "util.h"

typedef struct tls_server tls_server_t;
typedef struct tls_conn tls_conn_t;

/* Read [tls]'s certificate chain, key, OCSP response and ticket key file into `t` and
 * check them as a worker would use them (the key matches the certificate, the chain and
 * the cipher list parse). A certificate that expires within 30 days, or has expired, is
 * logged as a warning. Returns 0, or -1 with a sentence naming the file in `err`. */
int tls_settings_load(tls_settings_t *t, char *err, size_t errlen);
/* Frees what config_load put in `t`, the key's bytes wiped first. Accepts a zeroed `t`. */
void tls_settings_free(tls_settings_t *t);

/* [tls:NAME] sections (tls_names.c). config.c opens one at its header, sets its keys with
 * tls_name_set (-1 and a sentence in `err` for an unknown or repeated key or a malformed
 * server name) and calls tls_names_check once every file is read (-1: a section lacks a
 * key, or two claim one server name); tls_settings_load then reads and checks each pair. */
void tls_name_section(tls_settings_t *t, const char *name, const char *file, int line);
int tls_name_set(tls_settings_t *t, const char *name, const char *key, const char *value,
                 char *err, size_t errlen);
int tls_names_check(const tls_settings_t *t, char *err, size_t errlen);
void tls_names_foreach_key(void (*fn)(const char *section, const char *key, void *ud), void *ud);
/* The index of the section whose server_name covers `server_name` (exact names before
 * wildcards), or -1: [tls]'s certificate. */
ssize_t tls_name_match(const tls_name_t *names, size_t n, const char *server_name);
/* Frees t->names (tls_settings_free calls it). */
void tls_names_free(tls_settings_t *t);

/* In the master before the first worker starts: the random secret session tickets are
 * derived from when no ticket_key_file is set, inherited by every worker it forks (and by
 * every generation after a reload), so a ticket one worker issued resumes on another. */
void tls_ticket_seed(void);

/* A worker's context from its configuration. NULL with the reason in `err`. */
tls_server_t *tls_server_new(const config_t *cfg, char *err, size_t errlen);
void tls_server_free(tls_server_t *s);

/* Make `c` an HTTPS connection (before it reads). Returns 0 or PX_ENOMEM-like -1. */
int tls_conn_start(conn_t *c, tls_server_t *s);
/* In the connection's close callback: the SSL object and the buffers. Accepts c->tls NULL. */
void tls_conn_free(conn_t *c);

/* Ciphertext `data` arrived on `c`: run the handshake, and hand what it decrypts to
 * http_conn_input in order. May close `c`. */
void tls_conn_input(conn_t *c, const char *data, size_t len);

/* Encrypt `in` (nin buffers, in order) as application data of `c` and append the records
 * to `out`. For a writer that sends bytes of its own on a TLS connection (a file response
 * cannot use sendfile here: it reads a chunk and seals it). Returns 0 or -1 (the
 * connection is broken; close it). */
int tls_conn_seal(conn_t *c, const uv_buf_t *in, unsigned nin, buf_t *out);
/* tls_conn_seal after whatever OpenSSL left for us to send (handshake messages, session
 * tickets), so that the records keep their order: for writers other than http_conn_write
 * (a stream's pieces, a file response's chunks). 0 or -1 as tls_conn_seal. */
int tls_conn_seal_pending(conn_t *c, const uv_buf_t *in, unsigned nin, buf_t *out);
/* http_conn_write's step for a TLS connection: the response in `bufs` becomes one buffer
 * of records held by `r` (its head buffer is reused, an owned body is freed at once).
 * Returns 0 or -1 as tls_conn_seal. */
int tls_conn_encrypt(conn_t *c, px_req_t *r, uv_buf_t *bufs, unsigned *nbufs);
/* Lingering close on a TLS connection: close_notify, then the TCP FIN once every queued
 * write is out. */
void tls_conn_shutdown(conn_t *c);

/* Per request, before it is routed: Strict-Transport-Security on an HTTPS connection,
 * and on a `redirect` listener the 308 to the https:// URL. Returns true when it
 * answered the request. */
bool tls_request_policy(conn_t *c, px_req_t *r);

#endif
