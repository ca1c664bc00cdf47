//! basic.publish content: method + header + body frames → a `Message` for the publish pipeline.

use super::Channel;
use crate::broker::auth::Access;
use crate::broker::exchange::Exchange;
use crate::broker::message::Message;
use crate::broker::publish::{self, Publisher};
use crate::broker::reply_to;
use crate::connection::ConnCtx;
use crate::protocol::ShortStr;
use crate::protocol::frame::{self, ContentHeader};
use crate::protocol::reply::{ErrorKind, ReplyError, access_refused, not_implemented, precondition};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// A basic.publish waiting for its content.
pub(super) struct Pending {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub mandatory: bool,
    pub header: Option<ContentHeader>,
    /// The first body frame (most messages have one: no allocation for them) ...
    pub first: Option<Bytes>,
    /// ... and the others.
    pub body: Vec<Bytes>,
    pub received: u64,
}

impl Channel {
    /// basic.publish (`Frame::Publish`, read by hand from the frame).
    pub fn on_publish(&mut self, p: frame::Publish) -> Result<(), ReplyError> {
        self.no_content_pending()?;
        self.begin_publish(p)
    }

    pub(super) fn begin_publish(&mut self, p: frame::Publish) -> Result<(), ReplyError> {
        refuse_immediate(&p)?;
        self.pending = Some(Pending {
            exchange: p.exchange,
            routing_key: p.routing_key,
            mandatory: p.mandatory,
            header: None,
            first: None,
            body: Vec::new(),
            received: 0,
        });
        Ok(())
    }

    pub fn on_header(&mut self, ctx: &mut ConnCtx, header: ContentHeader, max_size: u64) -> Result<(), ReplyError> {
        if self.closing {
            return Ok(());
        }
        let Some(p) = self.pending.as_mut().filter(|p| p.header.is_none()) else {
            return Err(ReplyError::new(ErrorKind::UnexpectedFrame, "expected method frame, got non method frame instead"));
        };
        check_header(&header, max_size)?;
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
        if p.first.is_none() {
            p.first = Some(payload);
        } else {
            p.body.push(payload);
        }
        if p.received == h.body_size { self.publish_pending(ctx).map_err(|e| e.on(60, 40)) } else { Ok(()) }
    }

    /// basic.publish with its whole content, taken from the read buffer with it
    /// (`frame::take_content`: the header, and the body in one frame unless it is empty): the
    /// checks of `on_publish`, `on_header` and `on_body` in their order, without a `Pending`.
    pub fn on_publish_whole(
        &mut self,
        ctx: &mut ConnCtx,
        p: frame::Publish,
        header: ContentHeader,
        body: Option<Bytes>,
        max_size: u64,
    ) -> Result<(), ReplyError> {
        self.no_content_pending()?;
        refuse_immediate(&p)?;
        check_header(&header, max_size)?;
        let body = body.unwrap_or_default();
        debug_assert_eq!(body.len() as u64, header.body_size);
        self.publish_message(ctx, p.exchange, p.routing_key, p.mandatory, header, body).map_err(|e| e.on(60, 40))
    }

    pub(super) fn publish_pending(&mut self, ctx: &mut ConnCtx) -> Result<(), ReplyError> {
        // Taken field by field (the whole `Pending` is a few hundred bytes: moving it out is a
        // memcpy per message).
        let p = self.pending.as_mut().expect("pending publish");
        let header = p.header.take().expect("header");
        let body = match p.first.take() {
            None => Bytes::new(),
            Some(first) if p.body.is_empty() => first,
            Some(first) => {
                let mut all = BytesMut::with_capacity(header.body_size as usize);
                all.extend_from_slice(&first);
                for b in &p.body {
                    all.extend_from_slice(b);
                }
                all.freeze()
            }
        };
        let (exchange, routing_key, mandatory) = (std::mem::take(&mut p.exchange), std::mem::take(&mut p.routing_key), p.mandatory);
        self.pending = None;
        self.publish_message(ctx, exchange, routing_key, mandatory, header, body)
    }

