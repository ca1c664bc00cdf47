#!/usr/bin/env python3
"""Samples where bytes wait between AMQP clients and a broker on 127.0.0.1:PORT, from the kernel's
socket queues (`ss -tni`): for publishing connections, the client's send queue and the broker's
receive queue; for consuming connections, the broker's send queue and the client's receive queue.
A connection publishes if the broker has received more bytes on it than it has sent.

    scripts/socket-queues.py PORT SECONDS      # prints the mean and max of each, in KiB
Used by scripts/bench-safety.sh (flow) to show where publish->deliver latency is spent.
"""
import re
import subprocess
import sys
import time


def sample(port):
    out = subprocess.run(["ss", "-tniH", "state", "established", "( sport = :%d or dport = :%d )" % (port, port)],
                         capture_output=True, text=True).stdout
    lines = out.splitlines()
    entries = []
    i = 0
    while i < len(lines):
        head = lines[i].split()
        info = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith((" ", "\t")) else ""
        i += 2 if info else 1
        if len(head) < 4:
            continue
        recvq, sendq, local, peer = int(head[0]), int(head[1]), head[2], head[3]
        got = lambda k: int(m.group(1)) if (m := re.search(r"\b%s:(\d+)" % k, info)) else 0
        entries.append((recvq, sendq, local, peer, got("bytes_received"), got("bytes_acked")))
    kind = {}  # client-side "ip:port" -> "pub" | "con"
    for recvq, sendq, local, peer, rx, tx in entries:
        if local.endswith(":%d" % port):
            kind[peer] = "pub" if rx > tx else "con"
    q = {"publisher client send": 0, "broker receive (publishers)": 0, "broker send (consumers)": 0,
         "consumer client receive": 0}
    for recvq, sendq, local, peer, rx, tx in entries:
        if local.endswith(":%d" % port):
            if kind.get(peer) == "pub":
                q["broker receive (publishers)"] += recvq
            elif kind.get(peer) == "con":
                q["broker send (consumers)"] += sendq
        elif kind.get(local) == "pub":
            q["publisher client send"] += sendq
        elif kind.get(local) == "con":
            q["consumer client receive"] += recvq
    return q


def main():
    port, secs = int(sys.argv[1]), float(sys.argv[2])
    samples = []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        samples.append(sample(port))
        time.sleep(0.25)
    samples = [s for s in samples if any(s.values())] or samples
    for k in samples[0]:
        vals = [s[k] for s in samples]
        print("%s: mean %.0f KiB, max %.0f KiB" % (k, sum(vals) / len(vals) / 1024, max(vals) / 1024))


if __name__ == "__main__":
    main()
