"""The notification consumer under [events] batch: many deliveries in one transaction, so
its inbox locks are held until a whole batch commits, and several batches run at once.
Events for the same users land in different concurrent batches in both orders; nothing
may be lost or doubled, and per user, seq order must stay commit order (what a stream's
"after seq N" resume relies on), observed by reading the inbox while the consumer writes
it. Observed, never timed."""
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
        # Every batch committed the first time: none was cancelled as a deadlock.
        again = psql(db, "SELECT count(*) FROM panthera_event_deliveries WHERE group_name ="
                         " 'notification-task' AND (attempts > 1 OR last_error IS NOT NULL)")
        assert again.strip() == "0", psql(db, "SELECT event_id, attempts, last_error FROM"
                                              " panthera_event_deliveries WHERE attempts > 1")
        assert "deadlock" not in s.error_log(), s.error_log()[-3000:]
