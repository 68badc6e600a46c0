/*
 * test_redis.c — server/redis.c against a real Redis. Not part of the unit suite (that one
 * runs without services): tests/api/test_redis_client.py runs it with the
 * PANTHERA_REDIS_SOCKET variable that scripts/dev prints.
 *
 *   test_redis basic          replies of every type, binary values, error replies, EVALSHA
 *                             with its EVAL fallback, cancel, argument checks, unreachable
 *                             and silent servers, closing with work pending
 *   test_redis timeout        deadlines and dropped connections, first with CLIENT PAUSE
 *                             (self-contained), then against a Redis the driver stops: the
 *                             program prints "ready", waits for a "stopped" line on stdin
 *                             (the driver has sent SIGSTOP), prints "paused: ...", waits for
 *                             "continued" (SIGCONT) and prints "resumed: recovery_ms=N"
 *   test_redis loop SECONDS   a command every 10 ms; one summary line; exit 1 on an error
 *                             other than "unavailable" or "timeout", on a missing or doubled
 *                             callback, or on a callback later than command_timeout + 200 ms
 *
 * Every subcommand ends by closing its clients and checking that the loop has no handle
 * left (uv_loop_close), so ASan's leak checker sees every allocation the client made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "redis.h"
#include "util.h"

static uv_loop_t *loop;
static uv_timer_t deadline;
static bool deadline_hit;
static char address[300];
static char prefix[64];

static void on_deadline(uv_timer_t *t)
{
    UNUSED(t);
    deadline_hit = true;
}

/* Runs the loop until *counter reaches target or timeout_ms pass. */
static bool wait_for(const int *counter, int target, int timeout_ms)
{
    deadline_hit = false;
    uv_timer_start(&deadline, on_deadline, (uint64_t)timeout_ms, 0);
    while (*counter < target && !deadline_hit)
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
    return *counter >= target;
}

static void run_for(int ms)
{
    int never = 0;
    wait_for(&never, 1, ms);
}

/* True when the answer counted by `counter` comes from the loop's next few turns, none
 * of which blocks: a failure that waits for no timer and no I/O. This is what "fails
 * fast" means, and unlike a number of milliseconds it holds on a loaded machine. */
