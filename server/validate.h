/* validate.h — JSON Schema (the subset OpenAPI 3.0 uses), compiled once, checked per
 * request. Pure: no request, no plugin, so tests/unit/test_validate.c drives it alone. */
#ifndef PX_VALIDATE_H
#define PX_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct validate_node validate_node_t;
typedef struct validate_registry validate_registry_t;

validate_registry_t *validate_registry_new(void);
void validate_registry_free(validate_registry_t *reg);

/* Compile `schema` (borrowed; the registry keeps its own reference for the document) and
 * register it as `name`. 0; PX_EEXIST when `name` is taken; PX_EINVAL with the reason in
 * `err` (a keyword the validator cannot check, a bad value, a pattern it cannot compile). */
int validate_registry_add(validate_registry_t *reg, const char *name, json_t *schema, char *err,
                          size_t errlen);
/* Compile an anonymous schema (a parameter's) owned by the registry; NULL with `err`. */
const validate_node_t *validate_registry_compile(validate_registry_t *reg, const json_t *schema,
                                                 char *err, size_t errlen);
/* Resolve every "$ref" compiled so far: to this registry's schema of that name, else to
 * `fallback`'s (may be NULL). 0, or PX_EINVAL naming the first that resolves to nothing or
 * to a loop of bare $refs. */
int validate_registry_link(validate_registry_t *reg, const validate_registry_t *fallback,
                           char *err, size_t errlen);
/* The compiled schema `name`, or NULL. */
const validate_node_t *validate_registry_get(const validate_registry_t *reg, const char *name);
/* The schemas in registration order: their names and JSON (borrowed). */
size_t validate_registry_count(const validate_registry_t *reg);
const char *validate_registry_name(const validate_registry_t *reg, size_t i);
json_t *validate_registry_json(const validate_registry_t *reg, size_t i);

/* Validate `value`; each failure adds "path": "reason" to `fields` (the first reason for a
 * path wins). `path` names `value` ("" for a whole body, reported as "body"). Returns the
 * number of failures added. The node must belong to a linked registry. */
int validate_value(const validate_node_t *node, const json_t *value, const char *path,
                   json_t *fields);
/* A query or path parameter: `text` is read as the schema's type (integer, number,
 * boolean, else string) and validated under the name `name`. Returns failures added. */
int validate_text(const validate_node_t *node, const char *text, const char *name,
                  json_t *fields);

/* validate_format.c: an ECMA-262 pattern as a POSIX extended regular expression (malloc'd),
 * or NULL with the reason in `err` for what it cannot translate faithfully. */
char *validate_pattern_ere(const char *ecma, char *err, size_t errlen);
/* The formats, for callers that check one value alone. */
bool validate_is_email(const char *s, size_t len);
bool validate_is_uuid(const char *s, size_t len);
bool validate_is_date(const char *s, size_t len);
bool validate_is_date_time(const char *s, size_t len);

#endif