    /// A complete message: permission, exchange and property checks, then the publish pipeline
    /// (or the transaction).
    fn publish_message(
        &mut self,
        ctx: &mut ConnCtx,
        exchange: ShortStr,
        routing_key: ShortStr,
        mandatory: bool,
        header: ContentHeader,
        body: Bytes,
    ) -> Result<(), ReplyError> {
        // As RabbitMQ: write permission, then the exchange's existence, the topic permission,
        // before the properties.
        let x = self.publish_exchange(ctx, &exchange)?;
        if let Some(x) = &x {
            self.check_topic(ctx, x, &routing_key, Access::Write)?;
        }
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
            && let Err(why) = crate::broker::ttl::parse_expiration(exp.as_str())
        {
            return Err(precondition(format!("invalid expiration '{}': {why}", exp.as_str())));
        }
        if let Some(mode) = header.properties.delivery_mode()
            && !matches!(mode, 1 | 2)
        {
            return Err(precondition(format!("invalid message: {{delivery_mode_unknown,{mode}}}")));
        }
        let (mut properties, mut header_raw) = (header.properties, header.raw);
        // Direct reply-to: the request names this channel's reply consumer.
        if properties.reply_to().as_ref().is_some_and(|r| r.as_str() == reply_to::PSEUDO_QUEUE) {
            let Some((_, token)) = &self.reply else {
                return Err(precondition("fast reply consumer does not exist"));
            };
            properties = crate::protocol::Properties::new((*properties).clone().with_reply_to(reply_to::reply_key(token).as_str().into()));
            header_raw = crate::protocol::frame::encode_header(body.len() as u64, &properties);
        }
        // Built where it stays: the pipeline and its queues share it as it is.
        let msg = Arc::new(Message { exchange, routing_key, properties, header_raw, body });
        if self.confirm {
            self.publish_seq += 1;
            self.shared.confirms.issued(self.publish_seq);
        }
        if let Some(tx) = &mut self.tx {
            tx.publishes.push(super::tx::TxPublish {
                mandatory,
                msg,
            });
            let n = tx.publishes.len() as u32;
            self.shared.info.uncommitted_messages.store(n, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let seq = self.confirm.then_some(self.publish_seq);
        self.route_and_deliver(ctx, x.as_ref(), msg, mandatory, seq)?;
        Ok(())
    }

    /// The exchange of a publish (None: the default exchange), after RabbitMQ's checks: write
    /// permission (on `amq.default` for ""), existence, not internal. The result is cached per
    /// channel until users, vhosts or permissions change.
    pub(super) fn publish_exchange(&mut self, ctx: &ConnCtx, name: &str) -> Result<Option<Arc<Exchange>>, ReplyError> {
        // The epoch stamp covers access-control changes and secret updates; an expired login is
        // checked every time (None never equals a cached stamp).
        let epoch = ctx.auth_stamp();
        if name.is_empty() {
            if epoch.is_none() || self.default_write_epoch != epoch {
                self.check(ctx, Access::Write, "exchange", name)?;
                self.default_write_epoch = epoch;
            }
            return Ok(None);
        }
        if let Some((x, checked)) = &self.last_exchange
            && x.name == name
            && epoch.is_some()
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

    /// Hands a message to the broker's publish pipeline, for exchange `x` as `publish_exchange`
    /// resolved it just before (tx.commit resolves it again: it may be gone by then). Returns
    /// true if a copy went to the store, in which case the confirm `confirm_seq` (if any)
    /// completes after the commit.
    pub(super) fn route_and_deliver(
        &mut self,
        ctx: &mut ConnCtx,
        x: Option<&Arc<Exchange>>,
        msg: Arc<Message>,
        mandatory: bool,
        confirm_seq: Option<u64>,
    ) -> Result<bool, ReplyError> {
        if !self.publisher {
            self.publisher = true;
            crate::broker::counters::bump(&ctx.broker.counters.publishers);
        }
        let from = Publisher { channel: &self.shared, confirm: confirm_seq };
        let outcome = publish::publish(&ctx.vhost, x, msg, mandatory, Some(from))?;
        // Publisher flow control: a destination whose consumers are behind pauses this
        // connection's reader after this message.
        if ctx.flow.is_none() {
            ctx.flow = outcome.flow;
        }
        Ok(outcome.stored)
    }
}

/// basic.publish with immediate=true: 540, as RabbitMQ.
fn refuse_immediate(p: &frame::Publish) -> Result<(), ReplyError> {
    if p.immediate {
        return Err(not_implemented("immediate=true").on(60, 40));
    }
    Ok(())
}

/// A publish's content header: class basic, body within `max_size`.
fn check_header(header: &ContentHeader, max_size: u64) -> Result<(), ReplyError> {
    if header.class_id != crate::protocol::CLASS_BASIC {
        return Err(ReplyError::new(ErrorKind::FrameError, format!("content header for class {}", header.class_id)).on(60, 40));
    }
    if header.body_size > max_size {
        return Err(precondition(format!("message size {} is larger than configured max size {max_size}", header.body_size)).on(60, 40));
    }
    Ok(())
}
