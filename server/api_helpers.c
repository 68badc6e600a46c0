/*
 * api_helpers.c — the small SDK helpers every plugin needs (1.2, HELPERS area): the
 * host's code-to-answer mapping, API.md's list parameters and list shape, UUIDs, typed
 * config values, content negotiation and ETag preconditions.
 *
 * Each exists so that a rule lives in one place: the answer for a PX_E* code is
 * http_error_status's (http_response.c), the config parsers are util.c's (the ones
 * [server] uses), and the list and precondition rules are API.md's. A helper that
 * refuses a request answers it itself and returns PX_DONE (or returns a PX_E* code the
 * handler passes on), so a handler's error path stays one line.
 */
#include <ctype.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "base64.h"
#include "http.h"
#include "log.h"
#include "metrics_plugin.h"
#include "plugin.h"
#include "shared_counter.h"
#include "util.h"

#define PAGE_LIMIT_DEFAULT 10
#define PAGE_LIMIT_MAX 100

int api_res_code(px_req_t *r, int code, const char *message)
{
    if (r->responded)
        return PX_ESTATE;
    const char *name;
    int status = http_error_status(code, &name);
    return http_respond_error(r, status, name, message, NULL);
}

char *api_req_vprintf(px_req_t *r, const char *fmt, va_list ap)
{
    if (!r || !fmt)
        return NULL;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *out = n < 0 ? NULL : arena_alloc(&r->arena, (size_t)n + 1);
    if (out)
        vsnprintf(out, (size_t)n + 1, fmt, again);
    va_end(again);
    return out;
}

/* ---- base64 (base64.c) ---- */

int api_base64_encode(const void *in, size_t len, int flags, char *out, size_t outsize)
{
    if ((!in && len) || !out || (flags & ~PX_BASE64_URL))
        return PX_EINVAL;
    bool url = flags & PX_BASE64_URL;
    if (len > (size_t)INT_MAX / 4 * 3 - 3 || base64_encoded_len(len, url) >= outsize)
        return PX_EOVERFLOW;
    size_t n = base64_encoded_len(len, url);
    base64_encode(in, len, url, out);
    out[n] = '\0';
    return (int)n;
}

int api_base64_decode(const char *in, size_t len, int flags, void *out, size_t outsize)
{
    size_t n;
    if ((!in && len) || !out || (flags & ~PX_BASE64_URL) || len > (size_t)INT_MAX)
        return PX_EINVAL;
    bool url = flags & PX_BASE64_URL;
    if (base64_decode(in ? in : "", len, url, NULL, &n))
        return PX_EINVAL;
    if (n > outsize)
        return PX_EOVERFLOW;
    base64_decode(in, len, url, out, &n); /* writes exactly the n bytes it counted */
    return (int)n;
}

/* ---- lists ---- */

/* `name` absent: *out = dflt. Else a decimal integer within [min, max], or false. */
static bool query_int(px_req_t *r, const char *name, long min, long max, long dflt, long *out)
{
    const char *s = api_req_query(r, name);
    if (!s) {
        *out = dflt;
        return true;
    }
    return parse_int(s, min, max, out) == 0;
}

int api_req_page(px_req_t *r, int *page, int *limit)
{
    if (!page || !limit)
        return PX_EINVAL;
    long p, l;
    const char *bad = NULL, *why = NULL;
    if (!query_int(r, "page", 1, 1000000000, 1, &p)) {
        bad = "page";
        why = "must be a whole number from 1";
    } else if (!query_int(r, "limit", 1, PAGE_LIMIT_MAX, PAGE_LIMIT_DEFAULT, &l)) {
        bad = "limit";
        why = "must be a whole number from 1 to 100";
    }
    if (bad) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s %s", bad, why);
        http_respond_error(r, 400, "validation_failed", msg, json_pack("{s:s}", bad, why));
        return PX_DONE;
    }
    *page = (int)p;
    *limit = (int)l;
    return 0;
}

