"""AMQP 0-9-1 on raw sockets for the benchmark clients (bench_scale.py, bench_connections.py):
frame encoders, the SASL PLAIN start-ok, a blocking frame reader, the arguments every benchmark
takes to reach a broker, and the broker process's CPU time and memory from /proc. Small on
purpose: the clients pre-encode their frames so that they cost little next to the broker."""

import os
import struct

FRAME_END = b"\xce"
HEARTBEAT = struct.pack(">BHI", 8, 0, 0) + FRAME_END
EMPTY_TABLE = struct.pack(">I", 0)
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
TCK = os.sysconf("SC_CLK_TCK")


def method_frame(channel, class_id, method_id, args=b""):
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + FRAME_END


def shortstr(s):
    b = s.encode()
    return bytes([len(b)]) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def start_ok(user, password, client_properties=b""):
    """connection.start-ok with SASL PLAIN; `client_properties` is an encoded field table body."""
    return method_frame(0, 10, 11, longstr(client_properties) + shortstr("PLAIN")
                        + longstr(b"\0" + user.encode() + b"\0" + password.encode()) + shortstr("en_US"))


def connection_open(vhost):
    return method_frame(0, 10, 40, shortstr(vhost) + shortstr("") + b"\0")


def add_broker_args(ap):
    """The arguments that name the broker (and, with --pid, its process to measure)."""
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="guest")
    ap.add_argument("--password", default="guest")
    ap.add_argument("--vhost", default="/")
    ap.add_argument("--pid", type=int)


def cpu_ticks(pid):
    """utime + stime of process `pid` (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
