//! Broker configuration: `config/warren.toml` (serde) plus command-line overrides.
//! Every key has a default that works on a laptop; see `config/warren.toml` for the documented file.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub amqp: AmqpConfig,
    pub auth: AuthConfig,
    /// Settings of the `warren_auth_backend_oauth2` plugin (RabbitMQ's `auth_oauth2.*`).
    pub auth_oauth2: OAuth2Config,
    pub storage: StorageConfig,
    pub memory: MemoryConfig,
    pub flow: FlowConfig,
    pub plugins: PluginsConfig,
    pub log: LogConfig,
    /// HTTP listener of the management plugin (`warren_management`), opened while it is enabled.
    pub management: HttpListenerConfig,
    /// HTTP listener of the prometheus plugin (`warren_prometheus`), opened while it is enabled.
    pub prometheus: HttpListenerConfig,
}

/// Where an HTTP-serving plugin listens (RabbitMQ's `management.tcp.port` / `.ip`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerConfig {
    /// Address to listen on.
    #[serde(default = "loopback")]
    pub bind: String,
    /// TCP port; 0 picks a free one (tests).
    pub port: u16,
}

fn loopback() -> String {
    "127.0.0.1".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Address to listen on.
    pub bind: String,
    /// AMQP port; 0 picks an ephemeral port (tests).
    pub port: u16,
    /// frame_max offered in connection.tune.
    pub frame_max: u32,
    /// channel_max offered in connection.tune.
    pub channel_max: u16,
    /// Heartbeat interval offered in connection.tune, in seconds (0 disables).
    pub heartbeat: u16,
    /// Largest accepted message body, in bytes.
    pub max_message_size: u64,
    /// Time allowed for the handshake (protocol header to connection.open), in milliseconds.
    pub handshake_timeout_ms: u64,
    /// The plain (non-TLS) listener on `port`; false turns it off (RabbitMQ's
    /// `listeners.tcp = none`), leaving only the TLS listener.
    pub tcp_listener: bool,
    /// AMQPS: the TLS listener (`[amqp.tls]`, RabbitMQ's `listeners.ssl` and `ssl_options`).
    pub tls: Option<TlsConfig>,
    /// Most consumers one channel may have (RabbitMQ's `consumer_max_per_channel`); None: no
    /// limit. One more basic.consume closes the connection with 530 NOT_ALLOWED.
    pub consumer_max_per_channel: Option<u32>,
    /// Kernel receive buffer of each client socket in bytes (RabbitMQ's
    /// `tcp_listen_options.recbuf`; 0: the kernel's autotuning).
    pub tcp_recbuf: u32,
    /// Kernel send buffer of each client socket in bytes (RabbitMQ's
    /// `tcp_listen_options.sndbuf`; 0: the kernel's autotuning).
    pub tcp_sndbuf: u32,
}

/// `[amqp.tls]`: the TLS listener and its certificates (RabbitMQ's `listeners.ssl.default` and
/// `ssl_options.*`). The files are read at start (a missing file, bad PEM or a key that does not
/// match the certificate stops the broker) and again whenever they change on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Port of the TLS listener (on `amqp.bind`); 0 picks a free one.
    #[serde(default = "default_amqps_port")]
    pub port: u16,
    /// The server's certificate chain (PEM), leaf first.
    pub certfile: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub keyfile: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    pub cacertfile: Option<PathBuf>,
    /// "verify_peer": ask clients for a certificate and check it against `cacertfile`;
    /// "verify_none" (default): ask for none.
    #[serde(default)]
    pub verify: TlsVerify,
    /// With verify_peer: refuse a client that sends no certificate.
    #[serde(default)]
    pub fail_if_no_peer_cert: bool,
    /// The user name SASL EXTERNAL takes from a client certificate (RabbitMQ's
    /// `ssl_cert_login_from`): "distinguished_name" (default), "common_name" or
    /// "subject_alternative_name".
    #[serde(default)]
    pub ssl_cert_login_from: CertLoginFrom,
    /// With subject_alternative_name: the SAN type, "dns" (default), "ip", "email", "uri" or
    /// "other_name" (RabbitMQ's `ssl_cert_login_san_type`).
    #[serde(default)]
    pub ssl_cert_login_san_type: SanType,
    /// With subject_alternative_name: which SAN of that type, from 0 (RabbitMQ's
    /// `ssl_cert_login_san_index`).
    #[serde(default)]
    pub ssl_cert_login_san_index: usize,
}

