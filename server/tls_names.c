/*
 * tls_names.c — [tls:NAME] sections: more certificates for the `ssl` listeners, one of which
 * a client gets by the server name it sends (SNI). [tls] stays the listener's default: a
 * client that sends no name, or a name no section claims, gets [tls]'s certificate, as
 * nginx's default server would answer it, rather than a refused handshake.
 *
 *     [tls:example]
 *     server_name = example.org, *.example.org
 *     certificate = /etc/panthera/tls/example.pem
 *     key = /etc/panthera/tls/example.key
 *
 * This file is the configuration's side (the keys, the checks that need no file, the
 * match of a name); tls_context.c reads the files with [tls]'s, so `pantherad -t`, a start
 * and a reload check every pair the same way and a reload with any bad one keeps the
 * running workers on the old set, and builds one SSL_CTX per section in each worker.
 *
 * Matching is exact (case-insensitive) first, then a wildcard `*.example.org`, which like
 * a certificate's covers exactly one label: `a.example.org`, not `example.org` nor
 * `a.b.example.org`. Sections are few; a linear scan at each handshake costs nothing next
 * to the handshake's own arithmetic.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tls.h"

static const char *const name_keys[] = {"server_name", "certificate", "key"};

void tls_names_foreach_key(void (*fn)(const char *section, const char *key, void *ud), void *ud)
{
    for (size_t i = 0; i < ARRAY_SIZE(name_keys); i++)
        fn("tls:NAME", name_keys[i], ud);
}

static tls_name_t *find(tls_settings_t *t, const char *name)
{
    for (size_t i = 0; i < t->nnames; i++)
        if (!strcmp(t->names[i].name, name))
            return &t->names[i];
    return NULL;
}

void tls_name_section(tls_settings_t *t, const char *name, const char *file, int line)
{
    if (find(t, name))
        return; /* a section continued further down, as in any INI */
    t->names = xrealloc(t->names, (t->nnames + 1) * sizeof(*t->names));
    t->names[t->nnames++] =
        (tls_name_t){.name = xstrdup(name), .file = xstrdup(file), .line = line};
}

/* A DNS name as a certificate would carry it: labels of letters, digits and hyphens,
 * optionally "*." first. */
static bool valid_server_name(const char *s)
{
    if (!strncmp(s, "*.", 2))
        s += 2;
    size_t label = 0, total = 0;
    for (; *s; s++, total++) {
        if (*s == '.') {
            if (!label)
                return false;
            label = 0;
            continue;
        }
        bool ok = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-';
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0 && total <= 253;
}

static int set_server_names(tls_name_t *n, const char *value, char *err, size_t errlen)
{
    char *copy = xstrdup(value), *save = NULL;
    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        for (char *p = tok; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        if (!valid_server_name(tok)) {
            snprintf(err, errlen,
                     "server_name: \"%.200s\" is not a host name (example.org or "
                     "*.example.org)",
                     tok);
            free(copy);
            return -1;
        }
        n->server_names = xrealloc(n->server_names, (n->nserver_names + 1) * sizeof(char *));
        n->server_names[n->nserver_names++] = xstrdup(tok);
    }
    free(copy);
    if (!n->nserver_names) {
        snprintf(err, errlen, "server_name: expected one or more host names");
        return -1;
    }
    return 0;
}

int tls_name_set(tls_settings_t *t, const char *name, const char *key, const char *value, char *err,
                 size_t errlen)
{
    tls_name_t *n = find(t, name);
    if (!n) {
        snprintf(err, errlen, "[tls:%s] was not opened", name);
        return -1;
    }
    char **field = !strcmp(key, "certificate") ? &n->certificate
                   : !strcmp(key, "key")       ? &n->key
                                               : NULL;
    if (!field && strcmp(key, "server_name")) {
        snprintf(err, errlen,
                 "unknown key \"%s\" in [tls:%s] (expected server_name, certificate or key)", key,
                 name);
        return -1;
    }
    if (field ? *field != NULL : n->nserver_names > 0) {
        snprintf(err, errlen, "duplicate key \"%s\" in [tls:%s]", key, name);
        return -1;
    }
    if (!field)
        return set_server_names(n, value, err, errlen);
    *field = xstrdup(value);
    return 0;
}

int tls_names_check(const tls_settings_t *t, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->nnames; i++) {
        const tls_name_t *n = &t->names[i];
        const char *missing = !n->nserver_names ? "server_name"
                              : !n->certificate ? "certificate"
                              : !n->key         ? "key"
                                                : NULL;
        if (missing) {
            snprintf(err, errlen, "[tls:%s] (%s:%d) needs %s", n->name, n->file, n->line, missing);
            return -1;
        }
        /* Two sections claiming one name: which certificate a client gets would depend
         * on the order of the files, so say it now. */
        for (size_t j = 0; j < i; j++)
            for (size_t a = 0; a < n->nserver_names; a++)
                for (size_t b = 0; b < t->names[j].nserver_names; b++)
                    if (!strcmp(n->server_names[a], t->names[j].server_names[b])) {
                        snprintf(err, errlen,
                                 "[tls:%s] (%s:%d): server_name %s is [tls:%s]'s already", n->name,
                                 n->file, n->line, n->server_names[a], t->names[j].name);
                        return -1;
                    }
    }
    return 0;
}

static bool wildcard_covers(const char *pattern, const char *name)
{
    if (strncmp(pattern, "*.", 2))
        return false;
    const char *dot = strchr(name, '.');
    return dot && dot != name && !strcasecmp(dot + 1, pattern + 2);
}

ssize_t tls_name_match(const tls_name_t *names, size_t n, const char *server_name)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < names[i].nserver_names; j++)
            if (!strcasecmp(names[i].server_names[j], server_name))
                return (ssize_t)i;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < names[i].nserver_names; j++)
            if (wildcard_covers(names[i].server_names[j], server_name))
                return (ssize_t)i;
    return -1;
}

void tls_names_free(tls_settings_t *t)
{
    for (size_t i = 0; i < t->nnames; i++) {
        tls_name_t *n = &t->names[i];
        free(n->name);
        free(n->file);
        for (size_t j = 0; j < n->nserver_names; j++)
            free(n->server_names[j]);
        free(n->server_names);
        free(n->certificate);
        free(n->key);
        free(n->cert_pem);
        if (n->key_pem)
            OPENSSL_cleanse(n->key_pem, n->key_pem_len);
        free(n->key_pem);
    }
    free(t->names);
    t->names = NULL;
    t->nnames = 0;
}
