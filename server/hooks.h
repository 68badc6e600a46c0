/* hooks.h — Lua hooks: one sandboxed Lua state per worker, the scripts of one directory
 * loaded into it, and hooks called by name with a JSON value or a view of the request.
 *
 * A hook is a global function a script defines. Scripts load in file-name order and each
 * runs in its own environment, so two scripts may define the same hook: they run in that
 * order, each seeing the value as the ones before it left it, and the first deny stops
 * the chain. The phases the worker calls (see ARCHITECTURE.md, "Lua hooks"):
 *
 *   on_request(req)            req: the request, read-only (see "The request object")
 *   on_response(req, res)      res = {status=, headers={...}}; req as in on_request
 *   before_<plugin action>(v)  v = whatever the plugin passes, e.g. the body to validate
 *
 * What a hook returns:
 *
 *   nothing, nil or true       allow, value unchanged
 *   false, status, message     deny (status defaults to 403, message to "forbidden")
 *   a table with the keys
 *     deny = true              deny; with `status` (100..599, default 403) and `message`
 *     set = {k = v, ...}       replace top-level fields of the value (an object)
 *     set_headers = {k = v}    set entries of value.headers (names match case-insensitively;
 *                              values are strings or integers)
 *     remove_headers = {k...}  remove entries of value.headers (a list of names)
 *   Any other key, or any other return, is an error: a typo must not pass silently.
 *   In on_request there is no value: set_headers and remove_headers change the request's
 *   headers as the plugin will see them (and as the next script's req.headers shows
 *   them; a name to remove that is not a token is ignored), and `set` is an error.
 *
 *   -- 10_waf.lua
 *   function on_request(req)
 *       local role = req.caller and req.caller.role -- nil caller: anonymous
 *       if req.path:find("/admin", 1, true) and role ~= "admin" then
 *           return false, 403, "admins only"
 *       end
 *       return {set_headers = {["X-Checked-By"] = "waf"}}
 *   end
 *
 *   function before_user_register(user)
 *       if not user.email:find("@", 1, true) then
 *           return {deny = true, status = 422, message = "email needs an @"}
 *       end
 *       return {set = {email = user.email:lower(), tags = hooks.array{}}}
 *   end
 *
 * Declarations: a script may also set, at its top level, globals the host reads once per
 * (re)load (hooks_declare.c):
 *   REQUEST_PATHS = {"/v1/admin/", ...}   its on_request and on_response run only for
 *                                         paths starting with one of these prefixes
 *   RESPONSE_HEADERS = {["X-Frame-Options"] = "DENY", ...}
 *                                         headers the host adds to every response (within
 *                                         REQUEST_PATHS when both are set), before any
 *                                         on_response, without running Lua
 * A malformed declaration is a load error. Changing them from a hook has no effect.
 *
 * JSON in Lua: objects are tables, arrays are sequences carrying the `hooks.array`
 * metatable (so an empty array converts back as [], not {}), strings, integers, reals
 * and booleans are themselves, and null is the sentinel `hooks.null` (not nil, so a null
 * keeps its key in an object and its place in an array). Going back to JSON, a table
 * marked with hooks.array(t) or whose keys are exactly 1..n is an array, a table with
 * string keys is an object, and an empty unmarked table is {}.
 *   An object inside an object is converted when the script first reads it, so a hook
 * that looks at req.path does not pay for req.headers. pairs() sees every field; raw
 * access (next, rawget) sees only the fields read so far. Object tables carry a
 * protected metatable (setmetatable on them fails). The argument is the script's own
 * copy: changing it in place changes nothing for the caller or the next script (return
 * `set` for that). A table kept past its call keeps what was read during the call; the
 * fields never read are gone.
 *
 * The request object (hooks_call_request): `req` is not a table but a read-only view of
 * the server's own request, so a hook pays only for the fields it reads:
 *   req.method, req.path       strings
 *   req.body_size              integer (bytes)
 *   req.plugin                 the route's owner, or nil
 *   req.caller                 nil when the caller is anonymous, else a view with the
 *                              strings req.caller.id and req.caller.role
 *   req.headers                a view: req.headers["Content-Type"] finds a header by name
 *                              case-insensitively (the first one sent, or nil), and
 *                              pairs(req.headers) yields each name once, in lower case,
 *                              with its first value
 *   Any other field is nil; assigning any field is an error; pairs() walks each view.
 * The views are userdata, not tables: rawget, next and # do not apply, and they cannot
 * become JSON (copy the fields into a table for that). Reading a field allocates nothing
 * (pairs(req.headers) builds a table); a header lookup is charged one budget unit per
 * header it looks at.
 * They are only valid during a call of on_request or on_response: the objects are the
 * same in every call, showing that call's request, so one kept in a global and read
 * anywhere else (another hook, top-level code) raises "the request object is only valid
 * during its hook call". Nothing a script keeps ever points into a finished request.
 *
 * The sandbox: base functions without dofile, loadfile and warn; `load` takes text only and
 * defaults to the calling script's environment; `collectgarbage` answers "count" only;
 * `setmetatable` refuses __gc; `print` goes to the error log (16 lines per run at most);
 * string (without dump), table, math, utf8, and os.time/os.clock/os.date. No io,
 * os.execute, package, require, debug or coroutine (a coroutine that died of the budget
 * error could run Lua code where the budget no longer counts). Each script gets its own
 * copy of the library tables and its own globals; the string metatable is hidden.
 *
 * Limits, per script run (one script's hook in one call, or a script's top-level code at
 * load): an instruction budget and a memory cap on the whole state. The budget counts VM
 * instructions, plus one unit per 64 bytes allocated, one per 16 bytes of subject that
 * string.find/match/gmatch/gsub and utf8.len/codepoint/offset scan, and one per element
 * table.move/insert/remove move — C loops that would otherwise run on uncounted. Either
 * overrun is an error for that call alone (a script cannot catch it for good): the state
 * stays usable. Not bounded: a single C operation that is slow without allocating, such
 * as a pattern with catastrophic backtracking or == on two long strings in a loop of few
 * instructions; review scripts for those.
 *
 * Nothing here blocks once loaded: hooks_call does no I/O but print's log line.
 * hooks_load_dir reads the script files (at start and on SIGHUP). Not thread-safe: one
 * hooks_t per worker process, used from its loop.
 */
