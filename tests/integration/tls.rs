//! AMQPS: the TLS listener (`[amqp.tls]`), client certificates (verify_peer,
//! fail_if_no_peer_cert), SASL EXTERNAL, certificate reload without dropping connections, and
//! configuration faults refused at start. Certificates are generated here, at test time (rcgen).
//! Warren-only: the reference node has no TLS listener.

use crate::common;
use common::*;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warren::config::{CertLoginFrom, Config, TlsConfig, TlsVerify};

/// A CA and what it signed, written as PEM files into a folder.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A certificate and its key, in PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).unwrap();
        Pki { ca, dir: dir.to_owned() }
    }

    fn ca_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    fn leaf(&self, sans: &[&str], cn: &str, org: Option<&str>) -> Leaf {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        // Subject in certificate order O, CN (RabbitMQ prints it last RDN first: "CN=..,O=..").
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }

    /// The server's certificate (for 127.0.0.1 and localhost), written to server.pem / server.key.
    fn server(&self) -> (PathBuf, PathBuf) {
        let l = self.leaf(&["localhost", "127.0.0.1"], "localhost", None);
        let (c, k) = (self.dir.join("server.pem"), self.dir.join("server.key"));
        std::fs::write(&c, &l.cert).unwrap();
        std::fs::write(&k, &l.key).unwrap();
        (c, k)
    }
}

fn tls_config(cert: &Path, key: &Path, ca: Option<&Path>, verify: TlsVerify, fail_if_no_peer_cert: bool) -> TlsConfig {
    toml::from_str::<TlsConfig>(&format!(
        "port = 0\ncertfile = {:?}\nkeyfile = {:?}\nverify = {:?}\nfail_if_no_peer_cert = {fail_if_no_peer_cert}\n{}",
        cert,
        key,
        match verify {
            TlsVerify::VerifyPeer => "verify_peer",
            TlsVerify::VerifyNone => "verify_none",
        },
        ca.map(|c| format!("cacertfile = {c:?}\n")).unwrap_or_default()
    ))
    .unwrap()
}

/// A broker with a TLS listener; its plain listener stays on unless `f` turns it off.
async fn start(dir: &Path, tls: TlsConfig, f: impl FnOnce(&mut Config)) -> warren::server::ServerHandle {
    let mut cfg = Config::for_tests(&dir.join("data"));
    cfg.amqp.tls = Some(tls);
    f(&mut cfg);
    timeout(warren::server::start(cfg)).await.expect("broker starts")
}

fn client_tls(ca_pem: &str, identity: Option<&Leaf>) -> OwnedTLSConfig {
    OwnedTLSConfig {
        identity: identity.map(|l| OwnedIdentity::PKCS8 { pem: l.cert.as_bytes().to_vec(), key: l.key.as_bytes().to_vec() }),
        cert_chain: Some(ca_pem.to_string()),
    }
}

async fn connect_tls(uri: &str, tls: OwnedTLSConfig) -> Result<Connection, lapin::Error> {
    tokio::time::timeout(
        WAIT,
        Connection::connect_with_config(uri, ConnectionProperties::default(), tls, lapin::runtime::default_runtime().unwrap()),
    )
    .await
    .expect("TLS connect timed out")
}

/// Publishes one message to a fresh queue and gets it back over `conn`.
async fn round_trip(conn: &Connection) {
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = uniq("tls");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions { auto_delete: false, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap();
    timeout(ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"over tls", BasicProperties::default()))
        .await
        .unwrap();
    let got = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().expect("message");
    assert_eq!(got.delivery.data, b"over tls");
}

