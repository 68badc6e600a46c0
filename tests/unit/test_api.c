/* test_api.c — server/api.c: the function table plugins get. Its slots are enumerated
 * with the same PX_API_* lists that generate px_api_t in panthera.h, so a function added
 * to the header is checked here without anyone touching this file. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "plugin.h"

/* The SDK's wrappers (px_plugin_name(), ...) read the table through this pointer. */
PX__HIDDEN const px_api_t *px_api = &plugin_api_table;

typedef void (*any_fn)(void);

static void test_header_fields(void)
{
    CHECK_EQ_INT(plugin_api_table.size, sizeof(px_api_t));
    CHECK_EQ_INT(plugin_api_table.abi_major, PX_ABI_MAJOR);
    CHECK_EQ_INT(plugin_api_table.abi_minor, PX_ABI_MINOR);
}

/* Every slot named by the lists, every list of every minor: set, and inside `size`. */
static size_t nslots;
static size_t first_offset = SIZE_MAX;
static size_t last_offset;

static void check_slot(const char *name, bool set, size_t offset, int line)
{
    nslots++;
    if (offset < first_offset)
        first_offset = offset;
    if (offset > last_offset)
        last_offset = offset;
    if (!check_report(set, __FILE__, line))
        fprintf(stderr, "plugin_api_table.%s is NULL\n", name);
    if (!check_report(offset + sizeof(any_fn) <= plugin_api_table.size, __FILE__, line))
        fprintf(stderr, "plugin_api_table.%s lies beyond the table's size\n", name);
}

#define CHECK_SLOT(ret, name, params, args)                                                  \
    check_slot(#name, plugin_api_table.name != NULL, offsetof(px_api_t, name), __LINE__);

static void test_no_null_slot(void)
{
    PX_API_ALL(CHECK_SLOT)
    CHECK(nslots > 0);

    /* The lists account for the whole struct: the slots are contiguous, start right
     * after the header fields and end at sizeof. A field added to px_api_t outside the
     * lists, or a list left out above, breaks one of these. */
    size_t header_end = offsetof(px_api_t, abi_minor) + sizeof(uint16_t);
    size_t align = _Alignof(any_fn);
    CHECK_EQ_INT(first_offset, (header_end + align - 1) / align * align);
    CHECK_EQ_INT(last_offset - first_offset, (nslots - 1) * sizeof(any_fn));
    CHECK_EQ_INT(first_offset + nslots * sizeof(any_fn), sizeof(px_api_t));

    /* And, independent of any name: no word of the table after the header is NULL. */
    for (size_t off = first_offset; off + sizeof(any_fn) <= plugin_api_table.size;
         off += sizeof(any_fn)) {
        any_fn fn;
        memcpy(&fn, (const char *)&plugin_api_table + off, sizeof(fn));
        if (!check_report(fn != NULL, __FILE__, __LINE__))
            fprintf(stderr, "slot at offset %zu is NULL\n", off);
    }
}

static void test_has(void)
{
    /* What a plugin would test before calling a function of a newer minor. */
#define CHECK_HAS(ret, name, params, args) CHECK(PX_HAS(name));
    PX_API_ALL(CHECK_HAS)
#undef CHECK_HAS
}

static int never_called(px_req_t *req, void *userdata)
{
    (void)req;
    (void)userdata;
    return PX_OK;
}

/* A few calls through the table on the host's own plugin handle: registration is only
 * allowed while that plugin's init runs. */
static void test_calls_through_table(void)
{
    plugin_set_t set;
    plugin_set_init(&set);
    px_plugin_t *host = set.host;
    CHECK_STR(px_plugin_name(host), "host");

    /* Outside init: refused, and nothing registered. */
    CHECK_EQ_INT(px_route(host, "GET", "/v1/late", never_called, NULL), PX_ESTATE);
    CHECK_EQ_INT(px_config_declare(host, "key", "default"), PX_ESTATE);
    router_match_t m;
    router_match(set.router, METHOD_GET, "/v1/late", 8, &m);
    CHECK_EQ_INT(m.status, 404);
    CHECK(px_config_get(host, "key") == NULL);

    /* During init (as plugin_set_load sets it up). */
    config_errors_t errs = {0};
    set.registering = host;
    set.errs = &errs;
    CHECK_EQ_INT(px_route(host, "GET", "/v1/early", never_called, NULL), 0);
    CHECK_EQ_INT(px_config_declare(host, "greeting", "hello"), 0);
    CHECK_EQ_INT(px_config_declare(host, "greeting", "again"), PX_EEXIST);
    CHECK_EQ_INT(px_config_declare(host, "nodefault", NULL), 0);
    set.registering = NULL;
    set.errs = NULL;
    CHECK_EQ_INT(errs.n, 0);
    config_errors_free(&errs);

    router_match(set.router, METHOD_GET, "/v1/early", 9, &m);
    CHECK_EQ_INT(m.status, 200);
    CHECK_STR(m.route->owner, "host");
    /* No [plugin:host] section: declared defaults, undeclared keys unreadable. */
    CHECK_STR(px_config_get(host, "greeting"), "hello");
    CHECK(px_config_get(host, "nodefault") == NULL);
    CHECK(px_config_get(host, "undeclared") == NULL);
    px_log(host, PX_LOG_DEBUG, "test_api: logging through the table (%d)", 1);
    plugin_set_unload(&set);
}

int main(void)
{
    RUN(test_header_fields);
    RUN(test_no_null_slot);
    RUN(test_has);
    RUN(test_calls_through_table);
    return check_finish();
}
