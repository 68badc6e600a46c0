/*
 * openapi.c — the plugin's part of GET /openapi.json: its paths with full request and
 * response schemas, and the schemas under components (merged by name with the other
 * plugins'; "Error" is the same everywhere: API.md's error shape).
 */
#include <stdio.h>
#include <string.h>

#include "user.h"

static json_t *ref(const char *name)
{
    char path[96];
    snprintf(path, sizeof(path), "#/components/schemas/%s", name);
    return json_pack("{s:s}", "$ref", path);
}

static json_t *content(const char *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", ref(schema));
}

static const char *reason(const char *code)
{
    static const struct {
        const char *code, *text;
    } reasons[] = {
        {"400", "Malformed JSON, a wrong type, an unknown field (bad_request) or invalid values "
                "(validation_failed, with fields)"},
        {"401", "No valid bearer token, or invalid credentials (unauthorized)"},
        {"403", "Authenticated but not allowed (forbidden)"},
        {"404", "No such user (not_found)"},
        {"409", "The username or email is taken, or the Idempotency-Key was used for another "
                "request (conflict)"},
        {"415", "The body is not JSON"},
        {"429", "Too many failed logins (rate_limited), with Retry-After"},
        {"503", "PostgreSQL is unreachable (unavailable), with Retry-After"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (!strcmp(reasons[i].code, code))
            return reasons[i].text;
    return "Error";
}

/* The success answer and the error statuses listed in `errors` ("400 401 409"). */
static json_t *responses(const char *status, const char *description, const char *schema,
                         const char *errors)
{
    json_t *out = json_object();
    json_t *ok = json_pack("{s:s}", "description", description);
    if (schema)
        json_object_set_new(ok, "content", content(schema));
    if (!strcmp(status, "201"))
        json_object_set_new(ok, "headers",
                            json_pack("{s:{s:s, s:{s:s}}}", "Location", "description",
                                      "The new user's URL", "schema", "type", "string"));
    json_object_set_new(out, status, ok);
    char codes[64];
    snprintf(codes, sizeof(codes), "%s 503", errors);
    for (char *save = NULL, *c = strtok_r(codes, " ", &save); c; c = strtok_r(NULL, " ", &save))
        json_object_set_new(
            out, c, json_pack("{s:s, s:o}", "description", reason(c), "content", content("Error")));
    return out;
}

/* One operation. `body` names the request schema or is NULL. Takes `resp`. */
static json_t *operation(const char *summary, const char *description, bool secured,
                         const char *body, json_t *resp)
{
    json_t *op = json_pack("{s:s, s:s, s:[s], s:o}", "summary", summary, "description", description,
                           "tags", "users", "responses", resp);
    if (secured)
        json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearerAuth"));
    if (body)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b, s:o}", "required", 1, "content", content(body)));
    return op;
}

static json_t *idempotency_header(void)
{
    return json_pack("{s:s, s:s, s:b, s:s, s:{s:s, s:i, s:i}}", "name", "Idempotency-Key", "in",
                     "header", "required", 0, "description",
                     "Makes the create safe to retry: a retry within 24 h gets the first answer",
                     "schema", "type", "string", "minLength", 1, "maxLength", 255);
}

static json_t *string_prop(const char *description, int min, int max, const char *pattern,
                           const char *format)
{
    json_t *p = json_pack("{s:s, s:s}", "type", "string", "description", description);
    if (min >= 0)
        json_object_set_new(p, "minLength", json_integer(min));
    if (max >= 0)
        json_object_set_new(p, "maxLength", json_integer(max));
    if (pattern)
        json_object_set_new(p, "pattern", json_string(pattern));
    if (format)
        json_object_set_new(p, "format", json_string(format));
    return p;
}

static json_t *nullable_name(const char *description)
{
    json_t *p = string_prop(description, -1, 100, NULL, NULL);
    json_object_set_new(p, "nullable", json_true());
    return p;
}

static json_t *schemas(void)
{
    json_t *username = string_prop("3 to 30 letters, digits, '_' and '.'; unique whatever the "
                                   "case",
                                   3, 30, "^[A-Za-z0-9_.]{3,30}$", NULL);
    json_t *email = string_prop("unique whatever the case", -1, 254, NULL, "email");
    json_t *password = string_prop("8 to 64 characters", 8, 64, NULL, "password");
    json_t *role = json_pack("{s:s, s:[s, s]}", "type", "string", "enum", "user", "admin");
    json_t *out = json_object();

    json_object_set_new(
        out, "User",
        json_pack("{s:s, s:b, s:[s, s, s, s, s, s, s, s], s:{s:{s:s, s:s}, s:O, s:O, s:o, "
                  "s:o, s:O, s:{s:s, s:s}, s:{s:s, s:s}}}",
                  "type", "object", "additionalProperties", 0, "required", "id", "username",
                  "email", "firstName", "lastName", "role", "createdAt", "updatedAt", "properties",
                  "id", "type", "string", "format", "uuid", "username", username, "email", email,
                  "firstName", nullable_name("given name"), "lastName",
                  nullable_name("family name"), "role", role, "createdAt", "type", "string",
                  "format", "date-time", "updatedAt", "type", "string", "format", "date-time"));
    json_object_set_new(
        out, "AuthTokens",
        json_pack("{s:s, s:[s, s, s, s, s], s:{s:{s:s, s:s}, s:{s:s}, s:{s:s, s:s}, "
                  "s:{s:s, s:s}, s:{s:s, s:s}}}",
                  "type", "object", "required", "userId", "username", "accessToken", "refreshToken",
                  "expiresIn", "properties", "userId", "type", "string", "format", "uuid",
                  "username", "type", "string", "accessToken", "type", "string", "description",
                  "JWT bearer token (HS256)", "refreshToken", "type", "string", "description",
                  "single use: each refresh returns the next one", "expiresIn", "type", "integer",
                  "description", "seconds until the access token expires"));
    json_object_set_new(
        out, "UserList",
        json_pack("{s:s, s:[s, s, s, s], s:{s:{s:s, s:i}, s:{s:s, s:i}, s:{s:s, s:i, s:i}, "
                  "s:{s:s, s:o}}}",
                  "type", "object", "required", "total", "page", "limit", "users", "properties",
                  "total", "type", "integer", "minimum", 0, "page", "type", "integer", "minimum", 1,
                  "limit", "type", "integer", "minimum", 1, "maximum", 100, "users", "type",
                  "array", "items", ref("User")));
    json_object_set_new(out, "RegisterRequest",
                        json_pack("{s:s, s:b, s:[s, s, s], s:{s:O, s:O, s:O, s:o, s:o}}", "type",
                                  "object", "additionalProperties", 0, "required", "username",
                                  "email", "password", "properties", "username", username, "email",
                                  email, "password", password, "firstName",
                                  nullable_name("given name"), "lastName",
                                  nullable_name("family name")));
    json_object_set_new(out, "CreateUserRequest",
                        json_pack("{s:s, s:b, s:[s, s, s], s:{s:O, s:O, s:O, s:o, s:o, s:O}}",
                                  "type", "object", "additionalProperties", 0, "required",
                                  "username", "email", "password", "properties", "username",
                                  username, "email", email, "password", password, "firstName",
                                  nullable_name("given name"), "lastName",
                                  nullable_name("family name"), "role", role));
    json_object_set_new(
        out, "UpdateUserRequest",
        json_pack("{s:s, s:b, s:s, s:{s:O, s:O, s:o, s:o, s:O}}", "type", "object",
                  "additionalProperties", 0, "description",
                  "Only the fields to change. role: admins only. A new password ends every "
                  "session of the user (refresh tokens revoked).",
                  "properties", "email", email, "password", password, "firstName",
                  nullable_name("given name; null clears it"), "lastName",
                  nullable_name("family name; null clears it"), "role", role));
    json_object_set_new(
        out, "LoginRequest",
        json_pack("{s:s, s:b, s:s, s:[s], s:{s:{s:s}, s:{s:s}, s:{s:s}}}", "type", "object",
                  "additionalProperties", 0, "description",
                  "email or username (either field accepts either), and the password", "required",
                  "password", "properties", "email", "type", "string", "username", "type", "string",
                  "password", "type", "string"));
    json_object_set_new(out, "RefreshRequest",
                        json_pack("{s:s, s:b, s:[s], s:{s:{s:s}}}", "type", "object",
                                  "additionalProperties", 0, "required", "refreshToken",
                                  "properties", "refreshToken", "type", "string"));
    json_object_set_new(
        out, "Error",
        json_pack("{s:s, s:[s], s:{s:{s:s, s:[s, s], s:{s:{s:s}, s:{s:s}, s:{s:s, s:{s:s}}}}}}",
                  "type", "object", "required", "error", "properties", "error", "type", "object",
                  "required", "code", "message", "properties", "code", "type", "string", "message",
                  "type", "string", "fields", "type", "object", "additionalProperties", "type",
                  "string"));
    json_decref(username);
    json_decref(email);
    json_decref(password);
    json_decref(role);
    return out;
}

json_t *openapi_fragment(void)
{
    json_t *paths = json_object();
    json_t *user_id = json_pack("[{s:s, s:s, s:b, s:{s:s, s:s}}]", "name", "userId", "in", "path",
                                "required", 1, "schema", "type", "string", "format", "uuid");

    json_t *reg =
        operation("Register",
                  "Creates an account with role user and starts a session. The "
                  "before_user_register Lua hook may veto or change it.",
                  false, "RegisterRequest",
                  responses("201", "Created; the session's tokens", "AuthTokens", "400 409 415"));
    json_object_set_new(reg, "parameters", json_pack("[o]", idempotency_header()));
    json_object_set_new(paths, "/v1/auth/register", json_pack("{s:o}", "post", reg));
    json_object_set_new(
        paths, "/v1/auth/login",
        json_pack("{s:o}", "post",
                  operation("Log in",
                            "By email or username. The same 401 for an unknown account and a "
                            "wrong password; 429 after login_limit failures per account.",
                            false, "LoginRequest",
                            responses("200", "A new session's tokens", "AuthTokens",
                                      "400 401 415 429"))));
    json_object_set_new(
        paths, "/v1/auth/refresh",
        json_pack("{s:o}", "post",
                  operation("Refresh the access token",
                            "Rotates the refresh token: the presented one stops working. "
                            "Presenting a revoked one revokes its whole session.",
                            false, "RefreshRequest",
                            responses("200", "New tokens", "AuthTokens", "400 401 415"))));
    json_object_set_new(
        paths, "/v1/auth/logout",
        json_pack("{s:o}", "post",
                  operation("Log out", "Revokes the session the refresh token belongs to.", true,
                            "RefreshRequest",
                            responses("204", "Logged out", NULL, "400 401 415"))));
    json_object_set_new(paths, "/v1/users/me",
                        json_pack("{s:o}", "get",
                                  operation("The caller", "The caller's own account.", true, NULL,
                                            responses("200", "The caller", "User", "401"))));

    json_t *list =
        operation("List users (admin)",
                  "Paginated; search matches username, email and names, "
                  "case-insensitively.",
                  true, NULL, responses("200", "A page of users", "UserList", "400 401 403"));
    json_object_set_new(
        list, "parameters",
        json_pack("[{s:s, s:s, s:{s:s, s:i, s:i}}, {s:s, s:s, s:{s:s, s:i, s:i, s:i}},"
                  " {s:s, s:s, s:{s:s, s:i}}]",
                  "name", "page", "in", "query", "schema", "type", "integer", "minimum", 1,
                  "default", 1, "name", "limit", "in", "query", "schema", "type", "integer",
                  "minimum", 1, "maximum", 100, "default", 10, "name", "search", "in", "query",
                  "schema", "type", "string", "maxLength", 200));
    json_t *create =
        operation("Create a user (admin)", "Any role; no session is started.", true,
                  "CreateUserRequest", responses("201", "Created", "User", "400 401 403 409 415"));
    json_object_set_new(create, "parameters", json_pack("[o]", idempotency_header()));
    json_object_set_new(paths, "/v1/users", json_pack("{s:o, s:o}", "get", list, "post", create));

    json_t *get = operation("Get a user", "The user themself or an admin.", true, NULL,
                            responses("200", "The user", "User", "401 403 404"));
    json_t *put =
        operation("Update a user",
                  "The user themself or an admin; role by admins only. The "
                  "before_user_update Lua hook may veto or change it.",
                  true, "UpdateUserRequest",
                  responses("200", "The updated user", "User", "400 401 403 404 409 415"));
    json_t *del =
        operation("Delete a user", "The user themself or an admin. Ends every session of the user.",
                  true, NULL, responses("204", "Deleted", NULL, "401 403 404"));
    json_object_set_new(paths, "/v1/users/{userId}",
                        json_pack("{s:O, s:o, s:o, s:o}", "parameters", user_id, "get", get, "put",
                                  put, "delete", del));
    json_decref(user_id);
    return json_pack("{s:o, s:{s:o}}", "paths", paths, "components", "schemas", schemas());
}