async fn ctl(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "warrenctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn amqps_without_client_certificate_and_plain_listener_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let server = start(dir.path(), tls_config(&cert, &key, None, TlsVerify::VerifyNone, false), |_| {}).await;
    let tls_addr = server.amqps_addr.expect("TLS listener");
    assert_ne!(tls_addr, server.amqp_addr);
    let ca_pem = std::fs::read_to_string(pki.ca_file("ca")).unwrap();
    let conn = connect_tls(&format!("amqps://guest:guest@localhost:{}/%2f", tls_addr.port()), client_tls(&ca_pem, None))
        .await
        .expect("AMQPS connection with PLAIN");
    round_trip(&conn).await;
    // The plain listener keeps working beside it.
    let plain = timeout(Connection::connect(&format!("amqp://guest:guest@{}/%2f", server.amqp_addr), ConnectionProperties::default()))
        .await
        .unwrap();
    round_trip(&plain).await;
    // A client that does not trust the server's CA fails the TLS handshake.
    let other = Pki::new(dir.path(), "other-ca");
    let other_pem = std::fs::read_to_string(other.ca_file("other-ca")).unwrap();
    assert!(connect_tls(&format!("amqps://guest:guest@localhost:{}/%2f", tls_addr.port()), client_tls(&other_pem, None)).await.is_err());
    // The listing shows which connection is TLS.
    let listing = ctl(dir.path(), &["list_connections", "peer_port", "ssl", "ssl_protocol"]).await;
    let tls_rows: Vec<&str> = listing.lines().filter(|l| l.contains("\ttrue\t")).collect();
    assert_eq!(tls_rows.len(), 1, "{listing}");
    assert!(tls_rows[0].contains("tlsv1."), "{listing}");
    assert_eq!(listing.lines().filter(|l| l.contains("\tfalse\t")).count(), 1, "{listing}");
    let status = ctl(dir.path(), &["status"]).await;
    let line = format!("Interface: 127.0.0.1, port: {}, protocol: amqp/ssl, purpose: AMQP 0-9-1 over TLS", tls_addr.port());
    assert!(status.contains(&line), "{status}");
    conn.close(200, "bye".into()).await.unwrap();
    server.shutdown().await;
}

/// Many large messages each way over one TLS connection: frames cross TLS records, and the
/// writer must flush what the TLS session buffers after each batch.
#[tokio::test]
async fn bulk_transfer_over_tls_with_confirms() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let server = start(dir.path(), tls_config(&cert, &key, None, TlsVerify::VerifyNone, false), |_| {}).await;
    let ca_pem = std::fs::read_to_string(pki.ca_file("ca")).unwrap();
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", server.amqps_addr.unwrap().port());
    let conn = connect_tls(&uri, client_tls(&ca_pem, None)).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(lapin::options::ConfirmSelectOptions::default())).await.unwrap();
    let q = uniq("tls-bulk");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    const N: usize = 200;
    let mut confirms = Vec::new();
    for i in 0..N {
        let body = vec![(i % 251) as u8; 100_000 + i];
        confirms.push(
            timeout(ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), &body, BasicProperties::default()))
                .await
                .unwrap(),
        );
    }
    for c in confirms {
        assert!(timeout(c).await.unwrap().is_ack());
    }
    let mut consumer = timeout(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        lapin::options::BasicConsumeOptions { no_ack: true, ..Default::default() },
        FieldTable::default(),
    ))
    .await
    .unwrap();
    for i in 0..N {
        let d = timeout(consumer.next()).await.expect("delivery").expect("ok");
        assert_eq!(d.data.len(), 100_000 + i);
        assert!(d.data.iter().all(|b| *b == (i % 251) as u8));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn verify_peer_with_fail_if_no_peer_cert_refuses_a_client_without_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let ca = pki.ca_file("ca");
    let server = start(dir.path(), tls_config(&cert, &key, Some(&ca), TlsVerify::VerifyPeer, true), |c| c.amqp.tcp_listener = false).await;
    let port = server.amqps_addr.unwrap().port();
    // The plain listener is off: the only address is the TLS one.
    assert_eq!(server.amqp_addr, server.amqps_addr.unwrap());
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let uri = format!("amqps://guest:guest@localhost:{port}/%2f");
    assert!(connect_tls(&uri, client_tls(&ca_pem, None)).await.is_err(), "no client certificate must be refused");
    // A certificate from another CA is refused too.
    let other = Pki::new(dir.path(), "other-ca");
    let stranger = other.leaf(&[], "guest", None);
    assert!(connect_tls(&uri, client_tls(&ca_pem, Some(&stranger))).await.is_err(), "a certificate of an unknown CA must be refused");
    // One signed by the configured CA gets in (and then logs in with PLAIN).
    let client = pki.leaf(&[], "someone", None);
    let conn = connect_tls(&uri, client_tls(&ca_pem, Some(&client))).await.expect("verified client");
    round_trip(&conn).await;
    server.shutdown().await;
}

