//! AMQPS (`[amqp.tls]`): the TLS listener's rustls configuration, its reload when the
//! certificate files change, and the user name SASL EXTERNAL takes from a client certificate
//! (RabbitMQ's `ssl_options` and `rabbitmq_auth_mechanism_ssl`).
//!
//! The files are read once at start, where any fault (missing file, bad PEM, a key that does not
//! match the certificate, verify_peer without a CA) stops the broker with a message naming the
//! key and file. Afterwards a watcher reloads them when they change on disk: new connections get
//! the new certificate, established ones keep their session, and a faulty new set is logged and
//! ignored (the previous one stays in use).

use crate::config::{CertLoginFrom, SanType, TlsConfig, TlsVerify};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};
use x509_parser::prelude::*;

/// The TLS listener's current configuration, swapped when the files change.
pub struct Tls {
    pub config: TlsConfig,
    current: ArcSwap<ServerConfig>,
    /// Times the files were reloaded successfully since start.
    reloads: std::sync::atomic::AtomicU64,
    watcher: parking_lot::Mutex<Option<notify::RecommendedWatcher>>,
}

/// What the TLS layer learnt about one connection.
#[derive(Debug, Clone)]
pub struct PeerTls {
    /// "TLSv1.3" / "TLSv1.2" (RabbitMQ's `ssl_protocol` names).
    pub protocol: String,
    /// The negotiated cipher suite as RabbitMQ (Erlang's ssl) names its parts: `ssl_cipher`
    /// ("aes_256_gcm"), `ssl_key_exchange` ("any" in TLS 1.3, "ecdhe_rsa", ...), `ssl_hash`
    /// ("aead", or the MAC's hash).
    pub cipher: String,
    pub key_exchange: String,
    pub hash: String,
    /// The user name SASL EXTERNAL takes from the client certificate, or why there is none
    /// (RabbitMQ's texts: "no peer certificate", "no name found", "TLS configuration is unsafe").
    pub login: Result<String, &'static str>,
    /// The client certificate's subject (RFC 4514, as RabbitMQ prints it), if one was sent.
    pub peer_cert_subject: Option<String>,
    /// Its issuer (the same form) and validity ("2024-01-01T00:00:00Z - 2025-01-01T00:00:00Z").
    pub peer_cert_issuer: Option<String>,
    pub peer_cert_validity: Option<String>,
}

/// A rustls suite name (lower case, "tls13_aes_256_gcm_sha384",
/// "tls_ecdhe_rsa_with_aes_128_gcm_sha256") as Erlang's ssl splits it: (key exchange, cipher,
/// hash).
pub fn suite_parts(suite: &str) -> (String, String, String) {
    let (kx, rest) = match suite.strip_prefix("tls13_") {
        Some(rest) => ("any".to_string(), rest),
        None => match suite.strip_prefix("tls_").and_then(|s| s.split_once("_with_")) {
            Some((kx, rest)) => (kx.to_string(), rest),
            None => (String::new(), suite),
        },
    };
    let (cipher, mac) = rest.rsplit_once('_').unwrap_or((rest, ""));
    let aead = cipher.ends_with("_gcm") || cipher.starts_with("chacha20_poly1305") || cipher.ends_with("_ccm");
    (kx, cipher.to_string(), if aead { "aead".to_string() } else { mac.to_string() })
}

/// An X.509 time as RabbitMQ prints it ("2024-01-01T00:00:00Z").
fn asn1_time(t: &ASN1Time) -> String {
    let d = t.to_datetime();
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", d.year(), d.month() as u8, d.day(), d.hour(), d.minute(), d.second())
}

impl Tls {
    /// Reads the certificate files; an error names the key and file at fault.
    pub fn start(config: &TlsConfig) -> Result<Arc<Tls>, String> {
        let server = build(config)?;
        let tls = Arc::new(Tls {
            config: config.clone(),
            current: ArcSwap::from_pointee(server),
            reloads: Default::default(),
            watcher: Default::default(),
        });
        tls.watch();
        Ok(tls)
    }

