//! One AMQP channel: its state and the dispatch of its methods to one file per AMQP class
//! (`basic.rs`, `exchange.rs`, `queue.rs`, `confirm.rs`, `tx.rs`); `publish.rs` assembles a
//! published message from its frames and hands it to the broker's publish pipeline.

mod authz;
mod basic;
mod confirm;
mod exchange;
mod publish;
mod queue;
mod tx;

use super::ConnCtx;
use crate::auth_backend::ResourceKind;
use crate::broker::auth::Access;
use crate::broker::delivery::{ChannelShared, Consumer, Unacked};
use crate::broker::outbound::ConnShared;
use crate::broker::exchange::Exchange;
use crate::broker::backlog::Ready;
use crate::broker::queue::Queue;
use crate::protocol::frame;
use crate::protocol::reply::{ErrorKind, ReplyError, access_refused, not_implemented};
use crate::protocol::{AMQPClass, channel as chan};
use publish::Pending;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tx::Tx;

pub(crate) struct Channel {
    shared: Arc<ChannelShared>,
    closing: bool,
    pending: Option<Pending>,
    consumers: HashMap<String, Arc<Consumer>>,
    /// basic.qos(global=false): prefetch of consumers created from now on.
    consumer_prefetch: u32,
    confirm: bool,
    /// Sequence number of the last publish in confirm mode.
    publish_seq: u64,
    tx: Option<Tx>,
    /// Name of the last queue declared on this channel ("" in later methods means it).
    last_queue: String,
    /// Last exchange published to, with the auth stamp (`ConnCtx::auth_stamp`) at which its
    /// write permission was checked.
    last_exchange: Option<(Arc<Exchange>, Option<(u64, u64)>)>,
    /// Auth stamp at which write permission on `amq.default` was last granted (None: never).
    default_write_epoch: Option<(u64, u64)>,
    /// Direct reply-to consumer of this channel: (consumer tag, token).
    reply: Option<(String, String)>,
    /// The last allowed permission and topic checks (RabbitMQ's per-channel caches).
    authz: std::cell::RefCell<authz::AuthzCache>,
    /// The channel has published (counted once in the broker's `publishers` gauge).
    publisher: bool,
}

fn random_suffix() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn send(ctx: &ConnCtx, ch: u16, m: AMQPClass) {
    ctx.conn.append(|out| frame::write_method(out, ch, m));
}

impl Channel {
    pub fn new(number: u16, conn: Arc<ConnShared>) -> Channel {
        Channel {
            shared: Arc::new(ChannelShared::new(number, conn)),
            closing: false,
            pending: None,
            consumers: HashMap::new(),
            consumer_prefetch: 0,
            confirm: false,
            publish_seq: 0,
            tx: None,
            last_queue: String::new(),
            last_exchange: None,
            default_write_epoch: None,
            reply: None,
            authz: Default::default(),
            publisher: false,
        }
    }

    fn number(&self) -> u16 {
        self.shared.number
    }

    /// The part of the channel queues and the admin API see.
    pub fn shared(&self) -> &Arc<ChannelShared> {
        &self.shared
    }

