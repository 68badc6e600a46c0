/* file_response.h — answering with a stored blob (px_res_file): the conditional and range
 * logic, safe headers, and sending the body from a file with sendfile. */
#ifndef PX_FILE_RESPONSE_H
#define PX_FILE_RESPONSE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "request.h"
#include "util.h"

struct conn;

enum file_range { FILE_RANGE_NONE, FILE_RANGE_ONE, FILE_RANGE_UNSATISFIABLE };

/* A Range header against a file of `size` bytes: FILE_RANGE_ONE with the inclusive
 * [*first, *last]; FILE_RANGE_UNSATISFIABLE (416); or FILE_RANGE_NONE, the whole file, for
 * no header, another unit, a malformed one, or several ranges (we do not send multipart). */
int file_range_parse(const char *header, uint64_t size, uint64_t *first, uint64_t *last);
/* Does If-None-Match `header` match `etag` (quoted)? Weak comparison, "*" matches. */
bool file_etag_matches(const char *header, const char *etag);
/* Only raster images are shown inline: SVG and HTML can carry script. */
bool file_type_inline(const char *content_type);
/* Content-Disposition: "inline" or "attachment", with `filename` (UTF-8, may be NULL) as
 * an ASCII fallback filename="..." and an RFC 6266/8187 filename*=UTF-8''... */
void file_disposition(buf_t *out, const char *filename, bool inline_);

/* http_respond's hand-over for a response whose body is r->file: write `head`, then the
 * body, then end the request as http_conn_write does. */
void file_send_start(struct conn *c, px_req_t *r, uv_buf_t head, bool keep);
/* The request ends: close the file, free the buffers. */
void file_response_release(px_req_t *r);

#endif
