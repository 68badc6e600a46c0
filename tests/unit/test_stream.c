/*
 * test_stream.c — the parts of server/stream.c and server/ticket.c that are text: how an
 * SSE event is written (every line ending splits data, fields that would break the
 * framing are refused) and what a stream ticket is (made, checked, refused when changed,
 * expired or garbled). The streams themselves, on real connections, are tested through
 * tests/api/test_streams.py.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stream.h"
#include "ticket.h"

static char *format(const px_sse_event_t *ev, int *rc)
{
    buf_t out = {0};
    *rc = sse_format(&out, ev);
    char *text = xstrdup(out.data ? out.data : "");
    buf_free(&out);
    return text;
}

static void test_sse_fields(void)
{
    px_sse_event_t ev = PX_SSE_INIT;
    ev.id = "42";
    ev.event = "task.assigned";
    ev.data = "{\"a\":1}";
    ev.data_len = strlen(ev.data);
    ev.retry_ms = 1500;
    int rc;
    char *text = format(&ev, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR(text, "id: 42\nevent: task.assigned\nretry: 1500\ndata: {\"a\":1}\n\n");
    free(text);
}

static void test_sse_data_lines(void)
{
    static const struct {
        const char *data;
        const char *want;
    } cases[] = {
        {"a\nb", "data: a\ndata: b\n\n"},
        {"a\r\nb", "data: a\ndata: b\n\n"},
        {"a\rb", "data: a\ndata: b\n\n"},
        {"a\r\n\r\nb", "data: a\ndata: \ndata: b\n\n"},
        {"a\n\rb", "data: a\ndata: \ndata: b\n\n"},
        {"a\n", "data: a\ndata: \n\n"},
        {"\r", "data: \ndata: \n\n"},
        {"", "data: \n\n"},
        {"x\r", "data: x\ndata: \n\n"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        px_sse_event_t ev = PX_SSE_INIT;
        ev.data = cases[i].data;
        ev.data_len = strlen(cases[i].data);
        int rc;
        char *text = format(&ev, &rc);
        CHECK_EQ_INT(rc, 0);
        CHECK_STR(text, cases[i].want);
        free(text);
    }
    /* Binary-safe length: a NUL inside data is data. */
    px_sse_event_t ev = PX_SSE_INIT;
    ev.data = "a\0b";
    ev.data_len = 3;
    buf_t out = {0};
    CHECK_EQ_INT(sse_format(&out, &ev), 0);
    CHECK_EQ_INT(out.len, 11);
    CHECK(memcmp(out.data, "data: a\0b\n\n", 11) == 0);
    buf_free(&out);
}

static void test_sse_refusals(void)
{
    const char *bad[] = {"a\nb", "a\rb", "\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        px_sse_event_t ev = PX_SSE_INIT;
        ev.id = bad[i];
        int rc;
        char *text = format(&ev, &rc);
        CHECK_EQ_INT(rc, PX_EINVAL);
        CHECK_STR(text, "");
        free(text);
        ev.id = NULL;
        ev.event = bad[i];
        text = format(&ev, &rc);
        CHECK_EQ_INT(rc, PX_EINVAL);
        free(text);
    }
    px_sse_event_t empty = PX_SSE_INIT;
    int rc;
    free(format(&empty, &rc));
    CHECK_EQ_INT(rc, PX_EINVAL);
    px_sse_event_t small = PX_SSE_INIT;
    small.size = 8;
    small.id = "1";
    free(format(&small, &rc));
    CHECK_EQ_INT(rc, PX_EINVAL);
    CHECK_EQ_INT(sse_format(&(buf_t){0}, NULL), PX_EINVAL);
}

static void test_sse_comments(void)
{
    buf_t out = {0};
    CHECK_EQ_INT(sse_format_comment(&out, NULL), 0);
    CHECK_EQ_INT(sse_format_comment(&out, "alive"), 0);
    CHECK_EQ_INT(sse_format_comment(&out, ""), 0);
    CHECK_STR(out.data, ":\n\n: alive\n\n:\n\n");
    size_t len = out.len;
    CHECK_EQ_INT(sse_format_comment(&out, "two\nlines"), PX_EINVAL);
    CHECK_EQ_INT(sse_format_comment(&out, "cr\r"), PX_EINVAL);
    CHECK_EQ_INT(out.len, len);
    buf_free(&out);
}

#define SECRET "0123456789abcdef0123456789abcdef-test"

static void test_ticket_round_trip(void)
{
    char *t = ticket_make(SECRET, "user-\xc3\xa9", "admin", 1000);
    CHECK_OR_RETURN(t != NULL);
    CHECK(strncmp(t, "t1.", 3) == 0);
    CHECK(strspn(t, "0123456789abcdefghijklmnopqrstuvwxyz._") == strlen(t));
    ticket_t out;
    CHECK_EQ_INT(ticket_check(SECRET, t, 1000, &out), 0);
    CHECK_STR(out.sub, "user-\xc3\xa9");
    CHECK_STR(out.role, "admin");
    CHECK_EQ_INT(out.exp, 1000 + TICKET_TTL_S);
    CHECK_EQ_INT(strlen(out.nonce), 32);
    CHECK_EQ_INT(ticket_check(SECRET, t, 1000 + TICKET_TTL_S, &out), TICKET_EEXPIRED);
    CHECK_EQ_INT(ticket_check(SECRET "x", t, 1000, &out), TICKET_EMALFORMED);
    char *u = ticket_make(SECRET, "user-\xc3\xa9", "admin", 1000);
    CHECK(u && strcmp(t, u) != 0); /* a random nonce each time */
    free(u);
    free(t);
}

static void test_ticket_tampering(void)
{
    char *t = ticket_make(SECRET, "alice", "user", 1000);
    CHECK_OR_RETURN(t != NULL);
    ticket_t out;
    /* Any single changed character is refused. */
    for (size_t i = 0; i < strlen(t); i++) {
        char *c = xstrdup(t);
        c[i] = c[i] == 'a' ? 'b' : 'a';
        CHECK_EQ_INT(ticket_check(SECRET, c, 1000, &out), TICKET_EMALFORMED);
        free(c);
    }
    const char *garbage[] = {"", "t1.", "t1....." , "garbage", "t2.x.y.z.w.0000", NULL};
    for (size_t i = 0; garbage[i]; i++)
        CHECK_EQ_INT(ticket_check(SECRET, garbage[i], 1000, &out), TICKET_EMALFORMED);
    CHECK_EQ_INT(ticket_check(NULL, t, 1000, &out), TICKET_EMALFORMED);
    CHECK_EQ_INT(ticket_check(SECRET, NULL, 1000, &out), TICKET_EMALFORMED);
    CHECK(ticket_make(NULL, "a", "user", 0) == NULL);
    CHECK(ticket_make("", "a", "user", 0) == NULL);
    CHECK(ticket_make(SECRET, NULL, "user", 0) == NULL);
    free(t);
}

int main(void)
{
    RUN(test_sse_fields);
    RUN(test_sse_data_lines);
    RUN(test_sse_refusals);
    RUN(test_sse_comments);
    RUN(test_ticket_round_trip);
    RUN(test_ticket_tampering);
    return check_finish();
}
