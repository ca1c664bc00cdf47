#!/usr/bin/env python3
"""Crash-restart benchmark: N restarts of warren-server right after `kill -9`, under confirmed
publishing, each started without waiting for the killed process to be reaped (so the new one
races the kernel's teardown of the old one and its lock on warren.redb).

Two publishers (pika, publisher confirms, persistent messages, one durable queue) run throughout
and reconnect after every kill. Each round waits until the publishers have had messages confirmed
by the current broker, kills it with SIGKILL at a random moment (0-300 ms later) and at once starts
a new one on the same data directory and port. A start counts as a successful open when the new
process accepts AMQP connections; it fails if the process exits (for example "already open by
another Warren process") or does not listen within 60 s. Nothing is retried.

At the end the queue is drained: every confirmed message must be there (0 lost), and nothing that
was never published may appear. Prints a markdown table; exit 1 on a failed open or a lost message.

    scripts/bench-restart.py                       # 50 restarts, target/release/warren-server
    scripts/bench-restart.py --restarts 10 --server target/debug/warren-server
"""
import argparse
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika
import pika.exceptions

REPO = Path(__file__).resolve().parents[1]
QUEUE = "restart-q"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def params(port):
    return pika.ConnectionParameters(host="127.0.0.1", port=port, heartbeat=30, connection_attempts=1,
                                     socket_timeout=5, blocked_connection_timeout=None)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.published = set()
        self.confirmed = set()
        self.confirm_count = 0  # confirms so far (the kill loop waits for new ones)
        self.reconnects = 0


def publisher(idx, port, state, stop):
    seq = 0
    while not stop.is_set():
        try:
            conn = pika.BlockingConnection(params(port))
        except (pika.exceptions.AMQPError, OSError):
            time.sleep(0.05)
            continue
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare(QUEUE, durable=True)
            while not stop.is_set():
                seq += 1
                mid = "p%d-%d" % (idx, seq)
                with state.lock:
                    state.published.add(mid)
                ch.basic_publish("", QUEUE, mid.encode(), pika.BasicProperties(delivery_mode=2, message_id=mid))
                with state.lock:
                    state.confirmed.add(mid)
                    state.confirm_count += 1
        except (pika.exceptions.AMQPError, OSError):
            with state.lock:
                state.reconnects += 1
        finally:
            try:
                conn.close()
            except Exception:
                pass


def start(server, data, port, config, log):
    return subprocess.Popen([str(server), "--amqp-port", str(port), "--bind", "127.0.0.1", "--data-dir", str(data),
                             "--config", str(config)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def listening(pid, port):
    """Is process `pid` the one listening on `port`? (Right after SIGKILL the dying process's
    listener may still take connections, so the port alone does not tell.)"""
    out = subprocess.run(["ss", "-Hltnp", "sport = :%d" % port], capture_output=True, text=True).stdout
    return ("pid=%d," % pid) in out


def wait_open(proc, port, limit=60.0):
    """Seconds until `proc` listens on `port` and accepts a connection, or None if it exited or
    never did."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            return None
        if listening(proc.pid, port) and port_open(port):
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


def drain(port):
    got = []
    conn = pika.BlockingConnection(params(port))
    ch = conn.channel()
    while True:
        method, props, body = ch.basic_get(QUEUE, auto_ack=True)
        if method is None:
            break
        got.append(body.decode())
    conn.close()
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restarts", type=int, default=50)
    ap.add_argument("--server", default=str(REPO / "target/release/warren-server"))
    ap.add_argument("--min-confirms", type=int, default=200,
                    help="confirms by each new broker before it is killed (default 200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lock-wait-ms", type=int, default=None,
                    help="storage.lock_wait_ms for the broker (default: its default, 5000; 0 shows the failures it prevents)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="warren-restart-"))
    data, port = work / "data", free_port()
    config = work / "warren.toml"
    config.write_text("" if args.lock_wait_ms is None else "[storage]\nlock_wait_ms = %d\n" % args.lock_wait_ms)
    log = open(work / "warren-server.log", "ab")

    proc = start(args.server, data, port, config, log)
    if wait_open(proc, port) is None:
        sys.exit("bench-restart: the first start failed (see %s)" % (work / "warren-server.log"))
    state, stop = State(), threading.Event()
    pubs = [threading.Thread(target=publisher, args=(i, port, state, stop), daemon=True) for i in range(2)]
    for t in pubs:
        t.start()

    opens, failures, open_times, zombies_at_start = 0, [], [], 0
    old = []
    t_begin = time.monotonic()
    for i in range(args.restarts):
        with state.lock:
            base = state.confirm_count
        deadline = time.monotonic() + 60
        while True:
            with state.lock:
                if state.confirm_count - base >= args.min_confirms:
                    break
            if time.monotonic() > deadline:
                sys.exit("bench-restart: no confirms from broker %d within 60 s" % i)
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        old.append(proc)  # deliberately not waited for before the next start
        proc = start(args.server, data, port, config, log)
        if old[-1].poll() is None:
            zombies_at_start += 1  # the killed process had not been reaped when the new one started
        took = wait_open(proc, port)
        if took is None:
            failures.append((i, proc.poll()))
            proc.wait(10) if proc.poll() is None else None
            for _ in range(50):  # go on with the next round (retrying here is not counted as an open)
                time.sleep(0.2)
                proc = start(args.server, data, port, config, log)
                if wait_open(proc, port) is not None:
                    break
            else:
                sys.exit("bench-restart: cannot start the broker again after failure %d" % i)
        else:
            opens += 1
            open_times.append(took)
        for p in old:
            p.poll()
    elapsed = time.monotonic() - t_begin
    stop.set()
    for t in pubs:
        t.join(30)
    got = drain(port)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    for p in old:
        p.wait()

    text = (work / "warren-server.log").read_text(errors="replace")
    waited = text.count("waiting up to")
    got_set = set(got)
    lost = state.confirmed - got_set
    unknown = got_set - state.published
    print("| measure | Warren |")
    print("|---|---|")
    print("| restarts right after kill -9 (killed process still not exited when the new one started) | %d (%d) |" % (args.restarts, zombies_at_start))
    print("| successful opens / failed | %d / %d |" % (opens, len(failures)))
    if open_times:
        ms = sorted(t * 1000 for t in open_times)
        print("| kill -9 → new broker accepting connections, ms: min / median / max | %.0f / %.0f / %.0f |"
              % (ms[0], statistics.median(ms), ms[-1]))
    print("| starts that waited for the old process's lock (log) | %d |" % waited)
    print("| messages confirmed / published (in doubt at a kill) | %d / %d |" % (len(state.confirmed), len(state.published)))
    print("| confirmed messages lost | %d |" % len(lost))
    print("| delivered at the end (unconfirmed ones that made it too) / never published | %d / %d |" % (len(got_set), len(unknown)))
    print("| duplicates delivered | %d |" % (len(got) - len(got_set)))
    print("| publisher reconnects | %d |" % state.reconnects)
    print("| wall time | %.0f s |" % elapsed)
    if failures:
        print("failed opens (round, exit code): %s; log: %s" % (failures, work / "warren-server.log"))
    if failures or lost or unknown:
        print("lost: %s" % sorted(lost)[:20])
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
