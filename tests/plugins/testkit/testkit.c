/*
 * testkit — a plugin for the host's own tests. Never enabled in production.
 *
 *   POST /v1/test/echo         {"length": N, "body": "<body as text>", "json": <parsed or null>}
 *   POST /v1/test/json         the parsed JSON body back (400/415 through px_req_json)
 *   GET  /v1/test/headers      {"<lower-case name>": "value", ...} of the request
 *   GET  /v1/test/query        {"page": ..., "q": ...} from the query string
 *   GET  /v1/test/params/:a/:b {"a": ..., "b": ...}
 *   GET  /v1/test/sleep?ms=N   answers after blocking N ms (a deliberately bad handler); logs
 *                              "sleep of N ms started" first, so a test knows it is in flight
 *   GET  /v1/test/crash        segfaults the worker
 *   GET  /v1/test/crash_later  segfaults the worker in a px_work done callback
 *   GET  /v1/test/crash_job    segfaults the worker in a px_work job (a pool thread)
 *   GET  /v1/test/noanswer     returns PX_OK without answering (the host must 500)
 *   GET  /v1/test/error?code=N returns the PX_E* code N
 *   GET  /v1/test/config       the plugin's config values
 *   GET  /v1/test/whoami       the caller (token optional)      {"id": ..., "role": ...}
 *   GET  /v1/test/private      caller required                  {"id": ...}
 *   GET  /v1/test/adminonly    role admin required
 *   GET  /v1/admin/ping        token optional (for the admin-prefix Lua example)
 *   POST /v1/test/hook         runs the Lua hook "before_test" on the JSON body
 *   POST /v1/test/token        {"sub","role"} -> an access token (tests only!)
 *   GET  /v1/test/client       {"client": px_req_client()}
 *   GET  /v1/test/work?ms=N    a job of N ms on the thread pool -> {"max_running": M}, the
 *                              most jobs this worker ever saw running at once; logs
 *                              "work of N ms handed to the pool" once it is queued
 * Commands: testkit:echo ARGS... (prints them), testkit:sql SQL (prints the row count)
 * OpenAPI: describes /v1/test/echo
 *
 * Config ([plugin:testkit]): crash_at_init = no|yes (abort in init, for respawn backoff);
 * label = TEXT (shown by /v1/test/config); start_gate = DIR (a slow-starting plugin whose
 * test says when: init waits until it can take one file named ticket-* from DIR, logging
 * "waiting at the start gate" first and "passed the start gate" after)
 */
#include <dirent.h>
#include <panthera/panthera.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static px_plugin_t *self_plugin;

static int echo(px_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *body = px_req_body(req, &len);
    json_t *parsed = NULL;
    const char *ctype = px_req_header(req, "Content-Type");
    if (ctype && strstr(ctype, "json"))
        px_req_json(req, &parsed);
    return px_res_json(req, 200,
                       json_pack("{s:I, s:s%, s:O?}", "length", (json_int_t)len, "body", body,
                                 len, "json", parsed));
}

static int json_back(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    return px_res_json(req, 200, json_incref(body));
}

static int headers(px_req_t *req, void *ud)
{
    (void)ud;
    static const char *names[] = {"host", "user-agent", "x-request-id", "content-type",
                                  "x-test", "accept"};
    json_t *out = json_object();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = px_req_header(req, names[i]);
        if (v)
            json_object_set_new(out, names[i], json_string(v));
    }
    return px_res_json(req, 200, out);
}

static int query(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:s?, s:s?, s:s?}", "page", px_req_query(req, "page"), "q",
                                 px_req_query(req, "q"), "empty", px_req_query(req, "empty")));
}

static int params(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:s, s:s}", "a", px_req_param(req, "a"), "b",
                                 px_req_param(req, "b")));
}

static int sleep_ms(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ms = px_req_query(req, "ms");
    long n = ms ? strtol(ms, NULL, 10) : 100;
    if (n < 0 || n > 60000)
        return PX_EINVAL;
    /* The test's barrier: once this line is in the error log the request is in flight. */
    px_log(self_plugin, PX_LOG_INFO, "sleep of %ld ms started", n);
    struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    return px_res_json(req, 200, json_pack("{s:i}", "slept_ms", (int)n));
}

