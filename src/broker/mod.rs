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
pub mod persist;
pub mod policies;
pub mod policy;
pub mod publish;
pub mod queue;
pub mod queue_args;
pub mod reply_to;
pub mod stats;
pub mod topic_permissions;
pub mod ttl;

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
    pub shared: Arc<delivery::ConnShared>,
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
    /// The message counters of channels that have closed (`stats.rs`): the overview's totals
    /// are these plus the open channels' counters.
    pub retired: stats::MessageStats,
    /// When the broker started (node `uptime`).
    pub started: std::time::Instant,
    /// Global runtime parameters (`global_parameters.rs`).
    global_parameters: RwLock<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Global counters (messages received/routed/delivered/acked, connection/channel/queue
    /// churn), shared with the vhosts and connections; read by the metrics operations.
    pub counters: Arc<counters::Counters>,
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
        let store = Arc::new(Store::open_waiting(&data_dir, wait).map_err(|e| e.to_string())?);
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

/// A virtual host: its own exchanges, queues and bindings.
pub struct Vhost {
    pub name: String,
    /// This vhost (for tasks that act on it later, such as queue expiry).
    me: Weak<Vhost>,
    /// Direct reply-to consumers.
    pub reply_to: reply_to::ReplyTo,
    pub exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    pub queues: RwLock<HashMap<String, Arc<Queue>>>,
    store: Option<Arc<Store>>,
    /// Body bytes each durable queue keeps in memory ahead of its consumers.
    queue_ram_limit: usize,
    /// Publisher flow-control limits of its queues.
    queue_flow: flow::FlowLimits,
    /// Where its queues page transient messages.
    transient: Arc<crate::store::transient::TransientDir>,
    /// Set by `delete_vhost`: connections still holding it write nothing more to the store.
    deleted: AtomicBool,
    /// `set_vhost_limits` (see `limits.rs`).
    pub limits: RwLock<limits::Limits>,
    /// `set_policy` / `set_operator_policy` (see `policies.rs`).
    pub policies: RwLock<policy::PolicySet>,
    pub operator_policies: RwLock<policy::PolicySet>,
    /// Description and tags (RabbitMQ's vhost metadata; shown, not interpreted).
    pub metadata: RwLock<VhostMetadata>,
    /// `publish_in` / `publish_out` of the default exchange (which has no `Exchange`).
    pub default_stats: stats::ExchangeStats,
    /// The broker's counters.
    pub counters: Arc<counters::Counters>,
}

/// A vhost's description and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VhostMetadata {
    pub description: String,
    pub tags: Vec<String>,
}

/// Parameters of exchange.declare.
pub struct ExchangeDecl<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: &'a FieldTable,
}

/// Parameters of queue.declare (name already resolved; "" means server-named).
pub struct QueueDecl<'a> {
    pub name: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: &'a FieldTable,
    /// The declaring connection.
    pub owner: u64,
    /// The broker chose the name (`amq.gen-…`), so the reserved prefix is fine.
    pub server_named: bool,
}

