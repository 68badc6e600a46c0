/*
 * filekit — a plugin for the host's file tests (spooled bodies, the blob store, file
 * responses). Never enabled in production.
 *
 *   POST   /v1/files?allow=PREFIX&ref=KEY   the body (spooled past 64 KiB, up to 64 MiB) into
 *          the store -> 201 {"id","sha256","size","contentType","spooled"}; 415 when the
 *          sniffed type does not start with PREFIX; with `ref`, the blob is referenced as KEY
 *   POST   /v1/files/small                  the same, body in memory (default limit)
 *   POST   /v1/files/bytes                  px_blob_put of the in-memory body
 *   GET    /v1/files/:id?name=NAME          px_res_file with NAME as the file name
 *   GET    /v1/files/:id/stat               px_blob_stat -> {"id","size","contentType"}
 *   PUT    /v1/files/:id/refs/:ref          px_blob_ref   -> 200 blob / 404
 *   DELETE /v1/files/:id/refs/:ref          px_blob_unref -> 204
 *   POST   /v1/files/sink                   reads nothing but the spool's size -> {"size",
 *          "spooled"} (a 50 MB upload that stores nothing)
 *   POST   /v1/files/private                the sink, for callers only (PX_AUTH_REQUIRED)
 */
#include <panthera/panthera.h>
#include <stdio.h>
#include <string.h>

static json_t *blob_json(const px_blob_t *b)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", b->id, "sha256", b->sha256, "size",
                     (json_int_t)b->size, "contentType", b->content_type);
}

typedef struct upload {
    const char *allow;
    const char *ref;
    int spooled;
    int bytes;   /* stored with px_blob_put, not px_blob_put_body */
    int retried; /* stored again once after the sweep took it before the reference */
} upload_t;

static void stored(px_req_t *req, const px_blob_t *blob, int status, void *ud);

static int put(px_req_t *req, upload_t *u)
{
    if (!u->bytes)
        return px_blob_put_body(req, stored, u);
    size_t len;
    const void *body = px_req_body(req, &len);
    return px_blob_put(req, body, len, stored, u);
}

static void referenced(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    upload_t *u = ud;
    if (!req)
        return;
    if (status == PX_ENOENT && !u->retried) {
        /* Swept between the store and the reference (its grace is short in tests): as
         * px_blob_ref says, store it again. */
        u->retried = 1;
        if (put(req, u))
            px_res_error(req, 503, "unavailable", "busy", NULL);
        return;
    }
    if (status) {
        px_res_error(req, 500, "internal", "cannot reference the upload", NULL);
        return;
    }
    json_t *out = blob_json(blob);
    json_object_set_new(out, "spooled", json_boolean(u->spooled));
    px_res_json(req, 201, out);
}

static void stored(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    upload_t *u = ud;
    if (!req)
        return;
    if (status) {
        px_res_error(req, 503, "unavailable", "cannot store the upload", NULL);
        return;
    }
    if (u->allow && strncmp(blob->content_type, u->allow, strlen(u->allow)) != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s is not accepted here", blob->content_type);
        px_res_error(req, 415, "unsupported_media_type", msg, NULL);
        return;
    }
    if (u->ref) {
        if (px_blob_ref(req, blob->id, u->ref, referenced, u))
            px_res_error(req, 503, "unavailable", "busy", NULL);
        return;
    }
    json_t *out = blob_json(blob);
    json_object_set_new(out, "spooled", json_boolean(u->spooled));
    px_res_json(req, 201, out);
}

static upload_t *upload_of(px_req_t *req)
{
    upload_t *u = px_req_alloc(req, sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->allow = px_req_query(req, "allow");
    u->ref = px_req_query(req, "ref");
    int fd;
    uint64_t size;
    u->spooled = px_req_body_file(req, &fd, &size) == 0;
    return u;
}

static int upload(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = put(req, upload_of(req));
    return rc ? rc : PX_ASYNC;
}

static int upload_bytes(px_req_t *req, void *ud)
{
    (void)ud;
    upload_t *u = upload_of(req);
    u->bytes = 1;
    int rc = put(req, u);
    return rc ? rc : PX_ASYNC;
}

static int sink(px_req_t *req, void *ud)
{
    (void)ud;
    int fd;
    uint64_t size = 0;
    int spooled = px_req_body_file(req, &fd, &size) == 0;
    if (!spooled)
        px_req_body(req, (size_t *)&size);
    return px_res_json(req, 200,
                       json_pack("{s:I, s:b}", "size", (json_int_t)size, "spooled", spooled));
}

static int download(px_req_t *req, void *ud)
{
    (void)ud;
    px_file_response_t resp = PX_FILE_RESPONSE_INIT;
    resp.blob_id = px_req_param(req, "id");
    resp.filename = px_req_query(req, "name");
    return px_res_file(req, &resp);
}

static void answered(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    (void)ud;
    if (!req)
        return;
    if (status == PX_ENOENT) {
        px_res_error(req, 404, "not_found", "no such blob", NULL);
        return;
    }
    if (status) {
        px_res_error(req, 503, "unavailable", "the store failed", NULL);
        return;
    }
    if (!blob) {
        px_res_send(req, 204, NULL, NULL, 0);
        return;
    }
    px_res_json(req, 200, blob_json(blob));
}

static int stat_blob(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_blob_stat(req, px_req_param(req, "id"), answered, NULL);
    return rc ? rc : PX_ASYNC;
}

static int ref(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_blob_ref(req, px_req_param(req, "id"), px_req_param(req, "ref"), answered, NULL);
    return rc ? rc : PX_ASYNC;
}

static int unref(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_blob_unref(req, px_req_param(req, "id"), px_req_param(req, "ref"), answered, NULL);
    return rc ? rc : PX_ASYNC;
}

static int filekit_init(px_plugin_t *self)
{
    px_route_spec_t specs[] = {
        {.size = sizeof(px_route_spec_t),
         .method = "POST",
         .pattern = "/v1/files",
         .handler = upload,
         .max_body = 64u << 20,
         .spool_above = 64u << 10},
        {.size = sizeof(px_route_spec_t),
         .method = "POST",
         .pattern = "/v1/files/small",
         .handler = upload},
        {.size = sizeof(px_route_spec_t),
         .method = "POST",
         .pattern = "/v1/files/bytes",
         .handler = upload_bytes},
        {.size = sizeof(px_route_spec_t),
         .method = "POST",
         .pattern = "/v1/files/sink",
         .handler = sink,
         .max_body = 64u << 20,
         .spool_above = 64u << 10},
        {.size = sizeof(px_route_spec_t),
         .method = "POST",
         .pattern = "/v1/files/private",
         .handler = sink,
         .max_body = 64u << 20,
         .spool_above = 64u << 10,
         .auth = PX_AUTH_REQUIRED},
        {.size = sizeof(px_route_spec_t),
         .method = "GET",
         .pattern = "/v1/files/:id",
         .handler = download},
        {.size = sizeof(px_route_spec_t),
         .method = "GET",
         .pattern = "/v1/files/:id/stat",
         .handler = stat_blob},
        {.size = sizeof(px_route_spec_t),
         .method = "PUT",
         .pattern = "/v1/files/:id/refs/:ref",
         .handler = ref},
        {.size = sizeof(px_route_spec_t),
         .method = "DELETE",
         .pattern = "/v1/files/:id/refs/:ref",
         .handler = unref},
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        int rc = px_route_add(self, &specs[i]);
        if (rc)
            return rc;
    }
    return 0;
}

PX_PLUGIN("filekit", "1.0.0", filekit_init, NULL, NULL);
