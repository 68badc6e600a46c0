/* test_helpers.c — the SDK 1.2 HELPERS area that needs no server: statement names per
 * plugin (api_pg.c), content negotiation, ETags, UUIDs, base64, px_req_printf, plugin
 * metrics and settings tables (api_settings.c), shared counters (shared_counter.c). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdlib.h>
#include <sys/wait.h>

#include "api.h"
#include "check.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "metrics_plugin.h"
#include "plugin.h"
#include "request.h"
#include "shared_counter.h"

static void test_stmt_names(void)
{
    char a[64], b[64], c[64];
    CHECK_EQ_INT(api_pg_stmt_name("user", "user_by_id", a), 0);
    CHECK_STR(a, "user:user_by_id");
    CHECK_EQ_INT(api_pg_stmt_name("other", "user_by_id", b), 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_INT(api_pg_stmt_name("p", "", a), PX_EINVAL);
    CHECK_EQ_INT(api_pg_stmt_name("p", NULL, a), PX_EINVAL);
    char long_name[80];
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    CHECK_EQ_INT(api_pg_stmt_name("p", long_name, a), PX_EINVAL); /* over 63: as in 1.1 */
    /* Too long together: cut to 63 bytes, told apart by a hash of the whole. */
    long_name[63] = '\0';
    CHECK_EQ_INT(api_pg_stmt_name("plugin", long_name, a), 0);
    CHECK(strlen(a) <= 63);
    long_name[62] = 'y';
    CHECK_EQ_INT(api_pg_stmt_name("plugin", long_name, b), 0);
    CHECK(strlen(b) <= 63 && strcmp(a, b) != 0);
    /* "ab" + "c" and "a" + "bc" differ even when both are hashed. */
    char p1[40], p2[40], n1[60], n2[60];
    memset(p1, 'p', 30), p1[30] = '\0';
    memset(p2, 'p', 31), p2[31] = '\0';
    memset(n1, 'n', 40), n1[40] = '\0';
    memset(n2, 'n', 39), n2[39] = '\0';
    CHECK_EQ_INT(api_pg_stmt_name(p1, n1, a), 0);
    CHECK_EQ_INT(api_pg_stmt_name(p2, n2, c), 0);
    CHECK(strcmp(a, c) != 0);
}

static int chosen(const char *header)
{
    static const char *const offers[] = {"application/json", "text/csv", "image/svg+xml", NULL};
    return api_accept_choose(header, offers);
}

static void test_accept(void)
{
    CHECK_EQ_INT(chosen(NULL), 0);
    CHECK_EQ_INT(chosen(""), 0);
    CHECK_EQ_INT(chosen("*/*"), 0);
    CHECK_EQ_INT(chosen("text/csv"), 1);
    CHECK_EQ_INT(chosen("TEXT/CSV"), 1);
    CHECK_EQ_INT(chosen("image/*"), 2);
    CHECK_EQ_INT(chosen("text/csv;q=0.5, application/json;q=0.4"), 1);
    CHECK_EQ_INT(chosen("text/csv;q=0.5, application/json"), 0);
    CHECK_EQ_INT(chosen("application/json;q=0.9, text/csv; charset=utf-8; q=1"), 1);
    /* Ties go to the earlier offer; a more specific range decides an offer's q. */
    CHECK_EQ_INT(chosen("text/csv, application/json"), 0);
    CHECK_EQ_INT(chosen("*/*;q=0.8, application/json;q=0"), 1);
    CHECK_EQ_INT(chosen("text/*;q=0.3, */*;q=0.1"), 1);
    /* Nothing acceptable: 406. */
    CHECK_EQ_INT(chosen("text/html"), PX_ENOTACCEPTABLE);
    CHECK_EQ_INT(chosen("application/json;q=0, text/csv;q=0, image/svg+xml;q=0.000"),
                 PX_ENOTACCEPTABLE);
    CHECK_EQ_INT(chosen("application/xml, text/*;q=0"), PX_ENOTACCEPTABLE);
    /* Malformed ranges are ignored, not fatal. */
    CHECK_EQ_INT(chosen("garbage, text/csv"), 1);
    CHECK_EQ_INT(chosen("text/csv;q=2, image/svg+xml;q=0.1"), 2);
    CHECK_EQ_INT(chosen("text/csv;q=abc"), PX_ENOTACCEPTABLE);
    CHECK_EQ_INT(chosen("/, */"), PX_ENOTACCEPTABLE);
}

