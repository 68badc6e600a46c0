/* test_validate.c — server/validate.c: for each keyword of the subset, a body that passes
 * and one that fails, the failure reported under the field's name; parameters read from
 * text; schemas the host cannot check refused when compiled; $refs linked. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "panthera.h"
#include "validate.h"

static validate_registry_t *reg;

/* Register `text` as schema `name` (fails the test if it does not compile). */
static void add(const char *name, const char *text)
{
    char err[300] = "";
    json_t *s = json_loads(text, 0, NULL);
    CHECK_OR_RETURN(s != NULL);
    int rc = validate_registry_add(reg, name, s, err, sizeof(err));
    json_decref(s);
    if (rc)
        fprintf(stderr, "schema %s: %s\n", name, err);
    CHECK_EQ_INT(rc, 0);
}

/* Validate body `text` by schema `name`: the failed fields' names, sorted and comma
 * separated ("" when it passed), in a static buffer. */
static const char *failures(const char *name, const char *text)
{
    static char out[512];
    out[0] = '\0';
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!v)
        return "(bad test JSON)";
    json_t *fields = json_object();
    int n = validate_value(validate_registry_get(reg, name), v, "", fields);
    const char *keys[32];
    size_t nkeys = 0;
    const char *key;
    json_t *reason;
    json_object_foreach(fields, key, reason)
    {
        if (nkeys < 32)
            keys[nkeys++] = key;
        CHECK(json_is_string(reason) && json_string_length(reason) > 0);
    }
    for (size_t i = 0; i < nkeys; i++)
        for (size_t j = i + 1; j < nkeys; j++)
            if (strcmp(keys[j], keys[i]) < 0) {
                const char *t = keys[i];
                keys[i] = keys[j];
                keys[j] = t;
            }
    for (size_t i = 0; i < nkeys; i++)
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? "," : "", keys[i]);
    CHECK((n == 0) == (nkeys == 0));
    json_decref(fields);
    json_decref(v);
    return out;
}

static void test_type(void)
{
    add("T", "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\"},"
             "\"i\":{\"type\":\"integer\"},\"n\":{\"type\":\"number\"},"
             "\"b\":{\"type\":\"boolean\"},\"a\":{\"type\":\"array\"},\"o\":{\"type\":\"object\"}}}");
    CHECK_STR(failures("T", "{\"s\":\"x\",\"i\":3,\"n\":1.5,\"b\":true,\"a\":[],\"o\":{}}"), "");
    CHECK_STR(failures("T", "{\"i\":2.0,\"n\":7}"), ""); /* 2.0 is an integer in JSON Schema */
    CHECK_STR(failures("T", "{\"s\":1,\"i\":1.5,\"n\":\"1\",\"b\":0,\"a\":{},\"o\":[]}"),
              "a,b,i,n,o,s");
    CHECK_STR(failures("T", "[1]"), "body"); /* the body as a whole */
}

static void test_required(void)
{
    add("R", "{\"type\":\"object\",\"required\":[\"name\",\"email\"]}");
    CHECK_STR(failures("R", "{\"name\":\"a\",\"email\":\"b\"}"), "");
    CHECK_STR(failures("R", "{\"name\":\"a\"}"), "email");
}

static void test_properties_and_additional(void)
{
    add("P", "{\"type\":\"object\",\"additionalProperties\":false,"
             "\"properties\":{\"name\":{\"type\":\"string\"}}}");
    CHECK_STR(failures("P", "{\"name\":\"a\"}"), "");
    CHECK_STR(failures("P", "{\"name\":\"a\",\"role\":\"admin\"}"), "role");
    add("P2", "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}");
    CHECK_STR(failures("P2", "{\"x\":1,\"y\":2}"), "");
    CHECK_STR(failures("P2", "{\"x\":1,\"y\":\"2\"}"), "y");
    add("P3", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}}}");
    CHECK_STR(failures("P3", "{\"name\":\"a\",\"other\":[1]}"), ""); /* open by default */
}