static bool delivered_at_once(const int *counter, int target)
{
    for (int i = 0; i < 3 && *counter < target; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    return *counter >= target;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Polls redis_is_connected for up to timeout_ms. */
static bool wait_connected(redis_client_t *c, bool want, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (redis_is_connected(c) != want && now_ms() < end)
        run_for(5);
    return redis_is_connected(c) == want;
}

static redis_client_t *client_make(const char *addr, int command_timeout_ms, int connect_timeout_ms)
{
    redis_config_t cfg = {.address = addr,
                          .command_timeout_ms = command_timeout_ms,
                          .connect_timeout_ms = connect_timeout_ms};
    return redis_new(loop, &cfg);
}

static void on_closed(void *ud)
{
    ++*(int *)ud;
}

static void client_close_wait(redis_client_t *c)
{
    int closed = 0;
    redis_close(c, on_closed, &closed);
    CHECK(wait_for(&closed, 1, 3000));
}

static char *key(const char *name)
{
    return xasprintf("%s%s", prefix, name);
}

/* ---- one answer, copied out of its callback ---- */

#define ELEMS_MAX 8

typedef struct answer {
    int calls;
    bool ok;
    redis_errkind_t err;
    char *message;
    redis_reply_type_t type;
    int64_t integer;
    char *str;
    size_t len;
    size_t count;
    redis_reply_type_t el_type[ELEMS_MAX];
    char *el_str[ELEMS_MAX];
    size_t el_len[ELEMS_MAX];
    size_t el_count[ELEMS_MAX];
    uint64_t t0;
    uint64_t latency;
} answer_t;

static char *copy_bytes(const char *s, size_t len)
{
    if (!s)
        return NULL;
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static void on_answer(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    answer_t *a = ud;
    a->calls++;
    a->latency = now_ms() - a->t0;
    if ((reply == NULL) == (err == NULL)) {
        fprintf(stderr, "callback with reply %p and err %p\n", (void *)reply, (void *)err);
        a->calls += 100; /* fails every CHECK on calls */
        return;
    }
    if (err) {
        a->err = err->kind;
        a->message = xstrdup(err->message);
        return;
    }
    a->ok = true;
    a->type = redis_reply_type(reply);
    a->integer = redis_reply_integer(reply);
    const char *s = redis_reply_string(reply, &a->len);
    a->str = copy_bytes(s, a->len);
    a->count = redis_reply_count(reply);
    for (size_t i = 0; i < a->count && i < ELEMS_MAX; i++) {
        const redis_reply_t *el = redis_reply_element(reply, i);
        a->el_type[i] = redis_reply_type(el);
        s = redis_reply_string(el, &a->el_len[i]);
        a->el_str[i] = copy_bytes(s, a->el_len[i]);
        a->el_count[i] = redis_reply_count(el);
        if (a->el_type[i] == REDIS_TYPE_INTEGER)
            a->el_len[i] = (size_t)redis_reply_integer(el);
    }
    CHECK(redis_reply_element(reply, a->count) == NULL);
}

static void answer_clear(answer_t *a)
{
    free(a->message);
    free(a->str);
    for (int i = 0; i < ELEMS_MAX; i++)
        free(a->el_str[i]);
    memset(a, 0, sizeof(*a));
}

static int send_cmd(redis_client_t *c, answer_t *a, int argc, const char **argv,
                    const size_t *argvlen)
{
    answer_clear(a);
    a->t0 = now_ms();
    return redis_command(c, argc, argv, argvlen, on_answer, a, NULL);
}

/* Sends the command and runs the loop until its answer (10 s at most: a hang). */
static void cmd_sync(redis_client_t *c, answer_t *a, int argc, const char **argv,
                     const size_t *argvlen)
{
    CHECK_EQ_INT(send_cmd(c, a, argc, argv, argvlen), 0);
    CHECK(wait_for(&a->calls, 1, 10000));
}

#define CMD(c, a, ...)                                                                             \
    do {                                                                                           \
        const char *cmd_argv_[] = {__VA_ARGS__};                                                   \
        cmd_sync((c), (a), (int)ARRAY_SIZE(cmd_argv_), cmd_argv_, NULL);                           \
    } while (0)

static void eval_sync(redis_client_t *c, const redis_script_t *script, answer_t *a, int numkeys,
                      int argc, const char **argv, const size_t *argvlen)
{
    answer_clear(a);
    a->t0 = now_ms();
    CHECK_EQ_INT(redis_eval(c, script, numkeys, argc, argv, argvlen, on_answer, a, NULL), 0);
    CHECK(wait_for(&a->calls, 1, 2000));
}

/* "calls=N" of `command` in INFO commandstats, -1 when absent. */
static long command_calls(redis_client_t *c, const char *command)
{
    answer_t a = {0};
    CMD(c, &a, "INFO", "commandstats");
    long calls = -1;
    char *needle = xasprintf("cmdstat_%s:calls=", command);
    const char *at = a.str ? strstr(a.str, needle) : NULL;
    if (at)
        calls = strtol(at + strlen(needle), NULL, 10);
    free(needle);
    answer_clear(&a);
    return calls;
}

/* ---- basic ---- */

static redis_client_t *rc; /* the client connected to the real Redis */

static void test_config(void)
{
    const char *bad[] = {"",           "nope",     "unix:",     "host:",    ":6379",   "host:0",
                         "host:70000", "host:12x", "[::1:6379", "::1:6379", "[]:6379", "host: 1"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        redis_client_t *c = client_make(bad[i], 0, 0);
        if (c) {
            fprintf(stderr, "accepted bad address '%s'\n", bad[i]);
            client_close_wait(c);
        }
        CHECK(c == NULL);
    }
    CHECK(client_make(NULL, 0, 0) == NULL);
    CHECK(client_make(address, -1, 0) == NULL);
    CHECK(client_make(address, 0, -5) == NULL);
    CHECK(redis_new(NULL, &(redis_config_t){.address = address}) == NULL);
    CHECK(redis_new(loop, NULL) == NULL);
    /* Valid ones, closed at once: while connecting, while looking a name up. */
    const char *good[] = {"unix:/nonexistent/redis.sock", "127.0.0.1:1", "[::1]:1", "localhost:1",
                          address};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        redis_client_t *c = client_make(good[i], 0, 0);
        CHECK(c != NULL);
        if (c) {
            CHECK(!redis_is_connected(c));
            client_close_wait(c);
        }
    }
    redis_close(NULL, NULL, NULL);
    redis_cancel(NULL);
    CHECK(!redis_is_connected(NULL));
}

static void test_connect(void)
{
    rc = client_make(address, 0, 0);
    CHECK_OR_RETURN(rc != NULL);
    CHECK(!redis_is_connected(rc)); /* not before the PING is answered */
    CHECK(wait_connected(rc, true, 3000));
}

static void test_strings(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    answer_t a = {0};
    char *k = key("bin");
    static const char value[] = "a\0b \xc3\xa9t\xc3\xa9 \xf0\x9f\x90\xaf\r\n\0end";
    size_t vlen = sizeof(value) - 1;
    const char *set[] = {"SET", k, value};
    size_t setlen[] = {3, strlen(k), vlen};
    cmd_sync(rc, &a, 3, set, setlen);
    CHECK(a.ok);
    CHECK_EQ_INT(a.type, REDIS_TYPE_STATUS);
    CHECK_STR(a.str, "OK");
    CMD(rc, &a, "GET", k);
    CHECK(a.ok);
    CHECK_EQ_INT(a.type, REDIS_TYPE_STRING);
    CHECK_EQ_U64(a.len, vlen);
    CHECK(a.str && memcmp(a.str, value, vlen) == 0);
    CHECK_EQ_INT(a.integer, 0);
    CHECK_EQ_U64(a.count, 0);
    CMD(rc, &a, "STRLEN", k);
    CHECK_EQ_INT(a.type, REDIS_TYPE_INTEGER);
    CHECK_EQ_INT(a.integer, (int64_t)vlen);
    CHECK(a.str == NULL && a.len == 0);
    /* A key with a NUL byte in it is a different key. */
    char *k2 = xasprintf("%s%cx", k, '\0');
    const char *get2[] = {"GET", k2};
    size_t get2len[] = {3, strlen(k) + 2};
    cmd_sync(rc, &a, 2, get2, get2len);
    CHECK_EQ_INT(a.type, REDIS_TYPE_NIL);
    free(k2);
    CMD(rc, &a, "GET", "test_redis:no such key, ever");
    CHECK(a.ok);
    CHECK_EQ_INT(a.type, REDIS_TYPE_NIL);
    CHECK(a.str == NULL);
    CMD(rc, &a, "DEL", k);
    CHECK_EQ_INT(a.integer, 1);
    answer_clear(&a);
    free(k);
}

static void test_integers(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    answer_t a = {0};
    char *k = key("counter");
    CMD(rc, &a, "DEL", k);
    CMD(rc, &a, "INCR", k);
    CHECK_EQ_INT(a.type, REDIS_TYPE_INTEGER);
    CHECK_EQ_INT(a.integer, 1);
    CMD(rc, &a, "INCRBY", k, "41");
    CHECK_EQ_INT(a.integer, 42);
    CMD(rc, &a, "DECRBY", k, "9223372036854775807");
    CHECK_EQ_INT(a.integer, 42 - INT64_MAX);
    CMD(rc, &a, "DEL", k);
    answer_clear(&a);
    free(k);
}

static void test_error_reply(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    answer_t a = {0};
    char *k = key("str");
    CMD(rc, &a, "SET", k, "x");
    CMD(rc, &a, "LPUSH", k, "y");
    CHECK(a.ok); /* an error reply is a reply, not a redis_error_t */
    CHECK_EQ_INT(a.type, REDIS_TYPE_ERROR);
    CHECK(a.str && strncmp(a.str, "WRONGTYPE", 9) == 0);
    CHECK(a.len == (a.str ? strlen(a.str) : 0));
    CMD(rc, &a, "NOSUCHCOMMAND", "x");
    CHECK_EQ_INT(a.type, REDIS_TYPE_ERROR);
    CHECK_CONTAINS(a.str, "unknown command");
    CMD(rc, &a, "GET", k); /* the connection is fine */
    CHECK_STR(a.str, "x");
    CHECK(redis_is_connected(rc));
    CMD(rc, &a, "DEL", k);
    answer_clear(&a);
    free(k);
}

static void test_arrays(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    answer_t a = {0};
    char *k = key("list");
    CMD(rc, &a, "DEL", k);
    const char *push[] = {"RPUSH", k, "a", "b\0c", ""};
    size_t pushlen[] = {5, strlen(k), 1, 3, 0};
    cmd_sync(rc, &a, 5, push, pushlen);
    CHECK_EQ_INT(a.integer, 3);
    CMD(rc, &a, "LRANGE", k, "0", "-1");
    CHECK_EQ_INT(a.type, REDIS_TYPE_ARRAY);
    CHECK_EQ_U64(a.count, 3);
    CHECK_EQ_INT(a.el_type[0], REDIS_TYPE_STRING);
    CHECK_STR(a.el_str[0], "a");
    CHECK_EQ_U64(a.el_len[1], 3);
    CHECK(a.el_str[1] && memcmp(a.el_str[1], "b\0c", 3) == 0);
    CHECK_EQ_U64(a.el_len[2], 0);
    CHECK_STR(a.el_str[2], "");
    CHECK(a.str == NULL);
    CMD(rc, &a, "LRANGE", k, "5", "10");
    CHECK_EQ_INT(a.type, REDIS_TYPE_ARRAY);
    CHECK_EQ_U64(a.count, 0);
    CMD(rc, &a, "DEL", k);
    answer_clear(&a);
    free(k);
}

/* A nested reply, a nil element and NULL replies in the accessors. */
static void nested_cb(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    int *state = ud;
    *state = -1;
    if (err || redis_reply_type(reply) != REDIS_TYPE_ARRAY || redis_reply_count(reply) != 4)
        return;
    const redis_reply_t *inner = redis_reply_element(reply, 1);
    size_t len = 0;
    if (redis_reply_integer(redis_reply_element(reply, 0)) != 1 ||
        redis_reply_type(inner) != REDIS_TYPE_ARRAY || redis_reply_count(inner) != 2 ||
        redis_reply_integer(redis_reply_element(inner, 0)) != 2 ||
        strcmp(redis_reply_string(redis_reply_element(inner, 1), &len), "x") != 0 || len != 1 ||
        redis_reply_type(redis_reply_element(reply, 2)) != REDIS_TYPE_NIL ||
        redis_reply_type(redis_reply_element(reply, 3)) != REDIS_TYPE_STATUS ||
        redis_reply_element(inner, 2) != NULL || redis_reply_element(reply, 99) != NULL)
        return;
    if (redis_reply_type(NULL) != REDIS_TYPE_NIL || redis_reply_integer(NULL) != 0 ||
        redis_reply_string(NULL, &len) != NULL || len != 0 || redis_reply_count(NULL) != 0 ||
        redis_reply_element(NULL, 0) != NULL)
        return;
    *state = 1;
}

static void test_eval(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    answer_t a = {0};
    char *k = key("eval");
    /* The rate limiter's shape: INCR, and EXPIRE on the first hit, atomically. */
    redis_script_t *s = redis_script_new("local n = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                                         "if n == tonumber(ARGV[1]) then\n"
                                         "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                         "end\n"
                                         "return n\n");
    CHECK_OR_RETURN(s != NULL);
    CHECK_EQ_INT(strlen(redis_script_sha(s)), 40);
    CMD(rc, &a, "DEL", k);
    CMD(rc, &a, "SCRIPT", "FLUSH");
    CMD(rc, &a, "CONFIG", "RESETSTAT");
    CHECK_STR(a.str, "OK");
    const char *args[] = {k, "5", "60000"};
    /* First run: EVALSHA gets NOSCRIPT, EVAL runs and loads it. */
    eval_sync(rc, s, &a, 1, 3, args, NULL);
    CHECK(a.ok);
    CHECK_EQ_INT(a.type, REDIS_TYPE_INTEGER);
    CHECK_EQ_INT(a.integer, 5);
    CHECK_EQ_INT(command_calls(rc, "eval"), 1);
    CMD(rc, &a, "SCRIPT", "EXISTS", redis_script_sha(s));
    CHECK_EQ_U64(a.count, 1);
    CHECK_EQ_U64(a.el_len[0], 1); /* the integer 1 */
    /* Second run: EVALSHA alone. The script may be freed while a call is in flight. */
    answer_clear(&a);
    a.t0 = now_ms();
    CHECK_EQ_INT(redis_eval(rc, s, 1, 3, args, NULL, on_answer, &a, NULL), 0);
    redis_script_free(s);
    CHECK(wait_for(&a.calls, 1, 2000));
    CHECK_EQ_INT(a.integer, 10);
    CHECK_EQ_INT(command_calls(rc, "eval"), 1);
    CHECK(command_calls(rc, "evalsha") >= 2);
    CMD(rc, &a, "PTTL", k);
    CHECK(a.integer > 0 && a.integer <= 60000);

    /* Binary arguments, no keys; a script error is an error reply. */
    s = redis_script_new("return ARGV[1]");
    const char *bin[] = {"x\0y\xf0\x9f\x90\xaf"};
    size_t binlen[] = {7};
    eval_sync(rc, s, &a, 0, 1, bin, binlen);
    CHECK_EQ_INT(a.type, REDIS_TYPE_STRING);
    CHECK(a.len == 7 && a.str && memcmp(a.str, bin[0], 7) == 0);
    redis_script_free(s);
    s = redis_script_new("return redis.call('LPUSH', KEYS[1], 'x')");
    eval_sync(rc, s, &a, 1, 1, (const char *[]){k}, NULL);
    CHECK(a.ok);
    CHECK_EQ_INT(a.type, REDIS_TYPE_ERROR);
    CHECK_CONTAINS(a.str, "WRONGTYPE");
    redis_script_free(s);
    s = redis_script_new("return {1, {2, 'x'}, false, redis.status_reply('FINE')}");
    int state = 0;
    CHECK_EQ_INT(redis_eval(rc, s, 0, 0, NULL, NULL, nested_cb, &state, NULL), 0);
    CHECK(wait_for(&state, 1, 2000));
    redis_script_free(s);
    /* Fire and forget, through NOSCRIPT as well. */
    CMD(rc, &a, "SCRIPT", "FLUSH");
    s = redis_script_new("return redis.call('SET', KEYS[1], ARGV[1])");
    CHECK_EQ_INT(redis_eval(rc, s, 1, 2, (const char *[]){k, "quiet"}, NULL, NULL, NULL, NULL), 0);
    redis_script_free(s);
    run_for(50);
    CMD(rc, &a, "GET", k);
    CHECK_STR(a.str, "quiet");

    CHECK(redis_script_new(NULL) == NULL);
    redis_script_free(NULL);
    CMD(rc, &a, "DEL", k);
    answer_clear(&a);
    free(k);
}

static void on_done(const redis_error_t *err, void *ud)
{
    answer_t *a = ud;
    a->calls++;
    a->ok = err == NULL;
    if (err) {
        a->err = err->kind;
        a->message = xstrdup(err->message);
    }
}

static void test_ping(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    answer_t a = {0};
    redis_handle_t *h = NULL;
    CHECK_EQ_INT(redis_ping(rc, on_done, &a, &h), 0);
    CHECK(h != NULL);
    CHECK_EQ_INT(a.calls, 0); /* never inside the call */
    CHECK(wait_for(&a.calls, 1, 2000));
    CHECK(a.ok);
    CHECK_EQ_INT(redis_ping(rc, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(redis_ping(NULL, on_done, &a, NULL), -EINVAL);
    answer_clear(&a);
}

static void test_pipeline(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    enum { N = 2000 };
    static answer_t a[N];
    char *k = key("pipe");
    answer_t del = {0};
    CMD(rc, &del, "DEL", k);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(send_cmd(rc, &a[i], 2, (const char *[]){"INCR", k}, NULL), 0);
    CHECK(wait_for(&a[N - 1].calls, 1, 3000));
    run_for(10);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(a[i].calls, 1);
        CHECK_EQ_INT(a[i].integer, i + 1); /* in order */
        answer_clear(&a[i]);
    }
    CMD(rc, &del, "DEL", k);
    answer_clear(&del);
    free(k);
}

static void test_cancel(void)
{
    CHECK_OR_RETURN(rc && redis_is_connected(rc));
    enum { N = 100 };
    static answer_t a[N];
    redis_handle_t *h[N];
    char *k = key("cancel");
    answer_t other = {0};
    CMD(rc, &other, "DEL", k);
    for (int i = 0; i < N; i++) {
        answer_clear(&a[i]);
        CHECK_EQ_INT(
            redis_command(rc, 2, (const char *[]){"INCR", k}, NULL, on_answer, &a[i], &h[i]), 0);
        CHECK(h[i] != NULL);
    }
    for (int i = 0; i < N; i += 2)
        redis_cancel(h[i]);
    run_for(200);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(a[i].calls, i % 2 ? 1 : 0);
        if (i % 2)
            CHECK_EQ_INT(a[i].integer, i + 1); /* cancelled commands still ran */
        answer_clear(&a[i]);
    }
    CMD(rc, &other, "GET", k);
    CHECK_STR(other.str, "100");
    CMD(rc, &other, "DEL", k);
    answer_clear(&other);
    free(k);
}

static void test_args(void)
{
    CHECK_OR_RETURN(rc != NULL);
    answer_t a = {0};
    redis_handle_t *h = (redis_handle_t *)&a;
    CHECK_EQ_INT(redis_command(rc, 0, (const char *[]){"PING"}, NULL, on_answer, &a, &h), -EINVAL);
    CHECK(h == NULL);
    CHECK_EQ_INT(redis_command(rc, 1, NULL, NULL, on_answer, &a, NULL), -EINVAL);
    CHECK_EQ_INT(redis_command(rc, 2, (const char *[]){"GET", NULL}, NULL, on_answer, &a, NULL),
                 -EINVAL);
    CHECK_EQ_INT(redis_command(NULL, 1, (const char *[]){"PING"}, NULL, on_answer, &a, NULL),
                 -EINVAL);
    const char *refused[] = {"SUBSCRIBE",    "psubscribe", "Unsubscribe", "PUNSUBSCRIBE",
                             "ssubscribe",   "MONITOR",    "select",      "AUTH",
                             "hello",        "RESET",      "quit"};
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
        CHECK_EQ_INT(
            redis_command(rc, 2, (const char *[]){refused[i], "chan"}, NULL, on_answer, &a, NULL),
            -EINVAL);
    redis_script_t *s = redis_script_new("return 1");
    CHECK_EQ_INT(redis_eval(rc, s, 2, 1, (const char *[]){"k"}, NULL, on_answer, &a, NULL),
                 -EINVAL);
    CHECK_EQ_INT(redis_eval(rc, s, -1, 0, NULL, NULL, on_answer, &a, NULL), -EINVAL);
    CHECK_EQ_INT(redis_eval(rc, NULL, 0, 0, NULL, NULL, on_answer, &a, NULL), -EINVAL);
    CHECK_EQ_INT(redis_eval(NULL, s, 0, 0, NULL, NULL, on_answer, &a, NULL), -EINVAL);
    redis_script_free(s);
    run_for(20);
    CHECK_EQ_INT(a.calls, 0);
    /* Fire and forget. */
    char *k = key("ff");
    CHECK_EQ_INT(redis_command(rc, 3, (const char *[]){"SET", k, "v"}, NULL, NULL, NULL, &h), 0);
    CHECK(h == NULL);
    CMD(rc, &a, "GET", k);
    CHECK_STR(a.str, "v");
    CMD(rc, &a, "DEL", k);
    answer_clear(&a);
    free(k);
}

/* Commands against a client that cannot connect fail fast, on the next iteration. */
static void check_fails_fast(redis_client_t *c)
{
    answer_t a = {0};
    CHECK_EQ_INT(send_cmd(c, &a, 1, (const char *[]){"PING"}, NULL), 0);
    CHECK_EQ_INT(a.calls, 0);
    CHECK(delivered_at_once(&a.calls, 1));
    CHECK(!a.ok);
    CHECK_EQ_INT(a.err, REDIS_EUNAVAILABLE);
    CHECK_CONTAINS(a.message, "unavailable");
    answer_t p = {0};
    p.t0 = now_ms();
    CHECK_EQ_INT(redis_ping(c, on_done, &p, NULL), 0);
    CHECK(wait_for(&p.calls, 1, 1000));
    CHECK_EQ_INT(p.err, REDIS_EUNAVAILABLE);
    /* Cancelled before delivery: never called. */
    redis_handle_t *h = NULL;
    answer_clear(&a);
    CHECK_EQ_INT(redis_command(c, 1, (const char *[]){"PING"}, NULL, on_answer, &a, &h), 0);
    redis_cancel(h);
    CHECK_EQ_INT(redis_command(c, 1, (const char *[]){"PING"}, NULL, NULL, NULL, NULL), 0);
    run_for(30);
    CHECK_EQ_INT(a.calls, 0);
    answer_clear(&a);
    answer_clear(&p);
}

/* A TCP port nobody listens on, or one that listens but never answers (listen() without
 * accept(): the kernel completes the connection, nobody reads the PING). */
static int tcp_listener(bool keep_listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        perror("tcp_listener");
        return -1;
    }
    *port = ntohs(sin.sin_port);
    if (!keep_listening) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_unreachable(void)
{
    redis_client_t *c = client_make("unix:/nonexistent/redis.sock", 0, 0);
    CHECK_OR_RETURN(c != NULL);
    run_for(50);
    CHECK(!redis_is_connected(c));
    check_fails_fast(c);
    client_close_wait(c);

    int port = 0;
    tcp_listener(false, &port);
    char *addr = xasprintf("127.0.0.1:%d", port);
    c = client_make(addr, 0, 0);
    run_for(100);
    CHECK(!redis_is_connected(c));
    check_fails_fast(c);
    client_close_wait(c);
    free(addr);

    addr = xasprintf("localhost:%d", port); /* through uv_getaddrinfo */
    c = client_make(addr, 0, 0);
    run_for(100);
    CHECK(!redis_is_connected(c));
    check_fails_fast(c);
    client_close_wait(c);
    free(addr);
}

static void test_silent_server(void)
{
    int port = 0;
    int fd = tcp_listener(true, &port);
    CHECK_OR_RETURN(fd >= 0);
    char *addr = xasprintf("127.0.0.1:%d", port);
    redis_client_t *c = client_make(addr, 0, 150);
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 700) {
        CHECK(!redis_is_connected(c)); /* connected, but the PING is never answered */
        run_for(20);
    }
    check_fails_fast(c);
    client_close_wait(c);
    free(addr);
    close(fd);
}

/* Redis closes the connection (CLIENT KILL from another client): hiredis frees the context
 * on its own (on_disconnect when idle, NULL replies first when commands are pending); the
 * client reconnects. A command issued from the failure callback fails fast. */
typedef struct killed {
    redis_client_t *c;
    answer_t a;
    answer_t retry;
    int rc;
} killed_t;

static void killed_cb(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    killed_t *k = ud;
    on_answer(reply, err, &k->a);
    k->rc = send_cmd(k->c, &k->retry, 1, (const char *[]){"PING"}, NULL);
}

static long client_id(redis_client_t *c)
{
    answer_t a = {0};
    CMD(c, &a, "CLIENT", "ID");
    long id = a.ok ? (long)a.integer : -1;
    answer_clear(&a);
    return id;
}

static void kill_client(redis_client_t *admin, long id)
{
    answer_t a = {0};
    char arg[32];
    snprintf(arg, sizeof(arg), "%ld", id);
    CMD(admin, &a, "CLIENT", "KILL", "ID", arg);
    CHECK_EQ_INT(a.integer, 1);
    answer_clear(&a);
}

static void test_killed(void)
{
    redis_client_t *admin = client_make(address, 1000, 0);
    killed_t k = {0};
    k.c = client_make(address, 1000, 0);
    CHECK_OR_RETURN(wait_connected(admin, true, 3000) && wait_connected(k.c, true, 3000));

    /* Idle: only on_disconnect tells. */
    long id = client_id(k.c);
    kill_client(admin, id);
    CHECK(wait_connected(k.c, false, 1000));
    CHECK(wait_connected(k.c, true, 2000));
    long id2 = client_id(k.c);
    CHECK(id2 > 0 && id2 != id);

    /* A command pending (its SET held by CLIENT PAUSE WRITE): a NULL reply tells first. */
    answer_t a = {0};
    CMD(admin, &a, "CLIENT", "PAUSE", "500", "WRITE");
    CHECK_STR(a.str, "OK");
    char *key_name = key("killed");
    k.a.t0 = now_ms();
    CHECK_EQ_INT(
        redis_command(k.c, 3, (const char *[]){"SET", key_name, "1"}, NULL, killed_cb, &k, NULL),
        0);
    run_for(50);
    CHECK_EQ_INT(k.a.calls, 0);
    kill_client(admin, id2);
    CHECK(wait_for(&k.a.calls, 1, 1000));
    CHECK_EQ_INT(k.a.err, REDIS_EUNAVAILABLE);
    CHECK_CONTAINS(k.a.message, "lost");
    CHECK_EQ_INT(k.rc, 0);
    CHECK(delivered_at_once(&k.retry.calls, 1));
    CHECK_EQ_INT(k.retry.err, REDIS_EUNAVAILABLE);
    CHECK(wait_connected(k.c, true, 2000));
    CMD(admin, &a, "CLIENT", "UNPAUSE");
    CMD(k.c, &a, "PING");
    CHECK_STR(a.str, "PONG");
    CMD(k.c, &a, "DEL", key_name);
    free(key_name);
    answer_clear(&a);
    answer_clear(&k.a);
    answer_clear(&k.retry);
    client_close_wait(k.c);
    client_close_wait(admin);
}

static void test_close_pending(void)
{
    redis_client_t *c = client_make(address, 0, 0);
    CHECK_OR_RETURN(wait_connected(c, true, 3000));
    enum { N = 20 };
    answer_t a[N];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(send_cmd(c, &a[i], 1, (const char *[]){"PING"}, NULL), 0);
    int closed = 0;
    redis_close(c, on_closed, &closed);
    redis_close(c, on_closed, &closed); /* twice does nothing */
    CHECK(!redis_is_connected(c));
    answer_t late = {0};
    CHECK_EQ_INT(send_cmd(c, &late, 1, (const char *[]){"PING"}, NULL), -ESHUTDOWN);
    CHECK_EQ_INT(redis_ping(c, on_done, &late, NULL), -ESHUTDOWN);
    CHECK(wait_for(&closed, 1, 3000));
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(a[i].calls, 1);
        CHECK_EQ_INT(a[i].err, REDIS_ECANCELLED);
        answer_clear(&a[i]);
    }
    run_for(20);
    CHECK_EQ_INT(closed, 1);
    CHECK_EQ_INT(late.calls, 0);
}

