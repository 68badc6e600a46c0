"""The CSV and SVG forms of the reports: CSV read back with Python's csv module, with
formula-injection prefixes on text cells only; every chart parsed as XML, its labels
escaped (a project named like a script tag), and rendered to PNG by rsvg-convert with
something drawn inside the plot area."""
import csv
import datetime
import io
import re
import xml.etree.ElementTree as ET

import pytest

from reporting_helpers import (
    call, describe, get_report, insert_events, make_admin, needs_services, new_id,
    new_project, png_pixels, register, render_png, reporting_env, shared_services,
    wait_consumed)

pytestmark = needs_services
SVG = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert('x')</script> & \"co\""


@pytest.fixture(scope="module")
def env():
    with reporting_env("rep_fmt") as e:
        yield e


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


@pytest.fixture(scope="module")
def world(env):
    db, srv = env
    with shared_services():
        owner, admin = register(srv), make_admin(srv)
        p = new_project(srv, owner, name=EVIL)
        members = [{"userId": owner.id, "role": "owner"}]
        events = []
        for i in range(6):
            tid = new_id()
            base = {"projectId": p["id"], "taskId": tid, "title": "t", "actorId": owner.id,
                    "members": members}
            events.append(("task.created", tid, dict(base, status="todo", priority="medium"),
                           "2026-04-0%d 10:00:00" % (i + 1)))
            if i % 2:
                events.append(("task.status_changed", tid, dict(base, **{"from": "todo",
                                                                          "to": "done"}),
                               "2026-04-0%d 12:00:00" % (i + 2)))
        insert_events(db, events)
        wait_consumed(db)
    return {"owner": owner, "admin": admin, "pid": p["id"]}


CHARTS = (("burndown", ("Scope", "Done", "Remaining")),
          ("flow", ("Done", "In progress", "To do")),
          ("activity", ("Sign-ups", "Posts", "Comments", "Tasks created", "Tasks done")))


def chart_path(world, kind):
    return "/v1/reports/activity" if kind == "activity" else \
        "/v1/reports/projects/%s/%s" % (world["pid"], kind)


@pytest.mark.parametrize("kind,legend", CHARTS)
def test_svg_chart(env, world, kind, legend):
    srv = env[1]
    tok = world["admin"].access
    r = get_report(srv, chart_path(world, kind), tok, accept="image/svg+xml",
                   params={"from": "2026-03-30", "to": "2026-04-10"})
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].startswith("image/svg+xml")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    raw = r.content
    assert b"<script" not in raw  # the name is text, escaped
    root = ET.fromstring(raw)
    assert root.tag == SVG + "svg"
    assert root.get("role") == "img" and root.get("viewBox") == "0 0 800 400"
    assert root.get("width") == "100%"
    title, desc = root.find(SVG + "title"), root.find(SVG + "desc")
    assert title is not None and desc is not None
    if kind != "activity":
        assert EVIL in title.text
    assert "2026-03-30" in desc.text and "2026-04-10" in desc.text
    for label in legend:
        assert label in desc.text
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "2026-03-30" in texts and "2026-04-10" in texts  # the date axis
    assert set(legend) <= set(texts)  # the legend
    assert "0" in texts  # the value axis
    # Lines of different series differ in colour AND in dash pattern.
    lines = [(p.get("stroke"), p.get("stroke-dasharray")) for p in root.iter(SVG + "polyline")]
    assert len(lines) == len(legend)
    assert len({c for c, _ in lines}) == len(lines) and len({d for _, d in lines}) == len(lines)
    for width, height in ((800, 400), (360, 180)):
        w, h, rows = png_pixels(render_png(raw, width, height))
        assert (w, h) == (width, height)
        sx, sy = width / 800, height / 400
        drawn = sum(1 for y in range(int(50 * sy), int(295 * sy))
                    for x in range(int(70 * sx), int(770 * sx))
                    if rows[y][x][:3] != (255, 255, 255))
        assert drawn > 50 * sx, (kind, width, drawn)


