/*
 * test_manpage.c — pantherad.conf(5) documents exactly the keys the parser accepts.
 *
 * The keys come from config_foreach_key, which walks the tables config.c and
 * ratelimit_config.c parse with; the page (argv[1], packaging/man/pantherad.conf.5) is
 * read the way it is written: a section starts at ".SS [name]", and each key is the
 * ".B key" line after a ".TP" (".BI route NAME" for a family of keys, "route*" here).
 * A key added to a table without a line in the manual fails this test, and so does a
 * documented key that no longer exists.
 */
#include <stdlib.h>

#include "check.h"
#include "config.h"
#include "util.h"

#define MAX_KEYS 512

typedef struct key {
    char section[64];
    char key[64];
} doc_key_t;

typedef struct keyset {
    doc_key_t items[MAX_KEYS];
    size_t n;
} keyset_t;

static void add(keyset_t *set, const char *section, const char *key)
{
    if (set->n == MAX_KEYS)
        return;
    snprintf(set->items[set->n].section, sizeof(set->items[set->n].section), "%s", section);
    snprintf(set->items[set->n].key, sizeof(set->items[set->n].key), "%s", key);
    set->n++;
}

static bool has(const keyset_t *set, const char *section, const char *key)
{
    for (size_t i = 0; i < set->n; i++)
        if (!strcmp(set->items[i].section, section) && !strcmp(set->items[i].key, key))
            return true;
    return false;
}

static void collect_code_key(const char *section, const char *key, void *ud)
{
    add(ud, section, key);
}

/* The page's keys, section by section; false when the file cannot be read. */
static bool read_page(const char *path, keyset_t *doc)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[1024], section[64] = "";
    bool after_tp = false;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char name[64];
        if (sscanf(line, ".SS [%63[^]]]", name) == 1) {
            snprintf(section, sizeof(section), "%s", name);
            after_tp = false;
            continue;
        }
        if (!strncmp(line, ".SH", 3)) {
            section[0] = '\0';
            continue;
        }
        if (!strcmp(line, ".TP")) {
            after_tp = true;
            continue;
        }
        if (after_tp && section[0]) {
            char key[64];
            if (sscanf(line, ".BI %63s", key) == 1) {
                strcat(key, "*");
                add(doc, section, key);
            } else if (sscanf(line, ".B %63s", key) == 1) {
                add(doc, section, key);
            }
        }
        after_tp = false;
    }
    fclose(f);
    return true;
}

static void test_every_key_is_documented(const char *page)
{
    check_current = "every key is documented";
    static keyset_t code, doc;
    config_foreach_key(collect_code_key, &code);
    CHECK_OR_RETURN(code.n > 30 && code.n < MAX_KEYS);
    CHECK_OR_RETURN(read_page(page, &doc));
    for (size_t i = 0; i < code.n; i++) {
        const doc_key_t *k = &code.items[i];
        if (has(&doc, k->section, k->key))
            continue;
        check_report(false, __FILE__, __LINE__);
        const char *star = strchr(k->key, '*');
        fprintf(stderr,
                "[%s] %s is accepted by pantherad but not documented in %s; add under "
                ".SS [%s]:\n.TP\n%s%.*s%s\nwhat it does; default ...\n",
                k->section, k->key, page, k->section, star ? ".BI " : ".B ",
                (int)(star ? (size_t)(star - k->key) : strlen(k->key)), k->key,
                star ? " NAME" : "");
    }
    for (size_t i = 0; i < doc.n; i++) {
        const doc_key_t *k = &doc.items[i];
        if (!strncmp(k->section, "plugin:", 7) || has(&code, k->section, k->key))
            continue;
        check_report(false, __FILE__, __LINE__);
        fprintf(stderr, "%s documents [%s] %s, which pantherad does not accept\n", page,
                k->section, k->key);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_manpage PATH/pantherad.conf.5\n");
        return 2;
    }
    test_every_key_is_documented(argv[1]);
    return check_finish();
}