typedef struct close_in_cb {
    redis_client_t *c;
    int calls;
    int closed;
    int rc;
    answer_t after;
} close_in_cb_t;

static void close_from_callback(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    close_in_cb_t *s = ud;
    s->calls++;
    CHECK(reply != NULL && err == NULL);
    redis_close(s->c, on_closed, &s->closed);
    s->rc = send_cmd(s->c, &s->after, 1, (const char *[]){"PING"}, NULL);
}

static void test_close_in_callback(void)
{
    close_in_cb_t s = {0};
    s.c = client_make(address, 0, 0);
    CHECK_OR_RETURN(wait_connected(s.c, true, 3000));
    answer_t second = {0};
    CHECK_EQ_INT(
        redis_command(s.c, 1, (const char *[]){"PING"}, NULL, close_from_callback, &s, NULL), 0);
    CHECK_EQ_INT(send_cmd(s.c, &second, 1, (const char *[]){"PING"}, NULL), 0);
    CHECK(wait_for(&s.closed, 1, 3000));
    CHECK_EQ_INT(s.calls, 1);
    CHECK_EQ_INT(s.rc, -ESHUTDOWN);
    CHECK_EQ_INT(second.calls, 1); /* answered after close: cancelled */
    CHECK_EQ_INT(second.err, REDIS_ECANCELLED);
    answer_clear(&second);
    answer_clear(&s.after);

    /* A failure waiting for delivery when the client closes. */
    redis_client_t *c = client_make("unix:/nonexistent/redis.sock", 0, 0);
    answer_t a = {0};
    CHECK_EQ_INT(send_cmd(c, &a, 1, (const char *[]){"PING"}, NULL), 0);
    client_close_wait(c);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(a.err, REDIS_ECANCELLED);
    answer_clear(&a);
}

