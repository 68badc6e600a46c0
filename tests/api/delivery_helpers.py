"""Helpers for the notification plugin's delivery tests (email, digests, unsubscribe,
webhooks): a local SMTP sink (scripts/smtp-sink: plain, STARTTLS or implicit TLS, AUTH,
a barrier before DATA's reply) the tests start and stop, a throwaway CA for its
certificates, a webhook receiver on 127.0.0.1, servers configured for them, and waits
that observe the event itself (a mail in the maildir, a ledger row's state) with a
ceiling only a hang reaches."""
import base64
import email
import email.policy
import hashlib
import hmac
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from notif_helpers import (CEILING, add_member, create_database, drop_database, new_project,
                           new_task, notif_server, processed, psql, register, shared_services)
from panthera_server import REPO, free_port

SINK = os.path.join(REPO, "scripts", "smtp-sink")
BASE_URL = "https://panthera.test"


def delivery_config(smtp_port, **extra):
    """[plugin:notification] for delivery tests: the relay on 127.0.0.1:smtp_port, quick
    polls and retries so waits are short (none of it is asserted on)."""
    conf = {"smtp_host": "127.0.0.1", "smtp_port": str(smtp_port), "smtp_tls": "none",
            "mail_from": "noreply@panthera.test", "public_base_url": BASE_URL,
            "delivery_poll": "100ms", "delivery_retry_min": "200ms",
            "delivery_retry_max": "1s", "delivery_lease": "30s", "smtp_timeout": "5s",
            "webhook_timeout": "5s",
            "digest_check": "200ms"}
    conf.update({k: str(v) for k, v in extra.items()})
    return conf


def delivery_server(db, smtp_port, *, workers=2, **extra):
    return notif_server(db, workers=workers, config=delivery_config(smtp_port, **extra))


class Sink:
    """scripts/smtp-sink on 127.0.0.1:port writing to a fresh maildir. tls: None (plain),
    "starttls" (required before MAIL) or "tls" (implicit), with cert = (cert file, key
    file); auth = (user, password) required, over TLS only; hold: a barrier before the
    reply to DATA that the test lifts with release()."""

    def __init__(self, port=None, *, tls=None, cert=None, auth=None, hold=False):
        assert tls in (None, "starttls", "tls") and bool(tls) == bool(cert)
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="sink-")
        self.proc = None
        self.args = []
        if tls:
            self.args += ["--tls-cert", cert[0], "--tls-key", cert[1]]
            if tls == "starttls":
                self.args.append("--starttls")
        if auth:
            self.args += ["--auth", "%s:%s" % auth]
        self.hold_dir = None
        if hold:
            self.hold_dir = os.path.join(self.dir, "hold")
            os.mkdir(self.hold_dir)
            self.args += ["--hold-dir", self.hold_dir]

    def start(self):
        # Its output goes to a file: a pipe nobody reads would fill and stall the sink.
        self.log = os.path.join(self.dir, "sink.log")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([SINK, "--listen", "127.0.0.1:%d" % self.port,
                                          "--maildir", os.path.join(self.dir, "mail")]
                                         + self.args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + CEILING
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.proc.poll() is None, open(self.log).read()
                assert time.time() < deadline, "the SMTP sink did not start"
                time.sleep(0.05)

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_held(self, n=1):
        """The maildir keys of the mails whose 250 the sink is holding (or held)."""
        deadline = time.time() + CEILING
        while True:
            held = sorted(f[len("held-"):] for f in os.listdir(self.hold_dir)
                          if f.startswith("held-"))
            if len(held) >= n:
                return held
            assert time.time() < deadline, "the sink holds no mail; log:\n" + self.log_text()
            time.sleep(0.05)

    def release(self):
        """Lift the barrier: held replies go out, and later mails are not held."""
        open(os.path.join(self.hold_dir, "release"), "w").close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=CEILING)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def mails(self):
        path = os.path.join(self.dir, "mail", "new")
        if not os.path.isdir(path):
            return []
        out = []
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name), "rb") as f:
                raw = f.read()
            m = email.message_from_bytes(raw, policy=email.policy.default)
            m.raw = raw
            out.append(m)
        return out

    def wait(self, pred, n=1, what="mail"):
        """The mails matching pred once there are at least n of them."""
        deadline = time.time() + CEILING
        while True:
            got = [m for m in self.mails() if pred(m)]
            if len(got) >= n:
                return got
            assert time.time() < deadline, "no %s after %ds; have %s" % (
                what, CEILING, [(m["To"], m["Subject"]) for m in self.mails()])
            time.sleep(0.1)


