/* mail_mime.c — composing a mail whose headers no user text can add to.
 *
 * Header injection needs a line break inside a header value. Every value that carries
 * user text (a post title in the subject, a username in a display name) goes through
 * mail_header_value, which turns every control character into a space BEFORE anything
 * else, then encodes what is not printable ASCII as RFC 2047 words; addresses are
 * never encoded but checked (mail_address_ok) and refused. The body is base64, so its
 * lines are ours too (and no line can be a lone "." for SMTP). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delivery.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s) { sb_add(b, s, strlen(s)); }

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *delivery_b64(const unsigned char *in, size_t len, int url)
{
    const char *a = url ? b64_url : b64_std;
    char *out = malloc(4 * ((len + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *o++ = a[v >> 18 & 63];
        *o++ = a[v >> 12 & 63];
        *o++ = a[v >> 6 & 63];
        *o++ = a[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
        *o++ = a[v >> 18 & 63];
        *o++ = a[v >> 12 & 63];
        if (i + 1 < len)
            *o++ = a[v >> 6 & 63];
        else if (!url)
            *o++ = '=';
        if (!url)
            *o++ = '=';
    }
    *o = '\0';
    return out;
}

unsigned char *delivery_b64url_decode(const char *in, size_t *out_len)
{
    size_t n = strlen(in);
    if (n % 4 == 1)
        return NULL;
    unsigned char *out = malloc(n * 3 / 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = in[i] ? strchr(b64_url, in[i]) : NULL;
        if (!p) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (unsigned)(p - b64_url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    /* Leftover bits must be zero: one encoding per byte string, so a token cannot be
     * varied without changing what it says. */
    if (acc & ((1u << bits) - 1)) {
        free(out);
        return NULL;
    }
    *out_len = o;
    return out;
}

int mail_address_ok(const char *addr)
{
    if (!addr)
        return 0;
    size_t n = strlen(addr);
    const char *at = strrchr(addr, '@');
    if (n == 0 || n > 254 || !at || at == addr || at[1] == '\0' || strchr(addr, '@') != at)
        return 0;
    for (const char *p = addr; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 32 || c >= 127 || strchr("\"<>(),;:\\[]", c))
            return 0;
    }
    return at[1] != '.' && addr[n - 1] != '.';
}

/* Length of the UTF-8 sequence at s (1..4), or 0 when it is not a valid one. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && s[0] == 0xe0 && s[1] < 0xa0)
        return 0; /* overlong */
    if (n == 3 && s[0] == 0xed && s[1] >= 0xa0)
        return 0; /* surrogate */
    if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90)))
        return 0;
    return n;
}

/* `text` with controls as spaces and invalid UTF-8 as U+FFFD; *ascii says whether all
 * of it is printable ASCII. Also flags "=?" so a literal encoded-word look-alike is
 * itself encoded rather than decoded by the reader as something else. */
static char *clean(const char *text, int *ascii)
{
    sbuf_t b = {0};
    *ascii = 1;
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    while (*s) {
        size_t n = utf8_len(s);
        if (n == 0) {
            sb_add(&b, "\xef\xbf\xbd", 3);
            *ascii = 0;
            s++;
            continue;
        }
        if (n == 1 && (*s < 32 || *s == 127)) {
            sb_add(&b, " ", 1);
        } else if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0) {
            sb_add(&b, " ", 1); /* C1 controls, U+0085 NEL among them */
        } else if (n == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9)) {
            sb_add(&b, " ", 1); /* LINE / PARAGRAPH SEPARATOR */
        } else {
            if (n > 1)
                *ascii = 0;
            sb_add(&b, (const char *)s, n);
        }
        s += n;
    }
    if (!b.p && !b.oom)
        sb_add(&b, "", 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (strstr(b.p, "=?"))
        *ascii = 0;
    return b.p;
}

