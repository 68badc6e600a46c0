"""Start and stop a private ``pantherad`` for the black-box API tests.

Stdlib only (``requests`` is not needed here).  Used by every module in
``tests/api/``; the API below is stable — add to it, never change it.

Where things are
----------------
``PANTHERA_BUILD`` (environment) names the Meson build directory; default
``<repo>/build`` where ``<repo>`` is two levels above this file.  The binary is
``$PANTHERA_BUILD/server/pantherad``; plugins are looked up along
``$PANTHERA_BUILD/sdk/examples:$PANTHERA_BUILD/plugins:$PANTHERA_BUILD/tests/plugins``.

Module-level names
------------------
``REPO``, ``BUILD``, ``PANTHERAD``, ``PLUGIN_PATH``  paths as above.
``free_port()``                       a currently free TCP port on 127.0.0.1.
``parse_response(data)``              split raw bytes into a list of ``Response``
                                      (status, reason, headers dict lower-case, body);
                                      understands Content-Length, chunked, and 1xx.
``status_lines(data)``                list of ``b"HTTP/1.1 NNN ..."`` lines found at the
                                      start of each response in raw bytes.
``raw_request(port, data, timeout=3)`` send bytes on a fresh socket, read until the
                                      server closes or ``timeout`` of silence; returns bytes.
``recv_until_close(sock, timeout=3)`` -> (bytes, closed): read until EOF/reset
                                      (closed=True) or ``timeout`` s of silence (False).
``read_response(sock, timeout=3, head=False)`` read exactly one final response
                                      (skipping 1xx) from a socket -> ``Response``; raises
                                      ``ConnectionClosed`` on EOF before a full response,
                                      socket.timeout on silence.
``is_closed(sock, timeout=1)``        True if the peer closes (EOF/reset) within timeout
                                      with no further data; False if still open (raises
                                      AssertionError if unexpected data arrives).

class Server
------------
Waiting
-------
Every ``timeout`` of ``start``, ``wait_workers``, ``wait_error_log`` and
``wait_access_log`` is a ceiling that only a hang reaches, never a claim about speed: each
polls for the event and returns as soon as it happens, and none waits less than
``CEILING`` seconds (60, or ``PANTHERA_TEST_CEILING``) whatever the caller passed, so a
loaded 2-core machine slows the suite down instead of failing it.  Latency claims belong
in ``tests/bench/``.

``Server(*, workers=2, http=None, plugins=("hello", "testkit"), plugin_config=None,
extra_server=None, dropins=None, log_level=None)``

  Writes ``<tmp>/pantherad.conf`` with ``[server]`` (listen=127.0.0.1:<free port>,
  workers, plugin_path, conf_dir=<tmp>/conf.d, access_log=<tmp>/access.log,
  error_log=<tmp>/error.log, pid_file=<tmp>/pantherad.pid, plus every key of
  ``extra_server`` (dict), which may override the ones above) and an ``[http]``
  section from the ``http`` dict (values written verbatim: ``{"header_timeout": "2s"}``).
  One drop-in per plugin, ``conf.d/NN-<name>.conf`` (NN = 10, 20, ...) holding
  ``[plugin:<name>]`` and the keys of ``plugin_config[name]`` (dict).  ``dropins`` is a
  dict filename -> raw text of extra (possibly broken) files written into conf.d.
  Nothing is started by the constructor; the files can be edited before ``start()``
  (``.conf_path``, ``.conf_dir``) — e.g. to test ``check_config()`` or a SIGHUP reload.

  Attributes: ``.tmp`` (temp dir, removed by ``cleanup()``), ``.conf_path``,
  ``.conf_dir``, ``.access_log_path``, ``.error_log_path``, ``.pid_file``, ``.port``,
  ``.host`` ("127.0.0.1"), ``.proc`` (subprocess.Popen or None), ``.stdout_path``,
  ``.stderr_path`` (the master's captured stdout/stderr).

  ``start(timeout=10)``       run pantherad -c <conf> in the foreground (own process
                              group, SIGTERM'd by the kernel if the test process dies;
                              a SIGTERM to the test process also stops it) and wait until GET /healthz answers 200; raises
                              ``ServerError`` (with the error log) if it exits or times out.
  ``launch()``                run pantherad as start() does but return at once, without
                              waiting for /healthz (for a server that is never healthy).
  ``stop(timeout=15)``        SIGTERM to the master, wait; SIGKILL the whole process
                              group after ``timeout``.  Returns the master's exit code.
                              Idempotent.  Also registered with atexit.
  ``cleanup()``               stop() and remove the temp dir.
  ``with Server(...) as s:``  start() on enter, cleanup() on exit.
  ``running()``               the master is alive.
  ``port``, ``url(path)``     ``url("/v1/hello") -> "http://127.0.0.1:<port>/v1/hello"``.
  ``master_pid``              pid of the master (the Popen pid).
  ``worker_pids()``           sorted list of the master's current child pids.
  ``wait_workers(n, timeout=10, exclude=())``  poll until n workers (pids not in
                              ``exclude``) exist; returns the list (raises on timeout).
  ``wait_gone(pids, timeout=10)``  poll until none of ``pids`` is a live worker (the old
                              generation after a reload: "reload complete" is logged before
                              the old workers have stopped accepting).
  ``error_log()``             text of the error log file plus the master's stderr.
  ``access_log_lines()``      parsed JSON objects, one per access-log line (skips a
                              partial last line).
  ``wait_access_log(pred, timeout=5)``  poll access_log_lines() until ``pred(lines)``
                              is true (the log is flushed every 250 ms); returns lines.
  ``wait_error_log(substring, timeout=5)``  poll until the error log contains substring.
  ``signal(sig)``             send a signal to the master.
  ``connect(timeout=3)``      a connected ``socket.socket`` to the server.
  ``raw(data, timeout=3)``    send raw bytes on a fresh connection and return every
                              byte read until the server closes or ``timeout`` seconds
                              pass without data.
  ``exchange(data, timeout=3)``  like raw() but returns (bytes, closed): closed is True
                              when the server closed the connection (EOF or reset), False
                              when it was still open after ``timeout`` s of silence.
  ``check_config(conf=None)`` run ``pantherad -t -c <conf>`` (default: this server's
                              config) -> (returncode, stdout, stderr).
  ``run_binary(*args, timeout=10)``  run pantherad with arbitrary args ->
                              (returncode, stdout, stderr).
  ``write_conf()``            (re)write the config files from the current attributes
                              ``workers``, ``http``, ``plugins``, ``plugin_config``,
                              ``extra_server``, ``dropins`` (called by __init__).
"""

