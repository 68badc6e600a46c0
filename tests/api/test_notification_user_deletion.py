"""A deleted user's notification rows go (plugins/notification/README.md, "Deleted users"):
DELETE /v1/users/{id} emits user.deleted once, in the deletion's transaction (plugins/user);
the notification plugin's group notification-users then removes every row the user owns or
receives (inbox, preferences, inbox state, task watches, mail ledger, digest items,
webhooks and their deliveries) and ends the user's open streams. Mail and webhook
deliveries queued for them are held back (next_attempt_at in the future) until after the
deletion, then released together with another user's: the other user's arrive, theirs
never do. Other users' notifications naming the deleted user as actor stay. Every wait
polls (the host's delivery records, the sink, the receiver) up to a ceiling only a hang
reaches; nothing is timed.
"""
import subprocess
import time
import uuid

import pytest

from content_helpers import new_post
from delivery_helpers import MailEnv, Receiver, to, wait_sql
from notif_helpers import (CEILING, add_member, call, describe, make_admin, needs_services,
                           new_project, new_task, open_stream, processed, psql, register)
from panthera_server import PANTHERAD

pytestmark = needs_services

# Every table of the plugin that names a user, and how (README.md, "Deleted users").
USER_ROWS = {
    "notification": "user_id = '{u}'",
    "notification_preference": "user_id = '{u}'",
    "notification_inbox_state": "user_id = '{u}'",
    "notification_task_watch": "user_id = '{u}'",
    "notification_mail": "user_id = '{u}'",
    "notification_digest_item": "user_id = '{u}'",
    "notification_webhook": "user_id = '{u}'",
    "notification_webhook_delivery":
        "webhook_id IN (SELECT id FROM notification_webhook WHERE user_id = '{u}')",
}


@pytest.fixture(scope="module")
def env():
    e = MailEnv("ntfud", webhook_allow_loopback="true")
    e.rx = Receiver()
    e.admin = make_admin(e.srv)
    yield e
    e.rx.close()
    e.close()


def counts(env, user_id):
    return {t: int(psql(env.db, "SELECT count(*) FROM %s WHERE %s"
                        % (t, where.format(u=user_id))).strip())
            for t, where in USER_ROWS.items()}


def wait_delivered(env, user_id):
    """Until notification-users is done with the user.deleted event about the user."""
    wait_sql(env.db, "SELECT string_agg(d.state, ',') FROM panthera_event_deliveries d JOIN "
             "panthera_events e ON e.id = d.event_id WHERE d.group_name = 'notification-users'"
             " AND e.type = 'user.deleted' AND e.aggregate_id = '%s'" % user_id, "done",
             "notification-users' delivery")


def hold_work(env, acct, hook_id, source_event):
    """A mail-only notification for acct with an instant mail, a digest holding it and a
    webhook delivery of it, all queued but not due (released by release_work)."""
    nid = str(uuid.uuid4())
    mark = "held-" + nid[:8]
    psql(env.db, "INSERT INTO notification (id, user_id, type, payload, source_event, in_app) "
         "VALUES ('%s', '%s', 'task.assigned', json_build_object('title', '%s')::jsonb, %d, "
         "false)" % (nid, acct.id, mark, source_event))
    psql(env.db, "INSERT INTO notification_mail (kind, notification_id, user_id, type, "
         "next_attempt_at) VALUES ('instant', '%s', '%s', 'task.assigned', now() + "
         "interval '1 day')" % (nid, acct.id))
    psql(env.db, "INSERT INTO notification_digest_item (notification_id, user_id, type, period)"
         " VALUES ('%s', '%s', 'task.assigned', '2026-01-01Z'); INSERT INTO notification_mail "
         "(kind, user_id, period, next_attempt_at) VALUES ('digest', '%s', '2026-01-01Z', "
         "now() + interval '1 day')" % (nid, acct.id, acct.id))
    psql(env.db, "INSERT INTO notification_webhook_delivery (webhook_id, notification_id, "
         "next_attempt_at) VALUES ('%s', '%s', now() + interval '1 day')" % (hook_id, nid))
    return mark


