/*
 * api_settings.c — px_config_settings (SDK 1.2, HELPERS area): a plugin's whole settings
 * table declared, parsed and bounded in one call.
 *
 * Every plugin did the same four steps per key: declare it with a default, read it with
 * the host's parser, compare it with a range, and log a line naming the key when it is
 * off (the user plugin had a helper of its own for it, the task and content plugins wrote
 * it out per key, each with its own wording). Here the steps are the host's: the parsing
 * is api_config_int's and its siblings' (util.c's, the ones [server] uses, which also log
 * a malformed value), the range check and its log line are one function, so every plugin
 * reports a bad value the same way: `[plugin:NAME] KEY = "VALUE": expected MIN to MAX`
 * (or `expected one of a|b` for a choice).
 *
 * Bounds are printed as an operator writes them: a duration as "1s", "5m" or "1d" when it
 * is a whole number of them (else in ms), a size as "8k", "16m" or "1g" likewise.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "plugin.h"

/* `v` in the largest unit that divides it: units[i] is worth scale[i] of the base. */
static void format_scaled(int64_t v, const char *const *units, const int64_t *scale, size_t n,
                          char *out, size_t size)
{
    size_t i = n - 1;
    while (i > 0 && (v == 0 || v % scale[i]))
        i--;
    snprintf(out, size, "%" PRId64 "%s", v / scale[i], units[i]);
}

static void format_bound(int kind, int64_t v, char *out, size_t size)
{
    static const char *const time_units[] = {"ms", "s", "m", "h", "d"};
    static const int64_t time_scale[] = {1, 1000, 60000, 3600000, 86400000};
    static const char *const size_units[] = {"", "k", "m", "g"};
    static const int64_t size_scale[] = {1, 1024, 1024 * 1024, 1024 * 1024 * 1024};
    if (kind == PX_SETTING_DURATION_MS)
        format_scaled(v, time_units, time_scale, 5, out, size);
    else if (kind == PX_SETTING_SIZE)
        format_scaled(v, size_units, size_scale, 4, out, size);
    else
        snprintf(out, size, "%" PRId64, v);
}

/* CHOICE: the index of `value` among the words of `choices` ("a|b|c"), or -1. */
static int choice_index(const char *choices, const char *value)
{
    size_t len = strlen(value);
    int i = 0;
    for (const char *w = choices; *w; i++) {
        size_t n = strcspn(w, "|");
        if (n == len && !strncmp(w, value, n))
            return i;
        w += n + (w[n] == '|');
    }
    return -1;
}

/* One entry: parsed (the parser logs a malformed value itself), then bounded. */
static int setting_read(px_plugin_t *p, const px_setting_t *s)
{
    int64_t v = 0;
    int rc = 0;
    switch (s->kind) {
    case PX_SETTING_INT:
        rc = api_config_int(p, s->key, &v);
        break;
    case PX_SETTING_DURATION_MS:
        rc = api_config_duration_ms(p, s->key, &v);
        break;
    case PX_SETTING_SIZE: {
        uint64_t u = 0;
        rc = api_config_size(p, s->key, &u);
        v = u > INT64_MAX ? INT64_MAX : (int64_t)u;
        break;
    }
    case PX_SETTING_BOOL: {
        int b = 0;
        rc = api_config_bool(p, s->key, &b);
        if (!rc)
            *s->out = b;
        return rc;
    }
    case PX_SETTING_CHOICE: {
        const char *value = api_config_get(p, s->key);
        int i = value && s->choices ? choice_index(s->choices, value) : -1;
        if (i >= 0) {
            *s->out = i;
            return 0;
        }
        log_error("[plugin:%s] %s = \"%s\": expected one of %s", p->name, s->key,
                  value ? value : "", s->choices ? s->choices : "(none)");
        return PX_EINVAL;
    }
    default:
        log_error("[plugin:%s] %s: unknown setting kind %d", p->name, s->key, s->kind);
        return PX_EINVAL;
    }
    if (rc)
        return rc;
    if (v < s->min || v > s->max) {
        char lo[32], hi[32];
        format_bound(s->kind, s->min, lo, sizeof(lo));
        format_bound(s->kind, s->max, hi, sizeof(hi));
        log_error("[plugin:%s] %s = \"%s\": expected %s to %s", p->name, s->key,
                  api_config_get(p, s->key), lo, hi);
        return PX_EINVAL;
    }
    *s->out = v;
    return 0;
}

int api_config_settings(px_plugin_t *p, const px_setting_t *list)
{
    if (!p || !list)
        return PX_EINVAL;
    if (p->set->registering != p)
        return PX_ESTATE;
    for (const px_setting_t *s = list; s->key; s++) {
        if (!s->out || s->min > s->max)
            return PX_EINVAL;
        int rc = api_config_declare(p, s->key, s->dflt);
        if (rc)
            return rc;
    }
    for (const px_setting_t *s = list; s->key; s++) {
        int rc = setting_read(p, s);
        if (rc)
            return rc;
    }
    return 0;
}