#ifndef PX_HOOKS_H
#define PX_HOOKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOOKS_DEFAULT_BUDGET 1000000u
#define HOOKS_DEFAULT_MEMORY_CAP ((size_t)16 * 1024 * 1024)

typedef struct hooks_limits {
    uint64_t instruction_budget; /* per script run; 0 = HOOKS_DEFAULT_BUDGET */
    size_t memory_cap;           /* bytes for the whole Lua state; 0 = HOOKS_DEFAULT_MEMORY_CAP */
} hooks_limits_t;

typedef enum hooks_action {
    HOOKS_ALLOW = 0, /* go on with out->value */
    HOOKS_DENY,      /* answer out->status with out->message */
    HOOKS_ERROR,     /* a script failed: log out->message, answer 500 for this request */
} hooks_action_t;

typedef struct hooks_result {
    hooks_action_t action;
    int status;    /* DENY: the script's status; ERROR: 500; ALLOW: 0 */
    char *message; /* DENY: the script's message; ERROR: "script.lua:LINE: what"; else NULL */
    json_t *value; /* ALLOW and DENY: the value after the hooks' changes, a new reference
                    * (the caller's own object when nothing changed, else a new one: the
                    * caller's value is never modified). ERROR: NULL. */
    bool changed;  /* some hook changed the value */
} hooks_result_t;

typedef struct hooks hooks_t;

/* `limits` may be NULL for the defaults. No scripts are loaded yet: every call allows. */
hooks_t *hooks_new(const hooks_limits_t *limits);
/* Closes the Lua state. Accepts NULL. */
void hooks_free(hooks_t *h);

