/*
 * hooks.c — Lua hooks in a sandbox, on the worker's loop.
 *
 * One "engine" is one generation of scripts: a lua_State, the scripts' names, and for
 * each hook name the functions defining it (registry references, in file-name order).
 * hooks_load_dir builds a complete new engine and only then swaps it in, so a reload
 * that fails leaves the running generation untouched; there is no way to half-load.
 *
 * Nothing a script does may take the worker down or stall it, hence three guards:
 *  - Every Lua API call that can allocate runs inside lua_pcall. With a memory cap an
 *    allocation can fail anywhere, and an unprotected failure is a panic (abort).
 *  - The allocator refuses growth past the cap (Lua then raises "not enough memory" and
 *    its emergency GC frees what it can) and charges one budget unit per 64 bytes, so a
 *    loop of one-instruction string concatenations or string.rep calls is as bounded as
 *    a loop of additions.
 *  - A count hook fires every HOOK_STEP instructions and adds them to the budget. Once
 *    spent, the hook is re-armed to fire on every instruction, so a script catching the
 *    error with pcall fails again at its very next instruction: the error cannot be
 *    swallowed, it unwinds to our lua_pcall. The error is raised inside the hook, where
 *    Lua has hooks off until a pcall unwinds, so no Lua code may run in between: an
 *    xpcall handler is skipped once the budget is spent, and there are no coroutines (a
 *    coroutine dead of the error keeps hooks off, and closing it would run its __close
 *    handlers unbounded). C loops that spin without VM instructions
 *    (string.rep("", 1e18), table.move({}, 1, 1e15)) are charged up front.
 *
 * Overrun errors carry no useful position by themselves (a memory error has none at
 * all), so the position is taken where the overrun happens and kept in `fault`; the
 * allocator reads the stack with lua_getstack/lua_getinfo("Sl"), which only read
 * CallInfo and prototype fields and never allocate.
 *
 * Isolation between scripts: each runs with its own environment table whose metatable
 * (hidden by __metatable) points at a shared table of base functions; library tables are
 * copied into each environment, so rawset on `string` only touches the script's copy.
 * The one truly shared library table, the string metatable's __index, is hidden.
 *
 * The call path converts the value afresh for each script (a script that mutates its
 * argument in place affects nobody), runs the function, and reads its result without
 * any Lua call that could raise while jansson objects are held, so an error can never
 * leak them: Lua-side checks first, jansson work after. The request phases
 * (hooks_call_request) convert nothing: `req` is a view of the server's request (see
 * "the request object"), and on_request calls each function with lua_pcall directly.
 */
#include "hooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define HOOK_STEP 1000     /* VM instructions between two calls of the count hook */
#define ALLOC_UNIT_SHIFT 6 /* one budget unit per 64 bytes allocated */
#define MAX_DEPTH 64       /* nesting converted either way (Lua tables can be cyclic) */
#define MAX_PRINTS 16      /* print lines logged per script run */
#define MAX_PRINT_LEN 512

typedef struct hook_fn {
    int ref;       /* the function, in the registry */
    size_t script; /* index in engine.scripts */
} hook_fn_t;

typedef struct hook_slot {
    char *name; /* NULL: free slot */
    hook_fn_t *fns;
    size_t nfns;
} hook_slot_t;

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
} engine_t;

struct hooks {
    hooks_limits_t limits;
    engine_t *cur;
};

/* The address is the value of hooks.null: a light userdata equal to itself only. */
static const char null_sentinel;
#define NULL_VALUE ((void *)&null_sentinel)

static engine_t *engine_of(lua_State *L)
{
    return *(engine_t **)lua_getextraspace(L);
}

/* "where: what" for the innermost Lua frame of L, or "script: what" when there is none. */
static void locate(engine_t *e, lua_State *L, const char *what)
{
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(e->fault, sizeof(e->fault), "%s:%d: %s", ar.short_src, ar.currentline, what);
            return;
        }
    }
    snprintf(e->fault, sizeof(e->fault), "%s: %s", e->script ? e->script : "?", what);
}

static void count_hook(lua_State *L, lua_Debug *ar);

/* Charges `units` to the running script and raises the budget error once it is spent. */
static void spend(lua_State *L, engine_t *e, uint64_t units)
{
    if (!e->exceeded) {
        e->spent += units;
        if (e->spent <= e->budget)
            return;
        e->exceeded = true;
        locate(e, L, "instruction budget exceeded");
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushstring(L, e->fault);
    lua_error(L);
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    engine_t *e = engine_of(L);
    UNUSED(ar);
    spend(L, e, (uint64_t)e->step);
}

static void *cap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    engine_t *e = ud;
    size_t old = ptr ? osize : 0; /* with ptr NULL, osize is a type tag */

    if (nsize == 0) {
        free(ptr);
        e->mem_used -= old;
        return NULL;
    }
    if (nsize > old) {
        size_t grow = nsize - old;
        if (grow > e->mem_cap - e->mem_used) {
            if (e->running && !e->exceeded) {
                char what[80];
                snprintf(what, sizeof(what), "not enough memory (memory cap %zu bytes)",
                         e->mem_cap);
                locate(e, e->L, what);
            }
            return NULL;
        }
        if (e->running) {
            e->spent += grow >> ALLOC_UNIT_SHIFT;
            /* lua_sethook is safe at any point (it is meant for signal handlers): the
             * main thread fails at its next instruction. */
            if (e->spent > e->budget && !e->exceeded)
                lua_sethook(e->L, count_hook, LUA_MASKCOUNT, 1);
        }
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    e->mem_used = e->mem_used - old + nsize;
    return p;
}

static int on_panic(lua_State *L)
{
    log_error("lua: unprotected error: %s", lua_tostring(L, -1));
    abort();
}

/* Names the script errors are about and forgets the last one's overrun. */
static void set_script(engine_t *e, const char *script)
{
    e->script = script;
    e->exceeded = false;
    e->fault[0] = '\0';
}

static void begin_run(engine_t *e, const char *script)
{
    set_script(e, script);
    e->spent = 0;
    e->prints = 0;
    e->running = true;
    lua_sethook(e->L, count_hook, LUA_MASKCOUNT, e->step);
}

static bool starts_with_script(const char *msg, const char *script)
{
    size_t n = strlen(script);
    return !strncmp(msg, script, n) && msg[n] == ':';
}

/* The message handler: make every runtime error name the script and line, also when it
 * was raised by a C function ("bad argument #1 to 'rep'") or is not a string. */
static int on_error(lua_State *L)
{
    engine_t *e = engine_of(L);
    const char *msg;
    if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER)
        msg = lua_tostring(L, 1);
    else
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    if (!e->script || starts_with_script(msg, e->script)) {
        lua_pushstring(L, msg);
        return 1;
    }
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0 && ar.source[0] == '@' &&
            !strcmp(ar.source + 1, e->script)) {
            lua_pushfstring(L, "%s:%d: %s", e->script, ar.currentline, msg);
            return 1;
        }
    }
    lua_pushfstring(L, "%s: %s", e->script, msg);
    return 1;
}

/* The message of a failed lua_pcall, as a malloc'd string starting with the script. */
static char *error_message(engine_t *e, int status, const char *msg)
{
    if (e->exceeded || ((status == LUA_ERRMEM || status == LUA_ERRERR) && e->fault[0]))
        msg = e->fault;
    else if (!msg)
        msg = status == LUA_ERRMEM ? "not enough memory" : "unknown error";
    if (starts_with_script(msg, e->script))
        return xstrdup(msg);
    return xasprintf("%s: %s", e->script, msg);
}

