/*
 * hooks_declare.c — what a script declares about itself, read once when it loads:
 *
 *   REQUEST_PATHS = {"/v1/admin/", "/v1/auth/login"}
 *       the path prefixes this script's on_request and on_response are about; for any
 *       other request the host does not call them at all (no Lua, no value built).
 *   RESPONSE_HEADERS = {["X-Frame-Options"] = "DENY", ...}
 *       headers set on every response (within REQUEST_PATHS, when both are declared),
 *       added by the host from a list made here, before any on_response runs.
 *
 * Why: a hook is cheap, but the shipped scripts ran on every request of every route to
 * set four constant headers and to compare a prefix that almost no path has, and each
 * of those calls cost more than serving /v1/hello itself. Declaring a scope or a constant
 * takes no power from scripts — on_request and on_response still see everything they
 * apply to — it lets the host skip work whose answer it already knows.
 *
 * The declarations are copied at load: changing the globals later (from a hook) changes
 * nothing until the next reload. A malformed declaration is a load error naming the
 * script, like a syntax error, so a reload with one keeps the old scripts.
 */
#include "hooks_internal.h"

#include <lauxlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

void hooks_declare_free(engine_t *e)
{
    for (size_t i = 0; i < e->nscopes; i++) {
        for (size_t j = 0; j < e->scopes[i].n; j++)
            free(e->scopes[i].prefixes[j]);
        free(e->scopes[i].prefixes);
    }
    free(e->scopes);
    for (size_t i = 0; i < e->nstatic_headers; i++) {
        free(e->static_headers[i].name);
        free(e->static_headers[i].value);
    }
    free(e->static_headers);
}

static bool header_name_ok(const char *s, size_t n)
{
    static const char tchar_extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c && strchr(tchar_extra, c))))
            return false;
    }
    return true;
}

static bool header_value_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return false;
    return n <= 4096;
}

/* REQUEST_PATHS at the top of the stack: a sequence of strings starting with '/'. */
static void read_paths(lua_State *L, engine_t *e, size_t script)
{
    if (!lua_istable(L, -1))
        luaL_error(L, "REQUEST_PATHS must be a list of path prefixes such as {\"/v1/admin/\"}");
    script_scope_t *scope = &e->scopes[script];
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n == 0 || n > 256)
        luaL_error(L, "REQUEST_PATHS must list 1 to 256 path prefixes");
    scope->prefixes = xcalloc((size_t)n, sizeof(char *));
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        size_t len = 0;
        const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!p || len == 0 || p[0] != '/' || memchr(p, '\0', len))
            luaL_error(L, "REQUEST_PATHS[%d] must be a string starting with \"/\"", (int)i);
        scope->prefixes[scope->n] = xmalloc(len + 1);
        memcpy(scope->prefixes[scope->n], p, len + 1);
        scope->lens_total += len;
        scope->n++;
        lua_pop(L, 1);
    }
}

/* RESPONSE_HEADERS at the top of the stack: {name = string or integer}. A later script
 * naming the same header (case-insensitively) replaces the earlier one's value. */
static void read_headers(lua_State *L, engine_t *e, size_t script)
{
    if (!lua_istable(L, -1))
        luaL_error(L, "RESPONSE_HEADERS must be a table such as {[\"X-Frame-Options\"] = \"DENY\"}");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        size_t nlen = 0, vlen = 0;
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nlen) : NULL;
        if (!name || !header_name_ok(name, nlen))
            luaL_error(L, "RESPONSE_HEADERS: a key is not a header name");
        if (lua_type(L, -1) != LUA_TSTRING && !lua_isinteger(L, -1))
            luaL_error(L, "RESPONSE_HEADERS[\"%s\"] must be a string or an integer", name);
        lua_pushvalue(L, -1); /* tolstring on a copy: an integer key stays an integer */
        const char *value = lua_tolstring(L, -1, &vlen);
        if (!header_value_ok(value, vlen))
            luaL_error(L, "RESPONSE_HEADERS[\"%s\"] has a CR, LF or NUL, or is too long", name);
        static_header_t *h = NULL;
        for (size_t i = 0; i < e->nstatic_headers && !h; i++)
            if (!strcasecmp(e->static_headers[i].name, name) &&
                e->static_headers[i].script == script)
                h = &e->static_headers[i];
        if (!h) {
            e->static_headers = xrealloc(e->static_headers,
                                         (e->nstatic_headers + 1) * sizeof(static_header_t));
            h = &e->static_headers[e->nstatic_headers++];
            *h = (static_header_t){.name = xstrdup(name), .script = script};
        } else {
            free(h->value);
        }
        h->value = xmalloc(vlen + 1);
        memcpy(h->value, value, vlen + 1);
        lua_pop(L, 2);
    }
}

void hooks_declare_read(lua_State *L, engine_t *e, size_t script, int env)
{
    if (e->nscopes <= script) {
        e->scopes = xrealloc(e->scopes, (script + 1) * sizeof(script_scope_t));
        memset(e->scopes + e->nscopes, 0, (script + 1 - e->nscopes) * sizeof(script_scope_t));
        e->nscopes = script + 1;
    }
    lua_getfield(L, env, "REQUEST_PATHS");
    if (!lua_isnil(L, -1))
        read_paths(L, e, script);
    lua_pop(L, 1);
    lua_getfield(L, env, "RESPONSE_HEADERS");
    if (!lua_isnil(L, -1))
        read_headers(L, e, script);
    lua_pop(L, 1);
}

bool hooks_declare_applies(const engine_t *e, size_t script, const char *path, size_t len)
{
    if (script >= e->nscopes || e->scopes[script].n == 0)
        return true;
    const script_scope_t *s = &e->scopes[script];
    for (size_t i = 0; i < s->n; i++) {
        size_t plen = strlen(s->prefixes[i]);
        if (plen <= len && !memcmp(path, s->prefixes[i], plen))
            return true;
    }
    return false;
}
