"""The web console in a real browser (plugins/console/README.md, issue 17): Debian's
chromium, headless, driven by playwright-core (npm) through flows.mjs against a real
pantherad with the user, task, content and console plugins (and notification and
reporting when they are built). One node run does every flow (a browser start is the
slow part); each flow is one test case here, so the summary counts them and a failure
fails the run. A flow that needs a plugin this build lacks is a visible skip naming it."""
import calendar
import json
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "api"))

from panthera_server import BUILD, REPO, Server  # noqa: E402
from user_helpers import (  # noqa: E402
    FAST_SCRYPT, SECRET, conninfo, create_database, drop_database, make_admin,
    needs_services, shared_services)

pytestmark = needs_services

CHROMIUM = "/usr/bin/chromium"
FLOWS = ["auth", "projects", "board_drag_and_keyboard", "task_detail", "live_assignment",
         "posts", "admin", "reports", "task_attachments", "pages_axe_and_screenshots"]
OUT = os.environ.get("PANTHERA_BROWSER_OUT", os.path.join(REPO, ".run", "results", "browser"))


def built(name):
    return os.path.exists(os.path.join(BUILD, "plugins", name, name + ".so"))


@pytest.fixture(scope="module")
def run():
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: install Debian's chromium (PANTHERA_PACKAGES)" % CHROMIUM)
    if not os.path.isdir(os.path.join(REPO, "node_modules", "playwright-core")):
        pytest.fail("node_modules/playwright-core is missing: run npm ci")
    plugins = ["user", "task", "content", "console"]
    optional = {"notification": built("notification"), "reporting": built("reporting")}
    plugins += [p for p, ok in optional.items() if ok]
    with shared_services():
        db = create_database("console")
    sections = {
        "postgres": {"conninfo": conninfo(db), "wait_timeout": "5s"},
        "redis": {"address": "unix:" + os.environ["PANTHERA_REDIS_SOCKET"]},
        # A short access token, so the app's silent refresh runs during the flows.
        "auth": {"token_secret": SECRET, "access_ttl": "40s"},
    }
    # A small attachment limit, so the console's 413 message is cheap to provoke.
    plugin_config = {"user": dict(FAST_SCRYPT), "task": {"attachment_max_size": "64k"}}
    s = Server(workers=2, plugins=tuple(plugins), plugin_config=plugin_config,
               sections=sections)
    try:
        with shared_services():
            s.start(timeout=60)
        admin = make_admin(s)
        os.makedirs(OUT, exist_ok=True)
        results = os.path.join(OUT, "results.json")
        if os.path.exists(results):
            os.unlink(results)
        env = dict(os.environ, CONSOLE_BASE=s.url("").rstrip("/"), CONSOLE_OUT=OUT,
                   CONSOLE_ADMIN_USER=admin.username, CONSOLE_ADMIN_PASSWORD=admin.password,
                   CONSOLE_HAVE_NOTIFICATION="1" if optional["notification"] else "0",
                   CONSOLE_HAVE_REPORTING="1" if optional["reporting"] else "0")
        # The ceiling is for a hang only: the flows take a few minutes on a busy machine.
        p = subprocess.run(["node", os.path.join(HERE, "flows.mjs")], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=1500)
        sys.stderr.write(p.stderr[-8000:])
        doc = json.load(open(results)) if os.path.exists(results) else None
        yield doc, p, s
    finally:
        s.cleanup()
        drop_database(db)


@pytest.mark.parametrize("name", FLOWS)
def test_flow(run, name):
    doc, p, srv = run
    assert doc is not None, "flows.mjs wrote no results (exit %s):\n%s" % (p.returncode, p.stderr[-4000:])
    res = doc["results"].get(name)
    assert res is not None, "flow %s did not run:\n%s" % (name, p.stderr[-4000:])
    if res["ok"] is None:
        pytest.skip(res["error"])
    assert res["ok"], res["error"] + server_side(srv, res)


def server_side(srv, res):
    """What the server logged while a failed flow ran: its access-log lines (written when
    an answer ends, so a request that never got one is missing) and its error-log tail."""
    start = res.get("started", "")
    end = ""
    if start:
        began = calendar.timegm(time.strptime(start[:19], "%Y-%m-%dT%H:%M:%S"))
        end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(began + res["seconds"] + 2))
    lines = [json.dumps(x) for x in srv.access_log_lines() if start <= x.get("time", "") <= end]
    errors = srv.error_log().splitlines()[-40:]
    return ("\n\naccess log during the flow (%d lines):\n%s\n\nerror log tail:\n%s"
            % (len(lines), "\n".join(lines[-150:]), "\n".join(errors)))