/* ---- JSON <-> Lua ----
 *
 * Objects nested in an object are converted when a script first reads them: a hook that
 * looks at req.path never pays for req.headers. Such a table has the shared `value_mt`
 * (its __index converts the field and stores it, its __pairs converts every field first)
 * and an entry in the `pending` registry table pointing at its JSON object. The JSON is
 * only borrowed for the call, so `pending` is emptied when the call ends: a table a
 * script keeps past its call then reads as what it had converted, never as freed memory.
 * Arrays are converted whole, so # and ipairs just work on them.
 */

static void push_json(lua_State *L, engine_t *e, const json_t *j, int depth);

static int value_index(lua_State *L)
{
    engine_t *e = engine_of(L);
    size_t keylen;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->pending);
    lua_pushvalue(L, 1);
    if (lua_rawget(L, -2) != LUA_TLIGHTUSERDATA || lua_type(L, 2) != LUA_TSTRING)
        return 0;
    const char *key = lua_tolstring(L, 2, &keylen);
    const json_t *v = json_object_getn(lua_touserdata(L, -1), key, keylen);
    if (!json_is_object(v)) /* other fields were converted up front */
        return 0;
    push_json(L, e, v, 0);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

static int value_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int value_pairs(lua_State *L)
{
    engine_t *e = engine_of(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->pending);
    lua_pushvalue(L, 1);
    if (lua_rawget(L, -2) == LUA_TLIGHTUSERDATA) {
        const char *key;
        size_t keylen;
        json_t *v;
        json_object_keylen_foreach((json_t *)lua_touserdata(L, -1), key, keylen, v)
        {
            lua_pushlstring(L, key, keylen);
            if (json_is_object(v) && lua_rawget(L, 1) == LUA_TNIL) {
                lua_pushlstring(L, key, keylen);
                push_json(L, e, v, 0);
                lua_rawset(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    lua_pushcfunction(L, value_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Forgets what the call lent. Only raw removals of present keys: nothing allocates, so
 * this is safe outside lua_pcall. */
static void clear_pending(engine_t *e)
{
    lua_State *L = e->L;
    if (!e->npending)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->pending);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, -4);
    }
    lua_pop(L, 1);
    e->npending = 0;
}

/* Raises on a too deep value or a memory error: only ever called protected, with no
 * jansson object of ours in flight. */
static void push_json(lua_State *L, engine_t *e, const json_t *j, int depth)
{
    if (depth > MAX_DEPTH)
        luaL_error(L, "value nested deeper than %d levels", MAX_DEPTH);
    luaL_checkstack(L, 4, "value nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *key;
        size_t keylen;
        json_t *v;
        bool deferred = false;
        lua_createtable(L, 0, (int)json_object_size(j));
        json_object_keylen_foreach((json_t *)j, key, keylen, v)
        {
            if (json_is_object(v)) {
                deferred = true;
                continue;
            }
            lua_pushlstring(L, key, keylen);
            push_json(L, e, v, depth + 1);
            lua_rawset(L, -3);
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->value_mt);
        lua_setmetatable(L, -2);
        if (deferred) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, e->pending);
            lua_pushvalue(L, -2);
            lua_pushlightuserdata(L, (void *)j);
            lua_rawset(L, -3);
            lua_pop(L, 1);
            e->npending++;
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, e, json_array_get(j, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->array_mt);
        lua_setmetatable(L, -2);
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(j)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(j)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_NULL: lua_pushlightuserdata(L, NULL_VALUE); break;
    }
}

enum table_kind { TABLE_PLAIN, TABLE_ARRAY, TABLE_VALUE };

static enum table_kind table_kind(lua_State *L, const engine_t *e, int idx)
{
    enum table_kind kind = TABLE_PLAIN;
    if (!lua_getmetatable(L, idx))
        return kind;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->array_mt);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->value_mt);
    if (lua_rawequal(L, -1, -3))
        kind = TABLE_VALUE;
    else if (lua_rawequal(L, -2, -3))
        kind = TABLE_ARRAY;
    lua_pop(L, 3);
    return kind;
}

/* The JSON object a value table still has unconverted fields in, or NULL. */
static const json_t *pending_of(lua_State *L, const engine_t *e, int idx)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->pending);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    const json_t *j = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return j;
}

static json_t *to_json(lua_State *L, const engine_t *e, int idx, int depth, char *err,
                       size_t errlen);

/* The API calls below never raise: lua_next on keys we do not touch, raw reads, and
 * lua_checkstack, which reports failure instead of raising. */
static json_t *table_to_json(lua_State *L, const engine_t *e, int idx, int depth, char *err,
                             size_t errlen)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 6)) {
        snprintf(err, errlen, "table nested deeper than %d levels (or a cycle)", MAX_DEPTH);
        return NULL;
    }
    size_t n = 0;
    lua_Integer max = 0;
    bool ints = true, strings = true;
    enum table_kind kind = table_kind(L, e, idx);
    bool array = kind == TABLE_ARRAY;
    if (!array) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            n++;
            if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
                strings = false;
                if (lua_tointeger(L, -1) > max)
                    max = lua_tointeger(L, -1);
            } else {
                ints = false;
                strings = strings && lua_type(L, -1) == LUA_TSTRING;
            }
        }
        if (n > 0 && !strings && (kind == TABLE_VALUE || !(ints && (size_t)max == n))) {
            snprintf(err, errlen,
                     "a table with other than string keys or keys 1..n "
                     "cannot become JSON");
            return NULL;
        }
        array = n > 0 && ints && kind != TABLE_VALUE;
    }

    json_t *out = array ? json_array() : json_object();
    if (array) {
        size_t len = n ? n : lua_rawlen(L, idx);
        for (size_t i = 1; i <= len; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            json_t *v = lua_isnil(L, -1) ? json_null() : to_json(L, e, -1, depth + 1, err, errlen);
            lua_pop(L, 1);
            if (!v)
                goto fail;
            json_array_append_new(out, v);
        }
        return out;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t keylen;
        const char *key = lua_tolstring(L, -2, &keylen); /* a string: checked above */
        json_t *v = to_json(L, e, -1, depth + 1, err, errlen);
        lua_pop(L, 1);
        if (!v || json_object_setn_new(out, key, keylen, v) < 0) {
            if (v)
                snprintf(err, errlen, "key \"%.40s\" is not valid UTF-8", key);
            lua_pop(L, 1);
            goto fail;
        }
    }
    if (kind == TABLE_VALUE) { /* the fields no one read are still the caller's JSON */
        const json_t *pending = pending_of(L, e, idx);
        const char *key;
        size_t keylen;
        json_t *v;
        if (pending)
            json_object_keylen_foreach((json_t *)pending, key, keylen, v)
            {
                if (json_is_object(v) && !json_object_getn(out, key, keylen))
                    json_object_setn(out, key, keylen, v);
            }
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* A new JSON value for the Lua value at `idx`, or NULL with the reason in `err`. */
static json_t *to_json(lua_State *L, const engine_t *e, int idx, int depth, char *err,
                       size_t errlen)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx))) {
            snprintf(err, errlen, "a NaN or infinite number cannot become JSON");
            return NULL;
        }
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *v = json_stringn(s, len);
        if (!v)
            snprintf(err, errlen, "string \"%.40s\" is not valid UTF-8", s);
        return v;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL_VALUE)
            return json_null();
        break;
    case LUA_TTABLE: return table_to_json(L, e, idx, depth, err, errlen);
    default: break;
    }
    snprintf(err, errlen, "a %s cannot become JSON", lua_typename(L, lua_type(L, idx)));
    return NULL;
}