impl Vhost {
    fn new(
        name: &str,
        me: Weak<Vhost>,
        store: Option<Arc<Store>>,
        queue_ram_limit: usize,
        queue_flow: flow::FlowLimits,
        transient: Arc<crate::store::transient::TransientDir>,
        counters: Arc<counters::Counters>,
    ) -> Vhost {
        Vhost {
            name: name.into(),
            me,
            reply_to: Default::default(),
            exchanges: RwLock::default(),
            queues: RwLock::default(),
            store,
            queue_ram_limit,
            queue_flow,
            transient,
            deleted: AtomicBool::new(false),
            limits: RwLock::default(),
            policies: RwLock::default(),
            operator_policies: RwLock::default(),
            metadata: RwLock::default(),
            default_stats: Default::default(),
            counters,
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Runs a definition write if the object is durable and there is a store.
    fn persist(&self, durable: bool, f: impl FnOnce(&Store) -> Result<(), StoreError>) -> Result<(), ReplyError> {
        match &self.store {
            Some(s) if durable && !self.is_deleted() => f(s).map_err(store_error),
            _ => Ok(()),
        }
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    pub fn exchange_or_404(&self, name: &str) -> Result<Arc<Exchange>, ReplyError> {
        self.exchange(name).ok_or_else(|| not_found("exchange", name, &self.name))
    }

    /// Looks a queue up for an operation of connection `conn`: 404 if missing, 405 if it is
    /// another connection's exclusive queue.
    pub fn queue_for(&self, name: &str, conn: u64) -> Result<Arc<Queue>, ReplyError> {
        let q = self.queue(name).ok_or_else(|| not_found("queue", name, &self.name))?;
        self.check_exclusive(&q, conn)?;
        Ok(q)
    }

    pub fn check_exclusive(&self, q: &Queue, conn: u64) -> Result<(), ReplyError> {
        match q.exclusive_owner {
            Some(owner) if owner != conn => Err(ReplyError::new(
                ErrorKind::ResourceLocked,
                format!(
                    "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                    q.name, self.name
                ),
            )),
            _ => Ok(()),
        }
    }

    pub fn declare_exchange(&self, broker: &Broker, d: &ExchangeDecl<'_>) -> Result<Arc<Exchange>, ReplyError> {
        if d.name.is_empty() {
            return Err(access_refused("operation not permitted on the default exchange"));
        }
        if d.passive {
            return self.exchange_or_404(d.name);
        }
        if d.name.starts_with("amq.") && self.exchange(d.name).is_none() {
            return Err(access_refused(format!("exchange name '{}' contains reserved prefix 'amq.*'", d.name)));
        }
        let factory = broker.exchange_type_or_error(d.kind)?;
        let mut map = self.exchanges.write();
        if let Some(x) = map.get(d.name) {
            let ineq = |arg: &str, got: &str, cur: &str| {
                Err(precondition(format!(
                    "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{got}' but current is '{cur}'",
                    d.name, self.name
                )))
            };
            if x.kind != d.kind {
                return ineq("type", d.kind, &x.kind);
            }
            if x.durable != d.durable {
                return ineq("durable", yes_no(d.durable), yes_no(x.durable));
            }
            if x.auto_delete != d.auto_delete {
                return ineq("auto_delete", yes_no(d.auto_delete), yes_no(x.auto_delete));
            }
            if x.internal != d.internal {
                return ineq("internal", yes_no(d.internal), yes_no(x.internal));
            }
            return Ok(x.clone());
        }
        factory.validate(d.arguments).map_err(precondition)?;
        let x = Exchange::new(
            d.name.into(),
            self.name.clone(),
            factory,
            d.durable,
            d.auto_delete,
            d.internal,
            d.arguments.clone(),
        )
        .map_err(|e| ReplyError::new(ErrorKind::ChannelInternalError, e.0))?;
        let x = Arc::new(x);
        self.attach_policy_exchange(&x);
        self.persist(x.durable, |s| s.put_exchange(&persist::exchange_def(&self.name, &x)))?;
        map.insert(d.name.into(), x.clone());
        Ok(x)
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), ReplyError> {
        if name.is_empty() {
            return Err(access_refused("operation not permitted on the default exchange"));
        }
        if name.starts_with("amq.") {
            return Err(access_refused(format!("deletion of system exchange '{name}' in vhost '{}' not allowed", self.name)));
        }
        let Some(x) = self.exchange(name) else { return Ok(()) };
        if if_unused && (x.has_bindings() || self.is_destination(&x)) {
            return Err(precondition(format!("exchange '{name}' in vhost '{}' in use", self.name)));
        }
        self.remove_exchange(&x);
        Ok(())
    }

    fn is_destination(&self, x: &Arc<Exchange>) -> bool {
        let d = Destination::Exchange(x.clone());
        self.exchanges.read().values().any(|e| e.bindings().iter().any(|b| b.destination.same(&d)))
    }

    fn remove_exchange(&self, x: &Arc<Exchange>) {
        self.exchanges.write().remove(&x.name);
        let _ = self.persist(x.durable, |s| s.delete_exchange(&self.name, &x.name).map(|_| ()));
        x.mark_deleted();
        self.unbind_everywhere(&Destination::Exchange(x.clone()));
    }

    /// Removes all bindings leading to `dest`, then auto-deletes exchanges left without bindings.
    fn unbind_everywhere(&self, dest: &Destination) {
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for x in exchanges {
            if x.remove_bindings_to(dest) > 0 && x.auto_delete && !x.has_bindings() {
                self.remove_exchange(&x);
            }
        }
    }

    /// Declares (or checks) a queue. Returns it with (message count, consumer count).
    pub fn declare_queue(&self, d: &QueueDecl<'_>) -> Result<(Arc<Queue>, u32, u32), ReplyError> {
        if d.passive {
            let q = self.queue_for(d.name, d.owner)?;
            q.touch();
            let (m, c) = q.counts();
            return Ok((q, m, c));
        }
        // As RabbitMQ: every non-passive declare counts, whether it creates the queue or not.
        counters::bump(&self.counters.queues_declared);
        if d.name.starts_with("amq.") && !d.server_named {
            return Err(access_refused(format!("queue name '{}' contains reserved prefix 'amq.*'", d.name)));
        }
        let args = QueueArgs::parse(d.arguments, d.name, &self.name)?;
        let mut map = self.queues.write();
        if !map.contains_key(d.name) {
            limits::check_queue_limit(&self.limits.read(), &self.name, d.name, map.len())?;
        }
        if let Some(q) = map.get(d.name) {
            let q = q.clone();
            drop(map);
            self.check_exclusive(&q, d.owner)?;
            if q.exclusive_owner.is_some() != d.exclusive {
                // Exclusive flag differs: RabbitMQ reports it as a lock.
                return Err(ReplyError::new(
                    ErrorKind::ResourceLocked,
                    format!(
                        "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                        q.name, self.name
                    ),
                ));
            }
            let ineq = |arg: &str, got: bool, cur: bool| {
                Err(precondition(format!(
                    "inequivalent arg '{arg}' for queue '{}' in vhost '{}': received '{}' but current is '{}'",
                    q.name,
                    self.name,
                    yes_no(got),
                    yes_no(cur)
                )))
            };
            if q.durable != d.durable {
                return ineq("durable", d.durable, q.durable);
            }
            if q.auto_delete != d.auto_delete {
                return ineq("auto_delete", d.auto_delete, q.auto_delete);
            }
            queue_args::check_equivalent(d.arguments, &q.arguments, &q.name, &self.name)?;
            q.touch();
            let (m, c) = q.counts();
            return Ok((q, m, c));
        }
        // A quorum queue is durable, shared and kept: RabbitMQ's checks, in its order.
        if args.queue_type == queue_args::QueueType::Quorum {
            let bad = [(d.auto_delete, "auto-delete"), (d.exclusive, "exclusive-owner"), (!d.durable, "non-durable")];
            if let Some((_, prop)) = bad.iter().find(|(b, _)| *b) {
                return Err(precondition(format!("invalid property '{prop}' for queue '{}' in vhost '{}'", d.name, self.name)));
            }
        }
        // Durable, non-exclusive queues are written to the store; their persistent messages too.
        let mut stored = None;
        if let (Some(store), true, false, false) = (&self.store, d.durable, d.exclusive, self.is_deleted()) {
            let def = crate::store::QueueDef {
                vhost: self.name.clone(),
                name: d.name.into(),
                durable: true,
                auto_delete: d.auto_delete,
                arguments: persist::encode_table(d.arguments),
            };
            let id = store.put_queue(&def).map_err(store_error)?;
            stored = Some((id, store.message_log()));
        }
        let q = Arc::new(Queue::new(
            d.name.into(),
            self.name.clone(),
            d.durable,
            d.auto_delete,
            d.exclusive.then_some(d.owner),
            d.arguments.clone(),
            args,
            stored,
            self.queue_ram_limit,
        )
        .with_flow_limits(self.queue_flow)
        .with_pages(self.transient.pages()));
        q.set_home(self.me.clone());
        self.attach_policy_queue(&q);
        map.insert(d.name.into(), q.clone());
        counters::bump(&self.counters.queues_created);
        ttl::watch_queue_expiry(self.me.clone(), &q);
        Ok((q, 0, 0))
    }

    /// Deletes a queue; returns the number of messages it held.
    pub fn delete_queue(&self, q: &Arc<Queue>, if_unused: bool, if_empty: bool) -> Result<u32, ReplyError> {
        let (m, c) = q.counts();
        if if_unused && c > 0 {
            return Err(precondition(format!("queue '{}' in vhost '{}' in use", q.name, self.name)));
        }
        if if_empty && m > 0 {
            return Err(precondition(format!("queue '{}' in vhost '{}' not empty", q.name, self.name)));
        }
        Ok(self.remove_queue(q))
    }

    /// Removes a queue unconditionally (exclusive owner gone, auto-delete, forced delete).
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        {
            let mut map = self.queues.write();
            match map.get(&q.name) {
                Some(cur) if Arc::ptr_eq(cur, q) => {
                    map.remove(&q.name);
                    counters::bump(&self.counters.queues_deleted);
                }
                _ => return 0,
            }
        }
        let n = q.mark_deleted();
        let _ = self.persist(q.store.is_some(), |s| s.delete_queue(&self.name, &q.name).map(|_| ()));
        self.unbind_everywhere(&Destination::Queue(q.clone()));
        n
    }

    pub fn bind(&self, source: &Arc<Exchange>, dest: Destination, key: &str, args: &FieldTable) -> Result<(), ReplyError> {
        match source.validate_binding(&dest, key, args) {
            Ok(Ok(())) => {}
            Ok(Err(text)) => return Err(precondition(text)),
            Err(e) => return Err(ReplyError::new(ErrorKind::ChannelInternalError, e.0)),
        }
        let durable = persist::binding_is_durable(source, &dest);
        let def = persist::binding_def(&self.name, &source.name, &dest, key, args);
        let outcome = source.add_binding(dest, key, args).map_err(|e| ReplyError::new(ErrorKind::ChannelInternalError, e.0))?;
        if outcome == BindOutcome::Changed {
            self.persist(durable, |s| s.put_binding(&def))?;
        }
        Ok(())
    }

    pub fn unbind(&self, source: &Arc<Exchange>, dest: &Destination, key: &str, args: &FieldTable) -> Result<(), ReplyError> {
        let outcome = source.remove_binding(dest, key, args).map_err(|e| ReplyError::new(ErrorKind::ChannelInternalError, e.0))?;
        if outcome == BindOutcome::Changed {
            let def = persist::binding_def(&self.name, &source.name, dest, key, args);
            self.persist(persist::binding_is_durable(source, dest), |s| s.delete_binding(&def).map(|_| ()))?;
        }
        if outcome == BindOutcome::Changed && source.auto_delete && !source.has_bindings() {
            self.remove_exchange(source);
        }
        Ok(())
    }

    /// Routes a message published to `exchange` (following exchange-to-exchange bindings) and
    /// appends each destination queue once to `queues`. On a failing exchange type, returns the
    /// failing exchange's name with the failure.
    pub fn route(
        &self,
        exchange: &Arc<Exchange>,
        view: &message::Message,
        queues: &mut Vec<Arc<Queue>>,
    ) -> Result<(), (String, String, crate::exchange_type::TypeFailure)> {
        thread_local! {
            // Reused destination list: routing allocates nothing per message in the common case.
            static DESTS: std::cell::RefCell<Vec<Destination>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        DESTS.with(|cell| {
            let mut dests = cell.take();
            dests.clear();
            let r = Self::route_into(exchange, view, queues, &mut dests);
            dests.clear();
            cell.replace(dests);
            r
        })
    }

    fn route_into(
        exchange: &Arc<Exchange>,
        view: &message::Message,
        queues: &mut Vec<Arc<Queue>>,
        dests: &mut Vec<Destination>,
    ) -> Result<(), (String, String, crate::exchange_type::TypeFailure)> {
        exchange.route(view, dests).map_err(|e| (exchange.name.clone(), exchange.kind.clone(), e))?;
        // Exchanges already routed through (allocated only when e2e bindings are followed).
        let mut visited: Vec<*const Exchange> = Vec::new();
        let mut i = 0;
        while i < dests.len() {
            match &dests[i] {
                Destination::Queue(q) => {
                    if !queues.iter().any(|x| Arc::ptr_eq(x, q)) && !q.is_deleted() {
                        queues.push(q.clone());
                    }
                }
                Destination::Exchange(x) => {
                    let x = x.clone();
                    if !Arc::ptr_eq(&x, exchange) && !visited.contains(&Arc::as_ptr(&x)) && !x.is_deleted() {
                        visited.push(Arc::as_ptr(&x));
                        x.route(view, dests).map_err(|e| (x.name.clone(), x.kind.clone(), e))?;
                    }
                }
            }
            i += 1;
        }
        Ok(())
    }
}
