/* test_delivery.c — the notification plugin's pure delivery modules: MIME composition
 * and header injection, RFC 2047, the unsubscribe token, the webhook signature and the
 * address classifier. (Sending through a relay and to a receiver is proven end to end
 * by tests/api/test_notification_mail.py and test_notification_webhook.py.) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/hmac.h>

#include "../../../tests/unit/check.h"
#include "../delivery.h"

/* The header block of a composed message (up to the blank line), NUL-terminated. */
static char *headers_of(const char *msg)
{
    const char *end = strstr(msg, "\r\n\r\n");
    size_t n = end ? (size_t)(end - msg) + 2 : strlen(msg);
    char *h = malloc(n + 1);
    memcpy(h, msg, n);
    h[n] = '\0';
    return h;
}

/* 1 when some line of `headers` starts a header named `name` (case-insensitive). */
static int has_header(const char *headers, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = headers; l && *l; l = strstr(l, "\r\n") ? strstr(l, "\r\n") + 2 : NULL)
        if (!strncasecmp(l, name, n) && l[n] == ':')
            return 1;
    return 0;
}

/* Every line ends in CRLF, no bare CR or LF, none longer than 998. */
static int lines_sane(const char *msg, size_t len)
{
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\r') {
            if (i + 1 >= len || msg[i + 1] != '\n')
                return 0;
            i++;
            col = 0;
        } else if (msg[i] == '\n') {
            return 0;
        } else if (++col > 998) {
            return 0;
        }
    }
    return 1;
}

