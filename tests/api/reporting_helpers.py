"""Shared helpers for the black-box tests of the `reporting` plugin (API.md, "Reports").

How the tests set the time of a change: the reporting plugin records a transition at the
time of its EVENT (panthera_events.created_at, which px_event_time reports). A scripted
history is therefore written as task events inserted straight into the host's event log
(server/events.c, table panthera_events) with chosen created_at values and the payloads
of PLUGINS.md; the host delivers them to the plugin's consumer group like any other
event. Changes made through the real API (the task plugin's own events) are used where
the time does not matter (today)."""
import contextlib
import json
import os
import struct
import subprocess
import tempfile
import time
import uuid
import zlib

from task_helpers import (  # noqa: F401 (re-exported)
    FAST_SCRYPT, SECRET, add_member, assert_error, call, conninfo, create_database, describe,
    drop_database, make_admin, needs_services, new_project, psql, register, shared_services)
from user_helpers import run_cli  # noqa: F401 (re-exported)
from panthera_server import Server

REPORT_PATHS = ("/v1/reports",)


def reporting_server(db, workers=2, redis=True):
    sections = {
        "postgres": {"conninfo": conninfo(db), "wait_timeout": "2s"},
        "auth": {"token_secret": SECRET},
        "events": {"poll_interval": "200ms"},
    }
    if redis:
        sections["redis"] = {"address": "unix:" + os.environ["PANTHERA_REDIS_SOCKET"]}
    return Server(workers=workers, plugins=("user", "task", "reporting"),
                  plugin_config={"user": dict(FAST_SCRYPT), "task": {}, "reporting": {}},
                  sections=sections)


@contextlib.contextmanager
def reporting_env(prefix, redis=True):
    """A fresh database and a started user+task+reporting server on it."""
    with shared_services():
        db = create_database(prefix)
    s = reporting_server(db, redis=redis)
    try:
        with shared_services():
            s.start(timeout=30)
        yield db, s
    finally:
        s.cleanup()
        drop_database(db)


def sql_literal(text):
    return "'" + text.replace("'", "''") + "'"


def insert_events(db, events):
    """events: (type, aggregate_id, payload dict, created_at 'YYYY-MM-DD HH:MM:SS' UTC), in
    the order they happened. One transaction, then a wake-up for the consumers."""
    rows = ",\n".join(
        "(%s, %s, 'task', %s::jsonb, %s::timestamptz)" % (
            sql_literal(t), sql_literal(agg), sql_literal(json.dumps(p)),
            sql_literal(at + "+00"))
        for t, agg, p, at in events)
    psql(db, "INSERT INTO panthera_events (type, aggregate_id, producer, payload, created_at) "
             "VALUES " + rows + "; NOTIFY panthera_events;")


def wait_consumed(db, ceiling=120):
    """Until the reporting group has no pending delivery and has copied every event: a
    hang's ceiling, not a timing assertion."""
    end = time.time() + ceiling
    while time.time() < end:
        out = psql(db, "SELECT (SELECT count(*) FROM panthera_event_deliveries "
                       "WHERE group_name = 'reporting' AND state <> 'done') || ',' || "
                       "(SELECT count(*) FROM panthera_events e WHERE NOT EXISTS ("
                       "SELECT 1 FROM panthera_event_deliveries d WHERE d.event_id = e.id "
                       "AND d.group_name = 'reporting'))").strip()
        if out == "0,0":
            return
        time.sleep(0.2)
    raise AssertionError("the reporting consumer did not catch up: " + out)


def get_report(srv, path, token, accept=None, params=None):
    headers = {"Accept": accept} if accept else {}
    return call(srv, "GET", path, token=token, headers=headers, params=params)


def png_pixels(data):
    """(width, height, rows of RGBA tuples) of a non-interlaced 8-bit RGB(A) PNG, as
    rsvg-convert writes it."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype)
            bpp = 4 if ctype == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append([tuple(line[x * bpp:(x + 1) * bpp]) + ((255,) if bpp == 3 else ())
                     for x in range(width)])
        prev = line
    return width, height, rows


def render_png(svg_bytes, width=800, height=400):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "chart.svg")
        with open(src, "wb") as f:
            f.write(svg_bytes)
        p = subprocess.run(["rsvg-convert", "-w", str(width), "-h", str(height),
                            "-b", "#ffffff", src], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout


def new_id():
    return str(uuid.uuid4())
