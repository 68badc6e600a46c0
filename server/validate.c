/*
 * validate.c — the host's JSON Schema validator: the subset OpenAPI 3.0 uses, compiled
 * once when a plugin registers a schema (px_schema) or a route's parameters
 * (px_route_add), and walked for each request a route_spec.c check hands it.
 *
 * Two ideas to hold:
 *  - Compile, then link. A schema is turned into a tree of nodes at once, so a keyword the
 *    validator cannot check (oneOf, multipleOf...) or a pattern it cannot compile is an init
 *    error naming the plugin, never a check silently skipped while the served document
 *    promises it. "$ref"s are kept by name and resolved when the plugin's init is over,
 *    since schemas may refer to each other in any order (and to themselves).
 *  - One reason per field, all fields at once. A failure is reported under the path of the
 *    value that failed ("email", "address.city", "tags[2]", "body" for the whole), and the
 *    walk goes on, so a client learns about every mistake in one answer (API.md).
 *
 * What a string must look like beyond its length (the formats, and patterns, which are
 * ECMA-262 run on libc's POSIX regcomp) is validate_format.c's.
 */
#include "validate.h"

#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "panthera.h"
#include "util.h"

enum {
    T_NULL = 1 << 0,
    T_BOOLEAN = 1 << 1,
    T_INTEGER = 1 << 2,
    T_NUMBER = 1 << 3,
    T_STRING = 1 << 4,
    T_ARRAY = 1 << 5,
    T_OBJECT = 1 << 6,
};

enum format { F_NONE, F_EMAIL, F_UUID, F_DATE, F_DATE_TIME };

struct validate_node {
    struct validate_node *next; /* every node of a registry, for link and free */
    unsigned type;              /* one T_* bit, 0 for any */
    bool nullable;
    json_t *enum_values;
    int64_t min_length, max_length; /* -1: none */
    bool has_pattern;
    regex_t pattern;
    char *pattern_text;
    bool has_min, has_max, exclusive_min, exclusive_max;
    double min, max;
    int format;
    size_t nprops;
    char **prop_names;
    struct validate_node **props;
    size_t nrequired;
    char **required;
    bool no_additional;
    struct validate_node *additional; /* a schema for the other properties, or NULL */
    struct validate_node *items;
    int64_t min_items, max_items;
    char *ref; /* a "$ref" node: the name, and the node once linked */
    const struct validate_node *target;
};

struct validate_registry {
    size_t n;
    char **names;
    json_t **docs;
    validate_node_t **roots;
    validate_node_t *nodes;
};

validate_registry_t *validate_registry_new(void)
{
    return xcalloc(1, sizeof(validate_registry_t));
}

static void node_free(validate_node_t *n)
{
    json_decref(n->enum_values);
    if (n->has_pattern)
        regfree(&n->pattern);
    free(n->pattern_text);
    for (size_t i = 0; i < n->nprops; i++)
        free(n->prop_names[i]);
    free(n->prop_names);
    free(n->props);
    for (size_t i = 0; i < n->nrequired; i++)
        free(n->required[i]);
    free(n->required);
    free(n->ref);
    free(n);
}

void validate_registry_free(validate_registry_t *reg)
{
    if (!reg)
        return;
    for (validate_node_t *n = reg->nodes, *next; n; n = next) {
        next = n->next;
        node_free(n);
    }
    for (size_t i = 0; i < reg->n; i++) {
        free(reg->names[i]);
        json_decref(reg->docs[i]);
    }
    free(reg->names);
    free(reg->docs);
    free(reg->roots);
    free(reg);
}

/* ---- compiling ---- */

static const char *const doc_keywords[] = {
    "description", "title", "example", "default", "readOnly", "writeOnly", "deprecated",
    "externalDocs", "xml", NULL,
};

