"""px_token_revoke (SDK 1.3, server/revocation.c) through the revokekit plugin: once the
revoking transaction commits, every access token issued for the subject until then is 401
("invalid bearer token: revoked") on every route, on the committing worker at once, on the
host's other workers and on another host through the host's channel, and on any worker
through the table (its read at start and every [auth] revocation_poll); tokens issued
later, other subjects' tokens and a rolled-back revocation are untouched; stream tickets
issued before are refused too; a revocation past its end is forgotten and its row deleted.
Every wait polls up to a ceiling only a hang reaches; nothing is timed. Each test revokes
subjects of its own: revocations outlive the test in the shared database."""
import os
import time
import uuid

import pytest
import requests

from services import redis_lock
from sse_client import SSE
from test_events import psql_value
from test_gateway_auth import AUTH, bearer, claims, make_jwt
from test_idempotency import conninfo

PGHOST = os.environ.get("PANTHERA_PGHOST")
REDIS_SOCKET = os.environ.get("PANTHERA_REDIS_SOCKET")
pytestmark = pytest.mark.skipif(not (PGHOST and REDIS_SOCKET),
                                reason="needs PANTHERA_PGHOST and PANTHERA_REDIS_SOCKET")

PX_EINVAL, PX_ESTATE = -1, -10
CEILING = 60  # seconds: only a revocation that never arrives gets there
REVOKED = "invalid bearer token: revoked"
PLUGINS = ("revokekit", "testkit", "streamkit")


def sections(redis=True, **auth):
    s = {"postgres": {"conninfo": conninfo()}, "auth": dict(AUTH, **auth)}
    if redis:
        s["redis"] = {"address": "unix:" + (REDIS_SOCKET or "")}
    return s


def start(make_server, workers=2, **kw):
    with redis_lock(exclusive=False):
        return make_server(workers=workers, plugins=PLUGINS, sections=sections(**kw))


def new_sub():
    return "rv-" + uuid.uuid4().hex[:12]


def token(sub, **extra):
    return make_jwt(claims(sub=sub, **extra))


def private(server, tok, session=None):
    """GET /v1/test/private on a new connection (or on `session`'s)."""
    get = session.get if session else requests.get
    return get(server.url("/v1/test/private"), headers=bearer(tok), timeout=10)


def revoke(server, sub, session=None, **extra):
    post = session.post if session else requests.post
    return post(server.url("/v1/revokekit/revoke"), json=dict({"sub": sub}, **extra), timeout=10)


def assert_revoked(r):
    assert r.status_code == 401, r.text
    assert r.json()["error"] == {"code": "unauthorized", "message": REVOKED}
    assert r.headers["WWW-Authenticate"] == "Bearer"


def refused_everywhere(server, tok, n=20):
    """n requests in a row, each on a new connection (so both workers answer some), all
    refused as revoked."""
    return all(private(server, tok).status_code == 401 for _ in range(n))


def wait_refused_everywhere(server, tok):
    end = time.time() + CEILING
    while not refused_everywhere(server, tok):
        assert time.time() < end, "a worker kept accepting a revoked token"
        time.sleep(0.1)
    assert_revoked(private(server, tok))


def now_ms():
    return int(time.time() * 1000)


def insert_row(sub, revoked_at_ms, ends_at_ms):
    """A revocation written behind the hosts' backs (psql; or another host whose message
    was lost)."""
    psql_value("INSERT INTO panthera_token_revocations (sub, revoked_at_ms, ends_at_ms) "
               "VALUES ('%s', %d, %d)" % (sub, revoked_at_ms, ends_at_ms))


def refused_metric(server, credential):
    text = requests.get(server.url("/metrics"), timeout=10).text
    key = 'panthera_revoked_refused_total{credential="%s"} ' % credential
    return int(next(line for line in text.splitlines() if line.startswith(key)).split()[-1])


