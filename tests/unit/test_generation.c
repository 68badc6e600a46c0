/* test_generation.c — px_generation_new and its readers (api_generation.c) without Redis:
 * misuse is refused with its code, memory is never trusted before the worker started or
 * when it could not subscribe, and a bump moves the host's counter whether or not it
 * could be published. The paths with Redis (other hosts' messages, the channel going
 * down and coming back) are the task and content plugins' API tests
 * (tests/api/test_task_listmemory.py, tests/api/test_content_local.py). */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "check.h"
#include "config.h"
#include "plugin.h"
#include "request.h"
#include "tasks.h"
#include "worker.h"

typedef struct fake {
    plugin_set_t set;
    config_plugin_t section;
    px_plugin_t p;
} fake_t;

static void fake_init(fake_t *f, const char *name)
{
    memset(f, 0, sizeof(*f));
    f->section = (config_plugin_t){.name = (char *)name};
    f->p = (px_plugin_t){.name = (char *)name, .section = &f->section, .set = &f->set};
    f->set.registering = &f->p;
}

static void fake_free(fake_t *f)
{
    api_generation_free_all(&f->p);
    tasks_registry_free(&f->set);
}

static void test_new_misuse(void)
{
    fake_t f;
    fake_init(&f, "gen_misuse");
    px_generation_t *g = NULL, *again = NULL;
    CHECK_EQ_INT(api_generation_new(NULL, "list", 0, &g), PX_EINVAL);
    CHECK_EQ_INT(api_generation_new(&f.p, NULL, 0, &g), PX_EINVAL);
    CHECK_EQ_INT(api_generation_new(&f.p, "", 0, &g), PX_EINVAL);
    CHECK_EQ_INT(api_generation_new(&f.p, "List", 0, &g), PX_EINVAL);
    CHECK_EQ_INT(api_generation_new(&f.p, "a b", 0, &g), PX_EINVAL);
    CHECK_EQ_INT(api_generation_new(&f.p, "a:b", 0, &g), PX_EINVAL);
    char longname[49];
    memset(longname, 'x', 48);
    longname[48] = '\0';
    CHECK_EQ_INT(api_generation_new(&f.p, longname, 0, &g), PX_EINVAL);
    CHECK_EQ_INT(api_generation_new(&f.p, "list", 2, &g), PX_EINVAL); /* unknown flag */
    CHECK_EQ_INT(api_generation_new(&f.p, "list", 0, NULL), PX_EINVAL);
    CHECK(g == NULL);
    longname[47] = '\0';
    CHECK_EQ_INT(api_generation_new(&f.p, longname, 0, &g), 0);
    CHECK(g != NULL);
    CHECK_EQ_INT(api_generation_new(&f.p, "list", PX_GENERATION_PUBLISH_ONLY, &g), 0);
    CHECK_EQ_INT(api_generation_new(&f.p, "list", 0, &again), PX_EEXIST);
    CHECK(again == NULL);
    /* Each made one start and one stop function of the worker. */
    CHECK_EQ_INT((int)f.set.tasks->nstart, 2);
    CHECK_EQ_INT((int)f.set.tasks->nstop, 2);
    f.set.registering = NULL; /* init is over */
    CHECK_EQ_INT(api_generation_new(&f.p, "other", 0, &again), PX_ESTATE);
    CHECK(again == NULL);
    fake_free(&f);
}

static void test_read_bump_misuse(void)
{
    fake_t f;
    fake_init(&f, "gen_read");
    px_generation_t *g = NULL;
    CHECK_EQ_INT(api_generation_new(&f.p, "version", 0, &g), 0);
    worker_t w;
    memset(&w, 0, sizeof(w)); /* no [redis]: nothing is published */
    px_req_t *r = calloc(1, sizeof(*r));
    r->worker = &w;
    r->plugin = "gen_read";

    int trusted = 7;
    CHECK_EQ_U64(api_generation_read(NULL, &trusted), 0);
    CHECK_EQ_INT(trusted, 0);
    /* Before the worker started: the value, never trusted. */
    trusted = 7;
    CHECK_EQ_U64(api_generation_read(g, &trusted), 0);
    CHECK_EQ_INT(trusted, 0);
    CHECK_EQ_U64(api_generation_read(g, NULL), 0);

    CHECK_EQ_INT(api_generation_bump(NULL, r), PX_EINVAL);
    CHECK_EQ_INT(api_generation_bump(g, NULL), PX_EINVAL);
    CHECK_EQ_U64(api_generation_read(g, NULL), 0);
    /* Outside a transaction: refused, nothing bumped. */
    CHECK_EQ_INT(api_generation_bump_on_commit(g, NULL), PX_EINVAL);
    CHECK_EQ_INT(api_generation_bump_on_commit(NULL, (px_pg_txn_t *)r), PX_EINVAL);
    CHECK_EQ_U64(api_generation_read(g, NULL), 0);

    /* A bump that cannot be published (no Redis) still moves this host's generation. */
    CHECK_EQ_INT(api_generation_bump(g, r), 0);
    CHECK_EQ_U64(api_generation_read(g, &trusted), 1);
    CHECK_EQ_INT(trusted, 0);

    /* The worker starts with no running loop to subscribe on (px_task_begin refuses):
     * logged, and memory stays untrusted; the origin is known, so a bump now tries to
     * publish, which fails quietly. */
    f.set.tasks->start[0].fn(&f.p, f.set.tasks->start[0].userdata);
    CHECK_EQ_U64(api_generation_read(g, &trusted), 1);
    CHECK_EQ_INT(trusted, 0);
    CHECK_EQ_INT(api_generation_bump(g, r), 0);
    CHECK_EQ_U64(api_generation_read(g, &trusted), 2);
    CHECK_EQ_INT(trusted, 0);
    f.set.tasks->stop[0].fn(&f.p, f.set.tasks->stop[0].userdata);
    CHECK_EQ_U64(api_generation_read(g, &trusted), 2);
    CHECK_EQ_INT(trusted, 0);

    arena_free(&r->arena);
    free(r);
    fake_free(&f);
}

int main(void)
{
    RUN(test_new_misuse);
    RUN(test_read_bump_misuse);
    return check_finish();
}