def release_work(env):
    psql(env.db, "UPDATE notification_mail SET next_attempt_at = now() WHERE state = 'pending';"
         " UPDATE notification_webhook_delivery SET next_attempt_at = now() "
         "WHERE state = 'pending'")


def world(env):
    """owner's project with members a and b; each of a and b assigned a task (inbox row,
    watch, mail, webhook delivery), with a preference, a webhook and held work; a likes
    owner's post (owner's notification names a as actor)."""
    srv = env.srv
    owner, a, b = register(srv), register(srv), register(srv)
    w = {"owner": owner, "a": a, "b": b}
    p = new_project(srv, owner)
    for acct in (a, b):
        add_member(srv, owner, p["id"], acct, "member")
        r = call(srv, "POST", "/v1/notifications/webhooks", token=acct.access,
                 json_body={"url": env.rx.url("/" + acct.id)})
        assert r.status_code == 201, describe(r)
        w["hook_" + acct.id] = r.json()["id"]
        psql(env.db, "INSERT INTO notification_preference (user_id, type, in_app, email) "
             "VALUES ('%s', 'post.liked', true, 'daily')" % acct.id)
        new_task(srv, owner, p["id"], assigneeId=acct.id)
    post = new_post(srv, owner, title="liked by a")
    r = call(srv, "POST", "/v1/posts/%s/like" % post["id"], token=a.access)
    assert r.status_code == 204, describe(r)
    processed(env.db)
    for acct in (a, b):
        env.sink.wait(to(acct, "task.assigned"))
        env.rx.wait(1, "/" + acct.id)
    w["owner_liked"] = psql(env.db, "SELECT id FROM notification WHERE user_id = '%s' AND "
                            "type = 'post.liked' AND payload->>'actorId' = '%s'"
                            % (owner.id, a.id)).strip()
    assert w["owner_liked"], psql(env.db, "SELECT user_id, type, payload FROM notification")
    base = -int(uuid.uuid4().int % 1_000_000_000) * 2
    w["mark_a"] = hold_work(env, a, w["hook_" + a.id], base)
    w["mark_b"] = hold_work(env, b, w["hook_" + b.id], base - 1)
    for acct in (a, b):
        assert all(counts(env, acct.id).values()), counts(env, acct.id)
    return w


def sent_to(env, acct):
    return (len([m for m in env.sink.mails() if to(acct)(m)]),
            len([r for r in env.rx.requests if r[0] == "/" + acct.id]))


@pytest.mark.parametrize("by", ["self", "admin"])
def test_a_deleted_users_rows_go_and_nothing_is_sent_for_them(env, by):
    w = world(env)
    a, b, owner = w["a"], w["b"], w["owner"]
    b_before, owner_before = counts(env, b.id), counts(env, owner.id)
    stream = open_stream(env.srv, a)
    sent_before = sent_to(env, a)
    token = a.access if by == "self" else env.admin.access
    r = call(env.srv, "DELETE", "/v1/users/" + a.id, token=token)
    assert r.status_code == 204, describe(r)
    wait_delivered(env, a.id)

    assert counts(env, a.id) == dict.fromkeys(USER_ROWS, 0)
    assert counts(env, b.id) == b_before and counts(env, owner.id) == owner_before
    # Owner's notification about a's like is owner's history: it stays, naming a.
    r = call(env.srv, "GET", "/v1/notifications", token=owner.access, params={"limit": 100})
    assert w["owner_liked"] in [n["id"] for n in r.json()["notifications"]], r.text
    # a's open stream ended.
    while True:
        ev = stream.next_event(timeout=CEILING)
        if ev is None:
            break
        assert ev["event"] != "notification", ev

    # The held work is released: b's arrives, a's was deleted and never goes out.
    release_work(env)
    env.sink.wait(lambda m: to(b)(m) and m["X-Panthera-Digest-Period"], 1, "b's digest")
    env.sink.wait(lambda m: to(b, "task.assigned")(m) and w["mark_b"] in str(m["Subject"]),
                  1, "b's held mail")
    env.rx.wait(2, "/" + b.id)
    wait_sql(env.db, "SELECT count(*) FROM notification_mail WHERE state = 'pending'", "0",
             "the mail outbox drained")
    wait_sql(env.db, "SELECT count(*) FROM notification_webhook_delivery WHERE state = "
             "'pending'", "0", "the webhook outbox drained")
    assert sent_to(env, a) == sent_before
    assert not [m for m in env.sink.mails() if w["mark_a"] in str(m["Subject"])]


