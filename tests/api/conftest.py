"""Shared fixtures for the black-box API tests (see panthera_server.py for the helper).

Fixtures:
  server        module-scoped: workers=2, plugins hello + testkit, default limits.
  make_server   function-scoped factory: make_server(**Server kwargs) -> started Server,
                stopped and removed at the end of the test.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import panthera_server  # noqa: E402
from panthera_server import Server  # noqa: E402

LOG_TAIL_LINES = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the error-log tail of every server still running:
    a flake seen once in CI is then diagnosable from CI's output alone (the servers'
    temporary directories are gone by the time anyone looks)."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for s in sorted(panthera_server._live, key=lambda s: s.port):
        tail = "\n".join(s.error_log().splitlines()[-LOG_TAIL_LINES:])
        rep.sections.append(("pantherad on port %d: error log, last %d lines"
                             % (s.port, LOG_TAIL_LINES), tail))


@pytest.fixture(scope="module")
def server():
    s = Server(workers=2)
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def make_server():
    made = []

    def make(**kwargs):
        s = Server(**kwargs)
        made.append(s)
        s.start()
        return s

    yield make
    for s in made:
        s.cleanup()