static void test_injection(void)
{
    const char *evil[] = {
        "Hello\r\nBcc: victim@example.com",
        "Hello\nBcc: victim@example.com",
        "Hello\rBcc: victim@example.com",
        "Hello\302\205Bcc: victim@example.com", /* U+0085 NEL */
        "Caf\xc3\xa9\r\nBcc: victim@example.com",
        "=?UTF-8?B?DQpCY2M6IHhAeA==?=",
        "\r\n\r\nbody injection",
    };
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        const char *extra[] = {"X-Panthera-Project", evil[i], NULL};
        mail_msg_t m = {.from_addr = "noreply@panthera.test", .from_name = evil[i],
                        .to_addr = "alice@example.com", .to_name = evil[i],
                        .subject = evil[i], .text = "hi",
                        .unsubscribe_url = "https://x.test/u?token=a.b",
                        .message_id_local = "k1", .message_id_domain = "panthera.test",
                        .date = 0, .extra_headers = extra};
        size_t len = 0;
        const char *err = NULL;
        char *msg = mail_compose(&m, &len, &err);
        CHECK_OR_RETURN(msg);
        char *h = headers_of(msg);
        CHECK(!has_header(h, "Bcc"));
        CHECK(!strstr(h, "\r\n\r\n"));
        CHECK(lines_sane(msg, len));
        CHECK(has_header(h, "List-Unsubscribe"));
        CHECK(strstr(h, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n") != NULL);
        CHECK(strstr(h, "Content-Type: text/plain; charset=UTF-8\r\n") != NULL);
        free(h);
        free(msg);
    }
}

static void test_addresses(void)
{
    CHECK(mail_address_ok("a@b.c"));
    CHECK(mail_address_ok("first.last+tag@example.co.uk"));
    CHECK(!mail_address_ok("a@b.c\r\nBcc: x@y"));
    CHECK(!mail_address_ok("a b@c.d"));
    CHECK(!mail_address_ok("<a@b.c>"));
    CHECK(!mail_address_ok("a@b.c,d@e.f"));
    CHECK(!mail_address_ok("noat"));
    CHECK(!mail_address_ok("a@"));
    CHECK(!mail_address_ok("@b"));
    CHECK(!mail_address_ok("a@b@c"));
    mail_msg_t m = {.from_addr = "x@y.z", .to_addr = "bad\naddr@x.y", .subject = "s"};
    size_t len;
    const char *err = NULL;
    CHECK(mail_compose(&m, &len, &err) == NULL && err && !strcmp(err, "to address"));
}

static void test_rfc2047(void)
{
    char *v = mail_header_value("Plain subject", 9);
    CHECK(v && !strcmp(v, "Plain subject"));
    free(v);
    v = mail_header_value("Caf\xc3\xa9", 9);
    CHECK(v && !strcmp(v, "=?UTF-8?B?Q2Fmw6k=?="));
    free(v);
    /* Long non-ASCII text: several words, each at most 75 characters, folded, and no
     * word splits a character (each decodes to valid UTF-8 on its own). */
    char big[400] = "";
    for (int i = 0; i < 60; i++)
        strcat(big, "\xc3\xa9"); /* 60 x e-acute */
    strcat(big, "\xe2\x82\xac\xe2\x82\xac");
    v = mail_header_value(big, 9);
    CHECK_OR_RETURN(v);
    int words = 0;
    for (char *w = strstr(v, "=?UTF-8?B?"); w; w = strstr(w + 1, "=?UTF-8?B?")) {
        char *e = strstr(w, "?=");
        CHECK(e && e - w + 2 <= 75);
        words++;
    }
    CHECK(words >= 3);
    CHECK(!strchr(v, '\n') || strstr(v, "\r\n ") != NULL);
    free(v);
    /* Invalid UTF-8 becomes U+FFFD, so every word is valid UTF-8. */
    v = mail_header_value("a\xff", 0);
    CHECK(v && !strcmp(v, "=?UTF-8?B?Ye+/vQ==?="));
    free(v);
    /* A long ASCII value folds at spaces. */
    char words_ascii[300] = "";
    for (int i = 0; i < 30; i++)
        strcat(words_ascii, "abcdefgh ");
    v = mail_header_value(words_ascii, 9);
    CHECK(v && strstr(v, "\r\n ") != NULL);
    free(v);
}

static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
#define USER "0b9c1a7e-4f1d-4a57-9c33-0a1b2c3d4e5f"

static void test_token(void)
{
    char *t = unsub_token_make(key, 32, USER, "task.assigned", 2000);
    CHECK_OR_RETURN(t);
    char u[37], ty[UNSUB_TYPES_MAX];
    CHECK(unsub_token_check(key, 32, t, 1000, u, ty) == 0);
    CHECK(!strcmp(u, USER) && !strcmp(ty, "task.assigned"));
    /* Expired. */
    CHECK(unsub_token_check(key, 32, t, 2001, u, ty) == -1);
    /* Another key. */
    CHECK(unsub_token_check((const unsigned char *)"another key, 32 bytes long......", 32, t,
                            1000, u, ty) == -1);
    /* Every single-character change is refused. */
    size_t n = strlen(t);
    int all = 1;
    for (size_t i = 0; i < n; i++) {
        char saved = t[i];
        t[i] = saved == 'A' ? 'B' : 'A';
        if (unsub_token_check(key, 32, t, 1000, u, ty) == 0)
            all = 0;
        t[i] = saved;
    }
    CHECK(all);
    /* A payload naming another type with the old signature. */
    char *other = unsub_token_make(key, 32, USER, "task.commented", 2000);
    CHECK_OR_RETURN(other);
    char mixed[600];
    snprintf(mixed, sizeof mixed, "%.*s%s", (int)(strchr(other, '.') - other), other,
             strchr(t, '.'));
    CHECK(unsub_token_check(key, 32, mixed, 1000, u, ty) == -1);
    CHECK(unsub_token_check(key, 32, "", 1000, u, ty) == -1);
    CHECK(unsub_token_check(key, 32, "a.b.c", 1000, u, ty) == -1);
    CHECK(unsub_token_check(key, 32, "%%%.!!", 1000, u, ty) == -1);
    CHECK(unsub_token_make(key, 32, "not-a-uuid", "t", 2000) == NULL);
    CHECK(unsub_token_make(key, 32, USER, "Bad Type", 2000) == NULL);
    CHECK(unsub_token_make(key, 8, USER, "t", 2000) == NULL);
    CHECK(unsub_token_make(key, 32, USER, "a,,b", 2000) == NULL);
    CHECK(unsub_token_make(key, 32, USER, "a,", 2000) == NULL);
    char *multi = unsub_token_make(key, 32, USER, "task.assigned,post.liked", 2000);
    CHECK(multi && unsub_token_check(key, 32, multi, 1000, u, ty) == 0 &&
          !strcmp(ty, "task.assigned,post.liked"));
    free(multi);
    free(other);
    free(t);
}

static void test_signature(void)
{
    char sig[WEBHOOK_SIG_MAX];
    const char *body = "{\"a\":1}";
    CHECK_OR_RETURN(webhook_signature("whsec_test", 1700000000, body, strlen(body), sig) == 0);
    /* The same MAC computed independently, over "<t>.<body>". */
    unsigned char mac[32];
    unsigned int len = 0;
    const char *signed_text = "1700000000.{\"a\":1}";
    HMAC(EVP_sha256(), "whsec_test", 10, (const unsigned char *)signed_text,
         strlen(signed_text), mac, &len);
    char want[WEBHOOK_SIG_MAX], *o = want + sprintf(want, "t=1700000000,v1=");
    for (int i = 0; i < 32; i++)
        o += sprintf(o, "%02x", mac[i]);
    CHECK(!strcmp(sig, want));
    char s1[WEBHOOK_SECRET_LEN + 1], s2[WEBHOOK_SECRET_LEN + 1];
    CHECK(webhook_secret_new(s1) == 0 && webhook_secret_new(s2) == 0);
    CHECK(strlen(s1) == WEBHOOK_SECRET_LEN && !strncmp(s1, "whsec_", 6) && strcmp(s1, s2));
}

static const char *refused(const char *text, int allow)
{
    struct sockaddr_storage ss = {0};
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
            return "unparsable";
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
            return "unparsable";
    }
    return webhook_addr_refused((struct sockaddr *)&ss, allow);
}

