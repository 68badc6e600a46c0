/* hooks_internal.h — what the three files of the hook engine share, and nothing the rest
 * of the server may use (that is hooks.h): hooks.c loads scripts, calls hooks and reads
 * what they return, hooks_sandbox.c makes the lua_State and keeps scripts within their
 * limits, and hooks_value.c converts values both ways and makes the request object. */
#ifndef PX_HOOKS_INTERNAL_H
#define PX_HOOKS_INTERNAL_H

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hooks.h"

typedef struct hook_fn {
    int ref;       /* the function, in the registry */
    size_t script; /* index in engine.scripts */
} hook_fn_t;

typedef struct hook_slot {
    char *name; /* NULL: free slot */
    hook_fn_t *fns;
    size_t nfns;
} hook_slot_t;

/* What a script declared (hooks_declare.c). */
typedef struct script_scope {
    char **prefixes; /* REQUEST_PATHS; none: the script's request hooks apply everywhere */
    size_t n;
    size_t lens_total;
} script_scope_t;

typedef struct static_header {
    char *name;
    char *value;
    size_t script; /* the script that declared it */
} static_header_t;

/* One generation of scripts: see hooks.c. */
typedef struct engine {
    lua_State *L;
    size_t mem_used;
    size_t mem_cap;
    uint64_t budget;
    uint64_t spent;
    int step;
    bool running;       /* script code runs: allocations are charged and located */
    bool exceeded;      /* the budget of this run is spent */
    unsigned prints;    /* print lines in this run */
    const char *script; /* the script running or being called */
    char fault[256];    /* where the last overrun happened */
    char **scripts;
    size_t nscripts;
    hook_slot_t *slots; /* open addressing, a power of two in size */
    size_t nslots;
    size_t nhooks;
    int array_mt; /* registry references */
    int value_mt;
    int pending;
    int env_mt;
    int libs;
    int req_ud; /* the request object, its headers and its caller (one each per state) */
    int headers_ud;
    int caller_ud;
    size_t npending; /* entries in `pending` */
    /* hooks_call_request: what the request object shows during the call (NULL outside
     * one: the object then raises), and the header changes so far (on_request). */
    const hooks_request_view_t *view;
    json_t *overrides;
    /* The last two hooks found, by the address of the name asked for: the worker asks
     * hooks_has("on_request") and then calls it for every request. */
    const char *recent_name[2];
    const hook_slot_t *recent[2];
    unsigned recent_next;
    /* Declarations, per script index (hooks_declare.c). */
    script_scope_t *scopes;
    size_t nscopes;
    static_header_t *static_headers;
    size_t nstatic_headers;
} engine_t;

/* The address is the value of hooks.null: a light userdata equal to itself only. */
extern const char hooks_value_null;
#define NULL_VALUE ((void *)&hooks_value_null)

/* The engine rides in the state's extra space: C functions called from Lua find it
 * without a registry lookup. */
static inline engine_t *engine_of(lua_State *L)
{
    return *(engine_t **)lua_getextraspace(L);
}

/* hooks_sandbox.c */

/* Creates e->L with e->mem_cap and e->budget applied, the libraries open and the shared
 * pieces of the sandbox built. Returns 0, or -ENOMEM with the reason in `err` (e->L may
 * then be set: engine_free closes it). */
int hooks_sandbox_open(engine_t *e, char *err, size_t errlen);
/* Runs protected: pushes a new script environment, then the `load` it holds (a global
 * of the script that is no hook). */
void hooks_sandbox_push_env(lua_State *L, engine_t *e);
/* Names the script errors are about and forgets the last one's overrun. */
void hooks_sandbox_name(engine_t *e, const char *script);
/* The same, and starts a script run: a fresh budget, charged until e->running is reset. */
void hooks_sandbox_begin(engine_t *e, const char *script);
/* Charges `units` to the running script; raises the budget error once it is spent. */
void hooks_sandbox_spend(lua_State *L, engine_t *e, uint64_t units);
/* The message handler for every lua_pcall running script code: the error names the
 * script and line. */
int hooks_sandbox_on_error(lua_State *L);
/* The message of a failed lua_pcall, as a malloc'd string starting with the script. */
char *hooks_sandbox_error(engine_t *e, int status, const char *msg);

/* hooks_declare.c */

/* Runs protected, after a script's top-level code: copies its REQUEST_PATHS and
 * RESPONSE_HEADERS from its environment at `env`; raises on a malformed one. */
void hooks_declare_read(lua_State *L, engine_t *e, size_t script, int env);
/* Whether the request hooks of `script` apply to this path (its REQUEST_PATHS). */
bool hooks_declare_applies(const engine_t *e, size_t script, const char *path, size_t len);
void hooks_declare_free(engine_t *e);

/* hooks_value.c */

/* Runs protected, while the sandbox is built: the metatables of converted objects and
 * the request-view userdata. */
void hooks_value_setup(lua_State *L, engine_t *e);
/* Pushes the Lua value of `j`, which must stay alive until hooks_value_clear. Raises on
 * a too deep value or a memory error: call it protected, with no jansson object of ours
 * in flight. */
void hooks_value_push(lua_State *L, engine_t *e, const json_t *j);
/* Forgets the JSON lent since the last clear. Never raises: safe outside lua_pcall. */
void hooks_value_clear(engine_t *e);
/* A new JSON value for the Lua value at `idx` (`depth` levels down in the value being
 * converted), or NULL with the reason in `err`. Never raises: safe while the caller holds
 * jansson objects. */
json_t *hooks_value_to_json(lua_State *L, const engine_t *e, int idx, int depth, char *err,
                            size_t errlen);

#endif
