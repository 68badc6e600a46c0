"""Email delivery of the notification plugin (issue 15 item 3): instant mails through a
local SMTP sink, once; header injection; the relay down then up; dead letters; daily
digests once per user and period with two hosts; RFC 8058 one-click unsubscribe."""
import json
import re
import time
import uuid

import pytest
import requests

from delivery_helpers import (BASE_URL, MailEnv as Env, assigned, ledger_settled, to,
                              unsubscribe_token, wait_sql)
from notif_helpers import (add_member, call, describe, needs_services, new_project, new_task,
                           processed, psql, register)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    e = Env("ntfmail")
    yield e
    e.close()


def test_instant_mail_arrives_once_with_unsubscribe_headers(env):
    owner, bob, t = assigned(env)
    (m,) = env.sink.wait(to(bob, "task.assigned"))
    # Settled: every row of bob's sent, and still exactly one mail for the assignment.
    states = ledger_settled(env.db, "user_id = '%s'" % bob.id)
    assert "pending" not in states and "dead" not in states, states
    assert len([x for x in env.sink.mails() if to(bob, "task.assigned")(x)]) == 1
    assert psql(env.db, "SELECT count(*) FROM notification_mail WHERE user_id = '%s' AND "
                        "type = 'task.assigned' AND state = 'sent'" % bob.id).strip() == "1"
    assert t["title"] in m["Subject"]
    assert m["X-Sink-Mail-From"] == "noreply@panthera.test"
    assert m.get_content_type() == "text/plain"
    assert t["title"] in m.get_content()
    lu = m["List-Unsubscribe"]
    assert re.fullmatch(r"<%s/v1/notifications/unsubscribe\?token=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+>"
                        % re.escape(BASE_URL), lu), lu
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["Message-ID"].endswith("@panthera.test>")
    # The actor gets nothing about their own act.
    assert not [x for x in env.sink.mails() if to(owner, "task.assigned")(x)]


def test_header_injection_through_the_api_adds_no_header(env):
    # What the task API accepts in a title: Unicode line breaks (NEL, LINE SEPARATOR)
    # and a literal encoded-word that decodes to CRLF.
    title = "Hi\u0085Bcc: evil@attacker.test\u2028X-Injected: 1 =?UTF-8?B?DQpCY2M6IHhAeA==?="
    owner, bob, t = assigned(env, title=title)
    (m,) = env.sink.wait(to(bob, "task.assigned"))
    assert m["Bcc"] is None and m["X-Injected"] is None, m.raw[:800]
    assert m["X-Sink-Rcpt-To"] == bob.email
    head = m.raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"\n(Bcc|X-Injected):", head, re.I), head
    # The reader still sees the title's words (decoded from RFC 2047).
    assert "Bcc: evil@attacker.test" in str(m["Subject"])


def test_crlf_in_stored_text_adds_no_header(env):
    """CR/LF cannot come through the task API; a payload written by any producer can
    hold them, so the sender is tested with one put in the database directly."""
    bob = register(env.srv)
    nid = str(uuid.uuid4())
    evil = "Title\\r\\nBcc: evil@attacker.test\\r\\n\\r\\nbody"
    # A hidden row (in_app false) with a source event of its own: no inbox sees it.
    psql(env.db, "INSERT INTO notification (id, user_id, type, payload, source_event, in_app) "
                 "VALUES ('%s', '%s', 'task.assigned', json_build_object('title', E'%s', "
                 "'excerpt', E'x\\r\\nBcc: e@x')::jsonb, -1, false)" % (nid, bob.id, evil))
    psql(env.db, "INSERT INTO notification_mail (kind, notification_id, user_id, type) "
                 "VALUES ('instant', '%s', '%s', 'task.assigned')" % (nid, bob.id))
    (m,) = env.sink.wait(to(bob, "task.assigned"))
    assert m["Bcc"] is None, m.raw[:800]
    assert m["X-Sink-Rcpt-To"] == bob.email
    head = m.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc" not in head and b"\rBcc" not in head, head
    assert "Title  Bcc: evil@attacker.test" in str(m["Subject"])


