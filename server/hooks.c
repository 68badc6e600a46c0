/*
 * hooks.c — Lua hooks on the worker's loop: loading the scripts, calling the hooks and
 * reading what they return.
 *
 * One "engine" is one generation of scripts: a lua_State, the scripts' names, and for
 * each hook name the functions defining it (registry references, in file-name order).
 * hooks_load_dir builds a complete new engine and only then swaps it in, so a reload
 * that fails leaves the running generation untouched; there is no way to half-load.
 * The state and the guards keeping a script from taking the worker down or stalling it
 * are in hooks_sandbox.c; converting values and the request object, in hooks_value.c.
 *
 * The call path converts the value afresh for each script (a script that mutates its
 * argument in place affects nobody), runs the function, and reads its result. The
 * request phases (hooks_call_request) convert nothing: `req` is a view of the server's
 * request (see hooks_value.c), and on_request calls each function with lua_pcall
 * directly.
 *
 * A hook's result is read without any Lua call that could raise while jansson objects
 * are held, so an error can never leak them: Lua-side checks first, jansson work after.
 */
#include "hooks_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* One call of a hook, in every script defining it. */
typedef struct hook_call {
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
} hook_call_t;

struct hooks {
    hooks_limits_t limits;
    engine_t *cur;
};

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
    hooks_declare_free(e);
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
    if (hooks_sandbox_open(e, err, errlen) < 0) {
        engine_free(e);
        return NULL;
    }
    return e;
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

    hooks_sandbox_push_env(L, e); /* 2: the environment, 3: its `load` */
    int status = luaL_loadbufferx(L, src->text, src->len, src->chunkname, "t");
    if (status != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 2);
    lua_setupvalue(L, -2, 1); /* _ENV */
    hooks_sandbox_begin(e, e->scripts[src->index]);
    lua_call(L, 0, 0);
    e->running = false;
    hooks_declare_read(L, e, src->index, 2);

    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION &&
            !lua_rawequal(L, -1, 3)) {
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
    hooks_sandbox_name(e, e->scripts[src.index]);

    lua_pushcfunction(L, hooks_sandbox_on_error);
    lua_pushcfunction(L, load_script);
    lua_pushlightuserdata(L, &src);
    int status = lua_pcall(L, 1, 0, 1);
    e->running = false;
    if (status != LUA_OK) {
        char *msg = hooks_sandbox_error(e, status, lua_tostring(L, -1));
        snprintf(err, errlen, "%s", msg);
        free(msg);
    }
    lua_settop(L, 0);
    free(chunkname);
    return status == LUA_OK ? 0 : -EINVAL;
}

/* ---- a hook's result ---- */

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

static void replace_value(hook_call_t *c, json_t *next)
{
    json_decref(c->value);
    c->value = next;
    c->changed = true;
}

static int apply_set(lua_State *L, hook_call_t *c, int t, char *err, size_t errlen)
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
        json_t *v = hooks_value_to_json(L, c->e, -1, 1, why, sizeof(why));
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

/* Applies set_headers and remove_headers (at set_idx and remove_idx, 0 when absent) to
 * `headers`, where each name is once, case-insensitively, the last change winning. With
 * `tombstones` a removal stays as a null, so that it also hides a header the request was
 * sent with, and a name to remove that is no token matches no header: ignored. */
static int edit_headers(lua_State *L, json_t *headers, int set_idx, int remove_idx, bool tombstones,
                        char *err, size_t errlen)
{
    if (remove_idx) {
        size_t n = lua_rawlen(L, remove_idx);
        for (size_t i = 1; i <= n; i++) {
            size_t namelen = 0;
            lua_rawgeti(L, remove_idx, (lua_Integer)i);
            const char *name =
                lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &namelen) : NULL;
            if (name && (!tombstones || valid_header(name, namelen, "", 0))) {
                remove_header(headers, name);
                if (tombstones)
                    json_object_set_new(headers, name, json_null());
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
            remove_header(headers, name);
            json_object_set_new(headers, name, v);
            lua_pop(L, 1);
        }
    }
    return 0;
}

/* The value's "headers" change in a copy: the caller's value stays as it was. */
static int apply_headers(lua_State *L, hook_call_t *c, int set_idx, int remove_idx, char *err,
                         size_t errlen)
{
    json_t *old = json_is_object(c->value) ? json_object_get(c->value, "headers") : NULL;
    if (!json_is_object(c->value) || (old && !json_is_object(old))) {
        snprintf(err, errlen, "headers can only change in an object with a \"headers\" object");
        return -1;
    }
    json_t *headers = old ? json_copy(old) : json_object();
    if (edit_headers(L, headers, set_idx, remove_idx, false, err, errlen) < 0) {
        json_decref(headers);
        return -1;
    }
    json_t *next = json_copy(c->value);
    json_object_set_new(next, "headers", headers);
    replace_value(c, next);
    return 0;
}

/* on_request: header changes go to e->overrides, where the next script's req.headers
 * and finally the caller see them. */