static void test_enum(void)
{
    add("E", "{\"type\":\"object\",\"properties\":{\"role\":{\"type\":\"string\","
             "\"enum\":[\"user\",\"admin\"]}}}");
    CHECK_STR(failures("E", "{\"role\":\"admin\"}"), "");
    CHECK_STR(failures("E", "{\"role\":\"root\"}"), "role");
}

static void test_lengths(void)
{
    add("L", "{\"type\":\"object\",\"properties\":{\"pw\":{\"type\":\"string\","
             "\"minLength\":8,\"maxLength\":10},\"nick\":{\"type\":\"string\",\"maxLength\":3}}}");
    CHECK_STR(failures("L", "{\"pw\":\"12345678\",\"nick\":\"abc\"}"), "");
    CHECK_STR(failures("L", "{\"pw\":\"1234567\"}"), "pw");       /* minLength */
    CHECK_STR(failures("L", "{\"pw\":\"12345678901\"}"), "pw");   /* maxLength */
    CHECK_STR(failures("L", "{\"nick\":\"abcd\"}"), "nick");
    /* Characters, not bytes: three two-byte letters fit in maxLength 3. */
    CHECK_STR(failures("L", "{\"nick\":\"\\u00e9\\u00e9\\u00e9\"}"), "");
    CHECK_STR(failures("L", "{\"pw\":\"\\u00e9\\u00e9\\u00e9\\u00e9\"}"), "pw");
    /* A NUL inside a string is refused whatever the schema says. */
    CHECK_STR(failures("L", "{\"nick\":\"a\\u0000b\"}"), "nick");
}

static void test_pattern(void)
{
    add("PT", "{\"type\":\"object\",\"properties\":{"
              "\"u\":{\"type\":\"string\",\"pattern\":\"^[A-Za-z0-9_.]{3,30}$\"},"
              "\"d\":{\"type\":\"string\",\"pattern\":\"^\\\\d+(?:\\\\.\\\\d+)?$\"},"
              "\"c\":{\"type\":\"string\",\"pattern\":\"^[^\\\\x00-\\\\x1f\\\\x7f]*$\"}}}");
    CHECK_STR(failures("PT", "{\"u\":\"ada.l_9\",\"d\":\"3.14\",\"c\":\"Zo\\u00eb\"}"), "");
    CHECK_STR(failures("PT", "{\"u\":\"bad name\"}"), "u");
    CHECK_STR(failures("PT", "{\"d\":\"3.\"}"), "d");
    CHECK_STR(failures("PT", "{\"c\":\"new\\nline\"}"), "c");
}

static void test_minimum_maximum(void)
{
    add("M", "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":1,"
             "\"maximum\":100},\"x\":{\"type\":\"number\",\"minimum\":0,"
             "\"exclusiveMinimum\":true}}}");
    CHECK_STR(failures("M", "{\"n\":1,\"x\":0.5}"), "");
    CHECK_STR(failures("M", "{\"n\":100}"), "");
    CHECK_STR(failures("M", "{\"n\":0}"), "n");
    CHECK_STR(failures("M", "{\"n\":101}"), "n");
    CHECK_STR(failures("M", "{\"x\":0}"), "x");
}

static void test_items(void)
{
    add("I", "{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"maxItems\":2,"
             "\"minItems\":1,\"items\":{\"type\":\"string\",\"maxLength\":3}}}}");
    CHECK_STR(failures("I", "{\"tags\":[\"a\",\"bc\"]}"), "");
    CHECK_STR(failures("I", "{\"tags\":[\"a\",\"long\"]}"), "tags[1]"); /* items */
    CHECK_STR(failures("I", "{\"tags\":[\"a\",\"b\",\"c\"]}"), "tags");  /* maxItems */
    CHECK_STR(failures("I", "{\"tags\":[]}"), "tags");                   /* minItems */
}

static void test_nullable(void)
{
    add("N", "{\"type\":\"object\",\"properties\":{\"first\":{\"type\":\"string\","
             "\"nullable\":true},\"last\":{\"type\":\"string\"}}}");
    CHECK_STR(failures("N", "{\"first\":null,\"last\":\"x\"}"), "");
    CHECK_STR(failures("N", "{\"last\":null}"), "last");
}