class ThrowawayCA:
    """A CA made with the openssl CLI in `directory` for one test, and the server
    certificates it signs (for 127.0.0.1 and localhost, valid two days)."""

    def __init__(self, directory, name="ca"):
        self.dir = directory
        self.name = name
        self.cert = os.path.join(directory, name + ".crt")
        key = os.path.join(directory, name + ".key")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
                      self.cert, "-subj", "/CN=Panthera test CA %s" % name, "-days", "2",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.key = key

    def _openssl(self, *args):
        r = subprocess.run(("openssl",) + args, cwd=self.dir, capture_output=True, text=True,
                           timeout=CEILING)
        assert r.returncode == 0, "openssl %s: %s" % (args[0], r.stderr)

    def server_cert(self, name="relay"):
        """(cert file, key file) of a server certificate signed by this CA."""
        base = os.path.join(self.dir, "%s-%s" % (self.name, name))
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n")
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", base + ".key",
                      "-out", base + ".csr", "-subj", "/CN=127.0.0.1")
        self._openssl("x509", "-req", "-in", base + ".csr", "-CA", self.cert, "-CAkey",
                      self.key, "-CAcreateserial", "-out", base + ".crt", "-days", "2",
                      "-extfile", ext)
        return base + ".crt", base + ".key"


class MailEnv:
    """A fresh database, a sink (given, or a plain one) and `servers` hosts configured
    for it (delivery_config plus **conf)."""

    def __init__(self, prefix, sink_up=True, servers=1, sink=None, workers=2, **conf):
        self.sink = sink or Sink()
        if sink_up:
            self.sink.start()
        with shared_services():
            self.db = create_database(prefix)
        self.workers, self.conf = workers, conf
        self.servers = []
        self.start_servers(servers)

    def start_servers(self, n=1, **conf):
        """Start n more hosts; conf overrides this environment's (and sticks)."""
        self.conf.update(conf)
        new = [delivery_server(self.db, self.sink.port, workers=self.workers, **self.conf)
               for _ in range(n)]
        self.servers += new
        with shared_services():
            for s in new:
                s.start(timeout=30)
        self.srv = self.servers[0]

    def stop_servers(self):
        for s in self.servers:
            s.cleanup()
        self.servers = []

    def close(self):
        self.stop_servers()
        self.sink.cleanup()
        drop_database(self.db)


def assigned(env, title=None):
    """owner assigns bob a task; returns (owner, bob, task) once consumed."""
    owner, bob = register(env.srv), register(env.srv)
    p = new_project(env.srv, owner)
    add_member(env.srv, owner, p["id"], bob, "member")
    t = new_task(env.srv, owner, p["id"], assigneeId=bob.id,
                 **({"title": title} if title else {}))
    processed(env.db)
    return owner, bob, t


def to(acct, types=None):
    """A predicate: mails to acct (by envelope), optionally of these notification types."""
    def pred(m):
        if m["X-Sink-Rcpt-To"] != acct.email:
            return False
        return types is None or m["X-Panthera-Notification-Types"] == types
    return pred


def ledger_settled(db, where="true"):
    """Wait until there is a mail ledger row matching `where` and none of them is pending;
    returns their states. (No row at all is not "settled": the consumer may not have made
    it yet.)"""
    deadline = time.time() + CEILING
    while True:
        left = psql(db, "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FROM "
                        "notification_mail WHERE %s" % where).strip()
        if left.split("|")[0] == "0" and left.split("|")[1] != "0":
            return psql(db, "SELECT id, state, attempts FROM notification_mail WHERE %s "
                            "ORDER BY id" % where)
        assert time.time() < deadline, psql(db, "SELECT * FROM notification_mail")
        time.sleep(0.1)


def wait_sql(db, sql, want, what):
    deadline = time.time() + CEILING
    while True:
        got = psql(db, sql).strip()
        if got == want:
            return got
        assert time.time() < deadline, "%s: %r, wanted %r" % (what, got, want)
        time.sleep(0.1)


def unsubscribe_token(key, user_id, types, expires):
    """The token format of plugins/notification/README.md, made independently."""
    payload = ("%s\n%s\n%d" % (user_id, types, expires)).encode()
    mac = hmac.new(key.encode(), b"panthera unsubscribe v1\n" + payload, hashlib.sha256).digest()

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return b64(payload) + "." + b64(mac)


class Receiver:
    """An HTTP webhook receiver on 127.0.0.1 recording every POST; `statuses` is the
    queue of statuses to answer (then 200)."""

    def __init__(self):
        self.requests = []
        self.statuses = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.requests.append((self.path, dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def wait(self, n, path=None):
        deadline = time.time() + CEILING
        while True:
            got = [r for r in self.requests if path is None or r[0] == path]
            if len(got) >= n:
                return got
            assert time.time() < deadline, "the receiver got %d of %d" % (len(got), n)
            time.sleep(0.05)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def verify_signature(secret, header, body, tolerance=None):
    """A receiver's check, as README.md documents it: t=<unix>,v1=<hex HMAC-SHA256 over
    "<t>.<body>">."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    signed = parts["t"].encode() + b"." + body
    want = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts.get("v1", "")):
        return False
    return tolerance is None or abs(time.time() - int(parts["t"])) <= tolerance