static void test_etags(void)
{
    CHECK(api_etag_listed("\"3\"", "3", false));
    CHECK(api_etag_listed(" \"1\", \"3\" ", "3", false));
    CHECK(api_etag_listed("*", "3", false));
    CHECK(!api_etag_listed("\"33\"", "3", false));
    CHECK(!api_etag_listed("3", "3", false));       /* unquoted: not an entity tag */
    CHECK(!api_etag_listed("W/\"3\"", "3", false)); /* If-Match compares strongly */
    CHECK(api_etag_listed("W/\"3\"", "3", true));   /* If-None-Match weakly */
    CHECK(!api_etag_listed("\"3", "3", true));
    CHECK(!api_etag_listed("", "3", true));
}

static void test_uuids(void)
{
    char out[37], again[37];
    CHECK(api_uuid_canonical("123E4567-E89B-12D3-A456-426614174000", out));
    CHECK_STR(out, "123e4567-e89b-12d3-a456-426614174000");
    CHECK(!api_uuid_canonical("123e4567e89b12d3a456426614174000", out));
    CHECK(!api_uuid_canonical("123e4567-e89b-12d3-a456-42661417400g", out));
    CHECK(!api_uuid_canonical("123e4567-e89b-12d3-a456-4266141740001", out));
    CHECK(!api_uuid_canonical("{23e4567-e89b-12d3-a456-42661417400}", out));
    CHECK(!api_uuid_canonical(NULL, out));
    CHECK_EQ_INT(api_uuid_new(out), 0);
    CHECK_EQ_INT(api_uuid_new(again), 0);
    CHECK(strcmp(out, again) != 0);
    char canon[37];
    CHECK(api_uuid_canonical(out, canon) && !strcmp(out, canon));
    CHECK(out[14] == '4' && strchr("89ab", out[19]));
    /* px_uuid_parse: the same rule, `out` untouched on error. */
    CHECK_EQ_INT(api_uuid_parse("123E4567-E89B-12D3-A456-426614174000", out), 0);
    CHECK_STR(out, "123e4567-e89b-12d3-a456-426614174000");
    CHECK_EQ_INT(api_uuid_parse("123e4567-e89b-12d3-a456-42661417400", out), PX_EINVAL);
    CHECK_EQ_INT(api_uuid_parse("not-a-uuid", out), PX_EINVAL);
    CHECK_EQ_INT(api_uuid_parse(NULL, out), PX_EINVAL);
    CHECK_EQ_INT(api_uuid_parse(canon, NULL), PX_EINVAL);
    CHECK_STR(out, "123e4567-e89b-12d3-a456-426614174000");
}

static void test_req_strdup(void)
{
    px_req_t *r = calloc(1, sizeof(*r)); /* an arena is all px_req_strdup touches */
    CHECK_OR_RETURN(r);
    char text[] = "a callback's borrowed value";
    char *copy = api_req_strdup(r, text);
    memset(text, 'x', sizeof(text) - 1);
    CHECK_STR(copy, "a callback's borrowed value");
    CHECK_STR(api_req_strdup(r, ""), "");
    CHECK(api_req_strdup(r, NULL) == NULL);
    arena_free(&r->arena);
    free(r);
}