static bool is_doc_keyword(const char *k)
{
    if (!strncmp(k, "x-", 2))
        return true;
    for (const char *const *d = doc_keywords; *d; d++)
        if (!strcmp(*d, k))
            return true;
    return false;
}

static bool get_count(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = json_integer_value(v);
    return true;
}

static validate_node_t *compile(validate_registry_t *reg, const json_t *s, const char *where,
                                char *err, size_t errlen);

#define FAIL(...)                                                                            \
    do {                                                                                     \
        snprintf(err, errlen, __VA_ARGS__);                                                  \
        return NULL;                                                                         \
    } while (0)

#define KFAIL(...)                                                                           \
    do {                                                                                     \
        snprintf(err, errlen, __VA_ARGS__);                                                  \
        return -1;                                                                           \
    } while (0)

/* One keyword of a schema into `n`: 0, or -1 with the reason in `err`. */
static int keyword(validate_registry_t *reg, validate_node_t *n, const char *k,
                                json_t *v, const char *where, char *err, size_t errlen)
{
    if (!strcmp(k, "type")) {
        static const struct {
            const char *name;
            unsigned bit;
        } types[] = {{"null", T_NULL},     {"boolean", T_BOOLEAN}, {"integer", T_INTEGER},
                     {"number", T_NUMBER}, {"string", T_STRING},   {"array", T_ARRAY},
                     {"object", T_OBJECT}};
        const char *t = json_string_value(v);
        for (size_t i = 0; t && i < sizeof(types) / sizeof(types[0]); i++)
            if (!strcmp(types[i].name, t))
                n->type = types[i].bit;
        if (!n->type || n->type == T_NULL)
            KFAIL("%s: \"type\" must be one of boolean, integer, number, string, array, object "
                 "(OpenAPI 3.0 writes null as \"nullable\": true)", where);
    } else if (!strcmp(k, "nullable")) {
        if (!json_is_boolean(v))
            KFAIL("%s: \"nullable\" must be true or false", where);
        n->nullable = json_is_true(v);
    } else if (!strcmp(k, "enum")) {
        if (!json_is_array(v) || json_array_size(v) == 0)
            KFAIL("%s: \"enum\" must be a non-empty array", where);
        n->enum_values = json_incref(v);
    } else if (!strcmp(k, "minLength") || !strcmp(k, "maxLength")) {
        if (!get_count(v, k[1] == 'i' ? &n->min_length : &n->max_length))
            KFAIL("%s: \"%s\" must be a whole number of at least 0", where, k);
    } else if (!strcmp(k, "minItems") || !strcmp(k, "maxItems")) {
        if (!get_count(v, k[1] == 'i' ? &n->min_items : &n->max_items))
            KFAIL("%s: \"%s\" must be a whole number of at least 0", where, k);
    } else if (!strcmp(k, "minimum") || !strcmp(k, "maximum")) {
        if (!json_is_number(v))
            KFAIL("%s: \"%s\" must be a number", where, k);
        if (k[1] == 'i') {
            n->has_min = true;
            n->min = json_number_value(v);
        } else {
            n->has_max = true;
            n->max = json_number_value(v);
        }
    } else if (!strcmp(k, "exclusiveMinimum") || !strcmp(k, "exclusiveMaximum")) {
        if (!json_is_boolean(v))
            KFAIL("%s: \"%s\" must be true or false in OpenAPI 3.0", where, k);
        *(!strcmp(k, "exclusiveMinimum") ? &n->exclusive_min : &n->exclusive_max) = json_is_true(v);
    } else if (!strcmp(k, "pattern")) {
        if (!json_is_string(v))
            KFAIL("%s: \"pattern\" must be a string", where);
        char why[256];
        char *ere = validate_pattern_ere(json_string_value(v), why, sizeof(why));
        if (!ere)
            KFAIL("%s: %s", where, why);
        int rc = regcomp(&n->pattern, ere, REG_EXTENDED | REG_NOSUB);
        free(ere);
        if (rc) {
            regerror(rc, NULL, why, sizeof(why));
            KFAIL("%s: pattern %s: %s", where, json_string_value(v), why);
        }
        n->has_pattern = true;
        n->pattern_text = xstrdup(json_string_value(v));
    } else if (!strcmp(k, "format")) {
        const char *f = json_string_value(v);
        if (!f)
            KFAIL("%s: \"format\" must be a string", where);
        n->format = !strcmp(f, "email")       ? F_EMAIL
                    : !strcmp(f, "uuid")      ? F_UUID
                    : !strcmp(f, "date")      ? F_DATE
                    : !strcmp(f, "date-time") ? F_DATE_TIME
                                              : F_NONE;
    } else if (!strcmp(k, "properties")) {
        if (!json_is_object(v))
            KFAIL("%s: \"properties\" must be an object", where);
        n->nprops = json_object_size(v);
        n->prop_names = xcalloc(n->nprops ? n->nprops : 1, sizeof(char *));
        n->props = xcalloc(n->nprops ? n->nprops : 1, sizeof(validate_node_t *));
        size_t i = 0;
        const char *name;
        json_t *sub;
        json_object_foreach(v, name, sub)
        {
            char inner[200];
            snprintf(inner, sizeof(inner), "%s.properties.%s", where, name);
            n->prop_names[i] = xstrdup(name);
            n->props[i] = compile(reg, sub, inner, err, errlen);
            if (!n->props[i++])
                return -1;
        }
    } else if (!strcmp(k, "required")) {
        if (!json_is_array(v))
            KFAIL("%s: \"required\" must be an array of names", where);
        n->required = xcalloc(json_array_size(v) + 1, sizeof(char *));
        size_t i;
        json_t *name;
        json_array_foreach(v, i, name)
        {
            if (!json_is_string(name))
                KFAIL("%s: \"required\" must be an array of names", where);
            n->required[n->nrequired++] = xstrdup(json_string_value(name));
        }
    } else if (!strcmp(k, "additionalProperties")) {
        if (json_is_boolean(v)) {
            n->no_additional = json_is_false(v);
        } else {
            char inner[200];
            snprintf(inner, sizeof(inner), "%s.additionalProperties", where);
            n->additional = compile(reg, v, inner, err, errlen);
            if (!n->additional)
                return -1;
        }
    } else if (!strcmp(k, "items")) {
        char inner[200];
        snprintf(inner, sizeof(inner), "%s.items", where);
        n->items = compile(reg, v, inner, err, errlen);
        if (!n->items)
            return -1;
    } else if (!is_doc_keyword(k)) {
        KFAIL("%s: keyword \"%s\" is not one the host validates (see px_schema in panthera.h)",
             where, k);
    }
    return 0;
}

