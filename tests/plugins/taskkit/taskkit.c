/*
 * taskkit — exercises SDK 1.2 work outside a request (tests/api/test_tasks.py).
 *
 *   on_worker_start  logs "taskkit: worker started", begins task "ticker" (a 50 ms timer)
 *   on_worker_stop   logs "taskkit: worker draining after N ticks", ends "ticker"
 *   GET  /v1/taskkit/misuse        every refusal the SDK owes a misuse, as codes
 *   GET  /v1/taskkit/answered      answers, then starts a timer on the finished request
 *   GET  /v1/taskkit/last          {"timer_after_answer": code} from the route above
 *   GET  /v1/taskkit/delay?ms=N    answered by a one-shot timer of the request
 *   GET  /v1/taskkit/ephemeral     a task whose 10 ms timer ends it on the 3rd tick; the
 *                                  answer comes from a second task's 5th tick with both
 *                                  counts {"first": 3, "second": 5}
 *   GET  /v1/taskkit/job?queue=Q&ms=N&fail=0|1
 *                                  a task runs an N ms job on queue Q (default: the
 *                                  default queue), then ends with 0 or an error; answers
 *                                  {"done_req_is_task": 1} when the job's done callback
 *                                  got the task
 *   GET  /v1/taskkit/slow?ms=N     an N ms job on the "slow" queue (concurrency 1)
 *   GET  /v1/taskkit/single?ms=N   a task runs the singleton job "single": holds the lock
 *                                  N ms; {"outcome": "ran"|"skipped"|"error"}
 */
#include <panthera/panthera.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static px_plugin_t *self_plugin;
static px_req_t *ticker;
static int ticks;
static int timer_after_answer = 1;

static void on_tick(px_req_t *owner, int64_t id, void *ud)
{
    (void)owner, (void)id, (void)ud;
    ticks++;
}

static void worker_started(px_plugin_t *p, void *ud)
{
    (void)ud;
    px_log(p, PX_LOG_INFO, "taskkit: worker started");
    ticker = px_task_begin(p, "ticker");
    if (ticker)
        px_timer_start(ticker, 50, 50, on_tick, NULL);
}

static void worker_draining(px_plugin_t *p, void *ud)
{
    (void)ud;
    px_log(p, PX_LOG_INFO, "taskkit: worker draining after %d ticks", ticks);
    if (ticker)
        px_task_end(ticker, 0);
    ticker = NULL;
}

static void no_work(void *ud)
{
    (void)ud;
}

static void no_done(px_req_t *req, int status, void *ud)
{
    (void)req, (void)status, (void)ud;
}

static int misuse(px_req_t *req, void *ud)
{
    (void)ud;
    px_req_t *task = px_task_begin(self_plugin, "misuse");
    if (!task)
        return PX_EINTERNAL;
    json_t *out = json_object();
    json_object_set_new(out, "res_json_on_task", json_integer(px_res_json(task, 200, json_object())));
    json_object_set_new(out, "res_send_on_task", json_integer(px_res_send(task, 200, "text/plain", "x", 1)));
    json_object_set_new(out, "res_error_on_task", json_integer(px_res_error(task, 500, "internal", "x", NULL)));
    json_object_set_new(out, "res_header_on_task", json_integer(px_res_header(task, "X-A", "b")));
    json_object_set_new(out, "task_is_task", json_integer(px_req_is_task(task)));
    json_object_set_new(out, "req_is_task", json_integer(px_req_is_task(req)));
    json_object_set_new(out, "task_end_on_request", json_integer(px_task_end(req, 0)));
    json_object_set_new(out, "timer_null_fn", json_integer((json_int_t)px_timer_start(task, 1, 0, NULL, NULL)));
    json_object_set_new(out, "timer_stop_unknown", json_integer(px_timer_stop(task, 999999999)));
    json_object_set_new(out, "work_on_unknown_queue", json_integer(px_work_on(task, "nope", no_work, no_done, NULL)));
    json_object_set_new(out, "bad_task_name", json_boolean(px_task_begin(self_plugin, "Bad Name") == NULL));
    json_object_set_new(out, "on_worker_start_after_init", json_integer(px_on_worker_start(self_plugin, worker_started, NULL)));
    json_object_set_new(out, "work_queue_after_init", json_integer(px_work_queue(self_plugin, "late", 1, 1)));
    json_object_set_new(out, "singleton_on_request", json_integer(px_task_singleton(req, NULL, NULL)));
    int64_t id = px_timer_start(task, 60000, 0, on_tick, NULL);
    json_object_set_new(out, "timer_stop", json_integer(px_timer_stop(task, id)));
    json_object_set_new(out, "timer_stop_again", json_integer(px_timer_stop(task, id)));
    json_object_set_new(out, "task_end", json_integer(px_task_end(task, 0)));
    return px_res_json(req, 200, out);
}

static int answered(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_res_json(req, 200, json_pack("{s:b}", "answered", 1));
    timer_after_answer = (int)px_timer_start(req, 10, 0, on_tick, NULL);
    return rc;
}

static int last(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200, json_pack("{s:i}", "timer_after_answer", timer_after_answer));
}

static void delay_fired(px_req_t *req, int64_t id, void *ud)
{
    (void)ud;
    px_res_json(req, 200, json_pack("{s:b, s:b}", "fired", 1, "positive_id", id > 0));
}

static int delay(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ms = px_req_query(req, "ms");
    int64_t id = px_timer_start(req, ms ? strtoull(ms, NULL, 10) : 10, 0, delay_fired, NULL);
    return id > 0 ? PX_ASYNC : (int)id;
}

typedef struct pair {
    px_req_t *req;
    int first;
    int second;
} pair_t;