#[tokio::test]
async fn sasl_external_logs_in_with_the_certificate_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let ca = pki.ca_file("ca");
    let mut tls = tls_config(&cert, &key, Some(&ca), TlsVerify::VerifyPeer, false);
    tls.ssl_cert_login_from = CertLoginFrom::CommonName;
    let server = start(dir.path(), tls, |_| {}).await;
    let port = server.amqps_addr.unwrap().port();
    ctl(dir.path(), &["add_user", "alice", "unused-password"]).await;
    ctl(dir.path(), &["set_permissions", "-p", "/", "alice", ".*", ".*", ".*"]).await;
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let uri = format!("amqps://localhost:{port}/%2f?auth_mechanism=external");
    let alice = pki.leaf(&[], "alice", Some("Warren tests"));
    let conn = connect_tls(&uri, client_tls(&ca_pem, Some(&alice))).await.expect("EXTERNAL login as alice");
    round_trip(&conn).await;
    let users = ctl(dir.path(), &["list_connections", "user", "ssl", "peer_cert_subject"]).await;
    assert!(users.contains("alice\ttrue\tCN=alice,O=Warren tests"), "{users}");
    // The cipher suite as Erlang's ssl names its parts, and the certificate's issuer and
    // validity, as rabbitmqctl lists them.
    let tls = ctl(dir.path(), &["list_connections", "-s", "user", "ssl_key_exchange", "ssl_cipher", "ssl_hash", "peer_cert_issuer", "peer_cert_validity"]).await;
    let row: Vec<&str> = tls.lines().find(|l| l.starts_with("alice\t")).expect("alice's connection").split('\t').collect();
    assert_eq!((row[1], row[3]), ("any", "aead"), "{tls}");
    assert!(["aes_256_gcm", "aes_128_gcm", "chacha20_poly1305"].contains(&row[2]), "{tls}");
    assert!(row[4].starts_with("CN=") && !row[4].contains("alice"), "the CA: {tls}");
    let (from, to) = row[5].split_once(" - ").expect("validity");
    assert!(from.len() == 20 && from.ends_with('Z') && &from[10..11] == "T" && to.len() == 20 && from < to, "{tls}");
    // A certificate whose CN names no user is refused.
    let nobody = pki.leaf(&[], "nobody", None);
    assert!(connect_tls(&uri, client_tls(&ca_pem, Some(&nobody))).await.is_err());
    // No certificate: EXTERNAL is still offered on TLS and refused with RabbitMQ's close.
    let mut raw = tls_raw(port, &ca_pem).await;
    let (mechanisms, refused) = external_without_certificate(&mut raw).await;
    assert_eq!(mechanisms, "PLAIN AMQPLAIN EXTERNAL");
    assert_eq!(refused, (403, "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.".to_string()));
    // The plain listener does not offer EXTERNAL.
    let mut plain = RawClient::connect(server.amqp_addr).await;
    plain.send_header().await;
    match plain.expect_method().await {
        (0, amq_protocol::protocol::AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::Start(s))) => {
            assert_eq!(s.mechanisms.to_string(), "PLAIN AMQPLAIN")
        }
        other => panic!("expected connection.start, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn external_by_distinguished_name_and_refused_without_verify_peer() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let ca = pki.ca_file("ca");
    // Default ssl_cert_login_from: the subject DN, as RabbitMQ.
    let server = start(dir.path(), tls_config(&cert, &key, Some(&ca), TlsVerify::VerifyPeer, false), |_| {}).await;
    let port = server.amqps_addr.unwrap().port();
    ctl(dir.path(), &["add_user", "CN=bob,O=Warren tests", "pw"]).await;
    ctl(dir.path(), &["set_permissions", "-p", "/", "CN=bob,O=Warren tests", ".*", ".*", ".*"]).await;
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let uri = format!("amqps://localhost:{port}/%2f?auth_mechanism=external");
    let bob = pki.leaf(&[], "bob", Some("Warren tests"));
    let conn = connect_tls(&uri, client_tls(&ca_pem, Some(&bob))).await.expect("EXTERNAL login by DN");
    round_trip(&conn).await;
    server.shutdown().await;

    // verify_none: nobody checked the certificate, so its name is not trusted ("unsafe").
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let server = start(dir.path(), tls_config(&cert, &key, None, TlsVerify::VerifyNone, false), |_| {}).await;
    let port = server.amqps_addr.unwrap().port();
    let ca_pem = std::fs::read_to_string(pki.ca_file("ca")).unwrap();
    let guest_cert = pki.leaf(&[], "guest", None);
    let uri = format!("amqps://localhost:{port}/%2f?auth_mechanism=external");
    assert!(connect_tls(&uri, client_tls(&ca_pem, Some(&guest_cert))).await.is_err(), "EXTERNAL without verify_peer must be refused");
    server.shutdown().await;
}

