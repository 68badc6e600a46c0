/* tls_internal.h — what tls.c (the connections) takes from tls_context.c (the files and
 * the context); nothing else includes it. tls.h is the interface for the rest. */
#ifndef PX_TLS_INTERNAL_H
#define PX_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "tls.h"

/* The worker's context, to make a connection's SSL object from. */
SSL_CTX *tls_server_ctx(const tls_server_t *s);

#endif