/* ---- the request object ----
 *
 * hooks_call_request lends the hooks a view of the server's request instead of a JSON
 * value: the argument is a userdata, one per state and the same in every call, whose
 * __index reads the field asked for from e->view. req.headers and req.caller are two more
 * such objects. Nothing is converted up front and nothing is allocated for a field read
 * (strings are interned), so a hook that reads nothing costs a function call and one that
 * reads req.caller.role makes no garbage. e->view is NULL outside a call, so an object a
 * script kept reads as an error then, never as a finished request.
 */

enum req_field { F_METHOD, F_PATH, F_HEADERS, F_CALLER, F_BODY_SIZE, F_PLUGIN, F_COUNT };
static const char *const req_fields[F_COUNT] = {"method", "path",      "headers",
                                                "caller", "body_size", "plugin"};

static const hooks_request_view_t *live_view(lua_State *L)
{
    const hooks_request_view_t *v = engine_of(L)->view;
    if (!v)
        luaL_error(L, "the request object is only valid during its hook call");
    return v;
}

static int req_field_of(lua_State *L, int idx)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        return F_COUNT;
    const char *k = lua_tolstring(L, idx, &len);
    switch (len) {
    case 4: return !memcmp(k, "path", 4) ? F_PATH : F_COUNT;
    case 6:
        if (!memcmp(k, "method", 6))
            return F_METHOD;
        if (!memcmp(k, "caller", 6))
            return F_CALLER;
        return !memcmp(k, "plugin", 6) ? F_PLUGIN : F_COUNT;
    case 7: return !memcmp(k, "headers", 7) ? F_HEADERS : F_COUNT;
    case 9: return !memcmp(k, "body_size", 9) ? F_BODY_SIZE : F_COUNT;
    default: return F_COUNT;
    }
}

/* Pushes field f of the request: one value, nil when absent. */
static void push_req_field(lua_State *L, const hooks_request_view_t *v, int f)
{
    engine_t *e = engine_of(L);
    switch (f) {
    case F_METHOD: lua_pushstring(L, v->method ? v->method : ""); break;
    case F_PATH: lua_pushlstring(L, v->path ? v->path : "", v->path ? v->path_len : 0); break;
    case F_HEADERS: lua_rawgeti(L, LUA_REGISTRYINDEX, e->headers_ud); break;
    case F_CALLER:
        if (v->caller_id)
            lua_rawgeti(L, LUA_REGISTRYINDEX, e->caller_ud);
        else
            lua_pushnil(L);
        break;
    case F_BODY_SIZE: lua_pushinteger(L, (lua_Integer)v->body_size); break;
    case F_PLUGIN:
        if (v->plugin)
            lua_pushstring(L, v->plugin);
        else
            lua_pushnil(L);
        break;
    default: lua_pushnil(L); break;
    }
}

static int req_index(lua_State *L)
{
    const hooks_request_view_t *v = live_view(L);
    push_req_field(L, v, req_field_of(L, 2));
    return 1;
}

static int view_newindex(lua_State *L)
{
    return luaL_error(L, "the request object is read-only (return set_headers to change "
                         "the request's headers)");
}

/* next(req, key) over the fields that are not nil. */
static int req_next(lua_State *L)
{
    const hooks_request_view_t *v = live_view(L);
    int f = lua_isnoneornil(L, 2) ? 0 : req_field_of(L, 2) + 1;
    for (; f < F_COUNT; f++) {
        lua_pushstring(L, req_fields[f]);
        push_req_field(L, v, f);
        if (!lua_isnil(L, -1))
            return 2;
        lua_pop(L, 2);
    }
    lua_pushnil(L);
    return 1;
}

static int req_pairs(lua_State *L)
{
    live_view(L);
    lua_pushcfunction(L, req_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* req.caller: id and role (only there when the caller is known). */
static int caller_field_of(lua_State *L, int idx)
{
    size_t len;
    const char *k = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
    if (k && len == 2 && !memcmp(k, "id", 2))
        return 0;
    if (k && len == 4 && !memcmp(k, "role", 4))
        return 1;
    return 2;
}

static void push_caller_field(lua_State *L, const hooks_request_view_t *v, int f)
{
    if (f == 0)
        lua_pushstring(L, v->caller_id ? v->caller_id : "");
    else if (f == 1)
        lua_pushstring(L, v->caller_role ? v->caller_role : "");
    else
        lua_pushnil(L);
}

static int caller_index(lua_State *L)
{
    const hooks_request_view_t *v = live_view(L);
    push_caller_field(L, v, caller_field_of(L, 2));
    return 1;
}

static int caller_next(lua_State *L)
{
    const hooks_request_view_t *v = live_view(L);
    int f = lua_isnoneornil(L, 2) ? 0 : caller_field_of(L, 2) + 1;
    if (f >= 2) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, f == 0 ? "id" : "role");
    push_caller_field(L, v, f);
    return 2;
}

static int caller_pairs(lua_State *L)
{
    live_view(L);
    lua_pushcfunction(L, caller_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int headers_index(lua_State *L)
{
    engine_t *e = engine_of(L);
    const hooks_request_view_t *v = live_view(L);
    size_t len;
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    const char *name = lua_tolstring(L, 2, &len);
    if (e->overrides && strlen(name) == len) { /* what an earlier script set or removed */
        const char *key;
        json_t *value;
        json_object_foreach(e->overrides, key, value)
        {
            if (!strcasecmp(key, name)) {
                if (!json_is_string(value))
                    return 0;
                lua_pushlstring(L, json_string_value(value), json_string_length(value));
                return 1;
            }
        }
    }
    /* A C loop the count hook does not see: one unit per header looked at. */
    for (size_t i = 0; i < v->nheaders; i++) {
        hooks_header_t h;
        v->header_at(v->ctx, i, &h);
        if (h.name_len == len && !strncasecmp(h.name, name, len)) {
            spend(L, e, i + 1);
            lua_pushlstring(L, h.value, h.value_len);
            return 1;
        }
    }
    spend(L, e, v->nheaders);
    return 0;
}

static void push_lower(lua_State *L, const char *s, size_t len)
{
    char small[64];
    luaL_Buffer b;
    char *p = len <= sizeof(small) ? small : luaL_buffinitsize(L, &b, len);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    if (p == small)
        lua_pushlstring(L, p, len);
    else
        luaL_pushresultsize(&b, len);
}

/* A snapshot: a table of lower-case names, each with the first value sent or the value
 * an earlier script set, walked with next. */
static int headers_pairs(lua_State *L)
{
    engine_t *e = engine_of(L);
    const hooks_request_view_t *v = live_view(L);
    const char *key;
    json_t *value;
    spend(L, e, v->nheaders);
    lua_createtable(L, 0, (int)v->nheaders);
    if (e->overrides) /* removed ones stay false until the sent headers are in */
        json_object_foreach(e->overrides, key, value)
        {
            push_lower(L, key, strlen(key));
            if (json_is_string(value))
                lua_pushlstring(L, json_string_value(value), json_string_length(value));
            else
                lua_pushboolean(L, 0);
            lua_rawset(L, -3);
        }
    for (size_t i = 0; i < v->nheaders; i++) {
        hooks_header_t h;
        v->header_at(v->ctx, i, &h);
        push_lower(L, h.name, h.name_len);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushlstring(L, h.value, h.value_len);
            lua_rawset(L, -3);
        } else {
            lua_pop(L, 2);
        }
    }
    if (e->overrides)
        json_object_foreach(e->overrides, key, value)
        {
            if (!json_is_string(value)) {
                push_lower(L, key, strlen(key));
                lua_pushnil(L);
                lua_rawset(L, -3);
            }
        }
    lua_pushcfunction(L, value_next);
    lua_insert(L, -2);
    lua_pushnil(L);
    return 3;
}

/* ---- sandbox functions ---- */

static int sandbox_load(lua_State *L)
{
    bool has_env = !lua_isnone(L, 4);
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TFUNCTION, 1,
                     "string or function");
    lua_settop(L, 4);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the real load */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    lua_pushvalue(L, has_env ? 4 : lua_upvalueindex(2)); /* the script's environment */
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - 4;
}

static int sandbox_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage(\"%s\") is not allowed in hooks", opt);
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB) / 1024.0);
    return 1;
}