#[tokio::test]
async fn certificate_reload_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let server = start(dir.path(), tls_config(&cert, &key, None, TlsVerify::VerifyNone, false), |_| {}).await;
    let port = server.amqps_addr.unwrap().port();
    let ca_pem = std::fs::read_to_string(pki.ca_file("ca")).unwrap();
    let uri = format!("amqps://guest:guest@localhost:{port}/%2f");
    let old = connect_tls(&uri, client_tls(&ca_pem, None)).await.expect("first connection");
    round_trip(&old).await;

    // A new certificate from a new CA replaces the files (written in place, key first).
    let pki2 = Pki::new(dir.path(), "ca2");
    let leaf = pki2.leaf(&["localhost", "127.0.0.1"], "localhost", None);
    std::fs::write(&key, &leaf.key).unwrap();
    std::fs::write(&cert, &leaf.cert).unwrap();
    let ca2_pem = std::fs::read_to_string(pki2.ca_file("ca2")).unwrap();
    let tls = server.tls.clone().unwrap();
    let reloaded = async {
        while tls.reloads() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, reloaded).await.expect("the watcher reloads the changed files");
    // New connections get the new certificate: only clients trusting the new CA get in.
    let new = connect_tls(&uri, client_tls(&ca2_pem, None)).await.expect("connection with the new certificate");
    round_trip(&new).await;
    assert!(connect_tls(&uri, client_tls(&ca_pem, None)).await.is_err(), "the old certificate is no longer served");
    // The connection made before the reload is still open and works.
    assert!(old.status().connected());
    round_trip(&old).await;

    // A broken update (a key that does not match) is refused; the working set stays.
    let stray = pki2.leaf(&["localhost"], "localhost", None);
    std::fs::write(&key, &stray.key).unwrap();
    assert!(tls.reload().unwrap_err().contains("does not match"), "mismatched key must be refused");
    let again = connect_tls(&uri, client_tls(&ca2_pem, None)).await.expect("still served after a bad update");
    round_trip(&again).await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_tls_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let ca = pki.ca_file("ca");
    let try_start = |tls: TlsConfig, tcp: bool| {
        let data = dir.path().join("data");
        async move {
            let mut cfg = Config::for_tests(&data);
            cfg.amqp.tls = Some(tls);
            cfg.amqp.tcp_listener = tcp;
            match warren::server::start(cfg).await {
                Ok(s) => {
                    s.shutdown().await;
                    panic!("the broker started");
                }
                Err(e) => e.to_string(),
            }
        }
    };
    let missing = dir.path().join("missing.pem");
    let e = try_start(tls_config(&missing, &key, None, TlsVerify::VerifyNone, false), true).await;
    assert!(e.contains("certfile") && e.contains("missing.pem") && e.contains("No such file"), "{e}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
    let e = try_start(tls_config(&garbage, &key, None, TlsVerify::VerifyNone, false), true).await;
    assert!(e.contains("certfile") && e.contains("garbage.pem"), "{e}");
    let e = try_start(tls_config(&cert, &garbage, None, TlsVerify::VerifyNone, false), true).await;
    assert!(e.contains("keyfile") && e.contains("garbage.pem"), "{e}");
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let e = try_start(tls_config(&cert, &other_key, None, TlsVerify::VerifyNone, false), true).await;
    assert!(e.contains("does not match"), "{e}");
    let e = try_start(tls_config(&cert, &key, None, TlsVerify::VerifyPeer, false), true).await;
    assert!(e.contains("needs cacertfile"), "{e}");
    let e = try_start(tls_config(&cert, &key, Some(&ca), TlsVerify::VerifyNone, true), true).await;
    assert!(e.contains("fail_if_no_peer_cert"), "{e}");
    // No listener at all.
    let mut cfg = Config::for_tests(&dir.path().join("data"));
    cfg.amqp.tcp_listener = false;
    let e = warren::server::start(cfg).await.err().expect("refused").to_string();
    assert!(e.contains("tcp_listener = false needs an [amqp.tls] listener"), "{e}");
    // An unknown SASL mechanism.
    let mut cfg = Config::for_tests(&dir.path().join("data"));
    cfg.auth.mechanisms.push("CRAM-MD5".into());
    let e = warren::server::start(cfg).await.err().expect("refused").to_string();
    assert!(e.contains("unknown SASL mechanism 'CRAM-MD5'"), "{e}");
}

