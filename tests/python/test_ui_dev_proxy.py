"""scripts/ui-dev-proxy.py and the UI's files, without a broker or a browser.

The proxy must hand requests to the management API unchanged (an encoded vhost `%2F` stays
encoded, the body, Basic credentials and X-Reason reach it) and give the API's answer back as it
is (status, JSON, WWW-Authenticate); the UI must load nothing from outside its own folder.
"""

import http.client
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROXY = REPO_ROOT / "scripts" / "ui-dev-proxy.py"
UI_DIR = REPO_ROOT / "plugins" / "management-ui"


class FakeApi(http.server.BaseHTTPRequestHandler):
    """Records each request and answers 401 for /api/whoami, else 201 with a JSON echo."""
    seen = []

    def log_message(self, *args):
        pass

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        FakeApi.seen.append((self.command, self.path, dict(self.headers), body))
        if self.path == "/api/whoami":
            status, extra = 401, [("WWW-Authenticate", 'Basic realm="RabbitMQ Management"')]
            payload = {"error": "not_authorised", "reason": "Login failed"}
        else:
            status, extra, payload = 201, [], {"echo": body.decode()}
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in extra + [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = _answer


@pytest.fixture
def upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeApi.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def start_proxy(upstream_url):
    proc = subprocess.Popen([sys.executable, str(PROXY), "--upstream", upstream_url, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.match(r"listening on http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        pytest.fail(f"the proxy did not start: {line!r}")
    return proc, int(match.group(1))


@pytest.fixture
def proxy(upstream):
    proc, port = start_proxy(upstream)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_api_requests_pass_through_unchanged(proxy):
    body = json.dumps({"properties": {}, "routing_key": "k", "payload": "p", "payload_encoding": "string"})
    status, headers, data = request(proxy, "POST", "/api/exchanges/%2F/amq.default/publish?x=1", body,
                                    {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q=", "Content-Type": "application/json",
                                     "X-Reason": "Closed via management plugin", "Cookie": "not=forwarded"})
    assert status == 201
    assert json.loads(data) == {"echo": body}
    method, path, seen_headers, seen_body = FakeApi.seen[-1]
    assert (method, path, seen_body) == ("POST", "/api/exchanges/%2F/amq.default/publish?x=1", body.encode())
    assert seen_headers["Authorization"] == "Basic Z3Vlc3Q6Z3Vlc3Q="
    assert seen_headers["X-Reason"] == "Closed via management plugin"
    assert "Cookie" not in seen_headers

    status, _, _ = request(proxy, "DELETE", "/api/queues/%2F/q%2Fx/contents")
    assert status == 201 and FakeApi.seen[-1][:2] == ("DELETE", "/api/queues/%2F/q%2Fx/contents")


def test_api_errors_come_back_as_the_api_sent_them(proxy):
    status, headers, data = request(proxy, "GET", "/api/whoami", headers={"Authorization": "Basic eDp5"})
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'
    assert json.loads(data) == {"error": "not_authorised", "reason": "Login failed"}


def closed_port():
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_upstream_is_a_502_with_a_json_reason():
    proc, proxy_port = start_proxy(f"http://127.0.0.1:{closed_port()}")
    try:
        status, headers, data = request(proxy_port, "GET", "/api/overview")
        assert status == 502
        assert json.loads(data)["error"] == "bad_gateway"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_static_files_are_served_and_nothing_outside_the_ui_folder(proxy):
    status, headers, data = request(proxy, "GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert data == (UI_DIR / "index.html").read_bytes()
    assert headers["Content-Security-Policy"].startswith("default-src 'self';")
    status, headers, _ = request(proxy, "GET", "/app.js?v=1")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    for path in ("/../scripts/ui-dev-proxy.py", "/%2e%2e/README.md", "/nope.js"):
        assert request(proxy, "GET", path)[0] == 404
    assert request(proxy, "POST", "/index.html", b"x")[0] == 405


def test_the_ui_loads_only_its_own_files():
    """Works offline: no absolute URL anywhere, and every file index.html asks for exists."""
    files = sorted(p.name for p in UI_DIR.iterdir())
    assert files == ["admin.js", "app.css", "app.js", "charts.js", "index.html", "pages.js"]
    for name in files:
        text = (UI_DIR / name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{name} refers to another host"
        assert "@import" not in text and "url(" not in text, f"{name} loads a stylesheet resource"
    index = (UI_DIR / "index.html").read_text()
    wanted = re.findall(r'(?:src|href)="([^"#][^"]*)"', index)
    assert wanted == ["data:,", "app.css", "app.js", "charts.js", "pages.js", "admin.js"]
    for name in wanted[1:]:
        assert (UI_DIR / name).is_file()