/* A finalizer would run at a GC step inside whatever comes next, charged to someone
 * else's budget: refused. Checking at setmetatable time is enough, as that is when Lua
 * marks an object for finalization. */
static int sandbox_setmetatable(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE); /* checked here, where errors name the function */
    luaL_argexpected(L, lua_type(L, 2) == LUA_TNIL || lua_type(L, 2) == LUA_TTABLE, 2,
                     "nil or table");
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in hooks");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* Lua runs a message handler where the error was raised, and the budget error is raised
 * inside the count hook, where hooks are off: a script's handler would run unbounded.
 * Once the budget is spent, the handler is skipped and the message passes as is. */
static int guarded_handler(lua_State *L)
{
    if (engine_of(L)->exceeded)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sandbox_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int sandbox_print(lua_State *L)
{
    engine_t *e = engine_of(L);
    if (e->prints++ >= MAX_PRINTS) {
        if (e->prints == MAX_PRINTS + 1)
            log_info("lua %s: more print output dropped", e->script);
        return 0;
    }
    luaL_Buffer b;
    int n = lua_gettop(L);
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    log_info("lua %s: %.*s", e->script, (int)(len < MAX_PRINT_LEN ? len : MAX_PRINT_LEN), s);
    return 0;
}

/* string.rep("", 1e18) loops 1e18 times in C without allocating anything. The
 * arguments are checked here, where errors still name the function. */
static int sandbox_rep(lua_State *L)
{
    size_t len, seplen;
    luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &seplen);
    if (n <= 0 || len + seplen == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* Library functions whose C loops run on without VM instructions or allocations are
 * charged up front for what they will do: scanning a subject string (one unit per 16
 * bytes), or moving and shifting table elements (one unit each: table.move({}, 1, 1e15)
 * and table.insert(t, 1, x) with a lying __len would otherwise spin for ever). The
 * wrapper checks the arguments it reads itself, so their errors still name the function
 * (the original, called from C, would be '?'). */
enum cost { COST_SUBJECT, COST_PATTERN, COST_MOVE, COST_INSERT, COST_REMOVE };

static int sandbox_charged(lua_State *L)
{
    engine_t *e = engine_of(L);
    enum cost cost = (enum cost)lua_tointeger(L, lua_upvalueindex(2));
    uint64_t units = 0;
    if (cost == COST_SUBJECT || cost == COST_PATTERN) {
        size_t len;
        luaL_checklstring(L, 1, &len);
        if (cost == COST_PATTERN)
            luaL_checkstring(L, 2);
        units = len >> 4;
    } else if (cost == COST_MOVE) {
        lua_Integer from = luaL_checkinteger(L, 2), to = luaL_checkinteger(L, 3);
        units = to >= from ? (uint64_t)to - (uint64_t)from + 1 : 0;
    } else if (lua_gettop(L) >= (cost == COST_INSERT ? 3 : 2)) { /* a position: a shift */
        lua_Integer n = luaL_len(L, 1);
        units = n > 0 ? (uint64_t)n : 0;
    }
    spend(L, e, units);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int hooks_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, 1);
    return 1;
}

/* Pushes a shallow copy of the table at `idx`. */
static void copy_table(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

static void set_ref(lua_State *L, int *ref)
{
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Runs protected: opens the libraries and builds the shared pieces of the sandbox. */
static int setup_state(lua_State *L)
{
    engine_t *e = lua_touserdata(L, 1);
    static const lua_CFunction openers[] = {luaopen_base, luaopen_string, luaopen_table,
                                            luaopen_math, luaopen_utf8,   luaopen_os};
    static const char *names[] = {
        "_G", LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME, LUA_OSLIBNAME};
    static const char *base[] = {
        "assert", "error",  "getmetatable", "ipairs", "next",     "pairs",    "pcall", "rawequal",
        "rawget", "rawlen", "rawset",       "select", "tonumber", "tostring", "type",  "_VERSION"};
    static const char *os_safe[] = {"time", "clock", "date"};
    static const struct {
        const char *lib, *name;
        enum cost cost;
    } charged[] = {
        {LUA_STRLIBNAME, "find", COST_PATTERN},    {LUA_STRLIBNAME, "match", COST_PATTERN},
        {LUA_STRLIBNAME, "gmatch", COST_PATTERN},  {LUA_STRLIBNAME, "gsub", COST_PATTERN},
        {LUA_UTF8LIBNAME, "len", COST_SUBJECT},    {LUA_UTF8LIBNAME, "codepoint", COST_SUBJECT},
        {LUA_UTF8LIBNAME, "offset", COST_SUBJECT}, {LUA_TABLIBNAME, "move", COST_MOVE},
        {LUA_TABLIBNAME, "insert", COST_INSERT},   {LUA_TABLIBNAME, "remove", COST_REMOVE},
    };

    for (size_t i = 0; i < ARRAY_SIZE(openers); i++) {
        luaL_requiref(L, names[i], openers[i], 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L); /* 2: the real globals, never reachable from a script */

    /* The real string table is what the string metatable indexes: strip it there. */
    lua_getfield(L, 2, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, sandbox_rep, 1);
    lua_setfield(L, -2, "rep");
    for (size_t i = 0; i < ARRAY_SIZE(charged); i++) {
        lua_getfield(L, 2, charged[i].lib);
        lua_getfield(L, -1, charged[i].name);
        lua_pushinteger(L, charged[i].cost);
        lua_pushcclosure(L, sandbox_charged, 2);
        lua_setfield(L, -2, charged[i].name);
        lua_pop(L, 1);
    }
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 3);

    lua_createtable(L, 0, 1); /* the array marker */
    lua_pushliteral(L, "hooks.array");
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    set_ref(L, &e->array_mt);

    lua_newtable(L); /* libs: the masters each script gets a copy of */
    static const char *shared[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                   LUA_UTF8LIBNAME};
    for (size_t i = 0; i < ARRAY_SIZE(shared); i++) {
        lua_getfield(L, 2, shared[i]);
        lua_setfield(L, -2, shared[i]);
    }
    lua_getfield(L, 2, LUA_OSLIBNAME);
    lua_newtable(L);
    for (size_t i = 0; i < ARRAY_SIZE(os_safe); i++) {
        lua_getfield(L, -2, os_safe[i]);
        lua_setfield(L, -2, os_safe[i]);
    }
    lua_setfield(L, -3, LUA_OSLIBNAME);
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushlightuserdata(L, NULL_VALUE);
    lua_setfield(L, -2, "null");
    lua_pushvalue(L, -3); /* array marker */
    lua_pushcclosure(L, hooks_array, 1);
    lua_setfield(L, -2, "array");
    lua_setfield(L, -2, "hooks");
    lua_getfield(L, 2, "load"); /* kept for the per-script wrapper */
    lua_setfield(L, -2, "load");
    set_ref(L, &e->libs);
    lua_pop(L, 1); /* array marker */

    lua_createtable(L, 0, 3); /* objects from JSON */
    lua_pushcfunction(L, value_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, value_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "hooks.value");
    lua_setfield(L, -2, "__metatable");
    set_ref(L, &e->value_mt);
    lua_newtable(L);
    set_ref(L, &e->pending);

    static const luaL_Reg req_meta[] = {{"__index", req_index},
                                        {"__newindex", view_newindex},
                                        {"__pairs", req_pairs},
                                        {NULL, NULL}};
    static const luaL_Reg headers_meta[] = {{"__index", headers_index},
                                            {"__newindex", view_newindex},
                                            {"__pairs", headers_pairs},
                                            {NULL, NULL}};
    static const luaL_Reg caller_meta[] = {{"__index", caller_index},
                                           {"__newindex", view_newindex},
                                           {"__pairs", caller_pairs},
                                           {NULL, NULL}};
    const struct {
        const char *name;
        const luaL_Reg *meta;
        int *ref;
    } views[] = {{"hooks.request", req_meta, &e->req_ud},
                 {"hooks.headers", headers_meta, &e->headers_ud},
                 {"hooks.caller", caller_meta, &e->caller_ud}};
    for (size_t i = 0; i < ARRAY_SIZE(views); i++) {
        lua_newuserdatauv(L, 0, 0);
        lua_newtable(L);
        luaL_setfuncs(L, views[i].meta, 0);
        lua_pushstring(L, views[i].name);
        lua_setfield(L, -2, "__metatable");
        lua_pushstring(L, views[i].name);
        lua_setfield(L, -2, "__name");
        lua_setmetatable(L, -2);
        set_ref(L, views[i].ref);
    }

    lua_createtable(L, 0, 2); /* the environments' metatable */
    lua_createtable(L, 0, (int)ARRAY_SIZE(base) + 3);
    for (size_t i = 0; i < ARRAY_SIZE(base); i++) {
        lua_getfield(L, 2, base[i]);
        lua_setfield(L, -2, base[i]);
    }
    lua_getfield(L, 2, "setmetatable");
    lua_pushcclosure(L, sandbox_setmetatable, 1);
    lua_setfield(L, -2, "setmetatable");
    lua_getfield(L, 2, "xpcall");
    lua_pushcclosure(L, sandbox_xpcall, 1);
    lua_setfield(L, -2, "xpcall");
    lua_pushcfunction(L, sandbox_collectgarbage);
    lua_setfield(L, -2, "collectgarbage");
    lua_pushcfunction(L, sandbox_print);
    lua_setfield(L, -2, "print");
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    set_ref(L, &e->env_mt);

    lua_gc(L, LUA_GCGEN, 0, 0); /* hook calls make short-lived garbage */
    return 0;
}

/* ---- the hook table ---- */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static hook_slot_t *find_slot(const engine_t *e, const char *name)
{
    if (!e->nslots)
        return NULL;
    for (size_t i = hash_name(name) & (e->nslots - 1);; i = (i + 1) & (e->nslots - 1)) {
        hook_slot_t *s = &e->slots[i];
        if (!s->name || !strcmp(s->name, name))
            return s;
    }
}

/* The slot of a hook some script defines, or NULL. The remembered address is checked by
 * content too: a caller may ask with a buffer that held another name before. Slots move
 * only while their engine loads, before any lookup. */
static const hook_slot_t *lookup(engine_t *e, const char *name)
{
    if (!e)
        return NULL;
    for (int i = 0; i < 2; i++)
        if (e->recent_name[i] == name && e->recent[i] && !strcmp(e->recent[i]->name, name))
            return e->recent[i];
    const hook_slot_t *s = find_slot(e, name);
    if (!s || !s->name)
        return NULL;
    e->recent_name[e->recent_next] = name;
    e->recent[e->recent_next] = s;
    e->recent_next ^= 1;
    return s;
}

static void add_hook(engine_t *e, const char *name, int ref, size_t script)
{
    if ((e->nhooks + 1) * 2 > e->nslots) {
        hook_slot_t *old = e->slots;
        size_t nold = e->nslots;
        e->nslots = nold ? nold * 2 : 16;
        e->slots = xcalloc(e->nslots, sizeof(hook_slot_t));
        for (size_t i = 0; i < nold; i++)
            if (old[i].name)
                *find_slot(e, old[i].name) = old[i];
        free(old);
    }
    hook_slot_t *s = find_slot(e, name);
    if (!s->name) {
        s->name = xstrdup(name);
        e->nhooks++;
    }
    s->fns = xrealloc(s->fns, (s->nfns + 1) * sizeof(hook_fn_t));
    s->fns[s->nfns++] = (hook_fn_t){.ref = ref, .script = script};
}

/* ---- engines ---- */

static void engine_free(engine_t *e)
{
    if (!e)
        return;
    if (e->L)
        lua_close(e->L);
    for (size_t i = 0; i < e->nslots; i++) {
        free(e->slots[i].name);
        free(e->slots[i].fns);
    }
    free(e->slots);
    for (size_t i = 0; i < e->nscripts; i++)
        free(e->scripts[i]);
    free(e->scripts);
    free(e);
}

static engine_t *engine_new(const hooks_limits_t *limits, char *err, size_t errlen)
{
    engine_t *e = xcalloc(1, sizeof(engine_t));
    e->mem_cap = limits->memory_cap;
    e->budget = limits->instruction_budget;
    e->step = e->budget < HOOK_STEP ? (int)e->budget : HOOK_STEP;
    e->L = lua_newstate(cap_alloc, e);
    if (!e->L) {
        snprintf(err, errlen, "cannot create a Lua state within %zu bytes", e->mem_cap);
        goto fail;
    }
    *(engine_t **)lua_getextraspace(e->L) = e;
    lua_atpanic(e->L, on_panic);
    lua_pushcfunction(e->L, setup_state);
    lua_pushlightuserdata(e->L, e);
    if (lua_pcall(e->L, 1, 0, 0) != LUA_OK) {
        const char *why = lua_tostring(e->L, -1);
        snprintf(err, errlen, "cannot set up the Lua sandbox: %s", why ? why : "?");
        goto fail;
    }
    return e;
fail:
    engine_free(e);
    return NULL;
}

typedef struct script_src {
    engine_t *e;
    size_t index;
    const char *chunkname;
    const char *text;
    size_t len;
} script_src_t;

/* Runs protected: builds the script's environment, compiles and runs the script, and
 * records the global functions it defined. */
static int load_script(lua_State *L)
{
    script_src_t *src = lua_touserdata(L, 1);
    engine_t *e = src->e;
    static const char *copied[] = {LUA_STRLIBNAME,  LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                   LUA_UTF8LIBNAME, LUA_OSLIBNAME,  "hooks"};

    lua_createtable(L, 0, 16); /* 2: the environment */
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->env_mt);
    lua_setmetatable(L, 2);
    lua_pushvalue(L, 2);
    lua_setfield(L, 2, "_G");
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->libs); /* 3 */
    for (size_t i = 0; i < ARRAY_SIZE(copied); i++) {
        lua_getfield(L, 3, copied[i]);
        copy_table(L, -1);
        lua_setfield(L, 2, copied[i]);
        lua_pop(L, 1);
    }
    lua_getfield(L, 3, "load");
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, sandbox_load, 2); /* 4 */
    lua_pushvalue(L, 4);
    lua_setfield(L, 2, "load");

    int status = luaL_loadbufferx(L, src->text, src->len, src->chunkname, "t");
    if (status != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 2);
    lua_setupvalue(L, -2, 1); /* _ENV */
    begin_run(e, e->scripts[src->index]);
    lua_call(L, 0, 0);
    e->running = false;

    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION &&
            !lua_rawequal(L, -1, 4)) {
            int ref = luaL_ref(L, LUA_REGISTRYINDEX);
            add_hook(e, lua_tostring(L, -1), ref, src->index);
        } else {
            lua_pop(L, 1);
        }
    }
    return 0;
}

