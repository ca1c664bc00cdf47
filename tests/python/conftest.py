"""Fixtures for the pika compatibility suite.

If WARREN_TEST_URL is set (for example amqp://guest:guest@127.0.0.1:5673/%2f for the
reference RabbitMQ node), every test runs against that broker. Otherwise one
warren-server (WARREN_SERVER_BIN, default <repo>/target/debug/warren-server) is started
for the whole session on a free loopback port with a temporary data directory.

Tests never share queue or exchange names: each takes its own prefix from `names`.

`broker_ctl` runs the broker's control CLI: warrenctl against the session's warren-server, or,
with WARREN_TEST_URL, the command in WARREN_TEST_CTL (e.g. `rabbitmqctl -n ref@localhost`);
tests that need it are skipped when neither is available.
"""

import os
import shlex
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pika
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
# The session's warren-server: its binary and data directory (empty with WARREN_TEST_URL).
_SERVER = {}


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start_warren(tmp_dir):
    binary = Path(os.environ.get("WARREN_SERVER_BIN", REPO_ROOT / "target/debug/warren-server"))
    if not binary.is_file():
        pytest.exit(f"warren-server not found at {binary}: run `cargo build --bins` "
                    "or set WARREN_SERVER_BIN / WARREN_TEST_URL", returncode=2)
    port = _free_port()
    http_port = _free_port()
    prometheus_port = _free_port()
    data_dir = tmp_dir / "data"
    data_dir.mkdir()
    # The prometheus listener has no flag: a config file moves it off the shared 15692.
    config = tmp_dir / "warren.toml"
    config.write_text(f'[prometheus]\nbind = "127.0.0.1"\nport = {prometheus_port}\n')
    log_path = tmp_dir / "warren-server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(binary), "--config", str(config), "--amqp-port", str(port), "--bind", "127.0.0.1",
         "--data-dir", str(data_dir), "--http-port", str(http_port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_dir)
    deadline = time.monotonic() + START_TIMEOUT
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = (f"exited with status {proc.returncode}" if proc.poll() is not None
                   else f"did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT:.0f} s")
            _stop(proc)
            log.close()
            output = log_path.read_text(errors="replace")
            pytest.exit(f"warren-server {why}. Its output:\n{output}", returncode=3)
        time.sleep(0.05)
    _SERVER.update(binary=binary, data_dir=data_dir, http_port=http_port, prometheus_port=prometheus_port)
    return proc, log, port


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory):
    url = os.environ.get("WARREN_TEST_URL")
    if url:
        yield url
        return
    proc, log, port = _start_warren(tmp_path_factory.mktemp("warren"))
    try:
        yield f"amqp://guest:guest@127.0.0.1:{port}/%2f"
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def connect(broker_url):
    """Factory for BlockingConnections that are closed when the test ends.

    Connections used from another thread must be opened by that thread's code and
    closed there too; this factory is for connections used by the test thread.
    """
    opened = []

    def open_connection():
        conn = pika.BlockingConnection(pika.URLParameters(broker_url))
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        if conn.is_open:
            try:
                conn.close()
            except Exception:  # a broken connection is already gone
                pass


@pytest.fixture
def channel(connect):
    return connect().channel()


@pytest.fixture
def names(request):
    """names('queue') -> 'warren-test.<test>.<random>.queue', unique per test."""
    prefix = f"warren-test.{request.node.name[:60]}.{uuid.uuid4().hex[:8]}"

    def make(suffix):
        return f"{prefix}.{suffix}"

    return make


@pytest.fixture(scope="session")
def management_url(broker_url):
    """The management HTTP API's base URL: the session's warren-server with warren_management
    enabled through `warren-plugins enable rabbitmq_management` (on its --http-port), or, with
    WARREN_TEST_URL, WARREN_TEST_HTTP_URL (default http://127.0.0.1:15673, the reference node)."""
    if os.environ.get("WARREN_TEST_URL"):
        return os.environ.get("WARREN_TEST_HTTP_URL", "http://127.0.0.1:15673")
    return _management_url()


def _management_url():
    """Enables the management plugin on the session's warren-server (idempotent) and returns its URL."""
    plugins = _SERVER["binary"].with_name("warren-plugins")
    r = subprocess.run([str(plugins), "--data-dir", str(_SERVER["data_dir"]), "enable", "rabbitmq_management"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return f"http://127.0.0.1:{_SERVER['http_port']}"


@pytest.fixture(scope="session")
def prometheus_url(broker_url):
    """The prometheus plugin's base URL: the session's warren-server with warren_prometheus
    enabled through `warren-plugins enable rabbitmq_prometheus`, or, with WARREN_TEST_URL,
    WARREN_TEST_PROM_URL (default http://127.0.0.1:15693, the reference node)."""
    if os.environ.get("WARREN_TEST_URL"):
        return os.environ.get("WARREN_TEST_PROM_URL", "http://127.0.0.1:15693")
    plugins = _SERVER["binary"].with_name("warren-plugins")
    r = subprocess.run([str(plugins), "--data-dir", str(_SERVER["data_dir"]), "enable", "rabbitmq_prometheus"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return f"http://127.0.0.1:{_SERVER['prometheus_port']}"


@pytest.fixture
def broker_ctl(broker_url):
    """broker_ctl(*args) runs warrenctl (or WARREN_TEST_CTL) and returns its CompletedProcess."""
    if os.environ.get("WARREN_TEST_URL"):
        ctl = os.environ.get("WARREN_TEST_CTL")
        if not ctl:
            pytest.skip("needs WARREN_TEST_CTL (the broker's control command) with WARREN_TEST_URL")
        base = shlex.split(ctl)
    else:
        base = [str(_SERVER["binary"].with_name("warrenctl")), "--data-dir", str(_SERVER["data_dir"])]

    def run(*args):
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture(scope="module")
def browser(tmp_path_factory, broker_url):
    """Headless Chromium for the web UI's tests (tests/python/ui_browser.py), one per module, on
    the suite's own management UI unless WARREN_MGMT_URL names another."""
    import ui_browser
    if not os.environ.get("WARREN_MGMT_URL") and not os.environ.get("WARREN_TEST_URL"):
        ui_browser.use_base_url(_management_url())
    driver = ui_browser.start_chromium(tmp_path_factory.mktemp("ui-downloads"))
    try:
        yield driver
    finally:
        driver.quit()