static int crash(px_req_t *req, void *ud)
{
    (void)req;
    (void)ud;
    px_log(self_plugin, PX_LOG_WARN, "crashing on purpose");
    raise(SIGSEGV);
    return PX_EINTERNAL;
}

static void crash_job(void *ud)
{
    (void)ud;
}

static void crash_in_thread(void *ud)
{
    (void)ud;
    raise(SIGSEGV);
}

static void never_done(px_req_t *req, int status, void *ud)
{
    (void)status;
    (void)ud;
    px_res_error(req, 500, "internal", "the job should have crashed", NULL);
}

static int crash_in_job(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_work(req, crash_in_thread, never_done, NULL);
    return rc ? rc : PX_ASYNC;
}

static void crash_done(px_req_t *req, int status, void *ud)
{
    (void)req;
    (void)status;
    (void)ud;
    raise(SIGSEGV);
}

static int crash_later(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_work(req, crash_job, crash_done, NULL);
    return rc ? rc : PX_ASYNC;
}

static int noanswer(px_req_t *req, void *ud)
{
    (void)req;
    (void)ud;
    return PX_OK;
}

static int error(px_req_t *req, void *ud)
{
    (void)ud;
    const char *code = px_req_query(req, "code");
    return code ? (int)strtol(code, NULL, 10) : PX_EINTERNAL;
}

static int config(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:s?, s:s?}", "crash_at_init",
                                 px_config_get(self_plugin, "crash_at_init"), "label",
                                 px_config_get(self_plugin, "label")));
}

static int whoami(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:s?, s:s?}", "id", px_req_caller_id(req), "role",
                                 px_req_caller_role(req)));
}

static int hook(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    json_incref(body);
    rc = px_hook_run(req, "before_test", &body);
    if (rc) {
        json_decref(body);
        return rc;
    }
    return px_res_json(req, 200, body);
}

static int token(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    int64_t expires;
    const char *t = px_token_issue(req, json_string_value(json_object_get(body, "sub")),
                                   json_string_value(json_object_get(body, "role")), &expires);
    if (!t)
        return PX_EINVAL;
    return px_res_json(req, 200,
                       json_pack("{s:s, s:I}", "accessToken", t, "expiresIn", (json_int_t)expires));
}

static int client(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200, json_pack("{s:s}", "client", px_req_client(req)));
}

static int running, max_running; /* touched from pool threads */

typedef struct job {
    long ms;
} job_t;