def test_misuse_is_refused(make_server):
    s = start(make_server, workers=1)
    r = requests.get(s.url("/v1/revokekit/misuse"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"outside": PX_ESTATE, "null_sub": PX_EINVAL, "empty": PX_EINVAL,
                        "too_long": PX_EINVAL, "longest": 0}


def test_the_committing_worker_refuses_at_once_and_the_others_hear_it_by_channel(make_server):
    # No poll: only the commit hook (this worker) and the channel (the other) can tell them.
    s = start(make_server, revocation_poll="0")
    sub, other = new_sub(), new_sub()
    old, others = token(sub), token(other)
    assert private(s, old).status_code == 200
    assert refused_metric(s, "token") == 0
    with requests.Session() as conn:
        assert revoke(s, sub, session=conn).status_code == 204
        # The same connection, so the same worker: refused before the answer went out.
        assert_revoked(private(s, old, session=conn))
    wait_refused_everywhere(s, old)
    assert private(s, others).status_code == 200
    # A token issued after the revocation works, even in its second (iat_ms, as the host
    # signs them); one without iat does not, nor one dated only to the revocation's second.
    revoked_at = int(psql_value("SELECT revoked_at_ms FROM panthera_token_revocations "
                                "WHERE sub = '%s'" % sub))
    later = token(sub, iat=revoked_at // 1000, iat_ms=revoked_at + 1)
    assert all(private(s, later).status_code == 200 for _ in range(10))
    assert_revoked(private(s, token(sub, iat=revoked_at // 1000)))
    assert_revoked(private(s, token(sub, iat=revoked_at // 1000, iat_ms=revoked_at)))
    assert_revoked(private(s, token(sub, iat=None)))
    assert refused_metric(s, "token") >= 24  # 20 in the last wait, 4 since
    # As any refused token, a revoked one is 401 on a route that only lends the caller.
    r = requests.get(s.url("/v1/test/whoami"), headers=bearer(old), timeout=10)
    assert_revoked(r)
    row = psql_value("SELECT ends_at_ms - revoked_at_ms FROM panthera_token_revocations "
                     "WHERE sub = '%s'" % sub)
    # access_ttl (15 min) + leeway (5 s) + the second exp may round away.
    assert int(row) == (15 * 60 + 5 + 1) * 1000


def test_a_rolled_back_revocation_changes_nothing(make_server):
    s = start(make_server, workers=1)
    sub = new_sub()
    r = revoke(s, sub, rollback=True)
    assert r.status_code == 200 and r.json() == {"rolledBack": True}, r.text
    assert all(private(s, token(sub)).status_code == 200 for _ in range(5))
    assert psql_value("SELECT count(*) FROM panthera_token_revocations WHERE sub = '%s'"
                      % sub) == "0"


def test_another_host_hears_it_by_channel(make_server):
    a = start(make_server, workers=1, revocation_poll="0")
    b = start(make_server, workers=2, revocation_poll="0")
    sub = new_sub()
    tok = token(sub)
    assert private(b, tok).status_code == 200
    assert revoke(a, sub).status_code == 204
    wait_refused_everywhere(b, tok)


def test_without_redis_the_poll_reads_what_was_written_elsewhere(make_server):
    s = start(make_server, redis=False, revocation_poll="200ms")
    sub = new_sub()
    tok = token(sub)
    assert private(s, tok).status_code == 200
    now = now_ms()
    insert_row(sub, now, now + 600000)
    wait_refused_everywhere(s, tok)


def test_a_worker_started_later_reads_the_revocations_in_force(make_server):
    sub = new_sub()
    tok = token(sub)
    now = now_ms()
    insert_row(sub, now, now + 600000)
    # No Redis and no poll: only the read at the worker's start can tell it.
    s = start(make_server, redis=False, revocation_poll="0")
    wait_refused_everywhere(s, tok)


def test_a_revocation_past_its_end_is_forgotten_and_its_row_deleted(make_server):
    s = start(make_server, redis=False, revocation_poll="200ms")
    ended, ending = new_sub(), new_sub()
    now = now_ms()
    insert_row(ended, now, now - 120000)  # past its end and the readers' grace: deleted
    insert_row(ending, now, now - 1000)   # past its end: no longer refused, row kept a while
    end = time.time() + CEILING
    while psql_value("SELECT count(*) FROM panthera_token_revocations WHERE sub = '%s'"
                     % ended) != "0":
        assert time.time() < end, "the ended revocation's row was never deleted"
        time.sleep(0.1)
    for sub in (ended, ending):
        assert all(private(s, token(sub, iat=now // 1000 - 10)).status_code == 200
                   for _ in range(10))
    assert psql_value("SELECT count(*) FROM panthera_token_revocations WHERE sub = '%s'"
                      % ending) == "1"


def test_a_stream_ticket_issued_before_the_revocation_is_refused(make_server):
    # One worker: it committed the revocation, so it knows before the ticket comes back.
    s = start(make_server, workers=1, revocation_poll="0")
    sub = new_sub()
    r = requests.post(s.url("/v1/streamkit/ticket"), headers=bearer(token(sub)), timeout=10)
    assert r.status_code == 200, r.text
    ticket = r.json()["ticket"]
    assert revoke(s, sub).status_code == 204
    r = requests.get(s.url("/v1/streamkit/whoami?ticket=" + ticket), timeout=10)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["message"] == "invalid ticket: revoked"
    assert refused_metric(s, "ticket") == 1


def test_streams_opened_with_a_revoked_token_end_and_cannot_come_back(make_server):
    """A stream outlives the check its token passed when it opened: the host ends those
    of the revoked subject (a retry: first, as on a reload) on every worker that hears of
    the revocation, and the client's reconnect with the same token is refused. Streams
    of other callers stay."""
    s = start(make_server, revocation_poll="0")
    sub, other = new_sub(), new_sub()
    path = "/v1/streamkit/sse?channel=rv-" + sub

    def opened(sub_, n):
        streams = [SSE(s.port, path, headers=bearer(token(sub_))) for _ in range(n)]
        for st in streams:
            hello = st.next_event(timeout=20)
            assert hello["event"] == "hello" and sub_ in hello["data"], hello
        return streams
    # New connections each, so both workers hold some of them.
    mine, theirs = opened(sub, 6), opened(other, 2)
    assert revoke(s, sub).status_code == 204
    for st in mine:
        st.read_to_end(timeout=CEILING)
        assert st.eof and st.retry is not None, st.raw[-80:]
        st.close()
    again = SSE(s.port, path, headers=bearer(token(sub)))
    assert again.status == 401, again.raw[:200]
    again.close()
    for st in theirs:  # still open: a message reaches them
        r = requests.post(s.url("/v1/streamkit/publish?channel=rv-%s&data=still" % sub),
                          timeout=10)
        assert r.status_code == 204, r.text
        ev = st.events_until(lambda e: e["event"] == "rv-" + sub, timeout=20)[-1]
        assert ev["data"] == "still"
        st.close()
