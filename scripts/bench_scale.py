#!/usr/bin/env python3
"""Scale benchmarks against one broker (issue 13 goals 7 and 8), with a client made of pre-encoded
AMQP 0-9-1 frames on raw non-blocking sockets (one thread, selectors), so that 10,000 connections
or 10,000 consumers cost the client little. With --pid, the broker's CPU time (utime + stime of all
its threads, /proc/PID/stat) and resident memory (VmRSS, /proc/PID/status) are sampled around
the phase that is measured.

  bench_scale.py --port P --pid PID idle --connections 10000 --heartbeat 60 --hold 60
      N connections with one channel each, idle for --hold seconds (heartbeats answered):
      RSS before/after opening them, broker CPU while they idle.
  bench_scale.py --port P --pid PID slow-queues --queues 10000 --conns 100 --rate 1 --seconds 30
      Q queues, one no-ack consumer each (spread over --conns connections, one channel per
      consumer), one publisher sending each queue --rate msg/s through the default exchange,
      spread evenly over time (every --tick-ms a batch of the next queues in turn): broker CPU
      per second and per delivered message.
  bench_scale.py --port P --pid PID queues --queues 100000 [--durable]
      Q queues declared (pipelined on one channel): RSS before/after, bytes per queue, declare
      rate; then deleted.

Prints one JSON line of results (and a human line on stderr per phase).
"""

import argparse
import json
import resource
import selectors
import socket
import struct
import sys
import time

from amqp_raw import (EMPTY_TABLE, FRAME_END, HEARTBEAT, PROTOCOL_HEADER, TCK, add_broker_args, connection_open, cpu_ticks,
                      longstr, method_frame, rss_kib, shortstr, start_ok)


def queue_declare(ch, name, durable):
    flags = 0b10 if durable else 0  # passive, durable, exclusive, auto-delete, no-wait
    return method_frame(ch, 50, 10, struct.pack(">H", 0) + shortstr(name) + bytes([flags]) + EMPTY_TABLE)


def queue_delete(ch, name):
    return method_frame(ch, 50, 40, struct.pack(">H", 0) + shortstr(name) + b"\x00")


def basic_consume(ch, queue, tag):
    # no-local, no-ack, exclusive, no-wait
    return method_frame(ch, 60, 20, struct.pack(">H", 0) + shortstr(queue) + shortstr(tag) + b"\x02" + EMPTY_TABLE)


def publish(ch, routing_key, body):
    m = method_frame(ch, 60, 40, struct.pack(">H", 0) + shortstr("") + shortstr(routing_key) + b"\x00")
    # content header: class 60, weight 0, body size, property flags 0
    hdr = struct.pack(">HHQH", 60, 0, len(body), 0)
    h = struct.pack(">BHI", 2, ch, len(hdr)) + hdr + FRAME_END
    b = struct.pack(">BHI", 3, ch, len(body)) + body + FRAME_END
    return m + h + b


class Conn:
    """One AMQP connection: blocking handshake, then non-blocking frame reads."""

    def __init__(self, host, port, user, password, vhost, heartbeat, name):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.deliveries = 0
        self.out = bytearray()
        props = struct.pack(">B", len("connection_name")) + b"connection_name" + b"S" + longstr(name.encode())
        self.sock.sendall(PROTOCOL_HEADER)
        self.expect(10, 10)
        self.sock.sendall(start_ok(user, password, props))
        args = self.expect(10, 30)
        channel_max, frame_max, _ = struct.unpack(">HIH", args[:8])
        self.channel_max = channel_max or 65535
        self.sock.sendall(method_frame(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, heartbeat))
                          + connection_open(vhost))
        self.expect(10, 41)

    def frames(self):
        """Yields (type, channel, payload) of the complete frames in the buffer."""
        buf = self.buf
        pos = 0
        n = len(buf)
        while n - pos >= 7:
            ftype, ch, size = struct.unpack_from(">BHI", buf, pos)
            if n - pos < 8 + size:
                break
            yield ftype, ch, bytes(buf[pos + 7:pos + 7 + size])
            pos += 8 + size
        del buf[:pos]

    def expect(self, class_id, method_id, count=1):
        """Blocking: reads until `count` methods (class_id, method_id) arrived; returns the
        arguments of the last. Anything else but heartbeats is an error."""
        got = 0
        last = b""
        while got < count:
            for ftype, ch, payload in self.frames():
                if ftype == 8:
                    continue
                if ftype != 1:
                    raise ConnectionError(f"unexpected frame type {ftype}")
                c, m = struct.unpack_from(">HH", payload)
                if (c, m) != (class_id, method_id):
                    raise ConnectionError(f"expected {class_id}.{method_id}, got {c}.{m}: {payload[4:80]!r}")
                got += 1
                last = payload[4:]
            if got >= count:
                break
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed by the broker")
            self.buf += chunk
        return last

    def open_channels(self, n, first=1):
        self.sock.sendall(b"".join(method_frame(c, 20, 10, b"\x00") for c in range(first, first + n)))
        self.expect(20, 11, n)

    def pump(self):
        """Non-blocking read: counts deliveries, answers heartbeats."""
        try:
            chunk = self.sock.recv(1 << 18)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.buf += chunk
        for ftype, _, payload in self.frames():
            if ftype == 1 and payload[:4] == b"\x00\x3c\x00\x3c":  # basic.deliver
                self.deliveries += 1
            elif ftype == 8:
                self.out += HEARTBEAT
            elif ftype == 1 and payload[:4] in (b"\x00\x0a\x00\x32", b"\x00\x14\x00\x28"):
                raise ConnectionError(f"closed by the broker: {payload[4:120]!r}")
        if self.out:
            try:
                k = self.sock.send(self.out)
                del self.out[:k]
            except BlockingIOError:
                pass
        return True



