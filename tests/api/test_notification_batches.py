"""The notification consumer under [events] batch: many deliveries in one transaction, so
its inbox locks are held until a whole batch commits, and several batches run at once.
Events for the same users land in different concurrent batches in both orders; nothing
may be lost or doubled, and per user, seq order must stay commit order (what a stream's
"after seq N" resume relies on), observed by reading the inbox while the consumer writes
it. Observed, never timed."""
import json
import threading
import uuid

import pytest

from notif_helpers import (needs_services, notif_env, processed, psql, register)

pytestmark = needs_services

EVENTS = 240  # per user


def snapshot(db, user):
    """(max seq, rows at or below it) of one user's inbox rows, in one statement."""
    out = psql(db, "SELECT coalesce(max(seq), 0), count(*) FROM notification"
                   " WHERE user_id = '%s'" % user).strip()
    top, n = out.split("|")
    return int(top), int(n)


@pytest.mark.parametrize("batch", ["8", "3"])
def test_concurrent_batches_keep_each_users_order_and_lose_nothing(batch):
    # batch 3: the batches alternate [a, b, a] and [b, a, b], so two of them in flight want
    # the same two users' inbox locks in opposite event order. The consumer's batch hook
    # takes every lock of a batch up front, in key order: no deadlock (PostgreSQL would
    # cancel one after deadlock_timeout, and its whole batch would come again).
    sections = {"events": {"batch": batch, "concurrency": "8", "poll_interval": "300ms"}}
    with notif_env("ntfbatch", sections=sections) as (db, s):
        a, b = register(s), register(s)
        # Alternating users and aggregates: every batch holds events of both users, and
        # the batches in flight take their locks in both orders.
        insert = ("INSERT INTO panthera_events (type, aggregate_id, producer, payload)"
                  " SELECT 'task.assigned', t::text, 'task', jsonb_build_object("
                  "'projectId', gen_random_uuid(), 'taskId', t, 'title', 't',"
                  " 'assigneeId', (ARRAY['{a}', '{b}'])[1 + i % 2],"
                  " 'previousAssigneeId', null,"
                  " 'actorId', '00000000-0000-4000-8000-000000000000',"
                  " 'members', jsonb_build_array(jsonb_build_object('userId', '{a}'),"
                  " jsonb_build_object('userId', '{b}')))"
                  " FROM (SELECT gen_random_uuid() AS t, i FROM generate_series(1, {n}) i) x;"
                  " SELECT pg_notify('panthera_events', '')").format(a=a.id, b=b.id, n=2 * EVENTS)
        samples = {a.id: [], b.id: []}
        done = threading.Event()

        def observe():
            while not done.is_set():
                for user in samples:
                    samples[user].append(snapshot(db, user))

        watcher = threading.Thread(target=observe)
        watcher.start()
        try:
            psql(db, insert)
            processed(db)
        finally:
            done.set()
            watcher.join()
        for user in (a, b):
            got = psql(db, "SELECT count(*), count(DISTINCT source_event) FROM notification"
                           " WHERE user_id = '%s' AND type = 'task.assigned'" % user.id).strip()
            assert got == "%d|%d" % (EVENTS, EVENTS), got  # each event once, none lost
            for top, n in samples[user.id]:
                # Rows at or below a seq once read are all there were: none committed later
                # with a smaller seq.
                now = psql(db, "SELECT count(*) FROM notification WHERE user_id = '%s'"
                               " AND seq <= %d" % (user.id, top)).strip()
                assert int(now) == n, (top, n, now)
        # The delivery side hears of each row once, of a batch's rows in one event: fewer
        # notification.created than source events.
        told = psql(db, "SELECT count(*), count(DISTINCT i ->> 'notificationId'),"
                        " count(DISTINCT e.id) FROM panthera_events e,"
                        " jsonb_array_elements(e.payload -> 'created') c,"
                        " jsonb_array_elements(c -> 'recipients') i"
                        " WHERE e.type = 'notification.created'").strip().split("|")
        assert told[:2] == [str(2 * EVENTS)] * 2, told
        assert 0 < int(told[2]) < 2 * EVENTS, told
        # Every batch committed the first time: none was cancelled as a deadlock.
        again = psql(db, "SELECT count(*) FROM panthera_event_deliveries WHERE group_name ="
                         " 'notification-task' AND (attempts > 1 OR last_error IS NOT NULL)")
        assert again.strip() == "0", psql(db, "SELECT event_id, attempts, last_error FROM"
                                              " panthera_event_deliveries WHERE attempts > 1")
        assert "deadlock" not in s.error_log(), s.error_log()[-3000:]