static int engine_load(engine_t *e, const char *name, const char *text, size_t len, char *err,
                       size_t errlen)
{
    lua_State *L = e->L;
    e->scripts = xrealloc(e->scripts, (e->nscripts + 1) * sizeof(char *));
    e->scripts[e->nscripts] = xstrdup(name);
    char *chunkname = xasprintf("@%s", name);
    script_src_t src = {
        .e = e, .index = e->nscripts++, .chunkname = chunkname, .text = text, .len = len};
    set_script(e, e->scripts[src.index]);

    lua_pushcfunction(L, on_error);
    lua_pushcfunction(L, load_script);
    lua_pushlightuserdata(L, &src);
    int status = lua_pcall(L, 1, 0, 1);
    e->running = false;
    if (status != LUA_OK) {
        char *msg = error_message(e, status, lua_tostring(L, -1));
        snprintf(err, errlen, "%s", msg);
        free(msg);
    }
    lua_settop(L, 0);
    free(chunkname);
    return status == LUA_OK ? 0 : -EINVAL;
}

/* ---- calling ---- */

typedef struct call {
    engine_t *e;
    const hook_slot_t *slot;
    const json_t *context;
    const hooks_request_view_t *view; /* hooks_call_request: the first argument */
    const hook_fn_t *fn;              /* the function whose result is being read */
    json_t *value;                    /* owned: the value as changed so far */
    bool changed;
    bool denied;
    int status;
    char *message;
} call_t;

