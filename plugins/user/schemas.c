/*
 * schemas.c — what the user plugin's bodies look like, once: the host validates requests by
 * these schemas before a handler runs (px_route_add's request_schema), the handlers
 * validate what a Lua hook gave back by the same ones (px_schema_check), and GET
 * /openapi.json serves them as "user.User" and so on. API.md, "Users and auth".
 *
 * Lengths count characters. The field rules are components of their own (Username, Email,
 * Password, PersonName, Role) so the three account bodies cannot drift apart.
 */
#include "user.h"

#define REF(name) "{\"$ref\": \"#/components/schemas/" name "\"}"

static const struct {
    const char *name, *json;
} schemas[] = {
    {"Username", "{\"type\": \"string\", \"pattern\": \"^[A-Za-z0-9_.]{3,30}$\","
                 " \"description\": \"3 to 30 letters, digits, '_' and '.'; unique whatever the "
                 "case\"}"},
    /* format email: a dot-atom local part, a domain of two or more labels (host rule). */
    {"Email", "{\"type\": \"string\", \"format\": \"email\", \"maxLength\": 254,"
              " \"description\": \"unique whatever the case\"}"},
    {"Password", "{\"type\": \"string\", \"format\": \"password\", \"minLength\": 8,"
                 " \"maxLength\": 64}"},
    /* Any Unicode but control characters; null clears it. */
    {"PersonName", "{\"type\": \"string\", \"nullable\": true, \"maxLength\": 100,"
                   " \"pattern\": \"^[^\\\\x00-\\\\x1f\\\\x7f]*$\"}"},
    {"Role", "{\"type\": \"string\", \"enum\": [\"user\", \"admin\"]}"},
    {"User",
     "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"id\", "
     "\"username\", \"email\", \"firstName\", \"lastName\", \"role\", \"createdAt\", "
     "\"updatedAt\"], \"properties\": {\"id\": {\"type\": \"string\", \"format\": \"uuid\"}, "
     "\"username\": " REF("Username") ", \"email\": " REF("Email") ", \"firstName\": "
     REF("PersonName") ", \"lastName\": " REF("PersonName") ", \"role\": " REF("Role") ", "
     "\"createdAt\": {\"type\": \"string\", \"format\": \"date-time\"}, \"updatedAt\": "
     "{\"type\": \"string\", \"format\": \"date-time\"}}}"},
    {"AuthTokens",
     "{\"type\": \"object\", \"required\": [\"userId\", \"username\", \"accessToken\", "
     "\"refreshToken\", \"expiresIn\"], \"properties\": {\"userId\": {\"type\": \"string\", "
     "\"format\": \"uuid\"}, \"username\": {\"type\": \"string\"}, \"accessToken\": {\"type\": "
     "\"string\", \"description\": \"JWT bearer token (HS256)\"}, \"refreshToken\": {\"type\": "
     "\"string\", \"description\": \"single use: each refresh returns the next one\"}, "
     "\"expiresIn\": {\"type\": \"integer\", \"description\": \"seconds until the access "
     "token expires\"}}}"},
    {"UserList",
     "{\"type\": \"object\", \"required\": [\"total\", \"page\", \"limit\", \"users\"], "
     "\"properties\": {\"total\": {\"type\": \"integer\", \"minimum\": 0}, \"page\": {\"type\": "
     "\"integer\", \"minimum\": 1}, \"limit\": {\"type\": \"integer\", \"minimum\": 1, "
     "\"maximum\": 100}, \"users\": {\"type\": \"array\", \"items\": " REF("User") "}}}"},
    {"RegisterRequest",
     "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"username\", "
     "\"email\", \"password\"], \"properties\": {\"username\": " REF("Username") ", \"email\": "
     REF("Email") ", \"password\": " REF("Password") ", \"firstName\": " REF("PersonName")
     ", \"lastName\": " REF("PersonName") "}}"},
    {"CreateUserRequest",
     "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"username\", "
     "\"email\", \"password\"], \"properties\": {\"username\": " REF("Username") ", \"email\": "
     REF("Email") ", \"password\": " REF("Password") ", \"firstName\": " REF("PersonName")
     ", \"lastName\": " REF("PersonName") ", \"role\": " REF("Role") "}}"},
    {"UpdateUserRequest",
     "{\"type\": \"object\", \"additionalProperties\": false, \"description\": \"Only the "
     "fields to change. role: admins only. A new password ends every session of the user.\", "
     "\"properties\": {\"email\": " REF("Email") ", \"password\": " REF("Password")
     ", \"firstName\": " REF("PersonName") ", \"lastName\": " REF("PersonName") ", \"role\": "
     REF("Role") "}}"},
    {"LoginRequest",
     "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"password\"], "
     "\"description\": \"email or username (either field accepts either), and the password\", "
     "\"properties\": {\"email\": {\"type\": \"string\", \"minLength\": 1}, \"username\": "
     "{\"type\": \"string\", \"minLength\": 1}, \"password\": {\"type\": \"string\", "
     "\"minLength\": 1}}}"},
    {"RefreshRequest",
     "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"refreshToken\"], "
     "\"properties\": {\"refreshToken\": {\"type\": \"string\"}}}"},
};

int schemas_register(px_plugin_t *self)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof(schemas) / sizeof(schemas[0]); i++)
        rc = px_schema(self, schemas[i].name, schemas[i].json);
    return rc;
}