static int cmd_basic(void)
{
    RUN(test_config);
    RUN(test_connect);
    RUN(test_strings);
    RUN(test_integers);
    RUN(test_error_reply);
    RUN(test_arrays);
    RUN(test_eval);
    RUN(test_ping);
    RUN(test_pipeline);
    RUN(test_cancel);
    RUN(test_args);
    RUN(test_unreachable);
    RUN(test_silent_server);
    RUN(test_killed);
    RUN(test_close_pending);
    RUN(test_close_in_callback);
    if (rc)
        client_close_wait(rc);
    return 0;
}

/* ---- timeout ---- */

#define TIMEOUT_MS REDIS_DEFAULT_COMMAND_TIMEOUT_MS

/* Another client pauses every client's commands (CLIENT PAUSE ms ALL). */
static void pause_redis(redis_client_t *admin, int ms)
{
    answer_t a = {0};
    char arg[16];
    snprintf(arg, sizeof(arg), "%d", ms);
    CMD(admin, &a, "CLIENT", "PAUSE", arg, "ALL");
    CHECK_STR(a.str, "OK");
    answer_clear(&a);
}

/* One timeout leaves the connection alone; the late reply is thrown away. */
static redis_client_t *tc, *admin;

static void test_late_reply(void)
{
    redis_client_t *c = tc;
    long id = client_id(c);
    CHECK(id > 0);
    pause_redis(admin, 400);
    answer_t a = {0};
    cmd_sync(c, &a, 1, (const char *[]){"PING"}, NULL);
    CHECK_EQ_INT(a.err, REDIS_ETIMEOUT);
    CHECK_CONTAINS(a.message, "within 100 ms");
    CHECK(a.latency >= TIMEOUT_MS - 1); /* never early; how late is the watchdog's speed */
    CHECK(redis_is_connected(c));
    run_for(600); /* the pause ends, the reply comes */
    CHECK_EQ_INT(a.calls, 1);
    CHECK(redis_is_connected(c));
    CHECK_EQ_INT(client_id(c), id); /* same connection */
    answer_clear(&a);
}