def test_deleting_a_user_without_notification_rows(env):
    a, b = register(env.srv), register(env.srv)
    psql(env.db, "INSERT INTO notification_preference (user_id, type, in_app, email) "
         "VALUES ('%s', 'mention', false, 'off')" % b.id)
    r = call(env.srv, "DELETE", "/v1/users/" + a.id, token=env.admin.access)
    assert r.status_code == 204, describe(r)
    wait_delivered(env, a.id)
    assert counts(env, a.id) == dict.fromkeys(USER_ROWS, 0)
    assert counts(env, b.id)["notification_preference"] == 1


def test_a_redelivered_user_deleted_has_no_second_effect(env):
    """The delivery is dead-lettered by hand and replayed with `pantherad events:replay`:
    the handler runs again on a user whose rows are gone and changes nothing."""
    w = world(env)
    a, b = w["a"], w["b"]
    assert call(env.srv, "DELETE", "/v1/users/" + a.id, token=a.access).status_code == 204
    wait_delivered(env, a.id)

    def state():
        return {t: psql(env.db, "SELECT count(*) FROM %s" % t).strip() for t in USER_ROWS}

    before = state()
    event_id = psql(env.db, "SELECT id FROM panthera_events WHERE type = 'user.deleted' AND "
                    "aggregate_id = '%s'" % a.id).strip()
    psql(env.db, "UPDATE panthera_event_deliveries SET state = 'dead' WHERE group_name = "
         "'notification-users' AND event_id = %s" % event_id)
    replay = subprocess.run([PANTHERAD, "-c", env.srv.conf_path, "events:replay",
                             "notification-users", event_id],
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0 and replay.stdout.startswith("1 dead letters"), replay
    wait_delivered(env, a.id)
    assert state() == before
    assert counts(env, a.id) == dict.fromkeys(USER_ROWS, 0)
    assert all(counts(env, b.id).values())
    # Release the held work so the module leaves nothing queued; b's goes, a's is gone.
    release_work(env)
    env.rx.wait(2, "/" + b.id)


def test_a_user_with_more_rows_than_a_batch(env):
    """1,200 inbox rows, 1,100 mail-only rows and ledger rows, 1,100 watches, written
    straight into the tables: several batches (500, USER_GONE_BATCH) of each kind in one
    delivery, none missed."""
    a = register(env.srv)
    psql(env.db, "INSERT INTO notification (user_id, type, payload, source_event, in_app) "
         "SELECT '{u}', 'mention', '{{}}', -5000000 - i, i <= 1200 FROM generate_series(1, 2300) i;"
         " INSERT INTO notification_mail (kind, notification_id, user_id, type, state) "
         "SELECT 'instant', id, user_id, type, 'sent' FROM notification WHERE user_id = '{u}' "
         "AND NOT in_app; INSERT INTO notification_task_watch (task_id, user_id, reason) "
         "SELECT gen_random_uuid(), '{u}', 'commenter' FROM generate_series(1, 1100)"
         .format(u=a.id))
    assert call(env.srv, "DELETE", "/v1/users/" + a.id,
                token=env.admin.access).status_code == 204
    wait_delivered(env, a.id)
    assert counts(env, a.id) == dict.fromkeys(USER_ROWS, 0)
