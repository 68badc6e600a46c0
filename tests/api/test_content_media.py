"""Media: POST /v1/media and GET /v1/media/{id} (API.md, "Content" and "Files" in
Conventions): every allowed type by its sniffed bytes, width/height of images, a JPEG with
GPS and camera EXIF stored and served without it (only the orientation tag survives, and a
rotated photo reports its displayed size), PNG text/eXIf chunks dropped, oversized (413),
a wrong declared type and an unknown type (415), truncated files (400), downloads with the
Conventions' headers. data/content_stripe.jpg is Node.js's documentation image
thin-white-stripe.jpg (MIT), a real progressive JPEG of 493x58.
"""
import hashlib
import os
import struct
import uuid
import zlib

import pytest

from content_helpers import (
    assert_error, call, conninfo, content_env, describe, needs_services, register)

pytestmark = needs_services
JPEG = open(os.path.join(os.path.dirname(__file__), "data", "content_stripe.jpg"), "rb").read()


def exif_app1(orientation=None):
    """An APP1 Exif segment (little-endian TIFF) with Make "SecretCam", a GPS IFD holding
    a latitude reference, and optionally the Orientation."""
    entries = [(0x010F, 2, 10, None)]  # Make, ASCII, value at offset
    if orientation:
        entries.append((0x0112, 3, 1, orientation))
    entries.append((0x8825, 4, 1, None))  # GPS IFD pointer
    n = len(entries)
    ifd0_len = 2 + 12 * n + 4
    make_at = 8 + ifd0_len
    gps_at = make_at + 10
    body = b""
    for tag, typ, count, val in entries:
        if tag == 0x010F:
            v = struct.pack("<I", make_at)
        elif tag == 0x8825:
            v = struct.pack("<I", gps_at)
        else:
            v = struct.pack("<HH", val, 0)
        body += struct.pack("<HHI", tag, typ, count) + v
    ifd0 = struct.pack("<H", n) + body + struct.pack("<I", 0)
    gps = struct.pack("<H", 1) + struct.pack("<HHI", 0x0001, 2, 2) + b"N\0\0\0" + \
        struct.pack("<I", 0)
    # GPSLatitudeRef "N" inline; a fake GPS coordinate string too, easy to look for.
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd0 + b"SecretCam\0" + gps + b"GPS-48.8584N"
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_exif(jpeg, orientation=None):
    xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPSLongitude 2.2945E</x:xmpmeta>"
    com = b"\xff\xfe" + struct.pack(">H", 2 + 14) + b"Shot on iPhone"
    app1x = b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
    return jpeg[:2] + exif_app1(orientation) + app1x + com + jpeg[2:]


def png(width=3, height=2, extra=b""):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\0" + b"\xff\0\0" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0)) +
            chunk(b"tEXt", b"Author\0Jane Secret") + chunk(b"eXIf", b"MM\0*GPS-SECRET") + extra +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


