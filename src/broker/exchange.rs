//! Exchanges: declared properties, the authoritative binding list, and the exchange type's router.

use super::queue::Queue;
use super::message::Message;
use crate::exchange_type::{BindingView, DestinationId, ExchangeRouter, ExchangeTypeFactory, MessageView, RoutingInputs, TypeFailure};
use crate::protocol::FieldTable;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a binding leads.
#[derive(Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

impl Destination {
    pub fn same(&self, other: &Destination) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => &q.name,
            Destination::Exchange(x) => &x.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Queue(_) => "queue",
            Destination::Exchange(_) => "exchange",
        }
    }
}

#[derive(Clone)]
pub struct Binding {
    pub destination: Destination,
    pub key: String,
    pub arguments: FieldTable,
    id: DestinationId,
}

struct Slot {
    dest: Option<Destination>,
    refs: u32,
}

struct RouteState {
    factory: Arc<dyn ExchangeTypeFactory>,
    reads: RoutingInputs,
    router: Box<dyn ExchangeRouter>,
    bindings: Vec<Binding>,
    slots: Vec<Slot>,
    scratch: Vec<DestinationId>,
}

pub struct Exchange {
    pub name: String,
    pub vhost: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    state: Mutex<RouteState>,
    pub deleted: AtomicBool,
    /// The policy that applies (set and cleared live; see `policy.rs`).
    pub policy: arc_swap::ArcSwapOption<super::policy::Applied>,
    /// `publish_in` / `publish_out` (management `message_stats`).
    pub stats: super::stats::ExchangeStats,
}

/// Result of adding or removing a binding.
#[derive(Debug, PartialEq, Eq)]
pub enum BindOutcome {
    Changed,
    Unchanged,
}

impl Exchange {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        vhost: String,
        factory: Arc<dyn ExchangeTypeFactory>,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Result<Exchange, TypeFailure> {
        let router = factory.create(&name, &arguments)?;
        Ok(Exchange {
            kind: factory.info().name.clone(),
            name,
            vhost,
            durable,
            auto_delete,
            internal,
            arguments,
            state: Mutex::new(RouteState {
                reads: factory.info().reads,
                factory,
                router,
                bindings: Vec::new(),
                slots: Vec::new(),
                scratch: Vec::new(),
            }),
            deleted: AtomicBool::new(false),
            policy: Default::default(),
            stats: Default::default(),
        })
    }

