/* blob_internal.h — the interface between blob.c (jobs, the SDK calls) and its backends,
 * blob_dir.c and blob_pg.c. Every backend function blocks and runs on the thread pool
 * only; they return 0 or a negative PX_E* code. */
#ifndef PX_BLOB_INTERNAL_H
#define PX_BLOB_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "blob.h"
#include "config.h"

typedef struct blob_backend {
    const char *name;
    /* Store `size` bytes of `fd` (from offset 0) as `id`, whose type is `ctype`; a blob
     * that exists already is only marked fresh again (its sweep grace restarts). */
    int (*put)(blob_store_t *s, int fd, uint64_t size, const char *id, const char *ctype);
    /* Size and type of `id`; PX_ENOENT when not stored. */
    int (*stat)(blob_store_t *s, const char *id, uint64_t *size, char *ctype, size_t ctlen);
    /* A readable fd with the content of `id` (the caller closes it). */
    int (*open)(blob_store_t *s, const char *id, int *fd, uint64_t *size);
    /* Add (PX_ENOENT when `id` is not stored) or drop a reference `ref` of `owner`. */
    int (*ref)(blob_store_t *s, const char *id, const char *owner, const char *ref);
    int (*unref)(blob_store_t *s, const char *id, const char *owner, const char *ref);
    /* Remove blobs without references last stored more than `grace_ms` ago; *removed
     * counts them. */
    int (*sweep)(blob_store_t *s, uint64_t grace_ms, uint64_t *removed);
    void (*close)(blob_store_t *s);
} blob_backend_t;

struct blob_store {
    const storage_settings_t *cfg;
    const char *conninfo; /* [postgres] conninfo, for the postgres backend */
    const blob_backend_t *backend;
    pthread_mutex_t lock; /* the postgres backend's one connection */
    void *conn;
    bool schema_ready;
};

extern const blob_backend_t blob_dir_backend;
extern const blob_backend_t blob_pg_backend;

/* A name for `owner`'s `ref` that is safe in a path: hex SHA-256 of "owner\nref". */
void blob_ref_key(const char *owner, const char *ref, char out[65]);
/* Sniff the first bytes of `fd`. */
void blob_sniff_fd(int fd, char *out, size_t outlen);

#endif
