//! The registry: vhosts → exchanges, queues, bindings; users and permissions; exchange types.
//!
//! Operations here return `ReplyError`s with RabbitMQ's codes and texts, so the AMQP channel code,
//! the control socket and plugins' admin calls all behave alike.

pub mod access;
pub mod backlog;
pub mod auth;
pub mod confirm;
pub mod counters;
pub mod dead_letter;
pub mod delivery;
pub mod exchange;
pub mod flow;
pub mod global_parameters;
pub mod internal_auth;
pub mod limits;
pub mod message;
pub mod outbound;
pub mod persist;
pub mod policies;
pub mod policy;
pub mod publish;
pub mod queue;
pub mod queue_args;
pub mod reply_to;
pub mod reset;
pub mod spares;
pub mod stats;
pub mod topic_permissions;
pub mod ttl;
mod vhost;

pub use vhost::{ExchangeDecl, QueueDecl, Vhost, VhostMetadata};

/// RabbitMQ's 320 CONNECTION_FORCED text when the broker stops (shutdown and `stop_app`).
pub const SHUTDOWN_REASON: &str = "broker forced connection closure with reason 'shutdown'";

use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::exchange_type::ExchangeTypeFactory;
use crate::protocol::reply::{ErrorKind, ReplyError, access_refused, not_found, precondition};
use crate::protocol::FieldTable;
use auth::{Permission, User};
use exchange::{BindOutcome, Destination, Exchange};
use parking_lot::{Mutex, RwLock};
use queue::Queue;
use queue_args::{QueueArgs, yes_no};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the broker knows about a live connection (for listing and forced close).
pub struct ConnectionEntry {
    pub id: u64,
    pub peer: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub close: tokio::sync::mpsc::UnboundedSender<ReplyError>,
    /// The reader stopped reading the socket because of a resource alarm (state `blocked`).
    pub blocked: Arc<std::sync::atomic::AtomicBool>,
    /// Open channels (user `max-channels`, listings).
    pub channels: Arc<std::sync::atomic::AtomicU32>,
    /// Publisher flow control of the reader (state `flow`).
    pub flow: Arc<flow::FlowState>,
    /// TLS session facts of an AMQPS connection (`list_connections ssl ...`).
    pub ssl: Option<crate::tls::PeerTls>,
    /// The client's start-ok properties (management API `client_properties`).
    pub client_properties: Arc<crate::protocol::FieldTable>,
    /// The open channels, by number: registered at channel.open, removed at channel.close
    /// (management `/api/channels`, `warrenctl list_channels`).
    pub channel_list: Arc<Mutex<std::collections::BTreeMap<u16, Arc<delivery::ChannelShared>>>>,
    /// The connection's send side (socket byte counters, frame_max).
    pub shared: Arc<outbound::ConnShared>,
    /// Negotiated at connection.tune: channel_max, frame_max, heartbeat.
    pub tuned: (u16, u32, u16),
    /// SASL mechanism of the login.
    pub auth_mechanism: String,
    /// When the connection was opened (ms since the Unix epoch).
    pub connected_at: u64,
}

