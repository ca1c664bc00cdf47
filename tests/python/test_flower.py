"""Flower (celery's monitoring UI, pinned in scripts/test.sh's venv) reads the queues of its
broker page and of `/api/queues/length` from the management API (`--broker_api`,
`GET /api/queues/{vhost}`). With a celery worker holding 5 countdown tasks (unacknowledged in
the worker), Flower must show the worker's queue with messages 5, unacked 5, ready 0 and
1 consumer — counted by the broker, read through the management API by Flower unchanged.
Runs against the suite's warren-server (management enabled) or, with WARREN_TEST_URL, the
reference RabbitMQ and its management API (WARREN_TEST_HTTP_URL)."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from urllib.parse import urlparse

import pytest

pytest.importorskip("flower")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _until(what, check, deadline_s, logs):
    """Polls `check()` until it returns a true value (Flower asks its workers every few seconds)."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:  # Flower not listening yet
            last = e
        time.sleep(0.5)
    pytest.fail(f"{what}; last: {last!r}\n" + "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs))


def test_flower_shows_the_queue_counts_read_from_the_management_api(broker_url, management_url, names, tmp_path):
    queue = names("flower")
    (tmp_path / "flower_tasks.py").write_text(textwrap.dedent(f"""
        from celery import Celery
        app = Celery("flower_tasks", broker={broker_url.replace("amqp://", "pyamqp://")!r})
        app.conf.task_default_queue = {queue!r}
        app.conf.broker_connection_retry_on_startup = True

        @app.task
        def nothing():
            return None
    """))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), FLOWER_UNAUTHENTICATED_API="true")
    worker_log, flower_log = tmp_path / "worker.log", tmp_path / "flower.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "flower_tasks", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "-Q", queue, "--loglevel=INFO"],
        cwd=tmp_path, env=env, stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT)
    port = _free_port()
    api = urlparse(management_url)
    broker_api = f"http://guest:guest@{api.hostname}:{api.port}/api/"
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "flower_tasks", "flower", f"--port={port}", "--address=127.0.0.1",
         f"--broker_api={broker_api}", "--inspect_timeout=3000"],
        cwd=tmp_path, env=env, stdout=open(flower_log, "wb"), stderr=subprocess.STDOUT)
    sys.path.insert(0, str(tmp_path))
    try:
        import flower_tasks as tasks
        # Five tasks that wait 10 minutes in the worker: taken, not acknowledged.
        for _ in range(5):
            tasks.nothing.apply_async(countdown=600)
        base = f"http://127.0.0.1:{port}"
        logs = [worker_log, flower_log]

        def lengths():
            assert worker.poll() is None and flower.poll() is None, "a process exited"
            active = json.loads(_get(base + "/api/queues/length"))["active_queues"]
            mine = [q for q in active if q["name"] == queue]
            return mine[0] if mine and mine[0].get("messages_unacknowledged") == 5 else None

        q = _until("Flower's /api/queues/length never showed the queue with 5 unacked", lengths, 90, logs)
        assert (q["messages"], q["messages_ready"], q["messages_unacknowledged"], q["consumers"]) == (5, 0, 5, 1), q

        # The broker page shows the same row (name, messages, unacked, ready, consumers).
        page = _get(base + "/broker")
        row = re.search(r"<tr id=\"[^\"]*\">\s*<td>" + re.escape(queue) + r"</td>(.*?)</tr>", page, re.S)
        assert row, page[-3000:]
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
        # messages, unacked, ready, consumers (then idle_since)
        assert cells[:4] == ["5", "5", "0", "1"], cells
    finally:
        for p in (flower, worker):
            p.terminate()
        for p in (flower, worker):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        import pika
        conn = pika.BlockingConnection(pika.URLParameters(broker_url))
        try:
            conn.channel().queue_delete(queue)
        finally:
            conn.close()