def test_svg_values_match_the_data(env, world):
    """The desc states each series' first and last value: the same numbers as the JSON."""
    srv, tok = env[1], world["owner"].access
    params = {"from": "2026-04-01", "to": "2026-04-08"}
    path = chart_path(world, "burndown")
    days = get_report(srv, path, tok, params=params).json()["days"]
    desc = ET.fromstring(get_report(srv, path, tok, accept="image/svg+xml",
                                    params=params).content).find(SVG + "desc").text
    first, last = days[0], days[-1]
    assert "Scope: %d on 2026-04-01, %d on 2026-04-08" % (first["scope"], last["scope"]) in desc
    assert (first["scope"], last["scope"], last["done"]) == (1, 6, 3)


INJECTIONS = ("=SUM(A1:A2)", "+1", "-1", "@cmd", "\uff1d1+2", "\uff0bx", "\uff0dx", "\uff20x")


def summary_rows(srv, token, pid):
    r = get_report(srv, "/v1/reports/projects/%s/summary" % pid, token, accept="text/csv")
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Disposition"].startswith("attachment; filename=\"summary-")
    assert r.content.endswith(b"\r\n")
    return list(csv.reader(io.StringIO(r.content.decode("utf-8"), newline="")))


@pytest.mark.parametrize("name", INJECTIONS)
def test_csv_formula_prefix(env, world, name):
    srv, owner = env[1], world["owner"]
    p = new_project(srv, owner, name=name)
    wait_consumed(env[0])
    rows = summary_rows(srv, owner.access, p["id"])
    assert rows[0] == ["section", "key", "value"]
    cells = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert cells[("project", "name")] == "'" + name
    assert cells[("project", "id")] == p["id"]
    assert cells[("tasks", "total")] == "0"  # numbers are never prefixed


def rename_by_event(db, pid, owner, name):
    """The task plugin refuses control characters in names; a project.updated event (the
    contract's payload) can still carry any string, so the renderer must cope."""
    insert_events(db, [("project.updated", pid, {
        "projectId": pid, "changes": {"name": ["old", name]}, "actorId": owner.id,
        "members": [{"userId": owner.id, "role": "owner"}]}, "2026-04-01 00:00:00")])
    wait_consumed(db)


@pytest.mark.parametrize("name", ("\tx", "\rx", "\nx", "\t=1"))
def test_csv_formula_prefix_controls(env, world, name):
    db, srv, owner = env[0], env[1], world["owner"]
    p = new_project(srv, owner)
    wait_consumed(db)
    rename_by_event(db, p["id"], owner, name)
    cells = {(r[0], r[1]): r[2] for r in summary_rows(srv, owner.access, p["id"])[1:]}
    assert cells[("project", "name")] == "'" + name


def test_csv_quoting(env, world):
    db, srv, owner = env[0], env[1], world["owner"]
    name = 'a, "quoted"\nname'
    p = new_project(srv, owner)
    wait_consumed(db)
    rename_by_event(db, p["id"], owner, name)
    r = get_report(srv, "/v1/reports/projects/%s/summary" % p["id"], owner.access,
                   accept="text/csv")
    assert b'"a, ""quoted""\nname"' in r.content
    rows = summary_rows(srv, owner.access, p["id"])
    assert {(x[0], x[1]): x[2] for x in rows[1:]}[("project", "name")] == name
    plain = new_project(srv, owner, name="Plain name")
    wait_consumed(db)
    cells = {(x[0], x[1]): x[2] for x in summary_rows(srv, owner.access, plain["id"])[1:]}
    assert cells[("project", "name")] == "Plain name"


# Readable at 800×400 and on a phone: the chart's own <style> holds the narrow rules.
CHAR_EM = 0.64  # the widest digit of DejaVu Sans (Debian's default sans-serif), in em


