//! Between the broker's objects and the store's records: field-table encoding, message records,
//! and start-up recovery of definitions and persistent messages.

use super::auth::{Permission, User};
use super::exchange::Destination;
use super::message::Message;
use super::queue::Queue;
use super::{Broker, Vhost};
use crate::protocol::FieldTable;
use crate::store::{BindingDef, ExchangeDef, PermissionDef, QueueDef, Store, StoreError, StoredMessage, UserDef};
use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::basic;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// RabbitMQ's description of the vhost made at first start.
pub const DEFAULT_VHOST_DESCRIPTION: &str = "Default virtual host";

pub fn encode_table(t: &FieldTable) -> Vec<u8> {
    let ctx = WriteContext::from(Vec::new());
    let (v, _) = amq_protocol::types::generation::gen_field_table(t)(ctx).expect("writing to a Vec").into_inner();
    v
}

pub fn decode_table(b: &[u8]) -> FieldTable {
    if b.is_empty() {
        return FieldTable::default();
    }
    amq_protocol::types::parsing::parse_field_table(b).map(|(_, t)| t).unwrap_or_default()
}

/// The store record of a persistent message (encoded once, shared by every queue). With
/// `published` (ms since the Unix epoch; for messages that may expire) recovery can give the
/// message its TTL back.
pub fn record(msg: &Message, published: Option<u64>) -> Bytes {
    let sm = stored(msg);
    match published {
        Some(t) => sm.encode_with_published(t),
        None => sm.encode(),
    }
    .unwrap_or_else(|_| Bytes::new())
}

/// A message as a store record (no copy: properties and body are views of the message's).
pub fn stored(msg: &Message) -> StoredMessage {
    StoredMessage {
        exchange: msg.exchange.to_string(),
        routing_key: msg.routing_key.to_string(),
        // Property flags and properties: the header payload after class, weight and body size.
        properties: msg.header_raw.slice(12..),
        body: msg.body.clone(),
        delivered: false,
    }
}

/// The expiry of a recovered message: its publish time plus the smaller of the queue's and its
/// own TTL (0: never). Only records written with a publish time can expire.
fn recovered_expiry(record: &[u8], queue_ttl: Option<u64>) -> u64 {
    let Some(published) = crate::store::codec::peek_published(record) else { return 0 };
    let own = StoredMessage::decode_slice(record).ok().and_then(message_from_record).and_then(|m| super::ttl::message_ttl(&m));
    let ttl = match (queue_ttl, own) {
        (None, None) => return 0,
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(0),
    };
    published.saturating_add(ttl).max(1)
}

pub(crate) fn message_from_record(sm: StoredMessage) -> Option<Message> {
    let (_, properties) = basic::parse_properties(&sm.properties[..]).ok()?;
    let mut raw = BytesMut::with_capacity(12 + sm.properties.len());
    raw.put_u16(crate::protocol::CLASS_BASIC);
    raw.put_u16(0);
    raw.put_u64(sm.body.len() as u64);
    raw.extend_from_slice(&sm.properties);
    Some(Message { exchange: sm.exchange.into(), routing_key: sm.routing_key.into(), properties: crate::protocol::Properties::new(properties), header_raw: raw.freeze(), body: sm.body })
}

pub fn exchange_def(vhost: &str, x: &super::exchange::Exchange) -> ExchangeDef {
    ExchangeDef {
        vhost: vhost.into(),
        name: x.name.clone(),
        kind: x.kind.clone(),
        durable: x.durable,
        auto_delete: x.auto_delete,
        internal: x.internal,
        arguments: encode_table(&x.arguments),
    }
}

pub fn queue_def(q: &Queue) -> QueueDef {
    QueueDef {
        vhost: q.vhost.clone(),
        name: q.name.clone(),
        durable: q.durable,
        auto_delete: q.auto_delete,
        arguments: encode_table(&q.arguments),
    }
}

pub fn binding_def(vhost: &str, source: &str, dest: &Destination, key: &str, args: &FieldTable) -> BindingDef {
    BindingDef {
        vhost: vhost.into(),
        source: source.into(),
        destination: dest.name().into(),
        destination_is_exchange: matches!(dest, Destination::Exchange(_)),
        routing_key: key.into(),
        arguments: encode_table(args),
    }
}

/// Is a binding durable (both ends durable, as RabbitMQ requires for it to survive a restart)?
pub fn binding_is_durable(source: &super::exchange::Exchange, dest: &Destination) -> bool {
    source.durable
        && match dest {
            Destination::Queue(q) => q.durable && q.exclusive_owner.is_none(),
            Destination::Exchange(x) => x.durable,
        }
}

/// The default user (an administrator with every permission on the default vhost) and vhost
/// of the config, in memory and in the store: at first start, and at `start_app` after a
/// `reset`.
pub(super) fn create_defaults(broker: &Broker, store: Option<&Store>) -> Result<(), StoreError> {
    let a = &broker.config.auth;
    broker.add_user(&a.default_user, &a.default_pass, vec!["administrator".into()]);
    let vh = broker.add_vhost(&a.default_vhost);
    vh.metadata.write().description = DEFAULT_VHOST_DESCRIPTION.into();
    broker.set_permission(&a.default_vhost, &a.default_user, Permission::all());
    let Some(store) = store else { return Ok(()) };
    let u = broker.user(&a.default_user).expect("just added");
    store.put_user(&UserDef { name: u.name, password_hash: u.password_hash, tags: u.tags, limits: u.limits })?;
    store.put_vhost(&vh.def())?;
    store.put_permission(&PermissionDef {
        user: a.default_user.clone(),
        vhost: a.default_vhost.clone(),
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    })?;
    Ok(())
}

