"""Certificates, OCSP responses and TLS clients for test_tls.py, made with the openssl
command line as an operator would (no network: the CA, its OCSP responder and the
clients are all local)."""
import os
import socket
import ssl
import subprocess
import time

from panthera_server import Server, free_port, parse_response


def run(*args, cwd):
    p = subprocess.run(list(args), cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


class Pki:
    """A CA in `directory`, and leaves it signs: leaf(name, kind="ec"|"rsa", days=N)."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "60", "-subj",
            "/CN=Panthera Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=keyCertSign,cRLSign", cwd=directory)
        self.serial = 0x1000

    def leaf(self, name, kind="ec", days=50, cn="localhost", dns=("localhost",)):
        """Returns (fullchain path, key path, serial as hex); `dns`: its DNS names."""
        self.serial += 1
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".crt")
        chain = os.path.join(self.dir, name + ".pem")
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" \
            else ["-newkey", "rsa:2048"]
        run("openssl", "req", *newkey, "-nodes", "-keyout", key, "-out", csr, "-subj",
            "/CN=" + cn, cwd=self.dir)
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s,IP:127.0.0.1\n" % ",".join("DNS:" + d for d in dns))
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-set_serial", hex(self.serial), "-days", str(days), "-extfile", ext, "-out", cert,
            cwd=self.dir)
        with open(chain, "w") as out:
            out.write(open(cert).read())
            out.write(open(self.ca).read())
        return chain, key, "%X" % self.serial

    def ocsp_response(self, cert, serial, out):
        """A signed "good" OCSP response for `cert`, DER, written to `out`."""
        req = out + ".req"
        index = out + ".index"
        run("openssl", "ocsp", "-issuer", self.ca, "-cert", cert, "-reqout", req, "-no_nonce",
            cwd=self.dir)
        expiry = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 40 * 86400))
        with open(index, "w") as f:
            f.write("V\t%s\t\t%s\tunknown\t/CN=localhost\n" % (expiry, serial))
        run("openssl", "ocsp", "-index", index, "-rsigner", self.ca, "-rkey", self.ca_key,
            "-CA", self.ca, "-reqin", req, "-respout", out, "-ndays", "1", cwd=self.dir)
        return out


def https_server(pki, chain, key, tls=None, http=None, workers=2, redirect=False, **kw):
    """A Server listening plain on .port (for its start-up probe), HTTPS on .tls_port and,
    with `redirect`, a redirect listener on .redirect_port."""
    s = Server(workers=workers, http=http, plugins=("hello",),
               sections={"tls": dict({"certificate": chain, "key": key}, **(tls or {}))}, **kw)
    s.tls_port = free_port()
    listen = ["127.0.0.1:%d" % s.port, "127.0.0.1:%d ssl" % s.tls_port]
    if redirect:
        s.redirect_port = free_port()
        listen.append("127.0.0.1:%d redirect" % s.redirect_port)
    s.extra_server["listen"] = ", ".join(listen)
    s.write_conf()
    s.ca = pki.ca
    return s


def client_context(ca, **kw):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https_get(port, ca, path="/healthz", timeout=10, ctx=None, session=None):
    """One request on a new TLS connection: (Response, SSLSocket facts dict)."""
    ctx = ctx or client_context(ca)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path)
                  .encode())
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
        facts = {"version": s.version(), "alpn": s.selected_alpn_protocol(),
                 "reused": s.session_reused, "session": s.session,
                 "cert": s.getpeercert(binary_form=True)}
    return parse_response(data)[0], facts


def s_client(port, *args, stdin=b"", timeout=20, servername="localhost"):
    """openssl s_client against 127.0.0.1:port; returns (exit code, stdout+stderr text).
    `servername` None: no SNI at all."""
    sni = ["-servername", servername] if servername else ["-noservername"]
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        *sni, *args], input=stdin,
                       capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")
