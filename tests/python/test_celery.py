"""Celery (kombu over py-amqp) against the broker: an immediate task is not held up behind tasks
waiting for their countdown/ETA. Celery keeps ETA tasks unacknowledged in the worker and raises
the channel's prefetch for each; that only works when kombu applies RabbitMQ's semantics of
basic.qos (global = the channel's limit), which it does when the server says it is RabbitMQ
3.3 or later. Warren implements those semantics and advertises them (see docs/ARCHITECTURE.md,
"Server properties")."""

import os
import subprocess
import sys
import textwrap
import time

import pika

COUNTDOWN = 30  # seconds the delayed tasks wait in the worker


def _server_properties(broker_url):
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return conn._impl.server_properties
    finally:
        conn.close()


def test_server_properties_make_kombu_use_rabbitmq_qos_semantics(broker_url):
    from kombu import Connection

    with Connection(broker_url.replace("amqp://", "pyamqp://")) as c:
        c.connect()
        assert c.transport.qos_semantics_matches_spec(c.connection) is False
    props = _server_properties(broker_url)
    assert props["product"] in ("RabbitMQ", b"RabbitMQ")


def test_eta_tasks_do_not_delay_an_immediate_task(broker_url, names, tmp_path):
    queue = names("celery")
    log = tmp_path / "done.log"
    (tmp_path / "tasks.py").write_text(textwrap.dedent(f"""
        import time
        from celery import Celery
        app = Celery("tasks", broker={broker_url!r})
        app.conf.task_default_queue = {queue!r}
        app.conf.broker_connection_retry_on_startup = True
        app.conf.task_acks_late = False

        @app.task
        def record(name):
            with open({str(log)!r}, "a") as f:
                f.write("%s %f\\n" % (name, time.time()))
    """))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", queue, "--loglevel=INFO"],
        cwd=tmp_path, env=env, stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT)
    sys.path.insert(0, str(tmp_path))
    try:
        import tasks

        def done():
            return log.read_text().split("\n") if log.exists() else []

        # The worker is up once a first task has run.
        tasks.record.delay("ready")
        deadline = time.monotonic() + 60
        while not any(line.startswith("ready") for line in done()):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the celery worker did not start: " + (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        for i in range(4):
            tasks.record.apply_async((f"delayed{i}",), countdown=COUNTDOWN)
        time.sleep(1)  # the worker has taken the delayed tasks
        sent = time.time()
        tasks.record.delay("now")
        deadline = time.monotonic() + COUNTDOWN - 5
        while not any(line.startswith("now") for line in done()):
            assert time.monotonic() < deadline, (
                "the immediate task waited behind the ETA tasks: " + (tmp_path / "worker.log").read_text()[-3000:])
            time.sleep(0.05)
        finished = float(next(line for line in done() if line.startswith("now")).split()[1])
        assert not any(line.startswith("delayed") for line in done())
        print("immediate task done %.3f s after it was sent" % (finished - sent))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tasks", None)
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
