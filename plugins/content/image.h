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
/* In place, for a JPEG inside another file (pdf.c): zero the payload of every metadata
 * segment image_jpeg_clean would drop (lengths kept, so nothing moves), up to the scan. */
void image_jpeg_blank(unsigned char *p, size_t n);
/* The WebP at p without its EXIF, XMP and unknown chunks (see image.c), as above. */
int image_webp_clean(const unsigned char *p, size_t n, unsigned char **out, size_t *out_len,
                     int *width, int *height);
/* video.c: a copy of the MP4 at p (same length) whose udta, meta and XMP uuid boxes are
 * free boxes with zeroed payloads, in *out (malloc'd). 0, or -1 for a damaged file
 * (nothing to free). */
int video_mp4_clean(const unsigned char *p, size_t n, unsigned char **out);
/* The same for a WebM: Tags, Attachments, Info's Title and DateUTC become Void elements. */
int video_webm_clean(const unsigned char *p, size_t n, unsigned char **out);
/* pdf.c: a copy of the PDF at p (same length) without its document information, XMP
 * metadata and the metadata of embedded JPEGs, in *out (malloc'd). 0; -1 when a
 * referenced object is missing (damaged); -2 when metadata sits where it cannot be
 * reached in place (compressed): refuse the file. Nothing to free on error. */
int pdf_clean(const unsigned char *p, size_t n, unsigned char **out);
/* The size of a GIF or WebP: 0, or -1 when the header is damaged. */
int image_size(const char *type, const unsigned char *p, size_t n, int *width, int *height);

#endif