static validate_node_t *compile(validate_registry_t *reg, const json_t *s, const char *where,
                                char *err, size_t errlen)
{
    if (!json_is_object(s))
        FAIL("%s: a schema must be a JSON object", where);
    validate_node_t *n = xcalloc(1, sizeof(*n));
    n->min_length = n->max_length = n->min_items = n->max_items = -1;
    n->next = reg->nodes;
    reg->nodes = n; /* owned from here on, freed with the registry even on failure */
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        const char *text = json_string_value(ref);
        const char *prefix = "#/components/schemas/";
        if (!text || strncmp(text, prefix, strlen(prefix)) || !text[strlen(prefix)])
            FAIL("%s: \"$ref\" must be \"#/components/schemas/NAME\"", where);
        n->ref = xstrdup(text + strlen(prefix));
        return n; /* OpenAPI 3.0: the siblings of a $ref are ignored */
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)s, k, v)
    {
        if (keyword(reg, n, k, v, where, err, errlen))
            return NULL;
    }
    /* Enum values of a scalar type must pass the schema's own checks, or no value could. */
    if (n->enum_values && (n->type & (T_BOOLEAN | T_INTEGER | T_NUMBER | T_STRING))) {
        size_t i;
        json_t *e;
        json_array_foreach(n->enum_values, i, e)
        {
            json_t *fields = json_object();
            validate_node_t plain = *n;
            plain.enum_values = NULL;
            int bad = e->type == JSON_NULL ? !n->nullable : validate_value(&plain, e, "", fields);
            json_decref(fields);
            if (bad)
                FAIL("%s: enum value %zu does not fit the schema's own type and bounds", where, i);
        }
    }
    return n;
}

