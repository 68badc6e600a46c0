/* blob.h — the host's blob store ([storage]): content-addressed files for plugins, kept in
 * a directory (blob_dir.c) or in PostgreSQL (blob_pg.c). The SDK calls (px_blob_*) are
 * implemented in blob.c; file responses (px_res_file) in file_response.c. */
#ifndef PX_BLOB_H
#define PX_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

struct worker;
typedef struct blob_store blob_store_t;

/* Start the worker's store: its periodic sweep (when [storage] sweep_interval is set).
 * Nothing touches the disk or the database until a blob is used. */
void blob_worker_start(struct worker *w);
/* Close the sweep's timer; the worker's loop then runs once more to let it go. */
void blob_worker_stop(void);

/* The request is ending: its store work still running is detached (its callback is not
 * called), its spool closed and a file being sent let go. */
void blob_req_release(px_req_t *req);

/* What a job that opened a blob for a file response got (file_response.c). */
typedef struct blob_open {
    int status; /* 0, PX_ENOENT, PX_EUNAVAIL */
    int fd;     /* -1 unless status is 0; the caller closes it */
    uint64_t size;
    char id[65];
    char content_type[128];
} blob_open_t;
typedef void (*blob_open_fn)(px_req_t *req, blob_open_t *result, void *arg);
/* Open blob `id` for reading off the loop; `fn` runs on the loop with the result unless the
 * request ends first (then the fd is closed for it). Returns 0 or PX_EUNAVAIL. */
int blob_open_async(px_req_t *req, const char *id, blob_open_fn fn, void *arg);

/* 64 lower-case hex digits. */
bool blob_id_valid(const char *id);
/* The MIME type libmagic sees in `data` ("application/octet-stream" when it cannot tell).
 * Thread-safe. */
void blob_sniff(const void *data, size_t len, char *out, size_t outlen);

#endif
