#!/usr/bin/env python3
"""The notification plugin's benchmark client (notification.sh starts the server and fills
the database; this only needs addresses and tokens):

    notification_client.py --port P --pids 1,2,3 --tokens FILE --streams 10000 \
        --action-token T --task TASK_ID --usernames FILE

1. VmRSS summed over --pids; open --streams streams on /v1/notifications/stream, round
   robin over the tokens in --tokens (one per line), each read until its ": ready"
   comment; wait --settle s (the channel subscriptions become live at Redis); VmRSS again.
2. One action: POST /v1/tasks/{task}/comments by --action-token mentioning every user of
   --usernames (1,000): its commit makes one inbox row per user and one live message per
   user, which reaches every stream of that user. For each stream, the time its
   notification arrived, from the moment the POST's answer came back (the commit is
   before it, so this slightly flatters) and from the moment it was sent.
Prints one JSON object. Standard library only; one process reads every socket, so the
spread includes this client's own pass over 10,000 sockets."""
import argparse
import json
import resource
import selectors
import socket
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def request(token):
    return ("GET /v1/notifications/stream HTTP/1.1\r\nHost: bench\r\n"
            "Accept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n" % token).encode()


def open_streams(port, tokens, n, parallel, deadline):
    sel = selectors.DefaultSelector()
    done, pending, started, bufs = [], 0, 0, {}
    while len(done) < n:
        while pending < parallel and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE, tokens[started % len(tokens)])
            bufs[s] = b""
            pending += 1
            started += 1
        if time.time() > deadline:
            sys.exit("only %d of %d streams ready in time" % (len(done), n))
        for key, ev in sel.select(timeout=1):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                s.sendall(request(key.data))
                sel.modify(s, selectors.EVENT_READ)
                continue
            data = s.recv(65536)
            if not data:
                sys.exit("the server closed a stream while it opened: %r" % bufs[s][-300:])
            bufs[s] += data
            if b": ready" in bufs[s]:
                sel.unregister(s)
                del bufs[s]
                done.append(s)
                pending -= 1
    sel.close()
    return done


def post(port, path, token, body):
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(("POST %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close"
               "\r\n\r\n" % (path, token, len(data))).encode() + data)
    sent = time.time()
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(65536)
        if not chunk:
            break
        head += chunk
    answered = time.time()
    s.close()
    status = int(head.split(b" ", 2)[1]) if head else 0
    return sent, answered, status


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--action-token", required=True)
    ap.add_argument("--task", required=True)
    ap.add_argument("--usernames", required=True)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pids = [int(p) for p in a.pids.split(",")]
    tokens = [t.strip() for t in open(a.tokens) if t.strip()]
    names = [u.strip() for u in open(a.usernames) if u.strip()]
    before = rss_kib(pids)
    t_open = time.time()
    socks = open_streams(a.port, tokens, a.streams, a.parallel, time.time() + 600)
    opened_s = time.time() - t_open
    time.sleep(a.settle)
    after = rss_kib(pids)
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    arrived = {}
    body = {"body": "bench " + " ".join("@" + n for n in names)}
    sent, answered, status = post(a.port, "/v1/tasks/%s/comments" % a.task, a.action_token,
                                  body)
    if status != 201:
        sys.exit("the action answered %d" % status)
    deadline = time.time() + 120
    while len(arrived) < len(socks) and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            data = s.recv(65536)
            if b"event: notification" in data and s not in arrived:
                arrived[s] = time.time()
            if not data:
                sel.unregister(s)
    lat = [t - answered for t in arrived.values()]
    print(json.dumps({
        "streams": len(socks), "open_seconds": round(opened_s, 1),
        "rss_before_kib": before, "rss_after_kib": after,
        "rss_bytes_per_stream": (after - before) * 1024.0 / max(1, len(socks)),
        "received": len(arrived),
        "action_ms": round((answered - sent) * 1000, 1),
        "p50_ms": round(pct(lat, 50) * 1000, 1) if lat else None,
        "p99_ms": round(pct(lat, 99) * 1000, 1) if lat else None,
        "last_ms": round(max(lat) * 1000, 1) if lat else None,
        "last_from_sent_ms": round((max(arrived.values()) - sent) * 1000, 1) if lat else None,
    }))


if __name__ == "__main__":
    main()