/* Three timeouts in a row: the connection is dropped, commands fail fast, it comes back.
 * How many of the five time out depends on how late the watchdog runs (every command past
 * its deadline then times out in one pass), so the check is the shape: a run of at least
 * three timeouts, then only "unavailable". The pause outlasts a slow machine's steps. */
static void test_timeouts_in_row(void)
{
    redis_client_t *c = tc;
    long id = client_id(c);
    pause_redis(admin, 3000);
    enum { N = 5 };
    answer_t a[N];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(send_cmd(c, &a[i], 1, (const char *[]){"PING"}, NULL), 0);
        run_for(10);
    }
    CHECK(wait_for(&a[N - 1].calls, 1, 10000));
    int timed_out = 0;
    while (timed_out < N && a[timed_out].err == REDIS_ETIMEOUT)
        timed_out++;
    CHECK(timed_out >= 3);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(a[i].calls, 1);
    for (int i = timed_out; i < N; i++) /* still owed when the connection went */
        CHECK_EQ_INT(a[i].err, REDIS_EUNAVAILABLE);
    CHECK(!redis_is_connected(c));
    answer_t fast = {0};
    CHECK_EQ_INT(send_cmd(c, &fast, 1, (const char *[]){"PING"}, NULL), 0);
    CHECK(delivered_at_once(&fast.calls, 1));
    CHECK_EQ_INT(fast.err, REDIS_EUNAVAILABLE);
    CHECK(wait_connected(c, true, 10000));
    CHECK(client_id(c) != id);
    for (int i = 0; i < N; i++)
        answer_clear(&a[i]);
    answer_clear(&fast);
}