static void test_addr_classifier(void)
{
    const char *bad[] = {"127.0.0.1", "127.5.6.7", "0.0.0.0", "10.1.2.3", "172.16.0.1",
                         "172.31.255.255", "192.168.1.1", "169.254.169.254", "169.254.0.1",
                         "100.64.0.1", "100.127.255.255", "224.0.0.1", "255.255.255.255",
                         "240.0.0.1", "198.18.0.1", "192.0.2.1", "::1", "::", "::ffff:127.0.0.1",
                         "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
                         "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "fe80::1", "fc00::1",
                         "fd00:ec2::254", "ff02::1", "fec0::1", "2001:db8::1", "100::1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = refused(bad[i], 0);
        if (!check_report(why != NULL && strcmp(why, "unparsable"), __FILE__, __LINE__))
            fprintf(stderr, "%s was allowed\n", bad[i]);
    }
    const char *good[] = {"93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1",
                          "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:0808:0808::1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *why = refused(good[i], 0);
        if (!check_report(why == NULL, __FILE__, __LINE__))
            fprintf(stderr, "%s was refused: %s\n", good[i], why);
    }
    CHECK(!strcmp(refused("169.254.169.254", 0), "link-local"));
    /* The test allowance opens loopback and nothing else. */
    CHECK(refused("127.0.0.1", 1) == NULL);
    CHECK(refused("::1", 1) == NULL);
    CHECK(refused("::ffff:127.0.0.1", 1) == NULL);
    CHECK(refused("10.0.0.1", 1) != NULL);
    CHECK(refused("169.254.169.254", 1) != NULL);
}

static void test_url(void)
{
    webhook_url_t u;
    const char *why;
    CHECK(webhook_url_parse("https://hooks.example.com/x?y=1", &u, &why) == 0 &&
          !strcmp(u.host, "hooks.example.com") && u.port == 443 && u.https);
    CHECK(webhook_url_parse("https://[::1]:8443/x", &u, &why) == 0 && !strcmp(u.host, "::1") &&
          u.port == 8443);
    CHECK(webhook_url_parse("ftp://x.test/", &u, &why) == -1);
    CHECK(webhook_url_parse("https://user:pw@x.test/", &u, &why) == -1);
    CHECK(webhook_url_parse("https://x.test/#frag", &u, &why) == -1);
    CHECK(webhook_url_parse("https://x.test/\r\n", &u, &why) == -1);
    CHECK(webhook_url_parse("not a url", &u, &why) == -1);
    /* Resolution checks every address; literals need no DNS. */
    char addr[64];
    CHECK(webhook_url_parse("https://127.0.0.1/", &u, &why) == 0);
    CHECK(webhook_resolve_checked(&u, 0, addr, &why) == -1 && !strcmp(why, "loopback"));
    CHECK(webhook_resolve_checked(&u, 1, addr, &why) == 0 && !strcmp(addr, "127.0.0.1"));
    CHECK(webhook_url_parse("http://127.0.0.1:9/", &u, &why) == 0);
    CHECK(webhook_resolve_checked(&u, 1, addr, &why) == 0);
    CHECK(webhook_url_parse("http://8.8.8.8/", &u, &why) == 0);
    CHECK(webhook_resolve_checked(&u, 1, addr, &why) == -1);
    CHECK(webhook_url_parse("https://[::ffff:169.254.169.254]/", &u, &why) == 0);
    CHECK(webhook_resolve_checked(&u, 1, addr, &why) == -1 && !strcmp(why, "link-local"));
    CHECK(webhook_url_parse("https://localhost/", &u, &why) == 0);
    CHECK(webhook_resolve_checked(&u, 0, addr, &why) == -1);
}

int main(void)
{
    RUN(test_injection);
    RUN(test_addresses);
    RUN(test_rfc2047);
    RUN(test_token);
    RUN(test_signature);
    RUN(test_addr_classifier);
    RUN(test_url);
    return check_finish();
}
