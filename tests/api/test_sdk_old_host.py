"""A plugin that needs only SDK 1.1 (PX_MIN_MINOR 1) on a REAL 1.1 host (issue 9), and a
plugin that needs today's minor (1.2 or newer) refused by it with a clear line.

The 1.1 host is built here from the repository's own history: the newest commit whose
sdk/panthera.h has no 1.2 list (found with `git log -- sdk/panthera.h`), exported with
`git archive` (no worktree is registered, nothing of the repository changes), configured
with meson and built to just pantherad, offline, under a time bound. The build is kept in
the build directory (old-host-<commit>), so later runs reuse it. The plugins are this
tree's: minor1 (built against today's header with PX_MIN_MINOR 1) and hello (today's
header, needing its minor).

Skipped outside a git checkout (a source tarball has no history); CI runs in one.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from panthera_server import BUILD, CEILING, PLUGIN_PATH, REPO, free_port, header_abi

BUILD_TIMEOUT = 900  # seconds for configure + build on a loaded machine: only a hang exceeds it


def git(*args, **kw):
    return subprocess.run(["git", "-C", REPO] + list(args), capture_output=True, timeout=120,
                          **kw)


def sdk_1_1_commit():
    """The newest commit whose SDK header is 1.1 (no PX_API_1_2 list yet)."""
    log = git("log", "--format=%H", "--", "sdk/panthera.h", text=True)
    if log.returncode != 0:
        return None
    for commit in log.stdout.split():
        header = git("show", "%s:sdk/panthera.h" % commit, text=True).stdout
        if "PX_API_1_2" not in header and "#define PX_API_1_1" in header:
            return commit
    return None


def sanitized_build():
    with open(os.path.join(BUILD, "meson-info", "intro-buildoptions.json")) as f:
        return any(o["name"] == "b_sanitize" and o["value"] not in ("none", "")
                   for o in json.load(f))


def old_pantherad():
    if sanitized_build():
        pytest.skip("the sanitizer build's plugins need an instrumented host; the 1.1 host "
                    "from history is a plain build (tests/skips.allow)")
    commit = sdk_1_1_commit()
    if not commit:
        pytest.skip("not a git checkout with the SDK's history: no 1.1 host to build")
    home = os.path.join(BUILD, "old-host-" + commit[:12])
    binary = os.path.join(home, "build", "server", "pantherad")
    if os.path.exists(binary):
        return commit, binary
    shutil.rmtree(home, ignore_errors=True)
    src = os.path.join(home, "src")
    os.makedirs(src)
    archive = subprocess.Popen(["git", "-C", REPO, "archive", commit], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", src], stdin=archive.stdout, timeout=120)
    archive.stdout.close()
    assert archive.wait(timeout=120) == 0 and untar.returncode == 0, "git archive failed"
    deadline = time.monotonic() + BUILD_TIMEOUT
    setup = subprocess.run(["meson", "setup", os.path.join(home, "build"), src,
                            "--buildtype=release", "--wrap-mode=nodownload"],
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    ninja = subprocess.run(["ninja", "-C", os.path.join(home, "build"), "server/pantherad"],
                           capture_output=True, text=True,
                           timeout=max(60, deadline - time.monotonic()))
    assert ninja.returncode == 0, ninja.stdout[-3000:] + ninja.stderr[-3000:]
    return commit, binary


def run_host(binary, plugin, tmp):
    """Start the old host with [plugin:PLUGIN]: the process and its port."""
    port = free_port()
    conf = os.path.join(tmp, "pantherad.conf")
    with open(conf, "w") as f:
        f.write("[server]\nlisten = 127.0.0.1:%d\nworkers = 1\nplugin_path = %s\n"
                "error_log = %s\naccess_log = off\npid_file = %s\n\n[plugin:%s]\n"
                % (port, PLUGIN_PATH, os.path.join(tmp, "error.log"),
                   os.path.join(tmp, "pantherad.pid"), plugin))
    proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, port


def log_of(proc, tmp):
    text = ""
    path = os.path.join(tmp, "error.log")
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            text += f.read()
    return text


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=CEILING)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


@pytest.fixture(scope="module")
def old_host():
    return old_pantherad()


def test_a_min_minor_1_plugin_loads_and_serves_on_a_real_1_1_host(old_host):
    commit, binary = old_host
    tmp = tempfile.mkdtemp(prefix="panthera-oldhost-")
    proc, port = run_host(binary, "minor1", tmp)
    try:
        deadline = time.monotonic() + CEILING
        while True:
            assert proc.poll() is None, "the 1.1 host (%s) exited: %s%s" % (
                commit[:12], log_of(proc, tmp), stop(proc))
            try:
                r = requests.get("http://127.0.0.1:%d/v1/minor1" % port, timeout=CEILING)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the 1.1 host never served"
                time.sleep(0.1)
        assert r.status_code == 200, r.text
        doc = r.json()
        # On a real 1.1 host PX_HAS says no for a 1.2 function: the plugin takes its
        # 1.1 branch and never calls into a slot the host's table does not have.
        assert doc["descriptor_minor"] == 1 and doc["has_task_begin"] is False, doc
        assert doc["is_task"] is None, doc
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_plugin_needing_a_newer_minor_is_refused_by_a_1_1_host_with_a_clear_line(old_host):
    commit, binary = old_host
    tmp = tempfile.mkdtemp(prefix="panthera-oldhost-")
    proc, _ = run_host(binary, "hello", tmp)
    try:
        try:
            rc = proc.wait(timeout=CEILING)
        except subprocess.TimeoutExpired:
            pytest.fail("the 1.1 host started with a plugin that needs SDK 1.%d"
                        % header_abi()[1])
        text = log_of(proc, tmp) + stop(proc)
        assert rc != 0, text
        assert 'plugin "hello"' in text and "is not binary compatible" in text, text
        assert "needs SDK ABI 1.%d" % header_abi()[1] in text and "1.1" in text, text
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
