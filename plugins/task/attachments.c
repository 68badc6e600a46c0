/*
 * attachments.c — GET/POST /v1/tasks/{id}/attachments, GET/DELETE /v1/attachments/{id}
 * (API.md "Projects and tasks", Conventions "Files").
 *
 * Upload. The body is the file, raw, with its Content-Type and ?filename=. The route's
 * max_body is [plugin:task] attachment_max_size, so a larger body is 413 from its
 * Content-Length, before it is read; bodies past 1 MiB are spooled to disk and linked
 * into the blob store without a copy. The type is what the blob store's libmagic says,
 * never the client's: outside [plugin:task] attachment_types it is 415, and so is a
 * declared type that the bytes contradict (HTML sent as image/png) — except
 * application/octet-stream ("I don't know") and one text type for another (text/csv that
 * sniffs as text/plain). The stored and served type is the sniffed one.
 *
 * Order of an upload: store the blob (outside any transaction: hashing 25 MB must not
 * hold the project's lock), then the gate (idempotent transaction, project locked, 404
 * for non-members, 403 for viewers), then the blob reference "attachment:<id>", then the
 * row with its activity and event, then commit. A failure between the reference and the
 * commit drops the reference; a failed commit itself leaves one reference too many (a
 * blob kept, never a row without its blob). A blob nobody references — a refused upload's,
 * an Idempotency-Key replay's — is swept by the host after [storage] sweep_grace.
 *
 * Download answers with the host's file response (ETag, If-None-Match, one Range,
 * nosniff, CSP sandbox, inline only for raster images, RFC 6266 filename*); a read runs
 * without a transaction, so no pooled connection waits on a slow reader.
 *
 * Delete: the uploader, an owner of the project or an admin (others 403; viewers 403).
 * The row's blob reference is dropped after the commit by release.c, like those of the
 * attachments that go with a deleted task or project.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

const char *const *attachment_types;
uint64_t attachment_max_size;

/* ---- configuration ---- */

#define TYPES_MAX 64

int attachments_config(px_plugin_t *self)
{
    static char buf[2048];
    static const char *list[TYPES_MAX + 2];
    uint64_t max = 0;
    int rc = px_config_size(self, "attachment_max_size", &max);
    if (!rc && (max < 1 || max > ((uint64_t)1 << 32))) {
        px_log(self, PX_LOG_ERROR, "[plugin:task] attachment_max_size must be 1 to 4g");
        return PX_EINVAL;
    }
    if (rc)
        return rc;
    attachment_max_size = max;
    const char *types = px_config_get(self, "attachment_types");
    if (!types || strlen(types) >= sizeof(buf)) {
        px_log(self, PX_LOG_ERROR, "[plugin:task] attachment_types is missing or too long");
        return PX_EINVAL;
    }
    memcpy(buf, types, strlen(types) + 1);
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", \t", &save); t;
         t = strtok_r(NULL, ", \t", &save)) {
        if (n == TYPES_MAX || !strchr(t, '/') || !strcmp(t, "*/*")) {
            px_log(self, PX_LOG_ERROR,
                   "[plugin:task] attachment_types: at most %d types like image/png or "
                   "image/*, got %s", TYPES_MAX, t);
            return PX_EINVAL;
        }
        for (char *c = t; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        list[n++] = t;
    }
    if (!n) {
        px_log(self, PX_LOG_ERROR, "[plugin:task] attachment_types is empty");
        return PX_EINVAL;
    }
    /* The declared type may say "unknown"; the sniffed one decides (attachment_allowed). */
    list[n++] = "application/octet-stream";
    list[n] = NULL;
    attachment_types = list;
    return 0;
}

/* `type` (lower case, no parameters) is on the allow-list: exactly, or by its family
 * ("image/" and a star). */
static bool attachment_allowed(const char *type)
{
    for (const char *const *t = attachment_types; *t; t++) {
        if (!strcmp(*t, "application/octet-stream"))
            continue; /* accepted as a declaration only */
        size_t n = strlen(*t);
        if (n > 2 && !strcmp(*t + n - 2, "/*") ? !strncmp(type, *t, n - 1) : !strcmp(type, *t))
            return true;
    }
    return false;
}

/* The declared type without parameters, lower case, in request memory ("" when absent). */
static const char *declared_type(px_req_t *req)
{
    const char *ct = px_req_header(req, "Content-Type");
    if (!ct)
        return "";
    size_t n = strcspn(ct, "; \t");
    char *out = px_req_alloc(req, n + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32 : ct[i]);
    out[n] = '\0';
    return out;
}

