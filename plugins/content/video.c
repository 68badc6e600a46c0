/*
 * video.c — metadata out of MP4 and WebM uploads, in place.
 *
 * Where an MP4 (ISO BMFF / QuickTime) keeps who, where and with what: `udta` boxes (the
 * QuickTime ©xyz location, ©mak/©mod camera, ©day, ...), `meta` boxes (iTunes-style and
 * Apple's com.apple.quicktime.location.ISO6709 keys) and the XMP `uuid` box, at the top
 * level or inside moov, trak, mdia and the other containers. Removing a box would move
 * every byte after it, and the sample tables (stco/co64) hold absolute file offsets into
 * mdat: a moov written before mdat ("fast start") would then point at the wrong bytes.
 * So each such box is turned into a `free` box of the same size, its payload zeroed:
 * offsets, sizes and the decodable media stay exactly as they were, and players skip
 * `free` by definition. The walk checks every size against its parent (64-bit sizes and
 * "to the end" included); a box that does not fit is a damaged file (-1).
 *
 * WebM (Matroska, EBML): metadata sits in the Segment's Tags and Attachments (a cover
 * picture is a whole JPEG with its own Exif) and in Info's Title and DateUTC. Cues and
 * SeekHead hold byte positions too, so the same trick: each such element becomes a Void
 * element (ID 0xEC) of the same length, zeroed. The walk follows the EBML header, the
 * Segment (known or unknown size, as a live recording writes it) and its children;
 * a Cluster of unknown size is walked through its own children (block, timestamp) until
 * an ID that is not one of them starts the next Segment child. An element that does not
 * fit, or an unknown size anywhere else, is a damaged file (-1).
 */
#include <stdlib.h>
#include <string.h>

#include "image.h"

static uint64_t be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

/* Boxes that hold only other boxes, walked into. */
static bool container(const unsigned char *type)
{
    static const char *const boxes[] = {"moov", "trak", "mdia", "minf", "stbl", "edts",
                                        "dinf", "mvex", "moof", "traf", "mfra"};
    for (size_t i = 0; i < sizeof(boxes) / sizeof(boxes[0]); i++)
        if (!memcmp(type, boxes[i], 4))
            return true;
    return false;
}

static bool metadata(const unsigned char *type, const unsigned char *payload, uint64_t n)
{
    static const unsigned char xmp[16] = {0xBE, 0x7A, 0xCF, 0xCB, 0x97, 0xA9, 0x42, 0xE8,
                                          0x9C, 0x71, 0x99, 0x94, 0x91, 0xE3, 0xAF, 0xAC};
    if (!memcmp(type, "udta", 4) || !memcmp(type, "meta", 4))
        return true;
    return !memcmp(type, "uuid", 4) && n >= 16 && !memcmp(payload, xmp, 16);
}

/* Walk the boxes in o[at, end), freeing metadata ones. 0, or -1 when a box does not fit. */
static int walk(unsigned char *o, uint64_t at, uint64_t end, int depth)
{
    if (depth > 16)
        return -1;
    while (at < end) {
        if (end - at < 8)
            return -1;
        uint64_t size = be(o + at, 4), head = 8;
        if (size == 1) {
            if (end - at < 16)
                return -1;
            size = be(o + at + 8, 8);
            head = 16;
        } else if (size == 0) {
            size = end - at;
        }
        if (size < head || size > end - at)
            return -1;
        unsigned char *type = o + at + 4;
        if (metadata(type, o + at + head, size - head)) {
            memcpy(type, "free", 4);
            memset(o + at + head, 0, size - head);
        } else if (container(type) && walk(o, at + head, at + size, depth + 1)) {
            return -1;
        }
        at += size;
    }
    return 0;
}

int video_mp4_clean(const unsigned char *p, size_t n, unsigned char **out)
{
    unsigned char *o = malloc(n ? n : 1);
    if (!o)
        abort();
    memcpy(o, p, n);
    if (walk(o, 0, n, 0)) {
        free(o);
        return -1;
    }
    *out = o;
    return 0;
}

/* ---- WebM ---- */

#define EBML_UNKNOWN UINT64_MAX

enum {
    ID_EBML = 0x1A45DFA3, ID_SEGMENT = 0x18538067, ID_CLUSTER = 0x1F43B675,
    ID_INFO = 0x1549A966, ID_TAGS = 0x1254C367, ID_ATTACHMENTS = 0x1941A469,
    ID_TITLE = 0x7BA9, ID_DATE = 0x4461,
};