/* Loads every "*.lua" of `dir` (not dot-files) in file-name order into a fresh state,
 * running each one's top-level code once. Only when all of them load does the new state
 * replace the current one; otherwise the current scripts keep running and `err` says why
 * ("20_waf.lua:7: unexpected symbol near 'end'"). Returns the number of scripts loaded;
 * -errno when the directory or a file cannot be read; -EINVAL when a script fails to
 * compile or its top-level code fails; -ENOMEM when the state cannot be created. */
int hooks_load_dir(hooks_t *h, const char *dir, char *err, size_t errlen);

/* True when a loaded script defines the global function `name` (found at load time), so
 * the hot path can skip building the value. A few nanoseconds: the last two names found
 * are remembered. */
bool hooks_has(const hooks_t *h, const char *name);

/* hooks_has for the request phases: true when a script defining `name` applies to this
 * path (a script may declare REQUEST_PATHS, the prefixes its on_request and on_response
 * are about; without it, everything). */
bool hooks_has_for(const hooks_t *h, const char *name, const char *path, size_t len);

/* Calls `add` for each header the scripts declared in RESPONSE_HEADERS that applies to
 * this path, in script order (a later script may declare a name again: both are given,
 * the later last). Strings are borrowed until the next hooks_load_dir. */
void hooks_response_headers(const hooks_t *h, const char *path, size_t len,
                            void (*add)(void *ctx, const char *name, const char *value),
                            void *ctx);

/* Calls `name` in each script defining it, in file-name order, with `value` (borrowed,
 * never modified; NULL passes nil). Fills `out`, which the caller releases with
 * hooks_result_clear. No script defining it is an ALLOW with `value` itself. Returns 0
 * when every hook ran (out->action ALLOW or DENY) or -1 when one failed (HOOKS_ERROR). */
int hooks_call(hooks_t *h, const char *name, json_t *value, hooks_result_t *out);

/* The same with a read-only first argument: the hook is called as name(context, value)
 * and only `value` may be changed. `context` may be NULL. (The worker's on_request and
 * on_response use hooks_call_request below, which converts nothing up front.) */
int hooks_call_with(hooks_t *h, const char *name, const json_t *context, json_t *value,
                    hooks_result_t *out);

/* One header of the request, as received (name in the client's case). */
typedef struct hooks_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} hooks_header_t;

/* The request on_request and on_response see, lent for one call and never copied: the
 * hooks read each field only when a script asks for it. Strings need not be valid UTF-8.
 * header_at(ctx, i, out) fills `out` with header i < nheaders; it may be called many
 * times per call, in any order, and must not fail. */
typedef struct hooks_request_view {
    const char *method; /* NUL-terminated; NULL reads as "" */
    const char *path;   /* path_len bytes; NULL reads as "" */
    size_t path_len;
    const char *caller_id;   /* NUL-terminated; NULL: anonymous, req.caller is nil */
    const char *caller_role; /* NULL reads as "" */
    int64_t body_size;
    const char *plugin; /* NULL: req.plugin is nil */
    size_t nheaders;
    void (*header_at)(void *ctx, size_t i, hooks_header_t *out);
    void *ctx;
} hooks_request_view_t;

/* Calls `name` with the request object made from `req` (see above) and, when `res` is
 * not NULL, a value as in hooks_call_with: name(req, res) for on_response, whose results
 * then change `res` (out->value) exactly as hooks_call_with's do. With `res` NULL the
 * hook is name(req), as on_request: `set` is an error, and when a hook set or removed
 * headers, out->value is a new object of the changes, {name: "value" or null (removed)},
 * each name once (case-insensitively; the last change wins, with the script's spelling)
 * and out->changed is true; else out->value is NULL. Same limits, errors and order as
 * hooks_call. `req` and what it points to are only read during this call. */
int hooks_call_request(hooks_t *h, const char *name, const hooks_request_view_t *req, json_t *res,
                       hooks_result_t *out);

/* Frees out->message, drops out->value and zeroes `out`. Accepts a zeroed result. */
void hooks_result_clear(hooks_result_t *out);

#endif
