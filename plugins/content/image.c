/*
 * image.c — what the media upload needs to know about a file's bytes, without a library:
 * its type by magic number, an image's width and height, and JPEG and PNG copies with the
 * metadata taken out.
 *
 * JPEG: a walk over the marker segments before the first scan (SOS). Kept: SOFn (read for
 * the size), DQT, DHT, DRI, APP0 (JFIF), APP2 only when it is an ICC profile (colours),
 * APP14 only when it is Adobe's (needed to decode CMYK), and everything from SOS to EOI
 * as is (entropy-coded data holds no metadata; a progressive file's later tables and
 * scans come along). Dropped: every other APPn (APP1 Exif and XMP, APP13 IPTC, ...),
 * COM, and any bytes after EOI. Orientation is KEPT, not applied: a photo taken rotated
 * gets a new, minimal APP1 Exif holding only the Orientation tag (0x0112), so a viewer
 * still shows it upright and nothing else of the original Exif (GPS, camera, dates)
 * survives. The reported width and height are the displayed ones (swapped for
 * orientations 5-8).
 *
 * PNG: a walk over the chunks; eXIf, tEXt, zTXt, iTXt and tIME are dropped, the rest is
 * copied (CRCs stay valid: chunks are copied whole).
 *
 * WebP: a walk over the RIFF chunks; only the image's own (VP8X, VP8, VP8L, ALPH, ANIM,
 * ANMF, ICCP) are copied, so EXIF, XMP and any unknown chunk are dropped, the VP8X flags
 * that announce EXIF and XMP are cleared and the RIFF size rewritten. Orientation is kept
 * as for JPEG: a new EXIF chunk holding only that tag (then the EXIF flag is set again).
 *
 * Every length is checked against what is left; a walk that runs out of bytes is a
 * damaged file (-1), never a read past the end.
 */
#include <stdlib.h>
#include <string.h>

#include "image.h"

static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned le16(const unsigned char *p)
{
    return (unsigned)p[1] << 8 | p[0];
}

static uint32_t le24(const unsigned char *p)
{
    return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

const char *image_sniff(const unsigned char *p, size_t n)
{
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return "image/jpeg";
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6)))
        return "image/gif";
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return "image/webp";
    if (n >= 12 && !memcmp(p + 4, "ftyp", 4))
        return "video/mp4";
    if (n >= 4 && !memcmp(p, "\x1a\x45\xdf\xa3", 4))
        return "video/webm";
    if (n >= 5 && !memcmp(p, "%PDF-", 5))
        return "application/pdf";
    return NULL;
}

/* ---- JPEG ---- */

/* The Orientation (1..8) in a TIFF structure (Exif without its "Exif\0\0"), or 0. */
static int tiff_orientation(const unsigned char *t, size_t tn)
{
    if (tn < 8)
        return 0;
    bool le;
    if (!memcmp(t, "II*\0", 4))
        le = true;
    else if (!memcmp(t, "MM\0*", 4))
        le = false;
    else
        return 0;
    uint32_t ifd = le ? (uint32_t)t[7] << 24 | (uint32_t)t[6] << 16 | (uint32_t)t[5] << 8 | t[4]
                      : be32(t + 4);
    if (ifd > tn || tn - ifd < 2)
        return 0;
    unsigned count = le ? le16(t + ifd) : be16(t + ifd);
    for (unsigned i = 0; i < count; i++) {
        size_t at = ifd + 2 + (size_t)i * 12;
        if (at + 12 > tn)
            return 0;
        unsigned tag = le ? le16(t + at) : be16(t + at);
        unsigned type = le ? le16(t + at + 2) : be16(t + at + 2);
        if (tag == 0x0112 && type == 3) {
            unsigned v = le ? le16(t + at + 8) : be16(t + at + 8);
            return v >= 1 && v <= 8 ? (int)v : 0;
        }
    }
    return 0;
}

/* The Orientation (1..8) in an APP1 Exif payload (after the marker and length), or 0. */
static int exif_orientation(const unsigned char *p, size_t n)
{
    if (n < 14 || memcmp(p, "Exif\0\0", 6))
        return 0;
    return tiff_orientation(p + 6, n - 6);
}

/* The APP1 segment that says only "Orientation = o": Exif header, a big-endian TIFF
 * header, IFD0 with one SHORT entry, no next IFD. */
static size_t orientation_segment(unsigned char *out, int o)
{
    static const unsigned char head[] = {
        0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,  /* marker, length 34, "Exif\0\0" */
        'M', 'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,       /* TIFF header, IFD0 at 8 */
        0x00, 0x01,                                         /* one entry */
        0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,     /* Orientation, SHORT, 1 */
    };
    memcpy(out, head, sizeof(head));
    size_t at = sizeof(head);
    out[at++] = 0x00;
    out[at++] = (unsigned char)o;
    out[at++] = 0x00;
    out[at++] = 0x00;
    memset(out + at, 0, 4); /* no next IFD */
    return at + 4;
}

