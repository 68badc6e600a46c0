/*
 * hooks_value.c — values crossing between the server and the scripts: JSON (jansson) to
 * Lua and back, and the request object. What a hook returns is read in hooks.c, with
 * hooks_value_to_json for the values it sets.
 */
#include "hooks_internal.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define MAX_DEPTH 64 /* nesting converted either way (Lua tables can be cyclic) */

const char hooks_value_null;

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

/* Only raw removals of present keys: nothing allocates, so this is safe outside
 * lua_pcall. */
void hooks_value_clear(engine_t *e)
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

void hooks_value_push(lua_State *L, engine_t *e, const json_t *j)
{
    push_json(L, e, j, 0);
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
            json_t *v = lua_isnil(L, -1) ? json_null()
                                         : hooks_value_to_json(L, e, -1, depth + 1, err, errlen);
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
        json_t *v = hooks_value_to_json(L, e, -1, depth + 1, err, errlen);
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

json_t *hooks_value_to_json(lua_State *L, const engine_t *e, int idx, int depth, char *err,
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
            hooks_sandbox_spend(L, e, i + 1);
            lua_pushlstring(L, h.value, h.value_len);
            return 1;
        }
    }
    hooks_sandbox_spend(L, e, v->nheaders);
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
    hooks_sandbox_spend(L, e, v->nheaders);
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

/* ---- setting up ---- */

void hooks_value_setup(lua_State *L, engine_t *e)
{
    lua_createtable(L, 0, 3); /* objects from JSON */
    lua_pushcfunction(L, value_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, value_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "hooks.value");
    lua_setfield(L, -2, "__metatable");
    e->value_mt = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    e->pending = luaL_ref(L, LUA_REGISTRYINDEX);

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
        *views[i].ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
}
