//! A virtual host: its exchanges, queues and bindings, and what changes them — declare and
//! delete of exchanges and queues (with RabbitMQ's equivalence checks and texts), bind and
//! unbind, and routing a message to its destination queues.

use super::*;

/// A virtual host: its own exchanges, queues and bindings.
pub struct Vhost {
    pub name: String,
    /// This vhost (for tasks that act on it later, such as queue expiry).
    me: Weak<Vhost>,
    /// Direct reply-to consumers.
    pub reply_to: reply_to::ReplyTo,
    pub exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    /// Looked up by name for every message published to the default exchange: foldhash (seeded
    /// per map), not SipHash.
    pub queues: RwLock<HashMap<String, Arc<Queue>, foldhash::quality::RandomState>>,
    /// Held by a declare that creates a durable exchange or queue, across the commit of its
    /// definition (the object becomes visible only once that is durable): creators of stored
    /// objects take turns here, while the maps above are write-locked only to check and insert,
    /// so that routing and lookups never wait for a commit.
    creating: Mutex<()>,
    store: Option<Arc<Store>>,
    /// Body bytes each durable queue keeps in memory ahead of its consumers.
    queue_ram_limit: usize,
    /// Publisher flow-control limits of its queues.
    queue_flow: flow::FlowLimits,
    /// Where its queues page transient messages.
    transient: Arc<crate::store::transient::TransientDir>,
    /// Set by `delete_vhost`: connections still holding it write nothing more to the store.
    pub(super) deleted: AtomicBool,
    /// `set_vhost_limits` (see `limits.rs`).
    pub limits: RwLock<limits::Limits>,
    /// `set_policy` / `set_operator_policy` (see `policies.rs`).
    pub policies: RwLock<policy::PolicySet>,
    pub operator_policies: RwLock<policy::PolicySet>,
    /// Description and tags (RabbitMQ's vhost metadata; shown, not interpreted).
    pub metadata: RwLock<VhostMetadata>,
    /// `publish_in` / `publish_out` of the default exchange (which has no `Exchange`).
    pub default_stats: stats::ExchangeStats,
    /// The message counters of its closed channels and of the management API's publish and get
    /// (the broker-wide sum is `Broker::retired.channels`): with its open channels', the
    /// overview's `message_stats` of a user who sees only some vhosts.
    pub closed_channels: stats::MessageStats,
    /// The broker's churn counters.
    pub counters: Arc<counters::Counters>,
    /// The broker's totals of deleted queues (and closed channels).
    pub retired: Arc<stats::Retired>,
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
    pub(super) fn new(
        name: &str,
        me: Weak<Vhost>,
        store: Option<Arc<Store>>,
        queue_ram_limit: usize,
        queue_flow: flow::FlowLimits,
        transient: Arc<crate::store::transient::TransientDir>,
        counters: Arc<counters::Counters>,
        retired: Arc<stats::Retired>,
    ) -> Vhost {
        Vhost {
            name: name.into(),
            me,
            reply_to: Default::default(),
            exchanges: RwLock::default(),
            queues: RwLock::default(),
            creating: Mutex::new(()),
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
            closed_channels: Default::default(),
            counters,
            retired,
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// The store, if an object of this durability is written to it.
    fn store_for(&self, durable: bool) -> Option<&Store> {
        self.store.as_deref().filter(|_| durable && !self.is_deleted())
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    /// The queue the default exchange routes `key` to. The last one found on this thread is
    /// remembered (a publisher usually sends to one queue): while it lives, is not flagged
    /// deleted and has that name in this vhost, it is still the map's entry for the name (a
    /// queue is flagged deleted as it leaves the map, see `remove_queue`, and a name's entry is
    /// only ever added when absent), so the map's lock and hash are skipped.
    pub fn default_route(&self, key: &str) -> Option<Arc<Queue>> {
        thread_local! {
            static LAST: std::cell::RefCell<std::sync::Weak<Queue>> = const { std::cell::RefCell::new(std::sync::Weak::new()) };
        }
        LAST.with(|last| {
            if let Some(q) = last.borrow().upgrade()
                && !q.is_deleted()
                && q.name == key
                && q.vhost == self.name
            {
                return Some(q);
            }
            let q = self.queue(key)?;
            *last.borrow_mut() = Arc::downgrade(&q);
            Some(q)
        })
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
        if let Some(x) = self.exchange(d.name) {
            return self.redeclare_exchange(x, d);
        }
        let store = self.store_for(d.durable);
        let _creating = store.map(|_| self.creating.lock());
        if let Some(x) = self.exchange(d.name) {
            return self.redeclare_exchange(x, d);
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
        if let Some(s) = store {
            s.put_exchange(&persist::exchange_def(&self.name, &x)).map_err(store_error)?;
        }
        let mut map = self.exchanges.write();
        if let Some(cur) = map.get(d.name).cloned() {
            // A transient exchange of that name was created during the commit: take back the
            // definition just written (no other creator of a stored one can have run meanwhile).
            let undo = store.map(|s| s.submit_delete_exchange(&self.name, d.name));
            drop(map);
            if let Some(u) = undo {
                let _ = u.wait();
            }
            return self.redeclare_exchange(cur, d);
        }
        self.attach_policy_exchange(&x);
        map.insert(d.name.into(), x.clone());
        Ok(x)
    }

    /// exchange.declare of an existing exchange: RabbitMQ's equivalence checks.
    fn redeclare_exchange(&self, x: Arc<Exchange>, d: &ExchangeDecl<'_>) -> Result<Arc<Exchange>, ReplyError> {
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
        self.exchanges.read().values().any(|e| e.binds_to(&d))
    }

    fn remove_exchange(&self, x: &Arc<Exchange>) {
        // Queued for the store in turn with the creators of stored exchanges (see `remove_queue`).
        let store = self.store_for(x.durable);
        let creating = store.map(|_| self.creating.lock());
        self.exchanges.write().remove(&x.name);
        // Flagged under `creating`: a bind that follows sees it gone (see `bind`).
        x.flag_deleted();
        let deleted = store.map(|s| s.submit_delete_exchange(&self.name, &x.name));
        drop(creating);
        if let Some(d) = deleted {
            let _ = d.wait();
        }
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
        if let Some(q) = self.queue(d.name) {
            return self.redeclare_queue(q, d);
        }
        // Durable, non-exclusive queues are written to the store; their persistent messages too.
        let store = self.store_for(d.durable && !d.exclusive);
        let _creating = store.map(|_| self.creating.lock());
        if let Some(q) = self.queue(d.name) {
            return self.redeclare_queue(q, d);
        }
        limits::check_queue_limit(&self.limits.read(), &self.name, d.name, self.queues.read().len())?;
        // A quorum queue is durable, shared and kept: RabbitMQ's checks, in its order.
        if args.queue_type == queue_args::QueueType::Quorum {
            let bad = [(d.auto_delete, "auto-delete"), (d.exclusive, "exclusive-owner"), (!d.durable, "non-durable")];
            if let Some((_, prop)) = bad.iter().find(|(b, _)| *b) {
                return Err(precondition(format!("invalid property '{prop}' for queue '{}' in vhost '{}'", d.name, self.name)));
            }
        }
        let mut stored = None;
        if let Some(store) = store {
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
        let mut map = self.queues.write();
        // During the commit, a queue the store never sees (transient, exclusive) may have taken
        // the name, or the vhost's queue limit: take back the definition just written (no other
        // creator of a stored queue can have run meanwhile).
        let clash = match map.get(d.name) {
            Some(cur) => Some(Ok(cur.clone())),
            None => limits::check_queue_limit(&self.limits.read(), &self.name, d.name, map.len()).err().map(Err),
        };
        if let Some(clash) = clash {
            let undo = store.map(|s| s.submit_delete_queue(&self.name, d.name));
            drop(map);
            if let Some(u) = undo {
                let _ = u.wait();
            }
            return self.redeclare_queue(clash?, d);
        }
        self.attach_policy_queue(&q);
        map.insert(d.name.into(), q.clone());
        drop(map);
        counters::bump(&self.counters.queues_created);
        ttl::watch_queue_expiry(self.me.clone(), &q);
        Ok((q, 0, 0))
    }

    /// queue.declare of an existing queue: RabbitMQ's exclusivity and equivalence checks.
    fn redeclare_queue(&self, q: Arc<Queue>, d: &QueueDecl<'_>) -> Result<(Arc<Queue>, u32, u32), ReplyError> {
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
        Ok((q, m, c))
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
        // A stored queue's delete is queued for the store in turn with the creators of stored
        // queues, so that a declare of the same name that follows writes its definition after it.
        let store = self.store_for(q.store.is_some());
        let creating = store.map(|_| self.creating.lock());
        {
            let _moving = self.retired.moving();
            let mut map = self.queues.write();
            match map.get(&q.name) {
                Some(cur) if Arc::ptr_eq(cur, q) => {
                    map.remove(&q.name);
                    q.flag_deleted();
                    q.retire(&self.retired);
                    counters::bump(&self.counters.queues_deleted);
                }
                _ => return 0,
            }
        }
        let n = q.mark_deleted();
        let deleted = store.map(|s| s.submit_delete_queue(&self.name, &q.name));
        drop(creating);
        if let Some(d) = deleted {
            let _ = d.wait();
        }
        self.unbind_everywhere(&Destination::Queue(q.clone()));
        n
    }

    pub fn bind(&self, source: &Arc<Exchange>, dest: Destination, key: &str, args: &FieldTable) -> Result<(), ReplyError> {
        match source.validate_binding(&dest, key, args) {
            Ok(Ok(())) => {}
            Ok(Err(text)) => return Err(precondition(text)),
            Err(e) => return Err(ReplyError::new(ErrorKind::ChannelInternalError, e.0)),
        }
        let def = persist::binding_def(&self.name, &source.name, &dest, key, args);
        // A stored binding changes in memory and is queued for the store under `creating`, so
        // that binds and unbinds of it (and deletes of its ends, marked deleted under the same
        // lock) reach the store in the broker's order.
        let store = self.store_for(persist::binding_is_durable(source, &dest));
        let creating = store.map(|_| self.creating.lock());
        if store.is_some() {
            if source.is_deleted() {
                return Err(not_found("exchange", &source.name, &self.name));
            }
            if dest.is_deleted() {
                return Err(not_found(dest.kind(), dest.name(), &self.name));
            }
        }
        let outcome = source.add_binding(dest, key, args).map_err(|e| ReplyError::new(ErrorKind::ChannelInternalError, e.0))?;
        let written = store.filter(|_| outcome == BindOutcome::Changed).map(|s| s.submit_put_binding(&def));
        drop(creating);
        if let Some(w) = written {
            w.wait().map_err(store_error)?;
        }
        Ok(())
    }

    pub fn unbind(&self, source: &Arc<Exchange>, dest: &Destination, key: &str, args: &FieldTable) -> Result<(), ReplyError> {
        let store = self.store_for(persist::binding_is_durable(source, dest));
        let creating = store.map(|_| self.creating.lock());
        let outcome = source.remove_binding(dest, key, args).map_err(|e| ReplyError::new(ErrorKind::ChannelInternalError, e.0))?;
        let deleted = store
            .filter(|_| outcome == BindOutcome::Changed)
            .map(|s| s.submit_delete_binding(&persist::binding_def(&self.name, &source.name, dest, key, args)));
        drop(creating);
        if let Some(d) = deleted {
            d.wait().map_err(store_error)?;
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