static int apply_overrides(lua_State *L, hook_call_t *c, int set_idx, int remove_idx, char *err,
                           size_t errlen)
{
    engine_t *e = c->e;
    if (!e->overrides)
        e->overrides = json_object();
    if (edit_headers(L, e->overrides, set_idx, remove_idx, true, err, errlen) < 0)
        return -1;
    c->changed = true;
    return 0;
}

static int deny(lua_State *L, hook_call_t *c, int status, int message, char *err, size_t errlen)
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
static int apply_table(lua_State *L, hook_call_t *c, int t, char *err, size_t errlen)
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
static int apply_result(lua_State *L, hook_call_t *c, int r, char *err, size_t errlen)
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

/* Applies the three results at r of c->fn to `c`, or raises "script:line: hook what". The
 * error names the line where the hook's function is defined: the function has returned,
 * so no line of it is running. */
static void apply_or_raise(lua_State *L, hook_call_t *c, int r)
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

/* ---- calling ---- */

static bool in_scope(const engine_t *e, const hook_fn_t *fn, const hooks_request_view_t *view)
{
    return hooks_declare_applies(e, fn->script, view->path ? view->path : "",
                                 view->path ? view->path_len : 0);
}

/* Runs protected: each script's function in order until one denies. */
static int run_hooks(lua_State *L)
{
    hook_call_t *c = lua_touserdata(L, 1);
    engine_t *e = c->e;
    int base = lua_gettop(L);

    for (size_t i = 0; i < c->slot->nfns && !c->denied; i++) {
        const hook_fn_t *fn = &c->slot->fns[i];
        if (c->view && !in_scope(e, fn, c->view))
            continue;
        int nargs = 0;
        hooks_sandbox_begin(e, e->scripts[fn->script]); /* converting the value is charged too */
        lua_rawgeti(L, LUA_REGISTRYINDEX, fn->ref);
        if (c->view) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, e->req_ud);
            nargs++;
        }
        if (c->context) {
            hooks_value_push(L, e, c->context);
            nargs++;
        }
        if (c->value) {
            hooks_value_push(L, e, c->value);
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
        hooks_value_clear(e); /* the next script gets the value afresh */
    }
    return 0;
}

/* Runs protected: apply_or_raise on the results at 2, 3, 4 of c->fn (at 1). */
static int read_result(lua_State *L)
{
    apply_or_raise(L, lua_touserdata(L, 1), 2);
    return 0;
}

/* The path of on_request, where there is no value to convert: each script's function is
 * called with lua_pcall itself (no C function in between), and what it returns is read
 * under protection only when it is more than nothing or true. The message handler is at
 * `handler`. Returns a lua_pcall status, the error message on top of the stack. */
static int run_direct(hook_call_t *c, int handler)
{
    engine_t *e = c->e;
    lua_State *L = e->L;
    int base = lua_gettop(L);
    for (size_t i = 0; i < c->slot->nfns && !c->denied; i++) {
        const hook_fn_t *fn = &c->slot->fns[i];
        if (!in_scope(e, fn, c->view))
            continue;
        hooks_sandbox_begin(e, e->scripts[fn->script]);
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
static int run_call(hook_call_t *c, hooks_result_t *out)
{
    engine_t *e = c->e;
    lua_State *L = e->L;
    e->view = c->view;
    hooks_sandbox_name(e, e->scripts[c->slot->fns[0].script]);
    lua_pushcfunction(L, hooks_sandbox_on_error);
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
    hooks_value_clear(e);
    json_t *overrides = e->overrides;
    e->overrides = NULL;
    if (status != LUA_OK) {
        out->action = HOOKS_ERROR;
        out->status = 500;
        out->message = hooks_sandbox_error(e, status, lua_tostring(L, -1));
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
    hook_call_t c = {.e = h->cur, .slot = slot, .context = context, .value = json_incref(value)};
    return run_call(&c, out);
}

int hooks_call_request(hooks_t *h, const char *name, const hooks_request_view_t *req, json_t *res,
                       hooks_result_t *out)
{
    const hook_slot_t *slot = slot_to_call(h, name, res, out);
    if (!slot)
        return 0;
    hook_call_t c = {.e = h->cur, .slot = slot, .view = req, .value = json_incref(res)};
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

bool hooks_has_for(const hooks_t *h, const char *name, const char *path, size_t len)
{
    const hook_slot_t *slot = lookup(h->cur, name);
    for (size_t i = 0; slot && i < slot->nfns; i++)
        if (hooks_declare_applies(h->cur, slot->fns[i].script, path, len))
            return true;
    return false;
}

void hooks_response_headers(const hooks_t *h, const char *path, size_t len,
                            void (*add)(void *ctx, const char *name, const char *value),
                            void *ctx)
{
    const engine_t *e = h->cur;
    for (size_t i = 0; e && i < e->nstatic_headers; i++) {
        const static_header_t *sh = &e->static_headers[i];
        if (hooks_declare_applies(e, sh->script, path, len))
            add(ctx, sh->name, sh->value);
    }
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
