/* webhook_addr.c — the addresses a webhook may reach: public unicast only.
 *
 * A webhook URL is chosen by a user, and the server then connects to it from inside
 * the network: without a check that is a way to reach the metadata service
 * (169.254.169.254), the database, or anything on loopback (server-side request
 * forgery). The check runs on the ADDRESS, not the name, both at registration and at
 * every send, and the send connects to exactly the address it checked (see
 * webhook_http.c), so a name that resolves differently the second time (DNS
 * rebinding) gains nothing. IPv6 forms that carry an IPv4 address (mapped ::ffff:a.b.c.d,
 * compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "delivery.h"

static const char *v4_refused(uint32_t a, int allow_loopback)
{
    static const struct {
        uint32_t net;
        int bits;
        const char *why;
    } blocked[] = {
        {0x00000000, 8, "unspecified"},      /* 0/8 "this network" */
        {0x0a000000, 8, "private"},          /* 10/8 */
        {0x64400000, 10, "shared address space"}, /* 100.64/10 CGNAT */
        {0x7f000000, 8, "loopback"},         /* 127/8 */
        {0xa9fe0000, 16, "link-local"},      /* 169.254/16, the metadata address in it */
        {0xac100000, 12, "private"},         /* 172.16/12 */
        {0xc0000000, 24, "reserved"},        /* 192.0.0/24 IETF protocol assignments */
        {0xc0000200, 24, "documentation"},   /* 192.0.2/24 */
        {0xc0586300, 24, "reserved"},        /* 192.88.99/24 6to4 relay */
        {0xc0a80000, 16, "private"},         /* 192.168/16 */
        {0xc6120000, 15, "benchmarking"},    /* 198.18/15 */
        {0xc6336400, 24, "documentation"},   /* 198.51.100/24 */
        {0xcb007100, 24, "documentation"},   /* 203.0.113/24 */
        {0xe0000000, 4, "multicast"},        /* 224/4 */
        {0xf0000000, 4, "reserved"},         /* 240/4 and the broadcast address */
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        uint32_t mask = 0xffffffffu << (32 - blocked[i].bits);
        if ((a & mask) == blocked[i].net) {
            if (allow_loopback && blocked[i].net == 0x7f000000)
                return NULL;
            return blocked[i].why;
        }
    }
    return NULL;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *v6_refused(const unsigned char *b, int allow_loopback)
{
    static const unsigned char zero[16] = {0};
    if (!memcmp(b, zero, 16))
        return "unspecified";
    if (!memcmp(b, zero, 15) && b[15] == 1)
        return allow_loopback ? NULL : "loopback";
    /* ::ffff:a.b.c.d (mapped) */
    if (!memcmp(b, zero, 10) && b[10] == 0xff && b[11] == 0xff)
        return v4_refused(be32(b + 12), allow_loopback);
    /* ::a.b.c.d (deprecated IPv4-compatible): judged by the IPv4, and refused anyway
     * when that is public, since nothing legitimate uses the form any more. */
    if (!memcmp(b, zero, 12)) {
        const char *why = v4_refused(be32(b + 12), allow_loopback);
        return why ? why : "reserved";
    }
    /* 64:ff9b::/96 NAT64 */
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!memcmp(b, nat64, 12))
        return v4_refused(be32(b + 12), allow_loopback);
    /* 2002::/16 6to4: the IPv4 is in bytes 2..5 */
    if (b[0] == 0x20 && b[1] == 0x02)
        return v4_refused(be32(b + 2), allow_loopback);
    if ((b[0] & 0xfe) == 0xfc)
        return "unique local"; /* fc00::/7, AWS's fd00:ec2::254 metadata among them */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local"; /* fe80::/10 */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return "site-local"; /* fec0::/10 */
    if (b[0] == 0xff)
        return "multicast";
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return "documentation"; /* 2001:db8::/32 */
    if (b[0] == 0x01 && b[1] == 0x00 && !memcmp(b + 2, zero, 6))
        return "reserved"; /* 100::/64 discard */
    if ((b[0] & 0xe0) != 0x20)
        return "reserved"; /* only 2000::/3 is global unicast */
    return NULL;
}

const char *webhook_addr_refused(const struct sockaddr *sa, int allow_loopback)
{
    if (!sa)
        return "unspecified";
    if (sa->sa_family == AF_INET)
        return v4_refused(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr),
                          allow_loopback);
    if (sa->sa_family == AF_INET6)
        return v6_refused(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, allow_loopback);
    return "reserved";
}

int webhook_url_parse(const char *url, webhook_url_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    *why = "is not a valid URL";
    if (!url || strlen(url) > 2000)
        return -1;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 32 || *p >= 127)
            return -1;
    CURLU *h = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *port = NULL,
         *fragment = NULL;
    int rc = -1;
    if (!h || curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto done;
    if (strcmp(scheme, "https") && strcmp(scheme, "http")) {
        *why = "must be an https URL";
        goto done;
    }
    out->https = !strcmp(scheme, "https");
    if (curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(h, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
        *why = "must not carry credentials";
        goto done;
    }
    if (curl_url_get(h, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK) {
        *why = "must not have a fragment";
        goto done;
    }
    if (curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto done;
    out->port = atoi(port);
    size_t hl = strlen(host);
    const char *hp = host;
    if (hl >= 2 && host[0] == '[') {
        hp = host + 1;
        hl -= 2;
        if (memchr(hp, '%', hl)) {
            *why = "must not name a zone";
            goto done;
        }
    }
    if (hl == 0 || hl >= sizeof out->host || out->port <= 0 || out->port > 65535)
        goto done;
    memcpy(out->host, hp, hl);
    out->host[hl] = '\0';
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_free(port);
    curl_free(fragment);
    curl_url_cleanup(h);
    return rc;
}

int webhook_resolve_checked(const webhook_url_t *u, int allow_loopback, char addr[64],
                            const char **why)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(u->host, NULL, &hints, &res) != 0 || !res) {
        *why = "does not resolve";
        return -1;
    }
    int rc = 0;
    /* Every answer must pass: a name with one public and one private address would
     * otherwise let curl (or a later resolver) pick the private one. */
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        const char *r = webhook_addr_refused(a->ai_addr, allow_loopback);
        if (r) {
            *why = r;
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        const void *src = res->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
        if (!inet_ntop(res->ai_family, src, addr, 64)) {
            *why = "does not resolve";
            rc = -1;
        }
    }
    /* Plain http only to loopback, and only with the test allowance: anywhere else the
     * body and its signature would cross a network in the clear. */
    if (rc == 0 && !u->https) {
        struct sockaddr_storage ss;
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        if (!allow_loopback || webhook_addr_refused((struct sockaddr *)&ss, 0) == NULL) {
            *why = "must be an https URL";
            rc = -1;
        }
    }
    freeaddrinfo(res);
    return rc;
}