def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pump_for(conns, seconds, tick=None):
    """Serves every connection for `seconds`; `tick()` is called about every 10 ms."""
    sel = selectors.DefaultSelector()
    for c in conns:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
    end = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if tick:
            wait = tick(now)
        else:
            wait = end - now
        for key, _ in sel.select(timeout=max(0.0, min(wait, end - now))):
            if not key.data.pump():
                raise ConnectionError("a connection was closed by the broker")
    for c in conns:
        sel.unregister(c.sock)
        c.sock.setblocking(True)
    sel.close()


def cmd_idle(a, mk):
    r0 = rss_kib(a.pid) if a.pid else 0
    t0 = time.monotonic()
    conns = []
    for i in range(a.connections):
        c = mk(a.heartbeat, f"scale-idle-{i}")
        c.open_channels(1)
        conns.append(c)
        if (i + 1) % 2000 == 0:
            log(f"opened {i + 1}")
    opened_s = time.monotonic() - t0
    # Let the broker settle (allocations freed, lazy work done) before sampling.
    pump_for(conns, a.settle)
    r1 = rss_kib(a.pid) if a.pid else 0
    c0 = cpu_ticks(a.pid) if a.pid else 0
    h0 = time.monotonic()
    pump_for(conns, a.hold)
    held = time.monotonic() - h0
    c1 = cpu_ticks(a.pid) if a.pid else 0
    r2 = rss_kib(a.pid) if a.pid else 0
    cpu_s = (c1 - c0) / TCK
    res = {
        "mode": "idle", "connections": len(conns), "heartbeat": a.heartbeat, "open_seconds": round(opened_s, 1),
        "rss_before_mib": round(r0 / 1024, 1), "rss_open_mib": round(r1 / 1024, 1), "rss_end_mib": round(r2 / 1024, 1),
        "rss_per_connection_kib": round((r1 - r0) / max(len(conns), 1), 2),
        "idle_seconds": round(held, 1), "idle_cpu_percent_of_core": round(cpu_s / held * 100, 2),
    }
    for c in conns:
        c.sock.close()
    return res


def declare_queues(c, names, durable, ch=1, window=1000):
    """Pipelined queue.declare, at most `window` outstanding."""
    t0 = time.monotonic()
    for i in range(0, len(names), window):
        part = names[i:i + window]
        c.sock.sendall(b"".join(queue_declare(ch, n, durable) for n in part))
        c.expect(50, 11, len(part))
    return time.monotonic() - t0


def delete_queues(c, names, ch=1, window=1000):
    t0 = time.monotonic()
    for i in range(0, len(names), window):
        part = names[i:i + window]
        c.sock.sendall(b"".join(queue_delete(ch, n) for n in part))
        c.expect(50, 41, len(part))
    return time.monotonic() - t0


def cmd_queues(a, mk):
    c = mk(0, "scale-queues")
    c.open_channels(1)
    prefix = "scale-dq-" if a.durable else "scale-tq-"
    names = [f"{prefix}{i}" for i in range(a.queues)]
    delete_queues(c, names)  # leftovers of an interrupted run
    time.sleep(2)
    r0 = rss_kib(a.pid) if a.pid else 0
    c0 = cpu_ticks(a.pid) if a.pid else 0
    secs = declare_queues(c, names, a.durable)
    c1 = cpu_ticks(a.pid) if a.pid else 0
    time.sleep(a.settle)
    r1 = rss_kib(a.pid) if a.pid else 0
    dsecs = delete_queues(c, names)
    time.sleep(2)
    r2 = rss_kib(a.pid) if a.pid else 0
    c.sock.close()
    return {
        "mode": "queues", "queues": a.queues, "durable": a.durable, "declare_seconds": round(secs, 1),
        "declares_per_second": round(a.queues / secs), "broker_cpu_us_per_declare": round((c1 - c0) / TCK * 1e6 / a.queues, 1),
        "rss_before_mib": round(r0 / 1024, 1), "rss_declared_mib": round(r1 / 1024, 1), "rss_deleted_mib": round(r2 / 1024, 1),
        "rss_per_queue_bytes": round((r1 - r0) * 1024 / a.queues), "delete_seconds": round(dsecs, 1),
    }


