#!/usr/bin/env python3
"""Fault-injection soak for warren-server (pika clients, real processes, real sockets).

Publishers with confirms (persistent messages to durable queues, directly and through an
x-consistent-hash exchange served by a plugin), consumers with manual acks, a queue
declare/delete churn, and a chaos loop that, in turn: kill -9's the broker and starts it again at
once (without waiting for the old process to be reaped), SIGKILLs a victim client process,
rewrites the plugin file (hot reload), raises the disk alarm, raises the memory alarm (when the
broker has `set_vm_memory_high_watermark`), and fills the data directory's filesystem to ENOSPC
(when it runs as root and can mount a tmpfs for the data directory).

At the end every queue is drained and the counts are printed. It fails (exit 1) if a confirmed
message was never delivered, a delivered message was never published, a client that no fault
was aimed at lost its connection while the broker was up, or publishing stalled (no confirm for
--max-stall seconds: every fault episode ends within a few seconds).

    scripts/soak.py --minutes 2                      # CI
    scripts/soak.py --minutes 60 --server target/release/warren-server
"""
import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika
import pika.exceptions

REPO = Path(__file__).resolve().parents[1]
QUEUES = ["soak-q%d" % i for i in range(4)]
HASH_EXCHANGE = "soak-hash"


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


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.published = 0
        self.confirmed = set()
        self.nacked = 0
        self.in_doubt = 0  # sent, then the connection died before the confirm
        self.received = set()
        self.deliveries = 0
        self.unknown = []
        self.unexpected_drops = []
        self.events = {}

    def event(self, name, n=1):
        with self.lock:
            self.events[name] = self.events.get(name, 0) + n