def unsub_url(m):
    return m["List-Unsubscribe"].strip("<>")


def prefs(env, acct):
    r = call(env.srv, "GET", "/v1/notifications/preferences", token=acct.access)
    assert r.status_code == 200, describe(r)
    return r.json()


def local(url):
    """The unsubscribe URL pointed at the test server (the mail names the public one)."""
    return url.replace(BASE_URL, "")


def test_one_click_unsubscribe(env):
    owner, bob, t = assigned(env)
    (m,) = env.sink.wait(to(bob, "task.assigned"))
    path = local(unsub_url(m))
    before = prefs(env, bob)
    assert before["task.assigned"]["email"] == "instant"
    # GET: a confirmation page with a form; nothing changes.
    r = requests.get(env.srv.url(path), timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html"), r.text
    assert "<form method=post" in r.text and "no-store" in r.headers["Cache-Control"]
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert prefs(env, bob) == before
    # POST as a mail client does (RFC 8058): 204, email off for that type only, inApp kept.
    r = requests.post(env.srv.url(path), data="List-Unsubscribe=One-Click", timeout=30,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 204, r.text
    after = prefs(env, bob)
    assert after["task.assigned"] == {"inApp": before["task.assigned"]["inApp"], "email": "off"}
    for k in before:
        if k != "task.assigned":
            assert after[k] == before[k], k
    # Again: still 204 (the link may be clicked twice).
    r = requests.post(env.srv.url(path), timeout=30)
    assert r.status_code == 204, r.text
    # And the next assignment mails nothing (the consumer sees email off).
    p2 = new_project(env.srv, owner)
    add_member(env.srv, owner, p2["id"], bob, "member")
    new_task(env.srv, owner, p2["id"], assigneeId=bob.id)
    processed(env.db)
    assert psql(env.db, "SELECT count(*) FROM notification_mail WHERE user_id = '%s' AND "
                        "type = 'task.assigned'" % bob.id).strip() == "1"


def test_unsubscribe_refuses_bad_tokens(env):
    bob = register(env.srv)
    key = psql(env.db, "SELECT key FROM notification_delivery_key").strip()
    good = unsubscribe_token(key, bob.id, "post.liked", int(time.time()) + 600)
    expired = unsubscribe_token(key, bob.id, "post.liked", int(time.time()) - 1)
    forged = unsubscribe_token("another key, long enough......", bob.id, "post.liked",
                               int(time.time()) + 600)
    payload, sig = good.split(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + sig
    before = prefs(env, bob)
    for bad in (expired, forged, tampered, "x", good + "x", "a.b"):
        r = call(env.srv, "POST", "/v1/notifications/unsubscribe", params={"token": bad})
        assert r.status_code == 400, (bad, describe(r))
        r = requests.get(env.srv.url("/v1/notifications/unsubscribe"), params={"token": bad},
                         timeout=30)
        assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/html")
    r = call(env.srv, "POST", "/v1/notifications/unsubscribe")
    assert r.status_code == 400, describe(r)
    assert prefs(env, bob) == before
    # The token made here by README.md's recipe works: the format is as documented.
    r = call(env.srv, "POST", "/v1/notifications/unsubscribe", params={"token": good})
    assert r.status_code == 204, describe(r)
    assert prefs(env, bob)["post.liked"]["email"] == "off"


def test_relay_down_then_up_delivers_once_and_dead_letters_old_rows():
    e = Env("ntfrelay", sink_up=False)
    try:
        owner, bob, t = assigned(e)
        # Attempts fail while nothing listens; the row stays pending with the error.
        wait_sql(e.db, "SELECT attempts >= 2 AND last_error IS NOT NULL AND state = 'pending' "
                       "FROM notification_mail WHERE user_id = '%s' AND type = 'task.assigned'"
                 % bob.id, "t", "failed attempts recorded")
        # A row older than mail_dead_after (1d) is dead-lettered at its next failure.
        carol = register(e.srv)
        nid = str(uuid.uuid4())
        psql(e.db, "INSERT INTO notification (id, user_id, type, payload, source_event, "
                   "in_app) VALUES ('%s', '%s', 'post.liked', '{\"title\": \"old\"}', -1, "
                   "false)" % (nid, carol.id))
        psql(e.db, "INSERT INTO notification_mail (kind, notification_id, user_id, type, "
                   "created_at) VALUES ('instant', '%s', '%s', 'post.liked', "
                   "now() - interval '25 hours')" % (nid, carol.id))
        wait_sql(e.db, "SELECT state FROM notification_mail WHERE notification_id = '%s'" % nid,
                 "dead", "dead-lettered")
        e.sink.start()
        (m,) = e.sink.wait(to(bob, "task.assigned"))
        ledger_settled(e.db, "user_id = '%s'" % bob.id)
        assert len([x for x in e.sink.mails() if to(bob, "task.assigned")(x)]) == 1
        assert not [x for x in e.sink.mails() if to(carol)(x)]
    finally:
        e.close()


def test_daily_digest_once_per_user_and_period_with_two_hosts():
    # Periods of 3 s, checked every 200 ms by every worker of both hosts.
    e = Env("ntfdigest", servers=2, digest_every="3s", email_task_assigned="daily")
    try:
        owner, bob = register(e.srv), register(e.servers[1])
        p = new_project(e.srv, owner)
        add_member(e.srv, owner, p["id"], bob, "member")
        n = 6
        for i in range(n):
            srv = e.servers[i % 2]
            new_task(srv, owner, p["id"], assigneeId=bob.id)
        processed(e.db)
        wait_sql(e.db, "SELECT count(*) FROM notification_digest_item WHERE user_id = '%s' "
                       "AND period IS NOT NULL" % bob.id, str(n), "items claimed by digests")
        ledger_settled(e.db, "kind = 'digest'")
        digests = e.sink.wait(lambda m: to(bob)(m) and m["X-Panthera-Digest-Period"], 1,
                              "digest")
        periods = [m["X-Panthera-Digest-Period"] for m in digests]
        assert len(periods) == len(set(periods)), periods
        counted = sum(int(re.search(r"(\d+) notification", str(m["Subject"])).group(1))
                      for m in digests)
        assert counted == n, [str(m["Subject"]) for m in digests]
        for m in digests:
            assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert m["X-Panthera-Notification-Types"] == "task.assigned"
        # No instant mail for a daily type.
        assert not [x for x in e.sink.mails()
                    if to(bob, "task.assigned")(x) and not x["X-Panthera-Digest-Period"]]
        assert psql(e.db, "SELECT count(*) FROM notification_mail WHERE user_id = '%s' AND "
                          "kind = 'digest'" % bob.id).strip() == str(len(digests))
    finally:
        e.close()


def test_notification_created_of_the_single_item_shape_is_still_delivered(env):
    # notification.created carries a whole consumer batch's items now ({"created": [...]});
    # one emitted before that (the item itself as payload) may still be pending in the
    # log after an upgrade, and its recipients still get their ledger rows.
    bob = register(env.srv)
    nid = psql(env.db, "INSERT INTO notification (user_id, type, payload, source_event)"
                       " VALUES ('%s', 'task.assigned', '{\"title\": \"old\"}', -1)"
                       " RETURNING id" % bob.id).strip().splitlines()[0]
    payload = {"type": "task.assigned", "sourceEventId": -1, "projectId": None,
               "recipients": [{"userId": bob.id, "notificationId": nid, "email": "daily",
                               "inApp": True}]}
    psql(env.db, "INSERT INTO panthera_events (type, aggregate_id, producer, payload)"
                 " VALUES ('notification.created', '-1', 'notification', '%s');"
                 " SELECT pg_notify('panthera_events', '')" % json.dumps(payload))
    wait_sql(env.db, "SELECT count(*) FROM notification_digest_item WHERE notification_id ="
                     " '%s' AND user_id = '%s'" % (nid, bob.id), "1", "the digest item")