static bool keep_app(unsigned marker, const unsigned char *payload, size_t n)
{
    if (marker == 0xE0)
        return true; /* JFIF / JFXX */
    if (marker == 0xE2)
        return n >= 12 && !memcmp(payload, "ICC_PROFILE\0", 12);
    if (marker == 0xEE)
        return n >= 5 && !memcmp(payload, "Adobe", 5);
    return false;
}

int image_jpeg_clean(const unsigned char *p, size_t n, unsigned char **out, size_t *out_len,
                     int *width, int *height)
{
    if (n < 4 || p[0] != 0xFF || p[1] != 0xD8)
        return -1;
    /* The copy is never longer than the input plus one orientation segment. */
    unsigned char *o = malloc(n + 64);
    if (!o)
        abort();
    size_t w = 0, at = 2;
    o[w++] = 0xFF;
    o[w++] = 0xD8;
    int orientation = 0, wd = 0, ht = 0;
    size_t orientation_at = 2; /* after SOI, or after APP0 when there is one */
    for (;;) {
        if (at >= n || p[at] != 0xFF)
            goto damaged;
        while (at < n && p[at] == 0xFF)
            at++; /* fill bytes */
        if (at >= n)
            goto damaged;
        unsigned marker = p[at++];
        if (marker == 0xD9 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
            if (marker == 0xD9)
                goto damaged; /* EOI before any scan: no image */
            o[w++] = 0xFF;
            o[w++] = (unsigned char)marker;
            continue;
        }
        if (n - at < 2)
            goto damaged;
        size_t len = be16(p + at);
        if (len < 2 || len > n - at)
            goto damaged;
        const unsigned char *payload = p + at + 2;
        size_t plen = len - 2;
        if (marker == 0xDA) {
            /* From the first scan on, copy up to and including EOI (FF D9: inside the
             * scans every FF is stuffed or a marker, so the first FF D9 is the end). */
            size_t start = at - 2, end = 0;
            for (size_t i = at + len; i + 1 < n; i++)
                if (p[i] == 0xFF && p[i + 1] == 0xD9) {
                    end = i + 2;
                    break;
                }
            if (!end)
                goto damaged;
            memcpy(o + w, p + start, end - start);
            w += end - start;
            break;
        }
        bool keep = true;
        if (marker >= 0xE0 && marker <= 0xEF) {
            if (marker == 0xE1 && !orientation)
                orientation = exif_orientation(payload, plen);
            keep = keep_app(marker, payload, plen);
        } else if (marker == 0xFE) {
            keep = false;
        } else if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
                   marker != 0xCC) {
            if (plen < 5)
                goto damaged;
            ht = (int)be16(payload + 1);
            wd = (int)be16(payload + 3);
        }
        if (keep) {
            memcpy(o + w, p + at - 2, len + 2);
            w += len + 2;
            if (marker == 0xE0 && orientation_at == 2)
                orientation_at = w;
        }
        at += len;
    }
    if (wd <= 0 || ht <= 0)
        goto damaged;
    if (orientation > 1) {
        unsigned char seg[64];
        size_t sl = orientation_segment(seg, orientation);
        memmove(o + orientation_at + sl, o + orientation_at, w - orientation_at);
        memcpy(o + orientation_at, seg, sl);
        w += sl;
    }
    bool turned = orientation >= 5;
    *width = turned ? ht : wd;
    *height = turned ? wd : ht;
    *out = o;
    *out_len = w;
    return 0;
damaged:
    free(o);
    return -1;
}

void image_jpeg_blank(unsigned char *p, size_t n)
{
    size_t at = 2;
    while (n >= 4 && at <= n - 4 && p[at] == 0xFF) {
        unsigned marker = p[at + 1];
        if (marker == 0xDA || marker == 0xD9)
            break; /* the scan: no metadata from here on */
        size_t len = be16(p + at + 2);
        if (len < 2 || len > n - at - 2)
            break;
        bool app = marker >= 0xE0 && marker <= 0xEF;
        if ((app && !keep_app(marker, p + at + 4, len - 2)) || marker == 0xFE)
            memset(p + at + 4, 0, len - 2);
        at += 2 + len;
    }
}

/* ---- PNG ---- */