int validate_registry_add(validate_registry_t *reg, const char *name, json_t *schema, char *err,
                          size_t errlen)
{
    if (!name || !*name || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_.-") != strlen(name)) {
        snprintf(err, errlen, "schema name \"%s\" must be made of [A-Za-z0-9_.-]",
                 name ? name : "(null)");
        return PX_EINVAL;
    }
    if (validate_registry_get(reg, name)) {
        snprintf(err, errlen, "schema \"%s\" is registered twice", name);
        return PX_EEXIST;
    }
    char where[160];
    snprintf(where, sizeof(where), "schema %s", name);
    validate_node_t *root = compile(reg, schema, where, err, errlen);
    if (!root)
        return PX_EINVAL;
    reg->names = xrealloc(reg->names, (reg->n + 1) * sizeof(char *));
    reg->docs = xrealloc(reg->docs, (reg->n + 1) * sizeof(json_t *));
    reg->roots = xrealloc(reg->roots, (reg->n + 1) * sizeof(validate_node_t *));
    reg->names[reg->n] = xstrdup(name);
    reg->docs[reg->n] = json_incref(schema);
    reg->roots[reg->n++] = root;
    return 0;
}

const validate_node_t *validate_registry_compile(validate_registry_t *reg, const json_t *schema,
                                                 char *err, size_t errlen)
{
    return compile(reg, schema, "schema", err, errlen);
}

const validate_node_t *validate_registry_get(const validate_registry_t *reg, const char *name)
{
    for (size_t i = 0; reg && i < reg->n; i++)
        if (!strcmp(reg->names[i], name))
            return reg->roots[i];
    return NULL;
}

int validate_registry_link(validate_registry_t *reg, const validate_registry_t *fallback,
                           char *err, size_t errlen)
{
    for (validate_node_t *n = reg->nodes; n; n = n->next) {
        if (!n->ref || n->target)
            continue;
        n->target = validate_registry_get(reg, n->ref);
        if (!n->target)
            n->target = validate_registry_get(fallback, n->ref);
        if (!n->target) {
            snprintf(err, errlen, "\"$ref\": \"#/components/schemas/%s\" names no schema", n->ref);
            return PX_EINVAL;
        }
    }
    /* A chain of bare $refs that comes back to itself would never reach a check. */
    for (validate_node_t *n = reg->nodes; n; n = n->next) {
        const validate_node_t *t = n;
        size_t hops = 0;
        while (t->ref && hops++ <= reg->n + 1)
            t = t->target;
        if (t->ref) {
            snprintf(err, errlen, "\"$ref\": \"#/components/schemas/%s\" is a loop of $refs",
                     n->ref);
            return PX_EINVAL;
        }
    }
    return 0;
}

size_t validate_registry_count(const validate_registry_t *reg)
{
    return reg ? reg->n : 0;
}

const char *validate_registry_name(const validate_registry_t *reg, size_t i)
{
    return reg->names[i];
}

json_t *validate_registry_json(const validate_registry_t *reg, size_t i)
{
    return reg->docs[i];
}

/* ---- validating ---- */

