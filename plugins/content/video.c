/*
 * video.c — metadata out of MP4 uploads, in place.
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
