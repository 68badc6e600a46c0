/* console.h — the web console plugin: the embedded static files it serves. */
#ifndef CONSOLE_H
#define CONSOLE_H

#include <panthera/panthera.h>
#include <stddef.h>

typedef struct console_asset {
    const char *name;         /* file name under /assets/ (index.html is the app shell) */
    const char *content_type;
    const char *etag;         /* "\"<sha256 hex>\"", quoted as the header wants it */
    const unsigned char *data;
    size_t len;
} console_asset_t;

/* Generated at build time by embed_assets.py; ends with a row whose name is NULL. */
extern const console_asset_t console_assets[];

#endif
