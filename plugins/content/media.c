/*
 * media.c — POST /v1/media (upload) and GET /v1/media/{id} (download), through the host's
 * blob store.
 *
 * The upload's type is what its bytes say (image.c), from an allow-list: PNG, JPEG, GIF,
 * WebP, MP4, WebM, PDF; anything else is 415, and so is a declared Content-Type that is
 * not the sniffed one (a client that says PNG and sends a PDF is refused, not trusted).
 * JPEG, PNG and WebP are stored as cleaned copies (image.c: metadata dropped, orientation
 * kept as the only Exif tag); MP4 and WebM with their metadata boxes blanked (video.c);
 * PDF with its document information, XMP and embedded JPEGs' metadata blanked (pdf.c;
 * 415 when it keeps them compressed, where that cannot be done). So no EXIF, GPS or camera
 * data is stored, let alone served. GIF is stored as sent (its comment and XMP
 * application extensions are not removed; README.md says so).
 * A file that does not parse as its type is 400. The size limit is the route's
 * max_body ([plugin:content] media_max_size): larger is 413 before any byte is stored.
 *
 * The blob is stored, then in one (idempotent) transaction referenced and recorded; the
 * download answers with px_res_file (ETag, Range, nosniff, sandbox; inline only for
 * raster images: a PDF or a video is an attachment). A media is as visible as the post
 * that holds it (posts.c attaches and deletes them, store.c: store_media_attach); until a
 * post holds it, only its uploader sees it (404 for everyone else).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content.h"
#include "image.h"

typedef struct upload {
    char id[37];
    char blob_id[65];
    const char *type;
    uint64_t size;
    int width, height;
    px_pg_txn_t *txn;
} upload_t;

static int inserted(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    upload_t *u = ud;
    (void)res;
    const char *url = px_req_printf(req, "/v1/media/%s", u->id);
    json_t *body = json_pack("{s:s, s:s, s:s, s:I}", "id", u->id, "url", url, "contentType",
                             u->type, "size", (json_int_t)u->size);
    if (u->width) {
        json_object_set_new(body, "width", json_integer(u->width));
        json_object_set_new(body, "height", json_integer(u->height));
    }
    px_res_header(req, "Location", url);
    return px_pg_commit_respond(u->txn, 201, body);
}

/* A blob callback, not a query's: its failures are answered here (the open transaction
 * ends with the request). */
static void referenced(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    upload_t *u = ud;
    (void)blob;
    if (!req)
        return;
    if (status) {
        content_fail(req, status == PX_ENOENT ? PX_EUNAVAIL : status);
        return;
    }
    const char *v[] = {u->id, px_req_caller_id(req), u->blob_id, u->type,
                       px_req_printf(req, "%llu", (unsigned long long)u->size),
                       u->width ? px_req_printf(req, "%d", u->width) : NULL,
                       u->width ? px_req_printf(req, "%d", u->height) : NULL,
                       px_req_query(req, "filename")};
    int rc = px_pg_txn_run(u->txn, "media_insert",
                           "INSERT INTO content_media (id, owner_id, blob_id, content_type, "
                           "size, width, height, filename) VALUES ($1, $2, $3, $4, $5, $6, "
                           "$7, $8)",
                           8, v, inserted, u);
    if (rc)
        content_fail(req, rc);
}

static int begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    upload_t *u = ud;
    u->txn = txn;
    return px_blob_ref(req, u->blob_id, px_req_printf(req, "media:%s", u->id), referenced, u);
}

static void stored(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    upload_t *u = ud;
    if (!req)
        return;
    if (status) {
        content_fail(req, status);
        return;
    }
    snprintf(u->blob_id, sizeof(u->blob_id), "%s", blob->id);
    u->size = blob->size;
    int rc = px_pg_begin_run(req, PX_PG_IDEMPOTENT, begun, u);
    if (rc && rc != PX_DONE)
        content_fail(req, rc);
}

/* The declared type without parameters, lower-case, in request memory ("" when absent). */
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

int media_upload(px_req_t *req, void *ud)
{
    (void)ud;
    size_t n = 0;
    const unsigned char *p = px_req_body(req, &n);
    if (n == 0)
        return px_res_error(req, 400, "bad_request", "the body is empty: send the file", NULL);
    const char *type = image_sniff(p, n);
    if (!type)
        return px_res_error(req, 415, "bad_request",
                            "the file is not a PNG, JPEG, GIF, WebP, MP4, WebM or PDF", NULL);
    const char *declared = declared_type(req);
    if (strcmp(declared, type) && !(!strcmp(type, "image/jpeg") && !strcmp(declared, "image/jpg"))) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the Content-Type says %.40s but the file is %s",
                 *declared ? declared : "nothing", type);
        return px_res_error(req, 415, "bad_request", msg, NULL);
    }
    upload_t *u = px_req_alloc(req, sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->type = type;
    int rc = px_uuid_new(u->id);
    if (rc)
        return rc;
    unsigned char *clean = NULL;
    size_t clean_len = 0;
    int bad = 0;
    if (!strcmp(type, "image/jpeg"))
        bad = image_jpeg_clean(p, n, &clean, &clean_len, &u->width, &u->height);
    else if (!strcmp(type, "image/png"))
        bad = image_png_clean(p, n, &clean, &clean_len, &u->width, &u->height);
    else if (!strcmp(type, "image/webp"))
        bad = image_webp_clean(p, n, &clean, &clean_len, &u->width, &u->height);
    else if (!strcmp(type, "video/mp4") || !strcmp(type, "video/webm")) {
        bad = !strcmp(type, "video/mp4") ? video_mp4_clean(p, n, &clean)
                                         : video_webm_clean(p, n, &clean);
        clean_len = n;
    }
    else if (!strncmp(type, "image/", 6))
        bad = image_size(type, p, n, &u->width, &u->height);
    else if (!strcmp(type, "application/pdf")) {
        bad = pdf_clean(p, n, &clean);
        clean_len = n;
    }
    if (bad == -2)
        return px_res_error(req, 415, "bad_request",
                            "the PDF keeps metadata where it cannot be removed (in an "
                            "object stream, a compressed XMP stream, or too many "
                            "metadata objects): save it without compressed objects",
                            NULL);
    if (bad)
        return px_res_error(req, 400, "bad_request",
                            "the file is damaged or truncated for its type", NULL);
    rc = clean ? px_blob_put(req, clean, clean_len, stored, u) : px_blob_put(req, p, n, stored, u);
    free(clean);
    return rc ? content_fail(req, rc) : PX_ASYNC;
}

/* ---- GET /v1/media/{id} ---- */

static int found(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    (void)ud;
    if (px_pg_rows(res) == 0)
        return px_res_error(req, 404, "not_found", "no such media", NULL);
    px_file_response_t resp = PX_FILE_RESPONSE_INIT;
    resp.blob_id = px_pg_value(res, 0, 0);
    resp.filename = px_pg_value(res, 0, 1);
    return px_res_file(req, &resp);
}

int media_get(px_req_t *req, void *ud)
{
    (void)ud;
    char id[37];
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    rc = store_media_get(req, id, px_req_caller_id(req), found, NULL);
    return rc ? rc : PX_ASYNC;
}
