//! Channel methods: exchange, queue, basic, confirm and tx classes.

use super::ConnCtx;
use crate::broker::auth::Access;
use crate::broker::delivery::{ChannelShared, ConnShared, Consumer, Unacked};
use crate::broker::exchange::{Destination, Exchange};
use crate::broker::message::Message;
use crate::broker::persist;
use crate::broker::queue::Queue;
use crate::broker::{ExchangeDecl, QueueDecl};
use crate::protocol::frame::{self, ContentHeader};
use crate::protocol::reply::{ErrorKind, ReplyError, access_refused, not_implemented, precondition};
use crate::protocol::{AMQPClass, basic, channel as chan, confirm, exchange, queue, tx};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A basic.publish waiting for its content.
struct Pending {
    exchange: String,
    routing_key: String,
    mandatory: bool,
    header: Option<ContentHeader>,
    body: Vec<Bytes>,
    received: u64,
}

/// A message whose routing was deferred by tx.select.
struct TxPublish {
    mandatory: bool,
    msg: Message,
}

enum TxAck {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, multiple: bool, requeue: bool },
}

#[derive(Default)]
struct Tx {
    publishes: Vec<TxPublish>,
    acks: Vec<TxAck>,
}

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
    /// Last exchange published to, with the auth epoch at which its write permission was checked.
    last_exchange: Option<(Arc<Exchange>, u64)>,
    /// Auth epoch at which write permission on `amq.default` was last granted (0: never).
    default_write_epoch: u64,
    route_scratch: Vec<Arc<Queue>>,
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
            default_write_epoch: 0,
            route_scratch: Vec::new(),
        }
    }

    fn number(&self) -> u16 {
        self.shared.number
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
        self.pending = None;
        for (_, c) in self.consumers.drain() {
            cancel_consumer(ctx, &c);
        }
        let unacked: Vec<Unacked> = self.shared.state.lock().unacked.drain(..).collect();
        requeue_grouped(unacked);
    }

    /// Sends the pending publisher confirms as one ack with multiple=true.
    pub fn flush_confirms(&mut self, ctx: &ConnCtx) {
        if self.confirm && !self.closing {
            self.shared.confirms.flush(&ctx.conn, self.number());
        }
    }

    /// RabbitMQ's permission check: `access` on resource `kind` `name` (the default exchange is
    /// `amq.default`). Checked live, so permission changes apply to the next operation.
    fn check(&self, ctx: &ConnCtx, access: Access, kind: &str, name: &str) -> Result<(), ReplyError> {
        let name = if kind == "exchange" && name.is_empty() { "amq.default" } else { name };
        let perm = ctx.broker.permission(&ctx.vhost.name, &ctx.user);
        if perm.is_some_and(|p| p.allows(access, name)) {
            return Ok(());
        }
        Err(access_refused(format!("access to {kind} '{name}' in vhost '{}' refused for user '{}'", ctx.vhost.name, ctx.user)))
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
        if self.pending.is_some() {
            return Err(ReplyError::new(
                ErrorKind::UnexpectedFrame,
                "expected content header for class 60, got non content header frame instead",
            )
            .on(60, 40));
        }
        match m {
            AMQPClass::Basic(b) => self.basic(ctx, b),
            AMQPClass::Exchange(x) => self.exchange(ctx, x),
            AMQPClass::Queue(q) => self.queue(ctx, q),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                if self.tx.is_some() {
                    return Err(precondition("cannot switch from tx to confirm mode"));
                }
                self.confirm = true;
                if !s.nowait {
                    send(ctx, self.number(), AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})));
                }
                Ok(())
            }
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

    // ---- content assembly -------------------------------------------------------------------

    pub fn on_header(&mut self, ctx: &mut ConnCtx, header: ContentHeader, max_size: u64) -> Result<(), ReplyError> {
        if self.closing {
            return Ok(());
        }
        let Some(p) = self.pending.as_mut().filter(|p| p.header.is_none()) else {
            return Err(ReplyError::new(ErrorKind::UnexpectedFrame, "expected method frame, got non method frame instead"));
        };
        if header.class_id != crate::protocol::CLASS_BASIC {
            return Err(ReplyError::new(ErrorKind::FrameError, format!("content header for class {}", header.class_id)).on(60, 40));
        }
        if header.body_size > max_size {
            return Err(precondition(format!("message size {} is larger than configured max size {max_size}", header.body_size))
                .on(60, 40));
        }
        let done = header.body_size == 0;
        p.header = Some(header);
        if done { self.publish_pending(ctx).map_err(|e| e.on(60, 40)) } else { Ok(()) }
    }

    pub fn on_body(&mut self, ctx: &mut ConnCtx, payload: Bytes) -> Result<(), ReplyError> {
        if self.closing {
            return Ok(());
        }
        let Some(p) = self.pending.as_mut() else {
            return Err(ReplyError::new(ErrorKind::UnexpectedFrame, "expected method frame, got non method frame instead"));
        };
        let Some(h) = &p.header else {
            return Err(ReplyError::new(ErrorKind::UnexpectedFrame, "expected content header for class 60, got non content header frame instead"));
        };
        p.received += payload.len() as u64;
        if p.received > h.body_size {
            return Err(ReplyError::new(ErrorKind::FrameError, "content body larger than announced").on(60, 40));
        }
        p.body.push(payload);
        if p.received == h.body_size { self.publish_pending(ctx).map_err(|e| e.on(60, 40)) } else { Ok(()) }
    }

    fn publish_pending(&mut self, ctx: &mut ConnCtx) -> Result<(), ReplyError> {
        let p = self.pending.take().expect("pending publish");
        let header = p.header.expect("header");
        let body = match p.body.len() {
            0 => Bytes::new(),
            1 => p.body.into_iter().next().expect("one"),
            _ => {
                let mut all = BytesMut::with_capacity(header.body_size as usize);
                for b in &p.body {
                    all.extend_from_slice(b);
                }
                all.freeze()
            }
        };
        // As RabbitMQ: write permission, then the exchange's existence, before the properties.
        self.publish_exchange(ctx, &p.exchange)?;
        if let Some(uid) = header.properties.user_id()
            && uid.as_str() != ctx.user
        {
            return Err(precondition(format!(
                "user_id property set to '{}' but authenticated user was '{}'",
                uid.as_str(),
                ctx.user
            )));
        }
        if let Some(exp) = header.properties.expiration()
            && exp.as_str().parse::<u64>().is_err()
        {
            return Err(precondition(format!("invalid expiration '{}': no_integer", exp.as_str())));
        }
        let msg = Message {
            exchange: p.exchange,
            routing_key: p.routing_key,
            properties: header.properties,
            header_raw: header.raw,
            body,
        };
        if self.confirm {
            self.publish_seq += 1;
        }
        if let Some(tx) = &mut self.tx {
            tx.publishes.push(TxPublish {
                mandatory: p.mandatory,
                msg,
            });
            return Ok(());
        }
        let seq = self.confirm.then_some(self.publish_seq);
        let deferred = self.route_and_deliver(ctx, msg, p.mandatory, seq)?;
        if let (Some(seq), false) = (seq, deferred) {
            self.shared.confirms.complete(seq, true);
        }
        Ok(())
    }

    /// The exchange of a publish (None: the default exchange), after RabbitMQ's checks: write
    /// permission (on `amq.default` for ""), existence, not internal. The result is cached per
    /// channel until users, vhosts or permissions change.
    fn publish_exchange(&mut self, ctx: &ConnCtx, name: &str) -> Result<Option<Arc<Exchange>>, ReplyError> {
        let epoch = ctx.broker.auth_epoch();
        if name.is_empty() {
            if self.default_write_epoch != epoch {
                self.check(ctx, Access::Write, "exchange", name)?;
                self.default_write_epoch = epoch;
            }
            return Ok(None);
        }
        if let Some((x, checked)) = &self.last_exchange
            && x.name == name
            && *checked == epoch
            && !x.is_deleted()
        {
            return Ok(Some(x.clone()));
        }
        self.check(ctx, Access::Write, "exchange", name)?;
        let x = ctx.vhost.exchange_or_404(name)?;
        if x.internal {
            return Err(access_refused(format!("cannot publish to internal exchange '{name}' in vhost '{}'", ctx.vhost.name)));
        }
        self.last_exchange = Some((x.clone(), epoch));
        Ok(Some(x))
    }

    /// Routes and enqueues a message. Returns true if it went to the store, in which case the
    /// confirm `confirm_seq` (if any) is completed by the store's writer after the commit.
    fn route_and_deliver(
        &mut self,
        ctx: &mut ConnCtx,
        msg: Message,
        mandatory: bool,
        confirm_seq: Option<u64>,
    ) -> Result<bool, ReplyError> {
        let mut stored = false;
        let mut queues = std::mem::take(&mut self.route_scratch);
        queues.clear();
        match self.publish_exchange(ctx, &msg.exchange)? {
            None => {
                if let Some(q) = ctx.vhost.queue(&msg.routing_key) {
                    queues.push(q);
                }
            }
            Some(x) => {
                if let Err((name, kind, failure)) = ctx.vhost.route(&x, &msg, &mut queues) {
                    tracing::error!(exchange = %name, kind = %kind, "exchange type failed: {}", failure.0);
                    self.route_scratch = queues;
                    let _ = stored;
                    return Err(ReplyError::new(
                        ErrorKind::ChannelInternalError,
                        format!("exchange type '{kind}' of exchange '{name}' in vhost '{}' failed: {}", ctx.vhost.name, failure.0),
                    ));
                }
            }
        }
        if queues.is_empty() {
            if mandatory {
                let (ch, frame_max) = (self.number(), ctx.conn.frame_max());
                let m = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                    reply_code: 312,
                    reply_text: "NO_ROUTE".into(),
                    exchange: msg.exchange.as_str().into(),
                    routing_key: msg.routing_key.as_str().into(),
                }));
                ctx.conn.append(|out| {
                    frame::write_method(out, ch, m);
                    frame::write_header_raw(out, ch, &msg.header_raw);
                    if !msg.body.is_empty() {
                        frame::write_body(out, ch, &msg.body, frame_max);
                    }
                });
            }
        } else {
            let msg = Arc::new(msg);
            let durable = if msg.is_persistent() { queues.iter().filter(|q| q.stores_persistent()).count() } else { 0 };
            if durable == 0 {
                for q in &queues {
                    q.publish(msg.clone(), None);
                }
            } else {
                stored = true;
                let record = persist::record(&msg);
                let waiter = confirm_seq.map(|seq| Arc::new(DiskWait::new(seq, durable, self.shared.clone())));
                for q in &queues {
                    if q.stores_persistent() {
                        let w = waiter.clone();
                        q.publish(msg.clone(), Some((&record, Box::new(move |r| DiskWait::done(w, r)))));
                    } else {
                        q.publish(msg.clone(), None);
                    }
                }
            }
            // Publisher flow control: a destination whose consumers are behind pauses this
            // connection's reader after this message (one atomic load per queue).
            if ctx.flow.is_none()
                && let Some(q) = queues.iter().find(|q| q.flow.is_over())
            {
                ctx.flow = Some(q.clone());
            }
            queues.clear();
        }
        self.route_scratch = queues;
        Ok(stored)
    }

    // ---- basic ------------------------------------------------------------------------------

    fn basic(&mut self, ctx: &mut ConnCtx, m: basic::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        match m {
            basic::AMQPMethod::Publish(p) => {
                if p.immediate {
                    return Err(not_implemented("immediate=true"));
                }
                self.pending = Some(Pending {
                    exchange: p.exchange.into(),
                    routing_key: p.routing_key.into(),
                    mandatory: p.mandatory,
                    header: None,
                    body: Vec::new(),
                    received: 0,
                });
                Ok(())
            }
            basic::AMQPMethod::Qos(q) => {
                if q.global {
                    self.shared.global_prefetch.store(q.prefetch_count as u32, Ordering::Relaxed);
                } else {
                    self.consumer_prefetch = q.prefetch_count as u32;
                }
                send(ctx, ch, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
                // A larger window may let queues deliver more.
                self.kick_consumers();
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => self.consume(ctx, c),
            basic::AMQPMethod::Cancel(c) => {
                let tag = c.consumer_tag.as_str();
                if let Some(consumer) = self.consumers.remove(tag) {
                    cancel_consumer(ctx, &consumer);
                }
                if !c.nowait {
                    let ok = basic::CancelOk { consumer_tag: c.consumer_tag };
                    send(ctx, ch, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)));
                }
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.get(ctx, g),
            basic::AMQPMethod::Ack(a) => self.ack_or_defer(TxAck::Ack { tag: a.delivery_tag, multiple: a.multiple }),
            basic::AMQPMethod::Nack(n) => {
                self.ack_or_defer(TxAck::Nack { tag: n.delivery_tag, multiple: n.multiple, requeue: n.requeue })
            }
            basic::AMQPMethod::Reject(r) => {
                self.ack_or_defer(TxAck::Nack { tag: r.delivery_tag, multiple: false, requeue: r.requeue })
            }
            basic::AMQPMethod::Recover(r) => {
                if !r.requeue {
                    return Err(not_implemented("requeue=false"));
                }
                // recover-ok goes out before the redeliveries (as RabbitMQ's, whose queues redeliver
                // asynchronously); clients may drop deliveries that precede it.
                send(ctx, ch, AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})));
                self.recover();
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(r) => {
                if !r.requeue {
                    return Err(not_implemented("requeue=false"));
                }
                self.recover();
                Ok(())
            }
            other => Err(ReplyError::new(
                ErrorKind::CommandInvalid,
                format!("unexpected method 60/{}", AMQPClass::Basic(other).get_amqp_method_id()),
            )),
        }
    }

    fn kick_consumers(&self) {
        let mut seen: Vec<*const Queue> = Vec::new();
        for c in self.consumers.values() {
            if let Some(q) = c.queue.upgrade()
                && !seen.contains(&Arc::as_ptr(&q))
            {
                seen.push(Arc::as_ptr(&q));
                q.dispatch();
            }
        }
    }

    fn consume(&mut self, ctx: &mut ConnCtx, c: basic::Consume) -> Result<(), ReplyError> {
        let name = self.queue_name(c.queue.as_str())?;
        self.check(ctx, Access::Read, "queue", &name)?;
        let q = ctx.vhost.queue_for(&name, ctx.id)?;
        let tag = if c.consumer_tag.as_str().is_empty() {
            format!("amq.ctag-{}", random_suffix())
        } else {
            c.consumer_tag.as_str().to_owned()
        };
        if self.consumers.get(&tag).is_some_and(|x| !x.cancelled.load(Ordering::Relaxed)) {
            return Err(ReplyError::new(ErrorKind::NotAllowed, format!("attempt to reuse consumer tag '{tag}'")));
        }
        if q.check_consume(c.exclusive).is_err() {
            return Err(access_refused(format!("queue '{name}' in vhost '{}' in exclusive use", ctx.vhost.name)));
        }
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            channel: self.shared.clone(),
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            prefetch: self.consumer_prefetch,
            unacked: Default::default(),
            queue: Arc::downgrade(&q),
            cancelled: Default::default(),
            arguments: c.arguments,
        });
        if !c.nowait {
            let ok = basic::ConsumeOk { consumer_tag: tag.as_str().into() };
            send(ctx, self.number(), AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
        }
        self.consumers.insert(tag, consumer.clone());
        q.add_consumer(consumer);
        Ok(())
    }

    fn get(&mut self, ctx: &mut ConnCtx, g: basic::Get) -> Result<(), ReplyError> {
        let name = self.queue_name(g.queue.as_str())?;
        self.check(ctx, Access::Read, "queue", &name)?;
        let q = ctx.vhost.queue_for(&name, ctx.id)?;
        let ch = self.number();
        let Some((ready, left)) = q.get() else {
            send(ctx, ch, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})));
            return Ok(());
        };
        let msg = ready.msg.clone();
        let frame_max = ctx.conn.frame_max();
        let mut st = self.shared.state.lock();
        let tag = st.next_tag;
        st.next_tag += 1;
        if g.no_ack {
            q.forget(ready.seq);
        } else {
            st.unacked.push_back(Unacked::new(tag, q.clone(), msg.clone(), ready.seq, None));
        }
        let m = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
            delivery_tag: tag,
            redelivered: ready.redelivered,
            exchange: msg.exchange.as_str().into(),
            routing_key: msg.routing_key.as_str().into(),
            message_count: left,
        }));
        ctx.conn.append(|out| {
            frame::write_method(out, ch, m);
            frame::write_header_raw(out, ch, &msg.header_raw);
            if !msg.body.is_empty() {
                frame::write_body(out, ch, &msg.body, frame_max);
            }
        });
        Ok(())
    }

    /// Settles now, or at tx.commit in a transactional channel (tags are checked now).
    fn ack_or_defer(&mut self, op: TxAck) -> Result<(), ReplyError> {
        if self.tx.is_some() {
            let (tag, multiple) = match op {
                TxAck::Ack { tag, multiple } | TxAck::Nack { tag, multiple, .. } => (tag, multiple),
            };
            self.validate_tags(tag, multiple)?;
            self.tx.as_mut().expect("tx").acks.push(op);
            return Ok(());
        }
        match op {
            TxAck::Ack { tag, multiple } => self.settle(tag, multiple, None),
            TxAck::Nack { tag, multiple, requeue } => self.settle(tag, multiple, Some(requeue)),
        }
    }

    fn validate_tags(&self, tag: u64, multiple: bool) -> Result<(), ReplyError> {
        let st = self.shared.state.lock();
        if multiple && tag == 0 {
            return Ok(());
        }
        let known = if multiple {
            st.unacked.front().is_some_and(|u| u.tag <= tag)
        } else {
            st.unacked.binary_search_by_key(&tag, |u| u.tag).is_ok()
        };
        if known { Ok(()) } else { Err(precondition(format!("unknown delivery tag {tag}"))) }
    }

    /// Acks (`requeue` None) or nacks/rejects delivery `tag` (and all before it with `multiple`).
    fn settle(&mut self, tag: u64, multiple: bool, requeue: Option<bool>) -> Result<(), ReplyError> {
        let taken: Vec<Unacked> = {
            let mut st = self.shared.state.lock();
            if multiple {
                let upto = if tag == 0 { u64::MAX } else { tag };
                if tag != 0 && !st.unacked.front().is_some_and(|u| u.tag <= tag) {
                    return Err(precondition(format!("unknown delivery tag {tag}")));
                }
                let n = st.unacked.partition_point(|u| u.tag <= upto);
                st.unacked.drain(..n).collect()
            } else {
                match st.unacked.binary_search_by_key(&tag, |u| u.tag) {
                    Ok(i) => vec![st.unacked.remove(i).expect("index valid")],
                    Err(_) => return Err(precondition(format!("unknown delivery tag {tag}"))),
                }
            }
        };
        for u in &taken {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if requeue == Some(true) {
            requeue_grouped(taken);
        } else {
            for u in &taken {
                u.queue.forget(u.seq);
            }
            // Freed credit: let each queue deliver again.
            let mut seen: Vec<*const Queue> = Vec::new();
            for u in &taken {
                if u.consumer.is_some() && !seen.contains(&Arc::as_ptr(&u.queue)) {
                    seen.push(Arc::as_ptr(&u.queue));
                    u.queue.dispatch();
                }
            }
        }
        Ok(())
    }

    fn recover(&mut self) {
        let taken: Vec<Unacked> = self.shared.state.lock().unacked.drain(..).collect();
        for u in &taken {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        requeue_grouped(taken);
    }

    // ---- tx ---------------------------------------------------------------------------------

    fn tx(&mut self, ctx: &mut ConnCtx, m: tx::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        match m {
            tx::AMQPMethod::Select(_) => {
                if self.confirm {
                    return Err(precondition("cannot switch from confirm to tx mode"));
                }
                if self.tx.is_none() {
                    self.tx = Some(Tx::default());
                }
                send(ctx, ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(t) = self.tx.replace(Tx::default()) else {
                    return Err(precondition("channel is not transactional"));
                };
                let mut stored = false;
                for p in t.publishes {
                    stored |= self.route_and_deliver(ctx, p.msg, p.mandatory, None)?;
                }
                for a in t.acks {
                    match a {
                        TxAck::Ack { tag, multiple } => self.settle(tag, multiple, None)?,
                        TxAck::Nack { tag, multiple, requeue } => self.settle(tag, multiple, Some(requeue))?,
                    }
                }
                let ok = AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {}));
                match (&ctx.broker.store, stored) {
                    // commit-ok only once the transaction's persistent messages are on disk.
                    (Some(store), true) => {
                        let conn = ctx.conn.clone();
                        store.message_log().flush_then(move |_| conn.send(|out| frame::write_method(out, ch, ok)));
                    }
                    _ => send(ctx, ch, ok),
                }
                Ok(())
            }
            tx::AMQPMethod::Rollback(_) => {
                if self.tx.is_none() {
                    return Err(precondition("channel is not transactional"));
                }
                self.tx = Some(Tx::default());
                send(ctx, ch, AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})));
                Ok(())
            }
            _ => Err(ReplyError::new(ErrorKind::CommandInvalid, "unexpected tx method")),
        }
    }

    // ---- exchange ---------------------------------------------------------------------------

    fn exchange(&mut self, ctx: &mut ConnCtx, m: exchange::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        let vhost = ctx.vhost.clone();
        match m {
            exchange::AMQPMethod::Declare(d) => {
                // RabbitMQ's order: type, default exchange, configure permission, then (for a new
                // exchange) the reserved prefix and the alternate exchange's permissions.
                // Passive declares need no permission.
                if !d.passive {
                    ctx.broker.exchange_type_or_error(d.kind.as_str())?;
                    if d.exchange.as_str().is_empty() {
                        return Err(access_refused("operation not permitted on the default exchange"));
                    }
                    self.check(ctx, Access::Configure, "exchange", d.exchange.as_str())?;
                    if vhost.exchange(d.exchange.as_str()).is_none()
                        && !d.exchange.as_str().starts_with("amq.")
                        && let Some(ae) = string_arg(&d.arguments, "alternate-exchange")
                    {
                        self.check(ctx, Access::Read, "exchange", d.exchange.as_str())?;
                        self.check(ctx, Access::Write, "exchange", &ae)?;
                    }
                }
                let decl = ExchangeDecl {
                    name: d.exchange.as_str(),
                    kind: d.kind.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: &d.arguments,
                };
                vhost.declare_exchange(&ctx.broker, &decl)?;
                if !d.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})));
                }
                Ok(())
            }
            exchange::AMQPMethod::Delete(d) => {
                let name = d.exchange.as_str();
                if !name.is_empty() && !name.starts_with("amq.") {
                    self.check(ctx, Access::Configure, "exchange", name)?;
                }
                vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                if !d.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})));
                }
                Ok(())
            }
            exchange::AMQPMethod::Bind(b) => {
                let (src, dst) = self.e2e(ctx, b.source.as_str(), b.destination.as_str())?;
                vhost.bind(&src, Destination::Exchange(dst), b.routing_key.as_str(), &b.arguments)?;
                if !b.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})));
                }
                Ok(())
            }
            exchange::AMQPMethod::Unbind(b) => {
                self.binding_checks(ctx, "exchange", b.destination.as_str(), b.source.as_str())?;
                if let (Some(src), Some(dst)) = (vhost.exchange(b.source.as_str()), vhost.exchange(b.destination.as_str())) {
                    vhost.unbind(&src, &Destination::Exchange(dst), b.routing_key.as_str(), &b.arguments)?;
                }
                if !b.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})));
                }
                Ok(())
            }
            _ => Err(ReplyError::new(ErrorKind::CommandInvalid, "unexpected exchange method")),
        }
    }

    fn e2e(&self, ctx: &ConnCtx, source: &str, dest: &str) -> Result<(Arc<Exchange>, Arc<Exchange>), ReplyError> {
        self.binding_checks(ctx, "exchange", dest, source)?;
        let dst = ctx.vhost.exchange_or_404(dest)?;
        let src = ctx.vhost.exchange_or_404(source)?;
        Ok((src, dst))
    }

    /// RabbitMQ's `binding_action` checks, in its order: write on the destination, neither end the
    /// default exchange, read on the source. Existence is checked after these.
    fn binding_checks(&self, ctx: &ConnCtx, dest_kind: &str, dest: &str, source: &str) -> Result<(), ReplyError> {
        self.check(ctx, Access::Write, dest_kind, dest)?;
        if source.is_empty() || (dest_kind == "exchange" && dest.is_empty()) {
            return Err(access_refused("operation not permitted on the default exchange"));
        }
        self.check(ctx, Access::Read, "exchange", source)
    }

    // ---- queue ------------------------------------------------------------------------------

    fn queue(&mut self, ctx: &mut ConnCtx, m: queue::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        let vhost = ctx.vhost.clone();
        match m {
            queue::AMQPMethod::Declare(d) => {
                let name = if d.queue.as_str().is_empty() && !d.passive {
                    format!("amq.gen-{}", random_suffix())
                } else if d.queue.as_str().is_empty() {
                    self.queue_name("")?
                } else {
                    d.queue.as_str().to_owned()
                };
                if !d.passive {
                    // As RabbitMQ: the reserved prefix first, then configure permission, then (for
                    // a new queue with a dead-letter exchange) read on it and write on the DLX.
                    if name.starts_with("amq.") && !d.queue.as_str().is_empty() {
                        return Err(access_refused(format!("queue name '{name}' contains reserved prefix 'amq.*'")));
                    }
                    self.check(ctx, Access::Configure, "queue", &name)?;
                    if vhost.queue(&name).is_none()
                        && let Some(dlx) = string_arg(&d.arguments, "x-dead-letter-exchange")
                    {
                        self.check(ctx, Access::Read, "queue", &name)?;
                        self.check(ctx, Access::Write, "exchange", &dlx)?;
                    }
                }
                let decl = QueueDecl {
                    name: &name,
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: &d.arguments,
                    owner: ctx.id,
                    server_named: d.queue.as_str().is_empty(),
                };
                let (q, messages, consumers) = vhost.declare_queue(&decl)?;
                if d.exclusive && !d.passive && !ctx.exclusive.iter().any(|x| Arc::ptr_eq(x, &q)) {
                    ctx.exclusive.push(q.clone());
                }
                self.last_queue = name.clone();
                if !d.nowait {
                    let ok = queue::DeclareOk { queue: name.as_str().into(), message_count: messages, consumer_count: consumers };
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)));
                }
                Ok(())
            }
            queue::AMQPMethod::Bind(b) => {
                let name = self.queue_name(b.queue.as_str())?;
                self.binding_checks(ctx, "queue", &name, b.exchange.as_str())?;
                let q = vhost.queue_for(&name, ctx.id)?;
                let x = vhost.exchange_or_404(b.exchange.as_str())?;
                vhost.bind(&x, Destination::Queue(q), b.routing_key.as_str(), &b.arguments)?;
                if !b.nowait {
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})));
                }
                Ok(())
            }
            queue::AMQPMethod::Unbind(b) => {
                let name = self.queue_name(b.queue.as_str())?;
                self.binding_checks(ctx, "queue", &name, b.exchange.as_str())?;
                if let (Some(q), Some(x)) = (vhost.queue(&name), vhost.exchange(b.exchange.as_str())) {
                    vhost.check_exclusive(&q, ctx.id)?;
                    vhost.unbind(&x, &Destination::Queue(q), b.routing_key.as_str(), &b.arguments)?;
                }
                send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})));
                Ok(())
            }
            queue::AMQPMethod::Purge(p) => {
                let name = self.queue_name(p.queue.as_str())?;
                self.check(ctx, Access::Read, "queue", &name)?;
                let q = vhost.queue_for(&name, ctx.id)?;
                let n = q.purge();
                if !p.nowait {
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: n })));
                }
                Ok(())
            }
            queue::AMQPMethod::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?;
                self.check(ctx, Access::Configure, "queue", &name)?;
                let n = match vhost.queue(&name) {
                    None => 0,
                    Some(q) => {
                        vhost.check_exclusive(&q, ctx.id)?;
                        vhost.delete_queue(&q, d.if_unused, d.if_empty)?
                    }
                };
                if !d.nowait {
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: n })));
                }
                Ok(())
            }
            _ => Err(ReplyError::new(ErrorKind::CommandInvalid, "unexpected queue method")),
        }
    }
}

