/* mail_smtp.c — one SMTP transaction through libcurl, blocking, on a mail queue thread.
 *
 * libcurl speaks SMTP with STARTTLS (CURLUSESSL_ALL refuses to go on in clear) or
 * implicit TLS (smtps://), AUTH, and does the dot-stuffing of the DATA phase. Each
 * send is its own connection: mails are few and a relay may drop an idle one, so a
 * pool would buy little and cost a state machine. What this file decides is only
 * the outcome's kind: a 5xx reply is the relay's final word (dead-letter it), anything
 * else (no connection, TLS failure, a timeout, a 4xx) is worth another try later. */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "delivery.h"

int delivery_curl_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

typedef struct upload {
    const char *p;
    size_t left;
} upload_t;

static size_t read_cb(char *buf, size_t size, size_t n, void *ud)
{
    upload_t *u = ud;
    size_t take = size * n < u->left ? size * n : u->left;
    memcpy(buf, u->p, take);
    u->p += take;
    u->left -= take;
    return take;
}

int smtp_send(const smtp_conf_t *c, const char *from, const char *to, const char *msg,
              size_t len, char *err, size_t errlen)
{
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "curl_easy_init failed");
        return SMTP_TRANSIENT;
    }
    char from_b[300], to_b[300], url[800], errbuf[CURL_ERROR_SIZE] = "";
    snprintf(from_b, sizeof from_b, "<%s>", from);
    snprintf(to_b, sizeof to_b, "<%s>", to);
    /* The URL's path is the EHLO name. */
    snprintf(url, sizeof url, "%s/%s", c->url, c->helo[0] ? c->helo : "localhost");
    struct curl_slist *rcpt = curl_slist_append(NULL, to_b);
    upload_t up = {msg, len};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from_b);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &up);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms > 0 ? c->timeout_ms : 30000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    if (c->starttls)
        curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (c->user[0]) {
        curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, c->pass);
    }
    if (c->ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    int out = SMTP_OK;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s (%ld): %s", curl_easy_strerror(rc), code,
                 errbuf[0] ? errbuf : "-");
        out = code >= 500 && code < 600 ? SMTP_PERMANENT : SMTP_TRANSIENT;
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
    return out;
}
