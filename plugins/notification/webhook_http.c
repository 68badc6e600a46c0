/* webhook_http.c — one webhook POST, blocking, on a webhook queue thread.
 *
 * The address was checked by the caller (webhook_resolve_checked) just before; here
 * CURLOPT_RESOLVE pins host:port to exactly that address, so curl never asks DNS
 * again, and TLS still verifies the certificate against the URL's host name. No
 * redirects (a 3xx to an internal address would undo the check), no proxy from the
 * environment, https only (http only for the loopback test allowance, checked by the
 * caller). */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "delivery.h"

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

long webhook_post(const char *url, const webhook_url_t *u, const char *addr,
                  const char *signature, const char *delivery_id, const char *body,
                  long timeout_ms, char *err, size_t errlen)
{
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -1;
    }
    char pin[400], sig[WEBHOOK_SIG_MAX + 40], did[120], errbuf[CURL_ERROR_SIZE] = "";
    /* An IPv6 address goes in brackets in a CURLOPT_RESOLVE entry. */
    if (strchr(addr, ':'))
        snprintf(pin, sizeof pin, "%s:%d:[%s]", u->host, u->port, addr);
    else
        snprintf(pin, sizeof pin, "%s:%d:%s", u->host, u->port, addr);
    snprintf(sig, sizeof sig, "X-Panthera-Signature: %s", signature);
    snprintf(did, sizeof did, "X-Panthera-Delivery: %s", delivery_id);
    struct curl_slist *resolve = curl_slist_append(NULL, pin);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, sig);
    hdr = curl_slist_append(hdr, did);
    hdr = curl_slist_append(hdr, "User-Agent: Panthera-Webhook/1");
    hdr = curl_slist_append(hdr, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, u->https ? "https" : "http");
    curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    long status = -1;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(err, errlen, "%s: %s", curl_easy_strerror(rc), errbuf[0] ? errbuf : "-");
    curl_slist_free_all(resolve);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return status;
}