/* One command, no traffic after it: dropped when a reply is a second late, not before
 * (a lower bound; the pause outlasts the wait on a slow machine). */
static void test_stall(void)
{
    redis_client_t *c = tc;
    pause_redis(admin, 4000);
    answer_t a = {0};
    uint64_t t0 = now_ms();
    cmd_sync(c, &a, 1, (const char *[]){"PING"}, NULL);
    CHECK_EQ_INT(a.err, REDIS_ETIMEOUT);
    CHECK(redis_is_connected(c)); /* one timeout alone leaves the connection */
    CHECK(wait_connected(c, false, 10000));
    CHECK(now_ms() - t0 >= 1000);
    CHECK(wait_connected(c, true, 10000));
    answer_clear(&a);
}

/* Closing from a timeout's callback, with the timed-out command still owed by Redis. */
typedef struct zombie {
    redis_client_t *c;
    int calls;
    int closed;
    redis_errkind_t err;
} zombie_t;

static void zombie_cb(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    zombie_t *z = ud;
    z->calls++;
    z->err = reply ? 0 : err->kind;
    redis_close(z->c, on_closed, &z->closed);
}

static void test_close_with_zombie(void)
{
    zombie_t z = {0};
    z.c = client_make(address, TIMEOUT_MS, 0);
    CHECK_OR_RETURN(wait_connected(z.c, true, 3000));
    pause_redis(admin, 300);
    CHECK_EQ_INT(redis_command(z.c, 1, (const char *[]){"PING"}, NULL, zombie_cb, &z, NULL), 0);
    CHECK(wait_for(&z.closed, 1, 1000));
    CHECK_EQ_INT(z.calls, 1);
    CHECK_EQ_INT(z.err, REDIS_ETIMEOUT);
    run_for(400); /* the pause ends: the reply would have come now */
    CHECK_EQ_INT(z.calls, 1);
}

