#!/usr/bin/python3
"""Benchmark (not a test): how fast the notification plugin's mail outbox drains through
a local SMTP sink. N instant-mail ledger rows (with their notifications) are written at
once, then the time until the sink holds N mails is measured; run from the repo with the
services' environment:

    set -a; . .run/env; set +a
    PANTHERA_BUILD=$PWD/build /usr/bin/python3 tests/bench/notification_mail.py [N]
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))

from delivery_helpers import Sink, delivery_server  # noqa: E402
from notif_helpers import (create_database, drop_database, psql, register,  # noqa: E402
                           shared_services)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    sink = Sink().start()
    with shared_services():
        db = create_database("ntfbench")
    srv = delivery_server(db, sink.port)
    try:
        with shared_services():
            srv.start(timeout=30)
        bob = register(srv)
        psql(db, "INSERT INTO notification (user_id, type, payload, source_event, in_app) "
                 "SELECT '%s', 'post.liked', json_build_object('title', 'bench ' || k), -k, "
                 "false FROM generate_series(1, %d) AS k" % (bob.id, n))
        t0 = time.time()
        psql(db, "INSERT INTO notification_mail (kind, notification_id, user_id, type) "
                 "SELECT 'instant', id, user_id, type FROM notification WHERE user_id = '%s'"
                 % bob.id)
        new = os.path.join(sink.dir, "mail", "new")
        while not os.path.isdir(new) or len(os.listdir(new)) < n:
            time.sleep(0.05)
        dt = time.time() - t0
        print("%d mails in %.2f s: %.0f mails/s (2 workers, mail_concurrency 4, "
              "one SMTP connection per mail)" % (n, dt, n / dt))
    finally:
        srv.cleanup()
        sink.cleanup()
        drop_database(db)


if __name__ == "__main__":
    main()