fn default_amqps_port() -> u16 {
    5671
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsVerify {
    #[default]
    VerifyNone,
    VerifyPeer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertLoginFrom {
    #[default]
    DistinguishedName,
    CommonName,
    #[serde(alias = "subject_alt_name")]
    SubjectAlternativeName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SanType {
    #[default]
    Dns,
    Ip,
    Email,
    Uri,
    OtherName,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    /// Users that may only connect through a loopback interface.
    pub loopback_users: Vec<String>,
    /// Authentication/authorization backends, asked in order at login; the first that accepts
    /// wins (RabbitMQ's `auth_backends`). `"internal"` (alias `"rabbit_auth_backend_internal"`):
    /// the users and permissions managed with `warrenctl`.
    pub backends: Vec<String>,
    /// SASL mechanisms offered in connection.start (RabbitMQ's `auth_mechanisms`): "PLAIN",
    /// "AMQPLAIN", "EXTERNAL" (client certificate; offered on TLS connections only).
    pub mechanisms: Vec<String>,
}

/// `[auth_oauth2]`: the `warren_auth_backend_oauth2` plugin's settings, with the names of
/// RabbitMQ's `auth_oauth2.*` keys. Read by the plugin (through the host's `config` import) when
/// `[auth] backends` names it; checked by the plugin's `init` at start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuth2Config {
    /// The audience tokens must have (`aud`) and the prefix of their scopes (`rabbitmq.read:…`).
    /// Empty: no audience check, scopes taken as they are.
    pub resource_server_id: String,
    /// The key for tokens whose header has no `kid`.
    pub default_key: Option<String>,
    /// A claim holding more scopes (RabbitMQ's `additional_scopes_key`, `extra_scopes_source`).
    pub additional_scopes_key: Option<String>,
    /// The accepted signature algorithms (RabbitMQ's `algorithms`); default: every algorithm the
    /// key type allows (HS256/384/512 for `oct`, RS256/384/512 for RSA).
    pub algorithms: Option<Vec<String>>,
    /// Signing keys by key id (`kid`).
    pub signing_keys: std::collections::BTreeMap<String, SigningKey>,
}

/// One signing key of `[auth_oauth2.signing_keys]`: a JWK (`kty = "oct"` with `k`, or
/// `kty = "RSA"` with `n` and `e`, base64url) or a PEM file holding an RSA public key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningKey {
    pub kty: Option<String>,
    pub k: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub alg: Option<String>,
    pub pem_file: Option<PathBuf>,
}

impl OAuth2Config {
    /// The plugin's settings (host `config` keys): `resource_server_id`, `default_key`,
    /// `additional_scopes_key`, `algorithms` (JSON list) and `signing_keys` (JSON object of JWKs;
    /// a `pem_file` is read here and passed as `{"pem": "..."}`, plugins have no file access).
    pub fn plugin_settings(&self) -> Result<std::collections::HashMap<String, String>, String> {
        let mut out = std::collections::HashMap::new();
        out.insert("resource_server_id".to_string(), self.resource_server_id.clone());
        if let Some(k) = &self.default_key {
            out.insert("default_key".into(), k.clone());
        }
        if let Some(k) = &self.additional_scopes_key {
            out.insert("additional_scopes_key".into(), k.clone());
        }
        if let Some(a) = &self.algorithms {
            out.insert("algorithms".into(), serde_json::to_string(a).expect("strings"));
        }
        let mut keys = serde_json::Map::new();
        for (id, key) in &self.signing_keys {
            let mut jwk = serde_json::Map::new();
            if let Some(path) = &key.pem_file {
                if key.kty.is_some() || key.k.is_some() || key.n.is_some() || key.e.is_some() {
                    return Err(format!("[auth_oauth2] signing_keys.{id}: pem_file cannot be combined with kty, k, n or e"));
                }
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| format!("[auth_oauth2] signing_keys.{id}: cannot read pem_file {}: {e}", path.display()))?;
                jwk.insert("pem".into(), pem.into());
            }
            for (name, v) in [("kty", &key.kty), ("k", &key.k), ("n", &key.n), ("e", &key.e), ("alg", &key.alg)] {
                if let Some(v) = v {
                    jwk.insert(name.into(), v.clone().into());
                }
            }
            keys.insert(id.clone(), jwk.into());
        }
        out.insert("signing_keys".into(), serde_json::Value::Object(keys).to_string());
        Ok(out)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for the redb database and the control socket.
    pub data_dir: PathBuf,
    /// Publishers are blocked when free disk space falls below this many bytes. The file may
    /// give bytes or a string with RabbitMQ's units ("50MB", "1GB", "500MiB").
    #[serde(deserialize_with = "crate::alarm::deserialize_limit")]
    pub disk_free_limit: u64,
    /// Longest time between two free disk space checks, in milliseconds (checks come sooner
    /// near the limit).
    pub disk_check_interval_ms: u64,
    /// Bytes (bodies plus per-message overhead) a queue keeps in memory ahead of its consumers;
    /// beyond it bodies stay on disk until consumers get near them (persistent messages of
    /// durable queues in the store, all others in transient page files).
    pub queue_ram_limit: u64,
    /// Page cache of the message store (`warren.redb`: its read cache and write buffer), in
    /// bytes or with RabbitMQ's units. It fills up as messages are written and read.
    #[serde(deserialize_with = "crate::alarm::deserialize_limit")]
    pub store_cache: u64,
    /// How long a starting broker waits for the database lock held by another process (a
    /// previous broker still exiting after `kill -9`), in milliseconds, before refusing to start.
    pub lock_wait_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Publishers are blocked while the broker's resident memory is above this: a fraction of
    /// available memory (RAM, or the cgroup limit when lower), or a size with RabbitMQ's units.
    #[serde(deserialize_with = "crate::alarm::memory::deserialize_watermark")]
    pub high_watermark: crate::alarm::Watermark,
    /// Time between two memory samples, in milliseconds.
    pub check_interval_ms: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { high_watermark: crate::alarm::memory::DEFAULT_WATERMARK, check_interval_ms: 100 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// A queue with consumers holding more ready messages than this pauses its publishers.
    pub queue_messages: u64,
    /// A queue with consumers holding more ready body bytes than this pauses its publishers.
    pub queue_bytes: u64,
    /// Bytes waiting for the store writer above which persistent publishers pause.
    pub store_pending_bytes: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig { queue_messages: 2000, queue_bytes: 4 << 20, store_pending_bytes: 32 << 20 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder scanned for plugin `.wasm` files (default: `<data_dir>/plugins`).
    pub dir: Option<PathBuf>,
    /// CPU-time limit of one call into a plugin, in milliseconds (the wall-clock time of a call
    /// is capped at 10 times this).
    pub call_timeout_ms: u64,
    /// Memory cap of one plugin instance, in MiB.
    pub memory_limit_mib: u64,
    /// Per-plugin settings (plugin name → key → value), readable by the plugin through the host
    /// `config` import; `memory_limit_mib` there overrides the cap for that plugin.
    pub settings: std::collections::HashMap<String, std::collections::HashMap<String, String>>,
}

impl Config {
    /// The plugins folder: `plugins.dir`, or `<data_dir>/plugins`.
    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins.dir.clone().unwrap_or_else(|| self.storage.data_dir.join("plugins"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "warren=debug".
    pub level: String,
    /// Log file (None: stderr only).
    pub file: Option<PathBuf>,
    /// Rotation of the log file: "never", "daily", "hourly", "minutely".
    pub rotation: String,
    /// Rotated files kept (0: all).
    pub rotation_count: usize,
    /// Rotate the log file once it holds more than this many bytes (0: never; RabbitMQ's
    /// `log.file.rotation.size`). Not together with a time `rotation`.
    pub rotation_size: u64,
    /// With a log file, also log to stderr.
    pub console: bool,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            bind: "127.0.0.1".into(),
            port: 5672,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 << 20,
            handshake_timeout_ms: 10_000,
            tcp_listener: true,
            tls: None,
            consumer_max_per_channel: None,
            tcp_recbuf: 0,
            tcp_sndbuf: 0,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            loopback_users: vec!["guest".into()],
            backends: vec!["internal".into()],
            mechanisms: vec!["PLAIN".into(), "AMQPLAIN".into(), "EXTERNAL".into()],
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            disk_free_limit: crate::alarm::DEFAULT_DISK_FREE_LIMIT,
            disk_check_interval_ms: 1000,
            queue_ram_limit: 8 << 20,
            store_cache: 16 << 20,
            lock_wait_ms: 5000,
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig { dir: None, call_timeout_ms: 10, memory_limit_mib: 64, settings: Default::default() }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), file: None, rotation: "never".into(), rotation_count: 5, rotation_size: 0, console: false }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp: AmqpConfig::default(),
            auth: AuthConfig::default(),
            auth_oauth2: OAuth2Config::default(),
            storage: StorageConfig::default(),
            memory: MemoryConfig::default(),
            flow: FlowConfig::default(),
            plugins: PluginsConfig::default(),
            log: LogConfig::default(),
            management: HttpListenerConfig { bind: loopback(), port: 15672 },
            prometheus: HttpListenerConfig { bind: loopback(), port: 15692 },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
}

impl Config {
    /// Reads a TOML config file; missing keys take their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })
    }

    /// A config for tests: ephemeral port on 127.0.0.1, data in `data_dir`.
    pub fn for_tests(data_dir: &Path) -> Config {
        let mut c = Config::default();
        c.amqp.port = 0;
        c.storage.data_dir = data_dir.to_owned();
        // The plugin time limit counts the calling thread's CPU time, so the production limit
        // (10 ms) holds on a machine busy with parallel tests too.
        c.plugins.call_timeout_ms = 10;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/warren.toml");
        let c = Config::load(&path).expect("config/warren.toml parses");
        let d = Config::default();
        assert_eq!(c.amqp.port, d.amqp.port);
        assert_eq!(c.amqp.frame_max, d.amqp.frame_max);
        assert_eq!(c.amqp.consumer_max_per_channel, d.amqp.consumer_max_per_channel);
        assert_eq!((c.amqp.tcp_recbuf, c.amqp.tcp_sndbuf), (d.amqp.tcp_recbuf, d.amqp.tcp_sndbuf));
        assert_eq!(c.auth.loopback_users, d.auth.loopback_users);
        assert_eq!(c.storage.data_dir, d.storage.data_dir);
        assert_eq!(c.storage.disk_free_limit, d.storage.disk_free_limit);
        assert_eq!(c.storage.disk_check_interval_ms, d.storage.disk_check_interval_ms);
        assert_eq!(c.plugins.memory_limit_mib, d.plugins.memory_limit_mib);
        assert_eq!(c.storage.lock_wait_ms, d.storage.lock_wait_ms);
        assert_eq!(c.storage.store_cache, d.storage.store_cache);
        assert_eq!(c.memory.high_watermark, d.memory.high_watermark);
        assert_eq!(c.memory.check_interval_ms, d.memory.check_interval_ms);
        assert_eq!(c.flow.queue_messages, d.flow.queue_messages);
        assert_eq!(c.flow.queue_bytes, d.flow.queue_bytes);
        assert_eq!(c.flow.store_pending_bytes, d.flow.store_pending_bytes);
        assert_eq!(c.amqp.tcp_listener, d.amqp.tcp_listener);
        assert!(c.amqp.tls.is_none());
        assert_eq!(c.auth.mechanisms, d.auth.mechanisms);
        assert_eq!(c.log.rotation_size, d.log.rotation_size);
    }

    #[test]
    fn memory_high_watermark_takes_a_fraction_or_a_size() {
        use crate::alarm::Watermark;
        let c: Config = toml::from_str("[memory]\nhigh_watermark = 0.6\n").unwrap();
        assert_eq!(c.memory.high_watermark, Watermark::Relative(0.6));
        let c: Config = toml::from_str("[memory]\nhigh_watermark = \"512MiB\"\ncheck_interval_ms = 50\n").unwrap();
        assert_eq!(c.memory.high_watermark, Watermark::Absolute(512 << 20));
        assert_eq!(c.memory.check_interval_ms, 50);
        let err = toml::from_str::<Config>("[memory]\nhigh_watermark = 2.5\n").unwrap_err();
        assert!(err.to_string().contains("between 0.0 and 1.0"), "{err}");
        let err = toml::from_str::<Config>("[memory]\nhigh_watermark = \"much\"\n").unwrap_err();
        assert!(err.to_string().contains("invalid high_watermark"), "{err}");
        let err = toml::from_str::<Config>("[memory]\nwatermark = 0.4\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn disk_free_limit_takes_bytes_or_units() {
        let c: Config = toml::from_str("[storage]\ndisk_free_limit = 1000\n").unwrap();
        assert_eq!(c.storage.disk_free_limit, 1000);
        let c: Config = toml::from_str("[storage]\ndisk_free_limit = \"2GB\"\n").unwrap();
        assert_eq!(c.storage.disk_free_limit, 2_000_000_000);
        let c: Config = toml::from_str("[storage]\ndisk_free_limit = \"500MiB\"\n").unwrap();
        assert_eq!(c.storage.disk_free_limit, 500 << 20);
        let err = toml::from_str::<Config>("[storage]\ndisk_free_limit = \"lots\"\n").unwrap_err();
        assert!(err.to_string().contains("disk_free_limit"), "{err}");
    }

    #[test]
    fn tls_section_takes_rabbitmq_ssl_options() {
        let c: Config = toml::from_str(
            "[amqp]\ntcp_listener = false\n[amqp.tls]\ncertfile = \"c.pem\"\nkeyfile = \"k.pem\"\ncacertfile = \"ca.pem\"\n\
             verify = \"verify_peer\"\nfail_if_no_peer_cert = true\nssl_cert_login_from = \"common_name\"\n",
        )
        .unwrap();
        let t = c.amqp.tls.unwrap();
        assert!(!c.amqp.tcp_listener);
        assert_eq!((t.port, t.verify, t.fail_if_no_peer_cert), (5671, TlsVerify::VerifyPeer, true));
        assert_eq!(t.ssl_cert_login_from, CertLoginFrom::CommonName);
        let err = toml::from_str::<Config>("[amqp.tls]\ncertfile = \"c.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("missing field `keyfile`"), "{err}");
        let err = toml::from_str::<Config>("[amqp.tls]\ncertfile = \"c\"\nkeyfile = \"k\"\nverify = \"verify_maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("verify_peer"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("[amqp]\nprot = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
