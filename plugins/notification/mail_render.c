/* mail_render.c — what a notification mail says, in plain text.
 *
 * The words come from the notification's type and payload (the task and content
 * plugins' event fields, PLUGINS.md): a title, a project name, an excerpt. All of it
 * is user text; here it only goes into the subject string and the body, and
 * mail_mime.c makes the subject safe. One sentence per known type, a neutral one for
 * types added later, so a new type never stops mail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <panthera/panthera.h>

#include "delivery.h"

static const struct {
    const char *type;
    const char *phrase;
} phrases[] = {
    {"task.assigned", "A task was assigned to you"},
    {"task.created", "A task was created"},
    {"task.updated", "A task was updated"},
    {"task.status_changed", "A task changed status"},
    {"task.commented", "New comment on a task"},
    {"task.deleted", "A task was deleted"},
    {"mention", "You were mentioned"},
    {"project.member_added", "You were added to a project"},
    {"project.member_removed", "You were removed from a project"},
    {"project.member_role_changed", "Your role in a project changed"},
    {"project.updated", "A project was updated"},
    {"project.deleted", "A project was deleted"},
    {"post.published", "New post"},
    {"post.liked", "Someone liked your post"},
    {"post.commented", "New comment on your post"},
};

static const char *phrase(const char *type)
{
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
        if (!strcmp(phrases[i].type, type))
            return phrases[i].phrase;
    return "New notification";
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

/* The thing a notification is about: a title, else a project name, else "". */
static const char *subject_of(json_t *payload)
{
    const char *t = str(payload, "title");
    if (!t)
        t = str(payload, "projectName");
    if (!t)
        t = str(payload, "name");
    return t ? t : "";
}

static void one(FILE *f, json_t *item)
{
    const char *type = str(item, "type");
    json_t *payload = json_object_get(item, "payload");
    const char *about = subject_of(payload);
    fprintf(f, "* %s%s%s\n", phrase(type ? type : ""), *about ? ": " : "", about);
    const char *excerpt = str(payload, "excerpt");
    if (excerpt)
        fprintf(f, "  \"%s\"\n", excerpt);
    json_t *changes = json_object_get(payload, "changes");
    const char *from = str(payload, "from"), *to = str(payload, "to");
    if (from && to)
        fprintf(f, "  %s -> %s\n", from, to);
    else if (json_is_object(changes))
        fprintf(f, "  changed: %zu field(s)\n", json_object_size(changes));
    const char *when = str(item, "createdAt");
    if (when)
        fprintf(f, "  %s\n", when);
}

int mail_render(const char *username, json_t *items, int digest, char **subject, char **text)
{
    *subject = *text = NULL;
    size_t n = json_array_size(items);
    if (n == 0)
        return -1;
    char *body = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&body, &blen);
    if (!f)
        return -1;
    fprintf(f, "Hello %s,\n\n", username && *username ? username : "there");
    if (digest)
        fprintf(f, "Here is what happened since your last digest (%zu notification%s):\n\n", n,
                n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++)
        one(f, json_array_get(items, i));
    fprintf(f, "\nYou get these mails because of your notification preferences. To stop "
               "them for %s, use the unsubscribe link of your mail client or the link in "
               "this mail's List-Unsubscribe header.\n",
            digest ? "these types" : "this type");
    if (fclose(f) != 0) {
        free(body);
        return -1;
    }
    char *subj = NULL;
    size_t slen = 0;
    FILE *s = open_memstream(&subj, &slen);
    if (!s) {
        free(body);
        return -1;
    }
    if (digest) {
        fprintf(s, "[Panthera] Your daily digest: %zu notification%s", n, n == 1 ? "" : "s");
    } else {
        json_t *item = json_array_get(items, 0);
        const char *about = subject_of(json_object_get(item, "payload"));
        fprintf(s, "[Panthera] %s%s%s", phrase(str(item, "type") ? str(item, "type") : ""),
                *about ? ": " : "", about);
    }
    if (fclose(s) != 0) {
        free(body);
        free(subj);
        return -1;
    }
    *subject = subj;
    *text = body;
    return 0;
}
