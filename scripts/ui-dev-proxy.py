#!/usr/bin/env python3
"""Development server for the management web UI (plugins/management-ui/).

Serves the UI's static files at / and forwards every /api/... request (method, path, query,
headers, body) to an upstream management HTTP API, so the UI runs same-origin against any
implementation of RabbitMQ's management API: the reference RabbitMQ 3.10 node or Warren's
management plugin.

    scripts/ui-dev-proxy.py --upstream http://127.0.0.1:15673 --port 15680
    # then open http://127.0.0.1:15680/ and log in (guest / guest)

The files are read from disk on every request, so an edit shows after a browser reload.
--port 0 picks a free port; the chosen address is printed as `listening on http://HOST:PORT/`
(the browser test waits for that line). Standard library only.
"""

import argparse
import http.client
import http.server
import mimetypes
import sys
import urllib.parse
from pathlib import Path

UI_DIR = Path(__file__).resolve().parent.parent / "plugins" / "management-ui"
# Request headers passed upstream; hop-by-hop ones (Connection, Transfer-Encoding, ...) are not.
FORWARD_REQUEST = ("authorization", "content-type", "accept", "x-reason")
# The static files are served with a strict Content-Security-Policy, so every run in a browser
# (the browser tests included) proves the UI loads nothing from elsewhere and needs no inline
# script or style; the management plugin can send the same header.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
# Response headers passed back to the browser.
FORWARD_RESPONSE = ("content-type", "www-authenticate", "content-disposition", "location",
                    "cache-control")


def make_handler(upstream, ui_dir):
    up = urllib.parse.urlsplit(upstream)
    if up.scheme != "http" or not up.hostname:
        raise SystemExit(f"--upstream must be http://HOST:PORT, not {upstream!r}")
    base_path = up.path.rstrip("/")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "warren-ui-dev-proxy"

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

        def _send(self, status, headers, body):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _proxy(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARD_REQUEST}
            conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=60)
            try:
                conn.request(self.command, base_path + self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                kept = [(k, v) for k, v in resp.getheaders() if k.lower() in FORWARD_RESPONSE]
                self._send(resp.status, kept, data)
            except OSError as e:
                msg = f'{{"error":"bad_gateway","reason":"upstream {upstream}: {e}"}}'.encode()
                self._send(502, [("Content-Type", "application/json")], msg)
            finally:
                conn.close()

        def _static(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/":
                path = "/index.html"
            target = (ui_dir / path.lstrip("/")).resolve()
            if ui_dir not in target.parents or not target.is_file():
                self._send(404, [("Content-Type", "text/plain")], b"Not Found\n")
                return
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype.endswith("javascript"):
                ctype += "; charset=utf-8"
            self._send(200, [("Content-Type", ctype), ("Cache-Control", "no-cache"),
                             ("Content-Security-Policy", CSP)], target.read_bytes())

        def _dispatch(self):
            if self.path == "/api" or self.path.startswith(("/api/", "/api?")):
                self._proxy()
            elif self.command in ("GET", "HEAD"):
                self._static()
            else:
                self._send(405, [("Content-Type", "text/plain")], b"Method Not Allowed\n")

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", default="http://127.0.0.1:15672",
                        help="management HTTP API to forward /api/ to (default %(default)s)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=15680, help="port to listen on, 0 for any free one (default %(default)s)")
    parser.add_argument("--ui-dir", type=Path, default=UI_DIR, help="the UI's files (default %(default)s)")
    args = parser.parse_args()
    ui_dir = args.ui_dir.resolve()
    server = http.server.ThreadingHTTPServer((args.bind, args.port), make_handler(args.upstream, ui_dir))
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}/ (UI from {ui_dir}, /api/ -> {args.upstream})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