    /// The alternate exchange: the `alternate-exchange` argument, else the policy's.
    pub fn alternate_exchange(&self) -> Option<String> {
        match self.arguments.inner().get("alternate-exchange") {
            Some(v) => super::queue_args::as_str(v),
            None => self.policy.load().as_ref().and_then(|p| p.alternate_exchange()),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn slot_for(st: &mut RouteState, dest: &Destination) -> DestinationId {
        if let Some(i) = st.slots.iter().position(|s| s.dest.as_ref().is_some_and(|d| d.same(dest))) {
            st.slots[i].refs += 1;
            return i as DestinationId;
        }
        if let Some(i) = st.slots.iter().position(|s| s.dest.is_none()) {
            st.slots[i] = Slot { dest: Some(dest.clone()), refs: 1 };
            return i as DestinationId;
        }
        st.slots.push(Slot { dest: Some(dest.clone()), refs: 1 });
        (st.slots.len() - 1) as DestinationId
    }

    fn release_slot(st: &mut RouteState, id: DestinationId) {
        let s = &mut st.slots[id as usize];
        s.refs -= 1;
        if s.refs == 0 {
            s.dest = None;
        }
    }

    /// Checks a binding with the exchange type (`Ok(Err(text))` → 406).
    pub fn validate_binding(&self, dest: &Destination, key: &str, args: &FieldTable) -> Result<Result<(), String>, TypeFailure> {
        let mut st = self.state.lock();
        let id = st.slots.iter().position(|s| s.dest.as_ref().is_some_and(|d| d.same(dest))).unwrap_or(u32::MAX as usize);
        st.router.validate_binding(&BindingView { destination: id as DestinationId, binding_key: key, arguments: args })
    }

    pub fn add_binding(&self, dest: Destination, key: &str, args: &FieldTable) -> Result<BindOutcome, TypeFailure> {
        let mut st = self.state.lock();
        if st.bindings.iter().any(|b| b.destination.same(&dest) && b.key == key && &b.arguments == args) {
            return Ok(BindOutcome::Unchanged);
        }
        let id = Self::slot_for(&mut st, &dest);
        if let Err(e) = st.router.add_binding(&BindingView { destination: id, binding_key: key, arguments: args }) {
            Self::release_slot(&mut st, id);
            return Err(e);
        }
        st.bindings.push(Binding { destination: dest, key: key.to_owned(), arguments: args.clone(), id });
        Ok(BindOutcome::Changed)
    }

    pub fn remove_binding(&self, dest: &Destination, key: &str, args: &FieldTable) -> Result<BindOutcome, TypeFailure> {
        let mut st = self.state.lock();
        let Some(i) = st.bindings.iter().position(|b| b.destination.same(dest) && b.key == key && &b.arguments == args) else {
            return Ok(BindOutcome::Unchanged);
        };
        let b = st.bindings.remove(i);
        let r = st.router.remove_binding(&BindingView { destination: b.id, binding_key: &b.key, arguments: &b.arguments });
        Self::release_slot(&mut st, b.id);
        r.map(|_| BindOutcome::Changed)
    }

    /// Removes every binding to `dest`; returns how many were removed.
    pub fn remove_bindings_to(&self, dest: &Destination) -> usize {
        let mut st = self.state.lock();
        let (gone, keep): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut st.bindings).into_iter().partition(|b| b.destination.same(dest));
        st.bindings = keep;
        for b in &gone {
            let _ = st.router.remove_binding(&BindingView { destination: b.id, binding_key: &b.key, arguments: &b.arguments });
            Self::release_slot(&mut st, b.id);
        }
        gone.len()
    }

    pub fn bindings(&self) -> Vec<Binding> {
        self.state.lock().bindings.clone()
    }

    /// How many bindings have this exchange as source (metrics).
    pub fn binding_count(&self) -> usize {
        self.state.lock().bindings.len()
    }

    pub fn has_bindings(&self) -> bool {
        !self.state.lock().bindings.is_empty()
    }

    /// Moves the exchange to another implementation of its type (a reloaded plugin, or a stand-in
    /// for a disabled one): a new router gets every binding validated and replayed, then replaces
    /// the old one. On failure (a binding the new type refuses) the old router keeps serving.
    pub fn swap_type(&self, factory: Arc<dyn ExchangeTypeFactory>) -> Result<(), TypeFailure> {
        let mut st = self.state.lock();
        let mut router = factory.create(&self.name, &self.arguments)?;
        for b in &st.bindings {
            let view = BindingView { destination: b.id, binding_key: &b.key, arguments: &b.arguments };
            // Bindings made while the type was away were never checked by it. (A stand-in
            // refuses every new binding but keeps the existing ones.)
            if factory.available()
                && let Err(text) = router.validate_binding(&view)?
            {
                return Err(TypeFailure(format!(
                    "the binding to {} '{}' with key '{}' is refused by type '{}': {text}",
                    b.destination.kind(),
                    b.destination.name(),
                    b.key,
                    factory.info().name
                )));
            }
            router.add_binding(&view)?;
        }
        st.reads = factory.info().reads;
        st.factory = factory;
        st.router = router;
        Ok(())
    }

    /// Routes one message; destinations are appended to `out` (may contain duplicates). The type
    /// sees only the parts of the message it declared it reads.
    pub fn route(&self, msg: &Message, out: &mut Vec<Destination>) -> Result<(), TypeFailure> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        st.scratch.clear();
        let view = MessageView {
            routing_key: &msg.routing_key,
            headers: if st.reads.headers { msg.properties.headers().as_ref() } else { None },
            body: if st.reads.body { Some(&msg.body) } else { None },
            properties: if st.reads.properties { Some(&msg.properties) } else { None },
        };
        st.router.route(&view, &mut st.scratch)?;
        for id in &st.scratch {
            if let Some(Slot { dest: Some(d), .. }) = st.slots.get(*id as usize) {
                out.push(d.clone());
            }
        }
        Ok(())
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        let mut st = self.state.lock();
        st.bindings.clear();
        st.slots.clear();
        st.router.delete();
    }
}
