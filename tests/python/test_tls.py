"""pika over AMQPS: a warren-server with an [amqp.tls] listener (verify_peer), certificates made
at test time with the openssl command line tool.

- PLAIN login over TLS without a client certificate (fail_if_no_peer_cert = false);
- SASL EXTERNAL with a client certificate (pika's ExternalCredentials), user = the certificate's CN;
- a second server with fail_if_no_peer_cert = true refuses a client without a certificate and
  accepts one with.

Warren-only (starts its own servers); skipped with WARREN_TEST_URL.
"""

import os
import shutil
import ssl
import subprocess
import time

import pika
import pytest

from conftest import REPO_ROOT, _free_port, _port_open, _stop

pytestmark = pytest.mark.skipif(bool(os.environ.get("WARREN_TEST_URL")),
                                reason="starts its own warren-server with TLS")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca.pem, server.pem/.key (localhost, 127.0.0.1) and client.pem/.key (CN=tls-alice)."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command line tool")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=Warren test CA", cwd=d)
    # Extensions make X.509 v3 certificates (without any, openssl writes v1, which rustls refuses).
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, subj in (("server", "/CN=localhost"), ("client", "/O=Warren tests/CN=tls-alice")):
        ext = ["-extfile", f"{name}.ext"]
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subj, cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)
    return d


def _start(tmp, pki, fail_if_no_peer_cert):
    binary = os.environ.get("WARREN_SERVER_BIN", str(REPO_ROOT / "target/debug/warren-server"))
    port, tls_port = _free_port(), _free_port()
    (tmp / "data").mkdir()
    config = tmp / "warren.toml"
    config.write_text(f"""
[amqp]
bind = "127.0.0.1"
port = {port}
[amqp.tls]
certfile = "{pki / 'server.pem'}"
keyfile = "{pki / 'server.key'}"
cacertfile = "{pki / 'ca.pem'}"
verify = "verify_peer"
fail_if_no_peer_cert = {str(fail_if_no_peer_cert).lower()}
ssl_cert_login_from = "common_name"
[storage]
data_dir = "{tmp / 'data'}"
""")
    log = open(tmp / "warren-server.log", "wb")
    proc = subprocess.Popen([binary, "--config", str(config), "--amqps-port", str(tls_port)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.monotonic() + 20
    while not (_port_open(port) and _port_open(tls_port)):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            log.close()
            pytest.fail("warren-server did not start: " + (tmp / "warren-server.log").read_text(errors="replace"))
        time.sleep(0.05)
    ctl = [str(os.path.join(os.path.dirname(binary), "warrenctl")), "--data-dir", str(tmp / "data")]
    return proc, log, tls_port, ctl


@pytest.fixture
def server(tmp_path, pki):
    proc, log, tls_port, ctl = _start(tmp_path, pki, fail_if_no_peer_cert=False)
    yield tls_port, ctl
    _stop(proc)
    log.close()


def _ssl_options(pki, client_cert):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return pika.SSLOptions(ctx, "localhost")


def _params(port, pki, client_cert, credentials):
    return pika.ConnectionParameters(host="127.0.0.1", port=port, credentials=credentials,
                                     ssl_options=_ssl_options(pki, client_cert),
                                     connection_attempts=1, socket_timeout=5)


def _round_trip(conn, queue):
    ch = conn.channel()
    ch.queue_declare(queue, auto_delete=True)
    ch.basic_publish("", queue, b"over tls")
    method, _props, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"over tls"


def test_pika_plain_login_over_tls_without_client_certificate(server, pki):
    port, ctl = server
    conn = pika.BlockingConnection(_params(port, pki, False, pika.PlainCredentials("guest", "guest")))
    _round_trip(conn, "tls-plain")
    out = subprocess.run(ctl + ["list_connections", "user", "ssl", "ssl_protocol"], capture_output=True, text=True)
    assert "guest\ttrue\ttlsv1.3" in out.stdout, out
    conn.close()


def test_pika_external_login_with_client_certificate(server, pki):
    port, ctl = server
    subprocess.run(ctl + ["add_user", "tls-alice", "unused"], check=True, capture_output=True)
    subprocess.run(ctl + ["set_permissions", "tls-alice", ".*", ".*", ".*"], check=True, capture_output=True)
    conn = pika.BlockingConnection(_params(port, pki, True, pika.credentials.ExternalCredentials()))
    _round_trip(conn, "tls-external")
    out = subprocess.run(ctl + ["list_connections", "user", "peer_cert_subject"], capture_output=True, text=True)
    assert "tls-alice\tCN=tls-alice,O=Warren tests" in out.stdout, out
    conn.close()
    # Without a certificate EXTERNAL is refused (403 ACCESS_REFUSED).
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(_params(port, pki, False, pika.credentials.ExternalCredentials()))


def test_fail_if_no_peer_cert_refuses_a_client_without_certificate(tmp_path, pki):
    proc, log, port, _ctl = _start(tmp_path, pki, fail_if_no_peer_cert=True)
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            conn = pika.BlockingConnection(_params(port, pki, False, pika.PlainCredentials("guest", "guest")))
            # TLS 1.3: the server's refusal can arrive after the client's handshake completed.
            conn.channel()
        conn = pika.BlockingConnection(_params(port, pki, True, pika.PlainCredentials("guest", "guest")))
        _round_trip(conn, "tls-with-cert")
        conn.close()
    finally:
        _stop(proc)
        log.close()