/* What the client declared does not contradict what the bytes are. */
static bool declared_agrees(const char *declared, const char *sniffed)
{
    if (!*declared || !strcmp(declared, sniffed) ||
        !strcmp(declared, "application/octet-stream"))
        return true;
    if (!strncmp(declared, "text/", 5) && !strcmp(sniffed, "text/plain"))
        return strcmp(declared, "text/html") && strcmp(declared, "text/xml");
    return !strcmp(declared, "image/jpg") && !strcmp(sniffed, "image/jpeg");
}

/* The name a download gets: the last path segment of ?filename= (a browser's
 * "C:\fakepath\x.png" or "../../etc/passwd" names only the file), valid UTF-8 without
 * control characters. NULL (answered 400) when nothing usable is left. */
static const char *clean_filename(px_req_t *req)
{
    const char *given = px_req_query(req, "filename");
    const char *why = NULL;
    const char *base = given;
    if (!given || !*given)
        why = "required: the file's name";
    for (const char *p = given; !why && *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            why = "must not contain control characters (CR, LF, NUL...)";
        else if (c == '/' || c == '\\')
            base = p + 1;
    }
    if (!why && (!*base || !strcmp(base, ".") || !strcmp(base, "..")))
        why = "names a directory, not a file";
    json_t *check = why ? NULL : json_string(base);
    if (!why && !check)
        why = "must be UTF-8";
    json_decref(check);
    if (why) {
        px_res_error(req, 400, "validation_failed", "the request has invalid fields",
                     json_pack("{s:s}", "filename", why));
        return NULL;
    }
    return base;
}

/* ---- GET /v1/tasks/{id}/attachments ---- */

const task_route_t attachments_list = {
    .scope = SCOPE_TASK, .need = ROLE_VIEWER, .paged = true, .then = op_list,
    .list = sql_attachment_list, .items = "attachments"};

/* ---- POST /v1/tasks/{id}/attachments ---- */

typedef struct upload {
    task_op_t *op;
    char id[37];
    char blob[65];
    char ref[48];
    const char *type;
    const char *filename;
    uint64_t size;
    bool referenced;
} upload_t;

static upload_t *the_upload(task_op_t *op)
{
    return (upload_t *)op->extra;
}

static void dropped(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    (void)req;
    (void)blob;
    (void)status;
    (void)ud;
}

/* The row did not make it: the reference goes (if that fails too, the blob stays, which
 * wastes space but never loses a file a row names). */
static void upload_fail(upload_t *u, const px_pg_error_t *err, int code)
{
    if (u->referenced)
        px_blob_unref(u->op->req, u->blob, u->ref, dropped, NULL);
    u->referenced = false;
    if (err)
        px_res_pg_error(u->op->req, err);
    else
        px_res_code(u->op->req, code, NULL);
}

static void inserted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    task_op_t *op = ud;
    upload_t *u = the_upload(op);
    if (err) {
        upload_fail(u, err, 0);
        return;
    }
    json_t *doc = op_json(res, 0, 0);
    if (!doc) {
        upload_fail(u, NULL, PX_EINTERNAL);
        return;
    }
    px_res_header(req, "Location", px_req_printf(req, "/v1/attachments/%s", u->id));
    op_event(op, "task.attachment_added", op->tid,
             json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:I}", "projectId", op->pid, "taskId",
                       op->tid, "title", px_pg_value(res, 0, 1), "attachmentId", u->id,
                       "filename", u->filename, "contentType", u->type, "size",
                       (json_int_t)u->size));
    int rc = op_finish(op, 201, doc);
    if (rc < 0) /* a raw callback (it drops the reference on a failure): answer it here */
        px_res_code(req, rc, NULL);
}

static void referenced(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    task_op_t *op = ud;
    (void)blob;
    if (!req)
        return;
    upload_t *u = the_upload(op);
    if (status) {
        /* PX_ENOENT: the sweep took the blob between the store and the reference. */
        upload_fail(u, NULL, status == PX_ENOENT ? PX_EUNAVAIL : status);
        return;
    }
    u->referenced = true;
    char size[24];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)u->size);
    const char *values[] = {op->pid, op->tid, u->id, u->blob, u->filename, u->type, size,
                            op->caller};
    if (px_pg_txn_query(op->txn, "attachment_insert", sql_attachment_insert, 8, values,
                        inserted, op))
        upload_fail(u, NULL, PX_EINTERNAL);
}