def test_watch_changes_keep_event_order_within_a_batch():
    # The batch hook makes the watch table's changes of a batch in one statement, ahead of
    # every handler, but only those no earlier event of their task (nor the event itself)
    # reads: a status change must see the assignee of its moment, not a later one of the
    # same batch; a commenter starts watching after its comment's recipients were chosen.
    # One INSERT: each task's events are one aggregate, handed out in one batch, in order.
    with notif_env("ntfwatch", sections={"events": {"batch": "32"}}) as (db, s):
        a, b, c = register(s), register(s), register(s)
        a_, b_, c_ = a.id, b.id, c.id
        t1, t2, t3, project = (str(uuid.uuid4()) for _ in range(4))
        # (ordinal, type, task, actor, extra payload); the ordinal goes in the title.
        events = [
            (1, "task.created", t1, a_, {}),
            (2, "task.created", t2, a_, {}),
            (3, "task.assigned", t1, a_, {"assigneeId": b_}),
            (4, "task.assigned", t2, a_, {"assigneeId": b_}),
            (5, "task.status_changed", t1, a_, {"from": "todo", "to": "doing"}),
            (6, "task.assigned", t1, a_, {"assigneeId": c_}),
            (7, "task.assigned", t2, a_, {"assigneeId": c_}),
            (8, "task.commented", t1, b_, {"commentId": str(uuid.uuid4()), "excerpt": "x"}),
            (9, "task.status_changed", t1, c_, {"from": "doing", "to": "done"}),
            (10, "task.created", t3, a_, {}),
            (11, "task.assigned", t3, a_, {"assigneeId": b_}),
            (12, "task.deleted", t3, a_, {}),
        ]
        members = [{"userId": u, "role": "member"} for u in (a_, b_, c_)]
        values = []
        for n, kind, task, actor, extra in events:
            payload = dict(extra, projectId=project, taskId=task, title="e%d" % n,
                           actorId=actor, members=members)
            if kind == "task.assigned":
                payload["previousAssigneeId"] = None
            values.append("(%d, '%s', '%s', '%s'::jsonb)"
                          % (n, kind, task, json.dumps(payload).replace("'", "''")))
        psql(db, "INSERT INTO panthera_events (type, aggregate_id, producer, payload)"
                 " SELECT k, t, 'task', p FROM (VALUES %s) v(n, k, t, p) ORDER BY n;"
                 " SELECT pg_notify('panthera_events', '')" % ", ".join(values))
        processed(db)
        got = {}
        for line in psql(db, "SELECT e.payload ->> 'title', n.user_id FROM notification n"
                             " JOIN panthera_events e ON e.id = n.source_event").splitlines():
            if line.strip():
                title, user = line.split("|")
                got.setdefault(title, set()).add(user)
        assert got == {
            "e3": {b_}, "e4": {b_},
            "e5": {b_},          # the assignee then (B), not the one of event 6
            "e6": {c_}, "e7": {c_},
            "e8": {a_, c_},      # creator and assignee; B commented, not told of it
            "e9": {a_},          # the creator; C acted (a status change skips commenters)
            "e11": {b_},
        }, got
        watch = psql(db, "SELECT task_id, reason, user_id FROM notification_task_watch"
                         " ORDER BY 1, 2, 3").strip().splitlines()
        assert sorted(watch) == sorted([
            "%s|assignee|%s" % (t1, c_), "%s|commenter|%s" % (t1, b_),
            "%s|creator|%s" % (t1, a_),
            "%s|assignee|%s" % (t2, c_), "%s|creator|%s" % (t2, a_),  # the last assignee
        ]), watch                                                    # t3: deleted
        # The same assignee again, in a later batch: the statement deletes the row and adds
        # it back; it must still be there.
        payload = {"projectId": project, "taskId": t2, "title": "e13", "actorId": a_,
                   "assigneeId": c_, "previousAssigneeId": c_, "members": members}
        psql(db, "INSERT INTO panthera_events (type, aggregate_id, producer, payload)"
                 " VALUES ('task.assigned', '%s', 'task', '%s'::jsonb);"
                 " SELECT pg_notify('panthera_events', '')" % (t2, json.dumps(payload)))
        processed(db)
        watch = psql(db, "SELECT reason, user_id FROM notification_task_watch"
                         " WHERE task_id = '%s' ORDER BY 1" % t2).strip().splitlines()
        assert watch == ["assignee|%s" % c_, "creator|%s" % a_], watch


def test_consumer_functions_are_planned_once_per_session():
    # The consumer's statements call these per batch: a LANGUAGE sql function PostgreSQL
    # does not inline is parsed again on every execution (tests/bench/notification.sh).
    with notif_env("ntfplan") as (db, s):
        out = psql(db, "SELECT proname, provolatile, l.lanname FROM pg_proc p JOIN pg_language l"
                       " ON l.oid = p.prolang WHERE proname IN ('notification_json',"
                       " 'notification_touch') ORDER BY 1")
        assert out.strip().splitlines() == [
            "notification_json|s|sql",  # inlined: STABLE like the to_char it calls
            "notification_touch|v|plpgsql",
        ], out
        # Inlined indeed: the plan shows the expression, not the call.
        plan = psql(db, "EXPLAIN VERBOSE SELECT notification_json(id, type, payload, read_at,"
                        " created_at) FROM notification")
        assert "jsonb_build_object" in plan and "notification_json(" not in plan, plan