static void fail(json_t *fields, const char *path, int *count, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(json_t *fields, const char *path, int *count, const char *fmt, ...)
{
    (*count)++;
    const char *key = *path ? path : "body";
    if (json_object_get(fields, key))
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object_set_new(fields, key, json_string(msg));
}

static const char *type_reason(unsigned type)
{
    switch (type) {
    case T_BOOLEAN: return "must be true or false";
    case T_INTEGER: return "must be a whole number";
    case T_NUMBER: return "must be a number";
    case T_STRING: return "must be a string";
    case T_ARRAY: return "must be an array";
    case T_OBJECT: return "must be an object";
    default: return "has the wrong type";
    }
}

static bool type_matches(unsigned type, const json_t *v)
{
    switch (type) {
    case 0: return true;
    case T_BOOLEAN: return json_is_boolean(v);
    case T_INTEGER:
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
                fabs(json_real_value(v)) < 9.007199254740992e15);
    case T_NUMBER: return json_is_number(v);
    case T_STRING: return json_is_string(v);
    case T_ARRAY: return json_is_array(v);
    case T_OBJECT: return json_is_object(v);
    default: return false;
    }
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

static void describe_enum(const json_t *values, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    size_t i;
    json_t *e;
    json_array_foreach(values, i, e)
    {
        char *text = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
        int n = snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", text ? text : "?");
        free(text);
        if (n < 0 || (size_t)n >= outlen - used)
            return;
        used += (size_t)n;
    }
}

static void check_string(const validate_node_t *n, const json_t *v, const char *path,
                         json_t *fields, int *count)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len) {
        fail(fields, path, count, "must not contain NUL characters");
        return;
    }
    if (n->min_length >= 0 || n->max_length >= 0) {
        size_t chars = utf8_chars(s, len);
        bool short_ = n->min_length >= 0 && chars < (size_t)n->min_length;
        bool long_ = n->max_length >= 0 && chars > (size_t)n->max_length;
        if ((short_ || long_) && n->min_length >= 0 && n->max_length >= 0)
            fail(fields, path, count, "must be %lld to %lld characters",
                 (long long)n->min_length, (long long)n->max_length);
        else if (short_)
            fail(fields, path, count, "must be at least %lld characters",
                 (long long)n->min_length);
        else if (long_)
            fail(fields, path, count, "must be at most %lld characters",
                 (long long)n->max_length);
    }
    if (n->has_pattern && regexec(&n->pattern, s, 0, NULL, 0) != 0)
        fail(fields, path, count, "must match the pattern %s", n->pattern_text);
    bool ok = true;
    const char *what = NULL;
    switch (n->format) {
    case F_EMAIL: ok = validate_is_email(s, len), what = "must be a valid email address"; break;
    case F_UUID: ok = validate_is_uuid(s, len), what = "must be a uuid"; break;
    case F_DATE: ok = validate_is_date(s, len), what = "must be a date (YYYY-MM-DD)"; break;
    case F_DATE_TIME:
        ok = validate_is_date_time(s, len), what = "must be an RFC 3339 date-time";
        break;
    default: break;
    }
    if (!ok)
        fail(fields, path, count, "%s", what);
}

static void check_number(const validate_node_t *n, const json_t *v, const char *path,
                         json_t *fields, int *count)
{
    double x = json_number_value(v);
    if (n->has_min && (x < n->min || (n->exclusive_min && x == n->min)))
        fail(fields, path, count, "must be %s %g", n->exclusive_min ? "more than" : "at least",
             n->min);
    if (n->has_max && (x > n->max || (n->exclusive_max && x == n->max)))
        fail(fields, path, count, "must be %s %g", n->exclusive_max ? "less than" : "at most",
             n->max);
}

static void check(const validate_node_t *n, const json_t *v, const char *path, json_t *fields,
                  int *count);