def cmd_slow_queues(a, mk):
    setup = mk(0, "scale-setup")
    setup.open_channels(1)
    names = [f"scale-sq-{i}" for i in range(a.queues)]
    delete_queues(setup, names)
    declare_queues(setup, names, False)
    # Consumers: queue i on connection i % conns, one channel per consumer.
    per = [[] for _ in range(a.conns)]
    for i, n in enumerate(names):
        per[i % a.conns].append(n)
    conns = []
    for k, qs in enumerate(per):
        c = mk(a.heartbeat, f"scale-consumers-{k}")
        if len(qs) > c.channel_max:
            raise SystemExit(f"{len(qs)} consumers per connection exceed channel_max {c.channel_max}: raise --conns")
        c.open_channels(len(qs))
        c.sock.sendall(b"".join(basic_consume(ch + 1, q, f"t{ch}") for ch, q in enumerate(qs)))
        c.expect(60, 21, len(qs))
        conns.append(c)
    pub = mk(a.heartbeat, "scale-publisher")
    pub.open_channels(1)
    body = b"x" * 16
    frames = [publish(1, n, body) for n in names]
    total_rate = a.queues * a.rate
    state = {"next": 0, "sent": 0, "t0": None}

    period = a.tick_ms / 1000

    def tick(now):
        if state["t0"] is None:
            state["t0"] = now
        # One write per period, at its start, with the period's messages. (A consumer's delivery
        # wakes the select loop early; sending what is due then would split every batch.)
        periods = int((now - state["t0"]) / period) + 1
        next_batch = periods * period
        due = round(periods * period * total_rate)
        k = due - state["sent"]
        if k > 0:
            out = []
            for _ in range(k):
                out.append(frames[state["next"]])
                state["next"] = (state["next"] + 1) % len(frames)
            # Blocking write: a broker that pushes back (flow control) slows the publisher down.
            pub.sock.setblocking(True)
            pub.sock.sendall(b"".join(out))
            pub.sock.setblocking(False)
            state["sent"] += k
        return max(0.0, state["t0"] + next_batch - time.monotonic())

    everyone = conns + [pub]
    pump_for(everyone, a.warmup, tick)
    d0 = sum(c.deliveries for c in conns)
    state["t0"] = None  # the measured window keeps the rate from its own start
    state["sent"] = 0
    s0 = 0
    c0 = cpu_ticks(a.pid) if a.pid else 0
    t0 = time.monotonic()
    pump_for(everyone, a.seconds, tick)
    el = time.monotonic() - t0
    c1 = cpu_ticks(a.pid) if a.pid else 0
    delivered = sum(c.deliveries for c in conns) - d0
    sent = state["sent"] - s0
    cpu_s = (c1 - c0) / TCK
    for c in everyone:
        c.sock.close()
    delete_queues(setup, names)
    setup.sock.close()
    return {
        "mode": "slow-queues", "queues": a.queues, "consumer_connections": a.conns, "rate_per_queue": a.rate,
        "tick_ms": a.tick_ms, "seconds": round(el, 1), "published_per_second": round(sent / el),
        "delivered_per_second": round(delivered / el), "broker_cpu_percent_of_core": round(cpu_s / el * 100, 2),
        "broker_cpu_us_per_delivered": round(cpu_s * 1e6 / max(delivered, 1), 2),
    }


def main():
    ap = argparse.ArgumentParser()
    add_broker_args(ap)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("idle")
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--heartbeat", type=int, default=60)
    p.add_argument("--settle", type=float, default=5)
    p.add_argument("--hold", type=float, default=60)
    p = sub.add_parser("slow-queues")
    p.add_argument("--queues", type=int, default=10000)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--tick-ms", type=float, default=10)
    p.add_argument("--heartbeat", type=int, default=60)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--seconds", type=float, default=30)
    p = sub.add_parser("queues")
    p.add_argument("--queues", type=int, default=100000)
    p.add_argument("--durable", action="store_true")
    p.add_argument("--settle", type=float, default=5)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def mk(heartbeat, name):
        return Conn(a.host, a.port, a.user, a.password, a.vhost, heartbeat, name)

    res = {"idle": cmd_idle, "slow-queues": cmd_slow_queues, "queues": cmd_queues}[a.cmd](a, mk)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
