//! Exchanges: declared properties, the authoritative binding list, and the exchange type's router.

use super::queue::Queue;
use super::message::Message;
use crate::exchange_type::{BindingView, DestinationId, ExchangeRouter, ExchangeTypeFactory, MessageView, RoutingInputs, TypeFailure};
use crate::protocol::FieldTable;
use parking_lot::Mutex;
use std::collections::HashMap;
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

    pub fn is_deleted(&self) -> bool {
        match self {
            Destination::Queue(q) => q.is_deleted(),
            Destination::Exchange(x) => x.is_deleted(),
        }
    }

    /// The address of the queue or exchange: equal for two destinations exactly when `same`.
    fn addr(&self) -> usize {
        match self {
            Destination::Queue(q) => Arc::as_ptr(q) as *const u8 as usize,
            Destination::Exchange(x) => Arc::as_ptr(x) as *const u8 as usize,
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
    /// Slot of each destination, by the address of its `Arc` (the slot holds a clone, so the
    /// address cannot be reused while it is here): finding a destination's slot does not scan
    /// the slots (100,000 queues bound to one exchange).
    slot_of: HashMap<usize, DestinationId>,
    /// Free slots, reused before new ones are pushed.
    free: Vec<DestinationId>,
    /// How many bindings each (destination, key) has: a new binding is compared with the
    /// existing ones only when one with the same destination and key exists, so adding the
    /// n-th binding does not scan the n - 1 before it.
    keys: HashMap<(DestinationId, Box<str>), u32>,
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
                slot_of: HashMap::new(),
                free: Vec::new(),
                keys: HashMap::new(),
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
        if let Some(&i) = st.slot_of.get(&dest.addr()) {
            st.slots[i as usize].refs += 1;
            return i;
        }
        let slot = Slot { dest: Some(dest.clone()), refs: 1 };
        let i = match st.free.pop() {
            Some(i) => {
                st.slots[i as usize] = slot;
                i
            }
            None => {
                st.slots.push(slot);
                (st.slots.len() - 1) as DestinationId
            }
        };
        st.slot_of.insert(dest.addr(), i);
        i
    }

    fn release_slot(st: &mut RouteState, id: DestinationId) {
        let s = &mut st.slots[id as usize];
        s.refs -= 1;
        if s.refs == 0
            && let Some(d) = s.dest.take()
        {
            st.slot_of.remove(&d.addr());
            st.free.push(id);
        }
    }

    /// Counts one binding more (`add`) or less under its (destination, key).
    fn count_key(st: &mut RouteState, id: DestinationId, key: &str, add: bool) {
        if add {
            *st.keys.entry((id, key.into())).or_insert(0) += 1;
        } else {
            let k = (id, Box::<str>::from(key));
            if let Some(n) = st.keys.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    st.keys.remove(&k);
                }
            }
        }
    }

    /// Checks a binding with the exchange type (`Ok(Err(text))` → 406).
    pub fn validate_binding(&self, dest: &Destination, key: &str, args: &FieldTable) -> Result<Result<(), String>, TypeFailure> {
        let mut st = self.state.lock();
        let id = st.slot_of.get(&dest.addr()).copied().unwrap_or(u32::MAX);
        st.router.validate_binding(&BindingView { destination: id as DestinationId, binding_key: key, arguments: args })
    }

    /// Whether the binding exists (the scan runs only when the destination has a binding with
    /// this key).
    fn find(st: &RouteState, dest: &Destination, key: &str, args: &FieldTable) -> Option<usize> {
        let id = *st.slot_of.get(&dest.addr())?;
        if !st.keys.contains_key(&(id, Box::<str>::from(key))) {
            return None;
        }
        st.bindings.iter().position(|b| b.id == id && b.key == key && &b.arguments == args)
    }

    pub fn add_binding(&self, dest: Destination, key: &str, args: &FieldTable) -> Result<BindOutcome, TypeFailure> {
        let mut st = self.state.lock();
        if Self::find(&st, &dest, key, args).is_some() {
            return Ok(BindOutcome::Unchanged);
        }
        let id = Self::slot_for(&mut st, &dest);
        if let Err(e) = st.router.add_binding(&BindingView { destination: id, binding_key: key, arguments: args }) {
            Self::release_slot(&mut st, id);
            return Err(e);
        }
        Self::count_key(&mut st, id, key, true);
        st.bindings.push(Binding { destination: dest, key: key.to_owned(), arguments: args.clone(), id });
        Ok(BindOutcome::Changed)
    }

    pub fn remove_binding(&self, dest: &Destination, key: &str, args: &FieldTable) -> Result<BindOutcome, TypeFailure> {
        let mut st = self.state.lock();
        let Some(i) = Self::find(&st, dest, key, args) else {
            return Ok(BindOutcome::Unchanged);
        };
        let b = st.bindings.remove(i);
        let r = st.router.remove_binding(&BindingView { destination: b.id, binding_key: &b.key, arguments: &b.arguments });
        Self::count_key(&mut st, b.id, &b.key, false);
        Self::release_slot(&mut st, b.id);
        r.map(|_| BindOutcome::Changed)
    }

    /// Removes every binding to `dest`; returns how many were removed. Nothing is scanned when
    /// `dest` has no binding here (a deleted queue is unbound from every exchange of its vhost).
    pub fn remove_bindings_to(&self, dest: &Destination) -> usize {
        let mut st = self.state.lock();
        let Some(&id) = st.slot_of.get(&dest.addr()) else {
            return 0;
        };
        let (gone, keep): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut st.bindings).into_iter().partition(|b| b.id == id);
        st.bindings = keep;
        let views: Vec<BindingView<'_>> =
            gone.iter().map(|b| BindingView { destination: b.id, binding_key: &b.key, arguments: &b.arguments }).collect();
        let _ = st.router.remove_bindings(&views);
        for b in &gone {
            Self::count_key(&mut st, b.id, &b.key, false);
            Self::release_slot(&mut st, b.id);
        }
        gone.len()
    }

    /// Whether some binding of this exchange leads to `dest`.
    pub fn binds_to(&self, dest: &Destination) -> bool {
        self.state.lock().slot_of.contains_key(&dest.addr())
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

    /// Flags the exchange deleted at once, before `mark_deleted` clears it (and tells its
    /// router): set under the vhost's `creating` lock, so a bind that follows sees it gone
    /// without the plugin call happening under that lock.
    pub fn flag_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        let mut st = self.state.lock();
        st.bindings.clear();
        st.slots.clear();
        st.slot_of.clear();
        st.free.clear();
        st.keys.clear();
        st.router.delete();
    }
}
