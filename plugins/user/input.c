/*
 * input.c — a user body as the handlers use it. The rules live in schemas.json: the host has
 * validated a request's body by them before the handler runs, and a value a Lua hook
 * changed is validated by the same schema here (input_check), so there is one set of
 * rules, the one /openapi.json shows.
 */
#include <string.h>

#include "user.h"

static const struct field {
    const char *name;
    unsigned bit;
    size_t offset;
} fields_known[] = {
    {"username", IN_USERNAME, offsetof(user_input_t, username)},
    {"email", IN_EMAIL, offsetof(user_input_t, email)},
    {"password", IN_PASSWORD, offsetof(user_input_t, password)},
    {"firstName", IN_FIRST_NAME, offsetof(user_input_t, first_name)},
    {"lastName", IN_LAST_NAME, offsetof(user_input_t, last_name)},
    {"role", IN_ROLE, offsetof(user_input_t, role)},
};
#define NFIELDS (sizeof(fields_known) / sizeof(fields_known[0]))

static const char **slot(user_input_t *in, const struct field *f)
{
    return (const char **)((char *)in + f->offset);
}

void input_read(px_req_t *req, const json_t *body, user_input_t *in)
{
    memset(in, 0, sizeof(*in));
    for (size_t i = 0; i < NFIELDS; i++) {
        const struct field *f = &fields_known[i];
        json_t *v = json_object_get(body, f->name);
        if (!v)
            continue;
        in->present |= f->bit;
        *slot(in, f) = px_req_strdup(req, json_string_value(v)); /* null: NULL, clear it */
    }
}

int input_check(px_req_t *req, const char *schema, const json_t *value, user_input_t *in)
{
    json_t *fields;
    int rc = px_schema_check(user_plugin, schema, value, &fields);
    if (rc == PX_EINVAL) {
        px_log(user_plugin, PX_LOG_WARN, "a Lua hook left the %s invalid; answering 400", schema);
        user_invalid(req, fields);
        return PX_DONE;
    }
    if (!rc)
        input_read(req, value, in);
    return rc;
}

json_t *input_to_json(const user_input_t *in, unsigned which, unsigned with_nulls)
{
    json_t *out = json_object();
    for (size_t i = 0; i < NFIELDS; i++) {
        const struct field *f = &fields_known[i];
        if (!(which & f->bit))
            continue;
        const char *v = *slot((user_input_t *)in, f);
        if (in->present & f->bit)
            json_object_set_new(out, f->name, v ? json_string(v) : json_null());
        else if (with_nulls & f->bit)
            json_object_set_new(out, f->name, json_null());
    }
    return out;
}
