"""Email through a relay that protects itself (issue 15 item 3): STARTTLS and implicit
TLS with AUTH, the relay's certificate checked against smtp_ca_file (a throwaway CA
made with the openssl CLI); a relay whose certificate that CA did not sign, or that
offers no STARTTLS, gets nothing until the configuration is right; and a crash
between the relay's accepting a mail and the ledger's recording it repeats that mail
once the lease ends, never skips it (plugins/notification/DELIVERY.md, "Guarantee")."""
import os
import re
import signal

import pytest

from delivery_helpers import (MailEnv, Sink, ThrowawayCA, assigned, ledger_settled, to,
                              wait_sql)
from notif_helpers import CEILING, needs_services, psql

pytestmark = needs_services

USER, PASSWORD = "relay-user", "s3cret: with spaces"
# A lease the tests can wait out: the plugin wants it above twice either timeout. The
# crash test must kill the worker before smtp_timeout runs out under a held reply, so the
# timeout is generous for a loaded machine rather than short.
SHORT_LEASE = {"delivery_lease": "31s", "smtp_timeout": "15s", "webhook_timeout": "15s"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return ThrowawayCA(str(tmp_path_factory.mktemp("relay-ca")))


def mail_row(bob):
    return "user_id = '%s' AND type = 'task.assigned'" % bob.id


def relay_env(prefix, sink, **conf):
    """One host of one worker (so "the worker sending" is known) configured for AUTH."""
    settings = dict(SHORT_LEASE, smtp_user=USER, smtp_password=PASSWORD)
    settings.update(conf)
    return MailEnv(prefix, sink=sink, workers=1, **settings)


def sent_once(env, bob):
    """Bob's assignment mail, once the ledger has settled with it sent exactly once."""
    env.sink.wait(to(bob, "task.assigned"))
    states = ledger_settled(env.db, mail_row(bob))
    assert "dead" not in states, states
    assert psql(env.db, "SELECT count(*) FROM notification_mail WHERE %s AND state = 'sent'"
                % mail_row(bob)).strip() == "1", states
    mails = [m for m in env.sink.mails() if to(bob, "task.assigned")(m)]
    assert len(mails) == 1, [m["Subject"] for m in mails]
    return mails[0]


def failing(env, bob, pattern):
    """Wait for two failed attempts whose last_error matches pattern (the row pending:
    a relay's TLS problem is worth retrying, never a dead letter); returns the error."""
    wait_sql(env.db, "SELECT attempts >= 2 AND state = 'pending' AND last_error ~* '%s' "
                     "FROM notification_mail WHERE %s" % (pattern, mail_row(bob)), "t",
             "failed attempts with /%s/ recorded: %s" % (
                 pattern, psql(env.db, "SELECT state, attempts, last_error FROM "
                                       "notification_mail")))
    return psql(env.db, "SELECT last_error FROM notification_mail WHERE " + mail_row(bob))


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_relay_with_auth_gets_the_mail_once(ca, mode):
    """smtp_tls = starttls (required before MAIL by the sink) or tls (implicit, SMTPS);
    the sink also requires AUTH, over TLS only, with these credentials."""
    sink = Sink(tls=mode, cert=ca.server_cert(), auth=(USER, PASSWORD))
    e = relay_env("ntf" + mode, sink, smtp_tls=mode, smtp_ca_file=ca.cert)
    try:
        owner, bob, t = assigned(e)
        m = sent_once(e, bob)
        assert t["title"] in m["Subject"]
        # The sink's record of the session: TLS, and AUTH as the configured user.
        assert re.match(r"TLSv1\.[23] ", m["X-Sink-TLS"] or ""), m.raw[:400]
        assert m["X-Sink-Auth"] == USER, m.raw[:400]
        assert "AUTH PLAIN as b'%s': accepted" % USER in e.sink.log_text() or \
            "AUTH LOGIN as b'%s': accepted" % USER in e.sink.log_text(), e.sink.log_text()
    finally:
        e.close()


def test_relay_certificate_of_another_ca_gets_nothing_until_the_right_ca(ca, tmp_path):
    other = ThrowawayCA(str(tmp_path), "other")
    sink = Sink(tls="starttls", cert=other.server_cert(), auth=(USER, PASSWORD))
    e = relay_env("ntfbadca", sink, smtp_tls="starttls", smtp_ca_file=ca.cert)
    try:
        owner, bob, t = assigned(e)
        err = failing(e, bob, "certificate")
        assert "unable to get local issuer certificate" in err, err
        # Nothing went on in clear, and the credentials never reached that relay.
        assert e.sink.mails() == []
        assert not re.search(r"^AUTH ", e.sink.log_text(), re.M), e.sink.log_text()
        # The operator names the CA that did sign it: the same row goes, once.
        e.stop_servers()
        e.start_servers(smtp_ca_file=other.cert)
        m = sent_once(e, bob)
        assert m["X-Sink-TLS"] and m["X-Sink-Auth"] == USER, m.raw[:400]
        assert int(psql(e.db, "SELECT attempts FROM notification_mail WHERE "
                              + mail_row(bob))) >= 3
    finally:
        e.close()


def test_relay_without_starttls_is_refused_never_sent_in_clear():
    """A plain relay (it accepts anything in clear) and smtp_tls = starttls: libcurl's
    CURLUSESSL_ALL stops after EHLO, so the mail and the password stay here."""
    e = relay_env("ntfnotls", Sink(), smtp_tls="starttls")
    try:
        owner, bob, t = assigned(e)
        err = failing(e, bob, "STARTTLS")
        assert "STARTTLS not supported" in err, err
        assert e.sink.mails() == [], [m.raw[:200] for m in e.sink.mails()]
        assert not re.search(r"^AUTH ", e.sink.log_text(), re.M), e.sink.log_text()
    finally:
        e.close()


def test_crash_between_relay_accept_and_record_repeats_the_mail_never_skips():
    """The sink stores the mail, then holds its 250 to DATA; the worker waiting for it
    is killed. Once the lease ends the respawned worker sends the same row again: the
    recipient has two copies with one Message-ID, the row ends sent, nothing is dead.
    DELIVERY.md ("Guarantee") documents this as the design's one repeat."""
    # Bob's one mail is the assignment's (not also his being added to the project), so
    # the one held is that one.
    e = relay_env("ntfcrash", Sink(hold=True), smtp_tls="none", smtp_user="", smtp_password="",
                  email_project_member_added="off")
    try:
        owner, bob, t = assigned(e)
        (victim,) = e.srv.wait_workers(1)
        e.sink.wait_held()
        os.kill(victim, signal.SIGKILL)
        e.srv.wait_workers(1, timeout=CEILING, exclude=(victim,))
        # The relay has the mail; the ledger has no outcome for it (a timeout that beat
        # the kill would show here as last_error, and this test would prove nothing).
        assert psql(e.db, "SELECT count(*) FROM notification_mail").strip() == "1"
        assert len([m for m in e.sink.mails() if to(bob, "task.assigned")(m)]) == 1, (
            e.sink.log_text())
        row = psql(e.db, "SELECT state, attempts, last_error IS NULL, sent_at IS NULL FROM "
                         "notification_mail WHERE " + mail_row(bob)).strip()
        assert row == "pending|1|t|t", row
        e.sink.release()
        first, second = e.sink.wait(to(bob, "task.assigned"), n=2, what="the repeat")
        states = ledger_settled(e.db, mail_row(bob))
        assert psql(e.db, "SELECT state, attempts, last_error IS NULL FROM notification_mail "
                          "WHERE " + mail_row(bob)).strip() == "sent|2|t", states
        assert psql(e.db, "SELECT count(*) FROM notification_mail WHERE state = 'dead'"
                    ).strip() == "0"
        assert first["Message-ID"] == second["Message-ID"]
        assert first["X-Panthera-Mail-Id"] == second["X-Panthera-Mail-Id"]
        assert len([m for m in e.sink.mails() if to(bob)(m)]) == 2
    finally:
        e.close()