static void test_formats(void)
{
    add("F", "{\"type\":\"object\",\"properties\":{\"email\":{\"type\":\"string\","
             "\"format\":\"email\"},\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
             "\"due\":{\"type\":\"string\",\"format\":\"date\"},"
             "\"at\":{\"type\":\"string\",\"format\":\"date-time\"},"
             "\"pw\":{\"type\":\"string\",\"format\":\"password\"}}}");
    CHECK_STR(failures("F", "{\"email\":\"o'brien@mail.example.org\","
                            "\"id\":\"123E4567-e89b-12d3-a456-426614174000\","
                            "\"due\":\"2024-02-29\",\"at\":\"2024-02-29T23:59:60.5+01:00\","
                            "\"pw\":\"anything\"}"),
              "");
    CHECK_STR(failures("F", "{\"at\":\"2024-01-01t00:00:00z\"}"), "");
    static const char *bad_emails[] = {"a@b", "a@localhost", "a..b@example.com", ".a@example.com",
                                       "a@example.c0m", "a@-example.com", "a@example.com.",
                                       "a b@example.com", "@example.com", "a@@example.com"};
    for (size_t i = 0; i < sizeof(bad_emails) / sizeof(bad_emails[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"email\":\"%s\"}", bad_emails[i]);
        CHECK_STR(failures("F", body), "email");
    }
    CHECK_STR(failures("F", "{\"id\":\"123e4567e89b12d3a456426614174000\"}"), "id");
    CHECK_STR(failures("F", "{\"due\":\"2023-02-29\"}"), "due"); /* not a leap year */
    CHECK_STR(failures("F", "{\"due\":\"2023-1-02\"}"), "due");
    CHECK_STR(failures("F", "{\"at\":\"2024-01-01 00:00:00Z\"}"), "at");
    CHECK_STR(failures("F", "{\"at\":\"2024-01-01T24:00:00Z\"}"), "at");
    CHECK_STR(failures("F", "{\"at\":\"2024-01-01T00:00:00\"}"), "at"); /* no offset */
}

static void test_refs_and_nesting(void)
{
    add("Node", "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"name\"],"
                "\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1},"
                "\"children\":{\"type\":\"array\",\"items\":{\"$ref\":"
                "\"#/components/schemas/Node\"}}}}");
    add("Tree", "{\"$ref\":\"#/components/schemas/Node\"}");
    char err[300] = "";
    CHECK_EQ_INT(validate_registry_link(reg, NULL, err, sizeof(err)), 0);
    CHECK_STR(failures("Tree", "{\"name\":\"r\",\"children\":[{\"name\":\"a\",\"children\":[]}]}"),
              "");
    CHECK_STR(failures("Tree", "{\"name\":\"r\",\"children\":[{\"name\":\"a\"},{\"nom\":\"b\"}]}"),
              "children[1].name,children[1].nom");
}

static void test_text_parameters(void)
{
    char err[300] = "";
    json_t *s = json_loads("{\"type\":\"integer\",\"minimum\":1,\"maximum\":100}", 0, NULL);
    const validate_node_t *limit = validate_registry_compile(reg, s, err, sizeof(err));
    json_decref(s);
    s = json_loads("{\"type\":\"string\",\"enum\":[\"todo\",\"done\"]}", 0, NULL);
    const validate_node_t *status = validate_registry_compile(reg, s, err, sizeof(err));
    json_decref(s);
    s = json_loads("{\"type\":\"string\",\"format\":\"uuid\"}", 0, NULL);
    const validate_node_t *id = validate_registry_compile(reg, s, err, sizeof(err));
    json_decref(s);
    CHECK_OR_RETURN(limit && status && id);
    json_t *fields = json_object();
    CHECK_EQ_INT(validate_text(limit, "10", "limit", fields), 0);
    CHECK_EQ_INT(validate_text(limit, "100", "limit", fields), 0);
    CHECK_EQ_INT(validate_text(status, "done", "status", fields), 0);
    CHECK_EQ_INT(validate_text(id, "123e4567-e89b-12d3-a456-426614174000", "id", fields), 0);
    CHECK_EQ_INT(json_object_size(fields), 0);
    static const char *bad_limits[] = {"0", "101", "1e2", "0x10", " 5", "", "ten", "-1"};
    for (size_t i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++) {
        json_object_clear(fields);
        CHECK_EQ_INT(validate_text(limit, bad_limits[i], "limit", fields), 1);
        CHECK(json_object_get(fields, "limit") != NULL);
    }
    json_object_clear(fields);
    CHECK_EQ_INT(validate_text(status, "doing", "status", fields), 1);
    CHECK_EQ_INT(validate_text(id, "42", "id", fields), 1);
    CHECK(json_object_get(fields, "status") && json_object_get(fields, "id"));
    json_decref(fields);
}

/* What the host cannot check is refused when the plugin registers it. */
static void test_refused_schemas(void)
{
    static const struct {
        const char *schema, *why;
    } cases[] = {
        {"{\"oneOf\":[{\"type\":\"string\"}]}", "oneOf"},
        {"{\"type\":\"string\",\"multipleOf\":2}", "multipleOf"},
        {"{\"type\":\"strin\"}", "type"},
        {"{\"type\":\"string\",\"pattern\":\"(?=x)\"}", "look-around"},
        {"{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "not supported"},
        {"{\"type\":\"string\",\"pattern\":\"a*?\"}", "lazy"},
        {"{\"type\":\"string\",\"pattern\":\"[a-\"}", "unclosed"},
        {"{\"type\":\"string\",\"maxLength\":-1}", "maxLength"},
        {"{\"type\":\"string\",\"enum\":[\"a\",1]}", "enum"},
        {"{\"$ref\":\"#/definitions/X\"}", "$ref"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"allOf\":[]}}}", "properties.a"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        validate_registry_t *r = validate_registry_new();
        json_t *s = json_loads(cases[i].schema, 0, NULL);
        char err[300] = "";
        CHECK_EQ_INT(validate_registry_add(r, "Bad", s, err, sizeof(err)), PX_EINVAL);
        CHECK_CONTAINS(err, cases[i].why);
        json_decref(s);
        validate_registry_free(r);
    }
    /* Names: twice is PX_EEXIST; a dangling $ref or a loop of them fails the link. */
    validate_registry_t *r = validate_registry_new();
    json_t *s = json_loads("{\"$ref\":\"#/components/schemas/B\"}", 0, NULL);
    json_t *b = json_loads("{\"$ref\":\"#/components/schemas/A\"}", 0, NULL);
    char err[300] = "";
    CHECK_EQ_INT(validate_registry_add(r, "A", s, err, sizeof(err)), 0);
    CHECK_EQ_INT(validate_registry_add(r, "A", s, err, sizeof(err)), PX_EEXIST);
    CHECK_EQ_INT(validate_registry_add(r, "bad name", s, err, sizeof(err)), PX_EINVAL);
    CHECK_EQ_INT(validate_registry_link(r, NULL, err, sizeof(err)), PX_EINVAL);
    CHECK_CONTAINS(err, "names no schema");
    CHECK_EQ_INT(validate_registry_add(r, "B", b, err, sizeof(err)), 0);
    CHECK_EQ_INT(validate_registry_link(r, NULL, err, sizeof(err)), PX_EINVAL);
    CHECK_CONTAINS(err, "loop");
    json_decref(s);
    json_decref(b);
    validate_registry_free(r);
}

int main(void)
{
    reg = validate_registry_new();
    RUN(test_type);
    RUN(test_required);
    RUN(test_properties_and_additional);
    RUN(test_enum);
    RUN(test_lengths);
    RUN(test_pattern);
    RUN(test_minimum_maximum);
    RUN(test_items);
    RUN(test_nullable);
    RUN(test_formats);
    RUN(test_refs_and_nesting);
    RUN(test_text_parameters);
    RUN(test_refused_schemas);
    validate_registry_free(reg);
    return check_finish();
}
