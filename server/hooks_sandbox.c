/*
 * hooks_sandbox.c — the Lua state hooks run in: what scripts can reach, and the limits
 * they run within.
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
 */
#include "hooks_internal.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define HOOK_STEP 1000     /* VM instructions between two calls of the count hook */
#define ALLOC_UNIT_SHIFT 6 /* one budget unit per 64 bytes allocated */
#define MAX_PRINTS 16      /* print lines logged per script run */
#define MAX_PRINT_LEN 512

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

void hooks_sandbox_spend(lua_State *L, engine_t *e, uint64_t units)
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
    hooks_sandbox_spend(L, e, (uint64_t)e->step);
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

void hooks_sandbox_name(engine_t *e, const char *script)
{
    e->script = script;
    e->exceeded = false;
    e->fault[0] = '\0';
}

void hooks_sandbox_begin(engine_t *e, const char *script)
{
    hooks_sandbox_name(e, script);
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
int hooks_sandbox_on_error(lua_State *L)
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

char *hooks_sandbox_error(engine_t *e, int status, const char *msg)
{
    if (e->exceeded || ((status == LUA_ERRMEM || status == LUA_ERRERR) && e->fault[0]))
        msg = e->fault;
    else if (!msg)
        msg = status == LUA_ERRMEM ? "not enough memory" : "unknown error";
    if (starts_with_script(msg, e->script))
        return xstrdup(msg);
    return xasprintf("%s: %s", e->script, msg);
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
    hooks_sandbox_spend(L, e, units);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int sandbox_array(lua_State *L)
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
    lua_pushcclosure(L, sandbox_array, 1);
    lua_setfield(L, -2, "array");
    lua_setfield(L, -2, "hooks");
    lua_getfield(L, 2, "load"); /* kept for the per-script wrapper */
    lua_setfield(L, -2, "load");
    set_ref(L, &e->libs);
    lua_pop(L, 1); /* array marker */

    hooks_value_setup(L, e); /* objects from JSON, the request views */

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

int hooks_sandbox_open(engine_t *e, char *err, size_t errlen)
{
    e->step = e->budget < HOOK_STEP ? (int)e->budget : HOOK_STEP;
    e->L = lua_newstate(cap_alloc, e);
    if (!e->L) {
        snprintf(err, errlen, "cannot create a Lua state within %zu bytes", e->mem_cap);
        return -ENOMEM;
    }
    *(engine_t **)lua_getextraspace(e->L) = e;
    lua_atpanic(e->L, on_panic);
    lua_pushcfunction(e->L, setup_state);
    lua_pushlightuserdata(e->L, e);
    if (lua_pcall(e->L, 1, 0, 0) != LUA_OK) {
        const char *why = lua_tostring(e->L, -1);
        snprintf(err, errlen, "cannot set up the Lua sandbox: %s", why ? why : "?");
        return -ENOMEM;
    }
    return 0;
}

void hooks_sandbox_push_env(lua_State *L, engine_t *e)
{
    static const char *copied[] = {LUA_STRLIBNAME,  LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                   LUA_UTF8LIBNAME, LUA_OSLIBNAME,  "hooks"};
    lua_createtable(L, 0, 16);
    int env = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->env_mt);
    lua_setmetatable(L, env);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->libs);
    int libs = lua_gettop(L);
    for (size_t i = 0; i < ARRAY_SIZE(copied); i++) {
        lua_getfield(L, libs, copied[i]);
        copy_table(L, -1);
        lua_setfield(L, env, copied[i]);
        lua_pop(L, 1);
    }
    lua_getfield(L, libs, "load");
    lua_pushvalue(L, env);
    lua_pushcclosure(L, sandbox_load, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, env, "load");
    lua_remove(L, libs);
}
