/*
 * hello — the example plugin: the smallest complete Panthera plugin.
 *
 *   GET /v1/hello        {"message": "Hello, World!"}
 *   GET /v1/hello/:name  {"message": "Hello, <name>!"}
 *
 * Config ([plugin:hello]): greeting = Hello
 *
 * Build out of tree with only the SDK installed:
 *   cc -shared -fPIC $(pkg-config --cflags panthera-sdk) hello.c -o hello.so \
 *      $(pkg-config --libs panthera-sdk) -Wl,--no-undefined
 */
#include <panthera/panthera.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *greeting;
/* The answer of GET /v1/hello never changes while the plugin is loaded: encode it once. */
static char *world_body;
static size_t world_len;

static int hello_world(px_req_t *req, void *userdata)
{
    (void)userdata;
    return px_res_send(req, 200, "application/json; charset=utf-8", world_body, world_len);
}

static int hello_name(px_req_t *req, void *userdata)
{
    (void)userdata;
    const char *name = px_req_param(req, "name");
    size_t len = strlen(greeting) + strlen(name) + 4;
    char *message = px_req_alloc(req, len);
    snprintf(message, len, "%s, %s!", greeting, name);
    return px_res_json(req, 200, json_pack("{s:s}", "message", message));
}

static int hello_init(px_plugin_t *self)
{
    px_config_declare(self, "greeting", "Hello");
    greeting = px_config_get(self, "greeting");
    json_t *body = json_pack("{s:s+}", "message", greeting, ", World!");
    world_body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!world_body)
        return PX_EINVAL;
    world_len = strlen(world_body);
    int rc = px_route(self, "GET", "/v1/hello", hello_world, NULL);
    if (rc == 0)
        rc = px_route(self, "GET", "/v1/hello/:name", hello_name, NULL);
    px_log(self, PX_LOG_DEBUG, "ready, greeting \"%s\"", greeting);
    return rc;
}

static void hello_fini(px_plugin_t *self)
{
    (void)self;
    free(world_body);
    world_body = NULL;
}

PX_PLUGIN("hello", "1.0.0", hello_init, hello_fini, NULL);