class Broker:
    """The warren-server process; `down` is set while a fault makes connection losses expected."""

    def __init__(self, binary, work, data_dir, port):
        self.binary, self.work, self.data_dir, self.port = binary, work, data_dir, port
        self.proc = None
        self.expected_down_until = 0.0
        self.log = open(work / "warren-server.log", "ab")

    def start(self, stats):
        self.proc = subprocess.Popen(
            [str(self.binary), "--amqp-port", str(self.port), "--bind", "127.0.0.1",
             "--data-dir", str(self.data_dir), "--config", str(self.work / "warren.toml")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if port_open(self.port):
                return True
            if self.proc.poll() is not None:
                stats.event("failed starts (retried)")
                time.sleep(0.2)
                self.proc = subprocess.Popen(self.proc.args, stdin=subprocess.DEVNULL, stdout=self.log,
                                             stderr=subprocess.STDOUT)
            time.sleep(0.05)
        raise SystemExit("soak: warren-server did not open its port within 60 s (see %s)" % (self.work / "warren-server.log"))

    def kill9(self):
        self.expected_down_until = time.monotonic() + 30
        self.proc.send_signal(signal.SIGKILL)
        # Deliberately not waited for: the next start races the kernel's teardown.

    def ctl(self, *args, tool="warrenctl"):
        binary = self.binary.parent / tool
        return subprocess.run([str(binary), "--data-dir", str(self.data_dir), *args],
                              capture_output=True, text=True, timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def params(port):
    return pika.ConnectionParameters(host="127.0.0.1", port=port, heartbeat=30, blocked_connection_timeout=None,
                                     connection_attempts=1, socket_timeout=5)


def connect(broker, stats, who, stop):
    """Connects, retrying while the broker is away."""
    while not stop.is_set():
        try:
            return pika.BlockingConnection(params(broker.port))
        except (pika.exceptions.AMQPError, OSError):
            time.sleep(0.2)
    return None


def note_drop(broker, stats, who):
    if time.monotonic() > broker.expected_down_until:
        with stats.lock:
            stats.unexpected_drops.append((who, time.strftime("%H:%M:%S")))
    stats.event("reconnects after faults")


def declare_topology(ch):
    for q in QUEUES:
        ch.queue_declare(q, durable=True)


def publisher(idx, broker, stats, stop):
    seq = 0
    rng = random.Random(idx)
    while not stop.is_set():
        conn = connect(broker, stats, "publisher %d" % idx, stop)
        if conn is None:
            return
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            declare_topology(ch)
            while not stop.is_set():
                seq += 1
                mid = "p%d-%d" % (idx, seq)
                props = pika.BasicProperties(delivery_mode=2, message_id=mid)
                via_plugin = broker.plugin_ready and rng.random() < 0.3
                with stats.lock:
                    stats.published += 1
                try:
                    if via_plugin:
                        ch.basic_publish(HASH_EXCHANGE, mid, mid.encode(), props, mandatory=True)
                    else:
                        ch.basic_publish("", rng.choice(QUEUES), mid.encode(), props, mandatory=True)
                    with stats.lock:
                        stats.confirmed.add(mid)
                except pika.exceptions.NackError:
                    stats.event("nacked publishes")
                except pika.exceptions.UnroutableError:
                    stats.event("returned (unroutable) publishes")
        except (pika.exceptions.AMQPError, OSError) as e:
            with stats.lock:
                stats.in_doubt += 1
            if not stop.is_set():
                note_drop(broker, stats, "publisher %d (%s)" % (idx, type(e).__name__))
        finally:
            try:
                conn.close()
            except Exception:
                pass


def consumer(idx, broker, stats, stop, drained):
    while not (stop.is_set() and drained.is_set()):
        conn = connect(broker, stats, "consumer %d" % idx, drained)
        if conn is None:
            return
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=200)
            declare_topology(ch)

            def on_message(ch, method, props, body):
                mid = body.decode(errors="replace")
                with stats.lock:
                    stats.deliveries += 1
                    if mid.startswith("p"):
                        stats.received.add(mid)
                    else:
                        stats.unknown.append(mid)
                ch.basic_ack(method.delivery_tag)

            for q in QUEUES:
                ch.basic_consume(q, on_message)
            while not drained.is_set():
                conn.process_data_events(time_limit=0.2)
        except (pika.exceptions.AMQPError, OSError) as e:
            if not drained.is_set():
                note_drop(broker, stats, "consumer %d (%s)" % (idx, type(e).__name__))
        finally:
            try:
                conn.close()
            except Exception:
                pass


def churn(broker, stats, stop):
    n = 0
    while not stop.is_set():
        conn = connect(broker, stats, "churn", stop)
        if conn is None:
            return
        try:
            ch = conn.channel()
            while not stop.is_set():
                n += 1
                q = "soak-churn-%d" % (n % 20)
                ch.queue_declare(q, auto_delete=False)
                ch.queue_bind(q, "amq.topic", "churn.#")
                ch.basic_publish("amq.topic", "churn.x", b"c")
                ch.queue_delete(q)
                stats.event("churn declare/delete cycles")
                time.sleep(0.01)
        except (pika.exceptions.AMQPError, OSError) as e:
            if not stop.is_set():
                note_drop(broker, stats, "churn (%s)" % type(e).__name__)
        finally:
            try:
                conn.close()
            except Exception:
                pass


VICTIM = r'''
import pika, sys, time
c = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=int(sys.argv[1])))
ch = c.channel()
ch.queue_declare("soak-victim", durable=False)
ch.basic_consume("soak-victim", lambda *a: None)
while True:
    ch.basic_publish("", "soak-victim", b"v")
    c.process_data_events(time_limit=0.01)
'''


def setup_plugin(broker, stats):
    """x-consistent-hash from the example plugin in the plugins folder, bound to every soak queue."""
    broker.plugin_ready = False
    wasm = REPO / "plugins/examples/consistent-hash/consistent-hash.wasm"
    if not wasm.is_file():
        stats.event("plugin episodes skipped (no example plugin)")
        return
    shutil.copy(wasm, broker.plugins_dir / "soak_hash.wasm")
    r = broker.ctl("enable", "soak_hash", tool="warren-plugins")
    if r.returncode != 0:
        print("soak: warren-plugins enable soak_hash failed: %s%s" % (r.stdout, r.stderr), file=sys.stderr)
        stats.event("plugin episodes skipped (enable failed)")
        return
    conn = pika.BlockingConnection(params(broker.port))
    ch = conn.channel()
    ch.exchange_declare(HASH_EXCHANGE, "x-consistent-hash", durable=True)
    declare_topology(ch)
    for q in QUEUES:
        ch.queue_bind(q, HASH_EXCHANGE, "1")
    conn.close()
    broker.plugin_ready = True


def chaos(broker, stats, stop, rng, disk_full_ok):
    has_mem = broker.ctl("set_vm_memory_high_watermark", "0.4").returncode == 0
    faults = ["kill9", "victim", "reload", "disk_alarm", "mem_alarm", "disk_full"]
    i = 0
    while not stop.wait(rng.uniform(2.0, 5.0)):
        fault = faults[i % len(faults)]
        i += 1
        if fault == "kill9":
            broker.kill9()
            broker.start(stats)
            broker.expected_down_until = time.monotonic() + 5
            stats.event("broker kill -9 + restart")
        elif fault == "victim":
            v = subprocess.Popen([sys.executable, "-c", VICTIM, str(broker.port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, 1.5))
            v.send_signal(signal.SIGKILL)
            v.wait()
            stats.event("client processes killed")
        elif fault == "reload":
            if broker.plugin_ready:
                target = broker.plugins_dir / "soak_hash.wasm"
                tmp = broker.plugins_dir / "soak_hash.wasm.tmp"
                shutil.copy(REPO / "plugins/examples/consistent-hash/consistent-hash.wasm", tmp)
                os.utime(tmp)
                os.replace(tmp, target)
                stats.event("plugin hot reloads")
        elif fault == "disk_alarm":
            if broker.ctl("set_disk_free_limit", "1000000GB").returncode == 0:
                time.sleep(rng.uniform(0.5, 2.0))
                broker.ctl("set_disk_free_limit", "1MB")
                stats.event("disk alarm episodes")
        elif fault == "mem_alarm":
            if has_mem and broker.ctl("set_vm_memory_high_watermark", "absolute", "1").returncode == 0:
                time.sleep(rng.uniform(0.5, 2.0))
                broker.ctl("set_vm_memory_high_watermark", "0.4")
                stats.event("memory alarm episodes")
            else:
                stats.event("memory alarm episodes skipped (no set_vm_memory_high_watermark)")
        elif fault == "disk_full":
            if disk_full_ok:
                fill = broker.data_dir / "soak-filler"
                try:
                    with open(fill, "wb") as f:
                        while True:
                            f.write(b"\0" * (1 << 20))
                            f.flush()
                except OSError:
                    pass
                time.sleep(rng.uniform(0.5, 2.0))
                fill.unlink()
                stats.event("disk full (ENOSPC) episodes")
            else:
                stats.event("disk full episodes skipped (no tmpfs)")


def queue_depths(broker):
    try:
        conn = pika.BlockingConnection(params(broker.port))
        ch = conn.channel()
        n = sum(ch.queue_declare(q, durable=True, passive=True).method.message_count for q in QUEUES)
        conn.close()
        return n
    except (pika.exceptions.AMQPError, OSError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--server", default=str(REPO / "target/debug/warren-server"))
    ap.add_argument("--publishers", type=int, default=3)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--max-stall", type=float, default=20.0, help="fail if no publish is confirmed for this long")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="warren-soak-"))
    data_dir = work / "data"
    data_dir.mkdir()
    disk_full_ok = False
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(data_dir)], capture_output=True)
        disk_full_ok = r.returncode == 0
    # The default 50 MB free-space limit would block publishers long before the tmpfs fills.
    (work / "warren.toml").write_text('[storage]\ndisk_free_limit = "1MB"\n')
    print("soak: %.1f min, seed %d, work dir %s, data on %s" % (a.minutes, a.seed, work, "tmpfs (256 MiB)" if disk_full_ok else "disk"))
    stats = Stats()
    broker = Broker(Path(a.server).resolve(), work, data_dir, free_port())
    broker.plugins_dir = data_dir / "plugins"
    broker.plugins_dir.mkdir(exist_ok=True)
    broker.plugin_ready = False
    broker.start(stats)
    setup_plugin(broker, stats)
    stop, drained = threading.Event(), threading.Event()
    threads = [threading.Thread(target=publisher, args=(i, broker, stats, stop), daemon=True) for i in range(a.publishers)]
    threads += [threading.Thread(target=consumer, args=(i, broker, stats, stop, drained), daemon=True) for i in range(a.consumers)]
    threads += [threading.Thread(target=churn, args=(broker, stats, stop), daemon=True)]
    chaos_stop = threading.Event()
    chaos_thread = threading.Thread(target=chaos, args=(broker, stats, chaos_stop, rng, disk_full_ok), daemon=True)
    for t in threads:
        t.start()
    chaos_thread.start()
    t0 = time.monotonic()
    last_count, last_progress, max_stall = 0, t0, 0.0
    try:
        while time.monotonic() - t0 < a.minutes * 60:
            time.sleep(1)
            now = time.monotonic()
            with stats.lock:
                count = len(stats.confirmed)
            if count > last_count:
                last_count, last_progress = count, now
            max_stall = max(max_stall, now - last_progress)
            if int(now - t0) % 5 == 0:
                with stats.lock:
                    print("soak: %4.0f s: %d confirmed, %d received, %s" % (now - t0, count, len(stats.received), stats.events), flush=True)
        chaos_stop.set()
        chaos_thread.join()
        stop.set()
        time.sleep(1)
        # Drain: consumers keep going until every soak queue is empty and stays so.
        deadline = time.monotonic() + 120
        empty_since = None
        while time.monotonic() < deadline:
            n = queue_depths(broker)
            if n == 0:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > 2:
                    break
            else:
                empty_since = None
            time.sleep(0.5)
        drained.set()
        for t in threads:
            t.join(10)
        final_depth = queue_depths(broker)
    finally:
        broker.stop()
        if disk_full_ok:
            subprocess.run(["umount", "-l", str(data_dir)])
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    lost = stats.confirmed - stats.received
    print("\n==== soak summary (%.1f min, seed %d) ====" % (a.minutes, a.seed))
    print("published (attempts)       %d" % stats.published)
    print("confirmed                  %d" % len(stats.confirmed))
    print("in doubt (conn lost)       %d" % stats.in_doubt)
    print("delivered (unique)         %d  (%d deliveries incl. redeliveries)" % (len(stats.received), stats.deliveries))
    print("confirmed but never delivered: %d" % len(lost))
    print("delivered but never published: %d" % len(stats.unknown))
    print("unexpected connection drops:   %d" % len(stats.unexpected_drops))
    print("messages left in queues:       %s" % final_depth)
    print("longest time without a confirm: %.1f s (limit %.0f s)" % (max_stall, a.max_stall))
    for k in sorted(stats.events):
        print("%-40s %d" % (k, stats.events[k]))
    failed = False
    if lost:
        print("FAIL: confirmed messages lost, e.g. %s" % sorted(lost)[:10])
        failed = True
    if stats.unknown:
        print("FAIL: unknown messages delivered, e.g. %s" % stats.unknown[:10])
        failed = True
    if stats.unexpected_drops:
        print("FAIL: connections dropped while the broker was up: %s" % stats.unexpected_drops[:10])
        failed = True
    if final_depth != 0:
        print("FAIL: queues not drained (%s left)" % final_depth)
        failed = True
    if max_stall > a.max_stall:
        print("FAIL: publishing stalled for %.1f s (a fault episode lasts at most 2 s plus a restart)" % max_stall)
        failed = True
    if not stats.confirmed:
        print("FAIL: nothing was confirmed")
        failed = True
    print("soak: %s" % ("FAILED" if failed else "passed"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