int api_res_list(px_req_t *r, const char *items_name, json_t *items, int64_t total, int page,
                 int limit)
{
    if (!items_name || !*items_name || !json_is_array(items)) {
        json_decref(items);
        return PX_EINVAL;
    }
    json_t *body = json_pack("{s:I, s:i, s:i}", "total", (json_int_t)total, "page", page,
                             "limit", limit);
    json_object_set_new(body, items_name, items);
    return api_res_json(r, 200, body);
}

/* ---- UUIDs ---- */

/* Canonical lowercase form of a hyphenated UUID, or false. */
bool api_uuid_canonical(const char *s, char out[37])
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool hyphen = i == 8 || i == 13 || i == 18 || i == 23;
        if (hyphen ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[36] = '\0';
    return true;
}

int api_req_uuid(px_req_t *r, const char *name, char out[37])
{
    if (!name || !out)
        return PX_EINVAL;
    const char *v = api_req_param(r, name);
    if (api_uuid_canonical(v, out))
        return 0;
    char msg[96];
    snprintf(msg, sizeof(msg), "no such %.60s", name);
    http_respond_error(r, 404, "not_found", msg, NULL);
    return PX_DONE;
}

int api_uuid_parse(const char *s, char out[37])
{
    char canon[37];
    if (!out || !api_uuid_canonical(s, canon))
        return PX_EINVAL;
    memcpy(out, canon, sizeof(canon));
    return 0;
}

char *api_req_strdup(px_req_t *r, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *copy = api_req_alloc(r, n);
    memcpy(copy, s, n);
    return copy;
}