/// A TLS client stream (no client certificate) that trusts `ca_pem`.
async fn tls_raw(port: u16, ca_pem: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    timeout(tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp)).await.expect("TLS handshake")
}

/// Sends the protocol header, reads connection.start's mechanisms, answers EXTERNAL (with
/// `authentication_failure_close`) and returns the mechanisms and the close's code and text.
async fn external_without_certificate(s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> (String, (u16, String)) {
    use amq_protocol::frame::AMQPFrame;
    use amq_protocol::protocol::{AMQPClass, connection};
    use amq_protocol::types::{AMQPValue, FieldTable, LongString};
    use tokio::io::AsyncWriteExt;
    s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut buf = Vec::new();
    let mechanisms = match next_frame(s, &mut buf).await {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(st))) => st.mechanisms.to_string(),
        f => panic!("expected connection.start, got {f:?}"),
    };
    let mut caps = FieldTable::default();
    caps.insert("authentication_failure_close".into(), AMQPValue::Boolean(true));
    let mut props = FieldTable::default();
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    let start_ok = AMQPFrame::Method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: props,
            mechanism: "EXTERNAL".into(),
            response: LongString::from(""),
            locale: "en_US".into(),
        })),
    );
    s.write_all(&encode(&start_ok)).await.unwrap();
    match next_frame(s, &mut buf).await {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => (mechanisms, (c.reply_code, c.reply_text.to_string())),
        f => panic!("expected connection.close, got {f:?}"),
    }
}

async fn next_frame(s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, buf: &mut Vec<u8>) -> amq_protocol::frame::AMQPFrame {
    use tokio::io::AsyncReadExt;
    loop {
        if let Ok((rest, f)) = amq_protocol::frame::parse_frame(buf.as_slice()) {
            let used = buf.len() - rest.len();
            buf.drain(..used);
            return f;
        }
        let mut chunk = [0u8; 4096];
        let n = timeout(s.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `warrenctl stop_app` closes the TLS listener beside the plain one; `start_app` binds both
/// again on the same ports with the same certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_app_binds_the_tls_listener_again() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.server();
    let server = start(dir.path(), tls_config(&cert, &key, None, TlsVerify::VerifyNone, false), |_| {}).await;
    let tls_addr = server.amqps_addr.expect("TLS listener");
    let ca_pem = std::fs::read_to_string(pki.ca_file("ca")).unwrap();
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", tls_addr.port());
    let conn = connect_tls(&uri, client_tls(&ca_pem, None)).await.expect("AMQPS connection");
    round_trip(&conn).await;
    ctl(dir.path(), &["stop_app"]).await;
    assert!(std::net::TcpStream::connect(tls_addr).is_err(), "the TLS listener is closed");
    assert!(std::net::TcpStream::connect(server.amqp_addr).is_err(), "the plain listener is closed");
    ctl(dir.path(), &["start_app"]).await;
    let conn = connect_tls(&uri, client_tls(&ca_pem, None)).await.expect("AMQPS connection after start_app");
    round_trip(&conn).await;
    let status = ctl(dir.path(), &["status"]).await;
    let line = format!("Interface: 127.0.0.1, port: {}, protocol: amqp/ssl, purpose: AMQP 0-9-1 over TLS", tls_addr.port());
    assert!(status.contains(&line), "{status}");
    conn.close(200, "bye".into()).await.unwrap();
    server.shutdown().await;
}
