/*
 * input.c — what a client may send. A body is read field by field against the list the
 * endpoint accepts: an unknown field is refused rather than ignored (no mass assignment:
 * `role`, `id` or `createdAt` in a register body is a 400, never a silent admin), a value
 * of the wrong type is refused rather than coerced, and every reason is collected so the
 * client learns about all its mistakes at once.
 *
 * Lengths count characters (Unicode code points), not bytes: jansson has already checked
 * that strings are valid UTF-8. A string with an embedded NUL is refused everywhere, since
 * C code (and libpq) would silently cut it there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"

#define NAME_MAX_CHARS 100

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

const char *input_check_username(const char *s, size_t len)
{
    static const char *why = "must be 3 to 30 characters: letters, digits, '_' and '.'";
    if (len < 3 || len > 30)
        return why;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.'))
            return why;
    }
    return NULL;
}

const char *input_check_password(const char *pw, size_t len)
{
    size_t n = utf8_chars(pw, len);
    return n < 8 || n > 64 ? "must be 8 to 64 characters" : NULL;
}

static bool atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+/=?^_`{|}~-", c));
}

/* A practical subset of RFC 5321: dot-atom local part of at most 64 characters, a domain
 * name of at least two labels (letters, digits, inner hyphens) ending in an alphabetic
 * top-level label, at most 254 characters in all. No quoted local parts, no address
 * literals, no internationalised addresses: those are legal but mostly seen in attacks. */
const char *input_check_email(const char *s, size_t len)
{
    static const char *why = "must be a valid email address";
    const char *at = memchr(s, '@', len);
    if (len > 254 || !at || memchr(at + 1, '@', len - (size_t)(at - s) - 1))
        return why;
    size_t local = (size_t)(at - s);
    if (local == 0 || local > 64 || s[0] == '.' || s[local - 1] == '.')
        return why;
    for (size_t i = 0; i < local; i++)
        if (!(atext(s[i]) || (s[i] == '.' && s[i + 1] != '.')))
            return why;
    const char *d = at + 1, *end = s + len;
    int labels = 0;
    bool alpha_label = false;
    while (d < end) {
        const char *dot = memchr(d, '.', (size_t)(end - d));
        const char *lend = dot ? dot : end;
        size_t n = (size_t)(lend - d);
        if (n == 0 || n > 63 || d[0] == '-' || lend[-1] == '-')
            return why;
        alpha_label = true;
        for (size_t i = 0; i < n; i++) {
            char c = d[i];
            bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
            if (!(letter || (c >= '0' && c <= '9') || c == '-'))
                return why;
            alpha_label = alpha_label && letter;
        }
        labels++;
        if (!dot)
            break;
        d = dot + 1;
        if (d == end)
            return why; /* a trailing dot */
    }
    /* alpha_label now describes the last label: the top-level domain. */
    const char *tld = memrchr(at, '.', (size_t)(end - at));
    if (labels < 2 || !alpha_label || !tld || end - tld - 1 < 2)
        return why;
    return NULL;
}

static const char *check_name(const char *s, size_t len)
{
    if (utf8_chars(s, len) > NAME_MAX_CHARS)
        return "must be at most 100 characters";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return "must not contain control characters";
    return NULL;
}

static const char *check_role(const char *s, size_t len)
{
    (void)len;
    return strcmp(s, "user") && strcmp(s, "admin") ? "must be \"user\" or \"admin\"" : NULL;
}

static const struct field {
    const char *name;
    unsigned bit;
    bool nullable;
    const char *(*check)(const char *s, size_t len);
    size_t offset;
} fields_known[] = {
    {"username", IN_USERNAME, false, input_check_username, offsetof(user_input_t, username)},
    {"email", IN_EMAIL, false, input_check_email, offsetof(user_input_t, email)},
    {"password", IN_PASSWORD, false, input_check_password, offsetof(user_input_t, password)},
    {"firstName", IN_FIRST_NAME, true, check_name, offsetof(user_input_t, first_name)},
    {"lastName", IN_LAST_NAME, true, check_name, offsetof(user_input_t, last_name)},
    {"role", IN_ROLE, false, check_role, offsetof(user_input_t, role)},
};
#define NFIELDS (sizeof(fields_known) / sizeof(fields_known[0]))

static const char **slot(user_input_t *in, const struct field *f)
{
    return (const char **)((char *)in + f->offset);
}

json_t *input_read(px_req_t *req, const json_t *body, unsigned allowed, unsigned required,
                   user_input_t *in)
{
    memset(in, 0, sizeof(*in));
    json_t *errors = json_object();
    if (!json_is_object(body)) {
        json_object_set_new(errors, "body", json_string("must be a JSON object"));
        return errors;
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)body, key, value)
    {
        if (!strcmp(key, "id") && (allowed & IN_ID))
            continue;
        const struct field *f = NULL;
        for (size_t i = 0; i < NFIELDS && !f; i++)
            if (!strcmp(fields_known[i].name, key) && (allowed & fields_known[i].bit))
                f = &fields_known[i];
        if (!f) {
            json_object_set_new(errors, key, json_string("is not an accepted field"));
            continue;
        }
        if (json_is_null(value) && f->nullable) {
            in->present |= f->bit;
            *slot(in, f) = NULL;
            continue;
        }
        if (!json_is_string(value)) {
            json_object_set_new(errors, key, json_string("must be a string"));
            continue;
        }
        const char *s = json_string_value(value);
        size_t len = json_string_length(value);
        const char *why = strlen(s) != len ? "must not contain NUL characters" : f->check(s, len);
        if (why) {
            json_object_set_new(errors, key, json_string(why));
            continue;
        }
        char *copy = px_req_alloc(req, len + 1);
        memcpy(copy, s, len + 1);
        in->present |= f->bit;
        *slot(in, f) = copy;
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        const struct field *f = &fields_known[i];
        if ((required & f->bit) && !(in->present & f->bit) && !json_object_get(errors, f->name))
            json_object_set_new(errors, f->name, json_string("is required"));
    }
    if (json_object_size(errors) == 0) {
        json_decref(errors);
        return NULL;
    }
    return errors;
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

int input_body(px_req_t *req, json_t **body)
{
    int rc = px_req_json(req, body);
    if (rc)
        return rc;
    if (!json_is_object(*body)) {
        px_res_error(req, 400, "bad_request", "the body must be a JSON object", NULL);
        return PX_DONE;
    }
    return 0;
}