enum result_key { R_DENY, R_STATUS, R_MESSAGE, R_SET, R_SET_HEADERS, R_REMOVE_HEADERS, R_COUNT };
static const char *result_keys[R_COUNT] = {"deny", "status",      "message",
                                           "set",  "set_headers", "remove_headers"};

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header a script sets goes out on the wire: no CR, LF or NUL may smuggle in another. */
static bool valid_header(const char *name, size_t namelen, const char *value, size_t len)
{
    if (!namelen)
        return false;
    for (size_t i = 0; i < namelen; i++)
        if (!is_tchar((unsigned char)name[i]))
            return false;
    for (size_t i = 0; i < len; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return false;
    return true;
}

static void remove_header(json_t *headers, const char *name)
{
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(headers, tmp, key, v)
    {
        if (!strcasecmp(key, name))
            json_object_del(headers, key);
    }
}

static void replace_value(call_t *c, json_t *next)
{
    json_decref(c->value);
    c->value = next;
    c->changed = true;
}

static int apply_set(lua_State *L, call_t *c, int t, char *err, size_t errlen)
{
    if (!json_is_object(c->value)) {
        snprintf(err, errlen, "'set' needs the value to be an object");
        return -1;
    }
    json_t *next = json_copy(c->value); /* shallow: the caller's value stays as it was */
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            snprintf(err, errlen, "'set' keys must be strings");
            goto fail;
        }
        size_t keylen;
        const char *key = lua_tolstring(L, -2, &keylen);
        char why[200];
        json_t *v = to_json(L, c->e, -1, 1, why, sizeof(why));
        if (!v) {
            snprintf(err, errlen, "set.%.40s: %s", key, why);
            goto fail;
        }
        if (json_object_setn_new(next, key, keylen, v) < 0) {
            snprintf(err, errlen, "'set' key \"%.40s\" is not valid UTF-8", key);
            goto fail;
        }
        lua_pop(L, 1);
    }
    replace_value(c, next);
    return 0;
fail:
    lua_pop(L, 2);
    json_decref(next);
    return -1;
}

static int apply_headers(lua_State *L, call_t *c, int set_idx, int remove_idx, char *err,
                         size_t errlen)
{
    json_t *old = json_is_object(c->value) ? json_object_get(c->value, "headers") : NULL;
    if (!json_is_object(c->value) || (old && !json_is_object(old))) {
        snprintf(err, errlen, "headers can only change in an object with a \"headers\" object");
        return -1;
    }
    json_t *headers = old ? json_copy(old) : json_object();
    if (remove_idx) {
        size_t n = lua_rawlen(L, remove_idx);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, remove_idx, (lua_Integer)i);
            const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (name)
                remove_header(headers, name);
            lua_pop(L, 1);
            if (!name) {
                snprintf(err, errlen, "'remove_headers' must be a list of names");
                goto fail;
            }
        }
    }
    if (set_idx) {
        lua_pushnil(L);
        while (lua_next(L, set_idx)) {
            char num[32];
            size_t namelen = 0, len = 0;
            const char *name = NULL, *value = NULL;
            if (lua_type(L, -2) == LUA_TSTRING)
                name = lua_tolstring(L, -2, &namelen);
            if (lua_type(L, -1) == LUA_TSTRING) {
                value = lua_tolstring(L, -1, &len);
            } else if (lua_isinteger(L, -1)) {
                len = (size_t)snprintf(num, sizeof(num), "%lld", (long long)lua_tointeger(L, -1));
                value = num;
            }
            json_t *v = name && value && valid_header(name, namelen, value, len)
                            ? json_stringn(value, len)
                            : NULL;
            if (!v) {
                snprintf(err, errlen,
                         "set_headers[\"%.40s\"]: names are tokens, values "
                         "strings or integers without CR, LF or NUL, in UTF-8",
                         name ? name : "?");
                lua_pop(L, 2);
                goto fail;
            }
            remove_header(headers, name);
            json_object_set_new(headers, name, v);
            lua_pop(L, 1);
        }
    }
    json_t *next = json_copy(c->value);
    json_object_set_new(next, "headers", headers);
    replace_value(c, next);
    return 0;
fail:
    json_decref(headers);
    return -1;
}

/* on_request: header changes go to e->overrides, where the next script's req.headers
 * and finally the caller see them. Each name is there once (case-insensitively), the
 * last change winning. A name to remove that is no token matches no header: ignored. */