/// First start: the default user and vhost, written to the store. Later starts: everything the
/// store holds.
pub fn recover(broker: &Arc<Broker>, store: &Store) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut defs = store.load_definitions()?;
    broker.recover_global_parameters(std::mem::take(&mut defs.global_parameters), store)?;
    if defs.vhosts.is_empty() && defs.users.is_empty() {
        create_defaults(broker, Some(store))?;
        info!("first start: created user '{}' and vhost '{}'", broker.config.auth.default_user, broker.config.auth.default_vhost);
        return Ok(());
    }
    for v in &defs.vhosts {
        let vh = broker.add_vhost(&v.name);
        *vh.limits.write() = v.limits.clone();
        *vh.metadata.write() = super::VhostMetadata { description: v.description.clone(), tags: v.tags.clone() };
        super::policies::load(&vh, v);
    }
    for u in defs.users {
        broker.insert_user(User { name: u.name, password_hash: u.password_hash, tags: u.tags, limits: u.limits });
    }
    for p in defs.permissions {
        match Permission::new(&p.configure, &p.write, &p.read) {
            Ok(perm) => broker.set_permission(&p.vhost, &p.user, perm),
            Err(e) => warn!("skipping stored permission of '{}' on '{}': {e}", p.user, p.vhost),
        }
    }
    for t in &defs.topic_permissions {
        broker.topic_permissions.insert(t);
    }
    let log = store.message_log();
    for x in defs.exchanges {
        let Some(vh) = broker.vhost(&x.vhost) else { continue };
        let factory = match broker.exchange_type(&x.kind) {
            Some(f) => f,
            None => {
                warn!("exchange '{}' in vhost '{}' has type '{}', whose plugin is not enabled: it routes nothing until it is", x.name, x.vhost, x.kind);
                std::sync::Arc::new(crate::exchange_type::Unavailable::named(&x.kind))
            }
        };
        match super::exchange::Exchange::new(x.name.clone(), x.vhost.clone(), factory, x.durable, x.auto_delete, x.internal, decode_table(&x.arguments)) {
            Ok(e) => {
                vh.exchanges.write().insert(x.name, Arc::new(e));
            }
            Err(e) => warn!("cannot restore exchange '{}': {}", x.name, e.0),
        }
    }
    let (mut nq, mut nm) = (0usize, 0usize);
    for r in defs.queues {
        let Some(vh) = broker.vhost(&r.def.vhost) else { continue };
        let arguments = decode_table(&r.def.arguments);
        // Stored arguments passed validation at declare; a file from another version that
        // fails it now keeps the queue (as RabbitMQ would) with default behaviour.
        let args = super::queue_args::QueueArgs::parse(&arguments, &r.def.name, &r.def.vhost).unwrap_or_else(|e| {
            tracing::warn!(queue = %r.def.name, vhost = %r.def.vhost, "stored queue arguments refused: {}", e.text);
            Default::default()
        });
        let q = Arc::new(Queue::new(
            r.def.name.clone(),
            r.def.vhost.clone(),
            r.def.durable,
            r.def.auto_delete,
            None,
            arguments,
            args,
            Some((r.queue_id, log.clone())),
            broker.config.storage.queue_ram_limit as usize,
        )
        .with_flow_limits(super::flow::FlowLimits::from_config(&broker.config.flow))
        .with_pages(broker.transient.pages()));
        // Its policy first: a policy's message-ttl gives recovered messages their expiry.
        q.set_home(Arc::downgrade(&vh));
        vh.attach_policy_queue(&q);
        // Only the index: bodies are read back in batches when consumers come (an unreadable
        // record is dropped then, with a warning).
        // Records with a publish time also give back the TTL expiry.
        let ttl = q.args().message_ttl;
        // Priorities (x-max-priority) need the record decoded: done for such queues only; the
        // others read the body length in place (message_bytes, x-max-length-bytes).
        let decode = q.args().max_priority.is_some();
        nm += q.restore_with(|add| {
            store.scan(r.queue_id, 0, usize::MAX, |seq, rec| {
                let (size, level) = match decode.then(|| StoredMessage::decode_slice(rec).ok()).flatten() {
                    Some(m) => {
                        let prio = basic::parse_properties(&m.properties[..]).ok().and_then(|(_, p)| *p.priority());
                        (m.body.len() as u32, prio.unwrap_or(0) as usize)
                    }
                    // Only the body's length, read in place.
                    None => (crate::store::codec::peek_body_len(rec).unwrap_or(0), 0),
                };
                add(seq, recovered_expiry(rec, ttl), size, level);
                Ok(())
            })
        })?;
        // x-expires counts from the restart, as in RabbitMQ.
        super::ttl::watch_queue_expiry(Arc::downgrade(&vh), &q);
        vh.queues.write().insert(r.def.name, q);
        nq += 1;
    }
    // Policies of the exchanges (amq.* included); queues over a policy's length limit are
    // trimmed now, as RabbitMQ does when it starts a queue.
    for vh in broker.vhosts() {
        vh.apply_policies();
    }
    for b in defs.bindings {
        let Some(vh) = broker.vhost(&b.vhost) else { continue };
        let (Some(src), dest) = (vh.exchange(&b.source), destination(&vh, &b)) else { continue };
        let Some(dest) = dest else { continue };
        if let Err(e) = src.add_binding(dest, &b.routing_key, &decode_table(&b.arguments)) {
            warn!("cannot restore binding of '{}': {}", b.source, e.0);
        }
    }
    info!(
        queues = nq,
        messages = nm,
        "recovered {nq} durable queues and {nm} persistent messages in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn destination(vh: &Vhost, b: &BindingDef) -> Option<Destination> {
    if b.destination_is_exchange {
        vh.exchange(&b.destination).map(Destination::Exchange)
    } else {
        vh.queue(&b.destination).map(Destination::Queue)
    }
}
