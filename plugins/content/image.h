/*
 * image.h — sniffing and cleaning uploaded files (image.c). Pure functions of the bytes:
 * no px_* call (exercised through the upload in tests/api/test_content_media.py).
 */
#ifndef CONTENT_IMAGE_H
#define CONTENT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The media type the first bytes say (image/png, image/jpeg, image/gif, image/webp,
 * video/mp4, video/webm, application/pdf), or NULL for anything else. A static string. */
const char *image_sniff(const unsigned char *p, size_t n);
/* A copy of the JPEG (PNG) at p without its metadata (see image.c) in *out (malloc'd:
 * the caller frees it) and its displayed size. 0, or -1 for a damaged or truncated file
 * (nothing to free). */
int image_jpeg_clean(const unsigned char *p, size_t n, unsigned char **out, size_t *out_len,
                     int *width, int *height);
int image_png_clean(const unsigned char *p, size_t n, unsigned char **out, size_t *out_len,
                    int *width, int *height);
/* The size of a GIF or WebP: 0, or -1 when the header is damaged. */
int image_size(const char *type, const unsigned char *p, size_t n, int *width, int *height);

#endif