static int apply_overrides(lua_State *L, call_t *c, int set_idx, int remove_idx, char *err,
                           size_t errlen)
{
    engine_t *e = c->e;
    if (!e->overrides)
        e->overrides = json_object();
    if (remove_idx) {
        size_t n = lua_rawlen(L, remove_idx);
        for (size_t i = 1; i <= n; i++) {
            size_t namelen = 0;
            lua_rawgeti(L, remove_idx, (lua_Integer)i);
            const char *name =
                lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &namelen) : NULL;
            if (name && valid_header(name, namelen, "", 0)) {
                remove_header(e->overrides, name);
                json_object_set_new(e->overrides, name, json_null());
            }
            lua_pop(L, 1);
            if (!name) {
                snprintf(err, errlen, "'remove_headers' must be a list of names");
                return -1;
            }
        }
    }
    if (set_idx) {
        lua_pushnil(L);
        while (lua_next(L, set_idx)) {
            char num[32];
            size_t namelen = 0, len = 0;
            const char *name = NULL, *value = NULL;
            if (lua_type(L, -2) == LUA_TSTRING)
                name = lua_tolstring(L, -2, &namelen);
            if (lua_type(L, -1) == LUA_TSTRING) {
                value = lua_tolstring(L, -1, &len);
            } else if (lua_isinteger(L, -1)) {
                len = (size_t)snprintf(num, sizeof(num), "%lld", (long long)lua_tointeger(L, -1));
                value = num;
            }
            json_t *v = name && value && valid_header(name, namelen, value, len)
                            ? json_stringn(value, len)
                            : NULL;
            if (!v) {
                snprintf(err, errlen,
                         "set_headers[\"%.40s\"]: names are tokens, values "
                         "strings or integers without CR, LF or NUL, in UTF-8",
                         name ? name : "?");
                lua_pop(L, 2);
                return -1;
            }
            remove_header(e->overrides, name);
            json_object_set_new(e->overrides, name, v);
            lua_pop(L, 1);
        }
    }
    c->changed = true;
    return 0;
}

static int deny(lua_State *L, call_t *c, int status, int message, char *err, size_t errlen)
{
    int isint = 0;
    lua_Integer code = lua_isnil(L, status) ? 403 : lua_tointegerx(L, status, &isint);
    if (!lua_isnil(L, status) && (!isint || code < 100 || code > 599)) {
        snprintf(err, errlen, "a deny status must be an integer from 100 to 599");
        return -1;
    }
    if (!lua_isnil(L, message) && lua_type(L, message) != LUA_TSTRING) {
        snprintf(err, errlen, "a deny message must be a string");
        return -1;
    }
    c->denied = true;
    c->status = (int)code;
    c->message = xstrdup(lua_isnil(L, message) ? "forbidden" : lua_tostring(L, message));
    return 0;
}

/* Reads a result table: every key is known and of the right type, then the changes. */
static int apply_table(lua_State *L, call_t *c, int t, char *err, size_t errlen)
{
    static const int types[R_COUNT] = {LUA_TBOOLEAN, LUA_TNUMBER, LUA_TSTRING,
                                       LUA_TTABLE,   LUA_TTABLE,  LUA_TTABLE};
    int v = lua_gettop(L); /* v + 1 + key: the value of each known key, or nil */
    if (!lua_checkstack(L, R_COUNT + 4)) {
        snprintf(err, errlen, "out of Lua stack");
        return -1;
    }
    for (int i = 0; i < R_COUNT; i++)
        lua_pushnil(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int k = 0;
        if (lua_type(L, -2) == LUA_TSTRING)
            while (k < R_COUNT && strcmp(lua_tostring(L, -2), result_keys[k]))
                k++;
        if (lua_type(L, -2) != LUA_TSTRING || k == R_COUNT) {
            snprintf(err, errlen,
                     "returned a table with the unknown key '%.40s' (known: "
                     "deny, status, message, set, set_headers, remove_headers)",
                     lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
            lua_pop(L, 2);
            return -1;
        }
        if (lua_type(L, -1) != types[k]) {
            snprintf(err, errlen, "'%s' must be a %s, not a %s", result_keys[k],
                     lua_typename(L, types[k]), luaL_typename(L, -1));
            lua_pop(L, 2);
            return -1;
        }
        lua_copy(L, -1, v + 1 + k);
        lua_pop(L, 1);
    }
    bool denied = lua_toboolean(L, v + 1 + R_DENY);
    if (!denied && !(lua_isnil(L, v + 1 + R_STATUS) && lua_isnil(L, v + 1 + R_MESSAGE))) {
        snprintf(err, errlen, "'status' and 'message' go with deny = true");
        return -1;
    }
    bool request_only = c->view && !c->value; /* on_request: no value to change */
    if (!lua_isnil(L, v + 1 + R_SET)) {
        if (request_only) {
            snprintf(err, errlen,
                     "returned 'set', but the request is read-only (change "
                     "its headers with set_headers and remove_headers)");
            return -1;
        }
        if (apply_set(L, c, v + 1 + R_SET, err, errlen) < 0)
            return -1;
    }
    int set_idx = lua_isnil(L, v + 1 + R_SET_HEADERS) ? 0 : v + 1 + R_SET_HEADERS;
    int remove_idx = lua_isnil(L, v + 1 + R_REMOVE_HEADERS) ? 0 : v + 1 + R_REMOVE_HEADERS;
    if (set_idx || remove_idx) {
        int rc = request_only ? apply_overrides(L, c, set_idx, remove_idx, err, errlen)
                              : apply_headers(L, c, set_idx, remove_idx, err, errlen);
        if (rc < 0)
            return -1;
    }
    if (denied)
        return deny(L, c, v + 1 + R_STATUS, v + 1 + R_MESSAGE, err, errlen);
    return 0;
}

/* The three results of one hook are at r, r + 1, r + 2. */
static int apply_result(lua_State *L, call_t *c, int r, char *err, size_t errlen)
{
    switch (lua_type(L, r)) {
    case LUA_TNIL: return 0;
    case LUA_TBOOLEAN: return lua_toboolean(L, r) ? 0 : deny(L, c, r + 1, r + 2, err, errlen);
    case LUA_TTABLE: return apply_table(L, c, r, err, errlen);
    default:
        snprintf(err, errlen, "returned a %s: expected nothing, true, false or a table",
                 luaL_typename(L, r));
        return -1;
    }
}

/* Applies the three results at r of c->fn, or raises "script:line: hook what". */
static void apply_or_raise(lua_State *L, call_t *c, int r)
{
    char err[300];
    if (apply_result(L, c, r, err, sizeof(err)) < 0) {
        lua_Debug ar;
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn->ref);
        lua_getinfo(L, ">S", &ar);
        lua_pushfstring(L, "%s:%d: %s %s", c->e->script, ar.linedefined, c->slot->name, err);
        lua_error(L);
    }
}

/* Runs protected: each script's function in order until one denies. */
static int run_hooks(lua_State *L)
{
    call_t *c = lua_touserdata(L, 1);
    engine_t *e = c->e;
    int base = lua_gettop(L);

    for (size_t i = 0; i < c->slot->nfns && !c->denied; i++) {
        const hook_fn_t *fn = &c->slot->fns[i];
        int nargs = 0;
        begin_run(e, e->scripts[fn->script]); /* converting the value is charged too */
        lua_rawgeti(L, LUA_REGISTRYINDEX, fn->ref);
        if (c->view) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, e->req_ud);
            nargs++;
        }
        if (c->context) {
            push_json(L, e, c->context, 0);
            nargs++;
        }
        if (c->value) {
            push_json(L, e, c->value, 0);
            nargs++;
        } else if (!c->view) {
            lua_pushnil(L);
            nargs++;
        }
        lua_call(L, nargs, 3);
        e->running = false;
        c->fn = fn;
        apply_or_raise(L, c, base + 1);
        lua_settop(L, base);
        clear_pending(e); /* the next script gets the value afresh */
    }
    return 0;
}