def narrow_rules(root):
    """{selector: {property: value}} of the @media (max-width: N px) block, and N."""
    style = root.find(SVG + "style")
    assert style is not None, "no <style>: the chart has no narrow rules"
    m = re.fullmatch(r"\s*@media \(max-width: (\d+)px\) \{(.*)\}\s*", style.text, re.S)
    assert m, style.text
    rules = {}
    for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", m.group(2)):
        rules[sel.strip()] = dict(p.split(":", 1) for p in body.split(";") if p)
    return int(m.group(1)), rules


def translate(rules, sel):
    t = rules.get(sel, {}).get("transform")
    if not t:
        return 0.0, 0.0
    m = re.fullmatch(r"translate\((-?[\d.]+)px,(-?[\d.]+)px\)", t)
    assert m, t
    return float(m.group(1)), float(m.group(2))


def boxes(texts, font, dx=0.0):
    """[(left, right, text)] of labels, by character count at CHAR_EM em each."""
    out = []
    for t in texts:
        w = len(t.text) * CHAR_EM * font
        x = float(t.get("x")) + dx
        a = t.get("text-anchor")
        left = x if a == "start" else x - w if a == "end" else x - w / 2
        out.append((left, left + w, t.text))
    return sorted(out)


def assert_apart(found, what):
    for a, b in zip(found, found[1:]):
        assert a[1] <= b[0], (what, a, b)
    assert all(0 <= left and right <= 800 for left, right, _ in found), (what, found)


@pytest.mark.parametrize("ndays", (1, 2, 7, 30, 366))
@pytest.mark.parametrize("kind", ("burndown", "activity"))
def test_svg_labels_never_overlap(env, world, kind, ndays):
    last = datetime.date(2026, 4, 10)
    first = last - datetime.timedelta(days=ndays - 1)
    r = get_report(env[1], chart_path(world, kind), world["admin"].access,
                   accept="image/svg+xml", params={"from": str(first), "to": str(last)})
    assert r.status_code == 200, describe(r)
    root = ET.fromstring(r.content)
    xlabels = list(root.find(SVG + "g[@class='x-labels']"))
    assert xlabels
    # 800 wide: the root's 14 units; first and last day always labelled.
    font = float(root.get("font-size"))
    wide = boxes(xlabels, font)
    assert_apart(wide, "800 wide")
    assert {str(first), str(last)} <= {t for _, _, t in wide}
    # Narrow: the rules exist, make text readable at 390 CSS px (at least 11 px), hide the
    # optional labels, and what stays visible does not overlap at the larger size.
    limit, rules = narrow_rules(root)
    assert 390 < limit < 800
    nfont = float(rules["text"]["font-size"].rstrip("px"))
    assert nfont * 390 / 800 >= 11, nfont
    assert rules[".x-labels .xo"] == {"display": "none"}
    shown = [t for t in xlabels if "xo" not in (t.get("class") or "").split()]
    assert shown and len(shown) <= len(xlabels)
    narrow = boxes(shown, nfont)
    assert_apart(narrow, "narrow")
    if ndays > 1:
        assert {str(first), str(last)} <= {t for _, _, t in narrow}
    # The legend under the narrow rules: entries apart, inside the picture, below the dates.
    _, label_dy = translate(rules, ".x-labels text")
    label_base = float(xlabels[0].get("y")) + label_dy
    rows = {}
    for g in root.find(SVG + "g[@class='legend']"):
        dx, dy = translate(rules, "." + g.get("class"))
        text = g.find(SVG + "text")
        (left, right, _), = boxes([text], nfont, dx)
        base = float(text.get("y")) + dy
        assert base - nfont * 0.75 > label_base and base <= 400, (text.text, base, label_base)
        rows.setdefault(base, []).append((float(g.find(SVG + "line").get("x1")) + dx, right,
                                          text.text))
    for entries in rows.values():
        assert_apart(sorted(entries), "legend row")
    assert len(rows) * 2 >= len(list(root.find(SVG + "g[@class='legend']")))