static void test_base64(void)
{
    char out[64];
    unsigned char raw[64];
    /* RFC 4648 §10's vectors, padded, and the url form unpadded. */
    CHECK_EQ_INT(api_base64_encode("", 0, 0, out, sizeof(out)), 0);
    CHECK_STR(out, "");
    CHECK_EQ_INT(api_base64_encode("f", 1, 0, out, sizeof(out)), 4);
    CHECK_STR(out, "Zg==");
    CHECK_EQ_INT(api_base64_encode("fo", 2, 0, out, sizeof(out)), 4);
    CHECK_STR(out, "Zm8=");
    CHECK_EQ_INT(api_base64_encode("foobar", 6, 0, out, sizeof(out)), 8);
    CHECK_STR(out, "Zm9vYmFy");
    CHECK_EQ_INT(api_base64_encode("f", 1, PX_BASE64_URL, out, sizeof(out)), 2);
    CHECK_STR(out, "Zg");
    const unsigned char hi[] = {0xfb, 0xff, 0xbf};
    CHECK_EQ_INT(api_base64_encode(hi, 3, 0, out, sizeof(out)), 4);
    CHECK_STR(out, "+/+/");
    CHECK_EQ_INT(api_base64_encode(hi, 3, PX_BASE64_URL, out, sizeof(out)), 4);
    CHECK_STR(out, "-_-_");
    /* Room for the NUL is needed; nothing is written without it. */
    memset(out, 'x', sizeof(out));
    CHECK_EQ_INT(api_base64_encode("foobar", 6, 0, out, 8), PX_EOVERFLOW);
    CHECK(out[0] == 'x');
    CHECK_EQ_INT(api_base64_encode(NULL, 1, 0, out, sizeof(out)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_encode("f", 1, 0, NULL, 8), PX_EINVAL);
    CHECK_EQ_INT(api_base64_encode("f", 1, 4, out, sizeof(out)), PX_EINVAL);

    CHECK_EQ_INT(api_base64_decode("Zm9vYmFy", 8, 0, raw, sizeof(raw)), 6);
    CHECK(memcmp(raw, "foobar", 6) == 0);
    CHECK_EQ_INT(api_base64_decode("Zm8=", 4, 0, raw, sizeof(raw)), 2);
    CHECK_EQ_INT(api_base64_decode("Zg==", 4, 0, raw, sizeof(raw)), 1);
    CHECK_EQ_INT(api_base64_decode("Zg", 2, PX_BASE64_URL, raw, sizeof(raw)), 1);
    CHECK_EQ_INT(api_base64_decode("-_-_", 4, PX_BASE64_URL, raw, sizeof(raw)), 3);
    CHECK(memcmp(raw, hi, 3) == 0);
    CHECK_EQ_INT(api_base64_decode("", 0, 0, raw, 0), 0);
    /* Strict: one text per byte string. */
    CHECK_EQ_INT(api_base64_decode("Zg", 2, 0, raw, sizeof(raw)), PX_EINVAL); /* no padding */
    CHECK_EQ_INT(api_base64_decode("Zg==", 4, PX_BASE64_URL, raw, sizeof(raw)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("Zh==", 4, 0, raw, sizeof(raw)), PX_EINVAL); /* low bits */
    CHECK_EQ_INT(api_base64_decode("Z===", 4, 0, raw, sizeof(raw)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("Zg=a", 4, 0, raw, sizeof(raw)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("-_-_", 4, 0, raw, sizeof(raw)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("+/+/", 4, PX_BASE64_URL, raw, sizeof(raw)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("Zm9v\n", 5, 0, raw, sizeof(raw)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("Z", 1, PX_BASE64_URL, raw, sizeof(raw)), PX_EINVAL);
    /* Too small a buffer: refused whole, nothing written. */
    memset(raw, 0, sizeof(raw));
    CHECK_EQ_INT(api_base64_decode("Zm9vYmFy", 8, 0, raw, 5), PX_EOVERFLOW);
    CHECK(raw[0] == 0);
    CHECK_EQ_INT(api_base64_decode("Zm9vYmFy", 8, 0, raw, 6), 6);
    CHECK_EQ_INT(api_base64_decode(NULL, 4, 0, raw, sizeof(raw)), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("Zg==", 4, 0, NULL, 8), PX_EINVAL);
    CHECK_EQ_INT(api_base64_decode("Zg==", 4, 2, raw, sizeof(raw)), PX_EINVAL);
    /* Round trip of every length up to 40 bytes, both forms. */
    for (size_t n = 0; n <= 40; n++) {
        unsigned char in[40], back[40];
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 37 + n);
        for (int flags = 0; flags <= PX_BASE64_URL; flags++) {
            int len = api_base64_encode(in, n, flags, out, sizeof(out));
            CHECK(len >= 0);
            CHECK_EQ_INT(api_base64_decode(out, (size_t)len, flags, back, sizeof(back)), (int)n);
            CHECK(memcmp(in, back, n) == 0);
        }
    }
}

static char *printf_in(px_req_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = api_req_vprintf(r, fmt, ap);
    va_end(ap);
    return out;
}

static void test_req_printf(void)
{
    px_req_t *r = calloc(1, sizeof(*r));
    CHECK_OR_RETURN(r);
    CHECK_STR(printf_in(r, "%lld", (long long)-42), "-42");
    CHECK_STR(printf_in(r, "/v1/users/%s", "abc"), "/v1/users/abc");
    CHECK_STR(printf_in(r, "%s", ""), "");
    char big[3000];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *long_one = printf_in(r, "<%s>", big);
    CHECK(long_one && strlen(long_one) == sizeof(big) + 1 && long_one[sizeof(big)] == '>');
    CHECK(printf_in(r, NULL) == NULL);
    CHECK(printf_in(NULL, "%d", 1) == NULL);
    arena_free(&r->arena);
    free(r);
}

static void test_plugin_metrics(void)
{
    metrics_plugin_reset();
    metrics_attach(3);
    metrics_plugin_attach(3);
    int a = metrics_plugin_counter("alpha", "jobs_total", "Jobs done.");
    int b = metrics_plugin_counter("beta", "jobs_total", "Jobs done.");
    CHECK(a >= 0 && b >= 0 && a != b);
    CHECK_EQ_INT(metrics_plugin_counter("alpha", "jobs_total", "again"), PX_EEXIST);
    double bounds[] = {0.1, 1};
    CHECK_EQ_INT(metrics_plugin_histogram("gamma", "jobs_total", "x", bounds, 2), PX_EEXIST);
    CHECK_EQ_INT(metrics_plugin_counter("alpha", "panthera_x", "x"), PX_EINVAL);
    CHECK_EQ_INT(metrics_plugin_counter("alpha", "a-b", "x"), PX_EINVAL);
    CHECK_EQ_INT(metrics_plugin_counter("alpha", "ok_total", "two\nlines"), PX_EINVAL);
    double nan_bounds[] = {1, 1};
    CHECK_EQ_INT(metrics_plugin_histogram("alpha", "h", "x", nan_bounds, 2), PX_EINVAL);
    CHECK_EQ_INT(metrics_plugin_histogram("alpha", "h", "x", bounds, 0), PX_EINVAL);
    int h = metrics_plugin_histogram("alpha", "latency_seconds", "Latency.", bounds, 2);
    CHECK(h >= 0);
    metrics_plugin_add("alpha", a, 2);
    metrics_plugin_add("beta", b, 5);
    metrics_plugin_add("beta", a, 100);  /* not beta's: ignored */
    metrics_plugin_add("alpha", h, 100); /* not a counter: ignored */
    metrics_plugin_observe("alpha", h, 0.05);
    metrics_plugin_observe("alpha", h, 0.5);
    metrics_plugin_observe("alpha", h, 5);
    size_t len;
    char *text = metrics_render(&len);
    CHECK_CONTAINS(text, "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\n"
                         "jobs_total{plugin=\"alpha\"} 2\njobs_total{plugin=\"beta\"} 5\n");
    CHECK_CONTAINS(text, "# TYPE latency_seconds histogram\n"
                         "latency_seconds_bucket{plugin=\"alpha\",le=\"0.1\"} 1\n"
                         "latency_seconds_bucket{plugin=\"alpha\",le=\"1\"} 2\n"
                         "latency_seconds_bucket{plugin=\"alpha\",le=\"+Inf\"} 3\n"
                         "latency_seconds_sum{plugin=\"alpha\"} 5.5499999999999998\n"
                         "latency_seconds_count{plugin=\"alpha\"} 3\n");
    /* One family for the shared name: HELP and TYPE once. */
    CHECK(strstr(strstr(text, "# TYPE jobs_total") + 1, "# TYPE jobs_total") == NULL);
    free(text);
    metrics_plugin_reset();
}

/* A plugin whose init is running, with a [plugin:t] section of `n` key = value pairs. */
typedef struct fake {
    plugin_set_t set;
    config_plugin_t section;
    config_entry_t entries[4];
    px_plugin_t p;
} fake_t;

static void fake_init(fake_t *f, const char *const *kv, size_t n)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++)
        f->entries[i] = (config_entry_t){.key = (char *)kv[2 * i], .value = (char *)kv[2 * i + 1]};
    f->section = (config_plugin_t){.name = "t", .entries = f->entries, .nentries = n};
    f->p = (px_plugin_t){.name = "t", .section = &f->section, .set = &f->set};
    f->set.registering = &f->p;
}

static void fake_free(fake_t *f)
{
    for (size_t i = 0; i < f->p.nkeys; i++) {
        free(f->p.keys[i].key);
        free(f->p.keys[i].default_value);
    }
    free(f->p.keys);
}

static char log_path[] = "/tmp/test_helpers_log_XXXXXX";

/* The error log since the last call. */
static char *log_text(void)
{
    FILE *fp = fopen(log_path, "r");
    char *text = calloc(1, 8192);
    if (fp) {
        size_t n = fread(text, 1, 8191, fp);
        text[n] = '\0';
        fclose(fp);
    }
    if (truncate(log_path, 0)) /* the next call sees only what follows */
        CHECK(!"truncate failed");
    return text;
}

static void test_settings(void)
{
    int fd = mkstemp(log_path);
    CHECK_OR_RETURN(fd >= 0);
    close(fd);
    log_open(log_path, LOG_INFO);
    int64_t n = -1, ttl = -1, size = -1, on = -1, pick = -1;
    const px_setting_t list[] = {
        {"n", "5", PX_SETTING_INT, 1, 64, NULL, &n},
        {"ttl", "60s", PX_SETTING_DURATION_MS, 1000, 86400000, NULL, &ttl},
        {"size", "8k", PX_SETTING_SIZE, 1024, 1 << 30, NULL, &size},
        {"on", "yes", PX_SETTING_BOOL, 0, 0, NULL, &on},
        {"pick", "b", PX_SETTING_CHOICE, 0, 0, "a|b|cc", &pick},
        {NULL, NULL, 0, 0, 0, NULL, NULL},
    };
    fake_t f;
    /* Defaults. */
    fake_init(&f, NULL, 0);
    CHECK_EQ_INT(api_config_settings(&f.p, list), 0);
    CHECK(n == 5 && ttl == 60000 && size == 8192 && on == 1 && pick == 1);
    CHECK_EQ_INT((int)f.p.nkeys, 5); /* declared, so `pantherad -t` knows them */
    fake_free(&f);
    /* Configured values, bounds inclusive. */
    const char *const good[] = {"n", "64", "ttl", "1d", "pick", "cc", "on", "off"};
    fake_init(&f, good, 4);
    CHECK_EQ_INT(api_config_settings(&f.p, list), 0);
    CHECK(n == 64 && ttl == 86400000 && pick == 2 && on == 0);
    fake_free(&f);
    free(log_text());
    /* Out of range: one line naming plugin, key, value and the range as written. */
    const char *const big[] = {"n", "65"};
    n = -1;
    fake_init(&f, big, 1);
    CHECK_EQ_INT(api_config_settings(&f.p, list), PX_EINVAL);
    CHECK(n == -1); /* untouched on error */
    char *text = log_text();
    CHECK_CONTAINS(text, "[plugin:t] n = \"65\": expected 1 to 64");
    free(text);
    fake_free(&f);
    const char *const short_ttl[] = {"ttl", "500ms"};
    fake_init(&f, short_ttl, 1);
    CHECK_EQ_INT(api_config_settings(&f.p, list), PX_EINVAL);
    text = log_text();
    CHECK_CONTAINS(text, "[plugin:t] ttl = \"500ms\": expected 1s to 1d");
    free(text);
    fake_free(&f);
    const char *const small[] = {"size", "1000"};
    fake_init(&f, small, 1);
    CHECK_EQ_INT(api_config_settings(&f.p, list), PX_EINVAL);
    text = log_text();
    CHECK_CONTAINS(text, "size = \"1000\": expected 1k to 1g");
    free(text);
    fake_free(&f);
    /* Malformed: the host's parser's own line. Unknown choice: the choices listed. */
    const char *const bad[] = {"n", "five"};
    fake_init(&f, bad, 1);
    CHECK_EQ_INT(api_config_settings(&f.p, list), PX_EINVAL);
    text = log_text();
    CHECK_CONTAINS(text, "[plugin:t] n = \"five\": expected a whole number");
    free(text);
    fake_free(&f);
    const char *const prefix[] = {"pick", "c"}; /* a prefix of "cc" is not "cc" */
    fake_init(&f, prefix, 1);
    CHECK_EQ_INT(api_config_settings(&f.p, list), PX_EINVAL);
    text = log_text();
    CHECK_CONTAINS(text, "pick = \"c\": expected one of a|b|cc");
    free(text);
    fake_free(&f);
    /* Misuse: after init, twice in one init (the keys exist), a bad entry. */
    fake_init(&f, NULL, 0);
    f.set.registering = NULL;
    CHECK_EQ_INT(api_config_settings(&f.p, list), PX_ESTATE);
    f.set.registering = &f.p;
    CHECK_EQ_INT(api_config_settings(&f.p, list), 0);
    CHECK_EQ_INT(api_config_settings(&f.p, list), PX_EEXIST);
    fake_free(&f);
    fake_init(&f, NULL, 0);
    const px_setting_t no_out[] = {{"x", "1", PX_SETTING_INT, 0, 9, NULL, NULL}, {0}};
    const px_setting_t upside_down[] = {{"x", "1", PX_SETTING_INT, 9, 0, NULL, &n}, {0}};
    const px_setting_t bad_kind[] = {{"y", "1", 99, 0, 9, NULL, &n}, {0}};
    CHECK_EQ_INT(api_config_settings(&f.p, no_out), PX_EINVAL);
    CHECK_EQ_INT(api_config_settings(&f.p, upside_down), PX_EINVAL);
    CHECK_EQ_INT(api_config_settings(&f.p, bad_kind), PX_EINVAL);
    CHECK_EQ_INT(api_config_settings(&f.p, NULL), PX_EINVAL);
    fake_free(&f);
    log_open(NULL, LOG_INFO);
    unlink(log_path);
}

/* Shared counters: one per (plugin, name), the same cell on every lookup, and shared
 * with a forked child as with a worker (the table is mapped before the fork). */
static void test_shared_counter(void)
{
    px_shared_counter_t *a = NULL, *again = NULL, *b = NULL, *other = NULL;
    CHECK_EQ_INT(shared_counter_find("alpha", "version", &a), 0);
    CHECK_EQ_INT(shared_counter_find("alpha", "version", &again), 0);
    CHECK_EQ_INT(shared_counter_find("beta", "version", &b), 0);
    CHECK_EQ_INT(shared_counter_find("alpha", "other", &other), 0);
    CHECK(a && a == again && b && b != a && other && other != a && other != b);
    CHECK_EQ_U64(shared_counter_add(a, 0), 0);
    CHECK_EQ_U64(shared_counter_add(a, 2), 2);
    CHECK_EQ_U64(shared_counter_add(a, 3), 5);
    CHECK_EQ_U64(shared_counter_add(b, 0), 0);
    CHECK_EQ_U64(shared_counter_add(NULL, 7), 0);
    pid_t pid = fork();
    if (pid == 0) {
        px_shared_counter_t *mine = NULL;
        int ok = shared_counter_find("alpha", "version", &mine) == 0 && mine == a &&
                 shared_counter_add(mine, 0) == 5 && shared_counter_add(mine, 10) == 15;
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ_U64(shared_counter_add(a, 0), 15);
    CHECK_EQ_INT(shared_counter_find("alpha", "", &a), PX_EINVAL);
    CHECK_EQ_INT(shared_counter_find("alpha", NULL, &a), PX_EINVAL);
    CHECK_EQ_INT(shared_counter_find("alpha", "x", NULL), PX_EINVAL);
    char longname[SHARED_COUNTER_NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_EQ_INT(shared_counter_find("alpha", longname, &a), PX_EINVAL);
    longname[SHARED_COUNTER_NAME_MAX] = '\0';
    CHECK_EQ_INT(shared_counter_find("alpha", longname, &other), 0);
    /* The table fills up: every name taken gets its cell, then PX_EOVERFLOW. */
    int taken = 0, rc = 0;
    for (int i = 0; i < SHARED_COUNTERS + 1 && rc == 0; i++) {
        char name[16];
        snprintf(name, sizeof(name), "fill%d", i);
        px_shared_counter_t *c = NULL;
        rc = shared_counter_find("gamma", name, &c);
        taken += rc == 0;
    }
    CHECK_EQ_INT(rc, PX_EOVERFLOW);
    CHECK_EQ_INT(taken, SHARED_COUNTERS - 4);
    /* Names already there are still found. */
    CHECK_EQ_INT(shared_counter_find("alpha", "version", &again), 0);
    CHECK(again == a);
}

int main(void)
{
    RUN(test_settings);
    RUN(test_stmt_names);
    RUN(test_accept);
    RUN(test_etags);
    RUN(test_uuids);
    RUN(test_req_strdup);
    RUN(test_base64);
    RUN(test_req_printf);
    RUN(test_plugin_metrics);
    RUN(test_shared_counter);
    return check_finish();
}