/* Runs protected: apply_result on the results at 2, 3, 4 of c->fn (at 1). */
static int read_result(lua_State *L)
{
    apply_or_raise(L, lua_touserdata(L, 1), 2);
    return 0;
}

/* The path of on_request, where there is no value to convert: each script's function is
 * called with lua_pcall itself (no C function in between), and what it returns is read
 * under protection only when it is more than nothing or true. The message handler is at
 * `handler`. Returns a lua_pcall status, the error message on top of the stack. */
static int run_direct(call_t *c, int handler)
{
    engine_t *e = c->e;
    lua_State *L = e->L;
    int base = lua_gettop(L);
    for (size_t i = 0; i < c->slot->nfns && !c->denied; i++) {
        const hook_fn_t *fn = &c->slot->fns[i];
        begin_run(e, e->scripts[fn->script]);
        lua_rawgeti(L, LUA_REGISTRYINDEX, fn->ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->req_ud);
        int status = lua_pcall(L, 1, 3, handler);
        e->running = false;
        if (status != LUA_OK)
            return status;
        int t = lua_type(L, base + 1);
        if (t != LUA_TNIL && !(t == LUA_TBOOLEAN && lua_toboolean(L, base + 1))) {
            c->fn = fn;
            lua_pushcfunction(L, read_result); /* no allocation: a light C function */
            lua_insert(L, base + 1);
            lua_pushlightuserdata(L, c);
            lua_insert(L, base + 2);
            status = lua_pcall(L, 4, 0, handler);
            if (status != LUA_OK)
                return status;
        }
        lua_settop(L, base);
    }
    return LUA_OK;
}

/* Runs the hooks of c->slot and fills `out`. The request object is live only inside. */
static int run_call(call_t *c, hooks_result_t *out)
{
    engine_t *e = c->e;
    lua_State *L = e->L;
    e->view = c->view;
    set_script(e, e->scripts[c->slot->fns[0].script]);
    lua_pushcfunction(L, on_error);
    int status;
    if (c->view && !c->value && !c->context) {
        status = run_direct(c, 1);
    } else {
        lua_pushcfunction(L, run_hooks);
        lua_pushlightuserdata(L, c);
        status = lua_pcall(L, 1, 0, 1);
    }
    e->running = false;
    e->view = NULL;
    clear_pending(e);
    json_t *overrides = e->overrides;
    e->overrides = NULL;
    if (status != LUA_OK) {
        out->action = HOOKS_ERROR;
        out->status = 500;
        out->message = error_message(e, status, lua_tostring(L, -1));
        json_decref(c->value);
        json_decref(overrides);
        free(c->message);
        lua_settop(L, 0);
        return -1;
    }
    lua_settop(L, 0);
    if (c->view && !c->value) { /* on_request: the header changes are the result */
        c->value = overrides;
        overrides = NULL;
    }
    json_decref(overrides);
    out->action = c->denied ? HOOKS_DENY : HOOKS_ALLOW;
    out->status = c->denied ? c->status : 0;
    out->message = c->message;
    out->value = c->value;
    out->changed = c->changed;
    return 0;
}

/* The slot defining `name`, or NULL after filling `out` with an ALLOW of `value`. */
static const hook_slot_t *slot_to_call(hooks_t *h, const char *name, json_t *value,
                                       hooks_result_t *out)
{
    memset(out, 0, sizeof(*out));
    const hook_slot_t *slot = lookup(h->cur, name);
    if (slot)
        return slot;
    out->action = HOOKS_ALLOW;
    out->value = value ? json_incref(value) : NULL;
    return NULL;
}

int hooks_call_with(hooks_t *h, const char *name, const json_t *context, json_t *value,
                    hooks_result_t *out)
{
    const hook_slot_t *slot = slot_to_call(h, name, value, out);
    if (!slot)
        return 0;
    call_t c = {.e = h->cur, .slot = slot, .context = context, .value = json_incref(value)};
    return run_call(&c, out);
}

int hooks_call_request(hooks_t *h, const char *name, const hooks_request_view_t *req, json_t *res,
                       hooks_result_t *out)
{
    const hook_slot_t *slot = slot_to_call(h, name, res, out);
    if (!slot)
        return 0;
    call_t c = {.e = h->cur, .slot = slot, .view = req, .value = json_incref(res)};
    return run_call(&c, out);
}

int hooks_call(hooks_t *h, const char *name, json_t *value, hooks_result_t *out)
{
    return hooks_call_with(h, name, NULL, value, out);
}

bool hooks_has(const hooks_t *h, const char *name)
{
    return lookup(h->cur, name) != NULL;
}

void hooks_result_clear(hooks_result_t *out)
{
    free(out->message);
    json_decref(out->value);
    memset(out, 0, sizeof(*out));
}

/* ---- loading ---- */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_scripts(const char *dir, char ***names, size_t *n, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        int rc = -errno;
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return rc;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".lua"))
            continue;
        *names = xrealloc(*names, (*n + 1) * sizeof(char *));
        (*names)[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (*n)
        qsort(*names, *n, sizeof(char *), by_name);
    return 0;
}

static int read_script(const char *path, size_t max, char **text, size_t *len, char *err,
                       size_t errlen)
{
    struct stat st;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        rc = -EINVAL;
        snprintf(err, errlen, "%s: %s", path,
                 S_ISREG(st.st_mode) ? "larger than the memory cap" : "not a regular file");
        goto fail;
    }
    *text = xmalloc((size_t)st.st_size + 1);
    *len = 0;
    while (*len < (size_t)st.st_size) {
        ssize_t got = read(fd, *text + *len, (size_t)st.st_size - *len);
        if (got <= 0) {
            rc = got < 0 ? -errno : -EIO;
            snprintf(err, errlen, "%s: %s", path, got < 0 ? strerror(errno) : "file shrank");
            goto fail;
        }
        *len += (size_t)got;
    }
fail:
    if (fd >= 0)
        close(fd);
    return rc;
}

int hooks_load_dir(hooks_t *h, const char *dir, char *err, size_t errlen)
{
    char **names = NULL;
    size_t n = 0;
    char *path = NULL, *text = NULL;
    engine_t *e = NULL;
    int rc;

    if (errlen)
        err[0] = '\0';
    rc = list_scripts(dir, &names, &n, err, errlen);
    if (rc < 0)
        goto fail;
    e = engine_new(&h->limits, err, errlen);
    if (!e) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        path = xasprintf("%s/%s", dir, names[i]);
        rc = read_script(path, e->mem_cap, &text, &len, err, errlen);
        if (rc < 0)
            goto fail;
        rc = engine_load(e, names[i], text, len, err, errlen);
        if (rc < 0)
            goto fail;
        free(text);
        free(path);
        text = path = NULL;
    }
    engine_free(h->cur);
    h->cur = e;
    e = NULL;
    rc = (int)n;
fail:
    engine_free(e);
    free(text);
    free(path);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

hooks_t *hooks_new(const hooks_limits_t *limits)
{
    hooks_t *h = xcalloc(1, sizeof(hooks_t));
    if (limits)
        h->limits = *limits;
    if (!h->limits.instruction_budget)
        h->limits.instruction_budget = HOOKS_DEFAULT_BUDGET;
    if (!h->limits.memory_cap)
        h->limits.memory_cap = HOOKS_DEFAULT_MEMORY_CAP;
    return h;
}

void hooks_free(hooks_t *h)
{
    if (!h)
        return;
    engine_free(h->cur);
    free(h);
}