static void first_tick(px_req_t *task, int64_t id, void *ud)
{
    (void)id;
    pair_t *p = ud;
    if (++p->first == 3)
        px_task_end(task, 0);
}

static void second_tick(px_req_t *task, int64_t id, void *ud)
{
    (void)id;
    pair_t *p = ud;
    if (++p->second < 5)
        return;
    px_res_json(p->req, 200, json_pack("{s:i, s:i}", "first", p->first, "second", p->second));
    px_task_end(task, 0);
    free(p);
}

static int ephemeral(px_req_t *req, void *ud)
{
    (void)ud;
    pair_t *p = calloc(1, sizeof(*p));
    p->req = req;
    px_req_t *a = px_task_begin(self_plugin, "ephemeral");
    px_req_t *b = px_task_begin(self_plugin, "ephemeral");
    if (!a || !b || px_timer_start(a, 10, 10, first_tick, p) <= 0 ||
        px_timer_start(b, 20, 20, second_tick, p) <= 0) {
        free(p);
        return PX_EINTERNAL;
    }
    return PX_ASYNC;
}

typedef struct job {
    px_req_t *req;
    long ms;
    int fail;
} job_t;

static void job_sleep(void *ud)
{
    job_t *job = ud;
    struct timespec ts = {job->ms / 1000, (job->ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void task_job_done(px_req_t *task, int status, void *ud)
{
    job_t *job = ud;
    px_res_json(job->req, status ? 503 : 200,
                json_pack("{s:i}", "done_req_is_task", task ? px_req_is_task(task) : -1));
    if (task)
        px_task_end(task, job->fail ? PX_EINTERNAL : 0);
    free(job);
}

static int task_job(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ms = px_req_query(req, "ms"), *fail = px_req_query(req, "fail");
    job_t *job = calloc(1, sizeof(*job));
    job->req = req;
    job->ms = ms ? strtol(ms, NULL, 10) : 10;
    job->fail = fail && !strcmp(fail, "1");
    px_req_t *task = px_task_begin(self_plugin, job->fail ? "job-failing" : "job");
    int rc = task ? px_work_on(task, px_req_query(req, "queue"), job_sleep, task_job_done, job)
                  : PX_EINTERNAL;
    if (rc) {
        if (task)
            px_task_end(task, rc);
        free(job);
        return rc;
    }
    return PX_ASYNC;
}

static void req_job_done(px_req_t *req, int status, void *ud)
{
    free(ud);
    if (req)
        px_res_json(req, status ? 503 : 200, json_pack("{s:s}", "queue", "slow"));
}

static int slow(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ms = px_req_query(req, "ms");
    job_t *job = calloc(1, sizeof(*job));
    job->ms = ms ? strtol(ms, NULL, 10) : 1000;
    int rc = px_work_on(req, "slow", job_sleep, req_job_done, job);
    if (rc) {
        free(job);
        return rc;
    }
    return PX_ASYNC;
}

typedef struct single {
    px_req_t *req;
    char ms[16];
} single_t;

static void single_answer(px_req_t *task, single_t *s, const char *outcome, int status)
{
    px_res_json(s->req, 200, json_pack("{s:s}", "outcome", outcome));
    px_task_end(task, status);
    free(s);
}

static void single_committed(px_req_t *task, const px_pg_error_t *err, void *ud)
{
    single_answer(task, ud, err ? "error" : "ran", err ? PX_EUNAVAIL : 0);
}

static void single_slept(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                         void *ud)
{
    (void)task, (void)res, (void)err, (void)ud;
}

static void single_locked(px_req_t *task, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    single_t *s = ud;
    if (err) {
        single_answer(task, s, "error", PX_EUNAVAIL);
        return;
    }
    if (!txn) {
        single_answer(task, s, "skipped", 0);
        return;
    }
    const char *params[] = {s->ms};
    px_pg_txn_query(txn, NULL, "SELECT pg_sleep($1::int / 1000.0)", 1, params, single_slept, s);
    px_pg_commit(txn, single_committed, s);
}

static int single(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ms = px_req_query(req, "ms");
    single_t *s = calloc(1, sizeof(*s));
    s->req = req;
    snprintf(s->ms, sizeof(s->ms), "%d", ms ? atoi(ms) : 500);
    px_req_t *task = px_task_begin(self_plugin, "single");
    int rc = task ? px_task_singleton(task, single_locked, s) : PX_EINTERNAL;
    if (rc) {
        if (task)
            px_task_end(task, rc);
        free(s);
        return rc;
    }
    return PX_ASYNC;
}

static int taskkit_init(px_plugin_t *self)
{
    self_plugin = self;
    int rc = px_on_worker_start(self, worker_started, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, worker_draining, NULL);
    if (!rc)
        rc = px_work_queue(self, "slow", 1, 16);
    if (!rc && px_work_queue(self, "slow", 1, 16) != PX_EEXIST)
        rc = PX_EINTERNAL;
    if (!rc && px_task_begin(self, "too-early") != NULL)
        rc = PX_EINTERNAL;
    static const struct {
        const char *pattern;
        px_handler_fn fn;
    } routes[] = {
        {"/v1/taskkit/misuse", misuse}, {"/v1/taskkit/answered", answered},
        {"/v1/taskkit/last", last},     {"/v1/taskkit/delay", delay},
        {"/v1/taskkit/ephemeral", ephemeral}, {"/v1/taskkit/job", task_job},
        {"/v1/taskkit/slow", slow},     {"/v1/taskkit/single", single},
    };
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = px_route(self, "GET", routes[i].pattern, routes[i].fn, NULL);
    return rc;
}

PX_PLUGIN("taskkit", "1.0.0", taskkit_init, NULL, NULL);