static int upload_gated(task_op_t *op)
{
    upload_t *u = the_upload(op);
    return px_blob_ref(op->req, u->blob, u->ref, referenced, op);
}

static void stored(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    task_op_t *op = ud;
    if (!req)
        return;
    if (status) {
        px_res_code(req, status, "the file could not be stored");
        return;
    }
    upload_t *u = the_upload(op);
    const char *type = op_strdup(op, blob->content_type ? blob->content_type : "");
    if (!attachment_allowed(type)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "files of type %.80s may not be attached here",
                 *type ? type : "unknown");
        px_res_error(req, 415, "unsupported_media_type", msg, NULL);
        return;
    }
    const char *declared = declared_type(req);
    if (!declared_agrees(declared, type)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "the Content-Type says %.60s but the file is %.60s",
                 declared, type);
        px_res_error(req, 415, "unsupported_media_type", msg, NULL);
        return;
    }
    u->type = type;
    u->size = blob->size;
    snprintf(u->blob, sizeof(u->blob), "%s", blob->id);
    int rc = op_gate(op);
    if (rc != PX_ASYNC && rc != PX_DONE)
        px_res_code(req, rc, NULL);
}

/* The blob is stored first, outside the transaction (hashing a large file must not hold
 * the project's lock); the gate runs when it is (stored). */
static int upload_handler(px_req_t *req, const task_route_t *route)
{
    const char *filename = clean_filename(req);
    if (!filename)
        return PX_DONE;
    uint64_t size = 0;
    int fd;
    if (px_req_body_file(req, &fd, &size)) {
        size_t n = 0;
        px_req_body(req, &n);
        size = n;
    }
    if (size == 0)
        return px_res_error(req, 400, "bad_request", "the body is empty: send the file", NULL);
    task_op_t *op;
    int rc = op_prepare(req, route, &op);
    if (rc)
        return rc;
    upload_t *u = px_req_alloc(req, sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->op = op;
    u->filename = filename;
    rc = px_uuid_new(u->id);
    if (rc)
        return rc;
    snprintf(u->ref, sizeof(u->ref), "attachment:%s", u->id);
    op->extra = u;
    rc = px_blob_put_body(req, stored, op);
    return rc ? rc : PX_ASYNC;
}

const task_route_t attachments_upload = {.scope = SCOPE_TASK, .need = ROLE_MEMBER, .lock = true,
                                         .idempotent = true, .then = upload_gated,
                                         .handler = upload_handler};

/* ---- GET /v1/attachments/{id} ---- */

static int get_gated(task_op_t *op)
{
    px_file_response_t resp = PX_FILE_RESPONSE_INIT;
    resp.blob_id = op->blob;
    resp.filename = op->filename;
    return px_res_file(op->req, &resp);
}

const task_route_t attachments_get = {
    .scope = SCOPE_ATTACHMENT, .need = ROLE_VIEWER, .then = get_gated};

/* ---- DELETE /v1/attachments/{id} ---- */

static int deleted(task_op_t *op, const px_pg_result_t *res)
{
    op_event(op, "task.attachment_deleted", op->tid,
             json_pack("{s:s, s:s, s:s?, s:s, s:s}", "projectId", op->pid, "taskId", op->tid,
                       "title", px_pg_value(res, 0, 0), "attachmentId", op->aid, "filename",
                       op->filename));
    return op_finish(op, 204, NULL);
}

static int delete_gated(task_op_t *op)
{
    bool mine = op->uploader && op->caller && !strcmp(op->uploader, op->caller);
    bool owner = op->role && !strcmp(op->role, "owner");
    if (!(mine || owner || op->admin))
        return px_res_error(op->req, 403, "forbidden",
                            "only the uploader, an owner of the project or an admin may delete "
                            "an attachment",
                            NULL);
    const char *values[] = {op->pid, op->aid, op->caller};
    return op_query(op, "attachment_delete", sql_attachment_delete, 3, values, deleted);
}

/* Who may is decided after the gate (delete_gated): the uploader, an owner, an admin. */
const task_route_t attachments_delete = {.scope = SCOPE_ATTACHMENT, .need = ROLE_MEMBER,
                                         .lock = true, .release = true, .then = delete_gated};