GIF = (b"GIF89a\x05\x00\x03\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
       b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
WEBP = b"RIFF" + struct.pack("<I", 4 + 8 + 10) + b"WEBPVP8L" + struct.pack("<I", 10) + b"\x2f" + \
    struct.pack("<I", (7 - 1) | ((9 - 1) << 14)) + b"\0" * 5
MP4 = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom" + b"\0\0\0\x08free"
def ebml(eid, payload, unknown=False):
    """An EBML element: its ID bytes, an 8-byte size (or "unknown"), the payload."""
    size = b"\x01\xff\xff\xff\xff\xff\xff\xff" if unknown else \
        b"\x01" + struct.pack(">Q", len(payload))[1:]
    return eid + size + payload


EBML_HEAD = ebml(b"\x1a\x45\xdf\xa3", b"\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04"
                 b"\x42\xf3\x81\x08\x42\x82\x84webm")
CLUSTER_BODY = b"\xe7\x81\x00" + b"\xa3\x88\x81\x00\x00\x80keyf"  # Timestamp, SimpleBlock
WEBM = EBML_HEAD + ebml(b"\x18\x53\x80\x67", ebml(b"\x15\x49\xa9\x66", b"\x2a\xd7\xb1\x83\x0f"
                                                  b"\x42\x40") +
                        ebml(b"\x1f\x43\xb6\x75", CLUSTER_BODY, unknown=True), unknown=True)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(scope="module")
def env():
    with content_env("cntmd", content={"media_max_size": "64k"}, storage=True) as (db, s):
        yield s, register(s)


def upload(s, user, data, ctype, filename=None, headers=None):
    h = {"Content-Type": ctype}
    h.update(headers or {})
    return call(s, "POST", "/v1/media", token=user.access, data=data, headers=h,
                params={"filename": filename} if filename else None)


@pytest.mark.parametrize("data,ctype,size", [
    (JPEG, "image/jpeg", (493, 58)), (png(), "image/png", (3, 2)), (GIF, "image/gif", (5, 3)),
    (WEBP, "image/webp", (7, 9)), (MP4, "video/mp4", None), (WEBM, "video/webm", None),
    (PDF, "application/pdf", None)])
def test_each_type(env, data, ctype, size):
    s, user = env
    r = upload(s, user, data, ctype, filename="file")
    assert r.status_code == 201, describe(r)
    doc = r.json()
    assert doc["contentType"] == ctype and doc["url"] == "/v1/media/" + doc["id"]
    assert r.headers["Location"] == doc["url"]
    if size:
        assert (doc["width"], doc["height"]) == size
    else:
        assert "width" not in doc and "height" not in doc
    g = call(s, "GET", doc["url"], token=user.access)
    assert g.status_code == 200, describe(g)
    assert len(g.content) == doc["size"]
    assert g.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in g.headers["Content-Security-Policy"]
    disp = g.headers["Content-Disposition"]
    if ctype in ("application/pdf", "video/mp4", "video/webm"):
        assert disp.startswith("attachment"), disp
    if ctype in ("image/jpeg", "image/png", "image/gif"):
        assert disp.startswith("inline"), disp
    assert "filename*=" in disp
    etag = g.headers["ETag"]
    assert call(s, "GET", doc["url"], token=user.access,
                headers={"If-None-Match": etag}).status_code == 304
    part = call(s, "GET", doc["url"], token=user.access, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == g.content[:4]


def test_jpeg_metadata_stripped(env):
    s, user = env
    dirty = with_exif(JPEG)
    assert b"SecretCam" in dirty and b"GPS-48" in dirty and b"iPhone" in dirty
    r = upload(s, user, dirty, "image/jpeg")
    assert r.status_code == 201, describe(r)
    got = call(s, "GET", r.json()["url"], token=user.access).content
    for secret in (b"Exif", b"SecretCam", b"GPS-48", b"GPSLongitude", b"xmpmeta", b"iPhone"):
        assert secret not in got, secret
    # Nothing else changed: the original's segments and scans are all there.
    assert got == JPEG
    assert (r.json()["width"], r.json()["height"]) == (493, 58)


def test_rotated_photo_keeps_only_orientation(env):
    s, user = env
    r = upload(s, user, with_exif(JPEG, orientation=6), "image/jpeg")
    assert r.status_code == 201, describe(r)
    doc = r.json()
    assert (doc["width"], doc["height"]) == (58, 493)  # displayed upright
    got = call(s, "GET", doc["url"], token=user.access).content
    assert b"SecretCam" not in got and b"GPS-48" not in got and b"xmpmeta" not in got
    i = got.index(b"Exif\0\0")
    tiff = got[i + 6:]
    assert tiff[:4] == b"MM\0*"
    assert struct.unpack(">H", tiff[8:10])[0] == 1  # one entry
    tag, typ, count, value = struct.unpack(">HHIH", tiff[10:20])
    assert (tag, typ, count, value) == (0x0112, 3, 1, 6)
    assert len(got) == len(JPEG) + 2 + 34


def test_png_text_chunks_stripped(env):
    s, user = env
    r = upload(s, user, png(), "image/png")
    got = call(s, "GET", r.json()["url"], token=user.access).content
    assert b"Jane Secret" not in got and b"GPS-SECRET" not in got and b"IDAT" in got
    assert zlib.crc32(got[-8:-4]) == struct.unpack(">I", got[-4:])[0]  # IEND intact


def test_refused_files(env):
    s, user = env
    assert_error(upload(s, user, PDF, "image/png"), 415)  # wrong declared type
    assert_error(upload(s, user, JPEG, "application/pdf"), 415)
    assert_error(upload(s, user, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
                 415)
    assert_error(upload(s, user, b"hello, world", "image/png"), 415)
    assert_error(upload(s, user, b"MZ\x90\0" + b"\0" * 60, "application/octet-stream"), 415)
    assert_error(upload(s, user, b"", "image/png"), (400, 415))
    assert_error(upload(s, user, b"%PDF-" + b"x" * (70 << 10), "application/pdf"), 413)
    # Truncated: the JPEG cut inside its scan (no EOI), inside a header; the PNG mid-chunk.
    for cut in (len(JPEG) // 2, 100, 3):
        assert_error(upload(s, user, JPEG[:cut], "image/jpeg"), 400, "bad_request")
    assert_error(upload(s, user, png()[:40], "image/png"), 400, "bad_request")
    assert_error(upload(s, user, GIF[:8], "image/gif"), 400)
    assert_error(call(s, "POST", "/v1/media", data=PDF,
                      headers={"Content-Type": "application/pdf"}), 401)


def test_idempotent_upload_and_missing(env):
    s, user = env
    key = {"Idempotency-Key": uuid.uuid4().hex}
    a = upload(s, user, PDF, "application/pdf", headers=key)
    b = upload(s, user, PDF, "application/pdf", headers=key)
    assert a.status_code == b.status_code == 201 and a.json() == b.json(), describe(b)
    assert_error(call(s, "GET", "/v1/media/" + str(uuid.uuid4())), 404, "not_found")
    assert_error(call(s, "GET", "/v1/media/nope"), 404, "not_found")


# ---- WebP and MP4 metadata (image.c, video.c) ----

def riff_chunk(fourcc, data):
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")


def webp_with_metadata(orientation=None, exif_prefix=b""):
    """An extended WebP (VP8X canvas 7x9, a VP8L image) carrying an EXIF chunk (camera,
    GPS, optionally the orientation), an XMP chunk and an unknown chunk, flags set."""
    vp8l = b"\x2f" + struct.pack("<I", (7 - 1) | ((9 - 1) << 14)) + b"\0" * 5
    vp8x = bytes([0x08 | 0x04, 0, 0, 0]) + struct.pack("<I", 7 - 1)[:3] + \
        struct.pack("<I", 9 - 1)[:3]
    exif = exif_prefix + exif_app1(orientation)[10:]  # the TIFF structure of the APP1
    body = (b"WEBP" + riff_chunk(b"VP8X", vp8x) + riff_chunk(b"VP8L", vp8l) +
            riff_chunk(b"EXIF", exif) +
            riff_chunk(b"XMP ", b"<x:xmpmeta>GPSLatitude 48.8584N</x:xmpmeta>") +
            riff_chunk(b"ZZZZ", b"Owner: Jane Secret"))
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_chunks(data):
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    out, at = [], 12
    while at < len(data):
        n = struct.unpack("<I", data[at + 4:at + 8])[0]
        out.append((data[at:at + 4], data[at + 8:at + 8 + n]))
        at += 8 + n + (n & 1)
    assert at == len(data)
    return out


@pytest.mark.parametrize("prefix", [b"", b"Exif\0\0"], ids=["tiff", "exif-header"])
def test_webp_metadata_stripped(env, prefix):
    s, user = env
    r = upload(s, user, webp_with_metadata(exif_prefix=prefix), "image/webp")
    assert r.status_code == 201, describe(r)
    assert (r.json()["width"], r.json()["height"]) == (7, 9)
    got = call(s, "GET", r.json()["url"], token=user.access).content
    for secret in (b"SecretCam", b"GPS", b"xmpmeta", b"Jane Secret"):
        assert secret not in got, secret
    chunks = webp_chunks(got)
    assert [c for c, _ in chunks] == [b"VP8X", b"VP8L"]
    assert chunks[0][1][0] & 0x0C == 0  # neither EXIF nor XMP announced


def test_webp_rotated_keeps_only_orientation(env):
    s, user = env
    r = upload(s, user, webp_with_metadata(orientation=6), "image/webp")
    assert r.status_code == 201, describe(r)
    assert (r.json()["width"], r.json()["height"]) == (9, 7)  # as displayed
    got = call(s, "GET", r.json()["url"], token=user.access).content
    assert b"SecretCam" not in got and b"GPS" not in got
    chunks = dict(webp_chunks(got))
    assert list(chunks) == [b"VP8X", b"VP8L", b"EXIF"]
    assert chunks[b"VP8X"][0] & 0x0C == 0x08
    tiff = chunks[b"EXIF"]
    assert tiff[:4] == b"MM\0*" and struct.unpack(">H", tiff[8:10])[0] == 1
    assert struct.unpack(">HHIH", tiff[10:20]) == (0x0112, 3, 1, 6)


def box(kind, payload):
    return struct.pack(">I", 8 + len(payload)) + kind + payload


XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


def mp4_with_metadata():
    """ftyp, a moov (before mdat, as a "fast start" file) holding an mvhd, a udta with the
    QuickTime location and camera, a meta with Apple's location key and a trak with its own
    udta; an XMP uuid box; then mdat, whose offset the sample tables would point at."""
    udta = box(b"udta", box(b"\xa9xyz", b"\0\x11\x15\xc7+48.8584+002.2945/") +
               box(b"\xa9mak", b"\0\x09\0\0SecretCam"))
    meta = box(b"meta", b"\0\0\0\0" + box(b"keys", b"com.apple.quicktime.location.ISO6709") +
               box(b"ilst", b"+48.8584+002.2945/"))
    trak = box(b"trak", box(b"tkhd", b"\0" * 84) + box(b"udta", box(b"\xa9mod", b"SecretCam")))
    moov = box(b"moov", box(b"mvhd", b"\0" * 100) + udta + meta + trak)
    return (box(b"ftyp", b"isom\0\0\x02\0isomiso2mp41") + moov +
            box(b"uuid", XMP_UUID + b"<x:xmpmeta>GPSLongitude 2.2945E</x:xmpmeta>") +
            box(b"mdat", b"\x00\x00\x00\x10frame-bytes-here"))


def test_mp4_metadata_blanked_in_place(env):
    s, user = env
    data = mp4_with_metadata()
    r = upload(s, user, data, "video/mp4")
    assert r.status_code == 201, describe(r)
    got = call(s, "GET", r.json()["url"], token=user.access).content
    assert len(got) == len(data)  # nothing moved: stco offsets into mdat stay right
    for secret in (b"48.8584", b"SecretCam", b"xmpmeta", b"ISO6709", b"\xa9xyz"):
        assert secret not in got, secret
    assert got.endswith(box(b"mdat", b"\x00\x00\x00\x10frame-bytes-here"))
    ftyp = len(box(b"ftyp", b"isom\0\0\x02\0isomiso2mp41"))
    assert got[:ftyp] == data[:ftyp]
    assert got.count(b"free") == 4 and b"mvhd" in got and b"tkhd" in got
    # Damaged: a box longer than the file, a box inside moov longer than moov.
    assert_error(upload(s, user, data[:-4], "video/mp4"), 400, "bad_request")
    bad = box(b"ftyp", b"isom") + struct.pack(">I", 16) + b"moov" + box(b"mvhd", b"\0" * 8)
    assert_error(upload(s, user, bad, "video/mp4"), 400, "bad_request")


def webm_with_metadata(live):
    """A WebM whose Info has a Title and DateUTC, with Tags (a GPS location) and
    Attachments (a cover JPEG with camera Exif) around a Cluster; `live`: Segment and
    Cluster of unknown size, as a browser's MediaRecorder writes them."""
    info = ebml(b"\x15\x49\xa9\x66", b"\x2a\xd7\xb1\x83\x0f\x42\x40" +
                b"\x7b\xa9\x8dJane's secret" + b"\x44\x61\x88" + b"\x01" * 8)
    tags = ebml(b"\x12\x54\xc3\x67", b"\x73\x73\x95\x67\xc8\x92\x45\xa3\x88LOCATION"
                b"\x44\x87\x86+48.85")
    attach = ebml(b"\x19\x41\xa4\x69", b"\x61\xa7\x8c\x46\x6e\x89cover.jpg" +
                  exif_app1()[:40])
    cluster = ebml(b"\x1f\x43\xb6\x75", CLUSTER_BODY, unknown=live)
    body = info + tags + cluster + attach if not live else info + tags + attach + cluster
    return EBML_HEAD + ebml(b"\x18\x53\x80\x67", body, unknown=live)


@pytest.mark.parametrize("live", [False, True], ids=["sized", "live"])
def test_webm_metadata_blanked_in_place(env, live):
    s, user = env
    data = webm_with_metadata(live)
    r = upload(s, user, data, "video/webm")
    assert r.status_code == 201, describe(r)
    got = call(s, "GET", r.json()["url"], token=user.access).content
    assert len(got) == len(data)
    for secret in (b"Jane", b"LOCATION", b"+48.85", b"cover.jpg", b"SecretCam", b"\x01" * 8):
        assert secret not in got, secret
    assert got.startswith(EBML_HEAD) and CLUSTER_BODY in got
    assert b"\x2a\xd7\xb1\x83\x0f\x42\x40" in got  # TimestampScale stays
    assert got.count(b"\xec") >= 4  # Title, DateUTC, Tags, Attachments are Void now
    assert_error(upload(s, user, data[:-3] if not live else data[:30], "video/webm"), 400)


# ---- PDF (pdf.c) ----

def pdf_file(objects, trailer_extra=b""):
    """A PDF 1.4 with a classic xref table: `objects` maps number -> body (bytes between
    "N 0 obj" and "endobj"); offsets computed, so the file is valid as written."""
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        out += b"%010d 00000 n \n" % offsets.get(num, 0)
    out += (b"trailer\n<< /Size %d /Root 1 0 R " % size + trailer_extra +
            b">>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out


def stream(dict_body, data):
    return b"<< " + dict_body + b" /Length %d >>\nstream\n" % len(data) + data + \
        b"\nendstream"


XMP_PACKET = (b"<?xpacket begin=\"\xef\xbb\xbf\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>"
              b"<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><exif:GPSLatitude>48,51.5N"
              b"</exif:GPSLatitude><dc:creator>Jane Secret</dc:creator></rdf:RDF></x:xmpmeta>"
              b"<?xpacket end=\"w\"?>")


def pdf_with_metadata():
    photo = with_exif(JPEG)
    return pdf_file({
        1: b"<< /Type /Catalog /Pages 2 0 R /Metadata 4 0 R >>",
        2: b"<< /Type /Pages /Kids [] /Count 0 /Resources << /XObject << /Im1 6 0 R >> >> >>",
        3: b"<< /Author (Jane \\(the\\) Secret) /Producer <53656372657443616d> "
           b"/Title 5 0 R /CreationDate (D:20260101120000+01'00') >>",
        4: stream(b"/Type /Metadata /Subtype /XML", XMP_PACKET),
        5: b"(Holiday at 48.8584N)",
        6: stream(b"/Type /XObject /Subtype /Image /Width 493 /Height 58 /ColorSpace "
                  b"/DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode", photo),
    }, trailer_extra=b"/Info 3 0 R")


def xref_points_at_objects(pdf):
    at = pdf.rindex(b"startxref")
    xref = int(pdf[at + 10:].split()[0])
    lines = pdf[xref:].split(b"\n")
    count = int(lines[1].split()[1])
    for num in range(1, count):
        off = int(lines[2 + num][:10])
        assert pdf[off:].startswith(b"%d 0 obj" % num), num


def test_pdf_metadata_blanked_in_place(env):
    s, user = env
    data = pdf_with_metadata()
    xref_points_at_objects(data)
    r = upload(s, user, data, "application/pdf")
    assert r.status_code == 201, describe(r)
    got = call(s, "GET", r.json()["url"], token=user.access).content
    assert len(got) == len(data)
    xref_points_at_objects(got)
    for secret in (b"Jane", b"Secret", b"SecretCam", b"53656372657443616d", b"48,51",
                   b"48.8584", b"D:2026", b"xmpmeta", b"Exif", b"GPS-48", b"iPhone"):
        assert secret not in got, secret
    assert b"3 0 obj\n<<" in got and b"/Info 3 0 R" in got
    assert b"5 0 obj null " in got
    assert b"xpacket" not in got  # the whole metadata stream is spaces
    # The photo's scan data is untouched; only its metadata segments are zeros now.
    photo = with_exif(JPEG)
    assert photo[-2000:] in got


@pytest.mark.parametrize("objects,trailer", [
    # The Info dictionary inside a compressed object stream: not written out.
    ({1: b"<< /Type /Catalog >>",
      2: stream(b"/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode", zlib.compress(b"3 0 <<>>"))},
     b"/Info 3 0 R"),
    # Compressed XMP.
    ({1: b"<< /Type /Catalog /Metadata 2 0 R >>",
      2: stream(b"/Type /Metadata /Subtype /XML /Filter /FlateDecode", zlib.compress(XMP_PACKET))},
     b""),
    # More metadata references than the walk searches for (each search reads the file).
    ({1: b"<< /Type /Catalog /Pages 3 0 R /Metadata 2 0 R >>",
      2: stream(b"/Type /Metadata /Subtype /XML", XMP_PACKET),
      3: b"<< /Type /Pages /Kids [] /Count 0 " +
         b" ".join(b"/Metadata 2 0 R" for _ in range(300)) + b" >>"},
     b""),
], ids=["info-in-objstm", "compressed-xmp", "too-many-refs"])
def test_pdf_compressed_metadata_refused(env, objects, trailer):
    s, user = env
    r = upload(s, user, pdf_file(objects, trailer_extra=trailer), "application/pdf")
    assert_error(r, 415, "bad_request")
