#!/usr/bin/env python3
"""Connection setup rate: AMQP 0-9-1 connections opened and closed per second against one
broker, by THREADS client threads for SECONDS, each connection doing the whole handshake
(protocol header, start/start-ok with SASL PLAIN, tune/tune-ok, open/open-ok) and close/close-ok
on a fresh TCP socket. The client is a few pre-encoded frames on raw sockets so that it costs
little next to the broker. With --pid, also the broker's CPU time per connection
(utime + stime from /proc/PID/stat, all its threads).

  bench_connections.py --port 5674 --user guest --password guest [--threads 4] [--seconds 10] [--pid N]

Prints one line: connections/s, total, errors, broker CPU µs per connection.
"""

import argparse
import socket
import struct
import threading
import time

from amqp_raw import PROTOCOL_HEADER, TCK, add_broker_args, connection_open, cpu_ticks, method_frame, shortstr, start_ok


def frames(user, password, vhost):
    tune_ok = method_frame(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
    close = method_frame(0, 10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))
    return start_ok(user, password), tune_ok, connection_open(vhost), close


def read_method(sock, buf):
    """Reads one frame; returns ((class, method), rest of buffer)."""
    while True:
        if len(buf) >= 7:
            size = struct.unpack(">I", buf[3:7])[0]
            if len(buf) >= 8 + size:
                ftype = buf[0]
                payload = buf[7:7 + size]
                buf = buf[8 + size:]
                if ftype == 1:
                    return struct.unpack(">HH", payload[:4]), buf
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the broker")
        buf += chunk


def one(host, port, fr):
    start, tune_ok, open_, close = fr
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.sendall(PROTOCOL_HEADER)
        buf = b""
        m, buf = read_method(s, buf)
        assert m == (10, 10), m
        s.sendall(start)
        m, buf = read_method(s, buf)
        if m != (10, 30):
            raise ConnectionError(f"login refused: {m}")
        s.sendall(tune_ok + open_)
        m, buf = read_method(s, buf)
        if m != (10, 41):
            raise ConnectionError(f"open refused: {m}")
        s.sendall(close)
        m, buf = read_method(s, buf)
        assert m == (10, 51), m
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    add_broker_args(ap)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    fr = frames(a.user, a.password, a.vhost)
    one(a.host, a.port, fr)  # fails loudly if the login does not work
    done = [0] * a.threads
    errors = [0] * a.threads
    stop = threading.Event()

    def run(i):
        while not stop.is_set():
            try:
                one(a.host, a.port, fr)
                done[i] += 1
            except (OSError, ConnectionError, AssertionError):
                errors[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(a.threads)]
    t0 = time.monotonic()
    c0 = cpu_ticks(a.pid) if a.pid else 0
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    total = sum(done)
    cpu = ""
    if a.pid:
        ticks = cpu_ticks(a.pid) - c0
        cpu = f"{ticks / TCK / max(total, 1) * 1e6:.0f}"
    print(f"{total / elapsed:.0f}\t{total}\t{sum(errors)}\t{cpu}")


if __name__ == "__main__":
    main()
