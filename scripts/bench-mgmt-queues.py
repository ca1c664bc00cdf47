#!/usr/bin/env python3
"""GET /api/queues with many queues, side by side: Warren's management plugin and the reference
RabbitMQ 3.10's, same machine, same client. For each broker it declares N queues (default
10,000) in a vhost of their own, then times GET /api/queues (every queue, every field), the same
for the vhost, and one UI-style page (page=1&page_size=100, sorted by name, and by messages
reversed), R times each, and reads the
broker's CPU time (utime+stime of /proc/PID/stat) around each series: latency median / max and
broker CPU per request. The vhost is deleted afterwards (the reference node is shared).

Usage: .venv/bin/python scripts/bench-mgmt-queues.py [--queues N] [--repeat R]
  [--warren-bin target/release/warren-server] [--only warren|rabbitmq]
Environment: RMQ_URI (amqp://guest:guest@127.0.0.1:5673/%2f), RMQ_HTTP (http://127.0.0.1:15673).
"""

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parent.parent
VHOST = "bench-mgmt-queues"
TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK


def request(http, method, path, body=None):
    req = urllib.request.Request(http + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def declare(amqp_uri, http, n):
    request(http, "PUT", f"/api/vhosts/{VHOST}", {})
    request(http, "PUT", f"/api/permissions/{VHOST}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    params = pika.URLParameters(amqp_uri.rsplit("/", 1)[0] + "/" + VHOST)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    for i in range(n):
        ch.queue_declare(f"q-{i:05d}", durable=False)
        if i % 10 == 0:
            ch.basic_publish("", f"q-{i:05d}", b"x" * 16)
    conn.close()


def series(http, pid, path, repeat):
    times, size = [], 0
    before = cpu_seconds(pid)
    for _ in range(repeat):
        t = time.perf_counter()
        body = request(http, "GET", path)
        times.append(time.perf_counter() - t)
        size = len(body)
    cpu = (cpu_seconds(pid) - before) / repeat
    return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000, "cpu_ms": cpu * 1000, "bytes": size}


def measure(name, amqp_uri, http, pid, n, repeat):
    declare(amqp_uri, http, n)
    time.sleep(6)  # RabbitMQ's statistics of the new queues arrive every 5 s
    rows = []
    for label, path in [
        ("all queues", "/api/queues"),
        ("one vhost", f"/api/queues/{VHOST}"),
        ("page of 100", f"/api/queues/{VHOST}?page=1&page_size=100&sort=name&pagination=true"),
        ("page of 100 by messages", f"/api/queues/{VHOST}?page=1&page_size=100&sort=messages&sort_reverse=true&pagination=true"),
    ]:
        request(http, "GET", path)  # warm-up
        rows.append((name, label, series(http, pid, path, repeat)))
    request(http, "DELETE", f"/api/vhosts/{VHOST}")
    return rows


def start_warren(binary):
    data = tempfile.mkdtemp(prefix="warren-bench-mgmt.")
    amqp, http = free_port(), free_port()
    log = open(Path(data) / "server.log", "wb")
    proc = subprocess.Popen([binary, "--amqp-port", str(amqp), "--http-port", str(http), "--data-dir", data],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", amqp), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("warren-server did not start: " + (Path(data) / "server.log").read_text())
            time.sleep(0.2)
    plugins = Path(binary).with_name("warren-plugins")
    subprocess.run([str(plugins), "--data-dir", data, "enable", "rabbitmq_management"], check=True, capture_output=True)
    return proc, f"amqp://guest:guest@127.0.0.1:{amqp}/%2f", f"http://127.0.0.1:{http}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queues", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warren-bin", default=str(ROOT / "target/release/warren-server"))
    ap.add_argument("--only", choices=["warren", "rabbitmq"])
    a = ap.parse_args()
    rows = []
    if a.only != "rabbitmq":
        proc, amqp, http = start_warren(a.warren_bin)
        try:
            rows += measure("warren", amqp, http, proc.pid, a.queues, a.repeat)
        finally:
            proc.terminate()
            proc.wait()
    if a.only != "warren":
        rmq_amqp = os.environ.get("RMQ_URI", "amqp://guest:guest@127.0.0.1:5673/%2f")
        rmq_http = os.environ.get("RMQ_HTTP", "http://127.0.0.1:15673")
        pid = int(json.loads(request(rmq_http, "GET", "/api/nodes"))[0]["os_pid"])
        rows += measure("rabbitmq", rmq_amqp, rmq_http, pid, a.queues, a.repeat)
    print(f"| broker | request ({a.queues} queues) | median ms | max ms | broker CPU ms/request | response bytes |")
    print("|---|---|---:|---:|---:|---:|")
    for name, label, r in rows:
        print(f"| {name} | {label} | {r['median_ms']:.0f} | {r['max_ms']:.0f} | {r['cpu_ms']:.0f} | {r['bytes']} |")
    print(f"\n{a.repeat} requests each after one warm-up, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, warren: {a.warren_bin}")


if __name__ == "__main__":
    main()