pub struct Broker {
    pub config: Config,
    vhosts: RwLock<HashMap<String, Arc<Vhost>>>,
    users: RwLock<HashMap<String, User>>,
    /// (vhost, user) → permission.
    permissions: RwLock<HashMap<(String, String), Arc<Permission>>>,
    /// `set_topic_permissions` (shared with the internal auth backend, which checks them).
    topic_permissions: Arc<topic_permissions::TopicPermissions>,
    /// Bumped by every change of users, vhosts or permissions (see `access.rs`).
    auth_epoch: AtomicU64,
    /// Serialises access-control changes (each one is a store commit plus a memory update).
    admin_lock: Mutex<()>,
    types: RwLock<HashMap<String, Arc<dyn ExchangeTypeFactory>>>,
    next_id: AtomicU64,
    pub connections: Mutex<HashMap<u64, ConnectionEntry>>,
    /// The AMQP listeners, as (protocol, address): "amqp" and "amqp/ssl" (`warrenctl status`).
    pub listeners: Mutex<Vec<(&'static str, std::net::SocketAddr)>>,
    /// The durable store (None: nothing survives a restart, e.g. unit tests).
    pub store: Option<Arc<Store>>,
    /// The `[auth] backends` chain.
    pub auth: crate::auth_backend::AuthChain,
    /// The resource alarms in effect (disk, memory); connections block publishers on them.
    pub alarms: Arc<crate::alarm::Alarms>,
    /// The free disk space alarm (its checks run once `server::start` calls `start`).
    pub disk: Arc<crate::alarm::DiskMonitor>,
    /// The memory high watermark (its samples run once `server::start` calls `start`).
    pub memory: Arc<crate::alarm::MemoryMonitor>,
    /// `<data-dir>/transient`: queues page transient messages beyond their memory budget there.
    pub transient: Arc<crate::store::transient::TransientDir>,
    /// The message counters of closed channels and deleted queues (`stats.rs`): the overview's
    /// and the metrics' totals are these plus the open channels' or live queues' counters.
    pub retired: Arc<stats::Retired>,
    /// When the broker started (node `uptime`).
    pub started: std::time::Instant,
    /// Global runtime parameters (`global_parameters.rs`).
    global_parameters: RwLock<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Connection/channel/queue churn counters, shared with the vhosts; read by the metrics
    /// operations (message totals are sums of `stats.rs` counters).
    pub counters: Arc<counters::Counters>,
    /// False between `stop_app` and `start_app` (`admin/app.rs`): the listeners are closed, the
    /// admin API refuses most commands, and a connection that finishes its handshake then is
    /// closed as the others were.
    pub app_running: AtomicBool,
}

fn store_error(e: StoreError) -> ReplyError {
    tracing::error!("store: {e}");
    ReplyError::new(ErrorKind::ChannelInternalError, "")
}

impl Broker {
    /// `plugin_backends`: the auth backends of `[auth] backends` other than the internal one, by
    /// the name the config gives them (the plugin layer loads them: see `server.rs`).
    fn empty(
        config: Config,
        store: Option<Arc<Store>>,
        plugin_backends: &HashMap<String, Arc<dyn crate::auth_backend::AuthBackend>>,
    ) -> Result<Arc<Broker>, String> {
        let alarms = crate::alarm::Alarms::new();
        let memory = crate::alarm::MemoryMonitor::new(
            alarms.clone(),
            config.memory.high_watermark,
            std::time::Duration::from_millis(config.memory.check_interval_ms),
        );
        let disk = crate::alarm::DiskMonitor::new(
            alarms.clone(),
            config.storage.data_dir.clone(),
            config.storage.disk_free_limit,
            std::time::Duration::from_millis(config.storage.disk_check_interval_ms),
        );
        if let Some(b) =
            config.auth.backends.iter().find(|b| !internal_auth::NAMES.contains(&b.as_str()) && !plugin_backends.contains_key(*b))
        {
            return Err(format!("[auth] backends: unknown backend '{b}' (available: internal)"));
        }
        if config.auth.backends.is_empty() {
            return Err("[auth] backends: at least one backend is needed".into());
        }
        let names = config.auth.backends.clone();
        let transient = crate::store::transient::TransientDir::new(config.storage.data_dir.join("transient"));
        let topic_permissions = Arc::new(topic_permissions::TopicPermissions::default());
        Ok(Arc::new_cyclic(|me| {
            // Every name is known (checked above); listing one twice asks it twice, as RabbitMQ.
            let backends: Vec<Arc<dyn crate::auth_backend::AuthBackend>> = names
                .iter()
                .map(|n| match plugin_backends.get(n) {
                    Some(b) => b.clone(),
                    None => Arc::new(internal_auth::InternalBackend { broker: me.clone(), topics: topic_permissions.clone() }) as _,
                })
                .collect();
            Broker {
                config,
                vhosts: RwLock::default(),
                users: RwLock::default(),
                permissions: RwLock::default(),
                topic_permissions,
                auth_epoch: AtomicU64::new(1),
                admin_lock: Mutex::new(()),
                types: RwLock::default(),
                next_id: AtomicU64::new(1),
                connections: Mutex::default(),
                listeners: Mutex::default(),
                store,
                alarms,
                disk,
                memory,
                transient,
                counters: Arc::default(),
                auth: crate::auth_backend::AuthChain::new(backends),
                retired: Default::default(),
                started: std::time::Instant::now(),
                global_parameters: RwLock::default(),
                app_running: AtomicBool::new(true),
            }
        }))
    }

    /// A broker without storage: the exchange types `types`, the default vhost and user of
    /// `config`. (The caller supplies the types: the core has none of its own.)
    pub fn new(config: Config, types: impl IntoIterator<Item = Arc<dyn ExchangeTypeFactory>>) -> Result<Arc<Broker>, String> {
        let b = Broker::empty(config, None, &HashMap::new())?;
        for t in types {
            b.register_type(t);
        }
        let a = &b.config.auth;
        b.add_user(&a.default_user, &a.default_pass, vec!["administrator".into()]);
        let vh = b.add_vhost(&a.default_vhost);
        vh.metadata.write().description = persist::DEFAULT_VHOST_DESCRIPTION.into();
        b.set_permission(&a.default_vhost, &a.default_user, Permission::all());
        Ok(b)
    }

