#!/usr/bin/env python3
"""Open N Server-Sent Events streams on streamkit's /v1/streamkit/sse, measure what holding
them costs the server in resident memory, then how long one channel message takes to reach
every one of them.

Used by sse.sh, which starts Redis and the server; this only needs their addresses:

    sse_client.py --port 18480 --pids 100,101,102 --streams 10000 \
                  --redis /tmp/x/redis.sock --messages 5

Steps: read VmRSS (summed over --pids); open the streams, at most --parallel connecting at
a time, each read until its "status: up" event (its subscription is live at Redis); wait
--settle seconds; read VmRSS again. Then --messages times: PUBLISH (redis-cli) a message on
the plugin's namespaced channel, stamping the time just before, and record for every
stream when its event arrived; one second between messages. Prints one JSON object.

The latencies include this client's own work: one Python process reading 10,000 sockets
takes a while to get round all of them, so the spread is partly ours (`--procs` splits the
streams over several processes to shrink that share; each stamps its own receive times).
Only the standard library.
"""
import argparse
import json
import multiprocessing
import os
import resource
import selectors
import socket
import subprocess
import sys
import time

REQUEST = (b"GET /v1/streamkit/sse?channel=bench HTTP/1.1\r\nHost: bench\r\n"
           b"Accept: text/event-stream\r\n\r\n")


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def open_streams(port, n, parallel, deadline):
    """n streams, each read up to its "status up" event. Returns the sockets."""
    sel = selectors.DefaultSelector()
    done, pending, started = [], 0, 0
    bufs = {}
    while len(done) < n:
        while pending < parallel and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE)
            bufs[s] = b""
            pending += 1
            started += 1
        if time.time() > deadline:
            sys.exit(f"sse_client: only {len(done)} of {n} streams up in time")
        for key, ev in sel.select(timeout=1):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                s.sendall(REQUEST)
                sel.modify(s, selectors.EVENT_READ)
                continue
            data = s.recv(65536)
            if not data:
                sys.exit("sse_client: the server closed a stream while it opened")
            bufs[s] += data
            if b"data: up" in bufs[s]:
                sel.unregister(s)
                del bufs[s]
                done.append(s)
                pending -= 1
    sel.close()
    return done


def await_message(socks, tag, deadline):
    """When (time.time()) each socket received the event carrying `tag`."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    seen, bufs = [], {}
    needle = tag.encode()
    while len(seen) < len(socks):
        if time.time() > deadline:
            break
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            data = s.recv(65536)
            now = time.time()
            b = bufs.get(s, b"") + data
            if needle in b:
                seen.append(now)
                sel.unregister(s)
                bufs.pop(s, None)
            else:
                bufs[s] = b[-len(needle):]
    sel.close()
    return seen


def worker(port, n, parallel, pipe):
    """One client process: open n streams, then stamp arrivals for each tag it is sent."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    socks = open_streams(port, n, parallel, time.time() + 600)
    pipe.send("up")
    while True:
        tag = pipe.recv()
        if tag is None:
            break
        pipe.send(await_message(socks, tag, time.time() + 60))
    for s in socks:
        s.close()


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--settle", type=float, default=2)
    ap.add_argument("--messages", type=int, default=5)
    ap.add_argument("--redis", required=True, help="unix socket of the server's Redis")
    ap.add_argument("--channel", default="px:0:streamkit:bench")
    args = ap.parse_args()
    pids = [int(p) for p in args.pids.split(",")]

    before = rss_kib(pids)
    pipes, procs = [], []
    share = [args.streams // args.procs + (1 if i < args.streams % args.procs else 0)
             for i in range(args.procs)]
    for n in share:
        a, b = multiprocessing.Pipe()
        p = multiprocessing.Process(target=worker, args=(args.port, n, args.parallel, b))
        p.start()
        pipes.append(a)
        procs.append(p)
    for a in pipes:
        if a.recv() != "up":
            sys.exit("sse_client: a client process failed")
    time.sleep(args.settle)
    after = rss_kib(pids)

    rounds = []
    for i in range(args.messages):
        tag = "bench-%d-%d" % (os.getpid(), i)
        for a in pipes:
            a.send(tag)
        time.sleep(0.2)  # every client process is in select() before the message
        sent = time.time()
        subprocess.run(["redis-cli", "-s", args.redis, "PUBLISH", args.channel, tag],
                       check=True, capture_output=True)
        arrivals = []
        for a in pipes:
            arrivals += a.recv()
        lat = [(t - sent) * 1000 for t in arrivals]
        rounds.append({"received": len(lat), "p50_ms": percentile(lat, 50),
                       "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None})
        time.sleep(1)
    for a in pipes:
        a.send(None)
    for p in procs:
        p.join()
    print(json.dumps({
        "streams": args.streams,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_bytes_per_stream": round((after - before) * 1024 / args.streams, 1),
        "rounds": rounds,
    }))


if __name__ == "__main__":
    main()