static void job_work(void *ud)
{
    job_t *job = ud;
    int now = __atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
    int seen = __atomic_load_n(&max_running, __ATOMIC_SEQ_CST);
    while (now > seen && !__atomic_compare_exchange_n(&max_running, &seen, now, false,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    struct timespec ts = {job->ms / 1000, (job->ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    __atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
}

static void job_done(px_req_t *req, int status, void *ud)
{
    free(ud);
    if (!req)
        return;
    if (status)
        px_res_error(req, 503, "unavailable", "the job did not run", NULL);
    else
        px_res_json(req, 200, json_pack("{s:i}", "max_running",
                                        __atomic_load_n(&max_running, __ATOMIC_SEQ_CST)));
}

static int work(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ms = px_req_query(req, "ms");
    job_t *job = malloc(sizeof(*job));
    if (!job)
        return PX_EINTERNAL;
    job->ms = ms ? strtol(ms, NULL, 10) : 50;
    if (job->ms < 0 || job->ms > 10000)
        job->ms = 50;
    long job_ms = job->ms; /* the job may be done and freed before px_work returns */
    int rc = px_work(req, job_work, job_done, job);
    if (rc) {
        free(job);
        return rc;
    }
    px_log(self_plugin, PX_LOG_INFO, "work of %ld ms handed to the pool", job_ms);
    return PX_ASYNC;
}

static int cmd_echo(px_plugin_t *self, int argc, char **argv)
{
    (void)self;
    for (int i = 0; i < argc; i++)
        printf("%s%s", i ? " " : "", argv[i]);
    printf("\n");
    return 0;
}

static int cmd_sql(px_plugin_t *self, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: testkit:sql SQL\n");
        return 2;
    }
    char err[256];
    int n = px_command_sql(self, argv[1], 0, NULL, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "testkit:sql: %s\n", err);
        return 1;
    }
    printf("%d\n", n);
    return 0;
}

/* Takes one ticket-* file of `dir` by renaming it (atomic: two workers never take the same
 * one). 1 when one was taken. */
static int take_ticket(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int taken = 0;
    struct dirent *e;
    while (!taken && (e = readdir(d))) {
        if (strncmp(e->d_name, "ticket-", 7) != 0)
            continue;
        char from[512], to[512];
        snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
        snprintf(to, sizeof(to), "%s/taken-%ld-%s", dir, (long)getpid(), e->d_name);
        taken = rename(from, to) == 0;
    }
    closedir(d);
    return taken;
}

static void wait_at_gate(const char *dir)
{
    px_log(self_plugin, PX_LOG_INFO, "waiting at the start gate");
    struct timespec poll = {0, 20 * 1000000L};
    while (!take_ticket(dir))
        nanosleep(&poll, NULL);
    px_log(self_plugin, PX_LOG_INFO, "passed the start gate");
}

static int testkit_init(px_plugin_t *self)
{
    self_plugin = self;
    px_config_declare(self, "crash_at_init", "no");
    px_config_declare(self, "label", NULL);
    px_config_declare(self, "start_gate", NULL);
    if (!strcmp(px_config_get(self, "crash_at_init"), "yes"))
        abort();
    const char *gate = px_config_get(self, "start_gate");
    if (gate && *gate)
        wait_at_gate(gate);
    static const struct {
        const char *method, *pattern;
        px_handler_fn fn;
    } routes[] = {
        {"POST", "/v1/test/echo", echo},        {"PUT", "/v1/test/echo", echo},
        {"POST", "/v1/test/json", json_back},   {"GET", "/v1/test/headers", headers},
        {"GET", "/v1/test/query", query},       {"GET", "/v1/test/params/:a/:b", params},
        {"GET", "/v1/test/sleep", sleep_ms},    {"GET", "/v1/test/crash", crash},
        {"GET", "/v1/test/noanswer", noanswer}, {"GET", "/v1/test/error", error},
        {"GET", "/v1/test/config", config},     {"GET", "/v1/test/crash_later", crash_later},
        {"GET", "/v1/test/crash_job", crash_in_job},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = px_route(self, routes[i].method, routes[i].pattern, routes[i].fn, NULL);
        if (rc)
            return rc;
    }
    int rc = px_route_auth(self, "GET", "/v1/test/whoami", whoami, NULL, PX_AUTH_OPTIONAL, NULL);
    if (!rc)
        rc = px_route_auth(self, "GET", "/v1/test/private", whoami, NULL, PX_AUTH_REQUIRED, NULL);
    if (!rc)
        rc = px_route_auth(self, "GET", "/v1/test/adminonly", whoami, NULL, PX_AUTH_REQUIRED,
                           "admin");
    if (!rc)
        rc = px_route_auth(self, "GET", "/v1/admin/ping", whoami, NULL, PX_AUTH_OPTIONAL, NULL);
    if (!rc)
        rc = px_route(self, "POST", "/v1/test/hook", hook, NULL);
    if (!rc && PX_HAS(hook_declare))
        rc = px_hook_declare(self, "before_test", "changes or vetoes the body of POST /v1/test/hook");
    if (!rc)
        rc = px_route(self, "POST", "/v1/test/token", token, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/test/work", work, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/test/client", client, NULL);
    if (!rc)
        rc = px_command(self, "echo", "testkit:echo ARGS... - print the arguments", cmd_echo);
    if (!rc)
        rc = px_command(self, "sql", "testkit:sql SQL - run SQL, print the row count", cmd_sql);
    if (!rc)
        rc = px_openapi(self, json_pack("{s:{s:{s:{s:s, s:{s:{s:s}}}}}}", "paths",
                                        "/v1/test/echo", "post", "summary",
                                        "Echo the request body", "responses", "200",
                                        "description", "The body, its length and its JSON"));
    return rc;
}

PX_PLUGIN("testkit", "1.0.0", testkit_init, NULL, NULL);