    /// The acceptor for the next connection (the configuration in force now).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the files again; on success new connections use them.
    pub fn reload(&self) -> Result<(), String> {
        let server = build(&self.config)?;
        self.current.store(Arc::new(server));
        self.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// What a completed handshake tells about the peer.
    pub fn peer(&self, conn: &rustls::ServerConnection) -> PeerTls {
        let protocol = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "tlsv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "tlsv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => String::new(),
        };
        let suite = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()).to_lowercase()).unwrap_or_default();
        let (key_exchange, cipher, hash) = suite_parts(&suite);
        let cert = conn.peer_certificates().and_then(|c| c.first());
        let parsed = cert.and_then(|c| X509Certificate::from_der(c.as_ref()).ok().map(|(_, x)| x));
        let login = match (&parsed, cert) {
            (_, None) => Err("no peer certificate"),
            (None, Some(_)) => Err("no name found"),
            // RabbitMQ's auth_config_sane: names from certificates nobody checked are not trusted.
            (Some(_), Some(_)) if self.config.verify != TlsVerify::VerifyPeer => Err("TLS configuration is unsafe"),
            (Some(x), Some(_)) => login_name(x, &self.config).ok_or("no name found"),
        };
        PeerTls {
            protocol,
            cipher,
            key_exchange,
            hash,
            login,
            peer_cert_subject: parsed.as_ref().map(|x| subject_dn(x.subject())),
            peer_cert_issuer: parsed.as_ref().map(|x| subject_dn(x.issuer())),
            peer_cert_validity: parsed.as_ref().map(|x| format!("{} - {}", asn1_time(&x.validity().not_before), asn1_time(&x.validity().not_after))),
        }
    }

    /// Reloads on a change of any of the files (their folders are watched, so a file replaced by
    /// a rename is seen too). Events are coalesced: the reload runs once they have been quiet for
    /// 200 ms, so a certificate and key written one after the other load together.
    fn watch(self: &Arc<Self>) {
        use notify::{EventKind, RecursiveMode, Watcher};
        let files: Vec<PathBuf> =
            [Some(&self.config.certfile), Some(&self.config.keyfile), self.config.cacertfile.as_ref()].into_iter().flatten().map(|p| absolute(p)).collect();
        let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = match notify::recommended_watcher(tx) {
            Ok(w) => w,
            Err(e) => return warn!("cannot watch the TLS certificate files: {e}; they will not be reloaded"),
        };
        let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
                return warn!("cannot watch {}: {e}; the TLS certificate files will not be reloaded", d.display());
            }
        }
        *self.watcher.lock() = Some(watcher);
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new().name("tls-watch".into()).spawn(move || {
            let relevant = |ev: &notify::Event| {
                matches!(
                    ev.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write))
                ) && ev.paths.iter().any(|p| files.iter().any(|f| same_file(p, f)))
            };
            while let Ok(ev) = rx.recv() {
                if !ev.as_ref().is_ok_and(relevant) {
                    continue;
                }
                // Quiet period: later writes of the same update extend it.
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(_) => continue,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                let Some(tls) = me.upgrade() else { return };
                match tls.reload() {
                    Ok(()) => info!("TLS certificate files changed: reloaded {}", tls.config.certfile.display()),
                    Err(e) => warn!("TLS certificate files changed but cannot be used ({e}); the previous ones stay in use"),
                }
            }
        });
    }
}

fn absolute(p: &Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    // The folder may be reached through a symlink (/tmp on some systems); events carry real paths.
    match (p.parent().and_then(|d| d.canonicalize().ok()), p.file_name()) {
        (Some(d), Some(n)) => d.join(n),
        _ => p,
    }
}

fn same_file(event_path: &Path, file: &Path) -> bool {
    event_path == file || (event_path.file_name() == file.file_name() && event_path.parent().and_then(|d| d.canonicalize().ok()).as_deref() == file.parent())
}

