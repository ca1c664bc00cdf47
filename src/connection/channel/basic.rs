//! The basic class except publish: qos, consume, cancel, get, ack/nack/reject, recover.

use super::tx::TxAck;
use super::{Channel, cancel_consumer, random_suffix, requeue_grouped, send};
use crate::broker::auth::Access;
use crate::broker::dead_letter::Reason;
use crate::broker::queue_args;
use crate::broker::reply_to;
use crate::broker::delivery::{Consumer, Unacked};
use crate::broker::queue::Queue;
use crate::broker::stats::Stat;
use crate::connection::ConnCtx;
use crate::protocol::frame;
use crate::protocol::reply::{ErrorKind, ReplyError, access_refused, not_implemented, precondition};
use crate::protocol::{AMQPClass, basic};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Channel {
    pub(super) fn basic(&mut self, ctx: &mut ConnCtx, m: basic::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        match m {
            basic::AMQPMethod::Publish(p) => self.begin_publish(frame::Publish {
                exchange: p.exchange.as_str().into(),
                routing_key: p.routing_key.as_str().into(),
                mandatory: p.mandatory,
                immediate: p.immediate,
            }),
            basic::AMQPMethod::Qos(q) => {
                if q.global {
                    self.shared.global_prefetch.store(q.prefetch_count as u32, Ordering::Relaxed);
                } else {
                    self.consumer_prefetch = q.prefetch_count as u32;
                    self.shared.info.prefetch.store(q.prefetch_count as u32, Ordering::Relaxed);
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
                if self.reply.as_ref().is_some_and(|(t, _)| t == tag) {
                    let (_, token) = self.reply.take().expect("reply consumer");
                    ctx.vhost.reply_to.unregister(&token);
                }
                self.count_consumers();
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

    pub(super) fn kick_consumers(&self) {
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

    /// `[amqp] consumer_max_per_channel` (RabbitMQ's check, made before anything else about
    /// the consume; a reused tag gets its own error instead).
    fn check_consumer_max(&self, ctx: &ConnCtx, tag: &str) -> Result<(), ReplyError> {
        let Some(max) = ctx.broker.config.amqp.consumer_max_per_channel else { return Ok(()) };
        let live = |c: &&Arc<Consumer>| !c.cancelled.load(Ordering::Relaxed);
        if self.consumers.get(tag).filter(live).is_some() {
            return Ok(());
        }
        if self.consumers.values().filter(live).count() >= max as usize {
            return Err(ReplyError::new(ErrorKind::NotAllowed, format!("reached maximum ({max}) of consumers per channel")));
        }
        Ok(())
    }

    pub(super) fn consume(&mut self, ctx: &mut ConnCtx, c: basic::Consume) -> Result<(), ReplyError> {
        self.check_consumer_max(ctx, c.consumer_tag.as_str())?;
        let name = self.queue_name(c.queue.as_str())?;
        if name == reply_to::PSEUDO_QUEUE {
            return self.consume_replies(ctx, c);
        }
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
        if q.is_quorum() && self.shared.global_prefetch.load(Ordering::Relaxed) != 0 {
            return Err(not_implemented(format!("queue '{name}' in vhost '{}' does not support global qos", ctx.vhost.name)));
        }
        if q.check_consume(c.exclusive).is_err() {
            return Err(access_refused(format!("queue '{name}' in vhost '{}' in exclusive use", ctx.vhost.name)));
        }
        let priority = match c.arguments.inner().get("x-priority") {
            None => 0,
            Some(v) => queue_args::as_int(v).ok_or_else(|| {
                precondition(format!(
                    "invalid arg 'x-priority' for queue '{name}' in vhost '{}': \"expected integer, got {}\"",
                    ctx.vhost.name,
                    queue_args::type_name(v)
                ))
            })?,
        };
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
            priority,
        });
        if !c.nowait {
            let ok = basic::ConsumeOk { consumer_tag: tag.as_str().into() };
            send(ctx, self.number(), AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
        }
        self.consumers.insert(tag, consumer.clone());
        self.count_consumers();
        q.add_consumer(consumer);
        Ok(())
    }

    /// basic.consume from `amq.rabbitmq.reply-to`: no-ack only, one per channel.
    fn consume_replies(&mut self, ctx: &mut ConnCtx, c: basic::Consume) -> Result<(), ReplyError> {
        if !c.no_ack {
            return Err(precondition("reply consumer cannot acknowledge"));
        }
        if self.reply.is_some() {
            return Err(precondition("reply consumer already set"));
        }
        let tag = if c.consumer_tag.as_str().is_empty() { format!("amq.ctag-{}", random_suffix()) } else { c.consumer_tag.as_str().to_owned() };
        if self.consumers.contains_key(&tag) {
            return Err(ReplyError::new(ErrorKind::NotAllowed, format!("attempt to reuse consumer tag '{tag}'")));
        }
        if !c.nowait {
            let ok = basic::ConsumeOk { consumer_tag: tag.as_str().into() };
            send(ctx, self.number(), AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
        }
        let token = ctx.vhost.reply_to.register(&self.shared, &tag);
        self.reply = Some((tag, token));
        self.count_consumers();
        Ok(())
    }

    pub(super) fn get(&mut self, ctx: &mut ConnCtx, g: basic::Get) -> Result<(), ReplyError> {
        let name = self.queue_name(g.queue.as_str())?;
        self.check(ctx, Access::Read, "queue", &name)?;
        let q = ctx.vhost.queue_for(&name, ctx.id)?;
        let ch = self.number();
        let Some((ready, left)) = q.get() else {
            self.shared.stats.incr(Stat::GetEmpty);
            q.stats.incr(Stat::GetEmpty);
            send(ctx, ch, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})));
            return Ok(());
        };
        let kind = if g.no_ack { Stat::GetNoAck } else { Stat::Get };
        self.shared.stats.incr(kind);
        q.stats.incr(kind);
        if ready.redelivered {
            self.shared.stats.incr(Stat::Redeliver);
            q.stats.incr(Stat::Redeliver);
        }
        let msg = ready.msg.clone();
        let frame_max = ctx.conn.frame_max();
        let mut st = self.shared.state.lock();
        let tag = st.next_tag;
        st.next_tag += 1;
        if g.no_ack {
            q.forget(ready.seq);
        } else {
            st.unacked.push_back(Unacked::new(tag, q.clone(), &ready, None));
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
    pub(super) fn ack_or_defer(&mut self, op: TxAck) -> Result<(), ReplyError> {
        if self.tx.is_some() {
            let (tag, multiple) = match op {
                TxAck::Ack { tag, multiple } | TxAck::Nack { tag, multiple, .. } => (tag, multiple),
            };
            self.validate_tags(tag, multiple)?;
            let tx = self.tx.as_mut().expect("tx");
            tx.acks.push(op);
            self.shared.info.uncommitted_acks.store(tx.acks.len() as u32, Ordering::Relaxed);
            return Ok(());
        }
        match op {
            TxAck::Ack { tag, multiple } => self.settle(tag, multiple, None),
            TxAck::Nack { tag, multiple, requeue } => self.settle(tag, multiple, Some(requeue)),
        }
    }

    pub(super) fn validate_tags(&self, tag: u64, multiple: bool) -> Result<(), ReplyError> {
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
    pub(super) fn settle(&mut self, tag: u64, multiple: bool, requeue: Option<bool>) -> Result<(), ReplyError> {
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
            if requeue.is_none() {
                self.shared.stats.add(Stat::Ack, taken.len() as u64);
            }
            for u in &taken {
                if requeue.is_none() {
                    u.queue.stats.incr(Stat::Ack);
                }
                if requeue == Some(false) {
                    u.queue.dead_letter(vec![u.msg.clone()], Reason::Rejected);
                }
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

    pub(super) fn recover(&mut self) {
        let taken: Vec<Unacked> = self.shared.state.lock().unacked.drain(..).collect();
        for u in &taken {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        requeue_grouped(taken);
    }

}
