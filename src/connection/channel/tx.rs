//! The tx class: publishes and acks are held until tx.commit.

use super::{Channel, send};
use crate::broker::message::Message;
use crate::connection::ConnCtx;
use crate::protocol::frame;
use crate::protocol::reply::{ErrorKind, ReplyError, precondition};
use crate::protocol::{AMQPClass, tx};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A message whose routing was deferred by tx.select.
pub(super) struct TxPublish {
    pub mandatory: bool,
    pub msg: Arc<Message>,
}

pub(super) enum TxAck {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, multiple: bool, requeue: bool },
}

#[derive(Default)]
pub(super) struct Tx {
    pub publishes: Vec<TxPublish>,
    pub acks: Vec<TxAck>,
}

impl Channel {
    pub(super) fn tx(&mut self, ctx: &mut ConnCtx, m: tx::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        match m {
            tx::AMQPMethod::Select(_) => {
                if self.confirm {
                    return Err(precondition("cannot switch from confirm to tx mode"));
                }
                if self.tx.is_none() {
                    self.tx = Some(Tx::default());
                }
                self.shared.info.mode.store(crate::broker::delivery::ChannelInfo::TX, Ordering::Relaxed);
                send(ctx, ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(t) = self.tx.replace(Tx::default()) else {
                    return Err(precondition("channel is not transactional"));
                };
                self.clear_uncommitted();
                let mut stored = false;
                for p in t.publishes {
                    let x = self.publish_exchange(ctx, &p.msg.exchange)?;
                    stored |= self.route_and_deliver(ctx, x.as_ref(), p.msg, p.mandatory, None)?;
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
                self.clear_uncommitted();
                send(ctx, ch, AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})));
                Ok(())
            }
            _ => Err(ReplyError::new(ErrorKind::CommandInvalid, "unexpected tx method")),
        }
    }

    fn clear_uncommitted(&self) {
        self.shared.info.uncommitted_messages.store(0, Ordering::Relaxed);
        self.shared.info.uncommitted_acks.store(0, Ordering::Relaxed);
    }

}