int api_uuid_new(char out[37])
{
    unsigned char b[16];
    if (!out || RAND_bytes(b, sizeof(b)) != 1)
        return PX_EINTERNAL;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

/* ---- typed config ---- */

/* The value of a declared key, or NULL with *rc = PX_ENOENT. */
static const char *config_value(px_plugin_t *p, const char *key, const void *out, int *rc)
{
    const char *v = p && key && out ? api_config_get(p, key) : NULL;
    *rc = !p || !key || !out ? PX_EINVAL : v ? 0 : PX_ENOENT;
    return v;
}

static int config_malformed(px_plugin_t *p, const char *key, const char *value, const char *what)
{
    log_error("[plugin:%s] %s = \"%s\": expected %s", p->name, key, value, what);
    return PX_EINVAL;
}

int api_config_int(px_plugin_t *p, const char *key, int64_t *out)
{
    int rc;
    const char *v = config_value(p, key, out, &rc);
    if (!v)
        return rc;
    long n;
    if (parse_int(v, INT64_MIN, INT64_MAX, &n))
        return config_malformed(p, key, v, "a whole number");
    *out = n;
    return 0;
}

int api_config_bool(px_plugin_t *p, const char *key, int *out)
{
    int rc;
    const char *v = config_value(p, key, out, &rc);
    if (!v)
        return rc;
    bool b;
    if (parse_bool(v, &b))
        return config_malformed(p, key, v, "yes or no (on/off, true/false, 1/0)");
    *out = b;
    return 0;
}

int api_config_duration_ms(px_plugin_t *p, const char *key, int64_t *out)
{
    int rc;
    const char *v = config_value(p, key, out, &rc);
    if (!v)
        return rc;
    uint64_t ms;
    if (parse_duration_ms(v, &ms) || ms > INT64_MAX)
        return config_malformed(p, key, v, "a duration such as 500ms, 30s, 5m, 1h or 7d");
    *out = (int64_t)ms;
    return 0;
}

int api_config_size(px_plugin_t *p, const char *key, uint64_t *out)
{
    int rc;
    const char *v = config_value(p, key, out, &rc);
    if (!v)
        return rc;
    if (parse_size(v, out))
        return config_malformed(p, key, v, "a size such as 512, 8k, 16m or 1g");
    return 0;
}

/* ---- content negotiation ---- */

static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* One media range of an Accept header, parsed in place of a copy. */
typedef struct range {
    const char *type, *subtype;
    size_t type_len, subtype_len;
    int q; /* thousandths */
} range_t;

/* "0.5" → 500; anything malformed → -1 (the range is ignored). */
static int parse_q(const char *s, size_t n)
{
    if (n == 0 || n > 5 || (s[0] != '0' && s[0] != '1'))
        return -1;
    int q = (s[0] - '0') * 1000;
    if (n == 1)
        return q;
    if (s[1] != '.')
        return -1;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* Parses the range at *p (up to the next ',' outside quotes); false when malformed. */
static bool next_range(const char **p, range_t *out)
{
    const char *s = skip_ows(*p);
    const char *end = s;
    while (*end && *end != ',')
        end++;
    *p = *end ? end + 1 : end;
    const char *slash = memchr(s, '/', (size_t)(end - s));
    if (!slash)
        return false;
    const char *sub_end = slash + 1;
    while (sub_end < end && *sub_end != ';' && *sub_end != ' ' && *sub_end != '\t')
        sub_end++;
    *out = (range_t){s, slash + 1, (size_t)(slash - s), (size_t)(sub_end - slash - 1), 1000};
    if (!out->type_len || !out->subtype_len)
        return false;
    for (const char *q = sub_end; q < end;) {
        const char *semi = memchr(q, ';', (size_t)(end - q));
        if (!semi)
            break;
        const char *param = skip_ows(semi + 1);
        const char *pend = param;
        while (pend < end && *pend != ';')
            pend++;
        if ((param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
            size_t n = (size_t)(pend - param - 2);
            while (n && (param[2 + n - 1] == ' ' || param[2 + n - 1] == '\t'))
                n--;
            out->q = parse_q(param + 2, n);
            if (out->q < 0)
                return false;
        }
        q = pend;
    }
    return true;
}

/* How specifically `rg` matches `offer` ("type/subtype"): 3 exact, 2 type/\*, 1 *\/\*,
 * 0 not at all. */
static int specificity(const range_t *rg, const char *offer)
{
    const char *slash = strchr(offer, '/');
    if (!slash)
        return 0;
    size_t tlen = (size_t)(slash - offer), slen = strcspn(slash + 1, "; \t");
    bool any_type = rg->type_len == 1 && rg->type[0] == '*';
    bool any_sub = rg->subtype_len == 1 && rg->subtype[0] == '*';
    if (any_type)
        return any_sub ? 1 : 0;
    if (rg->type_len != tlen || strncasecmp(rg->type, offer, tlen))
        return 0;
    if (any_sub)
        return 2;
    return rg->subtype_len == slen && !strncasecmp(rg->subtype, slash + 1, slen) ? 3 : 0;
}

int api_req_accept(px_req_t *r, const char *const *offers)
{
    if (!offers || !offers[0])
        return PX_EINVAL;
    return api_accept_choose(api_req_header(r, "Accept"), offers);
}

int api_accept_choose(const char *accept, const char *const *offers)
{
    if (!accept || !*skip_ows(accept))
        return 0;
    int best = PX_ENOTACCEPTABLE, best_q = 0;
    for (int i = 0; offers[i]; i++) {
        int spec = 0, q = 0;
        const char *p = accept;
        while (*p) {
            range_t rg;
            if (!next_range(&p, &rg))
                continue;
            int s = specificity(&rg, offers[i]);
            if (s > spec) {
                spec = s;
                q = rg.q;
            }
        }
        if (spec && q > best_q) {
            best = i;
            best_q = q;
        }
    }
    return best;
}

/* ---- preconditions ---- */

/* Does the If-Match / If-None-Match list `header` name "etag"? `weak`: W/"x" counts. */
bool api_etag_listed(const char *header, const char *etag, bool weak)
{
    size_t elen = strlen(etag);
    const char *p = skip_ows(header);
    if (*p == '*')
        return true;
    while (*p) {
        p = skip_ows(p);
        bool is_weak = p[0] == 'W' && p[1] == '/';
        if (is_weak)
            p += 2;
        if (*p != '"')
            break;
        const char *close = strchr(p + 1, '"');
        if (!close)
            break;
        if ((!is_weak || weak) && (size_t)(close - p - 1) == elen && !memcmp(p + 1, etag, elen))
            return true;
        p = skip_ows(close + 1);
        if (*p != ',')
            break;
        p++;
    }
    return false;
}

static bool etag_valid(const char *etag)
{
    if (!etag || !*etag)
        return false;
    for (const char *s = etag; *s; s++)
        if (*s == '"' || (unsigned char)*s < 0x21 || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

int api_req_if_match(px_req_t *r, const char *etag)
{
    if (!etag_valid(etag))
        return PX_EINVAL;
    const char *h = api_req_header(r, "If-Match");
    if (!h)
        return 0;
    return api_etag_listed(h, etag, false) ? 0 : PX_EPRECONDITION;
}

int api_res_etag(px_req_t *r, const char *etag)
{
    if (!etag_valid(etag))
        return PX_EINVAL;
    char quoted[256];
    if ((size_t)snprintf(quoted, sizeof(quoted), "\"%s\"", etag) >= sizeof(quoted))
        return PX_EINVAL;
    int rc = http_add_header(r, "ETag", quoted);
    if (rc)
        return rc;
    const char *m = api_req_method(r);
    const char *h = api_req_header(r, "If-None-Match");
    if (h && m && (!strcmp(m, "GET") || !strcmp(m, "HEAD")) && api_etag_listed(h, etag, true)) {
        http_respond(r, 304, NULL, NULL, 0, false);
        return PX_DONE;
    }
    return 0;
}

/* ---- declared hook points and plugin metrics ---- */

static bool registering(px_plugin_t *p)
{
    return p && p->set && p->set->registering == p;
}

int api_hook_declare(px_plugin_t *p, const char *name, const char *description)
{
    if (!registering(p))
        return PX_ESTATE;
    if (!name || !*name || strlen(name) > 63 || !description || strpbrk(description, "\r\n") ||
        !strcmp(name, "on_request") || !strcmp(name, "on_response") || isdigit((unsigned char)*name))
        return PX_EINVAL;
    for (const char *s = name; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return PX_EINVAL;
    plugin_set_t *set = p->set;
    for (size_t i = 0; i < set->n; i++)
        if (set->items[i]->hook_points && json_object_get(set->items[i]->hook_points, name))
            return PX_EEXIST;
    if (!p->hook_points)
        p->hook_points = json_object();
    if (json_object_get(p->hook_points, name))
        return PX_EEXIST;
    json_object_set_new(p->hook_points, name, json_string(description));
    return 0;
}

int api_metric_counter(px_plugin_t *p, const char *name, const char *help)
{
    return registering(p) ? metrics_plugin_counter(p->name, name, help) : PX_ESTATE;
}

int api_metric_histogram(px_plugin_t *p, const char *name, const char *help,
                         const double *bounds, int nbounds)
{
    return registering(p) ? metrics_plugin_histogram(p->name, name, help, bounds, nbounds)
                          : PX_ESTATE;
}

void api_metric_add(px_plugin_t *p, int id, uint64_t n)
{
    if (p)
        metrics_plugin_add(p->name, id, n);
}

void api_metric_observe(px_plugin_t *p, int id, double value)
{
    if (p)
        metrics_plugin_observe(p->name, id, value);
}

int api_shared_counter(px_plugin_t *p, const char *name, px_shared_counter_t **out)
{
    return registering(p) ? shared_counter_find(p->name, name, out) : PX_ESTATE;
}

uint64_t api_shared_counter_add(px_shared_counter_t *c, uint64_t n)
{
    return shared_counter_add(c, n);
}