/// Builds the rustls configuration from the files named in `c`.
pub fn build(c: &TlsConfig) -> Result<ServerConfig, String> {
    let certs = read_certs("certfile", &c.certfile)?;
    let key = PrivateKeyDer::from_pem_file(&c.keyfile).map_err(|e| pem_error("keyfile", &c.keyfile, e))?;
    // ring: builds with the C compiler CI already has (aws-lc-rs needs cmake and a long build);
    // rustls deprecates it only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("[amqp.tls]: {e}"))?;
    let builder = match c.verify {
        TlsVerify::VerifyNone => {
            if c.fail_if_no_peer_cert {
                return Err("[amqp.tls] fail_if_no_peer_cert = true needs verify = \"verify_peer\"".into());
            }
            builder.with_no_client_auth()
        }
        TlsVerify::VerifyPeer => {
            let Some(ca) = &c.cacertfile else {
                return Err("[amqp.tls] verify = \"verify_peer\" needs cacertfile (the CA certificates client certificates are checked against)".into());
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs("cacertfile", ca)? {
                roots.add(cert).map_err(|e| format!("[amqp.tls] cacertfile {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = if c.fail_if_no_peer_cert { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("[amqp.tls] cacertfile {}: {e}", ca.display()))?)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "[amqp.tls] keyfile {} does not match the certificate in certfile {}",
            c.keyfile.display(),
            c.certfile.display()
        ),
        e => format!("[amqp.tls] certfile {} / keyfile {}: {e}", c.certfile.display(), c.keyfile.display()),
    })
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(key, path, e))?;
    if certs.is_empty() {
        return Err(format!("[amqp.tls] {key} {}: no PEM certificate (\"BEGIN CERTIFICATE\") in the file", path.display()));
    }
    for c in &certs {
        X509Certificate::from_der(c.as_ref()).map_err(|e| format!("[amqp.tls] {key} {}: not a valid certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

fn pem_error(key: &str, path: &Path, e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("[amqp.tls] {key} {}: {e}", path.display()),
        Error::NoItemsFound => format!("[amqp.tls] {key} {}: no PEM private key in the file", path.display()),
        e => format!("[amqp.tls] {key} {}: bad PEM: {e}", path.display()),
    }
}

/// The name SASL EXTERNAL logs in with (RabbitMQ's `rabbit_ssl:peer_cert_auth_name`).
pub fn login_name(cert: &X509Certificate<'_>, c: &TlsConfig) -> Option<String> {
    match c.ssl_cert_login_from {
        CertLoginFrom::DistinguishedName => Some(subject_dn(cert.subject())),
        CertLoginFrom::CommonName => {
            // Several CNs are joined with "," (RabbitMQ: "vaguely DN-like").
            let cns: Vec<String> = cert.subject().iter_common_name().map(|a| attr_string(a.attr_value())).collect();
            (!cns.is_empty()).then(|| cns.join(","))
        }
        CertLoginFrom::SubjectAlternativeName => {
            let san = cert.subject_alternative_name().ok()??;
            let of_type: Vec<String> = san
                .value
                .general_names
                .iter()
                .filter_map(|g| match (c.ssl_cert_login_san_type, g) {
                    (SanType::Dns, GeneralName::DNSName(s)) => Some(s.to_string()),
                    (SanType::Email, GeneralName::RFC822Name(s)) => Some(s.to_string()),
                    (SanType::Uri, GeneralName::URI(s)) => Some(s.to_string()),
                    (SanType::Ip, GeneralName::IPAddress(b)) => ip(b),
                    (SanType::OtherName, GeneralName::OtherName(_, v)) => other_name(v),
                    _ => None,
                })
                .collect();
            of_type.into_iter().nth(c.ssl_cert_login_san_index).map(|s| s.trim_matches('\n').to_string())
        }
    }
}

fn ip(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?).to_string()),
        _ => None,
    }
}

/// An otherName value: `[0] EXPLICIT` around a string (RabbitMQ reads it as a DirectoryString).
fn other_name(v: &[u8]) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::{Any, FromDer};
    let (_, outer) = Any::from_der(v).ok()?;
    let inner = if outer.header.is_contextspecific() { Any::from_der(outer.data).ok()?.1 } else { outer };
    Some(attr_string(&inner))
}

/// An attribute value as text: the string types RabbitMQ decodes, converted to UTF-8.
fn attr_string(v: &x509_parser::der_parser::asn1_rs::Any<'_>) -> String {
    use x509_parser::der_parser::asn1_rs::Tag;
    let d = v.data;
    match v.tag() {
        // Latin-1, as RabbitMQ reads teletexString.
        Tag::TeletexString => d.iter().map(|&b| b as char).collect(),
        Tag::BmpString => {
            char::decode_utf16(d.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))).map(|c| c.unwrap_or('\u{fffd}')).collect()
        }
        Tag::UniversalString => {
            d.chunks_exact(4).map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')).collect()
        }
        _ => String::from_utf8_lossy(d).into_owned(),
    }
}

/// A subject as RabbitMQ prints it (`rabbit_cert_info:subject`): RFC 4514, the last RDN first,
/// multi-valued RDNs joined with "+", RabbitMQ's attribute names, unknown types as dotted OIDs.
pub fn subject_dn(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let oid = a.attr_type().to_id_string();
                    let ty = ATTR_NAMES.iter().find(|(o, _)| *o == oid).map_or(oid.as_str(), |(_, n)| n);
                    format!("{ty}={}", escape_rdn_value(&attr_string(a.attr_value())))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

const ATTR_NAMES: &[(&str, &str)] = &[
    ("2.5.4.4", "SN"),
    ("2.5.4.42", "GIVENNAME"),
    ("2.5.4.43", "INITIALS"),
    ("2.5.4.44", "GENERATIONQUALIFIER"),
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "TITLE"),
    ("2.5.4.6", "C"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.65", "PSEUDONYM"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "EMAILADDRESS"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// RFC 4514 escaping as RabbitMQ does it (`escape_rdn_value`): a leading space or '#' and a
/// trailing space get a backslash, so do `"+,;<>\`; bytes below 32 or from 126 up become `\XX`.
fn escape_rdn_value(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == b.len();
        match c {
            b' ' | b'#' if first => {
                out.push('\\');
                out.push(c as char);
            }
            b' ' if last => out.push_str("\\ "),
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            c if !(32..126).contains(&c) => out.push_str(&format!("\\{c:02X}")),
            c => out.push(c as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_as_erlang_names_them() {
        let p = |s: &str| {
            let (k, c, h) = super::suite_parts(s);
            (k, c, h)
        };
        assert_eq!(p("tls13_aes_256_gcm_sha384"), ("any".into(), "aes_256_gcm".into(), "aead".into()));
        assert_eq!(p("tls13_chacha20_poly1305_sha256"), ("any".into(), "chacha20_poly1305".into(), "aead".into()));
        assert_eq!(p("tls_ecdhe_rsa_with_aes_128_gcm_sha256"), ("ecdhe_rsa".into(), "aes_128_gcm".into(), "aead".into()));
    }

    #[test]
    fn rdn_values_are_escaped_as_rabbitmq_does() {
        assert_eq!(escape_rdn_value("client"), "client");
        assert_eq!(escape_rdn_value(" a b "), "\\ a b\\ ");
        assert_eq!(escape_rdn_value("#x"), "\\#x");
        assert_eq!(escape_rdn_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rdn_value("é~"), "\\C3\\A9\\7E");
    }
}