/// A string-valued argument (e.g. `alternate-exchange`, `x-dead-letter-exchange`).
fn string_arg(args: &crate::protocol::FieldTable, key: &str) -> Option<String> {
    match args.inner().get(key)? {
        crate::protocol::AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        crate::protocol::AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Counts down the store commits of one confirmed publish (one per durable queue it went to).
struct DiskWait {
    seq: u64,
    left: std::sync::atomic::AtomicUsize,
    ok: std::sync::atomic::AtomicBool,
    channel: Arc<ChannelShared>,
}

impl DiskWait {
    fn new(seq: u64, n: usize, channel: Arc<ChannelShared>) -> DiskWait {
        DiskWait { seq, left: n.into(), ok: true.into(), channel }
    }

    /// Runs on the store's writer thread after the commit.
    fn done(w: Option<Arc<DiskWait>>, r: Result<(), crate::store::StoreError>) {
        let Some(w) = w else { return };
        if r.is_err() {
            w.ok.store(false, Ordering::Relaxed);
        }
        if w.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ch = &w.channel;
            ch.confirms.complete(w.seq, w.ok.load(Ordering::Relaxed));
            if ch.open.load(Ordering::Relaxed) && ch.confirms.flush(&ch.conn, ch.number) {
                ch.conn.wake();
            }
        }
    }
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
    let mut by_queue: Vec<(Arc<Queue>, Vec<(Arc<Message>, u64)>)> = Vec::new();
    for u in unacked {
        match by_queue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, v)) => v.push((u.msg.clone(), u.seq)),
            None => by_queue.push((u.queue.clone(), vec![(u.msg.clone(), u.seq)])),
        }
    }
    for (q, msgs) in by_queue {
        q.requeue(msgs.into_iter());
    }
}
