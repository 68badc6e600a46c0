"""Token revocations made while Redis was away (server/revocation.c): what was published
meanwhile is lost, so a worker whose subscription comes back reads the table again and
refuses what was revoked in between. A module of its own: it stops the shared Redis, so
it holds Redis's lock exclusively."""
import os

import pytest

from panthera_server import Server
from services import Redis, redis_lock
from test_token_revocation import (PLUGINS, insert_row, new_sub, now_ms, private, sections,
                                   token, wait_refused_everywhere)

pytestmark = pytest.mark.skipif(
    not (os.environ.get("PANTHERA_PGHOST") and os.environ.get("PANTHERA_REDIS_SOCKET")),
    reason="needs PANTHERA_PGHOST and PANTHERA_REDIS_SOCKET")


def test_a_revocation_made_while_redis_was_away_is_read_when_it_returns():
    # No poll: only the read on the subscription's return can tell the workers.
    s = Server(workers=2, plugins=PLUGINS, log_level="info",
               sections=sections(revocation_poll="0"))
    redis = Redis()
    sub = new_sub()
    tok = token(sub)
    with redis_lock(exclusive=True):
        s.start()
        try:
            assert private(s, tok).status_code == 200
            redis.stop()
            try:
                now = now_ms()
                insert_row(sub, now, now + 600000)
                # Nothing can tell them yet: the message that never was, nor a poll.
                assert all(private(s, tok).status_code == 200 for _ in range(10))
            finally:
                redis.start()
            wait_refused_everywhere(s, tok)
            assert s.running()
        finally:
            redis.restore()
            s.stop()
    s.cleanup()