int image_png_clean(const unsigned char *p, size_t n, unsigned char **out, size_t *out_len,
                    int *width, int *height)
{
    if (n < 8 + 25 || memcmp(p + 12, "IHDR", 4))
        return -1;
    unsigned char *o = malloc(n);
    if (!o)
        abort();
    memcpy(o, p, 8);
    size_t w = 8, at = 8;
    bool ended = false;
    while (!ended) {
        if (n - at < 12)
            goto damaged;
        uint32_t len = be32(p + at);
        if (len > n - at - 12)
            goto damaged;
        const unsigned char *type = p + at + 4;
        ended = !memcmp(type, "IEND", 4);
        static const char *const drop[] = {"eXIf", "tEXt", "zTXt", "iTXt", "tIME"};
        bool keep = true;
        for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
            if (!memcmp(type, drop[i], 4))
                keep = false;
        if (keep) {
            memcpy(o + w, p + at, (size_t)len + 12);
            w += (size_t)len + 12;
        }
        at += (size_t)len + 12;
    }
    uint32_t wd = be32(p + 16), ht = be32(p + 20);
    if (!wd || !ht || wd > 0x7fffffff || ht > 0x7fffffff)
        goto damaged;
    *width = (int)wd;
    *height = (int)ht;
    *out = o;
    *out_len = w;
    return 0;
damaged:
    free(o);
    return -1;
}

/* ---- WebP ---- */

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

int image_webp_clean(const unsigned char *p, size_t n, unsigned char **out, size_t *out_len,
                     int *width, int *height)
{
    if (image_size("image/webp", p, n, width, height))
        return -1;
    uint32_t riff = le32(p + 4);
    if (riff < 4 || riff > n - 8)
        return -1;
    size_t end = (size_t)riff + 8;
    /* The output is never longer than the input plus the orientation chunk. */
    unsigned char *o = malloc(n + 64);
    if (!o)
        abort();
    memcpy(o, p, 12);
    size_t w = 12, at = 12, vp8x_at = 0;
    int orientation = 0;
    while (at < end) {
        if (end - at < 8)
            goto damaged;
        uint32_t len = le32(p + at + 4);
        size_t whole = (size_t)len + 8 + (len & 1);
        if (len > end - at - 8)
            goto damaged;
        const unsigned char *fourcc = p + at;
        if (!memcmp(fourcc, "EXIF", 4)) {
            const unsigned char *x = p + at + 8;
            orientation = len >= 6 && !memcmp(x, "Exif\0\0", 6)
                              ? tiff_orientation(x + 6, len - 6)
                              : tiff_orientation(x, len);
        }
        static const char *const keep[] = {"VP8X", "VP8 ", "VP8L", "ALPH", "ANIM", "ANMF",
                                           "ICCP"};
        bool kept = false;
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
            if (!memcmp(fourcc, keep[i], 4))
                kept = true;
        if (kept) {
            if (!memcmp(fourcc, "VP8X", 4) && len >= 10)
                vp8x_at = w;
            size_t copy = whole <= end - at ? whole : (size_t)len + 8; /* a last odd chunk */
            memcpy(o + w, p + at, copy);
            if (copy < whole)
                o[w + copy] = 0;
            w += whole;
        }
        at += whole;
    }
    if (vp8x_at) {
        o[vp8x_at + 8] &= (unsigned char)~0x0C; /* the EXIF (8) and XMP (4) flags */
        if (orientation > 1) {
            unsigned char seg[64];
            size_t sl = orientation_segment(seg, orientation); /* APP1: TIFF from byte 10 */
            memcpy(o + w, "EXIF", 4);
            put_le32(o + w + 4, (uint32_t)(sl - 10));
            memcpy(o + w + 8, seg + 10, sl - 10);
            w += 8 + (sl - 10);
            o[vp8x_at + 8] |= 0x08;
            if (orientation >= 5) {
                int t = *width;
                *width = *height;
                *height = t;
            }
        }
    }
    put_le32(o + 4, (uint32_t)(w - 8));
    *out = o;
    *out_len = w;
    return 0;
damaged:
    free(o);
    return -1;
}

/* ---- GIF and WebP: the size only ---- */

int image_size(const char *type, const unsigned char *p, size_t n, int *width, int *height)
{
    if (!strcmp(type, "image/gif")) {
        if (n < 13)
            return -1;
        *width = (int)le16(p + 6);
        *height = (int)le16(p + 8);
    } else if (!strcmp(type, "image/webp")) {
        if (n < 30)
            return -1;
        if (!memcmp(p + 12, "VP8X", 4)) {
            *width = (int)le24(p + 24) + 1;
            *height = (int)le24(p + 27) + 1;
        } else if (!memcmp(p + 12, "VP8 ", 4)) {
            if (p[23] != 0x9d || p[24] != 0x01 || p[25] != 0x2a)
                return -1;
            *width = (int)(le16(p + 26) & 0x3fff);
            *height = (int)(le16(p + 28) & 0x3fff);
        } else if (!memcmp(p + 12, "VP8L", 4)) {
            if (p[20] != 0x2f)
                return -1;
            uint32_t bits = (uint32_t)p[21] | (uint32_t)p[22] << 8 | (uint32_t)p[23] << 16 |
                            (uint32_t)p[24] << 24;
            *width = (int)(bits & 0x3fff) + 1;
            *height = (int)((bits >> 14) & 0x3fff) + 1;
        } else {
            return -1;
        }
    } else {
        return -1;
    }
    return *width > 0 && *height > 0 ? 0 : -1;
}