    /// Opens the store in the data directory and recovers definitions and persistent messages
    /// (on first start: creates the default user and vhost). `install` runs between the two: it
    /// registers the exchange types (`server.rs` hands in the plugin layer), so exchanges of
    /// plugin types come back with their type.
    /// `auth_plugins`: the auth backends of `[auth] backends` that plugins provide, by name.
    pub fn open(
        config: Config,
        auth_plugins: &HashMap<String, Arc<dyn crate::auth_backend::AuthBackend>>,
        install: impl FnOnce(&Arc<Broker>) -> Result<(), String>,
    ) -> Result<Arc<Broker>, String> {
        let data_dir = config.storage.data_dir.clone();
        let wait = std::time::Duration::from_millis(config.storage.lock_wait_ms);
        let opts = crate::store::StoreOptions { cache_size: config.storage.store_cache as usize, ..Default::default() };
        let store = Arc::new(Store::open_waiting(&data_dir, wait, opts).map_err(|e| e.to_string())?);
        let b = Broker::empty(config, Some(store.clone()), auth_plugins)?;
        // Transient messages paged out by the previous run are gone with it (we hold the lock).
        match b.transient.wipe() {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} transient page files of the previous run"),
            Err(e) => return Err(format!("cannot empty {}: {e}", b.transient.path().display())),
        }
        install(&b)?;
        persist::recover(&b, &store).map_err(|e| e.to_string())?;
        Ok(b)
    }

    pub fn unregister_type(&self, name: &str) {
        self.types.write().remove(name);
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register_type(&self, t: Arc<dyn ExchangeTypeFactory>) {
        self.types.write().insert(t.info().name.clone(), t);
    }

    /// Every registered exchange type, by name.
    pub fn exchange_types(&self) -> Vec<Arc<dyn ExchangeTypeFactory>> {
        let mut v: Vec<_> = self.types.read().values().cloned().collect();
        v.sort_by(|a, b| a.info().name.cmp(&b.info().name));
        v
    }

    pub fn exchange_type(&self, name: &str) -> Option<Arc<dyn ExchangeTypeFactory>> {
        self.types.read().get(name).cloned()
    }

    /// The exchange type, or RabbitMQ's 503 for an unknown one.
    pub fn exchange_type_or_error(&self, kind: &str) -> Result<Arc<dyn ExchangeTypeFactory>, ReplyError> {
        self.exchange_type(kind).ok_or_else(|| {
            let text =
                if kind.starts_with("x-") { format!("unknown exchange type '{kind}'") } else { format!("invalid exchange type '{kind}'") };
            ReplyError::new(ErrorKind::CommandInvalid, text)
        })
    }

    pub fn add_vhost(&self, name: &str) -> Arc<Vhost> {
        let mut v = self.vhosts.write();
        v.entry(name.to_owned())
            .or_insert_with(|| {
                let vh = Arc::new_cyclic(|me| {
                    Vhost::new(
                        name,
                        me.clone(),
                        self.store.clone(),
                        self.config.storage.queue_ram_limit as usize,
                        flow::FlowLimits::from_config(&self.config.flow),
                        self.transient.clone(),
                        self.counters.clone(),
                        self.retired.clone(),
                    )
                });
                for (n, t) in [
                    ("amq.direct", "direct"),
                    ("amq.fanout", "fanout"),
                    ("amq.topic", "topic"),
                    ("amq.headers", "headers"),
                    ("amq.match", "headers"),
                ] {
                    if let Some(f) = self.exchange_type(t) {
                        let x = Exchange::new(n.into(), name.into(), f, true, false, false, FieldTable::default())
                            .expect("standard exchange types do not fail");
                        vh.exchanges.write().insert(n.into(), Arc::new(x));
                    }
                }
                vh
            })
            .clone()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<Vhost>> {
        self.vhosts.read().get(name).cloned()
    }

    pub fn vhosts(&self) -> Vec<Arc<Vhost>> {
        self.vhosts.read().values().cloned().collect()
    }

    pub fn add_user(&self, name: &str, password: &str, tags: Vec<String>) {
        let u = User { name: name.into(), password_hash: auth::hash_password(password), tags, limits: Default::default() };
        self.users.write().insert(name.into(), u);
    }

    pub fn insert_user(&self, u: User) {
        self.users.write().insert(u.name.clone(), u);
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }

    pub fn set_permission(&self, vhost: &str, user: &str, p: Permission) {
        self.permissions.write().insert((vhost.into(), user.into()), Arc::new(p));
    }

    pub fn permission(&self, vhost: &str, user: &str) -> Option<Arc<Permission>> {
        self.permissions.read().get(&(vhost.to_owned(), user.to_owned())).cloned()
    }
}
