/*
 * content — posts and articles, search, comments, likes, media and the feed (API.md,
 * "Content"). This file holds the descriptor, init and the route table; the handlers are
 * in posts.c (see content.h for the map of the folder).
 */
#include <stdio.h>
#include <string.h>

#include "content.h"

px_plugin_t *content_plugin;

extern const px_migration_t content_migrations[];

int content_fail(px_req_t *req, int rc)
{
    return px_res_code(req, rc,
                       rc == PX_EUNAVAIL ? "the service is busy or unavailable; retry" : NULL);
}

bool content_is_admin(px_req_t *req)
{
    const char *role = px_req_caller_role(req);
    return role && !strcmp(role, "admin");
}

const char *content_etag(px_req_t *req, const char *version)
{
    size_t n = strlen(version) + 3;
    char *out = px_req_alloc(req, n);
    snprintf(out, n, "\"%s\"", version);
    return out;
}

const char *content_post_tag(px_req_t *req, const json_t *post)
{
    char *out = px_req_alloc(req, 96);
    snprintf(out, 96, "%lld-%lld-%lld-%d",
             (long long)json_integer_value(json_object_get(post, "version")),
             (long long)json_integer_value(json_object_get(post, "likeCount")),
             (long long)json_integer_value(json_object_get(post, "commentCount")),
             json_is_true(json_object_get(post, "likedByMe")) ? 1 : 0);
    return out;
}

/* If-Match compares versions only: a like between the client's GET and its PUT must not
 * make the PUT fail. So an entry matches when it is the bare version ("3", as API.md
 * writes it) or a representation tag of that version ("3-..."), whatever counters it
 * carries. */
int content_if_match(px_req_t *req, const char *version)
{
    int rc = px_req_if_match(req, version);
    if (rc != PX_EPRECONDITION)
        return rc;
    const char *h = px_req_header(req, "If-Match");
    size_t vlen = strlen(version);
    for (const char *c = h ? h : ""; (c = strchr(c, '"')) != NULL;) {
        const char *end = strchr(c + 1, '"');
        if (!end)
            break;
        if ((size_t)(end - c - 1) > vlen && !strncmp(c + 1, version, vlen) && c[1 + vlen] == '-')
            return 0;
        c = end + 1;
    }
    return PX_EPRECONDITION;
}

static void answer_204(px_req_t *req, void *ud)
{
    (void)ud;
    px_res_send(req, 204, NULL, "", 0);
}

void content_committed_204(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err)
        px_res_pg_error(req, err);
    else
        content_touch(req, answer_204, NULL);
}

static int content_init(px_plugin_t *self)
{
    content_plugin = self;
#define ROUTE(m, p, fn, a, body, resp, text, q, pp)                                           \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = fn, .auth = a,   \
     .request_schema = body, .responses = resp, .summary = text, .tag = "content",          \
     .query = q, .params = pp}