static void check_object(const validate_node_t *n, const json_t *v, const char *path,
                         json_t *fields, int *count)
{
    char sub[512];
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)v, key, value)
    {
        snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", key);
        const validate_node_t *prop = NULL;
        for (size_t i = 0; i < n->nprops && !prop; i++)
            if (!strcmp(n->prop_names[i], key))
                prop = n->props[i];
        if (prop)
            check(prop, value, sub, fields, count);
        else if (n->additional)
            check(n->additional, value, sub, fields, count);
        else if (n->no_additional)
            fail(fields, sub, count, "is not an accepted field");
    }
    for (size_t i = 0; i < n->nrequired; i++) {
        if (json_object_get(v, n->required[i]))
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", n->required[i]);
        fail(fields, sub, count, "is required");
    }
}

static void check_array(const validate_node_t *n, const json_t *v, const char *path,
                        json_t *fields, int *count)
{
    size_t size = json_array_size(v);
    if (n->min_items >= 0 && size < (size_t)n->min_items)
        fail(fields, path, count, "must have at least %lld items", (long long)n->min_items);
    if (n->max_items >= 0 && size > (size_t)n->max_items) {
        /* Too long: say so, and do not walk a huge array item by item. */
        fail(fields, path, count, "must have at most %lld items", (long long)n->max_items);
        return;
    }
    char sub[512];
    for (size_t i = 0; n->items && i < size; i++) {
        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
        check(n->items, json_array_get(v, i), sub, fields, count);
    }
}

static void check(const validate_node_t *n, const json_t *v, const char *path, json_t *fields,
                  int *count)
{
    while (n->ref)
        n = n->target;
    if (json_is_null(v)) {
        if (!n->nullable && n->type)
            fail(fields, path, count, "must not be null");
        return;
    }
    if (!type_matches(n->type, v)) {
        fail(fields, path, count, "%s", type_reason(n->type));
        return;
    }
    if (n->enum_values) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(n->enum_values) && !found; i++)
            found = json_equal(json_array_get(n->enum_values, i), (json_t *)v);
        if (!found) {
            char list[200];
            describe_enum(n->enum_values, list, sizeof(list));
            fail(fields, path, count, "must be one of %s", list);
            return;
        }
    }
    switch (json_typeof(v)) {
    case JSON_STRING: check_string(n, v, path, fields, count); break;
    case JSON_INTEGER:
    case JSON_REAL: check_number(n, v, path, fields, count); break;
    case JSON_OBJECT: check_object(n, v, path, fields, count); break;
    case JSON_ARRAY: check_array(n, v, path, fields, count); break;
    default: break;
    }
}

int validate_value(const validate_node_t *node, const json_t *value, const char *path,
                   json_t *fields)
{
    int count = 0;
    check(node, value, path ? path : "", fields, &count);
    return count;
}

int validate_text(const validate_node_t *node, const char *text, const char *name,
                  json_t *fields)
{
    const validate_node_t *n = node;
    while (n->ref)
        n = n->target;
    json_t *v = NULL;
    size_t len = strlen(text);
    if (n->type == T_INTEGER) {
        /* Digits alone, with an optional minus: "1e3", "0x10", " 5" or "5 " are not numbers
         * a client meant. */
        const char *d = text + (text[0] == '-');
        if (*d && strspn(d, "0123456789") == strlen(d) && strlen(d) <= 18)
            v = json_integer(strtoll(text, NULL, 10));
    } else if (n->type == T_NUMBER) {
        char *end;
        double x = len ? strtod(text, &end) : 0;
        if (len && !*end && isfinite(x) && strspn(text, "0123456789+-.eE") == len)
            v = json_real(x);
    } else if (n->type == T_BOOLEAN) {
        if (!strcmp(text, "true") || !strcmp(text, "false"))
            v = json_boolean(text[0] == 't');
    } else {
        v = json_stringn(text, len);
        if (!v) {
            json_object_set_new(fields, name, json_string("must be valid UTF-8 text"));
            return 1;
        }
    }
    if (!v) {
        json_object_set_new(fields, name, json_string(type_reason(n->type)));
        return 1;
    }
    int count = validate_value(node, v, name, fields);
    json_decref(v);
    return count;
}