    /// Keeps `info.consumers` (the listing's `consumer_count`) in step with `consumers`.
    fn count_consumers(&self) {
        self.shared.info.consumers.store(self.consumers.len() as u32 + self.reply.is_some() as u32, Ordering::Relaxed);
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub fn set_closing(&mut self) {
        self.closing = true;
    }

    /// Releases everything the channel holds: consumers are cancelled, unacked messages go back to
    /// their queues (in order, flagged redelivered).
    pub fn close(&mut self, ctx: &mut ConnCtx) {
        self.shared.open.store(false, Ordering::Relaxed);
        if std::mem::take(&mut self.publisher) {
            ctx.broker.counters.publishers.fetch_sub(1, Ordering::Relaxed);
        }
        self.pending = None;
        if let Some((_, token)) = self.reply.take() {
            ctx.vhost.reply_to.unregister(&token);
        }
        for (_, c) in self.consumers.drain() {
            cancel_consumer(ctx, &c);
        }
        self.count_consumers();
        let unacked: Vec<Unacked> = self.shared.state.lock().unacked.drain(..).collect();
        requeue_grouped(unacked);
    }

    /// RabbitMQ's permission check: `access` on resource `kind` `name` (the default exchange is
    /// `amq.default`). Allowed answers are cached per channel (the last 12) until access control
    /// changes, the connection's secret is updated or its login expires.
    fn check(&self, ctx: &ConnCtx, access: Access, kind: &str, name: &str) -> Result<(), ReplyError> {
        let name = if kind == "exchange" && name.is_empty() { "amq.default" } else { name };
        let rk = if kind == "queue" { ResourceKind::Queue } else { ResourceKind::Exchange };
        let stamp = ctx.auth_stamp();
        if self.authz.borrow_mut().has_resource(stamp, rk, access, name) {
            return Ok(());
        }
        let decision = ctx.auth.backend.check_resource(&ctx.auth, &ctx.vhost.name, rk, name, access);
        if decision.allowed() {
            self.authz.borrow_mut().add_resource(stamp, rk, access, name);
            return Ok(());
        }
        let base = format!("access to {kind} '{name}' in vhost '{}' refused for user '{}'", ctx.vhost.name, ctx.user);
        Err(access_refused(decision.refusal_text(base, ctx.auth.backend.name())))
    }

    /// RabbitMQ's topic authorisation: on a topic exchange, publishing (`Write`) and binding or
    /// unbinding (`Read`) with `routing_key` need the user's topic permission. Cached as `check`.
    fn check_topic(&self, ctx: &ConnCtx, x: &Exchange, routing_key: &str, access: Access) -> Result<(), ReplyError> {
        if x.kind != "topic" || !ctx.auth.backend.restricts_topics() {
            return Ok(());
        }
        let stamp = ctx.auth_stamp();
        if self.authz.borrow_mut().has_topic(stamp, access, &x.name, routing_key) {
            return Ok(());
        }
        let decision = ctx.auth.backend.check_topic(&ctx.auth, &ctx.vhost.name, &x.name, routing_key, access);
        if decision.allowed() {
            self.authz.borrow_mut().add_topic(stamp, access, &x.name, routing_key);
            return Ok(());
        }
        let base = format!(
            "access to topic '{routing_key}' in exchange '{}' in vhost '{}' refused for user '{}'",
            x.name, ctx.vhost.name, ctx.user
        );
        Err(access_refused(decision.refusal_text(base, ctx.auth.backend.name())))
    }

    fn queue_name(&self, name: &str) -> Result<String, ReplyError> {
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
        if self.last_queue.is_empty() {
            return Err(ReplyError::new(ErrorKind::NotFound, "no previously declared queue"));
        }
        Ok(self.last_queue.clone())
    }

    pub fn on_method(&mut self, ctx: &mut ConnCtx, m: AMQPClass) -> Result<(), ReplyError> {
        self.no_content_pending()?;
        match m {
            AMQPClass::Basic(b) => self.basic(ctx, b),
            AMQPClass::Exchange(x) => self.exchange(ctx, x),
            AMQPClass::Queue(q) => self.queue(ctx, q),
            AMQPClass::Confirm(c) => self.confirm(ctx, c),
            AMQPClass::Tx(t) => self.tx(ctx, t),
            AMQPClass::Channel(chan::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(not_implemented("active=false"));
                }
                send(ctx, self.number(), AMQPClass::Channel(chan::AMQPMethod::FlowOk(chan::FlowOk { active: true })));
                Ok(())
            }
            AMQPClass::Channel(chan::AMQPMethod::FlowOk(_)) => Ok(()),
            other => Err(ReplyError::new(
                ErrorKind::CommandInvalid,
                format!("unexpected method {}/{}", other.get_amqp_class_id(), other.get_amqp_method_id()),
            )),
        }
    }
}

impl Channel {
    /// A method while a publish waits for its content is a connection error (505).
    fn no_content_pending(&self) -> Result<(), ReplyError> {
        if self.pending.is_some() {
            return Err(ReplyError::new(
                ErrorKind::UnexpectedFrame,
                "expected content header for class 60, got non content header frame instead",
            )
            .on(60, 40));
        }
        Ok(())
    }
}

/// A string-valued argument (e.g. `alternate-exchange`, `x-dead-letter-exchange`).
fn string_arg(args: &crate::protocol::FieldTable, key: &str) -> Option<String> {
    crate::broker::queue_args::as_str(args.inner().get(key)?)
}

/// Removes a consumer from its queue; auto-deletes the queue if it was the last one.
fn cancel_consumer(ctx: &ConnCtx, c: &Arc<Consumer>) {
    c.cancelled.store(true, Ordering::Relaxed);
    if let Some(q) = c.queue.upgrade()
        && q.remove_consumer(c)
    {
        if let Some(v) = ctx.broker.vhost(&q.vhost) {
            v.remove_queue(&q);
        }
    }
}

/// Requeues unacked deliveries, keeping their order within each queue.
fn requeue_grouped(unacked: Vec<Unacked>) {
    let mut by_queue: Vec<(Arc<Queue>, Vec<Ready>)> = Vec::new();
    for u in unacked {
        let r = Ready { msg: u.msg.clone(), redelivered: true, seq: u.seq, expires: u.expires, pos: u.pos };
        match by_queue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, v)) => v.push(r),
            None => by_queue.push((u.queue.clone(), vec![r])),
        }
    }
    for (q, msgs) in by_queue {
        q.requeue(msgs.into_iter());
    }
}