#define PAGE_QUERY                                                                            \
    {"page", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1000000000, "              \
             "\"default\": 1}", 0, NULL},                                                     \
    {"limit", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100, \"default\": 10}",   \
     0, NULL}
    static const px_response_spec_t post_201[] = {
        {201, "Post", "Created, with Location and ETag", NULL},
        {409, "Error", "The Idempotency-Key was used for another request", NULL}, {0}};
    static const px_response_spec_t post_200[] = {
        {200, "Post", "The post, with ETag", NULL},
        {304, NULL, "If-None-Match matched", NULL},
        {404, "Error", "No such post, or a draft of someone else", NULL}, {0}};
    static const px_response_spec_t post_put[] = {
        {200, "Post", "The changed post, with its new ETag", NULL},
        {403, "Error", "Not the author or an admin", NULL},
        {404, "Error", "No such post, or a draft of someone else", NULL},
        {412, "Error", "If-Match no longer matches", NULL}, {0}};
    static const px_response_spec_t post_204[] = {
        {204, NULL, NULL, NULL},
        {403, "Error", "Not the author or an admin", NULL},
        {404, "Error", "No such post, or a draft of someone else", NULL},
        {412, "Error", "If-Match no longer matches", NULL}, {0}};
    static const px_response_spec_t list_200[] = {{200, "PostList", NULL, NULL}, {0}};
    static const px_param_spec_t list_query[] = {
        PAGE_QUERY,
        {"status", "{\"type\": \"string\", \"enum\": [\"published\", \"draft\"], "
                   "\"default\": \"published\"}", 0,
         "draft: the caller's own drafts (none for an anonymous caller)"},
        {"authorId", "{\"type\": \"string\", \"format\": \"uuid\"}", 0, NULL},
        {"tag", "{\"type\": \"string\", \"maxLength\": 40}", 0, "case-insensitive"},
        {"kind", "{\"type\": \"string\", \"enum\": [\"post\", \"article\"]}", 0, NULL},
        {"q", "{\"type\": \"string\", \"maxLength\": 500}", 0,
         "web-search syntax (words, \"phrases\", -not, or): results ranked, with highlight"},
        {NULL, NULL, 0, NULL}};
    /* An id that is not a uuid names no post: 404, as for one that does not exist. */
    static const px_param_spec_t post_id[] = {
        {"id", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL},
        {NULL, NULL, 0, NULL}};
    static const px_response_spec_t done_204[] = {
        {204, NULL, NULL, NULL},
        {404, "Error", "No such post, or a draft of someone else", NULL}, {0}};
    static const px_response_spec_t comment_201[] = {
        {201, "Comment", "Created, with Location", NULL},
        {404, "Error", "No such post, or a draft of someone else", NULL},
        {409, "Error", "The Idempotency-Key was used for another request", NULL}, {0}};
    static const px_response_spec_t comment_put[] = {
        {200, "Comment", "The changed comment, with its new ETag", NULL},
        {403, "Error", "Not the comment's author", NULL},
        {404, "Error", "No such comment on a post the caller can see", NULL},
        {412, "Error", "If-Match no longer matches", NULL}, {0}};
    static const px_response_spec_t comment_204[] = {
        {204, NULL, NULL, NULL},
        {403, "Error", "Not the comment's author, the post's author or an admin", NULL},
        {404, "Error", "No such comment on a post the caller can see", NULL},
        {412, "Error", "If-Match no longer matches", NULL}, {0}};
    static const px_response_spec_t comments_200[] = {
        {200, "CommentList", "Oldest first", NULL},
        {404, "Error", "No such post, or a draft of someone else", NULL}, {0}};
    static const px_param_spec_t page_query[] = {PAGE_QUERY, {NULL, NULL, 0, NULL}};
    static const px_param_spec_t comment_id[] = {
        {"id", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL},
        {"commentId", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL},
        {NULL, NULL, 0, NULL}};
    static const px_response_spec_t feed_200[] = {
        {200, "PostList", "With sort=new and a full page, Link: <next page by cursor>; "
                          "rel=\"next\"", NULL}, {0}};
    static const px_param_spec_t feed_query[] = {
        PAGE_QUERY,
        {"sort", "{\"type\": \"string\", \"enum\": [\"new\", \"hot\"], "
                 "\"default\": \"new\"}", 0, NULL},
        {"cursor", "{\"type\": \"string\", \"maxLength\": 80, \"pattern\": "
                   "\"^\\\\d{4}-\\\\d\\\\d-\\\\d\\\\dT[0-9:.]+Z,[0-9a-f-]{36}$\"}", 0,
         "sort=new: continue after this post (from the Link header); ignores page"},
        {NULL, NULL, 0, NULL}};
    static const px_response_spec_t tags_200[] = {
        {200, "TagList", "Most used first, ties by name", NULL}, {0}};
    static const px_response_spec_t media_201[] = {
        {201, "Media", "Stored (JPEG/PNG/WebP/MP4 without metadata), with Location", NULL},
        {400, "Error", "Empty, or damaged for its type", NULL},
        {413, "Error", "Larger than media_max_size", NULL},
        {415, "Error", "Not an allowed type, or not the declared one", NULL}, {0}};
    static const px_response_spec_t media_200[] = {
        {200, NULL, "The file (ETag, Range, nosniff, sandbox)", "application/octet-stream"},
        {404, "Error", "No such media, or one the caller may not see", NULL}, {0}};
    static const px_param_spec_t media_query[] = {
        {"filename", "{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 255}", 0,
         "the name downloads get (Content-Disposition)"},
        {NULL, NULL, 0, NULL}};
    static const char *const media_types[] = {"image/png", "image/jpeg", "image/jpg", "image/gif",
                                              "image/webp", "video/mp4", "video/webm",
                                              "application/pdf", NULL};
    static const px_route_spec_t routes[] = {
        ROUTE("GET", "/v1/posts", posts_list, PX_AUTH_OPTIONAL, NULL, list_200,
              "List published posts (or the caller's drafts), newest first", list_query, NULL),
        ROUTE("POST", "/v1/posts", posts_create, PX_AUTH_REQUIRED, "CreatePostRequest",
              post_201, "Create a post or article (Idempotency-Key)", NULL, NULL),
        ROUTE("GET", "/v1/posts/:id", posts_get, PX_AUTH_OPTIONAL, NULL, post_200,
              "Get a post (a draft only by its author)", NULL, post_id),
        ROUTE("PUT", "/v1/posts/:id", posts_update, PX_AUTH_REQUIRED, "UpdatePostRequest",
              post_put, "Change a post (author or admin; If-Match)", NULL, post_id),
        ROUTE("DELETE", "/v1/posts/:id", posts_delete, PX_AUTH_REQUIRED, NULL, post_204,
              "Delete a post (author or admin; If-Match)", NULL, post_id),
        ROUTE("POST", "/v1/posts/:id/like", likes_add, PX_AUTH_REQUIRED, NULL, done_204,
              "Like a post (idempotent)", NULL, post_id),
        ROUTE("DELETE", "/v1/posts/:id/like", likes_remove, PX_AUTH_REQUIRED, NULL, done_204,
              "Take a like back (idempotent)", NULL, post_id),
        ROUTE("GET", "/v1/posts/:id/comments", comments_list, PX_AUTH_OPTIONAL, NULL,
              comments_200, "A post's comments, oldest first", page_query, post_id),
        ROUTE("POST", "/v1/posts/:id/comments", comments_create, PX_AUTH_REQUIRED,
              "CommentRequest", comment_201, "Comment on a post (@username mentions; "
              "Idempotency-Key)", NULL, post_id),
        ROUTE("PUT", "/v1/posts/:id/comments/:commentId", comments_update, PX_AUTH_REQUIRED,
              "CommentRequest", comment_put, "Edit a comment (its author; If-Match)", NULL,
              comment_id),
        ROUTE("DELETE", "/v1/posts/:id/comments/:commentId", comments_delete,
              PX_AUTH_REQUIRED, NULL, comment_204,
              "Delete a comment (its author, the post's author or an admin; If-Match)", NULL,
              comment_id),
        ROUTE("GET", "/v1/feed", feed_get, PX_AUTH_OPTIONAL, NULL, feed_200,
              "Published posts, newest (keyset) or hottest (Redis, PostgreSQL fallback)",
              feed_query, NULL),
        {.size = sizeof(px_route_spec_t), .method = "POST", .pattern = "/v1/media",
         .handler = media_upload, .auth = PX_AUTH_REQUIRED, .responses = media_201,
         .summary = "Upload an image, video or PDF (raw body; Idempotency-Key)",
         .tag = "content", .query = media_query, .content_types = media_types,
         .max_body = 0 /* set from media_max_size below */},
        ROUTE("GET", "/v1/media/:id", media_get, PX_AUTH_OPTIONAL, NULL, media_200,
              "Download an upload (as visible as its post; before, its uploader's)", NULL,
              post_id),
        ROUTE("GET", "/v1/tags", tags_get, PX_AUTH_OPTIONAL, NULL, tags_200,
              "The most used tags of published posts, with counts", page_query, NULL),
    };
    px_config_declare(self, "media_max_size", "20m");
    uint64_t media_max = 0;
    int rc = px_config_size(self, "media_max_size", &media_max);
    if (!rc && (media_max < 1024 || media_max > ((uint64_t)1 << 30))) {
        px_log(self, PX_LOG_ERROR, "[plugin:content] media_max_size must be 1k to 1g");
        rc = PX_EINVAL;
    }
    if (!rc)
        rc = px_migrations(self, content_migrations);
    if (!rc)
        rc = feed_init(self);
    if (!rc)
        rc = media_sweep_init(self);
    if (!rc)
        rc = user_deleted_init(self);
    if (!rc)
        rc = px_hook_declare(self, "before_post_publish",
                             "checks or changes a write whose result is a published post "
                             "{title, body, kind, tags, status} as given (PUT: with id)");
    if (!rc)
        rc = px_hook_declare(self, "before_comment_create",
                             "checks or changes a new comment {postId, body}");
    if (!rc)
        rc = px_schema(self, NULL, content_schemas);
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++) {
        px_route_spec_t spec = routes[i];
        if (spec.handler == media_upload)
            spec.max_body = (size_t)media_max;
        rc = px_route_add(self, &spec);
    }
    return rc;
}

static const char *const content_depends[] = {"user", NULL};

static void content_fini(px_plugin_t *self)
{
    (void)self;
    feed_fini();
}

PX_PLUGIN("content", "1.0.0", content_init, content_fini, content_depends);
