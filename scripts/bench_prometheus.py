#!/usr/bin/env python3
"""Scrape cost of the prometheus endpoints with many queues, for one broker.

Declares --queues queues in --vhost (pika, one channel; a message in every 10th), then GETs each
endpoint --scrapes times and prints per endpoint: median and p90 wall time, the broker's CPU time
per scrape (utime+stime of --pid from /proc/PID/stat, all scrapes / count) and the body size.
Used by scripts/bench-prometheus.sh, which runs it against Warren and the reference RabbitMQ.
"""
import argparse
import json
import os
import statistics
import time
import urllib.parse
import urllib.request

import pika

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--amqp", required=True, help="amqp://user:pass@host:port/ (the vhost is added)")
    ap.add_argument("--metrics", required=True, help="http://host:port")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--vhost", default="/")
    ap.add_argument("--queues", type=int, default=10000)
    ap.add_argument("--scrapes", type=int, default=20)
    a = ap.parse_args()

    params = pika.URLParameters(a.amqp + urllib.parse.quote(a.vhost, safe=""))
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    t0 = time.monotonic()
    for i in range(a.queues):
        q = f"bench-prom-{i}"
        ch.queue_declare(q)
        if i % 10 == 0:
            ch.basic_publish("", q, b"x")
    declared = time.monotonic() - t0
    # RabbitMQ's per-object queue stats are emitted every 5 s: let them settle once.
    time.sleep(6)

    vq = urllib.parse.quote(a.vhost, safe="")
    endpoints = [
        ("/metrics", "/metrics"),
        ("/metrics/per-object", "/metrics/per-object"),
        ("/metrics/detailed queue_coarse", f"/metrics/detailed?family=queue_coarse_metrics&vhost={vq}"),
    ]
    rows = []
    for name, path in endpoints:
        urllib.request.urlopen(a.metrics + path, timeout=120).read()  # warm up
        times, size = [], 0
        c0 = cpu_seconds(a.pid)
        for _ in range(a.scrapes):
            s = time.monotonic()
            body = urllib.request.urlopen(a.metrics + path, timeout=120).read()
            times.append(time.monotonic() - s)
            size = len(body)
        cpu = (cpu_seconds(a.pid) - c0) / a.scrapes
        times.sort()
        rows.append({
            "broker": a.label, "endpoint": name, "queues": a.queues,
            "median_ms": round(statistics.median(times) * 1000, 1),
            "p90_ms": round(times[int(len(times) * 0.9) - 1] * 1000, 1),
            "cpu_ms_per_scrape": round(cpu * 1000, 1), "bytes": size,
        })
    for i in range(a.queues):
        ch.queue_delete(f"bench-prom-{i}")
    conn.close()
    print(f"# {a.label}: {a.queues} queues declared in {declared:.1f} s")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