static bool read_stdin_line(const char *expected)
{
    char line[64];
    if (!fgets(line, sizeof(line), stdin)) {
        fprintf(stderr, "timeout: stdin closed while waiting for '%s'\n", expected);
        return false;
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (strcmp(line, expected) != 0) {
        fprintf(stderr, "timeout: got '%s' on stdin, expected '%s'\n", line, expected);
        return false;
    }
    return true;
}

typedef struct stopped_state {
    redis_client_t *c;
    uv_timer_t tick;
    int sent, answered, ok, timeouts, unavailable, other;
    uint64_t max_latency, first_timeout_latency;
} stopped_state_t;

typedef struct stopped_op {
    stopped_state_t *st;
    uint64_t t0;
} stopped_op_t;

static void stopped_cb(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    stopped_op_t *op = ud;
    stopped_state_t *st = op->st;
    uint64_t took = now_ms() - op->t0;
    st->answered++;
    if (took > st->max_latency)
        st->max_latency = took;
    if (reply)
        st->ok++;
    else if (err->kind == REDIS_ETIMEOUT && !st->timeouts++)
        st->first_timeout_latency = took;
    else if (err->kind == REDIS_EUNAVAILABLE)
        st->unavailable++;
    else if (err->kind != REDIS_ETIMEOUT)
        st->other++;
    free(op);
}

static void on_handle_closed(uv_handle_t *handle)
{
    ++*(int *)handle->data;
}

static void stopped_tick(uv_timer_t *t)
{
    stopped_state_t *st = t->data;
    stopped_op_t *op = xcalloc(1, sizeof(*op));
    op->st = st;
    op->t0 = now_ms();
    st->sent++;
    redis_command(st->c, 1, (const char *[]){"PING"}, NULL, stopped_cb, op, NULL);
}

/* The driver has SIGSTOPped redis-server: the first commands time out within the deadline,
 * the next ones fail fast; nothing waits longer. Then it sends SIGCONT: back within 3 s. */
static void test_stopped(void)
{
    redis_client_t *c = tc;
    printf("ready\n");
    fflush(stdout);
    CHECK_OR_RETURN(read_stdin_line("stopped"));
    stopped_state_t st = {.c = c};
    uv_timer_init(loop, &st.tick);
    st.tick.data = &st;
    uv_timer_start(&st.tick, stopped_tick, 0, 10);
    run_for(1500);
    uv_timer_stop(&st.tick);
    CHECK(wait_for(&st.answered, st.sent, 1000));
    printf("paused: sent=%d timeouts=%d unavailable=%d ok=%d other=%d max_latency_ms=%" PRIu64
           " first_timeout_latency_ms=%" PRIu64 "\n",
           st.sent, st.timeouts, st.unavailable, st.ok, st.other, st.max_latency,
           st.first_timeout_latency);
    fflush(stdout);
    /* The first commands time out, most of the others fail fast; how many of each depends
     * on how late the watchdog runs, so only the order of magnitude is checked. */
    CHECK(st.timeouts >= 1 && st.timeouts < st.unavailable);
    CHECK_EQ_INT(st.ok, 0);
    CHECK_EQ_INT(st.other, 0);
    CHECK(st.first_timeout_latency >= TIMEOUT_MS - 1);
    CHECK(!redis_is_connected(c));
    printf("waiting\n");
    fflush(stdout);
    if (read_stdin_line("continued")) {
        uint64_t t0 = now_ms();
        st.ok = 0;
        st.sent = st.answered = 0;
        uv_timer_start(&st.tick, stopped_tick, 0, 10);
        while (st.ok == 0 && now_ms() - t0 < 20000)
            run_for(10);
        uint64_t recovery = now_ms() - t0;
        uv_timer_stop(&st.tick);
        CHECK(wait_for(&st.answered, st.sent, 1000));
        printf("resumed: recovery_ms=%" PRIu64 " ok=%d\n", recovery, st.ok);
        fflush(stdout);
        CHECK(st.ok > 0); /* recovery_ms is a figure, not a pass mark */
    }
    /* st lives on this stack: its timer must be closed before the function returns. */
    int closed = 0;
    st.tick.data = &closed;
    uv_close((uv_handle_t *)&st.tick, on_handle_closed);
    CHECK(wait_for(&closed, 1, 1000));
}

static int cmd_timeout(void)
{
    tc = client_make(address, TIMEOUT_MS, 0);
    admin = client_make(address, 2000, 0);
    CHECK(wait_connected(tc, true, 3000));
    CHECK(wait_connected(admin, true, 3000));
    if (redis_is_connected(tc) && redis_is_connected(admin)) {
        RUN(test_late_reply);
        RUN(test_timeouts_in_row);
        RUN(test_stall);
        RUN(test_close_with_zombie);
        RUN(test_stopped);
    }
    client_close_wait(admin);
    client_close_wait(tc);
    return 0;
}

/* ---- loop ---- */

#define LOOP_OPS 5

typedef struct loop_state {
    redis_client_t *c;
    redis_script_t *script;
    uv_timer_t tick;
    uint64_t stop_at;
    unsigned seq;
    int outstanding;
    long ok, unavailable, timeout, other;
    uint64_t max_latency;
    int64_t first_unavail, last_unavail, first_ok_after;
    long ok_before, ok_after;
    char *counter, *value_key, *limit_key;
} loop_state_t;

typedef struct loop_op {
    loop_state_t *st;
    unsigned kind;
    uint64_t t0;
    int calls;
} loop_op_t;

static const char loop_value[] = "v\0\xc3\xa9";
#define LOOP_VALUE_LEN (sizeof(loop_value) - 1)

/* Whether a reply is the right one for the operation. A restarted Redis has lost the
 * value (no persistence): nil is right too. */
static bool loop_reply_ok(unsigned kind, const redis_reply_t *reply)
{
    size_t len = 0;
    const char *s = redis_reply_string(reply, &len);
    switch (kind) {
    case 0: return redis_reply_type(reply) == REDIS_TYPE_INTEGER && redis_reply_integer(reply) > 0;
    case 1: return redis_reply_type(reply) == REDIS_TYPE_STATUS && s && !strcmp(s, "OK");
    case 2:
        return redis_reply_type(reply) == REDIS_TYPE_NIL ||
               (len == LOOP_VALUE_LEN && !memcmp(s, loop_value, len));
    case 3: return redis_reply_type(reply) == REDIS_TYPE_INTEGER && redis_reply_integer(reply) > 0;
    default: return true;
    }
}

static void loop_count(loop_op_t *op, const redis_reply_t *reply, const redis_error_t *err)
{
    loop_state_t *st = op->st;
    uint64_t took = now_ms() - op->t0;
    if (took > st->max_latency)
        st->max_latency = took;
    if (++op->calls > 1) {
        fprintf(stderr, "loop: a callback ran twice\n");
        st->other++;
        return; /* the op was freed the first time: do not touch it again */
    }
    int64_t now = wall_ms();
    if (err && err->kind == REDIS_EUNAVAILABLE) {
        /* The outage: first and last refusal, first success after the last one. */
        st->unavailable++;
        if (!st->first_unavail)
            st->first_unavail = now;
        st->last_unavail = now;
        st->first_ok_after = 0;
    } else if (err && err->kind == REDIS_ETIMEOUT) {
        st->timeout++;
    } else if (err) {
        fprintf(stderr, "loop: unexpected %s error: %s\n", redis_errkind_name(err->kind),
                err->message);
        st->other++;
    } else if (reply && !loop_reply_ok(op->kind, reply)) {
        size_t len = 0;
        const char *s = redis_reply_string(reply, &len);
        fprintf(stderr, "loop: wrong reply to operation %u: type %d '%.*s'\n", op->kind,
                redis_reply_type(reply), (int)len, s ? s : "");
        st->other++;
    } else {
        st->ok++;
        if (!st->first_unavail)
            st->ok_before++;
        else
            st->ok_after++;
        if (st->first_unavail && !st->first_ok_after)
            st->first_ok_after = now;
    }
    st->outstanding--;
    free(op);
}

static void loop_on_reply(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    loop_count(ud, reply, err);
}

static void loop_on_ping(const redis_error_t *err, void *ud)
{
    loop_count(ud, NULL, err);
}

static void loop_tick(uv_timer_t *t)
{
    loop_state_t *st = t->data;
    if (now_ms() >= st->stop_at) {
        uv_timer_stop(t);
        return;
    }
    loop_op_t *op = xcalloc(1, sizeof(*op));
    op->st = st;
    op->t0 = now_ms();
    op->kind = st->seq++ % LOOP_OPS;
    st->outstanding++;
    int ret = 0;
    switch (op->kind) {
    case 0:
        ret = redis_command(st->c, 2, (const char *[]){"INCR", st->counter}, NULL, loop_on_reply,
                            op, NULL);
        break;
    case 1:
        ret = redis_command(st->c, 5,
                            (const char *[]){"SET", st->value_key, loop_value, "PX", "60000"},
                            (const size_t[]){3, strlen(st->value_key), LOOP_VALUE_LEN, 2, 5},
                            loop_on_reply, op, NULL);
        break;
    case 2:
        ret = redis_command(st->c, 2, (const char *[]){"GET", st->value_key}, NULL, loop_on_reply,
                            op, NULL);
        break;
    case 3:
        ret = redis_eval(st->c, st->script, 1, 2, (const char *[]){st->limit_key, "1000"}, NULL,
                         loop_on_reply, op, NULL);
        break;
    default: ret = redis_ping(st->c, loop_on_ping, op, NULL); break;
    }
    if (ret != 0) {
        fprintf(stderr, "loop: a call returned %d\n", ret);
        st->other++;
        st->outstanding--;
        free(op);
    }
}

static int cmd_loop(int seconds)
{
    loop_state_t st = {0};
    st.c = client_make(address, 0, 0);
    if (!st.c)
        return 1;
    st.script = redis_script_new("local n = redis.call('INCR', KEYS[1])\n"
                                 "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
                                 "return n\n");
    st.counter = key("loop:counter");
    st.value_key = key("loop:value");
    st.limit_key = key("loop:limit");
    if (!wait_connected(st.c, true, 5000))
        fprintf(stderr, "loop: not connected after 5 s, going on anyway\n");
    st.stop_at = now_ms() + (uint64_t)seconds * 1000;
    uv_timer_init(loop, &st.tick);
    st.tick.data = &st;
    uv_timer_start(&st.tick, loop_tick, 0, 10);
    printf("running\n"); /* the driver stops Redis only after this */
    fflush(stdout);
    while (now_ms() < st.stop_at)
        run_for(100);
    uv_timer_stop(&st.tick);
    uint64_t end = now_ms() + REDIS_DEFAULT_COMMAND_TIMEOUT_MS + 2000;
    while (st.outstanding > 0 && now_ms() < end)
        run_for(20);
    uint64_t limit = REDIS_DEFAULT_COMMAND_TIMEOUT_MS + 200;
    bool late = st.max_latency > limit;
    printf("loop: ok=%ld unavailable=%ld timeout=%ld other=%ld outstanding=%d "
           "max_latency_ms=%" PRIu64 " ok_before=%ld ok_after=%ld first_unavailable=%" PRId64
           " last_unavailable=%" PRId64 " first_ok_after=%" PRId64 "\n",
           st.ok, st.unavailable, st.timeout, st.other, st.outstanding, st.max_latency,
           st.ok_before, st.ok_after, st.first_unavail, st.last_unavail, st.first_ok_after);
    fflush(stdout);
    if (late)
        fprintf(stderr,
                "loop: a callback came %" PRIu64 " ms after its call (limit %" PRIu64 " ms)\n",
                st.max_latency, limit);
    if (st.outstanding > 0) {
        fprintf(stderr, "loop: %d operations never got their callback\n", st.outstanding);
        return 1; /* the client cannot be closed cleanly with callbacks owed to freed state */
    }
    if (redis_is_connected(st.c)) {
        answer_t a = {0};
        CMD(st.c, &a, "DEL", st.counter, st.value_key, st.limit_key);
        answer_clear(&a);
    }
    uv_close((uv_handle_t *)&st.tick, NULL);
    client_close_wait(st.c);
    redis_script_free(st.script);
    free(st.counter);
    free(st.value_key);
    free(st.limit_key);
    return st.other || late ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *sock = getenv("PANTHERA_REDIS_SOCKET");
    if (argc < 2 || !sock || !*sock) {
        fprintf(stderr, "usage: PANTHERA_REDIS_SOCKET=... test_redis basic | timeout | "
                        "loop SECONDS\n");
        return 2;
    }
    snprintf(address, sizeof(address), "unix:%s", sock);
    snprintf(prefix, sizeof(prefix), "test_redis:%ld:", (long)getpid());
    static uv_loop_t the_loop;
    loop = &the_loop;
    uv_loop_init(loop);
    uv_timer_init(loop, &deadline);
    int ret;
    if (!strcmp(argv[1], "basic")) {
        ret = cmd_basic();
    } else if (!strcmp(argv[1], "timeout")) {
        ret = cmd_timeout();
    } else if (!strcmp(argv[1], "loop") && argc == 3 && atoi(argv[2]) > 0) {
        ret = cmd_loop(atoi(argv[2]));
    } else {
        fprintf(stderr, "unknown command %s\n", argv[1]);
        return 2;
    }
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    int closed = uv_loop_close(loop);
    check_current = "loop";
    CHECK_EQ_INT(closed, 0); /* a handle left behind means the client did not close it */
    int failed = check_finish();
    return ret ? ret : failed;
}
