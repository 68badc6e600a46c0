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

from panthera_server import Server  # noqa: E402


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