char *mail_header_value(const char *text, size_t name_len)
{
    int ascii;
    char *c = clean(text, &ascii);
    if (!c)
        return NULL;
    sbuf_t b = {0};
    size_t col = name_len;
    if (ascii) {
        /* Fold at spaces: a word never splits, a line passes 78 only for a word that
         * long on its own (998 is the hard limit, kept by the 900 cap below). */
        const char *p = c;
        while (*p) {
            const char *sp = strchr(p, ' ');
            size_t w = sp ? (size_t)(sp - p) : strlen(p);
            if (w > 900)
                w = 900;
            if (col + w > 78 && col > name_len) {
                sb_str(&b, "\r\n ");
                col = 1;
            }
            sb_add(&b, p, w);
            col += w;
            p += w;
            if (*p == ' ') {
                sb_add(&b, " ", 1);
                col++;
                p++;
            }
        }
        if (!b.p)
            sb_add(&b, "", 0);
    } else {
        /* =?UTF-8?B?...?= is 12 characters around the base64; 75 in all leaves 63, so
         * at most 45 bytes (60 base64 characters) of whole characters per word. */
        const unsigned char *s = (const unsigned char *)c;
        int first = 1;
        while (*s || first) {
            size_t take = 0;
            while (s[take]) {
                size_t n = utf8_len(s + take);
                if (take + n > 45)
                    break;
                take += n;
            }
            char *enc = delivery_b64(s, take, 0);
            if (!enc) {
                b.oom = 1;
                break;
            }
            if (!first)
                sb_str(&b, "\r\n ");
            sb_str(&b, "=?UTF-8?B?");
            sb_str(&b, enc);
            sb_str(&b, "?=");
            free(enc);
            s += take;
            first = 0;
        }
    }
    free(c);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static void header(sbuf_t *b, const char *name, const char *user_text)
{
    char *v = mail_header_value(user_text, strlen(name) + 2);
    if (!v) {
        b->oom = 1;
        return;
    }
    sb_str(b, name);
    sb_str(b, ": ");
    sb_str(b, v);
    sb_str(b, "\r\n");
    free(v);
}

static void mailbox(sbuf_t *b, const char *name, const char *display, const char *addr)
{
    sb_str(b, name);
    sb_str(b, ": ");
    if (display && *display) {
        char *v = mail_header_value(display, 0);
        if (!v) {
            b->oom = 1;
            return;
        }
        /* An ASCII display name may hold specials (a comma, "<"): quote it, escaping
         * the two characters a quoted-string escapes. Encoded words stay bare. */
        if (strncmp(v, "=?", 2) != 0) {
            sb_str(b, "\"");
            for (const char *p = v; *p; p++) {
                if (*p == '"' || *p == '\\')
                    sb_add(b, "\\", 1);
                sb_add(b, p, 1);
            }
            sb_str(b, "\" ");
        } else {
            sb_str(b, v);
            sb_str(b, " ");
        }
        free(v);
    }
    sb_str(b, "<");
    sb_str(b, addr);
    sb_str(b, ">\r\n");
}

char *mail_compose(const mail_msg_t *m, size_t *len, const char **err)
{
    if (!mail_address_ok(m->from_addr)) {
        *err = "from address";
        return NULL;
    }
    if (!mail_address_ok(m->to_addr)) {
        *err = "to address";
        return NULL;
    }
    sbuf_t b = {0};
    char line[256];
    struct tm tm;
    time_t t = (time_t)m->date;
    gmtime_r(&t, &tm);
    strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S +0000\r\n", &tm);
    sb_str(&b, line);
    mailbox(&b, "From", m->from_name, m->from_addr);
    mailbox(&b, "To", m->to_name, m->to_addr);
    header(&b, "Subject", m->subject);
    /* The Message-ID's parts are ours (a ledger key, the from domain) but go through the
     * same cleaning: nothing reaches a header raw. */
    char *mid_l = mail_header_value(m->message_id_local ? m->message_id_local : "x", 0);
    char *mid_d = mail_header_value(m->message_id_domain ? m->message_id_domain : "localhost", 0);
    if (mid_l && mid_d && !strpbrk(mid_l, " \r\n<>") && !strpbrk(mid_d, " \r\n<>")) {
        sb_str(&b, "Message-ID: <");
        sb_str(&b, mid_l);
        sb_str(&b, "@");
        sb_str(&b, mid_d);
        sb_str(&b, ">\r\n");
    }
    free(mid_l);
    free(mid_d);
    sb_str(&b, "MIME-Version: 1.0\r\n");
    sb_str(&b, "Auto-Submitted: auto-generated\r\n");
    if (m->unsubscribe_url) {
        /* A URL is ours (base URL from config plus a base64url token) but is checked:
         * anything outside printable ASCII, or <>, makes the header go away rather than
         * break. */
        int ok = 1;
        for (const unsigned char *p = (const unsigned char *)m->unsubscribe_url; *p; p++)
            if (*p <= 32 || *p >= 127 || *p == '<' || *p == '>')
                ok = 0;
        if (ok) {
            sb_str(&b, "List-Unsubscribe: <");
            sb_str(&b, m->unsubscribe_url);
            sb_str(&b, ">\r\n");
            sb_str(&b, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
        }
    }
    for (const char *const *h = m->extra_headers; h && h[0] && h[1]; h += 2)
        header(&b, h[0], h[1]);
    sb_str(&b, "Content-Type: text/plain; charset=UTF-8\r\n");
    sb_str(&b, "Content-Transfer-Encoding: base64\r\n\r\n");
    const char *text = m->text ? m->text : "";
    char *body = delivery_b64((const unsigned char *)text, strlen(text), 0);
    if (!body) {
        b.oom = 1;
    } else {
        size_t n = strlen(body);
        for (size_t i = 0; i < n; i += 76) {
            sb_add(&b, body + i, n - i < 76 ? n - i : 76);
            sb_str(&b, "\r\n");
        }
        free(body);
    }
    if (b.oom) {
        free(b.p);
        *err = "out of memory";
        return NULL;
    }
    *len = b.len;
    return b.p;
}