import atexit
import json
import os
import re
import shutil
import signal as _signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("PANTHERA_BUILD") or os.path.join(REPO, "build"))
PANTHERAD = os.path.join(BUILD, "server", "pantherad")
def header_abi():
    """(PX_ABI_MAJOR, PX_ABI_MINOR) of this tree's sdk/panthera.h."""
    with open(os.path.join(REPO, "sdk", "panthera.h")) as f:
        text = f.read()
    return tuple(int(re.search(r"#define PX_ABI_%s (\d+)" % k, text).group(1))
                 for k in ("MAJOR", "MINOR"))


PLUGIN_PATH = ":".join(
    os.path.join(BUILD, d) for d in ("sdk/examples", "plugins", "tests/plugins")
)

_live = set()

CEILING = float(os.environ.get("PANTHERA_TEST_CEILING") or 60)


def ceiling(timeout):
    """How long a wait for an event may take before the test calls it a hang."""
    return max(float(timeout), CEILING)


def _die_with_parent():
    """preexec_fn: the master gets SIGTERM if the test process dies (even by SIGKILL),
    so a killed test run never leaves a server behind."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(_signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ServerError(RuntimeError):
    pass


class _PortTaken(ServerError):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConnectionClosed(Exception):
    pass


def recv_until_close(sock, timeout=3.0):
    """Read until EOF or a reset (closed=True), or `timeout` seconds without data
    (closed=False).  Returns (bytes, closed)."""
    sock.settimeout(timeout)
    chunks = [_leftover.pop(sock, b"")]
    closed = False
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not data:
            closed = True
            break
        chunks.append(data)
    return b"".join(chunks), closed


def exchange(port, data, timeout=3.0, host="127.0.0.1"):
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass
        return recv_until_close(s, timeout)


def raw_request(port, data, timeout=3.0, host="127.0.0.1"):
    return exchange(port, data, timeout, host)[0]


def is_closed(sock, timeout=1.0):
    if _leftover.get(sock):
        raise AssertionError("unexpected data on the connection: %r" % _leftover[sock][:300])
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except socket.timeout:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    if data:
        raise AssertionError("unexpected data on the connection: %r" % data[:300])
    return True


_leftover = weakref.WeakKeyDictionary()  # socket -> bytes read past the last response


def read_response(sock, timeout=3.0, head=False):
    """Read one final response from `sock` (1xx responses are skipped).  Bytes read past
    it are kept for the next read_response() on the same socket (pipelining)."""
    sock.settimeout(timeout)
    buf = _leftover.pop(sock, b"")
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            r, pos = _parse_one(buf, 0, head_request=True)
            if 100 <= r.status < 200:
                buf = buf[pos:]
                continue
            need = 0
            if not head and r.status not in (204, 304):
                if "content-length" in r.headers:
                    need = int(r.headers["content-length"])
                elif "chunked" in r.headers.get("transfer-encoding", "").lower():
                    need = None
            body = buf[end + 4:]
            if need is not None and len(body) >= need:
                r.body = body[:need]
                if len(body) > need:
                    _leftover[sock] = body[need:]
                return r
            if need is None:
                r2, pos2 = _parse_one(buf, 0)
                if buf.find(b"0\r\n\r\n", end) >= 0 and pos2 <= len(buf):
                    if pos2 < len(buf):
                        _leftover[sock] = buf[pos2:]
                    return r2
        try:
            data = sock.recv(65536)
        except socket.timeout:
            _leftover[sock] = buf
            raise
        if not data:
            raise ConnectionClosed("connection closed after %d bytes: %r" % (len(buf), buf[:300]))
        buf += data


class Response:
    def __init__(self, status, reason, headers, body, raw_headers):
        self.status = status
        self.reason = reason
        self.headers = headers  # dict, lower-case names; repeated names joined with ", "
        self.raw_headers = raw_headers  # list of (name, value) as sent
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


def _parse_one(data, pos, head_request=False):
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        return None, pos
    head = data[pos:end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers, raw_headers = {}, []
    for line in head[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        raw_headers.append((name, value))
        k = name.lower()
        headers[k] = headers[k] + ", " + value if k in headers else value
    pos = end + 4
    body = b""
    if 100 <= status < 200 or status in (204, 304) or head_request:
        pass
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        out = []
        while True:
            le = data.find(b"\r\n", pos)
            if le < 0:
                break
            size = int(data[pos:le].split(b";")[0], 16)
            pos = le + 2
            if size == 0:
                te = data.find(b"\r\n\r\n", pos - 2)
                pos = te + 4 if te >= 0 else len(data)
                break
            out.append(data[pos:pos + size])
            pos += size + 2
        body = b"".join(out)
    elif "content-length" in headers:
        n = int(headers["content-length"])
        body = data[pos:pos + n]
        pos += n
    else:
        body = data[pos:]
        pos = len(data)
    return Response(status, reason, headers, body, raw_headers), pos


def parse_response(data, head_requests=()):
    """All responses in `data`, in order.  `head_requests`: indexes (counting only
    final, non-1xx responses) that answer HEAD requests and so have no body."""
    out, pos, final = [], 0, 0
    while pos < len(data):
        r, pos2 = _parse_one(data, pos, head_request=final in head_requests)
        if r is None:
            break
        pos = pos2
        out.append(r)
        if not 100 <= r.status < 200:
            final += 1
    return out


def status_lines(data):
    """Status lines of every response in `data` (parsed, so bodies are skipped)."""
    return [("HTTP/1.1 %d %s" % (r.status, r.reason)).encode() for r in parse_response(data)]


def _children(pid):
    kids = set()
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids.update(int(x) for x in f.read().split())
            except OSError:
                pass
        return sorted(kids)
    except OSError:
        pass
    # Fallback: scan /proc for processes whose parent is pid.
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == pid:
                kids.add(int(name))
        except (OSError, ValueError):
            pass
    return sorted(kids)


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] == "Z"
    except OSError:
        return True


class Server:
    def __init__(self, *, workers=2, http=None, plugins=("hello", "testkit"),
                 plugin_config=None, extra_server=None, dropins=None, log_level=None,
                 sections=None):
        self.workers = workers
        # Other host sections, e.g. {"postgres": {...}, "redis": {...}, "auth": {...}, "lua": {...}}
        self.sections = {k: dict(v) for k, v in (sections or {}).items()}
        self.http = dict(http or {})
        self.plugins = tuple(plugins or ())
        self.plugin_config = {k: dict(v) for k, v in (plugin_config or {}).items()}
        self.extra_server = dict(extra_server or {})
        if log_level is not None:
            self.extra_server.setdefault("log_level", log_level)
        self.dropins = dict(dropins or {})
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="panthera-api-")
        self.conf_path = os.path.join(self.tmp, "pantherad.conf")
        self.conf_dir = os.path.join(self.tmp, "conf.d")
        self.access_log_path = os.path.join(self.tmp, "access.log")
        self.error_log_path = os.path.join(self.tmp, "error.log")
        self.pid_file = os.path.join(self.tmp, "pantherad.pid")
        self.stdout_path = os.path.join(self.tmp, "stdout.txt")
        self.stderr_path = os.path.join(self.tmp, "stderr.txt")
        self.proc = None
        self._out = self._err = None
        self.write_conf()

    # ---- configuration ----
    def write_conf(self):
        os.makedirs(self.conf_dir, exist_ok=True)
        for name in os.listdir(self.conf_dir):
            os.unlink(os.path.join(self.conf_dir, name))
        server = {
            "listen": "%s:%d" % (self.host, self.port),
            "workers": str(self.workers),
            "plugin_path": PLUGIN_PATH,
            "conf_dir": self.conf_dir,
            "access_log": self.access_log_path,
            "error_log": self.error_log_path,
            "pid_file": self.pid_file,
        }
        server.update({k: str(v) for k, v in self.extra_server.items()})
        lines = ["[server]"]
        lines += ["%s = %s" % (k, v) for k, v in server.items() if v is not None]
        if self.http:
            lines += ["", "[http]"]
            lines += ["%s = %s" % (k, v) for k, v in self.http.items()]
        for section, keys in self.sections.items():
            lines += ["", "[%s]" % section]
            lines += ["%s = %s" % (k, v) for k, v in keys.items()]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        for i, name in enumerate(self.plugins):
            body = ["[plugin:%s]" % name]
            body += ["%s = %s" % (k, v) for k, v in self.plugin_config.get(name, {}).items()]
            with open(os.path.join(self.conf_dir, "%02d-%s.conf" % ((i + 1) * 10, name)), "w") as f:
                f.write("\n".join(body) + "\n")
        for fname, text in self.dropins.items():
            with open(os.path.join(self.conf_dir, fname), "w") as f:
                f.write(text)

    # ---- lifecycle ----
    def start(self, timeout=10):
        if self.running():
            return self
        if not os.path.exists(PANTHERAD):
            raise ServerError("no pantherad at %s (build first, or set PANTHERA_BUILD)" % PANTHERAD)
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                # free_port() raced with another process: take another port and retry.
                if "listen" not in self.extra_server:
                    self.port = free_port()
                    self.write_conf()
        return self._start_once(timeout)

    def _spawn(self):
        # A concurrent rebuild can leave the binary briefly unexecutable: retry a little.
        deadline = time.monotonic() + 10
        while True:
            try:
                return subprocess.Popen([PANTHERAD, "-c", self.conf_path], stdin=subprocess.DEVNULL,
                                        stdout=self._out, stderr=self._err, start_new_session=True,
                                        cwd=self.tmp, preexec_fn=_die_with_parent)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def launch(self):
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        self.proc = self._spawn()
        _live.add(self)
        return self

    def _start_once(self, timeout):
        log_mark = len(self.error_log())
        self.launch()
        deadline = time.monotonic() + ceiling(timeout)
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.stop()
                log = self.error_log()
                if "Address already in use" in log[log_mark:]:
                    raise _PortTaken()
                raise ServerError("pantherad exited with %s during start:\n%s" % (rc, log))
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError("pantherad did not answer /healthz within %ss:\n%s"
                                  % (ceiling(timeout), self.error_log()))
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            try:
                proc.send_signal(_signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever happened, nothing of ours survives: kill the group.
        try:
            os.killpg(proc.pid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for fh in (self._out, self._err):
            if fh:
                fh.close()
        self._out = self._err = None
        _live.discard(self)
        return proc.returncode

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # ---- introspection ----
    def url(self, path="/"):
        return "http://%s:%d%s" % (self.host, self.port, path)

    @property
    def master_pid(self):
        return self.proc.pid if self.proc else None

    def worker_pids(self):
        if not self.running():
            return []
        return [p for p in _children(self.proc.pid) if not _is_zombie(p)]

    def wait_workers(self, n, timeout=10, exclude=()):
        deadline = time.monotonic() + ceiling(timeout)
        while True:
            pids = [p for p in self.worker_pids() if p not in exclude]
            if len(pids) == n:
                return pids
            if time.monotonic() > deadline:
                raise ServerError("expected %d workers, have %r (master %s); log tail:\n%s" % (
                    n, pids, "running" if self.running() else
                    "exited with %r" % self.proc.poll(), self.error_log()[-3000:]))
            time.sleep(0.05)

    def wait_gone(self, pids, timeout=10):
        deadline = time.monotonic() + ceiling(timeout)
        while True:
            left = set(pids) & set(self.worker_pids())
            if not left:
                return
            if time.monotonic() > deadline:
                raise ServerError("workers %r still there" % sorted(left))
            time.sleep(0.05)

    def wait_redis_connected(self, workers, before=0):
        """Until `workers` more workers than `before` (an earlier count of the same line)
        have logged their Redis connection. A worker connects after it reports itself
        started, and until then it counts rate limits on its own, so a test that counts
        them waits for this first."""
        deadline = time.monotonic() + CEILING
        while self.error_log().count("redis: connected") < before + workers:
            assert time.monotonic() < deadline, self.error_log()[-3000:]
            time.sleep(0.05)

    def error_log(self):
        text = ""
        for p in (self.error_log_path, self.stderr_path):
            try:
                with open(p, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def wait_error_log(self, substring, timeout=5):
        deadline = time.monotonic() + ceiling(timeout)
        while True:
            text = self.error_log()
            if substring in text:
                return text
            if time.monotonic() > deadline:
                raise ServerError("%r not in error log within %ss:\n%s"
                                  % (substring, ceiling(timeout), text))
            time.sleep(0.05)

    def access_log_lines(self):
        try:
            with open(self.access_log_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return []
        out = []
        for line in text.split("\n"):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line still being written
        return out

    def wait_access_log(self, pred, timeout=5):
        deadline = time.monotonic() + ceiling(timeout)
        while True:
            lines = self.access_log_lines()
            if pred(lines):
                return lines
            if time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def connect(self, timeout=3):
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def raw(self, data, timeout=3):
        return raw_request(self.port, data, timeout, self.host)

    def exchange(self, data, timeout=3):
        return exchange(self.port, data, timeout, self.host)

    def run_binary(self, *args, timeout=10):
        p = subprocess.run([PANTHERAD] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, cwd=self.tmp)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def check_config(self, conf=None):
        return self.run_binary("-t", "-c", conf or self.conf_path)


@atexit.register
def _stop_all():
    for s in list(_live):
        try:
            s.stop(timeout=3)
        except Exception:
            pass


def _on_sigterm(signum, frame):
    _stop_all()
    raise SystemExit(128 + signum)


# A test run stopped with SIGTERM (e.g. by `timeout`) still stops its servers.
try:
    if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGTERM, _on_sigterm)
except ValueError:  # not the main thread
    pass