/* An EBML variable-length integer at p (n bytes left): its length in *len and its value
 * (an ID keeps its length marker; a size loses it, all ones meaning unknown). */
static int vint(const unsigned char *p, uint64_t n, bool id, int *len, uint64_t *value)
{
    if (n < 1 || p[0] == 0)
        return -1;
    int l = 1;
    while (!(p[0] & (0x80 >> (l - 1))))
        l++;
    if ((uint64_t)l > n || (id && l > 4))
        return -1;
    uint64_t v = id ? p[0] : p[0] & (0xFFu >> l);
    bool ones = v == (0xFFu >> l);
    for (int i = 1; i < l; i++) {
        v = v << 8 | p[i];
        ones = ones && p[i] == 0xFF;
    }
    *len = l;
    *value = !id && ones ? EBML_UNKNOWN : v;
    return 0;
}

/* The element at o[at]: its ID, header length and payload size (EBML_UNKNOWN, or checked
 * against end). */
static int element(const unsigned char *o, uint64_t at, uint64_t end, uint64_t *id,
                   uint64_t *head, uint64_t *size)
{
    int il, sl;
    if (vint(o + at, end - at, true, &il, id) ||
        vint(o + at + il, end - at - (uint64_t)il, false, &sl, size))
        return -1;
    *head = (uint64_t)(il + sl);
    return *size == EBML_UNKNOWN || *size <= end - at - *head ? 0 : -1;
}

/* Turn `total` bytes at o into one Void element: 0xEC, a size of up to 8 bytes, zeros. */
static void ebml_void(unsigned char *o, uint64_t total)
{
    int l = total - 1 < 8 ? (int)(total - 1) : 8;
    uint64_t v = total - 1 - (uint64_t)l;
    memset(o, 0, total);
    o[0] = 0xEC;
    for (int i = l; i >= 1; i--, v >>= 8)
        o[i] = (unsigned char)v;
    o[1] |= (unsigned char)(0x80 >> (l - 1));
}

static bool cluster_child(uint64_t id)
{
    static const uint64_t ids[] = {0xE7, 0xA7, 0xAB, 0xA3, 0xA0, 0xAF, 0x5854, 0xEC, 0xBF};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        if (id == ids[i])
            return true;
    return false;
}

static int segment_walk(unsigned char *o, uint64_t at, uint64_t end)
{
    while (at < end) {
        uint64_t id, head, size;
        if (element(o, at, end, &id, &head, &size))
            return -1;
        if (size == EBML_UNKNOWN) {
            if (id != ID_CLUSTER)
                return -1;
            /* Its children have known sizes; the first other ID is the next element. */
            at += head;
            while (at < end) {
                uint64_t cid, chead, csize;
                if (element(o, at, end, &cid, &chead, &csize))
                    return -1;
                if (!cluster_child(cid))
                    break;
                if (csize == EBML_UNKNOWN)
                    return -1;
                at += chead + csize;
            }
            continue;
        }
        if (id == ID_TAGS || id == ID_ATTACHMENTS) {
            ebml_void(o + at, head + size);
        } else if (id == ID_INFO) {
            for (uint64_t in = at + head; in < at + head + size;) {
                uint64_t iid, ihead, isize;
                if (element(o, in, at + head + size, &iid, &ihead, &isize) ||
                    isize == EBML_UNKNOWN)
                    return -1;
                if (iid == ID_TITLE || iid == ID_DATE)
                    ebml_void(o + in, ihead + isize);
                in += ihead + isize;
            }
        }
        at += head + size;
    }
    return 0;
}

static int webm_walk(unsigned char *o, uint64_t n)
{
    for (uint64_t at = 0; at < n;) {
        uint64_t id, head, size;
        if (element(o, at, n, &id, &head, &size))
            return -1;
        if (id == ID_SEGMENT) {
            uint64_t end = size == EBML_UNKNOWN ? n : at + head + size;
            if (segment_walk(o, at + head, end))
                return -1;
            at = end;
            continue;
        }
        if (size == EBML_UNKNOWN || (at == 0 && id != ID_EBML))
            return -1;
        at += head + size;
    }
    return 0;
}

int video_webm_clean(const unsigned char *p, size_t n, unsigned char **out)
{
    unsigned char *o = malloc(n ? n : 1);
    if (!o)
        abort();
    memcpy(o, p, n);
    if (webm_walk(o, n)) {
        free(o);
        return -1;
    }
    *out = o;
    return 0;
}
